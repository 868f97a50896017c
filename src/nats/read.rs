//! Reading events back from the stream.

use super::mapping::{self, header, Mapping};
use super::NatsError;
use crate::event_stream::{Event, EventFilter, EventId, Loss, LossReason};
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::Stream as JsStream;
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

/// Where a [`StreamReader`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Everything the stream keeps.
    All,
    /// At this stream sequence (`--since id:N`). What the stream no longer keeps from there is a
    /// loss.
    Sequence(u64),
    /// At the first event the stream stored at or after this time.
    Time(SystemTime),
    /// The newest N events the stream keeps (the monitor's `--history`), then live.
    Newest(u64),
    /// Only events stored from now on.
    New,
}

/// An event read from the stream: its id is its stream sequence, and it keeps where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsEvent {
    /// The event; `id` is the stream sequence.
    pub event: Arc<Event>,
    /// Its origin (a machine or bus label); `-` for a message published without ipckit's headers.
    pub origin: Arc<str>,
    /// Its id on its origin, when the message says.
    pub origin_id: Option<EventId>,
}

/// What a [`StreamReader`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum NatsItem {
    /// An event matching the filter.
    Event(NatsEvent),
    /// Events of the stream this reader did not get (ids are stream sequences): the stream's limits
    /// dropped them before they were read, at this place.
    Lost(Loss),
    /// Events an origin lost before they reached NATS (ids are the origin's), said by the event that
    /// followed them; reported whatever the filter, since they may have matched it.
    OriginLost {
        /// The origin.
        origin: Arc<str>,
        /// The loss, in the origin's ids.
        loss: Loss,
    },
}

/// How the server narrows what it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Narrowing {
    /// The filter has no type terms a subject can express: the server sends every event.
    None,
    /// The server sends only these subjects.
    Server(Vec<String>),
    /// Several subjects were asked for and the server ignored them (servers before 2.10 do): it sends
    /// every event.
    Ignored(Vec<String>),
}

/// Reads events from the stream with an ordered consumer: from a [`Start`], then live, each event
/// once and in stream order, with its stream sequence as its id. The server sends what a subject
/// wildcard can narrow the filter to ([`Mapping::narrow`]); the whole filter is applied here, with the
/// event's origin ([`EventFilter::matches_from`]).
///
/// Loss is said in place:
/// - When the server sends every event of a stream that holds only ours, a jump in the sequence is
///   events the stream's limits dropped before this reader got them (or a start later than asked):
///   [`NatsItem::Lost`] with the exact count.
/// - When the server narrows, a start later than asked is a loss with no count (how many of the
///   dropped events matched cannot be known), and so is the stream dropping events this reader had
///   not read while matching ones were pending, noticed by [`StreamReader::check_evicted`].
/// - An event whose origin lost events before it ([`header::LOST`]): [`NatsItem::OriginLost`].
///
/// The ordered consumer survives NATS restarts: it is recreated after the last sequence read.
pub struct StreamReader {
    stream: JsStream,
    filter: EventFilter,
    mapping: Mapping,
    messages: Ordered,
    narrowing: Narrowing,
    exact: bool,
    expected: Option<u64>,
    last_seq: u64,
    last_pending: u64,
    floor: Option<u64>,
    queue: VecDeque<NatsItem>,
    origins: HashMap<String, Arc<str>>,
    unknown_origin: Arc<str>,
    read: u64,
    stop_at: Option<u64>,
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("stream", &self.mapping.stream())
            .field("filter", &self.filter.to_string())
            .field("narrowing", &self.narrowing)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl StreamReader {
    /// Opens a reader of `stream` (mapped by `mapping`) for the events `filter` matches, from `start`.
    ///
    /// # Errors
    ///
    /// The stream's info or the consumer could not be had.
    pub async fn open(
        mut stream: JsStream,
        mapping: Mapping,
        filter: EventFilter,
        start: Start,
    ) -> Result<Self, NatsError> {
        let info = stream
            .info()
            .await
            .map_err(|e| NatsError::request(format!("stream {}", mapping.stream()), e))?
            .clone();
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let (deliver_policy, expected) = match start {
            Start::All => (DeliverPolicy::All, None),
            Start::Sequence(n) => (
                DeliverPolicy::ByStartSequence {
                    start_sequence: n.max(1),
                },
                Some(n.max(1)),
            ),
            Start::Newest(n) => {
                let from = if info.state.messages == 0 {
                    last + 1
                } else {
                    (last + 1).saturating_sub(n).max(first)
                };
                (
                    DeliverPolicy::ByStartSequence {
                        start_sequence: from.max(1),
                    },
                    Some(from.max(1)),
                )
            }
            Start::New => (
                DeliverPolicy::ByStartSequence {
                    start_sequence: last + 1,
                },
                Some(last + 1),
            ),
            Start::Time(t) => {
                let nanos = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
                let start_time = async_nats::datetime::from_nanos(nanos)
                    .map_err(|e| NatsError::request("a start time", e))?;
                (DeliverPolicy::ByStartTime { start_time }, None)
            }
        };
        let asked = mapping.narrow(&filter);
        let mut config = OrderedConfig {
            deliver_policy,
            ..Default::default()
        };
        match asked.as_deref() {
            Some([one]) => config.filter_subject = one.clone(),
            Some(many) => config.filter_subjects = many.to_vec(),
            None => {}
        }
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|e| NatsError::request(format!("a consumer on {}", mapping.stream()), e))?;
        let pending_at_start = consumer.cached_info().num_pending;
        let granted = &consumer.cached_info().config;
        let narrowing = match asked {
            None => Narrowing::None,
            Some(asked)
                if granted.filter_subject.is_empty() && granted.filter_subjects.is_empty() =>
            {
                Narrowing::Ignored(asked)
            }
            Some(asked) => Narrowing::Server(asked),
        };
        let ours_only = info.config.subjects == [mapping.all_subjects()];
        let exact = ours_only && !matches!(narrowing, Narrowing::Server(_));
        let messages = consumer
            .messages()
            .await
            .map_err(|e| NatsError::request(format!("reading {}", mapping.stream()), e))?;
        let mut reader = Self {
            stream,
            filter,
            mapping,
            messages,
            narrowing,
            exact,
            expected,
            last_seq: expected.map_or(0, |e| e.saturating_sub(1)),
            last_pending: pending_at_start,
            floor: None,
            queue: VecDeque::new(),
            origins: HashMap::new(),
            unknown_origin: Arc::from("-"),
            read: 0,
            stop_at: None,
        };
        if let (false, Some(from)) = (reader.exact, expected) {
            if info.state.messages > 0 && first > from && from <= last {
                reader.queue.push_back(NatsItem::Lost(Loss {
                    count: None,
                    first_id: Some(from),
                    last_id: Some(first - 1),
                    reason: LossReason::HistoryEvicted,
                }));
            }
        }
        Ok(reader)
    }

    /// How the server narrows what it sends.
    pub fn narrowing(&self) -> &Narrowing {
        &self.narrowing
    }

    /// The stream sequence of the last message read (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Messages read from the stream so far (matching the filter or not).
    pub fn read(&self) -> u64 {
        self.read
    }

    /// Ends the reading at stream sequence `seq`: [`StreamReader::next`] returns `None` once it has
    /// read up to there, or once the stream had nothing more for it when it read its last message
    /// (what `events --no-follow` wants).
    pub fn stop_at(&mut self, seq: u64) {
        self.stop_at = Some(seq);
    }

    fn stopped(&self) -> bool {
        self.stop_at
            .is_some_and(|end| self.last_seq >= end || self.last_pending == 0)
    }

    /// The next event or loss; `None` if the consumer ended (it does not while the stream exists),
    /// or at the end given to [`StreamReader::stop_at`].
    ///
    /// # Errors
    ///
    /// The consumer failed in a way it does not recover from by itself.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<NatsItem, NatsError>> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(Ok(item));
            }
            if self.stopped() {
                return None;
            }
            match self.messages.next().await? {
                Ok(message) => self.take(&message.message),
                Err(e) => return Some(Err(NatsError::request("reading the stream", e))),
            }
        }
    }

    /// The next item if one is ready now, without waiting.
    pub fn try_next(&mut self) -> Option<Result<NatsItem, NatsError>> {
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(Ok(item));
            }
            match self.messages.poll_next_unpin(&mut cx) {
                std::task::Poll::Ready(Some(Ok(message))) => self.take(&message.message),
                std::task::Poll::Ready(Some(Err(e))) => {
                    return Some(Err(NatsError::request("reading the stream", e)))
                }
                std::task::Poll::Ready(None) | std::task::Poll::Pending => return None,
            }
        }
    }

    /// For a reader the server narrows: asks the stream which sequence it now starts at, so that
    /// events it dropped before this reader got them are reported ([`NatsItem::Lost`], with no count)
    /// when the next event shows they were skipped. Call it now and then (once a second) while
    /// reading; it does nothing for a reader that gets every event (gaps are exact there).
    ///
    /// # Errors
    ///
    /// The stream's info could not be had.
    pub async fn check_evicted(&mut self) -> Result<(), NatsError> {
        if self.exact || self.last_pending == 0 {
            return Ok(());
        }
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| NatsError::request(format!("stream {}", self.mapping.stream()), e))?;
        if info.state.first_sequence > self.last_seq + 1 {
            self.floor = Some(info.state.first_sequence);
        }
        Ok(())
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(origin) = self.origins.get(name) {
            return Arc::clone(origin);
        }
        let origin: Arc<str> = Arc::from(name);
        if self.origins.len() < 4096 {
            self.origins.insert(name.to_owned(), Arc::clone(&origin));
        }
        origin
    }

    fn take(&mut self, message: &async_nats::Message) {
        let Some((seq, pending, stored)) = message.reply.as_deref().and_then(reply_info) else {
            return;
        };
        self.read += 1;
        if self.exact {
            if let Some(expected) = self.expected.filter(|&e| seq > e) {
                self.queue.push_back(NatsItem::Lost(Loss {
                    count: Some(seq - expected),
                    first_id: Some(expected),
                    last_id: Some(seq - 1),
                    reason: LossReason::HistoryEvicted,
                }));
            }
        } else if let Some(floor) = self.floor {
            if seq >= floor {
                if seq > self.last_seq + 1 && floor > self.last_seq + 1 {
                    self.queue.push_back(NatsItem::Lost(Loss {
                        count: None,
                        first_id: Some(self.last_seq + 1),
                        last_id: Some(floor - 1),
                        reason: LossReason::HistoryEvicted,
                    }));
                }
                self.floor = None;
            }
        }
        if seq < self.expected.unwrap_or(0) {
            // Already read (a consumer recreated from an earlier point): once only.
            return;
        }
        self.expected = Some(seq + 1);
        self.last_seq = seq;
        self.last_pending = pending;
        // One pass over the headers, nothing allocated for them.
        let (mut origin_value, mut origin_id_value, mut lost_value, mut resource_value) =
            (None, None, None, None);
        if let Some(headers) = message.headers.as_ref() {
            for (name, values) in headers.iter() {
                let slot = match AsRef::<str>::as_ref(name) {
                    header::ORIGIN => &mut origin_value,
                    header::ORIGIN_ID => &mut origin_id_value,
                    header::LOST => &mut lost_value,
                    header::RESOURCE => &mut resource_value,
                    _ => continue,
                };
                *slot = values.first().map(|v| v.as_str());
            }
        }
        let origin = match origin_value {
            Some(name) => {
                let name = mapping::header_text(name);
                self.intern(&name)
            }
            None => Arc::clone(&self.unknown_origin),
        };
        let origin_id = origin_id_value.and_then(|v| v.parse().ok());
        if let Some(loss) = lost_value.and_then(mapping::decode_loss) {
            self.queue.push_back(NatsItem::OriginLost {
                origin: Arc::clone(&origin),
                loss,
            });
        }
        let mut event = decode_event(
            &message.payload,
            &message.subject,
            self.mapping.prefix(),
            resource_value,
            stored,
        );
        event.id = seq;
        if self.filter.matches_from(&event, Some(&origin)) {
            self.queue.push_back(NatsItem::Event(NatsEvent {
                event: Arc::new(event),
                origin,
                origin_id,
            }));
        }
    }
}

/// The stream sequence, pending count and stored time from a JetStream reply subject
/// (`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<nanos>.<pending>`, or the form with a
/// domain and account hash before the stream).
fn reply_info(reply: &str) -> Option<(u64, u64, SystemTime)> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let mut tokens = [""; 12];
    let mut count = 0;
    for token in rest.split('.') {
        if count < tokens.len() {
            tokens[count] = token;
        }
        count += 1;
    }
    // The old form has 7 tokens after the prefix; the new one 9 or more, two before the stream.
    let at = match count {
        7 => 0,
        n if n >= 9 => 2,
        _ => return None,
    };
    let field = |i: usize| tokens.get(at + i).and_then(|t| t.parse::<u64>().ok());
    let seq = field(3)?;
    let nanos = field(5)?;
    let pending = field(6)?;
    let stored = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
    Some((seq, pending, stored))
}

/// An event as a message carries it: ipckit's JSON, or (from other publishers) a looser JSON object
/// whose missing type comes from the subject, time from when the stream stored it and resource from
/// the header; anything that is not a JSON object becomes the data (as a string if it is not JSON).
fn decode_event(
    payload: &[u8],
    subject: &str,
    prefix: &str,
    resource: Option<&str>,
    stored: SystemTime,
) -> Event {
    if let Ok(event) = serde_json::from_slice::<Event>(payload) {
        return event;
    }
    #[derive(Deserialize)]
    struct Loose {
        #[serde(default)]
        timestamp: Option<f64>,
        #[serde(default)]
        event_type: Option<String>,
        #[serde(default)]
        resource_id: Option<String>,
        #[serde(default)]
        data: serde_json::Value,
    }
    let type_of_subject = || {
        subject
            .strip_prefix(prefix)
            .unwrap_or(subject)
            .split('.')
            .map(|token| {
                if token == "%" {
                    String::new()
                } else {
                    mapping::header_text(token).into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(".")
    };
    let resource = || resource.map(|r| mapping::header_text(r).into_owned());
    let (event_type, resource_id, data, timestamp) =
        match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(serde_json::Value::Object(map))
                if map.contains_key("event_type") || map.contains_key("data") =>
            {
                match serde_json::from_value::<Loose>(serde_json::Value::Object(map.clone())) {
                    Ok(loose) => (
                        loose.event_type.unwrap_or_else(type_of_subject),
                        loose.resource_id.or_else(resource),
                        loose.data,
                        loose.timestamp.and_then(crate::epoch::from_secs),
                    ),
                    Err(_) => (
                        type_of_subject(),
                        resource(),
                        serde_json::Value::Object(map),
                        None,
                    ),
                }
            }
            Ok(other) => (type_of_subject(), resource(), other, None),
            Err(_) => (
                type_of_subject(),
                resource(),
                serde_json::Value::String(String::from_utf8_lossy(payload).into_owned()),
                None,
            ),
        };
    let mut event = Event::new(&event_type, data);
    event.resource_id = resource_id;
    event.timestamp = timestamp.unwrap_or(stored);
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_subjects_of_both_forms_give_sequence_pending_and_time() {
        let (seq, pending, time) =
            reply_info("$JS.ACK.IPCKIT.c1.1.42.40.1732500000000000000.7").unwrap();
        assert_eq!((seq, pending), (42, 7));
        assert_eq!(
            time,
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_732_500_000)
        );
        let (seq, pending, _) =
            reply_info("$JS.ACK.dom.hash.IPCKIT.c1.1.43.41.1732500000000000000.0.tok").unwrap();
        assert_eq!((seq, pending), (43, 0));
        assert!(reply_info("_INBOX.x").is_none());
        assert!(reply_info("$JS.ACK.a.b").is_none());
    }

    #[test]
    fn foreign_payloads_become_events() {
        let now = SystemTime::now();
        let e = decode_event(
            br#"{"id":3,"timestamp":1.5,"event_type":"a","resource_id":null,"data":{}}"#,
            "ipckit.x",
            "ipckit.",
            None,
            now,
        );
        assert_eq!((e.id, &*e.event_type), (3, "a"));
        let e = decode_event(
            br#"{"resource_id":"r","data":{"k":1}}"#,
            "ipckit.task.a%20b.%",
            "ipckit.",
            None,
            now,
        );
        assert_eq!(e.event_type, "task.a b.");
        assert_eq!(e.resource_id.as_deref(), Some("r"));
        assert_eq!(e.timestamp, now);
        let e = decode_event(b"hello", "ipckit.log.info", "ipckit.", Some("job%0A1"), now);
        assert_eq!(e.data, serde_json::json!("hello"));
        assert_eq!(e.resource_id.as_deref(), Some("job\n1"));
        let e = decode_event(br#"{"level":"x"}"#, "ipckit.log", "ipckit.", None, now);
        assert_eq!(e.data, serde_json::json!({"level": "x"}));
        let e = decode_event(b"[1]", "ipckit.log", "ipckit.", None, now);
        assert_eq!(e.data, serde_json::json!([1]));
    }
}
