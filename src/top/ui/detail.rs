//! The detail overlay: one event as pretty-printed JSON, long lines wrapped so nothing is cut.

use super::centered;
use crate::top::state::Detail;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

/// The overlay's width in a terminal `terminal_width` wide: the widest line, within the screen.
fn popup_width(detail: &Detail, terminal_width: u16) -> u16 {
    let widest = detail
        .lines
        .iter()
        .map(|l| l.chars().count())
        .chain([detail.title.chars().count() + 4, 28])
        .max()
        .unwrap_or(0);
    u16::try_from(widest + 4)
        .unwrap_or(u16::MAX)
        .min(terminal_width.saturating_sub(8))
}

/// The rows the overlay shows in a terminal `terminal_width` wide: each JSON line, wrapped where it is
/// wider than the overlay, its continuation indented under its start.
pub(crate) fn rows(detail: &Detail, terminal_width: u16) -> Vec<String> {
    let inner = usize::from(popup_width(detail, terminal_width).saturating_sub(2)).max(1);
    let mut out = Vec::with_capacity(detail.lines.len());
    for line in &detail.lines {
        let chars: Vec<char> = line.chars().collect();
        if chars.len() <= inner {
            out.push(line.clone());
            continue;
        }
        let indent = chars.iter().take_while(|c| **c == ' ').count() + 2;
        // Continuations keep the indent only while it leaves room to read.
        let indent = if inner >= indent + 16 { indent } else { 0 };
        let first = break_at(&chars, inner);
        out.push(chars[..first].iter().collect());
        let mut rest = &chars[first..];
        while !rest.is_empty() {
            let take = break_at(rest, inner - indent);
            let mut row = " ".repeat(indent);
            row.extend(&rest[..take]);
            out.push(row);
            rest = &rest[take..];
        }
    }
    out
}

/// How many of `chars` go on a row `room` wide: all if they fit, else up to the last space in the
/// row's second half (so words stay whole), else exactly `room`.
fn break_at(chars: &[char], room: usize) -> usize {
    if chars.len() <= room {
        return chars.len();
    }
    chars[..room]
        .iter()
        .rposition(|c| *c == ' ')
        .filter(|&at| at >= room / 2)
        .map_or(room, |at| at + 1)
}

pub(super) fn render(detail: &Detail, frame: &mut Frame<'_>, area: Rect) {
    let rows = rows(detail, area.width);
    let width = popup_width(detail, area.width);
    let height = u16::try_from(rows.len() + 2)
        .unwrap_or(u16::MAX)
        .min(area.height.saturating_sub(4));
    let popup = centered(area, width, height);
    let shown = usize::from(popup.height.saturating_sub(2));
    let lines: Vec<Line<'_>> = rows
        .iter()
        .skip(detail.scroll)
        .take(shown)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(lines: &[&str]) -> Detail {
        Detail {
            title: "event #1 log.info".into(),
            lines: lines.iter().map(|l| (*l).to_owned()).collect(),
            scroll: 0,
        }
    }

    /// The rows `line` wrapped to inside `{` and `}` at 80 columns, and those rows joined again with
    /// the continuation indent (`indent` spaces) taken off, which must give `line` back.
    fn wrap_and_join(line: &str, indent: usize) -> (Vec<String>, String) {
        let rows = rows(&detail(&["{", line, "}"]), 80);
        assert_eq!(rows.first().map(String::as_str), Some("{"));
        assert_eq!(rows.last().map(String::as_str), Some("}"));
        let wrapped = rows[1..rows.len() - 1].to_vec();
        let joined = wrapped
            .iter()
            .enumerate()
            .map(|(i, r)| if i == 0 { r.as_str() } else { &r[indent..] })
            .collect();
        (wrapped, joined)
    }

    #[test]
    fn long_lines_wrap_under_their_indent_and_lose_nothing() {
        let long = format!("  \"message\": \"{}\"", "0123456789".repeat(30));
        let (wrapped, joined) = wrap_and_join(&long, 4);
        // 80 columns: an overlay 72 wide, 70 inside.
        assert!(
            wrapped.iter().all(|r| r.chars().count() <= 70),
            "{wrapped:#?}"
        );
        assert!(wrapped.len() >= 5, "{wrapped:#?}");
        assert!(wrapped[1..].iter().all(|r| r.starts_with("    ")));
        assert_eq!(joined, long);
    }

    #[test]
    fn words_stay_whole_when_they_can() {
        let words: Vec<String> = (0..40).map(|i| format!("step{i:02}-ok")).collect();
        let long = format!("    \"message\": \"{}\"", words.join(" "));
        let (wrapped, joined) = wrap_and_join(&long, 6);
        for row in &wrapped[..wrapped.len() - 1] {
            assert!(row.ends_with(' '), "{row:?} in {wrapped:#?}");
        }
        assert_eq!(joined, long);
    }

    #[test]
    fn short_lines_are_left_as_they_are() {
        let d = detail(&["{", "  \"id\": 1", "}"]);
        assert_eq!(rows(&d, 120), d.lines);
    }
}
