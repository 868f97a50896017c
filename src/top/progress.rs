//! Progress gauges, built from events alone: one per MCP progress token and per `task.progress`
//! resource, and one per MCP tool call seen by `ipckit-top mcp` (named after its tool and server,
//! running from its `mcp.request`, done or failed at its `mcp.response`, whether or not it reports
//! progress). Pure data: [`Gauges::apply`] folds one event in, and everything time-dependent (rate, ETA,
//! stalls) is computed against an explicit `now`, so the same code serves the live view (wall clock)
//! and the history scrubber (the time of the event under the cursor).
//!
//! # MCP's rules, watched
//!
//! MCP requires a token's progress to increase, its total (when given) to stay put, and no progress
//! once the request is answered or cancelled. A gauge notes each breach in its [`Flags`], shown until
//! the gauge starts a new run:
//! - progress lower than the previous report: *went backwards* (from and to);
//! - a known total replaced by a different one: *total changed* (from and to);
//! - a progress report after the gauge finished (its total reached, or an end event): *update after
//!   done* (counted; the report does not reopen the gauge, which stays as it ended);
//! - silence while running: *stalled*, once no update has come for [`Gauge::stall_threshold`], that is
//!   [`STALL_GAPS`] times its mean gap between recent updates, at least [`STALL_AFTER_MIN`] and at
//!   most [`STALL_AFTER_MAX`]. A gauge that is silent now shows for how long; one that stalled and went
//!   on (or ended) keeps its longest stall as a flag.
//!
//! A gauge ends at the first end event that names it: `task.completed` / `task.failed` /
//! `task.cancelled`, the proxy's `mcp.response` (failed when it carries an error) and
//! `mcp.notifications.cancelled`. Every one of them names its gauge the same way ([`Gauges::apply`]):
//! by the `call` in its data (the proxy's key for a tool call), else its `progressToken`, else its
//! resource. A failure overrides a gauge that had merely reached its total. A finished gauge starts a
//! new run (flags cleared) at a `task.created` or `task.started` for its resource.
//!
//! Flags are part of the gauge's data, so the history scrubber, which rebuilds gauges from
//! snapshots, shows them as they were at its cursor.

use crate::event_stream::{event_types, Event, EventFilter, FieldTest, Glob};
use rustc_hash::FxHashMap;
use serde_json::Value;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// A running gauge is stalled after at least this long without an update.
pub const STALL_AFTER_MIN: Duration = Duration::from_secs(10);

/// A running gauge is stalled after this many of its usual gaps between updates without one (when
/// that is longer than [`STALL_AFTER_MIN`]), so a job that reports once a minute is not called stalled
/// between its reports.
pub const STALL_GAPS: u32 = 5;

/// A running gauge is stalled after at most this long without an update, however rarely it reports.
pub const STALL_AFTER_MAX: Duration = Duration::from_secs(600);

/// At most this many gauges are tracked; past it, the longest-finished (then the stalest) are forgotten.
pub const MAX_GAUGES: usize = 200;

/// How many recent updates the rate (and the usual gap between updates) is computed over.
const RATE_SAMPLES: usize = 8;

/// Where a gauge's numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaugeKind {
    /// An MCP `notifications/progress` token.
    Mcp,
    /// A `task.progress` (or file transfer progress) resource.
    Task,
}

/// What a gauge's key is, and so which events belong to it ([`Gauge::filter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The events' resource id (a task, or an MCP token published as the resource).
    Resource,
    /// The `call` the MCP proxy puts in a tool call's request, progress and response.
    Call,
    /// The `progressToken` in the data of MCP progress published under another resource.
    Token,
}

/// How a gauge's work ended, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still going.
    Running,
    /// Reached its total, or a `task.completed` (or a successful `mcp.response`) arrived for it.
    Done,
    /// A `task.failed` (or an `mcp.response` with an error) arrived for it.
    Failed,
    /// A `task.cancelled` or `notifications/cancelled` arrived for it.
    Cancelled,
}

/// The breaches of MCP's progress rules a gauge saw in its current run (see the [module
/// docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Flags {
    /// The latest report lower than the one before: (from, to).
    pub backwards: Option<(f64, f64)>,
    /// How many reports went backwards.
    pub backwards_times: u32,
    /// The latest change of a known total: (from, to).
    pub total_changed: Option<(f64, f64)>,
    /// Progress reports that arrived after the gauge finished.
    pub after_done: u32,
    /// The longest silence past the stall threshold that has ended (by an update or the end).
    pub stalled: Option<Duration>,
}

/// One breach, as shown on a gauge: [`Gauge::flags`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flag {
    /// Running and silent for `silent` now, past its stall threshold.
    Stalling {
        /// Time since the last update.
        silent: Duration,
    },
    /// It was silent this long at some point, then went on or ended.
    Stalled {
        /// The longest such silence.
        silent: Duration,
    },
    /// Progress went down.
    Backwards {
        /// The report before.
        from: f64,
        /// The lower report.
        to: f64,
        /// How many times it happened.
        times: u32,
    },
    /// A known total changed.
    TotalChanged {
        /// The total before.
        from: f64,
        /// The total after.
        to: f64,
    },
    /// Progress arrived after the gauge finished.
    AfterDone {
        /// How many reports.
        updates: u32,
    },
}

impl Flag {
    /// The reason in a few words: `went backwards 41→37`, `total 90→96`, `2 updates after done`,
    /// `stalled 14s`.
    pub fn reason(&self) -> String {
        let n = |v: f64| super::ui::compact(v);
        match *self {
            Flag::Stalling { silent } => {
                format!("no update for {}", super::ui::short_duration(silent))
            }
            Flag::Stalled { silent } => {
                format!("stalled {}", super::ui::short_duration(silent))
            }
            Flag::Backwards { from, to, times } if times > 1 => {
                format!("went backwards {times}x, last {}→{}", n(from), n(to))
            }
            Flag::Backwards { from, to, .. } => format!("went backwards {}→{}", n(from), n(to)),
            Flag::TotalChanged { from, to } => format!("total {}→{}", n(from), n(to)),
            Flag::AfterDone { updates: 1 } => "update after done".to_owned(),
            Flag::AfterDone { updates } => format!("{updates} updates after done"),
        }
    }

    /// The reason in one word, for a pane too narrow for [`Flag::reason`].
    pub fn short(&self) -> &'static str {
        match self {
            Flag::Stalling { .. } | Flag::Stalled { .. } => "stalled",
            Flag::Backwards { .. } => "backwards",
            Flag::TotalChanged { .. } => "total changed",
            Flag::AfterDone { .. } => "after done",
        }
    }
}

/// One gauge.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    /// The progress token or resource id (for an MCP call through the proxy: its call key).
    pub key: String,
    /// What the key is.
    pub source: KeySource,
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
    /// What it did against MCP's rules in this run.
    pub flags: Flags,
    /// Updates received.
    pub updates: u64,
    /// Order of first appearance, for a stable display.
    order: u64,
    /// Recent (time, value) updates, for the rate.
    samples: VecDeque<(SystemTime, f64)>,
}

impl Gauge {
    fn new(key: String, source: KeySource, kind: GaugeKind, at: SystemTime, order: u64) -> Self {
        Self {
            key,
            source,
            label: None,
            kind,
            current: 0.0,
            total: None,
            message: None,
            started: at,
            updated: at,
            finished: None,
            outcome: Outcome::Running,
            flags: Flags::default(),
            updates: 0,
            order,
            samples: VecDeque::with_capacity(RATE_SAMPLES),
        }
    }

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

    /// The events that belong to this gauge, as a filter: `res:KEY`, `call=KEY` or
    /// `progressToken=KEY` (see [`KeySource`]).
    pub fn filter(&self) -> EventFilter {
        let field = |path: &str| {
            let path = path.parse().ok()?;
            Some(EventFilter::new().field(path, FieldTest::Matches(Glob::new(&self.key))))
        };
        let by_field = match self.source {
            KeySource::Resource => None,
            KeySource::Call => field("call"),
            KeySource::Token => field("progressToken"),
        };
        by_field.unwrap_or_else(|| EventFilter::new().resource(&self.key))
    }

    /// How long this gauge may stay silent while running before it is stalled: [`STALL_GAPS`] times
    /// its mean gap between its recent updates, within [`STALL_AFTER_MIN`] and [`STALL_AFTER_MAX`].
    pub fn stall_threshold(&self) -> Duration {
        let gap = match (self.samples.front(), self.samples.back()) {
            (Some((t0, _)), Some((t1, _))) if self.samples.len() > 1 => {
                t1.duration_since(*t0).unwrap_or_default() / (self.samples.len() as u32 - 1)
            }
            _ => Duration::ZERO,
        };
        (gap * STALL_GAPS).clamp(STALL_AFTER_MIN, STALL_AFTER_MAX)
    }

    /// How long it has been silent, when it is running and silent past [`Gauge::stall_threshold`]
    /// at `now`. A call that has reported no progress at all never stalls: it is running, for as
    /// long as it takes.
    pub fn stalled_for(&self, now: SystemTime) -> Option<Duration> {
        if self.outcome != Outcome::Running || self.updates == 0 {
            return None;
        }
        let silent = now.duration_since(self.updated).ok()?;
        (silent > self.stall_threshold()).then_some(silent)
    }

    /// Running, and silent past its stall threshold at `now` ([`Gauge::stalled_for`]).
    pub fn is_stalled(&self, now: SystemTime) -> bool {
        self.stalled_for(now).is_some()
    }

    /// What this run did against MCP's rules, as of `now`: a stall going on first, then the flags.
    pub fn flags(&self, now: SystemTime) -> Vec<Flag> {
        let mut out = Vec::new();
        if let Some(silent) = self.stalled_for(now) {
            out.push(Flag::Stalling { silent });
        }
        let f = &self.flags;
        if let Some((from, to)) = f.backwards {
            out.push(Flag::Backwards {
                from,
                to,
                times: f.backwards_times,
            });
        }
        if let Some((from, to)) = f.total_changed {
            out.push(Flag::TotalChanged { from, to });
        }
        if f.after_done > 0 {
            out.push(Flag::AfterDone {
                updates: f.after_done,
            });
        }
        if let Some(silent) = f.stalled {
            out.push(Flag::Stalled { silent });
        }
        out
    }

    /// Time from first update to the finish (or to `now` while running).
    pub fn elapsed(&self, now: SystemTime) -> Duration {
        let end = self.finished.unwrap_or(now);
        end.duration_since(self.started).unwrap_or_default()
    }

    /// Notes a silence that ends at `at`, if it was long enough to be a stall.
    fn note_silence(&mut self, at: SystemTime) {
        if let Some(silent) = self.stalled_for(at) {
            self.flags.stalled = Some(self.flags.stalled.map_or(silent, |s| s.max(silent)));
        }
    }

    fn report(&mut self, at: SystemTime, value: f64, total: Option<f64>, message: Option<String>) {
        if self.outcome != Outcome::Running {
            // MCP: no progress once a request is answered or cancelled. The gauge stays as it ended.
            self.flags.after_done = self.flags.after_done.saturating_add(1);
            return;
        }
        self.note_silence(at);
        if self.updates == 0 {
            // A call's "no progress yet" goes with its first report.
            self.message = None;
        } else if value < self.current {
            self.flags.backwards = Some((self.current, value));
            self.flags.backwards_times = self.flags.backwards_times.saturating_add(1);
        }
        self.current = value;
        if let Some(total) = total {
            if let Some(before) = self.total.filter(|t| *t != total) {
                self.flags.total_changed = Some((before, total));
            }
            self.total = Some(total);
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

    /// Ends the gauge as `outcome` at `at`: a running gauge ends so, and a failure also overrides a
    /// gauge that had only reached its total. `message` (the error of a failure) replaces the latest
    /// one when given.
    fn end(&mut self, outcome: Outcome, at: SystemTime, message: Option<String>) {
        let overrides = outcome == Outcome::Failed && self.outcome == Outcome::Done;
        if self.outcome == Outcome::Running {
            self.note_silence(at);
        } else if !overrides {
            return;
        }
        self.outcome = outcome;
        self.finished = Some(at);
        self.updated = at;
        if message.is_some() {
            self.message = message;
        }
    }

    /// A new run of the same key: as new, in the same place.
    fn restart(&mut self, at: SystemTime) {
        *self = Gauge {
            label: self.label.take(),
            ..Gauge::new(
                std::mem::take(&mut self.key),
                self.source,
                self.kind,
                at,
                self.order,
            )
        };
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
    source: KeySource,
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

/// A progress token as text (MCP allows a string or an integer).
fn token(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The gauge name of an MCP call through the proxy: `tool · server`.
fn call_label(event: &Event) -> Option<String> {
    let tool = event.data.get("tool")?.as_str()?;
    Some(match event.resource_id.as_deref() {
        Some(server) => format!("{tool} · {server}"),
        None => tool.to_owned(),
    })
}

/// The gauge an event names: the `call` in its data (the MCP proxy's key for a tool call), else its
/// `progressToken`, else its resource.
fn named_gauge(event: &Event) -> Option<(String, KeySource)> {
    let data = &event.data;
    if let Some(Value::String(call)) = data.get("call") {
        return Some((call.clone(), KeySource::Call));
    }
    if let Some(token) = data.get("progressToken").and_then(token) {
        let source = if event.resource_id.as_deref() == Some(token.as_str()) {
            KeySource::Resource
        } else {
            KeySource::Token
        };
        return Some((token, source));
    }
    Some((event.resource_id.clone()?, KeySource::Resource))
}

fn report_of(event: &Event) -> Option<Report> {
    let data = &event.data;
    match event.event_type.as_str() {
        event_types::MCP_PROGRESS => {
            // Progress relayed by the proxy names its call, whose gauge it moves.
            let (key, source) = named_gauge(event)?;
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
                source,
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
                source: KeySource::Resource,
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

/// The error text of an end event: a `task.failed`'s `error` (a string, or an object's `message`),
/// an `mcp.response`'s `error.message`.
fn error_text(event: &Event) -> Option<String> {
    match event.data.get("error")? {
        Value::String(s) => Some(s.clone()),
        error => error.get("message")?.as_str().map(str::to_owned),
    }
}

impl Gauges {
    /// Folds one event in: a progress report updates (or creates) its gauge; an end event
    /// (`task.completed`, `task.failed`, `task.cancelled`, the proxy's `mcp.response`,
    /// `mcp.notifications.cancelled`) ends the gauge it names; `task.created` or `task.started` starts
    /// a new run of a finished gauge; the proxy's `mcp.request` for `tools/call` starts its call's gauge.
    /// See the [module docs](self) for the rules.
    pub fn apply(&mut self, event: &Event) {
        let outcome = match event.event_type.as_str() {
            event_types::TASK_COMPLETED => Outcome::Done,
            event_types::TASK_FAILED => Outcome::Failed,
            event_types::TASK_CANCELLED | event_types::MCP_CANCELLED => Outcome::Cancelled,
            event_types::MCP_RESPONSE => {
                if event.data.get("error").is_some_and(|e| !e.is_null()) {
                    Outcome::Failed
                } else {
                    Outcome::Done
                }
            }
            event_types::MCP_REQUEST => return self.call_started(event),
            event_types::TASK_CREATED | event_types::TASK_STARTED => {
                if let Some(gauge) = event
                    .resource_id
                    .as_deref()
                    .and_then(|r| self.map.get_mut(r))
                    .filter(|g| g.outcome != Outcome::Running)
                {
                    gauge.restart(event.timestamp);
                }
                return;
            }
            _ => {
                if let Some(report) = report_of(event) {
                    self.report(event.timestamp, report);
                }
                return;
            }
        };
        let Some(gauge) = named_gauge(event).and_then(|(key, _)| self.map.get_mut(&key)) else {
            return;
        };
        let message = if outcome == Outcome::Failed {
            error_text(event)
        } else {
            None
        };
        gauge.end(outcome, event.timestamp, message);
        let call_ended = matches!(
            event.event_type.as_str(),
            event_types::MCP_RESPONSE | event_types::MCP_CANCELLED
        );
        if call_ended && gauge.updates == 0 && gauge.outcome != Outcome::Failed {
            gauge.message = Some("no progress reported".to_owned());
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
        let mut gauge = Gauge::new(
            call.clone(),
            KeySource::Call,
            GaugeKind::Mcp,
            event.timestamp,
            self.next_order,
        );
        gauge.label = call_label(event);
        gauge.message = Some(message.to_owned());
        self.next_order += 1;
        self.map.insert(call.clone(), gauge);
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
        let mut gauge = Gauge::new(
            report.key.clone(),
            report.source,
            report.kind,
            at,
            self.next_order,
        );
        gauge.label = report.label;
        gauge.current = report.value;
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

    /// Gauges in display order: active ones first (by first appearance), then stalled ones, then
    /// finished ones (most recently finished first).
    pub fn sorted(&self, now: SystemTime) -> Vec<&Gauge> {
        let mut out: Vec<&Gauge> = self.map.values().collect();
        out.sort_by(|a, b| {
            let rank = |g: &Gauge| match (g.outcome, g.is_stalled(now)) {
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
        assert_eq!(g.get("job").unwrap().flags.backwards, Some((5.0, 3.0)));
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
        assert!(g.get("old").unwrap().is_stalled(now));
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
            !gauge.is_stalled(later),
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

    fn ms(event: Event, millis: u64) -> Event {
        Event {
            timestamp: SystemTime::UNIX_EPOCH
                + Duration::from_secs(1_700_000_000)
                + Duration::from_millis(millis),
            ..event
        }
    }

    #[test]
    fn backwards_and_a_changed_total_are_flagged_with_from_and_to() {
        let mut g = Gauges::default();
        g.apply(&at(Event::mcp_progress("t", 30.0, Some(90.0), None), 0));
        g.apply(&at(Event::mcp_progress("t", 27.0, Some(90.0), None), 1));
        g.apply(&at(Event::mcp_progress("t", 40.0, Some(96.0), None), 2));
        // A report without a total keeps the known one: not a change.
        g.apply(&at(Event::mcp_progress("t", 41.0, None, None), 3));
        let gauge = g.get("t").unwrap();
        assert_eq!(gauge.total, Some(96.0));
        let flags = gauge.flags(at(Event::new("x", Value::Null), 3).timestamp);
        let reasons: Vec<String> = flags.iter().map(Flag::reason).collect();
        assert_eq!(reasons, ["went backwards 30→27", "total 90→96"]);
        g.apply(&at(Event::mcp_progress("t", 35.0, None, None), 4));
        assert_eq!(
            g.get("t").unwrap().flags(SystemTime::UNIX_EPOCH)[0].reason(),
            "went backwards 2x, last 41→35"
        );
    }

    #[test]
    fn an_update_after_done_is_flagged_and_does_not_reopen_the_gauge() {
        let mut g = Gauges::default();
        g.apply(&at(Event::mcp_progress("t", 10.0, Some(10.0), None), 0));
        assert_eq!(g.get("t").unwrap().outcome, Outcome::Done);
        g.apply(&at(Event::mcp_progress("t", 11.0, Some(10.0), None), 1));
        g.apply(&at(Event::mcp_progress("t", 12.0, Some(10.0), None), 2));
        let gauge = g.get("t").unwrap();
        assert_eq!((gauge.outcome, gauge.current), (Outcome::Done, 10.0));
        assert_eq!(
            gauge.flags(SystemTime::UNIX_EPOCH)[0].reason(),
            "2 updates after done"
        );

        // A task's resource starts a new run at task.started: flags cleared, in the same place.
        let mut g = Gauges::default();
        g.apply(&at(Event::progress("job", 5, 5, "x"), 0));
        g.apply(&at(Event::progress("job", 5, 5, "x"), 1));
        assert_eq!(g.get("job").unwrap().flags.after_done, 1);
        g.apply(&at(
            Event::with_resource("task.started", "job", serde_json::json!({})),
            2,
        ));
        let gauge = g.get("job").unwrap();
        assert_eq!(
            (gauge.outcome, gauge.updates, gauge.flags),
            (Outcome::Running, 0, Flags::default())
        );
        g.apply(&at(Event::progress("job", 1, 5, "again"), 3));
        let gauge = g.get("job").unwrap();
        assert_eq!((gauge.current, gauge.flags), (1.0, Flags::default()));
        assert_eq!(
            gauge.elapsed(at(Event::new("x", Value::Null), 4).timestamp),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn a_silent_gauge_stalls_after_its_threshold_and_keeps_the_flag_once_it_goes_on() {
        let mut g = Gauges::default();
        // One report: no gap known yet, so the minimum.
        g.apply(&ms(Event::mcp_progress("t", 1.0, Some(100.0), None), 0));
        let gauge = g.get("t").unwrap();
        assert_eq!(gauge.stall_threshold(), STALL_AFTER_MIN);
        let t = |millis| ms(Event::new("x", Value::Null), millis).timestamp;
        assert_eq!(gauge.stalled_for(t(10_000)), None);
        assert_eq!(
            gauge.stalled_for(t(10_500)),
            Some(Duration::from_millis(10_500))
        );
        // Reports every 4 s: five gaps are 20 s.
        let mut g = Gauges::default();
        for i in 0..4 {
            g.apply(&ms(
                Event::mcp_progress("t", i as f64, Some(100.0), None),
                i * 4000,
            ));
        }
        assert_eq!(
            g.get("t").unwrap().stall_threshold(),
            Duration::from_secs(20)
        );
        assert!(!g.get("t").unwrap().is_stalled(t(12_000 + 19_000)));
        assert!(g.get("t").unwrap().is_stalled(t(12_000 + 21_000)));
        let reasons: Vec<String> = g
            .get("t")
            .unwrap()
            .flags(t(12_000 + 21_000))
            .iter()
            .map(Flag::reason)
            .collect();
        assert_eq!(reasons, ["no update for 21s"]);
        // It goes on after 25 s: no longer stalled, and the stall stays as a flag.
        g.apply(&ms(
            Event::mcp_progress("t", 4.0, Some(100.0), None),
            37_000,
        ));
        let gauge = g.get("t").unwrap();
        assert!(!gauge.is_stalled(t(37_000)));
        assert_eq!(gauge.flags.stalled, Some(Duration::from_secs(25)));
        assert_eq!(gauge.flags(t(37_000))[0].reason(), "stalled 25s");
        // A stall that ends in a failure is kept too, with the failure's error as the message.
        g.apply(&ms(
            Event::with_resource(
                "task.failed",
                "t",
                serde_json::json!({"error": "node n-3 stopped answering"}),
            ),
            37_000 + 60_000,
        ));
        let gauge = g.get("t").unwrap();
        assert_eq!(gauge.outcome, Outcome::Failed);
        assert_eq!(gauge.flags.stalled, Some(Duration::from_secs(60)));
        assert_eq!(gauge.message.as_deref(), Some("node n-3 stopped answering"));
        assert_eq!(
            gauge.stalled_for(t(200_000)),
            None,
            "a finished gauge is not silent"
        );
    }

    #[test]
    fn every_end_event_names_its_gauge_by_call_then_token_then_resource() {
        let mut g = Gauges::default();
        // Published by the library: the token is the resource.
        g.apply(&at(Event::mcp_progress("tok-1", 1.0, Some(4.0), None), 0));
        g.apply(&at(
            Event::with_resource(
                "mcp.notifications.cancelled",
                "tok-1",
                serde_json::json!({"requestId": 7}),
            ),
            1,
        ));
        assert_eq!(g.get("tok-1").unwrap().outcome, Outcome::Cancelled);
        // Progress under another resource, cancelled by its token.
        let mut progress = Event::mcp_progress("tok-2", 1.0, Some(4.0), None);
        progress.resource_id = Some("server".into());
        g.apply(&at(progress, 0));
        assert_eq!(g.get("tok-2").unwrap().source, KeySource::Token);
        g.apply(&at(
            Event::with_resource(
                "mcp.notifications.cancelled",
                "server",
                serde_json::json!({"progressToken": "tok-2"}),
            ),
            1,
        ));
        assert_eq!(g.get("tok-2").unwrap().outcome, Outcome::Cancelled);
        // The proxy's call: by its call key, and a failed response names the error.
        g.apply(&mcp("mcp.request", call("render", "c9", true), 0));
        g.apply(&mcp(
            "mcp.notifications.progress",
            serde_json::json!({"progressToken": "c9", "call": "c9", "progress": 3, "total": 3}),
            1,
        ));
        g.apply(&mcp(
            "mcp.response",
            serde_json::json!({"call": "c9", "error": {"code": -1, "message": "boom"}}),
            2,
        ));
        let gauge = g.get("c9").unwrap();
        assert_eq!(
            (gauge.outcome, gauge.message.as_deref()),
            (Outcome::Failed, Some("boom"))
        );
        assert_eq!(gauge.source, KeySource::Call);
        // Progress after the cancellation breaks MCP's rule.
        g.apply(&at(Event::mcp_progress("tok-1", 2.0, Some(4.0), None), 2));
        assert_eq!(g.get("tok-1").unwrap().flags.after_done, 1);
    }

    #[test]
    fn a_gauge_filters_to_its_events_by_what_its_key_is() {
        let mut g = Gauges::default();
        g.apply(&at(Event::mcp_progress("render 1", 1.0, None, None), 0));
        let mut progress = Event::mcp_progress("tok-2", 1.0, None, None);
        progress.resource_id = Some("server".into());
        g.apply(&at(progress, 0));
        g.apply(&mcp("mcp.request", call("render", "ipckit-9-4", true), 0));
        let expr = |key: &str| g.get(key).unwrap().filter().to_string();
        assert_eq!(expr("render 1"), "res:\"render 1\"");
        assert_eq!(expr("tok-2"), "progressToken=tok-2");
        assert_eq!(expr("ipckit-9-4"), "call=ipckit-9-4");
        for key in ["render 1", "tok-2", "ipckit-9-4"] {
            let filter = g.get(key).unwrap().filter();
            assert_eq!(EventFilter::parse(&filter.to_string()).unwrap(), filter);
        }
    }
}
