//! The CPU inference path: the same transformer as [`crate::encoder`], computed on plain `f32`
//! buffers with direct single-threaded GEMM calls and fused element-wise kernels.
//!
//! Why by hand: profiling `relbert embed` on candle's op-by-op CPU path showed about half the
//! time outside matrix multiplication — scalar `erf` in GELU, thread-pool barriers around every
//! small element-wise op, temporaries for each bias add and residual. Here (1) sequences are
//! *packed* (no padding rows; attention runs per sequence on its real length), (2) bias and
//! residual are folded into the GEMM's destination, (3) GELU, softmax and LayerNorm are fused
//! loops compiled for AVX2/AVX-512 at run time (pulp dispatch), (4) parallelism is across
//! batches (one thread per batch, no barriers), not inside each small operation, and (5) the
//! last layer computes only the rows that are pooled when they are few (mask pooling: one per
//! prompt), which is exact and saves most of a layer. Training uses
//! the differentiable candle path; both are parity-tested against the same goldens.
//!
//! At a reduced [`Dtype`] the dense layers' operands are rounded to that format
//! ([`crate::precision`]); on CPUs with AVX512-BF16 the `bf16` layers run its packed kernel.

use gemm::{gemm, Parallelism};
use pulp::{Arch, Simd, WithSimd};

use crate::error::{Error, Result};
use crate::precision::bf16_gemm::PackedBf16;
use crate::precision::Dtype;

/// A linear layer with its weight pre-transposed to `[in, out]` row-major.
struct Dense {
    /// The weight rounded to `dtype` (empty when `packed` holds it instead).
    wt: Vec<f32>,
    /// The bfloat16 kernel's copy of the weight, on CPUs that have the kernel.
    packed: Option<PackedBf16>,
    dtype: Dtype,
    bias: Vec<f32>,
    inp: usize,
    out: usize,
}

impl Dense {
    fn from(
        weight: &candle_core::Tensor,
        bias: &candle_core::Tensor,
        dtype: Dtype,
    ) -> Result<Self> {
        let (out, inp) = weight.dims2()?;
        let mut wt = weight.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let packed = match dtype {
            Dtype::Bf16 => PackedBf16::pack(&wt, inp, out),
            Dtype::F32 | Dtype::F16 => None,
        };
        if packed.is_some() {
            wt = Vec::new();
        } else {
            dtype.round_slice(&mut wt);
        }
        Ok(Dense {
            wt,
            packed,
            dtype,
            bias: bias.to_vec1::<f32>()?,
            inp,
            out,
        })
    }

    /// `dst[rows, out] = (accumulate ? dst : 0) + bias + x[rows, in] · W`.
    fn apply(&self, x: &[f32], rows: usize, dst: &mut [f32], accumulate: bool) {
        let (k, n) = (self.inp, self.out);
        for r in dst[..rows * n].chunks_exact_mut(n) {
            if accumulate {
                r.iter_mut().zip(&self.bias).for_each(|(d, b)| *d += b);
            } else {
                r.copy_from_slice(&self.bias);
            }
        }
        if let Some(p) = &self.packed {
            p.gemm_acc(x, rows, dst);
            return;
        }
        let rounded;
        let x = if self.dtype == Dtype::F32 {
            x
        } else {
            let mut r = x[..rows * k].to_vec();
            self.dtype.round_slice(&mut r);
            rounded = r;
            &rounded
        };
        // SAFETY: all slices hold at least rows*k / k*n / rows*n elements (checked below),
        // and the strides describe contiguous row-major matrices inside them.
        assert!(x.len() >= rows * k && self.wt.len() == k * n && dst.len() >= rows * n);
        unsafe {
            gemm(
                rows,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.as_ptr(),
                1,
                k as isize,
                self.wt.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    }
}

struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

struct Layer {
    qkv: Dense,
    attn_out: Dense,
    attn_norm: Norm,
    intermediate: Dense,
    output: Dense,
    out_norm: Norm,
}

impl Layer {
    /// The rest of the layer after self-attention, on `rows` rows: `x` (the residual stream)
    /// becomes the layer's output, given the attention context `ctx`; `ff` is scratch.
    fn after_attention(&self, ctx: &[f32], rows: usize, x: &mut [f32], ff: &mut [f32], arch: Arch) {
        let (h, inter) = (self.attn_out.out, self.intermediate.out);
        // Residual connections accumulate straight into `x`, so no copies are needed.
        self.attn_out.apply(ctx, rows, x, true);
        arch.dispatch(LayerNormRows {
            x: &mut x[..rows * h],
            width: h,
            norm: &self.attn_norm,
        });
        self.intermediate.apply(x, rows, ff, false);
        arch.dispatch(Gelu(&mut ff[..rows * inter]));
        self.output.apply(ff, rows, x, true);
        arch.dispatch(LayerNormRows {
            x: &mut x[..rows * h],
            width: h,
            norm: &self.out_norm,
        });
    }
}

/// Encoder weights laid out for the CPU inference path.
pub struct CpuModel {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    vocab: usize,
    max_positions: usize,
    dtype: Dtype,
}

/// Tensors in the order [`CpuModel::new`] reads them for one layer.
pub struct LayerTensors<'a> {
    /// Query, key and value (weight, bias).
    pub qkv: [(&'a candle_core::Tensor, &'a candle_core::Tensor); 3],
    /// Attention output projection.
    pub attn_out: (&'a candle_core::Tensor, &'a candle_core::Tensor),
    /// Its LayerNorm (weight, bias).
    pub attn_norm: (&'a candle_core::Tensor, &'a candle_core::Tensor),
    /// Feed-forward in.
    pub intermediate: (&'a candle_core::Tensor, &'a candle_core::Tensor),
    /// Feed-forward out.
    pub output: (&'a candle_core::Tensor, &'a candle_core::Tensor),
    /// Its LayerNorm.
    pub out_norm: (&'a candle_core::Tensor, &'a candle_core::Tensor),
}

fn norm(t: (&candle_core::Tensor, &candle_core::Tensor), eps: f64) -> Result<Norm> {
    Ok(Norm {
        weight: t.0.to_vec1::<f32>()?,
        bias: t.1.to_vec1::<f32>()?,
        eps: eps as f32,
    })
}

impl CpuModel {
    /// Copies the encoder's parameters into the CPU layout (fusing Q, K and V), the dense
    /// layers at `dtype`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        word: &candle_core::Tensor,
        position: &candle_core::Tensor,
        token_type_row: &candle_core::Tensor,
        embed_norm: (&candle_core::Tensor, &candle_core::Tensor),
        layers: &[LayerTensors<'_>],
        heads: usize,
        eps: f64,
        dtype: Dtype,
    ) -> Result<Self> {
        let (vocab, hidden) = word.dims2()?;
        let max_positions = position.dims2()?.0;
        let mut out = Vec::with_capacity(layers.len());
        for l in layers {
            let w = candle_core::Tensor::cat(&[l.qkv[0].0, l.qkv[1].0, l.qkv[2].0], 0)?;
            let b = candle_core::Tensor::cat(&[l.qkv[0].1, l.qkv[1].1, l.qkv[2].1], 0)?;
            out.push(Layer {
                qkv: Dense::from(&w, &b, dtype)?,
                attn_out: Dense::from(l.attn_out.0, l.attn_out.1, dtype)?,
                attn_norm: norm(l.attn_norm, eps)?,
                intermediate: Dense::from(l.intermediate.0, l.intermediate.1, dtype)?,
                output: Dense::from(l.output.0, l.output.1, dtype)?,
                out_norm: norm(l.out_norm, eps)?,
            });
        }
        Ok(CpuModel {
            word: word.flatten_all()?.to_vec1::<f32>()?,
            position: position.flatten_all()?.to_vec1::<f32>()?,
            token_type: token_type_row.to_vec1::<f32>()?,
            embed_norm: norm(embed_norm, eps)?,
            layers: out,
            hidden,
            heads,
            vocab,
            max_positions,
            dtype,
        })
    }

    /// The number format of the dense layers.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Encodes packed sequences (`seqs[i]` token ids, `positions[i]` their position ids) and
    /// returns, per sequence, the sum of the last hidden states where `pool[i][t]` is set.
    /// Single-threaded; callers parallelise across batches.
    ///
    /// A token id past the word-embedding table or a position past the position table is an
    /// error: the loader refuses tokenizers and position tables that could give one, and
    /// reading another row instead (as a clamp did) gives a wrong vector without a word.
    pub fn forward_pooled(
        &self,
        seqs: &[&[u32]],
        positions: &[Vec<u32>],
        pool: &[Vec<bool>],
    ) -> Result<Vec<Vec<f32>>> {
        let h = self.hidden;
        let nh = self.heads;
        let dh = h / nh;
        let rows: usize = seqs.iter().map(|s| s.len()).sum();
        let offsets: Vec<usize> = seqs
            .iter()
            .scan(0, |o, s| {
                let start = *o;
                *o += s.len();
                Some(start)
            })
            .collect();
        let arch = Arch::new();

        let mut x = vec![0f32; rows * h];
        for (s, seq) in seqs.iter().enumerate() {
            for (t, &id) in seq.iter().enumerate() {
                let row = &mut x[(offsets[s] + t) * h..(offsets[s] + t + 1) * h];
                let id = id as usize;
                if id >= self.vocab {
                    return Err(Error::Internal(format!(
                        "token id {id} is past the word-embedding table's {} rows",
                        self.vocab
                    )));
                }
                let p = match positions.get(s).and_then(|p| p.get(t)) {
                    Some(&p) if (p as usize) < self.max_positions => p as usize,
                    Some(&p) => {
                        return Err(Error::Internal(format!(
                            "position {p} is past the position table's {} rows",
                            self.max_positions
                        )))
                    }
                    None => {
                        return Err(Error::Internal(format!(
                            "no position for token {t} of sequence {s}"
                        )))
                    }
                };
                let w = &self.word[id * h..(id + 1) * h];
                let pe = &self.position[p * h..(p + 1) * h];
                for i in 0..h {
                    row[i] = w[i] + pe[i] + self.token_type[i];
                }
            }
        }
        arch.dispatch(LayerNormRows {
            x: &mut x,
            width: h,
            norm: &self.embed_norm,
        });

        let inter = self.layers.first().map(|l| l.intermediate.out).unwrap_or(0);
        let mut qkv = vec![0f32; rows * 3 * h];
        let mut ctx = vec![0f32; rows * h];
        let mut ff = vec![0f32; rows * inter];
        let max_len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut scores = vec![0f32; max_len * max_len];
        let scale = 1.0 / (dh as f32).sqrt();

        // Only the pooled rows of the last layer's output are read. When they are a few of
        // the rows (mask pooling: one per prompt), that layer computes keys and values for
        // every row but queries, attention output and feed-forward only for those rows: an
        // exact shortcut (each row's result is the same computation), not an approximation.
        let selected: Vec<(usize, usize)> = seqs
            .iter()
            .enumerate()
            .flat_map(|(s, seq)| (0..seq.len()).map(move |t| (s, t)))
            .filter(|&(s, t)| pool[s].get(t).copied().unwrap_or(false))
            .collect();
        let prune = rows > 0 && !self.layers.is_empty() && selected.len() * 2 <= rows;
        let full_layers = if prune {
            self.layers.len() - 1
        } else {
            self.layers.len()
        };

        for layer in &self.layers[..full_layers] {
            layer.qkv.apply(&x, rows, &mut qkv, false);
            for (s, seq) in seqs.iter().enumerate() {
                let (off, len) = (offsets[s], seq.len());
                for head in 0..nh {
                    attention_head(
                        &qkv,
                        &mut ctx,
                        &mut scores,
                        off,
                        len,
                        head,
                        dh,
                        h,
                        scale,
                        arch,
                    );
                }
            }
            layer.after_attention(&ctx, rows, &mut x, &mut ff, arch);
        }

        // The last layer's output rows: all of `x`, or the selected rows alone when pruned.
        let last = if prune {
            let layer = &self.layers[full_layers];
            let ns = selected.len();
            layer.qkv.apply(&x, rows, &mut qkv, false);
            for (j, &(s, t)) in selected.iter().enumerate() {
                for head in 0..nh {
                    attention_row(
                        &qkv,
                        &mut ctx[j * h + head * dh..j * h + (head + 1) * dh],
                        &mut scores[..seqs[s].len()],
                        offsets[s],
                        t,
                        head * dh,
                        h,
                        scale,
                        arch,
                    );
                }
            }
            // The selected rows' residual stream, gathered; the rest of the layer runs on it.
            let mut xs = vec![0f32; ns * h];
            for (j, &(s, t)) in selected.iter().enumerate() {
                let r = offsets[s] + t;
                xs[j * h..(j + 1) * h].copy_from_slice(&x[r * h..(r + 1) * h]);
            }
            layer.after_attention(&ctx, ns, &mut xs, &mut ff, arch);
            xs
        } else {
            x
        };
        let mut pooled = vec![vec![0f32; h]; seqs.len()];
        for (j, &(s, t)) in selected.iter().enumerate() {
            let r = if prune { j } else { offsets[s] + t };
            let row = &last[r * h..(r + 1) * h];
            pooled[s].iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
        Ok(pooled)
    }
}

/// One query row of one head: `out = softmax(q_t kᵀ · scale) v` over the `scores.len()` rows of
/// the packed sequence starting at row `off`, `q_t` being its row `t`; `col` is the head's
/// first column. For the pruned last layer, where a matrix product per row would cost more in
/// set-up than the few multiply-adds it does.
#[allow(clippy::too_many_arguments)]
fn attention_row(
    qkv: &[f32],
    out: &mut [f32],
    scores: &mut [f32],
    off: usize,
    t: usize,
    col: usize,
    h: usize,
    scale: f32,
    arch: Arch,
) {
    let w3 = 3 * h;
    let dh = out.len();
    let q = &qkv[(off + t) * w3 + col..][..dh];
    for (j, sc) in scores.iter_mut().enumerate() {
        let k = &qkv[(off + j) * w3 + h + col..][..dh];
        *sc = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
    }
    let len = scores.len();
    arch.dispatch(SoftmaxRows {
        x: scores,
        width: len,
    });
    out.fill(0.0);
    for (j, &p) in scores.iter().enumerate() {
        let v = &qkv[(off + j) * w3 + 2 * h + col..][..dh];
        out.iter_mut().zip(v).for_each(|(o, &x)| *o += p * x);
    }
}

/// One head of self-attention for one packed sequence: `ctx = softmax(q kᵀ · scale) v`.
#[allow(clippy::too_many_arguments)]
fn attention_head(
    qkv: &[f32],
    ctx: &mut [f32],
    scores: &mut [f32],
    off: usize,
    len: usize,
    head: usize,
    dh: usize,
    h: usize,
    scale: f32,
    arch: Arch,
) {
    let w3 = 3 * h as isize;
    let q = off * 3 * h + head * dh;
    let k = q + h;
    let v = q + 2 * h;
    let c = off * h + head * dh;
    assert!(qkv.len() >= (off + len) * 3 * h && ctx.len() >= (off + len) * h);
    assert!(scores.len() >= len * len);
    // SAFETY: every index touched is inside the sequence's rows, which the asserts bound.
    unsafe {
        gemm(
            len,
            len,
            dh,
            scores.as_mut_ptr(),
            1,
            len as isize,
            false,
            qkv.as_ptr().add(q),
            1,
            w3,
            qkv.as_ptr().add(k),
            w3,
            1,
            0.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
    arch.dispatch(SoftmaxRows {
        x: &mut scores[..len * len],
        width: len,
    });
    unsafe {
        gemm(
            len,
            dh,
            len,
            ctx.as_mut_ptr().add(c),
            1,
            h as isize,
            false,
            scores.as_ptr(),
            1,
            len as isize,
            qkv.as_ptr().add(v),
            1,
            w3,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// e^x for x ≤ 0-ish inputs of softmax and erf, accurate to ~2 ulp, written branch-free so it
/// vectorises: 2^k · p(r) with a degree-6 polynomial on |r| ≤ ln2/2.
#[inline(always)]
pub(crate) fn exp_approx(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E).round();
    let r = x - k * 0.693_145_75 - k * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^k built from float adds and integer ops, which vectorise: k + 127 ∈ [1, 254] plus
    // 1.5·2²³ lies in [2²³, 2²⁴), where the float's low mantissa bits are that integer. A
    // saturating `(k as i32)` cast here compiled to scalar fix-ups and made this function a
    // tenth of `relbert embed`'s profile; the result is bit-identical (checked over every f32
    // in [-100, 100]).
    const SHIFT: f32 = 12_582_912.0;
    let scale = f32::from_bits(
        ((k + 127.0) + SHIFT)
            .to_bits()
            .wrapping_sub(SHIFT.to_bits())
            << 23,
    );
    p * scale
}

/// erf(x) by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), branch-free.
#[inline(always)]
pub(crate) fn erf_approx(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = 1.0
        - t * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))))
            * exp_approx(-a * a);
    y.copysign(x)
}

/// Exact (erf) GELU, as BERT's `hidden_act = "gelu"`.
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_approx(x * std::f32::consts::FRAC_1_SQRT_2))
}

struct Gelu<'a>(&'a mut [f32]);

impl WithSimd for Gelu<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        for v in self.0.iter_mut() {
            *v = gelu(*v);
        }
    }
}

/// In-place softmax of each `width`-wide row of `x` (pulp dispatch; shared with training).
pub(crate) struct SoftmaxRows<'a> {
    /// Row-major scores, replaced by probabilities.
    pub(crate) x: &'a mut [f32],
    /// Row length.
    pub(crate) width: usize,
}

impl WithSimd for SoftmaxRows<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        for row in self.x.chunks_exact_mut(self.width) {
            let max = lane_max(row);
            // The exponentials get a loop of their own so it vectorises; the sum stays a
            // left-to-right fold, the order the training path's gradients were checked with.
            for v in row.iter_mut() {
                *v = exp_approx(*v - max);
            }
            let sum = row.iter().fold(0.0f32, |s, &v| s + v);
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// Maximum of a slice (exact in any order, so the lanes change nothing but speed).
#[inline(always)]
fn lane_max(xs: &[f32]) -> f32 {
    lanes16(xs, f32::NEG_INFINITY, f32::max)
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// Folds a slice into 16 independent lanes (element `i` into lane `i % 16`), so the loop
/// vectorises without reassociating any lane. Written over fixed 16-wide chunks: an
/// `enumerate` with `i % 16` indexing computed the same lanes but compiled to scalar code
/// (LayerNorm was 12% of `relbert embed`'s profile that way).
#[inline(always)]
fn lanes16(xs: &[f32], init: f32, step: impl Fn(f32, f32) -> f32) -> [f32; 16] {
    let mut acc = [init; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for j in 0..16 {
            acc[j] = step(acc[j], c[j]);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a = step(*a, v);
    }
    acc
}

struct LayerNormRows<'a> {
    x: &'a mut [f32],
    width: usize,
    norm: &'a Norm,
}

/// Sum of `f(x)` over a slice, lane by lane (see [`lanes16`]).
#[inline(always)]
fn sum16(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    lanes16(xs, 0.0, |a, v| a + f(v)).iter().sum()
}

impl WithSimd for LayerNormRows<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let n = self.width as f32;
        for row in self.x.chunks_exact_mut(self.width) {
            let mean = sum16(row, |v| v) / n;
            let var = sum16(row, |v| (v - mean) * (v - mean)) / n;
            let inv = 1.0 / (var + self.norm.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.norm.weight).zip(&self.norm.bias) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_are_accurate() {
        for i in -600..=600 {
            let x = i as f32 / 100.0;
            let e = exp_approx(x.min(0.0) - 5.0);
            let want = ((x.min(0.0) - 5.0) as f64).exp();
            assert!(((e as f64 - want) / want).abs() < 1e-6, "exp({x})");
            let want = libm_erf(x as f64);
            assert!((erf_approx(x) as f64 - want).abs() < 3e-7, "erf({x})");
        }
        // The whole normal range, where the exponent trick must hold for every k.
        for i in -8000..=8790 {
            let x = i as f32 / 100.0 + 0.003;
            let want = (x as f64).exp();
            let got = exp_approx(x) as f64;
            assert!(
                ((got - want) / want).abs() < 2e-6,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp_approx(0.0), 1.0);
        assert!(exp_approx(200.0).is_finite() && exp_approx(-200.0) >= 0.0);
    }

    /// Audit (s17, D2 and D5): a token id past the word-embedding table, or a position past
    /// the position table, was clamped to the last row, so different words gave the same
    /// vector without a word. Now each is an error, and the rows inside are still read.
    #[test]
    fn ids_and_positions_past_their_tables_are_errors() {
        use candle_core::{Device, Tensor};
        let dev = Device::Cpu;
        let word = Tensor::arange(0f32, 12.0, &dev)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let position = Tensor::zeros((2, 4), candle_core::DType::F32, &dev).unwrap();
        let token_type = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        let (gamma, beta) = (
            Tensor::ones(4, candle_core::DType::F32, &dev).unwrap(),
            Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap(),
        );
        let model = CpuModel::new(
            &word,
            &position,
            &token_type,
            (&gamma, &beta),
            &[],
            1,
            1e-12,
            Dtype::F32,
        )
        .unwrap();
        let run = |ids: &[u32], pos: &[u32]| {
            model.forward_pooled(&[ids], &[pos.to_vec()], &[vec![true; ids.len()]])
        };
        assert_eq!(run(&[2, 0], &[0, 1]).unwrap().len(), 1);
        let err = run(&[3], &[0]).unwrap_err().to_string();
        assert!(
            err.contains("token id 3") && err.contains("3 rows"),
            "{err}"
        );
        let err = run(&[0, 1], &[0, 2]).unwrap_err().to_string();
        assert!(
            err.contains("position 2") && err.contains("2 rows"),
            "{err}"
        );
        assert!(run(&[0, 1], &[0]).is_err());
    }

    /// erf by its Taylor series in f64 (exact enough for |x| ≤ 4), for the test only.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 4.0 {
            return x.signum(); // erfc(4) = 1.5e-8, below the tolerance
        }
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-30 || n < 5.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
            if n > 400.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
