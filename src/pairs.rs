//! Word-pair files: `head<TAB>tail[<TAB>label]` per line, blank lines and `#` lines skipped
//! ([`skipped_line`]), a first line `head<TAB>tail<TAB>label` too ([`is_column_header`]), in
//! UTF-8 ([`not_text`] names UTF-16).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{quoted, Error, Result};

/// One pair read from a pair file, or held in memory ([`PairRecord::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairRecord {
    /// The first word (may contain spaces).
    pub head: String,
    /// The second word.
    pub tail: String,
    /// Optional label from the third column.
    pub label: Option<String>,
    /// 1-based line number in the source (for pairs in memory, the pair's number).
    pub line: usize,
    /// The source file (`<stdin>` for standard input, [`IN_MEMORY`] for pairs in memory),
    /// shared by its records.
    pub file: Arc<Path>,
    /// The head and tail as the file spells them, when [`read_word`] changed them beyond
    /// the spaces around them (it dropped an invisible character, or made a run of spaces
    /// inside a word one space); `None` otherwise. A relbert before words were read so
    /// stored them as spelled, hashed them into a build's identity ([`records_identity`])
    /// and made Qdrant point ids of them: the same file must still find, remove and resume
    /// what it made. Boxed: almost every record has none.
    pub typed: Option<Box<(String, String)>>,
}

/// Where [`PairRecord::new`] and [`records_of`] say their records come from.
pub const IN_MEMORY: &str = "<memory>";

impl PairRecord {
    /// A pair held in memory, read as a pair file's line is ([`parse_pairs`]): the words
    /// through [`read_word`], an empty label as none. Refused, with an [`Error::Parse`] of
    /// [`IN_MEMORY`] at `line` (number the pairs from 1, so that a message names the pair):
    /// a word that is empty once read; a word or label holding a tab, line end or NUL byte,
    /// or a head starting with `#`, which a pair file cannot hold (a copy of the pairs
    /// written for a resumed build would split the line, refuse it or skip it as a comment);
    /// and a pair the prompt cannot hold (a word that is a template placeholder). One
    /// difference from a file: a byte-order mark at the start of a file's first line is no
    /// part of its first word, while one at the start of a head here is read as every other
    /// invisible character is (dropped, the spelling kept in [`Self::typed`]).
    /// [`records_of`] makes a list of them.
    pub fn new(head: &str, tail: &str, label: Option<&str>, line: usize) -> Result<PairRecord> {
        Self::in_memory(head, tail, label, line, &Arc::from(Path::new(IN_MEMORY)))
    }

    /// [`Self::new`] with the source's name shared (by [`records_of`]'s records).
    fn in_memory(
        head: &str,
        tail: &str,
        label: Option<&str>,
        line: usize,
        file: &Arc<Path>,
    ) -> Result<PairRecord> {
        let err = |message: String| Error::Parse {
            path: PathBuf::from(IN_MEMORY),
            line,
            message,
        };
        let fields = [Some(head), Some(tail), label];
        if let Some(f) = fields
            .iter()
            .flatten()
            .find(|f| f.contains(['\t', '\n', '\r', '\0']))
        {
            return Err(err(format!(
                "{} holds a tab, line end or NUL byte, which no pair file can hold",
                quoted(f)
            )));
        }
        if matches!(skipped_line(head), Some(SkippedLine::Comment)) {
            return Err(err(format!(
                "{} starts with #, which a pair file reads as a comment",
                quoted(head)
            )));
        }
        Self::read(head, tail, label, line, file, || format!("{head}\t{tail}")).map_err(err)
    }

    /// One pair's fields as a pair file's line (`shown` gives it) holds them (`head`,
    /// `tail`, the optional label), read as [`parse_pairs`] reads them; the problem, quoting
    /// the line, when they are no pair.
    fn read(
        head: &str,
        tail: &str,
        label: Option<&str>,
        line: usize,
        file: &Arc<Path>,
        shown: impl Fn() -> String,
    ) -> std::result::Result<PairRecord, String> {
        // Read as a query reads its words ([`read_word`]): otherwise two copies of one pair
        // are stored, or a query finds neither.
        let (h, t) = (read_word(head), read_word(tail));
        if blank_word(&h) || blank_word(&t) {
            return Err(format!(
                "empty word (nothing but spaces or characters a tokenizer drops: invisible \
                 ones, lone accents, U+FFFD) in {}",
                quoted(&shown())
            ));
        }
        // The reference refuses such a pair: its template filling would put the word's
        // placeholder to use ((`<obj>`, paris) was the prompt of (paris, paris)).
        if let Some(problem) = crate::prompt::placeholder_problem(&h, &t) {
            return Err(format!("{problem} (in {})", quoted(&shown())));
        }
        // Kept only when reading changed more than the spaces around the words.
        let typed = (h != head.trim() || t != tail.trim())
            .then(|| Box::new((head.trim().to_string(), tail.trim().to_string())));
        Ok(PairRecord {
            head: h,
            tail: t,
            typed,
            label: label
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            line,
            file: file.clone(),
        })
    }

    /// `file:line`, for messages.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// The spellings a lookup of this pair tries: as read, then as the file spells them
    /// when that differs ([`Self::typed`]: an older relbert stored, and made Qdrant ids of,
    /// the words with the invisible characters reading drops now and the runs of spaces it
    /// makes one).
    pub fn spellings(&self) -> impl Iterator<Item = (&str, &str)> {
        std::iter::once((self.head.as_str(), self.tail.as_str()))
            .chain(self.typed.as_deref().map(|(h, t)| (h.as_str(), t.as_str())))
    }

    /// Every spelling under which a store may hold this pair, for `index add` and `index
    /// remove` to find it as a query does: [`Self::spellings`], then each with its
    /// apostrophes spelled otherwise ([`crate::query::APOSTROPHES`]; `don’t` finds the stored
    /// `don't`). Without repeats.
    pub fn lookup_spellings(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut push = |h: &str, t: &str| {
            if !out.iter().any(|(a, b)| a == h && b == t) {
                out.push((h.to_string(), t.to_string()));
            }
        };
        for (h, t) in self.spellings() {
            push(h, t);
        }
        for (h, t) in self.spellings() {
            for (h, t) in crate::query::apostrophe_spellings(h, t) {
                push(&h, &t);
            }
        }
        out
    }

    /// The pair as one key whatever its spelling (Unicode normal form, runs of spaces,
    /// apostrophes): two records of one input with the same key are one pair, the second a
    /// repeat.
    pub fn key(&self) -> (String, String) {
        let fold = |w: &str| {
            let c = relbert_index::pairs::canonical(w);
            if c.contains(crate::query::APOSTROPHES) {
                c.replace(crate::query::APOSTROPHES, "'")
            } else {
                c.into_owned()
            }
        };
        (fold(&self.head), fold(&self.tail))
    }

    /// The head and tail as the file spells them ([`Self::typed`]), or as read when that is
    /// the same.
    pub fn as_written(&self) -> (&str, &str) {
        match &self.typed {
            Some(t) => (t.0.as_str(), t.1.as_str()),
            None => (self.head.as_str(), self.tail.as_str()),
        }
    }
}

/// The identity of a list of records: `sha256:<hex>` over every head, tail and label in order,
/// the head and tail as the file spells them ([`PairRecord::as_written`]). An interrupted
/// index build records it and refuses to resume on other input. As written, not as read:
/// a build an older relbert (which kept invisible characters and runs of spaces in words)
/// left half done recorded that hash, and the same file resumes it.
pub fn records_identity(records: &[PairRecord]) -> String {
    identity(records, PairRecord::as_written)
}

/// The identity of a list of records over the words as read (without the invisible
/// characters [`read_word`] drops, runs of spaces one space), for the source of a Qdrant
/// load. Not as written: a load's point ids are made from the words as read, while a
/// collection an older relbert loaded from a file holding such words has ids of the words
/// as written. Taken for the same source, a rerun would find those points missing under
/// their new ids and send them again (a second copy, or a pair `index remove` took out
/// back); as another source, the load is refused as any other source's is.
pub fn records_identity_as_read(records: &[PairRecord]) -> String {
    identity(records, |r| (r.head.as_str(), r.tail.as_str()))
}

fn identity(records: &[PairRecord], words: impl Fn(&PairRecord) -> (&str, &str)) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for r in records {
        let (head, tail) = words(r);
        // Lengths first, so no two different lists hash the same bytes.
        for part in [Some(head), Some(tail), r.label.as_deref()] {
            match part {
                Some(p) => {
                    h.update((p.len() as u64).to_le_bytes());
                    h.update(p.as_bytes());
                }
                None => h.update(u64::MAX.to_le_bytes()),
            }
        }
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A pair repeated with another label than the one kept: an index stores a pair once, with
/// the label of its first occurrence (in its Unicode normal form: see
/// [`relbert_index::pairs::same_spelling`]), so the repeat's label is lost. Said in a warning
/// ([`warn_label_conflicts`]) rather than silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelConflict {
    /// The repeated pair, as the dropped record spells it.
    pub pair: [String; 2],
    /// Where the kept pair is: `file:line`, or the index directory and row.
    pub kept_at: String,
    /// The kept pair's label.
    pub kept_label: Option<String>,
    /// `file:line` of the dropped record.
    pub dropped_at: String,
    /// The dropped record's label.
    pub dropped_label: String,
}

impl std::fmt::Display for LabelConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = match &self.kept_label {
            Some(l) => format!("label {l:?}"),
            None => "no label".into(),
        };
        write!(
            f,
            "{}: {} : {} is already at {} (kept, with {kept}); its label {:?} is dropped",
            self.dropped_at, self.pair[0], self.pair[1], self.kept_at, self.dropped_label
        )
    }
}

/// The records of `records` that repeat an earlier one's pair (the same after
/// [`relbert_index::pairs::canonical`], as an index build compares them) with a label that is
/// not the first's: a build keeps the first record and its label, so each of these loses
/// its label. A repeat without a label, or with the first's, loses nothing.
pub fn label_conflicts(records: &[PairRecord]) -> Vec<LabelConflict> {
    use relbert_index::pairs::canonical;
    use std::collections::hash_map::{Entry, HashMap};
    let mut first: HashMap<(String, String), usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let key = (
            canonical(&r.head).into_owned(),
            canonical(&r.tail).into_owned(),
        );
        match first.entry(key) {
            Entry::Vacant(v) => {
                v.insert(i);
            }
            Entry::Occupied(o) => {
                let kept = &records[*o.get()];
                out.extend(conflict(r, kept.location(), kept.label.as_deref()));
            }
        }
    }
    out
}

/// The conflicts of adding `records` to `index` ([`label_conflicts`], plus each record whose
/// pair the index holds, in any Unicode normal form, under another label: `index add` keeps
/// the stored one). `rows` is each record's row in `index` ([`relbert_index::Index::lookup`],
/// which the caller has already asked).
pub fn add_label_conflicts(
    index: &relbert_index::Index,
    records: &[PairRecord],
    rows: &[Option<usize>],
) -> Result<Vec<LabelConflict>> {
    let mut out = Vec::new();
    let mut new = Vec::new();
    for (r, row) in records.iter().zip(rows) {
        match *row {
            Some(row) => {
                let kept = index.pair(row)?;
                let at = format!("{} (row {row})", index.dir().display());
                out.extend(conflict(r, at, kept.label));
            }
            None => new.push(r.clone()),
        }
    }
    out.extend(label_conflicts(&new));
    Ok(out)
}

/// The conflict of dropping `r` for a kept pair at `kept_at` labelled `kept`, if `r` loses
/// a label by it.
fn conflict(r: &PairRecord, kept_at: String, kept: Option<&str>) -> Option<LabelConflict> {
    let dropped = r.label.as_deref().filter(|l| Some(*l) != kept)?;
    Some(LabelConflict {
        pair: [r.head.clone(), r.tail.clone()],
        kept_at,
        kept_label: kept.map(str::to_string),
        dropped_at: r.location(),
        dropped_label: dropped.to_string(),
    })
}

/// How many label conflicts [`warn_label_conflicts`] names one by one: the shared lexical
/// data repeats about 9,900 pairs under another label (mostly `COORD` and `coord`), which
/// would bury every other message.
pub const LABEL_CONFLICTS_SHOWN: usize = 5;

/// The warning lines for `conflicts`: the first [`LABEL_CONFLICTS_SHOWN`] each on a line,
/// then one line counting the rest.
pub fn label_conflict_lines(conflicts: &[LabelConflict]) -> Vec<String> {
    let mut lines: Vec<String> = conflicts
        .iter()
        .take(LABEL_CONFLICTS_SHOWN)
        .map(|c| c.to_string())
        .collect();
    let rest = conflicts.len().saturating_sub(LABEL_CONFLICTS_SHOWN);
    if rest > 0 {
        lines.push(format!(
            "... and {rest} more repeated pairs whose label is dropped ({} in all; the first \
             label of each pair is kept)",
            conflicts.len()
        ));
    }
    lines
}

/// Logs [`label_conflict_lines`] as warnings.
pub fn warn_label_conflicts(conflicts: &[LabelConflict]) {
    for line in label_conflict_lines(conflicts) {
        tracing::warn!("{line}");
    }
}

/// Records of pairs held in memory, `(head, tail, label)`, numbered from 1 in the order
/// given ([`PairRecord::new`], which says what is refused): what
/// [`crate::indexing::build_index`] and [`crate::indexing::add_to_index`] take, without
/// writing a pair file first.
pub fn records_of<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a str>)>,
) -> Result<Vec<PairRecord>> {
    let file: Arc<Path> = Arc::from(Path::new(IN_MEMORY));
    pairs
        .into_iter()
        .enumerate()
        .map(|(i, (head, tail, label))| PairRecord::in_memory(head, tail, label, i + 1, &file))
        .collect()
}

/// Parses pair lines from a reader; `path` names the source in errors. What it skipped that
/// may not have been meant (`parse_pairs_noting`) is logged.
pub fn parse_pairs(reader: impl Read, path: &Path) -> Result<Vec<PairRecord>> {
    let (records, notes) = parse_pairs_noting(reader, path)?;
    for note in notes {
        match note {
            Note::Info(m) => tracing::info!("{m}"),
            Note::Warn(m) => tracing::warn!("{m}"),
        }
    }
    Ok(records)
}

/// A message about a pair file read, for the log: what reading it skipped that the user may
/// have meant as pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Note {
    /// Skipped as documented (a column header), said so the pair count adds up.
    Info(String),
    /// Skipped by a rule the file may not have been written for (a hashtag read as a comment).
    Warn(String),
}

/// [`parse_pairs`], with its messages returned rather than logged (so tests can read them).
fn parse_pairs_noting(reader: impl Read, path: &Path) -> Result<(Vec<PairRecord>, Vec<Note>)> {
    let file: Arc<Path> = Arc::from(path);
    let mut notes = Vec::new();
    let mut out = Vec::new();
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    let mut lineno = 0;
    // Where the next line starts in the source: which byte of a UTF-16 code unit a NUL is.
    let mut offset: u64 = 0;
    // The count a `relbert pairs mine` list promises in its first line, and whether the last
    // line read had its line end: a list relbert wrote always ends with one.
    let mut promised: Option<usize> = None;
    let mut cut = false;
    // Whether the next line with fields may be a column header: only the first, and none in a
    // list relbert wrote (a copy of standard input holds only the pairs not yet in the index,
    // so its first may be a pair `head : tail` that stood later in the input).
    let mut header_next = true;
    // The comment lines that read as pairs (`#metoo<TAB>movement`): the first one's line and
    // text, and how many.
    let mut hashed: Option<(usize, String)> = None;
    let mut hashed_n = 0usize;
    loop {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf);
        let cannot = |message: String| Error::Parse {
            path: path.to_path_buf(),
            line: lineno + 1,
            message,
        };
        if read.map_err(|e| cannot(format!("cannot read line: {e}")))? == 0 {
            break;
        }
        lineno += 1;
        cut = buf.last() != Some(&b'\n');
        let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        // Before the UTF-8 check: a UTF-16 file was refused as "not valid UTF-8" with no
        // hint (with a byte-order mark), named as a line without a tab (little-endian, whose
        // second line starts with a NUL byte) or read as words full of NUL bytes (big-endian).
        if let Some(message) = not_text(bytes, offset.is_multiple_of(2)) {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                line: lineno,
                message,
            });
        }
        offset += buf.len() as u64;
        let line = std::str::from_utf8(bytes).map_err(|_| Error::Parse {
            path: path.to_path_buf(),
            line: lineno,
            message: "cannot read line: stream did not contain valid UTF-8".into(),
        })?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if lineno == 1 {
            let first = line.strip_prefix('\u{feff}').unwrap_or(line);
            // Its `term<TAB>count` lines read as pairs, and the header as a comment: an
            // index was given the vocabulary's words paired with their counts.
            if first.starts_with(crate::output::MINED_VOCAB_MARK) {
                return Err(Error::Parse {
                    path: path.to_path_buf(),
                    line: 1,
                    message: format!(
                        "this is {}, not a pair list; give the pair list (the --out of relbert \
                         pairs mine)",
                        MINED_VOCAB_WHAT
                    ),
                });
            }
            promised = mined_count(first);
            header_next = relbert_list_kind(first).is_none();
        }
        // A byte-order mark (editors on Windows write one) is not part of the first word.
        let line = if lineno == 1 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        match skipped_line(line) {
            Some(SkippedLine::Comment) if hashtag_pair(line) => {
                hashed_n += 1;
                hashed.get_or_insert_with(|| (lineno, line.to_string()));
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let err = |message: String| Error::Parse {
            path: path.to_path_buf(),
            line: lineno,
            message,
        };
        if line.contains('\r') {
            return Err(err(
                "a carriage return inside the line: the file has old Mac (CR-only) line ends; \
                 convert them to \\n (or \\r\\n)"
                    .into(),
            ));
        }
        if std::mem::take(&mut header_next) {
            // Read as the words are: a byte-order mark from `cat` starts a later line.
            let words: Vec<String> = cols.iter().map(|c| read_word(c)).collect();
            let fields: Vec<&str> = words.iter().map(String::as_str).collect();
            // `relbert bench` skips it too; read as a pair, `head : tail` was indexed and
            // came back as an answer.
            if is_column_header(&fields) {
                notes.push(Note::Info(format!(
                    "{}:{lineno}: skipped the column header {}",
                    path.display(),
                    quoted(line)
                )));
                continue;
            }
        }
        if cols.len() < 2 || cols.len() > 3 {
            return Err(err(format!(
                "expected head<TAB>tail[<TAB>label], found {} tab-separated field(s) in {}",
                cols.len(),
                quoted(line)
            )));
        }
        out.push(
            PairRecord::read(
                cols[0],
                cols[1],
                cols.get(2).copied(),
                lineno,
                &file,
                || line.to_string(),
            )
            .map_err(err)?,
        );
    }
    if let Some((at, text)) = hashed {
        let (lines, reads) = if hashed_n == 1 {
            ("line", "reads as a pair was skipped as a comment")
        } else {
            ("lines", "read as pairs were skipped as comments")
        };
        notes.push(Note::Warn(format!(
            "{}:{at}: {hashed_n} {lines} starting with # that {reads} (the first: {}): a pair \
             file's head cannot start with #; put a space after the # to comment a line out \
             without this warning",
            path.display(),
            quoted(&text)
        )));
    }
    if let Some(n) = promised {
        if cut {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                line: lineno,
                message: format!(
                    "the last line has no line end: this list from relbert pairs mine (of {n} \
                     pairs, its first line says) was cut short; did the program writing it stop \
                     early? Run it again"
                ),
            });
        }
        if n != out.len() {
            // Filtered (`grep -v`) or edited lists are fine; say it in case it was not meant.
            tracing::warn!(
                "{}: its first line says relbert pairs mine wrote {n} pairs; {} read",
                path.display(),
                out.len()
            );
        }
    }
    Ok((out, notes))
}

/// Whether `fields` (each read as a word) are a column header rather than a pair: `head`,
/// `tail` and `label` (or `relation`), in any letter case. Such a first line of a pair file,
/// and of a `relbert bench` classification file, is skipped, not read as the pair
/// `head : tail` (of a class called `label`).
pub fn is_column_header(fields: &[&str]) -> bool {
    match fields {
        [h, t, l] => {
            h.eq_ignore_ascii_case("head")
                && t.eq_ignore_ascii_case("tail")
                && (l.eq_ignore_ascii_case("relation") || l.eq_ignore_ascii_case("label"))
        }
        _ => false,
    }
}

/// Whether a comment line ([`SkippedLine::Comment`]) reads as a pair whose head is a hashtag:
/// the `#` right before a letter or digit, and a tab splitting the line into two or three
/// fields with something in each (`#metoo<TAB>movement`). Such a line is still a comment
/// (lists rely on the rule), but it was dropped without a word. `# a<TAB>b`, with a space,
/// is how a pair is commented out, and a commented-out column header is no pair.
fn hashtag_pair(line: &str) -> bool {
    let bare = line
        .trim_start_matches(|c: char| c.is_whitespace() || crate::corpus::tokenize::invisible(c));
    let Some(after) = bare.strip_prefix('#') else {
        return false;
    };
    if !after.starts_with(char::is_alphanumeric) {
        return false;
    }
    let fields: Vec<&str> = after.split('\t').map(str::trim).collect();
    (2..=3).contains(&fields.len())
        && !fields.iter().any(|f| blank_word(f))
        && !is_column_header(&fields)
}

/// What a file starting with [`crate::output::MINED_VOCAB_MARK`] is, for messages.
const MINED_VOCAB_WHAT: &str = "the vocabulary relbert pairs mine --save-vocab writes \
                                (term<TAB>count lines)";

/// What a list relbert wrote is, by its first line ([`crate::output::MINED_PAIRS_MARK`],
/// [`crate::output::MINED_VOCAB_MARK`], the mark of the pair list beside an `.npy` array,
/// an index's input spool); `None` for any other line. A word list (`--terms`,
/// `--stopwords`) that starts so is one of relbert's outputs given by mistake.
pub fn relbert_list_kind(first_line: &str) -> Option<&'static str> {
    let line = first_line.strip_prefix('\u{feff}').unwrap_or(first_line);
    if line.starts_with(crate::output::MINED_PAIRS_MARK) {
        Some("a pair list relbert pairs mine wrote")
    } else if line.starts_with(crate::output::MINED_VOCAB_MARK) {
        Some(MINED_VOCAB_WHAT)
    } else if crate::embed::sidecar_owner(line).is_some() {
        Some("the pair list relbert writes beside an .npy array")
    } else if line.starts_with(relbert_index::SPOOL_MAGIC) {
        Some("an index's input spool (a pair list relbert keeps)")
    } else {
        None
    }
}

/// The pair count in the first line of a `relbert pairs mine` list
/// (`# relbert pairs mine: N pairs from ...`), if `line` is one.
fn mined_count(line: &str) -> Option<usize> {
    let rest = line.strip_prefix(crate::output::MINED_PAIRS_MARK)?;
    let n = rest.strip_prefix(": ")?.split_once(" pairs")?.0;
    n.parse().ok()
}

/// A word as every command reads it (a pair file's head and tail, a query's words on the
/// command line, on standard input and in `relbert serve`'s requests): without the spaces
/// around it, and without the invisible format characters a BERT tokenizer drops
/// ([`crate::corpus::tokenize::invisible`]: the soft hyphen, zero width space, byte order
/// mark, direction marks, word joiner). Kept in a word, they were invisible in every message
/// and listing while its lookups and comparisons still saw them: a stored pair typed with a
/// soft hyphen was encoded instead of found, and came back as its own result. To a BERT
/// tokenizer the word was the word without them (one vector for both spellings); RoBERTa's
/// byte-level BPE keeps them, so there it was another vector for what reads as one word
/// (the file's spelling is kept on [`PairRecord::typed`] for what an older relbert stored). The joiners
/// ZWNJ and ZWJ stay: they are spelling in Persian, Indic scripts and emoji. A multi-word
/// term keeps one space between its words ([`single_spaced`]): `new  york`, or `new york`
/// with a no-break space, is `new york`. A BERT tokenizer splits words at any run of
/// spaces, so they were one prompt (RoBERTa's byte-level BPE tells them apart, as it does
/// the invisible characters), but two pairs to an index (stored twice, and a query typed one
/// way missed the pair stored the other), and two Qdrant points. (`paris \tfrance` in a
/// pair file is paris : france: the tab separates the words.)
pub fn read_word(w: &str) -> String {
    let w = w.trim();
    if !w.contains(crate::corpus::tokenize::invisible) {
        return single_spaced(w).into_owned();
    }
    let kept: String = w
        .chars()
        .filter(|&c| !crate::corpus::tokenize::invisible(c))
        .collect();
    // `\u{200b} dog` leaves a space in front once the invisible character is gone, and
    // `new \u{200b} york` two inside.
    single_spaced(&kept).into_owned()
}

/// `text` with each run of spaces inside it one ASCII space, and no whitespace around it;
/// borrowed when it is so already (most text). A space is any whitespace that is no control
/// character ([`char::is_whitespace`]: the ASCII, no-break, ideographic and other Unicode
/// spaces, the line and paragraph separators), as a BERT tokenizer splits words at it. A
/// tab or line break inside stays: it is a control character, which a pair file reads as
/// a separator and a query refuses in a word ([`crate::prompt::check_words`]) rather than
/// read as another word. How words are read ([`read_word`]) and compared where an index an
/// older relbert built may hold a run of spaces (the server's suggestions).
pub fn single_spaced(text: &str) -> std::borrow::Cow<'_, str> {
    let text = text.trim();
    let space = |c: char| c.is_whitespace() && !c.is_control();
    let mut after_space = false;
    let single = text.chars().all(|c| {
        let ok = !space(c) || (c == ' ' && !after_space);
        after_space = space(c);
        ok
    });
    if single {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    // Trimmed: a space is always followed by a character that is none.
    let mut pending = false;
    for c in text.chars() {
        if space(c) {
            pending = true;
        } else {
            if pending {
                out.push(' ');
                pending = false;
            }
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether a word has nothing a model reads: only spaces, or characters a BERT tokeniser
/// drops before it splits (`dropped_char`). Such a word vanished from the prompt, so every
/// pair holding one got the same vector; it is refused as an empty word. The test is the
/// same for every model, so that a pair file, a query and a server refuse one set of words
/// whichever model reads them: a word of combining accents alone is refused on a cased model
/// too, which reads it as `[UNK]`, and on RoBERTa, which reads its bytes, though it is no word
/// on either.
pub fn blank_word(w: &str) -> bool {
    w.chars().all(dropped_char)
}

/// Whether a BERT tokenizer's normalizer removes `c`, or splits words at it: spaces, controls,
/// format characters (zero-width space, soft hyphen, byte-order mark, word joiner),
/// private-use characters and U+FFFD (the replacement character), which every BERT
/// normalizer drops; and nonspacing marks (a combining accent U+0301, the variation selector
/// U+FE0F), with what decomposes into them alone, which an uncased one (the default model's)
/// drops with the accents it strips. The categories are the ones the tokenizer's normalizer
/// tests (`unicode_categories`), so a character it keeps is not refused for a newer table's
/// category.
fn dropped_char(c: char) -> bool {
    use unicode_categories::UnicodeCategories;
    if c.is_whitespace() || c.is_other() || c == '\u{fffd}' {
        return true;
    }
    // Accents are stripped after a canonical decomposition (NFD).
    let mut marks_only = true;
    unicode_normalization::char::decompose_canonical(c, |d| marks_only &= d.is_mark_nonspacing());
    marks_only
}

/// Why a line holds no pair, when [`skipped_line`] skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkippedLine {
    /// Nothing but spaces and invisible characters.
    Blank,
    /// Its first visible character is `#`.
    Comment,
}

impl SkippedLine {
    /// In words, as a query stream's JSON says it (`"skipped": "comment"`).
    pub fn as_str(self) -> &'static str {
        match self {
            SkippedLine::Blank => "blank line",
            SkippedLine::Comment => "comment",
        }
    }
}

/// Whether `line` (without its line end) is blank or a comment, for every reader of pair
/// lines: pair files and a query stream's lines alike. Spaces and the invisible characters
/// a word is read without ([`read_word`]) do not count: an indented `#`, or one behind a zero
/// width space or a byte-order mark (files put together with `cat` have one at the start of
/// a later line), starts a comment, and a line of them alone is blank. Pair files tested the
/// line as it was, so such a comment was a bad line or, with a tab, a pair whose head
/// started with `#` (which every pair list relbert writes would read as a comment), while
/// a query stream skipped it.
pub fn skipped_line(line: &str) -> Option<SkippedLine> {
    let bare = line
        .trim_start_matches(|c: char| c.is_whitespace() || crate::corpus::tokenize::invisible(c));
    if bare.is_empty() {
        Some(SkippedLine::Blank)
    } else if bare.starts_with('#') {
        Some(SkippedLine::Comment)
    } else {
        None
    }
}

/// Why the bytes of a line (without its `\n`) are no text to read pairs from, if so: a
/// UTF-16 or UTF-32 byte-order mark, or a NUL byte, which no model has a use for and UTF-8
/// text holds only by mistake. NUL bytes between the letters are UTF-16 without a mark (the
/// message names the byte order to convert from); `at_even` says whether the line starts at
/// an even byte of its source, which decides whether a NUL is the high or the low byte.
/// A UTF-16 file was otherwise refused as "not valid UTF-8", or for a line of its without
/// a tab, or read as words full of NUL bytes.
pub fn not_text(bytes: &[u8], at_even: bool) -> Option<String> {
    let convert = |what: &str, from: &str| {
        format!("this looks like {what}; convert it to UTF-8 (iconv -f {from} -t UTF-8)")
    };
    for (mark, named, from) in [
        (&b"\xff\xfe\0\0"[..], "FF FE 00 00", "UTF-32"),
        (b"\0\0\xfe\xff", "00 00 FE FF", "UTF-32"),
        (b"\xff\xfe", "FF FE", "UTF-16"),
        (b"\xfe\xff", "FE FF", "UTF-16"),
    ] {
        if bytes.starts_with(mark) {
            return Some(convert(
                &format!("{from} (a {named} byte-order mark)"),
                from,
            ));
        }
    }
    let first = bytes.iter().position(|&b| b == 0)?;
    let nuls = bytes.iter().filter(|&&b| b == 0).count();
    // Text of Latin letters in UTF-16 is half NUL bytes; a stray NUL in UTF-8 text is one.
    if nuls * 4 >= bytes.len() && bytes.len() > 1 {
        // The high byte of a Latin letter is the NUL: first in big-endian order.
        let high_first = bytes
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == 0 && i.is_multiple_of(2) == at_even)
            .count();
        let from = if high_first * 2 > nuls {
            "UTF-16BE"
        } else {
            "UTF-16LE"
        };
        return Some(convert("UTF-16 (NUL bytes between the letters)", from));
    }
    Some(format!(
        "a NUL byte (at byte {}): no model has a use for one, and text holds none (is this a \
         binary file?); remove it",
        first + 1
    ))
}

/// Reads a pair file, or standard input for `-`. A directory is refused as a value of
/// `--pairs` (every command reading pair files takes them by that flag).
pub fn read_pairs(path: &Path) -> Result<Vec<PairRecord>> {
    if path == Path::new("-") {
        parse_pairs(std::io::stdin().lock(), &PathBuf::from("<stdin>"))
    } else {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // A directory opens, and its first read fails: that was reported as the first line's
        // ("somedir:1: cannot read line: Is a directory"), as if the file had a bad line.
        if f.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Error::InvalidArgument {
                flag: "--pairs".into(),
                message: format!(
                    "{} is a directory; give a pair file (head<TAB>tail[<TAB>label] lines)",
                    path.display()
                ),
            });
        }
        parse_pairs(f, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pair held in memory is the record its line in a pair file gives (words read as a
    /// query reads them, the spelling kept, the label trimmed), numbered as given; what a
    /// file could not hold, or reading refuses, is refused naming the pair's number.
    #[test]
    fn pairs_in_memory_are_read_as_a_pair_files_lines() {
        let pairs = [
            ("paris", "france", Some(" capital ")),
            ("new\u{200b} york", " usa ", None),
            ("dog", "puppy", Some("")),
        ];
        let text: String = pairs
            .iter()
            .map(|(h, t, l)| {
                format!(
                    "{h}\t{t}{}\n",
                    l.map(|l| format!("\t{l}")).unwrap_or_default()
                )
            })
            .collect();
        let from_file = parse_pairs(text.as_bytes(), Path::new(IN_MEMORY)).unwrap();
        let in_memory = records_of(pairs).unwrap();
        assert_eq!(in_memory, from_file);
        assert_eq!(in_memory[1].head, "new york");
        assert!(in_memory[1].typed.is_some());
        assert_eq!(in_memory[2].label, None);
        assert_eq!(in_memory[2].location(), "<memory>:3");
        let refused = |pairs: Vec<(&'static str, &'static str, Option<&'static str>)>| {
            match records_of(pairs) {
                Err(Error::Parse {
                    path,
                    line,
                    message,
                }) => {
                    assert_eq!(path, Path::new(IN_MEMORY));
                    (line, message)
                }
                other => panic!("{other:?}"),
            }
        };
        let (line, m) = refused(vec![("a", "b", None), ("\u{200b}", "b", None)]);
        assert_eq!(line, 2);
        assert!(m.starts_with("empty word"), "{m}");
        assert!(m.ends_with(&format!("in {}", quoted("\u{200b}\tb"))), "{m}");
        let (line, m) = refused(vec![("a\tb", "c", None)]);
        assert_eq!(line, 1);
        assert!(m.contains("tab, line end or NUL"), "{m}");
        for bad in ["x\ny", "x\0"] {
            let (_, m) = refused(vec![("a", "b", Some(bad))]);
            assert!(m.contains("tab, line end or NUL"), "{m}");
        }
        for head in ["#metoo", "\u{200b}#x"] {
            let (_, m) = refused(vec![(head, "movement", None)]);
            assert!(m.contains("reads as a comment"), "{m}");
        }
        let (_, m) = refused(vec![("<obj>", "paris", None)]);
        assert!(m.contains("<obj>"), "{m}");
    }

    #[test]
    fn parses_and_skips() {
        let text = "# comment\nparis\tfrance\n\nNew York\tcity\tcapital\r\n";
        let p = parse_pairs(text.as_bytes(), Path::new("x.tsv")).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].line, 2);
        assert_eq!(p[1].head, "New York");
        assert_eq!(p[1].label.as_deref(), Some("capital"));
    }

    #[test]
    fn a_bom_and_spaces_around_words_are_not_part_of_them() {
        let text = "\u{feff}paris \tfrance\n new york\t usa \t capital \nrome\titaly\t\n";
        let p = parse_pairs(text.as_bytes(), Path::new("x.tsv")).unwrap();
        let got: Vec<_> = p
            .iter()
            .map(|r| (r.head.as_str(), r.tail.as_str(), r.label.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("paris", "france", None),
                ("new york", "usa", Some("capital")),
                ("rome", "italy", None)
            ]
        );
    }

    #[test]
    fn cr_only_line_ends_are_named() {
        let err = parse_pairs("a\tb\rc\td\r".as_bytes(), Path::new("mac.tsv")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("mac.tsv:1:") && msg.contains("CR-only"),
            "{msg}"
        );
    }

    /// Found by an audit: ` #tag<TAB>word` was stored with head `#tag`, and the pair list
    /// written beside an .npy array then read it as a comment, shifting every later row. It
    /// was then refused; it is a comment, as on a query stream (audit s26: `  # comment` and
    /// `\u{200b}# note` were bad lines of a pair file and comments of a stream).
    #[test]
    fn a_hash_after_spaces_or_invisible_characters_starts_a_comment() {
        let text = "a\tb\n #tag\tword\n  # indented comment\n\u{200b}# note\n\
                    \u{feff}# after files put together\n\u{200b}\n\u{200b} \u{feff}\t\nc\td\n";
        let p = parse_pairs(text.as_bytes(), Path::new("h.tsv")).unwrap();
        let got: Vec<_> = p
            .iter()
            .map(|r| (r.head.as_str(), r.tail.as_str(), r.line))
            .collect();
        assert_eq!(got, [("a", "b", 1), ("c", "d", 8)]);
        assert_eq!(skipped_line(" \u{200b}#x"), Some(SkippedLine::Comment));
        assert_eq!(
            skipped_line("\u{200b}\u{feff} \t"),
            Some(SkippedLine::Blank)
        );
        assert_eq!(skipped_line("a#\tb"), None);
        // A '#' inside a word, or starting the tail, is no comment anywhere.
        let p = parse_pairs("c#\t#tag\n".as_bytes(), Path::new("h.tsv")).unwrap();
        assert_eq!((p[0].head.as_str(), p[0].tail.as_str()), ("c#", "#tag"));
    }

    /// Words of nothing but invisible characters (zero-width space, soft hyphen, byte-order
    /// mark) vanished in the tokeniser, so every pair holding one got the same vector.
    #[test]
    fn invisible_words_are_empty_words() {
        for w in ["\u{200b}", "\u{00ad}", " \u{feff} ", "\u{2060}\u{e000}"] {
            let text = format!("dog\t{w}\n");
            let err = parse_pairs(text.as_bytes(), Path::new("i.tsv")).unwrap_err();
            assert!(err.to_string().contains("empty word"), "{w:?}: {err}");
        }
        assert!(!blank_word("caf\u{e9}") && !blank_word("\u{4e1c}") && !blank_word("a\u{200b}"));
    }

    /// Review: a word of characters the tokenizer deletes other than the invisible ones (a
    /// combining accent alone, U+FE0F alone, U+FFFD) was read as a word, so every pair holding
    /// one got one vector, the prompt's with nothing in the word's place. A word is blank
    /// exactly when an uncased BERT tokenizer (the default model's normalizer) reads it as no
    /// token at all, and a cased one never reads a word that is not blank as none: checked for
    /// every character, on the tiny fixture's tokenizer and an uncased copy of it (a word
    /// vanishes when each of its characters does: the normalizer works character by character).
    #[test]
    fn a_word_is_blank_when_a_bert_tokenizer_reads_nothing_of_it() {
        use rayon::prelude::*;
        use std::str::FromStr;
        for w in [
            "\u{301}",
            "\u{fe0f}",
            "\u{fffd}",
            "\u{301}\u{fe0f} \u{fffd}",
        ] {
            let text = format!("paris\t{w}\n");
            let err = parse_pairs(text.as_bytes(), Path::new("v.tsv")).unwrap_err();
            assert!(
                err.to_string().starts_with("v.tsv:1: empty word"),
                "{w:?}: {err}"
            );
        }
        assert!(!blank_word("e\u{301}") && !blank_word("\u{2764}\u{fe0f}"));
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tiny-bert/tokenizer.json"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(json["normalizer"]["type"], "BertNormalizer");
        let mut uncased = json.clone();
        uncased["normalizer"]["lowercase"] = serde_json::json!(true);
        uncased["normalizer"]["strip_accents"] = serde_json::Value::Null;
        for (json, uncased) in [(json, false), (uncased, true)] {
            let tok = tokenizers::Tokenizer::from_str(&json.to_string()).unwrap();
            let wrong: Vec<char> = (0..=u32::from(char::MAX))
                .into_par_iter()
                .filter_map(char::from_u32)
                .filter(|&c| {
                    let none = tok
                        .encode(c.to_string(), false)
                        .unwrap()
                        .get_ids()
                        .is_empty();
                    none != blank_word(&c.to_string()) && (uncased || none)
                })
                .collect();
            assert!(
                wrong.is_empty(),
                "uncased {uncased}: {:?}",
                &wrong[..wrong.len().min(20)]
            );
        }
    }

    /// Audit (s20): a word holding an invisible format character (a soft hyphen, a zero
    /// width space, a byte-order mark after the first line) was stored with it, while the
    /// tokenizer drops it: a query of the same word without it (or with it: queries drop
    /// it now) did not find the pair. Words are read without them, as queries read them; the
    /// joiners ZWJ and ZWNJ stay, and a label is kept as it is.
    #[test]
    fn invisible_characters_are_no_part_of_a_word() {
        let text = "dog\tpup\u{ad}py\tl\u{200b}\n\u{feff}cat \u{2060}\tkit\u{feff}ten\n\
                    \u{645}\u{200c}\u{646}\ta\u{200d}b\n";
        let p = parse_pairs(text.as_bytes(), Path::new("i.tsv")).unwrap();
        let got: Vec<_> = p
            .iter()
            .map(|r| (r.head.as_str(), r.tail.as_str(), r.label.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("dog", "puppy", Some("l\u{200b}")),
                ("cat", "kitten", None),
                ("\u{645}\u{200c}\u{646}", "a\u{200d}b", None)
            ]
        );
        // A line that starts with '#' once they are gone is a comment, as one that does.
        let p = parse_pairs("\u{200b}#tag\tword\n".as_bytes(), Path::new("h.tsv")).unwrap();
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(read_word(" \u{200b} new\u{ad} york \u{feff}"), "new york");
        assert_eq!(read_word("\u{200b}"), "");
    }

    /// Found by an audit: `relbert pairs mine --out - | relbert index build --pairs -` with
    /// the miner stopped mid-line built a short index whose last pair was cut in two words.
    #[test]
    fn a_mined_list_cut_short_is_refused() {
        let head = format!(
            "{}: 3 pairs from 1 files, window 5\n",
            crate::output::MINED_PAIRS_MARK
        );
        let whole = format!("{head}a\tb\tX of Y\nc\td\t\ne\tfg\t\n");
        assert_eq!(
            parse_pairs(whole.as_bytes(), Path::new("-")).unwrap().len(),
            3
        );
        let cut = &whole[..whole.len() - 3];
        let err = parse_pairs(cut.as_bytes(), Path::new("<stdin>")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("<stdin>:4: the last line has no line end"),
            "{err}"
        );
        // Filtered lists (fewer lines, each whole) are read; so are lists of other writers
        // without a final line end.
        let filtered = format!("{head}a\tb\n");
        assert_eq!(
            parse_pairs(filtered.as_bytes(), Path::new("-"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            parse_pairs("a\tb".as_bytes(), Path::new("-"))
                .unwrap()
                .len(),
            1
        );
    }

    /// Found by an audit: a pair repeated with another label kept the first label silently
    /// ("1 duplicates skipped"), and `index add` dropped a new label as "already there".
    #[test]
    fn a_repeat_with_another_label_is_a_conflict() {
        let text = "dog\tanimal\thyper\ndog\tanimal\tmero\ndog\tanimal\thyper\n\
                    dog\tanimal\ncat\tpet\ncat\tpet\tcompanion\n\
                    caf\u{e9}\tcr\u{e8}me\tfood\ncafe\u{301}\tcre\u{300}me\tdrink\n\
                    Dog\tAnimal\tother\n";
        let records = parse_pairs(text.as_bytes(), Path::new("lab.tsv")).unwrap();
        let got = label_conflicts(&records);
        let seen: Vec<(&str, &str, Option<&str>, &str)> = got
            .iter()
            .map(|c| {
                (
                    c.dropped_at.as_str(),
                    c.kept_at.as_str(),
                    c.kept_label.as_deref(),
                    c.dropped_label.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("lab.tsv:2", "lab.tsv:1", Some("hyper"), "mero"),
                ("lab.tsv:6", "lab.tsv:5", None, "companion"),
                ("lab.tsv:8", "lab.tsv:7", Some("food"), "drink"),
            ]
        );
        let line = got[0].to_string();
        for part in [
            "lab.tsv:2",
            "lab.tsv:1",
            "\"hyper\"",
            "\"mero\"",
            "dog : animal",
        ] {
            assert!(line.contains(part), "{part}: {line}");
        }
        // Many: five named, the rest counted.
        let many: Vec<LabelConflict> = std::iter::repeat_n(got[0].clone(), 12).collect();
        let lines = label_conflict_lines(&many);
        assert_eq!(lines.len(), LABEL_CONFLICTS_SHOWN + 1);
        assert!(
            lines[5].contains("7 more") && lines[5].contains("12 in all"),
            "{lines:?}"
        );
        assert!(label_conflict_lines(&got).len() == 3);
    }

    /// `index add` of a pair the index holds under another label (in any Unicode normal
    /// form) names the index row kept and the label dropped.
    #[test]
    fn adding_a_stored_pair_with_another_label_is_a_conflict() {
        use relbert_index::{EncoderInfo, HnswParams, IndexBuilder, IndexSpec, PairEntry};
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let spec = IndexSpec {
            dim: 2,
            precision: relbert_index::Precision::F32,
            encoder: EncoderInfo::default(),
            input: "test".into(),
        };
        let mut b = IndexBuilder::create_or_resume(&out, spec, false).unwrap();
        let stored = [
            PairEntry::new("cat", "pet"),
            PairEntry::labelled("caf\u{e9}", "cr\u{e8}me", "food"),
        ];
        b.append_chunk(&stored, &[1.0, 0.0, 0.0, 1.0]).unwrap();
        let params = HnswParams {
            m: 2,
            ef_construction: 2,
            threads: 1,
            ..HnswParams::default()
        };
        b.finish(params, |_| {}).unwrap();
        let index = relbert_index::Index::open(&out).unwrap();
        let text = "cat\tpet\tcompanion\ncafe\u{301}\tcre\u{300}me\tfood\n\
                    cafe\u{301}\tcre\u{300}me\tdrink\nnew\tpair\ta\nnew\tpair\tb\n";
        let records = parse_pairs(text.as_bytes(), Path::new("add.tsv")).unwrap();
        let rows: Vec<Option<usize>> = records
            .iter()
            .map(|r| index.lookup(&r.head, &r.tail).unwrap())
            .collect();
        let got = add_label_conflicts(&index, &records, &rows).unwrap();
        let seen: Vec<(&str, String, &str)> = got
            .iter()
            .map(|c| {
                let kept = c.kept_at.replace(&out.display().to_string(), "IDX");
                (c.dropped_at.as_str(), kept, c.dropped_label.as_str())
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("add.tsv:1", "IDX (row 0)".to_string(), "companion"),
                ("add.tsv:3", "IDX (row 1)".to_string(), "drink"),
                ("add.tsv:5", "add.tsv:4".to_string(), "b"),
            ]
        );
    }

    /// Review R10 (s20): a pair an older relbert stored with an invisible character is
    /// found by the words as the file spells them, and a build it left half done is resumed:
    /// the identity is over those words, as it was then.
    #[test]
    fn the_words_as_written_are_kept_and_make_the_identity() {
        let text = "dog\tpup\u{ad}py\tl\n cat \tkitten\n";
        let p = parse_pairs(text.as_bytes(), Path::new("i.tsv")).unwrap();
        assert_eq!(p[0].tail, "puppy");
        assert_eq!(p[0].as_written(), ("dog", "pup\u{ad}py"));
        // Spaces around a word are no change worth keeping.
        assert_eq!(p[1].typed, None);
        assert_eq!(p[1].as_written(), ("cat", "kitten"));
        // The hash an older relbert recorded: over the words as written.
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in ["dog", "pup\u{ad}py", "l", "cat", "kitten"] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
            if part == "kitten" {
                h.update(u64::MAX.to_le_bytes());
            }
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(records_identity(&p), format!("sha256:{hex}"));
        // A Qdrant load's source is over the words as read (review R12): its point ids are.
        let read = parse_pairs(
            "dog\tpuppy\tl\ncat\tkitten\n".as_bytes(),
            Path::new("r.tsv"),
        )
        .unwrap();
        assert_eq!(records_identity_as_read(&p), records_identity(&read));
        assert_ne!(records_identity_as_read(&p), records_identity(&p));
    }

    /// A run of whitespace inside a word (two spaces, a no-break or an ideographic space) is
    /// one space to a BERT tokenizer, which splits words at any of them, but made another
    /// pair of `new  york` than of `new york`: stored twice, and a query typed one way missed
    /// the other. Read as one ASCII space, the file's spelling kept for what an older relbert
    /// stored ([`PairRecord::typed`]), as for an invisible character.
    #[test]
    fn a_run_of_spaces_inside_a_word_is_one_space() {
        let text = "new york\tusa\nnew  york\tusa\nnew\u{a0}york \t u.s.\u{3000} \u{200b} a.\n\
                    rio \u{200b} de\u{2009}janeiro\tbrazil\n";
        let p = parse_pairs(text.as_bytes(), Path::new("s.tsv")).unwrap();
        let got: Vec<_> = p
            .iter()
            .map(|r| (r.head.as_str(), r.tail.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("new york", "usa"),
                ("new york", "usa"),
                ("new york", "u.s. a."),
                ("rio de janeiro", "brazil")
            ]
        );
        assert_eq!(p[0].typed, None);
        assert_eq!(p[1].as_written(), ("new  york", "usa"));
        assert_eq!(
            p[1].spellings().collect::<Vec<_>>(),
            [("new york", "usa"), ("new  york", "usa")]
        );
        assert_eq!(
            p[2].as_written(),
            ("new\u{a0}york", "u.s.\u{3000} \u{200b} a.")
        );
        // One pair to a build, which compares the words as read.
        assert!(relbert_index::pairs::same_spelling(
            (&p[0].head, &p[0].tail),
            (&p[1].head, &p[1].tail)
        ));
        // A build resumes on the file's own spelling; a Qdrant load's ids are of the words
        // as read.
        assert_ne!(records_identity(&p[..2]), records_identity_as_read(&p[..2]));
        // A tab or line break (a control character) stays, for a query to refuse, as it
        // refuses other control characters in a word.
        assert_eq!(read_word(" a \t\u{85}  b \t"), "a \t\u{85} b");
        assert!(matches!(
            single_spaced("new york"),
            std::borrow::Cow::Borrowed("new york")
        ));
        for (text, spaced) in [
            ("", ""),
            (" a", "a"),
            ("a ", "a"),
            ("a\u{2028}\u{202f}b", "a b"),
            ("a\tb", "a\tb"),
            ("a \n  b", "a \n b"),
        ] {
            assert_eq!(single_spaced(text), spaced, "{text:?}");
        }
    }

    /// Review R10 (s20): a bad line was quoted whole in the error (a 1 MB line, a 1 MB
    /// message); it is cut at 80 characters and marked.
    #[test]
    fn a_bad_line_is_quoted_cut() {
        let long = format!("{}\n", "y".repeat(10_000));
        let err = parse_pairs(long.as_bytes(), Path::new("l.tsv")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.len() < 300 && msg.ends_with('…'), "{msg}");
        let blank = format!("\u{200b}\t{}\n", "z".repeat(10_000));
        let msg = parse_pairs(blank.as_bytes(), Path::new("l.tsv"))
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 300 && msg.contains("empty word"), "{msg}");
    }

    /// Audit s26: UTF-16 without a byte-order mark was read as words full of NUL bytes
    /// (big-endian) or refused for a line of "\0" without a tab (little-endian); with the
    /// mark it was "not valid UTF-8", without a hint. Each is refused in words at its
    /// first line, naming what to convert from; so is a NUL byte anywhere, a comment's too.
    #[test]
    fn utf16_and_nul_bytes_are_refused_in_words() {
        let utf16 = |text: &str, be: bool, bom: bool| -> Vec<u8> {
            let mut out = Vec::new();
            for u in text.encode_utf16() {
                out.extend(if be { u.to_be_bytes() } else { u.to_le_bytes() });
            }
            if bom {
                out.splice(0..0, if be { [0xfe, 0xff] } else { [0xff, 0xfe] });
            }
            out
        };
        let text = "paris\tfrance\nrome\titaly\n";
        for (be, bom, said) in [
            (false, false, "(iconv -f UTF-16LE -t UTF-8)"),
            (true, false, "(iconv -f UTF-16BE -t UTF-8)"),
            (
                false,
                true,
                "(a FF FE byte-order mark); convert it to UTF-8 (iconv -f UTF-16 -t",
            ),
            (
                true,
                true,
                "(a FE FF byte-order mark); convert it to UTF-8 (iconv -f UTF-16 -t",
            ),
        ] {
            let bytes = utf16(text, be, bom);
            let msg = parse_pairs(&bytes[..], Path::new("<stdin>"))
                .unwrap_err()
                .to_string();
            assert!(
                msg.starts_with("<stdin>:1: this looks like UTF-16") && msg.contains(said),
                "{be} {bom}: {msg}"
            );
        }
        // A later line of little-endian text starts with the NUL of the line end before it:
        // the byte order is still told by where the line starts in the file.
        let mut late = b"a\tb\n".to_vec();
        late.extend(utf16("c\td\n", false, false));
        let msg = parse_pairs(&late[..], Path::new("m.tsv"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("m.tsv:2:") && msg.contains("UTF-16LE"),
            "{msg}"
        );
        let msg = parse_pairs(&b"\xff\xfe\0\0p\0\0\0"[..], Path::new("w.tsv"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("UTF-32") && msg.contains("FF FE 00 00"),
            "{msg}"
        );
        for text in [
            "a\tb\nparis\0\tfrance\n",
            "a\tb\n# a \0 comment\n",
            "a\tb\n\0\n",
        ] {
            let msg = parse_pairs(text.as_bytes(), Path::new("n.tsv"))
                .unwrap_err()
                .to_string();
            assert!(
                msg.starts_with("n.tsv:2: ") && msg.contains("NUL byte"),
                "{text:?}: {msg}"
            );
        }
        assert_eq!(not_text(b"paris\tfrance", true), None);
        assert!(not_text(b"paris\0", true).is_some_and(|m| m.contains("at byte 6")));
    }

    #[test]
    fn names_the_bad_line() {
        let err = parse_pairs("a\tb\nno tab here\n".as_bytes(), Path::new("x.tsv")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("x.tsv:2:"), "{msg}");
    }

    /// The reference refuses a pair whose word holds a template placeholder; relbert filled
    /// it into the prompt ((`<obj>`, paris) got the vector of (paris, paris)). The word is
    /// checked as it is read, so an invisible character inside the placeholder hides nothing.
    #[test]
    fn a_word_holding_a_placeholder_is_refused_with_its_line() {
        for (line, word, p) in [
            ("<obj>\tparis", "<obj>", "<obj>"),
            ("paris\tthe <subj>\tlabel", "the <subj>", "<subj>"),
            ("<ma\u{200b}sk>\tfrance", "<mask>", "<mask>"),
        ] {
            let text = format!("a\tb\n{line}\nc\td\n");
            let err = parse_pairs(text.as_bytes(), Path::new("x.tsv")).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("x.tsv:2: "), "{msg}");
            assert!(
                msg.contains(&format!("the word {word:?} holds {p}")),
                "{msg}"
            );
        }
        // Not a placeholder: another letter case, or a word with angle brackets.
        let (pairs, _) = heads_and_notes("<SUBJ>\t<b>\n");
        assert_eq!(pairs, [("<SUBJ>".to_string(), "<b>".to_string())]);
    }

    fn heads_and_notes(text: &str) -> (Vec<(String, String)>, Vec<Note>) {
        let (p, notes) = parse_pairs_noting(text.as_bytes(), Path::new("x.tsv")).unwrap();
        let pairs = p.into_iter().map(|r| (r.head, r.tail)).collect();
        (pairs, notes)
    }

    #[test]
    fn a_hashtag_read_as_a_comment_is_warned_of_with_its_line() {
        let text = "a\tb\n#metoo\tmovement\n  #x\ty\tl\nc#\tlanguage\n";
        let (pairs, notes) = heads_and_notes(text);
        assert_eq!(
            pairs,
            [("a".into(), "b".into()), ("c#".into(), "language".into())]
        );
        let [Note::Warn(m)] = notes.as_slice() else {
            panic!("{notes:?}");
        };
        assert!(m.starts_with("x.tsv:2: 2 lines starting with #"), "{m}");
        assert!(m.contains("\"#metoo\\tmovement\""), "{m}");
        let (_, notes) = heads_and_notes("a\tb\n\u{feff}#metoo\tmovement\n");
        let [Note::Warn(m)] = notes.as_slice() else {
            panic!("{notes:?}");
        };
        assert!(m.starts_with("x.tsv:2: 1 line starting with # that reads as a pair was"));
    }

    #[test]
    fn a_comment_that_is_no_hashtag_pair_is_skipped_without_a_word() {
        for comment in [
            "# comment",
            "#comment",
            "# paris\tfrance",
            "#\tparis\tfrance",
            "## section\tone",
            "#head\ttail\tlabel",
            "#a\tb\tc\td",
            "#a\t \u{200b}",
            "# relbert pairs mine: 1 pairs from 1 files",
        ] {
            let (pairs, notes) = heads_and_notes(&format!("{comment}\nparis\tfrance\n"));
            assert_eq!(pairs.len(), 1, "{comment:?}");
            assert_eq!(notes, [], "{comment:?}");
        }
    }

    #[test]
    fn a_first_line_that_is_a_column_header_is_skipped() {
        for header in [
            "head\ttail\tlabel",
            "Head\t Tail \tRELATION\r",
            "\u{feff}head\ttail\tlabel",
        ] {
            let text =
                format!("# capitals\n\n{header}\nparis\tfrance\tcapital\nhead\ttail\tlabel\n");
            let (pairs, notes) = heads_and_notes(&text);
            assert_eq!(
                pairs,
                [
                    ("paris".into(), "france".into()),
                    ("head".into(), "tail".into())
                ],
                "{header:?}"
            );
            let [Note::Info(m)] = notes.as_slice() else {
                panic!("{header:?}: {notes:?}");
            };
            assert!(m.starts_with("x.tsv:3: skipped the column header"), "{m}");
        }
        // Not a header: two columns, another third column, or a later line.
        for text in [
            "head\ttail\n",
            "head\ttail\tpart\n",
            "paris\tfrance\nhead\ttail\tlabel\n",
        ] {
            let (pairs, notes) = heads_and_notes(text);
            assert!(pairs.contains(&("head".into(), "tail".into())), "{text:?}");
            assert_eq!(notes, [], "{text:?}");
        }
    }

    #[test]
    fn a_list_relbert_wrote_has_no_column_header() {
        // A copy of standard input holds only the pairs not yet in the index: its first may be
        // one that stood later in the input.
        let text = format!("{}head\ttail\tlabel\n", relbert_index::spool_header());
        let (pairs, notes) = heads_and_notes(&text);
        assert_eq!(pairs, [("head".into(), "tail".into())]);
        assert_eq!(notes, []);
    }
}
