//! The bus: id stamping, history, the subscriber index and delivery. The rules are documented on
//! [`crate::event_stream`].

#[cfg(unix)]
use super::durable::{DiskReport, DiskState, Failure, PublishError};
use super::event::{Event, EventId};
use super::filter::{EventFilter, IndexKey};
use super::history::{Encoded, History};
use super::subscriber::{EventSubscriber, Shared, SubState};
use super::sync::{Mutex, MutexGuard};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant, SystemTime};

/// Why [`Core::send`] did not publish an event as asked (only a bus with a data dir refuses).
#[cfg(unix)]
type Refusal = PublishError;
#[cfg(not(unix))]
type Refusal = std::convert::Infallible;

/// What a subscriber does when its buffer is full. See [slow consumers](crate::event_stream#slow-consumers) for the exact rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Discard the oldest buffered event to make room for the new one.
    #[default]
    DropOldest,
    /// Discard the new event.
    DropNewest,
    /// Make the publisher wait for room (up to `block_timeout`).
    Block,
}

/// Settings of a bus.
///
/// Build it with struct update syntax so new fields do not break your code:
/// `EventBusConfig { history_size: 10, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct EventBusConfig {
    /// How many events history keeps (default 1000). 0 keeps none: replay and `history` return nothing.
    pub history_size: usize,
    /// How many bytes history may hold (default 256 MiB, [`crate::store::DEFAULT_MAX_BYTES`]), whichever
    /// bound is hit first: past it the oldest events go, a block at a time. A kept event costs its
    /// 28-byte row and its data as compressed JSON (about 55 bytes for a typical 190-byte event), so
    /// the default holds several million typical events. An event larger than the whole budget is
    /// delivered but not kept.
    pub history_bytes: usize,
    /// How many live events a subscriber buffers (default 256). 0 is taken as 1.
    pub subscriber_buffer: usize,
    /// What happens when a subscriber's buffer is full (default [`SlowConsumerPolicy::DropOldest`]).
    pub slow_consumer: SlowConsumerPolicy,
    /// Under [`SlowConsumerPolicy::Block`], how long a publisher waits for one subscriber to make room
    /// before counting the event as lost for it (default 5 s); `None` waits for as long as it takes.
    pub block_timeout: Option<Duration>,
    /// How many of the newest history events stay uncompressed (default 16,384, about 1.5 MB of
    /// typical events; 0 compresses each block of history once it is full, `usize::MAX` never).
    /// Compressed or not, history holds each event as a row and its data as JSON, and decodes it when a
    /// query or replay reaches it; compression costs publishers CPU and only pays for deep histories.
    pub hot_history: usize,
}

impl Default for EventBusConfig {
    fn default() -> Self {
        Self {
            history_size: 1000,
            history_bytes: crate::store::DEFAULT_MAX_BYTES,
            subscriber_buffer: 256,
            slow_consumer: SlowConsumerPolicy::DropOldest,
            block_timeout: Some(Duration::from_secs(5)),
            hot_history: 1 << 14,
        }
    }
}

/// Which kept history a new subscriber receives before live events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replay {
    /// None: live events only.
    #[default]
    None,
    /// Every kept event that matches the filter.
    All,
    /// The last `n` kept events that match the filter.
    Last(usize),
    /// Kept matching events with this id or later.
    FromId(EventId),
    /// Kept matching events stamped at or after this time.
    FromTime(SystemTime),
}

/// Replay asked for events that history no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayGap {
    /// The first id asked for.
    pub requested: EventId,
    /// The oldest id history still held; replay started there.
    pub oldest_held: EventId,
}

/// Counters of a bus, read with [`EventBus::stats`]: the one stats type, used as is by the
/// monitor's header and, with the server's own counters beside it, in the wire's `stats` frame
/// ([`crate::transport::RemoteStats`]). Fields a peer leaves out read as 0 / `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BusStats {
    /// Events published (also the id of the last one).
    pub published: u64,
    /// Events handed to readers, over all subscribers, past and present.
    pub delivered: u64,
    /// Events discarded by slow-consumer policies, over all subscribers, past and present.
    pub dropped: u64,
    /// Subscribers attached now.
    pub subscribers: usize,
    /// Events in history in memory now (on a bus with a data dir, more are on disk: [`BusStats::disk`]).
    pub history_len: usize,
    /// The oldest id history can still give, if any: in memory or, for a bus with a data dir
    /// ([`EventBus::open`]), on disk.
    pub oldest_id: Option<EventId>,
    /// How many of the events in history are in compressed blocks (see [`EventBusConfig::hot_history`]).
    pub history_packed: usize,
    /// Bytes history holds: rows, payloads, interned strings and buffers (what
    /// [`EventBusConfig::history_bytes`] bounds).
    pub history_bytes: usize,
    /// The data dir's figures, for a bus opened on one ([`EventBus::open`]); `None` otherwise.
    pub disk: Option<DiskStats>,
}

/// Figures of a bus's data dir, in [`BusStats::disk`] (and, over the wire, in the `stats` frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DiskStats {
    /// Records readable on disk.
    pub records: u64,
    /// Bytes the segment files hold (headers, records, damaged bytes kept as evidence).
    pub bytes: u64,
    /// The oldest id readable on disk, if any.
    pub oldest_id: Option<EventId>,
    /// Segment files.
    pub segments: usize,
    /// Disk errors so far: appends that failed (the event was refused, or kept in memory only, or
    /// not synced), records that failed their checksum when read back, and errors of the background
    /// flush and of retention (counted when [`EventBus::maintain_disk`] collects them).
    pub errors: u64,
}

/// One subscriber as [`EventBus::subscribers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberStats {
    /// The subscriber's id on this bus.
    pub id: u64,
    /// Its filter, in the expression syntax.
    pub filter: String,
    /// Events it has read.
    pub delivered: u64,
    /// Events its slow-consumer policy discarded.
    pub dropped: u64,
    /// Events waiting to be read.
    pub queued: usize,
}

/// A publish-subscribe event bus. Cloning gives another handle to the same bus.
#[derive(Clone)]
pub struct EventBus {
    pub(crate) inner: Arc<Inner>,
}

/// Publishes to a bus; cheap to clone and to send to other threads.
#[derive(Clone)]
pub struct EventPublisher {
    pub(crate) inner: Arc<Inner>,
}

/// What the handles ([`EventBus`], [`EventPublisher`]) hold. When the last one goes, the bus closes:
/// subscribers read what is queued, then learn that no more will come.
pub(crate) struct Inner {
    core: Arc<Core>,
}

/// The bus itself, shared by the handles and the subscribers (which outlive the handles to read what
/// is left in their queues).
pub(crate) struct Core {
    config: EventBusConfig,
    /// Whether the bus keeps its history on disk too (the data dir is in the state).
    durable: bool,
    state: Mutex<State>,
}

/// Everything behind the bus's one lock: ids, history, the subscriber index and every subscriber's
/// queue. A publish takes this lock once, however many subscribers receive the event; readers take it
/// once per read or per batch.
pub(crate) struct State {
    pub(super) last_id: EventId,
    pub(super) history: History,
    /// The data dir, for a bus opened on one.
    #[cfg(unix)]
    pub(super) disk: Option<DiskState>,
    next_subscriber: u64,
    /// Subscribers by key (their index here); a free key is reused.
    subs: Vec<Option<SubState>>,
    free: Vec<usize>,
    by_type: FxHashMap<String, Vec<usize>>,
    by_resource: FxHashMap<String, Vec<usize>>,
    anything: Vec<usize>,
    subscribers: usize,
    /// Delivered and dropped counts of subscribers that have gone.
    gone_delivered: u64,
    gone_dropped: u64,
}

/// A publisher must wait for room in a [`SlowConsumerPolicy::Block`] subscriber.
struct BlockTicket {
    subscriber: Arc<Shared>,
    key: usize,
    id: EventId,
    seq: u64,
}

impl Inner {
    fn publish(&self, event: Event) -> EventId {
        self.core.publish(event)
    }

    fn subscribe(&self, filter: EventFilter, replay: Replay) -> EventSubscriber {
        self.core.subscribe(filter, replay)
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.core.state.lock()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut wakers = Vec::new();
        let mut state = self.core.state.lock();
        for sub in state.subs.iter_mut().flatten() {
            sub.close(&mut wakers);
        }
        // Subscribers may outlive the bus to read their queues; history and the index are not theirs.
        let history = state.history.clear();
        state.by_type.clear();
        state.by_resource.clear();
        state.anything.clear();
        // The data dir is closed (written, synced, unlocked) with the last handle, not the last reader.
        #[cfg(unix)]
        let disk = state.disk.take();
        drop(state);
        drop(history);
        #[cfg(unix)]
        drop(disk);
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Core {
    fn buffer(&self) -> usize {
        self.config.subscriber_buffer.max(1)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    fn publish(&self, event: Event) -> EventId {
        match self.send(event, false) {
            Ok(id) => id,
            // Never when not strict: a failed append is counted and the event kept in memory.
            #[cfg(unix)]
            Err(PublishError::NotSynced { id, .. }) => id,
            #[cfg(unix)]
            Err(PublishError::NotStored { .. }) => self.state.lock().last_id,
            #[cfg(not(unix))]
            Err(never) => match never {},
        }
    }

    /// Publishes `event`. On a bus with a data dir the record is appended first, under the lock;
    /// when that fails, a `strict` publish is refused (nothing delivered, no id taken, the event handed
    /// back) and any other goes on in memory, the failure counted for [`EventBus::maintain_disk`].
    fn send(&self, mut event: Event, strict: bool) -> Result<EventId, Refusal> {
        #[cfg(not(unix))]
        let _ = strict;
        // Times are kept to the microsecond, what the JSON form carries exactly.
        event.timestamp = crate::epoch::cut_to_micros(event.timestamp);
        // The data is serialized for history and the disk before taking the lock; under it they
        // copy the bytes in. The one shared copy is allocated under the lock, once the id is in
        // place, so nothing has to check that it is unshared; with no subscriber there is none.
        // Either way the event (or this reference to it) is freed after the lock is released.
        // A bus that keeps no history and no data dir has nothing to encode.
        let encoded = (self.config.history_size > 0 || self.durable).then(|| Encoded::of(&event));
        let mut tickets: Vec<BlockTicket> = Vec::new();
        let mut wakers: Vec<Waker> = Vec::new();
        let job;
        let id;
        let published: Result<Arc<Event>, Event>;
        let displaced;
        #[cfg(unix)]
        let mut not_synced = None;
        {
            let mut guard = self.state.lock();
            let state = &mut *guard;
            id = state.last_id + 1;
            #[cfg(unix)]
            let refused = match (state.disk.as_mut(), encoded.as_ref()) {
                (Some(disk), Some(encoded)) => {
                    let record = crate::store::disk::RecordRef {
                        id,
                        time_micros: encoded.time_micros,
                        event_type: &event.event_type,
                        resource: event.resource_id.as_deref(),
                        data: &encoded.data,
                    };
                    match disk.append(record) {
                        Ok(()) => None,
                        Err(Failure::NotStored(source)) => {
                            disk.note_failure(&source);
                            strict.then_some(source)
                        }
                        Err(Failure::NotSynced(source)) => {
                            disk.note_failure(&source);
                            not_synced = strict.then_some(source);
                            None
                        }
                    }
                }
                _ => None,
            };
            #[cfg(unix)]
            if let Some(source) = refused {
                drop(guard);
                if let Some(encoded) = encoded {
                    encoded.recycle();
                }
                return Err(PublishError::NotStored {
                    event: Box::new(event),
                    source,
                });
            }
            state.last_id = id;
            event.id = id;
            let pos;
            (pos, job) = match &encoded {
                Some(encoded) if self.config.history_size > 0 => {
                    state.history.push(&event, encoded)
                }
                _ => (None, None),
            };
            (published, displaced) = if state.subscribers == 0 {
                (Err(event), None)
            } else {
                let event = Arc::new(event);
                self.deliver_all(state, &event, &mut tickets, &mut wakers);
                let displaced = pos.and_then(|pos| state.history.remember(pos, &event));
                (Ok(event), displaced)
            };
        }
        wakers.into_iter().for_each(Waker::wake);
        drop((published, displaced));
        if let Some(encoded) = encoded {
            encoded.recycle();
        }
        if let Some(job) = job {
            // Compressing a sealed block of history: the slow part outside the lock.
            let done = job.run();
            self.state.lock().history.install(done);
        }
        if !tickets.is_empty() {
            self.wait_for_room(tickets);
        }
        #[cfg(unix)]
        if let Some(source) = not_synced {
            return Err(PublishError::NotSynced { id, source });
        }
        Ok(id)
    }

    fn deliver_all(
        &self,
        state: &mut State,
        event: &Arc<Event>,
        tickets: &mut Vec<BlockTicket>,
        wakers: &mut Vec<Waker>,
    ) {
        let State {
            subs,
            by_type,
            by_resource,
            anything,
            ..
        } = state;
        if !by_type.is_empty() {
            if let Some(keys) = by_type.get(event.event_type.as_str()) {
                self.deliver(subs, keys, event, tickets, wakers);
            }
        }
        if !by_resource.is_empty() {
            if let Some(keys) = event
                .resource_id
                .as_deref()
                .and_then(|r| by_resource.get(r))
            {
                self.deliver(subs, keys, event, tickets, wakers);
            }
        }
        self.deliver(subs, anything, event, tickets, wakers);
    }

    #[inline]
    fn deliver(
        &self,
        subs: &mut [Option<SubState>],
        keys: &[usize],
        event: &Arc<Event>,
        tickets: &mut Vec<BlockTicket>,
        wakers: &mut Vec<Waker>,
    ) {
        for &key in keys {
            let Some(Some(sub)) = subs.get_mut(key) else {
                continue;
            };
            if sub.index_implies_match || sub.shared.filter.matches(event) {
                let policy = self.config.slow_consumer;
                if let Some(seq) = sub.push(event, self.buffer(), policy, wakers) {
                    tickets.push(BlockTicket {
                        subscriber: Arc::clone(&sub.shared),
                        key,
                        id: event.id,
                        seq,
                    });
                }
            }
        }
    }

    /// Waits, for each ticket in turn, until its event is within the subscriber's buffer, the
    /// subscriber closes or goes, or the deadline passes; on timeout the event is withdrawn from that
    /// subscriber's queue and counted as dropped.
    fn wait_for_room(&self, tickets: Vec<BlockTicket>) {
        let deadline = self.config.block_timeout.map(|t| Instant::now() + t);
        let buffer = self.buffer() as u64;
        for ticket in tickets {
            let sub_id = ticket.subscriber.id;
            let mut state = self.state.lock();
            while let Some(sub) = state.sub_mut(ticket.key, sub_id) {
                if sub.closed || sub.taken + buffer > ticket.seq {
                    break;
                }
                sub.publishers_waiting += 1;
                let writable = &ticket.subscriber.writable;
                let timed_out = match deadline {
                    Some(deadline) => writable.wait_until(&mut state, deadline).timed_out(),
                    None => {
                        writable.wait(&mut state);
                        false
                    }
                };
                let Some(sub) = state.sub_mut(ticket.key, sub_id) else {
                    break;
                };
                sub.publishers_waiting -= 1;
                if timed_out && !sub.closed && sub.taken + buffer <= ticket.seq {
                    if let Some(at) = sub.queue.iter().rposition(|e| e.id == ticket.id) {
                        let withdrawn = sub.queue.remove(at);
                        sub.taken += 1;
                        sub.dropped += 1;
                        drop(state);
                        drop(withdrawn);
                    }
                    break;
                }
            }
        }
    }

    fn subscribe(self: &Arc<Self>, filter: EventFilter, replay: Replay) -> EventSubscriber {
        let mut state = self.state.lock();
        let (backlog, gap) = if replay == Replay::None {
            (VecDeque::new(), None)
        } else {
            state.replay(&filter, replay)
        };
        state.next_subscriber += 1;
        let shared = Arc::new(Shared::new(state.next_subscriber, filter));
        let key = state.insert(SubState::new(Arc::clone(&shared), backlog));
        drop(state);
        EventSubscriber::new(shared, Arc::clone(self), key, gap)
    }

    /// Removes a subscriber; its queued events are freed after the lock is released.
    pub(crate) fn unsubscribe(&self, key: usize, id: u64) {
        let mut state = self.state.lock();
        let Some(sub) = state.remove(key, id) else {
            return;
        };
        // A `Block` publisher waiting for room in this subscriber stops waiting.
        sub.shared.writable.notify_all();
        drop(state);
        drop(sub);
    }
}

impl State {
    /// The subscriber with `key`, if it is still the one with `id`.
    #[inline]
    pub(crate) fn sub_mut(&mut self, key: usize, id: u64) -> Option<&mut SubState> {
        self.subs
            .get_mut(key)?
            .as_mut()
            .filter(|sub| sub.shared.id == id)
    }

    fn live_subs(&self) -> impl Iterator<Item = &SubState> {
        self.subs.iter().flatten()
    }

    /// Adds a subscriber to the table and the index; returns its key.
    fn insert(&mut self, sub: SubState) -> usize {
        let shared = Arc::clone(&sub.shared);
        let index_key = shared.filter.index_key();
        let key = match self.free.pop() {
            Some(key) => {
                self.subs[key] = Some(sub);
                key
            }
            None => {
                self.subs.push(Some(sub));
                self.subs.len() - 1
            }
        };
        self.subscribers += 1;
        match index_key {
            IndexKey::Types(types) => {
                for t in types {
                    self.by_type.entry(t.to_owned()).or_default().push(key);
                }
            }
            IndexKey::Resources(resources) => {
                for r in resources {
                    self.by_resource.entry(r.to_owned()).or_default().push(key);
                }
            }
            IndexKey::Anything => self.anything.push(key),
        }
        key
    }

    /// Takes a subscriber out of the table and the index, keeping its counts.
    fn remove(&mut self, key: usize, id: u64) -> Option<SubState> {
        fn remove_keyed(map: &mut FxHashMap<String, Vec<usize>>, name: &str, key: usize) {
            if let Some(list) = map.get_mut(name) {
                list.retain(|&k| k != key);
                if list.is_empty() {
                    map.remove(name);
                }
            }
        }
        self.sub_mut(key, id)?;
        let sub = self.subs.get_mut(key)?.take()?;
        self.free.push(key);
        // Every bucket must be visited: a filter with several exact types sits in several.
        match sub.shared.filter.index_key() {
            IndexKey::Types(types) => {
                for t in types {
                    remove_keyed(&mut self.by_type, t, key);
                }
            }
            IndexKey::Resources(resources) => {
                for r in resources {
                    remove_keyed(&mut self.by_resource, r, key);
                }
            }
            IndexKey::Anything => self.anything.retain(|&k| k != key),
        }
        self.subscribers -= 1;
        self.gone_delivered += sub.delivered;
        self.gone_dropped += sub.dropped;
        Some(sub)
    }

    /// The oldest id history can still give: in memory or, for a bus with a data dir, on disk.
    pub(super) fn oldest_readable(&self) -> Option<EventId> {
        let memory = self.history.first_id();
        #[cfg(unix)]
        if let Some(disk) = &self.disk {
            return match (memory, disk.dir.first_id()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        memory
    }

    fn first_held(&self) -> EventId {
        self.history.first_id().unwrap_or(self.last_id + 1)
    }

    fn replay(
        &mut self,
        filter: &EventFilter,
        replay: Replay,
    ) -> (VecDeque<Arc<Event>>, Option<ReplayGap>) {
        match replay {
            Replay::None => (VecDeque::new(), None),
            Replay::All => (self.history.shared(filter, None).into(), None),
            Replay::Last(n) => (self.history.last(filter, n).into(), None),
            Replay::FromId(from) => {
                let first = self.first_held();
                let gap = (from < first && from <= self.last_id).then_some(ReplayGap {
                    requested: from,
                    oldest_held: first,
                });
                (self.history.shared(filter, Some(from)).into(), gap)
            }
            Replay::FromTime(t) => {
                let since = crate::epoch::cut_to_micros(t);
                (self.history.since_time(filter, since).into(), None)
            }
        }
    }
}

impl EventBus {
    /// A bus with `config`.
    pub fn new(config: EventBusConfig) -> Self {
        Self::build(
            config,
            #[cfg(unix)]
            None,
        )
    }

    /// A bus with `config` whose history is also kept in the data dir at `path`, created if absent:
    /// see [the data dir's rules](crate::event_stream#history-on-disk). Ids go on after the last one
    /// the data dir ever stored, and its newest `history_size` events (within `history_bytes`) are
    /// loaded into memory at once. What opening found and repaired is in the [`Recovery`]
    /// (`Display` gives it in one line).
    ///
    /// [`Recovery`]: crate::store::disk::Recovery
    ///
    /// ```
    /// use ipckit::store::disk::DiskOptions;
    /// use ipckit::{Event, EventBus, EventBusConfig, EventFilter, Replay};
    /// use ipckit::event_stream::{CatchUp, Delivery};
    /// # let dir = std::env::temp_dir().join(format!("ipckit-doc-bus-open-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let config = EventBusConfig { history_size: 10, ..Default::default() };
    /// let (bus, _) = EventBus::open(config.clone(), &dir, DiskOptions::default())?;
    /// for i in 0..100 {
    ///     bus.try_publish(Event::new("tick", serde_json::json!(i)))?;
    /// }
    /// drop(bus);
    /// // After a restart: ids go on, memory holds the newest 10, and a replay reads the rest from disk.
    /// let (bus, recovery) = EventBus::open(config, &dir, DiskOptions::default())?;
    /// assert_eq!((recovery.records, bus.last_id(), bus.history(&EventFilter::new()).len()), (100, 100, 10));
    /// let mut reader = CatchUp::new(&bus, EventFilter::new(), Replay::FromId(1));
    /// let mut ids = Vec::new();
    /// while let Some(Delivery::Event(event)) = reader.try_next() {
    ///     ids.push(event.id);
    /// }
    /// assert_eq!(ids, (1..=100).collect::<Vec<_>>());
    /// # drop((reader, bus));
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The data dir's refusals and I/O errors ([`DataDir::open`](crate::store::disk::DataDir::open)):
    /// another process holds it, another format version, an unsafe directory, a directory that is not
    /// a data dir. Nothing is written into a refused directory.
    #[cfg(unix)]
    pub fn open(
        config: EventBusConfig,
        path: impl AsRef<std::path::Path>,
        options: crate::store::disk::DiskOptions,
    ) -> Result<(EventBus, crate::store::disk::Recovery), crate::store::disk::DiskError> {
        let (dir, recovery) = crate::store::disk::DataDir::open(path, options)?;
        let history_size = config.history_size;
        let bus = Self::build(config, Some(DiskState::new(dir)));
        {
            let mut guard = bus.inner.state();
            let state = &mut *guard;
            if let Some(disk) = &mut state.disk {
                state.last_id = disk.dir.next_id().saturating_sub(1);
                disk.load_newest(&mut state.history, history_size);
            }
        }
        Ok((bus, recovery))
    }

    fn build(config: EventBusConfig, #[cfg(unix)] disk: Option<DiskState>) -> Self {
        let history = History::new(
            config.history_size,
            config.history_bytes,
            config.hot_history,
        );
        #[cfg(unix)]
        let durable = disk.is_some();
        #[cfg(not(unix))]
        let durable = false;
        let state = State {
            last_id: 0,
            history,
            #[cfg(unix)]
            disk,
            next_subscriber: 0,
            subs: Vec::new(),
            free: Vec::new(),
            by_type: FxHashMap::default(),
            by_resource: FxHashMap::default(),
            anything: Vec::new(),
            subscribers: 0,
            gone_delivered: 0,
            gone_dropped: 0,
        };
        Self {
            inner: Arc::new(Inner {
                core: Arc::new(Core {
                    config,
                    durable,
                    state: Mutex::new(state),
                }),
            }),
        }
    }

    /// The bus's settings.
    pub fn config(&self) -> &EventBusConfig {
        &self.inner.core.config
    }

    /// A publisher for this bus.
    pub fn publisher(&self) -> EventPublisher {
        EventPublisher {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Subscribes to live events that match `filter`. Dropping the subscriber unsubscribes it.
    pub fn subscribe(&self, filter: EventFilter) -> EventSubscriber {
        self.inner.subscribe(filter, Replay::None)
    }

    /// Subscribes and, in the same step, queues the kept history `replay` asks for, so the subscriber
    /// reads history then live events with no gap and no duplicate, whoever publishes meanwhile. If
    /// history no longer holds what was asked for, [`EventSubscriber::replay_gap`] says so.
    pub fn subscribe_with_replay(&self, filter: EventFilter, replay: Replay) -> EventSubscriber {
        self.inner.subscribe(filter, replay)
    }

    /// Stamps `event` with the next id of this bus (and cuts its time to the microsecond, the precision
    /// of the JSON form), keeps it in history and delivers it; returns the id.
    ///
    /// On a bus with a data dir ([`EventBus::open`]) the event is written to the data dir first. This
    /// method cannot say when that fails (a full disk, an I/O error): the event is then delivered and
    /// kept in memory only, and the failure is counted in [`DiskStats::errors`] and reported by
    /// [`EventBus::maintain_disk`]; after a restart its id is missing. Use [`EventBus::try_publish`]
    /// to have such an event refused instead.
    pub fn publish(&self, event: Event) -> EventId {
        self.inner.publish(event)
    }

    /// Publishes `event` as [`EventBus::publish`] does, except that on a bus with a data dir an event
    /// whose record cannot be written is refused: nothing is delivered, no id is taken (the next event
    /// gets the id this one would have had), and the event comes back in the error. On a bus without
    /// a data dir it always succeeds.
    ///
    /// # Errors
    ///
    /// [`PublishError::NotStored`] when the record could not be written (nothing stored before is
    /// touched, and a later publish works once the cause is gone); [`PublishError::NotSynced`] when,
    /// under `FsyncPolicy::Always`, it was written and delivered but the sync to the disk failed.
    #[cfg(unix)]
    pub fn try_publish(&self, event: Event) -> Result<EventId, PublishError> {
        self.inner.core.send(event, true)
    }

    /// Applies the data dir's retention limits now (the age limit needs this now and then on a quiet
    /// bus; the size limit is also applied whenever a segment starts) and collects what happened since
    /// the last call: segments retention deleted, appends that failed, errors of the background
    /// flush, of retention and of reading segments. `None` for a bus without a data dir.
    #[cfg(unix)]
    pub fn maintain_disk(&self) -> Option<DiskReport> {
        let mut state = self.inner.state();
        state.disk.as_mut().map(DiskState::report)
    }

    /// Forces everything published so far to the disk, whatever the fsync policy (a server calls it
    /// when it shuts down; closing the bus also syncs, silently). `Ok` for a bus without a data dir.
    ///
    /// # Errors
    ///
    /// When a write or a sync fails.
    #[cfg(unix)]
    pub fn sync_disk(&self) -> Result<(), crate::store::disk::DiskError> {
        let mut state = self.inner.state();
        match state.disk.as_mut() {
            Some(disk) => disk.dir.sync(),
            None => Ok(()),
        }
    }

    /// Whether the bus keeps its history in a data dir too (it was opened with [`EventBus::open`]).
    pub fn has_data_dir(&self) -> bool {
        self.inner.core.durable
    }

    /// Whether the bus keeps anything to catch up from: history in memory or a data dir.
    pub(crate) fn keeps_history(&self) -> bool {
        self.inner.core.config.history_size > 0 || self.inner.core.durable
    }

    /// Kept events that match `filter`, oldest first, as owned copies. Only the events held in memory
    /// (the newest `history_size`): on a bus with a data dir, older ones are read a page at a time with
    /// [`EventBus::history_page`] or [`CatchUp`](crate::event_stream::CatchUp).
    pub fn history(&self, filter: &EventFilter) -> Vec<Event> {
        self.inner.state().history.owned(filter)
    }

    /// Kept events that match `filter`, oldest first, shared rather than copied. Memory only, as
    /// [`EventBus::history`].
    pub fn history_arc(&self, filter: &EventFilter) -> Vec<Arc<Event>> {
        let mut state = self.inner.state();
        state.history.shared(filter, filter.min_id())
    }

    /// One page of kept history, for readers that catch up on what they missed without holding all of
    /// it at once: the matching events with ids in `ids` (oldest first, at most `limit` of them), and
    /// the oldest id history held when the page was read (`None` when it held nothing). Ids in `ids`
    /// below that oldest one are no longer kept; a page shorter than `limit` covers the whole range.
    /// The events are the shared copies subscribers received, where history still has them.
    ///
    /// On a bus with a data dir the page reaches the events on disk older than memory: they are read
    /// from the segments without holding the bus lock (publishers go on meanwhile), the filter's
    /// type and resource terms judged before any data is parsed.
    pub fn history_page(
        &self,
        filter: &EventFilter,
        ids: std::ops::RangeInclusive<EventId>,
        limit: usize,
    ) -> (Vec<Arc<Event>>, Option<EventId>) {
        #[cfg(unix)]
        if self.inner.core.durable {
            return super::durable::page(self, filter, *ids.start(), *ids.end(), limit);
        }
        let mut state = self.inner.state();
        let oldest = state.history.first_id();
        let page = state.history.page(filter, *ids.start(), *ids.end(), limit);
        (page, oldest)
    }

    /// Where a replay of the events stamped at or after `time` can start reading: every readable
    /// event with a smaller id is older. `None` for a bus without a data dir (memory is scanned whole).
    pub(crate) fn first_id_since(&self, time: SystemTime) -> Option<EventId> {
        #[cfg(unix)]
        if self.inner.core.durable {
            return Some(super::durable::first_id_since(&self.inner.state(), time));
        }
        let _ = time;
        None
    }

    /// Forgets all kept events. Ids keep counting from where they were. On a bus with a data dir only
    /// memory is cleared: the events on disk stay readable through [`EventBus::history_page`] (what
    /// the data dir keeps is up to its retention limits).
    pub fn clear_history(&self) {
        let cleared = self.inner.state().history.clear();
        drop(cleared);
    }

    /// The id of the last published event (0 before the first).
    pub fn last_id(&self) -> EventId {
        self.inner.state().last_id
    }

    /// Counters of the bus.
    pub fn stats(&self) -> BusStats {
        let state = self.inner.state();
        let mut stats = BusStats {
            published: state.last_id,
            delivered: state.gone_delivered,
            dropped: state.gone_dropped,
            subscribers: state.subscribers,
            history_len: state.history.len(),
            oldest_id: state.history.first_id(),
            history_packed: state.history.packed_len(),
            history_bytes: state.history.bytes(),
            disk: None,
        };
        #[cfg(unix)]
        {
            stats.oldest_id = state.oldest_readable();
            stats.disk = state.disk.as_ref().map(DiskState::stats);
        }
        for sub in state.live_subs() {
            stats.delivered += sub.delivered;
            stats.dropped += sub.dropped;
        }
        stats
    }

    /// Every attached subscriber with its counters, in subscription order.
    pub fn subscribers(&self) -> Vec<SubscriberStats> {
        let state = self.inner.state();
        let mut out: Vec<SubscriberStats> = state
            .live_subs()
            .map(|sub| SubscriberStats {
                id: sub.shared.id,
                filter: sub.shared.filter.to_string(),
                delivered: sub.delivered,
                dropped: sub.dropped,
                queued: sub.queued(),
            })
            .collect();
        out.sort_by_key(|s| s.id);
        out
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(EventBusConfig::default())
    }
}

impl EventPublisher {
    /// Publishes `event`; returns the id the bus gave it.
    pub fn publish(&self, event: Event) -> EventId {
        self.inner.publish(event)
    }

    /// Publishes a `task.progress` event (see [`Event::progress`]).
    pub fn progress(&self, resource_id: &str, current: u64, total: u64, message: &str) -> EventId {
        self.publish(Event::progress(resource_id, current, total, message))
    }

    /// Publishes an MCP progress notification (see [`Event::mcp_progress`]).
    pub fn mcp_progress(
        &self,
        progress_token: &str,
        progress: f64,
        total: Option<f64>,
        message: Option<&str>,
    ) -> EventId {
        self.publish(Event::mcp_progress(
            progress_token,
            progress,
            total,
            message,
        ))
    }

    /// Publishes a log line (see [`Event::log`]).
    pub fn log(&self, resource_id: &str, level: &str, message: &str) -> EventId {
        self.publish(Event::log(resource_id, level, message))
    }

    /// Publishes a `log.stdout` line.
    pub fn stdout(&self, resource_id: &str, line: &str) -> EventId {
        self.publish(Event::stdout(resource_id, line))
    }

    /// Publishes a `log.stderr` line.
    pub fn stderr(&self, resource_id: &str, line: &str) -> EventId {
        self.publish(Event::stderr(resource_id, line))
    }

    /// Publishes `task.started` for `task_id` with `data`.
    pub fn task_started(&self, task_id: &str, data: serde_json::Value) -> EventId {
        self.publish(Event::with_resource(
            super::event::event_types::TASK_STARTED,
            task_id,
            data,
        ))
    }

    /// Publishes `task.completed` for `task_id` with data `{"result": result}`.
    pub fn task_completed(&self, task_id: &str, result: serde_json::Value) -> EventId {
        self.publish(Event::with_resource(
            super::event::event_types::TASK_COMPLETED,
            task_id,
            serde_json::json!({ "result": result }),
        ))
    }

    /// Publishes `task.failed` for `task_id` with data `{"error": error}`.
    pub fn task_failed(&self, task_id: &str, error: &str) -> EventId {
        self.publish(Event::with_resource(
            super::event::event_types::TASK_FAILED,
            task_id,
            serde_json::json!({ "error": error }),
        ))
    }

    /// Publishes `task.cancelled` for `task_id` with data `{}`.
    pub fn task_cancelled(&self, task_id: &str) -> EventId {
        self.publish(Event::with_resource(
            super::event::event_types::TASK_CANCELLED,
            task_id,
            serde_json::json!({}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A freed place in the subscriber table is reused, and a `Block` publisher's ticket for the
    /// subscriber that was there no longer finds anything: it checks the id, not only the place.
    #[test]
    fn a_reused_place_in_the_table_is_not_mistaken_for_the_subscriber_that_left_it() {
        let bus = EventBus::default();
        let first = bus.subscribe(EventFilter::new());
        let (first_key, first_id) = (first.key(), first.id());
        drop(first);
        let second = bus.subscribe(EventFilter::new());
        assert_eq!(second.key(), first_key, "the freed place is reused");
        let mut state = bus.inner.state();
        assert!(state.sub_mut(first_key, first_id).is_none());
        assert!(state.sub_mut(first_key, second.id()).is_some());
    }

    /// After the last handle goes, a subscriber still reads what was queued, then learns the bus is
    /// closed; history and the index are released at once.
    #[test]
    fn closing_keeps_queued_events_and_releases_history() {
        let bus = EventBus::default();
        let sub = bus.subscribe(EventFilter::new());
        bus.publish(Event::new("a", json!(1)));
        let core = Arc::clone(&bus.inner.core);
        drop(bus);
        assert_eq!(core.lock().history.len(), 0);
        assert!(core.lock().anything.is_empty());
        assert_eq!(sub.try_recv().map(|e| e.id), Some(1));
        assert!(sub.recv().is_none());
    }
}
