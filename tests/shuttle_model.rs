//! Concurrency model check of the bus's queue and cursor logic with shuttle: the real bus code, built
//! with `--cfg shuttle` so its locks are shuttle's, under thousands of random and PCT schedules.
//!
//! `RUSTFLAGS="--cfg shuttle" cargo test --no-default-features --test shuttle_model --target-dir target/shuttle`
#![cfg(shuttle)]

use ipckit::{Event, EventBus, EventBusConfig, EventFilter, Replay, SlowConsumerPolicy};
use serde_json::json;
use shuttle::thread;

const SCHEDULES: usize = 3_000;

fn bus(buffer: usize, policy: SlowConsumerPolicy) -> EventBus {
    EventBus::new(EventBusConfig {
        history_size: 16,
        subscriber_buffer: buffer,
        slow_consumer: policy,
        block_timeout: None,
        ..Default::default()
    })
}

/// Two publishers, a reader that reads part-way, a late subscriber with replay that drops out:
/// for each subscriber delivered + lost + queued == matching events published since it subscribed,
/// ids strictly increase, and the replaying subscriber has no gap and no duplicate.
fn lossy_policy(policy: SlowConsumerPolicy) {
    let bus = bus(2, policy);
    let sub = bus.subscribe(EventFilter::new());
    let publishers: Vec<_> = (0..2)
        .map(|t| {
            let p = bus.publisher();
            thread::spawn(move || {
                for i in 0..3 {
                    p.publish(Event::new(if t == 0 { "a" } else { "b" }, json!(i)));
                }
            })
        })
        .collect();
    let late = {
        let bus = bus.clone();
        thread::spawn(move || {
            let sub = bus.subscribe_with_replay(EventFilter::new().event_type("a"), Replay::All);
            let mut seen = Vec::new();
            while let Some(e) = sub.try_recv() {
                seen.push(e.id);
            }
            (seen, sub.dropped())
        })
    };
    let mut read = Vec::new();
    for _ in 0..2 {
        if let Some(e) = sub.try_recv() {
            read.push(e.id);
        }
        thread::yield_now();
    }
    for p in publishers {
        p.join().unwrap();
    }
    let (late_seen, _late_lost) = late.join().unwrap();
    while let Some(e) = sub.try_recv() {
        read.push(e.id);
    }
    assert!(read.windows(2).all(|w| w[0] < w[1]), "{read:?}");
    assert_eq!(
        read.len() as u64 + sub.dropped(),
        6,
        "read {read:?}, lost {}",
        sub.dropped()
    );
    assert_eq!(bus.stats().published, 6);
    assert!(late_seen.windows(2).all(|w| w[0] < w[1]), "{late_seen:?}");
    let history: Vec<u64> = bus
        .history(&EventFilter::new())
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(history, (1..=6).collect::<Vec<_>>());
    drop(sub);
    assert_eq!(bus.stats().subscribers, 0);
}

/// Block with a buffer of one: two publishers and a reader; nobody deadlocks, nothing is lost, order
/// holds; a second Block subscriber that is dropped mid-way never holds anyone up.
fn block_policy() {
    let bus = bus(1, SlowConsumerPolicy::Block);
    let sub = bus.subscribe(EventFilter::new());
    let quitter = bus.subscribe(EventFilter::new());
    let publishers: Vec<_> = (0..2)
        .map(|_| {
            let p = bus.publisher();
            thread::spawn(move || {
                for i in 0..2 {
                    p.publish(Event::new("n", json!(i)));
                }
            })
        })
        .collect();
    let dropper = thread::spawn(move || drop(quitter));
    let mut read = Vec::new();
    while read.len() < 4 {
        read.push(sub.recv().expect("the bus is alive").id);
    }
    for p in publishers {
        p.join().unwrap();
    }
    dropper.join().unwrap();
    assert_eq!(read, [1, 2, 3, 4]);
    assert_eq!(sub.dropped(), 0);
}

/// Block with a buffer of one: a publisher waits for room in a subscriber that never reads; another
/// thread drops that subscriber and subscribes anew (to other events), so the newcomer may take its
/// place in the bus's table before the publisher looks again. The publisher must finish: shuttle
/// reports a deadlock if it mistakes the newcomer, which never reads, for the one it waited on.
fn block_subscriber_replaced() {
    let bus = bus(1, SlowConsumerPolicy::Block);
    let stuck = bus.subscribe(EventFilter::new());
    let publisher = {
        let p = bus.publisher();
        thread::spawn(move || {
            p.publish(Event::new("n", json!(1)));
            p.publish(Event::new("n", json!(2)))
        })
    };
    let replacer = {
        let bus = bus.clone();
        thread::spawn(move || {
            drop(stuck);
            bus.subscribe(EventFilter::new().event_type("other"))
        })
    };
    assert_eq!(publisher.join().unwrap(), 2);
    let newcomer = replacer.join().unwrap();
    assert!(newcomer.is_empty());
    bus.publish(Event::new("other", json!(3)));
    assert_eq!(newcomer.try_recv().map(|e| e.id), Some(3));
}

/// The last handle goes while a reader waits in `recv` and a publisher handle still publishes: the
/// reader gets every event published before the bus closed, in order, then `None`; nobody hangs.
fn close_while_reading() {
    let bus = bus(4, SlowConsumerPolicy::DropNewest);
    let sub = bus.subscribe(EventFilter::new());
    let reader = thread::spawn(move || {
        let mut seen = Vec::new();
        while let Some(e) = sub.recv() {
            seen.push(e.id);
        }
        seen
    });
    let publisher = {
        let p = bus.publisher();
        thread::spawn(move || {
            p.publish(Event::new("n", json!(1)));
            p.publish(Event::new("n", json!(2)));
        })
    };
    drop(bus);
    publisher.join().unwrap();
    assert_eq!(reader.join().unwrap(), [1, 2]);
}

/// Explores `scenario` under `SCHEDULES` random schedules, then `SCHEDULES` PCT schedules (depth 3).
fn explore(scenario: impl Fn() + Clone + Send + Sync + 'static) {
    shuttle::check_random(scenario.clone(), SCHEDULES);
    shuttle::check_pct(scenario, SCHEDULES, 3);
}

#[test]
fn drop_oldest() {
    explore(|| lossy_policy(SlowConsumerPolicy::DropOldest));
}

#[test]
fn drop_newest() {
    explore(|| lossy_policy(SlowConsumerPolicy::DropNewest));
}

#[test]
fn block() {
    explore(block_policy);
}

#[test]
fn block_subscriber_replaced_in_the_table() {
    explore(block_subscriber_replaced);
}

#[test]
fn close_while_a_reader_waits() {
    explore(close_while_reading);
}
