//! One pass for the words that start the labelled-secret pattern and the credential names.
//!
//! [`RE_LABELLED`](super::RE_LABELLED) can only match where one of [`LABEL_WORDS`] starts (a
//! test checks that they cover it), and the credential names are words. Both used to be
//! searched for on their own over the lowercased text (two prefiltered passes; the name search
//! with 2-byte fingerprints because of `pw`); one packed multi-pattern search now finds every
//! place where a word of either kind starts, `pw` is found by a substring search, and the
//! labelled pattern is tried only at its words, in the order its own search would have found
//! the matches: the findings are the same.
//!
//! Measured (callgrind, 64 KiB): one search for both kinds costs less than the two it replaces
//! on plain strings and on prose, but adding the health terms or the secret contexts to the same
//! search costs more than searching for them on their own (a packed search with more than ~30
//! words of common English trigrams reports a candidate at a large share of places in prose).
//!
//! [`LABEL_WORDS`]: super::LABEL_WORDS

use aho_corasick::{AhoCorasick, Input, MatchKind};
use memchr::memmem;

/// A labelled secret may start here ([`super::RE_LABELLED`]).
pub(super) const LABEL: u8 = 1;
/// A credential name word may start here ([`super::NAME_WORDS`]).
pub(super) const NAME: u8 = 2;

/// Where words of one or more kinds start, by offset into the lowercased text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hit {
    /// Offset of the word's first byte (always an ASCII byte, so a char boundary).
    pub(super) at: usize,
    /// The kinds ([`LABEL`], [`NAME`]) whose words may start here: a superset; each checks its
    /// own words or pattern at `at`.
    pub(super) kinds: u8,
}

/// The compiled word search.
#[derive(Clone)]
pub(super) struct Words {
    /// Words of 3 bytes or more, shortest first, with the kinds of every longer word that
    /// starts with them: a packed (SIMD) search as long as they stay at most 64 of 3 bytes or
    /// more (2-byte words would shrink every fingerprint to 2 bytes and multiply false starts).
    ac: AhoCorasick,
    kinds: Vec<u8>,
    /// 2-byte words (`pw`), each searched on its own, with the kinds of the words they start.
    short: Vec<(memmem::Finder<'static>, u8)>,
}

impl Words {
    /// Compiles the words of each kind (lowercase ASCII, 2 bytes or more); `None` if there are
    /// none.
    pub(super) fn new(sets: &[(u8, &[&str])]) -> Option<Words> {
        let mut words: Vec<(&str, u8)> = Vec::new();
        for &(kind, list) in sets {
            for &w in list {
                debug_assert!(w.len() >= 2 && w.bytes().all(|c| !c.is_ascii_uppercase()));
                match words.iter_mut().find(|(x, _)| *x == w) {
                    Some((_, k)) => *k |= kind,
                    None => words.push((w, kind)),
                }
            }
        }
        if words.is_empty() {
            return None;
        }
        // A word that starts with a shorter one is found through it: the shorter one is reported
        // first at any place both match, so it carries the longer one's kinds.
        words.sort_by_key(|&(w, _)| (w.len(), w));
        let mut kept: Vec<(&str, u8)> = Vec::new();
        for (w, k) in words {
            match kept.iter_mut().find(|(x, _)| w.starts_with(x)) {
                Some((_, kx)) => *kx |= k,
                None => kept.push((w, k)),
            }
        }
        let (short, long): (Vec<_>, Vec<_>) = kept.into_iter().partition(|(w, _)| w.len() < 3);
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(long.iter().map(|(w, _)| w))
            .expect("built-in words compile");
        Some(Words {
            ac,
            kinds: long.iter().map(|&(_, k)| k).collect(),
            short: short
                .into_iter()
                .map(|(w, k)| (memmem::Finder::new(w.as_bytes()).into_owned(), k))
                .collect(),
        })
    }

    /// Every place in `lower` where a word starts, ascending, into `out` (cleared first).
    pub(super) fn find(&self, lower: &[u8], out: &mut Vec<Hit>) {
        out.clear();
        let mut from = 0;
        // Leftmost-first reports one word per start; going on one byte after it also finds the
        // words that start inside it.
        while from < lower.len() {
            let Some(m) = self.ac.find(Input::new(lower).range(from..)) else {
                break;
            };
            out.push(Hit {
                at: m.start(),
                kinds: self.kinds[m.pattern().as_usize()],
            });
            from = m.start() + 1;
        }
        let before = out.len();
        for (finder, kinds) in &self.short {
            out.extend(finder.find_iter(lower).map(|at| Hit { at, kinds: *kinds }));
        }
        if out.len() > before {
            // Two words never start at one place here (no long word starts with a short one).
            out.sort_unstable_by_key(|h| h.at);
        }
    }
}
