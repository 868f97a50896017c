//! The detail overlay: one event as pretty-printed JSON.

use super::centered;
use crate::top::state::Detail;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

pub(super) fn render(detail: &Detail, frame: &mut Frame<'_>, area: Rect) {
    let widest = detail
        .lines
        .iter()
        .map(|l| l.chars().count())
        .chain([detail.title.chars().count() + 4, 28])
        .max()
        .unwrap_or(0);
    let width = u16::try_from(widest + 4)
        .unwrap_or(u16::MAX)
        .min(area.width.saturating_sub(8));
    let height = u16::try_from(detail.lines.len() + 2)
        .unwrap_or(u16::MAX)
        .min(area.height.saturating_sub(4));
    let popup = centered(area, width, height);
    let rows = usize::from(popup.height.saturating_sub(2));
    let lines: Vec<Line<'_>> = detail
        .lines
        .iter()
        .skip(detail.scroll)
        .take(rows)
        .map(|l| Line::raw(l.as_str()))
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(format!(" {} ", detail.title))
                .title_bottom(" j/k scroll ─ Esc closes "),
        ),
        popup,
    );
}
