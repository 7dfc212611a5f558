//! Memory-mapped relation-vector index: HNSW and exact cosine search over word-pair vectors.
//!
//! This crate has no machine-learning dependency: it stores vectors it is given, with the
//! identity of the encoder that produced them ([`EncoderInfo`]), and searches them.
//!
//! # Layout
//!
//! An index is a directory of four files, each `header (64 bytes) | payload | block table`
//! (magic bytes, format version, payload length, the index's id, a CRC32 per 4 KiB block of
//! payload; see [`format`]):
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

/// Records a skipped test, or part of one, in the skip ledger: one line `<place>: <reason>`
/// appended to the file `RELBERT_SKIP_LOG` names, when it names one (`SKIPPED: <reason>` is
/// printed on standard error either way). For the tests of this crate and of relbert, whose
/// helpers say where (`<file>::<test>`) and call this; not for programs.
///
/// libtest shows a passing test's standard error only with `--nocapture`, so a skip that
/// only printed never reached a CI log: CI passed with its Qdrant, browser and
/// fault-injection tests all skipped. `.ci/run` prints the ledger after the tests and fails
/// when a reason names a service or tool it provides itself (Qdrant, Chromium/chromedriver,
/// gensim, strace), so such a reason must name it, and another reason must not. Line breaks
/// in the reason become spaces and spaces in the place underscores, so a line is one skip;
/// the file is opened to append (one write per line: tests running in parallel do not
/// interleave) and created if absent, and a failure to write it is ignored: a skip never
/// fails a test.
#[doc(hidden)]
pub fn record_skip(place: &str, reason: &str) {
    let reason = reason.replace(['\n', '\r'], " ");
    eprintln!("SKIPPED: {reason}");
    let Some(log) = std::env::var_os("RELBERT_SKIP_LOG").filter(|v| !v.is_empty()) else {
        return;
    };
    let line = format!("{}: {reason}\n", place.replace(' ', "_"));
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
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

/// Skips a part of a unit test of this crate ([`record_skip`]).
#[cfg(test)]
#[track_caller]
pub(crate) fn test_skip(reason: impl std::fmt::Display) {
    let place = skip_place(std::panic::Location::caller().file());
    record_skip(&place, &reason.to_string());
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
