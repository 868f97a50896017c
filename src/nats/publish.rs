//! Publishing events to the stream with a window of outstanding acks.

use super::mapping::{self, header, Mapping};
use super::NatsError;
use crate::event_stream::{Event, EventId, EventRef, Loss};
use async_nats::header::HeaderName;
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Acks a [`Publisher`] waits for at most at once, by default.
pub const DEFAULT_WINDOW: usize = 256;

/// An event NATS stored (or had already: `duplicate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// The origin instance it was published under.
    pub instance: Arc<str>,
    /// Its id on its origin.
    pub origin_id: EventId,
    /// Its stream sequence.
    pub sequence: u64,
    /// The server had it already (a resend, dropped by message id).
    pub duplicate: bool,
}

/// What a [`Publisher`] calls when it runs into trouble it retries.
type Trouble = Box<dyn Fn(&str) + Send + Sync>;

/// Subjects kept for the event types seen, at most this many (then the cache starts over).
const SUBJECT_CACHE: usize = 1024;

/// An ack on its way, polled in place (so waiting for it can be cancelled without losing it).
type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

/// Where the ack of a published event is.
enum Ack {
    /// Not sent (the publish failed): it is sent again with the others not acknowledged.
    NotSent,
    /// Sent; the server's answer is awaited. (The mutex is never locked, only reached through
    /// `&mut`: it makes the publisher `Sync` at no cost.)
    Waiting(std::sync::Mutex<AckFuture>),
    /// The answer (or the failure) is in, not settled yet.
    Done(Result<PublishAck, String>),
}

/// An event ready to publish with [`Publisher::send_prepared`]: its JSON form as the payload (not
/// encoded again) and the fields its subject and headers are made of.
#[derive(Debug, Clone)]
pub struct Prepared {
    origin_id: EventId,
    time: SystemTime,
    event_type: String,
    resource: Option<String>,
    payload: Bytes,
}

impl Prepared {
    /// An event read in place ([`EventRef`]), its JSON text copied as it is.
    pub fn new(event: &EventRef<'_>) -> Self {
        Self {
            origin_id: event.id,
            time: event.timestamp,
            event_type: event.event_type.clone().into_owned(),
            resource: event.resource_id.as_deref().map(str::to_owned),
            payload: Bytes::copy_from_slice(event.json().as_bytes()),
        }
    }
}

/// One published event whose ack has not been settled: what its message is made of, so that it
/// can be published again (its headers are built again then, rather than kept for every event).
struct InFlight {
    instance: Arc<str>,
    origin_id: EventId,
    time: SystemTime,
    resource: Option<String>,
    lost: Option<Loss>,
    subject: Subject,
    payload: Bytes,
    ack: Ack,
}

/// Publishes events to the stream: each with its subject, headers and message id
/// ([`mapping`](super::mapping)), keeping up to `window` acks outstanding. When an ack fails (NATS
/// went away, or did not answer in time), it waits for the connection and publishes again, in order,
/// every event not acknowledged yet: the server drops those it already stored (same message id, within
/// the stream's duplicate window), so nothing is stored twice and nothing is skipped.
pub struct Publisher {
    js: jetstream::Context,
    mapping: Mapping,
    origin: Arc<str>,
    window: usize,
    in_flight: VecDeque<InFlight>,
    subjects: HashMap<String, Subject>,
    give_up_after: Option<Duration>,
    last_acked: Option<Acked>,
    trouble: Option<Trouble>,
    resent: u64,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("stream", &self.mapping.stream())
            .field("origin", &self.origin)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher on `js` to the stream of `mapping`, as origin `origin`, with up to `window` acks
    /// outstanding (at least 1). It retries until NATS acknowledges; see [`Publisher::give_up_after`].
    pub fn new(js: jetstream::Context, mapping: Mapping, origin: &str, window: usize) -> Self {
        Self {
            js,
            mapping,
            origin: Arc::from(origin),
            window: window.max(1),
            in_flight: VecDeque::new(),
            subjects: HashMap::new(),
            give_up_after: None,
            last_acked: None,
            trouble: None,
            resent: 0,
        }
    }

    /// Gives up (with [`NatsError::NotAcknowledged`]) when an event is not acknowledged this long
    /// after its first attempt failed, instead of retrying for ever.
    pub fn give_up_after(mut self, limit: Duration) -> Self {
        self.give_up_after = Some(limit);
        self
    }

    /// Calls `f` with a sentence each time publishing runs into trouble it will retry (NATS away, an
    /// ack refused).
    pub fn on_trouble(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.trouble = Some(Box::new(f));
        self
    }

    /// The origin name in the events' headers.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The last event NATS acknowledged, if any.
    pub fn last_acked(&self) -> Option<&Acked> {
        self.last_acked.as_ref()
    }

    /// Events published but not acknowledged yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Events published again after a failed ack.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Publishes `event` (its `id` being its id on the origin, instance `instance`); when the origin
    /// lost events just before it, `lost` says so in its headers. Waits first for the oldest ack if
    /// the window is full, and returns that ack.
    ///
    /// # Errors
    ///
    /// With [`Publisher::give_up_after`]: NATS did not acknowledge in time.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: an event may be published without its ack being tracked.
    pub async fn send(
        &mut self,
        instance: &Arc<str>,
        event: &Event,
        lost: Option<&Loss>,
    ) -> Result<Option<Acked>, NatsError> {
        let payload = Bytes::from(
            serde_json::to_vec(event).map_err(|e| NatsError::request("encoding an event", e))?,
        );
        let prepared = Prepared {
            origin_id: event.id,
            time: event.timestamp,
            event_type: event.event_type.clone(),
            resource: event.resource_id.clone(),
            payload,
        };
        self.send_prepared(instance, prepared, lost).await
    }

    /// [`Publisher::send`] of an event read in place ([`Prepared::new`]).
    ///
    /// # Errors
    ///
    /// With [`Publisher::give_up_after`]: NATS did not acknowledge in time.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: an event may be published without its ack being tracked.
    pub async fn send_prepared(
        &mut self,
        instance: &Arc<str>,
        prepared: Prepared,
        lost: Option<&Loss>,
    ) -> Result<Option<Acked>, NatsError> {
        let settled = if self.in_flight.len() >= self.window {
            Some(self.settle_oldest().await?)
        } else {
            None
        };
        let mut item = InFlight {
            instance: Arc::clone(instance),
            origin_id: prepared.origin_id,
            time: prepared.time,
            resource: prepared.resource,
            lost: lost.cloned(),
            subject: self.subject(&prepared.event_type),
            payload: prepared.payload,
            ack: Ack::NotSent,
        };
        // A failed send is retried with the ack: `settle_oldest` publishes again whatever has none.
        item.ack = self.publish(&item).await;
        self.in_flight.push_back(item);
        Ok(settled)
    }

    /// The subject of events of type `event_type`, built once per type.
    fn subject(&mut self, event_type: &str) -> Subject {
        if let Some(subject) = self.subjects.get(event_type) {
            return subject.clone();
        }
        if self.subjects.len() >= SUBJECT_CACHE {
            self.subjects.clear();
        }
        let subject = Subject::from(self.mapping.subject(event_type));
        self.subjects.insert(event_type.to_owned(), subject.clone());
        subject
    }

    /// The headers of `item`'s message.
    fn headers(&self, item: &InFlight) -> HeaderMap {
        let name = HeaderName::from_static;
        let mut headers = HeaderMap::new();
        headers.insert(
            name(header::ORIGIN),
            mapping::header_value(&self.origin).as_ref(),
        );
        headers.insert(name(header::ORIGIN_ID), item.origin_id.to_string());
        headers.insert(
            name(header::INSTANCE),
            mapping::header_value(&item.instance).as_ref(),
        );
        headers.insert(name(header::TIME), mapping::time_value(item.time));
        if let Some(resource) = &item.resource {
            headers.insert(
                name(header::RESOURCE),
                mapping::header_value(resource).as_ref(),
            );
        }
        if let Some(loss) = &item.lost {
            headers.insert(name(header::LOST), mapping::encode_loss(loss));
        }
        headers.insert(
            name(header::MSG_ID),
            format!("{}:{}", item.instance, item.origin_id),
        );
        headers
    }

    /// Waits for every outstanding ack; returns them, oldest first.
    ///
    /// # Errors
    ///
    /// With [`Publisher::give_up_after`]: NATS did not acknowledge in time.
    pub async fn flush(&mut self) -> Result<Vec<Acked>, NatsError> {
        let mut acked = Vec::with_capacity(self.in_flight.len());
        while !self.in_flight.is_empty() {
            acked.push(self.settle_oldest().await?);
        }
        Ok(acked)
    }

    /// Publishes `item`'s message; where its ack will be.
    async fn publish(&self, item: &InFlight) -> Ack {
        let message = PublishMessage::build()
            .payload(item.payload.clone())
            .headers(self.headers(item));
        match self.js.send_publish(item.subject.clone(), message).await {
            Ok(ack) => Ack::Waiting(std::sync::Mutex::new(ack.into_future())),
            Err(_) => Ack::NotSent,
        }
    }

    /// Waits until NATS has answered (or failed to answer) for the oldest event in flight, without
    /// settling it; returns at once when nothing is in flight.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the answer is kept for [`Publisher::settle`] whenever it comes.
    pub async fn answered(&mut self) {
        let Some(front) = self.in_flight.front_mut() else {
            return;
        };
        if let Ack::Waiting(ack) = &mut front.ack {
            let ack = ack
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let result = ack.await.map_err(|e| e.to_string());
            front.ack = Ack::Done(result);
        }
    }

    /// Settles the oldest event in flight: waits for its ack (on failure publishing every
    /// unacknowledged event again, and waiting again) and returns it. After
    /// [`Publisher::answered`], an ack that came in is returned without waiting.
    ///
    /// # Errors
    ///
    /// Nothing is in flight, or, with [`Publisher::give_up_after`], NATS did not acknowledge in
    /// time.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe while it publishes again (events may be published once more: the server
    /// drops them by message id).
    pub async fn settle(&mut self) -> Result<Acked, NatsError> {
        self.settle_oldest().await
    }

    /// Waits for the oldest ack; on failure publishes every unacknowledged event again and waits
    /// again.
    async fn settle_oldest(&mut self) -> Result<Acked, NatsError> {
        let mut failing_since: Option<Instant> = None;
        let mut last_problem = String::new();
        loop {
            self.answered().await;
            let Some(front) = self.in_flight.front_mut() else {
                return Err(NatsError::request("publishing", "nothing to acknowledge"));
            };
            let origin_id = front.origin_id;
            let result = match std::mem::replace(&mut front.ack, Ack::NotSent) {
                Ack::Done(result) => result,
                Ack::NotSent | Ack::Waiting(_) => Err("not sent".to_owned()),
            };
            match result {
                Ok(ack) => {
                    let Some(item) = self.in_flight.pop_front() else {
                        return Err(NatsError::request("publishing", "nothing to acknowledge"));
                    };
                    let acked = Acked {
                        instance: item.instance,
                        origin_id: item.origin_id,
                        sequence: ack.sequence,
                        duplicate: ack.duplicate,
                    };
                    self.last_acked = Some(acked.clone());
                    return Ok(acked);
                }
                Err(problem) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if let Some(limit) = self.give_up_after {
                        if since.elapsed() >= limit {
                            return Err(NatsError::NotAcknowledged(limit));
                        }
                    }
                    if problem != last_problem {
                        if let Some(trouble) = self.trouble.as_ref() {
                            trouble(&format!(
                                "NATS did not acknowledge event #{} ({problem}); publishing the {} \
                                 unacknowledged events again when it answers",
                                origin_id,
                                self.in_flight.len()
                            ));
                        }
                        last_problem = problem;
                    }
                    self.wait_connected(since).await?;
                    self.resend_all().await;
                }
            }
        }
    }

    /// Waits until the client is connected (or the time allowed runs out).
    async fn wait_connected(&self, since: Instant) -> Result<(), NatsError> {
        let client = self.js.client();
        let mut pause = Duration::from_millis(20);
        loop {
            if client.connection_state() == async_nats::connection::State::Connected {
                // Not at full speed: an ack refused while connected (no stream yet) is retried
                // calmly.
                tokio::time::sleep(pause).await;
                return Ok(());
            }
            if let Some(limit) = self.give_up_after {
                if since.elapsed() >= limit {
                    return Err(NatsError::NotAcknowledged(limit));
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Publishes every event not acknowledged yet again, in order, dropping the old ack futures.
    async fn resend_all(&mut self) {
        let mut acks = Vec::with_capacity(self.in_flight.len());
        for item in &self.in_flight {
            acks.push(self.publish(item).await);
        }
        self.resent += acks.len() as u64;
        for (item, ack) in self.in_flight.iter_mut().zip(acks) {
            item.ack = ack;
        }
    }
}
