//! Reading records back in id order, borrowed from the segments' maps.

use super::format;
use super::record::RecordRef;
use super::{DataDir, DiskError};

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
