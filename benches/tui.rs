//! The monitor's ingest-and-render path: events absorbed per second while drawing, and the time to
//! draw one frame with 10k, 100k and 1M events of history (on `TestBackend`, 160x48).
//!
//! Also: a filter key typed with 1M events of history, and the whole loop's key-to-frame latency while
//! a source delivers 100,000 events a second (on the live event pane; with the progress pane focused,
//! paused and flagged gauges; drilled into one gauge's events; and with a key typed into a filter
//! whose per-term counts are shown).
//!
//! Then a report on the monitor's log over the compact store, with a realistic dataset (a render
//! farm's task lifecycle, log lines, MCP progress and file transfers, about 190 bytes of NDJSON each):
//! resident bytes per event at 1M and 10M events (each in a fresh child process; beside it, an
//! `Arc<Event>` ring of the same events, what the log held before), re-filter times at 1M and 10M (a
//! type glob, a resource glob, `text:`; beside them `EventFilter::matches` over the ring), the frame
//! time with 10M events kept, and the time `--open` of a 1M-event recording takes to its first screen
//! and to its full count.
//!
//! `cargo bench --bench tui` runs everything; `cargo bench --bench tui -- --report-only` only the
//! report; with `IPCKIT_TUI_BENCH=open` only the report's `--open` figures, with
//! `IPCKIT_TUI_BENCH=criterion` only the criterion groups (`-- key_to_frame` picks some).

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use ipckit::top::{open_recording, run_loop, update, Action, SourceMsg, State, TopOptions};
use ipckit::{Event, EventFilter};
use ratatui::backend::TestBackend;
use ratatui::backend::{Backend, ClearType, WindowSize};
use ratatui::buffer::Cell;
use ratatui::crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Position, Size};
use ratatui::Terminal;
use std::collections::VecDeque;
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

/// A `TestBackend` that notes when a flushed frame starts or stops showing `marker`.
struct Watch {
    inner: TestBackend,
    marker: &'static str,
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
            row.contains(self.marker)
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
    key_latency(c, "under_100k_events_per_s", &[], false);
    key_latency(
        c,
        "under_100k_events_per_s_progress_focused_paused_flagged",
        &[
            press(KeyCode::Tab),
            press(KeyCode::Char('j')),
            press(KeyCode::Char(' ')),
        ],
        false,
    );
    key_latency(
        c,
        "under_100k_events_per_s_drilled_into_a_gauge",
        &[
            press(KeyCode::Tab),
            press(KeyCode::Char('j')),
            press(KeyCode::Enter),
        ],
        false,
    );
}

/// As [`key_latency_under_flood`], the filter bar being edited with three terms whose per-term
/// counts are shown (and recounted over a 1M history as one of them changes): the keys type an `x`
/// at the end of the last term and delete it, in turn.
fn key_latency_with_term_counts(c: &mut Criterion) {
    key_latency(
        c,
        "typing_a_filter_with_per_term_counts_under_100k_events_per_s",
        &[],
        true,
    );
}

/// [`key_latency_under_flood`] after the keys `setup` (sent once the loop runs); with `terms`, the
/// keys pressed edit a filter whose per-term counts are shown instead of toggling the help.
fn key_latency(c: &mut Criterion, name: &str, setup: &[KeyEvent], terms: bool) {
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
        marker: if terms {
            "res:render-*x"
        } else {
            "or Esc closes"
        },
        seen: Arc::clone(&seen),
    };
    let running = runtime.spawn(async move {
        let mut terminal = Terminal::new(backend).expect("terminal");
        let mut state = state(1_000_000, None);
        if terms {
            update(&mut state, Action::FilterStart);
            for c in "log.* text:disk res:render-*".chars() {
                update(&mut state, Action::FilterInput(InputRequest::InsertChar(c)));
            }
        }
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
    let mut typed = false;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                // Press at a varying point of the frame period, not always just after a frame.
                std::thread::sleep(Duration::from_micros((i * 7919) % 33_000));
                let before = seen.lock().expect("not poisoned").0;
                let pressed = Instant::now();
                let code = match (terms, typed) {
                    (false, _) => KeyCode::Char('?'),
                    (true, false) => KeyCode::Char('x'),
                    (true, true) => KeyCode::Backspace,
                };
                typed = !typed;
                key_tx
                    .send(Ok(TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))))
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
    key_latency_under_flood,
    key_latency_with_term_counts
);

#[path = "support/dataset.rs"]
mod dataset;
use dataset::{realistic, Rng};

/// Feeds `n` realistic events to `state`, 4,096 at a time, as a source delivers them.
fn feed_realistic(state: &mut State, n: u64) {
    let mut rng = Rng::new(42);
    let mut i = 0;
    while i < n {
        let batch: Vec<Arc<Event>> = (i..(i + BATCH as u64).min(n))
            .map(|j| Arc::new(realistic(&mut rng, j)))
            .collect();
        i += batch.len() as u64;
        update(
            state,
            Action::Events {
                events: batch,
                at: SystemTime::now(),
            },
        );
    }
}

fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// In a fresh process: `n` realistic events into the monitor's state (`log`) or into an
/// `Arc<Event>` ring (`arc_ring`); prints the resident bytes per event.
fn memory_child(which: &str, n: u64) {
    let before = rss();
    let after = if which == "log" {
        let mut state = state(n as usize, None);
        feed_realistic(&mut state, n);
        assert_eq!(state.history_len() as u64, n);
        let after = rss();
        std::mem::forget(state);
        after
    } else {
        let mut rng = Rng::new(42);
        let mut ring = VecDeque::new();
        for i in 0..n {
            ring.push_back(Arc::new(realistic(&mut rng, i)));
        }
        let after = rss();
        std::mem::forget(ring);
        after
    };
    println!("{}", (after - before) as f64 / n as f64);
}

fn memory_per_event(which: &str, n: u64) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe)
        .env("IPCKIT_TUI_BENCH_MEMORY", format!("{which} {n}"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The fastest of three timings of `f`.
fn fastest(mut f: impl FnMut() -> Duration) -> Duration {
    (0..3).map(|_| f()).min().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Types `expr` into the filter bar of `state` (whose filter is empty) and times its last key and
/// the background scan to its end: the re-filter, as the monitor does it, in `SCAN_SLICE` slices.
fn refilter(state: &mut State, expr: &str) -> (Duration, usize) {
    update(state, Action::FilterStart);
    let mut chars: Vec<char> = expr.chars().collect();
    let last = chars.pop().unwrap_or(' ');
    for c in chars {
        update(state, Action::FilterInput(InputRequest::InsertChar(c)));
    }
    let start = Instant::now();
    update(state, Action::FilterInput(InputRequest::InsertChar(last)));
    update(state, Action::FilterCommit);
    while state.has_background_work() {
        update(state, Action::Scan);
    }
    let took = start.elapsed();
    let count = state.match_count();
    update(state, Action::FilterStart);
    for _ in expr.chars() {
        update(state, Action::FilterInput(InputRequest::DeletePrevChar));
    }
    update(state, Action::FilterCommit);
    (took, count)
}

const FILTERS: [(&str, &str); 3] = [
    ("type glob", "task.*"),
    ("resource glob", "res:job-01??"),
    ("text", "text:timeout"),
];

fn refilter_report(n: u64) {
    let mut state = state(n as usize, None);
    feed_realistic(&mut state, n);
    let ring: Option<Vec<Arc<Event>>> = (n <= 1_000_000).then(|| {
        let mut rng = Rng::new(42);
        (0..n).map(|i| Arc::new(realistic(&mut rng, i))).collect()
    });
    for (name, expr) in FILTERS {
        let mut count = 0;
        let took = fastest(|| {
            let (took, c) = refilter(&mut state, expr);
            count = c;
            took
        });
        let mut line = format!(
            "re-filter {n} kept events by {name} `{expr}`: {:.1} ms ({count} matches)",
            ms(took)
        );
        if let Some(ring) = &ring {
            let filter = EventFilter::parse(expr).unwrap_or_default();
            let mut ring_count = 0;
            let ring_took = fastest(|| {
                let start = Instant::now();
                ring_count = ring.iter().filter(|e| filter.matches(e)).count();
                start.elapsed()
            });
            assert_eq!(ring_count, count, "{expr}");
            line.push_str(&format!(
                "; EventFilter::matches over an Arc<Event> ring {:.1} ms ({:.1}x the log's time)",
                ms(ring_took),
                ring_took.as_secs_f64() / took.as_secs_f64()
            ));
        }
        println!("  {line}");
    }
    if n >= 10_000_000 {
        let mut terminal = Terminal::new(TestBackend::new(160, 48)).expect("test backend");
        for (name, setup) in [("live", ""), ("filtered `log.warn`", "log.warn")] {
            if !setup.is_empty() {
                update(&mut state, Action::FilterStart);
                for c in setup.chars() {
                    update(&mut state, Action::FilterInput(InputRequest::InsertChar(c)));
                }
                update(&mut state, Action::FilterCommit);
                while state.has_background_work() {
                    update(&mut state, Action::Scan);
                }
            }
            let took = fastest(|| {
                let start = Instant::now();
                for _ in 0..10 {
                    terminal
                        .draw(|f| ipckit::top::ui::render(black_box(&state), f))
                        .expect("draw");
                }
                start.elapsed() / 10
            });
            println!("  a frame with {n} events kept, {name}: {:.2} ms", ms(took));
        }
        update(&mut state, Action::ScrubOldest);
        for _ in 0..100 {
            update(&mut state, Action::ScrubJumpForward);
        }
        let took = fastest(|| {
            let start = Instant::now();
            update(&mut state, Action::ScrubForward);
            terminal
                .draw(|f| ipckit::top::ui::render(black_box(&state), f))
                .expect("draw");
            start.elapsed()
        });
        println!(
            "  a scrub step (→, the gauges rebuilt) and its frame with {n} events kept: {:.2} ms",
            ms(took)
        );
    }
    std::mem::forget((state, ring));
}

/// `--open` of a recording of `n` realistic events: the file written as `events --format json`
/// writes it, then read by the recording source into the monitor's state as the runtime does, a
/// frame drawn after the first batch (the first screen) and the time the whole count is in.
fn open_report(n: u64) {
    let path = std::env::temp_dir().join(format!("ipckit-tui-bench-{}.ndjson", std::process::id()));
    {
        let file = std::fs::File::create(&path).expect("temp file");
        let mut out = std::io::BufWriter::new(file);
        let mut rng = Rng::new(42);
        for i in 0..n {
            let event = realistic(&mut rng, i);
            serde_json::to_writer(&mut out, &event).expect("write");
            std::io::Write::write_all(&mut out, b"\n").expect("write");
        }
        std::io::Write::flush(&mut out).expect("flush");
    }
    let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut firsts = Vec::new();
    let mut wholes = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let recording = open_recording(&path).expect("recording");
        let mut rx = recording.spawn();
        let mut state = state(ipckit::cli::RECORDING_HISTORY, None);
        let mut terminal = Terminal::new(TestBackend::new(160, 48)).expect("test backend");
        let mut first = None;
        runtime.block_on(async {
            while let Some(msg) = rx.recv().await {
                update(&mut state, Action::from_source(msg, SystemTime::now()));
                if first.is_none() && state.history_len() > 0 {
                    terminal
                        .draw(|f| ipckit::top::ui::render(&state, f))
                        .expect("draw");
                    first = Some(started.elapsed());
                }
            }
        });
        let whole = started.elapsed();
        assert_eq!(state.match_count() as u64, n);
        assert!(state
            .recording()
            .is_some_and(|r| r.loaded && r.skipped == 0));
        firsts.push(first.unwrap_or(whole));
        wholes.push(whole);
    }
    let _ = std::fs::remove_file(&path);
    println!(
        "--open of a {n}-event recording ({:.0} MB of NDJSON): first screen in {:.0} ms, full count in {:.0} ms (fastest of 3; runs: {:?})",
        bytes as f64 / 1e6,
        ms(*firsts.iter().min().unwrap_or(&Duration::ZERO)),
        ms(*wholes.iter().min().unwrap_or(&Duration::ZERO)),
        wholes.iter().map(|d| format!("{:.0} ms", ms(*d))).collect::<Vec<_>>()
    );
}

fn report() {
    println!("\n== report: the monitor's log on the compact store ==");
    for n in [1_000_000u64, 10_000_000] {
        let log = memory_per_event("log", n);
        let ring = (n == 1_000_000)
            .then(|| memory_per_event("arc_ring", n))
            .flatten();
        match (log, ring) {
            (Some(log), Some(ring)) => println!(
                "{n} realistic events, resident bytes per event: monitor state (log, gauges, timeline, checkpoints) {log:.0} ({:.0} MB); an Arc<Event> ring of the same events {ring:.0} ({:.1}x the log's)",
                log * n as f64 / 1e6,
                ring / log
            ),
            (Some(log), None) => println!(
                "{n} realistic events, resident bytes per event: monitor state (log, gauges, timeline, checkpoints) {log:.0} ({:.0} MB)",
                log * n as f64 / 1e6
            ),
            _ => println!("{n}: could not run the measuring child process"),
        }
    }
    refilter_report(1_000_000);
    refilter_report(10_000_000);
    open_report(1_000_000);
}

fn main() {
    if let Ok(spec) = std::env::var("IPCKIT_TUI_BENCH_MEMORY") {
        let mut parts = spec.split_whitespace();
        let which = parts.next().unwrap_or("log").to_owned();
        let n = parts
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000);
        memory_child(&which, n);
        return;
    }
    let has = |flag: &str| std::env::args().any(|a| a == flag);
    let only = std::env::var("IPCKIT_TUI_BENCH").unwrap_or_default();
    if only == "open" {
        open_report(1_000_000);
        return;
    }
    if !has("--report-only") {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    if !(has("--list") || has("--test") || only == "criterion") {
        report();
    }
}
