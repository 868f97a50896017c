//! Progress gauges, built from events alone: one per MCP progress token and per `task.progress`
//! resource, and one per MCP tool call seen by `ipckit-top mcp` (named after its tool and server,
//! running from its `mcp.request`, done or failed at its `mcp.response`, whether or not it reports
//! progress). Pure data: [`Gauges::apply`] folds one event in, and everything time-dependent (rate, ETA,
//! staleness) is computed against an explicit `now`, so the same code serves the live view (wall clock)
//! and the history scrubber (the time of the event under the cursor).

use crate::event_stream::{event_types, Event};
use rustc_hash::FxHashMap;
use serde_json::Value;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// A running gauge with no update for this long is shown as stale.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// At most this many gauges are tracked; past it, the longest-finished (then the stalest) are forgotten.
pub const MAX_GAUGES: usize = 200;

/// How many recent updates the rate is computed over.
const RATE_SAMPLES: usize = 8;

/// Where a gauge's numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaugeKind {
    /// An MCP `notifications/progress` token.
    Mcp,
    /// A `task.progress` (or file transfer progress) resource.
    Task,
}

/// How a gauge's work ended, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still going.
    Running,
    /// Reached its total, or a `task.completed` arrived for it.
    Done,
    /// A `task.failed` arrived for it.
    Failed,
    /// A `task.cancelled` arrived for it.
    Cancelled,
}

/// One gauge.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    /// The progress token or resource id (for an MCP call through the proxy: its call key).
    pub key: String,
    /// The name shown, when not the key: an MCP call's tool and server.
    pub label: Option<String>,
    /// Where its numbers come from.
    pub kind: GaugeKind,
    /// Work done, as last reported.
    pub current: f64,
    /// Total work, when known.
    pub total: Option<f64>,
    /// The latest message.
    pub message: Option<String>,
    /// When its first update was stamped.
    pub started: SystemTime,
    /// When its latest update was stamped.
    pub updated: SystemTime,
    /// When it finished, if it did.
    pub finished: Option<SystemTime>,
    /// How it ended.
    pub outcome: Outcome,
    /// Progress went down at some point (MCP requires it to increase).
    pub backwards: bool,
    /// Updates received.
    pub updates: u64,
    /// Order of first appearance, for a stable display.
    order: u64,
    /// Recent (time, value) updates, for the rate.
    samples: VecDeque<(SystemTime, f64)>,
}

impl Gauge {
    /// The fraction done, when a positive total is known (may exceed 1 when progress overshoots).
    pub fn ratio(&self) -> Option<f64> {
        self.total.filter(|t| *t > 0.0).map(|t| self.current / t)
    }

    /// Units per second over the recent updates, if there were at least two at different times.
    pub fn rate(&self) -> Option<f64> {
        let (t0, v0) = *self.samples.front()?;
        let (t1, v1) = *self.samples.back()?;
        let dt = t1.duration_since(t0).ok()?.as_secs_f64();
        (dt > 0.0).then(|| (v1 - v0) / dt)
    }

    /// Time left at the recent rate, when running with a total and a positive rate.
    pub fn eta(&self) -> Option<Duration> {
        if self.outcome != Outcome::Running {
            return None;
        }
        let rate = self.rate().filter(|r| *r > 0.0)?;
        let left = (self.total? - self.current).max(0.0) / rate;
        Duration::try_from_secs_f64(left).ok()
    }

    /// The name to show: the label, else the key.
    pub fn name(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.key)
    }

    /// Running, but with no update for [`STALE_AFTER`] before `now`. A call that has reported no
    /// progress at all is never stale: it is running, for as long as it takes.
    pub fn is_stale(&self, now: SystemTime) -> bool {
        self.outcome == Outcome::Running
            && self.updates > 0
            && now
                .duration_since(self.updated)
                .is_ok_and(|idle| idle > STALE_AFTER)
    }

    /// Time from first update to the finish (or to `now` while running).
    pub fn elapsed(&self, now: SystemTime) -> Duration {
        let end = self.finished.unwrap_or(now);
        end.duration_since(self.started).unwrap_or_default()
    }

    fn report(&mut self, at: SystemTime, value: f64, total: Option<f64>, message: Option<String>) {
        if self.updates == 0 {
            // A call's "no progress yet" goes with its first report.
            self.message = None;
        }
        if self.outcome != Outcome::Running {
            // A finished gauge that reports again is a new run of the same token.
            self.outcome = Outcome::Running;
            self.finished = None;
            self.backwards = false;
            self.started = at;
            self.samples.clear();
        } else if value < self.current {
            self.backwards = true;
        }
        self.current = value;
        if total.is_some() {
            self.total = total;
        }
        if message.is_some() {
            self.message = message;
        }
        self.updated = at;
        self.updates += 1;
        if self.samples.len() == RATE_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((at, value));
        if self.total.is_some_and(|t| t > 0.0 && value >= t) {
            self.outcome = Outcome::Done;
            self.finished = Some(at);
        }
    }
}

/// Every tracked gauge, keyed by token or resource.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    map: FxHashMap<String, Gauge>,
    next_order: u64,
}

/// One progress report extracted from an event.
struct Report {
    key: String,
    label: Option<String>,
    kind: GaugeKind,
    value: f64,
    total: Option<f64>,
    message: Option<String>,
}

fn number(data: &Value, key: &str) -> Option<f64> {
    data.get(key)?.as_f64().filter(|v| v.is_finite())
}

fn text(data: &Value, key: &str) -> Option<String> {
    data.get(key)?.as_str().map(str::to_owned)
}

/// The gauge name of an MCP call through the proxy: `tool · server`.
fn call_label(event: &Event) -> Option<String> {
    let tool = event.data.get("tool")?.as_str()?;
    Some(match event.resource_id.as_deref() {
        Some(server) => format!("{tool} · {server}"),
        None => tool.to_owned(),
    })
}

fn report_of(event: &Event) -> Option<Report> {
    let data = &event.data;
    match event.event_type.as_str() {
        event_types::MCP_PROGRESS => {
            // Progress relayed by the proxy names its call, whose gauge it moves.
            let key = match (data.get("call"), data.get("progressToken")) {
                (Some(Value::String(call)), _) => call.clone(),
                (_, Some(Value::String(s))) => s.clone(),
                (_, Some(Value::Number(n))) => n.to_string(),
                _ => event.resource_id.clone()?,
            };
            // The proxy's message names the tool, which the gauge's name already says.
            let tool = data.get("tool").and_then(Value::as_str);
            let message = text(data, "message").and_then(|m| match tool {
                Some(tool) if m == tool => None,
                Some(tool) => Some(
                    m.strip_prefix(tool)
                        .and_then(|rest| rest.strip_prefix(": "))
                        .map_or(m.clone(), str::to_owned),
                ),
                None => Some(m),
            });
            Some(Report {
                key,
                label: call_label(event),
                kind: GaugeKind::Mcp,
                value: number(data, "progress")?,
                total: number(data, "total").filter(|t| *t > 0.0),
                message,
            })
        }
        event_types::TASK_PROGRESS
        | event_types::FILE_UPLOAD_PROGRESS
        | event_types::FILE_DOWNLOAD_PROGRESS => {
            // `current` (or `progress`) of an optional `total`; failing those, a `percentage` alone
            // is read as so much of 100.
            let (value, total) = match number(data, "current").or_else(|| number(data, "progress"))
            {
                Some(value) => (value, number(data, "total").filter(|t| *t > 0.0)),
                None => (number(data, "percentage")?, Some(100.0)),
            };
            Some(Report {
                key: event.resource_id.clone()?,
                label: None,
                kind: GaugeKind::Task,
                value,
                total,
                message: text(data, "message"),
            })
        }
        _ => None,
    }
}

impl Gauges {
    /// Folds one event in: a progress report updates (or creates) its gauge; `task.completed`,
    /// `task.failed` and `task.cancelled` finish the gauge of their resource. From the MCP proxy, an
    /// `mcp.request` for `tools/call` starts its call's gauge, its `mcp.response` ends it (failed
    /// when it carries an error) and `mcp.notifications.cancelled` cancels it.
    pub fn apply(&mut self, event: &Event) {
        let outcome = match event.event_type.as_str() {
            event_types::TASK_COMPLETED => Outcome::Done,
            event_types::TASK_FAILED => Outcome::Failed,
            event_types::TASK_CANCELLED => Outcome::Cancelled,
            event_types::MCP_REQUEST => return self.call_started(event),
            event_types::MCP_RESPONSE => {
                let failed = event.data.get("error").is_some_and(|e| !e.is_null());
                let outcome = if failed {
                    Outcome::Failed
                } else {
                    Outcome::Done
                };
                return self.call_ended(event, outcome);
            }
            event_types::MCP_CANCELLED => return self.call_ended(event, Outcome::Cancelled),
            _ => {
                if let Some(report) = report_of(event) {
                    self.report(event.timestamp, report);
                }
                return;
            }
        };
        let Some(gauge) = event
            .resource_id
            .as_deref()
            .and_then(|r| self.map.get_mut(r))
        else {
            return;
        };
        if gauge.outcome == Outcome::Running {
            gauge.outcome = outcome;
            gauge.finished = Some(event.timestamp);
            gauge.updated = event.timestamp;
        }
    }

    /// A tool call the client sent through the proxy: a gauge, running, with no progress yet.
    fn call_started(&mut self, event: &Event) {
        let data = &event.data;
        let (Some(Value::String(call)), Some("tools/call"), Some("client")) = (
            data.get("call"),
            data.get("method").and_then(Value::as_str),
            data.get("from").and_then(Value::as_str),
        ) else {
            return;
        };
        if self.map.contains_key(call) {
            return;
        }
        if self.map.len() >= MAX_GAUGES {
            self.evict_one();
        }
        let message = if data.get("progressToken").is_some() {
            "no progress reported yet"
        } else {
            "no progress token: running"
        };
        let gauge = Gauge {
            key: call.clone(),
            label: call_label(event),
            kind: GaugeKind::Mcp,
            current: 0.0,
            total: None,
            message: Some(message.to_owned()),
            started: event.timestamp,
            updated: event.timestamp,
            finished: None,
            outcome: Outcome::Running,
            backwards: false,
            updates: 0,
            order: self.next_order,
            samples: VecDeque::with_capacity(RATE_SAMPLES),
        };
        self.next_order += 1;
        self.map.insert(call.clone(), gauge);
    }

    /// The response (or cancellation) of a call through the proxy ends its gauge; the response
    /// decides, even over a gauge that reached its total.
    fn call_ended(&mut self, event: &Event, outcome: Outcome) {
        let Some(gauge) = event
            .data
            .get("call")
            .and_then(Value::as_str)
            .and_then(|call| self.map.get_mut(call))
        else {
            return;
        };
        if gauge.outcome == Outcome::Running || outcome == Outcome::Failed {
            gauge.outcome = outcome;
            gauge.finished = Some(event.timestamp);
            gauge.updated = event.timestamp;
        }
        if gauge.updates == 0 && outcome != Outcome::Failed {
            gauge.message = Some("no progress reported".to_owned());
        }
        if outcome == Outcome::Failed {
            if let Some(message) = event
                .data
                .get("error")
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
            {
                gauge.message = Some(message.to_owned());
            }
        }
    }

    fn report(&mut self, at: SystemTime, report: Report) {
        if let Some(gauge) = self.map.get_mut(&report.key) {
            gauge.kind = report.kind;
            if report.label.is_some() {
                gauge.label = report.label;
            }
            gauge.report(at, report.value, report.total, report.message);
            return;
        }
        if self.map.len() >= MAX_GAUGES {
            self.evict_one();
        }
        let mut gauge = Gauge {
            key: report.key.clone(),
            label: report.label,
            kind: report.kind,
            current: report.value,
            total: None,
            message: None,
            started: at,
            updated: at,
            finished: None,
            outcome: Outcome::Running,
            backwards: false,
            updates: 0,
            order: self.next_order,
            samples: VecDeque::with_capacity(RATE_SAMPLES),
        };
        self.next_order += 1;
        gauge.report(at, report.value, report.total, report.message);
        self.map.insert(report.key, gauge);
    }

    /// Forgets the gauge that finished longest ago, or failing that the one idle longest.
    fn evict_one(&mut self) {
        let victim = self
            .map
            .values()
            .min_by_key(|g| {
                (
                    g.outcome == Outcome::Running,
                    g.finished.unwrap_or(g.updated),
                    g.order,
                )
            })
            .map(|g| g.key.clone());
        if let Some(key) = victim {
            self.map.remove(&key);
        }
    }

    /// How many gauges are tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No gauge is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The gauge for `key`.
    pub fn get(&self, key: &str) -> Option<&Gauge> {
        self.map.get(key)
    }

    /// Gauges in display order: active ones first (by first appearance), then stale ones, then finished
    /// ones (most recently finished first).
    pub fn sorted(&self, now: SystemTime) -> Vec<&Gauge> {
        let mut out: Vec<&Gauge> = self.map.values().collect();
        out.sort_by(|a, b| {
            let rank = |g: &Gauge| match (g.outcome, g.is_stale(now)) {
                (Outcome::Running, false) => 0,
                (Outcome::Running, true) => 1,
                _ => 2,
            };
            rank(a)
                .cmp(&rank(b))
                .then_with(|| b.finished.cmp(&a.finished))
                .then_with(|| a.order.cmp(&b.order))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(event: Event, secs: u64) -> Event {
        Event {
            timestamp: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs),
            ..event
        }
    }

    #[test]
    fn mcp_progress_with_total_reaches_done() {
        let mut g = Gauges::default();
        g.apply(&at(
            Event::mcp_progress("t", 10.0, Some(100.0), Some("a")),
            0,
        ));
        g.apply(&at(Event::mcp_progress("t", 30.0, Some(100.0), None), 2));
        let gauge = g.get("t").unwrap();
        assert_eq!(gauge.ratio(), Some(0.3));
        assert_eq!(gauge.rate(), Some(10.0));
        assert_eq!(gauge.eta(), Some(Duration::from_secs(7)));
        assert_eq!(gauge.message.as_deref(), Some("a"));
        g.apply(&at(Event::mcp_progress("t", 100.0, Some(100.0), None), 3));
        assert_eq!(g.get("t").unwrap().outcome, Outcome::Done);
    }

    #[test]
    fn backwards_progress_is_flagged_and_lifecycle_finishes() {
        let mut g = Gauges::default();
        g.apply(&at(Event::progress("job", 5, 10, "x"), 0));
        g.apply(&at(Event::progress("job", 3, 10, "y"), 1));
        assert!(g.get("job").unwrap().backwards);
        g.apply(&at(
            Event::with_resource("task.failed", "job", serde_json::json!({"error": "boom"})),
            2,
        ));
        let gauge = g.get("job").unwrap();
        assert_eq!(gauge.outcome, Outcome::Failed);
        assert_eq!(gauge.elapsed(SystemTime::now()), Duration::from_secs(2));
    }

    #[test]
    fn task_progress_with_only_a_percentage_is_a_gauge_of_100() {
        let mut g = Gauges::default();
        let event = |data| Event::with_resource("task.progress", "upload", data);
        g.apply(&at(
            event(serde_json::json!({"percentage": 40, "message": "m"})),
            0,
        ));
        let gauge = g.get("upload").unwrap();
        assert_eq!(gauge.ratio(), Some(0.4));
        assert_eq!(gauge.message.as_deref(), Some("m"));
        g.apply(&at(event(serde_json::json!({"message": "no number"})), 1));
        assert_eq!(
            g.get("upload").unwrap().ratio(),
            Some(0.4),
            "nothing to read: unchanged"
        );
        g.apply(&at(event(serde_json::json!({"current": 3})), 2));
        assert_eq!(
            g.get("upload").unwrap().current,
            3.0,
            "current wins when present"
        );
    }

    #[test]
    fn stale_and_sorting_put_active_first() {
        let mut g = Gauges::default();
        g.apply(&at(Event::mcp_progress("old", 1.0, None, None), 0));
        g.apply(&at(Event::mcp_progress("done", 1.0, Some(1.0), None), 1));
        g.apply(&at(Event::mcp_progress("fresh", 1.0, None, None), 30));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_031);
        let keys: Vec<&str> = g.sorted(now).iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["fresh", "old", "done"]);
        assert!(g.get("old").unwrap().is_stale(now));
    }

    fn mcp(event_type: &str, data: serde_json::Value, secs: u64) -> Event {
        at(Event::with_resource(event_type, "everything", data), secs)
    }

    fn call(tool: &str, call: &str, token: bool) -> serde_json::Value {
        let mut data = serde_json::json!({
            "from": "client", "method": "tools/call", "id": 4, "tool": tool, "call": call,
        });
        if token {
            data["progressToken"] = serde_json::json!(call);
        }
        data
    }

    #[test]
    fn an_mcp_call_is_a_gauge_named_after_its_tool_from_request_to_response() {
        let mut g = Gauges::default();
        g.apply(&mcp("mcp.request", call("render", "ipckit-9-4", true), 0));
        let gauge = g.get("ipckit-9-4").unwrap();
        assert_eq!(gauge.name(), "render · everything");
        assert_eq!(gauge.outcome, Outcome::Running);
        assert_eq!(gauge.updates, 0);
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_060);
        assert!(
            !gauge.is_stale(later),
            "no progress promised: running, not stale"
        );
        assert_eq!(gauge.elapsed(later), Duration::from_secs(60));

        g.apply(&mcp(
            "mcp.notifications.progress",
            serde_json::json!({"progressToken": "ipckit-9-4", "call": "ipckit-9-4", "tool": "render",
                "progress": 1, "total": 4, "message": "render: frame 1"}),
            1,
        ));
        let gauge = g.get("ipckit-9-4").unwrap();
        assert_eq!(gauge.ratio(), Some(0.25));
        assert_eq!(
            gauge.message.as_deref(),
            Some("frame 1"),
            "the tool is in the name"
        );
        g.apply(&mcp(
            "mcp.response",
            serde_json::json!({"from": "server", "method": "tools/call", "call": "ipckit-9-4",
                "duration_ms": 3000.0}),
            3,
        ));
        let gauge = g.get("ipckit-9-4").unwrap();
        assert_eq!(gauge.outcome, Outcome::Done);
        assert_eq!(gauge.elapsed(later), Duration::from_secs(3));
    }

    #[test]
    fn an_mcp_call_fails_with_its_error_even_after_reaching_its_total() {
        let mut g = Gauges::default();
        g.apply(&mcp("mcp.request", call("build", "c1", true), 0));
        g.apply(&mcp(
            "mcp.notifications.progress",
            serde_json::json!({"progressToken": "c1", "call": "c1", "tool": "build", "progress": 2,
                "total": 2, "message": "build"}),
            1,
        ));
        assert_eq!(g.get("c1").unwrap().outcome, Outcome::Done);
        assert_eq!(g.get("c1").unwrap().message, None);
        g.apply(&mcp(
            "mcp.response",
            serde_json::json!({"call": "c1", "error": {"message": "the server exited with status 3 before answering"}}),
            2,
        ));
        let gauge = g.get("c1").unwrap();
        assert_eq!(gauge.outcome, Outcome::Failed);
        assert!(gauge.message.as_deref().unwrap().contains("status 3"));
    }

    #[test]
    fn calls_without_progress_end_done_and_cancellations_cancel() {
        let mut g = Gauges::default();
        g.apply(&mcp("mcp.request", call("echo", "c1", false), 0));
        assert_eq!(
            g.get("c1").unwrap().message.as_deref(),
            Some("no progress token: running")
        );
        g.apply(&mcp(
            "mcp.response",
            serde_json::json!({"call": "c1", "error": null}),
            1,
        ));
        let gauge = g.get("c1").unwrap();
        assert_eq!((gauge.outcome, gauge.updates), (Outcome::Done, 0));
        g.apply(&mcp("mcp.request", call("slow", "c2", true), 0));
        g.apply(&mcp(
            "mcp.notifications.cancelled",
            serde_json::json!({"call": "c2"}),
            1,
        ));
        assert_eq!(g.get("c2").unwrap().outcome, Outcome::Cancelled);
        // Requests that are not tool calls from the client make no gauge.
        let mut list = call("x", "c3", true);
        list["method"] = "tools/list".into();
        g.apply(&mcp("mcp.request", list, 0));
        let mut from_server = call("x", "c4", true);
        from_server["from"] = "server".into();
        g.apply(&mcp("mcp.request", from_server, 0));
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn gauge_count_is_bounded() {
        let mut g = Gauges::default();
        for i in 0..(MAX_GAUGES + 50) {
            g.apply(&at(
                Event::mcp_progress(&format!("t{i}"), 1.0, None, None),
                i as u64,
            ));
        }
        assert_eq!(g.len(), MAX_GAUGES);
        assert!(g.get("t0").is_none());
        assert!(g.get(&format!("t{}", MAX_GAUGES + 49)).is_some());
    }
}
