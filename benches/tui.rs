//! The monitor's ingest-and-render path: events absorbed per second while drawing, and the time to
//! draw one frame with 10k, 100k and 1M events of history (on `TestBackend`, 160x48).
//!
//! `cargo bench --bench tui`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipckit::top::{update, Action, State, TopOptions};
use ipckit::Event;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tui_input::InputRequest;

const BATCH: usize = 4096;

fn workload(n: usize) -> Vec<Arc<Event>> {
    let t0 = SystemTime::now() - Duration::from_secs(3600);
    (0..n)
        .map(|i| {
            let mut event = match i % 5 {
                0 => Event::with_resource(
                    "task.started",
                    "render-1",
                    serde_json::json!({"frame": i}),
                ),
                1 => Event::stderr("render-2", "disk slow"),
                2 => Event::mcp_progress(
                    &format!("tok-{}", i % 7),
                    (i % 100) as f64,
                    Some(100.0),
                    Some("frame"),
                ),
                3 => Event::log("render-3", "warn", "hot"),
                _ => Event::progress("upload-9", i as u64, 0, "bytes"),
            };
            event.id = i as u64 + 1;
            event.timestamp = t0 + Duration::from_micros(i as u64 * 10);
            Arc::new(event)
        })
        .collect()
}

fn state(history: usize, filter: Option<&str>) -> State {
    let mut state = State::new(&TopOptions {
        history,
        filter: filter.map(str::to_owned),
        ..Default::default()
    })
    .expect("valid filter");
    update(
        &mut state,
        Action::Resize {
            width: 160,
            height: 48,
        },
    );
    state
}

fn fill(state: &mut State, events: &[Arc<Event>]) {
    for chunk in events.chunks(BATCH) {
        update(
            state,
            Action::Events {
                events: chunk.to_vec(),
                at: SystemTime::now(),
            },
        );
    }
    while state.has_background_work() {
        update(state, Action::Scan);
    }
}

fn ingest_while_drawing(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingest_and_draw");
    group.throughput(Throughput::Elements(BATCH as u64));
    let events = workload(BATCH * 64);
    for filter in [None, Some("log.* !log.stdout res:render-*")] {
        let name = if filter.is_some() {
            "filtered"
        } else {
            "unfiltered"
        };
        group.bench_function(BenchmarkId::new("batch_4096_plus_one_frame", name), |b| {
            let mut state = state(1_000_000, filter);
            let mut terminal = Terminal::new(TestBackend::new(160, 48)).expect("test backend");
            let mut next = 0;
            b.iter(|| {
                let start = (next % 64) * BATCH;
                next += 1;
                update(
                    &mut state,
                    Action::Events {
                        events: events[start..start + BATCH].to_vec(),
                        at: SystemTime::now(),
                    },
                );
                terminal
                    .draw(|f| ipckit::top::ui::render(&state, f))
                    .expect("draw");
            });
        });
    }
    group.finish();
}

fn frame_time(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    group.sample_size(30);
    let events = workload(1_000_000);
    for n in [10_000usize, 100_000, 1_000_000] {
        for (name, filter) in [
            ("live", None),
            ("filtered", Some("log.warn")),
            ("scrubbing", None),
        ] {
            let mut state = state(n, filter);
            fill(&mut state, &events[..n]);
            if name == "scrubbing" {
                update(&mut state, Action::ScrubOldest);
                for _ in 0..100 {
                    update(&mut state, Action::ScrubJumpForward);
                }
            }
            let mut terminal = Terminal::new(TestBackend::new(160, 48)).expect("test backend");
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    terminal
                        .draw(|f| ipckit::top::ui::render(black_box(&state), f))
                        .expect("draw");
                });
            });
        }
    }
    group.finish();
}

/// A key typed into the filter bar with 1M events of history: the filter changes (and is tested
/// against the newest `SCAN_SLICE` events at once), then a frame is drawn. Each iteration types a
/// character and deletes it, so two keys.
fn filter_keystroke(c: &mut Criterion) {
    let mut group = c.benchmark_group("filter_two_keys_and_frames");
    group.sample_size(30);
    let events = workload(1_000_000);
    let mut state = state(1_000_000, None);
    fill(&mut state, &events);
    update(&mut state, Action::FilterStart);
    for c in "log.warn res:render-".chars() {
        update(&mut state, Action::FilterInput(InputRequest::InsertChar(c)));
    }
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).expect("test backend");
    group.bench_function("1000000", |b| {
        b.iter(|| {
            for request in [InputRequest::InsertChar('3'), InputRequest::DeletePrevChar] {
                update(&mut state, Action::FilterInput(request));
                terminal
                    .draw(|f| ipckit::top::ui::render(&state, f))
                    .expect("draw");
            }
        });
    });
    group.finish();
}

criterion_group!(benches, ingest_while_drawing, frame_time, filter_keystroke);
criterion_main!(benches);
