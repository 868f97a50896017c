//! The header line: socket, rate, subscribers, dropped events and state.

use super::thousands;
use crate::top::state::{Connection, Mode, State};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub(super) fn render(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let sep = || Span::styled(" ─ ", Style::new().fg(Color::DarkGray));
    let mut spans = vec![Span::styled(
        " ipckit-top",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    spans.push(sep());
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
    let dropped = format!("dropped {}", thousands(stats.dropped));
    spans.push(if stats.dropped > 0 {
        Span::styled(
            dropped,
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        )
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
