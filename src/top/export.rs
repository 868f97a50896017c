//! `w`: writing the events that match the filter to a file, one JSON event per line, byte for byte
//! as `ipckit-top events --format json` prints them (so `--open` reads it back to the same view).
//!
//! The events written are the matches held when the name is confirmed (those arriving later are
//! not). They are written in slices as background work, like a filter's scan, so the monitor answers
//! keys meanwhile; a matching event that leaves history before its slice is written is counted and
//! said. The file is created new: an existing file is never overwritten.

use super::log::{EventLog, Seq};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long a notice stays on screen.
pub(crate) const NOTICE_FOR: Duration = Duration::from_secs(15);

/// Something the monitor has to say, at the foot of the event pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    pub(crate) text: String,
    pub(crate) error: bool,
    pub(crate) at: SystemTime,
}

/// The default file name: `ipckit-YYYYMMDD-HHMMSS.ndjson`, in the current directory.
pub(crate) fn default_name(now: SystemTime, utc: bool) -> String {
    format!(
        "ipckit-{}.ndjson",
        crate::top::ui::clock(now, utc, "%Y%m%d-%H%M%S")
    )
}

/// A write in progress.
#[derive(Debug)]
pub(crate) struct Export {
    /// Where, as said to the user (absolute).
    path: PathBuf,
    out: Option<BufWriter<File>>,
    /// The next seq to write from.
    next: Seq,
    /// Matches below this seq are written (the log's end when the name was confirmed).
    end: Seq,
    written: u64,
    /// Some matching events left history before they were written.
    missed: bool,
}

impl Export {
    /// Creates the file at `path` (which must not exist) for the matches in `from..end`.
    ///
    /// # Errors
    ///
    /// A sentence for the user: the file exists, or cannot be created.
    pub(crate) fn start(path: &str, from: Seq, end: Seq) -> Result<Self, String> {
        let path = path.trim();
        if path.is_empty() {
            return Err("give a file name to write to".to_owned());
        }
        let shown = std::path::absolute(Path::new(path)).unwrap_or_else(|_| PathBuf::from(path));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&shown)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => format!(
                    "{} exists: give another name (nothing was overwritten)",
                    shown.display()
                ),
                _ => format!("cannot create {}: {e}", shown.display()),
            })?;
        Ok(Self {
            path: shown,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            next: from,
            end,
            written: 0,
            missed: false,
        })
    }

    /// Whether the file is written (or failed).
    pub(crate) fn is_done(&self) -> bool {
        self.out.is_none()
    }

    /// Writes up to `max` more matching events of `log`; when the last is written (or writing
    /// failed), closes the file and says what was done.
    pub(crate) fn step(&mut self, log: &EventLog, max: usize, now: SystemTime) -> Option<Notice> {
        let out = self.out.as_mut()?;
        if self.next < log.base() && self.next < self.end {
            // Events between `next` and the base left history unwritten: whether they matched is
            // not known any more.
            self.missed = true;
            self.next = log.base();
        }
        let from = log.match_index_from(self.next);
        let last = log.match_index_from(self.end);
        let to = last.min(from.saturating_add(max));
        let seqs: Vec<Seq> = (from..to).filter_map(|i| log.match_seq(i)).collect();
        let mut failed = None;
        log.store().for_each(seqs.iter().copied(), |_, parts| {
            if failed.is_none() {
                match parts.write_json(out).and_then(|()| out.write_all(b"\n")) {
                    Ok(()) => self.written += 1,
                    Err(e) => failed = Some(e),
                }
            }
        });
        self.next = seqs.last().map_or(self.end, |&s| s + 1);
        let finished = to >= last;
        if failed.is_none() && !finished {
            return None;
        }
        let flushed = match self.out.take() {
            Some(mut out) => out.flush().and_then(|()| out.get_ref().sync_data()),
            None => Ok(()),
        };
        let at = now;
        let count = crate::top::ui::thousands(self.written);
        let noun = if self.written == 1 { "event" } else { "events" };
        Some(match failed.map_or(flushed, Err) {
            Ok(()) => Notice {
                text: format!(
                    "wrote {count} {noun} to {}{}",
                    self.path.display(),
                    if self.missed {
                        " (events left history before they were written: some may be missing)"
                    } else {
                        ""
                    }
                ),
                error: self.missed,
                at,
            },
            Err(e) => Notice {
                text: format!(
                    "cannot write {}: {e} ({count} {noun} written: the file is incomplete)",
                    self.path.display()
                ),
                error: true,
                at,
            },
        })
    }
}
