//! Key-sequence tests on the monitor's state: keys go through the real key map and `update`.

mod tui_support;

use ipckit::top::{update, Action, Connection, Focus, Mode, Row, SCAN_SLICE};
use ipckit::Event;
use ratatui::crossterm::event::{KeyCode, KeyModifiers};
use std::time::Duration;
use tui_support::*;

#[test]
fn follow_pause_scroll_and_back_to_live() {
    let mut state = state_with(1000, None);
    feed(&mut state, workload(100));
    assert_eq!(state.mode(), Mode::Live);
    assert_eq!(state.selected_event().unwrap().id, 100);
    assert_eq!(state.visible_events().last().unwrap().id, 100);

    key(&mut state, KeyCode::Char('k'));
    assert_eq!(state.mode(), Mode::Paused);
    assert_eq!(state.selected_event().unwrap().id, 99);
    // New events arrive below a paused view without moving it.
    let before: Vec<u64> = state.visible_events().iter().map(|e| e.id).collect();
    feed(
        &mut state,
        vec![stamped(Event::stdout("x", "late"), 101, 2.0)],
    );
    let after: Vec<u64> = state.visible_events().iter().map(|e| e.id).collect();
    assert_eq!(before, after);

    key(&mut state, KeyCode::Char('g'));
    assert_eq!(state.selected_event().unwrap().id, 1);
    assert_eq!(state.visible_events()[0].id, 1);
    key(&mut state, KeyCode::PageDown);
    let rows = state.visible_events().len() as u64;
    assert_eq!(state.selected_event().unwrap().id, 1 + rows);
    key(&mut state, KeyCode::Char('j'));
    assert_eq!(state.selected_event().unwrap().id, 2 + rows);
    key(&mut state, KeyCode::PageUp);
    assert_eq!(state.selected_event().unwrap().id, 2);

    key(&mut state, KeyCode::Char('G'));
    assert_eq!(state.mode(), Mode::Live);
    assert_eq!(state.selected_event().unwrap().id, 101);
    key(&mut state, KeyCode::Char(' '));
    assert_eq!(state.mode(), Mode::Paused);
    assert_eq!(state.selected_event().unwrap().id, 101);
    key(&mut state, KeyCode::Char('p'));
    assert_eq!(state.mode(), Mode::Live);
}

#[test]
fn filter_refilters_on_each_key_and_enter_keeps_it() {
    let mut state = state_with(1000, None);
    feed(&mut state, workload(100));
    assert_eq!(state.match_count(), 100);
    key(&mut state, KeyCode::Char('/'));
    assert_eq!(state.focus(), Focus::Filter);
    // `q` and `j` are text while editing.
    typed(&mut state, "log.*");
    assert_eq!(state.filter_text(), "log.*");
    assert_eq!(state.match_count(), 40);
    key(&mut state, KeyCode::Backspace);
    key(&mut state, KeyCode::Backspace);
    assert_eq!(state.applied_filter(), "log");
    assert_eq!(state.match_count(), 0);
    typed(&mut state, ".warn");
    assert_eq!(state.match_count(), 20);
    key(&mut state, KeyCode::Enter);
    assert_eq!(state.focus(), Focus::Events);
    assert!(state
        .visible_events()
        .iter()
        .all(|e| e.event_type == "log.warn"));

    // Esc restores the filter in force before editing.
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, " res:none");
    assert_eq!(state.match_count(), 0);
    key(&mut state, KeyCode::Esc);
    assert_eq!(state.focus(), Focus::Events);
    assert_eq!(state.applied_filter(), "log.warn");
    assert_eq!(state.filter_text(), "log.warn");
    assert_eq!(state.match_count(), 20);
}

#[test]
fn invalid_filter_names_the_term_and_keeps_the_last_valid_one() {
    let mut state = state_with(1000, Some("task.*"));
    feed(&mut state, workload(50));
    assert_eq!(state.match_count(), 20, "task.started and task.progress");
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, " bogus:1");
    let error = state.filter_error().expect("bogus:1 does not parse");
    assert_eq!(error.term(), "bogus:1");
    assert!(error.to_string().contains("bogus"), "{error}");
    assert_eq!(state.applied_filter().trim(), "task.* bogus");
    // Enter does not accept an invalid expression.
    key(&mut state, KeyCode::Enter);
    assert_eq!(state.focus(), Focus::Filter);
    key(&mut state, KeyCode::Esc);
    assert!(state.filter_error().is_none());
    assert_eq!(state.applied_filter(), "task.*");
    assert_eq!(state.match_count(), 20, "task.started and task.progress");
}

#[test]
fn up_and_down_recall_earlier_filters() {
    let mut state = state_with(1000, Some("task.*"));
    feed(&mut state, workload(50));
    key(&mut state, KeyCode::Char('/'));
    key_with(&mut state, KeyCode::Char('u'), KeyModifiers::CONTROL);
    typed(&mut state, "log.*");
    key(&mut state, KeyCode::Enter);
    key(&mut state, KeyCode::Char('/'));
    key_with(&mut state, KeyCode::Char('u'), KeyModifiers::CONTROL);
    typed(&mut state, "mcp");
    key(&mut state, KeyCode::Up);
    assert_eq!(state.filter_text(), "log.*");
    assert_eq!(state.match_count(), 20);
    key(&mut state, KeyCode::Up);
    assert_eq!(state.filter_text(), "task.*");
    key(&mut state, KeyCode::Down);
    assert_eq!(state.filter_text(), "log.*");
    key(&mut state, KeyCode::Down);
    assert_eq!(state.filter_text(), "mcp");
}

#[test]
fn scrubbing_shows_the_past_while_live_events_arrive() {
    let mut state = state_with(1000, None);
    let events = (0..10u64)
        .map(|i| {
            stamped(
                Event::progress("job", i * 10, 100, "working"),
                i + 1,
                i as f64,
            )
        })
        .collect();
    feed(&mut state, events);
    assert_eq!(state.shown_gauges()[0].current, 90.0);

    key(&mut state, KeyCode::Left);
    assert_eq!(state.mode(), Mode::Scrubbing);
    assert_eq!(state.scrub_event().unwrap().id, 9);
    assert_eq!(state.shown_gauges()[0].current, 80.0);
    assert_eq!(state.visible_events().last().unwrap().id, 9);

    feed(
        &mut state,
        vec![stamped(Event::progress("job", 100, 100, "done"), 11, 10.0)],
    );
    assert_eq!(state.scrub_event().unwrap().id, 9);
    assert_eq!(state.shown_gauges()[0].current, 80.0);

    key(&mut state, KeyCode::Char('['));
    assert_eq!(state.scrub_event().unwrap().id, 8);
    key(&mut state, KeyCode::Home);
    assert_eq!(state.scrub_event().unwrap().id, 1);
    assert_eq!(state.shown_gauges()[0].current, 0.0);
    key(&mut state, KeyCode::Right);
    key(&mut state, KeyCode::Char(']'));
    assert_eq!(state.scrub_event().unwrap().id, 3);
    assert_eq!(state.shown_gauges()[0].current, 20.0);

    key(&mut state, KeyCode::Char('L'));
    assert_eq!(state.mode(), Mode::Live);
    assert_eq!(state.shown_gauges()[0].current, 100.0);
    key(&mut state, KeyCode::Left);
    key(&mut state, KeyCode::End);
    assert_eq!(state.mode(), Mode::Live);
}

#[test]
fn replay_cycles_speeds_and_plays_forward_to_live() {
    let mut state = state_with(1000, None);
    let events = (0..20u64)
        .map(|i| stamped(Event::stdout("r", "line"), i + 1, i as f64))
        .collect();
    feed(&mut state, events);
    key(&mut state, KeyCode::Char('r'));
    assert_eq!(state.replay_speed(), None, "replay needs a cursor");
    key(&mut state, KeyCode::Home);
    key(&mut state, KeyCode::Char('r'));
    assert_eq!(state.replay_speed(), Some(1));
    update(&mut state, Action::Tick { now: at(2.5) });
    assert_eq!(state.scrub_event().unwrap().id, 3);
    key(&mut state, KeyCode::Char('r'));
    assert_eq!(state.replay_speed(), Some(10));
    update(&mut state, Action::Tick { now: at(3.5) });
    assert_eq!(state.scrub_event().unwrap().id, 13);
    key(&mut state, KeyCode::Char('r'));
    assert_eq!(state.replay_speed(), Some(100));
    assert!(!state.replay_original_pace());
    key(&mut state, KeyCode::Char('r'));
    assert_eq!(state.replay_speed(), Some(1));
    assert!(state.replay_original_pace());
    key(&mut state, KeyCode::Char('r'));
    assert_eq!(state.replay_speed(), None);
    key(&mut state, KeyCode::Char(' '));
    assert_eq!(state.replay_speed(), Some(1));
    update(&mut state, Action::Tick { now: at(30.0) });
    assert_eq!(state.mode(), Mode::Live, "replay that catches up goes live");
}

/// Events at 0 s, 1 s, then after a silence of 99 s, at 100 s and 101 s.
fn with_a_long_silence() -> ipckit::top::State {
    let mut state = state_with(1000, None);
    let events = [0.0, 1.0, 100.0, 101.0]
        .iter()
        .enumerate()
        .map(|(i, &t)| stamped(Event::stdout("r", "line"), i as u64 + 1, t))
        .collect();
    feed(&mut state, events);
    key(&mut state, KeyCode::Home);
    state
}

#[test]
fn replay_cuts_a_long_silence_to_a_second_except_at_the_original_pace() {
    let mut state = with_a_long_silence();
    key(&mut state, KeyCode::Char('r'));
    update(&mut state, Action::Tick { now: at(1.5) });
    assert_eq!(state.scrub_event().unwrap().id, 2);
    // 98.5 s to the next event: cut to one.
    update(&mut state, Action::Tick { now: at(2.6) });
    assert_eq!(
        state.scrub_event().unwrap().id,
        3,
        "the silence was cut short"
    );

    let mut state = with_a_long_silence();
    for _ in 0..4 {
        key(&mut state, KeyCode::Char('r'));
    }
    assert!(state.replay_original_pace());
    update(&mut state, Action::Tick { now: at(1.5) });
    assert_eq!(state.scrub_event().unwrap().id, 2);
    update(&mut state, Action::Tick { now: at(2.6) });
    assert_eq!(
        state.scrub_event().unwrap().id,
        2,
        "every silence as it was"
    );
    update(&mut state, Action::Tick { now: at(100.5) });
    assert_eq!(state.scrub_event().unwrap().id, 3);
    let s = screen(&state, 120, 30);
    assert!(
        s.iter().any(|l| l.contains("▶ original pace")),
        "{}",
        s.join("\n")
    );
}

#[test]
fn history_is_bounded_and_scrubbing_reaches_its_oldest_event() {
    let mut state = state_with(100, None);
    for chunk in workload(10_000).chunks(333) {
        feed(&mut state, chunk.to_vec());
    }
    assert_eq!(state.history_len(), 100);
    assert_eq!(state.match_count(), 100);
    assert_eq!(state.received(), 10_000);
    key(&mut state, KeyCode::Home);
    assert_eq!(state.scrub_event().unwrap().id, 9_901);
    // The gauges at the oldest kept event include what came before it.
    let gauges = state.shown_gauges();
    assert!(gauges
        .iter()
        .any(|g| g.key == "render-token" && g.current == 97.0));
}

#[test]
fn a_new_filter_over_a_long_history_is_counted_in_slices() {
    let mut state = state_with(100_000, None);
    for chunk in workload(100_000).chunks(4096) {
        feed(&mut state, chunk.to_vec());
    }
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, "log.warn");
    assert!(state.has_background_work());
    assert!(state.match_count() < 20_000);
    // The rows on screen are right at once: the newest matches are tested first.
    assert!(state
        .visible_events()
        .iter()
        .all(|e| e.event_type == "log.warn"));
    assert_eq!(state.visible_events().last().unwrap().id, 99_999);
    let mut slices = 0;
    while state.has_background_work() {
        update(&mut state, Action::Scan);
        slices += 1;
    }
    assert!(slices >= 100_000 / SCAN_SLICE - 1);
    assert_eq!(state.match_count(), 20_000);
}

#[test]
fn detail_help_and_quit_keys() {
    let mut state = state_with(1000, None);
    feed(&mut state, workload(3));
    key(&mut state, KeyCode::Enter);
    assert_eq!(state.focus(), Focus::Detail);
    let detail = state.detail().unwrap();
    assert_eq!(detail.title, "event #3 mcp.notifications.progress");
    assert!(detail
        .lines
        .iter()
        .any(|l| l.contains("\"progressToken\": \"render-token\"")));
    key(&mut state, KeyCode::Esc);
    assert_eq!(state.focus(), Focus::Events);

    key(&mut state, KeyCode::Char('?'));
    assert_eq!(state.focus(), Focus::Help);
    key(&mut state, KeyCode::Char('q'));
    assert_eq!(state.focus(), Focus::Events);
    assert!(!state.should_quit());

    assert_eq!(release(&state, KeyCode::Char('q')), None);
    key(&mut state, KeyCode::Char('/'));
    key_with(&mut state, KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert!(state.should_quit());

    let mut state = state_with(10, None);
    key(&mut state, KeyCode::Char('q'));
    assert!(state.should_quit());
}

#[test]
fn source_messages_set_connection_and_counters() {
    let mut state = state_with(10, None);
    assert_eq!(*state.connection(), Connection::Connecting);
    update(
        &mut state,
        Action::Connected {
            socket: "a.sock".into(),
            hosted: false,
        },
    );
    update(
        &mut state,
        Action::Disconnected {
            retry_in: Duration::from_secs(3),
        },
    );
    assert_eq!(
        *state.connection(),
        Connection::Disconnected {
            socket: Some("a.sock".into()),
            retry_at: Some(at(3.0))
        }
    );
    feed(&mut state, workload(5));
    update(&mut state, Action::Tick { now: at(0.5) });
    assert_eq!(state.rate(), 5.0);
    update(&mut state, Action::Tick { now: at(2.0) });
    assert_eq!(state.rate(), 0.0);
}

#[test]
fn an_invalid_initial_filter_is_refused() {
    let options = ipckit::top::TopOptions {
        filter: Some("res:".into()),
        ..Default::default()
    };
    assert!(ipckit::top::State::new(&options).is_err());
}

#[test]
fn detail_scrolls_through_wrapped_lines_to_the_end() {
    let mut state = detail_of_message(&"0123456789".repeat(60), 80, 24);
    let lines = state.detail().unwrap().lines.len();
    for _ in 0..100 {
        key(&mut state, KeyCode::Char('j'));
    }
    // The 600-character message takes several rows at 80 columns; j reaches the last of them.
    let scroll = state.detail().unwrap().scroll;
    assert!(scroll > lines, "scroll {scroll}, lines {lines}");
    let s = screen(&state, 80, 24);
    assert!(s.iter().any(|l| l.contains("}")), "{}", s.join("\n"));
}

fn lost(count: u64, first: u64) -> ipckit::top::Loss {
    ipckit::top::Loss {
        count,
        first_id: Some(first),
        last_id: Some(first + count - 1),
        reason: ipckit::top::LossReason::Lagged,
    }
}

/// The event pane's rows as text: `#id` for an event, `lost N` for a loss marker.
fn rows(state: &ipckit::top::State) -> Vec<String> {
    state
        .visible_rows()
        .iter()
        .map(|row| match row {
            Row::Event(e) => format!("#{}", e.id),
            Row::Lost(l) => format!("lost {}", l.count),
        })
        .collect()
}

/// Events `ids` (a log line, a task event, in turn), one second apart.
fn events(ids: std::ops::RangeInclusive<u64>) -> Vec<std::sync::Arc<Event>> {
    ids.map(|id| {
        let event = if id % 2 == 0 {
            Event::stdout("job", "line")
        } else {
            Event::with_resource("task.progress", "job", serde_json::json!({}))
        };
        stamped(event, id, id as f64)
    })
    .collect()
}

#[test]
fn a_loss_row_sits_where_events_were_missed_and_stays_there_paused_and_scrolled() {
    let mut state = state_with(1000, None);
    feed(&mut state, events(1..=30));
    update(&mut state, Action::Lost(lost(5, 31)));
    feed(&mut state, events(36..=40));
    assert_eq!(state.lost(), 5);
    let live = rows(&state);
    let at = live.iter().position(|r| r == "lost 5").unwrap();
    assert_eq!(live[at - 1], "#30");
    assert_eq!(live[at + 1], "#36");
    assert_eq!(live.last().unwrap(), "#40");
    // Live, the newest event is still the selected one.
    assert_eq!(state.selected_event().unwrap().id, 40);

    // Paused: more events and another loss arrive below without moving it.
    key(&mut state, KeyCode::Char(' '));
    assert_eq!(state.mode(), Mode::Paused);
    assert_eq!(state.selected_event().unwrap().id, 40);
    update(&mut state, Action::Lost(lost(2, 41)));
    feed(&mut state, events(43..=50));
    assert_eq!(rows(&state), live);

    // j/k walk over the loss row: it can be selected, and Enter tells what it is.
    for _ in 0..4 {
        key(&mut state, KeyCode::Char('k'));
    }
    assert_eq!(state.selected_event().unwrap().id, 36);
    key(&mut state, KeyCode::Char('k'));
    assert_eq!(state.selected_event(), None);
    assert_eq!(state.selected_loss(), Some(&lost(5, 31)));
    key(&mut state, KeyCode::Enter);
    let detail = state.detail().unwrap();
    assert_eq!(detail.title, "events lost");
    assert!(
        detail.lines.iter().any(|l| l.contains("#31 to #35")),
        "{detail:?}"
    );
    assert!(
        detail.lines.iter().any(|l| l.contains("fell behind")),
        "{detail:?}"
    );
    key(&mut state, KeyCode::Esc);
    key(&mut state, KeyCode::Char('k'));
    assert_eq!(state.selected_event().unwrap().id, 30);

    // Scrolled to the top and back down, the rows are the same.
    key(&mut state, KeyCode::Char('g'));
    assert_eq!(rows(&state)[0], "#1");
    key(&mut state, KeyCode::Char('G'));
    let live = rows(&state);
    let at = live.iter().position(|r| r == "lost 2").unwrap();
    assert_eq!(
        (live[at - 1].as_str(), live[at + 1].as_str()),
        ("#40", "#43")
    );
}

#[test]
fn scrubbing_shows_a_loss_row_only_once_the_cursor_is_past_it() {
    let mut state = state_with(1000, None);
    feed(&mut state, events(1..=10));
    update(&mut state, Action::Lost(lost(3, 11)));
    feed(&mut state, events(14..=20));
    for _ in 0..7 {
        key(&mut state, KeyCode::Left);
    }
    assert_eq!(state.scrub_event().unwrap().id, 10);
    assert!(
        !rows(&state).contains(&"lost 3".to_owned()),
        "{:?}",
        rows(&state)
    );
    key(&mut state, KeyCode::Right);
    assert_eq!(state.scrub_event().unwrap().id, 14);
    assert_eq!(
        rows(&state).iter().rev().take(3).collect::<Vec<_>>(),
        ["#14", "lost 3", "#10"]
    );
    assert_eq!(state.selected_event().unwrap().id, 14);
}

#[test]
fn no_filter_hides_a_loss_row() {
    let mut state = state_with(1000, Some("task.*"));
    feed(&mut state, events(1..=10));
    update(&mut state, Action::Lost(lost(4, 11)));
    feed(&mut state, events(15..=20));
    assert_eq!(
        rows(&state),
        ["#1", "#3", "#5", "#7", "#9", "lost 4", "#15", "#17", "#19"]
    );
    // A filter nothing matches still shows that something is missing.
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, " res:nobody");
    key(&mut state, KeyCode::Enter);
    assert_eq!(state.match_count(), 0);
    assert_eq!(rows(&state), ["lost 4"]);
}

#[test]
fn a_loss_row_leaves_with_the_events_around_it_and_the_count_stays() {
    let mut state = state_with(10, None);
    feed(&mut state, events(1..=5));
    update(&mut state, Action::Lost(lost(10, 6)));
    update(&mut state, Action::Lost(lost(5, 16)));
    feed(&mut state, events(21..=29));
    // Events 1..=4 left; the marker (one row for the two reports) is after #5, still held.
    assert_eq!(rows(&state)[..3], ["#5", "lost 15", "#21"]);
    // #5 leaves: the marker stays at the top, saying why history starts with a gap.
    feed(&mut state, events(30..=30));
    assert_eq!(rows(&state)[..2], ["lost 15", "#21"]);
    // #21 leaves too: so does the marker.
    feed(&mut state, events(31..=31));
    assert_eq!(rows(&state)[0], "#22");
    assert!(!rows(&state).iter().any(|r| r.starts_with("lost")));
    assert_eq!(state.lost(), 15, "this monitor lost them, history or not");
}

#[test]
fn the_bus_dropped_count_is_measured_from_when_the_monitor_attached() {
    let mut state = state_with(10, None);
    let stats = |dropped| {
        Action::Stats(ipckit::BusStats {
            published: 1000,
            subscribers: 2,
            dropped,
            ..Default::default()
        })
    };
    let connected = || Action::Connected {
        socket: "a.sock".into(),
        hosted: false,
    };
    update(&mut state, connected());
    update(&mut state, stats(282_336));
    assert_eq!(state.stats().dropped, 282_336);
    assert_eq!(state.bus_dropped_since_attach(), 0);
    update(&mut state, stats(282_400));
    assert_eq!(state.bus_dropped_since_attach(), 64);
    // Attached again (the bus came back): measured from there.
    update(&mut state, connected());
    update(&mut state, stats(282_400));
    assert_eq!(state.bus_dropped_since_attach(), 0);
    // A new bus behind the socket counts from 0.
    update(&mut state, stats(3));
    assert_eq!(state.bus_dropped_since_attach(), 0);
    update(&mut state, stats(5));
    assert_eq!(state.bus_dropped_since_attach(), 2);
    assert_eq!(
        state.lost(),
        0,
        "what the bus dropped is not what this monitor lost"
    );
}

/// Tasks `a` and `b` with progress, logs and lifecycle, one second apart, and a call `c1` through
/// the MCP proxy (resource `srv`).
fn jobs() -> Vec<std::sync::Arc<Event>> {
    let call = |t: &str, data: serde_json::Value| Event::with_resource(t, "srv", data);
    let events = vec![
        Event::with_resource("task.started", "a", serde_json::json!({})),
        Event::progress("a", 1, 10, "a1"),
        Event::stdout("a", "a says"),
        Event::with_resource("task.started", "b", serde_json::json!({})),
        Event::progress("b", 1, 4, "b1"),
        Event::stdout("b", "b says"),
        call(
            "mcp.request",
            serde_json::json!({"from": "client", "method": "tools/call", "tool": "render", "call": "c1", "progressToken": "c1"}),
        ),
        call(
            "mcp.notifications.progress",
            serde_json::json!({"progressToken": "c1", "call": "c1", "tool": "render", "progress": 1, "total": 2}),
        ),
        Event::progress("a", 2, 10, "a2"),
        Event::progress("b", 2, 4, "b2"),
        Event::stdout("srv", "server log"),
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| stamped(e, i as u64 + 1, i as f64))
        .collect()
}

#[test]
fn pause_counts_what_arrives_matching_and_in_all_and_resuming_shows_it() {
    let mut state = state_with(1000, Some("log.*"));
    feed(&mut state, workload(100));
    assert_eq!(state.paused(), None, "live: nothing to count");
    key(&mut state, KeyCode::Char(' '));
    assert_eq!(
        state.paused(),
        Some(ipckit::top::Paused {
            matching: 0,
            arrived: 0
        })
    );
    let newest_before = state.selected_event().unwrap().id;
    let more: Vec<_> = workload(110).into_iter().skip(100).collect();
    feed(&mut state, more);
    // Ten arrived, four of them log lines (#102, #104, #107, #109).
    assert_eq!(
        state.paused(),
        Some(ipckit::top::Paused {
            matching: 4,
            arrived: 10
        })
    );
    assert_eq!(
        state.selected_event().unwrap().id,
        newest_before,
        "held still"
    );
    // A new filter recounts what arrived since the pause.
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, " !log.warn");
    key(&mut state, KeyCode::Enter);
    assert_eq!(state.paused().unwrap().matching, 2);
    // Resuming jumps to them: live, the newest match selected and on screen.
    key(&mut state, KeyCode::Char('p'));
    assert_eq!(state.mode(), Mode::Live);
    assert_eq!(state.paused(), None);
    assert_eq!(state.selected_event().unwrap().id, 107);
    assert_eq!(state.visible_events().last().unwrap().id, 107);

    // Scrolling up pauses too, and counts from there; L goes live and drops the count.
    key(&mut state, KeyCode::Char('k'));
    assert_eq!(state.mode(), Mode::Paused);
    feed(&mut state, workload(113).into_iter().skip(110).collect());
    assert_eq!(state.paused().unwrap().arrived, 3);
    key(&mut state, KeyCode::Char('k'));
    assert_eq!(
        state.paused().unwrap().arrived,
        3,
        "moving on does not restart it"
    );
    key(&mut state, KeyCode::Char('L'));
    assert_eq!(state.paused(), None);
}

#[test]
fn tab_moves_the_focus_and_j_k_select_gauges_there() {
    let mut state = state_with(1000, None);
    feed(&mut state, jobs());
    update(&mut state, Action::Tick { now: at(11.0) });
    let order: Vec<String> = state.shown_gauges().iter().map(|g| g.key.clone()).collect();
    assert_eq!(order, ["a", "b", "c1"]);
    assert_eq!(state.focus(), Focus::Events);
    key(&mut state, KeyCode::Tab);
    assert_eq!(state.focus(), Focus::Progress);
    assert_eq!(state.selected_gauge().unwrap().key, "a");
    let selected_event = state.selected_event().map(|e| e.id);
    key(&mut state, KeyCode::Char('j'));
    assert_eq!(state.selected_gauge().unwrap().key, "b");
    assert_eq!(state.mode(), Mode::Live, "j selects a gauge, not an event");
    assert_eq!(state.selected_event().map(|e| e.id), selected_event);
    key(&mut state, KeyCode::Down);
    key(&mut state, KeyCode::Down);
    assert_eq!(
        state.selected_gauge().unwrap().key,
        "c1",
        "stops at the last"
    );
    key(&mut state, KeyCode::Char('k'));
    assert_eq!(state.selected_gauge().unwrap().key, "b");
    key(&mut state, KeyCode::Char('g'));
    assert_eq!(state.selected_gauge().unwrap().key, "a");
    key(&mut state, KeyCode::Char('G'));
    assert_eq!(state.selected_gauge().unwrap().key, "c1");
    // Shift-Tab back; the selection is remembered.
    key_with(&mut state, KeyCode::BackTab, KeyModifiers::SHIFT);
    assert_eq!(state.focus(), Focus::Events);
    key(&mut state, KeyCode::Char('k'));
    assert_eq!(
        state.mode(),
        Mode::Paused,
        "in the event pane j/k move the events"
    );
    key(&mut state, KeyCode::Tab);
    assert_eq!(state.selected_gauge().unwrap().key, "c1");
    // The selection follows its gauge when the order changes: `b` finishes and moves down.
    key(&mut state, KeyCode::Char('k'));
    assert_eq!(state.selected_gauge().unwrap().key, "b");
    feed(
        &mut state,
        vec![stamped(Event::progress("b", 4, 4, "done"), 20, 12.0)],
    );
    let order: Vec<String> = state.shown_gauges().iter().map(|g| g.key.clone()).collect();
    assert_eq!(order, ["a", "c1", "b"]);
    assert_eq!(state.selected_gauge().unwrap().key, "b");
    // Esc in the progress pane goes back to the event pane; keys common to both work in both.
    key(&mut state, KeyCode::Esc);
    assert_eq!(state.focus(), Focus::Events);
    key(&mut state, KeyCode::Tab);
    key(&mut state, KeyCode::Char('?'));
    assert_eq!(state.focus(), Focus::Help);
    key(&mut state, KeyCode::Esc);
    assert_eq!(
        state.focus(),
        Focus::Progress,
        "the help closes back to the progress pane"
    );
    key(&mut state, KeyCode::Left);
    assert_eq!(state.mode(), Mode::Scrubbing);
}

#[test]
fn enter_on_a_gauge_shows_only_its_events_and_esc_goes_back() {
    let mut state = state_with(1000, Some("!log.stdout"));
    feed(&mut state, jobs());
    update(&mut state, Action::Tick { now: at(11.0) });
    assert_eq!(state.match_count(), 8);
    key(&mut state, KeyCode::Tab);
    key(&mut state, KeyCode::Char('j'));
    key(&mut state, KeyCode::Enter);
    // The filter bar says what is shown, as an expression that can be edited.
    assert_eq!(state.focus(), Focus::Events);
    assert_eq!(state.filter_text(), "res:b");
    assert_eq!(state.applied_filter(), "res:b");
    assert_eq!(state.drilled_gauge(), Some(("b", "b")));
    let ids: Vec<u64> = state.visible_events().iter().map(|e| e.id).collect();
    assert_eq!(ids, [4, 5, 6, 10]);
    // Esc: the filter before, and the progress pane with the gauge still selected.
    key(&mut state, KeyCode::Esc);
    assert_eq!(state.applied_filter(), "!log.stdout");
    assert_eq!(state.match_count(), 8);
    assert_eq!(state.focus(), Focus::Progress);
    assert_eq!(state.selected_gauge().unwrap().key, "b");
    assert_eq!(state.drilled_gauge(), None);
    // The filter history recalls it.
    key(&mut state, KeyCode::Esc);
    key(&mut state, KeyCode::Char('/'));
    key(&mut state, KeyCode::Up);
    assert_eq!(state.filter_text(), "res:b");
    key(&mut state, KeyCode::Esc);
    assert_eq!(state.applied_filter(), "!log.stdout");

    // A tool call through the MCP proxy: its request, progress and response, by its call key.
    key(&mut state, KeyCode::Tab);
    key(&mut state, KeyCode::Char('G'));
    key(&mut state, KeyCode::Enter);
    assert_eq!(state.filter_text(), "call=c1");
    let ids: Vec<u64> = state.visible_events().iter().map(|e| e.id).collect();
    assert_eq!(ids, [7, 8]);
    // From one gauge's events straight to another's: Esc still goes back to the filter before both.
    key(&mut state, KeyCode::Tab);
    key(&mut state, KeyCode::Char('g'));
    key(&mut state, KeyCode::Enter);
    assert_eq!(state.filter_text(), "res:a");
    key(&mut state, KeyCode::Esc);
    assert_eq!(state.applied_filter(), "!log.stdout");

    // Another filter kept after drilling down ends the drill-down: Esc leaves the filter alone.
    key(&mut state, KeyCode::Enter);
    assert_eq!(state.applied_filter(), "res:a");
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, " !log.*");
    key(&mut state, KeyCode::Enter);
    assert_eq!(state.drilled_gauge(), None);
    key(&mut state, KeyCode::Esc);
    assert_eq!(state.applied_filter(), "res:a !log.*");
    assert_eq!(state.focus(), Focus::Events);
}

#[test]
fn gauges_keep_their_flags_when_scrubbing_back_to_them() {
    let mut state = state_with(1000, None);
    // `job` goes backwards at #3, then is silent from 3 s to 40 s (while `tick` reports) and goes on.
    let mut events = vec![
        stamped(Event::progress("job", 5, 10, ""), 1, 1.0),
        stamped(Event::progress("job", 6, 10, ""), 2, 2.0),
        stamped(Event::progress("job", 4, 10, ""), 3, 3.0),
    ];
    events.extend((0..30u64).map(|i| {
        stamped(
            Event::mcp_progress("tick", i as f64, None, None),
            4 + i,
            10.0 + i as f64,
        )
    }));
    events.push(stamped(Event::progress("job", 7, 10, ""), 34, 40.0));
    feed(&mut state, events);
    update(&mut state, Action::Tick { now: at(40.0) });
    let job = |state: &ipckit::top::State| {
        let gauges = state.shown_gauges();
        let job = gauges.iter().find(|g| g.key == "job").unwrap();
        (
            job.flags.backwards,
            job.flags.stalled,
            job.stalled_for(state.gauge_clock()),
        )
    };
    assert_eq!(
        job(&state),
        (Some((6.0, 4.0)), Some(Duration::from_secs(37)), None)
    );
    // At #2 it had not gone backwards yet.
    key(&mut state, KeyCode::Home);
    key(&mut state, KeyCode::Right);
    assert_eq!(state.scrub_event().unwrap().id, 2);
    assert_eq!(job(&state), (None, None, None));
    // At #3 it had; at #20 (26 s) it was silent for 23 s: stalled, as it was then.
    key(&mut state, KeyCode::Right);
    assert_eq!(job(&state), (Some((6.0, 4.0)), None, None));
    for _ in 3..20 {
        key(&mut state, KeyCode::Right);
    }
    assert_eq!(state.scrub_event().unwrap().id, 20);
    assert_eq!(
        job(&state),
        (Some((6.0, 4.0)), None, Some(Duration::from_secs(23)))
    );
    // Back to live: the stall is over and kept as a flag.
    key(&mut state, KeyCode::Char('L'));
    assert_eq!(job(&state).1, Some(Duration::from_secs(37)));
}

#[test]
fn every_command_has_a_key_shown_in_help_and_the_footer_s_keys_do_what_it_says() {
    use ipckit::top::{action_for_key, footer, Command, KEYMAP};
    // Each command is bound, and its row is on the help screen.
    let mut state = state_with(1000, None);
    feed(&mut state, jobs());
    update(
        &mut state,
        Action::Resize {
            width: 160,
            height: 50,
        },
    );
    key(&mut state, KeyCode::Char('?'));
    let help = screen(&state, 160, 50);
    key(&mut state, KeyCode::Esc);
    for command in Command::ALL {
        let row = KEYMAP
            .iter()
            .find(|b| b.keys.iter().any(|(_, c)| c == command))
            .unwrap_or_else(|| panic!("{command:?} has no key"));
        assert!(
            help.iter()
                .any(|l| l.contains(&row.keys_label()) && l.contains(row.help)),
            "{command:?}: `{}  {}` not in the help:\n{}",
            row.keys_label(),
            row.help,
            help.join("\n")
        );
    }
    // In each focus, each key the footer names is dispatched to its command there.
    let check = |state: &ipckit::top::State, focus: Focus| {
        assert_eq!(state.focus(), focus);
        assert!(!footer(focus).is_empty(), "{focus:?}");
        for binding in footer(focus) {
            for &(key, command) in binding.footer_keys() {
                let event = key.event().unwrap();
                assert_eq!(
                    action_for_key(state, &event),
                    command.action(&event),
                    "{key:?} in {focus:?}"
                );
                assert!(command.action(&event).is_some());
            }
        }
    };
    check(&state, Focus::Events);
    key(&mut state, KeyCode::Tab);
    check(&state, Focus::Progress);
    key(&mut state, KeyCode::Char('/'));
    check(&state, Focus::Filter);
    key(&mut state, KeyCode::Esc);
    key(&mut state, KeyCode::Char('?'));
    check(&state, Focus::Help);
    key(&mut state, KeyCode::Esc);
    key(&mut state, KeyCode::Esc);
    key(&mut state, KeyCode::Enter);
    check(&state, Focus::Detail);
}

#[test]
fn each_term_of_the_filter_being_edited_counts_its_matches_alone_exactly() {
    let mut state = state_with(100_000, None);
    for chunk in workload(50_000).chunks(4096) {
        feed(&mut state, chunk.to_vec());
    }
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, "task.*");
    assert_eq!(
        state.term_counts(),
        [],
        "one term: its count is the match count"
    );
    typed(&mut state, " frame>=49000 res:nobody");
    let terms = state.term_counts();
    assert_eq!(
        terms.iter().map(|t| t.term.as_str()).collect::<Vec<_>>(),
        ["task.*", "frame>=49000", "res:nobody"]
    );
    assert_eq!(
        terms.iter().map(|t| t.column).collect::<Vec<_>>(),
        [1, 8, 21]
    );
    assert!(
        terms.iter().skip(1).all(|t| !t.complete),
        "just typed: partial"
    );
    while state.has_background_work() {
        update(&mut state, Action::Scan);
    }
    // task.started and task.progress are two in five; task.started (one in five) carries `frame`.
    let counts: Vec<(u64, bool)> = state
        .term_counts()
        .iter()
        .map(|t| (t.count, t.complete))
        .collect();
    assert_eq!(counts, [(20_000, true), (200, true), (0, true)]);
    assert_eq!(state.match_count(), 0);

    // Live events are counted as they arrive, and those leaving history take their count along.
    let more: Vec<_> = workload(60_000).into_iter().skip(50_000).collect();
    feed(&mut state, more);
    let counts: Vec<u64> = state.term_counts().iter().map(|t| t.count).collect();
    assert_eq!(counts, [24_000, 2_200, 0]);

    // Deleting the last term keeps the others' counts; Enter puts the counts away.
    for _ in 0.." res:nobody".len() {
        key(&mut state, KeyCode::Backspace);
    }
    let terms = state.term_counts();
    assert_eq!(terms.len(), 2);
    assert!(terms.iter().all(|t| t.complete));
    while state.has_background_work() {
        update(&mut state, Action::Scan);
    }
    assert_eq!(state.match_count(), 2_200);
    key(&mut state, KeyCode::Enter);
    assert_eq!(state.term_counts(), []);
}

#[test]
fn a_data_filter_over_events_of_known_data_counts_exactly() {
    let mut state = state_with(1000, None);
    let events = (0..100u64)
        .map(|i| {
            let data = serde_json::json!({"frame": i, "node": format!("n-{}", i % 4)});
            stamped(
                Event::with_resource("task.progress", "job", data),
                i + 1,
                i as f64,
            )
        })
        .collect();
    feed(&mut state, events);
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, "frame>89 node=n-1");
    while state.has_background_work() {
        update(&mut state, Action::Scan);
    }
    // Frames 90..=99 on node n-1: 93 and 97.
    assert_eq!(state.match_count(), 2);
    let counts: Vec<u64> = state.term_counts().iter().map(|t| t.count).collect();
    assert_eq!(counts, [10, 25]);
}

/// Events read from NATS carry an origin: `origin:GLOB` filters on it in the monitor too, in the
/// count, the rows and the per-term counts, live and when a filter is applied to what is held.
#[test]
fn an_origin_filter_selects_the_events_of_that_origin() {
    let mut state = state_with(1000, None);
    let from = |origin: &str, ids: std::ops::Range<u64>| Action::EventsFrom {
        origin: origin.into(),
        events: ids
            .map(|i| stamped(Event::stdout("job", "line"), i, i as f64))
            .collect(),
        at: at(0.0),
    };
    update(&mut state, from("farm-a", 1..4));
    update(&mut state, from("farm-b", 4..6));
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, "origin:farm-b");
    key(&mut state, KeyCode::Enter);
    while state.has_background_work() {
        update(&mut state, Action::Scan);
    }
    assert_eq!(state.match_count(), 2);
    let ids: Vec<u64> = state.visible_events().iter().map(|e| e.id).collect();
    assert_eq!(ids, [4, 5]);
    // Live: a new event of each origin; only farm-b's is a match.
    update(&mut state, from("farm-a", 6..7));
    update(&mut state, from("farm-b", 7..8));
    assert_eq!(state.match_count(), 3);
    // Excluded, and counted alone while editing.
    key(&mut state, KeyCode::Char('/'));
    for _ in 0.."origin:farm-b".len() {
        key(&mut state, KeyCode::Backspace);
    }
    typed(&mut state, "log.* !origin:farm-b");
    while state.has_background_work() {
        update(&mut state, Action::Scan);
    }
    assert_eq!(state.match_count(), 4, "farm-a's 1, 2, 3 and 6");
    let counts: Vec<u64> = state.term_counts().iter().map(|t| t.count).collect();
    assert_eq!(counts, [7, 4]);
}
