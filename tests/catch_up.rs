//! Nothing lost without a word, over a real server: a subscriber that stops reading while 300,000
//! events arrive gets all of them in order, once, when history holds them, and otherwise exactly as
//! many losses as it misses; one slow subscription holds up no other on its connection; a subscribe
//! that times out is closed on the server; limits on idle connections, connections per process, the
//! bytes queued for a client; the client's hello timeout and line limit.

mod common;

use common::{run, Raw, ServerProcess, TempDir};
use ipckit::event_stream::{Loss, LossReason};
use ipckit::transport::{
    Client, ClientError, ClientOptions, RemoteItem, RemoteSubscriber, Server, ServerConfig,
};
use ipckit::{Event, EventBus, EventBusConfig, EventFilter, Replay, SlowConsumerPolicy};
use serde_json::json;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;
use tokio::sync::oneshot;

const LONG: Duration = Duration::from_secs(60);

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LONG, future).await.expect("timed out")
}

fn host_with(
    bus: &EventBus,
    config: ServerConfig,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let server = Server::bind(bus.clone(), config).unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run_until(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (tx, task)
}

/// A bus whose subscribers fall behind quickly.
fn small_buffers(history: usize) -> EventBus {
    EventBus::new(EventBusConfig {
        history_size: history,
        subscriber_buffer: 256,
        ..Default::default()
    })
}

/// A client whose subscriptions hold little unread.
fn small_window() -> ClientOptions {
    ClientOptions {
        window: 16 * 1024,
        ..Default::default()
    }
}

/// Reads until `total` events plus losses were seen; the event ids and the losses.
async fn read_all(sub: &mut RemoteSubscriber, total: u64) -> (Vec<u64>, Vec<Loss>) {
    let (mut ids, mut losses) = (Vec::new(), Vec::new());
    let mut seen = 0u64;
    while seen < total {
        match within(sub.next_item()).await.expect("the connection stays") {
            RemoteItem::Event(event) => {
                ids.push(event.id);
                seen += 1;
            }
            RemoteItem::Lost(loss) => {
                seen += loss.count.expect("counted");
                losses.push(loss);
            }
        }
    }
    (ids, losses)
}

fn publish(bus: &EventBus, n: u64, kind: impl Fn(u64) -> &'static str) {
    for i in 0..n {
        bus.publish(Event::new(kind(i), json!({ "i": i })));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_subscriber_gets_all_300000_events_in_order_once_when_history_holds_them() {
    let dir = TempDir::new();
    let bus = small_buffers(300_000);
    let (_stop, _task) = host_with(&bus, ServerConfig::new(dir.socket()));
    let client = within(Client::connect_with(dir.socket(), small_window()))
        .await
        .unwrap();
    let mut sub = within(client.subscribe(&EventFilter::new(), Replay::None))
        .await
        .unwrap();
    // Frozen: nothing is read while all of them are published.
    publish(&bus, 300_000, |_| "tick");
    let (ids, losses) = read_all(&mut sub, 300_000).await;
    assert!(losses.is_empty(), "{losses:?}");
    assert!(
        ids.iter().copied().eq(1..=300_000),
        "every id once, in order"
    );
    assert!(
        bus.stats().dropped > 0,
        "the server's subscriber did fall behind: what it dropped came from history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_history_no_longer_holds_them_shown_plus_lost_is_published_exactly() {
    let dir = TempDir::new();
    let bus = small_buffers(50_000);
    let (_stop, _task) = host_with(&bus, ServerConfig::new(dir.socket()));
    let client = within(Client::connect_with(dir.socket(), small_window()))
        .await
        .unwrap();
    let mut all = within(client.subscribe(&EventFilter::new(), Replay::None))
        .await
        .unwrap();
    let thirds = EventFilter::parse("third").unwrap();
    let mut filtered = within(client.subscribe(&thirds, Replay::None))
        .await
        .unwrap();
    publish(
        &bus,
        300_000,
        |i| if i % 3 == 0 { "third" } else { "other" },
    );
    let (ids, losses) = read_all(&mut all, 300_000).await;
    let lost: u64 = losses.iter().map(|l| l.count.unwrap()).sum();
    assert_eq!(ids.len() as u64 + lost, 300_000);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order, once");
    assert!(
        ids.iter()
            .copied()
            .rev()
            .take(50_000)
            .eq((250_001..=300_000).rev()),
        "everything history still holds arrives"
    );
    for loss in &losses {
        // Without a filter every id in a loss's range is one lost event.
        let (first, last) = (loss.first_id.unwrap(), loss.last_id.unwrap());
        assert_eq!(loss.count, Some(last - first + 1), "{loss:?}");
        assert_eq!(loss.reason, LossReason::HistoryEvicted);
        assert!(!ids.iter().any(|id| (first..=last).contains(id)));
    }
    let (ids, losses) = read_all(&mut filtered, 100_000).await;
    let lost: u64 = losses.iter().map(|l| l.count.unwrap()).sum();
    assert_eq!(
        ids.len() as u64 + lost,
        100_000,
        "the filtered count is exact too"
    );
    assert!(ids.iter().all(|id| (id - 1) % 3 == 0));
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_subscription_holds_up_neither_another_nor_a_stats_request() {
    let dir = TempDir::new();
    let bus = small_buffers(400_000);
    let (_stop, _task) = host_with(&bus, ServerConfig::new(dir.socket()));
    let client = within(Client::connect(dir.socket())).await.unwrap();
    let _never_read = within(client.subscribe(&EventFilter::new(), Replay::None))
        .await
        .unwrap();
    let mut read = within(client.subscribe(&EventFilter::new(), Replay::None))
        .await
        .unwrap();
    publish(&bus, 200_000, |_| "tick");
    let (ids, losses) = read_all(&mut read, 200_000).await;
    assert!(losses.is_empty());
    assert_eq!(ids.len(), 200_000);
    let stats = within(client.stats())
        .await
        .expect("answered, not timed out");
    assert_eq!(stats.bus.published, 200_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_that_timed_out_is_closed_on_the_server() {
    let dir = TempDir::new();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<String>();
    // A server that opens the subscription only after the client stopped waiting for it.
    fake_server(&dir.0, move |mut stream| {
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        writeln!(stream, "{HELLO}").unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let request: serde_json::Value = serde_json::from_str(&line).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let id = request["id"].as_u64().unwrap();
        writeln!(
            stream,
            r#"{{"type":"subscribed","id":{id},"sub":7,"gap":null}}"#
        )
        .unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        let _ = seen_tx.send(line);
    });
    let impatient = ClientOptions {
        request_timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let client = within(Client::connect_with(dir.socket(), impatient))
        .await
        .unwrap();
    let result = client.subscribe(&EventFilter::new(), Replay::None).await;
    assert!(matches!(result, Err(ClientError::Timeout(_))), "{result:?}");
    let next = tokio::task::spawn_blocking(move || seen_rx.recv_timeout(LONG))
        .await
        .unwrap()
        .expect("the client said something after the late reply");
    let next: serde_json::Value = serde_json::from_str(&next).unwrap();
    assert_eq!(
        (next["type"].as_str(), next["sub"].as_u64()),
        (Some("unsubscribe"), Some(7))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_block_publish_waits_off_the_runtime_workers() {
    let dir = TempDir::new();
    let bus = EventBus::new(EventBusConfig {
        subscriber_buffer: 1,
        slow_consumer: SlowConsumerPolicy::Block,
        block_timeout: None,
        ..Default::default()
    });
    let stuck = bus.subscribe(EventFilter::new());
    let (_stop, _task) = host_with(&bus, ServerConfig::new(dir.socket()));
    let publisher = within(Client::connect(dir.socket())).await.unwrap();
    let waiting = tokio::spawn(async move {
        publisher
            .publish_batch(&[Event::new("a", json!(1)), Event::new("a", json!(2))])
            .await
    });
    while bus.stats().published < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The second publish waits for `stuck`; the one worker thread is still free to serve others.
    let other = within(Client::connect(dir.socket())).await.unwrap();
    within(other.ping()).await.unwrap();
    drop(stuck);
    within(waiting).await.unwrap().unwrap();
}

#[test]
fn idle_connections_are_closed_and_subscribed_ones_are_not() {
    let dir = TempDir::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bus = EventBus::default();
    let mut config = ServerConfig::new(dir.socket());
    config.idle_timeout = Duration::from_millis(300);
    let (_stop, _task) = runtime.block_on(async { host_with(&bus, config) });
    let mut idle = Raw::connect(&dir.socket());
    let mut subscribed = Raw::connect(&dir.socket());
    let reply = subscribed.request(r#"{"type":"subscribe","id":1}"#);
    assert_eq!(reply["type"], "subscribed");
    let bye = idle.read();
    assert_eq!(
        (bye["type"].as_str(), bye["reason"].as_str()),
        (Some("bye"), Some("idle"))
    );
    std::thread::sleep(Duration::from_millis(600));
    bus.publish(Event::new("still.here", json!(null)));
    let event = subscribed.read();
    assert_eq!(event["event"]["event_type"], "still.here");
}

#[test]
fn one_process_gets_its_share_of_connections() {
    let dir = TempDir::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bus = EventBus::default();
    let mut config = ServerConfig::new(dir.socket());
    config.max_connections_per_process = 3;
    let (_stop, _task) = runtime.block_on(async { host_with(&bus, config) });
    let kept: Vec<Raw> = (0..3).map(|_| Raw::connect(&dir.socket())).collect();
    let fourth = Raw::connect(&dir.socket());
    let refused = fourth.hello;
    assert_eq!(refused["code"], "too_many_connections", "{refused}");
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains("this process"));
    drop(kept);
}

#[test]
fn a_client_that_stops_reading_the_socket_catches_up_past_the_byte_limit() {
    let dir = TempDir::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bus = small_buffers(100_000);
    let mut config = ServerConfig::new(dir.socket());
    config.max_queued_bytes = 64 * 1024;
    let server = runtime.block_on(async { Server::bind(bus.clone(), config).unwrap() });
    let counters = server.counters();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = runtime.spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    // No window: only the connection's byte limit bounds what waits for this client.
    let mut raw = Raw::connect(&dir.socket());
    for id in 1..=2 {
        let reply = raw.request(&format!(r#"{{"type":"subscribe","id":{id}}}"#));
        assert_eq!(reply["type"], "subscribed");
    }
    publish(&bus, 50_000, |_| "tick");
    std::thread::sleep(Duration::from_millis(300));
    let mut next = [1u64, 1];
    while next.iter().any(|&n| n <= 50_000) {
        let frame = raw.read();
        assert_eq!(frame["type"], "event", "{frame}");
        let sub = frame["sub"].as_u64().unwrap() as usize - 1;
        assert_eq!(
            frame["event"]["id"], next[sub],
            "each subscription in order, once"
        );
        next[sub] += 1;
    }
    assert!(counters.held_back() > 0, "the byte limit was reached");
    assert!(
        bus.stats().dropped > 0,
        "and the subscriptions caught up from history"
    );
    stop.send(()).unwrap();
    runtime.block_on(task).unwrap().unwrap();
}

/// A listener in a private directory that plays a server badly.
fn fake_server(dir: &Path, script: impl FnOnce(std::os::unix::net::UnixStream) + Send + 'static) {
    let listener = std::os::unix::net::UnixListener::bind(dir.join("bus.sock")).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        script(stream);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_says_hello_times_out() {
    let dir = TempDir::new();
    let (hold, held) = std::sync::mpsc::channel::<()>();
    fake_server(&dir.0, move |stream| {
        let _ = held.recv();
        drop(stream);
    });
    let options = ClientOptions {
        hello_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let result = within(Client::connect_with(dir.socket(), options)).await;
    assert!(matches!(result, Err(ClientError::Timeout(_))), "{result:?}");
    drop(hold);
}

const HELLO: &str = r#"{"type":"hello","protocol":"ipckit","version":2,"server":"x","instance":"x","last_id":0,"max_frame":1048576}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_line_over_the_limit_ends_the_connection_instead_of_vanishing() {
    let dir = TempDir::new();
    fake_server(&dir.0, |mut stream| {
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        writeln!(stream, "{HELLO}").unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let request: serde_json::Value = serde_json::from_str(&line).unwrap();
        let id = request["id"].as_u64().unwrap();
        writeln!(
            stream,
            r#"{{"type":"subscribed","id":{id},"sub":1,"gap":null}}"#
        )
        .unwrap();
        let event = |id: u64, text: &str| {
            format!(
                r#"{{"type":"event","sub":1,"event":{{"id":{id},"timestamp":1.0,"event_type":"x","resource_id":null,"data":"{text}"}}}}"#
            )
        };
        writeln!(stream, "{}", event(1, &"y".repeat(4096))).unwrap();
        writeln!(stream, "{}", event(2, "small")).unwrap();
        // Held open: the client must end it.
        let _ = reader.read_line(&mut line);
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {}
    });
    let options = ClientOptions {
        max_line: 1024,
        ..Default::default()
    };
    let client = within(Client::connect_with(dir.socket(), options))
        .await
        .unwrap();
    let mut sub = within(client.subscribe(&EventFilter::new(), Replay::None))
        .await
        .unwrap();
    assert!(
        within(sub.next_item()).await.is_none(),
        "the connection ends: event 2 must not arrive as if 1 had never been sent"
    );
}

#[test]
fn events_through_a_reader_that_sleeps_first_prints_all_300000() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &["--history", "300000"]);
    let socket = dir.socket().display().to_string();
    let input: String = (0..300_000)
        .map(|i| format!("{{\"event_type\":\"tick\",\"data\":{{\"i\":{i}}}}}\n"))
        .collect();
    assert!(run(&["--socket", &socket, "publish", "--stdin"], &input)
        .status
        .success());
    let mut events = std::process::Command::new(common::BIN)
        .args([
            "--socket",
            &socket,
            "events",
            "--since",
            "id:1",
            "--until",
            "id:300000",
            "--format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader sleeps first, as `(sleep 2; cat)` does.
    std::thread::sleep(Duration::from_secs(2));
    let stdout = std::io::BufReader::new(events.stdout.take().unwrap());
    let mut next = 1u64;
    for line in stdout.lines() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        assert_eq!(event["id"], next);
        next += 1;
    }
    let out = events.wait_with_output().unwrap();
    assert_eq!(next - 1, 300_000);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
}
