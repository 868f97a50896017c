//! Helpers shared by the transport, wire and CLI tests: temp sockets, the real binary as a server,
//! raw socket connections.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ipckit-top");

/// A fresh directory under the temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ipckit-t-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn socket(&self) -> PathBuf {
        self.0.join("bus.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `ipckit-top serve` on a socket; killed (SIGKILL) on drop unless stopped first.
pub struct ServerProcess {
    pub child: Child,
    pub socket: PathBuf,
}

impl ServerProcess {
    pub fn start(socket: &Path, extra: &[&str]) -> Self {
        let child = Command::new(BIN)
            .arg("--socket")
            .arg(socket)
            .arg("serve")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let server = ServerProcess {
            child,
            socket: socket.to_path_buf(),
        };
        wait_for_server(socket);
        server
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, then wait (up to 20 s) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (up to 20 s) until a server answers with its hello on `socket`.
pub fn wait_for_server(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(stream) = UnixStream::connect(socket) {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut line = String::new();
            if BufReader::new(stream).read_line(&mut line).is_ok() && line.contains("\"hello\"") {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no server came up at {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw, blocking connection speaking lines, with generous timeouts.
pub struct Raw {
    pub reader: BufReader<UnixStream>,
    pub writer: UnixStream,
    pub hello: serde_json::Value,
}

impl Raw {
    pub fn connect(socket: &Path) -> Raw {
        let stream = UnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let writer = stream.try_clone().unwrap();
        let mut raw = Raw {
            reader: BufReader::new(stream),
            writer,
            hello: serde_json::Value::Null,
        };
        raw.hello = raw.read();
        raw
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    pub fn read(&mut self) -> serde_json::Value {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("no frame within the timeout");
        assert!(n > 0, "the server closed the connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("server sent non-JSON {line:?}: {e}"))
    }

    /// Sends a ping with `id` and reads frames up to its pong; returns the frames before it.
    pub fn ping(&mut self, id: u64) -> Vec<serde_json::Value> {
        self.send(format!("{{\"type\":\"ping\",\"id\":{id}}}\n").as_bytes());
        let mut before = Vec::new();
        loop {
            let frame = self.read();
            if frame["type"] == "pong" && frame["id"] == id {
                return before;
            }
            before.push(frame);
        }
    }

    /// Sends a request line and returns the next frame.
    pub fn request(&mut self, line: &str) -> serde_json::Value {
        self.send(line.as_bytes());
        self.send(b"\n");
        self.read()
    }
}

/// Runs the binary to completion with `args`, feeding `stdin`.
pub fn run(args: &[&str], stdin: &str) -> std::process::Output {
    run_bytes(args, stdin.as_bytes())
}

/// Runs the binary to completion with `args`, feeding `stdin` bytes.
pub fn run_bytes(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("IPCKIT_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}
