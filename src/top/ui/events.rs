//! The event pane: the matching events around the selection or the cursor, newest at the bottom, and
//! between them a "⚠ N events lost (why)" row where the monitor missed events, whatever the filter.

use super::{clock, fit_width, one_line, thousands, width};
use crate::event_stream::Event;
use crate::top::loss::reason_short;
use crate::top::source::Loss;
use crate::top::state::{Focus, Mode, RowAt, State};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
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

/// `text` in exactly `columns` terminal columns plus a space: padded, or cut with `…`.
fn fit(text: &str, columns: usize) -> String {
    let mut out = fit_width(&one_line(text), columns);
    out.push(' ');
    out
}

/// Column widths of the event pane, fitted to the rows on screen.
#[derive(Clone, Copy)]
struct Columns {
    id: usize,
    event_type: usize,
    resource: usize,
    /// 0 when no origin column is shown.
    origin: usize,
    row: usize,
}

impl Columns {
    /// Id, type and resource columns as wide as their widest value on screen (type and resource up to
    /// a cap, the rest of the row left to the message).
    fn fit<'a>(events: impl Iterator<Item = &'a Event>, type_cap: usize, row: usize) -> Columns {
        let mut columns = Columns {
            id: 1,
            event_type: 4,
            resource: 1,
            origin: 0,
            row,
        };
        for event in events {
            columns.id = columns.id.max(event.id.to_string().len());
            columns.event_type = columns.event_type.max(width(&one_line(&event.event_type)));
            columns.resource = columns.resource.max(
                event
                    .resource_id
                    .as_deref()
                    .map_or(1, |r| width(&one_line(r))),
            );
        }
        columns.event_type = columns.event_type.min(type_cap);
        columns.resource = columns.resource.min(RESOURCE_CAP);
        columns
    }

    /// Columns left for the message.
    fn message(&self) -> usize {
        // "HH:MM:SS.mmm [origin ]#id type resource ", each followed by a space.
        let origin = if self.origin > 0 { self.origin + 1 } else { 0 };
        self.row
            .saturating_sub(13 + origin + self.id + 2 + self.event_type + 1 + self.resource + 1)
    }
}

/// The widest the type column gets: `mcp.notifications.progress` in full.
const TYPE_CAP: usize = 26;
/// The widest the type column gets when the message would otherwise have less than `MESSAGE_MIN`.
const NARROW_TYPE_CAP: usize = 22;
const MESSAGE_MIN: usize = 20;
/// The widest the resource column gets.
const RESOURCE_CAP: usize = 20;
/// The widest the origin column gets.
const ORIGIN_CAP: usize = 16;

fn row(
    event: &Event,
    origin: Option<&str>,
    utc: bool,
    selected: bool,
    columns: Columns,
) -> Line<'static> {
    let color = type_color(&event.event_type);
    let mut spans = vec![Span::styled(
        clock(event.timestamp, utc, "%H:%M:%S%.3f "),
        Style::new().fg(Color::DarkGray),
    )];
    if let Some(origin) = origin {
        spans.push(Span::styled(
            fit(origin, columns.origin),
            Style::new().fg(Color::Blue),
        ));
    }
    spans.extend([
        Span::styled(
            format!("#{:<width$} ", event.id, width = columns.id),
            Style::new().fg(Color::DarkGray),
        ),
        Span::styled(
            fit(&event.event_type, columns.event_type),
            Style::new().fg(color),
        ),
        Span::raw(fit(
            event.resource_id.as_deref().unwrap_or("-"),
            columns.resource,
        )),
        Span::raw(summary(event)),
    ]);
    let mut line = Line::from(spans);
    if selected {
        // The highlight spans the whole row, not just its text.
        let used = line.width();
        if used < columns.row {
            line.push_span(Span::raw(" ".repeat(columns.row - used)));
        }
        line = line.style(Style::new().add_modifier(Modifier::REVERSED));
    }
    line
}

/// The row of a loss marker: "⚠ 1,204 events lost (monitor fell behind) · #5 to #1208", across the
/// pane in colours that stand out from every event row.
fn loss_row(loss: &Loss, selected: bool, row_width: usize) -> Line<'static> {
    let noun = if loss.count == 1 { "event" } else { "events" };
    let mut text = if loss.count == 0 {
        // The source could not count them (a bus that restarted takes its count with it).
        format!("⚠ events may be lost ({})", reason_short(loss.reason))
    } else {
        format!(
            "⚠ {} {noun} lost ({})",
            thousands(loss.count),
            reason_short(loss.reason)
        )
    };
    match (loss.first_id, loss.last_id) {
        (Some(first), Some(last)) if first == last => text.push_str(&format!(" · #{first}")),
        (Some(first), Some(last)) => text.push_str(&format!(" · #{first} to #{last}")),
        _ => {}
    }
    let text = fit_width(&text, row_width);
    let mut style = Style::new()
        .fg(Color::Black)
        .bg(Color::Yellow)
        .add_modifier(Modifier::BOLD);
    if selected {
        style = style.add_modifier(Modifier::REVERSED);
    }
    Line::styled(text, style)
}

pub(super) fn render(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let window = state.window();
    let log = state.log();
    let shown: Vec<(usize, RowAt)> = (window.start..window.end)
        .filter_map(|r| Some((r, state.row_at(r)?)))
        .collect();
    // The events on screen, decoded together (each block once).
    let first = shown.iter().find_map(|&(_, at)| match at {
        RowAt::Event(index) => Some(index),
        RowAt::Mark(_) => None,
    });
    let last = shown.iter().rev().find_map(|&(_, at)| match at {
        RowAt::Event(index) => Some(index),
        RowAt::Mark(_) => None,
    });
    let decoded = match (first, last) {
        (Some(first), Some(last)) => log.match_events(first..last + 1),
        _ => Vec::new(),
    };
    let event_of = |index: usize| {
        first
            .and_then(|first| decoded.get(index.checked_sub(first)?))
            .map(|(seq, event)| (*seq, &**event))
    };
    let row_width = usize::from(area.width.saturating_sub(2));
    let with_origin = log.origin_count() > 1;
    let mut columns = Columns::fit(decoded.iter().map(|(_, e)| &**e), TYPE_CAP, row_width);
    if with_origin {
        columns.origin = decoded
            .iter()
            .map(|(seq, _)| log.origin(*seq).map_or(1, |o| width(&one_line(o))))
            .max()
            .unwrap_or(1)
            .min(ORIGIN_CAP);
    }
    if columns.message() < MESSAGE_MIN {
        // `mcp.notifications.progress` cut to `mcp.notifications.pro…` leaves the message room.
        columns.event_type = columns.event_type.min(NARROW_TYPE_CAP);
    }
    let lines: Vec<Line<'static>> = shown
        .iter()
        .filter_map(|&(r, at)| {
            let selected = window.selected == Some(r);
            Some(match at {
                RowAt::Event(index) => {
                    let (seq, event) = event_of(index)?;
                    let origin = with_origin.then(|| log.origin(seq).map_or("-", |o| &**o));
                    row(event, origin, state.utc(), selected, columns)
                }
                RowAt::Mark(index) => {
                    loss_row(&state.losses().get(index)?.loss, selected, row_width)
                }
            })
        })
        .collect();
    let mut title = " events ".to_owned();
    if let Some((_, name)) = state.drilled_gauge() {
        title.push_str(&format!("─ {} only (Esc: back) ", one_line(name)));
    }
    match state.mode() {
        Mode::Live => {}
        Mode::Paused => {
            let below = log
                .match_count()
                .saturating_sub(state.events_before_row(window.end));
            title.push_str(&format!("─ paused, {below} below "));
        }
        Mode::Scrubbing => match state.scrub_event() {
            Some(event) => title.push_str(&format!("─ as at #{} ", event.id)),
            None => title.push_str("─ scrubbing "),
        },
    }
    let terms = state.term_counts();
    let title = if terms.is_empty() {
        Line::from(title)
    } else {
        term_counts_line(&terms)
    };
    let mut block = super::pane_block(title, state.focus() == Focus::Events);
    if let Some(notice) = state.notice() {
        let style = if state.notice_is_error() {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Green)
        };
        block = block.title_bottom(Line::styled(format!(" {} ", one_line(notice)), style));
    }
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

/// The counts of the terms being edited, on the pane's top border right under the filter bar:
/// ` task.* 20,000 │ !task.progress ≥9,120… │ res:nobody 0 `, a term that matches nothing in red.
fn term_counts_line(terms: &[crate::top::TermCountView]) -> Line<'static> {
    let mut spans = vec![Span::raw(" ")];
    for (i, term) in terms.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" │ ", Style::new().fg(Color::DarkGray)));
        }
        spans.push(Span::raw(format!("{} ", one_line(&term.term))));
        let count = thousands(term.count);
        spans.push(if !term.complete {
            Span::styled(
                format!("≥{count}…"),
                Style::new().fg(Color::Cyan).add_modifier(Modifier::DIM),
            )
        } else if term.count == 0 {
            Span::styled(
                count,
                Style::new()
                    .fg(Color::White)
                    .bg(Color::Red)
                    .add_modifier(Modifier::BOLD),
            )
        } else {
            Span::styled(count, Style::new().fg(Color::Cyan))
        });
    }
    spans.push(Span::raw(" "));
    Line::from(spans)
}
