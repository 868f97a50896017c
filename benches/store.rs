//! The compact event store against the structures it replaces, on a realistic generated dataset:
//! a render farm's task lifecycle events, log lines, MCP progress and file transfers, about 190 bytes
//! of NDJSON each (80 of them data), over 300 jobs, 120 transfers and a few hundred progress tokens.
//!
//! Peers, in the same run: the old history ring (a `VecDeque<Arc<Event>>`, what a bus that keeps
//! events as they came holds) and the reference crate's history (`ipckit_ref::EventBus`).
//!
//! `cargo bench --bench store` runs the criterion groups (pushing events, re-filtering, reading
//! events back), then prints a report: resident and live heap bytes per event for 1,000,000 events in
//! each structure (each measured in a fresh child process), the store's bytes per event for
//! 10,000,000, and the time to re-filter 1,000,000 and 10,000,000 kept events by a type glob, a
//! resource glob and `text:`. `cargo bench --bench store -- --report-only` prints only the report.

use criterion::{criterion_group, Criterion, Throughput};
use ipckit::store::{Order, Store, StoreConfig, StoreFilter};
use ipckit::{Event, EventFilter};
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Live heap bytes, tracked only in the memory-measuring child processes.
struct Counting;
static TRACK_BYTES: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
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
        if TRACK_BYTES.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const JOBS: u64 = 300;
const WORDS: &[&str] = &[
    "render", "sampling", "denoise", "texture", "cache", "miss", "loaded", "shader", "compile",
    "bvh", "build", "light", "bake", "upload", "chunk", "retry", "socket", "timeout", "disk",
    "slow", "memory", "peak", "frame", "tile", "done",
];

/// The `i`th event of the dataset (id `i + 1`, a millisecond apart).
fn realistic(rng: &mut Rng, i: u64) -> Event {
    let job = rng.below(JOBS);
    let res = format!("job-{job:04}");
    let (event_type, resource, data): (&str, String, Value) = match rng.below(100) {
        0..=34 => {
            let total = 240 + job % 7 * 60;
            let cur = i % total;
            let data = json!({"current": cur, "total": total, "percentage": cur * 100 / total,
                "message": format!("rendering frame {cur}/{total}")});
            ("task.progress", res, data)
        }
        35..=64 => {
            let (ty, level) = match rng.below(10) {
                0..=5 => ("log.stdout", "stdout"),
                6..=7 => ("log.info", "info"),
                8 => ("log.warn", "warn"),
                _ => ("log.stderr", "stderr"),
            };
            let mut msg = format!("[{}] ", WORDS[rng.below(WORDS.len() as u64) as usize]);
            for _ in 0..3 + rng.below(6) {
                msg.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
                msg.push(' ');
            }
            msg.push_str(&format!("{}.{:02}s", rng.below(20), rng.below(100)));
            (ty, res, json!({"level": level, "message": msg}))
        }
        65..=79 => {
            let token = format!("tok-{:04x}", job * 31 % 997);
            let p = (i % 100) as f64;
            let data = json!({"progressToken": token, "progress": p, "total": 100.0,
                "message": format!("indexing files {}/100", p as u64)});
            ("mcp.notifications.progress", token, data)
        }
        80..=91 => {
            let total = 1_000_000 + job * 7919 % 50_000_000;
            let ty = if rng.below(2) == 0 {
                "file.upload.progress"
            } else {
                "file.download.progress"
            };
            let data = json!({"file": format!("/farm/assets/job-{job:04}/tex_{:04}.exr", rng.below(5000)),
                "bytes": total / 100 * (i % 100), "total": total, "rate_bps": rng.below(90_000_000)});
            (ty, format!("xfer-{:03}", job % 120), data)
        }
        _ => {
            let node = format!("n-{:02}", rng.below(24));
            match rng.below(4) {
                0 => (
                    "task.created",
                    res,
                    json!({"node": node, "priority": rng.below(5), "frames": 240}),
                ),
                1 => (
                    "task.started",
                    res,
                    json!({"node": node, "attempt": 1 + rng.below(3)}),
                ),
                2 => (
                    "task.completed",
                    res,
                    json!({"result": {"frames": 240, "output": format!("/farm/out/job-{job:04}/")},
                        "elapsed_s": rng.below(4000)}),
                ),
                _ => {
                    let code = 1 + rng.below(3);
                    let data =
                        json!({"error": format!("exit code {code} on {node}"), "exit_code": code});
                    ("task.failed", res, data)
                }
            }
        }
    };
    let mut event = Event::with_resource(event_type, &resource, data);
    event.id = i + 1;
    event.timestamp =
        UNIX_EPOCH + Duration::from_micros(1_732_500_000_000_000 + i * 1_000 + rng.below(1_000));
    event
}

fn dataset(n: usize) -> Vec<Event> {
    let mut rng = Rng::new(42);
    (0..n as u64).map(|i| realistic(&mut rng, i)).collect()
}

fn store_config(n: usize) -> StoreConfig {
    StoreConfig {
        max_bytes: usize::MAX,
        ..StoreConfig::new(n)
    }
}

/// Pushes `event` into `store`, compressing a sealed block at once (a bus does it after its lock).
fn push(store: &mut Store, event: &Event) {
    if let Ok(pushed) = store.push_event(event) {
        if let Some(job) = pushed.job {
            store.install(job.run());
        }
    }
}

/// The filters of the re-filter figures.
const FILTERS: [(&str, &str); 3] = [
    ("type glob", "task.*"),
    ("resource glob", "res:job-01??"),
    ("text", "text:timeout"),
];

fn push_group(c: &mut Criterion) {
    const N: usize = 100_000;
    let mut group = c.benchmark_group("push_100k_realistic_events");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    group.bench_function("store", |b| {
        b.iter_batched(
            || dataset(N),
            |events| {
                let mut store = Store::new(store_config(N));
                for e in events {
                    push(&mut store, &e);
                    drop(e);
                }
                store
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.bench_function("arc_ring", |b| {
        b.iter_batched(
            || dataset(N),
            |events| {
                let mut ring = VecDeque::with_capacity(N);
                for e in events {
                    ring.push_back(Arc::new(e));
                }
                ring
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.bench_function("ipckit_ref_history", |b| {
        b.iter_batched(
            || {
                dataset(N)
                    .into_iter()
                    .map(|e| {
                        ipckit_ref::Event::with_resource(
                            &e.event_type,
                            e.resource_id.as_deref().unwrap_or(""),
                            e.data,
                        )
                    })
                    .collect::<Vec<_>>()
            },
            |events| {
                let bus = ipckit_ref::EventBus::new(ipckit_ref::EventBusConfig {
                    history_size: N,
                    ..Default::default()
                });
                for e in events {
                    bus.publish(e);
                }
                bus
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn filter_group(c: &mut Criterion) {
    const N: usize = 100_000;
    let events = dataset(N);
    let mut store = Store::new(store_config(N));
    for e in &events {
        push(&mut store, e);
    }
    let ring: VecDeque<Arc<Event>> = events.into_iter().map(Arc::new).collect();
    for (name, expr) in FILTERS {
        let filter = EventFilter::parse(expr).unwrap_or_default();
        let mut group = c.benchmark_group(format!("refilter_100k_{}", name.replace(' ', "_")));
        group.throughput(Throughput::Elements(N as u64));
        let expected = ring.iter().filter(|e| filter.matches(e)).count();
        group.bench_function("store", |b| {
            b.iter(|| {
                let mut compiled = StoreFilter::new(&filter);
                let n = store.count(&mut compiled, store.range());
                assert_eq!(n, expected);
                n
            })
        });
        group.bench_function("arc_ring_matches", |b| {
            b.iter(|| ring.iter().filter(|e| filter.matches(e)).count())
        });
        group.finish();
    }
}

fn read_group(c: &mut Criterion) {
    const N: usize = 100_000;
    const READ: u64 = 1_000;
    let events = dataset(N);
    let mut store = Store::new(store_config(N));
    for e in &events {
        push(&mut store, e);
    }
    let ring: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
    let start = store.first_pos() + 50_000;
    let mut group = c.benchmark_group("read_1000_consecutive_events");
    group.throughput(Throughput::Elements(READ));
    group.bench_function("store_event", |b| {
        b.iter(|| {
            (start..start + READ)
                .filter_map(|p| store.event(p))
                .map(|e| e.id)
                .sum::<u64>()
        })
    });
    group.bench_function("store_write_json", |b| {
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| {
            out.clear();
            for p in start..start + READ {
                let _ = store.write_json(p, &mut out);
            }
            out.len()
        })
    });
    group.bench_function("arc_ring_to_json", |b| {
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| {
            out.clear();
            for e in &ring[50_000..50_000 + READ as usize] {
                let _ = serde_json::to_writer(&mut out, &**e);
            }
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, push_group, filter_group, read_group);

fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// In a fresh process: builds `n` events one at a time into `which`, prints resident and live heap
/// bytes per event.
fn memory_child(which: &str, n: usize) {
    let mut rng = Rng::new(42);
    let before = rss();
    TRACK_BYTES.store(true, Ordering::Relaxed);
    let (after, live) = match which {
        "store" => {
            let mut store = Store::new(store_config(n));
            for i in 0..n as u64 {
                let e = realistic(&mut rng, i);
                push(&mut store, &e);
            }
            let out = (rss(), LIVE_BYTES.load(Ordering::Relaxed));
            assert_eq!(store.len(), n);
            std::mem::forget(store);
            out
        }
        "arc_ring" => {
            let mut ring = VecDeque::new();
            for i in 0..n as u64 {
                ring.push_back(Arc::new(realistic(&mut rng, i)));
                if ring.len() > n {
                    ring.pop_front();
                }
            }
            let out = (rss(), LIVE_BYTES.load(Ordering::Relaxed));
            std::mem::forget(ring);
            out
        }
        _ => {
            let bus = ipckit_ref::EventBus::new(ipckit_ref::EventBusConfig {
                history_size: n,
                ..Default::default()
            });
            for i in 0..n as u64 {
                let e = realistic(&mut rng, i);
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
        (after - before) as f64 / n as f64,
        live as f64 / n as f64
    );
}

/// (resident, live heap) bytes per event, measured in a child process.
fn memory_per_event(which: &str, n: usize) -> Option<(f64, f64)> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe)
        .env("IPCKIT_STORE_BENCH_MEMORY", format!("{which} {n}"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut numbers = text.split_whitespace().filter_map(|n| n.parse().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// The fastest of three timings of `f`, and its result.
fn fastest<R>(mut f: impl FnMut() -> R) -> (Duration, R) {
    let start = Instant::now();
    let mut result = f();
    let mut best = start.elapsed();
    for _ in 0..2 {
        let start = Instant::now();
        result = f();
        best = best.min(start.elapsed());
    }
    (best, result)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Re-filter times over `n` kept events: the store's count, and, for `with_ring`, `matches` over
/// an `Arc<Event>` ring and the reference crate's `history()` query holding the same events.
fn refilter_report(n: usize, with_ring: bool) {
    let mut rng = Rng::new(42);
    let mut store = Store::new(store_config(n));
    let mut ring = VecDeque::new();
    let reference = ipckit_ref::EventBus::new(ipckit_ref::EventBusConfig {
        history_size: n,
        ..Default::default()
    });
    let mut ndjson = 0usize;
    for i in 0..n as u64 {
        let e = realistic(&mut rng, i);
        push(&mut store, &e);
        if i < 100_000 {
            ndjson += serde_json::to_vec(&e).map_or(0, |v| v.len() + 1);
        }
        if with_ring {
            reference.publish(ipckit_ref::Event::with_resource(
                &e.event_type,
                e.resource_id.as_deref().unwrap_or(""),
                e.data.clone(),
            ));
            ring.push_back(Arc::new(e));
        }
    }
    let stats = store.stats();
    println!(
        "{n} events (NDJSON {:.0} bytes each on average, {} types, {} resources): store holds {:.1} bytes per event",
        ndjson as f64 / n.min(100_000) as f64,
        stats.types,
        stats.resources,
        stats.bytes as f64 / n as f64
    );
    for (name, expr) in FILTERS {
        let filter = EventFilter::parse(expr).unwrap_or_default();
        let (store_time, hits) = fastest(|| {
            let mut compiled = StoreFilter::new(&filter);
            store.count(&mut compiled, store.range())
        });
        let (newest_time, newest) = fastest(|| {
            let mut compiled = StoreFilter::new(&filter);
            let mut out = Vec::new();
            store.scan(
                &mut compiled,
                store.range(),
                Order::NewestFirst,
                50,
                &mut out,
            );
            out.len()
        });
        let mut line = format!(
            "  re-filter {n} by {name} `{expr}`: store {:.1} ms ({hits} hits; the newest {newest} in {:.2} ms)",
            ms(store_time),
            ms(newest_time)
        );
        if with_ring {
            let (ring_time, ring_hits) =
                fastest(|| ring.iter().filter(|e| filter.matches(e)).count());
            assert_eq!(ring_hits, hits, "{expr}");
            let ref_filter = match expr {
                "task.*" => Some(ipckit_ref::EventFilter::new().event_type("task.*")),
                _ => None,
            };
            line.push_str(&format!(
                "; Arc<Event> ring with matches {:.1} ms ({:.1}x the store's time)",
                ms(ring_time),
                ring_time.as_secs_f64() / store_time.as_secs_f64()
            ));
            if let Some(rf) = ref_filter {
                let (ref_time, ref_hits) = fastest(|| reference.history(&rf).len());
                line.push_str(&format!(
                    "; ipckit_ref history() {:.1} ms ({ref_hits} hits, {:.1}x)",
                    ms(ref_time),
                    ref_time.as_secs_f64() / store_time.as_secs_f64()
                ));
            }
        }
        println!("{line}");
    }
    std::mem::forget((store, ring, reference));
}

fn report() {
    println!("\n== report ==");
    const M: usize = 1_000_000;
    let figures: Vec<(&str, Option<(f64, f64)>)> =
        [("store", M), ("arc_ring", M), ("ipckit_ref", M)]
            .into_iter()
            .map(|(which, n)| (which, memory_per_event(which, n)))
            .collect();
    let store = figures[0].1;
    for (which, figure) in &figures {
        match (figure, store) {
            (Some((resident, live)), Some((store_resident, _))) => println!(
                "1,000,000 realistic events, bytes per event: {which:10} resident {resident:6.0}, live heap {live:6.0} ({:.2}x the store's resident)",
                resident / store_resident
            ),
            _ => println!("{which}: could not run the measuring child process"),
        }
    }
    match memory_per_event("store", 10 * M) {
        Some((resident, live)) => println!(
            "10,000,000 realistic events in the store: resident {resident:.0} bytes per event ({:.0} MB), live heap {live:.0}",
            resident * 10.0 * M as f64 / 1e6
        ),
        None => println!("10M: could not run the measuring child process"),
    }
    refilter_report(M, true);
    refilter_report(10 * M, false);
}

fn main() {
    if let Ok(spec) = std::env::var("IPCKIT_STORE_BENCH_MEMORY") {
        let mut parts = spec.split_whitespace();
        let which = parts.next().unwrap_or("store");
        let n = parts
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000);
        memory_child(which, n);
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
