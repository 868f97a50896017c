//! Scrubbing past what the monitor holds: a source that keeps more than the monitor's `--history`
//! (the NATS source: the stream) hands the monitor an [`ArchiveLink`], and the scrubber reads older
//! events through it a page at a time.
//!
//! In the live view, a key that would move the history cursor before the oldest held event (`←` or
//! `[` there, `Home` once more there) asks the source for the page of events just before it
//! ([`Anchor::Before`], or [`Anchor::Oldest`] the stream keeps). The page opens as a *past view*: a
//! [`State`] of its own, with the filter in force, the history cursor on the event asked for and the
//! gauges as they were there. Every key then goes to it, except those that leave its ends: before
//! its first event the page before is read, after its last the page after ([`Anchor::After`]), or
//! the live view takes over again, scrubbing at its oldest event, once the next page would reach
//! what it holds. `End` (or `L`) goes back to live, keeping the filter edited meanwhile. The live view
//! goes on receiving events underneath, so nothing that arrives while looking back is missed.

use super::action::Action;
use super::export::Notice;
use super::source::SourceMsg;
use super::state::State;
use super::update::{apply, update};
use super::TopOptions;
use crate::event_stream::{EventFilter, EventId};
use tokio::sync::mpsc;

/// Most events in one page of the past view (read from a local NATS in a few tenths of a second).
pub const PAGE_EVENTS: usize = 20_000;

/// Where a page of older events is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The events just before this id (the page ends at `id - 1`).
    Before(EventId),
    /// The events just after this id (the page starts at `id + 1`).
    After(EventId),
    /// The oldest events the source keeps.
    Oldest,
}

/// A request for a page of events older than the monitor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveRequest {
    /// Where the page is.
    pub anchor: Anchor,
    /// Events in the page at most.
    pub count: usize,
}

/// A page read for an [`ArchiveRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivePage {
    /// What was asked.
    pub request: ArchiveRequest,
    /// The page's events and losses, oldest first, as [`SourceMsg::Events`], [`SourceMsg::EventsFrom`]
    /// and [`SourceMsg::Lost`] (other messages are ignored).
    pub msgs: Vec<SourceMsg>,
    /// The oldest id the source keeps now.
    pub first_kept: EventId,
    /// Why the page could not be read, if it could not.
    pub error: Option<String>,
}

/// Where the monitor sends [`ArchiveRequest`]s; the source answers each with
/// [`SourceMsg::Page`] on its usual channel.
#[derive(Debug, Clone)]
pub struct ArchiveLink {
    requests: mpsc::UnboundedSender<ArchiveRequest>,
}

impl ArchiveLink {
    /// A link and the receiver of its requests.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<ArchiveRequest>) {
        let (requests, rx) = mpsc::unbounded_channel();
        (Self { requests }, rx)
    }

    fn send(&self, request: ArchiveRequest) -> bool {
        self.requests.send(request).is_ok()
    }
}

impl PartialEq for ArchiveLink {
    /// Two links are equal when they reach the same source.
    fn eq(&self, other: &Self) -> bool {
        self.requests.same_channel(&other.requests)
    }
}

/// The range of the source a past view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSpan {
    /// Id of its oldest event.
    pub first: EventId,
    /// Id of its newest event.
    pub last: EventId,
    /// The oldest id the source kept when the page was read.
    pub first_kept: EventId,
}

impl State {
    /// The view keys and drawing go to: the past view while one is open, else this one.
    pub fn shown(&self) -> &State {
        self.past.as_deref().unwrap_or(self)
    }

    /// The span of the source this view shows, when it is a past view.
    pub fn page_span(&self) -> Option<PageSpan> {
        self.page
    }

    /// A page of older events is being read.
    pub fn archive_pending(&self) -> bool {
        self.archive_pending.is_some()
    }

    /// Id of the oldest event held.
    fn oldest_held_id(&self) -> Option<EventId> {
        self.log.id_at(self.log.base())
    }

    /// The history cursor cannot go further back in what is held: it is on the oldest match (or no
    /// held event matches), and the filter has been tried on everything held.
    fn at_oldest_match(&self) -> bool {
        if self.log.unscanned() > 0 {
            return false;
        }
        self.log.match_count() == 0 || (self.scrub.is_some() && self.cursor_index() == Some(0))
    }

    /// The cursor is on the newest match held (or none matches).
    fn at_newest_match(&self) -> bool {
        let count = self.log.match_count();
        count == 0 || (self.scrub.is_some() && self.cursor_index() == Some(count - 1))
    }

    /// Asks the source for a page, unless one is on its way.
    fn request_page(&mut self, anchor: Anchor) {
        let Some(link) = &self.archive else {
            return;
        };
        if self.archive_pending.is_some() {
            return;
        }
        let request = ArchiveRequest {
            anchor,
            count: self.history.clamp(1, PAGE_EVENTS),
        };
        let text = if link.send(request) {
            self.archive_pending = Some(request);
            "reading older events from the stream…".to_owned()
        } else {
            "the stream cannot be read back any more".to_owned()
        };
        let error = self.archive_pending.is_none();
        self.notify(text, error);
    }

    /// Says `text` in the view shown.
    fn notify(&mut self, text: String, error: bool) {
        match &mut self.past {
            Some(past) => past.set_notice(text, error),
            None => self.set_notice(text, error),
        }
    }

    fn set_notice(&mut self, text: String, error: bool) {
        self.notice = Some(Notice {
            text,
            error,
            at: self.now,
        });
    }

    /// The filter a new past view starts with: the one in force where the keys are.
    fn shown_filter(&self) -> String {
        self.shown().filter.applied.clone()
    }

    /// A page arrived: it becomes the past view, or says why not.
    fn open_page(&mut self, page: ArchivePage) {
        // A page no longer waited for (the past view was left meanwhile) is dropped.
        if self.archive_pending != Some(page.request) {
            return;
        }
        self.archive_pending = None;
        if let Some(error) = page.error {
            self.notify(format!("cannot read the stream back: {error}"), true);
            return;
        }
        let mut past = match self.past_view(&page) {
            Some(past) => past,
            None => {
                match page.request.anchor {
                    // Nothing between the page shown and what the live view holds: go on there.
                    Anchor::After(_) => self.leave_past(true),
                    _ => self.notify("the stream keeps nothing older".to_owned(), false),
                }
                return;
            }
        };
        let count = past.log.match_count();
        let index = match page.request.anchor {
            Anchor::Before(_) => count.checked_sub(1),
            Anchor::After(_) | Anchor::Oldest => (count > 0).then_some(0),
        };
        if let Some(index) = index {
            past.scrub_to_index(index);
        }
        // The past view's own rate would count the page's arrival: it shows none.
        past.arrivals.clear();
        past.rate = 0.0;
        self.notice = None;
        self.past = Some(Box::new(past));
    }

    /// A past view of `page`'s events, or `None` when it has none.
    fn past_view(&self, page: &ArchivePage) -> Option<State> {
        let filter = self.shown_filter();
        let options = TopOptions {
            filter: EventFilter::parse(&filter).is_ok().then_some(filter),
            history: page.request.count.max(1),
            utc: self.utc,
            ..TopOptions::default()
        };
        let mut past = State::new(&options).ok()?;
        past.connection = self.connection.clone();
        past.stats = self.stats;
        past.size = self.size;
        past.now = self.now;
        for msg in page.msgs.iter().cloned() {
            match msg {
                SourceMsg::Events(_) | SourceMsg::EventsFrom { .. } | SourceMsg::Lost(_) => {
                    update(&mut past, Action::from_source(msg, self.now));
                }
                _ => {}
            }
        }
        if past.log.is_empty() {
            return None;
        }
        while past.log.unscanned() > 0 {
            past.log.scan(super::update::SCAN_SLICE);
        }
        past.page = Some(PageSpan {
            first: past.log.id_at(past.log.base())?,
            last: past.log.id_at(past.log.end().checked_sub(1)?)?,
            first_kept: page.first_kept,
        });
        Some(past)
    }

    /// Closes the past view; the live view keeps the filter it had there. With `scrub_oldest`, the
    /// live view's cursor goes to its oldest event (leaving the past view forwards).
    fn leave_past(&mut self, scrub_oldest: bool) {
        self.archive_pending = None;
        let Some(past) = self.past.take() else {
            return;
        };
        if past.filter.applied.trim() != self.filter.applied.trim() {
            self.filter.input = tui_input::Input::new(past.filter.applied.clone());
            self.apply_filter_text();
            while self.log.unscanned() > 0 {
                self.log.scan(super::update::SCAN_SLICE);
            }
        }
        if scrub_oldest {
            self.stop_following();
            if self.log.match_count() > 0 {
                self.scrub_to_index(0);
            }
        }
    }

    /// The oldest id the source keeps, as far as this view knows.
    fn first_kept(&self) -> EventId {
        match self.page {
            Some(span) => span.first_kept,
            // Counters of a stream: `dropped` is what its limits no longer keep.
            None => self.stats.dropped.saturating_add(1),
        }
    }

    /// The source keeps events older than this view's oldest.
    fn older_kept(&self) -> Option<EventId> {
        let oldest = match self.page {
            Some(span) => span.first,
            None => self.oldest_held_id()?,
        };
        (oldest > self.first_kept()).then_some(oldest)
    }
}

/// Routes `action` between the live view and the past view, and turns the scrubber's moves past the
/// held history into page requests. Returns the action when the live view is to take it as usual.
pub(super) fn route(state: &mut State, action: Action) -> Option<Action> {
    match action {
        Action::Archive(link) => {
            state.archive = Some(link);
            None
        }
        Action::Page(page) => {
            state.open_page(page);
            None
        }
        // What the source says is about the live view; the past view shows its link and counters.
        Action::Events { .. }
        | Action::EventsFrom { .. }
        | Action::Recording(_)
        | Action::Lost(_)
        | Action::Connected { .. }
        | Action::Disconnected { .. }
        | Action::Stats(_) => {
            let sync = matches!(
                action,
                Action::Connected { .. } | Action::Disconnected { .. } | Action::Stats(_)
            );
            apply(state, action);
            if sync {
                if let Some(past) = &mut state.past {
                    past.connection = state.connection.clone();
                    past.stats = state.stats;
                }
            }
            None
        }
        Action::Tick { .. } | Action::Resize { .. } => {
            if let Some(past) = &mut state.past {
                update(past, action.clone());
            }
            Some(action)
        }
        Action::Scan => match &mut state.past {
            Some(past) if past.has_background_work() => {
                update(past, Action::Scan);
                None
            }
            _ => Some(Action::Scan),
        },
        Action::Quit => Some(Action::Quit),
        action if state.past.is_some() => {
            route_past(state, action);
            None
        }
        Action::ScrubBack | Action::ScrubJumpBack if state.archive.is_some() => {
            match state.older_kept() {
                Some(oldest) if state.at_oldest_match() => {
                    state.request_page(Anchor::Before(oldest));
                    None
                }
                _ => Some(action),
            }
        }
        Action::ScrubOldest if state.archive.is_some() => match state.older_kept() {
            Some(_) if state.at_oldest_match() => {
                state.request_page(Anchor::Oldest);
                None
            }
            _ => Some(action),
        },
        action => Some(action),
    }
}

/// A key while the past view is open.
fn route_past(state: &mut State, action: Action) {
    let Some(past) = state.past.as_deref_mut() else {
        return;
    };
    match action {
        Action::Live => {
            state.leave_past(false);
            update(state, Action::Live);
        }
        Action::ScrubBack | Action::ScrubJumpBack | Action::ScrubOldest
            if past.at_oldest_match() =>
        {
            match (past.older_kept(), action) {
                (Some(_), Action::ScrubOldest) => state.request_page(Anchor::Oldest),
                (Some(first), _) => state.request_page(Anchor::Before(first)),
                (None, _) => past.set_notice("the oldest event the stream keeps".to_owned(), false),
            }
        }
        Action::ScrubForward | Action::ScrubJumpForward if past.at_newest_match() => {
            let last = past.page.map_or(0, |span| span.last);
            let reaches_live = state
                .oldest_held_id()
                .is_none_or(|oldest| last.saturating_add(1) >= oldest);
            if reaches_live {
                state.leave_past(true);
            } else {
                state.request_page(Anchor::After(last));
            }
        }
        action => update(past, action),
    }
}
