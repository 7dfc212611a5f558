//! The `embed` pipeline: pairs stream through the encoder in chunks into JSON lines or an
//! `.npy` array, so memory stays flat however long the input is.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::output::{
    npy_header, pairs_sidecar, write_f32_row, write_jsonl_row, AtomicFile, Format,
};
use crate::pairs::PairRecord;
use crate::pooling::normalize_in_place;
use crate::relation::RelationEncoder;

/// How an error writing to standard output (`--out -`, or no `--out`) names it.
pub const STANDARD_OUTPUT: &str = "standard output";

/// Pairs encoded per chunk; bounds memory while leaving room for length-sorted batches.
pub const CHUNK: usize = 4096;

/// How the first line of the pair list beside an `.npy` output starts ([`sidecar_mark`]).
pub const SIDECAR_PREFIX: &str = "# relbert: row i of ";

const SIDECAR_SUFFIX: &str = " is the pair on data line i";

/// The first line of the pair list beside the array `array`: says what the file is (a `#`
/// line, which relbert's pair reader skips, as `pandas.read_csv(skiprows=1)` does) and names
/// the array, so relbert recognises the file as its own and as that array's. Two outputs
/// can share one pair-list name (`v` and `v.npy`); the name tells whose it is.
pub fn sidecar_mark(array: &Path) -> String {
    let name = mark_name(array).unwrap_or_default();
    format!("{SIDECAR_PREFIX}{name}{SIDECAR_SUFFIX}")
}

/// The array's file name as [`sidecar_mark`] writes it: as it is when it is UTF-8 text
/// without control characters or backslashes; otherwise a byte that is not UTF-8 is `\xNN`, a
/// control character `\xNN` or `\u{NNNN}` (one would break the line), and a backslash `\\`.
///
/// Two names never get one mark. They did: bytes that are not UTF-8 all read as U+FFFD and
/// control characters as `?`, so the lists of `a\xff.npy` and `a\xfe.npy` named one array,
/// and `--force` gave one array the other's pair list.
pub fn mark_name(array: &Path) -> Option<String> {
    use std::fmt::Write as _;
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in array.file_name()?.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() && (c as u32) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:04x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Some(out)
}

/// The array's file name as builds before [`mark_name`] escaped names wrote it (control
/// characters as `?`, a backslash as it is), for a name that is UTF-8; `None` otherwise.
///
/// Those builds' lists are still the arrays' own: `a\b.npy`'s list says `a\b.npy` where
/// [`mark_name`] now says `a\\b.npy`, and `--force` refused it as another array's. Only UTF-8
/// names: those builds read a name lossily, so only a UTF-8 name's list was where relbert puts
/// it now (`a\xff.npy`'s was `a\u{FFFD}.pairs.tsv`, shared with `a\xfe.npy`).
pub fn old_mark_name(array: &Path) -> Option<String> {
    let name = array.file_name()?.to_str()?;
    Some(
        name.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
    )
}

/// Whether `name`, the array a pair list's mark names, is `array`: as [`mark_name`] writes
/// it, or as [`old_mark_name`] did.
pub fn mark_names(name: &str, array: &Path) -> bool {
    mark_name(array).as_deref() == Some(name) || old_mark_name(array).as_deref() == Some(name)
}

/// Whose a pair list is, from its first line: `None` if relbert did not write it,
/// `Some(None)` if an earlier build did (its mark names no array), else the array's name.
pub fn sidecar_owner(first_line: &str) -> Option<Option<String>> {
    let line = first_line.trim_end_matches(['\r', '\n']);
    if line == UNNAMED_SIDECAR_MARK || line == OLD_SIDECAR_MARK {
        return Some(None);
    }
    line.strip_prefix(SIDECAR_PREFIX)?
        .strip_suffix(SIDECAR_SUFFIX)
        .map(|name| Some(name.to_string()))
}

/// The mark of pair lists written before marks named their array.
pub const UNNAMED_SIDECAR_MARK: &str =
    "# relbert: row i of the .npy array beside this file is the pair on data line i";

/// [`UNNAMED_SIDECAR_MARK`] as still earlier builds wrote it (naming `embed` also in the lists
/// `index export` writes); still recognised as relbert's.
pub const OLD_SIDECAR_MARK: &str =
    "# relbert embed: row i of the .npy array beside this file is the pair on data line i";

/// Where vectors go.
pub enum Sink {
    /// JSON lines to a file (atomic) or to standard output.
    Jsonl(Option<AtomicFile>),
    /// `.npy` array plus the `.pairs.tsv` beside it (both atomic).
    Npy {
        /// The array file.
        array: AtomicFile,
        /// The pair list.
        pairs: AtomicFile,
        /// The array's final path.
        path: std::path::PathBuf,
    },
}

impl Sink {
    /// Opens the sink for `n` vectors of width `dim`. Callers hold the output's writer lock.
    pub fn open(
        format: Format,
        out: Option<&Path>,
        n: usize,
        dim: usize,
        force: bool,
    ) -> Result<Self> {
        match (format, out) {
            (Format::Jsonl, None) => Ok(Sink::Jsonl(None)),
            (Format::Jsonl, Some(p)) => Ok(Sink::Jsonl(Some(AtomicFile::create(p, force)?))),
            (Format::Npy, None) => Err(Error::InvalidArgument {
                flag: "--out".into(),
                message: "--format npy needs an output file".into(),
            }),
            (Format::Npy, Some(p)) => {
                let mut array = AtomicFile::create(p, force)?;
                array
                    .writer()
                    .write_all(&npy_header(n, dim))
                    .map_err(|e| Error::io(p, e))?;
                let sidecar = pairs_sidecar(p);
                // The caller's check_sidecar_replaceable refused a list there that may not be
                // replaced: one there now may be; one that appears later may not.
                let replace_list = std::fs::symlink_metadata(&sidecar).is_ok();
                let mut pairs = AtomicFile::create(&sidecar, replace_list)?;
                writeln!(pairs.writer(), "{}", sidecar_mark(p))
                    .map_err(|e| Error::io(&sidecar, e))?;
                Ok(Sink::Npy {
                    array,
                    pairs,
                    path: p.to_path_buf(),
                })
            }
        }
    }

    /// Writes one record's vector; an error names the file that failed.
    fn write(&mut self, rec: &PairRecord, v: &[f32], stdout: &mut impl Write) -> Result<()> {
        self.write_pair(&rec.head, &rec.tail, rec.label.as_deref(), v, stdout)
    }

    /// Writes one pair's vector (JSON lines without a file go to `stdout`); an error names
    /// the file that failed: the array or its pair list, the JSON lines file, or
    /// [`STANDARD_OUTPUT`].
    pub fn write_pair(
        &mut self,
        head: &str,
        tail: &str,
        label: Option<&str>,
        v: &[f32],
        stdout: &mut impl Write,
    ) -> Result<()> {
        self.put(head, tail, label, v, stdout)
            .map_err(|(path, e)| Error::io(path, e))
    }

    /// [`write_pair`](Self::write_pair), with the path of the output that failed beside the
    /// error.
    fn put(
        &mut self,
        head: &str,
        tail: &str,
        label: Option<&str>,
        v: &[f32],
        stdout: &mut impl Write,
    ) -> std::result::Result<(), (PathBuf, std::io::Error)> {
        match self {
            Sink::Jsonl(None) => write_jsonl_row(stdout, head, tail, v)
                .map_err(|e| (PathBuf::from(STANDARD_OUTPUT), e)),
            Sink::Jsonl(Some(f)) => write_jsonl_row(f.writer(), head, tail, v)
                .map_err(|e| (f.target().to_path_buf(), e)),
            Sink::Npy { array, pairs, .. } => {
                write_f32_row(array.writer(), v).map_err(|e| (array.target().to_path_buf(), e))?;
                // Always three columns (the label empty when there is none): readers that
                // take the first line's width (pandas, numpy) refused a later longer line.
                writeln!(pairs.writer(), "{head}\t{tail}\t{}", label.unwrap_or(""))
                    .map_err(|e| (pairs.target().to_path_buf(), e))
            }
        }
    }

    /// Renames the finished files into place. Both are written out and synced first, so a
    /// full disk fails here with the old output untouched. An array and its pair list cannot
    /// be renamed together, so the old array goes next, then the new pair list, then the new
    /// array: a kill in between leaves no array (an incomplete output, redone by the next
    /// run), never an array beside a pair list of other rows. Once the old array is removed,
    /// a failure keeps the new files under their temporary names, and the error names them.
    pub fn commit(self) -> Result<()> {
        match self {
            Sink::Jsonl(None) => Ok(()),
            Sink::Jsonl(Some(f)) => f.commit(),
            Sink::Npy {
                mut array,
                mut pairs,
                path,
            } => {
                array.sync().and_then(|()| pairs.sync())?;
                // Checked before the old array goes: a file that appeared at either name
                // during the run stays, and so do both new files, under their temporary names.
                let blocked = [&array, &pairs]
                    .into_iter()
                    .find(|f| f.check_place().is_err())
                    .map(|f| f.target().to_path_buf());
                if let Some(target) = blocked {
                    let (a, p) = (array.keep(), pairs.keep());
                    return Err(crate::output::appeared(
                        &target,
                        "array and its pair list",
                        &[&a, &p],
                    ));
                }
                let removes_old = array.replaces() && std::fs::symlink_metadata(&path).is_ok();
                if removes_old {
                    if let Err(e) = std::fs::remove_file(&path) {
                        array.discard();
                        pairs.discard();
                        return Err(Error::io(&path, e));
                    }
                    // The old array is gone: the new files are all that is left of either,
                    // and are kept, and named, whatever fails from here.
                    if let Err(kept) = pairs.commit_or_keep() {
                        let (e, p) = *kept;
                        let a = array.keep();
                        return Err(kept_after_removal(e, &path, &[&a, &p]));
                    }
                    return array.commit_or_keep().map_err(|kept| {
                        let (e, a) = *kept;
                        kept_after_removal(e, &path, &[&a])
                    });
                }
                let pairs_target = pairs.target().to_path_buf();
                let pairs_tmp = crate::output::temp_path(&pairs_target);
                if let Err(e) = pairs.commit() {
                    // A pair list that appeared in the moment since the check above is kept,
                    // and so is the new list under its temporary name: the new array is
                    // kept with it, not thrown away.
                    if std::fs::symlink_metadata(&pairs_tmp).is_ok_and(|m| m.is_file()) {
                        let a = array.keep();
                        return Err(crate::output::appeared(
                            &pairs_target,
                            "array and its pair list",
                            &[&a, &pairs_tmp],
                        ));
                    }
                    array.discard();
                    return Err(e);
                }
                array.commit()
            }
        }
    }

    /// Removes the temporary files of a run that failed.
    pub fn discard(self) {
        match self {
            Sink::Jsonl(None) => {}
            Sink::Jsonl(Some(f)) => f.discard(),
            Sink::Npy { array, pairs, .. } => {
                array.discard();
                pairs.discard();
            }
        }
    }
}

/// `e`, the error of a commit that failed after the old array `old` was removed, with where
/// this run's new files were kept (`kept`), since they are all that is left of the output.
fn kept_after_removal(e: Error, old: &Path, kept: &[&Path]) -> Error {
    let kept = kept
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" and ");
    let note = format!(
        "the old array {} was already removed, so what this run wrote is kept in {kept}: \
         move it into place by hand, or run again",
        old.display()
    );
    match e {
        // The error a commit gives (its own message names where the list is kept when
        // one appeared at its name).
        Error::Io { path, err } => Error::io(
            path,
            std::io::Error::new(err.kind(), format!("{err}; {note}")),
        ),
        other => Error::io(old, std::io::Error::other(format!("{other}; {note}"))),
    }
}

/// What [`screen_long_pairs`]' refusal adds: the commands reading pair files have the flag.
const SKIP_LONG_HINT: &str = ", or pass --skip-long to leave such pairs out";

/// Leaves out, or refuses, the records whose pairs `encoder` cannot encode
/// ([`RelationEncoder::overlong`]): with `skip`, returns the others and the ones left out;
/// without, the first bad record is an [`Error::PromptTooLong`] naming its file and line.
pub fn screen_long_pairs(
    encoder: &RelationEncoder,
    records: Vec<PairRecord>,
    skip: bool,
) -> Result<(Vec<PairRecord>, Vec<PairRecord>)> {
    warn_unaskable_words(&records);
    warn_unknown_words(
        encoder,
        records
            .iter()
            .map(|r| (r.head.as_str(), r.tail.as_str(), &*r.file, r.line)),
        "the pair is encoded as it is",
    );
    let pairs: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.head.as_str(), r.tail.as_str()))
        .collect();
    let (bad, mask_cut) = encoder.screen_prompts(&pairs)?;
    drop(pairs);
    warn_mask_cut(encoder, &records, &mask_cut);
    if bad.is_empty() {
        return Ok((records, Vec::new()));
    }
    if !skip {
        let r = &records[bad[0]];
        return Err(Error::PromptTooLong {
            location: if bad.len() > 1 {
                format!("{} (and {} more pairs)", r.location(), bad.len() - 1)
            } else {
                r.location()
            },
            head: r.head.clone(),
            tail: r.tail.clone(),
            limit: encoder.max_tokens(),
            hint: SKIP_LONG_HINT,
        });
    }
    let mut is_bad = vec![false; records.len()];
    bad.iter().for_each(|&i| is_bad[i] = true);
    let (mut keep, mut left) = (Vec::new(), Vec::new());
    for (r, b) in records.into_iter().zip(is_bad) {
        if b {
            left.push(r)
        } else {
            keep.push(r)
        }
    }
    Ok((keep, left))
}

/// Warns, naming the first's file and line and counting the others, of the `records` at
/// `cut` ([`RelationEncoder::screen_prompts`]): pairs whose prompt is over the token limit
/// and cut after both words, the mask token with it. The reference encodes such a prompt as
/// cut with this pooling (only its `mask` pooling, which reads the mask, asserts that it is
/// there; relbert refuses it there), and so does relbert, but the model reads less of the
/// template than it was trained on: said rather than left for the user to find.
fn warn_mask_cut(encoder: &RelationEncoder, records: &[PairRecord], cut: &[usize]) {
    let Some(r) = cut.first().map(|&i| &records[i]) else {
        return;
    };
    warn_mask_cut_at(encoder, &r.location(), (&r.head, &r.tail), cut.len() - 1);
}

/// The warning of `warn_mask_cut` for callers whose pairs are not [`PairRecord`]s (`relbert
/// bench`'s and `relbert train`'s data sets): the first such pair, where it is (`file:line`),
/// and how many `more` there are.
pub fn warn_mask_cut_at(
    encoder: &RelationEncoder,
    location: &str,
    (head, tail): (&str, &str),
    more: usize,
) {
    tracing::warn!(
        "{location}: the prompt of ({}, {}) is longer than the {}-token limit, and the cut after \
         both words takes the mask token too{}: encoded as cut with {} pooling, as the reference \
         does (mask pooling refuses such a prompt)",
        crate::error::quoted(head),
        crate::error::quoted(tail),
        encoder.max_tokens(),
        match more {
            0 => String::new(),
            n => format!(" (and {n} more such pair(s))"),
        },
        encoder.aggregation().name(),
    );
}

/// Warns, naming file and line, of records with a word no query can ask
/// ([`crate::prompt::check_words`]: `relbert query` and `relbert serve` refuse it): over
/// [`crate::prompt::MAX_WORD_CHARS`] characters, which a BERT tokenizer reads as `[UNK]`, or
/// holding a control character, which it drops. Such a pair is still encoded as it is, as
/// `pairs mine` keeps a `--terms` line it warns of; the warning says why its vector is
/// another word's, and why a query for it is refused.
pub fn warn_unaskable_words(records: &[PairRecord]) {
    warn_unaskable_pairs(
        records
            .iter()
            .map(|r| (r.head.as_str(), r.tail.as_str(), &*r.file, r.line)),
        "the pair is encoded as it is",
    );
}

/// [`warn_unaskable_words`] over `(head, tail, file, line)` items from any source (`relbert
/// bench` reads dataset files, not pair records): one warning naming the first such pair's
/// file and line and counting the others, ending with `outcome`, what the command does with
/// such a pair. Nothing when every word can be asked.
pub fn warn_unaskable_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str, &'a Path, usize)>,
    outcome: &str,
) {
    let max = crate::prompt::MAX_WORD_CHARS;
    let mut found = pairs.into_iter().filter_map(|(head, tail, file, line)| {
        crate::prompt::check_words(head, tail, max)
            .err()
            .map(|e| (file, line, e))
    });
    let Some((file, line, why)) = found.next() else {
        return;
    };
    let more = found.count();
    tracing::warn!(
        "{}:{line}: {why}, which relbert query and relbert serve refuse to ask (a BERT tokenizer \
         reads one word of more than {max} characters as [UNK], and drops control characters); \
         {outcome}{}",
        file.display(),
        match more {
            0 => String::new(),
            n => format!(" (and {n} more such pair(s))"),
        }
    );
}

/// A tokenizer set up to read single words (no special tokens, padding or truncation), with
/// its unknown token's text and id: what tells the words a model reads as its unknown token
/// alone ([`warn_unknown_words`], and a query's words, [`warn_unknown_query_words`]).
pub struct WordTokenizer {
    tok: tokenizers::Tokenizer,
    unk: String,
    unk_id: u32,
}

impl WordTokenizer {
    /// `encoder`'s tokenizer as a [`WordTokenizer`]; `None` for a tokenizer that has no
    /// unknown token (RoBERTa's byte-level BPE reads every character). A copy of the one the
    /// encoder loaded, without its truncation, rather than `tokenizer.json` parsed again
    /// (megabytes of JSON): made once per model, not per word.
    pub fn of(encoder: &RelationEncoder) -> Option<WordTokenizer> {
        use tokenizers::models::ModelWrapper;
        let mut tok = encoder.tokenizer().inner().clone();
        let unk = match tok.get_model() {
            ModelWrapper::WordPiece(m) => Some(m.unk_token.clone()),
            ModelWrapper::BPE(m) => m.get_unk_token().clone(),
            _ => None,
        }?;
        let unk_id = tok.token_to_id(&unk)?;
        tok.with_padding(None);
        tok.with_truncation(None).ok()?;
        Some(WordTokenizer { tok, unk, unk_id })
    }

    /// Whether the tokenizer reads `word` (a term of one or more words) as its unknown token
    /// alone, every token of it.
    pub fn is_unknown(&self, word: &str) -> bool {
        self.tok.encode(word, false).is_ok_and(|e| {
            let ids = e.get_ids();
            !ids.is_empty() && ids.iter().all(|&id| id == self.unk_id)
        })
    }
}

/// Warns of the words of a query pair (a, b) that `wt` reads as its unknown token alone, as
/// [`warn_unknown_words`] warns of a pair file's, with `location` (`the query`) in place of
/// a file and line and `outcome` saying what is done with the query. Nothing when every word
/// has a known token; a word past the word limits, which a query refuses, is not named.
pub fn warn_unknown_query_words(
    wt: &WordTokenizer,
    location: &str,
    a: &str,
    b: &str,
    outcome: &str,
) {
    let max = crate::prompt::MAX_WORD_CHARS;
    let mut unknown: Vec<&str> = Vec::new();
    for w in [a, b] {
        if !unknown.contains(&w)
            && crate::prompt::check_words(w, w, max).is_ok()
            && wt.is_unknown(w)
        {
            unknown.push(w);
        }
    }
    if unknown.is_empty() {
        return;
    }
    let shown: Vec<String> = unknown.iter().map(|w| format!("{w:?}")).collect();
    tracing::warn!(
        "{location} {a:?}:{b:?}: {} distinct word(s) are read by this model's tokenizer as its \
         unknown token {} alone ({}): all such words get one vector, so pairs that differ only \
         in them are one pair to the model; {outcome}",
        unknown.len(),
        wt.unk,
        shown.join(", "),
    );
}

/// Words [`warn_unknown_words`] names at most.
const UNKNOWN_SHOWN: usize = 5;

/// What [`warn_unknown_words`] says of the words in `pairs` for which `unknown` holds: the
/// place of the first pair holding one, how many distinct such words there are, and the first
/// [`UNKNOWN_SHOWN`] of them in input order; `None` when there is none. One pass with a set
/// of the words seen: a file of many unknown words (an emoji list) is linear, where checking
/// each occurrence against the words named so far was quadratic (100,000 words: 10 s before
/// any encoding).
fn unknown_word_summary<'a>(
    pairs: &[(&'a str, &'a str, &'a Path, usize)],
    unknown: impl Fn(&str) -> bool,
) -> Option<((&'a Path, usize), usize, Vec<&'a str>)> {
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut first = None;
    let mut shown = Vec::new();
    for (h, t, file, line) in pairs {
        for w in [*h, *t] {
            if !seen.contains(w) && unknown(w) {
                seen.insert(w);
                first.get_or_insert((*file, *line));
                if shown.len() < UNKNOWN_SHOWN {
                    shown.push(w);
                }
            }
        }
    }
    first.map(|f| (f, seen.len(), shown))
}

/// Warns, naming file and line of the first, of words that `encoder`'s tokenizer reads as its
/// unknown token alone (`[UNK]`: an emoji, a script missing from a small vocabulary): every
/// such word gets one vector, so two pairs that differ only in such words are one pair to the
/// model. `pairs` are `(head, tail, file, line)` items in input order; the warning names up
/// to five of the distinct words, counts them, and ends with `outcome`, what the command does
/// with such a pair. Nothing when every word has a known token.
pub fn warn_unknown_words<'a>(
    encoder: &RelationEncoder,
    pairs: impl IntoIterator<Item = (&'a str, &'a str, &'a Path, usize)>,
    outcome: &str,
) {
    use rayon::prelude::*;
    let Some(wt) = WordTokenizer::of(encoder) else {
        return;
    };
    let pairs: Vec<_> = pairs.into_iter().collect();
    // Words [`warn_unaskable_pairs`] warns of (a long word is `[UNK]` too) are left to it.
    let max = crate::prompt::MAX_WORD_CHARS;
    let distinct: std::collections::HashSet<&str> = pairs
        .iter()
        .flat_map(|(h, t, ..)| [*h, *t])
        .filter(|w| crate::prompt::check_words(w, w, max).is_ok())
        .collect();
    let unknown: std::collections::HashSet<&str> = distinct
        .into_par_iter()
        .filter(|w| wt.is_unknown(w))
        .collect();
    if unknown.is_empty() {
        return;
    }
    let Some(((file, line), count, shown)) = unknown_word_summary(&pairs, |w| unknown.contains(w))
    else {
        return;
    };
    let shown: Vec<String> = shown.iter().map(|w| format!("{w:?}")).collect();
    tracing::warn!(
        "{}:{line}{}: {count} distinct word(s) are read by this model's tokenizer as its unknown \
         token {} alone ({}{}): all such words get one vector, so pairs that differ only in \
         them are one pair to the model; {outcome}",
        file.display(),
        // The place is the first word's: with more, "p.tsv:5: 2 distinct word(s)" read as
        // if both were on line 5.
        if count > 1 { " (the first)" } else { "" },
        wt.unk,
        shown.join(", "),
        if count > shown.len() { ", …" } else { "" },
    );
}

/// What a pair whose two words share one word vector gets from a model of offset weight `w`
/// ([`crate::analogy::combine`]), for [`warn_shared_word_vector`].
pub fn no_offset_consequence(w: f32) -> String {
    format!(
        "the pair has no offset: its vector is its relation part alone, and its cosine with \
         another pair is √(1−w)·cos(r, r′) = {:.3}·cos(r, r′) (offset weight w = {w}), not \
         the w-weighted mean of the two cosines",
        (1.0 - w.clamp(0.0, 1.0)).sqrt()
    )
}

/// Warns once of pairs whose two words have one word vector (the same word, or words the
/// tokenizer reads alike: another letter case or accent on an uncased model, unknown tokens
/// only), whose offset is zero: `location` and `head:tail` name the first, `more` counts the
/// others, `consequence` says what such a pair's vector is ([`no_offset_consequence`]).
/// Such a pair is usually a mistake or a distractor, and says so.
pub fn warn_shared_word_vector(
    location: &str,
    head: &str,
    tail: &str,
    more: usize,
    consequence: &str,
) {
    tracing::warn!(
        "{location}: the two words of {head:?}:{tail:?} have one word vector (the same word, or \
         words this model's tokenizer reads alike: another letter case or accent on an uncased \
         model, unknown tokens only); {consequence}; such a pair is usually a mistake or a \
         distractor{}",
        match more {
            0 => String::new(),
            n => format!(" (and {n} more such pair(s))"),
        }
    );
}

/// The pairs without an offset met while embedding with a model of offset weight `w` (none
/// is looked for without one): the first, for its place, and the distinct ones, for the
/// count; said once at the end ([`NoOffsetPairs::warn`]). `embed`, `index build` and `index
/// add` keep one.
pub struct NoOffsetPairs<'a> {
    offset_weight: Option<f32>,
    first: Option<&'a PairRecord>,
    seen: std::collections::HashSet<(&'a str, &'a str)>,
}

impl<'a> NoOffsetPairs<'a> {
    /// None met yet, for a model of offset weight `offset_weight`.
    pub fn new(offset_weight: Option<f32>) -> Self {
        NoOffsetPairs {
            offset_weight,
            first: None,
            seen: Default::default(),
        }
    }

    /// Notes `rec`, whose vector is `v`, if it has no offset.
    pub fn note(&mut self, rec: &'a PairRecord, v: &[f32]) {
        if self.offset_weight.is_some()
            && crate::analogy::lacks_offset(v)
            && self.seen.insert((rec.head.as_str(), rec.tail.as_str()))
        {
            self.first.get_or_insert(rec);
        }
    }

    /// Warns once of the pairs noted ([`warn_shared_word_vector`]), if any.
    pub fn warn(&self) {
        if let (Some(w), Some(first)) = (self.offset_weight, self.first) {
            warn_shared_word_vector(
                &first.location(),
                &first.head,
                &first.tail,
                self.seen.len() - 1,
                &no_offset_consequence(w),
            );
        }
    }
}

/// Embeds `records` in input order into `sink`; unit vectors unless `raw`. Each distinct pair
/// is encoded once: a pair seen again later is served from a cache that holds only pairs with
/// occurrences still to come. `progress` receives the number of records done: within a chunk
/// after each encoder batch (the chunk's pairs encoded so far), and after each chunk written.
pub fn embed_into(
    encoder: &RelationEncoder,
    records: &[PairRecord],
    sink: &mut Sink,
    raw: bool,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<()> {
    let mut remaining: HashMap<(&str, &str), usize> = HashMap::new();
    for r in records {
        *remaining.entry((&r.head, &r.tail)).or_default() += 1;
    }
    let mut cache: HashMap<(&str, &str), Vec<f32>> = HashMap::new();
    let offset_weight = encoder.offset_weight();
    let mut no_offset = NoOffsetPairs::new(offset_weight);
    // Standard output is locked only where the vectors go to it: locked for a file, it kept
    // the caller's other threads from printing (and a thread of theirs holding it, this call
    // from starting) for as long as the encoding took.
    let mut to_stdout = matches!(sink, Sink::Jsonl(None))
        .then(|| std::io::BufWriter::new(std::io::stdout().lock()));
    let mut nowhere = std::io::sink();
    let mut out: &mut dyn Write = match to_stdout.as_mut() {
        Some(w) => w,
        None => &mut nowhere,
    };
    let mut written = 0;
    for chunk in records.chunks(CHUNK) {
        let todo: Vec<(&str, &str)> = chunk
            .iter()
            .map(|r| (r.head.as_str(), r.tail.as_str()))
            .filter(|k| !cache.contains_key(k))
            .collect();
        // Reported within the chunk too: a chunk takes minutes on a slow CPU, and a log with
        // no line until it ends looked stuck.
        let fresh =
            encoder.embed_raw_with_progress(&todo, &|n| progress(written + n.min(chunk.len())))?;
        let mut fresh: HashMap<(&str, &str), Vec<f32>> = todo.into_iter().zip(fresh).collect();
        for rec in chunk {
            let key = (rec.head.as_str(), rec.tail.as_str());
            let left = remaining.get_mut(&key).map(|c| {
                *c -= 1;
                *c
            });
            let mut v = match cache.get(&key) {
                Some(v) => v.clone(),
                None => fresh.get(&key).cloned().unwrap_or_default(),
            };
            if left.unwrap_or(0) > 0 {
                if let Some(f) = fresh.remove(&key) {
                    cache.insert(key, f);
                }
            } else {
                cache.remove(&key);
            }
            no_offset.note(rec, &v);
            if !raw {
                normalize_in_place(&mut v);
            }
            sink.write(rec, &v, &mut out)?;
        }
        written += chunk.len();
        progress(written);
    }
    out.flush().map_err(crate::output::stdout_error)?;
    no_offset.warn();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Audit (s20): marks were lossy (bytes that are not UTF-8 as U+FFFD, control characters
    /// as `?`), so two arrays' lists could name one array. Different names get different
    /// marks; a plain name's mark is the name, as before.
    #[test]
    fn marks_of_different_names_differ() {
        use std::os::unix::ffi::OsStrExt;
        let names: [&[u8]; 9] = [
            b"a\xff.npy",
            b"a\xfe.npy",
            b"a\xef\xbf\xbd.npy",
            br"a\xff.npy",
            b"a\x01.npy",
            b"a\x02.npy",
            b"a?.npy",
            b"a\xc2\x85.npy",
            br"a\u{0085}.npy",
        ];
        let marks: Vec<String> = names
            .iter()
            .map(|n| mark_name(Path::new(std::ffi::OsStr::from_bytes(n))).unwrap())
            .collect();
        for (i, a) in marks.iter().enumerate() {
            assert!(!a.contains(['\n', '\r']), "{a:?}");
            for b in &marks[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(marks[0], r"a\xff.npy");
        assert_eq!(marks[3], r"a\\xff.npy");
        assert_eq!(
            mark_name(Path::new("dir/caf\u{e9} v.npy")).unwrap(),
            "caf\u{e9} v.npy"
        );
    }

    /// Review of 2199c21: the `[UNK]` warning checked each occurrence against the words named
    /// so far (quadratic). Its one-pass replacement must still count each distinct word once,
    /// name the first five in input order and place the first, however often they repeat.
    #[test]
    fn unknown_words_are_counted_once_and_the_first_five_named_in_order() {
        let file = Path::new("p.tsv");
        let words: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
        let mut pairs = vec![("dog", "cat", file, 1)];
        // 50 distinct unknown words, each in 400 pairs, mixed with known ones.
        for round in 0..400 {
            for (i, w) in words.iter().enumerate() {
                let line = 2 + round * words.len() + i;
                pairs.push((
                    w.as_str(),
                    if i % 2 == 0 { "cat" } else { w.as_str() },
                    file,
                    line,
                ));
            }
        }
        let unknown = |w: &str| w.starts_with('u');
        let ((f, line), count, shown) = unknown_word_summary(&pairs, unknown).unwrap();
        assert_eq!((f, line), (file, 2));
        assert_eq!(count, 50);
        assert_eq!(shown, ["u0", "u1", "u2", "u3", "u4"]);
        // A tail seen first counts as first; fewer than five are all named.
        let few = [
            ("dog", "u9", file, 7),
            ("u9", "u1", file, 8),
            ("cat", "dog", file, 9),
        ];
        let ((_, line), count, shown) = unknown_word_summary(&few, unknown).unwrap();
        assert_eq!((line, count, shown), (7, 2, vec!["u9", "u1"]));
        assert!(unknown_word_summary(&[("dog", "cat", file, 1)], unknown).is_none());
    }

    /// `embed_into` locked standard output for the whole run, also when the vectors went to a
    /// file: a library caller's thread that printed waited for the encoding, and one that
    /// held standard output kept the call from starting. Into a file it now runs to the end
    /// while another thread holds standard output (that thread lets go once the call ends,
    /// or after 30 s, when the call had waited for it).
    #[test]
    fn an_embed_into_a_file_leaves_standard_output_alone() {
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let encoder = RelationEncoder::load(&model, &Default::default()).unwrap();
        let text = "dog\tpuppy\ncat\tkitten\ndog\tpuppy\n";
        let records = crate::pairs::parse_pairs(text.as_bytes(), Path::new("<test>")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("v.jsonl");
        let (held, holding) = std::sync::mpsc::channel();
        let (ended, end) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _stdout = std::io::stdout().lock();
            held.send(()).unwrap();
            end.recv_timeout(std::time::Duration::from_secs(30)).is_ok()
        });
        holding.recv().unwrap();
        let format = crate::output::Format::Jsonl;
        let mut sink = Sink::open(format, Some(&out), records.len(), encoder.dim(), false).unwrap();
        embed_into(&encoder, &records, &mut sink, false, &|_| {}).unwrap();
        let _ = ended.send(());
        assert!(
            holder.join().unwrap(),
            "the call waited for standard output"
        );
        sink.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 3);
    }

    /// Review R5 of 32d4121: with --force the old array is removed before the new pair list
    /// is renamed; a rename that then failed threw the new array away too (its temporary
    /// file removed), and neither was left. Both new files are kept now, and named.
    #[test]
    fn a_commit_that_fails_after_removing_the_old_array_keeps_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let array = dir.path().join("a.npy");
        let list = pairs_sidecar(&array);
        std::fs::write(&array, "old array").unwrap();
        std::fs::write(&list, "old list\n").unwrap();
        let mut sink = Sink::open(crate::output::Format::Npy, Some(&array), 1, 2, true).unwrap();
        sink.write_pair("dog", "cat", None, &[1.0, 0.0], &mut Vec::new())
            .unwrap();
        // The pair list's name is a directory by the time of the rename, which fails
        // (a file cannot be renamed over a directory).
        std::fs::remove_file(&list).unwrap();
        std::fs::create_dir(&list).unwrap();
        std::fs::write(list.join("x"), "").unwrap();
        let err = sink.commit().unwrap_err().to_string();
        let kept = crate::output::temp_path(&array);
        assert!(!array.exists(), "the old array is gone, as before");
        assert!(
            std::fs::read(&kept).unwrap().starts_with(b"\x93NUMPY"),
            "{err}"
        );
        assert!(err.contains(&kept.display().to_string()), "{err}");
        assert!(crate::output::temp_path(&list).is_file(), "{err}");
    }
}
