//! `relbert query`: "A is to B as ? is to ?" from the command line, a REPL, or a JSON stream.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use relbert::defaults::{DefaultIndexRecord, VocabularySource};
use relbert::error::quoted;
use relbert::indexing::{encoder_info, same_function, BuildOptions, GraphWhileEncoding};
use relbert::query::{QueryEngine, QueryHit, QueryOptions, Source};
use relbert::relation::EncoderIdentity;
use relbert_index::{EncoderInfo, HnswParams};

use super::index::{build_with_progress, read_all};
use super::ModelArgs;

/// Arguments of `relbert query`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Index directory (default: $RELBERT_INDEX or indexes/default, built from the bundled
    /// vocabulary on first use).
    #[arg(long, value_parser = super::os(super::index_dir_at))]
    index: Option<PathBuf>,
    /// Query this Qdrant collection instead of a local index (written by `relbert index
    /// export --qdrant`).
    #[arg(long, conflicts_with = "index", value_parser = super::os(super::export::collection_name))]
    collection: Option<String>,
    /// Qdrant gRPC URL(s) for --collection, comma-separated for several nodes (default:
    /// $RELBERT_QDRANT_URL).
    #[arg(long, requires = "collection", conflicts_with = "index", value_parser = super::os(super::export::qdrant_spec))]
    qdrant: Option<String>,
    /// Model for pairs not in the index (default: the one the index was built with). Given,
    /// it is loaded and checked at the start: one that computes another pair function than
    /// the index's is refused, even for a query the index holds.
    #[arg(long, value_parser = super::os(super::model_dir))]
    model: Option<PathBuf>,
    /// The query pair A B (or one argument A:B); without it, or with `-` alone, queries are
    /// read from standard input, one per line (`a<TAB>b`, `a:b` or `a b`).
    // One value name for both: clap writes `[A] [B]...` for two, as if more could follow.
    #[arg(num_args = 1..=2, value_name = "A B | A:B | -", value_parser = super::os(super::text))]
    pair: Vec<String>,
    /// Results per query (at least 1).
    #[arg(short, default_value_t = 10, value_parser = super::positive)]
    k: usize,
    /// Exact brute-force search instead of HNSW.
    #[arg(long)]
    exact: bool,
    /// HNSW candidate-list size (larger: slower, more accurate; at least 1; default 64). Not
    /// with --exact, which compares every row.
    // An `Option`, so that a value given beside --exact is told from the default and refused
    // (it was ignored without a word).
    #[arg(long, value_parser = super::positive)]
    ef: Option<usize>,
    /// One JSON object per query on standard output. Reading queries from standard input,
    /// one line per input line; a stream stopped before its input ended (standard input
    /// could not be read, or SIGINT, SIGTERM or SIGHUP) ends with {"error": why,
    /// "unfinished": true, "lines": N, "answered": A, "failed": F} (N input lines got their
    /// line) and a non-zero exit status.
    #[arg(long)]
    json: bool,
    /// Keep results that share a word with the query.
    #[arg(long)]
    keep_shared_words: bool,
    /// Number format for encoding pairs not in the index (default: the index's own; another
    /// is allowed, with a note) and for building the default index when it is missing
    /// (default there: bf16 on CPUs with AVX512-BF16, else f32).
    #[arg(long, value_parser = super::os(super::dtype))]
    dtype: Option<relbert::Dtype>,
    /// Where pairs not in the index are encoded (and the default index is built when
    /// missing): cpu, or cuda:N with the `cuda` feature.
    #[arg(long, default_value = "cpu", value_parser = super::os(super::device))]
    device: String,
}

/// What the checks of the default index share: relbert's record of it
/// ([`DefaultIndexRecord`]: the vocabulary each index there was built from, and the weights'
/// hashes), the vocabulary in use now, and whether the place is relbert's own.
struct DefaultCheck {
    record: DefaultIndexRecord,
    /// The record's vocabularies changed (one adopted or recorded); its file stamps say
    /// themselves whether they did ([`DefaultIndexRecord::stamped`]).
    dirty: bool,
    /// The default vocabulary's files and source now; `None` when there is none (or it
    /// cannot be read: then nothing is rebuilt from it, and an index there is used as it is).
    vocab: Option<(Vec<PathBuf>, VocabularySource)>,
    /// `$RELBERT_INDEX` is unset: the place is `indexes/default`, relbert's own, so any index
    /// there (or set aside from there) is its cache.
    own_place: bool,
}

impl DefaultCheck {
    fn new(dir: &Path) -> Self {
        let mut record = DefaultIndexRecord::load(dir);
        let vocab = relbert::defaults::default_vocab().and_then(|(folder, files)| {
            match VocabularySource::of_files(&folder, &files, &mut record) {
                Ok(source) => Some((files, source)),
                Err(e) => {
                    tracing::warn!("reading the default vocabulary: {e}");
                    None
                }
            }
        });
        DefaultCheck {
            record,
            dirty: false,
            vocab,
            own_place: relbert::defaults::index_env().is_none(),
        }
    }

    /// Saves the record if it changed, keeping the entries of the indexes now at `dir` and
    /// `aside`; with neither there (nothing was built) there is nothing to record, and no
    /// file is written. One that cannot be written (a read-only place) is only logged: what
    /// it would tell is found out again next time, the slow way.
    fn save(&mut self, dir: &Path, aside: &Path) {
        if !self.dirty && !self.record.stamped() {
            return;
        }
        let ids: Vec<String> = [dir, aside]
            .iter()
            .filter(|d| d.join("meta").is_file())
            .filter_map(|d| open_headers(d).ok())
            .map(|i| i.id())
            .collect();
        if ids.is_empty() {
            return;
        }
        if let Err(e) = self.record.save(dir, &ids) {
            tracing::warn!("recording what the default index was built from: {e}");
        }
        self.dirty = false;
    }
}

/// Opens the index at `dir` for its meta and pairs (the full open, with the pairs checksum,
/// follows when it is queried).
fn open_headers(dir: &Path) -> relbert_index::Result<relbert_index::Index> {
    let opts = relbert_index::OpenOptions {
        verify: relbert_index::Verify::Headers,
    };
    relbert_index::Index::open_with(dir, opts)
}

/// Why an existing default index no longer matches the default model or vocabulary, if it
/// does not.
///
/// The default index is a cache of the default model's vectors of the default vocabulary, so
/// a new default model (the trained one arriving, new weights, a `config.json` or
/// `tokenizer.json` that changes the pair function) or another vocabulary makes it stale.
///
/// The weights' SHA-256 is taken from the record when the weights file is the one hashed last
/// time by its inode, size, modification and change times
/// ([`relbert::defaults::FileStamp`]); a file date alone was trusted before, and new
/// weights copied in with an old date were never noticed.
///
/// The vocabulary is compared with the one the record says the index was built from. An
/// index relbert has no record of was built before records were kept (or grown since by
/// `index add`, which gives it a new id): at `indexes/default`, relbert's own place, it is
/// kept (and recorded) when it holds the default vocabulary's pairs, and stale otherwise; at
/// `$RELBERT_INDEX` it may be the user's own index, so its vocabulary is unknown and it is
/// judged by its model alone, as before (reading the whole vocabulary at every query's start
/// to find out would slow every query of a user's index).
fn default_index_staleness(dir: &Path, check: &mut DefaultCheck) -> Result<Option<String>> {
    let index = open_headers(dir)
        .with_context(|| format!("opening the default index {}", dir.display()))?;
    let built = index.meta().encoder.clone();
    let model = relbert::defaults::default_model_dir();
    let from_env = if relbert::defaults::model_env().is_some() {
        format!(" ($RELBERT_MODEL){}", super::hub_hint(&model, false))
    } else {
        String::new()
    };
    let reading = || format!("reading the default model {}{from_env}", model.display());
    let function = relbert::relation::PairFunction::of_model(&model).with_context(reading)?;
    let files = relbert::config::function_files_digest_of(&model).with_context(reading)?;
    let weights = model.join("model.safetensors");
    let sha = check.record.file_sha256(&weights)?;
    // The model as an index records it (its real path), so that each side of a difference
    // names its own model: the index's was named on both before.
    let name = std::fs::canonicalize(&model)
        .unwrap_or_else(|_| model.clone())
        .display()
        .to_string();
    let now = encoder_info(&EncoderIdentity {
        files_digest: Some(files),
        ..function.identity(name, sha.clone())
    });
    let same_but_weights = EncoderInfo {
        weights_sha256: built.weights_sha256.clone(),
        ..now.clone()
    };
    if !same_function(&built, &same_but_weights) {
        return Ok(Some(format!(
            "the default model {} now gives another pair function: {}",
            model.display(),
            relbert::indexing::function_difference(&now, &built).join(", ")
        )));
    }
    if sha != built.weights_sha256 {
        let short = |s: &str| s.chars().take(12).collect::<String>();
        return Ok(Some(format!(
            "built with {} (weights {}), while the default model is {} (weights {})",
            built.model,
            short(&built.weights_sha256),
            model.display(),
            short(&sha)
        )));
    }
    let Some((files, current)) = &check.vocab else {
        return Ok(None);
    };
    match check.record.vocabularies.get(&index.id()) {
        Some(v) if v.sha256 != current.sha256 => Ok(Some(format!(
            "it was built from the vocabulary in {}, and the default vocabulary ({}) now holds \
             other pairs",
            v.dir, current.dir
        ))),
        Some(_) => Ok(None),
        None if check.own_place => {
            if holds_vocabulary(&index, files, true)? {
                check
                    .record
                    .vocabularies
                    .insert(index.id(), current.clone());
                check.dirty = true;
                Ok(None)
            } else {
                Ok(Some(format!(
                    "it holds other pairs than the default vocabulary in {}",
                    current.dir
                )))
            }
        }
        None => Ok(None),
    }
}

/// Whether the index at `dir` is the default model's and vocabulary's: `Ok(None)` if so,
/// `Ok(Some(why))` if it is stale (another model or vocabulary, or an index format this build
/// does not read), an error if it cannot be judged (a damaged index, an unreadable model).
fn judge_default_index(dir: &Path, check: &mut DefaultCheck) -> Result<Option<String>> {
    match default_index_staleness(dir, check) {
        Ok(v) => Ok(v),
        Err(e) => match e.downcast_ref::<relbert_index::IndexError>() {
            Some(relbert_index::IndexError::UnsupportedVersion { found, .. }) => Ok(Some(format!(
                "it was written by another relbert version (index format {found})"
            ))),
            _ => Err(e),
        },
    }
}

/// Why the default index at `dir` may not be served as it is, for `relbert serve`, which
/// does not build: `Ok(Some(why))` when it is relbert's cache ([`is_default_cache`]) and
/// stale by the rule `relbert query` applies before it answers from it
/// ([`judge_default_index`]: another default model, tokenizer, config or vocabulary since it
/// was built), which `query` would rebuild. `Ok(None)` when it is current, when it is a
/// user's own index at `$RELBERT_INDEX` (used as it is, as `query` uses it), or when it
/// cannot be read (the server's own open names the damage). Found by a review: `serve`
/// served the old index, and encoded pairs with the old model, without a word. What the
/// check learns is recorded as `query` records it.
pub(super) fn default_index_staleness_for_serving(dir: &Path) -> Result<Option<String>> {
    let Some(dir) = relbert::defaults::named_dir(dir) else {
        return Ok(None);
    };
    let mut check = DefaultCheck::new(&dir);
    let stale = match judge_default_index(&dir, &mut check) {
        Ok(None) => Ok(None),
        // A user's own index at `$RELBERT_INDEX`: `query` answers from it as it is.
        _ if matches!(is_default_cache(&dir, &check), Ok(false)) => Ok(None),
        Ok(Some(why)) => Ok(Some(why)),
        // Damaged or unreadable: the server's own open says so, as for any index.
        Err(e) if is_index_error(&e) => Ok(None),
        Err(e) => Err(e.context(format!(
            "checking the default index {} against the default model",
            place(&dir)
        ))),
    };
    check.save(&dir, &relbert::defaults::beside(&dir, ".stale"));
    stale
}

/// Whether `index` holds the vocabulary of `files`: at least 99% of its pairs (the build
/// leaves out the few whose prompt is too long for the model) and, unless `extra` allows
/// pairs of its own (a cache grown by `index add`), no other pair.
fn holds_vocabulary(index: &relbert_index::Index, files: &[PathBuf], extra: bool) -> Result<bool> {
    let vocab: std::collections::HashSet<(String, String)> = read_all(files)?
        .into_iter()
        .map(|r| (r.head, r.tail))
        .collect();
    let n = index.count();
    if n * 100 < vocab.len() * 99 {
        return Ok(false);
    }
    if extra {
        let mut held = 0usize;
        for (head, tail) in &vocab {
            held += usize::from(index.lookup(head, tail)?.is_some());
        }
        return Ok(held * 100 >= vocab.len() * 99);
    }
    for row in 0..n {
        let p = index.pair(row)?;
        if !vocab.contains(&(p.head.to_string(), p.tail.to_string())) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether the index at `dir` is relbert's cache of the default vocabulary, which relbert may
/// set aside and replace when the default model or vocabulary changes.
///
/// `indexes/default` in the checkout is relbert's own, and so is an index relbert recorded
/// building ([`DefaultIndexRecord`]). Another directory named by `$RELBERT_INDEX` may be the
/// user's own index (the flag's help offers the variable for any index), so it counts as the
/// cache only when it holds the default vocabulary's pairs and no other
/// ([`holds_vocabulary`]). An index of other pairs is never moved or removed.
fn is_default_cache(dir: &Path, check: &DefaultCheck) -> Result<bool> {
    if check.own_place {
        return Ok(true);
    }
    let index = open_headers(dir).with_context(|| format!("opening {}", dir.display()))?;
    if check.record.vocabularies.contains_key(&index.id()) {
        return Ok(true);
    }
    match &check.vocab {
        Some((files, _)) => holds_vocabulary(&index, files, false),
        None => Ok(false),
    }
}

/// Whether `e` is about the index itself (damaged, unreadable), not about the model.
fn is_index_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<relbert_index::IndexError>().is_some()
            || matches!(
                c.downcast_ref::<relbert::Error>(),
                Some(relbert::Error::Index(_))
            )
    })
}

/// Refuses `--model model` for the default index when its weights are not the default
/// model's (`$RELBERT_MODEL`, else the bundled one), which the default index is built with:
/// pass `--index` for an index built with it. Weights that cannot be read are left to the
/// model's own load to name.
fn refuse_another_model_for_the_default_index(model: &Path) -> Result<()> {
    let sha = |dir: &Path| {
        relbert::config::ModelFiles::in_dir(dir)
            .and_then(|f| relbert::encoder::Encoder::weights_sha256(&f.weights))
            .ok()
    };
    let default = relbert::defaults::default_model_dir();
    if let (Some(given), Some(built)) = (sha(model), sha(&default)) {
        if given != built {
            return Err(super::usage(format!(
                "--model {} has other weights than the default model {}, which the default \
                 index is built with; pass --index DIR for an index built with this model \
                 (relbert index build --model {} ...), or set RELBERT_MODEL to make it the \
                 default",
                model.display(),
                default.display(),
                model.display()
            )));
        }
    }
    Ok(())
}

/// Makes sure the default index exists and is the default model's and vocabulary's.
///
/// The default index is relbert's cache of the default model's vectors of the default
/// vocabulary. When either changes, the index is moved to `<dir>.stale` (one such cache: an
/// older one there is removed), and when they change back, the cached one is swapped in again
/// instead of encoding everything anew. A missing index is built at `dtype`. An index at
/// `$RELBERT_INDEX` that is not the cache ([`is_default_cache`]) is used as it is, with its
/// own model. What the checks learn is kept in [`DefaultIndexRecord`] beside the index.
///
/// Returns the index's directory as named for the record and the place aside
/// ([`relbert::defaults::named_dir`]: `idx/` is `idx`). What is at the place is checked
/// first ([`default_place`]), before anything is read or loaded.
fn ensure_default_index(dir: &Path, dtype: relbert::Dtype, device: &str) -> Result<PathBuf> {
    refuse_empty_index_env(dir)?;
    super::refuse_empty_model_env()?;
    let Some(dir) = relbert::defaults::named_dir(dir) else {
        anyhow::bail!(
            "{} names no directory the default index can be kept in (relbert keeps its record \
             and a stale index beside it); point RELBERT_INDEX at an index, or at a new \
             directory to build the default index in",
            place(dir)
        );
    };
    let empty = match default_place(&dir)? {
        Place::Empty => true,
        Place::Index => {
            // An older relbert put the record inside the index (`RELBERT_INDEX=idx/`); put
            // back beside it, the index tools take the index again, and what it recorded is
            // used. One that cannot be put right only stays where it is.
            if let Err(e) = relbert::defaults::heal_misplaced_record(&dir) {
                tracing::warn!("{e}");
            }
            false
        }
        Place::Missing => false,
    };
    // `.stale` appended to the whole name: with_extension replaced an extension, so
    // `cache.v1` and `cache.v2` shared one place aside, and `cache.stale` was its own.
    let aside = relbert::defaults::beside(&dir, ".stale");
    let mut check = DefaultCheck::new(&dir);
    let done = ensure_with(&dir, &aside, &mut check, dtype, device, empty);
    check.save(&dir, &aside);
    done.map(|()| dir)
}

/// Refuses the default index's place when `$RELBERT_INDEX` is set but empty
/// ([`relbert::defaults::default_index_dir`] gives it as it is): read as a path it is the
/// working directory, and the record was written into it. `query` and `serve` alike.
pub(super) fn refuse_empty_index_env(dir: &Path) -> Result<()> {
    anyhow::ensure!(
        !dir.as_os_str().is_empty(),
        "RELBERT_INDEX is set but empty, which names no directory; unset it for the default \
         index in indexes/default, or set it to the index's directory (or pass --index DIR)"
    );
    Ok(())
}

/// `dir`, the default index's place, named for a message: with `($RELBERT_INDEX)` when the
/// variable chose it.
fn place(dir: &Path) -> String {
    match relbert::defaults::index_env() {
        Some(_) => format!("{} ($RELBERT_INDEX)", dir.display()),
        None => dir.display().to_string(),
    }
}

/// What is at the default index's place, as far as building there goes.
enum Place {
    /// An index (judged then by [`ensure_with`]).
    Index,
    /// Nothing: the index is built there.
    Missing,
    /// An empty directory: the user's evident wish is the index there, and the build
    /// replaces the directory (which holds nothing to lose).
    Empty,
}

/// What is at `dir`; an error, before any model is loaded or vocabulary read, when it is
/// something relbert may neither query nor build in: a directory holding other files (a
/// user's own folder), a file, a link to something other than an index.
fn default_place(dir: &Path) -> Result<Place> {
    let md = match std::fs::symlink_metadata(dir) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Place::Missing),
        Err(e) => return Err(e).with_context(|| format!("reading {}", place(dir))),
    };
    if dir.join("meta").is_file() {
        return Ok(Place::Index);
    }
    let advice = "point RELBERT_INDEX at an index, or at a directory that does not exist yet \
                  (or is empty) to build the default index in; or pass --index DIR";
    if !md.is_dir() {
        let what = if md.file_type().is_symlink() {
            "a symbolic link to no index"
        } else {
            "a file"
        };
        anyhow::bail!("{} is not an index: it is {what}; {advice}", place(dir));
    }
    let mut entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", place(dir)))?;
    match entries.next() {
        // Built into by removing it first, which the working directory must not be (the
        // shell would be left in a deleted directory, and the index invisible from it).
        None if std::env::current_dir().is_ok_and(|cwd| relbert::output::same_file(&cwd, dir)) => {
            anyhow::bail!(
                "{} is the current directory, which relbert does not build the default index \
                 in; point RELBERT_INDEX at a directory below it, e.g. RELBERT_INDEX=index",
                place(dir)
            )
        }
        None => Ok(Place::Empty),
        Some(e) => {
            let held = e
                .map(|e| format!(" ({:?}, …)", e.file_name()))
                .unwrap_or_default();
            anyhow::bail!(
                "{} is not an index: it is a directory holding other files{held}, which relbert \
                 neither reads as an index nor replaces; {advice}",
                place(dir)
            )
        }
    }
}

/// [`ensure_default_index`] with its checks' state.
fn ensure_with(
    dir: &Path,
    aside: &Path,
    check: &mut DefaultCheck,
    dtype: relbert::Dtype,
    device: &str,
    empty: bool,
) -> Result<()> {
    let usable = |d: &Path, check: &mut DefaultCheck| {
        d.join("meta").is_file() && matches!(judge_default_index(d, check), Ok(None))
    };
    if dir.join("meta").is_file() {
        let judged = judge_default_index(dir, check);
        if matches!(judged, Ok(None)) {
            return Ok(());
        }
        // Only a stale or unreadable index is looked at further (this may read every pair).
        // One whose pairs cannot be read (an older format, damage) is judged below: it may be
        // moved aside, which keeps it, but an unreadable one is never removed from there.
        if matches!(is_default_cache(dir, check), Ok(false)) {
            if let Ok(Some(why)) = &judged {
                relbert::say!(
                    "Note: {} ($RELBERT_INDEX) is not the default model's ({why}); it holds \
                     other pairs than the default vocabulary, so it is your index, not relbert's \
                     cache: it is used as it is, and pairs it lacks are encoded with the model \
                     it was built with.",
                    dir.display()
                );
            }
            return Ok(());
        }
        let why = match judged {
            Ok(Some(why)) => why,
            Ok(None) => return Ok(()),
            Err(e) if is_index_error(&e) => {
                return Err(e.context(format!(
                    "the default index {} cannot be used; remove it (or rebuild it with relbert \
                     index build --force) and run the query again",
                    dir.display()
                )))
            }
            Err(e) => return Err(e),
        };
        if std::fs::symlink_metadata(aside).is_ok()
            && !is_default_cache(aside, check).unwrap_or(false)
        {
            anyhow::bail!(
                "the default index {} is stale ({why}), and {} where relbert sets a stale one \
                 aside is not relbert's cache of the default vocabulary; move it away (relbert \
                 does not replace it) and run the query again",
                dir.display(),
                aside.display()
            );
        }
        if usable(aside, check) {
            relbert_index::swap_dirs(dir, aside)
                .with_context(|| format!("swapping {} and {}", dir.display(), aside.display()))?;
            relbert::say!(
                "The default index was stale ({why}); the one kept in {} is the default model's \
                 and vocabulary's and is back in use (the other is kept there now).",
                aside.display()
            );
            return Ok(());
        }
        if std::fs::symlink_metadata(aside).is_ok() {
            relbert_index::recognise_index(aside)?;
            std::fs::remove_dir_all(aside)
                .with_context(|| format!("removing the older cache {}", aside.display()))?;
        }
        std::fs::rename(dir, aside)
            .with_context(|| format!("moving {} to {}", dir.display(), aside.display()))?;
        relbert::say!(
            "The default index is stale ({why}); it was moved to {} (kept in case the model or \
             vocabulary changes back) and a new one is built now.",
            aside.display()
        );
    } else if usable(aside, check) {
        std::fs::rename(aside, dir)
            .with_context(|| format!("moving {} to {}", aside.display(), dir.display()))?;
        relbert::say!(
            "Using the default index kept in {} (built with the default model from the default \
             vocabulary).",
            aside.display()
        );
        return Ok(());
    }
    let Some((files, source)) = check.vocab.clone() else {
        match std::env::var_os("RELBERT_VOCAB") {
            Some(v) => anyhow::bail!(
                "no index at {} to query, and no *.tsv pair file in $RELBERT_VOCAB={} to build \
                 it from (unset it to use the bundled vocabulary, or pass --index DIR)",
                dir.display(),
                std::path::Path::new(&v).display()
            ),
            None => anyhow::bail!(
                "no index at {} and no bundled vocabulary (index/vocab/*.tsv) to build it from",
                dir.display()
            ),
        }
    };
    // A folder of the user's (`$RELBERT_INDEX`) is not made: refused as any output's missing
    // folder is. `indexes/` under the checkout (made below) is relbert's own.
    if !check.own_place {
        super::check_out_folder(dir, "$RELBERT_INDEX")?;
    }
    // Before anything is read or loaded: a second query started while the first builds
    // said it was building too, loaded the model, and only then met the build's lock.
    refuse_while_building(dir)?;
    relbert::say!(
        "Building the default index at {} from {} vocabulary file(s) in {} with the default \
         model at {} (once per default model and vocabulary; an interrupted build resumes).",
        dir.display(),
        files.len(),
        source.dir,
        dtype.name()
    );
    let records = read_all(&files)?;
    let encoder = ModelArgs {
        dtype: Some(dtype),
        device: device.to_string(),
        ..ModelArgs::defaults()
    }
    .load(false)?;
    // The bundled vocabulary fits the prompt limit; a user's $RELBERT_VOCAB may not. Said in
    // the words of a query, which has no --skip-long (the flag `screen` names).
    let (records, left) = relbert::embed::screen_long_pairs(&encoder, records, true)?;
    if !left.is_empty() {
        let shown: Vec<String> = left.iter().take(5).map(|r| r.location()).collect();
        tracing::warn!(
            "the default index leaves out {} vocabulary pair(s) whose prompt is too long for \
             the default model: {}{}",
            left.len(),
            shown.join(", "),
            if left.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        );
    }
    anyhow::ensure!(
        !records.is_empty(),
        "no pair of the default vocabulary in {} fits the default model's prompt limit",
        source.dir
    );
    // Two first-time queries started together both pass the check above: the one that
    // loaded the model last finds the other's index published by now, or meets its lock
    // at the build ([`settle_build_race`]).
    if adopt_published(dir, check) {
        return Ok(());
    }
    // Only relbert's own `indexes/` is made; a user's folder was checked above, and one
    // deleted since is refused by the build's lock rather than made again.
    if let Some(parent) = dir.parent().filter(|_| check.own_place) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    // The build publishes a new directory and replaces nothing, so an empty one is removed
    // first (remove_dir refuses one that is no longer empty, which is then reported).
    if empty {
        match std::fs::remove_dir(dir) {
            // Filled by another relbert's build of the default index since it was looked at.
            Err(_) if adopt_published(dir, check) => return Ok(()),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| {
                    format!(
                        "building the default index in the empty directory {}: removing it \
                         first",
                        place(dir)
                    )
                })
            }
            _ => {}
        }
    }
    // Half precision: half the disk and page cache, and faster search (it waits on memory),
    // at the same recall (benchmarks/index/README.md, benchmarks/results/query.md).
    let opts = BuildOptions {
        hnsw: HnswParams::default(),
        half: true,
        force: false,
        spool: None,
        graph_while_encoding: GraphWhileEncoding::Auto,
        graph_priority: Default::default(),
    };
    let note = super::interrupt::InterruptNote::install(dir);
    if let Err(e) = build_with_progress(&encoder, &records, dir, &opts) {
        // The default index is relbert's own, and so is its partial build: one started for
        // another default model, vocabulary or number format is discarded, not kept for a
        // rerun "with the original input", which blocked every query once the model, the
        // vocabulary or --dtype had changed.
        let Some(what) = partial_mismatch(&e) else {
            return settle_build_race(e, dir, check);
        };
        // Only in relbert's own place (`indexes/default`): at `$RELBERT_INDEX` the partial
        // build may be the user's own interrupted `index build --out` (for `--pairs -`, its
        // spool is the only copy of what it read), which is not relbert's to throw away.
        if !check.own_place {
            return Err(e.context(format!(
                "{} holds an interrupted build of another {what}: if it is an interrupted \
                 default-index build, remove it and query again; if it is your own `relbert \
                 index build`, finish that first",
                relbert_index::partial_dir(dir)?.display()
            )));
        }
        relbert::say!(
            "The interrupted build of the default index in {} was started with a \
                 different {what}; it is discarded and the build starts over.",
            relbert_index::partial_dir(dir)?.display()
        );
        relbert_index::discard_partial(dir)
            .with_context(|| format!("discarding the interrupted build of {}", dir.display()))?;
        if let Err(e) = build_with_progress(&encoder, &records, dir, &opts) {
            return settle_build_race(e, dir, check);
        }
    }
    drop(note);
    // The source was taken before the files were read: were they changed since, the next
    // query finds the index stale and builds it again, instead of trusting it.
    let built = open_headers(dir).with_context(|| format!("opening {}", dir.display()))?;
    check.record.vocabularies.insert(built.id(), source);
    check.dirty = true;
    Ok(())
}

/// What differs, when `e` is the refusal to resume a partial build started for other input
/// ([`relbert_index::IndexError::PartialMismatch`]).
fn partial_mismatch(e: &anyhow::Error) -> Option<String> {
    match index_error(e) {
        Some(relbert_index::IndexError::PartialMismatch { what, .. }) => Some(what.to_string()),
        // A checkpoint an older relbert wrote, or damaged files: not resumable either.
        Some(relbert_index::IndexError::PartialDamaged { .. }) => {
            Some("checkpoint (older or damaged)".to_string())
        }
        _ => None,
    }
}

/// The index's error in `e`'s chain, if there is one.
fn index_error(e: &anyhow::Error) -> Option<&relbert_index::IndexError> {
    e.chain().find_map(|c| {
        // The library's error holds the index's transparently: not a link of the chain.
        match c.downcast_ref::<relbert::Error>() {
            Some(relbert::Error::Index(i)) => Some(i),
            _ => c.downcast_ref::<relbert_index::IndexError>(),
        }
    })
}

/// Refuses, naming it, while another process builds the default index at `dir` (holds its
/// writer lock, [`relbert_index::OutputLock`]). The lock is taken and let go at once: the
/// build takes it again, and a process that starts in between is refused there, in the same
/// words ([`settle_build_race`]).
fn refuse_while_building(dir: &Path) -> Result<()> {
    match relbert_index::OutputLock::acquire(dir) {
        Ok(lock) => {
            drop(lock);
            Ok(())
        }
        Err(relbert_index::IndexError::Locked { holder, .. }) => {
            Err(building_elsewhere(dir, &holder))
        }
        // Anything else (a place that cannot be written) is the build's to report.
        Err(_) => Ok(()),
    }
}

/// The refusal of a query while the process `holder` (a lock file's note) builds the
/// default index at `dir`.
fn building_elsewhere(dir: &Path, holder: &str) -> anyhow::Error {
    // The holder's note reads `pid N: command (since …)`.
    let who = match holder
        .strip_prefix("pid ")
        .and_then(|rest| rest.split(':').next())
    {
        Some(pid) => format!("another relbert (pid {pid})"),
        None => format!("another relbert ({holder})"),
    };
    anyhow::anyhow!(
        "{who} is building the default index at {}; wait for it to finish and run the query \
         again",
        dir.display()
    )
}

/// Whether the default index is at `dir` now, published by another relbert (a first-time
/// query started with this one) while this one read the vocabulary and loaded the model:
/// then it is used as that one built it, saying so. Its record beside it, which that
/// relbert writes once the index is published, is read again instead of being replaced by
/// this query's, read before the index was there.
fn adopt_published(dir: &Path, check: &mut DefaultCheck) -> bool {
    // A build publishes the whole directory by one rename: `meta` there is a whole index.
    if !dir.join("meta").is_file() {
        return false;
    }
    relbert::say!(
        "Another relbert built the default index at {} meanwhile; it is used.",
        dir.display()
    );
    check.record = DefaultIndexRecord::load(dir);
    check.dirty = false;
    true
}

/// A failed build `e` of the default index at `dir` that another relbert's build of it may
/// explain, settled. Two first-time queries started together both pass
/// [`refuse_while_building`]; the one that loaded the model last met the other's lock at
/// the build ("being written by another process") or its published index ("already exists
/// (pass force to replace it)", a flag `query` does not have). The first is the refusal
/// [`refuse_while_building`] gives, naming the pid; the second is `Ok`, the index used
/// ([`adopt_published`]), unless what is there is no index, which is named without the
/// advice. Any other error is `e`.
fn settle_build_race(e: anyhow::Error, dir: &Path, check: &mut DefaultCheck) -> Result<()> {
    match index_error(&e) {
        Some(relbert_index::IndexError::Locked { holder, .. }) => {
            Err(building_elsewhere(dir, holder))
        }
        Some(relbert_index::IndexError::AlreadyExists { .. }) => {
            if adopt_published(dir, check) {
                return Ok(());
            }
            anyhow::bail!(
                "{} was made by another process while the default index was built there, and \
                 it holds no index; run the query again",
                place(dir)
            )
        }
        _ => Err(e),
    }
}

/// `e`, from encoding a pair for the store `engine` queries, with what to do about it
/// ([`explain_model_error`]).
fn explained(e: relbert::Error, engine: &QueryEngine, model_given: bool) -> anyhow::Error {
    explain_model_error(
        e,
        &engine.store().describe(),
        engine.store().encoder(),
        model_given,
    )
}

/// `e`, from loading the model that encodes pairs for the store at `place` (built with
/// `built`), with what to do about it where the library's message does not say: the model
/// the store records is gone (which the library words as a bad `--model` even when none was
/// given), or the model offered computes another pair function than the store's.
pub(super) fn explain_model_error(
    e: relbert::Error,
    place: &str,
    built: &relbert_index::EncoderInfo,
    model_given: bool,
) -> anyhow::Error {
    let short = |s: &str| s.chars().take(12).collect::<String>();
    match &e {
        relbert::Error::InvalidArgument { flag, .. } if flag == "--model" && !model_given => {
            anyhow::anyhow!(
                "{place} records its model at {}, which is not there (moved or removed); to \
                 encode pairs it does not hold, point at a model with the weights it was built \
                 with (sha256 {}): pass --model DIR, or set RELBERT_MODEL=DIR",
                built.model,
                short(&built.weights_sha256)
            )
        }
        relbert::Error::EncoderMismatch { .. } => anyhow::anyhow!(
            "{e}; to encode pairs for it, pass --model DIR with the model it was built with \
             (weights sha256 {}, the same tokenizer and config), or build it again with this \
             model (an index: relbert index build --model … --force; a Qdrant collection: \
             another --collection name, or delete the collection with Qdrant's API first)",
            short(&built.weights_sha256)
        ),
        _ => e.into(),
    }
}

/// Why `line` reads as no pair ([`relbert::query::query_line_readings`] found none), for
/// its error.
fn why_not_a_pair(line: &str) -> String {
    let line = line.trim_end_matches(['\r', '\n']);
    let shown = quoted(line);
    let blank = format!("a word of {shown} is empty, or only characters a tokenizer drops (invisible ones, lone accents, U+FFFD)");
    if line.contains('\t') {
        let fields = line.split('\t').count();
        return if fields > 3 {
            format!("{shown} has {fields} tab-separated fields, more than a<TAB>b<TAB>label")
        } else {
            blank
        };
    }
    let colons = line.matches(':').count();
    if colons > 1 {
        return format!(
            "{shown} has too many parts: {} separated by ':' (a word holding ':' goes in \
             a<TAB>b)",
            colons + 1
        );
    }
    match line.split_whitespace().count() {
        _ if colons == 1 => blank,
        0 => "the pair is empty".to_string(),
        // A line of a zero width space is no word ([`relbert::pairs::read_word`]), not one.
        _ if relbert::pairs::blank_word(line) => {
            format!("{shown} is empty, or only characters a tokenizer drops (invisible ones, lone accents, U+FFFD)")
        }
        1 => format!("{shown} is one word"),
        2 => blank,
        n => format!("{shown} has {n} words; give a pair of multi-word terms as a:b or a<TAB>b"),
    }
}

/// `text` cut after [`relbert::error::QUOTED_CHARS`] characters (marked `…`), unquoted: an
/// error quoted a whole line, up to three times, so a 1 MB line made a 3 MB message.
fn shortened(text: &str) -> String {
    let (kept, mark) = relbert::error::cut_for_message(text);
    format!("{kept}{mark}")
}

/// The longest query line read, in bytes: far above any pair a query may ask (two words of
/// at most [`relbert::prompt::MAX_WORD_CHARS`] characters, a label), far below what
/// made a query stream slow and large: a 10 MB line was read whole, then split and quoted,
/// for 53 s and 2.3 GB before its refusal. The rest of a longer line is skipped unread.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// The query lines of a stream (standard input), read one at a time by
/// [`QueryLines::next_line`], which remembers where the input ended.
struct QueryLines<R> {
    input: R,
    /// A read returned nothing: the input ended. At a terminal that end is not for good (the
    /// next read waits for more typing), so nothing is read after it: words typed without
    /// Enter, then Ctrl-D twice, were answered and the session went on, waiting for a third
    /// Ctrl-D (`cat` ends after the second).
    ended: bool,
}

/// The length of a line [`QueryLines::next_line`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineLength {
    /// Bytes read, its line end included; 0 at the end of the input.
    read: usize,
    /// Bytes of the line without its end (`\n` or `\r\n`): what the limit counts, so that a
    /// line is as long followed by a line end as it is as the last line without one.
    text: usize,
}

impl<R: BufRead> QueryLines<R> {
    fn new(input: R) -> Self {
        QueryLines {
            input,
            ended: false,
        }
    }

    /// Whether the input has ended: the next line read is none.
    fn ended(&self) -> bool {
        self.ended
    }

    /// Reads one line into `buf` (cleared first), through its `\n`, keeping its first `cap`
    /// bytes and its line end: the rest is consumed without being kept. A `text` length above
    /// `cap` is a line cut at the cap. After the input has ended nothing more is read.
    fn next_line(&mut self, buf: &mut Vec<u8>, cap: usize) -> std::io::Result<LineLength> {
        buf.clear();
        let mut read = 0;
        // The last byte of the chunk before: the `\r` of a `\r\n` split between two reads.
        let mut last = None;
        while !self.ended {
            let available = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                self.ended = true;
                break;
            }
            let (used, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            // Room for a `\r\n` after `cap` bytes, so that a line of `cap` bytes is kept whole.
            let room = (cap + 2).saturating_sub(buf.len()).min(used);
            buf.extend_from_slice(&available[..room]);
            let before = if used >= 2 {
                Some(available[used - 2])
            } else {
                last
            };
            last = available.get(used - 1).copied();
            self.input.consume(used);
            read += used;
            if done {
                let end = if before == Some(b'\r') { 2 } else { 1 };
                return Ok(LineLength {
                    read,
                    text: read - end,
                });
            }
        }
        Ok(LineLength { read, text: read })
    }
}

/// Refuses a query pair whose words no query answers ([`relbert::prompt::check_words`], the
/// check `relbert serve` makes): over [`relbert::prompt::MAX_WORD_CHARS`] characters, which
/// a BERT tokenizer reads as `[UNK]` (a 150-letter word was answered as `[UNK]` is), or
/// holding a control character, which it drops (`dog\x01` was answered as `dog`).
fn check_query_words(x: &str, y: &str) -> Result<()> {
    relbert::prompt::check_words(x, y, relbert::prompt::MAX_WORD_CHARS).map_err(word_error)
}

/// The error for a word [`relbert::prompt::check_words`] refused, quoting the word (unless
/// the message already does).
fn word_error(e: relbert::prompt::WordProblem) -> anyhow::Error {
    anyhow::anyhow!("{}", with_word(&e))
}

/// `e`'s message with the word it concerns quoted after it, where the message does not
/// already quote it (a placeholder's does: the server answers with the message alone).
fn with_word(e: &relbert::prompt::WordProblem) -> String {
    match e {
        relbert::prompt::WordProblem::Placeholder { .. } => e.to_string(),
        _ => format!("{e}: {}", quoted(e.word())),
    }
}

/// The error for a word of the command line's query pair that
/// [`relbert::prompt::check_words`] refused: a bad command line (status 2, as for three
/// words or `-k 0`), where a stream's line is only that line's error.
fn arg_word_error(e: relbert::prompt::WordProblem) -> anyhow::Error {
    super::usage(format!("invalid value for [A B]: {}", with_word(&e)))
}

/// Writes one answer as a table to `out` (standard output, whose failure the caller names).
fn print_table(
    out: &mut impl Write,
    a: &str,
    b: &str,
    hits: &[QueryHit],
    source: Source,
) -> std::io::Result<()> {
    let from = match source {
        Source::Index => "in the index",
        Source::Encoded => "encoded",
    };
    writeln!(out, "{} : {}  ({from})", for_people(a), for_people(b))?;
    if hits.is_empty() {
        return writeln!(out, "  (no results)");
    }
    // Padded by the columns a terminal gives each character (wide CJK and emoji take two,
    // combining marks none), not by characters, so the scores line up; measured after
    // escaping, as printed.
    use unicode_width::UnicodeWidthStr;
    let pairs: Vec<String> = hits
        .iter()
        .map(|h| format!("{} : {}", for_people(&h.pair[0]), for_people(&h.pair[1])))
        .collect();
    let w = pairs.iter().map(|p| p.width()).max().unwrap_or(4).max(4);
    writeln!(out, "  {:>3}  {:<w$}  {:>6}  label", "#", "pair", "score")?;
    for (i, (h, pair)) in hits.iter().zip(&pairs).enumerate() {
        let pad = " ".repeat(w.saturating_sub(pair.width()));
        writeln!(
            out,
            "  {:>3}  {pair}{pad}  {:>6.3}  {}",
            i + 1,
            h.score,
            for_people(h.label.as_deref().unwrap_or(""))
        )?;
    }
    Ok(())
}

/// `text` as the table shows it to people: control characters (an ESC sequence in a pair
/// file's label cleared the terminal; a tab or line end broke the columns), the invisible
/// format characters ([`relbert::corpus::tokenize::invisible`]: the bidirectional
/// overrides, isolates and marks, which reorder what follows on the line, the zero width
/// space, soft hyphen and byte order mark, which hide in a word) and the Unicode line and
/// paragraph separators written as Rust escapes, `\u{1b}`; everything else as it is (the
/// joiners ZWJ and ZWNJ too, which are spelling). `--json` escapes the controls in its
/// strings.
fn for_people(text: &str) -> std::borrow::Cow<'_, str> {
    // Words are read without the invisible characters ([`relbert::pairs::read_word`]), but a
    // label, or a pair of an index an older relbert built, may still hold them.
    let hidden = |c: char| {
        c.is_control()
            || relbert::corpus::tokenize::invisible(c)
            || matches!(c, '\u{2028}' | '\u{2029}')
    };
    if !text.contains(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            shown.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            shown.push(c);
        }
    }
    std::borrow::Cow::Owned(shown)
}

/// Runs `relbert query`.
pub fn run(a: QueryArgs) -> Result<()> {
    if a.exact && a.ef.is_some() {
        return Err(super::usage(
            "--ef cannot be used with --exact: --ef sizes the HNSW graph search's candidate \
             list, and --exact compares the query with every row instead of searching the \
             graph; give one or the other",
        ));
    }
    // Checked before any work, so a bad --device is reported as such, not after a build.
    let device = relbert::device::parse_device(&a.device)?;
    // A --model given is checked now, naming the flag: it was loaded only for a pair the
    // index lacks, so a wrong one answered stored pairs (exit 0) and failed each other line
    // of a stream with its own missing file. A model the index records is still looked for
    // only when a pair needs it.
    if let Some(m) = &a.model {
        super::check_model_flag(m)?;
    }
    // As a query line on standard input is read: spaces and invisible characters around or
    // in a word are not part of it ([`relbert::pairs::read_word`]), and an empty word is no
    // word.
    let given: Option<(String, String)> = match a.pair.as_slice() {
        // `-` is standard input, as for `--pairs -` (it was refused as one word).
        [line] if line == "-" => None,
        [line] => Some(
            relbert::query::query_line_readings(line)
                .into_iter()
                .next()
                .ok_or_else(|| {
                    super::usage(format!(
                        "invalid value for [A B]: {}; give the pair as two arguments, A B, or \
                         as one, A:B",
                        why_not_a_pair(line)
                    ))
                })?,
        ),
        // A blank word is refused below, with the other words no query answers.
        [x, y] => Some((relbert::pairs::read_word(x), relbert::pairs::read_word(y))),
        _ => None,
    };
    let pair = given.as_ref().map(|(x, y)| (x.as_str(), y.as_str()));
    // Checked before the index is opened (or the default one built); a line that reads two
    // ways is refused only when neither reading can be asked (the store's is checked below).
    if let Some((x, y)) = pair {
        let readings = match a.pair.as_slice() {
            [line] => relbert::query::query_line_readings(line),
            _ => Vec::new(),
        };
        if readings
            .iter()
            .all(|(x, y)| check_query_words(x, y).is_err())
        {
            match relbert::prompt::check_words(x, y, relbert::prompt::MAX_WORD_CHARS) {
                Ok(()) => {}
                // Only two arguments can give a blank word (one reads as no pair above):
                // named as the user typed them, spaces included.
                Err(relbert::prompt::WordProblem::Blank { .. }) if readings.is_empty() => {
                    return Err(super::usage(format!(
                        "invalid value for [A B]: a word of the query pair is empty, or only \
                         characters a tokenizer drops: invisible ones, lone accents, U+FFFD \
                         ({:?} {:?})",
                        a.pair[0], a.pair[1]
                    )))
                }
                Err(e) => return Err(arg_word_error(e)),
            }
        }
    }
    let mut engine = match &a.collection {
        Some(collection) => {
            let urls = super::export::qdrant_urls(a.qdrant.as_deref())?;
            // Lines are answered from the collection as it is when each is read (as from a
            // local index, which the stream follows): one deleted and re-made with another
            // model is refused, not searched with this one's queries.
            let origin = relbert::store::qdrant::UrlOrigin::of(a.qdrant.as_deref());
            let store =
                relbert::store::qdrant::QdrantStore::open_with_origin(&urls, origin, collection)?
                    .following();
            QueryEngine::with_store(Box::new(store), a.model.clone())
        }
        None => {
            let dir = match &a.index {
                Some(d) => d.clone(),
                None => {
                    // The default index is built with the default model: a --model of other
                    // weights would be refused once it is built (see below), after the whole
                    // build's wait (found by a review), so it is refused first.
                    if let Some(m) = &a.model {
                        refuse_another_model_for_the_default_index(m)?;
                    }
                    let d = relbert::defaults::default_index_dir();
                    // The default index is a cache built once per model, and its build is
                    // the first query's whole wait: on a CPU with the bfloat16 kernel it is
                    // built at bf16 unless --dtype says otherwise.
                    let dtype = a.dtype.unwrap_or(if device.is_cuda() {
                        relbert::Dtype::F32
                    } else {
                        relbert::Dtype::fast_cpu_default()
                    });
                    ensure_default_index(&d, dtype, &a.device)?
                }
            };
            super::index::check_there(&dir)?;
            // An exact search reads no graph and checks every block of rows and pairs it
            // reads, so it opens with the headers checked only (as `index rebuild` does): an
            // index whose graph alone is damaged still answers it. The graph search keeps
            // the full check of small indexes at open.
            let verify = match a.exact {
                true => relbert_index::Verify::Headers,
                false => relbert_index::Verify::default(),
            };
            QueryEngine::open_with(&dir, a.model.clone(), relbert_index::OpenOptions { verify })
                .with_context(|| super::index::opening(&dir))?
        }
    };
    if let Some(d) = a.dtype {
        engine.set_dtype(d);
    }
    engine.set_device(device);
    let model_given = a.model.is_some();
    // A model named on the command line is checked against the store's pair function at
    // once: a pair the store holds is answered from its stored row, so a `--model` with
    // other weights was otherwise ignored without a word for it (found by a review: the
    // index's neighbours reported under the other model's name), and refused only for a
    // pair that needed encoding.
    if model_given {
        if let Err(e) = engine.load_model().map(|_| ()) {
            return Err(explained(e, &engine, model_given));
        }
    }
    let opts = QueryOptions {
        k: a.k,
        exact: a.exact,
        ef: a.ef.unwrap_or(relbert::serve::DEFAULT_EF),
        keep_shared_words: a.keep_shared_words,
    };
    // One argument that reads two ways is the pair the store holds, as a stream line is.
    let reread = match a.pair.as_slice() {
        [line] if line == "-" => None,
        [line] => engine.read_query_line(line)?,
        _ => None,
    };
    let pair = match &reread {
        Some((x, y)) => Some((x.as_str(), y.as_str())),
        None => pair,
    };
    if let Some((x, y)) = pair {
        // The reading the store holds may have other words than the first (checked above).
        relbert::prompt::check_words(x, y, relbert::prompt::MAX_WORD_CHARS)
            .map_err(arg_word_error)?;
        let (hits, source) = engine
            .query(x, y, &opts)
            .map_err(|e| explained(e, &engine, model_given))?;
        let mut out = std::io::stdout().lock();
        if a.json {
            let doc = serde_json::json!({"query": [x, y], "source": source, "results": hits});
            writeln!(out, "{doc}")
        } else {
            print_table(&mut out, x, y, &hits, source)
        }
        .and_then(|()| out.flush())
        .map_err(relbert::output::stdout_error)?;
        return Ok(());
    }

    // Stream mode: one query per line. With --json every input line gets exactly one output
    // line (numbered), so the output lines up with the input: an answer, a skipped blank or
    // comment line, or an error record; a bad line (unparsable, not UTF-8, an unknown pair
    // the model cannot encode) never ends the stream.
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal() && !a.json;
    if interactive {
        relbert::say!("A is to B as ? is to ?  Type a pair (a b, a:b or a<TAB>b); Ctrl-D to quit.");
    }
    // Written one record at a time under this lock, which a stop signal's reaction takes to
    // write the stream's last line after a whole record ([`end_on_signal`]).
    let tally = super::interrupt::LastLine::new(Tally::default());
    if a.json {
        end_on_signal(&tally);
    }
    let mut lines = QueryLines::new(stdin.lock());
    let mut buf = Vec::new();
    let mut lineno = 0usize;
    // Where the next line starts in the input: which byte of a UTF-16 code unit a NUL is.
    let mut offset = 0usize;
    // Lines asked and lines that could not be answered, for the exit status.
    let (mut asked, mut failed) = (0usize, 0usize);
    // A failed write is an error naming standard output (a full disk under `> file`), not a
    // panic; a reader gone (`| head`) ends the process by SIGPIPE, quietly.
    let put = relbert::output::stdout_error;
    loop {
        // The input ended after a line without its line end (answered): at a terminal, words
        // typed without Enter, then Ctrl-D twice. No prompt follows, and nothing is read.
        if lines.ended() {
            break;
        }
        if interactive {
            // A prompt lost with its terminal loses nothing else (`eprint!` panics).
            let _ = relbert::output::Stderr.write_all(b"> ");
        }
        let LineLength { read, text } = match lines.next_line(&mut buf, MAX_LINE_BYTES) {
            Ok(n) => n,
            Err(e) => {
                if interactive {
                    end_prompt_line();
                }
                let e = anyhow::Error::new(e).context("reading standard input");
                if a.json {
                    let mut t = tally.with();
                    let mut out = std::io::stdout().lock();
                    // The stream's error is the input's (found by a review: an output that
                    // could not be written either was reported instead); a reader gone
                    // misses nothing more.
                    let _ = writeln!(out, "{}", t.unfinished(&format!("{e:#}")))
                        .and_then(|()| out.flush());
                    // A signal from now on adds no second last line.
                    t.finished = true;
                }
                return Err(e);
            }
        };
        let cut = text > MAX_LINE_BYTES;
        // Ctrl-D at the prompt (the end) or after words typed without Enter echoes no line
        // end: what follows, the error that ends the run included, would share the prompt's
        // line. (A cut line ended in its `\n`, which was read but not kept.)
        if interactive && !cut && !buf.ends_with(b"\n") {
            end_prompt_line();
        }
        if read == 0 {
            break;
        }
        lineno += 1;
        // Before the UTF-8 byte-order mark goes: UTF-16 input was "not valid UTF-8" (with its
        // mark) or asked as words full of NUL bytes, and a NUL byte is no part of any word.
        let not_text = relbert::pairs::not_text(
            buf.strip_suffix(b"\n").unwrap_or(&buf),
            offset.is_multiple_of(2),
        );
        offset = offset.wrapping_add(read);
        // A byte-order mark (editors on Windows write one) is not part of the first word,
        // as in the pair files `index build` and `embed` read: the first pair was encoded
        // with it instead of found, and kept as a result of itself. Files put together
        // (`cat a.txt b.txt`) have one at the start of a later line too, where it would hide
        // a comment's `#` (in a word, [`relbert::pairs::read_word`] drops it).
        if buf.starts_with(b"\xef\xbb\xbf") {
            buf.drain(..3);
        }
        // A long-running stream follows the index: after an `index add` (or a rebuild)
        // publishes, the next line is answered from the new index. One of another model or
        // pair function is not followed (warned of once), as `serve` does not serve it.
        match engine.refresh() {
            Ok(true) => {
                if let Some(index) = engine.index() {
                    tracing::info!(
                        "{} changed: now answering from index {} ({} pairs)",
                        index.dir().display(),
                        index.id(),
                        super::progress::group(index.count() as u64)
                    )
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(
                "checking {} for a new index: {e:#}",
                engine.store().describe()
            ),
        }
        let record = match std::str::from_utf8(&buf) {
            _ if cut => Err((
                None,
                shortened(&String::from_utf8_lossy(&buf)),
                format!(
                    "longer than {MAX_LINE_BYTES} bytes ({text} bytes), far more than a pair \
                     of words; the rest of the line was skipped"
                ),
            )),
            _ if not_text.is_some() => Err((
                None,
                String::from_utf8_lossy(&buf).trim_end().to_string(),
                not_text.unwrap_or_default(),
            )),
            Err(_) => Err((
                None,
                String::from_utf8_lossy(&buf).trim_end().to_string(),
                "the line is not valid UTF-8".to_string(),
            )),
            Ok(text) => {
                let line = text.trim_end_matches(['\r', '\n']);
                // A comment may be indented, as a `#` typed after a space at the prompt is,
                // or follow invisible characters (a zero width space pasted in front), and a
                // line of invisible characters only is blank (review R12: it was an error):
                // as a pair file's lines are skipped.
                if let Some(skipped) = relbert::pairs::skipped_line(line) {
                    if a.json {
                        let what = skipped.as_str();
                        let mut t = tally.with();
                        let mut out = std::io::stdout().lock();
                        writeln!(
                            out,
                            "{}",
                            serde_json::json!({"line": lineno, "skipped": what})
                        )
                        .and_then(|()| out.flush())
                        .map_err(put)?;
                        t.lines = lineno;
                    }
                    continue;
                }
                // Reading the line looks its pair up in the index: asked first. The pair is
                // then looked up or encoded, and asked again right before the search, as a
                // server asks before each read ([`changed_in_place`]).
                let read = match changed_in_place(&engine) {
                    Some(why) => Err(why),
                    None => Ok(engine.read_query_line(line)),
                };
                match read {
                    Err(why) => Err((None, line.to_string(), why)),
                    Ok(Err(e)) => Err((None, line.to_string(), format!("{e:#}"))),
                    Ok(Ok(Some((x, y)))) => match check_query_words(&x, &y) {
                        // Not asked: `query` stays null, as for a line that is no pair.
                        Err(e) => Err((None, line.to_string(), format!("{e:#}"))),
                        Ok(()) => match engine.vector(&x, &y).and_then(|(v, source, _)| {
                            match changed_in_place(&engine) {
                                Some(why) => Ok(Err(why)),
                                None => engine
                                    .search_store(&x, &y, &v, source, &opts)
                                    .map(|hits| Ok((hits, source))),
                            }
                        }) {
                            Ok(Ok(r)) => Ok((x, y, r)),
                            Ok(Err(why)) => Err((Some([x, y]), line.to_string(), why)),
                            Err(e) => {
                                let e = explained(e, &engine, model_given);
                                Err((Some([x, y]), line.to_string(), format!("{e:#}")))
                            }
                        },
                    },
                    Ok(Ok(None)) => Err((
                        None,
                        line.to_string(),
                        format!(
                            "expected two words (a<TAB>b, a:b or a b): {}",
                            why_not_a_pair(line)
                        ),
                    )),
                }
            }
        };
        asked += 1;
        failed += usize::from(record.is_err());
        let mut t = tally.with();
        let mut out = std::io::stdout().lock();
        match record {
            Ok((x, y, (hits, source))) => {
                if a.json {
                    let doc = serde_json::json!({"line": lineno, "query": [x, y], "source": source, "results": hits});
                    writeln!(out, "{doc}").map_err(put)?;
                } else {
                    print_table(&mut out, &x, &y, &hits, source).map_err(put)?;
                }
            }
            Err((pair, raw, msg)) => {
                if a.json {
                    // Cut as the message quotes them: a 60 KB line was its `input`, and its
                    // 60 KB pair its `query`, beside the message (the line's number says
                    // which it was).
                    let pair = pair.map(|p| p.map(|w| shortened(&w)));
                    let raw = shortened(&raw);
                    let doc = serde_json::json!({"line": lineno, "query": pair, "input": raw, "error": msg});
                    writeln!(out, "{doc}").map_err(put)?;
                } else {
                    relbert::say!("error: line {lineno}: {msg}");
                }
            }
        }
        out.flush().map_err(put)?;
        t.lines = lineno;
        t.asked = asked;
        t.failed = failed;
    }
    // The stream is whole: a signal from now on (while the last message is written, or the
    // engine is dropped) ends the process without a false last line.
    tally.with().finished = true;
    stream_end(interactive, a.json, asked, failed)
}

/// Why a stream's line must not be answered from `engine`'s index, if so: one of its
/// memory-mapped files was changed in place ([`relbert_index::Index::changed_in_place`],
/// the check `relbert serve` makes before each read). Found by audit N: a stream answered
/// from files copied over the open ones (wrong results under the index's pair names, exit
/// status 0) or died of SIGBUS when one was cut short under the map. Such a line gets this
/// error and the stream goes on; [`QueryEngine::refresh`] opens the directory again before
/// every line, so lines are answered again once it holds a whole index. A file overwritten
/// after the check, while the search reads it, is read all the same (only publishing by
/// rename removes that race).
fn changed_in_place(engine: &QueryEngine) -> Option<String> {
    let index = engine.index()?;
    let path = index.changed_in_place()?;
    Some(format!(
        "index {}: its files were changed in place ({} was written while this query had it \
         open), so it is not read any more; publish an index by building a whole new one \
         beside it and renaming it into place (relbert does), not by copying over its files. \
         Lines are answered again once {} holds a whole index",
        index.dir().display(),
        path.display(),
        index.dir().display()
    ))
}

/// How far a `--json` stream got: what its last line says when it is stopped early.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Input lines that got their output line.
    lines: usize,
    /// Of them, the queries (not blank or comment lines).
    asked: usize,
    /// Of the queries, those answered with an error.
    failed: usize,
    /// The stream has ended, whole or with its last line already written: a stop signal
    /// writes none.
    finished: bool,
}

impl Tally {
    /// The last line of a stream stopped before its input ended, for `why`: a consumer
    /// reading JSON lines would otherwise take a stream cut short for a whole one (the exit
    /// status, the only sign, is often lost in a pipeline).
    fn unfinished(&self, why: &str) -> serde_json::Value {
        serde_json::json!({
            "error": why,
            "unfinished": true,
            "lines": self.lines,
            "answered": self.asked - self.failed,
            "failed": self.failed,
        })
    }
}

/// On SIGINT, SIGTERM or SIGHUP, once no record is half written, writes the `--json`
/// stream's last line ([`Tally::unfinished`]) and exits with 128 plus the signal's number,
/// as the signal would have ended the process (before, it did so mid-stream without a word
/// on standard output). Neither a standard output nor a standard error nobody reads holds
/// the exit ([`super::interrupt::LastLine`]); on the first, the line is left out.
fn end_on_signal(tally: &super::interrupt::LastLine<Tally>) {
    tally.watch(
        "such a signal ends the stream without its last line",
        |t, signal| {
            if t.finished {
                return;
            }
            let name = signal.name();
            let mut out = std::io::stdout().lock();
            // Nothing more can be done about an output that cannot be written.
            let _ = writeln!(out, "{}", t.unfinished(&format!("stopped by {name}")))
                .and_then(|()| out.flush());
            drop(out);
            // After the line: a standard error nobody reads must not keep it from being
            // written.
            relbert::output::eprint_line(&format!(
                "stopped by {name}: the query stream's last JSON line says it is unfinished"
            ));
        },
    );
}

/// Ends the line of the prompt `> ` on standard error, so that nothing after it is printed
/// on the prompt's line. Lost with its terminal, it loses nothing else.
fn end_prompt_line() {
    let _ = relbert::output::Stderr.write_all(b"\n");
}

/// How a query stream ends once every line got its answer or its error. For a script
/// feeding lines, the status says whether all were answered (1 if not, with how many). A
/// person at the prompt saw each line's error as it came: a typo there was answered, and
/// ending the session with Ctrl-D is no failure (it ended with a summary error and status 1).
fn stream_end(interactive: bool, json: bool, asked: usize, failed: usize) -> Result<()> {
    if interactive {
        return Ok(());
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {asked} query lines could not be answered (each is named {})",
        if json { "in its JSON line" } else { "above" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused word is quoted once: after the message, or in it where the message already
    /// names it (a placeholder's was quoted twice).
    #[test]
    fn a_refused_word_is_quoted_once() {
        use relbert::prompt::{check_words, MAX_WORD_CHARS};
        for (a, word) in [("<obj>", "<obj>"), ("x\ty", "x\ty")] {
            let e = check_words(a, "france", MAX_WORD_CHARS).unwrap_err();
            let said = word_error(e.clone()).to_string();
            assert_eq!(said.matches(&quoted(word)).count(), 1, "{said}");
            let said = arg_word_error(e).to_string();
            assert_eq!(said.matches(&quoted(word)).count(), 1, "{said}");
        }
    }

    /// A reader that hands out its chunks one per read, counting the reads: a terminal's
    /// input, where a read returns 0 at a Ctrl-D and the next one waits for more typing.
    struct Chunks {
        chunks: Vec<&'static [u8]>,
        reads: usize,
    }

    impl std::io::Read for Chunks {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let chunk = self.chunks.get(self.reads).copied().unwrap_or(b"");
            self.reads += 1;
            out[..chunk.len()].copy_from_slice(chunk);
            Ok(chunk.len())
        }
    }

    fn lines_of(chunks: Vec<&'static [u8]>) -> QueryLines<std::io::BufReader<Chunks>> {
        QueryLines::new(std::io::BufReader::new(Chunks { chunks, reads: 0 }))
    }

    /// Audit (s20): words typed without Enter, then Ctrl-D twice, were answered, and the
    /// session read on (a third Ctrl-D ended it). After a read of nothing, nothing is read.
    #[test]
    fn nothing_is_read_after_the_end_of_input() {
        let mut lines = lines_of(vec![b"dog puppy", b"", b"cat kitten\n"]);
        let mut buf = Vec::new();
        let first = lines.next_line(&mut buf, 100).unwrap();
        assert_eq!(
            (first.read, first.text, &buf[..]),
            (9, 9, &b"dog puppy"[..])
        );
        assert!(lines.ended());
        let next = lines.next_line(&mut buf, 100).unwrap();
        assert_eq!((next.read, next.text, buf.len()), (0, 0, 0));
        assert_eq!(lines.input.get_ref().reads, 2, "read again after the end");
    }

    /// Audit (s20): the line limit counted the line end, so a line of the limit's length
    /// was refused when a `\n` or `\r\n` followed it (a `\r\n` may come in two reads).
    #[test]
    fn a_line_is_measured_without_its_end() {
        let mut lines = lines_of(vec![b"abcd\r", b"\nabcd\n", b"abcde\r\nabcd"]);
        let mut buf = Vec::new();
        let mut read = |lines: &mut QueryLines<_>| {
            let n = lines.next_line(&mut buf, 4).unwrap();
            (n.read, n.text, String::from_utf8_lossy(&buf).into_owned())
        };
        assert_eq!(read(&mut lines), (6, 4, "abcd\r\n".into()));
        assert_eq!(read(&mut lines), (5, 4, "abcd\n".into()));
        // Over the limit: cut (the line end is kept only when room is left for it).
        assert_eq!(read(&mut lines), (7, 5, "abcde\r".into()));
        assert_eq!(read(&mut lines), (4, 4, "abcd".into()));
        assert_eq!(read(&mut lines), (0, 0, String::new()));
    }

    /// Found by an audit: a typo at the interactive prompt, then Ctrl-D, ended the session
    /// with "1 of 1 query lines could not be answered" and status 1. Only a stream that is
    /// not a person's session counts its failed lines in the status.
    #[test]
    fn only_a_stream_without_a_person_at_the_prompt_fails_for_its_failed_lines() {
        assert!(stream_end(true, false, 1, 1).is_ok());
        assert!(stream_end(true, false, 3, 0).is_ok());
        let err = stream_end(false, false, 1, 1).unwrap_err().to_string();
        assert_eq!(
            err,
            "1 of 1 query lines could not be answered (each is named above)"
        );
        let err = stream_end(false, true, 2, 1).unwrap_err().to_string();
        assert!(err.contains("in its JSON line"), "{err}");
        assert!(stream_end(false, false, 4, 0).is_ok());
        assert!(stream_end(false, true, 4, 0).is_ok());
    }

    /// A [`DefaultCheck`] of the record `record`, as a query read it before the build.
    fn check_with(record: DefaultIndexRecord) -> DefaultCheck {
        DefaultCheck {
            record,
            dirty: true,
            vocab: None,
            own_place: false,
        }
    }

    /// A build's error as the build of the default index gives it.
    fn build_error(dir: &Path, e: relbert_index::IndexError) -> anyhow::Error {
        anyhow::Error::from(relbert::Error::from(e))
            .context(format!("building index {}", dir.display()))
    }

    /// Review (s30): two first-time queries started together both passed the early check
    /// for a build in progress; the one that loaded the model last failed on the other's
    /// published index, "already exists (pass force to replace it)" (a flag `query` does not
    /// have), or on its lock with the generic "being written by another process". The first
    /// uses the published index, with its record as that build wrote it; the second gets the
    /// early check's refusal, naming the pid.
    #[test]
    fn a_build_that_lost_the_race_uses_the_index_or_names_the_builder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("def");
        let held = relbert_index::IndexError::Locked {
            path: dir.clone(),
            holder: "pid 4242: relbert query dog cat (since unix time 1)".into(),
        };
        let mut check = check_with(DefaultIndexRecord::default());
        let err = settle_build_race(build_error(&dir, held), &dir, &mut check).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.starts_with("another relbert (pid 4242) is building the default index at")
                && err.contains("wait for it to finish"),
            "{err}"
        );
        assert!(!err.contains("being written"), "{err}");

        // Published meanwhile: used, with the record the other process wrote beside it.
        let exists = || relbert_index::IndexError::AlreadyExists { path: dir.clone() };
        std::fs::create_dir(&dir).unwrap();
        let err = settle_build_race(build_error(&dir, exists()), &dir, &mut check).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("holds no index") && !err.contains("pass force"),
            "{err}"
        );
        std::fs::write(dir.join("meta"), b"published").unwrap();
        DefaultIndexRecord::load(&dir).save(&dir, &[]).unwrap();
        settle_build_race(build_error(&dir, exists()), &dir, &mut check).unwrap();
        assert!(!check.dirty);
        assert_eq!(check.record, DefaultIndexRecord::load(&dir));

        // Any other failure is the build's own.
        let other = relbert_index::IndexError::FolderMissing {
            path: tmp.path().join("gone"),
            output: dir.clone(),
        };
        let err = settle_build_race(build_error(&dir, other), &dir, &mut check).unwrap_err();
        assert!(format!("{err:#}").contains("no such folder"), "{err:#}");
    }
}
