//! Repeated paragraphs: a long paragraph whose words were already read (a licence pasted
//! into hundreds of files, a page header or footer, a mirrored document) is counted once.
//!
//! Without this, every copy of one text adds its pairs again: a corpus of package
//! documentation mined its top pairs from the same copyright notices copied into many files,
//! since files are told apart by identity (the same file reached twice), not by content.
//!
//! Only paragraphs of at least [`MIN_BYTES`] bytes of words (each word's bytes and one for
//! the space after it: what is compared, so that every copy of a text is judged alike
//! however indented) are compared: short ones ("Thank you.", "See also:") recur naturally
//! and are not copies of one source. Two paragraphs are one when their words are the same
//! in the same order, however their lines are wrapped or indented (whitespace is not
//! compared): copies of a licence are re-indented from file to file. Case and punctuation
//! are compared.
//!
//! The first pass remembers a SHA-256 digest (its first 128 bits) of each long paragraph,
//! with the place it was first read, and marks the repeats by their position among the long
//! paragraphs; later passes read the same input in the same order and consult the marks
//! (one bit per long paragraph) instead of hashing again. The digests live through the first
//! pass only, bounded by their share of `--memory` ([`Repeats::new`]): past it, new
//! paragraphs are no longer remembered (repeats of those already remembered still are
//! dropped), and the report says how many were not compared. SHA-256 rather than a
//! non-cryptographic hash: it is already a dependency, a collision (two different texts
//! taken for one, one of them lost) is out of the question, and its cost was not measurable
//! beside the counting (`benchmarks/corpus/repeats.md`).

use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

use super::source::Block;

/// Paragraphs with fewer bytes of words than this (each word and one space after it) are
/// never compared.
pub const MIN_BYTES: usize = 200;

/// Bytes one remembered paragraph may cost in the table: 32 for the digest and place, one
/// control byte, at most 8/7 of that for the table's slack, twice that just after it
/// doubles, and the old table beside the new while it grows (about 113 in all).
const ENTRY_BYTES: u64 = 120;

/// The share of `--memory` the digests may take (the denominator).
const MEMORY_SHARE: u64 = 8;

/// Where a paragraph was first read: its source (index in the expanded inputs) and line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// Index of the source in the expanded input list.
    pub source: u32,
    /// 1-based line of the paragraph's first line.
    pub line: u64,
}

/// Drops repeated long paragraphs from the blocks the reader hands out; see the
/// [module docs](self).
#[derive(Debug, Default)]
pub struct Repeats {
    /// Off with `--keep-repeated-paragraphs`: every block passes as it is.
    enabled: bool,
    /// First pass: each remembered paragraph's digest and first place. `None` afterwards,
    /// when the marks are complete and later passes consult them.
    seen: Option<FxHashMap<u128, Place>>,
    /// How many paragraphs `seen` may hold.
    cap: usize,
    /// One bit per long paragraph, in reading order: set for a repeat.
    repeat_bits: Vec<u64>,
    /// Long paragraphs met so far in this pass.
    ordinal: u64,
    /// Repeats dropped (first pass).
    pub repeated: u64,
    /// Their bytes (first pass).
    pub repeated_bytes: u64,
    /// Long paragraphs read after the table was full, so not remembered (first pass).
    pub not_remembered: u64,
    /// The first repeat: where it was read, and where its first copy was.
    pub example: Option<(Place, Place)>,
}

impl Repeats {
    /// Drops repeats when `enabled`, the digests taking at most an eighth of `memory`
    /// bytes.
    pub fn new(enabled: bool, memory: u64) -> Self {
        Repeats {
            enabled,
            seen: enabled.then(FxHashMap::default),
            cap: (memory / MEMORY_SHARE / ENTRY_BYTES).max(1024) as usize,
            ..Repeats::default()
        }
    }

    /// Removes the repeated long paragraphs from `block`.
    pub fn filter(&mut self, block: &mut Block) {
        if !self.enabled {
            return;
        }
        let Block {
            source,
            text,
            paras,
            ..
        } = block;
        paras.retain(|p| {
            let body = &text[p.start..p.end];
            // Short of MIN_BYTES by length with whitespace, so by its words: no need to split.
            if body.len() < MIN_BYTES || words_len(body) < MIN_BYTES {
                return true;
            }
            let ordinal = self.ordinal;
            self.ordinal += 1;
            let (word, bit) = ((ordinal / 64) as usize, 1u64 << (ordinal % 64));
            let Some(seen) = self.seen.as_mut() else {
                return self.repeat_bits.get(word).is_none_or(|w| w & bit == 0);
            };
            if self.repeat_bits.len() <= word {
                self.repeat_bits.push(0);
            }
            let digest = digest_of_words(body);
            let place = Place {
                source: *source,
                line: p.line,
            };
            if let Some(first) = seen.get(&digest) {
                self.repeat_bits[word] |= bit;
                self.repeated += 1;
                self.repeated_bytes += body.trim().len() as u64;
                if self.example.is_none() {
                    self.example = Some((place, *first));
                }
                return false;
            }
            if seen.len() < self.cap {
                seen.insert(digest, place);
            } else {
                self.not_remembered += 1;
            }
            true
        });
    }

    /// Ends a pass: after the first, the digests are dropped and the marks are what later
    /// passes consult.
    pub fn end_pass(&mut self) {
        if self.enabled {
            self.seen = None;
            self.ordinal = 0;
        }
    }
}

/// The bytes of `text`'s words, each with one space after it: what [`digest_of_words`]
/// hashes.
fn words_len(text: &str) -> usize {
    text.split_whitespace().map(|w| w.len() + 1).sum()
}

/// The first 128 bits of the SHA-256 of `text`'s words, each followed by one space.
fn digest_of_words(text: &str) -> u128 {
    let mut h = Sha256::new();
    for w in text.split_whitespace() {
        h.update(w.as_bytes());
        h.update(b" ");
    }
    let d = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&d[..16]);
    u128::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::source::Para;

    fn block(source: u32, paras: &[&str]) -> Block {
        let mut text = String::new();
        let mut ps = Vec::new();
        for (i, p) in paras.iter().enumerate() {
            let start = text.len();
            text.push_str(p);
            ps.push(Para {
                start,
                end: text.len(),
                line: 1 + 2 * i as u64,
                multiline: true,
            });
            text.push_str("\n\n");
        }
        Block::new(source, text, ps)
    }

    fn kept(b: &Block) -> Vec<String> {
        b.paras
            .iter()
            .map(|p| b.text[p.start..p.end].to_string())
            .collect()
    }

    #[test]
    fn long_repeats_go_short_ones_stay_and_later_passes_agree() {
        let licence = "Permission is hereby granted, free of charge, to any person obtaining \
                       a copy of this software and associated documentation files, to deal in \
                       the Software without restriction, including without limitation the \
                       rights to use.";
        assert!(licence.len() >= MIN_BYTES);
        let rewrapped = licence.replace(", ", ",\n   ");
        let other = licence.replace("charge", "CHARGE");
        let short = "See also the manual.";
        let first = [licence, short, short, other.as_str()];
        let second = [rewrapped.as_str(), short, licence, other.as_str()];
        let mut r = Repeats::new(true, 1 << 30);
        let mut passes = Vec::new();
        for _ in 0..2 {
            let (mut a, mut b) = (block(0, &first), block(1, &second));
            r.filter(&mut a);
            r.filter(&mut b);
            r.end_pass();
            passes.push((kept(&a), kept(&b)));
        }
        let (a, b) = &passes[0];
        assert_eq!(a, &[licence, short, short, other.as_str()]);
        assert_eq!(b, &[short]);
        assert_eq!(passes[1], passes[0]);
        assert_eq!((r.repeated, r.not_remembered), (3, 0));
        assert_eq!(
            r.example,
            Some((Place { source: 1, line: 1 }, Place { source: 0, line: 1 }))
        );
    }

    /// Review (s18): the threshold counted whitespace, so an indented copy of a text just
    /// under it was compared (and dropped among the indented copies) while the flat text was
    /// not: every copy of one text is now judged by its words alike.
    #[test]
    fn the_threshold_is_judged_by_the_words_alone() {
        let flat = "alpha ".repeat(30); // 180 bytes of words
        let indented = flat.replace(' ', "\n        ");
        assert!(indented.len() >= MIN_BYTES && words_len(&indented) < MIN_BYTES);
        let mut r = Repeats::new(true, 1 << 30);
        let mut b = block(0, &[&indented, &flat, &indented]);
        r.filter(&mut b);
        assert_eq!((b.paras.len(), r.repeated), (3, 0));
    }

    #[test]
    fn kept_all_when_disabled_and_counted_when_the_table_is_full() {
        let long = |i: usize| format!("{} {i}", "word ".repeat(50));
        let paras: Vec<String> = (0..2000).map(long).chain((0..2000).map(long)).collect();
        let refs: Vec<&str> = paras.iter().map(String::as_str).collect();
        let mut off = Repeats::new(false, 0);
        let mut b = block(0, &refs);
        off.filter(&mut b);
        assert_eq!(b.paras.len(), 4000);
        // The smallest table holds 1024: the first 1024 are remembered and their repeats
        // dropped; the rest are kept and counted as not compared.
        let mut small = Repeats::new(true, 0);
        let mut b = block(0, &refs);
        small.filter(&mut b);
        assert_eq!(small.repeated, 1024);
        assert_eq!(small.not_remembered, 2000 - 1024 + (2000 - 1024));
        assert_eq!(b.paras.len(), 4000 - 1024);
    }
}
