//! The event bus: publish-subscribe with glob filters, history with replay, slow-consumer policies and
//! MCP-compatible progress events. Everything here builds without the `transport` and `tui` features.

mod bus;
mod event;
mod filter;
mod history;
mod subscriber;
mod sync;

pub use bus::{
    BusStats, EventBus, EventBusConfig, EventPublisher, Replay, ReplayGap, SlowConsumerPolicy,
    SubscriberStats,
};
pub use event::{event_types, Event, EventId, McpProgressPayload};
pub use filter::{Bound, EventFilter, FilterError, Glob, Term};
pub use subscriber::{EventStream, EventSubscriber, RecvFuture, RecvTimeoutError};

/// Parses a `since:`/`until:` value: RFC 3339, a duration ago (`5m`), `@SECONDS`, or `id:N`.
///
/// # Errors
///
/// A sentence saying what was expected.
pub fn parse_bound(value: &str) -> Result<Bound, String> {
    filter::parse_bound(value, std::time::SystemTime::now())
}
