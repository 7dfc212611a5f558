//! Inner-product kernels and the row stores they read from.
//!
//! The dot product is written as 32 independent lane accumulators, which the compiler turns into
//! SSE2 code in the portable build; on x86-64 an explicit AVX-512F or AVX2/FMA kernel is
//! selected at run time (see `Isa::detect`). The search loops are generic over the kernel and marked
//! `#[inline(always)]`, and each is entered through a `#[target_feature]` wrapper, so every
//! instruction-set level gets its own copy with the kernel inlined.

use half::f16;

/// Number of independent accumulator lanes in the dot-product loop.
const LANES: usize = 32;

/// A dot-product implementation.
pub(crate) trait Kernel: Copy {
    /// Inner product of two equally long slices.
    fn dot(a: &[f32], b: &[f32]) -> f32;
    /// Inner product of an `f32` query with an `f16` row, widened in registers: the same
    /// products and summation order as [`Kernel::dot`] on the widened row, without a pass
    /// through a scratch buffer (the rows are memory-bound, so reading half the bytes is the
    /// point of storing them in `f16`).
    fn dot_f16(a: &[f32], b: &[f16]) -> f32;
}

/// Portable kernel (separate multiply and add).
#[derive(Clone, Copy)]
pub(crate) struct Plain;

/// AVX2 + FMA kernel (explicit intrinsics). Only used after run-time detection, inside
/// `#[target_feature(enable = "avx2,fma,f16c")]` code.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx2;

/// AVX-512F kernel. Only used after run-time detection, inside
/// `#[target_feature(enable = "avx512f,avx2,fma,f16c")]` code.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Kernel for Avx512 {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: this kernel is only selected when `Isa::detect` found AVX-512F.
        unsafe { x86::dot_avx512(a, b) }
    }

    #[inline(always)]
    fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
        // SAFETY: as above.
        unsafe { x86::dot_f16_avx512(a, b) }
    }
}

impl Kernel for Plain {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot_body(a, b)
    }

    #[inline(always)]
    fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = [0f32; LANES];
        let mut buf = [0f32; LANES];
        let mut i = 0;
        while i < n {
            let w = LANES.min(n - i);
            for j in 0..w {
                buf[j] = b[i + j].to_f32();
            }
            for j in 0..w {
                acc[j] += a[i + j] * buf[j];
            }
            i += w;
        }
        reduce_lanes(&mut acc)
    }
}

#[cfg(target_arch = "x86_64")]
impl Kernel for Avx2 {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: this kernel is only selected when `Isa::detect` found AVX2 and FMA.
        unsafe { x86::dot_avx2(a, b) }
    }

    #[inline(always)]
    fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
        // SAFETY: `Isa::detect` also requires F16C for this kernel.
        unsafe { x86::dot_f16_avx2(a, b) }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The AVX-512F inner product: two 16-wide FMA accumulators (384 = 12 vectors of 32
    /// lanes). `b` is read through `load` (16 values from an index) and `at` (one value), so
    /// every storage type shares one summation order.
    ///
    /// Safety: `load(i)` is only called with `i + 16 <= n` and `at(i)` with `i < n`; the
    /// callers' closures read `b`, which holds at least `n` values.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn dot512_with(
        a: &[f32],
        n: usize,
        load: impl Fn(usize) -> __m512,
        at: impl Fn(usize) -> f32,
    ) -> f32 {
        let pa = a.as_ptr();
        let mut s0 = _mm512_setzero_ps();
        let mut s1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY (loads of `a`): `i + width <= n <= a.len()`.
        while i + 32 <= n {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), load(i), s0);
            s1 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i + 16)), load(i + 16), s1);
            i += 32;
        }
        while i + 16 <= n {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), load(i), s0);
            i += 16;
        }
        let mut r = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
        while i < n {
            r += *pa.add(i) * at(i);
            i += 1;
        }
        r
    }

    /// The AVX2/FMA inner product: four 8-wide FMA accumulators; `load` reads 8 values of `b`.
    /// Same contract as [`dot512_with`].
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn dot256_with(
        a: &[f32],
        n: usize,
        load: impl Fn(usize) -> __m256,
        at: impl Fn(usize) -> f32,
    ) -> f32 {
        let pa = a.as_ptr();
        let mut s0 = _mm256_setzero_ps();
        let mut s1 = _mm256_setzero_ps();
        let mut s2 = _mm256_setzero_ps();
        let mut s3 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY (loads of `a`): `i + width <= n <= a.len()`.
        while i + 32 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), load(i), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), load(i + 8), s1);
            s2 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 16)), load(i + 16), s2);
            s3 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 24)), load(i + 24), s3);
            i += 32;
        }
        while i + 8 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), load(i), s0);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
        let x = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        let x = _mm_add_ss(x, _mm_shuffle_ps::<1>(x, x));
        let mut r = _mm_cvtss_f32(x);
        while i < n {
            r += *pa.add(i) * at(i);
            i += 1;
        }
        r
    }

    /// Inner product of two `f32` slices (AVX-512F).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let pb = b.as_ptr();
        // SAFETY: `dot512_with` keeps every index below `n <= b.len()`.
        dot512_with(
            a,
            n,
            |i| unsafe { _mm512_loadu_ps(pb.add(i)) },
            |i| unsafe { *pb.add(i) },
        )
    }

    /// Inner product of `f32` with `f16` widened in registers (16 values per `vcvtph2ps`).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn dot_f16_avx512(a: &[f32], b: &[half::f16]) -> f32 {
        let n = a.len().min(b.len());
        let pb = b.as_ptr() as *const u16;
        // SAFETY: `dot512_with` keeps every index below `n <= b.len()`.
        dot512_with(
            a,
            n,
            |i| unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(pb.add(i) as *const __m256i)) },
            |i| unsafe { half::f16::from_bits(*pb.add(i)).to_f32() },
        )
    }

    /// Inner product of two `f32` slices (AVX2 + FMA).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let pb = b.as_ptr();
        // SAFETY: `dot256_with` keeps every index below `n <= b.len()`.
        dot256_with(
            a,
            n,
            |i| unsafe { _mm256_loadu_ps(pb.add(i)) },
            |i| unsafe { *pb.add(i) },
        )
    }

    /// Inner product of `f32` with `f16` widened in registers (8 values per `vcvtph2ps`, F16C).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(super) unsafe fn dot_f16_avx2(a: &[f32], b: &[half::f16]) -> f32 {
        let n = a.len().min(b.len());
        let pb = b.as_ptr() as *const u16;
        // SAFETY: `dot256_with` keeps every index below `n <= b.len()`.
        dot256_with(
            a,
            n,
            |i| unsafe { _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i) as *const __m128i)) },
            |i| unsafe { half::f16::from_bits(*pb.add(i)).to_f32() },
        )
    }
}

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    for (i, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[i] += x * y;
    }
    reduce_lanes(&mut acc)
}

/// Pairwise reduction of the lane accumulators: keeps the summation order fixed and short.
#[inline(always)]
fn reduce_lanes(acc: &mut [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0]
}

/// Instruction-set level chosen at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// Baseline (SSE2 on x86-64, whatever the target has elsewhere).
    Portable,
    /// x86-64 with AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// x86-64 with AVX-512F (and AVX2/FMA, which every AVX-512 CPU has).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// Detects the best supported level. Setting the environment variable `RELBERT_INDEX_ISA`
    /// to `portable` or `avx2` caps the level, for benchmarking the kernels against each other.
    pub(crate) fn detect() -> Isa {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            let cap = std::env::var("RELBERT_INDEX_ISA").unwrap_or_default();
            #[cfg(target_arch = "x86_64")]
            {
                // F16C (the `f16` rows' widening) came with or before AVX2 on every x86 CPU.
                let avx2 = std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                    && std::is_x86_feature_detected!("f16c");
                let avx512 = avx2 && std::is_x86_feature_detected!("avx512f");
                if avx512 && cap != "portable" && cap != "avx2" {
                    return Isa::Avx512;
                }
                if avx2 && cap != "portable" {
                    return Isa::Avx2Fma;
                }
            }
            let _ = cap;
            Isa::Portable
        })
    }
}

/// Row storage the search reads from: row-major `count × dim` values.
pub(crate) trait RowStore {
    /// Number of rows.
    fn rows(&self) -> usize;
    /// Inner product of `q` with row `row` (caller guarantees `row < rows()`).
    fn dot<K: Kernel>(&mut self, q: &[f32], row: usize) -> f32;
    /// Hints the CPU to start loading row `row`, all of it: a 768-d `f16` row spans 24 cache
    /// lines, each a miss on an index larger than the caches. Against prefetching its first
    /// two lines only, the 148k default index searched 6.7% more queries per second and
    /// built its graph 4.5% faster (`benchmarks/index/prefetch_full_row.md`).
    fn prefetch(&self, row: usize);
    /// Whether every value of row `row` is zero (a row past the end is not). Asked only of
    /// rows that scored exactly 0, so it costs nothing in an ordinary search.
    fn is_zero(&self, row: usize) -> bool;
}

/// `f32` rows.
#[derive(Clone, Copy)]
pub(crate) struct F32Rows<'a> {
    /// Row-major data.
    pub data: &'a [f32],
    /// Row length.
    pub dim: usize,
}

/// `f16` rows, widened to `f32` inside the kernel ([`Kernel::dot_f16`]).
#[derive(Clone, Copy)]
pub(crate) struct F16Rows<'a> {
    /// Row-major data.
    pub data: &'a [f16],
    /// Row length.
    pub dim: usize,
}

/// Hints the CPU to load the cache line holding `p`.
#[inline(always)]
pub(crate) fn prefetch_line<T>(p: *const T) {
    prefetch_bytes(p, 1);
}

/// Hints the CPU to load `bytes` bytes from `p` into the cache.
#[inline(always)]
fn prefetch_bytes<T>(p: *const T, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut off = 0;
        while off < bytes {
            // SAFETY: prefetching is a hint; it never faults, whatever the address.
            unsafe {
                std::arch::x86_64::_mm_prefetch(
                    (p as *const i8).wrapping_add(off),
                    std::arch::x86_64::_MM_HINT_T0,
                );
            }
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes);
}

impl RowStore for F32Rows<'_> {
    #[inline(always)]
    fn rows(&self) -> usize {
        self.data.len() / self.dim
    }

    #[inline(always)]
    fn dot<K: Kernel>(&mut self, q: &[f32], row: usize) -> f32 {
        let start = row * self.dim;
        match self.data.get(start..start + self.dim) {
            Some(r) => K::dot(q, r),
            None => f32::NEG_INFINITY,
        }
    }

    #[inline(always)]
    fn prefetch(&self, row: usize) {
        if let Some(r) = self.data.get(row * self.dim..) {
            prefetch_bytes(r.as_ptr(), 4 * self.dim);
        }
    }

    fn is_zero(&self, row: usize) -> bool {
        let start = row * self.dim;
        self.data
            .get(start..start + self.dim)
            .is_some_and(|r| r.iter().all(|&x| x == 0.0))
    }
}

impl RowStore for F16Rows<'_> {
    #[inline(always)]
    fn rows(&self) -> usize {
        self.data.len() / self.dim
    }

    #[inline(always)]
    fn dot<K: Kernel>(&mut self, q: &[f32], row: usize) -> f32 {
        let start = row * self.dim;
        match self.data.get(start..start + self.dim) {
            Some(r) => K::dot_f16(q, r),
            None => f32::NEG_INFINITY,
        }
    }

    #[inline(always)]
    fn prefetch(&self, row: usize) {
        if let Some(r) = self.data.get(row * self.dim..) {
            prefetch_bytes(r.as_ptr(), 2 * self.dim);
        }
    }

    fn is_zero(&self, row: usize) -> bool {
        let start = row * self.dim;
        self.data
            .get(start..start + self.dim)
            .is_some_and(|r| r.iter().all(|&x| x.to_f32() == 0.0))
    }
}

/// Dot product with run-time dispatch (for callers outside the search loops).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: detected at run time.
        Isa::Avx2Fma => unsafe { x86::dot_avx2(a, b) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: detected at run time.
        Isa::Avx512 => unsafe { x86::dot_avx512(a, b) },
        Isa::Portable => Plain::dot(a, b),
    }
}

/// How far from 1 the norm of a row this function scaled may be: each `f32` component is
/// within half an ULP (a relative 2^-24) of the exact unit vector's, and so the norm is
/// within 2^-24 of 1 (and the `f64` sum adds far less); 2^-23 leaves a margin. A row
/// rounded to `f16` and widened again is off by up to 2^-11, and is scaled.
const UNIT_NORM_TOLERANCE: f64 = f32::EPSILON as f64;

/// Scales `v` to unit L2 norm; `Err` with a reason when it has a non-finite value or norm 0.
/// A row already of unit norm within the `f32` rounding of that scaling
/// ([`UNIT_NORM_TOLERANCE`]) is left as it is: scaling it again in `f64` and rounding back
/// may move a component by an ULP, so a row copied from an index (by a rebuild, add or
/// remove) would drift on every run (found by a review: 28 of 2,000 rows changed).
pub(crate) fn normalize(v: &mut [f32]) -> Result<(), &'static str> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err("non-finite component");
    }
    let norm = (v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err("zero vector");
    }
    if (norm - 1.0).abs() <= UNIT_NORM_TOLERANCE {
        return Ok(());
    }
    let inv = 1.0 / norm;
    for x in v.iter_mut() {
        *x = ((*x as f64) * inv) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by a review: a row `normalize` had scaled, scaled again, moved by an ULP in a
    /// component now and then, so every rebuild, add or remove changed rows it only copied.
    /// Its output is now its fixed point; a row not of unit norm is still scaled.
    #[test]
    fn a_normalised_row_is_left_as_it_is() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let mut moved = 0;
        for dim in [3usize, 64, 384, 768] {
            for _ in 0..500 {
                let mut v: Vec<f32> = (0..dim).map(|_| next()).collect();
                normalize(&mut v).unwrap();
                let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
                assert!(
                    (norm - 1.0).abs() <= UNIT_NORM_TOLERANCE,
                    "dim {dim}: {norm}"
                );
                let mut again = v.clone();
                normalize(&mut again).unwrap();
                moved += usize::from(
                    again
                        .iter()
                        .map(|x| x.to_bits())
                        .ne(v.iter().map(|x| x.to_bits())),
                );
            }
        }
        assert_eq!(moved, 0, "rows changed by normalising them again");
        // Just outside the tolerance, and as an `f16` row widened: scaled to unit norm.
        for scale in [1.0 + 4.0 * f64::from(f32::EPSILON), 1.0 - 4e-4] {
            let mut v = vec![(scale / 2.0) as f32; 4];
            normalize(&mut v).unwrap();
            assert_eq!(v, [0.5; 4], "scale {scale}");
        }
    }

    #[test]
    fn kernels_agree() {
        for n in [1usize, 7, 31, 32, 33, 100, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((Plain::dot(&a, &b) as f64 - want).abs() < 1e-4);
            assert!((dot(&a, &b) as f64 - want).abs() < 1e-4);
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    assert!((Avx2::dot(&a, &b) as f64 - want).abs() < 1e-4);
                }
                if std::is_x86_feature_detected!("avx512f") {
                    assert!((Avx512::dot(&a, &b) as f64 - want).abs() < 1e-4);
                }
            }
        }
    }

    /// Each kernel's `f16` product equals its `f32` product on the widened row, bit for bit
    /// (same products, same summation order), for lengths that hit every tail.
    #[test]
    fn f16_kernels_match_widened_f32() {
        for n in [1usize, 7, 8, 15, 16, 17, 31, 32, 33, 100, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let h: Vec<f16> = (0..n)
                .map(|i| f16::from_f32((i as f32 * 0.11).cos()))
                .collect();
            let w: Vec<f32> = h.iter().map(|x| x.to_f32()).collect();
            assert_eq!(
                Plain::dot_f16(&a, &h).to_bits(),
                Plain::dot(&a, &w).to_bits(),
                "n {n}"
            );
            #[cfg(target_arch = "x86_64")]
            {
                if Isa::detect() != Isa::Portable {
                    assert_eq!(Avx2::dot_f16(&a, &h).to_bits(), Avx2::dot(&a, &w).to_bits());
                }
                if Isa::detect() == Isa::Avx512 {
                    assert_eq!(
                        Avx512::dot_f16(&a, &h).to_bits(),
                        Avx512::dot(&a, &w).to_bits()
                    );
                }
            }
        }
    }
}
