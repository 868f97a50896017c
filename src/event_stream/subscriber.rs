//! The receiving end: [`EventSubscriber`], its queue and counters, blocking, timed and async receive.

use super::bus::{Inner, ReplayGap, SlowConsumerPolicy};
use super::event::{Event, EventId};
use super::filter::EventFilter;
use super::sync::{Condvar, Mutex, MutexGuard};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
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

/// The queue and counters of one subscriber, under its own lock.
pub(crate) struct SubState {
    /// Replayed history, read before `queue`; not bounded by the buffer.
    backlog: VecDeque<Arc<Event>>,
    /// Live events, bounded by the buffer (except while `Block` publishers wait for room).
    queue: VecDeque<Arc<Event>>,
    /// Live events ever pushed and ever taken out of `queue` (read, dropped or withdrawn).
    pushed: u64,
    taken: u64,
    delivered: u64,
    dropped: u64,
    closed: bool,
    readers_waiting: u32,
    publishers_waiting: u32,
    waker: Option<Waker>,
}

impl SubState {
    pub(crate) fn with_backlog(backlog: VecDeque<Arc<Event>>) -> Self {
        Self {
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

/// What the bus and the subscriber handle share.
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) filter: EventFilter,
    /// Every event the bus finds this subscriber for through its index matches the filter, so
    /// publishing need not test it.
    pub(crate) index_implies_match: bool,
    state: Mutex<SubState>,
    /// Readers wait here for events.
    readable: Condvar,
    /// `Block` publishers wait here for room.
    writable: Condvar,
}

impl Shared {
    pub(crate) fn new(id: u64, filter: EventFilter, state: SubState) -> Self {
        Self {
            id,
            index_implies_match: filter.index_implies_match(),
            filter,
            state: Mutex::new(state),
            readable: Condvar::new(),
            writable: Condvar::new(),
        }
    }

    /// Queues `event` under `policy`. Returns the event's sequence number when the publisher must wait
    /// for room (`Block` with a full buffer).
    pub(crate) fn push(
        &self,
        event: &Arc<Event>,
        buffer: usize,
        policy: SlowConsumerPolicy,
    ) -> Option<u64> {
        let mut state = self.state.lock();
        if state.closed {
            return None;
        }
        let full = state.queue.len() >= buffer;
        let mut evicted = None;
        let mut ticket = None;
        if full {
            match policy {
                SlowConsumerPolicy::DropOldest => {
                    evicted = state.queue.pop_front();
                    state.taken += 1;
                    state.dropped += 1;
                }
                SlowConsumerPolicy::DropNewest => {
                    state.dropped += 1;
                    return None;
                }
                SlowConsumerPolicy::Block => ticket = Some(state.pushed),
            }
        }
        state.queue.push_back(Arc::clone(event));
        state.pushed += 1;
        let waker = state.waker.take();
        let notify = state.readers_waiting > 0;
        drop(state);
        if notify {
            self.readable.notify_one();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
        drop(evicted);
        ticket
    }

    /// Waits until the event with sequence `seq` (id `id`) is within the first `buffer` queued live
    /// events, the subscriber closes, or `deadline` passes; on timeout the event is withdrawn and counted
    /// as dropped.
    pub(crate) fn wait_for_room(
        &self,
        seq: u64,
        id: EventId,
        buffer: usize,
        deadline: Option<Instant>,
    ) {
        let buffer = buffer as u64;
        let mut state = self.state.lock();
        while !state.closed && state.taken + buffer <= seq {
            state.publishers_waiting += 1;
            let timed_out = match deadline {
                Some(deadline) => self.writable.wait_until(&mut state, deadline).timed_out(),
                None => {
                    self.writable.wait(&mut state);
                    false
                }
            };
            state.publishers_waiting -= 1;
            if timed_out && !state.closed && state.taken + buffer <= seq {
                if let Some(at) = state.queue.iter().rposition(|e| e.id == id) {
                    let withdrawn = state.queue.remove(at);
                    state.taken += 1;
                    state.dropped += 1;
                    drop(state);
                    drop(withdrawn);
                }
                return;
            }
        }
    }

    /// Marks the subscriber closed, wakes everyone waiting on it, and returns (delivered, dropped).
    pub(crate) fn close(&self) -> (u64, u64) {
        let mut state = self.state.lock();
        state.closed = true;
        let waker = state.waker.take();
        let counts = (state.delivered, state.dropped);
        drop(state);
        self.readable.notify_all();
        self.writable.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
        counts
    }

    /// Puts events a reader took but did not hand out back at the front of the queue, in their order
    /// (`taken` holds them newest first), and uncounts them as delivered. Empties `taken`.
    fn give_back(&self, taken: &mut Vec<Arc<Event>>) {
        let mut state = self.state.lock();
        state.delivered = state.delivered.saturating_sub(taken.len() as u64);
        // Newest first: each goes in front of the one given back before it.
        for event in taken.drain(..) {
            state.backlog.push_front(event);
        }
    }

    /// (delivered, dropped, queued).
    pub(crate) fn counts(&self) -> (u64, u64, usize) {
        let state = self.state.lock();
        (
            state.delivered,
            state.dropped,
            state.backlog.len() + state.queue.len(),
        )
    }
}

/// Receives the events of one subscription, in id order. Dropping it unsubscribes.
///
/// The owned-[`Event`] methods (`recv`, `try_recv`, ...) copy each event once, on the reader's thread;
/// the `_arc` methods, [`EventSubscriber::recv_async`] and [`EventSubscriber::into_stream`] share it.
pub struct EventSubscriber {
    shared: Arc<Shared>,
    bus: Weak<Inner>,
    gap: Option<ReplayGap>,
    /// The reader's half of a double buffer: a batch read swaps it with the queue under the lock, so
    /// the publisher is held up for a swap, not for the whole batch.
    spare: Mutex<VecDeque<Arc<Event>>>,
}

impl EventSubscriber {
    pub(crate) fn new(shared: Arc<Shared>, bus: Weak<Inner>, gap: Option<ReplayGap>) -> Self {
        Self {
            shared,
            bus,
            gap,
            spare: Mutex::new(VecDeque::new()),
        }
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
        self.shared.state.lock().dropped
    }

    /// Events read so far.
    pub fn delivered(&self) -> u64 {
        self.shared.state.lock().delivered
    }

    /// Events waiting to be read.
    pub fn len(&self) -> usize {
        self.shared.counts().2
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
        let mut state = self.shared.state.lock();
        let event = state.pop();
        self.release(state, event.is_some());
        event
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
        let mut state = self.shared.state.lock();
        let queued = state.queue.len();
        if state.backlog.is_empty() && queued > 0 && queued <= max {
            std::mem::swap(&mut state.queue, &mut *spare);
            let n = queued as u64;
            state.taken += n;
            state.delivered += n;
            self.release(state, true);
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
        self.release(state, n > 0);
        n
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
        let mut state = self.shared.state.lock();
        if let Some(event) = state.pop() {
            self.release(state, true);
            return Poll::Ready(Some(event));
        }
        if state.closed || self.bus.strong_count() == 0 {
            return Poll::Ready(None);
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<Arc<Event>, RecvTimeoutError> {
        let mut state = self.shared.state.lock();
        loop {
            if let Some(event) = state.pop() {
                self.release(state, true);
                return Ok(event);
            }
            if state.closed || self.bus.strong_count() == 0 {
                return Err(RecvTimeoutError::Closed);
            }
            state.readers_waiting += 1;
            let timed_out = match deadline {
                Some(deadline) => self
                    .shared
                    .readable
                    .wait_until(&mut state, deadline)
                    .timed_out(),
                None => {
                    self.shared.readable.wait(&mut state);
                    false
                }
            };
            state.readers_waiting -= 1;
            if timed_out {
                if let Some(event) = state.pop() {
                    self.release(state, true);
                    return Ok(event);
                }
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }

    /// Unlocks, waking `Block` publishers if reading made room.
    fn release(&self, state: MutexGuard<'_, SubState>, took: bool) {
        let wake = took && state.publishers_waiting > 0;
        drop(state);
        if wake {
            self.shared.writable.notify_all();
        }
    }
}

impl Drop for EventSubscriber {
    fn drop(&mut self) {
        match self.bus.upgrade() {
            Some(bus) => bus.unsubscribe(&self.shared),
            None => {
                self.shared.close();
            }
        }
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
            self.subscriber.shared.give_back(&mut self.taken);
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
