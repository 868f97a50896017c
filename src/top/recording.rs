//! Recordings: `ipckit-top --open PATH` shows a recording instead of a bus, read-only.
//!
//! A recording is one JSON event per line, as `ipckit-top events --format json` prints it and as `w`
//! writes it (`-` reads it from stdin), optionally compressed with gzip or zstd (told by the first
//! bytes, not by the name), or a data dir of `serve --data-dir` (read with
//! [`DataDir::open_read_only`](crate::store::disk::DataDir::open_read_only), so one that a server is
//! writing to can be read too: it is shown as it was when opened).
//!
//! It is read on a thread of its own, in batches, into the monitor's normal ingest path (so every
//! pane works as on a bus), and the first screen shows as soon as the first batch is in. A line that
//! is not an event is skipped and counted, never fatal: the header says "3 lines skipped, first at
//! line 17". A read error (a truncated gzip stream) stops the reading; what was read is shown and the
//! header says why it stopped.

use super::source::{RecordingStatus, SourceMsg, CHANNEL_CAPACITY, MAX_BATCH};
use super::{run_with_source, State, TopError, TopOptions};
use crate::event_stream::Event;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The longest line read as an event (64 MiB): a longer one is skipped without being held whole.
pub const MAX_LINE: usize = 64 << 20;

/// Why a recording could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The file or directory could not be opened or read.
    #[error("cannot open recording {}: {source}", path.display())]
    Open {
        /// The path given.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A compressed file whose stream does not start as one.
    #[error("cannot read recording {}: {reason}", path.display())]
    Format {
        /// The path given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `-` while stdin is a terminal.
    #[error("--open -: stdin is a terminal; pipe a recording in (… | ipckit-top --open -)")]
    StdinIsTerminal,
    /// A data dir that cannot be read.
    #[cfg(unix)]
    #[error("cannot open recording {}: {source}", path.display())]
    DataDir {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: crate::store::disk::DiskError,
    },
}

/// Where the events of a recording come from.
enum Input {
    /// NDJSON, decompressed if it was compressed.
    Lines(Box<dyn BufRead + Send>),
    /// A data dir, opened read-only.
    #[cfg(unix)]
    Dir(Box<crate::store::disk::DataDir>),
}

/// An opened recording, to be read by [`Recording::read`] or [`Recording::spawn`].
pub struct Recording {
    status: RecordingStatus,
    input: Input,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Compression, told by the first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

fn compression_of(head: &[u8]) -> Compression {
    match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => Compression::None,
    }
}

/// Zstd frames one after another (what `cat a.zst b.zst` and some writers make), decoded in turn.
struct ZstdFrames<R: BufRead> {
    frame: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(frame) = &mut self.frame else {
                return Ok(0);
            };
            let n = frame.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let Some(frame) = self.frame.take() else {
                return Ok(0);
            };
            let mut source = frame.into_inner();
            if source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.frame = Some(
                ruzstd::decoding::StreamingDecoder::new(source)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
            );
        }
    }
}

/// `reader` decompressed as its first bytes say.
fn decompressed(
    reader: Box<dyn BufRead + Send>,
    path: &Path,
) -> Result<Box<dyn BufRead + Send>, RecordingError> {
    let mut reader = reader;
    let mut head = Vec::with_capacity(4);
    (&mut reader)
        .take(4)
        .read_to_end(&mut head)
        .map_err(|source| RecordingError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let compression = compression_of(&head);
    let whole: Box<dyn BufRead + Send> = Box::new(Cursor::new(head).chain(reader));
    const BUFFER: usize = 1 << 20;
    Ok(match compression {
        Compression::None => whole,
        Compression::Gzip => Box::new(BufReader::with_capacity(
            BUFFER,
            flate2::bufread::MultiGzDecoder::new(whole),
        )),
        Compression::Zstd => {
            let frame = ruzstd::decoding::StreamingDecoder::new(whole).map_err(|e| {
                RecordingError::Format {
                    path: path.to_path_buf(),
                    reason: format!("not a zstd stream: {e}"),
                }
            })?;
            Box::new(BufReader::with_capacity(
                BUFFER,
                ZstdFrames { frame: Some(frame) },
            ))
        }
    })
}

/// Opens the recording at `path`: `-` for stdin, a directory for a data dir, else a file (NDJSON,
/// plain, gzip or zstd).
///
/// # Errors
///
/// The path cannot be opened, stdin is a terminal, a zstd stream does not start as one, or a data
/// dir cannot be read (see [`DataDir::open_read_only`](crate::store::disk::DataDir::open_read_only)).
pub fn open_recording(path: &Path) -> Result<Recording, RecordingError> {
    let open_error = |source| RecordingError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut status = RecordingStatus::default();
    if path == Path::new("-") {
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(RecordingError::StdinIsTerminal);
        }
        status.name = "stdin".to_owned();
        let stdin: Box<dyn BufRead + Send> =
            Box::new(BufReader::with_capacity(1 << 20, std::io::stdin()));
        return Ok(Recording {
            status,
            input: Input::Lines(decompressed(stdin, path)?),
        });
    }
    status.name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    if path.is_dir() {
        #[cfg(unix)]
        {
            let (dir, recovery) =
                crate::store::disk::DataDir::open_read_only(path).map_err(|source| {
                    RecordingError::DataDir {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
            let mut notes = Vec::new();
            if let Some(pid) = dir.holder() {
                let who = pid.map_or_else(|| "a server".to_owned(), |p| format!("server pid {p}"));
                notes.push(format!(
                    "{who} is writing to it: shown as it was when opened"
                ));
            }
            if !recovery.damaged.is_empty() {
                notes.push(format!(
                    "{} damaged range(s) not shown",
                    recovery.damaged.len()
                ));
            }
            status.name.push('/');
            status.note = (!notes.is_empty()).then(|| notes.join("; "));
            return Ok(Recording {
                status,
                input: Input::Dir(Box::new(dir)),
            });
        }
        #[cfg(not(unix))]
        return Err(open_error(io::Error::new(
            io::ErrorKind::Unsupported,
            "data dirs are read on Unix only",
        )));
    }
    let file = std::fs::File::open(path).map_err(open_error)?;
    let reader: Box<dyn BufRead + Send> = Box::new(BufReader::with_capacity(1 << 20, file));
    Ok(Recording {
        status,
        input: Input::Lines(decompressed(reader, path)?),
    })
}

/// Reads one line of at most [`MAX_LINE`] bytes into `line` (without its `\n`); `Ok(false)` at the
/// end. A longer line is consumed whole but only its first bytes kept, and `too_long` is set.
fn read_line(
    reader: &mut dyn BufRead,
    line: &mut Vec<u8>,
    too_long: &mut bool,
) -> io::Result<bool> {
    line.clear();
    *too_long = false;
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(any);
        }
        any = true;
        let (chunk, used, done) = match memchr::memchr(b'\n', available) {
            Some(at) => (&available[..at], at + 1, true),
            None => (available, available.len(), false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        if chunk.len() > room {
            *too_long = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(used);
        if done {
            return Ok(true);
        }
    }
}

/// What serde_json says about a line, without its "at line 1" (each is one line).
fn reason(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let what = text.split(" at line ").next().unwrap_or(&text);
    format!("{what} (column {})", err.column())
}

impl Recording {
    /// The recording's name, as the header shows it.
    pub fn name(&self) -> &str {
        &self.status.name
    }

    /// Reads the whole recording on this thread: each batch of events (oldest first, at most
    /// [`MAX_BATCH`]) goes to `batch`, and the status to `status` at the start, whenever something was
    /// skipped, and at the end; either returning false stops the reading. Returns the last status.
    pub fn read(
        self,
        mut batch: impl FnMut(Vec<Arc<Event>>) -> bool,
        mut status: impl FnMut(&RecordingStatus) -> bool,
    ) -> RecordingStatus {
        let Recording {
            status: mut current,
            input,
        } = self;
        if !status(&current) {
            return current;
        }
        let mut events: Vec<Arc<Event>> = Vec::with_capacity(MAX_BATCH);
        let skip = |current: &mut RecordingStatus, at: String, why: String| {
            current.skipped += 1;
            if current.first_skipped.is_none() {
                current.first_skipped = Some(at);
                current.first_skip_reason = Some(why);
            }
        };
        let mut stopped = false;
        match input {
            Input::Lines(mut reader) => {
                let mut line = Vec::new();
                let mut number = 0u64;
                let mut too_long = false;
                loop {
                    match read_line(&mut *reader, &mut line, &mut too_long) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            current.error = Some(format!("after line {number}: {e}"));
                            break;
                        }
                    }
                    number += 1;
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if too_long {
                        skip(
                            &mut current,
                            format!("line {number}"),
                            format!("longer than {} MiB", MAX_LINE >> 20),
                        );
                    } else if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    } else {
                        match serde_json::from_slice::<Event>(&line) {
                            Ok(event) => events.push(Arc::new(event)),
                            Err(e) => skip(&mut current, format!("line {number}"), reason(&e)),
                        }
                    }
                    if events.len() >= MAX_BATCH {
                        let skipped = current.skipped;
                        if !batch(std::mem::take(&mut events)) {
                            stopped = true;
                            break;
                        }
                        events.reserve(MAX_BATCH);
                        if skipped > 0 && !status(&current) {
                            stopped = true;
                            break;
                        }
                    }
                }
            }
            #[cfg(unix)]
            Input::Dir(dir) => {
                for record in dir.read_from(0) {
                    match record {
                        Ok(record) => match record.to_event() {
                            Ok(event) => events.push(Arc::new(event)),
                            Err(e) => {
                                skip(&mut current, format!("id {}", record.id), e.to_string())
                            }
                        },
                        Err(e) => {
                            current.error = Some(e.to_string());
                            break;
                        }
                    }
                    if events.len() >= MAX_BATCH {
                        if !batch(std::mem::take(&mut events)) {
                            stopped = true;
                            break;
                        }
                        events.reserve(MAX_BATCH);
                    }
                }
            }
        }
        if !stopped && !events.is_empty() {
            batch(events);
        }
        current.loaded = true;
        status(&current);
        current
    }

    /// Reads the recording on a thread of its own into a channel of [`SourceMsg`]s (its status as
    /// [`SourceMsg::Recording`], its events as [`SourceMsg::Events`]): what
    /// [`run_with_source`](super::run_with_source) reads. The thread ends at the recording's end or
    /// when the receiver is dropped.
    pub fn spawn(self) -> mpsc::Receiver<SourceMsg> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let status_tx = tx.clone();
        let fail_tx = tx.clone();
        let name = self.status.name.clone();
        let spawned = std::thread::Builder::new()
            .name("ipckit-recording".into())
            .spawn(move || {
                self.read(
                    |events| tx.blocking_send(SourceMsg::Events(events)).is_ok(),
                    |status| {
                        status_tx
                            .blocking_send(SourceMsg::Recording(status.clone()))
                            .is_ok()
                    },
                );
            });
        if let Err(e) = spawned {
            // Without a thread nothing is read: the header says why.
            let _ = fail_tx.try_send(SourceMsg::Recording(RecordingStatus {
                name,
                loaded: true,
                error: Some(format!("cannot start the reading thread: {e}")),
                ..RecordingStatus::default()
            }));
        }
        rx
    }
}

/// Runs the monitor full-screen on the recording at `path` ([`open_recording`]), read on a thread of
/// its own in batches into the monitor's normal ingest path: the first screen shows with the first
/// batch, and the header says `RECORDING`, its name, and what was skipped.
///
/// # Errors
///
/// The filter does not parse, stdout is not a terminal, the recording cannot be opened (all before
/// the screen is touched), or the terminal failed.
pub async fn run_recording(path: &Path, options: TopOptions) -> Result<(), TopError> {
    State::new(&options)?;
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(TopError::NoTerminal);
    }
    let recording = open_recording(path)?;
    run_with_source(options, recording.spawn()).await
}
