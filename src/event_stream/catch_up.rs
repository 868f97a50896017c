//! Reading a subscription without losing events silently: [`CatchUp`] wraps a subscriber and, when it
//! falls behind (its slow-consumer policy dropped events) or when it starts with a replay, fetches the
//! events it is missing from the bus's history, a page at a time, and delivers them in order, once.
//! Only what history no longer holds is lost, and each such loss is delivered in place as a
//! [`Loss`], with how many events and which ids.
//!
//! # Where a loss is delivered
//!
//! A [`Delivery::Lost`] for ids `first_id..=last_id` comes after every delivered event with an id
//! below `first_id` and before every delivered event with an id above `last_id`; events of that range
//! that were delivered may come on either side of it. Events are delivered in strictly increasing id
//! order.
//!
//! # Exactness
//!
//! For every [`CatchUp`], the events delivered plus the counts of the losses delivered equal the
//! matching events published after it was created (plus those its replay asked for, where history
//! can say how many there were). This is exact under [`SlowConsumerPolicy::DropOldest`] (the default),
//! where a subscriber only ever loses the oldest events of its queue, and for a filter that matches
//! everything under any policy (ids are then consecutive). Under `DropNewest` or `Block` with a filter,
//! the total stays exact but events history still held may be counted as lost instead of delivered.
//!
//! A replay that asks for events history no longer holds is a loss too (reason
//! [`LossReason::HistoryEvicted`]); with a filter, history cannot say how many of the missing events
//! matched it, so such a loss has no count.

use super::bus::{EventBus, Inner, Replay, ReplayGap, SlowConsumerPolicy};
use super::event::{Event, EventId};
use super::filter::EventFilter;
use super::subscriber::EventSubscriber;
use std::collections::VecDeque;
use std::sync::{Arc, Weak};

/// Why events were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LossReason {
    /// The reader fell behind and the bus keeps no history to catch up from.
    Lagged,
    /// The reader fell behind, or its replay asked for old events, and history no longer held them.
    HistoryEvicted,
    /// The bus was replaced by a new one (its server restarted) while the reader was away; what the
    /// old one published after the last event read is gone with it.
    BusRestarted,
    /// A reason this version does not know (sent by a newer server).
    Other,
}

impl LossReason {
    /// The name used on the wire and in messages: `lagged`, `history_evicted`, `bus_restarted`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::Lagged => "lagged",
            LossReason::HistoryEvicted => "history_evicted",
            LossReason::BusRestarted => "bus_restarted",
            LossReason::Other => "other",
        }
    }

    /// The reason with this wire name; [`LossReason::Other`] for a name this version does not know.
    pub fn from_name(name: &str) -> Self {
        match name {
            "lagged" => LossReason::Lagged,
            "history_evicted" => LossReason::HistoryEvicted,
            "bus_restarted" => LossReason::BusRestarted,
            _ => LossReason::Other,
        }
    }

    /// A few words for people: `fell behind`, `no longer in history`, `bus restarted`.
    pub fn describe(self) -> &'static str {
        match self {
            LossReason::Lagged => "fell behind",
            LossReason::HistoryEvicted => "no longer in history",
            LossReason::BusRestarted => "bus restarted",
            LossReason::Other => "lost",
        }
    }
}

impl std::fmt::Display for LossReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Events a reader did not get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Loss {
    /// How many; `None` when it cannot be known (a filtered replay of evicted history, a restarted bus).
    pub count: Option<u64>,
    /// The first id of the range the lost events are in, when known.
    pub first_id: Option<EventId>,
    /// The last id of that range, when known.
    pub last_id: Option<EventId>,
    /// Why they were lost.
    pub reason: LossReason,
}

impl std::fmt::Display for Loss {
    /// `12 events lost (#5 to #16, no longer in history)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.count {
            Some(1) => write!(f, "1 event lost")?,
            Some(n) => write!(f, "{n} events lost")?,
            None => write!(f, "events lost")?,
        }
        match (self.first_id, self.last_id) {
            (Some(a), Some(b)) if a == b => write!(f, " (#{a}, {})", self.reason.describe()),
            (Some(a), Some(b)) => write!(f, " (#{a} to #{b}, {})", self.reason.describe()),
            (Some(a), None) => write!(f, " (from #{a}, {})", self.reason.describe()),
            _ => write!(f, " ({})", self.reason.describe()),
        }
    }
}

/// What a [`CatchUp`] delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// An event.
    Event(Arc<Event>),
    /// Events that could not be delivered, at the place they were lost.
    Lost(Loss),
}

/// Most events read from history under the bus lock at once.
const PAGE: usize = 1024;

/// A range of ids still to read from history, before anything taken from the subscriber.
struct Fill {
    /// The first id of the range.
    start: EventId,
    /// The next id to read.
    cursor: EventId,
    /// The last id of the range.
    end: EventId,
    /// The filter history is read with (the subscriber's, or narrower for a replay from a time).
    filter: EventFilter,
    /// For a range the subscriber fell behind on: how many of its events the subscriber dropped (so
    /// the rest of the matching events in it are in `held`). `None` for a replay range.
    drops: Option<u64>,
    /// Events delivered from history in this range.
    recovered: u64,
    /// The first and last id found no longer kept, for a range whose loss is counted at its end.
    evicted: Option<(EventId, EventId)>,
    /// The last id delivered from this range.
    last_delivered: Option<EventId>,
    /// Read from history and not delivered yet.
    page: VecDeque<Arc<Event>>,
}

impl Fill {
    fn new(start: EventId, end: EventId, filter: EventFilter, drops: Option<u64>) -> Self {
        Self {
            start,
            cursor: start,
            end,
            filter,
            drops,
            recovered: 0,
            evicted: None,
            last_delivered: None,
            page: VecDeque::new(),
        }
    }
}

/// A subscription that catches up from history instead of losing events. A [`Delivery::Lost`] for
/// ids `first_id..=last_id` comes after every delivered event with an id below `first_id` and before
/// every delivered event above `last_id`; events are delivered in strictly increasing id order. Exact
/// under [`SlowConsumerPolicy::DropOldest`] (the default), and for a filter that matches everything
/// under any policy; under the others, with a filter, the total stays exact but events history
/// still held may be counted as lost.
///
/// ```
/// use ipckit::event_stream::{CatchUp, Delivery};
/// use ipckit::{Event, EventBus, EventBusConfig, EventFilter, Replay};
///
/// let bus = EventBus::new(EventBusConfig { subscriber_buffer: 8, ..Default::default() });
/// let mut reader = CatchUp::new(&bus, EventFilter::new(), Replay::None);
/// for i in 0..100 {
///     bus.publish(Event::new("tick", serde_json::json!(i)));
/// }
/// // The subscriber underneath kept 8 of the 100; the other 92 come from history, in order.
/// let mut ids = Vec::new();
/// while let Some(item) = reader.try_next() {
///     if let Delivery::Event(event) = item {
///         ids.push(event.id);
///     }
/// }
/// assert_eq!(ids, (1..=100).collect::<Vec<_>>());
/// ```
pub struct CatchUp {
    bus: Weak<Inner>,
    sub: EventSubscriber,
    filter: EventFilter,
    /// Every matching id below this is settled: delivered, or reported lost. 0 until a
    /// [`Replay::Last`] replay has said where it starts.
    next: EventId,
    /// Where a fall-behind range starts while `next` is 0.
    floor: EventId,
    /// The subscriber's drop count already accounted for.
    settled_drops: u64,
    fill: Option<Fill>,
    /// Taken from the subscriber and not delivered yet, in id order.
    held: VecDeque<Arc<Event>>,
    /// Losses to deliver before anything else.
    pending: VecDeque<Loss>,
    matches_all: bool,
    drop_oldest: bool,
    keeps_history: bool,
    gap: Option<ReplayGap>,
    scratch: Vec<Arc<Event>>,
}

impl std::fmt::Debug for CatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatchUp")
            .field("filter", &self.filter.to_string())
            .field("next", &self.next)
            .field("catching_up", &self.fill.is_some())
            .finish_non_exhaustive()
    }
}

impl CatchUp {
    /// Subscribes to `bus` with `filter`, starting with the kept history `replay` asks for. Replayed
    /// history is read a page at a time as it is delivered, never all at once (except for
    /// [`Replay::Last`], whose size the caller chose).
    pub fn new(bus: &EventBus, filter: EventFilter, replay: Replay) -> Self {
        let stats = bus.stats();
        let last = stats.published;
        let oldest = stats.oldest_id.unwrap_or(last + 1);
        let config = bus.config();
        // The subscriber covers everything after `last`: what is published between reading the
        // counters and subscribing comes as its replay, so nothing falls between the two.
        let sub = match replay {
            Replay::Last(n) => bus.subscribe_with_replay(filter.clone(), Replay::Last(n)),
            _ => bus.subscribe_with_replay(filter.clone(), Replay::FromId(last + 1)),
        };
        let range = |from: EventId, filter: EventFilter| Fill::new(from, last, filter, None);
        let mut gap = None;
        let fill = match replay {
            Replay::None | Replay::Last(_) => None,
            Replay::All => Some(range(oldest, filter.clone())),
            Replay::FromId(from) => {
                let from = from.max(1);
                if from < oldest && from <= last {
                    gap = Some(ReplayGap {
                        requested: from,
                        oldest_held: oldest,
                    });
                }
                Some(range(from, filter.clone()))
            }
            // On a bus with a data dir, from the first event that late (every earlier id is older).
            Replay::FromTime(t) => {
                let from = bus.first_id_since(t).map_or(oldest, |id| id.max(oldest));
                Some(range(from, filter.clone().since(t)))
            }
        };
        let fill = fill.filter(|f| f.cursor <= f.end);
        let next = match (&fill, replay) {
            (Some(f), _) => f.cursor,
            (None, Replay::Last(_)) => 0,
            (None, _) => last + 1,
        };
        let mut reader = Self {
            bus: Arc::downgrade(&bus.inner),
            sub,
            matches_all: filter.is_empty(),
            filter,
            next,
            floor: last + 1,
            settled_drops: 0,
            fill,
            held: VecDeque::new(),
            pending: VecDeque::new(),
            drop_oldest: config.slow_consumer == SlowConsumerPolicy::DropOldest,
            keeps_history: bus.keeps_history(),
            gap,
            scratch: Vec::new(),
        };
        // The first page is read now, with the subscription, so a small replay is what history held
        // when it was asked for, not what is left of it when the reader first reads.
        if let Some(mut fill) = reader.fill.take() {
            reader.read_page(&mut fill);
            reader.fill = Some(fill);
        }
        reader
    }

    /// When the replay asked for ids history no longer held (they are also delivered as a
    /// [`Delivery::Lost`]).
    pub fn replay_gap(&self) -> Option<ReplayGap> {
        self.gap
    }

    /// The filter.
    pub fn filter(&self) -> &EventFilter {
        &self.filter
    }

    /// Whether it is reading history now rather than live events.
    pub fn is_catching_up(&self) -> bool {
        self.fill.is_some()
    }

    /// Losses the bus subscriber underneath has had so far (each is then either caught up from
    /// history or delivered as a loss).
    pub fn subscriber_dropped(&self) -> u64 {
        self.sub.dropped()
    }

    /// Waits until something can be delivered, then moves up to `max` items into `out` (at least one);
    /// `false` once the bus is gone and everything has been delivered.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it waits only while it has nothing to deliver, and takes events from the
    /// subscriber only when they are ready.
    pub async fn recv_batch(&mut self, out: &mut Vec<Delivery>, max: usize) -> bool {
        let max = max.max(1);
        loop {
            if self.deliver(out, max) > 0 {
                return true;
            }
            let count = self.sub.recv_batch_counted(&mut self.scratch, PAGE).await;
            match count {
                Some(count) => self.accept(count),
                None => {
                    self.settle_close();
                    if self.deliver(out, max) == 0 {
                        return false;
                    }
                    return true;
                }
            }
        }
    }

    /// Moves up to `max` items that can be delivered now into `out`; returns how many.
    pub fn try_recv_batch(&mut self, out: &mut Vec<Delivery>, max: usize) -> usize {
        let max = max.max(1);
        let mut n = self.deliver(out, max);
        while n < max {
            let count = self.sub.try_recv_batch_counted(&mut self.scratch, PAGE);
            if count.taken == 0 {
                break;
            }
            self.accept(count);
            n += self.deliver(out, max - n);
        }
        n
    }

    /// The next item if one can be delivered now.
    pub fn try_next(&mut self) -> Option<Delivery> {
        let mut out = Vec::with_capacity(1);
        self.try_recv_batch(&mut out, 1);
        out.pop()
    }

    /// Takes a batch the subscriber gave (in `scratch`): holds its new events and, if the subscriber
    /// dropped events before it, opens a range to fill from history.
    fn accept(&mut self, count: super::subscriber::BatchCount) {
        let mut batch = std::mem::take(&mut self.scratch);
        if count.live && count.dropped > self.settled_drops {
            let drops = count.dropped - self.settled_drops;
            self.settled_drops = count.dropped;
            let start = self
                .settled_next()
                .max(self.held.back().map_or(0, |e| e.id + 1));
            // Under DropOldest everything dropped came before this batch; under the other policies it
            // may also be among or after its events, which are then re-read from history.
            let end = match (
                self.drop_oldest || self.matches_all,
                batch.first(),
                batch.last(),
            ) {
                (true, Some(first), _) => first.id.saturating_sub(1),
                (false, _, Some(last)) => last.id,
                _ => start.saturating_sub(1),
            };
            if !self.drop_oldest && !self.matches_all {
                // The batch's events are all in the range: history has them, or they are the only copies.
                self.held.extend(batch.drain(..));
            }
            self.queue_fill(start, end, drops);
        }
        let floor = self.held.back().map_or(self.next, |e| e.id + 1);
        self.held
            .extend(batch.drain(..).filter(|event| event.id >= floor));
        self.scratch = batch;
    }

    /// Where the next event must start: `next`, or the floor before a [`Replay::Last`] has delivered.
    fn settled_next(&self) -> EventId {
        if self.next == 0 {
            self.floor
        } else {
            self.next
        }
    }

    /// Queues a fall-behind range `start..=end` holding `drops` dropped events. Ranges queue behind a
    /// range still being filled (they are merged: its drops add up).
    fn queue_fill(&mut self, start: EventId, end: EventId, drops: u64) {
        if let Some(fill) = &mut self.fill {
            fill.end = fill.end.max(end);
            fill.drops = Some(fill.drops.unwrap_or(0) + drops);
            return;
        }
        if end < start {
            // Nothing to read back: the drops cannot be placed (only possible under the policies
            // other than DropOldest with a filter); said at once.
            self.pending.push_back(Loss {
                count: Some(drops),
                first_id: None,
                last_id: None,
                reason: self.lag_reason(),
            });
            return;
        }
        self.fill = Some(Fill::new(start, end, self.filter.clone(), Some(drops)));
    }

    fn lag_reason(&self) -> LossReason {
        if self.keeps_history {
            LossReason::HistoryEvicted
        } else {
            LossReason::Lagged
        }
    }
}

impl CatchUp {
    /// Moves up to `max` items that need no waiting into `out`: losses, then a range being filled
    /// from history (merged with held events that fall in it), then held events.
    fn deliver(&mut self, out: &mut Vec<Delivery>, max: usize) -> usize {
        let before = out.len();
        while out.len() - before < max {
            if let Some(loss) = self.pending.pop_front() {
                out.push(Delivery::Lost(loss));
                continue;
            }
            if self.fill.is_some() {
                self.fill_one(out);
                continue;
            }
            match self.held.pop_front() {
                Some(event) => self.push_event(out, event),
                None => break,
            }
        }
        out.len() - before
    }

    fn push_event(&mut self, out: &mut Vec<Delivery>, event: Arc<Event>) {
        if event.id >= self.next {
            self.next = event.id + 1;
            out.push(Delivery::Event(event));
        }
    }

    /// One step of filling: reads a page if needed, then delivers one event or a loss, or finishes.
    fn fill_one(&mut self, out: &mut Vec<Delivery>) {
        let Some(mut fill) = self.fill.take() else {
            return;
        };
        if fill.page.is_empty() && fill.cursor <= fill.end {
            self.read_page(&mut fill);
            if !self.pending.is_empty() {
                self.fill = Some(fill);
                return;
            }
        }
        let from_page = fill.page.front().map(|e| e.id);
        let from_held = self.held.front().map(|e| e.id).filter(|&id| id <= fill.end);
        let event = match (from_page, from_held) {
            (Some(p), Some(h)) if h < p => self.held.pop_front(),
            (Some(p), Some(h)) if h == p => {
                fill.page.pop_front();
                self.held.pop_front()
            }
            (Some(_), _) => {
                fill.recovered += 1;
                fill.page.pop_front()
            }
            (None, Some(_)) if fill.cursor > fill.end => self.held.pop_front(),
            (None, _) if fill.cursor <= fill.end => {
                // More to read.
                self.fill = Some(fill);
                return;
            }
            (None, _) => {
                self.finish(fill);
                return;
            }
        };
        if let Some(event) = event {
            fill.last_delivered = Some(event.id);
            self.push_event(out, event);
        }
        self.fill = Some(fill);
    }

    /// Reads the next page of `fill`'s range; ids history no longer holds become losses (or, for a
    /// filtered fall-behind range, are noted and counted when the range ends).
    fn read_page(&mut self, fill: &mut Fill) {
        let (events, oldest) = match self.bus.upgrade() {
            Some(inner) => {
                EventBus { inner }.history_page(&fill.filter, fill.cursor..=fill.end, PAGE)
            }
            // The bus is gone, and its history with it.
            None => (Vec::new(), None),
        };
        let mut events = events;
        let held_from = oldest.unwrap_or(EventId::MAX);
        if held_from > fill.cursor {
            let evicted_end = held_from.saturating_sub(1).min(fill.end);
            self.evicted(fill, fill.cursor, evicted_end);
            fill.cursor = evicted_end.saturating_add(1);
        }
        let full = events.len() >= PAGE;
        if fill.filter.is_empty() && fill.cursor <= fill.end {
            // Every id matches and ids are given without gaps, so a jump in what history gives back
            // is a loss too (a damaged range of a data dir, an event history could not keep). It is
            // said when reading reaches it, after every event before it.
            let first = events.first().map_or(fill.end.saturating_add(1), |e| e.id);
            if first > fill.cursor {
                self.evicted(fill, fill.cursor, (first - 1).min(fill.end));
            }
            let jump = events
                .windows(2)
                .position(|pair| pair[1].id != pair[0].id.saturating_add(1));
            let last = match jump {
                Some(at) => {
                    events.truncate(at + 1);
                    Some(events[at].id)
                }
                None if !full => events.last().map(|e| e.id).filter(|&id| id < fill.end),
                None => None,
            };
            if let Some(last) = last {
                fill.cursor = last + 1;
                fill.page.extend(events);
                return;
            }
        }
        fill.cursor = match events.last() {
            Some(last) if full => last.id + 1,
            _ => fill.end.saturating_add(1),
        };
        fill.page.extend(events);
    }

    /// Ids `first..=last` of `fill`'s range are no longer kept.
    fn evicted(&mut self, fill: &mut Fill, first: EventId, last: EventId) {
        let reason = if fill.drops.is_some() {
            self.lag_reason()
        } else {
            LossReason::HistoryEvicted
        };
        if fill.filter.is_empty() {
            // Every id matches: the ones not held from the subscriber are lost, and no other.
            let held = self
                .held
                .iter()
                .filter(|e| (first..=last).contains(&e.id))
                .count() as u64;
            let count = (last - first + 1).saturating_sub(held);
            if count > 0 {
                self.pending.push_back(Loss {
                    count: Some(count),
                    first_id: Some(first),
                    last_id: Some(last),
                    reason,
                });
            }
        } else if fill.drops.is_some() {
            // Counted from the subscriber's drops when the range ends.
            fill.evicted = Some(match fill.evicted {
                Some((a, _)) => (a, last),
                None => (first, last),
            });
        } else {
            // A filtered replay: history cannot say how many of these matched.
            self.pending.push_back(Loss {
                count: None,
                first_id: Some(first),
                last_id: Some(last),
                reason,
            });
        }
    }

    /// The range is done: a filtered fall-behind range reports what its drops did not recover.
    fn finish(&mut self, fill: Fill) {
        self.next = self.settled_next().max(fill.end.saturating_add(1));
        let Some(drops) = fill.drops else {
            return;
        };
        if fill.filter.is_empty() {
            return;
        }
        let lost = drops.saturating_sub(fill.recovered);
        if lost == 0 {
            return;
        }
        let (first, last) = match fill.evicted {
            Some((first, last)) => (
                first,
                fill.last_delivered
                    .filter(|&id| id > first)
                    .map_or(last, |id| id.max(last)),
            ),
            None => (fill.start, fill.end),
        };
        self.pending.push_back(Loss {
            count: Some(lost),
            first_id: Some(first),
            last_id: Some(last),
            reason: self.lag_reason(),
        });
    }

    /// The bus is gone and the subscriber empty: drops not yet placed are said.
    fn settle_close(&mut self) {
        let dropped = self.sub.dropped();
        if dropped > self.settled_drops {
            let first = self.settled_next();
            self.pending.push_back(Loss {
                count: Some(dropped - self.settled_drops),
                first_id: Some(first),
                last_id: None,
                reason: self.lag_reason(),
            });
            self.settled_drops = dropped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_stream::EventBusConfig;
    use serde_json::json;

    fn bus(buffer: usize, history: usize) -> EventBus {
        EventBus::new(EventBusConfig {
            subscriber_buffer: buffer,
            history_size: history,
            ..Default::default()
        })
    }

    fn drain(reader: &mut CatchUp) -> (Vec<EventId>, Vec<Loss>) {
        let (mut ids, mut losses) = (Vec::new(), Vec::new());
        let mut out = Vec::new();
        while reader.try_recv_batch(&mut out, 100) > 0 {
            for item in out.drain(..) {
                match item {
                    Delivery::Event(e) => ids.push(e.id),
                    Delivery::Lost(l) => losses.push(l),
                }
            }
        }
        (ids, losses)
    }

    #[test]
    fn a_reader_that_fell_behind_gets_everything_history_holds_in_order() {
        let bus = bus(8, 10_000);
        let mut reader = CatchUp::new(&bus, EventFilter::new(), Replay::None);
        for i in 0..5000 {
            bus.publish(Event::new("a", json!(i)));
        }
        let (ids, losses) = drain(&mut reader);
        assert_eq!(ids, (1..=5000).collect::<Vec<_>>());
        assert!(losses.is_empty(), "{losses:?}");
        assert!(
            reader.subscriber_dropped() > 0,
            "the subscriber itself did drop"
        );
    }

    #[test]
    fn what_history_no_longer_holds_is_one_exact_loss_in_place() {
        let bus = bus(8, 100);
        let mut reader = CatchUp::new(&bus, EventFilter::new(), Replay::None);
        for i in 0..1000 {
            bus.publish(Event::new("a", json!(i)));
        }
        let (ids, losses) = drain(&mut reader);
        // History holds 901..=1000; the subscriber 993..=1000.
        assert_eq!(ids, (901..=1000).collect::<Vec<_>>());
        assert_eq!(
            losses,
            [Loss {
                count: Some(900),
                first_id: Some(1),
                last_id: Some(900),
                reason: LossReason::HistoryEvicted
            }]
        );
    }

    #[test]
    fn a_filtered_reader_counts_its_own_losses_exactly() {
        let bus = bus(4, 50);
        let filter = EventFilter::new().event_type("even");
        let mut reader = CatchUp::new(&bus, filter, Replay::None);
        for i in 0..400u64 {
            let kind = if i % 2 == 0 { "even" } else { "odd" };
            bus.publish(Event::new(kind, json!(i)));
        }
        let (ids, losses) = drain(&mut reader);
        // 200 matching; history holds ids 351..=400, of which 25 are even.
        assert_eq!(
            ids,
            (351..=400).filter(|id| id % 2 == 1).collect::<Vec<_>>()
        );
        let lost: u64 = losses.iter().map(|l| l.count.unwrap()).sum();
        assert_eq!(ids.len() as u64 + lost, 200);
        assert!(losses
            .iter()
            .all(|l| l.first_id == Some(1) && l.last_id >= Some(349)));
    }

    #[test]
    fn a_replay_is_read_a_page_at_a_time_and_a_gap_is_a_loss() {
        let bus = bus(16, 3000);
        for i in 0..5000 {
            bus.publish(Event::new("a", json!(i)));
        }
        let mut reader = CatchUp::new(&bus, EventFilter::new(), Replay::FromId(1));
        assert_eq!(
            reader.replay_gap(),
            Some(ReplayGap {
                requested: 1,
                oldest_held: 2001
            })
        );
        for i in 0..10 {
            bus.publish(Event::new("b", json!(i)));
        }
        // The ten new events pushed ten more out of history, but the first page (2001..=3024) was
        // read when subscribing; the later pages are still held.
        let (ids, losses) = drain(&mut reader);
        assert!(ids.iter().copied().eq(2001..=5010), "{:?}", ids.first());
        assert_eq!(losses.len(), 1);
        assert_eq!(losses[0].count, Some(2000));
        assert_eq!(
            (losses[0].first_id, losses[0].last_id),
            (Some(1), Some(2000))
        );
    }

    #[test]
    fn replay_all_and_last_then_live() {
        let bus = bus(16, 100);
        for i in 0..50 {
            bus.publish(Event::new("a", json!(i)));
        }
        let mut all = CatchUp::new(&bus, EventFilter::new(), Replay::All);
        let mut last = CatchUp::new(&bus, EventFilter::new(), Replay::Last(3));
        bus.publish(Event::new("a", json!("live")));
        let (ids, losses) = drain(&mut all);
        assert_eq!(ids, (1..=51).collect::<Vec<_>>());
        assert!(losses.is_empty());
        let (ids, _) = drain(&mut last);
        assert_eq!(ids, [48, 49, 50, 51]);
    }
}
