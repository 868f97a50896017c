//! History beyond the hot part is packed; every query and replay must answer exactly as if it were not.

use ipckit::{Event, EventBus, EventBusConfig, EventFilter, Replay};
use serde_json::json;
use std::time::{Duration, UNIX_EPOCH};

fn publish_mix(bus: &EventBus, n: u64) {
    for i in 0..n {
        let mut e = match i % 4 {
            0 => Event::with_resource(
                "task.progress",
                &format!("job-{}", i % 7),
                json!({"frame": i, "note": "Disk slow"}),
            ),
            1 => Event::stderr(&format!("job-{}", i % 7), &format!("line {i}")),
            2 => Event::new(
                "system.tick",
                json!([i, 1.5, null, true, {"deep": {"x": "é"}}]),
            ),
            _ => Event::mcp_progress("upload", i as f64, None, Some("uploading")),
        };
        e.timestamp = UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_000 + i * 1000);
        bus.publish(e);
    }
}

fn pair(history: usize) -> (EventBus, EventBus) {
    let packed = EventBus::new(EventBusConfig {
        history_size: history,
        hot_history: 256,
        ..Default::default()
    });
    let plain = EventBus::new(EventBusConfig {
        history_size: history,
        hot_history: usize::MAX,
        ..Default::default()
    });
    (packed, plain)
}

#[test]
fn packed_history_answers_like_plain_history() {
    let (packed, plain) = pair(3_000);
    publish_mix(&packed, 5_000);
    publish_mix(&plain, 5_000);
    let stats = packed.stats();
    assert_eq!(stats.history_len, 3_000);
    assert!(
        stats.history_packed >= 2_000,
        "events past the hot part are packed: {stats:?}"
    );
    assert_eq!(plain.stats().history_packed, 0);

    for expr in [
        "",
        "task.*",
        "res:job-3",
        "res:job-? !log.*",
        "text:\"disk slow\"",
        "text:é",
        "since:id:2500 until:id:2600",
        "type:system.tick",
        "mcp.*",
        "until:@1700000002.500000",
    ] {
        let filter = EventFilter::parse(expr).unwrap();
        let a = packed.history(&filter);
        let b = plain.history(&filter);
        assert_eq!(a, b, "history({expr:?})");
        let a: Vec<Event> = packed
            .history_arc(&filter)
            .into_iter()
            .map(|e| (*e).clone())
            .collect();
        assert_eq!(a, b, "history_arc({expr:?})");
        for replay in [
            Replay::All,
            Replay::Last(10),
            Replay::FromId(2_100),
            Replay::FromId(4_900),
        ] {
            let a: Vec<Event> = packed
                .subscribe_with_replay(filter.clone(), replay)
                .try_iter()
                .collect();
            let b: Vec<Event> = plain
                .subscribe_with_replay(filter.clone(), replay)
                .try_iter()
                .collect();
            assert_eq!(a, b, "replay {replay:?} of {expr:?}");
        }
    }
}

#[test]
fn packing_survives_eviction_and_clearing() {
    let (packed, _) = pair(1_000);
    publish_mix(&packed, 20_000);
    let ids: Vec<u64> = packed
        .history(&EventFilter::new())
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, (19_001..=20_000).collect::<Vec<_>>());
    packed.clear_history();
    assert_eq!(packed.stats().history_packed, 0);
    publish_mix(&packed, 2_000);
    let ids: Vec<u64> = packed
        .history(&EventFilter::new())
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, (21_001..=22_000).collect::<Vec<_>>());
    assert!(packed.stats().history_packed > 0);
}

#[test]
fn events_published_with_no_subscriber_are_shared_once_asked_for() {
    let bus = EventBus::default();
    bus.publish(Event::new("a", json!({"k": 1})));
    bus.publish(Event::new("b", json!({"k": 2})));
    let first = bus.history_arc(&EventFilter::new());
    let again = bus.history_arc(&EventFilter::new());
    assert!(
        std::sync::Arc::ptr_eq(&first[0], &again[0]),
        "the slot became shared in place, once"
    );
    let replayed = bus.subscribe_with_replay(EventFilter::new().event_type("b"), Replay::All);
    let got = replayed.try_recv_arc().unwrap();
    assert!(std::sync::Arc::ptr_eq(&got, &again[1]));
    assert_eq!(bus.history(&EventFilter::new())[0].data, json!({"k": 1}));
}
