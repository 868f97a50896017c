//! A block: the fixed-size rows of up to `block_events` consecutive events, column by column, and
//! their payloads (each event's data as compact JSON) back to back. The newest block is open and takes
//! appends; a full block is sealed, and later compressed with LZ4 as a whole.

use super::intern::Sym;
use super::Pos;
use std::mem::size_of;
use std::sync::Arc;

/// The resource symbol of an event that has no resource.
pub(crate) const NO_RESOURCE: Sym = Sym::MAX;

/// Bytes one row takes in the columns.
pub(crate) const ROW_BYTES: usize =
    size_of::<u64>() + size_of::<i64>() + 2 * size_of::<Sym>() + size_of::<u32>();

/// A block's payload bytes in one of their forms.
pub(crate) enum Payload {
    /// The block takes appends.
    Open(Vec<u8>),
    /// Full, not compressed (yet: it is among the newest events, or waits for a compression job).
    Sealed(Arc<Vec<u8>>),
    /// Full; a job is compressing these bytes (shared with it) outside the owner's lock.
    Compressing(Arc<Vec<u8>>),
    /// Full and compressed with LZ4 (block format, no header); `ends` gives the length.
    Compressed(Box<[u8]>),
}

pub(crate) struct Block {
    /// Unique within its store, increasing: names the block to a compression job.
    pub(crate) serial: u64,
    /// Position of the first row.
    pub(crate) first: Pos,
    pub(crate) ids: Vec<u64>,
    /// Microseconds since the Unix epoch.
    pub(crate) times: Vec<i64>,
    pub(crate) types: Vec<Sym>,
    pub(crate) resources: Vec<Sym>,
    /// Where each row's payload ends; it starts where the previous one ends (or at 0).
    pub(crate) ends: Vec<u32>,
    pub(crate) payload: Payload,
}

impl Block {
    pub(crate) fn new(serial: u64, first: Pos, rows: usize) -> Self {
        Self {
            serial,
            first,
            ids: Vec::with_capacity(rows),
            times: Vec::with_capacity(rows),
            types: Vec::with_capacity(rows),
            resources: Vec::with_capacity(rows),
            ends: Vec::with_capacity(rows),
            payload: Payload::Open(Vec::new()),
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The position after the last row.
    #[inline]
    pub(crate) fn end(&self) -> Pos {
        self.first + self.len() as Pos
    }

    /// Bytes of payload (uncompressed).
    #[inline]
    pub(crate) fn raw_len(&self) -> usize {
        self.ends.last().map_or(0, |&e| e as usize)
    }

    /// Where row `i`'s payload lies in the uncompressed payload.
    #[inline]
    pub(crate) fn span(&self, i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        start..self.ends[i] as usize
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.payload, Payload::Open(_))
    }

    pub(crate) fn is_compressed(&self) -> bool {
        matches!(self.payload, Payload::Compressed(_))
    }

    /// Appends a row whose payload is `data`. The caller checked that the payload stays under 4 GiB.
    #[inline]
    pub(crate) fn push(&mut self, id: u64, time: i64, event_type: Sym, resource: Sym, data: &[u8]) {
        if let Payload::Open(bytes) = &mut self.payload {
            bytes.extend_from_slice(data);
            self.ids.push(id);
            self.times.push(time);
            self.types.push(event_type);
            self.resources.push(resource);
            self.ends
                .push(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        }
    }

    /// Closes the block to appends. The payload buffer is shared as it is, not copied.
    pub(crate) fn seal(&mut self) {
        let Payload::Open(bytes) = &mut self.payload else {
            return;
        };
        self.payload = Payload::Sealed(Arc::new(std::mem::take(bytes)));
        if self.ids.len() < self.ids.capacity() {
            self.ids.shrink_to_fit();
            self.times.shrink_to_fit();
            self.types.shrink_to_fit();
            self.resources.shrink_to_fit();
            self.ends.shrink_to_fit();
        }
    }

    /// This block's buffers, emptied, as a new open block: a store in its steady state (full, evicting
    /// a block for each it fills) then allocates nothing for its blocks.
    pub(crate) fn reuse(self, serial: u64, first: Pos, rows: usize) -> Self {
        let Block {
            mut ids,
            mut times,
            mut types,
            mut resources,
            mut ends,
            payload,
            ..
        } = self;
        let mut bytes = match payload {
            Payload::Open(bytes) => bytes,
            Payload::Sealed(bytes) | Payload::Compressing(bytes) => {
                Arc::try_unwrap(bytes).unwrap_or_default()
            }
            Payload::Compressed(_) => Vec::new(),
        };
        ids.clear();
        ends.clear();
        times.clear();
        types.clear();
        resources.clear();
        bytes.clear();
        // Room for a whole block, so appends never grow the columns (the store counts their bytes
        // when the block is made).
        ids.reserve_exact(rows);
        times.reserve_exact(rows);
        types.reserve_exact(rows);
        resources.reserve_exact(rows);
        ends.reserve_exact(rows);
        Block {
            serial,
            first,
            ids,
            times,
            types,
            resources,
            ends,
            payload: Payload::Open(bytes),
        }
    }

    /// The open payload buffer's capacity (0 once sealed).
    #[inline]
    pub(crate) fn payload_capacity(&self) -> usize {
        match &self.payload {
            Payload::Open(bytes) => bytes.capacity(),
            _ => 0,
        }
    }

    /// Bytes this block holds on the heap (columns by capacity, payload as held), plus itself.
    pub(crate) fn footprint(&self) -> usize {
        let payload = match &self.payload {
            Payload::Open(bytes) => bytes.capacity(),
            Payload::Sealed(bytes) | Payload::Compressing(bytes) => bytes.capacity(),
            Payload::Compressed(bytes) => bytes.len(),
        };
        self.ids.capacity() * ROW_BYTES + payload + size_of::<Self>()
    }

    /// The uncompressed payload if it is held as such.
    #[inline]
    pub(crate) fn raw(&self) -> Option<&[u8]> {
        match &self.payload {
            Payload::Open(bytes) => Some(bytes),
            Payload::Sealed(bytes) | Payload::Compressing(bytes) => Some(bytes),
            Payload::Compressed(_) => None,
        }
    }

    /// Decompresses a compressed payload into `out` (replacing its contents); false if the block is
    /// not compressed or its bytes do not decompress to the recorded length (which cannot happen to
    /// bytes this module compressed).
    pub(crate) fn decompress_into(&self, out: &mut Vec<u8>) -> bool {
        let Payload::Compressed(packed) = &self.payload else {
            return false;
        };
        let len = self.raw_len();
        out.clear();
        out.resize(len, 0);
        matches!(lz4_flex::block::decompress_into(packed, out), Ok(n) if n == len)
    }
}

/// Compresses one sealed block's payload; made by [`super::Store::push`], run by whoever owns the
/// store outside its lock, handed back with [`super::Store::install`].
#[must_use = "a compression job does nothing until it is run and installed"]
pub struct CompressJob {
    pub(crate) serial: u64,
    pub(crate) raw: Arc<Vec<u8>>,
}

impl CompressJob {
    /// Compresses the block's payload (the slow part: run it without holding the store's lock).
    pub fn run(self) -> Compressed {
        Compressed {
            serial: self.serial,
            bytes: lz4_flex::block::compress(&self.raw).into_boxed_slice(),
            raw: self.raw,
        }
    }
}

impl std::fmt::Debug for CompressJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressJob")
            .field("block", &self.serial)
            .field("bytes", &self.raw.len())
            .finish()
    }
}

/// A compressed payload, ready for [`super::Store::install`].
pub struct Compressed {
    pub(crate) serial: u64,
    pub(crate) bytes: Box<[u8]>,
    /// The uncompressed bytes, kept so a block whose compression did not pay is left as it was.
    pub(crate) raw: Arc<Vec<u8>>,
}

impl std::fmt::Debug for Compressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressed")
            .field("block", &self.serial)
            .field("bytes", &self.bytes.len())
            .field("from", &self.raw.len())
            .finish()
    }
}
