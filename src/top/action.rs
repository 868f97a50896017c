//! Everything that can change the monitor's [`State`](super::State), and the pure function that turns
//! source messages into it (keys become actions through the [key table](super::KEYMAP)).

use super::archive::{ArchiveLink, ArchivePage};
use super::source::{Loss, RecordingStatus, SourceMsg};
use crate::event_stream::BusStats;
use crate::event_stream::Event;
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
    /// Scroll the open overlay (detail view or help) this many lines.
    ScrollDetail(i64),
    /// Focus the next pane.
    FocusNext,
    /// Focus the previous pane.
    FocusPrev,
    /// Move the gauge selection this many gauges (saturating at the first and last).
    SelectGauge(i64),
    /// Show only the selected gauge's events: the filter bar gets the gauge's expression (kept, and
    /// recalled by ↑ like any other), and the event pane the focus.
    DrillDown,
    /// Go back: from a gauge's events to the filter and the progress pane as they were; from the
    /// progress pane to the event pane.
    Back,
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
    /// Replay forward from the cursor, cycling 1x, 10x, 100x (silences over a second cut short), the
    /// original pace (every silence kept), off.
    CycleReplay,
    /// Open the prompt for a file to write the matching events to.
    PromptStart,
    /// An edit of the file name.
    PromptInput(InputRequest),
    /// Write the matching events to the file named.
    PromptCommit,
    /// Close the prompt without writing.
    PromptCancel,
    /// Events arrived at `at`.
    Events {
        /// The events, oldest first.
        events: Vec<Arc<Event>>,
        /// When they arrived (for the header's rate).
        at: SystemTime,
    },
    /// Events from `origin` arrived at `at`.
    EventsFrom {
        /// Where they came from.
        origin: Arc<str>,
        /// The events, oldest first.
        events: Vec<Arc<Event>>,
        /// When they arrived.
        at: SystemTime,
    },
    /// How the reading of a recording is going.
    Recording(RecordingStatus),
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
    Stats(BusStats),
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
    /// [`State::has_background_work`](super::State::has_background_work)).
    Scan,
    /// The source can read events older than the monitor holds ([`ArchiveLink`]).
    Archive(ArchiveLink),
    /// A page of older events arrived.
    Page(ArchivePage),
}

impl Action {
    /// The action for a source message that arrived at `at`.
    pub fn from_source(msg: SourceMsg, at: SystemTime) -> Self {
        match msg {
            SourceMsg::Connected { socket, hosted } => Action::Connected { socket, hosted },
            SourceMsg::Events(events) => Action::Events { events, at },
            SourceMsg::EventsFrom { origin, events } => Action::EventsFrom { origin, events, at },
            SourceMsg::Recording(status) => Action::Recording(status),
            SourceMsg::Lost(loss) => Action::Lost(loss),
            SourceMsg::Stats(stats) => Action::Stats(stats),
            SourceMsg::Disconnected { retry_in } => Action::Disconnected { retry_in },
            SourceMsg::Archive(link) => Action::Archive(link),
            SourceMsg::Page(page) => Action::Page(page),
        }
    }
}
