//! Deterministic synthetic data for tests and benchmarks (no `rand` dependency).
//!
//! [`low_rank`] mirrors the `lowrank` mode of the Python ANN peer: `unit(W z / √dim + e)` with
//! `z ~ N(0, I_r)`, `W ~ N(0, 1/r)` and `e ~ N(0, noise²/dim)`, which has the cluster-free but
//! low-intrinsic-dimension structure of real sentence embeddings.

/// A small deterministic generator (splitmix64) with Gaussian sampling.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    spare: Option<f64>,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng {
            state: seed ^ 0x5851_f42d_4c95_7f2d,
            spare: None,
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * v;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }
}

/// `n` unit rows of dimension `dim` with intrinsic dimension about `latent`, row-major.
pub fn low_rank(n: usize, dim: usize, latent: usize, noise: f64, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let w: Vec<f64> = (0..latent * dim)
        .map(|_| rng.normal() / (latent as f64).sqrt())
        .collect();
    let mut out = vec![0f32; n * dim];
    let mut z = vec![0f64; latent];
    let mut row = vec![0f64; dim];
    let sd = dim as f64;
    for r in 0..n {
        z.iter_mut().for_each(|x| *x = rng.normal());
        row.iter_mut().for_each(|x| *x = 0.0);
        for (j, zj) in z.iter().enumerate() {
            let wj = &w[j * dim..(j + 1) * dim];
            for (x, wv) in row.iter_mut().zip(wj) {
                *x += zj * wv;
            }
        }
        let mut norm = 0.0;
        for x in row.iter_mut() {
            *x = *x / sd.sqrt() + rng.normal() * noise / sd.sqrt();
            norm += *x * *x;
        }
        let inv = 1.0 / norm.sqrt().max(1e-30);
        for (o, x) in out[r * dim..(r + 1) * dim].iter_mut().zip(&row) {
            *o = (x * inv) as f32;
        }
    }
    out
}

/// `n` i.i.d. Gaussian rows of dimension `dim`, L2-normalised, row-major.
pub fn gaussian(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut out = vec![0f32; n * dim];
    for r in out.chunks_exact_mut(dim) {
        let mut norm = 0.0f64;
        for x in r.iter_mut() {
            let v = rng.normal();
            *x = v as f32;
            norm += v * v;
        }
        let inv = 1.0 / norm.sqrt().max(1e-30);
        r.iter_mut().for_each(|x| *x = (*x as f64 * inv) as f32);
    }
    out
}

/// Pairs `(h{i}, t{i})` for each `i` of `range`: distinct pairs to go with synthetic rows.
pub fn numbered_pairs(range: std::ops::Range<usize>) -> Vec<crate::PairEntry> {
    range
        .map(|i| crate::PairEntry::new(format!("h{i}"), format!("t{i}")))
        .collect()
}
