//! What the relay threads decide on their own, per line, before it is written: forward it, forward
//! it with a progress token added, or keep it from the client. Only lines that could need a change
//! are parsed: a client line that does not mention `tools`, or a server line that does not carry
//! this proxy's token prefix, is forwarded after one substring search. Everything else about a line
//! (the events it is worth) is worked out later, off the relay's path, by the
//! [`Tracker`](super::Tracker).

use super::message::{inject_progress_token, token_text, Kind, Message, Params};
use super::tracker::{Action, Side};
use memchr::memmem::Finder;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The relay threads' rules.
#[derive(Debug, Clone)]
pub struct Gate {
    prefix: String,
    inject: bool,
    calls: Arc<AtomicU64>,
    tools: Finder<'static>,
    ours: Finder<'static>,
    progress: Finder<'static>,
    progress_escaped: Finder<'static>,
}

impl Gate {
    /// Tokens are `{prefix}{n}` with `n` from `calls` (shared with the tracker, so every call key
    /// is unique); `inject` adds them to `tools/call` requests from the client that lack one.
    pub fn new(prefix: &str, inject: bool, calls: Arc<AtomicU64>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            inject,
            calls,
            tools: Finder::new("tools").into_owned(),
            ours: Finder::new(prefix.as_bytes()).into_owned(),
            progress: Finder::new("notifications/progress").into_owned(),
            progress_escaped: Finder::new("notifications\\/progress").into_owned(),
        }
    }

    /// What to do with `line` from `side`, and the call number of the token it injected, if any.
    pub fn decide(&self, side: Side, line: &[u8]) -> (Action, Option<u64>) {
        match side {
            Side::Client if self.inject && self.tools.find(line).is_some() => self.inject(line),
            Side::Server
                if self.ours.find(line).is_some()
                    && (self.progress.find(line).is_some()
                        || self.progress_escaped.find(line).is_some()) =>
            {
                (self.keep_ours(line), None)
            }
            _ => (Action::Forward, None),
        }
    }

    fn inject(&self, line: &[u8]) -> (Action, Option<u64>) {
        let mut taken = None;
        let changed = inject_progress_token(line, || {
            let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
            taken = Some(n);
            format!("{}{n}", self.prefix)
        });
        match changed {
            Some(changed) => (Action::Replace(changed), taken),
            None => (Action::Forward, None),
        }
    }

    /// Progress for a token this proxy injected is not the client's business.
    fn keep_ours(&self, line: &[u8]) -> Action {
        let ours = Message::parse(line).is_some_and(|m| {
            m.kind() == Some(Kind::Notification)
                && m.method() == "notifications/progress"
                && m.params
                    .and_then(Params::parse)
                    .and_then(|p| p.progress_token)
                    .and_then(token_text)
                    .is_some_and(|t| t.starts_with(&self.prefix))
        });
        if ours {
            Action::Drop
        } else {
            Action::Forward
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(inject: bool) -> Gate {
        Gate::new("ipckit-9-", inject, Arc::new(AtomicU64::new(0)))
    }

    #[test]
    fn tool_calls_without_a_token_get_one_numbered_in_order() {
        let g = gate(true);
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
        let (action, n) = g.decide(Side::Client, call);
        let Action::Replace(line) = action else {
            panic!("{action:?}")
        };
        assert_eq!(n, Some(1));
        let sent: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(sent["params"]["_meta"]["progressToken"], "ipckit-9-1");
        assert_eq!(g.decide(Side::Client, call).1, Some(2));
        for untouched in [
            &br#"{"id":1,"method":"tools/list"}"#[..],
            br#"{"id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":1}}}"#,
            br#"{"method":"tools/call","params":{"name":"x"}}"#,
            b"tools, but not JSON",
        ] {
            assert_eq!(g.decide(Side::Client, untouched), (Action::Forward, None));
        }
        assert_eq!(
            gate(false).decide(Side::Client, call),
            (Action::Forward, None)
        );
        assert_eq!(g.decide(Side::Server, call), (Action::Forward, None));
    }

    #[test]
    fn only_progress_for_our_tokens_is_kept_from_the_client() {
        let g = gate(true);
        let ours = br#"{"method":"notifications/progress","params":{"progressToken":"ipckit-9-4","progress":1},"jsonrpc":"2.0"}"#;
        assert_eq!(g.decide(Side::Server, ours), (Action::Drop, None));
        assert_eq!(g.decide(Side::Client, ours), (Action::Forward, None));
        let theirs = br#"{"method":"notifications/progress","params":{"progressToken":"ipckit-8-4","progress":1}}"#;
        assert_eq!(g.decide(Side::Server, theirs), (Action::Forward, None));
        let mention = br#"{"id":3,"result":{"text":"ipckit-9-4"}}"#;
        assert_eq!(g.decide(Side::Server, mention), (Action::Forward, None));
        let escaped = br#"{"method":"notifications\/progress","params":{"progressToken":"ipckit-9-4","progress":1}}"#;
        assert_eq!(g.decide(Side::Server, escaped), (Action::Drop, None));
    }
}
