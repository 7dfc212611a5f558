//! RelBERT's contrastive losses on relation vectors (DESIGN.md §2), as differentiable candle
//! expressions.
//!
//! Every loss takes the embedded positives `P` (`[n_p, dim]`) of one relation and its
//! negatives `N` (`[n_n, dim]`) and returns a scalar tensor. Losses are *sums* over their
//! terms, as the reference sums them:
//!
//! - [`info_nce`]: `Σ_i Σ_j −log(e^{c_ij/τ} / (Σ_k e^{cos(p_i,n_k)/τ} + e^{c_ij/τ} + 1e-5))`
//!   with `c_ij = cos(p_i, p_j)` over all ordered pairs, `i = j` included;
//! - [`info_loob`]: the same without `e^{c_ij/τ}` in the denominator;
//! - [`triplet`]: `Σ_{i≠j} Σ_k max(0, ‖p_i−p_j‖ − ‖p_i−n_k‖ − margin)`, ordered pairs so that
//!   each anchor/positive pair counts both ways; [`parent_triplet`] adds the parent-level
//!   term with sibling-relation positives as positives and other-parent positives as
//!   negatives. The hinge subtracts the margin, as DESIGN.md and the reference's
//!   `relbert/util.py` both write it.
//!
//! Expected values in the tests come from `tests/scripts/losses_reference.py` (numpy).

use candle_core::{Tensor, D};

use crate::error::{Error, Result};

/// Which loss a training run optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// InfoNCE (the reference's default).
    #[default]
    Nce,
    /// InfoLOOB: InfoNCE without the positive term in the denominator.
    Iloob,
    /// Euclidean triplet hinge (plus the parent-level triplet when parents are known).
    Triplet,
}

impl LossKind {
    /// The flag value naming this loss.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::Nce => "nce",
            LossKind::Iloob => "iloob",
            LossKind::Triplet => "triplet",
        }
    }
}

impl std::str::FromStr for LossKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "nce" => Ok(LossKind::Nce),
            "iloob" => Ok(LossKind::Iloob),
            "triplet" => Ok(LossKind::Triplet),
            other => Err(Error::InvalidArgument {
                flag: "--loss".into(),
                message: format!("{other:?} is not one of nce, iloob, triplet"),
            }),
        }
    }
}

impl std::fmt::Display for LossKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn check_rows(x: &Tensor, what: &str) -> Result<usize> {
    let (n, _) = x.dims2()?;
    if n == 0 {
        return Err(Error::InvalidArgument {
            flag: "loss input".into(),
            message: format!("no {what} to compute a loss from"),
        });
    }
    Ok(n)
}

/// Rows scaled to unit length (with a tiny floor so a zero row stays finite).
fn unit_rows(x: &Tensor) -> Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    Ok(x.broadcast_div(&norm)?)
}

/// Cosine similarities of every row of `a` with every row of `b`: `[n_a, n_b]`.
pub fn cosine_matrix(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(unit_rows(a)?.matmul(&unit_rows(b)?.t()?)?)
}

/// Euclidean distances of every row of `a` to every row of `b`: `[n_a, n_b]`. A floor of
/// 1e-12 under the square root keeps the gradient finite at distance zero.
pub fn distance_matrix(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let diff = a.unsqueeze(1)?.broadcast_sub(&b.unsqueeze(0)?)?;
    Ok((diff.sqr()?.sum(D::Minus1)? + 1e-12)?.sqrt()?)
}

fn nce_like(p: &Tensor, n: &Tensor, temperature: f64, loob: bool) -> Result<Tensor> {
    let np = check_rows(p, "positives")?;
    check_rows(n, "negatives")?;
    let s_pp = (cosine_matrix(p, p)? / temperature)?; // [np, np]
    let deno_n = (cosine_matrix(p, n)? / temperature)?
        .exp()?
        .sum_keepdim(D::Minus1)?; // [np, 1]
    let deno = if loob {
        (deno_n + 1e-5)?.broadcast_as((np, np))?.contiguous()?
    } else {
        (s_pp.exp()?.broadcast_add(&deno_n)? + 1e-5)?
    };
    // −log(e^{s}/d) = log d − s
    Ok((deno.log()? - s_pp)?.sum_all()?)
}

/// InfoNCE over all ordered positive pairs (see the module docs).
pub fn info_nce(p: &Tensor, n: &Tensor, temperature: f64) -> Result<Tensor> {
    nce_like(p, n, temperature, false)
}

/// InfoLOOB over all ordered positive pairs (see the module docs).
pub fn info_loob(p: &Tensor, n: &Tensor, temperature: f64) -> Result<Tensor> {
    nce_like(p, n, temperature, true)
}

/// `Σ_i Σ_j Σ_k max(0, d_pos[i,j] − d_neg[i,k] − margin)`, skipping `i = j` when `skip_diag`.
fn hinge(d_pos: &Tensor, d_neg: &Tensor, margin: f64, skip_diag: bool) -> Result<Tensor> {
    let m = (d_pos.unsqueeze(2)?.broadcast_sub(&d_neg.unsqueeze(1)?)? - margin)?.relu()?;
    let per_pair = m.sum(D::Minus1)?; // [n_a, n_pos]
    if skip_diag {
        let (a, b) = per_pair.dims2()?;
        let mask: Vec<f32> = (0..a * b)
            .map(|x| if x / b == x % b { 0.0 } else { 1.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (a, b), per_pair.device())?;
        Ok((per_pair * mask)?.sum_all()?)
    } else {
        Ok(per_pair.sum_all()?)
    }
}

/// Relation-level triplet loss: every ordered pair of distinct positives as anchor/positive,
/// every negative as negative. With fewer than two positives the loss is zero.
pub fn triplet(p: &Tensor, n: &Tensor, margin: f64) -> Result<Tensor> {
    check_rows(p, "positives")?;
    check_rows(n, "negatives")?;
    hinge(
        &distance_matrix(p, p)?,
        &distance_matrix(p, n)?,
        margin,
        true,
    )
}

/// Parent-level triplet: anchors are the relation's positives, positives the positives of
/// sibling relations (same parent), negatives the positives of relations of other parents.
pub fn parent_triplet(
    p: &Tensor,
    siblings: &Tensor,
    others: &Tensor,
    margin: f64,
) -> Result<Tensor> {
    check_rows(p, "positives")?;
    check_rows(siblings, "sibling positives")?;
    check_rows(others, "other-parent positives")?;
    hinge(
        &distance_matrix(p, siblings)?,
        &distance_matrix(p, others)?,
        margin,
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn t(rows: &[[f32; 3]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), 3), &Device::Cpu).unwrap()
    }

    fn p() -> Tensor {
        t(&[[1.0, 0.5, -0.2], [0.3, 1.0, 0.1], [0.9, -0.4, 0.6]])
    }

    fn n() -> Tensor {
        t(&[
            [-1.0, 0.2, 0.3],
            [0.1, -0.8, 0.5],
            [0.4, 0.4, -1.0],
            [0.0, 1.0, 1.0],
        ])
    }

    fn scalar(x: Tensor) -> f64 {
        x.to_scalar::<f32>().unwrap() as f64
    }

    // Expected values: tests/scripts/losses_reference.py (numpy, float64).
    #[test]
    fn nce_matches_numpy() {
        let v = scalar(info_nce(&p(), &n(), 0.5).unwrap());
        assert!((v - 10.5252485).abs() < 1e-4, "{v}");
    }

    #[test]
    fn iloob_matches_numpy() {
        let v = scalar(info_loob(&p(), &n(), 0.5).unwrap());
        assert!((v - 6.2865982).abs() < 1e-4, "{v}");
    }

    #[test]
    fn triplet_matches_numpy() {
        let v = scalar(triplet(&p(), &n(), 0.3).unwrap());
        assert!((v - 0.8120067).abs() < 1e-4, "{v}");
        let v = scalar(triplet(&p(), &n(), 0.0).unwrap());
        assert!((v - 2.2789652).abs() < 1e-4, "{v}");
    }

    #[test]
    fn parent_triplet_matches_numpy() {
        let s = t(&[[-0.9, 0.1, 0.2]]);
        let o = t(&[[1.0, 0.6, 0.0], [0.2, -0.3, -0.6]]);
        let v = scalar(parent_triplet(&p(), &s, &o, 0.3).unwrap());
        assert!((v - 2.9898503).abs() < 1e-4, "{v}");
    }

    #[test]
    fn gradients_are_finite() {
        let pv = Var::from_tensor(&p()).unwrap();
        for loss in [
            info_nce(pv.as_tensor(), &n(), 0.05).unwrap(),
            info_loob(pv.as_tensor(), &n(), 0.05).unwrap(),
            triplet(pv.as_tensor(), &n(), 1.0).unwrap(),
        ] {
            let g = loss.backward().unwrap();
            let g = g.get(pv.as_tensor()).unwrap().flatten_all().unwrap();
            let g = g.to_vec1::<f32>().unwrap();
            assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
        }
    }

    #[test]
    fn empty_inputs_are_errors() {
        let empty = Tensor::zeros((0, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(info_nce(&empty, &n(), 0.5).is_err());
        assert!(triplet(&p(), &empty, 1.0).is_err());
        assert_eq!("iloob".parse::<LossKind>().unwrap(), LossKind::Iloob);
        assert!("x".parse::<LossKind>().is_err());
    }
}
