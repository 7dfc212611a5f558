//! Dynamic batching of encoder work. Requests that need a pair encoded put it on a bounded
//! queue and wait; one dedicated OS thread owns the [`RelationEncoder`] and runs forward
//! passes over whatever has queued up: everything already waiting, then more for at most
//! `max_wait`, bounded by `max_batch` pairs and a padded-token budget (the longest prompt
//! times the batch's size), as text-embeddings-inference does. Under load, pairs that arrive
//! during a forward pass form the next batch, so throughput grows with concurrency; when idle
//! a lone pair waits at most `max_wait`.
//!
//! A lone pair does not wait for company unless requests have been arriving together (the
//! last forward pass held more than one pair): one client at a time is answered at once.
//!
//! Each pair is screened as it is taken, by the tokenisation its place in the token budget
//! needs anyway: a pair whose prompt is too long for the model is refused alone, never put
//! in a batch, so it cannot fail the others' forward pass. A request answered whole
//! ([`Batcher::embed_all`]) stops there: its other pairs are answered with that refusal, not
//! encoded (those already encoded in an earlier batch, when the request was cut, are not
//! taken back).
//!
//! The forward pass is CPU-bound and runs on the rayon pool, so it must not occupy the async
//! runtime's workers: those keep answering stored-pair queries meanwhile. The CPU encoder
//! runs each batch on one thread with single-threaded kernels (no barriers between cores),
//! so the batcher cuts a batch into one length-sorted part per pool thread and encodes the
//! parts side by side: a batch handed over whole would keep one core busy and leave the
//! others idle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::error::{Error, Result};
use crate::relation::RelationEncoder;

/// How the batcher groups pairs into forward passes.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most pairs in one forward pass.
    pub max_batch: usize,
    /// Most padded tokens (longest prompt × pairs) in one forward pass.
    pub max_tokens: usize,
    /// Longest a pair waits for company once the encoder is free.
    pub max_wait: Duration,
    /// Most pairs waiting; beyond it requests are refused with 503 instead of queueing
    /// without bound.
    pub queue_capacity: usize,
}

/// Padded tokens allowed per pair of the default pair limit: 64, so that the token budget
/// does not cut batches of RelBERT's 25–40-token prompts below the pair limit (4,096 tokens
/// on the CPU, 32,768 on a GPU).
pub const TOKENS_PER_PAIR: usize = 64;

impl Default for BatchConfig {
    /// The CPU's settings ([`BatchConfig::for_device`] of the CPU).
    fn default() -> Self {
        BatchConfig::for_device(&candle_core::Device::Cpu)
    }
}

impl BatchConfig {
    /// The defaults for an encoder on `device`: on the CPU 64 pairs and 4,096 padded tokens
    /// per pass; on a GPU 512 pairs and 32,768 tokens, as `index build`'s batch
    /// ([`crate::device::default_batch_size`]): a GPU's pass over a small batch is bound by
    /// the host, so it costs nearly what a large one does (on an H200, MiniLM at bf16: 9,500
    /// pairs/s at batch 32 against 32,900 at 512, `benchmarks/gpu/README.md`), and batches
    /// capped at 64 would make a busy server run several passes where one would do. Both
    /// wait at most 2 ms for company and queue at most 4,096 pairs.
    pub fn for_device(device: &candle_core::Device) -> Self {
        let max_batch = crate::device::default_batch_size(device);
        BatchConfig {
            max_batch,
            max_tokens: max_batch * TOKENS_PER_PAIR,
            max_wait: Duration::from_millis(2),
            queue_capacity: 4096,
        }
    }
}

/// Why a pair could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The queue has no room for all of a request's pairs: the server is overloaded (HTTP
    /// 503). None of them was queued.
    #[error(
        "the encoder queue has no room for this request's {asked} pair(s): {waiting} of its \
         {capacity} places are taken; {}",
        if .asked > .capacity { "the request needs more places than the queue has (--queue): send fewer pairs" } else { "retry later" }
    )]
    Busy {
        /// Pairs waiting when the request was refused.
        waiting: usize,
        /// Pairs the request needed encoded.
        asked: usize,
        /// The most pairs that may wait (`--queue`).
        capacity: usize,
    },
    /// The encoder thread has stopped (HTTP 503).
    #[error("the encoder has stopped")]
    Stopped,
    /// The encoder refused this pair (HTTP 422), e.g. a prompt too long for mask pooling.
    #[error("{0}")]
    Rejected(String),
}

/// Why a pair was not encoded: the place in its request of the pair refused (its own, or a
/// sibling's that refused a request answered whole) and the refusal.
type Refusal = (usize, String);

/// A pair's answer: its vector or why it has none.
type Reply = std::result::Result<Vec<f32>, Refusal>;

struct Job {
    a: String,
    b: String,
    /// The pair's place in its request.
    at: usize,
    /// Shared by the pairs of a request answered whole: its first refusal, once there is one.
    whole: Option<Arc<OnceLock<Refusal>>>,
    reply: oneshot::Sender<Reply>,
}

impl Job {
    /// Answers the job with `refusal`, or with its request's if that came first (a request
    /// answered whole is refused by its first refused pair).
    fn refuse(self, refusal: Refusal) {
        let refusal = match &self.whole {
            Some(first) => first.get_or_init(|| refusal).clone(),
            None => refusal,
        };
        let _ = self.reply.send(Err(refusal));
    }

    /// Its request's refusal, if it is answered whole and another of its pairs was refused.
    fn refused(&self) -> Option<&Refusal> {
        self.whole.as_ref().and_then(|first| first.get())
    }
}

/// The handle requests use to get pairs encoded; cheap to share behind an `Arc`.
pub struct Batcher {
    tx: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    capacity: usize,
    dim: usize,
}

impl Batcher {
    /// Moves the encoder onto a new thread that serves the queue until every handle is gone.
    pub fn start(enc: RelationEncoder, cfg: BatchConfig, metrics: Arc<Metrics>) -> Result<Self> {
        let cfg = BatchConfig {
            max_batch: cfg.max_batch.max(1),
            queue_capacity: cfg.queue_capacity.max(1),
            ..cfg
        };
        warm_up(&enc)?;
        let (tx, rx) = mpsc::sync_channel::<Job>(cfg.queue_capacity);
        let depth = Arc::new(AtomicUsize::new(0));
        let dim = enc.dim();
        let thread_depth = depth.clone();
        let capacity = cfg.queue_capacity;
        std::thread::Builder::new()
            .name("relbert-encoder".into())
            .spawn(move || encoder_loop(enc, cfg, rx, thread_depth, metrics))
            .map_err(|e| Error::Internal(format!("starting the encoder thread: {e}")))?;
        Ok(Batcher {
            tx,
            depth,
            capacity,
            dim,
        })
    }

    /// The relation vectors' dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Pairs waiting for the encoder now.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Unit relation vectors of `pairs`, in order, sharing forward passes with whatever
    /// other requests are waiting; a pair the encoder refuses fails the request, and its
    /// other pairs are then not encoded.
    pub async fn embed(
        &self,
        pairs: Vec<(String, String)>,
    ) -> std::result::Result<Vec<Vec<f32>>, BatchError> {
        self.embed_all(pairs)
            .await?
            .map_err(|(_, msg)| BatchError::Rejected(msg))
    }

    /// [`Self::embed`], with a refusal saying which pair (its place in `pairs`) was refused.
    /// The inner `Err` is the first refused pair in the order pairs are taken, which is
    /// theirs in `pairs`.
    pub async fn embed_all(
        &self,
        pairs: Vec<(String, String)>,
    ) -> std::result::Result<std::result::Result<Vec<Vec<f32>>, (usize, String)>, BatchError> {
        let waiting = self.submit(pairs, Some(Arc::new(OnceLock::new())))?;
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            match rx.await {
                Ok(Ok(v)) => out.push(v),
                // The receivers dropped here tell the encoder thread to skip what is left.
                Ok(Err(refusal)) => return Ok(Err(refusal)),
                Err(_) => return Err(BatchError::Stopped),
            }
        }
        Ok(Ok(out))
    }

    /// Each pair's unit relation vector, in order, or the encoder's reason for refusing that
    /// pair: a refused pair fails alone, and the others are encoded together all the same.
    /// A full queue or a stopped encoder fails the whole request.
    pub async fn embed_each(
        &self,
        pairs: Vec<(String, String)>,
    ) -> std::result::Result<Vec<std::result::Result<Vec<f32>, String>>, BatchError> {
        let waiting = self.submit(pairs, None)?;
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            match rx.await {
                Ok(r) => out.push(r.map_err(|(_, msg)| msg)),
                Err(_) => return Err(BatchError::Stopped),
            }
        }
        Ok(out)
    }

    /// Queues `pairs` (all or none, see [`enqueue`]), each pair knowing its place and, for a
    /// request answered whole, sharing `whole`; returns where their answers arrive.
    fn submit(
        &self,
        pairs: Vec<(String, String)>,
        whole: Option<Arc<OnceLock<Refusal>>>,
    ) -> std::result::Result<Vec<oneshot::Receiver<Reply>>, BatchError> {
        let mut waiting = Vec::with_capacity(pairs.len());
        let jobs: Vec<Job> = pairs
            .into_iter()
            .enumerate()
            .map(|(at, (a, b))| {
                let (reply, rx) = oneshot::channel();
                waiting.push(rx);
                Job {
                    a,
                    b,
                    at,
                    whole: whole.clone(),
                    reply,
                }
            })
            .collect();
        enqueue(&self.tx, &self.depth, self.capacity, jobs)?;
        Ok(waiting)
    }
}

/// Queues a request's `jobs` all or none: places for all of them are reserved in `depth`
/// first, so a request refused for want of room leaves nothing behind (queued one by one,
/// a refused request's first pairs held places, and were encoded, for nobody). `depth`
/// counts pairs queued and not yet taken into a batch, so it is never below the channel's
/// length and a reserved place is always free in the channel.
fn enqueue(
    tx: &SyncSender<Job>,
    depth: &AtomicUsize,
    capacity: usize,
    jobs: Vec<Job>,
) -> std::result::Result<(), BatchError> {
    let asked = jobs.len();
    depth
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
            waiting
                .checked_add(asked)
                .filter(|&total| total <= capacity)
        })
        .map_err(|waiting| BatchError::Busy {
            waiting,
            asked,
            capacity,
        })?;
    let mut unsent = asked;
    for job in jobs {
        match tx.try_send(job) {
            Ok(()) => unsent -= 1,
            Err(e) => {
                depth.fetch_sub(unsent, Ordering::AcqRel);
                return Err(match e {
                    // Cannot happen while `depth` bounds the channel's length; answered as
                    // busy all the same rather than trusted.
                    TrySendError::Full(_) => BatchError::Busy {
                        waiting: depth.load(Ordering::Acquire),
                        asked,
                        capacity,
                    },
                    TrySendError::Disconnected(_) => BatchError::Stopped,
                });
            }
        }
    }
    Ok(())
}

/// One forward pass before the queue opens, so that a server which says ready can answer at
/// once. On a GPU the first pass compiles the encoder's kernels: 14–23 s on a fresh machine
/// (benchmarks/gpu/README.md), which used to land on the first request, past its time
/// limit, while `/v1/health` already said ready. On the CPU it costs one short pass. An
/// encoder that cannot run one pair could never answer, so that fails the start.
fn warm_up(enc: &RelationEncoder) -> Result<()> {
    let began = Instant::now();
    // Two prompts of different lengths, so that the pass pads one and runs the attention
    // mask's kernels as well, as requests' batches do.
    enc.embed(&[("warm", "up"), ("warming the kernels", "up")])
        .map_err(|e| {
            Error::Internal(format!(
                "the encoder's first forward pass (a warm-up) failed: {e}"
            ))
        })?;
    let secs = began.elapsed().as_secs_f64();
    if secs >= 1.0 {
        // Said, so that a start that waits here is not taken for a hung one.
        tracing::info!("encoder warmed up: its first forward pass took {secs:.1}s");
    } else {
        tracing::debug!("encoder warmed up: first forward pass in {secs:.3}s");
    }
    Ok(())
}

/// Unit vectors of `pairs` (whose prompts are `tokens` long), in order: on the CPU, cut
/// into one part per rayon thread, pairs of similar length together (less padding), the
/// parts encoded at once; elsewhere (a GPU) in one forward pass.
fn embed_spread(
    enc: &RelationEncoder,
    pairs: &[(&str, &str)],
    tokens: &[usize],
) -> Result<Vec<Vec<f32>>> {
    let threads = rayon::current_num_threads().max(1);
    if enc.encoder().cpu_model().is_none() || threads == 1 || pairs.len() == 1 {
        return enc.embed(pairs);
    }
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&i| (tokens.get(i).copied().unwrap_or(0), i));
    let per_part = pairs.len().div_ceil(threads);
    let parts: Vec<&[usize]> = order.chunks(per_part).collect();
    let encoded: Vec<Result<Vec<Vec<f32>>>> = parts
        .par_iter()
        .map(|part| {
            let chunk: Vec<(&str, &str)> = part.iter().map(|&i| pairs[i]).collect();
            enc.embed(&chunk)
        })
        .collect();
    let mut out = vec![Vec::new(); pairs.len()];
    for (part, vectors) in parts.iter().zip(encoded) {
        for (&i, v) in part.iter().zip(vectors?) {
            out[i] = v;
        }
    }
    Ok(out)
}

/// Prompt length in tokens, for the token budget, or the refusal of a pair whose prompt is
/// too long for the model (its request's, if that was refused already): such a pair is
/// answered at once and kept out of every batch, so its error cannot fail the others'
/// forward pass. A pair the tokenizer fails on otherwise counts as the model's limit: the
/// forward pass reports its error.
fn screen(enc: &RelationEncoder, job: &Job) -> std::result::Result<usize, Refusal> {
    if let Some(refusal) = job.refused() {
        return Err(refusal.clone());
    }
    match enc.tokenize(&[(job.a.as_str(), job.b.as_str())]) {
        Ok(t) => Ok(t.first().map_or(enc.max_tokens(), |t| t.ids.len())),
        Err(e @ Error::PromptTooLong { .. }) => Err((job.at, rejection(&e))),
        Err(_) => Ok(enc.max_tokens()),
    }
}

/// The next job from `take` that passes [`screen`], with its prompt's length; those refused
/// on the way are answered and their places in `depth` given back. `None` once `take` has
/// nothing more.
fn next_screened(
    enc: &RelationEncoder,
    depth: &AtomicUsize,
    mut take: impl FnMut() -> Option<Job>,
) -> Option<(Job, usize)> {
    loop {
        let job = take()?;
        match screen(enc, &job) {
            Ok(tokens) => return Some((job, tokens)),
            Err(refusal) => {
                depth.fetch_sub(1, Ordering::Relaxed);
                job.refuse(refusal);
            }
        }
    }
}

fn encoder_loop(
    enc: RelationEncoder,
    cfg: BatchConfig,
    rx: mpsc::Receiver<Job>,
    depth: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
) {
    let mut carried: Option<(Job, usize)> = None;
    // Whether requests have been arriving together: only then is waiting worth it.
    let mut concurrent = false;
    loop {
        let first = match carried.take() {
            Some(j) => j,
            None => match next_screened(&enc, &depth, || rx.recv().ok()) {
                Some(j) => j,
                None => return, // every handle dropped: the server is gone
            },
        };
        let wait = if concurrent {
            cfg.max_wait
        } else {
            Duration::ZERO
        };
        let deadline = Instant::now() + wait;
        let mut longest = first.1;
        // Each pair with its prompt's length in tokens.
        let mut batch = vec![first];
        while batch.len() < cfg.max_batch {
            // Whatever is queued already is taken without waiting; then up to the deadline.
            let next = next_screened(&enc, &depth, || match rx.try_recv() {
                Ok(j) => Some(j),
                Err(mpsc::TryRecvError::Disconnected) => None,
                Err(mpsc::TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        None
                    } else {
                        // Timed out or disconnected alike: the batch is complete.
                        rx.recv_timeout(deadline - now).ok()
                    }
                }
            });
            let Some((job, t)) = next else { break };
            if longest.max(t) * (batch.len() + 1) > cfg.max_tokens {
                carried = Some((job, t));
                break;
            }
            longest = longest.max(t);
            batch.push((job, t));
        }
        concurrent = batch.len() > 1;
        depth.fetch_sub(batch.len(), Ordering::Relaxed);
        // A client that gave up (timeout, closed connection) needs no forward pass, nor does
        // a pair of a request refused by a pair taken after it into this batch.
        let (refused, kept): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .filter(|(j, _)| !j.reply.is_closed())
            .partition(|(j, _)| j.refused().is_some());
        for (job, _) in refused {
            if let Some(refusal) = job.refused().cloned() {
                job.refuse(refusal);
            }
        }
        let batch = kept;
        if batch.is_empty() {
            continue;
        }
        metrics.encoder_batch(batch.len(), depth.load(Ordering::Relaxed));
        let started = Instant::now();
        let pairs: Vec<(&str, &str)> = batch
            .iter()
            .map(|(j, _)| (j.a.as_str(), j.b.as_str()))
            .collect();
        let tokens: Vec<usize> = batch.iter().map(|&(_, t)| t).collect();
        match embed_spread(&enc, &pairs, &tokens) {
            Ok(vectors) if vectors.len() == batch.len() => {
                for ((job, _), v) in batch.into_iter().zip(vectors) {
                    let _ = job.reply.send(Ok(v));
                }
            }
            // An error screening did not foresee: one bad pair must not fail the others, so
            // they are encoded one by one to find it (each a forward pass of its own).
            _ => {
                for (job, _) in batch {
                    // A request answered whole needs no more once one of its pairs failed.
                    if let Some(refusal) = job.refused().cloned() {
                        job.refuse(refusal);
                        continue;
                    }
                    metrics.encoder_batch(1, depth.load(Ordering::Relaxed));
                    let r = enc
                        .embed(&[(job.a.as_str(), job.b.as_str())])
                        .map_err(|e| rejection(&e))
                        .and_then(|mut v| v.pop().ok_or_else(|| "no vector".to_string()));
                    match r {
                        Ok(v) => {
                            let _ = job.reply.send(Ok(v));
                        }
                        Err(msg) => {
                            let at = job.at;
                            job.refuse((at, msg));
                        }
                    }
                }
            }
        }
        metrics.encoder_forward(started.elapsed());
    }
}

/// Why the encoder refused a pair, as an API client reads it: the command line's message
/// names the pair's place in a file and a flag (`--skip-long`), neither of which a request
/// has (the API names the pair's place in the request itself).
fn rejection(e: &Error) -> String {
    match e {
        Error::PromptTooLong {
            head, tail, limit, ..
        } => format!(
            "the prompt of ({head:?}, {tail:?}) is longer than the {limit}-token limit, so truncation \
             would cut into its words (or lose the mask token); shorten the words"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a test job's answer arrives.
    type Answer = oneshot::Receiver<Reply>;

    fn jobs(n: usize) -> (Vec<Job>, Vec<Answer>) {
        (0..n)
            .map(|i| {
                let (reply, rx) = oneshot::channel();
                let job = Job {
                    a: format!("a{i}"),
                    b: format!("b{i}"),
                    at: i,
                    whole: None,
                    reply,
                };
                (job, rx)
            })
            .unzip()
    }

    /// A request whose pairs do not all fit is refused whole: nothing of it is queued, the
    /// depth is what it was, and the message says the real depth and the request's size.
    #[test]
    fn a_request_is_queued_all_or_nothing() {
        let (tx, rx) = mpsc::sync_channel::<Job>(4);
        let depth = AtomicUsize::new(0);
        let (first, _keep_first) = jobs(2);
        assert!(enqueue(&tx, &depth, 4, first).is_ok());
        assert_eq!(depth.load(Ordering::Relaxed), 2);

        let (second, _keep_second) = jobs(3);
        let e = enqueue(&tx, &depth, 4, second).unwrap_err();
        let message = e.to_string();
        assert!(
            matches!(
                e,
                BatchError::Busy {
                    waiting: 2,
                    asked: 3,
                    capacity: 4
                }
            ),
            "{e:?}"
        );
        assert!(
            message.contains("3 pair(s)") && message.contains("2 of its 4"),
            "{message}"
        );
        assert_eq!(
            depth.load(Ordering::Relaxed),
            2,
            "the refused request holds no place"
        );
        assert_eq!(
            rx.try_iter().count(),
            2,
            "none of the refused request's pairs was queued"
        );

        // The room it did not take is there for a request that fits.
        depth.store(0, Ordering::Relaxed);
        let (third, _keep_third) = jobs(4);
        assert!(enqueue(&tx, &depth, 4, third).is_ok());
        assert_eq!(depth.load(Ordering::Relaxed), 4);
    }

    /// A request larger than the whole queue is refused, not half queued.
    #[test]
    fn a_request_larger_than_the_queue_is_refused() {
        let (tx, rx) = mpsc::sync_channel::<Job>(2);
        let depth = AtomicUsize::new(0);
        let (all, _keep) = jobs(3);
        let refused = enqueue(&tx, &depth, 2, all);
        assert!(matches!(
            refused,
            Err(BatchError::Busy {
                waiting: 0,
                asked: 3,
                capacity: 2
            })
        ));
        // A retry could never pass: the message does not say to retry.
        let said = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            said.contains("send fewer pairs") && !said.contains("retry"),
            "{said}"
        );
        assert_eq!(depth.load(Ordering::Relaxed), 0);
        assert_eq!(rx.try_iter().count(), 0);
    }

    /// The tiny BERT fixture: its prompts are limited to a few dozen tokens.
    fn tiny() -> RelationEncoder {
        tiny_with(crate::EncoderOptions::default())
    }

    /// The tiny fixture model loaded with `opts`.
    fn tiny_with(opts: crate::EncoderOptions) -> RelationEncoder {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        RelationEncoder::load(&dir, &opts).unwrap()
    }

    /// Two words whose prompt is over the tiny model's token limit.
    fn too_long() -> (String, String) {
        let w = "x ".repeat(45).trim_end().to_string();
        (w.clone(), w)
    }

    /// Six pairs of short words, with the over-long pair in place 2.
    fn with_one_too_long() -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = ["paris", "tokyo", "dog", "cat", "pen"]
            .iter()
            .map(|w| (w.to_string(), "thing".to_string()))
            .collect();
        pairs.insert(2, too_long());
        pairs
    }

    /// `name`'s value in the metrics' text.
    fn metric(metrics: &Metrics, name: &str) -> f64 {
        metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    /// Runs the encoder loop to its end over `pairs`, queued as one request (answered whole
    /// or pair by pair) before it starts, so that how they are batched does not depend on
    /// timing; returns each pair's answer and the metrics: pairs encoded (summed over the
    /// forward passes) and forward passes.
    fn run(pairs: &[(String, String)], whole: bool) -> (Vec<Reply>, f64, f64) {
        let enc = tiny();
        let (tx, rx) = mpsc::sync_channel::<Job>(64);
        let depth = Arc::new(AtomicUsize::new(0));
        let whole = whole.then(|| Arc::new(OnceLock::new()));
        let (jobs, mut answers): (Vec<Job>, Vec<Answer>) = pairs
            .iter()
            .enumerate()
            .map(|(at, (a, b))| {
                let (reply, rx) = oneshot::channel();
                let job = Job {
                    a: a.clone(),
                    b: b.clone(),
                    at,
                    whole: whole.clone(),
                    reply,
                };
                (job, rx)
            })
            .unzip();
        enqueue(&tx, &depth, 64, jobs).unwrap();
        drop(tx);
        let metrics = Arc::new(Metrics::new());
        encoder_loop(
            enc,
            BatchConfig::default(),
            rx,
            depth.clone(),
            metrics.clone(),
        );
        assert_eq!(depth.load(Ordering::Relaxed), 0, "every place given back");
        let replies = answers.iter_mut().map(|a| a.try_recv().unwrap()).collect();
        (
            replies,
            metric(&metrics, "relbert_encoder_batch_size_sum"),
            metric(&metrics, "relbert_encoder_batch_size_count"),
        )
    }

    /// An over-long pair among good ones fails alone, with the message a lone over-long pair
    /// gets, and the good ones are encoded together in one forward pass (as they were, one
    /// failed pass made every pair of the batch be encoded again one at a time).
    #[test]
    fn an_over_long_pair_fails_alone_and_the_rest_share_one_pass() {
        let pairs = with_one_too_long();
        let (replies, encoded, passes) = run(&pairs, false);
        let alone = tiny()
            .embed(&[too_long()])
            .map_err(|e| rejection(&e))
            .unwrap_err();
        for (i, r) in replies.iter().enumerate() {
            match r {
                Err((at, msg)) if i == 2 => {
                    assert_eq!(*at, 2);
                    assert_eq!(msg, &alone);
                    assert!(msg.contains("token limit"), "{msg}");
                }
                Ok(v) if i != 2 => assert_eq!(v.len(), tiny().dim()),
                other => panic!("pair {i}: {other:?}"),
            }
        }
        assert_eq!((encoded, passes), (5.0, 1.0), "five good pairs, one pass");
    }

    /// A request answered whole is refused by its over-long pair without a forward pass for
    /// the others: each answer names the refused pair's place.
    #[test]
    fn a_request_answered_whole_is_refused_before_any_encoding() {
        let pairs = with_one_too_long();
        let (replies, encoded, passes) = run(&pairs, true);
        for r in &replies {
            let (at, msg) = r.as_ref().unwrap_err();
            assert_eq!(*at, 2);
            assert!(msg.contains("token limit"), "{msg}");
        }
        assert_eq!((encoded, passes), (0.0, 0.0), "nothing was encoded");
    }

    /// An encoder that cannot encode a pair fails the start (found by a review: nothing
    /// showed that a failed warm-up is not ignored): a template whose prompts are all over
    /// the tiny model's token limit.
    #[test]
    fn an_encoder_that_cannot_encode_fails_the_start() {
        let enc = tiny_with(crate::EncoderOptions {
            template: Some(format!(
                "{} <subj> is the <mask> of <obj>",
                "x ".repeat(600)
            )),
            ..Default::default()
        });
        let err = match Batcher::start(enc, BatchConfig::default(), Arc::new(Metrics::new())) {
            Ok(_) => panic!("a start whose warm-up failed was taken"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("warm-up"), "{err}");
    }

    /// The CPU's defaults are the ones the serve benchmarks were measured at (64 pairs and
    /// 4,096 tokens a pass) and `index build`'s CPU batch.
    #[test]
    fn the_cpu_defaults_are_64_pairs_and_4096_tokens() {
        let cpu = BatchConfig::for_device(&candle_core::Device::Cpu);
        assert_eq!((cpu.max_batch, cpu.max_tokens), (64, 4096));
        assert_eq!(cpu.max_batch, crate::device::DEFAULT_CPU_BATCH);
        let d = BatchConfig::default();
        assert_eq!(
            (d.max_batch, d.max_tokens, d.queue_capacity),
            (64, 4096, 4096)
        );
        assert_eq!(d.max_wait, Duration::from_millis(2));
    }

    /// The start's warm-up pass is the encoder's own, not a request's: a fresh queue has
    /// counted no forward pass, and its first request is answered as usual.
    #[test]
    fn the_warm_up_is_not_counted_as_a_request_pass() {
        let metrics = Arc::new(Metrics::new());
        let batcher = Batcher::start(tiny(), BatchConfig::default(), metrics.clone()).unwrap();
        assert_eq!(metric(&metrics, "relbert_encoder_batch_size_count"), 0.0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let v = rt
            .block_on(batcher.embed(vec![("paris".into(), "france".into())]))
            .unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(metric(&metrics, "relbert_encoder_batch_size_count"), 1.0);
    }

    /// Through the handle: `embed_all` names the refused pair, `embed` refuses with its
    /// message, and `embed_each` answers every pair in its place.
    #[test]
    fn the_handle_answers_as_each_request_asks() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let batcher =
            Batcher::start(tiny(), BatchConfig::default(), Arc::new(Metrics::new())).unwrap();
        let pairs = with_one_too_long();
        rt.block_on(async {
            let (at, msg) = batcher.embed_all(pairs.clone()).await.unwrap().unwrap_err();
            assert!(at == 2 && msg.contains("token limit"), "{at}: {msg}");
            match batcher.embed(pairs.clone()).await {
                Err(BatchError::Rejected(m)) => assert_eq!(m, msg),
                other => panic!("{other:?}"),
            }
            let each = batcher.embed_each(pairs.clone()).await.unwrap();
            assert_eq!(each.len(), 6);
            assert_eq!(each[2].as_ref().unwrap_err(), &msg);
            assert!(each.iter().enumerate().all(|(i, r)| r.is_ok() == (i != 2)));
            // The good pairs alone are encoded.
            let good = batcher
                .embed_all(pairs[..2].to_vec())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(good.len(), 2);
        });
    }
}
