//! # ipckit
//!
//! A publish-subscribe event bus for processes that run long jobs, and the pieces of `ipckit-top`,
//! the terminal monitor that watches it.
//!
//! ```
//! use ipckit::{EventBus, Event, EventFilter};
//!
//! let bus = EventBus::new(Default::default());
//! let publisher = bus.publisher();
//!
//! // Subscribe to task events
//! let mut subscriber = bus.subscribe(
//!     EventFilter::new().event_type("task.*")
//! );
//!
//! // Publish an event
//! publisher.publish(Event::new("task.started", serde_json::json!({"task_id": "123"})));
//!
//! // Receive the event
//! if let Some(event) = subscriber.try_recv() {
//!     println!("Received: {:?}", event);
//! }
//! ```
//!
//! ```
//! use ipckit::{EventBus, EventFilter, event_types};
//!
//! let bus = EventBus::new(Default::default());
//! let publisher = bus.publisher();
//!
//! // Subscribe using the MCP-progress convenience filter
//! let subscriber = bus.subscribe(EventFilter::new().mcp_progress());
//!
//! // Publish an MCP-compatible progress notification
//! publisher.mcp_progress("render-token-abc", 42.0, Some(100.0), Some("Rendering frame 42/100"));
//!
//! if let Some(event) = subscriber.try_recv() {
//!     let payload: ipckit::McpProgressPayload =
//!         serde_json::from_value(event.data).unwrap();
//!     assert_eq!(payload.progress_token, "render-token-abc");
//! }
//! ```
//!
//! The README's five lines:
//!
//! ```
//! # fn main() -> Result<(), ipckit::FilterError> {
//! let bus = ipckit::EventBus::default();
//! let sub = bus.subscribe("task.* res:render-*".parse()?);
//! bus.publisher().task_started("render-7", serde_json::json!({"frame": 0}));
//! let event = sub.recv_arc();
//! let past = bus.history(&ipckit::EventFilter::new().event_type("log.*"));
//! assert_eq!(event.map(|e| e.id), Some(1));
//! assert!(past.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! Beyond that: [`EventBus::subscribe_with_replay`] takes kept history and live events in one step,
//! [`EventSubscriber::recv_arc`] and [`EventSubscriber::recv_async`] share events instead of copying them,
//! [`EventBus::stats`] counts, and [`EventFilter::parse`] reads the text filter syntax
//! (`task.* !task.progress res:render-*`).
//!
//! Features: `transport` (serve and attach over a local socket), `tui` (the monitor) and `nats`
//! (the monitor, the command line and `bridge` on a NATS JetStream stream) are on by default; with
//! `default-features = false` only the bus is built.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

#[cfg(feature = "tui")]
pub mod cli;
pub mod demo;
pub mod epoch;
pub mod event_stream;
#[cfg(all(feature = "transport", unix))]
pub mod mcp;
#[cfg(feature = "nats")]
pub mod nats;
pub mod store;
#[cfg(feature = "tui")]
pub mod top;
#[cfg(feature = "transport")]
pub mod transport;

pub use event_stream::{
    event_types, BusStats, Event, EventBus, EventBusConfig, EventFilter, EventId, EventPublisher,
    EventRef, EventStream, EventSubscriber, FilterError, McpProgressPayload, RecvTimeoutError,
    Replay, ReplayGap, SlowConsumerPolicy, SubscriberStats,
};
