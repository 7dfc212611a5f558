//! `relbert average`: one model from the element-wise mean of several checkpoints' weights.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use relbert::averaging::average_models;

/// Arguments of `relbert average`.
#[derive(Args, Debug)]
pub struct AverageArgs {
    /// Model directories to average (at least two checkpoints of one model, e.g. the
    /// epoch-NN directories of `relbert train --checkpoint-dir`).
    #[arg(required = true, num_args = 2.., value_name = "MODELS")]
    models: Vec<PathBuf>,
    /// Output model directory (refused if it exists, unless --force).
    #[arg(long, value_parser = super::output_dir)]
    out: PathBuf,
    /// Save float16 weights (default: float32).
    #[arg(long)]
    half: bool,
    /// Overwrite an existing output directory.
    #[arg(long)]
    force: bool,
}

/// Runs `relbert average`.
pub fn run(a: AverageArgs) -> Result<()> {
    let report = average_models(&a.models, &a.out, a.half, a.force).with_context(|| {
        format!(
            "averaging {} models into {}",
            a.models.len(),
            a.out.display()
        )
    })?;
    // A warning, not a refusal: averaging different runs of one base (a "model soup") is
    // a legitimate recipe, but mixing them by accident (a stale checkpoint) is not.
    if let Some(warning) = report.mixed_runs_warning() {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "averaged {} models ({} tensors, {} parameters each) into {} ({})",
        report.sources.len(),
        report.tensors,
        report.parameters,
        a.out.display(),
        report.dtype
    );
    Ok(())
}
