//! Shared code of the relbert-index fuzz targets (`fuzz_targets/`): seed indexes built once per
//! process through the public [`IndexBuilder`], a scratch directory the damaged copies are
//! written into, byte mutations driven by the fuzz input, and the calls every target makes on
//! whatever opens ([`exercise`]).
//!
//! Why libFuzzer here (and `proptest` for the main crate's parsers, `tests/fuzz_parsers.rs`):
//! this crate has no ML dependency, so an instrumented nightly build takes a few minutes,
//! and coverage guidance matters for binary formats whose checks are nested (magic, version,
//! length, checksum, then the layout of each section), which random inputs rarely get past.
//!
//! The harnesses use the public API only: [`Index::open_with`], the queries, [`Index::verify`],
//! [`IndexBuilder`]. The one exception is [`reseal`], which rewrites a file's header after
//! its payload was mutated, so that mutations reach the parsers behind the checksum (the
//! `pairs` and `meta` checksums are always verified at open); it uses the public
//! [`relbert_index::format`] helpers and is the only function to adapt when the header or
//! checksum layout changes. Nothing here hard-codes an offset of the current format.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use relbert_index::format::{FileKind, IndexId, HEADER_LEN, NO_ID};
use relbert_index::synthetic::gaussian;
use relbert_index::{
    EncoderInfo, HnswParams, Index, IndexBuilder, IndexError, IndexSpec, Meta, OpenOptions,
    PairEntry, Precision, Verify,
};

/// A cursor over the fuzz input; reads past the end give zeros, so every input is valid.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// True once every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// The next `n` bytes as a little-endian integer (`n` ≤ 8).
    pub fn uint(&mut self, n: usize) -> u64 {
        (0..n).fold(0u64, |acc, i| acc | (self.byte() as u64) << (8 * i))
    }

    /// Up to `n` next bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = self.pos.max(end);
        &self.data[start..end]
    }
}

/// One seed index, held in memory: its files (name, bytes) sorted by name.
pub struct SeedIndex {
    /// Short description, e.g. `f16 200x16`.
    pub name: String,
    /// The index directory's files, sorted by name.
    pub files: Vec<(String, Vec<u8>)>,
    /// Its decoded metadata (for structured mutations of `meta`).
    pub meta: Meta,
}

/// Shape of a seed index.
#[derive(Clone, Copy, Debug)]
pub struct SeedShape {
    /// Rows.
    pub rows: usize,
    /// Dimension.
    pub dim: usize,
    /// Storage precision.
    pub precision: Precision,
    /// HNSW `m` (layer 0 keeps `2m`).
    pub m: usize,
}

/// The indexes `index_open` mutates: 200 unit vectors of dimension 16 in `f32` and `f16`, plus
/// the edge cases of one row and of no row.
pub const OPEN_SHAPES: [SeedShape; 4] = [
    SeedShape {
        rows: 200,
        dim: 16,
        precision: Precision::F32,
        m: 8,
    },
    SeedShape {
        rows: 200,
        dim: 16,
        precision: Precision::F16,
        m: 8,
    },
    SeedShape {
        rows: 1,
        dim: 16,
        precision: Precision::F32,
        m: 8,
    },
    SeedShape {
        rows: 0,
        dim: 16,
        precision: Precision::F16,
        m: 8,
    },
];

/// The indexes `index_bytes` writes its input over: small, so that their own files (the seed
/// corpus) are a few KB.
pub const BYTES_SHAPES: [SeedShape; 2] = [
    SeedShape {
        rows: 24,
        dim: 8,
        precision: Precision::F32,
        m: 4,
    },
    SeedShape {
        rows: 24,
        dim: 8,
        precision: Precision::F16,
        m: 4,
    },
];

/// Pair `i` of a seed index: labelled and unlabelled, spaces, non-ASCII text, an empty label.
fn seed_pair(i: usize) -> PairEntry {
    let heads = ["paris", "New York", "café", "東京", "a\u{0301}", "x"];
    let head = format!("{} {i}", heads[i % heads.len()]);
    let tail = format!("t{i}-{}", ["france", "ü", "🙂", ""][i % 4]);
    match i % 5 {
        0 => PairEntry::new(head, tail),
        1 => PairEntry::labelled(head, tail, ""),
        _ => PairEntry::labelled(head, tail, format!("rel{}", i % 7)),
    }
}

/// Per-process scratch directory, created on first use: under `RELBERT_FUZZ_SCRATCH` if set,
/// else `/dev/shm` where it exists (rewriting files on a disk file system makes ext4 flush
/// them on close, which took most of the time), else `TMPDIR`. libFuzzer exits without running
/// destructors, so the directory (a few hundred KB) stays; `scripts/fuzz.sh` points
/// `RELBERT_FUZZ_SCRATCH` at a directory it removes.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("RELBERT_FUZZ_SCRATCH")
            .map(PathBuf::from)
            .or_else(|| {
                let shm = Path::new("/dev/shm");
                shm.is_dir().then(|| shm.to_path_buf())
            })
            .unwrap_or_else(std::env::temp_dir);
        let d = base.join(format!("relbert-index-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("cannot create the fuzz scratch directory");
        d
    })
}

/// Builds a seed index with the public builder (deterministic: fixed vectors, serial graph
/// build) and reads its files into memory.
pub fn build_seed(shape: SeedShape) -> SeedIndex {
    let name = format!("{} {}x{}", shape.precision.name(), shape.rows, shape.dim);
    let out = scratch().join(format!(
        "seed-{}-{}x{}",
        shape.precision.name(),
        shape.rows,
        shape.dim
    ));
    let _ = std::fs::remove_dir_all(&out);
    let spec = IndexSpec {
        dim: shape.dim as u32,
        precision: shape.precision,
        encoder: EncoderInfo {
            model: "fuzz-model".into(),
            weights_sha256: "0123abcd".into(),
            template: "<subj> is the <mask> of <obj>".into(),
            aggregation: "average_no_mask".into(),
        },
        input: "fuzz-seed".into(),
    };
    // One duplicate pair at the end, so `skipped_duplicates` is not zero.
    let mut pairs: Vec<PairEntry> = (0..shape.rows).map(seed_pair).collect();
    let mut vectors = gaussian(shape.rows, shape.dim, 7);
    if shape.rows > 0 {
        pairs.push(seed_pair(0));
        vectors.extend_from_slice(&gaussian(1, shape.dim, 8));
    }
    let mut b = IndexBuilder::create_or_resume(&out, spec, false).expect("seed builder");
    if !pairs.is_empty() {
        b.append_chunk(&pairs, &vectors).expect("seed rows");
    }
    let params = HnswParams {
        m: shape.m,
        ef_construction: 32,
        threads: 1,
        ..HnswParams::default()
    };
    b.finish(params, |_| {}).expect("seed index");
    let meta = Index::open(&out).expect("seed index opens").meta().clone();
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&out)
        .expect("seed index directory")
        .map(|e| {
            let e = e.expect("seed index entry");
            let bytes = std::fs::read(e.path()).expect("seed index file");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    let _ = std::fs::remove_dir_all(&out);
    SeedIndex { name, files, meta }
}

/// Writes `files` as the index directory `dir`, removing any other file the previous input
/// left there (such as a file this input deletes).
pub fn write_index(dir: &Path, files: &[(String, Vec<u8>)]) {
    std::fs::create_dir_all(dir).expect("cannot create the fuzz index directory");
    for e in std::fs::read_dir(dir).expect("cannot list the fuzz index directory") {
        let e = e.expect("cannot list the fuzz index directory");
        let name = e.file_name().to_string_lossy().into_owned();
        if !files.iter().any(|(n, _)| *n == name) {
            std::fs::remove_file(e.path()).expect("cannot remove a fuzz index file");
        }
    }
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("cannot write a fuzz index file");
    }
}

/// The index file kind of a file name, if it is one this build knows.
pub fn kind_of(name: &str) -> Option<FileKind> {
    [
        FileKind::Vectors,
        FileKind::Pairs,
        FileKind::Graph,
        FileKind::Meta,
    ]
    .into_iter()
    .find(|k| k.file_name() == name)
}

/// Splits a well-formed file into (its index id, its payload).
pub fn split_payload(bytes: &[u8]) -> (IndexId, &[u8]) {
    relbert_index::format::unseal(bytes).unwrap_or((NO_ID, &[]))
}

/// A file of `kind` holding `payload` with a correct header, the index id `id` and fresh block
/// checksums: the format-aware part of the harness (see the module docs), so that payload
/// mutations reach the parsers.
pub fn reseal(kind: FileKind, payload: &[u8], id: &IndexId) -> Vec<u8> {
    relbert_index::format::seal(kind, payload, id)
}

/// Values that tend to break length and count arithmetic.
fn interesting(r: &mut Reader, len: usize) -> u64 {
    const FIXED: [u64; 16] = [
        0,
        1,
        2,
        7,
        0x7f,
        0x80,
        0xff,
        0xffff,
        0x7fff_ffff,
        0xffff_fffe,
        0xffff_ffff,
        1 << 32,
        1 << 61,
        1 << 63,
        u64::MAX - 7,
        u64::MAX,
    ];
    let c = r.byte() as usize;
    match c % 20 {
        i @ 0..=15 => FIXED[i],
        16 => len as u64,
        17 => (len as u64).wrapping_sub(HEADER_LEN as u64),
        18 => (len as u64).wrapping_add(r.byte() as u64),
        _ => r.uint(8),
    }
}

/// An offset in `0..=len`, biased towards the first 64 bytes where the size fields live.
fn position(r: &mut Reader, len: usize) -> usize {
    let sel = r.byte();
    let raw = r.uint(4) as usize;
    if sel & 1 == 0 {
        raw % (len.min(64) + 1)
    } else {
        raw % (len + 1)
    }
}

/// Applies up to eight input-driven mutations to `bytes`: overwrite, truncate, append, write
/// an integer of 1, 2, 4 or 8 bytes, flip a bit, remove or insert a run.
pub fn mutate(bytes: &mut Vec<u8>, r: &mut Reader) {
    let ops = 1 + r.byte() % 8;
    for _ in 0..ops {
        if r.is_empty() {
            break;
        }
        let op = r.byte() % 7;
        let len = bytes.len();
        match op {
            0 => {
                let at = position(r, len);
                let n = 1 + r.byte() as usize % 16;
                let data = r.take(n);
                for (i, &b) in data.iter().enumerate() {
                    if let Some(x) = bytes.get_mut(at + i) {
                        *x = b;
                    }
                }
            }
            1 => {
                let at = position(r, len);
                bytes.truncate(at);
            }
            2 => {
                let n = r.byte() as usize % 64;
                let data = r.take(n);
                bytes.extend_from_slice(data);
            }
            3 => {
                let at = position(r, len);
                let width = [1usize, 2, 4, 8][r.byte() as usize % 4];
                let v = interesting(r, len).to_le_bytes();
                for (i, &b) in v[..width].iter().enumerate() {
                    if let Some(x) = bytes.get_mut(at + i) {
                        *x = b;
                    }
                }
            }
            4 => {
                let at = position(r, len);
                let bit = r.byte() % 8;
                if let Some(x) = bytes.get_mut(at) {
                    *x ^= 1 << bit;
                }
            }
            5 => {
                let at = position(r, len);
                let n = (1 + r.byte() as usize % 32).min(len - at);
                bytes.drain(at..at + n);
            }
            _ => {
                let at = position(r, len);
                let n = 1 + r.byte() as usize % 16;
                let data = r.take(n).to_vec();
                bytes.splice(at..at, data);
            }
        }
    }
}

/// Changes fields of a decoded `meta` record, driven by the input.
pub fn mutate_meta(meta: &mut Meta, r: &mut Reader) {
    let ops = 1 + r.byte() % 4;
    for _ in 0..ops {
        let len = meta.count as usize;
        match r.byte() % 10 {
            0 => meta.count = interesting(r, len),
            1 => meta.dim = interesting(r, meta.dim as usize) as u32,
            2 => {
                meta.precision = match meta.precision {
                    Precision::F32 => Precision::F16,
                    Precision::F16 => Precision::F32,
                }
            }
            3 => meta.format_version = interesting(r, 1) as u32,
            4 => meta.magic[r.byte() as usize % 8] ^= 1 << (r.byte() % 8),
            5 => {
                let n = r.byte() as usize % 12;
                meta.metric = String::from_utf8_lossy(r.take(n)).into_owned();
            }
            6 => meta.hnsw.m = interesting(r, 16) as u32,
            7 => meta.skipped_duplicates = interesting(r, 0),
            8 => {
                let n = r.byte() as usize % 40;
                meta.encoder.model = String::from_utf8_lossy(r.take(n)).into_owned();
            }
            _ => {
                // count and dim together, keeping the vector byte count the same, so the open
                // gets past the vectors size check to the pairs and graph.
                let f = 1 + r.byte() as u64 % 4;
                if (meta.dim as u64).is_multiple_of(f) {
                    meta.dim /= f as u32;
                    meta.count = meta.count.wrapping_mul(f);
                }
            }
        }
    }
}

/// Checks an error from opening `dir`: its message must name the file concerned.
pub fn check_open_error(e: &IndexError, dir: &Path) {
    let msg = e.to_string();
    assert!(
        msg.contains(&*dir.to_string_lossy()),
        "open error does not name a file of {}: {msg}",
        dir.display()
    );
}

fn check_hits(hits: &[relbert_index::Hit], k: usize, n: usize, what: &str) {
    assert!(hits.len() <= k, "{what}: {} hits for k = {k}", hits.len());
    let mut seen = HashSet::new();
    for h in hits {
        assert!(h.row < n, "{what}: hit row {} of {n}", h.row);
        assert!(seen.insert(h.row), "{what}: row {} twice", h.row);
    }
    for w in hits.windows(2) {
        assert!(
            w[0].score.total_cmp(&w[1].score).is_ge(),
            "{what}: hits not sorted best first"
        );
    }
}

/// A result count or candidate-list size: mostly below `small`, sometimes `n`, `n + 1` or huge.
fn size(r: &mut Reader, n: usize, small: usize) -> usize {
    match r.byte() {
        0..=239 => r.uint(2) as usize % small,
        240..=243 => n,
        244..=247 => n + 1,
        248..=251 => 1 << 40,
        _ => usize::MAX,
    }
}

/// Opens `dir` with `verify` and, if it opens, runs every read and query on it, with rows,
/// strings, query vectors, `k` and `ef` taken from `r`. Panics (a fuzz finding) only on a
/// broken property: a panic inside the crate, an open error that does not name its file, a
/// result out of range or unsorted, or a valid query refused by an index that opened.
/// Returns whether the index opened.
pub fn exercise(dir: &Path, verify: Verify, r: &mut Reader) -> bool {
    let idx = match Index::open_with(dir, OpenOptions { verify }) {
        Ok(i) => i,
        Err(e) => {
            check_open_error(&e, dir);
            return false;
        }
    };
    let n = idx.count();
    let dim = idx.dim();
    assert_eq!(idx.meta().count as usize, n);
    let _ = idx.disk_sizes().total();

    let extra = r.uint(4) as usize;
    let pick = if n == 0 { 0 } else { extra % n };
    for row in [0, 1, n / 2, n.wrapping_sub(1), n, pick, extra, usize::MAX] {
        match idx.vector(row) {
            Ok(v) => {
                assert!(row < n, "vector({row}) of {n} rows is Ok");
                assert_eq!(v.len(), dim);
            }
            Err(e) => assert!(
                row >= n || e.to_string().contains(&*dir.to_string_lossy()),
                "vector({row}) failed without naming the file: {e}"
            ),
        }
        match idx.pair(row) {
            Ok(p) => {
                assert!(row < n, "pair({row}) of {n} rows is Ok");
                if let Ok(Some(found)) = idx.lookup(p.head, p.tail) {
                    assert!(found < n, "lookup gave row {found} of {n}");
                }
            }
            Err(e) => assert!(
                row >= n || e.to_string().contains(&*dir.to_string_lossy()),
                "pair({row}) failed without naming the file: {e}"
            ),
        }
    }
    let s = r.byte() as usize % 24;
    let text = String::from_utf8_lossy(r.take(s)).into_owned();
    let cut = (0..=text.len())
        .filter(|&i| text.is_char_boundary(i))
        .nth(r.byte() as usize % (text.chars().count() + 1))
        .unwrap_or(0);
    if let Ok(Some(found)) = idx.lookup(&text[..cut], &text[cut..]) {
        assert!(found < n, "lookup gave row {found} of {n}");
    }

    if dim > 1 << 16 {
        // A damaged meta can claim any dimension when there are no rows; the builder never
        // writes more than 65536, and a query that long is the caller's allocation, not the
        // index's.
        return true;
    }
    let k = size(r, n, 48);
    let ef = size(r, n, 1024);
    let mut queries: Vec<(Vec<f32>, bool)> = vec![
        (vec![1.0; dim], true),
        (vec![0.0; dim], false),
        (vec![1.0; dim + 1], false),
    ];
    if let Ok(v) = idx.vector(pick) {
        queries.push((v.into_owned(), false));
    }
    let raw: Vec<f32> = (0..dim).map(|_| f32::from_bits(r.uint(4) as u32)).collect();
    queries.push((raw, false));
    // A valid query is answered unless the index is damaged where the query reads: since
    // format 2 a block is verified when first used, so an index that opened (with
    // `Verify::Headers`, or with files over the open-time limit) may refuse a search with the
    // damaged block's error, which must name the file, never answer from it.
    let refused = |e: &IndexError, valid: bool, what: &str| {
        if valid {
            assert!(
                matches!(e, IndexError::BlockChecksum { .. }),
                "{what} refused a valid query: {e}"
            );
            check_open_error(e, dir);
        }
    };
    for (q, valid) in &queries {
        match idx.search(q, k, ef) {
            Ok(h) => check_hits(&h, k, n, "search"),
            Err(e) => refused(&e, *valid, "search"),
        }
        match idx.search_filtered(q, k, ef, |row| row % 3 != 1) {
            Ok(h) => {
                check_hits(&h, k, n, "search_filtered");
                assert!(h.iter().all(|h| h.row % 3 != 1), "filter ignored");
            }
            Err(e) => refused(&e, *valid, "search_filtered"),
        }
        match idx.search_exact(q, k) {
            Ok(h) => {
                check_hits(&h, k, n, "search_exact");
                // A row whose stored vector is not finite or zero (a resealed file can hold
                // one) is left out of every result, so fewer hits come back then.
                if idx.invalid_row_seen().is_none() {
                    assert_eq!(h.len(), k.min(n), "search_exact: wrong number of hits");
                }
                assert!(
                    h.iter().all(|h| h.score.is_finite()),
                    "search_exact: a score that is not a number"
                );
            }
            Err(e) => refused(&e, *valid, "search_exact"),
        }
    }
    if let Err(e) = idx.verify() {
        check_open_error(&e, dir);
    }
    true
}
