//! The bus's history ring: the newest events as shared [`Arc`]s, older ones packed.
//!
//! Each slot carries 32-bit hashes of its event's type and resource, so a query whose type or resource
//! globs are exact skips non-matching slots without touching the events. The newest `hot` events are
//! kept as the same `Arc<Event>` subscribers received (zero-copy replay); past that, events are packed:
//! the data serialized to compact JSON bytes and the type and resource strings shared through an
//! interner. A packed event takes about a fifth of the memory of a live one and is decoded when a query
//! or a replay reaches it. Packing is done in batches by publishers, outside the bus lock.

use super::event::{Event, EventId};
use super::filter::EventFilter;
use rustc_hash::{FxHashMap, FxHasher};
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::SystemTime;

/// Events packed per batch.
pub(crate) const PACK_BATCH: usize = 256;

/// 32-bit hash of a type or resource, never 0 (0 means "no resource").
pub(crate) fn short_hash(text: &str) -> u32 {
    let mut hasher = FxHasher::default();
    text.hash(&mut hasher);
    let h = hasher.finish();
    ((h >> 32) as u32 ^ h as u32) | 1
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
    Shared(Arc<Event>),
    Packed(Box<Packed>),
}

pub(crate) struct Entry {
    type_hash: u32,
    resource_hash: u32,
    slot: Slot,
}

impl Entry {
    fn id(&self) -> EventId {
        match &self.slot {
            Slot::Shared(e) => e.id,
            Slot::Packed(p) => p.id,
        }
    }

    fn timestamp(&self) -> SystemTime {
        match &self.slot {
            Slot::Shared(e) => e.timestamp,
            Slot::Packed(p) => p.timestamp,
        }
    }

    fn shared(&self) -> Arc<Event> {
        match &self.slot {
            Slot::Shared(e) => Arc::clone(e),
            Slot::Packed(p) => Arc::new(p.unpack()),
        }
    }

    fn owned(&self) -> Event {
        match &self.slot {
            Slot::Shared(e) => Event::clone(e),
            Slot::Packed(p) => p.unpack(),
        }
    }
}

/// What a query can rule out from a slot's hashes alone.
pub(crate) struct Prefilter {
    types: Option<Vec<u32>>,
    resources: Option<Vec<u32>>,
}

impl Prefilter {
    pub(crate) fn new(filter: &EventFilter) -> Self {
        let (types, resources) = filter.exact_globs();
        Self {
            types: types.map(|t| t.iter().map(|s| short_hash(s)).collect()),
            resources: resources.map(|r| r.iter().map(|s| short_hash(s)).collect()),
        }
    }

    #[inline]
    fn may_match(&self, entry: &Entry) -> bool {
        self.types
            .as_ref()
            .is_none_or(|t| t.contains(&entry.type_hash))
            && self
                .resources
                .as_ref()
                .is_none_or(|r| entry.resource_hash != 0 && r.contains(&entry.resource_hash))
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
    entries: VecDeque<Entry>,
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
        Self {
            entries: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity,
            hot: hot.max(PACK_BATCH),
            packed_below: 1,
            packing: false,
            packed: 0,
            interner: Interner::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The oldest id held, if any.
    pub(crate) fn first_id(&self) -> Option<EventId> {
        self.entries.front().map(Entry::id)
    }

    /// Appends `event`; returns the evicted oldest event (to drop outside the lock) and, when enough
    /// events have aged past the hot part, a batch to pack.
    pub(crate) fn push(&mut self, event: &Arc<Event>) -> (Option<Slot>, Option<PackJob>) {
        if self.capacity == 0 {
            return (None, None);
        }
        let evicted = if self.entries.len() >= self.capacity {
            self.entries.pop_front().map(|e| e.slot)
        } else {
            None
        };
        if matches!(evicted, Some(Slot::Packed(_))) {
            self.packed -= 1;
        }
        self.entries.push_back(Entry {
            type_hash: short_hash(&event.event_type),
            resource_hash: event.resource_id.as_deref().map_or(0, short_hash),
            slot: Slot::Shared(Arc::clone(event)),
        });
        (evicted, self.pack_job())
    }

    fn pack_job(&mut self) -> Option<PackJob> {
        if self.packing || self.entries.len() <= self.hot.saturating_add(PACK_BATCH) {
            return None;
        }
        let first = self.first_id()?;
        let start = usize::try_from(self.packed_below.saturating_sub(first)).ok()?;
        let cold_end = self.entries.len() - self.hot;
        if start + PACK_BATCH > cold_end {
            return None;
        }
        let events: Vec<Arc<Event>> = self
            .entries
            .range(start..start + PACK_BATCH)
            .filter_map(|e| match &e.slot {
                Slot::Shared(event) => Some(Arc::clone(event)),
                Slot::Packed(_) => None,
            })
            .collect();
        self.packing = true;
        self.packed_below = first + (start + PACK_BATCH) as EventId;
        Some(PackJob { events })
    }

    /// Puts a packed batch in place of the shared slots it came from, where they are still held.
    pub(crate) fn store(&mut self, batch: PackedBatch) -> Vec<Arc<Event>> {
        self.packing = false;
        let mut released = Vec::with_capacity(batch.items.len());
        let Some(first) = self.first_id() else {
            return released;
        };
        for (event, data) in batch.items {
            let Ok(at) = usize::try_from(event.id.wrapping_sub(first)) else {
                continue;
            };
            let Some(entry) = self.entries.get_mut(at) else {
                continue;
            };
            if !matches!(&entry.slot, Slot::Shared(e) if Arc::ptr_eq(e, &event)) {
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
            let old = std::mem::replace(&mut entry.slot, Slot::Packed(Box::new(packed)));
            self.packed += 1;
            if let Slot::Shared(e) = old {
                released.push(e);
            }
            released.push(event);
        }
        released
    }

    /// Forgets everything; returns what to drop outside the lock.
    pub(crate) fn clear(&mut self) -> VecDeque<Entry> {
        self.packing = false;
        self.packed = 0;
        std::mem::take(&mut self.entries)
    }

    /// Index of the first slot with id `from` or later (slots hold consecutive ids).
    fn index_of(&self, from: EventId) -> usize {
        self.first_id().map_or(0, |first| {
            usize::try_from(from.saturating_sub(first)).unwrap_or(usize::MAX)
        })
    }

    fn candidates<'a>(
        &'a self,
        filter: &'a EventFilter,
        prefilter: &'a Prefilter,
        from: usize,
    ) -> impl DoubleEndedIterator<Item = &'a Entry> + 'a {
        self.entries
            .range(from.min(self.entries.len())..)
            .filter(move |e| prefilter.may_match(e))
            .filter(move |e| match &e.slot {
                Slot::Shared(event) => filter.matches(event),
                Slot::Packed(_) => true,
            })
    }

    /// Matching events from id `from` on (all when `None`), shared, oldest first.
    pub(crate) fn shared(&self, filter: &EventFilter, from: Option<EventId>) -> Vec<Arc<Event>> {
        let prefilter = Prefilter::new(filter);
        let start = from.map_or(0, |id| self.index_of(id));
        self.candidates(filter, &prefilter, start)
            .filter_map(|e| {
                let event = e.shared();
                (matches!(e.slot, Slot::Shared(_)) || filter.matches(&event)).then_some(event)
            })
            .collect()
    }

    /// Matching events, owned copies, oldest first.
    pub(crate) fn owned(&self, filter: &EventFilter) -> Vec<Event> {
        let prefilter = Prefilter::new(filter);
        let start = filter.min_id().map_or(0, |id| self.index_of(id));
        self.candidates(filter, &prefilter, start)
            .filter_map(|e| {
                let event = e.owned();
                (matches!(e.slot, Slot::Shared(_)) || filter.matches(&event)).then_some(event)
            })
            .collect()
    }

    /// The last `n` matching events, shared, oldest first.
    pub(crate) fn last(&self, filter: &EventFilter, n: usize) -> Vec<Arc<Event>> {
        let prefilter = Prefilter::new(filter);
        let mut out: Vec<Arc<Event>> = self
            .candidates(filter, &prefilter, 0)
            .rev()
            .filter_map(|e| {
                let event = e.shared();
                (matches!(e.slot, Slot::Shared(_)) || filter.matches(&event)).then_some(event)
            })
            .take(n)
            .collect();
        out.reverse();
        out
    }

    /// Matching events stamped at or after `since`, shared, oldest first.
    pub(crate) fn since_time(&self, filter: &EventFilter, since: SystemTime) -> Vec<Arc<Event>> {
        let prefilter = Prefilter::new(filter);
        self.candidates(filter, &prefilter, 0)
            .filter(|e| e.timestamp() >= since)
            .filter_map(|e| {
                let event = e.shared();
                (matches!(e.slot, Slot::Shared(_)) || filter.matches(&event)).then_some(event)
            })
            .collect()
    }

    /// How many slots are packed.
    pub(crate) fn packed_len(&self) -> usize {
        self.packed
    }
}
