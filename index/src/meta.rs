//! The `meta` file: a bincode (2.x, serde) record describing the index.
//!
//! It holds the format version, dimension, row count, metric, storage precision, the HNSW
//! parameters and the identity of the encoder that produced the vectors ([`EncoderInfo`]), so a
//! query can be encoded by the same function that built the index.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};
use crate::format::FORMAT_VERSION;

/// Magic bytes repeated inside the `meta` record (the file header carries them too).
pub const META_MAGIC: [u8; 8] = *b"RELBERTX";

/// Identity of the encoder that produced the vectors. Opaque to this crate: it is stored,
/// compared on resume and handed back, never interpreted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EncoderInfo {
    /// Model identifier (e.g. a directory name or hub id).
    pub model: String,
    /// SHA-256 of the model weights, hex.
    pub weights_sha256: String,
    /// Prompt template.
    pub template: String,
    /// Aggregation mode, with whatever else the producer folds into how a pair becomes a
    /// vector (relbert appends `+offset:W` for pair vectors combined with the word-vector offset).
    pub aggregation: String,
}

/// How vector components are stored on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Precision {
    /// 32-bit IEEE floats (4 bytes per component).
    #[default]
    F32,
    /// 16-bit IEEE half floats (2 bytes per component); queries still compute in `f32`.
    F16,
}

impl Precision {
    /// Bytes per stored component.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }

    /// `"f32"` or `"f16"`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

/// HNSW parameters recorded in the metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswInfo {
    /// Maximum neighbours per node on the upper layers (layer 0 keeps `2 * m`).
    pub m: u32,
    /// Candidate-list size used while building.
    pub ef_construction: u32,
    /// How the graph was built: `"relbert_hnsw"` (the default builder, [`crate::hnsw_build`]),
    /// `"hnsw_rs"`, or `"random"` (only for benchmark fixtures).
    pub builder: String,
}

/// The static description of an index to build: what the builder needs before any row arrives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSpec {
    /// Vector dimension.
    pub dim: u32,
    /// Storage precision.
    pub precision: Precision,
    /// The encoder that produces the vectors.
    pub encoder: EncoderInfo,
    /// Identity of the input the rows come from (relbert writes `sha256:<hex>` of the pair
    /// records for a build, `index:<id>` of the source for a rebuild). Recorded in the partial
    /// build's checkpoint, so a resume with another input is refused instead of mixing rows
    /// of two inputs. Not part of `meta`: the same rows give the same index (and index id),
    /// whatever they were read from.
    pub input: String,
}

/// The decoded `meta` record of an index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Always [`META_MAGIC`].
    pub magic: [u8; 8],
    /// Format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Vector dimension.
    pub dim: u32,
    /// Number of rows (distinct pairs).
    pub count: u64,
    /// Similarity metric; always `"cosine"` (inner product on unit vectors).
    pub metric: String,
    /// Storage precision of `vectors`.
    pub precision: Precision,
    /// Graph parameters.
    pub hnsw: HnswInfo,
    /// Identity of the encoder that produced the vectors.
    pub encoder: EncoderInfo,
    /// Input rows skipped at build time because their (head, tail) pair was already present.
    pub skipped_duplicates: u64,
}

/// bincode configuration used for `meta` and `checkpoint` (with a size limit, so a damaged
/// length field cannot trigger a huge allocation).
pub(crate) fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 1 << 20 }>()
}

/// Serialises a record (such as [`Meta`]) the way the `meta` file stores it: bincode 2's
/// standard configuration. Public so that tools writing a `meta` payload (for instance the
/// benchmark that re-stores an index in `f16`) do not restate the encoding.
pub fn encode<T: Serialize>(value: &T, path: &Path) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, bincode_config()).map_err(|e| IndexError::Meta {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Deserialises a record with [`bincode_config`]; trailing bytes are an error.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], path: &Path) -> Result<T> {
    let (v, used): (T, usize) = bincode::serde::decode_from_slice(bytes, bincode_config())
        .map_err(|e| IndexError::Meta {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if used != bytes.len() {
        return Err(IndexError::Meta {
            path: path.to_path_buf(),
            reason: format!("{} trailing bytes", bytes.len() - used),
        });
    }
    Ok(v)
}

impl Meta {
    /// Checks the fields that the rest of the crate relies on.
    pub(crate) fn validate(&self, path: &Path) -> Result<()> {
        if self.magic != META_MAGIC {
            return Err(IndexError::corrupt(
                path,
                "bad magic inside the meta record",
            ));
        }
        if self.format_version != FORMAT_VERSION {
            return Err(IndexError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: self.format_version,
                expected: FORMAT_VERSION,
            });
        }
        if self.dim == 0 {
            return Err(IndexError::corrupt(path, "dimension 0"));
        }
        if self.count > u32::MAX as u64 - 1 {
            return Err(IndexError::corrupt(
                path,
                "more rows than the format supports",
            ));
        }
        if self.metric != "cosine" {
            return Err(IndexError::corrupt(
                path,
                format!("unknown metric {:?}", self.metric),
            ));
        }
        Ok(())
    }
}
