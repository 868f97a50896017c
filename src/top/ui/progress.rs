//! The progress pane: one gauge per progress token or resource, two lines each, active first.
//!
//! A gauge that broke one of MCP's rules (see [`crate::top::progress`]) has `⚠` before its name and the
//! reasons at the start of its second line, in red, before its message: in full (`⚠ went backwards
//! 30→27 · total 90→96`) where they fit, else in a word each (`⚠ backwards, total changed`). A gauge
//! silent past its threshold says `stalled 42s` as its status. The title counts the flagged gauges, so
//! one scrolled out of view is still noticed. With the focus (Tab), the selected gauge is highlighted.

use super::{compact, fit_width, one_line, short_duration, width};
use crate::top::progress::{Flag, Gauge, Outcome};
use crate::top::state::{Focus, State};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
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

/// The flags' text for the second line within `room` columns: the reasons (`went backwards 41→37 ·
/// total 90→96`), or in a narrow pane their one-word forms, cut if need be. A stall going on is left
/// out: the status on the first line says it.
fn flag_text(flags: &[Flag], room: usize) -> String {
    let shown: Vec<&Flag> = flags
        .iter()
        .filter(|f| !matches!(f, Flag::Stalling { .. }))
        .collect();
    if shown.is_empty() {
        return String::new();
    }
    let full: Vec<String> = shown.iter().map(|f| f.reason()).collect();
    let full = format!("⚠ {}", full.join(" · "));
    if width(&full) <= room {
        return full;
    }
    let mut short: Vec<&str> = Vec::new();
    for flag in shown {
        if !short.contains(&flag.short()) {
            short.push(flag.short());
        }
    }
    let short = format!("⚠ {}", short.join(", "));
    if width(&short) <= room {
        short
    } else {
        fit_width(&short, room).trim_end().to_owned()
    }
}

fn gauge_lines(gauge: &Gauge, now: SystemTime, pane: usize, selected: bool) -> [Line<'static>; 2] {
    let flags = gauge.flags(now);
    let marker = if flags.is_empty() { "" } else { "⚠ " };
    let key_width = (pane * 45 / 100).clamp(6, 24);
    let key = fit_width(
        &one_line(gauge.name()),
        key_width.saturating_sub(width(marker)),
    );
    let stalled = gauge.stalled_for(now);
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
        Outcome::Running if stalled.is_some() => (
            format!("stalled {}", short_duration(stalled.unwrap_or_default())),
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
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
        Outcome::Running if stalled.is_some() => Color::DarkGray,
        Outcome::Running => Color::Blue,
    };
    let alarm = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
    let mut first = vec![Span::styled(marker, alarm), Span::raw(key), Span::raw(" ")];
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

    // The flags, then the message, then the figures; in a narrow pane the message is cut first.
    let flagged = flag_text(&flags, pane.saturating_sub(2));
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
    // A stalled gauge's rate and ETA are from before it went silent: not shown.
    if gauge.outcome == Outcome::Running && stalled.is_none() {
        // Going backwards makes a negative rate: not a speed worth showing.
        if let Some(rate) = gauge.rate().filter(|r| *r >= 0.0) {
            figures.push(format!("{}/s", compact((rate * 10.0).round() / 10.0)));
        }
        if let Some(eta) = gauge.eta() {
            figures.push(format!("ETA {}", short_duration(eta)));
        }
    }
    let figures = figures.join(" · ");
    let after_flags = if flagged.is_empty() {
        0
    } else {
        width(&flagged) + 3
    };
    let room = pane.saturating_sub(2 + after_flags);
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
    let text = if width(&text) > room {
        fit_width(&text, room).trim_end().to_owned()
    } else {
        text
    };
    let mut second = vec![Span::raw("  ")];
    if !flagged.is_empty() {
        second.push(Span::styled(flagged, alarm));
        if !text.is_empty() {
            second.push(Span::styled(" · ", Style::new().fg(Color::DarkGray)));
        }
    }
    second.push(Span::styled(text, Style::new().fg(Color::DarkGray)));
    let mut lines = [Line::from(first), Line::from(second)];
    if selected {
        // The selection spans the pane, as in the event pane.
        for line in &mut lines {
            let used = line.width();
            if used < pane {
                line.push_span(Span::raw(" ".repeat(pane - used)));
            }
            *line = std::mem::take(line).style(Style::new().add_modifier(Modifier::REVERSED));
        }
    }
    lines
}

pub(super) fn render(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let now = state.gauge_clock();
    let gauges = state.shown_gauges();
    let focused = state.focus() == Focus::Progress;
    let width = usize::from(area.width.saturating_sub(2));
    let fits = (usize::from(area.height.saturating_sub(2)) / 2).max(1);
    let selected = state.selected_gauge_index(&gauges);
    // The selection stays in view: the list scrolls by as much as it needs.
    let skip = selected.map_or(0, |i| (i + 1).saturating_sub(fits));
    let mut lines: Vec<Line<'static>> = gauges
        .iter()
        .enumerate()
        .skip(skip)
        .take(fits)
        .flat_map(|(i, g)| gauge_lines(g, now, width, focused && selected == Some(i)))
        .collect();
    if gauges.is_empty() {
        lines.push(Line::styled(
            "no progress reported yet",
            Style::new().fg(Color::DarkGray),
        ));
    }
    let more = gauges.len().saturating_sub(fits);
    let mut title = if more > 0 {
        format!(" progress ─ {} ({more} more) ", gauges.len())
    } else {
        format!(" progress ─ {} ", gauges.len())
    };
    let flagged = gauges.iter().filter(|g| !g.flags(now).is_empty()).count();
    if flagged > 0 {
        title.push_str(&format!("─ ⚠ {flagged} "));
    }
    frame.render_widget(
        Paragraph::new(lines).block(super::pane_block(title, focused)),
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
        let lines = text(&gauge_lines(gauge, now, 60, false));
        assert!(lines[0].starts_with("echo · everything"), "{lines:?}");
        assert!(lines[0].ends_with("running 1m15s"), "{lines:?}");
        assert_eq!(lines[1].trim(), "no progress token: running");
    }
}
