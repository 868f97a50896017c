//! Everything that can change the monitor's [`State`](super::State), and the pure functions that turn
//! key presses and source messages into it.

use super::source::{Loss, SourceMsg, SourceStats};
use super::state::{Focus, State};
use crate::event_stream::Event;
use ratatui::crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tui_input::InputRequest;

/// One change to the monitor's state, applied by [`update`](super::update).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Leave the monitor.
    Quit,
    /// Show or hide the key help.
    ToggleHelp,
    /// Close the help or detail overlay.
    CloseOverlay,
    /// Move the selection this many rows (negative: up, towards older events).
    Move(i64),
    /// Move the selection one screenful up.
    PageUp,
    /// Move the selection one screenful down.
    PageDown,
    /// Select the oldest matching event.
    First,
    /// Follow the newest events again (and leave pause or scrubbing).
    Live,
    /// Pause or resume following (while scrubbing: pause or resume the replay).
    TogglePause,
    /// Open the detail view of the selected event.
    OpenDetail,
    /// Scroll the detail view this many lines.
    ScrollDetail(i64),
    /// Start editing the filter.
    FilterStart,
    /// An edit of the filter text.
    FilterInput(InputRequest),
    /// Keep the edited filter.
    FilterCommit,
    /// Restore the filter in force before editing.
    FilterCancel,
    /// Recall an earlier filter.
    FilterRecallPrev,
    /// Recall a later filter.
    FilterRecallNext,
    /// Move the history cursor one matching event back.
    ScrubBack,
    /// Move the history cursor one matching event forward.
    ScrubForward,
    /// Move the history cursor one second back.
    ScrubJumpBack,
    /// Move the history cursor one second forward.
    ScrubJumpForward,
    /// Put the history cursor on the oldest kept event.
    ScrubOldest,
    /// Replay forward from the cursor, cycling 1x, 10x, 100x, off.
    CycleReplay,
    /// Events arrived at `at`.
    Events {
        /// The events, oldest first.
        events: Vec<Arc<Event>>,
        /// When they arrived (for the header's rate).
        at: SystemTime,
    },
    /// The source missed events here: after the events it sent so far, before those it sends next.
    Lost(Loss),
    /// The source attached to a bus.
    Connected {
        /// The socket or label to show.
        socket: String,
        /// The bus is hosted by this process.
        hosted: bool,
    },
    /// The source lost its bus and retries after `retry_in`.
    Disconnected {
        /// Time until the next attempt.
        retry_in: Duration,
    },
    /// New bus counters.
    Stats(SourceStats),
    /// Time passed: rates, spinners, staleness, replay and the retry countdown move on.
    Tick {
        /// The wall clock now.
        now: SystemTime,
    },
    /// The terminal has this size.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// Test a slice of history against a new filter (background work, see
    /// [`State::has_background_work`]).
    Scan,
}

impl Action {
    /// The action for a source message that arrived at `at`.
    pub fn from_source(msg: SourceMsg, at: SystemTime) -> Self {
        match msg {
            SourceMsg::Connected { socket, hosted } => Action::Connected { socket, hosted },
            SourceMsg::Events(events) => Action::Events { events, at },
            SourceMsg::EventsFrom { events, .. } => Action::Events { events, at },
            SourceMsg::Lost(loss) => Action::Lost(loss),
            SourceMsg::Stats(stats) => Action::Stats(stats),
            SourceMsg::Disconnected { retry_in } => Action::Disconnected { retry_in },
        }
    }
}

/// Every key, as the help overlay lists it: (keys, what they do).
pub const KEYS: &[(&str, &str)] = &[
    ("q  Ctrl-C", "quit"),
    ("?", "show / hide this help"),
    (
        "/",
        "edit the filter (Enter keeps, Esc restores, ↑/↓ recall)",
    ),
    ("j k  ↓ ↑", "select the next / previous event"),
    ("PgDn PgUp", "one screenful down / up"),
    ("g  G", "oldest event / newest event, following"),
    ("space  p", "pause / resume (while scrubbing: replay)"),
    ("Enter", "detail of the selected event (JSON)"),
    ("← →", "history cursor one event back / forward"),
    ("[  ]", "history cursor one second back / forward"),
    ("Home", "history cursor to the oldest kept event"),
    ("r", "replay from the cursor: 1x, 10x, 100x, off"),
    ("L  End", "back to LIVE"),
    ("Esc", "close help or detail"),
];

/// The action for a terminal event, given what has the focus; `None` for anything ignored (key
/// releases and repeats included, mouse and focus events).
pub fn action_for_terminal_event(state: &State, event: &TermEvent) -> Option<Action> {
    match event {
        TermEvent::Key(key) => action_for_key(state, key),
        TermEvent::Resize(width, height) => Some(Action::Resize {
            width: *width,
            height: *height,
        }),
        _ => None,
    }
}

/// The action for a key press, given what has the focus; `None` for keys that do nothing there and for
/// releases and repeats.
pub fn action_for_key(state: &State, key: &KeyEvent) -> Option<Action> {
    if key.kind != KeyEventKind::Press {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    match state.focus() {
        Focus::Help => Some(match key.code {
            KeyCode::Char('q') | KeyCode::Char('?') | KeyCode::Esc | KeyCode::Enter => {
                Action::CloseOverlay
            }
            _ => return None,
        }),
        Focus::Detail => Some(match key.code {
            KeyCode::Char('q') | KeyCode::Esc | KeyCode::Enter => Action::CloseOverlay,
            KeyCode::Char('j') | KeyCode::Down => Action::ScrollDetail(1),
            KeyCode::Char('k') | KeyCode::Up => Action::ScrollDetail(-1),
            KeyCode::PageDown => Action::ScrollDetail(10),
            KeyCode::PageUp => Action::ScrollDetail(-10),
            KeyCode::Char('?') => Action::ToggleHelp,
            _ => return None,
        }),
        Focus::Filter => Some(match key.code {
            KeyCode::Enter => Action::FilterCommit,
            KeyCode::Esc => Action::FilterCancel,
            KeyCode::Up => Action::FilterRecallPrev,
            KeyCode::Down => Action::FilterRecallNext,
            _ => Action::FilterInput(tui_input::backend::crossterm::to_input_request(
                &TermEvent::Key(*key),
            )?),
        }),
        Focus::Events => Some(match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Char('?') => Action::ToggleHelp,
            KeyCode::Char('/') => Action::FilterStart,
            KeyCode::Char('j') | KeyCode::Down => Action::Move(1),
            KeyCode::Char('k') | KeyCode::Up => Action::Move(-1),
            KeyCode::PageDown => Action::PageDown,
            KeyCode::PageUp => Action::PageUp,
            KeyCode::Char('g') => Action::First,
            KeyCode::Char('G') | KeyCode::Char('L') | KeyCode::End => Action::Live,
            KeyCode::Char(' ') | KeyCode::Char('p') => Action::TogglePause,
            KeyCode::Enter => Action::OpenDetail,
            KeyCode::Left => Action::ScrubBack,
            KeyCode::Right => Action::ScrubForward,
            KeyCode::Char('[') => Action::ScrubJumpBack,
            KeyCode::Char(']') => Action::ScrubJumpForward,
            KeyCode::Home => Action::ScrubOldest,
            KeyCode::Char('r') => Action::CycleReplay,
            KeyCode::Esc => Action::CloseOverlay,
            _ => return None,
        }),
    }
}
