//! Reading records back in id order, borrowed from the segments' maps.

use super::format;
use super::record::RecordRef;
use super::sys::Mapping;
use super::{DataDir, DiskError};
use std::path::Path;
use std::sync::Arc;

/// The records of a data dir from some id on, in id order: see [`DataDir::read_from`].
///
/// Each record's checksum is verified again as it is read; a mismatch (the file changed on disk since
/// it was opened) yields one [`DiskError::Corrupt`] and ends the iteration. Damaged ranges found when
/// the data dir was opened are skipped: the ids jump there, as the [`Recovery`](super::Recovery) said.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    dir: &'a DataDir,
    segment: usize,
    offset: usize,
    done: bool,
}

impl<'a> Records<'a> {
    pub(super) fn new(dir: &'a DataDir, segment: usize, offset: usize) -> Records<'a> {
        Records {
            dir,
            segment,
            offset,
            done: false,
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordRef<'a>, DiskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let Some(segment) = self.dir.segments.get(self.segment) else {
                self.done = true;
                return None;
            };
            if self.offset >= segment.len {
                self.segment += 1;
                self.offset = format::HEADER_LEN;
                continue;
            }
            return match format::read_frame(segment.bytes(), self.offset) {
                Some((record, end)) => {
                    self.offset = end;
                    Some(Ok(record))
                }
                None => {
                    self.done = true;
                    Some(Err(DiskError::Corrupt {
                        path: segment.path.clone(),
                        offset: self.offset as u64,
                    }))
                }
            };
        }
    }
}

/// One segment as a [`Cursor`] sees it: its map and the records it served when the cursor was made.
#[derive(Debug, Clone)]
struct View {
    map: Arc<Mapping>,
    len: usize,
    path: Arc<Path>,
}

/// The records of a data dir from some id on, in id order, like [`Records`] but owning what it reads
/// (the segments' maps), so it can be read on another thread while the [`DataDir`] takes appends:
/// see [`DataDir::cursor_from`].
///
/// It reads the records the data dir served when the cursor was made, and no later ones. A segment
/// that retention deletes meanwhile stays readable through the cursor (its map lives until the cursor
/// goes). Each record's checksum is verified as it is read; a mismatch yields one
/// [`DiskError::Corrupt`] and ends the reading. When it goes, the pages it read are given back to the
/// kernel (they stay in the page cache), so they do not count as this process's memory.
#[derive(Debug, Clone)]
pub struct Cursor {
    views: Vec<View>,
    segment: usize,
    offset: usize,
    done: bool,
}

impl Cursor {
    /// The next record, borrowed from the cursor; `None` at the end.
    pub fn next_record(&mut self) -> Option<Result<RecordRef<'_>, DiskError>> {
        if self.done {
            return None;
        }
        loop {
            let Some(view) = self.views.get(self.segment) else {
                self.done = true;
                return None;
            };
            if self.offset < view.len {
                break;
            }
            self.segment += 1;
            self.offset = format::HEADER_LEN;
        }
        let view = &self.views[self.segment];
        match format::read_frame(view.map.prefix(view.len), self.offset) {
            Some((record, end)) => {
                self.offset = end;
                Some(Ok(record))
            }
            None => {
                self.done = true;
                Some(Err(DiskError::Corrupt {
                    path: view.path.to_path_buf(),
                    offset: self.offset as u64,
                }))
            }
        }
    }
}

impl Drop for Cursor {
    /// Gives the pages read back to the kernel (the data stays in the page cache), so what a reader
    /// went through does not stay counted in this process's resident memory.
    fn drop(&mut self) {
        let read = self.segment.saturating_add(1).min(self.views.len());
        for view in &self.views[..read] {
            view.map.release_before(view.len);
        }
    }
}

impl DataDir {
    /// A [`Cursor`] over the records from the first one with an id at or above `id`: what
    /// [`DataDir::read_from`] reads, but owning the segments' maps instead of borrowing the data dir,
    /// so it can be read without holding whatever lock guards the appends.
    pub fn cursor_from(&self, id: u64) -> Cursor {
        let start = self
            .segments
            .iter()
            .position(|s| s.records > 0 && s.last_id >= id);
        let Some(start) = start else {
            return Cursor {
                views: Vec::new(),
                segment: 0,
                offset: format::HEADER_LEN,
                done: true,
            };
        };
        let offset = self.segments[start].seek(id);
        let views = self.segments[start..]
            .iter()
            .filter(|s| s.records > 0)
            .map(|s| View {
                map: Arc::clone(&s.map),
                len: s.len,
                path: Arc::from(s.path.as_path()),
            })
            .collect();
        Cursor {
            views,
            segment: 0,
            offset,
            done: false,
        }
    }
}
