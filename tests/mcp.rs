//! `ipckit-top mcp`, run as a user would: between the official MCP Python SDK's client and the MCP
//! project's reference server (`@modelcontextprotocol/server-everything`), with recorders on both
//! sides of the proxy to prove what each side sent and received; and between this test and small
//! scripts for what a real server rarely does on purpose (crash mid-call, huge and non-JSON lines,
//! signals).
//!
//! The real client and server are installed by `.ci/run` (`npm ci` in tests/mcp, a venv with
//! tests/mcp/requirements.txt in target/mcp-venv). Without them these tests say what is missing and
//! pass, unless `IPCKIT_MCP_TESTS=require` (as in CI), where they fail.

mod common;

use common::{ServerProcess, TempDir, BIN};
use ipckit::top::progress::{Gauges, Outcome};
use ipckit::Event;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const TOOL: &str = "trigger-long-running-operation";
const STEPS: usize = 4;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp")
}

/// The real client and server, when installed.
struct Real {
    python: PathBuf,
    server: Vec<String>,
}

impl Real {
    fn client(&self) -> Vec<String> {
        vec![
            self.python.display().to_string(),
            dir().join("client.py").display().to_string(),
            "--tool".into(),
            TOOL.into(),
            "--duration".into(),
            "1".into(),
            "--steps".into(),
            STEPS.to_string(),
            "--".into(),
        ]
    }

    /// `tee.py IN OUT --` recording into `dir/{name}.in` and `dir/{name}.out`.
    fn tee(&self, dir: &TempDir, name: &str) -> Vec<String> {
        vec![
            self.python.display().to_string(),
            self.tee_script(),
            dir.0.join(format!("{name}.in")).display().to_string(),
            dir.0.join(format!("{name}.out")).display().to_string(),
            "--".into(),
        ]
    }

    fn tee_script(&self) -> String {
        dir().join("tee.py").display().to_string()
    }
}

/// The installed client and server, or `None` (after saying why) to skip; with
/// `IPCKIT_MCP_TESTS=require`, a panic naming what is missing.
fn real() -> Option<Real> {
    let python = std::env::var_os("IPCKIT_MCP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mcp-venv/bin/python")
        });
    let server = dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let mut missing = Vec::new();
    let works = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !works(Command::new("node").arg("--version")) {
        missing.push("node is not on PATH".to_owned());
    }
    if !server.exists() {
        missing.push(format!(
            "{} is missing (npm ci in tests/mcp)",
            server.display()
        ));
    }
    if !works(Command::new(&python).args(["-c", "import mcp"])) {
        missing.push(format!(
            "{} cannot import mcp (python3 -m venv target/mcp-venv; target/mcp-venv/bin/pip install -r tests/mcp/requirements.txt)",
            python.display()
        ));
    }
    if missing.is_empty() {
        return Some(Real {
            python,
            server: vec!["node".into(), server.display().to_string(), "stdio".into()],
        });
    }
    let why = format!(
        "the MCP tests need the real client and server: {}",
        missing.join("; ")
    );
    if std::env::var("IPCKIT_MCP_TESTS").as_deref() == Ok("require") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// A child's whole output and status, killed (and the test failed) if it takes over two minutes.
struct Ran {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn finish(mut child: Child, input: Vec<u8>) -> Ran {
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not finish within two minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    feeder.join().unwrap();
    Ran {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn start(argv: &[String]) -> Child {
    Command::new(&argv[0])
        .args(&argv[1..])
        .env_remove("IPCKIT_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

fn run(argv: &[String], input: &[u8]) -> Ran {
    finish(start(argv), input.to_vec())
}

/// `ipckit-top --socket SOCKET mcp EXTRA... --` (the server command goes after).
fn proxy(socket: &Path, extra: &[&str]) -> Vec<String> {
    let mut argv = vec![
        BIN.to_owned(),
        "--socket".into(),
        socket.display().to_string(),
        "mcp".into(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv.push("--".into());
    argv
}

fn cat(parts: &[&[String]]) -> Vec<String> {
    parts.concat()
}

/// Every event the bus at `socket` holds.
fn bus_events(socket: &Path) -> Vec<Event> {
    let out = run(
        &[
            BIN.into(),
            "--socket".into(),
            socket.display().to_string(),
            "events".into(),
            "--no-follow".into(),
            "--format".into(),
            "json".into(),
        ],
        b"",
    );
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

fn of_type<'a>(events: &'a [Event], event_type: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

fn gauges_of(events: &[Event]) -> Gauges {
    let mut gauges = Gauges::default();
    for event in events {
        gauges.apply(event);
    }
    gauges
}

fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|b| *b == b'\n').collect()
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The client's report (its last stdout line), after checking it exited well.
fn report(ran: &Ran) -> Value {
    assert!(
        ran.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let text = String::from_utf8_lossy(&ran.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no report in {text:?}: {e}"))
}

/// The same client against the same server with nothing in between (but a recorder).
fn direct_report(real: &Real) -> Value {
    let dir = TempDir::new();
    report(&run(
        &cat(&[&real.client(), &real.tee(&dir, "direct"), &real.server]),
        b"",
    ))
}

/// A progress notification carrying one of the proxy's tokens.
fn injected_progress(line: &[u8]) -> bool {
    let Ok(message) = serde_json::from_slice::<Value>(line) else {
        return false;
    };
    message["method"] == "notifications/progress"
        && message["params"]["progressToken"]
            .as_str()
            .is_some_and(|t| t.starts_with("ipckit-"))
}

fn request_ids(events: &[&Event]) -> Vec<Value> {
    events.iter().map(|e| e.data["id"].clone()).collect()
}

#[test]
fn the_reference_server_through_the_proxy_answers_as_it_does_without_it() {
    let Some(real) = real() else { return };
    let dir = TempDir::new();
    let _bus = ServerProcess::start(&dir.socket(), &[]);
    let ran = run(
        &cat(&[
            &real.client(),
            &real.tee(&dir, "client"),
            &proxy(&dir.socket(), &["--name", "everything"]),
            &real.tee(&dir, "server"),
            &real.server,
        ]),
        b"",
    );
    let through = report(&ran);
    let direct = direct_report(&real);
    assert_eq!(through, direct, "the client got the same answers");
    assert_eq!(
        through["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| *t == TOOL)
            .count(),
        1
    );
    assert_eq!(
        through["progress"].as_array().unwrap().len(),
        STEPS,
        "the progress it asked for"
    );

    // What the client sent is what the server received, but for the token added to tool calls
    // that had none.
    let (client_sent, server_got) = (read(dir.0.join("client.in")), read(dir.0.join("server.in")));
    let (sent, got) = (lines(&client_sent), lines(&server_got));
    assert_eq!(sent.len(), got.len());
    let mut injected = 0;
    for (sent, got) in sent.iter().zip(&got) {
        if sent == got {
            continue;
        }
        let text = String::from_utf8(got.to_vec()).unwrap();
        let start = text.find(r#""_meta":{"progressToken":"ipckit-"#).unwrap();
        let end = start + text[start..].find("},").unwrap() + 2;
        let without = format!("{}{}", &text[..start], &text[end..]);
        assert_eq!(without.as_bytes(), *sent, "only the token was added");
        let request: Value = serde_json::from_slice(sent).unwrap();
        assert_eq!(request["method"], "tools/call");
        assert!(request["params"]["_meta"].is_null());
        injected += 1;
    }
    assert_eq!(injected, 2, "echo and the call without a token");

    // What the server sent is what the client received, but for the progress of injected tokens.
    let (server_sent, client_got) = (
        read(dir.0.join("server.out")),
        read(dir.0.join("client.out")),
    );
    let kept: Vec<&[u8]> = lines(&server_sent)
        .into_iter()
        .filter(|l| !injected_progress(l))
        .collect();
    assert_eq!(kept.concat(), client_got, "byte for byte");
    assert_eq!(
        lines(&server_sent).len() - kept.len(),
        STEPS,
        "the progress of the injected call, kept from the client"
    );
    assert!(!String::from_utf8_lossy(&client_got).contains("ipckit-"));

    // The bus: a request and a timed response per call, every progress notification.
    let events = bus_events(&dir.socket());
    let requests = of_type(&events, "mcp.request");
    let responses = of_type(&events, "mcp.response");
    assert_eq!(request_ids(&requests), request_ids(&responses));
    assert_eq!(
        requests.len(),
        5,
        "initialize, tools/list, three tool calls"
    );
    for response in &responses {
        assert!(response.data["duration_ms"].as_f64().unwrap() >= 0.0);
        assert_eq!(response.resource_id.as_deref(), Some("everything"));
    }
    let long: Vec<&&Event> = responses
        .iter()
        .filter(|r| r.data["tool"] == TOOL)
        .collect();
    assert_eq!(long.len(), 2);
    assert!(long
        .iter()
        .all(|r| r.data["duration_ms"].as_f64().unwrap() >= 900.0));
    let progress = of_type(&events, "mcp.notifications.progress");
    assert_eq!(progress.len(), 2 * STEPS);
    assert_eq!(
        progress
            .iter()
            .filter(|p| p.data["injected"] == true)
            .count(),
        STEPS
    );
    assert!(progress.iter().all(|p| p.data["message"] == TOOL));
    assert_eq!(
        of_type(&events, "mcp.server.exited")[0].data["exit_code"],
        0
    );
    assert!(!of_type(&events, "log.stderr").is_empty());

    // The monitor: a gauge per tool call, named after its tool and server, all done.
    let gauges = gauges_of(&events);
    let shown = gauges.sorted(std::time::SystemTime::now());
    let names: Vec<&str> = shown.iter().map(|g| g.name()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == format!("{TOOL} · everything"))
            .count(),
        2
    );
    assert!(shown.iter().all(|g| g.outcome == Outcome::Done));
    assert_eq!(
        shown.iter().filter(|g| g.ratio() == Some(1.0)).count(),
        2,
        "both long calls reported all their steps"
    );
}

#[test]
fn no_inject_relays_every_byte_untouched() {
    let Some(real) = real() else { return };
    let dir = TempDir::new();
    let _bus = ServerProcess::start(&dir.socket(), &[]);
    let ran = run(
        &cat(&[
            &real.client(),
            &real.tee(&dir, "client"),
            &proxy(&dir.socket(), &["--no-inject"]),
            &real.tee(&dir, "server"),
            &real.server,
        ]),
        b"",
    );
    assert_eq!(report(&ran), direct_report(&real));
    assert_eq!(read(dir.0.join("client.in")), read(dir.0.join("server.in")));
    assert_eq!(
        read(dir.0.join("server.out")),
        read(dir.0.join("client.out"))
    );

    let events = bus_events(&dir.socket());
    let progress = of_type(&events, "mcp.notifications.progress");
    assert_eq!(
        progress.len(),
        STEPS,
        "only the call that asked for progress"
    );
    assert!(progress.iter().all(|p| p.data["injected"] == false));
    assert!(of_type(&events, "mcp.request")
        .iter()
        .all(|r| r.data["injected"] != true));
    // The resource is the server command's file name.
    assert_eq!(events[0].resource_id.as_deref(), Some("python"));
    // The call without progress was shown running, and ended done.
    let gauges = gauges_of(&events);
    let quiet: Vec<_> = gauges
        .sorted(std::time::SystemTime::now())
        .into_iter()
        .filter(|g| g.updates == 0)
        .collect();
    assert_eq!(quiet.len(), 2, "echo and the call without a token");
    assert!(quiet.iter().all(|g| g.outcome == Outcome::Done));
}

#[test]
fn without_a_bus_the_relay_goes_on_and_says_so_once() {
    let Some(real) = real() else { return };
    let dir = TempDir::new();
    let ran = run(
        &cat(&[&real.client(), &proxy(&dir.socket(), &[]), &real.server]),
        b"",
    );
    assert_eq!(report(&ran), direct_report(&real));
    let stderr = String::from_utf8_lossy(&ran.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("ipckit-top"))
        .collect();
    assert_eq!(ours.len(), 1, "{stderr}");
    assert!(
        ours[0].contains("no bus is answering") && ours[0].contains("dropped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Starting default (STDIO) server"),
        "the server's stderr passes: {stderr}"
    );
}

// ------------------------------------------------------------ scripts in place of a real server

fn sh(script: &str, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["sh".to_owned(), dir().join(script).display().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    argv
}

const CALL_WITH_TOKEN: &[u8] =
    b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"render\",\"_meta\":{\"progressToken\":\"tok\"}}}\n";
const CALL_WITHOUT_TOKEN: &[u8] =
    b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"render\"}}\n";

#[test]
fn a_server_that_dies_mid_call_ends_the_proxy_the_same_way_and_fails_the_call() {
    let dir = TempDir::new();
    let _bus = ServerProcess::start(&dir.socket(), &[]);
    let argv = cat(&[
        &proxy(&dir.socket(), &["--name", "crash"]),
        &sh("crash.sh", &["3"]),
    ]);
    let direct = run(&sh("crash.sh", &["3"]), CALL_WITH_TOKEN);
    let through = run(&argv, CALL_WITH_TOKEN);
    assert_eq!(direct.status.code(), Some(3));
    assert_eq!(through.status.code(), Some(3), "the same exit status");
    assert_eq!(
        through.stdout, direct.stdout,
        "the same bytes, then end of file"
    );
    assert!(!direct.stdout.is_empty());
    assert_eq!(
        through.stderr, direct.stderr,
        "the server's stderr, unchanged"
    );

    let events = bus_events(&dir.socket());
    let response = of_type(&events, "mcp.response")[0];
    assert_eq!(response.data["unanswered"], true);
    assert_eq!(
        response.data["error"]["message"],
        "the server exited with status 3 before answering"
    );
    assert_eq!(
        of_type(&events, "mcp.server.exited")[0].data["unanswered"],
        1
    );
    let gauges = gauges_of(&events);
    let gauge = gauges.sorted(std::time::SystemTime::now())[0];
    assert_eq!(gauge.name(), "render · crash");
    assert_eq!(gauge.outcome, Outcome::Failed);
    assert!((gauge.ratio().unwrap() - 1.0 / 3.0).abs() < 1e-9);

    // Killed by a signal: the proxy exits 128 + N; injected progress never reaches the client.
    let killed = run(
        &cat(&[
            &proxy(&dir.socket(), &["--name", "killed"]),
            &sh("crash.sh", &["kill-9"]),
        ]),
        CALL_WITHOUT_TOKEN,
    );
    assert_eq!(killed.status.code(), Some(128 + 9));
    assert!(
        killed.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&killed.stdout)
    );
    let events = bus_events(&dir.socket());
    let progress: Vec<_> = of_type(&events, "mcp.notifications.progress")
        .into_iter()
        .filter(|e| e.resource_id.as_deref() == Some("killed"))
        .collect();
    assert_eq!(progress.len(), 1);
    assert_eq!(progress[0].data["injected"], true);
    let gauges = gauges_of(&events);
    let gauge = gauges
        .sorted(std::time::SystemTime::now())
        .into_iter()
        .find(|g| g.name() == "render · killed")
        .unwrap();
    assert_eq!(gauge.outcome, Outcome::Failed);
    assert_eq!(
        gauge.message.as_deref(),
        Some("the server was killed by signal 9 before answering")
    );
}

#[test]
fn huge_and_non_json_lines_pass_untouched_and_unpublished() {
    let dir = TempDir::new();
    let _bus = ServerProcess::start(&dir.socket(), &[]);
    let big = |n: usize, id: u32| {
        let mut line =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"resources/read","params":{{"blob":""#)
                .into_bytes();
        line.resize(line.len() + n, b'x');
        line.extend_from_slice(b"\"}}\n");
        line
    };
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
    input.extend_from_slice(&big(5 << 20, 2));
    input.extend_from_slice(b"\xff\xfe{not json at all\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\r\n");
    input.extend_from_slice(&big(20 << 20, 3));
    input.extend_from_slice(b"plain text, then no newline at the end");
    // `cat` as the server: everything comes back.
    let through = run(
        &cat(&[
            &proxy(&dir.socket(), &["--name", "cat"]),
            &["cat".to_owned()],
        ]),
        &input,
    );
    assert!(
        through.status.success(),
        "{}",
        String::from_utf8_lossy(&through.stderr)
    );
    assert!(through.stdout == input, "every byte back, unchanged");

    let events = bus_events(&dir.socket());
    let requests = of_type(&events, "mcp.request");
    // ping and the 5 MiB request, each seen going in and coming back; the 20 MiB line is relayed
    // without being held for inspection.
    assert_eq!(requests.len(), 4);
    let five = requests
        .iter()
        .filter(|r| r.data["params_bytes"] == (5 << 20) + 11)
        .count();
    assert_eq!(five, 2, "its params are too big to publish: their size is");
    assert_eq!(of_type(&events, "mcp.notifications.initialized").len(), 2);
    assert!(events
        .iter()
        .all(|e| !e.data.to_string().contains("not json")
            && !e.data.to_string().contains("plain text")));
}

#[test]
fn signals_reach_the_server_and_its_status_comes_back() {
    let dir = TempDir::new();
    let _bus = ServerProcess::start(&dir.socket(), &[]);
    for (signal, script, expected) in [
        (libc::SIGTERM, "trap", 7),
        (libc::SIGINT, "plain", 128 + libc::SIGINT),
    ] {
        let mut child = start(&cat(&[
            &proxy(&dir.socket(), &[]),
            &sh("signals.sh", &[script]),
        ]));
        // Wait for the server to say it is ready (its stderr comes through the proxy).
        let mut stderr = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&seen).contains("ready") {
            assert_eq!(
                stderr.read(&mut byte).unwrap(),
                1,
                "the server did not start"
            );
            seen.push(byte[0]);
        }
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let reader = std::thread::spawn(move || {
            let mut rest = Vec::new();
            let _ = stderr.read_to_end(&mut rest);
            rest
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the proxy did not end after the signal ({script})");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        seen.extend_from_slice(&reader.join().unwrap());
        assert_eq!(status.code(), Some(expected), "{script}");
        if script == "trap" {
            assert!(String::from_utf8_lossy(&seen).contains("got TERM"));
        }
    }
}

#[test]
fn stderr_passes_unchanged_and_each_line_is_published() {
    let dir = TempDir::new();
    let _bus = ServerProcess::start(&dir.socket(), &[]);
    let script = r"printf 'line one\n\377 raw\r\npartial' >&2";
    let argv = cat(&[
        &proxy(&dir.socket(), &["--name", "noisy"]),
        &["sh".to_owned(), "-c".to_owned(), script.to_owned()],
    ]);
    let ran = run(&argv, b"");
    assert!(ran.status.success());
    assert_eq!(ran.stderr, b"line one\n\xff raw\r\npartial");
    let events = bus_events(&dir.socket());
    let logged: Vec<&str> = of_type(&events, "log.stderr")
        .iter()
        .map(|e| e.data["message"].as_str().unwrap())
        .collect();
    assert_eq!(logged, ["line one", "\u{fffd} raw", "partial"]);
}

#[test]
fn events_flow_once_the_bus_comes_back() {
    let dir = TempDir::new();
    let mut child = start(&cat(&[
        &proxy(&dir.socket(), &["--name", "late"]),
        &["cat".to_owned()],
    ]));
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut ask = |id: u32| {
        use std::io::BufRead;
        let line = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}\n");
        stdin.write_all(line.as_bytes()).unwrap();
        let mut back = String::new();
        stdout.read_line(&mut back).unwrap();
        assert_eq!(back, line, "relayed while the bus is away");
    };
    ask(1);
    let _bus = ServerProcess::start(&dir.socket(), &[]);
    // The proxy retries every 2 s at most; ask until a request reaches the bus.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut id = 2;
    loop {
        ask(id);
        let events = bus_events(&dir.socket());
        if !of_type(&events, "mcp.request").is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no event reached the bus that came back"
        );
        std::thread::sleep(Duration::from_millis(200));
        id += 1;
    }
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
    let stderr = {
        let mut text = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    assert_eq!(stderr.lines().count(), 1, "said once: {stderr}");
}

#[test]
fn usage_errors_are_one_line() {
    let dir = TempDir::new();
    let no_command = run(&proxy(&dir.socket(), &[]), b"");
    assert!(!no_command.status.success());
    let missing = run(
        &cat(&[
            &proxy(&dir.socket(), &[]),
            &["/nonexistent/server".to_owned()],
        ]),
        b"",
    );
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot run /nonexistent/server"),
        "{stderr}"
    );
    let help = run(&[BIN.to_owned(), "mcp".into(), "--help".into()], b"");
    assert!(String::from_utf8_lossy(&help.stdout).contains("--no-inject"));
}
