//! Growing an index: new rows appended to an existing index and inserted into its HNSW graph,
//! published as a new index in one atomic exchange.
//!
//! # What it owns
//!
//! [`IndexGrower`] turns a published index plus a stream of new rows into the next version of
//! that index. The caller (relbert's `index add`) decides which pairs are new and encodes them;
//! this module keeps the guarantees:
//!
//! - **Incremental graph.** The grown index's graph is the old graph with every new row
//!   inserted by the same HNSW insertion a build uses ([`crate::hnsw_build`]): the old lists
//!   and entry point are the starting state, so the graph work is proportional to the new rows,
//!   not to the whole index. A new row's level is the one a build with the same seed would draw
//!   for its row number.
//! - **Never a mixture, never a half-written index.** Published files are immutable, so the
//!   grown index is written as a complete new directory in `<index>.partial/` (the old rows
//!   copied — vectors are a few hundred bytes each, far cheaper than encoding or the graph —
//!   then the new ones, then the graph, the block tables, a new `meta` and a new index id) and
//!   exchanged with the old directory by `renameat2(RENAME_EXCHANGE)`. A reader that has the
//!   old index open keeps its maps of the old files; one that opens the directory afterwards
//!   gets the new files, and a reader racing the exchange gets [`IndexError::ForeignFile`]
//!   (the ids differ) rather than old and new files together.
//! - **Resume or nothing.** The rows go through [`IndexBuilder`], which checkpoints each
//!   chunk: a killed add leaves the index as it was plus a partial directory, and the same add
//!   run again resumes from the last checkpoint. The checkpoint names the base index's id and
//!   the caller's identity of the new rows, so a resume over a changed index or with other new
//!   rows is refused ([`IndexError::PartialMismatch`]) instead of mixing them. A damaged base
//!   is refused before the partial directory is made (it is verified whole first, after
//!   the cheap refusals below, which so do not wait for that read), and a
//!   failure before the first new row removes the partial directory that run made, unless it
//!   holds the caller's copy of standard input.
//! - **One writer.** The builder holds the index's writer lock ([`crate::lock`]) from the start
//!   to the publication, so two adds (or an add and a `build --force`) cannot interleave; and
//!   the base is checked, under the lock, to still be the index in the directory (another
//!   writer that published first is [`IndexError::IndexChanged`]: the same add run again
//!   adds to the new index). A write-protected index is not grown
//!   ([`IndexError::WriteProtected`]).
//!
//! Written here rather than taken from a crate because the graph, the file format and the
//! publication protocol are this crate's own; the insertion itself is the builder's.

use std::path::{Path, PathBuf};

use crate::build::{HnswParams, IndexBuilder, Progress};
use crate::error::{IndexError, Result};
use crate::index::{Index, OpenOptions, Verify};
use crate::meta::IndexSpec;
use crate::pairs::PairEntry;
use crate::rebuild::copy_rows;
use crate::ChunkStats;

/// Grows a published index by new rows: see the [module docs](self).
///
/// ```no_run
/// # use relbert_index::*;
/// # fn main() -> Result<(), IndexError> {
/// let base = Index::open("idx")?;
/// let mut g = IndexGrower::create_or_resume(base, "sha256:…", 0, |_p| {})?;
/// let skip = g.added_rows_done(); // new rows already stored by an interrupted run
/// # let (pairs, vectors): (Vec<PairEntry>, Vec<f32>) = (vec![], vec![]);
/// g.append_chunk(&pairs, &vectors)?; // repeated for each chunk of new rows after `skip`
/// g.finish(|_p| {})?;
/// # Ok(()) }
/// ```
pub struct IndexGrower {
    base: Index,
    builder: IndexBuilder,
    params: HnswParams,
}

/// Refuses with [`IndexError::IndexChanged`] when `base`'s directory holds another index now
/// (another writer published after `base` was opened), naming the command refused (`run`:
/// `add`, `remove`, `rebuild`). Asked under the writer lock, which keeps it true until this
/// run publishes.
pub(crate) fn check_unchanged(base: &Index, run: &'static str) -> Result<()> {
    let dir = base.dir();
    let now = Index::open_with(
        dir,
        OpenOptions {
            verify: Verify::Headers,
        },
    )?;
    if now.id() != base.id() {
        return Err(IndexError::IndexChanged {
            path: dir.to_path_buf(),
            opened: base.id(),
            now: now.id(),
            run,
        });
    }
    Ok(())
}

/// The HNSW parameters a grown index keeps: the base's `m` and `ef_construction`, the native
/// builder, `threads` as given. An index built before `ef_construction` below `m` was refused
/// grows with `ef_construction` raised to `m` (what hnswlib does), rather than not at all.
fn grow_params(base: &Index, threads: usize) -> Result<HnswParams> {
    let h = &base.meta().hnsw;
    if h.builder == "random" {
        return Err(IndexError::InvalidParameter(format!(
            "{} has a random benchmark graph, which cannot be grown; rebuild it first",
            base.dir().display()
        )));
    }
    let params = HnswParams {
        m: h.m as usize,
        ef_construction: (h.ef_construction as usize).max(h.m as usize),
        threads,
        ..HnswParams::default()
    };
    params.validate()?;
    Ok(params)
}

impl IndexGrower {
    /// Starts growing `base` (in `<base dir>.partial/`), or resumes the interrupted grow found
    /// there, and copies the base's rows that are not copied yet (`progress` gets
    /// [`crate::Stage::Copying`] reports).
    ///
    /// `input` identifies the new rows the caller will append (for example a SHA-256 of
    /// them): a partial grow of another base index or with another `input` is refused with
    /// [`IndexError::PartialMismatch`]. Takes the index's writer lock
    /// ([`IndexError::Locked`] if another writer holds it), and refuses with
    /// [`IndexError::IndexChanged`] when the directory no longer holds `base` (another writer
    /// published since it was opened: the same add run again adds to the new index), with
    /// [`IndexError::WriteProtected`] when the index is write-protected, and with
    /// [`IndexError::InvalidParameter`] when the base's graph cannot be grown.
    pub fn create_or_resume(
        base: Index,
        input: &str,
        threads: usize,
        progress: impl FnMut(Progress),
    ) -> Result<IndexGrower> {
        Self::create_or_resume_keeping(base, input, threads, progress, |_| Ok(()))
    }

    /// [`Self::create_or_resume`], calling `keep` with the spool path
    /// ([`Self::spool_path`]) once the partial directory exists and before the base's rows are
    /// copied into it (seconds for a large index): a caller whose input cannot be read twice
    /// (standard input) saves it there first, so a kill during the copy loses nothing.
    ///
    /// Everything a grow reads of the base (every row, pair and neighbour list, and the id
    /// they derive) is verified ([`Index::verify`]) before the partial directory is made, so
    /// a damaged base is refused with nothing created; and after the cheap refusals (the
    /// writer lock, a write-protected index, a leftover partial directory, the base no longer
    /// being the directory's index), so those do not wait for a read of the whole index. A
    /// partial directory this call made is removed again when a later step fails, unless
    /// `keep` saved a copy there by then (the only copy of standard input, which the same add
    /// run again resumes from); one an earlier run left is never removed here.
    pub fn create_or_resume_keeping(
        base: Index,
        input: &str,
        threads: usize,
        mut progress: impl FnMut(Progress),
        keep: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<IndexGrower> {
        let params = grow_params(&base, threads)?;
        let meta = base.meta();
        let spec = IndexSpec {
            dim: meta.dim,
            precision: meta.precision,
            encoder: meta.encoder.clone(),
            input: format!("rows of index {} then {input}", base.id()),
        };
        let dir = base.dir().to_path_buf();
        let mut builder = IndexBuilder::create_or_resume_checking(&dir, spec, true, || {
            check_unchanged(&base, "add")?;
            // A block of a file over the size verified at open is otherwise met only by the
            // copy (after `keep`) or, for the graph, by `finish`, after every new row is
            // encoded. The cost is the copy's own reads, done sooner: a verified block is not
            // checked again.
            base.verify()
        })?;
        match Self::fill(&base, &mut builder, keep, &mut progress) {
            Ok(()) => Ok(IndexGrower {
                base,
                builder,
                params,
            }),
            Err(e) => Err(builder.abandon(e)),
        }
    }

    /// The steps of [`Self::create_or_resume_keeping`] after the partial directory exists:
    /// `keep`, the base's rows copied.
    fn fill(
        base: &Index,
        builder: &mut IndexBuilder,
        keep: impl FnOnce(&Path) -> std::io::Result<()>,
        progress: &mut impl FnMut(Progress),
    ) -> Result<()> {
        let spool = builder.spool_path();
        keep(&spool).map_err(|e| IndexError::io(&spool, e))?;
        let from = builder.rows_done() as usize;
        // The base's rows are copied as they are, each a row of its graph, even two spellings
        // of one pair that an index built before spellings were merged may hold; the new rows
        // are then compared with them in any Unicode normal form.
        builder.set_exact_duplicates(true);
        copy_rows(base, builder, from, progress)?;
        builder.set_exact_duplicates(false);
        Ok(())
    }

    /// The directory being grown.
    pub fn dir(&self) -> &Path {
        self.base.dir()
    }

    /// Where the caller may keep a copy of its input for the life of the partial grow
    /// ([`IndexBuilder::spool_path`]).
    pub fn spool_path(&self) -> PathBuf {
        self.builder.spool_path()
    }

    /// Rows of the base index.
    pub fn base_count(&self) -> u64 {
        self.base.count() as u64
    }

    /// New rows already appended and durable (by this run or an interrupted one): the caller
    /// continues with its new row `added_rows_done()`.
    pub fn added_rows_done(&self) -> u64 {
        self.builder.rows_done().saturating_sub(self.base_count())
    }

    /// Rows stored so far, the base's included.
    pub fn count(&self) -> u64 {
        self.builder.count()
    }

    /// New rows skipped so far because their (head, tail) was already stored.
    pub fn skipped(&self) -> u64 {
        self.builder.skipped()
    }

    /// Appends a chunk of new rows, as [`IndexBuilder::append_chunk`] (a pair the index
    /// already holds, in any Unicode normal form, is skipped; the chunk is durable when this
    /// returns).
    pub fn append_chunk(&mut self, pairs: &[PairEntry], vectors: &[f32]) -> Result<ChunkStats> {
        self.builder.append_chunk(pairs, vectors)
    }

    /// Inserts the new rows into the base's graph, writes the grown index (new block tables,
    /// `meta` and id) and exchanges it with the base directory. `progress` gets
    /// [`crate::Stage::Graph`] reports (rows inserted of rows new) and then the files written.
    /// Returns the index directory.
    pub fn finish(self, progress: impl FnMut(Progress)) -> Result<PathBuf> {
        let graph = self.base.graph_parts()?;
        // The maps of the base stay valid after the exchange; closing them first only
        // returns the memory sooner.
        drop(self.base);
        self.builder.finish_grown(graph, self.params, progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dot::dot;
    use crate::synthetic::{low_rank, numbered_pairs as entries};
    use crate::{EncoderInfo, Precision};

    fn build(dir: &Path, rows: &[f32], dim: usize, precision: Precision) -> Index {
        let n = rows.len() / dim;
        let spec = IndexSpec {
            dim: dim as u32,
            precision,
            encoder: EncoderInfo::default(),
            input: "test".into(),
        };
        let mut b = IndexBuilder::create_or_resume(dir, spec, true).unwrap();
        b.append_chunk(&entries(0..n), rows).unwrap();
        let p = HnswParams {
            m: 8,
            ef_construction: 64,
            threads: 1,
            ..HnswParams::default()
        };
        b.finish(p, |_| {}).unwrap();
        Index::open(dir).unwrap()
    }

    fn recall(idx: &Index, rows: &[f32], dim: usize, queries: impl Iterator<Item = usize>) -> f64 {
        let (mut hit, mut all) = (0usize, 0usize);
        for q in queries {
            let v = &rows[q * dim..(q + 1) * dim];
            let exact: Vec<usize> = idx
                .search_exact(v, 10)
                .unwrap()
                .iter()
                .map(|h| h.row)
                .collect();
            let found = idx.search(v, 10, 64).unwrap();
            hit += found.iter().filter(|h| exact.contains(&h.row)).count();
            all += exact.len();
        }
        hit as f64 / all as f64
    }

    /// A grown index holds the base's rows then the new ones (same pairs, same vectors), its
    /// graph keeps the base's lists for the base's nodes where no new row displaced them, and
    /// search over it finds the new rows as well as the old.
    #[test]
    fn grow_appends_and_inserts() {
        for precision in [Precision::F32, Precision::F16] {
            let (n, nb, dim) = (2400, 2000, 24);
            let rows = low_rank(n, dim, 8, 0.1, 3);
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("idx");
            let base = build(&dir, &rows[..nb * dim], dim, precision);
            let old_id = base.id();
            let old_graph = base.graph_parts().unwrap();
            let reader = Index::open(&dir).unwrap();

            let mut g = IndexGrower::create_or_resume(base, "new", 2, |_| {}).unwrap();
            assert_eq!(g.added_rows_done(), 0);
            assert_eq!(g.count(), nb as u64);
            // One new pair is already stored: skipped.
            let mut new = entries(nb..n);
            new.push(PairEntry::new("h0", "t0"));
            let mut vecs = rows[nb * dim..].to_vec();
            vecs.extend_from_slice(&rows[..dim]);
            let st = g.append_chunk(&new, &vecs).unwrap();
            assert_eq!((st.appended, st.skipped), (n - nb, 1));
            g.finish(|_| {}).unwrap();

            let grown = Index::open_with(
                &dir,
                OpenOptions {
                    verify: Verify::Full,
                },
            )
            .unwrap();
            assert_ne!(grown.id(), old_id);
            assert_eq!(grown.count(), n);
            for r in [0, nb - 1, nb, n - 1] {
                let p = grown.pair(r).unwrap();
                assert_eq!((p.head, p.tail), (&*format!("h{r}"), &*format!("t{r}")));
                let v = grown.vector(r).unwrap();
                assert!(dot(&v, &rows[r * dim..(r + 1) * dim]) > 0.999);
            }
            // Incremental: the old nodes keep their levels, and a list differs from the old
            // one only where a new row came into it (a rebuild would redraw every list).
            let new_graph = grown.graph_parts().unwrap();
            assert_eq!(new_graph.levels[..nb], old_graph.levels[..]);
            let m0 = old_graph.m0;
            let list = |g: &crate::hnsw_build::BuiltGraph, i: usize| {
                g.layer0[i * m0..(i + 1) * m0].to_vec()
            };
            let (mut same, mut touched) = (0, 0);
            for i in 0..nb {
                let l = list(&new_graph, i);
                if l == list(&old_graph, i) {
                    same += 1;
                } else if l.iter().any(|&v| v != u32::MAX && v as usize >= nb) {
                    touched += 1;
                }
            }
            assert!(same > nb / 10, "only {same} of {nb} lists kept");
            assert!(
                same + touched >= nb * 95 / 100,
                "{same} kept, {touched} touched"
            );
            assert!(new_graph.layer0[nb * m0..]
                .iter()
                .any(|&v| (v as usize) < nb));
            let r_new = recall(&grown, &rows, dim, (nb..n).step_by(4));
            let r_old = recall(&grown, &rows, dim, (0..nb).step_by(20));
            assert!(
                r_new > 0.9 && r_old > 0.9,
                "recall new {r_new}, old {r_old}"
            );
            // A reader that had the old index open still reads the old state.
            assert_eq!(reader.count(), nb);
            assert_eq!(reader.id(), old_id);
            assert!(reader.search(&rows[..dim], 5, 32).unwrap()[0].row == 0);
        }
    }

    /// An index built before spellings were merged may hold one pair precomposed (NFC) and
    /// decomposed (NFD): a grow copies both, each the row of its graph node, and skips a new
    /// row that is either in a third spelling.
    #[test]
    fn grow_keeps_the_base_rows_and_skips_other_spellings() {
        let (nb, dim) = (300, 16);
        let rows = low_rank(nb + 2, dim, 6, 0.1, 9);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        let spec = IndexSpec {
            dim: dim as u32,
            precision: Precision::F32,
            encoder: EncoderInfo::default(),
            input: "test".into(),
        };
        let mut b = IndexBuilder::create_or_resume(&dir, spec, true).unwrap();
        b.set_exact_duplicates(true); // as builds did before
        let mut base = entries(0..nb);
        base[10] = PairEntry::new("caf\u{e9}", "cr\u{e8}me");
        base[20] = PairEntry::new("cafe\u{301}", "cre\u{300}me");
        b.append_chunk(&base, &rows[..nb * dim]).unwrap();
        let legacy = HnswParams {
            m: 8,
            ef_construction: 64,
            threads: 1,
            ..HnswParams::default()
        };
        b.finish(legacy, |_| {}).unwrap();
        let idx = Index::open(&dir).unwrap();
        assert_eq!(idx.count(), nb);
        // A rebuild keeps every row too (it changes the graph or precision, not the pairs).
        let opts = crate::rebuild::RebuildOptions {
            precision: None,
            hnsw: legacy,
            force: false,
        };
        let again = crate::rebuild::rebuild(idx, &tmp.path().join("again"), &opts, |_| {}).unwrap();
        let again = Index::open(&again).unwrap();
        assert_eq!(again.count(), nb);
        assert_eq!(again.pair(20).unwrap().head, "cafe\u{301}");
        let idx = Index::open(&dir).unwrap();

        let mut g = IndexGrower::create_or_resume(idx, "new", 1, |_| {}).unwrap();
        assert_eq!(g.count(), nb as u64, "every base row copied");
        let new = [
            PairEntry::new("cafe\u{301}", "cr\u{e8}me"),
            PairEntry::new("new", "pair"),
        ];
        let st = g.append_chunk(&new, &rows[nb * dim..]).unwrap();
        assert_eq!((st.appended, st.skipped), (1, 1));
        g.finish(|_| {}).unwrap();
        let grown = Index::open_with(
            &dir,
            OpenOptions {
                verify: Verify::Full,
            },
        )
        .unwrap();
        assert_eq!(grown.count(), nb + 1);
        assert_eq!(grown.pair(20).unwrap().head, "cafe\u{301}");
        assert_eq!(grown.lookup("new", "pair").unwrap(), Some(nb));
        for r in [0, 20, nb - 1, nb] {
            let v = grown.vector(r).unwrap();
            let want = if r == nb { nb + 1 } else { r };
            assert!(
                dot(&v, &rows[want * dim..(want + 1) * dim]) > 0.999,
                "row {r}"
            );
        }
        let hit = grown.search(&rows[250 * dim..251 * dim], 1, 32).unwrap();
        assert_eq!(hit[0].row, 250);
    }

    /// A grow interrupted after some chunks resumes from its checkpoint; a resume with other
    /// new rows is refused; the index stays as it was until the grow finishes.
    #[test]
    fn grow_resumes_and_refuses_other_input() {
        let (n, nb, dim) = (600, 500, 16);
        let rows = low_rank(n, dim, 6, 0.1, 5);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        let base = build(&dir, &rows[..nb * dim], dim, Precision::F32);
        let id = base.id();
        let mut g = IndexGrower::create_or_resume(base, "new", 1, |_| {}).unwrap();
        g.append_chunk(&entries(nb..nb + 40), &rows[nb * dim..(nb + 40) * dim])
            .unwrap();
        drop(g); // killed
        assert_eq!(Index::open(&dir).unwrap().id(), id);

        let other = IndexGrower::create_or_resume(Index::open(&dir).unwrap(), "other", 1, |_| {});
        assert!(matches!(other, Err(IndexError::PartialMismatch { .. })));

        let mut g =
            IndexGrower::create_or_resume(Index::open(&dir).unwrap(), "new", 1, |_| {}).unwrap();
        assert_eq!(g.added_rows_done(), 40);
        g.append_chunk(&entries(nb + 40..n), &rows[(nb + 40) * dim..])
            .unwrap();
        g.finish(|_| {}).unwrap();
        let grown = Index::open(&dir).unwrap();
        assert_eq!(grown.count(), n);
        assert_eq!(grown.lookup("h599", "t599").unwrap(), Some(599));
        assert!(!crate::partial_dir(&dir).unwrap().exists());
    }

    /// Found by an audit: a grow that failed after making `<index>.partial/` (the index
    /// changed since it was opened, or the caller's copy of its input could not be saved)
    /// left the directory, with a checkpoint, for the next add to find. The directory this
    /// run made goes with the failure now; nothing else is created.
    #[test]
    fn a_grow_that_fails_before_its_first_row_leaves_no_partial_directory() {
        let (nb, dim) = (300, 16);
        let rows = low_rank(nb + 10, dim, 6, 0.1, 7);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        let stale = build(&dir, &rows[..nb * dim], dim, Precision::F32);
        let names = || crate::test_util::sorted_names(tmp.path());
        let before = names();

        // Its copy of the input not saved (a full disk): half a copy is no copy.
        let r = IndexGrower::create_or_resume_keeping(
            Index::open(&dir).unwrap(),
            "new",
            1,
            |_| {},
            |spool| {
                let mut tmp_name = spool.as_os_str().to_owned();
                tmp_name.push(".tmp");
                std::fs::write(tmp_name, "# relbert input spool 1\nhalf")?;
                Err(std::io::Error::other("no space left on device"))
            },
        );
        assert!(matches!(r, Err(IndexError::Io { .. })));
        assert_eq!(names(), before);

        // Another writer published since `stale` was opened.
        let mut g =
            IndexGrower::create_or_resume(Index::open(&dir).unwrap(), "a", 1, |_| {}).unwrap();
        g.append_chunk(&entries(nb..nb + 5), &rows[nb * dim..(nb + 5) * dim])
            .unwrap();
        g.finish(|_| {}).unwrap();
        let grown = Index::open(&dir).unwrap().id();
        let r = IndexGrower::create_or_resume(stale, "b", 1, |_| {});
        let err = r.err().unwrap();
        assert!(
            matches!(&err, IndexError::IndexChanged { now, .. } if *now == grown),
            "{err:?}"
        );
        // Nothing was invalid: another writer came first, and running again is the way.
        let msg = err.to_string();
        assert!(!msg.contains("invalid parameter"), "{msg}");
        assert!(msg.contains("another writer"), "{msg}");
        assert!(msg.contains("run the same add again"), "{msg}");
        assert_eq!(names(), before);
        // As told: the same add, run again, opens the new index and adds to it.
        let mut g =
            IndexGrower::create_or_resume(Index::open(&dir).unwrap(), "b", 1, |_| {}).unwrap();
        g.append_chunk(&entries(nb + 5..nb + 10), &rows[(nb + 5) * dim..])
            .unwrap();
        g.finish(|_| {}).unwrap();
        assert_eq!(Index::open(&dir).unwrap().count(), nb + 10);
        assert!(!crate::partial_dir(&dir).unwrap().exists());
    }

    /// What a failed grow keeps: a partial directory an earlier run left (the same add may
    /// resume it) and one holding a whole copy of the caller's input (standard input, which
    /// cannot be read again); only one this run made with nothing of the caller's goes.
    #[test]
    fn a_failed_grow_keeps_an_earlier_partial_and_a_copy_of_the_input() {
        let (nb, dim) = (200, 16);
        let rows = low_rank(nb, dim, 6, 0.1, 8);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        let base = build(&dir, &rows, dim, Precision::F32);
        let partial = crate::partial_dir(&dir).unwrap();
        let spec = || IndexSpec {
            dim: dim as u32,
            precision: Precision::F32,
            encoder: EncoderInfo::default(),
            input: format!("rows of index {} then new", base.id()),
        };
        let failed = || IndexError::InvalidParameter("failed".into());

        let b = IndexBuilder::create_or_resume(&dir, spec(), true).unwrap();
        assert!(b.created());
        std::fs::write(b.spool_path(), crate::spool_header()).unwrap();
        b.abandon(failed());
        assert!(
            partial.join("input.spool").is_file(),
            "the copy of the input went"
        );

        let b = IndexBuilder::create_or_resume(&dir, spec(), true).unwrap();
        assert!(!b.created());
        std::fs::remove_file(b.spool_path()).unwrap();
        b.abandon(failed());
        assert!(partial.is_dir(), "an earlier run's partial directory went");

        std::fs::remove_dir_all(&partial).unwrap();
        let b = IndexBuilder::create_or_resume(&dir, spec(), true).unwrap();
        assert!(matches!(
            b.abandon(failed()),
            IndexError::InvalidParameter(_)
        ));
        assert!(!partial.exists());
        assert!(!crate::lock::lock_path(&dir).unwrap().exists());
    }
}
