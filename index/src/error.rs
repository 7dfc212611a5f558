//! The crate's error type, [`IndexError`].
//!
//! Every failure that can be caused by the contents of an index directory (a truncated file, a
//! flipped byte, a file written by another format version) or by the caller's input (a vector of
//! the wrong dimension, a row out of range) is reported as a typed variant that names the file
//! or the value concerned; nothing in this crate panics on such input.

use std::path::PathBuf;

/// Errors raised while building, opening, verifying or querying an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// An I/O operation on `path` failed.
    // The OS message is part of this message and deliberately not a `#[source]`: `anyhow`'s
    // `{:#}` prints the whole chain, which would repeat it.
    #[error("{path}: {err}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// A file does not start with the magic bytes of its kind (not an index file, or the wrong one).
    #[error("{path}: not a relbert index `{kind}` file (bad magic bytes)")]
    BadMagic {
        /// The file concerned.
        path: PathBuf,
        /// Which index file was expected (`vectors`, `pairs`, `graph`, `meta`, `checkpoint`).
        kind: &'static str,
    },
    /// A file was written by a format version this build does not read.
    #[error(
        "{path}: format version {found} is not supported (this build reads version {expected})"
    )]
    UnsupportedVersion {
        /// The file concerned.
        path: PathBuf,
        /// The version recorded in the file.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// A file is shorter than its header says (an interrupted copy or write).
    #[error("{path}: truncated: expected {expected} bytes, found {actual}")]
    Truncated {
        /// The file concerned.
        path: PathBuf,
        /// Length implied by the header (header + payload).
        expected: u64,
        /// Length found on disk.
        actual: u64,
    },
    /// A file's payload does not match the CRC32 recorded in its header.
    #[error(
        "{path}: checksum mismatch in the {what}: recorded {expected:#010x}, computed {actual:#010x}"
    )]
    ChecksumMismatch {
        /// The file concerned.
        path: PathBuf,
        /// Which part of the file (`block table`, …).
        what: String,
        /// CRC32 recorded in the header.
        expected: u32,
        /// CRC32 computed over the payload.
        actual: u32,
    },
    /// A block of a file does not match its checksum: the file was damaged after it was
    /// written. Found when a query first touches the block, or by a full verification.
    // Not "rebuild the index": `index rebuild` and `index export` read the same damaged block
    // and fail on it too; only the pair list the index was built from can make it again.
    #[error("{path}: block {block} (bytes {start}..{end} of the payload) does not match its checksum: the file is damaged; build the index again from the pair list it was built from (`relbert index build --pairs FILE --out DIR --force`) or restore it from a copy")]
    BlockChecksum {
        /// The file concerned.
        path: PathBuf,
        /// Block number.
        block: u64,
        /// First payload byte of the block.
        start: u64,
        /// One past the last payload byte of the block.
        end: u64,
    },
    /// A file belongs to another index than the directory's `meta` (a file copied or moved in
    /// from elsewhere).
    #[error("{path}: this file belongs to another index (id {found}, while {dir}/meta has {expected}); the files of one index must not be mixed with another's")]
    ForeignFile {
        /// The file concerned.
        path: PathBuf,
        /// The index directory.
        dir: PathBuf,
        /// The id in `meta`.
        expected: String,
        /// The id in the file.
        found: String,
    },
    /// The index's id is not the one its files' content derives ([`crate::format::index_id`]):
    /// a file was edited or replaced by another index's with its header id rewritten, which
    /// the per-file checks (header CRC, block CRCs, id equal to `meta`'s) cannot see.
    #[error("{dir}: the index id {recorded} does not match its files' content (which gives {computed}): its meta, vectors, pairs or graph file was edited or replaced (one from another index, with its header rewritten?); build the index again or restore it from a copy")]
    IdMismatch {
        /// The index directory.
        dir: PathBuf,
        /// The id every header carries.
        recorded: String,
        /// The id derived from `meta` and the block tables.
        computed: String,
    },
    /// A path that should be a regular file (or a directory) is something else: a named
    /// pipe, a socket, a device. Refused before reading, since a read from a pipe blocks.
    #[error("{path}: is not {expected} ({found})")]
    NotRegular {
        /// The path concerned.
        path: PathBuf,
        /// What it should be (`a regular file`, `a directory`).
        expected: &'static str,
        /// What it is (`a named pipe`, `a socket`, …).
        found: &'static str,
    },
    /// Another process is writing the same output.
    #[error(
        "{path} is being written by another process ({holder}); wait for it to finish, or stop it"
    )]
    Locked {
        /// The output whose lock is held.
        path: PathBuf,
        /// What the lock file says of its holder (pid, command, start time), if readable.
        holder: String,
    },
    /// `force` was given, but the existing output is not something relbert wrote, so it is
    /// not replaced.
    #[error("{path} exists and is not {what} written by relbert ({why}); refusing to replace it even with --force: move it away or choose another output")]
    NotOurs {
        /// The existing path.
        path: PathBuf,
        /// What relbert would have written there (`an index`, `a partial build`, …).
        what: &'static str,
        /// Why it is not recognised.
        why: String,
    },
    /// A file passed its header checks but its contents are inconsistent.
    #[error("{path}: corrupt index file: {reason}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A partial build's file no longer holds what its checkpoint vouched for (changed after
    /// it was written), or its checkpoint cannot vouch for it (an older relbert's): resuming
    /// would publish the damage under fresh checksums.
    #[error("{path}: {reason}; the interrupted build cannot be resumed: remove {partial} to start over (its pairs are encoded again)")]
    PartialDamaged {
        /// The file concerned.
        path: PathBuf,
        /// The partial build directory.
        partial: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The output directory already exists and `force` was not given.
    #[error("{path} already exists (pass force to replace it)")]
    AlreadyExists {
        /// The existing output directory.
        path: PathBuf,
    },
    /// A partial build on disk was started with a different encoder, dimension or precision.
    #[error("{path}: the partial build was started with a different {what}: {found} (now {requested}); rerun with the original input, or remove {path} to start over")]
    PartialMismatch {
        /// The partial build directory.
        path: PathBuf,
        /// Which property differs.
        what: &'static str,
        /// The value recorded in the partial build.
        found: String,
        /// The value requested now.
        requested: String,
    },
    /// A vector or vector buffer has the wrong length.
    #[error("dimension mismatch: expected {expected} values, got {actual}")]
    DimensionMismatch {
        /// The expected number of values.
        expected: usize,
        /// The number of values supplied.
        actual: usize,
    },
    /// A vector contains NaN/infinite values or has zero length, so it cannot be normalised.
    #[error("invalid vector at row {row}: {reason}")]
    InvalidVector {
        /// Row (within the chunk appended) of the offending vector.
        row: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A row number is not below the index's count.
    #[error("row {row} out of range (index holds {count} rows)")]
    RowOutOfRange {
        /// The requested row.
        row: usize,
        /// The number of rows in the index.
        count: usize,
    },
    /// A parameter is outside its valid range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// Serialising or deserialising the `meta` (or `checkpoint`) record failed.
    #[error("{path}: cannot decode metadata: {reason}")]
    Meta {
        /// The file concerned.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
}

impl IndexError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        IndexError::Io {
            path: path.into(),
            err,
        }
    }

    /// Builds a [`IndexError::BlockChecksum`] for block `block` of `block_len` bytes.
    pub(crate) fn block_mismatch(path: impl Into<PathBuf>, block: u64, block_len: u64) -> Self {
        IndexError::BlockChecksum {
            path: path.into(),
            block,
            start: block * block_len,
            end: (block + 1) * block_len,
        }
    }

    /// Builds a [`IndexError::Corrupt`] for `path`.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        IndexError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Shorthand for `Result<T, IndexError>`.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
