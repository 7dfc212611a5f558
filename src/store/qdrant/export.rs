//! Streaming relation vectors into a collection: `relbert index export --qdrant` (from a
//! local index) and `relbert index build --qdrant` (straight from the encoder).
//!
//! Points go in batches; several batches are in flight at once (the calling thread reads or
//! encodes and packs the next batch while the client runtime sends the others), each retried
//! with backoff on another node when one fails. A load ends with an exact count of the
//! collection against the source.
//!
//! **Resuming.** Ids come from the pairs, so whatever was sent before a crash or a failed
//! batch is overwritten, never doubled, by a rerun. On top of that a [`Loader`] checkpoints:
//! every [`CHECKPOINT_EVERY`] it records in the collection's metadata how many rows of the
//! source are confirmed written ([`super::LoadProgress`]; batches are confirmed in order, so
//! that is a prefix), and a rerun of the same export or build starts after them instead of
//! re-sending (or re-encoding) everything. A rerun that finds points of the source missing
//! at the end clears the checkpoint, so the next one sends everything again; a rerun of a
//! load that had finished looks its points up first and sends the missing ones alone. Points
//! `relbert index remove` took out after the source was loaded are neither (see
//! [`super::remove`]): recorded by the removal, they are never sent again by this source and
//! count as removed, not missing. Points that are not the source's (another tool's, or
//! written by hand) are counted apart, by id, and only warned of: a rerun could not remove
//! them.
//!
//! **Several sources.** A collection is made from one source (a local index, or a pair file
//! encoded straight into it) and refuses another by default. With `--add`
//! ([`ExportOptions::add`]) a source of the same pair function, at the same number format,
//! is added beside it: a grown index (`relbert index add` gives it a new id), another slice
//! of a corpus, another machine's encoder. Each added source is recorded under its own
//! metadata key and keeps its own checkpoint, so loaders of different sources can run at
//! once; it is recorded with its load's first checkpoint, in one update, once every check
//! that can refuse the load has passed, so a refused `--add` leaves the collection as it
//! was ([`Prepared::adds`]). Pairs two sources share are one point (same id), and it stays
//! the point first written: a load into a collection that holds another source's points asks
//! which of each batch's ids are there already and writes only the others (an upsert
//! replaces a whole point, label included, so writing them would let the last writer win).
//! Nothing is deleted: a pair that one source dropped stays. The final check of a shared
//! collection counts this source's points by id, since the collection's total counts every
//! source, and says how many points are not the source's: a warning when every other source
//! was exported from the same directory (pairs `index remove` took out of the index since),
//! information otherwise.
//!
//! **Bulk loading.** While it streams, a load turns the collection's vector indexing off
//! (indexing threshold 0, from its first batch: a load with nothing to send leaves it as it
//! is) and turns it back on at the end, as Qdrant advises for bulk
//! uploads: otherwise each node rebuilds HNSW graphs of segments that are still growing, on
//! the same cores that take the writes. Points written meanwhile are searched exactly (their
//! segments have no graph yet), so queries stay correct during and right after a load; the
//! graph is built in the background once the load ends (`benchmarks/scale/`). A load that
//! fails, or is stopped by a signal, first marks its checkpoint ended (no longer alive to
//! the others: `LoadMark::end`), then turns indexing back on if it turned it off and can;
//! one that is killed leaves it off until a rerun completes. Any of them leaves it off while
//! a load of another source into the collection looks alive: that load turns it on as it
//! finishes (the last load to end turns it on).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qdrant_client::qdrant::{
    point_id::PointIdOptions, CreateFieldIndexCollectionBuilder, FieldType, GetPointsBuilder,
    PointId, PointStruct, UpdateMode, UpsertPointsBuilder,
};
use qdrant_client::{Payload, QdrantError};

use super::settings::CollectionSettings;
use super::{
    added_source_key, metadata_json, point_id, progress_key, unix_now, AddedSource,
    CollectionRecord, CollectionState, Connection, Hedge, LoadProgress, IDS_PER_COUNT,
    LAYOUT_VERSION, PROGRESS_KEY,
};
use crate::error::{Error, Result};
use crate::indexing::{
    dtype_name, encode_chunks, encoder_info, function_difference, same_function,
};
use crate::pairs::{records_identity_as_read, PairRecord};
use crate::query::{pair_words, with_nfc_forms};
use crate::relation::RelationEncoder;

/// How often a load records its checkpoint in the collection's metadata.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

/// The longest a running load goes without rewriting its checkpoint, confirmed rows or none
/// (its time, [`super::LoadProgress::at`], shows it alive: [`super::LIVE_LOAD_WINDOW`]).
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// How an export sends points.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Points per upsert request.
    pub batch: usize,
    /// Upsert requests in flight at once.
    pub parallel: usize,
    /// Turn the collection's vector indexing off while loading (see the module docs); off
    /// only to measure what that saves.
    pub defer_indexing: bool,
    /// Add this source's points to a collection made from another source of the same pair
    /// function (see the module docs); without it such a collection is refused.
    pub add: bool,
    /// How often an unfinished load rewrites its checkpoint with the time, sending or not
    /// ([`HEARTBEAT`]; a test shows the heartbeat with a shorter one, without waiting that
    /// long).
    pub heartbeat: Duration,
}

impl ExportOptions {
    /// Refuses options a load cannot run with, naming the field, before anything is
    /// written: a heartbeat of zero (it would rewrite the checkpoint without pause) or one
    /// of [`super::LIVE_LOAD_WINDOW`] or more (the load's checkpoint would look stale
    /// between beats, so another load beside it would take it for a dead one).
    pub fn validate(&self) -> Result<()> {
        // Half the window: a beat's write may be retried, and its age is judged by another
        // client's clock.
        let most = super::LIVE_LOAD_WINDOW / 2;
        if self.heartbeat.is_zero() || self.heartbeat > most {
            return Err(Error::InvalidArgument {
                flag: "ExportOptions.heartbeat".into(),
                message: format!(
                    "{:?}: must be above zero and at most {} s (a running load's checkpoint \
                     is taken for a dead one's once it is {} s old)",
                    self.heartbeat,
                    most.as_secs(),
                    super::LIVE_LOAD_WINDOW.as_secs()
                ),
            });
        }
        Ok(())
    }
}

impl Default for ExportOptions {
    fn default() -> Self {
        // 256 x 768-d f32 is 0.8 MB per request, well under gRPC's limits; 4 in flight keep
        // both client cores and the server busy (benchmarks/scale/).
        ExportOptions {
            batch: 256,
            parallel: 4,
            defer_indexing: true,
            add: false,
            heartbeat: HEARTBEAT,
        }
    }
}

/// Which of a new collection's layout settings ([`CollectionSettings`]: shards, replication,
/// quantisation, float16 originals) were asked for: an existing collection keeps its own,
/// and a load warns of each one asked for that differs. A setting left at its default was
/// not asked for (an `--f16` collection drew the warning from every load that did not say
/// `--f16`), so the command line says which flags it was given. A new collection's shard
/// count not asked for is the cluster's (one shard per node), and a replication not asked
/// for on a cluster of several nodes is warned of ([`prepare`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutFlags {
    /// `--shards`.
    pub shards: bool,
    /// `--replication`.
    pub replication: bool,
    /// `--quantization`.
    pub quantization: bool,
    /// `--f16` (or `--f32`, for an export).
    pub f16: bool,
}

impl LayoutFlags {
    /// Every setting asked for: what a library caller means by the settings it passes.
    pub const ALL: LayoutFlags = LayoutFlags {
        shards: true,
        replication: true,
        quantization: true,
        f16: true,
    };
}

/// What an export or a build into a collection did.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// Points sent by this run.
    pub sent: u64,
    /// Pairs of this source not written because the collection held them already: from
    /// another source (a shared collection keeps each pair's first point, label included),
    /// or every pair, when an earlier run of the same load had finished it.
    pub held: u64,
    /// Rows of the source skipped because an earlier, interrupted run's checkpoint says they
    /// are written (0 when that run had finished: see [`Self::held`]).
    pub resumed: u64,
    /// Points in the collection at the end (exact count).
    pub count: u64,
    /// Whether the collection was created by this run.
    pub created: bool,
    /// Sources whose points the collection holds: 1, or more after `--add`.
    pub sources: usize,
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
    payload.insert(
        "words",
        with_nfc_forms(pair_words(p.head, p.tail).collect()),
    );
    PointStruct::new(point_id(p.head, p.tail), p.vector, payload)
}

/// What [`prepare`] found.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Whether this run created the collection.
    pub created: bool,
    /// The source the collection was made from (this one when it was just created).
    pub first: String,
    /// The source this run adds beside the first (`--add`, not added before), which
    /// [`Loader::start`] records together with the load's first checkpoint; `None` for the
    /// first source and one added before. Not recorded by [`prepare`]: checks after its own
    /// may still refuse the load, and a source recorded without a checkpoint marks the
    /// collection unfinished (found by a review: a refused `--add` left it so, for good).
    pub adds: Option<AddedSource>,
}

/// Makes `conn`'s collection ready for `record`'s vectors: created with `settings` when
/// absent (with the keyword index on `words`; its shard count left to the cluster, one shard
/// per node, when `asked` does not ask for it), else checked to hold the same encoder's
/// vectors, at the same number format and of the same width, from the same source or, with
/// `add` (or an earlier `add` of this source), beside another source's (recorded by the load:
/// [`Prepared::adds`]). An existing collection keeps its layout: each setting of `asked` that
/// differs from it is warned of.
pub fn prepare(
    conn: &Connection,
    record: &CollectionRecord,
    settings: &CollectionSettings,
    asked: LayoutFlags,
    add: bool,
) -> Result<Prepared> {
    prepare_for(conn, record, settings, asked, add, None)
}

/// [`prepare`], refused with `unrecordable` (nothing written) when the collection does not
/// exist: `record` cannot be recorded as it is (its model's path is not UTF-8), only
/// compared with an existing collection's record.
fn prepare_for(
    conn: &Connection,
    record: &CollectionRecord,
    settings: &CollectionSettings,
    asked: LayoutFlags,
    add: bool,
    unrecordable: Option<Error>,
) -> Result<Prepared> {
    settings.validate()?;
    let c = conn.clone();
    let record = record.clone();
    let request = settings.create_request_for(conn.collection(), &record, asked.shards)?;
    let wanted = settings.clone();
    conn.block_on(async move {
        let existed = c.exists().await?;
        if let (false, Some(e)) = (existed, unrecordable) {
            return Err(e);
        }
        let created = !existed
            && c.call("creating the collection", Hedge::Never, |q, _| {
                let r = request.clone();
                async move {
                    match q.create_collection(r).await {
                        Ok(_) => Ok(true),
                        // Another loader created it since the check (loaders of different
                        // sources may start at once): it is then loaded into as an existing
                        // collection, its record checked as for any other.
                        Err(e) if already_exists(&e) => Ok(false),
                        Err(e) => Err(e),
                    }
                }
            })
            .await
            .map_err(|e| creation_failed(e, &wanted, asked.shards))?;
        // The record is checked before anything is changed: a refused command must leave
        // someone else's collection as it was (the words index used to be made first).
        let prepared = check_record(&c, &record, created, !existed, add).await?;
        if created {
            say_placement(&c, &wanted, asked).await;
        } else {
            c.precision(record.dim).await?;
            warn_kept_layout(&c, &wanted, asked).await?;
        }
        // Idempotent: a run killed between creating and indexing finishes it here.
        c.call(
            "indexing the words field",
            Hedge::Never,
            |q, name| async move {
                q.create_field_index(
                    CreateFieldIndexCollectionBuilder::new(name, "words", FieldType::Keyword)
                        .wait(true),
                )
                .await
            },
        )
        .await?;
        Ok(prepared)
    })?
}

/// The error of a creation that failed after its retries, saying what may have happened: a
/// cluster that did not confirm a new collection in time (its consensus is slow with many
/// shards) may still make it in the background, and a rerun then loads into it. `shards`:
/// whether the shard count was asked for (else the cluster makes one per node).
fn creation_failed(e: Error, wanted: &CollectionSettings, shards: bool) -> Error {
    match e {
        Error::Remote { target, message } => {
            let shards = if shards {
                format!("{} shard(s)", wanted.shards)
            } else {
                "one shard per node".to_string()
            };
            Error::Remote {
                target,
                message: format!(
                    "{message}; the cluster may still be creating the collection ({shards} x \
                     {} cop(y/ies)) in the background: once it lists the collection, a rerun \
                     loads into it",
                    wanted.replication
                ),
            }
        }
        e => e,
    }
}

/// Says how a collection just created was placed, from one read of its shard placement
/// (advisory: a node that cannot say yet is not asked again, and nothing fails for it):
/// - the shards the cluster made, one per node, when their count was not `asked` for
///   ([`CollectionSettings::create_request_for`]);
/// - a warning when it holds fewer copies of a shard than `--replication` asked for: a node
///   holds at most one copy of a shard, so a cluster of fewer nodes records the factor and
///   keeps fewer copies (found by an audit: `--replication 4` on 3 nodes was accepted
///   without a word);
/// - a warning when `--replication` was not given and the shards are on several nodes: each
///   point then lives on one node only (found by a review: a cluster's collection was made
///   so without a word), naming `--replication 2`.
async fn say_placement(c: &Connection, wanted: &CollectionSettings, asked: LayoutFlags) {
    // A layout given in full with one copy of each shard: nothing to say.
    if asked.shards && asked.replication && wanted.replication <= 1 {
        return;
    }
    let info = c
        .call(
            "reading the collection's shard placement",
            Hedge::Read,
            |q, name| async move { q.collection_cluster_info(name).await },
        )
        .await;
    let info = match info {
        Ok(i) => i,
        // Only the layout left to the cluster is worth a word: how it turned out is unknown.
        // Said, not warned: on a single node (which cannot be told from here without the
        // placement) the advice does not apply (found by a review).
        Err(e) if !asked.replication => {
            tracing::info!(
                "{}: the new collection's shard placement could not be read ({e}): on a \
                 cluster of several nodes, without --replication each point lives on one node \
                 only (`--replication 2` keeps a second copy)",
                c.target()
            );
            return;
        }
        Err(e) => {
            tracing::debug!("shard placement not read: {e}");
            return;
        }
    };
    // No shard shown: a node that has not applied the creation yet.
    let Some(fewest) = fewest_copies(&info) else {
        return;
    };
    if !asked.shards {
        tracing::info!(
            "{}: the cluster made {} shard(s), one per node (--shards not given)",
            c.target(),
            info.shard_count
        );
    }
    let replication = wanted.replication;
    if fewest < replication as usize {
        tracing::warn!(
            "{}: --replication {replication} asked for {replication} copies of each shard, \
             and the cluster placed {fewest} (a node holds at most one copy of a shard: the \
             cluster has fewer nodes than copies asked for); Qdrant records the factor, and \
             the collection has {fewest} cop(y/ies) until nodes join and it makes the others",
            c.target()
        );
    }
    let nodes = nodes_holding(&info);
    if !asked.replication && replication <= 1 && nodes > 1 {
        tracing::warn!(
            "{}: the collection's shards are spread over {nodes} nodes with one copy each \
             (--replication not given: 1), so each point lives on one node only, and while \
             that node is down its points are out of reach; `--replication 2` keeps a second \
             copy of each shard on another node (given when a collection is made: with \
             another --collection name, or with this one once it is deleted)",
            c.target()
        );
    }
}

/// The fewest copies any shard of a collection has, from a node's view of its placement;
/// `None` when the view shows no shard (a node that has not applied the creation yet).
fn fewest_copies(info: &qdrant_client::qdrant::CollectionClusterInfoResponse) -> Option<usize> {
    let mut copies = HashMap::<u32, usize>::new();
    let ids = info
        .local_shards
        .iter()
        .map(|s| s.shard_id)
        .chain(info.remote_shards.iter().map(|s| s.shard_id));
    for id in ids {
        *copies.entry(id).or_default() += 1;
    }
    copies.values().min().copied()
}

/// How many nodes hold a shard of a collection, from a node's view of its placement (that
/// node, when it holds one, and each other node holding one).
fn nodes_holding(info: &qdrant_client::qdrant::CollectionClusterInfoResponse) -> usize {
    let local = (!info.local_shards.is_empty()).then_some(info.peer_id);
    local
        .into_iter()
        .chain(info.remote_shards.iter().map(|s| s.peer_id))
        .collect::<HashSet<u64>>()
        .len()
}

/// Whether `e` refuses to create a collection because one of that name exists.
fn already_exists(e: &QdrantError) -> bool {
    match e {
        QdrantError::ResponseError { status } => {
            status.code() == tonic::Code::AlreadyExists
                || (status.code() == tonic::Code::InvalidArgument
                    && status.message().contains("already exists"))
        }
        _ => false,
    }
}

/// How often, and how far apart, a collection just created (by this run or a loader that
/// raced it) is read again while a node does not show it or its record yet: the creation
/// reaches each node through the cluster's consensus, and a read may go to one that has not
/// applied it.
const SETTLE_TRIES: usize = 40;
const SETTLE_EVERY: Duration = Duration::from_millis(250);

/// relbert's record in the collection, read again for a while when a node does not show it
/// yet: a node applies metadata through the cluster's consensus, so one asked right after
/// the record was written through another node may not have it. With `fresh` (the
/// collection was created a moment ago, here or by another loader) for longer, and also
/// while the node does not show the collection itself; otherwise as [`QdrantStore::open`]
/// waits ([`super::RECHECK_RECORD`] more looks).
///
/// [`QdrantStore::open`]: super::QdrantStore::open
async fn read_record(c: &Connection, fresh: bool) -> Result<Option<CollectionRecord>> {
    let (looks, every) = if fresh {
        (SETTLE_TRIES, SETTLE_EVERY)
    } else {
        (super::RECHECK_RECORD + 1, super::RECHECK_UNFINISHED)
    };
    let shown = |r: &Result<Option<CollectionRecord>>| match r {
        Ok(found) => found.is_some(),
        Err(Error::NoCollection { .. }) => !fresh,
        Err(_) => true,
    };
    let what = format!("{}: reading relbert's record", c.target());
    super::patiently(&what, looks, every, shown, || c.record()).await
}

/// The refusal of an existing collection that shows no relbert record: another tool's (or
/// one made on a server too old to keep collection metadata).
fn foreign(c: &Connection) -> Error {
    c.refused(
        "the collection exists and was not written by relbert (no relbert metadata); \
         choose another --collection",
    )
}

/// Warns when a setting of `wanted`'s layout that was `asked` for (`--shards`,
/// `--replication`, `--quantization`, `--f16`) differs from the existing collection's:
/// those only shape a new collection, and were ignored without a word.
async fn warn_kept_layout(
    c: &Connection,
    wanted: &CollectionSettings,
    asked: LayoutFlags,
) -> Result<()> {
    use qdrant_client::qdrant::{vectors_config::Config, Datatype};
    let info = c
        .call(
            "reading the collection info",
            Hedge::Read,
            |q, name| async move { q.collection_info(name).await },
        )
        .await?;
    let Some(config) = info.result.and_then(|r| r.config) else {
        return Ok(());
    };
    // relbert sets quantisation for the whole collection (settings::create_request).
    let quantized = config.quantization_config.is_some();
    let Some(params) = config.params else {
        return Ok(());
    };
    let shards = params.shard_number;
    let replication = params.replication_factor.unwrap_or(1);
    let f16 = match params.vectors_config.and_then(|v| v.config) {
        Some(Config::Params(p)) => p.datatype == Some(Datatype::Float16 as i32),
        _ => false,
    };
    let want_quantized = wanted.quantization == super::settings::Quantization::Int8;
    let differ = kept_flags(
        asked,
        [
            shards != wanted.shards,
            replication != wanted.replication,
            quantized != want_quantized,
            f16 != wanted.f16,
        ],
        wanted.f16,
    );
    if !differ.is_empty() {
        tracing::warn!(
            "{} {} a new collection only; {} exists and keeps its layout: {shards} \
             shard(s), replication {replication}, quantization {}, {} originals",
            differ.join(", "),
            if differ.len() == 1 { "shapes" } else { "shape" },
            c.collection(),
            if quantized { "int8" } else { "none" },
            if f16 { "f16" } else { "f32" }
        );
    }
    Ok(())
}

/// The flags asked for whose setting differs from the existing collection's (`differs`:
/// shards, replication, quantisation, float16 originals), by name; `f16`: the originals'
/// format asked for (`--f16`, or an export's `--f32`).
fn kept_flags(asked: LayoutFlags, differs: [bool; 4], f16: bool) -> Vec<&'static str> {
    let asked = [
        asked.shards,
        asked.replication,
        asked.quantization,
        asked.f16,
    ];
    let originals = if f16 { "--f16" } else { "--f32" };
    ["--shards", "--replication", "--quantization", originals]
        .into_iter()
        .zip(asked.into_iter().zip(differs))
        .filter(|(_, (a, d))| *a && *d)
        .map(|(flag, _)| flag)
        .collect()
}

/// Checks that an existing collection holds `record`'s encoder and width, from the same
/// source or (with `add`, or an earlier `add` of this source) beside another; an added source
/// is named in [`Prepared::adds`], for the load to record, and nothing is written. `fresh`:
/// the collection did not exist when this run looked (created by it, or by a loader that
/// raced it), so its record may take a moment to show on every node.
/// Refusals are [`Error::Refused`]: rerunning the same command cannot get past them.
async fn check_record(
    c: &Connection,
    record: &CollectionRecord,
    created: bool,
    fresh: bool,
    add: bool,
) -> Result<Prepared> {
    {
        match read_record(c, fresh).await? {
            None if created => Err(c.refused(
                "the server dropped the collection metadata relbert records its model in \
                 (Qdrant 1.16 or later keeps it); use a newer server",
            )),
            None => Err(foreign(c)),
            Some(have) if !same_function(&have.encoder, &record.encoder) => {
                Err(c.refused(format!(
                    "the collection holds vectors of another encoder: {}; choose another \
                     --collection",
                    function_difference(&have.encoder, &record.encoder).join("; ")
                )))
            }
            // Readers may encode at another format, writers may not: the record names one
            // format for every point (found by an audit: an f32 build or export `--add`ed
            // into a bf16 collection, or an interrupted bf16 build resumed at f32, mixed
            // them under the bf16 record).
            Some(have) if dtype_name(&have.encoder) != dtype_name(&record.encoder) => {
                let (kept, offered) = (dtype_name(&have.encoder), dtype_name(&record.encoder));
                Err(c.refused(format!(
                    "the collection holds vectors computed at {kept}, and {} are computed \
                     at {offered}: one collection holds one number format; load a source \
                     computed at {kept} (`index build --dtype {kept}`, or an index built \
                     so), or choose another --collection",
                    describe_source(&record.source)
                )))
            }
            Some(have) if have.dim != record.dim => Err(c.refused(format!(
                "the collection holds {}-d vectors, the source {}-d; choose another \
                 --collection",
                have.dim, record.dim
            ))),
            Some(have) if have.source != record.source => {
                let key = added_source_key(&record.source);
                let known = c.metadata_text(&key).await?.is_some();
                if !known && !add {
                    // Found by an audit: "rerunning the same load resumes it" was offered
                    // for a source that was gone (an index `index add` had replaced), so no
                    // rerun could finish its load, which then marked the collection
                    // unfinished for good.
                    let state = c.state().await?;
                    let first = state.unfinished.iter().any(|u| u.source == have.source);
                    let unfinished = if first {
                        format!(
                            "; the load of {} did not finish: rerunning it from that source \
                             finishes it, and when that source is gone (its index replaced, \
                             its pair file changed) `relbert index remove --collection {} \
                             --abandoned-load '{}'` gives it up (the points it wrote stay)",
                            have.source,
                            c.collection(),
                            have.source
                        )
                    } else {
                        String::new()
                    };
                    let (holds, changed) = another_source(&have, record, &state.paths);
                    let kept = if changed {
                        format!(
                            "; nothing is deleted, so pairs `index remove` took out of the \
                             index stay until `relbert index remove --collection {} --pairs \
                             FILE` takes them out of the collection",
                            c.collection()
                        )
                    } else {
                        String::new()
                    };
                    return Err(c.refused(format!(
                        "{holds}: --add adds this source's points beside them (same model; \
                         pairs both hold are written once{kept}), or choose another \
                         --collection{unfinished}"
                    )));
                }
                // Recorded by the load, with its first checkpoint ([`Prepared::adds`]).
                let adds = (!known).then(|| AddedSource {
                    source: record.source.clone(),
                    path: record.path.clone(),
                });
                Ok(Prepared {
                    created,
                    first: have.source,
                    adds,
                })
            }
            Some(have) => Ok(Prepared {
                created,
                first: have.source,
                adds: None,
            }),
        }
    }
}

/// What a collection holding the points of `have`'s source, and not of `record`'s, holds,
/// for the refusal of a load without `--add`: both ids, and the directories the collection
/// records (`paths`, by source) and this load reads; and whether the collection records an
/// export of this load's directory (it has changed since). An index's id changes with each
/// `index add` or `index remove`, so two ids alone did not tell a user that the collection
/// was exported from this same directory before it changed (found by a review).
fn another_source(
    have: &CollectionRecord,
    record: &CollectionRecord,
    paths: &HashMap<String, String>,
) -> (String, bool) {
    let from = |source: &str| match paths.get(source) {
        Some(p) => format!(" (exported from {p})"),
        None => String::new(),
    };
    let this = match &record.path {
        Some(p) => format!(" ({p})"),
        None => String::new(),
    };
    let mut said = format!(
        "the collection holds the points of {}{}, not of {}{this}",
        have.source,
        from(&have.source),
        record.source
    );
    let earlier = same_directory(paths.keys(), paths, record.path.as_deref());
    if let Some(p) = record.path.as_ref().filter(|_| !earlier.is_empty()) {
        said.push_str(&format!(
            "; {p} was exported into it before, as {}, and has changed since (`index add` \
             and `index remove` give an index a new id)",
            earlier.join(", ")
        ));
    } else if record.path.is_some() && paths.is_empty() && have.source.starts_with("index ") {
        said.push_str(
            "; the collection does not record which directory its source was exported from \
             (an index's id changes with each `index add` or `index remove`, so it may be \
             this one as it was)",
        );
    }
    (said, !earlier.is_empty())
}

/// Sends batches of points with up to `opts.parallel` requests in flight.
pub struct Sender {
    conn: Connection,
    opts: ExportOptions,
    /// Each batch's source rows and points, and its task, which answers how many of the
    /// points were held already.
    in_flight: VecDeque<(u64, u64, tokio::task::JoinHandle<Result<u64>>)>,
    /// Source rows confirmed: their points written, or none needed ([`Sender::send_rows`]).
    done: u64,
    /// Points confirmed written (or held already).
    points: u64,
    /// Write only points whose id the collection does not hold yet ([`Sender::keep_held`]).
    keep_held: bool,
    held: u64,
}

/// A point id as text, to compare the ids sent with those a retrieve answers.
pub(crate) fn id_text(id: &PointId) -> Option<String> {
    match id.point_id_options.as_ref()? {
        PointIdOptions::Uuid(u) => Some(u.clone()),
        PointIdOptions::Num(n) => Some(n.to_string()),
    }
}

/// The points of `points` whose ids `conn`'s collection does not hold yet, and how many it
/// held: one retrieve of the batch's ids, without payloads or vectors.
async fn not_held(conn: &Connection, points: Vec<PointStruct>) -> Result<(Vec<PointStruct>, u64)> {
    let ids: Vec<PointId> = points.iter().filter_map(|p| p.id.clone()).collect();
    let got = conn
        .call("checking which points are held", Hedge::Scan, |q, name| {
            let b = GetPointsBuilder::new(name, ids.clone())
                .with_payload(false)
                .with_vectors(false);
            async move { q.get_points(b).await }
        })
        .await?;
    let held: HashSet<String> = got
        .result
        .iter()
        .filter_map(|p| p.id.as_ref().and_then(id_text))
        .collect();
    if held.is_empty() {
        return Ok((points, 0));
    }
    let before = points.len();
    let fresh: Vec<PointStruct> = points
        .into_iter()
        .filter(|p| {
            p.id.as_ref()
                .and_then(id_text)
                .is_none_or(|id| !held.contains(&id))
        })
        .collect();
    let n = (before - fresh.len()) as u64;
    Ok((fresh, n))
}

/// The write of `points` into `collection`. With `keep_held`, insert-only (Qdrant 1.18
/// honours it: `qdrant_cluster::the_cluster_keeps_a_point_written_insert_only`): the
/// retrieve before it ([`not_held`]) leaves out the points held already, but another loader
/// of another source may write one of them between that retrieve and this write, and a plain
/// upsert would then replace its point (label included); the server checks an insert-only
/// write when it applies it, so the first point stays.
fn upsert_request(
    collection: String,
    points: Vec<PointStruct>,
    keep_held: bool,
) -> UpsertPointsBuilder {
    // Waiting for the write to be applied costs nothing measurable here (benchmarks/scale/)
    // and makes the final count exact.
    let b = UpsertPointsBuilder::new(collection, points).wait(true);
    if keep_held {
        b.update_mode(UpdateMode::InsertOnly)
    } else {
        b
    }
}

impl Sender {
    /// A sender into `conn`'s collection.
    pub fn new(conn: &Connection, opts: &ExportOptions) -> Self {
        Sender {
            conn: conn.clone(),
            opts: ExportOptions {
                batch: opts.batch.max(1),
                parallel: opts.parallel.max(1),
                ..opts.clone()
            },
            in_flight: VecDeque::new(),
            done: 0,
            points: 0,
            keep_held: false,
            held: 0,
        }
    }

    /// From now on, sends only points whose ids the collection does not hold yet: a source
    /// added to a collection another source wrote keeps that source's points (and labels)
    /// for pairs both hold, as a local `index add` keeps the first pair. An upsert replaces a
    /// whole point, so writing them would make the last writer win.
    pub fn keep_held(&mut self) {
        self.keep_held = true;
    }

    /// Points not written because the collection held them already ([`Self::keep_held`]).
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Points per batch.
    pub fn batch(&self) -> usize {
        self.opts.batch
    }

    /// Source rows confirmed so far (see [`Self::send_rows`]).
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Points confirmed written so far, those the collection held already included.
    pub fn points(&self) -> u64 {
        self.points
    }

    /// Queues one batch of one point per source row, first waiting for the oldest when
    /// `parallel` are in flight.
    pub fn send(&mut self, points: Vec<PointStruct>) -> Result<()> {
        let rows = points.len() as u64;
        self.send_rows(points, rows)
    }

    /// Queues the points of the next `rows` source rows (fewer points than rows when some
    /// rows need none: another spelling of an earlier row's pair), first waiting for the
    /// oldest batch when `parallel` are in flight. The rows count as confirmed when the
    /// batch is, so a checkpoint stays a prefix of the source.
    pub fn send_rows(&mut self, points: Vec<PointStruct>, rows: u64) -> Result<()> {
        while self.in_flight.len() >= self.opts.parallel {
            self.wait_oldest()?;
        }
        let n = points.len() as u64;
        let c = self.conn.clone();
        let keep_held = self.keep_held;
        let handle = self.conn.spawn(async move {
            let (points, held) = if keep_held {
                not_held(&c, points).await?
            } else {
                (points, 0)
            };
            if points.is_empty() {
                return Ok(held);
            }
            c.call("upserting points", Hedge::Write, |q, name| {
                let b = upsert_request(name, points.clone(), keep_held);
                async move { q.upsert_points(b).await }
            })
            .await
            .map(|_| held)
        });
        self.in_flight.push_back((rows, n, handle));
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        if let Some((rows, n, h)) = self.in_flight.pop_front() {
            let joined = self.conn.block_on(h)?;
            let held =
                joined.map_err(|e| self.conn.remote(format!("an upsert task failed: {e}")))??;
            self.done += rows;
            self.points += n;
            self.held += held;
        }
        Ok(())
    }

    /// Waits for every batch in flight; returns the points confirmed written (or held).
    pub fn wait_all(&mut self) -> Result<u64> {
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        Ok(self.points)
    }
}

/// A load into a collection: a [`Sender`] that checkpoints its confirmed rows and keeps the
/// collection's indexing off while it runs (see the module docs).
pub struct Loader {
    sender: Sender,
    conn: Connection,
    /// Rows confirmed by earlier runs (skipped by this one).
    base: u64,
    /// Whether an earlier run finished the load (its checkpoint is at the total).
    complete: bool,
    saved: u64,
    saved_at: Instant,
    /// This load's checkpoint, as its writers share it (the heartbeat, [`Self::checkpoint`]
    /// and the end of a failed or stopped load, also from a signal: [`LoadMark`]), with the
    /// source loaded, its rows and the checkpoint's key.
    mark: Arc<LoadMark>,
    /// The task that rewrites the checkpoint with a new time ([`ExportOptions::heartbeat`])
    /// while the load is unfinished; `None` once stopped, or for a load an earlier run
    /// finished.
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    /// Ids `index remove` took out of the collection after this source was loaded
    /// ([`super::RemovalRecord::removed_from`]): not sent again.
    skip: HashSet<String>,
    /// Points left out of the batches sent because their ids are in [`Self::skip`].
    skipped: u64,
    /// A load an earlier run had finished whose collection lacks points of it that no
    /// removal took out: those ids, the only ones this run sends ([`Self::lost`]).
    lost: Option<HashSet<String>>,
    /// A load an earlier run had finished, checked at the start with nothing lost: the
    /// source's distinct pairs and the ids missing (all removed), which the final check
    /// takes rather than look every id up again.
    checked: Option<(u64, Vec<String>)>,
    /// Whether the collection's indexing is still to be turned off, before the first batch
    /// is sent ([`ExportOptions::defer_indexing`]): a load with nothing to send leaves it as
    /// it is (found by a review: it was turned off at the start, for nothing, and a kill
    /// before the end left it off).
    defer_indexing: bool,
    /// The directory of the index loaded ([`CollectionRecord::path`]).
    path: Option<String>,
}

/// The checkpoint a load last wrote, shared by its writers ([`Loader::mark`]).
#[derive(Debug)]
struct Beat {
    /// Rows of the last checkpoint written: what a heartbeat writes again.
    saved: u64,
    /// Set once the load stops its heartbeat: a beat that then gets the lock writes nothing.
    stopped: bool,
    /// Set once the checkpoint says the load has ended ([`LoadMark::end`]): nothing of this
    /// load writes it again. Never set from the start, not even for a load an earlier run
    /// finished: its final check, finding points lost, still resets the checkpoint (found
    /// by review Q: it was, and the reset was skipped, so the rerun trusted the loss).
    ended: bool,
}

/// A load's checkpoint as every writer of it shares it: the load ([`Loader::checkpoint`]),
/// its heartbeat, and the end of a load that failed or was stopped by a signal
/// ([`Connection::restore_indexing_within`], from the signal watcher's thread). Each
/// writes under the lock of [`Beat`], so that none lands after the checkpoint that ends the
/// load.
#[derive(Debug)]
pub(crate) struct LoadMark {
    /// The metadata key of the checkpoint ([`progress_key`]; [`PROGRESS_KEY`] for the
    /// collection's first source).
    key: String,
    /// The source loaded.
    source: String,
    /// Rows the source holds.
    total: u64,
    beat: tokio::sync::Mutex<Beat>,
}

impl LoadMark {
    /// The checkpoint of this load at `rows`, written at `at` (`None`: marked ended).
    fn progress(&self, rows: u64, at: Option<u64>) -> LoadProgress {
        LoadProgress {
            source: self.source.clone(),
            rows,
            total: self.total,
            abandoned: false,
            at,
        }
    }

    /// Marks the load ended unfinished (it failed, or a signal stopped it): stops the
    /// heartbeat and rewrites the checkpoint with its rows and no time
    /// ([`LoadProgress::at`]), so that loads of other sources
    /// ([`CollectionState::live_load_besides`]) and `--abandoned-load` no longer take it for
    /// a live one (review R21: a failed load's checkpoint looked alive until it was
    /// [`super::LIVE_LOAD_WINDOW`] old, so a load beside it left indexing off for it, for
    /// good when it was the last). The rows stay, so a rerun resumes. Writes once; nothing
    /// when the checkpoint says the load finished (at its total: a load an earlier run
    /// finished, which never looks alive).
    pub(crate) async fn end(&self, c: &Connection) -> Result<()> {
        let mut beat = self.beat.lock().await;
        beat.stopped = true;
        if beat.ended {
            return Ok(());
        }
        if beat.saved >= self.total {
            beat.ended = true;
            return Ok(());
        }
        c.set_metadata(&self.key, &self.progress(beat.saved, None))
            .await?;
        beat.ended = true;
        Ok(())
    }
}

/// The end of a load that failed or was stopped by a signal (`mark`: its checkpoint): the
/// checkpoint is marked ended first ([`LoadMark::end`]), then the rule of a load that
/// finishes applies to the collection's indexing ([`indexing_on_after_failed_load`]).
/// Marked before the look, as a finishing load writes its final checkpoint before its last
/// look, so that of two loads ending at once the later look sees the other ended. Fails
/// only when indexing, to be turned on, could not be.
pub(crate) async fn end_failed_load(c: &Connection, mark: Option<&LoadMark>) -> Result<()> {
    let looked = end_and_look(c, mark).await.map_err(|e| e.to_string());
    if indexing_on_after_failed_load(looked, c.turned_indexing_off()) {
        c.set_indexing(true).await?;
    }
    Ok(())
}

/// Whether the collection's indexing is to be turned on at the end of a load that failed or
/// was stopped by a signal, given what [`end_and_look`] found (`looked`; an error in words)
/// and whether this connection turned indexing off (`turned_off`): the rule of a load that
/// finishes, if this connection turned it off. Left off while a load of another source
/// looks alive ([`live_besides_on_every_node`]; that load, ending, turns it on), which is
/// said ([`say_indexing_left_off`]); turned on otherwise. When the mark or the look failed
/// (logged), it is turned on as before R21 (this load's checkpoint may still look alive to
/// the others, which would then leave it off for good). The one decision of
/// [`end_failed_load`] and of a signal's restore
/// ([`Connection::restore_indexing_within`]).
pub(crate) fn indexing_on_after_failed_load(
    looked: std::result::Result<Option<(String, u64)>, String>,
    turned_off: bool,
) -> bool {
    match looked {
        Ok(Some((other, ago))) => {
            say_indexing_left_off(&other, ago);
            false
        }
        Ok(None) => turned_off,
        Err(e) if turned_off => {
            tracing::warn!("marking the load ended, or looking for other loads: {e}");
            true
        }
        Err(e) => {
            tracing::warn!("marking the load ended in its checkpoint: {e}");
            false
        }
    }
}

/// [`end_failed_load`] up to its decision, which the caller makes: `mark` ended, then, if
/// this connection turned indexing off, the load of another source that looks alive (its
/// source, and how many seconds ago its checkpoint was written), for which indexing stays
/// off; `None` when it is to be turned on, or was not turned off by this connection.
/// Split off so that a signal's restore, given a deadline, can keep part of it for turning
/// indexing on when this part runs out of time ([`Connection::restore_indexing_within`]).
pub(crate) async fn end_and_look(
    c: &Connection,
    mark: Option<&LoadMark>,
) -> Result<Option<(String, u64)>> {
    let source = match mark {
        Some(m) => {
            m.end(c).await?;
            m.source.as_str()
        }
        None => return Ok(None),
    };
    if !c.turned_indexing_off() {
        return Ok(None);
    }
    live_besides_on_every_node(c, &c.state().await?, source).await
}

/// Says that the collection's indexing is left off for `other`'s load, whose checkpoint was
/// written `ago` seconds ago: what every load that ends beside a live one says.
fn say_indexing_left_off(other: &str, ago: u64) {
    tracing::info!(
        "the collection's indexing is left off: the load of {other} into it is still running \
         (its checkpoint was written {ago} s ago), and turns it back on when it finishes (or, \
         if it was killed, the next load to finish does once its checkpoint is {} s old)",
        super::LIVE_LOAD_WINDOW.as_secs()
    );
}

/// Rewrites `mark`'s checkpoint every `every` with the time it is written, until
/// the load stops it: a load that sends nothing for a while (a slow encoder on a chunk, a
/// final check looking every id up) shows it is alive ([`super::LIVE_LOAD_WINDOW`]; found by
/// a review: the time was only rewritten when a batch was sent, and a live build whose
/// chunks took over 2 minutes to encode was given up). A failed write is only logged: the
/// load's own writes report their failures.
async fn heartbeat(conn: Connection, mark: Arc<LoadMark>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let beat = mark.beat.lock().await;
        if beat.stopped || beat.ended {
            return;
        }
        let p = mark.progress(beat.saved, Some(unix_now()));
        if let Err(e) = conn.set_metadata(&mark.key, &p).await {
            tracing::debug!("rewriting the load's checkpoint with its time: {e}");
        }
    }
}

/// The longest a load waits for the checkpoint of another load of its own source, which
/// looks alive, to be rewritten (`same_source_ended`): the longest a running load goes
/// without rewriting it (the most [`ExportOptions::heartbeat`] may be, half of
/// [`super::LIVE_LOAD_WINDOW`]), and a write's retries besides.
pub const SAME_SOURCE_WAIT: Duration = Duration::from_secs(70);

/// Whether `p` is the checkpoint of an unfinished load of `source` that may still be
/// running at `now` (written within [`super::LIVE_LOAD_WINDOW`]: [`super::live_for`]).
fn unfinished_and_alive(p: &LoadProgress, source: &str, now: u64) -> bool {
    p.source == source && !p.abandoned && p.rows < p.total && super::live_for(p.at, now).is_some()
}

/// Whether `q`, a node's copy of the checkpoint `p` is, was written after `p`. Certain when
/// that node showed `p` at an earlier look (`showed_p`) and now shows another: a node
/// applies the cluster's writes in their order. (Each URL of `--qdrant` is taken for one
/// node, as for a cluster its nodes are named; a URL in front of a load balancer may reach
/// another node at each look, and one behind could then show an earlier end of the same
/// rows for a moment.) Otherwise only what the two say orders
/// them: a `q` with a time by its time, then its rows; one without (marked ended,
/// [`LoadMark::end`], or given up) only by more rows of the same total (found by a review:
/// any ended-looking copy was taken for the end of `p`'s load, though a node behind may
/// show an earlier write, such as the end of the run `p`'s load resumed from, which has
/// `p`'s rows, as the end of `p`'s own load has when it wrote none after `p`).
fn written_after(p: &LoadProgress, q: &LoadProgress, showed_p: bool) -> bool {
    if q == p {
        return false;
    }
    if showed_p {
        return true;
    }
    if q.source != p.source {
        return false;
    }
    match q.at {
        Some(_) => (q.at, q.rows) > (p.at, p.rows),
        None => q.total == p.total && q.rows > p.rows,
    }
}

/// What one look at every node's copy of a checkpoint says of the load that wrote `p`
/// ([`same_source_look`]).
#[derive(Debug, PartialEq)]
enum SameSourceLook {
    /// A node shows a write after `p` that ends the load (failed, stopped, finished, given
    /// up, or no longer alive): that write.
    Ended(LoadProgress),
    /// A node shows a write after `p` by a load still running: that write.
    Running(LoadProgress),
    /// No node shows a write after `p`.
    NotRewritten,
}

/// The decision of one look of [`same_source_ended`] at `seen`, each node's copy of the
/// checkpoint `p` is (in the order of the nodes; `None` for a node that did not answer),
/// given the nodes that showed `p` at an earlier look (`showed_p`, in the same order) and
/// `now` in Unix seconds: only a write after `p` ([`written_after`]) tells whether its load
/// ended. A write of a running load counts before an ended one: two writes after `p` may be
/// that load's end and a new load started since, beside which this one must not run.
fn same_source_look(
    p: &LoadProgress,
    seen: &[Option<Option<LoadProgress>>],
    showed_p: &[bool],
    now: u64,
) -> SameSourceLook {
    let later: Vec<&LoadProgress> = seen
        .iter()
        .enumerate()
        .filter_map(|(node, q)| {
            let q = q.as_ref()?.as_ref()?;
            written_after(p, q, showed_p.get(node).copied().unwrap_or(false)).then_some(q)
        })
        .collect();
    if let Some(q) = later
        .iter()
        .find(|q| unfinished_and_alive(q, &p.source, now))
    {
        return SameSourceLook::Running((*q).clone());
    }
    match later.first() {
        Some(q) => SameSourceLook::Ended((*q).clone()),
        None => SameSourceLook::NotRewritten,
    }
}

/// Two loads of one source share one checkpoint ([`progress_key`]), which neither may
/// write under the other (found by review R21: a rerun started beside a live load of its
/// source, or a second export of one index, resumed from the first's checkpoint and both
/// wrote it, each its own rows and the one finishing last its verdict, and the first to
/// finish turned indexing on under the other). Given `p`, such a checkpoint that looks
/// alive, this watches it on every node, [`super::RECHECK_UNFINISHED`] apart: rewritten
/// by a load still running, this load is refused, naming it; rewritten as ended (failed,
/// stopped, finished or given up), the new checkpoint is given back; not rewritten until
/// [`SAME_SOURCE_WAIT`] after it was written, its load is taken for a killed one and `p`
/// is given back (a load rewrites it at least every heartbeat).
fn same_source_ended(
    conn: &Connection,
    key: &str,
    p: LoadProgress,
) -> Result<Option<LoadProgress>> {
    // Each node's copy in node order, and after them, when no node answered within the
    // hedge (all busy after a bulk upload), one read with a write's patience, as
    // `progress_on_every_node` falls back to: without it every look saw nothing, and the
    // wait ran out and took a live load for a killed one (found by a review). That read is
    // no node's (`showed_p` never marks it); its failure refuses the load.
    let read = || -> Result<(usize, Vec<Option<Option<LoadProgress>>>)> {
        let (c, k) = (conn.clone(), key.to_string());
        conn.block_on(async move {
            let mut seen = c.progress_by_node(&k).await?;
            let nodes = seen.len();
            if seen.iter().all(Option::is_none) {
                seen.push(Some(c.progress(&k).await?));
            }
            Ok::<_, crate::error::Error>((nodes, seen))
        })?
    };
    let (nodes, mut seen) = read()?;
    // The newest of that load's writes any node shows is the one to wait on (found by
    // review Q: `p`, read from a node behind, made a load killed since look alive when a
    // later write of it was waited on).
    let source = p.source.clone();
    let p = seen
        .iter()
        .flatten()
        .flatten()
        .filter(|q| q.source == source && q.at.is_some())
        .fold(p, |newest, q| {
            if (q.at, q.rows) > (newest.at, newest.rows) {
                q.clone()
            } else {
                newest
            }
        });
    if !unfinished_and_alive(&p, &source, unix_now()) {
        return Ok(Some(p));
    }
    let age = Duration::from_secs(unix_now().abs_diff(p.at.unwrap_or(0)));
    let wait = SAME_SOURCE_WAIT.saturating_sub(age);
    tracing::info!(
        "a load of {} into the collection wrote its checkpoint {} s ago ({} of {} rows): \
         waiting up to {} s to see whether it is still running (two loads of one source \
         would share that checkpoint)",
        p.source,
        age.as_secs(),
        p.rows,
        p.total,
        wait.as_secs()
    );
    let started = Instant::now();
    // The first look is at the read above: another node may show the load ended (a write
    // without a time, which the newest above leaves out). One showing the end with `p`'s
    // rows is told from an earlier end only once a node that showed `p` shows it.
    let mut showed_p = vec![false; nodes];
    loop {
        match same_source_look(&p, &seen, &showed_p, unix_now()) {
            SameSourceLook::Ended(q) => return Ok(Some(q)),
            SameSourceLook::Running(q) => {
                let ago = super::live_for(q.at, unix_now()).unwrap_or_default();
                return Err(conn.refused(format!(
                    "a load of {} into the collection is running now (its checkpoint, at {} \
                     of {} rows, was rewritten {} s ago): a second load of the same source \
                     would write the same checkpoint; wait for that load to finish (it \
                     writes the same points), or stop it first (a rerun then resumes after \
                     its checkpoint); this run wrote no point",
                    q.source,
                    q.rows,
                    q.total,
                    ago.as_secs()
                )));
            }
            SameSourceLook::NotRewritten => {}
        }
        if started.elapsed() >= wait {
            tracing::info!(
                "the checkpoint of the load of {} was not rewritten: that load is taken for \
                 one that was killed, and this one resumes it",
                p.source
            );
            return Ok(Some(p));
        }
        for (shown, q) in showed_p.iter_mut().zip(&seen) {
            *shown |= q.as_ref().and_then(Option::as_ref) == Some(&p);
        }
        std::thread::sleep(super::RECHECK_UNFINISHED);
        seen = read()?.1;
    }
}

/// The source's distinct pairs among rows `0..expected` (ids by `ids`) and the ids of those
/// the collection lacks: looked up [`IDS_PER_COUNT`] a request, every replica asked
/// ([`Connection::held_ids`]), so a point one replica lacks is missing.
fn missing_of(conn: &Connection, expected: u64, ids: &IdsOf<'_>) -> Result<(u64, Vec<String>)> {
    let (mut distinct, mut missing) = (0, Vec::new());
    let mut start = 0;
    while start < expected {
        let end = (start + IDS_PER_COUNT as u64).min(expected);
        let chunk = ids(start, end)?;
        distinct += chunk.len() as u64;
        let (c, wanted) = (conn.clone(), chunk.clone());
        let held = conn.block_on(async move { c.held_ids(&wanted).await })??;
        missing.extend(chunk.into_iter().filter(|id| !held.contains(id)));
        start = end;
    }
    Ok((distinct, missing))
}

/// The ids of `missing` that no removal after `source` was loaded explains (`skip`: its
/// removed ids, updated). While some are not explained, the removal record is read again
/// for a few seconds ([`super::patiently`]): a removal records its ids before it deletes
/// them, but the record reaches a node through the cluster's consensus, and the deletes
/// may show on it first.
fn unexplained(
    conn: &Connection,
    source: &str,
    missing: &[String],
    skip: &mut HashSet<String>,
) -> Result<Vec<String>> {
    let left = |skip: &HashSet<String>| -> Vec<String> {
        missing
            .iter()
            .filter(|id| !skip.contains(*id))
            .cloned()
            .collect()
    };
    if left(skip).is_empty() {
        return Ok(Vec::new());
    }
    let (c, source, wanted) = (conn.clone(), source.to_string(), left(skip));
    let what = format!("{}: reading the removal record", conn.target());
    *skip = conn.block_on(async move {
        let shown = |r: &Result<HashSet<String>>| match r {
            Ok(s) => wanted.iter().all(|id| s.contains(id)),
            Err(_) => true,
        };
        super::patiently(
            &what,
            super::RECHECK_RECORD + 1,
            super::RECHECK_UNFINISHED,
            shown,
            || async { Ok(c.removal_record().await?.removed_from(&source)) },
        )
        .await
    })??;
    Ok(left(skip))
}

impl Loader {
    /// Starts loading `total` rows of `record.source` into `conn`'s collection (prepared
    /// already): reads the checkpoint of an interrupted run of the same source and the ids
    /// removed since the source was loaded (never sent again); indexing is turned off when
    /// the first batch is sent. The caller skips the first [`Self::resumed`] rows. For a
    /// load an earlier run finished, looks up the source's points (ids by `ids`, as
    /// [`Self::finish`] takes them): those missing that no removal took out are
    /// [`Self::lost`], the only ones to send.
    pub fn start(
        conn: &Connection,
        record: &CollectionRecord,
        prepared: &Prepared,
        opts: &ExportOptions,
        total: u64,
        ids: &IdsOf<'_>,
    ) -> Result<Self> {
        opts.validate()?;
        conn.loading(true);
        let started = Self::start_loading(conn, record, prepared, opts, total, ids);
        if started.is_err() {
            // The Loader that would clear them on drop was never made.
            conn.set_load_mark(None);
            conn.loading(false);
        }
        started
    }

    /// [`Self::start`], once the connection is noted as loading.
    fn start_loading(
        conn: &Connection,
        record: &CollectionRecord,
        prepared: &Prepared,
        opts: &ExportOptions,
        total: u64,
        ids: &IdsOf<'_>,
    ) -> Result<Self> {
        let c = conn.clone();
        let key = progress_key(&prepared.first, &record.source);
        let k = key.clone();
        let (progress, others) = conn.block_on(async move {
            let p = c.progress(&k).await?;
            let others = c.added_sources().await?;
            Ok::<_, crate::error::Error>((p, others))
        })??;
        let progress = match progress {
            Some(p) if unfinished_and_alive(&p, &record.source, unix_now()) => {
                same_source_ended(conn, &key, p)?
            }
            p => p,
        };
        let base = match &progress {
            Some(p) if p.source == record.source && p.total == total => p.rows.min(total),
            _ => 0,
        };
        // A checkpoint at the total is only written once a load's final count agreed
        // (`finish`): the load finished, nothing was interrupted.
        let complete = total > 0 && base == total;
        let mark = Arc::new(LoadMark {
            key,
            source: record.source.clone(),
            total,
            beat: tokio::sync::Mutex::new(Beat {
                saved: base,
                stopped: false,
                ended: false,
            }),
        });
        // Recorded before the first point is sent, so that a load killed before its first
        // checkpoint still leaves the collection marked unfinished (opening it warns), and
        // with this run's time, so that it is not given up as a dead one while it runs. A
        // finished load's checkpoint is left as it is: nothing will be interrupted.
        let same = progress.as_ref().is_some_and(|p| {
            LoadProgress {
                at: None,
                ..p.clone()
            } == mark.progress(base, None)
        });
        // An added source is recorded in the same update ([`Prepared::adds`]): once every
        // check that can refuse the load has passed, and never without a checkpoint (found by
        // a review: recorded while the collection was checked, a refused or interrupted
        // `--add` left a source without one, which marks the collection unfinished).
        if !(same && complete) || prepared.adds.is_some() {
            let mut entries = vec![(
                mark.key.clone(),
                metadata_json(&mark.progress(base, Some(unix_now())))?,
            )];
            if let Some(added) = &prepared.adds {
                entries.push((added_source_key(&added.source), metadata_json(added)?));
            }
            let c = conn.clone();
            conn.block_on(async move { c.set_metadata_together(entries).await })??;
            if let Some(added) = &prepared.adds {
                tracing::info!(
                    "adding {} to the collection beside {}",
                    added.source,
                    prepared.first
                );
            }
        }
        // Shared from the first write on, so that a signal, or a failure below, ends the
        // checkpoint as it ends a running load's (found by review Q: one failing between the
        // two left it looking alive, and a load of another source beside it left indexing
        // off for it).
        conn.set_load_mark(Some(mark.clone()));
        let started = Self::start_marked(
            conn, record, opts, ids, progress, others, base, complete, &mark,
        );
        if started.is_err() {
            end_failed_blocking(conn, &mark);
        }
        started
    }

    /// The rest of [`Self::start_loading`], once the checkpoint is written and `mark` shares
    /// it: fails with the checkpoint left for the caller to end.
    #[allow(clippy::too_many_arguments)]
    fn start_marked(
        conn: &Connection,
        record: &CollectionRecord,
        opts: &ExportOptions,
        ids: &IdsOf<'_>,
        progress: Option<LoadProgress>,
        others: Vec<String>,
        base: u64,
        complete: bool,
        mark: &Arc<LoadMark>,
    ) -> Result<Self> {
        let (key, total) = (&mark.key, mark.total);
        let c = conn.clone();
        let removals = conn.block_on(async move { c.removal_record().await })??;
        let mut skip = removals.removed_from(&record.source);
        let (mut lost, mut checked) = (None, None);
        if complete {
            let c = conn.clone();
            let count = conn.block_on(async move { c.count().await })??;
            // The count settles it when the collection holds this source alone and that
            // many points, as in `finish`; otherwise each id is looked up.
            let shared = key != PROGRESS_KEY || !others.is_empty();
            if shared || count != total {
                let (distinct, missing) = missing_of(conn, total, ids)?;
                let gone = unexplained(conn, &record.source, &missing, &mut skip)?;
                if gone.is_empty() {
                    checked = Some((distinct, missing));
                } else {
                    lost = Some(gone.into_iter().collect::<HashSet<_>>());
                }
            }
        }
        if let Some(lost) = &lost {
            tracing::info!(
                "the load of {} had finished, but {} of its pairs are missing from the \
                 collection and no `index remove` took them out (lost by the server, or \
                 deleted by another client): sending them again",
                record.source,
                lost.len()
            );
        } else if complete {
            tracing::info!(
                "the collection holds all {total} rows of {} already (its load finished); \
                 nothing to send, checking the count",
                record.source
            );
        } else if let Some(p) = progress.as_ref().filter(|p| p.source == record.source) {
            // Found by an audit: a rerun after a kill before the first checkpoint said only
            // "N points written (existing collection)", as if nothing had been interrupted.
            let given_up = if p.abandoned {
                " (given up with --abandoned-load; its source is back, so the load goes on)"
            } else {
                ""
            };
            if p.total != total {
                tracing::info!(
                    "an interrupted load of {} into the collection checkpointed {} of {} \
                     rows{given_up}; the source now holds {total} rows, so every row is sent \
                     (points already written are overwritten, never doubled)",
                    record.source,
                    p.rows,
                    p.total
                );
            } else if base > 0 {
                tracing::info!(
                    "resuming an interrupted load of {}{given_up}: the first {base} of {total} \
                     rows are in the collection already; sending from row {}",
                    record.source,
                    base + 1
                );
            } else {
                tracing::info!(
                    "resuming an interrupted load of {}{given_up}: it checkpointed no rows, \
                     so every row is sent again from the first (points already written are \
                     overwritten, never doubled)",
                    record.source
                );
            }
        }
        let mut sender = Sender::new(conn, opts);
        // Another source's points are in the collection (this one was added beside the first,
        // or others were added beside this one): write only the pairs it does not hold yet.
        // A collection of this source alone is overwritten as before (a rerun resumes it).
        if key != PROGRESS_KEY || others.iter().any(|s| *s != record.source) {
            sender.keep_held();
            let c = conn.clone();
            let version = conn.block_on(async move { c.server_version().await })??;
            if super::honours_insert_only(&version) != Some(true) {
                tracing::warn!(
                    "{}: the Qdrant server reports version {version:?}; before 1.18 it does not \
                     keep a point written insert-only, so while another relbert loads another \
                     source into the collection at the same time, a pair both hold may end \
                     with that source's label (pairs held before this load started are left \
                     out and kept)",
                    conn.target()
                );
            }
        }
        // A finished load's checkpoint stays as it is (see above): nothing to show alive.
        let heartbeat =
            (!complete).then(|| conn.spawn(heartbeat(conn.clone(), mark.clone(), opts.heartbeat)));
        Ok(Loader {
            sender,
            conn: conn.clone(),
            base,
            complete,
            saved: base,
            saved_at: Instant::now(),
            mark: mark.clone(),
            heartbeat,
            skip,
            skipped: 0,
            lost,
            checked,
            defer_indexing: opts.defer_indexing,
            path: record.path.clone(),
        })
    }

    /// Turns the collection's indexing off before the first batch with points is sent
    /// ([`Self::defer_indexing`]).
    fn before_sending(&mut self, points: &[PointStruct]) -> Result<()> {
        if self.defer_indexing && !points.is_empty() {
            let c = self.conn.clone();
            self.conn
                .block_on(async move { c.set_indexing(false).await })??;
            self.defer_indexing = false;
        }
        Ok(())
    }

    /// For a load an earlier run finished: the ids of its points the collection lacks though
    /// no removal took them out. The caller sends those rows' points, and only those, with
    /// [`Self::send_lost`].
    pub fn lost(&self) -> Option<&HashSet<String>> {
        self.lost.as_ref()
    }

    /// Sends points of [`Self::lost`] rows (no checkpoint: the load's stays at its total, so
    /// a run stopped now leaves a finished load, whose rerun looks for what is missing again).
    pub fn send_lost(&mut self, points: Vec<PointStruct>) -> Result<()> {
        self.before_sending(&points)?;
        self.sender.send_rows(points, 0)
    }

    /// Whether an earlier run finished the load and the collection holds every point of it
    /// (but those `index remove` took out): this run sends nothing, and only checks.
    pub fn nothing_to_send(&self) -> bool {
        self.complete && self.lost.is_none()
    }

    /// Rows to skip: confirmed written by an earlier run.
    pub fn resumed(&self) -> u64 {
        self.base
    }

    /// Points per batch.
    pub fn batch(&self) -> usize {
        self.sender.batch()
    }

    /// Rows of the source confirmed written, counting the resumed ones.
    pub fn confirmed(&self) -> u64 {
        self.base + self.sender.done()
    }

    /// Sends the next rows' points (in source order, one per row), checkpointing when it is
    /// time.
    pub fn send(&mut self, points: Vec<PointStruct>) -> Result<()> {
        let rows = points.len() as u64;
        self.send_rows(points, rows)
    }

    /// Sends the points of the next `rows` rows of the source ([`Sender::send_rows`]),
    /// checkpointing when it is time.
    pub fn send_rows(&mut self, mut points: Vec<PointStruct>, rows: u64) -> Result<()> {
        if !self.skip.is_empty() {
            // Removed after this source was loaded: a resend (after a failed final check
            // reset the checkpoint) leaves them out, so they stay removed.
            let before = points.len();
            points.retain(|p| {
                p.id.as_ref()
                    .and_then(id_text)
                    .is_none_or(|id| !self.skip.contains(&id))
            });
            self.skipped += (before - points.len()) as u64;
        }
        self.before_sending(&points)?;
        self.sender.send_rows(points, rows)?;
        // Without new rows, the heartbeat rewrites it ([`heartbeat`]).
        if self.saved_at.elapsed() >= CHECKPOINT_EVERY && self.confirmed() > self.saved {
            self.checkpoint(self.confirmed())?;
        }
        Ok(())
    }

    fn checkpoint(&mut self, rows: u64) -> Result<()> {
        let c = self.conn.clone();
        let p = self.mark.progress(rows, Some(unix_now()));
        let mark = self.mark.clone();
        self.conn.block_on(async move {
            let mut beat = mark.beat.lock().await;
            // Ended by a signal meanwhile (the process is exiting): it stays so.
            if beat.ended {
                return Ok(());
            }
            c.set_metadata(&mark.key, &p).await?;
            beat.saved = rows;
            Ok::<_, Error>(())
        })??;
        self.saved = rows;
        self.saved_at = Instant::now();
        Ok(())
    }

    /// Waits for every batch, turns indexing back on (left off, and said so, while another
    /// source's load into the collection looks alive: [`CollectionState::live_load_besides`])
    /// and checks that the collection holds
    /// the source's points: the `expected` rows' exact count when the collection holds this
    /// source alone and that many points, else the points of the ids `ids(start, end)` gives
    /// for the pairs of rows `start..end` (each pair once), looked up by id. A missing point
    /// whose id a removal recorded after this source was loaded is removed, not lost (found
    /// by a review: a count of removed points let a loss pass as a removal). Points that are
    /// not the source's (written by another tool, or by hand) are left as they are, with a
    /// warning: they cannot be told from a missing pair by the collection's count alone, and
    /// rerunning the load would not remove them (found by an audit: one stray point made
    /// every rerun fail and reset the checkpoint, so every query warned of a load that had
    /// finished).
    ///
    /// A load that fails here ends as one that fails sooner does ([`Self::abandon`]): a batch
    /// that failed, a look that failed, or points lost (found by review R21: the last three
    /// returned with indexing left off and the checkpoint looking alive).
    pub fn finish(mut self, expected: u64, ids: &IdsOf<'_>) -> Result<LoadEnd> {
        match self.finish_checked(expected, ids) {
            Ok(end) => Ok(end),
            Err(e) => {
                self.end_failed();
                Err(e)
            }
        }
    }

    /// [`Self::finish`], but for the end of a failed load.
    fn finish_checked(&mut self, expected: u64, ids: &IdsOf<'_>) -> Result<LoadEnd> {
        // A batch that failed is reported here, before indexing is turned back on.
        let points = self.sender.wait_all()?;
        let held = self.sender.held();
        let sent = points - held;
        if held > 0 {
            // A resumed load finds the points its interrupted run sent after its last
            // checkpoint, as well as other sources' points: the two look alike by id.
            let whose = if self.base > 0 {
                "from another source, or sent by the interrupted run after its last checkpoint"
            } else {
                "from another source"
            };
            tracing::info!(
                "{held} pair(s) the collection held already ({whose}) were not written again: \
                 a shared collection keeps each pair's first point and label"
            );
        }
        if self.skipped > 0 {
            tracing::info!(
                "{} pair(s) `index remove` took out of the collection after this source was \
                 loaded were not sent again",
                self.skipped
            );
        }
        let (c, source) = (self.conn.clone(), self.mark.source.clone());
        let counted = self.conn.block_on(async move {
            let state = c.state().await?;
            let live = live_besides_on_every_node(&c, &state, &source).await?;
            if live.is_none() {
                c.set_indexing(true).await?;
            }
            let first = state.record.map(|r| r.source);
            let count = c.count().await?;
            Ok::<_, crate::error::Error>((count, first, state.added, state.paths, live))
        });
        let (count, first, others, paths, mut left_off) = counted??;
        // Read after the load, so a source another loader added meanwhile counts too.
        let shared = self.mark.key != PROGRESS_KEY || !others.is_empty();
        // The exact count settles it in one call when it is the source's (as it did before
        // stray points were told apart: a stray point and a missing one at once pass it);
        // otherwise each of the source's pairs is looked for by id, which takes a request
        // per IDS_PER_COUNT pairs (done at the start already for a finished load that
        // lost nothing).
        let (distinct, missing) = match self.checked.take() {
            Some(checked) => checked,
            None if shared || count != expected => missing_of(&self.conn, expected, ids)?,
            None => (expected, Vec::new()),
        };
        let found = distinct - missing.len() as u64;
        // Missing points that a removal recorded (before deleting them) are removed, exactly
        // those: any other is lost.
        let lost = unexplained(&self.conn, &self.mark.source, &missing, &mut self.skip)?;
        let removed = (missing.len() - lost.len()) as u64;
        if removed > 0 {
            tracing::info!(
                "{removed} of the {distinct} pairs of {} are not in the collection: `index \
                 remove` took them out, and a load of this source does not write them again",
                self.mark.source
            );
        }
        if !lost.is_empty() {
            // Points of the source are missing: the next run sends everything again (but the
            // removed ones) rather than trust this checkpoint.
            self.stop_heartbeat();
            self.checkpoint(0)?;
            let what = if shared {
                format!(
                    "holds {found} of the source's {distinct} points ({count} from every source)"
                )
            } else {
                format!("holds {found} of the source's {distinct} points ({count} in all)")
            };
            let taken = if removed > 0 {
                format!(", {removed} of those missing taken out by `index remove`")
            } else {
                String::new()
            };
            return Err(self.conn.remote(format!(
                "after the load the collection {what}{taken}; a rerun sends every point again"
            )));
        }
        // Exact: the collection's count less this source's points, counted by id.
        let besides = count.saturating_sub(found);
        if shared && besides > 0 {
            let sources: Vec<&String> = first
                .iter()
                .chain(&others)
                .filter(|s| **s != self.mark.source)
                .collect();
            self.say_besides(besides, &sources, &paths);
        }
        let extra = if shared { 0 } else { besides };
        if extra > 0 {
            tracing::warn!(
                "{}: the collection holds {extra} point(s) besides the {distinct} pairs of {} \
                 (not written by this load: another tool, or by hand); they are left as they \
                 are, and a query that finds one fails, since it names no pair: delete them \
                 with Qdrant's API",
                self.conn.target(),
                self.mark.source
            );
        }
        self.stop_heartbeat();
        self.checkpoint(self.mark.total)?;
        if left_off.is_some() {
            // Read again after this load's final checkpoint: two loads finishing at once
            // each saw the other running; the later of these reads sees the other finished
            // on the node that took its final checkpoint, at least (so every node is asked).
            let (c, source) = (self.conn.clone(), self.mark.source.clone());
            left_off = match self.conn.block_on(async move {
                let live = live_besides_on_every_node(&c, &c.state().await?, &source).await?;
                if live.is_none() {
                    c.set_indexing(true).await?;
                }
                Ok::<_, Error>(live)
            }) {
                Ok(Ok(live)) => live,
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(
                        "could not turn the collection's indexing back on ({e}); a rerun of \
                         the load does"
                    );
                    None
                }
            };
        }
        if let Some((other, ago)) = left_off {
            say_indexing_left_off(&other, ago);
        }
        Ok(LoadEnd {
            sent,
            held,
            count,
            sources: 1 + others.len(),
            complete: self.complete,
            removed,
        })
    }

    /// Says that `besides` points of a shared collection are not pairs of this source (the
    /// other `sources`' points it lacks): a warning, naming the command that takes them out,
    /// when every other source was exported from this load's directory (its earlier states:
    /// `--add` deletes nothing, so pairs `index remove` took out of the index stay in the
    /// collection, which no message said; found by a review); said neutrally otherwise (a
    /// collection of several slices holds each slice's pairs besides the others', as it
    /// should). `paths`: where the sources were loaded from ([`CollectionState::paths`]).
    fn say_besides(&self, besides: u64, sources: &[&String], paths: &HashMap<String, String>) {
        let same = same_directory(sources.iter().copied(), paths, self.path.as_deref());
        let named: Vec<&str> = sources.iter().map(|s| s.as_str()).collect();
        let take_out = format!(
            "`relbert index remove --collection {} --pairs FILE` takes them out",
            self.conn.collection()
        );
        match &self.path {
            Some(path) if !sources.is_empty() && same.len() == sources.len() => {
                tracing::warn!(
                    "{}: {besides} point(s) of the collection are not in {} ({path}): \
                     earlier exports of this directory ({}) hold them, and it no longer does \
                     (`index remove` took them out, or the directory was replaced); --add \
                     deletes nothing, so they stay in the collection and its queries find \
                     them: {take_out}",
                    self.conn.target(),
                    self.mark.source,
                    named.join(", ")
                );
            }
            _ => tracing::info!(
                "{}: {besides} point(s) of the collection are not in {}: other \
                 sources' ({}); nothing is deleted, so pairs taken out of a source since its \
                 load stay until {take_out} of the collection",
                self.conn.target(),
                self.mark.source,
                named.join(", ")
            ),
        }
    }

    /// After a failed load: turns indexing back on, if this load turned it off, when the
    /// collection can be reached (the checkpoint stays, so a rerun resumes). Failures are
    /// only logged: the load's own error is the one to report.
    ///
    /// Its checkpoint is first marked ended (`LoadMark::end`), and indexing follows the
    /// rule of a load that finishes: left off while a load of another source looks alive
    /// (which turns it on as it ends), on otherwise (`end_failed_load`). Before (review
    /// R21) it was turned on even then.
    pub fn abandon(mut self) {
        self.end_failed();
    }

    /// Stops the heartbeat ([`heartbeat`]): under the lock the checkpoint's writers share,
    /// so that a beat writing now lands before whatever the caller writes next, and none
    /// after it.
    fn stop_heartbeat(&mut self) {
        let Some(task) = self.heartbeat.take() else {
            return;
        };
        let mark = self.mark.clone();
        // Fails only with the runtime stopped, which runs no beat either.
        let _ = self.conn.block_on(async move {
            mark.beat.lock().await.stopped = true;
        });
        task.abort();
    }

    /// The end of a failed load ([`Self::abandon`], [`Self::finish`]): the heartbeat
    /// stopped, then [`end_failed_blocking`].
    fn end_failed(&mut self) {
        self.stop_heartbeat();
        end_failed_blocking(&self.conn, &self.mark);
    }
}

/// [`end_failed_load`] of the load whose checkpoint is `mark`, waited for; a failure is only
/// logged, the load's own error being the one to report. For a load that failed after its
/// first checkpoint was written: while starting ([`Loader::start`]) or once started
/// ([`Loader::abandon`], [`Loader::finish`]).
fn end_failed_blocking(conn: &Connection, mark: &Arc<LoadMark>) {
    let (c, mark) = (conn.clone(), mark.clone());
    match conn.block_on(async move { end_failed_load(&c, Some(&mark)).await }) {
        Ok(Ok(())) => {}
        Ok(Err(e)) | Err(e) => tracing::warn!(
            "could not turn the collection's indexing back on ({e}); a rerun of the load does"
        ),
    }
}

impl Drop for Loader {
    /// The load has ended (finished, failed or given up): a collection found missing from
    /// now on was not deleted during it.
    fn drop(&mut self) {
        // Dropped without `finish` or `abandon` (a panic, say): nothing of this load writes
        // after it, so the beat is only stopped, not waited for.
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        self.conn.set_load_mark(None);
        self.conn.loading(false);
    }
}

/// The point ids of the pairs of a source's rows `start..end`, each pair once (a row that
/// repeats an earlier row's pair in another spelling gives none), in load order: what a
/// load's final check counts when the collection's count alone cannot settle it.
pub type IdsOf<'a> = dyn Fn(u64, u64) -> Result<Vec<String>> + 'a;

/// How a load ended ([`Loader::finish`]).
#[derive(Debug, Clone, Copy)]
pub struct LoadEnd {
    /// Points sent by this run.
    pub sent: u64,
    /// Points not sent because the collection held them already.
    pub held: u64,
    /// Points in the collection (every source's).
    pub count: u64,
    /// Sources whose points the collection holds.
    pub sources: usize,
    /// Whether an earlier run had finished this load, so this one had nothing to send.
    pub complete: bool,
    /// Pairs of the source the collection lacks because `index remove` took them out after
    /// the source was loaded (see [`super::remove`]).
    pub removed: u64,
}

impl LoadEnd {
    /// The report of a load that ended so, after skipping `resumed` rows, into a collection
    /// `prepared` found, since `started`. The rows of a load an earlier run finished are
    /// reported as held by the collection, not as resumed: nothing was interrupted.
    fn report(self, resumed: u64, prepared: &Prepared, started: Instant) -> ExportReport {
        let (held, resumed) = if self.complete {
            // Every row was held but the pairs removed since and those sent again (held
            // again by the time they were sent: counted in `self.held` and not in `sent`).
            (resumed.saturating_sub(self.removed + self.sent), 0)
        } else {
            (self.held, resumed)
        };
        ExportReport {
            sent: self.sent,
            held,
            resumed,
            count: self.count,
            created: prepared.created,
            sources: self.sources,
            secs: started.elapsed().as_secs_f64(),
        }
    }
}

/// The source of another load into the collection `state` shows running, and how many
/// seconds ago it wrote its checkpoint ([`CollectionState::live_load_besides`]): a load of
/// `source` that finishes beside it leaves indexing off for it (found by a review: a load
/// that finished turned indexing on under another still streaming its points).
fn live_besides(state: &CollectionState, source: &str) -> Option<(String, u64)> {
    state
        .live_load_besides(source, unix_now())
        .map(|(u, ago)| (u.source.clone(), ago.as_secs()))
}

/// [`live_besides`], each live load's checkpoint read again on every node
/// ([`Connection::progress_on_every_node`]): one that any node shows finished, given up or
/// marked ended ([`LoadMark::end`]) has ended (a checkpoint only moves forward), whatever
/// the node `state` was read from shows. Found by review R18: two loads finishing at once each read the other's final
/// checkpoint from a node that had not applied it yet, and both left indexing off, with no
/// unfinished load left to turn it on or to report it.
async fn live_besides_on_every_node(
    c: &Connection,
    state: &CollectionState,
    source: &str,
) -> Result<Option<(String, u64)>> {
    let Some(record) = &state.record else {
        return Ok(live_besides(state, source));
    };
    for (u, ago) in state.live_loads_besides(source, unix_now()) {
        // A failed read is not the load's failure (its points are all sent): the other load
        // is then taken as live, as the state read judged it (review R20).
        let seen = match c
            .progress_on_every_node(&progress_key(&record.source, &u.source))
            .await
        {
            Ok(seen) => seen,
            Err(e) => {
                tracing::warn!("reading the load of {:?} on every node: {e}", u.source);
                return Ok(Some((u.source.clone(), ago.as_secs())));
            }
        };
        // A checkpoint without a time is a load marked ended ([`LoadMark::end`]; an older
        // relbert's, timeless, never looked alive in the first place).
        if !seen
            .iter()
            .flatten()
            .any(|p| p.rows >= p.total || p.abandoned || p.at.is_none())
        {
            return Ok(Some((u.source.clone(), ago.as_secs())));
        }
    }
    Ok(None)
}

/// Runs `load` with a [`Loader`], abandoning it (indexing back on) when `load` fails.
fn with_loader(
    mut loader: Loader,
    expected: u64,
    ids: &IdsOf<'_>,
    load: impl FnOnce(&mut Loader) -> Result<()>,
) -> Result<LoadEnd> {
    match load(&mut loader) {
        Ok(()) => loader.finish(expected, ids),
        Err(e) => {
            loader.abandon();
            Err(e)
        }
    }
}

/// The real path of the index directory `dir`, as [`CollectionRecord::path`] records it;
/// `None` when it cannot be resolved or is not UTF-8 (it serves messages only).
fn recorded_path(dir: &std::path::Path) -> Option<String> {
    std::fs::canonicalize(dir)
        .ok()?
        .into_os_string()
        .into_string()
        .ok()
}

/// The sources of `others` that `paths` records as loaded from `path` (this load's
/// directory): earlier exports of the same directory, before an `index add` or `index
/// remove` gave it a new id. Sorted.
fn same_directory<'a>(
    others: impl IntoIterator<Item = &'a String>,
    paths: &HashMap<String, String>,
    path: Option<&str>,
) -> Vec<&'a str> {
    let Some(path) = path else {
        return Vec::new();
    };
    let mut same: Vec<&str> = others
        .into_iter()
        .filter(|s| paths.get(*s).is_some_and(|p| p == path))
        .map(String::as_str)
        .collect();
    same.sort_unstable();
    same
}

/// The source of a [`CollectionRecord`] in words, for messages: `index ID`'s vectors, or the
/// pair file's.
fn describe_source(source: &str) -> String {
    if source.starts_with("index ") {
        format!("the vectors of {source}")
    } else {
        "this build's".to_string()
    }
}

/// Exports every pair of `index` into `conn`'s collection (created with `settings` if absent)
/// and checks the final count. `on_points` is told how many rows of the index are confirmed
/// written, those an interrupted run confirmed first. An existing collection without the
/// layout settings `asked` for ([`LayoutFlags`]; every one with [`LayoutFlags::ALL`]) is
/// warned of.
pub fn export_index(
    index: &relbert_index::Index,
    conn: &Connection,
    settings: &CollectionSettings,
    asked: LayoutFlags,
    opts: &ExportOptions,
    on_points: &dyn Fn(u64),
) -> Result<ExportReport> {
    export_index_resuming(index, conn, settings, asked, opts, on_points, on_points)
}

/// [`export_index`], telling `on_resumed` apart, once, before `on_points` is told anything:
/// how many rows of the index were done before this run (confirmed by an interrupted run's
/// checkpoint; for a load an earlier run finished, every row but those whose points this run
/// sends again). A progress display shows them as done and leaves them out of its rate and
/// ETA (found by a review: a resumed export's first update counted them as sent by this run
/// in its first moment, so the rate was far too high and the ETA far too short).
pub fn export_index_resuming(
    index: &relbert_index::Index,
    conn: &Connection,
    settings: &CollectionSettings,
    asked: LayoutFlags,
    opts: &ExportOptions,
    on_resumed: &dyn Fn(u64),
    on_points: &dyn Fn(u64),
) -> Result<ExportReport> {
    opts.validate()?;
    let record = CollectionRecord {
        layout: LAYOUT_VERSION,
        encoder: index.meta().encoder.clone(),
        dim: index.dim() as u32,
        source: format!("index {}", index.id()),
        path: recorded_path(index.dir()),
    };
    let prepared = prepare(conn, &record, settings, asked, opts.add)?;
    let started = Instant::now();
    let n = index.count();
    let ids = |start: u64, end: u64| -> Result<Vec<String>> {
        let mut out = Vec::with_capacity((end - start) as usize);
        for r in start as usize..end as usize {
            let p = index.pair(r)?;
            if !repeats_an_earlier_spelling(index, r, p.head, p.tail)? {
                out.push(point_id(p.head, p.tail));
            }
        }
        Ok(out)
    };
    let loader = Loader::start(conn, &record, &prepared, opts, n as u64, &ids)?;
    let resumed = loader.resumed();
    // The rows whose points went missing from a finished load are this run's to send again.
    let again = loader.lost().map_or(0, |lost| lost.len() as u64);
    on_resumed(resumed.saturating_sub(again));
    let mut respelled = 0u64;
    let end = with_loader(loader, n as u64, &ids, |loader| {
        let batch = loader.batch();
        if let Some(lost) = loader.lost() {
            // Only the rows whose points went missing; the first row of an id is the
            // spelling the load sent.
            let mut wanted = lost.clone();
            let mut points = Vec::new();
            for r in 0..n {
                if wanted.is_empty() {
                    break;
                }
                let p = index.pair(r)?;
                if !wanted.remove(&point_id(p.head, p.tail)) {
                    continue;
                }
                points.push(to_point(PairPoint {
                    head: p.head,
                    tail: p.tail,
                    label: p.label,
                    vector: index.vector(r)?.into_owned(),
                }));
                if points.len() == batch {
                    loader.send_lost(std::mem::take(&mut points))?;
                }
            }
            return loader.send_lost(points);
        }
        // `on_resumed` told the rows confirmed so far (`loader.confirmed()` is `resumed`).
        let mut row = resumed as usize;
        while row < n {
            let end = (row + batch).min(n);
            let mut points = Vec::with_capacity(end - row);
            for r in row..end {
                let p = index.pair(r)?;
                // One point per pair: the first spelling's, as a build keeps it.
                if repeats_an_earlier_spelling(index, r, p.head, p.tail)? {
                    respelled += 1;
                    continue;
                }
                points.push(to_point(PairPoint {
                    head: p.head,
                    tail: p.tail,
                    label: p.label,
                    vector: index.vector(r)?.into_owned(),
                }));
            }
            loader.send_rows(points, (end - row) as u64)?;
            on_points(loader.confirmed());
            row = end;
        }
        Ok(())
    })?;
    if respelled > 0 {
        tracing::info!(
            "{respelled} row(s) of the index are another Unicode spelling of an earlier row's \
             pair (an index built before relbert kept one spelling): the collection keeps the \
             first spelling's point, as a build does"
        );
    }
    on_points(n as u64);
    Ok(end.report(resumed, &prepared, started))
}

/// Whether row `row` of `index`, (head, tail), is another Unicode spelling of the pair of
/// an earlier row. An index built since relbert keeps one spelling holds none; an older one
/// may hold `café` and `cafe\u{301}` as two rows, which are one point ([`point_id`]). Only a
/// pair that is not ASCII can be one: its spellings (NFC, NFD, each word in either form) are
/// looked up, a lookup finding exact bytes first.
fn repeats_an_earlier_spelling(
    index: &relbert_index::Index,
    row: usize,
    head: &str,
    tail: &str,
) -> Result<bool> {
    use relbert_index::pairs::{canonical, same_spelling};
    use unicode_normalization::UnicodeNormalization;
    if head.is_ascii() && tail.is_ascii() {
        return Ok(false);
    }
    let (hc, tc) = (canonical(head), canonical(tail));
    let (hd, td): (String, String) = (head.nfd().collect(), tail.nfd().collect());
    for (h, t) in [(&*hc, &*tc), (&*hd, &*td), (&*hc, &*td), (&*hd, &*tc)] {
        if (h, t) == (head, tail) {
            continue;
        }
        if let Some(other) = index.lookup(h, t)? {
            if other < row {
                let p = index.pair(other)?;
                if same_spelling((p.head, p.tail), (head, tail)) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// Keeps each pair of `records` once (its first occurrence, with that one's label), as a
/// local index keeps them: a collection holds one point per pair, and two spellings of one
/// pair in other Unicode normal forms are one pair ([`relbert_index::pairs::same_spelling`],
/// the local index's duplicate rule; found by an audit: `café` and `cafe\u{301}` were two
/// points where the index keeps one). In place, without copying the records.
fn keep_distinct(records: &mut Vec<PairRecord>) {
    use relbert_index::pairs::canonical;
    let keep: Vec<bool> = {
        let mut seen = HashSet::with_capacity(records.len());
        records
            .iter()
            .map(|r| seen.insert((canonical(&r.head), canonical(&r.tail))))
            .collect()
    };
    let mut flags = keep.into_iter();
    records.retain(|_| flags.next().unwrap_or(false));
}

/// relbert's record in `conn`'s collection, `None` when there is no collection. A build
/// reads it before it loads its encoder, so that a build into an existing collection encodes
/// at the number format recorded there. A collection that shows no record is read again for
/// a few seconds, as [`super::QdrantStore::open`] reads it (`super::RECHECK_RECORD`): one
/// created a moment ago through another node may not show its record on this one yet, and
/// taken for a new collection the build would encode at the default format and be refused
/// for it; one that never shows a record is refused as not relbert's, before the encoder is
/// loaded.
pub fn recorded(conn: &Connection) -> Result<Option<CollectionRecord>> {
    let c = conn.clone();
    conn.block_on(async move {
        recorded_by(&c, super::RECHECK_UNFINISHED, c.exists(), || c.record()).await
    })?
}

/// [`recorded`], with the collection's existence and its record read by `exists` and
/// `record` (a [`Connection`]'s, or a test's stubs), `every` apart while the record does
/// not show.
async fn recorded_by<R, RF>(
    c: &Connection,
    every: Duration,
    exists: impl Future<Output = Result<bool>>,
    record: R,
) -> Result<Option<CollectionRecord>>
where
    R: FnMut() -> RF,
    RF: Future<Output = Result<Option<CollectionRecord>>>,
{
    // A new collection is not waited for: it is created with its record.
    if !exists.await? {
        return Ok(None);
    }
    let shown = |r: &Result<Option<CollectionRecord>>| {
        !matches!(r, Ok(None) | Err(Error::NoCollection { .. }))
    };
    let what = format!("{}: reading relbert's record", c.target());
    let looks = super::RECHECK_RECORD + 1;
    match super::patiently(&what, looks, every, shown, record).await {
        // Deleted since it was seen: the build creates it again.
        Err(Error::NoCollection { .. }) => Ok(None),
        Ok(None) => Err(foreign(c)),
        r => r,
    }
}

/// Whether `e` is [`RelationEncoder::identity_for_record`]'s refusal of a model folder whose
/// path is not UTF-8: an I/O error of kind `InvalidInput` naming such a path. It checks the
/// path before it reads anything, so no other error of it names one.
fn path_not_utf8(e: &Error) -> bool {
    matches!(e, Error::Io { path, err }
        if err.kind() == std::io::ErrorKind::InvalidInput && path.to_str().is_none())
}

/// Encodes `records` with `encoder` straight into `conn`'s collection (created with
/// `settings` if absent), without a local index: `relbert index build --qdrant`. Repeated
/// pairs are written once (the first). A rerun of the same input resumes after the rows the
/// last checkpoint confirmed; its vectors must come from the same pair function at the same
/// number format (refused otherwise), as must those of a source added beside another. An
/// existing collection keeps its layout, each setting `asked` for that differs warned of.
/// `on_total` is told how many distinct pairs there are before any is encoded (not at all
/// when there are none to encode: an earlier run finished the load), `on_rows`
/// how many are done: within a chunk too, after each encoder batch, possibly from the
/// encoder's worker threads.
#[allow(clippy::too_many_arguments)]
pub fn build_collection(
    encoder: &RelationEncoder,
    mut records: Vec<PairRecord>,
    conn: &Connection,
    settings: &CollectionSettings,
    asked: LayoutFlags,
    opts: &ExportOptions,
    on_total: &dyn Fn(u64),
    on_rows: &(dyn Fn(u64) + Sync),
) -> Result<ExportReport> {
    opts.validate()?;
    // The model's path is recorded only by the build that creates the collection: an
    // existing collection's record is compared with this encoder's without it
    // ([`same_function`]), so a model folder whose path is not UTF-8 may be added to one, or
    // resume a build into one (review R20: it was refused for both). Its lossy rendering
    // then names it in messages alone; a new collection is refused for it ([`prepare_for`]).
    let (identity, unrecordable) = match encoder.identity_for_record() {
        Ok(identity) => (identity, None),
        // Only the path's refusal: any other failure (a weights file unreadable, say) is
        // the build's error, said as it is (found by review R21: every error was taken for
        // the path's, and one that `identity` then got past was reported as a path that is
        // not UTF-8).
        Err(e) if !path_not_utf8(&e) => return Err(e),
        Err(_) => (
            encoder.identity()?,
            Some(Error::InvalidArgument {
                flag: "--model".into(),
                message: format!(
                    "{}: the model folder's path is not valid UTF-8, and a new collection \
                     records its model's path as text (a query could not find this folder \
                     again); rename or move the model to a UTF-8 path (a link is not enough: \
                     the real path is recorded). Adding to an existing collection of this \
                     model (--add) works from this folder; nothing was written",
                    encoder.dir().display()
                ),
            }),
        ),
    };
    let record = CollectionRecord {
        layout: LAYOUT_VERSION,
        encoder: encoder_info(&identity),
        dim: encoder.dim() as u32,
        // The input as given, repeats included: a rerun is recognised by its input. Its
        // words as read, which the point ids are made of (see the function's docs).
        source: format!("pairs {}", records_identity_as_read(&records)),
        path: None,
    };
    let prepared = prepare_for(conn, &record, settings, asked, opts.add, unrecordable)?;
    keep_distinct(&mut records);
    let distinct = records;
    let n = distinct.len() as u64;
    let started = Instant::now();
    let dim = encoder.dim();
    let ids = |start: u64, end: u64| -> Result<Vec<String>> {
        Ok(distinct[start as usize..end as usize]
            .iter()
            .map(|r| point_id(&r.head, &r.tail))
            .collect())
    };
    let loader = Loader::start(conn, &record, &prepared, opts, n, &ids)?;
    // Found by an audit: a rerun of a finished build showed "encoding: N/N pairs (100%),
    // 0 pairs/s" though it encoded nothing (the loader says there is nothing to send).
    if !loader.nothing_to_send() {
        on_total(n);
    }
    let resumed = loader.resumed();
    let end = with_loader(loader, n, &ids, |loader| {
        // Only the pairs whose points went missing, when the load had finished; their
        // progress is the last of the source's.
        let again: Option<Vec<PairRecord>> = loader.lost().map(|lost| {
            distinct
                .iter()
                .filter(|r| lost.contains(&point_id(&r.head, &r.tail)))
                .cloned()
                .collect()
        });
        let (records, skip, base) = match &again {
            Some(again) => (again.as_slice(), 0, n - again.len() as u64),
            None => (distinct.as_slice(), resumed, 0),
        };
        encode_chunks(
            encoder,
            records,
            skip,
            &|done| on_rows(base + done),
            &mut |entries, vectors| {
                let batch = loader.batch();
                for (i, group) in entries.chunks(batch).enumerate() {
                    let points = group
                        .iter()
                        .enumerate()
                        .map(|(j, e)| {
                            let at = (i * batch + j) * dim;
                            to_point(PairPoint {
                                head: &e.head,
                                tail: &e.tail,
                                label: e.label.as_deref(),
                                vector: vectors[at..at + dim].to_vec(),
                            })
                        })
                        .collect();
                    if again.is_some() {
                        loader.send_lost(points)?;
                    } else {
                        loader.send(points)?;
                    }
                }
                Ok(())
            },
        )
    })?;
    Ok(end.report(resumed, &prepared, started))
}

#[cfg(test)]
mod tests {
    use super::*;
    use qdrant_client::qdrant::UpsertPoints;

    /// Found by a review: the refusal of an index changed since its export named two ids
    /// only. It names the directory each was exported from as recorded, and says when the
    /// collection holds an earlier export of this load's directory; an index exported from
    /// elsewhere is not said to be this one.
    #[test]
    fn another_source_names_the_directories_recorded() {
        let have = CollectionRecord {
            path: Some("/data/idx".into()),
            ..super::super::tests::sample_record()
        };
        let record = CollectionRecord {
            source: "index new".into(),
            path: Some("/data/idx".into()),
            ..have.clone()
        };
        let paths = |p: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
            p.iter()
                .map(|(s, p)| (s.to_string(), p.to_string()))
                .collect()
        };
        let (said, changed) = another_source(&have, &record, &paths(&[("index x", "/data/idx")]));
        assert!(changed, "{said}");
        assert!(
            said.contains("index x (exported from /data/idx), not of index new (/data/idx)")
                && said.contains("/data/idx was exported into it before, as index x"),
            "{said}"
        );
        let (said, changed) = another_source(&have, &record, &paths(&[("index x", "/data/other")]));
        assert!(!changed, "{said}");
        assert!(
            said.contains("(exported from /data/other)") && !said.contains("exported into it"),
            "{said}"
        );
        let (said, changed) = another_source(&have, &record, &paths(&[]));
        assert!(
            !changed && said.contains("does not record which directory"),
            "{said}"
        );
        // Earlier exports of one directory are told from another directory's source.
        let sources = ["index a".to_string(), "index b".to_string()];
        let recorded = paths(&[("index a", "/d"), ("index b", "/e")]);
        assert_eq!(same_directory(&sources, &recorded, Some("/d")), ["index a"]);
        assert!(same_directory(&sources, &recorded, None).is_empty());
    }

    /// The one decision after a failed or stopped load: indexing stays off beside a live load
    /// of another source, is turned on when this connection turned it off (also when the
    /// look failed: left off, it could stay off for good), and is not touched otherwise.
    #[test]
    fn indexing_after_a_failed_load() {
        let live = || Ok(Some(("other.tsv".to_string(), 3)));
        assert!(!indexing_on_after_failed_load(live(), true));
        assert!(!indexing_on_after_failed_load(live(), false));
        assert!(indexing_on_after_failed_load(Ok(None), true));
        assert!(!indexing_on_after_failed_load(Ok(None), false));
        assert!(indexing_on_after_failed_load(Err("timed out".into()), true));
        assert!(!indexing_on_after_failed_load(
            Err("timed out".into()),
            false
        ));
    }

    /// Found by a review: a second load of one source waiting on the first's checkpoint `p`
    /// took any ended-looking copy on any node for the end of `p`'s load, though a node
    /// behind may show an earlier write of that source: the end of the run `p`'s load
    /// resumed from (`p`'s rows, no time), an older relbert's checkpoint, a write too old
    /// to be alive. Only a write after `p` counts: one with a later time, one ended with more
    /// rows, or one a node that showed `p` shows next (the end of `p`'s load with its rows,
    /// which another node may already show at the first look, is told so).
    #[test]
    fn only_a_write_after_the_checkpoint_waited_on_tells_its_load_ended() {
        let now = 1_000_000;
        let at = |rows, total, at| LoadProgress {
            source: "pairs.tsv".into(),
            rows,
            total,
            abandoned: false,
            at,
        };
        let p = at(5, 10, Some(now - 3));
        let look = |seen: &[Option<LoadProgress>], showed: &[bool]| {
            let seen: Vec<_> = seen.iter().cloned().map(Some).collect();
            same_source_look(&p, &seen, showed, now)
        };
        let ended = |q: &LoadProgress| SameSourceLook::Ended(q.clone());
        let before = [
            at(5, 10, None),
            at(3, 10, None),
            at(4, 10, Some(now - 500)),
            at(10, 10, Some(now - 600)),
            LoadProgress {
                abandoned: true,
                ..at(5, 10, None)
            },
            // Another total, another run: its rows are not this load's.
            at(8, 12, None),
            // A checkpoint of another source is no write of this load.
            LoadProgress {
                source: "other.tsv".into(),
                ..at(9, 10, None)
            },
        ];
        for q in &before {
            let seen = [Some(p.clone()), Some(q.clone()), None];
            assert_eq!(
                look(&seen, &[false; 3]),
                SameSourceLook::NotRewritten,
                "{q:?}"
            );
        }
        // Nothing shown, or `p` again, is no rewrite either.
        assert_eq!(
            look(&[None, Some(p.clone())], &[true, true]),
            SameSourceLook::NotRewritten
        );

        // Ended after `p` at the first look: more rows, or finished later.
        let stopped = at(7, 10, None);
        assert_eq!(
            look(&[Some(p.clone()), Some(stopped.clone())], &[false; 2]),
            ended(&stopped)
        );
        let finished = at(10, 10, Some(now - 1));
        assert_eq!(look(&[Some(finished.clone())], &[false]), ended(&finished));
        // Ended with `p`'s rows: once a node that showed `p` shows it.
        let end = at(5, 10, None);
        assert_eq!(look(&[Some(end.clone())], &[true]), ended(&end));
        // Rewritten by a running load: a later time, on any node or on one that showed `p`.
        let beat = at(5, 10, Some(now - 1));
        assert_eq!(
            look(&[Some(end.clone()), Some(beat.clone())], &[false; 2]),
            SameSourceLook::Running(beat.clone())
        );
        let skewed = at(6, 10, Some(now - 4));
        assert_eq!(
            look(&[Some(skewed.clone())], &[true]),
            SameSourceLook::Running(skewed)
        );
        // A running write after `p` counts before an ended one (a new load after the end).
        assert_eq!(
            look(&[Some(stopped), Some(beat.clone())], &[true; 2]),
            SameSourceLook::Running(beat)
        );
    }

    /// Review R21: `build_collection` took any failure of `identity_for_record` for the
    /// refusal of a model path that is not UTF-8 (the `--add` fallback). Only that refusal
    /// is: an I/O error of another file, or of another kind, is the build's own error.
    #[test]
    fn only_the_non_utf8_path_refusal_falls_back() {
        use std::os::unix::ffi::OsStrExt;
        let io = |path: &std::path::Path, kind| Error::Io {
            path: path.to_path_buf(),
            err: std::io::Error::new(kind, "x"),
        };
        let odd = std::path::Path::new(std::ffi::OsStr::from_bytes(b"/m/tiny-\xff"));
        let plain = std::path::Path::new("/m/tiny/model.safetensors");
        assert!(path_not_utf8(&io(odd, std::io::ErrorKind::InvalidInput)));
        assert!(!path_not_utf8(&io(plain, std::io::ErrorKind::InvalidInput)));
        assert!(!path_not_utf8(&io(odd, std::io::ErrorKind::NotFound)));
        assert!(!path_not_utf8(&Error::InvalidArgument {
            flag: "--model".into(),
            message: "x".into(),
        }));
    }

    /// Found by an audit: `index build --collection` kept `café` (NFC) and `cafe\u{301}`
    /// (NFD) as two points where the local index keeps the first ("1 duplicates skipped").
    #[test]
    fn spellings_of_one_pair_are_kept_once_as_a_build_keeps_them() {
        let file: std::sync::Arc<std::path::Path> = std::path::Path::new("p.tsv").into();
        let rec = |head: &str, tail: &str, label: &str, line| PairRecord {
            head: head.into(),
            tail: tail.into(),
            label: Some(label.into()),
            line,
            file: file.clone(),
            typed: None,
        };
        let mut records = vec![
            rec("cafe\u{301}", "paris", "first", 1),
            rec("caf\u{e9}", "paris", "second", 2),
            rec("Caf\u{e9}", "paris", "cased", 3),
            rec("dog", "puppy", "x", 4),
            rec("dog", "puppy", "y", 5),
        ];
        keep_distinct(&mut records);
        let kept: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r.head.as_str(), r.label.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(
            kept,
            [
                ("cafe\u{301}", "first"),
                ("Caf\u{e9}", "cased"),
                ("dog", "x")
            ]
        );
    }

    /// Found by an audit: `--replication 4` on 3 nodes was accepted without a word.
    #[test]
    fn the_fewest_copies_of_a_shard_are_counted() {
        use qdrant_client::qdrant::{
            CollectionClusterInfoResponse, LocalShardInfo, RemoteShardInfo,
        };
        let local = |shard_id| LocalShardInfo {
            shard_id,
            ..Default::default()
        };
        let remote = |shard_id, peer_id| RemoteShardInfo {
            shard_id,
            peer_id,
            ..Default::default()
        };
        let info = CollectionClusterInfoResponse {
            shard_count: 2,
            local_shards: vec![local(0), local(1)],
            remote_shards: vec![remote(0, 2), remote(0, 3), remote(1, 2)],
            ..Default::default()
        };
        assert_eq!(fewest_copies(&info), Some(2));
        assert_eq!(
            fewest_copies(&CollectionClusterInfoResponse::default()),
            None
        );
        // Found by a review: a collection made without --replication on several nodes keeps
        // each point on one of them, which is warned of; the nodes holding a shard are
        // counted for it, the answering node among them only when it holds one.
        let on = |peer_id| CollectionClusterInfoResponse {
            peer_id,
            ..info.clone()
        };
        assert_eq!(nodes_holding(&on(1)), 3);
        assert_eq!(nodes_holding(&on(2)), 2);
        let alone = CollectionClusterInfoResponse {
            peer_id: 7,
            shard_count: 1,
            local_shards: vec![local(0)],
            ..Default::default()
        };
        assert_eq!(nodes_holding(&alone), 1);
        let elsewhere = CollectionClusterInfoResponse {
            peer_id: 7,
            remote_shards: vec![remote(0, 2), remote(1, 3)],
            ..Default::default()
        };
        assert_eq!(nodes_holding(&elsewhere), 2);
    }

    #[test]
    fn a_shared_collection_is_written_insert_only() {
        let points = vec![PointStruct::new(1, vec![1.0_f32, 0.0], Payload::new())];
        let shared: UpsertPoints = upsert_request("c".into(), points.clone(), true).into();
        assert_eq!(shared.update_mode, Some(UpdateMode::InsertOnly as i32));
        assert_eq!(shared.wait, Some(true));
        let alone: UpsertPoints = upsert_request("c".into(), points, false).into();
        assert_ne!(alone.update_mode, Some(UpdateMode::InsertOnly as i32));
    }

    /// Found by an audit: a load into an existing float16 collection warned that `--f16`
    /// and the others shape a new collection only when none was given (the flag's default,
    /// float32, differed from the collection's). Only flags given, and differing, are named.
    #[test]
    fn only_layout_flags_given_that_differ_are_named() {
        let none = LayoutFlags {
            shards: false,
            replication: false,
            quantization: false,
            f16: false,
        };
        let all_differ = [true; 4];
        assert!(kept_flags(none, all_differ, false).is_empty());
        assert!(kept_flags(LayoutFlags::ALL, [false; 4], true).is_empty());
        let shards = LayoutFlags {
            shards: true,
            ..none
        };
        assert_eq!(kept_flags(shards, all_differ, false), ["--shards"]);
        let originals = LayoutFlags { f16: true, ..none };
        assert_eq!(kept_flags(originals, all_differ, true), ["--f16"]);
        assert_eq!(kept_flags(originals, all_differ, false), ["--f32"]);
        assert_eq!(
            kept_flags(LayoutFlags::ALL, [true, false, true, false], true),
            ["--shards", "--quantization"]
        );
    }

    /// A library caller's `heartbeat` of zero was taken: the heartbeat rewrote the
    /// checkpoint without pause. One of [`super::super::LIVE_LOAD_WINDOW`] or more lets the
    /// checkpoint look stale between beats, so a load beside it took it for a dead one. Both
    /// are refused, naming the field, before the collection is reached (nothing listens on
    /// the connection's port: reaching it would fail otherwise).
    #[test]
    fn a_heartbeat_a_load_cannot_keep_is_refused_before_anything_is_written() {
        let conn = Connection::new(&["http://127.0.0.1:1".to_string()], "c").unwrap();
        let record = super::super::tests::sample_record();
        let prepared = Prepared {
            created: false,
            first: record.source.clone(),
            adds: None,
        };
        let no_ids = |_: u64, _: u64| Ok(Vec::new());
        for heartbeat in [
            Duration::ZERO,
            super::super::LIVE_LOAD_WINDOW / 2 + Duration::from_secs(1),
        ] {
            let opts = ExportOptions {
                heartbeat,
                ..Default::default()
            };
            let e = match Loader::start(&conn, &record, &prepared, &opts, 10, &no_ids) {
                Ok(_) => panic!("a heartbeat of {heartbeat:?} was taken"),
                Err(e) => e,
            };
            assert!(
                matches!(&e, Error::InvalidArgument { flag, .. } if flag == "ExportOptions.heartbeat"),
                "{e:?}"
            );
        }
        assert!(ExportOptions::default().validate().is_ok());
    }

    /// A build into an existing collection read its record once, before loading the
    /// encoder: on a node that did not show the record yet (the collection made a moment
    /// ago through another node) it took the collection for a new one, encoded at the
    /// default format, and was refused for it once the record showed. The record is now read
    /// again while it does not show, a bounded number of times; a new collection is not
    /// waited for, and one that never shows a record is refused before the encoder loads.
    /// The reads are stubs, `every` zero: the test counts looks, not time.
    #[test]
    fn a_record_that_shows_late_is_read_before_a_build_loads_its_encoder() {
        use super::super::tests::{sample_record, timer};
        use std::cell::Cell;
        let conn = Connection::new(&["http://127.0.0.1:1".to_string()], "c").unwrap();
        let rt = timer();
        let read = |exists: bool, shows_from: usize| {
            let reads = Cell::new(0);
            let r = rt.block_on(recorded_by(
                &conn,
                Duration::ZERO,
                async move { Ok(exists) },
                || {
                    reads.set(reads.get() + 1);
                    let n = reads.get();
                    async move { Ok((n >= shows_from).then(sample_record)) }
                },
            ));
            (r, reads.get())
        };
        let (r, reads) = read(true, 3);
        assert_eq!(r.unwrap(), Some(sample_record()));
        assert_eq!(reads, 3);
        // A new collection: nothing to wait for.
        let (r, reads) = read(false, 1);
        assert_eq!(r.unwrap(), None);
        assert_eq!(reads, 0);
        // Never a record: refused, after a bounded number of looks.
        let (r, reads) = read(true, usize::MAX);
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Refused { .. }), "{e:?}");
        assert!(e.to_string().contains("not written by relbert"), "{e}");
        assert_eq!(reads, super::super::RECHECK_RECORD + 1);
        // Deleted since it was seen: a new collection after all.
        let reads = Cell::new(0);
        let r = rt.block_on(recorded_by(
            &conn,
            Duration::ZERO,
            async { Ok(true) },
            || {
                reads.set(reads.get() + 1);
                async { Err(conn.no_collection("gone")) }
            },
        ));
        assert_eq!(r.unwrap(), None);
        assert_eq!(reads.get(), super::super::RECHECK_RECORD + 1);
    }
}
