//! ipckit-top on NATS against raw `async-nats`, in one run, on a `nats-server` of its own (loopback,
//! JetStream on a temporary store):
//!
//! - **bridge**: events a bus in this process holds, forwarded by `bridge::run` (read from the bus's
//!   socket, encoded, published with a window of 256 outstanding acks), against raw JetStream
//!   publishing of the same events' JSON (prebuilt) with the same window, twice: with only a
//!   message id, and as the bridge's own messages (the same headers: origin, origin id, instance,
//!   time, resource, message id, built before the timed region). The first ratio counts what the
//!   mapping's headers cost the server as well as the bridge's own work; the second, the bridge's
//!   own work only;
//! - **monitor ingest**: the monitor's NATS source (`spawn_nats_source`: ordered consumer, events
//!   parsed, origins batched, `SourceMsg`s on a channel) reading a stream of those events, against a
//!   raw ordered consumer reading the same stream (counting messages). Both use async-nats's
//!   default ordered consumer settings (`OrderedConfig` defaults: pulls of 500, 30 s expiry, 15 s
//!   heartbeat). The source's time includes connecting to NATS and checking the stream (as the
//!   monitor does at start); the raw consumer's starts on an open connection;
//! - **latency**: from `publish` on a local bus to the monitor's source through bridge and NATS, one
//!   event every millisecond, p50 and p99.
//!
//! Each throughput case is the best of 5 rounds, the two sides of a pair taking turns in each round.
//! `cargo bench --bench nats` runs the criterion groups, then prints the report with ratios;
//! `cargo bench --bench nats -- --report-only` prints only the report.

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::message::PublishMessage;
use criterion::Criterion;
use futures_util::StreamExt;
use ipckit::event_stream::{Event, EventBus, EventBusConfig, EventFilter};
use ipckit::nats::bridge::{self, BridgeOptions};
use ipckit::nats::{NatsOptions, Publisher, StreamLimits};
use ipckit::top::{spawn_nats_source, SourceMsg};
use ipckit::transport::{Server, ServerConfig};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 20_000;
const WINDOW: usize = 256;
const ROUNDS: usize = 5;
const LATENCY_EVENTS: usize = 2_000;

/// A `nats-server` with JetStream on a free loopback port, killed on drop.
struct NatsServer {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl NatsServer {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("ipckit-nats-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ports")).unwrap();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
            .arg(dir.join("ports"))
            .args(["-js", "-sd"])
            .arg(dir.join("store"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (apt-get install nats-server)");
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            let found = std::fs::read_dir(dir.join("ports"))
                .unwrap()
                .filter_map(Result::ok)
                .find_map(|e| std::fs::read_to_string(e.path()).ok())
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|j| j["nats"][0].as_str().map(str::to_owned));
            if let Some(url) = found {
                break url;
            }
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        };
        NatsServer { child, url, dir }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A render-farm event of about 330 bytes of JSON.
fn event(i: usize) -> Event {
    let mut e = Event::with_resource(
        "render.frame.done",
        &format!("job-{}", i % 64),
        serde_json::json!({
            "frame": i,
            "node": format!("node-{:02}", i % 16),
            "duration_ms": 1234 + i % 1000,
            "output": format!("/srv/render/job-{}/frame-{:06}.exr", i % 64, i),
            "message": "frame rendered and written to the shared store without warnings",
            "samples": 4096,
        }),
    );
    e.id = i as u64 + 1;
    e
}

static STREAMS: AtomicU64 = AtomicU64::new(0);

/// Options for a new, empty stream of its own.
fn fresh(url: &str) -> NatsOptions {
    let n = STREAMS.fetch_add(1, Ordering::Relaxed);
    NatsOptions {
        url: url.to_owned(),
        stream: format!("BENCH{n}"),
        creds: None,
        limits: StreamLimits {
            max_events: Some(10 * EVENTS as u64),
            max_age: None,
            max_bytes: None,
        },
    }
}

async fn context(options: &NatsOptions) -> async_nats::jetstream::Context {
    let client = ipckit::nats::connect(options, None).await.unwrap();
    ipckit::nats::jetstream(client, Duration::from_secs(10))
}

/// Raw JetStream publishing of the events' JSON, `WINDOW` acks outstanding. Events per second.
/// With `as_bridged`, each message carries the headers the bridge gives it (origin, origin id,
/// instance, time, resource, message id), built before the timed region; without, only a message id.
async fn raw_publish(url: &str, events: &[Event], as_bridged: bool) -> f64 {
    use ipckit::nats::mapping::{header, time_value};
    let options = fresh(url);
    let js = context(&options).await;
    let stream = ipckit::nats::ensure_stream(&js, &options).await.unwrap();
    let subject = options.mapping().subject(&events[0].event_type);
    let instance = ipckit::nats::process_instance("bench");
    let messages: Vec<PublishMessage> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let payload: bytes::Bytes = serde_json::to_vec(e).unwrap().into();
            let message = PublishMessage::build().payload(payload);
            if !as_bridged {
                return message.message_id(format!("raw:{i}"));
            }
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(header::ORIGIN, "bench");
            headers.insert(header::ORIGIN_ID, e.id.to_string());
            headers.insert(header::INSTANCE, &*instance);
            headers.insert(header::TIME, time_value(e.timestamp));
            if let Some(resource) = &e.resource_id {
                headers.insert(header::RESOURCE, resource.as_str());
            }
            headers.insert(header::MSG_ID, format!("{instance}:{}", e.id));
            message.headers(headers)
        })
        .collect();
    let start = Instant::now();
    let mut acks = VecDeque::with_capacity(WINDOW);
    for message in messages {
        if acks.len() >= WINDOW {
            let ack: async_nats::jetstream::context::PublishAckFuture = acks.pop_front().unwrap();
            ack.await.unwrap();
        }
        acks.push_back(js.send_publish(subject.clone(), message).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let rate = events.len() as f64 / start.elapsed().as_secs_f64();
    js.delete_stream(stream.cached_info().config.name.clone())
        .await
        .unwrap();
    rate
}

/// A bus in this process holding `events`, served on a socket in `dir`.
struct ServedBus {
    socket: PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    bus: EventBus,
}

fn serve_bus(dir: &Path, name: &str, history: usize) -> ServedBus {
    let socket = dir.join(format!("{name}.sock"));
    let bus = EventBus::new(EventBusConfig {
        history_size: history,
        subscriber_buffer: 16 * 1024,
        ..Default::default()
    });
    let server = Server::bind(bus.clone(), ServerConfig::new(&socket)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    ServedBus { socket, stop, bus }
}

/// The bridge forwarding a bus that holds the events. Events per second, from the first event's
/// arrival in the stream to the last's (startup left out).
async fn bridge_forward(url: &str, dir: &Path, events: &[Event]) -> f64 {
    let options = fresh(url);
    let served = serve_bus(dir, &options.stream, events.len() + 16);
    for e in events {
        served.bus.publish(e.clone());
    }
    let js = context(&options).await;
    let mut stream = ipckit::nats::ensure_stream(&js, &options).await.unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(bridge::run(
        BridgeOptions {
            socket: served.socket.clone(),
            nats: options.clone(),
            origin: "bench".into(),
            filter: EventFilter::new(),
            window: WINDOW,
        },
        stop.clone(),
        |_| {},
    ));
    let mut first: Option<Instant> = None;
    let end = events.len() as u64;
    loop {
        let last = stream.info().await.unwrap().state.last_sequence;
        if last >= 1 && first.is_none() {
            first = Some(Instant::now());
        }
        if last >= end {
            break;
        }
        // Each look is a request the server answers beside the bridge's publishes: often enough
        // for a 1% reading of runs of half a second, rarely enough not to slow what it measures.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
    stop.cancel();
    task.await.unwrap().unwrap();
    let _ = served.stop.send(());
    js.delete_stream(options.stream.clone()).await.unwrap();
    (events.len() - 1) as f64 / elapsed.as_secs_f64()
}

/// A stream holding the events, published as the bridge would; its options.
async fn filled(url: &str, events: &[Event]) -> NatsOptions {
    let options = fresh(url);
    let js = context(&options).await;
    ipckit::nats::ensure_stream(&js, &options).await.unwrap();
    let mut publisher = Publisher::new(js, options.mapping(), "bench", WINDOW);
    let instance: Arc<str> = Arc::from("bench-1");
    for e in events {
        publisher.send(&instance, e, None).await.unwrap();
    }
    publisher.flush().await.unwrap();
    options
}

/// A raw ordered consumer reading the whole stream. Messages per second.
async fn raw_consume(options: &NatsOptions, n: usize) -> f64 {
    let js = context(options).await;
    let start = Instant::now();
    let stream = js.get_stream(&options.stream).await.unwrap();
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: 1 },
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut count = 0;
    while count < n {
        let message = messages.next().await.unwrap().unwrap();
        std::hint::black_box(&message.payload);
        count += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The monitor's NATS source reading the whole stream (history = all of it). Events per second.
async fn source_ingest(options: &NatsOptions, n: usize) -> f64 {
    let start = Instant::now();
    let (mut rx, task) = spawn_nats_source(options.clone(), n);
    let mut count = 0;
    while count < n {
        match rx.recv().await.unwrap() {
            SourceMsg::EventsFrom { events, .. } | SourceMsg::Events(events) => {
                count += events.len();
            }
            _ => {}
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    task.abort();
    rate
}

/// Latency from `publish` on a local bus to the monitor's source, through the bridge and NATS.
async fn latency(url: &str, dir: &Path) -> Vec<Duration> {
    let options = fresh(url);
    let served = serve_bus(dir, &format!("{}-lat", options.stream), 1024);
    let js = context(&options).await;
    ipckit::nats::ensure_stream(&js, &options).await.unwrap();
    let stop = CancellationToken::new();
    let bridge = tokio::spawn(bridge::run(
        BridgeOptions {
            socket: served.socket.clone(),
            nats: options.clone(),
            origin: "bench".into(),
            filter: EventFilter::new(),
            window: WINDOW,
        },
        stop.clone(),
        |_| {},
    ));
    let (mut rx, source) = spawn_nats_source(options.clone(), 1);
    // Until the path is warm: one event through.
    let base = Instant::now();
    let mut sent: Vec<Option<Instant>> = vec![None; LATENCY_EVENTS + 1];
    let mut got = Vec::with_capacity(LATENCY_EVENTS);
    let probe = |i: usize| Event::new("bench.latency", serde_json::json!({ "i": i }));
    served.bus.publish(probe(0));
    loop {
        if let SourceMsg::EventsFrom { events, .. } = rx.recv().await.unwrap() {
            if events.iter().any(|e| e.data["i"] == 0) {
                break;
            }
        }
    }
    let publisher = {
        let bus = served.bus.clone();
        tokio::spawn(async move {
            let mut times = Vec::with_capacity(LATENCY_EVENTS);
            for i in 1..=LATENCY_EVENTS {
                times.push((i, Instant::now()));
                bus.publish(probe(i));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            times
        })
    };
    let mut seen = 0;
    let mut arrivals: Vec<(usize, Instant)> = Vec::with_capacity(LATENCY_EVENTS);
    while seen < LATENCY_EVENTS {
        if let SourceMsg::EventsFrom { events, .. } = rx.recv().await.unwrap() {
            let now = Instant::now();
            for e in events {
                if let Some(i) = e.data["i"].as_u64() {
                    if i > 0 {
                        arrivals.push((i as usize, now));
                        seen += 1;
                    }
                }
            }
        }
    }
    for (i, at) in publisher.await.unwrap() {
        sent[i] = Some(at);
    }
    for (i, at) in arrivals {
        if let Some(s) = sent[i] {
            got.push(at.duration_since(s));
        }
    }
    let _ = base;
    source.abort();
    stop.cancel();
    let _ = bridge.await;
    let _ = served.stop.send(());
    got.sort_unstable();
    got
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn report(rt: &tokio::runtime::Runtime, server: &NatsServer) {
    let events: Vec<Event> = (0..EVENTS).map(event).collect();
    let size = serde_json::to_vec(&events[0]).unwrap().len();
    let dir = server.dir.clone();
    let (mut raw_pub, mut raw_same, mut bridged, mut raw_read, mut ingest) =
        (0f64, 0f64, 0f64, 0f64, 0f64);
    for _ in 0..ROUNDS {
        raw_pub = raw_pub.max(rt.block_on(raw_publish(&server.url, &events, false)));
        raw_same = raw_same.max(rt.block_on(raw_publish(&server.url, &events, true)));
        bridged = bridged.max(rt.block_on(bridge_forward(&server.url, &dir, &events)));
        let options = rt.block_on(filled(&server.url, &events));
        raw_read = raw_read.max(rt.block_on(raw_consume(&options, EVENTS)));
        ingest = ingest.max(rt.block_on(source_ingest(&options, EVENTS)));
        rt.block_on(async {
            let js = context(&options).await;
            js.delete_stream(&options.stream).await.unwrap();
        });
    }
    let lat = rt.block_on(latency(&server.url, &dir));
    println!();
    println!(
        "NATS report ({} events of {size} B JSON, window {WINDOW}, best of {ROUNDS} rounds)",
        EVENTS
    );
    println!(
        "  publish: raw async-nats JetStream {:>9.0} ev/s | bridge {:>9.0} ev/s | bridge/raw {:.2}x",
        raw_pub,
        bridged,
        bridged / raw_pub
    );
    println!(
        "           raw, the bridge's headers {:>9.0} ev/s | bridge {:>9.0} ev/s | bridge/raw {:.2}x",
        raw_same,
        bridged,
        bridged / raw_same
    );
    println!(
        "  read:    raw ordered consumer     {:>9.0} ev/s | monitor source {:>9.0} ev/s | source/raw {:.2}x",
        raw_read,
        ingest,
        ingest / raw_read
    );
    println!(
        "  latency: bus publish -> bridge -> NATS -> monitor source, {} events 1 ms apart: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

fn criterion_groups(c: &mut Criterion, rt: &tokio::runtime::Runtime, server: &NatsServer) {
    let events: Vec<Event> = (0..EVENTS).map(event).collect();
    let mut group = c.benchmark_group("nats publish");
    group.sample_size(10);
    group.throughput(criterion::Throughput::Elements(EVENTS as u64));
    group.bench_function("raw async-nats", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let rate = rt.block_on(raw_publish(&server.url, &events, false));
                total += Duration::from_secs_f64(EVENTS as f64 / rate);
            }
            total
        })
    });
    group.bench_function("bridge", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let rate = rt.block_on(bridge_forward(&server.url, &server.dir, &events));
                total += Duration::from_secs_f64(EVENTS as f64 / rate);
            }
            total
        })
    });
    group.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = NatsServer::start();
    let report_only = std::env::args().any(|a| a == "--report-only");
    if !report_only {
        let mut c = Criterion::default().configure_from_args();
        criterion_groups(&mut c, &rt, &server);
    }
    report(&rt, &server);
}
