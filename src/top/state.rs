//! The monitor's state: plain data, changed only by [`update`](super::update), read by the views.

use super::export::{Export, Notice};
use super::log::{EventLog, Seq, Timeline};
use super::loss::LossMarks;
use super::progress::{Gauge, Gauges};
use super::source::{Loss, RecordingStatus};
use super::terms::{TermCountView, TermCounts};
use super::TopOptions;
use crate::event_stream::BusStats;
use crate::event_stream::{Event, EventFilter, EventId, FilterError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;
use tui_input::Input;

/// How many events apart the snapshots of the gauges are, for a history of `history` events: the
/// scrubber rebuilds the gauges at any point by replaying at most this many events from the snapshot
/// before it, and the log's store keeps this many events more than it shows, so the oldest shown one
/// has its snapshot. About 128 snapshots over the history, from 1,024 to 16,384 events apart.
pub(super) fn checkpoint_interval(history: usize) -> u64 {
    (history / 128).clamp(1024, 16_384) as u64
}

/// What keys go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The event pane (the normal keys).
    Events,
    /// The progress pane (Tab): keys select gauges.
    Progress,
    /// The filter bar is being edited.
    Filter,
    /// The prompt for a file name (`w`, write the matching events) is being edited.
    Prompt,
    /// The help overlay is open.
    Help,
    /// The detail view is open.
    Detail,
}

/// What the event pane shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Following the newest events.
    Live,
    /// Holding still while events keep arriving below.
    Paused,
    /// Showing the bus as it was at the history cursor.
    Scrubbing,
}

/// The link to the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// No word from the source yet.
    Connecting,
    /// Attached.
    Connected {
        /// Socket or label.
        socket: String,
        /// The bus is hosted by this process.
        hosted: bool,
    },
    /// The bus went away.
    Disconnected {
        /// The socket it was at, if it was ever attached.
        socket: Option<String>,
        /// When the source tries again, if it does.
        retry_at: Option<SystemTime>,
    },
}

/// The detail view of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    /// The title: id and type.
    pub title: String,
    /// Pretty-printed JSON, one line each.
    pub lines: Vec<String>,
    /// First line shown.
    pub scroll: usize,
}

/// The overlay over the panes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Overlay {
    None,
    /// The key help, scrolled this many lines.
    Help(usize),
    Detail(Detail),
}

/// Which pane has the keys when no overlay or filter edit takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pane {
    Events,
    Progress,
}

/// A drill-down into one gauge's events, and what to go back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Drill {
    /// The gauge's key.
    pub(super) gauge: String,
    /// The gauge's name, for the event pane's title.
    pub(super) name: String,
    /// The filter expression it set.
    pub(super) expression: String,
    /// The filter in force before.
    pub(super) before: String,
}

/// Where following stopped: the first event that arrived after, and the events received by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PauseMark {
    pub(super) seq: Seq,
    pub(super) received: u64,
}

/// What arrived since the view stopped following ([`State::paused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paused {
    /// New events that match the filter: what the event pane shows on resuming (among those still
    /// held; the header's `PAUSED +N`).
    pub matching: u64,
    /// New events in all, whatever the filter.
    pub arrived: u64,
}

/// The filter bar.
#[derive(Debug, Clone)]
pub(crate) struct FilterBar {
    pub(crate) editing: bool,
    pub(crate) input: Input,
    /// Text of the filter in force.
    pub(crate) applied: String,
    /// Text in force when editing began (Esc restores it).
    pub(crate) before_edit: String,
    /// Why the text being edited does not parse.
    pub(crate) error: Option<FilterError>,
    /// Earlier kept filters, oldest first.
    pub(crate) recall: Vec<String>,
    pub(crate) recall_pos: Option<usize>,
    /// What was typed before recalling.
    pub(crate) draft: String,
}

/// A replay in progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Replay {
    /// Event time per wall-clock time.
    pub(super) speed: u32,
    /// Every silence as long as it was; otherwise a silence longer than a second of replay is cut
    /// to a second.
    pub(super) original_pace: bool,
    /// Event time reached, epoch millis.
    pub(super) clock_ms: f64,
    pub(super) last_tick: SystemTime,
}

/// The history cursor.
#[derive(Debug, Clone)]
pub(super) struct Scrub {
    pub(super) cursor: Seq,
    /// The event at the cursor, decoded.
    pub(super) event: Option<Arc<Event>>,
    /// The gauges as they were just after the cursor's event.
    pub(super) gauges: Gauges,
    pub(super) replay: Option<Replay>,
}

/// One row of the event pane: an event, or a marker where the monitor missed events.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// An event that matches the filter.
    Event(Arc<Event>),
    /// Events this monitor did not get, missed between the rows above and below. Shown under every
    /// filter: nobody can tell whether the missing events would have matched.
    Lost(Loss),
}

/// A place in the event pane's rows that stays put while events arrive and leave (unlike a row
/// index). Loss markers at a place come before the event there, in the order they were recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowKey {
    /// The loss marker numbered `n`, placed just before the event `at`.
    Loss {
        /// The seq of the event after the marker.
        at: Seq,
        /// The marker's number.
        n: u64,
    },
    /// The event with this seq.
    Event(Seq),
}

/// What a row index of the event pane holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowAt {
    /// The match with this index in the log's matches.
    Event(usize),
    /// The loss marker with this index.
    Mark(usize),
}

/// The rows of the event pane, as row indices: the matches and, between them, the loss markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) selected: Option<usize>,
}

/// Everything the monitor shows. Build it with [`State::new`], change it with
/// [`update`](super::update), draw it with [`render`](super::ui::render).
#[derive(Debug)]
pub struct State {
    pub(super) log: EventLog,
    pub(super) timeline: Timeline,
    pub(super) gauges: Gauges,
    /// (seq, gauges just before the event at seq), `checkpoint_every` apart; the first is at or
    /// before the log's base, within the events its store keeps.
    pub(super) checkpoints: VecDeque<(Seq, Gauges)>,
    pub(super) checkpoint_every: u64,
    /// Per-term counts while the filter is edited.
    pub(super) terms: TermCounts,
    /// Reading a recording (`--open`), not a bus.
    pub(super) recording: Option<RecordingStatus>,
    /// The prompt of `w`, while it is open.
    pub(super) prompt: Option<Input>,
    /// Writing the matching events to a file.
    pub(super) export: Option<Export>,
    /// What the monitor last had to say (where it wrote, why it could not).
    pub(super) notice: Option<Notice>,
    /// Where the monitor missed events.
    pub(super) losses: LossMarks,
    pub(super) follow: bool,
    /// First row shown while paused.
    pub(super) top: RowKey,
    /// Selected row while paused.
    pub(super) selected: RowKey,
    pub(super) scrub: Option<Scrub>,
    pub(super) filter: FilterBar,
    pub(super) overlay: Overlay,
    pub(super) pane: Pane,
    /// The key of the selected gauge (the first shown when none, or when it is gone).
    pub(super) gauge_selected: Option<String>,
    pub(super) drill: Option<Drill>,
    /// Set while not following (paused, or scrubbing from a paused view).
    pub(super) paused_at: Option<PauseMark>,
    pub(super) connection: Connection,
    pub(super) stats: BusStats,
    /// The bus's dropped count when this monitor attached (its first counters after attaching).
    pub(super) dropped_at_attach: Option<u64>,
    /// (arrival time, events) over the last second or so.
    pub(super) arrivals: VecDeque<(SystemTime, usize)>,
    pub(super) rate: f64,
    pub(super) now: SystemTime,
    pub(super) size: (u16, u16),
    pub(super) utc: bool,
    pub(super) quit: bool,
    pub(super) received: u64,
    /// Events kept for the views (`--history`).
    pub(super) history: usize,
    /// Where pages older than the held history can be asked for (a source that keeps more).
    pub(super) archive: Option<super::archive::ArchiveLink>,
    /// The page asked for and not yet arrived.
    pub(super) archive_pending: Option<super::archive::ArchiveRequest>,
    /// The past view, while one is open: keys and drawing go to it.
    pub(super) past: Option<Box<State>>,
    /// In a past view: the span of the source it shows.
    pub(super) page: Option<super::archive::PageSpan>,
}

impl State {
    /// A state for `options`, empty and connecting.
    ///
    /// # Errors
    ///
    /// The initial filter does not parse.
    pub fn new(options: &TopOptions) -> Result<Self, FilterError> {
        let text = options.filter.clone().unwrap_or_default();
        let filter = EventFilter::parse(&text)?;
        let recall = if text.trim().is_empty() {
            Vec::new()
        } else {
            vec![text.clone()]
        };
        let mut checkpoints = VecDeque::new();
        checkpoints.push_back((0, Gauges::default()));
        let checkpoint_every = checkpoint_interval(options.history);
        let slack = usize::try_from(checkpoint_every).unwrap_or(usize::MAX);
        Ok(Self {
            log: EventLog::new(options.history, slack, filter),
            timeline: Timeline::default(),
            gauges: Gauges::default(),
            checkpoints,
            checkpoint_every,
            terms: TermCounts::default(),
            recording: None,
            prompt: None,
            export: None,
            notice: None,
            losses: LossMarks::default(),
            follow: true,
            top: RowKey::Event(0),
            selected: RowKey::Event(0),
            scrub: None,
            filter: FilterBar {
                editing: false,
                input: Input::new(text.clone()),
                applied: text.clone(),
                before_edit: text,
                error: None,
                recall,
                recall_pos: None,
                draft: String::new(),
            },
            overlay: Overlay::None,
            pane: Pane::Events,
            gauge_selected: None,
            drill: None,
            paused_at: None,
            connection: Connection::Connecting,
            stats: BusStats::default(),
            dropped_at_attach: None,
            arrivals: VecDeque::new(),
            rate: 0.0,
            now: SystemTime::now(),
            size: (80, 24),
            utc: options.utc,
            quit: false,
            received: 0,
            history: options.history,
            archive: None,
            archive_pending: None,
            past: None,
            page: None,
        })
    }

    /// A quit was asked for.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// What keys go to.
    pub fn focus(&self) -> Focus {
        if self.prompt.is_some() {
            return Focus::Prompt;
        }
        if self.filter.editing {
            return Focus::Filter;
        }
        match (&self.overlay, self.pane) {
            (Overlay::None, Pane::Events) => Focus::Events,
            (Overlay::None, Pane::Progress) => Focus::Progress,
            (Overlay::Help(_), _) => Focus::Help,
            (Overlay::Detail(_), _) => Focus::Detail,
        }
    }

    /// What the event pane shows.
    pub fn mode(&self) -> Mode {
        if self.scrub.is_some() {
            Mode::Scrubbing
        } else if self.follow {
            Mode::Live
        } else {
            Mode::Paused
        }
    }

    /// What arrived since the view stopped following, while paused (not while live or scrubbing).
    pub fn paused(&self) -> Option<Paused> {
        if self.mode() != Mode::Paused {
            return None;
        }
        let mark = self.paused_at?;
        let held = self.log.match_count() - self.log.match_index_from(mark.seq);
        Some(Paused {
            matching: held as u64,
            arrived: self.received.saturating_sub(mark.received),
        })
    }

    /// The gauge selected in the progress pane: the chosen one, or the first shown.
    pub fn selected_gauge(&self) -> Option<&Gauge> {
        let gauges = self.shown_gauges();
        let index = self.selected_gauge_index(&gauges)?;
        gauges.get(index).copied()
    }

    /// Index in `gauges` (as [`State::shown_gauges`] gives them) of the selected gauge.
    pub(crate) fn selected_gauge_index(&self, gauges: &[&Gauge]) -> Option<usize> {
        if gauges.is_empty() {
            return None;
        }
        let chosen = self
            .gauge_selected
            .as_deref()
            .and_then(|key| gauges.iter().position(|g| g.key == key));
        Some(chosen.unwrap_or(0))
    }

    /// The gauge whose events the event pane is limited to (Enter in the progress pane), while its
    /// filter is in force: (key, name).
    pub fn drilled_gauge(&self) -> Option<(&str, &str)> {
        self.drill
            .as_ref()
            .filter(|d| d.expression == self.filter.applied.trim())
            .map(|d| (d.gauge.as_str(), d.name.as_str()))
    }

    /// The link to the bus.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The latest bus counters.
    pub fn stats(&self) -> BusStats {
        self.stats
    }

    /// Events this monitor missed since it started (the sum of its loss markers, also those history
    /// no longer holds), apart from what the bus dropped for others.
    pub fn lost(&self) -> u64 {
        self.losses.total()
    }

    /// Events the bus dropped (for any subscriber) since this monitor attached to it.
    pub fn bus_dropped_since_attach(&self) -> u64 {
        self.stats
            .dropped
            .saturating_sub(self.dropped_at_attach.unwrap_or(self.stats.dropped))
    }

    /// Events received per second, over the last second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Events received since start.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Events held in history.
    pub fn history_len(&self) -> usize {
        self.log.len()
    }

    /// Held events known to match the filter (all of them once [`State::has_background_work`] is false).
    pub fn match_count(&self) -> usize {
        self.log.match_count()
    }

    /// A new filter (or a term of the one being edited) is still being tested against history, or
    /// matching events are being written to a file: send [`Action::Scan`](super::Action::Scan).
    pub fn has_background_work(&self) -> bool {
        self.past.as_ref().is_some_and(|p| p.has_background_work())
            || self.log.unscanned() > 0
            || self.terms.has_work(self.log.base())
            || self.export.as_ref().is_some_and(|e| !e.is_done())
    }

    /// While the filter is edited, each of its terms (when it has two or more) with how many kept
    /// events it matches alone, in the order written.
    pub fn term_counts(&self) -> Vec<TermCountView> {
        self.terms.views(self.log.base())
    }

    /// The recording being shown (`--open`): its name, how far it is read, what was skipped.
    pub fn recording(&self) -> Option<&RecordingStatus> {
        self.recording.as_ref()
    }

    /// The file name in the prompt of `w`, while it is open.
    pub fn prompt_text(&self) -> Option<&str> {
        self.prompt.as_ref().map(Input::value)
    }

    /// What the monitor last had to say: where it wrote events, or why it could not.
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_ref().map(|n| n.text.as_str())
    }

    /// Whether the notice is about a failure.
    pub(crate) fn notice_is_error(&self) -> bool {
        self.notice.as_ref().is_some_and(|n| n.error)
    }

    /// The origin (the bus or machine) the shown event at `seq` came from, if it came with one.
    pub fn origin_of(&self, seq: Seq) -> Option<&str> {
        self.log.origin(seq).map(|o| &**o)
    }

    /// Held events not yet tested against a new filter.
    pub fn unscanned(&self) -> u64 {
        self.log.unscanned()
    }

    /// The text in the filter bar.
    pub fn filter_text(&self) -> &str {
        self.filter.input.value()
    }

    /// The text of the filter in force.
    pub fn applied_filter(&self) -> &str {
        &self.filter.applied
    }

    /// Why the text in the filter bar does not parse (the filter in force is then the last valid one).
    pub fn filter_error(&self) -> Option<&FilterError> {
        self.filter.error.as_ref()
    }

    /// The detail view, when open.
    pub fn detail(&self) -> Option<&Detail> {
        match &self.overlay {
            Overlay::Detail(detail) => Some(detail),
            _ => None,
        }
    }

    /// The replay speed, while replaying (1 at the original pace).
    pub fn replay_speed(&self) -> Option<u32> {
        self.scrub.as_ref()?.replay.map(|r| r.speed)
    }

    /// Whether the replay keeps every silence as long as it was (the original pace) rather than
    /// cutting long ones short.
    pub fn replay_original_pace(&self) -> bool {
        self.scrub
            .as_ref()
            .and_then(|s| s.replay)
            .is_some_and(|r| r.original_pace)
    }

    /// The event under the history cursor, while scrubbing.
    pub fn scrub_event(&self) -> Option<&Arc<Event>> {
        self.scrub.as_ref()?.event.as_ref()
    }

    /// The id of the newest event received.
    pub fn last_id(&self) -> Option<EventId> {
        self.log
            .end()
            .checked_sub(1)
            .and_then(|seq| self.log.id_at(seq))
    }

    /// The events in the event pane, top to bottom.
    pub fn visible_events(&self) -> Vec<Arc<Event>> {
        self.visible_rows()
            .into_iter()
            .filter_map(|row| match row {
                Row::Event(event) => Some(event),
                Row::Lost(_) => None,
            })
            .collect()
    }

    /// The rows of the event pane, top to bottom: events and loss markers.
    pub fn visible_rows(&self) -> Vec<Row> {
        let w = self.window();
        (w.start..w.end).filter_map(|r| self.row(r)).collect()
    }

    /// The selected event: under the cursor while scrubbing, the chosen row while paused (none when
    /// that is a loss marker), the newest match while live.
    pub fn selected_event(&self) -> Option<Arc<Event>> {
        match self.selected_row()? {
            RowAt::Event(index) => self.log.match_event(index).map(|(_, e)| e),
            RowAt::Mark(_) => None,
        }
    }

    /// The selected loss marker, when the chosen row is one.
    pub fn selected_loss(&self) -> Option<&Loss> {
        match self.selected_row()? {
            RowAt::Mark(index) => self.losses.get(index).map(|m| &m.loss),
            RowAt::Event(_) => None,
        }
    }

    /// The gauges shown, in display order: as they were at the cursor while scrubbing.
    pub fn shown_gauges(&self) -> Vec<&Gauge> {
        let now = self.gauge_clock();
        match &self.scrub {
            Some(scrub) => scrub.gauges.sorted(now),
            None => self.gauges.sorted(now),
        }
    }

    /// The time gauges are judged at: the cursor's event time while scrubbing; the newest event's
    /// time in a recording (whose "now" is when it ends); otherwise now.
    pub fn gauge_clock(&self) -> SystemTime {
        if let Some(event) = self.scrub_event() {
            return event.timestamp;
        }
        if self.recording.is_some() {
            return self
                .log
                .end()
                .checked_sub(1)
                .and_then(|seq| self.log.time_at(seq))
                .unwrap_or(self.now);
        }
        self.now
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.now
    }

    pub(crate) fn utc(&self) -> bool {
        self.utc
    }

    pub(crate) fn log(&self) -> &EventLog {
        &self.log
    }

    pub(crate) fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// The help's scroll, when it is open.
    pub(crate) fn help_scroll(&self) -> Option<usize> {
        match self.overlay {
            Overlay::Help(scroll) => Some(scroll),
            _ => None,
        }
    }

    pub(crate) fn filter_bar(&self) -> &FilterBar {
        &self.filter
    }

    pub(crate) fn prompt_input(&self) -> Option<&Input> {
        self.prompt.as_ref()
    }

    /// Rows of the event pane at the current size.
    pub(crate) fn event_rows(&self) -> usize {
        super::ui::event_rows(self.size.0, self.size.1).max(1)
    }

    /// The selected row: the chosen one, or the newest event row.
    pub(crate) fn selected_row(&self) -> Option<RowAt> {
        let w = self.window();
        match w.selected {
            Some(r) => self.row_at(r),
            None => self
                .events_before_row(w.end)
                .checked_sub(1)
                .map(RowAt::Event),
        }
    }

    pub(crate) fn losses(&self) -> &LossMarks {
        &self.losses
    }

    /// Index of the first loss marker shown: those among events not yet tested against a new filter
    /// wait until their place is.
    fn first_shown_mark(&self) -> usize {
        self.losses.index_from(self.log.scanned_from())
    }

    /// Rows of the event pane's list: the matches and the loss markers shown.
    pub(crate) fn row_count(&self) -> usize {
        self.log.match_count() + self.losses.len() - self.first_shown_mark()
    }

    /// Row index of the loss marker with index `mark` (one that is shown).
    fn mark_row(&self, mark: usize, first_shown: usize) -> usize {
        let at = self.losses.get(mark).map_or(Seq::MAX, |m| m.at);
        (mark - first_shown) + self.log.match_index_from(at)
    }

    /// What row `r` holds, if there is such a row.
    pub(crate) fn row_at(&self, r: usize) -> Option<RowAt> {
        let first = self.first_shown_mark();
        let shown = self.losses.len() - first;
        // Markers on rows before `r`, by bisection (row indices grow with the marker index).
        let (mut lo, mut hi) = (0, shown);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.mark_row(first + mid, first) < r {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < shown && self.mark_row(first + lo, first) == r {
            return Some(RowAt::Mark(first + lo));
        }
        let index = r - lo;
        (index < self.log.match_count()).then_some(RowAt::Event(index))
    }

    /// The content of row `r`.
    fn row(&self, r: usize) -> Option<Row> {
        match self.row_at(r)? {
            RowAt::Event(index) => Some(Row::Event(self.log.match_event(index)?.1)),
            RowAt::Mark(index) => Some(Row::Lost(self.losses.get(index)?.loss.clone())),
        }
    }

    /// Rows before the place `key` (its row index, when it is on a row).
    pub(super) fn rows_before(&self, key: RowKey) -> usize {
        let first = self.first_shown_mark();
        match key {
            RowKey::Event(seq) => {
                self.log.match_index_from(seq) + self.losses.index_after(seq).saturating_sub(first)
            }
            RowKey::Loss { at, n } => {
                self.log.match_index_from(at) + self.losses.index_of(n).saturating_sub(first)
            }
        }
    }

    /// The place of row `r`; past the last row, the log's end.
    pub(super) fn key_of_row(&self, r: usize) -> RowKey {
        match self.row_at(r) {
            Some(RowAt::Event(index)) => self
                .log
                .match_seq(index)
                .map_or(RowKey::Event(self.log.end()), RowKey::Event),
            Some(RowAt::Mark(index)) => {
                self.losses
                    .get(index)
                    .map_or(RowKey::Event(self.log.end()), |m| RowKey::Loss {
                        at: m.at,
                        n: m.n,
                    })
            }
            None => RowKey::Event(self.log.end()),
        }
    }

    /// Matches on rows before `r`.
    pub(crate) fn events_before_row(&self, r: usize) -> usize {
        match self.row_at(r) {
            Some(RowAt::Event(index)) => index,
            Some(RowAt::Mark(index)) => self
                .losses
                .get(index)
                .map_or(0, |m| self.log.match_index_from(m.at)),
            None => self.log.match_count(),
        }
    }

    /// The rows of the event pane.
    pub(crate) fn window(&self) -> Window {
        let h = self.event_rows();
        let len = self.row_count();
        if let Some(scrub) = &self.scrub {
            // Everything up to the cursor's event, loss markers before it included.
            let matched = self.log.match_index_after(scrub.cursor);
            let end = matched
                + self
                    .losses
                    .index_after(scrub.cursor)
                    .saturating_sub(self.first_shown_mark());
            let selected = matched
                .checked_sub(1)
                .and_then(|i| self.log.match_seq(i))
                .map(|seq| self.rows_before(RowKey::Event(seq)));
            return Window {
                start: end.saturating_sub(h),
                end,
                selected,
            };
        }
        if self.follow {
            return Window {
                start: len.saturating_sub(h),
                end: len,
                selected: None,
            };
        }
        let start = self.rows_before(self.top).min(len.saturating_sub(1));
        let end = (start + h).min(len);
        let selected = (end > start).then(|| self.rows_before(self.selected).clamp(start, end - 1));
        Window {
            start,
            end,
            selected,
        }
    }

    /// The snapshot the gauges at `cursor` are rebuilt from: its seq and gauges.
    fn checkpoint_before(&self, cursor: Seq) -> Option<&(Seq, Gauges)> {
        let i = self.checkpoints.partition_point(|c| c.0 <= cursor);
        i.checked_sub(1).and_then(|i| self.checkpoints.get(i))
    }

    /// The gauges as they were just after the event at `cursor`: the snapshot before it, and the
    /// events from there decoded and replayed.
    pub(super) fn gauges_at(&self, cursor: Seq) -> Gauges {
        let Some((from, snapshot)) = self.checkpoint_before(cursor) else {
            return Gauges::default();
        };
        let mut gauges = snapshot.clone();
        self.log
            .for_each_stored(*from..cursor.saturating_add(1), |_, event| {
                gauges.apply(&event)
            });
        gauges
    }

    /// The gauges just after the event at `cursor`, from `at` (the gauges just after `from`) when
    /// `cursor` is after `from` and closer to it than to the snapshot before it.
    pub(super) fn gauges_from(&self, from: Seq, at: &Gauges, cursor: Seq) -> Gauges {
        let snapshot = self.checkpoint_before(cursor).map_or(0, |c| c.0);
        if from > cursor || from < snapshot {
            return self.gauges_at(cursor);
        }
        let mut gauges = at.clone();
        self.log
            .for_each_stored(from + 1..cursor.saturating_add(1), |_, event| {
                gauges.apply(&event)
            });
        gauges
    }

    /// Event time of the `index`th match, epoch millis.
    pub(super) fn match_millis(&self, index: usize) -> Option<i64> {
        self.log.match_time(index).map(crate::epoch::millis)
    }
}
