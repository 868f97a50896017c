//! Where the monitor missed events: "⚠ N events lost" markers, each at a place in the event log.
//!
//! Markers are kept apart from the event ring, as a list sorted by place: a marker at [`Seq`] `s` sits
//! between the events `s - 1` and `s` (before the event that arrived after the loss). It leaves with
//! the events around it: it stays while the event after it is held (at the top of history once the
//! events before it are gone, saying why history starts with a gap), and leaves when that one does.
//! A marker at the live edge waits for the events after it. Several losses at one place with the same reason are one marker, so
//! the list holds at most a few markers per held event, however a source repeats itself.

use super::log::Seq;
use super::source::{Loss, LossReason};
use std::collections::VecDeque;

/// Why, in the few words of a loss row: "⚠ 12 events lost (monitor fell behind)".
pub(crate) fn reason_short(reason: LossReason) -> &'static str {
    match reason {
        LossReason::Lagged => "monitor fell behind",
        LossReason::HistoryEvicted => "no longer in the bus's history",
        LossReason::BusRestarted => "bus restarted",
        LossReason::Other => "cause unknown",
    }
}

/// Why, in a sentence, for the detail view of a loss row.
pub(crate) fn reason_long(reason: LossReason) -> &'static str {
    match reason {
        LossReason::Lagged => "the monitor fell behind and the bus discarded events queued for it",
        LossReason::HistoryEvicted => {
            "missed while behind or away, and no longer in the bus's history when fetched"
        }
        LossReason::BusRestarted => {
            "the bus restarted; what it published after the monitor last heard from it is gone"
        }
        LossReason::Other => "the source did not say",
    }
}

/// One marker: a loss at a place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    /// The marker sits just before the event with this seq.
    pub(crate) at: Seq,
    /// Markers are numbered in arrival order, from 0, which is also their order in the list.
    pub(crate) n: u64,
    /// What was lost.
    pub(crate) loss: Loss,
}

/// The markers, sorted by place (and by number at one place), with the total this monitor lost.
#[derive(Debug, Clone, Default)]
pub(crate) struct LossMarks {
    marks: VecDeque<Mark>,
    next: u64,
    total: u64,
}

impl LossMarks {
    /// Records `loss` at `at`, which is at or after every place recorded before (the log's end).
    pub(crate) fn record(&mut self, at: Seq, loss: Loss) {
        self.total = self.total.saturating_add(loss.count);
        let same = self
            .marks
            .iter_mut()
            .rev()
            .take_while(|m| m.at == at)
            .find(|m| m.loss.reason == loss.reason);
        if let Some(mark) = same {
            let merged = &mut mark.loss;
            merged.count = merged.count.saturating_add(loss.count);
            merged.first_id = match (merged.first_id, loss.first_id) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            };
            merged.last_id = match (merged.last_id, loss.last_id) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            return;
        }
        let at = self.marks.back().map_or(at, |last| at.max(last.at));
        self.marks.push_back(Mark {
            at,
            n: self.next,
            loss,
        });
        self.next += 1;
    }

    /// Drops the markers whose event after them left the log, now held from `base`.
    pub(crate) fn evict(&mut self, base: Seq) {
        while self.marks.front().is_some_and(|m| m.at < base) {
            self.marks.pop_front();
        }
    }

    /// Events this monitor lost since it started (markers that left history included).
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Markers held.
    pub(crate) fn len(&self) -> usize {
        self.marks.len()
    }

    /// The `index`th marker.
    pub(crate) fn get(&self, index: usize) -> Option<&Mark> {
        self.marks.get(index)
    }

    /// Index of the first marker placed at or after `seq`.
    pub(crate) fn index_from(&self, seq: Seq) -> usize {
        self.marks.partition_point(|m| m.at < seq)
    }

    /// Index just past the last marker placed at or before `seq`.
    pub(crate) fn index_after(&self, seq: Seq) -> usize {
        self.marks.partition_point(|m| m.at <= seq)
    }

    /// Index of the marker numbered `n`, or of the first one after it.
    pub(crate) fn index_of(&self, n: u64) -> usize {
        self.marks.partition_point(|m| m.n < n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(count: u64, first: u64, reason: LossReason) -> Loss {
        Loss {
            count,
            first_id: Some(first),
            last_id: Some(first + count - 1),
            reason,
        }
    }

    #[test]
    fn losses_at_one_place_with_one_reason_are_one_marker() {
        let mut marks = LossMarks::default();
        marks.record(5, loss(3, 10, LossReason::Lagged));
        marks.record(5, loss(2, 13, LossReason::Lagged));
        marks.record(5, loss(4, 20, LossReason::HistoryEvicted));
        marks.record(5, loss(1, 15, LossReason::Lagged));
        marks.record(7, loss(1, 30, LossReason::Lagged));
        assert_eq!(marks.len(), 3);
        assert_eq!(marks.total(), 11);
        let first = &marks.get(0).unwrap().loss;
        assert_eq!(
            (first.count, first.first_id, first.last_id),
            (6, Some(10), Some(15))
        );
        assert_eq!(marks.index_from(6), 2);
        assert_eq!(marks.index_after(5), 2);
        assert_eq!(marks.index_of(2), 2);
    }

    #[test]
    fn a_marker_leaves_with_the_event_after_it() {
        let mut marks = LossMarks::default();
        marks.record(0, loss(1, 1, LossReason::Other));
        marks.record(3, loss(1, 5, LossReason::Other));
        marks.evict(0);
        assert_eq!(marks.len(), 2);
        marks.evict(3);
        assert_eq!(marks.len(), 1, "event 0 left; event 3 is still held");
        marks.evict(4);
        assert_eq!(marks.len(), 0);
        assert_eq!(marks.total(), 2, "the count stays");
    }
}
