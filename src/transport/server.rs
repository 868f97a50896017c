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
//! Each connection is a `Connection`: a reader loop that decodes request lines and answers each
//! with one method, and one task per subscription, which takes events from a [`CatchUp`] reader in
//! batches, writes them as one buffer and waits for more. Each event is serialized once, whatever the
//! number of subscriptions that send it (a cache keyed by event id holds the bytes). Writes to one
//! connection are serialized by a lock held only while writing.
//!
//! # Slow clients, and catching up
//!
//! A client that stops reading never makes a publisher wait on a socket. Each subscription sends
//! while its flow-control window (if the client asked for one) has room and while the connection has
//! less than `max_queued_bytes` waiting to be written; otherwise it stops taking events, so its bus
//! subscriber falls behind and drops the oldest. When there is room again, the [`CatchUp`] reader
//! fetches what was dropped from the bus's history, a page at a time, and the client gets every event
//! in order, once; only what history no longer holds is lost, and that is said in a `lost` frame
//! (count, ids, reason) at its place. If one write cannot complete for `write_timeout`, the
//! connection is closed and counted in [`ServerCounters::slow_disconnects`]. (A bus configured with
//! [`crate::SlowConsumerPolicy::Block`] makes publishers wait up to its `block_timeout` by its own
//! rules; such publishes run on tokio's blocking threads, never on a runtime worker.)
//!
//! # Limits
//!
//! Connections in all (`max_connections`) and per client process (`max_connections_per_process`, by
//! the peer's process id), subscriptions per connection, bytes per request line (`max_frame`), bytes
//! waiting per connection (`max_queued_bytes`), and an idle timeout for connections with no
//! subscription that send nothing (`idle_timeout`).

#[cfg(unix)]
use super::client::RemoteStats;
use super::frame::{
    decode_request, encode_line, event_frame_prefix, ErrorCode, ErrorFrame, GapFrame, LostFrame,
    NewEvent, ReadLine, ReplaySpec, Reply, Request, ServerHello, StatsFrame, DEFAULT_MAX_FRAME,
    PROTOCOL_NAME, PROTOCOL_VERSION,
};
use super::io::SharedStream;
use super::ownership::{current_uid, peer_uid};
use super::ownership::{parent_of, prepare_socket_dir};
use crate::event_stream::{
    CatchUp, Delivery, Event, EventBus, EventFilter, EventId, SlowConsumerPolicy,
};
use crate::transport::frame::LineReader;
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

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
    /// Connections one client process may hold at once (default 512, half of `max_connections`, by
    /// the peer's process id where the platform says it), so one process cannot take every place.
    pub max_connections_per_process: usize,
    /// A connection with no subscription that sends no request for this long is closed with a
    /// `bye` frame (reason `idle`) (default 5 minutes).
    pub idle_timeout: Duration,
    /// Bytes waiting to be written to one connection past which its subscriptions stop taking
    /// events (default 64 MiB): they fall behind, and catch up from history once the client reads.
    pub max_queued_bytes: usize,
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
            max_connections_per_process: 512,
            idle_timeout: Duration::from_secs(300),
            max_queued_bytes: 64 << 20,
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
    idle_disconnects: AtomicU64,
    held_back: AtomicU64,
    lost: AtomicU64,
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
    /// Connections closed because they had no subscription and sent nothing for `idle_timeout`.
    pub fn idle_disconnects(&self) -> u64 {
        self.idle_disconnects.load(Ordering::Relaxed)
    }
    /// Times a subscription had to stop sending because the client's window or the connection's
    /// queue was full (it then falls behind and catches up from history).
    pub fn held_back(&self) -> u64 {
        self.held_back.load(Ordering::Relaxed)
    }
    /// Events reported lost to clients in `lost` frames (those with a count).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
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
        let closing = CancellationToken::new();
        let shared = Arc::new(Shared {
            bus: self.bus.clone(),
            config: self.config.clone(),
            counters: Arc::clone(&self.counters),
            // Subscribers of one bus drift apart by at most about their buffer before the bus drops
            // events for the slower one, so a cache that size encodes each event once.
            cache: EncodeCache::new(self.bus.config().subscriber_buffer.clamp(4096, 1 << 16)),
            instance: instance_of(&self.bus),
            closing: closing.clone(),
            per_process: Mutex::new(HashMap::new()),
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
        closing.cancel();
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
    /// Cancelled when the server shuts down.
    closing: CancellationToken,
    /// Open connections per peer process.
    per_process: Mutex<HashMap<u32, usize>>,
}

/// Most bytes a subscription encodes before writing them (at least one event always goes).
const BATCH_BYTES: usize = 256 * 1024;
/// Most events a subscription takes at once.
const BATCH: usize = 256;

/// The writing side of one connection: every frame goes through [`Outbox::send`], which counts the
/// bytes waiting to be written against the connection's limit.
struct Outbox {
    writer: tokio::sync::Mutex<SharedStream>,
    /// Cancelled when the connection must end (a write failed or stalled).
    dead: CancellationToken,
    write_timeout: Duration,
    counters: Arc<ServerCounters>,
    /// Bytes handed to [`Outbox::send`] and not written yet.
    queued: AtomicUsize,
    /// Signalled after each write.
    written: Notify,
    /// The limit on `queued` past which subscriptions stop encoding (they fall behind, and catch up
    /// from history once the client reads again).
    max_queued: usize,
}

impl Outbox {
    /// Writes `bytes`; false (and the connection marked dead) if that fails or stalls.
    async fn send(&self, bytes: &[u8]) -> bool {
        self.queued.fetch_add(bytes.len(), Ordering::AcqRel);
        let ok = self.write(bytes).await;
        self.queued.fetch_sub(bytes.len(), Ordering::AcqRel);
        self.written.notify_waiters();
        ok
    }

    async fn write(&self, bytes: &[u8]) -> bool {
        let mut writer = self.writer.lock().await;
        if self.dead.is_cancelled() {
            return false;
        }
        match tokio::time::timeout(self.write_timeout, writer.write_all(bytes)).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                self.dead.cancel();
                false
            }
            Err(_) => {
                self.counters
                    .slow_disconnects
                    .fetch_add(1, Ordering::Relaxed);
                self.dead.cancel();
                false
            }
        }
    }

    /// Waits until the bytes waiting to be written are under the limit; false if the connection died.
    async fn room(&self) -> bool {
        loop {
            let written = self.written.notified();
            if self.queued.load(Ordering::Acquire) < self.max_queued {
                return true;
            }
            tokio::select! {
                () = self.dead.cancelled() => return false,
                () = written => {}
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

/// A subscription's flow-control window: bytes the server may still send before the client
/// acknowledges more.
struct Window {
    left: AtomicI64,
    acked: Notify,
}

impl Window {
    /// Waits until some of the window is left; false if `cancel` fires first.
    async fn open(&self, cancel: &CancellationToken) -> bool {
        loop {
            let acked = self.acked.notified();
            if self.left.load(Ordering::Acquire) > 0 {
                return true;
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = acked => {}
            }
        }
    }
}

struct SubTask {
    /// Cancelled to stop the subscription (unsubscribe, or the connection ends).
    cancel: CancellationToken,
    window: Option<Arc<Window>>,
    handle: tokio::task::JoinHandle<()>,
}

/// Keeps the connection counts right while a connection lives.
struct ConnectionGuard {
    shared: Arc<Shared>,
    pid: Option<u32>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.shared
            .counters
            .connections
            .fetch_sub(1, Ordering::Relaxed);
        if let Some(pid) = self.pid {
            let mut per_process = self.shared.per_process.lock();
            if let Some(n) = per_process.get_mut(&pid) {
                *n -= 1;
                if *n == 0 {
                    per_process.remove(&pid);
                }
            }
        }
    }
}

/// The peer's process id, where the platform says it.
fn peer_pid(stream: &LocalSocketStream) -> Option<u32> {
    #[cfg(unix)]
    {
        stream
            .peer_creds()
            .ok()
            .and_then(|creds| creds.pid())
            .and_then(|pid| u32::try_from(pid).ok())
    }
    #[cfg(not(unix))]
    {
        let _ = stream;
        None
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
    let pid = peer_pid(&stream);
    let open = shared.counters.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let of_process = pid.map_or(0, |pid| {
        let mut per_process = shared.per_process.lock();
        let n = per_process.entry(pid).or_insert(0);
        *n += 1;
        *n
    });
    let _guard = ConnectionGuard {
        shared: Arc::clone(&shared),
        pid,
    };
    let shared_stream = SharedStream(Arc::new(stream));
    let (recv, send) = (shared_stream.clone(), shared_stream);
    let outbox = Arc::new(Outbox {
        writer: tokio::sync::Mutex::new(send),
        dead: CancellationToken::new(),
        write_timeout: shared.config.write_timeout,
        counters: Arc::clone(&shared.counters),
        queued: AtomicUsize::new(0),
        written: Notify::new(),
        max_queued: shared.config.max_queued_bytes.max(1),
    });
    let refusal = if open > shared.config.max_connections {
        Some(format!(
            "the server already has {} connections, its limit",
            shared.config.max_connections
        ))
    } else if of_process > shared.config.max_connections_per_process {
        Some(format!(
            "this process already has {} connections to the server, the limit for one process",
            shared.config.max_connections_per_process
        ))
    } else {
        None
    };
    if let Some(message) = refusal {
        outbox
            .error(ErrorFrame::new(
                None,
                ErrorCode::TooManyConnections,
                message,
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
    if !outbox.reply(&hello).await {
        return;
    }
    let reader = LineReader::new(
        tokio::io::BufReader::with_capacity(64 * 1024, recv),
        shared.config.max_frame,
    );
    Connection {
        shared,
        outbox,
        subs: HashMap::new(),
        next_sub: 0,
    }
    .run(reader)
    .await;
}

/// One client connection: its outbox, its subscriptions, and one method per request.
struct Connection {
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    subs: HashMap<u64, SubTask>,
    next_sub: u64,
}

/// How a connection ended.
#[derive(PartialEq, Eq)]
enum End {
    /// The peer left, a write failed, or the connection was idle too long.
    Gone,
    /// The server is shutting down: flush, then say bye.
    Shutdown,
}

impl Connection {
    async fn run(mut self, mut reader: LineReader<tokio::io::BufReader<SharedStream>>) {
        let mut line = Vec::new();
        let idle = self.shared.config.idle_timeout;
        let closing = self.shared.closing.clone();
        let dead = self.outbox.dead.clone();
        let end = loop {
            // A connection with no subscription that sends nothing for `idle_timeout` is closed, so
            // idle connections cannot hold the server's places for good.
            let idle_deadline = async {
                if self.subs.is_empty() {
                    tokio::time::sleep(idle).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let outcome = tokio::select! {
                biased;
                () = dead.cancelled() => break End::Gone,
                () = closing.cancelled() => break End::Shutdown,
                () = idle_deadline => {
                    self.shared.counters.idle_disconnects.fetch_add(1, Ordering::Relaxed);
                    self.outbox.reply(&Reply::Bye { reason: "idle".into() }).await;
                    break End::Gone;
                }
                read = reader.read_line(&mut line) => read,
            };
            match outcome {
                Err(_) | Ok(ReadLine::Eof) | Ok(ReadLine::Truncated(_)) => break End::Gone,
                Ok(ReadLine::TooLong(len)) => {
                    let message = format!(
                        "frame of {len} bytes exceeds the limit of {} bytes; it was skipped",
                        self.shared.config.max_frame
                    );
                    if !self
                        .outbox
                        .error(ErrorFrame::new(None, ErrorCode::FrameTooLarge, message))
                        .await
                    {
                        break End::Gone;
                    }
                }
                Ok(ReadLine::Line) => {
                    let trimmed = line.strip_suffix(b"\r").unwrap_or(&line);
                    if trimmed.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let keep_going = match decode_request(trimmed) {
                        Ok(request) => self.handle(request).await,
                        Err(err) => self.outbox.error(err.to_frame()).await,
                    };
                    if !keep_going {
                        break End::Gone;
                    }
                }
            }
        };
        // On shutdown every subscription flushes what is queued (`system.shutdown` among it);
        // otherwise they stop at once.
        for (_, task) in self.subs.drain() {
            if end == End::Gone {
                task.cancel.cancel();
            }
            let _ = task.handle.await;
        }
        if end == End::Shutdown {
            self.outbox
                .reply(&Reply::Bye {
                    reason: "shutdown".into(),
                })
                .await;
        }
        let mut writer = self.outbox.writer.lock().await;
        let _ = tokio::time::timeout(Duration::from_millis(200), writer.shutdown()).await;
    }

    /// Answers one request; false when the connection must end.
    async fn handle(&mut self, request: Request) -> bool {
        match request {
            Request::Hello { id, version, .. } => self.hello(id, version).await,
            Request::Publish { id, event } => self.publish(id, vec![event], false).await,
            Request::PublishBatch { id, events } => self.publish(id, events, true).await,
            Request::Subscribe {
                id,
                filter,
                replay,
                window,
            } => self.subscribe(id, &filter, replay, window).await,
            Request::Ack { id, sub, bytes } => self.ack(id, sub, bytes).await,
            Request::Unsubscribe { id, sub } => self.unsubscribe(id, sub).await,
            Request::History {
                id,
                filter,
                limit,
                from_id,
            } => self.history(id, &filter, limit, from_id).await,
            Request::Stats { id } => self.stats(id).await,
            Request::Ping { id } => self.outbox.reply(&Reply::Pong { id }).await,
        }
    }

    async fn hello(&self, id: u64, version: u32) -> bool {
        if version == PROTOCOL_VERSION {
            self.outbox.reply(&Reply::Ok { id }).await
        } else {
            self.outbox
                .error(ErrorFrame::new(
                    Some(id),
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}"
                    ),
                ))
                .await
        }
    }

    /// Publishes events, all or none; a batch's refusal names the event.
    async fn publish(&self, id: u64, events: Vec<NewEvent>, batch: bool) -> bool {
        let mut ready = Vec::with_capacity(events.len());
        for (index, event) in events.into_iter().enumerate() {
            match event.into_event() {
                Ok(event) => ready.push(event),
                Err(message) => {
                    let message = if batch {
                        format!("event {index}: {message}; nothing was published")
                    } else {
                        message
                    };
                    return self
                        .outbox
                        .error(ErrorFrame::new(Some(id), ErrorCode::InvalidEvent, message))
                        .await;
                }
            }
        }
        let published = if self.shared.bus.config().slow_consumer == SlowConsumerPolicy::Block {
            // A `Block` publish may wait for a slow reader: on a blocking thread, never on one of
            // the runtime's workers.
            let bus = self.shared.bus.clone();
            match tokio::task::spawn_blocking(move || publish_all(&bus, ready, batch)).await {
                Ok(published) => published,
                Err(_) => return false,
            }
        } else {
            publish_all(&self.shared.bus, ready, batch)
        };
        match published {
            Ok(ids) => self.outbox.reply(&Reply::Published { id, ids }).await,
            Err((code, message)) => {
                self.outbox
                    .error(ErrorFrame::new(Some(id), code, message))
                    .await
            }
        }
    }

    async fn subscribe(
        &mut self,
        id: u64,
        filter: &str,
        replay: ReplaySpec,
        window: Option<u64>,
    ) -> bool {
        if self.subs.len() >= self.shared.config.max_subscriptions {
            return self
                .outbox
                .error(ErrorFrame::new(
                    Some(id),
                    ErrorCode::TooManySubscriptions,
                    format!(
                        "this connection already has {} subscriptions, the limit",
                        self.shared.config.max_subscriptions
                    ),
                ))
                .await;
        }
        let filter = match EventFilter::parse(filter) {
            Ok(filter) => filter,
            Err(e) => {
                return self
                    .outbox
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
                return self
                    .outbox
                    .error(ErrorFrame::new(Some(id), ErrorCode::InvalidFrame, message))
                    .await;
            }
        };
        let reader = CatchUp::new(&self.shared.bus, filter, replay);
        self.next_sub += 1;
        let sub = self.next_sub;
        let gap = reader.replay_gap().map(GapFrame::from);
        if !self.outbox.reply(&Reply::Subscribed { id, sub, gap }).await {
            return false;
        }
        let window = window.map(|bytes| {
            Arc::new(Window {
                left: AtomicI64::new(i64::try_from(bytes).unwrap_or(i64::MAX)),
                acked: Notify::new(),
            })
        });
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(forward(
            Arc::clone(&self.shared),
            Arc::clone(&self.outbox),
            sub,
            reader,
            window.clone(),
            cancel.clone(),
        ));
        self.subs.insert(
            sub,
            SubTask {
                cancel,
                window,
                handle,
            },
        );
        true
    }

    async fn ack(&self, id: u64, sub: u64, bytes: u64) -> bool {
        if let Some(window) = self.subs.get(&sub).and_then(|task| task.window.as_ref()) {
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            let _ = window
                .left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    Some(left.saturating_add(bytes))
                });
            window.acked.notify_waiters();
        }
        // An ack for a subscription that just ended is not an error: frames were in flight.
        self.outbox.reply(&Reply::Ok { id }).await
    }

    async fn unsubscribe(&mut self, id: u64, sub: u64) -> bool {
        match self.subs.remove(&sub) {
            Some(task) => {
                task.cancel.cancel();
                let _ = task.handle.await;
                self.outbox.reply(&Reply::Ok { id }).await
            }
            None => {
                self.outbox
                    .error(ErrorFrame::new(
                        Some(id),
                        ErrorCode::UnknownSubscription,
                        format!("no open subscription {sub} on this connection"),
                    ))
                    .await
            }
        }
    }

    async fn history(
        &self,
        id: u64,
        filter: &str,
        limit: Option<usize>,
        from_id: Option<EventId>,
    ) -> bool {
        let filter = match EventFilter::parse(filter) {
            Ok(filter) => filter,
            Err(e) => {
                return self
                    .outbox
                    .error(ErrorFrame::new(
                        Some(id),
                        ErrorCode::InvalidFilter,
                        e.to_string(),
                    ))
                    .await;
            }
        };
        let (events, oldest, skip) = match from_id {
            Some(from) => {
                let limit = limit.unwrap_or(1000);
                let (events, oldest) =
                    self.shared
                        .bus
                        .history_page(&filter, from..=EventId::MAX, limit);
                (events, Some(oldest), 0)
            }
            None => {
                let events = self.shared.bus.history_arc(&filter);
                let skip = limit.map_or(0, |n| events.len().saturating_sub(n));
                (events, None, skip)
            }
        };
        let mut out = Vec::with_capacity(64 + events.len() * 256);
        out.extend_from_slice(format!("{{\"type\":\"history\",\"id\":{id},").as_bytes());
        if let Some(oldest) = oldest {
            match oldest {
                Some(oldest) => {
                    out.extend_from_slice(format!("\"oldest_held\":{oldest},").as_bytes())
                }
                None => out.extend_from_slice(b"\"oldest_held\":null,"),
            }
        }
        out.extend_from_slice(b"\"events\":[");
        for (i, event) in events.iter().skip(skip).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.shared
                .cache
                .append(event, &mut out, &self.shared.counters);
        }
        out.extend_from_slice(b"]}\n");
        self.outbox.send(&out).await
    }

    async fn stats(&self, id: u64) -> bool {
        let stats = self.shared.bus.stats();
        self.outbox
            .reply(&Reply::Stats(StatsFrame {
                id,
                stats: RemoteStats {
                    bus: stats,
                    connections: self.shared.counters.connections(),
                    encoded: self.shared.counters.encoded(),
                },
            }))
            .await
    }
}

/// Publishes `events` in order; on a bus with a data dir, stops at the first one whose record cannot
/// be written (see [`EventBus::try_publish`]) and says which were published.
fn publish_all(
    bus: &EventBus,
    events: Vec<Event>,
    batch: bool,
) -> Result<Vec<EventId>, (ErrorCode, String)> {
    let mut ids = Vec::with_capacity(events.len());
    #[cfg(not(unix))]
    let _ = batch;
    for (index, event) in events.into_iter().enumerate() {
        #[cfg(unix)]
        match bus.try_publish(event) {
            Ok(id) => ids.push(id),
            Err(err) => {
                let before = match (ids.first(), ids.last()) {
                    (Some(first), Some(last)) => {
                        format!(
                            "; events 0 to {} were published as ids {first} to {last}",
                            index - 1
                        )
                    }
                    _ => String::new(),
                };
                return Err(match err {
                    crate::event_stream::PublishError::NotStored { source, .. } => {
                        let message = if batch {
                            format!("event {index} was not published, nor any after it: {source}{before}")
                        } else {
                            err_text(&source)
                        };
                        (ErrorCode::NotStored, message)
                    }
                    crate::event_stream::PublishError::NotSynced { id, source } => {
                        let message = if batch {
                            format!("event {index} was published as id {id}, but syncing it to the disk failed, and none after it was published: {source}{before}")
                        } else {
                            format!("the event was published as id {id}, but syncing it to the disk failed: {source}")
                        };
                        (ErrorCode::NotSynced, message)
                    }
                });
            }
        }
        #[cfg(not(unix))]
        ids.push(bus.publish(event));
    }
    Ok(ids)
}

/// The refusal of a single event whose record could not be written.
#[cfg(unix)]
fn err_text(source: &crate::store::disk::DiskError) -> String {
    format!("the event was not published: {source}")
}

/// Moves one subscription's events (and losses) to the socket in batches until cancelled, the
/// connection dies, or the server closes (then what is ready is flushed first). It waits, without
/// taking events, while the client's window is used up or the connection's outbox is full: the bus
/// subscriber underneath then falls behind, and catches up from history once there is room.
async fn forward(
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    sub: u64,
    mut reader: CatchUp,
    window: Option<Arc<Window>>,
    cancel: CancellationToken,
) {
    let closing = shared.closing.clone();
    let dead = outbox.dead.clone();
    let mut items: Vec<Delivery> = Vec::with_capacity(BATCH);
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut last = false;
    let prefix = event_frame_prefix(sub);
    let _forwarding = Forwarding::start(&shared.cache.forwarding);
    loop {
        // Room first: the client's window, then the connection's outbox. While there is none the
        // bus subscriber underneath falls behind; it catches up from history afterwards.
        let window_full = window
            .as_ref()
            .is_some_and(|w| w.left.load(Ordering::Acquire) <= 0);
        if window_full || outbox.queued.load(Ordering::Acquire) >= outbox.max_queued {
            shared.counters.held_back.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(window) = &window {
            let stop = tokio::select! {
                biased;
                () = cancel.cancelled() => true,
                open = window.open(&dead) => !open,
            };
            if stop {
                return;
            }
        }
        let stop = tokio::select! {
            biased;
            () = cancel.cancelled() => true,
            room = outbox.room() => !room,
        };
        if stop {
            return;
        }
        if !last {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = dead.cancelled() => return,
                () = closing.cancelled() => last = true,
                got = reader.recv_batch(&mut items, BATCH) => {
                    if !got {
                        last = true;
                    }
                }
            }
        } else if cancel.is_cancelled() || dead.is_cancelled() {
            return;
        }
        out.clear();
        loop {
            for item in items.drain(..) {
                match item {
                    Delivery::Event(event) => {
                        out.extend_from_slice(&prefix);
                        shared.cache.append(&event, &mut out, &shared.counters);
                        out.extend_from_slice(b"}\n");
                    }
                    Delivery::Lost(loss) => {
                        if let Some(count) = loss.count {
                            shared.counters.lost.fetch_add(count, Ordering::Relaxed);
                        }
                        encode_line(&mut out, &Reply::Lost(LostFrame::new(sub, &loss)));
                    }
                }
            }
            if out.len() >= BATCH_BYTES || reader.try_recv_batch(&mut items, BATCH / 4) == 0 {
                break;
            }
        }
        if let Some(window) = &window {
            let used = i64::try_from(out.len()).unwrap_or(i64::MAX);
            window.left.fetch_sub(used, Ordering::AcqRel);
        }
        if !out.is_empty() && !outbox.send(&out).await {
            return;
        }
        if last && out.is_empty() {
            return;
        }
    }
}
