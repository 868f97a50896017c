//! Replay taken atomically with subscribing: all, last N, from an id, from a time; gaps reported.

mod bus_support;
use bus_support::bus_sized;

use ipckit::{Event, EventBus, EventBusConfig, EventFilter, Replay, ReplayGap};
use serde_json::json;
use std::thread;
use std::time::{Duration, SystemTime};

fn ids(sub: &ipckit::EventSubscriber) -> Vec<u64> {
    sub.try_iter().map(|e| e.id).collect()
}

fn bus_with(history: usize, n: u64) -> EventBus {
    let bus = EventBus::new(EventBusConfig {
        history_size: history,
        ..Default::default()
    });
    for i in 0..n {
        bus.publish(Event::with_resource(
            if i % 2 == 0 { "task.even" } else { "task.odd" },
            "r",
            json!(i),
        ));
    }
    bus
}

#[test]
fn replay_kinds() {
    let bus = bus_with(100, 10);
    let all = bus.subscribe_with_replay(EventFilter::new(), Replay::All);
    let last =
        bus.subscribe_with_replay(EventFilter::new().event_type("task.odd"), Replay::Last(2));
    let from_id = bus.subscribe_with_replay(EventFilter::new(), Replay::FromId(8));
    let none = bus.subscribe_with_replay(EventFilter::new(), Replay::None);
    bus.publish(Event::new("task.odd", json!(null)));
    assert_eq!(ids(&all), (1..=11).collect::<Vec<_>>());
    assert_eq!(ids(&last), [8, 10, 11]);
    assert_eq!(ids(&from_id), [8, 9, 10, 11]);
    assert_eq!(ids(&none), [11]);
    assert_eq!(from_id.replay_gap(), None);
}

#[test]
fn replay_from_a_time() {
    let bus = bus_with(100, 3);
    thread::sleep(Duration::from_millis(5));
    let cut = SystemTime::now();
    bus.publish(Event::new("late", json!(null)));
    let sub = bus.subscribe_with_replay(EventFilter::new(), Replay::FromTime(cut));
    assert_eq!(ids(&sub), [4]);
}

#[test]
fn replay_is_not_bounded_by_the_subscriber_buffer() {
    let bus = bus_sized(1000, 4);
    for _ in 0..500 {
        bus.publish(Event::new("a", json!(null)));
    }
    let sub = bus.subscribe_with_replay(EventFilter::new(), Replay::All);
    assert_eq!(sub.try_iter().count(), 500);
    assert_eq!(sub.dropped(), 0);
}

#[test]
fn replay_from_an_evicted_id_says_so() {
    let bus = bus_with(5, 20);
    let sub = bus.subscribe_with_replay(EventFilter::new(), Replay::FromId(3));
    assert_eq!(
        sub.replay_gap(),
        Some(ReplayGap {
            requested: 3,
            oldest_held: 16
        })
    );
    assert_eq!(ids(&sub), [16, 17, 18, 19, 20]);
    // Asking for the future is not a gap.
    let future = bus.subscribe_with_replay(EventFilter::new(), Replay::FromId(21));
    assert_eq!(future.replay_gap(), None);
    bus.publish(Event::new("x", json!(null)));
    assert_eq!(ids(&future), [21]);
}

#[test]
fn replay_and_live_have_no_gap_and_no_duplicate_while_others_publish() {
    let bus = bus_sized(1_000_000, 1_000_000);
    const PER_THREAD: u64 = 5_000;
    let publishers: Vec<_> = (0..3)
        .map(|_| {
            let p = bus.publisher();
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    p.publish(Event::new("n", json!(i)));
                }
            })
        })
        .collect();
    let mut subs = Vec::new();
    for i in 0..50 {
        let replay = match i % 3 {
            0 => Replay::All,
            1 => Replay::FromId(1),
            _ => Replay::Last(usize::MAX),
        };
        subs.push(bus.subscribe_with_replay(EventFilter::new(), replay));
        thread::yield_now();
    }
    for p in publishers {
        p.join().unwrap();
    }
    for sub in subs {
        let got = ids(&sub);
        assert_eq!(
            got,
            (1..=3 * PER_THREAD).collect::<Vec<_>>(),
            "every id once, in order"
        );
    }
}
