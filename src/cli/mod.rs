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

use std::path::PathBuf;

use anyhow::{Context, Result};
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
    /// Model directory (config.json, model.safetensors, tokenizer.json).
    /// Default: $RELBERT_MODEL, models/relbert-minilm, then models/all-MiniLM-L6-v2.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Prompt template with <subj>, <obj> and <mask> (default: the model's, else the reference's).
    #[arg(long)]
    pub template: Option<String>,
    /// Aggregation: average_no_mask, mask or average (default: the model's, else average_no_mask).
    #[arg(long)]
    pub aggregation: Option<Aggregation>,
    /// Prompts per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// cpu, or cuda:N with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Number format of the encoder's matrix products: f32, bf16 (fast on CPUs with
    /// AVX512-BF16 and on GPUs) or f16 (GPU); accumulation, LayerNorm, softmax and pooling stay
    /// f32. Recorded in an index's encoder identity. Default: f32, or for a build into an
    /// existing Qdrant collection the format it records.
    // An `Option`, so that a value given is told from the default.
    #[arg(long)]
    pub dtype: Option<relbert::Dtype>,
}

impl ModelArgs {
    /// The options every flag's default gives (default model, its template and pooling).
    pub fn defaults() -> Self {
        ModelArgs {
            model: None,
            template: None,
            aggregation: None,
            batch_size: 64,
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
        let dir = self.model_dir();
        let opts = EncoderOptions {
            template: self.template.clone(),
            aggregation: self.aggregation,
            batch_size: self.batch_size,
            device: parse_device(&self.device)?,
            trainable,
            offset_weight: None,
            dtype: self.dtype.unwrap_or(relbert::Dtype::F32),
        };
        let started = std::time::Instant::now();
        let enc = RelationEncoder::load(&dir, &opts).map_err(|e| {
            // Only a model that is not there is helped by fetching the base model.
            let missing = matches!(e, relbert::Error::MissingFile { .. }) || !dir.exists();
            let hint = if missing && self.model.is_none() {
                " (run scripts/fetch-base-model.sh for the base MiniLM)"
            } else {
                ""
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

/// A count that must be at least 1 (a server limit of 0 refused every request).
pub(crate) fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A directory an output is written as (an index, a model): `DIR/` and `DIR/.` name `DIR`
/// itself. Without this the lock, temporary and partial names (made from the last component)
/// and the final rename (made from the path as given) disagreed, so a build finished all its
/// work and then failed at the rename, leaving its output in `DIR.partial`. A path whose
/// last part is `..` or a root has no name to build one beside it, and is refused.
pub(crate) fn output_dir(s: &str) -> std::result::Result<PathBuf, String> {
    // Taken as a name, it made a directory called `-` where a user meant standard output.
    if s == "-" {
        return Err(
            "`-` (standard output) cannot take a directory; give the directory's name".into(),
        );
    }
    let p: PathBuf = std::path::Path::new(s).components().collect();
    match p.components().next_back() {
        Some(std::path::Component::Normal(_)) => {
            parent_is_a_directory(&p)?;
            Ok(p)
        }
        _ => Err(format!(
            "{s:?} names no directory of its own (use a path ending in the directory's name)"
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
/// others looked for a directory called `-`.
pub(crate) fn index_dir(s: &str) -> std::result::Result<PathBuf, String> {
    match s {
        "-" => Err(DASH_INDEX.into()),
        "" => Err("an empty path names no index directory".into()),
        _ => Ok(PathBuf::from(s)),
    }
}

/// An index directory a command grows in place (`index add --index`): [`index_dir`]'s
/// refusals, in its words (not [`output_dir`]'s, which speak of standard output), then
/// [`output_dir`]'s, as the grown index replaces the directory by a rename beside it.
pub(crate) fn grown_index_dir(s: &str) -> std::result::Result<PathBuf, String> {
    index_dir(s)?;
    output_dir(s)
}

/// Refuses a path under something that exists and is not a directory (`notes.txt/x.npy`),
/// which failed only when the output was created, as a bare "File exists" or "Not a
/// directory" naming the file but not the flag.
fn parent_is_a_directory(p: &std::path::Path) -> std::result::Result<(), String> {
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

/// A file an output is written to: a path ending in `/`, `/.` or `/..` names a directory,
/// and was only found out at the final rename, after all the work (leaving temporary files,
/// and for `.npy` a pair list without its array). `-` (standard output, where a command
/// takes it) passes.
pub(crate) fn output_file(s: &str) -> std::result::Result<PathBuf, String> {
    let p = std::path::Path::new(s);
    let last = p.components().next_back();
    let names_a_dir = s.ends_with('/')
        || s.ends_with("/.")
        || !matches!(last, Some(std::path::Component::Normal(_)));
    if names_a_dir && s != "-" {
        return Err(format!(
            "{s:?} names a directory; give the output file's name"
        ));
    }
    if s != "-" {
        if std::fs::metadata(p).is_ok_and(|m| m.is_dir()) {
            return Err(format!("{s:?} is a directory; give the output file's name"));
        }
        parent_is_a_directory(p)?;
    }
    Ok(p.to_path_buf())
}

#[cfg(test)]
mod path_tests {
    use super::*;

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
}
