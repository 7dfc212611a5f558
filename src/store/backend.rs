//! The storage trait the query layer holds: where relation vectors are kept and searched.
//!
//! [`RelationStore`] is everything [`crate::query::QueryEngine`] needs from storage: the
//! encoder identity the vectors were made with, a pair's stored vector, and a nearest-neighbour
//! search that leaves out the query pair and (unless asked) pairs sharing a word with it. Two
//! backends implement it: [`LocalStore`], the memory-mapped HNSW index of `relbert-index`, and
//! `store::qdrant::QdrantStore` (the `qdrant` feature), a Qdrant collection (one node or a
//! cluster). Both return the same [`QueryHit`]s, so every front end prints the same results
//! whichever backs it.

use std::path::Path;

use relbert_index::{EncoderInfo, Index};

use crate::error::Result;
use crate::query::{fold_word, lookup_row, shares_word, QueryHit};

/// One nearest-neighbour search.
#[derive(Debug, Clone)]
pub struct SearchRequest<'a> {
    /// Results wanted.
    pub k: usize,
    /// Exact brute-force search instead of the approximate graph.
    pub exact: bool,
    /// HNSW candidate-list size (raised to `k`).
    pub ef: usize,
    /// A pair never returned (the query pair itself).
    pub exclude_pair: Option<(&'a str, &'a str)>,
    /// Folded words ([`crate::query::pair_words`]): pairs holding any of them are not
    /// returned (empty: keep all).
    pub exclude_words: &'a [String],
}

/// Where relation vectors are kept: a local index or a vector database.
///
/// Implementations are `Send + Sync` so a server can share one engine between threads.
pub trait RelationStore: Send + Sync {
    /// Names the store for messages: an index directory, or `URL collection NAME`.
    fn describe(&self) -> String;
    /// The encoder identity the stored vectors were made with.
    fn encoder(&self) -> &EncoderInfo;
    /// Vector width.
    fn dim(&self) -> usize;
    /// Number of pairs stored.
    fn count(&self) -> Result<u64>;
    /// The stored vector of (head, tail), if the pair is stored (exact string match).
    fn lookup(&self, head: &str, tail: &str) -> Result<Option<Vec<f32>>>;
    /// The best `req.k` pairs by cosine similarity to `vector`, best first.
    fn search(&self, vector: &[f32], req: &SearchRequest<'_>) -> Result<Vec<QueryHit>>;
    /// The local index, when this store is one (for callers that need its files or rows).
    fn local_index(&self) -> Option<&Index> {
        None
    }
}

/// The memory-mapped index of `relbert-index` as a [`RelationStore`].
pub struct LocalStore {
    index: Index,
}

impl LocalStore {
    /// Opens the index at `dir` (headers and the pair table checked; vector blocks lazily).
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(LocalStore {
            index: Index::open(dir)?,
        })
    }

    /// Wraps an index that is already open.
    pub fn new(index: Index) -> Self {
        LocalStore { index }
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }
}

impl RelationStore for LocalStore {
    fn describe(&self) -> String {
        self.index.dir().display().to_string()
    }

    fn encoder(&self) -> &EncoderInfo {
        &self.index.meta().encoder
    }

    fn dim(&self) -> usize {
        self.index.dim()
    }

    fn count(&self) -> Result<u64> {
        Ok(self.index.count() as u64)
    }

    fn lookup(&self, head: &str, tail: &str) -> Result<Option<Vec<f32>>> {
        match self.index.lookup(head, tail)? {
            Some(row) => Ok(Some(self.index.vector(row)?.into_owned())),
            None => Ok(None),
        }
    }

    fn search(&self, vector: &[f32], req: &SearchRequest<'_>) -> Result<Vec<QueryHit>> {
        // The row the query pair's vector came from, in whichever spelling it is stored
        // (`QueryEngine::stored` finds it so).
        let self_row = match req.exclude_pair {
            Some((a, b)) => lookup_row(&self.index, a, b)?,
            None => None,
        };
        let hits = search_local(&self.index, vector, req, self_row, None)?;
        Ok(hits.into_iter().map(|(_, h)| h).collect())
    }

    fn local_index(&self) -> Option<&Index> {
        Some(&self.index)
    }
}

/// The words of every pair of a local index, folded as queries compare words ([`fold_word`]:
/// case, normal form, apostrophes) and hashed to 64 bits, for a process that answers many
/// queries (the server). The shared-word filter runs on every candidate a search admits, a
/// few hundred per query; with this table a candidate is kept after comparing a few
/// integers, and only a hash match (a shared word, or a collision) decodes the pair for the
/// exact test, instead of decoding and splitting every candidate's pair (a fifth of a stored
/// query's time in the server). 8 bytes per word and 4 per pair, built in one pass over the
/// pairs.
pub struct WordTable {
    hashes: Vec<u64>,
    /// Where each row's hashes start in `hashes`; one more entry than rows.
    starts: Vec<u32>,
}

/// The hash of a word given as its folded characters ([`fold_word`]): [`shares_word`]
/// compares those sequences, so equal words always hash alike.
fn word_hash(chars: impl Iterator<Item = char>) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    for c in chars {
        h.write_u32(c as u32);
    }
    h.finish()
}

impl WordTable {
    /// Hashes the words of every pair of `index`.
    pub fn build(index: &Index) -> Result<Self> {
        let mut hashes = Vec::with_capacity(index.count() * 2);
        let mut starts = Vec::with_capacity(index.count() + 1);
        for row in 0..index.count() {
            starts.push(hashes.len() as u32);
            let p = index.pair(row)?;
            for w in p.head.split_whitespace().chain(p.tail.split_whitespace()) {
                hashes.push(word_hash(fold_word(w)));
            }
        }
        starts.push(hashes.len() as u32);
        Ok(WordTable { hashes, starts })
    }

    /// Whether `row` may hold one of the words hashed in `query` (false: it surely does not).
    fn may_share(&self, row: usize, query: &[u64]) -> bool {
        match (self.starts.get(row), self.starts.get(row + 1)) {
            (Some(&a), Some(&b)) => self.hashes[a as usize..b as usize]
                .iter()
                .any(|h| query.contains(h)),
            // A row the table does not know (an index grown since): test it exactly.
            _ => true,
        }
    }
}

/// A search of a local index that also returns each hit's row: `self_row` (the query pair's
/// row, if stored) and pairs holding one of `req.exclude_words` are left out. `words`, the
/// index's [`WordTable`] if the caller keeps one, makes the shared-word test cheap. Shared
/// by [`LocalStore`] and the server, which reads the hits' vectors by row. A stored row
/// that is NaN or zero is never a hit; the first one met is logged as a warning, once per
/// open index ([`Index::invalid_row_notice`]).
pub fn search_local(
    index: &Index,
    vector: &[f32],
    req: &SearchRequest<'_>,
    self_row: Option<usize>,
    words: Option<&WordTable>,
) -> Result<Vec<(usize, QueryHit)>> {
    let query: Vec<u64> = req
        .exclude_words
        .iter()
        .map(|w| word_hash(w.chars()))
        .collect();
    let damaged = std::sync::Mutex::new(None);
    let keep = |row: usize| -> bool {
        if Some(row) == self_row {
            return false;
        }
        if req.exclude_words.is_empty() {
            return true;
        }
        if words.is_some_and(|t| !t.may_share(row, &query)) {
            return true;
        }
        match index.pair(row) {
            Ok(p) => !shares_word(req.exclude_words, p.head, p.tail),
            // Kept to be returned after the search: a damaged block of pairs (checked as it
            // is read, when the open did not check it all) dropped its rows from the
            // results without a word (found by review R18).
            Err(e) => {
                if let Ok(mut first) = damaged.lock() {
                    first.get_or_insert(e);
                }
                false
            }
        }
    };
    let hits = if req.exact {
        index.search_exact_filtered(vector, req.k, keep)?
    } else {
        // A stored pair's vector is its own row: the search starts there.
        index.search_filtered_from(vector, req.k, req.ef.max(req.k), self_row, keep)?
    };
    if let Some(e) = damaged.into_inner().ok().flatten() {
        return Err(e.into());
    }
    // A stored vector that is NaN or zero (a file rewritten with fresh checksums) is left
    // out of the hits by the index; the user hears of it once per open index, not per query.
    if let Some(e) = index.invalid_row_notice() {
        tracing::warn!("left out of the results: {e}");
    }
    hits.into_iter()
        .map(|h| {
            let p = index.pair(h.row)?;
            Ok((
                h.row,
                QueryHit {
                    pair: [p.head.to_string(), p.tail.to_string()],
                    score: h.score,
                    label: p.label.map(|l| l.to_string()),
                },
            ))
        })
        .collect()
}
