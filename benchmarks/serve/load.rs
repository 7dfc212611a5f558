//! Load client for `relbert serve` (benchmarks/serve/README.md): N concurrent clients, each
//! on its own keep-alive HTTP/1.1 connection, POST /v1/query in a loop for a fixed time,
//! with pairs taken in turn from a pair file. Prints one JSON line per run: throughput,
//! p50/p99 latency, errors, how many answers were encoded, and the server's resident memory
//! (from /proc/PID/status) before and after, sampled every `--rss-every` seconds.
//!
//! cargo run --release --example serve_load -- --addr 127.0.0.1:8080 --pairs P.tsv \
//!     --clients 1,8,64,256 --seconds 10 [--pid PID] [--label stored]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
struct Args {
    /// Server address (127.0.0.1 only: this is a local benchmark).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Pairs to query, `a<TAB>b` per line.
    #[arg(long)]
    pairs: std::path::PathBuf,
    /// Comma-separated client counts, one run each.
    #[arg(long, default_value = "1,8,64,256")]
    clients: String,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Results per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// The server's pid, to report its resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 30)]
    rss_every: u64,
    /// A name for the run in the output.
    #[arg(long, default_value = "")]
    label: String,
    /// `raw` writes each request's prepared bytes to the socket and reads the answer with
    /// `httparse`: 0.81–0.87× `hyper`'s CPU per request (22–24 against 25–29 µs, user and
    /// system together, in `results-ab-client-2026-12-01.txt`; its user time about halves,
    /// the kernel's loopback TCP work stays), which matters because the client shares the
    /// cores with the server it measures. `hyper` is hyper's HTTP/1.1 client, what the runs
    /// before 2026-12-01 13:28 UTC used (`raw` is the default since).
    #[arg(long, value_enum, default_value_t = Client::Raw)]
    client: Client,
}

/// Which HTTP client the load runs on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Raw,
    Hyper,
}

fn rss_kb(pid: Option<u32>) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// How an answer says its query pair was encoded.
const ENCODED: &[u8] = b"\"source\":\"encoded\"";

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    encoded: u64,
}

impl Tally {
    /// One answer: its latency since `began`, an error unless `ok`, else whether `body` says
    /// its pair was encoded.
    fn answer(&mut self, began: Instant, ok: bool, body: &[u8]) {
        self.latencies_us.push(began.elapsed().as_micros() as u64);
        if !ok {
            self.errors += 1;
        } else if body.windows(ENCODED.len()).any(|w| w == ENCODED) {
            self.encoded += 1;
        }
    }
}

async fn client(
    addr: String,
    bodies: Arc<Vec<Bytes>>,
    start: usize,
    until: Instant,
) -> Result<Tally> {
    let stream = TcpStream::connect(&addr).await.context("connecting")?;
    stream.set_nodelay(true)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut t = Tally::default();
    let mut i = start;
    while Instant::now() < until {
        let body = bodies[i % bodies.len()].clone();
        i += 1;
        let req = Request::post("/v1/query")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let began = Instant::now();
        let resp = match send.send_request(req).await {
            Ok(r) => r,
            Err(_) => {
                t.errors += 1;
                break;
            }
        };
        let ok = resp.status().is_success();
        let bytes = resp.into_body().collect().await?.to_bytes();
        t.answer(began, ok, &bytes);
    }
    Ok(t)
}

/// Reads what has arrived into `buf` (waiting for some); an error when the server closed
/// the connection.
async fn read_some(stream: &TcpStream, buf: &mut [u8]) -> Result<usize> {
    loop {
        match stream.try_read(buf) {
            Ok(0) => anyhow::bail!("the server closed the connection"),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => stream.readable().await?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One keep-alive connection sending prepared HTTP/1.1 requests (`requests`, whole: head and
/// body) in turn until `until`, each answer read to its `Content-Length` end.
async fn raw_client(
    addr: String,
    requests: Arc<Vec<Vec<u8>>>,
    start: usize,
    until: Instant,
) -> Result<Tally> {
    let stream = TcpStream::connect(&addr).await.context("connecting")?;
    stream.set_nodelay(true)?;
    let mut t = Tally::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut i = start;
    while Instant::now() < until {
        let req = &requests[i % requests.len()];
        i += 1;
        let began = Instant::now();
        let mut off = 0;
        while off < req.len() {
            match stream.try_write(&req[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => stream.writable().await?,
                Err(e) => return Err(e.into()),
            }
        }
        let mut have = 0;
        let (status, end) = loop {
            have += read_some(&stream, &mut buf[have..]).await?;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = resp.parse(&buf[..have])? {
                let length = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    })
                    .context("an answer without Content-Length")?;
                let end = head + length;
                anyhow::ensure!(end <= buf.len(), "an answer of {end} bytes");
                let status = resp.code.unwrap_or(0);
                while have < end {
                    have += read_some(&stream, &mut buf[have..end]).await?;
                }
                anyhow::ensure!(have == end, "bytes after the answer");
                break (status, end);
            }
        };
        t.answer(began, (200..300).contains(&status), &buf[..end]);
    }
    Ok(t)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e3
}

// One thread: the client shares the machine's cores with the server it measures, so it
// should take as little of them as it can (every client is an async task on this thread).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        a.addr.starts_with("127.0.0.1:"),
        "this benchmark only targets 127.0.0.1"
    );
    let text = std::fs::read_to_string(&a.pairs)
        .with_context(|| format!("reading {}", a.pairs.display()))?;
    let bodies: Vec<Bytes> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .map(|(x, y)| Bytes::from(serde_json::json!({"pair": [x, y], "k": a.k}).to_string()))
        .collect();
    anyhow::ensure!(!bodies.is_empty(), "no pairs in {}", a.pairs.display());
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        bodies
            .iter()
            .map(|b| {
                let mut r = format!(
                    "POST /v1/query HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    b.len()
                )
                .into_bytes();
                r.extend_from_slice(b);
                r
            })
            .collect(),
    );
    let bodies = Arc::new(bodies);
    for n in a.clients.split(',') {
        let n: usize = n.trim().parse().context("--clients")?;
        let rss_start = rss_kb(a.pid);
        let began = Instant::now();
        let until = began + Duration::from_secs(a.seconds);
        let mut handles = Vec::new();
        for c in 0..n {
            // Clients start at different places in the pair list.
            let start = c * bodies.len() / n.max(1);
            handles.push(match a.client {
                Client::Raw => {
                    tokio::spawn(raw_client(a.addr.clone(), requests.clone(), start, until))
                }
                Client::Hyper => tokio::spawn(client(a.addr.clone(), bodies.clone(), start, until)),
            });
        }
        let mut samples = Vec::new();
        let pid = a.pid;
        let every = Duration::from_secs(a.rss_every.max(1));
        let sampler = tokio::spawn(async move {
            let mut out = Vec::new();
            while Instant::now() + every < until {
                tokio::time::sleep(every).await;
                out.push(rss_kb(pid));
            }
            out
        });
        let mut all = Tally::default();
        let mut failed_clients = 0;
        for h in handles {
            match h.await? {
                Ok(t) => {
                    all.latencies_us.extend(t.latencies_us);
                    all.errors += t.errors;
                    all.encoded += t.encoded;
                }
                Err(_) => failed_clients += 1,
            }
        }
        samples.extend(sampler.await?);
        let elapsed = began.elapsed().as_secs_f64();
        all.latencies_us.sort_unstable();
        let done = all.latencies_us.len();
        println!(
            "{}",
            serde_json::json!({
                "label": a.label, "client": format!("{:?}", a.client).to_lowercase(), "clients": n, "seconds": elapsed, "requests": done,
                "throughput_rps": done as f64 / elapsed,
                "p1_ms": pct(&all.latencies_us, 0.01), "p10_ms": pct(&all.latencies_us, 0.1),
                "p50_ms": pct(&all.latencies_us, 0.5), "p90_ms": pct(&all.latencies_us, 0.9),
                "p99_ms": pct(&all.latencies_us, 0.99), "p999_ms": pct(&all.latencies_us, 0.999),
                "max_ms": pct(&all.latencies_us, 1.0),
                "errors": all.errors, "failed_clients": failed_clients, "encoded": all.encoded,
                "rss_kb_start": rss_start, "rss_kb_end": rss_kb(a.pid), "rss_kb_samples": samples,
            })
        );
    }
    Ok(())
}
