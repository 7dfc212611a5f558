//! `relbert index export`: an index into a Qdrant collection, or into word2vec / `.npy` files.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use relbert::output::{check_replaceable, check_sidecar_replaceable, Format, OutputKind};
use relbert::store::files::{older_pair_list, FileExport, FileFormat};
use relbert::store::qdrant::export::{
    export_index_resuming, ExportOptions, ExportReport, LayoutFlags,
};
use relbert::store::qdrant::settings::{
    CollectionSettings, Quantization, MAX_REPLICATION, MAX_SHARDS,
};
use relbert::store::qdrant::{
    check_collection_name, parse_urls, Connection, UrlOrigin, MAX_RETRY_FOR, URL_ENV,
};
use relbert_index::{Index, Precision};

use super::Progress;

/// Arguments of `relbert index export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Source index directory.
    #[arg(long, value_parser = super::os(super::index_dir_at))]
    index: PathBuf,
    /// Qdrant collection to export into (created when absent; a rerun resumes).
    #[arg(long, conflicts_with_all = ["format", "out"], value_parser = super::os(collection_name))]
    collection: Option<String>,
    #[command(flatten)]
    target: CollectionArgs,
    // The collection's flags below are refused beside --out, where they would be ignored
    // (see [`CollectionArgs`]: `requires` alone is waived next to --format).
    /// Points per upsert request.
    #[arg(long, default_value_t = ExportOptions::default().batch, requires = "collection", conflicts_with = "out", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batch: usize,
    /// Upsert requests in flight at once.
    #[arg(long, default_value_t = ExportOptions::default().parallel, requires = "collection", conflicts_with = "out", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    parallel: usize,
    /// Store a new collection's vectors as float16 (half the disk of every replica; default:
    /// the index's own precision, so an --f16 index makes a float16 collection).
    #[arg(long, requires = "collection", conflicts_with_all = ["f32", "out"])]
    f16: bool,
    /// Store a new collection's vectors as float32 even from a float16 index.
    #[arg(long, requires = "collection", conflicts_with = "out")]
    f32: bool,
    /// File format (instead of a collection).
    #[arg(long, value_enum, requires = "out")]
    format: Option<FileFormat>,
    /// Output file for --format.
    #[arg(long, requires = "format", value_parser = super::os(super::output_file_at))]
    out: Option<PathBuf>,
    /// Replace an existing output file (only one relbert writes in that format). Not for
    /// --collection: an export never drops a collection (a rerun resumes it).
    // Refused beside --collection by name: `requires` alone is waived there, since
    // --collection conflicts with --format (found by a review: `--collection --force` was
    // taken, status 0, and did nothing).
    #[arg(long, requires = "format", conflicts_with = "collection")]
    force: bool,
    /// Print a JSON summary on standard output. Of a file export: the format, the files
    /// written, the vectors written, every pair left out of a word2vec file (its key an
    /// earlier pair's; the warning naming the first of those stays on standard error), and
    /// where the vectors come from (the index's id and its encoder, as `index info --json`
    /// gives them: the files themselves have no room to say which model made them). Of a
    /// collection export: the counts `index build --collection --json` gives (points
    /// written, already in the collection, resumed, the collection's count and sources).
    #[arg(long)]
    json: bool,
}

/// Where a collection is and how a new one is laid out: the flags `index export` and
/// `index build` share for `--collection`. Each is refused beside `--out` (a file or a local
/// index), where it would be ignored (`requires` alone is not enough: clap waives it when an
/// argument that conflicts with `--collection` is given).
#[derive(Args, Debug)]
pub struct CollectionArgs {
    /// Qdrant gRPC URL(s), comma-separated for several nodes of a cluster (default:
    /// $RELBERT_QDRANT_URL); used with --collection.
    #[arg(long, requires = "collection", conflicts_with = "out", value_parser = super::os(qdrant_spec))]
    pub qdrant: Option<String>,
    /// How long each call to Qdrant keeps retrying a node that fails or restarts, in seconds
    /// (default: $RELBERT_QDRANT_RETRY_SECS, else 10 attempts, about 21 s; at most 86400).
    /// Give the time a node's restart or a rolling upgrade may take, so the load waits it out
    /// instead of stopping (a rerun resumes a stopped load either way).
    // The variable is read by [`retry_budget`], not by clap: a value clap took from the
    // environment would count as the flag given, and refuse an export to a file.
    #[arg(long, value_name = "SECONDS", requires = "collection", conflicts_with = "out", value_parser = retry_secs)]
    pub retry_secs: Option<u64>,
    // Options, not defaults: an existing collection keeps its layout, and only a flag given
    // draws the warning that says so (see [`CollectionArgs::given`]).
    /// Shards of a new collection (default: one per node of the cluster, as Qdrant counts
    /// them when it creates the collection; 1 on a single node).
    #[arg(long, requires = "collection", conflicts_with = "out", value_parser = shards)]
    pub shards: Option<u32>,
    /// Copies of each shard of a new collection, on different nodes (default 1: each point
    /// on one node only, which a new collection on a cluster of several nodes warns of; 2
    /// keeps the points of a node that is down within reach).
    #[arg(long, requires = "collection", conflicts_with = "out", value_parser = replication)]
    pub replication: Option<u32>,
    /// Vector memory layout of a new collection (default int8).
    #[arg(long, value_enum, requires = "collection", conflicts_with = "out")]
    pub quantization: Option<Quantization>,
    /// Add these pairs to a collection made from another source (an index before it grew,
    /// another slice of a corpus) with the same model: pairs both hold are written once,
    /// nothing is deleted. Without it such a collection is refused.
    #[arg(long, requires = "collection", conflicts_with = "out")]
    pub add: bool,
}

/// The message of an [`relbert::Error::InvalidArgument`] without its "invalid value for
/// --flag" (clap says that itself, with the value), or the error's text.
fn message_of(e: relbert::Error) -> String {
    match e {
        relbert::Error::InvalidArgument { message, .. } => message,
        e => e.to_string(),
    }
}

/// A `--collection` name ([`check_collection_name`]), refused as a bad command line (status
/// 2) before anything is read or sent.
pub(crate) fn collection_name(s: &std::ffi::OsStr) -> std::result::Result<String, String> {
    let name = super::text(s)?;
    check_collection_name(&name).map_err(message_of)?;
    Ok(name)
}

/// A `--qdrant` value ([`parse_urls`]), kept as given; refused as a bad command line (status
/// 2) before anything is read or sent.
pub(crate) fn qdrant_spec(s: &std::ffi::OsStr) -> std::result::Result<String, String> {
    let spec = super::text(s)?;
    parse_urls(&spec).map_err(message_of)?;
    Ok(spec)
}

/// A count from 1 to `max`, for a flag whose fuller reason lies with `why`.
fn count_to(s: &str, max: u32, why: &str) -> std::result::Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        Ok(_) => Err(format!("must be from 1 to {max}{why}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The environment variable that gives `--retry-secs` when the flag is not given.
pub(crate) const RETRY_ENV: &str = "RELBERT_QDRANT_RETRY_SECS";

/// The retry budget of a load's connection: `--retry-secs`, else `$RELBERT_QDRANT_RETRY_SECS`
/// (empty: unset), else none. A bad value of the variable is named as the variable's, with
/// status 2, as `qdrant_urls` names `$RELBERT_QDRANT_URL`'s.
pub(crate) fn retry_budget(flag: Option<u64>) -> Result<Option<std::time::Duration>> {
    let secs = match (flag, std::env::var_os(RETRY_ENV)) {
        (Some(secs), _) => secs,
        (None, None) => return Ok(None),
        (None, Some(v)) if v.is_empty() => return Ok(None),
        (None, Some(v)) => {
            let why = match v.to_str() {
                Some(text) => retry_secs(text),
                None => Err("not UTF-8 text".into()),
            };
            why.map_err(|why| {
                super::usage(format!(
                    "invalid value {v:?} of ${RETRY_ENV} (used as --retry-secs is not given): \
                     {why}"
                ))
            })?
        }
    };
    Ok(Some(std::time::Duration::from_secs(secs)))
}

/// A `--retry-secs`: whole seconds up to [`MAX_RETRY_FOR`].
pub(crate) fn retry_secs(s: &str) -> std::result::Result<u64, String> {
    let max = MAX_RETRY_FOR.as_secs();
    match s.trim().parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        Ok(_) => Err(format!("must be at most {max} (a day)")),
        Err(e) => Err(format!("{e} (whole seconds, e.g. 300)")),
    }
}

/// A `--shards`: 1 to [`MAX_SHARDS`].
fn shards(s: &str) -> std::result::Result<u32, String> {
    count_to(
        s,
        MAX_SHARDS,
        " (the cluster makes each shard through its consensus: 1,024 did not finish within a \
         minute on a 3-node test cluster)",
    )
}

/// A `--replication`: 1 to [`MAX_REPLICATION`].
fn replication(s: &str) -> std::result::Result<u32, String> {
    count_to(s, MAX_REPLICATION, "")
}

impl CollectionArgs {
    /// Refuses layout flags that do not work together (each is checked alone when parsed):
    /// more shard replicas in all than relbert creates. A bad command line, status 2.
    pub fn check_layout(&self) -> Result<()> {
        self.settings()
            .validate()
            .map_err(|e| super::usage(e.to_string()))
    }

    /// A connection to `collection` at these URLs, after [`CollectionArgs::check_layout`].
    pub fn connect(&self, collection: &str) -> Result<Connection> {
        self.check_layout()?;
        let urls = qdrant_urls(self.qdrant.as_deref())?;
        // Read before the client and its runtime are made: a bad variable is a bad command
        // line, refused before any work.
        let budget = retry_budget(self.retry_secs)?;
        let conn =
            Connection::with_origin(&urls, UrlOrigin::of(self.qdrant.as_deref()), collection)?;
        if let Some(budget) = budget {
            conn.set_retry_for(budget);
        }
        Ok(conn)
    }

    /// The settings of a new collection (HNSW parameters: relbert's defaults). A shard count
    /// not given is left to the cluster when the collection is created, one shard per node
    /// ([`CollectionArgs::given`] says so to the load); the 1 here is what limits are checked
    /// against ([`CollectionArgs::check_layout`]).
    pub fn settings(&self) -> CollectionSettings {
        let d = CollectionSettings::default();
        CollectionSettings {
            shards: self.shards.unwrap_or(d.shards),
            replication: self.replication.unwrap_or(d.replication),
            quantization: self.quantization.unwrap_or(d.quantization),
            ..d
        }
    }

    /// Which layout flags were given, `f16` saying whether `--f16` (or an export's `--f32`)
    /// was: an existing collection keeps its layout, and a warning names the flags given
    /// that it overrides, not the defaults of those that were not.
    pub fn given(&self, f16: bool) -> LayoutFlags {
        LayoutFlags {
            shards: self.shards.is_some(),
            replication: self.replication.is_some(),
            quantization: self.quantization.is_some(),
            f16,
        }
    }
}

/// Logs what a load into a collection did.
pub fn log_load(conn: &Connection, report: &ExportReport) {
    tracing::info!(
        "{}: {} points {} in {:.1}s ({:.0} points/s){}{}; the collection holds {}{}",
        conn.target(),
        report.sent,
        if report.created {
            "written into a new collection"
        } else {
            "written (existing collection)"
        },
        report.secs,
        report.sent as f64 / report.secs.max(1e-9),
        if report.resumed > 0 {
            format!(", after {} written by an interrupted run", report.resumed)
        } else {
            String::new()
        },
        if report.held > 0 {
            format!(
                ", {} not written: the collection held them already (kept as they were, \
                 labels included)",
                report.held
            )
        } else {
            String::new()
        },
        report.count,
        if report.sources > 1 {
            format!(" from {} sources", report.sources)
        } else {
            String::new()
        }
    );
}

/// The Qdrant URLs from `--qdrant`, else from `$RELBERT_QDRANT_URL`; a bad value of the
/// variable is named as the variable's (it was reported as "invalid value for --qdrant" when
/// no --qdrant was given) and exits with status 2, as a bad `--qdrant` does.
pub fn qdrant_urls(flag: Option<&str>) -> Result<Vec<String>> {
    if let Some(spec) = flag {
        return Ok(parse_urls(spec)?);
    }
    let spec = match std::env::var(URL_ENV) {
        Ok(spec) => spec,
        Err(std::env::VarError::NotPresent) => {
            return Err(super::usage(format!(
                "--collection needs --qdrant URL (or ${URL_ENV}): the Qdrant gRPC URL, e.g. \
                 http://127.0.0.1:6334"
            )))
        }
        Err(std::env::VarError::NotUnicode(v)) => {
            return Err(super::usage(format!(
                "invalid value {v:?} of ${URL_ENV} (used as --qdrant is not given): not UTF-8 \
                 text"
            )))
        }
    };
    // Status 2, as clap gives a bad value of a flag or of a variable it reads itself: the
    // variable stands in for the flag.
    parse_urls(&spec).map_err(|e| {
        super::usage(format!(
            "invalid value of ${URL_ENV} (used as --qdrant is not given): {}",
            message_of(e)
        ))
    })
}

/// What `index export` says when given neither a collection nor a file to export into.
const WHERE_TO: &str =
    "say where to export: --qdrant URL --collection NAME, or --format F --out PATH";

/// Runs `relbert index export`.
pub fn run(a: ExportArgs) -> Result<()> {
    // The command line first (status 2), before the index is opened.
    if a.collection.is_none() && (a.format.is_none() || a.out.is_none()) {
        return Err(super::usage(WHERE_TO));
    }
    if a.collection.is_some() {
        a.target.check_layout()?;
    }
    // Where `--out -` means standard output elsewhere (embed, pairs), an export would make
    // a file named `-`: it writes a file renamed into place (and a .npy its pair list beside).
    if a.out.as_ref().is_some_and(|o| o.as_os_str() == "-") {
        return Err(super::usage(
            "invalid value for --out: `-` (standard output) is not supported by index export; \
             give a file path",
        ));
    }
    // Before the index is opened and before the output's lock is taken beside --out: a file
    // written in an index directory (a lock file included) makes it "not only an index",
    // and the next `index add` refused it until the file was moved out.
    if let (Some(out), Some(format)) = (&a.out, a.format) {
        // Before the lock, which makes missing folders (and left them behind).
        super::check_out_folder(out, "--out")?;
        super::not_in_an_index(out, "--out")?;
        // `--format word2vec --out y.npy` wrote word2vec under `.npy`, which NumPy then
        // failed on: refused as embed refuses a --format its extension contradicts.
        // The name clap takes on the command line, so the two cannot drift apart.
        let name = clap::ValueEnum::to_possible_value(&format)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        super::embed::check_extension(&name, file_format(format).0, out, |named| {
            match named {
                Format::Npy => {
                    "; give --out another name (a word2vec file has no fixed \
                     extension: .bin, .txt), or use --format npy"
                }
                Format::Jsonl => {
                    "; give --out another name (JSON lines are what relbert \
                     embed writes)"
                }
            }
            .to_string()
        })?;
        super::embed::check_not_a_pair_list_name(out)?;
        super::embed::check_room_beside(out, file_format(format).1)?;
    }
    super::index::check_there(&a.index)?;
    // Only the headers at open, as `index rebuild` opens its source: an export reads no
    // graph, so an index whose graph alone is damaged is still exported whole (the full
    // check at open of small indexes refused it), and nothing claims the graph was checked.
    // The two files it copies out are verified whole before anything is written (found by a
    // review: checked only block by block as read, an export succeeded from a `pairs` file
    // whose lookup table, which it does not read, was damaged); its reads then find every
    // block verified, so this is one read of each file more, not a second checksum. It runs
    // after the quick refusals (an output that exists or is locked, an unreachable server),
    // which a whole read of a large index would otherwise keep waiting (review).
    let index = Index::open_with(
        &a.index,
        relbert_index::OpenOptions {
            verify: relbert_index::Verify::Headers,
        },
    )
    .with_context(|| super::index::opening(&a.index))?;
    let verify = || -> Result<()> {
        tracing::info!("checking {} before exporting it", a.index.display());
        index
            .verify_vectors_and_pairs()
            .with_context(|| format!("checking {} before exporting it", a.index.display()))
    };
    let n = index.count() as u64;
    if let Some(collection) = &a.collection {
        let conn = a.target.connect(collection)?;
        verify()?;
        let settings = CollectionSettings {
            f16: a.f16 || (!a.f32 && index.meta().precision == Precision::F16),
            ..a.target.settings()
        };
        let opts = ExportOptions {
            batch: a.batch,
            parallel: a.parallel,
            add: a.target.add,
            ..ExportOptions::default()
        };
        let pb = Progress::pairs(n, "exporting");
        let asked = a.target.given(a.f16 || a.f32);
        let interrupt = super::interrupt::CollectionLoad::install(&conn);
        // The rows an interrupted run wrote are shown as done, and left out of the rate and
        // the ETA, as `index build` leaves them (found by a review: they were counted as
        // sent in this run's first moment).
        let report = export_index_resuming(
            &index,
            &conn,
            &settings,
            asked,
            &opts,
            &|resumed| pb.resume_from(resumed),
            &|d| pb.set_position(d),
        )
        .map_err(|e| {
            let hint = rerun_hint(
                &e,
                " (a rerun resumes: points are overwritten, never doubled)",
            );
            let at = format!(
                "exporting {} into {}{hint}",
                a.index.display(),
                conn.target()
            );
            anyhow::Error::new(e).context(at)
        })?;
        // Loaded: a signal from now on must not say the load can be resumed.
        drop(interrupt);
        pb.finish();
        log_load(&conn, &report);
        if a.json {
            let doc = collection_json(collection, &a.index, n, &report);
            relbert::output::print_line(&doc.to_string())?;
        }
        return Ok(());
    }
    let (Some(format), Some(out)) = (a.format, a.out.as_ref()) else {
        return Err(super::usage(WHERE_TO));
    };
    let side_format = file_format(format).1;
    let interrupt = super::embed::lock_output(out, side_format)?;
    let committing = || interrupt.committing();
    let kind = match format {
        FileFormat::Npy => OutputKind::Npy,
        FileFormat::Word2vec | FileFormat::Word2vecText => OutputKind::Word2vec,
    };
    // An array an older relbert wrote has its pair list where that build named it
    // (`emb.train` -> `emb.pairs.tsv`): recognised by that list, it is relbert's to replace
    // (so, without --force, the refusal says to pass it).
    let older_list = match format {
        FileFormat::Npy => older_pair_list(out),
        _ => None,
    };
    match &older_list {
        None => check_replaceable(out, a.force, kind)?,
        Some(_) if !a.force => {
            return Err(relbert::Error::Exists { path: out.clone() }.into());
        }
        Some(_) => {}
    }
    if format == FileFormat::Npy {
        // A pair list naming this array, with no array there, is what a run killed between
        // the two renames left: redone without --force, as embed redoes it.
        check_sidecar_replaceable(out, a.force)?;
    }
    verify()?;
    let about = |e: relbert::Error| {
        let e = anyhow::Error::new(e);
        let note = super::embed::side_file_note(&e, out, side_format)
            .unwrap_or_else(|| format!("exporting {} to {}", a.index.display(), out.display()));
        e.context(note)
    };
    // Made under the handler's state, which a signal takes to remove the temporary files:
    // made outside it, a file created just after the handler's removal was left, as embed's
    // were (found by an audit of embed).
    let held = interrupt.with();
    let file = FileExport::create(&index, format, out, a.force).map_err(about)?;
    drop(held);
    let pb = Progress::pairs(n, "writing");
    let report = file
        .write(&|d| pb.set_position(d), &committing)
        .map_err(about)?;
    pb.finish();
    if report.duplicate_keys > 0 {
        let named: Vec<String> = report
            .dropped
            .iter()
            .take(relbert::store::files::NAMED_DROPS)
            .map(|(pair, first, key)| {
                // Quoted and escaped: the words differ, often by a character that does not
                // show (a non-breaking space, a tab).
                format!(
                    "({:?}, {:?}) as ({:?}, {:?}): {key}",
                    pair[0], pair[1], first[0], first[1]
                )
            })
            .collect();
        let more = report.duplicate_keys as usize - named.len();
        tracing::warn!(
            "{} pair(s) left out of {}: a word2vec file holds each key once, and their key \
             (head__tail, spaces as _) is an earlier pair's: {}{}; --format npy keeps every \
             pair, with the exact words in its pair list",
            super::progress::group(report.duplicate_keys),
            out.display(),
            named.join("; "),
            if more > 0 {
                format!(" and {} more", super::progress::group(more as u64))
            } else {
                String::new()
            }
        );
    }
    tracing::info!(
        "{}: {} vectors written",
        out.display(),
        super::progress::group(report.written)
    );
    if let Some(list) = older_list {
        relbert::store::files::warn_older_list_left(out, &list);
    }
    if a.json {
        let doc = export_json(format, out, &report, &a.index, &index);
        relbert::output::print_line(&doc.to_string())?;
    }
    Ok(())
}

/// The facts of a load into `collection` that `index export --collection --json` and `index
/// build --collection --json` both give, under the same names; each adds its own.
pub(super) fn load_json(collection: &str, report: &ExportReport) -> serde_json::Value {
    serde_json::json!({
        "collection": collection,
        "written": report.sent,
        "already_in_collection": report.held,
        "resumed_rows": report.resumed,
        "count": report.count,
        "created": report.created,
        "sources": report.sources,
    })
}

/// The `--json` summary of an export of the index at `index` (`rows` rows) into
/// `collection` (`report`): [`load_json`]'s facts (`export_secs` is the time spent sending,
/// as a build's `encode_secs` is encoding and sending), with the index and its rows where a
/// build says the pairs it read.
fn collection_json(
    collection: &str,
    index: &std::path::Path,
    rows: u64,
    report: &ExportReport,
) -> serde_json::Value {
    let mut doc = load_json(collection, report);
    doc["index"] = index.display().to_string().into();
    doc["rows"] = rows.into();
    doc["export_secs"] = report.secs.into();
    doc
}

/// The `--json` summary of a file export of `format` to `out` (`report`) from the index
/// `index` opened at `dir`: the format's name on the command line, the files written (an
/// array's pair list beside it), the vectors written, the pairs left out (every one, in row
/// order) with their count, and where the vectors come from (the index, its id, precision
/// and encoder as `index info --json` gives them), since word2vec and .npy files cannot name
/// the model (a pipeline keeps the summary beside them: vectors of another model compared
/// with these give scores that mean nothing, and nothing would say so).
fn export_json(
    format: FileFormat,
    out: &std::path::Path,
    report: &relbert::store::files::FileReport,
    dir: &std::path::Path,
    index: &Index,
) -> serde_json::Value {
    let name = clap::ValueEnum::to_possible_value(&format)
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let pairs = (format == FileFormat::Npy)
        .then(|| relbert::output::pairs_sidecar(out).display().to_string());
    serde_json::json!({
        "format": name,
        "out": out.display().to_string(),
        "pairs": pairs,
        "written": report.written,
        "duplicate_keys": report.duplicate_keys,
        "dropped": report
            .dropped
            .iter()
            .map(|(pair, kept, key)| serde_json::json!({
                "pair": pair, "kept": kept, "key": key,
            }))
            .collect::<Vec<_>>(),
        "index": dir.display().to_string(),
        "index_id": index.id(),
        "precision": index.meta().precision.name(),
        "encoder": relbert::indexing::encoder_json(&index.meta().encoder),
    })
}

/// What an export in `format` writes, as embed's formats: the format whose extension it
/// agrees with (`None`: word2vec has none of them), and the one whose files it writes beside
/// `--out` (an array with its pair list, as `embed --format npy`; the word2vec formats one
/// file, as JSON lines).
fn file_format(format: FileFormat) -> (Option<Format>, Format) {
    match format {
        FileFormat::Npy => (Some(Format::Npy), Format::Npy),
        FileFormat::Word2vec | FileFormat::Word2vecText => (None, Format::Jsonl),
    }
}

/// `hint` (that a rerun resumes) for an error a rerun can get past: the server or the disk
/// failing on the way. A refusal (another model's collection, a name, a flag) stays one
/// however often it is run, so it gets none.
pub(crate) fn rerun_hint(e: &relbert::Error, hint: &'static str) -> &'static str {
    match e {
        relbert::Error::Remote { .. } | relbert::Error::Io { .. } => hint,
        _ => "",
    }
}
