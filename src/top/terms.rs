//! Per-term counts while the filter is edited: how many kept events each term of the expression
//! matches alone, so a term that matches nothing is seen before Enter.
//!
//! Each term is counted as the main filter is: new events are tested as they arrive, the kept ones
//! from the newest back in bounded slices ([`TermCounts::scan`], one slice of one term at a time, so
//! a key is answered between two slices), and a count is partial until its scan reaches the oldest
//! kept event. A term keeps one bit per kept event it was tested on, so an event leaving history
//! takes its count with it exactly; a term that did not change while the rest of the expression was
//! edited keeps its count.

use super::log::{EventLog, Seq};
use crate::event_stream::{split_terms, Event, EventFilter};
use crate::store::{Order, StoreFilter};
use std::collections::VecDeque;
use std::ops::Range;

/// One bit per seq from `start` (a multiple of 64) on.
#[derive(Debug, Default)]
struct Bits {
    start: Seq,
    words: VecDeque<u64>,
}

impl Bits {
    fn new(from: Seq) -> Self {
        Self {
            start: from - from % 64,
            words: VecDeque::new(),
        }
    }

    fn set(&mut self, seq: Seq) {
        let Some(at) = seq.checked_sub(self.start) else {
            return;
        };
        let word = usize::try_from(at / 64).unwrap_or(usize::MAX);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        if let Some(w) = self.words.get_mut(word) {
            *w |= 1 << (at % 64);
        }
    }

    fn get(&self, seq: Seq) -> bool {
        let Some(at) = seq.checked_sub(self.start) else {
            return false;
        };
        let word = usize::try_from(at / 64).unwrap_or(usize::MAX);
        self.words
            .get(word)
            .is_some_and(|w| w & (1 << (at % 64)) != 0)
    }

    /// Forgets the whole words below `seq`.
    fn forget_below(&mut self, seq: Seq) {
        while self.start + 64 <= seq && !self.words.is_empty() {
            self.words.pop_front();
            self.start += 64;
        }
    }
}

/// One term and its count.
#[derive(Debug)]
struct TermCount {
    /// As written.
    text: String,
    /// Character column where it starts in the expression.
    column: usize,
    matcher: EventFilter,
    compiled: StoreFilter,
    /// Kept events that matched, among those tested.
    bits: Bits,
    count: u64,
    /// Kept events from here on have been tested.
    scan_low: Seq,
}

/// A term's count, as the filter bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermCountView {
    /// The term as written (`!task.progress`, `text:"disk slow"`).
    pub term: String,
    /// Character column (from 1) where it starts in the expression.
    pub column: usize,
    /// Kept events it matches alone (so far, when not complete).
    pub count: u64,
    /// Every kept event has been tested: the count is exact.
    pub complete: bool,
}

/// The counts of the terms of the expression being edited.
#[derive(Debug, Default)]
pub(crate) struct TermCounts {
    terms: Vec<TermCount>,
    /// The term the next scan slice works on.
    next: usize,
    hits: Vec<Seq>,
}

impl TermCounts {
    /// Counts for the terms of `expression` (none for fewer than two: one term's count is the match
    /// count), keeping the counts of terms that are in `self` already; new ones start at the log's end.
    pub(crate) fn update(&mut self, expression: &str, log: &EventLog) {
        let split = split_terms(expression).unwrap_or_default();
        if split.len() < 2 {
            self.terms.clear();
            return;
        }
        let mut old = std::mem::take(&mut self.terms);
        for (column, text) in split {
            if let Some(at) = old.iter().position(|t| t.text == text) {
                let mut kept = old.swap_remove(at);
                kept.column = column;
                self.terms.push(kept);
                continue;
            }
            let Ok(matcher) = EventFilter::parse(text) else {
                continue;
            };
            self.terms.push(TermCount {
                text: text.to_owned(),
                column,
                compiled: StoreFilter::new(&matcher.without_origin()),
                matcher,
                bits: Bits::new(log.base()),
                count: 0,
                scan_low: log.end(),
            });
        }
        self.next = 0;
    }

    /// Forgets every term.
    pub(crate) fn clear(&mut self) {
        self.terms.clear();
    }

    /// Tests a new event (at `seq`, from `origin`) against every term.
    pub(crate) fn pushed(&mut self, seq: Seq, event: &Event, origin: Option<&str>) {
        for term in &mut self.terms {
            if term.matcher.matches_from(event, origin) {
                term.bits.set(seq);
                term.count += 1;
            }
        }
    }

    /// The events `left` left history.
    pub(crate) fn left(&mut self, left: Range<Seq>) {
        if left.is_empty() {
            return;
        }
        for term in &mut self.terms {
            for seq in left.clone() {
                if term.bits.get(seq) {
                    term.count -= 1;
                }
            }
            term.bits.forget_below(left.end);
            term.scan_low = term.scan_low.max(left.end);
        }
    }

    /// Whether a term's count is still partial.
    pub(crate) fn has_work(&self, base: Seq) -> bool {
        self.terms.iter().any(|t| t.scan_low > base)
    }

    /// Tests up to `max` kept events against one term whose count is partial, newest first; returns
    /// how many it tested.
    pub(crate) fn scan(&mut self, log: &EventLog, max: usize) -> usize {
        let base = log.base();
        let n = self.terms.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let Some(term) = self.terms.get_mut(i) else {
                continue;
            };
            if term.scan_low <= base {
                continue;
            }
            self.next = (i + 1) % n;
            let low = term.scan_low.saturating_sub(max as Seq).max(base);
            self.hits.clear();
            log.store().scan(
                &mut term.compiled,
                low..term.scan_low,
                Order::NewestFirst,
                usize::MAX,
                &mut self.hits,
            );
            if term.matcher.has_origin_terms() {
                let matcher = &term.matcher;
                self.hits
                    .retain(|&seq| matcher.origin_ok(log.origin(seq).map(|o| &**o)));
            }
            for &seq in &self.hits {
                term.bits.set(seq);
            }
            term.count += self.hits.len() as u64;
            let tested = term.scan_low - low;
            term.scan_low = low;
            return usize::try_from(tested).unwrap_or(usize::MAX);
        }
        0
    }

    /// The counts, in the order of the expression.
    pub(crate) fn views(&self, base: Seq) -> Vec<TermCountView> {
        self.terms
            .iter()
            .map(|t| TermCountView {
                term: t.text.clone(),
                column: t.column,
                count: t.count,
                complete: t.scan_low <= base,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_set_get_and_forget_whole_words() {
        let mut bits = Bits::new(70);
        assert_eq!(bits.start, 64);
        bits.set(70);
        bits.set(200);
        bits.set(3);
        assert!(bits.get(70) && bits.get(200) && !bits.get(71) && !bits.get(3));
        bits.forget_below(130);
        assert_eq!(bits.start, 128);
        assert!(bits.get(200) && !bits.get(70));
    }

    #[test]
    fn counts_are_exact_through_arrivals_scans_and_evictions() {
        let mut log = EventLog::new(100, 10, EventFilter::new());
        let event = |i: u64| {
            let kind = if i.is_multiple_of(3) {
                "task.started"
            } else {
                "log.info"
            };
            Event::with_resource(kind, &format!("job-{}", i % 2), serde_json::json!({"i": i}))
        };
        for i in 0..150 {
            log.push(&event(i), None);
        }
        let mut counts = TermCounts::default();
        counts.update("task.* res:job-1", &log);
        assert!(counts.has_work(log.base()));
        while counts.scan(&log, 16) > 0 {}
        let expect = |log: &EventLog, f: &dyn Fn(u64) -> bool| {
            (log.base()..log.end()).filter(|&s| f(s)).count() as u64
        };
        let views = counts.views(log.base());
        assert_eq!(views[0].count, expect(&log, &|s| s % 3 == 0));
        assert_eq!(views[1].count, expect(&log, &|s| s % 2 == 1));
        assert!(views.iter().all(|v| v.complete));
        for i in 150..260 {
            let pushed = log.push(&event(i), None);
            counts.left(pushed.left);
            counts.pushed(i, &event(i), None);
        }
        let views = counts.views(log.base());
        assert_eq!(views[0].count, expect(&log, &|s| s % 3 == 0));
        assert_eq!(views[1].count, expect(&log, &|s| s % 2 == 1));
        // Editing one term keeps the other's count.
        counts.update("task.* res:job-0", &log);
        let views = counts.views(log.base());
        assert_eq!(views[0].count, expect(&log, &|s| s % 3 == 0));
        assert!(views[0].complete && !views[1].complete);
    }
}
