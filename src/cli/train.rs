//! `relbert train`: contrastive fine-tuning of a base model on the SemEval-2012 relations.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use relbert::losses::LossKind;
use relbert::pooling::Aggregation;
use relbert::training::{
    check_output_paths, train_keeping, Event, LrSchedule, TrainConfig, TrainFailure,
};

/// Arguments of `relbert train` (defaults are the reference's).
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Base model directory (config.json, model.safetensors, tokenizer.json), or a Hugging
    /// Face Hub id (org/name[@revision]) found in the local Hub cache.
    #[arg(long, value_parser = super::os(super::model_dir))]
    base: PathBuf,
    /// Data directory with semeval2012_relational_similarity/{train,validation}.jsonl and
    /// the sat/bats/google validation splits.
    #[arg(long)]
    data: PathBuf,
    /// Main training relations in place of DATA/semeval2012_relational_similarity/train.jsonl
    /// (same format), e.g. data/semeval2012_train_extended.jsonl. Validation is unchanged.
    #[arg(long, value_name = "FILE")]
    train_file: Option<PathBuf>,
    /// Further training relations (SemEval JSONL format), appended to the SemEval training
    /// relations; repeatable. Validation is unchanged.
    #[arg(long, value_name = "FILE")]
    extra_train: Vec<PathBuf>,
    /// Output model directory (refused if it exists, unless --force), made by the run; the
    /// folder it goes in must exist.
    #[arg(long, value_parser = super::os(super::output_dir_at))]
    out: PathBuf,
    /// Loss: nce, iloob or triplet.
    #[arg(long, default_value = "nce")]
    loss: LossKind,
    /// Passes over the relations (at least 1; with the relations, at most as many steps as
    /// the machine can count).
    #[arg(long, default_value_t = 10, value_parser = at_least_one, allow_negative_numbers = true)]
    epochs: usize,
    /// Peak learning rate (AdamW, weight decay 0; finite, above 0).
    #[arg(long, default_value_t = 5e-6, value_parser = above_zero, allow_negative_numbers = true)]
    lr: f64,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// After warm-up: constant (the reference's) or linear (decay to the run's last step).
    #[arg(long, default_value = "constant")]
    lr_schedule: LrSchedule,
    /// Sequences per encoder forward pass (a step is one relation; at least 1).
    #[arg(long, default_value_t = 32, value_parser = at_least_one, allow_negative_numbers = true)]
    batch_size: usize,
    /// Positives per step (at most; at least 1).
    #[arg(long, default_value_t = 10, value_parser = at_least_one, allow_negative_numbers = true)]
    num_positive: usize,
    /// Sampled negatives per step (at most; at least 1).
    #[arg(long, default_value_t = 400, value_parser = at_least_one, allow_negative_numbers = true)]
    num_negative: usize,
    /// Temperature of nce and iloob (finite, above 0) [default: 0.05]; refused with
    /// --loss triplet, which has none.
    #[arg(long, value_parser = above_zero, allow_negative_numbers = true)]
    temperature: Option<f64>,
    /// Margin of triplet (finite, 0 or more) [default: 1.0]; refused with --loss nce or
    /// iloob, which have none.
    #[arg(long, value_parser = zero_or_more, allow_negative_numbers = true)]
    margin: Option<f64>,
    /// Prompt template with <subj>, <obj> and <mask> (default: the base model's, from its
    /// relbert_config, else the reference's).
    #[arg(long, value_parser = super::os(super::template))]
    template: Option<String>,
    /// Aggregation: average_no_mask, mask or average (default: the base model's, from its
    /// relbert_config, else average_no_mask).
    #[arg(long, value_parser = super::os(super::aggregation))]
    aggregation: Option<Aggregation>,
    /// RNG seed (relation order, negative sampling).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Do not add other relations' positives to a relation's negatives.
    #[arg(long)]
    no_augment_negative_by_positive: bool,
    /// Keep the word-embedding table fixed.
    #[arg(long)]
    freeze_embeddings: bool,
    /// Save float16 weights.
    #[arg(long)]
    half: bool,
    /// cpu, or cuda:N with the `cuda` feature.
    #[arg(long, default_value = "cpu", value_parser = super::os(super::device))]
    device: String,
    /// Dropout on hidden states and attention probabilities (default: the base model's
    /// config.json values, as Hugging Face trains; 0 turns it off).
    #[arg(long, value_parser = probability, allow_negative_numbers = true)]
    dropout: Option<f64>,
    /// Train through candle's autograd on the CPU too (slow, no dropout; for comparison).
    #[arg(long)]
    autograd: bool,
    /// Also keep every epoch's model (float32) as DIR/epoch-NN, for `relbert average`
    /// (existing epoch-* entries are refused, or with --force all removed first). DIR is
    /// made when missing; the folder it goes in must exist.
    #[arg(long, value_name = "DIR", value_parser = super::os(checkpoint_dir))]
    checkpoint_dir: Option<PathBuf>,
    /// Overwrite an existing output directory, and replace every existing epoch-* checkpoint
    /// in --checkpoint-dir (only model directories relbert wrote, never --base).
    #[arg(long)]
    force: bool,
    /// Print a JSON summary on standard output once the run has finished (the output, the
    /// best epoch and its score, the epochs run, the seconds taken); the progress lines for
    /// people stay on standard error. A run stopped by a signal prints none.
    #[arg(long)]
    json: bool,
}

/// A count that must be a whole number, at least 1 (`--epochs`, `--batch-size`, …): said
/// whatever was given (`-1` or `1.5` got "invalid digit found in string").
fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => {
            Err(format!("must be at most {}", usize::MAX))
        }
        _ => Err("must be a whole number, at least 1".into()),
    }
}

/// A float flag that must be finite and above 0 (`--lr`, `--temperature`): refused by the
/// parser, so a bad value is a bad command line (status 2) and is named before anything loads.
fn above_zero(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("must be a finite number above 0".into()),
    }
}

/// A float flag that must be finite, 0 or more (`--margin`).
fn zero_or_more(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("must be a finite number, 0 or more".into()),
    }
}

/// A dropout probability: in [0, 1) (1 would drop everything).
fn probability(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err("must be a number in [0, 1) (0 turns dropout off)".into()),
    }
}

/// `--checkpoint-dir`: [`super::output_dir_at`]'s rules, and not an existing file (the lock
/// taken in it failed with "Not a directory", naming the path but not the flag).
fn checkpoint_dir(s: &std::ffi::OsStr) -> std::result::Result<PathBuf, String> {
    let p = super::output_dir_at(s)?;
    match relbert::training::check_checkpoint_dir(&p) {
        Ok(()) => Ok(p),
        Err(relbert::Error::InvalidArgument { message, .. }) => Err(message),
        Err(e) => Err(e.to_string()),
    }
}

/// The temperature and margin to train with: each only with a loss that uses it (nce and
/// iloob divide by a temperature, triplet adds a margin), since one given to the other loss
/// was taken and silently had no effect. Clap cannot refuse a flag by another's value, so
/// this is a [`super::usage`] error.
fn loss_knobs(loss: LossKind, temperature: Option<f64>, margin: Option<f64>) -> Result<(f64, f64)> {
    let defaults = relbert::training::TrainConfig::default();
    match loss {
        LossKind::Nce | LossKind::Iloob if margin.is_some() => Err(super::usage(format!(
            "--margin is only for --loss triplet: the {} loss has no margin (its scale is \
             --temperature)",
            loss.name()
        ))),
        LossKind::Triplet if temperature.is_some() => Err(super::usage(
            "--temperature is only for --loss nce or iloob: the triplet loss has no \
             temperature (its scale is --margin)",
        )),
        _ => Ok((
            temperature.unwrap_or(defaults.temperature),
            margin.unwrap_or(defaults.margin),
        )),
    }
}

/// The flags whose values the library refuses before training starts ([`TrainConfig`]'s
/// checks, the step count that overflows, [`check_output_paths`]' outputs that would
/// destroy the base or each other): such a refusal is a bad command line (status 2),
/// where a refusal that names a flag once training has run (a loss that overflows, a weight
/// float16 cannot hold) or a data problem is a failure (status 1).
const COMMAND_LINE_FLAGS: [&str; 10] = [
    "--out",
    "--epochs",
    "--lr",
    "--temperature",
    "--margin",
    "--dropout",
    "--batch-size",
    "--num-positive",
    "--num-negative",
    "--checkpoint-dir",
];

/// `e` as a [`super::usage`] error when it refuses one of [`COMMAND_LINE_FLAGS`]'s values,
/// else unchanged.
fn usage_if_command_line(e: relbert::Error) -> anyhow::Error {
    match &e {
        relbert::Error::InvalidArgument { flag, .. }
            if COMMAND_LINE_FLAGS.contains(&flag.as_str()) =>
        {
            super::usage(e.to_string())
        }
        _ => e.into(),
    }
}

/// The pooling to train with: `--aggregation`, else the base model's (a RelBERT checkpoint
/// records one, and fine-tuning it further keeps it, as it keeps its template), else the
/// reference's. A flag that differs from the base's is taken, with a warning: the base was
/// trained for its own pooling. A base whose config cannot be read is reported by the
/// trainer, which reads it next.
fn resolve_aggregation(flag: Option<Aggregation>, base: &std::path::Path) -> Aggregation {
    let recorded = relbert::config::ModelConfig::from_file(&base.join("config.json"))
        .ok()
        .and_then(|c| c.relbert.aggregation_mode)
        .and_then(|name| name.parse::<Aggregation>().ok());
    match (flag, recorded) {
        (Some(f), Some(r)) if f != r => {
            tracing::warn!(
                "--aggregation {} replaces the base model's {} (its config.json \
                 relbert_config); the trained model records {}",
                f.name(),
                r.name(),
                f.name()
            );
            f
        }
        (Some(f), _) => f,
        (None, Some(r)) => r,
        (None, None) => Aggregation::default(),
    }
}

/// The time left of a run, for the progress lines: `steps` more steps at `per_step` seconds
/// each, and `validations` more validations at `validation` seconds each (0 before the first
/// has been timed, and then said). A time past what a [`Duration`] holds (a huge `--epochs`)
/// is shown as the longest one: `Duration::from_secs_f64` panicked on it.
///
/// [`Duration`]: std::time::Duration
fn run_eta(steps: usize, per_step: f64, validations: usize, validation: f64) -> String {
    let secs = steps as f64 * per_step + validations as f64 * validation;
    let left = if secs.is_nan() || secs <= 0.0 {
        std::time::Duration::ZERO
    } else {
        std::time::Duration::try_from_secs_f64(secs).unwrap_or(std::time::Duration::MAX)
    };
    let shown = super::progress::duration(left);
    if validation > 0.0 {
        shown
    } else {
        format!("{shown} + validations")
    }
}

/// What `out` keeps after a run failed with `error` once it had saved a model, as the run
/// returned it (`kept`); `None` when it saved nothing there or the error already says it.
/// (It was read back from `out`'s metrics.json, and a record an earlier run left there with
/// the same error was taken for this run's.)
fn kept_after_failure(
    out: &std::path::Path,
    error: &str,
    kept: Option<relbert::training::KeptModel>,
) -> Option<String> {
    let kept = kept?;
    if error.contains(" keeps epoch ") {
        return None;
    }
    Some(format!(
        "{} keeps epoch {}'s model, of {} epochs run; {}",
        out.display(),
        kept.epoch,
        kept.epochs_run,
        if kept.recorded {
            "its metrics.json records the failure"
        } else {
            "the failure could not be recorded in its metrics.json"
        }
    ))
}

/// The SemEval validation score as the progress lines show it: `none` when no validation
/// relation could be scored (warned about before training).
fn semeval_shown(score: Option<f64>) -> String {
    match score {
        Some(s) => format!("{s:.4}"),
        None => "none".into(),
    }
}

/// The analogy accuracies of a validation for people, as the line's other scores are shown:
/// `bats 0.1910, google 0.3600, sat 0.1351` (by name); `none` without an analogy
/// split. (A Rust debug map was printed, with 17-digit floats.)
fn analogy_shown(scores: &std::collections::BTreeMap<String, f64>) -> String {
    if scores.is_empty() {
        return "none".into();
    }
    scores
        .iter()
        .map(|(set, score)| format!("{set} {score:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `relbert train`.
///
/// A run stopped by SIGINT, SIGTERM or SIGHUP keeps what it saved (the best epoch so far)
/// and exits with 128 plus the signal's number, as a shell reports a process the signal
/// killed: `relbert train … && relbert bench …` must not go on with a partial model.
pub fn run(a: TrainArgs) -> Result<()> {
    let (temperature, margin) = loss_knobs(a.loss, a.temperature, a.margin)?;
    let cfg = TrainConfig {
        base: a.base.clone(),
        data: a.data.clone(),
        train_file: a.train_file.clone(),
        extra_train: a.extra_train.clone(),
        loss: a.loss,
        epochs: a.epochs,
        lr: a.lr,
        warmup: a.warmup,
        lr_schedule: a.lr_schedule,
        batch_size: a.batch_size,
        num_positive: a.num_positive,
        num_negative: a.num_negative,
        temperature,
        margin,
        template: a.template.clone(),
        aggregation: resolve_aggregation(a.aggregation, &a.base),
        seed: a.seed,
        augment_negative_by_positive: !a.no_augment_negative_by_positive,
        freeze_embeddings: a.freeze_embeddings,
        half: a.half,
        device: a.device.clone(),
        dropout: a.dropout,
        autograd: a.autograd,
        checkpoint_dir: a.checkpoint_dir.clone(),
    };
    // Before looking at --out's contents: a base inside it is the more useful refusal.
    check_output_paths(&cfg, &a.out).map_err(usage_if_command_line)?;
    // Before anything is made: train makes --out and --checkpoint-dir themselves, never a
    // missing folder above them (the lock refuses one, without naming the flag).
    let folder = |dir: &std::path::Path, flag: &str| super::check_out_folder(dir, flag);
    folder(&a.out, "--out")?;
    if let Some(dir) = &a.checkpoint_dir {
        folder(dir, "--checkpoint-dir")?;
    }
    // An index directory must hold only its own files: `index add` and `index build
    // --force` refused one holding a trained model or checkpoints.
    super::not_in_an_index(&a.out, "--out")?;
    if let Some(dir) = &a.checkpoint_dir {
        let first = dir.join(relbert::training::epoch_dir_name(1, a.epochs));
        super::not_in_an_index(&first, "--checkpoint-dir")?;
    }
    // Before the lock below is taken: a signal from here on is a graceful stop, or, while
    // nothing is saved, an exit that removes the lock files this process holds (installed
    // after, a signal in between left the lock file; found by an audit).
    let locks = std::iter::once(&a.out)
        .chain(&a.checkpoint_dir)
        .filter_map(|p| relbert_index::lock::lock_path(p).ok())
        .collect();
    let stop = super::interrupt::StopRequest::install(
        "interrupt: stopping after this step; the best checkpoint so far stays",
        locks,
    );
    // Whether --out is relbert's is said before --force is suggested (see
    // check_model_output); the library checks it again under the output's lock. Under the
    // lock here too: a run writing --out is named as such, not as an existing --out to
    // replace with --force (found by an audit), as `average` names it.
    {
        let _lock = relbert_index::OutputLock::acquire(&a.out).map_err(relbert::Error::from)?;
        relbert::training::check_model_output(&a.out, a.force)?;
    }
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {pos}/{len} steps  {per_sec}  ETA {eta}  loss {prefix}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let mut pb: Option<ProgressBar> = None;
    let epochs = cfg.epochs;
    // Without a terminal the bar is hidden: log a step every `RELBERT_PROGRESS_SECS` seconds
    // (10 unless set; a line every 10 steps never came for a file of fewer than 10
    // relations) instead (for nohup runs), with an ETA for the whole run: the steps left at the run's mean
    // seconds per step, plus the validations left at the last one's duration (unknown
    // before the first epoch ends).
    let every = super::progress::interval();
    let mut last_line = std::time::Instant::now();
    let mut step_in_epoch = 0usize;
    let mut epoch_now = 0usize;
    let mut steps_per_epoch = 0usize;
    let mut steps_done = 0usize;
    let mut step_seconds = 0.0f64;
    let mut last_step = std::time::Instant::now();
    let mut validation_seconds = 0.0f64;
    let mut on_event = |ev: Event| match ev {
        Event::Validating { epoch } => {
            // The bar's epoch is over; its validation can take minutes with a large base.
            if let Some(bar) = &pb {
                bar.finish_and_clear();
            }
            if epoch == 0 {
                relbert::say!("base model: validating …");
            } else {
                relbert::say!("epoch {epoch}/{epochs}: validating …");
            }
            last_line = std::time::Instant::now();
        }
        Event::Baseline(v) => {
            relbert::say!(
                "base model: validation score {:.4} (analogy {}, semeval {})",
                v.score,
                analogy_shown(&v.analogy),
                semeval_shown(v.semeval)
            );
        }
        Event::EpochStart { epoch, steps } => {
            let bar = ProgressBar::new(steps as u64);
            bar.set_style(style.clone());
            bar.set_message(format!("epoch {epoch}/{epochs}"));
            pb = Some(bar);
            step_in_epoch = 0;
            epoch_now = epoch;
            steps_per_epoch = steps;
            last_step = std::time::Instant::now();
        }
        Event::Step { loss } => {
            step_seconds += last_step.elapsed().as_secs_f64();
            last_step = std::time::Instant::now();
            steps_done += 1;
            if let Some(bar) = &pb {
                bar.set_prefix(format!("{loss:.3}"));
                bar.inc(1);
                step_in_epoch += 1;
                if bar.is_hidden() && last_line.elapsed() >= every {
                    last_line = std::time::Instant::now();
                    let per_step = step_seconds / steps_done as f64;
                    let eta = run_eta(
                        epochs
                            .saturating_mul(steps_per_epoch)
                            .saturating_sub(steps_done),
                        per_step,
                        epochs.saturating_sub(epoch_now).saturating_add(1),
                        validation_seconds,
                    );
                    relbert::say!(
                        "  epoch {epoch_now}/{epochs}, step {step_in_epoch}/{}: loss {loss:.4}, \
                         {per_step:.2}s/step, ETA {eta} for the run",
                        bar.length().unwrap_or(0),
                    );
                }
            }
        }
        Event::Epoch(m) => {
            // The epoch is saved next: a second signal no longer ends the run at once.
            stop.saving();
            // What followed the epoch's last step, before this event: its validation.
            validation_seconds = last_step.elapsed().as_secs_f64();
            last_line = std::time::Instant::now();
            if let Some(bar) = pb.take() {
                bar.finish_and_clear();
            }
            relbert::say!(
                "epoch {}: mean loss {:.4}, {:.1}s ({:.2}s/step); validation score {:.4} (analogy {}, semeval {})",
                m.epoch,
                m.mean_loss,
                m.train_seconds,
                m.train_seconds / m.steps.max(1) as f64,
                m.validation.score,
                analogy_shown(&m.validation.analogy),
                semeval_shown(m.validation.semeval)
            );
        }
    };
    // Loading the base and the data, and the baseline validation, said nothing for
    // seconds (minutes with a large base).
    relbert::say!(
        "loading the base model {} and the data in {} …",
        a.base.display(),
        a.data.display()
    );
    let report = match train_keeping(&cfg, &a.out, a.force, stop.flag(), &mut on_event) {
        Ok(report) => report,
        Err(failure) => {
            let TrainFailure { error: e, kept } = *failure;
            let kept = kept_after_failure(&a.out, &e.to_string(), kept);
            // Before `e` is moved into the error returned.
            let what = format!(
                "training {} into {}{}",
                a.base.display(),
                a.out.display(),
                if super::is_missing_file(&e, &a.base) {
                    super::hub_hint(&a.base, true)
                } else {
                    String::new()
                }
            );
            return Err(usage_if_command_line(e).context(match kept {
                Some(kept) => format!("{what} ({kept})"),
                None => what,
            }));
        }
    };
    match report.best_epoch {
        Some(e) => relbert::say!(
            "best epoch {e} (score {:.4}) saved in {}{}",
            report.best_score.unwrap_or(f64::NAN),
            a.out.display(),
            if report.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        ),
        None if report.baseline.is_none() => {
            relbert::say!("stopped before training started: nothing saved")
        }
        None => relbert::say!("stopped before the first epoch finished: nothing saved"),
    }
    // A model worse on validation than the base it was trained from (a learning rate too
    // high, too little data) is still saved, as asked; the closing line alone read as a
    // success.
    if let Some((best, base)) = report.worse_than_base() {
        tracing::warn!(
            "the saved model scores {best:.4} on validation, below the base's {base:.4} before \
             training: training made it worse (try a lower --lr, or more data)"
        );
    }
    if let Some(signal) = stop.signal() {
        let done = report.epochs.len();
        let what = if report.interrupted {
            format!("after {done} of {epochs} epochs")
        } else {
            // The signal came after the last step: the run is whole, but whoever sent it
            // asked the pipeline to stop.
            "after the last epoch had finished".into()
        };
        relbert::say!(
            "error: training was stopped by {} {what}; exiting with status {}",
            signal.name(),
            signal.exit_status()
        );
        // What the run saves is in place and its locks are released (train has returned),
        // so nothing is lost by exiting here rather than through main.
        std::process::exit(signal.exit_status());
    }
    if a.json {
        let doc = train_json(&a, &report);
        relbert::output::print_line(&doc.to_string())?;
    }
    Ok(())
}

/// The `--json` summary of a finished run (`report`) of `a`: what its closing line says (the
/// best epoch, its score, `--out`) and what else a script reads from metrics.json, beside
/// it. Seconds end in `_secs`, as `index add --json`'s do; `dtype` is the saved weights',
/// spelled as `average --json` spells it.
fn train_json(a: &TrainArgs, report: &relbert::training::TrainReport) -> serde_json::Value {
    let train_secs: f64 = report.epochs.iter().map(|e| e.train_seconds).sum();
    serde_json::json!({
        "out": a.out.display().to_string(),
        "base": a.base.display().to_string(),
        "best_epoch": report.best_epoch,
        "best_score": report.best_score,
        "epochs": a.epochs,
        "epochs_run": report.epochs.len(),
        "steps": report.epochs.iter().map(|e| e.steps).sum::<usize>(),
        "selection_metric": report.selection_metric,
        "baseline_score": report.baseline.as_ref().map(|b| b.score),
        "loss": a.loss.name(),
        "dtype": if a.half { "f16" } else { "f32" },
        "metrics": a.out.join("metrics.json").display().to_string(),
        "train_secs": train_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Audit (s21): a huge `--epochs` made the ETA pass what a `Duration` holds, and
    /// `Duration::from_secs_f64` panicked (status 101) at the first progress line.
    #[test]
    fn an_eta_past_what_a_duration_holds_is_shown_not_a_panic() {
        let longest = super::super::progress::duration(std::time::Duration::MAX);
        assert_eq!(run_eta(usize::MAX, 10.0, usize::MAX, 5.0), longest);
        assert_eq!(
            run_eta(usize::MAX, f64::MAX, 1, 0.0),
            format!("{longest} + validations")
        );
        assert_eq!(run_eta(3, f64::NAN, 1, 1.0), "0s");
        assert_eq!(run_eta(3, -1.0, 0, 1.0), "0s");
        assert_eq!(run_eta(30, 2.0, 1, 60.0), "2m 00s");
    }

    /// Review R1 of d2d47d4: what `--out` keeps was read back from its metrics.json, and a
    /// record an earlier run left there with the same error was taken for this run's. It is
    /// what the run returns now, and nothing is said of a run that saved nothing.
    #[test]
    fn what_out_keeps_after_a_failure_is_what_the_run_returned() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        let failure = "invalid value for --lr or --temperature: the nce loss became NaN";
        // An earlier run's record of the same failure is not this run's.
        let json = serde_json::json!({"best_epoch": 2, "epochs": [{}, {}, {}], "failed": failure});
        std::fs::write(out.join("metrics.json"), json.to_string()).unwrap();
        assert_eq!(kept_after_failure(out, failure, None), None);
        let kept = |recorded| relbert::training::KeptModel {
            epoch: 1,
            epochs_run: 2,
            recorded,
        };
        let said = kept_after_failure(out, failure, Some(kept(true))).unwrap();
        assert!(
            said.contains("keeps epoch 1's model, of 2 epochs run")
                && said.contains("metrics.json records the failure"),
            "{said}"
        );
        let said = kept_after_failure(out, failure, Some(kept(false))).unwrap();
        assert!(said.contains("could not be recorded"), "{said}");
        // An error that already says it is not repeated.
        assert_eq!(
            kept_after_failure(out, "x; m keeps epoch 1's model", Some(kept(true))),
            None
        );
    }
}
