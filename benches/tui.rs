//! The monitor's ingest-and-render path: events absorbed per second while drawing, and the time to
//! draw one frame with 10k, 100k and 1M events of history (on `TestBackend`, 160x48).
//!
//! Also: a filter key typed with 1M events of history, and the whole loop's key-to-frame latency while
//! a source delivers 100,000 events a second (on the live event pane; with the progress pane focused,
//! paused and flagged gauges; drilled into one gauge's events).
//!
//! `cargo bench --bench tui`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipckit::top::{run_loop, update, Action, SourceMsg, State, TopOptions};
use ipckit::Event;
use ratatui::backend::TestBackend;
use ratatui::backend::{Backend, ClearType, WindowSize};
use ratatui::buffer::Cell;
use ratatui::crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Position, Size};
use ratatui::Terminal;
use std::hint::black_box;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Instant;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
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

/// A `TestBackend` that notes when a flushed frame starts or stops showing the help overlay.
struct Watch {
    inner: TestBackend,
    seen: Arc<Mutex<(bool, Instant)>>,
}

impl Backend for Watch {
    type Error = std::convert::Infallible;
    fn draw<'a, I>(&mut self, content: I) -> Result<(), Self::Error>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        self.inner.draw(content)
    }
    fn hide_cursor(&mut self) -> Result<(), Self::Error> {
        self.inner.hide_cursor()
    }
    fn show_cursor(&mut self) -> Result<(), Self::Error> {
        self.inner.show_cursor()
    }
    fn get_cursor_position(&mut self) -> Result<Position, Self::Error> {
        self.inner.get_cursor_position()
    }
    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> Result<(), Self::Error> {
        self.inner.set_cursor_position(position)
    }
    fn clear(&mut self) -> Result<(), Self::Error> {
        self.inner.clear()
    }
    fn clear_region(&mut self, clear_type: ClearType) -> Result<(), Self::Error> {
        self.inner.clear_region(clear_type)
    }
    fn size(&self) -> Result<Size, Self::Error> {
        self.inner.size()
    }
    fn window_size(&mut self) -> Result<WindowSize, Self::Error> {
        self.inner.window_size()
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        let buffer = self.inner.buffer();
        let shown = (0..buffer.area.height).any(|y| {
            let row: String = (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect();
            row.contains("or Esc closes")
        });
        let mut seen = self.seen.lock().expect("not poisoned");
        if seen.0 != shown {
            *seen = (shown, Instant::now());
        }
        self.inner.flush()
    }
}

struct Keys(mpsc::UnboundedReceiver<io::Result<TermEvent>>);

impl futures_core::Stream for Keys {
    type Item = io::Result<TermEvent>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// The whole loop (`run_loop` at 30 frames a second) while a source delivers 100,000 events a second
/// (100 every millisecond): time from a key press (`?`, toggling the help) to the first frame flushed
/// that shows its effect. Side by side: the live event pane as it opens, and the screen with what the
/// monitor added for issue 13 on it: the progress pane focused with a gauge selected, the view paused
/// (`PAUSED +N` counting the flood), gauges flagged (the workload's tokens go backwards, and are an
/// hour old, so stalled); and drilled down into one gauge's events (its filter applied to the flood).
fn key_latency_under_flood(c: &mut Criterion) {
    let press = |code| KeyEvent::new(code, KeyModifiers::NONE);
    key_latency(c, "under_100k_events_per_s", &[]);
    key_latency(
        c,
        "under_100k_events_per_s_progress_focused_paused_flagged",
        &[
            press(KeyCode::Tab),
            press(KeyCode::Char('j')),
            press(KeyCode::Char(' ')),
        ],
    );
    key_latency(
        c,
        "under_100k_events_per_s_drilled_into_a_gauge",
        &[
            press(KeyCode::Tab),
            press(KeyCode::Char('j')),
            press(KeyCode::Enter),
        ],
    );
}

/// [`key_latency_under_flood`] after the keys `setup` (sent once the loop runs).
fn key_latency(c: &mut Criterion, name: &str, setup: &[KeyEvent]) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let seen = Arc::new(Mutex::new((false, Instant::now())));
    let (key_tx, key_rx) = mpsc::unbounded_channel();
    let (source_tx, source_rx) = mpsc::channel::<SourceMsg>(64);
    let events = workload(100_000);
    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let sent = Arc::clone(&sent);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut at = 0;
            loop {
                tick.tick().await;
                let batch = events[at..at + 100].to_vec();
                at = (at + 100) % events.len();
                if source_tx.send(SourceMsg::Events(batch)).await.is_err() {
                    return;
                }
                sent.fetch_add(100, Ordering::Relaxed);
            }
        })
    };
    let backend = Watch {
        inner: TestBackend::new(160, 48),
        seen: Arc::clone(&seen),
    };
    let running = runtime.spawn(async move {
        let mut terminal = Terminal::new(backend).expect("terminal");
        let mut state = state(1_000_000, None);
        run_loop(
            &mut terminal,
            &mut state,
            Keys(key_rx),
            source_rx,
            Duration::from_millis(33),
        )
        .await
        .expect("loop");
    });
    for key in setup {
        key_tx.send(Ok(TermEvent::Key(*key))).expect("loop running");
    }
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let sent_before = sent.load(Ordering::Relaxed);
    let mut worst = Duration::ZERO;
    let mut presses = 0u64;
    let mut group = c.benchmark_group("key_to_frame");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                // Press at a varying point of the frame period, not always just after a frame.
                std::thread::sleep(Duration::from_micros((i * 7919) % 33_000));
                let before = seen.lock().expect("not poisoned").0;
                let pressed = Instant::now();
                key_tx
                    .send(Ok(TermEvent::Key(KeyEvent::new(
                        KeyCode::Char('?'),
                        KeyModifiers::NONE,
                    ))))
                    .expect("loop running");
                let answered = loop {
                    let (shown, at) = *seen.lock().expect("not poisoned");
                    if shown != before {
                        break at;
                    }
                    assert!(
                        pressed.elapsed() < Duration::from_secs(5),
                        "no answer to a key"
                    );
                    std::thread::sleep(Duration::from_micros(200));
                };
                let latency = answered.saturating_duration_since(pressed);
                worst = worst.max(latency);
                presses += 1;
                total += latency;
            }
            total
        });
    });
    group.finish();
    let rate =
        (sent.load(Ordering::Relaxed) - sent_before) as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "key_to_frame/{name}: worst {worst:?} over {presses} presses while the source delivered {rate:.0} events/s"
    );
    flood.abort();
    running.abort();
}

criterion_group!(
    benches,
    ingest_while_drawing,
    frame_time,
    filter_keystroke,
    key_latency_under_flood
);
criterion_main!(benches);
