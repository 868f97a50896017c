//! Durable segments on disk: the records of `serve --data-dir DIR`, kept across restarts.
//!
//! A [`DataDir`] is a directory of append-only segment files, each a small header (magic and format
//! version) and then records framed with their length and a CRC-32C, in increasing id order; a new
//! segment starts every [`DiskOptions::segment_bytes`] (64 MiB by default). The layout is described
//! byte by byte in the `format` module's source; the directory also holds `FORMAT` (the format version,
//! so a data dir of another version is refused, never rewritten) and `LOCK` (see below).
//!
//! ```
//! use ipckit::store::disk::{DataDir, DiskOptions, RecordRef};
//! # let tmp = std::env::temp_dir().join(format!("ipckit-doc-disk-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&tmp);
//! let (mut dir, recovery) = DataDir::open(&tmp, DiskOptions::default())?;
//! assert_eq!(recovery.records, 0);
//! dir.append(RecordRef {
//!     id: dir.next_id(),
//!     time_micros: 1_732_500_000_000_000,
//!     event_type: "task.started",
//!     resource: Some("render-7"),
//!     data: br#"{"frame":0}"#,
//! })?;
//! let first = dir.read_from(1).next().transpose()?;
//! assert_eq!(first.map(|r| r.event_type), Some("task.started"));
//! # drop(dir);
//! # std::fs::remove_dir_all(&tmp).unwrap();
//! # Ok::<(), ipckit::store::disk::DiskError>(())
//! ```
//!
//! # Appending
//!
//! The active segment is preallocated with `posix_fallocate` when it is created, so a full disk is an
//! error there (the append that needed the new segment fails, nothing stored is touched, and a later
//! append retries), and records are copied into a shared memory map of it: when
//! [`DataDir::append`] or [`DataDir::append_batch`] returns, the record is in the kernel's page cache,
//! so a process killed right after (even `kill -9`) loses nothing acknowledged, and an append costs a
//! copy and a checksum, no system call. The data dir's background thread keeps the segment's next few
//! MiB of pages faulted in ahead of the appends, so the kernel's work of finding and zeroing fresh
//! page-cache pages is not done on the appending thread (which may hold the bus's lock); when it falls
//! behind, appends take those page faults themselves. On a copy-on-write filesystem (btrfs, ZFS, bcachefs), where a
//! write into preallocated space can still need new blocks and a memory-mapped write would meet a full
//! disk as SIGBUS, appends use `pwrite` instead (one per batch): see [`WriteMode`].
//!
//! # What survives a power loss
//!
//! [`FsyncPolicy`] decides: `Always` syncs before each append returns (everything acknowledged
//! survives, at the cost of a disk flush per append); `Interval` (the default, every second) has a
//! background thread sync the data, so what was acknowledged more than about a second before the loss
//! survives; `Never` leaves it to the kernel's writeback (typically up to 30 s). All three keep
//! everything acknowledged through a crash or kill of the process.
//!
//! # Opening: the scan and what it repairs
//!
//! [`DataDir::open`] walks every segment frame by frame, verifying each checksum (it parses no JSON),
//! and builds a small index per segment. What it finds is in the [`Recovery`]:
//!
//! - **A torn last record**: a write the process did not finish (a bad frame, or a zero frame header
//!   with bytes after it, at the end of the newest segment, with no intact record after it) is cut off
//!   (the file is truncated) and reported; ids go on after the last record kept.
//! - **Damage**: a bad record with intact records after it (a flipped bit, a power loss that kept later
//!   pages but not earlier ones) keeps everything before it and reports the rest: where, how many
//!   bytes, how many records there still check out and their ids. The damaged segment is **sealed at
//!   its last good record and kept on disk unchanged** as evidence, reported again on every open
//!   until retention deletes it; new appends go to a new segment, and ids go on above every id seen,
//!   intact records past the damage included, so no id is ever given twice. Readers skip the damaged
//!   range (the ids jump there). Later segments are served as usual.
//! - Leftovers of a segment whose creation was cut short, and segments holding no record, are removed.
//!
//! Each open starts a new segment with the first append, so a segment once closed is never written again.
//!
//! # Refusals
//!
//! A directory not owned by this user, writable by others, or reached through a symbolic link; a data
//! dir of another format version (its `FORMAT` file or any segment header); a directory that has files
//! but no `FORMAT` file (not a data dir: nothing is written into it); and a data dir another process
//! holds: the `LOCK` file carries an exclusive `flock` for the [`DataDir`]'s life and its holder's pid,
//! which the refusal names.
//!
//! # Retention
//!
//! [`DiskOptions::retain_bytes`] and [`DiskOptions::retain_age`] delete whole segments, oldest first,
//! never the newest one: when the data dir is opened, when a new segment starts, and on
//! [`DataDir::retain`] (call it now and then for the age limit to apply to a quiet data dir).
//!
//! # Assumptions
//!
//! The segment files are memory-mapped: another process truncating one while it is open makes this
//! one fail with SIGBUS. The directory's checks (owned by the user, writable only by them, locked)
//! keep other programs out; editing a live data dir by hand is not supported.

mod background;
mod dir;
mod format;
mod read;
mod record;
mod retain;
mod scan;
mod segment;
mod sys;

pub use read::{Cursor, Records};
pub use record::{Record, RecordRef};
pub use retain::{DeletedSegment, RetainReason, Retained};
pub use scan::{Damage, DamageKind, Recovery, Torn};

use format::{SegmentHeader, HEADER_LEN};
use scan::{End, Scanned};
use segment::{Segment, Writer};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The largest record body (fixed fields, type, resource and data together): 256 MiB.
pub const MAX_RECORD_BYTES: usize = format::MAX_BODY;

/// The default size of a segment: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// The smallest segment size accepted: 4 KiB.
pub const MIN_SEGMENT_BYTES: u64 = 4 << 10;

/// The largest segment size accepted: 4 GiB.
pub const MAX_SEGMENT_BYTES: u64 = 4 << 30;

/// When appended records are forced to the disk (`--fsync always|interval|never`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before each append returns: everything acknowledged survives a power loss.
    Always,
    /// By a background thread every so often (the default: every second): what was acknowledged more
    /// than about one interval before a power loss survives it.
    Interval(Duration),
    /// When the kernel writes dirty pages back on its own (typically within 30 s).
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_secs(1))
    }
}

impl FromStr for FsyncPolicy {
    type Err = DiskError;

    /// `always`, `never`, `interval` (every second) or `interval=DURATION` (`interval=200ms`).
    fn from_str(text: &str) -> Result<Self, DiskError> {
        let bad = || {
            DiskError::Options(format!(
            "fsync policy {text:?}: expected always, interval, interval=DURATION (such as interval=200ms) or never"
        ))
        };
        match text {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            "interval" => Ok(FsyncPolicy::default()),
            _ => {
                let every = text.strip_prefix("interval=").ok_or_else(bad)?;
                let every = humantime::parse_duration(every).map_err(|_| bad())?;
                if every.is_zero() {
                    return Err(bad());
                }
                Ok(FsyncPolicy::Interval(every))
            }
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::Interval(every) if *every == Duration::from_secs(1) => {
                f.write_str("interval")
            }
            FsyncPolicy::Interval(every) => {
                write!(f, "interval={}", humantime::format_duration(*every))
            }
        }
    }
}

/// How appends reach the segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// [`WriteMode::Write`] on a copy-on-write filesystem (btrfs, ZFS, bcachefs), else [`WriteMode::Map`].
    #[default]
    Auto,
    /// Copy into a shared memory map of the preallocated segment: no system call per append.
    Map,
    /// `pwrite` each record (one call per batch): safe on any filesystem, slower for single appends.
    Write,
}

/// How a data dir is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskOptions {
    /// A new segment starts when the next record would not fit in this many bytes
    /// ([`MIN_SEGMENT_BYTES`] ..= [`MAX_SEGMENT_BYTES`]; a larger record gets a segment of its own).
    pub segment_bytes: u64,
    /// When appends are forced to the disk.
    pub fsync: FsyncPolicy,
    /// Delete the oldest segments while the data dir holds more than this (the newest one is kept).
    pub retain_bytes: Option<u64>,
    /// Delete the segments whose records are all older than this.
    pub retain_age: Option<Duration>,
    /// How appends reach the file.
    pub write_mode: WriteMode,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: FsyncPolicy::default(),
            retain_bytes: None,
            retain_age: None,
            write_mode: WriteMode::Auto,
        }
    }
}

impl DiskOptions {
    fn check(&self) -> Result<(), DiskError> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(DiskError::Options(format!(
                "segment size {} bytes is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                self.segment_bytes
            )));
        }
        if self.fsync == FsyncPolicy::Interval(Duration::ZERO) {
            return Err(DiskError::Options("an fsync interval of 0".into()));
        }
        if self.retain_bytes == Some(0) {
            return Err(DiskError::Options(
                "retaining 0 bytes (the newest segment is always kept; give a size)".into(),
            ));
        }
        Ok(())
    }
}

/// What can go wrong with a data dir.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The directory is not safe to keep events in.
    #[error("unsafe data dir {path}: {reason}")]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process holds the data dir.
    #[error("data dir {} is in use by another process{}", path.display(), pid.map_or(String::new(), |p| format!(" (pid {p})")))]
    Locked {
        /// The directory.
        path: PathBuf,
        /// The holder's process id, if its lock file says.
        pid: Option<u32>,
    },
    /// The directory has files but is not a data dir.
    #[error("{} is not an ipckit data dir (it holds {found:?} and no FORMAT file); give an empty or new directory", path.display())]
    NotADataDir {
        /// The directory.
        path: PathBuf,
        /// One of the files found.
        found: String,
    },
    /// A data dir or segment of another format version.
    #[error("{} is in format version {found}; this build reads version {}, and leaves it as it is", path.display(), format::FORMAT_VERSION)]
    Version {
        /// The data dir or segment.
        path: PathBuf,
        /// The version it says.
        found: String,
    },
    /// A file named like a segment that is not one.
    #[error("{} is named like a segment but is not an ipckit segment (move it out of the data dir)", path.display())]
    NotASegment {
        /// The file.
        path: PathBuf,
    },
    /// The path is not a directory holding a data dir (to open read-only).
    #[error("no ipckit data dir at {} (not a directory with a FORMAT file)", path.display())]
    NoDataDir {
        /// The path.
        path: PathBuf,
    },
    /// An append to a data dir opened read-only.
    #[error("data dir {} is open read-only", path.display())]
    ReadOnly {
        /// The directory.
        path: PathBuf,
    },
    /// An append whose id is not above the last one stored.
    #[error("record id {id} is below the next id the data dir takes ({next})")]
    IdOrder {
        /// The id given.
        id: u64,
        /// The smallest id accepted.
        next: u64,
    },
    /// A record over [`MAX_RECORD_BYTES`].
    #[error("record {id} is too large to store ({bytes} bytes; the limit is {MAX_RECORD_BYTES})")]
    RecordTooLarge {
        /// Its id.
        id: u64,
        /// Its size.
        bytes: u128,
    },
    /// A time no record or `SystemTime` holds.
    #[error("event time out of the representable range")]
    TimeOutOfRange,
    /// A record's data that is not JSON.
    #[error("record data is not JSON: {0}")]
    BadData(#[source] serde_json::Error),
    /// A record that checked out when the data dir was opened does not any more.
    #[error("segment {} changed on disk: the record at offset {offset} fails its checksum", path.display())]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
    },
    /// Options out of range.
    #[error("invalid data dir options: {0}")]
    Options(String),
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What failed.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl DiskError {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> DiskError {
        let context = context.into();
        move |source| DiskError::Io { context, source }
    }
}

/// One segment of a data dir, as [`DataDir::segments`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its file.
    pub path: PathBuf,
    /// The first and last ids it serves, if any.
    pub ids: Option<(u64, u64)>,
    /// Records it serves.
    pub records: u64,
    /// Bytes it counts for (see [`DataDir::total_bytes`]).
    pub bytes: u64,
    /// Found damaged when the data dir was opened (kept as found).
    pub damaged: bool,
    /// The segment appends go to.
    pub active: bool,
}

/// An open data dir: the segments, their indexes, the lock, and the appending end.
///
/// It is `Send` and `Sync`: readers borrow it (`&self`), appends take `&mut self`.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    options: DiskOptions,
    writer: Writer,
    /// Oldest first; the last is the active one when `active` is set.
    segments: Vec<Segment>,
    active: bool,
    /// The smallest id the next append may carry.
    next_id: u64,
    /// The highest id ever seen on disk or appended (intact records past damage included).
    max_id: u64,
    /// Frames encoded but not yet written ([`Writer::Write`]), and their (offset, end, id, time).
    scratch: Vec<u8>,
    pending: Vec<(usize, usize, u64, i64)>,
    /// `next_id` before the pending frames.
    pending_next_id: u64,
    /// `max_id` before the pending frames.
    pending_max_id: u64,
    retained: Retained,
    background_error: Option<DiskError>,
    /// Prefaults ahead of the appends and, under `Interval`, flushes.
    background: Option<background::Background>,
    closed: bool,
    /// Opened with [`DataDir::open_read_only`]: appends are refused and nothing on disk is changed.
    read_only: bool,
    /// Who held the data dir when it was opened read-only.
    holder: Option<Option<u32>>,
    /// The exclusive lock (none when read-only).
    _lock: Option<dir::Lock>,
}

impl DataDir {
    /// Opens (creating it if absent) the data dir at `path`: checks and locks it, scans and recovers
    /// its segments, applies retention.
    ///
    /// # Errors
    ///
    /// The refusals of the module docs ([`DiskError::UnsafeDirectory`], [`DiskError::Locked`],
    /// [`DiskError::Version`], [`DiskError::NotADataDir`], [`DiskError::NotASegment`]), bad options,
    /// and I/O errors. Damage is not an error: it is reported in the [`Recovery`].
    pub fn open(
        path: impl AsRef<Path>,
        options: DiskOptions,
    ) -> Result<(DataDir, Recovery), DiskError> {
        Self::open_with(path.as_ref(), options, false)
    }

    /// Opens the existing data dir at `path` to read it, changing nothing in it: no lock is taken, no
    /// torn record cut, no file removed, no retention applied, and appends are refused
    /// ([`DiskError::ReadOnly`]). It works while a server holds the data dir
    /// ([`DataDir::holder`] then says so): the segment that server may be writing is read into memory
    /// as it is at the open (a record it is writing just then is left out), the older ones are mapped
    /// (a server never writes or cuts a segment it has closed). What the server appends later is not
    /// seen. Damage is reported in the [`Recovery`] as [`DataDir::open`] reports it; a torn end is
    /// left out, not reported (it may be a write in progress).
    ///
    /// # Errors
    ///
    /// [`DiskError::NoDataDir`] for a path that is not a directory holding a data dir,
    /// [`DiskError::UnsafeDirectory`], [`DiskError::Version`], [`DiskError::NotADataDir`],
    /// [`DiskError::NotASegment`] and I/O errors.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<(DataDir, Recovery), DiskError> {
        Self::open_with(path.as_ref(), DiskOptions::default(), true)
    }

    /// Whether another process held the data dir when it was opened read-only, and its pid if its
    /// lock file says: `Some(pid)`; `None` when nobody did (and always for a data dir opened to write).
    pub fn holder(&self) -> Option<Option<u32>> {
        self.holder
    }

    fn open_with(
        path: &Path,
        options: DiskOptions,
        read_only: bool,
    ) -> Result<(DataDir, Recovery), DiskError> {
        let started = Instant::now();
        options.check()?;
        let path = path.to_path_buf();
        let mut holder = None;
        let lock = if read_only {
            if !path.is_dir() {
                return Err(DiskError::NoDataDir { path });
            }
            dir::check_safe(&path)?;
            if dir::check_format(&path)? {
                return Err(DiskError::NoDataDir { path });
            }
            holder = dir::holder(&path)?;
            None
        } else {
            dir::prepare(&path)?;
            // Refuse a foreign or other-version directory before writing anything into it.
            dir::check_format(&path)?;
            let lock = dir::Lock::acquire(&path)?;
            if dir::check_format(&path)? {
                dir::write_format(&path)?;
            }
            Some(lock)
        };
        let listing = dir::list(&path)?;
        let mut recovery = Recovery::default();
        for temp in listing.temporaries {
            if read_only {
                continue;
            }
            std::fs::remove_file(&temp)
                .map_err(DiskError::io(format!("cannot remove {}", temp.display())))?;
            recovery.removed.push(temp);
        }
        let writer = match options.write_mode {
            _ if read_only => Writer::Write,
            WriteMode::Map => Writer::Map,
            WriteMode::Write => Writer::Write,
            WriteMode::Auto => {
                let dir_file = File::open(&path)
                    .map_err(DiskError::io(format!("cannot open {}", path.display())))?;
                if sys::copy_on_write_fs(&dir_file) {
                    Writer::Write
                } else {
                    Writer::Map
                }
            }
        };

        let mut segments: Vec<Segment> = Vec::new();
        let mut max_ids: Vec<u64> = Vec::new();
        let mut floor = 0u64;
        let mut max_id = 0u64;
        let mut next_id = 1u64;
        let count = listing.segments.len();
        let paths: Vec<PathBuf> = listing.segments.iter().map(|(_, p)| p.clone()).collect();
        let scans = scan::scan_all(&paths, read_only);
        for (i, ((base_id, seg_path), scanned)) in
            listing.segments.into_iter().zip(scans).enumerate()
        {
            let is_last = i + 1 == count;
            let mut scanned = scanned?;
            // Scanned alone, a segment only knows its ids rise within it; one whose first record does
            // not follow what came before (segments copied in by hand?) is scanned again after it.
            if let Scanned::Segment { segment, .. } = &scanned {
                if segment.records > 0 && segment.first_id <= floor {
                    scanned = scan::scan(&seg_path, floor)?;
                }
            }
            let (mut segment, end, header, seg_max) = match scanned {
                Scanned::Empty if read_only => continue,
                Scanned::Empty => {
                    remove(&seg_path, &mut recovery)?;
                    continue;
                }
                Scanned::Segment {
                    segment,
                    end,
                    header,
                    max_id,
                } => (*segment, end, header, max_id),
            };
            // The chain: the records the previous segment ends with must reach what this one says
            // was stored before it.
            if let (Some(header), Some(prev), Some(&prev_max)) =
                (header, segments.last(), max_ids.last())
            {
                if header.prev_id > prev_max {
                    recovery.damaged.push(Damage {
                        segment: prev.path.clone(),
                        kind: DamageKind::Missing {
                            through: header.prev_id,
                        },
                        offset: prev.len as u64,
                        bytes: 0,
                        after_id: (prev_max > 0).then_some(prev_max),
                        intact_records: 0,
                        intact_ids: None,
                    });
                }
            }
            match end {
                // Read-only: nothing is cut; what follows the last good record is not served.
                End::Clean { .. } | End::Torn { .. } if read_only && is_last => {}
                End::Clean { tail } => {
                    if is_last && tail > 0 {
                        segment.truncate_to_len().map_err(DiskError::io(format!(
                            "cannot release the unused end of {}",
                            seg_path.display()
                        )))?;
                    }
                }
                End::Torn { offset, bytes } if is_last => {
                    segment.truncate_to_len().map_err(DiskError::io(format!(
                        "cannot cut the torn record off {}",
                        seg_path.display()
                    )))?;
                    recovery.torn = Some(Torn {
                        segment: seg_path.clone(),
                        offset: offset as u64,
                        bytes,
                    });
                }
                End::Torn { offset, bytes } => {
                    segment.damaged = true;
                    segment.kept_bytes = offset as u64 + bytes;
                    recovery.damaged.push(Damage {
                        segment: seg_path.clone(),
                        kind: DamageKind::Checksum,
                        offset: offset as u64,
                        bytes,
                        after_id: (segment.last_id > 0).then_some(segment.last_id),
                        intact_records: 0,
                        intact_ids: None,
                    });
                }
                End::Damaged(damage) => recovery.damaged.push(damage),
            }
            if segment.records == 0 && !segment.damaged {
                drop(segment);
                if !read_only {
                    remove(&seg_path, &mut recovery)?;
                }
                continue;
            }
            if segment.records > 0 {
                floor = segment.last_id;
            }
            max_id = max_id.max(seg_max).max(segment.last_id);
            next_id = next_id
                .max(base_id.saturating_add(1))
                .max(max_id.saturating_add(1));
            segment.map.release_pages();
            max_ids.push(seg_max.max(segment.last_id));
            segments.push(segment);
        }

        let mut data_dir = DataDir {
            path,
            writer,
            segments,
            active: false,
            next_id,
            max_id,
            scratch: Vec::new(),
            pending: Vec::new(),
            pending_next_id: next_id,
            pending_max_id: max_id,
            retained: Retained::default(),
            background_error: None,
            background: None,
            closed: false,
            read_only,
            holder,
            _lock: lock,
            options,
        };
        if read_only {
            recovery.segments = data_dir.segments.len();
            recovery.records = data_dir.records();
            recovery.bytes = data_dir.total_bytes();
            recovery.first_id = data_dir.first_id();
            recovery.last_id = data_dir.last_id();
            recovery.elapsed = started.elapsed();
            return Ok((data_dir, recovery));
        }
        recovery.retained = data_dir.apply_retention(SystemTime::now())?;
        if data_dir.options.fsync != FsyncPolicy::Never
            && !(recovery.removed.is_empty() && recovery.retained.is_empty())
        {
            dir::sync_dir(&data_dir.path).map_err(DiskError::io(format!(
                "cannot sync {}",
                data_dir.path.display()
            )))?;
        }
        let flush_every = match data_dir.options.fsync {
            FsyncPolicy::Interval(every) => Some(every),
            _ => None,
        };
        data_dir.background = Some(
            background::Background::start(flush_every, data_dir.path.clone()).map_err(
                DiskError::io("cannot start the data dir's background thread"),
            )?,
        );
        recovery.segments = data_dir.segments.len();
        recovery.records = data_dir.records();
        recovery.bytes = data_dir.total_bytes();
        recovery.first_id = data_dir.first_id();
        recovery.last_id = data_dir.last_id();
        recovery.elapsed = started.elapsed();
        Ok((data_dir, recovery))
    }

    /// Appends one record; when this returns `Ok` the record is in the OS's page cache (and, with
    /// [`FsyncPolicy::Always`], on the disk).
    ///
    /// # Errors
    ///
    /// [`DiskError::IdOrder`] for an id below [`DataDir::next_id`], [`DiskError::RecordTooLarge`],
    /// and I/O errors (such as a full disk when a new segment is needed). Nothing stored before is
    /// touched by an error, and a later append works once the cause is gone.
    pub fn append(&mut self, record: RecordRef<'_>) -> Result<(), DiskError> {
        let put = self.put(&record);
        let finished = self.finish_write();
        put.and(finished)
    }

    /// Appends records in order, with at most one write and one sync for the lot.
    ///
    /// # Errors
    ///
    /// As [`DataDir::append`]. On an error, the records before the one that failed are stored (as
    /// [`DataDir::last_id`] then shows) and the rest are not.
    pub fn append_batch(&mut self, records: &[RecordRef<'_>]) -> Result<(), DiskError> {
        let put = records.iter().try_for_each(|record| self.put(record));
        let finished = self.finish_write();
        put.and(finished)
    }

    /// Encodes one record into the active segment (or, for [`Writer::Write`], the pending buffer).
    #[inline]
    fn put(&mut self, record: &RecordRef<'_>) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly {
                path: self.path.clone(),
            });
        }
        if self.closed {
            return Err(DiskError::Options("the data dir is closed".into()));
        }
        if record.id < self.next_id {
            return Err(DiskError::IdOrder {
                id: record.id,
                next: self.next_id,
            });
        }
        let next_id = record.id.checked_add(1).ok_or(DiskError::IdOrder {
            id: record.id,
            next: self.next_id,
        })?;
        let n = format::frame_len(record).ok_or_else(|| DiskError::RecordTooLarge {
            id: record.id,
            bytes: record.event_type.len() as u128
                + record.resource.map_or(0, str::len) as u128
                + record.data.len() as u128,
        })?;
        let room = self.active
            && self
                .segments
                .last()
                .is_some_and(|s| s.len + self.scratch.len() + n <= s.map.len());
        if !room {
            self.flush_pending()?;
            self.roll(record.id, n)?;
        }
        let Some(segment) = self.segments.last_mut() else {
            return Err(DiskError::Options("no active segment".into()));
        };
        match segment.writer {
            Writer::Map => {
                let at = segment.len;
                let end = at + n;
                // SAFETY: `at..end` lies past the records served (`segment.len`): no borrowing reader
                // exists (`&mut self`), a `Cursor` on another thread reads only records served when
                // it was made, and the background thread only prefaults the map.
                let out = unsafe { segment.map.range_mut_unchecked(at, end) };
                if out.len() != n {
                    return Err(DiskError::Options("segment map too short".into()));
                }
                format::write_frame(out, record);
                segment.note(at, end, record.id, record.time_micros);
                if let Some(background) = &mut self.background {
                    background.advance(end);
                }
            }
            Writer::Write => {
                if self.pending.is_empty() {
                    self.pending_next_id = self.next_id;
                    self.pending_max_id = self.max_id;
                }
                let at = self.scratch.len();
                self.scratch.resize(at + n, 0);
                format::write_frame(&mut self.scratch[at..], record);
                let offset = segment.len + at;
                self.pending
                    .push((offset, offset + n, record.id, record.time_micros));
            }
        }
        self.next_id = next_id;
        self.max_id = self.max_id.max(record.id);
        Ok(())
    }

    /// Writes the pending frames ([`Writer::Write`]) and syncs under [`FsyncPolicy::Always`].
    fn finish_write(&mut self) -> Result<(), DiskError> {
        self.flush_pending()?;
        if self.options.fsync == FsyncPolicy::Always {
            if let Some(file) = self.active_file() {
                file.sync_data().map_err(DiskError::io(format!(
                    "cannot sync the active segment in {}",
                    self.path.display()
                )))?;
            }
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<(), DiskError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(segment) = self.segments.last_mut().filter(|_| self.active) else {
            return Err(DiskError::Options("no active segment".into()));
        };
        let written = match &segment.file {
            Some(file) => file.write_all_at(&self.scratch, segment.len as u64),
            None => Err(io::Error::other("the active segment is closed")),
        };
        match written {
            Ok(()) => {
                for (offset, end, id, time) in self.pending.drain(..) {
                    segment.note(offset, end, id, time);
                }
                self.scratch.clear();
                if let Some(background) = &mut self.background {
                    background.advance(segment.len);
                }
                Ok(())
            }
            Err(e) => {
                // Whatever part was written is past the records served; the next write overwrites it.
                self.next_id = self.pending_next_id;
                self.max_id = self.pending_max_id;
                self.pending.clear();
                self.scratch.clear();
                Err(DiskError::io(format!(
                    "cannot write to {}",
                    segment.path.display()
                ))(e))
            }
        }
    }

    /// Starts a new segment whose first record is `base_id`, with room for at least `need` bytes.
    fn roll(&mut self, base_id: u64, need: usize) -> Result<(), DiskError> {
        let capacity = usize::try_from(self.options.segment_bytes)
            .unwrap_or(usize::MAX)
            .max(HEADER_LEN + need);
        let header = SegmentHeader {
            base_id,
            prev_id: self.max_id,
        };
        let segment = Segment::create(&self.path, header, capacity, self.writer)?;
        let file = segment.file.clone();
        if self.active {
            if let Some(old) = self.segments.last_mut() {
                old.seal();
            }
        }
        if let Some(background) = &mut self.background {
            let writable = segment.writer == Writer::Map;
            background.set_active(Arc::clone(&segment.map), writable, file.clone(), HEADER_LEN);
        }
        self.segments.push(segment);
        self.active = true;
        if self.options.fsync == FsyncPolicy::Always {
            let synced = file
                .as_ref()
                .map_or(Ok(()), |f| f.sync_data())
                .and_then(|()| dir::sync_dir(&self.path));
            synced.map_err(DiskError::io(format!(
                "cannot sync {}",
                self.path.display()
            )))?;
        }
        match self.apply_retention(SystemTime::now()) {
            Ok(retained) => self.retained.extend(retained),
            Err(e) => {
                self.background_error.get_or_insert(e);
            }
        }
        Ok(())
    }

    fn active_file(&self) -> Option<&Arc<File>> {
        self.segments
            .last()
            .filter(|_| self.active)
            .and_then(|s| s.file.as_ref())
    }

    /// The records from the first one with an id at or above `id`, in id order, borrowed from the
    /// segments (see [`Records`]).
    pub fn read_from(&self, id: u64) -> Records<'_> {
        match self
            .segments
            .iter()
            .position(|s| s.records > 0 && s.last_id >= id)
        {
            Some(i) => Records::new(self, i, self.segments[i].seek(id)),
            None => Records::new(self, self.segments.len(), HEADER_LEN),
        }
    }

    /// The id of the first record whose time is at or after `time_micros` (microseconds since the
    /// epoch), in id order: the segments and index runs whose latest time is earlier are skipped whole.
    pub fn first_id_at_or_after(&self, time_micros: i64) -> Option<u64> {
        self.segments
            .iter()
            .filter(|s| s.records > 0 && s.max_time >= time_micros)
            .find_map(|s| s.id_at(s.seek_time(time_micros)))
    }

    /// The first readable id.
    pub fn first_id(&self) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| s.records > 0)
            .map(|s| s.first_id)
    }

    /// The last readable id.
    pub fn last_id(&self) -> Option<u64> {
        self.segments
            .iter()
            .rev()
            .find(|s| s.records > 0)
            .map(|s| s.last_id)
    }

    /// The smallest id the next append may carry: one past the highest id ever seen in this data dir
    /// (intact records past damage included), 1 for a new one.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Records that can be read.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }

    /// Bytes the segments hold: headers, records, and damaged bytes kept. The active segment's file
    /// is preallocated beyond this (up to [`DiskOptions::segment_bytes`]) until it is closed.
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.kept_bytes).sum()
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let last = self.segments.len().saturating_sub(1);
        self.segments
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentInfo {
                path: s.path.clone(),
                ids: (s.records > 0).then_some((s.first_id, s.last_id)),
                records: s.records,
                bytes: s.kept_bytes,
                damaged: s.damaged,
                active: self.active && i == last,
            })
            .collect()
    }

    /// The data dir's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options it was opened with.
    pub fn options(&self) -> &DiskOptions {
        &self.options
    }

    /// Applies the retention limits now, deleting whole old segments (never the newest one).
    ///
    /// # Errors
    ///
    /// When a segment file cannot be removed; those deleted before it are in [`DataDir::take_retained`].
    pub fn retain(&mut self) -> Result<Retained, DiskError> {
        self.apply_retention(SystemTime::now())
    }

    /// What retention deleted when new segments started, since the last call.
    pub fn take_retained(&mut self) -> Retained {
        std::mem::take(&mut self.retained)
    }

    /// An error from the background flush or from retention when a segment started, since the last call.
    pub fn take_background_error(&mut self) -> Option<DiskError> {
        let flushed = self
            .background
            .as_ref()
            .and_then(|f| f.take_error())
            .map(DiskError::io("background flush of the data dir"));
        self.background_error.take().or(flushed)
    }

    /// Forces everything appended so far to the disk, whatever the policy.
    ///
    /// # Errors
    ///
    /// When a sync fails.
    pub fn sync(&mut self) -> Result<(), DiskError> {
        self.flush_pending()?;
        if let Some(file) = self.active_file() {
            file.sync_data().map_err(DiskError::io(format!(
                "cannot sync {}",
                self.path.display()
            )))?;
        }
        dir::sync_dir(&self.path).map_err(DiskError::io(format!(
            "cannot sync {}",
            self.path.display()
        )))
    }

    /// Closes the data dir: writes what is pending, syncs (unless the policy is `Never`), releases the
    /// active segment's unused preallocated space, and unlocks. Dropping it does the same, silently.
    ///
    /// # Errors
    ///
    /// The first error of those steps (each is still tried).
    pub fn close(mut self) -> Result<(), DiskError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), DiskError> {
        if self.closed || self.read_only {
            self.closed = true;
            return Ok(());
        }
        let mut result = self.flush_pending();
        self.closed = true;
        if let Some(mut background) = self.background.take() {
            background.stop();
            if let Some(e) = background.take_error() {
                result = result.and(Err(DiskError::io("background flush of the data dir")(e)));
            }
        }
        let sync = self.options.fsync != FsyncPolicy::Never;
        if self.active {
            if let Some(segment) = self.segments.last_mut() {
                if sync {
                    if let Some(file) = &segment.file {
                        result = result.and(file.sync_data().map_err(DiskError::io(format!(
                            "cannot sync {}",
                            segment.path.display()
                        ))));
                    }
                }
                result = result.and(segment.truncate_to_len().map_err(DiskError::io(format!(
                    "cannot release the unused end of {}",
                    segment.path.display()
                ))));
                segment.seal();
            }
            self.active = false;
        }
        if sync {
            result = result.and(dir::sync_dir(&self.path).map_err(DiskError::io(format!(
                "cannot sync {}",
                self.path.display()
            ))));
        }
        result
    }

    fn apply_retention(&mut self, now: SystemTime) -> Result<Retained, DiskError> {
        if self.read_only {
            return Ok(Retained::default());
        }
        let cutoff = self
            .options
            .retain_age
            .and_then(|age| now.checked_sub(age))
            .and_then(crate::epoch::micros);
        let mut out = Retained::default();
        let mut total = self.total_bytes();
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let reason = if self.options.retain_bytes.is_some_and(|limit| total > limit) {
                RetainReason::Size
            } else if cutoff.is_some_and(|cutoff| oldest.max_time < cutoff) {
                RetainReason::Age
            } else {
                break;
            };
            if let Err(e) = std::fs::remove_file(&oldest.path) {
                let err = DiskError::io(format!("cannot delete {}", oldest.path.display()))(e);
                self.retained.extend(out);
                return Err(err);
            }
            let segment = self.segments.remove(0);
            total -= segment.kept_bytes;
            out.segments.push(DeletedSegment {
                path: segment.path.clone(),
                ids: (segment.records > 0).then_some((segment.first_id, segment.last_id)),
                records: segment.records,
                bytes: segment.kept_bytes,
                reason,
            });
        }
        if !out.is_empty() {
            match (&self.options.fsync, &self.background) {
                (FsyncPolicy::Interval(_), Some(background)) => background.dir_changed(),
                (FsyncPolicy::Always, _) => {
                    let _ = dir::sync_dir(&self.path);
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn remove(path: &Path, recovery: &mut Recovery) -> Result<(), DiskError> {
    std::fs::remove_file(path)
        .map_err(DiskError::io(format!("cannot remove {}", path.display())))?;
    recovery.removed.push(path.to_path_buf());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn a_data_dir_can_move_between_threads_and_be_shared() {
        assert_send_sync::<DataDir>();
        assert_send_sync::<Records<'static>>();
    }

    #[test]
    fn fsync_policies_parse_and_print() {
        assert_eq!(
            "always".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Always
        );
        assert_eq!("never".parse::<FsyncPolicy>().unwrap(), FsyncPolicy::Never);
        assert_eq!(
            "interval".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Interval(Duration::from_secs(1))
        );
        assert_eq!(
            "interval=200ms".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Interval(Duration::from_millis(200))
        );
        for bad in ["sometimes", "interval=0s", "interval=", "Always"] {
            let err = bad.parse::<FsyncPolicy>().unwrap_err().to_string();
            assert!(err.contains("expected always, interval"), "{bad}: {err}");
        }
        for policy in ["always", "never", "interval", "interval=200ms"] {
            assert_eq!(policy.parse::<FsyncPolicy>().unwrap().to_string(), policy);
        }
    }

    #[test]
    fn options_out_of_range_are_refused() {
        for options in [
            DiskOptions {
                segment_bytes: 100,
                ..DiskOptions::default()
            },
            DiskOptions {
                fsync: FsyncPolicy::Interval(Duration::ZERO),
                ..DiskOptions::default()
            },
            DiskOptions {
                retain_bytes: Some(0),
                ..DiskOptions::default()
            },
        ] {
            assert!(
                matches!(options.check(), Err(DiskError::Options(_))),
                "{options:?}"
            );
        }
        assert!(DiskOptions::default().check().is_ok());
    }
}
