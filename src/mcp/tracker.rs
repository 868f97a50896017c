//! The events the lines that passed are worth. Pure: no I/O, explicit clocks, so every rule is
//! unit-tested. It runs off the relay's path, on copies of the lines the relay threads forwarded
//! (as they were before any change), after the [`Gate`](super::Gate) decided what to forward.
//!
//! Requests are remembered by id, per direction (the client's ids and the server's are separate
//! spaces), until their response passes or they are cancelled; progress tokens are remembered with
//! the call they belong to. Each request gets a call key `ipckit-PID-N`, unique on the machine,
//! which the request, its progress and its response all carry as `call`, so the monitor can follow
//! one call across the three. A `tools/call` the gate gave a progress token has that token as its
//! call key.

use super::message::{token_text, IdKey, Kind, Message, Params, ProgressParams};
use crate::event_stream::{event_types, Event, McpProgressPayload};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Arguments and parameters larger than this (as JSON text) are left out of events, with their size.
pub const INLINE_LIMIT: usize = 2048;

/// Requests remembered per direction at most; past it, new requests are relayed but not followed.
pub const MAX_PENDING: usize = 10_000;

/// Which side sent a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The MCP client (our stdin).
    Client,
    /// The MCP server (its stdout).
    Server,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// What the relay does with a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Forward it unchanged.
    Forward,
    /// Forward this instead (the line with a progress token added).
    Replace(Vec<u8>),
    /// Forward nothing (progress the client did not ask for).
    Drop,
}

/// A request awaiting its response.
#[derive(Debug, Clone)]
struct Pending {
    method: String,
    tool: Option<String>,
    call: String,
    token: Option<String>,
    started: Instant,
}

/// The call a progress token belongs to.
#[derive(Debug, Clone)]
struct TokenOwner {
    call: String,
    method: String,
    tool: Option<String>,
}

/// Follows the conversation between one client and one server.
#[derive(Debug)]
pub struct Tracker {
    server: String,
    prefix: String,
    calls: Arc<AtomicU64>,
    /// The time of the line being read (its events' timestamp).
    wall: SystemTime,
    /// Requests the client sent, by id.
    client_requests: HashMap<IdKey, Pending>,
    /// Requests the server sent, by id.
    server_requests: HashMap<IdKey, Pending>,
    tokens: HashMap<String, TokenOwner>,
}

impl Tracker {
    /// A tracker for the server published as `server`; call keys are `{prefix}{n}`, `n` from
    /// `calls` (shared with the [`Gate`](super::Gate) that numbers injected tokens).
    pub fn new(server: &str, prefix: &str, calls: Arc<AtomicU64>) -> Self {
        Self {
            server: server.to_owned(),
            prefix: prefix.to_owned(),
            calls,
            wall: SystemTime::UNIX_EPOCH,
            client_requests: HashMap::new(),
            server_requests: HashMap::new(),
            tokens: HashMap::new(),
        }
    }

    /// Requests awaiting a response (both directions).
    pub fn pending(&self) -> usize {
        self.client_requests.len() + self.server_requests.len()
    }

    /// Looks at one line `from` one side (without its `\n`, as it was before any change), read at
    /// `now` (and `wall`, the events' timestamp); `injected` is the call number of the token the
    /// gate added to it. Pushes the events it is worth onto `events`.
    pub fn line(
        &mut self,
        from: Side,
        line: &[u8],
        at: (Instant, SystemTime),
        injected: Option<u64>,
        events: &mut Vec<Event>,
    ) {
        let Some(message) = Message::parse(line) else {
            return;
        };
        let (now, wall) = at;
        self.wall = wall;
        match message.kind() {
            Some(Kind::Request) => self.request(from, line, &message, injected, now, events),
            Some(Kind::Response) => self.response(from, line, &message, now, events),
            Some(Kind::Notification) => self.notification(from, &message, events),
            None => {}
        }
    }

    /// The server is gone: every request still awaiting its answer gets a failed `mcp.response`
    /// saying so (`how` is e.g. "exited with status 3").
    pub fn server_exited(&mut self, how: &str, at: (Instant, SystemTime), events: &mut Vec<Event>) {
        let (now, wall) = at;
        self.wall = wall;
        let mut unanswered: Vec<(IdKey, Pending, Side)> = self
            .client_requests
            .drain()
            .map(|(id, p)| (id, p, Side::Client))
            .chain(
                self.server_requests
                    .drain()
                    .map(|(id, p)| (id, p, Side::Server)),
            )
            .collect();
        unanswered.sort_by_key(|(_, p, _)| p.started);
        self.tokens.clear();
        for (id, pending, asked_by) in unanswered {
            let id = match id {
                IdKey::Number(n) => serde_json::from_str(&n).unwrap_or(Value::String(n)),
                IdKey::Text(t) => Value::String(t),
            };
            let mut data = Map::new();
            data.insert("from".into(), json!("ipckit-top"));
            data.insert("asked_by".into(), json!(asked_by.name()));
            data.insert("method".into(), json!(pending.method));
            data.insert("id".into(), id);
            if let Some(tool) = &pending.tool {
                data.insert("tool".into(), json!(tool));
            }
            data.insert("call".into(), json!(pending.call));
            if let Some(token) = &pending.token {
                data.insert("progressToken".into(), json!(token));
            }
            data.insert("duration_ms".into(), duration_ms(pending.started, now));
            data.insert(
                "error".into(),
                json!({ "message": format!("the server {how} before answering") }),
            );
            data.insert("unanswered".into(), json!(true));
            events.push(self.event(event_types::MCP_RESPONSE, data));
        }
    }

    fn event(&self, event_type: &str, data: Map<String, Value>) -> Event {
        let mut event = Event::with_resource(event_type, &self.server, Value::Object(data));
        event.timestamp = self.wall;
        event
    }

    fn request(
        &mut self,
        from: Side,
        line: &[u8],
        message: &Message<'_>,
        injected_call: Option<u64>,
        now: Instant,
        events: &mut Vec<Event>,
    ) {
        let method = message.method();
        let params = message.params.and_then(Params::parse).unwrap_or_default();
        let tool = (method == "tools/call")
            .then(|| params.name.as_deref().map(str::to_owned))
            .flatten();
        let (call, token, injected) = match injected_call {
            Some(n) => {
                let call = format!("{}{n}", self.prefix);
                (call.clone(), Some(call), true)
            }
            None => {
                let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
                let token = params.meta_progress_token().and_then(token_text);
                (format!("{}{n}", self.prefix), token, false)
            }
        };

        let mut data = Map::new();
        data.insert("from".into(), json!(from.name()));
        data.insert("method".into(), json!(method));
        data.insert("id".into(), message.id_value());
        if let Some(tool) = &tool {
            data.insert("tool".into(), json!(tool));
            inline(&mut data, "arguments", params.arguments);
        } else {
            inline(&mut data, "params", message.params);
        }
        data.insert("call".into(), json!(call));
        if let Some(token) = &token {
            data.insert("progressToken".into(), json!(token));
            data.insert("injected".into(), json!(injected));
        }
        data.insert("bytes".into(), json!(line.len()));
        events.push(self.event(event_types::MCP_REQUEST, data));

        let requests = match from {
            Side::Client => &mut self.client_requests,
            Side::Server => &mut self.server_requests,
        };
        if let Some(id) = message.id_key() {
            if requests.len() < MAX_PENDING || requests.contains_key(&id) {
                if let Some(token) = &token {
                    if self.tokens.len() < MAX_PENDING {
                        self.tokens.insert(
                            token.clone(),
                            TokenOwner {
                                call: call.clone(),
                                method: method.to_owned(),
                                tool: tool.clone(),
                            },
                        );
                    }
                }
                let replaced = requests.insert(
                    id,
                    Pending {
                        method: method.to_owned(),
                        tool,
                        call,
                        token,
                        started: now,
                    },
                );
                if let Some(old) = replaced.and_then(|old| old.token) {
                    self.tokens.remove(&old);
                }
            }
        }
    }

    fn response(
        &mut self,
        from: Side,
        line: &[u8],
        message: &Message<'_>,
        now: Instant,
        events: &mut Vec<Event>,
    ) {
        // A response answers a request from the other side.
        let requests = match from {
            Side::Server => &mut self.client_requests,
            Side::Client => &mut self.server_requests,
        };
        let pending = message.id_key().and_then(|id| requests.remove(&id));
        let mut data = Map::new();
        data.insert("from".into(), json!(from.name()));
        match &pending {
            Some(p) => {
                data.insert("method".into(), json!(p.method));
            }
            None => {
                data.insert("unmatched".into(), json!(true));
            }
        }
        data.insert("id".into(), message.id_value());
        if let Some(p) = &pending {
            if let Some(tool) = &p.tool {
                data.insert("tool".into(), json!(tool));
            }
            data.insert("call".into(), json!(p.call));
            if let Some(token) = &p.token {
                data.insert("progressToken".into(), json!(token));
                self.tokens.remove(token);
            }
            data.insert("duration_ms".into(), duration_ms(p.started, now));
        }
        if let Some(error) = message.error {
            data.insert("error".into(), error_summary(error));
        } else if pending.as_ref().is_some_and(|p| p.tool.is_some()) {
            // Only a result that says so is read for its error (results can be large).
            let says_error = message
                .result
                .is_some_and(|r| memchr::memmem::find(r.get().as_bytes(), b"isError").is_some());
            if let Some(text) = message.result.filter(|_| says_error).and_then(tool_error) {
                data.insert("is_error".into(), json!(true));
                data.insert("error".into(), json!({ "message": text }));
            }
        }
        data.insert("bytes".into(), json!(line.len()));
        events.push(self.event(event_types::MCP_RESPONSE, data));
    }

    fn notification(&mut self, from: Side, message: &Message<'_>, events: &mut Vec<Event>) {
        let method = message.method();
        let params = message.params.and_then(Params::parse).unwrap_or_default();
        if method == "notifications/progress" {
            return self.progress(from, message, &params, events);
        }
        let tail = method.strip_prefix("notifications/").unwrap_or(method);
        let event_type = format!("mcp.notifications.{}", tail.replace('/', "."));
        let mut data = Map::new();
        data.insert("from".into(), json!(from.name()));
        data.insert("method".into(), json!(method));
        if method == "notifications/cancelled" {
            // The side that cancels is the side that asked.
            let requests = match from {
                Side::Client => &mut self.client_requests,
                Side::Server => &mut self.server_requests,
            };
            let cancelled = params
                .request_id
                .and_then(IdKey::of)
                .and_then(|id| requests.remove(&id));
            if let Some(p) = cancelled {
                if let Some(tool) = &p.tool {
                    data.insert("tool".into(), json!(tool));
                }
                data.insert("call".into(), json!(p.call));
                if let Some(token) = &p.token {
                    self.tokens.remove(token);
                }
            }
        }
        inline(&mut data, "params", message.params);
        events.push(self.event(&event_type, data));
    }

    fn progress(
        &mut self,
        from: Side,
        message: &Message<'_>,
        params: &Params<'_>,
        events: &mut Vec<Event>,
    ) {
        let Some(token) = params.progress_token.and_then(token_text) else {
            return;
        };
        let ours = from == Side::Server && token.starts_with(&self.prefix);
        let numbers = message
            .params
            .and_then(|raw| serde_json::from_str::<ProgressParams>(raw.get()).ok());
        if let Some(numbers) = numbers {
            let owner = self.tokens.get(&token);
            let label = owner.map(|o| o.tool.as_deref().unwrap_or(&o.method));
            let text = match (label, numbers.message.as_deref()) {
                (Some(label), Some(text)) => Some(format!("{label}: {text}")),
                (Some(label), None) => Some(label.to_owned()),
                (None, text) => text.map(str::to_owned),
            };
            let payload =
                McpProgressPayload::new(token.as_str(), numbers.progress, numbers.total, text);
            let mut data = match payload.to_value() {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            data.insert("from".into(), json!(from.name()));
            if let Some(owner) = owner {
                if let Some(tool) = &owner.tool {
                    data.insert("tool".into(), json!(tool));
                }
                data.insert("call".into(), json!(owner.call));
            }
            data.insert("injected".into(), json!(ours));
            events.push(self.event(event_types::MCP_PROGRESS, data));
        }
    }
}

fn duration_ms(started: Instant, now: Instant) -> Value {
    let ms = now.saturating_duration_since(started).as_secs_f64() * 1e3;
    json!((ms * 1000.0).round() / 1000.0)
}

/// Puts `raw` into `data` under `key` when it is small, else its size under `{key}_bytes`.
fn inline(data: &mut Map<String, Value>, key: &str, raw: Option<&serde_json::value::RawValue>) {
    let Some(raw) = raw else { return };
    let text = raw.get();
    if text.len() <= INLINE_LIMIT {
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            data.insert(key.to_owned(), value);
            return;
        }
    }
    data.insert(format!("{key}_bytes"), json!(text.len()));
}

/// `{code, message}` of a JSON-RPC error object (the message cut to 1,000 characters).
fn error_summary(raw: &serde_json::value::RawValue) -> Value {
    #[derive(serde::Deserialize)]
    struct ErrorObject {
        #[serde(default)]
        code: Option<i64>,
        #[serde(default)]
        message: Option<String>,
    }
    match serde_json::from_str::<ErrorObject>(raw.get()) {
        Ok(e) => json!({ "code": e.code, "message": e.message.map(|m| cut(&m, 1000)) }),
        Err(_) => json!({ "message": cut(raw.get(), 1000) }),
    }
}

/// The first text of a tool result marked `isError`, cut to 1,000 characters ("" if it has none).
fn tool_error(raw: &serde_json::value::RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Content {
        #[serde(default)]
        text: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct ToolResult {
        #[serde(default, rename = "isError")]
        is_error: bool,
        #[serde(default)]
        content: Vec<Content>,
    }
    let result: ToolResult = serde_json::from_str(raw.get()).ok()?;
    result.is_error.then(|| {
        let text = result.content.into_iter().find_map(|c| c.text);
        cut(text.as_deref().unwrap_or_default(), 1000)
    })
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::Gate;
    use std::time::Duration;

    /// A gate and a tracker as the proxy pairs them.
    struct Pair(Gate, Tracker);

    impl Pair {
        fn new(server: &str, pid: u32, inject: bool) -> Pair {
            let calls = Arc::new(AtomicU64::new(0));
            let prefix = format!("ipckit-{pid}-");
            Pair(
                Gate::new(&prefix, inject, Arc::clone(&calls)),
                Tracker::new(server, &prefix, calls),
            )
        }

        fn pending(&self) -> usize {
            self.1.pending()
        }

        fn server_exited(&mut self, how: &str, now: Instant, events: &mut Vec<Event>) {
            self.1.server_exited(how, (now, SystemTime::now()), events);
        }
    }

    fn run(t: &mut Pair, from: Side, line: &str, at: Instant) -> (Action, Vec<Event>) {
        let mut events = Vec::new();
        let (action, injected) = t.0.decide(from, line.as_bytes());
        t.1.line(
            from,
            line.as_bytes(),
            (at, SystemTime::now()),
            injected,
            &mut events,
        );
        (action, events)
    }

    #[test]
    fn a_tool_call_without_token_is_injected_and_its_progress_kept_from_the_client() {
        let t0 = Instant::now();
        let mut t = Pair::new("everything", 42, true);
        let (action, events) = run(
            &mut t,
            Side::Client,
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow","arguments":{"n":1}}}"#,
            t0,
        );
        let Action::Replace(line) = action else {
            panic!("{action:?}")
        };
        let sent: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(sent["params"]["_meta"]["progressToken"], "ipckit-42-1");
        assert_eq!(events[0].event_type, "mcp.request");
        assert_eq!(events[0].resource_id.as_deref(), Some("everything"));
        assert_eq!(events[0].data["tool"], "slow");
        assert_eq!(events[0].data["arguments"], json!({"n": 1}));
        assert_eq!(events[0].data["injected"], true);

        let (action, events) = run(
            &mut t,
            Side::Server,
            r#"{"method":"notifications/progress","params":{"progressToken":"ipckit-42-1","progress":1,"total":4,"message":"step 1"},"jsonrpc":"2.0"}"#,
            t0,
        );
        assert_eq!(action, Action::Drop, "the client did not ask for it");
        assert_eq!(events[0].event_type, "mcp.notifications.progress");
        assert_eq!(events[0].data["message"], "slow: step 1");
        assert_eq!(events[0].data["call"], "ipckit-42-1");
        assert_eq!(events[0].data["total"], 4.0);

        let (action, events) = run(
            &mut t,
            Side::Server,
            r#"{"result":{"content":[]},"jsonrpc":"2.0","id":5}"#,
            t0 + Duration::from_millis(1500),
        );
        assert_eq!(action, Action::Forward);
        assert_eq!(events[0].event_type, "mcp.response");
        assert_eq!(events[0].data["duration_ms"], 1500.0);
        assert_eq!(events[0].data["call"], "ipckit-42-1");
        assert!(events[0].data.get("error").is_none());
        assert_eq!(t.pending(), 0);

        // Late progress for an injected token still never reaches the client.
        let (action, _) = run(
            &mut t,
            Side::Server,
            r#"{"method":"notifications/progress","params":{"progressToken":"ipckit-42-1","progress":2}}"#,
            t0,
        );
        assert_eq!(action, Action::Drop);
    }

    #[test]
    fn the_clients_own_token_is_kept_and_its_progress_forwarded() {
        let t0 = Instant::now();
        let mut t = Pair::new("s", 1, true);
        let (action, events) = run(
            &mut t,
            Side::Client,
            r#"{"id":"a","method":"tools/call","params":{"name":"x","_meta":{"progressToken":7}}}"#,
            t0,
        );
        assert_eq!(action, Action::Forward);
        assert_eq!(events[0].data["progressToken"], "7");
        assert_eq!(events[0].data["injected"], false);
        let (action, events) = run(
            &mut t,
            Side::Server,
            r#"{"method":"notifications/progress","params":{"progressToken":7,"progress":3}}"#,
            t0,
        );
        assert_eq!(action, Action::Forward);
        assert_eq!(events[0].data["progressToken"], "7");
        assert_eq!(events[0].data["call"], "ipckit-1-1");
        assert_eq!(events[0].data["message"], "x");
        // The string id "a" is not the number... and an error response is summarized.
        let (_, events) = run(
            &mut t,
            Side::Server,
            r#"{"id":"a","error":{"code":-32000,"message":"boom"}}"#,
            t0,
        );
        assert_eq!(
            events[0].data["error"],
            json!({"code": -32000, "message": "boom"})
        );
        assert_eq!(events[0].data["method"], "tools/call");
    }

    #[test]
    fn no_inject_forwards_requests_untouched() {
        let mut t = Pair::new("s", 1, false);
        let (action, events) = run(
            &mut t,
            Side::Client,
            r#"{"id":1,"method":"tools/call","params":{"name":"x"}}"#,
            Instant::now(),
        );
        assert_eq!(action, Action::Forward);
        assert!(events[0].data.get("progressToken").is_none());
        assert_eq!(events[0].data["call"], "ipckit-1-1");
    }

    #[test]
    fn ids_match_by_type_and_direction() {
        let t0 = Instant::now();
        let mut t = Pair::new("s", 1, true);
        run(
            &mut t,
            Side::Client,
            r#"{"id":1,"method":"tools/list"}"#,
            t0,
        );
        run(
            &mut t,
            Side::Server,
            r#"{"id":1,"method":"roots/list"}"#,
            t0,
        );
        let (_, events) = run(&mut t, Side::Server, r#"{"id":"1","result":{}}"#, t0);
        assert_eq!(events[0].data["unmatched"], true, "\"1\" is not 1");
        let (_, events) = run(&mut t, Side::Client, r#"{"id":1,"result":{}}"#, t0);
        assert_eq!(
            events[0].data["method"], "roots/list",
            "the server's request"
        );
        let (_, events) = run(&mut t, Side::Server, r#"{"id":1,"result":{}}"#, t0);
        assert_eq!(events[0].data["method"], "tools/list");
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn tool_errors_and_cancellations_and_crashes_are_said() {
        let t0 = Instant::now();
        let mut t = Pair::new("s", 1, true);
        run(
            &mut t,
            Side::Client,
            r#"{"id":1,"method":"tools/call","params":{"name":"a"}}"#,
            t0,
        );
        let (_, events) = run(
            &mut t,
            Side::Server,
            r#"{"id":1,"result":{"isError":true,"content":[{"type":"text","text":"no such file"}]}}"#,
            t0,
        );
        assert_eq!(events[0].data["is_error"], true);
        assert_eq!(events[0].data["error"]["message"], "no such file");

        run(
            &mut t,
            Side::Client,
            r#"{"id":2,"method":"tools/call","params":{"name":"b"}}"#,
            t0,
        );
        let (action, events) = run(
            &mut t,
            Side::Client,
            r#"{"method":"notifications/cancelled","params":{"requestId":2,"reason":"user"}}"#,
            t0,
        );
        assert_eq!(action, Action::Forward);
        assert_eq!(events[0].event_type, "mcp.notifications.cancelled");
        assert_eq!(events[0].data["call"], "ipckit-1-2");
        assert_eq!(events[0].data["params"]["reason"], "user");

        run(
            &mut t,
            Side::Client,
            r#"{"id":3,"method":"tools/call","params":{"name":"c"}}"#,
            t0,
        );
        let mut events = Vec::new();
        t.server_exited(
            "exited with status 3",
            t0 + Duration::from_secs(2),
            &mut events,
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data["call"], "ipckit-1-3");
        assert_eq!(events[0].data["id"], 3);
        assert_eq!(
            events[0].data["error"]["message"],
            "the server exited with status 3 before answering"
        );
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn other_notifications_and_big_arguments() {
        let mut t = Pair::new("s", 1, true);
        let (_, events) = run(
            &mut t,
            Side::Server,
            r#"{"method":"notifications/tools/list_changed","jsonrpc":"2.0"}"#,
            Instant::now(),
        );
        assert_eq!(events[0].event_type, "mcp.notifications.tools.list_changed");
        let (_, events) = run(
            &mut t,
            Side::Server,
            r#"{"method":"notifications/message","params":{"level":"info","data":"hi"}}"#,
            Instant::now(),
        );
        assert_eq!(events[0].event_type, "mcp.notifications.message");
        assert_eq!(events[0].data["params"]["level"], "info");
        let big = "x".repeat(INLINE_LIMIT);
        let line = format!(
            r#"{{"id":1,"method":"tools/call","params":{{"name":"a","arguments":{{"s":"{big}"}}}}}}"#
        );
        let (_, events) = run(&mut t, Side::Client, &line, Instant::now());
        assert!(events[0].data.get("arguments").is_none());
        assert_eq!(events[0].data["arguments_bytes"], INLINE_LIMIT + 8);
        let (action, events) = run(&mut t, Side::Server, "not json", Instant::now());
        assert_eq!((action, events.len()), (Action::Forward, 0));
    }
}
