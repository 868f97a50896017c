//! End to end: the real binary in a pseudo-terminal, attached to a served bus. It types a filter,
//! reads the screen back through a small terminal emulator, and quits with `q`, leaving the terminal
//! restored (alternate screen left, cursor shown, exit status 0).

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

    let pty = native_pty_system()
        .openpty(PtySize {
            rows: ROWS as u16,
            cols: COLS as u16,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(BIN);
    cmd.args(["--socket", sock]);
    cmd.env("TERM", "xterm-256color");
    cmd.env_remove("IPCKIT_SOCKET");
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let mut writer = pty.master.take_writer().unwrap();
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

    wait_for(&screen, "the attached screen", |s| {
        s.contains("attached bus.sock") && s.contains("30 of 30 match") && s.contains("LIVE")
    });
    writer.write_all(b"/log.*").unwrap();
    writer.flush().unwrap();
    wait_for(&screen, "the filter to apply as typed", |s| {
        s.contains("filter> log.*") && s.contains("10 of 30 match")
    });
    writer.write_all(b"\r").unwrap();
    writer.flush().unwrap();
    wait_for(&screen, "only matching rows", |s| {
        let rows: Vec<&str> = s.lines().filter(|l| l.contains(" #")).collect();
        rows.len() == 10 && rows.iter().all(|r| r.contains("log.stderr"))
    });
    writer.write_all(b"?").unwrap();
    writer.flush().unwrap();
    wait_for(&screen, "the help", |s| {
        s.contains("keys ─ ? or Esc closes")
    });
    writer.write_all(b"q").unwrap();
    writer.flush().unwrap();
    wait_for(&screen, "the help to close", |s| {
        !s.contains("keys ─ ? or Esc closes")
    });
    writer.write_all(b"q").unwrap();
    writer.flush().unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "q did not end the monitor");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    drop(writer);
    drop(pty.master);
    let _ = feeder.join();
    let raw = String::from_utf8_lossy(&screen.lock().unwrap().raw).into_owned();
    let entered = raw
        .rfind("\x1b[?1049h")
        .expect("entered the alternate screen");
    let left = raw.rfind("\x1b[?1049l").expect("left the alternate screen");
    assert!(left > entered);
    let shown = raw.rfind("\x1b[?25h").expect("showed the cursor");
    assert!(shown > raw.rfind("\x1b[?25l").unwrap_or(0));
    drop(server);
}
