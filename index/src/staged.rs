//! The HNSW graph built while rows are still being appended, so that a build whose rows come
//! fast (a GPU encoder) does not wait for the whole graph after the last row.
//!
//! # What it owns
//!
//! `Background` is a thread that [`crate::IndexBuilder::graph_during_appends`] starts. After
//! each durable chunk the builder tells it how many rows the partial `vectors` file holds; the
//! thread inserts the rows it has not seen yet into a `StagedGraph` in stages (one stage
//! takes every row present when it starts, so stages grow by themselves when the graph falls
//! behind), reading them through a read-only map of the file. At
//! [`crate::IndexBuilder::finish`] the thread is stopped (a stage in progress finishes the rows
//! it has started and takes no more, so the finish never waits for a stage's remaining rows
//! on the graph's fewer threads) and its graph becomes the base that the finish grows by the
//! rows it had not reached, with every thread.
//!
//! # Why the result is the same index
//!
//! Staged insertion is the builder's own insertion in row order, with the node levels of the
//! same seeded draw: with one thread the staged graph equals the one-shot build bit for bit
//! (`hnsw_build` tests), and with several it is the same parallel insertion a one-shot build
//! does. Nothing of the partial build's files is written by the thread; the rows it maps were
//! fsynced and checkpointed before it was told of them, and are not modified until the finish,
//! which joins the thread first.
//!
//! # Why the thread runs at a lower priority
//!
//! The thread and the workers it starts run at the [`GraphPriority`] the caller chose, by
//! default Linux's `SCHED_IDLE` (a thread's own setting, inherited by the threads it
//! creates). On an H200 with 16 cores, a 1M-pair build with the graph beside the encoder at
//! the same priority encoded at a median 15,328 pairs/s (the encoder alone: 26,000-28,000);
//! with the graph at nice 10 at 19,827-20,603, and under `SCHED_IDLE` at 23,200-25,120
//! (five alternated rounds; wall medians 57.5 s and 53.8 s, `benchmarks/gpu/README.md`): the
//! graph's workers took the cores the encoder's threads need to tokenise and feed the GPU,
//! the costlier part to keep waiting. At a lower priority the graph takes what the encoder
//! leaves; the finish (on the caller's thread and its workers) runs at the caller's priority,
//! so a graph starved by other work on the machine only leaves more rows to the finish.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::build::StoredRows;
use crate::error::{IndexError, Result};
use crate::format::HEADER_LEN;
use crate::hnsw_build::{BuildParams, BuiltGraph, StagedGraph};
use crate::meta::Precision;

/// What the builder and the thread share. Counters, not a locked state: the builder's
/// thread (the encoder's) never takes a lock the graph thread may hold, since that thread
/// runs at a lower priority and, preempted while holding it on a busy machine, would make
/// the encoder wait for its next turn on a core.
#[derive(Default)]
struct Counts {
    /// Rows durable in the `vectors` file.
    available: AtomicUsize,
    /// Rows in the staged graph.
    inserted: AtomicUsize,
    /// Stages run.
    stages: AtomicUsize,
    /// For the graph thread's wait for rows (and the tests' wait for stages) only.
    lock: Mutex<()>,
    wake: Condvar,
}

type Shared = Arc<Counts>;

/// How long the graph thread waits for rows before it looks again: the builder never waits
/// for the lock ([`notify`]), so a notice sent while the thread is between its look and its
/// wait is missed, and costs at most this.
const RECHECK: Duration = Duration::from_millis(10);

/// Wakes the graph thread (and the tests' waits) after a counter or the stop flag changed.
/// The lock is taken and let go first when it is free: a thread between its look and its
/// wait holds it, so with the lock free the thread either waits (and is woken) or has not
/// looked yet (and sees the change). When the lock is held, the notice may be missed and
/// the thread looks again after [`RECHECK`]; the builder does not wait for it.
fn notify(shared: &Counts) {
    drop(shared.lock.try_lock());
    shared.wake.notify_all();
}

fn lock(shared: &Counts) -> MutexGuard<'_, ()> {
    shared.lock.lock().unwrap_or_else(|p| p.into_inner())
}

/// How far the background graph has got ([`crate::IndexBuilder::graph_during_appends`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StagedProgress {
    /// Rows inserted into the graph so far.
    pub inserted: u64,
    /// Stages run so far.
    pub stages: u64,
}

/// How the background graph's thread and workers share the CPU with the thread that appends
/// the rows ([`crate::IndexBuilder::graph_during_appends`]). Linux only; elsewhere every
/// choice is [`GraphPriority::Normal`] (nice is per process there, and lowering it would slow
/// the encoder too). A refusal by the system leaves the priority as it was, which costs speed
/// and nothing else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GraphPriority {
    /// The caller's priority: the graph's workers take turns with the encoder as equals.
    Normal,
    /// The nice value raised by 10: a contested core gives the graph about a tenth of its
    /// time.
    Lower,
    /// Linux's `SCHED_IDLE` policy: the graph runs (almost) only on cores nothing else of
    /// normal priority wants, and a waking encoder thread preempts it at once. The default: on an
    /// H200 with 16 cores it built the 1M-pair index in a median 53.8 s against 57.5 s at
    /// [`GraphPriority::Lower`] (five alternated rounds, `benchmarks/gpu/README.md`).
    #[default]
    Idle,
}

/// The graph thread of one build.
pub(crate) struct Background {
    shared: Shared,
    /// Set (under the state's lock) by the finish or a drop: no further stage, and the stage
    /// in progress starts no more rows.
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<BuiltGraph>>>,
}

impl Background {
    /// Starts the thread over `vectors` (a handle on the partial build's `vectors` file at
    /// `path`), whose first `available` rows are durable already; the graph has room for
    /// `capacity` rows (later ones are left to the finish).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        vectors: File,
        path: PathBuf,
        precision: Precision,
        dim: usize,
        capacity: usize,
        available: usize,
        params: BuildParams,
        priority: GraphPriority,
    ) -> Result<Self> {
        let shared: Shared = Arc::new(Counts {
            available: AtomicUsize::new(available),
            ..Counts::default()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (theirs, their_stop) = (shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("relbert-graph".into())
            .spawn(move || {
                set_priority(priority);
                run(
                    theirs,
                    &their_stop,
                    vectors,
                    path,
                    precision,
                    dim,
                    capacity,
                    params,
                )
            })
            .map_err(|e| IndexError::InvalidParameter(format!("graph thread: {e}")))?;
        Ok(Background {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// Tells the thread that the first `rows` rows are durable.
    pub(crate) fn rows_available(&self, rows: usize) {
        self.shared.available.store(rows, Ordering::Release);
        notify(&self.shared);
    }

    /// How far the graph has got.
    pub(crate) fn progress(&self) -> StagedProgress {
        // `inserted` first: the thread counts a stage before its rows, so the stages read
        // here include the one that inserted them.
        let inserted = self.shared.inserted.load(Ordering::Acquire) as u64;
        StagedProgress {
            inserted,
            stages: self.shared.stages.load(Ordering::Acquire) as u64,
        }
    }

    /// Stops the thread (a stage in progress finishes the rows it started) and returns its
    /// graph.
    pub(crate) fn stop(mut self) -> Result<BuiltGraph> {
        self.close();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(graph)) => graph,
            Some(Err(_)) => Err(IndexError::InvalidParameter(
                "the background graph thread panicked".into(),
            )),
            None => Err(IndexError::InvalidParameter(
                "the background graph was already stopped".into(),
            )),
        }
    }

    fn close(&self) {
        self.stop.store(true, Ordering::Release);
        notify(&self.shared);
    }

    /// Waits until the graph holds at least `rows` rows or the thread has ended.
    #[cfg(test)]
    pub(crate) fn wait_for(&self, rows: u64) {
        let mut g = lock(&self.shared);
        while (self.shared.inserted.load(Ordering::Acquire) as u64) < rows
            && !self.thread.as_ref().is_none_or(|t| t.is_finished())
        {
            // Woken after each stage; the timeout notices a thread that ended, or a stage
            // that ended between the look and the wait.
            g = match self.shared.wake.wait_timeout(g, RECHECK) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl Drop for Background {
    /// A build dropped without finishing (an error while encoding) stops the thread too.
    fn drop(&mut self) {
        self.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread: a stage over every row present, until closed.
#[allow(clippy::too_many_arguments)]
fn run(
    shared: Shared,
    stop: &AtomicBool,
    vectors: File,
    path: PathBuf,
    precision: Precision,
    dim: usize,
    capacity: usize,
    params: BuildParams,
) -> Result<BuiltGraph> {
    let mut graph = StagedGraph::new(capacity, &params);
    loop {
        let rows = {
            let mut g = lock(&shared);
            loop {
                if stop.load(Ordering::Acquire) {
                    break None;
                }
                let rows = shared.available.load(Ordering::Acquire).min(capacity);
                if rows > graph.inserted() {
                    break Some(rows);
                }
                g = match shared.wake.wait_timeout(g, RECHECK) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
            }
        };
        let Some(rows) = rows else { break };
        let bytes = HEADER_LEN + rows * dim * precision.bytes();
        // SAFETY: the file is private to this build (inside `<out>.partial`, under the
        // output's lock); its first `rows` rows were fsynced before the builder reported them
        // and are not modified until the finish, which stops this thread first. The map
        // covers only those bytes.
        let map = unsafe { memmap2::MmapOptions::new().len(bytes).map(&vectors) }
            .map_err(|e| IndexError::io(&path, e))?;
        let rows = StoredRows::from_payload(&map[HEADER_LEN..], precision, &path)?;
        graph.extend(rows, dim, stop)?;
        shared.stages.fetch_add(1, Ordering::Release);
        shared.inserted.store(graph.inserted(), Ordering::Release);
        notify(&shared);
    }
    Ok(graph.finish())
}

/// The nice value the graph thread adds to its own under [`GraphPriority::Lower`].
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) const GRAPH_NICE: i32 = 10;

/// Sets the calling thread's priority; the threads it creates afterwards inherit it (a
/// thread's nice value and scheduling policy are its own on Linux, and copied to the threads
/// it starts).
fn set_priority(priority: GraphPriority) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread (its id, or its pthread handle); the
    // one pointer passed is to a live local.
    unsafe {
        match priority {
            GraphPriority::Normal => {}
            GraphPriority::Lower => {
                let tid = libc::gettid() as libc::id_t;
                *libc::__errno_location() = 0;
                let now = libc::getpriority(libc::PRIO_PROCESS, tid);
                if now != -1 || *libc::__errno_location() == 0 {
                    libc::setpriority(libc::PRIO_PROCESS, tid, (now + GRAPH_NICE).min(19));
                }
            }
            GraphPriority::Idle => {
                // pthread's call, not sched_setscheduler(0, ..): musl refuses the latter
                // (POSIX makes it per process), glibc applies either to the thread.
                let param = libc::sched_param { sched_priority: 0 };
                libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_IDLE, &param);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = priority;
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::synthetic::{low_rank, numbered_pairs as entries};
    use crate::{
        EncoderInfo, GraphPriority, HnswParams, Index, IndexBuilder, IndexSpec, PairEntry,
        Precision,
    };

    fn spec(dim: usize, precision: Precision) -> IndexSpec {
        IndexSpec {
            dim: dim as u32,
            precision,
            encoder: EncoderInfo::default(),
            input: "test".into(),
        }
    }

    fn params(threads: usize) -> HnswParams {
        HnswParams {
            m: 8,
            ef_construction: 48,
            threads,
            ..HnswParams::default()
        }
    }

    /// The calling thread's nice value and scheduling policy.
    #[cfg(target_os = "linux")]
    fn priority() -> (i32, i32) {
        // SAFETY: plain system calls on the calling thread (its id, or 0 for itself).
        unsafe {
            (
                libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t),
                libc::sched_getscheduler(0),
            )
        }
    }

    /// The graph thread yields to the encoder as chosen, and so do the rayon workers it
    /// creates (the graph's pool is built on that thread), while the thread that started it
    /// keeps its own priority.
    #[test]
    #[cfg(target_os = "linux")]
    fn the_graph_thread_and_its_workers_run_at_the_chosen_priority() {
        use super::{GraphPriority, GRAPH_NICE};
        let before = priority();
        let (nice, policy) = before;
        for (choice, want) in [
            (GraphPriority::Normal, before),
            (GraphPriority::Lower, ((nice + GRAPH_NICE).min(19), policy)),
            (GraphPriority::Idle, (nice, libc::SCHED_IDLE)),
        ] {
            let (own, worker) = std::thread::spawn(move || {
                super::set_priority(choice);
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .unwrap();
                (priority(), pool.install(priority))
            })
            .join()
            .unwrap();
            assert_eq!((own, worker), (want, want), "{choice:?}");
            assert_eq!(priority(), before);
        }
    }

    /// Waits until the background graph holds `rows` rows (so the next chunk starts a new
    /// stage instead of joining the current one).
    fn wait_for(b: &IndexBuilder, rows: u64) {
        b.wait_for_staged(rows);
        assert_eq!(b.staged_progress().map(|p| p.inserted), Some(rows));
    }

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// A build that stages its graph while appending (chunks with a duplicate, a capacity
    /// below the final count, an interruption and a resume) publishes exactly the files of
    /// the same build made at the end, serially; in parallel, a valid index that finds its
    /// own rows.
    #[test]
    fn staged_build_publishes_the_same_index() {
        for precision in [Precision::F32, Precision::F16] {
            let (n, dim) = (1500, 16);
            let rows = low_rank(n, dim, 6, 0.1, 21);
            let tmp = tempfile::tempdir().unwrap();
            let chunks = [0..1, 1..400, 400..900, 900..1500];
            let append = |b: &mut IndexBuilder, r: std::ops::Range<usize>| {
                let mut e = entries(r.clone());
                let mut v = rows[r.start * dim..r.end * dim].to_vec();
                // Each chunk repeats pair 0: skipped, so rows and input rows differ.
                e.push(PairEntry::new("h0", "t0"));
                v.extend_from_slice(&rows[..dim]);
                b.append_chunk(&e, &v).unwrap();
            };

            let plain = tmp.path().join("plain");
            let mut b =
                IndexBuilder::create_or_resume(&plain, spec(dim, precision), false).unwrap();
            for r in chunks.clone() {
                append(&mut b, r);
            }
            b.finish(params(1), |_| {}).unwrap();

            let staged = tmp.path().join("staged");
            let mut b =
                IndexBuilder::create_or_resume(&staged, spec(dim, precision), false).unwrap();
            b.graph_during_appends(params(1), 1200, GraphPriority::default())
                .unwrap();
            append(&mut b, chunks[0].clone());
            wait_for(&b, 1);
            append(&mut b, chunks[1].clone());
            wait_for(&b, 400);
            // Interrupted: the graph thread stops with the builder, the rows stay.
            drop(b);
            let mut b =
                IndexBuilder::create_or_resume(&staged, spec(dim, precision), false).unwrap();
            assert_eq!(b.count(), 400);
            b.graph_during_appends(params(1), 1200, GraphPriority::default())
                .unwrap();
            // The resumed thread first takes the rows already stored.
            wait_for(&b, 400);
            append(&mut b, chunks[2].clone());
            append(&mut b, chunks[3].clone());
            // Capacity 1,200: the finish inserts the last 300 rows.
            wait_for(&b, 1200);
            assert!(b.staged_progress().unwrap().stages >= 2);
            // The finish inserts only what the thread left (the staged graph is its base).
            let mut graph_total = None;
            b.finish(params(1), |p| {
                if p.stage == crate::build::Stage::Graph {
                    graph_total = Some(p.total);
                }
            })
            .unwrap();
            assert_eq!(graph_total, Some(300));
            assert_eq!(files(&staged), files(&plain), "{precision:?}");

            // In parallel, finishing while stages may still run.
            let par = tmp.path().join("par");
            let mut b = IndexBuilder::create_or_resume(&par, spec(dim, precision), false).unwrap();
            b.graph_during_appends(params(3), n as u64, GraphPriority::default())
                .unwrap();
            for r in chunks.clone() {
                append(&mut b, r);
            }
            b.finish(params(2), |_| {}).unwrap();
            let idx = Index::open(&par).unwrap();
            assert_eq!(idx.count(), n);
            let found = (0..n)
                .step_by(7)
                .filter(|&i| {
                    let q = &rows[i * dim..(i + 1) * dim];
                    idx.search(q, 1, 32).unwrap().first().map(|h| h.row) == Some(i)
                })
                .count();
            assert!(
                found * 100 >= (n / 7 + 1) * 98,
                "{found} rows found themselves"
            );
        }
    }

    /// A staged build of no rows, or of one, publishes the index a plain build does.
    #[test]
    fn empty_and_single_row_builds() {
        let tmp = tempfile::tempdir().unwrap();
        for rows in [0usize, 1] {
            let dir = tmp.path().join(format!("n{rows}"));
            let mut b =
                IndexBuilder::create_or_resume(&dir, spec(4, Precision::F32), false).unwrap();
            b.graph_during_appends(params(2), rows as u64, GraphPriority::default())
                .unwrap();
            if rows == 1 {
                b.append_chunk(&entries(0..1), &[1.0, 0.0, 0.0, 0.0])
                    .unwrap();
            }
            b.finish(params(2), |_| {}).unwrap();
            let idx = Index::open(&dir).unwrap();
            assert_eq!(idx.count(), rows);
            let hits = idx.search(&[1.0, 0.0, 0.0, 0.0], 3, 8).unwrap();
            assert_eq!(hits.len(), rows);
        }
    }

    /// Only the native builder stages.
    #[test]
    fn hnsw_rs_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b =
            IndexBuilder::create_or_resume(&tmp.path().join("x"), spec(4, Precision::F32), false)
                .unwrap();
        let p = HnswParams {
            builder: crate::GraphBuilder::HnswRs,
            ..params(1)
        };
        assert!(b
            .graph_during_appends(p, 10, GraphPriority::default())
            .is_err());
        assert!(b.staged_progress().is_none());
    }
}
