//! Streaming relation vectors into a collection: `relbert index export --qdrant` (from a
//! local index) and `relbert index build --qdrant` (straight from the encoder).
//!
//! Points go in batches; several batches are in flight at once (the calling thread reads and
//! packs the next batch while the client runtime sends the others), each retried with backoff
//! on another node when one fails. Ids come from the pairs, so whatever was sent before a
//! crash or a failed batch is overwritten, never doubled, by a rerun; the export ends with an
//! exact count of the collection against the source.

use std::collections::VecDeque;

use qdrant_client::qdrant::{
    CreateFieldIndexCollectionBuilder, FieldType, PointStruct, UpsertPointsBuilder,
};
use qdrant_client::Payload;

use super::settings::CollectionSettings;
use super::{point_id, CollectionRecord, Connection, LAYOUT_VERSION};
use crate::error::Result;
use crate::indexing::same_function;
use crate::query::pair_words;

/// How an export sends points.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Points per upsert request.
    pub batch: usize,
    /// Upsert requests in flight at once.
    pub parallel: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        // 256 x 768-d f32 is 0.8 MB per request, well under gRPC's limits; 4 in flight keep
        // both client cores and the server busy (benchmarks/scale/).
        ExportOptions {
            batch: 256,
            parallel: 4,
        }
    }
}

/// What an export did.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// Points sent (the source's pairs).
    pub sent: u64,
    /// Points in the collection at the end (exact count).
    pub count: u64,
    /// Whether the collection was created by this run.
    pub created: bool,
    /// Seconds spent sending.
    pub secs: f64,
}

/// One pair with its vector, ready to send.
pub struct PairPoint<'a> {
    /// First term.
    pub head: &'a str,
    /// Second term.
    pub tail: &'a str,
    /// Label, if any.
    pub label: Option<&'a str>,
    /// The unit-length relation vector.
    pub vector: Vec<f32>,
}

/// The point relbert writes for a pair (see the module layout in [`super`]).
pub fn to_point(p: PairPoint<'_>) -> PointStruct {
    let mut payload = Payload::with_capacity(4);
    payload.insert("head", p.head);
    payload.insert("tail", p.tail);
    if let Some(l) = p.label {
        payload.insert("label", l);
    }
    let words: Vec<String> = pair_words(p.head, p.tail).collect();
    payload.insert("words", words);
    PointStruct::new(point_id(p.head, p.tail), p.vector, payload)
}

/// Makes `conn`'s collection ready for `record`'s vectors: created with `settings` when
/// absent (with the keyword index on `words`), else checked to hold the same encoder's
/// vectors of the same width from the same source. Returns whether it was created.
pub fn prepare(
    conn: &Connection,
    record: &CollectionRecord,
    settings: &CollectionSettings,
) -> Result<bool> {
    settings.validate()?;
    let c = conn.clone();
    let record = record.clone();
    let request = settings.create_request(conn.collection(), &record)?;
    conn.block_on(async move {
        let created = if c.exists().await? {
            false
        } else {
            c.call("creating the collection", |q, _| {
                let r = request.clone();
                async move { q.create_collection(r).await }
            })
            .await?;
            true
        };
        // Idempotent: a run killed between creating and indexing finishes it here.
        c.call("indexing the words field", |q, name| async move {
            q.create_field_index(
                CreateFieldIndexCollectionBuilder::new(name, "words", FieldType::Keyword)
                    .wait(true),
            )
            .await
        })
        .await?;
        match c.record().await? {
            None if created => Err(c.remote(
                "the server dropped the collection metadata relbert records its model in \
                 (Qdrant 1.16 or later keeps it); use a newer server",
            )),
            None => Err(c.remote(
                "the collection exists and was not written by relbert (no relbert metadata); \
                 choose another --collection",
            )),
            Some(have) if !same_function(&have.encoder, &record.encoder) => Err(c.remote(format!(
                "the collection holds vectors of another encoder ({} sha256 {}, {}), not {} \
                 sha256 {}; choose another --collection",
                have.encoder.model,
                have.encoder.weights_sha256,
                have.encoder.aggregation,
                record.encoder.model,
                record.encoder.weights_sha256
            ))),
            Some(have) if have.dim != record.dim => Err(c.remote(format!(
                "the collection holds {}-d vectors, the source {}-d",
                have.dim, record.dim
            ))),
            Some(have) if have.source != record.source => Err(c.remote(format!(
                "the collection holds the points of {}, not of {}; rerunning the same export \
                 resumes it, another source needs another --collection",
                have.source, record.source
            ))),
            Some(_) => Ok(created),
        }
    })?
}

/// Sends batches of points with up to `opts.parallel` requests in flight.
pub struct Sender {
    conn: Connection,
    opts: ExportOptions,
    in_flight: VecDeque<(u64, tokio::task::JoinHandle<Result<()>>)>,
    done: u64,
}

impl Sender {
    /// A sender into `conn`'s collection.
    pub fn new(conn: &Connection, opts: &ExportOptions) -> Self {
        Sender {
            conn: conn.clone(),
            opts: ExportOptions {
                batch: opts.batch.max(1),
                parallel: opts.parallel.max(1),
            },
            in_flight: VecDeque::new(),
            done: 0,
        }
    }

    /// Points per batch.
    pub fn batch(&self) -> usize {
        self.opts.batch
    }

    /// Points confirmed written so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Queues one batch, first waiting for the oldest when `parallel` are in flight.
    pub fn send(&mut self, points: Vec<PointStruct>) -> Result<()> {
        while self.in_flight.len() >= self.opts.parallel {
            self.wait_oldest()?;
        }
        let n = points.len() as u64;
        let c = self.conn.clone();
        let handle = self.conn.spawn(async move {
            c.call("upserting points", |q, name| {
                // Waiting for the write to be applied costs nothing measurable here
                // (benchmarks/scale/) and makes the final count exact.
                let b = UpsertPointsBuilder::new(name, points.clone()).wait(true);
                async move { q.upsert_points(b).await }
            })
            .await
            .map(|_| ())
        });
        self.in_flight.push_back((n, handle));
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        if let Some((n, h)) = self.in_flight.pop_front() {
            let joined = self.conn.block_on(h)?;
            joined.map_err(|e| self.conn.remote(format!("an upsert task failed: {e}")))??;
            self.done += n;
        }
        Ok(())
    }

    /// Waits for every batch in flight.
    pub fn finish(mut self) -> Result<u64> {
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        Ok(self.done)
    }
}

/// Exports every pair of `index` into `conn`'s collection (created with `settings` if absent)
/// and checks the final count. `on_points` is told how many points are confirmed written.
pub fn export_index(
    index: &relbert_index::Index,
    conn: &Connection,
    settings: &CollectionSettings,
    opts: &ExportOptions,
    on_points: &dyn Fn(u64),
) -> Result<ExportReport> {
    let record = CollectionRecord {
        layout: LAYOUT_VERSION,
        encoder: index.meta().encoder.clone(),
        dim: index.dim() as u32,
        source: format!("index {}", index.id()),
    };
    let created = prepare(conn, &record, settings)?;
    let started = std::time::Instant::now();
    let n = index.count();
    let mut sender = Sender::new(conn, opts);
    let batch = sender.batch();
    let mut row = 0;
    while row < n {
        let end = (row + batch).min(n);
        let mut points = Vec::with_capacity(end - row);
        for r in row..end {
            let p = index.pair(r)?;
            points.push(to_point(PairPoint {
                head: p.head,
                tail: p.tail,
                label: p.label,
                vector: index.vector(r)?.into_owned(),
            }));
        }
        sender.send(points)?;
        on_points(sender.done());
        row = end;
    }
    let sent = sender.finish()?;
    on_points(sent);
    let secs = started.elapsed().as_secs_f64();
    let c = conn.clone();
    let count = conn.block_on(async move { c.count().await })??;
    if count != n as u64 {
        return Err(conn.remote(format!(
            "after the export the collection holds {count} points, the index {} {n}",
            index.dir().display()
        )));
    }
    Ok(ExportReport {
        sent,
        count,
        created,
        secs,
    })
}
