//! The socket source: the monitor attached to a bus served by another process, through
//! [`ReconnectingSubscriber`], which resumes after the last id it delivered when the bus comes back.

use super::source::{SourceMsg, CHANNEL_CAPACITY, MAX_BATCH};
use crate::event_stream::{EventFilter, Replay};
use crate::transport::{ReconnectingSubscriber, SubscriptionItem};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The name the header shows for `socket`: its file name, or the whole path if it has none.
pub fn socket_label(socket: &std::path::Path) -> String {
    socket.file_name().map_or_else(
        || socket.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Attaches to the bus served at `socket` (taking all kept history first) and forwards its events,
/// connection changes and, twice a second, its counters to the returned receiver, from a task on the
/// current tokio runtime. While the bus is away it sends [`SourceMsg::Disconnected`] with the time to
/// the next attempt, and on its return resumes after the last id it forwarded. The task ends when the
/// receiver is dropped.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn spawn_socket_source(
    socket: impl Into<PathBuf>,
) -> (mpsc::Receiver<SourceMsg>, JoinHandle<()>) {
    let socket = socket.into();
    let label = socket_label(&socket);
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let task = tokio::spawn(async move {
        let mut sub = ReconnectingSubscriber::new(socket, EventFilter::new(), Replay::All);
        let mut announced = false;
        let mut stats = tokio::time::interval(Duration::from_millis(500));
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let mut msgs = Vec::with_capacity(2);
            tokio::select! {
                biased;
                _ = stats.tick() => {
                    if let Some(remote) = sub.stats().await {
                        msgs.push(SourceMsg::Stats(remote.bus));
                    }
                }
                item = sub.next() => match item {
                    SubscriptionItem::Event(first) => {
                        let mut batch = Vec::with_capacity(64);
                        batch.push(first);
                        let after = drain(&mut sub, &mut batch).await;
                        msgs.push(SourceMsg::Events(batch));
                        match after {
                            Some(SubscriptionItem::Disconnected { retry_in }) => {
                                announced = false;
                                msgs.push(SourceMsg::Disconnected { retry_in });
                            }
                            Some(SubscriptionItem::Lost(loss)) => {
                                msgs.push(SourceMsg::Lost(loss.into()));
                            }
                            _ => {}
                        }
                    }
                    SubscriptionItem::Disconnected { retry_in } => {
                        announced = false;
                        msgs.push(SourceMsg::Disconnected { retry_in });
                    }
                    SubscriptionItem::Lost(loss) => msgs.push(SourceMsg::Lost(loss.into())),
                    SubscriptionItem::Reconnected { .. } => {}
                },
            }
            if !announced && sub.is_connected() {
                announced = true;
                msgs.insert(
                    0,
                    SourceMsg::Connected {
                        socket: label.clone(),
                        hosted: false,
                    },
                );
            }
            for msg in msgs {
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        }
    });
    (rx, task)
}

/// Adds the events already waiting to `batch`, up to [`MAX_BATCH`], without waiting for more;
/// returns the item that ended the batch if it was not an event.
async fn drain(
    sub: &mut ReconnectingSubscriber,
    batch: &mut Vec<Arc<crate::Event>>,
) -> Option<SubscriptionItem> {
    while batch.len() < MAX_BATCH && sub.is_connected() {
        // `next` is cancel-safe, and a zero timeout polls it once before giving up.
        match tokio::time::timeout(Duration::ZERO, sub.next()).await {
            Ok(SubscriptionItem::Event(event)) => batch.push(event),
            Ok(other) => return Some(other),
            Err(_) => break,
        }
    }
    None
}
