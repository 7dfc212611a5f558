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
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
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
        "{path}: checksum mismatch: header says {expected:#010x}, payload hashes to {actual:#010x}"
    )]
    ChecksumMismatch {
        /// The file concerned.
        path: PathBuf,
        /// CRC32 recorded in the header.
        expected: u32,
        /// CRC32 computed over the payload.
        actual: u32,
    },
    /// A file passed its header checks but its contents are inconsistent.
    #[error("{path}: corrupt index file: {reason}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
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
    #[error("{path}: the partial build was started with a different {what}: {found} (now {requested}); remove it to start over")]
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
        /// Row (within the chunk or query) of the offending vector.
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
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IndexError::Io {
            path: path.into(),
            source,
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
