//! Property tests: the expression parser never panics, `Display` parses back to the same filter, and
//! globs agree with a plain reference implementation.

use ipckit::event_stream::Glob;
use ipckit::EventFilter;
use proptest::prelude::*;

/// The obvious recursive glob matcher, as the oracle.
fn oracle(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| oracle(rest, &text[i..])),
        Some(('?', rest)) => !text.is_empty() && oracle(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && oracle(rest, &text[1..]),
    }
}

fn term() -> impl Strategy<Value = String> {
    let value = "[a-z.*?\\-_ \"\\\\!:]{0,8}";
    prop_oneof![
        value.prop_map(|v| v.replace(' ', "")),
        value.prop_map(|v| format!("type:\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))),
        value.prop_map(|v| format!("res:\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))),
        value.prop_map(|v| format!("text:\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))),
        (0u64..1_000).prop_map(|n| format!("since:id:{n}")),
        (0u64..4_000_000_000).prop_map(|s| format!("until:@{s}.5")),
        (1u64..600).prop_map(|m| format!("since:{m}m")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parser_never_panics(input in "\\PC{0,40}") {
        let _ = EventFilter::parse(&input);
    }

    #[test]
    fn parser_never_panics_on_syntax_soup(input in "[!\":a-z* ?\\\\@.0-9-]{0,30}") {
        if let Err(err) = EventFilter::parse(&input) {
            prop_assert!(err.column() >= 1 && err.column() <= input.chars().count() + 1, "{err} in {input:?}");
        }
    }

    #[test]
    fn display_parses_back(terms in prop::collection::vec((any::<bool>(), term()), 0..6)) {
        let text = terms
            .iter()
            .map(|(neg, t)| if *neg { format!("!{t}") } else { t.clone() })
            .collect::<Vec<_>>()
            .join(" ");
        if let Ok(filter) = EventFilter::parse(&text) {
            let shown = filter.to_string();
            let back = EventFilter::parse(&shown);
            prop_assert_eq!(back.as_ref(), Ok(&filter), "{} -> {}", text, shown);
        }
    }

    #[test]
    fn globs_match_like_the_oracle(pattern in "[ab.*?]{0,8}", text in "[ab.]{0,10}") {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        prop_assert_eq!(Glob::new(&pattern).matches(&text), oracle(&p, &t), "{} vs {}", pattern, text);
    }
}
