//! Opening, verifying and querying a finished index.

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use half::f16;
use half::slice::HalfFloatSliceExt;
use memmap2::Mmap;
use rayon::prelude::*;

use crate::dot::{normalize, F16Rows, F32Rows, Isa, Kernel, Plain, RowStore};
#[cfg(target_arch = "x86_64")]
use crate::dot::{Avx2, Avx512};
use crate::error::{IndexError, Result};
use crate::format::{read_header, verify_payload_crc, FileKind, Header, HEADER_LEN};
use crate::graph::{self, GraphLayout, GraphView, Hit, Scored, Visited};
use crate::meta::{self, Meta, Precision};
use crate::pairs::{PairRef, PairsLayout};

/// Files up to this size are fully checksummed by [`Verify::Small`] (the default).
pub const SMALL_FILE_LIMIT: u64 = 64 << 20;

/// How much [`Index::open_with`] checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verify {
    /// Every header (magic, version, exact length) plus the CRC of `meta` (which is read whole
    /// anyway). Constant time, whatever the index size.
    Headers,
    /// As `Headers`, plus the full CRC of `pairs` and of every other file not larger than
    /// [`SMALL_FILE_LIMIT`]. The default: small indexes are fully verified, large ones never
    /// read their vectors or graph at open.
    #[default]
    Small,
    /// Every file's CRC (reads everything once; the same as `open` + [`Index::verify`]).
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

struct Mapped {
    path: PathBuf,
    file: File,
    header: Header,
    map: Mmap,
}

impl Mapped {
    fn payload(&self) -> &[u8] {
        &self.map[HEADER_LEN..]
    }
}

fn open_file(
    dir: &Path,
    kind: FileKind,
    verify: Verify,
    always_crc: bool,
    random_access: bool,
) -> Result<Mapped> {
    let path = dir.join(kind.file_name());
    let file = File::open(&path).map_err(|e| IndexError::io(&path, e))?;
    let header = read_header(&path, kind, &file)?;
    let check = match verify {
        Verify::Headers => always_crc && kind == FileKind::Meta,
        Verify::Small => always_crc || header.payload_len + HEADER_LEN as u64 <= SMALL_FILE_LIMIT,
        Verify::Full => true,
    };
    if check {
        verify_payload_crc(&path, &file, &header)?;
    }
    // SAFETY: index files are immutable once published (a rebuild writes a new directory
    // and renames it into place); the map is only read.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| IndexError::io(&path, e))?;
    if random_access {
        // Searches touch scattered rows: without this the kernel's read-ahead / fault-around
        // maps ~64 KiB around every touched row, inflating resident memory ~40-fold for
        // 1.5 KiB rows. Failure to advise is harmless.
        let _ = map.advise(memmap2::Advice::Random);
    }
    if map.len() as u64 != header.payload_len + HEADER_LEN as u64 {
        return Err(IndexError::Truncated {
            path,
            expected: header.payload_len + HEADER_LEN as u64,
            actual: map.len() as u64,
        });
    }
    Ok(Mapped {
        path,
        file,
        header,
        map,
    })
}

/// An open index: memory maps of its files plus the decoded [`Meta`]. `Send + Sync`; searches
/// may run concurrently from several threads.
pub struct Index {
    dir: PathBuf,
    meta: Meta,
    meta_len: u64,
    vectors: Mapped,
    pairs: Mapped,
    pairs_layout: PairsLayout,
    graph: Mapped,
    graph_layout: GraphLayout,
    visited: Mutex<Vec<Visited>>,
    isa: Isa,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("dir", &self.dir)
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
    normalize(&mut v).map_err(|reason| IndexError::InvalidVector { row: 0, reason })?;
    Ok(v)
}

impl Index {
    /// Opens the index in `dir` with the default checks ([`Verify::Small`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Index> {
        Self::open_with(dir, OpenOptions::default())
    }

    /// Opens the index in `dir`. Every file's header is checked (magic bytes, format version,
    /// exact length); which checksums are computed depends on `opts.verify`. The vectors and
    /// graph are memory-mapped, never read wholesale.
    pub fn open_with(dir: impl AsRef<Path>, opts: OpenOptions) -> Result<Index> {
        let dir = dir.as_ref().to_path_buf();
        // meta: small, read whole, always checksummed.
        let meta_path = dir.join(FileKind::Meta.file_name());
        let mf = File::open(&meta_path).map_err(|e| IndexError::io(&meta_path, e))?;
        let mh = read_header(&meta_path, FileKind::Meta, &mf)?;
        if mh.payload_len > 1 << 20 {
            return Err(IndexError::corrupt(
                &meta_path,
                "meta record larger than 1 MiB",
            ));
        }
        verify_payload_crc(&meta_path, &mf, &mh)?;
        let mut buf = vec![0u8; mh.payload_len as usize];
        mf.read_exact_at(&mut buf, HEADER_LEN as u64)
            .map_err(|e| IndexError::io(&meta_path, e))?;
        let meta: Meta = meta::decode(&buf, &meta_path)?;
        meta.validate(&meta_path)?;
        let count = meta.count as usize;
        let dim = meta.dim as usize;

        let vectors = open_file(&dir, FileKind::Vectors, opts.verify, false, true)?;
        let want = meta.count * meta.dim as u64 * meta.precision.bytes() as u64;
        if vectors.header.payload_len != want {
            return Err(IndexError::corrupt(
                &vectors.path,
                format!(
                    "{} bytes of vectors but meta says {count} × {dim} {}",
                    vectors.header.payload_len,
                    meta.precision.name()
                ),
            ));
        }
        let pairs = open_file(&dir, FileKind::Pairs, opts.verify, true, true)?;
        let pairs_layout = PairsLayout::parse(pairs.payload(), count, &pairs.path)?;
        let graph = open_file(&dir, FileKind::Graph, opts.verify, false, true)?;
        let graph_layout = GraphLayout::parse(graph.payload(), count, &graph.path)?;
        let idx = Index {
            dir,
            meta,
            meta_len: mh.payload_len + HEADER_LEN as u64,
            vectors,
            pairs,
            pairs_layout,
            graph,
            graph_layout,
            visited: Mutex::new(Vec::new()),
            isa: Isa::detect(),
        };
        // Checks the alignment of the zero-copy views once.
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

    /// Computes every file's CRC and compares it with its header (reads everything once).
    pub fn verify(&self) -> Result<()> {
        let meta_path = self.dir.join(FileKind::Meta.file_name());
        let mf = File::open(&meta_path).map_err(|e| IndexError::io(&meta_path, e))?;
        let mh = read_header(&meta_path, FileKind::Meta, &mf)?;
        verify_payload_crc(&meta_path, &mf, &mh)?;
        for m in [&self.vectors, &self.pairs, &self.graph] {
            verify_payload_crc(&m.path, &m.file, &m.header)?;
        }
        Ok(())
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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
            vectors: self.vectors.map.len() as u64,
            pairs: self.pairs.map.len() as u64,
            graph: self.graph.map.len() as u64,
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

    fn graph_view(&self) -> Result<GraphView<'_>> {
        GraphView::new(self.graph.payload(), self.graph_layout, &self.graph.path)
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
    /// widened into a new buffer for `f16`.
    pub fn vector(&self, row: usize) -> Result<Cow<'_, [f32]>> {
        self.check_row(row)?;
        let dim = self.dim();
        let range = row * dim..(row + 1) * dim;
        Ok(match self.meta.precision {
            Precision::F32 => Cow::Borrowed(&self.rows_f32()?[range]),
            Precision::F16 => {
                let mut out = vec![0f32; dim];
                self.rows_f16()?[range].convert_to_f32_slice(&mut out);
                Cow::Owned(out)
            }
        })
    }

    /// The pair stored at `row`.
    pub fn pair(&self, row: usize) -> Result<PairRef<'_>> {
        self.check_row(row)?;
        self.pairs_layout
            .pair(self.pairs.payload(), row, &self.pairs.path)
    }

    /// The row holding (head, tail), if any (exact string match).
    pub fn lookup(&self, head: &str, tail: &str) -> Result<Option<usize>> {
        self.pairs_layout
            .lookup(self.pairs.payload(), head, tail, &self.pairs.path)
    }

    /// Approximate top-`k` by cosine similarity through the HNSW graph; `ef` (raised to at
    /// least `k`) is the candidate-list size: larger is slower and more accurate. The query is
    /// normalised first. Results are sorted best first.
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
        let q = prepare_query(query, self.dim())?;
        let g = self.graph_view()?;
        let n = self.count();
        let mut visited = {
            let mut pool = self.visited.lock().unwrap_or_else(|p| p.into_inner());
            pool.pop()
        }
        .filter(|v| v.len() == n)
        .unwrap_or_else(|| Visited::new(n));
        let hits = match self.meta.precision {
            Precision::F32 => {
                let mut s = F32Rows {
                    data: self.rows_f32()?,
                    dim: self.dim(),
                };
                dispatch_search(self.isa, &g, &mut s, &q, k, ef, &mut visited, keep)
            }
            Precision::F16 => {
                let mut s = F16Rows {
                    data: self.rows_f16()?,
                    dim: self.dim(),
                };
                dispatch_search(self.isa, &g, &mut s, &q, k, ef, &mut visited, keep)
            }
        };
        self.visited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(visited);
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
        if k == 0 || n == 0 {
            return Ok(Vec::new());
        }
        const BLOCK: usize = 8192;
        let blocks: Vec<usize> = (0..n.div_ceil(BLOCK)).collect();
        let isa = self.isa;
        let dim = self.dim();
        let parts: Vec<Vec<Scored>> = match self.meta.precision {
            Precision::F32 => {
                let data = self.rows_f32()?;
                blocks
                    .par_iter()
                    .map(|&b| {
                        let mut s = F32Rows { data, dim };
                        let end = ((b + 1) * BLOCK).min(n);
                        dispatch_exact(isa, &mut s, &q, k, b * BLOCK, end, &keep)
                    })
                    .collect()
            }
            Precision::F16 => {
                let data = self.rows_f16()?;
                blocks
                    .par_iter()
                    .map(|&b| {
                        let mut s = F16Rows { data, dim };
                        let end = ((b + 1) * BLOCK).min(n);
                        dispatch_exact(isa, &mut s, &q, k, b * BLOCK, end, &keep)
                    })
                    .collect()
            }
        };
        let mut all: Vec<Scored> = parts.into_iter().flatten().collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.truncate(k);
        Ok(all.into_iter().map(Hit::from).collect())
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
            visited: &mut Visited,
            keep: F,
        ) -> Vec<Hit> {
            graph::search::<$kernel, S, F>(g, store, q, k, ef, visited, keep)
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
    visited: &mut Visited,
    keep: F,
) -> Vec<Hit> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only produced after detecting AVX2 and FMA.
        Isa::Avx2Fma => unsafe { search_avx2(g, store, q, k, ef, visited, keep) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx512` is only produced after detecting AVX-512F, AVX2 and FMA.
        Isa::Avx512 => unsafe { search_avx512(g, store, q, k, ef, visited, keep) },
        Isa::Portable => graph::search::<Plain, S, F>(g, store, q, k, ef, visited, keep),
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
