//! Getting the proxy's events onto the bus without ever holding up the relay.
//!
//! The relay threads hand events to an [`EventSink`], which never waits: it puts them on a bounded
//! channel, or counts them as dropped when the channel is full or the bus is known to be away. A
//! background task ([`Publisher`]) takes them off the channel in batches and publishes each batch
//! with one [`Client::publish_batch`] (or, on NATS, through a JetStream publisher with a window of
//! acks); when the bus cannot be reached it retries (100 ms, doubling to 2 s) and, meanwhile, events
//! are dropped. The first drop is said once on stderr.

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

/// Where the proxy's events go.
#[derive(Debug, Clone)]
pub enum Destination {
    /// The bus at this socket.
    Socket(PathBuf),
    /// A NATS JetStream stream (checked or created first), as origin this host's name.
    #[cfg(feature = "nats")]
    Nats(crate::nats::NatsOptions),
}

/// An open way to the destination.
enum Link {
    Socket(Client),
    #[cfg(feature = "nats")]
    Nats {
        publisher: Box<crate::nats::Publisher>,
        instance: Arc<str>,
        /// The id of the last event sent: ids count from 1 per process, as the stream's
        /// deduplication (origin, instance, id) expects.
        last_id: u64,
    },
}

/// How long a NATS publish may wait for its ack before the stream counts as away.
#[cfg(feature = "nats")]
const NATS_GIVE_UP_AFTER: Duration = Duration::from_secs(10);

impl Link {
    async fn open(destination: &Destination) -> Result<Self, String> {
        match destination {
            Destination::Socket(socket) => Client::connect(socket)
                .await
                .map(Link::Socket)
                .map_err(|e| e.to_string()),
            #[cfg(feature = "nats")]
            Destination::Nats(nats) => {
                use crate::nats;
                let client = nats::connect(nats, None).await.map_err(|e| e.to_string())?;
                let js = nats::jetstream(client, Duration::from_secs(5));
                nats::ensure_stream(&js, nats)
                    .await
                    .map_err(|e| e.to_string())?;
                let origin = nats::host_name();
                let instance = nats::process_instance(&origin);
                let publisher =
                    nats::Publisher::new(js, nats.mapping(), &origin, nats::DEFAULT_WINDOW)
                        .give_up_after(NATS_GIVE_UP_AFTER);
                Ok(Link::Nats {
                    publisher: Box::new(publisher),
                    instance,
                    last_id: 0,
                })
            }
        }
    }

    /// Sends `batch`; on failure, how many of it were not sent, and why.
    async fn send(&mut self, batch: &mut [Event]) -> Result<(), (usize, String)> {
        match self {
            Link::Socket(client) => client
                .publish_batch(batch)
                .await
                .map(drop)
                .map_err(|e| (batch.len(), e.to_string())),
            #[cfg(feature = "nats")]
            Link::Nats {
                publisher,
                instance,
                last_id,
            } => {
                let total = batch.len();
                for (sent, event) in batch.iter_mut().enumerate() {
                    *last_id += 1;
                    event.id = *last_id;
                    publisher
                        .send(instance, event, None)
                        .await
                        .map_err(|e| (total - sent, e.to_string()))?;
                }
                Ok(())
            }
        }
    }

    /// Waits for what is in flight (NATS acks); nothing to wait for on the socket.
    async fn settle(&mut self) -> Result<(), String> {
        match self {
            Link::Socket(_) => Ok(()),
            #[cfg(feature = "nats")]
            Link::Nats { publisher, .. } => {
                publisher.flush().await.map(drop).map_err(|e| e.to_string())
            }
        }
    }
}

/// The background task that publishes what the sink queues.
#[derive(Debug)]
pub struct Publisher {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    /// Starts publishing to `destination` (connecting in the background) and returns the sink to
    /// feed it.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(destination: Destination) -> (Publisher, EventSink) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            up: AtomicBool::new(true),
            dropped: AtomicU64::new(0),
            warned: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(publish(destination, rx, Arc::clone(&shared), stopped));
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
    destination: Destination,
    mut rx: mpsc::Receiver<Event>,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut stopping = false;
    loop {
        let mut link = match Link::open(&destination).await {
            Ok(link) => {
                shared.up.store(true, Ordering::Release);
                backoff = MIN_BACKOFF;
                link
            }
            Err(e) => {
                shared.down(e);
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
                    if let Err(e) = link.settle().await {
                        shared.down(e);
                    }
                    return;
                }
                continue;
            }
            if let Err((unsent, e)) = link.send(&mut batch).await {
                shared.down(e);
                shared.drop_events(unsent as u64, None);
                break;
            }
        }
    }
}
