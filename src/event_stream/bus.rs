//! The bus: id stamping, history, the subscriber index and delivery. The rules are documented on
//! [`crate::event_stream`].

use super::event::{epoch_seconds, Event, EventId};
use super::filter::{EventFilter, IndexKey};
use super::history::{Hashes, History, Slot};
use super::subscriber::{EventSubscriber, Shared, SubState};
use super::sync::Mutex;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
    /// How many live events a subscriber buffers (default 256). 0 is taken as 1.
    pub subscriber_buffer: usize,
    /// What happens when a subscriber's buffer is full (default [`SlowConsumerPolicy::DropOldest`]).
    pub slow_consumer: SlowConsumerPolicy,
    /// Under [`SlowConsumerPolicy::Block`], how long a publisher waits for one subscriber to make room
    /// before counting the event as lost for it (default 5 s); `None` waits for as long as it takes.
    pub block_timeout: Option<Duration>,
    /// How many of the newest history events are kept as the shared `Arc<Event>`s subscribers got
    /// (default 131,072). Older ones are packed (compact JSON, shared strings), about a fifth of the
    /// memory, and decoded when a query or replay reaches them.
    pub hot_history: usize,
}

impl Default for EventBusConfig {
    fn default() -> Self {
        Self {
            history_size: 1000,
            subscriber_buffer: 256,
            slow_consumer: SlowConsumerPolicy::DropOldest,
            block_timeout: Some(Duration::from_secs(5)),
            hot_history: 1 << 17,
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

/// Counters of a bus, read with [`EventBus::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BusStats {
    /// Events published (also the id of the last one).
    pub published: u64,
    /// Events handed to readers, over all subscribers, past and present.
    pub delivered: u64,
    /// Events discarded by slow-consumer policies, over all subscribers, past and present.
    pub dropped: u64,
    /// Subscribers attached now.
    pub subscribers: usize,
    /// Events in history now.
    pub history_len: usize,
    /// The oldest id in history, if any.
    pub oldest_id: Option<EventId>,
    /// How many of the events in history are packed (see [`EventBusConfig::hot_history`]).
    pub history_packed: usize,
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

pub(crate) struct Inner {
    config: EventBusConfig,
    state: Mutex<State>,
}

struct State {
    last_id: EventId,
    history: History,
    next_subscriber: u64,
    by_type: FxHashMap<String, Vec<Arc<Shared>>>,
    by_resource: FxHashMap<String, Vec<Arc<Shared>>>,
    anything: Vec<Arc<Shared>>,
    subscribers: usize,
    /// Delivered and dropped counts of subscribers that have gone.
    gone_delivered: u64,
    gone_dropped: u64,
}

/// A publisher must wait for room in a [`SlowConsumerPolicy::Block`] subscriber.
struct BlockTicket {
    subscriber: Arc<Shared>,
    id: EventId,
    seq: u64,
}

impl Inner {
    fn buffer(&self) -> usize {
        self.config.subscriber_buffer.max(1)
    }

    fn publish(&self, mut event: Event) -> EventId {
        // Times are kept to the microsecond, what the JSON form carries exactly.
        event.timestamp = epoch_seconds::to_micros(event.timestamp);
        // Hashed before taking the lock. The one shared copy is allocated under it, once the id is in
        // place, so nothing has to check that it is unshared; with no subscriber at all the event moves
        // into history as it is, with no allocation.
        let hashes = Hashes::of(&event);
        let mut tickets: Vec<BlockTicket> = Vec::new();
        let pushed;
        let id;
        {
            let mut state = self.state.lock();
            state.last_id += 1;
            id = state.last_id;
            event.id = id;
            let slot = if state.subscribers == 0 {
                Slot::Owned(event)
            } else {
                let event = Arc::new(event);
                self.deliver_all(&state, &event, &mut tickets);
                Slot::Shared(event)
            };
            pushed = state.history.push(slot, hashes);
            // Freed under the lock: publishers on other threads would otherwise contend for the
            // allocator's lock instead (two publishers took 1.83x the time of one that way, 1.6x this way).
            drop(pushed.evicted);
        }
        if let Some(job) = pushed.pack {
            let batch = job.run();
            let released = self.state.lock().history.store(batch);
            drop(released);
        }
        if !tickets.is_empty() {
            self.wait_for_room(tickets);
        }
        id
    }

    fn deliver_all(&self, state: &State, event: &Arc<Event>, tickets: &mut Vec<BlockTicket>) {
        if !state.by_type.is_empty() {
            if let Some(subs) = state.by_type.get(event.event_type.as_str()) {
                self.deliver(subs, event, tickets);
            }
        }
        if !state.by_resource.is_empty() {
            if let Some(subs) = event
                .resource_id
                .as_deref()
                .and_then(|r| state.by_resource.get(r))
            {
                self.deliver(subs, event, tickets);
            }
        }
        self.deliver(&state.anything, event, tickets);
    }

    #[inline]
    fn deliver(&self, subs: &[Arc<Shared>], event: &Arc<Event>, tickets: &mut Vec<BlockTicket>) {
        for sub in subs {
            if sub.index_implies_match || sub.filter.matches(event) {
                if let Some(seq) = sub.push(event, self.buffer(), self.config.slow_consumer) {
                    tickets.push(BlockTicket {
                        subscriber: Arc::clone(sub),
                        id: event.id,
                        seq,
                    });
                }
            }
        }
    }

    fn wait_for_room(&self, tickets: Vec<BlockTicket>) {
        let deadline = self.config.block_timeout.map(|t| Instant::now() + t);
        for ticket in tickets {
            ticket
                .subscriber
                .wait_for_room(ticket.seq, ticket.id, self.buffer(), deadline);
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
        let shared = Arc::new(Shared::new(
            state.next_subscriber,
            filter,
            SubState::with_backlog(backlog),
        ));
        state.insert(&shared);
        drop(state);
        EventSubscriber::new(shared, Arc::downgrade(self), gap)
    }

    pub(crate) fn unsubscribe(&self, shared: &Arc<Shared>) {
        let mut state = self.state.lock();
        let removed = state.remove(shared);
        if removed {
            let (delivered, dropped) = shared.close();
            state.gone_delivered += delivered;
            state.gone_dropped += dropped;
        }
    }

    fn all_subscribers(state: &State) -> impl Iterator<Item = &Arc<Shared>> {
        state
            .by_type
            .values()
            .chain(state.by_resource.values())
            .flatten()
            .chain(state.anything.iter())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        let mut closed: Vec<Arc<Shared>> = Vec::new();
        for sub in Inner::all_subscribers(state) {
            if !closed.iter().any(|c| Arc::ptr_eq(c, sub)) {
                closed.push(Arc::clone(sub));
            }
        }
        for sub in closed {
            sub.close();
        }
    }
}

impl State {
    fn insert(&mut self, shared: &Arc<Shared>) {
        self.subscribers += 1;
        match shared.filter.index_key() {
            IndexKey::Types(types) => {
                for t in types {
                    self.by_type
                        .entry(t.to_owned())
                        .or_default()
                        .push(Arc::clone(shared));
                }
            }
            IndexKey::Resources(resources) => {
                for r in resources {
                    self.by_resource
                        .entry(r.to_owned())
                        .or_default()
                        .push(Arc::clone(shared));
                }
            }
            IndexKey::Anything => self.anything.push(Arc::clone(shared)),
        }
    }

    /// Removes `shared` from the index; false if it was not there (already removed).
    fn remove(&mut self, shared: &Arc<Shared>) -> bool {
        fn remove_from(list: &mut Vec<Arc<Shared>>, shared: &Arc<Shared>) -> bool {
            let before = list.len();
            list.retain(|s| !Arc::ptr_eq(s, shared));
            list.len() != before
        }
        fn remove_keyed(
            map: &mut FxHashMap<String, Vec<Arc<Shared>>>,
            key: &str,
            shared: &Arc<Shared>,
        ) -> bool {
            let Some(list) = map.get_mut(key) else {
                return false;
            };
            let removed = remove_from(list, shared);
            if list.is_empty() {
                map.remove(key);
            }
            removed
        }
        // Every bucket must be visited: a filter with several exact types sits in several.
        let mut removed = false;
        match shared.filter.index_key() {
            IndexKey::Types(types) => {
                for t in types {
                    removed |= remove_keyed(&mut self.by_type, t, shared);
                }
            }
            IndexKey::Resources(resources) => {
                for r in resources {
                    removed |= remove_keyed(&mut self.by_resource, r, shared);
                }
            }
            IndexKey::Anything => removed = remove_from(&mut self.anything, shared),
        }
        if removed {
            self.subscribers -= 1;
        }
        removed
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
                let since = epoch_seconds::to_micros(t);
                (self.history.since_time(filter, since).into(), None)
            }
        }
    }
}

impl EventBus {
    /// A bus with `config`.
    pub fn new(config: EventBusConfig) -> Self {
        let history = History::new(config.history_size, config.hot_history);
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State {
                    last_id: 0,
                    history,
                    next_subscriber: 0,
                    by_type: FxHashMap::default(),
                    by_resource: FxHashMap::default(),
                    anything: Vec::new(),
                    subscribers: 0,
                    gone_delivered: 0,
                    gone_dropped: 0,
                }),
            }),
        }
    }

    /// The bus's settings.
    pub fn config(&self) -> &EventBusConfig {
        &self.inner.config
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
    pub fn publish(&self, event: Event) -> EventId {
        self.inner.publish(event)
    }

    /// Kept events that match `filter`, oldest first, as owned copies.
    pub fn history(&self, filter: &EventFilter) -> Vec<Event> {
        self.inner.state.lock().history.owned(filter)
    }

    /// Kept events that match `filter`, oldest first, shared rather than copied.
    pub fn history_arc(&self, filter: &EventFilter) -> Vec<Arc<Event>> {
        let mut state = self.inner.state.lock();
        state.history.shared(filter, filter.min_id())
    }

    /// Forgets all kept events. Ids keep counting from where they were.
    pub fn clear_history(&self) {
        let cleared = self.inner.state.lock().history.clear();
        drop(cleared);
    }

    /// The id of the last published event (0 before the first).
    pub fn last_id(&self) -> EventId {
        self.inner.state.lock().last_id
    }

    /// Counters of the bus.
    pub fn stats(&self) -> BusStats {
        let state = self.inner.state.lock();
        let mut stats = BusStats {
            published: state.last_id,
            delivered: state.gone_delivered,
            dropped: state.gone_dropped,
            subscribers: state.subscribers,
            history_len: state.history.len(),
            oldest_id: state.history.first_id(),
            history_packed: state.history.packed_len(),
        };
        let mut seen: Vec<*const Shared> = Vec::new();
        for sub in Inner::all_subscribers(&state) {
            if seen.contains(&Arc::as_ptr(sub)) {
                continue;
            }
            seen.push(Arc::as_ptr(sub));
            let (delivered, dropped, _) = sub.counts();
            stats.delivered += delivered;
            stats.dropped += dropped;
        }
        stats
    }

    /// Every attached subscriber with its counters, in subscription order.
    pub fn subscribers(&self) -> Vec<SubscriberStats> {
        let state = self.inner.state.lock();
        let mut out: Vec<SubscriberStats> = Vec::new();
        for sub in Inner::all_subscribers(&state) {
            if out.iter().any(|s| s.id == sub.id) {
                continue;
            }
            let (delivered, dropped, queued) = sub.counts();
            out.push(SubscriberStats {
                id: sub.id,
                filter: sub.filter.to_string(),
                delivered,
                dropped,
                queued,
            });
        }
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
