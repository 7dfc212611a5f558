//! `relbert query`: "A is to B as ? is to ?" from the command line, a REPL, or a JSON stream.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use relbert::indexing::{encoder_info, same_function, BuildOptions, GraphWhileEncoding};
use relbert::query::{QueryEngine, QueryHit, QueryOptions, Source};
use relbert_index::HnswParams;

use super::index::{build_with_progress, read_all, screen};
use super::ModelArgs;

/// Arguments of `relbert query`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Index directory (default: $RELBERT_INDEX or indexes/default, built from the bundled
    /// vocabulary on first use).
    #[arg(long)]
    index: Option<PathBuf>,
    /// Query this Qdrant collection instead of a local index (written by `relbert index
    /// export --qdrant`).
    #[arg(long, conflicts_with = "index")]
    collection: Option<String>,
    /// Qdrant gRPC URL(s) for --collection, comma-separated for several nodes (default:
    /// $RELBERT_QDRANT_URL).
    #[arg(long, requires = "collection", conflicts_with = "index")]
    qdrant: Option<String>,
    /// Model for pairs not in the index (default: the one the index was built with).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The query pair A B (or one argument A:B); without it, queries are read from standard
    /// input, one per line (`a<TAB>b`, `a:b` or `a b`).
    #[arg(num_args = 1..=2, value_names = ["A", "B"])]
    pair: Vec<String>,
    /// Results per query.
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// Exact brute-force search instead of HNSW.
    #[arg(long)]
    exact: bool,
    /// HNSW candidate-list size (larger: slower, more accurate).
    #[arg(long, default_value_t = 64)]
    ef: usize,
    /// One JSON object per query on standard output.
    #[arg(long)]
    json: bool,
    /// Keep results that share a word with the query.
    #[arg(long)]
    keep_shared_words: bool,
    /// Number format for encoding pairs not in the index (default: the index's own; another
    /// is allowed, with a note) and for building the default index when it is missing
    /// (default there: bf16 on CPUs with AVX512-BF16, else f32).
    #[arg(long)]
    dtype: Option<relbert::Dtype>,
    /// Where pairs not in the index are encoded (and the default index is built when
    /// missing): cpu, or cuda:N with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Why an existing default index no longer matches the default model, if it does not.
///
/// The default index is a cache of the default model's vectors, so a new default model (the
/// trained one arriving, new weights, or a config that changes the pair function: template,
/// aggregation, offset weight) makes it stale. The config is compared first; then the weights'
/// hash, which is skipped (to keep start-up fast) when the index names the same model
/// directory and the weights file is older than the index.
fn default_index_staleness(dir: &Path) -> Result<Option<String>> {
    // Only the meta is needed here; the full open (with the pairs checksum) follows anyway.
    let opts = relbert_index::OpenOptions {
        verify: relbert_index::Verify::Headers,
    };
    let index = relbert_index::Index::open_with(dir, opts)
        .with_context(|| format!("opening the default index {}", dir.display()))?;
    let built = index.meta().encoder.clone();
    let model = relbert::defaults::default_model_dir();
    let function = relbert::relation::PairFunction::of_model(&model)
        .with_context(|| format!("reading the default model {}", model.display()))?;
    let now = encoder_info(&function.identity(built.model.clone(), built.weights_sha256.clone()));
    if !same_function(&built, &now) {
        return Ok(Some(format!(
            "the default model {} now gives another pair function: {}",
            model.display(),
            relbert::indexing::function_difference(&now, &built).join(", ")
        )));
    }
    let weights = model.join("model.safetensors");
    let canon = |p: &std::path::Path| std::fs::canonicalize(p).ok();
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let same_dir = canon(std::path::Path::new(&built.model)).is_some()
        && canon(std::path::Path::new(&built.model)) == canon(&model);
    let older = matches!(
        (modified(&weights), modified(&dir.join("meta"))),
        (Some(w), Some(m)) if w <= m
    );
    if same_dir && older {
        return Ok(None);
    }
    let sha = relbert::encoder::Encoder::weights_sha256(&weights)?;
    if sha == built.weights_sha256 {
        return Ok(None);
    }
    let short = |s: &str| s.chars().take(12).collect::<String>();
    Ok(Some(format!(
        "built with {} (weights {}), while the default model is {} (weights {})",
        built.model,
        short(&built.weights_sha256),
        model.display(),
        short(&sha)
    )))
}

/// Whether the index at `dir` is the default model's: `Ok(None)` if so, `Ok(Some(why))` if it
/// is stale (another model, or an index format this build does not read), an error if it
/// cannot be judged (a damaged index).
fn judge_default_index(dir: &Path) -> Result<Option<String>> {
    match default_index_staleness(dir) {
        Ok(v) => Ok(v),
        Err(e) => match e.downcast_ref::<relbert_index::IndexError>() {
            Some(relbert_index::IndexError::UnsupportedVersion { found, .. }) => Ok(Some(format!(
                "it was written by another relbert version (index format {found})"
            ))),
            _ => Err(e),
        },
    }
}

/// Whether the index at `dir` is relbert's cache of the default vocabulary, which relbert may
/// set aside and replace when the default model changes.
///
/// `indexes/default` in the checkout is relbert's own. A directory named by `$RELBERT_INDEX`
/// may be the user's own index (the flag's help offers the variable for any index), so it
/// counts as the cache only when it holds the default vocabulary's pairs: every pair of it is
/// one of the vocabulary's, and it holds at least 99% of them (the build leaves out the few
/// whose prompt is too long for the model). An index of other pairs is never moved or removed.
fn is_default_cache(dir: &Path) -> Result<bool> {
    if std::env::var_os("RELBERT_INDEX").is_none() {
        return Ok(true);
    }
    let files = relbert::defaults::default_vocab_files();
    if files.is_empty() {
        return Ok(false);
    }
    let vocab: std::collections::HashSet<(String, String)> = read_all(&files)?
        .into_iter()
        .map(|r| (r.head, r.tail))
        .collect();
    let opts = relbert_index::OpenOptions {
        verify: relbert_index::Verify::Headers,
    };
    let index = relbert_index::Index::open_with(dir, opts)
        .with_context(|| format!("opening {}", dir.display()))?;
    let n = index.count();
    if n * 100 < vocab.len() * 99 {
        return Ok(false);
    }
    for row in 0..n {
        let p = index.pair(row)?;
        if !vocab.contains(&(p.head.to_string(), p.tail.to_string())) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Makes sure the default index exists and is the default model's.
///
/// The default index is relbert's cache of the default model's vectors. When the default model
/// changes, the index is moved to `<dir>.stale` (one such cache: an older one there is
/// removed), and when the model changes back, the cached one is swapped in again instead of
/// encoding everything anew. A missing index is built at `dtype`. An index at `$RELBERT_INDEX`
/// that is not the cache ([`is_default_cache`]) is used as it is, with its own model.
fn ensure_default_index(dir: &Path, dtype: relbert::Dtype, device: &str) -> Result<()> {
    // `.stale` appended to the whole name: with_extension replaced an extension, so
    // `cache.v1` and `cache.v2` shared one place aside, and `cache.stale` was its own.
    let aside = {
        let mut name = dir.as_os_str().to_owned();
        name.push(".stale");
        PathBuf::from(name)
    };
    let usable = |d: &Path| d.join("meta").is_file() && matches!(judge_default_index(d), Ok(None));
    if dir.join("meta").is_file() {
        let judged = judge_default_index(dir);
        if matches!(judged, Ok(None)) {
            return Ok(());
        }
        // Only a stale or unreadable index is looked at further (this reads every pair). One
        // whose pairs cannot be read (an older format, damage) is judged below: it may be
        // moved aside, which keeps it, but an unreadable one is never removed from there.
        if matches!(is_default_cache(dir), Ok(false)) {
            if let Ok(Some(why)) = &judged {
                eprintln!(
                    "Note: {} ($RELBERT_INDEX) is not the default model's ({why}); it holds \
                     other pairs than the default vocabulary, so it is your index, not relbert's \
                     cache: it is used as it is, and pairs it lacks are encoded with the model \
                     it was built with.",
                    dir.display()
                );
            }
            return Ok(());
        }
        let Some(why) = judged.with_context(|| {
            format!(
                "the default index {} cannot be used; remove it (or rebuild it with relbert \
                 index build --force) and run the query again",
                dir.display()
            )
        })?
        else {
            return Ok(());
        };
        if std::fs::symlink_metadata(&aside).is_ok() && !is_default_cache(&aside).unwrap_or(false) {
            anyhow::bail!(
                "the default index {} is stale ({why}), and {} where relbert sets a stale one \
                 aside is not relbert's cache of the default vocabulary; move it away (relbert \
                 does not replace it) and run the query again",
                dir.display(),
                aside.display()
            );
        }
        if usable(&aside) {
            relbert_index::swap_dirs(dir, &aside)
                .with_context(|| format!("swapping {} and {}", dir.display(), aside.display()))?;
            eprintln!(
                "The default index was for another model ({why}); the one kept in {} is the \
                 default model's and is back in use (the other is kept there now).",
                aside.display()
            );
            return Ok(());
        }
        if std::fs::symlink_metadata(&aside).is_ok() {
            relbert_index::recognise_index(&aside)?;
            std::fs::remove_dir_all(&aside)
                .with_context(|| format!("removing the older cache {}", aside.display()))?;
        }
        std::fs::rename(dir, &aside)
            .with_context(|| format!("moving {} to {}", dir.display(), aside.display()))?;
        eprintln!(
            "The default index is stale ({why}); it was moved to {} (kept in case the model \
             changes back) and a new one is built now.",
            aside.display()
        );
    } else if usable(&aside) {
        std::fs::rename(&aside, dir)
            .with_context(|| format!("moving {} to {}", aside.display(), dir.display()))?;
        eprintln!(
            "Using the default index kept in {} (built with the default model).",
            aside.display()
        );
        return Ok(());
    }
    let files = relbert::defaults::default_vocab_files();
    if files.is_empty() {
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
    }
    eprintln!(
        "Building the default index at {} from {} vocabulary file(s) with the default model at \
         {} (once per default model; an interrupted build resumes).",
        dir.display(),
        files.len(),
        dtype.name()
    );
    let records = read_all(&files)?;
    let encoder = ModelArgs {
        dtype,
        device: device.to_string(),
        ..ModelArgs::defaults()
    }
    .load(false)?;
    // The bundled vocabulary fits the prompt limit; a user's $RELBERT_VOCAB may not.
    let records = screen(&encoder, records, true)?;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    // Half precision: half the disk and page cache, and faster search (it waits on memory),
    // at the same recall (benchmarks/index/README.md, benchmarks/results/query.md).
    let opts = BuildOptions {
        hnsw: HnswParams::default(),
        half: true,
        force: false,
        spool: false,
        graph_while_encoding: GraphWhileEncoding::Auto,
    };
    build_with_progress(&encoder, &records, dir, &opts)?;
    Ok(())
}

fn print_table(a: &str, b: &str, hits: &[QueryHit], source: Source) {
    let from = match source {
        Source::Index => "in the index",
        Source::Encoded => "encoded",
    };
    println!("{a} : {b}  ({from})");
    if hits.is_empty() {
        println!("  (no results)");
        return;
    }
    // Padded by the columns a terminal gives each character (wide CJK and emoji take two,
    // combining marks none), not by characters, so the scores line up.
    use unicode_width::UnicodeWidthStr;
    let pairs: Vec<String> = hits
        .iter()
        .map(|h| format!("{} : {}", h.pair[0], h.pair[1]))
        .collect();
    let w = pairs.iter().map(|p| p.width()).max().unwrap_or(4).max(4);
    println!("  {:>3}  {:<w$}  {:>6}  label", "#", "pair", "score");
    for (i, (h, pair)) in hits.iter().zip(&pairs).enumerate() {
        let pad = " ".repeat(w - pair.width());
        println!(
            "  {:>3}  {pair}{pad}  {:>6.3}  {}",
            i + 1,
            h.score,
            h.label.as_deref().unwrap_or("")
        );
    }
}

pub fn run(a: QueryArgs) -> Result<()> {
    // Checked before any work, so a bad --device is reported as such, not after a build.
    let device = relbert::device::parse_device(&a.device)?;
    // As a query line on standard input is read: spaces around a word are not part of it,
    // and an empty word is no word.
    let one: Option<(String, String)> = match a.pair.as_slice() {
        [line] => Some(relbert::query::parse_query_line(line).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid value for [A B]: {line:?} is one word; give the pair as two \
                 arguments, A B, or as one, A:B"
            )
        })?),
        _ => None,
    };
    let pair = match a.pair.as_slice() {
        [_] => one.as_ref().map(|(x, y)| (x.as_str(), y.as_str())),
        [x, y] => {
            let (x, y) = (x.trim(), y.trim());
            anyhow::ensure!(
                !relbert::pairs::blank_word(x) && !relbert::pairs::blank_word(y),
                "invalid value for [A B]: a word of the query pair is empty, or only invisible \
                 characters ({:?} {:?})",
                a.pair[0],
                a.pair[1]
            );
            Some((x, y))
        }
        _ => None,
    };
    let mut engine = match &a.collection {
        Some(collection) => {
            let urls = super::export::qdrant_urls(a.qdrant.as_deref())?;
            let store = relbert::store::qdrant::QdrantStore::open(&urls, collection)?;
            QueryEngine::with_store(Box::new(store), a.model.clone())
        }
        None => {
            let dir = match &a.index {
                Some(d) => d.clone(),
                None => {
                    let d = relbert::defaults::default_index_dir();
                    // The default index is a cache built once per model, and its build is
                    // the first query's whole wait: on a CPU with the bfloat16 kernel it is
                    // built at bf16 unless --dtype says otherwise.
                    let dtype = a.dtype.unwrap_or(if device.is_cuda() {
                        relbert::Dtype::F32
                    } else {
                        relbert::Dtype::fast_cpu_default()
                    });
                    ensure_default_index(&d, dtype, &a.device)?;
                    d
                }
            };
            QueryEngine::open(&dir, a.model.clone())
                .with_context(|| format!("opening index {}", dir.display()))?
        }
    };
    if let Some(d) = a.dtype {
        engine.set_dtype(d);
    }
    engine.set_device(device);
    let opts = QueryOptions {
        k: a.k,
        exact: a.exact,
        ef: a.ef,
        keep_shared_words: a.keep_shared_words,
    };
    // One argument that reads two ways is the pair the store holds, as a stream line is.
    let reread = match a.pair.as_slice() {
        [line] => engine.read_query_line(line)?,
        _ => None,
    };
    let pair = match &reread {
        Some((x, y)) => Some((x.as_str(), y.as_str())),
        None => pair,
    };
    if let Some((x, y)) = pair {
        let (hits, source) = engine.query(x, y, &opts)?;
        if a.json {
            let doc = serde_json::json!({"query": [x, y], "source": source, "results": hits});
            println!("{doc}");
        } else {
            print_table(x, y, &hits, source);
        }
        return Ok(());
    }

    // Stream mode: one query per line. With --json every input line gets exactly one output
    // line (numbered), so the output lines up with the input: an answer, a skipped blank or
    // comment line, or an error record; a bad line (unparsable, not UTF-8, an unknown pair
    // the model cannot encode) never ends the stream.
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal() && !a.json;
    if interactive {
        eprintln!("A is to B as ? is to ?  Type a pair (a b, a:b or a<TAB>b); Ctrl-D to quit.");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut input = stdin.lock();
    let mut buf = Vec::new();
    let mut lineno = 0usize;
    // Lines asked and lines that could not be answered, for the exit status.
    let (mut asked, mut failed) = (0usize, 0usize);
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush().ok();
        }
        buf.clear();
        if input
            .read_until(b'\n', &mut buf)
            .context("reading standard input")?
            == 0
        {
            break;
        }
        lineno += 1;
        // A long-running stream follows the index: after an `index add` (or a rebuild)
        // publishes, the next line is answered from the new index.
        match engine.refresh() {
            Ok(true) => {
                if let Some(index) = engine.index() {
                    tracing::info!(
                        "{} changed: now answering from index {} ({} pairs)",
                        index.dir().display(),
                        index.id(),
                        index.count()
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
            Err(_) => Err((
                None,
                String::from_utf8_lossy(&buf).trim_end().to_string(),
                "the line is not valid UTF-8".to_string(),
            )),
            Ok(text) => {
                let line = text.trim_end_matches(['\r', '\n']);
                if line.trim().is_empty() || line.starts_with('#') {
                    if a.json {
                        let what = if line.trim().is_empty() {
                            "blank line"
                        } else {
                            "comment"
                        };
                        writeln!(
                            out,
                            "{}",
                            serde_json::json!({"line": lineno, "skipped": what})
                        )?;
                        out.flush()?;
                    }
                    continue;
                }
                match engine.read_query_line(line) {
                    Err(e) => Err((None, line.to_string(), format!("{e:#}"))),
                    Ok(Some((x, y))) => match engine.query(&x, &y, &opts) {
                        Ok(r) => Ok((x, y, r)),
                        Err(e) => Err((Some([x, y]), line.to_string(), format!("{e:#}"))),
                    },
                    Ok(None) => Err((
                        None,
                        line.to_string(),
                        "expected two words: a<TAB>b, a:b or a b".to_string(),
                    )),
                }
            }
        };
        asked += 1;
        failed += usize::from(record.is_err());
        match record {
            Ok((x, y, (hits, source))) => {
                if a.json {
                    let doc = serde_json::json!({"line": lineno, "query": [x, y], "source": source, "results": hits});
                    writeln!(out, "{doc}")?;
                } else {
                    print_table(&x, &y, &hits, source);
                }
            }
            Err((pair, raw, msg)) => {
                if a.json {
                    let doc = serde_json::json!({"line": lineno, "query": pair, "input": raw, "error": msg});
                    writeln!(out, "{doc}")?;
                } else {
                    eprintln!("error: line {lineno}: {msg}");
                }
            }
        }
        out.flush()?;
    }
    // Every line got its answer or its error above; the status tells a script whether all
    // were answered.
    anyhow::ensure!(
        failed == 0,
        "{failed} of {asked} query lines could not be answered (each is named above)"
    );
    Ok(())
}
