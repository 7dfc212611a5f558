//! Reading a corpus: files, directories (recursively), compressed files and standard input,
//! as plain text or JSON lines, cut into paragraphs and handed out in blocks.
//!
//! Compression is recognised by its magic bytes (gzip `1f 8b`, zstd `28 b5 2f fd`), not by
//! the file name. A file is JSON lines when the format says so, or, in `auto`, when its
//! name ends in `.jsonl` or `.ndjson` (before any `.gz`/`.zst`). A file is HTML, read as its
//! text ([`super::html`]), when the format says so, or, in `auto`, when its name ends in
//! `.html`, `.htm` or `.xhtml` (before any `.gz`/`.zst`) or its text starts as an HTML
//! document does (`<!DOCTYPE html`, `<html`: [`super::html::looks_like_html`]); in `text`,
//! HTML is read as it is written. A line that is not valid
//! UTF-8, or a JSON line that does not parse or lacks the text field, is skipped and
//! counted (the first few are reported with file and line), never fatal (a line read in
//! pieces, below, is dropped whole, unless pieces of it already went out in a block of
//! 256 KiB: then it is dropped from the piece that is not UTF-8, and its example says from
//! which byte); a file that
//! cannot be read at all is an error naming it. A symbolic link in a folder that leads
//! nowhere or loops is skipped with a warning naming it and counted, as `find` skips it. Files whose first 8 KiB hold a NUL byte are
//! skipped as binary; xz and bzip2 files (not read) are skipped, named by their magic bytes.
//!
//! A paragraph longer than 64 KiB is cut after the line that passes it, and a line longer
//! than that (text8, a whole book on one line) is cut too, at its last space (or other ASCII
//! white space) before 64 KiB, so it is never held whole: each piece is a paragraph of its
//! own, on the line's number, and as at any paragraph cut, sentences (and so pairs) do not
//! span the cut. A line without white space for 64 KiB is cut at 64 KiB (at a character
//! boundary): no word is that long, and the piece is read like any other. JSON lines are
//! read whole (a document is parsed whole).
//!
//! Standard input can be read only once, but mining reads its input several times, so the
//! first pass copies it into the work directory and later passes read the copy. So it goes
//! for every input that is not a regular file (a named pipe, `<(…)`, `/dev/stdin`, a
//! character device): it is read once by its path and copied, and named by that path in
//! messages and provenance. Such an input without an extension to go by (`/dev/stdin`,
//! `/dev/fd/63`) is judged JSON lines or text by its content in `auto`, as `-` is. Pipes,
//! sockets and devices inside a folder are left out.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How input files are parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum InputFormat {
    /// JSON lines for `*.jsonl` / `*.ndjson`, HTML for `*.html`, `*.htm`, `*.xhtml`
    /// (optionally compressed) and text that starts as an HTML document, text otherwise.
    Auto,
    /// Plain text: paragraphs are separated by blank lines (HTML too: its markup is read
    /// as words).
    Text,
    /// One JSON object per line; the text is in `--text-field`.
    Jsonl,
    /// HTML, whatever the name: its text, markup removed and character references decoded.
    Html,
}

/// One input as given: a file, or standard input.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path (for messages and provenance); `<stdin>` for standard input.
    pub name: PathBuf,
    /// Whether this is standard input.
    pub stdin: bool,
    /// Read once and copied into the work directory, later passes reading the copy:
    /// standard input, and any input that is not a regular file (a named pipe, `<(…)`,
    /// `/dev/stdin`, a character device), whose path gives its bytes once (a second open
    /// finds nothing, or waits forever for a writer).
    pub stream: bool,
    /// Size on disk (compressed size); 0 for a stream until its copy is made.
    pub bytes: u64,
    /// Read as JSON lines.
    pub jsonl: bool,
    /// Judged by content (standard input in `auto`, which has no name to go by): JSON lines
    /// when its first non-blank line is a JSON object with the text field as a string.
    pub sniff: bool,
    /// Read as HTML ([`super::html`]): named so, or `--format html`.
    pub html: bool,
    /// Read as HTML also when its text starts as an HTML document does (`auto`, a name that
    /// says neither JSON lines nor HTML).
    pub sniff_html: bool,
}

/// What separates paragraphs in plain text (sentences never cross a paragraph).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Paragraphs {
    /// Blank lines: prose with hard-wrapped lines.
    Blank,
    /// Every line: one sentence or document per line, as word2vec and GloVe read.
    Line,
}

/// Whether a file found in a directory is relbert's own mining output: one of `exclude`
/// (this run's outputs), a pair list or vocabulary `relbert pairs mine` wrote (they start
/// with its mark line), or its `--report` or provenance file (recognised by their keys).
/// Mining them would count the pairs of the last run as text.
fn own_output(path: &Path, exclude: &[PathBuf]) -> bool {
    if exclude.iter().any(|e| crate::output::same_file(e, path)) {
        return true;
    }
    // The first line of a provenance file (one pair's record) fits easily; a report's keys
    // before `passes` too.
    let mut head = Vec::new();
    let n = File::open(path)
        .and_then(|f| f.take(OWN_HEAD_BYTES).read_to_end(&mut head))
        .unwrap_or(0);
    let head = &head[..n];
    let marked = [
        crate::output::MINED_PAIRS_MARK,
        crate::output::MINED_VOCAB_MARK,
    ]
    .iter()
    .any(|m| head.starts_with(m.as_bytes()));
    marked || is_mine_report(head) || is_provenance(head)
}

/// Bytes of a file read to recognise relbert's own outputs in it.
const OWN_HEAD_BYTES: u64 = 16 << 10;

/// Whether `head` starts a `--report` of `relbert pairs mine`: a JSON object whose first
/// keys are the report's (they come before its passes, which may lie beyond `head`).
fn is_mine_report(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]);
    text.trim_start().starts_with('{')
        && [
            "\"distinct_words\":",
            "\"pairs_above_floor\":",
            "\"pairs_out\":",
        ]
        .iter()
        .all(|k| text.contains(k))
}

/// Whether `head` starts a provenance file of `relbert pairs mine`: its first line is a
/// mined pair's record (head, tail, PMI, connecting phrases and places).
fn is_provenance(head: &[u8]) -> bool {
    let Some(first) = head.split(|&b| b == b'\n').next() else {
        return false;
    };
    match serde_json::from_slice::<serde_json::Value>(first) {
        Ok(v) => ["head", "tail", "pmi", "patterns", "examples"]
            .iter()
            .all(|k| v.get(k).is_some()),
        Err(_) => false,
    }
}

/// The corpus inputs, expanded: see [`expand`].
#[derive(Debug, Clone, Default)]
pub struct Expanded {
    /// Each file to read, once, in order.
    pub sources: Vec<Source>,
    /// Files reached more than once (a file named twice, a folder and a file in it, a
    /// symbolic link to a file also read) and read only the first time.
    pub duplicates: u64,
    /// The first duplicate: the path it was reached by again, and the path it is read as.
    pub duplicate_example: Option<(PathBuf, PathBuf)>,
    /// Hidden files and folders (names starting with `.`) left out of folder walks, not
    /// counting relbert's own (those in `exclude`): named when nothing else is found.
    pub hidden: u64,
    /// The first hidden file or folder left out.
    pub hidden_example: Option<PathBuf>,
    /// Entries in folders that are neither files nor folders (pipes, sockets, devices): left
    /// out, as reading one may wait forever.
    pub not_files: u64,
    /// Symbolic links in folders that lead nowhere (their target is missing) or loop (back
    /// to a folder above them, or through other links to themselves): left out, as `find`
    /// leaves them, with a warning naming them.
    pub broken_links: u64,
    /// The first few of them, `path: skipped: why`.
    pub broken_link_examples: Vec<String>,
}

/// Broken links named in [`Expanded::broken_link_examples`] and the warning.
const LINK_EXAMPLES: usize = 5;

/// Why a folder walk's error is a link to skip (it leads nowhere or loops), or `None` for
/// an error that stops the run: a folder or file that exists but cannot be read.
fn broken_link(e: &walkdir::Error) -> Option<String> {
    if let Some(ancestor) = e.loop_ancestor() {
        return Some(format!(
            "a symbolic link that loops back to {}",
            ancestor.display()
        ));
    }
    let path = e.path()?;
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return None;
    }
    let io = e.io_error()?;
    if io.kind() == std::io::ErrorKind::NotFound {
        let target = std::fs::read_link(path)
            .map(|t| format!(" ({})", t.display()))
            .unwrap_or_default();
        return Some(format!("a symbolic link to nothing{target}"));
    }
    // ELOOP: links that lead to each other; ENOTDIR: a target under a file, `f.txt/x`.
    match io.raw_os_error() {
        Some(libc::ELOOP) => Some("a symbolic link in a loop of links".into()),
        Some(libc::ENOTDIR) => Some("a symbolic link to nothing (a path under a file)".into()),
        _ => None,
    }
}

/// Expands the inputs: directories are walked recursively in name order (hidden files and
/// directories skipped, and relbert's own mining outputs, with a note: see `own_output`;
/// pipes, sockets and devices found in them too), `-` is standard input. A named input that
/// is not a regular file (a named pipe, `<(…)`, `/dev/stdin`, a character device) is read
/// once and copied, like standard input ([`Source::stream`]). Each file is read once however
/// often it is reached (named twice, inside a named folder, through a symbolic link, `-` and
/// `/dev/stdin`): files are told apart by device and inode, so a link is the file it points
/// to, and the duplicates are noted once on standard error. `exclude` lists this run's
/// outputs and relbert's own hidden files beside them (lock files, the work directory):
/// never read, and not counted as hidden. A link inside a folder that leads nowhere or
/// loops is skipped and counted ([`Expanded::broken_links`]), where it stopped the whole
/// run; an input named itself, and a file or folder that exists but cannot be read, are
/// still errors naming them.
pub fn expand(inputs: &[PathBuf], format: InputFormat, exclude: &[PathBuf]) -> Result<Expanded> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Expanded::default();
    let mut seen: rustc_hash::FxHashMap<(u64, u64), usize> = Default::default();
    let mut seen_stdin = false;
    let mut add = |out: &mut Expanded, path: &Path, id: Option<(u64, u64)>, source: Source| {
        let Some(id) = id else {
            out.sources.push(source);
            return;
        };
        match seen.entry(id) {
            std::collections::hash_map::Entry::Occupied(first) => {
                out.duplicates += 1;
                if out.duplicate_example.is_none() {
                    let first = out.sources[*first.get()].name.clone();
                    out.duplicate_example = Some((path.to_path_buf(), first));
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(out.sources.len());
                out.sources.push(source);
            }
        }
    };
    for input in inputs {
        if input.as_os_str() == "-" {
            if seen_stdin {
                return Err(Error::InvalidArgument {
                    flag: "--corpus".into(),
                    message: "standard input (-) given twice".into(),
                });
            }
            seen_stdin = true;
            // Told apart like a file: `-` and `/dev/stdin` are one input, and the second
            // open of a pipe would wait for a writer that never comes.
            let id = stdin_metadata().map(|md| (md.dev(), md.ino()));
            let source = Source {
                name: PathBuf::from("<stdin>"),
                stdin: true,
                stream: true,
                bytes: 0,
                jsonl: format == InputFormat::Jsonl,
                sniff: format == InputFormat::Auto,
                html: format == InputFormat::Html,
                sniff_html: format == InputFormat::Auto,
            };
            add(&mut out, Path::new("-"), id, source);
            continue;
        }
        let md = std::fs::metadata(input).map_err(|e| Error::io(input, e))?;
        if md.is_dir() {
            let (mut hidden, mut hidden_example, mut not_files) = (0u64, None, 0u64);
            let walker = walkdir::WalkDir::new(input)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    let keep = e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.');
                    if !keep
                        && !exclude
                            .iter()
                            .any(|x| crate::output::same_file(x, e.path()))
                    {
                        hidden += 1;
                        hidden_example.get_or_insert_with(|| e.path().to_path_buf());
                    }
                    keep
                });
            for entry in walker {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => match broken_link(&e) {
                        Some(why) => {
                            out.broken_links += 1;
                            if out.broken_link_examples.len() < LINK_EXAMPLES {
                                let path = e.path().unwrap_or(input);
                                out.broken_link_examples
                                    .push(format!("{}: skipped: {why}", path.display()));
                            }
                            continue;
                        }
                        None => {
                            let path = e.path().unwrap_or(input).to_path_buf();
                            return Err(Error::io(&path, e.into()));
                        }
                    },
                };
                if entry.file_type().is_file() {
                    if own_output(entry.path(), exclude) {
                        tracing::warn!(
                            "{}: left out of the corpus: an output of relbert pairs mine",
                            entry.path().display()
                        );
                        continue;
                    }
                    // Followed links: the metadata is the target's, so a link and its
                    // target are one file.
                    let md = entry.metadata().map_err(|e| {
                        let path = e.path().unwrap_or(entry.path()).to_path_buf();
                        Error::io(&path, e.into())
                    })?;
                    let source = file_source(entry.path(), &md, format);
                    add(&mut out, entry.path(), Some((md.dev(), md.ino())), source);
                } else if !entry.file_type().is_dir() {
                    not_files += 1;
                }
            }
            out.hidden += hidden;
            if out.hidden_example.is_none() {
                out.hidden_example = hidden_example;
            }
            out.not_files += not_files;
        } else {
            let source = file_source(input, &md, format);
            add(&mut out, input, Some((md.dev(), md.ino())), source);
        }
    }
    if out.broken_links > 0 {
        let shown = out.broken_link_examples.len() as u64;
        tracing::warn!(
            "{} symbolic link(s) in the corpus folders skipped, as leading nowhere or looping: \
             {}{}",
            out.broken_links,
            out.broken_link_examples.join("; "),
            if out.broken_links > shown {
                format!("; and {} more", out.broken_links - shown)
            } else {
                String::new()
            }
        );
    }
    if let Some((again, first)) = &out.duplicate_example {
        tracing::warn!(
            "{} duplicate input file(s) skipped: a file reached more than once (named twice, \
             inside a named folder, through a symbolic link) is read once; e.g. {}, reached \
             again as {}",
            out.duplicates,
            first.display(),
            again.display()
        );
    }
    Ok(out)
}

/// Standard input's metadata (`None` when it is closed).
fn stdin_metadata() -> Option<std::fs::Metadata> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    File::from(fd).metadata().ok()
}

fn file_source(path: &Path, md: &std::fs::Metadata, format: InputFormat) -> Source {
    // Not a regular file: a pipe or a device, which gives its bytes once.
    let stream = !md.is_file();
    // The name without a compressed file's extension (content says it is compressed).
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase());
    let name = name.unwrap_or_default();
    let name = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .unwrap_or(&name);
    let auto = format == InputFormat::Auto;
    let jsonl = match format {
        InputFormat::Jsonl => true,
        InputFormat::Text | InputFormat::Html => false,
        InputFormat::Auto => name.ends_with(".jsonl") || name.ends_with(".ndjson"),
    };
    let html = format == InputFormat::Html
        || (auto
            && [".html", ".htm", ".xhtml"]
                .iter()
                .any(|e| name.ends_with(e)));
    Source {
        name: path.to_path_buf(),
        stdin: false,
        stream,
        bytes: if stream { 0 } else { md.len() },
        jsonl,
        // `/dev/stdin`, `/dev/fd/63` of `<(…)`: no name to go by, as for `-`.
        sniff: stream && auto && path.extension().is_none(),
        html,
        sniff_html: auto && !jsonl && !html,
    }
}

/// A run of paragraphs from one source, handed to a worker.
#[derive(Debug, Default)]
pub struct Block {
    /// Index of the source in the expanded input list.
    pub source: u32,
    /// The paragraphs' text, back to back.
    pub text: String,
    /// Each paragraph: byte range in `text`, its first line (1-based), and whether lines
    /// inside it count (text) or the whole paragraph is one document line (JSON lines).
    pub paras: Vec<Para>,
    /// Offsets of the line breaks in `text`, found on the first [`Block::line_of`]: each
    /// place a pair is seen asks for its line, and counting the breaks before it every time
    /// made a long paragraph (or one long line) quadratic.
    newlines: std::sync::OnceLock<Vec<usize>>,
}

/// One paragraph of a [`Block`].
#[derive(Debug, Clone, Copy)]
pub struct Para {
    /// Start of the paragraph in [`Block::text`].
    pub start: usize,
    /// End of the paragraph in [`Block::text`].
    pub end: usize,
    /// 1-based line of the paragraph's first line.
    pub line: u64,
    /// Line breaks inside the paragraph advance the line (plain text).
    pub multiline: bool,
}

impl Block {
    /// A block of `paras` in `text` read from source `source` (tests build their own).
    #[cfg(test)]
    pub(crate) fn new(source: u32, text: String, paras: Vec<Para>) -> Block {
        Block {
            source,
            text,
            paras,
            newlines: std::sync::OnceLock::new(),
        }
    }

    /// The line of byte `offset` inside paragraph `p`.
    pub fn line_of(&self, p: &Para, offset: usize) -> u64 {
        if !p.multiline {
            return p.line;
        }
        let upto = (p.start + offset).min(p.end);
        let breaks = self.newlines.get_or_init(|| {
            self.text
                .bytes()
                .enumerate()
                .filter_map(|(i, b)| (b == b'\n').then_some(i))
                .collect()
        });
        let before = |at: usize| breaks.partition_point(|&i| i < at);
        p.line + (before(upto) - before(p.start)) as u64
    }
}

/// Lines skipped while reading, with the first few places for the report.
#[derive(Debug, Default, Clone)]
pub struct Skipped {
    /// Lines that were not valid UTF-8: skipped whole, or, for a line so long that its
    /// first pieces had already gone out in a block, from the piece that is not UTF-8 on
    /// (its example says from which byte).
    pub invalid_utf8: u64,
    /// JSON lines that did not parse or lacked the text field.
    pub bad_json: u64,
    /// Files skipped as binary.
    pub binary_files: u64,
    /// Files skipped as UTF-16 text.
    pub utf16_files: u64,
    /// Files skipped as compressed in a format not read (xz, bzip2).
    pub compressed_files: u64,
    /// HTML files whose markup was left open at their end (an attribute value's quote never
    /// closed, a comment without `-->`): the rest of the file, from where it opened, was
    /// markup and not mined ([`super::html::LeftOpen`]).
    pub html_left_open: u64,
    /// `file:line: why` for the first few.
    pub examples: Vec<String>,
}

impl Skipped {
    fn note(&mut self, what: String) {
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}

/// Largest paragraph before it is cut: long unbroken text (a file without blank lines)
/// must not grow a block without bound. A line longer than this is cut too ([`next_line`]).
const MAX_PARA: usize = 64 << 10;
/// Target size of a block handed to a worker.
const BLOCK_BYTES: usize = 256 << 10;

/// Where the copy of a [`Source::stream`] goes in the work directory: `stdin.txt` for
/// standard input, `input-N` for the `N`th source otherwise; `None` for a regular file,
/// which each pass reads by its path.
pub fn copy_path(work_dir: &Path, index: usize, src: &Source) -> Option<PathBuf> {
    if src.stdin {
        Some(work_dir.join("stdin.txt"))
    } else if src.stream {
        Some(work_dir.join(format!("input-{index}")))
    } else {
        None
    }
}

/// Reads the sources in order and calls `send` with blocks of paragraphs. `progress` gets
/// the number of input bytes read so far (compressed bytes for compressed files). A stream
/// ([`Source::stream`]: standard input, a pipe) is copied into `work_dir` when reading it the
/// first time ([`copy_path`]), and read from there later (when the copy exists).
///
/// Returns what was read from each source ([`WhatWasRead`]), `None` for one skipped whole
/// (binary, UTF-16, compressed in a format not read) or not reached: every pass must read
/// the same, and the caller compares them.
pub fn read_blocks(
    sources: &[Source],
    paragraphs: Paragraphs,
    text_field: &str,
    work_dir: &Path,
    skipped: &mut Skipped,
    mut progress: impl FnMut(u64),
    mut send: impl FnMut(Block) -> bool,
) -> Result<Vec<Option<WhatWasRead>>> {
    let mut done = 0u64;
    let mut read = vec![None; sources.len()];
    for (i, src) in sources.iter().enumerate() {
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let crc = std::rc::Rc::new(std::cell::RefCell::new(flate2::Crc::new()));
        let raw: Box<dyn Read> = match copy_path(work_dir, i, src) {
            Some(copy) if copy.exists() => {
                Box::new(File::open(&copy).map_err(|e| Error::io(&copy, e))?)
            }
            Some(copy) => {
                // Opened before the copy is made: an input that cannot be opened leaves no
                // empty copy to be taken for it.
                let inner: Box<dyn Read> = if src.stdin {
                    Box::new(std::io::stdin().lock())
                } else {
                    Box::new(File::open(&src.name).map_err(|e| Error::io(&src.name, e))?)
                };
                let file = File::create(&copy).map_err(|e| Error::io(&copy, e))?;
                Box::new(Tee {
                    inner,
                    copy: file,
                    path: copy,
                })
            }
            None => Box::new(File::open(&src.name).map_err(|e| Error::io(&src.name, e))?),
        };
        let counted = Counted {
            inner: raw,
            n: counter.clone(),
            crc: crc.clone(),
        };
        let (_, counted) = peek(counted, HEAD_BYTES, &src.name)?;
        let reader = decompress(BufReader::with_capacity(1 << 20, counted), &src.name)?;
        let (head, reader) = peek(reader, HEAD_BYTES, &src.name)?;
        let mut reader: Box<dyn BufRead> = Box::new(reader);
        // A file skipped whole: its count in `skipped`, and why. UTF-16 is checked before
        // the NUL bytes of a binary file: UTF-16 text has them too, and "binary" would not
        // say what to do about it.
        let skip_whole = if is_utf16(&head) {
            Some((
                &mut skipped.utf16_files,
                "UTF-16 text is not supported; convert with iconv -f utf-16 -t utf-8".to_string(),
            ))
        } else if let Some(format) = unread_compression(&head) {
            // Checked before the NUL bytes too: "binary" would not say what to do about it.
            Some((
                &mut skipped.compressed_files,
                format!("{format} compressed: not supported, decompress it first"),
            ))
        } else if is_binary(&head) {
            Some((&mut skipped.binary_files, "binary file".to_string()))
        } else {
            None
        };
        if let Some((count, why)) = skip_whole {
            *count += 1;
            skipped.note(format!("{}: skipped: {why}", src.name.display()));
            done += src.bytes;
            progress(done);
            continue;
        }
        // Judged by content: JSON lines (standard input, by its first line), then HTML (by
        // its head, decompressed: the same in every pass).
        let mut judged: Option<Source> = None;
        if src.sniff {
            let (jsonl, r) = sniff_json_lines(reader, &src.name, text_field)?;
            reader = r;
            judged = Some(Source {
                jsonl,
                ..src.clone()
            });
        }
        let seen = judged.as_ref().unwrap_or(src);
        if seen.sniff_html && !seen.jsonl && !seen.html && super::html::looks_like_html(&head) {
            judged = Some(Source {
                html: true,
                ..seen.clone()
            });
        }
        let src = judged.as_ref().unwrap_or(src);
        // HTML is read through its text, which also says what markup was left open at the
        // end of the file (and held the rest of it), for the report.
        let mut html = None;
        let reader: &mut dyn BufRead = if src.html {
            html.insert(super::html::HtmlText::new(reader))
        } else {
            &mut reader
        };
        let base = done;
        let mut on_bytes =
            |_: ()| progress(base + counter.load(std::sync::atomic::Ordering::Relaxed));
        let keep_going = read_one(
            (i as u32, src),
            (paragraphs, text_field, MAX_PARA),
            reader,
            skipped,
            &mut on_bytes,
            &mut send,
        )?;
        if let Some(open) = html.as_ref().and_then(|h| h.left_open()) {
            skipped.html_left_open += 1;
            skipped.note(format!("{}:{}: {open}", src.name.display(), open.line));
        }
        let n = counter.load(std::sync::atomic::Ordering::Relaxed);
        done = base + n;
        progress(done);
        if !keep_going {
            break;
        }
        read[i] = Some(WhatWasRead {
            bytes: n,
            crc32: crc.borrow().sum(),
            html: src.html,
        });
    }
    Ok(read)
}

/// What one pass read from a source: its bytes as they are on disk (compressed bytes for
/// a compressed file) and their CRC-32. The passes of a mine must read the same text, and
/// this is what tells they did: it follows the bytes themselves, so a file touched,
/// chmodded, linked or replaced by an identical copy while it is mined still agrees, and
/// text rewritten at the same size and time does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhatWasRead {
    /// Bytes read.
    pub bytes: u64,
    /// Their CRC-32 (IEEE): fast enough to follow every byte of a pass (a cryptographic
    /// hash would slow the one reader down), and text changed at the same length passes
    /// it unseen only once in 2^32.
    pub crc32: u32,
    /// Whether it was read as HTML (its text, [`super::html`]).
    pub html: bool,
}

/// Whether the input starts with a UTF-16 byte-order mark (`FF FE` or `FE FF`).
fn is_utf16(head: &[u8]) -> bool {
    head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff])
}

/// A reader with its first bytes, read ahead by [`peek`], put back in front.
type Peeked<R> = std::io::Chain<std::io::Cursor<Vec<u8>>, R>;

/// How much of an input's start its kind is judged by (compressed, UTF-16, binary).
const HEAD_BYTES: usize = 8192;

/// Reads the first `n` bytes of `reader` (fewer only where the input ends first) and returns
/// them with a reader that yields them again, then the rest. An input is judged by this
/// head, never by what one read returned: a pipe's first read returns what was written so
/// far, the copy of it read back in a later pass returns more, and every pass must judge the
/// input alike (the passes' counts must agree, and [`super::repeats`] marks paragraphs by
/// their position among all the inputs' paragraphs).
fn peek<R: Read>(mut reader: R, n: usize, name: &Path) -> Result<(Vec<u8>, Peeked<R>)> {
    let mut head = Vec::with_capacity(n);
    (&mut reader)
        .take(n as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(name, e))?;
    Ok((head.clone(), std::io::Cursor::new(head).chain(reader)))
}

/// Longest first line read to judge standard input by its content.
const SNIFF_BYTES: u64 = 1 << 20;

/// Judges an input without a name to go by (standard input in `auto`): JSON lines when its
/// first non-blank line is a JSON object with `text_field` as a string. The lines read to
/// judge it are put back in front of the rest, so nothing is lost; at most about
/// [`SNIFF_BYTES`] of blank lines are held for it (an input that starts with more is text).
fn sniff_json_lines(
    mut reader: Box<dyn BufRead>,
    name: &Path,
    text_field: &str,
) -> Result<(bool, Box<dyn BufRead>)> {
    let mut prefix = Vec::new();
    let jsonl = loop {
        let start = prefix.len();
        // Bounded: one enormous line is text, not something to hold whole in memory.
        let n = (&mut reader)
            .take(SNIFF_BYTES)
            .read_until(b'\n', &mut prefix)
            .map_err(|e| Error::io(name, e))?;
        if n == 0 {
            break false;
        }
        let line = &prefix[start..];
        let line = if start == 0 {
            line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line)
        } else {
            line
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            // Blank lines are held to be put back: a stream of them must not fill memory
            // (`yes ''` piped in would, before a first line that never comes).
            if prefix.len() as u64 >= SNIFF_BYTES {
                break false;
            }
            continue;
        }
        break serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get(text_field).map(serde_json::Value::is_string))
            .unwrap_or(false);
    };
    let rest = std::io::Cursor::new(prefix).chain(reader);
    Ok((jsonl, Box::new(BufReader::with_capacity(1 << 20, rest))))
}

/// The compression format of an input relbert does not decompress, by its magic bytes:
/// xz (`FD 37 7A 58 5A 00`) or bzip2 (`BZh`, a block size digit, then the magic of a block
/// or of the end of the stream).
fn unread_compression(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Some("xz");
    }
    let bzip2 = head.len() >= 10
        && head.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&head[3])
        && (head[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59]
            || head[4..10] == [0x17, 0x72, 0x45, 0x38, 0x50, 0x90]);
    bzip2.then_some("bzip2")
}

fn is_binary(head: &[u8]) -> bool {
    head.contains(&0)
}

fn decompress<R: Read + 'static>(mut r: BufReader<R>, name: &Path) -> Result<Box<dyn BufRead>> {
    let head = r.fill_buf().map_err(|e| Error::io(name, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let d = flate2::bufread::MultiGzDecoder::new(r);
        Ok(Box::new(BufReader::with_capacity(1 << 20, d)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = zstd::stream::read::Decoder::with_buffer(r).map_err(|e| Error::io(name, e))?;
        Ok(Box::new(BufReader::with_capacity(1 << 20, d)))
    } else {
        Ok(Box::new(r))
    }
}

/// A text line being read in pieces by [`next_line`]: what was read past the last cut, and
/// whether the next piece continues a line that was cut. Kept apart from `rest` being
/// empty: a cut can fall at the very end of what was read, and the line still goes on.
#[derive(Default)]
struct LineState {
    rest: Vec<u8>,
    continues: bool,
}

/// A piece of text [`next_line`] read.
struct Piece {
    /// Bytes in the line buffer (0 at the end of the input).
    len: usize,
    /// Whether it starts a line (is not the continuation of one that was cut).
    starts: bool,
    /// Whether the line was cut after it (it goes on in the next piece).
    cut: bool,
}

/// Reads the next line of `reader` into `line` (cleared first), as `read_until` does, but at
/// most `max` bytes of its text (and its line end, `\n` or `\r\n`): a longer line is cut
/// at its last ASCII white space within what was read, or where there is none at the last
/// character boundary, and the rest of what was read is kept in `state` for the next call,
/// which continues the line.
fn next_line(
    reader: &mut dyn BufRead,
    line: &mut Vec<u8>,
    state: &mut LineState,
    max: usize,
) -> std::io::Result<Piece> {
    line.clear();
    let starts = !state.continues;
    line.append(&mut state.rest);
    // Room for a line end after `max` bytes of text: a line of exactly `max` is whole.
    let limit = max + 2;
    if !line.ends_with(b"\n") {
        let room = limit.saturating_sub(line.len()) as u64;
        Read::take(&mut *reader, room).read_until(b'\n', line)?;
    }
    if line.ends_with(b"\n") || line.len() < limit || reader.fill_buf()?.is_empty() {
        state.continues = false;
        return Ok(Piece {
            len: line.len(),
            starts,
            cut: false,
        });
    }
    let cut = match line.iter().rposition(u8::is_ascii_whitespace) {
        Some(k) => k + 1,
        None => char_boundary(line),
    };
    state.rest.extend_from_slice(&line[cut..]);
    line.truncate(cut);
    state.continues = true;
    Ok(Piece {
        len: line.len(),
        starts,
        cut: true,
    })
}

/// The last place in `bytes` where a character starts or `bytes` ends, leaving whole the
/// last character when it is complete: where a line without white space is cut. `bytes.len()`
/// when there is no such place (bytes that are not UTF-8, skipped as such anyway).
fn char_boundary(bytes: &[u8]) -> usize {
    let Some(lead) = bytes.iter().rposition(|b| b & 0xc0 != 0x80) else {
        return bytes.len();
    };
    let width = match bytes[lead] {
        b if b < 0x80 => 1,
        b if b >> 5 == 0b110 => 2,
        b if b >> 4 == 0b1110 => 3,
        b if b >> 3 == 0b11110 => 4,
        _ => return bytes.len(),
    };
    if lead + width <= bytes.len() || lead == 0 {
        bytes.len()
    } else {
        lead
    }
}

/// Reads one source; returns false when `send` asked to stop. Paragraphs (and lines, in
/// text) longer than `max_para` bytes are cut (see the module's doc).
fn read_one(
    (source, src): (u32, &Source),
    (paragraphs, text_field, max_para): (Paragraphs, &str, usize),
    reader: &mut dyn BufRead,
    skipped: &mut Skipped,
    on_bytes: &mut impl FnMut(()),
    send: &mut impl FnMut(Block) -> bool,
) -> Result<bool> {
    let mut block = Block {
        source,
        ..Block::default()
    };
    let mut line = Vec::new();
    // A text line cut at `max_para` bytes: the rest read but not yet handed on.
    let mut state = LineState::default();
    let mut lineno = 0u64;
    // The last line counted as not UTF-8 (0: none; lines count from 1): the rest of it is
    // dropped.
    let mut invalid_line = 0u64;
    // The line being read: where its text starts in `block` (truncated back to there when
    // a later piece of it is not UTF-8, so that a skipped line gives no pairs), its bytes
    // read so far, and how many of them went out in blocks already sent (those cannot be
    // taken back: a line is not held whole, and text8 is one line of 100 MB).
    let (mut line_at, mut line_read, mut line_sent) = (0usize, 0u64, 0u64);
    let mut para_start: Option<(usize, u64)> = None;
    loop {
        let read = if src.jsonl {
            line.clear();
            reader.read_until(b'\n', &mut line).map(|len| Piece {
                len,
                starts: true,
                cut: false,
            })
        } else {
            next_line(reader, &mut line, &mut state, max_para)
        };
        let Piece {
            len: n,
            starts,
            cut,
        } = read.map_err(|e| Error::Parse {
            path: src.name.clone(),
            line: (lineno + 1) as usize,
            message: format!("cannot be read: {e}"),
        })?;
        if n == 0 {
            break;
        }
        if starts {
            lineno += 1;
            (line_at, line_read, line_sent) = (block.text.len(), 0, 0);
        } else if invalid_line == lineno {
            continue;
        }
        line_read += n as u64;
        // (The piece of a long line cut here ends a paragraph, as a long paragraph's line does.)
        // A byte-order mark (editors on Windows write one) is not text.
        let bytes = match (lineno, starts, line.strip_prefix("\u{feff}".as_bytes())) {
            (1, true, Some(rest)) => rest,
            _ => &line[..],
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            // A long line is read in pieces: it is one line skipped, and neither the pieces
            // before this one (still in the block) nor those after it (dropped above) are
            // mined.
            invalid_line = lineno;
            skipped.invalid_utf8 += 1;
            let (from, before) = match line_sent {
                0 => (String::new(), ""),
                sent => (
                    format!(" from byte {sent} of the line"),
                    " (the bytes before were read)",
                ),
            };
            skipped.note(format!(
                "{}:{lineno}: skipped{from}: not UTF-8{before}",
                src.name.display()
            ));
            // The paragraph ends here: its lines are counted by the breaks in its text, so
            // text after a skipped line would be placed a line too early.
            close_para(&mut block, &mut para_start);
            if block.text.len() > line_at {
                block.text.truncate(line_at);
                block.paras.retain_mut(|p| {
                    p.end = p.end.min(line_at);
                    p.start < line_at
                });
            }
            continue;
        };
        if src.jsonl {
            let trimmed = text.trim();
            if trimmed.is_empty() {
                continue;
            }
            let doc = serde_json::from_str::<serde_json::Value>(trimmed).ok();
            let Some(body) = doc
                .as_ref()
                .and_then(|d| d.get(text_field))
                .and_then(|v| v.as_str())
            else {
                skipped.bad_json += 1;
                skipped.note(format!(
                    "{}:{lineno}: skipped: not a JSON object with a string field {text_field:?}",
                    src.name.display()
                ));
                continue;
            };
            // A document's own blank lines separate its paragraphs; all share its line.
            for part in body.split("\n\n") {
                let start = block.text.len();
                block.text.push_str(part);
                block.paras.push(Para {
                    start,
                    end: block.text.len(),
                    line: lineno,
                    multiline: false,
                });
            }
        } else if text.trim().is_empty() {
            // In HTML's text a line of white space ends a paragraph only when it holds a
            // block boundary (a blank line of the file holds one): a line that held nothing
            // but inline markup or a comment does not ([`super::html`]).
            if !src.html || text.contains(super::html::BLOCK) {
                close_para(&mut block, &mut para_start);
            } else if para_start.is_some() {
                // Kept: lines in a paragraph are counted by its line breaks.
                block.text.push('\n');
            }
        } else {
            if para_start.is_none() {
                para_start = Some((block.text.len(), lineno));
            }
            block.text.push_str(text.trim_end_matches(['\n', '\r']));
            block.text.push('\n');
            if paragraphs == Paragraphs::Line
                || cut
                || para_start.is_some_and(|(s, _)| block.text.len() - s > max_para)
            {
                close_para(&mut block, &mut para_start);
            }
        }
        if block.text.len() >= BLOCK_BYTES && para_start.is_none() {
            on_bytes(());
            let full = std::mem::replace(
                &mut block,
                Block {
                    source,
                    ..Block::default()
                },
            );
            // A line cut here goes on in the next block, from its start.
            (line_at, line_sent) = (0, line_read);
            if !send(full) {
                return Ok(false);
            }
        }
    }
    close_para(&mut block, &mut para_start);
    on_bytes(());
    if !block.paras.is_empty() {
        return Ok(send(block));
    }
    Ok(true)
}

fn close_para(block: &mut Block, para_start: &mut Option<(usize, u64)>) {
    if let Some((start, line)) = para_start.take() {
        block.paras.push(Para {
            start,
            end: block.text.len(),
            line,
            multiline: true,
        });
    }
}

/// Counts bytes read from the underlying input (for progress in compressed bytes) and
/// follows their CRC-32 ([`WhatWasRead`]). Both are shared: the reader is moved into the
/// decompressor, and they are read while and after it reads.
struct Counted<R> {
    inner: R,
    n: std::sync::Arc<std::sync::atomic::AtomicU64>,
    crc: std::rc::Rc<std::cell::RefCell<flate2::Crc>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n
            .fetch_add(k as u64, std::sync::atomic::Ordering::Relaxed);
        self.crc.borrow_mut().update(&buf[..k]);
        Ok(k)
    }
}

/// Copies a stream (standard input, a pipe) to a file as it is read.
struct Tee<R> {
    inner: R,
    copy: File,
    path: PathBuf,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.copy.write_all(&buf[..k]).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("copying it to {}: {e}", self.path.display()),
            )
        })?;
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks_of(bytes: &[u8], jsonl: bool) -> (Vec<(String, u64)>, Skipped) {
        paragraphs_of_file(if jsonl { "c.jsonl" } else { "c.txt" }, bytes)
    }

    /// The paragraphs `read_one` makes of `bytes` (plain text) with paragraphs and lines cut
    /// at `max` bytes: (text, first line).
    fn cut_at(bytes: &[u8], max: usize, paragraphs: Paragraphs) -> Vec<(String, u64)> {
        cut_and_skipped(bytes, max, paragraphs).0
    }

    /// [`cut_at`], with what reading skipped.
    fn cut_and_skipped(
        bytes: &[u8],
        max: usize,
        paragraphs: Paragraphs,
    ) -> (Vec<(String, u64)>, Skipped) {
        let src = Source {
            name: "c.txt".into(),
            stdin: false,
            stream: false,
            bytes: bytes.len() as u64,
            jsonl: false,
            sniff: false,
            html: false,
            sniff_html: false,
        };
        let mut reader: Box<dyn BufRead> = Box::new(std::io::Cursor::new(bytes.to_vec()));
        let (mut out, mut skipped) = (Vec::new(), Skipped::default());
        read_one(
            (0, &src),
            (paragraphs, "text", max),
            &mut reader,
            &mut skipped,
            &mut |_| {},
            &mut |b: Block| {
                for p in &b.paras {
                    out.push((b.text[p.start..p.end].to_string(), p.line));
                }
                true
            },
        )
        .unwrap();
        (out, skipped)
    }

    /// Found by review (s23): a long line that is not UTF-8 (Latin-1 on one line) was read
    /// in pieces, and each piece was counted and named as a line skipped.
    #[test]
    fn a_long_line_not_utf8_is_one_line_skipped() {
        let latin1 = b"caf\xe9 ".repeat(100);
        let mut text = b"first line\n".to_vec();
        text.extend_from_slice(&latin1);
        text.extend_from_slice(b"\nparis france\n");
        text.extend_from_slice(&latin1);
        text.extend_from_slice(b"\nlast line\n");
        for paragraphs in [Paragraphs::Blank, Paragraphs::Line] {
            let (paras, skipped) = cut_and_skipped(&text, 40, paragraphs);
            assert_eq!(
                skipped.invalid_utf8, 2,
                "{paragraphs:?} {:?}",
                skipped.examples
            );
            assert_eq!(
                skipped.examples,
                ["c.txt:2: skipped: not UTF-8", "c.txt:4: skipped: not UTF-8"],
                "{paragraphs:?}"
            );
            // The lines around them are read, on their own numbers.
            let lines: Vec<u64> = paras.iter().map(|(_, l)| *l).collect();
            assert_eq!(lines, [1, 3, 5], "{paragraphs:?} {paras:?}");
        }
    }

    /// Found by review (s23): a long line that is not UTF-8 in one of its pieces was
    /// reported skipped, yet its other pieces were mined. The pieces still in the block are
    /// dropped with it, and those after it are not read as text.
    #[test]
    fn a_long_line_not_utf8_in_one_piece_gives_no_text() {
        for bad_piece in [0usize, 1, 3] {
            let words = b"Berlin is the capital of Germany. ".to_vec();
            let mut line = words.repeat(bad_piece * 2);
            line.extend_from_slice(b"caf\xe9 ");
            line.extend(words.repeat(20));
            let mut text = b"first line\n".to_vec();
            text.extend_from_slice(&line);
            text.extend_from_slice(b"\nlast line\n");
            for paragraphs in [Paragraphs::Blank, Paragraphs::Line] {
                let (paras, skipped) = cut_and_skipped(&text, 64, paragraphs);
                let got: Vec<(&str, u64)> = paras.iter().map(|(t, l)| (t.as_str(), *l)).collect();
                assert_eq!(
                    got,
                    [("first line\n", 1), ("last line\n", 3)],
                    "{bad_piece} {paragraphs:?}"
                );
                assert_eq!(skipped.invalid_utf8, 1);
                assert_eq!(skipped.examples, ["c.txt:2: skipped: not UTF-8"]);
            }
        }
        // A paragraph's lines before the long line are kept, on their numbers.
        let mut text = b"alpha beta\ngamma delta\n".to_vec();
        text.extend(b"Berlin is the capital of Germany. ".repeat(4));
        text.extend_from_slice(b"caf\xe9\n\nlast line\n");
        let (paras, _) = cut_and_skipped(&text, 64, Paragraphs::Blank);
        let got: Vec<(&str, u64)> = paras.iter().map(|(t, l)| (t.as_str(), *l)).collect();
        assert_eq!(got, [("alpha beta\ngamma delta\n", 1), ("last line\n", 5)]);
    }

    /// A line longer than a block has its first pieces sent before a later piece is found
    /// not UTF-8 (it is not held whole): those were read, and its example says so.
    #[test]
    fn a_line_not_utf8_after_a_block_of_it_went_out_says_from_which_byte() {
        let mut text = b"Berlin is the capital of Germany. ".repeat(12_000);
        let good = text.len();
        text.extend_from_slice(b"caf\xe9 after ");
        text.extend(b"Rome is the capital of Italy. ".repeat(100));
        text.extend_from_slice(b"\nlast line\n");
        let (paras, skipped) = cut_and_skipped(&text, MAX_PARA, Paragraphs::Blank);
        // The block went out past 256 KiB (five pieces of nearly 64 KiB, each with its line
        // end), the next piece was dropped with the one not UTF-8.
        let sent: usize = paras[..paras.len() - 1]
            .iter()
            .map(|(t, _)| t.len() - 1)
            .sum();
        assert!(
            (BLOCK_BYTES - 16..good - MAX_PARA).contains(&sent),
            "{sent} {:?}",
            skipped
        );
        assert_eq!(paras.last().unwrap(), &("last line\n".to_string(), 2));
        assert!(paras.iter().all(|(t, _)| !t.contains("Rome")));
        assert_eq!(skipped.invalid_utf8, 1);
        assert_eq!(
            skipped.examples,
            [format!(
                "c.txt:1: skipped from byte {sent} of the line: not UTF-8 (the bytes before were read)"
            )]
        );
    }

    /// Audit E (s22): a corpus of one long line (text8) was held whole in memory, whatever
    /// --memory said: the paragraph cut came only once the line had ended. A line is cut
    /// at its last white space within the bound now (at a character boundary when it has
    /// none), each piece a paragraph on the line's number; text of shorter lines is read
    /// as before.
    #[test]
    fn a_long_line_is_cut_at_white_space_and_never_held_whole() {
        let max = 40;
        let words: Vec<String> = (0..100).map(|i| format!("word{i}")).collect();
        let long = words.join(" ");
        for paragraphs in [Paragraphs::Blank, Paragraphs::Line] {
            let text = format!("first line\n{long}\nlast line\n");
            let paras = cut_at(text.as_bytes(), max, paragraphs);
            // Every word read once, in order, none split.
            let read: Vec<&str> = paras
                .iter()
                .flat_map(|(t, _)| t.split_whitespace())
                .collect();
            let mut all = vec!["first", "line"];
            all.extend(words.iter().map(String::as_str));
            all.extend(["last", "line"]);
            assert_eq!(read, all, "{paragraphs:?}");
            // Pieces of the long line are paragraphs on its line, each within the bound
            // (and its line end); with blank-line paragraphs, the lines around it join its
            // first and last piece, as lines join a paragraph.
            let pieces: Vec<_> = paras.iter().filter(|(_, l)| *l == 2).collect();
            assert!(pieces.len() > 10, "{paras:?}");
            let bound = match paragraphs {
                Paragraphs::Line => max + 3,
                Paragraphs::Blank => max + 3 + "last line\n".len(),
            };
            assert!(pieces.iter().all(|(t, _)| t.len() <= bound), "{paras:?}");
            assert!(
                paras.iter().all(|(t, _)| t.len() <= 2 * max + 6),
                "{paras:?}"
            );
            assert!(
                paras.last().unwrap().0.ends_with("last line\n"),
                "{paras:?}"
            );
        }
        // No white space at all: cut at a character boundary, nothing lost.
        let unbroken = "é".repeat(100) + "x";
        let paras = cut_at(unbroken.as_bytes(), 41, Paragraphs::Blank);
        assert!(paras.len() > 4 && paras.iter().all(|(t, l)| t.len() <= 43 && *l == 1));
        let joined: String = paras.iter().map(|(t, _)| t.trim_end()).collect();
        assert_eq!(joined, unbroken);
        // Lines under the bound: the paragraphs are those read without one.
        let prose = "a b c\nd e f\n\ng h\n";
        assert_eq!(
            cut_at(prose.as_bytes(), 8, Paragraphs::Blank),
            cut_at(prose.as_bytes(), MAX_PARA, Paragraphs::Blank)
        );
        // A last line of exactly the bound, without a line end, is whole.
        assert_eq!(
            cut_at(b"abcd efgh", 9, Paragraphs::Blank),
            [("abcd efgh\n".to_string(), 1)]
        );
    }

    /// Review R9 (s22): a cut that fell at the very end of what was read (white space or a
    /// `\r` as its last byte, or a line without white space cut at a whole character) left
    /// nothing over, and the next piece was taken for a new line: every later line number
    /// was one too high. And a line of exactly the bound followed by its line end was cut,
    /// its last word made a paragraph of its own (its pairs lost).
    #[test]
    fn lines_after_a_cut_keep_their_numbers_and_a_line_of_the_bound_is_whole() {
        let max = 16;
        let line_of = |paras: &[(String, u64)], word: &str| {
            paras
                .iter()
                .find(|(t, _)| t.contains(word))
                .map(|(_, l)| *l)
        };
        let long_lines = [
            // White space as the last byte read.
            format!("{} {}", "a".repeat(max + 1), "b".repeat(30)),
            // No white space: cut at whole ASCII characters (at the end of what was read).
            "z".repeat(70),
            // Two-byte characters and an even bound: the same.
            "é".repeat(40),
            // A `\r` as the last byte read, its `\n` in the next read.
            format!("{}\r", "c".repeat(max + 1)),
        ];
        for long in long_lines {
            for paragraphs in [Paragraphs::Blank, Paragraphs::Line] {
                // Blank lines around, so each is a paragraph on its own line either way.
                let text = format!("first\n{long}\n\nparis france\n\nafter\n");
                let paras = cut_at(text.as_bytes(), max, paragraphs);
                assert_eq!(line_of(&paras, "first"), Some(1), "{long:?} {paras:?}");
                assert_eq!(line_of(&paras, "paris"), Some(4), "{long:?} {paras:?}");
                assert_eq!(line_of(&paras, "after"), Some(6), "{long:?} {paras:?}");
            }
        }
        // A line of exactly `max` bytes (and one with its `\r\n`) is read whole.
        let exact = format!("{} paris", "x".repeat(max - 6));
        assert_eq!(exact.len(), max);
        for end in ["\n", "\r\n"] {
            let text = format!("{exact}{end}next\n");
            let paras = cut_at(text.as_bytes(), max, Paragraphs::Line);
            assert_eq!(
                (paras[0].0.trim_end(), paras[0].1),
                (exact.as_str(), 1),
                "{paras:?}"
            );
            assert_eq!(paras[1], ("next\n".to_string(), 2), "{paras:?}");
        }
    }

    /// The paragraphs read from `bytes` in a file named `name`, and what was skipped.
    fn paragraphs_of_file(name: &str, bytes: &[u8]) -> (Vec<(String, u64)>, Skipped) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let sources = expand(&[path], InputFormat::Auto, &[]).unwrap().sources;
        let (mut paras, mut skipped) = (Vec::new(), Skipped::default());
        read_blocks(
            &sources,
            Paragraphs::Blank,
            "text",
            dir.path(),
            &mut skipped,
            |_| {},
            |b| {
                for p in &b.paras {
                    paras.push((b.text[p.start..p.end].to_string(), p.line));
                }
                true
            },
        )
        .unwrap();
        (paras, skipped)
    }

    /// Found by review: HTML was mined as plain text, its tags and references as words.
    #[test]
    fn html_is_read_as_its_text_in_the_files_lines() {
        let html = "<p>Paris is\n<span>\n</span>\nthe capital</p>\n\n<p>R&ouml;me &amp; Oslo</p>\n";
        // Lines of inline markup alone do not end a paragraph, and are still lines; the
        // blank line of the file does.
        let text = [
            ("\u{2029}Paris is\n\n\nthe capital\u{2029}\n".to_string(), 1),
            ("\u{2029}R\u{f6}me & Oslo\u{2029}\n".to_string(), 6),
        ];
        assert_eq!(paragraphs_of_file("c.html", html.as_bytes()).0, text);
        assert_eq!(paragraphs_of_file("c.HTM", html.as_bytes()).0, text);
        // Compressed and named so, or judged by its start.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(html.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(paragraphs_of_file("c.xhtml.gz", &gz).0, text);
        let doc = format!("<!DOCTYPE html>\n{html}");
        let (paras, _) = paragraphs_of_file("index", doc.as_bytes());
        let shifted: Vec<(String, u64)> = text.iter().map(|(t, l)| (t.clone(), l + 1)).collect();
        assert_eq!(paras, shifted);
        // A line that is not UTF-8 is skipped and named by its line, as in plain text.
        let bad = html.replace("Oslo", "\u{1}").into_bytes();
        let bad: Vec<u8> = bad.iter().map(|&b| if b == 1 { 0xff } else { b }).collect();
        let (paras, skipped) = paragraphs_of_file("c.html", &bad);
        assert_eq!(paras, text[..1]);
        assert!(
            skipped.examples[0].ends_with("c.html:6: skipped: not UTF-8"),
            "{:?}",
            skipped.examples
        );
        // Text that holds markup is text.
        assert_eq!(
            paragraphs_of_file("c.txt", html.as_bytes()).0,
            [
                (
                    "<p>Paris is\n<span>\n</span>\nthe capital</p>\n".to_string(),
                    1
                ),
                ("<p>R&ouml;me &amp; Oslo</p>\n".to_string(), 6)
            ]
        );
    }

    #[test]
    fn paragraphs_keep_their_first_line_and_bad_utf8_is_skipped() {
        let (paras, skipped) = blocks_of(b"one\ntwo\n\n\nthree\n\xff\xfe bad\nfour\n", false);
        assert_eq!(
            paras,
            vec![
                ("one\ntwo\n".to_string(), 1),
                // The skipped line ends a paragraph, so "four" keeps its own line (7).
                ("three\n".to_string(), 5),
                ("four\n".to_string(), 7)
            ]
        );
        assert_eq!(skipped.invalid_utf8, 1);
        assert!(
            skipped.examples[0].contains(":6: skipped: not UTF-8"),
            "{:?}",
            skipped.examples
        );
    }

    #[test]
    fn json_lines_take_the_text_field_and_skip_bad_lines() {
        let (paras, skipped) = blocks_of(
            b"{\"text\": \"A b.\"}\n{\"id\": 3}\nnot json\n\n{\"text\": \"C\\n\\nD\"}\n",
            true,
        );
        assert_eq!(
            paras,
            vec![
                ("A b.".to_string(), 1),
                ("C".to_string(), 5),
                ("D".to_string(), 5)
            ]
        );
        assert_eq!(skipped.bad_json, 2);
        // A byte-order mark before the first document is not part of it.
        let (paras, skipped) = blocks_of(b"\xef\xbb\xbf{\"text\": \"A b.\"}\n", true);
        assert_eq!(paras, vec![("A b.".to_string(), 1)]);
        assert_eq!(skipped.bad_json, 0);
    }

    #[test]
    fn gzip_and_zstd_are_recognised_by_content() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello world\n").unwrap();
        let (paras, _) = blocks_of(&gz.finish().unwrap(), false);
        assert_eq!(paras, vec![("hello world\n".to_string(), 1)]);
        let z = zstd::encode_all(&b"zstd text\n"[..], 1).unwrap();
        let (paras, _) = blocks_of(&z, false);
        assert_eq!(paras, vec![("zstd text\n".to_string(), 1)]);
    }

    #[test]
    fn a_file_reached_twice_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("c");
        std::fs::create_dir(&c).unwrap();
        let a = c.join("a.txt");
        std::fs::write(&a, "Paris is the capital of France.\n").unwrap();
        std::os::unix::fs::symlink("a.txt", c.join("b.txt")).unwrap();
        std::fs::write(c.join("z.txt"), "other\n").unwrap();
        let names =
            |e: &Expanded| -> Vec<PathBuf> { e.sources.iter().map(|s| s.name.clone()).collect() };
        // A link beside its target.
        let e = expand(std::slice::from_ref(&c), InputFormat::Auto, &[]).unwrap();
        assert_eq!(names(&e), [a.clone(), c.join("z.txt")]);
        assert_eq!(e.duplicates, 1);
        assert_eq!(e.duplicate_example, Some((c.join("b.txt"), a.clone())));
        // A file named twice, and a folder with a file in it named too.
        let e = expand(&[a.clone(), a.clone(), c.clone()], InputFormat::Auto, &[]).unwrap();
        assert_eq!(names(&e), [a.clone(), c.join("z.txt")]);
        assert_eq!(e.duplicates, 3);
    }

    /// A named pipe gives its bytes once: every pass after the first read nothing (or its
    /// second open waited forever for a writer), so its pairs went missing.
    #[test]
    fn a_pipe_is_copied_on_the_first_pass_and_read_from_the_copy_after() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f.txt");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, "one two\n\nthree\n"))
        };
        let e = expand(std::slice::from_ref(&fifo), InputFormat::Auto, &[]).unwrap();
        assert!(e.sources[0].stream && !e.sources[0].stdin && !e.sources[0].sniff);
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        // Each pass on a thread of its own, waited for a minute at most: a second open of
        // the pipe waits forever for a writer.
        let read = || {
            let (sources, work) = (e.sources.clone(), work.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut paras = Vec::new();
                let r = read_blocks(
                    &sources,
                    Paragraphs::Blank,
                    "text",
                    &work,
                    &mut Skipped::default(),
                    |_| {},
                    |b| {
                        for p in &b.paras {
                            paras.push((b.text[p.start..p.end].to_string(), p.line));
                        }
                        true
                    },
                );
                let _ = tx.send(r.map(|_| paras));
            });
            rx.recv_timeout(std::time::Duration::from_secs(60))
                .expect("the pass did not finish")
                .unwrap()
        };
        let first = read();
        writer.join().unwrap().unwrap();
        assert_eq!(
            first,
            [("one two\n".to_string(), 1), ("three\n".to_string(), 3)]
        );
        // Later passes read the copy.
        assert_eq!(read(), first);
        assert_eq!(
            copy_path(&work, 0, &e.sources[0]),
            Some(work.join("input-0"))
        );
    }

    /// Found by an audit: one link looping back up (`ln -s .. sub/up`) or leading nowhere
    /// stopped the whole run ("File system loop found", an IO error).
    #[test]
    fn links_that_loop_or_lead_nowhere_are_skipped_and_named() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/f.txt"), "alpha beta\n").unwrap();
        symlink("..", d.join("sub/up")).unwrap();
        symlink("nowhere", d.join("dangling")).unwrap();
        symlink("chain-b", d.join("chain-a")).unwrap();
        symlink("chain-a", d.join("chain-b")).unwrap();
        symlink("sub/f.txt", d.join("good")).unwrap();
        let e = expand(std::slice::from_ref(&d), InputFormat::Auto, &[]).unwrap();
        let names: Vec<_> = e.sources.iter().map(|s| s.name.clone()).collect();
        // The good link is the file it points to, read once.
        assert_eq!(names, [d.join("good")]);
        assert_eq!(e.broken_links, 4, "{:?}", e.broken_link_examples);
        let all = e.broken_link_examples.join("\n");
        for part in [
            "sub/up: skipped: a symbolic link that loops back to",
            "dangling: skipped: a symbolic link to nothing (nowhere)",
            "chain-a: skipped: a symbolic link in a loop of links",
        ] {
            assert!(all.contains(part), "{part:?} in {all}");
        }
        // Named itself, a link to nothing is still an error.
        let err = expand(&[d.join("dangling")], InputFormat::Auto, &[]).unwrap_err();
        assert!(err.to_string().contains("dangling"), "{err}");
    }

    /// A folder that exists but cannot be read is still an error (not a link to skip).
    #[test]
    fn an_unreadable_folder_is_still_an_error() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir_all(d.join("locked")).unwrap();
        std::fs::write(d.join("a.txt"), "alpha\n").unwrap();
        std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
        // Root reads anything: nothing to test there.
        let readable = std::fs::read_dir(d.join("locked")).is_ok();
        let result = expand(std::slice::from_ref(&d), InputFormat::Auto, &[]);
        std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
        if !readable {
            let err = result.unwrap_err().to_string();
            assert!(err.contains("locked"), "{err}");
        }
    }

    #[test]
    fn hidden_entries_are_counted_unless_relberts_own() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".notes.txt"), "a b\n").unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git").join("x.txt"), "a b\n").unwrap();
        let own = dir.path().join(".p.tsv.lock");
        std::fs::write(&own, "pid 1\n").unwrap();
        let e = expand(&[dir.path().to_path_buf()], InputFormat::Auto, &[own]).unwrap();
        assert!(e.sources.is_empty());
        // `.git` and `.notes.txt`, not what is inside `.git`, nor the lock file.
        assert_eq!(e.hidden, 2);
        assert_eq!(e.hidden_example, Some(dir.path().join(".git")));
    }

    #[test]
    fn relbert_reports_and_provenance_files_are_not_corpus_text() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "Paris is in France.\n").unwrap();
        let report = crate::corpus::MineReport::default();
        std::fs::write(
            dir.path().join("r.json"),
            serde_json::to_string_pretty(&report).unwrap(),
        )
        .unwrap();
        let pair = crate::corpus::MinedPair {
            head: "paris".into(),
            tail: "france".into(),
            count: 3,
            pmi: 1.0,
            score: 1.0,
            patterns: vec![("X is in Y".into(), 3)],
            examples: vec!["a.txt:1".into()],
        };
        let mut prov = serde_json::to_string(&pair).unwrap();
        prov.push('\n');
        std::fs::write(dir.path().join("p.provenance.jsonl"), &prov).unwrap();
        // A user's JSON is still text.
        std::fs::write(dir.path().join("notes.json"), "{\"passes\": 3}\n").unwrap();
        let e = expand(&[dir.path().to_path_buf()], InputFormat::Auto, &[]).unwrap();
        let names: Vec<String> = e
            .sources
            .iter()
            .map(|s| s.name.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.txt", "notes.json"]);
    }

    #[test]
    fn utf16_text_is_skipped_and_named_as_such() {
        let mut bytes = vec![0xff, 0xfe];
        for u in "Paris is the capital of France.\n".encode_utf16() {
            bytes.extend(u.to_le_bytes());
        }
        let (paras, skipped) = blocks_of(&bytes, false);
        assert!(paras.is_empty());
        assert_eq!((skipped.utf16_files, skipped.binary_files), (1, 0));
        assert!(
            skipped.examples[0].contains("UTF-16") && skipped.examples[0].contains("iconv"),
            "{:?}",
            skipped.examples
        );
    }

    #[test]
    fn unnamed_input_is_judged_json_lines_by_its_first_line() {
        let judge = |text: &'static str| {
            let r: Box<dyn BufRead> = Box::new(std::io::Cursor::new(text.as_bytes()));
            let (jsonl, mut rest) = sniff_json_lines(r, Path::new("<stdin>"), "text").unwrap();
            let mut all = String::new();
            rest.read_to_string(&mut all).unwrap();
            // Nothing read to judge it is lost.
            assert_eq!(all, text);
            jsonl
        };
        assert!(judge(
            "\n  \n{\"text\": \"Paris is in France.\"}\n{\"text\": \"b\"}\n"
        ));
        assert!(judge("\u{feff}{\"text\": \"a\"}"));
        assert!(!judge("{\"body\": \"a\"}\n"));
        assert!(!judge("Paris is in France.\n{\"text\": \"b\"}\n"));
        assert!(!judge(""));
    }

    /// Left from an earlier session: blank lines were held without bound while looking for
    /// the first line (an endless stream of them never returned).
    #[test]
    fn a_stream_of_blank_lines_is_judged_without_holding_it() {
        let r: Box<dyn BufRead> = Box::new(BufReader::new(std::io::repeat(b'\n')));
        let (jsonl, mut rest) = sniff_json_lines(r, Path::new("<stdin>"), "text").unwrap();
        assert!(!jsonl);
        // What was read to judge it comes first, then the rest of the stream.
        let mut head = vec![0u8; 3 * SNIFF_BYTES as usize];
        rest.read_exact(&mut head).unwrap();
        assert!(head.iter().all(|&b| b == b'\n'));
    }

    #[test]
    fn line_of_counts_breaks_inside_a_paragraph() {
        let b = Block {
            source: 0,
            text: "ab\ncd\nef\ngh\nij\n".into(),
            paras: vec![
                Para {
                    start: 0,
                    end: 9,
                    line: 10,
                    multiline: true,
                },
                Para {
                    start: 9,
                    end: 15,
                    line: 20,
                    multiline: true,
                },
            ],
            ..Block::default()
        };
        assert_eq!(b.line_of(&b.paras[0], 0), 10);
        assert_eq!(b.line_of(&b.paras[0], 4), 11);
        assert_eq!(b.line_of(&b.paras[0], 7), 12);
        // Counted from the paragraph's start, not the block's.
        assert_eq!(b.line_of(&b.paras[1], 0), 20);
        assert_eq!(b.line_of(&b.paras[1], 4), 21);
        assert_eq!(b.line_of(&b.paras[1], 99), 22);
    }
}
