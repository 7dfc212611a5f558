//! Pair suggestions as the user types: a prefix search over the index's pairs. The index
//! itself is keyed by exact pair (a hash lookup), so the server builds, once at start-up, a
//! sorted list of the pairs as lower-cased `head:tail` strings and answers a prefix with a
//! binary search. For a million pairs this is a few tens of MB and about a second to build.

use relbert_index::Index;

use crate::error::Result;

/// The sorted `head:tail` keys of every pair in an index, with their rows.
pub struct Suggestions {
    keys: Vec<(String, u32)>,
}

impl Suggestions {
    /// Reads every pair of `index`.
    pub fn build(index: &Index) -> Result<Self> {
        let mut keys = Vec::with_capacity(index.count());
        for row in 0..index.count() {
            let p = index.pair(row)?;
            let key = format!("{}:{}", p.head, p.tail).to_lowercase();
            keys.push((key, row as u32));
        }
        keys.sort_unstable();
        Ok(Suggestions { keys })
    }

    /// Up to `limit` rows whose `head:tail` starts with `prefix` (case-insensitive), in
    /// alphabetical order. A prefix `a b` (space instead of colon) is read as `a:b`, the way
    /// people type a pair.
    pub fn prefix(&self, prefix: &str, limit: usize) -> Vec<usize> {
        let mut p = prefix.trim_start().to_lowercase();
        if !p.contains(':') {
            if let Some((a, b)) = p.split_once(['\t', ' ']) {
                if !b.trim().is_empty() {
                    p = format!("{}:{}", a.trim(), b.trim_start());
                }
            }
        }
        if p.is_empty() {
            return Vec::new();
        }
        let start = self.keys.partition_point(|(k, _)| k.as_str() < p.as_str());
        self.keys[start..]
            .iter()
            .take_while(|(k, _)| k.starts_with(&p))
            .take(limit)
            .map(|&(_, row)| row as usize)
            .collect()
    }

    /// How many pairs there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the index has no pairs.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
