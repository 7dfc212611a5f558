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
    #[arg(long, value_parser = super::os(super::output_dir_at))]
    out: PathBuf,
    /// Save float16 weights (default: float32).
    #[arg(long)]
    half: bool,
    /// Overwrite an existing output directory.
    #[arg(long)]
    force: bool,
}

/// Warnings for checkpoints given more than once (the same path, or one reached through a
/// symbolic link or `..`): each occurrence is averaged in, so it weighs double. Not refused,
/// since weighting a checkpoint so may be intended; said, since a repeated argument is more
/// often a slip of the shell.
fn repeated_models(models: &[PathBuf]) -> Vec<String> {
    let real: Vec<Option<PathBuf>> = models.iter().map(|m| m.canonicalize().ok()).collect();
    let mut out = Vec::new();
    for (i, a) in real.iter().enumerate() {
        let Some(a) = a else { continue };
        // Named once, at its first occurrence, with every later one.
        if real[..i].iter().any(|b| b.as_ref() == Some(a)) {
            continue;
        }
        let again: Vec<String> = (i + 1..models.len())
            .filter(|&j| real[j].as_ref() == Some(a))
            .map(|j| models[j].display().to_string())
            .collect();
        if !again.is_empty() {
            out.push(format!(
                "{} and {} are the same checkpoint ({}): it is averaged in {} times, so it \
                 weighs {} times as much as each other model",
                models[i].display(),
                again.join(" and "),
                a.display(),
                again.len() + 1,
                again.len() + 1
            ));
        }
    }
    out
}

/// Runs `relbert average`.
pub fn run(a: AverageArgs) -> Result<()> {
    // Warnings go through the log, as every other command's: `RELBERT_LOG=error` silences
    // them, and they read `WARN …` as the others do.
    for warning in repeated_models(&a.models) {
        tracing::warn!("{warning}");
    }
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
        tracing::warn!("{warning}");
    }
    if let Some(note) = report.config_note() {
        relbert::say!("note: {note}");
    }
    relbert::say!(
        "averaged {} models ({} tensors, {} parameters each) into {} ({})",
        report.sources.len(),
        report.tensors,
        super::progress::group(report.parameters as u64),
        a.out.display(),
        // The name `--half` and `--dtype` users know (`f32`), not the record's `F32`.
        report.dtype.to_lowercase()
    );
    Ok(())
}
