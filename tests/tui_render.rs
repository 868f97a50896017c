//! Render tests: each pane and state drawn on a `TestBackend`, asserted on the screen's lines.

mod tui_support;

use ipckit::top::{update, Action, KEYMAP};
use ipckit::BusStats;
use ipckit::Event;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;
use ratatui::style::Color;
use ratatui::Terminal;
use std::time::Duration;
use tui_support::*;

fn contains(screen: &[String], needle: &str) -> bool {
    screen.iter().any(|line| line.contains(needle))
}

fn show(screen: &[String]) -> String {
    screen.join("\n")
}

fn live_state() -> ipckit::top::State {
    let mut state = state_with(1000, None);
    update(
        &mut state,
        Action::Connected {
            socket: "default.sock".into(),
            hosted: false,
        },
    );
    update(
        &mut state,
        Action::Stats(BusStats {
            published: 48_210,
            subscribers: 3,
            dropped: 0,
            ..Default::default()
        }),
    );
    feed(&mut state, workload(48));
    update(&mut state, Action::Tick { now: at(0.5) });
    state
}

#[test]
fn empty_screen_waits_for_events() {
    let state = state_with(100, None);
    let s = screen(&state, 120, 30);
    assert!(
        s[0].contains("ipckit-top ─ connecting ─ 0 ev/s ─ 0 subs ─ lost 0 ─ bus dropped 0 ─ LIVE"),
        "{}",
        show(&s)
    );
    assert!(contains(&s, "0 of 0 match"), "{}", show(&s));
    assert!(contains(&s, "waiting for events…"), "{}", show(&s));
    assert!(contains(&s, "no progress reported yet"), "{}", show(&s));
    assert!(contains(&s, "? help"), "{}", show(&s));
}

#[test]
fn live_screen_shows_header_rows_and_gauges() {
    let state = live_state();
    let s = screen(&state, 120, 30);
    let text = show(&s);
    assert!(
        s[0].contains("attached default.sock ─ 48 ev/s ─ 3 subs ─ lost 0 ─ bus dropped 0 ─ LIVE"),
        "{text}"
    );
    assert!(contains(&s, "48 of 48 match"), "{text}");
    assert!(
        contains(
            &s,
            "12:00:00.470 #48 mcp.notifications.progress render-token frame"
        ),
        "{text}"
    );
    assert!(
        contains(
            &s,
            "12:00:00.460 #47 log.stderr                 render-2     disk slow 46"
        ),
        "{text}"
    );
    // A gauge with a total shows a bar and a percentage; one without, a spinner and the count.
    assert!(contains(&s, "render-token"), "{text}");
    assert!(contains(&s, "%"), "{text}");
    assert!(contains(&s, "(no total)"), "{text}");
    assert!(contains(&s, "48 kept"), "{text}");
    // The newest event is on the last row of the pane.
    let last_row = s.iter().rposition(|l| l.contains("#")).unwrap();
    assert!(s[last_row].contains("#48 "), "{text}");
}

#[test]
fn dropped_count_is_red_when_non_zero() {
    let mut state = live_state();
    update(
        &mut state,
        Action::Stats(BusStats {
            published: 10,
            subscribers: 1,
            dropped: 5,
            ..Default::default()
        }),
    );
    let mut terminal = Terminal::new(TestBackend::new(120, 30)).unwrap();
    terminal
        .draw(|f| ipckit::top::ui::render(&state, f))
        .unwrap();
    let buffer = terminal.backend().buffer();
    let row: String = (0..120)
        .map(|x| buffer[(x, 0)].symbol())
        .collect::<String>();
    let col = row.find("dropped 5").unwrap();
    let x = row[..col].chars().count() as u16;
    assert_eq!(buffer[(x, 0)].fg, Color::Red);
}

#[test]
fn filtered_screen_counts_and_shows_only_matches() {
    let mut state = live_state();
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, "log.warn");
    key(&mut state, KeyCode::Enter);
    let s = screen(&state, 120, 30);
    let text = show(&s);
    assert!(contains(&s, "filter> log.warn"), "{text}");
    assert!(contains(&s, "9 of 48 match"), "{text}");
    assert!(!contains(&s, "log.stderr"), "{text}");
    assert!(contains(&s, "log.warn"), "{text}");
}

#[test]
fn invalid_filter_is_shown_with_the_bad_term() {
    let mut state = live_state();
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, "log.* when:now");
    let s = screen(&state, 120, 30);
    let text = show(&s);
    assert!(
        contains(&s, "✗ unknown field `when` in `when:now`"),
        "{text}"
    );
    // The last valid filter (`log.* when`) is still applied.
    assert_eq!(state.applied_filter(), "log.* when");
}

#[test]
fn paused_and_scrubbing_screens() {
    let mut state = live_state();
    key(&mut state, KeyCode::Char(' '));
    feed(
        &mut state,
        vec![stamped(Event::stdout("x", "later"), 49, 1.0)],
    );
    let s = screen(&state, 120, 30);
    assert!(s[0].contains("PAUSED"), "{}", show(&s));
    assert!(contains(&s, "events ─ paused, 1 below"), "{}", show(&s));

    key(&mut state, KeyCode::Char('L'));
    key(&mut state, KeyCode::Left);
    key(&mut state, KeyCode::Left);
    let s = screen(&state, 120, 30);
    let text = show(&s);
    assert!(s[0].contains("SCRUBBING"), "{text}");
    assert!(contains(&s, "events ─ as at #47"), "{text}");
    assert!(contains(&s, "◆ 12:00:00 (#47)"), "{text}");
    let last_row = s.iter().rposition(|l| l.contains(" #4")).unwrap();
    assert!(s[last_row].contains("#47 "), "{text}");
    key(&mut state, KeyCode::Char('r'));
    let s = screen(&state, 120, 30);
    assert!(contains(&s, "(#47) ▶ 1x"), "{}", show(&s));
}

#[test]
fn disconnected_screen_keeps_the_events_and_counts_down() {
    let mut state = live_state();
    update(
        &mut state,
        Action::Disconnected {
            retry_in: Duration::from_secs(3),
        },
    );
    let s = screen(&state, 120, 30);
    let text = show(&s);
    assert!(s[0].contains("lost default.sock"), "{text}");
    assert!(s[0].contains("DISCONNECTED retrying in 3s"), "{text}");
    assert!(contains(&s, "#48 "), "{text}");
    update(&mut state, Action::Tick { now: at(2.5) });
    let s = screen(&state, 120, 30);
    assert!(s[0].contains("DISCONNECTED retrying in 1s"), "{}", show(&s));
}

#[test]
fn help_lists_every_key() {
    let mut state = live_state();
    update(
        &mut state,
        Action::Resize {
            width: 160,
            height: 50,
        },
    );
    key(&mut state, KeyCode::Char('?'));
    let s = screen(&state, 160, 50);
    let text = show(&s);
    for binding in KEYMAP {
        let keys = binding.keys_label();
        assert!(
            s.iter()
                .any(|line| line.contains(&keys) && line.contains(binding.help)),
            "{keys} {} missing:\n{text}",
            binding.help
        );
        assert!(contains(&s, ipckit::top::section(binding.focus)), "{text}");
    }
}

#[test]
fn detail_view_shows_pretty_json() {
    let mut state = live_state();
    key(&mut state, KeyCode::Char('k'));
    key(&mut state, KeyCode::Enter);
    let s = screen(&state, 120, 30);
    let text = show(&s);
    assert!(contains(&s, "event #47 log.stderr"), "{text}");
    assert!(contains(&s, "\"event_type\": \"log.stderr\","), "{text}");
    assert!(contains(&s, "\"message\": \"disk slow 46\""), "{text}");
}

#[test]
fn a_tiny_terminal_gets_a_message() {
    let state = live_state();
    for (w, h) in [(30, 6), (59, 40), (200, 11), (1, 1), (0, 0)] {
        let s = screen(&state, w, h);
        if w >= 20 {
            assert!(show(&s).contains("too small"), "{w}x{h}:\n{}", show(&s));
        }
    }
}

#[test]
fn progress_states_are_drawn() {
    let mut state = state_with(1000, None);
    feed(
        &mut state,
        vec![
            stamped(Event::mcp_progress("ok", 1.0, Some(1.0), None), 1, 0.0),
            stamped(Event::progress("bad", 5, 10, "half"), 2, 0.0),
            stamped(
                Event::with_resource("task.failed", "bad", serde_json::json!({})),
                3,
                4.0,
            ),
            stamped(Event::progress("back", 5, 10, ""), 4, 0.0),
            stamped(Event::progress("back", 4, 10, ""), 5, 20.0),
            stamped(Event::mcp_progress("idle", 3.0, Some(10.0), None), 6, 1.0),
        ],
    );
    update(&mut state, Action::Tick { now: at(21.0) });
    let s = screen(&state, 120, 30);
    let text = show(&s);
    assert!(contains(&s, "done ✓ 0s"), "{text}");
    assert!(contains(&s, "failed ✗ 4s"), "{text}");
    // Silent for 20 s after its one report: stalled, and for how long.
    assert!(contains(&s, "⚠ idle"), "{text}");
    assert!(contains(&s, "stalled 20s"), "{text}");
    // 5 then 4, 20 s apart: backwards, and a stall that is over.
    assert!(contains(&s, "⚠ back "), "{text}");
    assert!(
        contains(&s, "  ⚠ went backwards 5→4 · stalled 20s"),
        "{text}"
    );
    assert!(contains(&s, "progress ─ 4 ─ ⚠ 2"), "{text}");
    // Two flags in a narrow pane: a word each.
    let s = screen(&state, 80, 30);
    assert!(contains(&s, "  ⚠ backwards, stalled "), "{}", show(&s));
}

#[test]
fn the_selected_row_is_highlighted_across_the_pane() {
    use ratatui::style::Modifier;
    let mut state = live_state();
    key(&mut state, KeyCode::Char('k'));
    let mut terminal = Terminal::new(TestBackend::new(120, 30)).unwrap();
    terminal
        .draw(|f| ipckit::top::ui::render(&state, f))
        .unwrap();
    let buffer = terminal.backend().buffer();
    let row = |y: u16| {
        (0..120)
            .map(|x| buffer[(x, y)].symbol())
            .collect::<String>()
    };
    let y = (0..30).find(|&y| row(y).contains("#47 ")).unwrap();
    let right_edge = row(y)
        .find("││")
        .map(|i| row(y)[..i].chars().count() as u16)
        .unwrap();
    assert!(buffer[(1, y)].modifier.contains(Modifier::REVERSED));
    assert!(buffer[(right_edge - 1, y)]
        .modifier
        .contains(Modifier::REVERSED));
    assert!(!buffer[(1, y - 1)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn control_characters_in_event_text_are_shown_as_one_readable_line() {
    let mut state = state_with(100, None);
    let nasty = "one\ntwo\tthree\u{1b}[2J four";
    feed(
        &mut state,
        vec![
            stamped(
                Event::with_resource(
                    "log.info",
                    "job\u{1b}7",
                    serde_json::json!({ "message": nasty }),
                ),
                1,
                0.0,
            ),
            stamped(
                Event::mcp_progress("tok\n1", 1.0, Some(4.0), Some("a\nb")),
                2,
                0.0,
            ),
        ],
    );
    let s = screen(&state, 200, 30);
    let text = show(&s);
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(contains(&s, "job\u{fffd}7"), "{text}");
    assert!(contains(&s, "one two three\u{fffd}[2J four"), "{text}");
    assert!(contains(&s, "tok 1"), "{text}");
    assert!(contains(&s, "a b"), "{text}");
}

#[test]
fn columns_fit_what_is_on_screen_and_leave_the_message_room() {
    let state = live_state();
    // Wide: the longest type on screen in full, ids and resources no wider than they are.
    let s = screen(&state, 160, 30);
    let text = show(&s);
    assert!(
        contains(
            &s,
            "12:00:00.470 #48 mcp.notifications.progress render-token frame"
        ),
        "{text}"
    );
    // Narrow: the type is cut rather than the message squeezed below 20 columns.
    let s = screen(&state, 100, 30);
    let text = show(&s);
    assert!(
        contains(&s, "#47 log.stderr             render-2     disk slow 46"),
        "{text}"
    );
    assert!(contains(&s, "#48 mcp.notifications.pro… "), "{text}");
}

#[test]
fn a_gauge_shows_its_message_rate_and_eta_and_its_count_once() {
    let mut state = state_with(1000, None);
    feed(
        &mut state,
        vec![
            stamped(
                Event::mcp_progress("shot-1", 10.0, Some(120.0), Some("Rendering frame 10/120")),
                1,
                0.0,
            ),
            stamped(
                Event::mcp_progress("shot-1", 20.0, Some(120.0), Some("Rendering frame 20/120")),
                2,
                2.0,
            ),
            stamped(Event::progress("upload", 3, 10, "sending"), 3, 2.0),
        ],
    );
    update(&mut state, Action::Tick { now: at(2.0) });
    let s = screen(&state, 160, 30);
    let text = show(&s);
    // 10 frames in 2 s: 5/s, 100 to go: 20 s.
    assert!(
        contains(&s, "  Rendering frame 20/120 · 5/s · ETA 20s"),
        "{text}"
    );
    assert!(!contains(&s, "20/120 · 20/120"), "{text}");
    // A message that does not say the count gets it from the gauge.
    assert!(contains(&s, "  sending · 3/10"), "{text}");
    // In a narrow pane the message is cut, the figures stay.
    let s = screen(&state, 90, 30);
    let text = show(&s);
    assert!(contains(&s, "  Renderi… · 5/s · ETA 20s"), "{text}");
}

#[test]
fn detail_view_wraps_a_long_message_so_all_of_it_can_be_read() {
    let words: Vec<String> = (0..40).map(|i| format!("word{i:03}")).collect();
    let state = detail_of_message(&words.join(" "), 100, 40);
    let s = screen(&state, 100, 40);
    let text = show(&s);
    assert!(contains(&s, "\"message\": \"word000 word001"), "{text}");
    // The end of the message, far past the overlay's width, is on screen too.
    assert!(contains(&s, "word039\""), "{text}");
}

/// The style of the first cell of `needle` on the screen.
fn style_of(
    terminal: &Terminal<TestBackend>,
    needle: &str,
) -> Option<(Color, Color, ratatui::style::Modifier)> {
    let buffer = terminal.backend().buffer();
    let area = buffer.area;
    for y in 0..area.height {
        let row: String = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
        if let Some(at) = row.find(needle) {
            let cell = &buffer[(row[..at].chars().count() as u16, y)];
            return Some((cell.fg, cell.bg, cell.modifier));
        }
    }
    None
}

fn loss(count: u64, first: u64, reason: ipckit::top::LossReason) -> ipckit::top::Loss {
    ipckit::top::Loss {
        count,
        first_id: Some(first),
        last_id: Some(first + count - 1),
        reason,
    }
}

#[test]
fn a_loss_row_stands_out_between_the_events_around_it_and_the_header_counts_it() {
    let mut state = live_state();
    update(
        &mut state,
        Action::Lost(loss(1204, 49, ipckit::top::LossReason::Lagged)),
    );
    feed(
        &mut state,
        vec![stamped(Event::stdout("x", "after the gap"), 1253, 1.0)],
    );
    let s = screen(&state, 120, 30);
    let text = show(&s);
    let at = s
        .iter()
        .position(|l| l.contains("⚠ 1,204 events lost (monitor fell behind) · #49 to #1252"))
        .unwrap_or_else(|| panic!("no loss row:\n{text}"));
    assert!(s[at - 1].contains("#48 "), "{text}");
    assert!(
        s[at + 1].contains("#1253 ") && s[at + 1].contains("after the gap"),
        "{text}"
    );
    assert!(
        s[0].contains("3 subs ─ lost 1,204 ─ bus dropped 0 ─ LIVE"),
        "{text}"
    );
    let terminal = drawn(&state, 120, 30);
    let (fg, bg, modifier) = style_of(&terminal, "⚠ 1,204").unwrap();
    assert_eq!((fg, bg), (Color::Black, Color::Yellow));
    assert!(modifier.contains(ratatui::style::Modifier::BOLD));
    // The whole row, not just its text.
    let (_, bg, _) = style_of(&terminal, "#49 to #1252 ").unwrap();
    assert_eq!(bg, Color::Yellow);
    let (fg, _, _) = style_of(&terminal, "lost 1,204").unwrap();
    assert_eq!(fg, Color::Red);

    // Each reason says why; a filter that hides every event around it does not hide it.
    for (reason, why) in [
        (
            ipckit::top::LossReason::HistoryEvicted,
            "(no longer in the bus's history)",
        ),
        (ipckit::top::LossReason::BusRestarted, "(bus restarted)"),
        (ipckit::top::LossReason::Other, "(cause unknown)"),
    ] {
        update(&mut state, Action::Lost(loss(1, 2000, reason)));
        feed(
            &mut state,
            vec![stamped(Event::stdout("x", "next"), 2001, 2.0)],
        );
        assert!(
            contains(
                &screen(&state, 120, 30),
                &format!("⚠ 1 event lost {why} · #2000")
            ),
            "{why}:\n{}",
            show(&screen(&state, 120, 30))
        );
    }
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, "nothing.matches");
    key(&mut state, KeyCode::Enter);
    let s = screen(&state, 120, 30);
    assert!(contains(&s, "⚠ 1,204 events lost"), "{}", show(&s));
    assert!(contains(&s, "0 of 52 match"), "{}", show(&s));
}

#[test]
fn the_bus_dropped_count_is_labelled_as_the_bus_s_and_red_only_when_it_grew_since_attaching() {
    let mut state = live_state();
    let stats = |dropped| {
        Action::Stats(BusStats {
            published: 300_000,
            subscribers: 2,
            dropped,
            ..Default::default()
        })
    };
    // Attached afresh to a bus that dropped events for someone else before.
    update(
        &mut state,
        Action::Connected {
            socket: "default.sock".into(),
            hosted: false,
        },
    );
    update(&mut state, stats(282_336));
    let s = screen(&state, 120, 30);
    assert!(
        s[0].contains("lost 0 ─ bus dropped 282,336 ─ LIVE"),
        "{}",
        show(&s)
    );
    let terminal = drawn(&state, 120, 30);
    assert_ne!(style_of(&terminal, "bus dropped").unwrap().0, Color::Red);
    assert_ne!(style_of(&terminal, "lost 0").unwrap().0, Color::Red);
    update(&mut state, stats(282_337));
    let terminal = drawn(&state, 120, 30);
    assert_eq!(style_of(&terminal, "bus dropped").unwrap().0, Color::Red);
    assert_ne!(style_of(&terminal, "lost 0").unwrap().0, Color::Red);
}

#[test]
fn the_detail_view_shows_all_of_a_wide_cjk_message() {
    let message = format!("{}终", "渲染第七帧失败".repeat(30));
    let state = detail_of_message(&message, 100, 40);
    let s = screen(&state, 100, 40);
    let top = s
        .iter()
        .position(|r| r.contains("event #1 log.info"))
        .unwrap();
    let bottom = s.iter().position(|r| r.contains("j/k scroll")).unwrap();
    let popup = show(&s[top..=bottom]);
    assert_eq!(popup.matches('渲').count(), 30, "{popup}");
    assert_eq!(popup.matches('败').count(), 30, "{popup}");
    assert!(popup.contains("终\""), "{popup}");
}

/// Rows whose event types start with wide characters at every column parity, so some cover the
/// column just left of a centred popup.
fn wide_rows_state() -> ipckit::top::State {
    let mut state = state_with(100, None);
    let kinds = [
        "🇩🇪🇫🇷🇯🇵🇧🇷🇨🇦🇮🇹🇪🇸🇰🇷🇺🇸🇬🇧🇳🇴",
        "x🇩🇪🇫🇷🇯🇵🇧🇷🇨🇦🇮🇹🇪🇸🇰🇷🇺🇸🇬🇧🇳🇴",
        "渲染任务渲染任务渲染任务渲染",
        "x渲染任务渲染任务渲染任务渲染",
    ];
    let events = (0..24u64)
        .map(|i| {
            stamped(
                Event::with_resource(kinds[i as usize % 4], "job", serde_json::json!({"n": i})),
                i + 1,
                i as f64,
            )
        })
        .collect();
    feed(&mut state, events);
    state
}

/// The popup titled `title` has its whole frame: a left border (corners included) on every row, with
/// no wide character on its left spilling into it, and a right border.
fn assert_popup_borders_whole(terminal: &Terminal<TestBackend>, title: &str) {
    let buffer = terminal.backend().buffer();
    let row = |y: u16| -> String { (0..120).map(|x| buffer[(x, y)].symbol()).collect() };
    let screen = || (0..30).map(row).collect::<Vec<_>>().join("\n");
    let top = (0..30).find(|&y| row(y).contains(title)).unwrap();
    let x = (1..120)
        .find(|&x| buffer[(x, top)].symbol() == "┌")
        .unwrap();
    let right = (x..120)
        .find(|&r| buffer[(r, top)].symbol() == "┐")
        .unwrap();
    let bottom = (top..30)
        .find(|&y| buffer[(right, y)].symbol() == "┘")
        .unwrap();
    for y in top..=bottom {
        let (left, right_side) = match y {
            _ if y == top => ("┌", "┐"),
            _ if y == bottom => ("└", "┘"),
            _ => ("│", "│"),
        };
        assert_eq!(
            buffer[(x, y)].symbol(),
            left,
            "left border at row {y}:\n{}",
            screen()
        );
        assert_eq!(
            buffer[(right, y)].symbol(),
            right_side,
            "right border at row {y}"
        );
        let before = buffer[(x - 1, y)].symbol();
        assert!(
            unicode_width::UnicodeWidthStr::width(before) <= 1,
            "{before:?} covers the border at row {y}"
        );
    }
}

#[test]
fn wide_characters_under_a_popup_never_cover_its_border() {
    let mut state = wide_rows_state();
    // The case is real: without a popup, wide characters cover the column where its border goes.
    let terminal = drawn(&state, 120, 30);
    let buffer = terminal.backend().buffer();
    let covering = (8..22)
        .filter(|&y| unicode_width::UnicodeWidthStr::width(buffer[(23, y)].symbol()) == 2)
        .count();
    assert!(covering >= 3, "{covering}");

    key(&mut state, KeyCode::Char('?'));
    assert_popup_borders_whole(&drawn(&state, 120, 30), "keys ─ ? or Esc closes");
    key(&mut state, KeyCode::Esc);
    key(&mut state, KeyCode::Char('k'));
    key(&mut state, KeyCode::Enter);
    assert!(state.detail().is_some());
    assert_popup_borders_whole(&drawn(&state, 120, 30), "event #23");
}

/// Gauges that break MCP's rules, at `at(0)`..`at(20)`, judged at `at(21)`: `retotal` (total 10→12),
/// `back` (5→4), `late` (an update after done) and `quiet` (silent since `at(1)`); and `fine`.
fn flagged_state() -> ipckit::top::State {
    let mut state = state_with(1000, None);
    feed(
        &mut state,
        vec![
            stamped(
                Event::mcp_progress("retotal", 3.0, Some(10.0), None),
                1,
                19.0,
            ),
            stamped(
                Event::mcp_progress("retotal", 4.0, Some(12.0), None),
                2,
                20.0,
            ),
            stamped(Event::progress("back", 5, 10, "re-render"), 3, 19.0),
            stamped(Event::progress("back", 4, 10, "re-render"), 4, 20.0),
            stamped(Event::mcp_progress("late", 2.0, Some(2.0), None), 5, 19.0),
            stamped(Event::mcp_progress("late", 3.0, Some(2.0), None), 6, 20.0),
            stamped(
                Event::mcp_progress("quiet", 1.0, Some(10.0), Some("frame 1")),
                7,
                1.0,
            ),
            stamped(Event::mcp_progress("fine", 1.0, Some(10.0), None), 8, 19.0),
            stamped(Event::mcp_progress("fine", 2.0, Some(10.0), None), 9, 20.0),
        ],
    );
    update(&mut state, Action::Tick { now: at(21.0) });
    state
}

#[test]
fn a_flagged_gauge_has_a_marker_and_its_reasons_also_in_a_narrow_pane() {
    let state = flagged_state();
    let s = screen(&state, 160, 30);
    let text = show(&s);
    assert!(contains(&s, "progress ─ 5 ─ ⚠ 4"), "{text}");
    for (name, reason) in [
        ("retotal", "⚠ total 10→12"),
        ("back", "⚠ went backwards 5→4 · re-ren"),
        ("late", "⚠ update after done"),
    ] {
        let at = s
            .iter()
            .position(|l| l.contains(&format!("│⚠ {name} ")))
            .unwrap_or_else(|| panic!("{name}:\n{text}"));
        assert!(s[at + 1].contains(reason), "{name}: {reason}\n{text}");
    }
    assert!(contains(&s, "stalled 20s"), "{text}");
    assert!(contains(&s, "│fine "), "{text}");
    assert!(!contains(&s, "│⚠ fine"), "{text}");
    // The reasons are red.
    let terminal = drawn(&state, 160, 30);
    assert_eq!(style_of(&terminal, "⚠ total 10→12").unwrap().0, Color::Red);

    // 80 columns: the progress pane is 26 wide; each flag still shows.
    let s = screen(&state, 80, 30);
    let text = show(&s);
    for (name, reason) in [
        ("retotal", "⚠ total 10→12"),
        ("back", "⚠ went backwards 5→4"),
        ("late", "⚠ update after done"),
    ] {
        let at = s
            .iter()
            .position(|l| l.contains(&format!("│⚠ {name} ")))
            .unwrap_or_else(|| panic!("{name}:\n{text}"));
        assert!(s[at + 1].contains(reason), "{name}: {reason}\n{text}");
    }
    assert!(contains(&s, "stalled 20s"), "{text}");
}

#[test]
fn paused_the_header_counts_what_arrived_and_resuming_drops_the_count() {
    let mut state = live_state();
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, "log.*");
    key(&mut state, KeyCode::Enter);
    key(&mut state, KeyCode::Char(' '));
    let s = screen(&state, 120, 30);
    assert!(s[0].contains("PAUSED +0"), "{}", show(&s));
    // Ten more: four log lines among them.
    feed(&mut state, workload(58).into_iter().skip(48).collect());
    let s = screen(&state, 120, 30);
    assert!(s[0].contains("─ PAUSED +4 (10 arrived) "), "{}", show(&s));
    key(&mut state, KeyCode::Char(' '));
    let s = screen(&state, 120, 30);
    assert!(s[0].contains("LIVE") && !s[0].contains('+'), "{}", show(&s));
    // Resumed at the newest of them (#57, a log line; #58 is progress).
    assert!(s[24].contains("#57 "), "{}", show(&s));
}

#[test]
fn the_focused_pane_is_highlighted_and_so_is_the_selected_gauge() {
    let mut state = flagged_state();
    let border =
        |terminal: &Terminal<TestBackend>, title: &str| style_of(terminal, title).unwrap().0;
    let terminal = drawn(&state, 160, 30);
    assert_eq!(border(&terminal, "┌ events"), Color::Cyan);
    assert_ne!(border(&terminal, "┌ progress"), Color::Cyan);
    assert!(
        !style_of(&terminal, "⚠ retotal")
            .unwrap()
            .2
            .contains(ratatui::style::Modifier::REVERSED),
        "no selection shown without the focus"
    );

    key(&mut state, KeyCode::Tab);
    key(&mut state, KeyCode::Char('j'));
    let selected = state.selected_gauge().unwrap().key.clone();
    let terminal = drawn(&state, 160, 30);
    assert_eq!(border(&terminal, "┌ progress"), Color::Cyan);
    assert_ne!(border(&terminal, "┌ events"), Color::Cyan);
    let s = screen(&state, 160, 30);
    let row = s
        .iter()
        .position(|l| l.contains(&format!(" {selected} ")))
        .unwrap();
    // Both lines of the selected gauge are reversed, across the pane.
    let buffer = terminal.backend().buffer();
    let x = buffer.area.width - 2;
    for y in [row, row + 1] {
        assert!(
            buffer[(x, y as u16)]
                .modifier
                .contains(ratatui::style::Modifier::REVERSED),
            "{}",
            show(&s)
        );
    }
    assert!(!buffer[(x, row as u16 + 2)]
        .modifier
        .contains(ratatui::style::Modifier::REVERSED));
}

#[test]
fn many_gauges_scroll_to_keep_the_selected_one_in_view() {
    let mut state = state_with(1000, None);
    let events = (0..30u64)
        .map(|i| {
            stamped(
                Event::mcp_progress(&format!("job-{i:02}"), 1.0, Some(10.0), None),
                i + 1,
                0.0,
            )
        })
        .collect();
    feed(&mut state, events);
    key(&mut state, KeyCode::Tab);
    key(&mut state, KeyCode::Char('G'));
    let s = screen(&state, 120, 30);
    let text = show(&s);
    assert_eq!(state.selected_gauge().unwrap().key, "job-29");
    assert!(contains(&s, "│job-29 "), "{text}");
    assert!(!contains(&s, "│job-00 "), "{text}");
    assert!(contains(&s, "progress ─ 30 ("), "{text}");
    key(&mut state, KeyCode::Char('g'));
    let s = screen(&state, 120, 30);
    assert!(contains(&s, "│job-00 "), "{}", show(&s));
}

#[test]
fn a_gauge_s_events_name_it_in_the_event_pane_s_title() {
    let mut state = state_with(1000, None);
    feed(&mut state, workload(20));
    key(&mut state, KeyCode::Tab);
    key(&mut state, KeyCode::Enter);
    let s = screen(&state, 120, 30);
    let text = show(&s);
    let (key_name, _) = state.drilled_gauge().unwrap();
    let key_name = key_name.to_owned();
    assert!(contains(&s, &format!("filter> res:{key_name}")), "{text}");
    assert!(
        contains(&s, &format!("┌ events ─ {key_name} only (Esc: back)")),
        "{text}"
    );
    key(&mut state, KeyCode::Esc);
    let s = screen(&state, 120, 30);
    assert!(
        contains(&s, "┌ events ─") || contains(&s, "┌ events ─"),
        "{}",
        show(&s)
    );
    assert!(!contains(&s, "only (Esc: back)"), "{}", show(&s));
}

/// The footer's text on the last row.
fn footer_of(state: &ipckit::top::State) -> String {
    screen(state, 160, 30).last().cloned().unwrap_or_default()
}

#[test]
fn the_footer_shows_the_keys_of_the_focused_place_from_the_key_table() {
    use ipckit::top::{footer, Focus};
    let mut state = flagged_state();
    let expect = |state: &ipckit::top::State, focus: Focus| {
        assert_eq!(state.focus(), focus);
        let line = footer_of(state);
        for binding in footer(focus) {
            let label = binding.footer_label().unwrap();
            assert!(
                line.contains(&label),
                "{focus:?}: {label} missing in {line}"
            );
        }
        line
    };
    let events = expect(&state, Focus::Events);
    assert!(
        events.contains("Enter detail") && events.contains("q quit"),
        "{events}"
    );
    key(&mut state, KeyCode::Tab);
    let progress = expect(&state, Focus::Progress);
    assert!(
        progress.starts_with(" j/k select  Enter its events  Esc back"),
        "{progress}"
    );
    key(&mut state, KeyCode::Char('/'));
    let filter = expect(&state, Focus::Filter);
    assert!(
        filter.contains("Enter keep  Esc restore  ↑/↓ recall"),
        "{filter}"
    );
    key(&mut state, KeyCode::Esc);
    key(&mut state, KeyCode::Char('?'));
    expect(&state, Focus::Help);
}

#[test]
fn the_help_fits_in_two_columns_or_scrolls() {
    let mut state = live_state();
    key(&mut state, KeyCode::Char('?'));
    // 120x30: two columns, everything on screen.
    let s = screen(&state, 120, 30);
    let text = show(&s);
    for binding in KEYMAP {
        assert!(contains(&s, binding.help), "{}:\n{text}", binding.help);
    }
    let both = s
        .iter()
        .find(|l| l.contains("quit") && l.contains("keep the filter"))
        .is_some()
        || s.iter()
            .any(|l| l.matches("│").count() >= 2 && l.contains("quit"));
    assert!(both, "{text}");
    // 80x24: one column that scrolls: the last row shows once scrolled to the end.
    update(
        &mut state,
        Action::Resize {
            width: 80,
            height: 24,
        },
    );
    let last = KEYMAP.last().unwrap().help;
    let s = screen(&state, 80, 24);
    assert!(contains(&s, "j/k scroll"), "{}", show(&s));
    assert!(!contains(&s, last), "{}", show(&s));
    for _ in 0..60 {
        key(&mut state, KeyCode::Char('j'));
    }
    let s = screen(&state, 80, 24);
    assert!(contains(&s, last), "{}", show(&s));
    key(&mut state, KeyCode::Esc);
    assert_eq!(state.focus(), ipckit::top::Focus::Events);
}

#[test]
fn the_terms_being_edited_show_their_counts_under_the_filter_bar_a_zero_in_red() {
    let mut state = live_state();
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, "task.* res:render-1 res:nobody");
    while state.has_background_work() {
        update(&mut state, Action::Scan);
    }
    let terminal = drawn(&state, 120, 30);
    let s = screen(&state, 120, 30);
    // Under the filter bar, on the event pane's border: each term and its count.
    assert!(
        s[2].contains("task.* 19 │ res:render-1 10 │ res:nobody 0"),
        "{}",
        show(&s)
    );
    let x = s[2].find("nobody 0").unwrap() + "nobody ".len();
    let x = s[2][..x].chars().count() as u16;
    let buffer = terminal.backend().buffer();
    assert_eq!(buffer[(x, 2)].bg, Color::Red, "{}", show(&s));
    // Enter keeps the filter; the counts go, the pane's title comes back.
    key(&mut state, KeyCode::Enter);
    let s = screen(&state, 120, 30);
    assert!(s[2].contains("events"), "{}", show(&s));
    assert!(!s[2].contains("nobody"), "{}", show(&s));
}

#[test]
fn a_partial_term_count_is_shown_as_partial() {
    let mut state = state_with(100_000, None);
    for chunk in workload(40_000).chunks(4096) {
        feed(&mut state, chunk.to_vec());
    }
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, "task.* res:render-1");
    update(&mut state, Action::Scan);
    let s = screen(&state, 120, 30);
    assert!(s[2].contains("res:render-1 ≥"), "{}", show(&s));
    assert!(s[2].contains('…'), "{}", show(&s));
}

#[test]
fn the_write_prompt_offers_a_dated_name_and_says_how_many_it_writes() {
    let mut state = live_state();
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, "log.*");
    key(&mut state, KeyCode::Enter);
    key(&mut state, KeyCode::Char('w'));
    let s = screen(&state, 120, 30);
    assert!(
        s[1].contains(" write to> ipckit-20261125-120000.ndjson"),
        "{}",
        show(&s)
    );
    assert!(
        s[1].contains("Enter writes the 19 matching events as NDJSON · Esc cancels"),
        "{}",
        show(&s)
    );
}

#[test]
fn a_recording_s_header_names_it_and_says_what_was_skipped() {
    let mut state = state_with(1000, None);
    update(
        &mut state,
        Action::Recording(ipckit::top::RecordingStatus {
            name: "farm.ndjson.gz".into(),
            skipped: 3,
            first_skipped: Some("line 17".into()),
            ..Default::default()
        }),
    );
    feed(&mut state, workload(48));
    let s = screen(&state, 120, 30);
    assert!(
        s[0].contains(
            "RECORDING farm.ndjson.gz ─ 48 events, reading… ─ 3 lines skipped, first at line 17"
        ),
        "{}",
        show(&s)
    );
    assert!(!s[0].contains("subs"), "no bus counters: {}", show(&s));
    key(&mut state, KeyCode::Char(' '));
    let s = screen(&state, 120, 30);
    assert!(
        s[0].ends_with("PAUSED ") || s[0].contains("─ PAUSED"),
        "{}",
        show(&s)
    );
}

#[test]
fn an_origin_column_appears_once_events_came_from_two_origins() {
    let mut state = state_with(1000, None);
    let from = |origin: &str, ids: std::ops::Range<u64>| Action::EventsFrom {
        origin: origin.into(),
        events: ids
            .map(|i| stamped(Event::stdout("job", "line"), i, i as f64))
            .collect(),
        at: at(0.0),
    };
    update(&mut state, from("farm-a", 1..4));
    let s = screen(&state, 120, 30);
    assert!(
        !contains(&s, "farm-a"),
        "one origin: no column\n{}",
        show(&s)
    );
    update(&mut state, from("farm-b", 4..6));
    let s = screen(&state, 120, 30);
    let row = |id: &str| s.iter().find(|l| l.contains(id)).cloned().unwrap();
    assert!(row("#3 ").contains("farm-a #3 "), "{}", show(&s));
    assert!(row("#5 ").contains("farm-b #5 "), "{}", show(&s));
}
