//! End to end: the real binary in a pseudo-terminal, attached to a served bus (which then goes away
//! and comes back), or hosting one. It types a filter, reads the screen back through a small terminal
//! emulator, and quits with `q`, leaving the terminal restored (alternate screen left, cursor shown,
//! exit status 0).

mod common;

use common::{run, ServerProcess, TempDir, BIN};
use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COLS: usize = 110;
const ROWS: usize = 32;

/// Just enough of a VT100 to follow what ratatui's crossterm backend writes: cursor moves, clears,
/// printable text; colours and modes are skipped.
struct Screen {
    cells: Vec<Vec<char>>,
    row: usize,
    col: usize,
    raw: Vec<u8>,
}

impl Screen {
    fn new() -> Self {
        Self {
            cells: vec![vec![' '; COLS]; ROWS],
            row: 0,
            col: 0,
            raw: Vec::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        let text = String::from_utf8_lossy(&self.raw).into_owned();
        // Re-parse everything so that split sequences are never half-applied.
        self.cells = vec![vec![' '; COLS]; ROWS];
        self.row = 0;
        self.col = 0;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\x1b' => match chars.next() {
                    Some('[') => {
                        let mut params = String::new();
                        let mut fin = ' ';
                        for p in chars.by_ref() {
                            if ('@'..='~').contains(&p) {
                                fin = p;
                                break;
                            }
                            params.push(p);
                        }
                        self.csi(&params, fin);
                    }
                    Some(']') => {
                        // OSC: up to BEL or ST.
                        while let Some(p) = chars.next() {
                            if p == '\x07' || (p == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                                break;
                            }
                        }
                    }
                    _ => {}
                },
                '\r' => self.col = 0,
                '\n' => self.row = (self.row + 1).min(ROWS - 1),
                c if c < ' ' => {}
                c => {
                    if self.row < ROWS && self.col < COLS {
                        self.cells[self.row][self.col] = c;
                    }
                    self.col += 1;
                }
            }
        }
    }

    fn csi(&mut self, params: &str, fin: char) {
        let nums: Vec<usize> = params
            .trim_start_matches('?')
            .split(';')
            .map(|n| n.parse().unwrap_or(0))
            .collect();
        match fin {
            'H' | 'f' => {
                self.row = nums.first().copied().unwrap_or(1).max(1) - 1;
                self.col = nums.get(1).copied().unwrap_or(1).max(1) - 1;
            }
            'J' if nums.first() == Some(&2) => self.cells = vec![vec![' '; COLS]; ROWS],
            'K' if self.row < ROWS => {
                for c in self.col..COLS {
                    self.cells[self.row][c] = ' ';
                }
            }
            _ => {}
        }
    }

    fn text(&self) -> String {
        self.cells
            .iter()
            .map(|r| r.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The real binary in a pseudo-terminal, its output followed by a [`Screen`].
struct Monitor {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Mutex<Screen>>,
    feeder: Option<std::thread::JoinHandle<()>>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Monitor {
    fn start(args: &[&str]) -> Self {
        Self::start_command(BIN, args)
    }

    fn start_command(program: &str, args: &[&str]) -> Self {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: ROWS as u16,
                cols: COLS as u16,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(program);
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("IPCKIT_SOCKET");
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().unwrap();
        let writer = pty.master.take_writer().unwrap();
        let screen = Arc::new(Mutex::new(Screen::new()));
        let feeder = {
            let screen = Arc::clone(&screen);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    screen.lock().unwrap().feed(&buf[..n]);
                }
            })
        };
        Monitor {
            child,
            writer,
            screen,
            feeder: Some(feeder),
            _master: pty.master,
        }
    }

    fn keys(&mut self, keys: &[u8]) {
        self.writer.write_all(keys).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits for the process to end; its exit status.
    fn wait(&mut self) -> portable_pty::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(feeder) = self.feeder.take() {
                    // The pty closes with the process; the feeder then reads everything left.
                    let _ = feeder.join();
                }
                return status;
            }
            assert!(Instant::now() < deadline, "the monitor did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn wait_for(screen: &Arc<Mutex<Screen>>, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = screen.lock().unwrap().text();
        if check(&text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; screen:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_monitor_in_a_pty_filters_as_typed_and_quits_leaving_the_terminal_restored() {
    let dir = TempDir::new();
    let socket = dir.socket();
    let server = ServerProcess::start(&socket, &[]);
    let sock = socket.to_str().unwrap();
    let lines: String = (0..30)
        .map(|i| {
            let kind = if i % 3 == 0 { "log.stderr" } else { "task.started" };
            format!("{{\"event_type\":\"{kind}\",\"resource_id\":\"job-{i}\",\"data\":{{\"n\":{i}}}}}\n")
        })
        .collect();
    let out = run(&["--socket", sock, "publish", "--stdin"], &lines);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut monitor = Monitor::start(&["--socket", sock]);
    let screen = Arc::clone(&monitor.screen);

    wait_for(&screen, "the attached screen", |s| {
        s.contains("attached bus.sock") && s.contains("30 of 30 match") && s.contains("LIVE")
    });
    monitor.keys(b"/log.*");
    wait_for(&screen, "the filter to apply as typed", |s| {
        s.contains("filter> log.*") && s.contains("10 of 30 match")
    });
    monitor.keys(b"\r");
    wait_for(&screen, "only matching rows", |s| {
        let rows: Vec<&str> = s.lines().filter(|l| l.contains(" #")).collect();
        rows.len() == 10 && rows.iter().all(|r| r.contains("log.stderr"))
    });
    monitor.keys(b"?");
    wait_for(&screen, "the help", |s| {
        s.contains("keys ─ ? or Esc closes")
    });
    monitor.keys(b"q");
    wait_for(&screen, "the help to close", |s| {
        !s.contains("keys ─ ? or Esc closes")
    });

    // The bus goes away: the screen stays, saying so; it comes back: the monitor re-attaches.
    server.terminate();
    wait_for(&screen, "the disconnected state", |s| {
        s.contains("lost bus.sock")
            && s.contains("DISCONNECTED retrying in")
            && s.contains("10 of ")
    });
    let server = ServerProcess::start(&socket, &[]);
    let out = run(
        &[
            "--socket",
            sock,
            "publish",
            "log.stderr",
            "--resource",
            "after",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(&screen, "re-attached with the new bus's event", |s| {
        s.contains("attached bus.sock") && !s.contains("DISCONNECTED") && s.contains("after")
    });
    monitor.keys(b"q");

    let status = monitor.wait();
    assert!(status.success(), "{status:?}");
    assert_restored(&screen.lock().unwrap().raw);
    drop(server);
}

/// The output ends with the alternate screen left and the cursor shown.
fn assert_restored(raw: &[u8]) {
    let raw = String::from_utf8_lossy(raw).into_owned();
    let entered = raw
        .rfind("\x1b[?1049h")
        .expect("entered the alternate screen");
    let left = raw.rfind("\x1b[?1049l").expect("left the alternate screen");
    assert!(left > entered);
    let shown = raw.rfind("\x1b[?25h").expect("showed the cursor");
    assert!(shown > raw.rfind("\x1b[?25l").unwrap_or(0));
}

#[test]
fn with_no_bus_at_the_socket_it_hosts_one_others_can_publish_to_with_the_demo_running() {
    let dir = TempDir::new();
    let socket = dir.socket();
    let sock = socket.to_str().unwrap();
    let mut monitor = Monitor::start(&["--socket", sock, "--demo"]);
    let screen = Arc::clone(&monitor.screen);
    wait_for(&screen, "the hosted demo", |s| {
        s.contains("hosting bus.sock") && s.contains("render-") && s.contains("(no total)")
    });
    let out = run(
        &[
            "--socket",
            sock,
            "publish",
            "probe.from-outside",
            "--resource",
            "probe-1",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    monitor.keys(b"/probe.*\r");
    wait_for(&screen, "the outside event", |s| {
        s.contains("probe.from-outside") && s.contains("probe-1") && s.contains("1 of ")
    });
    monitor.keys(b"q");
    let status = monitor.wait();
    assert!(status.success(), "{status:?}");
    assert_restored(&screen.lock().unwrap().raw);
    assert!(
        !socket.exists(),
        "the hosted bus's socket is removed on the way out"
    );
}

#[test]
fn attached_with_demo_the_workload_publishes_to_the_served_bus() {
    let dir = TempDir::new();
    let socket = dir.socket();
    let server = ServerProcess::start(&socket, &[]);
    let sock = socket.to_str().unwrap();
    let mut monitor = Monitor::start(&["--socket", sock, "--demo"]);
    let screen = Arc::clone(&monitor.screen);
    wait_for(&screen, "demo events through the served bus", |s| {
        s.contains("attached bus.sock") && s.contains("render-") && s.contains("(no total)")
    });
    monitor.keys(b"q");
    let status = monitor.wait();
    assert!(status.success(), "{status:?}");
    // The events went to the served bus, not only to the monitor.
    let out = run(
        &[
            "--socket",
            sock,
            "events",
            "--no-follow",
            "--format",
            "json",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("mcp.notifications.progress"));
    drop(server);
}

#[test]
fn sigterm_and_sighup_quit_like_q_and_leave_the_terminal_restored() {
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")] {
        let dir = TempDir::new();
        let socket = dir.socket();
        let mut monitor = Monitor::start(&["--socket", socket.to_str().unwrap()]);
        let screen = Arc::clone(&monitor.screen);
        wait_for(&screen, "the hosting screen", |s| {
            s.contains("hosting bus.sock") && s.contains("LIVE")
        });
        let pid = monitor.child.process_id().expect("the monitor's pid");
        assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0, "{name}");
        let status = monitor.wait();
        assert!(status.success(), "{name}: {status:?}");
        assert_restored(&screen.lock().unwrap().raw);
        assert!(
            !socket.exists(),
            "{name}: the hosted bus's socket is removed on the way out"
        );
    }
}

#[test]
fn a_data_filter_counts_exactly_and_a_gauge_drill_down_shows_only_its_events() {
    let dir = TempDir::new();
    let socket = dir.socket();
    let server = ServerProcess::start(&socket, &[]);
    let sock = socket.to_str().unwrap();
    // 100 frames of `job-a` on nodes n-1..n-4 in turn, `job-a`'s progress (done), and `job-b`'s
    // (running) with a log line: 105 events.
    let mut lines: String = (0..100)
        .map(|i| {
            format!(
                "{{\"event_type\":\"render.frame\",\"resource_id\":\"job-a\",\"data\":{{\"frame\":{i},\"node\":\"n-{}\"}}}}\n",
                i % 4 + 1
            )
        })
        .collect();
    for current in [5, 10] {
        lines.push_str(&format!(
            "{{\"event_type\":\"task.progress\",\"resource_id\":\"job-a\",\"data\":{{\"current\":{current},\"total\":10}}}}\n"
        ));
    }
    for progress in [1, 2] {
        lines.push_str(&format!(
            "{{\"event_type\":\"mcp.notifications.progress\",\"resource_id\":\"job-b\",\"data\":{{\"progressToken\":\"job-b\",\"progress\":{progress},\"total\":100}}}}\n"
        ));
    }
    lines.push_str("{\"event_type\":\"log.stderr\",\"resource_id\":\"job-b\",\"data\":{\"message\":\"b is slow\"}}\n");
    let out = run(&["--socket", sock, "publish", "--stdin"], &lines);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut monitor = Monitor::start(&["--socket", sock]);
    let screen = Arc::clone(&monitor.screen);
    wait_for(&screen, "the attached screen", |s| {
        s.contains("attached bus.sock") && s.contains("105 of 105 match")
    });
    // Frames after 89 rendered on n-1: 92 and 96.
    monitor.keys(b"/frame>89 node=n-1");
    wait_for(&screen, "the data filter's count as typed", |s| {
        s.contains("filter> frame>89 node=n-1") && s.contains("2 of 105 match")
    });
    monitor.keys(b"\r");
    wait_for(&screen, "the two frames", |s| {
        let rows: Vec<&str> = s.lines().filter(|l| l.contains(" #")).collect();
        rows.len() == 2
            && rows[0].contains("\"frame\":92")
            && rows[1].contains("\"frame\":96")
            && rows.iter().all(|r| r.contains("job-a"))
    });

    // Tab to the progress pane, j to the second gauge (job-a, done, below the running job-b), Enter:
    // only job-a's events, its expression in the filter bar.
    monitor.keys(b"\t");
    wait_for(&screen, "the progress pane's keys in the footer", |s| {
        s.contains("j/k select  Enter its events  Esc back")
    });
    monitor.keys(b"j");
    monitor.keys(b"\r");
    wait_for(&screen, "job-a's events only", |s| {
        // The event pane's part of each row, left of the progress pane.
        let rows: Vec<&str> = s
            .lines()
            .filter(|l| l.contains(" #"))
            .filter_map(|l| l.split("││").next())
            .collect();
        s.contains("filter> res:job-a")
            && s.contains("102 of 105 match")
            && s.contains("job-a only (Esc: back)")
            && !rows.is_empty()
            && rows
                .iter()
                .all(|r| r.contains("job-a") && !r.contains("job-b"))
    });
    // Esc: the data filter again, and the progress pane.
    monitor.keys(b"\x1b");
    wait_for(&screen, "the filter before", |s| {
        s.contains("filter> frame>89 node=n-1")
            && s.contains("2 of 105 match")
            && s.contains("j/k select")
    });
    monitor.keys(b"q");
    let status = monitor.wait();
    assert!(status.success(), "{status:?}");
    assert_restored(&screen.lock().unwrap().raw);
    drop(server);
}

/// A recording of 40 events (a task event, then a log line, in turn) with two bad lines.
fn recording_with_bad_lines(dir: &TempDir) -> std::path::PathBuf {
    let mut lines: Vec<String> = (1..=40)
        .map(|id| {
            let (kind, data) = if id % 2 == 1 {
                ("task.started", format!("{{\"frame\":{id}}}"))
            } else {
                ("log.stderr", format!("{{\"message\":\"line {id}\"}}"))
            };
            format!(
                "{{\"id\":{id},\"timestamp\":{}.5,\"event_type\":\"{kind}\",\"resource_id\":\"job-{}\",\"data\":{data}}}",
                1_795_608_000 + id,
                id % 3
            )
        })
        .collect();
    lines.insert(6, "not an event".into());
    lines.insert(30, "{\"event_type\": 3}".into());
    let path = dir.0.join("farm.ndjson");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn a_recording_opens_in_a_pty_and_w_writes_what_opens_again_to_the_same_view() {
    let dir = TempDir::new();
    let path = recording_with_bad_lines(&dir);
    let mut monitor = Monitor::start(&["--open", path.to_str().unwrap()]);
    let screen = Arc::clone(&monitor.screen);
    wait_for(&screen, "the recording's first screen", |s| {
        s.contains("RECORDING farm.ndjson ─ 40 events ─ 2 lines skipped, first at line 7")
            && s.contains("40 of 40 match")
    });
    monitor.keys(b"/task.* res:job-1");
    wait_for(&screen, "the filter with each term's count", |s| {
        s.contains("7 of 40 match") && s.contains("task.* 20 │ res:job-1 14")
    });
    monitor.keys(b"\r");
    let written = dir.0.join("kept.ndjson");
    // w, the default name cleared (Ctrl-U), a name typed.
    monitor.keys(b"w\x15");
    monitor.keys(written.to_str().unwrap().as_bytes());
    monitor.keys(b"\r");
    wait_for(&screen, "the write to be confirmed", |s| {
        s.contains("wrote 7 events to")
    });
    monitor.keys(b"q");
    assert!(monitor.wait().success());
    assert_restored(&screen.lock().unwrap().raw);

    // Through stdin, as `-`: the same 7 events, nothing skipped.
    let command = format!("exec {BIN} --open - < '{}'", written.display());
    let mut monitor = Monitor::start_command("sh", &["-c", &command]);
    let screen = Arc::clone(&monitor.screen);
    wait_for(&screen, "the written recording from stdin", |s| {
        s.contains("RECORDING stdin ─ 7 events")
            && !s.contains("skipped")
            && s.contains("7 of 7 match")
            && s.lines().filter(|l| l.contains("task.started")).count() == 7
    });
    monitor.keys(b"q");
    assert!(monitor.wait().success());
}
