//! Exports of an index to the files other tools read: word2vec (binary and text, loadable
//! by gensim's `KeyedVectors.load_word2vec_format`) and NumPy `.npy` with a pair list.
//!
//! word2vec keys name pairs as RelBERT and RELATIVE do: `head__tail`, with the words of a
//! multi-word term joined by `_` (`new york`, `city` -> `new_york__city`). Two pairs can map
//! to one key (`new york` and `new_york`); word2vec files cannot hold a key twice, so the first
//! is kept and the others are counted and reported. The `.npy` export keeps every row, with
//! the exact pairs in the `.pairs.tsv` beside it (the same layout as `relbert embed
//! --format npy`).
//!
//! The word2vec writers are hand-written: the formats are a header line and one record per
//! key, and no maintained Rust crate writes them.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use relbert_index::Index;

use crate::embed::Sink;
use crate::error::{Error, Result};
use crate::output::{npy_rows_match_list, pairs_sidecar, sidecar_owner_of, AtomicFile, Format};

/// File formats of `relbert index export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum FileFormat {
    /// word2vec binary (`binary=True` in gensim): keys `head__tail`, float32 vectors.
    Word2vec,
    /// word2vec text (`binary=False`): one `key v1 v2 …` line per pair.
    Word2vecText,
    /// A float32 `[n, dim]` NumPy array plus its pair list beside it, `--out`'s `.npy`
    /// extension replaced (`v.npy` -> `v.pairs.tsv`; other names kept whole).
    Npy,
}

/// What a file export wrote.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    /// Rows written.
    pub written: u64,
    /// Pairs left out because an earlier pair has the same word2vec key.
    pub duplicate_keys: u64,
    /// Every one of those, in row order: (the pair left out, the earlier pair holding its
    /// key, the key). All are kept, not the first few, so that `export --json` lists them
    /// without a second pass over the index repeating this one's choice of what is kept.
    pub dropped: Vec<([String; 2], [String; 2], String)>,
}

/// How many left-out pairs an export's warning names (the rest are counted).
pub const NAMED_DROPS: usize = 5;

/// The word2vec key of a pair: `head__tail`, multi-word terms joined by `_`.
pub fn pair_key(head: &str, tail: &str) -> String {
    let term = |t: &str| t.split_whitespace().collect::<Vec<_>>().join("_");
    format!("{}__{}", term(head), term(tail))
}

/// An export of an index to a file whose output files are made ([`FileExport::create`]) and
/// not yet written ([`FileExport::write`]). Made apart from the writing so that a caller whose
/// interrupt handler removes the temporary files can make them under the handler's state:
/// made outside it, a file created just after the handler's removal was left behind (as
/// `embed`'s were, found by an audit). Dropped unwritten, or when writing fails, its
/// temporary files are removed ([`AtomicFile`]).
pub struct FileExport<'a> {
    index: &'a Index,
    output: Output,
}

/// The files of a [`FileExport`], as their format writes them.
enum Output {
    /// A `.npy` array and its pair list.
    Npy(Sink),
    /// A word2vec file; `text` for the text format, else binary.
    Word2vec { file: AtomicFile, text: bool },
}

impl<'a> FileExport<'a> {
    /// Makes the temporary files of an export of `index` to `out` in `format` (callers hold
    /// the output's lock and have checked that `out` may be replaced).
    pub fn create(
        index: &'a Index,
        format: FileFormat,
        out: &Path,
        force: bool,
    ) -> Result<FileExport<'a>> {
        let output = match format {
            FileFormat::Npy => Output::Npy(Sink::open(
                Format::Npy,
                Some(out),
                index.count(),
                index.dim(),
                force,
            )?),
            FileFormat::Word2vec | FileFormat::Word2vecText => Output::Word2vec {
                file: AtomicFile::create(out, force)?,
                text: format == FileFormat::Word2vecText,
            },
        };
        Ok(FileExport { index, output })
    }

    /// Writes the index into the files and renames them into place. `on_rows` is told how
    /// many rows are done, and `committing` is called once every row is written, just before
    /// the files are synced and renamed into place (an interrupt handler must then let the
    /// run finish: an `.npy` array and its pair list are renamed one after the other).
    pub fn write(self, on_rows: &dyn Fn(u64), committing: &dyn Fn()) -> Result<FileReport> {
        match self.output {
            Output::Npy(sink) => write_npy(self.index, sink, on_rows, committing),
            Output::Word2vec { file, text } => {
                write_word2vec(self.index, file, text, on_rows, committing)
            }
        }
    }
}

/// [`FileExport::write`] of an `.npy` array and its pair list.
fn write_npy(
    index: &Index,
    mut sink: Sink,
    on_rows: &dyn Fn(u64),
    committing: &dyn Fn(),
) -> Result<FileReport> {
    let n = index.count();
    let mut none = std::io::sink();
    for row in 0..n {
        let p = index.pair(row)?;
        let v = index.vector(row)?;
        // The error names the array or its pair list, whichever failed.
        sink.write_pair(p.head, p.tail, p.label, &v, &mut none)?;
        if row % 4096 == 0 {
            on_rows(row as u64);
        }
    }
    committing();
    sink.commit()?;
    on_rows(n as u64);
    Ok(FileReport {
        written: n as u64,
        ..FileReport::default()
    })
}

/// [`FileExport::write`] of a word2vec file (`text`: the text format, else binary).
fn write_word2vec(
    index: &Index,
    mut file: AtomicFile,
    text: bool,
    on_rows: &dyn Fn(u64),
    committing: &dyn Fn(),
) -> Result<FileReport> {
    let n = index.count();
    // The header needs the count of distinct keys, so keys are settled first.
    let mut seen = HashMap::with_capacity(n);
    let mut keep = Vec::with_capacity(n);
    let mut dropped = Vec::new();
    for row in 0..n {
        let p = index.pair(row)?;
        match seen.entry(pair_key(p.head, p.tail)) {
            Entry::Vacant(e) => {
                e.insert(row);
                keep.push(row);
            }
            Entry::Occupied(e) => {
                let first = index.pair(*e.get())?;
                dropped.push((
                    [p.head.to_string(), p.tail.to_string()],
                    [first.head.to_string(), first.tail.to_string()],
                    e.key().clone(),
                ));
            }
        }
    }
    drop(seen);
    let out = file.target().to_path_buf();
    let io = |e| Error::io(&out, e);
    let w = file.writer();
    writeln!(w, "{} {}", keep.len(), index.dim()).map_err(io)?;
    let mut line = String::new();
    for (i, &row) in keep.iter().enumerate() {
        let p = index.pair(row)?;
        let v = index.vector(row)?;
        let key = pair_key(p.head, p.tail);
        if text {
            line.clear();
            line.push_str(&key);
            for x in v.iter() {
                use std::fmt::Write as _;
                // Shortest text that reads back to the same f32.
                let _ = write!(line, " {x}");
            }
            line.push('\n');
            w.write_all(line.as_bytes()).map_err(io)?;
        } else {
            w.write_all(key.as_bytes()).map_err(io)?;
            w.write_all(b" ").map_err(io)?;
            crate::output::write_f32_row(w, &v).map_err(io)?;
            w.write_all(b"\n").map_err(io)?;
        }
        if i % 4096 == 0 {
            on_rows(i as u64);
        }
    }
    committing();
    file.commit()?;
    // Every row was handled (written or named as left out).
    on_rows(n as u64);
    Ok(FileReport {
        written: keep.len() as u64,
        duplicate_keys: (n - keep.len()) as u64,
        dropped,
    })
}

/// Where builds before 2026-12-01 put the pair list of the `.npy` output `array`: its name
/// with its last extension, whatever it was, cut (`emb.train` -> `emb.pairs.tsv`). Only names
/// with an extension other than `.npy` differ from [`pairs_sidecar`]'s.
fn older_pairs_sidecar(array: &Path) -> PathBuf {
    let mut name = array.with_extension("").into_os_string();
    name.push(".pairs.tsv");
    PathBuf::from(name)
}

/// The pair list an older relbert wrote for `array`, when `array` is recognisably that build's
/// `.npy` output; then `--force` may replace `array`, which [`crate::output::check_replaceable`]
/// refuses: it looks for the pair list where relbert puts it now.
///
/// Until 2026-12-01 an array's pair list was named by cutting its last extension, so
/// `emb.train` got `emb.pairs.tsv` (now `emb.train.pairs.tsv`), and that build's lists name no
/// array. Several arrays (`emb`, `emb.npy`, `emb.train`, `emb.test`) shared that list then, so
/// it is taken as `array`'s only when nothing else can own it and it fits `array` exactly:
/// * `array` has no pair list under the current rule, and its older one is a regular file
///   whose first line is the unnamed mark of those builds;
/// * no other NumPy array beside it shares that list (one the older rule gave it to);
/// * `array` is a float32 C-order NumPy array with as many rows as the list has pairs, and
///   nothing after them.
///
/// Anything else is `None`: the array stays refused, as a user's file must be.
pub fn older_pair_list(array: &Path) -> Option<PathBuf> {
    let older = older_pairs_sidecar(array);
    if older == pairs_sidecar(array) || std::fs::symlink_metadata(pairs_sidecar(array)).is_ok() {
        return None;
    }
    let is_file = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
    if !is_file(array) || !is_file(&older) {
        return None;
    }
    // A named mark is a newer build's list, for an array the current rule gives it to.
    if sidecar_owner_of(&older)?.is_some() {
        return None;
    }
    if another_array_shares(array, &older)? {
        return None;
    }
    npy_rows_match_list(array, &older).then_some(older)
}

/// Says that `array`, an array an older relbert wrote ([`older_pair_list`] gave `list`), was
/// replaced and its old pair list left as it was: relbert removes only files the run wrote,
/// and another array of that build may still use the list. For `embed` and `index export`.
pub fn warn_older_list_left(array: &Path, list: &Path) {
    tracing::warn!(
        "{} replaced an array an older relbert wrote; its pair list is now {}, and the one \
         that build wrote, {}, is left as it was: remove it unless another array uses it",
        array.display(),
        pairs_sidecar(array).display(),
        list.display()
    );
}

/// Whether a regular file beside `array` other than it starts as a NumPy array and has
/// `older` as its pair list under the older rule; `None` if the folder cannot be read.
fn another_array_shares(array: &Path, older: &Path) -> Option<bool> {
    let dir = match array.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let own = array.file_name()?;
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let name = entry.file_name();
        if name == own || older_pairs_sidecar(&dir.join(&name)).file_name() != older.file_name() {
            continue;
        }
        let path = entry.path();
        if !std::fs::symlink_metadata(&path).ok()?.is_file() {
            continue;
        }
        let mut magic = [0u8; 6];
        let read = std::fs::File::open(&path).and_then(|mut f| f.read_exact(&mut magic));
        if read.is_ok() && &magic == b"\x93NUMPY" {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_join_multi_word_terms() {
        assert_eq!(pair_key("paris", "france"), "paris__france");
        assert_eq!(pair_key("New  York", "city"), "New_York__city");
        assert_eq!(pair_key(" ice cream ", "sweet"), "ice_cream__sweet");
    }

    /// Audit (s14): `index export --format npy --force` refused an array an older relbert
    /// had written (`emb.train`, with its pair list at `emb.pairs.tsv`, as that build named
    /// it), because it looked for the list only where relbert puts it now.
    #[test]
    fn an_older_builds_array_is_recognised_by_its_pair_list_and_nothing_else_is() {
        let d = tempfile::tempdir().unwrap();
        let array = d.path().join("emb.train");
        let list = d.path().join("emb.pairs.tsv");
        let write_array = |path: &Path, rows: usize| {
            let mut bytes = crate::output::npy_header(rows, 3);
            bytes.extend(std::iter::repeat_n(0u8, rows * 3 * 4));
            std::fs::write(path, bytes).unwrap();
        };
        let write_list = |mark: &str, rows: usize| {
            let mut text = format!("{mark}\n");
            for i in 0..rows {
                text.push_str(&format!("a{i}\tb{i}\t\n"));
            }
            std::fs::write(&list, text).unwrap();
        };
        write_array(&array, 2);
        write_list(crate::embed::UNNAMED_SIDECAR_MARK, 2);
        assert_eq!(older_pair_list(&array), Some(list.clone()));
        write_list(crate::embed::OLD_SIDECAR_MARK, 2);
        assert_eq!(older_pair_list(&array), Some(list.clone()));

        // Another row count, a named (newer) mark, or a user's list: not this array's.
        write_list(crate::embed::UNNAMED_SIDECAR_MARK, 3);
        assert_eq!(older_pair_list(&array), None);
        write_list(&crate::embed::sidecar_mark(&d.path().join("emb.npy")), 2);
        assert_eq!(older_pair_list(&array), None);
        write_list("head\ttail", 2);
        assert_eq!(older_pair_list(&array), None);

        // Another array that list went with under the older rule: whose it is is unknown.
        write_list(crate::embed::UNNAMED_SIDECAR_MARK, 2);
        write_array(&d.path().join("emb.test"), 2);
        assert_eq!(older_pair_list(&array), None);
        std::fs::remove_file(d.path().join("emb.test")).unwrap();
        write_array(&d.path().join("emb.npy"), 2);
        assert_eq!(older_pair_list(&array), None);
        std::fs::remove_file(d.path().join("emb.npy")).unwrap();
        // A file of another kind under such a name is not an array.
        std::fs::write(d.path().join("emb.txt"), "notes").unwrap();
        assert_eq!(older_pair_list(&array), Some(list.clone()));

        // A pair list under the current rule decides, as does the array's own content.
        std::fs::write(d.path().join("emb.train.pairs.tsv"), "x\n").unwrap();
        assert_eq!(older_pair_list(&array), None);
        std::fs::remove_file(d.path().join("emb.train.pairs.tsv")).unwrap();
        let mut bytes = std::fs::read(&array).unwrap();
        bytes.push(0);
        std::fs::write(&array, &bytes).unwrap();
        assert_eq!(older_pair_list(&array), None);
        std::fs::write(&array, b"not an array").unwrap();
        assert_eq!(older_pair_list(&array), None);

        // Where both rules agree (`.npy`, no extension), there is nothing older to find.
        write_array(&d.path().join("emb.npy"), 2);
        assert_eq!(older_pair_list(&d.path().join("emb.npy")), None);
    }
}
