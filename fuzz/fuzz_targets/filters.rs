//! The filter expression and its data-field terms on arbitrary input.
//!
//! Input: a filter expression, a newline, then an event's data as JSON. Parsing the expression must
//! never panic, and what parses must show as text that parses back to an equal filter which treats the
//! event the same way. Testing the event (when the data is JSON) must never panic, for the whole filter
//! and for each of its terms alone; a data-field term can only match when its path finds a value.
#![no_main]

use ipckit::event_stream::Term;
use ipckit::{Event, EventFilter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (expression, json) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(expression) = std::str::from_utf8(expression) else {
        return;
    };
    let Ok(filter) = EventFilter::parse(expression) else {
        return;
    };
    let shown = filter.to_string();
    let again = EventFilter::parse(&shown);
    assert_eq!(again.as_ref(), Ok(&filter), "{expression} -> {shown}");
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let mut event = Event::new("fuzz.event", value);
    event.resource_id = Some("job-1".into());
    let verdict = filter.matches(&event);
    if let Ok(again) = again {
        assert_eq!(again.matches(&event), verdict, "{shown}");
    }
    for (positive, term) in filter.terms() {
        let alone = if positive {
            EventFilter::parse(&term.to_string()).expect("a shown term parses")
        } else {
            EventFilter::new().exclude(term.clone())
        };
        let held = alone.matches(&event);
        if let Term::Field(path, _) = &term {
            if held == positive {
                assert!(path.lookup(&event.data).is_some(), "{term} without its field");
            }
        }
    }
});
