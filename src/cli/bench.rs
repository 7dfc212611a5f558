//! `relbert bench`: the evaluation harness.
//!
//! * `bench analogy` answers multiple-choice analogy questions (SAT, BATS, Google, … in the
//!   RelBERT JSONL format) with relation vectors or the word-vector offset baseline, embedding
//!   each distinct pair of all selected datasets once.
//! * `bench classify` trains an MLP on relation vectors for lexical relation classification
//!   (BLESS, CogALexV, EVALution, K&H+N, ROOT09) and reports micro/macro F1 on test.
//!
//! People get a table on standard output; `--json FILE` writes the same figures for machines.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use relbert::analogy::{accuracy_with_options, Accuracy, ScoreOptions, Similarity};
use relbert::classify::{
    class_count, f1_scores, holdout_split, single_predicted_class, Mlp, MlpConfig, Stopping,
    TrainReport,
};
use relbert::datasets::{
    analogy_datasets, lexical_datasets, load_analogy_file, load_lexical_file, AnalogyQuestion,
    LabelledPair, Pair,
};
use relbert::output::{check_replaceable, AtomicFile, OutputKind};
use relbert::relation::EncoderIdentity;
use relbert::RelationEncoder;
use serde::Serialize;

use super::interrupt::Interrupts;
use super::{ModelArgs, Progress};

/// Where a model comes from without `--model`, for the help of both benchmarks: the shared
/// `--model` help names the places but not that each is looked for in the checkout the binary
/// was built from too (`relbert::defaults`), so a bench run elsewhere scored that model.
const MODEL_DEFAULT_HELP: &str = concat!(
    "Without --model, the model is $RELBERT_MODEL, else models/relbert-minilm, else \
     models/all-MiniLM-L6-v2, each looked for first under the checkout relbert was built from (",
    env!("CARGO_MANIFEST_DIR"),
    ") and then under the current directory; the report's \"model\" field names the one used."
);

/// Arguments of `relbert bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Accuracy on multiple-choice analogy questions.
    Analogy(AnalogyArgs),
    /// Micro/macro F1 of an MLP on relation vectors (lexical relation classification).
    Classify(ClassifyArgs),
}

/// How stems and choices are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Distance {
    /// Cosine similarity.
    Cosine,
    /// Euclidean distance between the raw (unnormalised) vectors; the nearest choice wins.
    Euclidean,
}

/// Where pair vectors come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    /// The model's pair vectors: prompt, encoder, pooling (and, when the model's
    /// `relbert_config.offset_weight` is set, the word-vector offset beside them).
    Relbert,
    /// Word-vector offset baseline: e(tail) − e(head) with mean-pooled bare-word vectors.
    Offset,
    /// The prompt vectors and the offsets, concatenated so that cosine is the
    /// `--offset-weight`-weighted mean of their cosines.
    Combined,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Relbert => "relbert",
            Method::Offset => "offset",
            Method::Combined => "combined",
        }
    }
}

#[derive(Args, Debug)]
#[command(after_help = MODEL_DEFAULT_HELP)]
struct AnalogyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder with one sub-folder per dataset holding <split>.jsonl (the default is relative
    /// to the current directory: run from the checkout, or pass --data).
    #[arg(long, default_value = ANALOGY_DATA)]
    data: PathBuf,
    /// Comma-separated dataset names, or `all` for every folder that has the split.
    #[arg(long, default_value = "all", value_parser = super::os(super::text))]
    dataset: String,
    /// Which split to score (test or validation).
    #[arg(long, default_value = "test", value_parser = super::os(super::text))]
    split: String,
    /// Also write the results as JSON to this file (`-`: standard output, the table then
    /// going to standard error).
    #[arg(long, value_parser = super::os(super::output_file_at))]
    json: Option<PathBuf>,
    /// Replace an existing --json file (only a report `relbert bench` wrote).
    #[arg(long, requires = "json")]
    force: bool,
    /// Print accuracy per question prefix (source, section or relation file).
    #[arg(long)]
    breakdown: bool,
    /// Similarity between stem and choice.
    #[arg(long, value_enum, default_value_t = Distance::Cosine)]
    distance: Distance,
    /// Compare the reversed stem with the reversed choices (the reference's reverse_pair).
    #[arg(long, conflicts_with = "bi_direction")]
    reverse_pair: bool,
    /// Score by forward similarity × reversed similarity (the reference's bi_direction_pair).
    #[arg(long)]
    bi_direction: bool,
    /// relbert (the model's pair vectors, as embed, index and query compute them), offset
    /// (word-vector offset baseline) or combined (the prompt vectors with the offset at
    /// --offset-weight, whatever the model's relbert_config.offset_weight).
    #[arg(long, value_enum, default_value_t = Method::Relbert)]
    method: Method,
    /// With --method combined: the offset cosine's weight in [0, 1] (the prompt vectors'
    /// is 1 minus it; 0 scores the prompt vectors alone; default 0.5).
    #[arg(long, value_parser = unit_interval)]
    offset_weight: Option<f32>,
}

/// `bench analogy`'s default `--data`, relative to the current directory (the checkout's
/// place beside `shared/`).
const ANALOGY_DATA: &str = "../shared/data";

/// `bench classify`'s default `--data`, relative to the current directory.
const CLASSIFY_DATA: &str = "../shared/data/lexical_relation_classification";

/// Refuses a `--data` that is no directory, before any dataset is looked for: run outside the
/// checkout, the relative default said only "listing datasets in ../shared/data: No such file
/// or directory", naming neither the flag nor why the path was looked for there.
fn check_data_dir(data: &Path, default: &str) -> Result<()> {
    let why = match std::fs::metadata(data) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => "is not a directory".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such directory".to_string(),
        Err(e) => format!("cannot be read: {e}"),
    };
    let hint = if data == Path::new(default) {
        let cwd = std::env::current_dir()
            .map(|d| format!(" ({})", d.display()))
            .unwrap_or_default();
        format!(
            "; that is the default, which is relative to the current directory{cwd}: run from \
             the relbert checkout, or pass --data DIR with the datasets' folder"
        )
    } else {
        "; pass --data DIR with the datasets' folder".to_string()
    };
    bail!("--data {}: {why}{hint}", data.display())
}

/// Refuses a `--dataset` or `--split` name (`flag`) that is a path rather than a name: one
/// with a path separator, `.` or `..` (`--split ../sat/validation` read another dataset's
/// file and reported its score under the dataset named), or an empty one. A name that
/// merely contains two dots (`v..2`) names a file in the folder, and is taken.
fn check_name(flag: &str, name: &str) -> Result<()> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.contains('/') || name.contains(std::path::MAIN_SEPARATOR) {
        "it holds a path separator"
    } else if name == "." || name == ".." {
        "it names a directory, not a dataset"
    } else {
        return Ok(());
    };
    Err(super::usage(format!(
        "invalid value {name:?} for {flag}: {why}; give a name (a folder or file under --data), \
         not a path"
    )))
}

/// A Markdown table cell's text: `|` escaped and line breaks made spaces, so that a name or
/// prefix from a dataset file cannot split a row or end the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// Parses a number in [0, 1].
fn unit_interval(s: &str) -> std::result::Result<f32, String> {
    let v: f32 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside [0, 1]"))
    }
}

#[derive(Args, Debug)]
#[command(after_help = MODEL_DEFAULT_HELP)]
struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder with one sub-folder per dataset holding train.tsv, test.tsv and maybe val.tsv
    /// (the default is relative to the current directory: run from the checkout, or pass
    /// --data).
    #[arg(long, default_value = CLASSIFY_DATA)]
    data: PathBuf,
    /// Comma-separated dataset names, or `all` for every folder with train.tsv and test.tsv.
    #[arg(long, default_value = "all", value_parser = super::os(super::text))]
    dataset: String,
    /// Seed for the MLP's initialisation, shuffling and (without val.tsv) the held-out split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the results as JSON to this file (`-`: standard output, the table then
    /// going to standard error).
    #[arg(long, value_parser = super::os(super::output_file_at))]
    json: Option<PathBuf>,
    /// Replace an existing --json file (only a report `relbert bench` wrote).
    #[arg(long, requires = "json")]
    force: bool,
    /// Features are [v(a,b); v(b,a)] as in the reference's evaluation script, instead of v(a,b).
    #[arg(long)]
    concat_reverse: bool,
    /// Stopping rule: validation accuracy (early stopping on val.tsv, else on 10% of
    /// train.tsv held out by label; best epoch kept) or training loss (scikit-learn's
    /// default: all of train.tsv trained on, last epoch kept). Default: val-accuracy.
    // An option, so that `--protocol reference` can refuse it given, and only given.
    #[arg(long, value_enum)]
    stop_on: Option<StopOn>,
    /// `reference`: the RelBERT reference's protocol (`evaluate_classification`): features
    /// [v(a,b); v(b,a)] as the model pools them (not unit length), all of train.tsv trained
    /// on until the training loss settles, and where a dataset has val.tsv, learning rate
    /// {1e-3, 1e-4, 1e-5} x hidden units {100, 150, 200} searched, the best validation
    /// micro-F1 kept (nine trainings a dataset). Implies --concat-reverse and --stop-on
    /// train-loss.
    // Refused beside --concat-reverse or --stop-on in `classify`, not by clap's
    // `conflicts_with`, which refused them beside `--protocol relbert` as well.
    #[arg(long, value_enum, default_value_t = Protocol::Relbert)]
    protocol: Protocol,
}

/// `bench classify --protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// relbert's own (unit-length features, early stopping on validation accuracy).
    Relbert,
    /// The RelBERT reference's `evaluate_classification`.
    Reference,
}

/// The learning rates of the reference's grid where a dataset has val.tsv.
const REFERENCE_RATES: [f64; 3] = [1e-3, 1e-4, 1e-5];
/// The hidden-layer widths of the reference's grid.
const REFERENCE_HIDDEN: [usize; 3] = [100, 150, 200];

/// The reference's grid, in its order (`itertools.product`: learning rate outer): the first
/// best validation micro-F1 in this order is kept, as its stable sort keeps it.
fn reference_grid() -> Vec<(f64, usize)> {
    REFERENCE_RATES
        .iter()
        .flat_map(|&lr| REFERENCE_HIDDEN.iter().map(move |&h| (lr, h)))
        .collect()
}

/// The index of the first highest score: the reference keeps `sorted(…, reverse=True)[0]`,
/// and Python's sort is stable, so of equal scores the one tried first.
fn first_best(scores: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &s) in scores.iter().enumerate() {
        if best.is_none_or(|b| s > scores[b]) {
            best = Some(i);
        }
    }
    best
}

/// One training of the grid search of `--protocol reference`.
#[derive(Serialize, Debug, Clone)]
struct GridPoint {
    learning_rate: f64,
    hidden: usize,
    epochs: usize,
    converged: bool,
    /// Micro-F1 on val.tsv, what the search keeps the best of.
    val_f1_micro: f64,
}

/// The MLP's stopping rule on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StopOn {
    /// Early stopping on validation accuracy.
    ValAccuracy,
    /// Stop when the training loss stops falling.
    TrainLoss,
}

/// Runs `relbert bench …`.
pub fn run(a: BenchArgs) -> Result<()> {
    match a.command {
        BenchCommand::Analogy(a) => analogy(a),
        BenchCommand::Classify(a) => classify(a),
    }
}

/// Says which scored questions are also validation questions of a dataset under `data`
/// (`sat_full`'s test split holds SAT's 37 validation questions): a model whose checkpoint
/// or settings were chosen on validation has seen them in that choice, so its score on
/// such a set is not a test score alone. A question is the same when its stem and choices
/// are; a validation file that cannot be read is passed over (scoring it is not asked).
///
/// Returns each note said, by dataset name, for the report's `notes`: said only on standard
/// error, it was lost to whoever read the report alone.
fn note_validation_overlap(
    data: &Path,
    loaded: &[(String, Vec<AnalogyQuestion>)],
) -> HashMap<String, Vec<String>> {
    type Key<'a> = (&'a Pair, &'a [Pair]);
    let validation: Vec<(String, Vec<AnalogyQuestion>)> = std::fs::read_dir(data)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let path = e.path().join("validation.jsonl");
            let name = e.file_name().to_str()?.to_string();
            Some((name, load_analogy_file(&path).ok()?))
        })
        .collect();
    let mut seen: HashMap<Key<'_>, &str> = HashMap::new();
    let mut notes: HashMap<String, Vec<String>> = HashMap::new();
    for (name, qs) in &validation {
        for q in qs {
            seen.entry((&q.stem, q.choice.as_slice())).or_insert(name);
        }
    }
    for (name, qs) in loaded {
        let mut from: Vec<&str> = Vec::new();
        let shared = qs
            .iter()
            .filter_map(|q| seen.get(&(&q.stem, q.choice.as_slice())))
            .inspect(|&&v| {
                if !from.contains(&v) {
                    from.push(v);
                }
            })
            .count();
        if shared > 0 {
            from.sort_unstable();
            let note = format!(
                "{shared} of {name}'s {} questions are also validation questions ({}): a model \
                 chosen on validation has seen them, so its {name} score is not a held-out \
                 score alone",
                qs.len(),
                from.iter()
                    .map(|v| format!("{v}/validation.jsonl"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            relbert::say!("note: {note}");
            notes.entry(name.clone()).or_default().push(note);
        }
    }
    notes
}

/// The datasets to use: `all` → `discover()` (none found is an error saying `nothing()`),
/// else each comma-separated name under `data`, each once (`sat,sat` is one row, not two).
fn select(
    spec: &str,
    data: &Path,
    discover: impl Fn() -> relbert::Result<Vec<(String, PathBuf)>>,
    path_of: impl Fn(&str) -> PathBuf,
    nothing: impl Fn() -> String,
) -> Result<Vec<(String, PathBuf)>> {
    if spec.trim() == "all" {
        let found =
            discover().with_context(|| format!("listing datasets in {}", data.display()))?;
        if found.is_empty() {
            bail!("{}", nothing());
        }
        return Ok(found);
    }
    let names = dataset_names(spec)?;
    for name in &names {
        if !data.join(name).is_dir() {
            let mut there: Vec<String> = std::fs::read_dir(data)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect();
            there.sort();
            bail!(
                "--dataset {name:?}: no folder {} ({})",
                data.join(name).display(),
                if there.is_empty() {
                    format!("{} holds no dataset folders", data.display())
                } else {
                    format!("the datasets there: {}", there.join(", "))
                }
            );
        }
    }
    Ok(names
        .into_iter()
        .map(|n| (n.to_string(), path_of(n)))
        .collect())
}

/// The names of a `--dataset` list other than `all`, each once (`sat,sat` is one row, not
/// two); a bad one is a bad command line (status 2), refused before anything is read.
fn dataset_names(spec: &str) -> Result<Vec<&str>> {
    let mut names: Vec<&str> = Vec::new();
    if spec.trim() == "all" {
        return Ok(names);
    }
    for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(super::usage(
            "invalid value for --dataset: no dataset named",
        ));
    }
    for name in &names {
        check_name("--dataset", name)?;
    }
    Ok(names)
}

/// The split names (`<split>.jsonl` file stems) found in the folders under `data` that bench
/// can score, sorted, for the message when the asked split is in none of them: a split that
/// only a folder of SemEval relations has (`train`, beside the analogy sets) would be skipped
/// if asked for, so it is not offered.
fn splits_under(data: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(data)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|e| splits_under_one(&e.path()))
        .collect();
    out.sort();
    out.dedup();
    // Read, not only found: a folder of other records without `relation_type` (the SemEval
    // ratings) counts as an analogy set until its first line fails to parse.
    out.retain(|split| {
        analogy_datasets(data, split).is_ok_and(|found| {
            found
                .sets
                .iter()
                .any(|(_, file)| load_analogy_file(file).is_ok())
        })
    });
    out
}

/// The split names (`<split>.jsonl` file stems) in one dataset folder, sorted.
fn splits_under_one(dataset: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dataset)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|f| {
            let p = f.path();
            (p.extension()? == "jsonl" && p.is_file())
                .then(|| p.file_stem()?.to_str().map(str::to_string))
                .flatten()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether `--json PATH` means standard output (`-`, as `embed --out -`).
fn is_stdout(path: Option<&Path>) -> bool {
    path.is_some_and(|p| p.as_os_str() == "-")
}

/// Checks before any work that the report can be written to `--json PATH`: a new file in an
/// existing directory that this process can create files in (a temporary file is made there
/// and removed: a read-only directory, or one such as `/proc`, otherwise failed only after
/// all the embedding), or (with `--force`) a report relbert bench wrote. `-` is standard
/// output and needs no check.
///
/// Returns the run's interrupt handling, holding the report's writer lock until it is written
/// (a second bench writing the same report is refused at its start) and naming the report's
/// temporary file: a signal removes both and says that nothing was written. The handler is
/// installed before the lock is taken, which is taken under its state
/// ([`Interrupts::lock_outputs`]), as `embed` takes its outputs: installed after the lock and
/// the temporary file, a signal in between left both (found by an audit).
fn check_report_path(path: Option<&Path>, force: bool) -> Result<Option<Interrupts>> {
    let Some(path) = path else { return Ok(None) };
    if is_stdout(Some(path)) {
        return Ok(None);
    }
    // A report inside an index would make `index add` and `index build --force` refuse it.
    super::not_in_an_index(path, "--json")?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    super::check_out_folder(path, "--json")?;
    // A bad command line (status 2), as every other flag's bad value; a file that cannot
    // be read to tell (permission denied) is a failure to write, not a bad value.
    check_replaceable(path, force, OutputKind::BenchReport).map_err(|e| match e {
        relbert::Error::Io { .. } => {
            anyhow::Error::new(e).context(format!("cannot write --json {}", path.display()))
        }
        e => super::usage(format!("invalid value for --json: {e}")),
    })?;
    let interrupt = Interrupts::install(Vec::new());
    // Made and removed under the handler's state: a signal meanwhile waits for it to go (the
    // handler's exit runs no destructors, and the file was left). The OS error alone:
    // tempfile's own message repeats the failure and adds the random name of a file that
    // was never made.
    let probed = {
        let _held = interrupt.with();
        tempfile::Builder::new()
            .prefix(".relbert-bench-check")
            .tempfile_in(parent)
            .map(drop)
    };
    probed.map_err(|e| {
        anyhow::anyhow!(
            "cannot write --json {}: no file can be made in {}: {}",
            path.display(),
            parent.display(),
            relbert::encoder::innermost_io(&e)
        )
    })?;
    // One writer per report for the whole run: the report's temporary file is replaced on
    // the assumption that no live run owns it. A failure here (a full or read-only place)
    // is said as a failure to write, not as a bad value of the flag.
    let take = || -> Result<Vec<relbert_index::OutputLock>> {
        let lock = relbert_index::OutputLock::acquire(path)
            .with_context(|| format!("cannot write --json {}", path.display()))?;
        Ok(vec![lock])
    };
    interrupt.lock_outputs(take, vec![relbert::output::temp_path(path)])?;
    Ok(Some(interrupt))
}

/// Where the table goes: standard output, unless the JSON report does (`--json -`), which
/// then has standard output to itself so that it can be parsed.
fn table_writer(json: Option<&Path>) -> Box<dyn Write> {
    if is_stdout(json) {
        Box::new(Unfailing)
    } else {
        Box::new(Stdout)
    }
}

/// Why a classifier's training under `cfg` stopped before its most epochs, for the last
/// progress line: its stopping rule, and the epochs without a gain that end it.
fn stopped_early(cfg: &MlpConfig) -> String {
    let what = match cfg.stopping {
        Stopping::ValidationAccuracy => "validation accuracy",
        Stopping::TrainingLoss => "training loss",
    };
    // Training ends once more than `n_iter_no_change` epochs in a row gained nothing.
    format!(
        "stopped early: no gain in {what} for {} epochs",
        cfg.n_iter_no_change + 1
    )
}

/// The warning for a classifier whose training ran to `cfg.max_epochs` without its stopping
/// rule ending it, as scikit-learn's `ConvergenceWarning` warns: the figures are those of a
/// classifier that was still improving when it was cut off.
fn not_converged(cfg: &MlpConfig) -> String {
    let (what, kept) = match cfg.stopping {
        Stopping::ValidationAccuracy => (
            "validation accuracy was still improving",
            "the best validation epoch's weights are kept",
        ),
        Stopping::TrainingLoss => (
            "training loss was still falling",
            "the last epoch's weights are kept",
        ),
    };
    format!(
        "training did not converge: it ran to its cap of {} epochs while the {what} (by {} or \
         more within {} epochs), so the classifier may be undertrained ({kept}; as \
         scikit-learn's ConvergenceWarning)",
        cfg.max_epochs,
        cfg.tol,
        cfg.n_iter_no_change + 1
    )
}

/// The warning for a classifier that predicted `class` for every test pair while the test
/// labels hold more than one class: micro-F1 is then that class's share of the test pairs and
/// macro-F1 its F1 averaged with zeros, figures that look like a weak classifier's rather than
/// one that tells nothing apart. `trained` is how many labels the classifier has outputs
/// for; the flags not in use (`cfg`, `concat_reverse`) are suggested.
fn single_class_note(class: &str, trained: usize, cfg: &MlpConfig, concat_reverse: bool) -> String {
    let said = format!(
        "every test pair is predicted {class}, so micro-F1 is {class}'s share of the test pairs \
         and macro-F1 its F1 averaged with zeros"
    );
    if trained < 2 {
        return format!(
            "{said}: the training rows hold that one label only, so the classifier has no \
             other output"
        );
    }
    let mut flags = Vec::new();
    if cfg.stopping != Stopping::TrainingLoss {
        flags.push("--stop-on train-loss (trains on all of train.tsv until the loss settles)");
    }
    if !concat_reverse {
        flags.push("--concat-reverse (adds the reverse pair's vector to the features)");
    }
    let hint = if flags.is_empty() {
        String::new()
    } else {
        format!("; try {}", flags.join(" or "))
    };
    format!("{said}: of the {trained} classes trained on, the classifier tells none apart{hint}")
}

/// Standard error for the table under `--json -`: there it is a message beside the result
/// (the JSON on standard output), and a full or closed standard error loses the message,
/// never the run, as every other message of the binary ([`relbert::output::Stderr`]).
struct Unfailing;

impl Write for Unfailing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = relbert::output::Stderr.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Standard output for the table, naming it in the error of a write that fails: a full
/// disk under `> file` was reported as the bare OS message, naming no output.
struct Stdout;

impl Stdout {
    /// `err` as a failed write to standard output, named as the binary names it.
    fn named(err: std::io::Error) -> std::io::Error {
        std::io::Error::new(err.kind(), relbert::output::stdout_error(err))
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().write(buf).map_err(Self::named)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush().map_err(Self::named)
    }
}

/// Refuses, before any encoding, a dataset pair whose prompt `enc` cannot encode
/// ([`RelationEncoder::overlong`]), naming the file and line of the first record that holds
/// it (`locate`), as `relbert embed` names its input's line; and warns, as `embed` does, of
/// pairs it encodes with the mask token cut away ([`RelationEncoder::screen_prompts`]).
fn refuse_overlong(
    enc: &RelationEncoder,
    pairs: &[Pair],
    locate: impl Fn(&Pair) -> Option<(PathBuf, usize)>,
) -> Result<()> {
    let place = |p: &Pair| match locate(p) {
        Some((path, line)) => format!("{}:{line}", path.display()),
        None => "a dataset".to_string(),
    };
    let (bad, mask_cut) = enc.screen_prompts(pairs)?;
    if let Some(&i) = mask_cut.first() {
        let (h, t) = &pairs[i];
        relbert::embed::warn_mask_cut_at(enc, &place(&pairs[i]), (h, t), mask_cut.len() - 1);
    }
    let Some(&first) = bad.first() else {
        return Ok(());
    };
    let (head, tail) = pairs[first].clone();
    let mut location = place(&pairs[first]);
    if bad.len() > 1 {
        location.push_str(&format!(" (and {} more pairs)", bad.len() - 1));
    }
    Err(relbert::Error::PromptTooLong {
        location,
        head,
        tail,
        limit: enc.max_tokens(),
        hint: "",
    }
    .into())
}

/// Warns, naming the dataset file and line of the first, of dataset pairs with a word the
/// tokenizer cannot read as written (over 100 characters: `[UNK]`; a control character:
/// dropped), as `embed` and `index build` warn of such pairs in theirs
/// ([`relbert::embed::warn_unaskable_pairs`]): two such words get one vector, and a question
/// between them was decided by a tie with no sign why. `pairs` are (pair, file, line) in file
/// order; a pair is counted once however many records hold it. `outcome` says what bench
/// does with such a pair.
fn warn_unaskable<'a>(pairs: impl Iterator<Item = (&'a Pair, &'a Path, usize)>, outcome: &str) {
    let mut seen = std::collections::HashSet::new();
    relbert::embed::warn_unaskable_pairs(
        pairs
            .filter(|(p, ..)| seen.insert(*p))
            .map(|((h, t), file, line)| (h.as_str(), t.as_str(), file, line)),
        outcome,
    );
}

/// Warns that `--distance euclidean` ranks as cosine when every vector is unit length (an
/// offset model's pair vectors, `--method combined`'s and `--method offset`'s): README and
/// the report's `"distance": "euclidean"` speak of raw vectors, and a reader would take the
/// two columns for two measurements. The distance of unit vectors is `√(2 − 2·cos)`, so the
/// nearest choice is the most similar one; only `--bi-direction`'s product of distances,
/// which this is not called for, differs from the product of cosines. A zero vector
/// (`--method offset`'s `nephew:nephew`, a pair without offset at weight 1) keeps it silent:
/// its distance to every unit vector is 1, that of a unit vector at cosine 0.5, while under
/// cosine it loses to every choice ([`relbert::analogy::ZERO_VECTOR_SCORE`]), so the two
/// rankings differ where it is a choice.
fn warn_euclidean_is_cosine(vectors: &HashMap<Pair, Vec<f32>>, method: Method) {
    let unit = |v: &Vec<f32>| {
        let n: f64 = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        (n - 1.0).abs() < 1e-3
    };
    if vectors.is_empty() || !vectors.values().all(unit) {
        return;
    }
    let why = match method {
        Method::Relbert => "the model's offset weight makes its pair vectors unit length",
        Method::Offset => "--method offset's vectors are unit offsets",
        Method::Combined => "--method combined's vectors are unit length",
    };
    tracing::warn!(
        "--distance euclidean: {why}, and the euclidean distance of unit vectors is \
         √(2 − 2·cos), so it ranks the choices exactly as --distance cosine does"
    );
}

/// Warns once, naming the first's dataset file and line (`locate`) and counting the others, of
/// the pairs whose two words share one word vector, so that their offset is zero
/// ([`relbert::analogy::offset`]): under an offset weight their vector is the relation part
/// alone ([`relbert::analogy::combine`]), and under `--method offset` it is zero, which loses
/// to every other choice ([`relbert::analogy::ZERO_VECTOR_SCORE`]). A pair and its reverse
/// are one. `weight` is the offset weight of the
/// vectors (`None`: offsets alone, `--method offset`); at weight 0 there is no offset part to
/// lack.
fn warn_no_offset(
    pairs: &[Pair],
    vectors: &HashMap<Pair, Vec<f32>>,
    weight: Option<f32>,
    locate: impl Fn(&Pair) -> Option<(PathBuf, usize)>,
) {
    let lacks = |v: &Vec<f32>| match weight {
        Some(w) => w > 0.0 && relbert::analogy::lacks_offset(v),
        None => v.iter().all(|x| *x == 0.0),
    };
    let mut seen = std::collections::HashSet::new();
    let mut found = pairs.iter().filter(|p| {
        vectors.get(*p).is_some_and(lacks) && {
            let (h, t) = p;
            seen.insert(if h <= t { (h, t) } else { (t, h) })
        }
    });
    let Some(first) = found.next() else { return };
    let more = found.count();
    let location = match locate(first) {
        Some((path, line)) => format!("{}:{line}", path.display()),
        None => "a dataset".to_string(),
    };
    let consequence = match weight {
        Some(w) => relbert::embed::no_offset_consequence(w),
        None => "its offset vector is zero, which scores below every other choice (as the \
                 reference masks zero vectors), and as a stem leaves its question to a tie, \
                 which the first choice wins"
            .to_string(),
    };
    relbert::embed::warn_shared_word_vector(&location, &first.0, &first.1, more, &consequence);
}

/// Starts the report's temporary file at the start of the run, once [`check_report_path`]
/// holds its lock (in `interrupt`): the file at `path` then (absent, or with `force` a report)
/// is what the commit may replace, so a file that appears during the run is told apart from
/// it. `None` for standard output or no `--json`. Declared after `interrupt`, so that it is
/// dropped (removed) before the lock is released.
fn start_report(
    path: Option<&Path>,
    force: bool,
    interrupt: Option<&Interrupts>,
) -> Result<Option<AtomicFile>> {
    let (Some(path), Some(interrupt)) = (path, interrupt) else {
        return Ok(None);
    };
    // Created under the handler's state, which a signal takes to remove it: made outside
    // it, a file created just after the handler's removal would be left.
    let _held = interrupt.with();
    let f = AtomicFile::create(path, force)
        .with_context(|| format!("cannot write --json {}", path.display()))?;
    Ok(Some(f))
}

/// Writes `value` as pretty JSON into `file` (started by [`start_report`]) and renames it to
/// `path`, or to standard output for `-` (no `file`). Only what was at `path` at the start is
/// replaced, and with `force` only while it is still a bench report: otherwise the error
/// names what is there and where the finished report is kept (its temporary file), rather
/// than dropping it.
fn write_json(
    path: &Path,
    value: &impl Serialize,
    file: Option<AtomicFile>,
    force: bool,
    interrupt: Option<&Interrupts>,
) -> Result<()> {
    let Some(mut f) = file else {
        // Whole first (reports are tens of KB), so that a failed write is standard output's
        // and named so, as `query` and `embed` name it.
        let text = serde_json::to_string_pretty(value).context("writing the report")?;
        relbert::output::print_line(&text).context("writing the report")?;
        return Ok(());
    };
    serde_json::to_writer_pretty(f.writer(), value)
        .with_context(|| format!("writing {}", path.display()))?;
    f.writer()
        .write_all(b"\n")
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync()?;
    // The run took minutes: what is at the path now may not be what was checked at its
    // start. Checked again right before the rename; the finished report is kept either way.
    let refused = if f.replaces() {
        check_replaceable(path, force, OutputKind::BenchReport)
            .err()
            .map(|e| (e, true))
    } else {
        f.check_place().err().map(|e| (e, false))
    };
    if let Some((e, say_kept)) = refused {
        let tmp = relbert::output::temp_path(path);
        // Kept, so no longer the run's to remove on a signal.
        if let Some(guard) = interrupt {
            guard.with().files.retain(|p| p != &tmp);
        }
        let kept = f.keep();
        let err = anyhow::Error::new(e);
        // `check_place`'s error names the kept file already.
        return Err(if say_kept {
            err.context(format!(
                "not writing --json {}: the report this run wrote is in {} (move it away \
                 before another run to this output, which removes it)",
                path.display(),
                kept.display()
            ))
        } else {
            err.context(format!("not writing --json {}", path.display()))
        });
    }
    if let Some(guard) = interrupt {
        guard.committing();
    }
    f.commit()?;
    Ok(())
}

#[derive(Serialize)]
struct EncoderInfo {
    template: String,
    aggregation: String,
    /// The model's own offset weight (what `--method relbert` scores), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    offset_weight: Option<f32>,
    weights_sha256: String,
    /// The number format the vectors were computed at (`--dtype`).
    dtype: relbert::Dtype,
}

impl From<EncoderIdentity> for EncoderInfo {
    fn from(id: EncoderIdentity) -> Self {
        EncoderInfo {
            template: id.template,
            aggregation: id.aggregation,
            offset_weight: id.offset_weight,
            weights_sha256: id.weights_sha256,
            dtype: id.dtype,
        }
    }
}

/// A dataset file a report's figures come from: a dataset folder's name says nothing of
/// which copy or version of the file was scored, its path and hash do.
#[derive(Clone, Serialize)]
struct DatasetFile {
    /// The file's path, made absolute where it can be.
    path: String,
    /// The records read from it (questions, or labelled pairs; blank lines and a header are
    /// none).
    rows: usize,
    /// sha256 of the file's bytes.
    sha256: String,
}

impl DatasetFile {
    /// The file at `path`, of which `rows` records were read. Hashed right after it was
    /// read, before the minutes of embedding in which it could be replaced.
    fn of(path: &Path, rows: usize) -> Result<DatasetFile> {
        use sha2::{Digest, Sha256};
        let hash_error = || format!("hashing dataset file {}", path.display());
        let mut f = std::fs::File::open(path).with_context(hash_error)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut f, &mut hasher).with_context(hash_error)?;
        let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(DatasetFile {
            path: shown.display().to_string(),
            rows,
            sha256: format!("{:x}", hasher.finalize()),
        })
    }
}

/// The `--data` directory as a report names it: absolute where it can be, as the model's
/// path is.
fn data_dir_shown(data: &Path) -> String {
    std::fs::canonicalize(data)
        .unwrap_or_else(|_| data.to_path_buf())
        .display()
        .to_string()
}

/// The line above a table naming what it scores: the model directory's name, the first 12
/// hex digits of its weights' sha256, the method and the split. Without it a table pasted
/// on its own (or two runs' tables side by side) did not say which model gave the figures.
fn caption(enc: &RelationEncoder, identity: &EncoderIdentity, method: &str, split: &str) -> String {
    // The name as given (`models/relbert-minilm`), else the resolved folder's (`.`).
    let name = enc
        .dir()
        .file_name()
        .or_else(|| Path::new(&identity.model).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| identity.model.clone());
    let sha: String = identity.weights_sha256.chars().take(12).collect();
    format!(
        "model {} (weights sha256 {sha}), method {method}, split {}",
        cell(&name),
        cell(split)
    )
}

/// The method as a caption names it: with the offset weight where one applies (`--method
/// combined`'s, or the model's own under `--method relbert`).
fn method_shown(method: Method, model_weight: Option<f32>, combined_weight: f32) -> String {
    match (method, model_weight) {
        (Method::Relbert, Some(w)) => format!("relbert (the model's offset weight {w})"),
        (Method::Combined, _) => format!("combined (offset weight {combined_weight})"),
        _ => method.name().to_string(),
    }
}

/// One dataset's analogy figures in the report: the accuracy fields as they always were, at
/// the top level of the entry, and beside them the file scored and the notes said of it.
#[derive(Serialize)]
struct AnalogyResult {
    #[serde(flatten)]
    accuracy: Accuracy,
    /// The `<split>.jsonl` file scored.
    file: DatasetFile,
    /// The notes and warnings said of this dataset on standard error (its questions shared
    /// with a validation split), so that the report alone tells them.
    notes: Vec<String>,
}

#[derive(Serialize)]
struct AnalogyReport {
    /// The relbert version that wrote the report.
    relbert_version: &'static str,
    model: String,
    encoder: EncoderInfo,
    /// The `--data` directory the datasets were read from.
    data: String,
    method: &'static str,
    /// Only with `method: combined`.
    #[serde(skip_serializing_if = "Option::is_none")]
    offset_weight: Option<f32>,
    distance: &'static str,
    reverse_pair: bool,
    bi_direction: bool,
    distinct_pairs: usize,
    embed_seconds: f64,
    results: BTreeMap<String, AnalogyResult>,
}

/// Vectors for `pairs` under `method`: the model's pair vectors, unit offset vectors, or the
/// prompt vectors' weighted concatenation with the offsets ([`relbert::analogy::combine`]).
fn pair_vectors(
    enc: &RelationEncoder,
    pairs: &[Pair],
    method: Method,
    offset_weight: f32,
) -> Result<HashMap<Pair, Vec<f32>>> {
    let pb = Progress::pairs(pairs.len() as u64, "embedding");
    let progress = |n: usize| pb.set_position(n as u64);
    let vectors = match method {
        Method::Relbert => enc.embed_raw_with_progress(pairs, &progress)?,
        Method::Offset => enc.offsets_with_progress(pairs, &progress)?,
        Method::Combined => enc.embed_combined_with_progress(pairs, offset_weight, &progress)?,
    };
    pb.finish();
    Ok(pairs.iter().cloned().zip(vectors).collect())
}

fn analogy(a: AnalogyArgs) -> Result<()> {
    // The command line first (status 2), before any file is read.
    if a.offset_weight.is_some() && a.method != Method::Combined {
        return Err(super::usage(format!(
            "--offset-weight applies only to --method combined (not --method {})",
            a.method.name()
        )));
    }
    check_name("--split", &a.split)?;
    dataset_names(&a.dataset)?;
    let interrupt = check_report_path(a.json.as_deref(), a.force)?;
    // After the handler holding the lock, so that it is dropped (removed) before the lock is
    // released.
    let report_file = start_report(a.json.as_deref(), a.force, interrupt.as_ref())?;
    check_data_dir(&a.data, ANALOGY_DATA)?;
    let sets = select(
        &a.dataset,
        &a.data,
        || {
            // `all` means every analogy set: a folder whose split holds other records (the
            // SemEval relations beside the analogy sets) is passed over with a note; named
            // with --dataset, the same folder is an error naming its line.
            let found = analogy_datasets(&a.data, &a.split)?;
            for (name, path, why) in &found.skipped {
                relbert::say!(
                    "note: skipping {name} ({}): not an analogy dataset ({why})",
                    path.display()
                );
            }
            Ok(found.sets)
        },
        |n| a.data.join(n).join(format!("{}.jsonl", a.split)),
        || {
            let found = splits_under(&a.data);
            format!(
                "no analogy dataset with the split {:?} (<name>/{}.jsonl) under {}; {}",
                a.split,
                a.split,
                a.data.display(),
                if found.is_empty() {
                    "no split files (<name>/<split>.jsonl) are there at all".to_string()
                } else {
                    format!("the splits found there: {}", found.join(", "))
                }
            )
        },
    )?;
    let mut loaded: Vec<(String, Vec<AnalogyQuestion>)> = Vec::new();
    // Each dataset's file, as the report names it.
    let mut dataset_files: HashMap<String, DatasetFile> = HashMap::new();
    for (name, path) in &sets {
        if !path.exists() {
            let splits = splits_under_one(&a.data.join(name));
            bail!(
                "--split {:?}: dataset {name} has no {} ({})",
                a.split,
                path.display(),
                if splits.is_empty() {
                    "it holds no <split>.jsonl files".to_string()
                } else {
                    format!("its splits: {}", splits.join(", "))
                }
            );
        }
        let qs = load_analogy_file(path)
            .with_context(|| format!("reading dataset {name} ({})", path.display()))?;
        dataset_files.insert(name.clone(), DatasetFile::of(path, qs.len())?);
        loaded.push((name.clone(), qs));
    }
    // Each dataset's notes, said as they are found and kept for the report.
    let mut notes: HashMap<String, Vec<String>> = if a.split != "validation" {
        note_validation_overlap(&a.data, &loaded)
    } else {
        HashMap::new()
    };
    let mut table = table_writer(a.json.as_deref());
    let opts = ScoreOptions {
        similarity: match a.distance {
            Distance::Cosine => Similarity::Cosine,
            Distance::Euclidean => Similarity::Euclidean,
        },
        reverse_pair: a.reverse_pair,
        bi_direction: a.bi_direction,
    };
    let offset_weight = a.offset_weight.unwrap_or(0.5);
    let pairs = opts.pairs_needed(loaded.iter().flat_map(|(_, q)| q));
    warn_unaskable(
        sets.iter().zip(&loaded).flat_map(|((_, path), (_, qs))| {
            qs.iter().flat_map(move |q| {
                std::iter::once(&q.stem)
                    .chain(&q.choice)
                    .map(move |p| (p, path.as_path(), q.line))
            })
        }),
        "the pair is scored as it is: such words can share one vector, and a question \
         between them is then decided by a tie, which the first choice wins",
    );
    let enc = a.model.load(false)?;
    // Hashed now, from the files just loaded (and kept): a model folder a training run is
    // still saving into may be replaced while the pairs are encoded, and an identity first
    // asked after that is refused (found by a review).
    let identity = enc.identity()?;
    relbert::embed::warn_unknown_words(
        &enc,
        sets.iter().zip(&loaded).flat_map(|((_, path), (_, qs))| {
            qs.iter().flat_map(move |q| {
                std::iter::once(&q.stem)
                    .chain(&q.choice)
                    .map(move |(h, t)| (h.as_str(), t.as_str(), path.as_path(), q.line))
            })
        }),
        "the pair is scored as it is, and a question between such pairs is decided by a tie, \
         which the first choice wins",
    );
    let files: HashMap<&str, &Path> = sets
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_path()))
        .collect();
    // The file and line of the first question holding a pair (or its reverse).
    let locate = |p: &Pair| {
        let r = relbert::analogy::reversed(p);
        loaded.iter().find_map(|(name, qs)| {
            let q = qs.iter().find(|q| {
                std::iter::once(&q.stem)
                    .chain(&q.choice)
                    .any(|c| *c == *p || *c == r)
            })?;
            Some((files.get(name.as_str())?.to_path_buf(), q.line))
        })
    };
    // The offset baseline encodes bare words, never a prompt: no prompt is too long for it.
    if a.method != Method::Offset {
        refuse_overlong(&enc, &pairs, locate)?;
    }
    let started = Instant::now();
    let vectors = pair_vectors(&enc, &pairs, a.method, offset_weight)
        .context("embedding the questions' pairs")?;
    let embed_seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        "embedded {} distinct pairs ({}) in {:.1}s",
        super::progress::group(pairs.len() as u64),
        a.method.name(),
        embed_seconds
    );
    let weight = match a.method {
        Method::Relbert => enc.offset_weight(),
        Method::Offset => None,
        Method::Combined => Some(offset_weight),
    };
    if a.method != Method::Relbert || weight.is_some() {
        warn_no_offset(&pairs, &vectors, weight, locate);
    }
    if a.distance == Distance::Euclidean && !a.bi_direction {
        warn_euclidean_is_cosine(&vectors, a.method);
    }
    let mut results = BTreeMap::new();
    let method = method_shown(a.method, enc.offset_weight(), offset_weight);
    writeln!(table, "{}", caption(&enc, &identity, &method, &a.split))?;
    writeln!(table)?;
    writeln!(table, "| dataset | split | questions | accuracy |")?;
    writeln!(table, "|---|---|---:|---:|")?;
    for (name, qs) in &loaded {
        let acc = accuracy_with_options(qs, &vectors, opts);
        writeln!(
            table,
            "| {} | {} | {} | {:.1} |",
            cell(name),
            cell(&a.split),
            acc.n,
            100.0 * acc.accuracy
        )?;
        let file = dataset_files
            .remove(name)
            .with_context(|| format!("internal: no file recorded for dataset {name}"))?;
        results.insert(
            format!("{name}/{}", a.split),
            AnalogyResult {
                accuracy: acc,
                file,
                notes: notes.remove(name).unwrap_or_default(),
            },
        );
    }
    if a.breakdown {
        writeln!(table)?;
        writeln!(table, "| dataset | prefix | questions | accuracy |")?;
        writeln!(table, "|---|---|---:|---:|")?;
        for (name, _) in &loaded {
            let Some(scored) = results.get(&format!("{name}/{}", a.split)) else {
                continue;
            };
            for (prefix, c) in &scored.accuracy.by_prefix_counts {
                writeln!(
                    table,
                    "| {} | {} | {} | {:.1} |",
                    cell(name),
                    cell(prefix),
                    c.n,
                    100.0 * (c.right as f64 / c.n as f64)
                )?;
            }
        }
    }
    table.flush()?;
    if let Some(path) = &a.json {
        let report = AnalogyReport {
            relbert_version: env!("CARGO_PKG_VERSION"),
            model: enc.dir().display().to_string(),
            encoder: identity.into(),
            data: data_dir_shown(&a.data),
            method: a.method.name(),
            offset_weight: (a.method == Method::Combined).then_some(offset_weight),
            distance: match a.distance {
                Distance::Cosine => "cosine",
                Distance::Euclidean => "euclidean",
            },
            reverse_pair: a.reverse_pair,
            bi_direction: a.bi_direction,
            distinct_pairs: pairs.len(),
            embed_seconds,
            results,
        };
        write_json(path, &report, report_file, a.force, interrupt.as_ref())?;
    }
    Ok(())
}

/// One dataset's splits, read from its folder.
struct LexicalSet {
    name: String,
    train: Vec<LabelledPair>,
    val: Option<Vec<LabelledPair>>,
    test: Vec<LabelledPair>,
    /// The files read, by split (`train`, `val`, `test`), as the report names them.
    files: BTreeMap<&'static str, DatasetFile>,
}

#[derive(Serialize)]
struct ClassifyResult {
    /// The split the F1 scores are on (`test`): the report names it, as analogy's keys do.
    split: &'static str,
    f1_micro: f64,
    f1_macro: f64,
    n_train: usize,
    n_val: usize,
    n_test: usize,
    classes: Vec<String>,
    validation: &'static str,
    epochs: usize,
    /// The best validation accuracy of any epoch; under the training-loss rule the last
    /// epoch's weights are kept, whose accuracy may be lower (`--protocol reference`: the kept
    /// model's is its grid point's `val_f1_micro`). `null` where there was no validation set.
    best_validation_accuracy: Option<f64>,
    /// Whether the stopping rule ended training; `false`: it ran to its epoch cap still
    /// improving (scikit-learn's `ConvergenceWarning`), which a warning said.
    converged: bool,
    /// How many classes the test predictions hold: 1 is a classifier that told nothing
    /// apart (every test pair one class), which a warning said.
    predicted_classes: usize,
    /// The files read, by split (`train`, `val` where there is one, `test`).
    files: BTreeMap<&'static str, DatasetFile>,
    /// The warnings said of this dataset on standard error (labels never seen in training,
    /// training that did not converge, a single predicted class), so that the report alone
    /// tells them.
    notes: Vec<String>,
    /// The learning rate and hidden units of the classifier scored (the grid search's choice
    /// under `--protocol reference` with val.tsv).
    learning_rate: f64,
    hidden: usize,
    /// Every training of `--protocol reference`'s grid search, in grid order (absent
    /// otherwise, and where there is no val.tsv to search on).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    grid: Vec<GridPoint>,
}

/// What `bench classify` trains and how, for the line above its table and the report's
/// `protocol`: the default is not the RelBERT reference's protocol (see
/// [`relbert::classify`]), and figures compared with the reference's need to say so.
#[derive(Serialize)]
struct ClassifyProtocol {
    /// The feature vector of a pair (a, b).
    features: &'static str,
    /// How the relation vectors are scaled before they are used (or concatenated).
    scaling: &'static str,
    /// The stopping rule.
    stopping: Stopping,
    /// Which epoch's weights are kept.
    weights_kept: &'static str,
    /// What the stopping rule is judged on, and what is trained on.
    validation: &'static str,
    /// Width of the hidden layer.
    hidden: usize,
    /// Adam learning rate.
    learning_rate: f64,
    /// Most epochs.
    max_epochs: usize,
    /// The `--seed`.
    seed: u64,
    /// `--protocol reference`'s search where a dataset has val.tsv: (learning rate, hidden
    /// units) in the order tried; `hidden` and `learning_rate` above are then the setting of
    /// the datasets without val.tsv.
    #[serde(skip_serializing_if = "Option::is_none")]
    grid: Option<Vec<(f64, usize)>>,
    /// How this differs from the reference's `evaluate_classification`, each with the flag
    /// that removes the difference where there is one.
    differs_from_reference: Vec<String>,
}

impl ClassifyProtocol {
    /// The protocol of a run with `cfg`, on features with the reverse pair's vector or not;
    /// `reference`: `--protocol reference`; `offset_weight`: the model's, whose vectors are
    /// unit-length combinations with no raw form.
    fn new(
        cfg: &MlpConfig,
        concat_reverse: bool,
        reference: bool,
        offset_weight: Option<f32>,
    ) -> ClassifyProtocol {
        let rng = "the seed drives another random generator than numpy's, so even seed 0 gives \
                   other initial weights and batch orders than the reference's random_state=0 \
                   (no flag)"
            .to_string();
        let numerics = "float32 arithmetic and, for two classes, a softmax over two outputs; \
                        scikit-learn trains in float64 with one logistic output (no flag)"
            .to_string();
        if reference {
            let mut differs = vec![numerics, rng];
            let scaling = match offset_weight {
                Some(w) => {
                    differs.insert(
                        0,
                        format!(
                            "the model's pair vectors combine its relation vectors with \
                             word-vector offsets (offset_weight {w} in its relbert_config), \
                             unit length, which have no raw form; the reference's models have \
                             relation vectors alone (no flag: a model without offset_weight)"
                        ),
                    );
                    "unit-length combinations with word-vector offsets (the model's \
                     offset_weight; no raw form)"
                }
                None => "raw relation vectors (as the model pools them)",
            };
            return ClassifyProtocol {
                features: "[v(a,b); v(b,a)]",
                scaling,
                stopping: Stopping::TrainingLoss,
                weights_kept: "last epoch",
                validation: "all of train.tsv trained on; val.tsv, where there is one, \
                             chooses learning rate and hidden units (best micro-F1)",
                hidden: cfg.hidden,
                learning_rate: cfg.learning_rate,
                max_epochs: cfg.max_epochs,
                seed: cfg.seed,
                grid: Some(reference_grid()),
                differs_from_reference: differs,
            };
        }
        let validation_accuracy = cfg.stopping == Stopping::ValidationAccuracy;
        let mut differs = Vec::new();
        if !concat_reverse {
            differs.push(
                "features are v(a,b) alone; the reference concatenates [v(a,b); v(b,a)] \
                 (--concat-reverse)"
                    .to_string(),
            );
        }
        differs.push(
            "each relation vector is scaled to unit length; the reference uses them raw \
             (--protocol reference)"
                .to_string(),
        );
        if validation_accuracy {
            differs.push(
                "early stopping on validation accuracy (val.tsv, else 10% of train.tsv held \
                 out), best epoch kept; the reference trains on all of train.tsv with \
                 scikit-learn's default training-loss rule, last epoch kept (--stop-on \
                 train-loss)"
                    .to_string(),
            );
        }
        differs.push(format!(
            "learning rate {} and {} hidden units, fixed; where a dataset has val.tsv the \
             reference grid-searches learning rate {{1e-3, 1e-4, 1e-5}} x hidden units \
             {{100, 150, 200}} and keeps the best validation micro-F1 (--protocol reference)",
            cfg.learning_rate, cfg.hidden
        ));
        differs.push(numerics);
        differs.push(rng);
        ClassifyProtocol {
            features: if concat_reverse {
                "[v(a,b); v(b,a)]"
            } else {
                "v(a,b)"
            },
            scaling: "each relation vector unit length",
            stopping: cfg.stopping,
            weights_kept: if validation_accuracy {
                "best validation epoch"
            } else {
                "last epoch"
            },
            validation: if validation_accuracy {
                "val.tsv, else 10% of train.tsv held out (stratified by label)"
            } else {
                "none: all of train.tsv trained on (val.tsv, where there is one, only reported)"
            },
            hidden: cfg.hidden,
            learning_rate: cfg.learning_rate,
            max_epochs: cfg.max_epochs,
            seed: cfg.seed,
            grid: None,
            differs_from_reference: differs,
        }
    }

    /// The one line above the table naming the setup.
    fn line(&self) -> String {
        let rule = match self.stopping {
            Stopping::ValidationAccuracy => "early stopping on validation accuracy",
            Stopping::TrainingLoss => "stopping on training loss",
        };
        let mlp = match &self.grid {
            Some(_) => format!(
                "MLP whose learning rate and hidden units are chosen by validation micro-F1 \
                 from {{1e-3, 1e-4, 1e-5}} x {{100, 150, 200}} (without val.tsv: {} hidden \
                 units, learning rate {})",
                self.hidden, self.learning_rate
            ),
            None => format!(
                "MLP of {} hidden units, learning rate {}",
                self.hidden, self.learning_rate
            ),
        };
        format!(
            "setup: features {}, {}; {mlp}, at most {} epochs, {rule} ({} kept); seed {}; {} \
             difference(s) from the RelBERT reference (the report's protocol, docs/bench.md)",
            self.features,
            self.scaling,
            self.max_epochs,
            self.weights_kept,
            self.seed,
            self.differs_from_reference.len()
        )
    }
}

#[derive(Serialize)]
struct ClassifyReport {
    /// The relbert version that wrote the report.
    relbert_version: &'static str,
    model: String,
    encoder: EncoderInfo,
    /// The `--data` directory the datasets were read from.
    data: String,
    features: &'static str,
    /// The setup, and how it differs from the RelBERT reference's.
    protocol: ClassifyProtocol,
    /// The MLP settings every dataset shares ([`mlp_report`]).
    mlp: serde_json::Value,
    distinct_pairs: usize,
    embed_seconds: f64,
    results: BTreeMap<String, ClassifyResult>,
}

/// The report's `mlp`: the settings of every dataset's MLP. Under `--protocol reference` the
/// learning rate and hidden width are chosen per dataset (each result's `learning_rate` and
/// `hidden`), so they are null here rather than the base setting's, which a reader took for
/// the one scored.
fn mlp_report(cfg: &MlpConfig, per_dataset: bool) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(cfg)?;
    if per_dataset {
        v["learning_rate"] = serde_json::Value::Null;
        v["hidden"] = serde_json::Value::Null;
    }
    Ok(v)
}

fn classify(mut a: ClassifyArgs) -> Result<()> {
    let reference = a.protocol == Protocol::Reference;
    if reference {
        let given = match (a.concat_reverse, a.stop_on) {
            (true, _) => Some("--concat-reverse"),
            (false, Some(_)) => Some("--stop-on"),
            (false, None) => None,
        };
        if let Some(flag) = given {
            return Err(super::usage(format!(
                "the argument '--protocol reference' cannot be used with '{flag}': it sets \
                 the features ([v(a,b); v(b,a)]) and the stopping rule (training loss) itself"
            )));
        }
        a.concat_reverse = true;
        a.stop_on = Some(StopOn::TrainLoss);
    }
    dataset_names(&a.dataset)?;
    let interrupt = check_report_path(a.json.as_deref(), a.force)?;
    // After the handler holding the lock, so that it is dropped (removed) before the lock is
    // released.
    let report_file = start_report(a.json.as_deref(), a.force, interrupt.as_ref())?;
    check_data_dir(&a.data, CLASSIFY_DATA)?;
    let sets = select(
        &a.dataset,
        &a.data,
        || lexical_datasets(&a.data),
        |n| a.data.join(n),
        || {
            format!(
                "no classification dataset (a folder holding train.tsv and test.tsv) under {}",
                a.data.display()
            )
        },
    )?;
    let mut table = table_writer(a.json.as_deref());
    let mut data = Vec::new();
    for (name, dir) in &sets {
        let read = |split: &str| {
            let p = dir.join(format!("{split}.tsv"));
            load_lexical_file(&p).with_context(|| format!("reading dataset {name} ({split})"))
        };
        let val_path = dir.join("val.tsv");
        let train = read("train")?;
        // Only a val.tsv that is not there at all is "none": a folder or a broken link
        // there is the user's mistake, named by the read's error, not a silent hold-out.
        let val = if std::fs::symlink_metadata(&val_path).is_ok() {
            Some(read("val")?)
        } else {
            None
        };
        let test = read("test")?;
        let mut files = BTreeMap::new();
        files.insert(
            "train",
            DatasetFile::of(&dir.join("train.tsv"), train.len())?,
        );
        if let Some(v) = &val {
            files.insert("val", DatasetFile::of(&val_path, v.len())?);
        }
        files.insert("test", DatasetFile::of(&dir.join("test.tsv"), test.len())?);
        data.push(LexicalSet {
            name: name.clone(),
            train,
            val,
            test,
            files,
        });
    }
    // Every distinct pair of every split (and its reverse when asked), embedded once.
    let mut seen = std::collections::HashSet::new();
    let mut pairs: Vec<Pair> = Vec::new();
    for set in &data {
        let all = set
            .train
            .iter()
            .chain(set.val.iter().flatten())
            .chain(&set.test);
        for lp in all {
            let (h, t) = &lp.pair;
            let mut push = |p: Pair| {
                if seen.insert(p.clone()) {
                    pairs.push(p);
                }
            };
            push(lp.pair.clone());
            if a.concat_reverse {
                push((t.clone(), h.clone()));
            }
        }
    }
    // Every split file read, in the order train, val, test, with its rows.
    let files: Vec<(PathBuf, &[LabelledPair])> = sets
        .iter()
        .zip(&data)
        .flat_map(|((_, dir), set)| {
            [
                ("train", Some(&set.train)),
                ("val", set.val.as_ref()),
                ("test", Some(&set.test)),
            ]
            .into_iter()
            .filter_map(move |(split, rows)| {
                Some((dir.join(format!("{split}.tsv")), rows?.as_slice()))
            })
        })
        .collect();
    warn_unaskable(
        files.iter().flat_map(|(path, rows)| {
            rows.iter()
                .map(move |lp| (&lp.pair, path.as_path(), lp.line))
        }),
        "the pair is classified as it is: such words can share one vector, which no \
         classifier can tell apart",
    );
    let enc = a.model.load(false)?;
    // Hashed now, from the files just loaded (and kept): a model folder a training run is
    // still saving into may be replaced while the pairs are encoded, and an identity first
    // asked after that is refused (found by a review).
    let identity = enc.identity()?;
    relbert::embed::warn_unknown_words(
        &enc,
        files.iter().flat_map(|(path, rows)| {
            rows.iter().map(move |lp| {
                (
                    lp.pair.0.as_str(),
                    lp.pair.1.as_str(),
                    path.as_path(),
                    lp.line,
                )
            })
        }),
        "the pair is classified as it is, though no classifier can tell such pairs apart",
    );
    // The file and line of the first row holding a pair (or its reverse).
    let locate = |p: &Pair| {
        let r = relbert::analogy::reversed(p);
        files.iter().find_map(|(path, rows)| {
            let lp = rows.iter().find(|lp| lp.pair == *p || lp.pair == r)?;
            Some((path.clone(), lp.line))
        })
    };
    refuse_overlong(&enc, &pairs, locate)?;
    let started = Instant::now();
    let pb = Progress::pairs(pairs.len() as u64, "embedding");
    let vecs = enc
        .embed_raw_with_progress(&pairs, &|n| pb.set_position(n as u64))
        .context("embedding the classification pairs")?;
    pb.finish();
    let embed_seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        "embedded {} distinct pairs in {:.1}s",
        super::progress::group(pairs.len() as u64),
        embed_seconds
    );
    let vectors: HashMap<Pair, Vec<f32>> = pairs
        .iter()
        .cloned()
        .zip(vecs.into_iter().map(|mut v| {
            // The reference classifies the vectors as the model pools them.
            if !reference {
                relbert::pooling::normalize_in_place(&mut v);
            }
            v
        }))
        .collect();
    if let Some(w) = enc.offset_weight() {
        warn_no_offset(&pairs, &vectors, Some(w), locate);
    }
    let features = |rows: &[LabelledPair]| -> Vec<Vec<f32>> {
        rows.iter()
            .map(|lp| {
                let (h, t) = &lp.pair;
                let mut f = vectors.get(&lp.pair).cloned().unwrap_or_default();
                if a.concat_reverse {
                    if let Some(r) = vectors.get(&(t.clone(), h.clone())) {
                        f.extend_from_slice(r);
                    }
                }
                f
            })
            .collect()
    };
    let cfg = MlpConfig {
        seed: a.seed,
        stopping: match a.stop_on.unwrap_or(StopOn::ValAccuracy) {
            StopOn::ValAccuracy => Stopping::ValidationAccuracy,
            StopOn::TrainLoss => Stopping::TrainingLoss,
        },
        ..Default::default()
    };
    let protocol = ClassifyProtocol::new(&cfg, a.concat_reverse, reference, enc.offset_weight());
    let mut results = BTreeMap::new();
    // Classification always scores the model's own pair vectors on test.tsv.
    let method = method_shown(Method::Relbert, enc.offset_weight(), 0.0);
    writeln!(table, "{}", caption(&enc, &identity, &method, "test"))?;
    writeln!(table, "{}", protocol.line())?;
    writeln!(table)?;
    writeln!(
        table,
        "| dataset | train | val | test | classes | epochs | micro-F1 | macro-F1 |"
    )?;
    writeln!(table, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for set in &data {
        // The warnings said of this dataset, for the report.
        let mut notes: Vec<String> = Vec::new();
        // Every label of the three files, sorted: what the report lists and scores.
        let classes: Vec<String> = {
            let mut c: Vec<String> = set
                .train
                .iter()
                .chain(set.val.iter().flatten())
                .chain(&set.test)
                .map(|lp| lp.label.clone())
                .collect();
            c.sort();
            c.dedup();
            c
        };
        let (train, val, validation): (Vec<LabelledPair>, Vec<LabelledPair>, _) = match &set.val {
            Some(v) if reference => (
                set.train.clone(),
                v.clone(),
                "val.tsv (chooses learning rate and hidden units by micro-F1)",
            ),
            Some(v) => (set.train.clone(), v.clone(), "val.tsv"),
            // scikit-learn's default rule reads no validation set: every row trains.
            None if reference => (
                set.train.clone(),
                Vec::new(),
                "none (no val.tsv: scikit-learn's defaults, all of train.tsv trained on)",
            ),
            None if cfg.stopping == Stopping::TrainingLoss => (
                set.train.clone(),
                Vec::new(),
                "none (--stop-on train-loss trains on all of train.tsv)",
            ),
            None => {
                // By label, so that a small class keeps rows in training.
                let by_label: Vec<usize> = set
                    .train
                    .iter()
                    .map(|lp| classes.binary_search(&lp.label).unwrap_or(0))
                    .collect();
                let (keep, held) = holdout_split(&by_label, 0.1, a.seed);
                (
                    keep.iter().map(|&i| set.train[i].clone()).collect(),
                    held.iter().map(|&i| set.train[i].clone()).collect(),
                    "10% of train.tsv held out",
                )
            }
        };
        // The classifier has an output for each label it trains on and no other, as
        // scikit-learn's `MLPClassifier` takes its classes from the training labels: those
        // come first (0..trained), the labels only validation or test rows carry after them,
        // so such a row is always a miss. Outputs for every label of the three files let an
        // epoch chosen on validation predict a label no training row has, which inflated F1.
        let seen: std::collections::BTreeSet<&str> =
            train.iter().map(|lp| lp.label.as_str()).collect();
        let trained = seen.len();
        // The labels in the classifier's order: its outputs' first, then the others.
        let order: Vec<&str> = seen
            .iter()
            .copied()
            .chain(
                classes
                    .iter()
                    .map(String::as_str)
                    .filter(|l| !seen.contains(l)),
            )
            .collect();
        let index_of: std::collections::HashMap<&str, usize> =
            order.iter().enumerate().map(|(i, &l)| (l, i)).collect();
        let labels = |rows: &[LabelledPair]| {
            rows.iter()
                .map(|lp| index_of.get(lp.label.as_str()).copied().unwrap_or(trained))
                .collect::<Vec<_>>()
        };
        // Labels the classifier never sees in training cannot be predicted, so their rows
        // are all misses. Scored as scikit-learn scores them, but said, since a typo in a
        // label or a class missing from train.tsv otherwise only shows as a low F1.
        for (rows, what, effect) in [
            (&set.test, "test", "so their test pairs count as errors"),
            (
                &val,
                "validation",
                if reference {
                    "so their validation pairs count as misses when the learning rate and \
                     hidden units are chosen"
                } else if cfg.stopping == Stopping::TrainingLoss {
                    "so their validation pairs count as misses in the validation accuracy \
                     reported (it chooses nothing under the training-loss rule)"
                } else {
                    "so their validation pairs count as misses when the epoch to keep is chosen"
                },
            ),
        ] {
            let unseen: std::collections::BTreeSet<&str> = rows
                .iter()
                .map(|lp| lp.label.as_str())
                .filter(|l| !seen.contains(l))
                .collect();
            if !unseen.is_empty() {
                let names: Vec<&str> = unseen.into_iter().collect();
                let note = format!(
                    "{what} label(s) never seen in training: {}; the classifier cannot predict \
                     them, {effect}",
                    names.join(", ")
                );
                tracing::warn!("{}: {note}", set.name);
                notes.push(note);
            }
        }
        let (train_x, train_y) = (features(&train), labels(&train));
        let (val_x, val_y) = (features(&val), labels(&val));
        // One training with `cfg`; `what` names it on the display.
        let train_one = |cfg: &MlpConfig, what: &str| -> Result<(Mlp, TrainReport)> {
            // Epochs up to the most there can be: training usually stops early, when the
            // display's last line says how many ran.
            let pb = Progress::new(cfg.max_epochs as u64, &format!("training {what}"), "epochs");
            let (mlp, report) = Mlp::train_with_progress(
                &train_x,
                &train_y,
                &val_x,
                &val_y,
                trained,
                cfg,
                &mut |r| {
                    // The loss has no place on the shared display's line; asked for, it is
                    // logged.
                    tracing::debug!(
                        "{what}: epoch {}, loss {:.4}, best validation accuracy {:.4}",
                        r.epochs,
                        r.final_loss,
                        r.best_validation_accuracy
                    );
                    pb.set_position(r.epochs as u64);
                },
            )
            .with_context(|| format!("training the classifier for {}", set.name))?;
            if report.epochs < cfg.max_epochs {
                pb.finish_early(&stopped_early(cfg));
            } else {
                pb.finish();
            }
            Ok((mlp, report))
        };
        // The reference's grid search where there is val.tsv: each setting trained on all of
        // train.tsv, the first best validation micro-F1 kept.
        let mut grid = Vec::new();
        let (cfg, mlp, report) = if reference && !val.is_empty() {
            let mut trained_all: Vec<(MlpConfig, Mlp, TrainReport)> = Vec::new();
            for (learning_rate, hidden) in reference_grid() {
                let point = MlpConfig {
                    learning_rate,
                    hidden,
                    ..cfg.clone()
                };
                let what = format!(
                    "{} (learning rate {learning_rate}, {hidden} hidden units)",
                    set.name
                );
                let (mlp, report) = train_one(&point, &what)?;
                let val_f1 = f1_scores(&val_y, &mlp.predict(&val_x)?).micro;
                grid.push(GridPoint {
                    learning_rate,
                    hidden,
                    epochs: report.epochs,
                    converged: report.converged,
                    val_f1_micro: val_f1,
                });
                trained_all.push((point, mlp, report));
            }
            let scores: Vec<f64> = grid.iter().map(|g| g.val_f1_micro).collect();
            // The reference's grid is not empty.
            let chosen =
                first_best(&scores).context("the reference grid search tried no setting")?;
            let val_f1 = scores[chosen];
            let capped: Vec<String> = grid
                .iter()
                .enumerate()
                .filter(|&(i, g)| i != chosen && !g.converged)
                .map(|(_, g)| {
                    format!(
                        "learning rate {}, {} hidden units",
                        g.learning_rate, g.hidden
                    )
                })
                .collect();
            if !capped.is_empty() {
                // The chosen one is warned of below, as any scored training.
                let note = format!(
                    "{} of the grid's other settings ran to the cap of {} epochs with the \
                     training loss still falling (scikit-learn's ConvergenceWarning): {}",
                    capped.len(),
                    cfg.max_epochs,
                    capped.join("; ")
                );
                tracing::warn!("{}: {note}", set.name);
                notes.push(note);
            }
            let (point, mlp, report) = trained_all.swap_remove(chosen);
            tracing::info!(
                "{}: the grid search on val.tsv chose learning rate {}, {} hidden units \
                 (validation micro-F1 {val_f1:.3})",
                set.name,
                point.learning_rate,
                point.hidden
            );
            (point, mlp, report)
        } else {
            let (mlp, report) = train_one(&cfg, &set.name)?;
            (cfg.clone(), mlp, report)
        };
        if !report.converged {
            let note = not_converged(&cfg);
            tracing::warn!("{}: {note}", set.name);
            notes.push(note);
        }
        let pred = mlp.predict(&features(&set.test))?;
        let truth = labels(&set.test);
        let f1 = f1_scores(&truth, &pred);
        let predicted_classes = class_count(&pred);
        if let Some(only) = single_predicted_class(&truth, &pred) {
            let class = order.get(only).copied().unwrap_or("?");
            let note = single_class_note(class, trained, &cfg, a.concat_reverse);
            tracing::warn!("{}: {note}", set.name);
            notes.push(note);
        }
        writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {:.3} | {:.3} |",
            cell(&set.name),
            train.len(),
            val.len(),
            set.test.len(),
            classes.len(),
            report.epochs,
            f1.micro,
            f1.macro_
        )?;
        results.insert(
            set.name.clone(),
            ClassifyResult {
                split: "test",
                f1_micro: f1.micro,
                f1_macro: f1.macro_,
                n_train: train.len(),
                n_val: val.len(),
                n_test: set.test.len(),
                classes,
                validation,
                epochs: report.epochs,
                best_validation_accuracy: Some(report.best_validation_accuracy)
                    .filter(|v| v.is_finite()),
                converged: report.converged,
                predicted_classes,
                files: set.files.clone(),
                notes,
                learning_rate: cfg.learning_rate,
                hidden: cfg.hidden,
                grid,
            },
        );
    }
    table.flush()?;
    if let Some(path) = &a.json {
        let report = ClassifyReport {
            relbert_version: env!("CARGO_PKG_VERSION"),
            model: enc.dir().display().to_string(),
            encoder: identity.into(),
            data: data_dir_shown(&a.data),
            protocol,
            features: if reference && enc.offset_weight().is_none() {
                "[v(a,b); v(b,a)]"
            } else if a.concat_reverse {
                "[unit v(a,b); unit v(b,a)]"
            } else {
                "unit v(a,b)"
            },
            mlp: mlp_report(&cfg, reference)?,
            distinct_pairs: pairs.len(),
            embed_seconds,
            results,
        };
        write_json(path, &report, report_file, a.force, interrupt.as_ref())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grid search keeps what the reference's stable `sorted(…, reverse=True)[0]` keeps:
    /// of equal best scores, the setting tried first.
    #[test]
    fn the_first_best_score_is_kept_as_the_reference_keeps_it() {
        assert_eq!(first_best(&[0.5, 0.7, 0.7, 0.6]), Some(1));
        assert_eq!(first_best(&[0.1, 0.2, 0.3]), Some(2));
        assert_eq!(first_best(&[0.9]), Some(0));
        assert_eq!(first_best(&[]), None);
    }
}
