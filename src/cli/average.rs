//! `relbert average`: one model from the element-wise mean of several checkpoints' weights.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use relbert::averaging::{average_models_observed, AverageStep};

use super::interrupt::Interrupts;
use super::Progress;

/// Arguments of `relbert average`.
#[derive(Args, Debug)]
pub struct AverageArgs {
    /// Model directories to average (at least two checkpoints of one model, e.g. the
    /// epoch-NN directories of `relbert train --checkpoint-dir`; a Hugging Face Hub id in the
    /// local Hub cache names its snapshot).
    #[arg(required = true, num_args = 2.., value_name = "MODELS", value_parser = super::os(super::model_dir))]
    models: Vec<PathBuf>,
    /// Output model directory (refused if it exists, unless --force), made by the run; the
    /// folder it goes in must exist.
    #[arg(long, value_parser = super::os(super::output_dir_at))]
    out: PathBuf,
    /// Save float16 weights (default: float32).
    #[arg(long)]
    half: bool,
    /// Overwrite an existing output directory.
    #[arg(long)]
    force: bool,
    /// Print a JSON summary on standard output (the output, the models averaged, the tensors,
    /// parameters and number format); the lines for people stay on standard error.
    #[arg(long)]
    json: bool,
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
            let times = again.len() + 1;
            // With no other checkpoint there is nothing for it to outweigh: the average is
            // that checkpoint again.
            let effect = if real.iter().all(|b| b.as_ref() == Some(a)) {
                "so the average is that checkpoint's own weights (the same model, written again)"
                    .to_string()
            } else {
                format!("so it weighs {times} times as much as a checkpoint given once")
            };
            out.push(format!(
                "{} and {} are the same checkpoint ({}): it is averaged in {times} times, {effect}",
                models[i].display(),
                again.join(" and "),
                a.display(),
            ));
        }
    }
    out
}

/// Runs `relbert average`.
pub fn run(a: AverageArgs) -> Result<()> {
    // Before anything is made: average makes --out itself, never a missing folder above it
    // (the lock refuses one, without naming the flag).
    super::check_out_folder(&a.out, "--out")?;
    // A model directory inside an index would make `index add` and `index build --force`
    // refuse that index ("not only an index"); a bad command line, as for the other outputs.
    super::not_in_an_index(&a.out, "--out")?;
    // Warnings go through the log, as every other command's: `RELBERT_LOG=error` silences
    // them, and they read `WARN …` as the others do.
    for warning in repeated_models(&a.models) {
        tracing::warn!("{warning}");
    }
    // Nothing is this run's to remove until the library says it holds the lock: before, the
    // temporary directory could be another run's. The lock file is named before the library
    // takes the lock, and removed on a signal only while this process holds it (see
    // `Cleanup::lock_files`): named when the library said it held it, a signal in between
    // left it.
    let interrupt = Interrupts::install(Vec::new());
    interrupt
        .with()
        .lock_files
        .extend(relbert_index::lock::lock_path(&a.out).ok());
    let pb = Progress::new(a.models.len() as u64, "averaging", "models");
    let mut observe = |step: AverageStep| match step {
        AverageStep::Locked(_) => {}
        AverageStep::Read { done, .. } => pb.set_position(done as u64),
        AverageStep::Writing(tmp) => {
            pb.finish();
            // A directory already there is removed by the write only if it is a killed run's
            // (model files only), and refused otherwise: only then is it this run's.
            let ours = std::fs::symlink_metadata(&tmp).is_err()
                || relbert::output::recognise_model_leftover(&tmp, "a model directory").is_ok();
            if ours {
                interrupt.with().work_dir = Some(tmp);
            }
        }
        // Being put in place (the rename, or with --force the swap and the old model's
        // removal): what is at --out or in the temporary directory may be the new model or
        // the old one from now on, so nothing is removed and a signal lets the run finish.
        // One call: the temporary directory is dropped from what a signal removes as the
        // run is marked committing, with no moment in between.
        AverageStep::Committing => interrupt.committing(),
        AverageStep::Written => {}
    };
    let averaged = average_models_observed(&a.models, &a.out, a.half, a.force, &mut observe);
    if averaged.is_err() {
        // The temporary directory may hold the finished model the error names as kept
        // (something appeared at --out): no longer the run's to remove on a signal.
        interrupt.with().work_dir = None;
    }
    let report = averaged
        .map_err(|e| match e {
            // A flag whose value cannot be honoured (`--half` for weights float16 cannot
            // hold, `--out` naming one of the models) is a bad command line, status 2.
            relbert::Error::InvalidArgument { .. } => super::usage(e.to_string()),
            e => {
                // The model the error is about: a Hub id the cache lacks, or a snapshot
                // lacking a file, is said how to fetch.
                let hint = a
                    .models
                    .iter()
                    .map(|m| super::hub_hint(m, super::is_missing_file(&e, m)))
                    .find(|h| !h.is_empty());
                match hint {
                    Some(h) => anyhow::Error::new(e).context(format!("reading the models{h}")),
                    None => anyhow::Error::new(e),
                }
            }
        })
        .with_context(|| {
            format!(
                "averaging {} models into {}",
                a.models.len(),
                a.out.display()
            )
        })?;
    drop(pb);
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
        report.dtype
    );
    if a.json {
        // `dtype` spelled as `--dtype` and `bench --json` spell it; the models as given.
        let doc = serde_json::json!({
            "out": a.out.display().to_string(),
            "models": report.sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "models_weights_sha256": report.sources_weights_sha256,
            "tensors": report.tensors,
            "parameters": report.parameters,
            "dtype": report.dtype,
            "training_config_differences": report.training_config_differences,
        });
        relbert::output::print_line(&doc.to_string())?;
    }
    Ok(())
}
