//! What the retention limits deleted: whole segments, oldest first, never the newest one.

use std::fmt;
use std::path::PathBuf;

/// Segments deleted by the retention limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retained {
    /// The segments, oldest first.
    pub segments: Vec<DeletedSegment>,
}

/// One deleted segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedSegment {
    /// Its file.
    pub path: PathBuf,
    /// The first and last ids it served, if it served any.
    pub ids: Option<(u64, u64)>,
    /// Records it served.
    pub records: u64,
    /// Bytes it counted for.
    pub bytes: u64,
    /// Which limit deleted it.
    pub reason: RetainReason,
}

/// Which retention limit deleted a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainReason {
    /// The data dir held more than `retain_bytes`.
    Size,
    /// Every record in it was older than `retain_age`.
    Age,
}

impl Retained {
    /// Records deleted.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }

    /// Bytes deleted.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Whether nothing was deleted.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Adds what `other` deleted.
    pub(super) fn extend(&mut self, other: Retained) {
        self.segments.extend(other.segments);
    }
}

impl fmt::Display for Retained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retention deleted {} segments ({} records, {} bytes)",
            self.segments.len(),
            self.records(),
            self.bytes()
        )?;
        let mut ids = self.segments.iter().filter_map(|s| s.ids);
        if let Some((first, last)) = ids.next() {
            let last = ids.next_back().map_or(last, |(_, l)| l);
            write!(f, ", ids {first}..={last}")?;
        }
        Ok(())
    }
}
