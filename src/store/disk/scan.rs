//! Opening a data dir's segments: each is walked frame by frame, every checksum verified (no JSON is
//! parsed), and what the walk found is reported in a [`Recovery`].

use super::format::{self, Frame, HeaderProblem, SegmentHeader, HEADER_LEN};
use super::retain::Retained;
use super::segment::{Segment, Writer};
use super::sys::Mapping;
use super::DiskError;
use parking_lot::Mutex;
use std::fmt;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// What [`DataDir::open`](super::DataDir::open) found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files kept.
    pub segments: usize,
    /// Records that can be read.
    pub records: u64,
    /// Bytes of the segments kept (headers, records, and damaged bytes kept as evidence).
    pub bytes: u64,
    /// The first readable id.
    pub first_id: Option<u64>,
    /// The last readable id.
    pub last_id: Option<u64>,
    /// A torn last record (a write the process did not finish), cut off.
    pub torn: Option<Torn>,
    /// Damaged ranges: kept on disk as found, not served, reported here on every open.
    pub damaged: Vec<Damage>,
    /// Files removed: segments whose creation was cut short, and segments holding no record.
    pub removed: Vec<PathBuf>,
    /// Old segments deleted by the retention limits.
    pub retained: Retained,
    /// How long opening took.
    pub elapsed: Duration,
}

/// A torn last record, cut off the end of the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    /// The segment it was in.
    pub segment: PathBuf,
    /// Where it started (the segment now ends here).
    pub offset: u64,
    /// The bytes cut off.
    pub bytes: u64,
}

/// A damaged range of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file, kept unchanged.
    pub segment: PathBuf,
    /// What is wrong.
    pub kind: DamageKind,
    /// Where the damage starts: everything before it is served.
    pub offset: u64,
    /// The bytes from there to the end of the segment's data, not served.
    pub bytes: u64,
    /// The last id served before the damage.
    pub after_id: Option<u64>,
    /// Records in the damaged range that still check out (after the bad spot), not served.
    pub intact_records: u64,
    /// The first and last ids of those records.
    pub intact_ids: Option<(u64, u64)>,
}

/// What kind of damage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DamageKind {
    /// A record fails its checksum or its framing, with data written after it.
    Checksum,
    /// The segment's header is damaged: none of its records is served.
    Header,
    /// A record checks out but its id is not above the one before it (segments copied in by hand?).
    IdOrder,
    /// The segment ends cleanly, but the next one says records up to `through` were stored before it
    /// (what a power loss can leave when the newer file reached the disk and this one's end did not).
    Missing {
        /// The last id the next segment says was stored before it.
        through: u64,
    },
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records in {} segments ({} bytes)",
            self.records, self.segments, self.bytes
        )?;
        if let (Some(first), Some(last)) = (self.first_id, self.last_id) {
            write!(f, ", ids {first}..={last}")?;
        }
        write!(f, ", opened in {:.3} s", self.elapsed.as_secs_f64())?;
        if let Some(torn) = &self.torn {
            write!(f, "; {torn}")?;
        }
        for damage in &self.damaged {
            write!(f, "; {damage}")?;
        }
        if !self.removed.is_empty() {
            write!(
                f,
                "; removed {} unfinished or empty segment files",
                self.removed.len()
            )?;
        }
        if !self.retained.segments.is_empty() {
            write!(f, "; {}", self.retained)?;
        }
        Ok(())
    }
}

impl fmt::Display for Torn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cut a torn last record ({} bytes at offset {} of {})",
            self.bytes,
            self.offset,
            self.segment.display()
        )
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let after = match self.after_id {
            Some(id) => format!(" after id {id}"),
            None => String::new(),
        };
        match &self.kind {
            DamageKind::Checksum => write!(
                f,
                "damaged record{after} at offset {} of {}: {} bytes not served",
                self.offset,
                self.segment.display(),
                self.bytes
            )?,
            DamageKind::IdOrder => write!(
                f,
                "record out of id order{after} at offset {} of {}: {} bytes not served",
                self.offset,
                self.segment.display(),
                self.bytes
            )?,
            DamageKind::Header => write!(
                f,
                "damaged header in {}: its {} bytes not served",
                self.segment.display(),
                self.bytes
            )?,
            DamageKind::Missing { through } => write!(
                f,
                "records{after} through id {through} missing from the end of {}",
                self.segment.display()
            )?,
        }
        if let Some((first, last)) = self.intact_ids {
            write!(
                f,
                " ({} records there still check out, ids {first}..={last})",
                self.intact_records
            )?;
        }
        Ok(())
    }
}

/// How a segment's walk ended.
#[derive(Debug)]
pub(super) enum End {
    /// At the end of the file, or where only zeros follow (`tail` bytes of them).
    Clean { tail: u64 },
    /// A bad frame with nothing intact after it: `bytes` of a record whose write did not finish.
    Torn { offset: usize, bytes: u64 },
    /// A bad frame with intact records after it.
    Damaged(Damage),
}

/// What scanning a segment gave.
#[derive(Debug)]
pub(super) enum Scanned {
    /// A segment file that never got its header (all zeros): nothing to keep.
    Empty,
    /// A segment with its records noted, and how its walk ended.
    Segment {
        segment: Box<Segment>,
        end: End,
        header: Option<SegmentHeader>,
        /// The highest id seen in it, intact records past damage included.
        max_id: u64,
    },
}

/// Scans the segments at `paths`, as [`scan`] with a floor of 0 (ids rise within each), on up to
/// four threads (this one included): on a machine with spare cores the checksums of a large data dir
/// are verified in parallel and more reads are in flight. Results are in the order of `paths`. With
/// `copy_last`, the last segment is read into a private copy rather than mapped (see [`scan`]).
pub(super) fn scan_all(paths: &[PathBuf], copy_last: bool) -> Vec<Result<Scanned, DiskError>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(4)
        .min(paths.len());
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Scanned, DiskError>>>> =
        paths.iter().map(|_| Mutex::new(None)).collect();
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(path) = paths.get(i) else { break };
        let copy = copy_last && i + 1 == paths.len();
        *results[i].lock() = Some(scan_from(path, 0, copy));
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            // A thread that cannot be started leaves its share to the others and to this one.
            let _ = std::thread::Builder::new()
                .name("ipckit-disk-scan".into())
                .spawn_scoped(s, work);
        }
        work();
    });
    results
        .into_iter()
        .zip(paths)
        .map(|(slot, path)| {
            slot.into_inner().unwrap_or_else(|| {
                Err(DiskError::Io {
                    context: format!("cannot scan {}", path.display()),
                    source: std::io::Error::other("scan thread ended early"),
                })
            })
        })
        .collect()
}

/// Scans the segment at `path`: checks its header, walks its frames while
/// they check out and their ids rise above `floor` (the last id served before it), and says how it ended.
pub(super) fn scan(path: &Path, floor: u64) -> Result<Scanned, DiskError> {
    scan_from(path, floor, false)
}

/// [`scan`], the segment mapped or, with `copy`, read into a private copy that stays valid whatever
/// another process does to the file (a read-only open's view of a segment a server may be writing).
fn scan_from(path: &Path, floor: u64, copy: bool) -> Result<Scanned, DiskError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(DiskError::io(format!(
            "cannot open segment {}",
            path.display()
        )))?;
    let file_len = file
        .metadata()
        .map_err(DiskError::io(format!(
            "cannot inspect segment {}",
            path.display()
        )))?
        .len();
    let file_len = usize::try_from(file_len).map_err(|_| DiskError::NotASegment {
        path: path.to_path_buf(),
    })?;
    let map = if copy {
        Mapping::copy_of(&file, file_len).map_err(DiskError::io(format!(
            "cannot read segment {}",
            path.display()
        )))?
    } else {
        // SAFETY: the file is in a data dir only this user can write to, locked by this process or
        // (read-only) not the one a server truncates: it is mapped read-only and nothing truncates
        // it while mapped (a cut remaps first).
        let map = unsafe { Mapping::new(&file, file_len, false) }.map_err(DiskError::io(
            format!("cannot map segment {}", path.display()),
        ))?;
        map.advise_sequential();
        map
    };
    let bytes = map.bytes();
    let header = match SegmentHeader::decode(bytes) {
        Ok(header) => Some(header),
        Err(HeaderProblem::Zero) if bytes.iter().all(|&b| b == 0) => return Ok(Scanned::Empty),
        Err(HeaderProblem::Zero | HeaderProblem::Checksum) => None,
        Err(HeaderProblem::Magic) => {
            return Err(DiskError::NotASegment {
                path: path.to_path_buf(),
            })
        }
        Err(HeaderProblem::Version(found)) => {
            return Err(DiskError::Version {
                path: path.to_path_buf(),
                found: found.to_string(),
            })
        }
    };
    let Some(header) = header else {
        let (intact_records, intact_ids) = format::intact_after(bytes, HEADER_LEN, floor);
        let mut segment = Segment::new(path.to_path_buf(), map, None, Writer::Map);
        segment.damaged = true;
        segment.kept_bytes = file_len as u64;
        let damage = Damage {
            segment: path.to_path_buf(),
            kind: DamageKind::Header,
            offset: 0,
            bytes: file_len as u64,
            after_id: None,
            intact_records,
            intact_ids,
        };
        let max_id = intact_ids.map_or(0, |(_, last)| last);
        return Ok(Scanned::Segment {
            segment: Box::new(segment),
            end: End::Damaged(damage),
            header: None,
            max_id,
        });
    };

    // Note the records into a segment that gets its map once the walk over the map is done.
    let mut segment = Segment::new(path.to_path_buf(), Mapping::empty(), None, Writer::Map);
    let mut last = floor;
    let mut at = HEADER_LEN;
    // The walk stops at the first frame that is not a good record with a rising id.
    while let Frame::Record {
        end,
        id,
        time_micros,
    } = format::check_frame(bytes, at)
    {
        if id <= last {
            break;
        }
        segment.note(at, end, id, time_micros);
        last = id;
        at = end;
    }
    let data_end = format::data_end(bytes, at);
    let end = if data_end == at {
        End::Clean {
            tail: (bytes.len() - at) as u64,
        }
    } else {
        // A bad frame, or a zero frame header with data after it: torn if nothing intact follows.
        let (intact_records, intact_ids) = format::intact_after(bytes, at + 1, last);
        let out_of_order = matches!(format::check_frame(bytes, at), Frame::Record { .. });
        if intact_records == 0 && !out_of_order {
            End::Torn {
                offset: at,
                bytes: (data_end - at) as u64,
            }
        } else {
            End::Damaged(Damage {
                segment: path.to_path_buf(),
                kind: if out_of_order {
                    DamageKind::IdOrder
                } else {
                    DamageKind::Checksum
                },
                offset: at as u64,
                bytes: (data_end - at) as u64,
                after_id: (last > 0).then_some(last),
                intact_records,
                intact_ids,
            })
        }
    };
    let max_id = match &end {
        End::Damaged(d) => d.intact_ids.map_or(last, |(_, l)| l.max(last)),
        _ => last,
    };
    segment.map = std::sync::Arc::new(map);
    if let End::Damaged(damage) = &end {
        segment.damaged = true;
        segment.kept_bytes = (damage.offset + damage.bytes).max(segment.len as u64);
    }
    Ok(Scanned::Segment {
        segment: Box::new(segment),
        end,
        header: Some(header),
        max_id,
    })
}
