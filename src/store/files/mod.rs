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
use std::io::Write;
use std::path::Path;

use relbert_index::Index;

use crate::embed::Sink;
use crate::error::{Error, Result};
use crate::output::{AtomicFile, Format};

/// File formats of `relbert index export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    /// word2vec binary (`binary=True` in gensim): keys `head__tail`, float32 vectors.
    Word2vec,
    /// word2vec text (`binary=False`): one `key v1 v2 …` line per pair.
    Word2vecText,
    /// A float32 `[n, dim]` NumPy array plus `<out>.pairs.tsv`.
    Npy,
}

/// What a file export wrote.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    /// Rows written.
    pub written: u64,
    /// Pairs left out because an earlier pair has the same word2vec key.
    pub duplicate_keys: u64,
    /// The first few of those: (the pair left out, the earlier pair holding its key, the key).
    pub dropped: Vec<([String; 2], [String; 2], String)>,
}

/// How many left-out pairs a [`FileReport`] names.
const NAMED_DROPS: usize = 5;

/// The word2vec key of a pair: `head__tail`, multi-word terms joined by `_`.
pub fn pair_key(head: &str, tail: &str) -> String {
    let term = |t: &str| t.split_whitespace().collect::<Vec<_>>().join("_");
    format!("{}__{}", term(head), term(tail))
}

/// Writes `index` to `out` in `format` (atomically; callers hold the output's lock and have
/// checked that `out` may be replaced). `on_rows` is told how many rows are done, and
/// `committing` is called once every row is written, just before the files are synced and
/// renamed into place (an interrupt handler must then let the run finish: an `.npy` array and
/// its pair list are renamed one after the other).
pub fn export_file(
    index: &Index,
    format: FileFormat,
    out: &Path,
    force: bool,
    on_rows: &dyn Fn(u64),
    committing: &dyn Fn(),
) -> Result<FileReport> {
    let n = index.count();
    let dim = index.dim();
    if format == FileFormat::Npy {
        let mut sink = Sink::open(Format::Npy, Some(out), n, dim, force)?;
        let mut none = std::io::sink();
        for row in 0..n {
            let p = index.pair(row)?;
            let v = index.vector(row)?;
            // The error names the array or its pair list, whichever failed.
            if let Err(e) = sink.write_pair(p.head, p.tail, p.label, &v, &mut none) {
                sink.discard();
                return Err(e);
            }
            if row % 4096 == 0 {
                on_rows(row as u64);
            }
        }
        committing();
        sink.commit()?;
        on_rows(n as u64);
        return Ok(FileReport {
            written: n as u64,
            ..FileReport::default()
        });
    }
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
            Entry::Occupied(e) if dropped.len() < NAMED_DROPS => {
                let first = index.pair(*e.get())?;
                dropped.push((
                    [p.head.to_string(), p.tail.to_string()],
                    [first.head.to_string(), first.tail.to_string()],
                    e.key().clone(),
                ));
            }
            Entry::Occupied(_) => {}
        }
    }
    drop(seen);
    let mut file = AtomicFile::create(out, force)?;
    let written = (|| -> Result<()> {
        let w = file.writer();
        let io = |e| Error::io(out, e);
        writeln!(w, "{} {dim}", keep.len()).map_err(io)?;
        let mut text = String::new();
        for (i, &row) in keep.iter().enumerate() {
            let p = index.pair(row)?;
            let v = index.vector(row)?;
            let key = pair_key(p.head, p.tail);
            if format == FileFormat::Word2vec {
                w.write_all(key.as_bytes()).map_err(io)?;
                w.write_all(b" ").map_err(io)?;
                crate::output::write_f32_row(w, &v).map_err(io)?;
                w.write_all(b"\n").map_err(io)?;
            } else {
                text.clear();
                text.push_str(&key);
                for x in v.iter() {
                    use std::fmt::Write as _;
                    // Shortest text that reads back to the same f32.
                    let _ = write!(text, " {x}");
                }
                text.push('\n');
                w.write_all(text.as_bytes()).map_err(io)?;
            }
            if i % 4096 == 0 {
                on_rows(i as u64);
            }
        }
        Ok(())
    })();
    if let Err(e) = written {
        file.discard();
        return Err(e);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_join_multi_word_terms() {
        assert_eq!(pair_key("paris", "france"), "paris__france");
        assert_eq!(pair_key("New  York", "city"), "New_York__city");
        assert_eq!(pair_key(" ice cream ", "sweet"), "ice_cream__sweet");
    }
}
