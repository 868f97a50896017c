//! The run loop on a `TestBackend`, fed by a real bus through the in-process source, driven by
//! injected key presses.

mod tui_support;

use futures_core::Stream;
use ipckit::top::{run_loop, spawn_bus_source, Mode, State, TopOptions};
use ipckit::{Event, EventBus};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

struct Keys(mpsc::UnboundedReceiver<io::Result<TermEvent>>);

impl Stream for Keys {
    type Item = io::Result<TermEvent>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

fn press(tx: &mpsc::UnboundedSender<io::Result<TermEvent>>, code: KeyCode) {
    tx.send(Ok(TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_shows_bus_events_filters_as_typed_and_quits_on_q() {
    let bus = EventBus::new(Default::default());
    for i in 0..30 {
        bus.publish(Event::with_resource(
            "task.started",
            &format!("job-{i}"),
            serde_json::json!({}),
        ));
    }
    let (source, task) = spawn_bus_source(&bus, "test.sock", true);
    let (tx, rx) = mpsc::unbounded_channel();
    let options = TopOptions {
        utc: true,
        ..Default::default()
    };
    let mut state = State::new(&options).unwrap();
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let running = tokio::spawn(async move {
        let result = run_loop(
            &mut terminal,
            &mut state,
            Keys(rx),
            source,
            Duration::from_millis(10),
        )
        .await;
        (result, terminal, state)
    });
    for i in 0..20 {
        bus.publish(Event::stderr(&format!("job-{i}"), "oops"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    press(&tx, KeyCode::Char('/'));
    for c in "log.*".chars() {
        press(&tx, KeyCode::Char(c));
    }
    press(&tx, KeyCode::Enter);
    press(&tx, KeyCode::Char('k'));
    tokio::time::sleep(Duration::from_millis(200)).await;
    press(&tx, KeyCode::Char('q'));
    let (result, terminal, state) = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("q ends the loop")
        .unwrap();
    result.unwrap();
    task.abort();
    assert_eq!(state.history_len(), 50);
    assert_eq!(state.match_count(), 20);
    assert_eq!(state.mode(), Mode::Paused);
    assert_eq!(state.stats().subscribers, 1);
    let buffer = terminal.backend().buffer();
    let lines: Vec<String> = (0..30)
        .map(|y| (0..100).map(|x| buffer[(x, y)].symbol()).collect())
        .collect();
    let text = lines.join("\n");
    assert!(lines[0].contains("hosting test.sock"), "{text}");
    assert!(text.contains("20 of 50 match"), "{text}");
    assert!(text.contains("log.stderr"), "{text}");
    assert!(!text.contains("task.started"), "{text}");
}

#[tokio::test]
async fn the_loop_ends_when_the_keys_end_and_marks_a_closed_source() {
    let (tx, rx) = mpsc::unbounded_channel::<io::Result<TermEvent>>();
    let (source_tx, source) = mpsc::channel(4);
    drop(source_tx);
    let mut state = State::new(&TopOptions::default()).unwrap();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let keys_done = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(tx);
    });
    run_loop(
        &mut terminal,
        &mut state,
        Keys(rx),
        source,
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    keys_done.await.unwrap();
    assert!(matches!(
        state.connection(),
        ipckit::top::Connection::Disconnected { retry_at: None, .. }
    ));
}
