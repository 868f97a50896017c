//! The transport against its ceiling and the naive way, in one run, between two processes.
//!
//! - `raw lines`: ~200-byte newline-terminated lines over a Unix socket, counted by the reader (the
//!   ceiling: framing only).
//! - `naive pipe`: the writer serializes each `Event` with serde_json to a line; the reader parses
//!   each line into an owned `Event`.
//! - `ours, 1 sub` / `ours, 8 subs`: a child process hosts a bus and a `Server` on one thread (as the
//!   naive writer is one thread); events published there reach 1 or 8 remote `RemoteSubscriber`s in
//!   this process (8 subscribers: total delivered). Nothing may be dropped (checked). Each is
//!   measured twice: receiving owned events (`recv`, parsed as the naive reader parses), and reading
//!   them in place (`recv_refs`: an `EventRef` per event, its fields read and its data checked as
//!   JSON, no owned `Event` built).
//! - Events are built before the clock starts (the child builds them, says so, then the parent starts
//!   the clock and says go), as the bus benchmarks pre-build theirs: the naive writer only serializes
//!   and writes, ours only publishes (the server serializes and writes). The report also shows the
//!   naive pipe and ours with each event built on the sending thread just before it is sent, where
//!   building shares the sending core.
//! - `remote publish`: this process publishes through a `Client` (`publish_batch` of 256).
//! - latency: one event per millisecond published in the child, `now - event.timestamp` here.
//! - CPU per event: for the naive pipe and ours, the CPU time (user + system, `getrusage`) the
//!   sending process and this process used during the fastest run, divided by the events sent, so
//!   the report shows which side limits the rate.
//!
//! `cargo bench --bench transport` runs the criterion groups, then prints a report with events/s and
//! ratios. `cargo bench --bench transport -- --report-only` prints only the report.

use criterion::{BenchmarkId, Criterion, Throughput};
use ipckit::transport::{Client, RemoteRef, RemoteSubscriber, Server, ServerConfig};
use ipckit::{Event, EventBus, EventBusConfig, EventFilter, Replay};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::ops::ControlFlow;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command as Process, Stdio};
use std::time::{Duration, Instant, SystemTime};

const CHILD_ENV: &str = "IPCKIT_TRANSPORT_BENCH_CHILD";

fn event(i: u64) -> Event {
    Event::with_resource(
        "render.frame",
        "job-7",
        json!({ "frame": i, "message": "frame rendered in 41 ms, 2.1M samples/s, denoised" }),
    )
}

// ---------------------------------------------------------------- child side

/// What the parent asks of a child, one line each on its stdin.
enum Command {
    /// `prepare N`: build N events now (before the clock starts) and answer `prepared`.
    Prepare(u64),
    /// `go`: send (or publish) the prepared events.
    Go,
    /// `N`: build and send N events, each built just before it is sent.
    Build(u64),
    /// `latency N`: publish N events one millisecond apart.
    Latency(u64),
    /// `cpu`: answer with the CPU time this process has used so far, in microseconds.
    Cpu,
    Stop,
}

/// CPU time (user and system) this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

fn parse_command(line: &str) -> Command {
    let mut words = line.split_whitespace();
    match (words.next(), words.next().map(str::parse::<u64>)) {
        (Some("prepare"), Some(Ok(n))) => Command::Prepare(n),
        (Some("latency"), Some(Ok(n))) => Command::Latency(n),
        (Some("go"), None) => Command::Go,
        (Some("cpu"), None) => Command::Cpu,
        (Some(n), None) => n.parse().map_or(Command::Stop, Command::Build),
        _ => Command::Stop,
    }
}

fn child(mode: &str, socket: &Path) {
    let stdin = std::io::stdin();
    let mut commands = stdin.lock().lines();
    match mode {
        "raw" | "naive" => {
            let listener = UnixListener::bind(socket).expect("bind");
            println!("ready");
            let (stream, _) = listener.accept().expect("accept");
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, stream);
            let mut line = vec![b'x'; 199];
            line.push(b'\n');
            let mut prepared: Vec<Event> = Vec::new();
            while let Some(Ok(command)) = commands.next() {
                match parse_command(&command) {
                    Command::Prepare(n) => {
                        prepared = (0..n).map(event).collect();
                        println!("prepared");
                    }
                    Command::Go => {
                        for event in prepared.drain(..) {
                            serde_json::to_writer(&mut out, &event).expect("serialize");
                            out.write_all(b"\n").expect("write");
                        }
                    }
                    Command::Build(n) => {
                        for i in 0..n {
                            if mode == "raw" {
                                out.write_all(&line).expect("write");
                            } else {
                                serde_json::to_writer(&mut out, &event(i)).expect("serialize");
                                out.write_all(b"\n").expect("write");
                            }
                        }
                    }
                    Command::Cpu => println!("{}", cpu_time().as_micros()),
                    Command::Latency(_) | Command::Stop => break,
                }
                out.flush().expect("flush");
            }
        }
        _ => {
            // One thread hosts the bus, its publisher and the server, as the naive writer is one
            // thread: the comparison is per core on both sides.
            let bus = EventBus::new(EventBusConfig {
                subscriber_buffer: 1 << 16,
                ..Default::default()
            });
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            drop(commands);
            std::thread::spawn(move || {
                for command in std::io::stdin().lines().map_while(Result::ok) {
                    if tx.send(command).is_err() {
                        break;
                    }
                }
            });
            runtime.block_on(async move {
                let server = Server::bind(bus.clone(), ServerConfig::new(socket)).expect("bind");
                tokio::spawn(server.run_until(std::future::pending()));
                println!("ready");
                let publisher = bus.publisher();
                let mut prepared: Vec<Event> = Vec::new();
                // Lets the server write every 256 events; holds back while a subscriber is far
                // behind, so nothing is dropped.
                let pace = |i: u64| {
                    let bus = bus.clone();
                    async move {
                        if i % 256 == 255 {
                            tokio::task::yield_now().await;
                            while bus.subscribers().iter().any(|s| s.queued > 1 << 14) {
                                tokio::task::yield_now().await;
                            }
                        }
                    }
                };
                while let Some(command) = rx.recv().await {
                    match parse_command(&command) {
                        Command::Latency(count) => {
                            for i in 0..count {
                                publisher.publish(event(i));
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        }
                        Command::Prepare(n) => {
                            prepared = (0..n).map(event).collect();
                            println!("prepared");
                        }
                        Command::Go => {
                            for (i, event) in (0u64..).zip(prepared.drain(..)) {
                                publisher.publish(event);
                                pace(i).await;
                            }
                        }
                        Command::Build(n) => {
                            for i in 0..n {
                                publisher.publish(event(i));
                                pace(i).await;
                            }
                        }
                        Command::Cpu => println!("{}", cpu_time().as_micros()),
                        Command::Stop => break,
                    }
                }
            });
        }
    }
}

// ---------------------------------------------------------------- parent side

struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    socket: PathBuf,
    _dir: PathBuf,
}

impl Peer {
    fn start(mode: &str) -> Peer {
        let dir = std::env::temp_dir().join(format!("ipckit-bench-{}-{mode}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("s.sock");
        let mut child = Process::new(std::env::current_exe().expect("exe"))
            .env(CHILD_ENV, mode)
            .arg(&socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut ready = String::new();
        stdout.read_line(&mut ready).expect("ready");
        assert_eq!(ready.trim(), "ready");
        Peer {
            child,
            stdin,
            stdout,
            socket,
            _dir: dir,
        }
    }

    fn command(&mut self, text: &str) {
        writeln!(self.stdin, "{text}").expect("command");
        self.stdin.flush().expect("flush");
    }

    /// Has the child build `n` events, and waits until it has: building is outside the timing.
    fn prepare(&mut self, n: u64) {
        self.command(&format!("prepare {n}"));
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).expect("prepared");
        assert_eq!(answer.trim(), "prepared");
    }

    /// The CPU time the child has used so far.
    fn cpu(&mut self) -> Duration {
        self.command("cpu");
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).expect("cpu");
        Duration::from_micros(answer.trim().parse().expect("cpu microseconds"))
    }

    /// Starts the child sending `n` events: prepared ones (`prepare` first), or built as it goes.
    fn start_sending(&mut self, n: u64, events: Events) {
        match events {
            Events::Prebuilt => self.command("go"),
            Events::BuiltWhileSending => self.command(&n.to_string()),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// A line-reading connection to a `raw` or `naive` child.
struct LinePeer {
    peer: Peer,
    reader: BufReader<UnixStream>,
    line: Vec<u8>,
}

impl LinePeer {
    fn start(mode: &str) -> LinePeer {
        let peer = Peer::start(mode);
        let stream = UnixStream::connect(&peer.socket).expect("connect");
        LinePeer {
            peer,
            reader: BufReader::with_capacity(64 * 1024, stream),
            line: Vec::with_capacity(512),
        }
    }

    fn raw(&mut self, n: u64) -> Duration {
        let start = Instant::now();
        self.peer.command(&n.to_string());
        let mut seen = 0u64;
        while seen < n {
            let buf = self.reader.fill_buf().expect("read");
            let len = buf.len();
            seen += buf.iter().filter(|&&b| b == b'\n').count() as u64;
            self.reader.consume(len);
        }
        start.elapsed()
    }

    fn naive(&mut self, n: u64, events: Events) -> Run {
        if let Events::Prebuilt = events {
            self.peer.prepare(n);
        }
        let before = (self.peer.cpu(), cpu_time());
        let start = Instant::now();
        self.peer.start_sending(n, events);
        for _ in 0..n {
            self.line.clear();
            self.reader.read_until(b'\n', &mut self.line).expect("read");
            let event: Event = serde_json::from_slice(&self.line).expect("parse");
            std::hint::black_box(event);
        }
        let wall = start.elapsed();
        Run::new(wall, before, (self.peer.cpu(), cpu_time()))
    }
}

/// One timed run: its wall time and the CPU time the sending process (the child) and the receiving
/// one (this process) used during it.
#[derive(Clone, Copy)]
struct Run {
    wall: Duration,
    sender_cpu: Duration,
    receiver_cpu: Duration,
}

impl Run {
    fn new(wall: Duration, before: (Duration, Duration), after: (Duration, Duration)) -> Run {
        Run {
            wall,
            sender_cpu: after.0.saturating_sub(before.0),
            receiver_cpu: after.1.saturating_sub(before.1),
        }
    }
}

/// Where the events come from in the sending process.
#[derive(Clone, Copy)]
enum Events {
    /// Built before the clock starts, as the bus benchmarks do: the sender only serializes (and
    /// ours publishes) them.
    Prebuilt,
    /// Each built just before it is sent, on the sending thread.
    BuiltWhileSending,
}

/// How the remote subscribers receive.
#[derive(Clone, Copy)]
enum Receive {
    Owned,
    InPlace,
}

/// A bus served by a child process, with `subs` remote subscribers here.
struct Ours {
    peer: Peer,
    runtime: tokio::runtime::Runtime,
    subs: Vec<RemoteSubscriber>,
    client: Client,
}

impl Ours {
    fn start(subs: usize) -> Ours {
        let peer = Peer::start("server");
        // One subscriber: one thread, so the connection's reader and the consuming task hand over
        // without cross-thread wake-ups (the other core runs the serving process). Several: two
        // worker threads, so connections are read in parallel.
        let runtime = if subs <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        }
        .expect("runtime");
        let (client, subs) = runtime.block_on(async {
            let client = Client::connect(&peer.socket).await.expect("connect");
            let mut out = Vec::new();
            for _ in 0..subs {
                let c = Client::connect(&peer.socket).await.expect("connect");
                out.push(
                    c.subscribe(&EventFilter::new(), Replay::None)
                        .await
                        .expect("subscribe"),
                );
            }
            (client, out)
        });
        Ours {
            peer,
            runtime,
            subs,
            client,
        }
    }

    /// Time for every subscriber to receive `n` events published in the child: as owned events
    /// (`recv`), or read in place (`recv_refs`, each event's fields read, its data checked).
    fn deliver(&mut self, n: u64, receive: Receive, events: Events) -> Run {
        if let Events::Prebuilt = events {
            self.peer.prepare(n);
        }
        let before = (self.peer.cpu(), cpu_time());
        let start = Instant::now();
        self.peer.start_sending(n, events);
        let subs = std::mem::take(&mut self.subs);
        self.subs = self.runtime.block_on(async move {
            let tasks: Vec<_> = subs
                .into_iter()
                .map(|mut sub| {
                    tokio::spawn(async move {
                        match receive {
                            Receive::Owned => {
                                for _ in 0..n {
                                    std::hint::black_box(
                                        sub.recv().await.expect("event").expect("no loss"),
                                    );
                                }
                            }
                            Receive::InPlace => {
                                let mut seen = 0;
                                while seen < n {
                                    sub.recv_refs(|item| {
                                        let RemoteRef::Event(event) = item else {
                                            panic!("the benchmark must not lose events")
                                        };
                                        std::hint::black_box(&event);
                                        seen += 1;
                                        ControlFlow::Continue(())
                                    })
                                    .await
                                    .expect("event");
                                }
                                assert_eq!(seen, n, "exactly the events published");
                            }
                        }
                        assert_eq!(sub.lost(), 0, "the benchmark must not drop events");
                        sub
                    })
                })
                .collect();
            let mut back = Vec::new();
            for task in tasks {
                back.push(task.await.expect("task"));
            }
            back
        });
        let wall = start.elapsed();
        Run::new(wall, before, (self.peer.cpu(), cpu_time()))
    }

    /// Time to publish `n` events from here in batches of 256.
    fn publish(&mut self, n: u64) -> Duration {
        let batch: Vec<Event> = (0..256).map(event).collect();
        let client = self.client.clone();
        self.runtime.block_on(async move {
            let start = Instant::now();
            let mut sent = 0;
            while sent < n {
                let take = (n - sent).min(256) as usize;
                client.publish_batch(&batch[..take]).await.expect("publish");
                sent += take as u64;
            }
            start.elapsed()
        })
    }

    fn latency(&mut self, count: u64) -> Vec<Duration> {
        self.peer.command(&format!("latency {count}"));
        let sub = self.subs.first_mut().expect("a subscriber");
        self.runtime.block_on(async move {
            let mut out = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let event = sub.recv().await.expect("event").expect("no loss");
                out.push(
                    SystemTime::now()
                        .duration_since(event.timestamp)
                        .unwrap_or_default(),
                );
            }
            out
        })
    }

    fn encoded(&mut self) -> (u64, u64) {
        let stats = self.runtime.block_on(self.client.stats()).expect("stats");
        (stats.bus.published, stats.encoded)
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn best(mut f: impl FnMut(u64) -> Duration, n: u64) -> f64 {
    (0..3).map(|_| rate(n, f(n))).fold(0.0, f64::max)
}

/// The fastest of three runs: its rate, and the CPU each side spent per event in it (ns).
fn best_run(mut f: impl FnMut(u64) -> Run, n: u64) -> (f64, f64, f64) {
    let fastest = (0..3)
        .map(|_| f(n))
        .min_by_key(|run| run.wall)
        .expect("three runs");
    let per_event = |d: Duration| d.as_nanos() as f64 / n as f64;
    (
        rate(n, fastest.wall),
        per_event(fastest.sender_cpu),
        per_event(fastest.receiver_cpu),
    )
}

fn criterion_groups(c: &mut Criterion) {
    let mut group = c.benchmark_group("transport");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    let mut raw = LinePeer::start("raw");
    group.bench_function("raw lines (ceiling)", |b| {
        b.iter_custom(|n| raw.raw(n.max(1) * 64) / 64)
    });
    drop(raw);
    let mut naive = LinePeer::start("naive");
    group.bench_function("naive owned-Event pipe", |b| {
        b.iter_custom(|n| naive.naive(n.max(1) * 64, Events::Prebuilt).wall / 64)
    });
    drop(naive);
    for subs in [1usize, 8] {
        let mut ours = Ours::start(subs);
        for (name, receive) in [
            ("ours, subscribers (owned)", Receive::Owned),
            ("ours, subscribers (in place)", Receive::InPlace),
        ] {
            group.bench_with_input(BenchmarkId::new(name, subs), &subs, |b, _| {
                b.iter_custom(|n| ours.deliver(n.max(1) * 64, receive, Events::Prebuilt).wall / 64)
            });
        }
    }
    let mut ours = Ours::start(0);
    group.bench_function("remote publish (batches of 256)", |b| {
        b.iter_custom(|n| ours.publish(n.max(1) * 64) / 64)
    });
    group.finish();
}

fn report() {
    const N: u64 = 200_000;
    let sample = serde_json::to_string(&event(123_456)).expect("json");
    println!(
        "\ntransport report ({} bytes per event line, best of 3 runs of {N}; events built before the clock starts unless said):",
        sample.len() + 1
    );
    let raw = best(|n| LinePeer::start("raw").raw(n), N * 10);
    let mut line_peer = LinePeer::start("naive");
    let (naive, naive_tx, naive_rx) = best_run(|n| line_peer.naive(n, Events::Prebuilt), N);
    let (naive_built, ..) = best_run(|n| line_peer.naive(n, Events::BuiltWhileSending), N);
    drop(line_peer);
    let mut one = Ours::start(1);
    let (ours1, ours1_tx, ours1_rx) =
        best_run(|n| one.deliver(n, Receive::Owned, Events::Prebuilt), N);
    let (ours1_in_place, ours1_in_place_tx, ours1_in_place_rx) =
        best_run(|n| one.deliver(n, Receive::InPlace, Events::Prebuilt), N);
    let (ours1_built, ..) = best_run(
        |n| one.deliver(n, Receive::InPlace, Events::BuiltWhileSending),
        N,
    );
    let mut eight = Ours::start(8);
    let (ours8, ..) = best_run(
        |n| eight.deliver(n, Receive::Owned, Events::Prebuilt),
        N / 4,
    );
    let ours8 = 8.0 * ours8;
    let (ours8_in_place, ours8_tx, ours8_rx) = best_run(
        |n| eight.deliver(n, Receive::InPlace, Events::Prebuilt),
        N / 4,
    );
    let ours8_in_place = 8.0 * ours8_in_place;
    let (published, encoded) = eight.encoded();
    let mut publisher = Ours::start(0);
    let publish = best(|n| publisher.publish(n), N);
    let mut lat = one.latency(2000);
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!("  raw lines (ceiling)        {:>12.0} lines/s", raw);
    println!(
        "  naive owned-Event pipe     {:>12.0} events/s  ({:.2}x of ceiling)",
        naive,
        naive / raw
    );
    println!(
        "  ours, 1 remote subscriber  {:>12.0} events/s  ({:.2}x naive, {:.3}x ceiling)",
        ours1,
        ours1 / naive,
        ours1 / raw
    );
    println!(
        "  ours, 1 sub, read in place {:>12.0} events/s  ({:.2}x naive, {:.3}x ceiling; recv_refs)",
        ours1_in_place,
        ours1_in_place / naive,
        ours1_in_place / raw
    );
    println!(
        "  ours, 8 remote subscribers {:>12.0} events/s delivered in total ({:.2}x one subscriber)",
        ours8,
        ours8 / ours1
    );
    println!(
        "  ours, 8 subs, read in place{:>12.0} events/s delivered in total ({:.2}x one subscriber)",
        ours8_in_place,
        ours8_in_place / ours1_in_place
    );
    println!(
        "    serialized once: {encoded} events encoded for {published} published to 8 subscribers"
    );
    println!("  with each event built just before it is sent, on the sending thread:");
    println!(
        "    naive owned-Event pipe   {:>12.0} events/s",
        naive_built
    );
    println!(
        "    ours, 1 sub, in place    {:>12.0} events/s  ({:.2}x naive built the same way)",
        ours1_built,
        ours1_built / naive_built
    );
    println!(
        "  remote publish             {:>12.0} events/s  (publish_batch of 256)",
        publish
    );
    println!(
        "  latency publish -> remote subscriber, 1 event/ms: p50 {:?}, p99 {:?}",
        p(0.5),
        p(0.99)
    );
    println!("  CPU per event in the fastest run, sending process / receiving process:");
    for (name, tx, rx) in [
        ("naive owned-Event pipe", naive_tx, naive_rx),
        ("ours, 1 sub, owned", ours1_tx, ours1_rx),
        (
            "ours, 1 sub, in place",
            ours1_in_place_tx,
            ours1_in_place_rx,
        ),
        ("ours, 8 subs, in place", ours8_tx, ours8_rx),
    ] {
        println!("    {name:<26} {tx:>6.0} ns / {rx:>6.0} ns");
    }
    println!("    (the serving process publishes, keeps history, encodes and writes; with 8 subscribers the");
    println!("    receiving process reads each event 8 times)");
    let (in_process, wire) = catch_up_rates(300_000);
    println!("  catching up on 300,000 events a subscriber missed, from history (best of 3):");
    println!("    in process (CatchUp)       {in_process:>12.0} events/s");
    println!(
        "    over the socket, replay    {wire:>12.0} events/s  ({:.2}x the live 1-sub rate, read in place)",
        wire / ours1_in_place
    );
}

/// Events per second at which a subscriber that missed `n` events gets them back from history: in
/// process (a `CatchUp` whose subscriber dropped all but its buffer), and over a socket (a remote
/// subscription with `from_id` 1 against a server in this process, read in place).
fn catch_up_rates(n: u64) -> (f64, f64) {
    use ipckit::event_stream::{CatchUp, Delivery};
    let bus = EventBus::new(EventBusConfig {
        history_size: n as usize,
        subscriber_buffer: 1024,
        ..Default::default()
    });
    let mut in_process = 0f64;
    for _ in 0..3 {
        bus.clear_history();
        let mut reader = CatchUp::new(&bus, EventFilter::new(), Replay::None);
        for i in 0..n {
            bus.publish(event(i));
        }
        let start = Instant::now();
        let mut out = Vec::with_capacity(1024);
        let mut got = 0u64;
        while got < n {
            out.clear();
            reader.try_recv_batch(&mut out, 1024);
            for item in &out {
                assert!(matches!(item, Delivery::Event(_)), "nothing lost");
                got += 1;
            }
        }
        in_process = in_process.max(n as f64 / start.elapsed().as_secs_f64());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("ipckit-catchup-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let socket = dir.join("bus.sock");
    let wire = runtime.block_on(async {
        let server = Server::bind(bus.clone(), ServerConfig::new(&socket)).expect("bind");
        let serving = tokio::spawn(server.run_until(std::future::pending()));
        let client = Client::connect(&socket).await.expect("connect");
        let first = bus.stats().oldest_id.expect("held");
        let mut best_rate = 0f64;
        for _ in 0..3 {
            let start = Instant::now();
            let mut sub = client
                .subscribe(&EventFilter::new(), Replay::FromId(first))
                .await
                .expect("subscribe");
            let mut got = 0u64;
            while got < n {
                sub.recv_refs(|item| {
                    let RemoteRef::Event(event) = item else {
                        panic!("nothing lost")
                    };
                    std::hint::black_box(&event);
                    got += 1;
                    ControlFlow::Continue(())
                })
                .await
                .expect("event");
            }
            best_rate = best_rate.max(n as f64 / start.elapsed().as_secs_f64());
        }
        serving.abort();
        best_rate
    });
    let _ = std::fs::remove_dir_all(&dir);
    (in_process, wire)
}

fn main() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        let socket = std::env::args_os()
            .nth(1)
            .map(PathBuf::from)
            .expect("socket argument");
        child(&mode, &socket);
        return;
    }
    let report_only = std::env::args().any(|a| a == "--report-only");
    if !report_only {
        let mut c = Criterion::default().configure_from_args();
        criterion_groups(&mut c);
        c.final_summary();
    }
    report();
}
