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
use crate::error::Result;
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
    mut progress: impl FnMut(Progress),
) -> Result<PathBuf> {
    let meta = idx.meta();
    let spec = IndexSpec {
        dim: meta.dim,
        precision: opts.precision.unwrap_or(meta.precision),
        encoder: meta.encoder.clone(),
        input: format!("index:{}", idx.id()),
    };
    opts.hnsw.validate()?;
    // What the copy reads of the source is read once before `<out>.partial/` is made, so a
    // damaged row or pair (in a file too large to be verified whole at open) is refused with
    // nothing created; and only after the output's cheap refusals (another writer, a
    // write-protected output), which would otherwise wait for a read of the whole source.
    // The source's graph is not read: a rebuild makes a new one, and is the way out of a
    // damaged graph.
    let mut builder =
        IndexBuilder::create_or_resume_checking(out, spec, opts.force, || check_rows(&idx))?;
    let from = builder.rows_done() as usize;
    // Every row is kept as it is: a rebuild changes the precision or the graph, not the
    // pairs, so an index built before spellings were merged keeps both spellings it holds
    // (and the rebuilt index counts the rows the source does).
    builder.set_exact_duplicates(true);
    if let Err(e) = copy_rows(&idx, &mut builder, from, &mut progress) {
        // A partial directory this run made holds only rows of the source, which a rerun
        // copies again; one an earlier run left may still be resumed, and stays.
        return Err(builder.abandon(e));
    }
    // The graph is built from the new `vectors` file; the source is not read again, so it can
    // be the directory being replaced.
    drop(idx);
    builder.finish(opts.hnsw, progress)
}

/// Reads every pair and vector of `idx`, as [`copy_rows`] will: each block they lie in is
/// verified against its checksum (once: a verified block is not checked again by the copy),
/// and each vector is checked to be finite and non-zero.
fn check_rows(idx: &Index) -> Result<()> {
    for r in 0..idx.count() {
        idx.pair(r)?;
        idx.vector(r)?;
    }
    Ok(())
}

/// Appends rows `from..` of `idx` (pairs, labels, vectors) to `builder` in checkpointed chunks,
/// reporting [`Stage::Copying`] progress (rows of `idx.count()`).
pub(crate) fn copy_rows(
    idx: &Index,
    builder: &mut IndexBuilder,
    from: usize,
    progress: &mut impl FnMut(Progress),
) -> Result<()> {
    let (count, dim) = (idx.count(), idx.dim());
    let total = count as u64;
    let mut row = from;
    let mut pairs = Vec::with_capacity(CHUNK_ROWS);
    let mut vectors = Vec::with_capacity(CHUNK_ROWS * dim);
    while row < count {
        let end = (row + CHUNK_ROWS).min(count);
        pairs.clear();
        vectors.clear();
        for r in row..end {
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
