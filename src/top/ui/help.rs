//! The help overlay: every row of the key table ([`KEYMAP`]), under a heading for where it acts. In
//! one column when it fits the height, else in two when they fit the width, else in one column that
//! scrolls (`j`/`k`).

use super::{centered, fit_width, width};
use crate::top::keymap::{section, KEYMAP};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

/// Columns between the two columns.
const GAP: u16 = 2;

/// Lines of one column: headings and rows, each section after a heading.
fn sections() -> Vec<Vec<Line<'static>>> {
    let keys_width = KEYMAP
        .iter()
        .map(|b| width(&b.keys_label()))
        .max()
        .unwrap_or(0);
    let mut out: Vec<Vec<Line<'static>>> = Vec::new();
    let mut current: Option<&[crate::top::Focus]> = None;
    for binding in KEYMAP {
        if current != Some(binding.focus) {
            current = Some(binding.focus);
            out.push(vec![Line::styled(
                format!(" {}", section(binding.focus)),
                Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            )]);
        }
        if let Some(lines) = out.last_mut() {
            lines.push(Line::from(vec![
                Span::styled(
                    format!("   {} ", fit_width(&binding.keys_label(), keys_width)),
                    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
                ),
                Span::raw(binding.help),
            ]));
        }
    }
    out
}

/// How the help is laid out in a screen of `area`: the popup and its columns' lines.
struct HelpLayout {
    popup: Rect,
    columns: Vec<Vec<Line<'static>>>,
    scrolls: bool,
}

fn layout(area: Rect) -> HelpLayout {
    let sections = sections();
    let all: Vec<Line<'static>> = sections.iter().flatten().cloned().collect();
    let column_width = all.iter().map(Line::width).max().unwrap_or(0) as u16 + 1;
    let lines = all.len() as u16;
    if lines + 2 <= area.height || area.width < column_width * 2 + 2 + GAP {
        let popup = centered(area, column_width + 2, lines + 2);
        return HelpLayout {
            popup,
            scrolls: lines + 2 > popup.height,
            columns: vec![all],
        };
    }
    // Two columns, split at the section boundary that balances them best.
    let half = all.len().div_ceil(2);
    let mut left: Vec<Line<'static>> = Vec::new();
    let mut right: Vec<Line<'static>> = Vec::new();
    for section in sections {
        if right.is_empty() && (left.is_empty() || left.len() + section.len() / 2 <= half) {
            left.extend(section);
        } else {
            right.extend(section);
        }
    }
    let height = left.len().max(right.len()) as u16 + 2;
    let popup = centered(area, column_width * 2 + 2 + GAP, height);
    HelpLayout {
        popup,
        scrolls: height > popup.height,
        columns: vec![left, right],
    }
}

/// Where the overlay goes in a screen `area`.
pub(super) fn area(area: Rect) -> Rect {
    layout(area).popup
}

/// The most the help scrolls in a `width` x `height` screen (0 when all of it shows).
pub(crate) fn max_scroll(width: u16, height: u16) -> usize {
    let layout = layout(Rect::new(0, 0, width, height));
    let shown = usize::from(layout.popup.height.saturating_sub(2));
    let longest = layout.columns.iter().map(Vec::len).max().unwrap_or(0);
    longest.saturating_sub(shown)
}

/// Draws the overlay in `popup` (cleared by the caller), in a screen `area`, scrolled `scroll` lines.
pub(super) fn render(frame: &mut Frame<'_>, area: Rect, popup: Rect, scroll: usize) {
    let layout = layout(area);
    let title = if layout.scrolls {
        " keys ─ ? or Esc closes ─ j/k scroll "
    } else {
        " keys ─ ? or Esc closes "
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let scroll = scroll.min(max_scroll(area.width, area.height));
    let constraints = vec![Constraint::Fill(1); layout.columns.len()];
    let cells = Layout::horizontal(constraints).spacing(GAP).split(inner);
    for (lines, cell) in layout.columns.into_iter().zip(cells.iter()) {
        let lines: Vec<Line<'static>> = lines.into_iter().skip(scroll).collect();
        frame.render_widget(Paragraph::new(lines), *cell);
    }
}
