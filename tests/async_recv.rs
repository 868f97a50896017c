//! The async receive path: `recv_async` and the `Stream`, on tokio.

use futures_core::Stream;
use ipckit::{Event, EventBus, EventBusConfig, EventFilter, SlowConsumerPolicy};
use serde_json::json;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_async_wakes_on_publish_and_ends_with_the_bus() {
    // Block, with a small buffer: the publisher thread must wait for the async reader, who must wake it.
    let bus = EventBus::new(EventBusConfig {
        subscriber_buffer: 8,
        slow_consumer: SlowConsumerPolicy::Block,
        block_timeout: None,
        ..Default::default()
    });
    let sub = bus.subscribe(EventFilter::new().event_type("task.*"));
    let publisher = bus.publisher();
    let writer = tokio::task::spawn_blocking(move || {
        for i in 0..1000 {
            publisher.publish(Event::new("task.n", json!(i)));
        }
    });
    let mut expected = 1;
    while expected <= 1000 {
        let event = tokio::time::timeout(Duration::from_secs(10), sub.recv_async())
            .await
            .expect("woken")
            .expect("open");
        assert_eq!(event.id, expected);
        expected += 1;
    }
    writer.await.unwrap();
    drop(bus);
    assert!(sub.recv_async().await.is_none());
}

#[tokio::test]
async fn recv_async_is_cancel_safe() {
    let bus = EventBus::default();
    let sub = bus.subscribe(EventFilter::new());
    assert!(
        tokio::time::timeout(Duration::from_millis(10), sub.recv_async())
            .await
            .is_err()
    );
    bus.publish(Event::new("a", json!(null)));
    assert_eq!(
        sub.recv_async().await.map(|e| e.id),
        Some(1),
        "the cancelled wait took nothing"
    );
}

struct Next<'a, S>(&'a mut S);

impl<S: Stream + Unpin> std::future::Future for Next<'_, S> {
    type Output = Option<S::Item>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut *self.0).poll_next(cx)
    }
}

#[tokio::test]
async fn stream_yields_shared_events() {
    let bus = EventBus::default();
    let mut stream = bus.subscribe(EventFilter::new()).into_stream();
    bus.publish(Event::new("a", json!(1)));
    bus.publish(Event::new("b", json!(2)));
    let first = Next(&mut stream).await.unwrap();
    let history = bus.history_arc(&EventFilter::new());
    assert!(
        std::sync::Arc::ptr_eq(&first, &history[0]),
        "zero-copy: the same allocation as history"
    );
    assert_eq!(Next(&mut stream).await.map(|e| e.id), Some(2));
    drop(bus);
    assert!(Next(&mut stream).await.is_none());
}
