//! The monitor's own memory of the bus: the events in the compact [`Store`], the positions of those
//! that match the current filter, an optional origin per event, and a rate timeline for the scrubber.
//!
//! Every event the monitor receives gets a [`Seq`], its position in arrival order (the store's
//! position). The log shows the last `history` of them; the store keeps a few more (`slack`, at most
//! one checkpoint interval of the gauges) so the gauges at the oldest shown event can be rebuilt from
//! the checkpoint before it. Events are kept as rows and LZ4 blocks and decoded on demand: the rows on
//! screen, the detail view, the gauges' replay and the filter's candidates.
//!
//! The matches are an index of `u32` offsets from a base seq (4 bytes a match), or nothing at all
//! when the filter is empty (every event matches). New events are tested once, as they arrive, on the
//! event in hand. A new filter is applied to the held events from the newest backwards in bounded
//! slices ([`EventLog::scan`], through [`Store::scan`] and a [`StoreFilter`]: type and resource globs
//! judged once per distinct string, `text:` and data-field terms searched in the payload bytes before
//! any event is parsed), so the rows on screen are right at once and typing never waits for a million
//! events to be tested; the count says when it is still partial.

use crate::event_stream::{Event, EventFilter};
use crate::store::{Order, Store, StoreConfig, StoreFilter, DEFAULT_MAX_BYTES};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

/// Position of an event in the order the monitor received it, from 0.
pub type Seq = u64;

/// Bytes of memory the log's store may hold per event of `--history` (whichever bound is hit first):
/// generous for events of a few hundred bytes (the store keeps a typical one in about 55), while a
/// history of huge events stays bounded.
const BYTES_PER_EVENT_BUDGET: usize = 256;

/// The newest events kept uncompressed: the rows a live view shows are read without decompressing.
const HOT_EVENTS: usize = 2048;

/// The seqs of the held events that match the filter, ascending.
#[derive(Debug)]
enum MatchIndex {
    /// Every held event matches (the empty filter): nothing is stored.
    All,
    /// Offsets from `epoch`.
    Listed { epoch: Seq, offsets: VecDeque<u32> },
}

/// The origins of events (the bus or machine they came from), interned, beside the store: empty until
/// an event with an origin arrives, then one `u16` per event (0 for none).
#[derive(Debug, Default)]
struct Origins {
    /// Names by id - 1.
    names: Vec<Arc<str>>,
    ids: FxHashMap<Arc<str>, u16>,
    /// Seq of `column[0]`.
    start: Seq,
    column: VecDeque<u16>,
}

impl Origins {
    fn id_of(&mut self, origin: &Arc<str>) -> u16 {
        if let Some(&id) = self.ids.get(origin) {
            return id;
        }
        // Past 65,535 names the last one stands for all the rest.
        let Ok(id) = u16::try_from(self.names.len() + 1) else {
            return u16::MAX;
        };
        self.names.push(Arc::clone(origin));
        self.ids.insert(Arc::clone(origin), id);
        id
    }

    /// Notes the origin of the event at `seq` (the next one).
    fn push(&mut self, seq: Seq, origin: Option<&Arc<str>>) {
        match origin {
            None if self.column.is_empty() => self.start = seq + 1,
            None => self.column.push_back(0),
            Some(origin) => {
                if self.column.is_empty() {
                    self.start = seq;
                }
                let id = self.id_of(origin);
                self.column.push_back(id);
            }
        }
    }

    fn evict_below(&mut self, first: Seq) {
        while self.start < first && !self.column.is_empty() {
            self.column.pop_front();
            self.start += 1;
        }
        if self.column.is_empty() {
            self.start = self.start.max(first);
        }
    }

    fn get(&self, seq: Seq) -> Option<&Arc<str>> {
        let index = usize::try_from(seq.checked_sub(self.start)?).ok()?;
        match *self.column.get(index)? {
            0 => None,
            id => self.names.get(usize::from(id) - 1),
        }
    }
}

/// What one push changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The seqs that left the shown history (usually none or one).
    pub left: Range<Seq>,
    /// Events the store dropped for its byte bound before they left the shown history by count (their
    /// times can no longer be read).
    pub dropped_early: bool,
}

/// The monitor's event log: the store with its filter index.
#[derive(Debug)]
pub struct EventLog {
    store: Store,
    /// Events shown at most.
    history: usize,
    filter: EventFilter,
    compiled: StoreFilter,
    matches: MatchIndex,
    /// Held events with seq in `[scan_low, end)` have been tested against `filter`.
    scan_low: Seq,
    origins: Origins,
    /// Reused by scans.
    hits: Vec<Seq>,
}

impl EventLog {
    /// An empty log showing at most `history` events (at least 1), its store keeping `slack` more.
    pub fn new(history: usize, slack: usize, filter: EventFilter) -> Self {
        // Match offsets are 32-bit: a log never holds 4 billion events.
        let history = history.clamp(1, (u32::MAX / 2) as usize);
        let keep = history.saturating_add(slack);
        let config = StoreConfig {
            max_bytes: DEFAULT_MAX_BYTES.max(keep.saturating_mul(BYTES_PER_EVENT_BUDGET)),
            hot_events: HOT_EVENTS,
            ..StoreConfig::new(keep)
        };
        let matches = Self::empty_index(&filter, 0);
        Self {
            store: Store::new(config),
            history,
            compiled: StoreFilter::new(&filter.without_origin()),
            filter,
            matches,
            scan_low: 0,
            origins: Origins::default(),
            hits: Vec::new(),
        }
    }

    fn empty_index(filter: &EventFilter, epoch: Seq) -> MatchIndex {
        if filter.is_empty() {
            MatchIndex::All
        } else {
            MatchIndex::Listed {
                epoch,
                offsets: VecDeque::new(),
            }
        }
    }

    /// The store the events are kept in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Seq of the oldest shown event.
    pub fn base(&self) -> Seq {
        let end = self.store.end_pos();
        self.store
            .first_pos()
            .max(end.saturating_sub(self.history as Seq))
    }

    /// Seq the next event will get.
    pub fn end(&self) -> Seq {
        self.store.end_pos()
    }

    /// Events shown.
    pub fn len(&self) -> usize {
        usize::try_from(self.end() - self.base()).unwrap_or(usize::MAX)
    }

    /// No event is shown.
    pub fn is_empty(&self) -> bool {
        self.end() == self.base()
    }

    /// The shown event at `seq`, decoded.
    pub fn get(&self, seq: Seq) -> Option<Arc<Event>> {
        if seq < self.base() {
            return None;
        }
        self.store.event(seq).map(Arc::new)
    }

    /// Calls `f` with each stored event of `range`, decoded, oldest first (each block decompressed once).
    pub(crate) fn for_each_stored(&self, range: Range<Seq>, mut f: impl FnMut(Seq, Event)) {
        self.store.for_each(range, |seq, parts| {
            if let Ok(event) = parts.to_event() {
                f(seq, event);
            }
        });
    }

    /// The time of the shown event at `seq`, read from its row.
    pub fn time_at(&self, seq: Seq) -> Option<SystemTime> {
        if seq < self.base() {
            return None;
        }
        self.store
            .time_micros_at(seq)
            .map(crate::epoch::from_micros_or_epoch)
    }

    /// The time of the event at `seq` if the store still holds it.
    pub(crate) fn stored_time(&self, seq: Seq) -> Option<SystemTime> {
        self.store
            .time_micros_at(seq)
            .map(crate::epoch::from_micros_or_epoch)
    }

    /// The bus id of the shown event at `seq`, read from its row.
    pub fn id_at(&self, seq: Seq) -> Option<u64> {
        if seq < self.base() {
            return None;
        }
        self.store.id_at(seq)
    }

    /// The origin of the shown event at `seq`, when it came with one.
    pub fn origin(&self, seq: Seq) -> Option<&Arc<str>> {
        self.origins.get(seq)
    }

    /// How many distinct origins have been seen.
    pub fn origin_count(&self) -> usize {
        self.origins.names.len()
    }

    /// Matches found so far.
    pub fn match_count(&self) -> usize {
        match &self.matches {
            MatchIndex::All => self.len(),
            MatchIndex::Listed { offsets, .. } => offsets.len(),
        }
    }

    /// Seq of the `index`th match found so far (ascending).
    pub fn match_seq(&self, index: usize) -> Option<Seq> {
        match &self.matches {
            MatchIndex::All => (index < self.len()).then(|| self.base() + index as Seq),
            MatchIndex::Listed { epoch, offsets } => {
                offsets.get(index).map(|&o| epoch + Seq::from(o))
            }
        }
    }

    /// Appends `event` (with its origin, if it has one), testing it against the filter.
    pub fn push(&mut self, event: &Event, origin: Option<&Arc<str>>) -> Pushed {
        let before = self.base();
        let seq = self.store.end_pos();
        match self.store.push_event(event) {
            Ok(pushed) => {
                if let Some(job) = pushed.job {
                    self.store.install(job.run());
                }
            }
            Err(_) => {
                // Data of 4 GiB or more: not kept.
                return Pushed {
                    left: before..before,
                    dropped_early: false,
                };
            }
        }
        self.origins.push(seq, origin);
        let after = self.base();
        self.evict_below(after);
        if let MatchIndex::Listed { .. } = self.matches {
            if self.filter.matches_from(event, origin.map(|o| &**o)) {
                self.push_match(seq);
            }
        }
        Pushed {
            left: before..after,
            dropped_early: self.store.first_pos() > before,
        }
    }

    fn push_match(&mut self, seq: Seq) {
        let base = self.base();
        let MatchIndex::Listed { epoch, offsets } = &mut self.matches else {
            return;
        };
        if seq - *epoch > Seq::from(u32::MAX) {
            // Rebase: every held match is at or after the base, which is within 2^31 of `seq`.
            let shift = base - *epoch;
            for offset in offsets.iter_mut() {
                *offset = u32::try_from(Seq::from(*offset).saturating_sub(shift)).unwrap_or(0);
            }
            *epoch = base;
        }
        offsets.push_back(u32::try_from(seq - *epoch).unwrap_or(u32::MAX));
    }

    fn evict_below(&mut self, base: Seq) {
        if let MatchIndex::Listed { epoch, offsets } = &mut self.matches {
            while offsets
                .front()
                .is_some_and(|&o| *epoch + Seq::from(o) < base)
            {
                offsets.pop_front();
            }
        }
        self.origins.evict_below(self.store.first_pos());
        self.scan_low = self.scan_low.max(base);
    }

    /// Applies a new filter: new events are tested against it at once, held ones by [`EventLog::scan`]
    /// (none when the filter is empty: everything matches).
    pub fn set_filter(&mut self, filter: EventFilter) {
        self.compiled = StoreFilter::new(&filter.without_origin());
        self.matches = Self::empty_index(&filter, self.base());
        self.scan_low = match self.matches {
            MatchIndex::All => self.base(),
            MatchIndex::Listed { .. } => self.end(),
        };
        self.filter = filter;
    }

    /// Held events not yet tested against the filter.
    pub fn unscanned(&self) -> u64 {
        self.scan_low - self.base()
    }

    /// Seq from which held events have been tested against the filter (the matches are complete from
    /// here on).
    pub fn scanned_from(&self) -> Seq {
        self.scan_low
    }

    /// Tests up to `max` untested held events, newest first; returns how many it tested.
    pub fn scan(&mut self, max: usize) -> usize {
        let base = self.base();
        if self.scan_low <= base || max == 0 {
            return 0;
        }
        let low = self.scan_low.saturating_sub(max as Seq).max(base);
        let range = low..self.scan_low;
        self.hits.clear();
        self.store.scan(
            &mut self.compiled,
            range.clone(),
            Order::NewestFirst,
            usize::MAX,
            &mut self.hits,
        );
        if self.filter.has_origin_terms() {
            let (filter, origins) = (&self.filter, &self.origins);
            self.hits
                .retain(|&seq| filter.origin_ok(origins.get(seq).map(|o| &**o)));
        }
        if let MatchIndex::Listed { epoch, offsets } = &mut self.matches {
            for &seq in &self.hits {
                // Hits come newest first, each older than every match held.
                offsets.push_front(u32::try_from(seq.saturating_sub(*epoch)).unwrap_or(0));
            }
        }
        self.scan_low = low;
        usize::try_from(range.end - range.start).unwrap_or(usize::MAX)
    }

    /// Index of the first match with a seq of at least `seq`.
    pub fn match_index_from(&self, seq: Seq) -> usize {
        match &self.matches {
            MatchIndex::All => usize::try_from(seq.saturating_sub(self.base()))
                .map_or(self.len(), |i| i.min(self.len())),
            MatchIndex::Listed { epoch, offsets } => {
                offsets.partition_point(|&o| epoch + Seq::from(o) < seq)
            }
        }
    }

    /// Index just past the last match with a seq of at most `seq`.
    pub fn match_index_after(&self, seq: Seq) -> usize {
        self.match_index_from(seq.saturating_add(1))
    }

    /// The event of the `index`th match, decoded.
    pub fn match_event(&self, index: usize) -> Option<(Seq, Arc<Event>)> {
        let seq = self.match_seq(index)?;
        Some((seq, self.get(seq)?))
    }

    /// The events of matches `indexes` (ascending), decoded, each block decompressed once.
    pub fn match_events(&self, indexes: Range<usize>) -> Vec<(Seq, Arc<Event>)> {
        let seqs: Vec<Seq> = indexes.filter_map(|i| self.match_seq(i)).collect();
        let mut out = Vec::with_capacity(seqs.len());
        self.store.for_each(seqs, |seq, parts| {
            if let Ok(event) = parts.to_event() {
                out.push((seq, Arc::new(event)));
            }
        });
        out
    }

    /// The time of the `index`th match, read from its row.
    pub fn match_time(&self, index: usize) -> Option<SystemTime> {
        self.time_at(self.match_seq(index)?)
    }
}

/// How many bins the timeline keeps at most before it halves its resolution.
const MAX_BINS: usize = 2048;

/// Event counts over time for the held events, in bins that widen as history spans longer.
#[derive(Debug, Clone)]
pub struct Timeline {
    width_ms: i64,
    /// (bin number = epoch millis / width, count), ascending by bin.
    bins: VecDeque<(i64, u64)>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self {
            width_ms: 100,
            bins: VecDeque::new(),
        }
    }
}

impl Timeline {
    /// Counts an event stamped `time`.
    pub fn add(&mut self, time: SystemTime) {
        let bin = crate::epoch::millis(time).div_euclid(self.width_ms);
        match self.bins.back_mut() {
            Some(last) if last.0 == bin => last.1 += 1,
            Some(last) if last.0 > bin => match self.bins.binary_search_by_key(&bin, |b| b.0) {
                Ok(i) => self.bins[i].1 += 1,
                Err(i) => self.bins.insert(i, (bin, 1)),
            },
            _ => self.bins.push_back((bin, 1)),
        }
        if self.bins.len() > MAX_BINS {
            self.coarsen();
        }
    }

    /// Uncounts an event stamped `time` (one that left the ring).
    pub fn remove(&mut self, time: SystemTime) {
        let bin = crate::epoch::millis(time).div_euclid(self.width_ms);
        if let Ok(i) = self.bins.binary_search_by_key(&bin, |b| b.0) {
            self.bins[i].1 -= 1;
            if self.bins[i].1 == 0 {
                self.bins.remove(i);
            }
        }
    }

    fn coarsen(&mut self) {
        self.width_ms *= 2;
        let old = std::mem::take(&mut self.bins);
        for (bin, count) in old {
            let bin = bin.div_euclid(2);
            match self.bins.back_mut() {
                Some(last) if last.0 == bin => last.1 += count,
                _ => self.bins.push_back((bin, count)),
            }
        }
    }

    /// The covered time range in epoch millis, `[start, end)`.
    pub fn span(&self) -> Option<(i64, i64)> {
        let first = self.bins.front()?.0;
        let last = self.bins.back()?.0;
        Some((first * self.width_ms, (last + 1) * self.width_ms))
    }

    /// Event counts in `columns` equal slices of the span.
    pub fn columns(&self, columns: usize) -> Vec<u64> {
        let mut out = vec![0; columns];
        let Some((start, end)) = self.span() else {
            return out;
        };
        let span_bins = usize::try_from((end - start) / self.width_ms).unwrap_or(usize::MAX);
        if span_bins < columns {
            // Fewer bins than columns: each bin gets a run of columns, so the chart has no holes.
            let mut per_bin = vec![0; span_bins];
            let first = start / self.width_ms;
            for &(bin, count) in &self.bins {
                if let Some(slot) = per_bin.get_mut((bin - first) as usize) {
                    *slot += count;
                }
            }
            for (col, slot) in out.iter_mut().enumerate() {
                *slot = per_bin[col * span_bins / columns];
            }
            return out;
        }
        let width = (end - start).max(1) as i128;
        for &(bin, count) in &self.bins {
            let col = ((bin * self.width_ms - start) as i128 * columns as i128 / width) as usize;
            if let Some(slot) = out.get_mut(col.min(columns.saturating_sub(1))) {
                *slot += count;
            }
        }
        out
    }

    /// The column (of `columns`) that `time` falls in.
    pub fn column_of(&self, time: SystemTime, columns: usize) -> Option<usize> {
        let (start, end) = self.span()?;
        let t = crate::epoch::millis(time).clamp(start, end - 1);
        let col = (t - start) as i128 * columns as i128 / (end - start).max(1) as i128;
        Some((col as usize).min(columns.saturating_sub(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn ev(kind: &str) -> Event {
        Event::new(kind, serde_json::Value::Null)
    }

    fn matches(log: &EventLog) -> Vec<Seq> {
        (0..log.match_count())
            .filter_map(|i| log.match_seq(i))
            .collect()
    }

    #[test]
    fn ring_is_bounded_and_matches_follow_evictions() {
        let mut log = EventLog::new(3, 2, EventFilter::parse("a").unwrap());
        let mut left = Vec::new();
        for kind in ["a", "b", "a", "a", "b"] {
            left.extend(log.push(&ev(kind), None).left);
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.base(), 2);
        assert_eq!(left, [0, 1], "each seq leaves once");
        assert_eq!(matches(&log), [2, 3]);
        assert!(log.get(1).is_none(), "not shown");
        assert!(
            log.stored_time(1).is_some(),
            "but still stored, in the slack"
        );
    }

    #[test]
    fn new_filter_scans_newest_first_in_slices() {
        let mut log = EventLog::new(10, 0, EventFilter::new());
        for kind in ["a", "b", "a", "b", "a"] {
            log.push(&ev(kind), None);
        }
        assert_eq!(
            log.match_count(),
            5,
            "the empty filter matches all, unlisted"
        );
        log.set_filter(EventFilter::parse("a").unwrap());
        assert_eq!(log.scan(2), 2);
        assert_eq!(matches(&log), [4]);
        assert_eq!(log.unscanned(), 3);
        log.push(&ev("a"), None);
        log.scan(usize::MAX);
        assert_eq!(matches(&log), [0, 2, 4, 5]);
        assert_eq!(log.unscanned(), 0);
        assert_eq!(log.match_index_from(3), 2);
        assert_eq!(log.match_index_after(4), 3);
        assert_eq!(log.match_event(1).unwrap().0, 2);
    }

    #[test]
    fn origins_are_kept_only_once_some_event_has_one() {
        let mut log = EventLog::new(4, 0, EventFilter::new());
        log.push(&ev("a"), None);
        let a: Arc<str> = Arc::from("farm-a");
        let b: Arc<str> = Arc::from("farm-b");
        log.push(&ev("a"), Some(&a));
        log.push(&ev("a"), None);
        log.push(&ev("a"), Some(&b));
        assert_eq!(log.origin(0), None);
        assert_eq!(log.origin(1).map(|o| &**o), Some("farm-a"));
        assert_eq!(log.origin(2), None);
        assert_eq!(log.origin(3).map(|o| &**o), Some("farm-b"));
        assert_eq!(log.origin_count(), 2);
        for _ in 0..3 {
            log.push(&ev("a"), Some(&a));
        }
        assert_eq!(log.base(), 3);
        assert_eq!(log.origin(3).map(|o| &**o), Some("farm-b"));
        assert_eq!(log.origin(6).map(|o| &**o), Some("farm-a"));
    }

    #[test]
    fn timeline_counts_add_and_remove_and_coarsens() {
        let mut t = Timeline::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1000);
        for i in 0..5000u64 {
            t.add(t0 + Duration::from_millis(i * 7));
        }
        assert!(t.bins.len() <= MAX_BINS);
        assert_eq!(t.columns(10).iter().sum::<u64>(), 5000);
        assert_eq!(t.columns(100_000).iter().filter(|c| **c == 0).count(), 0);
        t.remove(t0);
        assert_eq!(t.columns(10).iter().sum::<u64>(), 4999);
        assert_eq!(t.column_of(t0, 10), Some(0));
    }
}
