//! Benchmarks for relbert-index.
//!
//! ```text
//! # ANN: build, recall@10 vs exact and single-thread q/s per ef, plus the hnswlib peer
//! cargo run --release -p relbert-index --example bench_index -- ann \
//!     [--vectors FILE.npy | --synthetic N --dim D --latent R --noise S --write-npy FILE.npy] \
//!     [--queries 1000] [--m 16] [--ef-construction 200] [--ef 16,32,64,128,256] [--threads 1] \
//!     [--builders relbert_hnsw[:THREADS],hnsw_rs[:THREADS],...] [--seed S] [--date D] \
//!     [--peer-python PY --peer-script ann_peer.py] --work DIR --out-json F --out-md F
//!
//! # Search only, on an index `ann` already built: median single-thread q/s over repeats
//! # (for A/B runs of search changes without rebuilding the graph)
//! cargo run --release -p relbert-index --example bench_index -- search --index DIR \
//!     --vectors FILE.npy [--queries 1000] [--ef 32,128] [--repeat 7] [--recall 1]
//! # (--recall: also recall@10 against the exact top 10 of the .npy's f32 rows)
//!
//! # The same index with its vectors rounded to f16 (graph, pairs and encoder identity kept), to
//! # measure what f16 storage alone changes in search speed and recall
//! cargo run --release -p relbert-index --example bench_index -- to-f16 --index DIR --out DIR
//!
//! # Rebuild an existing index from its own pairs and vectors (no encoder), through the same
//! # IndexBuilder path `relbert index build` takes: graph time and the process's peak RSS
//! cargo run --release -p relbert-index --example bench_index -- rebuild --index DIR --out DIR \
//!     [--threads 0] [--m 16] [--ef-construction 200]
//!
//! # recall@10 of an index's HNSW search against its exact search, its own stored rows as
//! # queries (each query's own row left out of both), reported for all queried rows and for
//! # the rows from --from on (the rows an `index add` appended)
//! cargo run --release -p relbert-index --example bench_index -- self-recall --index DIR \
//!     [--queries 2000] [--ef 64] [--from ROW] [--start-at-self 1] [--repeat R]
//! # (--start-at-self 1: searches start at the query's own row; --repeat R: R alternating
//! # timed passes of the searches alone, from the entry point and from the own row)
//!
//! # Open time and resident memory of a large index (random graph; see the results file)
//! cargo run --release -p relbert-index --example bench_index -- open \
//!     --n 1000000 --dim 384 --work DIR [--runs 9] --out-json F --out-md F
//! ```
//!
//! Every option takes a value (`--recall 1`, `--start-at-self 1`); an option the mode does not
//! take, one given twice, or a value that does not parse is refused with an error naming it.
//! Medians are true medians (the mean of the two middle values of an even count).
//!
//! The ANN protocol matches `ann_peer.py --vectors`: rows are L2-normalised, the last
//! `--queries` rows are the queries and are not indexed, the ground truth is the exact top-k by
//! inner product, and queries are issued one at a time on one thread. Each `--builders` entry
//! builds its own index from the same rows (threads default to `--threads`), so builders are
//! compared in one run; the ground truth comes from the first index's exact search.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use relbert_index::synthetic::{gaussian, low_rank};
use relbert_index::*;

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const USAGE: &str =
    "usage: bench_index ann|search|to-f16|rebuild|self-recall|open [--option value ...] (see the source header)";

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_default();
    let opts = parse_opts(&mode, args.get(1..).unwrap_or_default())?;
    match mode.as_str() {
        "ann" => ann(&opts),
        "open" => open_bench(&opts),
        "probe" => probe(&opts),
        "search" => search_bench(&opts),
        "to-f16" => to_f16(&opts),
        "rebuild" => rebuild(&opts),
        "self-recall" => self_recall(&opts),
        _ => Err(USAGE.into()),
    }
}

/// The options each mode takes, every one with a value.
fn mode_options(mode: &str) -> Option<&'static [&'static str]> {
    Some(match mode {
        "ann" => &[
            "vectors",
            "synthetic",
            "dim",
            "latent",
            "noise",
            "write-npy",
            "queries",
            "m",
            "ef-construction",
            "ef",
            "threads",
            "builders",
            "seed",
            "date",
            "peer-python",
            "peer-script",
            "work",
            "out-json",
            "out-md",
        ],
        "open" => &["n", "dim", "work", "runs", "out-json", "out-md"],
        "probe" => &["dir"],
        "search" => &["index", "vectors", "queries", "ef", "repeat", "recall"],
        "to-f16" => &["index", "out"],
        "rebuild" => &["index", "out", "threads", "m", "ef-construction"],
        "self-recall" => &["index", "queries", "ef", "from", "start-at-self", "repeat"],
        _ => return None,
    })
}

/// Reads `--name value` pairs. An option the mode does not take, one given twice or one
/// without a value is refused: a misspelt option would otherwise leave its default in place
/// and the run would measure something other than what its command line says.
fn parse_opts(mode: &str, args: &[String]) -> Res<HashMap<String, String>> {
    let known = mode_options(mode).ok_or(USAGE)?;
    let mut opts = HashMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(k) = a.strip_prefix("--") else {
            return Err(
                format!("{mode}: unexpected argument {a:?} (options are --name value)").into(),
            );
        };
        if !known.contains(&k) {
            return Err(format!(
                "{mode}: unknown option --{k} (it takes --{})",
                known.join(", --")
            )
            .into());
        }
        let v = match it.next() {
            Some(v) if !v.starts_with("--") => v,
            _ => return Err(format!("{mode}: --{k} needs a value").into()),
        };
        if opts.insert(k.to_string(), v.clone()).is_some() {
            return Err(format!("{mode}: --{k} given twice").into());
        }
    }
    Ok(opts)
}

/// `--k`'s value, or `d` when it is not given; a value that does not parse is an error naming
/// the option (never the default in its place).
fn get<T: std::str::FromStr>(o: &HashMap<String, String>, k: &str, d: T) -> Res<T>
where
    T::Err: std::fmt::Display,
{
    match o.get(k) {
        None => Ok(d),
        Some(v) => v.parse().map_err(|e| format!("--{k} {v:?}: {e}").into()),
    }
}

/// A comma-separated list of numbers (`--ef 32,128`), or `d` when the option is not given;
/// an empty list or an item that is not a number is an error naming the option.
fn get_list(o: &HashMap<String, String>, k: &str, d: &[usize]) -> Res<Vec<usize>> {
    let Some(v) = o.get(k) else {
        return Ok(d.to_vec());
    };
    let list = v
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .map_err(|e| format!("--{k} {v:?}: {x:?}: {e}"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err(format!("--{k} needs at least one value").into());
    }
    Ok(list)
}

/// A 0/1 switch (`--recall 1`); absent is off, anything but 0 or 1 is an error.
fn get_switch(o: &HashMap<String, String>, k: &str) -> Res<bool> {
    match o.get(k).map(String::as_str) {
        None | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(v) => Err(format!("--{k} {v:?}: expected 0 or 1").into()),
    }
}

/// The median: the middle value of an odd count, the mean of the two middle values of an even
/// one; `None` for no values.
fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

// ---------------------------------------------------------------- search only

fn search_bench(o: &HashMap<String, String>) -> Res<()> {
    let dir = o.get("index").ok_or("--index")?;
    let (data, rows, dim) = read_npy(Path::new(o.get("vectors").ok_or("--vectors")?))?;
    let nq: usize = get(o, "queries", 1000)?.min(rows);
    let repeat: usize = get(o, "repeat", 7)?.max(1);
    let efs = get_list(o, "ef", &[32, 128])?;
    let queries = &data[(rows - nq) * dim..];
    let idx = Index::open(dir)?;
    for q in queries.chunks(dim).take(50) {
        std::hint::black_box(idx.search(q, 10, efs[0])?);
    }
    // Ground truth from the .npy rows themselves (f32, exact), so an f16 index is scored
    // against the vectors it was made from, not against its own rounded copy.
    let truth: Option<Vec<Vec<Hit>>> = get_switch(o, "recall")?.then(|| {
        let base = &data[..(rows - nq) * dim];
        queries
            .chunks(dim)
            .map(|q| {
                let mut s: Vec<Hit> = base
                    .chunks(dim)
                    .enumerate()
                    .map(|(row, r)| Hit {
                        row,
                        score: relbert_index::dot::dot(q, r),
                    })
                    .collect();
                s.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
                s.truncate(10);
                s
            })
            .collect()
    });
    let mut out = Vec::new();
    for &ef in &efs {
        let mut qps = Vec::new();
        for _ in 0..repeat {
            let t = Instant::now();
            for q in queries.chunks(dim) {
                std::hint::black_box(idx.search(q, 10, ef)?);
            }
            qps.push(nq as f64 / t.elapsed().as_secs_f64());
        }
        let med = median(&mut qps).ok_or("no timed pass")?;
        let mut row = serde_json::json!({"ef": ef, "median_qps": round(med, 1),
                                    "min_qps": round(qps[0], 1), "max_qps": round(qps[qps.len() - 1], 1)});
        if let Some(truth) = &truth {
            let mut r = 0.0;
            for (q, t) in queries.chunks(dim).zip(truth) {
                r += recall(&idx.search(q, 10, ef)?, t);
            }
            row["recall_at_10"] = serde_json::json!(round(r / nq as f64, 4));
        }
        out.push(row);
    }
    println!(
        "{}",
        serde_json::json!({"index": dir, "queries": nq, "repeat": repeat, "search": out})
    );
    Ok(())
}

// ---------------------------------------------------------------- self recall

fn self_recall(o: &HashMap<String, String>) -> Res<()> {
    let dir = o.get("index").ok_or("--index")?;
    let idx = Index::open(dir)?;
    let n = idx.count();
    let nq: usize = get(o, "queries", 2000)?.clamp(1, n.max(1));
    let ef: usize = get(o, "ef", 64)?;
    let from: usize = get(o, "from", n)?;
    // --start-at-self 1: each search starts at the query's own row (what a query for a stored
    // pair does, `Index::search_filtered_from`).
    let at_self = get_switch(o, "start-at-self")?;
    // --repeat R: R alternating passes of the HNSW searches alone, from the entry point and
    // from the query's own row; median µs per query of each.
    let repeat: usize = get(o, "repeat", 0)?;
    // Evenly spaced rows, so old and new rows are queried in proportion to their number.
    let queries: Vec<(usize, Vec<f32>)> = (0..nq)
        .map(|i| {
            let row = i * n / nq;
            Ok((row, idx.vector(row)?.into_owned()))
        })
        .collect::<Res<_>>()?;
    let (mut all, mut all_n, mut new, mut new_n) = (0.0, 0usize, 0.0, 0usize);
    for (row, q) in &queries {
        let (row, q) = (*row, q.as_slice());
        let truth = idx.search_exact_filtered(q, 10, |r| r != row)?;
        let found = idx.search_filtered_from(q, 10, ef, at_self.then_some(row), |r| r != row)?;
        let r = recall(&found, &truth);
        all += r;
        all_n += 1;
        if row >= from {
            new += r;
            new_n += 1;
        }
    }
    let (mut from_entry, mut from_self) = (Vec::new(), Vec::new());
    for _ in 0..repeat {
        for (times, at) in [(&mut from_entry, false), (&mut from_self, true)] {
            let t = std::time::Instant::now();
            for (row, q) in &queries {
                let row = *row;
                idx.search_filtered_from(q, 10, ef, at.then_some(row), |r| r != row)?;
            }
            times.push(t.elapsed().as_secs_f64() * 1e6 / nq as f64);
        }
    }
    let us = |v: &mut Vec<f64>| median(v).map(|m| round(m, 2));
    println!(
        "{}",
        serde_json::json!({"index": dir, "count": n, "queries": all_n, "ef": ef,
            "start_at_self": at_self,
            "repeat": repeat,
            "us_per_query_from_entry": us(&mut from_entry),
            "us_per_query_from_self": us(&mut from_self),
            "recall_at_10": round(all / all_n.max(1) as f64, 4),
            "from": from, "queries_from": new_n,
            "recall_at_10_from": (new_n > 0).then(|| round(new / new_n as f64, 4))})
    );
    Ok(())
}

// ---------------------------------------------------------------- f16 copy

fn to_f16(o: &HashMap<String, String>) -> Res<()> {
    // Since format 2 every file carries its index's id, so the source's graph file cannot be
    // copied beside new vectors: the f16 copy is a rebuild whose graph is made serially
    // (reproducible) from the f16 rows, with the source's parameters.
    let src = Path::new(o.get("index").ok_or("--index")?);
    let dst = Path::new(o.get("out").ok_or("--out")?);
    if dst.exists() {
        return Err(format!("{} exists", dst.display()).into());
    }
    let idx = Index::open(src)?;
    if idx.meta().precision != Precision::F32 {
        return Err("the source index is not f32".into());
    }
    let (count, hnsw) = (idx.count(), idx.meta().hnsw.clone());
    let opts = relbert_index::RebuildOptions {
        precision: Some(Precision::F16),
        hnsw: HnswParams {
            m: hnsw.m as usize,
            ef_construction: (hnsw.ef_construction as usize).max(1),
            threads: 1,
            ..HnswParams::default()
        },
        force: false,
    };
    relbert_index::rebuild(idx, dst, &opts, |_| {})?;
    eprintln!("wrote {} ({count} rows, f16)", dst.display());
    Ok(())
}

// ---------------------------------------------------------------- rebuild

fn rebuild(o: &HashMap<String, String>) -> Res<()> {
    let src = Path::new(o.get("index").ok_or("--index")?);
    let dst = Path::new(o.get("out").ok_or("--out")?);
    let opts = RebuildOptions {
        precision: None,
        hnsw: HnswParams {
            m: get(o, "m", 16)?,
            ef_construction: get(o, "ef-construction", 200)?,
            threads: get(o, "threads", 0)?,
            ..HnswParams::default()
        },
        force: false,
    };
    let t = Instant::now();
    let mut copy_s = None;
    let mut rss_before_graph = None;
    relbert_index::rebuild(Index::open(src)?, dst, &opts, |p| {
        if p.stage == Stage::Graph && copy_s.is_none() {
            copy_s = Some(t.elapsed().as_secs_f64());
            rss_before_graph = Some(status_kb("VmHWM:"));
        }
    })?;
    let copy_s = copy_s.unwrap_or(0.0);
    println!(
        "{}",
        serde_json::json!({"index": src, "out": dst, "append_s": round(copy_s, 1),
            "finish_s": round(t.elapsed().as_secs_f64() - copy_s, 1),
            "threads": opts.hnsw.threads,
            "peak_rss_kb_before_finish": rss_before_graph, "peak_rss_kb": status_kb("VmHWM:")})
    );
    Ok(())
}

// ---------------------------------------------------------------- npy

fn write_npy(path: &Path, data: &[f32], rows: usize, cols: usize) -> Res<()> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.div_ceil(64) * 64 - total));
    header.push('\n');
    let mut f = std::io::BufWriter::new(fs::File::create(path)?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    for x in data {
        f.write_all(&x.to_le_bytes())?;
    }
    Ok(())
}

fn read_npy(path: &Path) -> Res<(Vec<f32>, usize, usize)> {
    let mut f = fs::File::open(path)?;
    let mut b = Vec::new();
    f.read_to_end(&mut b)?;
    if b.len() < 10 || &b[0..6] != b"\x93NUMPY" {
        return Err("not an npy file".into());
    }
    let (hlen, start) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&b[start..start + hlen])?;
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(format!("need little-endian float32 C-order npy, got {header}").into());
    }
    let shape = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("no shape")?;
    let dims: Vec<usize> = shape
        .trim()
        .trim_start_matches('(')
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if dims.len() != 2 {
        return Err(format!("need a 2-D array, got shape {shape}").into());
    }
    let data: Vec<f32> = b[start + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if data.len() != dims[0] * dims[1] {
        return Err("npy data length does not match its shape".into());
    }
    Ok((data, dims[0], dims[1]))
}

// ---------------------------------------------------------------- machine

fn machine() -> serde_json::Value {
    let lscpu = Command::new("lscpu").output().ok();
    let model = lscpu
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    serde_json::json!({"cpu": model, "nproc": nproc, "loadavg_at_start": load.trim(),
                       "avx2_fma": avx2})
}

fn command_line() -> String {
    let mut s = String::from("cargo run --release -p relbert-index --example bench_index --");
    for a in std::env::args().skip(1) {
        s.push(' ');
        s.push_str(&a);
    }
    s
}

// ---------------------------------------------------------------- ANN

fn recall(found: &[Hit], truth: &[Hit]) -> f64 {
    let t: HashSet<usize> = truth.iter().map(|h| h.row).collect();
    found.iter().filter(|h| t.contains(&h.row)).count() as f64 / truth.len().max(1) as f64
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// One `--builders` entry: `name[:threads]`.
struct BuildSpec {
    builder: GraphBuilder,
    threads: usize,
}

fn parse_builders(s: &str, default_threads: usize) -> Res<Vec<BuildSpec>> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|item| {
            let (name, t) = match item.split_once(':') {
                Some((n, t)) => (n, t.parse::<usize>().map_err(|e| format!("{item}: {e}"))?),
                None => (item, default_threads),
            };
            let builder = GraphBuilder::from_name(name)
                .ok_or_else(|| format!("unknown builder {name} (relbert_hnsw, hnsw_rs)"))?;
            Ok(BuildSpec {
                builder,
                threads: t,
            })
        })
        .collect()
}

/// Appends `base` into a fresh index at `out` and finishes it with `params`; returns
/// (append s, graph s, finish s).
fn build_index(out: &Path, base: &[f32], dim: usize, params: HnswParams) -> Res<(f64, f64, f64)> {
    if out.exists() {
        fs::remove_dir_all(out)?;
    }
    discard_partial(out)?;
    let spec = IndexSpec {
        dim: dim as u32,
        precision: Precision::F32,
        encoder: EncoderInfo {
            model: "bench".into(),
            ..Default::default()
        },
        input: "synthetic".into(),
    };
    let t0 = Instant::now();
    let mut b = IndexBuilder::create_or_resume(out, spec, false)?;
    let chunk = 10_000;
    for (i, v) in base.chunks(chunk * dim).enumerate() {
        let rows_here = v.len() / dim;
        let pairs: Vec<PairEntry> = (0..rows_here)
            .map(|j| PairEntry::new(format!("h{}", i * chunk + j), format!("t{}", i * chunk + j)))
            .collect();
        b.append_chunk(&pairs, v)?;
    }
    let append_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut graph_done = None;
    let mut last = 0u64;
    b.finish(params, |p| {
        if p.stage == Stage::Graph && p.done == p.total {
            graph_done = Some(t1.elapsed().as_secs_f64());
        }
        if p.stage == Stage::Graph && p.done >= last + 20_000 {
            last = p.done;
            eprintln!(
                "  graph {}/{} ({:.0} s)",
                p.done,
                p.total,
                t1.elapsed().as_secs_f64()
            );
        }
    })?;
    let finish_s = t1.elapsed().as_secs_f64();
    Ok((append_s, graph_done.unwrap_or(finish_s), finish_s))
}

fn ann(o: &HashMap<String, String>) -> Res<()> {
    let work = PathBuf::from(
        o.get("work")
            .cloned()
            .unwrap_or("/tmp/relbert-bench".into()),
    );
    fs::create_dir_all(&work)?;
    let nq: usize = get(o, "queries", 1000)?;
    let k = 10usize;
    let m: usize = get(o, "m", 16)?;
    let efc: usize = get(o, "ef-construction", 200)?;
    let threads: usize = get(o, "threads", 1)?;
    let seed: u64 = get(o, "seed", HnswParams::default().seed)?;
    let builds = parse_builders(
        o.get("builders")
            .map(String::as_str)
            .unwrap_or("relbert_hnsw"),
        threads,
    )?;
    if builds.is_empty() {
        return Err("no builder".into());
    }
    let efs = get_list(o, "ef", &[16, 32, 64, 128, 256])?;
    let (npy, data_desc) = match o.get("vectors") {
        Some(p) => (PathBuf::from(p), format!("vectors from {p}")),
        None => {
            let n: usize = get(o, "synthetic", 101_000)?;
            let dim: usize = get(o, "dim", 384)?;
            let latent: usize = get(o, "latent", 32)?;
            let noise: f64 = get(o, "noise", 0.1)?;
            let out = PathBuf::from(
                o.get("write-npy")
                    .cloned()
                    .unwrap_or(work.join("synthetic.npy").display().to_string()),
            );
            if out.exists() {
                eprintln!("reusing {}", out.display());
            } else {
                eprintln!(
                    "generating {n} x {dim} low-rank vectors -> {}",
                    out.display()
                );
                let v = low_rank(n, dim, latent, noise, 42);
                write_npy(&out, &v, n, dim)?;
            }
            (
                out,
                format!(
                    "synthetic low-rank: unit(W z / sqrt(dim) + e), z ~ N(0, I_{latent}), \
                     W ~ N(0, 1/{latent}), e ~ N(0, {noise}^2/dim); {n} x {dim}, seed 42 \
                     (relbert_index::synthetic::low_rank)"
                ),
            )
        }
    };
    let (data, rows, dim) = read_npy(&npy)?;
    if rows <= nq {
        return Err("fewer rows than queries".into());
    }
    let n = rows - nq;
    let (base, queries) = data.split_at(n * dim);
    eprintln!("{n} base rows, {nq} queries, dim {dim}");
    let load_start = loadavg();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;

    let mut truth: Vec<Vec<Hit>> = Vec::new();
    let mut exact_qps = 0.0;
    let mut results = Vec::new();
    for (bi, bs) in builds.iter().enumerate() {
        let name = bs.builder.name();
        let out = work.join(format!("ann-index-{name}-t{}", bs.threads));
        let load_before = loadavg();
        eprintln!(
            "building with {name} on {} thread(s), load {load_before}",
            bs.threads
        );
        let (append_s, graph_s, finish_s) = build_index(
            &out,
            base,
            dim,
            HnswParams {
                m,
                ef_construction: efc,
                threads: bs.threads,
                builder: bs.builder,
                seed,
            },
        )?;
        let load_after = loadavg();
        eprintln!(
            "{name}: append {append_s:.1}s, graph {graph_s:.1}s ({:.0} inserts/s), finish {finish_s:.1}s, load {load_after}",
            n as f64 / graph_s
        );
        let idx = Index::open(&out)?;
        if bi == 0 {
            // ground truth (exact, parallel), then exact single-thread q/s
            truth = queries
                .chunks(dim)
                .map(|q| idx.search_exact(q, k))
                .collect::<relbert_index::Result<_>>()?;
            let nq1 = nq.min(200);
            let t = Instant::now();
            one.install(|| -> relbert_index::Result<()> {
                for q in queries.chunks(dim).take(nq1) {
                    std::hint::black_box(idx.search_exact(q, k)?);
                }
                Ok(())
            })?;
            exact_qps = nq1 as f64 / t.elapsed().as_secs_f64();
        }
        // HNSW, one query at a time, this thread
        for q in queries.chunks(dim).take(50) {
            std::hint::black_box(idx.search(q, k, efs[0])?);
        }
        let mut search = Vec::new();
        for &ef in &efs {
            let mut found = Vec::with_capacity(nq);
            let t = Instant::now();
            for q in queries.chunks(dim) {
                found.push(idx.search(q, k, ef)?);
            }
            let secs = t.elapsed().as_secs_f64();
            let r: f64 = found
                .iter()
                .zip(&truth)
                .map(|(f, t)| recall(f, t))
                .sum::<f64>()
                / nq as f64;
            eprintln!("{name} ef {ef}: recall {r:.4}, {:.0} q/s", nq as f64 / secs);
            search.push(
                serde_json::json!({"ef_search": ef, "recall_at_k": round(r, 4),
                                           "qps_one_at_a_time": round(nq as f64 / secs, 1)}),
            );
        }
        let sizes = idx.disk_sizes();
        results.push(serde_json::json!({
            "builder": name,
            "meta_builder": idx.meta().hnsw.builder,
            "threads": bs.threads,
            "seed": seed,
            "append_s": round(append_s, 2),
            "graph_build_s": round(graph_s, 2),
            "inserts_per_s": round(n as f64 / graph_s, 1),
            "finish_total_s": round(finish_s, 2),
            "loadavg_before_build": load_before,
            "loadavg_after_build": load_after,
            "search": search,
            "disk_bytes": {"vectors": sizes.vectors, "pairs": sizes.pairs, "graph": sizes.graph, "meta": sizes.meta},
        }));
    }

    // ---- peer
    let mut peer = serde_json::Value::Null;
    let mut peer_load = (String::new(), String::new());
    if let (Some(py), Some(script)) = (o.get("peer-python"), o.get("peer-script")) {
        let pj = work.join("ann_peer.json");
        peer_load.0 = loadavg();
        eprintln!("running peer {script}, load {}", peer_load.0);
        let st = Command::new(py)
            .arg(script)
            .arg("--vectors")
            .arg(&npy)
            .arg("--queries")
            .arg(nq.to_string())
            .arg("--M")
            .arg(m.to_string())
            .arg("--ef-construction")
            .arg(efc.to_string())
            .arg("--ef")
            .arg(
                efs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .arg("--skip-faiss")
            .arg("--out")
            .arg(&pj)
            .stdout(std::process::Stdio::null())
            .status()?;
        if !st.success() {
            return Err("peer failed".into());
        }
        peer_load.1 = loadavg();
        peer = serde_json::from_str(&fs::read_to_string(&pj)?)?;
        if let Some(b) = peer["hnswlib"]["build_s"].as_f64() {
            peer["hnswlib"]["inserts_per_s"] = serde_json::json!(round(n as f64 / b, 1));
        }
    }

    // ---- comparison at recall >= 0.95: the cheapest ef reaching it, per build
    let first_at = |rows: &[serde_json::Value]| {
        rows.iter()
            .find(|r| r["recall_at_k"].as_f64().unwrap_or(0.0) >= 0.95)
            .cloned()
    };
    let peer_rows: Vec<serde_json::Value> = peer["hnswlib"]["search"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let peer_95 = first_at(&peer_rows);
    for r in results.iter_mut() {
        let rows = r["search"].as_array().cloned().unwrap_or_default();
        let ours_95 = first_at(&rows);
        let ratio = match (&ours_95, &peer_95) {
            (Some(a), Some(b)) => Some(
                a["qps_one_at_a_time"].as_f64().unwrap_or(0.0)
                    / b["qps_one_at_a_time"].as_f64().unwrap_or(1.0),
            ),
            _ => None,
        };
        r["at_recall_0_95"] = serde_json::json!({"ours": ours_95, "qps_ratio_over_hnswlib": ratio});
    }
    let result = serde_json::json!({
        "command": command_line(),
        "date": o.get("date").cloned().unwrap_or_default(),
        "machine": machine(),
        "loadavg_at_start": load_start,
        "loadavg_at_end": loadavg(),
        "data": data_desc, "npy": npy.display().to_string(),
        "n": n, "dim": dim, "queries": nq, "k": k, "m": m, "ef_construction": efc,
        "exact_qps_one_thread": round(exact_qps, 1),
        "builds": results,
        "peer": peer,
        "peer_loadavg_before": peer_load.0,
        "peer_loadavg_after": peer_load.1,
        "hnswlib_at_recall_0_95": peer_95,
    });
    let json_path = o
        .get("out-json")
        .cloned()
        .unwrap_or(work.join("ann.json").display().to_string());
    fs::write(&json_path, serde_json::to_string_pretty(&result)? + "\n")?;
    if let Some(md) = o.get("out-md") {
        fs::write(md, ann_markdown(&result))?;
    }
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

fn ann_markdown(r: &serde_json::Value) -> String {
    let s_of = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let mut s = String::new();
    s.push_str("# ANN build and search: relbert-index builders vs hnswlib\n\n");
    s.push_str(&format!("Command: `{}`\n\n", s_of(&r["command"])));
    if !s_of(&r["date"]).is_empty() {
        s.push_str(&format!("Date: {}\n\n", s_of(&r["date"])));
    }
    s.push_str(&format!(
        "Machine: {} ({} logical CPUs, AVX2+FMA: {}), **shared**: load average (1/5/15 min) {} at start, {} at end.\n\n",
        s_of(&r["machine"]["cpu"]),
        r["machine"]["nproc"],
        r["machine"]["avx2_fma"],
        s_of(&r["loadavg_at_start"]),
        s_of(&r["loadavg_at_end"]),
    ));
    s.push_str(&format!(
        "Data: {}. {} base rows, {} queries (the last rows, not indexed), dim {}, k = {}, M = {}, ef_construction = {}.\n\n",
        s_of(&r["data"]), r["n"], r["queries"], r["dim"], r["k"], r["m"], r["ef_construction"]
    ));
    let builds = r["builds"].as_array().cloned().unwrap_or_default();
    s.push_str("## Graph construction\n\n| builder | threads | graph build s | inserts/s | load avg before → after |\n|---|---|---|---|---|\n");
    for b in &builds {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} → {} |\n",
            s_of(&b["builder"]),
            b["threads"],
            b["graph_build_s"],
            b["inserts_per_s"],
            s_of(&b["loadavg_before_build"]),
            s_of(&b["loadavg_after_build"]),
        ));
    }
    s.push_str(&format!(
        "| hnswlib {} (peer) | 1 | {} | {} | {} → {} |\n\n",
        s_of(&r["peer"]["hnswlib"]["version"]),
        r["peer"]["hnswlib"]["build_s"],
        r["peer"]["hnswlib"]["inserts_per_s"],
        s_of(&r["peer_loadavg_before"]),
        s_of(&r["peer_loadavg_after"]),
    ));
    s.push_str("Graph build s: `IndexBuilder::finish` until the graph stage reports completion (for hnsw_rs this includes exporting and re-pruning its layers); hnswlib: `add_items`.\n\n");
    s.push_str("## Search: recall@10 and single-thread q/s (one query at a time)\n\n| ef |");
    for b in &builds {
        s.push_str(&format!(
            " {} ({}t) recall | q/s |",
            s_of(&b["builder"]),
            b["threads"]
        ));
    }
    s.push_str(" hnswlib recall | q/s |\n|---|");
    for _ in 0..=builds.len() {
        s.push_str("---|---|");
    }
    s.push('\n');
    let peer_rows = r["peer"]["hnswlib"]["search"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let first = builds
        .first()
        .and_then(|b| b["search"].as_array().cloned())
        .unwrap_or_default();
    for (i, row) in first.iter().enumerate() {
        let ef = &row["ef_search"];
        s.push_str(&format!("| {ef} |"));
        for b in &builds {
            let x = &b["search"][i];
            s.push_str(&format!(
                " {} | {} |",
                x["recall_at_k"], x["qps_one_at_a_time"]
            ));
        }
        let p = peer_rows.iter().find(|p| &p["ef_search"] == ef);
        s.push_str(&format!(
            " {} | {} |\n",
            p.map(|p| p["recall_at_k"].to_string())
                .unwrap_or("-".into()),
            p.map(|p| p["qps_one_at_a_time"].to_string())
                .unwrap_or("-".into())
        ));
    }
    s.push_str(&format!(
        "\nExact search, one thread: ours {} q/s, numpy {} q/s (one at a time).\n\n",
        r["exact_qps_one_thread"], r["peer"]["exact"]["qps_one_at_a_time"]
    ));
    s.push_str("At recall@10 ≥ 0.95 (cheapest ef reaching it):\n\n");
    for b in &builds {
        let a = &b["at_recall_0_95"];
        s.push_str(&format!(
            "- {} ({} threads): ef {} → {} q/s (recall {}); ratio over hnswlib = {}\n",
            s_of(&b["builder"]),
            b["threads"],
            a["ours"]["ef_search"],
            a["ours"]["qps_one_at_a_time"],
            a["ours"]["recall_at_k"],
            a["qps_ratio_over_hnswlib"]
                .as_f64()
                .map(|x| format!("{x:.2}"))
                .unwrap_or("n/a".into())
        ));
    }
    let h = &r["hnswlib_at_recall_0_95"];
    s.push_str(&format!(
        "- hnswlib: ef {} → {} q/s (recall {})\n",
        h["ef_search"], h["qps_one_at_a_time"], h["recall_at_k"]
    ));
    s
}

// ---------------------------------------------------------------- open time / RSS

fn status_kb(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Runs in a fresh process: opens the index once and reports time and memory.
fn probe(o: &HashMap<String, String>) -> Res<()> {
    let dir = o.get("dir").ok_or("--dir")?;
    let rss0 = status_kb("VmRSS:");
    let t = Instant::now();
    let idx = Index::open(dir)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss1 = status_kb("VmRSS:");
    let file1 = status_kb("RssFile:");
    let anon1 = status_kb("RssAnon:");
    // one query, to show what a first search adds (visited set + touched pages)
    let q = idx.vector(12345 % idx.count().max(1))?.into_owned();
    let t = Instant::now();
    let hits = idx.search(&q, 10, 64)?;
    let search_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss2 = status_kb("VmRSS:");
    std::hint::black_box(hits);
    println!(
        "{}",
        serde_json::json!({"open_ms": open_ms, "rss_before_kb": rss0, "rss_after_open_kb": rss1,
                           "rss_file_after_open_kb": file1, "rss_anon_after_open_kb": anon1,
                           "first_search_ms": search_ms, "rss_after_first_search_kb": rss2})
    );
    Ok(())
}

fn open_bench(o: &HashMap<String, String>) -> Res<()> {
    let n: usize = get(o, "n", 1_000_000)?;
    let dim: usize = get(o, "dim", 384)?;
    let runs: usize = get(o, "runs", 9)?;
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let work = PathBuf::from(
        o.get("work")
            .cloned()
            .unwrap_or("/tmp/relbert-bench".into()),
    );
    fs::create_dir_all(&work)?;
    let out = work.join(format!("open-{n}x{dim}"));
    let mut build_s = None;
    if !out.exists() {
        discard_partial(&out)?;
        let spec = IndexSpec {
            dim: dim as u32,
            precision: Precision::F32,
            encoder: EncoderInfo::default(),
            input: "synthetic".into(),
        };
        let t = Instant::now();
        let mut b = IndexBuilder::create_or_resume(&out, spec, false)?;
        let chunk = 20_000;
        let mut done = 0;
        while done < n {
            let rows = chunk.min(n - done);
            let v = gaussian(rows, dim, done as u64);
            let pairs: Vec<PairEntry> = (done..done + rows)
                .map(|i| PairEntry::new(format!("head{i}"), format!("tail{i}")))
                .collect();
            b.append_chunk(&pairs, &v)?;
            done += rows;
            if done % 200_000 == 0 {
                eprintln!("  appended {done}");
            }
        }
        b.finish_with_random_graph(32, 1, |_| {})?;
        build_s = Some(t.elapsed().as_secs_f64());
    }
    let exe = std::env::current_exe()?;
    let mut samples = Vec::new();
    for _ in 0..runs {
        let o = Command::new(&exe)
            .args(["probe", "--dir", &out.display().to_string()])
            .output()?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).to_string().into());
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
        samples.push(v);
    }
    let col = |k: &str| -> Vec<f64> {
        samples
            .iter()
            .map(|s| s[k].as_f64().unwrap_or(0.0))
            .collect()
    };
    let idx = Index::open(&out)?;
    let sizes = idx.disk_sizes();
    let med_open = median(&mut col("open_ms")).ok_or("no runs")?;
    let med_rss_delta = median(
        &mut samples
            .iter()
            .map(|s| {
                s["rss_after_open_kb"].as_f64().unwrap_or(0.0)
                    - s["rss_before_kb"].as_f64().unwrap_or(0.0)
            })
            .collect::<Vec<_>>(),
    )
    .ok_or("no runs")?;
    let med_rss = median(&mut col("rss_after_open_kb")).ok_or("no runs")?;
    let vec_kb = sizes.vectors as f64 / 1024.0;
    let result = serde_json::json!({
        "command": command_line(),
        "machine": machine(),
        "n": n, "dim": dim, "precision": "f32",
        "graph": "random single-layer graph, 32 neighbours per node (not HNSW): open time and memory do not depend on graph quality",
        "cache": "warm page cache (dropping caches is not possible here); each run is a fresh process",
        "build_s_if_built_now": build_s,
        "disk_bytes": {"vectors": sizes.vectors, "pairs": sizes.pairs, "graph": sizes.graph, "meta": sizes.meta},
        "runs": samples,
        "median_open_ms": med_open,
        "median_rss_after_open_kb": med_rss,
        "median_rss_growth_on_open_kb": med_rss_delta,
        "rss_after_open_over_vector_file": med_rss / vec_kb,
        "rss_growth_over_vector_file": med_rss_delta / vec_kb,
    });
    let json_path = o
        .get("out-json")
        .cloned()
        .unwrap_or(work.join("open.json").display().to_string());
    fs::write(&json_path, serde_json::to_string_pretty(&result)? + "\n")?;
    if let Some(md) = o.get("out-md") {
        let mut s = String::new();
        s.push_str(&format!(
            "# Open time and resident memory: {n} × {dim} f32 index\n\n"
        ));
        s.push_str(&format!("Command: `{}`\n\n", command_line()));
        let m = machine();
        s.push_str(&format!(
            "Machine: {} ({} logical CPUs), load average at start {}\n\n",
            m["cpu"].as_str().unwrap_or(""),
            m["nproc"],
            m["loadavg_at_start"].as_str().unwrap_or("")
        ));
        s.push_str(&format!(
            "Files: vectors {:.1} MB, pairs {:.1} MB, graph {:.1} MB, meta {} B.\n\n",
            sizes.vectors as f64 / 1e6,
            sizes.pairs as f64 / 1e6,
            sizes.graph as f64 / 1e6,
            sizes.meta
        ));
        s.push_str("**Graph:** a random single-layer graph (32 neighbours per node) written through the same \
                    flat format, because building HNSW over 1M vectors on this shared 2-core machine takes too \
                    long; open time and memory do not depend on graph quality.\n\n\
                    **Cache:** warm page cache (caches cannot be dropped here); every run is a fresh process. \
                    `Index::open` with the default `Verify::Small`: all headers, plus full CRCs of `meta` and \
                    `pairs` (files over 64 MiB — vectors, graph — are header-checked only).\n\n");
        s.push_str(&format!(
            "| runs | median open | median VmRSS after open | median RSS growth during open | RSS after open / vector file |\n|---|---|---|---|---|\n| {} | {:.1} ms | {:.1} MB | {:.2} MB | {:.2} % |\n\n",
            runs, med_open, med_rss / 1024.0, med_rss_delta / 1024.0, 100.0 * med_rss / vec_kb
        ));
        s.push_str("Per run (ms, KB):\n\n| open ms | RSS before | RSS after open | RssFile | RssAnon | first search ms | RSS after first search |\n|---|---|---|---|---|---|---|\n");
        for r in &samples {
            s.push_str(&format!(
                "| {:.2} | {} | {} | {} | {} | {:.2} | {} |\n",
                r["open_ms"].as_f64().unwrap_or(0.0),
                r["rss_before_kb"],
                r["rss_after_open_kb"],
                r["rss_file_after_open_kb"],
                r["rss_anon_after_open_kb"],
                r["first_search_ms"].as_f64().unwrap_or(0.0),
                r["rss_after_first_search_kb"]
            ));
        }
        fs::write(md, s)?;
    }
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_two_middle_values() {
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [7.0]), Some(7.0));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn an_unknown_option_or_a_bad_value_is_refused_naming_it() {
        let e = parse_opts("search", &args(&["--index", "d", "--repeats", "9"])).unwrap_err();
        assert!(e.to_string().contains("unknown option --repeats"), "{e}");
        let e = parse_opts("search", &args(&["--index"])).unwrap_err();
        assert!(e.to_string().contains("--index needs a value"), "{e}");
        let e = parse_opts("search", &args(&["--ef", "--repeat", "3"])).unwrap_err();
        assert!(e.to_string().contains("--ef needs a value"), "{e}");
        let e = parse_opts("search", &args(&["--ef", "1", "--ef", "2"])).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
        assert!(parse_opts("searh", &[]).is_err());

        let o = parse_opts(
            "search",
            &args(&["--repeat", "x", "--ef", "32,1o", "--recall", "yes"]),
        )
        .unwrap();
        let e = get::<usize>(&o, "repeat", 7).unwrap_err();
        assert!(e.to_string().contains("--repeat \"x\""), "{e}");
        let e = get_list(&o, "ef", &[32]).unwrap_err();
        assert!(e.to_string().contains("--ef"), "{e}");
        assert!(get_switch(&o, "recall").is_err());

        let o = parse_opts(
            "search",
            &args(&["--repeat", "9", "--ef", "32,128", "--recall", "1"]),
        )
        .unwrap();
        assert_eq!(get::<usize>(&o, "repeat", 7).unwrap(), 9);
        assert_eq!(get::<usize>(&o, "queries", 1000).unwrap(), 1000);
        assert_eq!(get_list(&o, "ef", &[1]).unwrap(), vec![32, 128]);
        assert!(get_switch(&o, "recall").unwrap());
    }
}
