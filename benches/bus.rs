//! The bus against the reference design (`ipckit` 0.1.12) and `tokio::sync::broadcast`, in one run.
//!
//! Every case pre-builds its events outside the timed region, drains subscribers in batches so nothing
//! is dropped, and checks the delivered counts, so a fast wrong answer cannot win.
//!
//! `cargo bench --bench bus` runs the criterion groups, then prints a report (memory per history event
//! measured in fresh child processes, allocations per publish, delivery to a draining reader thread).
//! `cargo bench --bench bus -- --report-only` prints only the report.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use ipckit::{Event, EventBus, EventBusConfig, EventFilter, EventSubscriber, SlowConsumerPolicy};
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Counts allocations while `COUNTING` is set (one relaxed load otherwise).
struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Live heap bytes, tracked only in the memory-measuring child process.
static TRACK_BYTES: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        if TRACK_BYTES.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if TRACK_BYTES.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        if TRACK_BYTES.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: usize = 10_000;
const BATCH: usize = 256;
const RESOURCES: usize = 16;

/// The benchmark's event shape: a render-job progress line.
fn events(n: usize) -> Vec<Event> {
    events_from(0, n)
}

fn events_from(first: usize, n: usize) -> Vec<Event> {
    (first..first + n)
        .map(|i| {
            Event::with_resource(
                "task.progress",
                &format!("job-{}", i % RESOURCES),
                json!({"frame": i, "of": 1000}),
            )
        })
        .collect()
}

fn ref_events(n: usize) -> Vec<ipckit_ref::Event> {
    (0..n)
        .map(|i| {
            ipckit_ref::Event::with_resource(
                "task.progress",
                &format!("job-{}", i % RESOURCES),
                json!({"frame": i, "of": 1000}),
            )
        })
        .collect()
}

fn config() -> EventBusConfig {
    EventBusConfig {
        history_size: 1000,
        subscriber_buffer: 1024,
        slow_consumer: SlowConsumerPolicy::DropOldest,
        ..Default::default()
    }
}

fn ref_config() -> ipckit_ref::EventBusConfig {
    ipckit_ref::EventBusConfig {
        history_size: 1000,
        subscriber_buffer: 1024,
        slow_consumer: ipckit_ref::event_stream::SlowConsumerPolicy::DropOldest,
    }
}

/// Times `iters` runs of `run` over fresh events. Building the events and dropping what `run` returns
/// (the bus, the received events) happen outside the timed region, for every contender alike.
fn timed<E, R>(iters: u64, make: impl Fn() -> E, mut run: impl FnMut(E) -> R) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = make();
        let start = Instant::now();
        let output = run(input);
        total += start.elapsed();
        drop(output);
    }
    total
}

/// Publishes `events` in batches of [`BATCH`], draining every subscriber into `sink` after each batch
/// with `drain` (which returns how many it moved); checks each got `per_sub`. Returns everything so the
/// caller drops it outside the timed region.
fn publish_and_drain<E, S, T>(
    events: Vec<E>,
    subscribers: Vec<S>,
    per_sub: usize,
    mut publish: impl FnMut(E),
    mut drain: impl FnMut(&mut S, &mut Vec<T>) -> usize,
) -> (Vec<S>, Vec<T>) {
    let mut subscribers = subscribers;
    let mut got = vec![0usize; subscribers.len()];
    let mut sink = Vec::with_capacity(events.len() * subscribers.len());
    let mut events = events.into_iter();
    loop {
        let mut any = false;
        for e in events.by_ref().take(BATCH) {
            any = true;
            publish(e);
        }
        if !any {
            break;
        }
        for (s, n) in subscribers.iter_mut().zip(got.iter_mut()) {
            *n += drain(s, &mut sink);
        }
    }
    assert!(got.iter().all(|&n| n == per_sub), "{got:?}");
    (subscribers, sink)
}

/// (a) four subscribers that all match; (b) sixteen that each match one resource in sixteen.
fn fanout(c: &mut Criterion) {
    for (name, subs, by_resource) in [
        ("a_4_subscribers_all_match", 4usize, false),
        ("b_16_subscribers_one_resource_each", 16, true),
    ] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(N as u64));
        let per_sub = if by_resource { N / subs } else { N };
        let filter = |i: usize| match by_resource {
            true => EventFilter::new().resource(&format!("job-{i}")),
            false => EventFilter::new(),
        };
        let ref_filter = |i: usize| match by_resource {
            true => ipckit_ref::EventFilter::new().resource(&format!("job-{i}")),
            false => ipckit_ref::EventFilter::new(),
        };

        group.bench_function("ipckit_ref_owned", |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || ref_events(N),
                    |events| {
                        let bus = ipckit_ref::EventBus::new(ref_config());
                        let subscribers = (0..subs).map(|i| bus.subscribe(ref_filter(i))).collect();
                        let out = publish_and_drain(
                            events,
                            subscribers,
                            per_sub,
                            |e| bus.publish(e),
                            |s, sink| {
                                let before = sink.len();
                                sink.extend(s.try_iter());
                                sink.len() - before
                            },
                        );
                        (bus, out)
                    },
                )
            })
        });
        group.bench_function("ours_owned", |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || events(N),
                    |events| {
                        let bus = EventBus::new(config());
                        let subscribers = (0..subs).map(|i| bus.subscribe(filter(i))).collect();
                        let out = publish_and_drain(
                            events,
                            subscribers,
                            per_sub,
                            |e| {
                                bus.publish(e);
                            },
                            |s: &mut EventSubscriber, sink| {
                                let before = sink.len();
                                sink.extend(s.try_iter());
                                sink.len() - before
                            },
                        );
                        (bus, out)
                    },
                )
            })
        });
        group.bench_function("ours_zero_copy", |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || events(N),
                    |events| {
                        let bus = EventBus::new(config());
                        let subscribers = (0..subs).map(|i| bus.subscribe(filter(i))).collect();
                        let out = publish_and_drain(
                            events,
                            subscribers,
                            per_sub,
                            |e| {
                                bus.publish(e);
                            },
                            |s: &mut EventSubscriber, sink| s.try_recv_batch(sink, usize::MAX),
                        );
                        (bus, out)
                    },
                )
            })
        });
        if !by_resource {
            group.bench_function("tokio_broadcast_arc", |b| {
                b.iter_custom(|iters| {
                    timed(
                        iters,
                        || events(N),
                        |events| {
                            let (tx, _) = tokio::sync::broadcast::channel::<Arc<Event>>(1024);
                            let receivers = (0..subs).map(|_| tx.subscribe()).collect();
                            let out = publish_and_drain(
                                events,
                                receivers,
                                per_sub,
                                |e| {
                                    let _ = tx.send(Arc::new(e));
                                },
                                |r, sink| {
                                    let before = sink.len();
                                    while let Ok(e) = r.try_recv() {
                                        sink.push(e);
                                    }
                                    sink.len() - before
                                },
                            );
                            (tx, out)
                        },
                    )
                })
            });
        }
        group.finish();
    }
}

/// (c) publishing into a 100k-event history, then a filtered history query.
fn history(c: &mut Criterion) {
    const H: usize = 100_000;
    let mut group = c.benchmark_group("c_history_100k_then_filtered_query");
    group.throughput(Throughput::Elements(H as u64));
    group.sample_size(20);
    group.bench_function("ipckit_ref_owned", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let bus = ipckit_ref::EventBus::new(ipckit_ref::EventBusConfig {
                    history_size: H,
                    ..ref_config()
                });
                let events = ref_events(H);
                let start = Instant::now();
                for e in events {
                    bus.publish(e);
                }
                let hits = bus.history(&ipckit_ref::EventFilter::new().resource("job-3"));
                total += start.elapsed();
                assert_eq!(hits.len(), H / RESOURCES);
                drop((hits, bus));
            }
            total
        })
    });
    for (name, zero_copy) in [("ours_owned", false), ("ours_zero_copy", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let bus = EventBus::new(EventBusConfig {
                        history_size: H,
                        ..config()
                    });
                    let events = events(H);
                    let filter = EventFilter::new().resource("job-3");
                    let start = Instant::now();
                    for e in events {
                        bus.publish(e);
                    }
                    let (owned, shared) = if zero_copy {
                        (Vec::new(), bus.history_arc(&filter))
                    } else {
                        (bus.history(&filter), Vec::new())
                    };
                    total += start.elapsed();
                    assert_eq!(owned.len() + shared.len(), H / RESOURCES);
                    drop((owned, shared, bus));
                }
                total
            })
        });
    }
    group.finish();
}

/// (d) publish cost with 1, 16 and 256 idle subscribers (subscribed to a type nobody publishes), and
/// after 16 subscribers were dropped.
fn idle_subscribers(c: &mut Criterion) {
    let mut group = c.benchmark_group("d_publish_with_idle_subscribers");
    group.throughput(Throughput::Elements(N as u64));
    for (label, idle, dropped) in [
        ("idle_1", 1usize, 0usize),
        ("idle_16", 16, 0),
        ("idle_256", 256, 0),
        ("dropped_16", 0, 16),
    ] {
        group.bench_function(BenchmarkId::new("ipckit_ref", label), |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || ref_events(N),
                    |events| {
                        let bus = ipckit_ref::EventBus::new(ref_config());
                        let idle_subs: Vec<_> = (0..idle)
                            .map(|i| {
                                bus.subscribe(
                                    ipckit_ref::EventFilter::new().event_type(&format!("idle.{i}")),
                                )
                            })
                            .collect();
                        for i in 0..dropped {
                            drop(bus.subscribe(
                                ipckit_ref::EventFilter::new().event_type(&format!("gone.{i}")),
                            ));
                        }
                        for e in events {
                            bus.publish(e);
                        }
                        assert!(idle_subs.iter().all(|s| s.try_recv().is_none()));
                        (bus, idle_subs)
                    },
                )
            })
        });
        group.bench_function(BenchmarkId::new("ours", label), |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || events(N),
                    |events| {
                        let bus = EventBus::new(config());
                        let idle_subs: Vec<_> = (0..idle)
                            .map(|i| {
                                bus.subscribe(EventFilter::new().event_type(&format!("idle.{i}")))
                            })
                            .collect();
                        for i in 0..dropped {
                            drop(
                                bus.subscribe(EventFilter::new().event_type(&format!("gone.{i}"))),
                            );
                        }
                        for e in events {
                            bus.publish(e);
                        }
                        assert!(idle_subs.iter().all(|s| s.is_empty()));
                        assert_eq!(bus.stats().published, N as u64);
                        (bus, idle_subs)
                    },
                )
            })
        });
    }
    group.finish();
}

/// (e) the same number of events published by one thread, and by two threads at once.
fn two_publishers(c: &mut Criterion) {
    const TOTAL: usize = 20_000;
    let mut group = c.benchmark_group("e_publisher_threads");
    group.throughput(Throughput::Elements(TOTAL as u64));
    for threads in [1usize, 2] {
        group.bench_function(BenchmarkId::new("ipckit_ref", threads), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let bus = ipckit_ref::EventBus::new(ref_config());
                    let barrier = Arc::new(Barrier::new(threads + 1));
                    let handles: Vec<_> = (0..threads)
                        .map(|_| {
                            let p = bus.publisher();
                            let events = ref_events(TOTAL / threads);
                            let barrier = Arc::clone(&barrier);
                            std::thread::spawn(move || {
                                barrier.wait();
                                for e in events {
                                    p.publish(e);
                                }
                            })
                        })
                        .collect();
                    barrier.wait();
                    let start = Instant::now();
                    for h in handles {
                        h.join().unwrap();
                    }
                    total += start.elapsed();
                }
                total
            })
        });
        group.bench_function(BenchmarkId::new("ours", threads), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let bus = EventBus::new(config());
                    let barrier = Arc::new(Barrier::new(threads + 1));
                    let handles: Vec<_> = (0..threads)
                        .map(|_| {
                            let p = bus.publisher();
                            let events = events(TOTAL / threads);
                            let barrier = Arc::clone(&barrier);
                            std::thread::spawn(move || {
                                barrier.wait();
                                for e in events {
                                    p.publish(e);
                                }
                            })
                        })
                        .collect();
                    barrier.wait();
                    let start = Instant::now();
                    for h in handles {
                        h.join().unwrap();
                    }
                    total += start.elapsed();
                    assert_eq!(bus.stats().published, TOTAL as u64);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout, history, idle_subscribers, two_publishers);

/// Resident and live heap bytes per history event for 1,000,000 events, measured in a fresh process
/// that builds each event just before publishing it (as a real publisher does).
fn memory_child(which: &str) {
    const M: usize = 1_000_000;
    fn rss() -> i64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: i64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }
    fn event(i: usize) -> Event {
        events_from(i, 1)
            .pop()
            .unwrap_or_else(|| Event::new("x", json!(null)))
    }
    let before = rss();
    TRACK_BYTES.store(true, Ordering::Relaxed);
    let (rss_after, live) = match which {
        "ours" => {
            let bus = EventBus::new(EventBusConfig {
                history_size: M,
                ..config()
            });
            for i in 0..M {
                bus.publish(event(i));
            }
            let out = (rss(), LIVE_BYTES.load(Ordering::Relaxed));
            assert_eq!(bus.stats().history_len, M);
            std::mem::forget(bus);
            out
        }
        _ => {
            let bus = ipckit_ref::EventBus::new(ipckit_ref::EventBusConfig {
                history_size: M,
                ..ref_config()
            });
            for i in 0..M {
                let e = event(i);
                bus.publish(ipckit_ref::Event::with_resource(
                    &e.event_type,
                    e.resource_id.as_deref().unwrap_or(""),
                    e.data,
                ));
            }
            let out = (rss(), LIVE_BYTES.load(Ordering::Relaxed));
            std::mem::forget(bus);
            out
        }
    };
    println!(
        "{} {}",
        (rss_after - before) as f64 / M as f64,
        live as f64 / M as f64
    );
}

/// (resident, live heap) bytes per history event.
fn memory_per_event(which: &str) -> Option<(f64, f64)> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe)
        .env("IPCKIT_BENCH_MEMORY", which)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut numbers = text.split_whitespace().filter_map(|n| n.parse().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// Allocations per publish once the bus is warm (history full, subscriber queues grown to their
/// buffer once), with `subs` subscribers that all match.
fn allocations_per_publish(subs: usize) -> (f64, f64) {
    const WARM: usize = 2_000;
    const COUNT: usize = 1_000;
    let ours = {
        let bus = EventBus::new(config());
        let subscribers: Vec<_> = (0..subs)
            .map(|_| bus.subscribe(EventFilter::new()))
            .collect();
        let mut batch = Vec::with_capacity(WARM);
        // Two fill-and-drain rounds: a batch read swaps the queue with a spare, so both halves of
        // that double buffer grow once before the steady state.
        for _round in 0..2 {
            for e in events(WARM) {
                bus.publish(e);
            }
            for s in &subscribers {
                batch.clear();
                s.try_recv_batch(&mut batch, usize::MAX);
            }
        }
        let prepared = events(COUNT);
        ALLOCS.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        for e in prepared {
            bus.publish(e);
        }
        COUNTING.store(false, Ordering::Relaxed);
        ALLOCS.load(Ordering::Relaxed) as f64 / COUNT as f64
    };
    let reference = {
        let bus = ipckit_ref::EventBus::new(ref_config());
        let subscribers: Vec<_> = (0..subs)
            .map(|_| bus.subscribe(ipckit_ref::EventFilter::new()))
            .collect();
        for e in ref_events(WARM) {
            bus.publish(e);
        }
        for s in &subscribers {
            s.try_iter().for_each(drop);
        }
        let prepared = ref_events(COUNT);
        ALLOCS.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        for e in prepared {
            bus.publish(e);
        }
        COUNTING.store(false, Ordering::Relaxed);
        ALLOCS.load(Ordering::Relaxed) as f64 / COUNT as f64
    };
    (ours, reference)
}

/// Fraction of events a reader thread draining as fast as it can receives, and (ours) the exact
/// delivered + counted-lost total.
fn draining_reader() -> (f64, u64, f64) {
    const M: usize = 200_000;
    let bus = EventBus::new(config());
    let sub = bus.subscribe(EventFilter::new());
    let events = events(M);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut n = 0u64;
            let mut batch = Vec::new();
            loop {
                batch.clear();
                let got = sub.try_recv_batch(&mut batch, 1024) as u64;
                n += got;
                if got == 0 && done.load(Ordering::Acquire) && sub.is_empty() {
                    return (n, sub.dropped());
                }
            }
        })
    };
    for e in events {
        bus.publish(e);
    }
    done.store(true, Ordering::Release);
    let (delivered, lost) = reader.join().unwrap_or((0, 0));

    let rbus = ipckit_ref::EventBus::new(ref_config());
    let rsub = rbus.subscribe(ipckit_ref::EventFilter::new());
    let revents = ref_events(M);
    let rdone = Arc::new(AtomicBool::new(false));
    let rreader = {
        let done = Arc::clone(&rdone);
        std::thread::spawn(move || {
            let mut n = 0u64;
            loop {
                match rsub.try_recv() {
                    Some(_) => n += 1,
                    None if done.load(Ordering::Acquire) => {
                        n += rsub.try_iter().count() as u64;
                        return n;
                    }
                    None => {}
                }
            }
        })
    };
    for e in revents {
        rbus.publish(e);
    }
    rdone.store(true, Ordering::Release);
    let rdelivered = rreader.join().unwrap_or(0);
    (
        delivered as f64 / M as f64,
        delivered + lost,
        rdelivered as f64 / M as f64,
    )
}

fn report() {
    println!("\n== report ==");
    match (memory_per_event("ours"), memory_per_event("ref")) {
        (Some((ours, ours_live)), Some((reference, reference_live))) => println!(
            "history of 1,000,000 events, bytes per event: resident ours {ours:.0} vs ipckit_ref {reference:.0} ({:.2}x); live heap ours {ours_live:.0} vs ipckit_ref {reference_live:.0} ({:.2}x)",
            ours / reference,
            ours_live / reference_live
        ),
        _ => println!("memory: could not run the measuring child processes"),
    }
    for subs in [0, 4, 256] {
        let (ours, reference) = allocations_per_publish(subs);
        println!(
            "allocations per publish beyond building the event, {subs} subscribers: ours {ours:.2}, ipckit_ref {reference:.2}"
        );
    }
    let (ours, accounted, reference) = draining_reader();
    println!(
        "reader thread draining as fast as it can, 200,000 events: ours delivered {:.1}% (delivered + counted lost = {accounted}), ipckit_ref delivered {:.1}% (losses uncounted)",
        ours * 100.0,
        reference * 100.0
    );
}

fn main() {
    if let Ok(which) = std::env::var("IPCKIT_BENCH_MEMORY") {
        memory_child(&which);
        return;
    }
    let report_only = std::env::args().any(|a| a == "--report-only");
    if !report_only {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    if !std::env::args().any(|a| a == "--list" || a == "--test") {
        report();
    }
}
