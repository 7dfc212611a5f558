//! Taking pairs out of a collection: `relbert index remove --collection`.
//!
//! A pair's point is found by the ids it may have ([`super::spelling_ids`]: the canonical
//! id, and for a pair not in NFC the ids its other Unicode spellings got from relbert before
//! ids were canonical), as a local index's remove finds every spelling it holds. Points are
//! deleted by id in batches, each with `wait=true` and retried on another node through
//! [`Connection::call`]; a delete by id is harmless twice, so a removal stopped at any
//! moment (a kill, a failed batch, Ctrl-C) leaves a collection that the same command, run
//! again, finishes: it finds only the points still there. A removal ends with an exact
//! check: none of the ids removed is left, the collection holds the count it held before
//! less the points removed, and no load into it has started meanwhile. Its reads ask every
//! active replica of a shard (`ReadConsistency` `All`), so a replica behind the others is
//! not taken for another writer.
//!
//! **Loads.** A collection whose load has not finished (a checkpoint below its source's
//! total, or a load running now) is refused: the load, resumed, would send the rows after
//! its checkpoint again, and a pair removed before it wrote that pair's row would come
//! back. The state is read again at the final check, and a load that has left its mark
//! meanwhile (a new or resumed one records its checkpoint before it sends anything) fails
//! the removal, saying to run it again once the load has finished. A rerun of a load that
//! had finished leaves no mark, and needs none: it skips the removed ids (below).
//!
//! **The record.** Before the first delete, the ids about to be deleted are recorded in the
//! collection's metadata with the sources loaded into it ([`super::RemovedPart`], keys of
//! their own per run, so the record holds at least every id deleted and two removals at
//! once lose nothing of each other's). A load of one of those sources does not send them
//! again, and its final check takes them for removed, where other missing points are lost
//! ones, sent again ([`super::export::Loader`]): a rerun of the load that wrote a removed
//! pair does not bring it back, and a loss is never hidden by a removal. A source added
//! later (`--add`) is not among those sources, so a removed pair it holds is written again,
//! as it writes any pair the collection lacks. Ids recorded already for every source are
//! not recorded twice (a rerun of a stopped removal adds nothing, once the record has
//! reached the node it reads from); the record is capped at [`super::REMOVED_IDS_MAX`] ids
//! over the collection's whole life (every removal's, never dropped), a removal past it
//! refused before anything is deleted, saying how to make the collection anew.

use std::collections::HashSet;

use qdrant_client::qdrant::{DeletePointsBuilder, PointId, PointsIdsList};

use super::{
    open_state, patiently, spelling_ids, Connection, Hedge, RECHECK_RECORD, RECHECK_UNFINISHED,
    REMOVED_IDS_MAX, REMOVED_ID_BYTES,
};
use crate::error::{Error, Result};
use crate::pairs::PairRecord;

/// Point ids per delete request: one small request, applied in milliseconds on a healthy
/// cluster.
pub const DELETE_BATCH: usize = 512;

/// Point ids per request while finding which pairs the collection holds ([`plan`]).
const LOOKUP_BATCH: usize = super::IDS_PER_COUNT;

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
    /// The ids of the pairs read that every replica does not hold, deleted too (not counted,
    /// not recorded): a point one replica holds and a lagging one does not yet is not found
    /// by a lookup that asks every replica, and it survived a removal that said it was done
    /// (found by a review). Deleting an id not held does nothing.
    pub unseen: Vec<String>,
    /// Points the collection held when it was counted, before anything was deleted.
    pub count: u64,
    /// The sources loaded into the collection (the first, then those added), for the
    /// removal's record.
    pub sources: Vec<String>,
}

/// The refusal of a collection with an unfinished load (see the module docs for why).
fn unfinished(conn: &Connection, u: &super::Unfinished) -> Error {
    let got = match (u.rows, u.total) {
        (Some(r), Some(t)) => format!("its last checkpoint confirms {r} of its {t} rows"),
        _ => "it recorded no progress".to_string(),
    };
    // Found by an audit: a load whose source is gone (an index `index add` replaced) can
    // be neither rerun nor waited for; the refusal said to, and lasted for good.
    conn.refused(format!(
        "the load of {} into the collection has not finished ({got}), or is running now: \
         finish it first (rerun the same export or build, or wait for the one running), then \
         remove the pairs; removed before, the pairs the load sends again when it resumes \
         would come back. When its source is gone (its index replaced, its pair file \
         changed), `relbert index remove --collection {} --abandoned-load '{}'` gives the \
         load up (the points it wrote stay), and pairs can be removed",
        u.source,
        conn.collection(),
        u.source
    ))
}

/// Finds the points of `records` in `conn`'s collection: opened as `query` opens it (it
/// must exist and carry relbert's record; refused when a load into it has not finished),
/// counted, and each pair's ids ([`spelling_ids`]) looked up, 4,096 ids a request, every
/// replica asked (see the module docs). `on_looked` is told how many records are looked up.
/// Refuses to take out every point (relbert does not make an empty collection, as it makes
/// no empty index). Changes nothing.
pub fn plan(conn: &Connection, records: &[PairRecord], on_looked: &dyn Fn(u64)) -> Result<Plan> {
    let c = conn.clone();
    let (count, sources) = conn.block_on(async move {
        let (record, state) = open_state(&c, RECHECK_UNFINISHED, || c.exists(), || c.state())
            .await
            .map_err(|e| match e {
                Error::NoCollection { .. } => c.no_collection(format!(
                    "no such collection, so no pairs to remove from it (check --collection, \
                     and that {} names the deployment that holds it)",
                    c.urls_named()
                )),
                e => e,
            })?;
        if let Some(u) = state.unfinished.first() {
            return Err(unfinished(&c, u));
        }
        let sources: Vec<String> = std::iter::once(record.source).chain(state.added).collect();
        Ok((c.count_on_every_replica().await?, sources))
    })??;
    let wanted: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let mut ids = Vec::new();
            for id in r
                .lookup_spellings()
                .iter()
                .flat_map(|(h, t)| spelling_ids(h, t))
            {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids
        })
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
        let ids: Vec<String> = wanted[start..end].iter().flatten().cloned().collect();
        let c = conn.clone();
        held.extend(conn.block_on(async move { c.held_ids(&ids).await })??);
        on_looked(end as u64);
        start = end;
    }
    let mut plan = Plan {
        pairs_read: records.len() as u64,
        not_held: 0,
        repeated: 0,
        ids: Vec::new(),
        unseen: Vec::new(),
        count,
        sources,
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
        plan.unseen.extend(
            ids.iter()
                .filter(|id| !held.contains(*id) && taken.insert((*id).clone()))
                .cloned(),
        );
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
    Ok(plan)
}

/// Deletes the points of `ids` (`wait=true`). Harmless twice (a delete of an id not held
/// does nothing), so a slow node is not waited for alone: retried on another.
fn delete_batch(conn: &Connection, ids: &[String]) -> Result<()> {
    let ids: Vec<PointId> = ids.iter().map(|id| id.clone().into()).collect();
    let c = conn.clone();
    conn.block_on(async move {
        c.call("removing points", Hedge::Write, |q, name| {
            let b = DeletePointsBuilder::new(name)
                .points(PointsIdsList { ids: ids.clone() })
                .wait(true);
            async move { q.delete_points(b).await }
        })
        .await
    })??;
    Ok(())
}

/// The refusal of a removal of `n` points (`new` of them not recorded yet) from `collection`,
/// whose removal record holds `held` ids: it would take the record past [`REMOVED_IDS_MAX`].
/// The cap counts every removal since the collection was made, and the record is never
/// trimmed, so removing fewer pairs only helps while there is room left; what starts a
/// record anew is a new collection, and relbert never drops one (`--force` is for file
/// exports): the message says so, with Qdrant's own call that deletes it (found by a review:
/// it said "remove fewer pairs, or export or build the collection anew", as if the cap were
/// per removal and a rerun of the export could replace the collection).
fn past_the_cap(collection: &str, n: u64, new: usize, held: usize) -> String {
    // Unreserved URL characters stay; any other (a space, a quote) is escaped, so the
    // command can be pasted as it is.
    const IN_PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let room = REMOVED_IDS_MAX.saturating_sub(held);
    let more = if room > 0 {
        format!(
            "A removal of at most {room} point(s) not recorded yet still fits; to remove \
             more"
        )
    } else {
        "To remove more".to_string()
    };
    format!(
        "removing these {n} points ({new} of them not recorded yet) would take the \
         collection's record of removed points (kept so that reruns of its loads do not bring \
         them back) to {} ids, past the {REMOVED_IDS_MAX} relbert keeps over the collection's \
         whole life ({REMOVED_ID_BYTES} bytes of collection metadata each, read with every \
         open of the collection): it holds {held} already, from every removal since the \
         collection was made, and none is ever dropped. {more}, make the collection anew \
         without these pairs: export or build into a new --collection name, or delete this \
         collection with Qdrant's API (`curl -X DELETE \
         'http://HOST:6333/collections/{}'`, HOST a node of the deployment, 6333 its REST \
         port) and export or build it again (relbert drops no collection itself; a new \
         collection's record is empty)",
        held + new,
        percent_encoding::utf8_percent_encode(collection, IN_PATH)
    )
}

/// A run id for the removal record's keys: random, so two removals at once write keys of
/// their own.
fn run_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Deletes the points `plan` found, [`DELETE_BATCH`] ids a request (`wait=true`, retried on
/// another node), telling `on_removed` how many are confirmed deleted after each batch, and
/// checks the collection after the last (every replica asked): no load into it has started
/// meanwhile, none of the ids is left, and it holds `plan.count` less the points deleted.
/// Before the first delete, the ids are recorded in the collection's metadata (see the
/// module docs; refused, with nothing changed, when the record would pass
/// [`REMOVED_IDS_MAX`] ids). Gives the collection's count after the removal.
pub fn delete(conn: &Connection, plan: &Plan, on_removed: &dyn Fn(u64)) -> Result<u64> {
    let n = plan.ids.len() as u64;
    let (c, ids, sources) = (conn.clone(), plan.ids.clone(), plan.sources.clone());
    conn.block_on(async move {
        let record = c.removal_record().await?;
        let recorded = record.recorded_for_all(&sources);
        let new: Vec<String> = ids
            .into_iter()
            .filter(|id| !recorded.contains(id))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        if record.len() + new.len() > REMOVED_IDS_MAX {
            return Err(c.refused(past_the_cap(c.collection(), n, new.len(), record.len())));
        }
        c.record_removal(&run_id(), &sources, &new).await
    })??;
    let mut removed = 0u64;
    for chunk in plan.ids.chunks(DELETE_BATCH) {
        delete_batch(conn, chunk)?;
        removed += chunk.len() as u64;
        on_removed(removed);
    }
    for chunk in plan.unseen.chunks(DELETE_BATCH) {
        delete_batch(conn, chunk)?;
    }
    let expected = plan.count.saturating_sub(n);
    let ids = plan.ids.clone();
    let c = conn.clone();
    let (unfinished_now, left, now) = conn.block_on(async move {
        // Read again for a moment while it does not add up: metadata reaches this node
        // through the cluster's consensus (a node behind may still show a load's earlier
        // checkpoint), and a replica just restarted may be catching up.
        let what = format!("{}: checking the removal", c.target());
        let shown = |r: &Result<(Option<super::Unfinished>, u64, u64)>| match r {
            Ok((u, left, now)) => u.is_none() && *left == 0 && *now == expected,
            Err(_) => true,
        };
        patiently(
            &what,
            RECHECK_RECORD + 1,
            RECHECK_UNFINISHED,
            shown,
            || async {
                let state = c.state().await?;
                Ok((
                    state.unfinished.into_iter().next(),
                    c.count_ids_on_every_replica(&ids).await?,
                    c.count_on_every_replica().await?,
                ))
            },
        )
        .await
    })??;
    if let Some(u) = unfinished_now {
        let got = match (u.rows, u.total) {
            (Some(r), Some(t)) => format!(" (its last checkpoint confirms {r} of its {t} rows)"),
            _ => String::new(),
        };
        return Err(conn.refused(format!(
            "a load of {} into the collection started while the {n} points were removed{got}: \
             it may write some of them again; once it has finished, run this removal again",
            u.source
        )));
    }
    if left > 0 {
        return Err(conn.remote(format!(
            "after the deletes, {left} of the {n} points removed are still in the collection \
             (it holds {now})"
        )));
    }
    if now != expected {
        return Err(conn.rejected(format!(
            "the {n} points are removed (none is left), but the collection holds {now} \
             points, not the {} less {n} = {expected} expected, every replica asked: another \
             client wrote or deleted points meanwhile",
            plan.count
        )));
    }
    Ok(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by a review: the refusal said "remove fewer pairs, or export or build the
    /// collection anew", though the cap counts every removal the collection ever had and
    /// relbert refuses `--force` with `--collection`. It says the cap is the collection's
    /// whole life, how many ids are recorded, and the two ways to start anew.
    #[test]
    fn the_cap_s_refusal_says_it_is_the_collection_s_whole_life_and_how_to_start_anew() {
        let said = past_the_cap("my pairs", 2, 2, REMOVED_IDS_MAX - 1);
        assert!(
            said.contains(&format!("to {} ids", REMOVED_IDS_MAX + 1))
                && said.contains(&format!("past the {REMOVED_IDS_MAX}"))
                && said.contains("whole life")
                && said.contains(&format!("it holds {} already", REMOVED_IDS_MAX - 1))
                && said.contains("at most 1 point(s) not recorded yet still fits")
                && said.contains("a new --collection name")
                && said.contains("curl -X DELETE 'http://HOST:6333/collections/my%20pairs'"),
            "{said}"
        );
        assert!(!said.contains("remove fewer pairs"), "{said}");
        // A full record leaves no removal to fit.
        let said = past_the_cap("c-1_x.y", 1, 1, REMOVED_IDS_MAX);
        assert!(
            !said.contains("fits") && said.contains("To remove more"),
            "{said}"
        );
        assert!(said.contains("/collections/c-1_x.y'"), "{said}");
    }
}
