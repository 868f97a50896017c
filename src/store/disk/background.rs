//! The data dir's background thread. It does two things off the appending path:
//!
//! - **Prefault**: it keeps the active segment's pages faulted in a few MiB ahead of where appends
//!   write (`MADV_POPULATE_WRITE` on the shared map, or `MADV_POPULATE_READ` for `pwrite`), so the
//!   kernel's work of finding and zeroing each new page cache page is not done under the caller's
//!   lock: an append is then a copy and a checksum. If the thread falls behind, appends take the page
//!   faults themselves; nothing depends on it for correctness, as populating never changes a byte.
//! - **Flush** (`FsyncPolicy::Interval`): every interval it syncs the active segment, the segments
//!   sealed since the last flush, and the directory when files were created or removed.

use super::sys::Mapping;
use parking_lot::{Condvar, Mutex};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How far ahead of the appends the active segment is kept faulted in.
const AHEAD: usize = 4 << 20;
/// How much is faulted in per system call.
const CHUNK: usize = 1 << 20;

/// The thread and what it shares with the data dir.
#[derive(Debug)]
pub(super) struct Background {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The end of the range last asked for (appends ask again past the next chunk).
    asked: usize,
    /// Whether the thread flushes (else it keeps no file).
    flushing: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Where appends write in the active segment.
    cursor: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    stop: bool,
    /// The active segment's map (prefaulted for writing if `writable`), and how far it is done.
    map: Option<Arc<Mapping>>,
    writable: bool,
    populated: usize,
    /// The active segment's file, and those sealed since the last flush.
    active: Option<Arc<File>>,
    sealed: Vec<Arc<File>>,
    dir_changed: bool,
    error: Option<io::Error>,
}

impl Background {
    /// Starts the thread; it flushes every `flush_every` if given.
    pub fn start(flush_every: Option<Duration>, dir: PathBuf) -> io::Result<Background> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            cursor: AtomicUsize::new(0),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("ipckit-disk".into())
                .spawn(move || run(&shared, flush_every, &dir))?
        };
        Ok(Background {
            shared,
            thread: Some(thread),
            asked: 0,
            flushing: flush_every.is_some(),
        })
    }

    /// A new active segment: its map (`writable` for appends through it), its file, and where appends
    /// start in it. The segment before it, if any, gets a last flush.
    pub fn set_active(
        &mut self,
        map: Arc<Mapping>,
        writable: bool,
        file: Option<Arc<File>>,
        start: usize,
    ) {
        self.shared.cursor.store(start, Ordering::Relaxed);
        self.asked = start + AHEAD;
        let mut state = self.shared.state.lock();
        state.map = Some(map);
        state.writable = writable;
        state.populated = start;
        if self.flushing {
            if let Some(old) = std::mem::replace(&mut state.active, file) {
                state.sealed.push(old);
            }
            state.dir_changed = true;
        }
        drop(state);
        self.shared.wake.notify_one();
    }

    /// Appends now write at `cursor`: past the next chunk, the thread is asked to fault in more.
    #[inline]
    pub fn advance(&mut self, cursor: usize) {
        self.shared.cursor.store(cursor, Ordering::Relaxed);
        if cursor + AHEAD >= self.asked + CHUNK {
            self.asked = cursor + AHEAD;
            self.shared.wake.notify_one();
        }
    }

    /// Files were created or removed in the directory.
    pub fn dir_changed(&self) {
        if self.flushing {
            self.shared.state.lock().dir_changed = true;
        }
    }

    /// The first flush error since the last call, if any.
    pub fn take_error(&self) -> Option<io::Error> {
        self.shared.state.lock().error.take()
    }

    /// Stops the thread after a last flush, and waits for it.
    pub fn stop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared, flush_every: Option<Duration>, dir: &std::path::Path) {
    let mut next_flush = flush_every.map(|every| Instant::now() + every);
    loop {
        let mut state = shared.state.lock();
        // What to fault in next: from where appends are (or where it got to) up to AHEAD past them.
        let prefault = |state: &State| {
            let map = state.map.as_ref()?;
            let cursor = shared.cursor.load(Ordering::Relaxed);
            let from = state.populated.max(cursor);
            let to = cursor.saturating_add(AHEAD).min(map.len());
            (from < to).then(|| {
                (
                    Arc::clone(map),
                    state.writable,
                    from,
                    (from + CHUNK).min(to),
                )
            })
        };
        let mut work = prefault(&state);
        if work.is_none() && !state.stop {
            match next_flush {
                Some(at) => {
                    let _ = shared.wake.wait_until(&mut state, at);
                }
                None => shared.wake.wait(&mut state),
            }
            work = prefault(&state);
        }
        let flush_due = state.stop || next_flush.is_some_and(|at| Instant::now() >= at);
        let flush = flush_due.then(|| {
            (
                state.active.clone(),
                std::mem::take(&mut state.sealed),
                std::mem::take(&mut state.dir_changed),
            )
        });
        let stop = state.stop;
        drop(state);

        if let Some((map, writable, from, to)) = work.filter(|_| !stop) {
            map.populate(from, to - from, writable);
            let mut state = shared.state.lock();
            // Unless the segment changed meanwhile.
            if state.map.as_ref().is_some_and(|m| Arc::ptr_eq(m, &map)) {
                state.populated = state.populated.max(to);
            }
        }
        if let Some((active, sealed, dir_changed)) = flush.filter(|_| flush_every.is_some()) {
            let mut result = Ok(());
            for file in sealed.iter().chain(active.as_ref()) {
                result = result.and(file.sync_data());
            }
            if dir_changed {
                result = result.and(super::dir::sync_dir(dir));
            }
            if let Err(e) = result {
                shared.state.lock().error.get_or_insert(e);
            }
            next_flush = flush_every.map(|every| Instant::now() + every);
        }
        if stop {
            return;
        }
    }
}
