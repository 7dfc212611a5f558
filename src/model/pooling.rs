//! Aggregation: which token positions' hidden states are summed into the relation vector.

use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;

use crate::error::{Error, Result};

/// The reference's aggregation modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregation {
    /// Every real token except the mask token (special tokens included). The default.
    #[default]
    AverageNoMask,
    /// The mask token alone.
    Mask,
    /// Every real token.
    Average,
}

impl Aggregation {
    /// All modes, for help texts and tests.
    pub const ALL: [Aggregation; 3] = [
        Aggregation::AverageNoMask,
        Aggregation::Mask,
        Aggregation::Average,
    ];

    /// The reference's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Aggregation::AverageNoMask => "average_no_mask",
            Aggregation::Mask => "mask",
            Aggregation::Average => "average",
        }
    }

    /// Whether position `i` of a sequence whose real tokens are `ids` is pooled.
    pub fn selects(self, ids: &[u32], i: usize, mask_id: u32) -> bool {
        match self {
            Aggregation::AverageNoMask => ids[i] != mask_id,
            Aggregation::Mask => ids[i] == mask_id,
            Aggregation::Average => true,
        }
    }

    /// Number of pooled tokens of one sequence.
    pub fn count(self, ids: &[u32], mask_id: u32) -> usize {
        (0..ids.len())
            .filter(|&i| self.selects(ids, i, mask_id))
            .count()
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Aggregation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Aggregation::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| Error::InvalidArgument {
                flag: "--aggregation".into(),
                message: format!("{s:?}; expected one of average_no_mask, mask, average"),
            })
    }
}

/// Sums the selected hidden states of each sequence: `hidden` is `[batch, seq, width]`,
/// `weights` `[batch, seq]` with 1 where a token is pooled and 0 elsewhere. Differentiable.
pub fn pool_sum(hidden: &Tensor, weights: &Tensor) -> Result<Tensor> {
    Ok(hidden.broadcast_mul(&weights.unsqueeze(2)?)?.sum(1)?)
}

/// L2-normalises each row of `[n, width]` (rows of zeros stay zero). Differentiable.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    Ok(x.broadcast_div(&norm)?)
}

/// L2-normalises a vector in place.
pub fn normalize_in_place(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_select_expected_tokens() {
        let ids = [101, 7, 103, 9, 102];
        assert_eq!(Aggregation::AverageNoMask.count(&ids, 103), 4);
        assert_eq!(Aggregation::Mask.count(&ids, 103), 1);
        assert_eq!(Aggregation::Average.count(&ids, 103), 5);
    }

    #[test]
    fn parses_names_and_rejects_others() {
        for a in Aggregation::ALL {
            assert_eq!(a.name().parse::<Aggregation>().unwrap(), a);
        }
        assert!("mean".parse::<Aggregation>().is_err());
    }
}
