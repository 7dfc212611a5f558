//! Opening, verifying and querying a finished index.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use crate::dot::{normalize, F16Rows, F32Rows, Isa, Kernel, Plain, RowStore};
#[cfg(target_arch = "x86_64")]
use crate::dot::{Avx2, Avx512};
use crate::error::{IndexError, Result};
use crate::format::{
    id_hex, index_id, open_dir, open_file, open_in, read_header, read_small, FileKind, Header,
    IndexId,
};
use crate::graph::{self, GraphLayout, GraphView, Hit, Scored, Visited, NO_NEIGHBOUR};
use crate::hnsw_build::BuiltGraph;
use crate::integrity::Protected;
use crate::meta::{self, Meta, Precision};
use crate::pairs::{PairRef, PairsLayout};

/// Files up to this size are fully verified at open by [`Verify::Small`] (the default);
/// larger ones block by block as queries first touch them.
pub const SMALL_FILE_LIMIT: u64 = 8 << 20;

/// Largest `meta` record accepted.
const META_LIMIT: u64 = 1 << 20;

/// How much [`Index::open_with`] checks at open. Whatever is not checked at open is checked
/// block by block before a query first uses it ([`crate::integrity`]), so no policy lets a
/// damaged block give an answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verify {
    /// Every header (magic, version, header checksum, exact length, index id), every block
    /// table's checksum, and all of `meta`. Constant time in the size of the index.
    Headers,
    /// As `Headers`, plus every block of each file not larger than [`SMALL_FILE_LIMIT`]: small
    /// indexes are fully verified at open. The default.
    #[default]
    Small,
    /// Every block of every file (reads everything once, and the vectors' values a second
    /// time, from the page cache as a rule), the graph's structure, every
    /// stored vector's values, and the index id recomputed from the content (the same as
    /// `open` + [`Index::verify`]).
    Full,
}

/// Options for [`Index::open_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Checksum policy.
    pub verify: Verify,
}

/// On-disk sizes of an index's files, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskSizes {
    /// `vectors` file.
    pub vectors: u64,
    /// `pairs` file.
    pub pairs: u64,
    /// `graph` file.
    pub graph: u64,
    /// `meta` file.
    pub meta: u64,
}

impl DiskSizes {
    /// Sum of all files.
    pub fn total(&self) -> u64 {
        self.vectors + self.pairs + self.graph + self.meta
    }
}

/// An open index: memory maps of its files plus the decoded [`Meta`]. `Send + Sync`; searches
/// may run concurrently from several threads.
pub struct Index {
    dir: PathBuf,
    id: IndexId,
    meta: Meta,
    meta_len: u64,
    /// The `meta` file opened with the others (re-read by [`Index::verify`]).
    meta_file: std::fs::File,
    vectors: Protected,
    pairs: Protected,
    pairs_layout: PairsLayout,
    graph: Protected,
    graph_layout: GraphLayout,
    visited: Mutex<Vec<Visited>>,
    isa: Isa,
    /// The lowest row a search met whose stored vector is not finite, is zero or is far from unit length
    /// (`usize::MAX`: none yet); see [`Index::invalid_row_notice`].
    invalid_row: AtomicUsize,
    /// Whether [`Index::invalid_row_notice`] has told of `invalid_row`.
    invalid_told: AtomicBool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("dir", &self.dir)
            .field("id", &id_hex(&self.id))
            .field("meta", &self.meta)
            .finish()
    }
}

/// A query vector after validation: unit length, `dim` values.
fn prepare_query(q: &[f32], dim: usize) -> Result<Vec<f32>> {
    if q.len() != dim {
        return Err(IndexError::DimensionMismatch {
            expected: dim,
            actual: q.len(),
        });
    }
    let mut v = q.to_vec();
    // Not `InvalidVector`, whose row is a row of the caller's chunk: a query has none, and
    // "row 0" read as the index's first row.
    normalize(&mut v)
        .map_err(|reason| IndexError::InvalidParameter(format!("the query vector: {reason}")))?;
    Ok(v)
}

/// The largest score a search takes as a cosine: the query is unit and every stored row is
/// unit within its rounding (an `f16` row's norm within ~5e-4 of 1), so a score beyond this
/// is a row far from unit length ([`row_problem`]), left out as a NaN row is (found by a
/// review: a row scaled ×3 in a `vectors` file rewritten with fresh checksums scored 2.98).
const MAX_SCORE: f32 = 1.01;

/// A row store whose rows' scores are only ever numbers a ranking can use: a row whose
/// stored vector is not finite, is zero or is far from unit length (the builder never writes one; a file rewritten
/// with fresh checksums can hold one) scores `-inf`, the worst, and the lowest such row is
/// remembered in `invalid`. A NaN score would otherwise sort above every number in the
/// search's total order (or below all, by its sign bit), and as the worst result kept it
/// would be the bound every candidate is compared with, where `s > NaN` drops them all.
struct Valid<S> {
    inner: S,
    invalid: Option<usize>,
}

impl<S> Valid<S> {
    fn new(inner: S) -> Self {
        Valid {
            inner,
            invalid: None,
        }
    }
}

impl<S: RowStore> Valid<S> {
    /// The score of `row` when its dot product `s` is not finite, is exactly zero, or is
    /// beyond what two unit vectors give ([`MAX_SCORE`]): a zero product is an ordinary
    /// score unless the row itself is zero; a larger one is a row far from unit length.
    #[cold]
    #[inline(never)]
    fn odd_score(&mut self, row: usize, s: f32) -> f32 {
        // `abs() <= MAX_SCORE` is false for NaN and the infinities too.
        if s.abs() <= MAX_SCORE && !self.inner.is_zero(row) {
            return s;
        }
        self.invalid = Some(self.invalid.map_or(row, |r| r.min(row)));
        f32::NEG_INFINITY
    }
}

impl<S: RowStore> RowStore for Valid<S> {
    #[inline(always)]
    fn rows(&self) -> usize {
        self.inner.rows()
    }

    #[inline(always)]
    fn dot<K: Kernel>(&mut self, q: &[f32], row: usize) -> f32 {
        let s = self.inner.dot::<K>(q, row);
        if s != 0.0 && s.abs() <= MAX_SCORE {
            s
        } else {
            self.odd_score(row, s)
        }
    }

    #[inline(always)]
    fn prefetch(&self, row: usize) {
        self.inner.prefetch(row)
    }

    fn is_zero(&self, row: usize) -> bool {
        self.inner.is_zero(row)
    }
}

/// A row store whose rows are read only after their blocks verified; a row in a damaged
/// block scores `-inf` and is remembered in `bad`.
struct Guarded<'a, S> {
    inner: S,
    file: &'a Protected,
    row_bytes: usize,
    bad: Option<u64>,
}

impl<S: RowStore> RowStore for Guarded<'_, S> {
    #[inline(always)]
    fn rows(&self) -> usize {
        self.inner.rows()
    }

    #[inline(always)]
    fn dot<K: Kernel>(&mut self, q: &[f32], row: usize) -> f32 {
        let start = row.saturating_mul(self.row_bytes);
        match self.file.ok(start, start.saturating_add(self.row_bytes)) {
            Ok(()) => self.inner.dot::<K>(q, row),
            Err(b) => {
                self.bad.get_or_insert(b);
                f32::NEG_INFINITY
            }
        }
    }

    #[inline(always)]
    fn prefetch(&self, row: usize) {
        self.inner.prefetch(row)
    }

    fn is_zero(&self, row: usize) -> bool {
        self.inner.is_zero(row)
    }
}

/// The reason a stored vector is unusable, if it is: what a search scores `-inf`
/// ([`Valid`]) and [`Index::verify`] refuses.
///
/// A row far from unit length is one too (found by a review: a `vectors` file rewritten with
/// one row scaled, its checksums recomputed, answered scores near 3 for a cosine): every row
/// is stored unit, an `f16` row within its rounding (a relative 2^-11 per component), so a
/// norm off by more than 1% is no row relbert wrote.
fn row_problem(v: &[f32]) -> Option<&'static str> {
    // One pass: the squares of finite `f32` values cannot overflow an `f64` sum, so it is
    // not finite exactly when a component is not, and 0 exactly when every one is 0.
    let squares: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    if !squares.is_finite() {
        Some("a non-finite component")
    } else if squares == 0.0 {
        Some("a zero vector")
    } else if (squares.sqrt() - 1.0).abs() > 0.01 {
        Some("not of unit length")
    } else {
        None
    }
}

/// The values check of [`Index::verify`] and [`Verify::Full`], fed the `vectors` payload as
/// its blocks are verified, so that one read of the file serves both: the first row that is
/// not finite or is zero, and how many there are. Checksums cannot see such a row when the
/// file was written with it.
struct RowCheck {
    precision: Precision,
    row_bytes: usize,
    rows: usize,
    /// The row the next complete row's bytes are.
    row: usize,
    /// The start of a row split between two reads.
    carry: Vec<u8>,
    /// One row's values, decoded.
    wide: Vec<f32>,
    first: Option<(usize, &'static str)>,
    bad: usize,
}

impl RowCheck {
    fn new(meta: &Meta) -> Self {
        let rows = usize::try_from(meta.count).unwrap_or(usize::MAX);
        Self::of(meta.precision, meta.dim as usize, rows)
    }

    fn of(precision: Precision, dim: usize, rows: usize) -> Self {
        RowCheck {
            precision,
            row_bytes: dim.saturating_mul(precision.bytes()),
            rows,
            row: 0,
            carry: Vec::new(),
            wide: Vec::new(),
            first: None,
            bad: 0,
        }
    }

    /// The next bytes of the payload, in order.
    fn feed(&mut self, mut bytes: &[u8]) {
        if self.row_bytes == 0 {
            return;
        }
        if !self.carry.is_empty() {
            let take = (self.row_bytes - self.carry.len()).min(bytes.len());
            self.carry.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.carry.len() < self.row_bytes {
                return;
            }
            let row = std::mem::take(&mut self.carry);
            self.check(&row);
            self.carry = row;
            self.carry.clear();
        }
        let whole = bytes.len() - bytes.len() % self.row_bytes;
        for raw in bytes[..whole].chunks_exact(self.row_bytes) {
            self.check(raw);
        }
        self.carry.extend_from_slice(&bytes[whole..]);
    }

    fn check(&mut self, raw: &[u8]) {
        if self.row >= self.rows {
            return;
        }
        self.wide.clear();
        match self.precision {
            Precision::F32 => self.wide.extend(
                raw.chunks_exact(4)
                    .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
            ),
            Precision::F16 => self.wide.extend(
                raw.chunks_exact(2)
                    .map(|b| f16::from_ne_bytes([b[0], b[1]]).to_f32()),
            ),
        }
        if let Some(reason) = row_problem(&self.wide) {
            self.first.get_or_insert((self.row, reason));
            self.bad += 1;
        }
        self.row += 1;
    }

    /// The first bad row of the file at `path`, named, with how many there are.
    fn finish(self, path: &Path) -> Result<()> {
        match self.first {
            None => Ok(()),
            Some((row, reason)) => Err(IndexError::corrupt(
                path,
                format!(
                    "the stored vector of row {row} is invalid ({reason}){}; the file was \
                     written or rewritten wrongly: build the index again from its pair list \
                     (`relbert index build --pairs FILE --out DIR --force`)",
                    match self.bad {
                        1 => String::new(),
                        _ => format!(", one of {} such rows", self.bad),
                    }
                ),
            )),
        }
    }
}

/// How many times [`Index::open_with`] starts again when a publication replaced the index
/// while it was being opened (each publication is a rename, so more than a few in a row
/// means something else is wrong).
const OPEN_RETRIES: usize = 8;

/// A failed try of [`Index::open_with`]: the error, with what tells whether a publication
/// replaced the directory meanwhile ([`open_again`]).
struct OpenFailure {
    /// The id `meta` held, once it was read.
    id: Option<String>,
    /// The device and inode of the directory opened ([`dir_id`]), once it was opened.
    opened: Option<(u64, u64)>,
    err: IndexError,
}

/// The device and inode of the open file or directory `f`.
fn file_id(f: &std::fs::File) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    f.metadata().ok().map(|m| (m.dev(), m.ino()))
}

/// The device and inode of the directory `dir` names now.
fn dir_id(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether [`Index::open_with`] opens `dir` again after the try that `failed`: when a
/// publication replaced the index meanwhile. Either `dir` holds another index now (`id_now`,
/// the id its `meta` holds, differs from the one read), or a file of the directory opened was
/// gone and `dir` names another directory now (`dir_now`): the publication exchanged it and
/// removed the old one's files while they were being opened. The id alone missed that when
/// the new index has the same id (a rebuild in place of the same pairs and parameters), or
/// when `meta` itself was gone, and the open failed with "graph: No such file or directory"
/// (found by a review). A file missing from the directory that is still there is the index's
/// own damage, reported at once rather than verified again.
fn open_again(
    failed: &OpenFailure,
    id_now: impl FnOnce() -> Option<String>,
    dir_now: impl FnOnce() -> Option<(u64, u64)>,
) -> bool {
    if let Some(id) = &failed.id {
        if id_now().is_some_and(|now| &now != id) {
            return true;
        }
    }
    let gone = matches!(
        &failed.err,
        IndexError::Io { err, .. } if err.kind() == std::io::ErrorKind::NotFound
    );
    gone && failed
        .opened
        .is_some_and(|was| dir_now().is_some_and(|now| now != was))
}

impl Index {
    /// Opens the index in `dir` with the default checks ([`Verify::Small`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Index> {
        Self::open_with(dir, OpenOptions::default())
    }

    /// Opens the index in `dir`. Every file's header is checked (magic bytes, format version,
    /// header checksum, exact length, and the index id, which must be `meta`'s), and every
    /// block table's checksum; which blocks are verified now depends on `opts.verify`, the
    /// rest are verified when first used. The vectors and graph are memory-mapped, never read
    /// wholesale.
    pub fn open_with(dir: impl AsRef<Path>, opts: OpenOptions) -> Result<Index> {
        let dir = dir.as_ref();
        let mut retries = 0;
        loop {
            match Self::open_once(dir, opts) {
                Ok(index) => return Ok(index),
                // The directory opened was replaced by a publication and removed while its
                // files were being opened: open the index that is there now.
                Err(failed)
                    if retries < OPEN_RETRIES
                        && open_again(&failed, || Self::read_id(dir).ok(), || dir_id(dir)) =>
                {
                    retries += 1;
                }
                Err(failed) => return Err(failed.err),
            }
        }
    }

    /// The id of the index in `dir`, from its `meta` file alone (hex, as [`Self::id`]): a
    /// cheap way to tell whether `dir` now holds another index than one opened before.
    pub fn read_id(dir: impl AsRef<Path>) -> Result<String> {
        let path = dir.as_ref().join(FileKind::Meta.file_name());
        let file = open_file(&path)?;
        Ok(id_hex(&read_header(&path, FileKind::Meta, &file)?.id))
    }

    /// One try of [`Self::open_with`]. Every file is opened inside the directory opened
    /// first, so a publication exchanging another index into `dir` meanwhile cannot mix the
    /// files of two indexes. On failure, the id `meta` held (once read) and the directory
    /// opened come with the error ([`OpenFailure`]).
    // Boxed: the failure is the rare path, and it is larger than an `Index`.
    fn open_once(dir: &Path, opts: OpenOptions) -> std::result::Result<Index, Box<OpenFailure>> {
        let handle = open_dir(dir).map_err(|err| {
            Box::new(OpenFailure {
                id: None,
                opened: None,
                err,
            })
        })?;
        let opened = file_id(&handle);
        let failed =
            |id: Option<String>| move |err: IndexError| Box::new(OpenFailure { id, opened, err });
        let meta_path = dir.join(FileKind::Meta.file_name());
        let (mh, meta, meta_file) = open_in(&handle, FileKind::Meta, &meta_path)
            .and_then(|f| {
                let copy = f.try_clone().map_err(|e| IndexError::io(&meta_path, e))?;
                let (mh, buf) = read_small(&meta_path, FileKind::Meta, META_LIMIT, copy)?;
                let meta: Meta = meta::decode(&buf, &meta_path)?;
                meta.validate(&meta_path)?;
                Ok((mh, meta, f))
            })
            .map_err(failed(None))?;
        let mut rows = RowCheck::new(&meta);
        let index = Self::open_files(dir, &handle, mh, meta, meta_file, opts, &mut rows)
            .map_err(failed(Some(id_hex(&mh.id))))?;
        if opts.verify == Verify::Full {
            // Every block was verified by `open_files`, the rows' values with the vectors';
            // what `verify` checks beyond them.
            index
                .graph_view()
                .and_then(|g| index.check_graph(&g))
                .and_then(|()| rows.finish(&index.vectors.path))
                .and_then(|()| index.check_id())
                .map_err(failed(Some(id_hex(&mh.id))))?;
        }
        Ok(index)
    }

    fn open_files(
        dir: &Path,
        handle: &std::fs::File,
        mh: Header,
        meta: Meta,
        meta_file: std::fs::File,
        opts: OpenOptions,
        rows: &mut RowCheck,
    ) -> Result<Index> {
        let dir = dir.to_path_buf();
        let count = meta.count as usize;
        let dim = meta.dim as usize;

        let mut open = |kind: FileKind| -> Result<Protected> {
            let f = Protected::open_in(handle, &dir, kind, kind != FileKind::Pairs)?;
            if f.header.id != mh.id {
                return Err(IndexError::ForeignFile {
                    path: f.path.clone(),
                    dir: dir.clone(),
                    expected: id_hex(&mh.id),
                    found: id_hex(&f.header.id),
                });
            }
            let eager = match opts.verify {
                Verify::Headers => false,
                Verify::Small => f.file_len() <= SMALL_FILE_LIMIT,
                Verify::Full => true,
            };
            if kind == FileKind::Vectors && opts.verify == Verify::Full {
                f.verify_all_with(&mut |b| rows.feed(b))?;
            } else if eager {
                f.verify_all()?;
            }
            Ok(f)
        };
        let vectors = open(FileKind::Vectors)?;
        // Checked: a damaged meta can claim a count and dimension whose product overflows
        // (fuzz find, tests/fuzz_regressions.rs).
        let want = meta
            .count
            .checked_mul(meta.dim as u64)
            .and_then(|x| x.checked_mul(meta.precision.bytes() as u64));
        if want != Some(vectors.header.payload_len) {
            return Err(IndexError::corrupt(
                &vectors.path,
                format!(
                    "{} bytes of vectors but meta says {count} × {dim} {}",
                    vectors.header.payload_len,
                    meta.precision.name()
                ),
            ));
        }
        let pairs = open(FileKind::Pairs)?;
        pairs.check(0, 16)?;
        let pairs_layout = PairsLayout::parse(pairs.payload(), count, &pairs.path)?;
        let graph = open(FileKind::Graph)?;
        graph.check(0, 40)?;
        let graph_layout = GraphLayout::parse(graph.payload(), count, &graph.path)?;
        let idx = Index {
            dir,
            id: mh.id,
            meta,
            meta_len: mh.file_len(),
            meta_file,
            vectors,
            pairs,
            pairs_layout,
            graph,
            graph_layout,
            visited: Mutex::new(Vec::new()),
            isa: Isa::detect(),
            invalid_row: AtomicUsize::new(usize::MAX),
            invalid_told: AtomicBool::new(false),
        };
        // Verifies the graph's small sections and the alignment of the zero-copy views once.
        idx.graph_view()?;
        match idx.meta.precision {
            Precision::F32 => {
                idx.rows_f32()?;
            }
            Precision::F16 => {
                idx.rows_f16()?;
            }
        }
        Ok(idx)
    }

    /// Verifies every block of every file now (reads everything once), checks the graph's structure (as `index add` needs it) and every stored vector's
    /// values (a NaN or zero row, named by [`IndexError::Corrupt`]), then recomputes the
    /// index id from the content ([`index_id`]) and refuses one that is not the id every
    /// header carries ([`IndexError::IdMismatch`]): a file of another index whose header id
    /// was rewritten (with its header checksum) passes every check of the file itself.
    pub fn verify(&self) -> Result<()> {
        let mut rows = RowCheck::new(&self.meta);
        self.vectors.verify_all_with(&mut |b| rows.feed(b))?;
        for f in [&self.pairs, &self.graph] {
            f.verify_all()?;
        }
        self.check_graph(&self.graph_view()?)?;
        // Before the id: a rewritten `vectors` file changes the id too, and the row says
        // what is wrong with it.
        rows.finish(&self.vectors.path)?;
        self.check_id()
    }

    /// Verifies every block of the `vectors` and `pairs` files now (reads both once), not the
    /// graph: for a reader that copies every row and pair out of the index (`relbert index
    /// export`), which reads no part of the graph. Its reads then find each block verified.
    /// Found by a review: checked only block by block as read, such an export succeeded
    /// from a `pairs` file whose lookup table, which it does not read, was damaged.
    pub fn verify_vectors_and_pairs(&self) -> Result<()> {
        self.vectors.verify_all()?;
        self.pairs.verify_all()
    }

    /// Re-reads `meta` (every block) from the file opened with the others, and compares the
    /// id derived from it and the data files' block tables with the recorded one. The tables
    /// were read at open and are what the blocks are checked against, so a match ties every
    /// verified block to the id.
    fn check_id(&self) -> Result<()> {
        let meta_path = self.dir.join(FileKind::Meta.file_name());
        let file = self
            .meta_file
            .try_clone()
            .map_err(|e| IndexError::io(&meta_path, e))?;
        let (_, meta_bytes) = read_small(&meta_path, FileKind::Meta, META_LIMIT, file)?;
        let computed = index_id(
            &meta_bytes,
            &[self.vectors.table(), self.pairs.table(), self.graph.table()],
        );
        if computed != self.id {
            return Err(IndexError::IdMismatch {
                dir: self.dir.clone(),
                recorded: id_hex(&self.id),
                computed: id_hex(&computed),
            });
        }
        Ok(())
    }

    /// The first of the index's memory-mapped files (vectors, pairs, graph) that was written
    /// since the index was opened: overwritten in place (`cp` over the files) rather than
    /// published by a rename, which gives the path a new file and leaves the mapped one as it
    /// was. Reading such a file's map can fault the process (SIGBUS past its new end) or give
    /// bytes that were never verified, so a long-lived reader asks before each use and stops
    /// reading this index when it returns a path. A few `fstat` calls (microseconds).
    ///
    /// The check and a later read race: a file overwritten between them is read all the
    /// same. It narrows the danger to writes during a request; it cannot remove it.
    pub fn changed_in_place(&self) -> Option<&Path> {
        [&self.vectors, &self.pairs, &self.graph]
            .into_iter()
            .find(|f| f.changed_in_place())
            .map(|f| f.path.as_path())
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index's identity (carried by every file's header), as hex.
    pub fn id(&self) -> String {
        id_hex(&self.id)
    }

    /// Number of rows (distinct pairs).
    pub fn count(&self) -> usize {
        self.meta.count as usize
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.meta.dim as usize
    }

    /// The decoded metadata (encoder identity, precision, HNSW parameters, …).
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Sizes of the index's files on disk.
    pub fn disk_sizes(&self) -> DiskSizes {
        DiskSizes {
            vectors: self.vectors.file_len(),
            pairs: self.pairs.file_len(),
            graph: self.graph.file_len(),
            meta: self.meta_len,
        }
    }

    fn rows_f32(&self) -> Result<&[f32]> {
        bytemuck::try_cast_slice(self.vectors.payload())
            .map_err(|e| IndexError::corrupt(&self.vectors.path, format!("misaligned: {e}")))
    }

    fn rows_f16(&self) -> Result<&[f16]> {
        bytemuck::try_cast_slice(self.vectors.payload())
            .map_err(|e| IndexError::corrupt(&self.vectors.path, format!("misaligned: {e}")))
    }

    fn row_bytes(&self) -> usize {
        self.dim() * self.meta.precision.bytes()
    }

    /// `rows` read through the block checks of the `vectors` file.
    fn guarded<S: RowStore>(&self, rows: S) -> Guarded<'_, S> {
        Guarded {
            inner: rows,
            file: &self.vectors,
            row_bytes: self.row_bytes(),
            bad: None,
        }
    }

    fn graph_view(&self) -> Result<GraphView<'_>> {
        GraphView::guarded(&self.graph, self.graph_layout)
    }

    /// Checks the graph's structure beyond what its checksums and layout vouch for (a file
    /// edited and re-sealed passes those): the entry point is on the top layer, every
    /// neighbour id is a row, and the upper-node table lists exactly the nodes of level ≥ 1,
    /// in ascending order, each with its lists inside the upper-layer section. The search
    /// skips what is out of range, but the builder of `index add` indexes its own tables by
    /// these rows (such a table made it panic). Reads every list: for [`Self::verify`] and
    /// [`Self::graph_parts`], not for every open.
    fn check_graph(&self, g: &GraphView<'_>) -> Result<()> {
        let l = g.layout;
        let n = l.n;
        let bad = |why: String| IndexError::corrupt(&self.graph.path, why);
        let max_level = g.levels.iter().copied().max().unwrap_or(0) as usize;
        let entry_level = g.levels.get(l.entry as usize).copied().unwrap_or(0) as usize;
        if n > 0 && (l.max_level != max_level || entry_level != max_level) {
            return Err(bad("the entry point is not on the top layer".into()));
        }
        let valid = |v: u32| v == NO_NEIGHBOUR || (v as usize) < n;
        if !g.layer0.iter().all(|&v| valid(v)) || !g.upper_adj.iter().all(|&v| valid(v)) {
            return Err(bad("neighbour id out of range".into()));
        }
        let lists = g.upper_adj.len() / l.m.max(1);
        let mut expected = (0..n).filter(|&i| g.levels[i] > 0);
        for (j, &row) in g.upper_rows.iter().enumerate() {
            if row as usize >= n {
                return Err(bad(format!(
                    "upper-layer node {row} out of range ({n} nodes)"
                )));
            }
            if expected.next() != Some(row as usize) {
                return Err(bad(format!(
                    "the upper-layer node table does not list the nodes of level 1 or more \
                     in ascending order (at node {row})"
                )));
            }
            let level = g.levels[row as usize] as usize;
            let base = g.upper_base.get(j).copied().unwrap_or(u32::MAX) as usize;
            if base.saturating_add(level) > lists {
                return Err(bad(format!(
                    "node {row}'s upper-layer lists out of range ({lists} lists)"
                )));
            }
        }
        if let Some(missing) = expected.next() {
            return Err(bad(format!(
                "node {missing} has level {} but is missing from the upper-layer node table",
                g.levels[missing]
            )));
        }
        Ok(())
    }

    /// The whole graph, checked block by block, in the shape the builder takes (for
    /// [`crate::grow`], which inserts new rows into it).
    pub(crate) fn graph_parts(&self) -> Result<BuiltGraph> {
        self.graph.verify_all()?;
        let g = self.graph_view()?;
        self.check_graph(&g)?;
        let l = g.layout;
        let bad = |why: &str| IndexError::corrupt(&self.graph.path, why.to_string());
        let levels = g.levels.to_vec();
        let mut upper = Vec::with_capacity(g.upper_rows.len());
        for (j, &row) in g.upper_rows.iter().enumerate() {
            let level = levels.get(row as usize).copied().unwrap_or(0) as usize;
            let base = g.upper_base.get(j).copied().unwrap_or(u32::MAX) as usize;
            let mut lists = Vec::with_capacity(level);
            for k in 0..level {
                let list = g
                    .upper_adj
                    .get((base + k) * l.m..(base + k + 1) * l.m)
                    .ok_or_else(|| bad("upper-layer list out of range"))?;
                lists.push(
                    list.iter()
                        .copied()
                        .take_while(|&v| v != NO_NEIGHBOUR)
                        .collect(),
                );
            }
            upper.push((row, lists));
        }
        Ok(BuiltGraph {
            levels,
            entry: l.entry,
            m0: l.m0,
            m: l.m,
            layer0: g.layer0.to_vec(),
            upper,
        })
    }

    fn check_row(&self, row: usize) -> Result<()> {
        if row >= self.count() {
            return Err(IndexError::RowOutOfRange {
                row,
                count: self.count(),
            });
        }
        Ok(())
    }

    /// The stored (unit-length) vector of `row`; borrowed from the map for `f32` storage,
    /// widened into a new buffer for `f16`. A stored vector that is not finite, is zero or is far from unit length
    /// (the builder never writes one: its checksums were recomputed after an edit) is an
    /// [`IndexError::Corrupt`] naming the `vectors` file and the row, and `index info
    /// --verify`, which finds every such row; not a query that fails later as "invalid
    /// vector at row 0".
    pub fn vector(&self, row: usize) -> Result<Cow<'_, [f32]>> {
        self.check_row(row)?;
        let dim = self.dim();
        self.vectors
            .check(row * self.row_bytes(), (row + 1) * self.row_bytes())?;
        let range = row * dim..(row + 1) * dim;
        let v = match self.meta.precision {
            Precision::F32 => Cow::Borrowed(&self.rows_f32()?[range]),
            Precision::F16 => {
                let mut out = vec![0f32; dim];
                self.rows_f16()?[range].convert_to_f32_slice(&mut out);
                Cow::Owned(out)
            }
        };
        if let Some(reason) = row_problem(&v) {
            return Err(IndexError::corrupt(
                &self.vectors.path,
                format!(
                    "the stored vector of row {row} is invalid ({reason}); run \
                     `relbert index info --verify {}` to check every row",
                    self.dir.display()
                ),
            ));
        }
        Ok(v)
    }

    /// The lowest row a search of this index has met (and left out of its results) whose
    /// stored vector is not finite, is zero or is far from unit length, if any.
    pub fn invalid_row_seen(&self) -> Option<usize> {
        match self.invalid_row.load(Ordering::Relaxed) {
            usize::MAX => None,
            row => Some(row),
        }
    }

    /// The error [`Self::vector`] gives for [`Self::invalid_row_seen`]'s row (naming the
    /// file and row, and `index info --verify`), the first time a search has met one, and
    /// `None` ever after: for a caller that tells its user once per open index, whatever
    /// the number of searches or threads.
    pub fn invalid_row_notice(&self) -> Option<IndexError> {
        let row = self.invalid_row_seen()?;
        // Asked after every search: told once, the row is not read again.
        if self.invalid_told.load(Ordering::Relaxed) {
            return None;
        }
        // A row whose values are fine but whose product with a query overflowed is left out
        // too, and has no error to tell: the notice stays for a row that has one.
        let err = self.vector(row).err()?;
        if self.invalid_told.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(err)
    }

    /// Records the invalid row a search met, and drops the hits such rows gave (scored
    /// `-inf` by [`Valid`]; a valid row never scores that).
    fn drop_invalid(&self, invalid: Option<usize>, hits: &mut Vec<Hit>) {
        if let Some(row) = invalid {
            self.invalid_row.fetch_min(row, Ordering::Relaxed);
            hits.retain(|h| h.score.is_finite());
        }
    }

    /// The pair stored at `row`.
    pub fn pair(&self, row: usize) -> Result<PairRef<'_>> {
        self.check_row(row)?;
        self.pairs_layout
            .pair(self.pairs.payload(), row, &self.pairs.path, &|a, b| {
                self.pairs.check(a, b)
            })
    }

    /// The row holding (head, tail), if any: these exact strings, else the same words in
    /// another Unicode normal form (NFC or NFD; see [`crate::pairs`]). Case counts.
    pub fn lookup(&self, head: &str, tail: &str) -> Result<Option<usize>> {
        self.pairs_layout.lookup(
            self.pairs.payload(),
            head,
            tail,
            &self.pairs.path,
            &|a, b| self.pairs.check(a, b),
        )
    }

    /// Every row holding (head, tail) in any Unicode normal form, ascending (see
    /// [`lookup`](Self::lookup)): an index built before spellings were merged can hold one
    /// pair in two spellings, and `relbert index remove` removes both.
    pub fn lookup_all(&self, head: &str, tail: &str) -> Result<Vec<usize>> {
        self.pairs_layout.lookup_all(
            self.pairs.payload(),
            head,
            tail,
            &self.pairs.path,
            &|a, b| self.pairs.check(a, b),
        )
    }

    /// Approximate top-`k` by cosine similarity through the HNSW graph; `ef` (raised to at
    /// least `k`) is the candidate-list size: larger is slower and more accurate. The query is
    /// normalised first. Results are sorted best first. `k` and `ef` above the number of rows
    /// are treated as the number of rows. A row whose stored vector is not finite, is zero or is far from unit length
    /// is never returned, by any search (it would score NaN or 0); the first one met is
    /// kept for [`Self::invalid_row_notice`].
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>> {
        self.search_filtered(query, k, ef, |_| true)
    }

    /// Like [`search`](Self::search), but only rows for which `keep(row)` is true are returned.
    /// Rejected rows are still traversed, and the result set holds `ef` accepted rows, so `k`
    /// results come back whenever `k` accepted rows are reachable.
    pub fn search_filtered<F: FnMut(usize) -> bool>(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: F,
    ) -> Result<Vec<Hit>> {
        self.search_filtered_from(query, k, ef, None, keep)
    }

    /// [`search_filtered`](Self::search_filtered) starting the layer-0 search at row `start`
    /// instead of at the node the upper layers lead to, when the query is known to lie at or
    /// beside a stored row (a query for a stored pair is that pair's own row): the descent
    /// through the upper layers and the first hops of layer 0 only find the way there. The
    /// search is otherwise the same (`start` is traversed like any row, and returned only if
    /// `keep` accepts it); `None`, or a row past the index, is an ordinary search.
    pub fn search_filtered_from<F: FnMut(usize) -> bool>(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        start: Option<usize>,
        keep: F,
    ) -> Result<Vec<Hit>> {
        let q = prepare_query(query, self.dim())?;
        let g = self.graph_view()?;
        let n = self.count();
        // No more than n results: the heaps are sized from k and ef, so a huge k must not
        // reach them (fuzz harness find, tests/fuzz_regressions.rs).
        let (k, ef) = (k.min(n), ef.min(n));
        let mut visited = {
            let mut pool = self.visited.lock().unwrap_or_else(|p| p.into_inner());
            pool.pop()
        }
        .filter(|v| v.len() == n)
        .unwrap_or_else(|| Visited::new(n));
        let dim = self.dim();
        let (mut hits, bad_row, invalid) = match self.meta.precision {
            Precision::F32 => {
                let mut s = self.guarded(Valid::new(F32Rows {
                    data: self.rows_f32()?,
                    dim,
                }));
                let h = dispatch_search(self.isa, &g, &mut s, &q, k, ef, start, &mut visited, keep);
                (h, s.bad, s.inner.invalid)
            }
            Precision::F16 => {
                let mut s = self.guarded(Valid::new(F16Rows {
                    data: self.rows_f16()?,
                    dim,
                }));
                let h = dispatch_search(self.isa, &g, &mut s, &q, k, ef, start, &mut visited, keep);
                (h, s.bad, s.inner.invalid)
            }
        };
        self.visited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(visited);
        if let Some(b) = bad_row {
            return Err(self.vectors.block_error(b));
        }
        if let Some(b) = g.bad_block() {
            return Err(self.graph.block_error(b));
        }
        self.drop_invalid(invalid, &mut hits);
        Ok(hits)
    }

    /// Exact top-`k` by brute force over every row (parallel with rayon).
    pub fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.search_exact_filtered(query, k, |_| true)
    }

    /// Exact top-`k` over the rows for which `keep(row)` is true (parallel with rayon).
    pub fn search_exact_filtered<F: Fn(usize) -> bool + Sync>(
        &self,
        query: &[f32],
        k: usize,
        keep: F,
    ) -> Result<Vec<Hit>> {
        let q = prepare_query(query, self.dim())?;
        let n = self.count();
        let k = k.min(n);
        if k == 0 {
            return Ok(Vec::new());
        }
        const BLOCK: usize = 8192;
        let blocks: Vec<usize> = (0..n.div_ceil(BLOCK)).collect();
        let isa = self.isa;
        let dim = self.dim();
        let row_bytes = self.row_bytes();
        // Each task verifies the blocks of its rows before scanning them.
        let verified = |b: usize| {
            let end = ((b + 1) * BLOCK).min(n);
            self.vectors.check(b * BLOCK * row_bytes, end * row_bytes)
        };
        // Each part: a block's best rows and the lowest invalid row it met.
        type Part = (Vec<Scored>, Option<usize>);
        let parts: Vec<Part> = match self.meta.precision {
            Precision::F32 => {
                let data = self.rows_f32()?;
                blocks
                    .par_iter()
                    .map(|&b| {
                        verified(b)?;
                        let mut s = Valid::new(F32Rows { data, dim });
                        let end = ((b + 1) * BLOCK).min(n);
                        let best = dispatch_exact(isa, &mut s, &q, k, b * BLOCK, end, &keep);
                        Ok((best, s.invalid))
                    })
                    .collect::<Result<_>>()?
            }
            Precision::F16 => {
                let data = self.rows_f16()?;
                blocks
                    .par_iter()
                    .map(|&b| {
                        verified(b)?;
                        let mut s = Valid::new(F16Rows { data, dim });
                        let end = ((b + 1) * BLOCK).min(n);
                        let best = dispatch_exact(isa, &mut s, &q, k, b * BLOCK, end, &keep);
                        Ok((best, s.invalid))
                    })
                    .collect::<Result<_>>()?
            }
        };
        let invalid = parts.iter().filter_map(|p| p.1).min();
        let mut all: Vec<Scored> = parts.into_iter().flat_map(|p| p.0).collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.truncate(k);
        let mut hits = all.into_iter().map(Hit::from).collect();
        self.drop_invalid(invalid, &mut hits);
        Ok(hits)
    }
}

/// Defines the `#[target_feature]` entry points of the search loops for one kernel, so the
/// generic loops are compiled (and the kernel inlined) once per instruction-set level.
macro_rules! isa_entry_points {
    ($search:ident, $exact:ident, $kernel:ty, $features:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        fn $search<S: RowStore, F: FnMut(usize) -> bool>(
            g: &GraphView<'_>,
            store: &mut S,
            q: &[f32],
            k: usize,
            ef: usize,
            start: Option<usize>,
            visited: &mut Visited,
            keep: F,
        ) -> Vec<Hit> {
            graph::search::<$kernel, S, F>(g, store, q, k, ef, start, visited, keep)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        fn $exact<S: RowStore, F: Fn(usize) -> bool>(
            store: &mut S,
            q: &[f32],
            k: usize,
            start: usize,
            end: usize,
            keep: &F,
        ) -> Vec<Scored> {
            graph::exact_range::<$kernel, S, F>(store, q, k, start, end, keep)
        }
    };
}

isa_entry_points!(search_avx2, exact_avx2, Avx2, "avx2,fma,f16c");
isa_entry_points!(search_avx512, exact_avx512, Avx512, "avx512f,avx2,fma,f16c");

#[allow(clippy::too_many_arguments)]
fn dispatch_search<S: RowStore, F: FnMut(usize) -> bool>(
    isa: Isa,
    g: &GraphView<'_>,
    store: &mut S,
    q: &[f32],
    k: usize,
    ef: usize,
    start: Option<usize>,
    visited: &mut Visited,
    keep: F,
) -> Vec<Hit> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only produced after detecting AVX2 and FMA.
        Isa::Avx2Fma => unsafe { search_avx2(g, store, q, k, ef, start, visited, keep) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx512` is only produced after detecting AVX-512F, AVX2 and FMA.
        Isa::Avx512 => unsafe { search_avx512(g, store, q, k, ef, start, visited, keep) },
        Isa::Portable => graph::search::<Plain, S, F>(g, store, q, k, ef, start, visited, keep),
    }
}

fn dispatch_exact<S: RowStore, F: Fn(usize) -> bool>(
    isa: Isa,
    store: &mut S,
    q: &[f32],
    k: usize,
    start: usize,
    end: usize,
    keep: &F,
) -> Vec<Scored> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only produced after detecting AVX2 and FMA.
        Isa::Avx2Fma => unsafe { exact_avx2(store, q, k, start, end, keep) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx512` is only produced after detecting AVX-512F, AVX2 and FMA.
        Isa::Avx512 => unsafe { exact_avx512(store, q, k, start, end, keep) },
        Isa::Portable => graph::exact_range::<Plain, S, F>(store, q, k, start, end, keep),
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Index>();
    let _ = <Plain as Kernel>::dot;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values check takes the payload in pieces of any size (a row split between two
    /// reads is put together) and finds what it finds in the whole.
    #[test]
    fn the_row_check_reads_rows_split_between_reads() {
        let dim = 3;
        let mut values = vec![1.0 / 3f32.sqrt(); 7 * dim];
        values[2 * dim + 1] = f32::NAN;
        values[5 * dim..6 * dim].fill(0.0);
        // Three times unit length: a cosine near 3 (found by a review).
        values[6 * dim..7 * dim].iter_mut().for_each(|v| *v *= 3.0);
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        for piece in [1, 5, 12, 13, 100] {
            let mut check = RowCheck::of(Precision::F32, dim, 7);
            for part in bytes.chunks(piece) {
                check.feed(part);
            }
            assert_eq!(
                (check.first, check.bad),
                (Some((2, "a non-finite component")), 3)
            );
        }
        let halves: Vec<u8> = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_ne_bytes())
            .collect();
        let mut check = RowCheck::of(Precision::F16, dim, 7);
        for part in halves.chunks(4) {
            check.feed(part);
        }
        assert_eq!(
            (check.first, check.bad),
            (Some((2, "a non-finite component")), 3)
        );
        let mut check = RowCheck::of(Precision::F32, dim, 7);
        check.feed(&bytes[..dim * 4]);
        check.feed(&bytes[6 * dim * 4..]);
        assert_eq!(
            (check.first, check.bad),
            (Some((1, "not of unit length")), 1)
        );
    }
    use crate::build::{HnswParams, IndexBuilder};
    use crate::format::{seal, unseal};
    use crate::meta::{EncoderInfo, IndexSpec};
    use crate::pairs::PairEntry;
    use crate::synthetic::gaussian;

    const N: usize = 300;
    const DIM: usize = 16;

    /// An index of `N` Gaussian rows whose `vectors` file was rewritten, with fresh
    /// checksums, to hold a NaN row that sorts above every number, one that sorts below
    /// every number (sign bit set) and a zero row; returns it with the rows as built.
    fn index_with_bad_rows(dir: &Path, precision: Precision, bad: [usize; 3]) -> Vec<f32> {
        let spec = IndexSpec {
            dim: DIM as u32,
            precision,
            encoder: EncoderInfo::default(),
            input: "bad rows".into(),
        };
        let pairs: Vec<PairEntry> = (0..N)
            .map(|i| PairEntry::new(format!("h{i}"), format!("t{i}")))
            .collect();
        let rows = gaussian(N, DIM, 7);
        let mut b = IndexBuilder::create_or_resume(dir, spec, false).unwrap();
        b.append_chunk(&pairs, &rows).unwrap();
        let params = HnswParams {
            m: 8,
            ef_construction: 64,
            threads: 1,
            ..HnswParams::default()
        };
        b.finish(params, |_| {}).unwrap();
        let path = dir.join(FileKind::Vectors.file_name());
        let bytes = std::fs::read(&path).unwrap();
        let (id, payload) = unseal(&bytes).unwrap();
        let mut payload = payload.to_vec();
        let row_bytes = DIM * precision.bytes();
        let row = |r: usize| r * row_bytes..(r + 1) * row_bytes;
        let (plus, minus) = match precision {
            Precision::F32 => (
                f32::NAN.to_le_bytes().to_vec(),
                (-f32::NAN).to_le_bytes().to_vec(),
            ),
            Precision::F16 => (
                f16::NAN.to_le_bytes().to_vec(),
                (-f16::NAN).to_le_bytes().to_vec(),
            ),
        };
        for (r, value) in [(bad[0], &plus), (bad[1], &minus)] {
            for c in payload[row(r)].chunks_mut(value.len()) {
                c.copy_from_slice(value);
            }
        }
        payload[row(bad[2])].fill(0);
        std::fs::write(&path, seal(FileKind::Vectors, &payload, &id)).unwrap();
        rows
    }

    /// Found by a review: a row scaled ×3 in a `vectors` file rewritten with fresh
    /// checksums was answered with a "cosine" of 2.98 by every search. A score no two unit
    /// vectors give leaves the row out, as a NaN row is, and it is told.
    #[test]
    fn a_row_far_from_unit_length_is_left_out() {
        for precision in [Precision::F32, Precision::F16] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("idx");
            // Its NaN and zero rows above the scaled one: the notice names the lowest met.
            let rows = index_with_bad_rows(&dir, precision, [N - 3, N - 2, N - 1]);
            let path = dir.join(FileKind::Vectors.file_name());
            let bytes = std::fs::read(&path).unwrap();
            let (id, payload) = unseal(&bytes).unwrap();
            let mut payload = payload.to_vec();
            let width = precision.bytes();
            let scaled = 20;
            for c in payload[scaled * DIM * width..(scaled + 1) * DIM * width].chunks_mut(width) {
                match precision {
                    Precision::F32 => {
                        let v = f32::from_le_bytes(c.try_into().unwrap()) * 3.0;
                        c.copy_from_slice(&v.to_le_bytes());
                    }
                    Precision::F16 => {
                        let v = f16::from_le_bytes(c.try_into().unwrap()).to_f32() * 3.0;
                        c.copy_from_slice(&f16::from_f32(v).to_le_bytes());
                    }
                }
            }
            std::fs::write(&path, seal(FileKind::Vectors, &payload, &id)).unwrap();
            let idx = Index::open_with(
                &dir,
                OpenOptions {
                    verify: Verify::Headers,
                },
            )
            .unwrap();
            let q = &rows[scaled * DIM..(scaled + 1) * DIM];
            for hits in [
                idx.search_exact(q, 10).unwrap(),
                idx.search(q, 10, 40).unwrap(),
            ] {
                assert!(
                    hits.iter()
                        .all(|h| h.row != scaled && h.score <= 1.0 + 1e-3),
                    "{precision:?}: {hits:?}"
                );
            }
            let told = idx.invalid_row_notice().unwrap().to_string();
            assert!(
                told.contains("row 20 ") && told.contains("not of unit length"),
                "{told}"
            );
        }
    }

    /// Found by an audit: a `vectors` file holding a NaN row (with checksums recomputed)
    /// answered with a NaN score ranked first, and a NaN that became the search's bound
    /// (the worst result kept) made it drop every later candidate. Bad rows are left out,
    /// every score is a number, and the graph search still finds the true neighbours.
    #[test]
    fn a_nan_or_zero_row_is_left_out_and_does_not_derail_the_search() {
        for precision in [Precision::F32, Precision::F16] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("idx");
            let bad = [11, 12, 13];
            let rows = index_with_bad_rows(&dir, precision, bad);
            let idx = Index::open(&dir).unwrap();
            assert_eq!(idx.invalid_row_seen(), None);
            for query_row in [10, 14, 150] {
                let q = &rows[query_row * DIM..(query_row + 1) * DIM];
                // The true neighbours among the good rows, by f64 cosine on the stored rows.
                let mut want: Vec<(f64, usize)> = (0..N)
                    .filter(|r| !bad.contains(r))
                    .map(|r| {
                        let v = idx.vector(r).unwrap();
                        (q.iter().zip(v.iter()).map(|(a, b)| (a * b) as f64).sum(), r)
                    })
                    .collect();
                want.sort_by(|a, b| b.0.total_cmp(&a.0));
                let want: Vec<usize> = want.iter().take(10).map(|w| w.1).collect();
                let check = |what: &str, hits: Vec<Hit>| {
                    assert!(
                        hits.iter()
                            .all(|h| h.score.is_finite() && !bad.contains(&h.row)),
                        "{precision:?} {what} {query_row}: {hits:?}"
                    );
                    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
                    let got: Vec<usize> = hits.iter().map(|h| h.row).collect();
                    assert_eq!(got, want, "{precision:?} {what} from row {query_row}");
                };
                check("exact", idx.search_exact(q, 10).unwrap());
                check("graph", idx.search(q, 10, 40).unwrap());
                // Started at each bad row: a NaN start once became the bound of the results
                // and shut every candidate out.
                for b in bad {
                    let hits = idx.search_filtered_from(q, 10, 40, Some(b), |_| true);
                    check("graph from a bad row", hits.unwrap());
                }
            }
            // Every row asked for: only the good ones come back.
            let q = &rows[..DIM];
            for hits in [
                idx.search_exact(q, N).unwrap(),
                idx.search(q, N, N).unwrap(),
            ] {
                assert_eq!(hits.len(), N - bad.len(), "{precision:?}");
                assert!(hits.iter().all(|h| h.score.is_finite()));
            }
            // Told once, naming the file, the lowest bad row met and `--verify`.
            assert_eq!(idx.invalid_row_seen(), Some(11));
            let told = idx.invalid_row_notice().unwrap().to_string();
            assert!(
                told.contains(&*dir.join("vectors").to_string_lossy())
                    && told.contains("row 11 ")
                    && told.contains("relbert index info --verify"),
                "{told}"
            );
            assert!(idx.invalid_row_notice().is_none());
            // `verify` names the first bad row and how many there are.
            let e = idx.verify().unwrap_err();
            assert!(
                matches!(e, IndexError::Corrupt { .. })
                    && e.to_string().contains("row 11 ")
                    && e.to_string().contains("one of 3 such rows"),
                "{e}"
            );
            let e = Index::open_with(
                &dir,
                OpenOptions {
                    verify: Verify::Full,
                },
            )
            .unwrap_err();
            assert!(e.to_string().contains("row 11 "), "{e}");
        }
    }

    /// Found by an audit (`relbert serve` died of SIGBUS when the served index's files were
    /// copied over in place): a file overwritten in place is named by `changed_in_place`,
    /// while a file published by a rename (a new inode at the path) leaves the open index
    /// as it was.
    #[test]
    fn a_file_overwritten_in_place_is_seen_and_a_renamed_one_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        index_with_bad_rows(&dir, Precision::F32, [1, 2, 3]);
        let index = Index::open(&dir).unwrap();
        assert_eq!(index.changed_in_place(), None);
        let graph = dir.join(FileKind::Graph.file_name());
        let bytes = std::fs::read(&graph).unwrap();
        // A rename over the path: the open file is untouched.
        let fresh = dir.join("graph.new");
        std::fs::write(&fresh, &bytes[..bytes.len() / 2]).unwrap();
        std::fs::rename(&fresh, &graph).unwrap();
        assert_eq!(index.changed_in_place(), None);
        drop(index);
        std::fs::write(&graph, &bytes).unwrap();
        // The same bytes written over a file in place (a `cp` of an identical file): the
        // length is the same, the modification time is not (review R3: that part of the
        // stamp was never tested). Set a second ahead, so a coarse clock cannot hide it.
        let index = Index::open(&dir).unwrap();
        let vectors = dir.join(FileKind::Vectors.file_name());
        let same = std::fs::read(&vectors).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&vectors)
            .unwrap();
        std::io::Write::write_all(&mut file, &same).unwrap();
        file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(1))
            .unwrap();
        drop(file);
        assert_eq!(
            std::fs::metadata(&vectors).unwrap().len(),
            same.len() as u64
        );
        assert_eq!(index.changed_in_place(), Some(vectors.as_path()));
        drop(index);
        let index = Index::open(&dir).unwrap();
        assert_eq!(index.changed_in_place(), None);
        // Written in place (truncated, as `cp` does, then rewritten shorter).
        let pairs = dir.join(FileKind::Pairs.file_name());
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&pairs)
            .unwrap();
        assert_eq!(index.changed_in_place(), Some(pairs.as_path()));
    }

    /// Found by a review: a one-shot open racing a rebuild in place whose new index had the
    /// same id failed with "graph: No such file or directory": the old directory's files
    /// were removed while it was being opened, and only another id was taken for a
    /// replacement. Here the race is laid out step by step: the open's try of the directory
    /// that was swapped out (its graph removed since) is one to make again, since `dir`
    /// names another directory now, holding an index of the same id; the same failure in a
    /// directory still in place is the index's own damage, said at once.
    #[test]
    fn an_open_is_tried_again_when_the_directory_was_swapped_under_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        index_with_bad_rows(&dir, Precision::F32, [0, 1, 2]);
        let id = Index::read_id(&dir).unwrap();
        // The publication: the old directory goes aside, a new one of the same id is put
        // in its place, and the old one's files are removed.
        let old = tmp.path().join("idx.old");
        std::fs::rename(&dir, &old).unwrap();
        std::fs::create_dir(&dir).unwrap();
        for e in std::fs::read_dir(&old).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        assert_eq!(Index::read_id(&dir).unwrap(), id, "the same id");
        std::fs::remove_file(old.join(FileKind::Graph.file_name())).unwrap();
        let opts = OpenOptions {
            verify: Verify::Headers,
        };
        // The open of `dir` had opened what is `old` now.
        let failed = match Index::open_once(&old, opts) {
            Err(f) => f,
            Ok(_) => panic!("opened an index without its graph"),
        };
        let gone = matches!(
            &failed.err,
            IndexError::Io { err, .. } if err.kind() == std::io::ErrorKind::NotFound
        );
        assert!(gone, "{}", failed.err);
        assert_eq!(failed.id.as_deref(), Some(id.as_str()));
        assert!(open_again(
            &failed,
            || Index::read_id(&dir).ok(),
            || dir_id(&dir)
        ));
        // The same failure where the directory opened is still the one there: not again.
        assert!(!open_again(
            &failed,
            || Index::read_id(&old).ok(),
            || dir_id(&old)
        ));
        assert!(Index::open_with(&old, opts).is_err());
        // Another id there is a replacement, whatever the error (as before).
        let other = OpenFailure {
            id: Some("0".repeat(32)),
            opened: failed.opened,
            err: IndexError::InvalidParameter("x".into()),
        };
        assert!(open_again(&other, || Some(id.clone()), || failed.opened));
        assert!(!open_again(&other, || Some("0".repeat(32)), || None));
        // The directory could not be opened: nothing tells a swap from a missing index.
        let none = OpenFailure {
            id: None,
            opened: None,
            err: IndexError::io(&dir, std::io::Error::from(std::io::ErrorKind::NotFound)),
        };
        assert!(!open_again(&none, || None, || dir_id(&dir)));
        // And the index now there opens.
        assert_eq!(Index::open_with(&dir, opts).unwrap().id(), id);
    }
}
