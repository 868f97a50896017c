//! How events map onto a JetStream stream: subjects from event types, the headers, the payload, and
//! which filters the server can narrow.
//!
//! - Subject: the stream's prefix (`ipckit.`) then the event type's dot-separated tokens, each
//!   escaped where NATS forbids it ([`subject_token`]): `task.started` → `ipckit.task.started`.
//! - Headers: [`header::RESOURCE`], [`header::ORIGIN`], [`header::ORIGIN_ID`], [`header::INSTANCE`],
//!   [`header::TIME`], and `Nats-Msg-Id` = `INSTANCE:ORIGIN_ID`, so a resend is dropped by the
//!   server within the stream's duplicate window; [`header::LOST`] on the first event after events
//!   its origin lost before they reached NATS.
//! - Payload: the event's JSON, its `id` being its id on its origin.

use crate::event_stream::{EventFilter, Glob, Loss, LossReason, Term};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::SystemTime;

/// The header names.
pub mod header {
    /// The event's resource id (percent-escaped: see [`super::header_value`]); absent when it has none.
    pub const RESOURCE: &str = "Ipckit-Resource";
    /// The origin's name: a machine or bus label (`--origin`, by default the host name).
    pub const ORIGIN: &str = "Ipckit-Origin";
    /// The event's id on its origin (its bus's id, or a counter of `publish --nats`).
    pub const ORIGIN_ID: &str = "Ipckit-Origin-Id";
    /// The origin's instance: the bus's `instance` (a bus that restarts gets a new one and counts ids
    /// from 1 again), or one per `publish --nats` process.
    pub const INSTANCE: &str = "Ipckit-Instance";
    /// When the event was created, RFC 3339 with microseconds, UTC.
    pub const TIME: &str = "Ipckit-Time";
    /// Events its origin lost just before this one (before they reached NATS):
    /// `COUNT FIRST LAST REASON`, each of the first three `-` when not known, e.g.
    /// `12 5 16 history_evicted` or `- 40 - bus_restarted` ([`super::encode_loss`]).
    pub const LOST: &str = "Ipckit-Lost";
    /// The header NATS dedupes on.
    pub const MSG_ID: &str = "Nats-Msg-Id";
}

/// The stream and subjects events live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    stream: String,
    prefix: String,
}

/// The stream name used when none is given.
pub const DEFAULT_STREAM: &str = "IPCKIT";

impl Default for Mapping {
    fn default() -> Self {
        Self::new(DEFAULT_STREAM)
    }
}

impl Mapping {
    /// The mapping onto stream `stream`, whose subjects are under the stream's name in lowercase and
    /// a dot: `IPCKIT` → `ipckit.`, `FARM` → `farm.` (so two streams never claim the same subjects).
    pub fn new(stream: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            prefix: format!("{}.", subject_token(&stream.to_lowercase())),
        }
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The subject prefix, with its trailing dot (`ipckit.`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The wildcard subject of every event: `ipckit.>`.
    pub fn all_subjects(&self) -> String {
        format!("{}>", self.prefix)
    }

    /// The subject of an event of type `event_type`: the prefix, then each dot-separated token of the
    /// type escaped by [`subject_token`].
    ///
    /// ```
    /// let mapping = ipckit::nats::Mapping::default();
    /// assert_eq!(mapping.subject("task.started"), "ipckit.task.started");
    /// assert_eq!(mapping.subject("log.a b..*"), "ipckit.log.a%20b.%.%2A");
    /// ```
    pub fn subject(&self, event_type: &str) -> String {
        let mut subject = String::with_capacity(self.prefix.len() + event_type.len() + 4);
        subject.push_str(&self.prefix);
        for (i, token) in event_type.split('.').enumerate() {
            if i > 0 {
                subject.push('.');
            }
            subject.push_str(&subject_token(token));
        }
        subject
    }

    /// The subjects the server can narrow a read with `filter` to, or `None` when it must send every
    /// event (the filter's type terms are not all expressible as subject wildcards, or it has none).
    ///
    /// Each positive type glob is one alternative: an exact type is its subject; a glob whose literal
    /// start reaches a dot (`task.*`, `log.std???`) is everything under that start (`ipckit.task.>`);
    /// any other glob (`*.progress`, `task*`) cannot be narrowed, and then nothing is. Subjects
    /// another covers are left out (servers refuse overlapping filters). The result is a superset of
    /// what the filter matches: the client still applies the whole filter.
    ///
    /// ```
    /// use ipckit::nats::Mapping;
    /// let m = Mapping::default();
    /// let narrow = |f: &str| m.narrow(&f.parse().unwrap());
    /// assert_eq!(narrow("task.* !task.progress"), Some(vec!["ipckit.task.>".to_owned()]));
    /// assert_eq!(narrow("log.stderr task.*"), Some(vec!["ipckit.log.stderr".to_owned(), "ipckit.task.>".to_owned()]));
    /// assert_eq!(narrow("*.progress"), None);
    /// assert_eq!(narrow("res:job-1"), None);
    /// ```
    pub fn narrow(&self, filter: &EventFilter) -> Option<Vec<String>> {
        let mut subjects: Vec<String> = Vec::new();
        for (positive, term) in filter.terms() {
            if let (true, Term::Type(glob)) = (positive, term) {
                subjects.push(self.glob_subject(&glob)?);
            }
        }
        if subjects.is_empty() {
            return None;
        }
        subjects.sort();
        subjects.dedup();
        let covered = |s: &str, by: &str| {
            s != by
                && by
                    .strip_suffix('>')
                    .is_some_and(|start| s.starts_with(start))
        };
        let kept: Vec<String> = subjects
            .iter()
            .filter(|s| !subjects.iter().any(|by| covered(s, by)))
            .cloned()
            .collect();
        Some(kept)
    }

    fn glob_subject(&self, glob: &Glob) -> Option<String> {
        let pattern = glob.as_str();
        if glob.is_exact() {
            return Some(self.subject(pattern));
        }
        let literal = &pattern[..pattern.find(['*', '?']).unwrap_or(pattern.len())];
        let dot = literal.rfind('.')?;
        let start = &literal[..dot];
        Some(format!("{}.>", self.subject(start)))
    }
}

/// One token of a subject for one dot-separated token of an event type. NATS forbids whitespace in
/// a subject, empty tokens, and tokens that are `*` or `>` (wildcards); such characters are
/// percent-escaped (`%20`, `%2A`, `%3E`, with `%` itself as `%25` and control characters too), and
/// an empty token is `%`. Anything else is kept as it is.
///
/// ```
/// use ipckit::nats::subject_token;
/// assert_eq!(subject_token("started"), "started");
/// assert_eq!(subject_token("a b"), "a%20b");
/// assert_eq!(subject_token("*"), "%2A");
/// assert_eq!(subject_token(""), "%");
/// assert_eq!(subject_token("100%"), "100%25");
/// ```
pub fn subject_token(token: &str) -> Cow<'_, str> {
    match token {
        "" => return Cow::Borrowed("%"),
        "*" => return Cow::Borrowed("%2A"),
        ">" => return Cow::Borrowed("%3E"),
        _ => {}
    }
    if !token.chars().any(needs_escape) {
        return Cow::Borrowed(token);
    }
    let mut out = String::with_capacity(token.len() + 8);
    for c in token.chars() {
        if needs_escape(c) {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '%' || c.is_whitespace() || c.is_control()
}

/// A header value for `text`: `%`, CR, LF and other control characters percent-escaped (header
/// values are one line); [`header_text`] reads it back.
pub fn header_value(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '%' || c.is_control()) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '%' || c.is_control() {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The text a [`header_value`] stands for (a `%` not followed by two hex digits is kept as it is).
pub fn header_text(value: &str) -> Cow<'_, str> {
    if !value.contains('%') {
        return Cow::Borrowed(value);
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes.get(i), bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(b'%'), Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (Some(&b), _, _) => {
                out.push(b);
                i += 1;
            }
            _ => break,
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// RFC 3339 in UTC with microseconds, as [`header::TIME`] carries it.
pub fn time_value(time: SystemTime) -> String {
    let micros = crate::epoch::cut_to_micros(time);
    humantime::format_rfc3339_micros(micros).to_string()
}

/// The [`header::LOST`] value of a loss.
pub fn encode_loss(loss: &Loss) -> String {
    let part = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    format!(
        "{} {} {} {}",
        part(loss.count),
        part(loss.first_id),
        part(loss.last_id),
        loss.reason.as_str()
    )
}

/// The loss a [`header::LOST`] value says, if it is one.
pub fn decode_loss(value: &str) -> Option<Loss> {
    let mut parts = value.split_ascii_whitespace();
    let mut number = || -> Option<Option<u64>> {
        match parts.next()? {
            "-" => Some(None),
            n => n.parse().ok().map(Some),
        }
    };
    let (count, first_id, last_id) = (number()?, number()?, number()?);
    let reason = LossReason::from_name(parts.next().unwrap_or("other"));
    Some(Loss {
        count,
        first_id,
        last_id,
        reason,
    })
}

/// Whether `name` can be a stream name: not empty, none of the characters NATS refuses in one
/// (whitespace, `.`, `*`, `>`, path separators), at most 255 bytes.
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_escape_what_nats_forbids_and_keep_the_tokens() {
        let m = Mapping::default();
        assert_eq!(m.subject("task.started"), "ipckit.task.started");
        assert_eq!(m.subject("a..b."), "ipckit.a.%.b.%");
        assert_eq!(m.subject("x.>.*"), "ipckit.x.%3E.%2A");
        assert_eq!(m.subject("x.a*b"), "ipckit.x.a*b");
        assert_eq!(m.subject("t\tab\r\n"), "ipckit.t%09ab%0D%0A");
        assert_eq!(m.subject("é.ü"), "ipckit.é.ü");
        assert_eq!(m.subject(""), "ipckit.%");
        for t in ["a", "a.b c", "..", "*.>", "100%.x", "\u{85}.\u{a0}"] {
            let s = m.subject(t);
            assert!(
                s.split('.').all(|tok| !tok.is_empty()
                    && tok != "*"
                    && tok != ">"
                    && !tok.chars().any(char::is_whitespace)),
                "{t:?} -> {s:?}"
            );
        }
        assert_eq!(Mapping::new("FARM").prefix(), "farm.");
    }

    #[test]
    fn narrowing_is_a_superset_of_what_the_filter_matches() {
        let m = Mapping::default();
        let n = |f: &str| m.narrow(&f.parse().unwrap());
        assert_eq!(n(""), None);
        assert_eq!(n("task.started"), Some(vec!["ipckit.task.started".into()]));
        assert_eq!(n("log.std???"), Some(vec!["ipckit.log.>".into()]));
        assert_eq!(n("\"a b.*\""), Some(vec!["ipckit.a%20b.>".into()]));
        assert_eq!(n("task.* task.started"), Some(vec!["ipckit.task.>".into()]));
        assert_eq!(n("task*"), None);
        assert_eq!(n("task.* *.x"), None);
        assert_eq!(n("!task.*"), None);
        assert_eq!(
            n("task.* res:a origin:b x=1"),
            Some(vec!["ipckit.task.>".into()])
        );
        // A glob whose literal start is a whole token sequence still covers the empty last token.
        assert_eq!(m.subject("task."), "ipckit.task.%");
    }

    #[test]
    fn header_values_round_trip() {
        for text in ["plain", "a\r\nb", "50%", "%zz", "tab\there", "é"] {
            assert_eq!(header_text(&header_value(text)), text, "{text:?}");
            assert!(!header_value(text).contains(['\r', '\n']));
        }
    }

    #[test]
    fn losses_round_trip_through_their_header() {
        let loss = Loss {
            count: Some(12),
            first_id: Some(5),
            last_id: Some(16),
            reason: LossReason::HistoryEvicted,
        };
        assert_eq!(encode_loss(&loss), "12 5 16 history_evicted");
        assert_eq!(decode_loss(&encode_loss(&loss)), Some(loss));
        let unknown = Loss {
            count: None,
            first_id: Some(40),
            last_id: None,
            reason: LossReason::BusRestarted,
        };
        assert_eq!(decode_loss(&encode_loss(&unknown)), Some(unknown));
        assert_eq!(decode_loss("x"), None);
    }
}
