//! `relbert query`: "A is to B as ? is to ?" from the command line, a REPL, or a JSON stream.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use relbert::indexing::BuildOptions;
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

fn ensure_default_index(dir: &std::path::Path) -> Result<()> {
    if dir.join("meta").is_file() {
        return Ok(());
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
    let opts = BuildOptions {
        hnsw: HnswParams::default(),
        half: false,
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
