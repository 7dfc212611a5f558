//! `relbert query`: "A is to B as ? is to ?" from the command line, a REPL, or a JSON stream.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use relbert::indexing::{encoder_info, same_function, BuildOptions};
use relbert::query::{parse_query_line, QueryEngine, QueryHit, QueryOptions, Source};
use relbert_index::HnswParams;

use super::index::{build_with_progress, read_all};
use super::ModelArgs;

/// Arguments of `relbert query`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Index directory (default: $RELBERT_INDEX or indexes/default, built from the bundled
    /// vocabulary on first use).
    #[arg(long)]
    index: Option<PathBuf>,
    /// Model for pairs not in the index (default: the one the index was built with).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The query pair A B; without it, queries are read from standard input, one per line
    /// (`a<TAB>b`, `a:b` or `a b`).
    #[arg(num_args = 2, value_names = ["A", "B"])]
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
}

/// Why an existing default index no longer matches the default model, if it does not.
///
/// The default index is a cache of the default model's vectors, so a new default model (the
/// trained one arriving, new weights, or a config that changes the pair function: template,
/// aggregation, offset weight) makes it stale. The config is compared first; then the weights'
/// hash, which is skipped (to keep start-up fast) when the index names the same model
/// directory and the weights file is older than the index.
fn default_index_staleness(dir: &std::path::Path) -> Result<Option<String>> {
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
        let mut changed = Vec::new();
        if built.aggregation != now.aggregation {
            changed.push(format!(
                "aggregation {:?} → {:?}",
                built.aggregation, now.aggregation
            ));
        }
        if built.template != now.template {
            changed.push(format!(
                "template {:?} → {:?}",
                built.template, now.template
            ));
        }
        return Ok(Some(format!(
            "the default model {} now gives another pair function: {}",
            model.display(),
            changed.join(", ")
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

fn ensure_default_index(dir: &std::path::Path) -> Result<()> {
    if dir.join("meta").is_file() {
        let Some(why) = default_index_staleness(dir)? else {
            return Ok(());
        };
        // Never delete an index: the stale one moves aside.
        let mut aside = dir.with_extension("stale");
        let mut n = 1;
        while aside.exists() {
            n += 1;
            aside = dir.with_extension(format!("stale{n}"));
        }
        std::fs::rename(dir, &aside)
            .with_context(|| format!("moving {} to {}", dir.display(), aside.display()))?;
        eprintln!(
            "The default index is stale ({why}); it was moved to {} and is rebuilt now.",
            aside.display()
        );
    }
    let files = relbert::defaults::default_vocab_files();
    anyhow::ensure!(
        !files.is_empty(),
        "no index at {} and no bundled vocabulary (index/vocab/*.tsv) to build it from",
        dir.display()
    );
    eprintln!(
        "Building the default index at {} from {} vocabulary file(s); this happens once.",
        dir.display(),
        files.len()
    );
    let records = read_all(&files)?;
    let encoder = ModelArgs::defaults().load(false)?;
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
    let w = hits
        .iter()
        .map(|h| h.pair[0].chars().count() + h.pair[1].chars().count() + 3)
        .max()
        .unwrap_or(4)
        .max(4);
    println!("  {:>3}  {:<w$}  {:>6}  label", "#", "pair", "score");
    for (i, h) in hits.iter().enumerate() {
        let pair = format!("{} : {}", h.pair[0], h.pair[1]);
        println!(
            "  {:>3}  {:<w$}  {:>6.3}  {}",
            i + 1,
            pair,
            h.score,
            h.label.as_deref().unwrap_or("")
        );
    }
}

pub fn run(a: QueryArgs) -> Result<()> {
    let dir = match &a.index {
        Some(d) => d.clone(),
        None => {
            let d = relbert::defaults::default_index_dir();
            ensure_default_index(&d)?;
            d
        }
    };
    let mut engine = QueryEngine::open(&dir, a.model.clone())
        .with_context(|| format!("opening index {}", dir.display()))?;
    let opts = QueryOptions {
        k: a.k,
        exact: a.exact,
        ef: a.ef,
        keep_shared_words: a.keep_shared_words,
    };
    if let [x, y] = a.pair.as_slice() {
        let (hits, source) = engine.query(x, y, &opts)?;
        if a.json {
            let doc = serde_json::json!({"query": [x, y], "source": source, "results": hits});
            println!("{doc}");
        } else {
            print_table(x, y, &hits, source);
        }
        return Ok(());
    }

    // Stream mode: one query per line; an unanswerable line gets an error record, not an exit.
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal() && !a.json;
    if interactive {
        eprintln!("A is to B as ? is to ?  Type a pair (a b, a:b or a<TAB>b); Ctrl-D to quit.");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush().ok();
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading standard input")?;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let result = match parse_query_line(&line) {
            Some((x, y)) => engine
                .query(&x, &y, &opts)
                .map(|r| (x, y, r))
                .map_err(|e| (serde_json::json!(line), e.to_string())),
            None => Err((
                serde_json::json!(line),
                "expected two words: a<TAB>b, a:b or a b".to_string(),
            )),
        };
        match result {
            Ok((x, y, (hits, source))) => {
                if a.json {
                    let doc =
                        serde_json::json!({"query": [x, y], "source": source, "results": hits});
                    writeln!(out, "{doc}")?;
                } else {
                    print_table(&x, &y, &hits, source);
                }
            }
            Err((q, msg)) => {
                if a.json {
                    writeln!(out, "{}", serde_json::json!({"query": q, "error": msg}))?;
                } else {
                    eprintln!("error: {msg}");
                }
            }
        }
        out.flush()?;
    }
    Ok(())
}
