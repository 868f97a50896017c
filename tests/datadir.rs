//! `serve --data-dir`: the bus's history on disk, through the real binary (kill -9, restarts,
//! replay from disk, a torn and a damaged record, a second server, another version, retention, a
//! full disk) and through the library (`EventBus::open`, `try_publish`, reading older than memory).
#![cfg(unix)]

mod common;

use common::{run, wait_for_server, Raw, TempDir, BIN};
use ipckit::event_stream::{CatchUp, Delivery, Loss, LossReason};
use ipckit::store::disk::{DiskOptions, FsyncPolicy};
use ipckit::{Event, EventBus, EventBusConfig, EventFilter, EventId, Replay};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `ipckit-top serve --data-dir` with its stderr collected line by line.
struct Serve {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Serve {
    /// Starts a server on `socket` keeping its history in `data`, and waits until it answers.
    fn start(socket: &Path, data: &Path, extra: &[&str]) -> Serve {
        let mut serve = Serve::spawn(socket, data, extra);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = serve.child.try_wait().unwrap() {
                panic!("the server exited ({status}): {:?}", serve.finish_stderr());
            }
            if UnixStream::connect(socket).is_ok() {
                wait_for_server(socket);
                return serve;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no server came up at {}", socket.display());
    }

    fn spawn(socket: &Path, data: &Path, extra: &[&str]) -> Serve {
        let mut child = Command::new(BIN)
            .arg("--socket")
            .arg(socket)
            .arg("serve")
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .env_remove("IPCKIT_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stderr.take().unwrap());
        let sink = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Serve {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stderr lines so far.
    fn lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to 60 s) for a stderr line containing `text`; returns it.
    fn wait_for_line(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(text)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no stderr line with {text:?}: {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The line the server printed on start about its data dir.
    fn startup_line(&self) -> String {
        self.wait_for_line("ipckit-top: data dir ")
    }

    /// SIGKILL, and wait.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, wait for the exit; returns the status and every stderr line.
    fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        // SAFETY: a plain kill(2) of our own child.
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        (status, self.finish_stderr())
    }

    fn finish_stderr(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.lines()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with `args`, killing it if it is still running after 30 s (a server that should
/// have refused to start): its exit code (`None` if killed) and stderr.
fn run_briefly(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("IPCKIT_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

fn data(tmp: &TempDir) -> PathBuf {
    tmp.0.join("data")
}

fn sock(tmp: &TempDir) -> String {
    tmp.socket().to_str().unwrap().to_owned()
}

/// `events ARGS --format json` run to its end: the events, stderr, and the exit code.
fn events(socket: &str, args: &[&str]) -> (Vec<Value>, String, i32) {
    let mut all = vec!["--socket", socket, "events", "--format", "json"];
    all.extend_from_slice(args);
    let out = run(&all, "");
    let events = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        events,
        String::from_utf8(out.stderr).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

fn ids_of(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["id"].as_u64().unwrap()).collect()
}

/// Publishes the events (one JSON object per line) with `publish --stdin`.
fn publish_lines(socket: &str, lines: &[String]) {
    let out = run(
        &["--socket", socket, "publish", "--stdin"],
        &(lines.join("\n") + "\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test's event number `i`: alternating types, five resources, a word in one of fifty.
fn line(i: u64) -> String {
    let word = if i.is_multiple_of(50) {
        "needle"
    } else {
        "hay"
    };
    json!({
        "event_type": if i.is_multiple_of(2) { "task.progress" } else { "log.stdout" },
        "resource_id": format!("job-{}", i % 5),
        "timestamp": 1_000_000.0 + i as f64,
        "data": {"i": i, "word": word, "pad": "x".repeat((i % 40) as usize)},
    })
    .to_string()
}

fn stats(socket: &Path) -> Value {
    let mut raw = Raw::connect(socket);
    raw.request(r#"{"type":"stats","id":1}"#)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}

/// Names and sizes of a directory's files, with the contents of the small ones (FORMAT, LOCK: the
/// holder's pid).
fn listing(dir: &Path) -> Vec<(PathBuf, u64, Option<Vec<u8>>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let len = e.metadata().unwrap().len();
            let small = (len < 4096).then(|| std::fs::read(e.path()).unwrap());
            (e.path(), len, small)
        })
        .collect();
    out.sort();
    out
}

/// A small xorshift generator for the random moments of the kill -9 test.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Publishes batches of 1 to 8 events on a raw connection until the connection dies, recording the id
/// the server acknowledged for each event (with the event's payload).
fn publisher(
    socket: PathBuf,
    round: u64,
    mut seed: u64,
    acked: Arc<Mutex<BTreeMap<u64, Value>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(stream) = UnixStream::connect(&socket) else {
            return;
        };
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut seq = 0u64;
        for request in 1u64.. {
            let n = 1 + next(&mut seed) % 8;
            let datas: Vec<Value> = (0..n)
                .map(|k| json!({"round": round, "seq": seq + k, "pad": "p".repeat((seq + k) as usize % 300)}))
                .collect();
            seq += n;
            let events: Vec<Value> = datas
                .iter()
                .map(|d| json!({"event_type": "kill.test", "resource_id": "r", "data": d}))
                .collect();
            let frame = json!({"type": "publish_batch", "id": request, "events": events});
            if writer.write_all(format!("{frame}\n").as_bytes()).is_err() {
                return;
            }
            line.clear();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
            let Ok(reply) = serde_json::from_str::<Value>(&line) else {
                return;
            };
            assert_eq!(reply["type"], "published", "{reply}");
            let ids = reply["ids"].as_array().unwrap();
            let mut acked = acked.lock().unwrap();
            for (id, data) in ids.iter().zip(datas) {
                let previous = acked.insert(id.as_u64().unwrap(), data);
                assert!(previous.is_none(), "id {id} acknowledged twice");
            }
        }
    })
}

#[test]
fn kill_9_of_serve_right_after_publishes_loses_no_acknowledged_event_and_reuses_no_id() {
    let tmp = TempDir::new();
    let socket = sock(&tmp);
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    eprintln!("kill -9 seed {seed}");
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    for (round, fsync) in ["interval", "never", "always", "interval"]
        .into_iter()
        .enumerate()
    {
        let server = Serve::start(
            &tmp.socket(),
            &data(&tmp),
            &[
                "--segment-size",
                "64K",
                "--fsync",
                fsync,
                "--history",
                "100",
            ],
        );
        let before = acked.lock().unwrap().len();
        let kill_after = before + 20 + (next(&mut seed) % 1500) as usize;
        let publishing = publisher(
            tmp.socket(),
            round as u64,
            next(&mut seed),
            Arc::clone(&acked),
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        while acked.lock().unwrap().len() < kill_after {
            assert!(
                Instant::now() < deadline,
                "round {round}: publishing stalled"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        server.kill9();
        publishing.join().unwrap();
        let acked_now = acked.lock().unwrap().clone();

        // After the restart every acknowledged event is there, with what was published under its
        // id (an id given twice would show another round's payload), and nothing is reported lost.
        let server = Serve::start(&tmp.socket(), &data(&tmp), &["--segment-size", "64K"]);
        let startup = server.startup_line();
        assert!(!startup.contains("damaged"), "round {round}: {startup}");
        let (found, stderr, code) = events(&socket, &["--since", "id:1", "--no-follow"]);
        assert_eq!(code, 0, "round {round}: {stderr}");
        let found: BTreeMap<u64, Value> = found
            .into_iter()
            .map(|e| (e["id"].as_u64().unwrap(), e["data"].clone()))
            .collect();
        for (id, data) in &acked_now {
            assert_eq!(
                found.get(id),
                Some(data),
                "round {round} (seed {seed}): acknowledged id {id} after the restart"
            );
        }
        let last = *found.keys().next_back().unwrap();
        assert_eq!(
            found.keys().copied().collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>(),
            "round {round}: ids on disk"
        );
        // Ids go on after the last one kept.
        let mut raw = Raw::connect(&tmp.socket());
        let reply =
            raw.request(r#"{"type":"publish","id":1,"event":{"event_type":"after.restart"}}"#);
        assert_eq!(reply["ids"], json!([last + 1]), "round {round}: {reply}");
        drop(raw);
        acked.lock().unwrap().insert(last + 1, Value::Null);
        eprintln!(
            "round {round} ({fsync}): {} acknowledged, {last} on disk; {startup}",
            acked_now.len()
        );
        server.kill9();
    }
}

#[test]
fn a_restarted_server_replays_from_disk_what_its_memory_no_longer_holds() {
    let tmp = TempDir::new();
    let socket = sock(&tmp);
    let extra = ["--history", "10", "--segment-size", "16K"];
    let server = Serve::start(&tmp.socket(), &data(&tmp), &extra);
    publish_lines(&socket, &(1..=500).map(line).collect::<Vec<_>>());
    let (status, _) = server.terminate();
    assert!(status.success());

    let server = Serve::start(&tmp.socket(), &data(&tmp), &extra);
    // 500 events and the previous run's system.shutdown.
    let startup = server.startup_line();
    assert!(
        startup.contains("501 records") && startup.contains("ids 1..=501"),
        "{startup}"
    );
    assert!(
        startup.contains("10 events loaded into memory; ids go on from 502"),
        "{startup}"
    );
    let stats = stats(&tmp.socket());
    assert_eq!(stats["history_len"], 10, "{stats}");
    assert_eq!(stats["oldest_id"], 1, "{stats}");
    assert_eq!(stats["disk"]["records"], 501, "{stats}");
    assert_eq!(stats["disk"]["oldest_id"], 1, "{stats}");
    assert_eq!(stats["disk"]["errors"], 0, "{stats}");
    assert!(
        stats["disk"]["bytes"].as_u64().unwrap() > 500 * 60,
        "{stats}"
    );
    assert!(stats["history_bytes"].as_u64().unwrap() > 0, "{stats}");

    // A subscriber's replay from id 1, then live events.
    let mut raw = Raw::connect(&tmp.socket());
    let reply = raw.request(r#"{"type":"subscribe","id":1,"filter":"","replay":{"from_id":1}}"#);
    assert_eq!(reply["gap"], Value::Null, "{reply}");
    let mut ids = Vec::new();
    while ids.len() < 501 {
        let frame = raw.read();
        assert_eq!(frame["type"], "event", "{frame}");
        ids.push(frame["event"]["id"].as_u64().unwrap());
    }
    assert_eq!(ids, (1..=501).collect::<Vec<_>>());
    raw.send(b"{\"type\":\"publish\",\"id\":2,\"event\":{\"event_type\":\"live\"}}\n");
    let mut live = None;
    while live.is_none() {
        let frame = raw.read();
        if frame["type"] == "event" {
            live = Some(frame["event"]["id"].clone());
        }
    }
    assert_eq!(live, Some(json!(502)));

    // `events --since id:1`, without and with following, prints every event on disk.
    let (all, stderr, code) = events(&socket, &["--since", "id:1", "--no-follow"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ids_of(&all), (1..=502).collect::<Vec<_>>());
    assert_eq!(
        all[41]["data"],
        serde_json::from_str::<Value>(&line(42)).unwrap()["data"]
    );
    let (followed, stderr, code) = events(&socket, &["--since", "id:1", "--until", "id:502"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ids_of(&followed), (1..=502).collect::<Vec<_>>());

    // Filters are applied to what is read from disk: a resource and a word, or a time.
    let (hits, _, code) = events(
        &socket,
        &[
            "--since",
            "id:1",
            "--no-follow",
            "--filter",
            "res:job-0 text:needle",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(ids_of(&hits), (50..=500).step_by(50).collect::<Vec<_>>());
    let (late, _, code) = events(
        &socket,
        &["--since", "@1000400", "--no-follow", "--filter", "task.*"],
    );
    assert_eq!(code, 0);
    assert_eq!(ids_of(&late), (400..=500).step_by(2).collect::<Vec<_>>());
    let (late, _, code) = events(&socket, &["--since", "@1000490", "--until", "id:500"]);
    assert_eq!(code, 0);
    assert_eq!(ids_of(&late), (490..=500).collect::<Vec<_>>());
    server.terminate();
}

/// The newest segment file and the offset in it of the first occurrence of `needle`.
fn find_in_segments(dir: &Path, needle: &[u8]) -> (PathBuf, usize) {
    for segment in segments(dir) {
        let bytes = std::fs::read(&segment).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            return (segment, at);
        }
    }
    panic!("{:?} is in no segment", String::from_utf8_lossy(needle));
}

#[test]
fn a_torn_last_record_is_cut_reported_and_its_id_given_again() {
    let tmp = TempDir::new();
    let socket = sock(&tmp);
    let server = Serve::start(&tmp.socket(), &data(&tmp), &[]);
    publish_lines(&socket, &(1..=20).map(line).collect::<Vec<_>>());
    server.kill9();
    // The last record, event 20, loses its last bytes: a write the process did not finish. The
    // segment was preallocated, so zeros follow, as after a real crash.
    let (segment, at) = find_in_segments(&data(&tmp), br#"{"i":20,"#);
    let mut bytes = std::fs::read(&segment).unwrap();
    for b in &mut bytes[at + 10..at + 30] {
        *b = 0;
    }
    std::fs::write(&segment, &bytes).unwrap();

    let server = Serve::start(&tmp.socket(), &data(&tmp), &[]);
    let startup = server.startup_line();
    assert!(
        startup.contains("cut a torn last record") && startup.contains("ids 1..=19"),
        "{startup}"
    );
    assert!(startup.contains("ids go on from 20"), "{startup}");
    let (found, stderr, code) = events(&socket, &["--since", "id:1", "--no-follow"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ids_of(&found), (1..=19).collect::<Vec<_>>());
    assert_eq!(found[18]["data"]["i"], 19);
    let mut raw = Raw::connect(&tmp.socket());
    let reply = raw.request(r#"{"type":"publish","id":1,"event":{"event_type":"after"}}"#);
    assert_eq!(reply["ids"], json!([20]));
    server.terminate();
}

#[test]
fn a_checksum_mismatch_mid_segment_keeps_what_is_before_and_serving_goes_on() {
    let tmp = TempDir::new();
    let socket = sock(&tmp);
    let server = Serve::start(&tmp.socket(), &data(&tmp), &["--history", "5"]);
    publish_lines(&socket, &(1..=100).map(line).collect::<Vec<_>>());
    let (status, _) = server.terminate();
    assert!(status.success());
    // One bit of event 50's data flips.
    let (segment, at) = find_in_segments(&data(&tmp), br#"{"i":50,"#);
    let mut bytes = std::fs::read(&segment).unwrap();
    let files_before = segments(&data(&tmp));
    bytes[at + 3] ^= 0x04;
    std::fs::write(&segment, &bytes).unwrap();

    let server = Serve::start(&tmp.socket(), &data(&tmp), &["--history", "5"]);
    let startup = server.startup_line();
    assert!(
        startup.contains("damaged record after id 49")
            && startup.contains("51 records there still check out, ids 51..=101")
            && startup.contains("ids go on from 102"),
        "{startup}"
    );
    // Kept as found, as evidence.
    assert_eq!(std::fs::read(&segment).unwrap(), bytes);
    assert_eq!(
        segments(&data(&tmp))[..files_before.len()],
        files_before[..]
    );
    // Everything before the damage is served, the damaged range is said to be lost, and publishing
    // goes on after the highest id seen.
    let mut raw = Raw::connect(&tmp.socket());
    let reply = raw.request(r#"{"type":"publish","id":1,"event":{"event_type":"after"}}"#);
    assert_eq!(reply["ids"], json!([102]));
    let (found, stderr, code) = events(&socket, &["--since", "id:1", "--no-follow"]);
    assert_eq!(ids_of(&found), (1..=49).chain([102]).collect::<Vec<_>>());
    assert_eq!(found[48]["data"]["i"], 49);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        stderr.trim(),
        "ipckit-top: 52 events lost (#50 to #101, no longer in history)"
    );
    // A subscriber's replay says the same, in place.
    let reply = raw.request(r#"{"type":"subscribe","id":2,"filter":"","replay":{"from_id":40}}"#);
    assert_eq!(reply["type"], "subscribed");
    let mut seen = Vec::new();
    while seen.len() < 11 {
        let frame = raw.read();
        match frame["type"].as_str() {
            Some("event") => seen.push(frame["event"]["id"].to_string()),
            Some("lost") => seen.push(format!(
                "lost {}..={} ({})",
                frame["first_id"], frame["last_id"], frame["count"]
            )),
            _ => {}
        }
    }
    assert_eq!(
        seen,
        [
            "40",
            "41",
            "42",
            "43",
            "44",
            "45",
            "46",
            "47",
            "48",
            "49",
            "lost 50..=101 (52)"
        ]
    );
    assert_eq!(raw.read()["event"]["id"], 102);
    server.terminate();
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused_in_one_line_and_the_first_serves_on() {
    let tmp = TempDir::new();
    let first = Serve::start(&tmp.socket(), &data(&tmp), &[]);
    publish_lines(&sock(&tmp), &(1..=3).map(line).collect::<Vec<_>>());
    let before = listing(&data(&tmp));
    let other = tmp.0.join("other.sock");
    let (code, stderr) = run_briefly(&[
        "--socket",
        other.to_str().unwrap(),
        "serve",
        "--data-dir",
        data(&tmp).to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "ipckit-top: data dir {} is in use by another process (pid {})\n",
            data(&tmp).display(),
            first.pid()
        )
    );
    assert!(!other.exists(), "the refused server left a socket");
    assert_eq!(
        listing(&data(&tmp)),
        before,
        "the refused server touched the data dir"
    );
    // The first one serves on.
    let mut raw = Raw::connect(&tmp.socket());
    let reply = raw.request(r#"{"type":"publish","id":1,"event":{"event_type":"still.here"}}"#);
    assert_eq!(reply["ids"], json!([4]));
    first.terminate();
}

#[test]
fn a_data_dir_of_another_version_or_unsafe_is_refused_in_one_line_and_left_untouched() {
    let tmp = TempDir::new();
    let server = Serve::start(&tmp.socket(), &data(&tmp), &[]);
    publish_lines(&sock(&tmp), &(1..=3).map(line).collect::<Vec<_>>());
    server.terminate();
    let format = data(&tmp).join("FORMAT");
    let text = std::fs::read_to_string(&format).unwrap();
    assert!(text.contains("format 1"), "{text}");
    std::fs::write(&format, text.replace("format 1", "format 2")).unwrap();
    let serve = |dir: &Path| {
        run_briefly(&[
            "--socket",
            &sock(&tmp),
            "serve",
            "--data-dir",
            dir.to_str().unwrap(),
        ])
    };
    let before = listing(&data(&tmp));
    let (code, stderr) = serve(&data(&tmp));
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        format!(
            "ipckit-top: {} is in format version 2; this build reads version 1, and leaves it as it is\n",
            data(&tmp).display()
        )
    );
    assert_eq!(listing(&data(&tmp)), before);
    assert!(!tmp.socket().exists());

    // Writable by others, and (as root) owned by another user.
    let open = tmp.0.join("open");
    std::fs::create_dir(&open).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, stderr) = serve(&open);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("ipckit-top: unsafe data dir ") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let foreign = tmp.0.join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700)).unwrap();
        let (code, stderr) = serve(&foreign);
        assert_eq!(code, Some(1));
        assert!(
            stderr.starts_with("ipckit-top: unsafe data dir ") && stderr.lines().count() == 1,
            "{stderr}"
        );
        assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 0);
    }
}

#[test]
fn retention_by_size_deletes_whole_old_segments_and_since_id_1_reports_the_gap() {
    let tmp = TempDir::new();
    let socket = sock(&tmp);
    let server = Serve::start(
        &tmp.socket(),
        &data(&tmp),
        &[
            "--history",
            "10",
            "--segment-size",
            "16K",
            "--retain",
            "64K",
        ],
    );
    publish_lines(&socket, &(1..=2000).map(line).collect::<Vec<_>>());
    let said = server.wait_for_line("retention deleted");
    assert!(
        said.starts_with("ipckit-top: data dir: retention deleted"),
        "{said}"
    );
    let files = segments(&data(&tmp));
    let on_disk: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(
        on_disk <= (64 + 16) << 10,
        "{on_disk} bytes in {} segments",
        files.len()
    );
    let stats = stats(&tmp.socket());
    let oldest = stats["oldest_id"].as_u64().unwrap();
    assert!(oldest > 1, "{stats}");
    assert_eq!(stats["disk"]["oldest_id"], oldest, "{stats}");
    // The first segment kept starts at the oldest id.
    let first_name = files[0].file_stem().unwrap().to_str().unwrap().to_owned();
    assert_eq!(first_name.parse::<u64>().unwrap(), oldest);

    let (found, stderr, code) = events(&socket, &["--since", "id:1", "--no-follow"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!(
            "ipckit-top: {} events lost (#1 to #{}, no longer in history)",
            oldest - 1,
            oldest - 1
        )
    );
    assert_eq!(ids_of(&found), (oldest..=2000).collect::<Vec<_>>());
    // A subscriber's replay from id 1 is told the same.
    let mut raw = Raw::connect(&tmp.socket());
    let reply = raw.request(r#"{"type":"subscribe","id":1,"filter":"","replay":{"from_id":1}}"#);
    assert_eq!(
        reply["gap"],
        json!({"requested": 1, "oldest_held": oldest}),
        "{reply}"
    );
    let lost = raw.read();
    assert_eq!(lost["type"], "lost", "{lost}");
    assert_eq!(
        (lost["first_id"].as_u64(), lost["last_id"].as_u64()),
        (Some(1), Some(oldest - 1))
    );
    assert_eq!(raw.read()["event"]["id"], oldest);
    drop(raw);

    // After a restart the same holds, and retention ran at start too.
    server.terminate();
    let server = Serve::start(
        &tmp.socket(),
        &data(&tmp),
        &[
            "--history",
            "10",
            "--segment-size",
            "16K",
            "--retain",
            "16K",
        ],
    );
    let startup = server.startup_line();
    assert!(startup.contains("retention deleted"), "{startup}");
    let (_, stderr, code) = events(&socket, &["--since", "id:1", "--no-follow"]);
    assert_eq!(code, 3, "{stderr}");
    server.terminate();
}

#[test]
fn retention_by_age_runs_while_serving() {
    let tmp = TempDir::new();
    let socket = sock(&tmp);
    let server = Serve::start(
        &tmp.socket(),
        &data(&tmp),
        &[
            "--history",
            "10",
            "--segment-size",
            "16K",
            "--retain-age",
            "2s",
        ],
    );
    // Events stamped now.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let lines: Vec<String> = (1..=600)
        .map(|i| {
            json!({"event_type": "a", "timestamp": now, "data": {"i": i, "pad": "y".repeat(100)}})
                .to_string()
        })
        .collect();
    publish_lines(&socket, &lines);
    // Two seconds later they are, and retention (every second, and whenever a segment starts)
    // deletes all segments but the newest.
    let said = server.wait_for_line("retention deleted");
    assert!(said.contains("ids 1..="), "{said}");
    let (found, stderr, code) = events(&socket, &["--since", "id:1", "--no-follow"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("events lost (#1 to #"), "{stderr}");
    assert_eq!(*ids_of(&found).last().unwrap(), 600);
    assert_eq!(segments(&data(&tmp)).len(), 1);
    server.terminate();
}

/// A small tmpfs, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    /// Mounts a tmpfs of `size` at `path`; `None` where that is not allowed (not root).
    fn tmpfs(path: PathBuf, size: &str) -> Option<Mount> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        std::fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .status()
            .ok()?;
        status.success().then_some(Mount(path))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_refuses_publishes_with_an_error_frame_and_loses_nothing_acknowledged() {
    let tmp = TempDir::new();
    let Some(mount) = Mount::tmpfs(tmp.0.join("mnt"), "1m") else {
        eprintln!("skipped: mounting a small tmpfs needs root (the library's full-disk tests cover the data dir)");
        return;
    };
    let ballast = mount.0.join("ballast");
    std::fs::write(&ballast, vec![1u8; 256 << 10]).unwrap();
    let data = mount.0.join("data");
    let server = Serve::start(
        &tmp.socket(),
        &data,
        &["--segment-size", "64K", "--history", "50"],
    );
    // A subscriber sees exactly the events that were published, none of the refused ones.
    let mut watcher = Raw::connect(&tmp.socket());
    let reply = watcher.request(r#"{"type":"subscribe","id":1,"filter":"","replay":"none"}"#);
    assert_eq!(reply["type"], "subscribed");
    let mut raw = Raw::connect(&tmp.socket());
    let mut acked = Vec::new();
    let refusal = loop {
        let request = acked.len() + 1;
        assert!(request < 100_000, "the 1 MiB disk never filled");
        let reply = raw.request(&format!(
            r#"{{"type":"publish","id":{request},"event":{{"event_type":"fill","data":{{"n":{request},"pad":"{}"}}}}}}"#,
            "z".repeat(200)
        ));
        match reply["type"].as_str() {
            Some("published") => acked.push(reply["ids"][0].as_u64().unwrap()),
            _ => break reply,
        }
    };
    assert_eq!(refusal["code"], "not_stored", "{refusal}");
    let message = refusal["message"].as_str().unwrap();
    assert!(
        message.starts_with("the event was not published: ")
            && message.contains("No space left on device"),
        "{message}"
    );
    assert!(
        acked.len() > 100,
        "{} events before the disk filled",
        acked.len()
    );
    assert_eq!(acked, (1..=acked.len() as u64).collect::<Vec<_>>());
    // The command line says it in one line, and a batch names what was published.
    // (An event as large as the one refused: a smaller one may still fit in the segment's room.)
    let pad = format!(r#"{{"pad":"{}"}}"#, "z".repeat(300));
    let out = run(
        &["--socket", &sock(&tmp), "publish", "x", "--data", &pad],
        "",
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with(
            "ipckit-top: the server refused the request: the event was not published: "
        ) && stderr.ends_with("(not_stored)\n")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    let said = server.wait_for_line("could not be written to disk");
    assert!(said.contains("No space left on device"), "{said}");
    let stats = stats(&tmp.socket());
    assert!(stats["disk"]["errors"].as_u64().unwrap() >= 2, "{stats}");
    assert_eq!(stats["published"], acked.len(), "{stats}");
    let (found, stderr, code) = events(&sock(&tmp), &["--since", "id:1", "--no-follow"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ids_of(&found), acked);

    // Space returns: publishing goes on with the next id, and everything survives a restart.
    std::fs::remove_file(&ballast).unwrap();
    let last = *acked.last().unwrap();
    let reply = raw.request(r#"{"type":"publish","id":0,"event":{"event_type":"again"}}"#);
    assert_eq!(reply["ids"], json!([last + 1]), "{reply}");
    let mut delivered = Vec::new();
    while delivered.last() != Some(&(last + 1)) {
        let frame = watcher.read();
        if frame["type"] == "event" {
            delivered.push(frame["event"]["id"].as_u64().unwrap());
        }
    }
    assert_eq!(delivered, (1..=last + 1).collect::<Vec<_>>());
    drop((raw, watcher));
    server.kill9();
    let server = Serve::start(&tmp.socket(), &data, &["--segment-size", "64K"]);
    let (found, stderr, code) = events(&sock(&tmp), &["--since", "id:1", "--no-follow"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ids_of(&found), (1..=last + 1).collect::<Vec<_>>());
    server.terminate();
    drop(mount);
}

// The library: `EventBus::open`.

fn options() -> DiskOptions {
    DiskOptions {
        segment_bytes: 16 << 10,
        fsync: FsyncPolicy::Never,
        ..DiskOptions::default()
    }
}

fn config(history: usize) -> EventBusConfig {
    EventBusConfig {
        history_size: history,
        subscriber_buffer: 64,
        ..Default::default()
    }
}

fn event(i: u64) -> Event {
    Event::with_resource(
        if i.is_multiple_of(3) {
            "task.progress"
        } else {
            "log.info"
        },
        &format!("job-{}", i % 7),
        json!({"i": i, "text": if i.is_multiple_of(100) { "Needle" } else { "hay" }}),
    )
}

/// Everything a catch-up reader delivers now.
fn drain(reader: &mut CatchUp) -> (Vec<EventId>, Vec<Loss>) {
    let (mut ids, mut losses) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    while reader.try_recv_batch(&mut out, 500) > 0 {
        for item in out.drain(..) {
            match item {
                Delivery::Event(e) => ids.push(e.id),
                Delivery::Lost(l) => losses.push(l),
            }
        }
    }
    (ids, losses)
}

#[test]
fn memory_stays_bounded_and_catch_up_reads_older_events_from_disk() {
    let tmp = TempDir::new();
    let (bus, recovery) = EventBus::open(config(50), data(&tmp), options()).unwrap();
    assert_eq!(recovery.records, 0);
    for i in 1..=3000 {
        assert_eq!(bus.try_publish(event(i)).unwrap(), i);
    }
    let stats = bus.stats();
    assert_eq!((stats.history_len, stats.oldest_id), (50, Some(1)));
    let disk = stats.disk.unwrap();
    assert_eq!(
        (disk.records, disk.oldest_id, disk.errors),
        (3000, Some(1), 0)
    );
    assert!(disk.segments > 5, "{disk:?}");
    // history() keeps its meaning: what memory holds.
    assert_eq!(bus.history(&EventFilter::new()).len(), 50);

    let all = EventFilter::new();
    let mut reader = CatchUp::new(&bus, all.clone(), Replay::FromId(1));
    let (ids, losses) = drain(&mut reader);
    assert_eq!(ids, (1..=3000).collect::<Vec<_>>());
    assert!(losses.is_empty(), "{losses:?}");
    let mut reader = CatchUp::new(&bus, all.clone(), Replay::All);
    assert_eq!(drain(&mut reader).0.len(), 3000);
    // Filters judged on what is read from disk, pages that cross from disk to memory.
    let filter = EventFilter::parse("task.* res:job-1 text:needle").unwrap();
    let mut reader = CatchUp::new(&bus, filter, Replay::FromId(1));
    let expected: Vec<u64> = (1..=3000)
        .filter(|&i: &u64| i.is_multiple_of(3) && i % 7 == 1 && i.is_multiple_of(100))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(drain(&mut reader).0, expected);
    let (page, oldest) = bus.history_page(&all, 2900..=2990, 60);
    assert_eq!(oldest, Some(1));
    assert_eq!(
        page.iter().map(|e| e.id).collect::<Vec<_>>(),
        (2900..2960).collect::<Vec<_>>()
    );
    let (page, _) = bus.history_page(&EventFilter::parse("log.*").unwrap(), 0..=u64::MAX, 5);
    assert_eq!(
        page.iter().map(|e| e.id).collect::<Vec<_>>(),
        [1, 2, 4, 5, 7]
    );
    assert_eq!(page[3].data, event(5).data);

    // After a restart: ids go on, memory holds the newest, a replay from a time starts there.
    drop((reader, bus));
    let (bus, recovery) = EventBus::open(config(50), data(&tmp), options()).unwrap();
    assert_eq!((recovery.records, recovery.last_id), (3000, Some(3000)));
    let memory = bus.history(&all);
    assert_eq!(
        memory.iter().map(|e| e.id).collect::<Vec<_>>(),
        (2951..=3000).collect::<Vec<_>>()
    );
    assert_eq!(bus.try_publish(event(3001)).unwrap(), 3001);
    let mut reader = CatchUp::new(&bus, all.clone(), Replay::FromId(2000));
    assert_eq!(drain(&mut reader).0, (2000..=3001).collect::<Vec<_>>());
}

#[test]
fn a_replay_from_a_time_reads_what_is_on_disk_from_that_time() {
    let tmp = TempDir::new();
    let (bus, _) = EventBus::open(config(10), data(&tmp), options()).unwrap();
    let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for i in 1..=1000u64 {
        let mut e = event(i);
        e.timestamp = base + Duration::from_secs(i);
        bus.try_publish(e).unwrap();
    }
    let mut reader = CatchUp::new(
        &bus,
        EventFilter::new(),
        Replay::FromTime(base + Duration::from_secs(700)),
    );
    let (ids, losses) = drain(&mut reader);
    assert_eq!(ids, (700..=1000).collect::<Vec<_>>());
    assert!(losses.is_empty());
}

#[test]
fn catch_up_from_disk_while_publishers_move_memory_on_misses_nothing() {
    let tmp = TempDir::new();
    let (bus, _) = EventBus::open(config(20), data(&tmp), options()).unwrap();
    for i in 1..=2000 {
        bus.publish(event(i));
    }
    let mut reader = CatchUp::new(&bus, EventFilter::new(), Replay::FromId(1));
    let publisher = {
        let bus = bus.clone();
        std::thread::spawn(move || {
            for i in 2001..=30_000 {
                bus.publish(event(i));
            }
        })
    };
    let mut ids = Vec::new();
    let mut losses = Vec::new();
    let mut out = Vec::new();
    while ids.last() != Some(&30_000) {
        reader.try_recv_batch(&mut out, 100);
        for item in out.drain(..) {
            match item {
                Delivery::Event(e) => ids.push(e.id),
                Delivery::Lost(l) => losses.push(l),
            }
        }
        if publisher.is_finished() && out.is_empty() {
            let (more, lost) = drain(&mut reader);
            ids.extend(more);
            losses.extend(lost);
            break;
        }
    }
    publisher.join().unwrap();
    assert!(losses.is_empty(), "{losses:?}");
    assert_eq!(ids, (1..=30_000).collect::<Vec<_>>());
    assert!(
        reader.subscriber_dropped() > 0,
        "the reader did fall behind"
    );
}

#[test]
fn retention_moves_the_oldest_id_and_a_replay_from_before_it_is_an_exact_loss() {
    let tmp = TempDir::new();
    let opts = DiskOptions {
        retain_bytes: Some(48 << 10),
        ..options()
    };
    let (bus, _) = EventBus::open(config(10), data(&tmp), opts).unwrap();
    for i in 1..=3000 {
        bus.try_publish(event(i)).unwrap();
    }
    // Retention ran whenever a segment started, and runs again now (the active one has grown).
    let report = bus.maintain_disk().unwrap();
    let stats = bus.stats();
    let oldest = stats.oldest_id.unwrap();
    assert!(oldest > 1);
    assert_eq!(stats.disk.unwrap().oldest_id, Some(oldest));
    assert_eq!(report.retained.records(), oldest - 1, "{}", report.retained);
    assert!(stats.disk.unwrap().bytes <= 48 << 10, "{:?}", stats.disk);
    let (page, held) = bus.history_page(&EventFilter::new(), 1..=10, 5);
    assert_eq!(held, Some(oldest));
    assert!(page.is_empty());
    let mut reader = CatchUp::new(&bus, EventFilter::new(), Replay::FromId(1));
    let (ids, losses) = drain(&mut reader);
    assert_eq!(
        losses,
        [Loss {
            count: Some(oldest - 1),
            first_id: Some(1),
            last_id: Some(oldest - 1),
            reason: LossReason::HistoryEvicted
        }]
    );
    assert_eq!(ids, (oldest..=3000).collect::<Vec<_>>());
}

#[test]
fn on_a_full_disk_try_publish_refuses_and_publish_keeps_the_event_in_memory() {
    let tmp = TempDir::new();
    let Some(mount) = Mount::tmpfs(tmp.0.join("mnt"), "1m") else {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    let ballast = mount.0.join("ballast");
    std::fs::write(&ballast, vec![1u8; 256 << 10]).unwrap();
    let opts = DiskOptions {
        segment_bytes: 64 << 10,
        ..options()
    };
    let roomy = EventBusConfig {
        subscriber_buffer: 100_000,
        ..config(100_000)
    };
    let (bus, _) = EventBus::open(roomy, mount.0.join("data"), opts.clone()).unwrap();
    let sub = bus.subscribe(EventFilter::new());
    let big = |i: u64| Event::new("fill", json!({"i": i, "pad": "q".repeat(500)}));
    let mut last = 0;
    let refused = loop {
        match bus.try_publish(big(last + 1)) {
            Ok(id) => {
                assert_eq!(id, last + 1);
                last = id;
            }
            Err(e) => break e,
        }
        assert!(last < 100_000, "the disk never filled");
    };
    let ipckit::event_stream::PublishError::NotStored { event, source } = refused else {
        panic!("expected NotStored");
    };
    assert_eq!(event.data["i"], last + 1, "the event comes back");
    assert!(
        source.to_string().contains("No space left on device"),
        "{source}"
    );
    assert_eq!(bus.last_id(), last, "no id taken");
    // `publish` cannot refuse: the event is delivered and kept in memory, the failure counted.
    let kept = bus.publish(big(0));
    assert_eq!(kept, last + 1);
    assert_eq!(bus.stats().disk.unwrap().errors, 2);
    let report = bus.maintain_disk().unwrap();
    assert_eq!(report.failed_appends, 2);
    assert!(report
        .last_append_error
        .unwrap()
        .contains("No space left on device"));
    let delivered: Vec<u64> = sub.try_iter().map(|e| e.id).collect();
    assert_eq!(delivered, (1..=last + 1).collect::<Vec<_>>());
    // Space returns: appends go on; the event kept in memory only is missing after a restart, and a
    // reader is told.
    std::fs::remove_file(&ballast).unwrap();
    assert_eq!(bus.try_publish(big(0)).unwrap(), last + 2);
    drop((sub, bus));
    let (bus, _) = EventBus::open(config(100_000), mount.0.join("data"), opts).unwrap();
    let mut reader = CatchUp::new(&bus, EventFilter::new(), Replay::FromId(1));
    let (ids, losses) = drain(&mut reader);
    assert_eq!(ids, (1..=last).chain([last + 2]).collect::<Vec<_>>());
    assert_eq!(
        losses,
        [Loss {
            count: Some(1),
            first_id: Some(last + 1),
            last_id: Some(last + 1),
            reason: LossReason::HistoryEvicted
        }]
    );
    drop((reader, bus));
    drop(mount);
}
