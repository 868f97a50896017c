//! The byte search behind `text:` terms: a necessary condition on a payload's JSON bytes for
//! [`EventFilter::matches`](crate::EventFilter::matches) to find the text in the decoded data, so
//! only payloads that pass are parsed.
//!
//! `text:WORD` holds when some key or scalar value of the data contains `WORD` ignoring case (strings by
//! their content, numbers, booleans and `null` by their JSON text). The payload is the data as
//! serde_json writes it, so every such key or value appears in it, a string with `"`, `\` and control
//! characters escaped (`\"`, `\\`, `\n`, `\u001f`) and everything else, non-ASCII included, as itself.
//!
//! - An ASCII word: escaping works character by character and ASCII case folding does not touch the
//!   escapes, so a string containing the word (ignoring ASCII case) has JSON text that, with ASCII
//!   letters lowered, contains the word's own escaped form. The search runs over the payload with ASCII
//!   letters lowered.
//! - A word with non-ASCII characters matches a string whose Unicode lowercase contains it. ASCII
//!   characters lowercase to ASCII, so the string, and the payload, must hold a non-ASCII byte. And a
//!   run of the word's ASCII characters that no non-ASCII character lowercases into (all but `i` and
//!   `k`: U+0130 and the Kelvin sign become them) and that JSON writes as themselves must come from the
//!   same run of ASCII characters in the string, in either case: the lowered payload contains it.
//! - An empty word is in everything.

use memchr::memmem::Finder;

/// A compiled `text:` word.
pub(crate) enum Needle {
    /// The empty word: every payload may match.
    Any,
    /// Found in the ASCII-lowered payload.
    Ascii(Finder<'static>),
    /// The payload has a non-ASCII byte and, if there is a usable ASCII run, contains it lowered.
    NonAscii(Option<Finder<'static>>),
}

impl Needle {
    pub(crate) fn new(word: &str) -> Self {
        if word.is_empty() {
            return Needle::Any;
        }
        if word.is_ascii() {
            let lowered = word.to_ascii_lowercase();
            let escaped = serde_json::to_string(&lowered).unwrap_or_default();
            let inner = escaped
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or(&lowered);
            return Needle::Ascii(Finder::new(inner.as_bytes()).into_owned());
        }
        let run = word
            .split(|c: char| !stable_ascii(c))
            .max_by_key(|run| run.len())
            .filter(|run| !run.is_empty())
            .map(|run| Finder::new(run.to_ascii_lowercase().as_bytes()).into_owned());
        Needle::NonAscii(run)
    }

    /// Whether the payload `lowered` (ASCII letters lowered) may hold the word.
    #[inline]
    pub(crate) fn may_match(&self, lowered: &[u8]) -> bool {
        match self {
            Needle::Any => true,
            Needle::Ascii(finder) => finder.find(lowered).is_some(),
            Needle::NonAscii(run) => {
                !lowered.is_ascii() && run.as_ref().is_none_or(|f| f.find(lowered).is_some())
            }
        }
    }

    /// Marks in `hits` (one flag per payload, `spans` giving each payload's bytes in `lowered`) the
    /// payloads that may hold the word; one pass over the block for an ASCII word.
    pub(crate) fn mark(&self, lowered: &[u8], spans: &[std::ops::Range<usize>], hits: &mut [bool]) {
        match self {
            Needle::Any => hits.iter_mut().for_each(|h| *h = true),
            Needle::Ascii(finder) => {
                let Some(first) = spans.first() else {
                    return;
                };
                let len = finder.needle().len();
                let mut at = first.start;
                let end = spans.last().map_or(at, |s| s.end);
                while at < end {
                    let Some(found) = finder.find(&lowered[at..end]) else {
                        break;
                    };
                    let hit = at + found;
                    // The payload holding the match's first byte.
                    let row = spans.partition_point(|s| s.end <= hit);
                    let Some(span) = spans.get(row) else {
                        break;
                    };
                    if hit + len <= span.end {
                        hits[row] = true;
                        at = span.end;
                    } else {
                        // Runs across two payloads: look again one byte on.
                        at = hit + 1;
                    }
                }
            }
            Needle::NonAscii(_) => {
                for (span, hit) in spans.iter().zip(hits.iter_mut()) {
                    if !*hit {
                        *hit = self.may_match(&lowered[span.clone()]);
                    }
                }
            }
        }
    }
}

/// An ASCII character that only an ASCII character lowercases into and that JSON writes as itself.
fn stable_ascii(c: char) -> bool {
    matches!(c, ' '..='~') && !matches!(c, '"' | '\\' | 'i' | 'I' | 'k' | 'K')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, EventFilter};
    use serde_json::{json, Value};

    fn lowered(value: &Value) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(value).unwrap();
        bytes.make_ascii_lowercase();
        bytes
    }

    /// The byte test must never say no where the filter says yes.
    fn never_a_false_negative(word: &str, data: Value) {
        let event = Event::new("x", data.clone());
        let matches = EventFilter::new().text(word).matches(&event);
        let needle = Needle::new(&word.to_lowercase());
        assert!(
            !matches || needle.may_match(&lowered(&data)),
            "{word:?} in {data}: the filter matches, the byte test said no"
        );
    }

    #[test]
    fn escapes_case_and_non_ascii_are_found() {
        let cases = [
            ("disk slow", json!({"note": "DISK Slow today"})),
            ("a\"b", json!({"q": "A\"B"})),
            ("back\\slash", json!(["BACK\\SLASH"])),
            ("line\nbreak", json!({"m": "Line\nBreak"})),
            ("\u{1f}", json!({"m": "x\u{1f}y"})),
            ("caf\u{e9}", json!({"m": "CAF\u{c9}"})),
            ("\u{e9}t\u{e9}", json!({"\u{c9}T\u{c9}": 1})),
            ("k", json!({"m": "\u{212a}"})),
            ("\u{212a}elvin", json!({"m": "\u{212a}ELVIN"})),
            ("i\u{307}stanbul", json!({"m": "\u{130}STANBUL"})),
            ("\u{3c3}", json!({"m": "\u{3a3}"})),
            ("\u{3c2}", json!({"m": "\u{391}\u{3a3}"})),
            ("1.5", json!({"n": 1.5})),
            ("null", json!({"n": null})),
            ("true", json!([true])),
            ("-12", json!(-12)),
            ("", json!({"a": 1})),
            ("\"", json!("\"")),
        ];
        for (word, data) in cases {
            never_a_false_negative(word, data);
        }
    }

    #[test]
    fn the_byte_test_rules_out_what_is_not_there() {
        let needle = Needle::new("disk");
        assert!(!needle.may_match(&lowered(&json!({"note": "fine"}))));
        let needle = Needle::new("caf\u{e9}");
        assert!(
            !needle.may_match(&lowered(&json!({"note": "cafe"}))),
            "no non-ASCII byte"
        );
        assert!(
            !needle.may_match(&lowered(&json!({"note": "th\u{e9}"}))),
            "no `caf`"
        );
    }

    /// No non-ASCII character lowercases into an ASCII character other than `i` and `k`: what the
    /// non-ASCII rule relies on.
    #[test]
    fn only_i_and_k_come_from_non_ascii_characters() {
        let mut found = std::collections::BTreeSet::new();
        for c in (0x80u32..=0x10FFFF).filter_map(char::from_u32) {
            for lower in c.to_lowercase() {
                if lower.is_ascii() {
                    found.insert(lower);
                }
            }
        }
        assert_eq!(found.into_iter().collect::<String>(), "ik");
        assert!(!stable_ascii('i') && !stable_ascii('K') && stable_ascii('a'));
    }

    #[test]
    fn marking_a_block_finds_each_payload_and_none_across_two() {
        let payloads = [r#""xa""#, r#""ab""#, r#""q""#, r#""aab""#];
        let mut block = Vec::new();
        let mut spans = Vec::new();
        for p in payloads {
            let start = block.len();
            block.extend_from_slice(p.as_bytes());
            spans.push(start..block.len());
        }
        let mut hits = vec![false; payloads.len()];
        Needle::new("ab").mark(&block, &spans, &mut hits);
        assert_eq!(hits, [false, true, false, true]);
        let mut hits = vec![false; payloads.len()];
        Needle::new("a\"\"a").mark(&block, &spans, &mut hits);
        assert_eq!(hits, [false; 4], "a match across two payloads is none");
    }

    proptest::proptest! {
        #[test]
        fn no_false_negative_on_random_text(
            word in "[a-zA-Z\u{e9}\u{c9}\u{212a}\u{130}\"\\\\\n ]{0,4}",
            text in "[a-zA-Z\u{e9}\u{c9}\u{212a}\u{130}\u{307}\"\\\\\n ]{0,12}",
        ) {
            never_a_false_negative(&word, json!({"m": text, text.clone(): [1, "x"]}));
        }
    }
}
