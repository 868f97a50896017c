//! Code written against the reference design's `event_stream` API, unchanged: every name and signature
//! of bus.md, at the crate root and under `ipckit::event_stream`.

use ipckit::event_stream::{
    self as es, event_types as types, EventId as Id, McpProgressPayload as Payload,
};
use ipckit::{
    event_types, Event, EventBus, EventBusConfig, EventFilter, EventId, EventPublisher,
    EventSubscriber, McpProgressPayload, SlowConsumerPolicy,
};
use std::time::{Duration, SystemTime};

fn takes_publisher(p: EventPublisher) -> EventPublisher {
    p.clone()
}

fn drain(sub: &EventSubscriber) -> Vec<Event> {
    sub.try_iter().collect()
}

#[test]
fn reference_style_code_compiles_and_behaves() {
    let config = EventBusConfig {
        history_size: 10,
        ..Default::default()
    };
    let _: usize = config.subscriber_buffer;
    let _: SlowConsumerPolicy = config.slow_consumer;
    assert_eq!(EventBusConfig::default().history_size, 1000);
    assert_eq!(EventBusConfig::default().subscriber_buffer, 256);
    assert_eq!(
        SlowConsumerPolicy::default(),
        SlowConsumerPolicy::DropOldest
    );
    let _ = (SlowConsumerPolicy::DropNewest, SlowConsumerPolicy::Block);
    println!("{config:?}");

    let bus = EventBus::new(config.clone());
    let same: EventBus = bus.clone();
    let _default = EventBus::default();
    let publisher = takes_publisher(bus.publisher());

    let filter = EventFilter::new()
        .event_type("task.*")
        .event_type(event_types::LOG_STDOUT)
        .resource("job-1")
        .since(SystemTime::UNIX_EPOCH)
        .until(SystemTime::now() + Duration::from_secs(3600));
    let filter2: EventFilter = filter.clone();
    println!("{filter2:?}");
    let all = EventFilter::default();
    let sub = bus.subscribe(filter);
    let everything = same.subscribe(all.clone());
    let mcp = bus.subscribe(EventFilter::new().mcp_progress());
    let _: &EventFilter = sub.filter();

    publisher.publish(Event::with_resource(
        types::TASK_STARTED,
        "job-1",
        serde_json::json!({}),
    ));
    publisher.progress("job-1", 5, 10, "half");
    publisher.mcp_progress("tok", 1.0, None, None);
    publisher.log("job-1", "info", "hello");
    publisher.stdout("job-1", "out");
    publisher.stderr("job-1", "err");
    publisher.task_started("job-1", serde_json::json!({"a": 1}));
    publisher.task_completed("job-1", serde_json::json!("ok"));
    publisher.task_failed("job-1", "bad");
    publisher.task_cancelled("job-1");
    bus.publish(Event::new(
        event_types::SYSTEM_ERROR,
        serde_json::Value::Null,
    ));

    let got = drain(&sub);
    let types_seen: Vec<&str> = got.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types_seen,
        [
            "task.started",
            "task.progress",
            "log.stdout",
            "task.started",
            "task.completed",
            "task.failed",
            "task.cancelled"
        ]
    );
    assert_eq!(everything.try_iter().count(), 11);
    let event: Event = mcp.recv().unwrap();
    let payload: McpProgressPayload = serde_json::from_value(event.data).unwrap();
    assert_eq!(payload, Payload::new("tok", 1.0, None, None::<String>));

    match sub.recv_timeout(Duration::from_millis(5)) {
        Ok(_) => panic!("nothing was published"),
        Err(e) => assert!(e.is_timeout()),
    }
    for e in everything.try_iter() {
        let _: Id = e.id;
    }
    let history: Vec<Event> = bus.history(&all);
    assert_eq!(history.len(), 10, "history_size 10 of 11 published");
    let first: EventId = history[0].id;
    assert_eq!(first, 2);
    bus.clear_history();
    assert!(bus.history(&EventFilter::new()).is_empty());
    assert!(EventFilter::new().matches(&Event::new("x", serde_json::Value::Null)));

    // The event constructors and public fields.
    let mut e = Event::mcp_progress("t", 1.0, Some(2.0), Some("m"));
    e.resource_id = Some("r".to_string());
    e.event_type = es::event_types::MCP_PROGRESS.to_string();
    let _: SystemTime = e.timestamp;
    let _: serde_json::Value = e.data.clone();
    let json = serde_json::to_string(&e).unwrap();
    let _back: Event = serde_json::from_str(&json).unwrap();
    let _ = (
        Event::log("r", "warn", "w"),
        Event::stdout("r", "l"),
        Event::stderr("r", "l"),
    );
    for name in [
        event_types::TASK_CREATED,
        event_types::TASK_PAUSED,
        event_types::TASK_RESUMED,
        event_types::LOG_INFO,
        event_types::LOG_WARN,
        event_types::LOG_ERROR,
        event_types::LOG_STDERR,
        event_types::FILE_UPLOAD_PROGRESS,
        event_types::FILE_DOWNLOAD_PROGRESS,
        event_types::SYSTEM_SHUTDOWN,
        event_types::TASK_PROGRESS,
    ] {
        assert!(name.contains('.'));
    }

    // The subscriber's iterators, and its type is Send.
    let sub = bus.subscribe(EventFilter::new());
    publisher.publish(Event::new("a", serde_json::Value::Null));
    let handle = std::thread::spawn(move || sub.iter().next().map(|e| e.event_type));
    assert_eq!(handle.join().unwrap().as_deref(), Some("a"));
}
