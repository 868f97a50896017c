//! The server: serves an [`EventBus`] on a local socket.
//!
//! ```no_run
//! # async fn host() -> Result<(), ipckit::transport::ServeError> {
//! use ipckit::transport::{Server, ServerConfig};
//! let bus = ipckit::EventBus::default();
//! let server = Server::bind(bus.clone(), ServerConfig::new("/run/user/1000/ipckit/default.sock"))?;
//! // Serve until Ctrl-C or SIGTERM; or pass any future to `run_until`.
//! server.run_until(ipckit::transport::shutdown_signal()).await
//! # }
//! ```
//!
//! # How a connection is served
//!
//! Each connection has a reader task, which decodes request lines and answers them, and one task per
//! subscription, which takes events from a bus subscriber in batches, writes them as one buffer and
//! waits for more. Each event is serialized once, whatever the number of subscriptions that send it
//! (a cache keyed by event id holds the bytes). Writes to one connection are serialized by a lock held
//! only while writing.
//!
//! # Slow clients
//!
//! A client that stops reading never makes a publisher wait on a socket: its subscriptions are bus
//! subscribers, so their queues are bounded by the bus's `subscriber_buffer` and its slow-consumer
//! policy discards what does not fit (the client is sent a `lagged` frame with the count when it
//! reads again). If one write cannot complete for `write_timeout`, the connection is closed and
//! counted in [`ServerCounters::slow_disconnects`]. (A bus configured with
//! [`crate::SlowConsumerPolicy::Block`] makes publishers wait up to its `block_timeout` by its own
//! rules; `ipckit-top serve` uses `DropOldest`.)

use super::frame::{
    decode_request, encode_line, event_frame_prefix, ErrorCode, ErrorFrame, GapFrame, ReadLine,
    Reply, Request, ServerHello, StatsFrame, DEFAULT_MAX_FRAME, PROTOCOL_NAME, PROTOCOL_VERSION,
};
use super::io::SharedStream;
#[cfg(unix)]
use super::ownership::{current_uid, peer_uid};
use super::ownership::{parent_of, prepare_socket_dir};
use crate::event_stream::{Event, EventBus, EventFilter, EventId, EventSubscriber};
use crate::transport::frame::LineReader;
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Settings of a [`Server`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the socket file goes.
    pub socket: PathBuf,
    /// The longest request line read, newline excluded (default 1 MiB).
    pub max_frame: usize,
    /// Connections served at once (default 1024); the one over gets a `too_many_connections` error
    /// frame and is closed.
    pub max_connections: usize,
    /// Subscriptions per connection (default 64).
    pub max_subscriptions: usize,
    /// How long one write to a client may take before the client is disconnected as stuck (default 30 s).
    pub write_timeout: Duration,
    /// On shutdown, how long connections get to flush what is queued for them (default 2 s).
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// The defaults, serving at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            max_frame: DEFAULT_MAX_FRAME,
            max_connections: 1024,
            max_subscriptions: 64,
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// Why a server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another server answers on the socket.
    #[error("a bus is already serving at {0} (stop it first, or pick another --socket)")]
    AlreadyServing(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// The socket's directory is not safe to use.
    #[error("unsafe socket directory {path}: {reason}")]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A socket another user made is in the way.
    #[error("refusing to replace {}: {}", .0.path.display(), .0.reason)]
    ForeignSocket(super::ownership::Unsafe),
    /// The socket path has no parent directory or is otherwise unusable.
    #[error("invalid socket path {0}")]
    InvalidPath(PathBuf),
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What failed.
        context: String,
        /// The error.
        source: io::Error,
    },
}

impl ServeError {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> ServeError {
        let context = context.into();
        move |source| ServeError::Io { context, source }
    }
}

/// Counters of a running server, shared with [`Server::counters`].
#[derive(Debug, Default)]
pub struct ServerCounters {
    connections: AtomicUsize,
    accepted: AtomicU64,
    refused_peers: AtomicU64,
    slow_disconnects: AtomicU64,
    bad_frames: AtomicU64,
    encoded: AtomicU64,
}

impl ServerCounters {
    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
    /// Connections accepted so far (including refused ones).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    /// Connections closed because the peer was another user.
    pub fn refused_peers(&self) -> u64 {
        self.refused_peers.load(Ordering::Relaxed)
    }
    /// Connections closed because a write to them stalled for `write_timeout`.
    pub fn slow_disconnects(&self) -> u64 {
        self.slow_disconnects.load(Ordering::Relaxed)
    }
    /// Lines answered with an error frame.
    pub fn bad_frames(&self) -> u64 {
        self.bad_frames.load(Ordering::Relaxed)
    }
    /// Events serialized for the wire (once each, whatever the number of receivers).
    pub fn encoded(&self) -> u64 {
        self.encoded.load(Ordering::Relaxed)
    }
}

/// A bus served on a local socket. Create it with [`Server::bind`] inside a tokio runtime, then drive
/// it with [`Server::run_until`] (or [`Server::run`]).
pub struct Server {
    bus: EventBus,
    config: ServerConfig,
    listener: Option<LocalSocketListener>,
    identity: Option<(u64, u64)>,
    counters: Arc<ServerCounters>,
}

/// A future that completes on SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl Server {
    /// Prepares the socket directory (created 0700), replaces a stale socket file, refuses a live one,
    /// and listens (socket 0600, set before `listen`).
    ///
    /// # Errors
    ///
    /// [`ServeError::AlreadyServing`] when a server answers at the path; [`ServeError::NotASocket`],
    /// [`ServeError::UnsafeDirectory`] or [`ServeError::Io`] otherwise.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the listener registers with its reactor).
    pub fn bind(bus: EventBus, config: ServerConfig) -> Result<Server, ServeError> {
        let path = config.socket.clone();
        let dir = parent_of(&path).ok_or_else(|| ServeError::InvalidPath(path.clone()))?;
        prepare_socket_dir(&dir).map_err(|e| ServeError::UnsafeDirectory {
            path: e.path,
            reason: e.reason.to_string(),
        })?;
        clear_stale(&path)?;
        let name = path
            .as_path()
            .to_fs_name::<GenericFilePath>()
            .map_err(ServeError::io(format!(
                "invalid socket path {}",
                path.display()
            )))?;
        let options = ListenerOptions::new().name(name).reclaim_name(false);
        #[cfg(unix)]
        let options = {
            use interprocess::os::unix::local_socket::ListenerOptionsExt;
            options.mode(0o600)
        };
        let listener = match options.create_tokio() {
            Ok(listener) => listener,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(ServeError::AlreadyServing(path));
            }
            Err(e) => {
                return Err(ServeError::io(format!(
                    "cannot listen on {}",
                    path.display()
                ))(e))
            }
        };
        let identity = file_identity(&path);
        Ok(Server {
            bus,
            config,
            listener: Some(listener),
            identity,
            counters: Arc::new(ServerCounters::default()),
        })
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        &self.config.socket
    }

    /// The served bus.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// The server's counters, live while it runs.
    pub fn counters(&self) -> Arc<ServerCounters> {
        Arc::clone(&self.counters)
    }

    /// Serves until SIGINT or SIGTERM, then shuts down as [`Server::run_until`] does.
    ///
    /// # Errors
    ///
    /// As [`Server::run_until`].
    pub async fn run(self) -> Result<(), ServeError> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes; then publishes `system.shutdown` on the bus, lets every
    /// connection flush what is queued for it (up to `shutdown_grace`), sends each a `bye` frame,
    /// and removes the socket file if it is still the one this server created (same inode).
    ///
    /// # Errors
    ///
    /// None at present: accept errors (such as running out of file descriptors) are retried.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Some(listener) = self.listener.take() else {
            return Ok(());
        };
        let (closing_tx, closing_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            bus: self.bus.clone(),
            config: self.config.clone(),
            counters: Arc::clone(&self.counters),
            // Subscribers of one bus drift apart by at most about their buffer before the bus drops
            // events for the slower one, so a cache that size encodes each event once.
            cache: EncodeCache::new(self.bus.config().subscriber_buffer.clamp(4096, 1 << 16)),
            instance: instance_of(&self.bus),
            closing: closing_rx,
        });
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(stream) => {
                        shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
                        connections.spawn(serve_connection(Arc::clone(&shared), stream));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        self.bus.publish(Event::new(
            crate::event_types::SYSTEM_SHUTDOWN,
            serde_json::json!({ "reason": "server shutting down" }),
        ));
        let _ = closing_tx.send(true);
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
        self.remove_socket();
        Ok(())
    }

    fn remove_socket(&mut self) {
        if let Some(identity) = self.identity.take() {
            if file_identity(&self.config.socket) == Some(identity) {
                let _ = std::fs::remove_file(&self.config.socket);
            }
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("socket", &self.config.socket)
            .finish_non_exhaustive()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.remove_socket();
    }
}

/// (device, inode) of a file.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Some((0, 0))
    }
}

/// Removes a socket file no server answers on; refuses a live one or a non-socket.
fn clear_stale(path: &Path) -> Result<(), ServeError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        use std::os::unix::fs::MetadataExt;
        if !meta.file_type().is_socket() {
            return Err(ServeError::NotASocket(path.to_path_buf()));
        }
        if meta.uid() != current_uid() {
            return Err(ServeError::ForeignSocket(super::ownership::Unsafe {
                path: path.to_path_buf(),
                reason: super::ownership::Reason::OwnedBy(meta.uid()),
            }));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => Err(ServeError::AlreadyServing(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
                .map_err(ServeError::io(format!(
                    "cannot remove stale socket {}",
                    path.display()
                ))),
            Err(e) => Err(ServeError::io(format!("cannot probe {}", path.display()))(
                e,
            )),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(())
    }
}

/// A process-wide name for each bus served, stable while the bus lives.
fn instance_of(bus: &EventBus) -> String {
    static REGISTRY: Mutex<Vec<(Weak<dyn std::any::Any + Send + Sync>, u64)>> =
        Mutex::new(Vec::new());
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let strong: Arc<dyn std::any::Any + Send + Sync> = bus.inner.clone();
    let mut registry = REGISTRY.lock();
    registry.retain(|(weak, _)| weak.strong_count() > 0);
    let serial = match registry
        .iter()
        .find(|(weak, _)| weak.upgrade().is_some_and(|b| Arc::ptr_eq(&b, &strong)))
    {
        Some((_, serial)) => *serial,
        None => {
            let serial = NEXT.fetch_add(1, Ordering::Relaxed);
            registry.push((Arc::downgrade(&strong), serial));
            serial
        }
    };
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    static PROCESS_START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = *PROCESS_START.get_or_init(|| started);
    format!("{}-{start:x}-{serial}", std::process::id())
}

/// Serialized events by id, so each is encoded once however many subscriptions send it.
struct EncodeCache {
    slots: Box<[Mutex<Option<Encoded>>]>,
    /// Subscriptions forwarding events now: while there is only one, nothing is shared and events
    /// are encoded straight into its output.
    forwarding: AtomicUsize,
}

/// An event id and the event serialized as JSON.
type Encoded = (EventId, Arc<[u8]>);

impl EncodeCache {
    fn new(slots: usize) -> Self {
        Self {
            slots: (0..slots).map(|_| Mutex::new(None)).collect(),
            forwarding: AtomicUsize::new(0),
        }
    }

    /// Appends `event`'s JSON to `out`: the bytes another subscription already encoded, or encoded
    /// now (and kept for the others, unless no other subscription is forwarding).
    fn append(&self, event: &Event, out: &mut Vec<u8>, counters: &ServerCounters) {
        let start = out.len();
        if self.forwarding.load(Ordering::Relaxed) <= 1 {
            encode_event(out, event, counters);
            return;
        }
        let index = usize::try_from(event.id % self.slots.len() as u64).unwrap_or(0);
        let mut slot = self.slots[index].lock();
        if let Some((id, bytes)) = &*slot {
            if *id == event.id {
                out.extend_from_slice(bytes);
                return;
            }
        }
        // Encoded in place, then copied once into the shared bytes: one allocation.
        encode_event(out, event, counters);
        *slot = Some((event.id, Arc::from(&out[start..])));
    }
}

fn encode_event(out: &mut Vec<u8>, event: &Event, counters: &ServerCounters) {
    // Serializing an `Event` into a Vec cannot fail: string keys only, no I/O.
    let _ = serde_json::to_writer(&mut *out, event);
    counters.encoded.fetch_add(1, Ordering::Relaxed);
}

/// Counts a subscription as forwarding while it lives.
struct Forwarding<'a>(&'a AtomicUsize);

impl<'a> Forwarding<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Forwarding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Shared {
    bus: EventBus,
    config: ServerConfig,
    counters: Arc<ServerCounters>,
    cache: EncodeCache,
    instance: String,
    closing: watch::Receiver<bool>,
}

/// The writing side of one connection.
struct Conn {
    writer: tokio::sync::Mutex<SharedStream>,
    /// Set when the connection must end (a write failed or stalled).
    dead: watch::Sender<bool>,
    write_timeout: Duration,
    counters: Arc<ServerCounters>,
}

impl Conn {
    /// Writes `bytes`; false (and the connection marked dead) if that fails or stalls.
    async fn send(&self, bytes: &[u8]) -> bool {
        let mut writer = self.writer.lock().await;
        if *self.dead.borrow() {
            return false;
        }
        match tokio::time::timeout(self.write_timeout, writer.write_all(bytes)).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                self.dead.send_replace(true);
                false
            }
            Err(_) => {
                self.counters
                    .slow_disconnects
                    .fetch_add(1, Ordering::Relaxed);
                self.dead.send_replace(true);
                false
            }
        }
    }

    async fn reply(&self, reply: &Reply) -> bool {
        let mut out = Vec::with_capacity(128);
        encode_line(&mut out, reply);
        self.send(&out).await
    }

    async fn error(&self, frame: ErrorFrame) -> bool {
        self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
        self.reply(&Reply::Error(frame)).await
    }
}

struct SubTask {
    cancel: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

struct ConnectionGuard(Arc<ServerCounters>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: LocalSocketStream) {
    #[cfg(unix)]
    {
        // SO_PEERCRED on Linux (getpeereid elsewhere): refuse other users before they get any data.
        let same_user = peer_uid(&stream).is_some_and(|uid| uid == current_uid());
        if !same_user {
            shared
                .counters
                .refused_peers
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    let open = shared.counters.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let _guard = ConnectionGuard(Arc::clone(&shared.counters));
    let shared_stream = SharedStream(Arc::new(stream));
    let (recv, send) = (shared_stream.clone(), shared_stream);
    let (dead, mut dead_rx) = watch::channel(false);
    let conn = Arc::new(Conn {
        writer: tokio::sync::Mutex::new(send),
        dead,
        write_timeout: shared.config.write_timeout,
        counters: Arc::clone(&shared.counters),
    });
    if open > shared.config.max_connections {
        conn.error(ErrorFrame::new(
            None,
            ErrorCode::TooManyConnections,
            format!(
                "the server already has {} connections, its limit",
                shared.config.max_connections
            ),
        ))
        .await;
        return;
    }
    let hello = Reply::Hello(ServerHello {
        protocol: PROTOCOL_NAME.to_owned(),
        version: PROTOCOL_VERSION,
        server: concat!("ipckit-top ", env!("CARGO_PKG_VERSION")).to_owned(),
        instance: shared.instance.clone(),
        last_id: shared.bus.last_id(),
        max_frame: shared.config.max_frame,
    });
    if !conn.reply(&hello).await {
        return;
    }
    let mut reader = LineReader::new(
        tokio::io::BufReader::with_capacity(64 * 1024, recv),
        shared.config.max_frame,
    );
    let mut subs: HashMap<u64, SubTask> = HashMap::new();
    let mut next_sub = 0u64;
    let mut closing = shared.closing.clone();
    let mut line = Vec::new();
    let mut said_bye = false;
    loop {
        let outcome = tokio::select! {
            biased;
            _ = dead_rx.changed() => break,
            _ = closing.wait_for(|c| *c) => {
                said_bye = true;
                break;
            }
            read = reader.read_line(&mut line) => read,
        };
        match outcome {
            Err(_) | Ok(ReadLine::Eof) | Ok(ReadLine::Truncated(_)) => break,
            Ok(ReadLine::TooLong(len)) => {
                let message = format!(
                    "frame of {len} bytes exceeds the limit of {} bytes; it was skipped",
                    shared.config.max_frame
                );
                if !conn
                    .error(ErrorFrame::new(None, ErrorCode::FrameTooLarge, message))
                    .await
                {
                    break;
                }
            }
            Ok(ReadLine::Line) => {
                let trimmed = line.strip_suffix(b"\r").unwrap_or(&line);
                if trimmed.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let request = match decode_request(trimmed) {
                    Ok(request) => request,
                    Err(err) => {
                        if !conn.error(err.to_frame()).await {
                            break;
                        }
                        continue;
                    }
                };
                if !handle(&shared, &conn, &mut subs, &mut next_sub, request).await {
                    break;
                }
            }
        }
    }
    // Let every subscription flush what is queued (on shutdown, `system.shutdown` among it).
    for (_, task) in subs.drain() {
        if !said_bye {
            let _ = task.cancel.send(());
        }
        let _ = task.handle.await;
    }
    if said_bye {
        conn.reply(&Reply::Bye {
            reason: "shutdown".into(),
        })
        .await;
    }
    let mut writer = conn.writer.lock().await;
    let _ = tokio::time::timeout(Duration::from_millis(200), writer.shutdown()).await;
}

/// Answers one request; false when the connection must end.
async fn handle(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    subs: &mut HashMap<u64, SubTask>,
    next_sub: &mut u64,
    request: Request,
) -> bool {
    match request {
        Request::Hello { id, version, .. } => {
            if version == PROTOCOL_VERSION {
                conn.reply(&Reply::Ok { id }).await
            } else {
                conn.error(ErrorFrame::new(
                    Some(id),
                    ErrorCode::UnsupportedVersion,
                    format!("protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}"),
                ))
                .await
            }
        }
        Request::Publish { id, event } => match event.into_event() {
            Ok(event) => {
                let event_id = shared.bus.publish(event);
                conn.reply(&Reply::Published {
                    id,
                    ids: vec![event_id],
                })
                .await
            }
            Err(message) => {
                conn.error(ErrorFrame::new(Some(id), ErrorCode::InvalidEvent, message))
                    .await
            }
        },
        Request::PublishBatch { id, events } => {
            let mut ready = Vec::with_capacity(events.len());
            for (index, event) in events.into_iter().enumerate() {
                match event.into_event() {
                    Ok(event) => ready.push(event),
                    Err(message) => {
                        return conn
                            .error(ErrorFrame::new(
                                Some(id),
                                ErrorCode::InvalidEvent,
                                format!("event {index}: {message}; nothing was published"),
                            ))
                            .await;
                    }
                }
            }
            let ids = ready.into_iter().map(|e| shared.bus.publish(e)).collect();
            conn.reply(&Reply::Published { id, ids }).await
        }
        Request::Subscribe { id, filter, replay } => {
            if subs.len() >= shared.config.max_subscriptions {
                return conn
                    .error(ErrorFrame::new(
                        Some(id),
                        ErrorCode::TooManySubscriptions,
                        format!(
                            "this connection already has {} subscriptions, the limit",
                            shared.config.max_subscriptions
                        ),
                    ))
                    .await;
            }
            let filter = match EventFilter::parse(&filter) {
                Ok(filter) => filter,
                Err(e) => {
                    return conn
                        .error(ErrorFrame::new(
                            Some(id),
                            ErrorCode::InvalidFilter,
                            e.to_string(),
                        ))
                        .await;
                }
            };
            let replay = match replay.to_replay() {
                Ok(replay) => replay,
                Err(message) => {
                    return conn
                        .error(ErrorFrame::new(Some(id), ErrorCode::InvalidFrame, message))
                        .await;
                }
            };
            let subscriber = shared.bus.subscribe_with_replay(filter, replay);
            *next_sub += 1;
            let sub = *next_sub;
            let gap = subscriber.replay_gap().map(GapFrame::from);
            if !conn.reply(&Reply::Subscribed { id, sub, gap }).await {
                return false;
            }
            let (cancel, cancelled) = tokio::sync::oneshot::channel();
            let handle = tokio::spawn(forward(
                Arc::clone(shared),
                Arc::clone(conn),
                sub,
                subscriber,
                cancelled,
            ));
            subs.insert(sub, SubTask { cancel, handle });
            true
        }
        Request::Unsubscribe { id, sub } => match subs.remove(&sub) {
            Some(task) => {
                let _ = task.cancel.send(());
                let _ = task.handle.await;
                conn.reply(&Reply::Ok { id }).await
            }
            None => {
                conn.error(ErrorFrame::new(
                    Some(id),
                    ErrorCode::UnknownSubscription,
                    format!("no open subscription {sub} on this connection"),
                ))
                .await
            }
        },
        Request::History { id, filter, limit } => {
            let filter = match EventFilter::parse(&filter) {
                Ok(filter) => filter,
                Err(e) => {
                    return conn
                        .error(ErrorFrame::new(
                            Some(id),
                            ErrorCode::InvalidFilter,
                            e.to_string(),
                        ))
                        .await;
                }
            };
            let events = shared.bus.history_arc(&filter);
            let skip = limit.map_or(0, |n| events.len().saturating_sub(n));
            let mut out = Vec::with_capacity(64 + events.len() * 256);
            out.extend_from_slice(
                format!("{{\"type\":\"history\",\"id\":{id},\"events\":[").as_bytes(),
            );
            for (i, event) in events.iter().skip(skip).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                shared.cache.append(event, &mut out, &shared.counters);
            }
            out.extend_from_slice(b"]}\n");
            conn.send(&out).await
        }
        Request::Stats { id } => {
            let stats = shared.bus.stats();
            conn.reply(&Reply::Stats(StatsFrame {
                id,
                published: stats.published,
                delivered: stats.delivered,
                dropped: stats.dropped,
                subscribers: stats.subscribers,
                history_len: stats.history_len,
                oldest_id: stats.oldest_id,
                connections: shared.counters.connections(),
                encoded: shared.counters.encoded(),
            }))
            .await
        }
        Request::Ping { id } => conn.reply(&Reply::Pong { id }).await,
    }
}

/// Moves one subscription's events to the socket in batches until cancelled, the connection dies, or
/// the server closes (then what is queued is flushed first).
async fn forward(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    sub: u64,
    subscriber: EventSubscriber,
    mut cancelled: tokio::sync::oneshot::Receiver<()>,
) {
    const BATCH: usize = 256;
    let mut closing = shared.closing.clone();
    let mut dead = conn.dead.subscribe();
    let mut batch: Vec<Arc<Event>> = Vec::with_capacity(BATCH);
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut reported_dropped = 0u64;
    let mut last = false;
    let prefix = event_frame_prefix(sub);
    let _forwarding = Forwarding::start(&shared.cache.forwarding);
    loop {
        tokio::select! {
            biased;
            _ = &mut cancelled => return,
            _ = dead.wait_for(|d| *d) => return,
            _ = closing.wait_for(|c| *c), if !last => {
                last = true;
            }
            event = subscriber.recv_async(), if !last => match event {
                Some(event) => batch.push(event),
                None => last = true,
            },
        }
        let room = BATCH.saturating_sub(batch.len());
        subscriber.try_recv_batch(&mut batch, room);
        if last {
            // Drain everything queued, in bounded batches.
            while subscriber.try_recv_batch(&mut batch, BATCH) > 0 && batch.len() < 64 * BATCH {}
        }
        out.clear();
        let dropped = subscriber.dropped();
        if dropped > reported_dropped {
            encode_line(
                &mut out,
                &Reply::Lagged {
                    sub,
                    missed: dropped - reported_dropped,
                },
            );
            reported_dropped = dropped;
        }
        for event in batch.drain(..) {
            out.extend_from_slice(&prefix);
            shared.cache.append(&event, &mut out, &shared.counters);
            out.extend_from_slice(b"}\n");
        }
        if !out.is_empty() && !conn.send(&out).await {
            return;
        }
        if last && subscriber.is_empty() {
            return;
        }
    }
}
