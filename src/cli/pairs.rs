//! `relbert pairs mine`: a corpus in, a ranked pair list (the pair TSV `index build` reads)
//! and its provenance out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use relbert::corpus::source::{InputFormat, Paragraphs};
use relbert::corpus::vocab::{parse_word_list, Terms, DEFAULT_STOPWORDS};
use relbert::corpus::{mine, MineOptions, MineProgress, MineReport, MinedPair, Score};
use relbert::output::{
    check_replaceable, AtomicFile, OutputKind, MINED_PAIRS_MARK, MINED_VOCAB_MARK,
};

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
    /// Corpus: text files, gzip/zstd files, JSON lines, directories (recursive), `-` for
    /// standard input.
    #[arg(long, required = true, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// Output pair list (head<TAB>tail<TAB>label), or `-` for standard output.
    #[arg(long, value_parser = super::output_file)]
    out: PathBuf,
    /// Provenance sidecar (JSON lines: counts, connecting phrases, places per pair).
    /// Default: beside --out as NAME.provenance.jsonl; none when --out is `-`.
    #[arg(long, value_parser = super::output_file)]
    provenance: Option<PathBuf>,
    /// How inputs are parsed (auto: JSON lines for *.jsonl / *.ndjson, text otherwise).
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
    /// term wherever they occur.
    #[arg(long)]
    terms: Option<PathBuf>,
    /// Learn two-word phrases from the corpus (word2phrase's bigram score).
    #[arg(long)]
    phrases: bool,
    /// Score a bigram must exceed to become a phrase.
    #[arg(long, default_value_t = 100.0)]
    phrase_threshold: f64,
    /// Co-occurrence window in tokens.
    #[arg(long, default_value_t = 10)]
    window: usize,
    /// A word must occur this often to be a term.
    #[arg(long, default_value_t = 5)]
    min_count: u64,
    /// At most this many terms, most frequent first.
    #[arg(long, default_value_t = 100_000)]
    vocab_size: usize,
    /// A pair must co-occur this often to be ranked.
    #[arg(long, default_value_t = 5)]
    min_pair_count: u64,
    /// At most this many pairs are written.
    #[arg(long, default_value_t = 100_000)]
    max_pairs: usize,
    /// Ranking: pmi (relations over mere frequency), npmi (normalised PMI) or count.
    #[arg(long, value_enum, default_value_t = Score::Pmi)]
    score: Score,
    /// Memory budget for the counts (e.g. 512M, 4G); beyond it sorted runs spill to disk.
    #[arg(long, default_value = "2G")]
    memory: String,
    /// Where spilled runs go (default: beside --out, or the system's temporary directory).
    #[arg(long)]
    tmp_dir: Option<PathBuf>,
    /// Places kept per pair in the provenance file.
    #[arg(long, default_value_t = 3)]
    examples: usize,
    /// Write the vocabulary (term<TAB>count, most frequent first) to this file.
    #[arg(long, value_parser = super::output_file)]
    save_vocab: Option<PathBuf>,
    /// Write what mining did (counts, passes, timings) as JSON to this file.
    #[arg(long, value_parser = super::output_file)]
    report: Option<PathBuf>,
    /// Replace existing outputs (only ones relbert wrote).
    #[arg(long)]
    force: bool,
}

/// Runs `relbert pairs …`.
pub fn run(cmd: PairsCommand) -> Result<()> {
    match cmd {
        PairsCommand::Mine(a) => run_mine(a),
    }
}

/// Parses `512M`, `4G`, `1.5G`, `100K` (binary units) into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        (i, 'T' | 't') => (&s[..i], 1 << 40),
        _ => return None,
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some((v * mult as f64) as u64)
}

fn provenance_path(out: &Path) -> PathBuf {
    out.with_extension("provenance.jsonl")
}

/// Shows each pass as a byte progress display.
struct PassProgress(Mutex<Option<Progress>>);

impl MineProgress for PassProgress {
    fn start(&self, pass: &str, total: u64) {
        let mut p = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *p = Some(Progress::bytes(total, pass));
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
    let memory = parse_size(&a.memory).with_context(|| {
        format!(
            "invalid value for --memory: {:?} (give a size such as 512M or 4G)",
            a.memory
        )
    })?;
    for (flag, v) in [
        ("--window", a.window),
        ("--vocab-size", a.vocab_size),
        ("--max-pairs", a.max_pairs),
    ] {
        if v == 0 {
            bail!("invalid value for {flag}: must be at least 1");
        }
    }
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
    let mut locks = Vec::new();
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
            bail!(
                "invalid value for {}: {} is also the path of {}; each output needs its own",
                flag(kind),
                p.display(),
                flag(other)
            );
        }
    }
    for (p, kind) in &outputs {
        if a.corpus.iter().any(|c| relbert::output::same_file(c, p)) {
            bail!(
                "{} is also a corpus input; choose another output",
                p.display()
            );
        }
        locks.push(relbert_index::OutputLock::acquire(p)?);
        check_replaceable(p, a.force, *kind)?;
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
    // Ctrl-C would skip the work directory's cleanup (spilled runs and the copy of standard
    // input can be large); the outputs are only ever written at the end, under temporary
    // names, so nothing else is left half-done. The handler is in place before the
    // directory exists, so no interrupt falls between the two.
    let to_remove: std::sync::Arc<Mutex<Option<PathBuf>>> = Default::default();
    {
        let to_remove = to_remove.clone();
        let _ = ctrlc::set_handler(move || {
            if let Some(dir) = to_remove.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            eprintln!("interrupted: nothing was written");
            std::process::exit(130);
        });
    }
    let work = tempfile::Builder::new()
        .prefix(".relbert-mine-")
        .tempdir_in(&tmp_parent)
        .with_context(|| format!("making a work directory in {}", tmp_parent.display()))?;
    *to_remove.lock().unwrap_or_else(|p| p.into_inner()) = Some(work.path().to_path_buf());

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
    };
    let started = std::time::Instant::now();
    let (pairs, report) = mine(&opts, &PassProgress(Mutex::new(None)))?;
    let header = format!(
        "{MINED_PAIRS_MARK}: {} pairs from {} files, window {}, score {:?}, min-count {}, min-pair-count {}",
        pairs.len(),
        report.files,
        a.window,
        a.score,
        a.min_count,
        a.min_pair_count
    );
    if to_stdout {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::new(stdout.lock());
        write_pairs(&mut w, &header, &pairs).context("writing pairs to standard output")?;
    } else {
        let mut f = AtomicFile::create(&a.out, a.force)?;
        match write_pairs(f.writer(), &header, &pairs) {
            Ok(()) => f.commit()?,
            Err(e) => {
                f.discard();
                return Err(e).with_context(|| format!("writing {}", a.out.display()));
            }
        }
    }
    if let Some(p) = &provenance {
        let mut f = AtomicFile::create(p, a.force)?;
        let res = pairs.iter().try_for_each(|m| {
            serde_json::to_writer(&mut *f.writer(), m)?;
            f.writer().write_all(b"\n")?;
            Ok::<_, anyhow::Error>(())
        });
        match res {
            Ok(()) => f.commit()?,
            Err(e) => {
                f.discard();
                return Err(e).with_context(|| format!("writing {}", p.display()));
            }
        }
    }
    if let Some(v) = &a.save_vocab {
        let mut f = AtomicFile::create(v, a.force)?;
        writeln!(
            f.writer(),
            "{MINED_VOCAB_MARK}: term<TAB>count, most frequent first"
        )?;
        for (t, c) in &report.vocabulary {
            writeln!(f.writer(), "{t}\t{c}")?;
        }
        f.commit()?;
    }
    if let Some(r) = &a.report {
        let mut f = AtomicFile::create(r, a.force)?;
        serde_json::to_writer_pretty(&mut *f.writer(), &report)?;
        f.commit()?;
    }
    summary(&report, started.elapsed().as_secs_f64());
    drop(locks);
    Ok(())
}

fn write_pairs(w: &mut impl Write, header: &str, pairs: &[MinedPair]) -> Result<()> {
    writeln!(w, "{header}")?;
    for m in pairs {
        writeln!(w, "{}\t{}\t{}", m.head, m.tail, m.label())?;
    }
    w.flush()?;
    Ok(())
}

/// The people's summary on standard error.
fn summary(r: &MineReport, secs: f64) {
    use super::progress::{group, rate};
    eprintln!(
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
    for p in &r.passes {
        if p.bytes == 0 {
            eprintln!(
                "  {:<18} {:>7.1}s ({:.1}s CPU)",
                p.name, p.seconds, p.cpu_seconds
            );
            continue;
        }
        eprintln!(
            "  {:<18} {:>7.1}s ({:.1}s CPU)  {:>14}  {:>18}",
            p.name,
            p.seconds,
            p.cpu_seconds,
            rate(p.bytes as f64 / 1e6 / p.seconds.max(1e-9), "MB"),
            rate(p.tokens as f64 / p.seconds.max(1e-9), "tokens")
        );
    }
    if r.spilled_bytes > 0 {
        eprintln!(
            "  counts over the memory budget: {:.1} MB spilled to disk and merged",
            r.spilled_bytes as f64 / 1e6
        );
    }
    let skipped = r.invalid_utf8_lines + r.bad_json_lines + r.binary_files;
    if skipped > 0 {
        eprintln!(
            "  skipped: {} lines not UTF-8, {} JSON lines without text, {} binary files; first: {}",
            r.invalid_utf8_lines,
            r.bad_json_lines,
            r.binary_files,
            r.skipped_examples.join("; ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size("4"), None);
        assert_eq!(parse_size("-1G"), None);
        assert_eq!(parse_size("G"), None);
    }
}
