//! Scrubbing past what the monitor holds, on the monitor's state: a source that keeps more (the
//! stream) hands over an archive link; keys that leave the held history ask it for pages, which open
//! as a past view; its ends lead to the page before, the page after, or back to the live view.

mod tui_support;

use ipckit::top::{
    update, Action, Anchor, ArchiveLink, ArchivePage, ArchiveRequest, Mode, SourceMsg, State,
};
use ipckit::BusStats;
use ratatui::crossterm::event::KeyCode;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;
use tui_support::*;

/// 3,000 events in the stream (ids 1..=3000, as `workload` makes them); the monitor holds the
/// newest 1,000 and has the stream's archive link.
fn holding_the_newest_thousand() -> (
    State,
    UnboundedReceiver<ArchiveRequest>,
    Vec<Arc<ipckit::Event>>,
) {
    let all = workload(3000);
    let mut state = state_with(1000, None);
    let (link, requests) = ArchiveLink::new();
    update(&mut state, Action::Archive(link));
    update(&mut state, Action::Stats(BusStats::default()));
    feed(&mut state, all[2000..].to_vec());
    (state, requests, all)
}

/// The source's answer to `request`, from `all` (ids 1..=len).
fn answer(request: ArchiveRequest, all: &[Arc<ipckit::Event>]) -> Action {
    let (from, to) = match request.anchor {
        Anchor::Before(id) => (id.saturating_sub(request.count as u64).max(1), id - 1),
        Anchor::After(id) => (id + 1, id + request.count as u64),
        Anchor::Oldest => (1, request.count as u64),
    };
    let events: Vec<_> = all
        .iter()
        .filter(|e| (from..=to).contains(&e.id))
        .cloned()
        .collect();
    Action::Page(ArchivePage {
        request,
        msgs: vec![SourceMsg::EventsFrom {
            origin: Arc::from("farm-1"),
            events,
        }],
        first_kept: 1,
        error: None,
    })
}

fn cursor_id(state: &State) -> u64 {
    state.shown().scrub_event().map_or(0, |e| e.id)
}

#[test]
fn the_scrubber_reads_older_pages_from_the_source_and_comes_back_to_live() {
    let (mut state, mut requests, all) = holding_the_newest_thousand();
    key(&mut state, KeyCode::Home);
    assert_eq!(
        cursor_id(&state),
        2001,
        "Home first goes to the oldest held event"
    );
    assert!(
        requests.try_recv().is_err(),
        "nothing asked while the held history has more"
    );

    // One more step back: the page before the oldest held event is asked for.
    key(&mut state, KeyCode::Left);
    let request = requests.try_recv().expect("a page request");
    assert_eq!(
        request,
        ArchiveRequest {
            anchor: Anchor::Before(2001),
            count: 1000
        }
    );
    assert!(state.archive_pending());
    assert_eq!(
        state.notice(),
        Some("reading older events from the stream…")
    );
    // Keys pressed while it is on its way ask for nothing more.
    key(&mut state, KeyCode::Left);
    assert!(requests.try_recv().is_err());

    update(&mut state, answer(request, &all));
    let past = state.shown();
    assert_eq!(past.mode(), Mode::Scrubbing);
    assert_eq!(
        cursor_id(&state),
        2000,
        "the cursor is on the event just before"
    );
    assert_eq!(past.history_len(), 1000);
    let span = past.page_span().expect("a past view");
    assert_eq!((span.first, span.last, span.first_kept), (1001, 2000, 1));
    let header = screen(&state, 120, 30)[0].clone();
    assert!(
        header.contains("OLDER THAN HELD #1,001–#2,000 (stream from #1)"),
        "{header}"
    );
    assert!(header.contains("SCRUBBING"), "{header}");

    // The live view goes on taking events underneath.
    feed(&mut state, workload(3005)[3000..].to_vec());
    assert_eq!(state.received(), 1005);
    assert_eq!(cursor_id(&state), 2000);

    // Inside the page the keys move as usual; past its start, the page before is read.
    key(&mut state, KeyCode::Left);
    assert_eq!(cursor_id(&state), 1999);
    key(&mut state, KeyCode::Home);
    assert_eq!(cursor_id(&state), 1001);
    key(&mut state, KeyCode::Home);
    let request = requests.try_recv().expect("the oldest page");
    assert_eq!(request.anchor, Anchor::Oldest);
    update(&mut state, answer(request, &all));
    assert_eq!(cursor_id(&state), 1, "the oldest event the stream keeps");
    key(&mut state, KeyCode::Left);
    assert!(requests.try_recv().is_err(), "nothing is older");
    assert_eq!(
        state.shown().notice(),
        Some("the oldest event the stream keeps")
    );

    // Forwards: past the page's end, the page after; once that reaches the held history, live
    // takes over at its oldest event.
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, "task.*");
    key(&mut state, KeyCode::Enter);
    assert_eq!(
        state.shown().match_count(),
        400,
        "the filter applies to the page"
    );
    assert!(state
        .shown()
        .visible_events()
        .iter()
        .all(|e| e.event_type.starts_with("task.")));
    key(&mut state, KeyCode::Char('G'));
    assert_eq!(state.mode(), Mode::Live, "End / G leave the past view");
    assert!(state.page_span().is_none());
    assert_eq!(
        state.applied_filter(),
        "task.*",
        "the filter set meanwhile is kept"
    );

    // Again, back and then all the way forward with → .
    key(&mut state, KeyCode::Home);
    key(&mut state, KeyCode::Left);
    let request = requests.try_recv().unwrap();
    assert_eq!(request.anchor, Anchor::Before(2006));
    update(&mut state, answer(request, &all));
    assert_eq!(cursor_id(&state), 2005, "the newest task event before 2006");
    key(&mut state, KeyCode::Right);
    assert!(
        state.page_span().is_none(),
        "the page reached the held history"
    );
    assert_eq!(state.mode(), Mode::Scrubbing);
    assert_eq!(cursor_id(&state), 2006, "the oldest held match");
}

#[test]
fn a_page_that_failed_says_why_and_one_no_longer_waited_for_is_dropped() {
    let (mut state, mut requests, all) = holding_the_newest_thousand();
    key(&mut state, KeyCode::Home);
    key(&mut state, KeyCode::Left);
    let request = requests.try_recv().unwrap();
    update(
        &mut state,
        Action::Page(ArchivePage {
            request,
            msgs: Vec::new(),
            first_kept: 0,
            error: Some("timed out".into()),
        }),
    );
    assert!(state.page_span().is_none());
    assert_eq!(
        state.notice(),
        Some("cannot read the stream back: timed out")
    );

    key(&mut state, KeyCode::Left);
    let request = requests.try_recv().unwrap();
    key(&mut state, KeyCode::End);
    update(&mut state, answer(request, &all));
    assert!(state.page_span().is_none(), "left before it came: dropped");
    assert_eq!(state.mode(), Mode::Live);
}

#[test]
fn without_an_archive_or_with_nothing_older_the_scrubber_stops_at_the_oldest_held() {
    // A socket source: no link.
    let mut state = state_with(1000, None);
    feed(&mut state, workload(3000));
    key(&mut state, KeyCode::Home);
    key(&mut state, KeyCode::Left);
    assert_eq!(cursor_id(&state), 2001);
    assert!(state.page_span().is_none());

    // A stream whose limits dropped everything before the held history.
    let (mut state, mut requests, _) = holding_the_newest_thousand();
    update(
        &mut state,
        Action::Stats(BusStats {
            dropped: 2000,
            ..BusStats::default()
        }),
    );
    key(&mut state, KeyCode::Home);
    key(&mut state, KeyCode::Left);
    key(&mut state, KeyCode::Home);
    assert!(requests.try_recv().is_err());
    assert_eq!(cursor_id(&state), 2001);
}
