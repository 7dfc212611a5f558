//! Export throughput and query latency/recall through Qdrant against the local index on the
//! same vectors (`benchmarks/scale/README.md` has the figures and how they were taken).
//!
//! cargo run --release --example scale_export -- URLS COLLECTION N DIM SHARDS REPLICATION
//!   [QUERIES] [BATCH] [PARALLEL] [QUANTIZATION int8|none] [EF] [M] [ORIGINALS f32|f16]
//! Prints one JSON object. The collection must not exist (it is created, measured, deleted).
//! With `SCALE_STORAGE=DIR[,DIR…]` (the nodes' storage directories) it also reports the
//! collection's disk use on them once it is green: `DIR/collections/COLLECTION`, allocated
//! blocks and apparent bytes.

#[path = "../../tests/common/synthetic.rs"]
mod synthetic;

use std::time::Instant;

use relbert::query::QueryHit;
use relbert::store::backend::{LocalStore, RelationStore, SearchRequest};
use relbert::store::qdrant::export::{export_index, ExportOptions, LayoutFlags};
use relbert::store::qdrant::settings::{CollectionSettings, Quantization};
use relbert::store::qdrant::{parse_urls, Connection, Hedge, QdrantStore};

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn keys(h: &[QueryHit]) -> Vec<[String; 2]> {
    h.iter().map(|h| h.pair.clone()).collect()
}

/// User + system CPU seconds of this process so far (the exporter's own share of an export,
/// beside the servers' on the same cores).
fn process_cpu_s() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr());
        u.assume_init()
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(u.ru_utime) + s(u.ru_stime)
}

/// Allocated and apparent bytes of the files under `dir` (0 when it does not exist).
fn disk_use(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut allocated, mut apparent) = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in entries.flatten() {
        let Ok(m) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if m.is_dir() {
            let (a, b) = disk_use(&e.path());
            allocated += a;
            apparent += b;
        } else {
            allocated += m.blocks() * 512;
            apparent += m.len();
        }
    }
    (allocated, apparent)
}

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        a.len() >= 6,
        "usage: URLS COLLECTION N DIM SHARDS REPLICATION [QUERIES] [BATCH] [PARALLEL]"
    );
    let urls = parse_urls(&a[0])?;
    let (collection, n, dim): (&str, usize, usize) = (&a[1], a[2].parse()?, a[3].parse()?);
    let (shards, replication): (u32, u32) = (a[4].parse()?, a[5].parse()?);
    let queries: usize = a.get(6).map(|s| s.parse()).transpose()?.unwrap_or(200);
    let opts = ExportOptions {
        batch: a
            .get(7)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(ExportOptions::default().batch),
        parallel: a
            .get(8)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(ExportOptions::default().parallel),
        // SCALE_DEFER_INDEXING=0 measures a load that leaves Qdrant's indexing on.
        defer_indexing: std::env::var("SCALE_DEFER_INDEXING").map_or(true, |v| v != "0"),
        add: false,
        ..ExportOptions::default()
    };
    let quantization = match a.get(9).map(String::as_str) {
        Some("none") => Quantization::None,
        _ => Quantization::Int8,
    };
    let ef: usize = a.get(10).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let tmp = tempfile::tempdir()?;
    let t = Instant::now();
    let dir = synthetic::synthetic_index(&tmp.path().join("idx"), n, dim, 7);
    let build_s = t.elapsed().as_secs_f64();
    let local = LocalStore::open(&dir)?;
    let conn = Connection::new(&urls, collection)?;
    let settings = CollectionSettings {
        shards,
        replication,
        quantization,
        m: a.get(11)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(CollectionSettings::default().m),
        f16: a.get(12).map(String::as_str) == Some("f16"),
        ..CollectionSettings::default()
    };
    let cpu0 = process_cpu_s();
    let report = export_index(
        local.index(),
        &conn,
        &settings,
        LayoutFlags::ALL,
        &opts,
        &|_| {},
    )?;
    let export_cpu_s = process_cpu_s() - cpu0;
    let store = QdrantStore::open(&urls, collection)?;
    // Let the server finish building its graph before timing queries (the export turned
    // indexing off while it streamed; the time to green is reported beside the export's).
    let waited = Instant::now();
    let c = conn.clone();
    conn.block_on(async move {
        for _ in 0..600 {
            let info = c
                .call("info", Hedge::Read, |q, name| async move {
                    q.collection_info(name).await
                })
                .await?;
            let green = info
                .result
                .map(|r| r.status == 1 && r.optimizer_status.map(|o| o.ok).unwrap_or(true))
                .unwrap_or(false);
            if green {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        anyhow::Ok(())
    })??;
    let green_s = waited.elapsed().as_secs_f64();
    let (mut disk_allocated, mut disk_apparent) = (0u64, 0u64);
    if let Ok(dirs) = std::env::var("SCALE_STORAGE") {
        for d in dirs.split(',') {
            let (a, b) = disk_use(&std::path::Path::new(d).join("collections").join(collection));
            disk_allocated += a;
            disk_apparent += b;
        }
    }
    let (mut lq, mut ll) = (Vec::new(), Vec::new());
    let (mut hit_q, mut hit_l, mut total) = (0usize, 0usize, 0usize);
    let step = (n / queries.max(1)).max(1);
    for row in (0..n).step_by(step).take(queries) {
        let p = local.index().pair(row)?;
        let (h, t) = (p.head.to_string(), p.tail.to_string());
        let v = local.lookup(&h, &t)?.unwrap_or_default();
        let req = |exact| SearchRequest {
            k: 10,
            exact,
            ef: 64,
            exclude_pair: Some((&h, &t)),
            exclude_words: &[],
        };
        let truth = keys(&local.search(&v, &req(true))?);
        let t0 = Instant::now();
        let via_q = keys(&store.search(&v, &req(false))?);
        lq.push(t0.elapsed().as_secs_f64() * 1e3);
        let t0 = Instant::now();
        let via_l = keys(&local.search(&v, &req(false))?);
        ll.push(t0.elapsed().as_secs_f64() * 1e3);
        hit_q += via_q.iter().filter(|k| truth.contains(k)).count();
        hit_l += via_l.iter().filter(|k| truth.contains(k)).count();
        total += truth.len();
    }
    lq.sort_by(f64::total_cmp);
    ll.sort_by(f64::total_cmp);
    let c = conn.clone();
    conn.block_on(async move {
        c.call("delete", Hedge::Never, |q, name| async move {
            q.delete_collection(name).await
        })
        .await
    })??;
    let doc = serde_json::json!({
        "nodes": urls.len(), "n": n, "dim": dim, "shards": shards, "replication": replication,
        "batch": opts.batch, "ef": ef, "m": settings.m, "quantization": format!("{quantization:?}"), "parallel": opts.parallel, "defer_indexing": opts.defer_indexing, "synthetic_build_s": build_s,
        "export_s": report.secs, "export_points_per_s": report.sent as f64 / report.secs,
        "green_after_export_s": green_s, "exporter_cpu_s": export_cpu_s,
        "originals": if settings.f16 { "f16" } else { "f32" },
        "disk_bytes": {"allocated": disk_allocated, "apparent": disk_apparent},
        "count": report.count, "queries": lq.len(),
        "qdrant_ms": {"p50": pct(&lq, 0.5), "p99": pct(&lq, 0.99)},
        "local_ms": {"p50": pct(&ll, 0.5), "p99": pct(&ll, 0.99)},
        "recall10": {"qdrant": hit_q as f64 / total as f64, "local_hnsw": hit_l as f64 / total as f64},
    });
    println!("{doc}");
    Ok(())
}
