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
    // The source has read all 50 (it reads before it forwards: the 30 kept ones from history, the 20
    // live ones through its subscriber); give the loop time to take them in.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bus.stats().delivered < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the source did not read the events"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
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

async fn next_msg(rx: &mut mpsc::Receiver<ipckit::top::SourceMsg>) -> ipckit::top::SourceMsg {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a source message within 10 s")
        .expect("the source is running")
}

/// Events from `rx` until `n` have arrived, skipping counters; panics on anything else.
async fn events_from(rx: &mut mpsc::Receiver<ipckit::top::SourceMsg>, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    while ids.len() < n {
        match next_msg(rx).await {
            ipckit::top::SourceMsg::Events(batch) => ids.extend(batch.iter().map(|e| e.id)),
            ipckit::top::SourceMsg::Stats(_) | ipckit::top::SourceMsg::Connected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_source_attaches_reports_loss_and_resumes_without_gap_or_duplicate() {
    use ipckit::top::{spawn_socket_source, SourceMsg};
    use ipckit::transport::{Server, ServerConfig};
    let dir = std::env::temp_dir().join(format!("ipckit-top-tui-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("bus.sock");
    let bus = EventBus::new(Default::default());
    let serve = |bus: &EventBus| {
        let server = Server::bind(bus.clone(), ServerConfig::new(&socket)).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        (stop, task)
    };
    for _ in 0..5 {
        bus.publish(Event::stdout("a", "before"));
    }
    let (stop, task) = serve(&bus);
    let (mut rx, source) = spawn_socket_source(&socket);
    match next_msg(&mut rx).await {
        SourceMsg::Connected { socket, hosted } => {
            assert_eq!(socket, "bus.sock");
            assert!(!hosted);
        }
        other => panic!("expected Connected first, got {other:?}"),
    }
    assert_eq!(events_from(&mut rx, 5).await, [1, 2, 3, 4, 5]);
    stop.send(()).unwrap();
    task.await.unwrap();
    // The server says goodbye with a system.shutdown event, then the link drops.
    let mut saw_disconnect = false;
    for _ in 0..10 {
        match next_msg(&mut rx).await {
            SourceMsg::Disconnected { retry_in } => {
                assert!(retry_in <= Duration::from_secs(2));
                saw_disconnect = true;
                break;
            }
            SourceMsg::Events(_) | SourceMsg::Stats(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_disconnect);
    for _ in 0..3 {
        bus.publish(Event::stdout("a", "while away"));
    }
    let (stop, task) = serve(&bus);
    let mut ids = Vec::new();
    let mut reconnected = false;
    while ids.len() < 3 {
        match next_msg(&mut rx).await {
            SourceMsg::Connected { .. } => reconnected = true,
            SourceMsg::Events(batch) | SourceMsg::EventsFrom { events: batch, .. } => {
                ids.extend(batch.iter().map(|e| e.id))
            }
            SourceMsg::Stats(_) | SourceMsg::Disconnected { .. } => {}
            SourceMsg::Lost(loss) => panic!("the bus held everything, yet {loss:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(reconnected);
    assert_eq!(
        ids,
        [7, 8, 9],
        "resumes after the shutdown event (6), no gap, no duplicate"
    );
    source.abort();
    stop.send(()).unwrap();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Everything the in-process source sends until `n` events have arrived: (events' ids, losses).
async fn events_and_losses(
    rx: &mut mpsc::Receiver<ipckit::top::SourceMsg>,
    n: u64,
) -> (Vec<u64>, Vec<ipckit::top::Loss>) {
    use ipckit::top::SourceMsg;
    let (mut ids, mut losses) = (Vec::new(), Vec::new());
    let accounted = |ids: &Vec<u64>, losses: &Vec<ipckit::top::Loss>| {
        ids.len() as u64 + losses.iter().map(|l| l.count).sum::<u64>()
    };
    while accounted(&ids, &losses) < n {
        match next_msg(rx).await {
            SourceMsg::Events(batch) => ids.extend(batch.iter().map(|e| e.id)),
            SourceMsg::Lost(loss) => {
                // In place: right after the last event forwarded.
                assert_eq!(
                    loss.first_id,
                    Some(ids.last().map_or(1, |id| id + 1)),
                    "{loss:?} after {:?}",
                    ids.last()
                );
                losses.push(loss);
            }
            SourceMsg::Stats(_) | SourceMsg::Connected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    (ids, losses)
}

/// A bus whose subscribers buffer one event, with `history` events of history, and an in-process
/// source on it that has not read anything while 1,000 events were published (this runtime has one
/// thread, and the source's task has not run yet).
fn lagging_source(history: usize) -> (EventBus, mpsc::Receiver<ipckit::top::SourceMsg>) {
    let bus = EventBus::new(ipckit::EventBusConfig {
        history_size: history,
        subscriber_buffer: 1,
        ..Default::default()
    });
    let (rx, _task) = spawn_bus_source(&bus, "test", true);
    for i in 0..1000 {
        bus.publish(Event::stdout("r", &format!("line {i}")));
    }
    (bus, rx)
}

#[tokio::test]
async fn the_bus_source_fetches_what_it_missed_from_history_and_loses_nothing() {
    let (bus, mut rx) = lagging_source(2000);
    let (ids, losses) = events_and_losses(&mut rx, 1000).await;
    assert!(losses.is_empty(), "{losses:?}");
    assert_eq!(ids, (1..=1000).collect::<Vec<_>>());
    assert!(bus.stats().dropped >= 999, "the subscriber did lag");
}

#[tokio::test]
async fn the_bus_source_reports_what_history_no_longer_holds_in_its_place() {
    let (_bus, mut rx) = lagging_source(8);
    let (ids, losses) = events_and_losses(&mut rx, 1000).await;
    // History holds 993..=1000; the subscriber kept 1000; 1..=992 are gone.
    assert_eq!(
        losses,
        [ipckit::top::Loss {
            count: 992,
            first_id: Some(1),
            last_id: Some(992),
            reason: ipckit::top::LossReason::HistoryEvicted,
        }]
    );
    assert_eq!(ids, (993..=1000).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_bus_source_does_not_count_what_was_gone_before_it_subscribed() {
    let bus = EventBus::new(ipckit::EventBusConfig {
        history_size: 5,
        ..Default::default()
    });
    for _ in 0..20 {
        bus.publish(Event::stdout("r", "before"));
    }
    let (mut rx, _task) = spawn_bus_source(&bus, "test", true);
    bus.publish(Event::stdout("r", "after"));
    let (ids, losses) = events_and_losses(&mut rx, 6).await;
    assert!(losses.is_empty(), "{losses:?}");
    assert_eq!(ids, [16, 17, 18, 19, 20, 21]);
}
