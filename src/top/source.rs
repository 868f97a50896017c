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
//! - [`SourceMsg::Disconnected`] when the bus went away, saying when it will try again.
//!
//! The channel should be bounded, and a source waits for room in it rather than discarding: when the
//! monitor falls behind, the source stops reading and the bus's slow-consumer policy decides. What the
//! bus then drops for the monitor comes back as [`SourceMsg::Lost`], or not at all where the source can
//! fetch it again from the bus's history. The channel itself never loses a message.

use crate::event_stream::{BusStats, Event, EventBus, EventFilter, EventId, Replay};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Most events a source puts in one [`SourceMsg::Events`].
pub const MAX_BATCH: usize = 4096;

/// Capacity (in messages) of the channel [`spawn_bus_source`] makes.
pub const CHANNEL_CAPACITY: usize = 64;

/// Bus counters as the header shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceStats {
    /// Events published on the bus so far.
    pub published: u64,
    /// Subscribers attached to the bus (the monitor included).
    pub subscribers: usize,
    /// Events the bus's slow-consumer policies discarded.
    pub dropped: u64,
}

impl From<BusStats> for SourceStats {
    fn from(stats: BusStats) -> Self {
        Self {
            published: stats.published,
            subscribers: stats.subscribers,
            dropped: stats.dropped,
        }
    }
}

/// Events this monitor did not get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// How many events were missed.
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
    /// Events the source could not deliver, missed at this place in the stream: after the events
    /// sent before this message and before those sent after it.
    Lost(Loss),
    /// Counters of the bus.
    Stats(SourceStats),
    /// The bus went away; the source tries again after `retry_in`.
    Disconnected {
        /// Time until the next attempt.
        retry_in: Duration,
    },
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
    let subscriber = bus.subscribe_with_replay(EventFilter::new(), Replay::All);
    // Every event published from here on is delivered to the subscriber or counted as dropped for it:
    // ids after this one must all arrive.
    let mut gaps = GapFinder::new(bus.last_id());
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
        loop {
            let msgs = tokio::select! {
                biased;
                // First, so that a flood of events cannot starve the counters.
                _ = stats.tick() => vec![SourceMsg::Stats(bus.stats().into())],
                event = subscriber.recv_async() => match event {
                    Some(first) => {
                        let mut batch = Vec::with_capacity(MAX_BATCH);
                        batch.push(first);
                        subscriber.try_recv_batch(&mut batch, MAX_BATCH - 1);
                        gaps.fill(&bus, batch)
                    }
                    None => vec![SourceMsg::Disconnected { retry_in: Duration::MAX }],
                },
            };
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

/// Finds the ids missing from an unfiltered subscription to one bus (ids are gapless per bus), fetches
/// them from the bus's history, and says what history no longer holds.
struct GapFinder {
    /// The next id that must arrive (ids below it were replayed or are not this subscriber's).
    expected: EventId,
}

impl GapFinder {
    /// Ids above `subscribed_at` were published after the subscription.
    fn new(subscribed_at: EventId) -> Self {
        Self {
            expected: subscribed_at.saturating_add(1),
        }
    }

    /// `batch` as messages, with what the subscriber missed in between fetched from `bus`'s history or
    /// reported lost, in order, in batches of at most [`MAX_BATCH`].
    fn fill(&mut self, bus: &EventBus, batch: Vec<Arc<Event>>) -> Vec<SourceMsg> {
        let mut out = Vec::new();
        let mut run: Vec<Arc<Event>> = Vec::with_capacity(batch.len());
        for event in batch {
            if event.id > self.expected {
                let (first, last) = (self.expected, event.id - 1);
                let held = bus.history_arc(&EventFilter::new().since_id(first).until_id(last));
                // History is a contiguous run of ids, so what it lacks is the start of the gap.
                let first_held = held
                    .first()
                    .map_or(event.id, |e| e.id)
                    .clamp(first, event.id);
                if first_held > first {
                    flush(&mut out, &mut run);
                    let reason = if bus.config().history_size == 0 {
                        LossReason::Lagged
                    } else {
                        LossReason::HistoryEvicted
                    };
                    out.push(SourceMsg::Lost(Loss {
                        count: first_held - first,
                        first_id: Some(first),
                        last_id: Some(first_held - 1),
                        reason,
                    }));
                }
                run.extend(held.into_iter().filter(|e| (first..=last).contains(&e.id)));
            }
            self.expected = self.expected.max(event.id.saturating_add(1));
            run.push(event);
        }
        flush(&mut out, &mut run);
        out
    }
}

/// Moves `run` into `out` as [`SourceMsg::Events`] of at most [`MAX_BATCH`] events each.
fn flush(out: &mut Vec<SourceMsg>, run: &mut Vec<Arc<Event>>) {
    if run.len() <= MAX_BATCH {
        if !run.is_empty() {
            out.push(SourceMsg::Events(std::mem::take(run)));
        }
        return;
    }
    let mut rest = std::mem::take(run).into_iter();
    loop {
        let chunk: Vec<Arc<Event>> = rest.by_ref().take(MAX_BATCH).collect();
        if chunk.is_empty() {
            return;
        }
        out.push(SourceMsg::Events(chunk));
    }
}
