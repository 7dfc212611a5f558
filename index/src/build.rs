//! Building an index: streamed, checkpointed appends in `<out>.partial/`, then the HNSW graph
//! and an atomic rename to `<out>`.
//!
//! A partial build holds:
//!
//! - `vectors`: a placeholder header followed by the rows appended so far;
//! - `pairs.blob`: the pair records appended so far (see [`crate::pairs`]);
//! - `checkpoint`: a checksummed record of the [`IndexSpec`], the number of input rows consumed,
//!   the number of rows stored, the committed byte lengths of both files and the running CRCs
//!   of their committed bytes. It is replaced atomically (write, fsync, rename, fsync the
//!   directory) after the data of each chunk has been fsynced.
//!
//! On resume both data files are truncated back to the checkpoint's lengths, so whatever a kill
//! left half-written after the last checkpoint is discarded and the caller re-sends the rows
//! from [`IndexBuilder::rows_done`] on. The committed bytes must still match the checkpoint's
//! CRCs: the pair records at resume (they are read whole then) and again at publication, the
//! vectors at publication (read whole then for the graph). A partial build damaged in between
//! (a changed byte in a pair string still decodes) is refused with
//! [`IndexError::PartialDamaged`], never published under fresh checksums. A checkpoint of an
//! older relbert, which kept no CRC of the pair records, cannot vouch for them and is refused
//! the same way (the user removes the partial build and the pairs are encoded again; it is
//! not discarded here, since it may hold the only copy of a standard input, `input.spool`).
//! The checkpoint also records the [`IndexSpec`]'s
//! `input` (the identity of what the rows come from): a resume with another input is refused.
//!
//! A builder holds the output's writer lock ([`crate::lock`]) from creation to publication,
//! so two builds of one output cannot interleave. It replaces only what it recognises as its
//! own: an existing `out` only with `force` and only if it is an index directory
//! ([`recognise_index`]) that is not write-protected ([`check_not_write_protected`]), a
//! leftover `<out>.partial` only if it holds nothing but a partial build's files
//! ([`recognise_partial`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use half::f16;
use hnsw_rs::prelude::{Distance, Hnsw};
use serde::{Deserialize, Serialize};

use crate::dot::{dot, normalize};
use crate::error::{IndexError, Result};
use crate::format::{
    block_crcs, encode_header, index_id, read_small_file, sync_dir, table_bytes, write_file,
    write_file_with_table, FileKind, BLOCK_SHIFT, FORMAT_VERSION, HEADER_LEN, NO_ID,
};
use crate::graph::{encode_graph, NO_NEIGHBOUR};
use crate::hnsw_build;
use crate::lock::OutputLock;
use crate::meta::{self, HnswInfo, IndexSpec, Meta, Precision, META_MAGIC};
use crate::pairs::{
    decode_record, encode_pairs, encode_record, same_spelling, spelling_hash, PairEntry,
};
use crate::staged::{Background, GraphPriority, StagedProgress};

const BLOB: &str = "pairs.blob";

/// The caller's copy of its input inside a partial build ([`IndexBuilder::spool_path`]).
pub(crate) const SPOOL: &str = "input.spool";

/// How the first line of a copy of standard input that relbert spools
/// ([`IndexBuilder::spool_path`]) begins; the format version and a line end follow
/// ([`spool_header`]). It is what tells relbert's copy from a user's file of the same name in
/// an index directory, which `--force` and `index add` would otherwise delete with the index.
/// A comment line to the pair-list reader, so the copy stays a plain pair list.
pub const SPOOL_MAGIC: &str = "# relbert input spool ";

/// The spool format this build writes ([`spool_header`]).
pub const SPOOL_VERSION: u32 = 1;

/// The whole first line relbert writes at the start of a spool: [`SPOOL_MAGIC`],
/// [`SPOOL_VERSION`], a line end.
pub fn spool_header() -> String {
    format!("{SPOOL_MAGIC}{SPOOL_VERSION}\n")
}

/// What the first line of a file named like a spool says ([`spool_mark`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpoolMark {
    /// relbert's mark, with the spool format version it gives.
    Marked(u32),
    /// The beginning of relbert's mark and nothing after it: a copy cut off while it was
    /// being written (only its temporary name, `input.spool.tmp`, can be; an empty file too).
    Cut,
    /// No mark: a user's file, or a copy an older relbert spooled before copies were marked.
    Unmarked,
}

/// Reads the first line of `path` for relbert's spool mark ([`SPOOL_MAGIC`]).
pub fn spool_mark(path: &Path) -> std::io::Result<SpoolMark> {
    let mut head = [0u8; 64];
    let f = File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        match f.read_at(&mut head[n..], n as u64)? {
            0 => break,
            got => n += got,
        }
    }
    Ok(mark_of(&head[..n]))
}

fn mark_of(head: &[u8]) -> SpoolMark {
    let magic = SPOOL_MAGIC.as_bytes();
    let Some(rest) = head.strip_prefix(magic) else {
        return if magic.starts_with(head) {
            SpoolMark::Cut
        } else {
            SpoolMark::Unmarked
        };
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    match rest.get(digits) {
        Some(b'\n') if digits > 0 => std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
            .map_or(SpoolMark::Unmarked, SpoolMark::Marked),
        // The file ended within the version: cut while being written.
        None if digits < 16 => SpoolMark::Cut,
        _ => SpoolMark::Unmarked,
    }
}

/// Which implementation builds the HNSW graph. Both write the same `graph` file layout; the
/// choice is recorded in [`HnswInfo::builder`] (as [`GraphBuilder::name`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GraphBuilder {
    /// The crate's own builder ([`crate::hnsw_build`]), which fills the flat layout directly:
    /// the default.
    #[default]
    Native,
    /// `hnsw_rs` 0.3.5, exported layer by layer and re-pruned; kept for comparison.
    HnswRs,
}

impl GraphBuilder {
    /// The name recorded in the metadata: `"relbert_hnsw"` or `"hnsw_rs"`.
    pub fn name(self) -> &'static str {
        match self {
            GraphBuilder::Native => "relbert_hnsw",
            GraphBuilder::HnswRs => "hnsw_rs",
        }
    }

    /// Parses a [`name`](Self::name) (also accepts `"native"`).
    pub fn from_name(name: &str) -> Option<GraphBuilder> {
        match name {
            "relbert_hnsw" | "native" => Some(GraphBuilder::Native),
            "hnsw_rs" => Some(GraphBuilder::HnswRs),
            _ => None,
        }
    }
}

/// Parameters of the HNSW graph build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HnswParams {
    /// Neighbours per node on the upper layers; layer 0 keeps `2 * m`. 2..=255.
    pub m: usize,
    /// Candidate-list size while inserting (at least `m`; larger builds a better graph,
    /// slower).
    pub ef_construction: usize,
    /// Threads for the insertion: 0 uses rayon's default pool, 1 inserts serially in row
    /// order, which makes the graph (and so every search result) reproducible.
    pub threads: usize,
    /// Which implementation builds the graph (default [`GraphBuilder::Native`]).
    pub builder: GraphBuilder,
    /// Seed of the node levels ([`GraphBuilder::Native`] only; `hnsw_rs` draws its own).
    pub seed: u64,
}

impl HnswParams {
    /// Checks the parameters, so a build can refuse them before any row is encoded.
    pub fn validate(&self) -> Result<()> {
        if !(2..=255).contains(&self.m) {
            return Err(IndexError::InvalidParameter(format!(
                "m = {} (must be 2..=255)",
                self.m
            )));
        }
        if !(1..=1_000_000).contains(&self.ef_construction) {
            return Err(IndexError::InvalidParameter(format!(
                "ef_construction = {} (must be 1..=1000000)",
                self.ef_construction
            )));
        }
        // An insertion keeps up to m neighbours of the ef_construction candidates it found:
        // fewer candidates than m leave lists short and the graph poorly connected (recall@10
        // 14/50 at m = 3, ef_construction = 1). hnswlib raises it to m silently; a build
        // refuses, so the graph recorded is the one asked for.
        if self.ef_construction < self.m {
            return Err(IndexError::InvalidParameter(format!(
                "ef_construction = {} is below m = {}: it must be at least m (each insertion \
                 picks up to m neighbours from ef_construction candidates)",
                self.ef_construction, self.m
            )));
        }
        if self.threads > 4096 {
            return Err(IndexError::InvalidParameter(format!(
                "threads = {} (must be at most 4096)",
                self.threads
            )));
        }
        Ok(())
    }

    /// What the native builder ([`crate::hnsw_build`]) takes of them.
    pub(crate) fn build_params(&self) -> hnsw_build::BuildParams {
        hnsw_build::BuildParams {
            m: self.m,
            ef_construction: self.ef_construction,
            threads: self.threads,
            seed: self.seed,
        }
    }
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            threads: 0,
            builder: GraphBuilder::Native,
            seed: 0x5eed,
        }
    }
}

/// Stages reported through the progress callback of [`IndexBuilder::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Copying rows from another index (`done` of `total` rows; [`fn@crate::rebuild`] only).
    Copying,
    /// Inserting rows into the HNSW graph (`done` of `total` rows).
    Graph,
    /// Writing the final files (`done` of `total` files).
    Writing,
}

/// A progress report from [`IndexBuilder::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// What is being done.
    pub stage: Stage,
    /// Units done so far.
    pub done: u64,
    /// Units in total.
    pub total: u64,
}

/// What one [`IndexBuilder::append_chunk`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkStats {
    /// Rows stored.
    pub appended: usize,
    /// Rows skipped because their (head, tail) pair was already in the index.
    pub skipped: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Checkpoint {
    spec: IndexSpec,
    rows_done: u64,
    count: u64,
    skipped: u64,
    vector_bytes: u64,
    blob_bytes: u64,
    vectors_crc: u32,
    /// CRC32 of the `blob_bytes` committed bytes of `pairs.blob`. Last, so a checkpoint
    /// written before it ([`OldCheckpoint`]) is told apart: it decodes one field short.
    blob_crc: u32,
}

/// The checkpoint of a relbert from before [`Checkpoint::blob_crc`]: recognised only to
/// refuse it by name, since nothing vouches for its pair records.
#[derive(Deserialize)]
#[allow(dead_code)]
struct OldCheckpoint {
    spec: IndexSpec,
    rows_done: u64,
    count: u64,
    skipped: u64,
    vector_bytes: u64,
    blob_bytes: u64,
    vectors_crc: u32,
}

/// Streams rows into a partial index and publishes the finished index.
///
/// ```no_run
/// # use relbert_index::*;
/// # fn main() -> Result<(), IndexError> {
/// let spec = IndexSpec {
///     dim: 384,
///     precision: Precision::F32,
///     encoder: EncoderInfo::default(),
///     input: "sha256:…".into(), // what the rows come from: a resume must name the same
/// };
/// let mut b = IndexBuilder::create_or_resume("out/idx".as_ref(), spec, false)?;
/// let skip = b.rows_done(); // input rows already stored by an earlier, interrupted run
/// # let (pairs, vectors): (Vec<PairEntry>, Vec<f32>) = (vec![], vec![]);
/// b.append_chunk(&pairs, &vectors)?; // repeated for each chunk after `skip`
/// b.finish(HnswParams::default(), |_p| {})?;
/// # Ok(()) }
/// ```
pub struct IndexBuilder {
    out_dir: PathBuf,
    partial: PathBuf,
    force: bool,
    ckpt: Checkpoint,
    vectors: File,
    blob: File,
    /// [`spelling_hash`] → first row with that hash
    seen: HashMap<u64, u32>,
    /// hash → further rows with that hash (other spellings copied from an index built before
    /// spellings were merged, or 64-bit collisions; practically always empty)
    seen_more: HashMap<u64, Vec<u32>>,
    /// Whether a duplicate must be the same bytes ([`Self::set_exact_duplicates`]) rather
    /// than the same pair in any Unicode normal form.
    exact_duplicates: bool,
    /// blob offset of each stored row's record
    record_at: Vec<u64>,
    poisoned: bool,
    /// The graph being built while rows are appended, if asked for.
    background: Option<Background>,
    /// Whether this builder made its partial directory, rather than resuming one an earlier
    /// run left ([`Self::created`]).
    created: bool,
    lock: OutputLock,
}

/// Path of the partial build directory for `out_dir`: `<out_dir>.partial`.
pub fn partial_dir(out_dir: &Path) -> Result<PathBuf> {
    let name = out_dir.file_name().ok_or_else(|| {
        IndexError::InvalidParameter(format!("{} has no final path component", out_dir.display()))
    })?;
    let mut n = name.to_os_string();
    n.push(".partial");
    Ok(out_dir.with_file_name(n))
}

/// Where a build of `out_dir` keeps the caller's copy of its input while it is partial
/// (`<out_dir>.partial/input.spool`; see [`IndexBuilder::spool_path`]), or, when there is
/// none there, the copy a build or add killed just after publishing left in the published
/// index ([`published_spool`]), if it bears relbert's mark ([`spool_mark`]): a file of that
/// name without it is not relbert's, and is never read as the input.
pub fn input_spool(out_dir: &Path) -> Result<PathBuf> {
    let partial = partial_dir(out_dir)?.join(SPOOL);
    let published = published_spool(out_dir);
    // A spool that cannot be read is not taken for relbert's: it is never read as the input.
    let marked = || is_marked_spool(&published).unwrap_or(false);
    Ok(if !partial.exists() && published.is_file() && marked() {
        published
    } else {
        partial
    })
}

/// The [`IndexSpec`] that the checkpoint of the partial build of `out_dir`
/// (`<out_dir>.partial/`, [`partial_dir`]) records: what a run must match to resume it (its
/// encoder identity, number format included, its storage and its input), readable before the
/// caller loads an encoder. `None` when there is no partial directory, or one without a
/// checkpoint (which a builder discards); an error when the directory is not a partial build
/// ([`recognise_partial`]) or its checkpoint cannot be read, as a builder would refuse it.
///
/// Takes no lock and writes nothing. That is safe: a checkpoint is only ever replaced by an
/// atomic rename, so it is read whole, old or new; the spec it records is the one the partial
/// build began with and does not change while it lives; and the answer is advice only, for a
/// writer that publishes or discards the partial build meanwhile can make it stale: the
/// builder reads the checkpoint again under the output's lock and refuses a spec that does
/// not match ([`IndexError::PartialMismatch`]).
pub fn partial_spec(out_dir: &Path) -> Result<Option<IndexSpec>> {
    let partial = partial_dir(out_dir)?;
    let gone = |e: &IndexError| matches!(e, IndexError::Io { err, .. } if err.kind() == std::io::ErrorKind::NotFound);
    if std::fs::symlink_metadata(&partial).is_err() {
        return Ok(None);
    }
    let ckpt = partial.join(FileKind::Checkpoint.file_name());
    // Removed by another run between the steps: there is nothing to resume then.
    match recognise_partial(&partial).and_then(|()| read_checkpoint(&ckpt, &partial)) {
        Ok(c) => Ok(Some(c.spec)),
        Err(e) if gone(&e) => Ok(None),
        // `recognise_partial` names a directory it cannot list as not a partial build; one
        // that is gone since (another writer published or discarded it) holds nothing to
        // resume either (found by a review).
        Err(_) if std::fs::symlink_metadata(&partial).is_err() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the file at `path` is a whole copy of an input that relbert spooled: its first
/// line bears relbert's mark ([`spool_mark`], [`SpoolMark::Marked`]). Only such a copy in a
/// published index is relbert's to read as an input or to remove; a file of that name
/// without the mark is a user's (or an older relbert's), and one cut within the mark was
/// never finished.
pub fn is_marked_spool(path: &Path) -> std::io::Result<bool> {
    Ok(matches!(spool_mark(path)?, SpoolMark::Marked(_)))
}

/// Where a build or add killed between publishing `out_dir` and removing its input spool
/// left the spool: inside the published index.
pub fn published_spool(out_dir: &Path) -> PathBuf {
    out_dir.join(SPOOL)
}

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| IndexError::io(path, e))
}

fn read_checkpoint(path: &Path, partial: &Path) -> Result<Checkpoint> {
    let (_, buf) = read_small_file(path, FileKind::Checkpoint, 1 << 20)?;
    meta::decode(&buf, path).map_err(|e| {
        if meta::decode::<OldCheckpoint>(&buf, path).is_ok() {
            IndexError::PartialDamaged {
                path: path.to_path_buf(),
                partial: partial.to_path_buf(),
                reason: "it was written by an older relbert, which kept no checksum of the \
                         pair records (pairs.blob), so they cannot be checked before they are \
                         published"
                    .into(),
            }
        } else {
            e
        }
    })
}

/// The error for committed bytes of a partial build's file at `path` that no longer match
/// the CRC its checkpoint recorded for them.
fn damaged(path: &Path, partial: &Path, what: &str, recorded: u32, actual: u32) -> IndexError {
    IndexError::PartialDamaged {
        path: path.to_path_buf(),
        partial: partial.to_path_buf(),
        reason: format!(
            "the {what} appended so far do not match the checkpoint's checksum (recorded \
             {recorded:#010x}, computed {actual:#010x}): the file was changed after they were \
             written"
        ),
    }
}

/// The names a finished index directory may hold: its files, the temporary names relbert
/// writes them under ([`own_temp`]), and the input spool of a build or add killed between
/// publishing the index and removing the spool ([`input_spool`] finds it there, so a rerun
/// resumes from it; a finished index can hold one legitimately). The spool's name is not
/// enough: its contents must bear relbert's mark too ([`check_spools`]).
fn index_entry(name: &str) -> bool {
    matches!(name, "vectors" | "pairs" | "graph" | "meta") || name == SPOOL || own_temp(name)
}

/// Whether `name` is a temporary name relbert itself writes inside an index or partial
/// build: [`crate::format::write_file`]'s `<file>.tmp` for each of the index's and the
/// partial build's files, and the input spool's `input.spool.tmp`
/// ([`IndexBuilder::spool_path`]). Any other `*.tmp` is the user's: accepting every `.tmp`
/// let `--force` and `index add` delete a user's `notes.tmp` with the directory.
fn own_temp(name: &str) -> bool {
    name.strip_suffix(".tmp").is_some_and(|stem| {
        stem == SPOOL
            || [
                FileKind::Vectors,
                FileKind::Pairs,
                FileKind::Graph,
                FileKind::Meta,
                FileKind::Checkpoint,
            ]
            .iter()
            .any(|k| k.file_name() == stem)
    })
}

/// The names a partial build may hold.
fn partial_entry(name: &str) -> bool {
    index_entry(name) || name == BLOB || name == "checkpoint" || name == SPOOL
}

/// Whether the first bytes of `path` are `magic` (a file too short to tell passes: a file cut
/// off at creation).
fn starts_with_magic(path: &Path, magic: &[u8; 8]) -> std::result::Result<(), String> {
    let mut head = [0u8; 8];
    let n = File::open(path)
        .and_then(|f| f.read_at(&mut head, 0))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if n == 8 && &head != magic {
        return Err(format!("{} is not a relbert index file", path.display()));
    }
    Ok(())
}

fn entries_all(
    dir: &Path,
    allowed: fn(&str) -> bool,
    file: &str,
) -> std::result::Result<(), String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot list it: {e}"))?;
    for e in rd {
        let e = e.map_err(|e| format!("cannot list it: {e}"))?;
        let name = e.file_name();
        let ok = name.to_str().is_some_and(allowed)
            && e.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !ok {
            return Err(format!("it holds {:?}, which is not {file}", name));
        }
    }
    Ok(())
}

/// Checks that the spool in `dir` and its temporary name, where there, are relbert's: they
/// begin with its mark ([`spool_mark`]; the temporary one may be cut off within it). With
/// `legacy`, an unmarked spool passes too: a partial build that holds relbert's own files
/// (their magic bytes are checked) is relbert's, and an older relbert spooled without a mark,
/// so its interrupted build or add can still be resumed.
fn check_spools(dir: &Path, legacy: bool) -> std::result::Result<(), String> {
    let tmp = format!("{SPOOL}.tmp");
    for (name, cut_ok) in [(SPOOL, false), (tmp.as_str(), true)] {
        let path = dir.join(name);
        if !path.is_file() || legacy {
            continue;
        }
        let mark = spool_mark(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        match mark {
            SpoolMark::Marked(_) => {}
            SpoolMark::Cut if cut_ok => {}
            SpoolMark::Cut | SpoolMark::Unmarked => {
                return Err(format!(
                    "it holds {name:?}, which does not begin with relbert's mark \
                     ({:?}), so it is not relbert's copy of standard input (an older relbert \
                     wrote its copies without the mark: if one left this file, killed just \
                     after finishing a build or add that read standard input, the pairs in it \
                     are in the index and the file can be removed)",
                    spool_header().trim_end()
                ))
            }
        }
    }
    Ok(())
}

/// What [`recognise_dir`] recognises.
struct DirKind {
    /// As the refusal names it (`an index`).
    what: &'static str,
    /// As the refusal names one of its files (`an index file`).
    file: &'static str,
    /// The names it may hold.
    allowed: fn(&str) -> bool,
    /// The file it must hold, if any.
    required: Option<FileKind>,
    /// The files whose magic bytes are checked where they are there.
    kinds: &'static [FileKind],
    /// Whether an unmarked spool passes beside relbert's own files ([`check_spools`]).
    legacy_spool: bool,
}

/// Why `path`, whose own metadata is `md`, is not a directory relbert may replace: "it is not
/// a directory", or for a symbolic link, where it leads (from the working directory, as the
/// user names paths) and, when that is a directory, to name it instead. A link to relbert's
/// own output was refused as "not a directory", which a user who keeps a link to the current
/// index (`current -> index-v3`) could not make sense of. A link is never replaced: the
/// output is renamed into place, which would put a directory where the link was, and the
/// directory the link leads to may be another name's too.
pub fn not_a_directory(path: &Path, md: &std::fs::Metadata) -> String {
    if !md.file_type().is_symlink() {
        return "it is not a directory".into();
    }
    let Ok(to) = std::fs::read_link(path) else {
        return "it is a symbolic link, which relbert does not replace".into();
    };
    let shown = match path.parent() {
        Some(parent) if to.is_relative() && !parent.as_os_str().is_empty() => parent.join(&to),
        _ => to,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => format!(
            "it is a symbolic link to the directory {}, and relbert does not replace a link: \
             give --out {} to replace that directory",
            shown.display(),
            shown.display()
        ),
        Ok(_) => format!(
            "it is a symbolic link to {}, which is not a directory",
            shown.display()
        ),
        Err(_) => format!(
            "it is a symbolic link to {}, which does not exist",
            shown.display()
        ),
    }
}

/// Checks that `dir` is a directory relbert wrote as `kind.what`: it holds only names
/// `kind.allowed` admits, `kind.required` (if any) is there, every one of `kind.kinds` that is
/// there starts with its magic bytes, and a spool there is relbert's ([`check_spools`]).
fn recognise_dir(dir: &Path, kind: &DirKind) -> Result<()> {
    let DirKind {
        what,
        file,
        allowed,
        required,
        kinds,
        legacy_spool,
    } = *kind;
    let not = |why: String| IndexError::NotOurs {
        path: dir.to_path_buf(),
        what,
        why,
    };
    let md = std::fs::symlink_metadata(dir).map_err(|e| IndexError::io(dir, e))?;
    if !md.is_dir() {
        return Err(not(not_a_directory(dir, &md)));
    }
    if let Some(kind) = required {
        if !dir.join(kind.file_name()).is_file() {
            return Err(not(format!("it has no {} file", kind.file_name())));
        }
    }
    entries_all(dir, allowed, file).map_err(not)?;
    let mut own_files = false;
    for kind in kinds {
        let p = dir.join(kind.file_name());
        if p.exists() {
            starts_with_magic(&p, kind.magic()).map_err(not)?;
            own_files = true;
        }
    }
    // Only a partial build takes an unmarked spool, and only beside relbert's own files: in a
    // published index a user's `input.spool` would go with the index.
    check_spools(dir, legacy_spool && own_files).map_err(not)
}

/// Checks that `dir` is an index directory relbert wrote (a directory holding only index
/// files, with a `meta` file of any format version), so that `force` may replace it.
pub fn recognise_index(dir: &Path) -> Result<()> {
    recognise_dir(
        dir,
        &DirKind {
            what: "an index",
            file: "an index file",
            allowed: index_entry,
            required: Some(FileKind::Meta),
            kinds: &[FileKind::Meta],
            legacy_spool: false,
        },
    )
}

/// Checks that `dir` is a partial build relbert left (only a partial build's files), so that
/// it may be resumed or discarded.
pub fn recognise_partial(dir: &Path) -> Result<()> {
    recognise_dir(
        dir,
        &DirKind {
            what: "a partial build",
            file: "a partial build's file",
            allowed: partial_entry,
            required: None,
            kinds: &[FileKind::Checkpoint, FileKind::Vectors, FileKind::Meta],
            legacy_spool: true,
        },
    )
}

/// Refuses to replace the index directory `dir` when it is write-protected: the directory or
/// one of its files has its owner's write permission off (`chmod a-w`, `chmod -R u-w`) or is
/// immutable or append-only (`chattr +i`, `chattr +a`), or this user may not write to it.
/// A write-protected index is the user saying "do not change this"; an exchange needs no
/// write permission on the directory itself, so without this a build, rebuild or add put a
/// writable index in its place (the protection gone) and left the old one, which it could
/// not remove, in `<dir>.partial`. The mode bits are read rather than only the access asked:
/// root may write anything, and its protected index is as much the user's word. The error
/// says how to undo what was found (`chmod`, or `chattr` as root), every kind at once.
///
/// `run` is the command that would replace it (`build`, `rebuild`, `add`, `remove`): the
/// error's advice is that command's way around the protection (found by an audit: an add or
/// a remove was told to write a copy with `--out`, which they do not have).
pub fn check_not_write_protected(dir: &Path, run: &'static str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::metadata(dir).map_err(|e| IndexError::io(dir, e))?;
    // No chmod undoes this one, so it is said first: the publication's rename would fail
    // with EBUSY after every row was copied and encoded (found by an audit).
    if is_mount_point(dir, &md) {
        return Err(IndexError::MountPoint {
            path: dir.to_path_buf(),
            run,
            left: None,
        });
    }
    let mut found = Protections::default();
    let mode = md.permissions().mode() & 0o7777;
    let dir_why = if mode & 0o200 == 0 {
        found.mode = true;
        Some(format!(
            "the directory's mode is {mode:o}: its owner may not write to it"
        ))
    } else {
        locked_flag(dir).map(|l| {
            found.add(l);
            format!("the directory is {}", l.what())
        })
    };
    // A protected directory is refused whatever its files are; they are still read (where
    // they can be) so that the advice undoes every protection at once.
    let mut files = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = match e {
                    Ok(e) => e,
                    Err(_) if dir_why.is_some() => break,
                    Err(e) => return Err(IndexError::io(dir, e)),
                };
                let Ok(md) = e.metadata() else { continue };
                if !md.is_file() {
                    continue;
                }
                let name = e.file_name().to_string_lossy().into_owned();
                let mode = md.permissions().mode() & 0o7777;
                if mode & 0o200 == 0 {
                    found.mode = true;
                    files.push((
                        name,
                        format!("has mode {mode:o}: its owner may not write to it"),
                    ));
                } else if let Some(l) = locked_flag(&e.path()) {
                    // Permission bits do not show it, and root is refused too: the exchange
                    // would carry the file into `<dir>.partial`, which then could not be
                    // removed.
                    found.add(l);
                    files.push((name, format!("is {}", l.what())));
                }
            }
        }
        Err(_) if dir_why.is_some() => {}
        Err(e) => return Err(IndexError::io(dir, e)),
    }
    files.sort();
    let why = match (dir_why, files.first()) {
        (Some(why), _) if files.is_empty() => Some(why),
        (Some(why), _) => Some(format!(
            "{why}; {} of its files {} write-protected too",
            files.len(),
            if files.len() == 1 { "is" } else { "are" }
        )),
        (None, Some((name, why))) => Some(match files.len() {
            1 => format!("its file {name} {why}"),
            2 => format!("its file {name} {why}; 1 more of its files is write-protected too"),
            n => format!(
                "its file {name} {why}; {} more of its files are write-protected too",
                n - 1
            ),
        }),
        (None, None) => None,
    };
    if let Some(why) = why {
        return Err(IndexError::WriteProtected {
            path: dir.to_path_buf(),
            why,
            fix: found.fix(dir),
            run,
        });
    }
    // Another user's index, or one on a read-only mount: nothing this user may change.
    // Asked for the effective uid and gid, which the process writes with: `access` answers
    // for the real ones, which differ in a setuid or setgid program (or one that changed its
    // effective uid), and would let it through to an index it then could not write.
    if let Err(e) = effective_access(dir, libc::W_OK)? {
        let fix = if e.raw_os_error() == Some(libc::EROFS) {
            "first mount its file system read-write"
        } else {
            "first have its owner make it writable for you"
        };
        return Err(IndexError::WriteProtected {
            path: dir.to_path_buf(),
            why: format!("this user may not write to it: {e}"),
            fix: fix.to_string(),
            run,
        });
    }
    Ok(())
}

/// Whether this process may access `path` in `mode` (`libc::W_OK` and so on) as its
/// effective uid and gid, which it writes with (`access` answers for the real ones): the
/// kernel's own check, groups and ACLs included. The outer error is a path that cannot be
/// passed to the kernel (an interior NUL), the inner one the kernel's refusal.
pub(crate) fn effective_access(
    path: &Path,
    mode: libc::c_int,
) -> Result<std::result::Result<(), std::io::Error>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| IndexError::io(path, e.into()))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) } != 0 {
        return Ok(Err(std::io::Error::last_os_error()));
    }
    Ok(Ok(()))
}

/// Whether `dir` (whose metadata is `md`) is a mount point: on another device than the
/// folder above it (a Docker volume), or the root of a mount of the same file system (a bind
/// mount, whose device is its source's), as statx(2) says where the kernel tells (Linux 5.8
/// and later). A symbolic link is not: the rename moves the link, not what it names.
fn is_mount_point(dir: &Path, md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return false;
    }
    // Where the kernel says, it alone decides (review R23: a btrfs subvolume has a device
    // of its own but is no mount, and can be renamed within its parent); elsewhere another
    // device than the parent's is the sign.
    if let Some(root) = mount_root(dir) {
        return root;
    }
    let parent = crate::lock::folder_of(dir);
    std::fs::metadata(parent).is_ok_and(|p| p.dev() != md.dev())
}

/// Whether statx(2) marks `dir` as the root of a mount (`STATX_ATTR_MOUNT_ROOT`); `None`
/// where it cannot tell (an older kernel, a file system that does not say).
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
fn mount_root(dir: &Path) -> Option<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `buf` a statx buffer this frame owns,
    // which the call fills (all zeroes is a valid value of it).
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS,
            &mut buf,
        )
    };
    let flag = libc::STATX_ATTR_MOUNT_ROOT as u64;
    (r == 0 && buf.stx_attributes_mask & flag != 0).then_some(buf.stx_attributes & flag != 0)
}

/// Cannot tell here: only the device is compared.
#[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
fn mount_root(_dir: &Path) -> Option<bool> {
    None
}

/// The protections [`check_not_write_protected`] found, each needing its own command to undo.
#[derive(Default)]
struct Protections {
    /// The owner's write permission is off somewhere.
    mode: bool,
    /// Something is immutable.
    immutable: bool,
    /// Something is append-only.
    append_only: bool,
}

impl Protections {
    fn add(&mut self, l: Locked) {
        match l {
            Locked::Immutable => self.immutable = true,
            Locked::AppendOnly => self.append_only = true,
        }
    }

    /// What to run to make `dir` writable again: `chattr` for the attributes (which only
    /// root, or a holder of CAP_LINUX_IMMUTABLE, may take off) and `chmod` for the modes.
    fn fix(&self, dir: &Path) -> String {
        let flags: Vec<&str> = [(self.immutable, "-i"), (self.append_only, "-a")]
            .into_iter()
            .filter_map(|(on, f)| on.then_some(f))
            .collect();
        let d = dir.display();
        let chattr = format!("`chattr -R {} {d}` (as root)", flags.join(" "));
        let chmod = format!("`chmod -R u+w {d}` (by its owner)");
        match (flags.is_empty(), self.mode) {
            (true, _) => format!("first make it writable with {chmod}"),
            (false, false) => format!("first take the attribute off with {chattr}"),
            (false, true) => format!(
                "first take the attribute off with {chattr} and make it writable with {chmod}"
            ),
        }
    }
}

/// A file attribute that forbids changing, renaming or removing a file even to root,
/// whatever its mode says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Locked {
    /// `chattr +i`.
    Immutable,
    /// `chattr +a`.
    AppendOnly,
}

impl Locked {
    /// The attribute in words, with the command that sets it.
    fn what(self) -> &'static str {
        match self {
            Locked::Immutable => "immutable (`chattr +i`)",
            Locked::AppendOnly => "append-only (`chattr +a`)",
        }
    }
}

/// The immutable or append-only attribute of `path` (`chattr +i`, `chattr +a`), if it has
/// one. `None` where the file system keeps no such attributes or the flags cannot be read
/// (the other checks and the writes themselves still stand).
#[cfg(target_os = "linux")]
pub(crate) fn locked_flag(path: &Path) -> Option<Locked> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    // linux/fs.h; the `libc` crate names the ioctl but not the flags.
    const FS_IMMUTABLE_FL: libc::c_int = 0x10;
    const FS_APPEND_FL: libc::c_int = 0x20;
    // O_NONBLOCK: opening a FIFO planted in the directory must not wait for a writer.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let mut flags: libc::c_int = 0;
    // SAFETY: `f` is an open descriptor and `flags` an int, which FS_IOC_GETFLAGS fills
    // (the kernel reads and writes an int whatever the macro's type says).
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return None;
    }
    if flags & FS_IMMUTABLE_FL != 0 {
        Some(Locked::Immutable)
    } else if flags & FS_APPEND_FL != 0 {
        Some(Locked::AppendOnly)
    } else {
        None
    }
}

/// No file attributes to read outside Linux.
#[cfg(not(target_os = "linux"))]
pub(crate) fn locked_flag(_path: &Path) -> Option<Locked> {
    None
}

/// What `partial`, a leftover partial directory with no checkpoint, holds, in words: said
/// when it is removed, and when it cannot be.
fn leftover_what(partial: &Path) -> &'static str {
    if partial.join(FileKind::Meta.file_name()).is_file() {
        "a complete index and no checkpoint: either the one the output held before its last \
         build, rebuild, add or remove (which was killed, or could not remove it), or a new one \
         finished and killed just before it was put in place"
    } else {
        "a partial build without a checkpoint (killed while it was being made)"
    }
}

/// Removes `partial`, a leftover partial directory with no checkpoint, or says what it holds
/// and that it must be removed by hand when it cannot be (a write-protected index the last
/// publication moved there, which it could not remove either, say).
fn remove_leftover(partial: &Path) -> Result<()> {
    std::fs::remove_dir_all(partial).map_err(|err| IndexError::LeftoverNotRemoved {
        path: partial.to_path_buf(),
        what: leftover_what(partial).to_string(),
        err,
    })
}

/// What a publication killed half-way left beside an index as `.<name>.old-<pid>`: said
/// when it is removed, and when it cannot be.
const OLD_SIBLING_WHAT: &str = "a replaced index: the one the output held before its last \
     build, rebuild, add or remove, which was killed before it removed it";

/// What [`clear_killed_publication`] removed, and what it could not.
#[derive(Debug, Default)]
struct Cleared {
    /// Removed, each with what it was, in words (each said already: [`said_removed`]).
    removed: Vec<(PathBuf, &'static str)>,
    /// What could not be removed, or was not relbert's to remove, as errors naming it.
    left: Vec<IndexError>,
}

/// Says (logs, at info) that `path`, `what` a killed run of `out` left, was removed: said
/// where it is removed, as nobody asked for it, on every path that removes one (found by a
/// review: a build, add or remove that went on to change the index removed them without a
/// word, and so would one that then failed).
fn said_removed(path: &Path, out: &Path, what: &str) {
    tracing::info!(
        "removed {}, which a killed run of {} left: {what}",
        path.display(),
        out.display()
    );
}

/// Removes what a killed publication of `out` left: the replaced indexes beside it
/// (`.<name>.old-<pid>`) and `partial` when it holds no checkpoint (the old index an
/// exchange put there, a new one not yet in place, or a partial build killed while being
/// made). Called under the output's lock and the gate, by the next run that changes `out`
/// and by one that has nothing to do ([`clear_leftovers`]). In [`Cleared::left`]: a partial
/// directory relbert did not leave ([`recognise_partial`]), and what cannot be removed
/// ([`IndexError::LeftoverNotRemoved`]); each is gone through, whatever another gave.
fn clear_killed_publication(out: &Path, partial: &Path) -> Cleared {
    let mut cleared = Cleared::default();
    for p in old_siblings(out) {
        match std::fs::remove_dir_all(&p) {
            Ok(()) => {
                said_removed(&p, out, OLD_SIBLING_WHAT);
                cleared.removed.push((p, OLD_SIBLING_WHAT));
            }
            Err(err) => cleared.left.push(IndexError::LeftoverNotRemoved {
                path: p,
                what: OLD_SIBLING_WHAT.to_string(),
                err,
            }),
        }
    }
    if std::fs::symlink_metadata(partial).is_ok() {
        let what = leftover_what(partial);
        let removed = recognise_partial(partial).and_then(|()| {
            match partial.join(FileKind::Checkpoint.file_name()).exists() {
                true => Ok(false),
                false => remove_leftover(partial).map(|()| true),
            }
        });
        match removed {
            Ok(true) => {
                said_removed(partial, out, what);
                cleared.removed.push((partial.to_path_buf(), what));
            }
            Ok(false) => {}
            Err(e) => cleared.left.push(e),
        }
    }
    cleared
}

/// The replaced indexes a publication killed half-way left beside `out`: recognised indexes
/// named `.<name>.old-<pid>`, the name [`publish`] gives them, whose pid is no live process
/// but this one (found by a review: any `.<name>.old-*` went, a user's `.A.old-mybackup`
/// copy too).
fn old_siblings(out: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else {
        return Vec::new();
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let prefix = format!(".{}.old-", name.to_string_lossy());
    let Ok(rd) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| {
            let file_name = e.file_name();
            let file_name = file_name.to_string_lossy();
            file_name
                .strip_prefix(&prefix)
                .and_then(publisher_pid)
                .is_some_and(|pid| pid == std::process::id() || !process_alive(pid))
        })
        .map(|e| e.path())
        .filter(|p| recognise_index(p).is_ok())
        .collect()
}

/// The pid in the suffix [`publish`] writes: digits only, as `std::process::id` prints
/// them (no sign, no leading zero), and a pid the system can have ([`pid_max`]): a larger
/// number is no name relbert gave (found by a review: a user's dated copy
/// `.idx.old-20261204` went with the next add).
fn publisher_pid(suffix: &str) -> Option<u32> {
    if suffix.is_empty() || suffix.starts_with('0') || !suffix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    suffix
        .parse::<u32>()
        .ok()
        .filter(|&pid| pid < pid_max() && libc::pid_t::try_from(pid).is_ok())
}

/// Linux's largest possible `pid_max`, 2^22: the bound where the system's cannot be read.
const PID_MAX_LIMIT: u32 = 1 << 22;

/// The bound the system's pids stay below (Linux's `/proc/sys/kernel/pid_max`), or
/// [`PID_MAX_LIMIT`] where it cannot be read.
fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&m| m > 0)
        .unwrap_or(PID_MAX_LIMIT)
}

/// Whether a process `pid` exists (one of another user's too: `kill` then fails with
/// `EPERM`). A pid that cannot be checked counts as alive: what it left stays.
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Which command a partial build is for, as the [`IndexSpec::input`] its caller gives says:
/// a rebuild names its source (`index:<id>`), a remove its source and the rows it leaves out
/// (`index:<id> without …`, [`crate::rebuild::rebuild_without`]), a grow its base and new
/// rows (`rows of index <id> then …`, [`crate::grow`]); anything else is a build's identity
/// of its pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunKind {
    Build,
    Rebuild,
    Add,
    Remove,
}

/// What follows a remove's source id in its spec's input.
pub(crate) const WITHOUT: &str = " without ";

impl RunKind {
    fn of(input: &str) -> RunKind {
        if input.starts_with("index:") && input.contains(WITHOUT) {
            RunKind::Remove
        } else if input.starts_with("index:") {
            RunKind::Rebuild
        } else if input.starts_with("rows of index ") {
            RunKind::Add
        } else {
            RunKind::Build
        }
    }

    /// As the user types it after `relbert index`.
    fn command(self) -> &'static str {
        match self {
            RunKind::Build => "build",
            RunKind::Rebuild => "rebuild",
            RunKind::Add => "add",
            RunKind::Remove => "remove",
        }
    }

    /// Whether the run replaces the index it reads, storing what it stores (an add grows
    /// it, a remove shrinks it): no output or storage flag of its own.
    fn in_place(self) -> bool {
        matches!(self, RunKind::Add | RunKind::Remove)
    }
}

/// The index a rebuild reads, a remove shrinks or an add grows (its id), from the spec's
/// input.
fn source_id(input: &str) -> Option<&str> {
    match RunKind::of(input) {
        RunKind::Rebuild => input.strip_prefix("index:"),
        RunKind::Remove => input
            .strip_prefix("index:")
            .and_then(|r| r.split_once(WITHOUT))
            .map(|(id, _)| id),
        RunKind::Add => input
            .strip_prefix("rows of index ")
            .and_then(|r| r.split_once(" then "))
            .map(|(id, _)| id),
        RunKind::Build => None,
    }
}

/// How the vectors are stored, with the flag that asks for it (`--f16`): "precision" alone
/// reads as the encoder's `--dtype`.
fn storage(p: Precision) -> String {
    match p {
        Precision::F16 => "f16 vectors (--f16)".into(),
        Precision::F32 => "f32 vectors".into(),
    }
}

/// The run that left a partial build of `spec`, in words, with what its checkpoint records
/// of its flags; `now` is the run asking, whose index is said to be "the one this … reads"
/// when it is the same.
fn left_by(spec: &IndexSpec, now: &IndexSpec) -> String {
    let kind = RunKind::of(&spec.input);
    let of = match source_id(&spec.input) {
        Some(id) if source_id(&now.input) == Some(id) => format!(
            " {} index {id} (the one this {})",
            if kind == RunKind::Add { "to" } else { "of" },
            match RunKind::of(&now.input) {
                RunKind::Add => "add grows",
                RunKind::Remove => "remove shrinks",
                _ => "rebuild reads",
            }
        ),
        Some(id) => format!(
            " {} index {id}",
            if kind == RunKind::Add { "to" } else { "of" }
        ),
        None => String::new(),
    };
    // An add or a remove stores what its index does: no flag of its own.
    let flags = if kind.in_place() {
        String::new()
    } else {
        format!(", storing {}", storage(spec.precision))
    };
    format!("an interrupted `index {}`{of}{flags}", kind.command())
}

/// What relbert appends to [`crate::EncoderInfo::aggregation`] before the number format its
/// vectors were computed at (`mask+dtype:bf16`; float32 appends nothing). The aggregation is
/// otherwise opaque to this crate: this is read only to word a refusal ([`mismatch`]).
const DTYPE_SUFFIX: &str = "+dtype:";

/// The number formats `left` and `now` record, when that is all that tells the two encoders
/// apart: a build resumed with another `--dtype` (or without the one it began with), which
/// is told what flag to give rather than that the encoder is another.
fn only_number_format_differs<'a>(
    left: &'a crate::EncoderInfo,
    now: &'a crate::EncoderInfo,
) -> Option<(&'a str, &'a str)> {
    let split = |a: &'a str| a.rsplit_once(DTYPE_SUFFIX).unwrap_or((a, "f32"));
    let ((a, was), (b, is)) = (split(&left.aggregation), split(&now.aggregation));
    let rest = |i: &crate::EncoderInfo, aggregation: &str| crate::EncoderInfo {
        aggregation: aggregation.to_string(),
        ..i.clone()
    };
    (was != is && rest(left, a) == rest(now, b)).then_some((was, is))
}

/// Why a partial build of `left` (in `partial`, for the output `out`) cannot be resumed by a
/// run of `now`, if it cannot: the error names the run that left it (an add, a rebuild or a
/// build, with its flags as its checkpoint records them), what differs, and what to run to
/// finish it or that it can be removed.
fn mismatch(partial: &Path, out: &Path, left: &IndexSpec, now: &IndexSpec) -> Option<IndexError> {
    let (lk, nk) = (RunKind::of(&left.input), RunKind::of(&now.input));
    let p = partial.display();
    let left_words = left_by(left, now);
    let err = |what: &'static str, found: String, requested: String, detail: String| {
        Some(IndexError::PartialMismatch {
            path: partial.to_path_buf(),
            what,
            found: found.into(),
            requested: requested.into(),
            detail: detail.into(),
        })
    };
    // What removing it gives up: a build or add that read standard input keeps its only
    // copy there.
    let spooled = partial.join(SPOOL).is_file();
    let spool = if spooled {
        format!(" (with the copy of standard input it holds, {SPOOL})")
    } else {
        String::new()
    };
    // That copy is also what the run resumes from when given `--pairs -` and an empty
    // standard input: the way to finish it when its pairs came from a pipe that is gone
    // (found by a review: only "the same pairs" was said).
    let from_copy = if spooled {
        format!(
            ", or with `--pairs -` and nothing on standard input (which resumes from its \
             copy, {SPOOL}),"
        )
    } else {
        String::new()
    };
    let remove = format!("or remove {p} to give it up{spool}");
    if lk != nk {
        let how = match lk {
            RunKind::Add | RunKind::Remove => format!(
                "`relbert index {} --index {}` with the same pairs",
                lk.command(),
                out.display()
            ),
            RunKind::Rebuild => format!(
                "the same `relbert index rebuild … --out {}{}`{}",
                out.display(),
                // Only an output that is there needs it.
                if out.exists() { " --force" } else { "" },
                if left.precision == Precision::F16 {
                    " with --f16"
                } else {
                    ""
                }
            ),
            RunKind::Build => format!(
                "the same `relbert index build … --out {}{}` with the same pairs{}",
                out.display(),
                if out.exists() { " --force" } else { "" },
                if left.precision == Precision::F16 {
                    " and --f16"
                } else {
                    ""
                }
            ),
        };
        return err(
            "kind of run",
            format!("index {}", lk.command()),
            format!("index {}", nk.command()),
            format!(
                "it is {left_words}, which this {} can neither resume nor replace: run that {} \
                 again to finish it ({how}), {remove}; then run this {} again",
                nk.command(),
                lk.command(),
                nk.command()
            ),
        );
    }
    let run = lk.command();
    let (old_src, new_src) = (source_id(&left.input), source_id(&now.input));
    if old_src != new_src {
        let old_id = old_src.unwrap_or("?");
        let new_id = new_src.unwrap_or("?");
        return match lk {
            RunKind::Add | RunKind::Remove => err(
                "index",
                old_id.into(),
                new_id.into(),
                format!(
                    "it is {left_words}, but {} holds index {new_id} now (it was replaced \
                     since), so the {run} cannot be resumed: remove {p}{spool} and run the \
                     {run} again",
                    out.display()
                ),
            ),
            _ => err(
                "source index",
                old_id.into(),
                new_id.into(),
                format!(
                    "it is {left_words}, and this rebuild reads index {new_id}: another \
                     source, or its source changed since (an `index add` or `remove` gives an \
                     index a new id). A rebuild of index {old_id} finishes it if that index \
                     still exists; if not, it can never be resumed: remove {p}{spool} and run \
                     this rebuild again"
                ),
            ),
        };
    }
    if left.dim != now.dim {
        return err(
            "dimension",
            left.dim.to_string(),
            now.dim.to_string(),
            format!(
                "it is {left_words} of {}-dimensional vectors, and this {run} makes {} \
                 dimensions (another model): run it again with the original model to finish \
                 it, {remove}",
                left.dim, now.dim
            ),
        );
    }
    if left.precision != now.precision {
        let again = match left.precision {
            Precision::F16 => "with --f16",
            Precision::F32 => "without --f16",
        };
        return err(
            "storage (--f16)",
            left.precision.name().into(),
            now.precision.name().into(),
            format!(
                "it is {left_words}, and this {run} stores {}: run it again {again} to finish \
                 it, {remove}",
                storage(now.precision)
            ),
        );
    }
    if let Some((was, is)) = only_number_format_differs(&left.encoder, &now.encoder) {
        return err(
            "number format (--dtype)",
            was.into(),
            is.into(),
            format!(
                "it is {left_words} with number format {was} (--dtype {was}), now {is}: run it \
                 again with --dtype {was} to finish it, {remove}"
            ),
        );
    }
    if left.encoder != now.encoder {
        let e = |i: &crate::EncoderInfo| {
            format!(
                "model {} (weights {}), aggregation {}, template {:?}",
                i.model,
                i.weights_sha256.chars().take(12).collect::<String>(),
                i.aggregation,
                i.template
            )
        };
        let (found, requested) = (e(&left.encoder), e(&now.encoder));
        return err(
            "encoder",
            found.clone(),
            requested.clone(),
            format!(
                "it is {left_words} with another encoder: {found} (now {requested}): run it \
                 again with the original model, template and aggregation to finish it, \
                 {remove}"
            ),
        );
    }
    if left.input != now.input {
        let detail = match lk {
            RunKind::Add | RunKind::Remove => format!(
                "it is {left_words} of other pairs than this {run}'s (input {}, now {}): run \
                 that {run} again with the same pairs{from_copy} to finish it, {remove}",
                left.input, now.input
            ),
            // A rebuild's input is its source, compared above.
            RunKind::Rebuild | RunKind::Build => format!(
                "it is {left_words} of other pairs (input {}, now {}: the pair files changed \
                 since, or others are given): run it again with the same pairs{from_copy} to \
                 finish it, {remove}",
                left.input, now.input
            ),
        };
        return err("input", left.input.clone(), now.input.clone(), detail);
    }
    None
}

fn validate_spec(spec: &IndexSpec) -> Result<()> {
    if spec.dim == 0 || spec.dim > 65_536 {
        return Err(IndexError::InvalidParameter(format!(
            "dimension {} (must be 1..=65536)",
            spec.dim
        )));
    }
    Ok(())
}

impl IndexBuilder {
    /// Starts a build of `out_dir`, or resumes the one found in `<out_dir>.partial/`.
    ///
    /// Takes the output's writer lock first ([`IndexError::Locked`] if another process holds
    /// it). An existing `out_dir` is refused with [`IndexError::AlreadyExists`] unless `force`;
    /// with `force` it must be an index ([`recognise_index`], else [`IndexError::NotOurs`])
    /// and is replaced only by the final rename in [`finish`](Self::finish); a write-protected
    /// one is refused with [`IndexError::WriteProtected`] ([`check_not_write_protected`]). A
    /// leftover partial directory must hold only a partial build's files
    /// ([`recognise_partial`]). A partial build left by another kind of run (an add, a
    /// rebuild, a build, as the spec's `input` tells them apart) or started with a different
    /// dimension, precision, [`crate::EncoderInfo`] or input is refused with
    /// [`IndexError::PartialMismatch`], naming the run that left it and what to do (remove it
    /// with [`discard_partial`] to start over). A partial directory without a checkpoint
    /// (killed while being created, or while being published, or the index the last
    /// publication replaced) is discarded ([`IndexError::LeftoverNotRemoved`] if it cannot
    /// be).
    pub fn create_or_resume(out_dir: &Path, spec: IndexSpec, force: bool) -> Result<Self> {
        Self::create_or_resume_checking(out_dir, spec, force, || Ok(()))
    }

    /// [`Self::create_or_resume`], running `check` once every cheap refusal has passed (the
    /// lock taken, the output recognised and not write-protected, a leftover partial
    /// directory recognised and, when resumed, its checkpoint matching `spec`) and before the
    /// partial directory is made or a resumed one is touched; an error of `check` is returned
    /// with nothing created. What a killed run left beside the output and nobody resumes (the
    /// old index a publication moved aside, a partial directory without a checkpoint) is
    /// removed before `check`, as it would be before any build.
    ///
    /// For a rebuild or an add, whose `check` reads their whole source (minutes for a large
    /// index): a second writer or a write-protected output is refused before that read, not
    /// after it, and a damaged source still leaves no partial directory behind.
    pub(crate) fn create_or_resume_checking(
        out_dir: &Path,
        spec: IndexSpec,
        force: bool,
        check: impl FnOnce() -> Result<()>,
    ) -> Result<Self> {
        validate_spec(&spec)?;
        let run = RunKind::of(&spec.input).command();
        let lock = OutputLock::acquire(out_dir)?;
        if std::fs::symlink_metadata(out_dir).is_ok() {
            if !force {
                return Err(IndexError::AlreadyExists {
                    path: out_dir.to_path_buf(),
                });
            }
            recognise_index(out_dir)?;
            check_not_write_protected(out_dir, run)?;
        }
        let partial = partial_dir(out_dir)?;
        {
            // Under the gate a signal handler closes (`lock::stop_writers`): a leftover is
            // removed whole, or not at all, before the process ends on a signal.
            let _gate = crate::lock::writing();
            // A replaced index beside the output that cannot be removed is said now, as
            // such a partial directory is: left without a word, it would stay for good.
            if let Some(e) = clear_killed_publication(out_dir, &partial)
                .left
                .into_iter()
                .next()
            {
                return Err(e);
            }
        }
        if partial.exists() {
            Self::resume(out_dir, partial, spec, force, lock, check)
        } else {
            check()?;
            // The directory and its first checkpoint are made under the gate: a signal
            // handler that has closed it sees either no partial directory, which this run
            // then never makes, or one with its checkpoint.
            let _gate = crate::lock::writing();
            // A full disk while the directory, its first files or its checkpoint are made
            // gets the advice of one met later (found by an audit: it was a bare ENOSPC).
            let made = partial.clone();
            Self::create(out_dir, partial, spec, force, lock).map_err(|e| {
                let e = e.no_space_in(&made, run);
                if std::fs::symlink_metadata(&made).is_ok() {
                    e
                } else {
                    e.partial_removed()
                }
            })
        }
    }

    /// Makes the partial directory (absent: the caller checked) and starts a build in it. A
    /// failure (a full disk, say) removes the directory again, under the lock still held: it
    /// holds no checkpoint, nothing to resume, and a run that could not make it should not
    /// leave it for the next one to find.
    fn create(
        out_dir: &Path,
        partial: PathBuf,
        spec: IndexSpec,
        force: bool,
        lock: OutputLock,
    ) -> Result<Self> {
        Self::make_partial_dir(out_dir, &partial)?;
        let (vectors, blob) = Self::create_files(&partial).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&partial);
        })?;
        let b = IndexBuilder {
            out_dir: out_dir.to_path_buf(),
            partial,
            force,
            ckpt: Checkpoint {
                spec,
                rows_done: 0,
                count: 0,
                skipped: 0,
                vector_bytes: 0,
                blob_bytes: 0,
                vectors_crc: 0,
                blob_crc: 0,
            },
            vectors,
            blob,
            seen: HashMap::new(),
            seen_more: HashMap::new(),
            exact_duplicates: false,
            record_at: Vec::new(),
            poisoned: false,
            background: None,
            created: true,
            lock,
        };
        if let Err(e) = b.write_checkpoint() {
            return Err(b.abandon(e));
        }
        Ok(b)
    }

    /// Makes the partial directory itself, and no folder above it: the output's lock, taken
    /// before, vouched for its folder, and one gone since (deleted by its user, or a race)
    /// is refused with [`IndexError::FolderMissing`] rather than made again. One already
    /// there is not this run's (the caller found none): it is refused and left as it is,
    /// since a failure here removes nothing.
    fn make_partial_dir(out_dir: &Path, partial: &Path) -> Result<()> {
        std::fs::create_dir(partial).map_err(|e| {
            crate::lock::folder_missing(&e, partial, out_dir)
                .unwrap_or_else(|| IndexError::io(partial, e))
        })
    }

    /// Fills the new `partial` with an empty `vectors` (its placeholder header) and
    /// `pairs.blob`.
    fn create_files(partial: &Path) -> Result<(File, File)> {
        let vpath = partial.join(FileKind::Vectors.file_name());
        let vectors = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&vpath)
            .map_err(|e| IndexError::io(&vpath, e))?;
        vectors
            .write_all_at(
                &encode_header(
                    FileKind::Vectors,
                    0,
                    BLOCK_SHIFT,
                    &NO_ID,
                    crc32fast::hash(&[]),
                ),
                0,
            )
            .and_then(|_| vectors.sync_all())
            .map_err(|e| IndexError::io(&vpath, e))?;
        let bpath = partial.join(BLOB);
        let blob = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&bpath)
            .map_err(|e| IndexError::io(&bpath, e))?;
        blob.sync_all().map_err(|e| IndexError::io(&bpath, e))?;
        Ok((vectors, blob))
    }

    fn resume(
        out_dir: &Path,
        partial: PathBuf,
        spec: IndexSpec,
        force: bool,
        lock: OutputLock,
        check: impl FnOnce() -> Result<()>,
    ) -> Result<Self> {
        let ckpt_path = partial.join(FileKind::Checkpoint.file_name());
        let ckpt = read_checkpoint(&ckpt_path, &partial)?;
        if let Some(e) = mismatch(&partial, out_dir, &ckpt.spec, &spec) {
            return Err(e);
        }
        let row_bytes = spec.dim as u64 * spec.precision.bytes() as u64;
        if ckpt.vector_bytes != ckpt.count * row_bytes || ckpt.rows_done < ckpt.count {
            return Err(IndexError::corrupt(&ckpt_path, "inconsistent checkpoint"));
        }
        // Before the files are truncated to the checkpoint: a refusal leaves them as they were.
        check()?;
        let vpath = partial.join(FileKind::Vectors.file_name());
        let bpath = partial.join(BLOB);
        let vectors = open_rw(&vpath)?;
        let blob = open_rw(&bpath)?;
        let need = |f: &File, p: &Path, len: u64| -> Result<()> {
            let actual = f.metadata().map_err(|e| IndexError::io(p, e))?.len();
            if actual < len {
                return Err(IndexError::Truncated {
                    path: p.to_path_buf(),
                    expected: len,
                    actual,
                });
            }
            f.set_len(len)
                .and_then(|_| f.sync_all())
                .map_err(|e| IndexError::io(p, e))
        };
        need(&vectors, &vpath, HEADER_LEN as u64 + ckpt.vector_bytes)?;
        need(&blob, &bpath, ckpt.blob_bytes)?;
        // Rebuild the duplicate filter from the committed records, which must be those the
        // checkpoints vouched for: a changed byte in a pair string still decodes.
        let mut buf = vec![0u8; ckpt.blob_bytes as usize];
        blob.read_exact_at(&mut buf, 0)
            .map_err(|e| IndexError::io(&bpath, e))?;
        let actual = crc32fast::hash(&buf);
        if actual != ckpt.blob_crc {
            return Err(damaged(
                &bpath,
                &partial,
                "pair records",
                ckpt.blob_crc,
                actual,
            ));
        }
        let mut b = IndexBuilder {
            out_dir: out_dir.to_path_buf(),
            partial,
            force,
            ckpt,
            vectors,
            blob,
            seen: HashMap::new(),
            seen_more: HashMap::new(),
            exact_duplicates: false,
            record_at: Vec::new(),
            poisoned: false,
            background: None,
            created: false,
            lock,
        };
        let mut at = 0usize;
        while at < buf.len() {
            let (p, used) = decode_record(&buf[at..]).ok_or_else(|| {
                IndexError::corrupt(&bpath, format!("damaged record at byte {at}"))
            })?;
            let row = b.record_at.len() as u32;
            b.remember(spelling_hash(p.head, p.tail), row);
            b.record_at.push(at as u64);
            at += used;
        }
        if b.record_at.len() as u64 != b.ckpt.count {
            return Err(IndexError::corrupt(
                &bpath,
                format!(
                    "{} records but the checkpoint says {}",
                    b.record_at.len(),
                    b.ckpt.count
                ),
            ));
        }
        Ok(b)
    }

    fn remember(&mut self, h: u64, row: u32) {
        match self.seen.entry(h) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.seen_more.entry(h).or_default().push(row);
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(row);
            }
        }
    }

    fn write_checkpoint(&self) -> Result<()> {
        let path = self.partial.join(FileKind::Checkpoint.file_name());
        let payload = meta::encode(&self.ckpt, &path)?;
        write_file(&path, FileKind::Checkpoint, &payload, &NO_ID)?;
        sync_dir(&self.partial)
    }

    /// Number of input rows already consumed (stored or skipped as duplicates) and durable.
    /// A resumed build expects the caller to continue with input row `rows_done()`.
    pub fn rows_done(&self) -> u64 {
        self.ckpt.rows_done
    }

    /// Number of rows stored so far (input rows minus skipped duplicates).
    pub fn count(&self) -> u64 {
        self.ckpt.count
    }

    /// Number of input rows skipped so far because their (head, tail) was already present.
    pub fn skipped(&self) -> u64 {
        self.ckpt.skipped
    }

    /// The specification this build was started with.
    pub fn spec(&self) -> &IndexSpec {
        &self.ckpt.spec
    }

    /// The partial build directory (`<out>.partial`).
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// Where the caller may keep a copy of its input for the life of the partial build
    /// (`<out>.partial/input.spool`, or that name with `.tmp` appended while it is written):
    /// an input that cannot be read twice, such as standard input, so that an interrupted
    /// build can resume from it. The caller begins it with [`spool_header`]: only a copy with
    /// that mark is recognised as relbert's in a published index ([`recognise_index`]), where
    /// a kill right after publication leaves it. Recognised as part of the partial build,
    /// removed by [`finish`](Self::finish) after publication; the builder never reads it.
    pub fn spool_path(&self) -> PathBuf {
        self.partial.join(SPOOL)
    }

    /// Whether this builder made its partial directory, rather than resuming one that an
    /// earlier run left (and may resume again): only such a directory is this run's to remove
    /// when it fails ([`Self::abandon`]). Asked by tests; [`Self::abandon`] reads the field.
    #[cfg(test)]
    pub(crate) fn created(&self) -> bool {
        self.created
    }

    /// Removes the partial directory, under the output's lock this builder holds (which
    /// [`discard_partial`] would wait for), then releases the lock. For a run that fails
    /// before its partial directory holds anything worth resuming: the caller checks that it
    /// [`created`](Self::created) it.
    pub(crate) fn discard(self) -> Result<()> {
        // Under the gate a signal handler closes: removed whole before the process ends.
        let _gate = crate::lock::writing();
        let partial = self.partial.clone();
        std::fs::remove_dir_all(&partial).map_err(|e| IndexError::io(&partial, e))?;
        if let Some(parent) = partial.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(())
    }

    /// Ends a run that failed with `err` before its partial directory holds anything worth
    /// resuming: the directory goes when this run made it and it holds no copy of the
    /// caller's input (nothing in it then that the source cannot give again); a directory an
    /// earlier run left, which the same command may still resume, and one holding a whole
    /// copy of standard input stay. Returns `err`; a full disk's without the directory it
    /// named, once that is gone. Should the removal fail too, what is left is a partial
    /// build's, which the next run resumes or discards.
    pub(crate) fn abandon(self, err: IndexError) -> IndexError {
        // Whatever step failed (the first checkpoint, an add's copy of its input or of the
        // index's rows), a full disk is said with what to do.
        let err = err.no_space_in(&self.partial, self.run());
        if self.created && !self.spool_path().exists() && self.discard().is_ok() {
            return err.partial_removed();
        }
        err
    }

    /// Ends a run whose copy of its input ([`Self::spool_path`]) could not be written: `err`
    /// came from writing `path`. The unfinished copy (`.tmp`) goes, being of no use; then as
    /// `Self::abandon`: a partial directory this run made holds nothing now, and goes too
    /// (the error says that nothing was kept); one an earlier run left stays, for the same
    /// command with the same input to resume. A full disk is [`IndexError::NoSpace`] or
    /// [`IndexError::PartialRemoved`], with what to do, as for the rest of the build.
    pub fn spool_failed(self, path: &Path, err: std::io::Error) -> IndexError {
        let mut tmp = self.spool_path().into_os_string();
        tmp.push(".tmp");
        let _ = std::fs::remove_file(&tmp);
        let e = IndexError::io(path, err).no_space_in(&self.partial, self.run());
        self.abandon(e)
    }

    /// Skips as duplicates only rows of the same bytes as a stored one (`exact`), or, as by
    /// default, rows that are a stored pair in any Unicode normal form
    /// ([`crate::pairs::same_spelling`]). A grow copies its base's rows exactly: an index
    /// built before spellings were merged may hold a pair in both forms, and dropping one
    /// would shift every later row against the base's graph.
    pub(crate) fn set_exact_duplicates(&mut self, exact: bool) {
        self.exact_duplicates = exact;
    }

    /// Is (head, tail) already stored (see [`Self::set_exact_duplicates`])? Looks in the
    /// committed records and in `pending`, the record bytes of the chunk being assembled
    /// (starting at blob offset `pending_base`).
    fn is_duplicate(
        &self,
        head: &str,
        tail: &str,
        h: u64,
        pending: &[u8],
        pending_base: u64,
    ) -> Result<bool> {
        let first = match self.seen.get(&h) {
            Some(r) => *r,
            None => return Ok(false),
        };
        let more = self.seen_more.get(&h).map(|v| v.as_slice()).unwrap_or(&[]);
        for &row in std::iter::once(&first).chain(more) {
            let at = self.record_at[row as usize];
            let end = self
                .record_at
                .get(row as usize + 1)
                .copied()
                .unwrap_or(pending_base + pending.len() as u64);
            let bytes: Vec<u8>;
            let rec: &[u8] = if at >= pending_base {
                &pending[(at - pending_base) as usize..(end - pending_base) as usize]
            } else {
                let mut b = vec![0u8; (end - at) as usize];
                let bpath = self.partial.join(BLOB);
                self.blob
                    .read_exact_at(&mut b, at)
                    .map_err(|e| IndexError::io(&bpath, e))?;
                bytes = b;
                &bytes
            };
            if let Some((p, _)) = decode_record(rec) {
                let same = if self.exact_duplicates {
                    p.head == head && p.tail == tail
                } else {
                    same_spelling((p.head, p.tail), (head, tail))
                };
                if same {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Appends a chunk: `pairs[i]` goes with row `i` of `vectors` (`pairs.len() × dim` values,
    /// row-major). Rows are L2-normalised before storing (one of unit norm already, as a row
    /// copied from an index, is stored bit for bit); a non-finite or zero row is an
    /// [`IndexError::InvalidVector`] (nothing of the chunk is stored then). A (head, tail)
    /// already present (earlier or within the chunk), in these bytes or in another Unicode
    /// normal form ([`crate::pairs::same_spelling`]), is skipped: the first spelling and its
    /// label are kept. When this returns `Ok`, the
    /// chunk is durable: vectors and records are fsynced, then the checkpoint is replaced.
    /// A write that fails for want of space is [`IndexError::NoSpace`], naming the partial
    /// directory.
    pub fn append_chunk(&mut self, pairs: &[PairEntry], vectors: &[f32]) -> Result<ChunkStats> {
        self.append_chunk_inner(pairs, vectors)
            .map_err(|e| e.no_space_in(&self.partial, self.run()))
    }

    /// What kind of run this partial build is for, as its errors name it.
    fn run(&self) -> &'static str {
        RunKind::of(&self.ckpt.spec.input).command()
    }

    fn append_chunk_inner(&mut self, pairs: &[PairEntry], vectors: &[f32]) -> Result<ChunkStats> {
        if self.poisoned {
            return Err(IndexError::InvalidParameter(
                "an earlier append failed; reopen the builder to resume from the checkpoint".into(),
            ));
        }
        let dim = self.ckpt.spec.dim as usize;
        if vectors.len() != pairs.len() * dim {
            return Err(IndexError::DimensionMismatch {
                expected: pairs.len() * dim,
                actual: vectors.len(),
            });
        }
        // Validate and normalise everything before touching any state.
        let mut rows: Vec<f32> = vectors.to_vec();
        for (i, r) in rows.chunks_exact_mut(dim).enumerate() {
            normalize(r).map_err(|reason| IndexError::InvalidVector { row: i, reason })?;
        }
        let precision = self.ckpt.spec.precision;
        let mut vbytes: Vec<u8> = Vec::with_capacity(rows.len() * precision.bytes());
        let mut rec: Vec<u8> = Vec::new();
        let pending_base = self.ckpt.blob_bytes;
        let mut stats = ChunkStats::default();
        let saved = (self.record_at.len(), self.ckpt.clone());
        let mut new_keys: Vec<(u64, u32)> = Vec::new();
        let result = (|| -> Result<()> {
            for (p, r) in pairs.iter().zip(rows.chunks_exact(dim)) {
                let h = spelling_hash(&p.head, &p.tail);
                if self.is_duplicate(&p.head, &p.tail, h, &rec, pending_base)? {
                    stats.skipped += 1;
                    continue;
                }
                let row = self.record_at.len() as u32;
                self.record_at.push(pending_base + rec.len() as u64);
                encode_record(p, &mut rec)?;
                self.remember(h, row);
                new_keys.push((h, row));
                match precision {
                    Precision::F32 => r.iter().for_each(|x| vbytes.extend(x.to_le_bytes())),
                    Precision::F16 => r
                        .iter()
                        .for_each(|x| vbytes.extend(f16::from_f32(*x).to_le_bytes())),
                }
                stats.appended += 1;
            }
            let vpath = self.partial.join(FileKind::Vectors.file_name());
            let bpath = self.partial.join(BLOB);
            self.vectors
                .write_all_at(&vbytes, HEADER_LEN as u64 + self.ckpt.vector_bytes)
                .and_then(|_| self.vectors.sync_data())
                .map_err(|e| IndexError::io(&vpath, e))?;
            self.blob
                .write_all_at(&rec, self.ckpt.blob_bytes)
                .and_then(|_| self.blob.sync_data())
                .map_err(|e| IndexError::io(&bpath, e))?;
            let mut hasher = crc32fast::Hasher::new_with_initial_len(
                self.ckpt.vectors_crc,
                self.ckpt.vector_bytes,
            );
            hasher.update(&vbytes);
            self.ckpt.vectors_crc = hasher.finalize();
            let mut hasher =
                crc32fast::Hasher::new_with_initial_len(self.ckpt.blob_crc, self.ckpt.blob_bytes);
            hasher.update(&rec);
            self.ckpt.blob_crc = hasher.finalize();
            self.ckpt.vector_bytes += vbytes.len() as u64;
            self.ckpt.blob_bytes += rec.len() as u64;
            self.ckpt.count += stats.appended as u64;
            self.ckpt.skipped += stats.skipped as u64;
            self.ckpt.rows_done += pairs.len() as u64;
            self.write_checkpoint()
        })();
        if let (Ok(()), Some(bg)) = (&result, &self.background) {
            bg.rows_available(self.ckpt.count as usize);
        }
        if let Err(e) = result {
            // Roll the in-memory state back; the files are cut back on the next resume.
            self.record_at.truncate(saved.0);
            self.ckpt = saved.1;
            for (h, row) in new_keys {
                if self.seen.get(&h) == Some(&row) {
                    self.seen.remove(&h);
                } else if let Some(v) = self.seen_more.get_mut(&h) {
                    v.retain(|&r| r != row);
                }
            }
            self.poisoned = true;
            return Err(e);
        }
        Ok(stats)
    }

    /// Builds the HNSW graph (with `params.builder`, by default the crate's own
    /// [`crate::hnsw_build`]), writes the final `vectors`, `pairs`, `graph` and `meta` files
    /// with their headers and checksums, and renames `<out>.partial` to `<out>` (replacing an
    /// existing `<out>` only if the builder was created with `force`). Returns the published
    /// directory.
    ///
    /// After [`graph_during_appends`](Self::graph_during_appends), the graph thread is
    /// stopped (a stage in progress finishes the rows it started) and the rows it had not
    /// reached are inserted into its graph here (with `params.threads` workers), so
    /// [`Stage::Graph`] progress counts only those.
    pub fn finish(mut self, params: HnswParams, progress: impl FnMut(Progress)) -> Result<PathBuf> {
        match self.background.take() {
            Some(bg) => {
                let base = bg.stop()?;
                self.finish_inner(GraphSource::Grow { base, params }, progress)
            }
            None => self.finish_inner(GraphSource::Hnsw(params), progress),
        }
    }

    /// Builds the HNSW graph in a background thread while rows are still being appended: each
    /// durable chunk is handed to it, and it inserts every row it has not seen yet in a stage,
    /// so when encoding is faster than one thread's graph (a GPU), [`finish`](Self::finish)
    /// only has the rows it had not reached left to insert. `capacity` bounds the rows the
    /// thread takes (the input rows still to come plus [`count`](Self::count); rows past it
    /// are inserted by the finish), `params.threads` its workers (0 = every core but one,
    /// which the caller's producer keeps: a GPU encoder's thread tokenises and feeds it). The
    /// graph is the one a build inserting the rows in order makes (see [`crate::staged`]);
    /// with the CPU encoder using every core, it only competes with it.
    ///
    /// `priority` is how the graph's thread and workers yield to the caller's
    /// ([`GraphPriority`]).
    ///
    /// Only the native builder stages; `params` must be those later given to `finish`.
    pub fn graph_during_appends(
        &mut self,
        params: HnswParams,
        capacity: u64,
        priority: GraphPriority,
    ) -> Result<()> {
        params.validate()?;
        if params.builder != GraphBuilder::Native {
            return Err(IndexError::InvalidParameter(format!(
                "the {} graph builder cannot build while rows are appended",
                params.builder.name()
            )));
        }
        if self.background.is_some() {
            return Ok(());
        }
        let vpath = self.partial.join(FileKind::Vectors.file_name());
        let file = self
            .vectors
            .try_clone()
            .map_err(|e| IndexError::io(&vpath, e))?;
        let mut build = params.build_params();
        if build.threads == 0 {
            build.threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1).max(1));
        }
        let capacity = usize::try_from(capacity.max(self.ckpt.count)).unwrap_or(usize::MAX);
        self.background = Some(Background::start(
            file,
            vpath,
            self.ckpt.spec.precision,
            self.ckpt.spec.dim as usize,
            capacity,
            self.ckpt.count as usize,
            build,
            priority,
        )?);
        Ok(())
    }

    /// How far the graph of [`graph_during_appends`](Self::graph_during_appends) has got
    /// (`None` without one).
    pub fn staged_progress(&self) -> Option<StagedProgress> {
        self.background.as_ref().map(Background::progress)
    }

    /// Waits until the background graph holds at least `rows` rows (or its thread ended).
    #[cfg(test)]
    pub(crate) fn wait_for_staged(&self, rows: u64) {
        if let Some(bg) = &self.background {
            bg.wait_for(rows);
        }
    }

    /// Like [`finish`](Self::finish), but the graph is `base` (the graph of the first
    /// `base.levels.len()` rows, which must be the rows this build stored first) with every
    /// later row inserted into it, instead of a graph built from nothing ([`crate::grow`]).
    pub(crate) fn finish_grown(
        self,
        base: hnsw_build::BuiltGraph,
        params: HnswParams,
        progress: impl FnMut(Progress),
    ) -> Result<PathBuf> {
        self.finish_inner(GraphSource::Grow { base, params }, progress)
    }

    /// Like [`finish`](Self::finish) but with a random single-layer graph instead of HNSW. Only
    /// for benchmarks of open time and memory on indexes too large to build a real graph for;
    /// searches on such an index have poor recall.
    #[doc(hidden)]
    pub fn finish_with_random_graph(
        self,
        degree: usize,
        seed: u64,
        progress: impl FnMut(Progress),
    ) -> Result<PathBuf> {
        self.finish_inner(GraphSource::Random { degree, seed }, progress)
    }

    /// [`Self::finish_publishing`], with a write that fails for want of space said as
    /// [`IndexError::NoSpace`], naming the partial directory.
    fn finish_inner(self, source: GraphSource, progress: impl FnMut(Progress)) -> Result<PathBuf> {
        let (partial, run) = (self.partial.clone(), self.run());
        self.finish_publishing(source, progress)
            .map_err(|e| e.no_space_in(&partial, run))
    }

    fn finish_publishing(
        self,
        source: GraphSource,
        mut progress: impl FnMut(Progress),
    ) -> Result<PathBuf> {
        if self.poisoned {
            return Err(IndexError::InvalidParameter(
                "an earlier append failed; reopen the builder to resume from the checkpoint".into(),
            ));
        }
        if let GraphSource::Hnsw(p) | GraphSource::Grow { params: p, .. } = &source {
            p.validate()?;
        }
        if std::fs::symlink_metadata(&self.out_dir).is_ok() {
            if !self.force {
                return Err(IndexError::AlreadyExists {
                    path: self.out_dir.clone(),
                });
            }
            recognise_index(&self.out_dir)?;
            // Protected while the rows were encoded: refused while the checkpoint is there,
            // so the same run, once allowed, resumes rather than starts over.
            check_not_write_protected(&self.out_dir, RunKind::of(&self.ckpt.spec.input).command())?;
        }
        let spec = &self.ckpt.spec;
        let dim = spec.dim as usize;
        let n = self.ckpt.count as usize;
        let vpath = self.partial.join(FileKind::Vectors.file_name());
        // The file may still hold the block table of an earlier, interrupted finish.
        self.vectors
            .set_len(HEADER_LEN as u64 + self.ckpt.vector_bytes)
            .map_err(|e| IndexError::io(&vpath, e))?;

        let (graph_payload, hnsw_info, vector_crcs) = {
            // SAFETY: the file is private to this build (inside `<out>.partial`, under the
            // output's lock) and is not modified while the map is alive.
            let map = unsafe { memmap2::Mmap::map(&self.vectors) }
                .map_err(|e| IndexError::io(&vpath, e))?;
            let payload = &map[HEADER_LEN..];
            // The rows must be those the checkpoints vouched for, chunk after chunk.
            let actual = crc32fast::hash(payload);
            if actual != self.ckpt.vectors_crc {
                let recorded = self.ckpt.vectors_crc;
                return Err(damaged(&vpath, &self.partial, "rows", recorded, actual));
            }
            let vector_crcs = block_crcs(payload, BLOCK_SHIFT);
            let rows = StoredRows::from_payload(payload, spec.precision, &vpath)?;
            let (graph, info) = match source {
                GraphSource::Hnsw(p) => (
                    build_graph(rows, dim, n, p, &mut progress)?,
                    HnswInfo {
                        m: p.m as u32,
                        ef_construction: p.ef_construction as u32,
                        builder: p.builder.name().into(),
                    },
                ),
                GraphSource::Grow { base, params: p } => (
                    grow_graph(rows, dim, n, &base, p, &mut progress)?,
                    HnswInfo {
                        m: p.m as u32,
                        ef_construction: p.ef_construction as u32,
                        builder: p.builder.name().into(),
                    },
                ),
                GraphSource::Random { degree, seed } => (
                    random_graph(n, degree.max(1), seed),
                    HnswInfo {
                        m: degree as u32,
                        ef_construction: 0,
                        builder: "random".into(),
                    },
                ),
            };
            (graph, info, vector_crcs)
        };
        progress(Progress {
            stage: Stage::Writing,
            done: 0,
            total: 3,
        });
        let bpath = self.partial.join(BLOB);
        let mut blob = vec![0u8; self.ckpt.blob_bytes as usize];
        self.blob
            .read_exact_at(&mut blob, 0)
            .map_err(|e| IndexError::io(&bpath, e))?;
        // Checked again: the pairs are published from these bytes.
        let actual = crc32fast::hash(&blob);
        if actual != self.ckpt.blob_crc {
            let recorded = self.ckpt.blob_crc;
            return Err(damaged(
                &bpath,
                &self.partial,
                "pair records",
                recorded,
                actual,
            ));
        }
        let pairs_path = self.partial.join(FileKind::Pairs.file_name());
        let pairs_payload = encode_pairs(&blob, n, &pairs_path)?;
        drop(blob);
        let meta_path = self.partial.join(FileKind::Meta.file_name());
        let meta = Meta {
            magic: META_MAGIC,
            format_version: FORMAT_VERSION,
            dim: spec.dim,
            count: n as u64,
            metric: "cosine".into(),
            precision: spec.precision,
            hnsw: hnsw_info,
            encoder: spec.encoder.clone(),
            skipped_duplicates: self.ckpt.skipped,
        };
        let meta_bytes = meta::encode(&meta, &meta_path)?;
        let pairs_crcs = block_crcs(&pairs_payload, BLOCK_SHIFT);
        let graph_crcs = block_crcs(&graph_payload, BLOCK_SHIFT);
        let id = index_id(&meta_bytes, &[&vector_crcs, &pairs_crcs, &graph_crcs]);

        // vectors: the block table after the rows, then the final header.
        let table = table_bytes(&vector_crcs);
        self.vectors
            .write_all_at(&table, HEADER_LEN as u64 + self.ckpt.vector_bytes)
            .and_then(|_| {
                self.vectors.write_all_at(
                    &encode_header(
                        FileKind::Vectors,
                        self.ckpt.vector_bytes,
                        BLOCK_SHIFT,
                        &id,
                        crc32fast::hash(&table),
                    ),
                    0,
                )
            })
            .and_then(|_| self.vectors.sync_all())
            .map_err(|e| IndexError::io(&vpath, e))?;
        write_file_with_table(
            &pairs_path,
            FileKind::Pairs,
            &pairs_payload,
            &id,
            &pairs_crcs,
        )?;
        drop(pairs_payload);
        progress(Progress {
            stage: Stage::Writing,
            done: 1,
            total: 3,
        });
        write_file_with_table(
            &self.partial.join(FileKind::Graph.file_name()),
            FileKind::Graph,
            &graph_payload,
            &id,
            &graph_crcs,
        )?;
        drop(graph_payload);
        progress(Progress {
            stage: Stage::Writing,
            done: 2,
            total: 3,
        });
        write_file(&meta_path, FileKind::Meta, &meta_bytes, &id)?;
        progress(Progress {
            stage: Stage::Writing,
            done: 3,
            total: 3,
        });
        sync_dir(&self.partial)?;
        // Scratch files go; a kill from here until the rename at worst restarts the build.
        let ckpt_path = self.partial.join(FileKind::Checkpoint.file_name());
        std::fs::remove_file(&ckpt_path).map_err(|e| IndexError::io(&ckpt_path, e))?;
        std::fs::remove_file(&bpath).map_err(|e| IndexError::io(&bpath, e))?;
        sync_dir(&self.partial)?;
        // The spool of standard input goes with the index and only then is removed: a kill
        // before that leaves it in the published index (see [`input_spool`]), where a rerun
        // finds it, since a partial without a checkpoint is discarded.
        // A mount point the preflight could not see (mounted since) is said as it would be.
        let published = publish(&self.partial, &self.out_dir)
            .map_err(|e| e.busy_mount(&self.out_dir, self.run(), &self.partial));
        // The new index is in place even when the old one could not be removed: its spool
        // goes all the same, and that failure is said after.
        if matches!(published, Ok(()) | Err(IndexError::OldIndexLeft { .. })) {
            let spool = published_spool(&self.out_dir);
            if spool.exists() {
                std::fs::remove_file(&spool).map_err(|e| IndexError::io(&spool, e))?;
            }
        }
        published?;
        drop(self.lock);
        Ok(self.out_dir.clone())
    }
}

/// Removes the partial build of `out_dir`, if any (only a recognised partial build, under the
/// output's lock).
pub fn discard_partial(out_dir: &Path) -> Result<()> {
    let _lock = OutputLock::acquire(out_dir)?;
    let p = partial_dir(out_dir)?;
    let _gate = crate::lock::writing();
    if std::fs::symlink_metadata(&p).is_ok() {
        recognise_partial(&p)?;
        if p.join(FileKind::Checkpoint.file_name()).exists() {
            std::fs::remove_dir_all(&p).map_err(|e| IndexError::io(&p, e))?;
        } else {
            remove_leftover(&p)?;
        }
    }
    Ok(())
}

/// An interrupted run that `<out>.partial` holds, with its checkpoint: what the same command
/// run again resumes ([`pending_run`], [`Leftovers::unfinished`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRun {
    /// The partial directory, `<out>.partial`.
    pub partial: PathBuf,
    /// The command that left it, as typed after `relbert index` (`build`, `rebuild`, `add`,
    /// `remove`; all four in words when its checkpoint cannot be read).
    pub command: &'static str,
    /// The id of the index the run reads: the one an add grows, a remove shrinks or a
    /// rebuild reads. An add or a remove can be resumed only while `<out>` still holds that
    /// index; `None` for a build.
    pub source: Option<String>,
    /// Whether it holds a copy of standard input (a build or add that read it), from which
    /// the same command with `--pairs -` and nothing on standard input resumes.
    pub spooled: bool,
    /// Who holds the output's writer lock now, when another process does
    /// ([`crate::lock::holder`]: `pid N: command …`): the run is then most likely still
    /// going on, not interrupted, and is neither to be resumed nor given up (its partial
    /// directory is its own) but waited for. `None` when nobody else holds it.
    pub running: Option<String>,
}

impl PendingRun {
    fn of(partial: PathBuf, spec: Option<&IndexSpec>) -> PendingRun {
        let spooled = partial.join(SPOOL).is_file();
        PendingRun {
            command: spec.map_or("build, rebuild, add or remove", |s| {
                RunKind::of(&s.input).command()
            }),
            source: spec.and_then(|s| source_id(&s.input)).map(str::to_string),
            spooled,
            partial,
            running: None,
        }
    }

    /// Whether it is an add or a remove of an index `<out>` no longer holds (it holds
    /// `now`): it can never be resumed, for such a run resumes only on the index it began
    /// on, and only giving it up (removing the partial directory) gets past it.
    pub fn stale_for(&self, now: &str) -> bool {
        matches!(self.command, "add" | "remove") && self.source.as_deref().is_some_and(|s| s != now)
    }
}

/// The interrupted run that the partial directory of `out_dir` holds, if any (see
/// [`partial_spec`], whose conditions it shares: no lock taken, nothing written, advice
/// only), with the process that holds the output's lock now ([`PendingRun::running`]): a
/// checkpoint is there while a run is going on too, and that one is not interrupted (found
/// by a review: `index info` during an add advised removing its partial directory, which
/// killed it).
pub fn pending_run(out_dir: &Path) -> Result<Option<PendingRun>> {
    let partial = partial_dir(out_dir)?;
    Ok(partial_spec(out_dir)?.map(|spec| PendingRun {
        running: crate::lock::holder(out_dir),
        ..PendingRun::of(partial, Some(&spec))
    }))
}

/// The names in the index directory `dir` that are not the index's own files (nor the
/// temporary names and copy of standard input relbert itself leaves there): a user's files,
/// which `index info --verify` reports and `index add`/`remove` refuse to replace. Sorted.
pub fn foreign_entries(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| IndexError::io(dir, e))? {
        let e = e.map_err(|e| IndexError::io(dir, e))?;
        let name = e.file_name();
        let own = name.to_str().is_some_and(index_entry)
            && e.file_type().map(|t| t.is_file()).unwrap_or(false)
            && (name != SPOOL || is_marked_spool(&e.path()).unwrap_or(false));
        if !own {
            out.push(name.to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// What [`clear_leftovers`] found beside an index and removed, or left.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Removed: what killed runs left that nobody resumes (the index a publication replaced,
    /// in `<out>.partial` without a checkpoint or beside it as `.<name>.old-<pid>`; a partial
    /// directory without a checkpoint; the copy of standard input a publication left in the
    /// index, [`published_spool`]), each with what it was, in words. Each is said (logged at
    /// info) as it is removed, as on every path that removes one.
    pub removed: Vec<(PathBuf, &'static str)>,
    /// Left: `<out>.partial` holds an interrupted run, with its checkpoint, that the same
    /// command resumes ([`PendingRun`]).
    pub unfinished: Option<PendingRun>,
    /// Left: what could not be removed, or is not relbert's to remove (a `<out>.partial`
    /// it did not leave), as errors naming it and what to do.
    pub left: Vec<IndexError>,
}

/// For a run on the index `out_dir` that found nothing to do (an add with nothing new, a
/// remove of pairs it does not hold), and so makes no partial directory: removes what a run
/// killed after publishing left beside the index or in it, as the next build, add or remove
/// would before it starts (found by an audit: the index a remove replaced stayed in
/// `<out>.partial`, with the removed pairs, and the same remove run again took its "nothing
/// to remove" path and left it without a word). Under the output's lock; when another writer
/// holds it, nothing is touched (those things may be its own) and nothing is reported. A
/// partial directory with a checkpoint is an interrupted run the same command resumes: left,
/// and reported. A partial directory relbert did not leave ([`recognise_partial`]), and what
/// cannot be removed ([`IndexError::LeftoverNotRemoved`]), are in [`Leftovers::left`], the
/// rest being cleared all the same; an error only when the lock cannot be taken.
pub fn clear_leftovers(out_dir: &Path) -> Result<Leftovers> {
    let partial = partial_dir(out_dir)?;
    let spool = published_spool(out_dir);
    // Nothing there (the usual case): no lock taken, so an index in a directory this user
    // may not write to is not met with an error for an add of nothing.
    if std::fs::symlink_metadata(&partial).is_err()
        && std::fs::symlink_metadata(&spool).is_err()
        && old_siblings(out_dir).is_empty()
    {
        return Ok(Leftovers::default());
    }
    let _lock = match OutputLock::acquire(out_dir) {
        Ok(lock) => lock,
        Err(IndexError::Locked { .. }) => return Ok(Leftovers::default()),
        Err(e) => return Err(e),
    };
    let _gate = crate::lock::writing();
    let Cleared { removed, left } = clear_killed_publication(out_dir, &partial);
    let mut found = Leftovers {
        removed,
        left,
        ..Leftovers::default()
    };
    let ckpt = partial.join(FileKind::Checkpoint.file_name());
    if ckpt.exists() && recognise_partial(&partial).is_ok() {
        let spec = read_checkpoint(&ckpt, &partial).ok().map(|c| c.spec);
        found.unfinished = Some(PendingRun::of(partial, spec.as_ref()));
    }
    // Only relbert's own, marked copy (a regular file): a user's file of that name stays.
    if std::fs::symlink_metadata(&spool).is_ok_and(|m| m.is_file())
        && is_marked_spool(&spool).unwrap_or(false)
    {
        match std::fs::remove_file(&spool) {
            Ok(()) => {
                let what = "the copy of standard input of its last add or build";
                said_removed(&spool, out_dir, what);
                found.removed.push((spool, what));
            }
            Err(e) => found.left.push(IndexError::io(&spool, e)),
        }
    }
    Ok(found)
}

/// Puts `partial` in place of `out`. An existing `out` (a recognised index) is swapped with
/// `partial` in one atomic `renameat2(RENAME_EXCHANGE)`, so there is no moment without an
/// index at `out`, and the old index, now at the partial path, is removed; a kill before that
/// removal leaves it there without a checkpoint, and the next build of `out` discards it.
/// Where the file system cannot exchange, the old index is first renamed aside to
/// `.<name>.old-<pid>` (removed by the next build of `out` if a kill leaves it).
///
/// Returns [`IndexError::OldIndexLeft`] when the old index could not be removed: the new one
/// is in place then, and the old one, whole, must not be left without a word (it is as large
/// as the index, and the next build of `out` could not remove it either).
fn publish(partial: &Path, out: &Path) -> Result<()> {
    let parent = crate::lock::folder_of(out);
    if std::fs::symlink_metadata(out).is_err() {
        std::fs::rename(partial, out).map_err(|e| IndexError::io(partial, e))?;
        return sync_dir(parent);
    }
    let old = if exchange(partial, out).is_ok() {
        partial.to_path_buf()
    } else {
        let mut old_name = std::ffi::OsString::from(".");
        old_name.push(out.file_name().unwrap_or_default());
        old_name.push(format!(".old-{}", std::process::id()));
        let old = out.with_file_name(old_name);
        std::fs::rename(out, &old).map_err(|e| IndexError::io(out, e))?;
        std::fs::rename(partial, out).map_err(|e| IndexError::io(partial, e))?;
        old
    };
    sync_dir(parent)?;
    remove_replaced(&old, out)
}

/// Removes `old`, the index `out` held before a publication.
fn remove_replaced(old: &Path, out: &Path) -> Result<()> {
    std::fs::remove_dir_all(old).map_err(|err| IndexError::OldIndexLeft {
        path: out.to_path_buf(),
        old: old.to_path_buf(),
        err,
    })
}

/// Exchanges two existing directories `a` and `b` (atomically where the file system can,
/// else by three renames through `.<b>.swap-<pid>`).
pub fn swap_dirs(a: &Path, b: &Path) -> Result<()> {
    if exchange(a, b).is_ok() {
        return Ok(());
    }
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(b.file_name().unwrap_or_default());
    tmp_name.push(format!(".swap-{}", std::process::id()));
    let tmp = b.with_file_name(tmp_name);
    std::fs::rename(b, &tmp).map_err(|e| IndexError::io(b, e))?;
    std::fs::rename(a, b).map_err(|e| IndexError::io(a, e))?;
    std::fs::rename(&tmp, a).map_err(|e| IndexError::io(&tmp, e))
}

/// Atomically exchanges two paths (Linux `renameat2` with `RENAME_EXCHANGE`): how an index
/// is published over another. Public for tests that race readers against publications.
#[cfg(target_os = "linux")]
pub fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    renameat2(a, b, libc::RENAME_EXCHANGE)
}

/// Linux's `renameat2(2)` of `from` to `to` with `flags` (`RENAME_EXCHANGE`,
/// `RENAME_NOREPLACE`), both paths relative to the working directory as std's rename takes
/// them; the OS error as it is on failure (callers tell `EINVAL`/`ENOSYS` apart).
#[cfg(target_os = "linux")]
pub fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cf = CString::new(from.as_os_str().as_bytes())?;
    let ct = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD makes them relative to the
    // working directory, as std's rename does.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cf.as_ptr(),
            libc::AT_FDCWD,
            ct.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Unsupported here: publication falls back to two renames.
#[cfg(not(target_os = "linux"))]
pub fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

enum GraphSource {
    Hnsw(HnswParams),
    /// Insert the rows after `base`'s nodes into it ([`crate::grow`]).
    Grow {
        base: hnsw_build::BuiltGraph,
        params: HnswParams,
    },
    Random {
        degree: usize,
        seed: u64,
    },
}

/// Cosine distance for unit vectors, `max(0, 1 − a·b)`: never negative and never panics
/// (NaN maps to 0), which `hnsw_rs`'s neighbour selection asserts on.
#[derive(Clone, Copy, Default)]
struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let d = 1.0 - dot(a, b);
        if d > 0.0 {
            d
        } else {
            0.0
        }
    }
}

/// The memory-mapped `vectors` payload, in its stored precision.
#[derive(Clone, Copy)]
pub(crate) enum StoredRows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl<'a> StoredRows<'a> {
    /// The rows of a `vectors` payload (the bytes after the header) of the file at `path`.
    pub(crate) fn from_payload(
        payload: &'a [u8],
        precision: Precision,
        path: &Path,
    ) -> Result<StoredRows<'a>> {
        let bad = |e: bytemuck::PodCastError| IndexError::corrupt(path, e.to_string());
        Ok(match precision {
            Precision::F32 => StoredRows::F32(bytemuck::try_cast_slice(payload).map_err(bad)?),
            Precision::F16 => StoredRows::F16(bytemuck::try_cast_slice(payload).map_err(bad)?),
        })
    }

    /// The first `n` rows of `dim` values (an error if there are fewer).
    fn first(self, n: usize, dim: usize) -> Result<StoredRows<'a>> {
        let short = |len: usize| {
            IndexError::InvalidParameter(format!(
                "{len} vector values for {n} rows of dimension {dim}"
            ))
        };
        Ok(match self {
            StoredRows::F32(r) => StoredRows::F32(r.get(..n * dim).ok_or_else(|| short(r.len()))?),
            StoredRows::F16(r) => StoredRows::F16(r.get(..n * dim).ok_or_else(|| short(r.len()))?),
        })
    }
}

/// Checks the parameters and builds the graph payload with the chosen builder. The native
/// builder reads `f16` rows in place; `hnsw_rs` needs an `f32` copy.
fn build_graph(
    rows: StoredRows<'_>,
    dim: usize,
    n: usize,
    p: HnswParams,
    progress: &mut impl FnMut(Progress),
) -> Result<Vec<u8>> {
    p.validate()?;
    let (m0, m) = (2 * p.m, p.m);
    if n == 0 {
        return Ok(encode_graph(&[], NO_NEIGHBOUR, m0, m, &[], &[]));
    }
    let rows = rows.first(n, dim)?;
    match p.builder {
        GraphBuilder::Native => {
            let total = n as u64;
            let params = p.build_params();
            let mut report = |done| {
                progress(Progress {
                    stage: Stage::Graph,
                    done,
                    total,
                })
            };
            let g = match rows {
                StoredRows::F32(r) => hnsw_build::build(r, dim, &params, &mut report)?,
                StoredRows::F16(r) => hnsw_build::build_f16(r, dim, &params, &mut report)?,
            };
            Ok(g.encode())
        }
        GraphBuilder::HnswRs => match rows {
            StoredRows::F32(r) => build_hnsw_rs(r, dim, n, p, progress),
            StoredRows::F16(r) => {
                let widened: Vec<f32> = r.iter().map(|x| x.to_f32()).collect();
                build_hnsw_rs(&widened, dim, n, p, progress)
            }
        },
    }
}

/// The graph payload of `base` grown by the rows after its nodes, with the native builder's
/// incremental insertion ([`hnsw_build::grow`]); `Graph` progress counts the inserted rows.
fn grow_graph(
    rows: StoredRows<'_>,
    dim: usize,
    n: usize,
    base: &hnsw_build::BuiltGraph,
    p: HnswParams,
    progress: &mut impl FnMut(Progress),
) -> Result<Vec<u8>> {
    let nb = base.levels.len();
    if nb > n {
        return Err(IndexError::InvalidParameter(format!(
            "the base graph has {nb} nodes but the index only {n} rows"
        )));
    }
    let params = p.build_params();
    let total = (n - nb) as u64;
    let mut report = |done| {
        progress(Progress {
            stage: Stage::Graph,
            done,
            total,
        })
    };
    let g = match rows.first(n, dim)? {
        StoredRows::F32(r) => hnsw_build::grow(r, dim, base, &params, &mut report)?,
        StoredRows::F16(r) => hnsw_build::grow_f16(r, dim, base, &params, &mut report)?,
    };
    Ok(g.encode())
}

/// Builds the graph with `hnsw_rs` and exports it ([`GraphBuilder::HnswRs`]).
fn build_hnsw_rs(
    rows: &[f32],
    dim: usize,
    n: usize,
    p: HnswParams,
    progress: &mut impl FnMut(Progress),
) -> Result<Vec<u8>> {
    let (m0, m) = (2 * p.m, p.m);
    let hnsw: Hnsw<f32, UnitCosine> = Hnsw::new(p.m, n, 16, p.ef_construction, UnitCosine);
    let total = n as u64;
    progress(Progress {
        stage: Stage::Graph,
        done: 0,
        total,
    });
    if p.threads == 1 {
        for (i, r) in rows.chunks_exact(dim).enumerate() {
            hnsw.insert_slice((r, i));
            if (i + 1) % 1000 == 0 || i + 1 == n {
                progress(Progress {
                    stage: Stage::Graph,
                    done: (i + 1) as u64,
                    total,
                });
            }
        }
    } else {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(p.threads)
            .build()
            .map_err(|e| IndexError::InvalidParameter(format!("thread pool: {e}")))?;
        let batch = 4096 * pool.current_num_threads().max(1);
        let all: Vec<(&[f32], usize)> = rows.chunks_exact(dim).zip(0..n).collect();
        let mut done = 0usize;
        for chunk in all.chunks(batch) {
            let v = chunk.to_vec();
            pool.install(|| hnsw.parallel_insert_slice(&v));
            done += chunk.len();
            progress(Progress {
                stage: Stage::Graph,
                done: done as u64,
                total,
            });
        }
    }
    Ok(export_hnsw(&hnsw, rows, dim, n, m0, m))
}

/// Copies `hnsw_rs`'s layers into the flat layout: per-node level, layer-0 lists of width
/// `m0`, upper-layer lists of width `m`, nearest first. Self-loops, duplicates, out-of-range
/// ids and upper-layer neighbours whose own level is too low are dropped.
fn export_hnsw(
    hnsw: &Hnsw<f32, UnitCosine>,
    rows: &[f32],
    dim: usize,
    n: usize,
    m0: usize,
    m: usize,
) -> Vec<u8> {
    let pi = hnsw.get_point_indexation();
    let mut levels = vec![0u8; n];
    let mut layer0 = vec![NO_NEIGHBOUR; n * m0];
    let mut upper_raw: Vec<(u32, Vec<Vec<u32>>)> = Vec::new();
    for point in pi {
        let row = point.get_origin_id();
        if row >= n {
            continue;
        }
        let level = point.get_point_id().0 as usize;
        levels[row] = level as u8;
        let hood = point.get_neighborhood_id();
        let mut lists: Vec<Vec<u32>> = Vec::with_capacity(level + 1);
        for l in 0..=level {
            let width = if l == 0 { m0 } else { m };
            let mut ids: Vec<u32> = Vec::with_capacity(width);
            if let Some(layer) = hood.get(l) {
                for nb in layer {
                    let id = nb.get_origin_id();
                    if id < n && id != row && !ids.contains(&(id as u32)) && ids.len() < width {
                        ids.push(id as u32);
                    }
                }
            }
            lists.push(ids);
        }
        let row_v = &rows[row * dim..(row + 1) * dim];
        for list in lists.iter_mut() {
            prune(list, row_v, rows, dim);
        }
        for (j, id) in lists[0].iter().enumerate() {
            layer0[row * m0 + j] = *id;
        }
        if level > 0 {
            upper_raw.push((row as u32, lists.split_off(1)));
        }
    }
    upper_raw.sort_by_key(|(r, _)| *r);
    for (_, lists) in upper_raw.iter_mut() {
        for (i, list) in lists.iter_mut().enumerate() {
            let l = i + 1;
            list.retain(|&id| levels[id as usize] as usize >= l);
        }
    }
    let max_level = levels.iter().copied().max().unwrap_or(0);
    let entry = (0..n)
        .find(|&i| levels[i] == max_level)
        .map(|i| i as u32)
        .unwrap_or(NO_NEIGHBOUR);
    // Prefer hnsw_rs's own top-layer point (its entry point) when there is one.
    let entry = pi
        .get_layer_iterator(max_level as usize)
        .next()
        .map(|p| p.get_origin_id() as u32)
        .filter(|&r| (r as usize) < n && levels[r as usize] == max_level)
        .unwrap_or(entry);
    encode_graph(&levels, entry, m0, m, &layer0, &upper_raw)
}

/// The HNSW neighbour-selection heuristic (Malkov & Yashunin, alg. 4) applied to an exported
/// list: walking the candidates from nearest to farthest, a candidate is kept only if it is
/// closer to the node than to every neighbour already kept. `hnsw_rs` applies it when a node is
/// inserted, but back-links are added by plain nearest-first truncation, which fills every list
/// to its width with redundant, clustered neighbours; re-pruning keeps the graph navigable with
/// far fewer distance evaluations per hop.
fn prune(list: &mut Vec<u32>, node: &[f32], rows: &[f32], dim: usize) {
    let vec_of = |id: u32| &rows[id as usize * dim..(id as usize + 1) * dim];
    let mut cands: Vec<(f32, u32)> = list.iter().map(|&c| (dot(node, vec_of(c)), c)).collect();
    cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut kept: Vec<u32> = Vec::with_capacity(list.len());
    for (sim_to_node, c) in cands {
        let cv = vec_of(c);
        if kept.iter().all(|&r| dot(cv, vec_of(r)) < sim_to_node) {
            kept.push(c);
        }
    }
    *list = kept;
}

/// A random single-layer graph (splitmix64 stream): only for open/memory benchmarks.
fn random_graph(n: usize, degree: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut layer0 = vec![NO_NEIGHBOUR; n * degree];
    if n > 1 {
        for i in 0..n {
            for j in 0..degree {
                let mut t = (next() % n as u64) as u32;
                if t as usize == i {
                    t = ((i + 1) % n) as u32;
                }
                layer0[i * degree + j] = t;
            }
        }
    }
    let entry = if n > 0 { 0 } else { NO_NEIGHBOUR };
    encode_graph(&vec![0u8; n], entry, degree, degree, &layer0, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;
    use crate::synthetic::low_rank;
    use crate::test_util::params;

    fn spec(dim: u32) -> IndexSpec {
        crate::test_util::spec(dim, "test")
    }

    /// A builder at `out` holding five pairs `h{i}`:`t{i}` of 8-d vectors, not yet finished.
    fn five_pairs_into(out: &Path) -> IndexBuilder {
        let mut b = IndexBuilder::create_or_resume(out, spec(8), false).unwrap();
        let pairs: Vec<PairEntry> = (0..5)
            .map(|i| PairEntry::new(format!("h{i}"), format!("t{i}")))
            .collect();
        b.append_chunk(&pairs, &low_rank(5, 8, 4, 0.1, 2)).unwrap();
        b
    }

    /// A checkpoint of a relbert from before the pair records' CRC cannot vouch for them: the
    /// resume is refused, naming the checkpoint and the partial build to remove, and the
    /// partial build (perhaps the only copy of a standard input) is left as it was.
    #[test]
    fn a_checkpoint_without_the_pair_records_crc_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let b = five_pairs_into(&out);
        drop(b);
        let partial = partial_dir(&out).unwrap();
        let path = partial.join("checkpoint");
        let c = read_checkpoint(&path, &partial).unwrap();
        assert_ne!(c.blob_crc, 0);
        // The older layout: the same fields without the last (bincode writes a struct as the
        // tuple of its fields).
        let old = (
            &c.spec,
            c.rows_done,
            c.count,
            c.skipped,
            c.vector_bytes,
            c.blob_bytes,
            c.vectors_crc,
        );
        let payload = meta::encode(&old, &path).unwrap();
        write_file(&path, FileKind::Checkpoint, &payload, &NO_ID).unwrap();
        let Err(e) = IndexBuilder::create_or_resume(&out, spec(8), false) else {
            panic!("an old checkpoint was resumed");
        };
        let msg = e.to_string();
        assert!(
            matches!(&e, IndexError::PartialDamaged { path: p, .. } if *p == path)
                && msg.contains("older relbert")
                && msg.contains(&format!("remove {}", partial.display())),
            "{msg}"
        );
        assert!(partial.join("pairs.blob").is_file());
    }

    /// Found by an audit: "café : crème" precomposed (NFC) and decomposed (NFD) were stored
    /// as two pairs, and both came back as results, looking the same. One is stored now (the
    /// first, with its label), the other counted as a duplicate, in one chunk and across
    /// chunks and a resume; either spelling finds it. Case is another pair to the index.
    #[test]
    fn a_pair_in_another_unicode_form_is_a_duplicate() {
        let (nfc, nfd) = (("caf\u{e9}", "cr\u{e8}me"), ("cafe\u{301}", "cre\u{300}me"));
        let dim = 8;
        let rows = low_rank(6, dim, 4, 0.1, 1);
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let mut b = IndexBuilder::create_or_resume(&out, spec(dim as u32), false).unwrap();
        let first = [
            PairEntry::labelled(nfc.0, nfc.1, "food"),
            PairEntry::labelled(nfd.0, nfd.1, "drink"),
            PairEntry::new("CAF\u{c9}", "CR\u{c8}ME"),
        ];
        let st = b.append_chunk(&first, &rows[..3 * dim]).unwrap();
        assert_eq!((st.appended, st.skipped), (2, 1));
        drop(b); // killed: the duplicate filter is rebuilt from the records on resume
        let mut b = IndexBuilder::create_or_resume(&out, spec(dim as u32), false).unwrap();
        let second = [
            PairEntry::new(nfd.0, nfd.1),
            PairEntry::new("cafe\u{301}", "cr\u{e8}me"),
            PairEntry::new("rome", "italy"),
        ];
        let st = b.append_chunk(&second, &rows[3 * dim..]).unwrap();
        assert_eq!((st.appended, st.skipped), (1, 2));
        assert_eq!((b.count(), b.skipped()), (3, 3));
        b.finish(params(), |_| {}).unwrap();
        let idx = Index::open(&out).unwrap();
        let p = idx.pair(0).unwrap();
        assert_eq!((p.head, p.tail, p.label), (nfc.0, nfc.1, Some("food")));
        for (h, t) in [nfc, nfd, ("cafe\u{301}", "cr\u{e8}me")] {
            assert_eq!(idx.lookup(h, t).unwrap(), Some(0), "{h:?} {t:?}");
        }
        assert_eq!(idx.lookup("CAF\u{c9}", "CR\u{c8}ME").unwrap(), Some(1));
        assert_eq!(idx.lookup("CAFE\u{301}", "CRE\u{300}ME").unwrap(), Some(1));
        assert_eq!(idx.lookup("cafe", "creme").unwrap(), None);
        assert_eq!(idx.lookup("rome", "italy").unwrap(), Some(2));
    }

    /// An index stored decomposed (built by another tool's output, or before spellings were
    /// merged, in NFD) is found by the precomposed spelling too.
    #[test]
    fn a_decomposed_pair_is_found_precomposed() {
        let dim = 8;
        let rows = low_rank(2, dim, 4, 0.1, 2);
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let mut b = IndexBuilder::create_or_resume(&out, spec(dim as u32), false).unwrap();
        let pairs = [
            PairEntry::new("E\u{301}cole", "e\u{301}le\u{300}ve"),
            // Found by a review: a first spelling with its words in two forms.
            PairEntry::new("cafe\u{301}", "cr\u{e8}me"),
        ];
        b.append_chunk(&pairs, &rows).unwrap();
        b.finish(params(), |_| {}).unwrap();
        let idx = Index::open(&out).unwrap();
        assert_eq!(
            idx.lookup("\u{c9}cole", "\u{e9}l\u{e8}ve").unwrap(),
            Some(0)
        );
        assert_eq!(
            idx.lookup("E\u{301}cole", "e\u{301}le\u{300}ve").unwrap(),
            Some(0)
        );
        assert_eq!(idx.lookup("\u{e9}cole", "\u{e9}l\u{e8}ve").unwrap(), None);
        for (head, tail) in [
            ("caf\u{e9}", "cr\u{e8}me"),
            ("cafe\u{301}", "cre\u{300}me"),
            ("caf\u{e9}", "cre\u{300}me"),
        ] {
            assert_eq!(
                idx.lookup(head, tail).unwrap(),
                Some(1),
                "{head:?} {tail:?}"
            );
        }
    }

    /// Found by an audit: `--ef-construction 1 --m 3` built a graph with recall@10 14/50.
    /// A candidate list shorter than `m` is refused, by `validate` and by the build itself.
    #[test]
    fn ef_construction_below_m_is_refused() {
        let p = |m, ef_construction| HnswParams {
            m,
            ef_construction,
            ..HnswParams::default()
        };
        for (m, ef) in [(3, 1), (16, 15), (255, 200)] {
            let err = p(m, ef).validate().unwrap_err().to_string();
            assert!(
                err.contains("ef_construction") && err.contains(&format!("m = {m}")),
                "{err}"
            );
        }
        p(3, 3).validate().unwrap();
        p(16, 200).validate().unwrap();
        let dim = 8;
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let mut b = IndexBuilder::create_or_resume(&out, spec(dim as u32), false).unwrap();
        let pairs: Vec<PairEntry> = (0..20)
            .map(|i| PairEntry::new(format!("h{i}"), "t"))
            .collect();
        b.append_chunk(&pairs, &low_rank(20, dim, 4, 0.1, 3))
            .unwrap();
        let err = b.finish(p(3, 1), |_| {}).unwrap_err();
        assert!(matches!(err, IndexError::InvalidParameter(_)), "{err}");
        assert!(!out.exists());
    }

    /// Found by an audit: an index directory holding the user's `notes.tmp` (or any `*.tmp`)
    /// was recognised as relbert's, so `build --force`, `rebuild --force` and `index add`
    /// deleted it with the old index. Only relbert's own temporary names pass, in an index
    /// and in a partial build; the user's are refused by name.
    #[test]
    fn only_relberts_own_temporary_names_are_recognised() {
        let dim = 8;
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let mut b = IndexBuilder::create_or_resume(&out, spec(dim as u32), false).unwrap();
        let pairs: Vec<PairEntry> = (0..4)
            .map(|i| PairEntry::new(format!("h{i}"), "t"))
            .collect();
        b.append_chunk(&pairs, &low_rank(4, dim, 4, 0.1, 4))
            .unwrap();
        b.finish(params(), |_| {}).unwrap();
        let partial = partial_dir(&out).unwrap();
        std::fs::create_dir(&partial).unwrap();
        let own = [
            "vectors.tmp",
            "pairs.tmp",
            "graph.tmp",
            "meta.tmp",
            "checkpoint.tmp",
            "input.spool.tmp",
            SPOOL,
        ];
        for name in own {
            // The spool's names must bear relbert's mark as well (see
            // `a_spool_without_relberts_mark_is_not_relberts`).
            let text = if name.starts_with(SPOOL) {
                spool_header()
            } else {
                "x".into()
            };
            for dir in [&out, &partial] {
                std::fs::write(dir.join(name), &text).unwrap();
            }
            recognise_index(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
            recognise_partial(&partial).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for name in [
            "notes.tmp",
            ".tmp",
            "input.tmp",
            "pairs.blob.tmp",
            "meta.tmp.tmp",
        ] {
            for (dir, check) in [
                (&out, recognise_index as fn(&Path) -> Result<()>),
                (&partial, recognise_partial),
            ] {
                let user = dir.join(name);
                std::fs::write(&user, "two weeks of notes").unwrap();
                let err = check(dir).unwrap_err();
                assert!(
                    matches!(err, IndexError::NotOurs { .. }) && err.to_string().contains(name),
                    "{name}: {err}"
                );
                std::fs::remove_file(&user).unwrap();
            }
        }
    }

    /// Found by an audit: an index directory holding a user's own `input.spool` was
    /// recognised as relbert's by the name alone (relbert leaves its copy of standard input
    /// there when killed just after publishing), so `build --force` and `index add` deleted the
    /// file with the index. Only a spool that begins with relbert's mark is relbert's in a
    /// published index; in a partial build beside relbert's own files an unmarked one (an older
    /// relbert's) still resumes.
    #[test]
    fn a_spool_without_relberts_mark_is_not_relberts() {
        let dim = 8;
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let mut b = IndexBuilder::create_or_resume(&out, spec(dim as u32), false).unwrap();
        let pairs: Vec<PairEntry> = (0..4)
            .map(|i| PairEntry::new(format!("h{i}"), "t"))
            .collect();
        b.append_chunk(&pairs, &low_rank(4, dim, 4, 0.1, 5))
            .unwrap();
        b.finish(params(), |_| {}).unwrap();
        let spool = published_spool(&out);
        let header = spool_header();
        let cut = &header[..header.len() - 2];
        for (text, ok) in [
            ("my notes\n", false),
            ("", false),
            ("paris\tfrance\n", false),
            ("# relbert input spool\n", false),
            ("# relbert input spool x\n", false),
            (cut, false),
            (&format!("{header}paris\tfrance\n"), true),
            ("# relbert input spool 2\nparis\tfrance\n", true),
        ] {
            std::fs::write(&spool, text).unwrap();
            let got = recognise_index(&out);
            assert_eq!(got.is_ok(), ok, "{text:?}: {got:?}");
            // Read as the input to resume from only when it is relbert's.
            assert_eq!(input_spool(&out).unwrap() == spool, ok, "{text:?}");
            if let Err(e) = got {
                let e = e.to_string();
                assert!(
                    e.contains("input.spool") && e.contains(header.trim_end()),
                    "{e}"
                );
            }
        }
        std::fs::remove_file(&spool).unwrap();
        // The temporary name may be cut off within the mark (killed while writing it).
        let spool_tmp = out.join("input.spool.tmp");
        for (text, ok) in [(cut, true), ("", true), ("mine\n", false)] {
            std::fs::write(&spool_tmp, text).unwrap();
            assert_eq!(recognise_index(&out).is_ok(), ok, "{text:?}");
        }
        std::fs::remove_file(&spool_tmp).unwrap();
        // A partial build: an unmarked spool beside its checkpoint is an older relbert's and
        // resumes; alone in a directory of that name it is not relbert's.
        let mut b = IndexBuilder::create_or_resume(&out, spec(dim as u32), true).unwrap();
        std::fs::write(b.spool_path(), "paris\tfrance\n").unwrap();
        b.append_chunk(&pairs[..2], &low_rank(2, dim, 4, 0.1, 6))
            .unwrap();
        drop(b);
        let partial = partial_dir(&out).unwrap();
        recognise_partial(&partial).unwrap();
        let b = IndexBuilder::create_or_resume(&out, spec(dim as u32), true).unwrap();
        assert_eq!(b.rows_done(), 2);
        drop(b);
        for f in ["checkpoint", "vectors", "pairs.blob"] {
            std::fs::remove_file(partial.join(f)).unwrap();
        }
        let err = recognise_partial(&partial).unwrap_err();
        assert!(matches!(err, IndexError::NotOurs { .. }), "{err}");
        assert!(partial.join(SPOOL).is_file());
    }

    /// A small published index at `out`: `n` rows of `dim` values.
    fn published(out: &Path, n: usize, dim: u32) -> Index {
        let mut b = IndexBuilder::create_or_resume(out, spec(dim), false).unwrap();
        let pairs: Vec<PairEntry> = (0..n)
            .map(|i| PairEntry::new(format!("h{i}"), format!("t{i}")))
            .collect();
        b.append_chunk(&pairs, &low_rank(n, dim as usize, 4, 0.1, 3))
            .unwrap();
        b.finish(params(), |_| {}).unwrap();
        Index::open(out).unwrap()
    }

    /// Leaves at `out` the partial build a run of `spec` killed after its first chunk leaves.
    fn interrupted(out: &Path, spec: IndexSpec) {
        let dim = spec.dim as usize;
        let mut b = IndexBuilder::create_or_resume(out, spec, true).unwrap();
        let pairs: Vec<PairEntry> = (0..3)
            .map(|i| PairEntry::new(format!("x{i}"), format!("y{i}")))
            .collect();
        b.append_chunk(&pairs, &low_rank(3, dim, 2, 0.1, 4))
            .unwrap();
    }

    fn mismatch_of<T>(r: Result<T>) -> (&'static str, String) {
        match r {
            Err(e @ IndexError::PartialMismatch { what, .. }) => (what, e.to_string()),
            Err(e) => panic!("expected PartialMismatch, got {e}"),
            Ok(_) => panic!("expected PartialMismatch, got a resume"),
        }
    }

    /// Found by an audit: an `index add` over a killed in-place `rebuild --m 8` was refused
    /// as "an interrupted rebuild, and the source index has changed since" (it had not), and
    /// over a killed `rebuild --f16` as "a different precision: f16 (now f32); rerun with the
    /// original input", never saying a rebuild left it nor naming --f16. The refusal names
    /// the run that left the partial build, with its flags, and what to run or remove.
    #[test]
    fn a_mismatch_names_the_run_that_left_the_partial_build() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let idx = published(&out, 40, 8);
        let id = idx.id();
        let partial = partial_dir(&out).unwrap();
        let remove = format!("remove {}", partial.display());
        let rebuild_spec = |precision| IndexSpec {
            dim: 8,
            precision,
            encoder: idx.meta().encoder.clone(),
            input: format!("index:{id}"),
        };
        let grow =
            || crate::IndexGrower::create_or_resume(Index::open(&out).unwrap(), "new", 1, |_| {});

        // A killed in-place rebuild (its --m is not recorded: the graph is made at the end).
        interrupted(&out, rebuild_spec(Precision::F32));
        let (what, msg) = mismatch_of(grow());
        assert_eq!(what, "kind of run");
        for want in [
            &format!("an interrupted `index rebuild` of index {id} (the one this add grows)"),
            "storing f32 vectors",
            "run that rebuild again",
            &remove,
        ] {
            assert!(msg.contains(want), "{want:?} not in {msg}");
        }
        assert!(!msg.contains("changed since"), "{msg}");
        std::fs::remove_dir_all(&partial).unwrap();

        // A killed `rebuild --f16`: the rebuild and its flag are said, not "precision".
        interrupted(&out, rebuild_spec(Precision::F16));
        let (what, msg) = mismatch_of(grow());
        assert_eq!(what, "kind of run");
        for want in [
            "`index rebuild`",
            "f16 vectors (--f16)",
            "with --f16",
            &remove,
        ] {
            assert!(msg.contains(want), "{want:?} not in {msg}");
        }
        assert!(!msg.contains("precision"), "{msg}");
        std::fs::remove_dir_all(&partial).unwrap();

        // A killed add, met by a rebuild and by a build.
        let add_spec = |new: &str| IndexSpec {
            input: format!("rows of index {id} then {new}"),
            ..rebuild_spec(Precision::F32)
        };
        interrupted(&out, add_spec("new"));
        let opts = crate::rebuild::RebuildOptions {
            precision: None,
            hnsw: params(),
            force: true,
        };
        let r = crate::rebuild::rebuild(Index::open(&out).unwrap(), &out, &opts, |_| {});
        let (_, msg) = mismatch_of(r);
        for want in [
            &format!("an interrupted `index add` to index {id} (the one this rebuild reads)"),
            "run that add again",
            &format!(
                "`relbert index add --index {}` with the same pairs",
                out.display()
            ),
            "then run this rebuild again",
        ] {
            assert!(msg.contains(want), "{want:?} not in {msg}");
        }
        let (_, msg) = mismatch_of(IndexBuilder::create_or_resume(&out, spec(8), true));
        assert!(
            msg.contains("which this build can neither resume nor replace"),
            "{msg}"
        );
        // The same add with other pairs.
        let (what, msg) = mismatch_of(crate::IndexGrower::create_or_resume(
            Index::open(&out).unwrap(),
            "other",
            1,
            |_| {},
        ));
        assert_eq!(what, "input");
        assert!(msg.contains("of other pairs than this add's"), "{msg}");
        assert!(
            msg.contains("run that add again with the same pairs"),
            "{msg}"
        );
        // The partial build is the user's to resume: never removed by a refusal.
        assert!(partial.join("checkpoint").is_file());

        // A build started with --f16 and run again without it.
        let out2 = tmp.path().join("idx2");
        interrupted(
            &out2,
            IndexSpec {
                precision: Precision::F16,
                ..spec(8)
            },
        );
        let (what, msg) = mismatch_of(IndexBuilder::create_or_resume(&out2, spec(8), false));
        assert_eq!(what, "storage (--f16)");
        for want in [
            "an interrupted `index build`, storing f16 vectors (--f16)",
            "this build stores f32 vectors",
            "run it again with --f16",
        ] {
            assert!(msg.contains(want), "{want:?} not in {msg}");
        }
    }

    /// Found by a review: an add refused over another add's partial build that holds a copy
    /// of standard input said only "run that add again with the same pairs", though the same
    /// add with `--pairs -` and nothing on standard input resumes it from that copy (the way
    /// to finish it when its pairs came from a pipe). Said only when the copy is there.
    #[test]
    fn a_refusal_over_a_copy_of_standard_input_says_it_resumes_from_it() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let idx = published(&out, 40, 8);
        let id = idx.id();
        let partial = partial_dir(&out).unwrap();
        interrupted(
            &out,
            IndexSpec {
                dim: 8,
                precision: Precision::F32,
                encoder: idx.meta().encoder.clone(),
                input: format!("rows of index {id} then new"),
            },
        );
        let grow =
            || crate::IndexGrower::create_or_resume(Index::open(&out).unwrap(), "other", 1, |_| {});
        let (what, msg) = mismatch_of(grow());
        assert_eq!(what, "input");
        assert!(!msg.contains("standard input"), "no copy, not said: {msg}");
        std::fs::write(partial.join(SPOOL), format!("{}x0\ty0\n", spool_header())).unwrap();
        let (what, msg) = mismatch_of(grow());
        assert_eq!(what, "input");
        let want = "run that add again with the same pairs, or with `--pairs -` and nothing on \
                    standard input (which resumes from its copy, input.spool), to finish it, or \
                    remove";
        assert!(msg.contains(want), "{want:?} not in {msg}");
        assert!(partial.join(SPOOL).is_file(), "a refusal removes nothing");
    }

    /// Found by an audit: an `index add` of a write-protected index (`chmod a-w`) "succeeded":
    /// the exchange needs no write permission on the directory, so a writable index took its
    /// place, and the old one, which could not be removed, was left in `<index>.partial/`.
    /// A write-protected index (the directory, or one of its files) is refused before
    /// anything is made, by an add, a rebuild and a build onto it, and by a finish when it
    /// was protected while the rows were encoded. The mode bits are read, so this holds for
    /// root too (which may write anything).
    #[test]
    fn a_write_protected_index_is_refused_before_anything_is_made() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        published(&out, 30, 8);
        let chmod = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let names = || crate::test_util::sorted_names(tmp.path());
        let before = names();
        let protected = |r: Result<()>, want: &str| match r {
            Err(e @ IndexError::WriteProtected { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&out.display().to_string()), "{msg}");
                assert!(msg.contains(want), "{want:?} not in {msg}");
                assert!(msg.contains("chmod -R u+w"), "{msg}");
            }
            Err(e) => panic!("expected WriteProtected, got {e}"),
            Ok(()) => panic!("a write-protected index was taken"),
        };
        let grow = || {
            crate::IndexGrower::create_or_resume(Index::open(&out).unwrap(), "new", 1, |_| {})
                .map(drop)
        };
        let rebuild = || {
            let opts = crate::rebuild::RebuildOptions {
                precision: None,
                hnsw: params(),
                force: true,
            };
            crate::rebuild::rebuild(Index::open(&out).unwrap(), &out, &opts, |_| {}).map(drop)
        };
        let build = || IndexBuilder::create_or_resume(&out, spec(8), true).map(drop);

        chmod(&out, 0o555);
        protected(grow(), "the directory's mode is 555");
        protected(rebuild(), "the directory's mode is 555");
        protected(build(), "the directory's mode is 555");
        assert_eq!(names(), before, "something was made beside the index");
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o555
        );

        chmod(&out, 0o755);
        chmod(&out.join("meta"), 0o444);
        protected(grow(), "its file meta has mode 444");
        assert_eq!(names(), before);
        chmod(&out.join("meta"), 0o644);

        // Protected while the rows were encoded: the finish refuses, keeping the checkpoint,
        // and the same run resumes once the index is writable again.
        let mut g =
            crate::IndexGrower::create_or_resume(Index::open(&out).unwrap(), "new", 1, |_| {})
                .unwrap();
        let pairs = [PairEntry::new("new", "pair")];
        g.append_chunk(&pairs, &low_rank(1, 8, 1, 0.1, 9)).unwrap();
        chmod(&out, 0o555);
        protected(g.finish(|_| {}).map(drop), "the directory's mode is 555");
        chmod(&out, 0o755);
        let g = crate::IndexGrower::create_or_resume(Index::open(&out).unwrap(), "new", 1, |_| {})
            .unwrap();
        assert_eq!(g.added_rows_done(), 1);
        g.finish(|_| {}).unwrap();
        assert_eq!(Index::open(&out).unwrap().count(), 31);
        assert_eq!(names(), before);
    }

    /// Found by an audit: a full disk while standard input was copied into a new partial
    /// build said a bare `input.spool: No space left on device`, and left the directory with
    /// its cut copy. The unfinished copy goes; a directory this run made goes too and the
    /// error says nothing was kept, with what to do; one an earlier run left stays, named
    /// with the full-disk advice of the rest of the build.
    #[test]
    fn a_full_disk_while_copying_the_input_is_said_with_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let partial = partial_dir(&out).unwrap();
        let full = || std::io::Error::from_raw_os_error(libc::ENOSPC);
        let b = IndexBuilder::create_or_resume(&out, spec(8), false).unwrap();
        let path = b.spool_path();
        std::fs::write(partial.join("input.spool.tmp"), "cut").unwrap();
        let e = b.spool_failed(&path, full());
        let msg = e.to_string();
        assert!(matches!(e, IndexError::PartialRemoved { .. }), "{msg}");
        assert!(
            msg.contains("nothing was kept") && msg.contains("make room"),
            "{msg}"
        );
        assert!(!partial.exists());

        // An earlier run's partial directory stays, and is named.
        drop(IndexBuilder::create_or_resume(&out, spec(8), false).unwrap());
        let b = IndexBuilder::create_or_resume(&out, spec(8), false).unwrap();
        std::fs::write(partial.join("input.spool.tmp"), "cut").unwrap();
        let msg = b.spool_failed(&path, full()).to_string();
        assert!(
            msg.contains(&format!("remove {}", partial.display())) && msg.contains("make room"),
            "{msg}"
        );
        assert!(partial.is_dir() && !partial.join("input.spool.tmp").exists());
    }

    /// Found by an audit: a file of an index made immutable (`chattr +i idx/vectors`) was
    /// not seen by the mode-bit check, so an `index add` exchanged the directories and left
    /// the old index, which could not be removed, in `idx.partial`. The attribute is read, so
    /// root is refused too. Skipped where `chattr` is missing or not permitted (a container
    /// without CAP_LINUX_IMMUTABLE, a file system without attributes).
    #[test]
    fn an_index_with_an_immutable_file_is_refused_before_anything_is_made() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        published(&out, 30, 8);
        let vectors = out.join("vectors");
        let chattr = |flag: &str, p: &Path| {
            std::process::Command::new("chattr")
                .arg(flag)
                .arg(p)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        /// Takes the attributes off again, so that the temporary directory can be removed
        /// whatever the test does.
        struct Unlock(Vec<PathBuf>);
        impl Drop for Unlock {
            fn drop(&mut self) {
                for p in &self.0 {
                    let _ = std::process::Command::new("chattr")
                        .args(["-i", "-a"])
                        .arg(p)
                        .stderr(std::process::Stdio::null())
                        .status();
                }
            }
        }
        let partial = partial_dir(&out).unwrap();
        let _unlock = Unlock(vec![vectors.clone(), partial.join("vectors")]);
        if !chattr("+i", &vectors) {
            crate::test_skip(format_args!(
                "`chattr +i` is not available or not permitted here"
            ));
            return;
        }
        let before = crate::test_util::sorted_names(tmp.path());
        for (flag, want, undo) in [
            ("+i", "its file vectors is immutable (`chattr +i`)", "-i"),
            ("+a", "its file vectors is append-only (`chattr +a`)", "-a"),
        ] {
            if flag == "+a" && !(chattr("-i", &vectors) && chattr("+a", &vectors)) {
                // Nothing is protected now: there is nothing left to check.
                crate::test_skip("the append-only half: `chattr +a` is not permitted here");
                return;
            }
            assert!(check_not_write_protected(&out, "add").is_err(), "{flag}");
            let r =
                crate::IndexGrower::create_or_resume(Index::open(&out).unwrap(), "new", 1, |_| {})
                    .map(drop);
            match r {
                Err(e @ IndexError::WriteProtected { .. }) => {
                    let msg = e.to_string();
                    // The fix is the attribute's, not a `chmod`, which would not help; the
                    // cause is said flat, not in brackets within brackets.
                    let fix = format!("`chattr -R {undo} {}` (as root)", out.display());
                    assert!(msg.contains(want), "{want:?} not in {msg}");
                    assert!(msg.contains(&fix), "{fix:?} not in {msg}");
                    assert!(!msg.contains("chmod") && !msg.contains("undoes"), "{msg}");
                    assert!(!msg.contains("write-protected ("), "{msg}");
                }
                Err(e) => panic!("expected WriteProtected, got {e}"),
                Ok(()) => panic!("an index with an immutable file was taken"),
            }
            assert_eq!(crate::test_util::sorted_names(tmp.path()), before);
        }
    }

    /// The advice undoes every protection found at once: a directory whose mode is off and
    /// a file that is immutable need both `chattr` and `chmod`. Skipped where `chattr` is
    /// missing or not permitted.
    #[test]
    fn a_mode_and_an_attribute_are_both_undone_by_the_advice() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        published(&out, 30, 8);
        let vectors = out.join("vectors");
        struct Unlock(PathBuf, PathBuf);
        impl Drop for Unlock {
            fn drop(&mut self) {
                let _ = std::process::Command::new("chattr")
                    .arg("-i")
                    .arg(&self.1)
                    .stderr(std::process::Stdio::null())
                    .status();
                let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
            }
        }
        let _unlock = Unlock(out.clone(), vectors.clone());
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&vectors)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            crate::test_skip(format_args!(
                "`chattr +i` is not available or not permitted here"
            ));
            return;
        }
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o555)).unwrap();
        let msg = check_not_write_protected(&out, "build")
            .unwrap_err()
            .to_string();
        let d = out.display();
        for want in [
            "the directory's mode is 555: its owner may not write to it; 1 of its files is \
             write-protected too",
            &format!("`chattr -R -i {d}` (as root)"),
            &format!("`chmod -R u+w {d}` (by its owner)"),
        ] {
            assert!(msg.contains(want), "{want:?} not in {msg}");
        }
    }

    /// Found by a review: a run with nothing to do removed any `.<name>.old-*` directory
    /// holding an index, a user's copy `.idx.old-mybackup` too. Only the name a publication
    /// gives (`.<name>.old-<pid>`, the pid as printed) goes, and only when that pid is no
    /// live process but this one.
    #[test]
    fn only_a_dead_publications_old_index_is_taken_for_a_leftover() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let b = five_pairs_into(&out);
        b.finish(params(), |_| {}).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let alive = std::os::unix::process::parent_id();
        let copy = |suffix: String| {
            let to = tmp.path().join(format!(".idx.old-{suffix}"));
            std::fs::create_dir(&to).unwrap();
            for e in std::fs::read_dir(&out).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
            to
        };
        let kept = [
            copy("mybackup".into()),
            copy(format!("0{dead}")),
            copy(format!("{dead}x")),
            copy(format!("+{dead}")),
            copy(alive.to_string()),
            // Numbers no pid can be (found by a review: a user's dated copy went).
            copy("20261204".into()),
            copy(pid_max().to_string()),
            copy(libc::pid_t::MAX.to_string()),
        ];
        let gone = [copy(dead.to_string()), copy(std::process::id().to_string())];
        let found = clear_leftovers(&out).unwrap();
        let mut removed: Vec<_> = found.removed.into_iter().map(|(p, _)| p).collect();
        removed.sort();
        let mut want = gone.to_vec();
        want.sort();
        assert_eq!(removed, want);
        assert!(found.left.is_empty(), "{:?}", found.left);
        for p in &kept {
            assert!(p.join("meta").is_file(), "{} went", p.display());
        }
        for p in &gone {
            assert!(!p.exists(), "{} stayed", p.display());
        }
        // The same on the path of a run that goes on to build (a build `--force`, an add, a
        // remove, a rebuild).
        let gone = copy(dead.to_string());
        drop(IndexBuilder::create_or_resume(&out, spec(8), true).unwrap());
        assert!(!gone.exists(), "{} stayed", gone.display());
        for p in &kept {
            assert!(p.join("meta").is_file(), "{} went", p.display());
        }
    }

    /// The pids a publication's name may hold: as `std::process::id` prints one, below the
    /// system's bound.
    #[test]
    fn a_publishers_pid_is_a_pid_as_printed() {
        assert!(pid_max() <= PID_MAX_LIMIT);
        assert_eq!(publisher_pid("1"), Some(1));
        assert_eq!(
            publisher_pid(&(pid_max() - 1).to_string()),
            Some(pid_max() - 1)
        );
        for not in [
            "", "0", "01", "+1", "-1", " 1", "1 ", "1x", "20261204", "4194304",
        ] {
            assert_eq!(publisher_pid(not), None, "{not:?}");
        }
        assert_eq!(publisher_pid(&pid_max().to_string()), None);
    }

    /// What is said when a leftover cannot be removed: a partial directory with no checkpoint
    /// (removed before a build starts again), or the index a publication replaced. The
    /// directory and what to do are named, not a bare "Permission denied". A missing path
    /// stands for one that cannot be removed (root removes anything else); the real case,
    /// a write-protected old index, is `tests/cli_grow.rs`'s
    /// `an_old_index_that_cannot_be_removed_is_named_and_not_left_silently`.
    #[test]
    fn a_leftover_that_cannot_be_removed_is_named_with_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let missing = tmp.path().join("missing.partial");
        let e = remove_leftover(&missing).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, IndexError::LeftoverNotRemoved { .. })
                && msg.contains(&format!("remove {} yourself", missing.display()))
                && msg.contains("run again"),
            "{msg}"
        );
        let old = tmp.path().join("old");
        let e = remove_replaced(&old, &out).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{} now holds the new index", out.display()))
                && msg.contains(&format!("could not be removed from {}", old.display()))
                && msg.contains(&format!("remove {} yourself", old.display())),
            "{msg}"
        );
    }

    /// Found by a review: the partial directory was made with `create_dir_all`, so a folder
    /// of the output deleted after its lock was taken (by its user, or a race) was made
    /// again, with the whole build under it. Now the partial directory alone is made: a
    /// missing folder is refused, typed and naming it, with nothing made; a partial
    /// directory that appeared meanwhile is refused and left as it was.
    #[test]
    fn a_folder_gone_after_the_lock_is_refused_not_made_again() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path().join("work");
        std::fs::create_dir(&folder).unwrap();
        let out = folder.join("idx");
        let partial = partial_dir(&out).unwrap();
        let lock = OutputLock::acquire(&out).unwrap();
        std::fs::remove_dir_all(&folder).unwrap();
        match IndexBuilder::create(&out, partial.clone(), spec(8), false, lock) {
            Err(IndexError::FolderMissing { path, output }) => {
                assert_eq!(path, folder);
                assert_eq!(output, out);
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(!folder.exists(), "{} was made again", folder.display());

        // A partial directory put there after the caller looked: not this run's, kept.
        std::fs::create_dir(&folder).unwrap();
        let lock = OutputLock::acquire(&out).unwrap();
        std::fs::create_dir(&partial).unwrap();
        std::fs::write(partial.join("notes.txt"), "mine\n").unwrap();
        let err = IndexBuilder::create(&out, partial.clone(), spec(8), false, lock)
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, IndexError::Io { .. }), "{err}");
        assert!(
            err.to_string().contains(&partial.display().to_string()),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(partial.join("notes.txt")).unwrap(),
            "mine\n"
        );
    }
}

/// Tests of FN2 (audit N): a mount point and an early full disk refused with advice.
#[cfg(test)]
mod mount_and_space_tests {
    use super::*;

    /// `mount ARGS`, or why not (not root, no `mount`, no permission): the test then skips.
    fn mount(args: &[&str]) -> std::result::Result<(), String> {
        match std::process::Command::new("mount").args(args).output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn umount(p: &Path) {
        let _ = std::process::Command::new("umount").arg(p).status();
    }

    fn spec() -> IndexSpec {
        crate::test_util::spec(8, "test")
    }

    /// Found by an audit: an index that is a mount point (a bind mount, a Docker volume) was
    /// copied and encoded, then its publication failed with a bare EBUSY. The write preflight
    /// now refuses it first, naming it, why, and what to do.
    #[test]
    fn a_mount_point_index_is_refused_before_any_work() {
        let tmp = tempfile::tempdir().unwrap();
        let idx = tmp.path().join("idx");
        std::fs::create_dir(&idx).unwrap();
        let p = idx.to_str().unwrap();
        if let Err(why) = mount(&["--bind", p, p]) {
            crate::test_skip(format_args!("cannot bind-mount {p}: {why}"));
            return;
        }
        let r = check_not_write_protected(&idx, "add");
        umount(&idx);
        match r {
            Err(e @ IndexError::MountPoint { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("is a mount point"), "{msg}");
                assert!(msg.contains("mount the folder above it"), "{msg}");
                assert!(msg.contains("rebuild --index"), "{msg}");
            }
            other => panic!("expected MountPoint, got {other:?}"),
        }
        // The same directory, no longer mounted, passes.
        check_not_write_protected(&idx, "add").unwrap();
    }

    /// Found by an audit: a full disk while the partial directory's first files or its first
    /// checkpoint were written gave a bare ENOSPC, without the advice later stages give.
    #[test]
    fn a_full_disk_early_in_a_build_is_said_with_advice() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = tmp.path().join("fs");
        std::fs::create_dir(&fs).unwrap();
        let p = fs.to_str().unwrap();
        if let Err(why) = mount(&["-t", "tmpfs", "-o", "size=256k", "tmpfs", p]) {
            crate::test_skip(format_args!("cannot mount a tmpfs on {p}: {why}"));
            return;
        }
        let out = fs.join("idx");
        let mut seen = Vec::new();
        for free_pages in 1..4u64 {
            let fill = fs.join("fill");
            let _ = std::fs::remove_file(&fill);
            {
                use std::io::Write;
                let mut f = File::create(&fill).unwrap();
                let page = vec![0u8; 4096];
                while f.write_all(&page).is_ok() {}
                let len = f.metadata().unwrap().len();
                f.set_len(len.saturating_sub(free_pages * 4096)).unwrap();
            }
            match IndexBuilder::create_or_resume(&out, spec(), false) {
                Ok(b) => drop(b),
                Err(e) => seen.push(e),
            }
            let _ = std::fs::remove_dir_all(partial_dir(&out).unwrap());
        }
        umount(&fs);
        assert!(!seen.is_empty(), "no write failed");
        for e in &seen {
            let msg = e.to_string();
            assert!(
                matches!(e, IndexError::PartialRemoved { .. }),
                "bare or other error: {msg}"
            );
            assert!(msg.contains("make room"), "{msg}");
        }
    }
}
