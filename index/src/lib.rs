//! Memory-mapped relation-vector index: HNSW and exact cosine search over word-pair vectors.
//!
//! This crate has no machine-learning dependency: it stores vectors it is given, with the
//! identity of the encoder that produced them ([`EncoderInfo`]), and searches them.
//!
//! # Quick start
//!
//! Build an index of three pairs and their (here made-up, unit-length) vectors, then search
//! it; the `relbert` crate makes the vectors from a language model and builds through the
//! same [`IndexBuilder`].
//!
//! ```
//! use relbert_index::{EncoderInfo, HnswParams, Index, IndexBuilder, IndexSpec, PairEntry, Precision};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let out = dir.path().join("idx");
//! let spec = IndexSpec {
//!     dim: 2,
//!     precision: Precision::F32,
//!     encoder: EncoderInfo::default(),
//!     input: "three pairs".into(), // what the rows come from: a resumed build must name the same
//! };
//! let mut builder = IndexBuilder::create_or_resume(&out, spec, false)?;
//! let pairs = [
//!     PairEntry::new("paris", "france"),
//!     PairEntry::new("tokyo", "japan"),
//!     PairEntry::new("dog", "puppy"),
//! ];
//! let (s, c) = (0.6_f32, 0.8_f32);
//! builder.append_chunk(&pairs, &[1.0, 0.0, s, c, 0.0, 1.0])?; // row after row
//! builder.finish(HnswParams::default(), |_progress| {})?;
//!
//! let index = Index::open(&out)?;
//! let paris = index.lookup("paris", "france")?.expect("stored");
//! let hits = index.search(&index.vector(paris)?, 2, 16)?;
//! assert_eq!(index.pair(hits[0].row)?.tail, "france"); // itself first (score 1)
//! assert_eq!(index.pair(hits[1].row)?.head, "tokyo"); // then the nearest other pair
//! assert!((hits[1].score - s).abs() < 1e-6);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! An index is a directory of four files, each `header (64 bytes) | payload | block table`
//! (magic bytes, format version, payload length, the index's id, a CRC32 per 4 KiB block of
//! payload; see [`mod@format`]):
//!
//! - `vectors`: `count × dim` unit-length rows, `f32` or `f16` ([`Precision`]), memory-mapped;
//! - `pairs`: the pair strings with an offset table and a sorted (hash, row) lookup table
//!   ([`pairs`]);
//! - `graph`: the HNSW graph in a flat, fixed-width adjacency layout searched straight from the
//!   map ([`graph`]); it is built by the crate's own HNSW builder ([`hnsw_build`]), which
//!   writes that layout directly (`hnsw_rs` remains selectable, [`GraphBuilder`]);
//! - `meta`: a bincode record ([`Meta`]).
//!
//! # Integrity: what was chosen and why
//!
//! The index must never answer from damaged or mismatched bytes, and opening it must stay
//! cheap (a 1M × 384 `f32` index has 1.5 GB of vectors). Three mechanisms, each after a
//! well-tried design:
//!
//! - **Block checksums, verified on first use** (RocksDB checksums every SST block and checks
//!   it when the block is read; SQLite's cksumvfs every page). Format 1 had one CRC per file,
//!   which can only be checked by reading the whole file, so files over 64 MiB went unchecked
//!   until `info --verify`, and a row overwritten in the default index's 217 MiB `vectors` file
//!   made `query Paris France` answer `Tokyo : Japan 1.000`. Format 2 stores a CRC32 per 4 KiB
//!   block after each payload; [`Index::open`] reads only the block tables (4 bytes per 4 KiB page:
//!   1.5 MB for 1M × 384 `f32`, checksummed themselves) and every read of the payload — a
//!   vector row, a neighbour list, a pair record, a lookup entry — first checks a bit per block
//!   and, the first time, the block's CRC ([`integrity`]). A damaged block is an
//!   [`IndexError::BlockChecksum`] naming the file and block, never an answer. Files up to
//!   [`SMALL_FILE_LIMIT`] (8 MiB) are verified whole at open ([`Verify::Small`], the default),
//!   [`Verify::Full`] and [`Index::verify`] check everything. Measured in
//!   `benchmarks/index/integrity.md`: open time and query latency against format 1.
//! - **An index identity in every file** (tantivy names every file of a segment by the
//!   segment's id; RocksDB records each file's DB identity). Each header carries the 128-bit
//!   id of its index, a SHA-256 of the `meta` record and the block tables of the data files;
//!   [`Index::open`] refuses a file whose id is not `meta`'s ([`IndexError::ForeignFile`]), so
//!   a `vectors`, `pairs` or `graph` file from another index of the same shape is an error.
//!   The id is derived from content, not drawn at random, so [`Index::verify`] (`index info
//!   --verify`) recomputes it and refuses files that were not made together even when their
//!   header ids were rewritten to match ([`IndexError::IdMismatch`]). The same rows built
//!   twice with the serial graph builder ([`HnswParams::threads`] = 1) give byte-identical
//!   files; the default parallel builder's graph, and so the id, may differ between two
//!   builds.
//! - **One writer per output** ([`lock`]: `flock` on `.<name>.lock` beside the output, as
//!   git's `index.lock` and SQLite's locks protect their files; released by the kernel when a
//!   writer dies, so a killed build never blocks the next). A second writer gets
//!   [`IndexError::Locked`] naming the holder's pid and command line. A partial build records
//!   its input's identity ([`IndexSpec::input`]) and refuses to resume on another input, and a
//!   builder replaces only what it recognises as its own ([`recognise_index`],
//!   [`recognise_partial`]; [`IndexError::NotOurs`] otherwise), so `--force` can never delete
//!   a user's folder.
//!
//! Readers take no lock: published files are immutable, and a new index replaces an old one
//! by an atomic directory exchange (`renameat2(RENAME_EXCHANGE)`), so a query process that
//! has the old one open keeps reading it from its maps.
//!
//! # Building
//!
//! [`IndexBuilder`] streams chunks into `<out>.partial/` with a checkpoint after each chunk, so
//! an interrupted build resumes ([`IndexBuilder::rows_done`]), then builds the graph and renames
//! the directory into place ([`IndexBuilder::finish`]); when rows come faster than one thread
//! builds the graph (a GPU encoder), the graph can be built while they are appended
//! ([`IndexBuilder::graph_during_appends`], [`staged`]). [`rebuild()`] makes a new index from an
//! existing one's pairs and vectors (another precision or other graph parameters) through the
//! same builder. [`IndexGrower`] grows a published index by new rows: it copies the index
//! into a partial build, appends the new rows, inserts them into the existing graph (no
//! rebuild) and exchanges the result with the old directory ([`grow`]).
//!
//! All integers are little-endian and the zero-copy views assume a little-endian host.

#![warn(missing_docs)]

#[cfg(target_endian = "big")]
compile_error!("relbert-index reads its files zero-copy and supports little-endian hosts only");

pub mod build;
pub mod dot;
pub mod error;
pub mod format;
pub mod graph;
pub mod grow;
pub mod hnsw_build;
pub mod index;
pub mod integrity;
pub mod lock;
pub mod meta;
pub mod pairs;
pub mod rebuild;
pub mod staged;
pub mod synthetic;

pub use build::{
    check_not_write_protected, clear_leftovers, discard_partial, foreign_entries, input_spool,
    is_marked_spool, partial_dir, partial_spec, pending_run, published_spool, recognise_index,
    recognise_partial, spool_header, spool_mark, swap_dirs, ChunkStats, GraphBuilder, HnswParams,
    IndexBuilder, Leftovers, PendingRun, Progress, SpoolMark, Stage, SPOOL_MAGIC, SPOOL_VERSION,
};
pub use error::{is_out_of_space, IndexError, Result};
pub use format::{IndexId, FORMAT_VERSION};
pub use graph::Hit;
pub use grow::IndexGrower;
pub use index::{DiskSizes, Index, OpenOptions, Verify, SMALL_FILE_LIMIT};
pub use lock::OutputLock;
pub use meta::{EncoderInfo, HnswInfo, IndexSpec, Meta, Precision};
pub use pairs::{pair_hash, PairEntry, PairRef};
pub use rebuild::{rebuild, rebuild_without, RebuildOptions};
pub use staged::{GraphPriority, StagedProgress};

/// Why a test, or a part of one, was skipped ([`record_skip`]): what CI makes of it.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipCause {
    /// A service or tool that `.ci/run` sets up itself (a Qdrant cluster, Chromium and
    /// chromedriver, gensim, strace) is missing: its set-up failed, so CI fails.
    Provided,
    /// A limit of this machine (no root, a file system or CPU feature, a kernel setting):
    /// listed by CI, not a failure.
    Environment,
}

impl SkipCause {
    /// The tag written in the ledger's line, which `.ci/run` reads.
    pub fn tag(self) -> &'static str {
        match self {
            SkipCause::Provided => "provided",
            SkipCause::Environment => "environment",
        }
    }
}

/// Records a skipped test, or part of one, in the skip ledger: one line
/// `<place> [<cause>]: <reason>` ([`SkipCause::tag`]) appended to the file `RELBERT_SKIP_LOG`
/// names, when it names one (`SKIPPED: <reason>` is printed on standard error either way).
/// For the tests of this crate and of relbert, whose helpers say where (`<file>::<test>`)
/// and call this; not for programs.
///
/// libtest shows a passing test's standard error only with `--nocapture`, so a skip that
/// only printed never reached a CI log: CI passed with its Qdrant, browser and
/// fault-injection tests all skipped. `.ci/run` prints the ledger after the tests and fails
/// on a [`SkipCause::Provided`] line: the cause is stated where the test skips, not guessed
/// by CI from the reason's words. Line breaks in the reason become spaces and spaces in the
/// place underscores, so a line is one skip; the file is opened to append (one write per
/// line: tests running in parallel do not interleave) and created if absent, and a failure
/// to write it is ignored: a skip never fails a test.
#[doc(hidden)]
pub fn record_skip(place: &str, cause: SkipCause, reason: &str) {
    eprintln!("SKIPPED: {reason}");
    let Some(log) = std::env::var_os("RELBERT_SKIP_LOG").filter(|v| !v.is_empty()) else {
        return;
    };
    let line = skip_line(place, cause, reason);
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
}

/// The ledger's line for one skip ([`record_skip`]), ending in a line break.
fn skip_line(place: &str, cause: SkipCause, reason: &str) -> String {
    let reason = reason.replace(['\n', '\r'], " ");
    format!("{} [{}]: {reason}\n", place.replace(' ', "_"), cause.tag())
}

/// The place of a skip in a test ([`record_skip`]): `file`, and `::<test>` when the test runs
/// on a thread libtest named after it.
#[doc(hidden)]
pub fn skip_place(file: &str) -> String {
    match std::thread::current().name().filter(|n| *n != "main") {
        Some(test) => format!("{file}::{test}"),
        None => file.to_string(),
    }
}

/// Skips a part of a unit test of this crate for a limit of the machine ([`record_skip`];
/// none of this crate's tests needs a service).
#[cfg(test)]
#[track_caller]
pub(crate) fn test_skip(reason: impl std::fmt::Display) {
    let place = skip_place(std::panic::Location::caller().file());
    record_skip(&place, SkipCause::Environment, &reason.to_string());
}

/// Helpers shared by the crate's unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    /// The names in `dir`, sorted: what a run left beside an output shows as a difference.
    pub fn sorted_names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A spec of `dim`-dimensional float32 vectors from a default encoder, whose `input`
    /// tells one run's partial directory from another's.
    pub fn spec(dim: u32, input: &str) -> crate::IndexSpec {
        crate::IndexSpec {
            dim,
            precision: crate::Precision::F32,
            encoder: crate::EncoderInfo::default(),
            input: input.into(),
        }
    }

    /// Small single-threaded graph parameters: fast, and the same graph every run.
    pub fn params() -> crate::HnswParams {
        crate::HnswParams {
            m: 4,
            ef_construction: 16,
            threads: 1,
            ..crate::HnswParams::default()
        }
    }
}

#[cfg(test)]
mod skip_ledger_tests {
    use super::{skip_line, SkipCause};

    /// `.ci/run` fails on `^[^ ]* \[provided\]: ` and only lists the rest: the line keeps
    /// the place one word and the cause where that pattern looks for it.
    #[test]
    fn a_ledger_line_is_one_line_with_its_cause_after_the_place() {
        assert_eq!(
            skip_line("tests/a b.rs::t", SkipCause::Provided, "no qdrant\nhere"),
            "tests/a_b.rs::t [provided]: no qdrant here\n"
        );
        assert_eq!(
            skip_line("x.rs", SkipCause::Environment, "needs root\r"),
            "x.rs [environment]: needs root \n"
        );
    }
}
