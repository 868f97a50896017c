//! One segment file in memory: its map, how much of it holds records, and a small index (an entry
//! every [`INDEX_EVERY`] records) so reads from an id or a time do not walk the whole segment.

use super::format::{self, SegmentHeader, HEADER_LEN};
use super::sys::{self, Mapping, Preallocated};
use super::{dir, DiskError};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

/// Records between two index entries.
pub(super) const INDEX_EVERY: u64 = 128;

/// The start of a run of [`INDEX_EVERY`] records.
#[derive(Debug, Clone, Copy)]
pub(super) struct IndexEntry {
    /// The id of the run's first record.
    pub id: u64,
    /// Where that record's frame starts.
    pub offset: usize,
    /// The latest time of the run's records.
    pub max_time: i64,
}

/// How appends reach the active segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Writer {
    /// Copied into a shared read-write map of the preallocated file.
    Map,
    /// Written with `pwrite`; the file is mapped read-only for reading.
    Write,
}

/// A segment file.
#[derive(Debug)]
pub(super) struct Segment {
    pub path: PathBuf,
    /// Shared with the background thread, which only prefaults it.
    pub map: Arc<Mapping>,
    /// The open file of the segment being appended to (sealed segments keep only their map).
    pub file: Option<Arc<File>>,
    /// How appends reach it while it is active.
    pub writer: Writer,
    /// End of the records served: the header and every good record are in `..len`.
    pub len: usize,
    /// Bytes counted toward the data dir's size (`len`, or the whole file when it is damaged and kept).
    pub kept_bytes: u64,
    pub records: u64,
    pub first_id: u64,
    pub last_id: u64,
    pub max_time: i64,
    pub index: Vec<IndexEntry>,
    /// Found damaged when the data dir was opened: kept as found, never appended to.
    pub damaged: bool,
}

impl Segment {
    /// A segment for the records found (or to come) in `map`, none noted yet.
    pub fn new(path: PathBuf, map: Mapping, file: Option<Arc<File>>, writer: Writer) -> Segment {
        Segment {
            path,
            map: Arc::new(map),
            file,
            writer,
            len: HEADER_LEN,
            kept_bytes: HEADER_LEN as u64,
            records: 0,
            first_id: 0,
            last_id: 0,
            max_time: i64::MIN,
            index: Vec::new(),
            damaged: false,
        }
    }

    /// Creates segment `base_id` in `dir`, preallocated to `capacity` bytes, with its header written
    /// and, for [`Writer::Map`], mapped read-write. It is created under a temporary name and renamed
    /// when whole, so a crash leaves either a whole segment or a temporary file the next open removes.
    pub fn create(
        dir: &std::path::Path,
        header: SegmentHeader,
        capacity: usize,
        writer: Writer,
    ) -> Result<Segment, DiskError> {
        let (path, temp) = dir::segment_names(dir, header.base_id);
        let result = (|| -> Result<Segment, DiskError> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&temp)
                .map_err(DiskError::io(format!(
                    "cannot create segment {}",
                    temp.display()
                )))?;
            let reserved =
                sys::preallocate(&file, capacity as u64).map_err(DiskError::io(format!(
                    "cannot preallocate {capacity} bytes for segment {}",
                    temp.display()
                )))?;
            // Without reserved blocks a write into the map could meet a full disk as SIGBUS.
            let writer = match reserved {
                Preallocated::Reserved => writer,
                Preallocated::SizedOnly => Writer::Write,
            };
            file.write_all_at(&header.encode(), 0)
                .map_err(DiskError::io(format!(
                    "cannot write segment {}",
                    temp.display()
                )))?;
            // SAFETY: the file is ours, in the locked data dir, and `capacity` bytes long.
            let map = unsafe { Mapping::new(&file, capacity, writer == Writer::Map) }.map_err(
                DiskError::io(format!("cannot map segment {}", temp.display())),
            )?;
            std::fs::rename(&temp, &path).map_err(DiskError::io(format!(
                "cannot name segment {}",
                path.display()
            )))?;
            Ok(Segment::new(
                path.clone(),
                map,
                Some(Arc::new(file)),
                writer,
            ))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    /// Notes the record whose frame starts at `offset` and ends at `end`.
    #[inline]
    pub fn note(&mut self, offset: usize, end: usize, id: u64, time_micros: i64) {
        if self.records.is_multiple_of(INDEX_EVERY) {
            self.index.push(IndexEntry {
                id,
                offset,
                max_time: time_micros,
            });
        } else if let Some(last) = self.index.last_mut() {
            last.max_time = last.max_time.max(time_micros);
        }
        if self.records == 0 {
            self.first_id = id;
        }
        self.records += 1;
        self.last_id = id;
        self.max_time = self.max_time.max(time_micros);
        self.kept_bytes += (end - self.len) as u64;
        self.len = end;
    }

    /// The bytes of the records served.
    pub fn bytes(&self) -> &[u8] {
        self.map.prefix(self.len)
    }

    /// Where the first record with an id at or above `id` starts (`len` if none).
    pub fn seek(&self, id: u64) -> usize {
        let run = self.index.partition_point(|e| e.id <= id).saturating_sub(1);
        let Some(entry) = self.index.get(run) else {
            return self.len;
        };
        self.walk(entry.offset, |at_id, _| at_id >= id)
    }

    /// Where the first record with a time at or after `time_micros` starts (`len` if none), the runs
    /// whose latest time is earlier skipped whole.
    pub fn seek_time(&self, time_micros: i64) -> usize {
        match self.index.iter().find(|e| e.max_time >= time_micros) {
            Some(entry) => self.walk(entry.offset, |_, t| t >= time_micros),
            None => self.len,
        }
    }

    /// The id of the record starting at `offset`.
    pub fn id_at(&self, offset: usize) -> Option<u64> {
        (offset < self.len)
            .then(|| format::peek(self.bytes(), offset).map(|(_, id, _)| id))
            .flatten()
    }

    fn walk(&self, mut at: usize, stop: impl Fn(u64, i64) -> bool) -> usize {
        let bytes = self.bytes();
        while at < self.len {
            match format::peek(bytes, at) {
                Some((end, id, time)) if !stop(id, time) => at = end,
                _ => break,
            }
        }
        at.min(self.len)
    }

    /// Writes nothing more into this segment: its map becomes read-only and its file is handed back
    /// (for a last sync) and closed here.
    pub fn seal(&mut self) -> Option<Arc<File>> {
        self.map.seal();
        self.file.take()
    }

    /// Cuts the file to `len` bytes (the records served), releasing the unused preallocated tail.
    pub fn truncate_to_len(&mut self) -> io::Result<()> {
        let file = match &self.file {
            Some(file) => Arc::clone(file),
            None => Arc::new(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&self.path)?,
            ),
        };
        // The map must not reach past the end of the file: map the new length first.
        // SAFETY: the file is ours, in the locked data dir, and at least `len` bytes long.
        let map = unsafe { Mapping::new(&file, self.len, false) }?;
        self.map = Arc::new(map);
        file.set_len(self.len as u64)
    }
}
