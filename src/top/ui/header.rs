//! The header line: socket, rate, subscribers, what this monitor lost, what the bus dropped, and state.
//!
//! Paused, the state reads `PAUSED +N`: N new events match the filter (what resuming shows), followed
//! by `(M arrived)` when the filter hid some of the M that arrived in all.
//!
//! "lost N" counts the events this monitor missed (red when any); "bus dropped N" is the bus's own count
//! for all its subscribers, red only when it grew since this monitor attached (a bus that dropped
//! events for someone else an hour ago is not this monitor's alarm).

use super::thousands;
use crate::top::state::{Connection, Mode, State};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// The header of a recording (`--open`): its name, how many events it holds, what was skipped, and
/// the view's state; no bus counters (there is no bus).
fn recording(
    state: &State,
    status: &crate::top::RecordingStatus,
    mut spans: Vec<Span<'static>>,
) -> Vec<Span<'static>> {
    let sep = || Span::styled(" ─ ", Style::new().fg(Color::DarkGray));
    spans.push(Span::styled(
        "RECORDING",
        Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD),
    ));
    spans.push(Span::raw(format!(" {}", status.name)));
    spans.push(sep());
    let held = thousands(state.received());
    spans.push(Span::raw(if status.loaded {
        format!("{held} events")
    } else {
        format!("{held} events, reading…")
    }));
    if let Some(skipped) = status.skipped_text() {
        spans.push(sep());
        spans.push(Span::styled(
            skipped,
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    if let Some(error) = &status.error {
        spans.push(sep());
        spans.push(Span::styled(
            format!("stopped: {error}"),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    if let Some(note) = &status.note {
        spans.push(sep());
        spans.push(Span::styled(note.clone(), Style::new().fg(Color::Yellow)));
    }
    let (label, color) = match state.mode() {
        Mode::Live => return spans,
        Mode::Paused => ("PAUSED", Color::Yellow),
        Mode::Scrubbing => ("SCRUBBING", Color::Magenta),
    };
    spans.push(sep());
    spans.push(Span::styled(
        label,
        Style::new().fg(color).add_modifier(Modifier::BOLD),
    ));
    spans
}

/// The header of a past view (scrubbing older than the monitor holds): the link, the span of the
/// stream shown, the view's state, and the way back.
fn past(
    state: &State,
    span: crate::top::PageSpan,
    mut spans: Vec<Span<'static>>,
) -> Vec<Span<'static>> {
    let sep = || Span::styled(" ─ ", Style::new().fg(Color::DarkGray));
    spans.push(Span::styled(
        "OLDER THAN HELD",
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
    ));
    spans.push(Span::raw(format!(
        " #{}–#{} (stream from #{})",
        thousands(span.first),
        thousands(span.last),
        thousands(span.first_kept)
    )));
    spans.push(sep());
    let (label, color) = match state.mode() {
        Mode::Live | Mode::Scrubbing => ("SCRUBBING", Color::Magenta),
        Mode::Paused => ("PAUSED", Color::Yellow),
    };
    spans.push(Span::styled(
        label,
        Style::new().fg(color).add_modifier(Modifier::BOLD),
    ));
    spans.push(sep());
    spans.push(Span::raw("End: live"));
    // Least needed here, so last: a narrow terminal cuts it first.
    match state.connection() {
        Connection::Disconnected { .. } => {
            spans.push(sep());
            spans.push(Span::styled(
                "DISCONNECTED",
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
        }
        Connection::Connected { socket, .. } => {
            spans.push(sep());
            spans.push(Span::raw(format!("attached {socket}")));
        }
        Connection::Connecting => {}
    }
    spans
}

pub(super) fn render(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let sep = || Span::styled(" ─ ", Style::new().fg(Color::DarkGray));
    let mut spans = vec![Span::styled(
        " ipckit-top",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    spans.push(sep());
    let past_span = state.page_span();
    if let Some(status) = state.recording() {
        let spans = recording(state, status, spans);
        frame.render_widget(
            Paragraph::new(Line::from(spans)).style(Style::new().bg(Color::Black)),
            area,
        );
        return;
    }
    if let Some(span) = past_span {
        let spans = past(state, span, spans);
        frame.render_widget(
            Paragraph::new(Line::from(spans)).style(Style::new().bg(Color::Black)),
            area,
        );
        return;
    }
    spans.push(Span::raw(match state.connection() {
        Connection::Connecting => "connecting".to_owned(),
        Connection::Connected { socket, hosted } => {
            format!("{} {socket}", if *hosted { "hosting" } else { "attached" })
        }
        Connection::Disconnected { socket, .. } => match socket {
            Some(socket) => format!("lost {socket}"),
            None => "no bus".to_owned(),
        },
    }));
    spans.push(sep());
    spans.push(Span::raw(format!(
        "{} ev/s",
        thousands(state.rate().round() as u64)
    )));
    spans.push(sep());
    let stats = state.stats();
    spans.push(Span::raw(format!("{} subs", stats.subscribers)));
    spans.push(sep());
    let alarm = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
    let lost = format!("lost {}", thousands(state.lost()));
    spans.push(if state.lost() > 0 {
        Span::styled(lost, alarm)
    } else {
        Span::raw(lost)
    });
    spans.push(sep());
    let dropped = format!("bus dropped {}", thousands(stats.dropped));
    spans.push(if state.bus_dropped_since_attach() > 0 {
        Span::styled(dropped, alarm)
    } else {
        Span::raw(dropped)
    });
    spans.push(sep());
    let (label, color) = match state.mode() {
        Mode::Live => ("LIVE", Color::Green),
        Mode::Paused => ("PAUSED", Color::Yellow),
        Mode::Scrubbing => ("SCRUBBING", Color::Magenta),
    };
    let disconnected = matches!(state.connection(), Connection::Disconnected { .. });
    if !(disconnected && label == "LIVE") {
        spans.push(Span::styled(
            label,
            Style::new().fg(color).add_modifier(Modifier::BOLD),
        ));
    }
    if let Some(paused) = state.paused() {
        // +N: what resuming shows (new events that match the filter); all that arrived, if more.
        spans.push(Span::styled(
            format!(" +{}", thousands(paused.matching)),
            Style::new().fg(color).add_modifier(Modifier::BOLD),
        ));
        if paused.arrived > paused.matching {
            spans.push(Span::styled(
                format!(" ({} arrived)", thousands(paused.arrived)),
                Style::new().fg(color),
            ));
        }
    }
    if let Connection::Disconnected { retry_at, .. } = state.connection() {
        if label != "LIVE" {
            spans.push(Span::raw(" · "));
        }
        let retry = match retry_at {
            Some(at) => {
                let left = at.duration_since(state.now()).unwrap_or_default();
                format!(
                    "DISCONNECTED retrying in {}s",
                    left.as_secs_f64().ceil() as u64
                )
            }
            None => "DISCONNECTED".to_owned(),
        };
        spans.push(Span::styled(
            retry,
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    frame.render_widget(
        Paragraph::new(Line::from(spans)).style(Style::new().bg(Color::Black)),
        area,
    );
}
