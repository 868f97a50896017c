//! The wire format: newline-delimited JSON frames, typed on both sides, and a line reader that never
//! holds more than its limit.
//!
//! Requests are decoded with serde into [`Request`] (unknown frame types, unknown fields, duplicate
//! fields, non-finite numbers and out-of-range integers are all decode errors that name the problem);
//! server frames are [`Reply`] values except event frames, which the server writes from bytes it
//! encoded once per event (see [`encode_event_frame`]). The full description is `docs/protocol.md`.

use super::client::RemoteStats;
use crate::event_stream::{Event, EventId, Loss, LossReason, Replay, ReplayGap};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The protocol version the hello frames carry. A client that says another version gets an error frame.
pub const PROTOCOL_VERSION: u32 = 2;

/// The protocol name in the server's hello frame.
pub const PROTOCOL_NAME: &str = "ipckit";

/// The default limit on the length of one request line, newline excluded: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// A request from a client. Every request carries an `id` chosen by the client, echoed in the reply.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Optional: states the protocol version the client speaks.
    Hello {
        /// Request id.
        id: u64,
        /// Protocol version; must be [`PROTOCOL_VERSION`].
        version: u32,
        /// A name for the client, for diagnostics.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// Publish one event; the reply is `published` with its id.
    Publish {
        /// Request id.
        id: u64,
        /// The event (a JSON object).
        #[serde(deserialize_with = "object")]
        event: NewEvent,
    },
    /// Publish several events in order; all are validated before any is published.
    PublishBatch {
        /// Request id.
        id: u64,
        /// The events, in order (JSON objects).
        #[serde(deserialize_with = "objects")]
        events: Vec<NewEvent>,
    },
    /// Subscribe with a filter expression and a replay request.
    Subscribe {
        /// Request id.
        id: u64,
        /// Filter expression (`task.* !task.progress res:render-*`); empty matches everything.
        #[serde(default)]
        filter: String,
        /// Which kept history to send before live events.
        #[serde(default)]
        replay: ReplaySpec,
        /// Flow control: the most bytes of this subscription's frames the client holds unread; the
        /// server sends more as the client acknowledges what it read (`ack`). Absent: no limit but
        /// the connection's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<u64>,
    },
    /// The client read `bytes` bytes of a subscription's frames (newlines included): the server may
    /// send that much more of it.
    Ack {
        /// Request id.
        id: u64,
        /// The subscription.
        sub: u64,
        /// Bytes read since the last `ack`.
        bytes: u64,
    },
    /// End a subscription.
    Unsubscribe {
        /// Request id.
        id: u64,
        /// The subscription number from `subscribed`.
        sub: u64,
    },
    /// Kept events matching a filter, oldest first.
    History {
        /// Request id.
        id: u64,
        /// Filter expression.
        #[serde(default)]
        filter: String,
        /// At most this many: the newest ones, or with `from_id` the oldest ones from there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
        /// Page through history: events with this id or later, oldest first (at most `limit`, 1000
        /// when absent). The reply then says the oldest id history holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_id: Option<EventId>,
    },
    /// Bus and server counters.
    Stats {
        /// Request id.
        id: u64,
    },
    /// Liveness check; the reply is `pong`.
    Ping {
        /// Request id.
        id: u64,
    },
}

impl Request {
    /// The request id.
    pub fn id(&self) -> u64 {
        match self {
            Request::Hello { id, .. }
            | Request::Publish { id, .. }
            | Request::PublishBatch { id, .. }
            | Request::Subscribe { id, .. }
            | Request::Ack { id, .. }
            | Request::Unsubscribe { id, .. }
            | Request::History { id, .. }
            | Request::Stats { id }
            | Request::Ping { id } => *id,
        }
    }
}

/// Decodes `T` only from a JSON object (serde's derived structs also take arrays, which the protocol
/// refuses).
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Visit(std::marker::PhantomData))
            .map(Object)
    }
}

fn object<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Object::<T>::deserialize(d).map(|o| o.0)
}

fn objects<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Vec::<Object<T>>::deserialize(d).map(|v| v.into_iter().map(|o| o.0).collect())
}

/// The request types, as `type` names them.
pub const REQUEST_TYPES: &[&str] = &[
    "hello",
    "publish",
    "publish_batch",
    "subscribe",
    "ack",
    "unsubscribe",
    "history",
    "stats",
    "ping",
];

/// The first integer literal in `line` (outside strings) that fits in neither a signed nor an
/// unsigned 64-bit integer; JSON parsers would silently round it to a float.
fn oversized_integer(line: &[u8]) -> Option<&str> {
    let (mut i, mut in_string, mut escaped) = (0, false, false);
    while i < line.len() {
        let b = line[i];
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < line.len()
                && matches!(line[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
            {
                i += 1;
            }
            let token = &line[start..i];
            if !token.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
                let (negative, digits) = match token.strip_prefix(b"-") {
                    Some(digits) => (true, digits),
                    None => (false, token),
                };
                let limit: &[u8] = if negative {
                    b"9223372036854775808"
                } else {
                    b"18446744073709551615"
                };
                if digits.len() > limit.len() || (digits.len() == limit.len() && digits > limit) {
                    return std::str::from_utf8(token).ok();
                }
            }
            continue;
        }
        i += 1;
    }
    None
}

/// Which kept history a subscription starts with: `"none"`, `"all"`, `{"last":N}`, `{"from_id":N}` or
/// `{"from_time":SECONDS}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ReplaySpec {
    /// Live events only.
    #[default]
    None,
    /// All kept matching events.
    All,
    /// The last N kept matching events.
    Last(usize),
    /// Kept matching events with this id or later.
    FromId(EventId),
    /// Kept matching events stamped at or after this time (seconds since the Unix epoch).
    FromTime(f64),
}

impl ReplaySpec {
    /// The bus's replay request.
    ///
    /// # Errors
    ///
    /// A sentence when `from_time` is not a representable time.
    pub fn to_replay(self) -> Result<Replay, String> {
        Ok(match self {
            ReplaySpec::None => Replay::None,
            ReplaySpec::All => Replay::All,
            ReplaySpec::Last(n) => Replay::Last(n),
            ReplaySpec::FromId(id) => Replay::FromId(id),
            ReplaySpec::FromTime(secs) => Replay::FromTime(
                time_from_secs(secs).filter(|_| secs >= 0.0).ok_or_else(|| {
                    format!("from_time {secs} is not a time since the Unix epoch (seconds, at least 0)")
                })?,
            ),
        })
    }

    /// The wire form of a bus replay request; a time is rounded down to the microsecond.
    pub fn from_replay(replay: Replay) -> Self {
        match replay {
            Replay::None => ReplaySpec::None,
            Replay::All => ReplaySpec::All,
            Replay::Last(n) => ReplaySpec::Last(n),
            Replay::FromId(id) => ReplaySpec::FromId(id),
            // Rounded down to the microsecond (the wire's precision), so no event at or after `t`
            // is left out.
            Replay::FromTime(t) => ReplaySpec::FromTime(floor_micros_secs(t)),
        }
    }
}

/// An event as a client publishes it. The server assigns the id; an `id` field is accepted (so the
/// JSON the server sends can be published again) and ignored.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Ignored: the server stamps its own id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Seconds since the Unix epoch; the server's clock when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<f64>,
    /// The event type, non-empty.
    pub event_type: String,
    /// The resource, if any.
    #[serde(default)]
    pub resource_id: Option<String>,
    /// The payload; `null` when absent.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl NewEvent {
    /// The event to publish, after the checks `docs/protocol.md` lists.
    ///
    /// # Errors
    ///
    /// A sentence naming the problem: an empty type, an unrepresentable timestamp, or an MCP progress
    /// payload whose progress is not a finite number or whose total is negative.
    pub fn into_event(self) -> Result<Event, String> {
        if self.event_type.is_empty() {
            return Err("event_type is empty".into());
        }
        if self.event_type == crate::event_types::MCP_PROGRESS {
            check_mcp_progress(&self.data)?;
        }
        let mut event = Event::new(&self.event_type, self.data);
        event.resource_id = self.resource_id;
        if let Some(secs) = self.timestamp {
            event.timestamp = time_from_secs(secs)
                .filter(|_| secs >= 0.0)
                .ok_or_else(|| {
                    format!(
                        "timestamp {secs} is not a time since the Unix epoch (seconds, at least 0)"
                    )
                })?;
        }
        Ok(event)
    }
}

fn check_mcp_progress(data: &serde_json::Value) -> Result<(), String> {
    let payload: crate::McpProgressPayload = serde_json::from_value(data.clone())
        .map_err(|e| format!("invalid MCP progress payload: {e}"))?;
    if !payload.progress.is_finite() || payload.progress < 0.0 {
        return Err(format!(
            "MCP progress must be a finite number of at least 0, got {}",
            payload.progress
        ));
    }
    if let Some(total) = payload.total {
        if !total.is_finite() || total < 0.0 {
            return Err(format!(
                "MCP total must be a finite number of at least 0, got {total}"
            ));
        }
    }
    Ok(())
}

/// Seconds since the epoch of `time` rounded down to the microsecond, computed in integers so that
/// the float (whose resolution today is about 0.24 µs) reads back as that microsecond.
fn floor_micros_secs(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_micros() as f64 / 1e6,
        Err(before) => -(before.duration().as_nanos().div_ceil(1000) as f64) / 1e6,
    }
}

/// Seconds since the epoch, negative before it.
pub(crate) fn secs_from_time(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// The time `secs` seconds from the epoch, rounded to the microsecond, if representable.
pub(crate) fn time_from_secs(secs: f64) -> Option<SystemTime> {
    let micros = (secs.abs() * 1e6).round();
    if !micros.is_finite() || micros >= u64::MAX as f64 {
        return None;
    }
    let magnitude = Duration::from_micros(micros as u64);
    if secs >= 0.0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// A frame the server sends, other than `event` and `history` frames (written from pre-encoded
/// bytes; see [`encode_event_frame`]). Clients decode every server frame into [`ServerFrame`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// The first frame on every connection.
    Hello(ServerHello),
    /// A request succeeded and has nothing more to say.
    Ok {
        /// Request id.
        id: u64,
    },
    /// Events were published; their ids, in order.
    Published {
        /// Request id.
        id: u64,
        /// The ids the bus gave the events.
        ids: Vec<EventId>,
    },
    /// A subscription is open; its event frames follow.
    Subscribed {
        /// Request id.
        id: u64,
        /// The subscription number event frames carry.
        sub: u64,
        /// Set when replay asked for events history no longer holds.
        #[serde(default)]
        gap: Option<GapFrame>,
    },
    /// Counters.
    Stats(StatsFrame),
    /// Reply to `ping`.
    Pong {
        /// Request id.
        id: u64,
    },
    /// Events of this subscription the server could not send (see [`LostFrame`]).
    Lost(LostFrame),
    /// A request or a line could not be handled.
    Error(ErrorFrame),
    /// The server is closing the connection (`reason`: `shutdown` or `slow_consumer`).
    Bye {
        /// Why.
        reason: String,
    },
}

/// The `lost` frame: events of subscription `sub` that will never come. It follows every event frame
/// of the subscription with an id below `first_id` and precedes every one with an id above `last_id`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct LostFrame {
    /// Subscription number.
    pub sub: u64,
    /// How many events; `null` when it cannot be known (a filtered replay of ids history no longer
    /// holds).
    pub count: Option<u64>,
    /// The first id of the range the lost events are in, if known.
    pub first_id: Option<EventId>,
    /// The last id of that range, if known.
    pub last_id: Option<EventId>,
    /// `lagged`, `history_evicted`, or a reason a newer server knows.
    pub reason: String,
}

impl LostFrame {
    /// The frame for `loss` on subscription `sub`.
    pub fn new(sub: u64, loss: &Loss) -> Self {
        Self {
            sub,
            count: loss.count,
            first_id: loss.first_id,
            last_id: loss.last_id,
            reason: loss.reason.as_str().to_owned(),
        }
    }

    /// The loss it reports.
    pub fn loss(&self) -> Loss {
        Loss {
            count: self.count,
            first_id: self.first_id,
            last_id: self.last_id,
            reason: LossReason::from_name(&self.reason),
        }
    }
}

/// The server's hello frame.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ServerHello {
    /// Always `ipckit`.
    pub protocol: String,
    /// The protocol version ([`PROTOCOL_VERSION`]).
    pub version: u32,
    /// The server software and its version.
    pub server: String,
    /// Identifies the bus being served: the same bus served again keeps it, a new bus gets another, so a
    /// reconnecting client knows whether ids continue.
    pub instance: String,
    /// The id of the last event published so far.
    pub last_id: EventId,
    /// The longest request line the server reads, in bytes.
    pub max_frame: usize,
}

/// The `gap` of a `subscribed` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct GapFrame {
    /// The first id asked for.
    pub requested: EventId,
    /// The oldest id history still held; replay started there.
    pub oldest_held: EventId,
}

impl From<ReplayGap> for GapFrame {
    fn from(gap: ReplayGap) -> Self {
        Self {
            requested: gap.requested,
            oldest_held: gap.oldest_held,
        }
    }
}

impl From<GapFrame> for ReplayGap {
    fn from(gap: GapFrame) -> Self {
        Self {
            requested: gap.requested,
            oldest_held: gap.oldest_held,
        }
    }
}

/// The `stats` frame: the request id and the counters, the bus's and the server's, as fields of
/// one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct StatsFrame {
    /// Request id.
    pub id: u64,
    /// The counters.
    #[serde(flatten)]
    pub stats: RemoteStats,
}

/// An `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorFrame {
    /// The request id, when the request got far enough to have one.
    pub id: Option<u64>,
    /// A stable machine-readable code.
    pub code: ErrorCode,
    /// A sentence naming the problem.
    pub message: String,
}

/// The codes of error frames, as they appear on the wire (`invalid_json`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line is not UTF-8.
    InvalidUtf8,
    /// The line is not JSON (syntax, truncation, trailing garbage, nesting deeper than 128).
    InvalidJson,
    /// The line is longer than the limit.
    FrameTooLarge,
    /// The `type` is not a request type.
    UnknownType,
    /// The frame has unknown, duplicate, missing or mistyped fields.
    InvalidFrame,
    /// An event failed the checks of `docs/protocol.md`.
    InvalidEvent,
    /// The filter expression does not parse.
    InvalidFilter,
    /// The client speaks another protocol version.
    UnsupportedVersion,
    /// The server has as many connections as it accepts.
    TooManyConnections,
    /// This connection has as many subscriptions as it may.
    TooManySubscriptions,
    /// `unsubscribe` named no open subscription.
    UnknownSubscription,
    /// The event's record could not be written to the server's data dir (a full disk, an I/O error):
    /// it was not published (in a batch, neither were the events after it).
    NotStored,
    /// The event was published, but syncing its record to the disk failed (`--fsync always`).
    NotSynced,
    /// A code this version does not know (sent by a newer server).
    #[serde(other)]
    Other,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidFrame => "invalid_frame",
            ErrorCode::InvalidEvent => "invalid_event",
            ErrorCode::InvalidFilter => "invalid_filter",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::UnknownSubscription => "unknown_subscription",
            ErrorCode::NotStored => "not_stored",
            ErrorCode::NotSynced => "not_synced",
            ErrorCode::Other => "other",
        }
    }
}

impl ErrorFrame {
    /// An error frame.
    pub fn new(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            id,
            code,
            message: message.into(),
        }
    }
}

/// Any frame a client can receive.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerFrame {
    /// An event of a subscription.
    Event {
        /// Subscription number.
        sub: u64,
        /// The event.
        event: Event,
    },
    /// The reply to a `history` request.
    History {
        /// Request id.
        id: u64,
        /// Kept events, oldest first.
        events: Vec<Event>,
        /// With `from_id`: the oldest id history held (`None`: it held nothing).
        oldest_held: Option<EventId>,
    },
    /// Any other frame.
    Reply(Reply),
}

const EVENT_PREFIX: &[u8] = b"{\"type\":\"event\",\"sub\":";
const EVENT_INFIX: &[u8] = b",\"event\":";

/// Writes the event frame of subscription `sub` around `event_json` (an event already serialized):
/// `{"type":"event","sub":N,"event":EVENT}` and a newline.
pub fn encode_event_frame(out: &mut Vec<u8>, sub: u64, event_json: &[u8]) {
    out.extend_from_slice(&event_frame_prefix(sub));
    out.extend_from_slice(event_json);
    out.extend_from_slice(b"}\n");
}

/// What precedes the event in an event frame of subscription `sub`: `{"type":"event","sub":N,"event":`.
pub fn event_frame_prefix(sub: u64) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(48);
    prefix.extend_from_slice(EVENT_PREFIX);
    prefix.extend_from_slice(sub.to_string().as_bytes());
    prefix.extend_from_slice(EVENT_INFIX);
    prefix
}

/// Appends `frame` as one line.
pub fn encode_line<T: Serialize>(out: &mut Vec<u8>, frame: &T) {
    // Serializing these plain structs into a Vec cannot fail: no maps with non-string keys, no I/O.
    if serde_json::to_writer(&mut *out, frame).is_ok() {
        out.push(b'\n');
    }
}

/// The subscription and the event JSON of an event frame in the form servers write it
/// (`{"type":"event","sub":N,"event":EVENT}`), without parsing the event; `None` for any other line
/// (which [`decode_server_frame`] still decodes in full).
pub fn split_event_frame(line: &[u8]) -> Option<(u64, &[u8])> {
    let rest = line.strip_prefix(EVENT_PREFIX)?;
    let digits = rest.iter().position(|b| !b.is_ascii_digit())?;
    let (number, tail) = rest.split_at(digits);
    let body = tail.strip_prefix(EVENT_INFIX)?.strip_suffix(b"}")?;
    let sub = std::str::from_utf8(number).ok()?.parse::<u64>().ok()?;
    Some((sub, body))
}

/// Decodes one server line (without its newline).
///
/// # Errors
///
/// The JSON error when the line is not a server frame.
pub fn decode_server_frame(line: &[u8]) -> Result<ServerFrame, serde_json::Error> {
    if let Some((sub, body)) = split_event_frame(line) {
        // Fast path for the frames that make up the bulk of the traffic: no intermediate buffering.
        if let Ok(event) = serde_json::from_slice::<Event>(body) {
            return Ok(ServerFrame::Event { sub, event });
        }
    }
    #[derive(Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Bulk {
        Event {
            sub: u64,
            event: Event,
        },
        History {
            id: u64,
            events: Vec<Event>,
            #[serde(default)]
            oldest_held: Option<EventId>,
        },
    }
    let value: serde_json::Value = serde_json::from_slice(line)?;
    let kind = value.get("type").and_then(|t| t.as_str()).unwrap_or("");
    if kind == "event" || kind == "history" {
        return Ok(match serde_json::from_value::<Bulk>(value)? {
            Bulk::Event { sub, event } => ServerFrame::Event { sub, event },
            Bulk::History {
                id,
                events,
                oldest_held,
            } => ServerFrame::History {
                id,
                events,
                oldest_held,
            },
        });
    }
    Ok(ServerFrame::Reply(serde_json::from_value(value)?))
}

/// Why a request line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The request id, if the line was JSON with a numeric `id`.
    pub id: Option<u64>,
    /// The kind of problem.
    pub code: ErrorCode,
    /// A sentence naming it.
    pub message: String,
}

impl DecodeError {
    /// The error frame to send back.
    pub fn to_frame(&self) -> ErrorFrame {
        ErrorFrame::new(self.id, self.code, self.message.clone())
    }
}

/// Decodes one request line (without its newline; a trailing `\r` is accepted).
///
/// # Errors
///
/// A [`DecodeError`] naming the problem and, when it can be read, the request id.
pub fn decode_request(line: &[u8]) -> Result<Request, DecodeError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Err(e) = std::str::from_utf8(line) {
        return Err(DecodeError {
            id: None,
            code: ErrorCode::InvalidUtf8,
            message: format!("the frame is not valid UTF-8 (at byte {})", e.valid_up_to()),
        });
    }
    let decoded = serde_json::from_slice::<Object<Request>>(line).map(|o| o.0);
    let err = match decoded {
        Ok(request) => {
            return match oversized_integer(line) {
                None => Ok(request),
                Some(number) => Err(DecodeError {
                    id: Some(request.id()),
                    code: ErrorCode::InvalidFrame,
                    message: format!(
                        "the integer {number} does not fit in 64 bits (JSON readers would round it); send it as a string or with an exponent"
                    ),
                }),
            };
        }
        Err(err) => err,
    };
    // What went wrong, from what the line holds rather than from serde's wording.
    let loose: Option<serde_json::Value> = serde_json::from_slice(line).ok();
    let id = loose
        .as_ref()
        .and_then(|v| v.get("id"))
        .and_then(|v| v.as_u64());
    let kind = loose
        .as_ref()
        .and_then(|v| v.get("type"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let text = err.to_string();
    let (code, message) = match (&loose, kind) {
        (None, _) => (ErrorCode::InvalidJson, format!("invalid JSON: {text}")),
        (Some(value), _) if !value.is_object() => (
            ErrorCode::InvalidFrame,
            "a frame must be a JSON object".to_owned(),
        ),
        (Some(_), Some(kind)) if !REQUEST_TYPES.contains(&kind.as_str()) => (
            ErrorCode::UnknownType,
            format!(
                "unknown frame type {kind:?} (expected {})",
                REQUEST_TYPES.join(", ")
            ),
        ),
        (Some(_), Some(kind)) => (
            ErrorCode::InvalidFrame,
            format!("invalid {kind} frame: {text}"),
        ),
        (Some(_), None) => (
            ErrorCode::InvalidFrame,
            format!(
                "the frame has no string `type` (expected {})",
                REQUEST_TYPES.join(", ")
            ),
        ),
    };
    Err(DecodeError { id, code, message })
}

/// One outcome of [`LineReader::read_line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLine {
    /// A complete line is in the buffer (newline removed).
    Line,
    /// A line longer than the limit was read and discarded up to and including its newline; it was
    /// this many bytes long.
    TooLong(usize),
    /// The peer closed the stream after a partial line of this many bytes, which was discarded.
    Truncated(usize),
    /// The peer closed the stream at a line boundary.
    Eof,
}

/// Reads newline-terminated lines of at most `limit` bytes, never buffering more than `limit` plus
/// one read buffer, whatever the peer sends.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    limit: usize,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// A reader of lines of at most `limit` bytes.
    pub fn new(inner: R, limit: usize) -> Self {
        Self { inner, limit }
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Reads the next line into `out` (cleared first).
    ///
    /// # Errors
    ///
    /// I/O errors of the stream.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: a cancelled call may have consumed part of a line.
    pub async fn read_line(&mut self, out: &mut Vec<u8>) -> std::io::Result<ReadLine> {
        out.clear();
        let mut seen = 0usize;
        let mut discarding = false;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(if seen == 0 {
                    ReadLine::Eof
                } else {
                    out.clear();
                    ReadLine::Truncated(seen)
                });
            }
            let (chunk, found) = match memchr::memchr(b'\n', available) {
                Some(at) => (&available[..at], true),
                None => (available, false),
            };
            let used = chunk.len();
            if !discarding {
                if out.len() + used > self.limit {
                    discarding = true;
                    out.clear();
                    out.shrink_to(self.limit.min(64 * 1024));
                } else {
                    out.extend_from_slice(chunk);
                }
            }
            seen += used;
            self.inner.consume(used + usize::from(found));
            if found {
                return Ok(if discarding {
                    ReadLine::TooLong(seen)
                } else {
                    ReadLine::Line
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_frame_is_one_flat_object_and_older_servers_still_read() {
        let stats = RemoteStats {
            bus: crate::BusStats {
                published: 45,
                delivered: 90,
                subscribers: 2,
                history_len: 45,
                oldest_id: Some(1),
                history_bytes: 29_001,
                ..Default::default()
            },
            connections: 2,
            encoded: 45,
        };
        let line = serde_json::to_string(&Reply::Stats(StatsFrame { id: 6, stats })).unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["type"], "stats");
        assert_eq!(value["published"], 45, "{line}");
        assert_eq!(value["connections"], 2, "{line}");
        assert_eq!(value["disk"], serde_json::Value::Null, "{line}");
        let ServerFrame::Reply(Reply::Stats(back)) = decode_server_frame(line.as_bytes()).unwrap()
        else {
            panic!("not a stats frame: {line}");
        };
        assert_eq!(back, StatsFrame { id: 6, stats });
        // A version 2 server before history_bytes and disk: the missing fields read as 0 / none.
        let old = br#"{"type":"stats","id":7,"published":3,"delivered":3,"dropped":0,"subscribers":1,"history_len":3,"oldest_id":1,"connections":1,"encoded":3}"#;
        let ServerFrame::Reply(Reply::Stats(back)) = decode_server_frame(old).unwrap() else {
            panic!("not a stats frame");
        };
        assert_eq!(
            (
                back.id,
                back.stats.bus.published,
                back.stats.bus.history_bytes
            ),
            (7, 3, 0)
        );
        assert_eq!(back.stats.bus.disk, None);
    }

    #[test]
    fn requests_decode_and_bad_ones_are_named() {
        let ok = decode_request(br#"{"type":"ping","id":3}"#).unwrap();
        assert_eq!(ok, Request::Ping { id: 3 });
        let crlf = decode_request(b"{\"type\":\"stats\",\"id\":4}\r").unwrap();
        assert_eq!(crlf, Request::Stats { id: 4 });

        let unknown = decode_request(br#"{"type":"launch","id":5}"#).unwrap_err();
        assert_eq!(
            (unknown.code, unknown.id),
            (ErrorCode::UnknownType, Some(5))
        );
        assert!(
            unknown.message.contains("\"launch\""),
            "{}",
            unknown.message
        );

        let extra = decode_request(br#"{"type":"ping","id":6,"x":1}"#).unwrap_err();
        assert_eq!(extra.code, ErrorCode::InvalidFrame);
        assert!(
            extra.message.contains("unknown field `x`"),
            "{}",
            extra.message
        );

        let dup = decode_request(br#"{"type":"ping","id":6,"id":7}"#).unwrap_err();
        assert_eq!(dup.code, ErrorCode::InvalidFrame);
        assert!(dup.message.contains("duplicate field"), "{}", dup.message);

        let utf8 = decode_request(b"{\"type\":\"ping\",\"id\":1,\xff}").unwrap_err();
        assert_eq!(utf8.code, ErrorCode::InvalidUtf8);

        for bad in [
            &br#"{"type":"ping","id":1"#[..],
            br#"{"type":"ping","id":1} trailing"#,
            br#"{"type":"publish","id":1,"event":{"event_type":"x","data":NaN}}"#,
            br#"{"type":"publish","id":1,"event":{"event_type":"x","data":1e400}}"#,
            br#"{"type":"publish","id":1,"event":{"event_type":"\ud800x"}}"#,
        ] {
            let err = decode_request(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidJson, "{}", err.message);
        }
        let big = decode_request(br#"{"type":"ping","id":18446744073709551616}"#).unwrap_err();
        assert_eq!(big.code, ErrorCode::InvalidFrame, "{}", big.message);

        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let line =
            format!(r#"{{"type":"publish","id":1,"event":{{"event_type":"x","data":{deep}}}}}"#);
        let err = decode_request(line.as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidJson);
        assert!(err.message.contains("recursion limit"), "{}", err.message);
    }

    #[test]
    fn replay_specs_have_their_documented_forms() {
        let sub = decode_request(
            br#"{"type":"subscribe","id":1,"filter":"task.*","replay":{"from_id":5}}"#,
        )
        .unwrap();
        assert_eq!(
            sub,
            Request::Subscribe {
                id: 1,
                filter: "task.*".into(),
                replay: ReplaySpec::FromId(5),
                window: None,
            }
        );
        let all = decode_request(br#"{"type":"subscribe","id":1,"replay":"all"}"#).unwrap();
        assert!(matches!(
            all,
            Request::Subscribe {
                replay: ReplaySpec::All,
                ..
            }
        ));
        assert!(ReplaySpec::FromTime(f64::MAX).to_replay().is_err());
        // Any nanosecond time goes out rounded down to its microsecond and reads back as that.
        for nanos in [1_795_587_822_821_493_950u64, 1_795_587_822_821_493_001, 999] {
            let t = UNIX_EPOCH + Duration::from_nanos(nanos);
            let ReplaySpec::FromTime(secs) = ReplaySpec::from_replay(Replay::FromTime(t)) else {
                panic!("not a time");
            };
            let back = ReplaySpec::FromTime(secs).to_replay().unwrap();
            assert_eq!(
                back,
                Replay::FromTime(UNIX_EPOCH + Duration::from_micros(nanos / 1000))
            );
        }
    }

    #[test]
    fn mcp_progress_events_are_checked() {
        let event = |data: serde_json::Value| NewEvent {
            id: None,
            timestamp: None,
            event_type: crate::event_types::MCP_PROGRESS.into(),
            resource_id: Some("t".into()),
            data,
        };
        assert!(
            event(serde_json::json!({"progressToken":"t","progress":1.5}))
                .into_event()
                .is_ok()
        );
        let negative = event(serde_json::json!({"progressToken":"t","progress":1,"total":-1}));
        assert!(negative.into_event().unwrap_err().contains("total"));
        let missing = event(serde_json::json!({"progressToken":"t"}));
        assert!(missing.into_event().is_err());
    }

    #[test]
    fn event_frames_decode_on_the_fast_path_and_the_slow_one() {
        let mut event = Event::new("task.started", serde_json::json!({"a":1}));
        event.timestamp = UNIX_EPOCH + Duration::from_micros(1_732_500_000_123_456);
        let json = serde_json::to_vec(&event).unwrap();
        let mut line = Vec::new();
        encode_event_frame(&mut line, 7, &json);
        assert_eq!(line.pop(), Some(b'\n'));
        let frame = decode_server_frame(&line).unwrap();
        assert_eq!(
            frame,
            ServerFrame::Event {
                sub: 7,
                event: event.clone()
            }
        );
        let spaced = format!(
            r#"{{"type": "event", "event": {}, "sub": 7}}"#,
            String::from_utf8(json).unwrap()
        );
        assert_eq!(decode_server_frame(spaced.as_bytes()).unwrap(), frame);
        let pong = decode_server_frame(br#"{"type":"pong","id":2}"#).unwrap();
        assert_eq!(pong, ServerFrame::Reply(Reply::Pong { id: 2 }));
    }

    #[tokio::test]
    async fn line_reader_bounds_lines() {
        let mut input = Vec::new();
        input.extend_from_slice(b"short\r\n");
        input.extend(std::iter::repeat_n(b'x', 100));
        input.extend_from_slice(b"\nnext\npartial");
        let mut reader = LineReader::new(tokio::io::BufReader::with_capacity(8, &input[..]), 16);
        let mut line = Vec::new();
        assert_eq!(reader.read_line(&mut line).await.unwrap(), ReadLine::Line);
        assert_eq!(line, b"short\r");
        assert_eq!(
            reader.read_line(&mut line).await.unwrap(),
            ReadLine::TooLong(100)
        );
        assert_eq!(reader.read_line(&mut line).await.unwrap(), ReadLine::Line);
        assert_eq!(line, b"next");
        assert_eq!(
            reader.read_line(&mut line).await.unwrap(),
            ReadLine::Truncated(7)
        );
        assert_eq!(reader.read_line(&mut line).await.unwrap(), ReadLine::Eof);
    }
}

#[cfg(test)]
mod strict_tests {
    use super::*;

    /// A publish whose line is nested `depth` levels deep in all (the request object is level 1).
    fn nested(depth: usize) -> String {
        let inner = depth - 2;
        format!(
            r#"{{"type":"publish","id":1,"event":{{"event_type":"x","data":{}{}}}}}"#,
            "[".repeat(inner),
            "]".repeat(inner)
        )
    }

    #[test]
    fn the_nesting_limit_is_exactly_the_documented_one() {
        assert!(decode_request(nested(127).as_bytes()).is_ok());
        let err = decode_request(nested(128).as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidJson, "{}", err.message);
    }

    #[test]
    fn arrays_where_objects_are_required_are_refused() {
        for line in [
            r#"["ping",1]"#,
            r#"{"type":"publish","id":1,"event":["x",null,null,"x"]}"#,
            r#"{"type":"publish_batch","id":1,"events":[["x"]]}"#,
        ] {
            let err = decode_request(line.as_bytes()).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidFrame, "{line}: {}", err.message);
        }
    }

    #[test]
    fn integers_that_would_be_rounded_are_refused() {
        let line = |n: &str| {
            format!(
                r#"{{"type":"publish","id":4,"event":{{"event_type":"x","data":{{"n":{n},"s":"123456789012345678901234567890"}}}}}}"#
            )
        };
        for ok in [
            "18446744073709551615",
            "-9223372036854775808",
            "1e30",
            "1.5",
            "0",
        ] {
            assert!(decode_request(line(ok).as_bytes()).is_ok(), "{ok}");
        }
        for bad in [
            "123456789012345678901234567890",
            "18446744073709551616",
            "-9223372036854775809",
        ] {
            let err = decode_request(line(bad).as_bytes()).unwrap_err();
            assert_eq!((err.code, err.id), (ErrorCode::InvalidFrame, Some(4)));
            assert!(err.message.contains(bad), "{}", err.message);
        }
    }

    #[test]
    fn times_before_the_epoch_are_refused() {
        let event = NewEvent {
            id: None,
            timestamp: Some(-1.0),
            event_type: "x".into(),
            resource_id: None,
            data: serde_json::Value::Null,
        };
        assert!(event.into_event().unwrap_err().contains("timestamp -1"));
        assert!(ReplaySpec::FromTime(-1.0).to_replay().is_err());
        assert!(ReplaySpec::FromTime(0.0).to_replay().is_ok());
    }

    #[test]
    fn codes_are_typed_on_the_wire() {
        let frame = ErrorFrame::new(Some(1), ErrorCode::UnknownType, "m");
        let json = serde_json::to_string(&frame).unwrap();
        assert_eq!(json, r#"{"id":1,"code":"unknown_type","message":"m"}"#);
        let newer: ErrorFrame =
            serde_json::from_str(r#"{"id":null,"code":"from_the_future","message":"m"}"#).unwrap();
        assert_eq!(newer.code, ErrorCode::Other);
        let missing = decode_request(br#"{"id":3}"#).unwrap_err();
        assert_eq!(
            (missing.code, missing.id),
            (ErrorCode::InvalidFrame, Some(3))
        );
    }
}
