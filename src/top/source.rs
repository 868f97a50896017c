//! Where the monitor's events come from. The runtime reads [`SourceMsg`]s from a
//! `tokio::sync::mpsc::Receiver`, so a bus in this process ([`spawn_bus_source`]) and a bus attached over
//! a socket look the same to it.
//!
//! A source sends, in any order it likes:
//! - [`SourceMsg::Connected`] when it is attached (again);
//! - [`SourceMsg::Events`] batches, oldest first, each event once: after a reconnection it resumes after
//!   the last id it forwarded (`Replay::FromId(last + 1)`), so the monitor sees no gap and no duplicate
//!   where the bus still holds them;
//! - [`SourceMsg::Lost`] where events it should have forwarded are missing, between the batches before
//!   and after the place they were missed;
//! - [`SourceMsg::Stats`] now and then (twice a second is plenty);
//! - [`SourceMsg::Disconnected`] when the bus went away, saying when it will try again;
//! - [`SourceMsg::Lost`] where events will not come, in their place among the events.
//!
//! The channel should be bounded: when the monitor falls behind, the source stops reading, its bus
//! subscriber drops the oldest events, and the source then catches up on them from the bus's history
//! ([`crate::event_stream::CatchUp`]); only what history no longer holds is lost, and said.

use crate::event_stream::{
    BusStats, CatchUp, Delivery, Event, EventBus, EventFilter, EventId, Replay,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Most events a source puts in one [`SourceMsg::Events`].
pub const MAX_BATCH: usize = 4096;

/// Capacity (in messages) of the channel [`spawn_bus_source`] makes.
pub const CHANNEL_CAPACITY: usize = 64;

/// Events this monitor did not get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// How many events were missed; 0 when the source cannot count them (a bus that restarted took
    /// its count with it), shown as "events may be lost".
    pub count: u64,
    /// The bus id of the first missed event, when the source knows it.
    pub first_id: Option<EventId>,
    /// The bus id of the last missed event, when the source knows it.
    pub last_id: Option<EventId>,
    /// Why they were missed.
    pub reason: LossReason,
}

/// Why a monitor missed events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// The monitor (or its link to the bus) fell behind and the bus discarded events queued for it.
    Lagged,
    /// Events the monitor missed (while lagging or away) that the bus's history no longer held when it
    /// came to fetch them.
    HistoryEvicted,
    /// The bus restarted: what the old one published after the monitor last heard from it is gone.
    BusRestarted,
    /// Any other cause.
    Other,
}

impl From<crate::event_stream::Loss> for Loss {
    /// A count that cannot be known (a restarted bus) becomes 0, with the reason saying why.
    fn from(loss: crate::event_stream::Loss) -> Self {
        use crate::event_stream::LossReason as Why;
        Self {
            count: loss.count.unwrap_or(0),
            first_id: loss.first_id,
            last_id: loss.last_id,
            reason: match loss.reason {
                Why::Lagged => LossReason::Lagged,
                Why::HistoryEvicted => LossReason::HistoryEvicted,
                Why::BusRestarted => LossReason::BusRestarted,
                _ => LossReason::Other,
            },
        }
    }
}

/// How the reading of a recording is going: sent by a recording source when it starts, as it skips
/// lines, and when it is done.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordingStatus {
    /// The recording's name as the header shows it (its file name, `stdin`, or the data dir's name).
    pub name: String,
    /// Lines (of a file) or records (of a data dir) that were not events, skipped.
    pub skipped: u64,
    /// Where the first skipped one is: "line 17", "id 40".
    pub first_skipped: Option<String>,
    /// Why the first one was skipped.
    pub first_skip_reason: Option<String>,
    /// Everything is read.
    pub loaded: bool,
    /// Reading stopped early: why (the events read before are shown).
    pub error: Option<String>,
    /// Something else worth saying (a data dir another server is writing to).
    pub note: Option<String>,
}

impl RecordingStatus {
    /// "3 lines skipped, first at line 17", or nothing when none was.
    pub fn skipped_text(&self) -> Option<String> {
        if self.skipped == 0 {
            return None;
        }
        let what = match self.first_skipped.as_deref() {
            Some(at) if at.starts_with("id") => "records",
            _ => "lines",
        };
        let what = if self.skipped == 1 {
            what.trim_end_matches('s')
        } else {
            what
        };
        let mut text = format!("{} {what} skipped", crate::top::ui::thousands(self.skipped));
        if let Some(at) = &self.first_skipped {
            text.push_str(&format!(", first at {at}"));
        }
        Some(text)
    }
}

/// One message from an event source to the monitor.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceMsg {
    /// Attached to a bus.
    Connected {
        /// The socket (or label) shown in the header.
        socket: String,
        /// The bus is hosted by this process (shown as "hosting" rather than "attached").
        hosted: bool,
    },
    /// Events, oldest first.
    Events(Vec<Arc<Event>>),
    /// Events, oldest first, that came from `origin` (a machine or bus, such as a NATS subject's
    /// publisher): the event pane shows an origin column once events from two origins were seen.
    EventsFrom {
        /// Where they came from.
        origin: Arc<str>,
        /// The events.
        events: Vec<Arc<Event>>,
    },
    /// How the reading of a recording (`--open`) is going.
    Recording(RecordingStatus),
    /// Events the source could not deliver, missed at this place in the stream: after the events
    /// sent before this message and before those sent after it.
    Lost(Loss),
    /// Counters of the bus.
    Stats(BusStats),
    /// The bus went away; the source tries again after `retry_in`.
    Disconnected {
        /// Time until the next attempt.
        retry_in: Duration,
    },
    /// The source keeps more than the monitor holds and reads it back on request: the scrubber
    /// reaches past the oldest held event through this link ([`crate::top::ArchiveLink`]).
    Archive(super::archive::ArchiveLink),
    /// A page of older events, read for a request sent through the [`SourceMsg::Archive`] link.
    Page(super::archive::ArchivePage),
}

/// Subscribes to `bus` (taking all kept history first) and forwards its events and, twice a second, its
/// counters to the returned receiver, from a task on the current tokio runtime. The task ends when the
/// receiver is dropped or the bus is gone.
///
/// When the bus discards events queued for the monitor (its slow-consumer policy, while the monitor
/// is behind), the source fetches them again from the bus's history and forwards them in their place;
/// what history no longer holds is sent as a [`SourceMsg::Lost`] at that place. Events the bus published
/// before the subscription and no longer kept are not counted as lost: this monitor never had them.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn spawn_bus_source(
    bus: &EventBus,
    socket: impl Into<String>,
    hosted: bool,
) -> (mpsc::Receiver<SourceMsg>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let mut reader = CatchUp::new(bus, EventFilter::new(), Replay::All);
    let bus = bus.clone();
    let socket = socket.into();
    let task = tokio::spawn(async move {
        if tx
            .send(SourceMsg::Connected { socket, hosted })
            .await
            .is_err()
        {
            return;
        }
        let mut stats = tokio::time::interval(Duration::from_millis(500));
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut items: Vec<Delivery> = Vec::with_capacity(MAX_BATCH);
        loop {
            let mut msgs = Vec::with_capacity(2);
            tokio::select! {
                biased;
                // First, so that a flood of events cannot starve the counters.
                _ = stats.tick() => msgs.push(SourceMsg::Stats(bus.stats())),
                open = reader.recv_batch(&mut items, MAX_BATCH) => {
                    let mut batch = Vec::with_capacity(items.len());
                    for item in items.drain(..) {
                        match item {
                            Delivery::Event(event) => batch.push(event),
                            Delivery::Lost(loss) => {
                                if !batch.is_empty() {
                                    msgs.push(SourceMsg::Events(std::mem::take(&mut batch)));
                                }
                                msgs.push(SourceMsg::Lost(loss.into()));
                            }
                        }
                    }
                    if !batch.is_empty() {
                        msgs.push(SourceMsg::Events(batch));
                    }
                    if !open {
                        msgs.push(SourceMsg::Disconnected { retry_in: Duration::MAX });
                    }
                }
            }
            for msg in msgs {
                let last = matches!(msg, SourceMsg::Disconnected { .. });
                if tx.send(msg).await.is_err() || last {
                    return;
                }
            }
        }
    });
    (rx, task)
}
