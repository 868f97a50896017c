//! The `ipckit-top` subcommands, run as a user would.

mod common;

use common::{run, run_bytes, ServerProcess, TempDir};
use serde_json::Value;

fn sock(dir: &TempDir) -> String {
    dir.socket().to_str().unwrap().to_owned()
}

fn events_json(socket: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "--socket",
        socket,
        "events",
        "--no-follow",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = run(&args, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        &[][..],
        &["serve"],
        &["publish"],
        &["pipe"],
        &["progress"],
        &["events"],
    ] {
        let mut args: Vec<&str> = sub.to_vec();
        args.push("--help");
        let out = run(&args, "");
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
}

#[test]
fn no_bus_is_one_line_naming_the_socket_and_how_to_start_one() {
    let dir = TempDir::new();
    let socket = sock(&dir);
    for args in [
        vec!["--socket", &socket, "publish", "x.y"],
        vec!["--socket", &socket, "events"],
        vec!["--socket", &socket, "progress", "t", "1"],
    ] {
        let out = run(&args, "");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&socket) && stderr.contains("ipckit-top serve"),
            "{stderr}"
        );
    }
}

#[test]
fn ipckit_socket_environment_variable_selects_the_socket() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    let out = std::process::Command::new(common::BIN)
        .args(["publish", "env.test"])
        .env("IPCKIT_SOCKET", dir.socket())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}

#[test]
fn publish_one_event_and_read_it_back() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    let socket = sock(&dir);
    let out = run(
        &[
            "--socket",
            &socket,
            "publish",
            "task.started",
            "--resource",
            "job-1",
            "--data",
            r#"{"a":1}"#,
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    let bad = run(
        &["--socket", &socket, "publish", "x", "--data", "{nope"],
        "",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--data is not valid JSON"));
    let events = events_json(&socket, &[]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event_type"], "task.started");
    assert_eq!(events[0]["resource_id"], "job-1");
    assert_eq!(events[0]["data"]["a"], 1);
}

#[test]
fn publish_stdin_reports_bad_lines_by_number_and_publishes_the_good_ones() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    let socket = sock(&dir);
    let input = concat!(
        r#"{"event_type":"a.one","resource_id":"r","data":{"n":1}}"#,
        "\n",
        "not json\n",
        "\n",
        r#"{"event_type":"a.two","bogus":1}"#,
        "\n",
        r#"{"id":77,"timestamp":1732500000.5,"event_type":"a.three","resource_id":null,"data":null}"#,
        "\n"
    );
    let mut input = input.as_bytes().to_vec();
    input.extend_from_slice(b"{\"event_type\":\"bad.\xff\"}\n");
    input.extend_from_slice(b"{\"event_type\":\"a.four\"}\r\n");
    let out = run_bytes(&["--socket", &socket, "publish", "--stdin"], &input);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2: not valid JSON: expected ident (column 2)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 4: not an event: unknown field `bogus`"),
        "{stderr}"
    );
    assert!(stderr.contains("line 6: not valid UTF-8"), "{stderr}");
    assert!(
        stderr.contains("3 of 6 lines were not published"),
        "{stderr}"
    );
    let events = events_json(&socket, &[]);
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["a.one", "a.three", "a.four"]);
    assert_eq!(events[1]["id"], 2, "the server assigns ids");
    assert_eq!(events[1]["timestamp"], 1732500000.5);
}

#[test]
fn pipe_publishes_the_child_output_and_its_exit() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    let socket = sock(&dir);
    let out = run(
        &[
            "--socket",
            &socket,
            "pipe",
            "--resource",
            "build",
            "--",
            "sh",
            "-c",
            "echo out1; echo err1 >&2; echo out2; exit 3",
        ],
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "pipe exits with the child's code"
    );
    let events = events_json(&socket, &["--filter", "res:build"]);
    let kinds: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_owned(),
                e["data"]["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(kinds.first().unwrap().0, "task.started");
    assert!(kinds.contains(&("log.stdout".into(), "out1".into())));
    assert!(kinds.contains(&("log.stdout".into(), "out2".into())));
    assert!(kinds.contains(&("log.stderr".into(), "err1".into())));
    let last = events.last().unwrap();
    assert_eq!(last["event_type"], "task.failed");
    assert_eq!(last["data"]["exit_code"], 3);

    let ok = run(
        &[
            "--socket",
            &socket,
            "pipe",
            "--resource",
            "ok",
            "--",
            "true",
        ],
        "",
    );
    assert!(ok.status.success());
    let events = events_json(&socket, &["--filter", "res:ok"]);
    assert_eq!(events.last().unwrap()["event_type"], "task.completed");

    let stdin = run(
        &["--socket", &socket, "pipe", "--resource", "in"],
        "line a\nline b\n",
    );
    assert!(stdin.status.success());
    let events = events_json(&socket, &["--filter", "res:in"]);
    let lines: Vec<&str> = events
        .iter()
        .map(|e| e["data"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(lines, ["line a", "line b"]);
}

#[test]
fn progress_publishes_an_mcp_notification_and_refuses_nan() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    let socket = sock(&dir);
    let out = run(
        &[
            "--socket",
            &socket,
            "progress",
            "tok",
            "5",
            "--total",
            "10",
            "--message",
            "half",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = events_json(&socket, &[]);
    assert_eq!(events[0]["event_type"], "mcp.notifications.progress");
    assert_eq!(events[0]["resource_id"], "tok");
    assert_eq!(
        events[0]["data"],
        serde_json::json!({"progressToken":"tok","progress":5.0,"total":10.0,"message":"half"})
    );
    for bad in [["progress", "tok", "NaN"], ["progress", "tok", "inf"]] {
        let mut args = vec!["--socket", &socket];
        args.extend_from_slice(&bad);
        let out = run(&args, "");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("finite"));
    }
    assert_eq!(events_json(&socket, &[]).len(), 1);
}

#[test]
fn events_since_until_no_follow_and_follow() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    let socket = sock(&dir);
    for i in 1..=6 {
        let kind = if i % 2 == 0 { "even.x" } else { "odd.x" };
        let data = format!("{{\"i\":{i}}}");
        assert!(
            run(&["--socket", &socket, "publish", kind, "--data", &data], "")
                .status
                .success()
        );
    }
    let ids = |events: Vec<Value>| {
        events
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(events_json(
            &socket,
            &["--since", "id:2", "--until", "id:4"]
        )),
        [2, 3, 4]
    );
    assert_eq!(
        ids(events_json(&socket, &["--filter", "even.*"])),
        [2, 4, 6]
    );
    assert_eq!(
        ids(events_json(&socket, &["--since", "10m"])),
        [1, 2, 3, 4, 5, 6]
    );

    // An end before the start is a mistake, said as one, not an empty answer.
    for (since, until) in [("id:4", "id:2"), ("1m", "2020-01-01T00:00:00Z")] {
        let out = run(
            &[
                "--socket", &socket, "events", "--since", since, "--until", until,
            ],
            "",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "--until \"{until}\" is before --since \"{since}\": no event can match"
            )),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }

    // Following: replay from id 3, stop at id 5.
    let out = run(
        &[
            "--socket", &socket, "events", "--since", "id:3", "--until", "id:5",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains(" #3 odd.x - {\"i\":3}"), "{text}");

    // Following, text and JSON: replay from id 5, then what is published while it runs, up to
    // id 8; the same events, field for field, as the history answer gives.
    let follow = |format: &str| {
        std::process::Command::new(common::BIN)
            .args(["--socket", &socket, "events", "--since", "id:5", "--until"])
            .args(["id:8", "--format", format])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (json, text) = (follow("json"), follow("text"));
    // Both are following once the replayed events 5 and 6 have been printed; meanwhile publish 7, 8.
    std::thread::sleep(std::time::Duration::from_millis(300));
    for i in 7..=8 {
        let data = format!("{{\"i\":{i}, \"s\":\"tab\\t\\u00e9\"}}");
        let out = run(
            &["--socket", &socket, "publish", "late.x", "--data", &data],
            "",
        );
        assert!(out.status.success());
    }
    let json = String::from_utf8(json.wait_with_output().unwrap().stdout).unwrap();
    let followed: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ids(followed.clone()), [5, 6, 7, 8], "{json}");
    assert_eq!(followed, events_json(&socket, &["--since", "id:5"]));
    let text = String::from_utf8(text.wait_with_output().unwrap().stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[3].contains(r#" #8 late.x - {"i":8,"s":"tab\té"}"#),
        "{text}"
    );

    // An --until already past prints history up to it and exits, following or not.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let now = format!("@{now}");
    for (until, count) in [("id:2", 2), (now.as_str(), 8), ("10m", 0)] {
        let args = [
            "--socket", &socket, "events", "--since", "1h", "--until", until,
        ];
        let out = run(&args, "");
        assert!(out.status.success());
        let printed = String::from_utf8_lossy(&out.stdout).lines().count();
        assert_eq!(printed, count, "{until}");
    }

    let bad = run(
        &["--socket", &socket, "events", "--since", "yesterday-ish"],
        "",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("ipckit-top: --since"));
}

#[test]
fn serve_demo_produces_a_live_workload() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &["--demo"]);
    let socket = sock(&dir);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let events = events_json(&socket, &[]);
        let has = |t: &str| events.iter().any(|e| e["event_type"] == t);
        if has("task.started") && has("mcp.notifications.progress") && has("log.stdout") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo published too little: {events:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn the_monitor_refuses_a_bad_filter_and_needs_a_terminal() {
    let dir = TempDir::new();
    let out = run(&["--socket", &sock(&dir), "--filter", "res:"], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid filter: `res:` at column 1 needs a value"),
        "{stderr}"
    );
    let out = run(&["--socket", &sock(&dir), "--history", "0"], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("invalid value '0' for '--history <N>': the monitor keeps at least 1 event"),
        "{stderr}"
    );
    // Without a terminal (stdout is a pipe here) it says so in one line, before hosting anything.
    let out = run(&["--socket", &sock(&dir)], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("the monitor needs a terminal"), "{stderr}");
    assert!(!std::path::Path::new(&sock(&dir)).exists());
}

#[test]
fn events_since_an_id_history_no_longer_holds_says_so_and_prints_the_rest() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &["--history", "3"]);
    let socket = sock(&dir);
    let input: String = (1..=6)
        .map(|i| format!("{{\"event_type\":\"x\",\"data\":{{\"i\":{i}}}}}\n"))
        .collect();
    assert!(run(&["--socket", &socket, "publish", "--stdin"], &input)
        .status
        .success());
    let no_follow = run(
        &[
            "--socket",
            &socket,
            "events",
            "--since",
            "id:1",
            "--no-follow",
        ],
        "",
    );
    assert_eq!(no_follow.status.code(), Some(3), "events were lost");
    // Following to id 7, published once the replayed events have been printed.
    let mut follow = std::process::Command::new(common::BIN)
        .args([
            "--socket", &socket, "events", "--since", "id:1", "--until", "id:7",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().unwrap()));
    let mut followed: Vec<String> = Vec::new();
    for line in lines.by_ref() {
        followed.push(line.unwrap());
        if followed.len() == 3 {
            break;
        }
    }
    assert!(run(&["--socket", &socket, "publish", "x"], "")
        .status
        .success());
    followed.extend(lines.map(Result::unwrap));
    let follow = follow.wait_with_output().unwrap();
    assert_eq!(follow.status.code(), Some(3), "events were lost");
    for (stdout, stderr, expected) in [
        (
            String::from_utf8_lossy(&no_follow.stdout).into_owned(),
            no_follow.stderr,
            &["#4", "#5", "#6"][..],
        ),
        (
            followed.join("\n"),
            follow.stderr,
            &["#4", "#5", "#6", "#7"][..],
        ),
    ] {
        let stderr = String::from_utf8_lossy(&stderr);
        assert_eq!(
            stderr.trim(),
            "ipckit-top: 3 events lost (#1 to #3, no longer in history)",
            "one line for the loss, with its count and ids"
        );
        let printed: Vec<&str> = stdout
            .lines()
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(printed, expected);
    }
}

/// `pipe --resource RES -- sh -c SCRIPT` against the bus at `socket`: what it printed, and the
/// (type, message) of the log events it published.
fn pipe_sh(socket: &str, resource: &str, script: &str) -> (std::process::Output, Vec<Value>) {
    let out = run(
        &[
            "--socket",
            socket,
            "pipe",
            "--resource",
            resource,
            "--",
            "sh",
            "-c",
            script,
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = events_json(socket, &["--filter", &format!("res:{resource} log.*")]);
    (out, logs)
}

fn messages(logs: &[Value], event_type: &str) -> Vec<String> {
    logs.iter()
        .filter(|e| e["event_type"] == event_type)
        .map(|e| e["data"]["message"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn pipe_passes_a_last_line_without_a_newline_through_and_publishes_it() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    let socket = sock(&dir);
    let out = run(
        &[
            "--socket",
            &socket,
            "pipe",
            "--resource",
            "p",
            "--",
            "printf",
            "x\\ny-no-newline",
        ],
        "",
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, b"x\ny-no-newline");
    let logs = events_json(&socket, &["--filter", "res:p log.*"]);
    assert_eq!(messages(&logs, "log.stdout"), ["x", "y-no-newline"]);
}

#[test]
fn pipe_passes_a_3_mib_line_through_whole_and_publishes_it_cut_and_marked() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    let socket = sock(&dir);
    let (out, logs) = pipe_sh(
        &socket,
        "big",
        r"head -c 3145728 /dev/zero | tr '\0' a; printf '\nafter\n'",
    );
    let mut expected = vec![b'a'; 3 << 20];
    expected.extend_from_slice(b"\nafter\n");
    assert!(
        out.stdout == expected,
        "{} bytes passed through",
        out.stdout.len()
    );
    let published = messages(&logs, "log.stdout");
    assert_eq!(published.len(), 2);
    assert_eq!(published[1], "after");
    let big = &logs[0]["data"];
    assert_eq!(big["truncated"], true);
    assert_eq!(big["bytes"], 3_145_728);
    let message = published[0].as_str();
    let kept = message.trim_end_matches("… [line of 3145728 bytes, first 65536 published]");
    assert!(
        kept.len() < message.len(),
        "{}",
        &message[message.len() - 80..]
    );
    assert!(kept == "a".repeat(65536));
}

#[test]
fn pipe_passes_invalid_utf8_through_raw_and_publishes_it_lossily() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    let socket = sock(&dir);
    let (out, logs) = pipe_sh(&socket, "bin", r"printf '\377\376ok\n\300'");
    assert_eq!(out.stdout, b"\xff\xfeok\n\xc0");
    assert_eq!(
        messages(&logs, "log.stdout"),
        ["\u{fffd}\u{fffd}ok", "\u{fffd}"]
    );
}

#[test]
fn pipe_keeps_stdout_and_stderr_apart_byte_for_byte() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &[]);
    let socket = sock(&dir);
    let (out, logs) = pipe_sh(
        &socket,
        "both",
        r"printf out1; printf err1 >&2; printf '\nout2\r\n'; printf '\t err2' >&2; printf '\n\n' >&2",
    );
    assert_eq!(out.stdout, b"out1\nout2\r\n");
    assert_eq!(out.stderr, b"err1\t err2\n\n");
    assert_eq!(messages(&logs, "log.stdout"), ["out1", "out2"]);
    assert_eq!(messages(&logs, "log.stderr"), ["err1\t err2", ""]);
}
