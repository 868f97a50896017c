//! Ids are gapless and strictly increasing per bus, and every subscriber sees history's order.

use ipckit::{Event, EventBus, EventBusConfig, EventFilter};
use serde_json::json;
use std::thread;

#[test]
fn four_publishers_every_subscriber_sees_history_order() {
    for _run in 0..20 {
        let bus = EventBus::new(EventBusConfig {
            history_size: 10_000,
            subscriber_buffer: 10_000,
            ..Default::default()
        });
        let subs: Vec<_> = (0..3).map(|_| bus.subscribe(EventFilter::new())).collect();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let p = bus.publisher();
                thread::spawn(move || {
                    let mut ids = Vec::new();
                    for i in 0..500 {
                        ids.push(p.publish(Event::with_resource("n", &format!("p{t}"), json!(i))));
                    }
                    ids
                })
            })
            .collect();
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
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let p = bus.publisher();
            thread::spawn(move || {
                for i in 0..500u64 {
                    p.publish(Event::with_resource("n", &format!("p{t}"), json!(i)));
                }
            })
        })
        .collect();
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
