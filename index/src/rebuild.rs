//! Rebuilding an index from its own pairs and vectors, without the encoder that made them: the
//! same pairs in another storage precision, or under other HNSW parameters.
//!
//! The encoder is the expensive part of a build (minutes for the default vocabulary, where the
//! graph takes about one), so changing `--f16` or `m` should not mean encoding every pair
//! again. The copy goes through [`IndexBuilder`], so a rebuild has a normal build's guarantees:
//! it is written to `<out>.partial/`, resumes after an interruption, and replaces an existing
//! `out` (the source itself included) only by the final rename, and only when forced. The
//! source's rows are read once before anything is created (after the output's writer lock is
//! taken and the output checked), so a damaged source leaves no `<out>.partial/` behind.

use std::path::{Path, PathBuf};

use crate::build::{HnswParams, IndexBuilder, Progress, Stage};
use crate::error::{IndexError, Result};
use crate::index::Index;
use crate::meta::{IndexSpec, Precision};
use crate::pairs::PairEntry;

/// Rows copied per checkpointed chunk.
const CHUNK_ROWS: usize = 8192;

/// What [`rebuild`] changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebuildOptions {
    /// Storage precision of the new index (`None`: the source's).
    pub precision: Option<Precision>,
    /// Graph parameters of the new index.
    pub hnsw: HnswParams,
    /// Replace an existing `out` (which may be the source directory itself).
    pub force: bool,
}

/// Builds `out` from the pairs, labels, vectors and encoder identity of the opened index `src`
/// (taken by value: it is closed before the new index is renamed into place, so `out` may be
/// the source's own directory; callers that read its metadata first open it only once).
///
/// `progress` receives [`Stage::Copying`] reports (rows of `count`) and then those of
/// [`IndexBuilder::finish`]. Vectors widened from `f16` are stored again as read (the
/// builder normalises each row, which leaves them unit length as before); an `f32` index
/// rebuilt as `f16` is rounded once, as `--f16` would have rounded it.
pub fn rebuild(
    idx: Index,
    out: &Path,
    opts: &RebuildOptions,
    progress: impl FnMut(Progress),
) -> Result<PathBuf> {
    let input = format!("index:{}", idx.id());
    rebuild_rows(idx, out, opts, None, input, progress)
}

/// [`rebuild`] leaving out the rows `drop` (row numbers of `src`, in any order, repeats
/// allowed): how `relbert index remove` shrinks an index, in place (`out` its own directory,
/// `force`) or into another directory. The other rows keep their order, pairs, labels and
/// vectors; the graph is built anew over them. A resumed run must leave out the same rows
/// (the partial directory records which: another set is [`IndexError::PartialMismatch`]);
/// leaving out every row is refused, as an empty index cannot be built, and so is a row past
/// the index.
pub fn rebuild_without(
    idx: Index,
    out: &Path,
    opts: &RebuildOptions,
    drop: &[usize],
    progress: impl FnMut(Progress),
) -> Result<PathBuf> {
    let mut dropped = drop.to_vec();
    dropped.sort_unstable();
    dropped.dedup();
    if let Some(&row) = dropped.last().filter(|&&r| r >= idx.count()) {
        return Err(IndexError::InvalidParameter(format!(
            "row {row} to leave out is past the index's {} rows",
            idx.count()
        )));
    }
    if dropped.len() == idx.count() {
        return Err(IndexError::InvalidParameter(format!(
            "leaving out all {} rows would leave an empty index, which cannot be built",
            idx.count()
        )));
    }
    // Recorded in the partial directory's spec: a resume with another set of rows to leave
    // out would otherwise mix the rows kept by two different runs.
    let input = format!(
        "index:{}{}{} rows {:016x}",
        idx.id(),
        crate::build::WITHOUT,
        dropped.len(),
        fnv1a(&dropped)
    );
    let mut next = dropped.iter().peekable();
    let kept: Vec<usize> = (0..idx.count())
        .filter(|&r| {
            if next.peek() == Some(&&r) {
                next.next();
                false
            } else {
                true
            }
        })
        .collect();
    rebuild_rows(idx, out, opts, Some(kept), input, progress)
}

/// FNV-1a over the rows' numbers (little-endian u64s): a stable digest of a set of rows for
/// the partial directory's spec (std's hashers are not promised stable across releases).
fn fnv1a(rows: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &r in rows {
        for b in (r as u64).to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Whether `a` and `b` name the same existing directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The rebuild of `idx` into `out` copying the rows `kept` (all rows when `None`), its
/// partial directory's spec recording `input`.
fn rebuild_rows(
    idx: Index,
    out: &Path,
    opts: &RebuildOptions,
    kept: Option<Vec<usize>>,
    input: String,
    mut progress: impl FnMut(Progress),
) -> Result<PathBuf> {
    let meta = idx.meta();
    let spec = IndexSpec {
        dim: meta.dim,
        precision: opts.precision.unwrap_or(meta.precision),
        encoder: meta.encoder.clone(),
        input,
    };
    opts.hnsw.validate()?;
    let in_place = same_dir(out, idx.dir());
    // What the copy reads of the source is read once before `<out>.partial/` is made, so a
    // damaged row or pair (in a file too large to be verified whole at open) is refused with
    // nothing created; and only after the output's cheap refusals (another writer, a
    // write-protected output), which would otherwise wait for a read of the whole source.
    // The source's graph is not read: a rebuild makes a new one, and is the way out of a
    // damaged graph.
    // In place, the directory must still hold the index opened: another writer (an `index
    // add`) that published between the open and this run's lock would otherwise have its rows
    // replaced by the older index's, without a word. Asked under the writer lock.
    let mut builder = IndexBuilder::create_or_resume_checking(out, spec, opts.force, || {
        if in_place {
            let run = if kept.is_some() { "remove" } else { "rebuild" };
            crate::grow::check_unchanged(&idx, run)?;
        }
        check_rows(&idx, kept.as_deref())
    })?;
    let from = builder.rows_done() as usize;
    // Every row is kept as it is: a rebuild changes the precision or the graph, not the
    // pairs, so an index built before spellings were merged keeps both spellings it holds
    // (and the rebuilt index counts the rows the source does).
    builder.set_exact_duplicates(true);
    if let Err(e) = copy_selected(&idx, &mut builder, kept.as_deref(), from, &mut progress) {
        // A partial directory this run made holds only rows of the source, which a rerun
        // copies again; one an earlier run left may still be resumed, and stays.
        return Err(builder.abandon(e));
    }
    // The graph is built from the new `vectors` file; the source is not read again, so it can
    // be the directory being replaced.
    drop(idx);
    builder.finish(opts.hnsw, progress)
}

/// Reads every pair and vector of `idx` that the copy will (the rows `kept`, or all), as
/// [`copy_selected`] will: each block they lie in is verified against its checksum (once: a
/// verified block is not checked again by the copy), and each vector is checked to be
/// finite and non-zero. Rows left out are not read: a damaged row can be removed.
fn check_rows(idx: &Index, kept: Option<&[usize]>) -> Result<()> {
    let check = |r: usize| -> Result<()> {
        idx.pair(r)?;
        idx.vector(r)?;
        Ok(())
    };
    match kept {
        Some(rows) => rows.iter().try_for_each(|&r| check(r)),
        None => (0..idx.count()).try_for_each(check),
    }
}

/// Appends rows `from..` of `idx` (pairs, labels, vectors) to `builder` in checkpointed chunks,
/// reporting [`Stage::Copying`] progress (rows of `idx.count()`).
pub(crate) fn copy_rows(
    idx: &Index,
    builder: &mut IndexBuilder,
    from: usize,
    progress: &mut impl FnMut(Progress),
) -> Result<()> {
    copy_selected(idx, builder, None, from, progress)
}

/// [`copy_rows`] of the rows `kept` (row numbers of `idx`, ascending), all when `None`: the
/// output's row `i` is `kept[i]`, so `from` and the progress count output rows.
fn copy_selected(
    idx: &Index,
    builder: &mut IndexBuilder,
    kept: Option<&[usize]>,
    from: usize,
    progress: &mut impl FnMut(Progress),
) -> Result<()> {
    let dim = idx.dim();
    let count = kept.map_or(idx.count(), <[usize]>::len);
    let source_row = |i: usize| kept.map_or(i, |rows| rows[i]);
    let total = count as u64;
    let mut row = from;
    let mut pairs = Vec::with_capacity(CHUNK_ROWS);
    let mut vectors = Vec::with_capacity(CHUNK_ROWS * dim);
    while row < count {
        let end = (row + CHUNK_ROWS).min(count);
        pairs.clear();
        vectors.clear();
        for r in (row..end).map(source_row) {
            let p = idx.pair(r)?;
            pairs.push(PairEntry {
                head: p.head.into(),
                tail: p.tail.into(),
                label: p.label.map(str::to_string),
            });
            vectors.extend_from_slice(&idx.vector(r)?);
        }
        builder.append_chunk(&pairs, &vectors)?;
        row = end;
        progress(Progress {
            stage: Stage::Copying,
            done: row as u64,
            total,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::low_rank;
    use crate::test_util::params;

    fn spec(input: &str) -> IndexSpec {
        crate::test_util::spec(8, input)
    }

    /// An index built before spellings were merged holds `café` precomposed and decomposed
    /// as two rows: both are found, and removing the pair removes both (found by a review:
    /// the exact spelling's row alone was removed, and queries went on answering from the
    /// other).
    #[test]
    fn both_spellings_of_a_pair_are_found_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let mut b = IndexBuilder::create_or_resume(&out, spec("old"), false).unwrap();
        b.set_exact_duplicates(true);
        let pairs = [
            PairEntry::new(String::from("caf\u{e9}"), String::from("x")),
            PairEntry::new(String::from("a"), String::from("b")),
            PairEntry::new(String::from("cafe\u{301}"), String::from("x")),
            PairEntry::new(String::from("c"), String::from("d")),
        ];
        b.append_chunk(&pairs, &low_rank(4, 8, 4, 0.1, 3)).unwrap();
        b.finish(params(), |_| {}).unwrap();
        let idx = Index::open(&out).unwrap();
        assert_eq!(idx.lookup_all("cafe\u{301}", "x").unwrap(), [0, 2]);
        assert_eq!(idx.lookup_all("caf\u{e9}", "x").unwrap(), [0, 2]);
        assert_eq!(idx.lookup_all("a", "b").unwrap(), [1]);
        assert!(idx.lookup_all("a", "x").unwrap().is_empty());
        let rows = idx.lookup_all("caf\u{e9}", "x").unwrap();
        let opts = RebuildOptions {
            precision: None,
            hnsw: params(),
            force: true,
        };
        rebuild_without(idx, &out, &opts, &rows, |_| {}).unwrap();
        let idx = Index::open(&out).unwrap();
        assert_eq!(idx.count(), 2);
        assert!(idx.lookup_all("caf\u{e9}", "x").unwrap().is_empty());
        assert_eq!(idx.pair(1).unwrap().head, "c");
    }

    /// Found by a review: every rebuild, add and remove scaled the `f32` rows it copied to
    /// unit norm again, and rounding that back to `f32` moved some by an ULP (28 of 2,000
    /// rows after a rebuild), so an index changed rows nobody asked to change. They are now
    /// copied bit for bit, through a rebuild, an add and a remove, each in place.
    #[test]
    fn copied_rows_keep_their_vectors_bit_for_bit() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let (n, dim) = (2000, 32);
        let mut b = IndexBuilder::create_or_resume(&out, crate::test_util::spec(dim, "old"), false)
            .unwrap();
        let pairs = crate::synthetic::numbered_pairs(0..n);
        b.append_chunk(&pairs, &crate::synthetic::gaussian(n, dim as usize, 7))
            .unwrap();
        b.finish(params(), |_| {}).unwrap();
        let bits = |idx: &Index, r: usize| -> Vec<u32> {
            idx.vector(r).unwrap().iter().map(|x| x.to_bits()).collect()
        };
        let rows = |idx: &Index| -> Vec<(String, Vec<u32>)> {
            (0..idx.count())
                .map(|r| (idx.pair(r).unwrap().head.to_string(), bits(idx, r)))
                .collect()
        };
        let built = rows(&Index::open(&out).unwrap());
        let opts = RebuildOptions {
            precision: None,
            hnsw: params(),
            force: true,
        };
        rebuild(Index::open(&out).unwrap(), &out, &opts, |_| {}).unwrap();
        assert!(
            rows(&Index::open(&out).unwrap()) == built,
            "a rebuild moved rows"
        );
        let base = Index::open(&out).unwrap();
        let mut g = crate::IndexGrower::create_or_resume(base, "new", 1, |_| {}).unwrap();
        let new = crate::synthetic::numbered_pairs(n..n + 10);
        g.append_chunk(&new, &crate::synthetic::gaussian(10, dim as usize, 8))
            .unwrap();
        g.finish(|_| {}).unwrap();
        let grown = rows(&Index::open(&out).unwrap());
        assert!(grown[..n] == built[..], "an add moved rows it copied");
        let added: Vec<usize> = (n..n + 10).collect();
        rebuild_without(Index::open(&out).unwrap(), &out, &opts, &added, |_| {}).unwrap();
        assert!(
            rows(&Index::open(&out).unwrap()) == built,
            "a remove moved rows"
        );
    }

    /// A remove left unfinished is named as a remove, with the command that finishes it, by
    /// an add and by a remove of other pairs (a review found it called a rebuild, and the
    /// rebuild it advised was refused again).
    #[test]
    fn an_unfinished_remove_is_named_as_one() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let mut b = IndexBuilder::create_or_resume(&out, spec("old"), false).unwrap();
        let pairs: Vec<PairEntry> = (0..6)
            .map(|i| PairEntry::new(format!("h{i}"), format!("t{i}")))
            .collect();
        b.append_chunk(&pairs, &low_rank(6, 8, 4, 0.1, 4)).unwrap();
        b.finish(params(), |_| {}).unwrap();
        let idx = Index::open(&out).unwrap();
        let id = idx.id();
        // The partial directory of a remove of rows 1 and 2, as a kill during its copy
        // leaves it.
        let removing = format!("index:{id} without 2 rows {:016x}", fnv1a(&[1, 2]));
        let mut b = IndexBuilder::create_or_resume(&out, spec(&removing), true).unwrap();
        b.append_chunk(&pairs[..2], &low_rank(2, 8, 4, 0.1, 5))
            .unwrap();
        drop(b);
        let said = |input: String| match IndexBuilder::create_or_resume(&out, spec(&input), true) {
            Err(IndexError::PartialMismatch { detail, .. }) => detail.to_string(),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("resumed"),
        };
        let by_add = said(format!("rows of index {id} then new"));
        assert!(
            by_add.contains("an interrupted `index remove` of index")
                && by_add.contains(&format!("`relbert index remove --index {}`", out.display()))
                && !by_add.contains("rebuild"),
            "{by_add}"
        );
        let by_other = said(format!("index:{id} without 1 rows {:016x}", fnv1a(&[3])));
        assert!(
            by_other.contains("of other pairs than this remove's")
                && by_other.contains("run that remove again with the same pairs"),
            "{by_other}"
        );
        // The same remove resumes.
        assert!(IndexBuilder::create_or_resume(&out, spec(&removing), true).is_ok());
    }
}
