//! Getting the proxy's events onto the bus without ever holding up the relay.
//!
//! The relay threads hand events to an [`EventSink`], which never waits: it puts them on a bounded
//! channel, or counts them as dropped when the channel is full or the bus is known to be away. A
//! background task ([`Publisher`]) takes them off the channel in batches and publishes each batch
//! with one [`Client::publish_batch`]; when the bus cannot be reached it retries (100 ms, doubling to
//! 2 s) and, meanwhile, events are dropped. The first drop is said once on stderr.

use crate::event_stream::Event;
use crate::transport::Client;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Events waiting for the bus at most; past it they are dropped.
pub const QUEUE: usize = 8192;
/// Events published in one batch at most.
const BATCH: usize = 1024;
/// After the first event of a batch, how long the publisher waits for more before publishing: the
/// monitor sees events this much later, and a busy relay wakes the publisher (and the bus) once per
/// this interval rather than once per message.
const LINGER: Duration = Duration::from_millis(5);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Shared {
    /// The bus answered the last attempt (or none was made yet).
    up: AtomicBool,
    dropped: AtomicU64,
    warned: AtomicBool,
    /// Why the bus is away, for the warning.
    reason: Mutex<String>,
}

impl Shared {
    fn drop_events(&self, n: u64, reason: Option<&str>) {
        if n == 0 {
            return;
        }
        self.dropped.fetch_add(n, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            let reason = match reason {
                Some(reason) => reason.to_owned(),
                None => self.reason.lock().clone(),
            };
            eprintln!(
                "ipckit-top mcp: {reason}; events are dropped until it answers (the relay goes on)"
            );
        }
    }

    fn down(&self, reason: String) {
        *self.reason.lock() = reason;
        self.up.store(false, Ordering::Release);
    }
}

/// Where the relay threads put events. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Event>,
    shared: Arc<Shared>,
}

impl EventSink {
    /// Queues `events` (leaving the vector empty), or counts them as dropped when the bus is away
    /// or behind.
    pub fn send(&self, events: &mut Vec<Event>) {
        if events.is_empty() {
            return;
        }
        if !self.shared.up.load(Ordering::Acquire) {
            self.shared.drop_events(events.len() as u64, None);
            events.clear();
            return;
        }
        for event in events.drain(..) {
            if self.tx.try_send(event).is_err() {
                self.shared
                    .drop_events(1, Some("the bus is not keeping up with the events"));
            }
        }
    }

    /// Counts `n` events as dropped, for `reason` (said on stderr if it is the first drop).
    pub fn count_dropped(&self, n: u64, reason: &str) {
        self.shared.drop_events(n, Some(reason));
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// The background task that publishes what the sink queues.
#[derive(Debug)]
pub struct Publisher {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    /// Starts publishing to the bus at `socket` (connecting in the background) and returns the sink
    /// to feed it.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(socket: PathBuf) -> (Publisher, EventSink) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            up: AtomicBool::new(true),
            dropped: AtomicU64::new(0),
            warned: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(publish(socket, rx, Arc::clone(&shared), stopped));
        (
            Publisher {
                stop: Some(stop),
                task,
            },
            EventSink { tx, shared },
        )
    }

    /// Publishes what is queued (if the bus is there), waiting at most `limit`, then stops.
    pub async fn finish(mut self, limit: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(limit, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

async fn publish(
    socket: PathBuf,
    mut rx: mpsc::Receiver<Event>,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut stopping = false;
    loop {
        let client = match Client::connect(&socket).await {
            Ok(client) => {
                shared.up.store(true, Ordering::Release);
                backoff = MIN_BACKOFF;
                client
            }
            Err(e) => {
                shared.down(e.to_string());
                let mut queued = 0;
                while rx.try_recv().is_ok() {
                    queued += 1;
                }
                shared.drop_events(queued, None);
                if stopping {
                    return;
                }
                tokio::select! {
                    biased;
                    _ = &mut stop => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            if !stopping {
                tokio::select! {
                    biased;
                    event = rx.recv() => match event {
                        Some(event) => batch.push(event),
                        None => return,
                    },
                    _ = &mut stop => stopping = true,
                }
                if !stopping {
                    tokio::select! {
                        biased;
                        _ = &mut stop => stopping = true,
                        () = tokio::time::sleep(LINGER) => {}
                    }
                }
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                if stopping {
                    return;
                }
                continue;
            }
            if let Err(e) = client.publish_batch(&batch).await {
                shared.down(e.to_string());
                shared.drop_events(batch.len() as u64, None);
                break;
            }
        }
    }
}
