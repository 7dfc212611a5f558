//! The collection settings relbert chooses for relation vectors, and the search parameters
//! that go with them.
//!
//! Why these:
//! - **Cosine distance.** relbert's vectors are unit length (indexes store them normalised),
//!   so cosine equals the dot product; asking for cosine makes Qdrant normalise encoded query
//!   vectors too (they come straight from the encoder), so scores are the local index's up to
//!   rounding (Qdrant sums in its own order: measured differences up to 1.3e-4 on a float16
//!   collection, ranks unchanged).
//! - **HNSW `m` 16, `ef_construct` 200**: the local index's defaults
//!   (`relbert_index::HnswParams`), which reach recall@10 ≥ 0.99 on relation vectors at query
//!   `ef` 64 (`benchmarks/index/`). Qdrant's own graph with these parameters measured lower on
//!   one 20,000-point shard of synthetic vectors (0.97; `m` 32: 0.98) and 0.999 through a
//!   3-shard cluster (`benchmarks/scale/README.md`); raise `m` when one shard must reach 0.99.
//! - **Scalar int8 quantisation, kept in RAM, originals on disk, rescored.** A 768-d f32
//!   vector is 3 KiB; int8 is a quarter of it, so the in-memory part of a node holds 4x the
//!   pairs, and the originals are read from disk (memory-mapped) only to rescore the
//!   `oversampling` x k best candidates. Relation vectors are dense and evenly spread over
//!   their components, the case scalar quantisation handles well (quantile 0.99 clips the
//!   rare outliers); measured here it cost no recall against f32 (`benchmarks/scale/`).
//!   Binary (1 bit per component) and product quantisation compress further at a recall
//!   cost that was not measured here; int8 is the conservative choice, and 4x is enough for
//!   the plan in `benchmarks/scale/README.md`. `--quantization none` keeps f32 in RAM.
//! - **Originals in the source's precision**: float16 when the exported index stores float16
//!   (what the default index stores; `index build --collection --f16`), else float32. A
//!   float16 index's vectors are exactly representable in float16, so storing them wider
//!   only doubles the disk of every replica without changing a score; `--f16` narrows a
//!   float32 source too (rounding each component to 11 significant bits, as the local
//!   `--f16` index does). Measured in `benchmarks/scale/README.md`.
//! - **Payload on disk**, with a keyword index on `words` only: the payload is read for the
//!   k hits of a query, and `words` is the one field filtered on.
//! - **Indexing threshold 20,000 KB** (Qdrant's default, written explicitly so relbert knows
//!   what to restore): segments under it are searched exactly, larger ones get the HNSW graph.
//!   relbert's loads turn indexing off while they stream points and back on at the end
//!   ([`super::export`]), Qdrant's advice for bulk uploads: the graph is then built once per
//!   final segment instead of being rebuilt while segments still grow.
//! - **Write consistency 1**: a write succeeds once one replica has it; the others catch up
//!   (and a replica on a node that was down is recovered by Qdrant when it rejoins), so an
//!   export keeps going while a node is down.
//! - **One shard per node, one copy, unless asked**: without `--shards` the cluster makes one
//!   shard per node as it creates the collection ([`CollectionSettings::create_request_for`]),
//!   so a cluster's points are spread over its nodes (1 shard put them all on one node).
//!   One copy of each is what a single node can hold; on several nodes it keeps each point
//!   on one node only, which a load that was not given `--replication` warns of
//!   ([`super::export::prepare`]).

use std::collections::HashMap;

use qdrant_client::qdrant::{
    CreateCollection, CreateCollectionBuilder, Datatype, Distance, HnswConfigDiffBuilder,
    OptimizersConfigDiffBuilder, QuantizationSearchParamsBuilder, QuantizationType,
    ScalarQuantizationBuilder, SearchParams, SearchParamsBuilder, VectorParamsBuilder,
};

use super::{CollectionRecord, METADATA_KEY};
use crate::error::{Error, Result};

/// How vectors are held in a collection's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Quantization {
    /// int8 copies in RAM, originals on disk for rescoring (a quarter of the RAM of f32).
    Int8,
    /// The originals in RAM, no quantisation.
    None,
}

/// The indexing threshold of relbert's collections (KB of vectors in a segment before Qdrant
/// builds its graph); 0 while a load streams points.
pub const INDEXING_THRESHOLD_KB: u64 = 20_000;

/// The most shards relbert asks a new collection for (see [`MAX_SHARD_REPLICAS`]).
pub const MAX_SHARDS: u32 = 256;

/// The most copies of each shard relbert asks for.
pub const MAX_REPLICATION: u32 = 16;

/// The most shard replicas (`--shards` x `--replication`) relbert asks a new collection for.
/// The cluster makes each one through its consensus, in a time that grows faster than their
/// number: on the local 3-node test cluster (2 cores, 2026-12-02) 128 took 3.4 s, 256 took
/// 13 s, 512 took 29-32 s (512 shards, or 256 with replication 2), and 1,024 did not finish
/// within the minute a call may take, leaving a collection that a rerun had to pick up.
/// 256 keeps well inside [`CREATE_TIMEOUT_SECS`] on a slower machine; the 1B-pair plan
/// (`benchmarks/scale/README.md`) needs 72 x 2.
pub const MAX_SHARD_REPLICAS: u32 = 256;

/// How long the server may take to confirm a new collection through its consensus before it
/// answers (below the client's limit on one call, 60 s, so its answer arrives).
pub const CREATE_TIMEOUT_SECS: u64 = 50;

/// Candidates fetched with quantised vectors per result, then rescored with the originals.
pub const OVERSAMPLING: f64 = 4.0;

/// The layout of a new collection.
#[derive(Debug, Clone)]
pub struct CollectionSettings {
    /// Shards the points are split into (spread over the nodes). A load whose caller did not
    /// ask for a count ([`super::export::LayoutFlags::shards`]: `--shards` not given) leaves
    /// it to the cluster instead, which makes one shard per node ([`Self::create_request_for`]).
    pub shards: u32,
    /// Copies of each shard (on different nodes). 1, the default, keeps each point on one
    /// node only: a load that was not given `--replication` says so on a cluster of several
    /// nodes.
    pub replication: u32,
    /// Memory layout of the vectors.
    pub quantization: Quantization,
    /// Store the original vectors as float16 instead of float32 (half their disk, or their
    /// RAM without quantisation).
    pub f16: bool,
    /// HNSW neighbours per node.
    pub m: u64,
    /// HNSW candidate-list size while building.
    pub ef_construct: u64,
}

impl Default for CollectionSettings {
    fn default() -> Self {
        let h = relbert_index::HnswParams::default();
        CollectionSettings {
            // What a single node makes when the count is left to it; a cluster makes one per
            // node (see the field's docs).
            shards: 1,
            replication: 1,
            quantization: Quantization::Int8,
            f16: false,
            m: h.m as u64,
            ef_construct: h.ef_construction as u64,
        }
    }
}

impl CollectionSettings {
    /// Refuses settings Qdrant would refuse, naming the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |flag: &str, message: &str| {
            Err(Error::InvalidArgument {
                flag: flag.into(),
                message: message.into(),
            })
        };
        // Each shard is a directory on every node holding it, made under the cluster's
        // consensus: 100,000 shards stalled a 3-node cluster for minutes (measured), and
        // killing relbert did not stop it. The 1B-pair plan needs 72.
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return bad(
                "--shards",
                &format!(
                    "must be from 1 to {MAX_SHARDS} (the cluster makes each shard through its \
                     consensus: 1,024 did not finish within a minute on a 3-node test cluster)"
                ),
            );
        }
        if self.replication == 0 || self.replication > MAX_REPLICATION {
            return bad(
                "--replication",
                &format!("must be from 1 to {MAX_REPLICATION}"),
            );
        }
        let replicas = self.shards * self.replication;
        if replicas > MAX_SHARD_REPLICAS {
            return bad(
                "--shards",
                &format!(
                    "{} shards x --replication {} make {replicas} shard replicas; relbert \
                     creates at most {MAX_SHARD_REPLICAS} (the cluster makes each through its \
                     consensus, and 1,024 did not finish within a minute on a 3-node test \
                     cluster): use fewer shards or copies",
                    self.shards, self.replication
                ),
            );
        }
        Ok(())
    }

    /// [`Self::create_request`], with the shard count left to the cluster unless `shards`
    /// (it was asked for: `--shards` given). Qdrant then makes one shard per node of the
    /// cluster (one on a single node), so that a cluster's points are spread over its nodes
    /// (found by a review: 1 shard put every point on one node of a cluster, without a
    /// word). The cluster counts its own nodes as it creates the collection: Qdrant's gRPC
    /// API, which relbert speaks, has no call that lists a cluster's nodes beforehand.
    pub fn create_request_for(
        &self,
        name: &str,
        record: &CollectionRecord,
        shards: bool,
    ) -> Result<CreateCollection> {
        let mut request = self.create_request(name, record)?;
        if !shards {
            request.shard_number = None;
        }
        Ok(request)
    }

    /// The request that creates collection `name` for `record`'s vectors.
    pub fn create_request(
        &self,
        name: &str,
        record: &CollectionRecord,
    ) -> Result<CreateCollection> {
        let text = serde_json::to_string(record).map_err(|e| Error::Internal(e.to_string()))?;
        let metadata: HashMap<String, serde_json::Value> =
            HashMap::from([(METADATA_KEY.to_string(), serde_json::Value::String(text))]);
        let quantized = self.quantization == Quantization::Int8;
        let datatype = if self.f16 {
            Datatype::Float16
        } else {
            Datatype::Float32
        };
        let mut b = CreateCollectionBuilder::new(name)
            .vectors_config(
                VectorParamsBuilder::new(record.dim as u64, Distance::Cosine)
                    .on_disk(quantized)
                    .datatype(datatype),
            )
            .shard_number(self.shards)
            .replication_factor(self.replication)
            .write_consistency_factor(1)
            .hnsw_config(
                HnswConfigDiffBuilder::default()
                    .m(self.m)
                    .ef_construct(self.ef_construct),
            )
            .optimizers_config(
                OptimizersConfigDiffBuilder::default().indexing_threshold(INDEXING_THRESHOLD_KB),
            )
            .on_disk_payload(true)
            .timeout(CREATE_TIMEOUT_SECS)
            .metadata(metadata);
        if quantized {
            b = b.quantization_config(
                ScalarQuantizationBuilder::default()
                    .r#type(QuantizationType::Int8.into())
                    .quantile(0.99)
                    .always_ram(true),
            );
        }
        Ok(b.build())
    }
}

/// Search parameters: HNSW with candidate list `ef`, or exact (every point, original
/// vectors); approximate searches over quantised vectors rescore [`OVERSAMPLING`] x k
/// candidates with the originals.
pub fn search_params(exact: bool, ef: usize) -> SearchParams {
    SearchParamsBuilder::default()
        .hnsw_ef(ef as u64)
        .exact(exact)
        .quantization(
            QuantizationSearchParamsBuilder::default()
                .ignore(exact)
                .rescore(true)
                .oversampling(OVERSAMPLING),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_and_replica_counts_are_bounded() {
        let with = |shards, replication| CollectionSettings {
            shards,
            replication,
            ..CollectionSettings::default()
        };
        assert!(with(3, 2).validate().is_ok());
        assert!(with(MAX_SHARDS, 1).validate().is_ok());
        assert!(with(1, MAX_REPLICATION).validate().is_ok());
        assert!(with(72, 2).validate().is_ok(), "the 1B-pair plan's layout");
        // Found by an audit: --shards 1024, the documented maximum, failed on a 3-node
        // cluster after two minutes and left a collection behind.
        for (s, r, flag) in [
            (0, 1, "--shards"),
            (100_000, 1, "--shards"),
            (1024, 1, "--shards"),
            (MAX_SHARDS + 1, 1, "--shards"),
            (MAX_SHARDS, 2, "--shards"),
            (1, 0, "--replication"),
            (1, 99, "--replication"),
        ] {
            let e = with(s, r).validate().unwrap_err().to_string();
            assert!(e.contains(flag), "{s} {r}: {e}");
        }
    }

    /// Found by a review: without `--shards` a new collection had 1 shard, so a cluster held
    /// every point on one node. The count is left to the cluster (one shard per node) unless
    /// it was asked for; the rest of the request is the same either way.
    #[test]
    fn a_shard_count_not_asked_for_is_left_to_the_cluster() {
        let record = super::super::tests::sample_record();
        let settings = CollectionSettings {
            shards: 3,
            replication: 2,
            ..CollectionSettings::default()
        };
        let given = settings.create_request_for("c", &record, true).unwrap();
        assert_eq!(given.shard_number, Some(3));
        let left = settings.create_request_for("c", &record, false).unwrap();
        assert_eq!(left.shard_number, None);
        assert_eq!(left.replication_factor, Some(2));
        assert_eq!(
            CreateCollection {
                shard_number: Some(3),
                ..left
            },
            given
        );
    }
}
