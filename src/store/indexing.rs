//! Building a relation index from a pair file: pairs stream through the encoder in chunks
//! into a [`relbert_index::IndexBuilder`], which checkpoints after each chunk, so an
//! interrupted build resumes where it stopped; then the HNSW graph is built and the finished
//! directory is published atomically. [`add_to_index`] grows a published index by the pairs
//! it does not hold yet, through [`relbert_index::IndexGrower`].

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use relbert_index::{
    EncoderInfo, GraphPriority, HnswParams, Index, IndexBuilder, IndexGrower, IndexSpec, PairEntry,
    Precision, Progress,
};

use crate::error::{Error, Result};
use crate::pairs::PairRecord;
use crate::pooling::{normalize_in_place, Aggregation};
use crate::precision::Dtype;
use crate::relation::{EncoderIdentity, RelationEncoder, WordVectors};

/// Pairs encoded and appended per checkpoint.
pub const BUILD_CHUNK: usize = 2048;

/// Word vectors kept across a build's chunks (for pair vectors with an offset weight) before
/// the cache is emptied: about 200 MB at 384 dimensions.
const WORD_CACHE_MAX: usize = 131_072;

/// Separates the aggregation name from the offset weight in [`EncoderInfo::aggregation`].
const OFFSET_SUFFIX: &str = "+offset:";

/// Separates the number format from the rest of [`EncoderInfo::aggregation`].
const DTYPE_SUFFIX: &str = "+dtype:";

/// Separates the tokenizer/config digest ([`EncoderIdentity::files_digest`]) from the pair
/// function in [`EncoderInfo::aggregation`].
const FILES_SUFFIX: &str = "+files:";

/// The encoder identity as the index crate stores it. The offset weight, the tokenizer/config
/// digest and a reduced number format travel in the `aggregation` string
/// (`mask+offset:0.7+files:0123456789abcdef+dtype:bf16`, in that order) rather than in fields
/// of their own: `meta` is a bincode record, in which a new field would make every existing
/// index (and every Qdrant collection's record, which holds the same [`EncoderInfo`])
/// unreadable, so the index's format, and every index built before pair vectors could be
/// combined, computed at reduced precision or tied to their tokenizer, stay as they are.
pub fn encoder_info(id: &EncoderIdentity) -> EncoderInfo {
    let mut aggregation = match id.offset_weight {
        Some(w) => format!("{}{OFFSET_SUFFIX}{w}", id.aggregation),
        None => id.aggregation.clone(),
    };
    if let Some(files) = &id.files_digest {
        aggregation = format!("{aggregation}{FILES_SUFFIX}{files}");
    }
    if id.dtype != Dtype::F32 {
        aggregation = format!("{aggregation}{DTYPE_SUFFIX}{}", id.dtype);
    }
    EncoderInfo {
        model: id.model.clone(),
        weights_sha256: id.weights_sha256.clone(),
        template: id.template.clone(),
        aggregation,
    }
}

/// [`EncoderInfo::aggregation`] without its number format, and that format's name.
fn split_dtype(aggregation: &str) -> (&str, Option<&str>) {
    match aggregation.rsplit_once(DTYPE_SUFFIX) {
        Some((rest, dtype)) => (rest, Some(dtype)),
        None => (aggregation, None),
    }
}

/// The parts of [`EncoderInfo::aggregation`]: the pair function (aggregation and offset
/// weight: `mask+offset:0.7`), the tokenizer/config digest when recorded, the number format
/// when recorded.
fn split_parts(aggregation: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, dtype) = split_dtype(aggregation);
    match rest.rsplit_once(FILES_SUFFIX) {
        Some((function, files)) => (function, Some(files), dtype),
        None => (rest, None, dtype),
    }
}

/// The tokenizer/config digest an encoder identity records
/// ([`crate::config::function_files_digest`]), `None` for one recorded before digests were.
pub fn files_digest(info: &EncoderInfo) -> Option<&str> {
    split_parts(&info.aggregation).1
}

/// [`EncoderInfo::aggregation`] as people read it: the pair function and number format,
/// without the tokenizer/config digest ([`files_digest`] gives that).
pub fn shown_aggregation(info: &EncoderInfo) -> String {
    match split_parts(&info.aggregation) {
        (function, _, Some(dtype)) => format!("{function}{DTYPE_SUFFIX}{dtype}"),
        (function, _, None) => function.to_string(),
    }
}

/// The number format an index's vectors were computed at (float32 for indexes that do not
/// say); the error names `index` and the bad string.
pub fn built_dtype(info: &EncoderInfo, index: &Path) -> Result<Dtype> {
    match split_dtype(&info.aggregation).1 {
        None => Ok(Dtype::F32),
        Some(name) => name.parse().map_err(|_| Error::Config {
            path: index.join("meta"),
            message: format!(
                "encoder aggregation {:?}: {name:?} is not a known number format",
                info.aggregation
            ),
        }),
    }
}

/// The aggregation and offset weight an index's [`EncoderInfo::aggregation`] names (the
/// inverse of [`encoder_info`]'s encoding, less the number format: see [`built_dtype`]); the
/// error names `index` and the bad string.
pub fn pair_function(info: &EncoderInfo, index: &Path) -> Result<(Aggregation, Option<f32>)> {
    let bad = |why: String| Error::Config {
        path: index.join("meta"),
        message: format!("encoder aggregation {:?}: {why}", info.aggregation),
    };
    let (function, _, _) = split_parts(&info.aggregation);
    let (name, weight) = match function.split_once(OFFSET_SUFFIX) {
        Some((name, w)) => {
            let w: f32 = w.parse().map_err(|e| bad(format!("offset weight: {e}")))?;
            (name, Some(w))
        }
        None => (function, None),
    };
    let aggregation = name
        .parse()
        .map_err(|_| bad("not a known aggregation mode".into()))?;
    Ok((aggregation, weight))
}

/// Whether vectors from `offered` are comparable with an index built by `built` (same
/// weights, template, aggregation, offset weight and tokenizer/config digest; the model's path
/// may differ).
///
/// The number format is not compared: the reduced formats are held to cosine ≥ 0.999 per
/// pair against float32 (tests/precision.rs), so a query encoded at another format than the
/// index's finds the same neighbours up to near-ties. Callers say so with [`dtype_note`].
///
/// The tokenizer/config digest is compared only when both record one: an index (or a Qdrant
/// collection) written before it was recorded is judged on what it has, as it always was,
/// instead of being refused for every model.
pub fn same_function(built: &EncoderInfo, offered: &EncoderInfo) -> bool {
    let (a, b) = (
        split_parts(&built.aggregation),
        split_parts(&offered.aggregation),
    );
    built.weights_sha256 == offered.weights_sha256
        && built.template == offered.template
        && a.0 == b.0
        && !matches!((a.1, b.1), (Some(x), Some(y)) if x != y)
}

/// What tells the pair functions of `have` and `want` apart, as [`same_function`] compares
/// them, each field named (`model … not …`, `template … not …`, `aggregation … not …`,
/// `tokenizer/config … not …`); empty when they are the same function. For refusals and
/// staleness notes.
pub fn function_difference(have: &EncoderInfo, want: &EncoderInfo) -> Vec<String> {
    let mut parts = Vec::new();
    if have.weights_sha256 != want.weights_sha256 {
        parts.push(format!(
            "model {} (weights sha256 {}), not {} (sha256 {})",
            have.model, have.weights_sha256, want.model, want.weights_sha256
        ));
    }
    if have.template != want.template {
        parts.push(format!(
            "template {:?}, not {:?}",
            have.template, want.template
        ));
    }
    let (a, b) = (
        split_parts(&have.aggregation),
        split_parts(&want.aggregation),
    );
    if a.0 != b.0 {
        parts.push(format!("aggregation {}, not {}", a.0, b.0));
    }
    if let (Some(x), Some(y)) = (a.1, b.1) {
        if x != y {
            // The weights say it already when they differ too.
            let why = if have.weights_sha256 == want.weights_sha256 {
                " (same weights, but another tokenizer.json or config.json values, which give \
                 other vectors)"
            } else {
                ""
            };
            parts.push(format!(
                "tokenizer/config {x} of {}, not {y} of {}{why}",
                have.model, want.model
            ));
        }
    }
    parts
}

/// The name of the number format `info` records (`f32` for one that records none, as
/// float32 indexes and collections do), as `--dtype` spells it.
pub fn dtype_name(info: &EncoderInfo) -> &str {
    split_dtype(&info.aggregation).1.unwrap_or("f32")
}

/// Whether vectors from `offered` may be written beside those `built` wrote, in one index or
/// collection: the same pair function ([`same_function`]) at the same number format.
///
/// Readers may encode at another format than a store's (a query's vector is compared, not
/// stored), but a writer's vectors stay: a store of two formats would record one of them
/// and hold the other unseen. [`format_difference`] names the formats of a refusal.
pub fn same_vectors(built: &EncoderInfo, offered: &EncoderInfo) -> bool {
    same_function(built, offered) && dtype_name(built) == dtype_name(offered)
}

/// `number format HAVE, not WANT` when `have` and `want` record other formats, for a
/// writer's refusal ([`same_vectors`]); `None` when they agree.
pub fn format_difference(have: &EncoderInfo, want: &EncoderInfo) -> Option<String> {
    let (h, w) = (dtype_name(have), dtype_name(want));
    (h != w).then(|| format!("number format {h}, not {w}"))
}

/// A note for the user when `offered` computes at another number format than the index
/// `built` (see [`same_function`]); `None` when they agree.
pub fn dtype_note(built: &EncoderInfo, offered: &EncoderInfo) -> Option<String> {
    format_note(dtype_name(built), dtype_name(offered))
}

/// [`dtype_note`] for queries encoded at `offered`: what a reader that keeps an explicit
/// `--dtype` says when the index it follows is replaced by one built at another format.
pub fn dtype_note_at(built: &EncoderInfo, offered: Dtype) -> Option<String> {
    format_note(dtype_name(built), offered.name())
}

fn format_note(built: &str, offered: &str) -> Option<String> {
    (built != offered).then(|| {
        format!(
            "the index was built at {built} and queries are encoded at {offered}; the two \
             agree to cosine 0.999 per pair, so only near-ties among neighbours can change \
             order"
        )
    })
}

/// Options of an index build. The default is `relbert index build`'s: float32 vectors,
/// the default graph, no `--force`, no copy of the input.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// HNSW parameters.
    pub hnsw: HnswParams,
    /// Store vectors as f16.
    pub half: bool,
    /// Replace an existing index.
    pub force: bool,
    /// Keep a copy of the records in the partial build, for input that cannot be read again
    /// (standard input), so an interrupted build can resume from it; with the counts of the
    /// input the records were taken from ([`AddCounts`]: the pairs left out as too long are
    /// not in the copy), which [`spooled_input`] gives back to the resumed build. `None`: no
    /// copy.
    pub spool: Option<AddCounts>,
    /// Build the graph while the pairs are encoded ([`GraphWhileEncoding`]).
    pub graph_while_encoding: GraphWhileEncoding,
    /// How that graph yields the CPU to the encoder ([`GraphPriority`]; unused without it).
    pub graph_priority: GraphPriority,
}

/// Whether an index build inserts rows into the HNSW graph while later chunks are still
/// being encoded ([`relbert_index::IndexBuilder::graph_during_appends`]), instead of after
/// the last one.
///
/// It pays when the encoder leaves CPU cores idle: a GPU encodes the 1M-pair index in about
/// the time 16 cores take for its graph (`benchmarks/precision.md`), so building both at
/// once nearly halves the wall time. The CPU encoder already uses every core, and a graph
/// thread would only take turns with it, so `Auto` stages the graph on GPUs only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum GraphWhileEncoding {
    /// On when the encoder runs on a GPU, off on the CPU.
    #[default]
    Auto,
    /// Always.
    On,
    /// Never: the graph is built after the last pair is encoded.
    Off,
}

impl GraphWhileEncoding {
    /// Whether to stage the graph for an encoder on `device`.
    pub fn enabled(self, device: &candle_core::Device) -> bool {
        match self {
            GraphWhileEncoding::Auto => !device.is_cpu(),
            GraphWhileEncoding::On => true,
            GraphWhileEncoding::Off => false,
        }
    }
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The published index directory.
    pub dir: PathBuf,
    /// Input rows taken from an earlier interrupted run.
    pub resumed_rows: u64,
    /// Distinct pairs stored.
    pub count: u64,
    /// Duplicate input rows skipped.
    pub skipped: u64,
    /// Seconds spent encoding and appending.
    pub encode_secs: f64,
    /// Seconds spent building the graph and writing the files (after the last chunk was
    /// encoded).
    pub graph_secs: f64,
    /// Rows inserted into the graph while encoding ([`GraphWhileEncoding`]; 0 when off).
    pub graph_rows_while_encoding: u64,
}

/// Builds (or resumes building) an index of `records` at `out`. `on_rows` is told how many
/// input rows are done (within a chunk too, after each encoder batch, possibly from another
/// thread), `on_graph` reports graph progress.
pub fn build_index(
    encoder: &RelationEncoder,
    records: &[PairRecord],
    out: &Path,
    opts: &BuildOptions,
    on_rows: &(dyn Fn(u64) + Sync),
    on_graph: &mut dyn FnMut(Progress),
) -> Result<BuildReport> {
    // Refused now, not after minutes of encoding.
    opts.hnsw.validate()?;
    let spec = IndexSpec {
        dim: encoder.dim() as u32,
        precision: if opts.half {
            Precision::F16
        } else {
            Precision::F32
        },
        encoder: encoder_info(&encoder.identity_for_record()?),
        input: crate::pairs::records_identity(records),
    };
    let mut builder = IndexBuilder::create_or_resume(out, spec, opts.force)?;
    // A repeated pair keeps its first label: a different one is named, not lost unseen.
    crate::pairs::warn_label_conflicts(&crate::pairs::label_conflicts(records));
    if let Some(counts) = &opts.spool {
        // A failure (a full disk) is said as the rest of the build's are, with what to do;
        // a partial directory this run made holds nothing without the copy, and goes.
        let path = builder.spool_path();
        if let Err(e) = write_spool(&path, records, Some(counts)) {
            return Err(builder.spool_failed(&path, e).into());
        }
    }
    let resumed = builder.rows_done();
    if resumed > 0 {
        tracing::info!("resuming: {resumed} input rows already in the partial index");
    }
    if opts
        .graph_while_encoding
        .enabled(encoder.encoder().device())
    {
        // Its default threads are every core but one, which this thread keeps for the encoder.
        let capacity = builder.count() + (records.len() as u64).saturating_sub(resumed);
        builder.graph_during_appends(opts.hnsw, capacity, opts.graph_priority)?;
    }
    let started = std::time::Instant::now();
    encode_chunks(
        encoder,
        records,
        resumed,
        on_rows,
        &mut |entries, vectors| {
            builder.append_chunk(entries, vectors)?;
            Ok(())
        },
    )?;
    let encode_secs = started.elapsed().as_secs_f64();
    let (count, skipped) = (builder.count(), builder.skipped());
    let started = std::time::Instant::now();
    let graph_rows_while_encoding = builder.staged_progress().map_or(0, |p| p.inserted);
    let dir = builder.finish(opts.hnsw, on_graph)?;
    Ok(BuildReport {
        dir,
        resumed_rows: resumed,
        count,
        skipped,
        encode_secs,
        graph_secs: started.elapsed().as_secs_f64(),
        graph_rows_while_encoding,
    })
}

/// Keeps `records` as pair TSV at `path` (a partial build's
/// [`IndexBuilder::spool_path`]), unless a copy is there already: standard input cannot be
/// read twice, so a build or add from it spools what it read, and when it is interrupted, the
/// same command with an empty standard input resumes from the copy ([`spooled_input`]).
/// Written to `path.tmp`, synced and renamed, so the copy is whole or absent. Its first line
/// is relbert's mark ([`relbert_index::spool_header`], a comment to the pair reader): a kill
/// right after publication leaves the copy in the published index, and only a marked one is
/// taken there for relbert's (a user's `input.spool` went with the index before).
pub fn spool_records(path: &Path, records: &[PairRecord]) -> Result<()> {
    write_spool(path, records, None).map_err(|e| Error::io(path, e))
}

/// How the line of a build's or add's copy of standard input that records [`AddCounts`]
/// begins (its name kept from when only an add wrote it, so an older copy still reads): a
/// comment to the pair reader (as the spool's mark is), so the copy stays a pair list that
/// a relbert which does not know the line reads as before.
const ADD_COUNTS_MARK: &str = "# relbert add counts:";

/// What an `index add` or `index build` read beside the pairs it encodes: the copy of
/// standard input it keeps ([`add_to_index`], [`build_index`]) holds only those, the new
/// pairs that can be encoded, so a resumed run would report the copy's count as the pairs
/// read and none already in the index, repeated or too long. Recorded in the copy, whose
/// writing is atomic ([`spool_records`]), and read back with it ([`spooled_input`]), the
/// resumed run reports what an uninterrupted one does. A build records none in the index or
/// repeated: its repeats are in the copy, counted again by the resumed build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddCounts {
    /// Input records read, in all.
    pub read: u64,
    /// Records whose pair the index already held.
    pub in_index: u64,
    /// Records repeating an earlier record of the input.
    pub repeated: u64,
    /// New pairs left out as too long to encode (`--skip-long`).
    pub too_long: u64,
}

impl AddCounts {
    /// The line recording these counts in a copy of standard input (with its line end).
    fn line(&self) -> String {
        format!(
            "{ADD_COUNTS_MARK} read {} in_index {} repeated {} too_long {}\n",
            self.read, self.in_index, self.repeated, self.too_long
        )
    }

    /// The counts a line written by [`Self::line`] records; `None` for any other line.
    fn parse(line: &str) -> Option<AddCounts> {
        let rest = line.trim_end().strip_prefix(ADD_COUNTS_MARK)?;
        let words: Vec<&str> = rest.split_whitespace().collect();
        let ["read", read, "in_index", in_index, "repeated", repeated, "too_long", too_long] =
            words.as_slice()
        else {
            return None;
        };
        Some(AddCounts {
            read: read.parse().ok()?,
            in_index: in_index.parse().ok()?,
            repeated: repeated.parse().ok()?,
            too_long: too_long.parse().ok()?,
        })
    }
}

fn write_spool(
    path: &Path,
    records: &[PairRecord],
    counts: Option<&AddCounts>,
) -> std::io::Result<()> {
    use std::io::Write;
    if path.exists() {
        return Ok(());
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    w.write_all(relbert_index::spool_header().as_bytes())?;
    if let Some(counts) = counts {
        w.write_all(counts.line().as_bytes())?;
    }
    for r in records {
        // Parsed from TSV lines: no tab or line break inside, no head starting with '#'.
        // As the file spells them, so the copy read back has the identity of the input
        // ([`crate::pairs::records_identity`]) and resumes its build.
        let (head, tail) = r.as_written();
        match &r.label {
            Some(l) => writeln!(w, "{head}\t{tail}\t{l}")?,
            None => writeln!(w, "{head}\t{tail}")?,
        }
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The records an interrupted build or add of `out` spooled ([`spool_records`]), if its
/// partial directory holds a whole copy, or the published index holds one with relbert's
/// mark (a kill came between publishing and removing the copy:
/// [`relbert_index::input_spool`]). A copy in the partial directory without the mark is an
/// older relbert's, which wrote none, and is read as it is; a copy of a later spool format
/// than this relbert's is refused, naming it. With them, the counts the build or add recorded
/// in its copy ([`AddCounts`]): `None` for an older relbert's copy, or counts that
/// do not add up to the records the copy holds (which are then reported as before, from the
/// copy alone).
pub fn spooled_input(out: &Path) -> Result<Option<(Vec<PairRecord>, Option<AddCounts>)>> {
    use relbert_index::{SpoolMark, SPOOL_VERSION};
    let path = relbert_index::input_spool(out)?;
    if !path.is_file() {
        return Ok(None);
    }
    match relbert_index::spool_mark(&path).map_err(|e| Error::io(&path, e))? {
        SpoolMark::Marked(v) if v > SPOOL_VERSION => {
            return Err(Error::Config {
                path,
                message: format!(
                    "a copy of standard input in spool format {v}, written by a newer relbert \
                     (this one reads format {SPOOL_VERSION}); finish the interrupted run with \
                     that relbert"
                ),
            })
        }
        // The mark is a comment line to the pair reader, which skips it.
        SpoolMark::Marked(_) | SpoolMark::Unmarked | SpoolMark::Cut => {}
    }
    let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let counts = spooled_counts(&f).map_err(|e| Error::io(&path, e))?;
    let records = crate::pairs::parse_pairs(f, &path)?;
    let counts = counts.filter(|c| {
        // Checked: the copy is a file a user can edit.
        let sum = [c.in_index, c.repeated, c.too_long]
            .into_iter()
            .try_fold(records.len() as u64, u64::checked_add);
        let adds_up = sum == Some(c.read);
        if !adds_up {
            tracing::warn!(
                "{}: the counts it records ({c:?}) do not add up to the {} pairs it holds; \
                 the pairs read are reported from the copy alone",
                path.display(),
                records.len()
            );
        }
        adds_up
    });
    Ok(Some((records, counts)))
}

/// The [`AddCounts`] line of a copy of standard input, read from the start of `f` (its second
/// line, after the mark), without moving `f`'s position.
fn spooled_counts(f: &std::fs::File) -> std::io::Result<Option<AddCounts>> {
    use std::io::BufRead;
    use std::os::unix::fs::FileExt;
    // The mark and the counts line are well under 1 KiB.
    let mut head = vec![0u8; 1024];
    let mut n = 0;
    while n < head.len() {
        match f.read_at(&mut head[n..], n as u64)? {
            0 => break,
            got => n += got,
        }
    }
    let mut lines = head[..n].lines();
    let _mark = lines.next();
    Ok(lines
        .next()
        .and_then(|l| l.ok())
        .and_then(|l| AddCounts::parse(&l)))
}

/// `word` as an index stores it and the encoder reads it: as written when it is in NFC or in
/// NFD, in NFC when it is in neither (a precomposed letter with a combining accent after it,
/// `ê` + U+0301, as Vietnamese keyboards type `ế`).
///
/// A lookup tries a pair's bytes as given, in NFC and in NFD
/// ([`relbert_index::Index::lookup`]), not every mixture of the two: a word stored in a mixed
/// form was found by no other spelling (`query` encoded it afresh, `index remove` said it was
/// not in the index), while the build took the NFC or NFD spelling for the same pair.
pub fn stored_word(word: &str) -> Cow<'_, str> {
    use unicode_normalization::{is_nfc, is_nfd};
    if word.is_ascii() || is_nfc(word) || is_nfd(word) {
        Cow::Borrowed(word)
    } else {
        relbert_index::pairs::canonical(word)
    }
}

/// Where [`encode_chunks`] hands each chunk: its entries and their unit vectors, row-major.
pub(crate) type ChunkSink<'a> = dyn FnMut(&[PairEntry], &[f32]) -> Result<()> + 'a;

/// Encodes `records[skip..]` in chunks of [`BUILD_CHUNK`] and hands each chunk's entries
/// and unit vectors (row-major) to `sink`, each word as [`stored_word`] gives it (for a
/// local index and a Qdrant collection alike); `on_rows` is told the input rows done (from
/// `skip`) after each chunk and inside a chunk, after each encoder batch: a chunk takes
/// minutes on a slow CPU, and a log without a line until it ended looked stuck. The encoder
/// reports from its worker threads, hence `Sync`.
pub(crate) fn encode_chunks(
    encoder: &RelationEncoder,
    records: &[PairRecord],
    skip: u64,
    on_rows: &(dyn Fn(u64) + Sync),
    sink: &mut ChunkSink<'_>,
) -> Result<()> {
    // Pair vocabularies reuse their words: 148,198 pairs of the bundled one hold 67,364.
    let mut words = WordVectors::new();
    let mut no_offset = crate::embed::NoOffsetPairs::new(encoder.offset_weight());
    let mut done = skip;
    on_rows(done);
    for chunk in records[(skip as usize).min(records.len())..].chunks(BUILD_CHUNK) {
        let stored: Vec<(Cow<'_, str>, Cow<'_, str>)> = chunk
            .iter()
            .map(|r| (stored_word(&r.head), stored_word(&r.tail)))
            .collect();
        let pairs: Vec<(&str, &str)> = stored.iter().map(|(h, t)| (&**h, &**t)).collect();
        if words.len() > WORD_CACHE_MAX {
            words.clear();
        }
        // Distinct pairs encoded, at most the chunk's rows.
        let in_chunk = |n: usize| on_rows(done + n.min(chunk.len()) as u64);
        let mut vectors = encoder.embed_with_words(&pairs, &in_chunk, &mut words)?;
        vectors.iter_mut().for_each(|v| normalize_in_place(v));
        for (r, v) in chunk.iter().zip(&vectors) {
            no_offset.note(r, v);
        }
        let vectors: Vec<f32> = vectors.into_iter().flatten().collect();
        let entries: Vec<PairEntry> = chunk
            .iter()
            .zip(stored)
            .map(|(r, (head, tail))| PairEntry {
                head: head.into_owned(),
                tail: tail.into_owned(),
                label: r.label.clone(),
            })
            .collect();
        sink(&entries, &vectors)?;
        done += chunk.len() as u64;
        on_rows(done);
    }
    // Said once the rows are in, as `embed` says it: stored, such a pair ranks by its relation
    // part alone, which nothing else would tell.
    no_offset.warn();
    Ok(())
}

/// The pairs of `records` that `index` does not hold yet, each once (the first occurrence,
/// with its label), in input order; and how many records were already in the index and how
/// many repeated an earlier record.
pub fn new_pairs(index: &Index, records: Vec<PairRecord>) -> Result<NewPairs> {
    // Each record is looked up once, for the label conflicts and the split below.
    let rows = records
        .iter()
        .map(|r| -> relbert_index::Result<Option<usize>> {
            // The words as the file spells them too, and with other apostrophes
            // ([`PairRecord::lookup_spellings`]): an older relbert stored a pair with the
            // invisible characters reading drops now, and with the runs of spaces it makes
            // one; `don’t` is the stored `don't`, as a query takes it.
            for (head, tail) in r.lookup_spellings() {
                if let Some(row) = index.lookup(&head, &tail)? {
                    return Ok(Some(row));
                }
            }
            Ok(None)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    crate::pairs::warn_label_conflicts(&crate::pairs::add_label_conflicts(index, &records, &rows)?);
    let mut seen = std::collections::HashSet::new();
    let mut out = NewPairs::default();
    for (r, row) in records.into_iter().zip(rows) {
        // A repeat first, whether the index holds the pair or not, as `index remove` counts
        // it: a second add of the same file counted its repeats as held pairs (found by an
        // audit: `repeated_in_input` 1, then 0 for the same input).
        if !seen.insert(r.key()) {
            out.repeated += 1;
        } else if row.is_some() {
            out.in_index += 1;
        } else {
            out.records.push(r);
        }
    }
    Ok(out)
}

/// What [`new_pairs`] found.
#[derive(Debug, Default)]
pub struct NewPairs {
    /// The pairs to add, in input order.
    pub records: Vec<PairRecord>,
    /// Input records whose pair the index already holds.
    pub in_index: u64,
    /// Input records repeating an earlier record of the input.
    pub repeated: u64,
}

/// What an add did.
#[derive(Debug, Clone)]
pub struct AddReport {
    /// The index directory.
    pub dir: PathBuf,
    /// Rows of the index before the add.
    pub base_count: u64,
    /// Rows after it.
    pub count: u64,
    /// New rows taken from an earlier interrupted run.
    pub resumed_rows: u64,
    /// Records the grow left out as a spelling of a pair the index held, which
    /// [`new_pairs`] did not find: one stored in a form mixing NFC and NFD (by a relbert
    /// before [`stored_word`]), which no lookup finds. Already in the index, as
    /// [`NewPairs::in_index`] counts.
    pub already_held: u64,
    /// Seconds spent copying the old rows, encoding and appending the new ones.
    pub encode_secs: f64,
    /// Seconds spent inserting the new rows into the graph and writing the files.
    pub graph_secs: f64,
}

/// Grows the index `base` by `records`, which must be pairs it does not hold ([`new_pairs`]):
/// encodes them with `encoder` (the index's pair function: [`crate::query::index_encoder`]),
/// appends them in checkpointed chunks, inserts them into the index's graph and publishes the
/// grown index in place of the old one ([`relbert_index::IndexGrower`]). An interrupted add
/// resumes when run again with the same base and records. `threads` is the graph insertion's
/// thread count (0: all); `spool` keeps a copy of the records in the partial directory
/// ([`spool_records`]) with the counts of the input they were taken from ([`AddCounts`],
/// which [`spooled_input`] gives back); `on_rows` is told new rows done (within a chunk too, after each
/// encoder batch, possibly from another thread), `progress` reports copying and graph
/// progress.
pub fn add_to_index(
    encoder: &RelationEncoder,
    base: Index,
    records: &[PairRecord],
    threads: usize,
    spool: Option<AddCounts>,
    on_rows: &(dyn Fn(u64) + Sync),
    progress: &mut dyn FnMut(Progress),
) -> Result<AddReport> {
    let offered = encoder_info(&encoder.identity()?);
    // Its format too: the grown index records one format for all its rows.
    if !same_vectors(&base.meta().encoder, &offered) {
        let mut differs = function_difference(&base.meta().encoder, &offered);
        differs.extend(format_difference(&base.meta().encoder, &offered));
        return Err(Error::EncoderMismatch {
            index: base.dir().to_path_buf(),
            built: base.meta().encoder.model.clone(),
            offered: format!("{}: {}", offered.model, differs.join("; ")),
        });
    }
    let started = std::time::Instant::now();
    let input = crate::pairs::records_identity(records);
    let mut grower =
        IndexGrower::create_or_resume_keeping(base, &input, threads, &mut *progress, |path| {
            if let Some(counts) = &spool {
                write_spool(path, records, Some(counts))?;
            }
            Ok(())
        })?;
    let (base_count, resumed) = (grower.base_count(), grower.added_rows_done());
    if resumed > 0 {
        tracing::info!("resuming: {resumed} new pairs already in the partial index");
    }
    encode_chunks(
        encoder,
        records,
        resumed,
        on_rows,
        &mut |entries, vectors| {
            grower.append_chunk(entries, vectors)?;
            Ok(())
        },
    )?;
    let encode_secs = started.elapsed().as_secs_f64();
    let (count, already_held) = (grower.count(), grower.skipped());
    let started = std::time::Instant::now();
    let dir = grower.finish(progress)?;
    Ok(AddReport {
        dir,
        base_count,
        count,
        resumed_rows: resumed,
        already_held,
        encode_secs,
        graph_secs: started.elapsed().as_secs_f64(),
    })
}

/// What `relbert index info --json` prints about an open index (the server's `/v1/info`
/// gives the same object): identity, counts, storage, HNSW parameters, the encoder it was
/// built with and sizes on disk. `open_ms` and `verified` describe how it was opened. The
/// encoder's `aggregation` is shown without the tokenizer/config digest, which is
/// `tokenizer_config` (null for an index built before it was recorded).
pub fn info_json(index: &Index, dir: &Path, open_ms: f64, verified: bool) -> serde_json::Value {
    let m = index.meta();
    let sizes = index.disk_sizes();
    serde_json::json!({
        "dir": dir.display().to_string(),
        "id": index.id(),
        "count": m.count, "dim": m.dim, "metric": m.metric,
        "precision": m.precision.name(),
        "format_version": m.format_version,
        "hnsw": {"m": m.hnsw.m, "ef_construction": m.hnsw.ef_construction, "builder": m.hnsw.builder},
        "encoder": encoder_json(&m.encoder),
        "bytes": {"vectors": sizes.vectors, "pairs": sizes.pairs, "graph": sizes.graph,
                  "meta": sizes.meta, "total": sizes.total()},
        "open_ms": open_ms, "verified": verified,
    })
}

/// A recorded encoder as `index info --json` and `/v1/info` show it (an index's or a Qdrant
/// collection's): the recorded string's parts each in a field of its own, named and spelled
/// as `bench --json` names them (`aggregation`, `offset_weight` when there is one, `dtype`
/// lower-case), so that a client reads them without parsing `mask+offset:0.8+dtype:bf16`
/// (found by an audit: the two outputs wrote one identity two ways); `tokenizer_config` is
/// the tokenizer/config digest (null when not recorded). A string whose parts do not read
/// (an index written by hand) is shown whole as `aggregation`, with no `offset_weight`.
pub fn encoder_json(e: &EncoderInfo) -> serde_json::Value {
    let (function, files, dtype) = split_parts(&e.aggregation);
    let (aggregation, offset_weight) = match function.split_once(OFFSET_SUFFIX) {
        // The weight is an f32 everywhere else; widening it as it is would print
        // 0.800000011920929 where `bench --json` prints 0.8, so the f32's shortest decimal
        // is what goes into the (f64) JSON number.
        Some((name, w)) => match w.parse::<f32>() {
            Ok(w) => (
                name.to_string(),
                Some(w.to_string().parse::<f64>().unwrap_or(f64::from(w))),
            ),
            Err(_) => (function.to_string(), None),
        },
        None => (function.to_string(), None),
    };
    let mut doc = serde_json::json!({"model": e.model, "weights_sha256": e.weights_sha256,
                                     "template": e.template, "aggregation": aggregation,
                                     "dtype": dtype.unwrap_or("f32"),
                                     "tokenizer_config": files});
    if let Some(w) = offset_weight {
        doc["offset_weight"] = serde_json::json!(w);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(offset_weight: Option<f32>) -> EncoderIdentity {
        EncoderIdentity {
            model: "m".into(),
            weights_sha256: "00".into(),
            template: "<subj> <mask> <obj>".into(),
            aggregation: "mask".into(),
            offset_weight,
            dtype: Dtype::F32,
            files_digest: None,
        }
    }

    #[test]
    fn the_number_format_is_recorded_and_read_back_but_not_a_different_function() {
        let dir = Path::new("idx");
        for w in [None, Some(0.7f32)] {
            let f32_info = encoder_info(&identity(w));
            for dtype in Dtype::ALL {
                let info = encoder_info(&EncoderIdentity {
                    dtype,
                    ..identity(w)
                });
                assert_eq!(built_dtype(&info, dir).unwrap(), dtype, "{info:?}");
                assert_eq!(pair_function(&info, dir).unwrap(), (Aggregation::Mask, w));
                assert!(same_function(&f32_info, &info));
                assert_eq!(dtype_note(&f32_info, &info).is_some(), dtype != Dtype::F32);
            }
        }
        // Float32 leaves the stored string as it was before formats were recorded.
        assert_eq!(
            encoder_info(&identity(Some(0.5))).aggregation,
            "mask+offset:0.5"
        );
        let bad = EncoderInfo {
            aggregation: "mask+dtype:fp8".into(),
            ..Default::default()
        };
        let err = built_dtype(&bad, Path::new("some/idx"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("some/idx") && err.contains("fp8"), "{err}");
    }

    /// Found by an audit: writers compared pair functions only, so a bf16 collection took
    /// float32 vectors (an `--add`, a resumed build) under its bf16 record. Readers still
    /// may encode at another format; writers may not, and the refusal names both.
    #[test]
    fn writers_keep_one_number_format() {
        for w in [None, Some(0.7f32)] {
            let at = |dtype| {
                encoder_info(&EncoderIdentity {
                    dtype,
                    ..identity(w)
                })
            };
            for (a, b) in [(Dtype::Bf16, Dtype::F32), (Dtype::F32, Dtype::F16)] {
                let (have, want) = (at(a), at(b));
                assert!(same_function(&have, &want));
                assert!(!same_vectors(&have, &want) && !same_vectors(&want, &have));
                assert_eq!(
                    format_difference(&have, &want).as_deref(),
                    Some(format!("number format {a}, not {b}").as_str())
                );
                assert!(same_vectors(&have, &have.clone()));
                assert_eq!(format_difference(&have, &have), None);
                assert_eq!(dtype_note_at(&have, b), dtype_note(&have, &want));
                assert_eq!(dtype_note_at(&have, a), None);
            }
            assert_eq!(dtype_name(&at(Dtype::F32)), "f32");
            assert_eq!(dtype_name(&at(Dtype::Bf16)), "bf16");
        }
        // Another function is still another function, whatever the format.
        assert!(!same_vectors(
            &encoder_info(&identity(None)),
            &encoder_info(&identity(Some(0.7)))
        ));
    }

    #[test]
    fn pair_function_reads_back_what_encoder_info_stores() {
        let dir = Path::new("idx");
        for w in [None, Some(0.7f32), Some(1.0), Some(0.125)] {
            let info = encoder_info(&identity(w));
            assert_eq!(
                pair_function(&info, dir).unwrap(),
                (Aggregation::Mask, w),
                "{info:?}"
            );
        }
        assert_eq!(encoder_info(&identity(None)).aggregation, "mask");
        assert!(!same_function(
            &encoder_info(&identity(None)),
            &encoder_info(&identity(Some(0.7)))
        ));
    }

    /// Found by an audit: a model of the same weights but another tokenizer or config was
    /// accepted for an index. The digest of those files is folded into the aggregation, read
    /// back, compared when both sides record one and named in the difference; an identity
    /// recorded before it (an older index or Qdrant collection) is still the same function.
    #[test]
    fn the_tokenizer_and_config_digest_is_part_of_the_function() {
        let dir = Path::new("idx");
        let with = |files: Option<&str>, w: Option<f32>, dtype: Dtype| {
            encoder_info(&EncoderIdentity {
                files_digest: files.map(str::to_string),
                dtype,
                ..identity(w)
            })
        };
        for w in [None, Some(0.7f32)] {
            for dtype in [Dtype::F32, Dtype::Bf16] {
                let a = with(Some("00112233aabbccdd"), w, dtype);
                let b = with(Some("ffeeddcc00000000"), w, dtype);
                let old = with(None, w, Dtype::F32);
                assert_eq!(files_digest(&a), Some("00112233aabbccdd"), "{a:?}");
                assert_eq!(files_digest(&old), None);
                assert_eq!(pair_function(&a, dir).unwrap(), (Aggregation::Mask, w));
                assert_eq!(built_dtype(&a, dir).unwrap(), dtype);
                assert_eq!(
                    shown_aggregation(&a),
                    shown_aggregation(&with(None, w, dtype))
                );
                assert!(same_function(&a, &a.clone()));
                assert!(!same_function(&a, &b) && !same_function(&b, &a));
                let diff = function_difference(&a, &b).join(", ");
                assert!(
                    diff.contains("tokenizer/config 00112233aabbccdd")
                        && diff.contains("not ffeeddcc00000000"),
                    "{diff}"
                );
                assert!(!diff.contains("aggregation"), "{diff}");
                // Recorded before the digest: judged on what it has, both ways.
                assert!(same_function(&old, &a) && same_function(&a, &old));
                assert!(function_difference(&old, &a).is_empty());
            }
        }
        assert_eq!(
            with(Some("0123"), Some(0.5), Dtype::Bf16).aggregation,
            "mask+offset:0.5+files:0123+dtype:bf16"
        );
    }

    /// The counts an add records in its copy of standard input are read back with the copy,
    /// and only when they add up to the pairs it holds (the copy is a file a user can edit).
    #[test]
    fn an_adds_counts_are_read_back_with_its_copy_of_standard_input() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("idx");
        let partial = dir.path().join("idx.partial");
        std::fs::create_dir(&partial).unwrap();
        let spool = partial.join("input.spool");
        let records = crate::pairs::parse_pairs(&b"a\tb\nc\td\tl\n"[..], Path::new("x")).unwrap();
        let counts = AddCounts {
            read: 7,
            in_index: 3,
            repeated: 1,
            too_long: 1,
        };
        write_spool(&spool, &records, Some(&counts)).unwrap();
        let (back, got) = spooled_input(&out).unwrap().unwrap();
        assert_eq!(got, Some(counts));
        assert_eq!(
            crate::pairs::records_identity(&back),
            crate::pairs::records_identity(&records)
        );
        assert_eq!(AddCounts::parse(&counts.line()), Some(counts));
        // Counts that do not add up, out of range or in another shape are not taken; a
        // build's copy has none.
        for line in [
            "# relbert add counts: read 8 in_index 3 repeated 1 too_long 1\n",
            "# relbert add counts: read 2 in_index 18446744073709551615 repeated 1 too_long 0\n",
            "# relbert add counts: read 7 in_index 3 repeated 1\n",
            "# a note\n",
            "",
        ] {
            let text = format!("{}{line}a\tb\nc\td\tl\n", relbert_index::spool_header());
            std::fs::write(&spool, text).unwrap();
            let (back, got) = spooled_input(&out).unwrap().unwrap();
            assert_eq!((back.len(), got), (2, None), "{line:?}");
        }
    }

    #[test]
    fn a_bad_pair_function_names_the_index() {
        for bad in ["maks", "mask+offset:x", "+offset:0.5"] {
            let info = EncoderInfo {
                aggregation: bad.into(),
                ..Default::default()
            };
            let err = pair_function(&info, Path::new("some/idx"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("some/idx"), "{err}");
            assert!(err.contains(bad), "{err}");
        }
    }
}
