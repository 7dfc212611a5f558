//! `relbert serve`: the query layer as an HTTP service, with a page for people.
//!
//! This module owns the server: the JSON API under `/v1/` ([`api`]), the page at `/`
//! (`page.html`, embedded in the binary, no CDN), the OpenAPI description (`openapi.json`,
//! written by hand because it is one static document and a derive crate would add more code
//! than it saves), dynamic batching of encoder work ([`batcher`]), metrics ([`metrics`]), the
//! prefix index behind suggestions ([`suggest`]) and the page's 2-D projection ([`pca`]).
//!
//! The data flow is the CLI's: answers come from [`crate::query::QueryEngine`], shared by
//! every request behind an `Arc` (its searches take `&self`). Stored pairs are looked up and
//! searched on the async workers and never wait for the encoder; pairs that must be encoded
//! go through the [`batcher::Batcher`], whose dedicated thread owns the model.
//!
//! Operations: it binds to 127.0.0.1 unless told otherwise and refuses a non-loopback
//! address without a bearer token; bodies, words, `k`, `ef` and batches are bounded and
//! refused with JSON 4xx errors; every request has a time limit; SIGTERM or Ctrl-C stops
//! accepting connections and lets requests in flight finish; each request is logged through
//! `tracing` (target `relbert::serve::access`).

pub mod api;
pub mod batcher;
pub mod metrics;
pub mod pca;
pub mod suggest;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::query::QueryEngine;
pub use batcher::{BatchConfig, Batcher};
pub use metrics::Metrics;
use suggest::Suggestions;

/// Bounds on what one request may ask for.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Limits {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Longest word of a pair, in characters.
    pub max_word_chars: usize,
    /// Largest `k`.
    pub max_k: usize,
    /// Largest HNSW `ef`.
    pub max_ef: usize,
    /// Most pairs in one batch query or embed request.
    pub max_batch_pairs: usize,
    /// Longest a request may take, in milliseconds, before a 504.
    pub request_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            max_word_chars: 100,
            max_k: 100,
            max_ef: 4096,
            max_batch_pairs: 64,
            request_timeout_ms: 10_000,
        }
    }
}

/// Everything `relbert serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The index directory.
    pub index: PathBuf,
    /// A model to use instead of the one the index records (same pair function).
    pub model: Option<PathBuf>,
    /// The number format encoded queries use (`None`: the index's).
    pub dtype: Option<crate::Dtype>,
    /// Where to listen.
    pub addr: SocketAddr,
    /// The bearer token every API request must carry, if any.
    pub token: Option<String>,
    /// Request bounds.
    pub limits: Limits,
    /// Encoder batching.
    pub batch: BatchConfig,
}

/// The parts that exist once the index is open and the model loaded.
pub struct Loaded {
    /// The shared query layer.
    pub engine: Arc<QueryEngine>,
    /// The encoder's queue.
    pub batcher: Batcher,
    /// Prefix search over the index's pairs.
    pub suggestions: Suggestions,
    /// `index info --json`'s object for this index.
    pub info: serde_json::Value,
}

/// What every request handler sees.
pub struct AppState {
    loaded: OnceLock<Loaded>,
    failed: OnceLock<String>,
    /// Request bounds.
    pub limits: Limits,
    /// Batching settings (reported by `/v1/info`).
    pub batch: BatchConfig,
    /// The bearer token, if one is required.
    pub token: Option<String>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The model directory override, if any.
    model: Option<PathBuf>,
    dtype: Option<crate::Dtype>,
    index: PathBuf,
}

impl AppState {
    /// A server state that is not ready yet: [`AppState::load`] opens the index.
    pub fn new(opts: &ServeOptions) -> Arc<Self> {
        Arc::new(AppState {
            loaded: OnceLock::new(),
            failed: OnceLock::new(),
            limits: opts.limits.clone(),
            batch: opts.batch.clone(),
            token: opts.token.clone(),
            metrics: Arc::new(Metrics::new()),
            model: opts.model.clone(),
            dtype: opts.dtype,
            index: opts.index.clone(),
        })
    }

    /// Opens the index, loads its model onto the encoder thread and builds the suggestion
    /// list; until it returns, `/v1/health` says 503 and the API answers 503. Blocking.
    pub fn load(&self) -> Result<()> {
        let started = Instant::now();
        let result = (|| -> Result<Loaded> {
            let mut engine = QueryEngine::open(&self.index, self.model.clone())?;
            if let Some(d) = self.dtype {
                engine.set_dtype(d);
            }
            let open_ms = started.elapsed().as_secs_f64() * 1e3;
            let info = crate::indexing::info_json(engine.local()?, &self.index, open_ms, false);
            // One forward pass per batch the batcher forms.
            let enc = engine.open_model(self.batch.max_batch)?;
            let batcher = Batcher::start(enc, self.batch.clone(), self.metrics.clone())?;
            let suggestions = Suggestions::build(engine.local()?)?;
            Ok(Loaded {
                engine: Arc::new(engine),
                batcher,
                suggestions,
                info,
            })
        })();
        match result {
            Ok(loaded) => {
                tracing::info!(
                    "index {} ready: {} pairs, model loaded, in {:.2}s",
                    self.index.display(),
                    loaded.suggestions.len(),
                    started.elapsed().as_secs_f64()
                );
                // A second load is a no-op: the first one stays.
                let _ = self.loaded.set(loaded);
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

    /// Why loading failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(|s| s.as_str())
    }
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
    tracing::info!("shutting down: finishing requests in flight");
}

/// Runs the server until SIGTERM or Ctrl-C: binds first (so the address is known and
/// `/v1/health` answers while loading), then opens the index in the background.
/// `on_listening` is called with the bound address (port 0 picks a free one).
pub async fn serve(opts: ServeOptions, on_listening: impl FnOnce(SocketAddr)) -> Result<()> {
    if !is_loopback(&opts.addr) && opts.token.as_deref().is_none_or(str::is_empty) {
        return Err(Error::InvalidArgument {
            flag: "--addr".into(),
            message: format!(
                "{} is reachable beyond this machine; set a bearer token with --token or \
                 RELBERT_TOKEN to listen there",
                opts.addr
            ),
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
    tokio::task::spawn_blocking(move || {
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
    let app = api::router(state);
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());
    // A model that cannot be loaded ends the server: it could never become ready.
    tokio::select! {
        r = server.into_future() => r.map_err(|e| Error::io(format!("serving on {bound}"), e)),
        e = load_failed => Err(e),
    }
}

/// The request time limit as a `Duration`.
pub(crate) fn timeout_of(limits: &Limits) -> Duration {
    Duration::from_millis(limits.request_timeout_ms.max(1))
}
