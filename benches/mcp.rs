//! `ipckit-top mcp` against a direct pipe to the same server, in one run.
//!
//! The server is this benchmark's own executable in echo mode: it answers each `tools/call` request
//! line with a response carrying its params as the result, flushing whenever it has read everything
//! that arrived, like a real stdio server. It parses each request into a JSON tree and serializes
//! the response (the least any MCP server SDK does); a second mode that does no JSON work at all
//! (`"method":"tools/call","params":` becomes `"result":` in place) shows the proxy's own capacity.
//! Each case talks to it through:
//!
//! - `direct`: a pipe to the server, as an MCP client without the proxy;
//! - `proxy, no bus`: `ipckit-top mcp -- SERVER` (the release binary), no bus at its socket, so its
//!   events are built and counted as dropped (the relay's own cost);
//! - `proxy, bus`: the same with `ipckit-top serve` on the socket, every event published;
//! - `proxy --no-inject, bus`: requests relayed untouched (no line re-written).
//!
//! Throughput: requests of about 200 B, 4 KiB and 64 KiB, written back to back by one thread while
//! another reads the responses (so the pipes stay full); requests/s and MB/s of requests plus
//! responses, best of 5 runs with the routes taking turns in each round (so that the rest of the
//! machine's load weighs on them alike). Latency: one request at a time, 5,000 round trips per
//! route, the routes again taking turns; the proxy's added
//! latency per relayed message is half the difference of the round-trip percentiles (each round
//! trip is two relayed messages). By default injection is on, so every request line is one the
//! proxy re-writes (its worst case).
//!
//! `cargo bench --bench mcp` runs the criterion groups, then prints the report with ratios;
//! `cargo bench --bench mcp -- --report-only` prints only the report.

use criterion::{BenchmarkId, Criterion, Throughput};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const ECHO_ENV: &str = "IPCKIT_MCP_BENCH_ECHO";
const PROXY: &str = env!("CARGO_BIN_EXE_ipckit-top");
const METHOD: &[u8] = br#","method":"tools/call","params":"#;
const RESULT: &[u8] = br#","result":"#;

// ---------------------------------------------------------------- the echo server

/// What the echo server does with each request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    /// Parses the request into a JSON tree and serializes a response built from it, as every MCP
    /// server SDK does at the least (most validate against schemas too): the realistic case.
    Json,
    /// Turns the request's bytes into a response's in place, with no JSON work: a server that costs
    /// nothing, which shows the proxy's own capacity.
    Bytes,
}

impl Server {
    fn env(self) -> &'static str {
        match self {
            Server::Json => "json",
            Server::Bytes => "bytes",
        }
    }
}

fn echo_server(kind: &str) {
    let stdin = std::io::stdin();
    let mut input = BufReader::with_capacity(256 * 1024, stdin.lock());
    let stdout = std::io::stdout();
    let mut output = BufWriter::with_capacity(256 * 1024, stdout.lock());
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let written = if kind == "json" {
            let Ok(mut request) = serde_json::from_slice::<serde_json::Value>(&line) else {
                continue;
            };
            let response = serde_json::json!({
                "jsonrpc": "2.0",
                "id": request["id"].take(),
                "result": request["params"].take(),
            });
            serde_json::to_writer(&mut output, &response)
                .map_err(std::io::Error::from)
                .and_then(|()| output.write_all(b"\n"))
        } else {
            let at = line
                .windows(METHOD.len())
                .take(64)
                .position(|w| w == METHOD);
            match at {
                Some(at) => output
                    .write_all(&line[..at])
                    .and_then(|()| output.write_all(RESULT))
                    .and_then(|()| output.write_all(&line[at + METHOD.len()..])),
                None => output.write_all(&line),
            }
        };
        if written.is_err() {
            return;
        }
        if input.buffer().is_empty() && output.flush().is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------- the client side

/// A request line of about `size` bytes.
fn request(id: u64, size: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":""#
    );
    let mut line = head.into_bytes();
    let pad = size.saturating_sub(line.len() + 5);
    line.resize(line.len() + pad, b'x');
    line.extend_from_slice(b"\"}}}\n");
    line
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Direct,
    ProxyNoBus,
    ProxyBus,
    ProxyNoInjectBus,
}

impl Route {
    const ALL: [Route; 4] = [
        Route::Direct,
        Route::ProxyNoBus,
        Route::ProxyBus,
        Route::ProxyNoInjectBus,
    ];

    fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::ProxyNoBus => "proxy, no bus",
            Route::ProxyBus => "proxy, bus",
            Route::ProxyNoInjectBus => "proxy --no-inject, bus",
        }
    }
}

/// A bus served by `ipckit-top serve` on a private socket.
struct Bus {
    child: Child,
    dir: PathBuf,
}

impl Bus {
    fn start() -> Bus {
        let dir = std::env::temp_dir().join(format!("ipckit-mcp-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let child = Command::new(PROXY)
            .arg("--socket")
            .arg(dir.join("bus.sock"))
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the bus");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(dir.join("bus.sock")).is_err() {
            assert!(Instant::now() < deadline, "the bus did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Bus { child, dir }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("bus.sock")
    }

    fn nowhere(&self) -> PathBuf {
        self.dir.join("nobody-here.sock")
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The echo server, reached directly or through the proxy.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Peer {
    fn start(path: Route, server: Server, bus: &Bus) -> Peer {
        let exe = std::env::current_exe().expect("exe");
        let mut command = match path {
            Route::Direct => Command::new(&exe),
            _ => {
                let mut c = Command::new(PROXY);
                let socket = if path == Route::ProxyNoBus {
                    bus.nowhere()
                } else {
                    bus.socket()
                };
                c.arg("--socket")
                    .arg(socket)
                    .args(["mcp", "--name", "bench"]);
                if path == Route::ProxyNoInjectBus {
                    c.arg("--no-inject");
                }
                c.arg("--").arg(&exe);
                c
            }
        };
        let mut child = command
            .env(ECHO_ENV, server.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let stdin = child.stdin.take();
        let stdout = BufReader::with_capacity(256 * 1024, child.stdout.take().expect("stdout"));
        let mut peer = Peer {
            child,
            stdin,
            stdout,
            next_id: 0,
        };
        for _ in 0..200 {
            peer.round_trip(200);
        }
        peer
    }

    /// One request, then its response; the round-trip time.
    fn round_trip(&mut self, size: usize) -> Duration {
        self.next_id += 1;
        let line = request(self.next_id, size);
        let mut back = Vec::with_capacity(line.len() + 64);
        let stdin = self.stdin.as_mut().expect("stdin");
        let start = Instant::now();
        stdin.write_all(&line).expect("write");
        self.stdout.read_until(b'\n', &mut back).expect("read");
        let took = start.elapsed();
        assert!(back.ends_with(b"}\n"), "a whole response");
        took
    }

    /// `lines` (all requests, back to back) written by one thread, their `n` responses read here.
    fn pump(&mut self, lines: &[u8], n: usize) -> (Duration, usize) {
        let stdin = self.stdin.as_mut().expect("stdin");
        let stdout = &mut self.stdout;
        let start = Instant::now();
        let read = std::thread::scope(|scope| {
            scope.spawn(move || stdin.write_all(lines).expect("write"));
            let (mut seen, mut bytes) = (0, 0);
            while seen < n {
                let buf = stdout.fill_buf().expect("read");
                assert!(!buf.is_empty(), "the server closed its stdout");
                seen += memchr::memchr_iter(b'\n', buf).count();
                bytes += buf.len();
                let len = buf.len();
                stdout.consume(len);
            }
            bytes
        });
        (start.elapsed(), read)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests of `size` bytes, `n` of them, in one buffer.
fn batch(size: usize, n: usize, first_id: u64) -> Vec<u8> {
    (0..n as u64)
        .flat_map(|i| request(first_id + i, size))
        .collect()
}

/// (size, requests per run).
const SIZES: [(usize, usize); 3] = [(200, 100_000), (4096, 20_000), (64 * 1024, 2_000)];

/// One run: (requests/s, MB/s of requests and responses).
fn throughput(peer: &mut Peer, size: usize, n: usize) -> (f64, f64) {
    let lines = batch(size, n, peer.next_id + 1);
    peer.next_id += n as u64;
    let (took, read) = peer.pump(&lines, n);
    let secs = took.as_secs_f64();
    (n as f64 / secs, (lines.len() + read) as f64 / secs / 1e6)
}

/// The best of `rounds` runs through each route, the routes taking turns in each round so that
/// whatever else the machine does weighs on them alike.
fn best_interleaved(
    routes: &[Route],
    server: Server,
    bus: &Bus,
    size: usize,
    n: usize,
    rounds: usize,
) -> Vec<(Route, (f64, f64))> {
    let mut peers: Vec<Peer> = routes
        .iter()
        .map(|r| Peer::start(*r, server, bus))
        .collect();
    let mut best = vec![(0.0f64, 0.0f64); routes.len()];
    for _ in 0..rounds {
        for (peer, best) in peers.iter_mut().zip(best.iter_mut()) {
            let run = throughput(peer, size, n);
            if run.0 > best.0 {
                *best = run;
            }
        }
    }
    routes.iter().copied().zip(best).collect()
}

fn print_rows(rows: &[(Route, (f64, f64))]) {
    let direct = rows[0].1 .0;
    for (route, (rps, mbps)) in rows {
        println!(
            "    {:<24} {:>10.0} requests/s {:>9.1} MB/s  ({:.2}x direct)",
            route.name(),
            rps,
            mbps,
            rps / direct
        );
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.5), at(0.99))
}

fn criterion_groups(c: &mut Criterion, bus: &Bus) {
    let mut group = c.benchmark_group("mcp relay throughput");
    group.sample_size(10);
    for (size, n) in SIZES {
        group.throughput(Throughput::Elements(n as u64));
        for path in Route::ALL {
            let mut peer = Peer::start(path, Server::Json, bus);
            group.bench_function(BenchmarkId::new(path.name(), size), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let lines = batch(size, n, peer.next_id + 1);
                        peer.next_id += n as u64;
                        total += peer.pump(&lines, n).0;
                    }
                    total
                })
            });
        }
    }
    group.finish();
    let mut group = c.benchmark_group("mcp round trip");
    for path in Route::ALL {
        let mut peer = Peer::start(path, Server::Json, bus);
        group.bench_function(path.name(), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| peer.round_trip(200)).sum())
        });
    }
    group.finish();
}

fn report(bus: &Bus) {
    println!("\nipckit-top mcp against a direct pipe to the same echo server");
    println!("(best of 5 runs, the routes taking turns in each round):");
    for (size, n) in SIZES {
        println!("  requests of {size} B ({n} per run), a server that parses and serializes JSON:");
        print_rows(&best_interleaved(
            &Route::ALL,
            Server::Json,
            bus,
            size,
            n,
            5,
        ));
    }
    println!("  requests of 200 B, a server that does no JSON work (the proxy's own capacity):");
    let routes = [Route::Direct, Route::ProxyNoBus, Route::ProxyNoInjectBus];
    print_rows(&best_interleaved(
        &routes,
        Server::Bytes,
        bus,
        200,
        100_000,
        5,
    ));

    println!("  round trips of one 200 B request (5,000 per route, the routes taking turns),");
    println!("  and the latency the proxy adds per relayed message:");
    let mut peers: Vec<Peer> = Route::ALL
        .iter()
        .map(|r| Peer::start(*r, Server::Json, bus))
        .collect();
    let mut samples = vec![Vec::with_capacity(5000); peers.len()];
    for _ in 0..5000 {
        for (peer, samples) in peers.iter_mut().zip(samples.iter_mut()) {
            samples.push(peer.round_trip(200));
        }
    }
    let mut direct = (Duration::ZERO, Duration::ZERO);
    for (route, samples) in Route::ALL.into_iter().zip(samples) {
        let (p50, p99) = percentiles(samples);
        if route == Route::Direct {
            direct = (p50, p99);
            println!(
                "    {:<24} p50 {:>9.1?} p99 {:>9.1?}",
                route.name(),
                p50,
                p99
            );
            continue;
        }
        let added = |proxied: Duration, base: Duration| {
            proxied.saturating_sub(base).as_secs_f64() * 1e6 / 2.0
        };
        println!(
            "    {:<24} p50 {:>9.1?} p99 {:>9.1?}  added per message: p50 {:.1} µs, p99 {:.1} µs",
            route.name(),
            p50,
            p99,
            added(p50, direct.0),
            added(p99, direct.1)
        );
    }
}

fn main() {
    if let Ok(kind) = std::env::var(ECHO_ENV) {
        echo_server(&kind);
        return;
    }
    let bus = Bus::start();
    let report_only = std::env::args().any(|a| a == "--report-only");
    if !report_only {
        let mut c = Criterion::default().configure_from_args();
        criterion_groups(&mut c, &bus);
        c.final_summary();
    }
    report(&bus);
}
