//! The detail overlay: one event as pretty-printed JSON, long lines wrapped so nothing is cut.
//!
//! Widths are display widths (a CJK character or an emoji takes two columns), and lines are cut
//! between grapheme clusters, so a flag or an accented letter is never split across rows.

use super::{centered, width};
use crate::top::state::Detail;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// The overlay's width in a terminal `terminal_width` wide: the widest line, within the screen.
fn popup_width(detail: &Detail, terminal_width: u16) -> u16 {
    let widest = detail
        .lines
        .iter()
        .map(|l| width(l))
        .chain([width(&detail.title) + 4, 28])
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
        if width(line) <= inner {
            out.push(line.clone());
            continue;
        }
        let graphemes: Vec<(&str, usize)> = line.graphemes(true).map(|g| (g, g.width())).collect();
        let indent = line.bytes().take_while(|b| *b == b' ').count() + 2;
        // Continuations keep the indent only while it leaves room to read.
        let indent = if inner >= indent + 16 { indent } else { 0 };
        let first = break_at(&graphemes, inner);
        out.push(graphemes[..first].iter().map(|g| g.0).collect());
        let mut rest = &graphemes[first..];
        while !rest.is_empty() {
            let take = break_at(rest, inner - indent);
            let mut row = " ".repeat(indent);
            row.extend(rest[..take].iter().map(|g| g.0));
            out.push(row);
            rest = &rest[take..];
        }
    }
    out
}

/// How many of `graphemes` (each with its width) go on a row `room` columns wide: all if they fit,
/// else up to the last space in the row's second half (so words stay whole), else as many as fit
/// (at least one, so wrapping always moves on).
fn break_at(graphemes: &[(&str, usize)], room: usize) -> usize {
    let mut used = 0;
    let mut fit = 0;
    let mut space = None;
    for (i, (g, w)) in graphemes.iter().enumerate() {
        if used + w > room {
            break;
        }
        if *g == " " && used >= room / 2 {
            space = Some(i + 1);
        }
        used += w;
        fit = i + 1;
    }
    if fit == graphemes.len() {
        return fit;
    }
    space.unwrap_or(fit).max(1)
}

/// Where the overlay goes in a screen `area`.
pub(super) fn area(detail: &Detail, area: Rect) -> Rect {
    let rows = rows(detail, area.width).len();
    let height = u16::try_from(rows + 2)
        .unwrap_or(u16::MAX)
        .min(area.height.saturating_sub(4));
    centered(area, popup_width(detail, area.width), height)
}

/// Draws the overlay in `popup` (cleared by the caller), in a screen `area` wide.
pub(super) fn render(detail: &Detail, frame: &mut Frame<'_>, popup: Rect) {
    let rows = rows(detail, frame.area().width);
    let shown = usize::from(popup.height.saturating_sub(2));
    let lines: Vec<Line<'_>> = rows
        .iter()
        .skip(detail.scroll)
        .take(shown)
        .map(|l| Line::raw(l.as_str()))
        .collect();
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
    fn wide_text_wraps_by_display_width_and_loses_nothing() {
        let long = format!("  \"message\": \"{}\"", "渲染第七帧失败".repeat(20));
        let (wrapped, joined) = wrap_and_join(&long, 4);
        assert!(wrapped.iter().all(|r| width(r) <= 70), "{wrapped:#?}");
        // 140 wide characters and some ASCII: at least 290 columns, in rows of at most 70.
        assert!(wrapped.len() >= 5, "{wrapped:#?}");
        assert_eq!(joined, long);
    }

    #[test]
    fn a_flag_is_never_split_across_rows() {
        // One column short of a whole flag at each row end, whatever the start.
        for pad in 0..3 {
            let long = format!("  \"m\": \"{}{}\"", "x".repeat(pad), "🇩🇪".repeat(60));
            let (wrapped, joined) = wrap_and_join(&long, 4);
            for row in &wrapped {
                assert!(width(row) <= 70, "{row:?}");
                let flags = row.trim_start_matches(|c: char| c.is_ascii());
                let flags = flags.trim_end_matches(|c: char| c.is_ascii());
                assert_eq!(flags.chars().count() % 2, 0, "half a flag in {row:?}");
            }
            assert_eq!(joined, long);
        }
    }

    #[test]
    fn short_lines_are_left_as_they_are() {
        let d = detail(&["{", "  \"id\": 1", "}"]);
        assert_eq!(rows(&d, 120), d.lines);
    }
}
