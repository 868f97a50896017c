//! The client: attach to a served bus, publish, subscribe, query; and a subscriber that reconnects.

use super::frame::{
    decode_server_frame, encode_line, split_event_frame, LineReader, ReadLine, ReplaySpec, Reply,
    Request, ServerFrame, ServerHello, StatsFrame, PROTOCOL_VERSION,
};
use super::io::SharedStream;
use crate::event_stream::{Event, EventFilter, EventId, EventRef, Replay, ReplayGap};
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

/// The longest server line a client reads (history replies can be large).
const CLIENT_MAX_LINE: usize = 256 << 20;
/// How long a request waits for its reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Batches buffered per remote subscription before the connection's reader waits for the consumer.
const SUB_CHANNEL: usize = 256;
/// Most items handed over in one batch.
const SUB_BATCH: usize = 256;
/// Most bytes of event JSON handed over in one batch.
const SUB_BATCH_BYTES: usize = 48 * 1024;

/// Events (and lag reports) handed from the connection's reader to one subscription at once.
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
}

/// One item of a [`Batch`].
enum Raw {
    /// An event still to be parsed: its JSON is `bytes[start..end]`.
    Json { start: usize, end: usize },
    /// An event already parsed (a frame not in the form servers normally write).
    Parsed(Arc<Event>),
    /// A lag report.
    Lagged(u64),
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
                Raw::Lagged(missed) => return Some(RemoteItem::Lagged { missed }),
            }
        }
        None
    }
}

impl Ready {
    /// Hands each event still to be read to `f` as a borrowed view, until `f` breaks (the rest stay
    /// for the next read); lag reports are counted in `dropped`. Returns how many events `f` saw and
    /// whether it broke.
    fn each_ref(
        &mut self,
        unreadable: &mut u64,
        dropped: &mut u64,
        f: &mut impl FnMut(EventRef<'_>) -> ControlFlow<()>,
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
                    Some(Ok(event)) => f(event),
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
                        Ok(event) => f(event),
                        Err(_) => {
                            *unreadable += 1;
                            continue;
                        }
                    }
                }
                Raw::Lagged(missed) => {
                    *dropped += missed;
                    continue;
                }
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
        code: String,
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

/// Bus and server counters, from [`Client::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteStats {
    /// Events published (also the id of the last one).
    pub published: u64,
    /// Events handed to subscribers.
    pub delivered: u64,
    /// Events discarded by the slow-consumer policy.
    pub dropped: u64,
    /// Subscribers attached (in-process and remote).
    pub subscribers: usize,
    /// Events in history.
    pub history_len: usize,
    /// The oldest id in history.
    pub oldest_id: Option<EventId>,
    /// Client connections open.
    pub connections: usize,
    /// Events serialized for the wire so far.
    pub encoded: u64,
}

impl From<StatsFrame> for RemoteStats {
    fn from(s: StatsFrame) -> Self {
        Self {
            published: s.published,
            delivered: s.delivered,
            dropped: s.dropped,
            subscribers: s.subscribers,
            history_len: s.history_len,
            oldest_id: s.oldest_id,
            connections: s.connections,
            encoded: s.encoded,
        }
    }
}

/// What a [`RemoteSubscriber`] receives.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteItem {
    /// An event.
    Event(Arc<Event>),
    /// The server discarded this many events because we read too slowly.
    Lagged {
        /// How many.
        missed: u64,
    },
}

enum Pending {
    Reply(oneshot::Sender<Result<ServerFrame, ClientError>>),
    Subscribe(
        oneshot::Sender<Result<ServerFrame, ClientError>>,
        mpsc::Sender<Batch>,
    ),
}

struct Inner {
    socket: PathBuf,
    writer: tokio::sync::Mutex<SharedStream>,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    subs: Mutex<HashMap<u64, mpsc::Sender<Batch>>>,
    closed: AtomicBool,
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
            }
        }
        self.subs.lock().clear();
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
            CLIENT_MAX_LINE,
        );
        let mut line = Vec::new();
        let protocol_error = |detail: String| ClientError::Protocol {
            socket: socket.clone(),
            detail,
        };
        let first = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line))
            .await
            .map_err(|_| ClientError::Timeout(REQUEST_TIMEOUT))?;
        let hello = match first {
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

    async fn request(
        &self,
        build: impl FnOnce(u64) -> Request,
        events: Option<mpsc::Sender<Batch>>,
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
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                self.inner.pending.lock().remove(&id);
                Err(ClientError::Timeout(REQUEST_TIMEOUT))
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
        let (tx, rx) = mpsc::channel(SUB_CHANNEL);
        let expression = filter.to_string();
        let spec = ReplaySpec::from_replay(replay);
        match self
            .request(
                |id| Request::Subscribe {
                    id,
                    filter: expression,
                    replay: spec,
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
                gap: gap.map(ReplayGap::from),
                dropped: 0,
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
                },
                None,
            )
            .await?
        {
            ServerFrame::History { events, .. } => Ok(events),
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
/// Events are handed over in batches: everything decoded from what one read brought in.
async fn read_frames(
    inner: Arc<Inner>,
    mut reader: LineReader<tokio::io::BufReader<SharedStream>>,
) {
    let mut line = Vec::new();
    let mut pending: Vec<(u64, Batch)> = Vec::new();
    loop {
        match reader.read_line(&mut line).await {
            Ok(ReadLine::Line) => {}
            Ok(ReadLine::TooLong(_)) => continue,
            _ => break,
        }
        if let Some((sub, body)) = split_event_frame(&line) {
            let batch = batch_for(&mut pending, sub);
            let start = batch.bytes.len();
            batch.bytes.extend_from_slice(body);
            let end = batch.bytes.len();
            batch.items.push(Raw::Json { start, end });
        } else if let Ok(frame) = decode_server_frame(&line) {
            match frame {
                ServerFrame::Event { sub, event } => {
                    batch_for(&mut pending, sub)
                        .items
                        .push(Raw::Parsed(Arc::new(event)));
                }
                ServerFrame::Reply(Reply::Lagged { sub, missed }) => {
                    batch_for(&mut pending, sub).items.push(Raw::Lagged(missed));
                }
                ServerFrame::Reply(Reply::Bye { .. }) => break,
                ServerFrame::Reply(Reply::Hello(_)) => {}
                frame => answer(&inner, frame),
            }
        }
        let buffered = reader.get_ref().buffer();
        let more_lines = memchr::memchr(b'\n', buffered).is_some();
        if !more_lines || pending.iter().any(|(_, batch)| batch.is_full()) {
            flush(&inner, &mut pending).await;
        }
    }
    flush(&inner, &mut pending).await;
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

/// Hands the batches over; a subscription whose receiver is gone is forgotten.
async fn flush(inner: &Inner, pending: &mut Vec<(u64, Batch)>) {
    for (sub, batch) in pending.drain(..) {
        let tx = inner.subs.lock().get(&sub).cloned();
        if let Some(tx) = tx {
            if tx.send(batch).await.is_err() {
                inner.subs.lock().remove(&sub);
            }
        }
    }
}

/// Routes a reply to the request waiting for it.
fn answer(inner: &Inner, frame: ServerFrame) {
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
        Reply::Hello(_) | Reply::Lagged { .. } | Reply::Bye { .. } => None,
    }
}

/// A subscription on a remote bus: yields the same [`Event`]s an in-process subscriber would.
/// Dropping it unsubscribes.
pub struct RemoteSubscriber {
    client: Client,
    sub: u64,
    rx: mpsc::Receiver<Batch>,
    ready: Ready,
    gap: Option<ReplayGap>,
    dropped: u64,
    unreadable: u64,
}

impl std::fmt::Debug for RemoteSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSubscriber")
            .field("sub", &self.sub)
            .field("gap", &self.gap)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl RemoteSubscriber {
    /// The next event or lag report; `None` once the connection has closed and everything received
    /// has been read.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn next_item(&mut self) -> Option<RemoteItem> {
        loop {
            if let Some(item) = self.ready.next(&mut self.unreadable) {
                if let RemoteItem::Lagged { missed } = item {
                    self.dropped += missed;
                }
                return Some(item);
            }
            self.ready = self.rx.recv().await?.into();
        }
    }

    /// The next event, counting lag reports in [`RemoteSubscriber::dropped`]; `None` once the
    /// connection has closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        loop {
            match self.next_item().await? {
                RemoteItem::Event(event) => return Some(event),
                RemoteItem::Lagged { .. } => {}
            }
        }
    }

    /// Waits until events have arrived, then hands each of those that came in one read (up to 256) to
    /// `f` as a borrowed [`EventRef`], without building an owned [`Event`]: a consumer that prints,
    /// forwards or counts events reads them about twice as fast as with [`recv`]. Stops early when
    /// `f` returns `ControlFlow::Break`, leaving the events after that one for the next receive. Lag
    /// reports are counted in [`RemoteSubscriber::dropped`]. Returns how many events `f` saw, at
    /// least one; `None` once the connection has closed and everything received has been read.
    ///
    /// [`recv`]: RemoteSubscriber::recv
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it waits only while nothing has arrived.
    pub async fn recv_refs(
        &mut self,
        mut f: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Option<usize> {
        loop {
            let (n, stopped) = self
                .ready
                .each_ref(&mut self.unreadable, &mut self.dropped, &mut f);
            if stopped || n > 0 {
                return Some(n);
            }
            self.ready = self.rx.recv().await?.into();
        }
    }

    /// The next event if one has arrived.
    pub fn try_recv(&mut self) -> Option<Arc<Event>> {
        loop {
            match self.ready.next(&mut self.unreadable) {
                Some(RemoteItem::Event(event)) => return Some(event),
                Some(RemoteItem::Lagged { missed }) => self.dropped += missed,
                None => self.ready = self.rx.try_recv().ok()?.into(),
            }
        }
    }

    /// When replay asked for events the server no longer held.
    pub fn replay_gap(&self) -> Option<ReplayGap> {
        self.gap
    }

    /// Events the server discarded for this subscription, as far as reported so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
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
        if self.client.is_closed() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let inner = Arc::clone(&self.client.inner);
            let sub = self.sub;
            runtime.spawn(async move {
                let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
                let mut line = Vec::new();
                encode_line(&mut line, &Request::Unsubscribe { id, sub });
                let _ = inner.send_line(&line).await;
            });
        }
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
    /// The server discarded this many events for us because we read too slowly.
    Lagged {
        /// How many.
        missed: u64,
    },
    /// The server is unreachable; the next attempt is in `retry_in`.
    Disconnected {
        /// When the next attempt is.
        retry_in: Duration,
    },
    /// Attached again. `gap` is set when events between the last one seen and the oldest the server
    /// still holds are lost. If the server now serves a different bus (it was restarted), ids start
    /// over and everything that bus holds is replayed.
    Reconnected {
        /// Events that could not be replayed.
        gap: Option<ReplayGap>,
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
        }
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
                    Some(RemoteItem::Lagged { missed }) => {
                        return SubscriptionItem::Lagged { missed };
                    }
                    None => {
                        self.current = None;
                        *self.shared.lock() = None;
                        return self.disconnected();
                    }
                }
            }
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
                self.retry_at = None;
            }
            match self.attach().await {
                Ok(gap) => {
                    self.backoff = MIN_BACKOFF;
                    if std::mem::take(&mut self.was_disconnected) {
                        return SubscriptionItem::Reconnected { gap };
                    }
                }
                Err(_) => return self.disconnected(),
            }
        }
    }

    fn disconnected(&mut self) -> SubscriptionItem {
        let retry_in = self.backoff;
        self.retry_at = Some(tokio::time::Instant::now() + retry_in);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.was_disconnected = true;
        SubscriptionItem::Disconnected { retry_in }
    }

    async fn attach(&mut self) -> Result<Option<ReplayGap>, ClientError> {
        let client = Client::connect(&self.socket).await?;
        let same_bus = self.instance.as_deref() == Some(client.hello().instance.as_str());
        let replay = match self.last_id {
            None => self.initial,
            Some(last) if same_bus => Replay::FromId(last + 1),
            // A new bus: its ids start over, and everything it holds is news to us.
            Some(_) => Replay::FromId(1),
        };
        let sub = client.subscribe(&self.filter, replay).await?;
        self.instance = Some(client.hello().instance.clone());
        let gap = sub.replay_gap();
        *self.shared.lock() = Some(sub.client().clone());
        self.current = Some(sub);
        Ok(gap)
    }
}
