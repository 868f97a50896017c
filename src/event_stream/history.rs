//! The bus's history: the last `history_size` events (within `history_bytes`), kept in a
//! [`Store`]: a 28-byte row per event (id, time, interned type and resource, payload end) and the
//! event's data as compact JSON, in blocks that are LZ4-compressed once sealed. No `Event` is held
//! long-term: a publisher serializes the data before it takes the bus lock, copies the bytes in under
//! it, and frees its event (or its reference to the shared one) after releasing it; a sealed block is
//! compressed by the publisher that sealed it, outside the lock, and installed under it again.
//!
//! Queries and replays find positions with a [`StoreFilter`] (type and resource globs judged once per
//! distinct string, `text:` searched in the payload bytes first) and decode only the events they
//! return. A small cache remembers, weakly, the shared copies of the last few hundred events published
//! to subscribers or handed out by a query or replay: while anyone still holds one, history hands out
//! that same allocation (a subscriber's `Arc` and history's are one), and it never keeps an event
//! alive, so a reader that holds the last reference still takes the event without a copy.

use super::event::{Event, EventId};
use super::filter::EventFilter;
use crate::store::{
    CompressJob, Compressed, EventParts, Order, Pos, Store, StoreConfig, StoreFilter,
};
use std::cell::Cell;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

/// Shared events remembered (weakly) by position, so the same event is handed out as the same `Arc`.
const SHARED_CACHE: usize = 256;

/// One remembered shared event.
type Remembered = Option<(Pos, Weak<Event>)>;

thread_local! {
    /// Each publishing thread's buffer for serializing data, reused from publish to publish.
    static ENCODE_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// An event's data serialized before the bus lock is taken.
pub(crate) struct Encoded {
    /// The data as compact JSON.
    pub(crate) data: Vec<u8>,
    /// The time in microseconds since the epoch.
    pub(crate) time_micros: i64,
}

impl Encoded {
    /// Serializes `event`'s data into this thread's buffer.
    pub(crate) fn of(event: &Event) -> Self {
        let mut buf = ENCODE_BUF.take();
        let time_micros = EventParts::of(event, &mut buf).time_micros;
        Self {
            data: buf,
            time_micros,
        }
    }

    /// Gives the buffer back to this thread (a buffer grown by a huge event is let go).
    pub(crate) fn recycle(self) {
        if self.data.capacity() <= 1 << 16 {
            ENCODE_BUF.set(self.data);
        }
    }
}

/// What [`History::clear`] took out, to drop outside the lock.
pub(crate) struct ClearedHistory {
    _store: crate::store::Cleared,
    _shared: Vec<Remembered>,
}

pub(crate) struct History {
    store: Store,
    /// Direct-mapped by position.
    shared: Vec<Remembered>,
}

impl History {
    pub(crate) fn new(capacity: usize, max_bytes: usize, hot: usize) -> Self {
        let mut config = StoreConfig::new(capacity);
        config.max_bytes = max_bytes;
        config.hot_events = hot;
        Self {
            store: Store::new(config),
            shared: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.store.len()
    }

    /// How many events are in compressed blocks.
    pub(crate) fn packed_len(&self) -> usize {
        self.store.stats().compressed_events
    }

    /// Bytes the store holds.
    pub(crate) fn bytes(&self) -> usize {
        self.store.bytes()
    }

    /// The oldest id held, if any.
    pub(crate) fn first_id(&self) -> Option<EventId> {
        self.store.id_at(self.store.first_pos())
    }

    /// Appends an event (its id set, its data encoded); returns its position and a block to compress
    /// after releasing the lock, if one is due. An event the store cannot keep (data of 4 GiB or more)
    /// is delivered but not kept.
    pub(crate) fn push(
        &mut self,
        event: &Event,
        encoded: &Encoded,
    ) -> (Option<Pos>, Option<CompressJob>) {
        let parts = EventParts {
            id: event.id,
            time_micros: encoded.time_micros,
            event_type: &event.event_type,
            resource: event.resource_id.as_deref(),
            data: &encoded.data,
        };
        match self.store.push(parts) {
            Ok(pushed) => (Some(pushed.pos), pushed.job),
            Err(_) => (None, None),
        }
    }

    /// Appends an event read back from a data dir (its id, time and data already in stored form),
    /// compressing a sealed block at once; false when the store cannot keep it.
    #[cfg(unix)]
    pub(crate) fn load(&mut self, parts: EventParts<'_>) -> bool {
        match self.store.push(parts) {
            Ok(pushed) => {
                if let Some(job) = pushed.job {
                    self.store.install(job.run());
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Remembers the shared copy subscribers got of the event at `pos`, so history hands out the
    /// same allocation while anyone holds it; returns the entry it displaces, to drop outside the lock.
    pub(crate) fn remember(&mut self, pos: Pos, event: &Arc<Event>) -> Remembered {
        if self.shared.is_empty() {
            self.shared.resize(SHARED_CACHE, None);
        }
        let slot = self.shared.get_mut(slot_of(pos))?;
        slot.replace((pos, Arc::downgrade(event)))
    }

    /// Installs a compressed block.
    pub(crate) fn install(&mut self, done: Compressed) {
        self.store.install(done);
    }

    /// Forgets everything; returns what to drop outside the lock.
    pub(crate) fn clear(&mut self) -> ClearedHistory {
        ClearedHistory {
            _store: self.store.clear(),
            _shared: std::mem::take(&mut self.shared),
        }
    }

    /// Positions of matching events from `start`, oldest first.
    fn positions(&self, filter: &mut StoreFilter, start: Pos) -> Vec<Pos> {
        let mut out = Vec::new();
        let range = start.max(self.store.first_pos())..self.store.end_pos();
        let _ = self
            .store
            .scan(filter, range, Order::OldestFirst, usize::MAX, &mut out);
        out
    }

    fn start_of(&self, from: Option<EventId>) -> Pos {
        from.map_or(self.store.first_pos(), |id| self.store.lower_bound_id(id))
    }

    /// The events at `positions` (increasing), shared: the cached `Arc` where there is one, else
    /// decoded (each block decompressed once) and remembered.
    fn share(&mut self, positions: &[Pos]) -> Vec<Arc<Event>> {
        if self.shared.is_empty() {
            self.shared.resize(SHARED_CACHE, None);
        }
        let mut out: Vec<Option<Arc<Event>>> = positions
            .iter()
            .map(|&pos| cached(&self.shared, pos))
            .collect();
        let missing = positions
            .iter()
            .zip(&out)
            .filter(|(_, hit)| hit.is_none())
            .map(|(&pos, _)| pos);
        let mut decoded = Vec::new();
        self.store.for_each(missing, |pos, parts| {
            if let Ok(event) = parts.to_event() {
                decoded.push((pos, Arc::new(event)));
            }
        });
        let mut decoded = decoded.into_iter().peekable();
        for (slot, &pos) in out.iter_mut().zip(positions) {
            if slot.is_none() && decoded.peek().is_some_and(|(p, _)| *p == pos) {
                if let Some((_, event)) = decoded.next() {
                    self.shared[slot_of(pos)] = Some((pos, Arc::downgrade(&event)));
                    *slot = Some(event);
                }
            }
        }
        out.into_iter().flatten().collect()
    }

    /// Matching events from id `from` on (all when `None`), shared, oldest first.
    pub(crate) fn shared(
        &mut self,
        filter: &EventFilter,
        from: Option<EventId>,
    ) -> Vec<Arc<Event>> {
        let start = self.start_of(from);
        let positions = self.positions(&mut StoreFilter::new(filter), start);
        self.share(&positions)
    }

    /// Matching events with ids in `from..=until`, shared, oldest first, at most `limit` of them; reads
    /// no further than it needs to.
    pub(crate) fn page(
        &mut self,
        filter: &EventFilter,
        from: EventId,
        until: EventId,
        limit: usize,
    ) -> Vec<Arc<Event>> {
        let start = self.store.lower_bound_id(from).max(self.store.first_pos());
        let end = match until.checked_add(1) {
            Some(after) => self.store.lower_bound_id(after),
            None => self.store.end_pos(),
        };
        let mut positions = Vec::with_capacity(limit.min(1024));
        if start < end {
            let _ = self.store.scan(
                &mut StoreFilter::new(filter),
                start..end,
                Order::OldestFirst,
                limit,
                &mut positions,
            );
        }
        self.share(&positions)
    }

    /// Matching events, owned copies, oldest first.
    pub(crate) fn owned(&self, filter: &EventFilter) -> Vec<Event> {
        let start = self.start_of(filter.min_id());
        let positions = self.positions(&mut StoreFilter::new(filter), start);
        let mut out = Vec::with_capacity(positions.len());
        self.store.for_each(positions, |pos, parts| {
            let event = match cached(&self.shared, pos) {
                Some(shared) => Ok(Event::clone(&shared)),
                None => parts.to_event(),
            };
            if let Ok(event) = event {
                out.push(event);
            }
        });
        out
    }

    /// The last `n` matching events, shared, oldest first.
    pub(crate) fn last(&mut self, filter: &EventFilter, n: usize) -> Vec<Arc<Event>> {
        let mut positions = Vec::new();
        let range = self.store.range();
        let _ = self.store.scan(
            &mut StoreFilter::new(filter),
            range,
            Order::NewestFirst,
            n,
            &mut positions,
        );
        positions.reverse();
        self.share(&positions)
    }

    /// Matching events stamped at or after `since`, shared, oldest first.
    pub(crate) fn since_time(
        &mut self,
        filter: &EventFilter,
        since: SystemTime,
    ) -> Vec<Arc<Event>> {
        let mut compiled = StoreFilter::new(filter).at_or_after(since);
        let positions = self.positions(&mut compiled, self.store.first_pos());
        self.share(&positions)
    }
}

fn slot_of(pos: Pos) -> usize {
    (pos % SHARED_CACHE as Pos) as usize
}

/// The shared event at `pos`, if it is remembered and still held by someone.
fn cached(cache: &[Remembered], pos: Pos) -> Option<Arc<Event>> {
    match cache.get(slot_of(pos)) {
        Some(Some((at, event))) if *at == pos => event.upgrade(),
        _ => None,
    }
}
