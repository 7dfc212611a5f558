//! Subcommand definitions and dispatch.

mod average;
mod bench;
mod embed;
mod export;
mod index;
mod interrupt;
mod pairs;
mod progress;
mod query;
mod serve;
mod train;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::builder::{OsStringValueParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
pub use progress::Progress;
use relbert::device::parse_device;
use relbert::pooling::Aggregation;
use relbert::{EncoderOptions, RelationEncoder};

/// RelBERT relation embeddings: word pair in, relation vector out.
#[derive(Parser, Debug)]
#[command(name = "relbert", version, about)]
pub struct Cli {
    /// Worker threads for tokenisation and matrix work (default: all cores; at most 4 × the
    /// cores, or 16 when that is more).
    #[arg(long, global = true, value_parser = thread_count)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Embed word pairs into relation vectors.
    Embed(embed::EmbedArgs),
    /// Mine candidate relation pairs from a corpus.
    #[command(subcommand)]
    Pairs(pairs::PairsCommand),
    /// Build or inspect a relation index.
    #[command(subcommand)]
    Index(index::IndexCommand),
    /// A is to B as ? is to ?: nearest pairs by relation, from an index.
    // Written out: clap's own usage for one or two values reads `[A] [B]...`, as if any
    // number of words could follow.
    #[command(override_usage = "relbert query [OPTIONS] [A B | A:B | -]")]
    Query(query::QueryArgs),
    /// Evaluate a model: analogy questions and lexical relation classification.
    Bench(bench::BenchArgs),
    /// Fine-tune a base model into a RelBERT model (contrastive training on SemEval-2012).
    Train(train::TrainArgs),
    /// Serve queries over HTTP, with a page at / (see README: relbert serve).
    Serve(serve::ServeArgs),
    /// Average the weights of several checkpoints of one model into a new model.
    Average(average::AverageArgs),
}

/// Options shared by every command that loads a model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json), or a Hugging Face
    /// Hub id (org/name[@revision]) found in the local Hub cache (nothing is downloaded).
    /// Default: $RELBERT_MODEL, models/relbert-minilm, then models/all-MiniLM-L6-v2.
    #[arg(long, value_parser = os(model_dir))]
    pub model: Option<PathBuf>,
    /// Prompt template with <subj>, <obj> and <mask> (default: the model's, else the reference's).
    #[arg(long, value_parser = os(template))]
    pub template: Option<String>,
    /// Aggregation: average_no_mask, mask or average (default: the model's, else average_no_mask).
    #[arg(long, value_parser = os(aggregation))]
    pub aggregation: Option<Aggregation>,
    /// Prompts per forward pass (1 to 4096). Default: 64 on the CPU, 512 on a GPU (small
    /// batches leave a GPU waiting on the host).
    #[arg(long, value_parser = batch_size)]
    pub batch_size: Option<usize>,
    /// cpu, or cuda:N with the `cuda` feature.
    #[arg(long, default_value = "cpu", value_parser = os(device))]
    pub device: String,
    /// Number format of the encoder's matrix products: f32, bf16 (fast on CPUs with
    /// AVX512-BF16 and on GPUs) or f16 (GPU); accumulation, LayerNorm, softmax and pooling stay
    /// f32. Default: f32 (`index build`: the format an existing Qdrant collection or a resumed
    /// build records; an index records its format in its encoder identity).
    // An `Option`, so that a value given is told from the default.
    #[arg(long, value_parser = os(dtype))]
    pub dtype: Option<relbert::Dtype>,
}

impl ModelArgs {
    /// The options every flag's default gives (default model, its template and pooling).
    pub fn defaults() -> Self {
        ModelArgs {
            model: None,
            template: None,
            aggregation: None,
            batch_size: None,
            device: "cpu".into(),
            dtype: None,
        }
    }

    /// The model directory to use.
    pub fn model_dir(&self) -> PathBuf {
        self.model
            .clone()
            .unwrap_or_else(relbert::defaults::default_model_dir)
    }

    /// Loads the relation encoder these options describe.
    pub fn load(&self, trainable: bool) -> Result<RelationEncoder> {
        if self.model.is_none() {
            refuse_empty_model_env()?;
        }
        let dir = self.model_dir();
        let device = parse_device(&self.device)?;
        let opts = EncoderOptions {
            template: self.template.clone(),
            aggregation: self.aggregation,
            batch_size: self
                .batch_size
                .unwrap_or_else(|| relbert::device::default_batch_size(&device)),
            device,
            trainable,
            offset_weight: None,
            dtype: self.dtype.unwrap_or(relbert::Dtype::F32),
        };
        let started = std::time::Instant::now();
        let enc = RelationEncoder::load(&dir, &opts).map_err(|e| {
            // Only a default model that is not there is helped by fetching the base model: a
            // directory the user named (by --model or $RELBERT_MODEL) is theirs to fix.
            let missing = matches!(e, relbert::Error::MissingFile { .. }) || !dir.exists();
            let from_env = self.model.is_none() && relbert::defaults::model_env().is_some();
            let hint = if from_env {
                format!(" ($RELBERT_MODEL){}", hub_hint(&dir, missing))
            } else if missing && self.model.is_none() {
                match relbert::defaults::fetch_script() {
                    Some(script) => format!(" (run {} for the base MiniLM)", script.display()),
                    // A binary built from a packaged crate: no models, no scripts beside it.
                    None => " (none beside this build: pass --model DIR or a Hugging Face Hub \
                             id from the local Hub cache, or set RELBERT_MODEL)"
                        .to_string(),
                }
            } else {
                hub_hint(&dir, missing)
            };
            anyhow::Error::new(e).context(format!("loading model {}{hint}", dir.display()))
        })?;
        let offset = enc
            .offset_weight()
            .map(|w| format!(", combined with the word-vector offset at weight {w}"))
            .unwrap_or_default();
        let dtype = match enc.dtype() {
            relbert::Dtype::F32 => String::new(),
            d if enc.encoder().device().is_cpu() => format!(", {d} ({})", d.cpu_kernel()),
            d => format!(", {d}"),
        };
        tracing::info!(
            "loaded {}: {}-d, {} pooling{offset}{dtype}, in {:.2}s",
            dir.display(),
            enc.dim(),
            enc.aggregation(),
            started.elapsed().as_secs_f64()
        );
        Ok(enc)
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(n) = cli.threads {
        // candle's CPU kernels size their parallelism from this variable.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting up the thread pool")?;
    }
    match cli.command {
        Command::Embed(a) => embed::run(a),
        Command::Pairs(c) => pairs::run(c),
        Command::Index(c) => index::run(c),
        Command::Query(a) => query::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Train(a) => train::run(a),
        Command::Average(a) => average::run(a),
        Command::Serve(a) => serve::run(a),
    }
}

/// The most `--threads` [`thread_count`] takes: 4 × the cores this process may use, or 16
/// when that is more (a small machine may still run a test's thread count).
pub(crate) fn max_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_mul(4)
        .max(16)
}

/// A `--threads` value: at least 1, at most [`max_threads`]. The work is CPU-bound, so
/// threads beyond the cores only add switching; and each pool (rayon's, candle's kernels')
/// starts every one of them: `--threads 100000` spent minutes and gigabytes starting threads.
fn thread_count(s: &str) -> std::result::Result<usize, String> {
    let n = positive(s)?;
    let max = max_threads();
    if n > max {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        return Err(format!(
            "at most {max} (4 per core, {cores} cores here, and never fewer than 16): more \
             threads than cores only slow the work down"
        ));
    }
    Ok(n)
}

/// Refuses `$RELBERT_MODEL` set but empty, as `$RELBERT_INDEX` is refused
/// ([`query::refuse_empty_index_env`]): read as a path it named no model, and the error that
/// followed said "loading model  (...)" without naming the variable.
pub(crate) fn refuse_empty_model_env() -> Result<()> {
    anyhow::ensure!(
        relbert::defaults::model_env().is_none_or(|p| !p.as_os_str().is_empty()),
        "RELBERT_MODEL is set but empty, which names no model directory; unset it for the \
         default model ({}, else {}), or set it to a model directory (or pass --model DIR)",
        relbert::defaults::DEFAULT_MODEL,
        relbert::defaults::BASE_MODEL
    );
    Ok(())
}

/// A bad command line found after parsing: a value out of range given another flag, flags
/// that conflict, a flag's value only a later check can refuse. `main` ends with status 2
/// for it, as clap does for the errors it finds itself, so a script can tell "you called it
/// wrongly" (2) from "it failed" (1) whichever check found the mistake. The message names the
/// flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Usage(pub String);

/// Refuses an output file `out` (given by `flag`) that would be written inside a relbert
/// index directory or partial build ([`index_around`]): such a directory must hold only the
/// index's own files, and the next `index add` or `index build --force` refused it until the
/// file was moved out (found by an audit of `index export`; `embed` and `pairs mine` wrote
/// there as readily). A bad command line: status 2.
pub(crate) fn not_in_an_index(out: &Path, flag: &str) -> Result<()> {
    if out.as_os_str() == "-" {
        return Ok(());
    }
    match index_around(out) {
        Some((dir, what)) => Err(usage(format!(
            "invalid value for {flag}: {} is inside {what} {}, which must hold only the \
             index's own files (`index add` and `index build --force` refuse a directory \
             holding others); give a path outside it",
            out.display(),
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// The relbert index directory (or partial index build) a file at `out` would be written in,
/// and what it is: the nearest existing directory above `out` (its real path, so that `.`,
/// `..` and links are seen through) and each directory above that is looked at for an
/// index's `meta` or a partial build's `checkpoint`, known by its magic bytes. Any index
/// counts, not only the one exported: none may hold other files.
fn index_around(out: &Path) -> Option<(PathBuf, &'static str)> {
    let parent = out.parent().unwrap_or(Path::new(""));
    let existing = parent
        .ancestors()
        .find(|p| p.as_os_str().is_empty() || p.exists())?;
    let existing = if existing.as_os_str().is_empty() {
        Path::new(".")
    } else {
        existing
    };
    let real = std::fs::canonicalize(existing).ok()?;
    real.ancestors().find_map(|dir| {
        if holds(dir, relbert_index::format::FileKind::Meta) {
            Some((dir.to_path_buf(), "the index directory"))
        } else if holds(dir, relbert_index::format::FileKind::Checkpoint) {
            Some((dir.to_path_buf(), "the partial index build"))
        } else {
            None
        }
    })
}

/// Whether `dir` holds a regular file of `kind` (by its name and magic bytes). Only a regular
/// file is opened: opening a named pipe that happens to be called `meta` would wait for a
/// writer.
fn holds(dir: &Path, kind: relbert_index::format::FileKind) -> bool {
    let path = dir.join(kind.file_name());
    if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut magic = [0u8; 8];
    std::fs::File::open(&path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|()| &magic == kind.magic())
}

/// A [`Usage`] error: the command line is wrong, and `msg` says how (naming the flag).
pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
    Usage(msg.into()).into()
}

/// [`relbert::output::check_out_folder`] as a bad command line (status 2) naming `flag`: the
/// one check of every command whose output would go in a missing folder.
pub(crate) fn check_out_folder(out: &std::path::Path, flag: &str) -> anyhow::Result<()> {
    relbert::output::check_out_folder(out, flag).map_err(|e| usage(e.to_string()))
}

/// The exit status for an error `run` returned: 2 for a bad command line ([`Usage`]
/// anywhere in its chain, context added above it or not), else 1.
pub(crate) fn exit_status(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| c.is::<Usage>()) {
        2
    } else {
        1
    }
}

/// A count that must be at least 1 (a server limit of 0 refused every request).
pub(crate) fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A flag's parser over its value as the operating system gave it: clap's own parsers over
/// `&str` refuse a value that is not UTF-8 before any check of ours runs, saying only
/// "invalid UTF-8 was detected in one or more arguments", without naming the flag; a path
/// that is not UTF-8 (a file name from another system) could then never be given at all.
/// Through this parser such a path is taken, and a value that must be text is refused by its
/// check ([`text`]) with clap's "invalid value ... for '--flag'".
pub(crate) fn os<T: Clone + Send + Sync + 'static>(
    check: fn(&OsStr) -> std::result::Result<T, String>,
) -> impl TypedValueParser<Value = T> {
    OsStringValueParser::new().try_map(move |s: OsString| check(&s))
}

/// A model flag's value ([`ModelArgs::model`], `query --model`, `train --base`, ...): the
/// directory it names, or, where there is none, the snapshot of the Hugging Face Hub model of
/// that id in the local Hub cache ([`relbert::model::hub`]). Never refused here: a command
/// that needs no model (a stored pair's query) does not fail for it, and one that loads it
/// names what is missing, with [`hub_hint`].
pub(crate) fn model_dir(s: &OsStr) -> std::result::Result<PathBuf, String> {
    Ok(relbert::model::hub::resolve_model_dir(Path::new(s)))
}

/// For the error of a model that could not be loaded from `dir` (`missing_file`: for want of
/// a file): what the Hugging Face Hub cache lacked when `dir` is no directory but reads as a
/// Hub id, or how to fetch the rest of a Hub snapshot that lacks a file (`; ...`); else
/// nothing.
pub(crate) fn hub_hint(dir: &Path, missing_file: bool) -> String {
    use relbert::model::hub;
    if let Some(why) = hub::explain_missing(dir) {
        return format!("; {why}");
    }
    match hub::snapshot_of(dir) {
        Some((repo, commit)) if missing_file => format!(
            "; it is the Hub model {repo} at commit {commit}, of which the cache holds only \
             some files: `hf download {repo} --revision {commit}` fetches the rest"
        ),
        _ => String::new(),
    }
}

/// Checks that `--model m`, which a command loads only later, holds a model's files, naming
/// the flag (with [`hub_hint`]). Exit status 1, as every command's missing model: the flag is
/// well formed, the folder it names is what is missing.
pub(crate) fn check_model_flag(m: &Path) -> Result<()> {
    relbert::config::ModelFiles::in_dir(m).with_context(|| {
        format!(
            "loading model {} (--model){}",
            m.display(),
            hub_hint(m, true)
        )
    })?;
    Ok(())
}

/// Whether `e` is a file missing from the model directory `dir`, for [`hub_hint`].
pub(crate) fn is_missing_file(e: &relbert::Error, dir: &Path) -> bool {
    matches!(e, relbert::Error::MissingFile { path } if path.starts_with(dir))
}

/// A value that must be text (a query word, a template, a name): one that is not UTF-8 is
/// refused (through [`os`], naming the flag or argument).
pub(crate) fn text(s: &OsStr) -> std::result::Result<String, String> {
    s.to_str()
        .map(str::to_string)
        .ok_or_else(|| "not UTF-8 text (every word and name is read as UTF-8)".to_string())
}

/// The most `--batch-size` takes: the number of pairs `embed` encodes at a time
/// ([`relbert::embed::CHUNK`]; `index build` encodes half as many). A larger batch is never
/// filled there, and where every pair goes in one call (`bench`) it only costs memory: an audit
/// measured 2.5 times the memory for a batch of a million, and no gain in speed.
pub(crate) const MAX_BATCH_SIZE: usize = relbert::embed::CHUNK;

/// A `--batch-size`: 1 to [`MAX_BATCH_SIZE`]. Checked here, so that a bad one is a bad
/// command line (status 2) named as such, not an error blamed on loading the model.
pub(crate) fn batch_size(s: &str) -> std::result::Result<usize, String> {
    let n = positive(s)?;
    if n > MAX_BATCH_SIZE {
        return Err(format!(
            "at most {MAX_BATCH_SIZE}: embed encodes {MAX_BATCH_SIZE} pairs at a time, so a \
             larger batch gains no speed and costs memory"
        ));
    }
    Ok(n)
}

/// A `--device`: `cpu`, `cuda` or `cuda:N`, the last two only in a `cuda` build. Only the
/// spelling is checked here (the device itself is opened when the model loads): a misspelled
/// one is a bad command line, found before any input is read.
pub(crate) fn device(s: &OsStr) -> std::result::Result<String, String> {
    let spec = text(s)?;
    match relbert::device::device_ordinal(&spec) {
        Ok(_) => Ok(spec),
        // The flag is named by clap; the library's message names it too.
        Err(relbert::Error::InvalidArgument { message, .. }) => Err(message),
        Err(e) => Err(e.to_string()),
    }
}

/// A `--dtype`: f32, f16 or bf16. clap names the flag and the value given, so the message is
/// only what was expected (the library's own names both, which clap then said twice).
pub(crate) fn dtype(s: &OsStr) -> std::result::Result<relbert::Dtype, String> {
    text(s)?
        .parse()
        .map_err(|_| "expected f32, f16 or bf16".to_string())
}

/// An `--aggregation`: average_no_mask, mask or average (the message as [`dtype`]'s).
pub(crate) fn aggregation(s: &OsStr) -> std::result::Result<Aggregation, String> {
    text(s)?
        .parse()
        .map_err(|_| "expected one of average_no_mask, mask, average".to_string())
}

/// A `--template`: text holding `<subj>`, `<obj>` and `<mask>` ([`relbert::prompt::Template`]),
/// checked before any input is read or model loaded.
pub(crate) fn template(s: &OsStr) -> std::result::Result<String, String> {
    let t = text(s)?;
    relbert::prompt::Template::new(&t).map_err(|e| e.to_string())?;
    Ok(t)
}

/// A directory an output is written as (an index, a model): `DIR/` and `DIR/.` name `DIR`
/// itself. Without this the lock, temporary and partial names (made from the last component)
/// and the final rename (made from the path as given) disagreed, so a build finished all its
/// work and then failed at the rename, leaving its output in `DIR.partial`. A path whose
/// last part is `..` or a root has no name to build one beside it, and is refused. Any
/// path, not only UTF-8 ([`os`]).
pub(crate) fn output_dir_at(s: &OsStr) -> std::result::Result<PathBuf, String> {
    // Taken as a name, it made a directory called `-` where a user meant standard output.
    if s == "-" {
        return Err(
            "`-` (standard output) cannot take a directory; give the directory's name".into(),
        );
    }
    let p: PathBuf = Path::new(s).components().collect();
    match p.components().next_back() {
        Some(std::path::Component::Normal(_)) => {
            parent_is_a_directory(&p)?;
            Ok(p)
        }
        _ => Err(format!(
            "{:?} names no directory of its own (use a path ending in the directory's name)",
            Path::new(s)
        )),
    }
}

/// Why `-` is no index directory: it read as a directory called `-` (an index never comes
/// from standard input nor goes to standard output).
const DASH_INDEX: &str = "`-` names no index: an index is a directory, never standard input or \
                          output; give the directory's name (./- for one called -)";

/// An index directory a command reads (`query --index`, `index info DIR`, `index rebuild
/// --index`, `index export --index`, `serve --index`): `-` and an empty path are refused
/// ([`DASH_INDEX`]); only `index add` and `index build --out` refused them before, and the
/// others looked for a directory called `-`. Any path, not only UTF-8 ([`os`]).
pub(crate) fn index_dir_at(s: &OsStr) -> std::result::Result<PathBuf, String> {
    if s == "-" {
        Err(DASH_INDEX.into())
    } else if s.is_empty() {
        Err("an empty path names no index directory".into())
    } else {
        Ok(PathBuf::from(s))
    }
}

/// An index directory a command grows in place (`index add --index`): [`index_dir_at`]'s
/// refusals, in its words (not [`output_dir_at`]'s, which speak of standard output), then
/// [`output_dir_at`]'s, as the grown index replaces the directory by a rename beside it.
pub(crate) fn grown_index_dir_at(s: &OsStr) -> std::result::Result<PathBuf, String> {
    index_dir_at(s)?;
    output_dir_at(s)
}

/// Refuses a path under something that exists and is not a directory (`notes.txt/x.npy`),
/// which failed only when the output was created, as a bare "File exists" or "Not a
/// directory" naming the file but not the flag.
fn parent_is_a_directory(p: &Path) -> std::result::Result<(), String> {
    for above in p.ancestors().skip(1) {
        if above.as_os_str().is_empty() {
            break;
        }
        if let Ok(md) = std::fs::metadata(above) {
            return if md.is_dir() {
                Ok(())
            } else {
                Err(format!("{} is not a directory", above.display()))
            };
        }
    }
    Ok(())
}

/// Whether `p` is one of the names of this process's standard output (`/dev/stdout`,
/// `/dev/fd/1`, `/proc/self/fd/1`).
fn names_standard_output(p: &Path) -> bool {
    ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]
        .iter()
        .any(|name| p == Path::new(name))
}

/// What a file that is neither a regular file nor a directory is, for a message; `None` for
/// a regular file or a directory.
fn special_file(md: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = md.file_type();
    if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_fifo() {
        Some("a named pipe")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        None
    }
}

/// A file an output is written to: a path ending in `/`, `/.` or `/..` names a directory,
/// and was only found out at the final rename, after all the work (leaving temporary files,
/// and for `.npy` a pair list without its array). `-` (standard output, where a command
/// takes it) passes. Any path, not only UTF-8 ([`os`]).
pub(crate) fn output_file_at(s: &OsStr) -> std::result::Result<PathBuf, String> {
    let p = Path::new(s);
    let bytes = s.as_bytes();
    let last = p.components().next_back();
    let names_a_dir = bytes.ends_with(b"/")
        || bytes.ends_with(b"/.")
        || !matches!(last, Some(std::path::Component::Normal(_)));
    if names_a_dir && s != "-" {
        return Err(format!(
            "{p:?} names a directory; give the output file's name"
        ));
    }
    // Whatever standard output is (a terminal, a pipe, a file it was redirected to), these
    // names are not a file relbert may write beside and rename over: with standard output
    // redirected to a file, `--out /dev/stdout` was told "exists; pass --force", and with
    // --force the rename would replace the name in /dev.
    if names_standard_output(p) {
        return Err(format!(
            "{p:?} names standard output, which relbert does not write through a file name: \
             give `-` where the flag takes it (see --help), or the path of a file"
        ));
    }
    if s != "-" {
        if let Ok(md) = std::fs::metadata(p) {
            if md.is_dir() {
                return Err(format!("{p:?} is a directory; give the output file's name"));
            }
            // An output is written to a new file beside it and renamed into place, which a
            // device or a pipe cannot be: `--out /dev/null` said "exists; pass --force", and
            // with --force "not a regular file".
            if let Some(what) = special_file(&md) {
                return Err(format!(
                    "{p:?} is {what}, not a regular file: relbert writes an output to a new \
                     file and renames it into place; give the path of a file (to discard the \
                     output, one in a temporary directory)"
                ));
            }
        }
        parent_is_a_directory(p)?;
    }
    Ok(p.to_path_buf())
}

#[cfg(test)]
mod path_tests {
    use super::*;

    // The checks over text, as the tests below spell their paths.
    fn output_file(s: &str) -> std::result::Result<PathBuf, String> {
        output_file_at(OsStr::new(s))
    }
    fn output_dir(s: &str) -> std::result::Result<PathBuf, String> {
        output_dir_at(OsStr::new(s))
    }
    fn index_dir(s: &str) -> std::result::Result<PathBuf, String> {
        index_dir_at(OsStr::new(s))
    }
    fn grown_index_dir(s: &str) -> std::result::Result<PathBuf, String> {
        grown_index_dir_at(OsStr::new(s))
    }

    #[test]
    fn output_paths_name_what_is_written() {
        assert_eq!(output_dir("idx/").unwrap(), PathBuf::from("idx"));
        assert_eq!(output_dir("a/idx/.").unwrap(), PathBuf::from("a/idx"));
        assert_eq!(output_dir("./idx").unwrap(), PathBuf::from("./idx"));
        for bad in ["..", "a/..", "/", ".", "", "-"] {
            assert!(output_dir(bad).is_err(), "{bad:?}");
        }
        assert_eq!(output_dir("./-").unwrap(), PathBuf::from("./-"));
        assert_eq!(output_file("x.npy").unwrap(), PathBuf::from("x.npy"));
        assert_eq!(output_file("-").unwrap(), PathBuf::from("-"));
        for bad in ["x.npy/", "x.npy/.", "a/..", "/", "."] {
            assert!(output_file(bad).is_err(), "{bad:?}");
        }
        // An index read or grown: `-` in words about an index, not standard output.
        for parse in [index_dir, grown_index_dir] {
            let err = parse("-").unwrap_err();
            assert!(err.contains("names no index") && !err.contains("(standard output)"));
            assert!(parse("").is_err());
            assert_eq!(parse("./-").unwrap(), PathBuf::from("./-"));
        }
        assert_eq!(grown_index_dir("idx/").unwrap(), PathBuf::from("idx"));
        assert!(grown_index_dir("..").is_err());
        // Under a file, or a directory itself: named up front.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "mine").unwrap();
        let under = file.join("x.npy");
        let err = output_file(under.to_str().unwrap()).unwrap_err();
        assert!(err.ends_with("notes.txt is not a directory"), "{err}");
        assert!(output_dir(under.to_str().unwrap()).is_err());
        let err = output_file(dir.path().to_str().unwrap()).unwrap_err();
        assert!(err.contains("is a directory"), "{err}");
    }

    /// Audit (s16): a path that is not UTF-8 was refused by clap before any check ran, so
    /// such a file could not be written, nor an index read, at all.
    #[test]
    fn paths_need_not_be_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let name = OsStr::from_bytes(b"v\xff.jsonl");
        assert_eq!(output_file_at(name).unwrap(), PathBuf::from(name));
        assert_eq!(output_dir_at(name).unwrap(), PathBuf::from(name));
        assert_eq!(index_dir_at(name).unwrap(), PathBuf::from(name));
        assert_eq!(grown_index_dir_at(name).unwrap(), PathBuf::from(name));
        let err = output_file_at(OsStr::from_bytes(b"d\xff/")).unwrap_err();
        assert!(err.contains("names a directory"), "{err}");
        // Text is refused in words, not taken with the bytes replaced.
        assert!(text(name).unwrap_err().contains("not UTF-8"));
        assert_eq!(text(OsStr::new("café")).unwrap(), "café");
    }

    /// Audit (s16): `--out /dev/null` said "exists; pass --force", and with --force "not a
    /// regular file".
    #[test]
    fn a_device_is_no_output_file() {
        let err = output_file("/dev/null").unwrap_err();
        assert!(
            err.contains("a character device, not a regular file") && !err.contains("--force"),
            "{err}"
        );
    }

    #[test]
    fn batch_size_device_and_template_are_checked_when_parsed() {
        assert_eq!(batch_size("1"), Ok(1));
        assert_eq!(batch_size("4096"), Ok(MAX_BATCH_SIZE));
        assert!(batch_size("0").unwrap_err().contains("at least 1"));
        assert!(batch_size("4097").unwrap_err().contains("at most 4096"));
        assert_eq!(device(OsStr::new("cpu")).unwrap(), "cpu");
        for bad in ["gpu", "cuda:", "cuda:x", "cuda0", "CPU", ""] {
            let err = device(OsStr::new(bad)).unwrap_err();
            assert!(
                err.contains("expected cpu, cuda or cuda:N"),
                "{bad:?}: {err}"
            );
        }
        if !candle_core::utils::cuda_is_available() {
            let err = device(OsStr::new("cuda:0")).unwrap_err();
            assert!(err.contains("without the `cuda` feature"), "{err}");
        }
        let t = "<subj> is the <mask> of <obj>";
        assert_eq!(template(OsStr::new(t)).unwrap(), t);
        let err = template(OsStr::new("<subj> and <obj>")).unwrap_err();
        assert!(err.contains("<mask>"), "{err}");
    }
}

#[cfg(test)]
mod status_tests {
    use super::*;

    /// A [`Usage`] error exits 2 with context above it or not; any other error exits 1.
    #[test]
    fn a_bad_command_line_exits_2_and_a_failure_1() {
        assert_eq!(exit_status(&usage("invalid value for --x: no")), 2);
        assert_eq!(
            exit_status(&usage("invalid value for --x: no").context("while starting")),
            2
        );
        assert_eq!(exit_status(&anyhow::anyhow!("disk full")), 1);
        let io = std::io::Error::other("no");
        assert_eq!(exit_status(&anyhow::Error::new(io).context("reading")), 1);
        // The message is the one given, named flag and all.
        assert_eq!(
            usage("--format npy needs --out").to_string(),
            "--format npy needs --out"
        );
    }
}
