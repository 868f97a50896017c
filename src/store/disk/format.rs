//! The bytes on disk: the segment header, the record frame, and how a frame is checked.
//!
//! A segment file is a 32-byte header and then frames, back to back, in increasing id order:
//!
//! ```text
//! header   0..8    magic "ipkseg\r\n"
//!          8..12   format version, u32 little-endian (1)
//!          12..16  CRC-32C of bytes 0..12 and 16..32
//!          16..24  base id: the id of the first record the segment was created for
//!          24..32  previous id: the highest id stored before this segment was created (0: none)
//! frame    0..4    body length n, u32 little-endian (24 ..= 256 MiB)
//!          4..8    CRC-32C of bytes 0..4 and of the body
//!          8..8+n  body: id u64 | time_micros i64 | type length u32 | resource length u32
//!                  (u32::MAX: no resource) | type | resource | data (JSON text)
//! ```
//!
//! Everything after the last frame is zero (a segment is preallocated), so a frame whose first eight
//! bytes are zero marks the end.

use super::record::RecordRef;
use std::sync::atomic::{compiler_fence, Ordering};

/// The format version this build writes and reads.
pub(super) const FORMAT_VERSION: u32 = 1;
/// The first eight bytes of every segment.
pub(super) const MAGIC: [u8; 8] = *b"ipkseg\r\n";
/// Bytes of the segment header; the first frame starts here.
pub(super) const HEADER_LEN: usize = 32;
/// Bytes of a frame's length and checksum.
pub(super) const FRAME_HEADER: usize = 8;
/// Bytes of the body's fixed fields (id, time, the two lengths).
pub(super) const FIXED_BODY: usize = 24;
/// The largest body a frame may have.
pub(super) const MAX_BODY: usize = 256 << 20;
/// The resource length that means "no resource".
const NO_RESOURCE: u32 = u32::MAX;

/// What a segment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SegmentHeader {
    /// The id of the first record the segment was created for.
    pub base_id: u64,
    /// The highest id stored before the segment was created (0: none).
    pub prev_id: u64,
}

/// Why a segment header cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeaderProblem {
    /// All zero (or shorter than a header and all zero): a segment whose creation never reached the disk.
    Zero,
    /// Not an ipckit segment at all.
    Magic,
    /// An ipckit segment of another format version.
    Version(u32),
    /// The right magic and version but a checksum mismatch: the header is damaged.
    Checksum,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[0..8].copy_from_slice(&MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.base_id.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.prev_id.to_le_bytes());
        let crc = header_crc(&bytes);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Reads the header at the start of `bytes` (a whole segment, or at least its first bytes).
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
        let Some(head) = bytes.get(..HEADER_LEN) else {
            return Err(if bytes.iter().all(|&b| b == 0) {
                HeaderProblem::Zero
            } else {
                HeaderProblem::Magic
            });
        };
        if head.iter().all(|&b| b == 0) {
            return Err(HeaderProblem::Zero);
        }
        if head[0..8] != MAGIC {
            return Err(HeaderProblem::Magic);
        }
        let version = u32_at(head, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderProblem::Version(version));
        }
        if u32_at(head, 12) != header_crc(head) {
            return Err(HeaderProblem::Checksum);
        }
        Ok(SegmentHeader {
            base_id: u64_at(head, 16),
            prev_id: u64_at(head, 24),
        })
    }
}

fn header_crc(head: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&head[0..12]), &head[16..HEADER_LEN])
}

/// The bytes `record`'s frame takes, or `None` when its body would exceed [`MAX_BODY`].
pub(super) fn frame_len(record: &RecordRef<'_>) -> Option<usize> {
    let body = FIXED_BODY
        .checked_add(record.event_type.len())?
        .checked_add(record.resource.map_or(0, str::len))?
        .checked_add(record.data.len())?;
    (body <= MAX_BODY).then_some(FRAME_HEADER + body)
}

/// Writes `record`'s frame into `out`, which must be exactly [`frame_len`] bytes: the body first, then
/// the length and checksum, so a process killed in the middle leaves either the whole frame or a zero
/// frame header in front of part of a body (which the recovery scan cuts off as a torn record).
pub(super) fn write_frame(out: &mut [u8], record: &RecordRef<'_>) {
    let (head, body) = out.split_at_mut(FRAME_HEADER);
    let type_len = record.event_type.len();
    let resource = record.resource.unwrap_or("");
    // Lengths fit a u32: frame_len bounded the whole body by MAX_BODY.
    let resource_len = record.resource.map_or(NO_RESOURCE, |r| {
        u32::try_from(r.len()).unwrap_or(NO_RESOURCE)
    });
    body[0..8].copy_from_slice(&record.id.to_le_bytes());
    body[8..16].copy_from_slice(&record.time_micros.to_le_bytes());
    body[16..20].copy_from_slice(&(type_len as u32).to_le_bytes());
    body[20..24].copy_from_slice(&resource_len.to_le_bytes());
    let (type_bytes, rest) = body[FIXED_BODY..].split_at_mut(type_len);
    type_bytes.copy_from_slice(record.event_type.as_bytes());
    let (resource_bytes, data) = rest.split_at_mut(resource.len());
    resource_bytes.copy_from_slice(resource.as_bytes());
    data.copy_from_slice(record.data);
    let len = (body.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), body);
    let mut word = [0u8; FRAME_HEADER];
    word[0..4].copy_from_slice(&len);
    word[4..8].copy_from_slice(&crc.to_le_bytes());
    // The body's stores come before the header's.
    compiler_fence(Ordering::Release);
    head.copy_from_slice(&word);
}

/// What is found where a frame should start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Frame {
    /// A whole frame whose checksum matches.
    Record {
        /// Where the next frame starts.
        end: usize,
        /// The record's id.
        id: u64,
        /// The record's time.
        time_micros: i64,
    },
    /// Eight zero bytes, or fewer than eight bytes left, all zero: the end of the records.
    End,
    /// Anything else: a length out of range or past the end, a checksum mismatch, or lengths inside
    /// the body that do not add up.
    Bad,
}

/// Checks the frame starting at `at` in `buf` (verifying its checksum).
#[inline]
pub(super) fn check_frame(buf: &[u8], at: usize) -> Frame {
    let Some(head) = buf.get(at..at.saturating_add(FRAME_HEADER)) else {
        let rest = buf.get(at..).unwrap_or(&[]);
        return if rest.iter().all(|&b| b == 0) {
            Frame::End
        } else {
            Frame::Bad
        };
    };
    let len = u32_at(head, 0) as usize;
    let crc = u32_at(head, 4);
    if len == 0 && crc == 0 {
        return Frame::End;
    }
    if !(FIXED_BODY..=MAX_BODY).contains(&len) {
        return Frame::Bad;
    }
    let start = at + FRAME_HEADER;
    let Some(body) = buf.get(start..start + len) else {
        return Frame::Bad;
    };
    if crc32c::crc32c_append(crc32c::crc32c(&head[0..4]), body) != crc {
        return Frame::Bad;
    }
    let type_len = u32_at(body, 16) as usize;
    let resource_len = match u32_at(body, 20) {
        NO_RESOURCE => 0,
        n => n as usize,
    };
    if type_len.saturating_add(resource_len) > len - FIXED_BODY {
        return Frame::Bad;
    }
    Frame::Record {
        end: start + len,
        id: u64_at(body, 0),
        time_micros: u64_at(body, 8) as i64,
    }
}

/// The id and time of the frame at `at`, read without checking it (the frame was checked when the
/// segment was scanned or written).
#[inline]
pub(super) fn peek(buf: &[u8], at: usize) -> Option<(usize, u64, i64)> {
    let head = buf.get(at..at.checked_add(FRAME_HEADER + 16)?)?;
    let len = u32_at(head, 0) as usize;
    Some((
        at + FRAME_HEADER + len,
        u64_at(head, 8),
        u64_at(head, 16) as i64,
    ))
}

/// The record in the frame at `at`, after checking its checksum; `None` if it does not check out or
/// its type or resource is not UTF-8.
pub(super) fn read_frame(buf: &[u8], at: usize) -> Option<(RecordRef<'_>, usize)> {
    let Frame::Record {
        end,
        id,
        time_micros,
    } = check_frame(buf, at)
    else {
        return None;
    };
    let body = buf.get(at + FRAME_HEADER..end)?;
    let type_len = u32_at(body, 16) as usize;
    let resource_len = u32_at(body, 20);
    let (event_type, rest) = body.get(FIXED_BODY..)?.split_at_checked(type_len)?;
    let (resource, data) = match resource_len {
        NO_RESOURCE => (None, rest),
        n => {
            let (resource, data) = rest.split_at_checked(n as usize)?;
            (Some(std::str::from_utf8(resource).ok()?), data)
        }
    };
    let record = RecordRef {
        id,
        time_micros,
        event_type: std::str::from_utf8(event_type).ok()?,
        resource,
        data,
    };
    Some((record, end))
}

/// Walks the frames of `buf[from..]` that still check out past a bad spot: after the bad frame, every
/// later offset is tried (runs of zeros are skipped), and from each frame found the walk goes on frame
/// by frame. Only frames with ids above `floor` and rising count.
///
/// Returns how many were found and the first and last of their ids.
pub(super) fn intact_after(buf: &[u8], from: usize, floor: u64) -> (u64, Option<(u64, u64)>) {
    let mut at = from;
    let mut count = 0u64;
    let mut ids: Option<(u64, u64)> = None;
    let mut floor = floor;
    while at + FRAME_HEADER + FIXED_BODY <= buf.len() {
        match check_frame(buf, at) {
            Frame::Record { end, id, .. } if id > floor => {
                count += 1;
                ids = Some(ids.map_or((id, id), |(first, _)| (first, id)));
                floor = id;
                at = end;
            }
            Frame::End => {
                // A frame's first non-zero byte is among its first four (its length is at least 24),
                // so jump to three bytes before the next non-zero byte.
                match buf[at..].iter().position(|&b| b != 0) {
                    Some(p) => at += p.saturating_sub(3).max(1),
                    None => break,
                }
            }
            _ => at += 1,
        }
    }
    (count, ids)
}

/// One past the last non-zero byte of `buf[from..]`, or `from` if they are all zero.
pub(super) fn data_end(buf: &[u8], from: usize) -> usize {
    let tail = buf.get(from..).unwrap_or(&[]);
    // Whole 8-byte words from the end first: a preallocated tail is mostly zeros.
    let mut end = tail.len();
    while end >= 8 {
        let word = u64::from_ne_bytes([
            tail[end - 8],
            tail[end - 7],
            tail[end - 6],
            tail[end - 5],
            tail[end - 4],
            tail[end - 3],
            tail[end - 2],
            tail[end - 1],
        ]);
        if word != 0 {
            break;
        }
        end -= 8;
    }
    while end > 0 && tail[end - 1] == 0 {
        end -= 1;
    }
    from + end
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, data: &[u8]) -> RecordRef<'_> {
        RecordRef {
            id,
            time_micros: -5,
            event_type: "task.progress",
            resource: Some("job-1"),
            data,
        }
    }

    fn frames(records: &[RecordRef<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            let n = frame_len(r).unwrap();
            let at = out.len();
            out.resize(at + n, 0);
            write_frame(&mut out[at..], r);
        }
        out
    }

    #[test]
    fn a_frame_reads_back_as_written() {
        let mut r = record(7, br#"{"a":1}"#);
        let bytes = frames(&[r]);
        assert_eq!(bytes.len(), FRAME_HEADER + FIXED_BODY + 13 + 5 + 7);
        let (back, end) = read_frame(&bytes, 0).unwrap();
        assert_eq!((back, end), (r, bytes.len()));
        r.resource = None;
        let bytes = frames(&[r]);
        assert_eq!(read_frame(&bytes, 0).unwrap().0, r);
        r.resource = Some("");
        let bytes = frames(&[r]);
        assert_eq!(read_frame(&bytes, 0).unwrap().0.resource, Some(""));
        assert_eq!(peek(&bytes, 0), Some((bytes.len(), 7, -5)));
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let bytes = frames(&[record(1, b"[1,2,3]")]);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    !matches!(check_frame(&bad, 0), Frame::Record { .. }),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn zeros_end_the_records_and_a_cut_frame_is_bad() {
        let bytes = frames(&[record(1, b"null")]);
        let mut padded = bytes.clone();
        padded.extend([0u8; 40]);
        assert_eq!(check_frame(&padded, bytes.len()), Frame::End);
        assert_eq!(check_frame(&bytes, bytes.len()), Frame::End);
        assert_eq!(check_frame(&bytes[..bytes.len() - 1], 0), Frame::Bad);
        assert_eq!(check_frame(&bytes[..5], 0), Frame::Bad);
        assert_eq!(check_frame(&[0, 0, 0], 0), Frame::End);
    }

    #[test]
    fn the_frames_after_a_damaged_one_are_found_and_counted() {
        let data: Vec<Vec<u8>> = (0..20)
            .map(|i| format!("{{\"i\":{i}}}").into_bytes())
            .collect();
        let records: Vec<_> = (0..20).map(|i| record(i + 1, &data[i as usize])).collect();
        let mut bytes = frames(&records);
        let second = frame_len(&records[0]).unwrap();
        // Damage the length of the second frame so it cannot be skipped by its length.
        bytes[second] ^= 0x40;
        bytes.extend([0u8; 100]);
        assert_eq!(check_frame(&bytes, second), Frame::Bad);
        let (count, ids) = intact_after(&bytes, second + 1, 1);
        assert_eq!((count, ids), (18, Some((3, 20))));
        // Only ids above the floor count.
        assert_eq!(intact_after(&bytes, second + 1, 10).0, 10);
        assert_eq!(intact_after(&[0u8; 1000], 0, 0), (0, None));
    }

    #[test]
    fn headers_round_trip_and_foreign_ones_are_told_apart() {
        let header = SegmentHeader {
            base_id: 17,
            prev_id: 16,
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        let mut other = bytes;
        other[8] = 2;
        assert_eq!(
            SegmentHeader::decode(&other),
            Err(HeaderProblem::Version(2))
        );
        let mut damaged = bytes;
        damaged[20] ^= 1;
        assert_eq!(
            SegmentHeader::decode(&damaged),
            Err(HeaderProblem::Checksum)
        );
        assert_eq!(
            SegmentHeader::decode(b"hello world, this is text, not a segment"),
            Err(HeaderProblem::Magic)
        );
        assert_eq!(SegmentHeader::decode(&[0u8; 10]), Err(HeaderProblem::Zero));
        assert_eq!(SegmentHeader::decode(&[0u8; 64]), Err(HeaderProblem::Zero));
        assert_eq!(SegmentHeader::decode(b"short"), Err(HeaderProblem::Magic));
    }

    #[test]
    fn data_end_finds_the_last_non_zero_byte() {
        let mut buf = vec![0u8; 100];
        assert_eq!(data_end(&buf, 10), 10);
        buf[42] = 1;
        assert_eq!(data_end(&buf, 10), 43);
        assert_eq!(data_end(&buf, 50), 50);
        buf[99] = 1;
        assert_eq!(data_end(&buf, 0), 100);
        assert_eq!(data_end(&buf, 200), 200);
    }
}
