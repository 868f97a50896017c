//! Ids are gapless and strictly increasing per bus, and every subscriber sees history's order.

mod bus_support;
use bus_support::bus_sized;

use ipckit::{Event, EventBus, EventBusConfig, EventFilter};
use serde_json::json;
use std::thread;

/// Starts `threads` publishers of `per_thread` events each (resource `p{t}`, data `0..per_thread` in
/// order); each thread returns the ids `publish` gave it.
fn spawn_publishers(
    bus: &EventBus,
    threads: usize,
    per_thread: u64,
) -> Vec<thread::JoinHandle<Vec<u64>>> {
    (0..threads)
        .map(|t| {
            let p = bus.publisher();
            thread::spawn(move || {
                (0..per_thread)
                    .map(|i| p.publish(Event::with_resource("n", &format!("p{t}"), json!(i))))
                    .collect()
            })
        })
        .collect()
}

#[test]
fn four_publishers_every_subscriber_sees_history_order() {
    for _run in 0..20 {
        let bus = bus_sized(10_000, 10_000);
        let subs: Vec<_> = (0..3).map(|_| bus.subscribe(EventFilter::new())).collect();
        let threads = spawn_publishers(&bus, 4, 500);
        let mut returned: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        returned.sort_unstable();
        assert_eq!(
            returned,
            (1..=2000).collect::<Vec<_>>(),
            "publish returns each id once"
        );
        let history: Vec<u64> = bus
            .history(&EventFilter::new())
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(history, (1..=2000).collect::<Vec<_>>());
        for sub in &subs {
            let seen: Vec<u64> = sub.try_iter().map(|e| e.id).collect();
            assert_eq!(seen, history);
        }
    }
}

#[test]
fn each_publishers_own_events_keep_their_order() {
    let bus = EventBus::new(EventBusConfig {
        history_size: 10_000,
        ..Default::default()
    });
    let threads = spawn_publishers(&bus, 4, 500);
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..4 {
        let seq: Vec<u64> = bus
            .history(&EventFilter::new().resource(&format!("p{t}")))
            .iter()
            .map(|e| e.data.as_u64().unwrap())
            .collect();
        assert_eq!(seq, (0..500).collect::<Vec<_>>());
    }
}

#[test]
fn a_reader_stopping_try_iter_early_loses_nothing_while_others_publish() {
    const PER_THREAD: u64 = 20_000;
    let bus = bus_sized(16, 4 * PER_THREAD as usize);
    let sub = bus.subscribe(EventFilter::new());
    let publishers = spawn_publishers(&bus, 2, PER_THREAD);
    // Stops each iterator after 0..=6 events, so events it took ahead keep going back to the queue
    // while both publishers append behind them.
    let mut seen: Vec<u64> = Vec::new();
    let mut stop_after = 0usize;
    while (seen.len() as u64) < 2 * PER_THREAD {
        stop_after = (stop_after + 5) % 7;
        seen.extend(sub.try_iter().take(stop_after).map(|e| e.id));
    }
    for p in publishers {
        p.join().unwrap();
    }
    assert_eq!(seen, (1..=2 * PER_THREAD).collect::<Vec<_>>());
    assert!(sub.is_empty());
    assert_eq!(sub.dropped(), 0);
    assert_eq!(sub.delivered(), 2 * PER_THREAD);
}
