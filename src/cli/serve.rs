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
    #[arg(long, value_parser = super::os(super::index_dir_at))]
    index: Option<PathBuf>,
    /// Serve this Qdrant collection instead of a local index (written by `relbert index
    /// export --qdrant`); the same endpoints and answers.
    #[arg(long, conflicts_with = "index", value_parser = super::os(super::export::collection_name))]
    collection: Option<String>,
    /// Qdrant gRPC URL(s) for --collection, comma-separated for several nodes (default:
    /// $RELBERT_QDRANT_URL).
    // `conflicts_with` as well: clap waives `requires` beside an argument that conflicts with
    // the one required, so `--index DIR --qdrant URL` served DIR and ignored --qdrant.
    #[arg(long, requires = "collection", conflicts_with = "index", value_parser = super::os(super::export::qdrant_spec))]
    qdrant: Option<String>,
    /// Model for pairs not in the index (default: the one the index was built with): a
    /// directory, or a Hugging Face Hub id in the local Hub cache.
    #[arg(long, value_parser = super::os(super::model_dir))]
    model: Option<PathBuf>,
    /// Where the encoder runs: cpu, or cuda:N with the `cuda` feature.
    #[arg(long, default_value = "cpu", value_parser = super::os(super::device))]
    device: String,
    /// Number format encoded queries are computed at: f32, bf16 or f16 (default: the one
    /// the index was built at; another is allowed, with a note in the log).
    #[arg(long, value_parser = super::os(super::dtype))]
    dtype: Option<relbert::Dtype>,
    /// Address to listen on: an IP address and port, or a host name and port
    /// (`localhost:8080`); anything but loopback needs a token.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = listen_addr)]
    addr: ListenAddr,
    /// Bearer token every API request must carry (also $RELBERT_TOKEN): visible ASCII,
    /// no spaces.
    #[arg(long, env = "RELBERT_TOKEN", hide_env_values = true, value_parser = super::os(super::text))]
    token: Option<String>,
    /// Most pairs per encoder forward pass (default: 64 on the CPU, 512 on a GPU, whose
    /// passes over small batches are bound by the host).
    #[arg(long, value_parser = super::positive)]
    max_batch: Option<usize>,
    /// Most padded tokens per encoder forward pass (default: 4096 on the CPU, 32768 on a
    /// GPU).
    #[arg(long, value_parser = super::positive)]
    max_batch_tokens: Option<usize>,
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
    /// Largest HNSW ef a query may ask for (a query that gives none is searched at 64, or at
    /// this if it is lower).
    #[arg(long, default_value_t = 4096, value_parser = super::positive)]
    max_ef: usize,
    /// Most pairs in one batch request.
    #[arg(long, default_value_t = 64, value_parser = super::positive)]
    max_pairs: usize,
    /// Request time limit in milliseconds (504 past it).
    #[arg(long, default_value_t = 10_000, value_parser = positive_ms)]
    timeout_ms: u64,
    /// Longest a connection may take to send a request's headers, in milliseconds, idle
    /// keep-alive connections included; past it the connection is closed.
    #[arg(long, default_value_t = 30_000, value_parser = positive_ms)]
    header_timeout_ms: u64,
    /// Most connections open at once; further ones wait to be accepted until one closes
    /// (each can hold up to about half a megabyte while its request's headers arrive).
    #[arg(long, default_value_t = 1024, value_parser = super::positive)]
    max_connections: usize,
}

/// An `--addr` as it will be bound: the address, and what to log about how a host name
/// was resolved to it.
#[derive(Clone, Debug)]
struct ListenAddr {
    addr: SocketAddr,
    /// Said once the log is set up (flags are parsed before it is): which of a host name's
    /// several addresses is bound.
    note: Option<String>,
}

/// What an `--addr` refusal advises.
const ADDR_FORM: &str = "give an IP address and port, e.g. 127.0.0.1:8080, or a host name and \
     port, e.g. localhost:8080";

/// Parses an `--addr`: an IP address and port as written, else a host name and port,
/// resolved now (`localhost:8080` was refused with only "invalid socket address syntax").
/// A name may give several addresses (`localhost`: `::1` and `127.0.0.1`); one is bound
/// ([`choose_addr`]). Refused, as a bad command line, with the form to give.
fn listen_addr(s: &str) -> std::result::Result<ListenAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(ListenAddr { addr, note: None });
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("no port; {ADDR_FORM}"));
    };
    // An IPv6 address without its brackets (`::1:8080`) or a bracketed one without a port
    // (`[::1]`) splits at one of its own colons.
    if host.contains(':') || host.starts_with('[') || port.ends_with(']') {
        return Err(format!(
            "an IPv6 address is written in brackets before its port, e.g. [::1]:8080; \
             {ADDR_FORM}"
        ));
    }
    if host.is_empty() {
        return Err(format!("no host before the port; {ADDR_FORM}"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number (0 to 65535); {ADDR_FORM}"))?;
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("the host name {host:?} could not be resolved ({e}); {ADDR_FORM}"))?
        .collect();
    let Some(addr) = choose_addr(&addrs) else {
        return Err(format!(
            "the host name {host:?} resolves to no address; {ADDR_FORM}"
        ));
    };
    let note = (addrs.len() > 1).then(|| {
        let all: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        format!(
            "--addr {s}: {host} resolves to {}; listening on {addr} only",
            all.join(", ")
        )
    });
    Ok(ListenAddr { addr, note })
}

/// The address to bind of those a host name resolves to: when all are loopback (`localhost`)
/// the first IPv4 one, as the default `127.0.0.1` is (IPv6 may be off where `::1` is still
/// listed), else the first, as the resolver ordered them. The loopback rule and the token
/// rule ([`relbert::serve::is_loopback`]) then apply to the address bound.
fn choose_addr(addrs: &[SocketAddr]) -> Option<SocketAddr> {
    if addrs.iter().all(|a| a.ip().is_loopback()) {
        if let Some(v4) = addrs.iter().find(|a| a.is_ipv4()) {
            return Some(*v4);
        }
    }
    addrs.first().copied()
}

/// A time limit in milliseconds, at least 1: 0 was taken as 1 ms (and so also bounded every
/// write by 1 ms) while /v1/info said 0.
fn positive_ms(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Refuses limits that cannot work together (a bad command line: status 2), before anything
/// is opened or loaded.
fn check_limits(a: &ServeArgs) -> Result<()> {
    // Every pair of a request is queued at once, so a queue shorter than the largest batch
    // request would answer such a request "busy" on an idle server.
    if a.queue < a.max_pairs {
        return Err(super::usage(format!(
            "invalid value for --queue: {} is less than --max-pairs {} (a batch request's pairs \
             are queued together, so one could never fit)",
            a.queue, a.max_pairs
        )));
    }
    // After a forward pass of several pairs the encoder waits up to --max-wait-ms for company
    // before it even starts on the next pair, which then still needs its own forward pass:
    // with a wait near or past the time limit a lone encoded query got 504 on an idle
    // server. At most half the limit leaves the other half for the queue and the pass.
    if a.max_wait_ms.saturating_mul(2) > a.timeout_ms {
        return Err(super::usage(format!(
            "invalid value for --max-wait-ms: {} is more than half of --timeout-ms {} (a pair \
             may wait --max-wait-ms, 2 unless given, for others to share its forward pass \
             before the pass starts, so a lone encoded query would run out of time); use at \
             most {} or raise --timeout-ms",
            a.max_wait_ms,
            a.timeout_ms,
            a.timeout_ms / 2
        )));
    }
    Ok(())
}

/// The token to require: spaces around one (an environment file's, say) are not part of
/// it, as clients' are trimmed too, and a blank token is no token.
fn token_of(a: &ServeArgs) -> Option<String> {
    a.token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// Refuses a token an HTTP header could not carry, and an address beyond loopback without a
/// token: a bad command line (status 2, as the README's "Exit status" says; found by an
/// audit, they ended with 1), before anything is opened or loaded. The server checks both
/// again ([`relbert::serve::serve`]) for callers of the library.
fn check_access(addr: &SocketAddr, token: Option<&str>) -> Result<()> {
    match relbert::serve::access_problem(addr, token) {
        Some((flag, why)) => Err(super::usage(format!("invalid value for {flag}: {why}"))),
        None => Ok(()),
    }
}

/// Refuses the default index at `dir` when `relbert query` would rebuild it before answering
/// from it: the default model (its weights, tokenizer or config) or vocabulary changed since
/// it was built ([`super::query::default_index_staleness_for_serving`]). The server builds
/// nothing, and served it as it was, its stored vectors and the pairs it encoded the old
/// model's, while the default model was another (found by a review).
fn refuse_a_stale_default_index(dir: &std::path::Path) -> Result<()> {
    if let Some(why) = super::query::default_index_staleness_for_serving(dir)? {
        anyhow::bail!(
            "the default index {} is stale ({why}): `relbert query` rebuilds it before \
             answering, but `relbert serve` does not build. Run `relbert query` once (e.g. \
             `relbert query paris france`), which rebuilds it, then start the server again; \
             or pass --index DIR to serve an index as it is",
            dir.display()
        );
    }
    Ok(())
}

/// Runs `relbert serve`.
pub fn run(a: ServeArgs) -> Result<()> {
    check_limits(&a)?;
    let token = token_of(&a);
    check_access(&a.addr.addr, token.as_deref())?;
    if let Some(note) = &a.addr.note {
        tracing::info!("{note}");
    }
    let backend = match &a.collection {
        Some(collection) => Backend::Qdrant {
            urls: super::export::qdrant_urls(a.qdrant.as_deref())?,
            origin: relbert::store::qdrant::UrlOrigin::of(a.qdrant.as_deref()),
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
                return Err(super::index::no_index(&index));
            }
            if a.index.is_none() {
                refuse_a_stale_default_index(&index)?;
            }
            Backend::Index(index)
        }
    };
    let device = relbert::device::parse_device(&a.device)?;
    // A --model given is checked now, as `query` checks it: the server loads it in the
    // background, after it is listening, and a Hub id the cache lacks is said here with how
    // to fetch it.
    if let Some(m) = &a.model {
        super::check_model_flag(m)?;
    }
    let batch = BatchConfig::for_device(&device);
    let opts = ServeOptions {
        backend,
        model: a.model,
        dtype: a.dtype,
        device,
        addr: a.addr.addr,
        token,
        limits: Limits {
            max_body_bytes: a.max_body,
            max_k: a.max_k,
            max_ef: a.max_ef,
            max_batch_pairs: a.max_pairs,
            request_timeout_ms: a.timeout_ms,
            header_timeout_ms: a.header_timeout_ms,
            max_connections: a.max_connections,
            ..Limits::default()
        },
        batch: BatchConfig {
            max_batch: a.max_batch.unwrap_or(batch.max_batch),
            max_tokens: a.max_batch_tokens.unwrap_or(batch.max_tokens),
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
    let served = runtime.block_on(relbert::serve::serve(opts, |addr| {
        // On stderr for people and for scripts that start it on port 0.
        relbert::say!("relbert serve: listening on http://{addr}");
    }));
    // Dropping the runtime would wait for its blocking pool: a load, a look at the store or
    // a listing still running, which only read. Found by an audit: with Qdrant not
    // answering, the exit waited for the client's retries (15 s) and every further signal
    // went unheeded meanwhile. The log said what is left (`AppState::begin_shutdown`).
    runtime.shutdown_background();
    served.context("relbert serve")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by an audit: `--addr localhost:19483` was refused with "invalid socket address
    /// syntax" and no advice. A host name is resolved; a bad value says what to give.
    #[test]
    fn an_addr_may_be_a_host_name_and_a_bad_one_says_what_to_give() {
        let local = listen_addr("localhost:19483").unwrap();
        assert!(local.addr.ip().is_loopback(), "{local:?}");
        assert_eq!(local.addr.port(), 19483);
        let ip = listen_addr("0.0.0.0:8080").unwrap();
        assert_eq!(ip.addr, "0.0.0.0:8080".parse::<SocketAddr>().unwrap());
        assert!(ip.note.is_none());
        for bad in [
            "localhost",
            "127.0.0.1",
            ":8080",
            "localhost:http",
            "localhost:70000",
        ] {
            let err = listen_addr(bad).unwrap_err();
            assert!(err.contains("e.g. 127.0.0.1:8080"), "{bad}: {err}");
        }
        for bad in ["::1:8080", "[::1]"] {
            let err = listen_addr(bad).unwrap_err();
            assert!(err.contains("[::1]:8080"), "{bad}: {err}");
        }
    }

    /// Of several addresses, loopback only: IPv4's; with any other, the resolver's first
    /// (which the token rule then judges).
    #[test]
    fn of_a_names_addresses_the_ipv4_loopback_or_the_first_is_bound() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            choose_addr(&[a("[::1]:80"), a("127.0.0.1:80")]),
            Some(a("127.0.0.1:80"))
        );
        assert_eq!(choose_addr(&[a("[::1]:80")]), Some(a("[::1]:80")));
        assert_eq!(
            choose_addr(&[a("192.0.2.1:80"), a("127.0.0.1:80")]),
            Some(a("192.0.2.1:80"))
        );
        assert_eq!(choose_addr(&[]), None);
    }
}
