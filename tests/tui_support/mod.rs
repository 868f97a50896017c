//! Helpers shared by the monitor's tests: fixed-time events, key presses, and screen capture.
#![allow(dead_code)]

use ipckit::top::{action_for_key, update, Action, State, TopOptions};
use ipckit::Event;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Terminal;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2026-11-25 12:00:00 UTC.
pub const T0: u64 = 1_795_608_000;

pub fn at(secs_after: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0) + Duration::from_secs_f64(secs_after)
}

/// `event` stamped `secs_after` T0 with bus id `id`.
pub fn stamped(mut event: Event, id: u64, secs_after: f64) -> Arc<Event> {
    event.id = id;
    event.timestamp = at(secs_after);
    Arc::new(event)
}

pub fn state_with(history: usize, filter: Option<&str>) -> State {
    let mut state = State::new(&TopOptions {
        socket_label: "test.sock".into(),
        filter: filter.map(str::to_owned),
        history,
        utc: true,
        ..Default::default()
    })
    .unwrap();
    update(
        &mut state,
        Action::Resize {
            width: 120,
            height: 30,
        },
    );
    update(&mut state, Action::Tick { now: at(0.0) });
    state
}

pub fn feed(state: &mut State, events: Vec<Arc<Event>>) {
    update(
        state,
        Action::Events {
            events,
            at: at(0.0),
        },
    );
}

pub fn key_with(state: &mut State, code: KeyCode, modifiers: KeyModifiers) {
    if let Some(action) = action_for_key(state, &KeyEvent::new(code, modifiers)) {
        update(state, action);
    }
}

pub fn key(state: &mut State, code: KeyCode) {
    key_with(state, code, KeyModifiers::NONE);
}

pub fn typed(state: &mut State, text: &str) {
    for c in text.chars() {
        key(state, KeyCode::Char(c));
    }
}

/// Releases and repeats must be ignored.
pub fn release(state: &State, code: KeyCode) -> Option<Action> {
    let mut event = KeyEvent::new(code, KeyModifiers::NONE);
    event.kind = KeyEventKind::Release;
    action_for_key(state, &event)
}

/// The screen after drawing `state` on a `width` x `height` test terminal, one string per row, as a
/// terminal shows it: a wide character (CJK, emoji) once, not followed by the cell it covers.
pub fn screen(state: &State, width: u16, height: u16) -> Vec<String> {
    let terminal = drawn(state, width, height);
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            let mut row = String::new();
            let mut x = 0;
            while x < width {
                let symbol = buffer[(x, y)].symbol();
                row.push_str(symbol);
                x += (unicode_width::UnicodeWidthStr::width(symbol) as u16).max(1);
            }
            row
        })
        .collect()
}

/// A `width` x `height` test terminal with `state` drawn on it (through ratatui's diff, as on a real
/// terminal).
pub fn drawn(state: &State, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| ipckit::top::ui::render(state, frame))
        .unwrap();
    terminal
}

/// A mixed workload of `n` events, one every 10 ms: task lifecycle, logs, MCP progress.
pub fn workload(n: u64) -> Vec<Arc<Event>> {
    (0..n)
        .map(|i| {
            let t = i as f64 * 0.01;
            let event = match i % 5 {
                0 => Event::with_resource(
                    "task.started",
                    "render-1",
                    serde_json::json!({"frame": i}),
                ),
                1 => Event::stderr("render-2", &format!("disk slow {i}")),
                2 => Event::mcp_progress(
                    "render-token",
                    (i % 100) as f64,
                    Some(100.0),
                    Some("frame"),
                ),
                3 => Event::log("render-3", "warn", "hot"),
                _ => Event::progress("upload-9", i, 0, "bytes"),
            };
            stamped(event, i + 1, t)
        })
        .collect()
}

/// A terminal `width` x `height` with one `log.info` event carrying `message`, its detail view open.
pub fn detail_of_message(message: &str, width: u16, height: u16) -> State {
    let mut state = state_with(100, None);
    feed(
        &mut state,
        vec![stamped(
            Event::with_resource(
                "log.info",
                "job-1",
                serde_json::json!({ "message": message }),
            ),
            1,
            0.0,
        )],
    );
    update(&mut state, Action::Resize { width, height });
    key(&mut state, KeyCode::Enter);
    state
}
