//! `relbert serve`: the query layer as an HTTP service, with a page for people.
//!
//! This module owns the server: the JSON API under `/v1/` ([`api`]), the page at `/`
//! (`page.html`, embedded in the binary, no CDN), the OpenAPI description (`openapi.json`,
//! written by hand because it is one static document and a derive crate would add more code
//! than it saves), dynamic batching of encoder work ([`batcher`]), metrics ([`metrics`]), the
//! prefix index behind suggestions ([`suggest`]) and the page's 2-D projection ([`pca`]).
//!
//! The data flow is the CLI's: answers come from [`crate::query::QueryEngine`], shared by
//! every request behind an `Arc` (its searches take `&self`), over either store ([`Backend`]):
//! a local index or a Qdrant collection, with the same answers. Stored pairs are looked up
//! and searched without waiting for the encoder (on the async workers for a memory-mapped
//! index, on the blocking pool for a collection, whose client blocks on network calls);
//! pairs that must be encoded go through the [`batcher::Batcher`], whose dedicated thread
//! owns the model. For a local index the server also keeps, built at start with the
//! suggestion list, a [`WordTable`] of each pair's hashed words, which makes the filter
//! that leaves out pairs sharing a word with the query cheap on every search.
//!
//! Operations: it binds to 127.0.0.1 unless told otherwise and refuses a non-loopback
//! address without a bearer token; on loopback it answers only requests that name this
//! machine in `Host` (DNS rebinding) and reads only JSON bodies (another site's form or
//! `text/plain` post is refused); bodies, words, `k`, `ef` and batches are bounded and
//! refused with JSON 4xx errors; every request has a time limit, and every connection a
//! time limit for sending a request's headers, idle keep-alive connections included (hyper's
//! `header_read_timeout`: connections are served by hyper directly, because `axum::serve`
//! gives hyper no timer and so no such limit); SIGTERM or Ctrl-C stops accepting connections
//! and lets requests in flight finish, without waiting for background work that only reads
//! ([`AppState::begin_shutdown`]); each request is logged through `tracing` (target
//! `relbert::serve::access`).

pub mod api;
pub mod batcher;
pub mod metrics;
pub mod pca;
pub mod suggest;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use crate::error::{Error, Result};
use crate::query::QueryEngine;
use crate::store::backend::WordTable;
use crate::store::qdrant::{CollectionRecord, CollectionState, Connection, QdrantStore};
pub use batcher::{BatchConfig, Batcher};
pub use metrics::Metrics;
use suggest::Suggestions;

/// The `ef` a request that gives none is searched with (a server whose `--max-ef` is lower
/// searches at its `--max-ef`, as `k` follows `--max-k`).
pub use crate::store::query::DEFAULT_EF;

/// Bounds on what one request may ask for.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Limits {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Longest word of a pair, in characters.
    pub max_word_chars: usize,
    /// Largest `k`.
    pub max_k: usize,
    /// Largest HNSW `ef` (`--max-ef`); a request's `ef` over it is refused.
    pub max_ef: usize,
    /// Most pairs in one batch query or embed request.
    pub max_batch_pairs: usize,
    /// Longest a request may take, in milliseconds, before a 504.
    pub request_timeout_ms: u64,
    /// Longest a connection may take to send a request's headers, in milliseconds, counted
    /// from when the server starts waiting for them (a new connection, or an idle keep-alive
    /// one after its last answer); past it the connection is closed.
    pub header_timeout_ms: u64,
    /// Most connections open at once (`--max-connections`); past it new ones wait in the
    /// system's listen queue until one closes. Each holds up to ~2 × `HYPER_MAX_BUF` while
    /// its request's head arrives, so this bounds what slow clients can make the server hold.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            max_word_chars: crate::prompt::MAX_WORD_CHARS,
            max_k: 100,
            max_ef: 4096,
            max_batch_pairs: 64,
            request_timeout_ms: 10_000,
            header_timeout_ms: 30_000,
            max_connections: 1024,
        }
    }
}

/// Where the relation vectors are kept.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A local index directory.
    Index(PathBuf),
    /// A Qdrant collection written by `relbert index export --qdrant`.
    Qdrant {
        /// The nodes' gRPC URLs.
        urls: Vec<String>,
        /// Where they came from (`--qdrant` or `$RELBERT_QDRANT_URL`), for messages about
        /// a node that does not answer.
        origin: crate::store::qdrant::UrlOrigin,
        /// The collection.
        collection: String,
    },
}

impl Backend {
    /// The index directory or `URL[,URL…] collection NAME`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Backend::Index(dir) => dir.display().to_string(),
            Backend::Qdrant {
                urls, collection, ..
            } => {
                format!("{} collection {collection}", urls.join(","))
            }
        }
    }
}

/// Everything `relbert serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The store queries are answered from.
    pub backend: Backend,
    /// A model to use instead of the one the store records (same pair function).
    pub model: Option<PathBuf>,
    /// The number format encoded queries use (`None`: the store's).
    pub dtype: Option<crate::Dtype>,
    /// Where the encoder runs: the CPU, or a CUDA device with the `cuda` feature.
    pub device: candle_core::Device,
    /// Where to listen.
    pub addr: SocketAddr,
    /// The bearer token every API request must carry, if any.
    pub token: Option<String>,
    /// Request bounds.
    pub limits: Limits,
    /// Encoder batching: [`BatchConfig::for_device`] of [`Self::device`] unless the
    /// caller has reasons of its own ([`BatchConfig::default`] is the CPU's).
    pub batch: BatchConfig,
}

/// The encoder's queue ([`Batcher`]) that pairs are encoded with now, and the number format
/// its model was loaded at. When the served directory comes to hold an index built at
/// another format and no `--dtype` was given, a queue of that format is started and takes
/// this one's place ([`AppState::follow_index`]: encoded pairs follow the index's format, as
/// a `relbert query` stream's do). A request takes the queue in place when it begins and
/// holds it until answered ([`Batchers::current`]), so a replaced queue stops, and its
/// model's weights are freed, once the last request that took it is done: the server keeps
/// the model of the format its index was built at, not one per format it has served.
pub struct Batchers {
    /// The format and queue in place.
    current: std::sync::RwLock<(crate::Dtype, Arc<Batcher>)>,
    /// Every queue started, held weakly: what [`Batchers::held`] counts.
    started: std::sync::Mutex<Vec<std::sync::Weak<Batcher>>>,
}

impl Batchers {
    fn new(dtype: crate::Dtype, batcher: Batcher) -> Self {
        let batcher = Arc::new(batcher);
        Batchers {
            started: std::sync::Mutex::new(vec![Arc::downgrade(&batcher)]),
            current: std::sync::RwLock::new((dtype, batcher)),
        }
    }

    fn in_place(&self) -> std::sync::RwLockReadGuard<'_, (crate::Dtype, Arc<Batcher>)> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The number format pairs are encoded at now.
    pub fn dtype(&self) -> crate::Dtype {
        self.in_place().0
    }

    /// The queue pairs are encoded with now. Held by a request until it is answered: a queue
    /// replaced meanwhile ([`AppState::follow_index`]) finishes that request's pairs.
    pub fn current(&self) -> Arc<Batcher> {
        self.in_place().1.clone()
    }

    /// How many queues, each with its model, the server holds: the one in place, and any it
    /// replaced that a request in flight still holds. A replaced queue's thread frees its
    /// model as soon as it is no longer held.
    pub fn held(&self) -> usize {
        let mut started = self
            .started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        started.retain(|w| w.strong_count() > 0);
        started.len()
    }

    /// Encodes at `dtype` with `batcher` from now on; the queue it replaces is dropped here
    /// (its model freed once no request holds it).
    fn replace(&self, dtype: crate::Dtype, batcher: Batcher) {
        let batcher = Arc::new(batcher);
        self.started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::downgrade(&batcher));
        let old = std::mem::replace(
            &mut *self
                .current
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            (dtype, batcher),
        );
        // Dropped outside the lock: requests taking the queue are not held up by it.
        drop(old);
    }
}

/// The parts that exist once the store is open and the model loaded.
pub struct Loaded {
    /// The encoder's queue requests use, at the served index's number format.
    pub batcher: Batchers,
    /// The model's tokenizer, to tell the words of an encoded query it reads as its unknown
    /// token alone, of which the server logs a warning (`None`: no unknown token). One for
    /// the server's life: every queue it starts computes the served pair function, whose
    /// tokenizer this is.
    unknown: Option<Arc<crate::embed::WordTokenizer>>,
    /// What requests read from; replaced whole when `index add`, a rebuild or a forced
    /// build publishes a new index into the served directory ([`AppState::follow_index`]).
    view: std::sync::RwLock<Arc<View>>,
    /// A collection's record as [`AppState::follow_collection`] last read it (`None` for a
    /// local index).
    collection: Option<Followed>,
}

/// A served collection, followed: its record is re-read every [`FOLLOW_EVERY`], because
/// the collection can be deleted and re-created (or finish loading) under the server.
struct Followed {
    conn: Connection,
    /// The record the server opened the collection with: its model encodes the queries.
    served: CollectionRecord,
    /// What the latest read found; `None` when the collection does not exist (deleted).
    now: std::sync::RwLock<Option<CollectionState>>,
    /// How many points the collection held at the latest read: another loader may be
    /// adding to it while it is served (0 once deleted).
    count: std::sync::atomic::AtomicU64,
    /// What the suggestion list was made from, and whether it is to be made again
    /// ([`AppState::refresh_suggestions`]).
    listing: std::sync::Mutex<Listings>,
    /// Held while the collection is listed again: one listing at a time.
    refreshing: std::sync::Mutex<()>,
    /// Why the latest look at the collection failed (its nodes not reached, say); `None`
    /// once a look succeeds. `/v1/health` says 503 meanwhile ([`AppState::unreachable`]).
    unreachable: std::sync::RwLock<Option<String>>,
}

/// What a collection looked like to the follower: its point count and record.
#[derive(Debug, Clone, PartialEq)]
struct Listing {
    count: u64,
    state: Option<CollectionState>,
}

/// The suggestion list of a served collection against the collection as it is now.
struct Listings {
    /// What the served list was made from.
    listed: Listing,
    /// What it is to be made from next: the collection differs from `listed` and was found
    /// the same on two looks in a row ([`Followed::note_look`]).
    due: Option<Listing>,
    /// No listing starts before this ([`REFRESH_SPACING`], [`REFRESH_RETRY`]).
    not_before: Instant,
}

/// After a listing of a collection's pairs that took `d`, the next waits `REFRESH_SPACING * d`:
/// listing takes at most a tenth of the server's time, even while a loader pauses between
/// its batches longer than [`FOLLOW_EVERY`] (an `index build --qdrant` encoding as it goes)
/// so that the collection looks settled between them.
///
/// Cost of one listing (a paged scroll of the `head`/`tail`/`label` payloads, 2,000 points a
/// page, plus sorting the keys), measured on a local 3-node cluster (Qdrant 1.18.3, 2-core
/// Xeon VM shared with other work, from the log line below): 100,003 and
/// 100,004 pairs in 1.44 s and 1.18 s; that is 12-14 µs a pair, so about half a minute for
/// the [`suggest::MAX_LISTED`] pairs that are listed at most (then the next listing waits
/// about 4 minutes). The old and the new list are both in memory until the swap.
pub const REFRESH_SPACING: u32 = 9;

/// After a listing that failed (a node down, say), the next waits at least this long.
pub const REFRESH_RETRY: Duration = Duration::from_secs(30);

impl Listings {
    fn new(listed: Listing) -> Self {
        Listings {
            listed,
            due: None,
            not_before: Instant::now(),
        }
    }
}

impl Followed {
    fn listing(&self) -> std::sync::MutexGuard<'_, Listings> {
        self.listing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes a look of [`AppState::follow_collection`]: `settled` is what it found when that
    /// is what the look before found too (`None` when anything changed or the count could not
    /// be read). A list is due when the settled collection is not the one listed, exists and
    /// holds the served encoder's vectors (a stale one is not answered from at all). While a
    /// loader adds to the collection every look differs, so nothing is listed until it
    /// stops (or pauses for two looks: see [`REFRESH_SPACING`]).
    fn note_look(&self, settled: Option<Listing>) {
        let due = settled.filter(|s| s.state.is_some() && self.stale(&s.state).is_none());
        let mut l = self.listing();
        l.due = due.filter(|s| *s != l.listed);
    }

    /// Whether a listing is due and may start now.
    fn listing_due(&self) -> bool {
        let l = self.listing();
        l.due.is_some() && Instant::now() >= l.not_before
    }

    fn now(&self) -> Option<CollectionState> {
        self.now
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Why the collection cannot be answered from with the served encoder any more, if
    /// it cannot: it was deleted, lost relbert's record, or holds another pair function's
    /// vectors.
    fn stale(&self, now: &Option<CollectionState>) -> Option<String> {
        let served = &self.served.encoder;
        let Some(now) = now else {
            return Some(format!(
                "the collection {} no longer exists in Qdrant (it was deleted); queries are \
                 answered again once it holds the vectors of the model this server encodes \
                 with (export or build into it again)",
                self.conn.collection()
            ));
        };
        match &now.record {
            None => Some(format!(
                "the collection {} no longer carries relbert's record (it was deleted and \
                 re-created by something else); restart the server once it holds relbert's \
                 vectors",
                self.conn.collection()
            )),
            Some(r)
                if !crate::indexing::same_function(&r.encoder, served)
                    || r.dim != self.served.dim =>
            {
                Some(format!(
                    "the collection {} now holds another encoder's vectors ({} sha256 {}, \
                     {}-d), not those of the model this server encodes with ({} sha256 {}, \
                     {}-d); restart the server to serve it",
                    self.conn.collection(),
                    r.encoder.model,
                    r.encoder.weights_sha256,
                    r.dim,
                    served.model,
                    served.weights_sha256,
                    self.served.dim
                ))
            }
            Some(_) => None,
        }
    }
}

impl Loaded {
    /// The store as it is now: a request takes this once and answers from it throughout,
    /// so a row found in one index is never read in another.
    pub fn view(&self) -> Arc<View> {
        self.view
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn replace_view(&self, view: View) {
        *self
            .view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(view);
    }

    /// Serves `suggestions`, made from `pairs` pairs, in place of the list there was: the
    /// view is replaced whole under the write lock (held only for the swap, the list is built
    /// before), so a request sees the old list or the new one, never a part of either.
    fn replace_suggestions(&self, suggestions: Suggestions, pairs: u64) {
        let mut view = self
            .view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let old = &**view;
        *view = Arc::new(View {
            engine: old.engine.clone(),
            suggestions,
            info: old.info.clone(),
            pairs,
            words: old.words.clone(),
        });
    }
}

/// One opened store and what the server derives from it.
pub struct View {
    /// The shared query layer.
    pub engine: Arc<QueryEngine>,
    /// Prefix search over the store's pairs.
    pub suggestions: Suggestions,
    /// `index info --json`'s object for a local index; the collection's description (its
    /// nodes, name, count, width and encoder) for Qdrant.
    pub info: serde_json::Value,
    /// Pairs the store held when it was opened (a collection: when its pairs were last
    /// listed for suggestions).
    pub pairs: u64,
    /// A local index's words, hashed for the shared-word filter (`None` for Qdrant, which
    /// filters on its side, so nothing else is made from a collection's whole pair list).
    pub words: Option<Arc<WordTable>>,
}

impl View {
    /// Opens the local index in `dir` and builds its suggestions and word table.
    fn of_index(dir: &std::path::Path, model: Option<PathBuf>, started: Instant) -> Result<View> {
        let engine = QueryEngine::open(dir, model)?;
        let index = engine.local()?;
        let open_ms = started.elapsed().as_secs_f64() * 1e3;
        let info = crate::indexing::info_json(index, dir, open_ms, false);
        let suggestions = Suggestions::build(index)?;
        let pairs = index.count() as u64;
        let words = Some(Arc::new(WordTable::build(index)?));
        Ok(View {
            engine: Arc::new(engine),
            suggestions,
            info,
            pairs,
            words,
        })
    }
}

/// Blocking work noted by [`AppState::doing`] while it runs.
struct Doing {
    state: Arc<AppState>,
    what: &'static str,
}

impl Drop for Doing {
    fn drop(&mut self) {
        let mut running = self
            .state
            .background
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(at) = running.iter().position(|w| *w == self.what) {
            running.swap_remove(at);
        }
    }
}

/// How often the server looks whether its index directory holds a new index, or its
/// collection a new record.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// Looks of [`AppState::follow_index`] in a row that must find no index before the served
/// directory is taken as removed: one look can fall in a rebuild's rename window, two
/// ([`FOLLOW_EVERY`] apart) cannot.
pub const MISSING_LOOKS: u32 = 2;

/// An index found in the served directory and not served: its id and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotServed {
    /// The index id (`index info`'s `id`).
    pub id: String,
    /// Why it is not served.
    pub why: String,
    /// Whether it is refused for good (another model or template): not opened again on
    /// every look, as one that failed to open is.
    #[serde(skip)]
    refused: bool,
}

/// Why `engine`'s index must not be read any more, if it must not: one of its memory-mapped
/// files was changed in place ([`relbert_index::Index::changed_in_place`]). Checked when a
/// request starts and again right before each read of the index (a few `fstat` calls, about
/// a microsecond each): a request can wait in the encoder's queue for a long time between
/// the two (found by review R3: a copy that landed meanwhile crashed the server). A file
/// overwritten after the last check, while a read is under way, is read all the same (the
/// check narrows that race to the read's own span; only publishing by rename removes it).
pub fn overwritten(engine: &QueryEngine) -> Option<String> {
    let path = engine.index()?.changed_in_place()?;
    Some(format!(
        "index files were changed in place ({} was written while this server had it open); \
         publish an index by renaming (relbert does), not by copying over its files. \
         Queries are answered 503 until the directory holds a whole index of the served \
         model again (the server looks every {} s)",
        path.display(),
        FOLLOW_EVERY.as_secs()
    ))
}

/// What every request handler sees.
pub struct AppState {
    loaded: OnceLock<Loaded>,
    failed: OnceLock<String>,
    /// Whether the shutdown has begun ([`AppState::begin_shutdown`]): a load that ends
    /// after it does not say ready. A mutex, not a flag, so that "shutting down" and
    /// "ready" are logged in the order they happened.
    stopping: std::sync::Mutex<bool>,
    /// The blocking work running in the background now, for the shutdown's log line.
    background: std::sync::Mutex<Vec<&'static str>>,
    /// The index the served directory holds that [`AppState::follow_index`] does not serve
    /// (another model, or one that cannot be opened), shown by `/v1/info` and `/v1/health`
    /// ([`AppState::not_served`]); `None` once the directory holds the served index again.
    not_served: std::sync::Mutex<Option<NotServed>>,
    /// Whether the served index's files being changed in place was logged (once).
    overwritten_told: std::sync::atomic::AtomicBool,
    /// How many looks in a row [`AppState::follow_index`] found no index id in the served
    /// directory ([`AppState::index_removed`]).
    missing_looks: std::sync::atomic::AtomicU32,
    /// Whether the last look at the index failed for want of file descriptors (said once, not
    /// taken for a removed index).
    starved: std::sync::atomic::AtomicBool,
    /// Request bounds.
    pub limits: Limits,
    /// Batching settings (reported by `/v1/info`).
    pub batch: BatchConfig,
    /// The bearer token, if one is required.
    pub token: Option<String>,
    /// Whether the server listens on a loopback address: requests must then name this
    /// machine in their `Host` header (see [`api`]'s DNS-rebinding check).
    loopback: bool,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The model directory override, if any.
    model: Option<PathBuf>,
    dtype: Option<crate::Dtype>,
    device: candle_core::Device,
    backend: Backend,
}

impl AppState {
    /// A server state that is not ready yet: [`AppState::load`] opens the index.
    pub fn new(opts: &ServeOptions) -> Arc<Self> {
        Arc::new(AppState {
            loaded: OnceLock::new(),
            failed: OnceLock::new(),
            stopping: std::sync::Mutex::new(false),
            background: std::sync::Mutex::new(Vec::new()),
            not_served: std::sync::Mutex::new(None),
            overwritten_told: std::sync::atomic::AtomicBool::new(false),
            missing_looks: std::sync::atomic::AtomicU32::new(0),
            starved: std::sync::atomic::AtomicBool::new(false),
            limits: opts.limits.clone(),
            batch: opts.batch.clone(),
            token: opts.token.clone(),
            loopback: is_loopback(&opts.addr),
            metrics: Arc::new(Metrics::new()),
            model: opts.model.clone(),
            dtype: opts.dtype,
            device: opts.device.clone(),
            backend: opts.backend.clone(),
        })
    }

    /// Opens the store, loads its model onto the encoder thread and builds the suggestion
    /// list; until it returns, `/v1/health` says 503 and the API answers 503. Blocking.
    pub fn load(&self) -> Result<()> {
        let started = Instant::now();
        let result = (|| -> Result<Loaded> {
            let open_ms = || started.elapsed().as_secs_f64() * 1e3;
            let mut followed = None;
            let (mut engine, suggestions, info, pairs, words) = match &self.backend {
                Backend::Index(dir) => {
                    let view = View::of_index(dir, self.model.clone(), started)?;
                    // Only this server holds the engine yet.
                    let engine = Arc::try_unwrap(view.engine)
                        .map_err(|_| Error::Internal("the engine is shared already".into()))?;
                    (engine, view.suggestions, view.info, view.pairs, view.words)
                }
                Backend::Qdrant {
                    urls,
                    origin,
                    collection,
                } => {
                    let store = QdrantStore::open_with_origin(urls, *origin, collection)?;
                    let pairs = crate::store::backend::RelationStore::count(&store)?;
                    let info = collection_info(&store, urls, pairs, open_ms());
                    let suggestions = Suggestions::from_collection(store.connection(), pairs)?;
                    followed = Some(Followed {
                        conn: store.connection().clone(),
                        served: store.record().clone(),
                        now: std::sync::RwLock::new(Some(store.state())),
                        count: std::sync::atomic::AtomicU64::new(pairs),
                        listing: std::sync::Mutex::new(Listings::new(Listing {
                            count: pairs,
                            state: Some(store.state()),
                        })),
                        refreshing: std::sync::Mutex::new(()),
                        unreachable: std::sync::RwLock::new(None),
                    });
                    let engine = QueryEngine::with_store(Box::new(store), self.model.clone());
                    (engine, suggestions, info, pairs, None)
                }
            };
            // One forward pass per batch the batcher forms (split across the cores by it).
            engine.set_device(self.device.clone());
            if let Some(d) = self.dtype {
                engine.set_dtype(d);
            }
            let enc = engine.open_model(self.batch.max_batch)?;
            let dtype = enc.dtype();
            let unknown = crate::embed::WordTokenizer::of(&enc).map(Arc::new);
            let batcher = Batcher::start(enc, self.batch.clone(), self.metrics.clone())?;
            Ok(Loaded {
                batcher: Batchers::new(dtype, batcher),
                unknown,
                view: std::sync::RwLock::new(Arc::new(View {
                    engine: Arc::new(engine),
                    suggestions,
                    info,
                    pairs,
                    words,
                })),
                collection: followed,
            })
        })();
        match result {
            Ok(loaded) => {
                let view = loaded.view();
                // Held while "ready" is said: a shutdown that began first has said so, and
                // a server shutting down is not ready (found by an audit: "ready" was
                // logged after "shutting down").
                let stopping = self.stopping_now();
                if *stopping {
                    tracing::debug!(
                        "{} loaded after the shutdown began; not serving it",
                        self.backend.describe()
                    );
                    return Ok(());
                }
                // Set before "ready" is said, so that `/v1/health` says it too by then. A
                // second load is a no-op: the first one stays.
                let _ = self.loaded.set(loaded);
                tracing::info!(
                    "{} ready: {} pairs, model loaded, in {:.2}s",
                    self.backend.describe(),
                    view.pairs,
                    started.elapsed().as_secs_f64()
                );
                if let Some(why) = view.suggestions.off() {
                    tracing::warn!("{why}");
                }
                Ok(())
            }
            Err(e) => {
                let _ = self.failed.set(e.to_string());
                Err(e)
            }
        }
    }

    /// The loaded parts, once ready.
    pub fn ready(&self) -> Option<&Loaded> {
        self.loaded.get()
    }

    /// Where the encoder runs.
    pub fn device(&self) -> &candle_core::Device {
        &self.device
    }

    /// Why loading failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(|s| s.as_str())
    }

    fn stopping_now(&self) -> std::sync::MutexGuard<'_, bool> {
        self.stopping
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes that the server is shutting down, and logs it with the background work left
    /// running: a load, a look at the store, a listing. That work only reads, so it is not
    /// waited for (a Qdrant store that does not answer held the exit for its retries, 15 s,
    /// and swallowed further signals meanwhile); it ends with the process. A load that ends
    /// after this does not say ready.
    pub fn begin_shutdown(&self) {
        let mut stopping = self.stopping_now();
        if *stopping {
            return;
        }
        *stopping = true;
        let running = self
            .background
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if running.is_empty() {
            tracing::info!("shutting down: finishing requests in flight");
        } else {
            tracing::info!(
                "shutting down: finishing requests in flight; not waiting for {} (it only \
                 reads, and ends with the server)",
                running.join(", ")
            );
        }
    }

    /// Whether the shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        *self.stopping_now()
    }

    /// Notes `what` as running in the background until the guard returned is dropped.
    fn doing(self: &Arc<Self>, what: &'static str) -> Doing {
        self.background
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(what);
        Doing {
            state: self.clone(),
            what,
        }
    }

    /// Follows a local index's directory, as a `relbert query` stream does: when it holds
    /// another index than the one served (published by `index add`, a rebuild in place or a
    /// forced build), opens that one and serves it from now on; requests in flight finish on
    /// the old one. An index of another pair function is not served (its vectors would not
    /// be comparable with the encoder's): that is logged once, and the old index stays; it
    /// and an index that cannot be opened are shown by `/v1/info` and `/v1/health` as
    /// `not_served` ([`AppState::not_served`]) until the directory holds the served index or
    /// one that is served. The open index's files changed in place ([`overwritten`]: copied
    /// over, not published by a rename) are said once, and the directory is opened again
    /// even when its id is the served one; requests are answered 503 meanwhile.
    /// Pairs it does not hold are encoded at its number format from then on (the model is
    /// loaded at that format, and replaces the one there was: [`Batchers`]), unless `--dtype`
    /// chose one, which stays, with the note a start-up logs when the two differ; a model
    /// that cannot be loaded at the new format a second time leaves the format in use, said
    /// in a warning.
    ///
    /// A directory that holds no index (removed, or its `meta` unreadable) is not a reason
    /// to stop: the open index keeps answering, as requests in flight need, and a rebuild in
    /// place has no id for a moment. Missing on [`MISSING_LOOKS`] looks in a row, it is
    /// taken as removed: said once as a warning and in `/v1/info`
    /// ([`AppState::index_removed`]), and once more when an index is back.
    /// Returns whether it switched. Blocking; [`serve`] calls it every [`FOLLOW_EVERY`].
    pub fn follow_index(&self) -> Result<bool> {
        use std::sync::atomic::Ordering;
        let (Backend::Index(dir), Some(loaded)) = (&self.backend, self.ready()) else {
            return Ok(false);
        };
        let view = loaded.view();
        let Some(open) = view.engine.index() else {
            return Ok(false);
        };
        // Found by an audit: files copied over the served ones in place crashed the server
        // (SIGBUS) or made it answer from damaged bytes. Requests stop reading the index as
        // soon as they see it ([`overwritten`]); here it is said once, and the directory is
        // opened again even when it holds the same id. Said before the directory is read:
        // a copy can leave it with no readable `meta` (found by review R3: then it was never
        // said, and the warning below claimed the server still answered).
        let changed = overwritten(&view.engine);
        if let Some(why) = &changed {
            if !self.overwritten_told.swap(true, Ordering::Relaxed) {
                tracing::error!("{}: {why}", dir.display());
            }
        }
        // What queries get meanwhile, for the warnings below.
        let meanwhile = match &changed {
            Some(_) => "answering 503 meanwhile (the served index's files were changed in place)"
                .to_string(),
            None => format!("answering from index {} meanwhile", open.id()),
        };
        // Not held while the directory is opened: `/v1/health` reads it meanwhile (only this
        // look writes it, one look at a time).
        let set_not_served = |n: Option<NotServed>| {
            *self.not_served.lock().unwrap_or_else(|p| p.into_inner()) = n;
        };
        let id = match relbert_index::Index::read_id(dir) {
            Ok(id) => {
                if self.starved.swap(false, Ordering::Relaxed) {
                    tracing::info!("{} can be looked at again", dir.display());
                }
                id
            }
            // Out of file descriptors (many connections under a low `ulimit -n`): the index
            // is not gone, and saying it was (found by an audit) sent an operator the wrong way.
            Err(e) if out_of_descriptors(&e) => {
                if !self.starved.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "cannot look at {} for changes ({e}): the process has too many files \
                         open; {meanwhile} (raise `ulimit -n` or serve fewer connections)",
                        dir.display()
                    );
                }
                return Ok(false);
            }
            Err(e) => {
                // Only this look writes the count (one look at a time).
                let looks = self.missing_looks.load(Ordering::Relaxed).saturating_add(1);
                if looks >= MISSING_LOOKS {
                    // An index refused before is gone with the directory's index (found by
                    // review R3: `/v1/info` named it after an `rm -rf`). Cleared before the
                    // count says removed, so that no reader sees both.
                    set_not_served(None);
                }
                self.missing_looks.store(looks, Ordering::Relaxed);
                if looks == MISSING_LOOKS {
                    let meanwhile = match changed {
                        Some(_) => meanwhile,
                        None => format!(
                            "answering from index {} as this server has it open",
                            open.id()
                        ),
                    };
                    tracing::warn!(
                        "{} holds no readable index any more, removed or damaged ({e}); \
                         {meanwhile}, until the server is restarted or an index is back in {}",
                        dir.display(),
                        dir.display()
                    );
                }
                return Ok(false);
            }
        };
        if self.missing_looks.swap(0, Ordering::Relaxed) >= MISSING_LOOKS {
            tracing::info!("{} holds an index again (index {id})", dir.display());
        }
        if id == open.id() && changed.is_none() {
            set_not_served(None);
            return Ok(false);
        }
        if self.not_served().is_some_and(|n| n.refused && n.id == id) {
            return Ok(false);
        }
        let next = match View::of_index(dir, self.model.clone(), Instant::now())
            .and_then(|next| next.engine.local().map(|i| i.id()).map(|now| (next, now)))
        {
            Ok(next) => next,
            Err(e) => {
                set_not_served(Some(NotServed {
                    id,
                    why: format!("it cannot be opened: {e}"),
                    refused: false,
                }));
                return Err(e);
            }
        };
        let (next, next_id) = next;
        let index = next.engine.local()?;
        if !crate::indexing::same_function(&open.meta().encoder, &index.meta().encoder) {
            let why = format!(
                "it is of another model or template ({}) than the one this server encodes \
                 with ({}); restart the server to serve it",
                index.meta().encoder.model,
                open.meta().encoder.model
            );
            tracing::error!(
                "{} now holds index {next_id}, not served: {why}; {}",
                dir.display(),
                match &changed {
                    Some(_) => meanwhile,
                    None => format!("still serving index {}", open.id()),
                }
            );
            set_not_served(Some(NotServed {
                id: next_id,
                why,
                refused: true,
            }));
            return Ok(false);
        }
        set_not_served(None);
        self.overwritten_told.store(false, Ordering::Relaxed);
        // Pairs are encoded at the new index's number format unless `--dtype` chose one
        // (found by an audit: the encoder kept the replaced index's format without a word).
        let (was, now) = (&open.meta().encoder, &index.meta().encoder);
        let follow = match self.dtype {
            None => match self.start_format(loaded, dir, now) {
                Ok(started) => started,
                Err(e) => {
                    // The new index is served all the same, its pairs encoded at the format
                    // in use: vectors of one model at two formats keep cosine >= 0.999
                    // (README), which beats answering from a replaced index.
                    tracing::warn!(
                        "{} now holds index {}, built at {}, and its model cannot be loaded at \
                         that format ({e}); serving it with pairs encoded at {} (restart the \
                         server to encode at {})",
                        dir.display(),
                        index.id(),
                        crate::indexing::dtype_name(now),
                        loaded.batcher.dtype().name(),
                        crate::indexing::dtype_name(now)
                    );
                    None
                }
            },
            Some(d) => {
                if crate::indexing::dtype_name(was) != crate::indexing::dtype_name(now) {
                    if let Some(note) = crate::indexing::dtype_note_at(now, d) {
                        tracing::warn!("{note}");
                    }
                }
                None
            }
        };
        tracing::info!(
            "{} changed: now serving index {} ({} pairs)",
            dir.display(),
            index.id(),
            next.pairs
        );
        loaded.replace_view(next);
        if let Some((dtype, batcher)) = follow {
            tracing::info!(
                "{}: pairs the index does not hold are encoded at {dtype} from now on, the \
                 format it was built at (the index it replaced was built at {}; its model is \
                 freed once the requests using it are answered)",
                dir.display(),
                crate::indexing::dtype_name(was)
            );
            loaded.batcher.replace(dtype, batcher);
        }
        Ok(true)
    }

    /// The number format the index whose encoder is `built` (in `dir`) was built at, with
    /// an encoder queue of that format when it is not the one in place: the model loaded as
    /// at start-up, at that format. `None` when the queue in place encodes at it already.
    fn start_format(
        &self,
        loaded: &Loaded,
        dir: &std::path::Path,
        built: &relbert_index::EncoderInfo,
    ) -> Result<Option<(crate::Dtype, Batcher)>> {
        let dtype = crate::indexing::built_dtype(built, dir)?;
        if dtype == loaded.batcher.dtype() {
            return Ok(None);
        }
        let opts = crate::EncoderOptions {
            batch_size: self.batch.max_batch.max(1),
            device: self.device.clone(),
            ..Default::default()
        };
        let enc =
            crate::query::store_encoder(built, dir, self.model.as_deref(), Some(dtype), opts)?;
        let batcher = Batcher::start(enc, self.batch.clone(), self.metrics.clone())?;
        Ok(Some((dtype, batcher)))
    }

    /// The index the served directory holds and the server does not serve (another model or
    /// template, or one that cannot be opened), with why: the server answers from the index
    /// it has open meanwhile. `None` for a collection and while the served index is there.
    pub fn not_served(&self) -> Option<NotServed> {
        self.not_served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why the served local index must not be read any more ([`overwritten`]), if so.
    pub fn overwritten(&self) -> Option<String> {
        overwritten(&self.ready()?.view().engine)
    }

    /// Notes that a request found the served collection gone (deleted under the server):
    /// from now on queries are answered 503 ([`AppState::stale`]) until a look of
    /// [`AppState::follow_collection`] finds it holding the served encoder's vectors again.
    /// Found by an audit: between the deletion and the next look (up to [`FOLLOW_EVERY`]),
    /// a collection re-created with another model's vectors was answered from with 200.
    pub fn collection_gone(&self) {
        let Some(followed) = self.ready().and_then(|l| l.collection.as_ref()) else {
            return;
        };
        let mut now = followed
            .now
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if now.is_none() {
            return;
        }
        // The count is left to the look, which notes the change (and resets the listing).
        *now = None;
        if let Some(why) = followed.stale(&None) {
            tracing::error!("{why}; answering 503 to queries meanwhile");
        }
    }

    /// Whether the served index directory has held no index for [`MISSING_LOOKS`] looks of
    /// [`AppState::follow_index`] in a row (removed): the server still answers from the
    /// index it has open. Always `false` for a collection.
    pub fn index_removed(&self) -> bool {
        self.missing_looks
            .load(std::sync::atomic::Ordering::Relaxed)
            >= MISSING_LOOKS
    }
}

impl AppState {
    /// Follows a served collection's record, as [`AppState::follow_index`] follows a
    /// directory: re-reads it and the collection's point count, and keeps what it found for
    /// `/v1/info` and `/v1/health`. When the collection
    /// was deleted, or now holds another pair function's vectors (deleted and re-created
    /// with another model of the same width), the server has nothing to answer from, or its
    /// encoder no longer matches the vectors and its answers would be meaningless: queries
    /// and embeddings are refused with 503 and `/v1/health` says so ([`AppState::stale`])
    /// until the collection holds the served encoder's vectors again or the server is
    /// restarted. Changes are logged once. A look that fails (the nodes not reached) is
    /// kept until one succeeds: `/v1/health` says 503 meanwhile ([`AppState::unreachable`]).
    /// Returns whether anything changed. Blocking; [`serve`] calls it every [`FOLLOW_EVERY`].
    pub fn follow_collection(&self) -> Result<bool> {
        let Some(followed) = self.ready().and_then(|l| l.collection.as_ref()) else {
            return Ok(false);
        };
        let looked = Self::look_at_collection(followed);
        // Only the nodes not reached (after the client's retries) make the server unready: a
        // look refused for what the collection holds (its record edited by hand) leaves the
        // queries working, and a load balancer must not drop a server that answers (found by
        // a review).
        let failed = looked
            .as_ref()
            .err()
            .filter(|e| matches!(e, crate::Error::Remote { .. }))
            .map(ToString::to_string);
        let was = std::mem::replace(
            &mut *followed
                .unreachable
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            failed.clone(),
        );
        // The failure itself is logged by the caller ([`serve`]'s follower, once per kind).
        if was.is_some() && failed.is_none() {
            tracing::info!("{} answers again", followed.conn.target());
        }
        looked
    }

    /// Why the latest look at the served collection failed, if it did: its nodes did not
    /// answer (or answered with an error) when [`AppState::follow_collection`] last read the
    /// collection's record. `None` for a local index, before the first look, and once a look
    /// succeeds. `/v1/health` says 503 meanwhile: queries would wait for the store's retries
    /// and then fail.
    pub fn unreachable(&self) -> Option<String> {
        let followed = self.ready()?.collection.as_ref()?;
        followed
            .unreachable
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// [`AppState::follow_collection`]'s look: reads the record and count, and notes them.
    fn look_at_collection(followed: &Followed) -> Result<bool> {
        let c = followed.conn.clone();
        let now = match followed.conn.block_on(async move { c.state().await })? {
            Ok(state) => Some(state),
            Err(Error::NoCollection { .. }) => None,
            Err(e) => return Err(e),
        };
        // Counted on every look, as a loader may be adding to the collection; a count that
        // cannot be read keeps the last one (the record, read above, says the rest).
        let count = match &now {
            None => Some(0),
            Some(_) => {
                let c = followed.conn.clone();
                match followed.conn.block_on(async move { c.count().await })? {
                    Ok(n) => Some(n),
                    Err(e) => {
                        tracing::debug!("counting the served collection's points: {e}");
                        None
                    }
                }
            }
        };
        let counted = count
            .is_some_and(|n| followed.count.swap(n, std::sync::atomic::Ordering::Relaxed) != n);
        let before = followed.now();
        followed.note_look(match count {
            Some(count) if !counted && now == before => Some(Listing {
                count,
                state: now.clone(),
            }),
            _ => None,
        });
        if now == before {
            return Ok(counted);
        }
        match (followed.stale(&before), followed.stale(&now)) {
            (was, Some(why)) if was.as_ref() != Some(&why) => {
                tracing::error!("{why}; answering 503 to queries meanwhile")
            }
            (Some(_), None) => tracing::info!(
                "{} holds the served encoder's vectors again; answering queries",
                followed.conn.target()
            ),
            _ => {}
        }
        let unfinished = |s: &Option<CollectionState>| {
            s.as_ref().map(|s| s.unfinished.clone()).unwrap_or_default()
        };
        let (was, is) = (unfinished(&before), unfinished(&now));
        // A deleted collection has no loads to speak of; its return is said above.
        if now.is_some() && is != was {
            if is.is_empty() {
                tracing::info!("{}: every load has finished", followed.conn.target());
            }
            for u in is.iter().filter(|u| !was.contains(u)) {
                tracing::warn!("{}: {}", followed.conn.target(), u.describe());
            }
        }
        *followed
            .now
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = now;
        Ok(true)
    }

    /// Lists a served collection's pairs again for suggestions, when they are due: the
    /// collection differs from the one listed (pairs added by another loader, a source
    /// added, the collection re-created) and [`AppState::follow_collection`] found it the
    /// same on its last two looks, so a load in progress is not listed over and over; and
    /// [`REFRESH_SPACING`] (or [`REFRESH_RETRY`] after a failure) has passed since the last
    /// listing. The new list is built first and then swapped in whole
    /// (`Loaded::replace_suggestions`); a listing that fails keeps the list there was.
    /// Logs one line when done. Returns the number of pairs listed, or `None` when nothing
    /// was due (or another listing is running, or the store is a local index, whose list is
    /// remade with the index it belongs to by [`AppState::follow_index`]). Blocking; [`serve`]
    /// runs it on the blocking pool after a look finds it due.
    pub fn refresh_suggestions(&self) -> Result<Option<usize>> {
        let Some(loaded) = self.ready() else {
            return Ok(None);
        };
        let Some(followed) = loaded.collection.as_ref() else {
            return Ok(None);
        };
        let _one = match followed.refreshing.try_lock() {
            Ok(held) => held,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
        };
        let target = {
            let l = followed.listing();
            match &l.due {
                Some(t) if Instant::now() >= l.not_before => t.clone(),
                _ => return Ok(None),
            }
        };
        let started = Instant::now();
        let listed = Suggestions::from_collection(&followed.conn, target.count);
        let took = started.elapsed();
        let mut l = followed.listing();
        let suggestions = match listed {
            Ok(s) => s,
            Err(e) => {
                l.not_before = Instant::now() + (took * REFRESH_SPACING).max(REFRESH_RETRY);
                return Err(e);
            }
        };
        l.not_before = Instant::now() + took * REFRESH_SPACING;
        let n = suggestions.len();
        let off = suggestions.off().map(str::to_string);
        loaded.replace_suggestions(suggestions, target.count);
        if l.due.as_ref() == Some(&target) {
            l.due = None;
        }
        l.listed = target;
        drop(l);
        match off {
            Some(why) => tracing::warn!("{}: {why}", followed.conn.target()),
            None => tracing::info!(
                "{}: suggestions refreshed: {n} pairs listed in {:.2}s",
                followed.conn.target(),
                took.as_secs_f64()
            ),
        }
        Ok(Some(n))
    }

    /// Whether [`AppState::refresh_suggestions`] has a listing to do now.
    fn suggestions_due(&self) -> bool {
        self.ready()
            .and_then(|l| l.collection.as_ref())
            .is_some_and(Followed::listing_due)
    }

    /// How many pairs the server answers from: a local index's count, or a served
    /// collection's latest count ([`AppState::follow_collection`]). `None` until ready.
    pub fn pairs_now(&self) -> Option<u64> {
        let loaded = self.ready()?;
        Some(match &loaded.collection {
            Some(followed) => followed.count.load(std::sync::atomic::Ordering::Relaxed),
            None => loaded.view().pairs,
        })
    }

    /// Why queries cannot be answered from the served collection any more (see
    /// [`AppState::follow_collection`]); `None` for a local index or a collection that still
    /// holds the served encoder's vectors.
    pub fn stale(&self) -> Option<String> {
        let followed = self.ready()?.collection.as_ref()?;
        followed.stale(&followed.now())
    }

    /// What `/v1/info` shows of a served collection's current record, over what it showed
    /// when the server opened it: encoder, width, sources and whether every load finished;
    /// with `stale` (and the encoder served) when the collection now holds another
    /// encoder's vectors, and `exists: false` with a count of 0 when it was deleted; the
    /// count is the latest one read, which grows while a loader adds to the collection.
    /// `None` for a local index.
    pub fn collection_now(&self) -> Option<serde_json::Value> {
        let followed = self.ready()?.collection.as_ref()?;
        let now = followed.now();
        let mut doc = match &now {
            Some(now) => serde_json::json!({
                "exists": true,
                "added_sources": now.added,
                "complete": now.unfinished.is_empty(),
                "unfinished": now.unfinished,
            }),
            None => serde_json::json!({"exists": false}),
        };
        doc["count"] = serde_json::json!(followed.count.load(std::sync::atomic::Ordering::Relaxed));
        if let Some(r) = now.as_ref().and_then(|n| n.record.as_ref()) {
            doc["encoder"] = crate::indexing::encoder_json(&r.encoder);
            doc["dim"] = serde_json::json!(r.dim);
            doc["source"] = serde_json::json!(r.source);
            doc["layout"] = serde_json::json!(r.layout);
        }
        if let Some(why) = followed.stale(&now) {
            doc["stale"] = serde_json::json!(why);
            doc["served_encoder"] = crate::indexing::encoder_json(&followed.served.encoder);
        }
        Some(doc)
    }
}

/// What `/v1/info` says about a Qdrant collection: the fields of `index info --json` that
/// a collection has (count, width, metric, encoder), where it is, and where it came from.
fn collection_info(
    store: &QdrantStore,
    urls: &[String],
    count: u64,
    open_ms: f64,
) -> serde_json::Value {
    // The sources and whether their loads finished come from the followed record
    // ([`AppState::collection_now`]), which `/v1/info` lays over this.
    let r = store.record();
    serde_json::json!({
        "backend": "qdrant",
        "qdrant": urls,
        "collection": store.connection().collection(),
        "count": count, "dim": r.dim, "metric": "cosine", "precision": store.precision(),
        "encoder": crate::indexing::encoder_json(&r.encoder),
        "source": r.source,
        "layout": r.layout,
        "open_ms": open_ms,
    })
}

/// `cpu` or `cuda:N`, as `--device` takes it.
pub fn device_name(device: &candle_core::Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Why `token` cannot be a bearer token, if it cannot: a client sends it in an HTTP header,
/// where only visible ASCII arrives as written (a browser cannot send other characters at
/// all, and bytes past ASCII are not read as text here), so a token with anything else
/// could never match and every request would be refused.
pub fn token_problem(token: &str) -> Option<String> {
    let bad: Vec<char> = token
        .chars()
        .filter(|c| !c.is_ascii_graphic())
        .take(3)
        .collect();
    if bad.is_empty() {
        return None;
    }
    Some(format!(
        "the token holds {} ({}), which an HTTP header cannot carry as written; use only \
         visible ASCII (letters, digits and punctuation, no spaces), e.g. the output of \
         `openssl rand -hex 32`",
        if bad.len() == 1 {
            "a character"
        } else {
            "characters"
        },
        bad.iter()
            .map(|c| format!("{c:?} U+{:04X}", *c as u32))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// What is wrong with serving at `addr` with `token`, if anything, as the flag to name and
/// why: a token an HTTP header could not carry ([`token_problem`]), or an address beyond
/// loopback without a token (an empty one is none). The binary checks it before loading
/// anything (a bad command line) and [`serve`] again for callers of the library.
pub fn access_problem(addr: &SocketAddr, token: Option<&str>) -> Option<(&'static str, String)> {
    if let Some(why) = token.and_then(token_problem) {
        return Some(("--token (or RELBERT_TOKEN)", why));
    }
    if !is_loopback(addr) && token.is_none_or(str::is_empty) {
        return Some((
            "--addr",
            format!(
                "{addr} is reachable beyond this machine; set a bearer token with --token or \
                 RELBERT_TOKEN to listen there"
            ),
        ));
    }
    None
}

/// Whether `addr` is reachable only from this machine.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Waits for Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Runs the server until SIGTERM or Ctrl-C: binds first (so the address is known and
/// `/v1/health` answers while loading), then opens the index in the background.
/// `on_listening` is called with the bound address (port 0 picks a free one).
pub async fn serve(opts: ServeOptions, on_listening: impl FnOnce(SocketAddr)) -> Result<()> {
    if let Some((flag, message)) = access_problem(&opts.addr, opts.token.as_deref()) {
        return Err(Error::InvalidArgument {
            flag: flag.into(),
            message,
        });
    }
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| Error::io(format!("listening address {}", opts.addr), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io(format!("listening address {}", opts.addr), e))?;
    on_listening(bound);
    let state = AppState::new(&opts);
    let loader = state.clone();
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<Error>();
    // Noted before the thread is started: a signal before it ran said nothing of the load
    // (found by a review: a test asserting the note could fail on a loaded machine).
    let loading = loader.doing(match loader.backend {
        Backend::Index(_) => "loading the index and model",
        Backend::Qdrant { .. } => "opening the collection and loading the model",
    });
    tokio::task::spawn_blocking(move || {
        let _doing = loading;
        if let Err(e) = loader.load() {
            let _ = failed_tx.send(e);
        }
    });
    let load_failed = async move {
        match failed_rx.await {
            Ok(e) => e,
            Err(_) => std::future::pending().await, // loaded fine: never resolves
        }
    };
    let follower = state.clone();
    let following = tokio::spawn(async move {
        // Said once per distinct failure, not every few seconds.
        let mut last_error = String::new();
        loop {
            tokio::time::sleep(FOLLOW_EVERY).await;
            let s = follower.clone();
            let followed = tokio::task::spawn_blocking(move || {
                let _doing = s.doing(match s.backend {
                    Backend::Index(_) => "a look at the served index directory",
                    Backend::Qdrant { .. } => "a look at the served collection in Qdrant",
                });
                s.follow_index().map_err(|e| {
                    format!("the index directory changed but cannot be served: {e}")
                })?;
                s.follow_collection()
                    .map_err(|e| format!("the collection's record cannot be read: {e}"))
            })
            .await;
            match followed {
                Ok(Err(e)) if e != last_error => {
                    tracing::warn!("{e}");
                    last_error = e;
                }
                Ok(Ok(_)) => last_error.clear(),
                _ => {}
            }
            // Not awaited: the follower keeps looking (and `/v1/info`'s count following)
            // while a large collection is listed; one listing runs at a time.
            if follower.suggestions_due() {
                let s = follower.clone();
                tokio::task::spawn_blocking(move || {
                    let _doing = s.doing("listing the collection's pairs for suggestions");
                    if let Err(e) = s.refresh_suggestions() {
                        tracing::warn!(
                            "listing the collection's pairs again for suggestions: {e}; \
                             keeping the list there was"
                        );
                    }
                });
            }
        }
    });
    let header_timeout = Duration::from_millis(opts.limits.header_timeout_ms.max(1));
    let stopping = state.clone();
    let metrics = state.metrics.clone();
    let app = api::router(state);
    let server = serve_connections(
        listener,
        app,
        metrics,
        header_timeout,
        timeout_of(&opts.limits),
        opts.limits.max_connections.max(1),
        async move {
            shutdown_signal().await;
            stopping.begin_shutdown();
        },
    );
    // A model that cannot be loaded ends the server: it could never become ready.
    let ended = tokio::select! {
        () = server => Ok(()),
        e = load_failed => Err(e),
    };
    // No look starts after the server has stopped (its runtime may outlive it); one in
    // progress on the blocking pool is not waited for (see [`AppState::begin_shutdown`]).
    following.abort();
    ended
}

/// How often at most a failure to accept a connection, or the connection limit being
/// reached, is logged while it goes on.
pub const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// The log of failures to accept a connection. Out of file descriptors (EMFILE) every
/// accept fails at once and the server retries every 50 ms: a warning each time was 20
/// lines a second (found by an audit). A warning is said at most once per
/// [`ACCEPT_WARN_EVERY`], with the count of failures not said since the last; a server at
/// its limit, accepting one connection and failing the next, says no more. Accepts that
/// succeed once the interval has passed say how many failures went unsaid, if any.
#[derive(Debug, Default)]
struct AcceptFailures {
    /// When the last warning was said; `None` when none is recent.
    said: Option<Instant>,
    /// Failures since the last warning that were not said.
    unsaid: u64,
}

impl AcceptFailures {
    /// Whether the last warning is less than [`ACCEPT_WARN_EVERY`] before `now`.
    fn recent(&self, now: Instant) -> bool {
        self.said
            .is_some_and(|at| now.saturating_duration_since(at) < ACCEPT_WARN_EVERY)
    }

    /// A failure at `now`: the warning to log, if one is due.
    fn failed(&mut self, now: Instant, e: &std::io::Error) -> Option<String> {
        if self.recent(now) {
            self.unsaid += 1;
            return None;
        }
        let line = match (self.said, self.unsaid) {
            (Some(at), n) if n > 0 => format!(
                "accepting a connection: {e} (and {n} more {} in the {:.0} s since the last \
                 warning); retrying every 50 ms",
                failures(n),
                now.saturating_duration_since(at).as_secs_f64()
            ),
            _ => format!(
                "accepting a connection: {e}; retrying every 50 ms (said at most every {} s \
                 while failures go on)",
                ACCEPT_WARN_EVERY.as_secs()
            ),
        };
        self.said = Some(now);
        self.unsaid = 0;
        Some(line)
    }

    /// A connection accepted at `now`: the line to log when failures went unsaid since a
    /// warning that is no longer recent.
    fn accepted(&mut self, now: Instant) -> Option<String> {
        if self.said.is_none() || self.recent(now) {
            return None;
        }
        let unsaid = std::mem::take(self).unsaid;
        (unsaid > 0).then(|| {
            format!(
                "accepting connections again ({unsaid} more {} after the last warning)",
                failures(unsaid)
            )
        })
    }
}

/// "failure" or "failures", for `n` of them.
fn failures(n: u64) -> &'static str {
    if n == 1 {
        "failure"
    } else {
        "failures"
    }
}

/// Whether `e` is the process (or the system) running out of file descriptors, not a
/// property of the file it names.
fn out_of_descriptors(e: &relbert_index::IndexError) -> bool {
    matches!(e, relbert_index::IndexError::Io { err, .. }
        if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)))
}

/// The most header lines hyper parses: above [`api::MAX_HEADERS`], so that a request with
/// too many is answered by the API (a JSON 431 naming the limit), not by hyper's empty one.
/// Beyond it hyper still refuses on its own.
const HYPER_MAX_HEADERS: usize = 1000;

/// The most bytes hyper buffers for a request's head: room for a request target hyper takes
/// (it refuses one over 64 KiB itself with an empty 414) and [`api::MAX_HEADER_BYTES`] of
/// headers, so that those over the API's limits reach it. Beyond it hyper answers an empty
/// 431.
const HYPER_MAX_BUF: usize = 256 * 1024;

/// How hyper ended a connection on a request it could not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HyperEnd {
    /// It answered with this status and an empty body (counted in the metrics under the
    /// endpoint `unparsed`): the client sent a request it could not read.
    Refused(u16),
    /// It gave no answer; counted under this kind of [`Metrics::unanswered`], not as a
    /// client's error.
    Unanswered(&'static str),
}

/// The message of hyper's `Parse::Internal` (a bug in hyper or httparse, met while parsing
/// a request), which no predicate of `hyper::Error` tells apart from a client's malformed
/// request.
const HYPER_INTERNAL: &str = "internal error inside Hyper";

/// What hyper did about the parse error `e` that ended a connection, or `None` when `e` is
/// no parse error. hyper (1.x, `role::Server::on_error`) answers an empty 400 only for a
/// malformed method, request target, version or header; for its own internal errors, a
/// status-line error (a response's, met by a client) and an HTTP/2 preface it answers
/// nothing. Found by a review: those were counted as 400s, client errors the client never
/// got.
fn hyper_refusal(e: &hyper::Error) -> Option<HyperEnd> {
    if !e.is_parse() {
        return None;
    }
    Some(if e.is_parse_too_large() {
        // hyper tells the two apart only in its message.
        HyperEnd::Refused(if e.to_string().contains("URI") {
            414
        } else {
            431
        })
    } else if e.is_parse_version_h2() {
        HyperEnd::Unanswered("http2_preface")
    } else if e.is_parse_status() {
        HyperEnd::Unanswered("parse_status")
    } else if e.to_string().starts_with(HYPER_INTERNAL) {
        HyperEnd::Unanswered("parse_internal")
    } else {
        HyperEnd::Refused(400)
    })
}

/// Accepts connections and serves `app` on each with hyper's HTTP/1.1 (keep-alive), until
/// `shutdown` resolves; then stops accepting, asks every connection to finish the request
/// it is on and close, and returns once all have. A connection that does not send a
/// request's headers within `header_timeout` of the server waiting for them is closed.
///
/// `limit` (the request time limit) bounds two waits no header timeout covers: a write the
/// client does not read (a client that sends requests and never reads the answers held its
/// connection, and the shutdown, for as long as it lived), and the shutdown itself: past it,
/// or at a second SIGTERM or Ctrl-C, connections still open are dropped. At the shutdown a
/// connection with no request being answered (idle, or still sending a request's head) is
/// closed at once. At most `max_connections` are open at once; further ones wait to be
/// accepted.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    metrics: Arc<Metrics>,
    header_timeout: Duration,
    limit: Duration,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    // Connections hold `open` receivers; `closed()` resolves once every one is dropped.
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    let mut failures = AcceptFailures::default();
    // Found by a review: every connection was accepted, and each one trickling a large head
    // held half a megabyte (400 of them: +200 MB), before any token is checked.
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut full_said: Option<Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let now = Instant::now();
                if full_said.is_none_or(|at| now.saturating_duration_since(at) >= ACCEPT_WARN_EVERY)
                {
                    full_said = Some(now);
                    tracing::warn!(
                        "{max_connections} connections are open (--max-connections); new \
                         ones wait to be accepted until one closes"
                    );
                }
                tokio::select! {
                    r = slots.clone().acquire_owned() => match r {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    if let Some(line) = failures.accepted(Instant::now()) {
                        tracing::info!("{line}");
                    }
                    stream
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait for some to be freed.
                    if let Some(line) = failures.failed(Instant::now(), &e) {
                        tracing::warn!("{line}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers are small and written whole: send them at once.
        let _ = stream.set_nodelay(true);
        let answering = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let service = Answering {
            inner: TowerToHyperService::new(app.clone()),
            count: answering.clone(),
        };
        let (open, mut stop) = (open_rx.clone(), stop_rx.clone());
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_headers(HYPER_MAX_HEADERS)
                .max_buf_size(HYPER_MAX_BUF)
                .serve_connection(TokioIo::new(WriteDeadline::new(stream, limit)), service);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            match hyper_refusal(&e) {
                                Some(HyperEnd::Refused(status)) => {
                                    metrics.request("unparsed", status, Duration::ZERO)
                                }
                                Some(HyperEnd::Unanswered(kind)) => metrics.unanswered(kind),
                                None => {}
                            }
                            tracing::debug!("connection ended: {e}");
                        }
                        break;
                    }
                    changed = stop.changed(), if !stopping => {
                        stopping = true;
                        if changed.is_ok() {
                            // Found by a review: hyper's graceful shutdown waits for a head
                            // being sent, so one client's half-sent request held every
                            // restart for --timeout-ms and a second.
                            if answering.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                                break;
                            }
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            drop(open);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_rx);
    let grace = limit + Duration::from_secs(1);
    tokio::select! {
        () = open_tx.closed() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(
                "{} connection(s) still open {:.0} s after the shutdown began; closing them",
                open_tx.receiver_count(),
                grace.as_secs_f64()
            );
        }
        () = shutdown_signal() => {
            tracing::warn!("a second signal: closing {} open connection(s)", open_tx.receiver_count());
        }
    }
}

/// A connection's service that counts the requests it is answering, from the call until the
/// answer's body is dropped (written, or the connection gone), so that a shutdown can close
/// a connection with none at once.
#[derive(Clone)]
struct Answering<S> {
    inner: S,
    count: Arc<std::sync::atomic::AtomicUsize>,
}

/// One request being answered on a connection ([`Answering`]); dropped, it is not any more.
struct AnswerGuard(Arc<std::sync::atomic::AtomicUsize>);

impl AnswerGuard {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        AnswerGuard(count.clone())
    }
}

impl Drop for AnswerGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// An answer's body holding its [`AnswerGuard`] until it is dropped.
struct GuardedBody {
    inner: axum::body::Body,
    _guard: AnswerGuard,
}

impl http_body::Body for GuardedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Self::Data>, Self::Error>>>
    {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<S> hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Answering<S>
where
    S: hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = hyper::Response<axum::body::Body>,
    >,
    S::Future: Send + 'static,
{
    type Response = hyper::Response<GuardedBody>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>,
    >;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let guard = AnswerGuard::new(&self.count);
        let answer = self.inner.call(req);
        Box::pin(async move {
            let r = answer.await?;
            Ok(r.map(|inner| GuardedBody {
                inner,
                _guard: guard,
            }))
        })
    }
}

/// A connection's stream whose writes may wait at most `limit` for the client to read: past
/// it the write fails and the connection is closed (hyper has a timer for reading headers,
/// none for writing).
struct WriteDeadline<T> {
    io: T,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(io: T, limit: Duration) -> Self {
        WriteDeadline {
            io,
            limit,
            stalled: None,
        }
    }

    /// A write's outcome: done (the deadline is cleared) or pending ([`Self::pending`]).
    fn settle<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        if polled.is_pending() {
            return self.pending(cx);
        }
        self.stalled = None;
        polled
    }

    /// A write is pending: starts the deadline if it is not running, and fails once it
    /// passed.
    fn pending<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<R>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {} ms", limit.as_millis()),
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.io).poll_write(cx, buf);
        this.settle(cx, polled)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.settle(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.io).poll_flush(cx);
        this.settle(cx, polled)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The request time limit as a `Duration`.
pub(crate) fn timeout_of(limits: &Limits) -> Duration {
    Duration::from_millis(limits.request_timeout_ms.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error hyper's HTTP/1 server ends a connection with after reading `request`.
    fn server_error(request: &'static [u8]) -> hyper::Error {
        run_raw(request, false, |stream| async move {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(String::new()))
            });
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
                .expect_err("hyper parsed the request")
        })
    }

    /// The error hyper's HTTP/1 client gets when the server answers `response`.
    fn client_error(response: &'static [u8]) -> hyper::Error {
        run_raw(response, true, |stream| async move {
            let (mut send, conn) =
                hyper::client::conn::http1::handshake::<_, String>(TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(conn);
            let req = hyper::Request::get("/")
                .body(String::new())
                .expect("request");
            send.send_request(req)
                .await
                .expect_err("hyper parsed the answer")
        })
    }

    /// Runs `side` on a connection whose other end writes `bytes` (after reading a request's
    /// head, when `answer`: a client takes an answer before its request as no answer to it),
    /// then reads until closed.
    fn run_raw<F, Fut>(bytes: &'static [u8], answer: bool, side: F) -> hyper::Error
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut,
        Fut: Future<Output = hyper::Error>,
    {
        use std::io::{Read, Write};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("address");
            let peer = std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).expect("connect");
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while answer && !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1
                {
                    head.push(byte[0]);
                }
                let _ = s.write_all(bytes);
                let _ = s.read_to_end(&mut Vec::new());
            });
            let (stream, _) = listener.accept().await.expect("accept");
            let e = side(stream).await;
            let _ = peer.join();
            e
        })
    }

    /// Found by a review: every parse error hyper ended a connection with was counted as an
    /// empty 400 it had answered, though it answers none for its own internal errors, a
    /// status line's error or an HTTP/2 preface. Only what it answers is counted as an
    /// answer; the others under their own kind.
    #[test]
    fn only_the_parse_errors_hyper_answers_count_as_its_answers() {
        let bad_header = server_error(b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n");
        assert_eq!(
            hyper_refusal(&bad_header),
            Some(HyperEnd::Refused(400)),
            "{bad_header:?}"
        );
        let bad_method = server_error(b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            hyper_refusal(&bad_method),
            Some(HyperEnd::Refused(400)),
            "{bad_method:?}"
        );
        let h2 = server_error(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(
            hyper_refusal(&h2),
            Some(HyperEnd::Unanswered("http2_preface")),
            "{h2:?}"
        );
        let status = client_error(b"HTTP/1.1 abc OK\r\ncontent-length: 0\r\n\r\n");
        assert!(status.is_parse_status(), "{status:?}");
        assert_eq!(
            hyper_refusal(&status),
            Some(HyperEnd::Unanswered("parse_status")),
            "{status:?}"
        );
        // hyper's internal error cannot be made from outside, so the `parse_internal`
        // branch is untested here: [`HYPER_INTERNAL`] was checked by hand against hyper
        // 1.12.0's `Kind::Parse(Parse::Internal)` message, and
        // `hyper_internal_was_checked_against_the_hyper_in_use` asks for that check again
        // when hyper changes.
    }

    /// [`HYPER_INTERNAL`] is hyper's wording, which no test can produce (review R12: the
    /// assert that stood for it compared the constant with a copy of itself). Fails when
    /// Cargo.lock's hyper is not the version the wording was read from.
    #[test]
    fn hyper_internal_was_checked_against_the_hyper_in_use() {
        const CHECKED: &str = "1.12.0";
        let lock = include_str!("../../Cargo.lock");
        let in_use: Vec<&str> = lock
            .split("[[package]]")
            .filter(|p| p.lines().any(|l| l.trim() == "name = \"hyper\""))
            .filter_map(|p| {
                p.lines()
                    .find_map(|l| l.trim().strip_prefix("version = \""))
                    .map(|v| v.trim_end_matches('"'))
            })
            .collect();
        assert_eq!(
            in_use,
            [CHECKED],
            "hyper is no longer {CHECKED}: check that its Parse::Internal message (src/error.rs) \
             still starts with HYPER_INTERNAL ({HYPER_INTERNAL:?}), then update CHECKED"
        );
    }

    /// Found by an audit: with its file descriptors used up by connections, the server
    /// warned that the index was "removed or damaged". Running out of descriptors is told
    /// apart from a missing or unreadable index.
    #[test]
    fn running_out_of_file_descriptors_is_not_a_missing_index() {
        let io = |code| relbert_index::IndexError::Io {
            path: "idx/meta".into(),
            err: std::io::Error::from_raw_os_error(code),
        };
        assert!(out_of_descriptors(&io(libc::EMFILE)));
        assert!(out_of_descriptors(&io(libc::ENFILE)));
        assert!(!out_of_descriptors(&io(libc::ENOENT)));
        assert!(!out_of_descriptors(&io(libc::EACCES)));
    }

    /// Found by an audit: out of file descriptors, every accept failed at once and each
    /// failure was a warning, 20 lines a second for as long as it lasted. Now one line per
    /// [`ACCEPT_WARN_EVERY`] with a count of the rest, however failures and accepts
    /// alternate. Driven with made-up instants: no clock is waited on.
    #[test]
    fn accept_failures_are_said_once_per_interval_with_a_count() {
        let emfile = std::io::Error::other("Too many open files (os error 24)");
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut f = AcceptFailures::default();
        let mut said = Vec::new();
        // 25 s of failures 50 ms apart, as the accept loop retries.
        for i in 0..500 {
            said.extend(f.failed(at(50 * i), &emfile));
        }
        assert_eq!(said.len(), 3, "{said:#?}");
        assert!(said[0].contains("Too many open files"), "{}", said[0]);
        assert!(said[0].contains("at most every 10 s"), "{}", said[0]);
        assert!(
            said[1].contains("and 199 more failures in the 10 s"),
            "{}",
            said[1]
        );
        assert!(said[2].contains("and 199 more failures"), "{}", said[2]);
        // 99 failures after the last warning (at 20 s), then accepts: said once the
        // interval is over, once.
        assert_eq!(f.accepted(at(25_000)), None);
        let back = f.accepted(at(30_000)).unwrap_or_default();
        assert!(
            back.contains("99 more failures after the last warning"),
            "{back}"
        );
        assert_eq!(f.accepted(at(40_000)), None);
        // At the limit, a failure and an accept in turn: one warning per interval.
        let mut said = Vec::new();
        for i in 0..400 {
            let now = at(50_000 + 50 * i);
            said.extend(if i % 2 == 0 {
                f.failed(now, &emfile)
            } else {
                f.accepted(now)
            });
        }
        assert_eq!(said.len(), 2, "{said:#?}");
        assert!(said[1].contains("and 99 more failures"), "{}", said[1]);
        // Accepts with no failure before say nothing.
        assert_eq!(AcceptFailures::default().accepted(at(0)), None);
        assert_eq!(failures(1), "failure");
    }
}
