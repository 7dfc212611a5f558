//! The `graph` file: a flat, memory-mappable HNSW adjacency, and the search that runs on it.
//!
//! Payload layout (little-endian; offsets relative to the payload start):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | `n`, number of nodes (= rows) |
//! | 8 | 4 | `max_level`, the top layer |
//! | 12 | 4 | `entry`, the entry node (`u32::MAX` when `n == 0`) |
//! | 16 | 4 | `m0`, width of a layer-0 neighbour list |
//! | 20 | 4 | `m`, width of an upper-layer neighbour list |
//! | 24 | 8 | `n_upper`, number of nodes whose level is ≥ 1 |
//! | 32 | 8 | `upper_lists`, total number of upper-layer lists |
//! | 40 | `n` rounded up to 4 | per-node level (`u8`), zero padded |
//! | … | `4·n·m0` | layer-0 lists: node `i`'s list at `i·m0` |
//! | … | `4·n_upper` | rows of the upper nodes, ascending |
//! | … | `4·n_upper` | for each upper node, index of its layer-1 list (layer `l` is at `+ l − 1`) |
//! | … | `4·upper_lists·m` | upper-layer lists |
//!
//! Every list is padded with `u32::MAX`. Search reads this directly from the map; out-of-range
//! ids in a damaged file are skipped, never dereferenced.

use std::cell::Cell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::path::Path;

use crate::dot::{Kernel, RowStore};
use crate::error::{IndexError, Result};
use crate::format::{get_u32, get_u64};
use crate::integrity::Protected;

/// Padding value in neighbour lists.
pub const NO_NEIGHBOUR: u32 = u32::MAX;

const FIXED: usize = 40;

/// How many neighbour rows ahead of the one being scored the search (and the graph builder's
/// layer search) asks the CPU to load. Scoring is bound by memory, not arithmetic; three rows
/// in flight measured 2–4% (`f32`) and 7% (`f16`) faster than one on the 148k default vectors
/// (`benchmarks/index/README.md`).
pub(crate) const PREFETCH_AHEAD: usize = 3;

/// Parsed positions of the graph sections inside the payload.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GraphLayout {
    pub n: usize,
    pub max_level: usize,
    pub entry: u32,
    pub m0: usize,
    pub m: usize,
    pub levels_at: usize,
    pub layer0_at: usize,
    pub upper_rows_at: usize,
    pub upper_base_at: usize,
    pub upper_adj_at: usize,
    pub end: usize,
}

fn round4(x: usize) -> usize {
    x.div_ceil(4) * 4
}

impl GraphLayout {
    /// Parses and checks the fixed part of a payload against its length and the row count.
    pub(crate) fn parse(payload: &[u8], count: usize, path: &Path) -> Result<GraphLayout> {
        let bad = |r: &str| IndexError::corrupt(path, r.to_string());
        let n = get_u64(payload, 0).ok_or_else(|| bad("graph header cut short"))? as usize;
        let max_level = get_u32(payload, 8).ok_or_else(|| bad("graph header cut short"))? as usize;
        let entry = get_u32(payload, 12).ok_or_else(|| bad("graph header cut short"))?;
        let m0 = get_u32(payload, 16).ok_or_else(|| bad("graph header cut short"))? as usize;
        let m = get_u32(payload, 20).ok_or_else(|| bad("graph header cut short"))? as usize;
        let n_upper = get_u64(payload, 24).ok_or_else(|| bad("graph header cut short"))? as usize;
        let upper_lists =
            get_u64(payload, 32).ok_or_else(|| bad("graph header cut short"))? as usize;
        if n != count {
            return Err(bad(&format!(
                "graph has {n} nodes but the index has {count} rows"
            )));
        }
        if m0 == 0 || m0 > 4096 || m == 0 || m > 4096 || max_level > 64 {
            return Err(bad("graph parameters out of range"));
        }
        if n > 0 && entry as usize >= n {
            return Err(bad("entry point out of range"));
        }
        if n_upper > n || upper_lists > n.saturating_mul(max_level.max(1)) {
            return Err(bad("upper-layer sizes out of range"));
        }
        let levels_at = FIXED;
        let layer0_at = levels_at + round4(n);
        let upper_rows_at = layer0_at + 4 * n * m0;
        let upper_base_at = upper_rows_at + 4 * n_upper;
        let upper_adj_at = upper_base_at + 4 * n_upper;
        let end = upper_adj_at + 4 * upper_lists * m;
        if end != payload.len() {
            return Err(bad(&format!(
                "graph payload is {} bytes but its layout needs {end}",
                payload.len()
            )));
        }
        Ok(GraphLayout {
            n,
            max_level,
            entry,
            m0,
            m,
            levels_at,
            layer0_at,
            upper_rows_at,
            upper_base_at,
            upper_adj_at,
            end,
        })
    }
}

/// Borrowed view of a graph payload.
///
/// When `guard` is set (an index opened from disk), every neighbour list is read only after
/// the blocks holding it verified ([`crate::integrity`]); a list in a damaged block reads as
/// empty and the block is remembered in `bad`, which the caller turns into an error. The
/// fixed header, the levels and the upper-node tables are verified when the view is made.
pub(crate) struct GraphView<'a> {
    pub layout: GraphLayout,
    pub levels: &'a [u8],
    pub layer0: &'a [u32],
    pub upper_rows: &'a [u32],
    pub upper_base: &'a [u32],
    pub upper_adj: &'a [u32],
    guard: Option<&'a Protected>,
    bad: Cell<Option<u64>>,
}

fn u32s<'a>(payload: &'a [u8], from: usize, to: usize, path: &Path) -> Result<&'a [u32]> {
    bytemuck::try_cast_slice(&payload[from..to])
        .map_err(|e| IndexError::corrupt(path, format!("misaligned graph section: {e}")))
}

impl<'a> GraphView<'a> {
    /// Builds the view (the layout must come from [`GraphLayout::parse`] on the same payload).
    pub(crate) fn new(payload: &'a [u8], layout: GraphLayout, path: &Path) -> Result<Self> {
        let l = &layout;
        Ok(GraphView {
            layout,
            levels: &payload[l.levels_at..l.levels_at + l.n],
            layer0: u32s(payload, l.layer0_at, l.upper_rows_at, path)?,
            upper_rows: u32s(payload, l.upper_rows_at, l.upper_base_at, path)?,
            upper_base: u32s(payload, l.upper_base_at, l.upper_adj_at, path)?,
            upper_adj: u32s(payload, l.upper_adj_at, l.end, path)?,
            guard: None,
            bad: Cell::new(None),
        })
    }

    /// The view of a mapped `graph` file: sections read without per-access checks (header,
    /// levels, upper-node tables; small) are verified now, neighbour lists on first use.
    pub(crate) fn guarded(file: &'a Protected, layout: GraphLayout) -> Result<Self> {
        file.check(0, layout.layer0_at)?;
        file.check(layout.upper_rows_at, layout.upper_adj_at)?;
        let mut v = GraphView::new(file.payload(), layout, &file.path)?;
        v.guard = Some(file);
        Ok(v)
    }

    /// The first damaged block a read met, if any.
    pub(crate) fn bad_block(&self) -> Option<u64> {
        self.bad.get()
    }

    /// Whether the payload bytes `start..start + len` verified; remembers the block if not.
    #[inline(always)]
    fn verified(&self, start: usize, len: usize) -> bool {
        match self.guard {
            None => true,
            Some(g) => match g.ok(start, start + len) {
                Ok(()) => true,
                Err(b) => {
                    if self.bad.get().is_none() {
                        self.bad.set(Some(b));
                    }
                    false
                }
            },
        }
    }

    #[inline(always)]
    fn layer0_list(&self, node: usize) -> &'a [u32] {
        let m0 = self.layout.m0;
        if !self.verified(self.layout.layer0_at + 4 * node * m0, 4 * m0) {
            return &[];
        }
        self.layer0.get(node * m0..node * m0 + m0).unwrap_or(&[])
    }

    #[inline(always)]
    fn prefetch_layer0(&self, node: usize) {
        if let Some(l) = self.layer0.get(node * self.layout.m0..) {
            crate::dot::prefetch_line(l.as_ptr());
        }
    }

    fn upper_list(&self, node: u32, level: usize) -> &'a [u32] {
        let Ok(j) = self.upper_rows.binary_search(&node) else {
            return &[];
        };
        let node_level = self.levels.get(node as usize).copied().unwrap_or(0) as usize;
        if level == 0 || level > node_level {
            return &[];
        }
        let Some(base) = self.upper_base.get(j) else {
            return &[];
        };
        let list = *base as usize + level - 1;
        let m = self.layout.m;
        if !self.verified(
            self.layout
                .upper_adj_at
                .saturating_add(4 * list.saturating_mul(m)),
            4 * m,
        ) {
            return &[];
        }
        self.upper_adj.get(list * m..list * m + m).unwrap_or(&[])
    }
}

/// Serialises a graph into the payload format described in the module docs.
///
/// `layer0[i]` is node `i`'s layer-0 list; `upper` holds, for each node of level ≥ 1 in
/// ascending row order, `(row, lists for layers 1..=level)`.
pub(crate) fn encode_graph(
    levels: &[u8],
    entry: u32,
    m0: usize,
    m: usize,
    layer0: &[u32],
    upper: &[(u32, Vec<Vec<u32>>)],
) -> Vec<u8> {
    let n = levels.len();
    let max_level = levels.iter().copied().max().unwrap_or(0) as u32;
    let upper_lists: usize = upper.iter().map(|(_, ls)| ls.len()).sum();
    let mut out =
        Vec::with_capacity(FIXED + round4(n) + 4 * (n * m0 + 2 * upper.len() + upper_lists * m));
    out.extend_from_slice(&(n as u64).to_le_bytes());
    out.extend_from_slice(&max_level.to_le_bytes());
    out.extend_from_slice(&entry.to_le_bytes());
    out.extend_from_slice(&(m0 as u32).to_le_bytes());
    out.extend_from_slice(&(m as u32).to_le_bytes());
    out.extend_from_slice(&(upper.len() as u64).to_le_bytes());
    out.extend_from_slice(&(upper_lists as u64).to_le_bytes());
    out.extend_from_slice(levels);
    out.resize(FIXED + round4(n), 0);
    for v in layer0 {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (row, _) in upper {
        out.extend_from_slice(&row.to_le_bytes());
    }
    let mut base = 0u32;
    for (_, ls) in upper {
        out.extend_from_slice(&base.to_le_bytes());
        base += ls.len() as u32;
    }
    for (_, ls) in upper {
        for list in ls {
            for j in 0..m {
                let v = list.get(j).copied().unwrap_or(NO_NEIGHBOUR);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

/// A search result: a row and its cosine similarity to the query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// Row number in the index.
    pub row: usize,
    /// Cosine similarity (inner product of unit vectors).
    pub score: f32,
}

/// Orders candidates by score, then by lower row first, as a total order.
#[derive(Clone, Copy, PartialEq)]
pub(crate) struct Scored {
    pub score: f32,
    pub row: u32,
}

impl From<Scored> for Hit {
    fn from(s: Scored) -> Hit {
        Hit {
            row: s.row as usize,
            score: s.score,
        }
    }
}

impl Eq for Scored {}

impl Ord for Scored {
    #[inline(always)]
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.row.cmp(&self.row))
    }
}

impl PartialOrd for Scored {
    #[inline(always)]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A reusable visited set: a generation counter per node, so clearing is O(1).
pub(crate) struct Visited {
    marks: Vec<u32>,
    generation: u32,
}

impl Visited {
    /// An empty set for `n` nodes.
    pub(crate) fn new(n: usize) -> Self {
        Visited {
            marks: vec![0; n],
            generation: 0,
        }
    }

    /// Number of nodes this set covers.
    pub(crate) fn len(&self) -> usize {
        self.marks.len()
    }

    /// Starts a new search (all nodes unvisited).
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.fill(0);
            self.generation = 1;
        }
    }

    /// Hints the CPU to load `node`'s mark (the set is too large for L1/L2 on big indexes).
    #[inline(always)]
    pub(crate) fn prefetch(&self, node: usize) {
        if let Some(m) = self.marks.get(node) {
            crate::dot::prefetch_line(m as *const u32);
        }
    }

    /// Marks `node`; returns `true` if it was not visited yet.
    #[inline(always)]
    pub(crate) fn insert(&mut self, node: usize) -> bool {
        match self.marks.get_mut(node) {
            Some(m) if *m != self.generation => {
                *m = self.generation;
                true
            }
            _ => false,
        }
    }
}

/// HNSW search: greedy descent on the upper layers (skipped when `start` names a row: the
/// layer-0 search then starts there), then an ef-bounded best-first search on layer 0 that
/// only admits rows passing `keep` into the result set (filtered rows are still traversed).
/// Returns up to `k` hits, best first.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn search<K: Kernel, S: RowStore, F: FnMut(usize) -> bool>(
    g: &GraphView<'_>,
    store: &mut S,
    q: &[f32],
    k: usize,
    ef: usize,
    start: Option<usize>,
    visited: &mut Visited,
    mut keep: F,
) -> Vec<Hit> {
    let n = g.layout.n.min(store.rows());
    if n == 0 || k == 0 {
        return Vec::new();
    }
    let ef = ef.max(k);
    let from_start = start.filter(|&s| s < n);
    let mut cur = match from_start {
        Some(s) => s as u32,
        None => g.layout.entry,
    };
    if cur as usize >= n {
        return Vec::new();
    }
    let mut cur_s = store.dot::<K>(q, cur as usize);
    let top = if from_start.is_some() {
        0
    } else {
        g.layout.max_level
    };
    for level in (1..=top).rev() {
        loop {
            let mut changed = false;
            for &nb in g.upper_list(cur, level) {
                if nb as usize >= n {
                    continue;
                }
                let s = store.dot::<K>(q, nb as usize);
                if s > cur_s {
                    cur_s = s;
                    cur = nb;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    visited.reset();
    let mut candidates: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef * 4);
    let mut results: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef + 1);
    let mut bound = f32::NEG_INFINITY;
    visited.insert(cur as usize);
    candidates.push(Scored {
        score: cur_s,
        row: cur,
    });
    if keep(cur as usize) {
        results.push(Reverse(Scored {
            score: cur_s,
            row: cur,
        }));
        if results.len() >= ef {
            bound = cur_s;
        }
    }
    let mut fresh: Vec<u32> = Vec::with_capacity(g.layout.m0);
    while let Some(c) = candidates.pop() {
        if results.len() >= ef && c.score < bound {
            break;
        }
        // The next candidate's neighbour list, loaded while this one's neighbours are scored.
        if let Some(next) = candidates.peek() {
            g.prefetch_layer0(next.row as usize);
        }
        fresh.clear();
        let list = g.layer0_list(c.row as usize);
        // Issue every mark's load before testing any: the marks of a large index are cache
        // misses, and this lets them overlap instead of arriving one after another.
        for &nb in list {
            if nb == NO_NEIGHBOUR {
                break;
            }
            visited.prefetch(nb as usize);
        }
        for &nb in list {
            if nb == NO_NEIGHBOUR {
                break;
            }
            if (nb as usize) < n && visited.insert(nb as usize) {
                fresh.push(nb);
            }
        }
        for &f in fresh.iter().take(PREFETCH_AHEAD) {
            store.prefetch(f as usize);
        }
        for i in 0..fresh.len() {
            if let Some(&next) = fresh.get(i + PREFETCH_AHEAD) {
                store.prefetch(next as usize);
            }
            let nb = fresh[i];
            let s = store.dot::<K>(q, nb as usize);
            if results.len() < ef || s > bound {
                candidates.push(Scored { score: s, row: nb });
                if keep(nb as usize) {
                    results.push(Reverse(Scored { score: s, row: nb }));
                    if results.len() > ef {
                        results.pop();
                    }
                    if results.len() >= ef {
                        if let Some(Reverse(w)) = results.peek() {
                            bound = w.score;
                        }
                    }
                }
            }
        }
    }
    let mut out: Vec<Scored> = results.into_iter().map(|Reverse(s)| s).collect();
    out.sort_unstable_by(|a, b| b.cmp(a));
    out.truncate(k);
    out.into_iter().map(Hit::from).collect()
}

/// Exact top-`k` over rows `[start, end)` of `store`, keeping only rows passing `keep`.
#[inline(always)]
pub(crate) fn exact_range<K: Kernel, S: RowStore, F: Fn(usize) -> bool>(
    store: &mut S,
    q: &[f32],
    k: usize,
    start: usize,
    end: usize,
    keep: &F,
) -> Vec<Scored> {
    let mut heap: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(k + 1);
    for row in start..end {
        let s = store.dot::<K>(q, row);
        let cand = Scored {
            score: s,
            row: row as u32,
        };
        if heap.len() < k {
            if keep(row) {
                heap.push(Reverse(cand));
            }
        } else if let Some(Reverse(w)) = heap.peek() {
            if cand > *w && keep(row) {
                heap.pop();
                heap.push(Reverse(cand));
            }
        }
    }
    heap.into_iter().map(|Reverse(s)| s).collect()
}
