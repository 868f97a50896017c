//! The terminal and the loop: key presses, source messages and a clock become [`Action`]s, and the
//! screen is redrawn after changes at most once per frame.

use super::action::Action;
use super::keymap::action_for_terminal_event;
use super::source::{spawn_bus_source, SourceMsg, MAX_BATCH};
use super::state::{Connection, State};
use super::{ui, update, TopError, TopOptions};
use crate::event_stream::EventBus;
use futures_core::Stream;
use ratatui::backend::Backend;
use ratatui::crossterm::event::Event as TermEvent;
use ratatui::{DefaultTerminal, Terminal};
use std::io;
use std::pin::Pin;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

/// How often time-driven things (rate, spinner, replay, retry countdown) move on.
pub const TICK: Duration = Duration::from_millis(100);

async fn next_key<K>(keys: &mut K) -> Option<io::Result<TermEvent>>
where
    K: Stream<Item = io::Result<TermEvent>> + Unpin,
{
    std::future::poll_fn(|cx| Pin::new(&mut *keys).poll_next(cx)).await
}

fn draw_error(error: impl std::fmt::Display) -> TopError {
    TopError::Draw(error.to_string())
}

/// Runs the monitor on `terminal` until a quit key, the end of `keys`, or an error: one
/// `select!` over the keys, a frame timer (only while something changed), the source, a clock tick
/// and, lowest, background filter work. A key press is drawn at once; everything else (events,
/// ticks) is coalesced into at most one frame per `frame`. Generic over the backend so tests can drive it with
/// `TestBackend` and injected keys and events.
///
/// # Errors
///
/// Reading keys or drawing failed.
///
/// # Cancel safety
///
/// Dropping the future leaves `state` consistent (it is only changed between awaits).
pub async fn run_loop<B, K>(
    terminal: &mut Terminal<B>,
    state: &mut State,
    mut keys: K,
    mut source: mpsc::Receiver<SourceMsg>,
    frame: Duration,
) -> Result<(), TopError>
where
    B: Backend,
    K: Stream<Item = io::Result<TermEvent>> + Unpin,
{
    let size = terminal.size().map_err(draw_error)?;
    update(
        state,
        Action::Resize {
            width: size.width,
            height: size.height,
        },
    );
    update(
        state,
        Action::Tick {
            now: SystemTime::now(),
        },
    );
    let mut frames = tokio::time::interval(frame.max(Duration::from_millis(1)));
    frames.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut source_open = true;
    let mut trim = HeapTrim::default();
    while !state.should_quit() {
        tokio::select! {
            biased;
            key = next_key(&mut keys) => match key {
                Some(Ok(event)) => {
                    if let Some(action) = action_for_terminal_event(state, &event) {
                        if matches!(action, Action::Resize { .. }) {
                            terminal.autoresize().map_err(draw_error)?;
                        }
                        update(state, action);
                        // A key is answered at once rather than at the next frame: people type
                        // slowly next to a bus, and the frame cap then applies from here.
                        terminal.draw(|f| ui::render(state, f)).map_err(draw_error)?;
                        dirty = false;
                        frames.reset();
                    }
                }
                Some(Err(error)) => return Err(TopError::Io(error)),
                None => break,
            },
            _ = frames.tick(), if dirty => {
                terminal.draw(|f| ui::render(state, f)).map_err(draw_error)?;
                dirty = false;
            }
            msg = source.recv(), if source_open => {
                match msg {
                    Some(msg) => {
                        if let SourceMsg::Events(events) = &msg {
                            trim.arrived(events.len());
                        }
                        update(state, Action::from_source(msg, SystemTime::now()));
                    }
                    None => {
                        source_open = false;
                        if !matches!(state.connection(), Connection::Disconnected { .. }) {
                            update(state, Action::Disconnected { retry_in: Duration::MAX });
                        }
                    }
                }
                dirty = true;
            }
            _ = ticks.tick() => {
                update(state, Action::Tick { now: SystemTime::now() });
                trim.tick();
                dirty = true;
            }
            () = std::future::ready(()), if state.has_background_work() => {
                update(state, Action::Scan);
                dirty = true;
            }
        }
    }
    Ok(())
}

/// Gives the memory the allocator keeps after a burst back to the system. Events arrive as
/// `Arc<Event>`s in batches and are freed once the log has packed them into its store, so after a
/// catch-up of a million events glibc's heap holds about three times what the log keeps (measured:
/// 155-208 MB resident, 50 MB after `malloc_trim`). Trimming walks the free lists (a few ms for
/// hundreds of MB), so it runs on a tick once [`HeapTrim::EVENTS`] events have arrived since the last
/// trim and the burst has ended, or every [`HeapTrim::STREAMING`] while they keep coming.
#[derive(Default)]
struct HeapTrim {
    /// Events since the last trim.
    since_trim: usize,
    /// Events since the last tick.
    this_tick: usize,
    /// Ticks since the last trim.
    ticks: u32,
}

impl HeapTrim {
    /// Events worth a trim (about 13 MB of `Arc<Event>`s of 130 bytes of data).
    const EVENTS: usize = 100_000;
    /// Ticks between trims while events keep coming (5 s).
    const STREAMING: u32 = 50;

    fn arrived(&mut self, events: usize) {
        self.since_trim = self.since_trim.saturating_add(events);
        self.this_tick = self.this_tick.saturating_add(events);
    }

    fn tick(&mut self) {
        self.ticks = self.ticks.saturating_add(1);
        let settled = self.this_tick < MAX_BATCH;
        self.this_tick = 0;
        if self.since_trim >= Self::EVENTS && (settled || self.ticks >= Self::STREAMING) {
            trim_heap();
            self.since_trim = 0;
            self.ticks = 0;
        }
    }
}

/// `malloc_trim(0)` where the C library is glibc; nothing elsewhere.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only returns the allocator's own free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The real terminal, restored when dropped (also on early returns; `ratatui::try_init` adds a
/// panic hook that restores it before a panic message is printed).
struct TerminalGuard {
    terminal: DefaultTerminal,
}

impl TerminalGuard {
    fn new() -> Result<Self, TopError> {
        if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            return Err(TopError::NoTerminal);
        }
        Ok(Self {
            terminal: ratatui::try_init()?,
        })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        ratatui::restore();
    }
}

/// The signals that end the monitor as `q` does: SIGINT, SIGTERM and SIGHUP (a closed terminal),
/// registered when this is made, so one that arrives later is never the default (which would end the
/// process without restoring the terminal).
struct QuitSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl QuitSignals {
    fn new() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                hangup: signal(SignalKind::hangup())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for one of the signals.
    async fn recv(&mut self) -> io::Result<()> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => {}
                _ = self.hangup.recv() => {}
                _ = self.interrupt.recv() => {}
            }
            Ok(())
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await
    }
}

/// Runs the monitor full-screen on this process's terminal, reading events from `source`, until `q`,
/// Ctrl-C (a key in raw mode, or SIGINT), SIGTERM, SIGHUP or an error. The terminal is restored on
/// every way out, signals included.
///
/// # Errors
///
/// The initial filter does not parse (checked before the screen is touched), stdout is not a
/// terminal, or the terminal failed.
pub async fn run_with_source(
    options: TopOptions,
    source: mpsc::Receiver<SourceMsg>,
) -> Result<(), TopError> {
    let mut state = State::new(&options)?;
    let mut signals = QuitSignals::new()?;
    let mut guard = TerminalGuard::new()?;
    let keys = ratatui::crossterm::event::EventStream::new();
    let frame = options.frame_period();
    tokio::select! {
        result = run_loop(&mut guard.terminal, &mut state, keys, source, frame) => result,
        signal = signals.recv() => signal.map_err(TopError::Io),
    }
}

/// Runs the monitor on a bus in this process (see [`run_with_source`]): it subscribes with all kept
/// history, shows `options.socket_label` as the socket it is hosting, and unsubscribes on the way out.
///
/// # Errors
///
/// As [`run_with_source`].
pub async fn run_on_bus(bus: &EventBus, options: TopOptions) -> Result<(), TopError> {
    let (source, task) = spawn_bus_source(bus, options.socket_label.clone(), true);
    let result = run_with_source(options, source).await;
    task.abort();
    result
}

/// [`run_on_bus`] on a tokio runtime of its own, for callers that have none.
///
/// # Errors
///
/// As [`run_with_source`], or the runtime could not be built.
pub fn run(bus: &EventBus, options: TopOptions) -> Result<(), TopError> {
    crate::transport::runtime(2)?.block_on(run_on_bus(bus, options))
}
