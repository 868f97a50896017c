//! The proxy process: starts the server, relays both ways on two threads, copies its stderr, forwards
//! signals, and exits as the server did.
//!
//! The two relay directions run on plain threads with blocking reads and writes: a line that
//! arrives wakes its thread straight from the pipe, and our own stdin and stdout are used exactly as
//! the client handed them over (a pipe, a file, a terminal), never switched to non-blocking mode
//! behind the client's back. A relay thread does only what must happen before a line is written
//! (the [`Gate`]'s decision, a copy of the line); an observer thread works out the events from the
//! copies, and the tokio runtime publishes them, forwards signals and waits for the server. On
//! Linux the observer and the runtime run at a lower priority (nice 10): on a busy machine the
//! relay and the server come first, and what the observer cannot keep up with is dropped and
//! counted, never waited for. (Not lower still: on a machine busy compiling, the monitor should
//! still see calls within a fraction of a second.)

use super::gate::Gate;
use super::publish::{EventSink, Publisher};
use super::relay::{relay, End, Lines};
use super::tracker::{Action, Side, Tracker};
use super::{McpError, McpOptions};
use crate::event_stream::Event;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// After the server exits, how long its stdout and stderr may stay open (held by a process it left
/// behind) before the proxy stops waiting for them.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long the last events may take to reach the bus when the server has exited.
const FINAL_PUBLISH: Duration = Duration::from_secs(2);
/// A stderr line longer than this is cut in its `log.stderr` event (the bytes copied are whole).
const MAX_STDERR_EVENT: usize = 16 * 1024;
/// Bytes of copied lines waiting for the observer at most; past it, lines go unobserved (counted).
const MAX_QUEUED: usize = 64 << 20;
/// After a wake-up, how long the observer lets copies pile up before it reads them: a busy relay
/// then hands over many reads per wake-up instead of waking it for each.
const LINGER: Duration = Duration::from_millis(5);
/// The niceness of the observer and the runtime (Linux).
const OBSERVER_NICE: i32 = 10;

/// The signals passed on to the server.
const FORWARDED: [(SignalKind, i32); 6] = [
    (SignalKind::interrupt(), libc::SIGINT),
    (SignalKind::terminate(), libc::SIGTERM),
    (SignalKind::hangup(), libc::SIGHUP),
    (SignalKind::quit(), libc::SIGQUIT),
    (SignalKind::user_defined1(), libc::SIGUSR1),
    (SignalKind::user_defined2(), libc::SIGUSR2),
];

/// What the relay threads hand the observer.
enum Note {
    /// One read's lines (each ending in `\n`, as they arrived), when they were read, and the call
    /// numbers of the tokens the gate added (by line index).
    Lines {
        side: Side,
        at: (Instant, SystemTime),
        bytes: Vec<u8>,
        injected: Vec<(usize, u64)>,
    },
    /// The server exited (`how`); answered with the number of requests it left unanswered.
    Exited {
        how: String,
        at: (Instant, SystemTime),
        done: oneshot::Sender<usize>,
    },
}

/// The relay side of the way to the observer.
#[derive(Clone)]
struct ToObserver {
    tx: mpsc::Sender<Note>,
    queued: Arc<AtomicUsize>,
    sink: EventSink,
}

/// One relay direction: the gate's decisions, and copies of the lines for the observer.
struct Follow {
    side: Side,
    gate: Gate,
    observer: ToObserver,
    bytes: Vec<u8>,
    injected: Vec<(usize, u64)>,
    lines: usize,
    unseen: u64,
}

impl Follow {
    fn new(side: Side, gate: &Gate, observer: &ToObserver) -> Self {
        Self {
            side,
            gate: gate.clone(),
            observer: observer.clone(),
            bytes: Vec::new(),
            injected: Vec::new(),
            lines: 0,
            unseen: 0,
        }
    }
}

impl Lines for Follow {
    fn line(&mut self, line: &[u8]) -> Action {
        let (action, injected) = self.gate.decide(self.side, line);
        let queued = self.observer.queued.load(Ordering::Relaxed);
        if queued + self.bytes.len() + line.len() < MAX_QUEUED {
            if let Some(n) = injected {
                self.injected.push((self.lines, n));
            }
            self.bytes.extend_from_slice(line);
            self.bytes.push(b'\n');
            self.lines += 1;
        } else {
            self.unseen += 1;
        }
        action
    }

    fn before_write(&mut self) {
        if self.unseen > 0 {
            self.observer.sink.count_dropped(
                std::mem::take(&mut self.unseen),
                "the events come faster than they can be worked out",
            );
        }
        if self.lines == 0 {
            return;
        }
        let capacity = self.bytes.len();
        let bytes = std::mem::replace(&mut self.bytes, Vec::with_capacity(capacity));
        self.observer
            .queued
            .fetch_add(bytes.len(), Ordering::Relaxed);
        let note = Note::Lines {
            side: self.side,
            at: (Instant::now(), SystemTime::now()),
            bytes,
            injected: std::mem::take(&mut self.injected),
        };
        self.lines = 0;
        if let Err(mpsc::SendError(Note::Lines { bytes, .. })) = self.observer.tx.send(note) {
            self.observer
                .queued
                .fetch_sub(bytes.len(), Ordering::Relaxed);
        }
    }
}

/// The observer thread: events from the relayed lines, handed to the publisher.
fn observe(
    rx: mpsc::Receiver<Note>,
    queued: Arc<AtomicUsize>,
    mut tracker: Tracker,
    sink: EventSink,
) {
    let mut events = Vec::new();
    let mut handle = |note: Note, events: &mut Vec<Event>| -> bool {
        match note {
            Note::Lines {
                side,
                at,
                bytes,
                injected,
            } => {
                let mut injected = injected.into_iter().peekable();
                let mut start = 0;
                for (index, end) in memchr::memchr_iter(b'\n', &bytes).enumerate() {
                    let call = injected.next_if(|(i, _)| *i == index).map(|(_, n)| n);
                    tracker.line(side, &bytes[start..end], at, call, events);
                    start = end + 1;
                }
                queued.fetch_sub(bytes.len(), Ordering::Relaxed);
                true
            }
            Note::Exited { how, at, done } => {
                let unanswered = tracker.pending();
                tracker.server_exited(&how, at, events);
                sink.send(events);
                let _ = done.send(unanswered);
                false
            }
        }
    };
    while let Ok(note) = rx.recv() {
        if !handle(note, &mut events) {
            return;
        }
        std::thread::sleep(LINGER);
        while let Ok(note) = rx.try_recv() {
            if !handle(note, &mut events) {
                return;
            }
        }
        sink.send(&mut events);
    }
}

/// Lowers this thread's priority (Linux: niceness is per thread, and threads it starts inherit it).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority only read their arguments; failing leaves the priority as
        // it was, which is harmless.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid);
            if let Ok(tid) = libc::id_t::try_from(tid) {
                libc::setpriority(libc::PRIO_PROCESS, tid, OBSERVER_NICE);
            }
        }
    }
}

/// Bytes a pipe to or from the server holds (Linux; 64 KiB by default): a long message then crosses
/// in fewer reads and writes, and wakes each side fewer times.
const PIPE_SIZE: i32 = 1 << 20;

/// Enlarges one of the server's pipes, if the system allows (Linux; else nothing happens).
fn widen_pipe(pipe: &impl std::os::fd::AsRawFd) {
    #[cfg(target_os = "linux")]
    // SAFETY: F_SETPIPE_SZ only changes the capacity of the pipe behind this open descriptor;
    // failing (e.g. above /proc/sys/fs/pipe-max-size) leaves it as it was.
    unsafe {
        libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pipe;
}

/// Runs a thread; the receiver answers when it has finished.
fn spawn(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> Result<oneshot::Receiver<()>, McpError> {
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            body();
            let _ = done.send(());
        })
        .map_err(|source| McpError::Io {
            context: "cannot start a relay thread".into(),
            source,
        })?;
    Ok(finished)
}

pub(super) async fn run(options: McpOptions) -> Result<ExitCode, McpError> {
    let Some((program, args)) = options.command.split_first() else {
        return Err(McpError::NoCommand);
    };
    let name = options.name.clone().unwrap_or_else(|| {
        std::path::Path::new(program)
            .file_name()
            .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned())
    });
    // Our stdin and stdout, taken before anything can use them.
    let stdin = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|source| McpError::Io {
            context: "cannot read stdin".into(),
            source,
        })?;
    // Caught before the server starts, so no signal meant for it can end the proxy instead.
    let caught = catch_signals()?;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| McpError::Spawn {
            program: program.clone(),
            source,
        })?;
    let pid = child.id();
    let (Some(to_server), Some(from_server), Some(server_stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        return Err(McpError::Io {
            context: "the server's pipes were not opened".into(),
            source: std::io::ErrorKind::BrokenPipe.into(),
        });
    };
    widen_pipe(&to_server);
    widen_pipe(&from_server);
    // SAFETY: in this mode nothing else in the process uses fd 1 (no `println!`, the standard
    // stdout handle is never touched), so the relay may own it, and close it when the server's
    // stdout ends: the client then sees end of file exactly when it would without the proxy.
    let stdout = unsafe { File::from_raw_fd(1) };

    let (publisher, sink) = Publisher::start(options.destination.clone());
    let prefix = format!("ipckit-{}-", std::process::id());
    let calls = Arc::new(AtomicU64::new(0));
    let gate = Gate::new(&prefix, options.inject, Arc::clone(&calls));
    let tracker = Tracker::new(&name, &prefix, calls);
    let (tx, rx) = mpsc::channel();
    let observer = ToObserver {
        tx,
        queued: Arc::new(AtomicUsize::new(0)),
        sink: sink.clone(),
    };
    sink.send(&mut vec![Event::with_resource(
        super::SERVER_STARTED,
        &name,
        serde_json::json!({ "command": options.command, "pid": pid, "inject": options.inject }),
    )]);

    let mut upstream = Follow::new(Side::Client, &gate, &observer);
    let _client_done = spawn("mcp-client-to-server", move || {
        let (mut input, mut output) = (stdin, to_server);
        let _ = relay(&mut input, &mut output, &mut upstream);
        // Dropping the pipe closes the server's stdin.
    })?;
    let mut downstream = Follow::new(Side::Server, &gate, &observer);
    let server_done = spawn("mcp-server-to-client", move || {
        let (mut input, mut output) = (from_server, stdout);
        if let End::OutputClosed(_) = relay(&mut input, &mut output, &mut downstream) {
            // The client stopped reading: dropping our end makes the server's next write fail, as
            // it would if the client had been connected to it directly.
        }
    })?;
    let stderr_sink = sink.clone();
    let stderr_name = name.clone();
    let stderr_done = spawn("mcp-server-stderr", move || {
        copy_stderr(server_stderr, &stderr_name, &stderr_sink);
    })?;
    let (exited, exit) = oneshot::channel();
    spawn("mcp-server-wait", move || {
        let _ = exited.send(child.wait());
    })?;
    // From here on this thread (the runtime's) and the observer it starts yield to the relay.
    lower_priority();
    let observer_sink = sink.clone();
    let queued = Arc::clone(&observer.queued);
    spawn("mcp-observer", move || {
        observe(rx, queued, tracker, observer_sink);
    })?;

    let status = wait_forwarding_signals(pid, exit, caught).await?;
    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, server_done).await;
    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, stderr_done).await;

    let (code, how) = describe(status);
    let (done, answered) = oneshot::channel();
    let _ = observer.tx.send(Note::Exited {
        how,
        at: (Instant::now(), SystemTime::now()),
        done,
    });
    let unanswered = tokio::time::timeout(FINAL_PUBLISH, answered)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    let mut data = serde_json::json!({
        "pid": pid,
        "unanswered": unanswered,
        "events_dropped": sink.dropped(),
    });
    if let Some(code) = status.code() {
        data["exit_code"] = code.into();
    }
    if let Some(signal) = status.signal() {
        data["signal"] = signal.into();
    }
    sink.send(&mut vec![Event::with_resource(
        super::SERVER_EXITED,
        &name,
        data,
    )]);
    publisher.finish(FINAL_PUBLISH).await;
    Ok(ExitCode::from(code))
}

/// Waits for the server to exit, passing on the signals the proxy receives meanwhile.
/// Catches the signals to forward (from now on they no longer act on the proxy itself); what
/// arrives comes out of the receiver, by number.
fn catch_signals() -> Result<
    (
        tokio::sync::mpsc::UnboundedReceiver<i32>,
        Vec<tokio::task::JoinHandle<()>>,
    ),
    McpError,
> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut listeners = Vec::new();
    for (kind, number) in FORWARDED {
        let mut stream = signal(kind).map_err(|source| McpError::Io {
            context: "cannot listen for signals".into(),
            source,
        })?;
        let tx = tx.clone();
        listeners.push(tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(number).is_err() {
                    return;
                }
            }
        }));
    }
    Ok((rx, listeners))
}

async fn wait_forwarding_signals(
    pid: u32,
    mut exit: oneshot::Receiver<std::io::Result<ExitStatus>>,
    caught: (
        tokio::sync::mpsc::UnboundedReceiver<i32>,
        Vec<tokio::task::JoinHandle<()>>,
    ),
) -> Result<ExitStatus, McpError> {
    let (mut rx, listeners) = caught;
    let pid = libc::pid_t::try_from(pid).unwrap_or(libc::pid_t::MAX);
    let status = loop {
        tokio::select! {
            biased;
            status = &mut exit => break status,
            Some(number) = rx.recv() => {
                // SAFETY: kill has no memory effects; the pid is our child's, not yet reaped (the
                // wait thread has not reported its exit).
                unsafe { libc::kill(pid, number) };
            }
        }
    };
    for listener in listeners {
        listener.abort();
    }
    match status {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(source)) => Err(McpError::Io {
            context: "cannot wait for the server".into(),
            source,
        }),
        Err(_) => Err(McpError::Io {
            context: "cannot wait for the server".into(),
            source: std::io::ErrorKind::Other.into(),
        }),
    }
}

/// The proxy's exit status for the server's (its code, or 128 + the signal that killed it) and the
/// words for it.
fn describe(status: ExitStatus) -> (u8, String) {
    if let Some(code) = status.code() {
        return ((code & 0xff) as u8, format!("exited with status {code}"));
    }
    if let Some(signal) = status.signal() {
        return (
            ((128 + signal) & 0xff) as u8,
            format!("was killed by signal {signal}"),
        );
    }
    (1, "exited abnormally".to_owned())
}

/// Copies the server's stderr to ours as it arrives (bytes unchanged, partial lines included) and
/// publishes each line as `log.stderr`.
fn copy_stderr(mut input: impl Read, name: &str, sink: &EventSink) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let push_capped = |line: &mut Vec<u8>, bytes: &[u8]| {
        let room = MAX_STDERR_EVENT.saturating_sub(line.len());
        line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    };
    let event = |line: &[u8]| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Event::stderr(name, &String::from_utf8_lossy(line))
    };
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        let _ = std::io::stderr().lock().write_all(chunk);
        let mut rest = chunk;
        while let Some(at) = memchr::memchr(b'\n', rest) {
            push_capped(&mut line, &rest[..at]);
            events.push(event(&line));
            line.clear();
            rest = &rest[at + 1..];
        }
        push_capped(&mut line, rest);
        sink.send(&mut events);
    }
    if !line.is_empty() {
        events.push(event(&line));
        sink.send(&mut events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_become_codes() {
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)).0, 3);
        assert_eq!(describe(ExitStatus::from_raw(0)).0, 0);
        let (code, how) = describe(ExitStatus::from_raw(libc::SIGKILL));
        assert_eq!(code, 137);
        assert_eq!(how, "was killed by signal 9");
    }
}
