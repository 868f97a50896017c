//! The receiving end: [`EventSubscriber`], its queue and counters, blocking, timed and async receive.

use super::bus::{Core, ReplayGap, SlowConsumerPolicy, State};
use super::event::Event;
use super::filter::EventFilter;
use super::sync::{Condvar, Mutex, MutexGuard};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Why [`EventSubscriber::recv_timeout`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// No event arrived in time; more may come.
    #[error("timed out waiting for an event")]
    Timeout,
    /// The bus is gone and every queued event has been read.
    #[error("the event bus is closed")]
    Closed,
}

impl RecvTimeoutError {
    /// Whether the wait timed out (as opposed to the bus closing).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// Whether the bus is gone.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

/// The queue and counters of one subscriber. They live in the bus's table, under the bus's lock, so a
/// publish delivers to every subscriber under the one lock it already holds.
pub(crate) struct SubState {
    pub(crate) shared: Arc<Shared>,
    /// Every event the bus finds this subscriber for through its index matches the filter, so
    /// publishing need not test it.
    pub(crate) index_implies_match: bool,
    /// Replayed history, read before `queue`; not bounded by the buffer.
    backlog: VecDeque<Arc<Event>>,
    /// Live events, bounded by the buffer (except while `Block` publishers wait for room).
    pub(crate) queue: VecDeque<Arc<Event>>,
    /// Live events ever pushed and ever taken out of `queue` (read, dropped or withdrawn).
    pushed: u64,
    pub(crate) taken: u64,
    pub(crate) delivered: u64,
    pub(crate) dropped: u64,
    pub(crate) closed: bool,
    readers_waiting: u32,
    pub(crate) publishers_waiting: u32,
    waker: Option<Waker>,
}

impl SubState {
    pub(crate) fn new(shared: Arc<Shared>, backlog: VecDeque<Arc<Event>>) -> Self {
        Self {
            index_implies_match: shared.filter.index_implies_match(),
            shared,
            backlog,
            queue: VecDeque::new(),
            pushed: 0,
            taken: 0,
            delivered: 0,
            dropped: 0,
            closed: false,
            readers_waiting: 0,
            publishers_waiting: 0,
            waker: None,
        }
    }

    fn pop(&mut self) -> Option<Arc<Event>> {
        let event = match self.backlog.pop_front() {
            Some(event) => event,
            None => {
                let event = self.queue.pop_front()?;
                self.taken += 1;
                event
            }
        };
        self.delivered += 1;
        Some(event)
    }

    /// Takes up to `max` events, from the backlog if it has any, else from the live queue.
    fn take_counted(&mut self, out: &mut Vec<Arc<Event>>, max: usize) -> BatchCount {
        let live = self.backlog.is_empty();
        let source = if live {
            &mut self.queue
        } else {
            &mut self.backlog
        };
        let n = source.len().min(max);
        out.extend(source.drain(..n));
        if live {
            self.taken += n as u64;
        }
        self.delivered += n as u64;
        self.made_room(live && n > 0);
        BatchCount {
            taken: n,
            live,
            dropped: self.dropped,
        }
    }

    /// Events waiting to be read.
    pub(crate) fn queued(&self) -> usize {
        self.backlog.len() + self.queue.len()
    }

    /// Queues `event` under `policy`, waking a waiting reader (a waiting task's waker goes into
    /// `wakers`, to be woken once the bus lock is released). Returns the event's sequence number when
    /// the publisher must wait for room (`Block` with a full buffer).
    #[inline]
    pub(crate) fn push(
        &mut self,
        event: &Arc<Event>,
        buffer: usize,
        policy: SlowConsumerPolicy,
        wakers: &mut Vec<Waker>,
    ) -> Option<u64> {
        if self.closed {
            return None;
        }
        let mut ticket = None;
        if self.queue.len() >= buffer {
            match policy {
                SlowConsumerPolicy::DropOldest => {
                    let evicted = self.queue.pop_front();
                    self.taken += 1;
                    self.dropped += 1;
                    drop(evicted);
                }
                SlowConsumerPolicy::DropNewest => {
                    self.dropped += 1;
                    return None;
                }
                SlowConsumerPolicy::Block => ticket = Some(self.pushed),
            }
        }
        self.queue.push_back(Arc::clone(event));
        self.pushed += 1;
        if let Some(waker) = self.waker.take() {
            wakers.push(waker);
        }
        if self.readers_waiting > 0 {
            self.shared.readable.notify_one();
        }
        ticket
    }

    /// Marks the subscriber closed and wakes everyone waiting on it.
    pub(crate) fn close(&mut self, wakers: &mut Vec<Waker>) {
        self.closed = true;
        wakers.extend(self.waker.take());
        self.shared.readable.notify_all();
        self.shared.writable.notify_all();
    }

    /// After a read: wakes `Block` publishers if it made room.
    fn made_room(&self, took: bool) {
        if took && self.publishers_waiting > 0 {
            self.shared.writable.notify_all();
        }
    }
}

/// A batch taken by [`EventSubscriber::try_recv_batch_counted`] or
/// [`EventSubscriber::recv_batch_counted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchCount {
    /// How many events were moved out.
    pub taken: usize,
    /// Whether they came from the live queue; `false` for replayed history (and events a
    /// [`TryIter`] gave back), before which nothing is ever dropped.
    pub live: bool,
    /// Events this subscriber had lost in all when the batch was taken.
    pub dropped: u64,
}

/// The event as an owned value: moved out when this was the last reference, copied otherwise. The count
/// is read first so that the usual case (history still holds the event) costs one atomic decrement, not a
/// failed exchange as well.
#[inline]
fn into_owned(event: Arc<Event>) -> Event {
    if Arc::strong_count(&event) == 1 {
        Arc::unwrap_or_clone(event)
    } else {
        Event::clone(&event)
    }
}

/// What never changes about a subscriber, and what its readers and `Block` publishers wait on (with
/// the bus's lock).
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) filter: EventFilter,
    /// Readers wait here for events.
    pub(crate) readable: Condvar,
    /// `Block` publishers wait here for room.
    pub(crate) writable: Condvar,
}

impl Shared {
    pub(crate) fn new(id: u64, filter: EventFilter) -> Self {
        Self {
            id,
            filter,
            readable: Condvar::new(),
            writable: Condvar::new(),
        }
    }
}

/// Receives the events of one subscription, in id order. Dropping it unsubscribes.
///
/// The owned-[`Event`] methods (`recv`, `try_recv`, ...) copy each event once, on the reader's thread;
/// the `_arc` methods, [`EventSubscriber::recv_async`] and [`EventSubscriber::into_stream`] share it.
pub struct EventSubscriber {
    shared: Arc<Shared>,
    core: Arc<Core>,
    /// Where this subscriber's queue is in the bus's table.
    key: usize,
    gap: Option<ReplayGap>,
    /// The reader's half of a double buffer: a batch read swaps it with the queue under the lock, so
    /// the publisher is held up for a swap, not for the whole batch.
    spare: Mutex<VecDeque<Arc<Event>>>,
}

impl EventSubscriber {
    pub(crate) fn new(
        shared: Arc<Shared>,
        core: Arc<Core>,
        key: usize,
        gap: Option<ReplayGap>,
    ) -> Self {
        Self {
            shared,
            core,
            key,
            gap,
            spare: Mutex::new(VecDeque::new()),
        }
    }

    /// This subscriber's queue and counts in the locked bus; `None` only if it is no longer in the table,
    /// which cannot happen while `self` exists (it is removed when `self` drops).
    #[inline]
    fn state<'g>(&self, bus: &'g mut MutexGuard<'_, State>) -> Option<&'g mut SubState> {
        bus.sub_mut(self.key, self.shared.id)
    }

    /// Where this subscriber's queue is in the bus's table.
    #[cfg(test)]
    pub(crate) fn key(&self) -> usize {
        self.key
    }

    /// Runs `f` on this subscriber's state under the bus lock.
    fn with_state<R>(&self, default: R, f: impl FnOnce(&mut SubState) -> R) -> R {
        let mut bus = self.core.lock();
        self.state(&mut bus).map_or(default, f)
    }

    /// The subscriber's id on its bus.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The filter this subscriber was created with.
    pub fn filter(&self) -> &EventFilter {
        &self.shared.filter
    }

    /// When a replay asked for events history no longer held: what was asked and where it started.
    pub fn replay_gap(&self) -> Option<ReplayGap> {
        self.gap
    }

    /// Events the slow-consumer policy discarded for this subscriber so far.
    pub fn dropped(&self) -> u64 {
        self.with_state(0, |s| s.dropped)
    }

    /// Events read so far.
    pub fn delivered(&self) -> u64 {
        self.with_state(0, |s| s.delivered)
    }

    /// Events waiting to be read.
    pub fn len(&self) -> usize {
        self.with_state(0, |s| s.queued())
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the next event; `None` once the bus is gone and the queue is empty.
    pub fn recv(&self) -> Option<Event> {
        self.recv_arc().map(into_owned)
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<Event> {
        self.try_recv_arc().map(into_owned)
    }

    /// Waits up to `timeout` for the next event.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] if none came in time, [`RecvTimeoutError::Closed`] if the bus is gone.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        self.recv_timeout_arc(timeout).map(into_owned)
    }

    /// A blocking iterator: ends when the bus is gone.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        std::iter::from_fn(move || self.recv())
    }

    /// An iterator over the events queued now.
    ///
    /// It takes events from the queue a few at a time (1, 2, 4, … up to 64), one lock per batch rather
    /// than one per event. Events it took but had not handed out when it is dropped go back to the front
    /// of the queue, so the next read gets them.
    pub fn try_iter(&self) -> TryIter<'_> {
        TryIter {
            subscriber: self,
            taken: Vec::new(),
            next_batch: 1,
        }
    }

    /// Waits for the next event, shared with history and other subscribers.
    pub fn recv_arc(&self) -> Option<Arc<Event>> {
        self.wait(None).ok()
    }

    /// The next queued event, shared.
    pub fn try_recv_arc(&self) -> Option<Arc<Event>> {
        self.with_state(None, |s| {
            let event = s.pop();
            s.made_room(event.is_some());
            event
        })
    }

    /// Waits up to `timeout` for the next event, shared.
    ///
    /// # Errors
    ///
    /// As [`EventSubscriber::recv_timeout`].
    pub fn recv_timeout_arc(&self, timeout: Duration) -> Result<Arc<Event>, RecvTimeoutError> {
        self.wait(Some(Instant::now() + timeout))
    }

    /// Moves up to `max` queued events into `out` under one lock; returns how many.
    pub fn try_recv_batch(&self, out: &mut Vec<Arc<Event>>, max: usize) -> usize {
        let mut spare = self.spare.lock();
        let mut bus = self.core.lock();
        let Some(state) = self.state(&mut bus) else {
            return 0;
        };
        let queued = state.queue.len();
        if state.backlog.is_empty() && queued > 0 && queued <= max {
            std::mem::swap(&mut state.queue, &mut *spare);
            let n = queued as u64;
            state.taken += n;
            state.delivered += n;
            state.made_room(true);
            drop(bus);
            out.extend(spare.drain(..));
            return queued;
        }
        let mut n = 0;
        while n < max {
            match state.pop() {
                Some(event) => out.push(event),
                None => break,
            }
            n += 1;
        }
        state.made_room(n > 0);
        n
    }

    /// Like [`EventSubscriber::try_recv_batch`], but never mixes replayed events with live ones in one
    /// batch, and also says, read under the same lock, how many events this subscriber has lost so far.
    ///
    /// Under [`SlowConsumerPolicy::DropOldest`] a subscriber only ever loses the oldest events of its live
    /// queue, so every event counted in [`BatchCount::dropped`] came before the first event of a live
    /// batch: a reader that compares the count with the one of its previous batch knows exactly where
    /// events are missing (between the last event it read and the first of this batch).
    pub fn try_recv_batch_counted(&self, out: &mut Vec<Arc<Event>>, max: usize) -> BatchCount {
        self.with_state(BatchCount::default(), |state| state.take_counted(out, max))
    }

    /// [`EventSubscriber::try_recv_batch_counted`] that waits, registering `cx`'s waker, while nothing is
    /// queued; `None` once the bus is gone and the queue is empty.
    pub fn poll_recv_batch_counted(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Arc<Event>>,
        max: usize,
    ) -> Poll<Option<BatchCount>> {
        self.with_state(Poll::Ready(None), |state| {
            let count = state.take_counted(out, max.max(1));
            if count.taken > 0 {
                return Poll::Ready(Some(count));
            }
            if state.closed {
                return Poll::Ready(None);
            }
            match &state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => state.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }

    /// Waits for events and moves up to `max` of them into `out`, as
    /// [`EventSubscriber::try_recv_batch_counted`] does; `None` once the bus is gone and the queue is
    /// empty. Works with any async runtime.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: events are taken only when the future completes.
    pub fn recv_batch_counted<'a>(
        &'a self,
        out: &'a mut Vec<Arc<Event>>,
        max: usize,
    ) -> impl Future<Output = Option<BatchCount>> + 'a {
        std::future::poll_fn(move |cx| self.poll_recv_batch_counted(cx, out, max))
    }

    /// Waits for the next event without blocking the thread; `None` once the bus is gone and the queue
    /// is empty. Works with any async runtime.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an event is taken from the queue only when the future completes.
    pub fn recv_async(&self) -> RecvFuture<'_> {
        RecvFuture { subscriber: self }
    }

    /// Turns the subscriber into a [`futures_core::Stream`] of shared events.
    pub fn into_stream(self) -> EventStream {
        EventStream { subscriber: self }
    }

    /// Polls for the next event, registering `cx`'s waker when there is none.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Arc<Event>>> {
        self.with_state(Poll::Ready(None), |state| {
            if let Some(event) = state.pop() {
                state.made_room(true);
                return Poll::Ready(Some(event));
            }
            if state.closed {
                return Poll::Ready(None);
            }
            match &state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => state.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<Arc<Event>, RecvTimeoutError> {
        let mut bus = self.core.lock();
        loop {
            let Some(state) = self.state(&mut bus) else {
                return Err(RecvTimeoutError::Closed);
            };
            if let Some(event) = state.pop() {
                state.made_room(true);
                return Ok(event);
            }
            if state.closed {
                return Err(RecvTimeoutError::Closed);
            }
            state.readers_waiting += 1;
            let timed_out = match deadline {
                Some(deadline) => self
                    .shared
                    .readable
                    .wait_until(&mut bus, deadline)
                    .timed_out(),
                None => {
                    self.shared.readable.wait(&mut bus);
                    false
                }
            };
            let Some(state) = self.state(&mut bus) else {
                return Err(RecvTimeoutError::Closed);
            };
            state.readers_waiting -= 1;
            if timed_out {
                if let Some(event) = state.pop() {
                    state.made_room(true);
                    return Ok(event);
                }
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }

    /// Puts events a reader took but did not hand out back at the front of the queue, in their order
    /// (`taken` holds them newest first), and uncounts them as delivered. Empties `taken`.
    fn give_back(&self, taken: &mut Vec<Arc<Event>>) {
        let mut bus = self.core.lock();
        if let Some(state) = self.state(&mut bus) {
            state.delivered = state.delivered.saturating_sub(taken.len() as u64);
            // Newest first: each goes in front of the one given back before it.
            for event in taken.drain(..) {
                state.backlog.push_front(event);
            }
        }
    }
}

impl Drop for EventSubscriber {
    fn drop(&mut self) {
        self.core.unsubscribe(self.key, self.shared.id);
    }
}
impl std::fmt::Debug for EventSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSubscriber")
            .field("id", &self.shared.id)
            .field("filter", &self.shared.filter.to_string())
            .finish_non_exhaustive()
    }
}

/// The iterator of [`EventSubscriber::try_iter`]: owned events queued now, taken in small batches.
pub struct TryIter<'a> {
    subscriber: &'a EventSubscriber,
    /// Taken from the queue and not handed out yet, newest first (handed out from the end).
    taken: Vec<Arc<Event>>,
    /// How many to take next time `taken` runs out.
    next_batch: usize,
}

/// The largest batch [`TryIter`] takes at once.
const TRY_ITER_BATCH: usize = 64;

impl Iterator for TryIter<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.taken.is_empty() {
            if self
                .subscriber
                .try_recv_batch(&mut self.taken, self.next_batch)
                == 0
            {
                return None;
            }
            self.taken.reverse();
            self.next_batch = (self.next_batch * 2).min(TRY_ITER_BATCH);
        }
        self.taken.pop().map(into_owned)
    }
}

impl Drop for TryIter<'_> {
    fn drop(&mut self) {
        if !self.taken.is_empty() {
            self.subscriber.give_back(&mut self.taken);
        }
    }
}

impl std::fmt::Debug for TryIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TryIter")
            .field("subscriber", &self.subscriber.id())
            .field("taken", &self.taken.len())
            .finish()
    }
}

/// The future of [`EventSubscriber::recv_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct RecvFuture<'a> {
    subscriber: &'a EventSubscriber,
}

impl Future for RecvFuture<'_> {
    type Output = Option<Arc<Event>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.subscriber.poll_recv(cx)
    }
}

/// A subscriber as a [`futures_core::Stream`] of shared events; ends when the bus is gone.
pub struct EventStream {
    subscriber: EventSubscriber,
}

impl EventStream {
    /// The subscriber inside, for its counters.
    pub fn subscriber(&self) -> &EventSubscriber {
        &self.subscriber
    }
}

impl futures_core::Stream for EventStream {
    type Item = Arc<Event>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.subscriber.poll_recv(cx)
    }
}
