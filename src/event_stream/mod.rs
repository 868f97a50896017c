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
//! ## History on disk
//!
//! [`EventBus::open`] opens a bus on a data dir ([`crate::store::disk`]): segment files of checksummed
//! records, kept across restarts. History is then the data dir plus memory: memory holds the newest
//! `history_size` events (within `history_bytes`) as above, the data dir everything its retention
//! limits keep.
//!
//! - **Publishing.** Under the bus lock, before the event is delivered or kept in memory, its record
//!   is appended to the data dir's active segment (a copy into a memory map, no system call), so ids
//!   are in file order and an id returned is in the OS's page cache: killing the process, even with
//!   `kill -9`, loses nothing acknowledged; the data dir's `FsyncPolicy` decides what a power loss
//!   may lose. When the append fails (a full disk, an I/O error), [`EventBus::try_publish`] refuses
//!   the event: nothing delivered, no id taken, the event handed back in
//!   [`PublishError::NotStored`], nothing stored before touched. [`EventBus::publish`] cannot return
//!   an error, so it delivers the event and keeps it in memory only; the failure is counted in
//!   [`DiskStats::errors`] and reported by [`EventBus::maintain_disk`].
//! - **Starting.** Ids go on after the highest id the data dir ever stored, and its newest
//!   `history_size` events are loaded into memory, so replay and the monitor see them at once.
//! - **Reading.** [`EventBus::history_page`], and so [`CatchUp`] (a reader that fell behind, or a
//!   replay [`Replay::All`], [`Replay::FromId`] or [`Replay::FromTime`]), reads what is older than
//!   memory from the segments, without holding the bus lock and without keeping what it read:
//!   memory stays bounded by `history_size`. A replay from a time starts at the first record stamped
//!   that late. [`EventBus::history`], [`EventBus::history_arc`] and the replay of
//!   [`EventBus::subscribe_with_replay`] build their whole answer at once, so they read memory only.
//! - **Oldest.** [`BusStats::oldest_id`] (and the oldest id a page reports) is the oldest id readable
//!   in memory or on disk: once retention deletes a segment, its ids are no longer claimed.
//!
//! ## Filter expressions
//!
//! The text syntax shared by the monitor's filter bar, `--filter`, and [`EventFilter::parse`]:
//!
//! ```text
//! task.* !task.progress res:render-* text:"disk slow" since:5m until:id:900
//! frame>89 node=n-1 node=n-2 job.owner!=ci-* !exit_code=0 note="disk slow"
//! ```
//!
//! Terms are separated by spaces and all must hold; several terms of one kind are alternatives.
//! `GLOB` or `type:GLOB` matches the event type, `res:GLOB` (or `resource:GLOB`) the resource id,
//! `text:WORD` a case-insensitive substring of any key or value in the data, `since:T` / `until:T` bound
//! the time (RFC 3339, a duration ago such as `30s`, `5m`, `2h`, or `@SECONDS` since the epoch; compared
//! to the microsecond, the precision the bus keeps) or the id
//! (`id:N`), and `!TERM` excludes what the term matches. In a glob, `*` matches any run of characters
//! (dots included), `?` exactly one, and everything else itself.
//!
//! Data fields: `KEY=GLOB`, `KEY!=GLOB`, `KEY>N`, `KEY>=N`, `KEY<N`, `KEY<=N`, where `KEY` is a dotted
//! path into the event's data ([`FieldPath`]: `exit_code`, `job.node`; a key of digits indexes an array,
//! `items.0.name`; a member whose name holds dots, such as `http.status_code`, is found too).
//! - `=` matches a glob against the value's text: a string's content, any other value's compact JSON
//!   (`exit_code=2`, `ok=true`, `parent=null`). `!=` holds when the field exists and its text does not
//!   match.
//! - The comparisons take a number (`100`, `-2.5`, `1e6`; whole numbers compare exactly, so 64-bit ids and
//!   nanosecond times are safe) and hold for a number, or a string whose whole text is one (`"42"`, not
//!   `" 42"`); `true`, `null`, arrays, objects and other strings never do. `frame>abc` is an error.
//! - An event without the field matches none of these, so `!KEY=...` keeps it.
//! - The `=` and comparison terms on one path are alternatives and different paths must all hold, as in
//!   `docker events --filter`: `node=a node=b frame>10` is (node a or b) and frame above 10, while
//!   `frame<10 frame>20` is frame outside 10..=20. For a range exclude the top: `frame>=10 !frame>=20`.
//!   Each `!=` term must hold on its own: `node!=a node!=b` is a node that is neither.
//! - Quote values with spaces: `note="disk slow"`.
//!
//! An unquoted `=`, `<` or `>` makes a term a data-field term, unless a `type:`, `res:`, `text:`, `since:`
//! or `until:` prefix comes first: `a=b` is the data field `a`, and an event type holding such a
//! character is matched with `type:a=b`. `type=x` is the data's `type` field, not the event type.
//! A word of letters and `_` before a `:` that is none of these prefixes is an error that suggests
//! `KEY=VALUE` (`exit_code:2`).

mod bus;
mod catch_up;
#[cfg(unix)]
mod durable;
mod event;
mod filter;
#[cfg(feature = "tui")]
pub(crate) use filter::split_terms;
mod history;
mod subscriber;
mod sync;

pub use bus::{
    BusStats, DiskStats, EventBus, EventBusConfig, EventPublisher, Replay, ReplayGap,
    SlowConsumerPolicy, SubscriberStats,
};
pub use catch_up::{CatchUp, Delivery, Loss, LossReason};
#[cfg(unix)]
pub use durable::{DiskReport, PublishError};
pub use event::{event_types, Event, EventId, EventRef, McpProgressPayload};
pub use filter::{
    Bound, Comparison, EventFilter, FieldPath, FieldTest, FilterError, Glob, Number, Term,
};
pub use subscriber::{
    BatchCount, EventStream, EventSubscriber, RecvFuture, RecvTimeoutError, TryIter,
};

/// Parses a `since:`/`until:` value: RFC 3339, a duration ago (`5m`), `@SECONDS`, or `id:N`.
///
/// # Errors
///
/// A sentence saying what was expected.
pub fn parse_bound(value: &str) -> Result<Bound, String> {
    filter::parse_bound(value, std::time::SystemTime::now())
}
