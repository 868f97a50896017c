//! The filter bar: the expression being typed or in force, the match count, and parse errors; or,
//! after `w`, the prompt for the file to write the matching events to. (While the filter is edited,
//! the counts of its terms are on the event pane's top border, right under it.)

use super::thousands;
use crate::top::state::State;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

const PROMPT: &str = " filter> ";
const WRITE_PROMPT: &str = " write to> ";

/// The prompt of `w`: the file name being edited, and what Enter will do.
fn render_prompt(state: &State, frame: &mut Frame<'_>, area: Rect, input: &tui_input::Input) {
    let count = thousands(state.match_count() as u64);
    let noun = if state.match_count() == 1 {
        "event"
    } else {
        "events"
    };
    let hint = Span::styled(
        format!("Enter writes the {count} matching {noun} as NDJSON · Esc cancels "),
        Style::new().fg(Color::Cyan),
    );
    let hint_width = (hint.width() as u16).min(area.width / 2);
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Min(10), Constraint::Length(hint_width)]).areas(area);
    let text_width = usize::from(left_area.width).saturating_sub(WRITE_PROMPT.len());
    let scroll = input.visual_scroll(text_width);
    let value: String = input.value().chars().skip(scroll).collect();
    let line = Line::from(vec![
        Span::styled(
            WRITE_PROMPT,
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            value,
            Style::new().fg(Color::White).add_modifier(Modifier::BOLD),
        ),
    ]);
    frame.render_widget(Paragraph::new(line), left_area);
    frame.render_widget(Paragraph::new(Line::from(hint)).right_aligned(), right_area);
    let cursor = input.visual_cursor().saturating_sub(scroll);
    let x = left_area.x + (WRITE_PROMPT.len() + cursor) as u16;
    frame.set_cursor_position((x.min(left_area.right().saturating_sub(1)), area.y));
}

pub(super) fn render(state: &State, frame: &mut Frame<'_>, area: Rect) {
    if let Some(input) = state.prompt_input() {
        render_prompt(state, frame, area, input);
        return;
    }
    let bar = state.filter_bar();
    let right = match state.filter_error() {
        Some(error) => Span::styled(format!("✗ {error} "), Style::new().fg(Color::Red)),
        None => {
            let total = thousands(state.history_len() as u64);
            let matched = thousands(state.match_count() as u64);
            let text = if state.has_background_work() {
                format!("≥{matched} of {total} match (counting…) ")
            } else {
                format!("{matched} of {total} match ")
            };
            Span::styled(text, Style::new().fg(Color::Cyan))
        }
    };
    let right_width = (right.width() as u16).min(area.width / 2);
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Min(10), Constraint::Length(right_width)]).areas(area);
    let text_width = usize::from(left_area.width).saturating_sub(PROMPT.len());
    let scroll = bar.input.visual_scroll(text_width);
    let value: String = bar.input.value().chars().skip(scroll).collect();
    let text_style = if state.filter_error().is_some() {
        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
    } else if bar.editing {
        Style::new().fg(Color::White).add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    let prompt_style = if bar.editing {
        Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::DarkGray)
    };
    let mut spans = vec![
        Span::styled(PROMPT, prompt_style),
        Span::styled(value, text_style),
    ];
    if !bar.editing && bar.input.value().is_empty() {
        spans.push(Span::styled(
            "(none: / to filter, e.g. task.* !task.progress res:render-*)",
            Style::new().fg(Color::DarkGray),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), left_area);
    frame.render_widget(
        Paragraph::new(Line::from(right)).right_aligned(),
        right_area,
    );
    if bar.editing {
        let cursor = bar.input.visual_cursor().saturating_sub(scroll);
        let x = left_area.x + (PROMPT.len() + cursor) as u16;
        frame.set_cursor_position((x.min(left_area.right().saturating_sub(1)), area.y));
    }
}
