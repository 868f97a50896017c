//! `ipckit-top`'s full-screen monitor.
//!
//! The shape follows the Elm architecture:
//! - [`State`] holds everything shown, as plain data;
//! - key presses ([`action_for_key`], through the one key table [`KEYMAP`]) and source messages
//!   ([`Action::from_source`]) become [`Action`]s in pure functions, and [`update`] is the one place
//!   state changes;
//! - [`ui::render`] draws a `&State`, one file per pane, formatting only the rows on screen;
//! - [`run_loop`] is the one `select!` loop, generic over the ratatui backend; [`run_with_source`] puts
//!   it on the real terminal and restores the terminal on every way out.
//!
//! Events come from a [`SourceMsg`] channel, so a bus in this process ([`spawn_bus_source`],
//! [`run_on_bus`]) and one served by another process ([`spawn_socket_source`]) look alike to the
//! monitor.
//!
//! Memory is bounded by [`TopOptions::history`]: the events in the compact [`store`](crate::store)
//! (rows and LZ4 blocks, about 55 bytes an event of a render farm's, decoded for the rows on screen),
//! the positions of those matching the filter (4 bytes each; none for the empty filter), rate bins,
//! and about 128 snapshots of the gauges over the history (for the scrubber).
//!
//! [`run_recording`] shows a recording (`--open`: NDJSON, gzip, zstd, stdin or a data dir) through the
//! same loop, its events read into the same log by a source of their own.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ipckit::top::TopError> {
//! let bus = ipckit::EventBus::new(Default::default());
//! let options = ipckit::top::TopOptions {
//!     socket_label: "default.sock".into(),
//!     filter: Some("task.* !task.progress".into()),
//!     ..Default::default()
//! };
//! ipckit::top::run_on_bus(&bus, options).await
//! # }
//! ```

mod action;
mod archive;
mod attach;
mod export;
mod keymap;
mod log;
mod loss;
#[cfg(feature = "nats")]
mod nats_archive;
#[cfg(feature = "nats")]
mod nats_source;
pub mod progress;
mod recording;
mod remote;
mod runtime;
mod source;
mod state;
mod terms;
pub mod ui;
mod update;

pub use action::Action;
pub use archive::{Anchor, ArchiveLink, ArchivePage, ArchiveRequest, PageSpan, PAGE_EVENTS};
pub use attach::{run_at_socket, HOSTED_SUBSCRIBER_BUFFER};
pub use keymap::{
    action_for_key, action_for_terminal_event, command_for, footer, section, Binding, Command, Key,
    KEYMAP,
};
pub use log::Seq;
#[cfg(feature = "nats")]
pub use nats_source::{run_on_nats, spawn_nats_source};
pub use recording::{open_recording, run_recording, Recording, RecordingError};
pub use remote::{socket_label, spawn_socket_source};
pub use runtime::{run, run_loop, run_on_bus, run_with_source, TICK};
pub use source::{
    spawn_bus_source, Loss, LossReason, RecordingStatus, SourceMsg, CHANNEL_CAPACITY, MAX_BATCH,
};
pub use state::{Connection, Detail, Focus, Mode, Paused, Row, State};
pub use terms::TermCountView;
pub use update::{update, SCAN_SLICE};

use crate::event_stream::FilterError;
use std::time::Duration;

/// What the monitor is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopOptions {
    /// The socket shown in the header until the source names one.
    pub socket_label: String,
    /// The initial filter expression (`--filter`).
    pub filter: Option<String>,
    /// Events kept for scrolling, filtering and scrubbing (`--history`); at least 1.
    pub history: usize,
    /// Most frames drawn per second.
    pub frame_rate: u32,
    /// Show times in UTC rather than local time.
    pub utc: bool,
}

impl Default for TopOptions {
    fn default() -> Self {
        Self {
            socket_label: "in-process".to_owned(),
            filter: None,
            history: crate::transport::DEFAULT_HISTORY,
            frame_rate: 30,
            utc: false,
        }
    }
}

impl TopOptions {
    /// Time between frames at [`TopOptions::frame_rate`].
    pub fn frame_period(&self) -> Duration {
        Duration::from_secs(1) / self.frame_rate.max(1)
    }
}

/// Why the monitor stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The initial filter does not parse.
    #[error("invalid filter: {0}")]
    Filter(#[from] FilterError),
    /// The terminal or the runtime failed.
    #[error("terminal error: {0}")]
    Io(#[from] std::io::Error),
    /// Standard output is not a terminal.
    #[error(
        "the monitor needs a terminal, and stdout is not one (`ipckit-top events` prints events)"
    )]
    NoTerminal,
    /// Drawing a frame failed.
    #[error("drawing failed: {0}")]
    Draw(String),
    /// A bus answered at the socket but attaching failed.
    #[error(transparent)]
    Attach(#[from] crate::transport::ClientError),
    /// No bus answered and hosting one at the socket failed.
    #[error(transparent)]
    Serve(#[from] crate::transport::ServeError),
    /// The recording to open (`--open`) cannot be read.
    #[error(transparent)]
    Recording(#[from] RecordingError),
    /// NATS refused the stream, the URL or the credentials.
    #[cfg(feature = "nats")]
    #[error(transparent)]
    Nats(#[from] crate::nats::NatsError),
}
