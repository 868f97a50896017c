//! The bus's history ring.
//!
//! Three forms of kept event: the event itself, moved in by a publish that no subscriber received (no
//! allocation at all); the shared `Arc<Event>` subscribers received (an event a replay or `history_arc`
//! asks for is turned into one, once); and, past the newest `hot` events, packed: the data serialized to
//! compact JSON and the type and resource strings shared through an interner, about a fifth of the memory,
//! decoded when a query or replay reaches it. Packing is done in batches by publishers, outside the bus
//! lock. A separate array of 32-bit type and resource hashes lets a query with exact type or resource
//! globs skip other events without reading them.

use super::event::{Event, EventId};
use super::filter::EventFilter;
use rustc_hash::{FxHashMap, FxHasher};
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Events packed per batch.
pub(crate) const PACK_BATCH: usize = 256;

/// 32-bit hash of a type or resource, never 0 (0 means "no resource").
pub(crate) fn short_hash(text: &str) -> u32 {
    let mut hasher = FxHasher::default();
    text.hash(&mut hasher);
    let h = hasher.finish();
    ((h >> 32) as u32 ^ h as u32) | 1
}

/// The (type, resource) hashes of an event, computed by the publisher before it takes the lock.
#[derive(Clone, Copy)]
pub(crate) struct Hashes {
    event_type: u32,
    resource: u32,
}

impl Hashes {
    pub(crate) fn of(event: &Event) -> Self {
        Self {
            event_type: short_hash(&event.event_type),
            resource: event.resource_id.as_deref().map_or(0, short_hash),
        }
    }
}

/// An event stored compactly.
pub(crate) struct Packed {
    id: EventId,
    timestamp: SystemTime,
    event_type: Arc<str>,
    resource_id: Option<Arc<str>>,
    data: Box<[u8]>,
}

impl Packed {
    fn unpack(&self) -> Event {
        Event {
            id: self.id,
            timestamp: self.timestamp,
            event_type: self.event_type.to_string(),
            resource_id: self.resource_id.as_deref().map(str::to_owned),
            // The bytes were written by serde_json from a Value, so they read back; Null is unreachable.
            data: serde_json::from_slice(&self.data).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// One kept event.
pub(crate) enum Slot {
    Owned(Event),
    Shared(Arc<Event>),
    Packed(Packed),
}

impl Slot {
    fn id(&self) -> EventId {
        match self {
            Slot::Owned(e) => e.id,
            Slot::Shared(e) => e.id,
            Slot::Packed(p) => p.id,
        }
    }

    fn timestamp(&self) -> SystemTime {
        match self {
            Slot::Owned(e) => e.timestamp,
            Slot::Shared(e) => e.timestamp,
            Slot::Packed(p) => p.timestamp,
        }
    }

    /// The event if it can be read without decoding.
    fn live(&self) -> Option<&Event> {
        match self {
            Slot::Owned(e) => Some(e),
            Slot::Shared(e) => Some(e),
            Slot::Packed(_) => None,
        }
    }

    /// The event shared: an owned one becomes shared in place (one allocation, once); a packed one is
    /// decoded into a new `Arc` (history keeps it packed).
    fn share(&mut self) -> Arc<Event> {
        match self {
            Slot::Shared(e) => Arc::clone(e),
            Slot::Packed(p) => Arc::new(p.unpack()),
            Slot::Owned(e) => {
                let shared = Arc::new(std::mem::replace(e, placeholder()));
                *self = Slot::Shared(Arc::clone(&shared));
                shared
            }
        }
    }

    fn to_owned_event(&self) -> Event {
        match self {
            Slot::Owned(e) => e.clone(),
            Slot::Shared(e) => Event::clone(e),
            Slot::Packed(p) => p.unpack(),
        }
    }
}

/// An event that owns no heap memory, to stand in while a slot's event is moved out.
fn placeholder() -> Event {
    Event {
        id: 0,
        timestamp: UNIX_EPOCH,
        event_type: String::new(),
        resource_id: None,
        data: serde_json::Value::Null,
    }
}

/// What a query can rule out from a slot's hashes alone.
struct Prefilter {
    types: Option<Vec<u32>>,
    resources: Option<Vec<u32>>,
}

impl Prefilter {
    fn new(filter: &EventFilter) -> Self {
        let (types, resources) = filter.exact_globs();
        Self {
            types: types.map(|t| t.iter().map(|s| short_hash(s)).collect()),
            resources: resources.map(|r| r.iter().map(|s| short_hash(s)).collect()),
        }
    }

    #[inline]
    fn may_match(&self, hashes: &Hashes) -> bool {
        self.types
            .as_ref()
            .is_none_or(|t| t.contains(&hashes.event_type))
            && self
                .resources
                .as_ref()
                .is_none_or(|r| hashes.resource != 0 && r.contains(&hashes.resource))
    }
}

/// Shares equal type and resource strings among packed events; forgets strings no event uses.
#[derive(Default)]
struct Interner {
    strings: FxHashMap<Arc<str>, ()>,
    prune_at: usize,
}

impl Interner {
    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some((s, ())) = self.strings.get_key_value(text) {
            return Arc::clone(s);
        }
        if self.strings.len() >= self.prune_at {
            self.strings.retain(|s, ()| Arc::strong_count(s) > 1);
            self.prune_at = (self.strings.len() * 2).max(1024);
        }
        let s: Arc<str> = Arc::from(text);
        self.strings.insert(Arc::clone(&s), ());
        s
    }
}

/// A batch of events a publisher packs outside the lock.
pub(crate) struct PackJob {
    events: Vec<Arc<Event>>,
}

impl PackJob {
    /// Serializes each event's data (the slow part), outside the bus lock.
    pub(crate) fn run(self) -> PackedBatch {
        PackedBatch {
            items: self
                .events
                .into_iter()
                .map(|e| {
                    let bytes = serde_json::to_vec(&e.data).unwrap_or_else(|_| b"null".to_vec());
                    (e, bytes.into_boxed_slice())
                })
                .collect(),
        }
    }
}

/// Serialized events ready to replace their shared slots.
pub(crate) struct PackedBatch {
    items: Vec<(Arc<Event>, Box<[u8]>)>,
}

pub(crate) struct History {
    hashes: VecDeque<Hashes>,
    slots: VecDeque<Slot>,
    capacity: usize,
    hot: usize,
    /// Ids below this are packed (or gone); the next batch starts here.
    packed_below: EventId,
    packing: bool,
    packed: usize,
    interner: Interner,
}

impl History {
    pub(crate) fn new(capacity: usize, hot: usize) -> Self {
        let initial = capacity.min(1 << 16);
        Self {
            hashes: VecDeque::with_capacity(initial),
            slots: VecDeque::with_capacity(initial),
            capacity,
            hot: hot.max(PACK_BATCH),
            packed_below: 1,
            packing: false,
            packed: 0,
            interner: Interner::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// How many slots are packed.
    pub(crate) fn packed_len(&self) -> usize {
        self.packed
    }

    /// The oldest id held, if any.
    pub(crate) fn first_id(&self) -> Option<EventId> {
        self.slots.front().map(Slot::id)
    }

    /// Appends an event, dropping the oldest when full (under the bus lock: publishers on other threads
    /// would otherwise contend for the allocator's lock instead when they free it); returns a batch of
    /// aged events to pack after releasing the lock, if one is due.
    pub(crate) fn push(&mut self, slot: Slot, hashes: Hashes) -> Option<PackJob> {
        if self.capacity == 0 {
            return None;
        }
        if self.slots.len() >= self.capacity {
            self.hashes.pop_front();
            if let Some(Slot::Packed(_)) = self.slots.pop_front() {
                self.packed -= 1;
            }
        }
        self.hashes.push_back(hashes);
        self.slots.push_back(slot);
        self.pack_job()
    }

    fn pack_job(&mut self) -> Option<PackJob> {
        if self.packing || self.slots.len() <= self.hot.saturating_add(PACK_BATCH) {
            return None;
        }
        let first = self.first_id()?;
        let start = usize::try_from(self.packed_below.saturating_sub(first)).ok()?;
        let cold_end = self.slots.len() - self.hot;
        if start + PACK_BATCH > cold_end {
            return None;
        }
        let events: Vec<Arc<Event>> = self
            .slots
            .range_mut(start..start + PACK_BATCH)
            .filter(|slot| !matches!(slot, Slot::Packed(_)))
            .map(Slot::share)
            .collect();
        self.packing = true;
        self.packed_below = first + (start + PACK_BATCH) as EventId;
        Some(PackJob { events })
    }

    /// Puts a packed batch in place of the shared slots it came from, where they are still held;
    /// returns the events to drop outside the lock.
    pub(crate) fn store(&mut self, batch: PackedBatch) -> Vec<Arc<Event>> {
        self.packing = false;
        let mut released = Vec::with_capacity(batch.items.len() * 2);
        let Some(first) = self.first_id() else {
            return released;
        };
        for (event, data) in batch.items {
            let Ok(at) = usize::try_from(event.id.wrapping_sub(first)) else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(at) else {
                continue;
            };
            if !matches!(&*slot, Slot::Shared(e) if Arc::ptr_eq(e, &event)) {
                continue;
            }
            let packed = Packed {
                id: event.id,
                timestamp: event.timestamp,
                event_type: self.interner.intern(&event.event_type),
                resource_id: event
                    .resource_id
                    .as_deref()
                    .map(|r| self.interner.intern(r)),
                data,
            };
            if let Slot::Shared(old) = std::mem::replace(slot, Slot::Packed(packed)) {
                released.push(old);
            }
            self.packed += 1;
            released.push(event);
        }
        released
    }

    /// Forgets everything; returns what to drop outside the lock.
    pub(crate) fn clear(&mut self) -> VecDeque<Slot> {
        self.packing = false;
        self.packed = 0;
        self.hashes.clear();
        std::mem::take(&mut self.slots)
    }

    /// Index of the first slot with id `from` or later (slots hold consecutive ids).
    fn index_of(&self, from: EventId) -> usize {
        self.first_id().map_or(0, |first| {
            usize::try_from(from.saturating_sub(first)).unwrap_or(usize::MAX)
        })
    }

    /// Indices from `start` whose hashes and (for live events) contents match; packed slots that pass
    /// the hashes are checked by the caller after decoding.
    fn candidates<'a>(
        &'a self,
        filter: &'a EventFilter,
        start: usize,
    ) -> impl DoubleEndedIterator<Item = usize> + 'a {
        let prefilter = Prefilter::new(filter);
        let start = start.min(self.slots.len());
        (start..self.slots.len()).filter(move |&i| {
            prefilter.may_match(&self.hashes[i])
                && self.slots[i].live().is_none_or(|e| filter.matches(e))
        })
    }

    fn share_matching(&mut self, filter: &EventFilter, i: usize) -> Option<Arc<Event>> {
        let packed = matches!(self.slots[i], Slot::Packed(_));
        let event = self.slots[i].share();
        (!packed || filter.matches(&event)).then_some(event)
    }

    /// Matching events from id `from` on (all when `None`), shared, oldest first.
    pub(crate) fn shared(
        &mut self,
        filter: &EventFilter,
        from: Option<EventId>,
    ) -> Vec<Arc<Event>> {
        let start = from.map_or(0, |id| self.index_of(id));
        let hits: Vec<usize> = self.candidates(filter, start).collect();
        hits.into_iter()
            .filter_map(|i| self.share_matching(filter, i))
            .collect()
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
        let mut out = Vec::with_capacity(limit.min(1024));
        let prefilter = Prefilter::new(filter);
        let mut i = self.index_of(from);
        while i < self.slots.len() && out.len() < limit && self.slots[i].id() <= until {
            if prefilter.may_match(&self.hashes[i])
                && self.slots[i].live().is_none_or(|e| filter.matches(e))
            {
                if let Some(event) = self.share_matching(filter, i) {
                    out.push(event);
                }
            }
            i += 1;
        }
        out
    }

    /// Matching events, owned copies, oldest first.
    pub(crate) fn owned(&self, filter: &EventFilter) -> Vec<Event> {
        let start = filter.min_id().map_or(0, |id| self.index_of(id));
        self.candidates(filter, start)
            .filter_map(|i| {
                let slot = &self.slots[i];
                let event = slot.to_owned_event();
                (slot.live().is_some() || filter.matches(&event)).then_some(event)
            })
            .collect()
    }

    /// The last `n` matching events, shared, oldest first.
    pub(crate) fn last(&mut self, filter: &EventFilter, n: usize) -> Vec<Arc<Event>> {
        let hits: Vec<usize> = self.candidates(filter, 0).rev().collect();
        let mut out = Vec::with_capacity(n.min(hits.len()));
        for i in hits {
            if out.len() >= n {
                break;
            }
            if let Some(event) = self.share_matching(filter, i) {
                out.push(event);
            }
        }
        out.reverse();
        out
    }

    /// Matching events stamped at or after `since`, shared, oldest first.
    pub(crate) fn since_time(
        &mut self,
        filter: &EventFilter,
        since: SystemTime,
    ) -> Vec<Arc<Event>> {
        let hits: Vec<usize> = self
            .candidates(filter, 0)
            .filter(|&i| self.slots[i].timestamp() >= since)
            .collect();
        hits.into_iter()
            .filter_map(|i| self.share_matching(filter, i))
            .collect()
    }
}
