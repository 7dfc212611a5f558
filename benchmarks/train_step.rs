//! Seconds per training step of `relbert train` with the reference settings (one relation per
//! step: 10 positives at most + 400 negatives, InfoNCE, AdamW), excluding model load and
//! validation, as `benchmarks/train_peer.py` times PyTorch. Prints one JSON document.
//!
//! cargo run --release --example train_step -- BASE_MODEL DATA_DIR [STEPS] [--autograd]

use std::path::PathBuf;
use std::time::Instant;

use relbert::training::{TrainConfig, Trainer};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let autograd = args.iter().any(|a| a == "--autograd");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    anyhow::ensure!(
        pos.len() >= 2,
        "usage: train_step BASE DATA [STEPS] [--autograd]"
    );
    let steps: usize = pos.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let cfg = TrainConfig {
        base: PathBuf::from(pos[0]),
        data: PathBuf::from(pos[1]),
        autograd,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&cfg)?;
    let order = trainer.epoch_order();
    anyhow::ensure!(steps >= 1, "STEPS must be at least 1");
    anyhow::ensure!(order.len() > steps, "only {} relations", order.len());
    // One untimed step: first-touch page faults and allocator warm-up.
    trainer.train_step(order[0])?;
    let mut seconds = Vec::with_capacity(steps);
    let mut tokens = Vec::with_capacity(steps);
    for &r in &order[1..=steps] {
        let before = trainer.tokens_processed();
        let t = Instant::now();
        trainer.train_step(r)?;
        seconds.push(t.elapsed().as_secs_f64());
        tokens.push(trainer.tokens_processed() - before);
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    // A true median: the mean of the two middle steps of an even count.
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let total_tokens: u64 = tokens.iter().sum();
    let total_seconds: f64 = seconds.iter().sum();
    let out = serde_json::json!({
        "engine": if autograd { "relbert (candle autograd)" } else { "relbert (hand-written CPU backward)" },
        "threads": rayon::current_num_threads(),
        "steps": steps,
        "seconds_per_step": seconds,
        "tokens_per_step": tokens,
        "median_seconds_per_step": median,
        "tokens_per_second": total_tokens as f64 / total_seconds,
        "dropout": { "hidden": trainer.dropout().hidden, "attention": trainer.dropout().attention },
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
