//! The proxy process: starts the server, relays both ways on two threads, copies its stderr, forwards
//! signals, and exits as the server did.
//!
//! The two relay directions run on plain threads with blocking reads and writes: a line that
//! arrives wakes its thread straight from the pipe, and our own stdin and stdout are used exactly as
//! the client handed them over (a pipe, a file, a terminal), never switched to non-blocking mode
//! behind the client's back. The tokio runtime runs what may wait: the publisher, the signal
//! handlers, and waiting for the server to exit.

use super::publish::{EventSink, Publisher};
use super::relay::{relay, End, Lines};
use super::tracker::{Action, Side, Tracker};
use super::{McpError, McpOptions};
use crate::event_stream::Event;
use parking_lot::Mutex;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// After the server exits, how long its stdout and stderr may stay open (held by a process it left
/// behind) before the proxy stops waiting for them.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long the last events may take to reach the bus when the server has exited.
const FINAL_PUBLISH: Duration = Duration::from_secs(2);
/// A stderr line longer than this is cut in its `log.stderr` event (the bytes copied are whole).
const MAX_STDERR_EVENT: usize = 16 * 1024;

/// The signals passed on to the server.
const FORWARDED: [(SignalKind, i32); 6] = [
    (SignalKind::interrupt(), libc::SIGINT),
    (SignalKind::terminate(), libc::SIGTERM),
    (SignalKind::hangup(), libc::SIGHUP),
    (SignalKind::quit(), libc::SIGQUIT),
    (SignalKind::user_defined1(), libc::SIGUSR1),
    (SignalKind::user_defined2(), libc::SIGUSR2),
];

/// One relay direction's view of the tracker.
struct Follow {
    side: Side,
    tracker: Arc<Mutex<Tracker>>,
    events: Vec<Event>,
    sink: EventSink,
}

impl Lines for Follow {
    fn line(&mut self, line: &[u8]) -> Action {
        self.tracker
            .lock()
            .line(self.side, line, Instant::now(), &mut self.events)
    }

    fn written(&mut self) {
        self.sink.send(&mut self.events);
    }
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
    // SAFETY: in this mode nothing else in the process uses fd 1 (no `println!`, the standard
    // stdout handle is never touched), so the relay may own it, and close it when the server's
    // stdout ends: the client then sees end of file exactly when it would without the proxy.
    let stdout = unsafe { File::from_raw_fd(1) };

    let (publisher, sink) = Publisher::start(options.socket.clone());
    let tracker = Arc::new(Mutex::new(Tracker::new(
        &name,
        std::process::id(),
        options.inject,
    )));
    sink.send(&mut vec![Event::with_resource(
        super::SERVER_STARTED,
        &name,
        serde_json::json!({ "command": options.command, "pid": pid, "inject": options.inject }),
    )]);

    let follow = |side| Follow {
        side,
        tracker: Arc::clone(&tracker),
        events: Vec::new(),
        sink: sink.clone(),
    };
    let mut upstream = follow(Side::Client);
    let _client_done = spawn("mcp-client-to-server", move || {
        let (mut input, mut output) = (stdin, to_server);
        let _ = relay(&mut input, &mut output, &mut upstream);
        // Dropping the pipe closes the server's stdin.
    })?;
    let mut downstream = follow(Side::Server);
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

    let status = wait_forwarding_signals(pid, exit).await?;
    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, server_done).await;
    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, stderr_done).await;

    let (code, how) = describe(status);
    let mut events = Vec::new();
    let unanswered = {
        let mut tracker = tracker.lock();
        let pending = tracker.pending();
        tracker.server_exited(&how, Instant::now(), &mut events);
        pending
    };
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
    events.push(Event::with_resource(super::SERVER_EXITED, &name, data));
    sink.send(&mut events);
    publisher.finish(FINAL_PUBLISH).await;
    Ok(ExitCode::from(code))
}

/// Waits for the server to exit, passing on the signals the proxy receives meanwhile.
async fn wait_forwarding_signals(
    pid: u32,
    mut exit: oneshot::Receiver<std::io::Result<ExitStatus>>,
) -> Result<ExitStatus, McpError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
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
