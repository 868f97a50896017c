//! Event filters and the text expression syntax documented on [`crate::event_stream`].

use super::event::Event;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wildmatch::WildMatch;

/// A glob pattern: `*` is any run of characters, `?` one character, anything else literal.
#[derive(Clone)]
pub struct Glob {
    source: String,
    kind: GlobKind,
}

#[derive(Clone)]
enum GlobKind {
    Exact,
    Any,
    Prefix(usize),
    Suffix(usize),
    Wild(WildMatch),
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Self {
        let stars = pattern.matches('*').count();
        let has_question = pattern.contains('?');
        let kind = if stars == 0 && !has_question {
            GlobKind::Exact
        } else if stars == pattern.len() {
            GlobKind::Any
        } else if stars == 1 && !has_question && pattern.ends_with('*') {
            GlobKind::Prefix(pattern.len() - 1)
        } else if stars == 1 && !has_question && pattern.starts_with('*') {
            GlobKind::Suffix(1)
        } else {
            GlobKind::Wild(WildMatch::new(pattern))
        };
        Self {
            source: pattern.to_owned(),
            kind,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern has no wildcard, so it matches exactly one string.
    pub fn is_exact(&self) -> bool {
        matches!(self.kind, GlobKind::Exact)
    }

    /// Whether `text` matches the whole pattern.
    #[inline]
    pub fn matches(&self, text: &str) -> bool {
        match &self.kind {
            GlobKind::Exact => text == self.source,
            GlobKind::Any => true,
            GlobKind::Prefix(len) => text.as_bytes().starts_with(&self.source.as_bytes()[..*len]),
            GlobKind::Suffix(skip) => text.as_bytes().ends_with(&self.source.as_bytes()[*skip..]),
            GlobKind::Wild(wild) => wild.matches(text),
        }
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Glob {}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

/// A lower or upper bound on events: a point in time or an event id (both inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Events stamped at this time (since: at or after it; until: at or before it).
    Time(SystemTime),
    /// Events with this id (since: this id or later; until: this id or earlier).
    Id(u64),
}

/// One condition of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// The event type matches the glob.
    Type(Glob),
    /// The event has a resource id that matches the glob.
    Resource(Glob),
    /// Some key or scalar value in the data contains this text, ignoring case (stored lowercase).
    Text(String),
    /// The event is at or after the bound.
    Since(Bound),
    /// The event is at or before the bound.
    Until(Bound),
}

impl Bound {
    /// A time bound cut to the microsecond, as the bus cuts event times.
    fn to_micros(self) -> Self {
        match self {
            Bound::Time(t) => Bound::Time(super::event::epoch_seconds::to_micros(t)),
            id => id,
        }
    }
}

impl Term {
    fn into_micros(self) -> Self {
        match self {
            Term::Since(b) => Term::Since(b.to_micros()),
            Term::Until(b) => Term::Until(b.to_micros()),
            other => other,
        }
    }

    fn matches(&self, event: &Event) -> bool {
        match self {
            Term::Type(glob) => glob.matches(&event.event_type),
            Term::Resource(glob) => event
                .resource_id
                .as_deref()
                .is_some_and(|r| glob.matches(r)),
            Term::Text(needle) => value_contains(&event.data, needle),
            Term::Since(bound) => match bound {
                Bound::Time(t) => event.timestamp >= *t,
                Bound::Id(id) => event.id >= *id,
            },
            Term::Until(bound) => match bound {
                Bound::Time(t) => event.timestamp <= *t,
                Bound::Id(id) => event.id <= *id,
            },
        }
    }
}

/// Which events a subscriber, a history query or the monitor wants.
///
/// Conditions of different kinds must all hold; several of one kind are alternatives (any may match);
/// every exclusion must fail to match. An event with no resource never matches a resource condition.
/// The default filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    types: Vec<Glob>,
    resources: Vec<Glob>,
    texts: Vec<String>,
    since: Vec<Bound>,
    until: Vec<Bound>,
    excluded: Vec<Term>,
}

/// How a subscriber's filter can be looked up by the bus without testing it against every event.
pub(crate) enum IndexKey<'a> {
    /// Only events of these exact types can match.
    Types(Vec<&'a str>),
    /// Only events with these exact resource ids can match.
    Resources(Vec<&'a str>),
    /// Any event may match.
    Anything,
}

impl EventFilter {
    /// A filter that matches every event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an event type glob (`task.*`); any of the type globs may match.
    pub fn event_type(mut self, pattern: &str) -> Self {
        self.types.push(Glob::new(pattern));
        self
    }

    /// Adds a resource id glob (`render-*`); any of the resource globs may match.
    pub fn resource(mut self, id: &str) -> Self {
        self.resources.push(Glob::new(id));
        self
    }

    /// Only events stamped at or after `time` (replaces earlier lower bounds). Times compare to the
    /// microsecond, the precision the bus keeps.
    pub fn since(mut self, time: SystemTime) -> Self {
        self.since = vec![Bound::Time(time).to_micros()];
        self
    }

    /// Only events stamped at or before `time` (replaces earlier upper bounds). Times compare to the
    /// microsecond, the precision the bus keeps.
    pub fn until(mut self, time: SystemTime) -> Self {
        self.until = vec![Bound::Time(time).to_micros()];
        self
    }

    /// Only events with id `id` or later (replaces earlier lower bounds).
    pub fn since_id(mut self, id: u64) -> Self {
        self.since = vec![Bound::Id(id)];
        self
    }

    /// Only events with id `id` or earlier (replaces earlier upper bounds).
    pub fn until_id(mut self, id: u64) -> Self {
        self.until = vec![Bound::Id(id)];
        self
    }

    /// Only MCP progress notifications: shorthand for `.event_type(event_types::MCP_PROGRESS)`.
    pub fn mcp_progress(self) -> Self {
        self.event_type(super::event::event_types::MCP_PROGRESS)
    }

    /// Adds a text condition: some key or scalar value in the data contains `word`, ignoring case.
    pub fn text(mut self, word: &str) -> Self {
        self.texts.push(word.to_lowercase());
        self
    }

    /// Excludes the events `term` matches.
    pub fn exclude(mut self, term: Term) -> Self {
        self.excluded.push(term.into_micros());
        self
    }

    /// Parses the text expression syntax described in [the filter syntax](crate::event_stream#filter-expressions).
    ///
    /// # Errors
    ///
    /// A [`FilterError`] naming the bad term and its column.
    pub fn parse(expression: &str) -> Result<Self, FilterError> {
        parse(expression, SystemTime::now())
    }

    /// Whether the filter matches every event.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        (self.since.is_empty() || self.since.iter().any(|b| Term::Since(*b).matches(event)))
            && (self.until.is_empty() || self.until.iter().any(|b| Term::Until(*b).matches(event)))
            && (self.types.is_empty() || self.types.iter().any(|g| g.matches(&event.event_type)))
            && (self.resources.is_empty()
                || event
                    .resource_id
                    .as_deref()
                    .is_some_and(|r| self.resources.iter().any(|g| g.matches(r))))
            && (self.texts.is_empty() || self.texts.iter().any(|t| value_contains(&event.data, t)))
            && !self.excluded.iter().any(|term| term.matches(event))
    }

    /// The positive conditions and exclusions, each as a [`Term`], in display order.
    pub fn terms(&self) -> impl Iterator<Item = (bool, Term)> + '_ {
        let positive = self
            .types
            .iter()
            .cloned()
            .map(Term::Type)
            .chain(self.resources.iter().cloned().map(Term::Resource))
            .chain(self.texts.iter().cloned().map(Term::Text))
            .chain(self.since.iter().copied().map(Term::Since))
            .chain(self.until.iter().copied().map(Term::Until))
            .map(|t| (true, t));
        positive.chain(self.excluded.iter().cloned().map(|t| (false, t)))
    }

    /// The lowest id this filter can match, if it bounds ids from below.
    pub fn min_id(&self) -> Option<u64> {
        let mut lowest: Option<u64> = None;
        for bound in &self.since {
            match bound {
                Bound::Id(id) => lowest = Some(lowest.map_or(*id, |l| l.min(*id))),
                Bound::Time(_) => return None,
            }
        }
        lowest
    }

    pub(crate) fn index_key(&self) -> IndexKey<'_> {
        if !self.types.is_empty() && self.types.iter().all(Glob::is_exact) {
            IndexKey::Types(self.types.iter().map(Glob::as_str).collect())
        } else if !self.resources.is_empty() && self.resources.iter().all(Glob::is_exact) {
            IndexKey::Resources(self.resources.iter().map(Glob::as_str).collect())
        } else {
            IndexKey::Anything
        }
    }

    /// Whether every event the bus reaches this filter's subscriber through [`EventFilter::index_key`]
    /// matches: the filter holds its index key and nothing else, so publishing need not test it.
    pub(crate) fn index_implies_match(&self) -> bool {
        let only_globs = self.texts.is_empty()
            && self.since.is_empty()
            && self.until.is_empty()
            && self.excluded.is_empty();
        only_globs
            && match self.index_key() {
                IndexKey::Types(_) => self.resources.is_empty(),
                IndexKey::Resources(_) => self.types.is_empty(),
                IndexKey::Anything => self.types.is_empty() && self.resources.is_empty(),
            }
    }

    fn add(&mut self, negated: bool, term: Term) {
        let term = term.into_micros();
        if negated {
            self.excluded.push(term);
            return;
        }
        match term {
            Term::Type(g) => self.types.push(g),
            Term::Resource(g) => self.resources.push(g),
            Term::Text(t) => self.texts.push(t),
            Term::Since(b) => self.since.push(b),
            Term::Until(b) => self.until.push(b),
        }
    }
}

impl FromStr for EventFilter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Whether any key or scalar value in `value` contains `needle` (already lowercase), ignoring case.
fn value_contains(value: &serde_json::Value, needle: &str) -> bool {
    use serde_json::Value;
    match value {
        Value::Null => contains_ignore_case("null", needle),
        Value::Bool(b) => contains_ignore_case(if *b { "true" } else { "false" }, needle),
        Value::Number(n) => contains_ignore_case(&n.to_string(), needle),
        Value::String(s) => contains_ignore_case(s, needle),
        Value::Array(items) => items.iter().any(|v| value_contains(v, needle)),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| contains_ignore_case(k, needle) || value_contains(v, needle)),
    }
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if needle.is_ascii() {
        let needle = needle.as_bytes();
        haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    } else {
        haystack.to_lowercase().contains(needle)
    }
}

/// Why a filter expression did not parse. Columns count characters from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// `key:value` with a key that is not a field.
    #[error("unknown field `{key}` in `{term}` at column {column} (fields: type, res, text, since, until)")]
    UnknownField {
        /// The unknown key.
        key: String,
        /// The whole term.
        term: String,
        /// Where the term starts.
        column: usize,
    },
    /// `key:` with nothing after it, or `!` alone.
    #[error("`{term}` at column {column} needs a value")]
    MissingValue {
        /// The incomplete term.
        term: String,
        /// Where the term starts.
        column: usize,
    },
    /// A `"` that is never closed.
    #[error("unclosed quote in `{term}` at column {column}")]
    UnclosedQuote {
        /// The term, from its start to the end of the expression.
        term: String,
        /// Where the term starts.
        column: usize,
    },
    /// Text after a closing quote, or a `!` inside a negated term.
    #[error("unexpected `{found}` in `{term}` at column {column}")]
    Unexpected {
        /// What was found.
        found: String,
        /// The term.
        term: String,
        /// Where the unexpected text starts.
        column: usize,
    },
    /// A `since:`/`until:` value that is neither a time, a duration nor `id:N`.
    #[error("bad time `{value}` in `{term}` at column {column}: {reason}")]
    BadTime {
        /// The value.
        value: String,
        /// The term.
        term: String,
        /// Where the term starts.
        column: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl FilterError {
    /// The column (from 1, in characters) of the bad term.
    pub fn column(&self) -> usize {
        match self {
            FilterError::UnknownField { column, .. }
            | FilterError::MissingValue { column, .. }
            | FilterError::UnclosedQuote { column, .. }
            | FilterError::Unexpected { column, .. }
            | FilterError::BadTime { column, .. } => *column,
        }
    }

    /// The bad term as written.
    pub fn term(&self) -> &str {
        match self {
            FilterError::UnknownField { term, .. }
            | FilterError::MissingValue { term, .. }
            | FilterError::UnclosedQuote { term, .. }
            | FilterError::Unexpected { term, .. }
            | FilterError::BadTime { term, .. } => term,
        }
    }
}

/// One whitespace-separated piece of an expression, with quotes resolved.
struct Token<'a> {
    /// The raw text, quotes included.
    raw: &'a str,
    /// Character column (from 1) where it starts.
    column: usize,
    /// `key` before an unquoted `:`, if any.
    key: Option<&'a str>,
    /// The value with quotes removed and escapes resolved.
    value: String,
    /// Whether the token started with `!`.
    negated: bool,
}

fn tokenize(expression: &str) -> Result<Vec<Token<'_>>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = expression.char_indices().peekable();
    let mut column = 0usize;
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            column += 1;
            continue;
        }
        let start_column = column + 1;
        let mut negated = false;
        let mut key_end: Option<usize> = None;
        let mut value = String::new();
        let mut in_quotes = false;
        let mut quoted_done = false;
        let mut end = expression.len();
        let mut first = true;
        while let Some(&(at, c)) = chars.peek() {
            if !in_quotes && c.is_whitespace() {
                end = at;
                break;
            }
            chars.next();
            column += 1;
            if quoted_done {
                return Err(FilterError::Unexpected {
                    found: c.to_string(),
                    term: term_text(expression, start),
                    column,
                });
            }
            if in_quotes {
                match c {
                    '"' => {
                        in_quotes = false;
                        quoted_done = true;
                    }
                    '\\' => match chars.peek() {
                        Some(&(_, next @ ('"' | '\\'))) => {
                            value.push(next);
                            chars.next();
                            column += 1;
                        }
                        _ => value.push('\\'),
                    },
                    _ => value.push(c),
                }
            } else if first && c == '!' {
                negated = true;
                first = false;
                continue;
            } else if c == '"' && value.is_empty() {
                in_quotes = true;
            } else if c == ':' && key_end.is_none() && is_key(&value) {
                key_end = Some(at);
                value.clear();
            } else {
                value.push(c);
            }
            first = false;
        }
        if in_quotes {
            return Err(FilterError::UnclosedQuote {
                term: expression[start..].to_owned(),
                column: start_column,
            });
        }
        let raw = &expression[start..end];
        let key_start = start + usize::from(negated);
        let key = key_end.map(|k| &expression[key_start..k]);
        tokens.push(Token {
            raw,
            column: start_column,
            key,
            value,
            negated,
        });
    }
    Ok(tokens)
}

/// Whether `text` (what precedes a `:`) looks like a field name rather than part of a glob.
fn is_key(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphabetic())
}

fn term_text(expression: &str, start: usize) -> String {
    expression[start..]
        .split(char::is_whitespace)
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn parse(expression: &str, now: SystemTime) -> Result<EventFilter, FilterError> {
    let mut filter = EventFilter::default();
    for token in tokenize(expression)? {
        let term = token.raw.to_owned();
        let column = token.column;
        if token.value.is_empty() && !token.raw.ends_with('"') {
            return Err(FilterError::MissingValue { term, column });
        }
        if token.negated && token.raw[1..].starts_with('!') {
            return Err(FilterError::Unexpected {
                found: "!".into(),
                term,
                column: column + 1,
            });
        }
        let parsed = match token.key {
            None | Some("type") => Term::Type(Glob::new(&token.value)),
            Some("res" | "resource") => Term::Resource(Glob::new(&token.value)),
            Some("text") => Term::Text(token.value.to_lowercase()),
            Some(key @ ("since" | "until")) => {
                let bound =
                    parse_bound(&token.value, now).map_err(|reason| FilterError::BadTime {
                        value: token.value.clone(),
                        term: term.clone(),
                        column,
                        reason,
                    })?;
                if key == "since" {
                    Term::Since(bound)
                } else {
                    Term::Until(bound)
                }
            }
            Some(key) => {
                return Err(FilterError::UnknownField {
                    key: key.to_owned(),
                    term,
                    column,
                })
            }
        };
        filter.add(token.negated, parsed);
    }
    Ok(filter)
}

/// Parses `id:N`, `@SECONDS[.NANOS]`, a duration ago (`90s`, `5m`, `1h30m`) or an RFC 3339 time.
pub(crate) fn parse_bound(value: &str, now: SystemTime) -> Result<Bound, String> {
    if let Some(id) = value.strip_prefix("id:") {
        return id
            .parse::<u64>()
            .map(Bound::Id)
            .map_err(|_| format!("`{id}` is not an event id (a whole number)"));
    }
    if let Some(epoch) = value.strip_prefix('@') {
        return parse_epoch(epoch)
            .map(Bound::Time)
            .ok_or_else(|| "expected @SECONDS or @SECONDS.NANOS since the Unix epoch".to_owned());
    }
    if value.starts_with(|c: char| c.is_ascii_digit()) && !value.contains('-') {
        let ago = humantime::parse_duration(value).map_err(|e| format!("{e} (try 30s, 5m, 2h)"))?;
        return now
            .checked_sub(ago)
            .map(Bound::Time)
            .ok_or_else(|| "that is before any representable time".to_owned());
    }
    parse_rfc3339(value).map(Bound::Time)
}

/// `SECONDS[.NANOS]`, negative before the epoch, exactly as [`format_bound`] writes it.
fn parse_epoch(text: &str) -> Option<SystemTime> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, nanos) = match digits.split_once('.') {
        Some((s, n)) if !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()) => {
            let scale = 10u32.pow(9 - u32::try_from(n.len()).ok()?);
            (s, n.parse::<u32>().ok()? * scale)
        }
        Some(_) => return None,
        None => (digits, 0),
    };
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let offset = Duration::new(secs.parse().ok()?, nanos);
    if negative {
        UNIX_EPOCH.checked_sub(offset)
    } else {
        UNIX_EPOCH.checked_add(offset)
    }
}

/// RFC 3339 with `Z` or a `±HH:MM` offset (a space may stand for the `T`).
fn parse_rfc3339(value: &str) -> Result<SystemTime, String> {
    let bad = || {
        "expected RFC 3339 such as 2026-11-25T12:00:00Z, a duration such as 5m, or id:N".to_owned()
    };
    let (local, offset_secs) = if let Some(stripped) = value.strip_suffix(['Z', 'z']) {
        (stripped, 0i64)
    } else {
        let sign_at = value
            .rfind(['+', '-'])
            .filter(|&i| i > 10)
            .ok_or_else(bad)?;
        let (local, offset) = value.split_at(sign_at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..].split_once(':').ok_or_else(bad)?;
        let h: i64 = h.parse().map_err(|_| bad())?;
        let m: i64 = m.parse().map_err(|_| bad())?;
        if h > 23 || m > 59 {
            return Err(bad());
        }
        (local, sign * (h * 3600 + m * 60))
    };
    let utc = humantime::parse_rfc3339_weak(local).map_err(|e| format!("{e}: {}", bad()))?;
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    let shifted = if offset_secs >= 0 {
        utc.checked_sub(shift)
    } else {
        utc.checked_add(shift)
    };
    shifted.ok_or_else(bad)
}

fn format_bound(bound: &Bound) -> String {
    match bound {
        Bound::Id(id) => format!("id:{id}"),
        Bound::Time(time) => {
            // RFC 3339 where humantime can write it (years 1970..=9999), exact epoch seconds elsewhere.
            let max = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
            if *time >= UNIX_EPOCH && *time <= max {
                humantime::format_rfc3339_nanos(*time).to_string()
            } else {
                match time.duration_since(UNIX_EPOCH) {
                    Ok(d) => format!("@{}.{:09}", d.as_secs(), d.subsec_nanos()),
                    Err(e) => {
                        let d = e.duration();
                        format!("@-{}.{:09}", d.as_secs(), d.subsec_nanos())
                    }
                }
            }
        }
    }
}

/// Writes `value` so the tokenizer reads it back unchanged.
fn write_value(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let plain = !value.is_empty()
        && !value.starts_with(['"', '!'])
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\');
    if plain {
        return f.write_str(value);
    }
    f.write_str("\"")?;
    for c in value.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Type(g) => {
                f.write_str("type:")?;
                write_value(f, g.as_str())
            }
            Term::Resource(g) => {
                f.write_str("res:")?;
                write_value(f, g.as_str())
            }
            Term::Text(t) => {
                f.write_str("text:")?;
                write_value(f, t)
            }
            Term::Since(b) => write!(f, "since:{}", format_bound(b)),
            Term::Until(b) => write!(f, "until:{}", format_bound(b)),
        }
    }
}

/// The filter in the expression syntax; [`EventFilter::parse`] reads it back to an equal filter.
impl fmt::Display for EventFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (positive, term)) in self.terms().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if !positive {
                f.write_str("!")?;
            }
            write!(f, "{term}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, resource: Option<&str>) -> Event {
        let mut e = Event::new(event_type, json!({"frame": 7, "note": "Disk SLOW"}));
        e.resource_id = resource.map(str::to_owned);
        e
    }

    #[test]
    fn globs_follow_the_contract() {
        let g = Glob::new("task.*");
        assert!(g.matches("task.started"));
        assert!(g.matches("task.a.b"));
        assert!(!g.matches("tasks.x"));
        assert!(!g.matches("task"));
        assert!(Glob::new("log.std???").matches("log.stderr"));
        assert!(!Glob::new("log.std??").matches("log.stderr"));
        assert!(!Glob::new("log.std???").matches("log.std"));
        assert!(Glob::new("*.progress").matches("task.progress"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a*b*c").matches("a.x.b.y.c"));
        assert!(!Glob::new("task.started").matches("task.startedx"));
        assert!(Glob::new("[x]").matches("[x]"), "brackets are literal");
    }

    #[test]
    fn kinds_combine_with_and_and_alternatives_with_or() {
        let f = EventFilter::new()
            .event_type("task.*")
            .event_type("log.*")
            .resource("render-*");
        assert!(f.matches(&event("task.started", Some("render-1"))));
        assert!(f.matches(&event("log.info", Some("render-2"))));
        assert!(!f.matches(&event("mcp.x", Some("render-1"))));
        assert!(!f.matches(&event("task.started", Some("upload"))));
        assert!(!f.matches(&event("task.started", None)));
    }

    #[test]
    fn expression_terms() {
        let f =
            EventFilter::parse(r#"task.* !task.progress res:render-* text:"disk slow""#).unwrap();
        assert!(f.matches(&event("task.started", Some("render-1"))));
        assert!(!f.matches(&event("task.progress", Some("render-1"))));
        let mut quiet = event("task.started", Some("render-1"));
        quiet.data = json!({"note": "fine"});
        assert!(!f.matches(&quiet));
        let ids = EventFilter::parse("since:id:5 until:id:6").unwrap();
        let mut e = event("x", None);
        e.id = 5;
        assert!(ids.matches(&e));
        e.id = 7;
        assert!(!ids.matches(&e));
        assert!(EventFilter::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn time_terms() {
        let now = SystemTime::now();
        let f = parse("since:5m", now).unwrap();
        assert_eq!(
            f.since,
            vec![Bound::Time(now - Duration::from_secs(300)).to_micros()]
        );
        let f = parse("until:2024-01-01T02:00:00+02:00", now).unwrap();
        assert_eq!(
            f.until,
            vec![Bound::Time(UNIX_EPOCH + Duration::from_secs(1_704_067_200))]
        );
    }

    #[test]
    fn errors_name_the_term_and_column() {
        let err = EventFilter::parse("task.* foo:bar").unwrap_err();
        assert_eq!(err.column(), 8);
        assert_eq!(err.term(), "foo:bar");
        assert!(err.to_string().contains("unknown field `foo`"), "{err}");
        assert!(matches!(
            EventFilter::parse("res:").unwrap_err(),
            FilterError::MissingValue { .. }
        ));
        assert!(matches!(
            EventFilter::parse("!").unwrap_err(),
            FilterError::MissingValue { .. }
        ));
        assert!(matches!(
            EventFilter::parse("text:\"abc").unwrap_err(),
            FilterError::UnclosedQuote { column: 1, .. }
        ));
        let err = EventFilter::parse("since:yesterday").unwrap_err();
        assert!(matches!(err, FilterError::BadTime { .. }), "{err}");
        assert!(EventFilter::parse("since:id:x").is_err());
        assert!(EventFilter::parse("!!a").is_err());
    }

    #[test]
    fn display_parses_back() {
        for text in [
            "task.* !task.progress res:render-* text:\"disk slow\"",
            "since:id:4 until:2026-01-01T00:00:00Z",
            "type:\"a b\" res:\"\\\"q\\\\\"",
            "type:\"!x\"",
        ] {
            let f = EventFilter::parse(text).unwrap();
            let shown = f.to_string();
            assert_eq!(EventFilter::parse(&shown).unwrap(), f, "{text} -> {shown}");
        }
        let odd = EventFilter::new().since(UNIX_EPOCH - Duration::from_nanos(1_500_000_001));
        assert_eq!(EventFilter::parse(&odd.to_string()).unwrap(), odd);
    }

    #[test]
    fn index_keys() {
        assert!(
            matches!(EventFilter::new().event_type("a").index_key(), IndexKey::Types(t) if t == ["a"])
        );
        assert!(matches!(
            EventFilter::new().event_type("a*").resource("r").index_key(),
            IndexKey::Resources(r) if r == ["r"]
        ));
        assert!(matches!(EventFilter::new().index_key(), IndexKey::Anything));
    }

    #[test]
    fn only_a_filter_that_is_its_index_key_skips_the_test() {
        let implies = |f: &str| EventFilter::parse(f).unwrap().index_implies_match();
        assert!(implies(""));
        assert!(implies("task.started task.failed"));
        assert!(implies("res:job-1 res:job-2"));
        assert!(!implies("task.*"));
        assert!(!implies("task.started res:job-1"));
        assert!(!implies("res:job-1 text:disk"));
        assert!(!implies("task.started !res:job-1"));
        assert!(!implies("since:id:5"));
        assert!(!implies("res:job-*"));
    }
}
