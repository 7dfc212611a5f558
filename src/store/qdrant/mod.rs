//! Relation vectors in a Qdrant collection: one node or a sharded, replicated cluster.
//!
//! This module owns everything relbert says to Qdrant: the connection (several node URLs,
//! failing over between them), the collection's layout and settings ([`settings`]), the
//! record of which encoder made the vectors, streaming an index into a collection
//! ([`export`]), taking pairs out of one ([`remove`]), and [`QdrantStore`], the
//! [`RelationStore`] the query layer searches. It talks through the official `qdrant-client`
//! crate (gRPC), driven from a small tokio runtime of its own so the rest of relbert stays
//! synchronous.
//!
//! **Layout.** One point per pair. Its id is a UUID made from the SHA-256 of the pair in
//! canonical composition ([`point_id`]), so writing a pair twice, in either Unicode spelling,
//! overwrites the same point: a rerun or a resumed export neither duplicates nor loses pairs.
//! Its payload holds `head`, `tail`, `label` (when there is one) and `words`, the words of
//! both terms as queries compare them (lower-cased, decomposed: [`crate::query::fold_word`],
//! plus each one's precomposed form, which is what collections written before held) with a
//! keyword index, so "leave out pairs that share a word with the query" is a server-side
//! filter and the results match a local index's.
//!
//! **Encoder identity.** Qdrant 1.16 and later keep free-form metadata per collection; the
//! encoder identity, the vector width and the source (with an exported index's directory) go
//! there under the key `relbert` as one JSON string ([`CollectionRecord`]). That keeps the
//! points purely pairs (a metadata point would be counted, searched and filtered out
//! everywhere) and is read in one call when a collection is opened. A server too old to keep
//! collection metadata gives a collection without the record, which relbert refuses to query
//! or resume (with a message that says so) rather than guess the model. Queries encoded with
//! a model of another pair function are refused, as for a local index
//! ([`crate::indexing::same_function`]); a load's vectors must also be at the number format
//! the record names ([`crate::indexing::same_vectors`]), so that one collection holds one
//! format.
//!
//! **Failures.** Every call goes to one of the configured node URLs; on a transport error or
//! a server-side transient status (unavailable, deadline, aborted, internal, resource
//! exhausted) it is retried on the next URL with exponential backoff, a bounded number of
//! times, or for as long as a retry budget says ([`Connection::set_retry_for`]). Upserts are
//! idempotent (stable ids), so retrying one that did reach the server is harmless. A node that is up but answers nothing is not waited for alone: reads and upserts
//! are also sent to another node when the first has not answered in time ([`Hedge`]). A node
//! a call gave up on is not retried by the calls after it until it answers again: one that
//! refused connections is asked once, and a read whose nodes all answered nothing waits
//! [`STALLED_DEADLINE`] ([`Connection::call`]).

pub mod export;
pub mod remove;
pub mod settings;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{
    read_consistency, Condition, CountPointsBuilder, Filter, GetPointsBuilder,
    OptimizersConfigDiffBuilder, QueryPointsBuilder, ReadConsistencyType, UpdateCollectionBuilder,
    Value,
};
use qdrant_client::{Qdrant, QdrantError};
use relbert_index::EncoderInfo;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::query::{with_nfc_forms, QueryHit};
use crate::store::backend::{RelationStore, SearchRequest};

/// Environment variable with the Qdrant gRPC URL(s) when `--qdrant` is not given.
pub const URL_ENV: &str = "RELBERT_QDRANT_URL";

/// Where a connection's URLs came from, so that a message about them names what to change:
/// the `--qdrant` flag, or [`URL_ENV`] when the flag was not given (found by a review: an
/// unreachable URL from the variable was blamed on `--qdrant`, which had not been given).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UrlOrigin {
    /// The `--qdrant` flag (or a caller of the library).
    #[default]
    Flag,
    /// [`URL_ENV`], read because `--qdrant` was not given.
    Env,
}

impl UrlOrigin {
    /// The origin of the URLs of a command given `flag` as its `--qdrant` (`None`: not
    /// given, so the URLs are [`URL_ENV`]'s).
    pub fn of(flag: Option<&str>) -> Self {
        match flag {
            Some(_) => UrlOrigin::Flag,
            None => UrlOrigin::Env,
        }
    }

    /// The origin as messages name it: `--qdrant`, or `$RELBERT_QDRANT_URL (used as
    /// --qdrant is not given)`, as a bad value of the variable is named.
    pub fn name(self) -> String {
        match self {
            UrlOrigin::Flag => "--qdrant".to_string(),
            UrlOrigin::Env => format!("${URL_ENV} (used as --qdrant is not given)"),
        }
    }
}

/// The collection-metadata key of relbert's [`CollectionRecord`].
pub const METADATA_KEY: &str = "relbert";

/// The collection-metadata key of a load's checkpoint ([`LoadProgress`]) for the source the
/// collection was made from; a source added later keeps its own under
/// [`progress_key`]`(source)`, so loaders of different sources running at once do not
/// overwrite each other's.
pub const PROGRESS_KEY: &str = "relbert_progress";

/// Prefix of the collection-metadata keys that name the sources added to a collection after
/// the one it was made from (`relbert index export --add`, `index build --add`): one key per
/// source, so two loaders adding at once never race on a shared list.
pub const ADDED_SOURCE_PREFIX: &str = "relbert_source:";

/// Prefix of the collection-metadata keys of the record `relbert index remove` keeps of the
/// points it deletes ([`RemovedPart`]): `relbert_removed:<run>:<part>`, one key per part of
/// one removal, written before its deletes (so the record holds at least every point
/// deleted) and never read back and rewritten, so two removals at once lose nothing of each
/// other's, as the [`ADDED_SOURCE_PREFIX`] keys do for loaders.
pub const REMOVED_PREFIX: &str = "relbert_removed:";

/// Point ids per key of the removal record ([`RemovedPart`]): 4,096 ids are 128 KiB of
/// text, one small change through the cluster's consensus.
pub const REMOVED_IDS_PER_PART: usize = 4096;

/// The most point ids a collection's removal record holds, every removal together over the
/// collection's whole life (the record is never trimmed): 32,768 ids are 1 MiB of collection
/// metadata ([`REMOVED_ID_BYTES`] each), which every read of the collection's info carries
/// (each `query --collection` opens the collection so), and gRPC answers are limited to
/// 4 MiB. A removal that would take the record past it is refused before anything is
/// deleted; only a new collection starts a new record.
pub const REMOVED_IDS_MAX: usize = 32_768;

/// Bytes of collection metadata per point id in the removal record: the UUID's 32 hex
/// digits (parts add a few dozen bytes each).
pub const REMOVED_ID_BYTES: usize = 32;

/// One part of the record of one removal (`relbert index remove --collection`), under
/// [`removed_key`]: point ids it deletes, and the sources loaded into the collection when it
/// ran. A load of one of those sources skips these ids ([`export::Loader`]): a rerun of a
/// load that had finished does not write the removed pairs back, and its final check takes
/// them for removed, not lost. A source added later is not among them, so a pair it holds is
/// written (`--add` puts a removed pair back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemovedPart {
    /// Tags of the sources the collection held (`source_tag` of each
    /// [`CollectionRecord::source`] and [`AddedSource::source`]).
    pub sources: Vec<String>,
    /// The point ids, each as the 32 hex digits of its UUID, one after another.
    pub ids: String,
}

/// The metadata key of part `part` of removal `run` ([`RemovedPart`]).
pub fn removed_key(run: &str, part: usize) -> String {
    format!("{REMOVED_PREFIX}{run}:{part}")
}

/// The ids of `ids` (UUIDs, as relbert makes them: [`point_id`]) as [`RemovedPart::ids`]
/// holds them; `None` when one is not such a UUID.
pub fn pack_ids(ids: &[String]) -> Option<String> {
    let mut out = String::with_capacity(ids.len() * REMOVED_ID_BYTES);
    for id in ids {
        let hex: String = id.chars().filter(|&c| c != '-').collect();
        if id.len() != 36 || hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        out.push_str(&hex.to_ascii_lowercase());
    }
    Some(out)
}

/// The ids [`pack_ids`] packed, as [`point_id`] writes them; `None` for text it does not
/// make.
pub fn unpack_ids(packed: &str) -> Option<Vec<String>> {
    if !packed.len().is_multiple_of(REMOVED_ID_BYTES)
        || !packed.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    Some(
        packed
            .as_bytes()
            .chunks(REMOVED_ID_BYTES)
            .map(|h| {
                // ASCII hex digits, so every cut is at a character boundary.
                let h = std::str::from_utf8(h)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                )
            })
            .collect(),
    )
}

/// Every removal's record in a collection ([`RemovedPart`]s), as read back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemovalRecord {
    /// Each part: the tags of the sources it was recorded for, and its ids.
    parts: Vec<(Vec<String>, Vec<String>)>,
}

impl RemovalRecord {
    /// The ids removed after `source` was loaded ([`CollectionRecord::source`] or an added
    /// source): a load of it does not write them again.
    pub fn removed_from(&self, source: &str) -> std::collections::HashSet<String> {
        let tag = source_tag(source);
        self.parts
            .iter()
            .filter(|(sources, _)| sources.contains(&tag))
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect()
    }

    /// The ids recorded for every one of `sources` (a removal need not record them again).
    pub fn recorded_for_all(&self, sources: &[String]) -> std::collections::HashSet<String> {
        let tags: Vec<String> = sources.iter().map(|s| source_tag(s)).collect();
        let mut seen: HashMap<&str, std::collections::HashSet<&str>> = HashMap::new();
        for (part_tags, ids) in &self.parts {
            for id in ids {
                seen.entry(id)
                    .or_default()
                    .extend(part_tags.iter().map(String::as_str));
            }
        }
        seen.into_iter()
            .filter(|(_, have)| tags.iter().all(|t| have.contains(t.as_str())))
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// Ids the record holds, a repeat in another part counted again (what its size grows
    /// with).
    pub fn len(&self) -> usize {
        self.parts.iter().map(|(_, ids)| ids.len()).sum()
    }

    /// Whether no removal is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A short stable tag of a source string, for metadata keys and the removal record.
pub(crate) fn source_tag(source: &str) -> String {
    Sha256::digest(source.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The metadata key of an added source's record ([`AddedSource`]).
pub fn added_source_key(source: &str) -> String {
    format!("{ADDED_SOURCE_PREFIX}{}", source_tag(source))
}

/// The metadata key of `source`'s load checkpoint in a collection made from `first`.
pub fn progress_key(first: &str, source: &str) -> String {
    if first == source {
        PROGRESS_KEY.to_string()
    } else {
        format!("{PROGRESS_KEY}:{}", source_tag(source))
    }
}

/// A source added to a collection after the one it was made from (see
/// [`ADDED_SOURCE_PREFIX`]): its points are in the collection beside the first source's,
/// each pair once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddedSource {
    /// The source, as [`CollectionRecord::source`] names one.
    pub source: String,
    /// Where it was loaded from, as [`CollectionRecord::path`] records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Point ids per request when [`Connection::count_ids`] counts a source's points.
pub(crate) const IDS_PER_COUNT: usize = 4096;

/// Whether a server reporting `version` applies an insert-only write as one
/// (`UpdateMode`, added in Qdrant 1.18): an older server takes the field for an upsert and
/// replaces a point another loader wrote. `None` when the version cannot be read.
pub fn honours_insert_only(version: &str) -> Option<bool> {
    let mut parts = version.trim().trim_start_matches('v').split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor) >= (1, 18))
}

/// Version of the collection layout described in this module.
pub const LAYOUT_VERSION: u32 = 1;

/// Calls made for one request before giving up (across all URLs), unless a retry budget
/// ([`Connection::set_retry_for`]) keeps it going longer. With the backoff below they span
/// about 21 s.
const ATTEMPTS: usize = 10;
/// First backoff; doubled after each failed attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The longest retry budget [`Connection::set_retry_for`] takes: a day.
pub const MAX_RETRY_FOR: Duration = Duration::from_secs(86_400);

/// Splits a `--qdrant` value into node URLs: comma-separated, each `http://host:port` of a
/// node's gRPC port. An empty list is an error naming the flag.
pub fn parse_urls(spec: &str) -> Result<Vec<String>> {
    let urls: Vec<String> = spec
        .split(',')
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(Error::InvalidArgument {
            flag: "--qdrant".into(),
            message: "no URL given (expected http://host:6334, comma-separated for several nodes)"
                .into(),
        });
    }
    for u in &urls {
        let bad = |why: String| {
            Err(Error::InvalidArgument {
                flag: "--qdrant".into(),
                message: format!("{u:?} {why}"),
            })
        };
        let Some(rest) = u
            .strip_prefix("http://")
            .or_else(|| u.strip_prefix("https://"))
        else {
            return bad("is not an http:// or https:// URL of a gRPC port".into());
        };
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() {
            return bad("names no host".into());
        }
        // host:port, or [v6]:port; an out-of-range port was taken as the default one.
        let port = match authority.strip_prefix('[') {
            Some(v6) => v6.split_once("]:").map(|(_, p)| p),
            None => authority.rsplit_once(':').map(|(_, p)| p),
        };
        if let Some(port) = port {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return bad(format!("has port {port:?}, not one from 1 to 65535"));
            }
        }
    }
    Ok(urls)
}

/// Blocks SIGPIPE on the calling thread (the client runtime's threads). The binary restores
/// SIGPIPE's default so that output piped into `head` ends quietly; but a gRPC write to a
/// peer that closed the connection (a REST port given as `--qdrant`, a node going away) then
/// killed the process without a word. Blocked on the threads that write to the network, the
/// write fails with EPIPE instead, and the call reports it (and fails over).
fn block_sigpipe() {
    #[cfg(unix)]
    // SAFETY: the set is initialised by sigemptyset before use, and pthread_sigmask only
    // changes the calling thread's mask.
    unsafe {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
    }
}

/// Refuses a collection name Qdrant would try to make a directory of and fail on: a node
/// commits the creation through consensus before making the directory, so `.` (measured:
/// every node's consensus stopped, and the nodes no longer started) or a name too long for a
/// file name breaks the whole cluster. Qdrant itself only refuses `/`.
pub fn check_collection_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidArgument {
            flag: "--collection".into(),
            message: format!("{name:?}: {why}"),
        })
    };
    if name.trim().is_empty() {
        return bad("empty collection name");
    }
    if name == "." || name == ".." {
        return bad("not a collection name (it names a directory)");
    }
    if name
        .chars()
        .any(|c| matches!(c, '/' | '\\') || c.is_control())
    {
        return bad("a collection name cannot hold '/', '\\' or control characters");
    }
    // Qdrant refuses these itself, but only after a round trip and in its own words.
    if let Some(c) = name.chars().find(|c| FORBIDDEN_IN_NAMES.contains(*c)) {
        return bad(&format!(
            "a collection name cannot hold {c:?} (Qdrant refuses any of {FORBIDDEN_IN_NAMES})"
        ));
    }
    if name.len() > MAX_COLLECTION_NAME {
        return bad(&format!(
            "longer than {MAX_COLLECTION_NAME} bytes (each node keeps a collection in a \
             directory of that name)"
        ));
    }
    if name != name.trim() {
        return bad("spaces at either end of a collection name are easy to lose; leave them out");
    }
    Ok(())
}

/// Characters Qdrant refuses in a collection name (besides `/`).
const FORBIDDEN_IN_NAMES: &str = "<>:\"\\|?*";

/// The longest collection name relbert sends (a file name is at most 255 bytes).
const MAX_COLLECTION_NAME: usize = 200;

/// The point id of (head, tail): the SHA-256 of the two terms in canonical composition
/// ([`relbert_index::pairs::canonical`], NFC; case kept), separated by a 0xFF byte, which
/// UTF-8 never holds, cut to 128 bits and written as a UUID (version 8, "custom"), so ids are
/// stable across runs and machines, and collisions are out of reach at any corpus size (a
/// 64-bit id would collide with odds of a few percent at a billion pairs).
///
/// Two spellings of one pair in other Unicode normal forms (`café` precomposed, `cafe\u{301}`
/// decomposed) are one pair to a local index ([`relbert_index::pairs::same_spelling`]), so
/// they are one point here. A pair already in NFC (ASCII always is) keeps the id relbert
/// gave it before ids were canonical; only the other spellings' ids changed
/// ([`spelling_ids`] finds points written under those).
pub fn point_id(head: &str, tail: &str) -> String {
    use relbert_index::pairs::canonical;
    bytes_point_id(&canonical(head), &canonical(tail))
}

/// The id made from these exact bytes: [`point_id`] of a pair in NFC, and what relbert gave a
/// pair in another normal form before ids were canonical.
fn bytes_point_id(head: &str, tail: &str) -> String {
    let mut h = Sha256::new();
    h.update(head.as_bytes());
    h.update([0xFF]);
    h.update(tail.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0F) | 0x80;
    b[8] = (b[8] & 0x3F) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The ids a point of (head, tail) may have, [`point_id`] first: also, for a pair not in
/// NFC, the ids relbert gave its spellings (as given, NFD, and each word in either form)
/// before ids were canonical, so a collection written then still finds and excludes the pair
/// however it is typed, as a local index's lookup does. One id for ASCII.
pub fn spelling_ids(head: &str, tail: &str) -> Vec<String> {
    use unicode_normalization::UnicodeNormalization;
    let mut ids = vec![point_id(head, tail)];
    if head.is_ascii() && tail.is_ascii() {
        return ids;
    }
    let (hc, tc) = (
        relbert_index::pairs::canonical(head),
        relbert_index::pairs::canonical(tail),
    );
    let (hd, td): (String, String) = (head.nfd().collect(), tail.nfd().collect());
    for (h, t) in [(head, tail), (&*hd, &*td), (&*hc, &*td), (&*hd, &*tc)] {
        let id = bytes_point_id(h, t);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// What relbert records in a collection's metadata: how its vectors were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionRecord {
    /// [`LAYOUT_VERSION`] of the writer.
    pub layout: u32,
    /// The encoder identity, as a local index stores it.
    pub encoder: EncoderInfo,
    /// Vector width.
    pub dim: u32,
    /// Where the points came from: `index <id>` for an exported local index, `pairs
    /// sha256:…` for pairs encoded straight into the collection. Sources added later
    /// (`--add`) are recorded beside it ([`AddedSource`]).
    pub source: String,
    /// The directory an exported index was read from (its real path), so that a message can
    /// say a collection was exported from the directory a later export reads (its id changes
    /// with each `index add` or `index remove`); `None` for pairs encoded straight in, a
    /// path that is not UTF-8, and a record written before paths were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A load's checkpoint: the first `rows` rows of `source` are confirmed written, so a rerun
/// of the same export or build starts after them. Written every few seconds while loading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadProgress {
    /// The [`CollectionRecord::source`] being loaded.
    pub source: String,
    /// Rows of the source confirmed written, from its start.
    pub rows: u64,
    /// Rows the source holds.
    pub total: u64,
    /// The load was given up (`relbert index remove --collection NAME --abandoned-load
    /// SOURCE`): its source is gone (an index `index add` replaced, a pair file since
    /// changed), so no rerun can finish it. The points it wrote stay; the collection is no
    /// longer called unfinished for it. A rerun of the same load (its source found again)
    /// writes its checkpoint anew, without the mark, and resumes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abandoned: bool,
    /// When the load wrote this checkpoint, in seconds since the Unix epoch by its machine's
    /// clock; `None` in one written by a relbert that kept no time, given up, or marked
    /// ended by a load that failed or was stopped by a signal (`export::end_failed_load`:
    /// no longer alive to other loads, its rows kept for a rerun). A running
    /// load rewrites its checkpoint at least every [`export::HEARTBEAT`], so one written
    /// within [`LIVE_LOAD_WINDOW`] may be a load still running, which
    /// [`Connection::abandon_load`] refuses to give up (found by a review: it gave up a live
    /// load, which then wrote on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}

/// How recently a load's checkpoint must have been written ([`LoadProgress::at`]) for the
/// load to be taken as possibly still running: well past [`export::HEARTBEAT`], so a live
/// load that is slow (a node retried, a large model encoding) is not taken for a dead one.
pub const LIVE_LOAD_WINDOW: Duration = Duration::from_secs(120);

/// Now, in seconds since the Unix epoch, as [`LoadProgress::at`] records it.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How long ago (`now`, in Unix seconds) a checkpoint written at `at` was, when that is
/// within [`LIVE_LOAD_WINDOW`]: its load may still be running. `None` for a checkpoint with
/// no time (an older relbert's, one given up, or one its load marked ended as it failed or
/// was stopped) or an older one. A time ahead of `now` (another machine's
/// clock) counts by its distance, so a skewed clock holds a killed load back for the window
/// at most, not for as long as the skew.
pub fn live_for(at: Option<u64>, now: u64) -> Option<Duration> {
    let at = at?;
    let apart = Duration::from_secs(now.abs_diff(at));
    (apart < LIVE_LOAD_WINDOW).then_some(apart)
}

/// A source whose load into a collection has not finished (see [`CollectionState`]): an
/// export or build that was killed or failed midway, or one still running.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unfinished {
    /// The source, as [`CollectionRecord::source`] names one.
    pub source: String,
    /// Rows its checkpoint confirms written (more may be: a load checkpoints every few
    /// seconds); `None` when it recorded none (written by a relbert that kept no
    /// checkpoint).
    pub rows: Option<u64>,
    /// Rows the source holds, when a checkpoint says.
    pub total: Option<u64>,
    /// The collection's name, for the command [`Self::describe`] offers.
    #[serde(skip)]
    pub collection: String,
    /// Whether the collection's vector indexing was off when it was read (a load turns it
    /// off while it runs; one killed leaves it off): its vectors are not indexed, so every
    /// search scans every point until a load finishes and turns it back on.
    #[serde(skip)]
    pub indexing_off: bool,
    /// When its checkpoint was written ([`LoadProgress::at`]).
    #[serde(skip)]
    pub at: Option<u64>,
}

impl Unfinished {
    /// A sentence for people: how far the load got and how to finish it.
    pub fn describe(&self) -> String {
        let got = match (self.rows, self.total) {
            // A checkpoint is written every few seconds, so rows sent after the last one
            // are in the collection uncounted: "at least".
            (Some(r), Some(t)) => {
                format!("its last checkpoint confirms at least {r} of its {t} rows written")
            }
            _ => "it recorded no progress".to_string(),
        };
        let indexing = if self.indexing_off {
            "; the collection's indexing is off meanwhile (a load turns it off while it runs), \
             so its vectors are not indexed and every search scans every point"
        } else {
            ""
        };
        format!(
            "the load of {} into the collection did not finish ({got}){indexing}; answers miss \
             the rest of its pairs until it does: rerunning the same export or build finishes \
             it, or, when its source is gone (an index `index add` replaced, a pair file since \
             changed), `relbert index remove --collection {} --abandoned-load '{}'` gives it up \
             (the points it wrote stay)",
            self.source, self.collection, self.source
        )
    }
}

/// What a collection's metadata says about it, read in one call ([`Connection::state`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CollectionState {
    /// relbert's record; `None` when the collection has none.
    pub record: Option<CollectionRecord>,
    /// The sources added beside the first ([`AddedSource`]), sorted.
    pub added: Vec<String>,
    /// Where each source was loaded from, for the sources recorded with a path
    /// ([`CollectionRecord::path`], [`AddedSource::path`]): for messages that name a
    /// changed index's directory.
    pub paths: HashMap<String, String>,
    /// The sources (the first and the added ones) whose load has not finished: a
    /// checkpoint below its total, or none at all (a load that finished records its total).
    pub unfinished: Vec<Unfinished>,
}

impl CollectionState {
    /// An unfinished load of another source than `source` that looks alive at `now` (its
    /// checkpoint written within [`LIVE_LOAD_WINDOW`]: [`live_for`]), and how long ago: a
    /// load finishing beside it leaves the collection's indexing off for it, which turns
    /// it back on as it finishes. A load whose checkpoint is older is taken for dead (a
    /// `kill -9`), so indexing is not left off for it.
    pub fn live_load_besides<'a>(
        &'a self,
        source: &'a str,
        now: u64,
    ) -> Option<(&'a Unfinished, Duration)> {
        self.live_loads_besides(source, now).next()
    }

    /// Every load [`Self::live_load_besides`] could name, in the order it looks.
    pub fn live_loads_besides<'a>(
        &'a self,
        source: &'a str,
        now: u64,
    ) -> impl Iterator<Item = (&'a Unfinished, Duration)> + 'a {
        self.unfinished
            .iter()
            .filter(move |u| u.source != source)
            .filter_map(move |u| live_for(u.at, now).map(|ago| (u, ago)))
    }
}

/// A connection to one or more nodes of a Qdrant deployment, for one collection.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
    runtime: Arc<ClientRuntime>,
}

/// The client's own tokio runtime. Dropped from inside another runtime (`relbert serve`
/// shutting down with its store), a runtime may not wait for its threads, and tokio panics;
/// there it is shut down in the background instead (its tasks are only calls in flight).
struct ClientRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for ClientRuntime {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &Self::Target {
        // Some from construction until drop.
        self.0
            .as_ref()
            .expect("the client runtime is present until dropped")
    }
}

impl Drop for ClientRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            }
        }
    }
}

struct Inner {
    urls: Vec<String>,
    /// What gave [`Self::urls`], named by the messages that say to change them.
    origin: UrlOrigin,
    clients: Vec<Qdrant>,
    current: AtomicUsize,
    /// Nodes a hedged call stopped waiting for, until they answer again (warned once).
    slow: Vec<AtomicBool>,
    /// Whether a read has said it is still waiting (said once per connection).
    waited: AtomicBool,
    /// Nodes that have answered a call: one that refuses connections afterwards is
    /// restarting (retried as any transient failure), not a wrong URL.
    answered: Vec<AtomicBool>,
    /// When a call gave up on each node while it refused connections ([`Inner::stamp`]; 0:
    /// never, or it has answered since). A later call does not retry such a node: one
    /// attempt (a refused connection fails at once) tells whether it is back. Without this,
    /// each query on a single `--qdrant` URL whose node had died waited the whole read
    /// deadline, retrying a port nothing listened on.
    down: Vec<AtomicU64>,
    /// When a read's deadline passed without each node's answer (0: never, or it has
    /// answered since): a node that is up but answers nothing. A read whose every node is
    /// down or stalled within [`STALL_WINDOW`] waits [`STALLED_DEADLINE`] only.
    stalled: Vec<AtomicU64>,
    /// The origin of [`Self::down`] and [`Self::stalled`].
    epoch: std::time::Instant,
    collection: String,
    /// Whether a load into the collection runs on this connection ([`Connection::loading`]):
    /// a collection found missing was then deleted under it, which a rerun makes anew.
    loading: AtomicBool,
    /// Whether this connection turned the collection's indexing off and has not turned it
    /// back on since ([`Connection::set_indexing`]): what a signal's restore
    /// ([`Connection::restore_indexing_within`]) undoes, and only that (found by a review: a
    /// load stopped before it had turned indexing off turned it on under another load).
    indexing_turned_off: AtomicBool,
    /// The checkpoint of the load running on this connection, while it runs
    /// ([`export::LoadMark`]): what a signal's restore marks ended before it decides about
    /// indexing, as a failed load does (review R21).
    load_mark: std::sync::Mutex<Option<Arc<export::LoadMark>>>,
    /// How long a call keeps retrying, in milliseconds ([`Connection::set_retry_for`]; 0:
    /// [`ATTEMPTS`] attempts only).
    retry_for_ms: AtomicU64,
    /// Whether a call has said that it retries past [`ATTEMPTS`] within the budget, since a
    /// call last succeeded: said once per outage, not by every call waiting it out.
    retrying_said: AtomicBool,
    /// The backoff's first and longest wait, in microseconds ([`FIRST_BACKOFF`],
    /// [`MAX_BACKOFF`]); shorter in tests, so that a budget's worth of attempts takes
    /// milliseconds.
    backoff_us: [AtomicU64; 2],
}

impl Inner {
    /// Now, as [`Self::down`] and [`Self::stalled`] keep it (never 0).
    fn stamp(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// How long ago `marks[i]` was set, if it is.
    fn since(&self, marks: &[AtomicU64], i: usize) -> Option<Duration> {
        match marks[i].load(Ordering::Relaxed) {
            0 => None,
            t => Some(Duration::from_millis(self.stamp().saturating_sub(t))),
        }
    }

    /// The retry budget ([`Connection::set_retry_for`]).
    fn retry_for(&self) -> Duration {
        Duration::from_millis(self.retry_for_ms.load(Ordering::Relaxed))
    }

    /// The backoff's first and longest wait.
    fn backoff(&self) -> (Duration, Duration) {
        let [first, max] = &self.backoff_us;
        (
            Duration::from_micros(first.load(Ordering::Relaxed)),
            Duration::from_micros(max.load(Ordering::Relaxed)),
        )
    }

    /// Node `i` answered: it is neither down nor stalled.
    fn answered_now(&self, i: usize) {
        self.answered[i].store(true, Ordering::Relaxed);
        self.down[i].store(0, Ordering::Relaxed);
        self.stalled[i].store(0, Ordering::Relaxed);
    }
}

/// What one [`Connection::call`] saw of each node, kept outside the call's future so that
/// it is still there when a deadline drops that future.
struct Trace {
    /// Asked at least once.
    asked: Vec<AtomicBool>,
    /// Its latest attempt failed to connect at all ([`unreachable`]).
    refused: Vec<AtomicBool>,
}

impl Trace {
    fn new(n: usize) -> Self {
        Trace {
            asked: (0..n).map(|_| AtomicBool::new(false)).collect(),
            refused: (0..n).map(|_| AtomicBool::new(false)).collect(),
        }
    }
}

/// Why `e` means the node at that URL cannot be talked to at all (nothing listens there, the
/// host does not resolve, the port speaks HTTP/1 or plain text to TLS, or gRPC without
/// Qdrant's API): retrying it changes nothing, so it is not retried, and the message says
/// what to check. `None` for other errors.
fn unreachable(e: &QdrantError) -> Option<&'static str> {
    let text = match e {
        QdrantError::ResponseError { status } => {
            use tonic::Code;
            // A gRPC server without Qdrant's services (Qdrant's own P2P port, REST + 2),
            // or an HTTP/2 server answering 404 without a gRPC status, which the client
            // reports the same way. Only asked of a node that has not answered before
            // (see `Connection::call_retrying`), so a real node's refusal is not taken for it.
            if status.code() == Code::Unimplemented {
                return Some(
                    "the port speaks gRPC but not Qdrant's API (is it the P2P port, the REST \
                     port + 2?)",
                );
            }
            // The client reports a failed connection as Internal "Failed to connect to URL:
            // tonic::transport::Error(…)"; a server's own Internal errors are not this.
            let client_side = status.message().starts_with("Failed to connect")
                || status.message().contains("transport error");
            if !matches!(
                status.code(),
                Code::Unavailable | Code::Unknown | Code::Internal
            ) || (status.code() == Code::Internal && !client_side)
            {
                return None;
            }
            format!("{} {:?}", status.message(), status).to_lowercase()
        }
        other => format!("{other} {other:?}").to_lowercase(),
    };
    if text.contains("connection refused") {
        Some("connection refused: nothing listens there")
    } else if text.contains("dns error")
        || text.contains("failed to lookup address")
        || text.contains("name or service not known")
        || text.contains("no address associated")
    {
        Some("the host name does not resolve")
    } else if text.contains("h2 protocol error")
        || text.contains("invalid http version")
        || text.contains("frame with invalid size")
    {
        Some("the port does not speak gRPC (is it the REST port?)")
    } else if text.contains("corrupt message")
        || text.contains("invalidcontenttype")
        || text.contains("tls handshake")
        || text.contains("wrong version number")
    {
        Some("the TLS handshake failed (https:// to a port without TLS?)")
    } else {
        None
    }
}

/// [`unreachable`]'s reason for a node that answered before: it is not a wrong URL but a
/// node that went away (or is restarting).
fn down_reason(why: &'static str) -> &'static str {
    if why.starts_with("connection refused") {
        "connection refused: the node answered before, and is down or restarting"
    } else {
        why
    }
}

/// A failed attempt in words: why the node cannot be talked to ([`unreachable`];
/// `answered_before`: the node was up, so it is down rather than a wrong URL), else
/// [`describe`].
fn failure_text(e: &QdrantError, answered_before: bool) -> String {
    match unreachable(e) {
        Some(why) if answered_before => down_reason(why).to_string(),
        Some(why) => why.to_string(),
        None => describe(e),
    }
}

/// `text` with the client's debug dump of a transport error (`URL: tonic::transport::Error(
/// Transport, ConnectError(… message: "Connection refused" …))`) cut to its last quoted
/// words (the innermost cause); other text as it is.
fn without_transport_dump(text: &str) -> String {
    const MARK: &str = "tonic::transport::Error(";
    let Some(at) = text.find(MARK) else {
        return text.to_string();
    };
    let head = text[..at].trim_end().trim_end_matches(':');
    let dump = &text[at..];
    let quoted: Vec<&str> = dump.split('"').skip(1).step_by(2).collect();
    match quoted.last() {
        Some(cause) if !cause.is_empty() => format!("{head}: {cause}"),
        _ => format!("{head}: a transport error"),
    }
}

/// `e` as a sentence for people: the server's message (or, when it sent none, what its
/// status code means) and the code's name, without the gRPC metadata (`MetadataMap {
/// headers: … }`) the client's own text of an error carries.
pub(crate) fn describe(e: &QdrantError) -> String {
    match e {
        QdrantError::ResponseError { status } => {
            let message = without_transport_dump(&strip_metadata(status.message()));
            let message = message.trim();
            if message.is_empty() {
                format!("{} (gRPC {:?})", status.code().description(), status.code())
            } else {
                format!("{message} (gRPC {:?})", status.code())
            }
        }
        other => without_transport_dump(&strip_metadata(&other.to_string())),
    }
}

/// `text` without the `MetadataMap { … }` debug dumps of gRPC headers that the client's
/// errors carry (a date, content types: nothing a user can act on, and long).
pub(crate) fn strip_metadata(text: &str) -> String {
    const MARK: &str = "MetadataMap {";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        out.push_str(rest[..at].trim_end());
        // Skip to the brace that closes the dump, minding quoted header values.
        let body = &rest[at + MARK.len()..];
        let (mut depth, mut quoted, mut escaped) = (1usize, false, false);
        let mut end = body.len();
        for (i, ch) in body.char_indices() {
            match ch {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '{' if !quoted => depth += 1,
                '}' if !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &body[end..];
    }
    out.push_str(rest);
    out.trim_end().to_string()
}

/// Whether `e` says the collection does not exist (Qdrant: `Not found: Collection `x`
/// doesn't exist!`): deleted, or never made.
fn collection_missing(e: &QdrantError) -> bool {
    match e {
        QdrantError::ResponseError { status } => {
            let m = status.message().to_lowercase();
            status.code() == tonic::Code::NotFound
                && m.contains("collection")
                && (m.contains("doesn't exist")
                    || m.contains("not found")
                    || m.contains("does not exist"))
        }
        _ => false,
    }
}

fn transient(e: &QdrantError) -> bool {
    use tonic::Code;
    match e {
        QdrantError::ResponseError { status } => matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::Internal
                | Code::Unknown
                | Code::Cancelled
                | Code::ResourceExhausted
        ),
        QdrantError::ResourceExhaustedError { .. } | QdrantError::Io(_) => true,
        _ => false,
    }
}

/// One call of `f` on node `i`, tagged with the node. Until the node has answered, whether
/// its port answers in HTTP/1 is asked beside the call ([`answers_http1`]), and that answer
/// is the call's error: the client alone does not always tell a REST port.
async fn attempt<T, F, Fut>(
    f: &F,
    inner: &Inner,
    i: usize,
) -> (usize, std::result::Result<T, QdrantError>)
where
    F: Fn(Qdrant, String) -> Fut,
    Fut: Future<Output = std::result::Result<T, QdrantError>>,
{
    let call = f(inner.clients[i].clone(), inner.collection.clone());
    if inner.answered[i].load(Ordering::Relaxed) {
        return (i, call.await);
    }
    let probe = answers_http1(&inner.urls[i]);
    tokio::pin!(call, probe);
    let mut probed = false;
    let answer = tokio::select! {
        answer = &mut call => answer,
        http1 = &mut probe => match http1 {
            Some(e) => return (i, Err(e)),
            None => {
                probed = true;
                call.await
            }
        },
    };
    // A failure that could be a REST port's (the connection died before the call was on
    // it) waits for the probe's verdict: without it the call is retried as transient.
    let answer = match answer {
        Err(e) if !probed && transient(&e) && unreachable(&e).is_none() => {
            Err(probe.await.unwrap_or(e))
        }
        answer => answer,
    };
    (i, answer)
}

/// The first bytes an HTTP/2 client sends on a connection (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long [`answers_http1`] waits to connect, and then for the first bytes of an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether the server at `url` (plain `http://` only) answers the HTTP/2 preface in HTTP/1,
/// as Qdrant's REST port does (`HTTP/1.1 400 Bad Request`): then that, as an error in the
/// words [`unreachable`] knows ("h2 protocol error"). `None` when it answers otherwise, not
/// at all within [`PROBE_TIMEOUT`], or cannot be reached (the call says why).
///
/// The gRPC client alone tells a REST port only when its request is on the connection
/// before the HTTP/1 answer arrives. Otherwise the connection dies under a call not yet
/// sent, and the client reports the call cancelled (retried as transient) or silently
/// reconnects while the call waits: a REST port given as `--qdrant` then failed after the
/// 15 s read deadline with "no answer" (11 of 40 runs on the 3-node test cluster)
/// instead of naming the mix-up. The HTTP/1 answer to the preface itself comes every time.
async fn answers_http1(url: &str) -> Option<QdrantError> {
    let authority = url.strip_prefix("http://")?.split('/').next()?;
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']')?;
            (host, rest.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    // The client takes a URL without a port as HTTP's.
    let port: u16 = port.map_or(Some(80), |p| p.parse().ok())?;
    let connect = tokio::net::TcpStream::connect((host, port));
    let stream = tokio::time::timeout(PROBE_TIMEOUT, connect)
        .await
        .ok()?
        .ok()?;
    let exchange = async {
        let mut sent = 0;
        while sent < H2_PREFACE.len() {
            stream.writable().await.ok()?;
            match stream.try_write(&H2_PREFACE[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
        // Up to the end of an HTTP/1 status line; an HTTP/2 server's first frame (its
        // SETTINGS) differs from "HTTP/" in its first bytes.
        let mut got = Vec::new();
        let mut buf = [0u8; 128];
        while got.len() < buf.len()
            && !got.contains(&b'\n')
            && b"HTTP/".starts_with(&got[..got.len().min(5)])
        {
            stream.readable().await.ok()?;
            match stream.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // A reset after the answer: what came is the answer.
                Err(_) => break,
            }
        }
        Some(got)
    };
    let got = tokio::time::timeout(PROBE_TIMEOUT, exchange).await.ok()??;
    if !got.starts_with(b"HTTP/") {
        return None;
    }
    let text = String::from_utf8_lossy(&got);
    let line = text.lines().next().unwrap_or_default().trim();
    Some(QdrantError::ResponseError {
        status: tonic::Status::unknown(format!(
            "h2 protocol error: the port answered HTTP/2 in HTTP/1 ({line:?})"
        )),
    })
}

/// Whether a call may also be sent to another node while the first has not answered: a
/// node that is up but stuck (stopped, swapping, a full disk stalling its writes) keeps its
/// connection open and answers nothing, so without this every call waits the client's whole
/// timeout (`CALL_TIMEOUT`) before failing over, longer than `relbert serve` lets a request
/// run. The first answer wins and the other call is dropped (cancelled); the node that
/// answered is asked first from then on. Measured on the 3-node test cluster with the first
/// node stopped (SIGSTOP): a query took 60.1 s before, about [`READ_HEDGE`] after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hedge {
    /// A read: another node is asked after [`READ_HEDGE`]; given up after
    /// [`READ_DEADLINE`] in all.
    Read,
    /// A read whose time grows with the collection (an exact count, which points of a batch
    /// are held, an exact search, listing pairs): hedged as [`Hedge::Read`], but with no
    /// overall deadline, which would fail a load at its final count after hours of work.
    Scan,
    /// A write that is harmless twice (an upsert of points with stable ids): another node is
    /// asked after [`WRITE_HEDGE`], longer because a busy cluster applies a batch slowly.
    Write,
    /// A change made through the cluster's consensus (creating a collection, its metadata):
    /// never asked twice at once, since a second copy could fail on what the first did.
    Never,
}

impl Hedge {
    fn after(self) -> Option<Duration> {
        match self {
            Hedge::Read | Hedge::Scan => Some(READ_HEDGE),
            Hedge::Write => Some(WRITE_HEDGE),
            Hedge::Never => None,
        }
    }
}

/// How long a read waits for one node before another is asked too ([`Hedge::Read`]): far
/// above a search's time on a healthy node (milliseconds), well below `relbert serve`'s
/// request timeout (10 s).
pub const READ_HEDGE: Duration = Duration::from_secs(1);

/// How long an upsert waits for one node before another is asked too ([`Hedge::Write`]).
pub const WRITE_HEDGE: Duration = Duration::from_secs(10);

/// How long a read runs before it says on stderr that it is still waiting ([`Connection::call`]).
pub const READ_NOTICE: Duration = Duration::from_secs(3);

/// The longest a read may take, every retry and node included ([`Connection::call`]).
pub const READ_DEADLINE: Duration = Duration::from_secs(15);

/// How long a node stays marked as not answering a read (`Inner::stalled`): after that a
/// read gives it the whole [`READ_DEADLINE`] again, so a node that was only slow is not cut
/// short for good.
pub const STALL_WINDOW: Duration = Duration::from_secs(60);

/// The deadline of a read whose every node is down or stalled (`Inner::stalled`): one
/// that answers again does so well within it, and one that does not is not waited for the
/// whole [`READ_DEADLINE`] by every query.
pub const STALLED_DEADLINE: Duration = Duration::from_secs(3);

/// The client's limit on one call to one node.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

impl Connection {
    /// Connects (lazily: the first call opens the channel) to `urls`, for `collection`.
    /// Messages about the URLs name `--qdrant` ([`Self::with_origin`] names another origin).
    pub fn new(urls: &[String], collection: &str) -> Result<Self> {
        Self::with_origin(urls, UrlOrigin::Flag, collection)
    }

    /// [`Self::new`], the URLs having come from `origin`, which messages about them name.
    pub fn with_origin(urls: &[String], origin: UrlOrigin, collection: &str) -> Result<Self> {
        check_collection_name(collection)?;
        let target = format!("{} collection {collection}", urls.join(","));
        let remote = |message: String| Error::Remote {
            target: target.clone(),
            message,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("relbert-qdrant")
            .on_thread_start(block_sigpipe)
            .enable_all()
            .build()
            .map_err(|e| remote(format!("starting the client runtime: {e}")))?;
        let clients = urls
            .iter()
            .map(|u| {
                Qdrant::from_url(u)
                    .timeout(CALL_TIMEOUT)
                    .connect_timeout(Duration::from_secs(3))
                    // Checked per call instead: a node that is down at start must not stop
                    // a client that can use the others.
                    .skip_compatibility_check()
                    .build()
                    .map_err(|e| remote(format!("{u}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Connection {
            inner: Arc::new(Inner {
                urls: urls.to_vec(),
                origin,
                clients,
                current: AtomicUsize::new(0),
                slow: urls.iter().map(|_| AtomicBool::new(false)).collect(),
                waited: AtomicBool::new(false),
                answered: urls.iter().map(|_| AtomicBool::new(false)).collect(),
                down: urls.iter().map(|_| AtomicU64::new(0)).collect(),
                stalled: urls.iter().map(|_| AtomicU64::new(0)).collect(),
                epoch: std::time::Instant::now(),
                collection: collection.to_string(),
                loading: AtomicBool::new(false),
                indexing_turned_off: AtomicBool::new(false),
                load_mark: std::sync::Mutex::new(None),
                retry_for_ms: AtomicU64::new(0),
                retrying_said: AtomicBool::new(false),
                backoff_us: [FIRST_BACKOFF, MAX_BACKOFF]
                    .map(|d| AtomicU64::new(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))),
            }),
            runtime: Arc::new(ClientRuntime(Some(runtime))),
        })
    }

    /// Keeps every call on this connection retrying a node that fails or restarts for at
    /// least `d` (at most [`MAX_RETRY_FOR`]), beyond the `ATTEMPTS` attempts (about 21 s)
    /// it makes without one: for a load that should wait out a node's restart or a cluster's
    /// rolling upgrade rather than stop (a rerun resumes it, but nobody may be there to rerun
    /// it). Within the budget a node that refused connections is asked again, even when an
    /// earlier call gave up on it, and a read waits the budget instead of [`READ_DEADLINE`].
    /// A node that never answered still fails at once: that is a wrong URL more often than a
    /// node down. Meant for the connections of loads and removals, not for queries, which a
    /// person or a service waits on.
    pub fn set_retry_for(&self, d: Duration) {
        let ms = d.min(MAX_RETRY_FOR).as_millis();
        self.inner
            .retry_for_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Notes that a load into the collection runs on this connection (or has ended), so a
    /// collection found missing is said to have been deleted during it.
    pub fn loading(&self, on: bool) {
        self.inner.loading.store(on, Ordering::Relaxed);
    }

    /// The collection name.
    pub fn collection(&self) -> &str {
        &self.inner.collection
    }

    /// What gave the URLs, as messages that say to change them name it.
    pub(crate) fn urls_named(&self) -> String {
        self.inner.origin.name()
    }

    /// `URL[,URL…] collection NAME`, for messages.
    pub fn target(&self) -> String {
        format!(
            "{} collection {}",
            self.inner.urls.join(","),
            self.inner.collection
        )
    }

    /// An error of the server or the connection, which a retry or a rerun may get past. Any
    /// gRPC metadata dump in `message` is left out ([`strip_metadata`]).
    pub(crate) fn remote(&self, message: impl Into<String>) -> Error {
        Error::Remote {
            target: self.target(),
            message: strip_metadata(&message.into()),
        }
    }

    /// A refusal of the collection as it is (another model, source, distance or tool): the
    /// same command gets the same answer however often it is run ([`Error::Refused`]).
    pub(crate) fn refused(&self, message: impl Into<String>) -> Error {
        Error::Refused {
            target: self.target(),
            message: message.into(),
        }
    }

    /// An answer that asking again does not change ([`Error::Rejected`]).
    pub(crate) fn rejected(&self, message: impl Into<String>) -> Error {
        Error::Rejected {
            target: self.target(),
            message: strip_metadata(&message.into()),
        }
    }

    /// The collection does not exist ([`Error::NoCollection`]).
    pub(crate) fn no_collection(&self, message: impl Into<String>) -> Error {
        Error::NoCollection {
            target: self.target(),
            message: message.into(),
        }
    }

    /// Runs `fut` to completion on this connection's runtime. Works from plain threads and
    /// from inside another tokio runtime (an async server): there the future is spawned onto
    /// this runtime and the calling thread waits for it, instead of nesting runtimes.
    pub fn block_on<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Ok(self.runtime.block_on(fut));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| self.remote("the client runtime stopped before answering"))
    }

    /// Starts `fut` on this connection's runtime (to be awaited with [`Self::block_on`]).
    pub fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.runtime.spawn(fut)
    }

    /// Calls `f` with a client, retrying transient failures on the next node with
    /// exponential backoff; with `hedge`, a node that has not answered in time is not waited
    /// for alone (see [`Hedge`]). `what` names the request in the error. A read gives up
    /// after [`READ_DEADLINE`] in all, saying on stderr after [`READ_NOTICE`] that it waits:
    /// a stopped node keeps its connection open and answers nothing, and a single `--qdrant`
    /// URL has no other node to ask, so a query waited 10 x 60 s without a word. A node a
    /// call gave up on is not retried by later calls until it answers again
    /// (`Inner::down`, `Inner::stalled`).
    pub async fn call<T, F, Fut>(&self, what: &str, hedge: Hedge, f: F) -> Result<T>
    where
        F: Fn(Qdrant, String) -> Fut,
        Fut: Future<Output = std::result::Result<T, QdrantError>>,
    {
        let inner = &self.inner;
        let n = inner.clients.len();
        let trace = Trace::new(n);
        let budget = inner.retry_for();
        if hedge != Hedge::Read {
            let r = self.call_retrying(what, hedge, f, &trace).await;
            self.note_gave_up(&trace, false);
            return r;
        }
        // Every node down or recently silent: it is asked once more, briefly.
        let recent = |i: usize| inner.since(&inner.stalled, i);
        // Not with a retry budget: its reads wait it out.
        let cut_short = budget.is_zero()
            && (0..n).all(|i| {
                inner.since(&inner.down, i).is_some() || recent(i).is_some_and(|t| t < STALL_WINDOW)
            })
            && (0..n).any(|i| recent(i).is_some());
        // Past the budget by a backoff's length, so that the retries' own message, which
        // names the budget, ends a call that ran out of it.
        let read_deadline = if budget.is_zero() {
            READ_DEADLINE
        } else {
            READ_DEADLINE.max(budget + MAX_BACKOFF)
        };
        let work = self.call_retrying(what, hedge, f, &trace);
        tokio::pin!(work);
        let deadline = if cut_short {
            STALLED_DEADLINE
        } else {
            tokio::select! {
                r = &mut work => {
                    self.note_gave_up(&trace, false);
                    return r;
                }
                () = tokio::time::sleep(READ_NOTICE) => {}
            }
            if !inner.waited.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "{}: no answer yet ({what}) after {} s; giving up at {} s",
                    inner.urls.join(","),
                    READ_NOTICE.as_secs(),
                    read_deadline.as_secs()
                );
            }
            read_deadline - READ_NOTICE
        };
        let answer = tokio::time::timeout(deadline, work).await;
        // Read before the marks below change it.
        let silent_since = (0..n).filter_map(recent).max();
        self.note_gave_up(&trace, answer.is_err() && !cut_short);
        match answer {
            Ok(r) => r,
            Err(_) => {
                let refused: Vec<&str> = (0..n)
                    .filter(|&i| trace.refused[i].load(Ordering::Relaxed))
                    .map(|i| inner.urls[i].as_str())
                    .collect();
                let waited = if cut_short {
                    STALLED_DEADLINE
                } else {
                    read_deadline
                };
                let why = if !refused.is_empty() {
                    format!(
                        "connection refused by {} (the node is down or restarting), and no \
                         answer from {} {} within {} s",
                        refused.join(", "),
                        self.urls_named(),
                        inner.urls.join(","),
                        waited.as_secs()
                    )
                } else {
                    let before = match silent_since.filter(|_| cut_short) {
                        Some(t) => format!(
                            ", as none within {} s {} s ago",
                            READ_DEADLINE.as_secs(),
                            t.as_secs()
                        ),
                        None => String::new(),
                    };
                    format!(
                        "no answer from {} {} within {} s{before} (is the node stopped, \
                         overloaded or cut off?)",
                        self.urls_named(),
                        inner.urls.join(","),
                        waited.as_secs()
                    )
                };
                Err(self.remote(format!("{what}: {why}")))
            }
        }
    }

    /// Marks the nodes `trace` shows a call gave up on (it ended without their answer):
    /// those that refused connections as down, and with `deadline` (a read's deadline passed)
    /// those asked that answered nothing as stalled. A node stalled already keeps its first
    /// mark, so that [`STALL_WINDOW`] counts from the read that waited for it in full.
    fn note_gave_up(&self, trace: &Trace, deadline: bool) {
        let inner = &self.inner;
        for i in 0..inner.clients.len() {
            if trace.refused[i].load(Ordering::Relaxed) {
                // A node that answered since keeps no mark (its answer cleared it): only a
                // node still refusing is marked, by the first call that finds it so.
                let _ = inner.down[i].compare_exchange(
                    0,
                    inner.stamp(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            } else if deadline && trace.asked[i].load(Ordering::Relaxed) {
                let _ = inner.stalled[i].compare_exchange(
                    0,
                    inner.stamp(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// [`Self::call`] without the read deadline; what it sees of each node goes to `trace`.
    async fn call_retrying<T, F, Fut>(
        &self,
        what: &str,
        hedge: Hedge,
        f: F,
        trace: &Trace,
    ) -> Result<T>
    where
        F: Fn(Qdrant, String) -> Fut,
        Fut: Future<Output = std::result::Result<T, QdrantError>>,
    {
        let inner = &self.inner;
        let n = inner.clients.len();
        let attempts = ATTEMPTS.max(2 * n);
        let began = std::time::Instant::now();
        let budget = inner.retry_for();
        // Whether another attempt may start after `started`.
        let more = |started: usize| started < attempts || began.elapsed() < budget;
        // How many attempts were made, and for how long, when giving up.
        let spent = |started: usize| {
            if budget.is_zero() {
                format!("{started} attempts")
            } else {
                format!(
                    "{started} attempts in {} s (the retry budget: {} s)",
                    began.elapsed().as_secs(),
                    budget.as_secs()
                )
            }
        };
        let hedge_after = hedge.after().filter(|_| n > 1);
        let (mut delay, max_backoff) = inner.backoff();
        // Whether this call said that it retries within the budget: it, and no other, says
        // that the node answers again.
        let mut warned_here = false;
        // The first and the latest transient failure, for the message when all fail.
        let mut first = String::new();
        let mut last = String::new();
        let mut started = 0;
        let mut next = inner.current.load(Ordering::Relaxed) % n;
        let mut running = FuturesUnordered::new();
        let mut busy = vec![false; n];
        // Nodes that cannot be talked to at all ([`unreachable`]), or that refuse
        // connections again after a call gave up on them ([`Inner::down`]): not asked again.
        let mut dead: Vec<Option<&'static str>> = vec![None; n];
        let alive = |from: usize, dead: &[Option<&'static str>]| {
            (0..n).map(|k| (from + k) % n).find(|&j| dead[j].is_none())
        };
        let ask = |i: usize| {
            trace.asked[i].store(true, Ordering::Relaxed);
            attempt(&f, inner, i)
        };
        loop {
            if running.is_empty() {
                if !more(started) {
                    return Err(self.failed(
                        what,
                        format!(
                            "gave up after {}: first {first}; last {last}",
                            spent(started)
                        ),
                    ));
                }
                busy[next] = true;
                running.push(ask(next));
                started += 1;
                next = (next + 1) % n;
            }
            // A hedge goes to a node that is not already asked, while attempts are left.
            let spare = (0..n)
                .map(|k| (next + k) % n)
                .find(|&j| !busy[j] && dead[j].is_none());
            let hedge_to = hedge_after.zip(spare).filter(|_| more(started));
            let timer = async {
                match hedge_to {
                    Some((after, _)) => tokio::time::sleep(after).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some((i, answer)) = running.next() => {
                    busy[i] = false;
                    let cannot_connect = match &answer {
                        Err(e) => unreachable(e),
                        Ok(_) => None,
                    };
                    trace.refused[i].store(cannot_connect.is_some(), Ordering::Relaxed);
                    let was_down = inner.since(&inner.down, i).is_some();
                    match answer {
                        Ok(v) => {
                            inner.retrying_said.store(false, Ordering::Relaxed);
                            if inner.slow[i].swap(false, Ordering::Relaxed) || was_down || warned_here {
                                tracing::info!("{} answers again", inner.urls[i]);
                            }
                            inner.current.store(i, Ordering::Relaxed);
                            inner.answered_now(i);
                            return Ok(v);
                        }
                        // A node that has answered and refuses now is restarting: retried as
                        // any transient failure, unless a call has given up on it already
                        // and there is no retry budget (one ends through `more`, with a
                        // message naming it).
                        Err(e)
                            if cannot_connect.is_some()
                                && (!inner.answered[i].load(Ordering::Relaxed)
                                    || (was_down && budget.is_zero())) =>
                        {
                            let why = cannot_connect.unwrap_or_default();
                            tracing::debug!("{what} via {}: {}", inner.urls[i], describe(&e));
                            dead[i] = Some(if was_down { down_reason(why) } else { why });
                            let Some(j) = alive(i, &dead) else {
                                if running.is_empty() {
                                    return Err(self.unreachable_error(what, &dead));
                                }
                                continue;
                            };
                            let _ = inner.current.compare_exchange(
                                i,
                                j,
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            );
                            if running.is_empty() {
                                if !more(started) {
                                    return Err(self.unreachable_error(what, &dead));
                                }
                                next = j;
                            }
                        }
                        Err(e) if transient(&e) => {
                            tracing::debug!(
                                "{what} via {}: {}; retrying",
                                inner.urls[i],
                                describe(&e)
                            );
                            // A failed connection in words, not the client's debug dump of
                            // its transport error.
                            let said = failure_text(&e, inner.answered[i].load(Ordering::Relaxed));
                            last = format!("{}: {said}", inner.urls[i]);
                            if first.is_empty() {
                                first.clone_from(&last);
                            }
                            // Another caller may have moved on already; only the first moves.
                            let _ = inner.current.compare_exchange(
                                i,
                                (i + 1) % n,
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            );
                            if running.is_empty() {
                                if !more(started) {
                                    return Err(self.failed(
                                        what,
                                        format!(
                                            "failed after {} (first: {first}; last: {last})",
                                            spent(started)
                                        ),
                                    ));
                                }
                                if started >= attempts
                                    && !inner.retrying_said.swap(true, Ordering::Relaxed)
                                {
                                    warned_here = true;
                                    tracing::warn!(
                                        "{what}: failed {attempts} times (last: {last}); \
                                         retrying for up to {} s in all (the retry budget)",
                                        budget.as_secs()
                                    );
                                }
                                tokio::time::sleep(delay).await;
                                delay = (delay * 2).min(max_backoff);
                                let current = inner.current.load(Ordering::Relaxed) % n;
                                match alive(current, &dead) {
                                    Some(j) => next = j,
                                    None => return Err(self.unreachable_error(what, &dead)),
                                }
                            }
                        }
                        Err(e) if collection_missing(&e) => {
                            // Found by an audit: a load whose collection was deleted under
                            // it was told to export or build into it first.
                            let why = if inner.loading.load(Ordering::Relaxed) {
                                "the collection was deleted during the load; rerunning the \
                                 same command makes it anew and loads every row"
                            } else {
                                "the collection does not exist (it was deleted, or never \
                                 made); export or build into it first"
                            };
                            return Err(self.no_collection(format!("{what}: {why}")));
                        }
                        Err(e) => return Err(self.rejected(format!("{what}: {}", describe(&e)))),
                    }
                }
                () = timer => {
                    let Some((after, j)) = hedge_to else { continue };
                    let waited: Vec<usize> = (0..n).filter(|&k| busy[k]).collect();
                    for &k in &waited {
                        if !inner.slow[k].swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                "{} has not answered in {} ms; asking {} too",
                                inner.urls[k],
                                after.as_millis(),
                                inner.urls[j]
                            );
                        }
                    }
                    busy[j] = true;
                    running.push(ask(j));
                    started += 1;
                    next = (j + 1) % n;
                }
            }
        }
    }

    /// The error of a call no node could be talked to for: each URL with why, and what
    /// `--qdrant` (or [`URL_ENV`], whichever gave the URLs) takes, as an answer that asking
    /// again does not change ([`Error::Rejected`]: none of them ever answered, so a wrong URL
    /// is likelier than a node down; it was "invalid value for --qdrant" even when the URLs
    /// were the variable's, found by a review); or, when a node among them had answered
    /// before (it is down, not a wrong URL), a failure of the server a later run may get
    /// past.
    fn unreachable_error(&self, what: &str, dead: &[Option<&'static str>]) -> Error {
        let each: Vec<String> = self
            .inner
            .urls
            .iter()
            .zip(dead)
            .map(|(u, why)| format!("{u}: {}", why.unwrap_or("no answer")))
            .collect();
        let was_up = (0..self.inner.clients.len())
            .any(|i| dead[i].is_some() && self.inner.answered[i].load(Ordering::Relaxed));
        if was_up {
            return self.remote(format!("{what}: cannot reach Qdrant: {}", each.join("; ")));
        }
        self.rejected(format!(
            "cannot reach Qdrant ({what}): {}; {} takes a node's gRPC port (the REST port + 1, \
             6334 by default), over http:// unless the server has TLS",
            each.join("; "),
            self.urls_named()
        ))
    }

    /// The error of a call that failed for good, with a hint for the usual mix-up.
    fn failed(&self, what: &str, mut why: String) -> Error {
        // What a REST port answers a gRPC client.
        if why.contains("h2 protocol error") {
            why.push_str(&format!(
                " (is {} the gRPC port, 6334 by default, and not the REST port, 6333?)",
                self.urls_named()
            ));
        }
        self.remote(format!("{what}: {why}"))
    }

    /// Whether the collection exists.
    pub async fn exists(&self) -> Result<bool> {
        self.call(
            "checking the collection",
            Hedge::Read,
            |c, name| async move { c.collection_exists(name).await },
        )
        .await
    }

    /// The collection's metadata, every key.
    async fn all_metadata(&self) -> Result<HashMap<String, Value>> {
        Ok(self.metadata_and_indexing().await?.0)
    }

    /// The collection's metadata, every key, and whether its vector indexing is off (an
    /// indexing threshold of 0, as a load sets it: [`Self::set_indexing`]), from one read.
    async fn metadata_and_indexing(&self) -> Result<(HashMap<String, Value>, bool)> {
        let info = self
            .call(
                "reading the collection info",
                Hedge::Read,
                |c, name| async move { c.collection_info(name).await },
            )
            .await?;
        let config = info.result.and_then(|r| r.config).unwrap_or_default();
        let off = config
            .optimizer_config
            .and_then(|o| o.indexing_threshold)
            .is_some_and(|t| t == 0);
        Ok((config.metadata, off))
    }

    /// How the collection stores its original vectors: `f32` (Qdrant's default) or `f16`
    /// ([`settings::CollectionSettings::f16`]), as `index info` names a local index's
    /// precision; another type is named as Qdrant names it. Checked first to be one unnamed
    /// vector of `dim` components compared by cosine, as relbert creates them
    /// ([`check_vector_params`]).
    pub async fn precision(&self, dim: u32) -> Result<String> {
        use qdrant_client::qdrant::{vectors_config::Config, Datatype};
        let info = self
            .call(
                "reading the collection info",
                Hedge::Read,
                |c, name| async move { c.collection_info(name).await },
            )
            .await?;
        let params = info
            .result
            .and_then(|r| r.config)
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config);
        let params = match params {
            Some(Config::Params(p)) => p,
            Some(Config::ParamsMap(_)) => {
                return Err(self.refused(
                    "the collection holds named vectors; relbert writes one unnamed vector \
                     per point, so its record was not written with these vectors",
                ))
            }
            None => {
                return Err(self.remote("the server did not say how the collection stores vectors"))
            }
        };
        check_vector_params(params.distance, params.size, dim).map_err(|m| self.refused(m))?;
        Ok(
            match params.datatype.and_then(|d| Datatype::try_from(d).ok()) {
                None | Some(Datatype::Default) | Some(Datatype::Float32) => "f32".into(),
                Some(Datatype::Float16) => "f16".into(),
                Some(other) => other.as_str_name().to_lowercase(),
            },
        )
    }

    /// The JSON string kept under `key` in the collection's metadata, if there is one.
    async fn metadata_text(&self, key: &str) -> Result<Option<String>> {
        let meta = self.all_metadata().await?;
        let Some(v) = meta.get(key) else {
            return Ok(None);
        };
        string_of(v)
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| self.not_relbert_s(key, None))
    }

    /// Keeps `value` (as one JSON string) under `key` in the collection's metadata, beside
    /// whatever else is there (Qdrant merges metadata updates).
    pub async fn set_metadata<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        self.set_metadata_together(vec![(key.to_string(), metadata_json(value)?)])
            .await
    }

    /// Keeps each `(key, text)` of `entries` (`text` as [`metadata_json`] makes it) in the
    /// collection's metadata in one update, beside whatever else is there: the cluster applies
    /// one update as one change, so no node shows some of the keys without the others (an
    /// added source and its load's first checkpoint: [`export::Loader::start`]).
    pub(crate) async fn set_metadata_together(&self, entries: Vec<(String, String)>) -> Result<()> {
        let meta: HashMap<String, serde_json::Value> = entries
            .into_iter()
            .map(|(key, text)| (key, serde_json::Value::String(text)))
            .collect();
        self.call(
            "updating the collection metadata",
            Hedge::Never,
            |c, name| {
                let b = UpdateCollectionBuilder::new(name).metadata(meta.clone());
                async move { c.update_collection(b).await }
            },
        )
        .await
        .map(|_| ())
    }

    /// Parses the JSON under `key` as a `T`; `None` when the key is absent.
    async fn metadata<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(text) = self.metadata_text(key).await? else {
            return Ok(None);
        };
        self.decode(key, &text).map(Some)
    }

    /// The JSON string `text` kept under `key`, as a `T`.
    fn decode<T: serde::de::DeserializeOwned>(&self, key: &str, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| self.not_relbert_s(key, Some(&e)))
    }

    /// The refusal of a collection whose metadata under relbert's `key` is not what relbert
    /// writes there (not a JSON string, or not the record's JSON: `why`): another tool's
    /// collection, or one edited by hand. Reading it again gives the same answer, so it is a
    /// refusal ([`Error::Refused`]), not a failure a rerun could get past.
    fn not_relbert_s(&self, key: &str, why: Option<&serde_json::Error>) -> Error {
        let what = match why {
            Some(e) => format!("is not what relbert writes there ({e})"),
            None => "is not the JSON string relbert writes".to_string(),
        };
        self.refused(format!(
            "collection metadata {key:?} {what}: the collection was not written by relbert, \
             or its metadata was changed by hand; choose another --collection"
        ))
    }

    /// relbert's record in the collection's metadata; `None` when the collection has none
    /// (not written by relbert, or a server that keeps no collection metadata).
    pub async fn record(&self) -> Result<Option<CollectionRecord>> {
        self.metadata(METADATA_KEY).await
    }

    /// How far an interrupted export or build got (under `key`: [`progress_key`]); `None`
    /// when none ran.
    pub async fn progress(&self, key: &str) -> Result<Option<LoadProgress>> {
        self.metadata(key).await
    }

    /// [`Self::progress`] as each node holds it, every node asked at once (each given
    /// [`READ_NOTICE`]); nodes that do not answer are left out, and when none answers it is
    /// [`Self::progress`]'s one answer. Metadata changes go through the cluster's consensus
    /// and a read ([`Self::call`]) sticks to one node, which may not have applied the latest
    /// yet; the node that took a write has applied it before answering, so a checkpoint
    /// written and acknowledged shows on at least one node here (found by a review: two
    /// loads finishing at once each read the other's checkpoint from a node behind, and
    /// both left indexing off for good).
    pub async fn progress_on_every_node(&self, key: &str) -> Result<Vec<Option<LoadProgress>>> {
        let mut seen: Vec<_> = self
            .progress_by_node(key)
            .await?
            .into_iter()
            .flatten()
            .collect();
        if seen.is_empty() {
            seen.push(self.progress(key).await?);
        }
        Ok(seen)
    }

    /// [`Self::progress_on_every_node`] node by node, in the order of the nodes given, with
    /// `None` for a node that did not answer: a node applies the cluster's writes in their
    /// order, so one that showed a checkpoint and later shows another shows a later write,
    /// whatever the two say of their time (`export::same_source_ended`).
    pub(crate) async fn progress_by_node(
        &self,
        key: &str,
    ) -> Result<Vec<Option<Option<LoadProgress>>>> {
        let inner = &self.inner;
        let mut asks: FuturesUnordered<_> = inner
            .clients
            .iter()
            .enumerate()
            .map(|(node, client)| {
                let (client, name) = (client.clone(), inner.collection.clone());
                // As long as a write may take (found by review R20: at 3 s, the one node that
                // had applied a finished load's checkpoint, slow after a bulk upload, was
                // skipped, and the finishing load judged it live).
                async move {
                    let answer =
                        tokio::time::timeout(WRITE_HEDGE, client.collection_info(name)).await;
                    (node, answer)
                }
            })
            .collect();
        let mut seen = vec![None; inner.clients.len()];
        while let Some((node, answer)) = asks.next().await {
            let Ok(Ok(info)) = answer else { continue };
            let meta = info
                .result
                .and_then(|r| r.config)
                .map(|c| c.metadata)
                .unwrap_or_default();
            seen[node] = Some(match meta.get(key) {
                None => None,
                Some(v) => {
                    let text = string_of(v).ok_or_else(|| self.not_relbert_s(key, None))?;
                    Some(self.decode(key, text)?)
                }
            });
        }
        Ok(seen)
    }

    /// The record of the points `relbert index remove` has deleted ([`RemovalRecord`]);
    /// empty when it never has. A part that is not what relbert writes is refused, as any of
    /// relbert's keys.
    pub async fn removal_record(&self) -> Result<RemovalRecord> {
        let meta = self.all_metadata().await?;
        let mut keys: Vec<&String> = meta
            .keys()
            .filter(|k| k.starts_with(REMOVED_PREFIX))
            .collect();
        keys.sort();
        let mut record = RemovalRecord::default();
        for key in keys {
            let text = meta.get(key).and_then(string_of);
            let text = text.ok_or_else(|| self.not_relbert_s(key, None))?;
            let part: RemovedPart = self.decode(key, text)?;
            let ids = unpack_ids(&part.ids).ok_or_else(|| {
                self.refused(format!(
                    "collection metadata {key:?} does not hold point ids as relbert writes \
                     them: its metadata was changed by hand; choose another --collection"
                ))
            })?;
            record.parts.push((part.sources, ids));
        }
        Ok(record)
    }

    /// Records that `ids` are removed after `sources` were loaded, under run `run`
    /// ([`RemovedPart`], [`REMOVED_IDS_PER_PART`] ids a key). Each key is written once, so
    /// nothing another removal wrote is read and rewritten.
    pub async fn record_removal(
        &self,
        run: &str,
        sources: &[String],
        ids: &[String],
    ) -> Result<()> {
        let tags: Vec<String> = sources.iter().map(|s| source_tag(s)).collect();
        for (n, chunk) in ids.chunks(REMOVED_IDS_PER_PART).enumerate() {
            let packed = pack_ids(chunk).ok_or_else(|| {
                Error::Internal(format!("a point id to remove is not a UUID: {chunk:?}"))
            })?;
            let part = RemovedPart {
                sources: tags.clone(),
                ids: packed,
            };
            self.set_metadata(&removed_key(run, n), &part).await?;
        }
        Ok(())
    }

    /// The server's version as it reports it (`health_check`), e.g. `1.18.3`.
    pub async fn server_version(&self) -> Result<String> {
        let reply = self
            .call(
                "asking the server's version",
                Hedge::Read,
                |q, _| async move { q.health_check().await },
            )
            .await?;
        Ok(reply.version)
    }

    /// The sources added to the collection after the one it was made from, in no particular
    /// order (see [`ADDED_SOURCE_PREFIX`]).
    pub async fn added_sources(&self) -> Result<Vec<String>> {
        let meta = self.all_metadata().await?;
        meta.iter()
            .filter(|(key, _)| key.starts_with(ADDED_SOURCE_PREFIX))
            .map(|(key, value)| {
                let text = string_of(value).unwrap_or_default();
                self.decode::<AddedSource>(key, text).map(|a| a.source)
            })
            .collect()
    }

    /// The record, the added sources and which loads are unfinished, from one read of the
    /// collection's metadata.
    pub async fn state(&self) -> Result<CollectionState> {
        let (meta, indexing_off) = self.metadata_and_indexing().await?;
        let text = |key: &str| -> Result<Option<&str>> {
            match meta.get(key) {
                None => Ok(None),
                Some(v) => string_of(v)
                    .map(Some)
                    .ok_or_else(|| self.not_relbert_s(key, None)),
            }
        };
        let record: Option<CollectionRecord> = match text(METADATA_KEY)? {
            Some(t) => Some(self.decode(METADATA_KEY, t)?),
            None => None,
        };
        let mut paths = HashMap::new();
        if let Some(CollectionRecord {
            source,
            path: Some(path),
            ..
        }) = &record
        {
            paths.insert(source.clone(), path.clone());
        }
        let mut added = meta
            .iter()
            .filter(|(key, _)| key.starts_with(ADDED_SOURCE_PREFIX))
            .map(|(key, value)| {
                let text = string_of(value).unwrap_or_default();
                let a = self.decode::<AddedSource>(key, text)?;
                if let Some(path) = a.path {
                    paths.insert(a.source.clone(), path);
                }
                Ok(a.source)
            })
            .collect::<Result<Vec<_>>>()?;
        added.sort();
        let mut unfinished = Vec::new();
        if let Some(r) = &record {
            for source in std::iter::once(&r.source).chain(&added) {
                let key = progress_key(&r.source, source);
                let progress: Option<LoadProgress> = match text(&key)? {
                    Some(t) => Some(self.decode(&key, t)?),
                    None => None,
                };
                match progress {
                    Some(p) if p.rows >= p.total || p.abandoned => {}
                    p => unfinished.push(Unfinished {
                        source: source.clone(),
                        rows: p.as_ref().map(|p| p.rows),
                        total: p.as_ref().map(|p| p.total),
                        collection: self.collection().to_string(),
                        indexing_off,
                        at: p.as_ref().and_then(|p| p.at),
                    }),
                }
            }
        }
        Ok(CollectionState {
            record,
            added,
            paths,
            unfinished,
        })
    }

    /// How many of the points `ids` the collection holds (exact; several requests for many
    /// ids).
    pub async fn count_ids(&self, ids: &[String]) -> Result<u64> {
        self.count_ids_read(ids, None).await
    }

    /// [`Self::count_ids`], every active replica of each shard asked (`every_replica`).
    pub async fn count_ids_on_every_replica(&self, ids: &[String]) -> Result<u64> {
        self.count_ids_read(ids, Some(every_replica())).await
    }

    async fn count_ids_read(
        &self,
        ids: &[String],
        read: Option<read_consistency::Value>,
    ) -> Result<u64> {
        let mut found = 0;
        for chunk in ids.chunks(IDS_PER_COUNT) {
            let filter = Filter::must([Condition::has_id(chunk.iter().map(|s| s.as_str()))]);
            let r = self
                .call("counting a source's points", Hedge::Scan, |c, name| {
                    let mut b = CountPointsBuilder::new(name)
                        .filter(filter.clone())
                        .exact(true);
                    if let Some(read) = &read {
                        b = b.read_consistency(*read);
                    }
                    async move { c.count(b).await }
                })
                .await?;
            found += r.result.map(|r| r.count).unwrap_or(0);
        }
        Ok(found)
    }

    /// Which of the points `ids` the collection holds, every active replica of each shard
    /// asked (`every_replica`): `IDS_PER_COUNT` ids a request, without payloads or
    /// vectors.
    pub async fn held_ids(&self, ids: &[String]) -> Result<std::collections::HashSet<String>> {
        let mut held = std::collections::HashSet::new();
        for chunk in ids.chunks(IDS_PER_COUNT) {
            let wanted: Vec<qdrant_client::qdrant::PointId> =
                chunk.iter().map(|id| id.clone().into()).collect();
            let got = self
                .call("looking up points", Hedge::Scan, |q, name| {
                    let b = GetPointsBuilder::new(name, wanted.clone())
                        .with_payload(false)
                        .with_vectors(false)
                        .read_consistency(every_replica());
                    async move { q.get_points(b).await }
                })
                .await?;
            held.extend(
                got.result
                    .iter()
                    .filter_map(|p| p.id.as_ref().and_then(export::id_text)),
            );
        }
        Ok(held)
    }

    /// Turns Qdrant's vector indexing of new segments off (during a bulk load) or back on at
    /// [`settings::INDEXING_THRESHOLD_KB`]; see [`export`] for why.
    pub async fn set_indexing(&self, on: bool) -> Result<()> {
        let threshold = if on {
            settings::INDEXING_THRESHOLD_KB
        } else {
            // Noted before the request: one that fails may still have been applied, and a
            // restore that turns indexing on needlessly costs less than one left off.
            self.inner.indexing_turned_off.store(true, Ordering::SeqCst);
            0
        };
        self.call("setting the indexing threshold", Hedge::Never, |c, name| {
            let b = UpdateCollectionBuilder::new(name).optimizers_config(
                OptimizersConfigDiffBuilder::default().indexing_threshold(threshold),
            );
            async move { c.update_collection(b).await }
        })
        .await?;
        if on {
            self.inner
                .indexing_turned_off
                .store(false, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Whether this connection turned the collection's indexing off ([`Self::set_indexing`])
    /// and has not turned it back on since.
    pub fn turned_indexing_off(&self) -> bool {
        self.inner.indexing_turned_off.load(Ordering::SeqCst)
    }

    /// Turns indexing back on ([`Self::set_indexing`]) if this connection turned it off
    /// ([`Self::turned_indexing_off`]), giving up after `within`: for a load stopped by a
    /// signal, which must end promptly ([`Loader::abandon`] does this for a load that
    /// failed). A load stopped before it turned indexing off leaves it as it is: another
    /// load may be running with it off. Blocking; callable from any thread but the
    /// connection's own runtime's (a signal watcher's, say) while another thread waits on a
    /// call. Returns whether indexing is as this connection found it (turned back on, or
    /// never turned off); when not, the next load that finishes (a rerun of this one, or
    /// another source's once this one's checkpoint is [`LIVE_LOAD_WINDOW`] old), or `relbert
    /// index remove --collection NAME --abandoned-load SOURCE`, turns it on.
    ///
    /// [`Loader::abandon`]: export::Loader::abandon
    ///
    /// The load's checkpoint is first marked ended (`export::LoadMark::end`), and indexing
    /// is left off, as it was, while a load of another source looks alive (that load turns
    /// it on as it ends: the rule of a load that finishes); that counts as restored. Before
    /// (review R21) it was turned on under such a load, since this load's checkpoint, still
    /// looking alive, would have kept the other load from turning it on.
    ///
    /// The mark and the look get half of `within` at most, so that a slow or failing node
    /// does not spend the time turning indexing on needs (found by review Q: all of it went
    /// to them, and a signal's second of grace ran out with indexing left off); past that,
    /// indexing is turned on with the rest. True when this load never turned it off.
    pub fn restore_indexing_within(&self, within: Duration) -> bool {
        let mark = self.load_mark();
        let turned_off = self.turned_indexing_off();
        if mark.is_none() && !turned_off {
            return true;
        }
        let started = std::time::Instant::now();
        let c = self.clone();
        let looked = self.block_on(async move {
            tokio::time::timeout(within / 2, export::end_and_look(&c, mark.as_deref())).await
        });
        if !turned_off {
            return true;
        }
        let looked = match looked {
            Ok(Ok(looked)) => looked.map_err(|e| e.to_string()),
            Ok(Err(_)) => Err(format!("took over {} ms", (within / 2).as_millis())),
            Err(e) => Err(e.to_string()),
        };
        // Left off for a live load of another source: as this connection found it.
        if !export::indexing_on_after_failed_load(looked, turned_off) {
            return true;
        }
        let rest = within.saturating_sub(started.elapsed());
        let c = self.clone();
        matches!(
            self.block_on(async move { tokio::time::timeout(rest, c.set_indexing(true)).await }),
            Ok(Ok(Ok(())))
        )
    }

    /// Records (or, with `None`, forgets) the checkpoint of the load running on this
    /// connection ([`Inner::load_mark`]).
    pub(crate) fn set_load_mark(&self, mark: Option<Arc<export::LoadMark>>) {
        // A poisoned lock only means a panic elsewhere held it: the slot is still sound.
        let mut slot = self
            .inner
            .load_mark
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *slot = mark;
    }

    /// The checkpoint of the load running on this connection, if one does.
    fn load_mark(&self) -> Option<Arc<export::LoadMark>> {
        self.inner
            .load_mark
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Gives up the unfinished load of `source` into the collection (its source is gone:
    /// no rerun can finish it): marks its checkpoint [`LoadProgress::abandoned`], so the
    /// collection is no longer called unfinished for it and `index remove` takes pairs out
    /// of it again; the points it wrote stay. Turns the collection's indexing back on when
    /// no other load is unfinished (a killed load leaves it off). Refused when `source` has
    /// no unfinished load (the ones there are named). Gives the checkpoint as it was.
    pub async fn abandon_load(&self, source: &str) -> Result<LoadProgress> {
        let state = self.state().await?;
        self.abandon_load_as_read(&state, source).await
    }

    /// [`Self::abandon_load`], judged by `state` ([`Self::state`], read before): the load's
    /// checkpoint is read again just before it is marked given up, and a checkpoint changed
    /// since `state` was read is refused, the mark unwritten (found by a review: a rerun of
    /// the load that started between the read and the write was marked given up while it
    /// ran). Qdrant offers no conditional write of collection metadata, so a rerun starting
    /// within that last read and write is not seen.
    pub async fn abandon_load_as_read(
        &self,
        state: &CollectionState,
        source: &str,
    ) -> Result<LoadProgress> {
        let Some(record) = &state.record else {
            return Err(self.refused(format!(
                "the collection has no {METADATA_KEY:?} metadata: it was not written by relbert"
            )));
        };
        let Some(u) = state.unfinished.iter().find(|u| u.source == source) else {
            let loads: Vec<String> = state
                .unfinished
                .iter()
                .map(|u| format!("'{}'", u.source))
                .collect();
            let there = if loads.is_empty() {
                "no load into it is unfinished".to_string()
            } else {
                format!("the unfinished ones are {}", loads.join(", "))
            };
            return Err(self.refused(format!(
                "no load of {source:?} into the collection is unfinished ({there}); nothing \
                 was changed"
            )));
        };
        if let Some(ago) = live_for(u.at, unix_now()) {
            return Err(self.refused(format!(
                "the load of {source:?} into the collection looks alive: its checkpoint was \
                 written {} s ago, and a running load rewrites it every {} s (giving it up now \
                 would let it write on); stop that load first (a rerun of it resumes), \
                 or, if it is not running any more, run this again once its checkpoint is {} s \
                 old; nothing was changed",
                ago.as_secs(),
                export::HEARTBEAT.as_secs(),
                LIVE_LOAD_WINDOW.as_secs()
            )));
        }
        let was = LoadProgress {
            source: source.to_string(),
            rows: u.rows.unwrap_or(0),
            total: u.total.unwrap_or(0),
            abandoned: false,
            at: u.at,
        };
        let given_up = LoadProgress {
            abandoned: true,
            at: None,
            ..was.clone()
        };
        let key = progress_key(&record.source, source);
        // Before indexing is touched (found by a review: indexing was turned on first, so a
        // rerun caught here streamed with it on, and the refusal did not say so).
        if self.rewritten_since(&key, u.at).await? {
            return Err(self.refused(format!(
                "the load of {source:?} into the collection wrote its checkpoint again while \
                 it was being given up: it runs again (a rerun of it resumes the load); it was \
                 not given up, and nothing was changed"
            )));
        }
        // Indexing first: a failure (or a kill) between the two leaves the load unfinished,
        // so a rerun of this command does both; the other way round, the mark would hide
        // indexing left off, and a rerun would be refused.
        let turned_on = state.unfinished.len() == 1 && u.indexing_off;
        if turned_on {
            self.set_indexing(true).await?;
        }
        // Again, as late as can be: a rerun that started while indexing was turned on. Indexing
        // stays on then (found by review R20: turning it off again here could leave it off for
        // good, when the change seen was another give-up's mark or a rerun that had already
        // finished); a rerun loads more slowly with it on, and turns it on at its end anyway.
        if self.rewritten_since(&key, u.at).await? {
            let indexing = if turned_on {
                "the collection's indexing, turned on for the give-up, stays on"
            } else {
                "nothing was changed"
            };
            return Err(self.refused(format!(
                "the load of {source:?} into the collection wrote its checkpoint again (or \
                 another --abandoned-load marked it) while it was being given up: it was not \
                 given up by this run, and {indexing}"
            )));
        }
        self.set_metadata(&key, &given_up).await?;
        Ok(was)
    }

    /// Whether any node shows the checkpoint under `key` written at another time than `at`
    /// (the time of the checkpoint read before, `None`: none) or given up: by a rerun of the
    /// load (each checkpoint is stamped with its time), or another give-up. Every node is
    /// asked ([`Self::progress_on_every_node`]); the checkpoint read was over
    /// [`LIVE_LOAD_WINDOW`] old, so every node has applied it, and another time on any node
    /// is a later write, whatever its writer's clock says.
    async fn rewritten_since(&self, key: &str, at: Option<u64>) -> Result<bool> {
        Ok(self
            .progress_on_every_node(key)
            .await?
            .iter()
            .flatten()
            // Any other time, not only a later one: a rerun on a machine whose clock runs
            // behind writes an earlier one (found by review R20).
            .any(|p| p.abandoned || p.at != at))
    }

    /// The exact number of points in the collection.
    pub async fn count(&self) -> Result<u64> {
        self.count_read(None).await
    }

    /// [`Self::count`], every active replica of each shard asked (`every_replica`).
    pub async fn count_on_every_replica(&self) -> Result<u64> {
        self.count_read(Some(every_replica())).await
    }

    async fn count_read(&self, read: Option<read_consistency::Value>) -> Result<u64> {
        let r = self
            .call("counting points", Hedge::Scan, |c, name| {
                let mut b = CountPointsBuilder::new(name).exact(true);
                if let Some(read) = &read {
                    b = b.read_consistency(*read);
                }
                async move { c.count(b).await }
            })
            .await?;
        Ok(r.result.map(|r| r.count).unwrap_or(0))
    }
}

/// The read consistency that asks every active replica of a shard ([`ReadConsistencyType`]
/// `All`) rather than one: Qdrant then answers a count with the smallest replica's and a
/// lookup with the points every replica holds, and fails when a replica does not answer
/// (retried as any failure). A removal reads so: one replica asked alone answers from
/// where it is, and one behind the others (catching up after a restart) made a removal
/// that had done its work report another writer's.
fn every_replica() -> read_consistency::Value {
    read_consistency::Value::Type(ReadConsistencyType::All as i32)
}

/// Why a collection's vectors (Qdrant's `distance` code and `size`) cannot hold relbert's
/// vectors of `dim` components, if they cannot. relbert's scores are cosines and its
/// queries name no vector, so a collection with another distance (its record copied from a
/// relbert collection, or made by hand) would answer with other scores in another order.
pub fn check_vector_params(distance: i32, size: u64, dim: u32) -> std::result::Result<(), String> {
    use qdrant_client::qdrant::Distance;
    if distance != Distance::Cosine as i32 {
        let name = Distance::try_from(distance)
            .map_or_else(|_| distance.to_string(), |d| d.as_str_name().to_string());
        return Err(format!(
            "the collection compares vectors by {name} distance, and relbert's scores are \
             cosines (it creates collections with Cosine); its relbert record does not \
             describe these vectors: choose another --collection"
        ));
    }
    if size != u64::from(dim) {
        return Err(format!(
            "the collection's vectors have {size} components, and its relbert record says \
             {dim}: choose another --collection"
        ));
    }
    Ok(())
}

/// `value` as the JSON text relbert keeps under one key of a collection's metadata
/// ([`Connection::set_metadata`]).
pub(crate) fn metadata_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Internal(e.to_string()))
}

/// The string inside a payload or metadata value, if it holds one.
pub fn string_of(v: &Value) -> Option<&str> {
    match &v.kind {
        Some(Kind::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// How long [`QdrantStore::open`] waits before reading an unfinished load's checkpoint again.
pub(crate) const RECHECK_UNFINISHED: Duration = Duration::from_millis(500);

/// How many times [`QdrantStore::open`] reads a collection that does not show, or shows
/// without relbert's record, again, [`RECHECK_UNFINISHED`] apart, before refusing it: a
/// collection made a moment ago through another node may not show on this one yet, nor its
/// record ([`patiently`]).
pub(crate) const RECHECK_RECORD: usize = 6;

/// Reads with `read` until `shown` takes its answer for the collection as it is, at most
/// `looks` times, `every` apart, and gives the last answer. A node applies a collection's
/// creation and its metadata through the cluster's consensus, so one asked right after
/// another node took them (or one just restarted) may not show them yet where a read a
/// moment later would: an answer that can be such a lag (a collection or a record that
/// does not show) is not taken at once. [`Connection::call`] already retries transient
/// failures; this waits out answers that are well-formed but early. Each early answer is
/// logged (debug) with `what`, so the wait is seen with `RELBERT_LOG=debug`.
pub(crate) async fn patiently<T, F, Fut>(
    what: &str,
    looks: usize,
    every: Duration,
    shown: impl Fn(&Result<T>) -> bool,
    mut read: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut look = 1;
    loop {
        let answer = read().await;
        if shown(&answer) || look >= looks {
            if look > 1 {
                tracing::debug!("{what}: answer after {look} look(s)");
            }
            return answer;
        }
        tracing::debug!(
            "{what}: not shown yet (look {look} of {looks}), perhaps not applied on the node \
             asked; reading again in {every:?}"
        );
        look += 1;
        tokio::time::sleep(every).await;
    }
}

/// The collection's state as [`QdrantStore::open`] takes it: read with `exists` and `state`
/// (a [`Connection`]'s, or a test's stubs) until the collection shows with relbert's
/// record, at most [`RECHECK_RECORD`] more times `every` apart ([`patiently`]); then once
/// more after `every` when a load shows unfinished (a node may not have applied its last
/// checkpoint yet). A collection that never shows is [`Error::NoCollection`]; one that
/// never shows a record, refused as not relbert's. Gives the record and the state it is in.
pub(crate) async fn open_state<E, EF, S, SF>(
    c: &Connection,
    every: Duration,
    exists: E,
    state: S,
) -> Result<(CollectionRecord, CollectionState)>
where
    E: Fn() -> EF,
    EF: Future<Output = Result<bool>>,
    S: Fn() -> SF,
    SF: Future<Output = Result<CollectionState>>,
{
    let what = format!("{}: opening the collection", c.target());
    let (exists, state) = (&exists, &state);
    let mut read = move || async move {
        if !exists().await? {
            return Err(c.no_collection(
                "no such collection; export an index into it first \
                 (relbert index export --index DIR --qdrant URL --collection NAME)",
            ));
        }
        state().await
    };
    let shown = |r: &Result<CollectionState>| match r {
        Ok(s) => s.record.is_some(),
        Err(e) => !matches!(e, Error::NoCollection { .. }),
    };
    let mut found = patiently(&what, RECHECK_RECORD + 1, every, shown, &mut read).await?;
    let Some(record) = found.record.clone() else {
        return Err(c.refused(format!(
            "the collection has no {METADATA_KEY:?} metadata, so the model its vectors came \
             from is unknown: it was not written by relbert, or the server keeps no \
             collection metadata (Qdrant 1.16 or later does)"
        )));
    };
    // Counted apart: a record that has only just shown up is the likeliest to come without
    // its last checkpoint. A second read that lags more than the first is not taken.
    if !found.unfinished.is_empty() {
        tokio::time::sleep(every).await;
        match read().await {
            Ok(again) if again.record.as_ref() == Some(&record) => found = again,
            Ok(_) | Err(Error::NoCollection { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((record, found))
}

/// How often a [`QdrantStore`] reads the collection's record again while it answers
/// (`query --collection` reading lines): as often as `serve --collection` follows one.
pub const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// What a [`QdrantStore`] last found of the collection it answers from ([`QdrantStore::follow`]).
struct Look {
    /// When it was read; `None`: read it before the next answer.
    at: Option<std::time::Instant>,
    /// The record read then, which may be a collection re-made since the store was opened
    /// (with the same pair function).
    record: CollectionRecord,
    /// The last read found the collection gone: the next reads are not patient (a read
    /// waits for a collection re-made through another node to show; a stream of lines
    /// after a deletion waited ~3 s on each).
    gone: bool,
}

/// A Qdrant collection written by relbert, as a [`RelationStore`].
pub struct QdrantStore {
    conn: Connection,
    record: CollectionRecord,
    added: Vec<String>,
    paths: HashMap<String, String>,
    unfinished: Vec<Unfinished>,
    precision: String,
    /// The record as last read ([`Self::follow`]).
    look: std::sync::Mutex<Look>,
    /// Whether lookups and searches [`Self::follow`] the record ([`Self::following`]).
    follows: bool,
}

impl QdrantStore {
    /// Opens `collection` on the nodes `urls`: it must exist and carry relbert's record
    /// (both read again for a few seconds while they do not show: `RECHECK_RECORD`).
    pub fn open(urls: &[String], collection: &str) -> Result<Self> {
        Self::open_with_origin(urls, UrlOrigin::Flag, collection)
    }

    /// [`Self::open`], the URLs having come from `origin`, which messages about them name.
    pub fn open_with_origin(urls: &[String], origin: UrlOrigin, collection: &str) -> Result<Self> {
        let conn = Connection::with_origin(urls, origin, collection)?;
        let c = conn.clone();
        let (record, state, precision) = conn.block_on(async move {
            let (record, state) =
                open_state(&c, RECHECK_UNFINISHED, || c.exists(), || c.state()).await?;
            let precision = c.precision(record.dim).await?;
            Ok::<_, Error>((record, state, precision))
        })??;
        // Said once, when the store is opened: a query over a partial collection answers
        // from the pairs it holds, which is not what the source would answer.
        for u in &state.unfinished {
            tracing::warn!("{}: {}", conn.target(), u.describe());
        }
        Ok(QdrantStore {
            conn,
            look: std::sync::Mutex::new(Look {
                at: Some(std::time::Instant::now()),
                record: record.clone(),
                gone: false,
            }),
            record,
            added: state.added,
            paths: state.paths,
            unfinished: state.unfinished,
            precision,
            follows: false,
        })
    }

    /// This store, reading the collection's record again before its lookups and searches
    /// ([`Self::follow`]): for `query --collection` reading lines, which answers for as long
    /// as its input lasts. `serve --collection` follows the record itself, on a timer.
    pub fn following(self) -> Self {
        QdrantStore {
            follows: true,
            ..self
        }
    }

    /// Reads the collection's record again, at most every [`RECHECK_EVERY`] while it holds
    /// the vectors the store was opened with, and on every call after it did not: a store
    /// that answers for long (`query --collection` reading lines) answers from the
    /// collection as it is now. Found by an audit: a stream kept answering after the
    /// collection was deleted and re-made with another model, its queries encoded with the
    /// first model searched among the second's vectors (exit 0, not a word). Refused
    /// ([`Error::Refused`]) when the collection now holds another pair function's or width's
    /// vectors, or lost relbert's record; [`Error::NoCollection`] when it is gone. A
    /// collection re-made with the same pair function (another source) is followed, said
    /// once on stderr, as `serve --collection` follows it.
    pub fn follow(&self) -> Result<()> {
        if !self.follows {
            return Ok(());
        }
        let mut look = self.look.lock().unwrap_or_else(|p| p.into_inner());
        if look.at.is_some_and(|at| at.elapsed() < RECHECK_EVERY) {
            return Ok(());
        }
        // Read again on the next call until a read finds the collection fit.
        look.at = None;
        let c = self.conn.clone();
        let looks = if look.gone { 1 } else { RECHECK_RECORD + 1 };
        let what = format!("{}: reading the collection's record again", c.target());
        // Read as `open` reads it: a collection re-made a moment ago through another node
        // may not show on the one asked yet, nor its record.
        let state = self.conn.block_on(async move {
            let shown = |r: &Result<CollectionState>| match r {
                Ok(s) => s.record.is_some(),
                Err(e) => !matches!(e, Error::NoCollection { .. }),
            };
            patiently(&what, looks, RECHECK_UNFINISHED, shown, || async {
                if !c.exists().await? {
                    return Err(c.no_collection(
                        "the collection no longer exists (it was deleted); this query was not \
                         answered",
                    ));
                }
                c.state().await
            })
            .await
        })?;
        look.gone = matches!(state, Err(Error::NoCollection { .. }));
        let state = state?;
        let opened = &self.record;
        let Some(now) = state.record else {
            return Err(self.conn.refused(
                "the collection no longer carries relbert's record (it was deleted and \
                 re-created by something else); this query was not answered",
            ));
        };
        if !crate::indexing::same_function(&now.encoder, &opened.encoder) || now.dim != opened.dim {
            let mut differs = crate::indexing::function_difference(&now.encoder, &opened.encoder);
            if now.dim != opened.dim {
                differs.push(format!("{}-d vectors, not {}-d", now.dim, opened.dim));
            }
            return Err(self.conn.refused(format!(
                "the collection now holds another encoder's vectors ({}) than the model this \
                 query encodes with: it was deleted and re-made since the queries began; this \
                 query was not answered (start the query again to ask the collection as it is \
                 now)",
                differs.join("; ")
            )));
        }
        if now != look.record {
            tracing::info!(
                "{}: the collection was re-made (now from {}, the same model's vectors); \
                 answering from it",
                self.conn.target(),
                now.source
            );
            for u in &state.unfinished {
                tracing::warn!("{}: {}", self.conn.target(), u.describe());
            }
            look.record = now;
        }
        look.at = Some(std::time::Instant::now());
        Ok(())
    }

    /// [`Self::follow`]'s next call reads the record again (a request found the collection
    /// gone: it may be re-made before the throttle would look).
    fn look_again(&self, e: &Error) {
        if matches!(e, Error::NoCollection { .. }) {
            self.look.lock().unwrap_or_else(|p| p.into_inner()).at = None;
        }
    }

    /// The sources whose load into the collection had not finished when the store was
    /// opened (empty for a complete collection).
    pub fn unfinished(&self) -> &[Unfinished] {
        &self.unfinished
    }

    /// What relbert recorded in the collection.
    pub fn record(&self) -> &CollectionRecord {
        &self.record
    }

    /// The sources added beside [`CollectionRecord::source`] (`--add`), sorted; read when
    /// the store was opened.
    pub fn added_sources(&self) -> &[String] {
        &self.added
    }

    /// What the collection's metadata said when the store was opened
    /// ([`Connection::state`]): its record, added sources, their recorded paths and the
    /// loads not finished.
    pub fn state(&self) -> CollectionState {
        CollectionState {
            record: Some(self.record.clone()),
            added: self.added.clone(),
            paths: self.paths.clone(),
            unfinished: self.unfinished.clone(),
        }
    }

    /// How the collection stores its original vectors (`f32` or `f16`, as a local index's
    /// precision is named); read when the store was opened.
    pub fn precision(&self) -> &str {
        &self.precision
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl RelationStore for QdrantStore {
    fn describe(&self) -> String {
        self.conn.target()
    }

    fn encoder(&self) -> &EncoderInfo {
        &self.record.encoder
    }

    fn dim(&self) -> usize {
        self.record.dim as usize
    }

    fn count(&self) -> Result<u64> {
        let c = self.conn.clone();
        self.conn.block_on(async move { c.count().await })?
    }

    fn lookup(&self, head: &str, tail: &str) -> Result<Option<Vec<f32>>> {
        self.follow()?;
        self.lookup_now(head, tail)
            .inspect_err(|e| self.look_again(e))
    }

    fn search(&self, vector: &[f32], req: &SearchRequest<'_>) -> Result<Vec<QueryHit>> {
        self.follow()?;
        self.search_now(vector, req)
            .inspect_err(|e| self.look_again(e))
    }
}

impl QdrantStore {
    /// [`RelationStore::lookup`], without [`Self::follow`].
    fn lookup_now(&self, head: &str, tail: &str) -> Result<Option<Vec<f32>>> {
        let c = self.conn.clone();
        // Every id the pair may have (one for ASCII): a collection written before ids were
        // canonical keeps a decomposed spelling under its own id.
        let ids = spelling_ids(head, tail);
        let (head, tail) = (head.to_string(), tail.to_string());
        self.conn.block_on(async move {
            let got = c
                .call("looking up a pair", Hedge::Read, |q, name| {
                    let ids: Vec<qdrant_client::qdrant::PointId> =
                        ids.iter().map(|id| id.clone().into()).collect();
                    async move {
                        q.get_points(
                            GetPointsBuilder::new(name, ids)
                                .with_vectors(true)
                                .with_payload(true),
                        )
                        .await
                    }
                })
                .await?;
            if got.result.is_empty() {
                return Ok(None);
            }
            // The point of the canonical id first, as a local index finds the spelling it
            // stored; each must be the pair, in one spelling or another.
            let canonical = point_id(&head, &tail);
            let mut points = got.result;
            points.sort_by_key(|p| {
                p.id.as_ref().and_then(export::id_text).as_deref() != Some(canonical.as_str())
            });
            let Some(p) = points.into_iter().next() else {
                return Ok(None);
            };
            let field = |k: &str| p.payload.get(k).and_then(string_of);
            let same = match (field("head"), field("tail")) {
                (Some(h), Some(t)) => {
                    relbert_index::pairs::same_spelling((h, t), (head.as_str(), tail.as_str()))
                }
                _ => false,
            };
            if !same {
                return Err(c.remote(format!(
                    "point {} is not the pair ({head:?}, {tail:?}) its id is made from",
                    p.id.as_ref()
                        .and_then(export::id_text)
                        .unwrap_or_else(|| canonical.clone())
                )));
            }
            use qdrant_client::qdrant::vector_output::Vector;
            match p.vectors.and_then(|v| v.get_vector()) {
                Some(Vector::Dense(d)) => Ok(Some(d.data)),
                _ => Err(c.remote("a stored point has no dense vector")),
            }
        })?
    }

    /// [`RelationStore::search`], without [`Self::follow`].
    fn search_now(&self, vector: &[f32], req: &SearchRequest<'_>) -> Result<Vec<QueryHit>> {
        // As the local index answers: no results asked, none given (Qdrant refuses limit 0).
        if req.k == 0 {
            return Ok(Vec::new());
        }
        let mut must_not = Vec::new();
        if let Some((a, b)) = req.exclude_pair {
            // Whatever spelling the pair was stored in (see `lookup`).
            must_not.push(Condition::has_id(spelling_ids(a, b)));
        }
        if !req.exclude_words.is_empty() {
            must_not.push(Condition::matches(
                "words",
                with_nfc_forms(req.exclude_words.to_vec()),
            ));
        }
        let filter = Filter::must_not(must_not);
        let params = settings::search_params(req.exact, req.ef.max(req.k));
        let (vector, k) = (vector.to_vec(), req.k as u64);
        let hedge = if req.exact { Hedge::Scan } else { Hedge::Read };
        let c = self.conn.clone();
        self.conn.block_on(async move {
            let r = c
                .call("searching", hedge, |q, name| {
                    let b = QueryPointsBuilder::new(name)
                        .query(vector.clone())
                        .limit(k)
                        .filter(filter.clone())
                        .params(params)
                        .with_payload(true);
                    async move { q.query(b).await }
                })
                .await?;
            r.result
                .into_iter()
                .map(|p| {
                    let field = |k: &str| p.payload.get(k).and_then(string_of);
                    match (field("head"), field("tail")) {
                        (Some(h), Some(t)) => Ok(QueryHit {
                            pair: [h.to_string(), t.to_string()],
                            score: p.score,
                            label: field("label").map(str::to_string),
                        }),
                        _ => Err(c.remote("a point lacks the head/tail payload relbert writes")),
                    }
                })
                .collect()
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_only_is_honoured_from_qdrant_1_18() {
        assert_eq!(honours_insert_only("1.18.3"), Some(true));
        assert_eq!(honours_insert_only("v1.18.0"), Some(true));
        assert_eq!(honours_insert_only("2.0.0"), Some(true));
        assert_eq!(honours_insert_only("1.19.0-rc1"), Some(true));
        assert_eq!(honours_insert_only("1.17.1"), Some(false));
        assert_eq!(honours_insert_only("1.9.0"), Some(false));
        assert_eq!(honours_insert_only("0.11.7"), Some(false));
        assert_eq!(honours_insert_only(""), None);
        assert_eq!(honours_insert_only("dev"), None);
    }

    #[test]
    fn only_cosine_vectors_of_the_recorded_width_are_relbert_s() {
        use qdrant_client::qdrant::Distance;
        assert!(check_vector_params(Distance::Cosine as i32, 384, 384).is_ok());
        let dot = check_vector_params(Distance::Dot as i32, 384, 384).unwrap_err();
        assert!(dot.contains("Dot distance"), "{dot}");
        let euclid = check_vector_params(Distance::Euclid as i32, 384, 384).unwrap_err();
        assert!(euclid.contains("Euclid distance"), "{euclid}");
        let width = check_vector_params(Distance::Cosine as i32, 768, 384).unwrap_err();
        assert!(width.contains("768 components"), "{width}");
    }

    /// Found by an audit: errors shown to users carried the client's dump of the gRPC
    /// headers (`MetadataMap { headers: {…} }`).
    #[test]
    fn grpc_metadata_is_left_out_of_messages() {
        use tonic::{Code, Status};
        let with_headers = |code, message: &str| {
            let mut status = Status::new(code, message);
            status.metadata_mut().insert(
                "content-type",
                tonic::metadata::MetadataValue::from_static("application/grpc"),
            );
            QdrantError::ResponseError { status }
        };
        let e = with_headers(
            Code::AlreadyExists,
            "Wrong input: Collection `race1` already exists!",
        );
        assert!(e.to_string().contains("MetadataMap"), "{e}");
        let said = describe(&e);
        assert_eq!(
            said,
            "Wrong input: Collection `race1` already exists! (gRPC AlreadyExists)"
        );
        // No message: what the code means.
        let said = describe(&with_headers(Code::Unimplemented, ""));
        assert!(said.starts_with("Operation is not implemented"), "{said}");
        assert!(!said.contains("MetadataMap"), "{said}");
        // In any text, quoted braces included, and more than once.
        assert_eq!(
            strip_metadata(
                "a: x MetadataMap { headers: {\"k\": \"v}\\\"{\"} } then MetadataMap { headers: {} } end"
            ),
            "a: x then end"
        );
        assert_eq!(strip_metadata("plain"), "plain");
        assert_eq!(strip_metadata("cut MetadataMap { headers: {"), "cut");
        let conn = Connection::new(&["http://127.0.0.1:1".to_string()], "c").unwrap();
        let remote = conn
            .remote("failed: x MetadataMap { headers: {} }")
            .to_string();
        assert!(!remote.contains("MetadataMap"), "{remote}");
    }

    /// Found by an audit: a URL speaking gRPC without Qdrant's API (Qdrant's P2P port)
    /// failed the whole command with the client's raw text, even beside a good URL.
    #[test]
    fn a_grpc_port_without_qdrant_s_api_is_not_a_node() {
        use tonic::{Code, Status};
        let e = QdrantError::ResponseError {
            status: Status::new(Code::Unimplemented, ""),
        };
        let why = unreachable(&e).unwrap_or_default();
        assert!(
            why.contains("not Qdrant's API") && why.contains("P2P"),
            "{why}"
        );
        // A server's own refusal is not a wrong URL.
        let e = QdrantError::ResponseError {
            status: Status::new(Code::InvalidArgument, "Wrong input"),
        };
        assert_eq!(unreachable(&e), None);
    }

    #[test]
    fn a_missing_collection_is_told_apart() {
        use tonic::{Code, Status};
        let missing = QdrantError::ResponseError {
            status: Status::new(
                Code::NotFound,
                "Not found: Collection `del2` doesn't exist!",
            ),
        };
        assert!(collection_missing(&missing));
        let other = QdrantError::ResponseError {
            status: Status::new(Code::NotFound, "No point with id 7 found"),
        };
        assert!(!collection_missing(&other));
    }

    #[test]
    fn point_ids_are_stable_uuids_that_tell_pairs_apart() {
        let a = point_id("paris", "france");
        assert_eq!(a, point_id("paris", "france"));
        assert_ne!(a, point_id("france", "paris"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(point_id("ab", "c"), point_id("a", "bc"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8", "version nibble");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "variant bits");
    }

    /// Found by an audit: `café` (NFC) and `cafe\u{301}` (NFD) were two points where a
    /// local index keeps one pair. Ids are made from the canonical form; a pair already in it
    /// keeps the id relbert gave it before (these literals are the ids it gave).
    #[test]
    fn point_ids_are_canonical_and_keep_the_ids_of_canonical_pairs() {
        assert_eq!(
            point_id("paris", "france"),
            "5056089f-0b3b-85ff-8212-5df7e68329f3"
        );
        let nfc = "43aa22de-fac7-8e76-a417-d35151b2d1d2";
        assert_eq!(point_id("caf\u{e9}", "paris"), nfc);
        assert_eq!(point_id("cafe\u{301}", "paris"), nfc);
        // Case counts, as in a local index.
        assert_ne!(point_id("Caf\u{e9}", "paris"), nfc);
        // A collection written before keeps the decomposed spelling under its bytes' id:
        // a lookup or an exclusion asks for it too, whichever spelling is typed.
        let before = "e1c5b3a5-d62e-8418-ae8c-9d58ed6b9108";
        for typed in ["caf\u{e9}", "cafe\u{301}"] {
            let ids = spelling_ids(typed, "paris");
            assert_eq!(ids[0], nfc, "{typed:?}");
            assert!(ids.contains(&before.to_string()), "{typed:?}: {ids:?}");
        }
        assert_eq!(spelling_ids("paris", "france").len(), 1);
    }

    /// Found by an audit: a collection whose relbert metadata was another tool's (not a
    /// JSON string, or not relbert's JSON) was reported as a failure a rerun could get past.
    #[test]
    fn metadata_relbert_did_not_write_is_a_refusal() {
        let conn = Connection::new(&["http://127.0.0.1:1".to_string()], "c").unwrap();
        let e = conn
            .decode::<CollectionRecord>(METADATA_KEY, "not json")
            .unwrap_err();
        assert!(matches!(e, Error::Refused { .. }), "{e:?}");
        let e = conn
            .decode::<CollectionRecord>(METADATA_KEY, r#"{"x":1}"#)
            .unwrap_err();
        assert!(matches!(e, Error::Refused { .. }), "{e:?}");
        assert!(e.to_string().contains("--collection"), "{e}");
        let e = conn.not_relbert_s(METADATA_KEY, None);
        assert!(matches!(e, Error::Refused { .. }), "{e:?}");
    }

    /// Found by an audit: the warning said "0 of its 2000 rows are written" of a load
    /// killed before its first checkpoint, with 288 points in the collection.
    #[test]
    fn an_unfinished_load_says_its_checkpoint_is_a_lower_bound() {
        let u = Unfinished {
            source: "index x".into(),
            rows: Some(0),
            total: Some(2000),
            collection: "c".into(),
            indexing_off: true,
            at: None,
        };
        let said = u.describe();
        assert!(said.contains("at least 0 of its 2000 rows"), "{said}");
        // Found by an audit: a killed load leaves indexing off, and only a finished load
        // turns it on; the source of an unfinished load may be gone for good.
        assert!(said.contains("indexing is off"), "{said}");
        assert!(
            said.contains("index remove --collection c --abandoned-load 'index x'"),
            "{said}"
        );
        let on = Unfinished {
            indexing_off: false,
            ..u
        };
        assert!(!on.describe().contains("indexing is off"));
    }

    /// Found by a review: a load still running was given up. A checkpoint written within
    /// the window is a live load's, however the two clocks differ; one older, or one with no
    /// time (an older relbert's), is not.
    #[test]
    fn a_recent_checkpoint_is_taken_for_a_live_load() {
        let window = LIVE_LOAD_WINDOW.as_secs();
        let now = 1_000_000;
        assert_eq!(live_for(Some(now - 5), now), Some(Duration::from_secs(5)));
        assert_eq!(live_for(Some(now + 5), now), Some(Duration::from_secs(5)));
        assert_eq!(live_for(Some(now - window), now), None);
        assert_eq!(live_for(Some(now + window), now), None);
        assert_eq!(live_for(None, now), None);
        let old: LoadProgress =
            serde_json::from_str(r#"{"source":"index x","rows":1,"total":2}"#).unwrap();
        assert_eq!(old.at, None);
    }

    /// Found by a review: a load that finished turned indexing on under another load still
    /// streaming. Only another source's load whose checkpoint is recent is taken as running;
    /// this load's own, and a killed one's (old, or with no time), are not.
    #[test]
    fn only_another_recent_load_keeps_indexing_off() {
        let now = 1_000_000;
        let load = |source: &str, at: Option<u64>| Unfinished {
            source: source.to_string(),
            rows: Some(1),
            total: Some(2),
            collection: "c".to_string(),
            indexing_off: true,
            at,
        };
        let state = |unfinished| CollectionState {
            unfinished,
            ..CollectionState::default()
        };
        let dead = Some(now - LIVE_LOAD_WINDOW.as_secs());
        let mixed = state(vec![
            load("index self", Some(now)),
            load("index dead", dead),
            load("index old", None),
            load("index live", Some(now - 5)),
        ]);
        let (u, ago) = mixed.live_load_besides("index self", now).unwrap();
        assert_eq!(
            (u.source.as_str(), ago),
            ("index live", Duration::from_secs(5))
        );
        let killed = state(vec![
            load("index self", Some(now)),
            load("index dead", dead),
        ]);
        assert!(killed.live_load_besides("index self", now).is_none());
    }

    /// A checkpoint written before loads could be given up reads as not given up, and one
    /// not given up is written as before (an older relbert reads it).
    #[test]
    fn a_checkpoint_says_it_was_given_up_only_when_it_was() {
        let old: LoadProgress =
            serde_json::from_str(r#"{"source":"index x","rows":1,"total":2}"#).unwrap();
        assert!(!old.abandoned);
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"source":"index x","rows":1,"total":2}"#
        );
        let given_up = LoadProgress {
            abandoned: true,
            ..old
        };
        let text = serde_json::to_string(&given_up).unwrap();
        assert_eq!(
            serde_json::from_str::<LoadProgress>(&text).unwrap(),
            given_up
        );
    }

    /// A port nothing listens on, as a node that died leaves it.
    fn closed_port() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}")
    }

    /// Found by a review: a URL nothing listens on, from `$RELBERT_QDRANT_URL`, was "invalid
    /// value for --qdrant" though no --qdrant was given. Its message names where the URL
    /// came from, and calls it unreachable, not an invalid value.
    #[test]
    fn an_unreachable_url_names_where_it_came_from() {
        let url = closed_port();
        for (origin, named, not_named) in [
            (
                UrlOrigin::Env,
                "$RELBERT_QDRANT_URL (used as --qdrant is not given) takes",
                "--qdrant takes",
            ),
            (UrlOrigin::Flag, "--qdrant takes", "RELBERT_QDRANT_URL"),
        ] {
            let conn = Connection::with_origin(std::slice::from_ref(&url), origin, "c").unwrap();
            let c = conn.clone();
            let e = conn
                .block_on(async move { c.exists().await })
                .unwrap()
                .unwrap_err();
            assert!(matches!(e, Error::Rejected { .. }), "{e:?}");
            let said = e.to_string();
            assert!(
                said.contains("cannot reach Qdrant")
                    && said.contains(&url)
                    && said.contains(named)
                    && !said.contains(not_named)
                    && !said.contains("invalid value"),
                "{origin:?}: {said}"
            );
        }
        assert_eq!(UrlOrigin::of(None), UrlOrigin::Env);
        assert_eq!(UrlOrigin::of(Some("http://x:6334")), UrlOrigin::Flag);
    }

    /// A connection on `url` whose node has answered before, with a backoff of 1 to 2 ms, so
    /// that [`ATTEMPTS`] attempts take milliseconds and a retry budget's worth many more.
    fn quick_retries(url: String) -> Connection {
        let conn = Connection::new(&[url], "c").unwrap();
        for (a, us) in conn.inner.backoff_us.iter().zip([1_000, 2_000]) {
            a.store(us, Ordering::Relaxed);
        }
        conn.inner.answered[0].store(true, Ordering::Relaxed);
        conn
    }

    /// One call through `conn.call` with `hedge`, whose attempt k (from 0) runs `f(client,
    /// k)`: how it ended, and how many attempts it made.
    fn counted<Fut>(
        conn: &Connection,
        hedge: Hedge,
        f: impl Fn(Qdrant, usize) -> Fut + Send + Sync + 'static,
    ) -> (Result<()>, usize)
    where
        Fut: Future<Output = std::result::Result<(), QdrantError>> + Send + 'static,
    {
        let asked = Arc::new(AtomicUsize::new(0));
        let (c, seen) = (conn.clone(), asked.clone());
        let r = conn
            .block_on(async move {
                c.call("upserting points", hedge, move |q, _| {
                    f(q, seen.fetch_add(1, Ordering::Relaxed))
                })
                .await
            })
            .unwrap();
        (r, asked.load(Ordering::Relaxed))
    }

    /// A node unavailable (restarting) for longer than the attempts alone last: without a
    /// retry budget the call gives up after [`ATTEMPTS`] attempts, which aborted a load over
    /// an outage of ~21 s; with one it is waited out, by writes and reads alike; and a node
    /// that never comes back is still given up on once the budget is spent, saying so.
    #[test]
    fn a_retry_budget_waits_out_a_restart_and_then_gives_up() {
        use tonic::Status;
        let conn = quick_retries("http://127.0.0.1:1".into());
        // A call whose first `failing` attempts find the node unavailable.
        let call = |hedge: Hedge, failing: usize| {
            counted(&conn, hedge, move |_, k| async move {
                if k < failing {
                    Err(QdrantError::ResponseError {
                        status: Status::unavailable("the node is restarting"),
                    })
                } else {
                    Ok(())
                }
            })
        };
        for hedge in [Hedge::Write, Hedge::Never, Hedge::Scan, Hedge::Read] {
            conn.set_retry_for(Duration::ZERO);
            let (r, asked) = call(hedge, 40);
            let said = r.unwrap_err().to_string();
            assert_eq!(asked, ATTEMPTS, "{hedge:?}");
            assert!(
                said.contains("after 10 attempts") && !said.contains("budget"),
                "{said}"
            );
            conn.set_retry_for(Duration::from_secs(30));
            let (r, asked) = call(hedge, 40);
            assert!(r.is_ok(), "{hedge:?}: {r:?}");
            assert_eq!(asked, 41, "{hedge:?}");
        }
        conn.set_retry_for(Duration::from_millis(300));
        let (r, asked) = call(Hedge::Write, usize::MAX);
        let said = r.unwrap_err().to_string();
        assert!(asked > ATTEMPTS, "{asked}");
        assert!(said.contains("(the retry budget: 0 s)"), "{said}");
        assert!(said.contains("the node is restarting"), "{said}");
    }

    /// Within a retry budget, a node that refuses connections after answering is asked again
    /// even when an earlier call gave up on it (marked down): without the budget it is asked
    /// once ([`a_node_a_call_gave_up_on_is_asked_once_by_the_next`]), which failed every
    /// later call of a load at once after one call had given up during a restart.
    #[test]
    fn a_retry_budget_asks_a_node_marked_down_again() {
        let conn = quick_retries(closed_port());
        conn.inner.down[0].store(conn.inner.stamp(), Ordering::Relaxed);
        let call = || {
            counted(&conn, Hedge::Write, |q, _| async move {
                q.health_check().await.map(|_| ())
            })
        };
        let (r, asked) = call();
        assert!(r.is_err());
        assert_eq!(asked, 1, "asked once without a budget");
        conn.set_retry_for(Duration::from_millis(500));
        let (r, asked) = call();
        let said = r.unwrap_err().to_string();
        assert!(asked > 1, "asked again within the budget: {asked}");
        assert!(said.contains("retry budget"), "{said}");
    }

    /// Found by an audit: with one `--qdrant` URL whose node had died, every query retried
    /// the refused port for the whole read deadline (15 s each) and said "no answer … (is
    /// the node stopped…)". A call that gave up on a refusing node marks it down, and a later
    /// call asks it once: refused again, it fails at once, saying so.
    #[test]
    fn a_node_a_call_gave_up_on_is_asked_once_by_the_next() {
        let conn = Connection::new(&[closed_port()], "c").unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let call = |hedge: Hedge| {
            let (c, asked) = (conn.clone(), asked.clone());
            conn.block_on(async move {
                let trace = Trace::new(1);
                let r = c
                    .call_retrying(
                        "counting",
                        hedge,
                        |q, _| {
                            asked.fetch_add(1, Ordering::Relaxed);
                            async move { q.health_check().await }
                        },
                        &trace,
                    )
                    .await;
                c.note_gave_up(&trace, false);
                (r.map(|_| ()), trace.refused[0].load(Ordering::Relaxed))
            })
            .unwrap()
        };
        // Never answered: a wrong URL, named as such, and not retried.
        let (r, refused) = call(Hedge::Scan);
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Rejected { .. }), "{e:?}");
        assert!(refused);
        assert_eq!(asked.swap(0, Ordering::Relaxed), 1);
        // It answered once (it was up), and a call has since given up on it.
        conn.inner.answered[0].store(true, Ordering::Relaxed);
        assert!(
            conn.inner.since(&conn.inner.down, 0).is_some(),
            "marked down"
        );
        let (r, _) = call(Hedge::Scan);
        let e = r.unwrap_err();
        assert_eq!(asked.swap(0, Ordering::Relaxed), 1, "asked once");
        assert!(matches!(e, Error::Remote { .. }), "{e:?}");
        let said = e.to_string();
        assert!(
            said.contains("connection refused") && said.contains("down or restarting"),
            "{said}"
        );
        assert!(!said.contains("tonic"), "{said}");
        // An answer clears the mark.
        conn.inner.answered_now(0);
        assert!(conn.inner.since(&conn.inner.down, 0).is_none());
    }

    /// A server on a local port that answers each connection's first bytes with `answer`
    /// and closes it, as Qdrant's REST port answers the HTTP/2 preface (`HTTP/1.1 400 Bad
    /// Request`). Serves until the test process ends.
    fn answering(answer: &'static [u8]) -> String {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer);
            }
        });
        url
    }

    /// What Qdrant's REST port answers the HTTP/2 preface.
    const REST_ANSWER: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

    /// A flake of `qdrant_cluster::a_rest_port_and_names_that_break_a_cluster_are_named`
    /// (11 of 40 runs on a 2-core machine): when the REST port's HTTP/1 answer came
    /// before the gRPC request was written, the client reported the call cancelled, or
    /// reconnected silently while the call waited, and the REST port given as `--qdrant`
    /// failed after the 15 s read deadline with "no answer". The calls here end as those
    /// did, every time: never, or cancelled. The port's own answer to the preface names it.
    #[test]
    fn a_rest_port_is_named_however_the_client_fails() {
        use tonic::Status;
        let url = answering(REST_ANSWER);
        let conn = Connection::new(std::slice::from_ref(&url), "c").unwrap();
        type Answer =
            std::pin::Pin<Box<dyn Future<Output = std::result::Result<(), QdrantError>> + Send>>;
        let run = |f: fn() -> Answer| {
            let c = conn.clone();
            conn.block_on(async move {
                c.call("checking the collection", Hedge::Read, |_, _| f())
                    .await
            })
            .unwrap()
        };
        let silent = run(|| Box::pin(std::future::pending()));
        let cancelled = run(|| {
            Box::pin(async {
                Err(QdrantError::ResponseError {
                    status: Status::cancelled("operation was canceled"),
                })
            })
        });
        for e in [silent.unwrap_err(), cancelled.unwrap_err()] {
            assert!(matches!(e, Error::Rejected { .. }), "{e:?}");
            let said = e.to_string();
            assert!(
                said.contains("is it the REST port?") && said.contains("gRPC port"),
                "{said}"
            );
        }
        // The client's own call, whichever way its race goes.
        let c = conn.clone();
        let e = conn
            .block_on(async move {
                c.call(
                    "checking the collection",
                    Hedge::Read,
                    |q, name| async move { q.collection_exists(name).await },
                )
                .await
            })
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("is it the REST port?"), "{e}");
    }

    /// The probe names only an HTTP/1 answer: a gRPC server's (its SETTINGS frame), none, or
    /// a port nothing listens on are for the call to tell.
    #[test]
    fn only_an_http1_answer_is_taken_for_a_rest_port() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let settings = answering(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        assert!(rt.block_on(answers_http1(&settings)).is_none());
        assert!(rt.block_on(answers_http1(&answering(b""))).is_none());
        assert!(rt.block_on(answers_http1(&closed_port())).is_none());
        let rest = answering(REST_ANSWER);
        let e = rt.block_on(answers_http1(&rest)).unwrap();
        assert_eq!(
            unreachable(&e),
            Some("the port does not speak gRPC (is it the REST port?)")
        );
        assert!(describe(&e).contains("HTTP/1.1 400 Bad Request"), "{e}");
        // Over TLS the preface is not what the server first reads.
        let https = rest.replacen("http://", "https://", 1);
        assert!(rt.block_on(answers_http1(&https)).is_none());
    }

    /// Found by an audit: a query whose node had died failed with the client's debug dump
    /// of its transport error (`tonic::transport::Error(Transport, ConnectError(…))`).
    #[test]
    fn transport_errors_are_said_in_words() {
        use tonic::{Code, Status};
        let refused = QdrantError::ResponseError {
            status: Status::new(
                Code::Internal,
                "Failed to connect to http://127.0.0.1:19799/: tonic::transport::Error(\
                 Transport, ConnectError(ConnectError(\"tcp connect error\", \
                 127.0.0.1:19799, Os { code: 111, kind: ConnectionRefused, message: \
                 \"Connection refused\" })))",
            ),
        };
        assert_eq!(
            failure_text(&refused, false),
            "connection refused: nothing listens there"
        );
        assert_eq!(
            failure_text(&refused, true),
            "connection refused: the node answered before, and is down or restarting"
        );
        let said = describe(&refused);
        assert_eq!(
            said,
            "Failed to connect to http://127.0.0.1:19799/: Connection refused (gRPC Internal)"
        );
        // Another transport failure: its innermost words, still no dump.
        let reset = QdrantError::ResponseError {
            status: Status::new(
                Code::Unavailable,
                "Failed to connect to http://h:1/: tonic::transport::Error(Transport, \
                 hyper::Error(Io, Custom { kind: ConnectionReset, error: \"reset by peer\" }))",
            ),
        };
        let said = failure_text(&reset, true);
        assert!(!said.contains("tonic::transport"), "{said}");
        assert!(said.contains("reset by peer"), "{said}");
    }

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            parse_urls("http://a:1, http://b:2/").unwrap(),
            vec!["http://a:1".to_string(), "http://b:2".to_string()]
        );
        assert!(parse_urls(" , ").is_err());
        assert!(parse_urls("a:6334").is_err());
        // Found by an audit: port 99999 was taken as port 80, and `http://` as a host.
        for bad in [
            "http://127.0.0.1:99999",
            "http://h:0",
            "http://",
            "http://h:x",
        ] {
            let e = parse_urls(bad).unwrap_err().to_string();
            assert!(e.contains("--qdrant"), "{bad}: {e}");
        }
        assert!(parse_urls("http://[::1]:6334,https://h,http://h:6334").is_ok());
    }

    #[test]
    fn collection_names_that_break_a_cluster_are_refused() {
        for bad in [
            "",
            " ",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a\u{0}b",
            "tab\tname",
            " padded",
            "a:b",
            "a?b",
            "a*b",
            "a|b",
            "a\"b",
            "a<b",
            "a>b",
        ] {
            let e = check_collection_name(bad).unwrap_err().to_string();
            assert!(e.contains("--collection"), "{bad:?}: {e}");
        }
        assert!(check_collection_name(&"x".repeat(201)).is_err());
        for good in [
            "relations",
            "my relations",
            "relações-2026",
            "a.b",
            "x".repeat(200).as_str(),
        ] {
            check_collection_name(good).unwrap();
        }
    }

    /// A record as relbert writes one, for the stubbed reads below.
    pub(crate) fn sample_record() -> CollectionRecord {
        CollectionRecord {
            layout: LAYOUT_VERSION,
            encoder: EncoderInfo {
                model: "tiny".into(),
                ..Default::default()
            },
            dim: 8,
            source: "index x".into(),
            path: None,
        }
    }

    /// A runtime whose timer a zero wait goes through, for the stubbed reads below.
    pub(crate) fn timer() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    /// A collection another process had just made (or whose node had just restarted) was
    /// refused by `query` and `serve --collection` when the node asked did not show it yet,
    /// where a read a moment later would have; now it is read again, a bounded number of
    /// times, and opened once it shows with its record. The reads are stubs, `every` zero:
    /// the test counts looks, not time.
    #[test]
    fn a_collection_that_shows_late_is_opened_and_one_that_never_shows_is_not() {
        use std::cell::Cell;
        let conn = Connection::new(&["http://127.0.0.1:1".to_string()], "c").unwrap();
        let rt = timer();
        let state = |record: Option<CollectionRecord>| CollectionState {
            record,
            ..CollectionState::default()
        };
        let open = |shows_from: usize, record_from: usize| {
            let (exists, reads) = (Cell::new(0), Cell::new(0));
            let r = rt.block_on(open_state(
                &conn,
                Duration::ZERO,
                || {
                    exists.set(exists.get() + 1);
                    let n = exists.get();
                    async move { Ok(n >= shows_from) }
                },
                || {
                    reads.set(reads.get() + 1);
                    let n = reads.get();
                    async move { Ok(state((n >= record_from).then(sample_record))) }
                },
            ));
            (r, exists.get(), reads.get())
        };
        // Not shown on the first two looks, then shown without its record once.
        let (r, exists, reads) = open(3, 2);
        let (record, _) = r.unwrap();
        assert_eq!(record, sample_record());
        assert_eq!((exists, reads), (4, 2));
        // Never shown: said to be missing after a bounded number of looks.
        let (r, exists, reads) = open(usize::MAX, 1);
        assert!(matches!(r, Err(Error::NoCollection { .. })), "{r:?}");
        assert_eq!((exists, reads), (RECHECK_RECORD + 1, 0));
        // Shown, never with a record: refused as not relbert's, after as many looks.
        let (r, _, reads) = open(1, usize::MAX);
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Refused { .. }), "{e:?}");
        assert!(e.to_string().contains("not written by relbert"), "{e}");
        assert_eq!(reads, RECHECK_RECORD + 1);
        // A failure that is not a lag (the calls retried it already) ends the wait at once.
        let reads = Cell::new(0);
        let r = rt.block_on(open_state(
            &conn,
            Duration::ZERO,
            || async { Ok(true) },
            || {
                reads.set(reads.get() + 1);
                async { Err(conn.remote("down")) }
            },
        ));
        assert!(matches!(r, Err(Error::Remote { .. })), "{r:?}");
        assert_eq!(reads.get(), 1);
    }

    /// The removal record keeps point ids at 32 bytes each and gives them back as
    /// [`point_id`] writes them; text it does not make is not taken for ids.
    #[test]
    fn removed_ids_are_packed_and_read_back() {
        let ids = vec![point_id("dog", "puppy"), point_id("caf\u{e9}", "paris")];
        let packed = pack_ids(&ids).unwrap();
        assert_eq!(packed.len(), ids.len() * REMOVED_ID_BYTES);
        assert_eq!(unpack_ids(&packed).unwrap(), ids);
        assert_eq!(pack_ids(&["7".to_string()]), None);
        assert_eq!(unpack_ids("abc"), None);
        assert_eq!(unpack_ids(&"z".repeat(32)), None);
        assert_eq!(unpack_ids("").unwrap(), Vec::<String>::new());
    }

    /// A source skips the ids removed after it was loaded, not those removed before it was
    /// added (which it puts back); an id is recorded again only for a source it was not
    /// recorded for.
    #[test]
    fn removed_ids_count_for_the_sources_loaded_then() {
        let (a, b) = ("index 1".to_string(), "pairs sha256:2".to_string());
        let (x, y) = (point_id("x", "1"), point_id("y", "2"));
        let record = RemovalRecord {
            parts: vec![
                (vec![source_tag(&a)], vec![x.clone()]),
                (vec![source_tag(&a), source_tag(&b)], vec![y.clone()]),
            ],
        };
        assert_eq!(
            record.removed_from(&a),
            [x.clone(), y.clone()].into_iter().collect()
        );
        assert_eq!(record.removed_from(&b), [y.clone()].into_iter().collect());
        assert_eq!(
            record.recorded_for_all(std::slice::from_ref(&a)),
            [x.clone(), y.clone()].into_iter().collect()
        );
        assert_eq!(record.recorded_for_all(&[a, b]), [y].into_iter().collect());
        assert_eq!(record.len(), 2);
    }
}
