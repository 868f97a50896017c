//! Serving a bus and attaching to it: round trips, replay, ids across processes, reconnecting,
//! serialize-once, shutdown, permissions, stale and live sockets.

mod common;

use common::{ServerProcess, TempDir};
use ipckit::event_stream::{Loss, LossReason};
use ipckit::transport::{
    Client, ReconnectingSubscriber, RemoteRef, Server, ServerConfig, SubscriptionItem,
};
use ipckit::{Event, EventBus, EventBusConfig, EventFilter, Replay, ReplayGap};
use serde_json::json;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;
use tokio::sync::oneshot;

const LONG: Duration = Duration::from_secs(20);

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LONG, future).await.expect("timed out")
}

/// Serves `bus` at `socket` in this process; send on the returned channel to stop it.
fn host(bus: &EventBus, socket: &Path) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    host_with(bus, ServerConfig::new(socket))
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

/// The event as JSON carries it: the timestamp rounded to the microsecond.
fn wire_copy(event: &Event) -> Event {
    serde_json::from_str(&serde_json::to_string(event).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_filters_and_replay() {
    let dir = TempDir::new();
    let bus = EventBus::default();
    let (_stop, _task) = host(&bus, &dir.socket());
    for i in 0..10 {
        let kind = if i % 2 == 0 {
            "task.started"
        } else {
            "log.info"
        };
        bus.publish(Event::with_resource(
            kind,
            &format!("job-{i}"),
            json!({ "i": i }),
        ));
    }
    let client = within(Client::connect(dir.socket())).await.unwrap();
    assert_eq!(client.hello().last_id, 10);

    let tasks = EventFilter::parse("task.*").unwrap();
    let mut all = within(client.subscribe(&tasks, Replay::All)).await.unwrap();
    let mut last2 = within(client.subscribe(&tasks, Replay::Last(2)))
        .await
        .unwrap();
    let mut from7 = within(client.subscribe(&EventFilter::new(), Replay::FromId(7)))
        .await
        .unwrap();
    let cutoff = bus.history(&EventFilter::new())[4].timestamp;
    let mut from_time = within(client.subscribe(&EventFilter::new(), Replay::FromTime(cutoff)))
        .await
        .unwrap();
    let local = bus.subscribe_with_replay(tasks.clone(), Replay::All);

    let mut ids = Vec::new();
    for _ in 0..5 {
        let remote = within(all.recv()).await.unwrap().unwrap();
        let here = local.try_recv_arc().unwrap();
        assert_eq!(
            *remote,
            wire_copy(&here),
            "a remote subscriber yields the same events"
        );
        ids.push(remote.id);
    }
    assert_eq!(ids, [1, 3, 5, 7, 9]);
    assert_eq!(within(last2.recv()).await.unwrap().unwrap().id, 7);
    assert_eq!(within(last2.recv()).await.unwrap().unwrap().id, 9);
    for id in 7..=10 {
        assert_eq!(within(from7.recv()).await.unwrap().unwrap().id, id);
    }
    // Two events may share a microsecond, so the expected ids come from the bus itself.
    let expected: Vec<u64> = bus
        .history(&EventFilter::new().since(cutoff))
        .iter()
        .map(|e| e.id)
        .collect();
    assert!(
        expected.contains(&5) && expected.ends_with(&[10]),
        "{expected:?}"
    );
    for id in expected {
        assert_eq!(within(from_time.recv()).await.unwrap().unwrap().id, id);
    }

    // Live events from a remote publisher arrive filtered, equal to the in-process copy.
    let publisher = within(Client::connect(dir.socket())).await.unwrap();
    let id = within(publisher.publish(&Event::with_resource("log.info", "x", json!(1))))
        .await
        .unwrap();
    assert_eq!(id, 11);
    let id =
        within(publisher.publish(&Event::with_resource("task.done", "x", json!({"ok": true}))))
            .await
            .unwrap();
    assert_eq!(id, 12);
    let remote = within(all.recv()).await.unwrap().unwrap();
    assert_eq!(remote.id, 12);
    assert_eq!(
        *remote,
        *local.recv_timeout_arc(LONG).unwrap(),
        "published remotely: µs already"
    );
    let history = within(publisher.history(&EventFilter::parse("res:x").unwrap(), None))
        .await
        .unwrap();
    assert_eq!(history.iter().map(|e| e.id).collect::<Vec<_>>(), [11, 12]);
    let limited = within(publisher.history(&EventFilter::new(), Some(3)))
        .await
        .unwrap();
    assert_eq!(
        limited.iter().map(|e| e.id).collect::<Vec<_>>(),
        [10, 11, 12]
    );
    let stats = within(publisher.stats()).await.unwrap();
    assert_eq!(stats.bus.published, 12);
    assert!(stats.connections >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_an_id_history_dropped_reports_the_gap() {
    let dir = TempDir::new();
    let bus = EventBus::new(EventBusConfig {
        history_size: 5,
        ..Default::default()
    });
    let (_stop, _task) = host(&bus, &dir.socket());
    for _ in 0..20 {
        bus.publish(Event::new("a", json!(null)));
    }
    let client = within(Client::connect(dir.socket())).await.unwrap();
    let mut sub = within(client.subscribe(&EventFilter::new(), Replay::FromId(3)))
        .await
        .unwrap();
    assert_eq!(
        sub.replay_gap(),
        Some(ReplayGap {
            requested: 3,
            oldest_held: 16
        })
    );
    // The ids asked for and no longer kept come first, as one exact loss, then the rest.
    assert_eq!(
        within(sub.recv()).await.unwrap(),
        Err(Loss {
            count: Some(13),
            first_id: Some(3),
            last_id: Some(15),
            reason: LossReason::HistoryEvicted
        })
    );
    assert_eq!(within(sub.recv()).await.unwrap().unwrap().id, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_and_order_across_processes() {
    let dir = TempDir::new();
    let _server = ServerProcess::start(&dir.socket(), &["--history", "1000"]);
    let client = within(Client::connect(dir.socket())).await.unwrap();
    let mut sub = within(client.subscribe(&EventFilter::new(), Replay::None))
        .await
        .unwrap();
    const PUBLISHERS: usize = 4;
    const EACH: usize = 300;
    let socket = dir.socket();
    let children: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let input: String = (0..EACH)
                    .map(|n| {
                        format!(
                            "{{\"event_type\":\"job.step\",\"data\":{{\"p\":{p},\"n\":{n}}}}}\n"
                        )
                    })
                    .collect();
                let out = common::run(
                    &["--socket", socket.to_str().unwrap(), "publish", "--stdin"],
                    &input,
                );
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            })
        })
        .collect();
    let mut next_n = [0u64; PUBLISHERS];
    for expected_id in 1..=(PUBLISHERS * EACH) as u64 {
        let event = within(sub.recv()).await.unwrap().unwrap();
        assert_eq!(event.id, expected_id, "ids are gapless and in order");
        let p = event.data["p"].as_u64().unwrap() as usize;
        assert_eq!(event.data["n"], next_n[p], "each publisher's order is kept");
        next_n[p] += 1;
    }
    for child in children {
        child.join().unwrap();
    }
    assert_eq!(sub.lost(), 0);
    let history = within(client.history(&EventFilter::new(), None))
        .await
        .unwrap();
    let ids: Vec<u64> = history.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (201..=1200).collect::<Vec<u64>>(),
        "history keeps the last 1000 in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_restart_resumes_with_no_gap_and_no_duplicate() {
    let dir = TempDir::new();
    let bus = EventBus::default();
    let (stop, task) = host(&bus, &dir.socket());
    let mut sub = ReconnectingSubscriber::new(dir.socket(), EventFilter::new(), Replay::All);
    for i in 1..=5 {
        bus.publish(Event::new("step", json!(i)));
    }
    for id in 1..=5 {
        match within(sub.next()).await {
            SubscriptionItem::Event(e) => assert_eq!(e.id, id),
            other => panic!("expected event {id}, got {other:?}"),
        }
    }
    let handle = sub.handle();
    assert!(handle.is_connected());
    let stats = within(handle.stats()).await.unwrap();
    assert_eq!((stats.bus.published, stats.bus.subscribers), (5, 1));
    stop.send(()).unwrap();
    task.await.unwrap();
    // system.shutdown (id 6) is delivered before the connection closes.
    match within(sub.next()).await {
        SubscriptionItem::Event(e) => assert_eq!(e.event_type, "system.shutdown"),
        other => panic!("expected system.shutdown, got {other:?}"),
    }
    assert!(matches!(
        within(sub.next()).await,
        SubscriptionItem::Disconnected { .. }
    ));
    assert!(!handle.is_connected());
    assert_eq!(within(handle.stats()).await, None);
    for i in 7..=10 {
        bus.publish(Event::new("step", json!(i)));
    }
    let (_stop2, _task2) = host(&bus, &dir.socket());
    let mut ids = Vec::new();
    loop {
        match within(sub.next()).await {
            SubscriptionItem::Disconnected { .. } => {}
            SubscriptionItem::Reconnected { new_bus } => {
                assert!(!new_bus);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    bus.publish(Event::new("step", json!(11)));
    while ids.len() < 5 {
        match within(sub.next()).await {
            SubscriptionItem::Event(e) => ids.push(e.id),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        ids,
        [7, 8, 9, 10, 11],
        "resumed after the last id seen: no gap, no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_reports_a_gap_when_history_moved_on() {
    let dir = TempDir::new();
    let bus = EventBus::new(EventBusConfig {
        history_size: 4,
        ..Default::default()
    });
    let (stop, task) = host(&bus, &dir.socket());
    let mut sub = ReconnectingSubscriber::new(
        dir.socket(),
        EventFilter::parse("step").unwrap(),
        Replay::None,
    );
    // Attach first (the first call connects, then waits for an event).
    let publisher = bus.clone();
    let first = tokio::spawn(async move {
        let item = within(sub.next()).await;
        (sub, item)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    publisher.publish(Event::new("step", json!(1)));
    let (mut sub, item) = first.await.unwrap();
    assert!(
        matches!(item, SubscriptionItem::Event(ref e) if e.id == 1),
        "{item:?}"
    );
    stop.send(()).unwrap();
    task.await.unwrap();
    loop {
        if let SubscriptionItem::Disconnected { .. } = within(sub.next()).await {
            break;
        }
    }
    for i in 0..10 {
        bus.publish(Event::new("step", json!(i)));
    }
    let (_stop2, _task2) = host(&bus, &dir.socket());
    loop {
        match within(sub.next()).await {
            SubscriptionItem::Disconnected { .. } => {}
            SubscriptionItem::Reconnected { new_bus } => {
                assert!(!new_bus);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Ids 2..=8 are gone from history; the filter is not everything, so how many of them matched
    // cannot be said, but where they were can.
    match within(sub.next()).await {
        SubscriptionItem::Lost(loss) => {
            assert_eq!(
                (loss.first_id, loss.last_id, loss.reason),
                (Some(2), Some(8), LossReason::HistoryEvicted)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    match within(sub.next()).await {
        SubscriptionItem::Event(e) => assert_eq!(e.id, 9),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_process_is_a_new_bus_and_is_followed() {
    let dir = TempDir::new();
    let server = ServerProcess::start(&dir.socket(), &[]);
    let mut sub = ReconnectingSubscriber::new(
        dir.socket(),
        EventFilter::parse("step").unwrap(),
        Replay::All,
    );
    let client = within(Client::connect(dir.socket())).await.unwrap();
    within(client.publish(&Event::new("step", json!(1))))
        .await
        .unwrap();
    assert!(matches!(within(sub.next()).await, SubscriptionItem::Event(ref e) if e.id == 1));
    drop(client);
    assert!(server.terminate().success());
    assert!(matches!(
        within(sub.next()).await,
        SubscriptionItem::Disconnected { .. }
    ));
    let _server2 = ServerProcess::start(&dir.socket(), &[]);
    let client = within(Client::connect(dir.socket())).await.unwrap();
    within(client.publish(&Event::new("step", json!(2))))
        .await
        .unwrap();
    loop {
        match within(sub.next()).await {
            SubscriptionItem::Disconnected { .. } => {}
            SubscriptionItem::Reconnected { new_bus } => {
                assert!(new_bus);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The old server was stopped with SIGTERM: it said bye after sending everything, so nothing
    // of the old bus is lost.
    match within(sub.next()).await {
        SubscriptionItem::Event(e) => {
            assert_eq!(
                (e.id, &e.data),
                (1, &json!(2)),
                "the new bus's events, ids starting over"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_serialized_once_for_eight_subscribers() {
    let dir = TempDir::new();
    let bus = EventBus::new(EventBusConfig {
        subscriber_buffer: 4096,
        ..Default::default()
    });
    let (_stop, _task) = host(&bus, &dir.socket());
    let mut subs = Vec::new();
    for _ in 0..8 {
        let client = within(Client::connect(dir.socket())).await.unwrap();
        subs.push(
            within(client.subscribe(&EventFilter::new(), Replay::None))
                .await
                .unwrap(),
        );
    }
    const N: u64 = 2000;
    for i in 0..N {
        bus.publish(Event::with_resource(
            "render.frame",
            "job",
            json!({ "frame": i }),
        ));
    }
    for sub in &mut subs {
        for id in 1..=N {
            assert_eq!(within(sub.recv()).await.unwrap().unwrap().id, id);
        }
        assert_eq!(sub.lost(), 0);
    }
    let stats = within(subs[0].client().stats()).await.unwrap();
    assert_eq!(
        stats.encoded, N,
        "8 subscribers, each event serialized once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_clients_and_removes_only_its_own_socket() {
    let dir = TempDir::new();
    let bus = EventBus::default();
    let (stop, task) = host(&bus, &dir.socket());
    let client = within(Client::connect(dir.socket())).await.unwrap();
    let mut sub = within(client.subscribe(&EventFilter::new(), Replay::None))
        .await
        .unwrap();
    stop.send(()).unwrap();
    task.await.unwrap();
    let last = within(sub.recv()).await.unwrap().unwrap();
    assert_eq!(last.event_type, "system.shutdown");
    assert!(
        within(sub.recv()).await.is_none(),
        "the connection closes after the shutdown event"
    );
    assert!(!dir.socket().exists(), "the socket file is removed");

    // A server whose socket file was replaced by another's leaves the other's alone.
    let first = EventBus::default();
    let (stop1, task1) = host(&first, &dir.socket());
    std::fs::remove_file(dir.socket()).unwrap();
    let second = EventBus::default();
    let (_stop2, _task2) = host(&second, &dir.socket());
    stop1.send(()).unwrap();
    task1.await.unwrap();
    assert!(
        dir.socket().exists(),
        "the first server removed a socket that was not its own"
    );
    let client = within(Client::connect(dir.socket())).await.unwrap();
    within(client.ping()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_and_directory_permissions() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = TempDir::new();
    let socket = dir.0.join("nested").join("run").join("bus.sock");
    let bus = EventBus::default();
    let (_stop, _task) = host(&bus, &socket);
    let parent = std::fs::metadata(socket.parent().unwrap()).unwrap();
    assert_eq!(parent.permissions().mode() & 0o777, 0o700);
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_is_replaced_and_live_one_refused() {
    let dir = TempDir::new();
    {
        let _listener = std::os::unix::net::UnixListener::bind(dir.socket()).unwrap();
    }
    assert!(dir.socket().exists(), "a stale socket file is left behind");
    let server = ServerProcess::start(&dir.socket(), &[]);
    let second = common::run(&["--socket", dir.socket().to_str().unwrap(), "serve"], "");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already serving"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let client = within(Client::connect(dir.socket())).await.unwrap();
    within(client.ping())
        .await
        .expect("the first server keeps serving");

    let blocker = dir.0.join("not-a-socket");
    std::fs::write(&blocker, b"data").unwrap();
    let refused = common::run(&["--socket", blocker.to_str().unwrap(), "serve"], "");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not a socket"));
    assert_eq!(std::fs::read(&blocker).unwrap(), b"data");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_subscription_caps_answer_with_errors() {
    let dir = TempDir::new();
    let bus = EventBus::default();
    let mut config = ServerConfig::new(dir.socket());
    config.max_connections = 3;
    config.max_subscriptions = 2;
    let (_stop, _task) = host_with(&bus, config);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(within(Client::connect(dir.socket())).await.unwrap());
    }
    let over = within(Client::connect(dir.socket())).await.unwrap_err();
    assert!(over.to_string().contains("too_many_connections"), "{over}");
    let _a = within(clients[0].subscribe(&EventFilter::new(), Replay::None))
        .await
        .unwrap();
    let _b = within(clients[0].subscribe(&EventFilter::new(), Replay::None))
        .await
        .unwrap();
    let third = within(clients[0].subscribe(&EventFilter::new(), Replay::None))
        .await
        .unwrap_err();
    assert!(
        third.to_string().contains("too_many_subscriptions"),
        "{third}"
    );
    for client in &clients {
        within(client.ping())
            .await
            .expect("the others keep being answered");
    }
    drop(clients.pop());
    // The slot freed by a closed connection is usable again.
    let again = tokio::time::timeout(LONG, async {
        loop {
            if let Ok(client) = Client::connect(dir.socket()).await {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    within(again.ping()).await.unwrap();
}

/// A peer speaking the protocol by hand (as a server in another language would): an event frame
/// whose event does not parse is skipped and counted, frames in another key order still arrive, and
/// lag reports count as dropped; the order of what does arrive is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_server_unreadable_and_reordered_event_frames() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let dir = TempDir::new();
    let listener = tokio::net::UnixListener::bind(dir.socket()).unwrap();
    let peer = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = tokio::io::BufReader::new(read).lines();
        write
            .write_all(
                b"{\"type\":\"hello\",\"protocol\":\"ipckit\",\"version\":2,\"server\":\"by hand\",\
                  \"instance\":\"x\",\"last_id\":0,\"max_frame\":1048576}\n",
            )
            .await
            .unwrap();
        let request: serde_json::Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(request["type"], "subscribe");
        let id = request["id"].as_u64().unwrap();
        let event = |id: u64| {
            format!(
                r#"{{"id":{id},"timestamp":1700000000.5,"event_type":"task.started","resource_id":"r","data":{{}}}}"#
            )
        };
        let script = [
            format!(r#"{{"type":"subscribed","id":{id},"sub":1,"gap":null}}"#),
            format!(r#"{{"type":"event","sub":1,"event":{}}}"#, event(1)),
            r#"{"type":"event","sub":1,"event":{"id":"two"}}"#.to_string(),
            format!(r#"{{"sub":1,"event":{},"type":"event"}}"#, event(3)),
            r#"{"type":"lost","sub":1,"count":5,"first_id":4,"last_id":8,"reason":"history_evicted"}"#
                .to_string(),
            format!(r#"{{"type":"event","sub":1,"event":{}}}"#, event(9)),
        ];
        for line in script {
            write.write_all(line.as_bytes()).await.unwrap();
            write.write_all(b"\n").await.unwrap();
        }
        // Hold the connection open until the client goes.
        while let Ok(Some(_)) = lines.next_line().await {}
    });
    let client = within(Client::connect(dir.socket())).await.unwrap();
    let mut sub = within(client.subscribe(&EventFilter::new(), Replay::None))
        .await
        .unwrap();
    // The first event owned, the rest read in place (the reordered frame's event among them).
    let mut ids = vec![within(sub.recv()).await.unwrap().unwrap().id];
    let mut losses = Vec::new();
    while ids.len() < 3 {
        within(sub.recv_refs(|item| {
            match item {
                RemoteRef::Event(event) => {
                    assert_eq!(
                        (&*event.event_type, event.data.get()),
                        ("task.started", "{}")
                    );
                    ids.push(event.id);
                }
                RemoteRef::Lost(loss) => losses.push((ids.len(), loss)),
            }
            ControlFlow::Continue(())
        }))
        .await
        .unwrap();
    }
    assert_eq!(ids, [1, 3, 9]);
    assert_eq!(
        losses,
        [(
            2,
            Loss {
                count: Some(5),
                first_id: Some(4),
                last_id: Some(8),
                reason: LossReason::HistoryEvicted
            }
        )],
        "the loss is handed over in place, between #3 and #9"
    );
    assert_eq!(
        sub.unreadable(),
        1,
        "the event that does not parse is counted"
    );
    assert_eq!(sub.lost(), 5, "the loss is counted");
    drop(sub);
    drop(client);
    within(peer).await.unwrap();
}

/// Events read in place are the events an owned receive gives, in the same order; breaking leaves
/// the rest for the next receive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_read_in_place_are_the_owned_events() {
    let dir = TempDir::new();
    // Room for every event in each subscription's queue: this test is not about slow readers.
    let bus = EventBus::new(EventBusConfig {
        subscriber_buffer: 4096,
        ..Default::default()
    });
    let (_stop, _task) = host(&bus, &dir.socket());
    let client = within(Client::connect(dir.socket())).await.unwrap();
    let mut owned = within(client.subscribe(&EventFilter::new(), Replay::None))
        .await
        .unwrap();
    let mut in_place = within(client.subscribe(&"res:job-*".parse().unwrap(), Replay::None))
        .await
        .unwrap();
    for i in 0..1000 {
        let mut event = Event::with_resource(
            "log.stdout",
            &format!("job-{}", i % 7),
            json!({ "line": format!("frame {i} \"quoted\" \u{e9}\n"), "n": i }),
        );
        if i % 100 == 0 {
            event.resource_id = None;
        }
        bus.publish(event);
    }
    let expected: Vec<Event> = {
        let mut all = Vec::new();
        while all.len() < 1000 {
            all.push((*within(owned.recv()).await.unwrap().unwrap()).clone());
        }
        all.into_iter()
            .filter(|e| e.resource_id.is_some())
            .collect()
    };
    let mut got = Vec::new();
    // Take three, then break: the fourth is where the next receive starts.
    while got.len() < 3 {
        within(in_place.recv_refs(|item| {
            let RemoteRef::Event(event) = item else {
                panic!("no loss expected")
            };
            got.push(event.to_event().unwrap());
            if got.len() == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }))
        .await
        .unwrap();
    }
    assert_eq!(got.len(), 3, "nothing is handed over after a break");
    while got.len() < expected.len() {
        let seen = within(in_place.recv_refs(|item| {
            let RemoteRef::Event(event) = item else {
                panic!("no loss expected")
            };
            assert_eq!(
                event.json(),
                serde_json::to_string(&event.to_event().unwrap()).unwrap()
            );
            got.push(event.to_event().unwrap());
            ControlFlow::Continue(())
        }))
        .await
        .unwrap();
        assert!(seen >= 1);
    }
    assert_eq!(got, expected);
    assert_eq!((in_place.lost(), in_place.unreadable()), (0, 0));
}
