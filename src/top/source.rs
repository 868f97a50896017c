//! Where the monitor's events come from. The runtime reads [`SourceMsg`]s from a
//! `tokio::sync::mpsc::Receiver`, so a bus in this process ([`spawn_bus_source`]) and a bus attached over
//! a socket look the same to it.
//!
//! A source sends, in any order it likes:
//! - [`SourceMsg::Connected`] when it is attached (again);
//! - [`SourceMsg::Events`] batches, oldest first, each event once: after a reconnection it resumes after
//!   the last id it forwarded (`Replay::FromId(last + 1)`), so the monitor sees no gap and no duplicate
//!   where the bus still holds them;
//! - [`SourceMsg::Stats`] now and then (twice a second is plenty);
//! - [`SourceMsg::Disconnected`] when the bus went away, saying when it will try again.
//!
//! The channel should be bounded: when the monitor falls behind, the source then stops reading and the
//! bus's slow-consumer policy decides, visibly in the dropped count.

use crate::event_stream::{BusStats, Event, EventBus, EventFilter, Replay};
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
            let msg = tokio::select! {
                biased;
                // First, so that a flood of events cannot starve the counters.
                _ = stats.tick() => SourceMsg::Stats(bus.stats().into()),
                event = subscriber.recv_async() => match event {
                    Some(first) => {
                        let mut batch = Vec::with_capacity(MAX_BATCH);
                        batch.push(first);
                        subscriber.try_recv_batch(&mut batch, MAX_BATCH - 1);
                        SourceMsg::Events(batch)
                    }
                    None => SourceMsg::Disconnected { retry_in: Duration::MAX },
                },
            };
            let last = matches!(msg, SourceMsg::Disconnected { .. });
            if tx.send(msg).await.is_err() || last {
                return;
            }
        }
    });
    (rx, task)
}
