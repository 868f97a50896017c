//! [`update`]: the one place the monitor's state changes.

use super::action::Action;
use super::export::{default_name, Export, Notice, NOTICE_FOR};
use super::log::{Seq, Timeline};
use super::loss::{reason_long, Mark};
use super::state::{
    Connection, Detail, Drill, Overlay, Pane, PauseMark, Replay, RowAt, RowKey, Scrub, State,
};
use crate::event_stream::{Event, EventFilter};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tui_input::Input;

/// Events tested against a new filter per [`Action::Scan`] (and at once when the filter changes);
/// also the events tested against one term of the filter being edited, or written to a file, per
/// [`Action::Scan`].
pub const SCAN_SLICE: usize = 8192;

/// A silence longer than this (in wall-clock time at the replay's speed) is cut to this long, except
/// at the original pace.
const LONGEST_SILENCE_MS: f64 = 1000.0;

/// Earlier filters kept for recall.
const RECALL_KEPT: usize = 50;

/// Replay speeds, in the order the replay key cycles through them.
const SPEEDS: [u32; 3] = [1, 10, 100];

/// Applies `action` to `state`, or to the past view open in it (the scrubber past what the monitor
/// holds, [`State::page_span`]).
pub fn update(state: &mut State, action: Action) {
    if let Some(action) = super::archive::route(state, action) {
        apply(state, action);
    }
}

/// Applies `action` to this view.
pub(super) fn apply(state: &mut State, action: Action) {
    match action {
        Action::Quit => state.quit = true,
        Action::ToggleHelp => {
            state.overlay = match state.overlay {
                Overlay::Help(_) => Overlay::None,
                _ => Overlay::Help(0),
            }
        }
        Action::CloseOverlay => state.overlay = Overlay::None,
        Action::Move(delta) => state.move_selection(delta),
        Action::PageUp => state.move_selection(-(state.event_rows() as i64)),
        Action::PageDown => state.move_selection(state.event_rows() as i64),
        Action::First => state.move_selection(i64::MIN / 2),
        Action::Live => {
            state.scrub = None;
            state.start_following();
        }
        Action::TogglePause => state.toggle_pause(),
        Action::OpenDetail => state.open_detail(),
        Action::ScrollDetail(delta) => {
            let (width, height) = state.size;
            match &mut state.overlay {
                Overlay::Detail(detail) => {
                    let rows = crate::top::ui::detail::rows(detail, width).len();
                    let max = rows.saturating_sub(1) as i64;
                    detail.scroll = (detail.scroll as i64 + delta).clamp(0, max) as usize;
                }
                Overlay::Help(scroll) => {
                    let max = crate::top::ui::help::max_scroll(width, height) as i64;
                    *scroll = (*scroll as i64 + delta).clamp(0, max) as usize;
                }
                Overlay::None => {}
            }
        }
        Action::FocusNext | Action::FocusPrev => {
            // Two panes: either key moves to the other one.
            state.pane = match state.pane {
                Pane::Events => Pane::Progress,
                Pane::Progress => Pane::Events,
            };
        }
        Action::SelectGauge(delta) => state.select_gauge(delta),
        Action::DrillDown => state.drill_down(),
        Action::Back => state.back(),
        Action::FilterStart => {
            let bar = &mut state.filter;
            bar.editing = true;
            bar.before_edit = bar.applied.clone();
            bar.input = Input::new(bar.applied.clone());
            bar.recall_pos = None;
            bar.error = None;
            state.terms.update(&state.filter.applied, &state.log);
        }
        Action::FilterInput(request) => {
            state.filter.input.handle(request);
            state.filter.recall_pos = None;
            state.apply_filter_text();
        }
        Action::FilterCommit => state.commit_filter(),
        Action::FilterCancel => {
            let bar = &mut state.filter;
            bar.input = Input::new(bar.before_edit.clone());
            bar.editing = false;
            state.apply_filter_text();
            state.filter.error = None;
            state.terms.clear();
        }
        Action::FilterRecallPrev => state.recall(-1),
        Action::FilterRecallNext => state.recall(1),
        Action::ScrubBack => state.scrub_step(-1),
        Action::ScrubForward => state.scrub_step(1),
        Action::ScrubJumpBack => state.scrub_jump(-1000),
        Action::ScrubJumpForward => state.scrub_jump(1000),
        Action::ScrubOldest => {
            if state.log.match_count() > 0 {
                state.scrub_to_index(0);
            }
        }
        Action::CycleReplay => state.cycle_replay(),
        Action::PromptStart => {
            state.prompt = Some(Input::new(default_name(state.now, state.utc)));
        }
        Action::PromptInput(request) => {
            if let Some(input) = &mut state.prompt {
                input.handle(request);
            }
        }
        Action::PromptCancel => state.prompt = None,
        Action::PromptCommit => state.start_export(),
        Action::Events { events, at } => state.ingest(events, None, at),
        Action::EventsFrom { origin, events, at } => state.ingest(events, Some(origin), at),
        Action::Recording(status) => state.recording = Some(status),
        Action::Lost(loss) => state.losses.record(state.log.end(), loss),
        Action::Connected { socket, hosted } => {
            state.connection = Connection::Connected { socket, hosted };
            // The bus's dropped count is measured from the next counters on.
            state.dropped_at_attach = None;
        }
        Action::Disconnected { retry_in } => {
            let socket = match &state.connection {
                Connection::Connected { socket, .. } => Some(socket.clone()),
                Connection::Disconnected { socket, .. } => socket.clone(),
                Connection::Connecting => None,
            };
            state.connection = Connection::Disconnected {
                socket,
                retry_at: state.now.checked_add(retry_in),
            };
        }
        Action::Stats(stats) => {
            // A count lower than at attaching: a new bus behind the same socket.
            if state.dropped_at_attach.is_none_or(|at| stats.dropped < at) {
                state.dropped_at_attach = Some(stats.dropped);
            }
            state.stats = stats;
        }
        Action::Tick { now } => state.tick(now),
        Action::Resize { width, height } => state.size = (width, height),
        Action::Scan => state.background_step(),
        // Taken by the router.
        Action::Archive(_) | Action::Page(_) => {}
    }
}

/// The detail view of a loss marker.
fn loss_detail(mark: &Mark) -> Detail {
    let loss = &mark.loss;
    let ids = match (loss.first_id, loss.last_id) {
        (Some(first), Some(last)) if first == last => format!("#{first}"),
        (Some(first), Some(last)) => format!("#{first} to #{last}"),
        (Some(first), None) => format!("from #{first}"),
        (None, Some(last)) => format!("up to #{last}"),
        (None, None) => "not known".to_owned(),
    };
    Detail {
        title: "events lost".to_owned(),
        lines: vec![
            format!("count:   {}", crate::top::ui::thousands(loss.count)),
            format!("ids:     {ids}"),
            format!("reason:  {}", reason_long(loss.reason)),
            String::new(),
            "This monitor did not receive these events: they are counted in the".to_owned(),
            "header's \"lost\", apart from what the bus dropped for others.".to_owned(),
        ],
        scroll: 0,
    }
}

impl State {
    fn ingest(&mut self, events: Vec<Arc<Event>>, origin: Option<Arc<str>>, at: SystemTime) {
        self.arrivals.push_back((at, events.len()));
        self.received += events.len() as u64;
        let mut rebuild_timeline = false;
        for event in events {
            let seq = self.log.end();
            let snapshot_due = seq.is_multiple_of(self.checkpoint_every)
                && seq > 0
                && self.checkpoints.back().is_none_or(|c| c.0 != seq);
            let pushed = self.log.push(&event, origin.as_ref());
            if self.log.end() == seq {
                // Refused by the store (data of 4 GiB or more): not kept, not shown.
                continue;
            }
            if snapshot_due {
                self.checkpoints.push_back((seq, self.gauges.clone()));
            }
            self.gauges.apply(&event);
            self.timeline.add(event.timestamp);
            for left in pushed.left.clone() {
                match self.log.stored_time(left) {
                    Some(time) => self.timeline.remove(time),
                    None => rebuild_timeline = true,
                }
            }
            rebuild_timeline |= pushed.dropped_early;
            self.terms.left(pushed.left);
            self.terms.pushed(seq, &event, origin.as_deref());
            let base = self.log.base();
            // The first snapshot stays the last one at or before the base.
            while self.checkpoints.len() > 1 && self.checkpoints[1].0 <= base {
                self.checkpoints.pop_front();
            }
        }
        if rebuild_timeline {
            // The store dropped events for its byte bound: count the times of those it holds.
            let mut timeline = Timeline::default();
            for seq in self.log.base()..self.log.end() {
                if let Some(time) = self.log.time_at(seq) {
                    timeline.add(time);
                }
            }
            self.timeline = timeline;
        }
        let base = self.log.base();
        self.losses.evict(base);
        if self.scrub.as_ref().is_some_and(|s| s.cursor < base) {
            let event = self.log.get(base);
            if let Some(scrub) = &mut self.scrub {
                scrub.cursor = base;
                scrub.event = event;
            }
        }
    }

    /// One slice of background work: the filter's scan first, then the terms' counts, then a write.
    fn background_step(&mut self) {
        if self.log.unscanned() > 0 {
            self.log.scan(SCAN_SLICE);
            return;
        }
        if self.terms.scan(&self.log, SCAN_SLICE) > 0 {
            return;
        }
        let now = self.now;
        if let Some(export) = &mut self.export {
            if let Some(notice) = export.step(&self.log, SCAN_SLICE, now) {
                self.notice = Some(notice);
                self.export = None;
            }
        }
    }

    /// `w` confirmed: starts writing the matches held now to the file named in the prompt.
    fn start_export(&mut self) {
        let Some(input) = &self.prompt else {
            return;
        };
        if self.export.is_some() {
            self.notice = Some(Notice {
                text: "a write is still in progress".to_owned(),
                error: true,
                at: self.now,
            });
            return;
        }
        match Export::start(input.value(), self.log.base(), self.log.end()) {
            Ok(export) => {
                self.export = Some(export);
                self.prompt = None;
                self.notice = Some(Notice {
                    text: format!("writing {} events…", self.log.match_count()),
                    error: false,
                    at: self.now,
                });
            }
            // The prompt stays open with the name, to be edited.
            Err(text) => {
                self.notice = Some(Notice {
                    text,
                    error: true,
                    at: self.now,
                })
            }
        }
    }

    fn tick(&mut self, now: SystemTime) {
        self.now = now;
        let horizon = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        while self.arrivals.front().is_some_and(|(at, _)| *at < horizon) {
            self.arrivals.pop_front();
        }
        self.rate = self.arrivals.iter().map(|(_, n)| *n as f64).sum();
        if self.notice.as_ref().is_some_and(|n| {
            self.export.is_none() && now.duration_since(n.at).is_ok_and(|d| d > NOTICE_FOR)
        }) {
            self.notice = None;
        }
        self.advance_replay(now);
    }

    /// Stops following; what arrives from here on is counted for `PAUSED +N`.
    pub(super) fn stop_following(&mut self) {
        if self.follow || self.paused_at.is_none() {
            self.paused_at = Some(PauseMark {
                seq: self.log.end(),
                received: self.received,
            });
        }
        self.follow = false;
    }

    fn start_following(&mut self) {
        self.follow = true;
        self.paused_at = None;
    }

    fn select_gauge(&mut self, delta: i64) {
        let gauges = self.shown_gauges();
        let Some(current) = self.selected_gauge_index(&gauges) else {
            return;
        };
        let last = gauges.len() as i64 - 1;
        let target = (current as i64).saturating_add(delta).clamp(0, last) as usize;
        let key = gauges.get(target).map(|g| g.key.clone());
        if key.is_some() {
            self.gauge_selected = key;
        }
    }

    /// Limits the events to the selected gauge's: its expression goes into the filter bar (applied and
    /// kept for recall), the event pane gets the focus, and [`State::back`] undoes it.
    fn drill_down(&mut self) {
        let Some(gauge) = self.selected_gauge() else {
            return;
        };
        let expression = gauge.filter().to_string();
        let (key, name) = (gauge.key.clone(), gauge.name().to_owned());
        // From one gauge's events straight to another's, Esc still goes back to the filter before both.
        let before = match &self.drill {
            Some(drill) if drill.expression == self.filter.applied.trim() => drill.before.clone(),
            _ => self.filter.applied.clone(),
        };
        self.filter.editing = false;
        self.filter.input = Input::new(expression.clone());
        self.apply_filter_text();
        if self.filter.error.is_some() {
            // Cannot happen (the expression is a filter's own display), but never keep a broken one.
            self.filter.input = Input::new(self.filter.applied.clone());
            self.filter.error = None;
            return;
        }
        self.remember_filter();
        self.gauge_selected = Some(key.clone());
        self.drill = Some(Drill {
            gauge: key,
            name,
            expression,
            before,
        });
        self.pane = Pane::Events;
    }

    /// Esc in a pane: out of a gauge's events (the filter before, the progress pane with the gauge
    /// selected), or from the progress pane to the event pane.
    fn back(&mut self) {
        if let Some(drill) = self.drill.take() {
            if drill.expression == self.filter.applied.trim() {
                self.filter.input = Input::new(drill.before);
                self.apply_filter_text();
                self.filter.error = None;
                self.gauge_selected = Some(drill.gauge);
                self.pane = Pane::Progress;
                return;
            }
        }
        self.pane = Pane::Events;
    }

    fn move_selection(&mut self, delta: i64) {
        if self.scrub.is_some() {
            self.scrub_step(delta.signum() * delta.abs().min(1_000_000));
            return;
        }
        let len = self.row_count();
        if len == 0 {
            return;
        }
        let h = self.event_rows();
        let w = self.window();
        let current = w.selected.unwrap_or(len - 1);
        let target = (current as i64)
            .saturating_add(delta)
            .clamp(0, len as i64 - 1) as usize;
        let mut start = w.start;
        if target < start {
            start = target;
        } else if target >= start + h {
            start = target + 1 - h;
        }
        self.stop_following();
        self.top = self.key_of_row(start);
        self.selected = self.key_of_row(target);
    }

    fn toggle_pause(&mut self) {
        if let Some(scrub) = &self.scrub {
            let replay = match scrub.replay {
                Some(_) => None,
                None => Some(Replay {
                    clock_ms: self.replay_start(scrub.cursor),
                    ..self.new_replay(SPEEDS[0])
                }),
            };
            if let Some(scrub) = &mut self.scrub {
                scrub.replay = replay;
            }
            return;
        }
        if self.follow {
            let w = self.window();
            // The newest event on screen stays selected, even below a loss marker.
            let newest_event = self
                .events_before_row(w.end)
                .checked_sub(1)
                .and_then(|i| self.log.match_seq(i))
                .map(|seq| self.rows_before(RowKey::Event(seq)))
                .filter(|&r| r >= w.start);
            self.stop_following();
            match newest_event.or_else(|| w.end.checked_sub(1)) {
                Some(last) => {
                    self.top = self.key_of_row(w.start);
                    self.selected = self.key_of_row(last);
                }
                None => {
                    self.top = RowKey::Event(self.log.end());
                    self.selected = RowKey::Event(self.log.end());
                }
            }
        } else {
            self.start_following();
        }
    }

    fn open_detail(&mut self) {
        if let Some(RowAt::Mark(index)) = self.selected_row() {
            if let Some(mark) = self.losses.get(index) {
                self.overlay = Overlay::Detail(loss_detail(mark));
            }
            return;
        }
        let Some(event) = self.selected_event() else {
            return;
        };
        let json = serde_json::to_string_pretty(&*event)
            .unwrap_or_else(|e| format!("(cannot show as JSON: {e})"));
        self.overlay = Overlay::Detail(Detail {
            title: format!("event #{} {}", event.id, event.event_type),
            lines: json.lines().map(str::to_owned).collect(),
            scroll: 0,
        });
    }

    pub(super) fn apply_filter_text(&mut self) {
        let text = self.filter.input.value().to_owned();
        match EventFilter::parse(&text) {
            Ok(filter) => {
                self.filter.error = None;
                if text.trim() != self.filter.applied.trim() {
                    self.log.set_filter(filter);
                    self.log.scan(SCAN_SLICE);
                }
                if self.filter.editing {
                    self.terms.update(&text, &self.log);
                }
                self.filter.applied = text;
            }
            Err(error) => self.filter.error = Some(error),
        }
    }

    fn commit_filter(&mut self) {
        if self.filter.error.is_some() {
            return;
        }
        self.terms.clear();
        self.filter.editing = false;
        if self
            .drill
            .as_ref()
            .is_some_and(|d| d.expression != self.filter.applied.trim())
        {
            // Another filter kept: the drill-down is over, and Esc no longer goes back from it.
            self.drill = None;
        }
        self.remember_filter();
    }

    /// Adds the filter in force to the recall list.
    fn remember_filter(&mut self) {
        let bar = &mut self.filter;
        let text = bar.applied.trim().to_owned();
        if !text.is_empty() && bar.recall.last() != Some(&text) {
            bar.recall.retain(|t| *t != text);
            bar.recall.push(text);
            if bar.recall.len() > RECALL_KEPT {
                bar.recall.remove(0);
            }
        }
        bar.recall_pos = None;
    }

    fn recall(&mut self, step: i64) {
        let bar = &mut self.filter;
        let len = bar.recall.len();
        if len == 0 {
            return;
        }
        let text = match (bar.recall_pos, step < 0) {
            (None, true) => {
                bar.draft = bar.input.value().to_owned();
                bar.recall_pos = Some(len - 1);
                bar.recall[len - 1].clone()
            }
            (None, false) => return,
            (Some(pos), true) => {
                let pos = pos.saturating_sub(1);
                bar.recall_pos = Some(pos);
                bar.recall[pos].clone()
            }
            (Some(pos), false) if pos + 1 < len => {
                bar.recall_pos = Some(pos + 1);
                bar.recall[pos + 1].clone()
            }
            (Some(_), false) => {
                bar.recall_pos = None;
                bar.draft.clone()
            }
        };
        bar.input = Input::new(text);
        self.apply_filter_text();
    }

    /// Index in the matches of the event the cursor (or, not scrubbing, the selection) is on; on a
    /// loss marker, the event before it (or after it, at the top).
    pub(super) fn cursor_index(&self) -> Option<usize> {
        match &self.scrub {
            Some(scrub) => self.log.match_index_after(scrub.cursor).checked_sub(1),
            None => match self.selected_row()? {
                RowAt::Event(index) => Some(index),
                RowAt::Mark(index) => {
                    let after = self
                        .losses
                        .get(index)
                        .map_or(0, |m| self.log.match_index_from(m.at));
                    let len = self.log.match_count();
                    after.checked_sub(1).or((after < len).then_some(after))
                }
            },
        }
    }

    pub(super) fn scrub_to_index(&mut self, index: usize) {
        let Some(cursor) = self.log.match_seq(index) else {
            return;
        };
        let gauges = match &self.scrub {
            Some(scrub) if scrub.cursor == cursor => scrub.gauges.clone(),
            // Moving forward a little (a replay, →): from where the cursor was.
            Some(scrub) => self.gauges_from(scrub.cursor, &scrub.gauges, cursor),
            None => self.gauges_at(cursor),
        };
        let replay = self.scrub.as_ref().and_then(|s| s.replay);
        let event = self.log.get(cursor);
        self.scrub = Some(Scrub {
            cursor,
            event,
            gauges,
            replay,
        });
    }

    fn scrub_step(&mut self, delta: i64) {
        let len = self.log.match_count();
        if len == 0 {
            return;
        }
        let current = match (&self.scrub, self.cursor_index()) {
            (_, Some(i)) => i as i64,
            (Some(_), None) => -1,
            (None, None) => return,
        };
        if self.scrub.is_none() && self.follow && delta > 0 {
            return;
        }
        let target = (current + delta).clamp(0, len as i64 - 1) as usize;
        self.scrub_to_index(target);
    }

    fn scrub_jump(&mut self, millis: i64) {
        let len = self.log.match_count();
        let Some(current) = self.cursor_index() else {
            return;
        };
        if self.scrub.is_none() && self.follow && millis > 0 {
            return;
        }
        let Some(at) = self.match_millis(current) else {
            return;
        };
        let goal = at.saturating_add(millis);
        let target = if millis < 0 {
            let after = self.first_match_after_millis(goal);
            after.saturating_sub(1).min(current.saturating_sub(1))
        } else {
            let from = self.first_match_after_millis(goal - 1);
            from.max(current + 1).min(len - 1)
        };
        self.scrub_to_index(target);
    }

    /// Index of the first match stamped after `millis` (matches are taken as time-ordered), by
    /// bisection over the rows' times.
    fn first_match_after_millis(&self, millis: i64) -> usize {
        let (mut lo, mut hi) = (0, self.log.match_count());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at_or_before = self
                .log
                .match_time(mid)
                .is_some_and(|t| crate::epoch::millis(t) <= millis);
            if at_or_before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn replay_start(&self, cursor: Seq) -> f64 {
        self.log
            .time_at(cursor)
            .map_or(0.0, |t| crate::epoch::millis(t) as f64)
    }

    fn new_replay(&self, speed: u32) -> Replay {
        Replay {
            speed,
            original_pace: false,
            clock_ms: 0.0,
            last_tick: self.now,
        }
    }

    fn cycle_replay(&mut self) {
        if self.scrub.is_none() {
            if self.follow {
                return;
            }
            match self.cursor_index() {
                Some(i) => self.scrub_to_index(i),
                None => return,
            }
        }
        let Some(scrub) = &self.scrub else {
            return;
        };
        let cursor = scrub.cursor;
        // 1x, 10x, 100x, then the original pace (1x, every silence kept), then off.
        let next = match scrub.replay {
            None => Some((SPEEDS[0], false)),
            Some(r) if r.original_pace => None,
            Some(r) => Some(
                SPEEDS
                    .iter()
                    .position(|s| *s == r.speed)
                    .and_then(|i| SPEEDS.get(i + 1))
                    .map_or((1, true), |&speed| (speed, false)),
            ),
        };
        let clock = scrub
            .replay
            .map_or_else(|| self.replay_start(cursor), |r| r.clock_ms);
        let replay = next.map(|(speed, original_pace)| Replay {
            clock_ms: clock,
            original_pace,
            ..self.new_replay(speed)
        });
        if let Some(scrub) = &mut self.scrub {
            scrub.replay = replay;
        }
    }

    fn advance_replay(&mut self, now: SystemTime) {
        let Some(replay) = self.scrub.as_ref().and_then(|s| s.replay) else {
            return;
        };
        let elapsed = now
            .duration_since(replay.last_tick)
            .unwrap_or_default()
            .as_secs_f64();
        let speed = f64::from(replay.speed);
        let mut clock_ms = replay.clock_ms + elapsed * 1000.0 * speed;
        let len = self.log.match_count();
        let mut reached = self.first_match_after_millis(clock_ms.floor() as i64);
        if !replay.original_pace {
            // A long silence ahead is cut to `LONGEST_SILENCE_MS` of wall-clock time.
            if let Some(next) = self.match_millis(reached) {
                let wait_ms = (next as f64 - clock_ms) / speed;
                if wait_ms > LONGEST_SILENCE_MS {
                    clock_ms = next as f64 - LONGEST_SILENCE_MS * speed;
                    reached = self.first_match_after_millis(clock_ms.floor() as i64);
                }
            }
        }
        if let Some(scrub) = &mut self.scrub {
            scrub.replay = Some(Replay {
                clock_ms,
                last_tick: now,
                ..replay
            });
        }
        if reached >= len {
            // Caught up with the live edge: the replay ends in LIVE.
            self.scrub = None;
            self.start_following();
            return;
        }
        if let Some(current) = self.cursor_index() {
            if reached > current + 1 {
                self.scrub_to_index(reached - 1);
            }
        }
    }
}
