//! Memory-mapped relation-vector index: HNSW and exact cosine search over word-pair vectors.
//!
//! This crate has no machine-learning dependency: it stores vectors it is given, with the
//! identity of the encoder that produced them ([`EncoderInfo`]), and searches them.
//!
//! # Layout
//!
//! An index is a directory of four files, each starting with a 32-byte header (magic bytes,
//! format version, payload length, CRC32 of the payload; see [`format`]):
//!
//! - `vectors`: `count × dim` unit-length rows, `f32` or `f16` ([`Precision`]), memory-mapped;
//! - `pairs`: the pair strings with an offset table and a sorted (hash, row) lookup table
//!   ([`pairs`]);
//! - `graph`: the HNSW graph in a flat, fixed-width adjacency layout searched straight from the
//!   map ([`graph`]); it is built by the crate's own HNSW builder ([`hnsw_build`]), which
//!   writes that layout directly (`hnsw_rs` remains selectable, [`GraphBuilder`]);
//! - `meta`: a bincode record ([`Meta`]).
//!
//! # Checksum policy
//!
//! Opening must stay cheap for large indexes (a 1M × 384 index has 1.5 GB of vectors), so:
//!
//! - [`Index::open`] (= [`Verify::Small`]) checks every header — magic, format version and
//!   exact file length, so a truncated file is [`IndexError::Truncated`] and a file from
//!   another version is [`IndexError::UnsupportedVersion`] — and the full CRC of `meta`,
//!   `pairs` and any file not larger than [`SMALL_FILE_LIMIT`] (64 MiB). Small indexes are
//!   therefore fully verified at open.
//! - [`Verify::Headers`] checks the headers and `meta` only; [`Verify::Full`] every CRC.
//! - [`Index::verify`] computes every CRC on demand (e.g. for an `info --verify` command).
//!
//! Checksums are computed with `read`, not through the maps, so verifying does not add to the
//! resident memory. Whatever is not checksummed is still bounds-checked when used: a damaged
//! neighbour id is skipped, a damaged pair record is an [`IndexError::Corrupt`], never a panic.
//!
//! # Building
//!
//! [`IndexBuilder`] streams chunks into `<out>.partial/` with a checkpoint after each chunk, so
//! an interrupted build resumes ([`IndexBuilder::rows_done`]), then builds the graph and renames
//! the directory into place ([`IndexBuilder::finish`]). [`rebuild()`] makes a new index from an
//! existing one's pairs and vectors (another precision or other graph parameters) through the
//! same builder.
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
pub mod hnsw_build;
pub mod index;
pub mod meta;
pub mod pairs;
pub mod rebuild;
pub mod synthetic;

pub use build::{
    discard_partial, partial_dir, ChunkStats, GraphBuilder, HnswParams, IndexBuilder, Progress,
    Stage,
};
pub use error::{IndexError, Result};
pub use format::FORMAT_VERSION;
pub use graph::Hit;
pub use index::{DiskSizes, Index, OpenOptions, Verify, SMALL_FILE_LIMIT};
pub use meta::{EncoderInfo, HnswInfo, IndexSpec, Meta, Precision};
pub use pairs::{pair_hash, PairEntry, PairRef};
pub use rebuild::{rebuild, RebuildOptions};
