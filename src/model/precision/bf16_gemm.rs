//! `dst += bf16(x) · bf16(W)` with float32 accumulation on AVX512-BF16 (`vdpbf16ps`).
//!
//! `vdpbf16ps` multiplies 32 bfloat16 pairs and adds each adjacent pair of products into one
//! of 16 float32 lanes, so the kernel works on *pairs along k*: the weight matrix is packed
//! once into panels of 32 output columns, each panel a run of `k/2` blocks of 32 × 2 bfloat16
//! (two zmm registers: columns 0–15 and 16–31, each lane holding rows 2p and 2p+1); an
//! activation row is converted to bfloat16 so that its pair p is one 32-bit word, broadcast to
//! all lanes. A 12-row × 32-column tile keeps 24 accumulators in registers; k is blocked so a
//! panel's slice (16 KiB) stays in L1 while every row block streams past it.

/// Output columns per panel (two zmm registers of float32).
const NR: usize = 32;
/// Rows per register tile: 12 × 2 accumulators + 2 weight registers + 1 broadcast ≤ 32 zmm.
const MR: usize = 12;
/// k-pairs per cache block: a panel slice of 128 × 32 × 2 × 2 bytes = 16 KiB.
const KC: usize = 128;

/// Whether this CPU runs the kernel (checked at run time; the result is cached by std).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A `[k, n]` weight matrix packed for the kernel. It exists only on CPUs that run the kernel
/// ([`PackedBf16::pack`] returns `None` elsewhere), so holding one proves the kernel is safe
/// to call.
pub struct PackedBf16 {
    /// `panels × pairs × NR × 2` bfloat16 bit patterns.
    data: Vec<u16>,
    k: usize,
    n: usize,
    pairs: usize,
}

impl PackedBf16 {
    /// Packs `wt` (`[k, n]` row-major float32), rounding to bfloat16; `None` when this CPU
    /// lacks AVX512-BF16 or `wt` is not `k × n`.
    pub fn pack(wt: &[f32], k: usize, n: usize) -> Option<Self> {
        if !available() || wt.len() != k * n || k == 0 || n == 0 {
            return None;
        }
        let pairs = k.div_ceil(2);
        let panels = n.div_ceil(NR);
        let mut data = vec![0u16; panels * pairs * NR * 2];
        for panel in 0..panels {
            for p in 0..pairs {
                let block = &mut data[(panel * pairs + p) * NR * 2..][..NR * 2];
                for c in 0..NR {
                    let col = panel * NR + c;
                    if col >= n {
                        break;
                    }
                    for j in 0..2 {
                        let row = 2 * p + j;
                        if row < k {
                            block[2 * c + j] = half::bf16::from_f32(wt[row * n + col]).to_bits();
                        }
                    }
                }
            }
        }
        Some(PackedBf16 { data, k, n, pairs })
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `dst[rows, n] += bf16(x[rows, k]) · W`, float32 accumulation, single-threaded.
    ///
    /// # Panics
    /// If `x` or `dst` is shorter than `rows` rows (a caller bug, not input).
    pub fn gemm_acc(&self, x: &[f32], rows: usize, dst: &mut [f32]) {
        assert!(x.len() >= rows * self.k && dst.len() >= rows * self.n);
        if rows == 0 {
            return;
        }
        let mut a = vec![0u16; rows * self.pairs * 2];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a `PackedBf16` exists only where `available()` held, and every pointer the
        // kernels form stays inside `x`, `a`, `self.data` and `dst` (lengths asserted above).
        unsafe {
            x86::to_bf16_rows(x, rows, self.k, &mut a, self.pairs * 2);
            x86::gemm_acc(self, &a, rows, dst);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (&mut a, dst);
            unreachable!("PackedBf16 is only constructed on x86_64");
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{PackedBf16, KC, MR, NR};

    /// Converts `rows` rows of `k` float32 into bfloat16 rows of `stride` (≥ k, even) elements,
    /// the padding zeroed.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn to_bf16_rows(
        x: &[f32],
        rows: usize,
        k: usize,
        a: &mut [u16],
        stride: usize,
    ) {
        for r in 0..rows {
            let src = x.as_ptr().add(r * k);
            let dst = a.as_mut_ptr().add(r * stride);
            let mut c = 0;
            while c < stride {
                let lo = mask16(k.saturating_sub(c));
                let hi = mask16(k.saturating_sub(c + 16));
                let v = _mm512_cvtne2ps_pbh(
                    _mm512_maskz_loadu_ps(hi, src.add(c + 16)),
                    _mm512_maskz_loadu_ps(lo, src.add(c)),
                );
                let store = mask32(stride - c);
                _mm512_mask_storeu_epi16(
                    dst.add(c) as *mut i16,
                    store,
                    std::mem::transmute::<__m512bh, __m512i>(v),
                );
                c += 32;
            }
        }
    }

    fn mask16(valid: usize) -> __mmask16 {
        if valid >= 16 {
            !0
        } else {
            ((1u32 << valid) - 1) as __mmask16
        }
    }

    fn mask32(valid: usize) -> __mmask32 {
        if valid >= 32 {
            !0
        } else {
            ((1u64 << valid) - 1) as __mmask32
        }
    }

    /// The blocked loops around [`tile`].
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn gemm_acc(w: &PackedBf16, a: &[u16], rows: usize, dst: &mut [f32]) {
        let pairs = w.pairs;
        let panels = w.n.div_ceil(NR);
        let a32 = a.as_ptr() as *const u32;
        let mut p0 = 0;
        while p0 < pairs {
            let kc = KC.min(pairs - p0);
            for panel in 0..panels {
                let b = w.data.as_ptr().add((panel * pairs + p0) * NR * 2);
                let col = panel * NR;
                let m0 = mask16(w.n - col);
                let m1 = mask16(w.n.saturating_sub(col + 16));
                let mut r = 0;
                while r < rows {
                    let mr = MR.min(rows - r);
                    let ap = a32.add(r * pairs + p0);
                    let c = dst.as_mut_ptr().add(r * w.n + col);
                    macro_rules! call {
                        ($($m:literal)*) => {
                            match mr {
                                $($m => tile::<$m>(ap, pairs, b, kc, c, w.n, m0, m1),)*
                                _ => unreachable!(),
                            }
                        };
                    }
                    call!(1 2 3 4 5 6 7 8 9 10 11 12);
                    r += mr;
                }
            }
            p0 += kc;
        }
    }

    /// `C[M rows, 32 cols] += A[M, 2·kc] · B[2·kc, 32]`: A as 32-bit bfloat16 pairs (row
    /// stride `a_stride` pairs), B one packed panel slice, C float32 (row stride `c_stride`),
    /// columns masked by `m0`/`m1` at the matrix's right edge.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn tile<const M: usize>(
        a: *const u32,
        a_stride: usize,
        b: *const u16,
        kc: usize,
        c: *mut f32,
        c_stride: usize,
        m0: __mmask16,
        m1: __mmask16,
    ) {
        let mut lo = [_mm512_setzero_ps(); M];
        let mut hi = [_mm512_setzero_ps(); M];
        for i in 0..M {
            lo[i] = _mm512_maskz_loadu_ps(m0, c.add(i * c_stride));
            hi[i] = _mm512_maskz_loadu_ps(m1, c.add(i * c_stride + 16));
        }
        for p in 0..kc {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * 64) as *const _));
            let b1: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(b.add(p * 64 + 32) as *const _));
            for i in 0..M {
                let av: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*a.add(i * a_stride + p) as i32));
                lo[i] = _mm512_dpbf16_ps(lo[i], av, b0);
                hi[i] = _mm512_dpbf16_ps(hi[i], av, b1);
            }
        }
        for i in 0..M {
            _mm512_mask_storeu_ps(c.add(i * c_stride), m0, lo[i]);
            _mm512_mask_storeu_ps(c.add(i * c_stride + 16), m1, hi[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) without a random-number dependency.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Records a skip in the skip ledger (`relbert_index::record_skip`): libtest hides a
    /// passing test's standard error, so without it CI could not tell that the kernel went
    /// untested.
    fn skip(reason: &str) {
        relbert_index::record_skip(
            &relbert_index::skip_place(file!()),
            relbert_index::SkipCause::Environment,
            reason,
        );
    }

    /// The kernel equals the float64 product of the bfloat16-rounded operands (what the
    /// rounded-operand fallback computes) on shapes with ragged rows, columns and an odd k.
    #[test]
    fn kernel_matches_the_rounded_product() {
        if !available() {
            skip("this CPU has no AVX512-BF16 (the fallback path is used)");
            return;
        }
        for &(rows, k, n) in &[
            (1, 1, 1),
            (13, 7, 33),
            (25, 384, 40),
            (30, 301, 96),
            (5, 600, 17),
        ] {
            let x = values(rows * k, 1 + k as u64);
            let w = values(k * n, 2 + n as u64);
            let init = values(rows * n, 3);
            let packed = PackedBf16::pack(&w, k, n).unwrap();
            let mut got = init.clone();
            packed.gemm_acc(&x, rows, &mut got);
            let r = |v: f32| half::bf16::from_f32(v).to_f32() as f64;
            for i in 0..rows {
                for j in 0..n {
                    let want: f64 = init[i * n + j] as f64
                        + (0..k)
                            .map(|t| r(x[i * k + t]) * r(w[t * n + j]))
                            .sum::<f64>();
                    let g = got[i * n + j] as f64;
                    assert!(
                        (g - want).abs() <= 1e-5 * (k as f64).sqrt().max(1.0),
                        "{rows}x{k}x{n} at ({i},{j}): {g} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn pack_refuses_a_wrong_shape() {
        assert!(PackedBf16::pack(&[1.0; 6], 2, 4).is_none());
    }
}
