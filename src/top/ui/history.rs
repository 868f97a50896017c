//! The history scrubber: event rate over the kept history, with the cursor.

use super::{clock, thousands};
use crate::top::state::{Mode, State};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

const LEVELS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

pub(super) fn render(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let block = Block::bordered().title(" history ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let info = match (state.mode(), state.scrub_event()) {
        (Mode::Scrubbing, Some(event)) => {
            let replay = match state.replay_speed() {
                Some(_) if state.replay_original_pace() => " ▶ original pace".to_owned(),
                Some(speed) => format!(" ▶ {speed}x"),
                None => String::new(),
            };
            format!(
                " ◆ {} (#{}){replay} ",
                clock(event.timestamp, state.utc(), "%H:%M:%S"),
                event.id
            )
        }
        _ => format!(" {} kept ", thousands(state.history_len() as u64)),
    };
    let width = usize::from(inner.width).saturating_sub(info.chars().count());
    let timeline = state.timeline();
    let columns = timeline.columns(width);
    let max = columns.iter().copied().max().unwrap_or(0).max(1);
    let cursor = state
        .scrub_event()
        .and_then(|e| timeline.column_of(e.timestamp, width));
    let mut spans: Vec<Span<'static>> = Vec::with_capacity(3);
    let chars: String = columns
        .iter()
        .map(|&n| {
            if n == 0 {
                LEVELS[0]
            } else {
                LEVELS[(1 + (n * 7 / max) as usize).min(8)]
            }
        })
        .collect();
    let spark = Style::new().fg(Color::Green);
    match cursor {
        Some(col) => {
            let before: String = chars.chars().take(col).collect();
            let at: String = chars
                .chars()
                .nth(col)
                .map_or(' ', |c| if c == ' ' { '◆' } else { c })
                .to_string();
            let after: String = chars.chars().skip(col + 1).collect();
            spans.push(Span::styled(before, spark));
            spans.push(Span::styled(
                at,
                Style::new()
                    .fg(Color::Magenta)
                    .add_modifier(Modifier::REVERSED),
            ));
            spans.push(Span::styled(after, Style::new().fg(Color::DarkGray)));
        }
        None => spans.push(Span::styled(chars, spark)),
    }
    spans.push(Span::styled(info, Style::new().fg(Color::Magenta)));
    frame.render_widget(Paragraph::new(Line::from(spans)), inner);
}
