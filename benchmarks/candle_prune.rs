//! The candle encoder path (the one a GPU runs) with and without the pruned last layer
//! (`Encoder::forward_rows`), measured on this machine's CPU: pairs/s of the forward passes
//! (tokenisation excluded) over length-sorted batches, rounds alternated, plus the largest
//! difference between the two paths' pooled vectors. Prints one JSON document.
//!
//! cargo run --release --example candle_prune -- MODEL_DIR PAIRS.tsv [ROUNDS] [BATCH]
//!
//! `RELBERT_DEVICE=cuda:0` runs it on a GPU (a `--features cuda` build).

use std::path::PathBuf;
use std::time::Instant;

use relbert::batching::{length_sorted_batches, make_batch};
use relbert::encoder::Mode;
use relbert::pairs::read_pairs;
use relbert::pooling::{pool_sum, Aggregation};
use relbert::{EncoderOptions, RelationEncoder};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 2,
        "usage: candle_prune MODEL PAIRS [ROUNDS] [BATCH]"
    );
    let records = read_pairs(&PathBuf::from(&args[1]))?;
    let pairs: Vec<(String, String)> = records.into_iter().map(|r| (r.head, r.tail)).collect();
    let rounds: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(3);
    anyhow::ensure!(rounds >= 1, "ROUNDS must be at least 1");
    let bs: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(32);
    let device_name = std::env::var("RELBERT_DEVICE").unwrap_or_else(|_| "cpu".into());
    let enc = RelationEncoder::load(
        &PathBuf::from(&args[0]),
        &EncoderOptions {
            aggregation: Some(Aggregation::Mask),
            device: relbert::device::parse_device(&device_name)?,
            ..Default::default()
        },
    )?;
    let toks = enc.tokenize(&pairs)?;
    let lengths: Vec<usize> = toks.iter().map(|t| t.ids.len()).collect();
    let tok = enc.tokenizer();
    let e = enc.encoder();
    let batches: Vec<_> = length_sorted_batches(&lengths, bs)
        .into_iter()
        .map(|b| {
            let seqs: Vec<&[u32]> = b.iter().map(|&i| toks[i].ids.as_slice()).collect();
            make_batch(
                &seqs,
                tok.pad_id(),
                tok.mask_id(),
                Aggregation::Mask,
                |l, t| e.position_ids(l, t),
            )
        })
        .collect();
    let rows: Vec<Vec<usize>> = batches
        .iter()
        .map(|b| {
            b.single_rows()
                .ok_or_else(|| anyhow::anyhow!("a prompt without exactly one mask token"))
        })
        .collect::<anyhow::Result<_>>()?;
    let full = |out: &mut Vec<Vec<f32>>| -> anyhow::Result<()> {
        for b in &batches {
            let h = e.forward(&b.input, Mode::Inference)?;
            let w = candle_core::Tensor::from_vec(
                b.pool_weights.clone(),
                (b.input.batch, b.input.seq_len),
                e.device(),
            )?;
            out.extend(
                pool_sum(&h, &w)?
                    .to_device(&candle_core::Device::Cpu)?
                    .to_vec2::<f32>()?,
            );
        }
        Ok(())
    };
    let pruned = |out: &mut Vec<Vec<f32>>| -> anyhow::Result<()> {
        for (b, r) in batches.iter().zip(&rows) {
            let h = e.forward_rows(&b.input, Mode::Inference, r)?;
            out.extend(h.to_device(&candle_core::Device::Cpu)?.to_vec2::<f32>()?);
        }
        Ok(())
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    full(&mut a)?;
    pruned(&mut b)?;
    let max_rel = a
        .iter()
        .zip(&b)
        .map(|(x, y)| {
            let s = x.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
            x.iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max)
                / s
        })
        .fold(0f32, f32::max);
    let (mut tf, mut tp) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let mut sink = Vec::new();
        let t = Instant::now();
        full(&mut sink)?;
        tf.push(pairs.len() as f64 / t.elapsed().as_secs_f64());
        sink.clear();
        let t = Instant::now();
        pruned(&mut sink)?;
        tp.push(pairs.len() as f64 / t.elapsed().as_secs_f64());
    }
    let ratios: Vec<f64> = tp.iter().zip(&tf).map(|(p, f)| p / f).collect();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|x, y| x.total_cmp(y));
        // A true median: the mean of the two middle values of an even count.
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    println!(
        "{}",
        serde_json::json!({
            "model": args[0], "pairs": pairs.len(), "batch": bs, "device": device_name,
            "threads": candle_core::utils::get_num_threads(),
            "full_pairs_per_s": tf, "pruned_pairs_per_s": tp,
            "median_full": median(&tf), "median_pruned": median(&tp),
            "median_ratio": median(&ratios), "max_rel_diff": max_rel,
        })
    );
    Ok(())
}
