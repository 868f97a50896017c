//! Bad input on the wire, against the real `ipckit-top serve`: every line of the robustness table gets
//! its answer, the connection goes on, other clients keep being served, and nothing accepted is lost.

mod common;

use common::{Raw, ServerProcess, TempDir};
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

/// Publishes `n` through `raw` and returns the acknowledged id.
fn publish(raw: &mut Raw, request_id: u64, n: u64) -> u64 {
    let reply = raw.request(&format!(
        r#"{{"type":"publish","id":{request_id},"event":{{"event_type":"ok.event","data":{{"n":{n}}}}}}}"#
    ));
    assert_eq!(reply["type"], "published", "{reply}");
    assert_eq!(reply["id"], request_id);
    reply["ids"][0].as_u64().unwrap()
}

fn history(raw: &mut Raw) -> Vec<Value> {
    let reply = raw.request(r#"{"type":"history","id":999999,"filter":"ok.event"}"#);
    assert_eq!(reply["type"], "history", "{reply}");
    reply["events"].as_array().unwrap().clone()
}

#[test]
fn each_bad_line_gets_an_error_frame_and_the_next_line_is_read() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    let mut raw = Raw::connect(&dir.socket());
    assert_eq!(raw.hello["type"], "hello");
    assert_eq!(raw.hello["protocol"], "ipckit");
    assert_eq!(raw.hello["version"], 2);
    assert_eq!(raw.hello["max_frame"], 1 << 20);

    let cases: &[(&[u8], &str)] = &[
        (b"{\"type\":\"ping\",\"id\":1,\xff\xfe}", "invalid_utf8"),
        (br#"{"type":"publish","id":1,"event":{"event_type":"\ud800"}}"#, "invalid_json"),
        (br#"{"type":"ping","id":1"#, "invalid_json"),
        (br#"{"type":"ping","id":1} garbage"#, "invalid_json"),
        (br#"{"type":"publish","id":1,"event":{"event_type":"x","data":NaN}}"#, "invalid_json"),
        (br#"{"type":"publish","id":1,"event":{"event_type":"x","data":Infinity}}"#, "invalid_json"),
        (br#"{"type":"publish","id":1,"event":{"event_type":"x","data":1e400}}"#, "invalid_json"),
        (br#"{"type":"ping","id":18446744073709551616}"#, "invalid_frame"),
        (br#"{"type":"launch_missiles","id":1}"#, "unknown_type"),
        (br#"{"type":"ping","id":1,"extra":true}"#, "invalid_frame"),
        (br#"{"type":"ping","id":1,"id":2}"#, "invalid_frame"),
        (br#"{"id":1}"#, "invalid_frame"),
        (br#"[1,2,3]"#, "invalid_frame"),
        (
            br#"{"type":"publish","id":1,"event":{"event_type":"mcp.notifications.progress","data":{"progressToken":"t","progress":-1}}}"#,
            "invalid_event",
        ),
        (
            br#"{"type":"publish","id":1,"event":{"event_type":"mcp.notifications.progress","data":{"progressToken":"t","progress":1,"total":-5}}}"#,
            "invalid_event",
        ),
        (br#"{"type":"publish","id":1,"event":{"event_type":""}}"#, "invalid_event"),
        (br#"{"type":"publish","id":1,"event":{"event_type":"x","timestamp":1e300}}"#, "invalid_event"),
        (br#"{"type":"subscribe","id":1,"filter":"since:nonsense"}"#, "invalid_filter"),
        (br#"{"type":"hello","id":1,"version":99}"#, "unsupported_version"),
        (br#"{"type":"unsubscribe","id":1,"sub":42}"#, "unknown_subscription"),
    ];
    let deep = format!(
        r#"{{"type":"publish","id":1,"event":{{"event_type":"x","data":{}{}}}}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    let mut accepted = Vec::new();
    let mut request = 100;
    let all = cases
        .iter()
        .map(|(line, code)| (line.to_vec(), *code))
        .chain(std::iter::once((deep.into_bytes(), "invalid_json")));
    for (line, code) in all {
        raw.send(&line);
        raw.send(b"\n");
        let frames = raw.ping(request);
        assert_eq!(
            frames.len(),
            1,
            "one frame for {:?}: {frames:?}",
            String::from_utf8_lossy(&line)
        );
        assert_eq!(frames[0]["type"], "error");
        assert_eq!(
            frames[0]["code"],
            code,
            "{:?}: {}",
            String::from_utf8_lossy(&line),
            frames[0]
        );
        assert!(!frames[0]["message"].as_str().unwrap().is_empty());
        request += 1;
        accepted.push(publish(&mut raw, request, request));
        request += 1;
    }
    // The unknown type is named in its error.
    let reply = raw.request(r#"{"type":"launch_missiles","id":7}"#);
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("launch_missiles"),
        "{reply}"
    );
    assert_eq!(reply["id"], 7, "the id of a readable frame is echoed");

    // Blank lines are ignored and CRLF endings accepted.
    raw.send(b"\n\r\n   \n{\"type\":\"ping\",\"id\":5}\r\n");
    assert_eq!(raw.read(), json!({"type":"pong","id":5}));

    // Nothing accepted is lost: every acknowledged id is in history, in order, and nothing else.
    let held: Vec<u64> = history(&mut raw)
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(held, accepted);
}

#[test]
fn an_oversized_line_gets_one_error_and_the_connection_goes_on() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    let mut raw = Raw::connect(&dir.socket());
    let mut line = br#"{"type":"publish","id":1,"event":{"event_type":"x","data":""#.to_vec();
    line.extend(std::iter::repeat_n(b'a', 3 << 20));
    line.extend_from_slice(b"\"}}\n");
    raw.send(&line);
    let frames = raw.ping(2);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["code"], "frame_too_large");
    assert!(frames[0]["message"].as_str().unwrap().contains("1048576"));
    let id = publish(&mut raw, 3, 1);
    assert_eq!(id, 1, "the oversized publish was not published");
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn streaming_100_mb_without_a_newline_keeps_memory_bounded() {
    let dir = TempDir::new();
    let server = ServerProcess::start(&dir.socket(), &[]);
    let mut raw = Raw::connect(&dir.socket());
    raw.ping(1);
    let before = rss_kib(server.pid());
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        raw.send(&chunk);
    }
    raw.send(b"\n");
    let frames = raw.ping(2);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["code"], "frame_too_large");
    let after = rss_kib(server.pid());
    assert!(
        after < before + 3 * 1024,
        "server memory grew from {before} KiB to {after} KiB on a 100 MB line"
    );
}

#[test]
fn a_client_that_never_reads_does_not_stall_publishers_or_others() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    // The stuck client subscribes to everything and never reads again.
    let mut stuck = Raw::connect(&dir.socket());
    let reply = stuck.request(r#"{"type":"subscribe","id":1,"filter":""}"#);
    assert_eq!(reply["type"], "subscribed");
    // A healthy subscriber on its own thread.
    let mut reader = Raw::connect(&dir.socket());
    assert_eq!(
        reader.request(r#"{"type":"subscribe","id":1,"filter":"big"}"#)["type"],
        "subscribed"
    );
    // More than `serve` queues per subscriber (16,384), so the stuck client must lose some.
    const N: u64 = 20_000;
    let receiving = std::thread::spawn(move || {
        let mut ids = Vec::new();
        while ids.len() < N as usize {
            let frame = reader.read();
            if frame["type"] == "event" {
                ids.push(frame["event"]["id"].as_u64().unwrap());
            }
        }
        ids
    });
    let mut publisher = Raw::connect(&dir.socket());
    let payload = "p".repeat(1000);
    let started = Instant::now();
    for i in 1..=N {
        let reply = publisher.request(&format!(
            r#"{{"type":"publish","id":{i},"event":{{"event_type":"big","data":"{payload}"}}}}"#
        ));
        assert_eq!(reply["type"], "published");
    }
    // 20 MB went past a client that reads nothing; generous bound, only to catch a stall.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "publishing stalled"
    );
    let ids = receiving.join().unwrap();
    assert_eq!(
        ids,
        (1..=N).collect::<Vec<_>>(),
        "the reading client got every event in order"
    );
    let stats = publisher.request(r#"{"type":"stats","id":9}"#);
    assert!(
        stats["dropped"].as_u64().unwrap() > 0,
        "the stuck client's events were dropped: {stats}"
    );
    drop(stuck);
}

#[test]
fn a_client_that_disconnects_mid_frame_publishes_nothing() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    for _ in 0..20 {
        let mut raw = Raw::connect(&dir.socket());
        raw.send(br#"{"type":"publish","id":1,"event":{"event_type":"half","data":{"a":"#);
        raw.writer.flush().unwrap();
        drop(raw);
    }
    let mut check = Raw::connect(&dir.socket());
    let stats = check.request(r#"{"type":"stats","id":1}"#);
    assert_eq!(stats["published"], 0, "{stats}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = check.request(r#"{"type":"stats","id":2}"#);
        if stats["connections"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "half-frame connections left behind: {stats}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(publish(&mut check, 3, 1), 1);
}

#[test]
fn five_hundred_connections_of_one_process_are_served_and_the_server_keeps_serving() {
    // One process may hold up to half of the server's 1024 places.
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    let mut conns: Vec<Raw> = (0..500).map(|_| Raw::connect(&dir.socket())).collect();
    for (i, conn) in conns.iter_mut().enumerate().step_by(97) {
        assert!(conn.ping(i as u64).is_empty());
    }
    let mut fresh = Raw::connect(&dir.socket());
    let stats = fresh.request(r#"{"type":"stats","id":1}"#);
    assert_eq!(stats["connections"], 501);
    assert_eq!(publish(&mut fresh, 2, 1), 1);
    drop(conns);
    assert_eq!(publish(&mut fresh, 3, 2), 2);
}
