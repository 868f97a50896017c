//! The monitor's own memory of the bus: a bounded ring of shared events, the positions of those that
//! match the current filter, and a rate timeline for the scrubber.
//!
//! Every event the monitor receives gets a [`Seq`], its position in arrival order. The ring holds the
//! last `capacity` of them; `matches` holds, in order, the seqs of the held events that pass the filter.
//! New events are tested once, as they arrive. A new filter is applied to the held events from the
//! newest backwards in bounded slices ([`EventLog::scan`]), so the rows on screen are right at once and
//! typing never waits for a million events to be tested; the count says when it is still partial.

use crate::event_stream::{Event, EventFilter};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Position of an event in the order the monitor received it, from 0.
pub type Seq = u64;

/// The bounded event ring with its filter index.
#[derive(Debug)]
pub struct EventLog {
    events: VecDeque<Arc<Event>>,
    /// Seq of `events[0]`.
    base: Seq,
    capacity: usize,
    filter: EventFilter,
    /// Seqs of held events that match `filter`, ascending.
    matches: VecDeque<Seq>,
    /// Held events with seq in `[scan_low, end)` have been tested against `filter`.
    scan_low: Seq,
}

impl EventLog {
    /// An empty log keeping at most `capacity` events (at least 1).
    pub fn new(capacity: usize, filter: EventFilter) -> Self {
        Self {
            events: VecDeque::with_capacity(capacity.clamp(1, 1 << 16)),
            base: 0,
            capacity: capacity.max(1),
            filter,
            matches: VecDeque::new(),
            scan_low: 0,
        }
    }

    /// Seq of the oldest held event.
    pub fn base(&self) -> Seq {
        self.base
    }

    /// Seq the next event will get.
    pub fn end(&self) -> Seq {
        self.base + self.events.len() as u64
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// No event is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The held event at `seq`.
    pub fn get(&self, seq: Seq) -> Option<&Arc<Event>> {
        let index = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.events.get(index)
    }

    /// The newest held event.
    pub fn newest(&self) -> Option<&Arc<Event>> {
        self.events.back()
    }

    /// Seqs of matching events found so far, ascending.
    pub fn matches(&self) -> &VecDeque<Seq> {
        &self.matches
    }

    /// Appends `event`; returns the event that fell out of the ring to make room, if any.
    pub fn push(&mut self, event: Arc<Event>) -> Option<Arc<Event>> {
        let evicted = if self.events.len() == self.capacity {
            self.evict()
        } else {
            None
        };
        let seq = self.end();
        if self.filter.matches(&event) {
            self.matches.push_back(seq);
        }
        self.events.push_back(event);
        evicted
    }

    fn evict(&mut self) -> Option<Arc<Event>> {
        let event = self.events.pop_front()?;
        if self.matches.front() == Some(&self.base) {
            self.matches.pop_front();
        }
        self.base += 1;
        self.scan_low = self.scan_low.max(self.base);
        Some(event)
    }

    /// Applies a new filter: new events are tested against it at once, held ones by [`EventLog::scan`].
    pub fn set_filter(&mut self, filter: EventFilter) {
        self.filter = filter;
        self.matches.clear();
        self.scan_low = self.end();
    }

    /// Held events not yet tested against the filter.
    pub fn unscanned(&self) -> u64 {
        self.scan_low - self.base
    }

    /// Seq from which held events have been tested against the filter (the matches are complete from
    /// here on).
    pub fn scanned_from(&self) -> Seq {
        self.scan_low
    }

    /// Tests up to `max` untested held events, newest first; returns how many it tested.
    pub fn scan(&mut self, max: usize) -> usize {
        let mut tested = 0;
        while tested < max && self.scan_low > self.base {
            let seq = self.scan_low - 1;
            let index = (seq - self.base) as usize;
            if self.filter.matches(&self.events[index]) {
                self.matches.push_front(seq);
            }
            self.scan_low = seq;
            tested += 1;
        }
        tested
    }

    /// Index in [`EventLog::matches`] of the first match with a seq of at least `seq`.
    pub fn match_index_from(&self, seq: Seq) -> usize {
        self.matches.partition_point(|&s| s < seq)
    }

    /// Index in [`EventLog::matches`] just past the last match with a seq of at most `seq`.
    pub fn match_index_after(&self, seq: Seq) -> usize {
        self.matches.partition_point(|&s| s <= seq)
    }

    /// The event of the `index`th match.
    pub fn match_event(&self, index: usize) -> Option<(Seq, &Arc<Event>)> {
        let seq = *self.matches.get(index)?;
        Some((seq, self.get(seq)?))
    }
}

/// Milliseconds since the epoch (negative before it).
pub fn epoch_millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
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
        let bin = epoch_millis(time).div_euclid(self.width_ms);
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
        let bin = epoch_millis(time).div_euclid(self.width_ms);
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
        let t = epoch_millis(time).clamp(start, end - 1);
        let col = (t - start) as i128 * columns as i128 / (end - start).max(1) as i128;
        Some((col as usize).min(columns.saturating_sub(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ev(kind: &str) -> Arc<Event> {
        Arc::new(Event::new(kind, serde_json::Value::Null))
    }

    #[test]
    fn ring_is_bounded_and_matches_follow_evictions() {
        let mut log = EventLog::new(3, EventFilter::parse("a").unwrap());
        for kind in ["a", "b", "a", "a", "b"] {
            log.push(ev(kind));
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.base(), 2);
        assert_eq!(log.matches().iter().copied().collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn new_filter_scans_newest_first_in_slices() {
        let mut log = EventLog::new(10, EventFilter::new());
        for kind in ["a", "b", "a", "b", "a"] {
            log.push(ev(kind));
        }
        log.set_filter(EventFilter::parse("a").unwrap());
        assert_eq!(log.scan(2), 2);
        assert_eq!(log.matches().iter().copied().collect::<Vec<_>>(), [4]);
        assert_eq!(log.unscanned(), 3);
        log.push(ev("a"));
        log.scan(usize::MAX);
        assert_eq!(
            log.matches().iter().copied().collect::<Vec<_>>(),
            [0, 2, 4, 5]
        );
        assert_eq!(log.unscanned(), 0);
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
