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

/// Incompressible text of `len` letters (a xorshift generator), so byte figures are not flattered.
fn noise(seed: u64, len: usize) -> String {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

#[test]
fn history_bytes_bounds_history_whichever_bound_comes_first() {
    let bus = EventBus::new(EventBusConfig {
        history_size: 100_000,
        history_bytes: 1 << 20,
        ..Default::default()
    });
    for i in 0..5_000u64 {
        bus.publish(Event::with_resource(
            "log.stdout",
            "job-1",
            json!({ "line": noise(i, 1_000) }),
        ));
    }
    let stats = bus.stats();
    assert!(stats.history_bytes <= 1 << 20, "{stats:?}");
    assert!(
        stats.history_len > 100 && stats.history_len < 5_000,
        "{stats:?}"
    );
    let ids: Vec<u64> = bus
        .history(&EventFilter::new())
        .iter()
        .map(|e| e.id)
        .collect();
    let first = 5_001 - ids.len() as u64;
    assert_eq!(
        ids,
        (first..=5_000).collect::<Vec<_>>(),
        "the newest, in order"
    );
    assert_eq!(stats.oldest_id, Some(first));
    let replay = bus.subscribe_with_replay(EventFilter::new(), Replay::FromId(1));
    let gap = replay.replay_gap().expect("older events are gone");
    assert_eq!((gap.requested, gap.oldest_held), (1, first));
    assert_eq!(replay.try_iter().count(), ids.len());

    // With room for them all, the count bound is the one that holds.
    let roomy = EventBus::new(EventBusConfig {
        history_size: 3_000,
        ..Default::default()
    });
    for i in 0..5_000u64 {
        roomy.publish(Event::new("log.stdout", json!({ "line": noise(i, 100) })));
    }
    assert_eq!(roomy.stats().history_len, 3_000);
}

#[test]
fn an_event_larger_than_history_bytes_is_delivered_but_not_kept() {
    let bus = EventBus::new(EventBusConfig {
        history_bytes: 256 << 10,
        ..Default::default()
    });
    let sub = bus.subscribe(EventFilter::new());
    bus.publish(Event::new("small", json!(1)));
    let big = noise(7, 1 << 20);
    bus.publish(Event::new("big", json!({ "blob": big })));
    bus.publish(Event::new("small", json!(3)));
    let got: Vec<Event> = sub.try_iter().collect();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].data["blob"], big, "delivered whole");
    let kept: Vec<String> = bus
        .history(&EventFilter::new())
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(!kept.contains(&"big".to_owned()), "{kept:?}");
    assert_eq!(kept.last().map(String::as_str), Some("small"));
    assert!(bus.stats().history_bytes <= 256 << 10);
}

#[test]
fn stats_report_the_bytes_history_holds() {
    let bus = EventBus::default();
    let empty = bus.stats().history_bytes;
    publish_mix(&bus, 1_000);
    let full = bus.stats().history_bytes;
    assert!(full > empty + 1_000 * 28, "{empty} -> {full}");
    bus.clear_history();
    assert!(bus.stats().history_bytes < full / 2);
    assert_eq!(bus.stats().history_len, 0);
}
