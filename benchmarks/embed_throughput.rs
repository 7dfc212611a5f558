//! Throughput of the relation encoder: pairs/s for N distinct pairs at several batch sizes,
//! timing tokenisation + forward passes + pooling (not process start-up or model load), as
//! ../shared/peers/encode_peer.py times the PyTorch peer. Prints one JSON document.
//!
//! cargo run --release --example embed_throughput -- MODEL_DIR PAIRS.tsv [RUNS] [BATCH...]
//!
//! `RELBERT_DTYPE=bf16` (or f16) measures the encoder at that number format (`--dtype`);
//! `RELBERT_DEVICE=cuda:0` on a GPU (a `--features cuda` build: scripts/gpu-check.sh).

use std::path::PathBuf;
use std::time::Instant;

use relbert::pairs::read_pairs;
use relbert::{EncoderOptions, RelationEncoder};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 2,
        "usage: embed_throughput MODEL PAIRS [RUNS] [BATCH...]"
    );
    let model = PathBuf::from(&args[0]);
    let records = read_pairs(&PathBuf::from(&args[1]))?;
    let pairs: Vec<(String, String)> = records.into_iter().map(|r| (r.head, r.tail)).collect();
    let runs: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(3);
    anyhow::ensure!(runs >= 1, "RUNS must be at least 1");
    let batches: Vec<usize> = if args.len() > 3 {
        args[3..]
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?
    } else {
        vec![32, 128]
    };
    let dtype: relbert::Dtype = std::env::var("RELBERT_DTYPE")
        .unwrap_or_else(|_| "f32".into())
        .parse()?;
    let device_name = std::env::var("RELBERT_DEVICE").unwrap_or_else(|_| "cpu".into());
    let device = relbert::device::parse_device(&device_name)?;
    let threads = candle_core::utils::get_num_threads();
    let mut results = Vec::new();
    for &bs in &batches {
        let enc = RelationEncoder::load(
            &model,
            &EncoderOptions {
                batch_size: bs,
                dtype,
                device: device.clone(),
                ..Default::default()
            },
        )?;
        // One warm-up pass so allocator and thread pools are in steady state.
        enc.embed_raw(&pairs[..bs.min(pairs.len())])?;
        let toks = enc.tokenize(&pairs)?;
        let tokens: usize = toks.iter().map(|t| t.ids.len()).sum();
        let mut secs = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let v = enc.embed_raw(&pairs)?;
            secs.push(t.elapsed().as_secs_f64());
            anyhow::ensure!(v.len() == pairs.len());
        }
        secs.sort_by(f64::total_cmp);
        // A true median: the mean of the two middle runs of an even count.
        let n = secs.len();
        let median = if n % 2 == 1 {
            secs[n / 2]
        } else {
            (secs[n / 2 - 1] + secs[n / 2]) / 2.0
        };
        let cfg = enc.encoder().config();
        let (h, i, l) = (
            cfg.hidden_size as f64,
            cfg.intermediate_size as f64,
            cfg.num_hidden_layers as f64,
        );
        let len = tokens as f64 / pairs.len() as f64;
        // Same FLOP estimate as the peer: layers * L * (8h^2 + 4hi + 4Lh) per pair.
        let gflop_per_pair = l * len * (8.0 * h * h + 4.0 * h * i + 4.0 * len * h) / 1e9;
        let pps = pairs.len() as f64 / median;
        results.push(serde_json::json!({
            "batch_size": bs,
            "n_pairs": pairs.len(),
            "runs_s": secs,
            "median_s": median,
            "pairs_per_s": (pps * 10.0).round() / 10.0,
            "real_tokens_per_pair": len,
            "est_gflop_per_pair": gflop_per_pair,
            "achieved_gflops": (pps * gflop_per_pair * 10.0).round() / 10.0,
        }));
    }
    let doc = serde_json::json!({
        "what": "relbert embed_raw throughput (tokenise + encode + pool)",
        "device": device_name,
        "dtype": dtype.name(),
        "cpu_kernel": dtype.cpu_kernel(),
        "model": model.display().to_string(),
        "threads": threads,
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
