//! Taking pairs out of a collection: `relbert index remove --collection`.
//!
//! A pair's point is found by the ids it may have ([`super::spelling_ids`]: the canonical
//! id, and for a pair not in NFC the ids its other Unicode spellings got from relbert before
//! ids were canonical), as a local index's remove finds every spelling it holds. Points are
//! deleted by id in batches, each with `wait=true` and retried on another node through
//! [`Connection::call`]; a delete by id is harmless twice, so a removal stopped at any
//! moment (a kill, a failed batch, Ctrl-C) leaves a collection that the same command, run
//! again, finishes: it finds only the points still there. A removal ends with an exact
//! check: none of the ids removed is left, and the collection holds the count it held before
//! less the points removed.
//!
//! **Loads.** A collection whose load has not finished (a checkpoint below its source's
//! total, or a load running now) is refused: the load, resumed, sends the rows after its
//! checkpoint again, the removed pairs among them, and its final check, counting the
//! source's pairs by id, finds the removed ones missing, resets its checkpoint and sends
//! everything again. Refused, the user finishes the load first and then removes, and the
//! removed pairs stay removed: a rerun of a load that had finished sends nothing.
//!
//! **Growth.** The number of points removed is kept in the collection's metadata
//! ([`super::Removed`]), written before the deletes. A rerun of a finished load (the same
//! export or build) sends nothing and checks that the collection still holds its source's
//! pairs: the pairs removed since are missing, and that check takes up to that many missing
//! points for removed ones ([`super::export::Loader::finish`]). So removed pairs are not
//! brought back by a rerun of the load that wrote them; a source added later (`--add`)
//! that holds one writes it again, as it writes any pair the collection lacks.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use qdrant_client::qdrant::{DeletePointsBuilder, GetPointsBuilder, PointId, PointsIdsList};

use super::export::id_text;
use super::{
    open_state, patiently, spelling_ids, Connection, Hedge, Removed, RECHECK_RECORD,
    RECHECK_UNFINISHED, REMOVED_KEY,
};
use crate::error::{Error, Result};
use crate::pairs::PairRecord;

/// Point ids per delete request. A batch is also the most a stop waits for; 512 ids is
/// one small request, applied in milliseconds on a healthy cluster.
pub const DELETE_BATCH: usize = 512;

/// Point ids per request while finding which pairs the collection holds ([`plan`]).
const LOOKUP_BATCH: usize = super::IDS_PER_COUNT;

/// How often a run waiting for a request looks whether it was asked to stop.
const STOP_POLL: Duration = Duration::from_millis(20);

/// What a removal found ([`plan`]): the points to delete and what the input held.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Pairs read (lines of the input, repeats included).
    pub pairs_read: u64,
    /// Pairs read that the collection does not hold (in any spelling).
    pub not_held: u64,
    /// Pairs read whose points an earlier line of the input had found already.
    pub repeated: u64,
    /// The ids of the points to delete, each once, in input order.
    pub ids: Vec<String>,
    /// Points the collection held when it was counted, before anything was deleted.
    pub count: u64,
}

/// How a removal's deletes ended ([`delete`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Every point is deleted, and the collection holds `count` points: what it held less
    /// those deleted, as the final check found.
    Done {
        /// Points in the collection after the removal.
        count: u64,
    },
    /// Stopped (the stop flag was set) after `removed` points were confirmed deleted; the
    /// batch in flight may or may not have been applied.
    Stopped {
        /// Points confirmed deleted.
        removed: u64,
    },
}

/// Runs `fut` on `conn`'s runtime until it ends, or until `stop` is set (then it is dropped
/// and `None` is given): a stop asked for while a request waits on a slow node must not wait
/// for the request's retries. Dropping a delete in flight is safe: the server applies it
/// whole or not at all, and a rerun deletes whatever it did not.
fn unless_stopped<T: Send + 'static>(
    conn: &Connection,
    stop: &AtomicBool,
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<Option<T>> {
    if stop.load(Ordering::SeqCst) {
        return Ok(None);
    }
    let handle = conn.spawn(fut);
    while !handle.is_finished() {
        if stop.load(Ordering::SeqCst) {
            handle.abort();
            return Ok(None);
        }
        std::thread::sleep(STOP_POLL);
    }
    match conn.block_on(handle)? {
        Ok(r) => r.map(Some),
        Err(e) => Err(conn.remote(format!("the client's task ended without an answer: {e}"))),
    }
}

/// The refusal of a collection with an unfinished load (see the module docs for why).
fn unfinished(conn: &Connection, u: &super::Unfinished) -> Error {
    let got = match (u.rows, u.total) {
        (Some(r), Some(t)) => format!("its last checkpoint confirms {r} of its {t} rows"),
        _ => "it recorded no progress".to_string(),
    };
    conn.refused(format!(
        "the load of {} into the collection has not finished ({got}), or is running now: \
         finish it first (rerun the same export or build, or wait for the one running), then \
         remove the pairs; removed before, the pairs the load sends again when it resumes \
         would come back",
        u.source
    ))
}

/// Finds the points of `records` in `conn`'s collection: opened as `query` opens it (it
/// must exist and carry relbert's record; refused when a load into it has not finished),
/// counted, and each pair's ids ([`spelling_ids`]) looked up, 4,096 ids a request.
/// `on_looked` is told how many records are looked up. Refuses to take out every point
/// (relbert does not make an empty collection, as it makes no empty index). `None` when
/// `stop` was set on the way (nothing is changed before [`delete`]).
pub fn plan(
    conn: &Connection,
    records: &[PairRecord],
    stop: &AtomicBool,
    on_looked: &dyn Fn(u64),
) -> Result<Option<Plan>> {
    let c = conn.clone();
    let opened = unless_stopped(conn, stop, async move {
        let (_, state) = open_state(&c, RECHECK_UNFINISHED, || c.exists(), || c.state())
            .await
            .map_err(|e| match e {
                Error::NoCollection { .. } => c.no_collection(
                    "no such collection, so no pairs to remove from it (check --collection, \
                     and that --qdrant names the deployment that holds it)",
                ),
                e => e,
            })?;
        if let Some(u) = state.unfinished.first() {
            return Err(unfinished(&c, u));
        }
        c.count().await
    })?;
    let Some(count) = opened else {
        return Ok(None);
    };
    let wanted: Vec<Vec<String>> = records
        .iter()
        .map(|r| spelling_ids(&r.head, &r.tail))
        .collect();
    let mut held = HashSet::new();
    let mut start = 0;
    while start < wanted.len() {
        // Whole records per request, up to LOOKUP_BATCH ids (at least one record).
        let mut end = start;
        let mut n = 0;
        while end < wanted.len() && (end == start || n + wanted[end].len() <= LOOKUP_BATCH) {
            n += wanted[end].len();
            end += 1;
        }
        let ids: Vec<PointId> = wanted[start..end]
            .iter()
            .flatten()
            .map(|id| id.clone().into())
            .collect();
        let c = conn.clone();
        let got = unless_stopped(conn, stop, async move {
            c.call("finding the pairs' points", Hedge::Scan, |q, name| {
                let b = GetPointsBuilder::new(name, ids.clone())
                    .with_payload(false)
                    .with_vectors(false);
                async move { q.get_points(b).await }
            })
            .await
        })?;
        let Some(got) = got else {
            return Ok(None);
        };
        held.extend(
            got.result
                .iter()
                .filter_map(|p| p.id.as_ref().and_then(id_text)),
        );
        on_looked(end as u64);
        start = end;
    }
    let mut plan = Plan {
        pairs_read: records.len() as u64,
        not_held: 0,
        repeated: 0,
        ids: Vec::new(),
        count,
    };
    let mut taken = HashSet::new();
    for ids in &wanted {
        // Counted as the local remove counts rows: a pair none of whose points is held is
        // not in the collection (each time it is read); one whose points an earlier line
        // took already is a repeat.
        let found: Vec<&String> = ids.iter().filter(|id| held.contains(*id)).collect();
        let before = plan.ids.len();
        for &id in &found {
            if taken.insert(id.clone()) {
                plan.ids.push(id.clone());
            }
        }
        if found.is_empty() {
            plan.not_held += 1;
        } else if plan.ids.len() == before {
            plan.repeated += 1;
        }
    }
    if !plan.ids.is_empty() && plan.ids.len() as u64 >= count {
        return Err(conn.refused(format!(
            "the pairs read are all {count} points of the collection: removing them would \
             leave it empty, which relbert does not make (delete the collection instead)"
        )));
    }
    Ok(Some(plan))
}

/// Deletes the points `plan` found, [`DELETE_BATCH`] ids a request (`wait=true`, retried on
/// another node), telling `on_removed` how many are confirmed deleted after each batch, and
/// checks the collection after the last: none of the ids left, and `plan.count` less the
/// points deleted in it. Before the first delete, the points are added to the collection's
/// count of removed points ([`Removed`]; see the module docs). Stops between batches, or
/// while one waits, once `stop` is set ([`Deleted::Stopped`]).
pub fn delete(
    conn: &Connection,
    plan: &Plan,
    stop: &AtomicBool,
    on_removed: &dyn Fn(u64),
) -> Result<Deleted> {
    let n = plan.ids.len() as u64;
    let c = conn.clone();
    let recorded = unless_stopped(conn, stop, async move {
        let before = c.removed().await?;
        let removed = Removed {
            points: before.saturating_add(n),
        };
        c.set_metadata(REMOVED_KEY, &removed).await
    })?;
    if recorded.is_none() {
        return Ok(Deleted::Stopped { removed: 0 });
    }
    let mut removed = 0u64;
    for chunk in plan.ids.chunks(DELETE_BATCH) {
        let ids: Vec<PointId> = chunk.iter().map(|id| id.clone().into()).collect();
        let c = conn.clone();
        let done = unless_stopped(conn, stop, async move {
            // Harmless twice (a delete of an id not held does nothing), so a slow node is
            // not waited for alone.
            c.call("removing points", Hedge::Write, |q, name| {
                let b = DeletePointsBuilder::new(name)
                    .points(PointsIdsList { ids: ids.clone() })
                    .wait(true);
                async move { q.delete_points(b).await }
            })
            .await
        })?;
        if done.is_none() {
            return Ok(Deleted::Stopped { removed });
        }
        removed += chunk.len() as u64;
        on_removed(removed);
    }
    let expected = plan.count.saturating_sub(n);
    let ids = plan.ids.clone();
    let c = conn.clone();
    let checked = unless_stopped(conn, stop, async move {
        // Read again for a moment while it does not add up: a replica the count is read
        // from may apply the last deletes a little after the node that confirmed them.
        let what = format!("{}: checking the removal", c.target());
        let shown = |r: &Result<(u64, u64)>| match r {
            Ok((left, now)) => *left == 0 && *now == expected,
            Err(_) => true,
        };
        patiently(
            &what,
            RECHECK_RECORD + 1,
            RECHECK_UNFINISHED,
            shown,
            || async { Ok((c.count_ids(&ids).await?, c.count().await?)) },
        )
        .await
    })?;
    let Some((left, now)) = checked else {
        return Ok(Deleted::Stopped { removed });
    };
    if left > 0 {
        return Err(conn.remote(format!(
            "after the deletes, {left} of the {n} points removed are still in the collection \
             (it holds {now})"
        )));
    }
    if now != expected {
        return Err(conn.rejected(format!(
            "the {n} points are removed (none is left), but the collection holds {now} \
             points, not the {} less {n} = {expected} expected: another writer added or \
             removed points meanwhile",
            plan.count
        )));
    }
    Ok(Deleted::Done { count: now })
}
