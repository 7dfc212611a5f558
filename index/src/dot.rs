//! Inner-product kernels and the row stores they read from.
//!
//! The dot product is written as 32 independent lane accumulators, which the compiler turns into
//! SSE2 code in the portable build; on x86-64 an explicit AVX-512F or AVX2/FMA kernel is
//! selected at run time (see `Isa::detect`). The search loops are generic over the kernel and marked
//! `#[inline(always)]`, and each is entered through a `#[target_feature]` wrapper, so every
//! instruction-set level gets its own copy with the kernel inlined.

use half::f16;
use half::slice::HalfFloatSliceExt;

/// Number of independent accumulator lanes in the dot-product loop.
const LANES: usize = 32;

/// A dot-product implementation.
pub(crate) trait Kernel: Copy {
    /// Inner product of two equally long slices.
    fn dot(a: &[f32], b: &[f32]) -> f32;
}

/// Portable kernel (separate multiply and add).
#[derive(Clone, Copy)]
pub(crate) struct Plain;

/// AVX2 + FMA kernel (explicit intrinsics). Only used after run-time detection, inside
/// `#[target_feature(enable = "avx2,fma")]` code.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx2;

/// AVX-512F kernel. Only used after run-time detection, inside
/// `#[target_feature(enable = "avx512f,avx2,fma")]` code.
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
}

impl Kernel for Plain {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot_body(a, b)
    }
}

#[cfg(target_arch = "x86_64")]
impl Kernel for Avx2 {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: this kernel is only selected when `Isa::detect` found AVX2 and FMA.
        unsafe { x86::dot_avx2(a, b) }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Inner product with two 16-wide FMA accumulators (384 = 12 vectors of 32 lanes).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut s0 = _mm512_setzero_ps();
        let mut s1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads): `i + width <= n` and both slices hold at least `n` values.
        while i + 32 <= n {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), s0);
            s1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
                s1,
            );
            i += 32;
        }
        while i + 16 <= n {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), s0);
            i += 16;
        }
        let mut r = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
        while i < n {
            r += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        r
    }

    /// Inner product with four 8-wide FMA accumulators.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut s0 = _mm256_setzero_ps();
        let mut s1 = _mm256_setzero_ps();
        let mut s2 = _mm256_setzero_ps();
        let mut s3 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads): `i + width <= n` and both slices hold at least `n` values.
        while i + 32 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            s1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                s1,
            );
            s2 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 16)),
                _mm256_loadu_ps(pb.add(i + 16)),
                s2,
            );
            s3 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 24)),
                _mm256_loadu_ps(pb.add(i + 24)),
                s3,
            );
            i += 32;
        }
        while i + 8 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
        let x = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        let x = _mm_add_ss(x, _mm_shuffle_ps::<1>(x, x));
        let mut r = _mm_cvtss_f32(x);
        while i < n {
            r += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        r
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
    // Pairwise reduction keeps the summation order fixed and short.
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
                let avx2 =
                    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
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
    /// Hints the CPU to start loading row `row`.
    fn prefetch(&self, row: usize);
}

/// `f32` rows.
pub(crate) struct F32Rows<'a> {
    /// Row-major data.
    pub data: &'a [f32],
    /// Row length.
    pub dim: usize,
}

/// `f16` rows, widened to `f32` through a scratch row before each product.
pub(crate) struct F16Rows<'a> {
    /// Row-major data.
    pub data: &'a [f16],
    /// Row length.
    pub dim: usize,
    /// Scratch row of length `dim`.
    pub scratch: Vec<f32>,
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
            prefetch_bytes(r.as_ptr(), 128);
        }
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
            Some(r) => {
                r.convert_to_f32_slice(&mut self.scratch);
                K::dot(q, &self.scratch)
            }
            None => f32::NEG_INFINITY,
        }
    }

    #[inline(always)]
    fn prefetch(&self, row: usize) {
        if let Some(r) = self.data.get(row * self.dim..) {
            prefetch_bytes(r.as_ptr(), 128);
        }
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

/// Scales `v` to unit L2 norm; `Err` with a reason when it has a non-finite value or norm 0.
pub(crate) fn normalize(v: &mut [f32]) -> Result<(), &'static str> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err("non-finite component");
    }
    let norm = (v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err("zero vector");
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
}
