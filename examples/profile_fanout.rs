//! Profile of benchmark (a) with the owned-`Event` API: 4 subscribers, 10,000 events, batched drains.
//!
//! ```sh
//! cargo build --release --no-default-features --example profile_fanout
//! valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/examples/profile_fanout
//! callgrind_annotate --inclusive=yes cg.out | grep -E "publish_all|drain|Inner::publish|try_recv|clone"
//! ```
//!
//! The reader side (`drain` → `try_recv` → the deep copy) carries the cost; `Inner::publish` does not copy.
use ipckit::{Event, EventBus, EventBusConfig, EventFilter};
use serde_json::json;
fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            Event::with_resource(
                "task.progress",
                &format!("job-{}", i % 16),
                json!({"frame": i, "of": 1000}),
            )
        })
        .collect()
}
#[inline(never)]
fn publish_all(
    bus: &EventBus,
    subs: &[ipckit::EventSubscriber],
    ev: Vec<Event>,
    sink: &mut Vec<Event>,
) {
    let mut n = 0;
    for e in ev {
        bus.publish(e);
        n += 1;
        if n % 256 == 0 {
            drain(subs, sink);
        }
    }
    drain(subs, sink);
}
#[inline(never)]
fn drain(subs: &[ipckit::EventSubscriber], sink: &mut Vec<Event>) {
    for s in subs {
        sink.extend(s.try_iter());
    }
}
/// Publishes 10,000 events to 4 subscribers that read owned copies.
fn main() {
    const N: usize = 10_000;
    let ev = events(N);
    let bus = EventBus::new(EventBusConfig {
        history_size: 1000,
        subscriber_buffer: 1024,
        ..Default::default()
    });
    let subs: Vec<_> = (0..4).map(|_| bus.subscribe(EventFilter::new())).collect();
    let mut sink = Vec::with_capacity(N * 4);
    publish_all(&bus, &subs, ev, &mut sink);
    assert_eq!(sink.len(), N * 4);
    std::mem::forget(sink);
    std::mem::forget(bus);
}
