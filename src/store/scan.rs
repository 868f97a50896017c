//! Scanning a store with a [`StoreFilter`]: rows first, then (only for rows that pass and only when
//! the filter has terms on the data) the payload bytes, then the decoded event.

use super::block::Block;
use super::{Pos, Store, StoreFilter};
use std::ops::Range;

/// Which end of a range a scan starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// From the start of the range.
    OldestFirst,
    /// From the end of the range.
    NewestFirst,
}

/// Buffers a scan reuses from block to block.
#[derive(Default)]
struct Scratch {
    lowered: Vec<u8>,
    spans: Vec<Range<usize>>,
    candidates: Vec<bool>,
    excluded: Vec<bool>,
}

impl Store {
    /// Appends to `out` the positions in `range` whose events `filter` matches, in `order`, stopping
    /// after `max_hits` of them; returns the part of `range` left to scan (empty when done), so a
    /// long scan can be done in slices: pass a smaller range, or fewer hits, and call again with
    /// what is left.
    ///
    /// Each row's type and resource are judged once per distinct string (the filter caches the
    /// verdicts), its id and time read from the row. When the filter has `text:` terms the block's
    /// payload is searched as bytes first, and only the events that may match are decoded and given
    /// to [`EventFilter::matches`](crate::EventFilter::matches), which also decides every term the
    /// compiler has no shortcut for.
    pub fn scan(
        &self,
        filter: &mut StoreFilter,
        range: Range<Pos>,
        order: Order,
        max_hits: usize,
        out: &mut Vec<Pos>,
    ) -> Range<Pos> {
        if max_hits == 0 {
            return range;
        }
        let mut found = 0;
        self.scan_with(filter, range, order, |pos| {
            out.push(pos);
            found += 1;
            found < max_hits
        })
    }

    /// How many events in `range` `filter` matches.
    pub fn count(&self, filter: &mut StoreFilter, range: Range<Pos>) -> usize {
        let mut found = 0;
        self.scan_with(filter, range, Order::OldestFirst, |_| {
            found += 1;
            true
        });
        found
    }

    /// Calls `hit` with each matching position in order until it returns false; returns what is left.
    fn scan_with(
        &self,
        filter: &mut StoreFilter,
        range: Range<Pos>,
        order: Order,
        mut hit: impl FnMut(Pos) -> bool,
    ) -> Range<Pos> {
        let done = match order {
            Order::OldestFirst => range.end..range.end,
            Order::NewestFirst => range.start..range.start,
        };
        let start = range.start.max(self.first);
        let end = range.end.min(self.end);
        if start >= end {
            return done;
        }
        filter.sync(self.uid, &self.types, &self.resources);
        let needs_data = filter.needs_data();
        let searches_text = !filter.texts.is_empty() || !filter.not_texts.is_empty();
        let mut decompressed = Vec::new();
        let mut scratch = Scratch::default();
        let lo = self.blocks.partition_point(|b| b.end() <= start);
        let hi = self.blocks.partition_point(|b| b.first < end);
        let mut order_of_blocks = lo..hi;
        loop {
            let next = match order {
                Order::OldestFirst => order_of_blocks.next(),
                Order::NewestFirst => order_of_blocks.next_back(),
            };
            let Some(at) = next else {
                return done;
            };
            let Some(block) = self.blocks.get(at) else {
                return done;
            };
            let row_lo = usize::try_from(start.max(block.first) - block.first).unwrap_or(0);
            let row_hi = usize::try_from(end.min(block.end()) - block.first).unwrap_or(0);
            let mut rows = row_lo..row_hi;
            let mut payload = None;
            let mut marked = false;
            loop {
                let next = match order {
                    Order::OldestFirst => rows.next(),
                    Order::NewestFirst => rows.next_back(),
                };
                let Some(i) = next else {
                    break;
                };
                if !filter.row_passes(
                    &self.types,
                    &self.resources,
                    block.types[i],
                    block.resources[i],
                    block.ids[i],
                    block.times[i],
                ) {
                    continue;
                }
                if needs_data {
                    if payload.is_none() {
                        payload = self.scan_payload(block, &mut decompressed);
                    }
                    let Some(bytes) = payload.as_deref() else {
                        continue;
                    };
                    if searches_text && !marked {
                        mark_block(filter, block, bytes, &mut scratch);
                        marked = true;
                    }
                    if !self.data_passes(filter, block, i, bytes, &scratch) {
                        continue;
                    }
                }
                let pos = block.first + i as Pos;
                if !hit(pos) {
                    return match order {
                        Order::OldestFirst => pos + 1..range.end,
                        Order::NewestFirst => range.start..pos,
                    };
                }
            }
        }
    }

    /// The data terms for row `i` of `block`, whose rows passed already.
    fn data_passes(
        &self,
        filter: &StoreFilter,
        block: &Block,
        i: usize,
        bytes: &[u8],
        scratch: &Scratch,
    ) -> bool {
        let has_texts = !filter.texts.is_empty();
        if has_texts && !scratch.candidates.get(i).copied().unwrap_or(false) {
            return false;
        }
        let excluded_may_match = scratch.excluded.get(i).copied().unwrap_or(false);
        if !(filter.opaque || has_texts || excluded_may_match) {
            return true;
        }
        self.parts(block, i, bytes)
            .and_then(|parts| parts.to_event().ok())
            .is_some_and(|event| filter.filter().matches(&event))
    }
}

/// Runs the filter's `text:` words over a block's payload once: which rows may hold a wanted word,
/// which an excluded one.
fn mark_block(filter: &StoreFilter, block: &Block, bytes: &[u8], scratch: &mut Scratch) {
    scratch.lowered.clear();
    scratch
        .lowered
        .extend(bytes.iter().map(u8::to_ascii_lowercase));
    scratch.spans.clear();
    scratch
        .spans
        .extend((0..block.len()).map(|i| block.span(i)));
    for (needles, flags) in [
        (&filter.texts, &mut scratch.candidates),
        (&filter.not_texts, &mut scratch.excluded),
    ] {
        flags.clear();
        flags.resize(block.len(), false);
        for needle in needles {
            needle.mark(&scratch.lowered, &scratch.spans, flags);
        }
    }
}
