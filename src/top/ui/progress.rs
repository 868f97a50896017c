//! The progress pane: one gauge per progress token or resource, two lines each, active first.

use super::{compact, fit_width, one_line, short_duration, width};
use crate::top::progress::{Gauge, Outcome};
use crate::top::state::State;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;
use std::time::SystemTime;

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

fn spinner(now: SystemTime) -> char {
    let tenths = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() / 100);
    SPINNER[(tenths % SPINNER.len() as u128) as usize]
}

fn bar(ratio: f64, width: usize) -> String {
    let filled = ((ratio.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    let mut out = "█".repeat(filled);
    out.push_str(&"░".repeat(width - filled));
    out
}

fn gauge_lines(gauge: &Gauge, now: SystemTime, pane: usize) -> [Line<'static>; 2] {
    let key_width = (pane * 45 / 100).clamp(6, 24);
    let key = fit_width(&one_line(gauge.name()), key_width);
    let stale = gauge.is_stale(now);
    let (status, status_style) = match gauge.outcome {
        Outcome::Done => (
            format!("done ✓ {}", short_duration(gauge.elapsed(now))),
            Style::new().fg(Color::Green),
        ),
        Outcome::Failed => (
            format!("failed ✗ {}", short_duration(gauge.elapsed(now))),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        Outcome::Cancelled => ("cancelled".to_owned(), Style::new().fg(Color::Yellow)),
        Outcome::Running if stale => (
            format!(
                "stale {}",
                short_duration(now.duration_since(gauge.updated).unwrap_or_default())
            ),
            Style::new().fg(Color::Yellow),
        ),
        // A call that has reported no progress: how long it has been running.
        Outcome::Running if gauge.updates == 0 => (
            format!(
                "{} running {}",
                spinner(now),
                short_duration(gauge.elapsed(now))
            ),
            Style::new().fg(Color::Cyan),
        ),
        Outcome::Running => match gauge.ratio() {
            Some(ratio) => (format!("{:>3.0}%", ratio * 100.0), Style::new()),
            None => (
                format!("{} {} (no total)", spinner(now), compact(gauge.current)),
                Style::new().fg(Color::Cyan),
            ),
        },
    };
    let bar_color = match gauge.outcome {
        Outcome::Done => Color::Green,
        Outcome::Failed => Color::Red,
        Outcome::Cancelled => Color::Yellow,
        Outcome::Running if stale => Color::DarkGray,
        Outcome::Running => Color::Blue,
    };
    let mut first = vec![Span::raw(key), Span::raw(" ")];
    let room = pane.saturating_sub(key_width + 2 + width(&status));
    let ratio = match gauge.outcome {
        Outcome::Done => Some(1.0),
        _ => gauge.ratio(),
    };
    if let (Some(ratio), true) = (ratio, room >= 4) {
        first.push(Span::styled(
            bar(ratio, room.min(24)),
            Style::new().fg(bar_color),
        ));
        first.push(Span::raw(" "));
    }
    first.push(Span::styled(status, status_style));

    // The message, then the figures; in a pane too narrow for both, the message is what gets cut.
    let message = gauge.message.as_deref().map(one_line);
    let mut figures = Vec::new();
    let count = match gauge.total {
        Some(total) => Some(format!("{}/{}", compact(gauge.current), compact(total))),
        None if gauge.outcome != Outcome::Running && gauge.updates > 0 => {
            Some(compact(gauge.current))
        }
        None => None,
    };
    // Not said twice when the message already says it ("frame 19/120").
    if let Some(count) = count {
        if !message
            .as_deref()
            .is_some_and(|m| m.contains(count.as_str()))
        {
            figures.push(count);
        }
    }
    if gauge.outcome == Outcome::Running {
        if let Some(rate) = gauge.rate() {
            figures.push(format!("{}/s", compact((rate * 10.0).round() / 10.0)));
        }
        if let Some(eta) = gauge.eta() {
            figures.push(format!("ETA {}", short_duration(eta)));
        }
    }
    let figures = figures.join(" · ");
    let warning = if gauge.backwards {
        " ⚠ went backwards"
    } else {
        ""
    };
    let room = pane.saturating_sub(2 + width(warning));
    let text = match message.filter(|m| !m.is_empty()) {
        None => figures,
        Some(message) if figures.is_empty() => message.into_owned(),
        Some(message) => {
            let message_room = room.saturating_sub(width(&figures) + 3);
            if width(&message) <= message_room {
                format!("{message} · {figures}")
            } else if message_room >= 6 {
                let cut = fit_width(&message, message_room);
                format!("{} · {figures}", cut.trim_end())
            } else {
                figures
            }
        }
    };
    let mut second = vec![Span::styled(
        format!("  {text}"),
        Style::new().fg(Color::DarkGray),
    )];
    if gauge.backwards {
        second.push(Span::styled(
            warning,
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    [Line::from(first), Line::from(second)]
}

pub(super) fn render(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let now = state.gauge_clock();
    let gauges = state.shown_gauges();
    let width = usize::from(area.width.saturating_sub(2));
    let fits = usize::from(area.height.saturating_sub(2)) / 2;
    let mut lines: Vec<Line<'static>> = gauges
        .iter()
        .take(fits)
        .flat_map(|g| gauge_lines(g, now, width))
        .collect();
    if gauges.is_empty() {
        lines.push(Line::styled(
            "no progress reported yet",
            Style::new().fg(Color::DarkGray),
        ));
    }
    let more = gauges.len().saturating_sub(fits);
    let title = if more > 0 {
        format!(" progress ─ {} ({more} more) ", gauges.len())
    } else {
        format!(" progress ─ {} ", gauges.len())
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::progress::Gauges;
    use crate::Event;
    use std::time::Duration;

    fn text(lines: &[Line<'_>]) -> Vec<String> {
        lines
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    #[test]
    fn a_call_without_progress_shows_its_tool_and_how_long_it_has_run() {
        let mut gauges = Gauges::default();
        let mut request = Event::with_resource(
            "mcp.request",
            "everything",
            serde_json::json!({"from": "client", "method": "tools/call", "tool": "echo", "call": "c1"}),
        );
        request.timestamp = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        gauges.apply(&request);
        let gauge = gauges.get("c1").unwrap();
        let now = request.timestamp + Duration::from_secs(75);
        let lines = text(&gauge_lines(gauge, now, 60));
        assert!(lines[0].starts_with("echo · everything"), "{lines:?}");
        assert!(lines[0].ends_with("running 1m15s"), "{lines:?}");
        assert_eq!(lines[1].trim(), "no progress token: running");
    }
}
