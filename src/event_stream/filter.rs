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

/// A dotted path into an event's data: `exit_code`, `job.node`, `items.0.name`.
///
/// Each dot-separated key is made of letters, digits, `_`, `-`, `@` and `$`. At an object a key names a
/// member; a key that itself contains dots (`http.status_code` as one member, as OpenTelemetry
/// attributes are written) is found too, the nested reading first. At an array a key of digits is an
/// index from 0 (`items.0`). Anything else (a missing member, an index past the end, a key under a
/// string or number) means the event has no such field.
///
/// ```
/// use ipckit::event_stream::FieldPath;
///
/// let path: FieldPath = "job.items.0".parse()?;
/// let data = serde_json::json!({"job": {"items": ["a", "b"]}});
/// assert_eq!(path.lookup(&data), Some(&serde_json::json!("a")));
/// assert!("job..node".parse::<FieldPath>().is_err());
/// # Ok::<(), ipckit::FilterError>(())
/// ```
#[derive(Clone)]
pub struct FieldPath {
    source: String,
    segments: Vec<Segment>,
}

/// One key of a [`FieldPath`]: its byte range in the source, and the array index it names, if any.
#[derive(Clone, Copy)]
struct Segment {
    start: usize,
    end: usize,
    index: Option<usize>,
}

impl FieldPath {
    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The value at this path in `data`, if there is one.
    pub fn lookup<'v>(&self, data: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.lookup_from(data, 0)
    }

    fn lookup_from<'v>(
        &self,
        value: &'v serde_json::Value,
        first: usize,
    ) -> Option<&'v serde_json::Value> {
        use serde_json::Value;
        let Some(segment) = self.segments.get(first) else {
            return Some(value);
        };
        match value {
            // Each member is reached by one chain of keys, so however the keys group, every member
            // is tried at most once per key: the search is bounded by the data's size.
            Value::Object(map) => (first..self.segments.len()).find_map(|last| {
                let key = self.source.get(segment.start..self.segments[last].end)?;
                self.lookup_from(map.get(key)?, last + 1)
            }),
            Value::Array(items) => self.lookup_from(items.get(segment.index?)?, first + 1),
            _ => None,
        }
    }

    /// The last key if it cannot be an array index: the compact JSON of any data that has this field
    /// holds it followed by `":`.
    fn last_member(&self) -> Option<&str> {
        let last = self.segments.last()?;
        let key = self.source.get(last.start..last.end)?;
        (!key.bytes().all(|b| b.is_ascii_digit())).then_some(key)
    }
}

/// Whether `c` may appear in a key of a [`FieldPath`].
fn is_path_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '@' | '$')
}

/// Splits `text` into a path, or says where (in characters from 0) and why it is not one.
fn parse_path(text: &str) -> Result<FieldPath, (usize, String)> {
    if text.is_empty() {
        return Err((
            0,
            "a field path such as `exit_code` or `job.node` is expected".to_owned(),
        ));
    }
    let mut segments = Vec::new();
    let mut start = 0;
    let mut start_char = 0;
    for (i, (at, c)) in text.char_indices().chain([(text.len(), '.')]).enumerate() {
        if c == '.' {
            if at == start {
                return Err((
                    start_char,
                    "an empty key: dots go between keys (`job.node`)".to_owned(),
                ));
            }
            let key = &text[start..at];
            let index = if key.bytes().all(|b| b.is_ascii_digit()) {
                key.parse().ok()
            } else {
                None
            };
            segments.push(Segment {
                start,
                end: at,
                index,
            });
            start = at + 1;
            start_char = i + 1;
        } else if !is_path_char(c) {
            let reason = if matches!(c, '*' | '?') {
                format!(
                    "a field path has no wildcards (`{c}`); an event type with `=`, `<` or `>` \
                     in it is written type:GLOB"
                )
            } else {
                format!(
                    "`{c}` cannot appear in a field path (letters, digits, `_`, `-`, `@`, `$`, \
                     and dots between keys)"
                )
            };
            return Err((i, reason));
        }
    }
    Ok(FieldPath {
        source: text.to_owned(),
        segments,
    })
}

impl FromStr for FieldPath {
    type Err = FilterError;

    /// Reads a dotted path; the error's column counts from 1 within `text`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_path(text).map_err(|(offset, reason)| FilterError::BadPath {
            path: text.to_owned(),
            term: text.to_owned(),
            column: offset + 1,
            reason,
        })
    }
}

impl PartialEq for FieldPath {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for FieldPath {}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldPath({:?})", self.source)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// How a comparison term compares the field's number with its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `KEY>N`
    Greater,
    /// `KEY>=N`
    GreaterOrEqual,
    /// `KEY<N`
    Less,
    /// `KEY<=N`
    LessOrEqual,
}

impl Comparison {
    /// The operator as written in an expression.
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
        }
    }

    /// Whether a field that compares to the term's number as `ordering` passes.
    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            Comparison::Greater => ordering == Greater,
            Comparison::GreaterOrEqual => matches!(ordering, Greater | Equal),
            Comparison::Less => ordering == Less,
            Comparison::LessOrEqual => matches!(ordering, Less | Equal),
        }
    }
}

/// A finite number in a comparison term. Whole numbers are kept exactly (up to 128 bits), so `ts>N`
/// compares nanosecond timestamps and 64-bit ids without rounding; others are `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(Repr);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Repr {
    /// Every whole number an `i128` holds (-2^127 to 2^127 - 1) is kept this way, however it was
    /// written (`5`, `5.0`, `5e0`).
    Int(i128),
    /// A finite number with a fraction, or a whole one beyond what an `i128` holds.
    Float(f64),
}

// `Float` never holds NaN (the constructors refuse it) nor -0.0 (that is `Int(0)`), so equality is an
// equivalence.
impl Eq for Number {}

impl Number {
    /// Reads a decimal number: an optional sign, digits with an optional fraction and exponent (`100`,
    /// `-2.5`, `1e6`). No spaces, no `inf` or `NaN`; a value too large for `f64` is refused too.
    pub fn parse(text: &str) -> Option<Self> {
        let numeric = text
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'+' | b'-' | b'.' | b'e' | b'E'));
        if !numeric || !text.bytes().any(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
        if digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(whole) = text.parse::<i128>() {
                return Some(Number(Repr::Int(whole)));
            }
        }
        text.parse::<f64>().ok().and_then(Self::from_f64)
    }

    /// The number `value` is, if it is finite.
    pub fn from_f64(value: f64) -> Option<Self> {
        /// 2^127: every whole `f64` from -2^127 up to (not including) this is an `i128`.
        const WHOLE_LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
        if !value.is_finite() {
            return None;
        }
        if value.fract() == 0.0 && (-WHOLE_LIMIT..WHOLE_LIMIT).contains(&value) {
            // Exact: the value is whole and within range.
            return Some(Number(Repr::Int(value as i128)));
        }
        Some(Number(Repr::Float(value)))
    }

    /// The number as an `f64` (rounded if it is a whole number beyond 2^53).
    pub fn as_f64(self) -> f64 {
        match self.0 {
            Repr::Int(whole) => whole as f64,
            Repr::Float(value) => value,
        }
    }

    /// The number a JSON value holds: a number, or a string whose whole text [`Number::parse`] reads.
    fn of_json(value: &serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .map(|whole| Number(Repr::Int(whole)))
                .or_else(|| n.as_f64().and_then(Self::from_f64)),
            serde_json::Value::String(s) => Self::parse(s),
            _ => None,
        }
    }

    /// How this number orders against `other`, exactly.
    fn compare(self, other: Self) -> std::cmp::Ordering {
        match (self.0, other.0) {
            (Repr::Int(a), Repr::Int(b)) => a.cmp(&b),
            (Repr::Float(a), Repr::Float(b)) => a.total_cmp(&b),
            (Repr::Int(a), Repr::Float(b)) => int_against_float(a, b),
            (Repr::Float(a), Repr::Int(b)) => int_against_float(b, a).reverse(),
        }
    }
}

/// How `whole` orders against `float`, a [`Repr::Float`]: either whole and beyond every `i128`, so its
/// sign decides, or with a fraction and so below 2^52 in magnitude, where converting `whole` to `f64`
/// (exact up to 2^53, and far beyond `float` past it) cannot change the order.
fn int_against_float(whole: i128, float: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    if float.fract() == 0.0 {
        if float > 0.0 {
            Ordering::Less
        } else {
            Ordering::Greater
        }
    } else {
        (whole as f64).total_cmp(&float)
    }
}

impl From<i64> for Number {
    fn from(value: i64) -> Self {
        Number(Repr::Int(value.into()))
    }
}

impl From<u64> for Number {
    fn from(value: u64) -> Self {
        Number(Repr::Int(value.into()))
    }
}

/// Written so [`Number::parse`] reads back the same number.
impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Repr::Int(whole) => write!(f, "{whole}"),
            // A whole float is beyond every `i128`: in exponent form, as plain digits it could read
            // back as an `i128` (Rust prints its shortest digits padded with zeros).
            Repr::Float(value) if value.fract() == 0.0 => write!(f, "{value:e}"),
            Repr::Float(value) => write!(f, "{value}"),
        }
    }
}

/// What a data-field term asks of the field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldTest {
    /// `KEY=GLOB`: the value's text matches the glob. A string's text is its content; any other value's
    /// is its compact JSON (`2`, `2.5`, `true`, `null`, `["a","b"]`).
    Matches(Glob),
    /// `KEY!=GLOB`: the value's text does not match the glob. The field must exist.
    Differs(Glob),
    /// `KEY>N`, `KEY>=N`, `KEY<N`, `KEY<=N`: the value is a number, or a string whose whole text is one
    /// (`"42"`), and compares so with `N`. Any other value never passes.
    Compare(Comparison, Number),
}

impl FieldTest {
    /// Whether a field whose value is `value` passes.
    pub fn matches(&self, value: &serde_json::Value) -> bool {
        match self {
            FieldTest::Matches(glob) => glob.matches(&value_text(value)),
            FieldTest::Differs(glob) => !glob.matches(&value_text(value)),
            FieldTest::Compare(comparison, number) => {
                Number::of_json(value).is_some_and(|v| comparison.holds(v.compare(*number)))
            }
        }
    }
}

/// The text `=` and `!=` match: a string's content, any other value's compact JSON.
fn value_text(value: &serde_json::Value) -> std::borrow::Cow<'_, str> {
    use serde_json::Value;
    use std::borrow::Cow;
    match value {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed("null"),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        other => Cow::Owned(other.to_string()),
    }
}

/// One condition of a filter.
///
/// This enum is `#[non_exhaustive]`: new kinds of condition may be added, so a `match` on it needs a
/// `_` arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The event's data has a field at the path, and its value passes the test.
    Field(FieldPath, FieldTest),
    /// The event came from an origin (a machine or bus label, for events read from NATS) that
    /// matches the glob. An event with no origin never matches it.
    Origin(Glob),
}

impl Bound {
    /// A time bound cut to the microsecond, as the bus cuts event times.
    fn to_micros(self) -> Self {
        match self {
            Bound::Time(t) => Bound::Time(crate::epoch::cut_to_micros(t)),
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

    fn matches(&self, event: &Event, origin: Option<&str>) -> bool {
        match self {
            Term::Type(glob) => glob.matches(&event.event_type),
            Term::Origin(glob) => origin.is_some_and(|o| glob.matches(o)),
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
            Term::Field(path, test) => path.lookup(&event.data).is_some_and(|v| test.matches(v)),
        }
    }
}

/// Which events a subscriber, a history query or the monitor wants.
///
/// Conditions of different kinds must all hold; several of one kind are alternatives (any may match);
/// every exclusion must fail to match. An event with no resource never matches a resource condition.
/// Data-field conditions group by path: the `=` and comparison conditions on one path are alternatives,
/// and each path must have one hold; every `!=` condition must hold on its own. An event without the
/// field never matches a data-field condition (so it is never excluded by one).
/// The default filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    types: Vec<Glob>,
    resources: Vec<Glob>,
    origins: Vec<Glob>,
    texts: Vec<String>,
    /// `=` and comparison conditions, one group per path in the order paths first appear.
    fields: Vec<FieldGroup>,
    /// `!=` conditions.
    differs: Vec<(FieldPath, Glob)>,
    since: Vec<Bound>,
    until: Vec<Bound>,
    excluded: Vec<Term>,
}

/// The `=` and comparison conditions on one path: any may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldGroup {
    path: FieldPath,
    tests: Vec<FieldTest>,
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

    /// Adds a data-field condition (`KEY=GLOB`, `KEY!=GLOB`, `KEY>N`...). The `=` and comparison
    /// conditions on one path are alternatives; each path, and each `!=` condition, must hold.
    ///
    /// ```
    /// use ipckit::event_stream::{Comparison, FieldTest, Glob, Number};
    /// use ipckit::{Event, EventFilter};
    ///
    /// let filter = EventFilter::new()
    ///     .field("job.node".parse()?, FieldTest::Matches(Glob::new("n-*")))
    ///     .field("frame".parse()?, FieldTest::Compare(Comparison::Greater, Number::from(89i64)));
    /// assert_eq!(filter, EventFilter::parse("job.node=n-* frame>89")?);
    /// let event = Event::new("render", serde_json::json!({"job": {"node": "n-1"}, "frame": 90}));
    /// assert!(filter.matches(&event));
    /// # Ok::<(), ipckit::FilterError>(())
    /// ```
    pub fn field(mut self, path: FieldPath, test: FieldTest) -> Self {
        self.add(false, Term::Field(path, test));
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

    /// Adds an origin glob (`render-*`): the event came from a matching origin (a machine or bus
    /// label, for events read from NATS); any of the origin globs may match. See
    /// [`EventFilter::matches_from`].
    pub fn origin(mut self, pattern: &str) -> Self {
        self.origins.push(Glob::new(pattern));
        self
    }

    /// Whether `event` passes the filter. The event has no origin here, so a filter with an
    /// `origin:` condition matches nothing (see [`EventFilter::matches_from`]).
    pub fn matches(&self, event: &Event) -> bool {
        self.matches_from(event, None)
    }

    /// Whether `event`, which came from `origin` (a machine or bus label, for events read from
    /// NATS; `None` for a bus's own events), passes the filter. An event with no origin never
    /// matches a positive `origin:` condition, and is never excluded by one.
    ///
    /// ```
    /// let filter = ipckit::EventFilter::parse("task.* origin:render-*")?;
    /// let event = ipckit::Event::new("task.started", serde_json::json!({}));
    /// assert!(filter.matches_from(&event, Some("render-07")));
    /// assert!(!filter.matches_from(&event, Some("build-1")));
    /// assert!(!filter.matches(&event));
    /// # Ok::<(), ipckit::FilterError>(())
    /// ```
    pub fn matches_from(&self, event: &Event, origin: Option<&str>) -> bool {
        (self.since.is_empty()
            || self
                .since
                .iter()
                .any(|b| Term::Since(*b).matches(event, origin)))
            && (self.until.is_empty()
                || self
                    .until
                    .iter()
                    .any(|b| Term::Until(*b).matches(event, origin)))
            && (self.types.is_empty() || self.types.iter().any(|g| g.matches(&event.event_type)))
            && (self.origins.is_empty()
                || origin.is_some_and(|o| self.origins.iter().any(|g| g.matches(o))))
            && (self.resources.is_empty()
                || event
                    .resource_id
                    .as_deref()
                    .is_some_and(|r| self.resources.iter().any(|g| g.matches(r))))
            && (self.texts.is_empty() || self.texts.iter().any(|t| value_contains(&event.data, t)))
            && self.fields.iter().all(|group| {
                group
                    .path
                    .lookup(&event.data)
                    .is_some_and(|v| group.tests.iter().any(|test| test.matches(v)))
            })
            && self.differs.iter().all(|(path, glob)| {
                path.lookup(&event.data)
                    .is_some_and(|v| !glob.matches(&value_text(v)))
            })
            && !self.excluded.iter().any(|term| term.matches(event, origin))
    }

    /// Whether the filter has an `origin:` condition, positive or excluded.
    pub fn has_origin_terms(&self) -> bool {
        !self.origins.is_empty()
            || self
                .excluded
                .iter()
                .any(|term| matches!(term, Term::Origin(_)))
    }

    /// Whether an event from `origin` passes the filter's `origin:` conditions (the others are not
    /// looked at): [`EventFilter::matches_from`] is [`EventFilter::without_origin`]'s `matches` and
    /// this.
    pub fn origin_ok(&self, origin: Option<&str>) -> bool {
        (self.origins.is_empty()
            || origin.is_some_and(|o| self.origins.iter().any(|g| g.matches(o))))
            && !self.excluded.iter().any(|term| match term {
                Term::Origin(glob) => origin.is_some_and(|o| glob.matches(o)),
                _ => false,
            })
    }

    /// The filter without its `origin:` conditions, for a store that keeps origins beside events
    /// and judges them with [`EventFilter::origin_ok`].
    pub fn without_origin(&self) -> EventFilter {
        let mut filter = self.clone();
        filter.origins.clear();
        filter
            .excluded
            .retain(|term| !matches!(term, Term::Origin(_)));
        filter
    }

    /// Whether testing an event needs its data: the filter has a `text:` or data-field condition,
    /// positive or excluded. Without one, [`EventFilter::matches`] reads only the type, resource, id
    /// and time.
    #[cfg_attr(not(test), allow(dead_code, reason = "for the compact store's filter"))]
    pub(crate) fn needs_data(&self) -> bool {
        !self.texts.is_empty()
            || !self.fields.is_empty()
            || !self.differs.is_empty()
            || self
                .excluded
                .iter()
                .any(|term| matches!(term, Term::Text(_) | Term::Field(..)))
    }

    /// Byte strings that the data of every event this filter matches contains, written as compact JSON
    /// by `serde_json` (as `serde_json::to_vec` writes it): `KEY":` for the last key of each positive
    /// data-field path (keys have no character JSON escapes, and a key holding dots still ends so).
    /// Data lacking any of them cannot match, so a store may skip it unparsed; data holding all of them
    /// still needs [`EventFilter::matches`]. Paths ending in a number (an array index) give none.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "for the compact store's prefilter")
    )]
    pub(crate) fn data_needles(&self) -> Vec<Vec<u8>> {
        let paths = self
            .fields
            .iter()
            .map(|group| &group.path)
            .chain(self.differs.iter().map(|(path, _)| path));
        let mut needles: Vec<Vec<u8>> = Vec::new();
        for key in paths.filter_map(FieldPath::last_member) {
            let needle = [key.as_bytes(), b"\":"].concat();
            if !needles.contains(&needle) {
                needles.push(needle);
            }
        }
        needles
    }

    /// The positive conditions and exclusions, each as a [`Term`], in display order.
    pub fn terms(&self) -> impl Iterator<Item = (bool, Term)> + '_ {
        let positive =
            self.types
                .iter()
                .cloned()
                .map(Term::Type)
                .chain(self.resources.iter().cloned().map(Term::Resource))
                .chain(self.origins.iter().cloned().map(Term::Origin))
                .chain(self.texts.iter().cloned().map(Term::Text))
                .chain(self.fields.iter().flat_map(|group| {
                    group
                        .tests
                        .iter()
                        .map(|test| Term::Field(group.path.clone(), test.clone()))
                }))
                .chain(self.differs.iter().map(|(path, glob)| {
                    Term::Field(path.clone(), FieldTest::Differs(glob.clone()))
                }))
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
            && self.origins.is_empty()
            && self.fields.is_empty()
            && self.differs.is_empty()
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
            Term::Origin(g) => self.origins.push(g),
            Term::Text(t) => self.texts.push(t),
            Term::Since(b) => self.since.push(b),
            Term::Until(b) => self.until.push(b),
            Term::Field(path, FieldTest::Differs(glob)) => self.differs.push((path, glob)),
            Term::Field(path, test) => {
                match self.fields.iter_mut().find(|group| group.path == path) {
                    Some(group) => group.tests.push(test),
                    None => self.fields.push(FieldGroup {
                        path,
                        tests: vec![test],
                    }),
                }
            }
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
///
/// This enum is `#[non_exhaustive]`: new kinds of error may be added, so a `match` on it needs a `_` arm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// `key:value` with a key that is not a field.
    #[error(
        "unknown field `{key}` in `{term}` at column {column} (prefixes: type, res, origin, text, \
         since, until; a data field is written {key}=VALUE)"
    )]
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
    /// A data-field term (`KEY=VALUE`, `KEY>N`...) whose key is not a dotted path.
    #[error("bad field path `{path}` in `{term}` at column {column}: {reason}")]
    BadPath {
        /// The path as written.
        path: String,
        /// The term.
        term: String,
        /// Where the bad part of the path starts.
        column: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A comparison (`KEY>N`...) whose value is not a number.
    #[error(
        "a number is expected in `{term}` at column {column}, not `{value}` (such as 100, -2.5 \
         or 1e6)"
    )]
    BadNumber {
        /// The value.
        value: String,
        /// The term.
        term: String,
        /// Where the value starts.
        column: usize,
    },
}

impl FilterError {
    /// The column (from 1, in characters) of the bad term, or of its bad part where the variant says so.
    pub fn column(&self) -> usize {
        match self {
            FilterError::UnknownField { column, .. }
            | FilterError::MissingValue { column, .. }
            | FilterError::UnclosedQuote { column, .. }
            | FilterError::Unexpected { column, .. }
            | FilterError::BadTime { column, .. }
            | FilterError::BadPath { column, .. }
            | FilterError::BadNumber { column, .. } => *column,
        }
    }

    /// The bad term as written.
    pub fn term(&self) -> &str {
        match self {
            FilterError::UnknownField { term, .. }
            | FilterError::MissingValue { term, .. }
            | FilterError::UnclosedQuote { term, .. }
            | FilterError::Unexpected { term, .. }
            | FilterError::BadTime { term, .. }
            | FilterError::BadPath { term, .. }
            | FilterError::BadNumber { term, .. } => term,
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
    /// The path before an unquoted data-field operator, if any (and no `key:` came first).
    field: Option<FieldHead<'a>>,
    /// The value with quotes removed and escapes resolved.
    value: String,
    /// Whether the token started with `!`.
    negated: bool,
}

/// What precedes the value in a data-field term.
struct FieldHead<'a> {
    /// The path as written.
    path: &'a str,
    /// Where the path starts.
    path_column: usize,
    /// The operator.
    op: FieldOp,
    /// Where the value starts.
    value_column: usize,
}

/// A data-field operator.
#[derive(Clone, Copy)]
enum FieldOp {
    /// `=`
    Matches,
    /// `!=`
    Differs,
    /// `>`, `>=`, `<`, `<=`
    Compare(Comparison),
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
        let mut field: Option<FieldHead<'_>> = None;
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
            } else if c == ':' && key_end.is_none() && field.is_none() && is_key(&value) {
                key_end = Some(at);
                value.clear();
            } else if let Some(op) = (key_end.is_none() && field.is_none())
                .then(|| field_op(c, chars.peek().map(|&(_, next)| next)))
                .flatten()
            {
                let path_column = start_column + usize::from(negated);
                let path = &expression[start + usize::from(negated)..at];
                if matches!(
                    op,
                    FieldOp::Differs
                        | FieldOp::Compare(Comparison::GreaterOrEqual | Comparison::LessOrEqual)
                ) {
                    chars.next();
                    column += 1;
                }
                field = Some(FieldHead {
                    path,
                    path_column,
                    op,
                    value_column: column + 1,
                });
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
            field,
            value,
            negated,
        });
    }
    Ok(tokens)
}

/// The terms of `expression` as written (quotes and `!` included), each with the character column
/// (from 1) where it starts: what the monitor counts term by term while a filter is edited.
#[cfg_attr(not(feature = "tui"), allow(dead_code))]
pub(crate) fn split_terms(expression: &str) -> Result<Vec<(usize, &str)>, FilterError> {
    Ok(tokenize(expression)?
        .into_iter()
        .map(|token| (token.column, token.raw))
        .collect())
}

/// The data-field operator that starts with `c` (followed by `next`), if `c` starts one.
fn field_op(c: char, next: Option<char>) -> Option<FieldOp> {
    let or_equal = next == Some('=');
    match c {
        '=' => Some(FieldOp::Matches),
        '!' if or_equal => Some(FieldOp::Differs),
        '>' if or_equal => Some(FieldOp::Compare(Comparison::GreaterOrEqual)),
        '>' => Some(FieldOp::Compare(Comparison::Greater)),
        '<' if or_equal => Some(FieldOp::Compare(Comparison::LessOrEqual)),
        '<' => Some(FieldOp::Compare(Comparison::Less)),
        _ => None,
    }
}

/// Whether `text` (what precedes a `:`) looks like a prefix (`type`, `res`...) rather than part of a
/// glob. `exit_code:2` counts, so it is refused with a hint rather than read as a type glob.
fn is_key(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphabetic() || c == '_')
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
        if let Some(head) = &token.field {
            let path = parse_path(head.path).map_err(|(offset, reason)| FilterError::BadPath {
                path: head.path.to_owned(),
                term: term.clone(),
                column: head.path_column + offset,
                reason,
            })?;
            let test = match head.op {
                FieldOp::Matches => FieldTest::Matches(Glob::new(&token.value)),
                FieldOp::Differs => FieldTest::Differs(Glob::new(&token.value)),
                FieldOp::Compare(comparison) => match Number::parse(&token.value) {
                    Some(number) => FieldTest::Compare(comparison, number),
                    None => {
                        return Err(FilterError::BadNumber {
                            value: token.value,
                            term,
                            column: head.value_column,
                        })
                    }
                },
            };
            filter.add(token.negated, Term::Field(path, test));
            continue;
        }
        let parsed = match token.key {
            None | Some("type") => Term::Type(Glob::new(&token.value)),
            Some("res" | "resource") => Term::Resource(Glob::new(&token.value)),
            Some("origin") => Term::Origin(Glob::new(&token.value)),
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
            Term::Origin(g) => {
                f.write_str("origin:")?;
                write_value(f, g.as_str())
            }
            Term::Text(t) => {
                f.write_str("text:")?;
                write_value(f, t)
            }
            Term::Since(b) => write!(f, "since:{}", format_bound(b)),
            Term::Until(b) => write!(f, "until:{}", format_bound(b)),
            Term::Field(path, FieldTest::Matches(g)) => {
                write!(f, "{path}=")?;
                write_value(f, g.as_str())
            }
            Term::Field(path, FieldTest::Differs(g)) => {
                write!(f, "{path}!=")?;
                write_value(f, g.as_str())
            }
            Term::Field(path, FieldTest::Compare(comparison, number)) => {
                write!(f, "{path}{}{number}", comparison.symbol())
            }
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
            "node=n-1 frame>89 node=n-2 frame<=-2.5 a.b!=x !c.0=\"y z\" !d>=1e300 e==x f=\"\"",
            "origin:render-* !origin:\"a b\" origin:x",
            "g=\"!x\" h!=\"\\\"\" big>170141183460469231731687303715884105728 t>=-0 u<0.000001",
        ] {
            let f = EventFilter::parse(text).unwrap();
            let shown = f.to_string();
            assert_eq!(EventFilter::parse(&shown).unwrap(), f, "{text} -> {shown}");
        }
        let odd = EventFilter::new().since(UNIX_EPOCH - Duration::from_nanos(1_500_000_001));
        assert_eq!(EventFilter::parse(&odd.to_string()).unwrap(), odd);
    }

    #[test]
    fn origin_terms_match_the_origin_given_and_never_an_event_without_one() {
        let e = event("task.started", Some("job-1"));
        let f = EventFilter::parse("origin:render-*").unwrap();
        assert!(f.matches_from(&e, Some("render-07")));
        assert!(!f.matches_from(&e, Some("build-1")));
        assert!(!f.matches_from(&e, None));
        assert!(!f.matches(&e), "no origin: no match");
        // Alternatives among origins; all kinds must hold.
        let f = EventFilter::parse("origin:a origin:b task.*").unwrap();
        assert!(f.matches_from(&e, Some("b")));
        assert!(!f.matches_from(&event("log.info", None), Some("b")));
        // An exclusion keeps events without an origin.
        let f = EventFilter::parse("!origin:a").unwrap();
        assert!(!f.matches_from(&e, Some("a")));
        assert!(f.matches_from(&e, Some("b")));
        assert!(f.matches(&e));
        assert_eq!(
            EventFilter::new().origin("a*"),
            EventFilter::parse("origin:a*").unwrap()
        );
        // An origin term is no index key: the bus must test it.
        assert!(!EventFilter::parse("origin:a")
            .unwrap()
            .index_implies_match());
        assert!(!EventFilter::parse("origin:a").unwrap().needs_data());
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
        assert!(!implies("task.started frame>1"));
        assert!(!implies("res:job-1 node!=a"));
        assert!(!implies("task.started !node=a"));
    }

    /// The data of the `i`th of the 100 events the acceptance case filters: `frame` is `i`, `node` is
    /// `n-{i % 3}` except on every tenth event, which has no node.
    fn numbered(i: u64) -> Event {
        let data = if i.is_multiple_of(10) {
            json!({"frame": i})
        } else {
            json!({"frame": i, "node": format!("n-{}", i % 3)})
        };
        Event::new("render.frame", data)
    }

    fn count(expression: &str) -> usize {
        let filter = EventFilter::parse(expression).unwrap();
        (0..100).filter(|&i| filter.matches(&numbered(i))).count()
    }

    #[test]
    fn field_terms_count_exactly_over_known_data() {
        // The issue's acceptance case: frames 90..=99 on node n-1 are 91, 94 and 97.
        assert_eq!(count("frame>89 node=n-1"), 3);
        assert_eq!(count("frame>89"), 10);
        assert_eq!(count("frame>=89"), 11);
        assert_eq!(count("frame<10"), 10);
        assert_eq!(count("frame<=10"), 11);
        // 33 frames are 1 mod 3; 10, 40 and 70 of them have no node.
        assert_eq!(count("node=n-1"), 30);
        assert_eq!(count("node=n-?"), 90);
        // Same key: alternatives. Different keys: all hold.
        assert_eq!(count("node=n-1 node=n-2"), 60);
        assert_eq!(count("node=n-1 node=n-2 frame>89"), 6);
        assert_eq!(count("frame<5 frame>=95"), 10);
        assert_eq!(count("frame>=90 !frame>=95"), 5);
        // An exclusion keeps events without the field; `!=` needs the field.
        assert_eq!(count("!node=n-1"), 70);
        assert_eq!(count("node!=n-1"), 60);
        assert_eq!(count("node!=n-1 node!=n-2"), 30);
        assert_eq!(count("!node=*"), 10);
        assert_eq!(count("!node!=n-1"), 40);
        assert_eq!(count("missing=*"), 0);
        assert_eq!(count("!missing=*"), 100);
        assert_eq!(count("missing!=x"), 0);
        assert_eq!(count("missing<1"), 0);
        // With the other kinds.
        assert_eq!(count("render.* frame>89 text:n-1"), 3);
        assert_eq!(count("other.* frame>89"), 0);
    }

    fn matches(expression: &str, data: serde_json::Value) -> bool {
        EventFilter::parse(expression)
            .unwrap()
            .matches(&Event::new("t", data))
    }

    #[test]
    fn equals_matches_the_values_text() {
        assert!(matches("exit_code=2", json!({"exit_code": 2})));
        assert!(!matches("exit_code=2", json!({"exit_code": 20})));
        assert!(matches("exit_code=2*", json!({"exit_code": 20})));
        assert!(matches("exit_code=2", json!({"exit_code": "2"})));
        assert!(matches("ratio=0.5", json!({"ratio": 0.5})));
        assert!(matches("ok=true", json!({"ok": true})));
        assert!(!matches("ok=true", json!({"ok": "True"})));
        assert!(matches("parent=null", json!({"parent": null})));
        assert!(matches("tags=*urgent*", json!({"tags": ["a", "urgent"]})));
        assert!(matches("job=*\"id\":3*", json!({"job": {"id": 3}})));
        assert!(matches("note=\"disk slow\"", json!({"note": "disk slow"})));
        assert!(!matches("note=disk", json!({"note": "disk slow"})));
        assert!(matches("note=\"\"", json!({"note": ""})));
        assert!(!matches("note=\"\"", json!({})));
        assert!(matches("note=a=b", json!({"note": "a=b"})));
        assert!(matches("url=http://x/*", json!({"url": "http://x/y"})));
    }

    #[test]
    fn paths_reach_nested_members_array_items_and_dotted_names() {
        let data = json!({
            "job": {"node": "n-7", "items": [{"name": "a"}, {"name": "b"}]},
            "http.status_code": 503,
            "0": "zero",
            "scalar": 5,
        });
        assert!(matches("job.node=n-*", data.clone()));
        assert!(!matches("node=n-*", data.clone()));
        assert!(matches("job.items.1.name=b", data.clone()));
        assert!(!matches("job.items.2.name=*", data.clone()));
        assert!(!matches("job.items.name=*", data.clone()));
        assert!(matches("http.status_code>=500", data.clone()));
        assert!(matches("0=zero", data.clone()));
        assert!(!matches("scalar.x=*", data.clone()));
        assert!(matches("scalar=5", data));
        // The nested member first; the dotted name when the nested one is missing.
        let both = json!({"a": {"b": 1}, "a.b": 2, "a.c": 3});
        assert!(matches("a.b=1", both.clone()));
        assert!(!matches("a.b=2", both.clone()));
        assert!(matches("a.c=3", both));
        // An index is only an index on an array; a huge one is simply absent.
        assert!(!matches(
            "items.99999999999999999999999=*",
            json!({"items": [1]})
        ));
        assert!(matches(
            "@timestamp>1 $ref=x",
            json!({"@timestamp": 2, "$ref": "x"})
        ));
    }

    #[test]
    fn comparisons_read_numbers_and_numeric_strings() {
        assert!(matches("frame>100", json!({"frame": 101})));
        assert!(!matches("frame>100", json!({"frame": 100})));
        assert!(matches("frame>=100", json!({"frame": 100.0})));
        assert!(matches("frame<100", json!({"frame": 99.999})));
        assert!(matches("frame<=-2.5", json!({"frame": -3})));
        assert!(matches("frame>1e2", json!({"frame": 1000})));
        assert!(matches("frame>100", json!({"frame": "101"})));
        assert!(matches("frame>100", json!({"frame": "1.5e3"})));
        assert!(!matches("frame>100", json!({"frame": " 101"})));
        assert!(!matches("frame>100", json!({"frame": "NaN"})));
        assert!(!matches("frame<100", json!({"frame": "-inf"})));
        assert!(!matches("frame>0", json!({"frame": true})));
        assert!(!matches("frame<1", json!({"frame": null})));
        assert!(!matches("frame>0", json!({"frame": [5]})));
        // Whole numbers compare exactly, past what an f64 holds.
        assert!(matches(
            "id>9007199254740992",
            json!({"id": 9_007_199_254_740_993u64})
        ));
        assert!(!matches("id>18446744073709551615", json!({"id": u64::MAX})));
        assert!(matches(
            "ts>=1732540000000000001",
            json!({"ts": "1732540000000000001"})
        ));
        assert!(matches("x>-9223372036854775809", json!({"x": i64::MIN})));
        // Beyond every i128: ordered by sign, exactly.
        assert!(!matches(
            "x<=170141183460469231731687303715884105727",
            json!({"x": 1.7014118346046923e38})
        ));
        assert!(matches(
            "x>170141183460469231731687303715884105727",
            json!({"x": 1.7014118346046923e38})
        ));
        assert!(matches(
            "x>=-170141183460469231731687303715884105728",
            json!({"x": -1.7014118346046923e38})
        ));
        assert!(matches("x<-1e300", json!({"x": -2e300})));
        assert!(matches("x>0.1", json!({"x": 2e300})));
        assert!(matches("x<0.5", json!({"x": 0})));
        assert!(matches("x>0.5", json!({"x": 1})));
    }

    #[test]
    fn numbers_parse_print_and_compare() {
        for (text, shown) in [
            ("100", "100"),
            ("+5", "5"),
            ("-0", "0"),
            ("5.0", "5"),
            ("1e3", "1000"),
            ("2.5", "2.5"),
            (".5", "0.5"),
            ("1e-7", "0.0000001"),
            ("-9223372036854775809", "-9223372036854775809"),
        ] {
            let n = Number::parse(text).unwrap();
            assert_eq!(n.to_string(), shown, "{text}");
            assert_eq!(Number::parse(shown), Some(n), "{text}");
        }
        for bad in [
            "", "abc", "1 2", "inf", "NaN", "1e999", "--1", "1.2.3", "e5", "0x10",
        ] {
            assert_eq!(Number::parse(bad), None, "{bad}");
        }
        assert_eq!(Number::from_f64(f64::NAN), None);
        assert_eq!(Number::from_f64(3.0), Some(Number::from(3i64)));
        assert_eq!(Number::from(u64::MAX).to_string(), "18446744073709551615");
        assert_eq!(
            Number::parse("-1.7014118346046923e38"),
            Number::parse("-170141183460469231731687303715884105728")
        );
        for huge in [1e300, -1e300, 1.7014118346046923e38, -3.4e38] {
            let huge = Number::from_f64(huge).unwrap();
            assert_eq!(Number::parse(&huge.to_string()), Some(huge), "{huge}");
        }
        assert_eq!(
            Number::parse("170141183460469231731687303715884105727").map(|n| n.to_string()),
            Some("170141183460469231731687303715884105727".to_owned())
        );
    }

    #[test]
    fn a_type_prefix_keeps_equals_literal() {
        let weird = Event::new("a=b", json!({"a": "b"}));
        let plain = Event::new("x", json!({"a": "b"}));
        let literal = EventFilter::parse("type:a=b").unwrap();
        assert!(literal.matches(&weird) && !literal.matches(&plain));
        let field = EventFilter::parse("a=b").unwrap();
        assert!(field.matches(&weird) && field.matches(&plain));
        let quoted = EventFilter::parse("\"a=b\"").unwrap();
        assert_eq!(quoted, literal);
        assert!(EventFilter::parse("res:x>3").unwrap().matches(&{
            let mut e = plain.clone();
            e.resource_id = Some("x>3".into());
            e
        }));
        assert!(EventFilter::parse("text:a=b").is_ok());
        // `type=` is the data's `type` member.
        let typed = EventFilter::parse("type=job").unwrap();
        assert!(!typed.matches(&Event::new("job", json!({}))));
        assert!(typed.matches(&Event::new("x", json!({"type": "job"}))));
    }

    fn error(expression: &str) -> FilterError {
        EventFilter::parse(expression).unwrap_err()
    }

    #[test]
    fn field_errors_name_the_term_and_column() {
        let err = error("task.* frame>abc");
        assert_eq!(
            err,
            FilterError::BadNumber {
                value: "abc".into(),
                term: "frame>abc".into(),
                column: 14,
            }
        );
        assert_eq!(
            err.to_string(),
            "a number is expected in `frame>abc` at column 14, not `abc` (such as 100, -2.5 or 1e6)"
        );
        assert_eq!(error("x>=1e999").column(), 4);
        assert_eq!(error("x<\"1 2\"").column(), 3);
        assert_eq!(error("!x<nan").column(), 4);

        let err = error("a job..node=1");
        assert!(
            matches!(&err, FilterError::BadPath { path, column: 7, .. } if path == "job..node")
        );
        assert!(err.to_string().contains("empty key"), "{err}");
        assert_eq!(error(".a=1").column(), 1);
        assert_eq!(error("a.=1").column(), 3);
        let err = error("task.*=x");
        assert_eq!(err.column(), 6);
        assert!(err.to_string().contains("type:GLOB"), "{err}");
        assert_eq!(error("  !=x").column(), 4);
        assert!(error("=x").to_string().contains("a field path such as"));
        assert_eq!(error("a!b=1").column(), 2);
        assert_eq!(error("é/x=1").column(), 2);

        for (text, column) in [("frame>", 1), ("x frame!=", 3), ("!a=", 1)] {
            assert_eq!(
                error(text),
                FilterError::MissingValue {
                    term: text.split(' ').next_back().unwrap().into(),
                    column
                },
                "{text}"
            );
        }
        assert!(matches!(
            error("a=\"x"),
            FilterError::UnclosedQuote { column: 1, .. }
        ));
        assert!(matches!(
            error("a=\"x\"y"),
            FilterError::Unexpected { column: 6, .. }
        ));
        assert!(matches!(
            error("!!a=1"),
            FilterError::Unexpected { column: 2, .. }
        ));

        let err = error("exit_code:2");
        assert_eq!(err.column(), 1);
        assert_eq!(
            err.to_string(),
            "unknown field `exit_code` in `exit_code:2` at column 1 (prefixes: type, res, origin, \
             text, since, until; a data field is written exit_code=VALUE)"
        );
        let path: Result<FieldPath, _> = "a.b*".parse();
        assert_eq!(path.unwrap_err().column(), 4);
    }

    #[test]
    fn builder_and_terms_agree_with_the_parser() {
        let built = EventFilter::new()
            .field(
                "node".parse().unwrap(),
                FieldTest::Matches(Glob::new("n-1")),
            )
            .field(
                "frame".parse().unwrap(),
                FieldTest::Compare(Comparison::Greater, Number::from(89i64)),
            )
            .field(
                "node".parse().unwrap(),
                FieldTest::Matches(Glob::new("n-2")),
            )
            .field(
                "owner".parse().unwrap(),
                FieldTest::Differs(Glob::new("ci")),
            )
            .exclude(Term::Field(
                "exit_code".parse().unwrap(),
                FieldTest::Matches(Glob::new("0")),
            ));
        let parsed =
            EventFilter::parse("node=n-1 frame>89 node=n-2 owner!=ci !exit_code=0").unwrap();
        assert_eq!(built, parsed);
        assert_eq!(
            parsed.to_string(),
            "node=n-1 node=n-2 frame>89 owner!=ci !exit_code=0"
        );
        let terms: Vec<(bool, Term)> = parsed.terms().collect();
        assert_eq!(terms.len(), 5);
        assert!(
            matches!(&terms[4], (false, Term::Field(p, FieldTest::Matches(_))) if p.as_str() == "exit_code")
        );
        for (positive, term) in &terms {
            let alone = if *positive {
                EventFilter::parse(&term.to_string()).unwrap()
            } else {
                EventFilter::new().exclude(term.clone())
            };
            assert_eq!(
                EventFilter::parse(&alone.to_string()).unwrap(),
                alone,
                "{term}"
            );
        }
    }

    #[test]
    fn needs_data_and_needles() {
        let needs = |f: &str| EventFilter::parse(f).unwrap().needs_data();
        assert!(!needs(""));
        assert!(!needs("task.* res:x !res:y since:id:3"));
        assert!(needs("text:x"));
        assert!(needs("!text:x"));
        assert!(needs("a=1"));
        assert!(needs("a!=1"));
        assert!(needs("a>1"));
        assert!(needs("task.* !a=1"));
        let needles = |f: &str| EventFilter::parse(f).unwrap().data_needles();
        assert_eq!(
            needles("job.node=n-* frame>1 frame<0 o!=x items.0=y !skip=1 text:z"),
            vec![b"node\":".to_vec(), b"frame\":".to_vec(), b"o\":".to_vec()]
        );
        assert!(needles("task.*").is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// The needles are a necessary condition: whatever matches holds every one of them.
        #[test]
        fn needles_never_rule_out_a_match(
            keys in proptest::collection::vec("[ab]|a\\.b|0|b\\.0", 0..6),
            values in proptest::collection::vec(0u8..4, 6),
            path in "[ab0](\\.[ab0]){0,2}",
            op in proptest::sample::select(vec!["=", "!=", ">", "<="]),
        ) {
            let mut data = serde_json::Map::new();
            for (key, v) in keys.iter().zip(&values) {
                let value = match v {
                    0 => json!(1),
                    1 => json!({"a": 2, "b": [3, {"a": 4}], "0": "x"}),
                    2 => json!([{"b": 5}, 6]),
                    _ => json!("7"),
                };
                data.insert(key.clone(), value);
            }
            let data = serde_json::Value::Object(data);
            let value = if op == "=" || op == "!=" { "*" } else { "3" };
            let filter = EventFilter::parse(&format!("{path}{op}{value}")).unwrap();
            if filter.matches(&Event::new("t", data.clone())) {
                let text = serde_json::to_vec(&data).unwrap();
                for needle in filter.data_needles() {
                    proptest::prop_assert!(
                        text.windows(needle.len()).any(|w| w == needle.as_slice()),
                        "{} in {}", String::from_utf8_lossy(&needle), data
                    );
                }
            }
        }
    }
}
