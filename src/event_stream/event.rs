//! The [`Event`] record, its constructors, the standard type names and the MCP progress payload.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Identifier of an event. A bus stamps each published event with the next id of that bus, starting at 1.
pub type EventId = u64;

/// One event: what happened (`event_type`), to what (`resource_id`), when, and its JSON data.
///
/// The JSON form is
/// `{"id":1,"timestamp":1732500000.123,"event_type":"task.started","resource_id":"job-1","data":{}}`,
/// with the timestamp in seconds since the Unix epoch as a float.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The id the bus gave the event when it was published (a provisional one before that).
    pub id: EventId,
    /// When the event was created.
    #[serde(with = "crate::epoch::seconds")]
    pub timestamp: SystemTime,
    /// What happened, dotted: `task.started`, `log.stderr`, `mcp.notifications.progress`.
    pub event_type: String,
    /// What it happened to: a task, job or progress token.
    pub resource_id: Option<String>,
    /// The payload.
    pub data: serde_json::Value,
}

/// Provisional ids for events that have not been published yet: positive, as the reference design gives.
static PROVISIONAL_ID: AtomicU64 = AtomicU64::new(1);

impl Event {
    /// An event of type `event_type` with `data`, timestamped now, with no resource.
    pub fn new(event_type: &str, data: serde_json::Value) -> Self {
        Self {
            id: PROVISIONAL_ID.fetch_add(1, Ordering::Relaxed),
            timestamp: SystemTime::now(),
            event_type: event_type.to_owned(),
            resource_id: None,
            data,
        }
    }

    /// An event about `resource_id`.
    pub fn with_resource(event_type: &str, resource_id: &str, data: serde_json::Value) -> Self {
        let mut event = Self::new(event_type, data);
        event.resource_id = Some(resource_id.to_owned());
        event
    }

    /// A `task.progress` event: data `{current, total, percentage, message}`, the percentage an integer
    /// (0 when `total` is 0; it may exceed 100 when `current` does `total`).
    pub fn progress(resource_id: &str, current: u64, total: u64, message: &str) -> Self {
        let percentage = (u128::from(current) * 100)
            .checked_div(u128::from(total))
            .map_or(0, |p| u64::try_from(p).unwrap_or(u64::MAX));
        Self::with_resource(
            event_types::TASK_PROGRESS,
            resource_id,
            serde_json::json!({
                "current": current,
                "total": total,
                "percentage": percentage,
                "message": message,
            }),
        )
    }

    /// An MCP `notifications/progress` event: type `mcp.notifications.progress`, resource = the token,
    /// data = the [`McpProgressPayload`].
    ///
    /// JSON has no NaN or infinity, so a non-finite `progress` is stored as 0 and a non-finite or negative
    /// `total` as no total (indeterminate), rather than as `null`s that would not parse back.
    pub fn mcp_progress(
        progress_token: &str,
        progress: f64,
        total: Option<f64>,
        message: Option<&str>,
    ) -> Self {
        let payload = McpProgressPayload::new(progress_token, progress, total, message);
        Self::with_resource(
            event_types::MCP_PROGRESS,
            progress_token,
            payload.to_value(),
        )
    }

    /// A log line: `level` `info`, `warn`/`warning`, `error`, `stdout` or `stderr` picks the type
    /// (`log.info`, `log.warn`, ...), anything else is `log.info`; data `{level, message}`.
    pub fn log(resource_id: &str, level: &str, message: &str) -> Self {
        let event_type = match level {
            "warn" | "warning" => event_types::LOG_WARN,
            "error" => event_types::LOG_ERROR,
            "stdout" => event_types::LOG_STDOUT,
            "stderr" => event_types::LOG_STDERR,
            _ => event_types::LOG_INFO,
        };
        Self::with_resource(
            event_type,
            resource_id,
            serde_json::json!({ "level": level, "message": message }),
        )
    }

    /// A `log.stdout` line.
    pub fn stdout(resource_id: &str, line: &str) -> Self {
        Self::log(resource_id, "stdout", line)
    }

    /// A `log.stderr` line.
    pub fn stderr(resource_id: &str, line: &str) -> Self {
        Self::log(resource_id, "stderr", line)
    }

    /// Seconds since the Unix epoch, as in the JSON form.
    pub fn timestamp_secs(&self) -> f64 {
        crate::epoch::to_secs(self.timestamp)
    }
}

/// A borrowed view of an event's JSON form: its fields read in place, its data left as JSON text.
///
/// Reading a view skips what makes an owned [`Event`] costly to parse (a `String` per field, a
/// `serde_json::Value` tree for the data), so a consumer that only prints, forwards or counts events,
/// or looks at a few of them closely, reads them about twice as fast. A remote subscriber hands events
/// over this way with `transport::RemoteSubscriber::recv_refs`.
///
/// ```
/// let json = r#"{"id":7,"timestamp":1732500000.5,"event_type":"log.stdout","resource_id":"job-1","data":{"message":"hi"}}"#;
/// let view = ipckit::EventRef::parse(json)?;
/// assert_eq!((view.id, &*view.event_type, view.resource_id.as_deref()), (7, "log.stdout", Some("job-1")));
/// assert_eq!(view.data.get(), r#"{"message":"hi"}"#);
/// assert_eq!(view.json(), json);
/// assert_eq!(view.to_event()?.data["message"], "hi");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct EventRef<'a> {
    /// The event's id.
    pub id: EventId,
    /// When the event was created.
    pub timestamp: SystemTime,
    /// What happened; borrowed unless the JSON string has escapes.
    pub event_type: Cow<'a, str>,
    /// What it happened to; borrowed unless the JSON string has escapes.
    pub resource_id: Option<Cow<'a, str>>,
    /// The payload, as the JSON text it arrived in.
    pub data: &'a RawValue,
    json: &'a str,
}

/// The fields of an [`EventRef`] as serde reads them.
#[derive(Deserialize)]
struct EventFields<'a> {
    id: EventId,
    #[serde(deserialize_with = "crate::epoch::seconds::deserialize")]
    timestamp: SystemTime,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    resource_id: Option<BorrowedStr<'a>>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// A string borrowed from the input when it has no escapes (`Option<Cow<str>>` alone always copies).
#[derive(Deserialize)]
struct BorrowedStr<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'a> EventRef<'a> {
    /// Reads the JSON form of an event (as [`Event`]'s `Serialize` writes it). Fails, naming what is
    /// wrong, on a missing or mistyped field or a timestamp no `SystemTime` holds; the data is checked
    /// to be well-formed JSON, and parsed only by [`EventRef::to_event`].
    pub fn parse(json: &'a str) -> Result<Self, serde_json::Error> {
        let fields: EventFields<'a> = serde_json::from_str(json)?;
        Ok(EventRef {
            id: fields.id,
            timestamp: fields.timestamp,
            event_type: fields.event_type,
            resource_id: fields.resource_id.map(|r| r.0),
            data: fields.data,
            json,
        })
    }

    /// The whole event's JSON text, as it was read.
    pub fn json(&self) -> &'a str {
        self.json
    }

    /// The owned event, its data parsed.
    ///
    /// # Errors
    ///
    /// When the data holds a number `serde_json::Value` cannot (such as `1e999`): well-formed JSON, so
    /// [`EventRef::parse`] lets it through, but no owned event can carry it.
    pub fn to_event(&self) -> Result<Event, serde_json::Error> {
        Ok(Event {
            id: self.id,
            timestamp: self.timestamp,
            event_type: self.event_type.clone().into_owned(),
            resource_id: self.resource_id.as_ref().map(|r| r.clone().into_owned()),
            data: serde_json::from_str(self.data.get())?,
        })
    }
}

/// The standard event type names.
pub mod event_types {
    /// A task was created.
    pub const TASK_CREATED: &str = "task.created";
    /// A task started.
    pub const TASK_STARTED: &str = "task.started";
    /// A task reported progress (`{current, total, percentage, message}`).
    pub const TASK_PROGRESS: &str = "task.progress";
    /// A task completed (`{result}`).
    pub const TASK_COMPLETED: &str = "task.completed";
    /// A task failed (`{error}`).
    pub const TASK_FAILED: &str = "task.failed";
    /// A task was cancelled.
    pub const TASK_CANCELLED: &str = "task.cancelled";
    /// A task was paused.
    pub const TASK_PAUSED: &str = "task.paused";
    /// A task was resumed.
    pub const TASK_RESUMED: &str = "task.resumed";
    /// A line a process wrote to stdout.
    pub const LOG_STDOUT: &str = "log.stdout";
    /// A line a process wrote to stderr.
    pub const LOG_STDERR: &str = "log.stderr";
    /// An informational log message.
    pub const LOG_INFO: &str = "log.info";
    /// A warning.
    pub const LOG_WARN: &str = "log.warn";
    /// An error message.
    pub const LOG_ERROR: &str = "log.error";
    /// Upload progress.
    pub const FILE_UPLOAD_PROGRESS: &str = "file.upload.progress";
    /// Download progress.
    pub const FILE_DOWNLOAD_PROGRESS: &str = "file.download.progress";
    /// The bus (or its server) is shutting down.
    pub const SYSTEM_SHUTDOWN: &str = "system.shutdown";
    /// A system-level error.
    pub const SYSTEM_ERROR: &str = "system.error";
    /// An MCP `notifications/progress` notification.
    pub const MCP_PROGRESS: &str = "mcp.notifications.progress";
    /// An MCP request passed the `ipckit-top mcp` proxy (`{method, id, tool, call, ...}`).
    pub const MCP_REQUEST: &str = "mcp.request";
    /// The response to an MCP request passed the proxy (`{method, id, call, duration_ms, error}`).
    pub const MCP_RESPONSE: &str = "mcp.response";
    /// An MCP `notifications/cancelled` notification.
    pub const MCP_CANCELLED: &str = "mcp.notifications.cancelled";
}

/// The parameters of an MCP `notifications/progress` notification, serialized camelCase
/// (`{"progressToken":"t","progress":42.0,"total":100.0,"message":"..."}`), `total` and `message`
/// omitted when absent. On input the token may also be an integer, as MCP allows; it is kept as its
/// decimal string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpProgressPayload {
    /// Opaque token naming the operation.
    #[serde(deserialize_with = "string_or_integer")]
    pub progress_token: String,
    /// Work done so far; MCP requires it to increase.
    pub progress: f64,
    /// Total work, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    /// A human-readable status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl McpProgressPayload {
    /// A payload; a non-finite `progress` becomes 0 and a non-finite or negative `total` becomes `None`,
    /// so the payload always serializes to JSON that parses back.
    pub fn new(
        progress_token: impl Into<String>,
        progress: f64,
        total: Option<f64>,
        message: Option<impl Into<String>>,
    ) -> Self {
        Self {
            progress_token: progress_token.into(),
            progress: if progress.is_finite() { progress } else { 0.0 },
            total: total.filter(|t| t.is_finite() && *t >= 0.0),
            message: message.map(Into::into),
        }
    }

    /// The payload as a JSON value; non-finite numbers (possible only if the public fields were set
    /// directly) are normalized as [`McpProgressPayload::new`] does.
    pub fn to_value(&self) -> serde_json::Value {
        let mut map = serde_json::Map::with_capacity(4);
        map.insert(
            "progressToken".into(),
            serde_json::Value::String(self.progress_token.clone()),
        );
        let progress = if self.progress.is_finite() {
            self.progress
        } else {
            0.0
        };
        map.insert("progress".into(), finite_number(progress));
        if let Some(total) = self.total.filter(|t| t.is_finite() && *t >= 0.0) {
            map.insert("total".into(), finite_number(total));
        }
        if let Some(message) = &self.message {
            map.insert("message".into(), serde_json::Value::String(message.clone()));
        }
        serde_json::Value::Object(map)
    }
}

fn finite_number(value: f64) -> serde_json::Value {
    serde_json::Number::from_f64(value)
        .map_or(serde_json::Value::from(0), serde_json::Value::Number)
}

fn string_or_integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Token {
        Text(String),
        Unsigned(u64),
        Signed(i64),
    }
    Ok(match Token::deserialize(deserializer)? {
        Token::Text(text) => text,
        Token::Unsigned(n) => n.to_string(),
        Token::Signed(n) => n.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn progress_percentage_never_overflows() {
        let event = Event::progress("job", u64::MAX, 7, "huge");
        assert_eq!(event.data["percentage"], u64::MAX);
        assert_eq!(Event::progress("job", 50, 200, "").data["percentage"], 25);
        assert_eq!(Event::progress("job", 5, 0, "").data["percentage"], 0);
    }

    #[test]
    fn mcp_progress_normalizes_non_finite_numbers() {
        let event = Event::mcp_progress("t", f64::NAN, Some(f64::INFINITY), None);
        let payload: McpProgressPayload = serde_json::from_value(event.data).unwrap();
        assert_eq!(payload.progress, 0.0);
        assert_eq!(payload.total, None);
        let event = Event::mcp_progress("t", 3.0, Some(-1.0), Some("m"));
        assert_eq!(
            event.data,
            serde_json::json!({"progressToken":"t","progress":3.0,"message":"m"})
        );
    }

    #[test]
    fn integer_progress_token_is_kept_as_decimal_string() {
        let payload: McpProgressPayload =
            serde_json::from_str(r#"{"progressToken":42,"progress":1}"#).unwrap();
        assert_eq!(payload.progress_token, "42");
    }

    #[test]
    fn log_levels_pick_the_type() {
        assert_eq!(Event::log("r", "warning", "x").event_type, "log.warn");
        assert_eq!(Event::log("r", "trace", "x").event_type, "log.info");
        assert_eq!(Event::stderr("r", "x").event_type, "log.stderr");
        assert_eq!(Event::stdout("r", "x").data["level"], "stdout");
    }

    #[test]
    fn timestamps_round_trip_and_bad_ones_are_refused() {
        let mut event = Event::new("a", serde_json::json!(null));
        event.timestamp = UNIX_EPOCH + Duration::from_micros(1_732_500_000_123_456);
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains("\"timestamp\":1732500000.123456"), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back.timestamp, event.timestamp);

        let before: Event = serde_json::from_str(
            r#"{"id":1,"timestamp":-1,"event_type":"a","resource_id":null,"data":null}"#,
        )
        .unwrap();
        assert_eq!(before.timestamp, UNIX_EPOCH - Duration::from_secs(1));
        let err = serde_json::from_str::<Event>(
            r#"{"id":1,"timestamp":1e300,"event_type":"a","resource_id":null,"data":null}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("outside the representable range"),
            "{err}"
        );
    }

    #[test]
    fn new_events_have_positive_ids() {
        assert!(Event::new("x", serde_json::Value::Null).id > 0);
    }

    #[test]
    fn a_view_reads_what_an_owned_parse_reads() {
        let mut event = Event::with_resource(
            "task.\"quoted\"",
            "job\n7",
            serde_json::json!({"a": [1, 2.5, null], "b": "\u{e9}"}),
        );
        event.id = 42;
        let json = serde_json::to_string(&event).unwrap();
        let view = EventRef::parse(&json).unwrap();
        assert_eq!(view.id, 42);
        assert_eq!(view.event_type, "task.\"quoted\"");
        assert!(matches!(view.event_type, Cow::Owned(_)), "escaped: copied");
        assert_eq!(view.resource_id.as_deref(), Some("job\n7"));
        assert_eq!(view.json(), json);
        let back = view.to_event().unwrap();
        assert_eq!(back, serde_json::from_str::<Event>(&json).unwrap());
    }

    #[test]
    fn plain_strings_are_borrowed_and_null_resource_is_none() {
        let json =
            r#"{"id":1,"timestamp":1.5,"event_type":"log.info","resource_id":null,"data":null}"#;
        let view = EventRef::parse(json).unwrap();
        assert!(matches!(view.event_type, Cow::Borrowed("log.info")));
        assert!(view.resource_id.is_none());
        assert_eq!(view.data.get(), "null");
        let json = r#"{"id":1,"timestamp":1.5,"event_type":"a","resource_id":"r","data":{}}"#;
        let view = EventRef::parse(json).unwrap();
        assert!(matches!(view.resource_id, Some(Cow::Borrowed("r"))));
    }

    #[test]
    fn a_view_refuses_what_is_not_an_event() {
        for bad in [
            r#"{"id":1,"timestamp":1e300,"event_type":"a","resource_id":null,"data":null}"#,
            r#"{"id":1,"timestamp":1,"resource_id":null,"data":null}"#,
            r#"{"id":-1,"timestamp":1,"event_type":"a","data":null}"#,
            r#"{"id":1,"timestamp":1,"event_type":"a","data":{"x":}}"#,
            r#"{"id":1,"timestamp":1,"event_type":"a"}"#,
            "[1,2]",
            "",
        ] {
            assert!(EventRef::parse(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<Event>(bad).is_err(), "{bad}");
        }
    }
}
