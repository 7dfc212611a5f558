//! `relbert index build`, `relbert index rebuild` and `relbert index info`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use relbert::embed::screen_long_pairs;
use relbert::indexing::{
    add_to_index, build_index, new_pairs, spooled_input, AddCounts, BuildOptions, BuildReport,
    GraphWhileEncoding,
};
use relbert::pairs::{read_pairs, PairRecord};
use relbert::query::index_encoder;
use relbert::RelationEncoder;
use relbert_index::{HnswParams, Index, Precision, RebuildOptions, Stage};

use super::interrupt::Resumable;
use super::{ModelArgs, Progress};

/// What the partial directory of an interrupted `index build` keeps while it encodes (said
/// after "DIR.partial keeps"); the checkpoint follows each chunk of
/// [`relbert::indexing::BUILD_CHUNK`] pairs.
const BUILD_ENCODING: &str = "the pairs encoded up to its last checkpoint";
/// What it keeps once every pair is encoded and the graph is being built.
const BUILD_GRAPH: &str = "every pair, encoded (a rerun builds only the graph again)";

/// `relbert index …`
#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Embed a pair file into a memory-mapped HNSW index (resumes an interrupted build).
    Build(BuildArgs),
    /// Rebuild an index from its own pairs and vectors, without encoding: another storage
    /// precision or other HNSW parameters.
    Rebuild(RebuildArgs),
    /// Show an index's size, model identity and parameters.
    Info(InfoArgs),
    /// Copy an index into a Qdrant collection (one node or a cluster), or into word2vec /
    /// .npy files for other tools.
    Export(super::export::ExportArgs),
    /// Grow an index by the pairs it does not hold yet: encodes only those, inserts them into
    /// the graph and replaces the index atomically (resumes an interrupted add).
    Add(AddArgs),
    /// Shrink an index or a Qdrant collection by the pairs listed: an index is rebuilt from
    /// the others (no encoding) and replaced atomically, a collection's points are deleted by
    /// id (either resumes an interrupted remove).
    Remove(RemoveArgs),
}

/// Arguments of `relbert index remove`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("shrunk").required(true).args(["index", "collection"])))]
// One group for what to take out, so that a run with neither names both (`required_unless_present`
// on --pairs named only --pairs, hiding --abandoned-load).
#[command(group(clap::ArgGroup::new("taken").required(true).args(["pairs", "abandoned_load"])))]
pub struct RemoveArgs {
    /// Index directory to shrink (replaced in one atomic exchange by the index without the
    /// pairs; built in DIR.partial/).
    #[arg(long, conflicts_with = "collection", value_parser = super::os(super::grown_index_dir_at))]
    index: Option<PathBuf>,
    /// Qdrant collection to take the pairs out of instead (their points deleted by id, and
    /// recorded so that reruns of its loads do not write them back; a rerun after an
    /// interruption removes the rest). --threads has no effect here: the work is the
    /// server's.
    #[arg(long, value_name = "NAME", value_parser = super::os(super::export::collection_name))]
    collection: Option<String>,
    /// Qdrant gRPC URL(s), comma-separated for several nodes of a cluster (default:
    /// $RELBERT_QDRANT_URL); used with --collection.
    // Refused beside --index as well as without --collection: clap waives `requires` when
    // an argument that conflicts with the one required (--index) is given.
    #[arg(long, value_name = "URL", requires = "collection", conflicts_with = "index", value_parser = super::os(super::export::qdrant_spec))]
    qdrant: Option<String>,
    /// How long each call to Qdrant keeps retrying a node that fails or restarts, in seconds
    /// (default: $RELBERT_QDRANT_RETRY_SECS, else 10 attempts, about 21 s; at most 86400),
    /// as for `index export`.
    #[arg(long, value_name = "SECONDS", requires = "collection", conflicts_with = "index", value_parser = super::export::retry_secs)]
    retry_secs: Option<u64>,
    /// Pair file(s) of the pairs to remove, `-` for standard input: head<TAB>tail per line (a
    /// label, if any, is ignored). Pairs are found as `index add` finds them (any Unicode
    /// normal form; case counts); pairs the index does not hold are counted and left.
    #[arg(long, num_args = 1..)]
    pairs: Vec<PathBuf>,
    /// Instead of removing pairs: give up the unfinished load of SOURCE into --collection
    /// (SOURCE as the warning of `query` or `index info` names it: `index ID` or `pairs
    /// sha256:…`), whose source is gone (an index `index add` replaced, a pair file since
    /// changed), so no rerun can finish it. The points it wrote stay; the collection is no
    /// longer called unfinished for it, its indexing is turned back on, and pairs can be
    /// removed from it again. Rerunning that load later, its source found again, resumes it.
    /// A load that looks alive (its checkpoint written within 2 minutes) is refused, and the
    /// checkpoint is read again just before it is marked; Qdrant offers no conditional write
    /// of collection metadata, so a rerun of that load that starts within that last read and
    /// the mark's write (milliseconds) is marked given up while it runs: start no rerun of
    /// the load while this runs (a rerun marked so writes its checkpoint anew at its next
    /// beat, within 30 s, and goes on).
    #[arg(long, value_name = "SOURCE", requires = "collection", conflicts_with_all = ["pairs", "index"])]
    abandoned_load: Option<String>,
    /// Print a JSON summary on standard output instead of a line for people.
    #[arg(long)]
    json: bool,
}

/// Arguments of `relbert index add`.
#[derive(Args, Debug)]
pub struct AddArgs {
    /// Index directory to grow (replaced in one atomic exchange by the grown index; grown in
    /// DIR.partial/).
    #[arg(long, value_parser = super::os(super::grown_index_dir_at))]
    index: PathBuf,
    /// Pair file(s), `-` for standard input: head<TAB>tail[<TAB>label] per line. Pairs the
    /// index holds, and repeats, are left out.
    #[arg(long, required = true, num_args = 1..)]
    pairs: Vec<PathBuf>,
    /// Model directory (default: the one the index was built with). Its pair function must be
    /// the index's: other weights, or a --template or --aggregation other than the index's,
    /// are refused. A Hugging Face Hub id in the local Hub cache names its snapshot.
    #[arg(long, value_parser = super::os(super::model_dir))]
    model: Option<PathBuf>,
    /// Prompt template (default and only accepted value: the index's).
    #[arg(long, value_parser = super::os(super::template))]
    template: Option<String>,
    /// Aggregation (default and only accepted value: the index's).
    #[arg(long, value_parser = super::os(super::aggregation))]
    aggregation: Option<relbert::pooling::Aggregation>,
    /// Prompts per forward pass (1 to 4096). Default: 64 on the CPU, 512 on a GPU.
    #[arg(long, value_parser = super::batch_size)]
    batch_size: Option<usize>,
    /// cpu, or cuda:N with the `cuda` feature.
    #[arg(long, default_value = "cpu", value_parser = super::os(super::device))]
    device: String,
    /// Leave out pairs whose prompt is too long to encode (reported with file and line)
    /// instead of stopping at the first.
    #[arg(long)]
    skip_long: bool,
    /// Print a JSON summary on standard output instead of a line for people.
    #[arg(long)]
    json: bool,
}

/// Arguments of `relbert index rebuild`.
#[derive(Args, Debug)]
pub struct RebuildArgs {
    /// Source index directory.
    #[arg(long, value_parser = super::os(super::index_dir_at))]
    index: PathBuf,
    /// Output index directory (may be the source itself, with --force; built in DIR.partial/,
    /// renamed at the end). Its folder must exist.
    #[arg(long, value_parser = super::os(super::output_dir_at))]
    out: PathBuf,
    /// HNSW neighbours per node, 2 to 255 (default: the source's).
    #[arg(long, value_parser = hnsw_m())]
    m: Option<usize>,
    /// HNSW candidate-list size while building, --m to 1000000 (default: the source's,
    /// raised to --m).
    #[arg(long, value_parser = hnsw_ef())]
    ef_construction: Option<usize>,
    /// Store vectors as float16 (default: the source's precision).
    #[arg(long, conflicts_with = "f32")]
    f16: bool,
    /// Store vectors as float32 (default: the source's precision).
    #[arg(long)]
    f32: bool,
    /// Replace an existing output index.
    #[arg(long)]
    force: bool,
    /// Print a JSON summary on standard output (the source and the new index, its pairs,
    /// storage and HNSW parameters, the seconds taken); the line for people stays on
    /// standard error.
    #[arg(long)]
    json: bool,
}

/// Arguments of `relbert index build`.
#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Pair file(s), `-` for standard input: head<TAB>tail[<TAB>label] per line.
    #[arg(long, required = true, num_args = 1..)]
    pairs: Vec<PathBuf>,
    /// Output index directory (built in DIR.partial/, renamed at the end). Its folder must
    /// exist.
    #[arg(long, required_unless_present = "collection", value_parser = super::os(super::output_dir_at))]
    out: Option<PathBuf>,
    /// Encode straight into this Qdrant collection instead of a local index (created when
    /// absent; a rerun of the same input resumes after the last checkpoint). --m and
    /// --ef-construction set its HNSW graph.
    #[arg(long, conflicts_with_all = ["out", "force"])]
    collection: Option<String>,
    #[command(flatten)]
    target: super::export::CollectionArgs,
    /// HNSW neighbours per node, 2 to 255.
    #[arg(long, default_value_t = 16, value_parser = hnsw_m())]
    m: usize,
    /// HNSW candidate-list size while building, --m to 1000000.
    #[arg(long, default_value_t = 200, value_parser = hnsw_ef())]
    ef_construction: usize,
    /// Store vectors as float16 (half the disk and memory; with --collection, of every
    /// replica).
    #[arg(long)]
    f16: bool,
    /// Leave out pairs whose prompt is too long to encode (reported with file and line)
    /// instead of stopping at the first.
    #[arg(long)]
    skip_long: bool,
    /// Replace an existing index (only an index: anything else at --out is refused).
    #[arg(long)]
    force: bool,
    /// Build the HNSW graph while pairs are still being encoded (auto: when --device is a
    /// GPU, whose encoding leaves the CPU cores free for the graph). Not with --collection,
    /// which has no local graph.
    #[arg(long, value_enum, default_value_t = GraphWhileEncoding::Auto, conflicts_with = "collection")]
    graph_while_encoding: GraphWhileEncoding,
    /// How the graph built while encoding yields the CPU to the encoder's threads: idle
    /// (Linux's SCHED_IDLE: almost only cores nothing else wants), lower (nice raised by 10)
    /// or normal. Linux only; elsewhere always normal.
    #[arg(long, value_enum, default_value_t = GraphPriorityArg::Idle, value_name = "PRIORITY", conflicts_with = "collection")]
    graph_priority: GraphPriorityArg,
    /// Print a JSON summary on standard output (the index or collection, the pairs read,
    /// stored and left out, the seconds taken); the line for people stays on standard error.
    #[arg(long)]
    json: bool,
}

/// `--graph-priority` ([`relbert_index::GraphPriority`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GraphPriorityArg {
    /// The encoder's priority.
    Normal,
    /// Nice raised by 10.
    Lower,
    /// SCHED_IDLE.
    Idle,
}

impl From<GraphPriorityArg> for relbert_index::GraphPriority {
    fn from(a: GraphPriorityArg) -> Self {
        match a {
            GraphPriorityArg::Normal => Self::Normal,
            GraphPriorityArg::Lower => Self::Lower,
            GraphPriorityArg::Idle => Self::Idle,
        }
    }
}

/// `--m`'s parser: the range [`HnswParams::validate`] accepts, so that a value out of it is a
/// bad command line (status 2) named by clap, not a failure of the build (status 1).
fn hnsw_m() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(2..=255)
}

/// `--ef-construction`'s parser: the range [`HnswParams::validate`] accepts, as [`hnsw_m`]
/// (that it is at least `--m` is [`check_hnsw`]'s).
fn hnsw_ef() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=1_000_000)
}

/// Refuses HNSW parameters that do not work together (each flag's range is checked when
/// parsed): `--ef-construction` below `--m`. A bad command line, status 2.
fn check_hnsw(hnsw: &HnswParams) -> Result<()> {
    hnsw.validate()
        .map_err(|e| super::usage(format!("invalid value for --m or --ef-construction: {e}")))
}

/// Arguments of `relbert index info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Index directory.
    #[arg(value_parser = super::os(super::index_dir_at), required_unless_present = "index")]
    dir: Option<PathBuf>,
    /// The index directory as the other index commands take it (`--index DIR`), instead of
    /// DIR.
    #[arg(long = "index", value_name = "DIR", conflicts_with = "dir",
          value_parser = super::os(super::index_dir_at))]
    index: Option<PathBuf>,
    /// Also verify every checksum (reads every file once).
    #[arg(long)]
    verify: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Reads several pair files into one list (each record keeps its own line number); `-` is
/// standard input (`<stdin>` in messages), which can be read once.
pub fn read_all(files: &[PathBuf]) -> Result<Vec<PairRecord>> {
    read_all_with(files, None)
}

/// [`read_all`], with standard input's records already read (`stdin`) put where `-` is.
fn read_all_with(files: &[PathBuf], mut stdin: Option<Vec<PairRecord>>) -> Result<Vec<PairRecord>> {
    anyhow::ensure!(
        files.iter().filter(|f| f.as_os_str() == "-").count() <= 1,
        "invalid value for --pairs: `-` (standard input) can be given once"
    );
    let mut out = Vec::new();
    for f in files {
        let given = if f.as_os_str() == "-" {
            stdin.take()
        } else {
            None
        };
        match given {
            Some(records) => out.extend(records),
            None => out.extend(read_pairs(f)?),
        }
    }
    if out.is_empty() {
        let inputs = files
            .iter()
            // Standard input as the readers' errors name it (found by an audit: "no pairs
            // in -").
            .map(|f| match f.as_os_str() == "-" {
                true => "<stdin>".to_string(),
                false => f.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(NoPairs {
            message: format!("no pairs in {inputs}"),
            inputs,
        }
        .into());
    }
    Ok(out)
}

/// The inputs held no pair: an error for a build (nothing to build), nothing to do for `index
/// add` and `index remove` ([`or_none_read`]), which say so and succeed, so that a pipeline
/// whose producer found nothing new (`producer | relbert index add --pairs -`) does not fail
/// (found by a review: status 1, where an add of nothing new is status 0).
#[derive(Debug)]
pub struct NoPairs {
    /// The inputs, as messages name them (`<stdin>` for standard input).
    inputs: String,
    /// The error's text.
    message: String,
}

impl std::fmt::Display for NoPairs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NoPairs {}

/// What an add or a remove read: its records, or none, with the inputs named (`Some`) when
/// they held no pair ([`NoPairs`]); any other failure is returned.
fn or_none_read<T: Default>(read: Result<T>) -> Result<(T, Option<String>)> {
    match read {
        Ok(t) => Ok((t, None)),
        Err(e) => match e.downcast::<NoPairs>() {
            Ok(none) => Ok((T::default(), Some(none.inputs))),
            Err(e) => Err(e),
        },
    }
}

/// "1 pair", "2 pairs".
fn pairs(n: u64) -> String {
    format!(
        "{} pair{}",
        super::progress::group(n),
        if n == 1 { "" } else { "s" }
    )
}

/// The records of `--pairs`, and whether to spool them (standard input is among the inputs,
/// and cannot be read again). With `-` among the inputs and nothing on standard input, the
/// interrupted build or add of `out` resumes from the copy it spooled, when there is one (the
/// copy holds every input's pairs, the files' too, as that run read them). Also the counts
/// the interrupted build or add recorded in the copy it resumes from ([`AddCounts`]; `None`
/// when the input is read afresh, or the copy records none).
pub fn read_input(
    files: &[PathBuf],
    out: &Path,
) -> Result<(Vec<PairRecord>, bool, Option<AddCounts>)> {
    let stdin = files.iter().any(|f| f.as_os_str() == "-");
    if !stdin {
        return Ok((read_all(files)?, false, None));
    }
    let from_stdin = read_pairs(Path::new("-"))?;
    if from_stdin.is_empty() {
        // A run of `out` going on in another process is not interrupted: its copy of standard
        // input is its own, and this run would only fail on its lock after reading it (found
        // by a review: "resuming from the input the interrupted run spooled", then refused).
        // Nothing on standard input is then no pairs, as with no run there
        // ([`no_pairs_on_stdin`]).
        let running = relbert_index::lock::holder(out);
        if let Some(holder) = &running {
            tracing::info!(
                "standard input is empty; {} is being written by another process ({holder}), \
                 whose copy of its input is left to it",
                out.display()
            );
        }
        let spooled = match running {
            Some(_) => None,
            None => spooled_input(out)?,
        };
        if let Some((records, counts)) = spooled {
            tracing::info!(
                "standard input is empty: resuming from the input the interrupted run spooled ({} pairs)",
                records.len()
            );
            return Ok((records, false, counts));
        }
        if files.len() == 1 {
            return Err(no_pairs_on_stdin(out, running)?);
        }
    }
    Ok((read_all_with(files, Some(from_stdin))?, true, None))
}

/// The error for `--pairs -` alone and nothing on standard input, for a run on `out` that
/// has no copy of its input to resume from: a partial directory without a whole copy (its
/// copy was cut short, by a full disk or a kill; or a remove's, which keeps none) can be
/// resumed only from the same input given again, which is said rather than a bare "no pairs".
///
/// A partial directory whose run is going on in another process (`running`: the writer
/// lock's holder, [`relbert_index::lock::holder`], probed once by the caller) is no
/// interrupted run: it is no pairs then ([`NoPairs`]), naming that process.
fn no_pairs_on_stdin(out: &Path, running: Option<String>) -> Result<anyhow::Error> {
    let partial = relbert_index::partial_dir(out)?;
    if let Some(holder) = running {
        return Ok(NoPairs {
            inputs: "<stdin>".to_string(),
            message: format!(
                "no pairs on standard input ({} is being written by another process now \
                 ({holder}): that run is not interrupted, and is not resumed)",
                out.display()
            ),
        }
        .into());
    }
    if std::fs::symlink_metadata(&partial).is_ok() {
        return Ok(anyhow::anyhow!(
            "no pairs on standard input: {} holds an interrupted run of {} but no complete \
             copy of its input, so give the same pairs on standard input again to resume it \
             (or remove {} to give it up)",
            partial.display(),
            out.display(),
            partial.display()
        ));
    }
    Ok(NoPairs {
        inputs: "<stdin>".to_string(),
        message: format!(
            "no pairs on standard input (and no interrupted run of {} to resume)",
            out.display()
        ),
    }
    .into())
}

/// Leaves out (with `skip`, reporting them) or refuses the pairs `encoder` cannot encode.
/// When every pair is left out, the error names the inputs and says why (found by an audit:
/// a bare "no pairs left to encode" named no file).
pub fn screen(
    encoder: &RelationEncoder,
    records: Vec<PairRecord>,
    skip: bool,
) -> Result<Vec<PairRecord>> {
    let (keep, left) = screen_left(encoder, records, skip)?;
    if keep.is_empty() {
        return Err(all_too_long(&left, encoder.max_tokens()));
    }
    Ok(keep)
}

/// The error for `--skip-long` leaving out every one of the pairs read, `left`: it names
/// where they were read from (each file once, in the order read; `<stdin>` as standard
/// input), how many there were and the token limit, and what to do.
fn all_too_long(left: &[PairRecord], limit: usize) -> anyhow::Error {
    let mut inputs: Vec<String> = Vec::new();
    for r in left {
        let name = match r.file.as_os_str() == "<stdin>" {
            true => "standard input".to_string(),
            false => r.file.display().to_string(),
        };
        if !inputs.contains(&name) {
            inputs.push(name);
        }
    }
    let from = match inputs.as_slice() {
        [] => return anyhow::anyhow!("no pairs to encode"),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    };
    let all = match left.len() {
        1 => "the 1 pair".to_string(),
        n => format!("all {} pairs", super::progress::group(n as u64)),
    };
    anyhow::anyhow!(
        "no pairs left to encode: {all} read from {from} {} too long to encode (a prompt over \
         the model's {limit}-token limit) and --skip-long left {} out; shorten or remove \
         them, or use a model with a longer limit",
        if left.len() == 1 { "is" } else { "are" },
        if left.len() == 1 { "it" } else { "them" },
    )
}

/// [`screen`]'s pairs kept and pairs left out (with `skip`, which are reported), accepting
/// that none is kept: for `index add`, for which every new pair left out is nothing to add,
/// said as such.
fn screen_left(
    encoder: &RelationEncoder,
    records: Vec<PairRecord>,
    skip: bool,
) -> Result<(Vec<PairRecord>, Vec<PairRecord>)> {
    let (keep, left) = screen_long_pairs(encoder, records, skip)?;
    if !left.is_empty() {
        let shown: Vec<String> = left.iter().take(5).map(|r| r.location()).collect();
        tracing::warn!(
            "--skip-long: left out {} pair(s) whose prompt is too long to encode: {}{}",
            left.len(),
            shown.join(", "),
            if left.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        );
    }
    Ok((keep, left))
}

/// Refuses an existing `out` before any work: one that is not an index relbert wrote (once a
/// default index's record an older relbert put inside it is back beside it: [`heal_record`])
/// with or without `force`, saying why; relbert's own index without `force`. Whose it is
/// comes first, so `--force` is advised only where it would be taken (found by a review:
/// "pass --force to replace it" was said of a symbolic link, which --force then refused).
pub fn check_index_out(out: &Path, force: bool) -> Result<()> {
    if std::fs::symlink_metadata(out).is_ok() {
        heal_record(out)?;
        relbert_index::recognise_index(out)?;
        anyhow::ensure!(
            force,
            "{} exists; pass --force to replace it",
            out.display()
        );
    }
    Ok(())
}

/// Puts beside the index at `dir` the default index's record that an older relbert wrote
/// inside it ([`relbert::defaults::heal_misplaced_record`], which logs what it did), so the
/// index is recognised as relbert's again; an error naming the file and what to do when it
/// cannot prove the file its own record of this index.
fn heal_record(dir: &Path) -> Result<()> {
    relbert::defaults::heal_misplaced_record(dir)
        .map(drop)
        .with_context(|| format!("{} holds a record relbert cannot put right", dir.display()))
}

/// Why pairs new to the index at `idx` could not be encoded with the model it records, when
/// they could not: the model is gone (moved or removed), or the directory holds other weights,
/// tokenizer or config now. Checked without loading the model (its identity from the files,
/// as [`relbert::RelationEncoder::identity`] computes it), for an add that had nothing to
/// encode: it succeeded without the model, as a query of a stored pair does, while an add of
/// new pairs fails on the same index; this says so before that add.
fn recorded_model_problem(idx: &Index, place: &Path) -> Option<String> {
    let built = &idx.meta().encoder;
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let advice = format!(
        "nothing needed encoding this time, but adding pairs it does not hold will need the \
         model it was built with (weights sha256 {}): pass --model DIR, or set \
         RELBERT_MODEL=DIR",
        short(&built.weights_sha256)
    );
    let dir = match relbert::query::recorded_model(built, place) {
        Ok(dir) => dir,
        Err(_) => {
            return Some(format!(
                "{} records its model at {}, which is not there (moved or removed); {advice}",
                place.display(),
                built.model
            ))
        }
    };
    let sha = relbert::encoder::Encoder::weights_sha256(&dir.join("model.safetensors"));
    let files = relbert::config::function_files_digest_of(&dir);
    let why = match (sha, files) {
        (Err(e), _) | (_, Err(e)) => format!("it cannot be read ({e})"),
        (Ok(sha), _) if sha != built.weights_sha256 => format!(
            "it holds other weights now (sha256 {}, not {})",
            short(&sha),
            short(&built.weights_sha256)
        ),
        (_, Ok(files)) => match relbert::indexing::files_digest(built) {
            Some(recorded) if recorded != files => format!(
                "its tokenizer.json or config.json changed (tokenizer/config {files}, not \
                 {recorded})"
            ),
            _ => return None,
        },
    };
    Some(format!(
        "{} records its model at {}, and {why}; {advice}",
        place.display(),
        dir.display()
    ))
}

/// Shows `n` rows encoded on `pb`; the first report (`started` not yet set) is where a
/// resumed run starts, which does not count in the rate.
fn rows_done(pb: &Progress, started: &AtomicBool, n: u64) {
    if !started.swap(true, Ordering::Relaxed) && n > 0 {
        pb.resume_from(n);
    } else {
        pb.set_position(n)
    }
}

/// Builds an index with progress for encoding and graph construction.
pub fn build_with_progress(
    encoder: &RelationEncoder,
    records: &[PairRecord],
    out: &Path,
    opts: &BuildOptions,
) -> Result<BuildReport> {
    build_with_progress_at(encoder, records, out, opts, None)
}

/// [`build_with_progress`], telling `interrupt` (when there is one) the stages it reaches:
/// what the partial directory keeps, and when the finished index is being written.
fn build_with_progress_at(
    encoder: &RelationEncoder,
    records: &[PairRecord],
    out: &Path,
    opts: &BuildOptions,
    interrupt: Option<&Resumable>,
) -> Result<BuildReport> {
    let pb = Progress::pairs(records.len() as u64, "encoding");
    let started = AtomicBool::new(false);
    let graph_pb = std::cell::RefCell::new(None::<Progress>);
    let report = build_index(
        encoder,
        records,
        out,
        opts,
        &|n| rows_done(&pb, &started, n),
        &mut |p| match p.stage {
            Stage::Graph => {
                let mut g = graph_pb.borrow_mut();
                let bar = g.get_or_insert_with(|| {
                    pb.finish();
                    if let Some(i) = interrupt {
                        i.keeps(BUILD_GRAPH);
                    }
                    Progress::new(p.total, "graph", "pairs")
                });
                bar.set_position(p.done);
            }
            Stage::Writing => {
                if let Some(i) = interrupt {
                    i.committing();
                }
            }
            Stage::Copying => {}
        },
    )
    .with_context(|| format!("building index {}", out.display()))?;
    if let Some(b) = graph_pb.borrow().as_ref() {
        b.finish();
    }
    pb.finish();
    let during = match report.graph_rows_while_encoding {
        0 => String::new(),
        n => format!(" after {n} rows inserted while encoding"),
    };
    tracing::info!(
        "index {}: {} pairs ({} duplicates skipped); encoding {:.1}s ({}), graph {:.1}s{during}",
        report.dir.display(),
        super::progress::group(report.count),
        super::progress::group(report.skipped),
        report.encode_secs,
        super::progress::rate(
            (records.len() as u64 - report.resumed_rows) as f64 / report.encode_secs.max(1e-9),
            "pairs"
        ),
        report.graph_secs
    );
    Ok(report)
}

/// The `--json` summary of a local `index build` (`report`) of `read` pairs, `too_long` of
/// them left out by `--skip-long`: the facts its line for people gives, under the names
/// `index add --json` gives the same facts (`index`, `pairs_read`, `count`,
/// `repeated_in_input`, `skipped_long`, `encode_secs`, `graph_secs`, `resumed_rows`) and
/// `index info --json` the index's (`precision`, `hnsw`, `dtype` as its encoder's).
fn build_json(
    report: &BuildReport,
    read: u64,
    too_long: u64,
    encoder: &RelationEncoder,
    opts: &BuildOptions,
) -> serde_json::Value {
    serde_json::json!({
        "index": report.dir.display().to_string(),
        "pairs_read": read,
        "count": report.count,
        "repeated_in_input": report.skipped,
        "skipped_long": too_long,
        "dtype": encoder.dtype().name(),
        "precision": if opts.half { Precision::F16 } else { Precision::F32 }.name(),
        "hnsw": {"m": opts.hnsw.m, "ef_construction": opts.hnsw.ef_construction},
        "encode_secs": report.encode_secs,
        "graph_secs": report.graph_secs,
        "graph_rows_while_encoding": report.graph_rows_while_encoding,
        "resumed_rows": report.resumed_rows,
    })
}

pub fn run(cmd: IndexCommand) -> Result<()> {
    match cmd {
        IndexCommand::Build(a) => {
            let hnsw = HnswParams {
                m: a.m,
                ef_construction: a.ef_construction,
                threads: 0,
                ..HnswParams::default()
            };
            check_hnsw(&hnsw)?;
            let out = match (&a.out, &a.collection) {
                (_, Some(collection)) => return build_collection(&a, collection, &hnsw),
                (Some(out), None) => out,
                (None, None) => anyhow::bail!("say where to build: --out DIR or --collection NAME"),
            };
            super::check_out_folder(out, "--out")?;
            check_index_out(out, a.force)?;
            let interrupt = Resumable::install(out, BUILD_ENCODING)?;
            // `saved`: what the interrupted run read, when this one resumes from its copy of
            // standard input, which holds only the pairs that run kept ([`AddCounts`]).
            let (records, spool, saved) = read_input(&a.pairs, out)?;
            if spool {
                interrupt.stdin_again();
            }
            let encoder = super::ModelArgs {
                dtype: resume_dtype(out, a.model.dtype)?,
                ..a.model.clone()
            }
            .load(false)?;
            let given = records.len() as u64;
            let records = screen(&encoder, records, a.skip_long)?;
            let left_now = given - records.len() as u64;
            let (read, too_long) = match saved {
                Some(saved) => (saved.read, saved.too_long + left_now),
                None => (given, left_now),
            };
            if too_long > left_now {
                // Said again, as the uninterrupted build says it: that run's warning, which
                // named them, may be long gone.
                tracing::warn!(
                    "--skip-long: left out {} pair(s) whose prompt is too long to encode \
                     (named by the interrupted run, whose copy of standard input this one \
                     resumes from)",
                    too_long - left_now
                );
            }
            let opts = BuildOptions {
                hnsw,
                half: a.f16,
                force: a.force,
                spool: spool.then_some(AddCounts {
                    read,
                    too_long,
                    ..AddCounts::default()
                }),
                graph_while_encoding: a.graph_while_encoding,
                graph_priority: a.graph_priority.into(),
            };
            let report = build_with_progress_at(&encoder, &records, out, &opts, Some(&interrupt))?;
            if a.json {
                let doc = build_json(&report, read, too_long, &encoder, &opts);
                relbert::output::print_line(&doc.to_string())?;
            }
            Ok(())
        }
        IndexCommand::Rebuild(a) => rebuild(a),
        IndexCommand::Export(a) => super::export::run(a),
        IndexCommand::Add(a) => add(a),
        IndexCommand::Remove(a) => remove(a),
        IndexCommand::Info(a) => {
            // clap requires one of the two.
            let dir = a
                .dir
                .clone()
                .or_else(|| a.index.clone())
                .unwrap_or_default();
            let started = std::time::Instant::now();
            check_there(&dir)?;
            let idx = Index::open(&dir).with_context(|| opening(&dir))?;
            let open_ms = started.elapsed().as_secs_f64() * 1e3;
            if a.verify {
                idx.verify()
                    .with_context(|| format!("verifying {}", dir.display()))?;
            }
            // With --verify, files in the directory that are not the index's (harmless to
            // reading it, but an add or a remove refuses to replace them; found by an audit:
            // a "verified" index said nothing of them).
            let foreign = if a.verify {
                relbert_index::foreign_entries(&dir)
                    .with_context(|| format!("listing {}", dir.display()))?
            } else {
                Vec::new()
            };
            // Always, an interrupted run in DIR.partial waiting to be resumed or given up
            // (found by a review: only --verify said so, and a plain `info` of an index
            // whose add was killed said nothing). Cheap: one stat when there is none, else a
            // listing of DIR.partial and its small checkpoint file. One that cannot be read
            // as relbert's fails --verify; a plain `info` says why in its place.
            let pending = relbert_index::pending_run(&dir)
                .with_context(|| format!("reading the partial directory of {}", dir.display()));
            let pending = match pending {
                Err(e) if a.verify => return Err(e),
                read => read.map_err(|e| format!("{e:#}")),
            };
            let advice = match &pending {
                Ok(run) => run
                    .as_ref()
                    .map(|run| pending_advice(run, &dir, Some(&idx.id()))),
                Err(why) => Some(why.clone()),
            };
            let m = idx.meta();
            let sizes = idx.disk_sizes();
            if a.json {
                let mut doc = relbert::indexing::info_json(&idx, &dir, open_ms, a.verify);
                if a.verify {
                    doc["other_files"] = serde_json::json!(foreign);
                }
                doc["pending"] = match (&pending, &advice) {
                    (Ok(Some(run)), Some(advice)) => serde_json::json!({
                        "partial": run.partial.display().to_string(),
                        "command": run.command,
                        "source_index": run.source,
                        // One still running is waited for, not resumed ([`pending_advice`]).
                        "resumable": run.running.is_none() && !run.stale_for(&idx.id()),
                        "running": run.running,
                        "advice": advice,
                    }),
                    (Err(why), _) => serde_json::json!({ "error": why }),
                    _ => serde_json::Value::Null,
                };
                relbert::output::print_line(&serde_json::to_string_pretty(&doc)?)?;
            } else {
                let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
                let rows = [
                    ("index", dir.display().to_string()),
                    ("id", idx.id()),
                    ("pairs", super::progress::group(m.count)),
                    ("dimension", m.dim.to_string()),
                    (
                        "metric / storage",
                        format!("{} / {}", m.metric, m.precision.name()),
                    ),
                    (
                        "HNSW",
                        format!(
                            "M {}, ef_construction {} ({})",
                            m.hnsw.m, m.hnsw.ef_construction, m.hnsw.builder
                        ),
                    ),
                    ("model", m.encoder.model.clone()),
                    ("weights sha256", m.encoder.weights_sha256.clone()),
                    ("template", m.encoder.template.clone()),
                    (
                        "aggregation",
                        relbert::indexing::shown_aggregation(&m.encoder),
                    ),
                    (
                        "tokenizer/config",
                        relbert::indexing::files_digest(&m.encoder)
                            .unwrap_or("(not recorded: built by an older relbert)")
                            .to_string(),
                    ),
                    ("vectors", mib(sizes.vectors)),
                    ("pairs file", mib(sizes.pairs)),
                    ("graph", mib(sizes.graph)),
                    ("total on disk", mib(sizes.total())),
                    ("format version", m.format_version.to_string()),
                    (
                        "checksums",
                        if a.verify {
                            "all verified".into()
                        } else {
                            "headers verified; blocks verified on first use (--verify for all now)"
                                .into()
                        },
                    ),
                ];
                let mut rows = rows.to_vec();
                if a.verify {
                    rows.push((
                        "other files",
                        match foreign.len() {
                            0 => "none".into(),
                            _ => format!(
                                "{} (not the index's: kept, but `index add` and `index \
                                 remove` refuse to replace them)",
                                foreign.join(", ")
                            ),
                        },
                    ));
                }
                rows.push(("pending", advice.clone().unwrap_or_else(|| "none".into())));
                let table: Vec<String> = rows.iter().map(|(k, v)| format!("{k:<18} {v}")).collect();
                relbert::output::print_line(&table.join("\n"))?;
            }
            Ok(())
        }
    }
}

/// `relbert index build --collection`: encodes the pairs straight into a Qdrant collection,
/// at the number format the collection records when it exists (see [`collection_dtype`]).
fn build_collection(a: &BuildArgs, collection: &str, hnsw: &HnswParams) -> Result<()> {
    let conn = a.target.connect(collection)?;
    let settings = relbert::store::qdrant::settings::CollectionSettings {
        m: hnsw.m as u64,
        ef_construct: hnsw.ef_construction as u64,
        f16: a.f16,
        ..a.target.settings()
    };
    settings.validate()?;
    // Standard input is read once; a resumed run is given the same input again (its
    // checkpoint is only used when the input is the same).
    let records = read_all(&a.pairs)?;
    let recorded = relbert::store::qdrant::export::recorded(&conn)
        .with_context(|| format!("reading the record of {}", conn.target()))?;
    let dtype = collection_dtype(
        a.model.dtype.unwrap_or(relbert::Dtype::F32),
        a.model.dtype.is_some(),
        recorded.as_ref().map(|r| &r.encoder),
        &conn.target(),
    )?;
    let encoder = super::ModelArgs {
        dtype: Some(dtype),
        ..a.model.clone()
    }
    .load(false)?;
    let read = records.len() as u64;
    let records = screen(&encoder, records, a.skip_long)?;
    let kept = records.len() as u64;
    // Created once the library has counted the distinct pairs. Told from the encoder's
    // worker threads, hence a lock and atomics.
    let pb = std::sync::OnceLock::new();
    let started = AtomicBool::new(false);
    // Counts from several threads may come out of order: one below the highest told is
    // left out, so the count shown never goes back.
    let highest = AtomicU64::new(0);
    let interrupt = super::interrupt::CollectionLoad::install(&conn);
    let report = relbert::store::qdrant::export::build_collection(
        &encoder,
        records,
        &conn,
        &settings,
        a.target.given(a.f16),
        &relbert::store::qdrant::export::ExportOptions {
            add: a.target.add,
            ..Default::default()
        },
        &|total| {
            let _ = pb.set(Progress::pairs(total, "encoding"));
        },
        &|n| {
            let Some(pb) = pb.get() else { return };
            if highest.fetch_max(n, Ordering::Relaxed) <= n {
                rows_done(pb, &started, n);
            }
        },
    )
    .map_err(|e| {
        let hint = super::export::rerun_hint(
            &e,
            " (a rerun of the same command resumes after the last checkpoint)",
        );
        anyhow::Error::new(e).context(format!("building into {}{hint}", conn.target()))
    })?;
    // Loaded: a signal from now on must not say the load can be resumed.
    drop(interrupt);
    if let Some(pb) = pb.get() {
        pb.finish();
    }
    super::export::log_load(&conn, &report);
    if a.json {
        // The names `build --out --json` gives the same facts; `encode_secs` is encoding
        // and sending, as an index's is encoding and appending.
        let mut doc = super::export::load_json(collection, &report);
        doc["pairs_read"] = read.into();
        doc["skipped_long"] = (read - kept).into();
        doc["dtype"] = dtype.name().into();
        doc["encode_secs"] = report.secs.into();
        relbert::output::print_line(&doc.to_string())?;
    }
    Ok(())
}

/// The number format a build into the collection `target` encodes at: the one its record
/// (`recorded`, `None` for a new collection) names unless `--dtype` was `given`, and then
/// `flag`, which must be the recorded one when there is a record. An existing collection's
/// points are all of one format: an `--add` or a resumed build at the flag's default would
/// mix float32 vectors into a bf16 collection under its bf16 record (found by an audit).
fn collection_dtype(
    flag: relbert::Dtype,
    given: bool,
    recorded: Option<&relbert_index::EncoderInfo>,
    target: &str,
) -> Result<relbert::Dtype> {
    let Some(info) = recorded else {
        return Ok(flag);
    };
    let name = relbert::indexing::dtype_name(info);
    let kept: relbert::Dtype = name.parse().map_err(|_| {
        anyhow::anyhow!(
            "{target} records vectors computed at number format {name:?}, which this relbert \
             does not know (a newer relbert's?); build into it with that relbert, or choose \
             another --collection"
        )
    })?;
    if !given {
        if kept != flag {
            tracing::info!(
                "{target} holds vectors computed at {kept}: encoding at {kept} (its recorded \
                 number format)"
            );
        }
        return Ok(kept);
    }
    anyhow::ensure!(
        kept == flag,
        "invalid value for --dtype: {target} holds vectors computed at {kept}, and --dtype \
         {flag} would add vectors computed at {flag} under its {kept} record; leave out \
         --dtype (a build into an existing collection encodes at its format), or choose \
         another --collection"
    );
    Ok(kept)
}

/// The number format a local build of `out` encodes at: `given` (`--dtype`) when there is
/// one, else the format the interrupted run in `out`'s partial directory began with, as its
/// checkpoint records it, else the default. A rerun that forgot `--dtype bf16` was refused as
/// "another encoder"; now it resumes, as a build into an existing Qdrant collection encodes
/// at its format ([`collection_dtype`]). A `--dtype` given that differs is left to the
/// builder, whose refusal names the format and the flag to give.
fn resume_dtype(out: &Path, given: Option<relbert::Dtype>) -> Result<Option<relbert::Dtype>> {
    if given.is_some() {
        return Ok(given);
    }
    let partial = relbert_index::partial_dir(out)?;
    let Some(spec) = relbert_index::partial_spec(out)
        .with_context(|| format!("reading the interrupted run in {}", partial.display()))?
    else {
        return Ok(None);
    };
    let name = relbert::indexing::dtype_name(&spec.encoder);
    let dtype: relbert::Dtype = name.parse().map_err(|_| {
        anyhow::anyhow!(
            "{} holds an interrupted run at number format {name:?}, which this relbert does \
             not know (a newer relbert's?); finish it with that relbert, or remove {} to give \
             it up",
            partial.display(),
            partial.display()
        )
    })?;
    if dtype != relbert::Dtype::F32 {
        tracing::info!(
            "{} holds an interrupted run at {dtype}: encoding at {dtype}, the number format it \
             began with",
            partial.display()
        );
    }
    Ok(Some(dtype))
}

/// `relbert index rebuild`: resolves the defaults from the source's metadata and shows progress.
fn rebuild(mut a: RebuildArgs) -> Result<()> {
    // Rebuilt in place through a symbolic link (`--out` the source itself), the index it
    // points to is replaced (by a rename beside itself), as `index add` and `index remove`
    // follow theirs (found by an audit: `rebuild --index L --out L --force` was refused, "L
    // is not a directory"). A link to another index is refused, as `build --out L` refuses
    // one: followed, `rebuild --index A --out L --force` replaced the index L led to, which
    // the command does not name (found by a review).
    if std::fs::symlink_metadata(&a.out).is_ok_and(|m| m.file_type().is_symlink()) {
        let target = std::fs::canonicalize(&a.out)
            .with_context(|| format!("following the link {}", a.out.display()))?;
        let source = std::fs::canonicalize(&a.index).ok();
        anyhow::ensure!(
            source.as_deref() == Some(target.as_path()),
            "{} is a symbolic link (to {}): a rebuild follows one only to rebuild its source in \
             place (`--index` the same index); give `--out` the directory itself",
            a.out.display(),
            target.display()
        );
        a.out = target;
    }
    super::check_out_folder(&a.out, "--out")?;
    check_index_out(&a.out, a.force)?;
    let interrupt = Resumable::install(&a.out, "the rows copied up to its last checkpoint")?;
    check_there(&a.index)?;
    // Only the headers at open: the rebuild verifies every row and pair it copies before it
    // creates anything, and does not read the graph, so it is the way out of a damaged graph
    // (the full check at open, which indexes with a graph of up to 8 MiB get, refused it).
    let src = Index::open_with(
        &a.index,
        relbert_index::OpenOptions {
            verify: relbert_index::Verify::Headers,
        },
    )
    .with_context(|| opening(&a.index))?;
    let opts = RebuildOptions {
        precision: match (a.f16, a.f32) {
            (true, _) => Some(Precision::F16),
            (_, true) => Some(Precision::F32),
            _ => None,
        },
        hnsw: source_hnsw(&src, a.m, a.ef_construction),
        force: a.force,
    };
    check_hnsw(&opts.hnsw)?;
    let count = src.count() as u64;
    let precision = opts.precision.unwrap_or(src.meta().precision);
    let started = std::time::Instant::now();
    let out = with_copy_progress(&interrupt, count, |progress| {
        relbert_index::rebuild(src, &a.out, &opts, progress)
    })
    .with_context(|| format!("rebuilding {} into {}", a.index.display(), a.out.display()))?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        "index {}: {} pairs rebuilt from {} in {:.1}s",
        out.display(),
        count,
        a.index.display(),
        secs
    );
    if a.json {
        // Named as `index build --json` and `index info --json` name the same facts; the
        // source is a path (`source_index` in `index info --verify --json` is an index id).
        let doc = serde_json::json!({
            "index": out.display().to_string(),
            "source": a.index.display().to_string(),
            "count": count,
            "precision": precision.name(),
            "hnsw": {"m": opts.hnsw.m, "ef_construction": opts.hnsw.ef_construction},
            "rebuild_secs": secs,
        });
        relbert::output::print_line(&doc.to_string())?;
    }
    Ok(())
}

/// The HNSW parameters a rebuild of `src` uses: `m` and `ef_construction` as given, else the
/// source's.
fn source_hnsw(src: &Index, m: Option<usize>, ef_construction: Option<usize>) -> HnswParams {
    let hnsw = &src.meta().hnsw;
    // An index with a random graph (a test fixture) records ef_construction 0.
    let source_ef = match hnsw.ef_construction {
        0 => HnswParams::default().ef_construction,
        ef => ef as usize,
    };
    let given = m.is_some();
    let m = m.unwrap_or(hnsw.m as usize);
    // Not given: the source's, raised to M (an index built before ef_construction below M was
    // refused, or a larger --m alone, would be refused otherwise), saying so: `build` refuses
    // the same values, and an audit found the raise silent.
    let ef_construction = ef_construction.unwrap_or_else(|| {
        if source_ef < m {
            // An older build allowed an index's own ef_construction below its M.
            let whose = if given { "--m" } else { "its M" };
            tracing::info!(
                "ef_construction {m}: the source's {source_ef} raised to {whose} {m}, the least \
                 a graph of M {m} takes (pass --ef-construction to choose it)"
            );
        }
        source_ef.max(m)
    });
    HnswParams {
        m,
        ef_construction,
        threads: 0,
        ..HnswParams::default()
    }
}

/// Runs `run` (a rebuild of an index of `count` rows) with one progress display per stage
/// that counts pairs (copying, then graph; the short file-writing stage shows none), telling
/// `interrupt` what the partial directory keeps at each stage.
fn with_copy_progress<T>(
    interrupt: &Resumable,
    count: u64,
    run: impl FnOnce(&mut dyn FnMut(relbert_index::Progress)) -> relbert_index::Result<T>,
) -> relbert_index::Result<T> {
    let mut bar = (Progress::pairs(count, "copying"), Stage::Copying);
    // A copy resumed after its last row reports none: its display goes without a line.
    let mut copied = false;
    let result = run(&mut |p| {
        if p.stage == Stage::Graph && bar.1 != Stage::Graph {
            if copied {
                bar.0.finish();
            }
            interrupt.keeps("every row, copied (a rerun builds only the graph again)");
            bar = (Progress::pairs(p.total, "graph"), Stage::Graph);
        }
        if p.stage == Stage::Writing {
            interrupt.committing();
        }
        if p.stage == bar.1 {
            copied = true;
            bar.0.set_position(p.done);
        }
    });
    if result.is_ok() {
        bar.0.finish();
    }
    result
}

/// `relbert index remove`: from a local index ([`remove_local`]) or a Qdrant collection
/// ([`remove_from_collection`]).
fn remove(a: RemoveArgs) -> Result<()> {
    match (&a.index, &a.collection) {
        (_, Some(collection)) if a.abandoned_load.is_some() => abandon_load(
            &a,
            collection,
            a.abandoned_load.as_deref().unwrap_or_default(),
        ),
        (_, Some(collection)) => remove_from_collection(&a, collection),
        (Some(index), None) => remove_local(index.clone(), &a),
        // clap requires one of them (the `shrunk` group).
        (None, None) => Err(super::usage(
            "say what to remove the pairs from: --index DIR or --collection NAME",
        )),
    }
}

/// The connection a removal from `collection` uses: the one `index build --collection`
/// makes (--qdrant, else $RELBERT_QDRANT_URL); its layout flags shape a new collection
/// only, and a removal makes none.
fn removal_connection(
    a: &RemoveArgs,
    collection: &str,
) -> Result<relbert::store::qdrant::Connection> {
    super::export::CollectionArgs {
        qdrant: a.qdrant.clone(),
        retry_secs: a.retry_secs,
        shards: None,
        replication: None,
        quantization: None,
        add: false,
    }
    .connect(collection)
}

/// `relbert index remove --collection NAME --abandoned-load SOURCE`: gives up the
/// unfinished load of `source` ([`relbert::store::qdrant::Connection::abandon_load`]).
fn abandon_load(a: &RemoveArgs, collection: &str, source: &str) -> Result<()> {
    let conn = removal_connection(a, collection)?;
    let target = conn.target();
    let (c, s) = (conn.clone(), source.to_string());
    let was = conn
        .block_on(async move { c.abandon_load(&s).await })?
        .with_context(|| format!("giving up the load of {source} into {target}"))?;
    let line = if a.json {
        serde_json::json!({
            "collection": collection, "abandoned_load": source,
            "rows_checkpointed": was.rows, "rows": was.total,
        })
        .to_string()
    } else {
        format!(
            "gave up the load of {source} into {target} (its last checkpoint confirmed at \
             least {} of its {} rows written; those points stay): the collection is no longer \
             called unfinished for it",
            was.rows, was.total
        )
    };
    relbert::output::print_line(&line)?;
    Ok(())
}

/// The summary line of a removal for people: `removed N pairs from WHERE (notes); it
/// holds M pairs`, the notes naming the pairs read that `place` does not hold (`missing`)
/// and those that repeat an earlier line (`repeated`).
fn removed_line(removed: u64, place: &str, missing: u64, repeated: u64, left: u64) -> String {
    let mut notes = Vec::new();
    if missing > 0 {
        let verb = if missing == 1 { "is" } else { "are" };
        notes.push(format!("{} read {verb} not in it", pairs(missing)));
    }
    if repeated > 0 {
        notes.push(format!("{} read repeated an earlier line", pairs(repeated)));
    }
    let also = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    format!(
        "removed {} from {place}{also}; it holds {}",
        pairs(removed),
        pairs(left)
    )
}

/// The line for people of a removal that found none of the `total` pairs read in `place`
/// (`what` it is: "index", "collection"), which holds `count` pairs; or that read none, from
/// the inputs named (`none_in`).
fn nothing_removed_line(
    (total, none_in): (usize, Option<&str>),
    place: &str,
    count: u64,
    what: &str,
) -> String {
    if let Some(inputs) = none_in {
        return format!(
            "nothing to remove: no pairs in {inputs}; {place} ({}) is unchanged",
            pairs(count)
        );
    }
    let none = match total {
        1 => "the 1 pair read is not".to_string(),
        n => format!("none of the {n} pairs read is"),
    };
    format!(
        "nothing to remove: {none} in {place} ({}); the {what} is unchanged",
        pairs(count)
    )
}

/// `relbert index remove --index`: the index without the pairs listed, in its place (the
/// others' rows copied as they are, their graph built anew); a clear message and no change
/// when the index holds none of them.
fn remove_local(mut index: PathBuf, a: &RemoveArgs) -> Result<()> {
    // Through a symbolic link, the index it points to shrinks (replaced by a rename beside
    // itself, as an add does).
    if std::fs::symlink_metadata(&index).is_ok_and(|m| m.file_type().is_symlink()) {
        index = std::fs::canonicalize(&index)
            .with_context(|| format!("following the link {}", index.display()))?;
    }
    let interrupt = Resumable::install(&index, "the rows kept, copied up to its last checkpoint")?;
    if a.pairs.iter().any(|p| p.as_os_str() == "-") {
        interrupt.stdin_again();
    }
    // A remove keeps no copy of standard input: its interrupted run, met with nothing on
    // standard input, is said as such (found by an audit: only "no pairs in <stdin>").
    let (records, none_in) = or_none_read(if a.pairs.iter().any(|p| p.as_os_str() == "-") {
        let from_stdin = read_pairs(Path::new("-"))?;
        if from_stdin.is_empty() && a.pairs.len() == 1 {
            Err(no_pairs_on_stdin(
                &index,
                relbert_index::lock::holder(&index),
            )?)
        } else {
            read_all_with(&a.pairs, Some(from_stdin))
        }
    } else {
        read_all(&a.pairs)
    })?;
    let total = records.len();
    check_there(&index)?;
    // Only the headers at open: the rows kept are verified before the copy, and those taken
    // out are not read, so a damaged row can be removed (a full check at open, which small
    // indexes get, refused it).
    let idx = Index::open_with(
        &index,
        relbert_index::OpenOptions {
            verify: relbert_index::Verify::Headers,
        },
    )
    .with_context(|| opening(&index))?;
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // A line repeating an earlier one is counted as repeated whether or not the index holds
    // the pair, as an add counts it ([`relbert::indexing::new_pairs`]): a repeated pair the
    // index lacked was counted as missing once per line, so the counts depended on it.
    let mut read = std::collections::HashSet::new();
    let (mut missing, mut repeated) = (0u64, 0u64);
    for r in &records {
        if !read.insert(r.key()) {
            repeated += 1;
            continue;
        }
        // Every spelling the index holds of the pair: one built before spellings were
        // merged can hold two, an older relbert stored the words as the file spells them,
        // and `don’t` is the stored `don't` as a query takes it
        // ([`relbert::pairs::PairRecord::lookup_spellings`]).
        let mut found = Vec::new();
        for (head, tail) in r.lookup_spellings() {
            for row in idx
                .lookup_all(&head, &tail)
                .with_context(|| format!("reading the pairs of {}", index.display()))?
            {
                if !found.contains(&row) {
                    found.push(row);
                }
            }
        }
        let before = rows.len();
        rows.extend(found.iter().copied().filter(|&row| seen.insert(row)));
        if found.is_empty() {
            missing += 1;
        } else if rows.len() == before {
            // Another spelling of a pair read before, found in the same rows.
            repeated += 1;
        }
    }
    let count = idx.count() as u64;
    let summary = |removed: usize, left: u64| {
        serde_json::json!({
            "index": index.display().to_string(), "pairs_read": total, "removed": removed,
            "not_in_index": missing, "repeated_in_input": repeated, "count": left,
        })
    };
    if rows.is_empty() {
        interrupt.unchanged();
        clear_leftovers(&index, &idx.id());
        if a.json {
            relbert::output::print_line(&summary(0, count).to_string())?;
        } else {
            relbert::output::print_line(&nothing_removed_line(
                (total, none_in.as_deref()),
                &index.display().to_string(),
                count,
                "index",
            ))?;
        }
        return Ok(());
    }
    if rows.len() as u64 == count {
        anyhow::bail!(
            "the pairs read are all {count} pairs of {}: removing them would leave an empty \
             index, which relbert does not make (remove the directory instead)",
            index.display()
        );
    }
    check_replaced_whole(&index, "remove")?;
    let opts = RebuildOptions {
        precision: None,
        hnsw: source_hnsw(&idx, None, None),
        force: true,
    };
    let started = std::time::Instant::now();
    let left = count - rows.len() as u64;
    with_copy_progress(&interrupt, left, |progress| {
        relbert_index::rebuild_without(idx, &index, &opts, &rows, progress)
    })
    .with_context(|| format!("removing {} pairs from {}", rows.len(), index.display()))?;
    tracing::info!(
        "index {}: {} removed in {:.1}s",
        index.display(),
        pairs(rows.len() as u64),
        started.elapsed().as_secs_f64()
    );
    if a.json {
        relbert::output::print_line(&summary(rows.len(), left).to_string())?;
    } else {
        relbert::output::print_line(&removed_line(
            rows.len() as u64,
            &index.display().to_string(),
            missing,
            repeated,
            left,
        ))?;
    }
    Ok(())
}

/// `relbert index remove --collection`: the pairs listed taken out of a Qdrant collection
/// (their points deleted by id, in batches), with progress on standard error, a check of the
/// count at the end, and the same summary as a local removal's, `collection` in place of
/// `index`; a clear message and no change when the collection holds none of them.
fn remove_from_collection(a: &RemoveArgs, collection: &str) -> Result<()> {
    use relbert::store::qdrant::remove::{delete, plan};
    let conn = removal_connection(a, collection)?;
    let target = conn.target();
    // A stop signal ends the run at once, whatever it is doing (reading standard input, a
    // request in flight): a delete is applied whole or not at all, is harmless twice, and
    // the ids are recorded before the first, so a rerun finds only the points still there.
    // The message is true at every stage, the deletes done included (the rest is then
    // nothing); the handler is disarmed (no message) once the run returns.
    let _interrupt = super::interrupt::CollectionLoad::install_saying(format!(
        "interrupted; {target} keeps every point not removed yet: the same command, with the \
         same pairs, removes the rest (a point is removed by its id, so removing it twice is \
         harmless; until it has, the pairs recorded for this removal are left out of reruns \
         of the collection's loads all the same)"
    ));
    let (records, none_in) = or_none_read(read_all(&a.pairs))?;
    let total = records.len();
    let looking = Progress::pairs(total as u64, "finding");
    let found = plan(&conn, &records, &|n| looking.set_position(n))
        .context("finding the pairs to remove (nothing was removed)")?;
    looking.finish();
    let summary = |removed: u64, left: u64| {
        serde_json::json!({
            "collection": collection, "pairs_read": total, "removed": removed,
            "not_in_index": found.not_held, "repeated_in_input": found.repeated, "count": left,
        })
    };
    if found.ids.is_empty() {
        if a.json {
            relbert::output::print_line(&summary(0, found.count).to_string())?;
        } else {
            relbert::output::print_line(&nothing_removed_line(
                (total, none_in.as_deref()),
                &target,
                found.count,
                "collection",
            ))?;
        }
        return Ok(());
    }
    let n = found.ids.len() as u64;
    let started = std::time::Instant::now();
    let removing = Progress::new(n, "removing", "points");
    let left = delete(&conn, &found, &|done| removing.set_position(done)).map_err(|e| {
        let hint = super::export::rerun_hint(
            &e,
            " (a rerun of the same command removes the points still there)",
        );
        anyhow::Error::new(e).context(format!("removing {n} points{hint}"))
    })?;
    removing.finish();
    tracing::info!(
        "{target}: {n} point(s) removed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    if a.json {
        relbert::output::print_line(&summary(n, left).to_string())?;
    } else {
        relbert::output::print_line(&removed_line(
            n,
            &target,
            found.not_held,
            found.repeated,
            left,
        ))?;
    }
    Ok(())
}

/// Refuses an add with pairs to encode while another process writes `index` (holds its
/// writer lock), before the model is loaded and the pairs screened: the lock itself refused
/// it only when the grown copy was begun, seconds later (found by a review). Asked as a
/// writer asks ([`relbert_index::lock::holder_past_grace`]); advice only, as the writer's
/// own lock decides.
fn refuse_if_written(index: &Path) -> Result<()> {
    match relbert_index::lock::holder_past_grace(index) {
        None => Ok(()),
        Some(holder) => Err(anyhow::Error::new(relbert_index::IndexError::Locked {
            path: index.to_path_buf(),
            holder,
        })
        .context(format!("adding to index {}", index.display()))),
    }
}

/// `relbert index add`: the pairs the index lacks, encoded with its own pair function, grown
/// into it with progress; a clear message and no change when there is nothing new.
fn add(mut a: AddArgs) -> Result<()> {
    // Through a symbolic link, the index it points to grows (it is replaced by a rename
    // beside itself, which must happen where the directory is, not where the link is).
    if std::fs::symlink_metadata(&a.index).is_ok_and(|m| m.file_type().is_symlink()) {
        a.index = std::fs::canonicalize(&a.index)
            .with_context(|| format!("following the link {}", a.index.display()))?;
    }
    let interrupt = Resumable::install(
        &a.index,
        "the rows of the index copied up to its last checkpoint",
    )?;
    let ((records, spool, saved), none_in) = or_none_read(read_input(&a.pairs, &a.index))?;
    if spool {
        interrupt.stdin_again();
    }
    // Resumed from its copy of standard input, which holds only the new pairs that could be
    // encoded, an add counts what else the first run read from what that run recorded
    // (`saved`), so that it reports what an uninterrupted add reports.
    let total = saved.map_or(records.len() as u64, |c| c.read);
    let saved = saved.unwrap_or_default();
    check_there(&a.index)?;
    let idx = Index::open(&a.index).with_context(|| opening(&a.index))?;
    let device = relbert::device::parse_device(&a.device)?;
    let load = || {
        let opts = relbert::EncoderOptions {
            template: a.template.clone(),
            aggregation: a.aggregation,
            batch_size: a
                .batch_size
                .unwrap_or_else(|| relbert::device::default_batch_size(&device)),
            device: device.clone(),
            ..Default::default()
        };
        index_encoder(&idx, a.model.as_deref(), opts).map_err(|e| {
            let hint = a.model.as_deref().map_or_else(String::new, |m| {
                super::hub_hint(m, super::is_missing_file(&e, m))
            });
            super::query::explain_model_error(
                e,
                &a.index.display().to_string(),
                &idx.meta().encoder,
                a.model.is_some(),
            )
            .context(format!("loading the model for {}{hint}", a.index.display()))
        })
    };
    // A model, template or aggregation given is checked against the index's pair function
    // even when nothing is new: a wrong one was accepted then, and refused only by the next
    // add that had a pair to encode. Without them nothing is loaded for an add of nothing.
    let given = a.model.is_some() || a.template.is_some() || a.aggregation.is_some();
    let mut found = new_pairs(&idx, records)?;
    if !found.records.is_empty() {
        refuse_if_written(&a.index)?;
    }
    let early = if given { Some(load()?) } else { None };
    found.in_index += saved.in_index;
    found.repeated += saved.repeated;
    // `in_index`: what the lookup found, and after a grow also the pairs it left out as held
    // in a spelling no lookup finds ([`relbert::store::indexing::AddReport::already_held`]),
    // so the counts add up to the pairs read.
    let summary = |added: u64, count: u64, too_long: u64, in_index: u64| {
        serde_json::json!({
            "index": a.index.display().to_string(), "pairs_read": total, "added": added,
            "already_in_index": in_index, "repeated_in_input": found.repeated,
            "skipped_long": too_long, "count": count,
        })
    };
    // Nothing new, or (`--skip-long`) every new pair too long to encode: the index is left
    // as it is, said so (found by an audit: an add of only pairs too long failed with "no
    // pairs left to encode", not naming the index nor saying it was unchanged).
    let nothing = |too_long: u64| -> Result<()> {
        interrupt.unchanged();
        clear_leftovers(&a.index, &idx.id());
        // The model given was checked above, and one loaded to screen the pairs is the
        // index's; the one recorded is checked here otherwise, so a moved model is said now
        // rather than by the next add that has pairs to encode.
        if !given && too_long == 0 {
            if let Some(problem) = recorded_model_problem(&idx, &a.index) {
                tracing::warn!("{problem}");
            }
        }
        if a.json {
            let doc = summary(0, idx.count() as u64, too_long, found.in_index);
            relbert::output::print_line(&doc.to_string())?;
            return Ok(());
        }
        let place = format!("{} ({})", a.index.display(), pairs(idx.count() as u64));
        // Only a resumed add that finds its copy's pairs all in the index (a kill came after
        // the grown index was published) can have repeated pairs with nothing new.
        let said = if let Some(inputs) = &none_in {
            format!("nothing to add: no pairs in {inputs}; {place} is unchanged")
        } else if too_long == 0 && found.repeated == 0 {
            let all = match total {
                1 => "the 1 pair read is".to_string(),
                n => format!("all {n} pairs read are"),
            };
            format!("nothing to add: {all} already in {place}; the index is unchanged")
        } else {
            let mut why = Vec::new();
            if too_long > 0 {
                why.push(format!(
                    "{} new to it {} too long to encode (left out by --skip-long)",
                    too_long,
                    if too_long == 1 { "is" } else { "are" }
                ));
            }
            if found.in_index > 0 {
                why.push(format!("{} already in it", found.in_index));
            }
            if found.repeated > 0 {
                why.push(format!("{} repeated", found.repeated));
            }
            format!(
                "nothing to add to {place}: of the {} read, {}; the index is unchanged",
                pairs(total),
                why.join(", ")
            )
        };
        relbert::output::print_line(&said)?;
        Ok(())
    };
    if found.records.is_empty() {
        return nothing(saved.too_long);
    }
    check_replaced_whole(&a.index, "add")?;
    let encoder = match early {
        Some(encoder) => encoder,
        None => load()?,
    };
    let (new, left) = screen_left(&encoder, found.records.clone(), a.skip_long)?;
    let too_long = left.len() as u64 + saved.too_long;
    if new.is_empty() {
        return nothing(too_long);
    }
    // The index is verified and copied into the partial directory first (minutes for a large
    // one, which showed no progress), then the new pairs are encoded, then inserted into the
    // graph: one display per stage, each made when its stage begins, so that its rate is its
    // own. A copy resumed after its last row reports nothing, and its display goes without a
    // line.
    let copying = std::sync::Mutex::new(Some(Progress::pairs(idx.count() as u64, "copying")));
    let copied = AtomicBool::new(false);
    let end_copying = || {
        let bar = copying.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(bar) = bar.filter(|_| copied.load(Ordering::Relaxed)) {
            bar.finish();
        }
    };
    let encoding = std::sync::OnceLock::new();
    let new_count = new.len() as u64;
    let started = AtomicBool::new(false);
    let mut graph_pb = None::<Progress>;
    // Whether a partial directory was there before this run: one this run makes and a
    // failure leaves is said in the error, not found later as a stray directory.
    let partial = relbert_index::partial_dir(&a.index)?;
    let had_partial = std::fs::symlink_metadata(&partial).is_ok();
    let report = add_to_index(
        &encoder,
        idx,
        &new,
        0,
        spool.then_some(AddCounts {
            read: total,
            in_index: found.in_index,
            repeated: found.repeated,
            too_long,
        }),
        &|n| {
            let pb = encoding.get_or_init(|| {
                end_copying();
                interrupt.keeps(
                    "a copy of the index and the new pairs encoded up to its last checkpoint",
                );
                Progress::pairs(new_count, "encoding")
            });
            rows_done(pb, &started, n)
        },
        &mut |p| match p.stage {
            Stage::Copying => {
                copied.store(true, Ordering::Relaxed);
                let bar = copying.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(bar) = bar.as_ref() {
                    bar.set_position(p.done);
                }
            }
            Stage::Graph => graph_pb
                .get_or_insert_with(|| {
                    if let Some(pb) = encoding.get() {
                        pb.finish();
                    }
                    interrupt.keeps(
                        "a copy of the index and every new pair, encoded (a rerun builds only \
                         the graph again)",
                    );
                    Progress::new(p.total, "graph", "pairs")
                })
                .set_position(p.done),
            Stage::Writing => interrupt.committing(),
        },
    )
    .map_err(|e| {
        let note = left_partial_note(&partial, had_partial, &e);
        let err = anyhow::Error::new(e).context(format!("adding to index {}", a.index.display()));
        match note {
            Some(note) => anyhow::anyhow!("{err:#}; {note}"),
            None => err,
        }
    })?;
    if let Some(b) = &graph_pb {
        b.finish();
    }
    if let Some(pb) = encoding.get() {
        pb.finish();
    }
    let added = report.count - report.base_count;
    let in_index = found.in_index + report.already_held;
    if a.json {
        let mut doc = summary(added, report.count, too_long, in_index);
        doc["encode_secs"] = serde_json::json!(report.encode_secs);
        doc["graph_secs"] = serde_json::json!(report.graph_secs);
        doc["resumed_rows"] = serde_json::json!(report.resumed_rows);
        relbert::output::print_line(&doc.to_string())?;
    } else {
        let skipped = match too_long {
            0 => String::new(),
            n => format!(", {n} too long to encode, left out"),
        };
        relbert::output::print_line(&format!(
            "added {} to {} ({} → {} pairs; {} already there, {} repeated{skipped}); \
             encoding {:.1}s, graph {:.1}s",
            pairs(added),
            a.index.display(),
            super::progress::group(report.base_count),
            super::progress::group(report.count),
            super::progress::group(in_index),
            super::progress::group(found.repeated),
            report.encode_secs,
            report.graph_secs
        ))?;
    }
    Ok(())
}

/// What an `index add` that failed with `err` says of the partial directory `partial` when
/// this run made it (`existed`: one was there before) and left it: the grow keeps it after
/// a failure once the index is copied into it or it holds the copy of standard input, and
/// the same add run again resumes from it. Nothing for a directory an earlier run left (the failure's
/// own message is about it, if anything), nor for a damaged one, whose error already says
/// to remove it.
fn left_partial_note(partial: &Path, existed: bool, err: &relbert::Error) -> Option<String> {
    if existed || std::fs::symlink_metadata(partial).is_err() {
        return None;
    }
    // These errors say themselves what the partial directory is and what to do with it
    // (a full disk's holds the add to resume; an unremoved old copy is the old index; a
    // publication refused by a mount point leaves the finished index there, with no
    // checkpoint, which the next run removes rather than resumes: found by a review, the
    // note said it resumed). The others come before this run made a partial directory:
    // one there now is another writer's (found by a review: the loser of two adds started
    // together was told to remove the running winner's), or an earlier run's.
    if matches!(
        err,
        relbert::Error::Index(
            relbert_index::IndexError::PartialDamaged { .. }
                | relbert_index::IndexError::NoSpace { .. }
                | relbert_index::IndexError::OldIndexLeft { .. }
                | relbert_index::IndexError::MountPoint { .. }
                | relbert_index::IndexError::Locked { .. }
                | relbert_index::IndexError::IndexChanged { .. }
                | relbert_index::IndexError::WriteProtected { .. }
                | relbert_index::IndexError::PartialMismatch { .. }
                | relbert_index::IndexError::NotOurs { .. }
        )
    ) {
        return None;
    }
    let spool = partial.join("input.spool").is_file();
    Some(format!(
        "{} keeps what this add had done{}: the same add run again resumes from it{}; to give \
         it up, remove {}",
        partial.display(),
        if spool {
            ", with its copy of standard input"
        } else {
            ""
        },
        if spool {
            " (with `--pairs -` and nothing on standard input, from that copy)"
        } else {
            ""
        },
        partial.display()
    ))
}

/// The error for an index directory that is not there: an unfinished build of it said as
/// [`opening`] says it, else that there is no index and how to make one.
pub(crate) fn no_index(dir: &Path) -> anyhow::Error {
    match unfinished(dir) {
        Some(unfinished) => anyhow::anyhow!("{unfinished}"),
        None => anyhow::anyhow!(
            "no index at {} (build one with relbert index build, or run relbert query once to \
             build the default index)",
            dir.display()
        ),
    }
}

/// Refuses an index directory that does not exist with [`no_index`], before it is opened:
/// the open's own error named the path twice ("opening nope: nope: No such file or
/// directory", found by an audit).
pub(crate) fn check_there(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(no_index(dir)),
        _ => Ok(()),
    }
}

/// What [`opening`] says of `dir` when it is an unfinished build, add or rebuild (a
/// checkpoint in it, or none there and one in `DIR.partial`), for `serve`'s "no index" too.
pub(crate) fn unfinished(dir: &Path) -> Option<String> {
    const UNFINISHED: &str = "an unfinished build, add or rebuild (a checkpoint and no index \
                              yet); run that command again to finish it";
    let partial = {
        let mut name = dir.as_os_str().to_owned();
        name.push(".partial");
        PathBuf::from(name)
    };
    if dir.join("checkpoint").is_file() {
        Some(format!("opening {}: it is {UNFINISHED}", dir.display()))
    } else if std::fs::symlink_metadata(dir).is_err() && partial.join("checkpoint").is_file() {
        Some(format!(
            "opening {}: there is no index there yet: {} is {UNFINISHED} (if it is still \
             running, wait for it to end)",
            dir.display(),
            partial.display()
        ))
    } else {
        None
    }
}

/// The context of an index that failed to open: a partial build has no meta until it is
/// finished, an index being built is only `DIR.partial` until then, and a directory without
/// a meta is no index, so each is said in words instead of the bare "meta: No such file".
pub(crate) fn opening(dir: &Path) -> String {
    if dir.join("meta").is_file() {
        format!("opening {}", dir.display())
    } else if let Some(unfinished) = unfinished(dir) {
        unfinished
    } else if dir.is_dir()
        && matches!(
            std::fs::symlink_metadata(dir.join("meta")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound
        )
    {
        format!(
            "opening {}: it is not a relbert index (it has no meta file); give the directory \
             an `index build` wrote",
            dir.display()
        )
    } else {
        format!("opening {}", dir.display())
    }
}

/// For an `index add` or `index remove` of `dir` that found nothing to do: removes what a
/// killed run left beside the index or in it, as the next run that changes it would
/// ([`relbert_index::clear_leftovers`], which says what went, as every run that removes
/// one does); and warns of an interrupted run its partial directory holds
/// ([`pending_advice`], `now` being the id of the index `dir` holds). The command having
/// done what was asked, a failure here is a warning, naming what is left and why.
fn clear_leftovers(dir: &Path, now: &str) {
    match relbert_index::clear_leftovers(dir) {
        Ok(found) => {
            if let Some(run) = &found.unfinished {
                tracing::warn!("{}", pending_advice(run, dir, Some(now)));
            }
            for e in &found.left {
                tracing::warn!("{e}");
            }
        }
        Err(e) => tracing::warn!("{e:#}"),
    }
}

/// What to do about the interrupted `run` that the partial directory of the index `dir`
/// holds, `now` being the id of the index `dir` holds (if it is open). Said by a run that
/// found nothing to do and by `index info --verify`, whose own command is not the one to run
/// again: an add or a remove of another index than `dir` holds now can never be resumed, so
/// only giving it up is advised (found by an audit: "run that add again" was advised, and an
/// add of pairs the new index held found nothing to do and gave the same advice); one of
/// `dir`'s index is named with the command and the pairs it needs.
///
/// A run whose writer lock another process holds ([`relbert_index::PendingRun::running`]) is
/// most likely going on, not interrupted: it is waited for (found by a review: `index info`
/// during an add advised removing its partial directory, and doing so killed the add).
fn pending_advice(run: &relbert_index::PendingRun, dir: &Path, now: Option<&str>) -> String {
    let partial = run.partial.display();
    let cmd = run.command;
    if let Some(holder) = &run.running {
        // The lock's holder is most likely the run that left the partial directory, but may
        // be another writer for a moment (a remove about to be refused, a query's look):
        // the run is named as running only when the holder's note names its command.
        let same = holder.contains(&format!("index {cmd} "));
        return if same {
            format!(
                "an `index {cmd}` of {} is running now ({holder}), writing {partial}; wait for \
                 it to end",
                dir.display()
            )
        } else {
            format!(
                "{partial} holds an `index {cmd}` of {}, which another process has locked now \
                 ({holder}); wait for it to end, then ask again",
                dir.display()
            )
        };
    }
    let copy = if run.spooled {
        " (with the copy of standard input it holds)"
    } else {
        ""
    };
    if let (Some(now), Some(was)) = (now, run.source.as_deref()) {
        if run.stale_for(now) {
            return format!(
                "{partial} holds an interrupted `index {cmd}` of index {was}, which {} no \
                 longer holds (it holds index {now}), so it can never be resumed: remove \
                 {partial}{copy} to give it up",
                dir.display()
            );
        }
    }
    let how = match cmd {
        "add" | "remove" => {
            let stdin = if run.spooled {
                ", or with `--pairs -` and nothing on standard input (from its copy of them)"
            } else {
                ""
            };
            format!(
                "run `relbert index {cmd} --index {}` with the pairs that {cmd} was given{stdin} \
                 to finish it",
                dir.display()
            )
        }
        _ => format!("run that {cmd} again (with the same pairs and flags) to finish it"),
    };
    format!(
        "{partial} holds an interrupted `index {cmd}` of {}: {how}, or remove {partial}{copy} \
         to give it up",
        dir.display()
    )
}

/// Refuses, before any work, an `index add` or `index remove` (`what`: "add" or "remove")
/// of an index directory that holds other files than the index's: the new index replaces the
/// whole directory, so relbert leaves it as it is (the index crate's refusal speaks of
/// `--force`, which these commands do not have).
fn check_replaced_whole(dir: &Path, what: &str) -> Result<()> {
    heal_record(dir)?;
    match relbert_index::recognise_index(dir) {
        Err(relbert_index::IndexError::NotOurs { why, .. }) => anyhow::bail!(
            "{} is not only an index: {why}; `index {what}` replaces the whole directory with \
             the new index, so it leaves it as it is: move that out of {} and run the {what} \
             again",
            dir.display(),
            dir.display()
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed add left the partial directory it made without a word (found by an audit:
    /// the user met a stray `DIR.partial`, which the next add resumed). The error now says
    /// what it holds and what to do, only for a directory this run made.
    #[test]
    fn a_partial_directory_this_add_made_and_left_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("idx.partial");
        let err = || relbert::Error::Index(relbert_index::IndexError::InvalidParameter("x".into()));
        assert_eq!(
            left_partial_note(&partial, false, &err()),
            None,
            "none left"
        );
        std::fs::create_dir(&partial).unwrap();
        let note = left_partial_note(&partial, false, &err()).unwrap();
        let shown = partial.display().to_string();
        assert!(note.starts_with(&shown) && note.ends_with(&format!("remove {shown}")));
        assert!(
            note.contains("resumes") && !note.contains("standard input"),
            "{note}"
        );
        std::fs::write(partial.join("input.spool"), "# relbert input spool 1\n").unwrap();
        let note = left_partial_note(&partial, false, &err()).unwrap();
        assert!(note.contains("copy of standard input"), "{note}");
        assert_eq!(
            left_partial_note(&partial, true, &err()),
            None,
            "an earlier run's"
        );
        let damaged = relbert::Error::Index(relbert_index::IndexError::PartialDamaged {
            path: partial.join("vectors"),
            partial: partial.clone(),
            reason: "x".into(),
        });
        assert_eq!(left_partial_note(&partial, false, &damaged), None);
        // Another writer holds the lock: the partial directory there is its own.
        let locked = relbert::Error::Index(relbert_index::IndexError::Locked {
            path: tmp.path().join("idx"),
            holder: "pid 1".into(),
        });
        assert_eq!(left_partial_note(&partial, false, &locked), None);
    }

    /// Found by a review: an add whose publication met a mount point (mounted over the index
    /// after the preflight) got the note that the same add resumes from the partial
    /// directory, which holds the finished index without a checkpoint: the next run removes
    /// it. The error itself says where the index stays, and no note is added.
    #[test]
    fn a_publication_refused_by_a_mount_point_adds_no_resume_note() {
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("idx.partial");
        std::fs::create_dir(&partial).unwrap();
        let mounted = relbert::Error::Index(relbert_index::IndexError::MountPoint {
            path: tmp.path().join("idx"),
            run: "add",
            left: Some(partial.clone()),
        });
        assert_eq!(left_partial_note(&partial, false, &mounted), None);
    }

    /// Found by an audit: `index build --collection C --add` (or a resumed build) without
    /// `--dtype` encoded at the flag's default, float32, into a bf16 collection under its
    /// bf16 record. Without `--dtype` the collection's format is used; a `--dtype` given
    /// that differs is refused, naming both; a new collection takes the flag.
    #[test]
    fn a_build_into_a_collection_encodes_at_its_recorded_format() {
        use relbert::Dtype;
        let at = |dtype| {
            relbert::indexing::encoder_info(&relbert::relation::EncoderIdentity {
                model: "m".into(),
                weights_sha256: "00".into(),
                template: "<subj> <mask> <obj>".into(),
                aggregation: "mask".into(),
                offset_weight: None,
                dtype,
                files_digest: None,
            })
        };
        let bf16 = at(Dtype::Bf16);
        let target = "http://q:6334 collection c";
        assert_eq!(
            collection_dtype(Dtype::F32, false, Some(&bf16), target).unwrap(),
            Dtype::Bf16
        );
        assert_eq!(
            collection_dtype(Dtype::Bf16, true, Some(&bf16), target).unwrap(),
            Dtype::Bf16
        );
        let err = collection_dtype(Dtype::F32, true, Some(&bf16), target)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--dtype")
                && err.contains("computed at bf16")
                && err.contains("--dtype f32")
                && err.contains(target),
            "{err}"
        );
        assert_eq!(
            collection_dtype(Dtype::F32, false, Some(&at(Dtype::F32)), target).unwrap(),
            Dtype::F32
        );
        for given in [false, true] {
            assert_eq!(
                collection_dtype(Dtype::F16, given, None, target).unwrap(),
                Dtype::F16
            );
        }
        let odd = relbert_index::EncoderInfo {
            aggregation: "mask+dtype:fp8".into(),
            ..bf16
        };
        let err = collection_dtype(Dtype::F32, false, Some(&odd), target)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"fp8\"") && err.contains(target), "{err}");
    }
}
