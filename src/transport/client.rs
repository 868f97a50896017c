//! The client: attach to a served bus, publish, subscribe, query; and a subscriber that reconnects.

use super::frame::{
    decode_server_frame, encode_line, split_event_frame, LineReader, ReadLine, ReplaySpec, Reply,
    Request, ServerFrame, ServerHello, StatsFrame, PROTOCOL_VERSION,
};
use super::io::SharedStream;
use crate::event_stream::{
    BusStats, Event, EventFilter, EventId, EventRef, Loss, LossReason, Replay, ReplayGap,
};
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::GenericFilePath;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// The longest server line a client reads by default (history replies can be large).
pub const DEFAULT_MAX_LINE: usize = 256 << 20;
/// How long a request waits for its reply by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The flow-control window of a subscription by default: bytes of its frames held unread before the
/// server waits for the reader.
pub const DEFAULT_WINDOW: u64 = 8 << 20;
/// Most items handed over in one batch.
const SUB_BATCH: usize = 256;
/// Most bytes of event JSON handed over in one batch.
const SUB_BATCH_BYTES: usize = 48 * 1024;

/// Settings of a [`Client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// How long [`Client::connect`] waits for the server's hello (default 10 s).
    pub hello_timeout: Duration,
    /// How long a request waits for its reply (default 10 s).
    pub request_timeout: Duration,
    /// The longest line read from the server (default 256 MiB); a longer one closes the connection,
    /// since what it held cannot be known.
    pub max_line: usize,
    /// Each subscription's flow-control window in bytes (default 8 MiB): the server stops sending a
    /// subscription whose reader has that much unread, so one slow subscription never holds up the
    /// others on the connection, and never fills this process's memory (the server catches up from
    /// history when it reads again).
    pub window: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            hello_timeout: DEFAULT_REQUEST_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_line: DEFAULT_MAX_LINE,
            window: DEFAULT_WINDOW,
        }
    }
}

/// Events (and losses) handed from the connection's reader to one subscription at once.
///
/// The reader only frames lines and routes them; an event is parsed by the subscription when it is
/// received. Parsing then runs on the consumer's task (in parallel when subscriptions are read on
/// several threads), and each event is allocated just before it is used and freed before the next
/// one is parsed, which keeps the allocator on its fast path.
#[derive(Default)]
struct Batch {
    /// The event JSON of the `Raw::Json` items, back to back.
    bytes: Vec<u8>,
    items: Vec<Raw>,
    /// Bytes of the frames it came in (newlines included), for flow control.
    wire_bytes: u64,
}

/// One item of a [`Batch`].
enum Raw {
    /// An event still to be parsed: its JSON is `bytes[start..end]`.
    Json { start: usize, end: usize },
    /// An event already parsed (a frame not in the form servers normally write).
    Parsed(Arc<Event>),
    /// Events that will not come.
    Lost(Loss),
}

impl Batch {
    fn is_full(&self) -> bool {
        self.items.len() >= SUB_BATCH || self.bytes.len() >= SUB_BATCH_BYTES
    }
}

/// A received batch being read by its subscription.
#[derive(Default)]
struct Ready {
    bytes: Vec<u8>,
    items: std::vec::IntoIter<Raw>,
}

impl Ready {
    /// The next item, parsing it if needed; events whose JSON does not parse are counted in
    /// `unreadable` and skipped.
    fn next(&mut self, unreadable: &mut u64) -> Option<RemoteItem> {
        for raw in self.items.by_ref() {
            match raw {
                Raw::Json { start, end } => {
                    // One UTF-8 check of the whole event, then a parse that need not check each
                    // string again.
                    match self
                        .bytes
                        .get(start..end)
                        .and_then(|json| std::str::from_utf8(json).ok())
                        .map(serde_json::from_str::<Event>)
                    {
                        Some(Ok(event)) => return Some(RemoteItem::Event(Arc::new(event))),
                        _ => *unreadable += 1,
                    }
                }
                Raw::Parsed(event) => return Some(RemoteItem::Event(event)),
                Raw::Lost(loss) => return Some(RemoteItem::Lost(loss)),
            }
        }
        None
    }

    /// Hands each item still to be read to `f` (events as borrowed views), until `f` breaks (the rest
    /// stay for the next read). Returns how many items `f` saw and whether it broke.
    fn each_ref(
        &mut self,
        unreadable: &mut u64,
        f: &mut impl FnMut(RemoteRef<'_>) -> ControlFlow<()>,
    ) -> (usize, bool) {
        let mut seen = 0;
        for raw in self.items.by_ref() {
            let flow = match raw {
                Raw::Json { start, end } => match self
                    .bytes
                    .get(start..end)
                    .and_then(|json| std::str::from_utf8(json).ok())
                    .map(EventRef::parse)
                {
                    Some(Ok(event)) => f(RemoteRef::Event(event)),
                    _ => {
                        *unreadable += 1;
                        continue;
                    }
                },
                Raw::Parsed(event) => {
                    let Ok(json) = serde_json::to_string(&*event) else {
                        *unreadable += 1;
                        continue;
                    };
                    match EventRef::parse(&json) {
                        Ok(event) => f(RemoteRef::Event(event)),
                        Err(_) => {
                            *unreadable += 1;
                            continue;
                        }
                    }
                }
                Raw::Lost(loss) => f(RemoteRef::Lost(loss)),
            };
            seen += 1;
            if flow.is_break() {
                return (seen, true);
            }
        }
        (seen, false)
    }
}

impl From<Batch> for Ready {
    fn from(batch: Batch) -> Self {
        Ready {
            bytes: batch.bytes,
            items: batch.items.into_iter(),
        }
    }
}

/// What went wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the socket.
    #[error("no bus is answering at {socket} (start one with `ipckit-top serve`)")]
    NoServer {
        /// The socket path.
        socket: PathBuf,
    },
    /// Connecting failed for another reason.
    #[error("cannot connect to {socket}: {source}")]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The socket, its directory or the process serving it belongs to another user: refused before
    /// anything is sent.
    #[error("refusing to connect: {0}")]
    Unsafe(#[from] super::ownership::Unsafe),
    /// The server does not speak this protocol.
    #[error("the server at {socket} does not speak protocol version {PROTOCOL_VERSION}: {detail}")]
    Protocol {
        /// The socket path.
        socket: PathBuf,
        /// What it said.
        detail: String,
    },
    /// The server answered the request with an error frame.
    #[error("the server refused the request: {message} ({code})")]
    Refused {
        /// The error code.
        code: super::frame::ErrorCode,
        /// The server's sentence.
        message: String,
    },
    /// The connection closed (the server shut down or dropped us).
    #[error("the connection to the bus closed")]
    Closed,
    /// No reply came in time.
    #[error("the bus did not answer within {0:?}")]
    Timeout(Duration),
    /// A filter failed to format (never expected) or the request could not be encoded.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl ClientError {
    /// Whether the error means the server is gone or unreachable (worth retrying later).
    pub fn is_disconnect(&self) -> bool {
        matches!(
            self,
            ClientError::NoServer { .. }
                | ClientError::Connect { .. }
                | ClientError::Closed
                | ClientError::Timeout(_)
        )
    }
}

/// A served bus's counters, from [`Client::stats`]: the bus's own ([`BusStats`], the same type
/// [`crate::EventBus::stats`] gives in process) and the server's beside them. On the wire, in the
/// `stats` frame, all are fields of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RemoteStats {
    /// The bus's counters (the subscribers include each remote subscription).
    #[serde(flatten)]
    pub bus: BusStats,
    /// Client connections open now.
    #[serde(default)]
    pub connections: usize,
    /// Events serialized for the wire so far (each at most once, whatever the number of receivers).
    #[serde(default)]
    pub encoded: u64,
}

impl From<StatsFrame> for RemoteStats {
    fn from(frame: StatsFrame) -> Self {
        frame.stats
    }
}

/// What a [`RemoteSubscriber`] receives.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteItem {
    /// An event.
    Event(Arc<Event>),
    /// Events that will not come (the server could not catch up on them from history), at their
    /// place in the stream.
    Lost(Loss),
}

/// What [`RemoteSubscriber::recv_refs`] hands over: an event read in place, or a loss.
#[derive(Debug)]
pub enum RemoteRef<'a> {
    /// An event, borrowed from the received bytes.
    Event(EventRef<'a>),
    /// Events that will not come, at their place in the stream.
    Lost(Loss),
}

enum Pending {
    Reply(oneshot::Sender<Result<ServerFrame, ClientError>>),
    Subscribe(
        oneshot::Sender<Result<ServerFrame, ClientError>>,
        mpsc::UnboundedSender<Batch>,
    ),
    /// A subscribe whose caller stopped waiting: if the server opens it after all, it is closed.
    Abandoned,
}

struct Inner {
    socket: PathBuf,
    writer: tokio::sync::Mutex<SharedStream>,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    subs: Mutex<HashMap<u64, mpsc::UnboundedSender<Batch>>>,
    closed: AtomicBool,
    /// The server said `bye` before closing: everything it had for us was sent.
    said_bye: AtomicBool,
    options: ClientOptions,
}

impl Inner {
    async fn send_line(&self, line: &[u8]) -> Result<(), ClientError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ClientError::Closed);
        }
        let mut writer = self.writer.lock().await;
        writer
            .write_all(line)
            .await
            .map_err(|_| ClientError::Closed)
    }

    fn fail_all(&self) {
        self.closed.store(true, Ordering::Release);
        let pending = std::mem::take(&mut *self.pending.lock());
        for (_, p) in pending {
            match p {
                Pending::Reply(tx) | Pending::Subscribe(tx, _) => {
                    let _ = tx.send(Err(ClientError::Closed));
                }
                Pending::Abandoned => {}
            }
        }
        self.subs.lock().clear();
    }

    /// Sends a request whose reply nobody waits for (acks, unsubscribes on drop).
    fn send_detached(self: &Arc<Self>, build: impl FnOnce(u64) -> Request) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line = Vec::with_capacity(64);
        encode_line(&mut line, &build(id));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let inner = Arc::clone(self);
            runtime.spawn(async move {
                let _ = inner.send_line(&line).await;
            });
        }
    }
}

/// A connection to a served bus. Cheap to clone; all clones share the connection, which closes when
/// the last clone and the last [`RemoteSubscriber`] are dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    hello: Arc<ServerHello>,
    _reader: Arc<ReaderGuard>,
}

struct ReaderGuard(tokio::task::JoinHandle<()>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.inner.socket)
            .field("instance", &self.hello.instance)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the bus served at `socket` and reads its hello.
    ///
    /// # Errors
    ///
    /// [`ClientError::NoServer`] when nothing answers there; [`ClientError::Unsafe`] when the socket,
    /// its directory or the process serving it belongs to another user (see
    /// [`ownership`](super::ownership)); [`ClientError::Protocol`] when the server speaks another
    /// protocol version; [`ClientError::Connect`] otherwise.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn connect(socket: impl AsRef<Path>) -> Result<Client, ClientError> {
        Self::connect_with(socket, ClientOptions::default()).await
    }

    /// [`Client::connect`] with other settings.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`]; [`ClientError::Timeout`] when no hello comes within
    /// `options.hello_timeout`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn connect_with(
        socket: impl AsRef<Path>,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let socket = socket.as_ref().to_path_buf();
        if !super::ownership::check_socket(&socket)? {
            return Err(ClientError::NoServer { socket });
        }
        let name = socket
            .as_path()
            .to_fs_name::<GenericFilePath>()
            .map_err(|source| ClientError::Connect {
                socket: socket.clone(),
                source,
            })?;
        let stream = match LocalSocketStream::connect(name).await {
            Ok(stream) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ClientError::NoServer { socket });
            }
            Err(source) => return Err(ClientError::Connect { socket, source }),
        };
        #[cfg(unix)]
        super::ownership::check_peer(&socket, &stream)?;
        let shared_stream = SharedStream(Arc::new(stream));
        let (recv, send) = (shared_stream.clone(), shared_stream);
        let mut reader = LineReader::new(
            tokio::io::BufReader::with_capacity(64 * 1024, recv),
            options.max_line,
        );
        let mut line = Vec::new();
        let protocol_error = |detail: String| ClientError::Protocol {
            socket: socket.clone(),
            detail,
        };
        let first = tokio::time::timeout(options.hello_timeout, reader.read_line(&mut line))
            .await
            .map_err(|_| ClientError::Timeout(options.hello_timeout))?;
        let hello = match first {
            Ok(ReadLine::TooLong(len)) => {
                return Err(protocol_error(format!(
                    "its first line is {len} bytes long, over the limit of {}",
                    options.max_line
                )))
            }
            Ok(ReadLine::Line) => match decode_server_frame(&line) {
                Ok(ServerFrame::Reply(Reply::Hello(hello))) => hello,
                Ok(ServerFrame::Reply(Reply::Error(e))) => {
                    return Err(ClientError::Refused {
                        code: e.code,
                        message: e.message,
                    })
                }
                Ok(other) => return Err(protocol_error(format!("expected hello, got {other:?}"))),
                Err(e) => return Err(protocol_error(format!("unreadable hello: {e}"))),
            },
            _ => return Err(ClientError::Closed),
        };
        if hello.version != PROTOCOL_VERSION {
            return Err(protocol_error(format!(
                "it speaks version {}",
                hello.version
            )));
        }
        let inner = Arc::new(Inner {
            socket,
            writer: tokio::sync::Mutex::new(send),
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            subs: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            said_bye: AtomicBool::new(false),
            options,
        });
        let task = tokio::spawn(read_frames(Arc::clone(&inner), reader));
        Ok(Client {
            inner,
            hello: Arc::new(hello),
            _reader: Arc::new(ReaderGuard(task)),
        })
    }

    /// The server's hello: protocol version, bus instance, last id at connect time.
    pub fn hello(&self) -> &ServerHello {
        &self.hello
    }

    /// The socket this client is attached to.
    pub fn socket(&self) -> &Path {
        &self.inner.socket
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Whether the server said `bye` before the connection closed (it had sent everything it had
    /// for this client); false while open and after an abrupt end.
    pub fn said_bye(&self) -> bool {
        self.inner.said_bye.load(Ordering::Acquire)
    }

    /// The settings it was connected with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    async fn request(
        &self,
        build: impl FnOnce(u64) -> Request,
        events: Option<mpsc::UnboundedSender<Batch>>,
    ) -> Result<ServerFrame, ClientError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let request = build(id);
        let mut line = Vec::with_capacity(256);
        encode_line(&mut line, &request);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.inner.pending.lock();
            if self.is_closed() {
                return Err(ClientError::Closed);
            }
            pending.insert(
                id,
                match events {
                    Some(events) => Pending::Subscribe(tx, events),
                    None => Pending::Reply(tx),
                },
            );
        }
        if let Err(e) = self.inner.send_line(&line).await {
            self.inner.pending.lock().remove(&id);
            return Err(e);
        }
        let timeout = self.inner.options.request_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                let mut pending = self.inner.pending.lock();
                if let Some(Pending::Subscribe(..)) = pending.remove(&id) {
                    // The server may still open it: then it is closed at once, not left sending to
                    // no one.
                    pending.insert(id, Pending::Abandoned);
                }
                Err(ClientError::Timeout(timeout))
            }
        }
    }

    /// Publishes `event` (its id and, unless set, timestamp are the server's); returns the id the bus
    /// gave it.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] if the server rejects the event; connection errors.
    pub async fn publish(&self, event: &Event) -> Result<EventId, ClientError> {
        let new = to_new_event(event);
        match self
            .request(|id| Request::Publish { id, event: new }, None)
            .await?
        {
            ServerFrame::Reply(Reply::Published { ids, .. }) => {
                ids.first().copied().ok_or(ClientError::Closed)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Publishes `events` in order, all or none; returns their ids.
    ///
    /// # Errors
    ///
    /// As [`Client::publish`]; when one event is refused, none is published.
    pub async fn publish_batch(&self, events: &[Event]) -> Result<Vec<EventId>, ClientError> {
        let batch = events.iter().map(to_new_event).collect();
        match self
            .request(|id| Request::PublishBatch { id, events: batch }, None)
            .await?
        {
            ServerFrame::Reply(Reply::Published { ids, .. }) => Ok(ids),
            other => Err(unexpected(other)),
        }
    }

    /// Subscribes with `filter` and `replay`; the subscriber yields replayed then live events.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] (a filter the server cannot parse, too many subscriptions); connection
    /// errors.
    pub async fn subscribe(
        &self,
        filter: &EventFilter,
        replay: Replay,
    ) -> Result<RemoteSubscriber, ClientError> {
        // Unbounded here, bounded by the window on the server: the connection's reader never waits
        // for one subscription's reader.
        let (tx, rx) = mpsc::unbounded_channel();
        let expression = filter.to_string();
        let spec = ReplaySpec::from_replay(replay);
        let window = self.inner.options.window;
        match self
            .request(
                |id| Request::Subscribe {
                    id,
                    filter: expression,
                    replay: spec,
                    window: Some(window),
                },
                Some(tx),
            )
            .await?
        {
            ServerFrame::Reply(Reply::Subscribed { sub, gap, .. }) => Ok(RemoteSubscriber {
                client: self.clone(),
                sub,
                rx,
                ready: Ready::default(),
                ready_bytes: 0,
                unacked: 0,
                window,
                gap: gap.map(ReplayGap::from),
                lost: 0,
                unreadable: 0,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Kept events matching `filter`, oldest first; the newest `limit` of them if given.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] for a filter the server cannot parse; connection errors.
    pub async fn history(
        &self,
        filter: &EventFilter,
        limit: Option<usize>,
    ) -> Result<Vec<Event>, ClientError> {
        let expression = filter.to_string();
        match self
            .request(
                |id| Request::History {
                    id,
                    filter: expression,
                    limit,
                    from_id: None,
                },
                None,
            )
            .await?
        {
            ServerFrame::History { events, .. } => Ok(events),
            other => Err(unexpected(other)),
        }
    }

    /// One page of kept events matching `filter`: those with id `from` or later, oldest first, at
    /// most `limit`; and the oldest id history held (`None`: it held nothing). Ids from `from` below
    /// that oldest one are no longer kept. A page shorter than `limit` reaches the end of history.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] for a filter the server cannot parse; connection errors.
    pub async fn history_page(
        &self,
        filter: &EventFilter,
        from: EventId,
        limit: usize,
    ) -> Result<(Vec<Event>, Option<EventId>), ClientError> {
        let expression = filter.to_string();
        match self
            .request(
                |id| Request::History {
                    id,
                    filter: expression,
                    limit: Some(limit),
                    from_id: Some(from),
                },
                None,
            )
            .await?
        {
            ServerFrame::History {
                events,
                oldest_held,
                ..
            } => Ok((events, oldest_held)),
            other => Err(unexpected(other)),
        }
    }

    /// The bus's and the server's counters.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub async fn stats(&self) -> Result<RemoteStats, ClientError> {
        match self.request(|id| Request::Stats { id }, None).await? {
            ServerFrame::Reply(Reply::Stats(stats)) => Ok(stats.into()),
            other => Err(unexpected(other)),
        }
    }

    /// Round-trip time of a ping.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let start = Instant::now();
        match self.request(|id| Request::Ping { id }, None).await? {
            ServerFrame::Reply(Reply::Pong { .. }) => Ok(start.elapsed()),
            other => Err(unexpected(other)),
        }
    }
}

fn to_new_event(event: &Event) -> super::frame::NewEvent {
    super::frame::NewEvent {
        id: None,
        timestamp: Some(super::frame::secs_from_time(event.timestamp)),
        event_type: event.event_type.clone(),
        resource_id: event.resource_id.clone(),
        data: event.data.clone(),
    }
}

fn unexpected(frame: ServerFrame) -> ClientError {
    match frame {
        ServerFrame::Reply(Reply::Error(e)) => ClientError::Refused {
            code: e.code,
            message: e.message,
        },
        other => ClientError::Invalid(format!("unexpected reply {other:?}")),
    }
}

/// Reads server frames and routes them: replies to their requests, events to their subscriptions.
/// Events are handed over in batches: everything decoded from what one read brought in. It never
/// waits for a subscription's reader (each subscription's window bounds what it may be sent), so one
/// slow subscription holds up no other, nor any reply.
async fn read_frames(
    inner: Arc<Inner>,
    mut reader: LineReader<tokio::io::BufReader<SharedStream>>,
) {
    let mut line = Vec::new();
    let mut pending: Vec<(u64, Batch)> = Vec::new();
    loop {
        match reader.read_line(&mut line).await {
            Ok(ReadLine::Line) => {}
            // What a line over the limit held cannot be known: the connection cannot go on
            // without possibly losing something silently.
            _ => break,
        }
        let wire = line.len() as u64 + 1;
        if let Some((sub, body)) = split_event_frame(&line) {
            let batch = batch_for(&mut pending, sub);
            let start = batch.bytes.len();
            batch.bytes.extend_from_slice(body);
            let end = batch.bytes.len();
            batch.items.push(Raw::Json { start, end });
            batch.wire_bytes += wire;
        } else if let Ok(frame) = decode_server_frame(&line) {
            match frame {
                ServerFrame::Event { sub, event } => {
                    let batch = batch_for(&mut pending, sub);
                    batch.items.push(Raw::Parsed(Arc::new(event)));
                    batch.wire_bytes += wire;
                }
                ServerFrame::Reply(Reply::Lost(lost)) => {
                    let batch = batch_for(&mut pending, lost.sub);
                    batch.items.push(Raw::Lost(lost.loss()));
                    batch.wire_bytes += wire;
                }
                ServerFrame::Reply(Reply::Bye { .. }) => {
                    inner.said_bye.store(true, Ordering::Release);
                    break;
                }
                ServerFrame::Reply(Reply::Hello(_)) => {}
                frame => answer(&inner, frame),
            }
        }
        let buffered = reader.get_ref().buffer();
        let more_lines = memchr::memchr(b'\n', buffered).is_some();
        if !more_lines || pending.iter().any(|(_, batch)| batch.is_full()) {
            flush(&inner, &mut pending);
        }
    }
    flush(&inner, &mut pending);
    inner.fail_all();
}

/// The batch being gathered for subscription `sub`.
fn batch_for(pending: &mut Vec<(u64, Batch)>, sub: u64) -> &mut Batch {
    let at = match pending.iter().position(|(s, _)| *s == sub) {
        Some(at) => at,
        None => {
            pending.push((sub, Batch::default()));
            pending.len() - 1
        }
    };
    &mut pending[at].1
}

/// Hands the batches over, without waiting; a subscription whose receiver is gone is forgotten.
fn flush(inner: &Inner, pending: &mut Vec<(u64, Batch)>) {
    if pending.is_empty() {
        return;
    }
    let mut subs = inner.subs.lock();
    for (sub, batch) in pending.drain(..) {
        if let Some(tx) = subs.get(&sub) {
            if tx.send(batch).is_err() {
                subs.remove(&sub);
            }
        }
    }
}

/// Routes a reply to the request waiting for it.
fn answer(inner: &Arc<Inner>, frame: ServerFrame) {
    let id = match &frame {
        ServerFrame::History { id, .. } => Some(*id),
        ServerFrame::Reply(reply) => reply_id(reply),
        ServerFrame::Event { .. } => None,
    };
    let Some(id) = id else { return };
    let Some(pending) = inner.pending.lock().remove(&id) else {
        return;
    };
    match pending {
        Pending::Reply(tx) => {
            let _ = tx.send(Ok(frame));
        }
        Pending::Subscribe(tx, events) => {
            if let ServerFrame::Reply(Reply::Subscribed { sub, .. }) = &frame {
                // Registered before the reply is handed over, so no event frame that follows it
                // can miss its channel.
                inner.subs.lock().insert(*sub, events);
            }
            let _ = tx.send(Ok(frame));
        }
        Pending::Abandoned => {
            if let ServerFrame::Reply(Reply::Subscribed { sub, .. }) = frame {
                inner.send_detached(|id| Request::Unsubscribe { id, sub });
            }
        }
    }
}

fn reply_id(reply: &Reply) -> Option<u64> {
    match reply {
        Reply::Ok { id }
        | Reply::Published { id, .. }
        | Reply::Subscribed { id, .. }
        | Reply::Pong { id } => Some(*id),
        Reply::Stats(stats) => Some(stats.id),
        Reply::Error(e) => e.id,
        Reply::Hello(_) | Reply::Lost(_) | Reply::Bye { .. } => None,
    }
}

/// A subscription on a remote bus: yields the same [`Event`]s an in-process subscriber would, and
/// says in place when events will not come ([`RemoteItem::Lost`]). Dropping it unsubscribes.
pub struct RemoteSubscriber {
    client: Client,
    sub: u64,
    rx: mpsc::UnboundedReceiver<Batch>,
    ready: Ready,
    /// Wire bytes of the batch in `ready`, acknowledged once it has been read.
    ready_bytes: u64,
    /// Bytes read and not acknowledged yet.
    unacked: u64,
    window: u64,
    gap: Option<ReplayGap>,
    lost: u64,
    unreadable: u64,
}

impl std::fmt::Debug for RemoteSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSubscriber")
            .field("sub", &self.sub)
            .field("gap", &self.gap)
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

impl RemoteSubscriber {
    /// The next event or loss; `None` once the connection has closed and everything received has
    /// been read.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn next_item(&mut self) -> Option<RemoteItem> {
        loop {
            if let Some(item) = self.ready.next(&mut self.unreadable) {
                return Some(self.count(item));
            }
            self.used_up();
            let batch = self.rx.recv().await?;
            self.take(batch);
        }
    }

    /// The next event, or where events will not come, a loss (`Err`); `None` once the connection
    /// has closed and everything received has been read.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Arc<Event>, Loss>> {
        Some(match self.next_item().await? {
            RemoteItem::Event(event) => Ok(event),
            RemoteItem::Lost(loss) => Err(loss),
        })
    }

    /// The next event or loss if one has arrived.
    pub fn try_next_item(&mut self) -> Option<RemoteItem> {
        loop {
            if let Some(item) = self.ready.next(&mut self.unreadable) {
                return Some(self.count(item));
            }
            self.used_up();
            let batch = self.rx.try_recv().ok()?;
            self.take(batch);
        }
    }

    fn count(&mut self, item: RemoteItem) -> RemoteItem {
        if let RemoteItem::Lost(loss) = &item {
            self.lost += loss.count.unwrap_or(0);
        }
        item
    }

    /// Makes `batch` the one being read; the one before it has been read, so its bytes are
    /// acknowledged (in batches of a quarter of the window), letting the server send more.
    fn take(&mut self, batch: Batch) {
        self.ready_bytes = batch.wire_bytes;
        self.ready = batch.into();
    }

    /// The batch being read is used up: its bytes count as read, and are acknowledged once a
    /// quarter of the window (or everything received) has been read.
    fn used_up(&mut self) {
        self.unacked += std::mem::take(&mut self.ready_bytes);
        if self.unacked > 0 && (self.unacked >= (self.window / 4).max(1) || self.rx.is_empty()) {
            let (sub, bytes) = (self.sub, std::mem::take(&mut self.unacked));
            self.client
                .inner
                .send_detached(|id| Request::Ack { id, sub, bytes });
        }
    }

    /// Waits until something has arrived, then hands each item of what came in one read (up to 256)
    /// to `f`: events as borrowed [`EventRef`]s, without building an owned [`Event`] (a consumer that
    /// prints, forwards or counts events reads them about twice as fast as with
    /// [`RemoteSubscriber::next_item`]), and losses in place. Stops early when `f` returns
    /// `ControlFlow::Break`, leaving the items after that one for the next receive. Returns how many
    /// items `f` saw, at least one; `None` once the connection has closed and everything received
    /// has been read.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it waits only while nothing has arrived.
    pub async fn recv_refs(
        &mut self,
        mut f: impl FnMut(RemoteRef<'_>) -> ControlFlow<()>,
    ) -> Option<usize> {
        let mut lost = 0;
        let mut counting = |item: RemoteRef<'_>| {
            if let RemoteRef::Lost(loss) = &item {
                lost += loss.count.unwrap_or(0);
            }
            f(item)
        };
        loop {
            let (n, stopped) = self.ready.each_ref(&mut self.unreadable, &mut counting);
            if stopped || n > 0 {
                self.lost += lost;
                return Some(n);
            }
            self.used_up();
            let batch = self.rx.recv().await?;
            self.take(batch);
        }
    }

    /// When replay asked for events the server no longer held (also delivered as a
    /// [`RemoteItem::Lost`]).
    pub fn replay_gap(&self) -> Option<ReplayGap> {
        self.gap
    }

    /// Events reported lost so far, in losses with a count.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Event frames received for this subscription whose event did not parse, and were skipped. A
    /// server of this crate never sends one; a different implementation of the protocol might.
    pub fn unreadable(&self) -> u64 {
        self.unreadable
    }

    /// The client this subscription runs on.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Drop for RemoteSubscriber {
    fn drop(&mut self) {
        self.client.inner.subs.lock().remove(&self.sub);
        let sub = self.sub;
        self.client
            .inner
            .send_detached(|id| Request::Unsubscribe { id, sub });
    }
}

/// Queries on a [`ReconnectingSubscriber`]'s current connection; cheap to clone.
#[derive(Clone)]
pub struct ConnectionHandle {
    client: Arc<Mutex<Option<Client>>>,
}

impl std::fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl ConnectionHandle {
    /// The client of the current connection, if attached.
    pub fn client(&self) -> Option<Client> {
        self.client.lock().clone()
    }

    /// Whether the subscriber is attached now.
    pub fn is_connected(&self) -> bool {
        self.client.lock().as_ref().is_some_and(|c| !c.is_closed())
    }

    /// The bus's counters (published, subscribers, dropped, ...), if attached.
    pub async fn stats(&self) -> Option<RemoteStats> {
        let client = self.client()?;
        client.stats().await.ok()
    }
}

/// What a [`ReconnectingSubscriber`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionItem {
    /// An event.
    Event(Arc<Event>),
    /// Events that will not come, at their place: the server could not catch up on them from its
    /// history, or the bus was replaced while we were away.
    Lost(Loss),
    /// The server is unreachable; the next attempt is in `retry_in`.
    Disconnected {
        /// When the next attempt is.
        retry_in: Duration,
    },
    /// Attached again, resuming after the last event delivered (what the server no longer holds
    /// comes as a [`SubscriptionItem::Lost`]).
    Reconnected {
        /// The server now serves a different bus (it was restarted): its ids start over, and
        /// everything it holds is replayed.
        new_bus: bool,
    },
}

/// A subscription that survives server restarts: on disconnect it retries with backoff, and on
/// reconnecting resumes after the last id it delivered (or, if the server serves a new bus, from that
/// bus's first kept event), so events the server still holds arrive once, with no gap.
pub struct ReconnectingSubscriber {
    socket: PathBuf,
    filter: EventFilter,
    initial: Replay,
    current: Option<RemoteSubscriber>,
    shared: Arc<Mutex<Option<Client>>>,
    last_id: Option<EventId>,
    instance: Option<String>,
    backoff: Duration,
    retry_at: Option<tokio::time::Instant>,
    was_disconnected: bool,
    /// The last connection ended with the server's bye: nothing it had for us was left unsent.
    complete: bool,
    /// The last id seen on the previous bus, once a new one replaced it.
    old_last: Option<EventId>,
    pending_loss: Option<Loss>,
    options: ClientOptions,
}

impl std::fmt::Debug for ReconnectingSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingSubscriber")
            .field("socket", &self.socket)
            .field("filter", &self.filter.to_string())
            .field("connected", &self.current.is_some())
            .field("last_id", &self.last_id)
            .finish_non_exhaustive()
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl ReconnectingSubscriber {
    /// A subscription to the bus at `socket` with `filter`, starting with `replay`. Nothing happens
    /// until [`ReconnectingSubscriber::next`] is called.
    pub fn new(socket: impl Into<PathBuf>, filter: EventFilter, replay: Replay) -> Self {
        Self {
            socket: socket.into(),
            filter,
            initial: replay,
            current: None,
            shared: Arc::new(Mutex::new(None)),
            last_id: None,
            instance: None,
            backoff: MIN_BACKOFF,
            retry_at: None,
            was_disconnected: false,
            complete: false,
            old_last: None,
            pending_loss: None,
            options: ClientOptions::default(),
        }
    }

    /// The same, connecting with `options`.
    pub fn with_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Whether it is attached now.
    pub fn is_connected(&self) -> bool {
        self.current.is_some()
    }

    /// The id of the last event delivered.
    pub fn last_id(&self) -> Option<EventId> {
        self.last_id
    }

    /// The client of the current connection, for statistics and history queries.
    pub fn client(&self) -> Option<&Client> {
        self.current.as_ref().map(RemoteSubscriber::client)
    }

    /// The bus's counters, if attached.
    pub async fn stats(&self) -> Option<RemoteStats> {
        self.client()?.stats().await.ok()
    }

    /// A handle for queries (statistics, history) on the current connection that can be used while
    /// a [`ReconnectingSubscriber::next`] call is pending, for example from another task or another
    /// branch of a `select!`.
    pub fn handle(&self) -> ConnectionHandle {
        ConnectionHandle {
            client: Arc::clone(&self.shared),
        }
    }

    /// The next item. Never ends: while the server is away it yields
    /// [`SubscriptionItem::Disconnected`] once per attempt.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: no event is lost if the future is dropped; a pending retry keeps its schedule.
    pub async fn next(&mut self) -> SubscriptionItem {
        loop {
            if let Some(sub) = self.current.as_mut() {
                match sub.next_item().await {
                    Some(RemoteItem::Event(event)) => {
                        self.last_id = Some(event.id);
                        return SubscriptionItem::Event(event);
                    }
                    Some(RemoteItem::Lost(loss)) => {
                        if let Some(last) = loss.last_id {
                            // Settled: a resumption starts after it.
                            self.last_id = Some(self.last_id.map_or(last, |id| id.max(last)));
                        }
                        return SubscriptionItem::Lost(loss);
                    }
                    None => {
                        // The server sent everything it had for us only if it said bye.
                        self.complete = sub.client().said_bye();
                        self.current = None;
                        *self.shared.lock() = None;
                        return self.disconnected();
                    }
                }
            }
            if let Some(loss) = self.pending_loss.take() {
                return SubscriptionItem::Lost(loss);
            }
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
                self.retry_at = None;
            }
            match self.attach().await {
                Ok(new_bus) => {
                    self.backoff = MIN_BACKOFF;
                    if new_bus && !self.complete {
                        // What the old bus published after our last event, and did not send, is
                        // gone with it; how much cannot be known.
                        self.pending_loss = Some(Loss {
                            count: None,
                            first_id: self.old_last.map(|id| id + 1),
                            last_id: None,
                            reason: LossReason::BusRestarted,
                        });
                    }
                    if std::mem::take(&mut self.was_disconnected) {
                        return SubscriptionItem::Reconnected { new_bus };
                    }
                }
                Err(_) => return self.disconnected(),
            }
        }
    }

    /// As [`ReconnectingSubscriber::next`], with what has arrived handed to `f` as borrowed views
    /// (events and losses in place, as [`RemoteSubscriber::recv_refs`] does; `f` may stop early
    /// with `ControlFlow::Break`): returns `None` once `f` has seen at least one item, or the next
    /// other item (a disconnection, a reconnection, a loss the reconnection found, or an event of
    /// a new connection's first read, owned).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`ReconnectingSubscriber::next`].
    pub async fn next_refs(
        &mut self,
        mut f: impl FnMut(RemoteRef<'_>) -> ControlFlow<()>,
    ) -> Option<SubscriptionItem> {
        if let Some(sub) = self.current.as_mut() {
            let last_id = &mut self.last_id;
            let seen = sub
                .recv_refs(|item| {
                    match &item {
                        RemoteRef::Event(event) => *last_id = Some(event.id),
                        RemoteRef::Lost(loss) => {
                            if let Some(last) = loss.last_id {
                                *last_id = Some(last_id.map_or(last, |id| id.max(last)));
                            }
                        }
                    }
                    f(item)
                })
                .await;
            if seen.is_some() {
                return None;
            }
        }
        // Closed (what `next` says as a disconnection), or not attached yet.
        Some(self.next().await)
    }

    fn disconnected(&mut self) -> SubscriptionItem {
        let retry_in = self.backoff;
        self.retry_at = Some(tokio::time::Instant::now() + retry_in);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.was_disconnected = true;
        SubscriptionItem::Disconnected { retry_in }
    }

    /// Connects and subscribes; whether the server serves another bus than before.
    async fn attach(&mut self) -> Result<bool, ClientError> {
        let client = Client::connect_with(&self.socket, self.options.clone()).await?;
        let new_bus = self
            .instance
            .as_deref()
            .is_some_and(|old| old != client.hello().instance.as_str());
        let replay = match self.last_id {
            None => self.initial,
            Some(last) if !new_bus => Replay::FromId(last + 1),
            // A new bus: its ids start over, and everything it holds is news to us.
            Some(_) => Replay::FromId(1),
        };
        let sub = client.subscribe(&self.filter, replay).await?;
        self.instance = Some(client.hello().instance.clone());
        if new_bus {
            self.old_last = self.last_id;
            self.last_id = Some(0);
        }
        *self.shared.lock() = Some(sub.client().clone());
        self.current = Some(sub);
        Ok(new_bus)
    }
}
