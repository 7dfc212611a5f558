//! A synthetic relation index for the Qdrant tests and `benchmarks/scale/`: `n` pairs of
//! low-rank unit vectors (the structure of real sentence-encoder vectors), with labels, and a
//! recorded encoder identity that names no model on disk.

use std::path::{Path, PathBuf};

use relbert_index::{EncoderInfo, HnswParams, IndexBuilder, IndexSpec, PairEntry, Precision};

/// The encoder identity the synthetic index records.
pub fn synthetic_encoder() -> EncoderInfo {
    EncoderInfo {
        model: "synthetic-no-model".into(),
        weights_sha256: "0".repeat(64),
        template: "<subj> <mask> <obj>".into(),
        aggregation: "average_no_mask".into(),
    }
}

/// Builds an f32 index of `n` pairs `w{i} x`:`y{i%97}` (one pair with a multi-word head) at
/// `out`.
pub fn synthetic_index(out: &Path, n: usize, dim: usize, seed: u64) -> PathBuf {
    let spec = IndexSpec {
        dim: dim as u32,
        precision: Precision::F32,
        encoder: synthetic_encoder(),
        input: format!("synthetic:{n}:{dim}:{seed}"),
    };
    let mut b = IndexBuilder::create_or_resume(out, spec, false).expect("index builder");
    let chunk = 4096;
    let mut row = 0;
    while row < n {
        let m = chunk.min(n - row);
        let vectors = relbert_index::synthetic::low_rank(m, dim, 32, 0.5, seed + row as u64);
        let pairs: Vec<PairEntry> = (row..row + m)
            .map(|i| {
                let head = if i == 0 {
                    "new york".to_string()
                } else {
                    format!("w{i}")
                };
                PairEntry::labelled(head, format!("y{}", i % 97), format!("rel{}", i % 5))
            })
            .collect();
        b.append_chunk(&pairs, &vectors).expect("append");
        row += m;
    }
    b.finish(HnswParams::default(), |_| {}).expect("finish")
}
