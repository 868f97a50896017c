//! The event bus: publish-subscribe with glob filters, history with replay, slow-consumer policies and
//! MCP-compatible progress events. Everything here builds without the `transport` and `tui` features.
//!
//! ## How delivery works
//!
//! One lock guards the bus: ids, the history ring, the subscriber index and every subscriber's queue.
//! Under it the publisher stamps the next id, appends the event to the history ring, and pushes an
//! [`Arc`](std::sync::Arc) of it onto the queue of each subscriber whose filter matches: one lock per
//! publish, however many subscribers receive the event. Subscribers are kept in an index (by exact event
//! type, by exact resource id, or in a short list of everything else) so a publish only tests the filters
//! that could match. The publisher never copies the event, allocates at most once (the `Arc`; nothing when
//! nobody subscribes), and never waits on a reader while it holds the lock. Readers take the same lock
//! once per read, or once per batch with [`EventSubscriber::try_recv_batch`] and
//! [`EventSubscriber::try_iter`], and the owned-`Event` methods copy the event after releasing it (or
//! take it without a copy when they hold the last reference).
//!
//! ## Slow consumers
//!
//! Each subscriber has a buffer of `subscriber_buffer` live events (replayed history does not count).
//! When a matching event arrives and the buffer is full:
//!
//! - [`SlowConsumerPolicy::DropOldest`]: the oldest buffered event is discarded and the new one kept, so a
//!   subscriber that fell behind resumes with the newest events.
//! - [`SlowConsumerPolicy::DropNewest`]: the new event is discarded; the buffered ones are kept.
//! - [`SlowConsumerPolicy::Block`]: the event is queued and the publisher, after releasing the bus lock,
//!   waits until the reader has made room for it, the subscriber is dropped, or `block_timeout` passes. On
//!   timeout the event is withdrawn from that subscriber and counted as lost. Publishes the subscriber does
//!   not match, subscribing, unsubscribing and history queries never wait for it.
//!
//! Every discarded event is counted: [`EventSubscriber::dropped`] is exact, and for every subscriber
//! delivered + dropped + still queued equals the matching events published since it subscribed.
//!
//! ## History
//!
//! History keeps the last `history_size` events, in id order, within `history_bytes` (whichever bound
//! is hit first), in the compact [event store](crate::store): per event a 28-byte row (id, time,
//! interned type and resource, where its data ends) and its data as compact JSON, in blocks; blocks
//! older than the newest `hot_history` events are LZ4-compressed. The publisher serializes the data
//! before it takes the lock and copies the bytes in under it; history holds no `Event`, so evicting
//! one frees nothing but, now and then, a whole block. A block is compressed by the publisher that
//! filled it, after releasing the lock. Queries and replays judge each type and resource glob once per
//! distinct string, search `text:` in the payload bytes, and decode only the events they return; the
//! shared copies subscribers got are remembered weakly for the last few hundred events, so history
//! hands out the same `Arc` while someone holds it.
//!
//! ## Filter expressions
//!
//! The text syntax shared by the monitor's filter bar, `--filter`, and [`EventFilter::parse`]:
//!
//! ```text
//! task.* !task.progress res:render-* text:"disk slow" since:5m until:id:900
//! ```
//!
//! Terms are separated by spaces and all must hold; several terms of one kind are alternatives.
//! `GLOB` or `type:GLOB` matches the event type, `res:GLOB` (or `resource:GLOB`) the resource id,
//! `text:WORD` a case-insensitive substring of any key or value in the data, `since:T` / `until:T` bound
//! the time (RFC 3339, a duration ago such as `30s`, `5m`, `2h`, or `@SECONDS` since the epoch; compared
//! to the microsecond, the precision the bus keeps) or the id
//! (`id:N`), and `!TERM` excludes what the term matches. In a glob, `*` matches any run of characters
//! (dots included), `?` exactly one, and everything else itself.

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
pub(crate) use event::epoch_seconds;
pub use event::{event_types, Event, EventId, EventRef, McpProgressPayload};
pub use filter::{Bound, EventFilter, FilterError, Glob, Term};
pub use subscriber::{EventStream, EventSubscriber, RecvFuture, RecvTimeoutError, TryIter};

/// Parses a `since:`/`until:` value: RFC 3339, a duration ago (`5m`), `@SECONDS`, or `id:N`.
///
/// # Errors
///
/// A sentence saying what was expected.
pub fn parse_bound(value: &str) -> Result<Bound, String> {
    filter::parse_bound(value, std::time::SystemTime::now())
}
