//! ipckit-top on NATS, against a real `nats-server` (one per test, on 127.0.0.1 with a free port and
//! its own store directory, stopped by its PID): buses bridged into one stream, NATS killed and
//! restarted under load, a bridge that restarts, a stream whose limits dropped events, filters
//! narrowed on the server and exact on the client, and the monitor in a pseudo-terminal.
//!
//! Without `nats-server` on the PATH these tests are skipped, unless `IPCKIT_NATS_TESTS=require`
//! (as `.ci/run` sets): then they fail, saying so.

mod common;

use common::{run, ServerProcess, TempDir, BIN};
use ipckit::nats::{Narrowing, NatsItem, NatsOptions, Start, StreamReader};
use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `nats-server`, or `None` (the test is skipped) when it is not installed and not required.
fn nats_server_binary() -> Option<&'static str> {
    let found = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("nats-server");
    }
    assert!(
        std::env::var("IPCKIT_NATS_TESTS").as_deref() != Ok("require"),
        "nats-server is not installed and IPCKIT_NATS_TESTS=require (apt-get install nats-server)"
    );
    eprintln!("nats-server is not installed: skipping");
    None
}

/// A `nats-server` with JetStream on 127.0.0.1, killed on drop.
struct Nats {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Nats {
    /// On a free port (`-p -1`, read back from the ports file), storing in `dir`.
    fn start(dir: &Path) -> Self {
        Self::start_on(dir, None)
    }

    fn start_on(dir: &Path, port: Option<u16>) -> Self {
        Self::start_with(dir, port, None)
    }

    /// With `jetstream`, settings of JetStream in nats-server's configuration syntax
    /// (`max_file_store: 8MB`), given in a file with `-c` (the `-js` flag would replace them).
    fn start_with(dir: &Path, port: Option<u16>, jetstream: Option<&str>) -> Self {
        let ports = dir.join("ports");
        let _ = std::fs::remove_dir_all(&ports);
        std::fs::create_dir_all(&ports).unwrap();
        let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
        let mut command = Command::new("nats-server");
        match jetstream {
            Some(settings) => {
                let file = dir.join("nats.conf");
                let store = dir.join("store");
                let config = format!("jetstream {{ store_dir: {store:?}, {settings} }}\n");
                std::fs::write(&file, config).unwrap();
                command.arg("-c").arg(file);
            }
            None => {
                command.args(["-js", "-sd"]).arg(dir.join("store"));
            }
        }
        let child = command
            .args(["-a", "127.0.0.1", "-p", &port_arg, "--ports_file_dir"])
            .arg(&ports)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            let file = std::fs::read_dir(&ports)
                .unwrap()
                .filter_map(Result::ok)
                .find(|e| e.file_name().to_string_lossy().ends_with(".ports"));
            if let Some(text) = file.and_then(|f| std::fs::read_to_string(f.path()).ok()) {
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
                    if let Some(url) = json["nats"][0].as_str() {
                        break url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
                    }
                }
            }
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        };
        // The ports file is written when the listener is up; JetStream may take a moment more.
        let nats = Nats {
            child,
            dir: dir.to_path_buf(),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server does not answer");
            std::thread::sleep(Duration::from_millis(10));
        }
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Sends `signal` to the server by PID.
    fn signal(&self, signal: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// SIGKILL by PID, and wait.
    fn kill(mut self) -> (PathBuf, u16) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
        (self.dir.clone(), self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ipckit-top ... bridge`, its stderr kept in a file; stopped with SIGTERM (or killed) by PID.
struct Bridge {
    child: Child,
    log: PathBuf,
}

impl Bridge {
    fn start(socket: &Path, url: &str, origin: &str, log: PathBuf, extra: &[&str]) -> Self {
        let child = Command::new(BIN)
            .arg("--socket")
            .arg(socket)
            .args(["--nats", url, "bridge", "--origin", origin])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Bridge { child, log }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(mut self) -> String {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "bridge: {status:?}\n{}", self.stderr());
                return self.stderr();
            }
            assert!(
                Instant::now() < deadline,
                "the bridge did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes `n` events (`kind.N`, data `{"n":N}`) on the bus at `socket`, from `from`.
fn publish_to_bus(socket: &Path, kind: &str, from: usize, n: usize) {
    let lines: String = (from..from + n)
        .map(|i| {
            format!(
                "{{\"event_type\":\"{kind}\",\"resource_id\":\"r-{i}\",\"data\":{{\"n\":{i}}}}}\n"
            )
        })
        .collect();
    let out = run(
        &["--socket", socket.to_str().unwrap(), "publish", "--stdin"],
        &lines,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything the stream holds, as `events --no-follow --format json` prints it.
fn stream_events(url: &str, extra: &[&str]) -> (Vec<serde_json::Value>, String, Option<i32>) {
    let mut args = vec!["--nats", url];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["events", "--no-follow", "--format", "json"]);
    let out = run(&args, "");
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        events,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

/// Origin ids per origin, in stream order.
fn ids_by_origin(events: &[serde_json::Value]) -> BTreeMap<String, Vec<u64>> {
    let mut by: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in events {
        by.entry(e["origin"].as_str().unwrap().to_owned())
            .or_default()
            .push(e["origin_id"].as_u64().unwrap());
    }
    by
}

/// Polls `check` until it holds (20 s at most; a deadline, not a timing assertion).
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_buses_bridged_into_one_stream_every_event_of_both_seen_once() {
    if nats_server_binary().is_none() {
        return;
    }
    let dir = TempDir::new();
    let nats = Nats::start(&dir.0);
    let url = nats.url();
    let (sock_a, sock_b) = (dir.0.join("a.sock"), dir.0.join("b.sock"));
    let bus_a = ServerProcess::start(&sock_a, &[]);
    let bus_b = ServerProcess::start(&sock_b, &[]);
    // Some events before the bridges start (forwarded from history), some after.
    publish_to_bus(&sock_a, "task.started", 1, 100);
    let bridge_a = Bridge::start(&sock_a, &url, "host-a", dir.0.join("a.log"), &[]);
    let bridge_b = Bridge::start(&sock_b, &url, "host-b", dir.0.join("b.log"), &[]);
    publish_to_bus(&sock_b, "log.info", 1, 150);
    publish_to_bus(&sock_a, "task.started", 101, 100);
    publish_to_bus(&sock_b, "log.info", 151, 50);
    wait_until("400 events in the stream", || {
        stream_events(&url, &[]).0.len() >= 400
    });
    let (events, stderr, code) = stream_events(&url, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(events.len(), 400, "no event twice");
    let by = ids_by_origin(&events);
    let expected: Vec<u64> = (1..=200).collect();
    assert_eq!(
        by["host-a"], expected,
        "every event of bus a, once, in order"
    );
    assert_eq!(
        by["host-b"], expected,
        "every event of bus b, once, in order"
    );
    // The stream sequence is the id: one order across both.
    let seqs: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
    // The payload is the event, the filter takes the origin.
    let out = run(
        &[
            "--nats",
            &url,
            "events",
            "--no-follow",
            "--format",
            "json",
            "--filter",
            "origin:host-b",
        ],
        "",
    );
    let only_b: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(only_b.len(), 200);
    assert!(only_b.iter().all(|e| e["event_type"] == "log.info"));
    let a = bridge_a.terminate();
    let b = bridge_b.terminate();
    assert!(a.contains("200 events acknowledged"), "{a}");
    assert!(b.contains("200 events acknowledged"), "{b}");
    drop((bus_a, bus_b));
}

#[test]
fn nats_killed_and_restarted_while_events_are_published_loses_and_repeats_nothing() {
    if nats_server_binary().is_none() {
        return;
    }
    let dir = TempDir::new();
    let nats = Nats::start(&dir.0);
    let url = nats.url();
    let sock = dir.0.join("bus.sock");
    let bus = ServerProcess::start(&sock, &[]);
    let bridge = Bridge::start(&sock, &url, "farm-1", dir.0.join("bridge.log"), &[]);
    const BATCHES: usize = 20;
    const PER: usize = 50;
    let publisher = {
        let sock = sock.clone();
        std::thread::spawn(move || {
            for b in 0..BATCHES {
                publish_to_bus(&sock, "render.frame", b * PER + 1, PER);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // Kill NATS while the publisher is at it, and bring it back on the same port and store.
    wait_until("some events in the stream", || {
        !stream_events(&url, &[]).0.is_empty()
    });
    let (store, port) = nats.kill();
    std::thread::sleep(Duration::from_millis(700));
    let nats = Nats::start_on(&store, Some(port));
    publisher.join().unwrap();
    let total = BATCHES * PER;
    wait_until("every event in the stream", || {
        stream_events(&url, &[]).0.len() >= total
    });
    // Whatever was in flight when it died was published again; the server dropped the copies.
    std::thread::sleep(Duration::from_millis(500));
    let (events, stderr, code) = stream_events(&url, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let by = ids_by_origin(&events);
    let mut ids = by["farm-1"].clone();
    ids.sort_unstable();
    assert_eq!(ids, (1..=total as u64).collect::<Vec<_>>(), "each once");
    assert_eq!(events.len(), total);
    let log = bridge.terminate();
    assert!(
        log.contains(&format!("{total} events acknowledged")),
        "{log}"
    );
    drop((bus, nats));
}

#[test]
fn events_nats_stored_but_did_not_acknowledge_in_time_are_sent_again_and_dropped_by_message_id() {
    if nats_server_binary().is_none() {
        return;
    }
    let dir = TempDir::new();
    let nats = Nats::start(&dir.0);
    let url = nats.url();
    let sock = dir.0.join("bus.sock");
    let bus = ServerProcess::start(&sock, &[]);
    let bridge = Bridge::start(&sock, &url, "frozen", dir.0.join("bridge.log"), &[]);
    publish_to_bus(&sock, "task.started", 1, 50);
    wait_until("50 events", || stream_events(&url, &[]).0.len() >= 50);
    // Frozen: the bridge's next publishes wait in the server's socket, unacknowledged, past the
    // ack timeout (5 s); thawed, the server stores them, then gets them again from the bridge.
    nats.signal(libc::SIGSTOP);
    publish_to_bus(&sock, "task.started", 51, 50);
    std::thread::sleep(Duration::from_secs(7));
    nats.signal(libc::SIGCONT);
    wait_until("100 events", || stream_events(&url, &[]).0.len() >= 100);
    let log = bridge.terminate();
    let (events, stderr, code) = stream_events(&url, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let ids = ids_by_origin(&events)["frozen"].clone();
    assert_eq!(
        ids,
        (1..=100).collect::<Vec<u64>>(),
        "each once, in order: {log}"
    );
    assert!(
        log.contains("did not acknowledge") && !log.contains("(0 it had already)"),
        "the resends happened and the server dropped them: {log}"
    );
    drop(bus);
}

#[test]
fn a_bridge_that_restarts_resumes_after_the_last_acknowledged_and_reports_what_the_bus_dropped() {
    if nats_server_binary().is_none() {
        return;
    }
    let dir = TempDir::new();
    let nats = Nats::start(&dir.0);
    let url = nats.url();
    let sock = dir.0.join("bus.sock");
    // A bus that keeps only 10 events.
    let bus = ServerProcess::start(&sock, &["--history", "10"]);
    let bridge = Bridge::start(&sock, &url, "edge", dir.0.join("1.log"), &[]);
    publish_to_bus(&sock, "task.started", 1, 5);
    wait_until("5 events", || stream_events(&url, &[]).0.len() >= 5);
    // Killed: no clean checkpoint; restarted: no duplicate.
    bridge.kill();
    publish_to_bus(&sock, "task.started", 6, 3);
    let bridge = Bridge::start(&sock, &url, "edge", dir.0.join("2.log"), &[]);
    wait_until("8 events", || stream_events(&url, &[]).0.len() >= 8);
    bridge.terminate();
    // Stopped cleanly, then the bus moves on past its history: 20 more, it keeps the last 10.
    publish_to_bus(&sock, "task.started", 9, 20);
    let bridge = Bridge::start(&sock, &url, "edge", dir.0.join("3.log"), &[]);
    wait_until("18 events", || stream_events(&url, &[]).0.len() >= 18);
    std::thread::sleep(Duration::from_millis(300));
    let log = bridge.terminate();
    assert!(
        log.contains("resuming the bus") && log.contains("after #8"),
        "{log}"
    );
    assert!(
        log.contains("10 events lost (#9 to #18, no longer in history)"),
        "the bridge says what the bus no longer held: {log}"
    );
    let (events, stderr, code) = stream_events(&url, &[]);
    let ids: Vec<u64> = ids_by_origin(&events)["edge"].clone();
    let expected: Vec<u64> = (1..=8).chain(19..=28).collect();
    assert_eq!(ids, expected, "no duplicate; the gap is the bus's");
    // And a reader is told, in place, with the origin and its count.
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "10 events of origin edge lost before they reached NATS (its #9 to #18, no longer in \
             history)"
        ),
        "{stderr}"
    );
    drop(bus);
}

#[test]
fn a_stream_whose_limits_dropped_old_events_reports_the_gap() {
    if nats_server_binary().is_none() {
        return;
    }
    let dir = TempDir::new();
    let nats = Nats::start(&dir.0);
    let url = nats.url();
    let lines: String = (1..=30)
        .map(|i| format!("{{\"event_type\":\"tick\",\"data\":{{\"n\":{i}}}}}\n"))
        .collect();
    let out = run(
        &["--nats", &url, "--max-events", "10", "publish", "--stdin"],
        &lines,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Everything kept: nothing was asked for that is gone.
    let (events, stderr, code) = stream_events(&url, &[]);
    assert_eq!((events.len(), code), (10, Some(0)), "{stderr}");
    // From id 1: the 20 the stream dropped are said, with their count, and the status says so.
    let out = run(
        &["--nats", &url, "events", "--no-follow", "--since", "id:1"],
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("20 events lost (#1 to #20, no longer in history)"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 10);
    // A narrowed read cannot count what was dropped, and says so without a number.
    let out = run(
        &[
            "--nats",
            &url,
            "events",
            "--no-follow",
            "--since",
            "id:5",
            "--filter",
            "tick",
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("events lost (#5 to #20, no longer in history)"),
        "{stderr}"
    );
    // The stream exists with 10; other limits on the command line are refused, naming both.
    let out = run(&["--nats", &url, "--max-events", "50", "publish", "x"], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--max-events 50 (it keeps 10") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn a_server_short_of_storage_for_the_stream_says_so_and_what_to_do_in_one_line() {
    if nats_server_binary().is_none() {
        return;
    }
    let dir = TempDir::new();
    let nats = Nats::start_with(&dir.0, None, Some("max_file_store: 8MB"));
    let url = nats.url();
    // The default stream keeps up to 1 GiB: more than this server stores.
    let out = run(&["--nats", &url, "publish", "task.started"], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("stream IPCKIT: the server refused to create it")
            && stderr.contains("insufficient")
            && stderr.contains("--max-bytes"),
        "{stderr}"
    );
    // Asking for what it has works, and the event is there.
    let out = run(
        &[
            "--nats",
            &url,
            "publish",
            "--max-bytes",
            "4MB",
            "task.started",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (events, stderr, _) = stream_events(&url, &[]);
    assert_eq!(events.len(), 1, "{stderr}");
    drop(nats);
}

#[test]
fn filters_are_narrowed_on_the_server_and_exact_on_the_client() {
    if nats_server_binary().is_none() {
        return;
    }
    let dir = TempDir::new();
    let nats = Nats::start(&dir.0);
    let url = nats.url();
    let mut lines = String::new();
    for i in 0..60 {
        let kind = [
            "task.started",
            "task.progress",
            "log.info",
            "log.stderr",
            "mcp.request",
            "task.done",
        ][i % 6];
        lines.push_str(&format!(
            "{{\"event_type\":\"{kind}\",\"resource_id\":\"job-{}\",\"data\":{{\"n\":{i}}}}}\n",
            i % 2
        ));
    }
    let out = run(&["--nats", &url, "publish", "--stdin"], &lines);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let options = NatsOptions::new(url.clone());
        let client = ipckit::nats::connect(&options, None).await.unwrap();
        let js = ipckit::nats::jetstream(client, Duration::from_secs(5));
        let stream = ipckit::nats::ensure_stream(&js, &options).await.unwrap();
        let read_with = |filter: &str| {
            let stream = stream.clone();
            let filter: ipckit::EventFilter = filter.parse().unwrap();
            async move {
                let mut reader = StreamReader::open(stream, options_mapping(), filter, Start::All)
                    .await
                    .unwrap();
                reader.stop_at(60);
                let mut types = Vec::new();
                while let Some(item) = reader.next().await {
                    if let NatsItem::Event(e) = item.unwrap() {
                        types.push((e.event.event_type.clone(), e.event.resource_id.clone()));
                    }
                }
                (reader.narrowing().clone(), reader.read(), types)
            }
        };
        // One subject: the server sends only task.* (30 of 60), the client drops task.progress and
        // job-1.
        let (narrowing, read, types) = read_with("task.* !task.progress res:job-0").await;
        assert_eq!(narrowing, Narrowing::Server(vec!["ipckit.task.>".into()]));
        assert_eq!(read, 30, "the server sent only task.* events");
        assert_eq!(types.len(), 10 + 10 - 10, "{types:?}");
        assert!(types.iter().all(|(t, r)| t != "task.progress"
            && t.starts_with("task.")
            && r.as_deref() == Some("job-0")));
        // Two subjects: servers from 2.10 narrow to both; 2.9 ignores the list, and the consumer
        // config it sends back says so: everything comes, and the client filters.
        let (narrowing, read, types) = read_with("log.* mcp.request").await;
        match narrowing {
            Narrowing::Server(subjects) => {
                assert_eq!(subjects, ["ipckit.log.>", "ipckit.mcp.request"]);
                assert_eq!(read, 30);
            }
            Narrowing::Ignored(subjects) => {
                assert_eq!(subjects, ["ipckit.log.>", "ipckit.mcp.request"]);
                assert_eq!(read, 60, "not narrowed: every event came");
            }
            Narrowing::None => panic!("log.* mcp.request can be narrowed"),
        }
        assert_eq!(types.len(), 30);
        assert!(types
            .iter()
            .all(|(t, _)| t.starts_with("log.") || t == "mcp.request"));
        // A glob no subject wildcard expresses: not narrowed, exact on the client.
        let (narrowing, read, types) = read_with("*.progress").await;
        assert_eq!((narrowing, read, types.len()), (Narrowing::None, 60, 10));
    });
    // The command line gives the same.
    let (events, stderr, code) = stream_events(&url, &[]);
    assert_eq!((events.len(), code), (60, Some(0)), "{stderr}");
    let out = run(
        &[
            "--nats",
            &url,
            "events",
            "--no-follow",
            "--filter",
            "task.* !task.progress res:job-0",
        ],
        "",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 10);
}

fn options_mapping() -> ipckit::nats::Mapping {
    ipckit::nats::Mapping::default()
}

// The pseudo-terminal harness, as tests/tui_pty.rs has it.

const COLS: usize = 120;
const ROWS: usize = 32;

struct Screen {
    raw: Vec<u8>,
}

impl Screen {
    /// The screen as a tiny VT100 would show it: cursor moves, clears, printable text.
    fn text(&self) -> String {
        let mut cells = vec![vec![' '; COLS]; ROWS];
        let (mut row, mut col) = (0usize, 0usize);
        let text = String::from_utf8_lossy(&self.raw).into_owned();
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
                        let nums: Vec<usize> = params
                            .trim_start_matches('?')
                            .split(';')
                            .map(|n| n.parse().unwrap_or(0))
                            .collect();
                        match fin {
                            'H' | 'f' => {
                                row = nums.first().copied().unwrap_or(1).max(1) - 1;
                                col = nums.get(1).copied().unwrap_or(1).max(1) - 1;
                            }
                            'J' if nums.first() == Some(&2) => cells = vec![vec![' '; COLS]; ROWS],
                            'K' if row < ROWS => {
                                for cell in cells[row].iter_mut().skip(col) {
                                    *cell = ' ';
                                }
                            }
                            _ => {}
                        }
                    }
                    Some(']') => {
                        while let Some(p) = chars.next() {
                            if p == '\x07' || (p == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                                break;
                            }
                        }
                    }
                    _ => {}
                },
                '\r' => col = 0,
                '\n' => row = (row + 1).min(ROWS - 1),
                c if c < ' ' => {}
                c => {
                    if row < ROWS && col < COLS {
                        cells[row][col] = c;
                    }
                    col += 1;
                }
            }
        }
        cells
            .iter()
            .map(|r| r.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn wait_for_screen(screen: &Arc<Mutex<Screen>>, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = screen.lock().unwrap().text();
        if check(&text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; screen:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_monitor_in_a_pty_attached_with_nats_loads_history_follows_and_rides_out_a_restart() {
    if nats_server_binary().is_none() {
        return;
    }
    let dir = TempDir::new();
    let nats = Nats::start(&dir.0);
    let url = nats.url();
    let lines: String = (0..12)
        .map(|i| format!("{{\"event_type\":\"task.started\",\"resource_id\":\"job-{i}\"}}\n"))
        .collect();
    let out = run(&["--nats", &url, "publish", "--stdin"], &lines);
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
    // The newest 10 of the 12 the stream holds.
    cmd.args(["--nats", &url, "--history", "10"]);
    cmd.env("TERM", "xterm-256color");
    cmd.env_remove("IPCKIT_SOCKET");
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let mut writer = pty.master.take_writer().unwrap();
    let screen = Arc::new(Mutex::new(Screen { raw: Vec::new() }));
    let feeder = {
        let screen = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().raw.extend_from_slice(&buf[..n]);
            }
        })
    };
    let label = format!("attached IPCKIT@{url}");
    wait_for_screen(&screen, "the stream's newest 10 events", |s| {
        s.contains(&label)
            && s.contains("10 of 10 match")
            && s.contains("job-11")
            && !s.contains("job-0")
    });
    // The scrubber reaches back past what the monitor holds: Home goes to the oldest held event
    // (#3), one more step back reads the page before it from the stream; End comes back to live.
    writer.write_all(b"\x1b[H").unwrap();
    writer.flush().unwrap();
    wait_for_screen(&screen, "the oldest held event under the cursor", |s| {
        s.contains("SCRUBBING") && s.contains("#3 task.started")
    });
    writer.write_all(b"\x1b[D").unwrap();
    writer.flush().unwrap();
    wait_for_screen(&screen, "the older page read from the stream", |s| {
        s.contains("OLDER THAN HELD #1–#2 (stream from #1)")
            && s.contains("job-0")
            && s.contains("job-1")
            && !s.contains("job-2")
    });
    writer.write_all(b"\x1b[F").unwrap();
    writer.flush().unwrap();
    wait_for_screen(&screen, "live again", |s| {
        s.contains("LIVE") && !s.contains("OLDER THAN HELD") && s.contains("job-11")
    });
    // Live: an event published now shows up.
    let out = run(
        &[
            "--nats",
            &url,
            "publish",
            "deploy.done",
            "--resource",
            "live-1",
        ],
        "",
    );
    assert!(out.status.success());
    wait_for_screen(&screen, "the live event", |s| {
        s.contains("live-1") && s.contains("deploy.done")
    });
    // NATS goes away: the monitor says so and counts down; it comes back: the monitor resumes.
    let (store, port) = nats.kill();
    wait_for_screen(&screen, "the disconnected state", |s| {
        s.contains("DISCONNECTED retrying in")
    });
    let nats = Nats::start_on(&store, Some(port));
    wait_for_screen(&screen, "attached again", |s| {
        s.contains(&label) && !s.contains("DISCONNECTED")
    });
    let out = run(
        &[
            "--nats",
            &url,
            "publish",
            "after.restart",
            "--resource",
            "back-1",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_screen(&screen, "the event after the restart, once", |s| {
        s.contains("back-1") && s.matches("live-1").count() == 1 && s.contains("#14 after.restart")
    });
    writer.write_all(b"q").unwrap();
    writer.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the monitor did not quit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = feeder.join();
    assert!(status.success(), "{status:?}");
    let raw = String::from_utf8_lossy(&screen.lock().unwrap().raw).into_owned();
    assert!(
        raw.rfind("\x1b[?1049l") > raw.rfind("\x1b[?1049h"),
        "left the alternate screen"
    );
    drop(nats);
}

/// A stdio MCP server in a few lines: answers every request, reporting progress first when the
/// request carries a token.
const TINY_MCP_SERVER: &str = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    token = m.get("params", {}).get("_meta", {}).get("progressToken")
    if token is not None:
        print(json.dumps({"jsonrpc": "2.0", "method": "notifications/progress",
                          "params": {"progressToken": token, "progress": 1, "total": 2}}), flush=True)
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {"content": []}}), flush=True)
"#;

#[test]
fn mcp_with_nats_puts_each_call_and_its_progress_on_the_stream() {
    if nats_server_binary().is_none() {
        return;
    }
    let dir = TempDir::new();
    let nats = Nats::start(&dir.0);
    let url = nats.url();
    let call = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"render\",\"arguments\":{}}}\n";
    let out = run(
        &[
            "--nats",
            &url,
            "mcp",
            "--name",
            "tiny",
            "--",
            "python3",
            "-c",
            TINY_MCP_SERVER,
        ],
        call,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The client gets the answer and not the progress it did not ask for.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"jsonrpc\": \"2.0\", \"id\": 1, \"result\": {\"content\": []}}\n",
        "{stderr}"
    );
    let (events, stderr, code) = stream_events(&url, &["--filter", "mcp.* res:tiny"]);
    assert_eq!(code, Some(0), "{stderr}");
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "mcp.server.started",
            "mcp.request",
            "mcp.notifications.progress",
            "mcp.response",
            "mcp.server.exited"
        ],
        "{events:?}"
    );
    assert_eq!(events[1]["data"]["tool"], "render", "{events:?}");
    assert_eq!(events[2]["data"]["progress"], 1.0, "{events:?}");
}
