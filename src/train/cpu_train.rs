//! The CPU training path: a BERT/RoBERTa forward pass that keeps its activations, a
//! hand-written backward pass, dropout, and AdamW, all on plain `f32` buffers.
//!
//! Why by hand: candle's autograd on the CPU spent ~25 s per reference step (408 prompts)
//! building and walking a graph of thousands of small ops, each with its own temporaries and
//! thread-pool barriers. The same maths as direct GEMM calls (the `gemm` crate, one thread per
//! chunk of prompts, no barriers) is several times faster. The candle path
//! ([`crate::encoder::Mode::Train`]) stays: it serves CUDA, and the tests check this module's
//! gradients against it.
//!
//! Layout: sequences are packed (no padding rows); attention runs per sequence and head on
//! the real length. Parameters keep their Hugging Face names and shapes (`weight` is
//! `[out, in]`), so syncing them back into the candle encoder is a copy. Dropout (the
//! model's `hidden_dropout_prob` after the embeddings and after each dense output that feeds a
//! residual, `attention_probs_dropout_prob` on attention probabilities, as Hugging Face
//! applies them in training mode) draws its masks from a counter-based hash of (step seed,
//! chunk, site, element), so the backward pass regenerates the same masks instead of storing
//! them, and results do not depend on how chunks are spread over threads.
//!
//! The loss itself is not here: [`CpuTrainModel::forward`] returns the pooled relation vectors,
//! the caller computes the loss on them with candle (small tensors) and hands the loss's
//! gradient with respect to those vectors to `CpuTrainModel::backward`.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use gemm::{gemm, Parallelism};
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

use crate::cpu_kernels::{erf_approx, exp_approx, gelu, SoftmaxRows};
use crate::error::{Error, Result};

/// Shapes of the encoder.
#[derive(Debug, Clone, Copy)]
struct Dims {
    h: usize,
    nh: usize,
    dh: usize,
    inter: usize,
    vocab: usize,
    max_pos: usize,
    eps: f32,
}

/// Indices into the parameter list for one layer.
#[derive(Debug, Clone, Copy)]
struct LayerIx {
    q: (usize, usize),
    k: (usize, usize),
    v: (usize, usize),
    o: (usize, usize),
    ln1: (usize, usize),
    up: (usize, usize),
    down: (usize, usize),
    ln2: (usize, usize),
}

/// Dropout probabilities of a training run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// After the embeddings and after each dense output that feeds a residual.
    pub hidden: f32,
    /// On attention probabilities.
    pub attention: f32,
}

impl Dropout {
    /// No dropout.
    pub const NONE: Dropout = Dropout {
        hidden: 0.0,
        attention: 0.0,
    };
}

/// One training example: token ids, position ids and which tokens are pooled.
pub struct Prompt<'a> {
    /// Token ids.
    pub ids: &'a [u32],
    /// Position ids (architecture-specific numbering).
    pub positions: Vec<u32>,
    /// Per token: is it summed into the relation vector?
    pub pool: Vec<bool>,
}

/// Activations of one layer for one chunk.
struct LayerCache {
    x_in: Vec<f32>,
    qkv: Vec<f32>,
    probs: Vec<f32>,
    ctx: Vec<f32>,
    xhat1: Vec<f32>,
    inv1: Vec<f32>,
    ff_pre: Vec<f32>,
    xhat2: Vec<f32>,
    inv2: Vec<f32>,
}

/// Everything the backward pass needs for one chunk of prompts.
struct ChunkCache {
    /// Indices of the chunk's prompts in the step's prompt list.
    members: Vec<usize>,
    offsets: Vec<usize>,
    lens: Vec<usize>,
    prob_offsets: Vec<usize>,
    rows: usize,
    xhat0: Vec<f32>,
    inv0: Vec<f32>,
    layers: Vec<LayerCache>,
    key: u64,
}

/// The activations of a forward pass, kept for `CpuTrainModel::backward`.
pub struct ForwardState {
    chunks: Vec<ChunkCache>,
    ids: Vec<Vec<u32>>,
    positions: Vec<Vec<u32>>,
    pool: Vec<Vec<bool>>,
}

/// Gradient buffers shaped like the parameters.
struct Grads(Vec<Vec<f32>>);

/// One parameter's index, its buffer in the gradient sum, and its buffers in the parts being
/// added in ([`CpuTrainModel::add_in_order`]).
type Column<'a> = (usize, &'a mut [f32], Vec<&'a mut [f32]>);

/// Trainable encoder parameters on the CPU, with their AdamW state.
pub struct CpuTrainModel {
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    params: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    grads: Vec<Grads>,
    steps: usize,
    dims: Dims,
    word: usize,
    position: usize,
    token_type: usize,
    ln0: (usize, usize),
    layers: Vec<LayerIx>,
    dropout: Dropout,
    freeze_embeddings: bool,
}

/// Name of the word-embedding table.
const WORD: &str = "embeddings.word_embeddings.weight";

impl CpuTrainModel {
    /// Copies the named parameters (Hugging Face names, no prefix; as
    /// [`crate::encoder::Encoder::named_tensors`] lists them).
    pub fn new(
        named: &[(String, Tensor)],
        heads: usize,
        eps: f64,
        dropout: Dropout,
        freeze_embeddings: bool,
    ) -> Result<Self> {
        let mut names = Vec::with_capacity(named.len());
        let mut shapes = Vec::with_capacity(named.len());
        let mut params = Vec::with_capacity(named.len());
        let mut at = HashMap::new();
        for (i, (name, t)) in named.iter().enumerate() {
            names.push(name.clone());
            shapes.push(t.dims().to_vec());
            params.push(
                t.to_dtype(candle_core::DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
            at.insert(name.clone(), i);
        }
        let find = |n: &str| -> Result<usize> {
            at.get(n).copied().ok_or_else(|| Error::InvalidArgument {
                flag: "model".into(),
                message: format!("the encoder has no tensor {n}"),
            })
        };
        let pair = |p: &str| -> Result<(usize, usize)> {
            Ok((find(&format!("{p}.weight"))?, find(&format!("{p}.bias"))?))
        };
        let word = find(WORD)?;
        let (vocab, h) = match shapes[word].as_slice() {
            &[v, h] => (v, h),
            _ => {
                return Err(Error::InvalidArgument {
                    flag: "model".into(),
                    message: "the word-embedding table is not two-dimensional".into(),
                })
            }
        };
        let position = find("embeddings.position_embeddings.weight")?;
        let max_pos = shapes[position][0];
        let token_type = find("embeddings.token_type_embeddings.weight")?;
        let ln0 = pair("embeddings.LayerNorm")?;
        let mut layers = Vec::new();
        while at.contains_key(&format!(
            "encoder.layer.{}.attention.self.query.weight",
            layers.len()
        )) {
            let p = format!("encoder.layer.{}", layers.len());
            layers.push(LayerIx {
                q: pair(&format!("{p}.attention.self.query"))?,
                k: pair(&format!("{p}.attention.self.key"))?,
                v: pair(&format!("{p}.attention.self.value"))?,
                o: pair(&format!("{p}.attention.output.dense"))?,
                ln1: pair(&format!("{p}.attention.output.LayerNorm"))?,
                up: pair(&format!("{p}.intermediate.dense"))?,
                down: pair(&format!("{p}.output.dense"))?,
                ln2: pair(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let inter = layers.first().map(|l| shapes[l.up.0][0]).unwrap_or(h);
        if heads == 0 || h % heads != 0 {
            return Err(Error::InvalidArgument {
                flag: "model".into(),
                message: format!("hidden size {h} is not divisible by {heads} heads"),
            });
        }
        let zeros: Vec<Vec<f32>> = params.iter().map(|p| vec![0f32; p.len()]).collect();
        Ok(CpuTrainModel {
            names,
            shapes,
            m: zeros.clone(),
            v: zeros,
            params,
            grads: Vec::new(),
            steps: 0,
            dims: Dims {
                h,
                nh: heads,
                dh: h / heads,
                inter,
                vocab,
                max_pos,
                eps: eps as f32,
            },
            word,
            position,
            token_type,
            ln0,
            layers,
            dropout,
            freeze_embeddings,
        })
    }

    /// Optimiser steps taken.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Writes the current parameters into the candle `Var`s of the same names.
    pub fn sync_to(&self, vars: &[(String, Var)]) -> Result<()> {
        let at: HashMap<&str, usize> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        for (name, var) in vars {
            if let Some(&i) = at.get(name.as_str()) {
                let t =
                    Tensor::from_slice(&self.params[i], self.shapes[i].as_slice(), var.device())?;
                var.set(&t)?;
            }
        }
        Ok(())
    }

    /// Runs the encoder on `prompts` in chunks of at most `chunk` prompts (spread over the rayon
    /// threads) and returns the pooled relation vectors `[n, hidden]` (raw sums) with the
    /// activations for the backward pass. `seed` keys this step's dropout masks.
    pub fn forward(
        &self,
        prompts: &[Prompt<'_>],
        chunk: usize,
        seed: u64,
    ) -> Result<(Vec<f32>, ForwardState)> {
        let lengths: Vec<usize> = prompts.iter().map(|p| p.ids.len()).collect();
        if let Some(i) = lengths.iter().position(|&l| l == 0) {
            return Err(Error::InvalidArgument {
                flag: "prompts".into(),
                message: format!("prompt {i} has no tokens"),
            });
        }
        let batches = crate::batching::length_sorted_batches(&lengths, chunk.max(1));
        let state_ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.to_vec()).collect();
        let positions: Vec<Vec<u32>> = prompts.iter().map(|p| p.positions.clone()).collect();
        let pool: Vec<Vec<bool>> = prompts.iter().map(|p| p.pool.clone()).collect();
        let results: Vec<(ChunkCache, Vec<f32>)> = batches
            .into_par_iter()
            .enumerate()
            .map(|(c, members)| {
                let key = mix(seed ^ mix(c as u64 + 1));
                self.forward_chunk(members, &state_ids, &positions, &pool, key)
            })
            .collect();
        let h = self.dims.h;
        let mut pooled = vec![0f32; prompts.len() * h];
        let mut chunks = Vec::with_capacity(results.len());
        for (cache, out) in results {
            for (j, &i) in cache.members.iter().enumerate() {
                pooled[i * h..(i + 1) * h].copy_from_slice(&out[j * h..(j + 1) * h]);
            }
            chunks.push(cache);
        }
        Ok((
            pooled,
            ForwardState {
                chunks,
                ids: state_ids,
                positions,
                pool,
            },
        ))
    }

    fn forward_chunk(
        &self,
        members: Vec<usize>,
        ids: &[Vec<u32>],
        positions: &[Vec<u32>],
        pool: &[Vec<bool>],
        key: u64,
    ) -> (ChunkCache, Vec<f32>) {
        let Dims {
            h, nh, dh, inter, ..
        } = self.dims;
        let lens: Vec<usize> = members.iter().map(|&i| ids[i].len()).collect();
        let mut offsets = Vec::with_capacity(lens.len());
        let mut prob_offsets = Vec::with_capacity(lens.len());
        let (mut rows, mut probs_len) = (0, 0);
        for &l in &lens {
            offsets.push(rows);
            prob_offsets.push(probs_len);
            rows += l;
            probs_len += nh * l * l;
        }

        // Embeddings.
        let mut e = vec![0f32; rows * h];
        let (word, pos, tt) = (
            &self.params[self.word],
            &self.params[self.position],
            &self.params[self.token_type],
        );
        for (s, &i) in members.iter().enumerate() {
            for (t, &id) in ids[i].iter().enumerate() {
                let id = (id as usize).min(self.dims.vocab - 1);
                let p = (positions[i][t] as usize).min(self.dims.max_pos - 1);
                let row = &mut e[(offsets[s] + t) * h..(offsets[s] + t + 1) * h];
                for j in 0..h {
                    row[j] = word[id * h + j] + pos[p * h + j] + tt[j];
                }
            }
        }
        let mut xhat0 = vec![0f32; rows * h];
        let mut inv0 = vec![0f32; rows];
        let mut x = vec![0f32; rows * h];
        layer_norm(
            &e,
            &self.params[self.ln0.0],
            &self.params[self.ln0.1],
            self.dims.eps,
            &mut xhat0,
            &mut inv0,
            &mut x,
        );
        dropout(&mut x, site(key, 0, 0), self.dropout.hidden);

        let arch = Arch::new();
        let scale = 1.0 / (dh as f32).sqrt();
        let mut layers = Vec::with_capacity(self.layers.len());
        let mut dropped = vec![0f32; lens.iter().map(|l| l * l).max().unwrap_or(0)];
        for (li, ix) in self.layers.iter().enumerate() {
            let p = &self.params;
            let mut qkv = vec![0f32; rows * 3 * h];
            for (part, w) in [ix.q, ix.k, ix.v].into_iter().enumerate() {
                linear(
                    &x,
                    h,
                    rows,
                    &p[w.0],
                    &p[w.1],
                    h,
                    &mut qkv[part * h..],
                    3 * h,
                );
            }
            let mut probs = vec![0f32; probs_len];
            let mut ctx = vec![0f32; rows * h];
            for s in 0..lens.len() {
                let (off, len) = (offsets[s], lens[s]);
                for head in 0..nh {
                    let po = prob_offsets[s] + head * len * len;
                    let pr = &mut probs[po..po + len * len];
                    let q = off * 3 * h + head * dh;
                    // scores = scale · Q Kᵀ
                    mm(
                        (len, len, dh),
                        (pr, 1, len, false),
                        (&qkv[q..], 1, 3 * h),
                        (&qkv[q + h..], 3 * h, 1),
                        scale,
                    );
                    arch.dispatch(SoftmaxRows { x: pr, width: len });
                    let d = &mut dropped[..len * len];
                    d.copy_from_slice(pr);
                    dropout(d, attention_key(key, li, po), self.dropout.attention);
                    mm(
                        (len, dh, len),
                        (&mut ctx[off * h + head * dh..], 1, h, false),
                        (d, 1, len),
                        (&qkv[q + 2 * h..], 1, 3 * h),
                        1.0,
                    );
                }
            }
            // a = dropout(ctx Woᵀ + bo) + x
            let mut a = vec![0f32; rows * h];
            linear(&ctx, h, rows, &p[ix.o.0], &p[ix.o.1], h, &mut a, h);
            dropout(&mut a, site(key, li as u64 + 1, 2), self.dropout.hidden);
            a.iter_mut().zip(&x).for_each(|(a, x)| *a += x);
            let mut xhat1 = vec![0f32; rows * h];
            let mut inv1 = vec![0f32; rows];
            let mut h1 = vec![0f32; rows * h];
            layer_norm(
                &a,
                &p[ix.ln1.0],
                &p[ix.ln1.1],
                self.dims.eps,
                &mut xhat1,
                &mut inv1,
                &mut h1,
            );
            let mut ff_pre = vec![0f32; rows * inter];
            linear(
                &h1,
                h,
                rows,
                &p[ix.up.0],
                &p[ix.up.1],
                inter,
                &mut ff_pre,
                inter,
            );
            let mut ff = vec![0f32; rows * inter];
            arch.dispatch(GeluForward {
                x: &ff_pre,
                y: &mut ff,
            });
            let mut o = vec![0f32; rows * h];
            linear(&ff, inter, rows, &p[ix.down.0], &p[ix.down.1], h, &mut o, h);
            dropout(&mut o, site(key, li as u64 + 1, 3), self.dropout.hidden);
            o.iter_mut().zip(&h1).for_each(|(o, h1)| *o += h1);
            let mut xhat2 = vec![0f32; rows * h];
            let mut inv2 = vec![0f32; rows];
            let mut next = vec![0f32; rows * h];
            layer_norm(
                &o,
                &p[ix.ln2.0],
                &p[ix.ln2.1],
                self.dims.eps,
                &mut xhat2,
                &mut inv2,
                &mut next,
            );
            layers.push(LayerCache {
                x_in: std::mem::replace(&mut x, next),
                qkv,
                probs,
                ctx,
                xhat1,
                inv1,
                ff_pre,
                xhat2,
                inv2,
            });
        }

        let mut out = vec![0f32; members.len() * h];
        for (s, &i) in members.iter().enumerate() {
            for t in 0..lens[s] {
                if pool[i][t] {
                    let row = &x[(offsets[s] + t) * h..(offsets[s] + t + 1) * h];
                    out[s * h..(s + 1) * h]
                        .iter_mut()
                        .zip(row)
                        .for_each(|(o, r)| *o += r);
                }
            }
        }
        (
            ChunkCache {
                members,
                offsets,
                lens,
                prob_offsets,
                rows,
                xhat0,
                inv0,
                layers,
                key,
            },
            out,
        )
    }

    /// Back-propagates `d_pooled` (`[n, hidden]`, the loss's gradient with respect to the
    /// vectors [`Self::forward`] returned) through the encoder and returns the gradients,
    /// summed over chunks in a fixed order.
    fn backward(&mut self, state: &ForwardState, d_pooled: &[f32]) -> Result<()> {
        let h = self.dims.h;
        if d_pooled.len() != state.ids.len() * h {
            return Err(Error::InvalidArgument {
                flag: "gradient".into(),
                message: format!(
                    "{} values for {} prompts of width {h}",
                    d_pooled.len(),
                    state.ids.len()
                ),
            });
        }
        // Each chunk's gradient goes to a zeroed buffer of its own, and the buffers are added
        // into the sum (buffer 0) in chunk order: every element is ((c0 + c1) + c2) + …
        // whatever the number of threads, so a seed gives the same weights on any machine.
        // (Summing a run of chunks per thread, as before, grouped the additions by thread
        // count.) The chunks run in waves of one per thread; memory is one buffer per thread
        // plus the sum.
        let workers = rayon::current_num_threads().clamp(1, state.chunks.len().max(1));
        while self.grads.len() < workers + 1 {
            self.grads.push(Grads(
                self.params.iter().map(|p| vec![0f32; p.len()]).collect(),
            ));
        }
        let mut grads = std::mem::take(&mut self.grads);
        let (sum, work) = grads.split_at_mut(1);
        let work = &mut work[..workers];
        let this = &*self;
        for wave in state.chunks.chunks(workers) {
            work.par_iter_mut()
                .zip(wave.par_iter())
                .for_each(|(g, c)| this.backward_chunk(c, state, d_pooled, g));
            // The word-embedding rows a chunk did not use hold zeros: only its own are added.
            let rows: Vec<Vec<usize>> = wave
                .iter()
                .map(|c| this.chunk_word_rows(c, state))
                .collect();
            this.add_in_order(&mut sum[0], &mut work[..wave.len()], &rows);
        }
        self.grads = grads;
        Ok(())
    }

    /// The sorted distinct word-embedding rows of chunk `c`'s prompts.
    fn chunk_word_rows(&self, c: &ChunkCache, state: &ForwardState) -> Vec<usize> {
        let mut rows: Vec<usize> = c
            .members
            .iter()
            // Clamped as backward_chunk clamps an id past the table.
            .flat_map(|&i| {
                state.ids[i]
                    .iter()
                    .map(|&t| (t as usize).min(self.dims.vocab - 1))
            })
            .collect();
        rows.sort_unstable();
        rows.dedup();
        rows
    }

    /// Adds the chunk gradients `parts` into `sum` in their order, element by element, and
    /// zeroes them for the next wave; parameters are spread over the threads, which leaves
    /// each element's order of additions alone. `rows[k]` are the word-embedding rows
    /// `parts[k]` can hold (the others are zero).
    fn add_in_order(&self, sum: &mut Grads, parts: &mut [Grads], rows: &[Vec<usize>]) {
        let h = self.dims.h;
        // Per parameter: the sum's buffer and each part's.
        let mut columns: Vec<Column<'_>> = sum
            .0
            .iter_mut()
            .enumerate()
            .map(|(i, d)| (i, d.as_mut_slice(), Vec::with_capacity(parts.len())))
            .collect();
        for part in parts.iter_mut() {
            for (column, src) in columns.iter_mut().zip(part.0.iter_mut()) {
                column.2.push(src.as_mut_slice());
            }
        }
        columns.into_par_iter().for_each(|(i, dst, mut srcs)| {
            if i == self.word {
                for (src, rows) in srcs.iter_mut().zip(rows) {
                    for &r in rows {
                        let span = r * h..(r + 1) * h;
                        add_and_clear(&mut dst[span.clone()], &mut src[span]);
                    }
                }
                return;
            }
            // In blocks, so that a block of the sum stays in cache across the parts.
            const BLOCK: usize = 1 << 14;
            for start in (0..dst.len()).step_by(BLOCK) {
                let end = (start + BLOCK).min(dst.len());
                for src in srcs.iter_mut() {
                    add_and_clear(&mut dst[start..end], &mut src[start..end]);
                }
            }
        });
    }

    fn backward_chunk(
        &self,
        c: &ChunkCache,
        state: &ForwardState,
        d_pooled: &[f32],
        g: &mut Grads,
    ) {
        let Dims {
            h, nh, dh, inter, ..
        } = self.dims;
        let rows = c.rows;
        let p = &self.params;
        let scale = 1.0 / (dh as f32).sqrt();
        let arch = Arch::new();

        // d(last hidden): the pooled rows receive their prompt's gradient.
        let mut dx = vec![0f32; rows * h];
        for (s, &i) in c.members.iter().enumerate() {
            let src = &d_pooled[i * h..(i + 1) * h];
            for t in 0..c.lens[s] {
                if state.pool[i][t] {
                    dx[(c.offsets[s] + t) * h..(c.offsets[s] + t + 1) * h].copy_from_slice(src);
                }
            }
        }

        let mut dz = vec![0f32; rows * h];
        let mut dh1 = vec![0f32; rows * h];
        let mut dff = vec![0f32; rows * inter];
        let mut ff = vec![0f32; rows * inter];
        let mut h1 = vec![0f32; rows * h];
        let mut dctx = vec![0f32; rows * h];
        let mut dqkv = vec![0f32; rows * 3 * h];
        let max_len = c.lens.iter().copied().max().unwrap_or(0);
        let mut pd = vec![0f32; max_len * max_len];
        let mut dp = vec![0f32; max_len * max_len];

        for (li, (ix, lc)) in self.layers.iter().zip(&c.layers).enumerate().rev() {
            // Output LayerNorm: z = dropout(o) + h1.
            layer_norm_backward(&dx, &lc.xhat2, &lc.inv2, &p[ix.ln2.0], &mut dz, g, ix.ln2);
            dh1.copy_from_slice(&dz);
            dropout(&mut dz, site(c.key, li as u64 + 1, 3), self.dropout.hidden);
            // Feed-forward down projection.
            arch.dispatch(GeluForward {
                x: &lc.ff_pre,
                y: &mut ff,
            });
            linear_backward(&dz, h, rows, &ff, inter, p, ix.down, g, &mut dff, false);
            arch.dispatch(GeluBackward {
                x: &lc.ff_pre,
                d: &mut dff,
            });
            // Up projection; its input is h1 = LN1(a).
            let (w1, b1) = (&p[ix.ln1.0], &p[ix.ln1.1]);
            for r in 0..rows {
                for j in 0..h {
                    h1[r * h + j] = lc.xhat1[r * h + j] * w1[j] + b1[j];
                }
            }
            linear_backward(&dff, inter, rows, &h1, h, p, ix.up, g, &mut dh1, true);
            // Attention LayerNorm: a = dropout(ctx Woᵀ + bo) + x_in.
            layer_norm_backward(&dh1, &lc.xhat1, &lc.inv1, w1, &mut dz, g, ix.ln1);
            dx.copy_from_slice(&dz);
            dropout(&mut dz, site(c.key, li as u64 + 1, 2), self.dropout.hidden);
            linear_backward(&dz, h, rows, &lc.ctx, h, p, ix.o, g, &mut dctx, false);

            // Attention, per sequence and head.
            for s in 0..c.lens.len() {
                let (off, len) = (c.offsets[s], c.lens[s]);
                for head in 0..nh {
                    let po = c.prob_offsets[s] + head * len * len;
                    let probs = &lc.probs[po..po + len * len];
                    let q = off * 3 * h + head * dh;
                    let pdrop = &mut pd[..len * len];
                    pdrop.copy_from_slice(probs);
                    let key = attention_key(c.key, li, po);
                    dropout(pdrop, key, self.dropout.attention);
                    let dc = off * h + head * dh;
                    // dV = P'ᵀ dC
                    mm(
                        (len, dh, len),
                        (&mut dqkv[q + 2 * h..], 1, 3 * h, false),
                        (pdrop, len, 1),
                        (&dctx[dc..], 1, h),
                        1.0,
                    );
                    // dP' = dC Vᵀ, then through dropout and softmax.
                    let dpr = &mut dp[..len * len];
                    mm(
                        (len, len, dh),
                        (dpr, 1, len, false),
                        (&dctx[dc..], 1, h),
                        (&lc.qkv[q + 2 * h..], 3 * h, 1),
                        1.0,
                    );
                    dropout(dpr, key, self.dropout.attention);
                    for (drow, prow) in dpr.chunks_exact_mut(len).zip(probs.chunks_exact(len)) {
                        let dot: f32 = drow.iter().zip(prow).map(|(a, b)| a * b).sum();
                        drow.iter_mut()
                            .zip(prow)
                            .for_each(|(d, &pv)| *d = pv * (*d - dot));
                    }
                    // dQ = scale · dS K, dK = scale · dSᵀ Q
                    mm(
                        (len, dh, len),
                        (&mut dqkv[q..], 1, 3 * h, false),
                        (dpr, 1, len),
                        (&lc.qkv[q + h..], 1, 3 * h),
                        scale,
                    );
                    mm(
                        (len, dh, len),
                        (&mut dqkv[q + h..], 1, 3 * h, false),
                        (dpr, len, 1),
                        (&lc.qkv[q..], 1, 3 * h),
                        scale,
                    );
                }
            }
            // Q, K, V projections; their input is x_in, which also fed the residual.
            for (part, w) in [ix.q, ix.k, ix.v].into_iter().enumerate() {
                linear_backward_strided(
                    &dqkv[part * h..],
                    3 * h,
                    h,
                    rows,
                    &lc.x_in,
                    h,
                    p,
                    w,
                    g,
                    &mut dx,
                    true,
                );
            }
        }

        // Embeddings: x = dropout(LN0(word + position + type)).
        dropout(&mut dx, site(c.key, 0, 0), self.dropout.hidden);
        layer_norm_backward(&dx, &c.xhat0, &c.inv0, &p[self.ln0.0], &mut dz, g, self.ln0);
        for (s, &i) in c.members.iter().enumerate() {
            for t in 0..c.lens[s] {
                let row = &dz[(c.offsets[s] + t) * h..(c.offsets[s] + t + 1) * h];
                let id = (state.ids[i][t] as usize).min(self.dims.vocab - 1);
                let pos = (state.positions[i][t] as usize).min(self.dims.max_pos - 1);
                if !self.freeze_embeddings {
                    add_to(&mut g.0[self.word][id * h..(id + 1) * h], row);
                }
                add_to(&mut g.0[self.position][pos * h..(pos + 1) * h], row);
                add_to(&mut g.0[self.token_type][..h], row);
            }
        }
    }

    /// The summed gradient of the last `Self::backward` for parameter `name` (tests).
    pub fn gradient(&self, name: &str) -> Option<&[f32]> {
        let i = self.names.iter().position(|n| n == name)?;
        self.grads.first().map(|g| g.0[i].as_slice())
    }

    /// Back-propagates and takes one AdamW step (β = (0.9, 0.999), ε = 1e-8, no weight decay)
    /// with learning rate `lr`. The word-embedding table is updated lazily: only the `rows`
    /// (sorted, distinct token ids) the step used move, as the candle path does.
    pub fn backward_and_step(
        &mut self,
        state: &ForwardState,
        d_pooled: &[f32],
        lr: f64,
        rows: &[u32],
    ) -> Result<()> {
        self.backward(state, d_pooled)?;
        self.adamw(lr, rows);
        Ok(())
    }

    /// Back-propagates without updating (tests and gradient checks).
    pub fn backward_only(&mut self, state: &ForwardState, d_pooled: &[f32]) -> Result<()> {
        self.backward(state, d_pooled)
    }

    /// Parameter names, in the order the model holds them.
    pub fn parameter_names(&self) -> &[String] {
        &self.names
    }

    /// A parameter's values, mutably (gradient checks perturb them).
    pub fn parameter_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        let i = self.names.iter().position(|n| n == name)?;
        Some(self.params[i].as_mut_slice())
    }

    /// Zeroes the accumulated gradients.
    pub fn zero_grads(&mut self) {
        for g in &mut self.grads {
            for b in &mut g.0 {
                b.iter_mut().for_each(|v| *v = 0.0);
            }
        }
    }

    fn adamw(&mut self, lr: f64, rows: &[u32]) {
        self.steps += 1;
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let bc1 = crate::training::bias_correction(b1, self.steps);
        let bc2 = crate::training::bias_correction(b2, self.steps);
        let h = self.dims.h;
        let Some(grads) = self.grads.first_mut() else {
            return;
        };
        let update = |p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &mut [f32]| {
            for (((p, m), v), g) in p.iter_mut().zip(m).zip(v).zip(g) {
                let gd = *g as f64;
                let mn = b1 * *m as f64 + (1.0 - b1) * gd;
                let vn = b2 * *v as f64 + (1.0 - b2) * gd * gd;
                *m = mn as f32;
                *v = vn as f32;
                let upd = (mn / bc1) / ((vn / bc2).sqrt() + eps);
                *p = (*p as f64 - lr * upd) as f32;
                *g = 0.0;
            }
        };
        for i in 0..self.params.len() {
            let (p, m, v, g) = (
                &mut self.params[i],
                &mut self.m[i],
                &mut self.v[i],
                &mut grads.0[i],
            );
            if i == self.word {
                if self.freeze_embeddings {
                    continue;
                }
                for &r in rows {
                    let r = r as usize;
                    if r < self.dims.vocab {
                        let span = r * h..(r + 1) * h;
                        update(
                            &mut p[span.clone()],
                            &mut m[span.clone()],
                            &mut v[span.clone()],
                            &mut g[span],
                        );
                    }
                }
            } else {
                update(p, m, v, g);
            }
        }
    }
}

/// Adds `src` into `dst` element-wise and zeroes `src`.
fn add_and_clear(dst: &mut [f32], src: &mut [f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| {
        *d += *s;
        *s = 0.0;
    });
}

/// Adds `src` into `dst` element-wise.
fn add_to(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}

/// splitmix64's finaliser: a well-mixed 64-bit hash.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The dropout key of one site (embeddings, attention, attention output, FFN output) of one
/// layer of one chunk.
fn site(chunk_key: u64, layer: u64, which: u64) -> u64 {
    mix(chunk_key ^ mix((layer << 8) | which))
}

/// The dropout key of one attention-probability block (`po` is its offset in the chunk).
fn attention_key(chunk_key: u64, layer: usize, po: usize) -> u64 {
    mix(site(chunk_key, layer as u64 + 1, 1).wrapping_add(po as u64))
}

/// Multiplies `x` by an inverted-dropout mask (0, or 1/(1−p) with probability 1−p) drawn from
/// `key`; the same key gives the same mask, which is also the mask's backward pass.
fn dropout(x: &mut [f32], key: u64, p: f32) {
    if p <= 0.0 {
        return;
    }
    Arch::new().dispatch(DropoutMask { x, key, p });
}

struct DropoutMask<'a> {
    x: &'a mut [f32],
    key: u64,
    p: f32,
}

impl WithSimd for DropoutMask<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let threshold = (self.p * 65536.0).round().min(65535.0) as u32;
        let scale = 1.0 / (1.0 - self.p);
        for (i, block) in self.x.chunks_mut(4).enumerate() {
            let r = mix(self.key.wrapping_add(i as u64));
            for (j, v) in block.iter_mut().enumerate() {
                let u = ((r >> (16 * j)) & 0xFFFF) as u32;
                *v = if u < threshold { 0.0 } else { *v * scale };
            }
        }
    }
}

/// d/dx of x·Φ(x): Φ(x) + x·φ(x).
#[inline(always)]
fn gelu_grad(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf_approx(x * std::f32::consts::FRAC_1_SQRT_2));
    let pdf = exp_approx(-0.5 * x * x) * 0.398_942_3;
    cdf + x * pdf
}

/// `y = gelu(x)`, compiled for the CPU's widest SIMD (pulp dispatch) so erf vectorises.
struct GeluForward<'a> {
    x: &'a [f32],
    y: &'a mut [f32],
}

impl WithSimd for GeluForward<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        for (y, &x) in self.y.iter_mut().zip(self.x) {
            *y = gelu(x);
        }
    }
}

/// `d *= gelu'(x)`.
struct GeluBackward<'a> {
    x: &'a [f32],
    d: &'a mut [f32],
}

impl WithSimd for GeluBackward<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        for (d, &x) in self.d.iter_mut().zip(self.x) {
            *d *= gelu_grad(x);
        }
    }
}

/// LayerNorm of each `g.len()`-wide row of `x`, keeping x̂ and 1/σ for the backward pass.
fn layer_norm(
    x: &[f32],
    g: &[f32],
    b: &[f32],
    eps: f32,
    xhat: &mut [f32],
    inv: &mut [f32],
    y: &mut [f32],
) {
    let w = g.len();
    for (r, ((xr, xh), yr)) in x
        .chunks_exact(w)
        .zip(xhat.chunks_exact_mut(w))
        .zip(y.chunks_exact_mut(w))
        .enumerate()
    {
        let mean = xr.iter().sum::<f32>() / w as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / w as f32;
        let iv = 1.0 / (var + eps).sqrt();
        inv[r] = iv;
        for j in 0..w {
            xh[j] = (xr[j] - mean) * iv;
            yr[j] = xh[j] * g[j] + b[j];
        }
    }
}

/// Backward of [`layer_norm`]: writes dx, accumulates the weight and bias gradients.
fn layer_norm_backward(
    dy: &[f32],
    xhat: &[f32],
    inv: &[f32],
    gamma: &[f32],
    dx: &mut [f32],
    g: &mut Grads,
    ix: (usize, usize),
) {
    let w = gamma.len();
    let (gw, gb) = two_mut(&mut g.0, ix.0, ix.1);
    for (r, ((dyr, xh), dxr)) in dy
        .chunks_exact(w)
        .zip(xhat.chunks_exact(w))
        .zip(dx.chunks_exact_mut(w))
        .enumerate()
    {
        let (mut a, mut b) = (0f32, 0f32);
        for j in 0..w {
            let d = dyr[j] * gamma[j];
            a += d;
            b += d * xh[j];
            gw[j] += dyr[j] * xh[j];
            gb[j] += dyr[j];
        }
        let (a, b) = (a / w as f32, b / w as f32);
        for j in 0..w {
            dxr[j] = inv[r] * (dyr[j] * gamma[j] - a - xh[j] * b);
        }
    }
}

/// Two distinct elements of a slice, mutably.
fn two_mut<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert_ne!(i, j);
    if i < j {
        let (a, b) = v.split_at_mut(j);
        (&mut a[i], &mut b[0])
    } else {
        let (a, b) = v.split_at_mut(i);
        (&mut b[0], &mut a[j])
    }
}

/// `y[rows, out] (row stride ldy) = x[rows, inp] · Wᵀ + b`, W `[out, inp]`.
#[allow(clippy::too_many_arguments)]
fn linear(
    x: &[f32],
    inp: usize,
    rows: usize,
    w: &[f32],
    b: &[f32],
    out: usize,
    y: &mut [f32],
    ldy: usize,
) {
    for r in 0..rows {
        y[r * ldy..r * ldy + out].copy_from_slice(&b[..out]);
    }
    mm(
        (rows, out, inp),
        (y, 1, ldy, true),
        (x, 1, inp),
        (w, inp, 1),
        1.0,
    );
}

/// Backward of [`linear`] with a dense dy: accumulates dW, db and writes (or adds to) dx.
#[allow(clippy::too_many_arguments)]
fn linear_backward(
    dy: &[f32],
    out: usize,
    rows: usize,
    x: &[f32],
    inp: usize,
    p: &[Vec<f32>],
    ix: (usize, usize),
    g: &mut Grads,
    dx: &mut [f32],
    accumulate: bool,
) {
    linear_backward_strided(dy, out, out, rows, x, inp, p, ix, g, dx, accumulate);
}

/// [`linear_backward`] with dy rows `ldy` apart.
#[allow(clippy::too_many_arguments)]
fn linear_backward_strided(
    dy: &[f32],
    ldy: usize,
    out: usize,
    rows: usize,
    x: &[f32],
    inp: usize,
    p: &[Vec<f32>],
    ix: (usize, usize),
    g: &mut Grads,
    dx: &mut [f32],
    accumulate: bool,
) {
    let (gw, gb) = two_mut(&mut g.0, ix.0, ix.1);
    // dW += dyᵀ x
    mm(
        (out, inp, rows),
        (gw, 1, inp, true),
        (dy, ldy, 1),
        (x, 1, inp),
        1.0,
    );
    for r in 0..rows {
        add_to(&mut gb[..out], &dy[r * ldy..r * ldy + out]);
    }
    // dx (+)= dy W
    mm(
        (rows, inp, out),
        (dx, 1, inp, accumulate),
        (dy, 1, ldy),
        (&p[ix.0], 1, inp),
        1.0,
    );
}

/// `dst = (accumulate ? dst : 0) + scale · A·B` for an `m×k` A and a `k×n` B, each given as
/// (slice, column stride, row stride); single-threaded.
fn mm(
    (m, n, k): (usize, usize, usize),
    (dst, dcs, drs, accumulate): (&mut [f32], usize, usize, bool),
    (a, acs, ars): (&[f32], usize, usize),
    (b, bcs, brs): (&[f32], usize, usize),
    scale: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, cs: usize, rs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(m, n, dcs, drs) < dst.len());
    if k > 0 {
        assert!(last(m, k, acs, ars) < a.len() && last(k, n, bcs, brs) < b.len());
    }
    // SAFETY: the asserts bound every element the strides reach inside the three slices, and
    // `dst` does not alias `a` or `b` (a `&mut` and two `&` borrows).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dcs as isize,
            drs as isize,
            accumulate,
            a.as_ptr(),
            acs as isize,
            ars as isize,
            b.as_ptr(),
            bcs as isize,
            brs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_is_keyed_and_unbiased() {
        let mut a = vec![1f32; 100_000];
        let mut b = a.clone();
        dropout(&mut a, 7, 0.1);
        dropout(&mut b, 7, 0.1);
        assert_eq!(a, b);
        let zeros = a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len() as f64;
        assert!((zeros - 0.1).abs() < 0.01, "{zeros}");
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        assert!((mean - 1.0).abs() < 0.02, "{mean}");
        let mut c = vec![1f32; 100_000];
        dropout(&mut c, 8, 0.1);
        assert_ne!(a, c);
    }

    #[test]
    fn gelu_grad_matches_finite_difference() {
        for i in -40..=40 {
            let x = i as f32 / 10.0;
            let e = 1e-2f32;
            let fd = (gelu(x + e) - gelu(x - e)) / (2.0 * e);
            assert!(
                (fd - gelu_grad(x)).abs() < 1e-3,
                "{x}: {fd} vs {}",
                gelu_grad(x)
            );
        }
    }
}
