//! Interned strings (event types, resource ids) with reference counts.
//!
//! Each distinct string kept by some row gets a small integer id. A row holds one reference; when the
//! last row using a string is evicted the string is forgotten and its id goes on a free list, to be
//! given to the next new string. Ids are therefore dense (a filter can cache a verdict per id in a
//! plain array) and the table never grows past the number of distinct strings kept, even when every
//! job has a resource id of its own.

use rustc_hash::FxHashMap;
use std::sync::Arc;

/// An interned string's id.
pub(crate) type Sym = u32;

struct Entry {
    text: Arc<str>,
    refs: u64,
}

/// A table of strings with reference counts.
#[derive(Default)]
pub(crate) struct Interner {
    ids: FxHashMap<Arc<str>, Sym>,
    /// By id; `None` for a free id.
    entries: Vec<Option<Entry>>,
    free: Vec<Sym>,
    /// Bumped each time a freed id is given to another string: a verdict cached per id is valid only
    /// for the generation it was computed in.
    generation: u64,
    /// Bytes of the strings held (their text, not the table).
    text_bytes: usize,
    /// The id last acquired: events often come in runs of one type or resource, and comparing with
    /// it is cheaper than hashing.
    last: Sym,
}

impl Interner {
    /// The id of `text`, adding it if new, and counts one more reference. `None` only when every
    /// `u32` id is taken by a kept string.
    #[inline]
    pub(crate) fn acquire(&mut self, text: &str) -> Option<Sym> {
        if let Some(Some(entry)) = self.entries.get_mut(self.last as usize) {
            // The last bytes first: ids in a run (`job-3`, `job-4`) differ there, and this spares
            // a call to compare the rest.
            if entry.text.len() == text.len()
                && entry.text.as_bytes().last() == text.as_bytes().last()
                && *entry.text == *text
            {
                entry.refs += 1;
                return Some(self.last);
            }
        }
        if let Some(&id) = self.ids.get(text) {
            if let Some(Some(entry)) = self.entries.get_mut(id as usize) {
                entry.refs += 1;
            }
            self.last = id;
            return Some(id);
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.generation += 1;
                id
            }
            None => {
                // `Sym::MAX` stands for "no resource" in a row: never an id.
                let id = Sym::try_from(self.entries.len())
                    .ok()
                    .filter(|&id| id < Sym::MAX)?;
                self.entries.push(None);
                id
            }
        };
        let shared: Arc<str> = Arc::from(text);
        self.text_bytes += text.len();
        self.ids.insert(Arc::clone(&shared), id);
        if let Some(slot) = self.entries.get_mut(id as usize) {
            *slot = Some(Entry {
                text: shared,
                refs: 1,
            });
        }
        self.last = id;
        Some(id)
    }

    /// Drops one reference to `id`; the string is forgotten with its last reference.
    #[inline]
    pub(crate) fn release(&mut self, id: Sym) {
        let Some(slot) = self.entries.get_mut(id as usize) else {
            return;
        };
        let Some(entry) = slot else {
            return;
        };
        entry.refs -= 1;
        if entry.refs == 0 {
            if let Some(entry) = slot.take() {
                self.text_bytes -= entry.text.len();
                self.ids.remove(&entry.text);
            }
            self.free.push(id);
        }
    }

    /// The string with `id`, if it is held.
    #[inline]
    pub(crate) fn get(&self, id: Sym) -> Option<&str> {
        match self.entries.get(id as usize) {
            Some(Some(entry)) => Some(&entry.text),
            _ => None,
        }
    }

    /// How many ids exist (held or free): an upper bound for ids, to size a per-id cache.
    pub(crate) fn id_bound(&self) -> usize {
        self.entries.len()
    }

    /// Strings held now.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// See the field.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Approximate bytes this table uses: the strings, their counts and the hash table.
    pub(crate) fn bytes(&self) -> usize {
        const PER_STRING: usize = 16 /* Arc header */ + 24 /* map slot + control */ + 32 /* entry */;
        self.text_bytes + self.entries.len() * PER_STRING
    }

    /// An empty table that a filter's cache will not mistake for this one.
    pub(crate) fn successor(&self) -> Self {
        Self {
            generation: self.generation + 1,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_shared_counted_and_forgotten_with_their_last_reference() {
        let mut strings = Interner::default();
        let a = strings.acquire("job-1").unwrap();
        assert_eq!(strings.acquire("job-1"), Some(a));
        let b = strings.acquire("job-2").unwrap();
        assert_ne!(a, b);
        assert_eq!(strings.len(), 2);
        strings.release(a);
        assert_eq!(strings.get(a), Some("job-1"), "one reference is left");
        strings.release(a);
        assert_eq!(strings.get(a), None);
        assert_eq!(strings.len(), 1);
        let generation = strings.generation();
        let c = strings.acquire("job-3").unwrap();
        assert_eq!(c, a, "the freed id is reused");
        assert!(
            strings.generation() > generation,
            "and the reuse is visible"
        );
        assert_eq!(strings.get(c), Some("job-3"));
    }

    #[test]
    fn unique_strings_do_not_grow_the_table_once_released() {
        let mut strings = Interner::default();
        for i in 0..10_000 {
            let id = strings.acquire(&format!("job-{i}")).unwrap();
            strings.release(id);
        }
        assert_eq!(strings.len(), 0);
        assert_eq!(strings.id_bound(), 1, "one id, reused each time");
        assert_eq!(strings.text_bytes, 0);
    }
}
