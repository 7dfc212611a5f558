//! Aggregation: which token positions' hidden states are summed into the relation vector.

use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;

use crate::error::{Error, Result};

/// The reference's aggregation modes. Tokens are chosen by id, as the reference's
/// `input_ids_to_labels` chooses them: a literal pad token that a word tokenises to (`<pad>`
/// typed in a word on RoBERTa, `[PAD]` on BERT) has the pad id, and is left out as padding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregation {
    /// Every token whose id is neither the mask's nor the pad's (special tokens included).
    /// The default.
    #[default]
    AverageNoMask,
    /// The mask token alone.
    Mask,
    /// Every token whose id is not the pad's.
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

    /// Whether position `i` of a sequence whose real tokens are `ids` is pooled. By id alone,
    /// as the reference decides (`0 if x in [pad_token_id, mask_token_id] else 1` for
    /// `average_no_mask`, `0 if x == pad_token_id` for `average`): a pad id among the real
    /// tokens, a word's literal pad token, is not pooled, though the encoder attends to it.
    /// `pad_id` is the tokenizer's ([`crate::batching::PromptTokenizer::pad_id`]), as the
    /// reference's `pad_token_id` is, not `config.json`'s `pad_token_id`.
    pub fn selects(self, ids: &[u32], i: usize, mask_id: u32, pad_id: u32) -> bool {
        let id = ids[i];
        match self {
            Aggregation::AverageNoMask => id != mask_id && id != pad_id,
            Aggregation::Mask => id == mask_id,
            Aggregation::Average => id != pad_id,
        }
    }

    /// Number of pooled tokens of one sequence.
    pub fn count(self, ids: &[u32], mask_id: u32, pad_id: u32) -> usize {
        (0..ids.len())
            .filter(|&i| self.selects(ids, i, mask_id, pad_id))
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
        assert_eq!(Aggregation::AverageNoMask.count(&ids, 103, 0), 4);
        assert_eq!(Aggregation::Mask.count(&ids, 103, 0), 1);
        assert_eq!(Aggregation::Average.count(&ids, 103, 0), 5);
    }

    /// A literal pad token among the real tokens (`[PAD]` typed in a word) is left out by
    /// both averages, as the reference's id rule leaves it out; it counted before.
    #[test]
    fn a_literal_pad_token_is_not_pooled() {
        let ids = [101, 7, 0, 103, 9, 102];
        let picked = |a: Aggregation| -> Vec<usize> {
            (0..ids.len())
                .filter(|&i| a.selects(&ids, i, 103, 0))
                .collect()
        };
        assert_eq!(picked(Aggregation::AverageNoMask), [0, 1, 4, 5]);
        assert_eq!(picked(Aggregation::Average), [0, 1, 3, 4, 5]);
        assert_eq!(picked(Aggregation::Mask), [3]);
    }

    #[test]
    fn parses_names_and_rejects_others() {
        for a in Aggregation::ALL {
            assert_eq!(a.name().parse::<Aggregation>().unwrap(), a);
        }
        assert!("mean".parse::<Aggregation>().is_err());
    }
}
