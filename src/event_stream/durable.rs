//! A bus whose history is kept on disk too: the glue between the bus and a
//! [`DataDir`](crate::store::disk::DataDir). The rules are documented on
//! [`crate::event_stream`](crate::event_stream#history-on-disk).

use super::bus::{EventBus, State};
use super::event::{Event, EventId};
use super::filter::{Bound, EventFilter, Term};
use super::history::History;
use crate::store::disk::{Cursor, DataDir, DiskError, RecordRef, Retained};
use crate::store::{EventParts, Order, Store, StoreConfig, StoreFilter};
use std::sync::Arc;
use std::time::SystemTime;

/// Why [`EventBus::try_publish`] did not publish an event as asked.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The event's record could not be written to the data dir (a full disk, an I/O error): the event
    /// was not published (nothing delivered, no id taken) and comes back here.
    #[error("the event was not published: {source}")]
    NotStored {
        /// The event, as it was given.
        event: Box<Event>,
        /// What the data dir said.
        #[source]
        source: DiskError,
    },
    /// Under `FsyncPolicy::Always`: the record was written (to the OS's page cache) and the event
    /// published and delivered with this id, but syncing it to the disk failed, so a power loss may
    /// still lose it.
    #[error("event {id} was published, but syncing it to the disk failed: {source}")]
    NotSynced {
        /// The id the event got.
        id: EventId,
        /// What the data dir said.
        #[source]
        source: DiskError,
    },
}

/// What happened to a bus's data dir since the last [`EventBus::maintain_disk`].
#[derive(Debug, Default)]
pub struct DiskReport {
    /// Old segments the retention limits deleted.
    pub retained: Retained,
    /// Appends that failed since the last report (events refused, kept in memory only, or not synced).
    pub failed_appends: u64,
    /// The last of those failures, as a sentence.
    pub last_append_error: Option<String>,
    /// Other errors, oldest first: of the background flush, of retention, of reading segments back.
    pub errors: Vec<DiskError>,
}

impl DiskReport {
    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.retained.is_empty() && self.failed_appends == 0 && self.errors.is_empty()
    }
}

/// Errors kept for the next report, at most (more are counted only).
const KEPT_ERRORS: usize = 16;

/// How an append failed.
pub(crate) enum Failure {
    /// The record is not in the segment.
    NotStored(DiskError),
    /// The record is in the segment (the page cache) but the sync after it failed.
    NotSynced(DiskError),
}

/// A bus's data dir and its error counts, behind the bus lock.
pub(crate) struct DiskState {
    pub(super) dir: DataDir,
    errors: u64,
    unreported: u64,
    last_error: Option<String>,
    pending: Vec<DiskError>,
}

impl DiskState {
    pub(crate) fn new(dir: DataDir) -> Self {
        Self {
            dir,
            errors: 0,
            unreported: 0,
            last_error: None,
            pending: Vec::new(),
        }
    }

    /// Appends one record to the active segment.
    #[inline]
    pub(crate) fn append(&mut self, record: RecordRef<'_>) -> Result<(), Failure> {
        let id = record.id;
        match self.dir.append(record) {
            Ok(()) => Ok(()),
            // The data dir takes ids from `next_id` on: past this one, the record is in the segment.
            Err(e) if self.dir.next_id() > id => Err(Failure::NotSynced(e)),
            Err(e) => Err(Failure::NotStored(e)),
        }
    }

    /// Counts a failed append.
    pub(crate) fn note_failure(&mut self, error: &DiskError) {
        self.errors += 1;
        self.unreported += 1;
        self.last_error = Some(error.to_string());
    }

    /// Counts an error and keeps it for the next report.
    fn note_error(&mut self, error: DiskError) {
        self.errors += 1;
        if self.pending.len() < KEPT_ERRORS {
            self.pending.push(error);
        }
    }

    pub(crate) fn stats(&self) -> super::bus::DiskStats {
        super::bus::DiskStats {
            records: self.dir.records(),
            bytes: self.dir.total_bytes(),
            oldest_id: self.dir.first_id(),
            segments: self.dir.segments().len(),
            errors: self.errors,
        }
    }

    /// Applies retention and collects what happened since the last report.
    pub(crate) fn report(&mut self) -> DiskReport {
        let mut retained = self.dir.take_retained();
        match self.dir.retain() {
            Ok(now) => retained.segments.extend(now.segments),
            Err(e) => {
                retained.segments.extend(self.dir.take_retained().segments);
                self.note_error(e);
            }
        }
        if let Some(e) = self.dir.take_background_error() {
            self.note_error(e);
        }
        DiskReport {
            retained,
            failed_appends: std::mem::take(&mut self.unreported),
            last_append_error: self.last_error.take(),
            errors: std::mem::take(&mut self.pending),
        }
    }

    /// Loads the newest `n` records (within the history's own bounds) into `history`.
    pub(crate) fn load_newest(&mut self, history: &mut History, n: usize) {
        let Some(last) = self.dir.last_id().filter(|_| n > 0) else {
            return;
        };
        let from = last.saturating_sub(u64::try_from(n - 1).unwrap_or(u64::MAX));
        // A cursor gives the pages it read back to the kernel when it goes.
        let mut cursor = self.dir.cursor_from(from);
        while let Some(record) = cursor.next_record() {
            match record {
                Ok(r) => {
                    history.load(parts_of(&r));
                }
                Err(e) => {
                    drop(cursor);
                    self.note_error(e);
                    return;
                }
            }
        }
    }
}

fn parts_of<'a>(r: &RecordRef<'a>) -> EventParts<'a> {
    EventParts {
        id: r.id,
        time_micros: r.time_micros,
        event_type: r.event_type,
        resource: r.resource,
        data: r.data,
    }
}

/// The first id a replay of events stamped at or after `time` must read: the first such record on
/// disk, or memory's first id if that is lower (memory may hold what the disk refused).
pub(crate) fn first_id_since(state: &State, time: SystemTime) -> EventId {
    let memory = state.history.first_id().unwrap_or(state.last_id + 1);
    match state.disk.as_ref().and_then(|d| {
        d.dir
            .first_id_at_or_after(crate::epoch::micros_saturating(time))
    }) {
        Some(id) => id.min(memory),
        None => memory,
    }
}

/// The earliest time every match of `filter` is stamped at or after, when its lower bounds are all
/// times (they are alternatives, so the earliest counts).
fn since_time(filter: &EventFilter) -> Option<i64> {
    let mut lowest: Option<i64> = None;
    for (positive, term) in filter.terms() {
        if let (true, Term::Since(bound)) = (positive, term) {
            match bound {
                Bound::Time(t) => {
                    let t = crate::epoch::micros_saturating(t);
                    lowest = Some(lowest.map_or(t, |l| l.min(t)));
                }
                Bound::Id(_) => return None,
            }
        }
    }
    lowest
}

/// [`EventBus::history_page`] on a bus with a data dir: what is older than memory is read from the
/// segments (through a [`Cursor`], the bus lock released), the rest from memory. Memory may lose its
/// oldest events while the disk is read; the disk still has them, so reading goes on there up to
/// where memory starts when it is looked at again.
pub(crate) fn page(
    bus: &EventBus,
    filter: &EventFilter,
    from: EventId,
    until: EventId,
    limit: usize,
) -> (Vec<Arc<Event>>, Option<EventId>) {
    let mut out: Vec<Arc<Event>> = Vec::new();
    let mut from = from;
    let min_time = since_time(filter);
    let mut scratch: Option<Scratch> = None;
    let mut oldest = None;
    let mut first = true;
    loop {
        let mut state = bus.inner.state();
        if first {
            oldest = state.oldest_readable();
            first = false;
        }
        if out.len() >= limit || from > until {
            break;
        }
        let memory = state.history.first_id().unwrap_or(state.last_id + 1);
        let cursor = match state.disk.as_ref() {
            Some(disk) if from < memory => {
                if let Some(t) = min_time {
                    // Every record before this one is older than the filter allows.
                    from = from.max(disk.dir.first_id_at_or_after(t).unwrap_or(memory));
                }
                (from < memory).then(|| disk.dir.cursor_from(from))
            }
            _ => None,
        };
        let Some(mut cursor) = cursor else {
            let page = state.history.page(filter, from, until, limit - out.len());
            out.extend(page);
            break;
        };
        drop(state);
        let stop = until.min(memory - 1);
        let want = limit - out.len();
        let (next, error) = read(&mut cursor, filter, &mut scratch, stop, want, &mut out);
        drop(cursor);
        if let Some(e) = error {
            if let Some(disk) = bus.inner.state().disk.as_mut() {
                disk.note_error(e);
            }
        }
        from = next;
    }
    (out, oldest)
}

/// Records read from disk at once before a filter judges them.
const CHUNK: usize = 1024;

/// A filter compiled for a small store the records of a chunk are copied into, so that type and
/// resource terms are judged once per distinct string and `text:` on the payload bytes, and only
/// candidates are parsed (the store's own scan).
struct Scratch {
    store: Store,
    filter: StoreFilter,
}

impl Scratch {
    fn new(filter: &EventFilter) -> Self {
        Self {
            store: Store::new(StoreConfig {
                max_events: CHUNK,
                max_bytes: usize::MAX,
                block_events: CHUNK,
                block_bytes: 1 << 20,
                // Never compressed: a chunk is read once.
                hot_events: usize::MAX,
            }),
            filter: StoreFilter::new(filter),
        }
    }
}

/// Reads records with ids up to `stop` from `cursor`, appending to `out` the events `filter` matches
/// until `want` more are there. Returns the id to read from next (past the last event taken when
/// `want` was reached, else `stop + 1`) and the error that ended the reading early, if one did.
fn read(
    cursor: &mut Cursor,
    filter: &EventFilter,
    scratch: &mut Option<Scratch>,
    stop: EventId,
    want: usize,
    out: &mut Vec<Arc<Event>>,
) -> (EventId, Option<DiskError>) {
    let target = out.len() + want;
    let done = stop.saturating_add(1);
    if filter.is_empty() {
        while let Some(record) = cursor.next_record() {
            match record {
                Err(e) => return (done, Some(e)),
                Ok(r) if r.id > stop => break,
                Ok(r) => {
                    if let Ok(event) = r.to_event() {
                        out.push(Arc::new(event));
                        if out.len() >= target {
                            return (r.id.saturating_add(1), None);
                        }
                    }
                }
            }
        }
        return (done, None);
    }
    let scratch = scratch.get_or_insert_with(|| Scratch::new(filter));
    let mut hits = Vec::new();
    loop {
        drop(scratch.store.clear());
        let mut ended = false;
        let mut error = None;
        // A record the small store cannot take (never for records a bus wrote), judged on its own.
        let mut alone = None;
        while scratch.store.len() < CHUNK {
            match cursor.next_record() {
                None => ended = true,
                Some(Err(e)) => {
                    ended = true;
                    error = Some(e);
                }
                Some(Ok(r)) if r.id > stop => ended = true,
                Some(Ok(r)) => {
                    if scratch.store.push(parts_of(&r)).is_err() {
                        alone = r.to_event().ok();
                        break;
                    }
                    continue;
                }
            }
            break;
        }
        hits.clear();
        let range = scratch.store.range();
        let _ = scratch.store.scan(
            &mut scratch.filter,
            range,
            Order::OldestFirst,
            target - out.len(),
            &mut hits,
        );
        for &pos in &hits {
            if let Some(event) = scratch.store.event(pos) {
                let id = event.id;
                out.push(Arc::new(event));
                if out.len() >= target {
                    return (id.saturating_add(1), error);
                }
            }
        }
        if let Some(event) = alone.filter(|e| filter.matches(e)) {
            let id = event.id;
            out.push(Arc::new(event));
            if out.len() >= target {
                return (id.saturating_add(1), error);
            }
        }
        if ended {
            return (done, error);
        }
    }
}
