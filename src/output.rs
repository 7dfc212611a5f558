//! Writing relation vectors: JSON lines or a NumPy `.npy` array with a `.pairs.tsv` beside it.
//! Every file is written to a temporary path in the target directory and renamed into place,
//! so a failed run never leaves a half-written output.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// A file being written under a temporary name beside it, `.<name>.relbert.tmp`;
/// [`AtomicFile::commit`] fsyncs it and renames it into place, and one dropped without a
/// commit (an error, [`AtomicFile::discard`]) is removed.
///
/// The temporary name says whose it is: `.<name>.tmp`, which it was before, is a name other
/// programs and people use too, and a user's draft there was overwritten and then removed.
/// The temporary file is always created new, never written over. The name is fixed, not
/// random: a run killed before its rename (SIGKILL runs no cleanup) leaves
/// `.<name>.relbert.tmp`, and the next run to the same output removes it first (callers hold
/// the output's writer lock, [`relbert_index::OutputLock`], so no live run is writing it),
/// so kills do not pile up files.
pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    writer: BufWriter<std::fs::File>,
    /// Renamed into place, or kept under its temporary name: nothing to remove on drop.
    committed: bool,
    /// `target` existed when the file was created and the caller allowed replacing it: the
    /// commit renames over it. Otherwise it renames only where nothing is (something that
    /// appeared at `target` during the run is not the caller's to replace).
    replace: bool,
}

/// The temporary path of `target`: `.<name>.relbert.tmp` beside it.
pub fn temp_path(target: &Path) -> PathBuf {
    sibling_named(target, TEMP_TAG)
}

/// The ending of [`temp_path`]'s names (after `.<name>.`).
const TEMP_TAG: &str = "relbert.tmp";

impl AtomicFile {
    /// Starts writing `target` (refused if it exists and `force` is off; callers check with
    /// [`check_replaceable`] that a forced target is theirs to replace).
    ///
    /// Only what is at `target` now may be replaced: one absent now that appears before the
    /// commit is left alone, and the commit fails keeping the new output under its temporary
    /// name ([`AtomicFile::commit`]).
    pub fn create(target: &Path, force: bool) -> Result<Self> {
        let existed = std::fs::symlink_metadata(target).is_ok();
        if existed && !force {
            return Err(Error::Exists {
                path: target.to_path_buf(),
            });
        }
        let tmp = temp_path(target);
        let not_ours = |why: &str| Error::NotOurs {
            path: tmp.clone(),
            what: "a temporary file",
            why: why.into(),
        };
        // A regular file of this name is what a killed run left (the caller holds the lock);
        // a link or a directory is not relbert's, and stays as it is.
        match std::fs::symlink_metadata(&tmp) {
            Ok(md) if md.is_file() => {
                std::fs::remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
            }
            Ok(md) if md.file_type().is_symlink() => {
                return Err(not_ours("it is a symbolic link"));
            }
            Ok(_) => return Err(not_ours("it is not a regular file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&tmp, e)),
        }
        let mut opts = std::fs::OpenOptions::new();
        // Created new (O_EXCL, which also never follows a symbolic link): nothing that is
        // there is written over, even one that appeared since the check above.
        opts.write(true).create_new(true);
        // The renamed output gets the permissions of any file the user creates.
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o644);
        }
        let f = opts.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            tmp,
            writer: BufWriter::with_capacity(1 << 20, f),
            committed: false,
            replace: existed,
        })
    }

    /// The output's final path: what a write error names (the temporary file is hidden).
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The buffered writer.
    pub fn writer(&mut self) -> &mut BufWriter<std::fs::File> {
        &mut self.writer
    }

    /// Writes out what is buffered and fsyncs it, without renaming: a full disk shows here,
    /// before anything of the old output is touched. Errors name the output, not the hidden
    /// temporary file.
    pub fn sync(&mut self) -> Result<()> {
        self.writer
            .flush()
            .and_then(|()| self.writer.get_ref().sync_all())
            .map_err(|e| Error::io(&self.target, e))
    }

    /// Whether the commit replaces what was at the target when the file was created.
    pub fn replaces(&self) -> bool {
        self.replace
    }

    /// Checks that the commit may put the file in place: the target is absent, or was there
    /// at the start and replacing it was allowed. Callers that remove the old output before
    /// the rename ([`crate::embed::Sink::commit`]) check first, so that nothing goes when the
    /// commit is refused.
    pub fn check_place(&self) -> Result<()> {
        if !self.replace && std::fs::symlink_metadata(&self.target).is_ok() {
            return Err(appeared(&self.target, "output", &[&self.tmp]));
        }
        Ok(())
    }

    /// Keeps the file under its temporary name (not removed on drop) and returns that name:
    /// the output of a run whose commit was refused, which must not be lost.
    pub fn keep(mut self) -> PathBuf {
        self.committed = true;
        self.tmp.clone()
    }

    /// Flushes, fsyncs and renames the file into place, then fsyncs its directory so the
    /// rename survives a power loss; on failure the temporary file is removed (it would hold
    /// the disk space a retry needs). Something that appeared at the target during the run
    /// (absent at [`AtomicFile::create`], or present without `force`) is not replaced: the
    /// commit fails naming it, and the new output is kept under its temporary name. An error
    /// always means the file was not put in place: a directory sync that fails after the
    /// rename is warned about instead.
    pub fn commit(mut self) -> Result<()> {
        self.place()
    }

    /// [`AtomicFile::commit`], but a failure keeps the file under its temporary name (not
    /// removed on drop) and returns that name with the error: for a caller that removed the
    /// old output first, where the new one is all that is left.
    pub fn commit_or_keep(mut self) -> std::result::Result<(), Box<(Error, PathBuf)>> {
        match self.place() {
            Ok(()) => Ok(()),
            Err(e) => Err(Box::new((e, self.keep()))),
        }
    }

    /// The commit: on failure the temporary file is left to the caller (kept only where
    /// something appeared at the target).
    fn place(&mut self) -> Result<()> {
        self.sync()?;
        let renamed = if self.replace {
            std::fs::rename(&self.tmp, &self.target)
        } else {
            rename_noreplace(&self.tmp, &self.target)
        };
        match renamed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                self.committed = true;
                return Err(appeared(&self.target, "output", &[&self.tmp]));
            }
            Err(e) => return Err(Error::io(&self.target, e)),
        }
        self.committed = true;
        warn_after_placing(&self.target, sync_parent(&self.target));
        Ok(())
    }

    /// Removes the temporary file (a run that failed cleanly leaves nothing); dropping the
    /// file does the same.
    pub fn discard(self) {}
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The longest file name the file system of `out`'s directory (or of its nearest existing
/// ancestor: the directory may be made by the run) takes, as it reports it
/// (`pathconf(_PC_NAME_MAX)`); `None` when it does not say. Most count bytes; some count
/// other units (ntfs3: UTF-16 units), so the figure is a byte limit only for ASCII names.
pub fn name_max(out: &Path) -> Option<usize> {
    use std::os::unix::ffi::OsStrExt;
    let mut dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    while std::fs::symlink_metadata(dir).is_err() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p,
            _ => {
                dir = Path::new(".");
                break;
            }
        }
    }
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: pathconf(3) reads the NUL-terminated path `c` and changes nothing.
    let n = unsafe { libc::pathconf(c.as_ptr(), libc::_PC_NAME_MAX) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// Refuses an output `out` (given as `flag`) whose folder does not exist, or is not a
/// folder, with [`Error::InvalidArgument`] naming both, before anything is written or locked.
///
/// The one check of every command's output folder (`--out`, `--json`, `--checkpoint-dir`, …):
/// taking the output's lock ([`relbert_index::OutputLock::acquire`]) made the folders above
/// it, so a typo in `--out` (`typo/deep/dir/v.npy`) left empty folders behind, also when the
/// run then failed, and `--out aidx.partial/x.bin` made a folder that looked like a partial
/// build of the index `aidx` (whose next `index add` then refused it). The lock now refuses a
/// missing folder itself ([`relbert_index::IndexError::FolderMissing`]), without the flag;
/// this check names the flag, and makes the refusal a bad command line. Most tools say "no
/// such directory"; so does relbert. Other errors looking at the folder (permission denied)
/// name it.
pub fn check_out_folder(out: &Path, flag: &str) -> Result<()> {
    let folder = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let invalid = |why: &str| Error::InvalidArgument {
        flag: flag.to_string(),
        message: format!(
            "{}: its folder {} {why} (relbert does not create folders); create it first, or \
             give a path in an existing folder",
            out.display(),
            folder.display()
        ),
    };
    match std::fs::metadata(folder) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(invalid("is not a folder")),
        // ENOTDIR: a file stands where a folder above it should be (`notes.txt/v.npy`).
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            Err(invalid("does not exist"))
        }
        Err(e) => Err(Error::io(folder, e)),
    }
}

/// Whether `a` and `b` name the same existing file (same device and inode: links and
/// different spellings of one path included).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// What an existing output file must look like for `--force` to replace it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// JSON lines of `relbert embed`: empty, or `{"pair": [two strings], "vector":
    /// [numbers]}` records.
    EmbedJsonl,
    /// A NumPy array (`\x93NUMPY` magic).
    Npy,
    /// The pair list beside an `.npy` output: it starts with relbert's mark
    /// ([`crate::embed::sidecar_owner`] reads it).
    Sidecar,
    /// A pair list from `relbert pairs mine`: it starts with [`MINED_PAIRS_MARK`].
    MinedPairs,
    /// The provenance sidecar of mined pairs: empty, or a first line with `head`, `tail`
    /// and `examples`.
    Provenance,
    /// The `--report` of `relbert pairs mine`: a JSON object with `passes`.
    MineReport,
    /// The `--save-vocab` list of `relbert pairs mine`: it starts with [`MINED_VOCAB_MARK`].
    MinedVocab,
    /// A word2vec file (binary or text): a first line of two counts, `N D`, and records that
    /// fit them, each keyed `head__tail` as relbert names a pair.
    Word2vec,
    /// The `--json` report of `relbert bench`: a JSON object with `encoder`,
    /// `distinct_pairs` and `results`.
    BenchReport,
}

/// The first line of every pair list `relbert pairs mine` writes (a `#` line, which pair
/// readers skip): it marks the file as relbert's for `--force`.
pub const MINED_PAIRS_MARK: &str = "# relbert pairs mine";

/// The first line of a vocabulary `relbert pairs mine --save-vocab` writes.
pub const MINED_VOCAB_MARK: &str = "# relbert vocabulary";

/// Refuses to replace `path` unless `force` and the file is what relbert writes there
/// (`kind`); a missing `path` is fine. Directories and other non-files are never replaced.
///
/// Whose the file is, is asked first, with or without `force`: "exists; pass --force" was
/// said of a user's file that `--force` then refused, sending people round in a circle. Only
/// a file `--force` would replace is told to pass it ([`Error::Exists`]); any other gets
/// [`Error::NotOurs`] at once.
pub fn check_replaceable(path: &Path, force: bool, kind: OutputKind) -> Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    recognise_output(path, kind)?;
    if !force {
        return Err(Error::Exists {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Checks that the existing `path` is what relbert writes there (`kind`): [`Error::NotOurs`]
/// saying why not, else `Ok` ([`check_replaceable`] then asks for `--force`).
fn recognise_output(path: &Path, kind: OutputKind) -> Result<()> {
    let md = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    let not = |why: &str| Error::NotOurs {
        path: path.to_path_buf(),
        what: match kind {
            OutputKind::EmbedJsonl => "a JSON-lines file of vectors",
            OutputKind::Npy => "a NumPy array",
            OutputKind::Sidecar => "a pair list",
            OutputKind::MinedPairs => "a mined pair list",
            OutputKind::Provenance => "a provenance file of mined pairs",
            OutputKind::MineReport => "a mining report",
            OutputKind::MinedVocab => "a mined vocabulary",
            OutputKind::Word2vec => "a word2vec file",
            OutputKind::BenchReport => "a relbert bench report",
        },
        why: why.to_string(),
    };
    if !md.is_file() {
        return Err(not("it is not a regular file"));
    }
    // A bench report is parsed whole (they are tens of KB), and a word2vec file's records
    // are checked as far as 4 MiB goes (a text record of 4,096 numbers is about 60 KB);
    // other kinds by their start.
    let cap: u64 = if matches!(kind, OutputKind::BenchReport | OutputKind::Word2vec) {
        4 << 20
    } else {
        1 << 16
    };
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, cap), &mut head))
        .map_err(|e| Error::io(path, e))?;
    let head = &head[..];
    match kind {
        OutputKind::Npy if !head.starts_with(b"\x93NUMPY") => {
            Err(not("it does not start with the NumPy magic"))
        }
        // Any program writes NumPy arrays; relbert's have its pair list beside them.
        OutputKind::Npy => match sidecar_owner_of(&pairs_sidecar(path)) {
            None => Err(not(&format!(
                "no pair list of relbert's is beside it at {}",
                pairs_sidecar(path).display()
            ))),
            Some(Some(_)) if !sidecar_is_own(path) => Err(not(&format!(
                "the pair list beside it, {}, is another array's",
                pairs_sidecar(path).display()
            ))),
            _ => Ok(()),
        },
        OutputKind::EmbedJsonl if !looks_like_embed_jsonl(head, md.len()) => Err(not(
            "its lines are not the records relbert writes there: {\"pair\": [two strings], \
             \"vector\": [numbers]}, every vector as long",
        )),
        OutputKind::Sidecar
            if std::str::from_utf8(head.split(|&b| b == b'\n').next().unwrap_or(&[]))
                .ok()
                .and_then(crate::embed::sidecar_owner)
                .is_none() =>
        {
            Err(not("it does not start with the line relbert writes there"))
        }
        OutputKind::MinedPairs if !head.starts_with(MINED_PAIRS_MARK.as_bytes()) => {
            Err(not("it does not start with the line relbert writes there"))
        }
        OutputKind::MinedVocab if !head.starts_with(MINED_VOCAB_MARK.as_bytes()) => {
            Err(not("it does not start with the line relbert writes there"))
        }
        OutputKind::MineReport => match serde_json::from_slice::<serde_json::Value>(head) {
            Ok(v) if v.get("passes").is_some() => Ok(()),
            _ => Err(not(
                "it is not a JSON object with the passes relbert reports",
            )),
        },
        OutputKind::Provenance if !head.is_empty() => {
            let first = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
            match serde_json::from_slice::<serde_json::Value>(first) {
                Ok(v)
                    if ["head", "tail", "examples"]
                        .iter()
                        .all(|k| v.get(k).is_some()) =>
                {
                    Ok(())
                }
                _ => Err(not("its first line is not a mined pair's record")),
            }
        }
        OutputKind::BenchReport => {
            // Reports are small; one longer than the head read is not one.
            let v = serde_json::from_slice::<serde_json::Value>(head).ok();
            let keys = ["encoder", "distinct_pairs", "results"];
            match v {
                Some(v) if keys.iter().all(|k| v.get(k).is_some()) => Ok(()),
                _ => Err(not(
                    "it is not a JSON object with the encoder and results relbert bench writes",
                )),
            }
        }
        OutputKind::Word2vec => {
            if looks_like_word2vec(head, md.len()) {
                Ok(())
            } else {
                Err(not(
                    "it is not laid out as relbert's word2vec files are: a line of two counts \
                     N D, then N records, each a head__tail key and D numbers on a line (text) \
                     or such a key, a space, D float32s and a newline (binary)",
                ))
            }
        }
        _ => Ok(()),
    }
}

/// Whether `head`, the start of a file of `len` bytes, is JSON lines as `relbert embed` writes
/// them: empty, or lines that are each an object of exactly `pair`, two strings, and
/// `vector`, a non-empty array of numbers, every vector as long. Any first line with the two
/// keys was enough before, and `--force` replaced a user's file whose first line was
/// `{"pair": 1, "vector": 2, "mine": "precious"}`. Every whole line read is checked.
///
/// What follows the last newline read is judged alike whether the read ended the file or
/// not: `embed > f` stopped mid-line (a killed run) leaves an unfinished last line, and such a
/// file of relbert's was refused by `--force` when under the head read and accepted over it.
/// The fragment passes when a whole record precedes it, or when it starts as every line
/// relbert writes does (`{"pair":["`), so a file that is one long first line cut short is
/// still recognised.
fn looks_like_embed_jsonl(head: &[u8], len: u64) -> bool {
    if head.is_empty() {
        return len == 0;
    }
    let mut lines: Vec<&[u8]> = head.split(|&b| b == b'\n').collect();
    // What follows the last newline: empty when a line of relbert's ends the read.
    let last = lines.pop().unwrap_or(&[]);
    let mut dim = None;
    for line in &lines {
        let Some(d) = embed_record_dim(line) else {
            return false;
        };
        if *dim.get_or_insert(d) != d {
            return false;
        }
    }
    dim.is_some() || last.starts_with(br#"{"pair":[""#)
}

/// The vector length of one line of `relbert embed`'s JSON lines ([`JsonlRow`]), `None` when
/// the line is not one.
fn embed_record_dim(line: &[u8]) -> Option<usize> {
    let v = serde_json::from_slice::<serde_json::Value>(line).ok()?;
    let o = v.as_object()?;
    if o.len() != 2 {
        return None;
    }
    let pair = o.get("pair")?.as_array()?;
    if pair.len() != 2 || !pair.iter().all(serde_json::Value::is_string) {
        return None;
    }
    let vector = o.get("vector")?.as_array()?;
    (!vector.is_empty() && vector.iter().all(serde_json::Value::is_number)).then_some(vector.len())
}

/// Whether `head`, the start of a file of `len` bytes, is a word2vec file as relbert writes
/// one (binary or text). Two counts on the first line are not enough: an edge list (`1 2`,
/// `2 3`, …) starts so, and `--force` replaced one. What follows must fit them, every record
/// in one mode: a key and then D numbers on one line (text), or a key, a space, D × 4 bytes
/// and a newline (binary), as relbert and word2vec's C tool end a record. When the whole file
/// was read, it holds exactly N such records and nothing after them; else every complete
/// record read fits, there is one at least, and fewer than N (the file goes on). Checking the
/// first record alone was not enough when D is 1 or 2: one line of an edge list (`1 2`,
/// `0 1 0.5`) is a text record, and `5 1`, `1 2`, `2 3` was replaced. (gensim's binary files
/// end records with no newline: they are refused, not replaced, since without the newline an
/// edge list such as `3 2`, `1 2`, … fits too.)
///
/// The layout alone is every word2vec file's: GloVe, fastText and GoogleNews vectors in it,
/// which Python users keep beside relbert's exports, were replaced. Every key read must also
/// be one relbert writes ([`is_pair_key`]).
fn looks_like_word2vec(head: &[u8], len: u64) -> bool {
    let Some(end) = head.iter().position(|&b| b == b'\n') else {
        return false;
    };
    let counts = |s: &[u8]| -> Option<u64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    let mut fields = head[..end].split(|&b| b == b' ');
    let (Some(n), Some(d), None) = (
        fields.next().and_then(counts),
        fields.next().and_then(counts),
        fields.next(),
    ) else {
        return false;
    };
    let rest = &head[end + 1..];
    // `head` is the file's start: all of it when it is as long as the file.
    let whole = len <= head.len() as u64;
    if n == 0 {
        return whole && rest.is_empty();
    }
    let Ok(d) = usize::try_from(d) else {
        return false;
    };
    if d == 0 {
        return false;
    }
    let text = |r: &[u8]| -> Record {
        let Some(line_end) = r.iter().position(|&b| b == b'\n') else {
            return Record::Cut;
        };
        let Ok(line) = std::str::from_utf8(&r[..line_end]) else {
            return Record::Misfit;
        };
        let mut f = line.split(' ');
        let key = f.next().unwrap_or("");
        if !is_pair_key(key) {
            return Record::Misfit;
        }
        let mut numbers = 0usize;
        for x in f {
            if x.parse::<f32>().is_err() {
                return Record::Misfit;
            }
            numbers += 1;
        }
        if key.is_empty() || numbers != d {
            return Record::Misfit;
        }
        Record::Fits(line_end + 1)
    };
    let binary = |r: &[u8]| -> Record {
        let Some(space) = r.iter().position(|&b| b == b' ') else {
            return Record::Cut;
        };
        let key = &r[..space];
        if !std::str::from_utf8(key).is_ok_and(is_pair_key) {
            return Record::Misfit;
        }
        let Some(end) = d.checked_mul(4).and_then(|b| b.checked_add(space + 1)) else {
            return Record::Misfit;
        };
        match r.get(end) {
            Some(b'\n') => Record::Fits(end + 1),
            Some(_) => Record::Misfit,
            None => Record::Cut,
        }
    };
    let fits = |record: &dyn Fn(&[u8]) -> Record| -> bool {
        let mut r = rest;
        let mut found = 0u64;
        while !r.is_empty() {
            match record(r) {
                Record::Fits(size) => {
                    found += 1;
                    if found > n {
                        return false;
                    }
                    r = &r[size..];
                }
                // A record cut by the end of what was read; the end of the file cuts none.
                Record::Cut if !whole => break,
                Record::Cut | Record::Misfit => return false,
            }
        }
        if whole {
            found == n
        } else {
            // The file goes on after what was read: something follows N records.
            found >= 1 && found < n
        }
    };
    fits(&text) || fits(&binary)
}

/// Whether `key` could be a word2vec key relbert wrote
/// ([`crate::store::files::pair_key`]): `head__tail`, so it holds `__`, and no white space
/// (the words' spaces are joined by `_`). A word's key (`the`, `paris`) is not one.
fn is_pair_key(key: &str) -> bool {
    key.contains("__") && !key.chars().any(char::is_whitespace)
}

/// One word2vec record at the start of some bytes, for [`looks_like_word2vec`].
enum Record {
    /// A record that fits the counts, of this many bytes (its newline included).
    Fits(usize),
    /// The bytes end before the record does.
    Cut,
    /// Not a record that fits the counts.
    Misfit,
}

/// The files relbert writes in a model directory (trained, averaged, a checkpoint): the
/// model, its tokenizer files copied from the base, and relbert's records of how it was made.
const MODEL_DIR_FILES: [&str; 6] = [
    "config.json",
    "model.safetensors",
    "training_config.json",
    "metrics.json",
    "epoch_metrics.json",
    "averaged_from.json",
];

/// The temporary files relbert itself writes inside a model directory and renames into
/// place (`relbert train` rewrites `metrics.json` after every epoch through
/// `.metrics.json.tmp`): a run killed before the rename leaves one, which must not make the
/// directory look like someone else's. Exact names, not any `*.tmp`: a user's `notes.tmp`
/// is still theirs.
pub(crate) const MODEL_DIR_TEMPS: [&str; 1] = [".metrics.json.tmp"];

/// Checks that `dir` (a leftover of a killed run: a half-written or half-removed model
/// directory) holds nothing but files relbert writes in a model directory, any of them or
/// none, so that it may be removed; `what` says what it was taken for.
pub fn recognise_model_leftover(dir: &Path, what: &'static str) -> Result<()> {
    only_model_files(dir).map_err(|why| Error::NotOurs {
        path: dir.to_path_buf(),
        what,
        why,
    })
}

/// Whether `dir` is a directory holding nothing but files relbert writes in a model
/// directory ([`MODEL_DIR_FILES`], the tokenizer files and the temporary files of
/// [`MODEL_DIR_TEMPS`] and [`is_weights_temp`]); `Err(why)` otherwise.
fn only_model_files(dir: &Path) -> std::result::Result<(), String> {
    let md = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !md.is_dir() {
        return Err(relbert_index::build::not_a_directory(dir, &md));
    }
    let rd = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    for e in rd {
        let e = e.map_err(|e| e.to_string())?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = (MODEL_DIR_FILES
            .iter()
            .chain(crate::model::config::TOKENIZER_FILES.iter())
            .chain(MODEL_DIR_TEMPS.iter())
            .any(|f| *f == name)
            || is_weights_temp(&name))
            && e.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !ours {
            return Err(format!(
                "it holds {name:?}, which relbert does not write there"
            ));
        }
    }
    Ok(())
}

/// Whether `name` is the temporary file the `safetensors` crate writes the weights to before
/// renaming them to `model.safetensors` (`tempfile`'s `.tmp` and six random characters): a
/// run killed while saving leaves one in its directory, which the next run must be able to
/// clear (it refused the leftover as not relbert's).
fn is_weights_temp(name: &str) -> bool {
    name.len() == 10
        && name.starts_with(".tmp")
        && name[4..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Checks that a model directory is one relbert wrote, so `--force` may replace it: a
/// directory with `config.json`, `model.safetensors` and relbert's own record of how it was
/// made (`training_config.json`, `averaged_from.json` or `epoch_metrics.json`), holding
/// nothing but the files relbert writes there (a user's notes beside the model keep it from
/// being replaced).
pub fn recognise_model_dir(dir: &Path) -> Result<()> {
    let not = |why: String| Error::NotOurs {
        path: dir.to_path_buf(),
        what: "a model directory",
        why,
    };
    let md = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !md.is_dir() {
        return Err(not(relbert_index::build::not_a_directory(dir, &md)));
    }
    let marker = [
        "training_config.json",
        "averaged_from.json",
        "epoch_metrics.json",
    ]
    .iter()
    .any(|m| dir.join(m).is_file());
    if !marker || !dir.join("model.safetensors").is_file() || !dir.join("config.json").is_file() {
        return Err(not(
            "it lacks config.json, model.safetensors or relbert's training record".into(),
        ));
    }
    only_model_files(dir).map_err(not)
}

/// Output formats of `relbert embed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Format {
    /// One `{"pair": [a, b], "vector": [...]}` object per line.
    Jsonl,
    /// A float32 `[n, dim]` NumPy array plus `<out>.pairs.tsv`.
    Npy,
}

#[derive(Serialize)]
struct JsonlRow<'a> {
    pair: [&'a str; 2],
    vector: &'a [f32],
}

/// Writes one JSON line for a pair.
pub fn write_jsonl_row(
    w: &mut impl Write,
    head: &str,
    tail: &str,
    v: &[f32],
) -> std::io::Result<()> {
    serde_json::to_writer(
        &mut *w,
        &JsonlRow {
            pair: [head, tail],
            vector: v,
        },
    )?;
    w.write_all(b"\n")
}

/// The `.npy` header for a little-endian float32 C-order array of `shape`.
///
/// Written by hand: the format is a ten-byte preamble and a Python dict literal, and the npy
/// crates would bring ndarray along for nothing else.
pub fn npy_header(rows: usize, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + dict + padding + '\n', aligned to 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let hlen = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(10 + hlen);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(hlen as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

/// Appends a float32 row in little-endian order.
pub fn write_f32_row(w: &mut impl Write, v: &[f32]) -> std::io::Result<()> {
    for x in v {
        w.write_all(&x.to_le_bytes())?;
    }
    Ok(())
}

/// The `.pairs.tsv` path that goes beside an `.npy` output: its name without `.npy` (in any
/// letter case, as `embed` reads the extension: `X.NPY` -> `X.pairs.tsv`), or its whole name
/// when it has another ending (`emb.train` -> `emb.train.pairs.tsv`; cutting any extension
/// gave `emb.train` and `emb.test` one pair list). `v` and `v.npy` still share
/// `v.pairs.tsv`; its first line names its array ([`crate::embed::sidecar_mark`]), and
/// [`check_sidecar_owner`] refuses the second.
///
/// Derived byte for byte: a name that is not UTF-8 keeps its bytes (it was converted lossily,
/// so `a\xff.npy` and `a\xfe.npy` shared `a\u{FFFD}.pairs.tsv`, and `d\xff/v.npy` wrote its
/// list into a new directory `d\u{FFFD}`).
pub fn pairs_sidecar(npy: &Path) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let name = npy.as_os_str().as_bytes();
    // `.npy` is ASCII, which is never part of a longer UTF-8 sequence: cutting it off leaves
    // whatever bytes come before it whole.
    let stem = match name.len().checked_sub(".npy".len()) {
        Some(cut) if name[cut..].eq_ignore_ascii_case(b".npy") => &name[..cut],
        _ => name,
    };
    let mut list = stem.to_vec();
    list.extend_from_slice(b".pairs.tsv");
    PathBuf::from(std::ffi::OsString::from_vec(list))
}

/// The first line of a file (up to 64 KiB), if it can be read and is UTF-8 (every mark
/// relbert writes is: a lossy reading could make another program's bytes look like a name).
fn first_line(path: &Path) -> Option<String> {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(1 << 16).read_to_end(&mut head))
        .ok()?;
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    String::from_utf8(line.to_vec()).ok()
}

/// Whose pair list the file at `sidecar` is: `Some(Some(name))` names its array, `Some(None)`
/// an earlier build's list (no name), `None` not relbert's or not there.
pub fn sidecar_owner_of(sidecar: &Path) -> Option<Option<String>> {
    crate::embed::sidecar_owner(&first_line(sidecar)?)
}

/// The writer locks of an `.npy` output `array` and of its pair list, held until both are
/// renamed into place, after which its pair list is checked to be this array's (or absent):
/// `v` and `v.npy` share `v.pairs.tsv`, and two runs checking it before either wrote it
/// would both write it.
pub fn lock_npy_output(
    array: &Path,
) -> Result<(relbert_index::OutputLock, relbert_index::OutputLock)> {
    let locks = (
        relbert_index::OutputLock::acquire(array)?,
        relbert_index::OutputLock::acquire(&pairs_sidecar(array))?,
    );
    check_sidecar_owner(array)?;
    Ok(locks)
}

/// Refuses when the pair list that `array` would write ([`pairs_sidecar`]) exists and names
/// another array: writing it would relabel that array's rows, with or without `--force`.
pub fn check_sidecar_owner(array: &Path) -> Result<()> {
    let sidecar = pairs_sidecar(array);
    match sidecar_owner_of(&sidecar) {
        Some(Some(name)) if !crate::embed::mark_names(&name, array) => {
            Err(Error::PairListOfAnother {
                path: sidecar,
                array: name,
            })
        }
        _ => Ok(()),
    }
}

/// Whether the pair list of `array` exists and names `array` (in the mark's current form or
/// in the one before it, [`crate::embed::mark_names`]).
pub fn sidecar_is_own(array: &Path) -> bool {
    match sidecar_owner_of(&pairs_sidecar(array)) {
        Some(Some(name)) => crate::embed::mark_names(&name, array),
        _ => false,
    }
}

/// Whether `array` is a whole float32 NumPy array as relbert writes it (its length what its
/// header's shape says) with as many rows as `list` has pairs: an array and the pair list
/// written with it, complete.
pub fn npy_rows_match_list(array: &Path, list: &Path) -> bool {
    let whole = || {
        let rows = pair_lines(list)?;
        let (shape, data_start) = npy_f32_shape(array)?;
        let len = std::fs::symlink_metadata(array).ok()?.len();
        let expected = (shape.0 as u64)
            .checked_mul(shape.1 as u64)?
            .checked_mul(4)?
            .checked_add(data_start)?;
        Some(shape.0 == rows && len == expected)
    };
    whole().unwrap_or(false)
}

/// The pairs in a pair list: its lines after the mark (relbert ends every line with `\n`).
fn pair_lines(list: &Path) -> Option<usize> {
    let mut f = std::fs::File::open(list).ok()?;
    let mut buf = vec![0u8; 1 << 16];
    let mut lines = 0usize;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
    }
    lines.checked_sub(1)
}

/// The shape of a little-endian float32 C-order NumPy array in format version 1 (what relbert
/// writes), and where its data starts; `None` for anything else.
fn npy_f32_shape(array: &Path) -> Option<((usize, usize), u64)> {
    let mut f = std::fs::File::open(array).ok()?;
    let mut pre = [0u8; 10];
    f.read_exact(&mut pre).ok()?;
    if &pre[..8] != b"\x93NUMPY\x01\x00" {
        return None;
    }
    let hlen = u16::from_le_bytes([pre[8], pre[9]]) as usize;
    let mut dict = vec![0u8; hlen];
    f.read_exact(&mut dict).ok()?;
    let dict = std::str::from_utf8(&dict).ok()?;
    if !dict.contains("'descr': '<f4'") || !dict.contains("'fortran_order': False") {
        return None;
    }
    let shape = dict.split_once("'shape': (")?.1.split_once(')')?.0;
    let (rows, cols) = shape.split_once(',')?;
    let shape = (rows.trim().parse().ok()?, cols.trim().parse().ok()?);
    Some((shape, 10 + hlen as u64))
}

/// Refuses to replace the pair list of the `.npy` output `array` unless `force` and it is
/// relbert's ([`check_replaceable`]); without `force`, what a run killed between the two
/// renames left is redone as the run's own: the list naming `array`, no `array`, and the
/// array's temporary file ([`temp_path`]), synced but not yet renamed (the list goes into
/// place first, [`crate::embed::Sink::commit`]), whole and of the list's rows
/// ([`npy_rows_match_list`]). Without that temporary file the list is not a killed run's: its
/// array was moved away or removed, and the user may still want the list ("exists; pass
/// --force"); nor with a temporary array not whole, which a run killed while writing left.
/// A list `relbert pairs mine` wrote there is named for what it is
/// ([`Error::MinedPairListBeside`], with a name that avoids it) rather than as "not a pair
/// list written by relbert" (found by an audit). `embed` and `index export` both check
/// through this.
pub fn check_sidecar_replaceable(array: &Path, force: bool) -> Result<()> {
    let list = pairs_sidecar(array);
    // `symlink_metadata`: a link at `array`, even a dangling one, is something there.
    let temp = temp_path(array);
    let orphan = std::fs::symlink_metadata(array).is_err()
        && std::fs::symlink_metadata(&temp).is_ok_and(|m| m.is_file())
        && sidecar_is_own(array)
        && npy_rows_match_list(&temp, &list);
    match check_replaceable(&list, force || orphan, OutputKind::Sidecar) {
        Err(Error::NotOurs { .. }) if recognise_output(&list, OutputKind::MinedPairs).is_ok() => {
            let stem = array.file_stem().map(|s| s.to_string_lossy().into_owned());
            let instead = array.with_file_name(format!(
                "{}-vectors.npy",
                stem.as_deref().unwrap_or("pairs")
            ));
            Err(Error::MinedPairListBeside {
                path: list,
                instead,
            })
        }
        checked => checked,
    }
}

/// A failed write to standard output, as an error naming it ([`crate::embed::STANDARD_OUTPUT`]):
/// a full disk under `> file` is reported like a file's failure. (A standard output closed
/// at the start, `>&-`, is not seen: Rust's runtime opens `/dev/null` on a closed descriptor
/// 0, 1 or 2 before `main`, so the writes succeed and go nowhere, as under `> /dev/null`.)
/// (A reader that went away, `| head`, ends the process quietly by SIGPIPE before any write
/// returns, as in the Unix tools: the binary restores SIGPIPE's default action; a run that
/// holds work files ignores SIGPIPE meanwhile, so that such a write returns this error, the
/// run cleans up, and the binary then ends it with SIGPIPE's status.)
pub fn stdout_error(err: std::io::Error) -> Error {
    Error::io(crate::embed::STANDARD_OUTPUT, err)
}

/// Writes `text` and a newline to standard output and flushes it; a failure is
/// [`stdout_error`]. `println!` panicked on one instead ("failed printing to stdout", exit
/// status 101) when standard output was a full disk.
pub fn print_line(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// Writes a line to standard error as [`eprint_line`] does, formatted like `eprintln!`:
/// `relbert::say!("{n} pairs")`. Use it, not `eprintln!`, for every message of the binary;
/// [`eprint_line`] says why.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::eprint_line(&::std::format!($($arg)*))
    };
}

/// Writes `line` and a newline to standard error, and goes on whatever happens to the write.
///
/// `eprintln!` panics when the write fails ("failed printing to stderr", exit status 101):
/// with `2>/dev/full` a progress line or the final `error:` line killed a run whose work was
/// fine, or turned an error's status 1 into 101. And the binary restores SIGPIPE's default
/// action (for `| head` on standard output), so standard error on a pipe whose reader has
/// gone (`2> >(head -1)`, a log collector that died) killed the run at its next message.
/// Messages on standard error are for people; when none can be written they are lost, and
/// the run's work and exit status are what they would have been. The line goes out in one
/// write, so lines from different threads do not interleave.
pub fn eprint_line(line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let _ = Stderr.write_all(text.as_bytes());
}

/// Standard error, whose writes never raise SIGPIPE: a reader that has gone shows as an
/// error of kind [`std::io::ErrorKind::BrokenPipe`] instead of ending the process (the
/// binary's SIGPIPE action is the default one, for standard output). The writer of the
/// binary's log lines (`tracing`), and of [`eprint_line`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        without_sigpipe(|| std::io::stderr().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        without_sigpipe(|| std::io::stderr().lock().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Runs `write` with SIGPIPE blocked in this thread. A write to a pipe without a reader
/// raises SIGPIPE on the writing thread; blocked, it stays pending there, and it is taken
/// off (`sigtimedwait`, not waiting) before the old mask comes back, so it never acts. One
/// that was pending before is left as it was.
#[cfg(unix)]
fn without_sigpipe<T>(write: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    // SAFETY: the sigset_t values are initialised by sigemptyset before any other use, and
    // the calls only change this thread's mask and take a signal pending on it.
    unsafe {
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut old);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old) != 0 {
            return write();
        }
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pending);
        let was_pending =
            libc::sigpending(&mut pending) == 0 && libc::sigismember(&pending, libc::SIGPIPE) == 1;
        let result = write();
        if !was_pending && matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe) {
            let now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            while libc::sigtimedwait(&pipe, std::ptr::null_mut(), &now) == -1
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
            }
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}

/// Elsewhere there is no SIGPIPE to keep off.
#[cfg(not(unix))]
fn without_sigpipe<T>(write: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    write()
}

/// Writes `value` as pretty JSON with a final newline (model-directory files such as
/// `training_config.json`, `metrics.json`, `averaged_from.json`).
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: format!("cannot serialise: {e}"),
    })?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

/// A tag no earlier call of this process gave, for names that must not meet: the time in
/// nanoseconds since the epoch, made larger than the last one given.
fn unique_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    LAST.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
        Some(now.max(last + 1))
    })
    .map_or(now, |last| now.max(last + 1))
}

/// A sibling path of `out` named `.<name>.<tag>`, the name's bytes as they are (a lossy name
/// gave `a\xff.npy` and `a\xfe.npy` one temporary file, which their two locks, on the exact
/// names, did not guard).
pub(crate) fn sibling_named(out: &Path, tag: &str) -> PathBuf {
    let mut file = std::ffi::OsString::from(".");
    file.push(out.file_name().unwrap_or(std::ffi::OsStr::new("out")));
    file.push(".");
    file.push(tag);
    match out.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p.join(file),
        None => PathBuf::from(file),
    }
}

/// What [`write_dir_atomically`] takes its leftovers `.<name>.tmp` and `.<name>.old` for (as
/// [`Error::NotOurs`] words it: "does not look like … written by relbert").
const MODEL_LEFTOVER: &str = "a temporary model directory";

/// Checks the leftovers of killed runs beside the model directory `out` (`.<name>.tmp` and
/// `.<name>.old`, which [`write_dir_atomically`] removes when they hold only model files):
/// anything else under those names is not relbert's, and the run that would meet it only
/// when it writes `out` (after a whole epoch of training, or all the averaging) is refused
/// before the work instead.
pub fn check_model_leftovers(out: &Path) -> Result<()> {
    for leftover in [sibling_named(out, "tmp"), sibling_named(out, "old")] {
        if std::fs::symlink_metadata(&leftover).is_ok() {
            recognise_model_leftover(&leftover, MODEL_LEFTOVER)?;
        }
    }
    Ok(())
}

/// How `write_dir_atomically` treats a directory at `out` when it puts the new one in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replace {
    /// Nothing may be replaced (no `--force`): an `out` that appeared during the run stays,
    /// and the new model is left in its temporary directory.
    Never,
    /// A model directory relbert wrote (`--force`) may be replaced, if it still is one when
    /// the new one is put in place.
    OwnModel,
    /// This run's own earlier model, which [`write_dir_atomically`] returned the identity of,
    /// may be replaced, if `out` is still that directory (another relbert model moved there
    /// during the run is someone's, and stays: [`Error::NoLongerOurs`]) and still holds only
    /// model files.
    Same(DirId),
}

/// Which directory a path named when it was looked at (its device and inode): a model
/// directory [`write_dir_atomically`] placed, told apart from one put at the same path later.
///
/// The identity [`write_dir_atomically`] returns also holds the directory open: an inode
/// number is only an identity while the inode lives, and ext4 often gives a directory made
/// at `out` just after the user removed the run's own the freed number again, so a run
/// that held only the number took the user's directory for its own (and replaced it, or
/// wrote its metrics.json). An open directory is not freed, so its number is not reused
/// while the run holds it. Identities compare by device and inode only.
#[derive(Debug, Clone)]
pub struct DirId {
    dev: u64,
    ino: u64,
    /// The directory, held open (shared by clones) so that its inode is not freed and its
    /// number given to another; `None` for an identity only looked at ([`DirId::of`]).
    _held: Option<std::sync::Arc<std::fs::File>>,
}

impl PartialEq for DirId {
    fn eq(&self, other: &Self) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}

impl Eq for DirId {}

impl DirId {
    /// The identity of what `path` names now (not following a link at `path`), or `None`
    /// when nothing is there.
    pub fn of(path: &Path) -> Option<DirId> {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::symlink_metadata(path).ok()?;
        Some(DirId {
            dev: md.dev(),
            ino: md.ino(),
            _held: None,
        })
    }

    /// The identity of the directory `path` names, held open as long as the identity (or
    /// a clone of it) lives, so that no directory made later can have it. A link at `path`
    /// is not followed.
    pub fn held(path: &Path) -> std::io::Result<DirId> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)?;
        // The identity of what was opened, not of what the path names a moment later.
        let md = dir.metadata()?;
        Ok(DirId {
            dev: md.dev(),
            ino: md.ino(),
            _held: Some(std::sync::Arc::new(dir)),
        })
    }

    /// Whether `path` still names this directory.
    pub fn is_at(&self, path: &Path) -> bool {
        DirId::of(path).is_some_and(|id| id == *self)
    }
}

impl Replace {
    /// [`Replace::OwnModel`] when `allowed`, else [`Replace::Never`].
    pub fn when(allowed: bool) -> Self {
        if allowed {
            Replace::OwnModel
        } else {
            Replace::Never
        }
    }
}

/// Fills a temporary directory beside `out` (`.<name>.tmp`) with `fill`, fsyncs it and its
/// files, then puts it in place of `out`, so `out` is never half-written, not even after a
/// power loss: an `out` that `replace` allows replacing and that is (still) a model directory
/// relbert wrote ([`recognise_model_dir`], checked again just before: the run may have taken
/// hours, and the user may have put notes there) is exchanged with it in one atomic rename
/// where the file system can (else moved aside to `.<name>.old` first), and then removed.
/// Anything else at `out` then, even a directory that appeared during the run (an empty one
/// too, which a plain rename would replace silently), is left as it is, and the error says
/// that the new model is in `.<name>.tmp`.
///
/// An error means `out` is as it was (the one exception, a move aside whose second rename
/// failed, says where both models are). A `fill` or sync that fails removes `.<name>.tmp`
/// (a partial model); only the errors that name it as where the finished model is keep it. Once the new model is in place the call succeeds:
/// what can still go wrong after (syncing the parent directory, an old model that a file
/// was put into just then and so is left aside, its removal) is warned about. It returns
/// the identity of the placed directory, for [`Replace::Same`].
///
/// The names are fixed, not tagged with the pid: callers hold the output's writer lock, so a
/// `.<name>.tmp` or `.<name>.old` found at the start that holds only model files is what a
/// killed run left, and is removed (kills do not pile up directories); anything else of
/// those names is not relbert's, and is refused instead ([`check_model_leftovers`]).
pub fn write_dir_atomically(
    out: &Path,
    replace: Replace,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<DirId> {
    write_dir_through(&MODEL_DIRS, out, replace, fill)
}

/// [`write_dir_atomically`], making its temporary directory through `gate`.
fn write_dir_through(
    gate: &DirGate,
    out: &Path,
    replace: Replace,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<DirId> {
    let tmp = sibling_named(out, "tmp");
    let old = sibling_named(out, "old");
    check_model_leftovers(out)?;
    for leftover in [&tmp, &old] {
        if std::fs::symlink_metadata(leftover).is_ok() {
            std::fs::remove_dir_all(leftover).map_err(|e| Error::io(leftover, e))?;
        }
    }
    // Not `create_dir_all`: the folder of `out` is the caller's to have (it holds the lock
    // file), and one deleted meanwhile is not made again.
    gate.make(&tmp)?;
    // Renames keep the inode: this is `out`'s identity once the model is in place. Taken
    // before the model is written, so a failure to take it removes nothing finished.
    let filled = DirId::held(&tmp)
        .map_err(|e| Error::io(&tmp, e))
        .and_then(|id| fill(&tmp).and_then(|()| sync_model_dir(&tmp)).map(|()| id));
    let placed = match filled {
        Ok(placed) => placed,
        Err(e) => {
            // A partial model (a full disk: as large as the model) is no use to anyone, and
            // would hold the space a retry needs. Only the errors below, which keep a
            // finished model in `.<name>.tmp`, leave it.
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let kept = |why: String| Error::NotOurs {
        path: out.to_path_buf(),
        what: "a model directory",
        why: format!(
            "{why}; it was checked again when this run's model was ready, and is left as it \
             is: the new model is in {} (move it away before another run to this output, \
             which removes it)",
            tmp.display()
        ),
    };
    if std::fs::symlink_metadata(out).is_err() {
        match rename_noreplace(&tmp, out) {
            Ok(()) => {
                warn_after_placing(out, sync_parent(out));
                return Ok(placed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(appeared(out, "model", &[&tmp]));
            }
            Err(e) => return Err(Error::io(out, e)),
        }
    }
    let own = match replace {
        Replace::Never => return Err(appeared(out, "model", &[&tmp])),
        Replace::Same(id) if !id.is_at(out) => {
            return Err(Error::NoLongerOurs {
                path: out.to_path_buf(),
                kept: tmp,
            })
        }
        Replace::Same(id) => Some(id),
        Replace::OwnModel => None,
    };
    match recognise_model_dir(out) {
        Ok(()) => {}
        Err(Error::NotOurs { why, .. }) => return Err(kept(why)),
        Err(e) => return Err(kept(e.to_string())),
    }
    // Where `out` ends up after the exchange (or the move aside) before it is removed.
    let replaced = if relbert_index::swap_dirs(&tmp, out).is_ok() {
        &tmp
    } else {
        std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
        if let Err(e) = rename_noreplace(&tmp, out) {
            return Err(Error::io(
                out,
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "{e}: the model that was here was moved aside to {} and the new \
                         model is in {}; move back the one you want (the next run to this \
                         output removes both)",
                        old.display(),
                        tmp.display()
                    ),
                ),
            ));
        }
        &old
    };
    warn_after_placing(out, sync_parent(out));
    // What was moved aside is this run's own earlier model only if `out` did not change in
    // the moment since it was checked: anything else stays where it now is.
    if own.is_some_and(|id| !id.is_at(replaced)) {
        // Not under `.<name>.tmp` or `.<name>.old`: the next save of this very run removes
        // a model directory left at those names.
        let aside = sibling_named(
            out,
            &format!("kept-{}-{}", std::process::id(), unique_tag()),
        );
        let at = if rename_noreplace(replaced, &aside).is_ok() {
            aside
        } else {
            replaced.to_path_buf()
        };
        tracing::warn!(
            "the new model is in {}, but what it replaced, now in {}, is not the model this \
             run saved there (it was put in its place just as the new model was), so it is \
             kept there: move it back where you want it",
            out.display(),
            at.display()
        );
        return Ok(placed);
    }
    // Checked once more as it is removed: a file put into the old model in the moment
    // between the check above and the exchange stays, with the model beside it.
    if let Err(why) = only_model_files(replaced) {
        tracing::warn!(
            "the new model is in {}, but the model it replaced, now in {}, is left there: \
             {why}, put into it just as it was replaced (move it away before another run to \
             this output)",
            out.display(),
            replaced.display()
        );
        return Ok(placed);
    }
    if let Err(e) = std::fs::remove_dir_all(replaced) {
        tracing::warn!(
            "the new model is in {}, but the model it replaced could not be removed from {}: \
             {e}",
            out.display(),
            replaced.display()
        );
    }
    Ok(placed)
}

/// The gate [`write_dir_atomically`] passes to make its temporary directory, which
/// [`stop_model_dirs`] closes.
static MODEL_DIRS: DirGate = DirGate(
    std::sync::RwLock::new(()),
    std::sync::atomic::AtomicBool::new(false),
);

/// Stops every thread of this process, for the rest of its life, from making the temporary
/// directory of [`write_dir_atomically`], which then fails and makes nothing; waits for one
/// being made. For the reaction to a signal that removes a run's temporary model directory
/// (named to it before the write starts) and then ends the process: the directory it removes
/// is not made after the removal, before the exit (found by a review: `average` stopped just
/// as its write started could leave a partial `.<name>.tmp` of the model's size). Not for
/// a `signal(2)` handler: it may wait.
pub fn stop_model_dirs() {
    MODEL_DIRS.close();
}

/// A gate for making directories: passed, shared, to make one; closed for good, exclusively,
/// by [`DirGate::close`], which waits for a directory being made. The flag says it is
/// closed: a second close returns at once (waiting for the write lock the first one never
/// gives back, it waited for ever).
struct DirGate(std::sync::RwLock<()>, std::sync::atomic::AtomicBool);

impl DirGate {
    /// Makes the directory `dir` (not the folders above it) while the gate is open; once it
    /// is closed, or being closed, fails without making it.
    fn make(&self, dir: &Path) -> Result<()> {
        let _pass = match self.0.try_read() {
            Ok(pass) => pass,
            // Nothing panics holding it; a poisoned gate is as open as it was.
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(Error::io(
                    dir,
                    std::io::Error::other("not made: the run is being stopped by a signal"),
                ))
            }
        };
        std::fs::create_dir(dir).map_err(|e| Error::io(dir, e))
    }

    /// Closes the gate for the rest of the process, once no directory is being made
    /// through it.
    fn close(&self) {
        if self.1.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let closed = self.0.write().unwrap_or_else(|p| p.into_inner());
        // Never reopened: the process ends with the gate closed.
        std::mem::forget(closed);
    }
}

/// Warns about a failure after an output was put in place (syncing its directory): the
/// output is there and whole, so the run goes on, but a power loss could undo the rename.
fn warn_after_placing(out: &Path, synced: Result<()>) {
    if let Err(e) = synced {
        tracing::warn!(
            "{} is in place, but its directory could not be synced ({e}): a power loss now \
             could undo the rename",
            out.display()
        );
    }
}

/// The error of a commit that found something at `target` it may not replace (it appeared
/// during the run, or was there without `--force`): names `target`, which is left as it is,
/// and where the new `what` (output, model) was kept, which must not be lost.
pub(crate) fn appeared(target: &Path, what: &str, kept: &[&Path]) -> Error {
    let kept = kept
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" and ");
    Error::io(
        target,
        std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "it was created while this run was writing the {what} there (it was not there \
                 when the run started, or --force was not given), so it is left as it is and \
                 nothing was put in its place; what this run wrote is in {kept} (move it away \
                 before another run to this output, which removes it)"
            ),
        ),
    )
}

/// Renames `from` to `to` only if nothing is at `to`, not even an empty directory or a
/// dangling link (`rename` would replace those silently), failing with
/// [`std::io::ErrorKind::AlreadyExists`] then: one `renameat2(RENAME_NOREPLACE)` on Linux, as
/// [`relbert_index::build::exchange`] exchanges. Where the file system or the kernel does not
/// offer it (`EINVAL`, `ENOSYS`), `rename_noreplace_fallback` gets the same result
/// another way.
pub fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let Err(err) = relbert_index::build::renameat2(from, to, libc::RENAME_NOREPLACE) else {
            return Ok(());
        };
        if !matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return Err(err);
        }
    }
    rename_noreplace_fallback(from, to)
}

/// [`rename_noreplace`] where `renameat2` is not offered, still without replacing anything
/// that appears at `to` meanwhile: a directory is renamed over an empty placeholder made at
/// `to` first (`mkdir` fails on anything there; `rename` fails with `ENOTEMPTY` on a
/// placeholder filled meanwhile), a file is linked to `to` (`link` fails on anything there)
/// and then unlinked from `from`. Only a file system without hard links falls back to
/// looking at `to` before a plain rename.
///
/// A kill between the placeholder's `mkdir` and the rename leaves that empty directory at
/// `to` (only here: `renameat2` has no such moment); the next run finds an empty directory
/// where its output goes, which is not relbert's to remove. Once a file is linked at `to`
/// it is in place: an unlink of `from` that fails then is warned about (both names are the
/// one file), not reported as a failure to place it.
fn rename_noreplace_fallback(from: &Path, to: &Path) -> std::io::Result<()> {
    let exists = || std::io::Error::from(std::io::ErrorKind::AlreadyExists);
    let md = std::fs::symlink_metadata(from)?;
    if md.is_dir() {
        match std::fs::create_dir(to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists()),
            Err(e) => return Err(e),
        }
        in_fallback_window(FallbackStep::Placing, to);
        return match std::fs::rename(from, to) {
            Ok(()) => Ok(()),
            // Filled meanwhile: someone's now, left as it is.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                Err(exists())
            }
            Err(e) => {
                // The placeholder is this call's own, empty one (`remove_dir` removes only
                // an empty directory).
                let _ = std::fs::remove_dir(to);
                Err(e)
            }
        };
    }
    in_fallback_window(FallbackStep::Placing, to);
    match std::fs::hard_link(from, to) {
        Ok(()) => {
            in_fallback_window(FallbackStep::Unlinking, from);
            if let Err(e) = std::fs::remove_file(from) {
                tracing::warn!(
                    "{} is in place, but its temporary name {} (the same file) could not be \
                     removed: {e}",
                    to.display(),
                    from.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPERM) | Some(libc::EOPNOTSUPP) | Some(libc::EXDEV)
            ) =>
        {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(exists());
            }
            std::fs::rename(from, to)
        }
        Err(e) => Err(e),
    }
}

/// The moments of [`rename_noreplace_fallback`] in which someone else may act, for the tests
/// to act in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FallbackStep {
    /// Nothing was at `to` (or the placeholder was just made there), and the file or the
    /// directory is about to be put there.
    Placing,
    /// The file is linked at `to`, and its name `from` is about to be removed.
    Unlinking,
}

/// A test's action at a step of the rename fallback.
#[cfg(test)]
type WindowAct = Box<dyn FnMut(FallbackStep, &Path)>;

#[cfg(test)]
thread_local! {
    /// What a test does at a [`FallbackStep`] of this thread's fallback, with the path the
    /// step is about.
    static FALLBACK_WINDOW: std::cell::RefCell<Option<WindowAct>> =
        std::cell::RefCell::new(None);
}

/// Runs the test's action for `step`, if it set one.
#[cfg(test)]
fn in_fallback_window(step: FallbackStep, path: &Path) {
    FALLBACK_WINDOW.with(|hook| {
        if let Some(act) = hook.borrow_mut().as_mut() {
            act(step, path);
        }
    });
}

/// Outside the tests, nobody acts in between.
#[cfg(not(test))]
fn in_fallback_window(_step: FallbackStep, _path: &Path) {}

/// Fsyncs the directory `path` is in, so a rename or creation of `path` survives a power loss.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_path(parent)
}

/// Fsyncs a file or a directory (opened for reading: a directory cannot be opened to write).
pub(crate) fn sync_path(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// Fsyncs every regular file in the model directory `dir` and then `dir` itself, before it
/// is renamed into place: the weights, configs and records were written without (the
/// weights by the `safetensors` crate, the JSON by [`write_json`], copies by `fs::copy`), and
/// a power loss after the rename could leave a complete-looking model with empty files where
/// the old model was already removed.
fn sync_model_dir(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            sync_path(&entry.path())?;
        }
    }
    sync_path(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review of the signal threads (5): a signal's reaction that removes a run's temporary
    /// model directory, named to it before the write makes it, could run just before the
    /// write made it, and the exit then left it, partly written. The reaction now closes the
    /// gate the write makes it through ([`stop_model_dirs`]; here a gate of the test's own,
    /// the process's closes for good): a write not yet past it makes nothing, neither
    /// `.<name>.tmp` nor the model, and writes nothing into it.
    #[test]
    fn a_closed_gate_makes_no_model_directory() {
        let dir = tempfile::tempdir().unwrap();
        let gate = DirGate(
            std::sync::RwLock::new(()),
            std::sync::atomic::AtomicBool::new(false),
        );
        let fill =
            |d: &Path| std::fs::write(d.join("config.json"), "{}").map_err(|e| Error::io(d, e));
        let open = dir.path().join("open");
        write_dir_through(&gate, &open, Replace::Never, fill).unwrap();
        assert!(open.join("config.json").is_file());
        gate.close();
        // A second close returns (it waited for ever on the first one's write lock).
        gate.close();
        let out = dir.path().join("m");
        let filled = std::cell::Cell::new(false);
        let err = write_dir_through(&gate, &out, Replace::Never, |d| {
            filled.set(true);
            fill(d)
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("being stopped by a signal"), "{err}");
        assert!(!filled.get());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["open"]);
    }

    #[test]
    fn only_relbert_s_model_directories_are_replaced_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model");
        let write = |d: &Path| {
            std::fs::create_dir_all(d).unwrap();
            for f in ["config.json", "model.safetensors", "training_config.json"] {
                std::fs::write(d.join(f), "{}").unwrap();
            }
        };
        write(&out);
        recognise_model_dir(&out).unwrap();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let err = recognise_model_dir(&out).unwrap_err().to_string();
        assert!(err.contains("notes.txt"), "{err}");

        // A killed run's leftover is removed; a user's directory of that name is not.
        let tmp = sibling_named(&out, "tmp");
        write(&tmp);
        // A whole model: the second write below replaces the first's, which must be relbert's.
        let fill = |d: &Path| {
            write(d);
            Ok(())
        };
        write_dir_atomically(&dir.path().join("other"), Replace::OwnModel, fill).unwrap();
        let other_tmp = sibling_named(&dir.path().join("other"), "tmp");
        std::fs::create_dir(&other_tmp).unwrap();
        std::fs::write(other_tmp.join("config.json"), "{}").unwrap();
        // The weights' temporary file of a run killed while saving (crash_consistency hit it).
        std::fs::write(other_tmp.join(".tmpDhJ3oo"), "partial").unwrap();
        write_dir_atomically(&dir.path().join("other"), Replace::OwnModel, fill).unwrap();
        assert!(!other_tmp.exists());
        assert!(
            !is_weights_temp(".tmp")
                && !is_weights_temp(".tmpDhJ3o/")
                && !is_weights_temp("tmpDhJ3oo0")
        );
        std::fs::write(tmp.join("thesis.tex"), "mine").unwrap();
        let err = write_dir_atomically(&out, Replace::OwnModel, fill)
            .unwrap_err()
            .to_string();
        assert!(err.contains("thesis.tex"), "{err}");
        assert_eq!(
            std::fs::read_to_string(tmp.join("thesis.tex")).unwrap(),
            "mine"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("notes.txt")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn the_temporary_file_is_never_written_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.npy");
        let precious = dir.path().join("precious.txt");
        std::fs::write(&precious, "keep me").unwrap();
        std::os::unix::fs::symlink(&precious, temp_path(&target)).unwrap();
        let err = AtomicFile::create(&target, false).err().unwrap();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
        // A temporary file a killed run left is replaced.
        std::fs::remove_file(temp_path(&target)).unwrap();
        std::fs::write(temp_path(&target), "half an output").unwrap();
        let mut f = AtomicFile::create(&target, false).unwrap();
        f.writer().write_all(b"done").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "done");
        assert!(!temp_path(&target).exists());
        // A directory of that name is not relbert's.
        std::fs::create_dir(temp_path(&target)).unwrap();
        let err = AtomicFile::create(&target, true).err().unwrap();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(temp_path(&target).is_dir());
    }

    #[test]
    fn a_user_s_file_under_the_old_temporary_name_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vectors.npy");
        // `.<name>.tmp` was the temporary name, truncated, written and removed by a run.
        let draft = dir.path().join(".vectors.npy.tmp");
        std::fs::write(&draft, "draft\n").unwrap();
        assert_ne!(temp_path(&target), draft);
        let mut f = AtomicFile::create(&target, false).unwrap();
        f.writer().write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(&draft).unwrap(), "draft\n");
        // A file that fails (dropped or discarded) leaves no temporary file either.
        let f = AtomicFile::create(&target, true).unwrap();
        assert!(temp_path(&target).is_file());
        drop(f);
        assert!(!temp_path(&target).exists());
        assert_eq!(std::fs::read_to_string(&draft).unwrap(), "draft\n");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    /// Audit (s20): the pair list's and the temporary file's names were made lossily, so
    /// `a\xff.npy` and `a\xfe.npy` shared both. They keep the output's bytes.
    #[test]
    fn names_beside_an_output_keep_its_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let p = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
        assert_eq!(
            pairs_sidecar(&p(b"d\xff/a\xff.NPY")),
            p(b"d\xff/a\xff.pairs.tsv")
        );
        assert_eq!(pairs_sidecar(&p(b"a\xfe")), p(b"a\xfe.pairs.tsv"));
        assert_eq!(
            temp_path(&p(b"d/a\xff.npy")),
            p(b"d/.a\xff.npy.relbert.tmp")
        );
        assert_ne!(temp_path(&p(b"a\xff.npy")), temp_path(&p(b"a\xfe.npy")));
    }

    /// A word2vec file as relbert writes one: `n` records of `d` numbers, text or binary,
    /// keys with odd characters among them.
    fn word2vec(n: usize, d: usize, binary: bool) -> Vec<u8> {
        let keys = [
            // A zero-width space is no white space: relbert keeps it in a key.
            "ice\u{200b}cream__sweet",
            "a___b",
            "\u{1}x__\u{e9}t\u{e9}",
            "new_york__usa",
        ];
        let mut f = format!("{n} {d}\n").into_bytes();
        for i in 0..n {
            f.extend_from_slice(keys[i % keys.len()].as_bytes());
            for j in 0..d {
                // Values whose bytes hold spaces and newlines (0x20, 0x0a) in binary.
                let x = f32::from_bits(0x0a20_0a20 + (i * d + j) as u32);
                if binary {
                    if j == 0 {
                        f.push(b' ');
                    }
                    f.extend_from_slice(&x.to_le_bytes());
                } else {
                    f.extend_from_slice(format!(" {x}").as_bytes());
                }
            }
            f.push(b'\n');
        }
        f
    }

    /// Review R11 of 745206c: with D 1 or 2 one line of an edge list is a text record, and
    /// only the first record was checked, so `--force` replaced `5 1`, `1 2`, `2 3`. A file
    /// read whole must hold exactly N records that fit, in one mode, and nothing after them;
    /// one read in part (longer than what is read) every complete record read. Files as
    /// relbert writes them pass, read whole or cut anywhere after their first record.
    #[test]
    fn word2vec_files_are_recognised_by_all_their_records() {
        let whole = |f: &[u8]| looks_like_word2vec(f, f.len() as u64);
        let refused: [&[u8]; 9] = [
            b"5 1\n1 2\n2 3\n",
            b"4 2\n0 1 0.5\n1 2 0.3\n",
            b"3 1\n1 2\n2 3\n3 1\n4 1\n",
            b"1 1\na 0.5\nmore",
            b"2 1\na 0.5\nb 0.5",
            b"2 1\na 0.5\n\n",
            b"0 2\n\n",
            b"1 2\na 1\n",
            b"2 3\n",
        ];
        for f in refused {
            assert!(!whole(f), "{:?}", String::from_utf8_lossy(f));
        }
        // One record text and the next binary is neither.
        let mut mixed = b"2 1\na 0.5\n".to_vec();
        mixed.extend_from_slice(b"b \0\0\0\x3f\n");
        assert!(!whole(&mixed));
        assert!(whole(b"0 8\n"));
        // Read in part, a record that does not fit is refused, and so are N complete
        // records (the file goes on after them).
        let edges = b"9 1\n1 2\n2 3 4\n3";
        assert!(!looks_like_word2vec(edges, 1 << 30));
        let two = b"2 1\na__b 1\nc__d 2\n";
        assert!(whole(two) && !looks_like_word2vec(two, 1 << 30));
        // Audit I1 (s23): the layout of any word2vec file (GloVe's, fastText's), keyed by
        // words, or by a key relbert never writes (white space in it), is not relbert's.
        for f in [
            &b"2 1\nthe 1\ncat 2\n"[..],
            b"2 1\na__b 1\ncat 2\n",
            b"1 1\na__b\xc2\xa0c 1\n",
            b"1 1\nthe \0\0\0\x3f\n",
            b"1 1\n\xff__\xfe \0\0\0\x3f\n",
        ] {
            assert!(!whole(f), "{:?}", String::from_utf8_lossy(f));
        }
        assert!(whole(b"1 1\na__b \0\0\0\x3f\n"));
        for binary in [false, true] {
            for d in [1, 2, 8] {
                for n in [1, 2, 50] {
                    let f = word2vec(n, d, binary);
                    assert!(whole(&f), "n {n} d {d} binary {binary}");
                    // Cut anywhere after the first record, as a longer file's 4 MiB are.
                    let header = format!("{n} {d}\n").len();
                    let one = word2vec(1, d, binary);
                    let record = &one[format!("1 {d}\n").len()..];
                    for cut in header + record.len()..f.len() {
                        assert_eq!(
                            looks_like_word2vec(&f[..cut], f.len() as u64),
                            n > 1,
                            "n {n} d {d} binary {binary} cut {cut}"
                        );
                    }
                    // A record more, or less, than the counts say is not relbert's.
                    assert!(!whole(&f[..f.len() - 1]));
                    let mut more = f.clone();
                    more.extend_from_slice(record);
                    assert!(!whole(&more), "n {n} d {d} binary {binary}");
                }
            }
        }
    }

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        let h = npy_header(3, 384);
        assert_eq!(h.len() % 64, 0);
        assert_eq!(&h[..6], b"\x93NUMPY");
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(text.contains("'shape': (3, 384)"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn atomic_file_refuses_existing_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        std::fs::write(&p, "keep").unwrap();
        assert!(matches!(
            AtomicFile::create(&p, false),
            Err(Error::Exists { .. })
        ));
        let mut f = AtomicFile::create(&p, true).unwrap();
        f.writer().write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
    }

    /// A model directory relbert could write, with `extra` files beside the model.
    fn model_dir(d: &Path, extra: &[&str]) {
        std::fs::create_dir_all(d).unwrap();
        for f in ["config.json", "model.safetensors", "training_config.json"]
            .iter()
            .chain(extra)
        {
            std::fs::write(d.join(f), "{}").unwrap();
        }
    }

    /// Audit A1 (89816bc): a directory the user made at `--out` while `average` ran (no
    /// --force) was exchanged with the new model and removed, notes and all. Whatever appears
    /// at `out` during the run stays, an empty directory too (a plain rename would replace
    /// it), and the new model is kept in `.<name>.tmp`.
    #[test]
    fn a_directory_that_appears_at_the_output_during_the_run_stays() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("soup");
        let tmp = sibling_named(&out, "tmp");
        for notes in [true, false] {
            let err = write_dir_atomically(&out, Replace::Never, |d| {
                model_dir(d, &[]);
                std::fs::create_dir(&out).unwrap();
                if notes {
                    std::fs::write(out.join("notes.txt"), "my notes").unwrap();
                }
                Ok(())
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains(&tmp.display().to_string()), "{err}");
            if notes {
                assert_eq!(
                    std::fs::read_to_string(out.join("notes.txt")).unwrap(),
                    "my notes"
                );
            } else {
                assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "{err}");
            }
            assert!(tmp.join("model.safetensors").is_file(), "{err}");
            std::fs::remove_dir_all(&out).unwrap();
        }
        // A relbert model that appears is not replaced without --force either.
        let err = write_dir_atomically(&out, Replace::Never, |d| {
            model_dir(d, &["metrics.json"]);
            model_dir(&out, &[]);
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert!(!out.join("metrics.json").exists(), "{err}");
        assert!(tmp.join("metrics.json").is_file(), "{err}");
        // The next run clears the kept model (it said so) and writes its own.
        std::fs::remove_dir_all(&out).unwrap();
        write_dir_atomically(&out, Replace::Never, |d| {
            model_dir(d, &[]);
            Ok(())
        })
        .unwrap();
        assert!(out.join("model.safetensors").is_file() && !tmp.exists());
    }

    /// Audit A1: with --force, `out` was checked to be relbert's only at the start; notes the
    /// user put into it during the run went with it. It is checked again before the exchange.
    #[test]
    fn a_forced_output_changed_during_the_run_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model");
        let tmp = sibling_named(&out, "tmp");
        model_dir(&out, &[]);
        let err = write_dir_atomically(&out, Replace::OwnModel, |d| {
            model_dir(d, &["averaged_from.json"]);
            std::fs::write(out.join("notes.md"), "mine").unwrap();
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("notes.md"), "{err}");
        assert!(err.contains(&tmp.display().to_string()), "{err}");
        assert_eq!(
            std::fs::read_to_string(out.join("notes.md")).unwrap(),
            "mine"
        );
        assert!(tmp.join("averaged_from.json").is_file());
        // Still relbert's at the end: replaced, and nothing is left beside it.
        std::fs::remove_file(out.join("notes.md")).unwrap();
        write_dir_atomically(&out, Replace::OwnModel, |d| {
            model_dir(d, &["averaged_from.json"]);
            Ok(())
        })
        .unwrap();
        assert!(out.join("averaged_from.json").is_file());
        assert!(!tmp.exists() && !sibling_named(&out, "old").exists());
    }

    /// Audit B3: a user's `.<name>.tmp` beside `--out` was refused only when the model was
    /// written, after a whole epoch of training or all the averaging; `check_model_output`,
    /// which both run first, refuses it now, in words that read (they said "a model directory
    /// a killed run left written by relbert").
    #[test]
    fn a_foreign_leftover_beside_the_output_is_refused_before_the_work() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("zg");
        for tag in ["tmp", "old"] {
            let leftover = sibling_named(&out, tag);
            std::fs::create_dir(&leftover).unwrap();
            std::fs::write(leftover.join("notes.txt"), "mine").unwrap();
            for force in [false, true] {
                let err = crate::training::check_model_output(&out, force)
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("notes.txt"), "{err}");
                assert!(
                    err.contains(
                        "does not look like a temporary model directory written by relbert"
                    ),
                    "{err}"
                );
            }
            assert_eq!(
                std::fs::read_to_string(leftover.join("notes.txt")).unwrap(),
                "mine"
            );
            std::fs::remove_dir_all(&leftover).unwrap();
        }
        // A killed run's leftover is not refused (write_dir_atomically clears it).
        model_dir(&sibling_named(&out, "tmp"), &[]);
        crate::training::check_model_output(&out, false).unwrap();
    }

    /// Audit A2: a file created without --force was renamed over whatever appeared at its
    /// path during the run. It is kept, and so is the new output, under its temporary name.
    #[test]
    fn a_file_that_appears_at_the_output_during_the_run_stays() {
        let dir = tempfile::tempdir().unwrap();
        for force in [false, true] {
            let p = dir.path().join("out.jsonl");
            let mut f = AtomicFile::create(&p, force).unwrap();
            f.writer().write_all(b"new").unwrap();
            std::fs::write(&p, "theirs").unwrap();
            let err = f.commit().unwrap_err().to_string();
            assert!(err.contains(&temp_path(&p).display().to_string()), "{err}");
            assert_eq!(std::fs::read_to_string(&p).unwrap(), "theirs");
            assert_eq!(std::fs::read_to_string(temp_path(&p)).unwrap(), "new");
            std::fs::remove_file(&p).unwrap();
            // An empty directory that appears is not replaced either.
            let mut f = AtomicFile::create(&p, force).unwrap();
            std::fs::create_dir(&p).unwrap();
            f.writer().write_all(b"new").unwrap();
            assert!(f.commit().is_err());
            assert!(p.is_dir());
            std::fs::remove_dir(&p).unwrap();
        }
    }

    /// Audit A2, for an `.npy` array: its commit removed whatever was at the array's path
    /// before renaming, so a file that appeared there during the run was lost.
    #[test]
    fn an_array_that_appears_during_the_run_stays() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.npy");
        let mut sink = crate::embed::Sink::open(Format::Npy, Some(&p), 1, 2, false).unwrap();
        sink.write_pair("a", "b", None, &[1.0, 2.0], &mut std::io::sink())
            .unwrap();
        std::fs::write(&p, "theirs").unwrap();
        let err = sink.commit().unwrap_err().to_string();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "theirs", "{err}");
        assert!(temp_path(&p).is_file(), "{err}");
        assert!(temp_path(&pairs_sidecar(&p)).is_file(), "{err}");
        assert!(!pairs_sidecar(&p).exists(), "{err}");
    }

    /// Review R1 of d2d47d4: a model directory changed during the run is kept, and the new
    /// model with it in `.<name>.tmp`; the message did not say that the next run to the same
    /// output removes that, as the message of one that appeared does.
    #[test]
    fn a_kept_output_s_message_says_the_next_run_removes_the_new_model() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model");
        model_dir(&out, &[]);
        let err = write_dir_atomically(&out, Replace::OwnModel, |d| {
            model_dir(d, &[]);
            std::fs::write(out.join("notes.md"), "mine").unwrap();
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&sibling_named(&out, "tmp").display().to_string())
                && err.contains("before another run to this output, which removes it"),
            "{err}"
        );
    }

    /// Review R1 of d2d47d4: `Replace::Same` replaces only the directory whose identity the
    /// earlier write returned; another relbert model put at `out` stays, and so does the new
    /// model, in `.<name>.tmp`.
    #[test]
    fn only_the_directory_placed_earlier_is_replaced_as_the_run_s_own() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model");
        let first = write_dir_atomically(&out, Replace::Never, |d| {
            model_dir(d, &[]);
            Ok(())
        })
        .unwrap();
        assert!(first.is_at(&out));
        let second = write_dir_atomically(&out, Replace::Same(first.clone()), |d| {
            model_dir(d, &["metrics.json"]);
            Ok(())
        })
        .unwrap();
        assert!(second.is_at(&out) && second != first);
        assert!(out.join("metrics.json").is_file());
        // Another relbert model moved to `out`.
        std::fs::rename(&out, dir.path().join("ours")).unwrap();
        model_dir(&out, &["averaged_from.json"]);
        let err = write_dir_atomically(&out, Replace::Same(second), |d| {
            model_dir(d, &["epoch_metrics.json"]);
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("is no longer the model this run saved there (replaced or moved")
                && !err.contains("--force"),
            "{err}"
        );
        assert!(
            out.join("averaged_from.json").is_file() && !out.join("epoch_metrics.json").exists()
        );
        assert!(sibling_named(&out, "tmp")
            .join("epoch_metrics.json")
            .is_file());
    }

    /// Review R5 of 32d4121: the identity was only (device, inode), and ext4 gives a directory
    /// made where one was just removed its inode number again, so a directory the user made
    /// at `out` after removing the run's model was taken for the run's own (and replaced by
    /// the next better epoch). The identity holds the directory open: the number is not freed.
    #[test]
    fn a_directory_made_where_the_run_s_model_was_removed_is_not_the_run_s() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model");
        let mut id = write_dir_atomically(&out, Replace::Never, |d| {
            model_dir(d, &[]);
            Ok(())
        })
        .unwrap();
        // ext4 reuses the number at once, most times (tmpfs never does); a few tries.
        for _ in 0..8 {
            std::fs::remove_dir_all(&out).unwrap();
            model_dir(&out, &["notes.txt"]);
            assert!(!id.is_at(&out));
            let err = write_dir_atomically(&out, Replace::Same(id.clone()), |d| {
                model_dir(d, &["metrics.json"]);
                Ok(())
            })
            .unwrap_err();
            assert!(matches!(err, Error::NoLongerOurs { .. }), "{err}");
            assert!(out.join("notes.txt").is_file() && !out.join("metrics.json").exists());
            // The run goes on with a model it places at `out` once that is free again.
            std::fs::remove_dir_all(&out).unwrap();
            id = write_dir_atomically(&out, Replace::Same(id), |d| {
                model_dir(d, &["metrics.json"]);
                Ok(())
            })
            .unwrap();
            assert!(id.is_at(&out) && out.join("metrics.json").is_file());
        }
    }

    /// Review R5 of 32d4121: a `fill` that failed (a full disk) left its partial model in
    /// `.<name>.tmp`, as large as the model.
    #[test]
    fn a_failed_fill_leaves_no_temporary_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model");
        let err = write_dir_atomically(&out, Replace::Never, |d| {
            model_dir(d, &[]);
            Err(Error::io(
                d.join("model.safetensors"),
                std::io::Error::other("No space left on device"),
            ))
        })
        .unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        assert!(!sibling_named(&out, "tmp").exists() && !out.exists());
    }

    /// Review R5 of 32d4121: the fallback's own test put every obstacle at the target before
    /// the call, which a look-then-rename passes too. Here something appears at the target
    /// in the fallback's window (after the placeholder is made, before the file is linked),
    /// and stays.
    #[test]
    fn what_appears_in_the_rename_fallback_s_window_stays() {
        let dir = tempfile::tempdir().unwrap();
        let d = |n: &str| dir.path().join(n);
        let set = |act: Option<WindowAct>| {
            FALLBACK_WINDOW.with(|h| *h.borrow_mut() = act);
        };
        std::fs::create_dir(d("from")).unwrap();
        std::fs::write(d("from/f"), "new").unwrap();
        set(Some(Box::new(|step, path: &Path| {
            if step == FallbackStep::Placing {
                // Into the placeholder, or where it would be.
                std::fs::create_dir_all(path).unwrap();
                std::fs::write(path.join("theirs"), "theirs").unwrap();
            }
        })));
        let e = rename_noreplace_fallback(&d("from"), &d("to"));
        set(None);
        assert_eq!(e.unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(d("to/theirs")).unwrap(), "theirs");
        assert!(d("from/f").is_file() && !d("to/f").exists());

        std::fs::write(d("a"), "new").unwrap();
        set(Some(Box::new(|step, path: &Path| {
            if step == FallbackStep::Placing {
                std::fs::write(path, "theirs").unwrap();
            }
        })));
        let e = rename_noreplace_fallback(&d("a"), &d("b"));
        set(None);
        assert_eq!(e.unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(d("b")).unwrap(), "theirs");
        assert_eq!(std::fs::read_to_string(d("a")).unwrap(), "new");
    }

    /// Review R5 of 32d4121: once the file was linked at the target, a failed unlink of its
    /// temporary name was reported as a failure to place it (the caller then said the output
    /// was not written, though it was).
    #[test]
    fn a_file_linked_in_place_is_placed_even_if_its_old_name_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "new").unwrap();
        FALLBACK_WINDOW.with(|h| {
            *h.borrow_mut() = Some(Box::new(|step, from: &Path| {
                if step == FallbackStep::Unlinking {
                    // The unlink that follows fails (as it would in a directory that does
                    // not let this user remove names).
                    std::fs::remove_file(from).unwrap();
                }
            }))
        });
        let placed = rename_noreplace_fallback(&a, &b);
        FALLBACK_WINDOW.with(|h| *h.borrow_mut() = None);
        placed.unwrap();
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "new");
    }

    /// Review R1 of d2d47d4: where `renameat2` is not offered, the target was looked at and
    /// then renamed over, so what appeared in between was replaced. The fallback now fails on
    /// anything at the target (an empty directory, a file) by the call that places it.
    #[test]
    fn the_rename_fallback_replaces_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = |n: &str| dir.path().join(n);
        std::fs::create_dir(d("from")).unwrap();
        std::fs::write(d("from/f"), "new").unwrap();
        std::fs::create_dir(d("to")).unwrap();
        let e = rename_noreplace_fallback(&d("from"), &d("to")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(d("from/f").is_file() && std::fs::read_dir(d("to")).unwrap().count() == 0);
        rename_noreplace_fallback(&d("from"), &d("moved")).unwrap();
        assert_eq!(std::fs::read_to_string(d("moved/f")).unwrap(), "new");
        assert!(!d("from").exists());
        std::fs::write(d("a"), "new").unwrap();
        std::fs::write(d("b"), "theirs").unwrap();
        let e = rename_noreplace_fallback(&d("a"), &d("b")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(d("b")).unwrap(), "theirs");
        std::os::unix::fs::symlink("nowhere", d("dangling")).unwrap();
        let e = rename_noreplace_fallback(&d("a"), &d("dangling")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        rename_noreplace_fallback(&d("a"), &d("c")).unwrap();
        assert_eq!(std::fs::read_to_string(d("c")).unwrap(), "new");
        assert!(!d("a").exists());
    }
}
