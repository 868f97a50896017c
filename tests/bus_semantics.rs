//! Ids, globs, history, unsubscribe-on-drop, closing, and no panic on odd input.

mod bus_support;
use bus_support::bus_sized;

use ipckit::{event_types, Event, EventBus, EventBusConfig, EventFilter, McpProgressPayload};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn ids(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.id).collect()
}

#[test]
fn ids_start_at_one_per_bus_and_publish_returns_them() {
    let a = EventBus::default();
    let b = EventBus::default();
    let event = Event::new("x", json!(null));
    assert_eq!(a.publish(event.clone()), 1);
    assert_eq!(
        a.publish(event.clone()),
        2,
        "re-publishing a clone gets a new id"
    );
    assert_eq!(b.publish(event), 1, "each bus counts from 1");
    assert_eq!(ids(&a.history(&EventFilter::new())), vec![1, 2]);
    assert_eq!(a.last_id(), 2);
}

#[test]
fn subscribers_see_the_stamped_id() {
    let bus = EventBus::default();
    let sub = bus.subscribe(EventFilter::new());
    let mut event = Event::new("x", json!(null));
    event.id = 999;
    let id = bus.publish(event);
    assert_eq!(sub.try_recv().map(|e| e.id), Some(id));
}

#[test]
fn type_globs_are_real_globs() {
    let bus = EventBus::default();
    let sub = bus.subscribe(EventFilter::new().event_type("task.*"));
    for t in ["task.started", "tasks.x", "task", "task.a.b", "log.task.x"] {
        bus.publish(Event::new(t, json!(null)));
    }
    let got: Vec<String> = sub.try_iter().map(|e| e.event_type).collect();
    assert_eq!(got, ["task.started", "task.a.b"]);
}

#[test]
fn resource_globs_and_missing_resources() {
    let bus = EventBus::default();
    let sub = bus.subscribe(EventFilter::new().resource("render-*"));
    bus.publish(Event::with_resource("a", "render-1", json!(null)));
    bus.publish(Event::with_resource("a", "upload-1", json!(null)));
    bus.publish(Event::new("a", json!(null)));
    bus.publish(Event::with_resource("a", "render-22", json!(null)));
    let got: Vec<_> = sub.try_iter().filter_map(|e| e.resource_id).collect();
    assert_eq!(got, ["render-1", "render-22"]);
}

#[test]
fn exact_and_glob_subscribers_both_receive() {
    // Exact filters go through the index, globs through the list: both must see their events.
    let bus = EventBus::default();
    let exact = bus.subscribe(EventFilter::new().event_type("task.started"));
    let by_resource = bus.subscribe(EventFilter::new().resource("job-1"));
    let both = bus.subscribe(
        EventFilter::new()
            .event_type("task.started")
            .resource("job-2"),
    );
    let glob = bus.subscribe(EventFilter::new().event_type("*.started"));
    bus.publish(Event::with_resource("task.started", "job-1", json!(null)));
    bus.publish(Event::with_resource("task.started", "job-2", json!(null)));
    bus.publish(Event::with_resource("task.stopped", "job-1", json!(null)));
    assert_eq!(ids(&exact.try_iter().collect::<Vec<_>>()), [1, 2]);
    assert_eq!(ids(&by_resource.try_iter().collect::<Vec<_>>()), [1, 3]);
    assert_eq!(ids(&both.try_iter().collect::<Vec<_>>()), [2]);
    assert_eq!(ids(&glob.try_iter().collect::<Vec<_>>()), [1, 2]);
}

#[test]
fn history_is_bounded_filtered_and_clearable() {
    let bus = EventBus::new(EventBusConfig {
        history_size: 3,
        ..Default::default()
    });
    for i in 0..5 {
        bus.publish(Event::with_resource("log.info", &format!("r{i}"), json!(i)));
    }
    assert_eq!(ids(&bus.history(&EventFilter::new())), [3, 4, 5]);
    assert_eq!(ids(&bus.history(&EventFilter::new().resource("r4"))), [5]);
    assert_eq!(ids(&bus.history(&EventFilter::new().since_id(4))), [4, 5]);
    bus.clear_history();
    assert!(bus.history(&EventFilter::new()).is_empty());
    assert_eq!(
        bus.publish(Event::new("x", json!(null))),
        6,
        "ids go on after clearing"
    );
}

#[test]
fn zero_sizes_have_their_documented_meaning() {
    let bus = bus_sized(0, 0);
    let sub = bus.subscribe(EventFilter::new());
    bus.publish(Event::new("a", json!(1)));
    bus.publish(Event::new("a", json!(2)));
    assert!(
        bus.history(&EventFilter::new()).is_empty(),
        "history 0 keeps nothing"
    );
    // Buffer 0 is taken as 1: the subscriber still receives, keeping the newest under DropOldest.
    assert_eq!(sub.try_recv().map(|e| e.id), Some(2));
    assert_eq!(sub.dropped(), 1);
}

#[test]
fn dropping_a_subscriber_unsubscribes_it() {
    let bus = EventBus::default();
    let keep = bus.subscribe(EventFilter::new());
    for _ in 0..10_000 {
        let sub = bus.subscribe(EventFilter::new().event_type("task.*"));
        drop(sub);
    }
    let glob = bus.subscribe(EventFilter::new().resource("x*"));
    drop(glob);
    assert_eq!(bus.stats().subscribers, 1);
    assert_eq!(bus.subscribers().len(), 1);
    bus.publish(Event::new("task.x", json!(null)));
    assert_eq!(keep.try_recv().map(|e| e.id), Some(1));
}

#[test]
fn recv_ends_when_the_bus_is_gone() {
    let bus = EventBus::default();
    let sub = bus.subscribe(EventFilter::new());
    bus.publish(Event::new("last", json!(null)));
    let publisher = bus.publisher();
    drop(bus);
    assert_eq!(sub.recv().map(|e| e.event_type).as_deref(), Some("last"));
    assert_eq!(
        sub.recv_timeout(Duration::from_millis(10)).unwrap_err(),
        ipckit::RecvTimeoutError::Timeout,
        "a publisher still holds the bus"
    );
    publisher.publish(Event::new("after", json!(null)));
    drop(publisher);
    assert_eq!(
        sub.recv().map(|e| e.event_type).as_deref(),
        Some("after"),
        "queued events outlive the bus"
    );
    assert!(sub.recv().is_none());
    assert!(sub
        .recv_timeout(Duration::from_secs(5))
        .unwrap_err()
        .is_closed());
}

#[test]
fn a_blocked_reader_wakes_when_the_bus_goes() {
    let bus = EventBus::default();
    let sub = bus.subscribe(EventFilter::new());
    let reader = std::thread::spawn(move || sub.recv());
    std::thread::sleep(Duration::from_millis(20));
    drop(bus);
    assert!(reader.join().unwrap().is_none());
}

#[test]
fn stats_count_published_delivered_and_dropped() {
    let bus = EventBus::new(EventBusConfig {
        subscriber_buffer: 2,
        ..Default::default()
    });
    let sub = bus.subscribe(EventFilter::new());
    for _ in 0..5 {
        bus.publish(Event::new("a", json!(null)));
    }
    assert_eq!(sub.try_iter().count(), 2);
    let stats = bus.stats();
    assert_eq!((stats.published, stats.delivered, stats.dropped), (5, 2, 3));
    assert_eq!((stats.history_len, stats.oldest_id), (5, Some(1)));
    drop(sub);
    let stats = bus.stats();
    assert_eq!(
        (stats.subscribers, stats.delivered, stats.dropped),
        (0, 2, 3),
        "gone subscribers still count"
    );
}

#[test]
fn no_panic_on_odd_input() {
    let bus = EventBus::default();
    let sub = bus.subscribe(EventFilter::new().event_type("*").since(UNIX_EPOCH));
    let publisher = bus.publisher();
    publisher.progress("job", u64::MAX, 1, "overflow");
    publisher.progress("job", 1, 0, "no total");
    publisher.mcp_progress("t", f64::NAN, Some(f64::NEG_INFINITY), None);
    publisher.mcp_progress("t", f64::INFINITY, Some(f64::NAN), Some(""));
    let mut early = Event::new("old", json!(null));
    early.timestamp = UNIX_EPOCH - Duration::from_secs(1);
    bus.publish(early);
    let mut late = Event::new("late", json!({"deep": [[[[1]]]]}));
    late.timestamp = SystemTime::now() + Duration::from_secs(1_000_000_000);
    bus.publish(late);
    let got: Vec<Event> = sub.try_iter().collect();
    assert_eq!(
        got.len(),
        5,
        "the pre-epoch event is outside since(UNIX_EPOCH)"
    );
    for event in bus.history(&EventFilter::new()) {
        let json = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back.event_type, event.event_type);
        assert_eq!(back.data, event.data, "{json}");
        if event.event_type == event_types::MCP_PROGRESS {
            let payload: McpProgressPayload = serde_json::from_value(event.data).unwrap();
            assert!(payload.progress.is_finite());
        }
    }
}

#[test]
fn helpers_publish_the_reference_shapes() {
    let bus = EventBus::default();
    let sub = bus.subscribe(EventFilter::new());
    let p = bus.publisher();
    p.task_started("t", json!({"a": 1}));
    p.task_completed("t", json!(5));
    p.task_failed("t", "boom");
    p.task_cancelled("t");
    p.log("t", "error", "bad");
    let got: Vec<(String, serde_json::Value)> =
        sub.try_iter().map(|e| (e.event_type, e.data)).collect();
    assert_eq!(
        got,
        [
            ("task.started".into(), json!({"a": 1})),
            ("task.completed".into(), json!({"result": 5})),
            ("task.failed".into(), json!({"error": "boom"})),
            ("task.cancelled".into(), json!({})),
            (
                "log.error".into(),
                json!({"level": "error", "message": "bad"})
            ),
        ]
    );
}

#[test]
fn handles_are_send_and_sync() {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}
    assert_send::<EventBus>();
    assert_sync::<EventBus>();
    assert_send::<ipckit::EventPublisher>();
    assert_sync::<ipckit::EventPublisher>();
    assert_send::<ipckit::EventSubscriber>();
    assert_sync::<ipckit::EventSubscriber>();
    assert_send::<ipckit::EventStream>();
}

#[test]
fn filter_expressions_subscribe() {
    let bus = EventBus::default();
    let sub = bus.subscribe("task.* !task.progress res:render-*".parse().unwrap());
    let p = bus.publisher();
    p.task_started("render-1", json!(null));
    p.progress("render-1", 1, 2, "");
    p.task_started("upload", json!(null));
    assert_eq!(ids(&sub.try_iter().collect::<Vec<_>>()), [1]);
}

#[test]
fn a_subscriber_to_several_exact_types_leaves_every_bucket_when_dropped() {
    let bus = EventBus::default();
    let sub = bus.subscribe(EventFilter::new().event_type("a").event_type("b"));
    drop(sub);
    assert_eq!(bus.stats().subscribers, 0);
    let other = bus.subscribe(EventFilter::new().event_type("b"));
    bus.publish(Event::new("b", json!(null)));
    assert_eq!(other.try_iter().count(), 1);
    assert_eq!(
        bus.subscribers().len(),
        1,
        "no stale entry left in the `b` bucket"
    );
}

#[test]
fn try_iter_stopped_early_leaves_the_rest_queued_in_order() {
    let bus = bus_sized(10, 256);
    let sub = bus.subscribe(EventFilter::new());
    for i in 0..100 {
        bus.publish(Event::new("x", json!(i)));
    }
    // The iterator has taken events ahead (it reads in batches); stopping early must not lose them.
    let first: Vec<u64> = sub.try_iter().take(5).map(|e| e.id).collect();
    assert_eq!(first, [1, 2, 3, 4, 5]);
    assert_eq!(sub.len(), 95);
    assert_eq!(sub.delivered(), 5);
    assert_eq!(sub.try_recv().map(|e| e.id), Some(6));
    bus.publish(Event::new("x", json!(100)));
    let rest: Vec<u64> = sub.try_iter().map(|e| e.id).collect();
    assert_eq!(rest, (7..=101).collect::<Vec<_>>());
    assert_eq!(sub.delivered(), 101);
    assert_eq!(sub.dropped(), 0);
    assert!(sub.try_iter().next().is_none());
}

#[test]
fn try_iter_given_back_events_come_before_replayed_ones_still_queued() {
    let bus = EventBus::default();
    for i in 0..20 {
        bus.publish(Event::new("x", json!(i)));
    }
    let sub = bus.subscribe_with_replay(EventFilter::new(), ipckit::Replay::All);
    bus.publish(Event::new("x", json!(20)));
    let mut it = sub.try_iter();
    assert_eq!(it.next().map(|e| e.id), Some(1));
    assert_eq!(it.next().map(|e| e.id), Some(2));
    drop(it);
    let rest: Vec<u64> = sub.try_iter().map(|e| e.id).collect();
    assert_eq!(rest, (3..=21).collect::<Vec<_>>());
}
