//! Drawing: [`render`] reads a [`State`] and draws one frame; one file per pane. Nothing here changes
//! the state or does I/O, and only the rows on screen are formatted, whatever the history holds.

pub(crate) mod detail;
mod events;
mod filter_bar;
mod header;
pub(crate) mod help;
mod history;
mod progress;

use super::state::{Focus, State};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;
use std::time::{Duration, SystemTime};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// The smallest terminal the monitor draws its panes in.
pub const MIN_WIDTH: u16 = 60;
/// The smallest terminal height the monitor draws its panes in.
pub const MIN_HEIGHT: u16 = 12;

/// Where each pane goes.
struct Areas {
    header: Rect,
    filter: Rect,
    events: Rect,
    progress: Rect,
    history: Rect,
    footer: Rect,
}

fn areas(area: Rect) -> Option<Areas> {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return None;
    }
    let [header, filter, middle, history, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(area);
    let progress_width = (area.width * 32 / 100).clamp(26, 48);
    let [events, progress] =
        Layout::horizontal([Constraint::Min(20), Constraint::Length(progress_width)]).areas(middle);
    Some(Areas {
        header,
        filter,
        events,
        progress,
        history,
        footer,
    })
}

/// Rows of the event pane in a terminal of this size (0 when too small to draw in).
pub(crate) fn event_rows(width: u16, height: u16) -> usize {
    areas(Rect::new(0, 0, width, height))
        .map_or(0, |a| usize::from(a.events.height.saturating_sub(2)))
}

/// Draws `state` into `frame`.
pub fn render(state: &State, frame: &mut Frame<'_>) {
    // A past view (scrubbing older than held) is drawn in place of the live one.
    let state = state.shown();
    let area = frame.area();
    let Some(areas) = areas(area) else {
        too_small(frame, area);
        return;
    };
    header::render(state, frame, areas.header);
    filter_bar::render(state, frame, areas.filter);
    events::render(state, frame, areas.events);
    progress::render(state, frame, areas.progress);
    history::render(state, frame, areas.history);
    footer(state.focus(), frame, areas.footer);
    if let Some(scroll) = state.help_scroll() {
        let popup = help::area(area);
        clear_popup(frame, popup);
        help::render(frame, area, popup, scroll);
    }
    if let Some(detail) = state.detail() {
        let popup = detail::area(detail, area);
        clear_popup(frame, popup);
        detail::render(detail, frame, popup);
    }
}

fn too_small(frame: &mut Frame<'_>, area: Rect) {
    let text = format!(
        "terminal too small: ipckit-top needs {MIN_WIDTH}x{MIN_HEIGHT}, this is {}x{} (q quits)",
        area.width, area.height
    );
    frame.render_widget(
        Paragraph::new(text)
            .style(Style::new().fg(Color::Yellow))
            .wrap(Wrap { trim: true }),
        area,
    );
}

/// The footer: the keys of the focused place that the key table puts there.
fn footer(focus: Focus, frame: &mut Frame<'_>, area: Rect) {
    let mut spans = vec![Span::raw(" ")];
    for binding in super::keymap::footer(focus) {
        if let Some((word, _)) = binding.footer {
            let keys: Vec<String> = binding
                .footer_keys()
                .iter()
                .map(|(k, _)| k.label())
                .collect();
            spans.push(Span::styled(
                keys.join("/"),
                Style::new().fg(Color::White).add_modifier(Modifier::BOLD),
            ));
            spans.push(Span::raw(format!(" {word}  ")));
        }
    }
    frame.render_widget(
        Paragraph::new(Line::from(spans)).style(Style::new().fg(Color::Gray)),
        area,
    );
}

/// A pane's frame: a focused pane's border and title stand out.
pub(crate) fn pane_block(title: impl Into<Line<'static>>, focused: bool) -> Block<'static> {
    let block = Block::bordered().title(title);
    if focused {
        block
            .border_style(Style::new().fg(Color::Cyan))
            .title_style(Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD))
    } else {
        block
    }
}

/// A rectangle of at most `width` x `height` centred in `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}

/// Clears `popup` for an overlay. A wide character (CJK, an emoji) drawn just left of it would also
/// cover the popup's left border column, and the terminal would show half of it there (ratatui's diff
/// skips the cell a wide character covers); such a character is replaced by a space.
fn clear_popup(frame: &mut Frame<'_>, popup: Rect) {
    frame.render_widget(Clear, popup);
    let buffer = frame.buffer_mut();
    for y in popup.top()..popup.bottom() {
        for x in popup.x.saturating_sub(3)..popup.x {
            if let Some(cell) = buffer.cell_mut((x, y)) {
                if usize::from(x) + cell.symbol().width() > usize::from(popup.x) {
                    cell.set_symbol(" ");
                }
            }
        }
    }
}

/// Display width of `text` in terminal columns.
pub(crate) fn width(text: &str) -> usize {
    text.width()
}

/// `text` in exactly `columns` terminal columns: padded with spaces, or cut with `…` (a grapheme is
/// never split, and a wide one that would cross the edge is left out).
pub(crate) fn fit_width(text: &str, columns: usize) -> String {
    let total = text.width();
    if total <= columns {
        let mut out = String::with_capacity(text.len() + columns - total);
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', columns - total));
        return out;
    }
    let mut out = String::new();
    let mut used = 0;
    let room = columns.saturating_sub(1);
    for grapheme in text.graphemes(true) {
        let w = grapheme.width();
        if used + w > room {
            break;
        }
        out.push_str(grapheme);
        used += w;
    }
    if columns > 0 {
        out.push('…');
        used += 1;
    }
    out.extend(std::iter::repeat_n(' ', columns.saturating_sub(used)));
    out
}

/// `text` as one line: tabs and line breaks become spaces, other control characters `�` (the
/// terminal would drop them and run the words on either side together).
pub(crate) fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// `n` with thousands separators: `48,210`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A short duration: `7s`, `3m12s`, `1h04m`.
pub(crate) fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// `time` formatted with `format`, in UTC or local time.
pub(crate) fn clock(time: SystemTime, utc: bool, format: &str) -> String {
    if utc {
        chrono::DateTime::<chrono::Utc>::from(time)
            .format(format)
            .to_string()
    } else {
        chrono::DateTime::<chrono::Local>::from(time)
            .format(format)
            .to_string()
    }
}

/// A compact number: `950`, `12.5k`, `3.2M`.
pub(crate) fn compact(n: f64) -> String {
    let a = n.abs();
    if a >= 1e9 {
        format!("{:.1}G", n / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_fitted_by_display_width_without_splitting_a_grapheme() {
        assert_eq!(fit_width("abc", 5), "abc  ");
        assert_eq!(fit_width("渲染任务", 8), "渲染任务");
        assert_eq!(fit_width("渲染任务", 6), "渲染… ");
        assert_eq!(fit_width("渲染任务", 7), "渲染任…");
        assert_eq!(width(&fit_width("🇩🇪🇫🇷x", 4)), 4);
        assert_eq!(fit_width("🇩🇪🇫🇷x", 4), "🇩🇪… ");
        assert_eq!(fit_width("e\u{301}e\u{301}e\u{301}", 2), "e\u{301}…");
    }

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(48210), "48,210");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(short_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(compact(3_200_000.0), "3.2M");
        assert_eq!(compact(72.0), "72");
    }
}
