//! The background flusher of `FsyncPolicy::Interval`: every interval it writes the active segment's
//! dirty pages to the disk (`fdatasync`), along with segments sealed since and the directory when
//! files were created or removed. Appends never wait for it; they only hand it files when a segment rolls.

use parking_lot::{Condvar, Mutex};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The flusher thread and what it shares with the data dir.
#[derive(Debug)]
pub(super) struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    stop: bool,
    active: Option<Arc<File>>,
    sealed: Vec<Arc<File>>,
    dir_changed: bool,
    error: Option<io::Error>,
}

impl Flusher {
    /// Starts the thread, flushing every `interval` the files it is given and `dir`.
    pub fn start(interval: Duration, dir: PathBuf) -> io::Result<Flusher> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("ipckit-disk-flush".into())
                .spawn(move || run(&shared, interval, &dir))?
        };
        Ok(Flusher {
            shared,
            thread: Some(thread),
        })
    }

    /// The active segment is now `file` (or none); the one before it, if any, gets a last flush.
    pub fn set_active(&self, file: Option<Arc<File>>) {
        let mut state = self.shared.state.lock();
        if let Some(old) = std::mem::replace(&mut state.active, file) {
            state.sealed.push(old);
        }
        state.dir_changed = true;
    }

    /// Files were created or removed in the directory.
    pub fn dir_changed(&self) {
        self.shared.state.lock().dir_changed = true;
    }

    /// The first flush error since the last call, if any.
    pub fn take_error(&self) -> Option<io::Error> {
        self.shared.state.lock().error.take()
    }

    /// Stops the thread after one last flush, and waits for it.
    pub fn stop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared, interval: Duration, dir: &std::path::Path) {
    loop {
        let (active, sealed, dir_changed, stop) = {
            let mut state = shared.state.lock();
            if !state.stop {
                shared.wake.wait_for(&mut state, interval);
            }
            (
                state.active.clone(),
                std::mem::take(&mut state.sealed),
                std::mem::take(&mut state.dir_changed),
                state.stop,
            )
        };
        let mut result = Ok(());
        for file in sealed.iter().chain(active.as_ref()) {
            result = result.and(file.sync_data());
        }
        if dir_changed {
            result = result.and(super::dir::sync_dir(dir));
        }
        if let Err(e) = result {
            let mut state = shared.state.lock();
            state.error.get_or_insert(e);
        }
        if stop {
            return;
        }
    }
}
