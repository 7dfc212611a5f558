//! The graph built while rows arrive ([`IndexBuilder::graph_during_appends`]) against the graph
//! built after the last row, with rows arriving at a fixed rate from a producer that uses no
//! CPU: what a GPU encoder looks like to the index builder (it appends a chunk every few
//! milliseconds while the CPU cores are free). Modes alternate each round, same rows.
//!
//! ```text
//! cargo run --release -p relbert-index --example staged_build -- \
//!     --n 100000 --dim 384 --rate 4000 [--f16] [--rounds 3] [--threads 0] \
//!     [--stage-threads 0] [--recall-queries 500] --work DIR
//! ```
//!
//! Prints one JSON line per build: mode, the producer's seconds (first to last append), wall
//! seconds to the published index, the tail after the last append, rows the graph held when
//! the last row arrived, and recall@10 of HNSW search (ef 64) against exact search over
//! stored rows used as queries (own row left out).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use relbert_index::synthetic::{low_rank, numbered_pairs};
use relbert_index::{
    EncoderInfo, HnswParams, Index, IndexBuilder, IndexSpec, PairEntry, Precision,
};

struct Args {
    n: usize,
    dim: usize,
    rate: f64,
    f16: bool,
    rounds: usize,
    threads: usize,
    stage_threads: usize,
    recall_queries: usize,
    work: PathBuf,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        n: 100_000,
        dim: 384,
        rate: 4000.0,
        f16: false,
        rounds: 3,
        threads: 0,
        stage_threads: 0,
        recall_queries: 500,
        work: PathBuf::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--n" => a.n = num(value()?)? as usize,
            "--dim" => a.dim = num(value()?)? as usize,
            "--rate" => a.rate = num(value()?)?,
            "--f16" => a.f16 = true,
            "--rounds" => a.rounds = num(value()?)? as usize,
            "--threads" => a.threads = num(value()?)? as usize,
            "--stage-threads" => a.stage_threads = num(value()?)? as usize,
            "--recall-queries" => a.recall_queries = num(value()?)? as usize,
            "--work" => a.work = PathBuf::from(value()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.work.as_os_str().is_empty() {
        return Err("--work DIR is required".into());
    }
    Ok(a)
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("staged_build: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&a) {
        eprintln!("staged_build: {e}");
        std::process::exit(1);
    }
}

fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&a.work)?;
    let rows = low_rank(a.n, a.dim, 32, 0.3, 11);
    let entries = numbered_pairs(0..a.n);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for round in 0..a.rounds {
        let modes = if round % 2 == 0 {
            ["off", "on"]
        } else {
            ["on", "off"]
        };
        for mode in modes {
            let out = a.work.join(format!("idx-{mode}"));
            if out.exists() {
                std::fs::remove_dir_all(&out)?;
            }
            let r = build(a, &rows, &entries, &out, mode == "on")?;
            let recall = recall(&out, &rows, a.dim, a.recall_queries)?;
            println!(
                "{{\"round\": {round}, \"mode\": \"{mode}\", \"n\": {}, \"dim\": {}, \"f16\": {}, \"rate\": {}, \"cores\": {cores}, \"producer_s\": {:.3}, \"wall_s\": {:.3}, \"tail_s\": {:.3}, \"graph_rows_at_last_append\": {}, \"recall_at_10\": {:.4}}}",
                a.n, a.dim, a.f16, a.rate, r.producer, r.wall, r.tail, r.staged_rows, recall
            );
        }
    }
    Ok(())
}

struct Timing {
    producer: f64,
    wall: f64,
    tail: f64,
    staged_rows: u64,
}

fn build(
    a: &Args,
    rows: &[f32],
    entries: &[PairEntry],
    out: &Path,
    staged: bool,
) -> Result<Timing, relbert_index::IndexError> {
    let spec = IndexSpec {
        dim: a.dim as u32,
        precision: if a.f16 {
            Precision::F16
        } else {
            Precision::F32
        },
        encoder: EncoderInfo::default(),
        input: "staged_build".into(),
    };
    let params = HnswParams {
        threads: a.threads,
        ..HnswParams::default()
    };
    let started = Instant::now();
    let mut b = IndexBuilder::create_or_resume(out, spec, false)?;
    if staged {
        // --stage-threads 0: every core but one, as `relbert index build` stages.
        let threads = a.stage_threads;
        b.graph_during_appends(
            HnswParams { threads, ..params },
            a.n as u64,
            relbert_index::GraphPriority::default(),
        )?;
    }
    const CHUNK: usize = 2048;
    for (k, start) in (0..a.n).step_by(CHUNK).enumerate() {
        let end = (start + CHUNK).min(a.n);
        if a.rate > 0.0 {
            let due = Duration::from_secs_f64((k * CHUNK + (end - start)) as f64 / a.rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        b.append_chunk(&entries[start..end], &rows[start * a.dim..end * a.dim])?;
    }
    let producer = started.elapsed().as_secs_f64();
    let staged_rows = b.staged_progress().map_or(0, |p| p.inserted);
    b.finish(params, |_| {})?;
    let wall = started.elapsed().as_secs_f64();
    Ok(Timing {
        producer,
        wall,
        tail: wall - producer,
        staged_rows,
    })
}

/// recall@10 of HNSW (ef 64) against exact search, stored rows as queries, own row left out.
fn recall(
    dir: &Path,
    rows: &[f32],
    dim: usize,
    queries: usize,
) -> Result<f64, relbert_index::IndexError> {
    let idx = Index::open(dir)?;
    let n = idx.count();
    let step = (n / queries.max(1)).max(1);
    let (mut hit, mut all) = (0usize, 0usize);
    for q in (0..n).step_by(step).take(queries) {
        let v = &rows[q * dim..(q + 1) * dim];
        let exact: Vec<usize> = idx
            .search_exact_filtered(v, 10, |r| r != q)?
            .into_iter()
            .map(|h| h.row)
            .collect();
        let approx = idx.search_filtered(v, 10, 64, |r| r != q)?;
        hit += approx.iter().filter(|h| exact.contains(&h.row)).count();
        all += exact.len();
    }
    Ok(hit as f64 / all.max(1) as f64)
}
