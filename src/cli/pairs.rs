//! `relbert pairs mine`: a corpus in, a ranked pair list (the pair TSV `index build` reads)
//! and its provenance out.
//!
//! The outputs are written under temporary names and renamed into place one by one, which
//! a `kill -9` can cut short. So that a cut never passes one run's provenance off as
//! another's, the sidecars (provenance, `--save-vocab`, `--report`) record the SHA-256 of
//! the pair list they were written with (`pair_list_sha256` in the provenance's first record
//! and the report, the vocabulary's first line), and the pair list, the file people use, is
//! renamed last. A run killed between renames leaves the old list with new sidecars, and
//! their hash says so (`sha256sum pairs.tsv`); the next run into the same `--out` checks
//! the provenance it is to replace and says when it did not belong to the list beside it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use relbert::corpus::source::{InputFormat, Paragraphs};
use relbert::corpus::vocab::{parse_word_list, Terms, DEFAULT_STOPWORDS};
use relbert::corpus::{mine, MineOptions, MineProgress, MineReport, MinedPair, Score};
use relbert::output::{
    check_replaceable, AtomicFile, OutputKind, MINED_PAIRS_MARK, MINED_VOCAB_MARK,
};
use sha2::{Digest, Sha256};

use super::interrupt::Interrupts;
use super::Progress;

/// `relbert pairs …`
#[derive(Subcommand, Debug)]
pub enum PairsCommand {
    /// Mine candidate relation pairs from a corpus: terms co-occurring within a window,
    /// ranked by PMI, labelled with their most frequent connecting phrase.
    Mine(MineArgs),
}

/// Arguments of `relbert pairs mine`.
#[derive(Args, Debug)]
pub struct MineArgs {
    /// Corpus: text files, HTML files, gzip/zstd files, JSON lines, directories (recursive),
    /// `-` for standard input.
    #[arg(long, required = true, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// Output pair list (head<TAB>tail<TAB>label), or `-` for standard output.
    #[arg(long, value_parser = super::os(super::output_file_at))]
    out: PathBuf,
    /// Provenance sidecar (JSON lines: counts, connecting phrases, places per pair).
    /// Default: beside --out, `pairs.tsv` (or `.txt`) → `pairs.provenance.jsonl`, any other
    /// NAME → NAME.provenance.jsonl; none when --out is `-`.
    #[arg(long, value_parser = super::os(file_output))]
    provenance: Option<PathBuf>,
    /// How inputs are parsed (auto: JSON lines for *.jsonl / *.ndjson, HTML's text for
    /// *.html, *.htm, *.xhtml and text that starts with <!DOCTYPE html> or <html>, plain text
    /// otherwise; text: plain text, HTML's markup too).
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    format: InputFormat,
    /// What separates paragraphs in text files: blank lines (hard-wrapped prose) or every
    /// line (one sentence or document per line). Sentences never cross a paragraph.
    #[arg(long, value_enum, default_value_t = Paragraphs::Blank)]
    paragraphs: Paragraphs,
    /// The JSON field that holds a document's text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Keep case (default: lower-case every word).
    #[arg(long)]
    keep_case: bool,
    /// Stop-word list replacing the bundled English one (words separated by white space,
    /// `#` comment lines).
    #[arg(long, conflicts_with = "no_stopwords")]
    stopwords: Option<PathBuf>,
    /// No stop words.
    #[arg(long)]
    no_stopwords: bool,
    /// Multi-word terms, one per line (`new york` or WordNet's `new_york`), merged into one
    /// term wherever they occur, in any case (with --keep-case, `New York` in the text is the
    /// term `New York`).
    #[arg(long)]
    terms: Option<PathBuf>,
    /// Learn two-word phrases from the corpus (word2phrase's bigram score).
    #[arg(long)]
    phrases: bool,
    /// Score a bigram must exceed to become a phrase (0 or more: the score is never
    /// negative); only with --phrases.
    #[arg(long, default_value_t = 100.0, value_parser = threshold, allow_negative_numbers = true,
          requires = "phrases")]
    phrase_threshold: f64,
    /// Count every copy of a long paragraph (200 bytes or more) read more than once; by
    /// default a paragraph whose words were read before (a licence or header copied into
    /// many files) is counted once.
    #[arg(long)]
    keep_repeated_paragraphs: bool,
    /// Co-occurrence window in tokens.
    #[arg(long, default_value_t = 10, value_parser = whole::<1>, allow_negative_numbers = true)]
    window: usize,
    /// A word must occur this often to be a term (at least 1).
    #[arg(long, default_value_t = 5, value_parser = whole_u64::<1>, allow_negative_numbers = true)]
    min_count: u64,
    /// At most this many terms, most frequent first.
    #[arg(long, default_value_t = 100_000, value_parser = whole::<1>, allow_negative_numbers = true)]
    vocab_size: usize,
    /// A pair must co-occur this often to be ranked.
    #[arg(long, default_value_t = 5, value_parser = whole_u64::<0>, allow_negative_numbers = true)]
    min_pair_count: u64,
    /// At most this many pairs are written.
    #[arg(long, default_value_t = 100_000, value_parser = whole::<1>, allow_negative_numbers = true)]
    max_pairs: usize,
    /// Ranking: pmi (relations over mere frequency), npmi (normalised PMI) or count.
    #[arg(long, value_enum, default_value_t = Score::Pmi)]
    score: Score,
    /// Memory budget for the counts (in the first pass, half of it for the word counts and
    /// an eighth for finding repeated paragraphs); beyond it sorted runs spill to disk. The
    /// kept vocabulary and the chosen pairs' labels are not counted (docs/pairs-mine.md). A
    /// number and a
    /// unit: K, M, G, T (or KiB … TiB) are binary (4G = 4 × 2^30 bytes), KB, MB, GB, TB
    /// decimal (2GB = 2 × 10^9 bytes); any case, a fraction allowed (1.5G); a bare number is
    /// refused, not taken as bytes.
    #[arg(long, default_value = "2G", value_parser = parse_size)]
    memory: u64,
    /// Where spilled runs go (default: beside --out, or the system's temporary directory).
    #[arg(long)]
    tmp_dir: Option<PathBuf>,
    /// Places kept per pair in the provenance file.
    #[arg(long, default_value_t = 3, value_parser = whole::<0>, allow_negative_numbers = true)]
    examples: usize,
    /// Write the vocabulary (term<TAB>count, most frequent first) to this file. Counts are
    /// occurrences as a term once multi-word terms are merged: a word chosen on its count
    /// before merging but seen mostly inside a merged term (`york` in `new york`) may count
    /// fewer than --min-count here.
    #[arg(long, value_parser = super::os(file_output))]
    save_vocab: Option<PathBuf>,
    /// Write what mining did (counts, passes, timings) as JSON to this file.
    #[arg(long, value_parser = super::os(file_output))]
    report: Option<PathBuf>,
    /// Replace existing outputs (only ones relbert wrote).
    #[arg(long)]
    force: bool,
}

/// An output that must be a file: `-` is standard output only for `--out` (it was taken as
/// a file named `-`).
fn file_output(s: &std::ffi::OsStr) -> std::result::Result<PathBuf, String> {
    if s == "-" {
        return Err(
            "standard output (-) is only for --out; give a file name (such as ./-, for a file \
             named -)"
                .into(),
        );
    }
    super::output_file_at(s)
}

/// A phrase threshold: a finite number (`NaN` passed every comparison as if it were
/// infinite), 0 or more. A bigram's score, `(n(ab) − min-count)·N / (n(a)·n(b))` over
/// bigrams seen at least --min-count times, is never negative, so every negative threshold
/// meant the same (every such bigram a phrase) and read as a typo.
fn threshold(s: &str) -> std::result::Result<f64, String> {
    const RULE: &str = "must be a finite number, 0 or more (a bigram's score is never negative)";
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(RULE.into()),
    }
}

/// A whole number, at least `MIN`: the rule is said whatever was given (`-1` was taken for
/// an unknown flag, `1.5` got "invalid digit").
fn whole_u64<const MIN: u64>(s: &str) -> std::result::Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(v) if v >= MIN => Ok(v),
        _ if MIN == 0 => Err("must be a whole number, 0 or more".into()),
        _ => Err(format!("must be a whole number, at least {MIN}")),
    }
}

/// [`whole_u64`] for a count of things in memory.
fn whole<const MIN: u64>(s: &str) -> std::result::Result<usize, String> {
    let v = whole_u64::<MIN>(s)?;
    usize::try_from(v).map_err(|_| format!("must be at most {}", usize::MAX))
}

/// Runs `relbert pairs …`.
pub fn run(cmd: PairsCommand) -> Result<()> {
    match cmd {
        PairsCommand::Mine(a) => run_mine(a),
    }
}

/// The forms `--memory` takes, said whenever a value is refused.
const SIZE_FORMS: &str = "give a number and a unit: K, M, G or T (binary: 1K = 1024 bytes; \
                          also KiB, MiB, GiB, TiB) or KB, MB, GB, TB (decimal: 1KB = 1000 \
                          bytes), such as 512M, 4G, 1.5GiB or 2GB";

/// `--memory`'s size in bytes: a number, then a unit ([`SIZE_FORMS`]), in any case. The unit
/// is required: `--memory 1` or `1e9` was refused as "less than one byte", and a bare number
/// taken as bytes would likely be a budget 10⁹ times smaller than meant. A size under one
/// byte is refused (`0.0000001K` was taken as a budget of 0 bytes where `0` was not), as is
/// one beyond 2⁶⁴ bytes.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    // The unit starts at the first letter that is not a number's exponent (`1e9K`): an `e`
    // is one only when a digit follows it, signed or not. `2EB` was split as the number
    // `2E` and the unit `B` ("B is not a unit"), where the unit given is `EB`.
    let b = t.as_bytes();
    let exponent = |i: usize| {
        matches!(b[i], b'e' | b'E') && {
            let after = b.get(i + 1..).unwrap_or(&[]);
            let after = after
                .strip_prefix(b"+")
                .or(after.strip_prefix(b"-"))
                .unwrap_or(after);
            i > 0 && after.first().is_some_and(u8::is_ascii_digit)
        }
    };
    let split = (0..b.len())
        .find(|&i| b[i].is_ascii_alphabetic() && !exponent(i))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" => return Err(format!("a size needs a unit; {SIZE_FORMS}")),
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(format!("{unit:?} is not a unit of size; {SIZE_FORMS}")),
    };
    let Ok(v) = num.trim().parse::<f64>() else {
        return Err(format!("{:?} is not a number; {SIZE_FORMS}", num.trim()));
    };
    let bytes = v * mult;
    if bytes.is_nan() || bytes < 1.0 {
        return Err(format!("a size must be at least one byte; {SIZE_FORMS}"));
    }
    // 2^64 as f64; `as u64` would saturate to it without a word.
    if bytes >= 18_446_744_073_709_551_616.0 {
        return Err("give at most 16 EiB (no machine has more memory)".into());
    }
    Ok(bytes as u64)
}

/// The provenance file beside a pair list: `pairs.tsv` → `pairs.provenance.jsonl` (a `.tsv`
/// or `.txt` extension is replaced), any other name keeps its whole name (`run.v1` →
/// `run.v1.provenance.jsonl`). Only `pairs`, `pairs.tsv` and `pairs.txt` still share one;
/// its first record names its pair list, and another list's is never replaced.
fn provenance_path(out: &Path) -> PathBuf {
    let replaced = out
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("tsv") || e.eq_ignore_ascii_case("txt"));
    if replaced {
        out.with_extension("provenance.jsonl")
    } else {
        let mut name = out.as_os_str().to_os_string();
        name.push(".provenance.jsonl");
        PathBuf::from(name)
    }
}

/// The name a provenance file records of its pair list: the file name (the provenance
/// usually sits beside it; a folder moved with both keeps them matched). `None` for
/// standard output.
fn pair_list_name(out: &Path) -> Option<String> {
    (out.as_os_str() != "-").then(|| {
        out.file_name()
            .unwrap_or(out.as_os_str())
            .to_string_lossy()
            .into_owned()
    })
}

/// Key of the first provenance record that names the pair list it belongs to.
const PAIR_LIST_KEY: &str = "pair_list";

/// Key of the first provenance record holding the SHA-256 of its pair list.
const PAIR_LIST_SHA256_KEY: &str = "pair_list_sha256";

/// SHA-256 (hex) of a pair list as [`write_pairs`] writes it (`Sha256` is an `io::Write`).
fn pairs_sha256(header: &str, pairs: &[MinedPair]) -> Result<String> {
    let mut h = Sha256::new();
    write_pairs(&mut h, header, pairs)?;
    Ok(format!("{:x}", h.finalize()))
}

/// Refuses (even with `--force`) to replace a provenance file that records another pair
/// list than `out`'s: it is another run's, and replacing it would lose that run's record.
/// Files that record none (older ones, empty ones) are left to `--force`. One that names
/// `out` but records another list's SHA-256 than `out` has is the torn pair a run killed
/// while renaming its outputs leaves (see the module's doc): it is replaced with the list,
/// and a warning says so.
fn check_provenance_owner(path: &Path, out: &Path) -> Result<()> {
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(());
    };
    let mut first = Vec::new();
    std::io::BufRead::read_until(
        &mut std::io::BufReader::new(std::io::Read::take(f, 1 << 20)),
        b'\n',
        &mut first,
    )
    .with_context(|| format!("reading {}", path.display()))?;
    let first = serde_json::from_slice::<serde_json::Value>(&first).ok();
    let field = |k: &str| {
        first
            .as_ref()
            .and_then(|v| v.get(k)?.as_str().map(str::to_string))
    };
    let Some(recorded) = field(PAIR_LIST_KEY) else {
        return Ok(());
    };
    let ours = pair_list_name(out);
    if ours.as_deref() == Some(recorded.as_str()) {
        if let Some(sha) = field(PAIR_LIST_SHA256_KEY) {
            // Any file's SHA-256, whatever the name says.
            if out.is_file() && relbert::encoder::Encoder::weights_sha256(out)? != sha {
                tracing::warn!(
                    "{} did not belong to {}: it records a pair list with SHA-256 {}, not this \
                     one (a run was killed while renaming its outputs?); both are replaced",
                    path.display(),
                    out.display(),
                    sha.chars().take(12).collect::<String>()
                );
            }
        }
        return Ok(());
    }
    Err(relbert::Error::NotOurs {
        path: path.to_path_buf(),
        what: "the provenance of this run's pair list",
        why: format!(
            "it records the pairs of {recorded}, not of {}",
            ours.unwrap_or_else(|| "standard output".into())
        ),
    }
    .into())
}

/// The first provenance record: the pair's, and the name and SHA-256 of the pair list it
/// belongs to.
#[derive(serde::Serialize)]
struct FirstRecord<'a> {
    #[serde(flatten)]
    pair: &'a MinedPair,
    #[serde(skip_serializing_if = "Option::is_none")]
    pair_list: Option<&'a str>,
    pair_list_sha256: &'a str,
}

/// Shows each pass as a byte progress display.
struct PassProgress(Mutex<Option<Progress>>);

impl MineProgress for PassProgress {
    fn start(&self, pass: &str, total: u64) {
        let mut p = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *p = Some(Progress::bytes(total, pass));
    }
    fn start_items(&self, step: &str, total: u64, unit: &'static str) {
        let mut p = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *p = Some(Progress::new(total, step, unit));
    }
    fn bytes(&self, done: u64) {
        if let Some(p) = &*self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            p.set_position(done);
        }
    }
    fn finish(&self) {
        if let Some(p) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            p.finish();
        }
    }
}

fn run_mine(a: MineArgs) -> Result<()> {
    let memory = a.memory;
    let lowercase = !a.keep_case;
    // Lower-case whatever the case of the tokens: a stop word is one in any case.
    let stopwords = if a.no_stopwords {
        Default::default()
    } else if let Some(p) = &a.stopwords {
        let text = relbert::corpus::vocab::read_word_file(p)
            .with_context(|| format!("reading the stop-word list {}", p.display()))?;
        parse_word_list(&text, true)
    } else {
        parse_word_list(DEFAULT_STOPWORDS, true)
    };
    let terms = match &a.terms {
        Some(p) => Terms::read(p, lowercase)?,
        None => Terms::default(),
    };

    // Outputs are claimed and checked before hours of counting, not after.
    let to_stdout = a.out.as_os_str() == "-";
    let provenance = match (&a.provenance, to_stdout) {
        (Some(p), _) => Some(p.clone()),
        (None, false) => Some(provenance_path(&a.out)),
        (None, true) => None,
    };
    // Ctrl-C would skip the work directory's cleanup (spilled runs and the copy of standard
    // input can be large) and leave the outputs' lock files (`std::process::exit` runs no
    // destructors). The outputs are written under temporary names, and an interrupt is
    // heeded only before the first of them is renamed into place: from then on all are
    // committed, so a run leaves either all its outputs or none. The handler is in place
    // before the first lock is taken and the work directory exists, so no interrupt falls
    // between either and its cleanup. Dropped, it releases the locks and disarms the
    // handler, however this function returns.
    let interrupts = Interrupts::install(Vec::new());
    let mut outputs: Vec<(&Path, OutputKind)> = Vec::new();
    if !to_stdout {
        outputs.push((&a.out, OutputKind::MinedPairs));
    }
    if let Some(p) = &provenance {
        outputs.push((p, OutputKind::Provenance));
    }
    if let Some(p) = &a.save_vocab {
        outputs.push((p, OutputKind::MinedVocab));
    }
    if let Some(p) = &a.report {
        outputs.push((p, OutputKind::MineReport));
    }
    // Two outputs at one path would take the same lock (and one overwrite the other).
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let flag = |kind: &OutputKind| match kind {
        OutputKind::Provenance => "--provenance (or the one beside --out)",
        OutputKind::MinedVocab => "--save-vocab",
        OutputKind::MineReport => "--report",
        _ => "--out",
    };
    for (i, (p, kind)) in outputs.iter().enumerate() {
        if let Some((_, other)) = outputs[..i]
            .iter()
            .find(|(q, _)| abs(q) == abs(p) || relbert::output::same_file(q, p))
        {
            // Bad command lines (status 2), as clap's own refusals are.
            return Err(super::usage(format!(
                "invalid value for {}: {} is also the path of {}; each output needs its own",
                flag(kind),
                p.display(),
                flag(other)
            )));
        }
    }
    for (p, kind) in &outputs {
        super::not_in_an_index(p, flag(kind))?;
        // Before any lock: taking one makes the folders above it, and `--out typo/deep/m.tsv`
        // left them behind.
        super::check_out_folder(p, flag(kind))?;
        // Said up front: "exists; pass --force" and then "not a regular file" sent people
        // round in a circle.
        if p.is_dir() {
            return Err(super::usage(format!(
                "invalid value for {}: {} is a directory; give the output file's name (such as {})",
                flag(kind),
                p.display(),
                p.join(match kind {
                    OutputKind::Provenance => "pairs.provenance.jsonl",
                    OutputKind::MinedVocab => "vocab.tsv",
                    OutputKind::MineReport => "report.json",
                    _ => "pairs.tsv",
                })
                .display()
            )));
        }
        // Read before anything is written, and then replaced: `--stopwords sw.tsv --out
        // sw.tsv --force` read the old pair list as stop words.
        let inputs = a
            .corpus
            .iter()
            .map(|c| (c, "a corpus input"))
            .chain(a.stopwords.iter().map(|c| (c, "the --stopwords list")))
            .chain(a.terms.iter().map(|c| (c, "the --terms list")));
        for (input, what) in inputs {
            if relbert::output::same_file(input, p) {
                return Err(super::usage(format!(
                    "invalid value for {}: {} is also {what}; choose another output",
                    flag(kind),
                    p.display()
                )));
            }
        }
        // Taken and registered under the handler's lock: an interrupt sees each lock it
        // must release.
        let mut st = interrupts.with();
        st.locks.push(relbert_index::OutputLock::acquire(p)?);
        drop(st);
        check_replaceable(p, a.force, *kind)?;
        if *kind == OutputKind::Provenance {
            check_provenance_owner(p, &a.out)?;
        }
    }

    let tmp_parent = match &a.tmp_dir {
        Some(d) => d.clone(),
        None if !to_stdout => a
            .out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        None => std::env::temp_dir(),
    };
    clean_stale_work_dirs(&tmp_parent);
    // Declared before the directory, so dropped after it: the lock is released once the
    // directory is gone, and no later run finds it free beside a finished run's directory
    // (which it then called a killed run's; review).
    let _owner: Option<std::fs::File>;
    // Made under the handler's state: made before it was named there, a signal in between
    // left an empty directory with no owner file, which no later run removes.
    let work = {
        let mut held = interrupts.with();
        let work = tempfile::Builder::new()
            .prefix(WORK_PREFIX)
            .tempdir_in(&tmp_parent)
            .with_context(|| format!("making a work directory in {}", tmp_parent.display()))?;
        held.work_dir = Some(work.path().to_path_buf());
        work
    };
    // Who owns it, locked for the run's whole life: a later run removes it once the lock is
    // free (kill -9 runs no handler, but the kernel releases the lock). Without an owner
    // file (one that cannot be written) the directory is never another run's to remove.
    _owner = claim_work_dir(work.path()).ok();

    let opts = MineOptions {
        inputs: a.corpus.clone(),
        exclude: outputs.iter().map(|(p, _)| p.to_path_buf()).collect(),
        format: a.format,
        paragraphs: a.paragraphs,
        text_field: a.text_field.clone(),
        lowercase,
        stopwords,
        terms,
        phrases: a.phrases,
        phrase_threshold: a.phrase_threshold,
        window: a.window,
        min_count: a.min_count,
        vocab_size: a.vocab_size,
        min_pair_count: a.min_pair_count,
        max_pairs: a.max_pairs,
        score: a.score,
        memory,
        work_dir: work.path().to_path_buf(),
        examples: a.examples,
        threads: rayon::current_num_threads(),
        keep_repeats: a.keep_repeated_paragraphs,
    };
    let started = std::time::Instant::now();
    let (pairs, mut report) = mine(&opts, &PassProgress(Mutex::new(None)))
        .map_err(|e| work_dir_full(e, work.path(), &tmp_parent))?;
    // An empty list would replace a good one (with --force) and an index built from it
    // holds nothing: a run that found no pair fails, and leaves every output as it was.
    if let Some(why) = no_pairs_why(&report, &a) {
        let skipped = skipped_line(&report).map_or(String::new(), |s| format!(" ({s})"));
        anyhow::bail!("{why}{skipped}; nothing was written");
    }
    // Most frequent first, as documented: with learned phrases the counts of words that
    // went into a phrase fall after the vocabulary was chosen by the counts before.
    report
        .vocabulary
        .sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    let header = format!(
        "{MINED_PAIRS_MARK}: {} pairs from {} files, window {}, score {}, min-count {}, min-pair-count {}",
        pairs.len(),
        report.files,
        a.window,
        // The flag's own spelling (`pmi`), not the Rust name.
        clap::ValueEnum::to_possible_value(&a.score)
            .map_or_else(|| format!("{:?}", a.score), |v| v.get_name().to_string()),
        a.min_count,
        a.min_pair_count
    );
    let sha = pairs_sha256(&header, &pairs)?;
    report.pair_list_sha256 = Some(sha.clone());

    // Every file output is written under its temporary name first (the handler removes
    // those on an interrupt), and renamed only once all are complete.
    let mut files: Vec<AtomicFile> = Vec::new();
    let write_all = |files: &mut Vec<AtomicFile>| -> Result<()> {
        let start = |files: &'_ mut Vec<AtomicFile>, path: &Path| -> Result<()> {
            // Registered and created under the handler's lock: an interrupt sees either
            // neither or both, so it never misses a temporary file.
            // Only once created: a refused one (a link or folder at the temporary name) is
            // not relbert's to remove.
            let mut st = interrupts.with();
            files.push(AtomicFile::create(path, a.force)?);
            st.files.push(relbert::output::temp_path(path));
            drop(st);
            Ok(())
        };
        // The file just started (`start` pushed it).
        let last = |files: &mut Vec<AtomicFile>| files.len() - 1;
        if !to_stdout {
            start(files, &a.out)?;
            let i = last(files);
            let f = &mut files[i];
            write_pairs(f.writer(), &header, &pairs)
                .with_context(|| format!("writing {}", a.out.display()))?;
        }
        if let Some(p) = &provenance {
            start(files, p)?;
            let i = last(files);
            let f = &mut files[i];
            write_provenance(f.writer(), &pairs, pair_list_name(&a.out).as_deref(), &sha)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        if let Some(v) = &a.save_vocab {
            start(files, v)?;
            let i = last(files);
            let f = &mut files[i];
            write_vocab(f.writer(), &report.vocabulary, &sha)
                .with_context(|| format!("writing {}", v.display()))?;
        }
        if let Some(r) = &a.report {
            start(files, r)?;
            let i = last(files);
            let f = &mut files[i];
            serde_json::to_writer_pretty(&mut *f.writer(), &report)
                .with_context(|| format!("writing {}", r.display()))?;
        }
        if to_stdout {
            interrupts.with().stdout_started = true;
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            write_pairs(&mut w, &header, &pairs).context("writing pairs to standard output")?;
        }
        Ok(())
    };
    if let Err(e) = write_all(&mut files) {
        files.into_iter().for_each(AtomicFile::discard);
        return Err(e);
    }
    // From here on an interrupt waits: the outputs are committed together. The pair list,
    // started first, is renamed last (see the module's doc).
    interrupts.committing();
    let mut files = files.into_iter().rev();
    while let Some(f) = files.next() {
        if let Err(e) = f.commit() {
            files.for_each(AtomicFile::discard);
            return Err(e.into());
        }
    }
    summary(&report, started.elapsed().as_secs_f64());
    Ok(())
}

/// The work directories' name prefix (hidden: a directory walk of the corpus skips them).
const WORK_PREFIX: &str = ".relbert-mine-";

/// The file in a work directory naming the run that owns it: `pid host locked`, and locked
/// (`flock(2)`) by that run for as long as it lives ([`claim_work_dir`]).
const OWNER_FILE: &str = "owner";

/// The last word of an owner record whose run holds the owner file's lock: such a directory
/// is judged by the lock, not by the pid. A record without it (`pid host`, an older relbert)
/// is judged by its pid.
const LOCKED_MARK: &str = "locked";

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer it is given.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    if !ok {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// This run's owner record: `pid host`, then [`LOCKED_MARK`] when its lock is held (without
/// it, the older record, which a later run judges by the pid).
fn owner_record(locked: bool) -> String {
    let mark = if locked { LOCKED_MARK } else { "" };
    format!("{} {} {mark}\n", std::process::id(), host_name())
}

/// Makes the owner file of the work directory `work` and locks it; the lock is held while
/// the returned file is open (the run's life: the kernel releases it when the process ends,
/// however it ends, a killed process not yet reaped by its parent included). The record is
/// written only once the lock is held, so a record marked [`LOCKED_MARK`] whose lock is free
/// is a finished run's.
fn claim_work_dir(work: &Path) -> std::io::Result<std::fs::File> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(work.join(OWNER_FILE))?;
    if f.lock().is_err() {
        // No lock here (an NFS mount without lock service): the older record, which a
        // later run judges by the pid, rather than none, which it would never remove.
        f.write_all(owner_record(false).as_bytes())?;
        return Ok(f);
    }
    f.write_all(owner_record(true).as_bytes())?;
    Ok(f)
}

/// What the owner file of a work directory says, and whether its run is gone.
#[derive(Debug)]
enum Owner {
    /// No record (none, empty, or not one relbert writes): left, noted once old.
    Unknown,
    /// A run that is, or may be, alive (a lock held, a live pid, another host): left.
    Live,
    /// A run that is gone: its directory is removed, while `lock` (if any) is held.
    Gone {
        /// The pid the record names, for the message.
        pid: i32,
        /// The owner file, locked by this process (a locked record), so that no run takes
        /// it meanwhile.
        lock: Option<std::fs::File>,
    },
}

/// Reads and judges the owner file of work directory `dir` on host `host`: a record marked
/// [`LOCKED_MARK`] by its lock (free: gone), an older one by its pid (a process of this
/// host that no longer exists: gone). A record of another host is left (a shared disk,
/// whose locks may not reach the other host). Judged by the pid, a live run in another PID
/// namespace was removed and a killed one not yet reaped was kept (found by an audit).
fn judge_owner(dir: &Path, host: &str) -> Owner {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Not through a link, and no wait on a named pipe.
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(OWNER_FILE))
    else {
        return Owner::Unknown;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return Owner::Unknown;
    }
    let mut text = String::new();
    if Read::by_ref(&mut f)
        .take(4096)
        .read_to_string(&mut text)
        .is_err()
    {
        return Owner::Unknown;
    }
    let mut words = text.split_whitespace();
    let (Some(pid), h, mark) = (
        words.next().and_then(|p| p.parse::<i32>().ok()),
        words.next().unwrap_or(""),
        words.next(),
    ) else {
        return Owner::Unknown;
    };
    if h != host || pid <= 0 {
        return Owner::Live;
    }
    if mark == Some(LOCKED_MARK) {
        // Shared: it conflicts with the run's exclusive lock as well, and on NFS (flock
        // emulated by fcntl) an exclusive lock needs a descriptor open for writing. A lock
        // that cannot be tried at all falls back to the pid (review).
        match f.try_lock_shared() {
            Ok(()) => return Owner::Gone { pid, lock: Some(f) },
            Err(std::fs::TryLockError::WouldBlock) => return Owner::Live,
            Err(std::fs::TryLockError::Error(_)) => {}
        }
    }
    if process_exists(pid) {
        Owner::Live
    } else {
        Owner::Gone { pid, lock: None }
    }
}

/// `e`, with what to do when it is the work directory (in `parent`) that filled up (a full
/// disk, a quota, a file size limit): the counts spilled there are the user's to make room
/// for, elsewhere (`--tmp-dir`) or fewer of them (`--memory`).
fn work_dir_full(e: relbert::Error, work: &Path, parent: &Path) -> anyhow::Error {
    let full = matches!(
        &e,
        relbert::Error::Io { path, err }
            if path.starts_with(work) && relbert_index::is_out_of_space(err)
    );
    if !full {
        return e.into();
    }
    anyhow::anyhow!(
        "{e}: the counts spilled to disk fill the work directory's file system ({}); give \
         another place with room with --tmp-dir, or more --memory, which spills less",
        parent.display()
    )
}

/// Removes work directories of runs that were killed without cleaning up (`kill -9`, a
/// crash): those whose owner file's lock is free, or, for a record an older relbert wrote
/// (without the lock), that names a process of this host that no longer exists
/// ([`judge_owner`]). Ones without a record (older relbert still) or of another host (a
/// shared disk) may be another run's: those untouched for a day are named in one note, not
/// removed.
fn clean_stale_work_dirs(parent: &Path) {
    const UNOWNED_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let host = host_name();
    let mut unowned: Vec<PathBuf> = Vec::new();
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(WORK_PREFIX)
            || !e.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let dir = e.path();
        match judge_owner(&dir, &host) {
            Owner::Gone { pid, lock } => {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => tracing::info!(
                        "removed {}: the work directory of an earlier run (pid {pid}) that was killed",
                        dir.display()
                    ),
                    Err(e) => tracing::warn!(
                        "{}: the work directory of an earlier run (pid {pid}) that was killed could not be removed: {e}",
                        dir.display()
                    ),
                }
                // Held until the directory is gone.
                drop(lock);
            }
            Owner::Live => {}
            Owner::Unknown => {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > UNOWNED_AGE);
                if old {
                    unowned.push(dir);
                }
            }
        }
    }
    if let Some(first) = unowned.first() {
        tracing::warn!(
            "{} work director{} of relbert pairs mine untouched for a day and without an owner \
             record (left by a run that was killed?), e.g. {}: remove them if no run uses them",
            unowned.len(),
            if unowned.len() == 1 { "y" } else { "ies" },
            first.display()
        );
    }
}

/// Whether a process with this pid exists (one of another user's counts), for the owner
/// records of older relbert, which hold no lock.
fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn write_provenance(
    w: &mut impl Write,
    pairs: &[MinedPair],
    pair_list: Option<&str>,
    pair_list_sha256: &str,
) -> Result<()> {
    for (i, m) in pairs.iter().enumerate() {
        if i == 0 {
            let first = FirstRecord {
                pair: m,
                pair_list,
                pair_list_sha256,
            };
            serde_json::to_writer(&mut *w, &first)?;
        } else {
            serde_json::to_writer(&mut *w, m)?;
        }
        w.write_all(b"\n")?;
    }
    Ok(())
}

fn write_vocab(w: &mut impl Write, vocabulary: &[(String, u64)], sha: &str) -> Result<()> {
    writeln!(
        w,
        "{MINED_VOCAB_MARK}: term<TAB>count, most frequent first; pair list sha256 {sha}"
    )?;
    for (t, c) in vocabulary {
        writeln!(w, "{t}\t{c}")?;
    }
    Ok(())
}

fn write_pairs(w: &mut impl Write, header: &str, pairs: &[MinedPair]) -> Result<()> {
    writeln!(w, "{header}")?;
    for m in pairs {
        // A pair without a connecting phrase has no label column (`index build` reads two
        // columns as a pair without a label).
        match m.label() {
            Some(l) => writeln!(w, "{}\t{}\t{l}", m.head, m.tail)?,
            None => writeln!(w, "{}\t{}", m.head, m.tail)?,
        }
    }
    w.flush()?;
    Ok(())
}

/// The people's summary on standard error. `secs` is the whole run's time: what mining
/// ([`MineReport::seconds`]) leaves of it went into writing the outputs.
fn summary(r: &MineReport, secs: f64) {
    use super::progress::{group, rate};
    relbert::say!(
        "mined {} pairs from {} files: {} tokens in {} sentences, {} terms{}, {} distinct pairs ({} at or above the floor), {:.1}s",
        group(r.pairs_out as u64),
        group(r.files as u64),
        group(r.tokens),
        group(r.sentences),
        group(r.vocab as u64),
        if r.phrases > 0 {
            format!(" ({} learned phrases)", group(r.phrases as u64))
        } else {
            String::new()
        },
        group(r.distinct_pairs),
        group(r.pairs_above_floor),
        secs
    );
    let writing = (secs - r.seconds).max(0.0);
    // The rest, named so the lines add up to the whole, when there is enough to show.
    let passes: Vec<_> = r
        .passes
        .iter()
        .filter(|p| !(p.name == "other" && p.seconds < 0.05))
        .collect();
    const WRITING: &str = "writing outputs";
    // As wide as the longest name shown, so the seconds line up: a fixed 18 columns pushed
    // `merging and ranking` (19) one column out.
    let w = passes
        .iter()
        .map(|p| p.name.chars().count())
        .chain((writing >= 0.05).then_some(WRITING.len()))
        .max()
        .unwrap_or(0);
    for p in passes {
        if p.bytes == 0 {
            relbert::say!(
                "  {:<w$} {:>7.1}s ({:.1}s CPU)",
                p.name,
                p.seconds,
                p.cpu_seconds
            );
            continue;
        }
        relbert::say!(
            "  {:<w$} {:>7.1}s ({:.1}s CPU)  {:>14}  {:>18}",
            p.name,
            p.seconds,
            p.cpu_seconds,
            rate(p.bytes as f64 / 1e6 / p.seconds.max(1e-9), "MB"),
            rate(p.tokens as f64 / p.seconds.max(1e-9), "tokens")
        );
    }
    if writing >= 0.05 {
        relbert::say!("  {WRITING:<w$} {writing:>7.1}s");
    }
    if r.spilled_bytes > 0 {
        relbert::say!(
            "  counts over the memory budget: {:.1} MB spilled to disk and merged",
            r.spilled_bytes as f64 / 1e6
        );
    }
    if r.html_files > 0 {
        relbert::say!(
            "  {} file(s) read as HTML: markup removed, character references decoded",
            group(r.html_files)
        );
    }
    if r.listed_terms > 0 {
        relbert::say!(
            "  {} of {} terms listed with --terms found in the corpus (in any case)",
            group(r.listed_terms_found as u64),
            group(r.listed_terms as u64)
        );
    }
    if r.long_words > 0 {
        relbert::say!(
            "  {} candidate term(s) left out for a word longer than {} characters",
            group(r.long_words as u64),
            relbert::corpus::vocab::MAX_TERM_CHARS
        );
    }
    if r.rejected_words > 0 {
        relbert::say!(
            "  {} word(s) seen --min-count times left out for characters other than letters \
             (digits, `_`, `.`), such as {}",
            group(r.rejected_words as u64),
            r.rejected_examples.join(", ")
        );
    }
    if let Some(line) = skipped_line(r) {
        relbert::say!("  {line}");
    }
}

/// What reading skipped (lines, files, links), with the first examples; `None` when
/// nothing was. Said in the summary, and in the error of a run that found no pair, where
/// it may be the reason.
fn skipped_line(r: &MineReport) -> Option<String> {
    use super::progress::group;
    let skipped = r.invalid_utf8_lines
        + r.bad_json_lines
        + r.binary_files
        + r.utf16_files
        + r.broken_links
        + r.html_left_open;
    // HTML left open is rare: named only when it happened.
    let html = if r.html_left_open > 0 {
        format!(
            ", {} HTML files ended inside markup (the rest of each not mined)",
            group(r.html_left_open)
        )
    } else {
        String::new()
    };
    (skipped > 0).then(|| {
        format!(
            "skipped: {} lines not UTF-8, {} JSON lines without text, {} binary files, {} UTF-16 files, {} broken or looping links{html}; first: {}",
            group(r.invalid_utf8_lines),
            group(r.bad_json_lines),
            group(r.binary_files),
            group(r.utf16_files),
            group(r.broken_links),
            r.skipped_examples.join("; ")
        )
    })
}

/// Why no pair was written, naming the flag that left none (`None` when some were): a run
/// that found nothing said only "mined 0 pairs".
fn no_pairs_why(r: &MineReport, a: &MineArgs) -> Option<String> {
    if r.pairs_out > 0 {
        return None;
    }
    let why = if r.distinct_pairs == 0 {
        format!(
            "no pairs: no two of the {} terms were seen in one sentence within --window {} \
             tokens of each other (more text, a lower --min-count for more terms, or a wider \
             --window?)",
            r.vocab, a.window
        )
    } else {
        format!(
            "no pairs: no pair reached --min-pair-count {}; the most frequent pair occurred {} \
             time(s) ({} distinct pairs were counted)",
            a.min_pair_count, r.max_pair_count, r.distinct_pairs
        )
    };
    Some(format!(
        "{why}{}",
        relbert::corpus::repeats_counted_once(r.repeated_paragraphs)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A full work directory said only `<work>/run-0-3.bin: No space left on device`, naming
    // neither flag that helps; another file's error, or another error, is left as it is.
    #[test]
    fn a_full_work_directory_names_tmp_dir_and_memory() {
        let (work, parent) = (Path::new("/t/.relbert-mine-x"), Path::new("/t"));
        let full = |p: &str| relbert::Error::io(p, std::io::Error::from_raw_os_error(libc::ENOSPC));
        let msg = work_dir_full(full("/t/.relbert-mine-x/run-0-3.bin"), work, parent).to_string();
        assert!(
            msg.contains("--tmp-dir") && msg.contains("--memory") && msg.contains("run-0-3.bin"),
            "{msg}"
        );
        let msg = work_dir_full(full("/out/pairs.tsv"), work, parent).to_string();
        assert!(!msg.contains("--tmp-dir"), "{msg}");
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        // An exponent is read as one; a unit that starts with E is named whole.
        assert_eq!(parse_size("1e3K"), Ok(1_024_000));
        assert_eq!(parse_size("1E+1K"), Ok(10_240));
        for unit in ["EB", "EiB", "E"] {
            let e = parse_size(&format!("2{unit}")).unwrap_err();
            assert!(e.starts_with(&format!("{unit:?} is not a unit")), "{e}");
        }
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("G").is_err());
        // Under one byte is no budget, as 0 is not.
        assert!(parse_size("0.0000001K").is_err());
        assert!(parse_size("0K").is_err());
        assert_eq!(parse_size("0.5K"), Ok(512));
    }

    /// Audit (s16): `1`, `1e9` and `2GB` were refused as "give a size of at least one
    /// byte", where the unit was what was missing (or not understood).
    #[test]
    fn sizes_say_a_unit_is_needed_and_take_the_usual_spellings() {
        for bare in ["1", "1e9", "4", " 2 "] {
            let e = parse_size(bare).unwrap_err();
            assert!(
                e.contains("needs a unit") && e.contains("512M"),
                "{bare}: {e}"
            );
        }
        let e = parse_size("2X").unwrap_err();
        assert!(e.contains("\"X\" is not a unit"), "{e}");
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1e3K"), Ok(1000 << 10));
        assert_eq!(parse_size("1.5 GiB"), Ok(3 << 29));
        assert!(parse_size("16777216T").unwrap_err().contains("16 EiB"));
        assert!(parse_size("nanG").is_err());
        assert!(parse_size("infG").is_err());
    }

    #[test]
    fn different_pair_lists_get_different_provenance_files() {
        let p = |o: &str| provenance_path(Path::new(o));
        assert_eq!(p("pairs.tsv"), PathBuf::from("pairs.provenance.jsonl"));
        assert_eq!(p("d/pairs.TXT"), PathBuf::from("d/pairs.provenance.jsonl"));
        assert_eq!(p("run.v1"), PathBuf::from("run.v1.provenance.jsonl"));
        assert_ne!(p("run.v1"), p("run.v2"));
        assert_eq!(p("pairs"), PathBuf::from("pairs.provenance.jsonl"));
    }
}
