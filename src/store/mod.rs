//! The compact event store: the one structure that keeps events for the bus's history (and, in time,
//! for the monitor's log, a server's data dir and recordings). It has no terminal, socket or runtime
//! dependency.
//!
//! ## Layout
//!
//! Every pushed event gets a [`Pos`], the store's append counter; the store is addressed by position.
//! Events live in blocks of up to [`StoreConfig::block_events`] consecutive positions. A block keeps
//! one fixed-size row per event, column by column: the event's id (8 bytes), its time in
//! microseconds (8), its type and resource as interned ids (4 + 4) and where its payload ends (4),
//! 28 bytes in all. The payload is the event's `data` as compact JSON (the bytes
//! `serde_json::to_writer(&event.data)` writes), back to back in the block. Type and resource strings
//! are kept once each, with a count of the rows using them, and forgotten with the last one, so a
//! resource id per job does not make the table grow without end.
//!
//! The newest block takes appends. A full block (by rows, or by [`StoreConfig::block_bytes`] of
//! payload) is sealed, and once it is older than the newest [`StoreConfig::hot_events`] its payload is
//! compressed with LZ4 as a whole. [`Store::push`] hands the compression back as a [`CompressJob`]
//! for the caller to run without holding whatever lock guards the store, and to return with
//! [`Store::install`]; the block stays readable meanwhile. The buffers of a block that is freed are
//! reused for the next one, so a full store evicting as it appends allocates nothing for its blocks.
//!
//! On events like a render farm's (task lifecycle, log lines, MCP progress, file transfers: about
//! 190 bytes of NDJSON each, 80 of them data), LZ4 keeps the data in 24 bytes per event against
//! zstd's 14 (level 1), but compresses about 1.5 times and decompresses about twice as fast, and
//! builds without a C compiler: a publisher pays for compression, and a `text:` search decompresses
//! everything it searches, so LZ4 it is. With the rows that is about 55 bytes per event (`cargo bench
//! --bench store` measures it).
//!
//! ## Bounds
//!
//! [`StoreConfig::max_events`] is exact: the store holds the last `max_events` positions pushed,
//! whatever memory the evicted ones still occupy until their block goes. [`StoreConfig::max_bytes`]
//! bounds the memory really held (blocks, strings, buffers): when it is passed the oldest whole
//! blocks go, so an event larger than the whole budget is not kept at all, and one huge event costs
//! its own size once, never once per slot.
//!
//! ## Reading
//!
//! Events are decoded on demand: [`Store::event`] gives an owned [`Event`], [`Store::with_event`]
//! the [`EventParts`] without parsing the data, [`Store::write_json`] the event's JSON form straight
//! from the row and payload. The last few decompressed blocks are cached, so reading the rows on a
//! screen decompresses each block once. [`Store::scan`] finds the positions an [`EventFilter`](crate::EventFilter)
//! matches, in slices, oldest or newest first; see [`StoreFilter`].

mod block;
#[cfg(unix)]
pub mod disk;
mod filter;
mod intern;
mod json;
mod scan;
#[cfg(test)]
mod tests;
mod text;

pub use block::{CompressJob, Compressed};
pub use filter::StoreFilter;
pub use json::EventParts;
pub use scan::Order;

use crate::event_stream::{Event, EventId};
use block::{Block, Payload, NO_RESOURCE};
use intern::Interner;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A position in a store: the number of events pushed before this one.
pub type Pos = u64;

/// The default of [`StoreConfig::max_bytes`]: 256 MiB.
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

/// The largest payload a block holds (row offsets are 32-bit).
const MAX_BLOCK_PAYLOAD: usize = u32::MAX as usize;

/// Decompressed blocks kept for reads by position.
const CACHED_BLOCKS: usize = 4;

/// Settings of a [`Store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// How many of the newest events to keep; 0 keeps none.
    pub max_events: usize,
    /// How many bytes the store may hold (default [`DEFAULT_MAX_BYTES`]): past that the oldest blocks
    /// go, whole.
    pub max_bytes: usize,
    /// Events per block (at least 1). [`StoreConfig::new`] picks a sixteenth of `max_events`, rounded
    /// to a power of two, from 64 to 1024: eviction frees memory a block at a time, so a block is a
    /// small part of the whole.
    pub block_events: usize,
    /// A block is sealed once its payload reaches this many bytes (default 64 KiB), whatever its count.
    pub block_bytes: usize,
    /// Blocks holding any of the newest `hot_events` events stay uncompressed (default 0: each block is
    /// compressed as soon as it is sealed; `usize::MAX`: never).
    pub hot_events: usize,
}

impl StoreConfig {
    /// Settings for keeping `max_events` events, everything else at its default.
    pub fn new(max_events: usize) -> Self {
        Self {
            max_events,
            max_bytes: DEFAULT_MAX_BYTES,
            block_events: (max_events / 16).next_power_of_two().clamp(64, 1024),
            block_bytes: 64 << 10,
            hot_events: 0,
        }
    }
}

impl Default for StoreConfig {
    /// Settings for a million events.
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

/// Why an event could not be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The event's data is 4 GiB or more as JSON.
    #[error("event data of {0} bytes is too large to keep (the limit is 4 GiB)")]
    TooLarge(usize),
    /// Every 32-bit id of the type or resource table is in use.
    #[error("too many distinct {0} strings kept at once")]
    TooManyStrings(&'static str),
}

/// What [`Store::push`] did.
#[derive(Debug)]
#[must_use = "a compression job must be run and installed, or the block stays uncompressed"]
pub struct Pushed {
    /// The event's position.
    pub pos: Pos,
    /// A sealed block to compress, if one is due: [`CompressJob::run`] it (outside any lock that
    /// guards the store), then [`Store::install`] the result.
    pub job: Option<CompressJob>,
}

/// Figures of a store, read with [`Store::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Events held.
    pub events: usize,
    /// Bytes held: blocks, interned strings and buffers (what [`StoreConfig::max_bytes`] bounds).
    pub bytes: usize,
    /// Blocks held.
    pub blocks: usize,
    /// Events whose block is compressed.
    pub compressed_events: usize,
    /// Distinct event types held.
    pub types: usize,
    /// Distinct resource ids held.
    pub resources: usize,
}

/// The blocks [`Store::clear`] took out; drop it where freeing them is convenient (outside a lock).
#[derive(Default)]
pub struct Cleared {
    _blocks: VecDeque<Block>,
    _types: Interner,
    _resources: Interner,
}

impl std::fmt::Debug for Cleared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cleared")
            .field("blocks", &self._blocks.len())
            .finish()
    }
}

/// The compact event store. See [the module docs](self).
///
/// ```
/// use ipckit::store::{Order, Store, StoreConfig, StoreFilter};
/// use ipckit::{Event, EventFilter};
///
/// let mut store = Store::new(StoreConfig::new(1000));
/// for i in 0..10u64 {
///     let mut event = Event::with_resource("task.progress", &format!("job-{}", i % 3), serde_json::json!({ "frame": i }));
///     event.id = i + 1;
///     let pushed = store.push_event(&event)?;
///     if let Some(job) = pushed.job {
///         store.install(job.run());
///     }
/// }
/// let mut filter = StoreFilter::new(&EventFilter::parse("res:job-1 text:frame").unwrap());
/// let mut hits = Vec::new();
/// store.scan(&mut filter, store.range(), Order::NewestFirst, 2, &mut hits);
/// assert_eq!(hits, [7, 4]);
/// assert_eq!(store.event(7).map(|e| e.data["frame"].clone()), Some(serde_json::json!(7)));
/// # Ok::<(), ipckit::store::StoreError>(())
/// ```
pub struct Store {
    config: StoreConfig,
    /// Distinguishes stores, for the caches of a [`StoreFilter`].
    uid: u64,
    /// In position order; only the last may be open.
    blocks: VecDeque<Block>,
    /// The oldest position held.
    first: Pos,
    /// The next position to give.
    end: Pos,
    next_serial: u64,
    /// Serial of the next sealed block to hand out for compression.
    compress_next: u64,
    types: Interner,
    resources: Interner,
    /// Sum of the blocks' footprints.
    block_bytes: usize,
    /// The buffers of the last block freed, for the next one.
    recycled: Option<Block>,
    /// For [`Store::push_event`].
    encode: Vec<u8>,
    /// The last blocks decompressed for reads by position, newest use first.
    cache: Mutex<Vec<(u64, Arc<[u8]>)>>,
}

/// A block's uncompressed payload, borrowed or shared from the cache.
pub(crate) enum Bytes<'a> {
    Borrowed(&'a [u8]),
    Shared(Arc<[u8]>),
}

impl Deref for Bytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Shared(b) => b,
        }
    }
}

impl Store {
    /// An empty store.
    pub fn new(mut config: StoreConfig) -> Self {
        static NEXT_UID: AtomicU64 = AtomicU64::new(0);
        config.block_events = config.block_events.max(1);
        config.block_bytes = config.block_bytes.clamp(1, MAX_BLOCK_PAYLOAD);
        Self {
            config,
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            blocks: VecDeque::new(),
            first: 0,
            end: 0,
            next_serial: 0,
            compress_next: 0,
            types: Interner::default(),
            resources: Interner::default(),
            block_bytes: 0,
            recycled: None,
            encode: Vec::new(),
            cache: Mutex::new(Vec::new()),
        }
    }

    /// The store's settings.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Events held.
    pub fn len(&self) -> usize {
        usize::try_from(self.end - self.first).unwrap_or(usize::MAX)
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.first == self.end
    }

    /// The oldest position held (the next to be given when the store is empty).
    pub fn first_pos(&self) -> Pos {
        self.first
    }

    /// The position the next push gets.
    pub fn end_pos(&self) -> Pos {
        self.end
    }

    /// The positions held: `first_pos()..end_pos()`.
    pub fn range(&self) -> Range<Pos> {
        self.first..self.end
    }

    /// Appends `event` (its data serialized here; see [`Store::push`]).
    ///
    /// # Errors
    ///
    /// As [`Store::push`].
    pub fn push_event(&mut self, event: &Event) -> Result<Pushed, StoreError> {
        let mut buf = std::mem::take(&mut self.encode);
        let pushed = self.push(EventParts::of(event, &mut buf));
        // A buffer grown by one huge event is not kept.
        if buf.capacity() <= self.config.block_bytes.saturating_mul(2) {
            self.encode = buf;
        }
        pushed
    }

    /// Appends an event, evicting the oldest ones past the bounds. The time is kept to the microsecond.
    /// When a sealed block is due for compression the job comes back in [`Pushed::job`].
    ///
    /// # Errors
    ///
    /// The event is not kept (and gets no position) when its data is 4 GiB or more, or when all of the
    /// 4 billion ids for types or resources are taken.
    pub fn push(&mut self, parts: EventParts<'_>) -> Result<Pushed, StoreError> {
        let pos = self.end;
        if parts.data.len() >= MAX_BLOCK_PAYLOAD {
            return Err(StoreError::TooLarge(parts.data.len()));
        }
        if self.config.max_events == 0 {
            self.end += 1;
            self.first = self.end;
            return Ok(Pushed { pos, job: None });
        }
        if let Some(open) = self.blocks.back().filter(|b| b.is_open()) {
            // Sealed before it would pass its size, so its buffer keeps the size it had.
            let overflows =
                open.len() > 0 && open.raw_len() + parts.data.len() > self.config.block_bytes;
            if open.len() >= self.config.block_events || overflows {
                self.seal_open();
            }
        }
        let event_type = self
            .types
            .acquire(parts.event_type)
            .ok_or(StoreError::TooManyStrings("type"))?;
        let resource = match parts.resource {
            None => NO_RESOURCE,
            Some(resource) => match self.resources.acquire(resource) {
                Some(sym) => sym,
                None => {
                    self.types.release(event_type);
                    return Err(StoreError::TooManyStrings("resource"));
                }
            },
        };
        if !self.blocks.back().is_some_and(Block::is_open) {
            let block = match self.recycled.take() {
                Some(old) => old.reuse(self.next_serial, pos, self.config.block_events),
                None => Block::new(self.next_serial, pos, self.config.block_events),
            };
            self.next_serial += 1;
            self.block_bytes += block.footprint();
            self.blocks.push_back(block);
        }
        let Some(open) = self.blocks.back_mut() else {
            // Unreachable: a block was just made if there was none.
            self.types.release(event_type);
            if resource != NO_RESOURCE {
                self.resources.release(resource);
            }
            return Err(StoreError::TooLarge(parts.data.len()));
        };
        // Only the payload buffer can grow: the columns were made with room for a block.
        let before = open.payload_capacity();
        open.push(
            parts.id,
            parts.time_micros,
            event_type,
            resource,
            parts.data,
        );
        let full =
            open.len() >= self.config.block_events || open.raw_len() >= self.config.block_bytes;
        self.block_bytes = self.block_bytes - before + open.payload_capacity();
        self.end += 1;
        if full {
            self.seal_open();
        }
        self.evict_to_bounds();
        Ok(Pushed {
            pos,
            job: self.next_job(),
        })
    }

    /// Finishes a compression job: the block, if still held, keeps the compressed bytes (or, if they
    /// are no smaller, its bytes as they were).
    pub fn install(&mut self, done: Compressed) {
        let Some(front) = self.blocks.front() else {
            return;
        };
        let Some(at) = done
            .serial
            .checked_sub(front.serial)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return;
        };
        let Some(block) = self.blocks.get_mut(at) else {
            return;
        };
        if !matches!(block.payload, Payload::Compressing(_)) {
            return;
        }
        let before = block.footprint();
        block.payload = if done.bytes.len() < done.raw.len() {
            Payload::Compressed(done.bytes)
        } else {
            Payload::Sealed(done.raw)
        };
        self.block_bytes = self.block_bytes - before + block.footprint();
    }

    /// Forgets every event; positions go on from where they were. Returns what was taken out, to be
    /// dropped where convenient.
    pub fn clear(&mut self) -> Cleared {
        self.first = self.end;
        self.compress_next = self.next_serial;
        self.block_bytes = 0;
        self.recycled = None;
        self.cache.lock().clear();
        let next_types = self.types.successor();
        let types = std::mem::replace(&mut self.types, next_types);
        let next_resources = self.resources.successor();
        let resources = std::mem::replace(&mut self.resources, next_resources);
        Cleared {
            _blocks: std::mem::take(&mut self.blocks),
            _types: types,
            _resources: resources,
        }
    }

    /// Figures of the store.
    pub fn stats(&self) -> StoreStats {
        let compressed_events = self
            .blocks
            .iter()
            .filter(|b| b.is_compressed())
            .map(|b| usize::try_from(b.end() - b.first.max(self.first)).unwrap_or(0))
            .sum();
        StoreStats {
            events: self.len(),
            bytes: self.bytes(),
            blocks: self.blocks.len(),
            compressed_events,
            types: self.types.len(),
            resources: self.resources.len(),
        }
    }

    /// Bytes held: blocks, interned strings and a freed block's buffers kept for reuse (not the few
    /// cached decompressed blocks, nor [`Store::push_event`]'s buffer for one event's data).
    pub fn bytes(&self) -> usize {
        self.block_bytes
            + self.types.bytes()
            + self.resources.bytes()
            + self.recycled.as_ref().map_or(0, Block::footprint)
    }

    /// The event at `pos`, decoded; `None` if `pos` is not held.
    pub fn event(&self, pos: Pos) -> Option<Event> {
        self.with_event(pos, |parts| parts.to_event().ok())
            .flatten()
    }

    /// The held events in `range`, decoded, oldest first (each block decompressed once).
    pub fn events(&self, range: Range<Pos>) -> Vec<Event> {
        let range = range.start.max(self.first)..range.end.min(self.end);
        let mut out =
            Vec::with_capacity(usize::try_from(range.end.saturating_sub(range.start)).unwrap_or(0));
        self.for_each(range, |_, parts| {
            if let Ok(event) = parts.to_event() {
                out.push(event);
            }
        });
        out
    }

    /// Calls `f` with the parts of the event at `pos` (its data still JSON bytes); `None` if `pos` is
    /// not held.
    pub fn with_event<R>(&self, pos: Pos, f: impl FnOnce(EventParts<'_>) -> R) -> Option<R> {
        let (block, i) = self.locate(pos)?;
        let payload = self.payload(block)?;
        Some(f(self.parts(block, i, &payload)?))
    }

    /// Writes the JSON form of the event at `pos` (byte for byte what `serde_json::to_writer` writes for
    /// the [`Event`]) to `out`; `Ok(false)` if `pos` is not held.
    ///
    /// # Errors
    ///
    /// What `out` returns.
    pub fn write_json<W: Write + ?Sized>(&self, pos: Pos, out: &mut W) -> io::Result<bool> {
        self.with_event(pos, |parts| parts.write_json(out))
            .transpose()
            .map(|done| done.is_some())
    }

    /// Calls `f` with each held position of `positions` (which must increase) and its event's parts,
    /// decompressing each block once.
    pub fn for_each(
        &self,
        positions: impl IntoIterator<Item = Pos>,
        mut f: impl FnMut(Pos, EventParts<'_>),
    ) {
        let mut current: Option<(usize, Bytes<'_>)> = None;
        for pos in positions {
            if pos < self.first || pos >= self.end {
                continue;
            }
            let at = self.blocks.partition_point(|b| b.end() <= pos);
            let Some(block) = self.blocks.get(at) else {
                continue;
            };
            if current.as_ref().is_none_or(|(held, _)| *held != at) {
                current = self.payload(block).map(|bytes| (at, bytes));
            }
            let Some((_, bytes)) = &current else {
                continue;
            };
            let i = usize::try_from(pos - block.first).unwrap_or(usize::MAX);
            if let Some(parts) = self.parts(block, i, bytes) {
                f(pos, parts);
            }
        }
    }

    /// The id of the event at `pos`.
    pub fn id_at(&self, pos: Pos) -> Option<EventId> {
        let (block, i) = self.locate(pos)?;
        block.ids.get(i).copied()
    }

    /// The time of the event at `pos`, in microseconds since the Unix epoch.
    pub fn time_micros_at(&self, pos: Pos) -> Option<i64> {
        let (block, i) = self.locate(pos)?;
        block.times.get(i).copied()
    }

    /// The first held position whose event has id `id` or greater (`end_pos()` if none), found by
    /// binary search: this assumes ids increase with position, as in a bus's history. Where they do
    /// not (a monitor's log across a bus restart, whose ids start again at 1) it answers for some
    /// place where the ids step over `id`, not necessarily the first.
    pub fn lower_bound_id(&self, id: EventId) -> Pos {
        let Some(first_id) = self.id_at(self.first) else {
            return self.end;
        };
        if id <= first_id {
            return self.first;
        }
        // Consecutive ids (a bus's history): one look.
        let guess = self.first.saturating_add(id - first_id);
        if self.id_at(guess) == Some(id) && self.id_at(guess - 1) < Some(id) {
            return guess;
        }
        let at = self
            .blocks
            .partition_point(|b| b.ids.last().is_some_and(|&last| last < id));
        let Some(block) = self.blocks.get(at) else {
            return self.end;
        };
        let live = usize::try_from(self.first.saturating_sub(block.first)).unwrap_or(0);
        let i = live + block.ids[live.min(block.len())..].partition_point(|&x| x < id);
        block.first + i as Pos
    }

    /// The position of the event with id `id`, under the assumption of [`Store::lower_bound_id`].
    pub fn find_id(&self, id: EventId) -> Option<Pos> {
        let pos = self.lower_bound_id(id);
        (self.id_at(pos) == Some(id)).then_some(pos)
    }

    /// The block holding `pos`, and the row's index in it.
    fn locate(&self, pos: Pos) -> Option<(&Block, usize)> {
        if pos < self.first || pos >= self.end {
            return None;
        }
        let at = self.blocks.partition_point(|b| b.end() <= pos);
        let block = self.blocks.get(at)?;
        let i = usize::try_from(pos.checked_sub(block.first)?).ok()?;
        (i < block.len()).then_some((block, i))
    }

    /// Row `i` of `block` with its payload taken from `bytes` (the block's uncompressed payload).
    fn parts<'a>(&'a self, block: &Block, i: usize, bytes: &'a [u8]) -> Option<EventParts<'a>> {
        let resource = match *block.resources.get(i)? {
            NO_RESOURCE => None,
            sym => Some(self.resources.get(sym)?),
        };
        Some(EventParts {
            id: block.ids[i],
            time_micros: block.times[i],
            event_type: self.types.get(block.types[i])?,
            resource,
            data: bytes.get(block.span(i))?,
        })
    }

    /// The block's uncompressed payload: borrowed, or decompressed through the cache.
    fn payload<'a>(&self, block: &'a Block) -> Option<Bytes<'a>> {
        if let Some(raw) = block.raw() {
            return Some(Bytes::Borrowed(raw));
        }
        {
            let mut cache = self.cache.lock();
            if let Some(at) = cache.iter().position(|(serial, _)| *serial == block.serial) {
                let entry = cache.remove(at);
                let bytes = Arc::clone(&entry.1);
                cache.insert(0, entry);
                return Some(Bytes::Shared(bytes));
            }
        }
        let mut buf = Vec::new();
        if !block.decompress_into(&mut buf) {
            return None;
        }
        let bytes: Arc<[u8]> = Arc::from(buf);
        let mut cache = self.cache.lock();
        cache.insert(0, (block.serial, Arc::clone(&bytes)));
        cache.truncate(CACHED_BLOCKS);
        Some(Bytes::Shared(bytes))
    }

    /// The block's payload for a scan: borrowed, from the cache, or decompressed into `scratch`
    /// (leaving the cache to reads by position).
    fn scan_payload<'a>(&self, block: &'a Block, scratch: &'a mut Vec<u8>) -> Option<Bytes<'a>> {
        if let Some(raw) = block.raw() {
            return Some(Bytes::Borrowed(raw));
        }
        if let Some((_, bytes)) = self
            .cache
            .lock()
            .iter()
            .find(|(serial, _)| *serial == block.serial)
        {
            return Some(Bytes::Shared(Arc::clone(bytes)));
        }
        block
            .decompress_into(scratch)
            .then_some(Bytes::Borrowed(&scratch[..]))
    }

    /// Closes the open block, if any.
    fn seal_open(&mut self) {
        let Some(open) = self.blocks.back_mut().filter(|b| b.is_open()) else {
            return;
        };
        let before = open.footprint();
        open.seal();
        self.block_bytes = self.block_bytes - before + open.footprint();
        self.pop_dead_blocks();
    }

    /// Drops the oldest event. The front block always holds a kept event or is open: a sealed block
    /// is freed as soon as its last event goes (here, or when it is sealed).
    #[inline]
    fn evict_front(&mut self) {
        if self.first >= self.end {
            return;
        }
        let Some(block) = self.blocks.front() else {
            return;
        };
        if let Ok(i) = usize::try_from(self.first - block.first) {
            if let (Some(&t), Some(&r)) = (block.types.get(i), block.resources.get(i)) {
                self.types.release(t);
                if r != NO_RESOURCE {
                    self.resources.release(r);
                }
            }
        }
        self.first += 1;
        if self.first >= block.end() && !block.is_open() {
            self.pop_dead_blocks();
        }
    }

    /// Frees sealed blocks at the front that hold no kept event.
    fn pop_dead_blocks(&mut self) {
        while let Some(block) = self.blocks.front() {
            if block.is_open() || self.first < block.end() {
                break;
            }
            self.block_bytes -= block.footprint();
            let Some(block) = self.blocks.pop_front() else {
                break;
            };
            // Kept for reuse unless a huge event grew its buffer.
            let usual = self.config.block_bytes.saturating_mul(2)
                + self.config.block_events.saturating_mul(block::ROW_BYTES);
            if block.footprint() <= usual {
                self.recycled = Some(block);
            }
        }
    }

    fn evict_to_bounds(&mut self) {
        let max = Pos::try_from(self.config.max_events).unwrap_or(Pos::MAX);
        while self.end - self.first > max {
            self.evict_front();
        }
        while self.bytes() > self.config.max_bytes {
            if self.recycled.take().is_some() {
                continue;
            }
            let Some(front) = self.blocks.front() else {
                break;
            };
            if front.is_open() {
                if self.first >= self.end {
                    break;
                }
                self.seal_open();
                continue;
            }
            let end = front.end();
            while self.first < end {
                self.evict_front();
            }
        }
    }

    /// Hands out the next sealed block that is past the hot events, for compression.
    fn next_job(&mut self) -> Option<CompressJob> {
        // Every sealed block handed out already (the open one, if any, is the last)?
        let open = u64::from(self.blocks.back().is_some_and(Block::is_open));
        if self.compress_next + open >= self.next_serial {
            return None;
        }
        let front = self.blocks.front()?.serial;
        self.compress_next = self.compress_next.max(front);
        let at = usize::try_from(self.compress_next - front).ok()?;
        let hot = Pos::try_from(self.config.hot_events).unwrap_or(Pos::MAX);
        let newest_hot = self.end.saturating_sub(hot);
        let block = self.blocks.get_mut(at)?;
        if block.end() > newest_hot {
            return None;
        }
        let Payload::Sealed(raw) = &block.payload else {
            return None;
        };
        let raw = Arc::clone(raw);
        block.payload = Payload::Compressing(Arc::clone(&raw));
        self.compress_next += 1;
        Some(CompressJob {
            serial: block.serial,
            raw,
        })
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("range", &self.range())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
