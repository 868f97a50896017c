//! An [`EventFilter`] compiled for a [`Store`](super::Store): what can be decided from a row is
//! decided there, each type and resource glob once per distinct interned string; `text:` words
//! search the payload bytes first; whatever needs the data is decided by decoding the event and
//! asking [`EventFilter::matches`], which stays the one definition of a match.

use super::block::NO_RESOURCE;
use super::intern::{Interner, Sym};
use super::text::Needle;
use crate::epoch;
use crate::event_stream::{Bound, EventFilter, Glob, Term};
use std::time::SystemTime;

/// A bound a row can be checked against: a time in microseconds or an id.
#[derive(Clone, Copy, Debug)]
enum RowBound {
    Time(i64),
    Id(u64),
}

impl RowBound {
    /// `None` for a time the rows cannot represent exactly (then the filter decodes instead).
    fn of(bound: Bound) -> Option<Self> {
        match bound {
            Bound::Id(id) => Some(RowBound::Id(id)),
            Bound::Time(t) => {
                let micros = epoch::micros_saturating(t);
                (epoch::from_micros_or_epoch(micros) == t).then_some(RowBound::Time(micros))
            }
        }
    }

    #[inline]
    fn at_or_after(self, id: u64, time: i64) -> bool {
        match self {
            RowBound::Time(t) => time >= t,
            RowBound::Id(i) => id >= i,
        }
    }

    #[inline]
    fn at_or_before(self, id: u64, time: i64) -> bool {
        match self {
            RowBound::Time(t) => time <= t,
            RowBound::Id(i) => id <= i,
        }
    }
}

const UNKNOWN: u8 = 0;
const NO: u8 = 1;
const YES: u8 = 2;

/// A filter compiled for scanning a [`Store`](super::Store): see [`Store::scan`](super::Store::scan).
///
/// It caches its verdict on each interned type and resource string of the store it last scanned, so
/// a monitor that keeps one while events arrive pays for each glob once per distinct string. The
/// cache follows the store: a string forgotten and its id given to another is noticed.
pub struct StoreFilter {
    filter: EventFilter,
    types: Vec<Glob>,
    not_types: Vec<Glob>,
    resources: Vec<Glob>,
    not_resources: Vec<Glob>,
    since: Vec<RowBound>,
    until: Vec<RowBound>,
    not_since: Vec<RowBound>,
    not_until: Vec<RowBound>,
    pub(crate) texts: Vec<Needle>,
    pub(crate) not_texts: Vec<Needle>,
    /// Some term needs the event itself (a kind this compiler does not know, or a bound the rows
    /// cannot hold): every row that passes the rest is decoded and given to `matches`.
    pub(crate) opaque: bool,
    /// An extra lower time bound, ANDed with the filter (for "replay from this time").
    min_time: Option<i64>,
    /// Whose strings the caches below describe: (store, type generation, resource generation).
    cached_for: (u64, u64, u64),
    type_verdicts: Vec<u8>,
    resource_verdicts: Vec<u8>,
}

impl StoreFilter {
    /// Compiles `filter`.
    pub fn new(filter: &EventFilter) -> Self {
        let mut compiled = Self {
            filter: filter.clone(),
            types: Vec::new(),
            not_types: Vec::new(),
            resources: Vec::new(),
            not_resources: Vec::new(),
            since: Vec::new(),
            until: Vec::new(),
            not_since: Vec::new(),
            not_until: Vec::new(),
            texts: Vec::new(),
            not_texts: Vec::new(),
            opaque: false,
            min_time: None,
            cached_for: (u64::MAX, 0, 0),
            type_verdicts: Vec::new(),
            resource_verdicts: Vec::new(),
        };
        for (positive, term) in filter.terms() {
            compiled.add(positive, term);
        }
        compiled
    }

    fn add(&mut self, positive: bool, term: Term) {
        // `if let` rather than `match`: a kind of term added to the grammar later lands in the last
        // branch and is decided by `matches` on the decoded event.
        if let Term::Type(glob) = term {
            self.pick(positive, |s| &mut s.types, |s| &mut s.not_types)
                .push(glob);
        } else if let Term::Resource(glob) = term {
            self.pick(positive, |s| &mut s.resources, |s| &mut s.not_resources)
                .push(glob);
        } else if let Term::Text(word) = term {
            let needle = Needle::new(&word);
            self.pick(positive, |s| &mut s.texts, |s| &mut s.not_texts)
                .push(needle);
        } else if let Term::Since(bound) = term {
            match RowBound::of(bound) {
                Some(b) => self
                    .pick(positive, |s| &mut s.since, |s| &mut s.not_since)
                    .push(b),
                None => self.opaque = true,
            }
        } else if let Term::Until(bound) = term {
            match RowBound::of(bound) {
                Some(b) => self
                    .pick(positive, |s| &mut s.until, |s| &mut s.not_until)
                    .push(b),
                None => self.opaque = true,
            }
        } else {
            self.opaque = true;
        }
    }

    fn pick<T>(
        &mut self,
        positive: bool,
        yes: impl FnOnce(&mut Self) -> &mut Vec<T>,
        no: impl FnOnce(&mut Self) -> &mut Vec<T>,
    ) -> &mut Vec<T> {
        if positive {
            yes(self)
        } else {
            no(self)
        }
    }

    /// Also requires events stamped at or after `time` (on top of the filter's own bounds), compared
    /// to the microsecond: `time` is cut toward the epoch first, as the bus cuts event times.
    pub fn at_or_after(mut self, time: SystemTime) -> Self {
        self.min_time = Some(epoch::micros_saturating(time));
        self
    }

    /// The filter this was compiled from.
    pub fn filter(&self) -> &EventFilter {
        &self.filter
    }

    /// Whether deciding a row may need its data (a `text:` term, or a term only `matches` knows).
    pub fn needs_data(&self) -> bool {
        self.opaque || !self.texts.is_empty() || !self.not_texts.is_empty()
    }

    /// Forgets cached verdicts that no longer describe `store`'s strings.
    pub(crate) fn sync(&mut self, store: u64, types: &Interner, resources: &Interner) {
        let now = (store, types.generation(), resources.generation());
        if self.cached_for.0 != now.0 || self.cached_for.1 != now.1 {
            self.type_verdicts.clear();
        }
        if self.cached_for.0 != now.0 || self.cached_for.2 != now.2 {
            self.resource_verdicts.clear();
        }
        self.cached_for = now;
    }

    /// Whether a row passes everything but the data terms.
    #[inline]
    pub(crate) fn row_passes(
        &mut self,
        types: &Interner,
        resources: &Interner,
        event_type: Sym,
        resource: Sym,
        id: u64,
        time: i64,
    ) -> bool {
        self.type_ok(types, event_type)
            && self.resource_ok(resources, resource)
            && self.bounds_ok(id, time)
    }

    #[inline]
    fn type_ok(&mut self, types: &Interner, sym: Sym) -> bool {
        if self.types.is_empty() && self.not_types.is_empty() {
            return true;
        }
        if let Some(&v) = self.type_verdicts.get(sym as usize) {
            if v != UNKNOWN {
                return v == YES;
            }
        }
        let Some(text) = types.get(sym) else {
            return false;
        };
        let ok = (self.types.is_empty() || self.types.iter().any(|g| g.matches(text)))
            && !self.not_types.iter().any(|g| g.matches(text));
        cache(&mut self.type_verdicts, sym, types.id_bound(), ok);
        ok
    }

    #[inline]
    fn resource_ok(&mut self, resources: &Interner, sym: Sym) -> bool {
        if self.resources.is_empty() && self.not_resources.is_empty() {
            return true;
        }
        if sym == NO_RESOURCE {
            // No resource: no resource glob matches, for or against.
            return self.resources.is_empty();
        }
        if let Some(&v) = self.resource_verdicts.get(sym as usize) {
            if v != UNKNOWN {
                return v == YES;
            }
        }
        let Some(text) = resources.get(sym) else {
            return false;
        };
        let ok = (self.resources.is_empty() || self.resources.iter().any(|g| g.matches(text)))
            && !self.not_resources.iter().any(|g| g.matches(text));
        cache(&mut self.resource_verdicts, sym, resources.id_bound(), ok);
        ok
    }

    #[inline]
    fn bounds_ok(&self, id: u64, time: i64) -> bool {
        self.min_time.is_none_or(|t| time >= t)
            && (self.since.is_empty() || self.since.iter().any(|b| b.at_or_after(id, time)))
            && (self.until.is_empty() || self.until.iter().any(|b| b.at_or_before(id, time)))
            && !self.not_since.iter().any(|b| b.at_or_after(id, time))
            && !self.not_until.iter().any(|b| b.at_or_before(id, time))
    }
}

#[inline]
fn cache(verdicts: &mut Vec<u8>, sym: Sym, bound: usize, ok: bool) {
    let at = sym as usize;
    if verdicts.len() <= at {
        verdicts.resize(bound.max(at + 1), UNKNOWN);
    }
    verdicts[at] = if ok { YES } else { NO };
}

impl std::fmt::Debug for StoreFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreFilter")
            .field("filter", &self.filter.to_string())
            .field("needs_data", &self.needs_data())
            .finish_non_exhaustive()
    }
}
