//! The event pane: the matching events around the selection or the cursor, newest at the bottom.

use super::{clock, one_line};
use crate::event_stream::Event;
use crate::top::state::{Mode, State};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

/// The colour of an event's type family.
pub(crate) fn type_color(event_type: &str) -> Color {
    match event_type {
        "task.failed" | "log.error" | "log.stderr" | "system.error" => Color::Red,
        "log.warn" => Color::Yellow,
        "task.completed" => Color::Green,
        t if t.starts_with("task.") => Color::Cyan,
        t if t.starts_with("mcp.") => Color::Magenta,
        t if t.starts_with("system.") => Color::Blue,
        t if t.starts_with("log.") => Color::Gray,
        _ => Color::White,
    }
}

/// What the data column shows: the message if there is one, else compact JSON.
fn summary(event: &Event) -> String {
    if let Some(message) = event.data.get("message").and_then(|m| m.as_str()) {
        return one_line(message).into_owned();
    }
    match &event.data {
        serde_json::Value::Null => String::new(),
        data => {
            let mut text = data.to_string();
            if text.len() > 240 {
                let mut cut = 240;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push('…');
            }
            text
        }
    }
}

/// `text` in exactly `width` columns plus a space: padded, or cut with `…`.
fn fit(text: &str, width: usize) -> String {
    let text = one_line(text);
    let count = text.chars().count();
    if count <= width {
        format!("{text:<width$} ")
    } else {
        let mut out: String = text.chars().take(width - 1).collect();
        out.push_str("… ");
        out
    }
}

fn row(event: &Event, utc: bool, selected: bool, widths: (usize, usize)) -> Line<'static> {
    let (type_width, row_width) = widths;
    let color = type_color(&event.event_type);
    let mut line = Line::from(vec![
        Span::styled(
            clock(event.timestamp, utc, "%H:%M:%S%.3f "),
            Style::new().fg(Color::DarkGray),
        ),
        Span::styled(
            format!("#{:<7} ", event.id),
            Style::new().fg(Color::DarkGray),
        ),
        Span::styled(fit(&event.event_type, type_width), Style::new().fg(color)),
        Span::raw(fit(event.resource_id.as_deref().unwrap_or("-"), 16)),
        Span::raw(summary(event)),
    ]);
    if selected {
        // The highlight spans the whole row, not just its text.
        let used = line.width();
        if used < row_width {
            line.push_span(Span::raw(" ".repeat(row_width - used)));
        }
        line = line.style(Style::new().add_modifier(Modifier::REVERSED));
    }
    line
}

pub(super) fn render(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let window = state.window();
    let log = state.log();
    let type_width = if area.width >= 88 { 26 } else { 22 };
    let lines: Vec<Line<'static>> = (window.start..window.end)
        .filter_map(|i| {
            let (_, event) = log.match_event(i)?;
            Some(row(
                event,
                state.utc(),
                window.selected == Some(i),
                (type_width, usize::from(area.width.saturating_sub(2))),
            ))
        })
        .collect();
    let title = match state.mode() {
        Mode::Live => " events ".to_owned(),
        Mode::Paused => {
            let below = log.matches().len().saturating_sub(window.end);
            format!(" events ─ paused, {below} below ")
        }
        Mode::Scrubbing => match state.scrub_event() {
            Some(event) => format!(" events ─ as at #{} ", event.id),
            None => " events ─ scrubbing ".to_owned(),
        },
    };
    let block = Block::bordered().title(title);
    let body = if lines.is_empty() {
        let hint = if log.is_empty() {
            "waiting for events…"
        } else {
            "no event matches the filter"
        };
        Paragraph::new(Line::styled(hint, Style::new().fg(Color::DarkGray)))
    } else {
        Paragraph::new(lines)
    };
    frame.render_widget(body.block(block), area);
}
