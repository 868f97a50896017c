//! The help overlay: every key.

use super::centered;
use crate::top::action::KEYS;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

/// Where the overlay goes in a screen `area`.
pub(super) fn area(area: Rect) -> Rect {
    centered(area, 72, KEYS.len() as u16 + 2)
}

/// Draws the overlay in `popup` (cleared by the caller).
pub(super) fn render(frame: &mut Frame<'_>, popup: Rect) {
    let lines: Vec<Line<'static>> = KEYS
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(
                    format!(" {keys:<11}"),
                    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys ─ ? or Esc closes ")),
        popup,
    );
}
