//! Building a relation index from a pair file: pairs stream through the encoder in chunks
//! into a [`relbert_index::IndexBuilder`], which checkpoints after each chunk, so an
//! interrupted build resumes where it stopped; then the HNSW graph is built and the finished
//! directory is published atomically.

use std::path::{Path, PathBuf};

use relbert_index::{
    EncoderInfo, HnswParams, IndexBuilder, IndexSpec, PairEntry, Precision, Progress,
};

use crate::error::Result;
use crate::pairs::PairRecord;
use crate::relation::{EncoderIdentity, RelationEncoder};

/// Pairs encoded and appended per checkpoint.
pub const BUILD_CHUNK: usize = 2048;

/// The encoder identity as the index crate stores it.
pub fn encoder_info(id: &EncoderIdentity) -> EncoderInfo {
    EncoderInfo {
        model: id.model.clone(),
        weights_sha256: id.weights_sha256.clone(),
        template: id.template.clone(),
        aggregation: id.aggregation.clone(),
    }
}

/// Whether vectors from `offered` are comparable with an index built by `built` (same
/// weights, template and aggregation; the model's path may differ).
pub fn same_function(built: &EncoderInfo, offered: &EncoderInfo) -> bool {
    built.weights_sha256 == offered.weights_sha256
        && built.template == offered.template
        && built.aggregation == offered.aggregation
}

/// Options of an index build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// HNSW parameters.
    pub hnsw: HnswParams,
    /// Store vectors as f16.
    pub half: bool,
    /// Replace an existing index.
    pub force: bool,
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The published index directory.
    pub dir: PathBuf,
    /// Input rows taken from an earlier interrupted run.
    pub resumed_rows: u64,
    /// Distinct pairs stored.
    pub count: u64,
    /// Duplicate input rows skipped.
    pub skipped: u64,
    /// Seconds spent encoding and appending.
    pub encode_secs: f64,
    /// Seconds spent building the graph and writing the files.
    pub graph_secs: f64,
}

/// Builds (or resumes building) an index of `records` at `out`. `on_rows` is told how many
/// input rows are done, `on_graph` reports graph progress.
pub fn build_index(
    encoder: &RelationEncoder,
    records: &[PairRecord],
    out: &Path,
    opts: &BuildOptions,
    on_rows: &dyn Fn(u64),
    on_graph: &mut dyn FnMut(Progress),
) -> Result<BuildReport> {
    let spec = IndexSpec {
        dim: encoder.dim() as u32,
        precision: if opts.half {
            Precision::F16
        } else {
            Precision::F32
        },
        encoder: encoder_info(&encoder.identity()?),
    };
    let mut builder = IndexBuilder::create_or_resume(out, spec, opts.force)?;
    let resumed = builder.rows_done();
    if resumed > 0 {
        tracing::info!("resuming: {resumed} input rows already in the partial index");
    }
    let started = std::time::Instant::now();
    let mut done = resumed;
    on_rows(done);
    for chunk in records[(resumed as usize).min(records.len())..].chunks(BUILD_CHUNK) {
        let pairs: Vec<(&str, &str)> = chunk
            .iter()
            .map(|r| (r.head.as_str(), r.tail.as_str()))
            .collect();
        let vectors: Vec<f32> = encoder.embed(&pairs)?.into_iter().flatten().collect();
        let entries: Vec<PairEntry> = chunk
            .iter()
            .map(|r| PairEntry {
                head: r.head.clone(),
                tail: r.tail.clone(),
                label: r.label.clone(),
            })
            .collect();
        builder.append_chunk(&entries, &vectors)?;
        done += chunk.len() as u64;
        on_rows(done);
    }
    let encode_secs = started.elapsed().as_secs_f64();
    let (count, skipped) = (builder.count(), builder.skipped());
    let started = std::time::Instant::now();
    let dir = builder.finish(opts.hnsw, on_graph)?;
    Ok(BuildReport {
        dir,
        resumed_rows: resumed,
        count,
        skipped,
        encode_secs,
        graph_secs: started.elapsed().as_secs_f64(),
    })
}
