//! `relbert serve`: flags and the async runtime around [`relbert::serve::serve`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use relbert::serve::{Backend, BatchConfig, Limits, ServeOptions};

/// Arguments of `relbert serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Index directory (default: $RELBERT_INDEX or indexes/default).
    #[arg(long, value_parser = super::index_dir)]
    index: Option<PathBuf>,
    /// Serve this Qdrant collection instead of a local index (written by `relbert index
    /// export --qdrant`); the same endpoints and answers.
    #[arg(long, conflicts_with = "index")]
    collection: Option<String>,
    /// Qdrant gRPC URL(s) for --collection, comma-separated for several nodes (default:
    /// $RELBERT_QDRANT_URL).
    #[arg(long, requires = "collection")]
    qdrant: Option<String>,
    /// Model for pairs not in the index (default: the one the index was built with).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where the encoder runs: cpu, or cuda:N with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Number format encoded queries are computed at: f32, bf16 or f16 (default: the one
    /// the index was built at; another is allowed, with a note in the log).
    #[arg(long)]
    dtype: Option<relbert::Dtype>,
    /// Address to listen on; anything but loopback needs a token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Bearer token every API request must carry (also $RELBERT_TOKEN): visible ASCII,
    /// no spaces.
    #[arg(long, env = "RELBERT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Most pairs per encoder forward pass.
    #[arg(long, default_value_t = 64, value_parser = super::positive)]
    max_batch: usize,
    /// Most padded tokens per encoder forward pass.
    #[arg(long, default_value_t = 4096, value_parser = super::positive)]
    max_batch_tokens: usize,
    /// Longest a pair waits for others to share its forward pass, in milliseconds (at most
    /// half of --timeout-ms).
    #[arg(long, default_value_t = 2)]
    max_wait_ms: u64,
    /// Most pairs waiting for the encoder before requests get 503.
    #[arg(long, default_value_t = 4096, value_parser = super::positive)]
    queue: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 64 * 1024, value_parser = super::positive)]
    max_body: usize,
    /// Largest k a query may ask for.
    #[arg(long, default_value_t = 100, value_parser = super::positive)]
    max_k: usize,
    /// Most pairs in one batch request.
    #[arg(long, default_value_t = 64, value_parser = super::positive)]
    max_pairs: usize,
    /// Request time limit in milliseconds (504 past it).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Longest a connection may take to send a request's headers, in milliseconds, idle
    /// keep-alive connections included; past it the connection is closed.
    #[arg(long, default_value_t = 30_000)]
    header_timeout_ms: u64,
}

pub fn run(a: ServeArgs) -> Result<()> {
    let backend = match &a.collection {
        Some(collection) => Backend::Qdrant {
            urls: super::export::qdrant_urls(a.qdrant.as_deref())?,
            collection: collection.clone(),
        },
        None => {
            let index = match &a.index {
                Some(dir) => dir.clone(),
                None => {
                    let dir = relbert::defaults::default_index_dir();
                    super::query::refuse_empty_index_env(&dir)?;
                    dir
                }
            };
            // Only a missing meta is "no index"; a meta that is something else (a directory,
            // a pipe, a loop) is named by the open's own error.
            let missing = matches!(
                std::fs::symlink_metadata(index.join("meta")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound
            );
            if missing {
                // An interrupted build is said as query and `index info` say it (found by an
                // audit: serve called it "no index" and advised building one).
                if let Some(unfinished) = super::index::unfinished(&index) {
                    anyhow::bail!("{unfinished}");
                }
                anyhow::bail!(
                    "no index at {} (build one with relbert index build, or run relbert query \
                     once to build the default index)",
                    index.display()
                );
            }
            Backend::Index(index)
        }
    };
    // Every pair of a request is queued at once, so a queue shorter than the largest batch
    // request would answer such a request "busy" on an idle server.
    anyhow::ensure!(
        a.queue >= a.max_pairs,
        "invalid value for --queue: {} is less than --max-pairs {} (a batch request's pairs \
         are queued together, so one could never fit)",
        a.queue,
        a.max_pairs
    );
    anyhow::ensure!(
        a.header_timeout_ms > 0,
        "invalid value for --header-timeout-ms: must be at least 1"
    );
    // 0 was taken as 1 ms (and so also bounded every write by 1 ms) while /v1/info said 0.
    anyhow::ensure!(
        a.timeout_ms > 0,
        "invalid value for --timeout-ms: must be at least 1"
    );
    // After a forward pass of several pairs the encoder waits up to --max-wait-ms for company
    // before it even starts on the next pair, which then still needs its own forward pass:
    // with a wait near or past the time limit a lone encoded query got 504 on an idle
    // server. At most half the limit leaves the other half for the queue and the pass.
    anyhow::ensure!(
        a.max_wait_ms.saturating_mul(2) <= a.timeout_ms,
        "invalid value for --max-wait-ms: {} is more than half of --timeout-ms {} (a pair may \
         wait --max-wait-ms, 2 unless given, for others to share its forward pass before the \
         pass starts, so a lone encoded query would run out of time); use at most {} or raise \
         --timeout-ms",
        a.max_wait_ms,
        a.timeout_ms,
        a.timeout_ms / 2
    );
    let opts = ServeOptions {
        backend,
        model: a.model,
        dtype: a.dtype,
        device: relbert::device::parse_device(&a.device)?,
        addr: a.addr,
        // Spaces around a token (an environment file's, say) are not part of it: clients'
        // are trimmed too, and a blank token is no token.
        token: a
            .token
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()),
        limits: Limits {
            max_body_bytes: a.max_body,
            max_k: a.max_k,
            max_batch_pairs: a.max_pairs,
            request_timeout_ms: a.timeout_ms,
            header_timeout_ms: a.header_timeout_ms,
            ..Limits::default()
        },
        batch: BatchConfig {
            max_batch: a.max_batch,
            max_tokens: a.max_batch_tokens,
            max_wait: Duration::from_millis(a.max_wait_ms),
            queue_capacity: a.queue,
        },
    };
    // A client that hangs up must cost an EPIPE on that socket, not the process (main
    // restores SIGPIPE's default for pipelines like `relbert query | head`).
    #[cfg(unix)]
    // SAFETY: SIG_IGN is a valid disposition; no handler of ours is replaced.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("relbert-serve")
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(relbert::serve::serve(opts, |addr| {
            // On stderr for people and for scripts that start it on port 0.
            relbert::say!("relbert serve: listening on http://{addr}");
        }))
        .context("relbert serve")?;
    Ok(())
}
