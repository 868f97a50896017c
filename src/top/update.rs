//! [`update`]: the one place the monitor's state changes.

use super::action::Action;
use super::log::{epoch_millis, Seq};
use super::loss::{reason_long, Mark};
use super::state::{
    Connection, Detail, Overlay, Replay, RowAt, RowKey, Scrub, State, CHECKPOINT_EVERY,
};
use crate::event_stream::{Event, EventFilter};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tui_input::Input;

/// Events tested against a new filter per [`Action::Scan`] (and at once when the filter changes).
pub const SCAN_SLICE: usize = 8192;

/// Earlier filters kept for recall.
const RECALL_KEPT: usize = 50;

/// Replay speeds, in the order the replay key cycles through them.
const SPEEDS: [u32; 3] = [1, 10, 100];

/// Applies `action` to `state`.
pub fn update(state: &mut State, action: Action) {
    match action {
        Action::Quit => state.quit = true,
        Action::ToggleHelp => {
            state.overlay = if state.overlay == Overlay::Help {
                Overlay::None
            } else {
                Overlay::Help
            }
        }
        Action::CloseOverlay => state.overlay = Overlay::None,
        Action::Move(delta) => state.move_selection(delta),
        Action::PageUp => state.move_selection(-(state.event_rows() as i64)),
        Action::PageDown => state.move_selection(state.event_rows() as i64),
        Action::First => state.move_selection(i64::MIN / 2),
        Action::Live => {
            state.scrub = None;
            state.follow = true;
        }
        Action::TogglePause => state.toggle_pause(),
        Action::OpenDetail => state.open_detail(),
        Action::ScrollDetail(delta) => {
            if let Overlay::Detail(detail) = &mut state.overlay {
                let rows = crate::top::ui::detail::rows(detail, state.size.0).len();
                let max = rows.saturating_sub(1) as i64;
                detail.scroll = (detail.scroll as i64 + delta).clamp(0, max) as usize;
            }
        }
        Action::FilterStart => {
            let bar = &mut state.filter;
            bar.editing = true;
            bar.before_edit = bar.applied.clone();
            bar.input = Input::new(bar.applied.clone());
            bar.recall_pos = None;
            bar.error = None;
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
        }
        Action::FilterRecallPrev => state.recall(-1),
        Action::FilterRecallNext => state.recall(1),
        Action::ScrubBack => state.scrub_step(-1),
        Action::ScrubForward => state.scrub_step(1),
        Action::ScrubJumpBack => state.scrub_jump(-1000),
        Action::ScrubJumpForward => state.scrub_jump(1000),
        Action::ScrubOldest => {
            if !state.log.matches().is_empty() {
                state.scrub_to_index(0);
            }
        }
        Action::CycleReplay => state.cycle_replay(),
        Action::Events { events, at } => state.ingest(events, at),
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
        Action::Scan => {
            state.log.scan(SCAN_SLICE);
        }
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
    fn ingest(&mut self, events: Vec<Arc<Event>>, at: SystemTime) {
        self.arrivals.push_back((at, events.len()));
        self.received += events.len() as u64;
        for event in events {
            let seq = self.log.end();
            if seq.is_multiple_of(CHECKPOINT_EVERY) && seq > 0 {
                self.checkpoints.push_back((seq, self.gauges.clone()));
            }
            self.gauges.apply(&event);
            self.timeline.add(event.timestamp);
            if let Some(old) = self.log.push(event) {
                self.timeline.remove(old.timestamp);
                // The oldest snapshot moves past the event that left, so it stays at the log's base.
                if let Some(front) = self.checkpoints.front_mut() {
                    front.1.apply(&old);
                    front.0 += 1;
                }
                if self.checkpoints.len() > 1 && self.checkpoints[1].0 <= self.checkpoints[0].0 {
                    self.checkpoints.pop_front();
                }
            }
        }
        self.losses.evict(self.log.base());
        if let Some(scrub) = &mut self.scrub {
            scrub.cursor = scrub.cursor.max(self.log.base());
        }
    }

    fn tick(&mut self, now: SystemTime) {
        self.now = now;
        let horizon = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        while self.arrivals.front().is_some_and(|(at, _)| *at < horizon) {
            self.arrivals.pop_front();
        }
        self.rate = self.arrivals.iter().map(|(_, n)| *n as f64).sum();
        self.advance_replay(now);
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
        self.follow = false;
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
                .and_then(|i| self.log.matches().get(i))
                .map(|&seq| self.rows_before(RowKey::Event(seq)))
                .filter(|&r| r >= w.start);
            self.follow = false;
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
            self.follow = true;
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
        let json = serde_json::to_string_pretty(&**event)
            .unwrap_or_else(|e| format!("(cannot show as JSON: {e})"));
        self.overlay = Overlay::Detail(Detail {
            title: format!("event #{} {}", event.id, event.event_type),
            lines: json.lines().map(str::to_owned).collect(),
            scroll: 0,
        });
    }

    fn apply_filter_text(&mut self) {
        let text = self.filter.input.value().to_owned();
        match EventFilter::parse(&text) {
            Ok(filter) => {
                self.filter.error = None;
                if text.trim() != self.filter.applied.trim() {
                    self.log.set_filter(filter);
                    self.log.scan(SCAN_SLICE);
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
        let bar = &mut self.filter;
        bar.editing = false;
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
    fn cursor_index(&self) -> Option<usize> {
        match &self.scrub {
            Some(scrub) => self.log.match_index_after(scrub.cursor).checked_sub(1),
            None => match self.selected_row()? {
                RowAt::Event(index) => Some(index),
                RowAt::Mark(index) => {
                    let after = self
                        .losses
                        .get(index)
                        .map_or(0, |m| self.log.match_index_from(m.at));
                    let len = self.log.matches().len();
                    after.checked_sub(1).or((after < len).then_some(after))
                }
            },
        }
    }

    fn scrub_to_index(&mut self, index: usize) {
        let Some(&cursor) = self.log.matches().get(index) else {
            return;
        };
        let gauges = self.gauges_at(cursor);
        let replay = self.scrub.as_ref().and_then(|s| s.replay);
        self.scrub = Some(Scrub {
            cursor,
            gauges,
            replay,
        });
    }

    fn scrub_step(&mut self, delta: i64) {
        let len = self.log.matches().len();
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
        let len = self.log.matches().len();
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

    /// Index of the first match stamped after `millis` (matches are taken as time-ordered).
    fn first_match_after_millis(&self, millis: i64) -> usize {
        let log = &self.log;
        log.matches().partition_point(|&seq| {
            log.get(seq)
                .is_some_and(|e| epoch_millis(e.timestamp) <= millis)
        })
    }

    fn replay_start(&self, cursor: Seq) -> f64 {
        self.log
            .get(cursor)
            .map_or(0.0, |e| epoch_millis(e.timestamp) as f64)
    }

    fn new_replay(&self, speed: u32) -> Replay {
        Replay {
            speed,
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
        let next = match scrub.replay {
            None => Some(SPEEDS[0]),
            Some(r) => SPEEDS
                .iter()
                .position(|s| *s == r.speed)
                .and_then(|i| SPEEDS.get(i + 1))
                .copied(),
        };
        let clock = scrub
            .replay
            .map_or_else(|| self.replay_start(cursor), |r| r.clock_ms);
        let replay = next.map(|speed| Replay {
            clock_ms: clock,
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
        let clock_ms = replay.clock_ms + elapsed * 1000.0 * f64::from(replay.speed);
        if let Some(scrub) = &mut self.scrub {
            scrub.replay = Some(Replay {
                clock_ms,
                last_tick: now,
                ..replay
            });
        }
        let len = self.log.matches().len();
        let reached = self.first_match_after_millis(clock_ms.floor() as i64);
        if reached >= len {
            // Caught up with the live edge: the replay ends in LIVE.
            self.scrub = None;
            self.follow = true;
            return;
        }
        if let Some(current) = self.cursor_index() {
            if reached > current + 1 {
                self.scrub_to_index(reached - 1);
            }
        }
    }
}
