//! Tokenising prompts and grouping them into padded batches.
//!
//! The model's own `tokenizer.json` may ask for fixed padding (MiniLM's pads to 128); we turn
//! that off, truncate at the reference's 64 tokens, and pad each batch only to its longest
//! sequence after sorting by length, so almost no compute is spent on padding.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::config::ModelConfig;
use crate::encoder::EncoderInput;
use crate::error::{Error, Result};
use crate::pooling::Aggregation;
use crate::prompt::Template;

/// The reference truncates every prompt to this many tokens.
pub const MAX_LENGTH: usize = 64;

/// One tokenised prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    /// Token ids with special tokens, at most [`PromptTokenizer::max_length`] long.
    pub ids: Vec<u32>,
    /// Whether truncation cut the prompt.
    pub truncated: bool,
}

/// The model's tokenizer set up for prompts: no padding, truncation at [`MAX_LENGTH`] (or the
/// model's position table, where shorter).
#[derive(Clone)]
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    path: PathBuf,
    mask_token: String,
    mask_id: u32,
    pad_id: u32,
    max_len: usize,
}

impl PromptTokenizer {
    /// Loads `tokenizer.json` for the model whose configuration is `config`. `max_len` caps
    /// the truncation length (the model's position table may be shorter than 64); the caller
    /// refuses a limit too short for any prompt (see [`Self::special_tokens`]). The pad id is
    /// the tokenizer's ([`Self::pad_id`]); a disagreement with `config`'s `pad_token_id` is
    /// warned of, once per file.
    pub fn from_file(path: &Path, config: &ModelConfig, max_len: usize) -> Result<Self> {
        crate::config::tokenizer_file(path)?;
        let err = |message: String| Error::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        // Read before padding is turned off: the generic tokenizer class of transformers
        // takes its pad token from this block where no other file names one.
        let padding_token = tokenizer.get_padding().map(|p| p.pad_token.clone());
        let pad = crate::config::pooling_pad(
            config,
            path,
            padding_token.as_deref(),
            &|t| tokenizer.token_to_id(t),
            &|id| tokenizer.id_to_token(id),
        );
        if let Some(warning) = &pad.warning {
            if crate::config::first_warning_for(path) {
                tracing::warn!("{warning}");
            }
        }
        tokenizer.with_padding(None);
        let max_len = MAX_LENGTH.min(max_len);
        // tokenizers subtracts the special tokens from the limit unchecked (a panic in a
        // build with overflow checks, a wrapped limit in one without), and refuses a limit
        // of 0 with a message about strides: a limit with no room for a word is raised to
        // one, and such a model is refused by its loader, which names the position table
        // (`max_length` still answers the model's own limit).
        let special = {
            use tokenizers::PostProcessor;
            tokenizer
                .get_post_processor()
                .map_or(0, |p| p.added_tokens(false))
        };
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len.max(special + 1),
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| err(e.to_string()))?;
        let (mask_token, mask_id) = ["<mask>", "[MASK]"]
            .iter()
            .find_map(|m| tokenizer.token_to_id(m).map(|id| (m.to_string(), id)))
            .ok_or_else(|| err("no mask token (<mask> or [MASK]) in the vocabulary".into()))?;
        Ok(PromptTokenizer {
            tokenizer,
            path: path.to_path_buf(),
            mask_token,
            mask_id,
            pad_id: pad.id,
            max_len,
        })
    }

    /// The most tokens a prompt may have, special tokens included: [`MAX_LENGTH`], or the
    /// model's position table where that is shorter. Every refusal of a long prompt states
    /// this limit, and screening for such prompts uses it.
    pub fn max_length(&self) -> usize {
        self.max_len
    }

    /// The tokenizer as loaded from `tokenizer.json`, set up for prompts (no padding,
    /// truncation at the model's limit): for a caller that reads words with it and must not
    /// parse the file again.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// How many special tokens (`[CLS]`, `[SEP]`, `<s>`, `</s>`) the tokenizer adds around
    /// one text: a prompt needs room for these and at least one word token.
    pub fn special_tokens(&self) -> usize {
        use tokenizers::PostProcessor;
        self.tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false))
    }

    /// One more than the largest token id the tokenizer can give (added tokens included):
    /// the rows the model's word-embedding table must have.
    pub fn id_count(&self) -> usize {
        self.tokenizer
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&id| id as usize + 1)
    }

    /// The mask token's text (`<mask>` or `[MASK]`).
    pub fn mask_token(&self) -> &str {
        &self.mask_token
    }

    /// The mask token's id.
    pub fn mask_id(&self) -> u32 {
        self.mask_id
    }

    /// The pad id: the id pooling leaves out, as the reference's `input_ids_to_labels` leaves
    /// out `tokenizer.pad_token_id`, and the one batches are padded with (padded positions are
    /// masked out of attention by length and never pooled, whatever their id). The
    /// tokenizer's pad token as transformers resolves it, not `config.json`'s `pad_token_id`,
    /// which stays the encoder's padding index; that one where the tokenizer names no pad
    /// token in its vocabulary (`crate::config::pooling_pad`).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Tokenises one text with special tokens and truncation.
    pub fn encode_text(&self, text: &str) -> Result<Tokenized> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::Tokenizer {
                path: self.path.clone(),
                message: format!("cannot tokenise {text:?}: {e}"),
            })?;
        Ok(Tokenized {
            ids: enc.get_ids().to_vec(),
            truncated: !enc.get_overflowing().is_empty(),
        })
    }

    /// Tokenises many plain texts (no template) in parallel, keeping their order.
    pub fn encode_texts<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Tokenized>> {
        texts
            .par_iter()
            .map(|t| self.encode_text(t.as_ref()))
            .collect()
    }

    /// Fills the template with a pair and tokenises the prompt.
    pub fn encode_pair(&self, template: &Template, head: &str, tail: &str) -> Result<Tokenized> {
        self.encode_text(&template.fill(head, tail, &self.mask_token))
    }

    /// Tokenises many prompts in parallel (rayon), keeping their order.
    pub fn encode_pairs<S: AsRef<str> + Sync>(
        &self,
        template: &Template,
        pairs: &[(S, S)],
    ) -> Result<Vec<Tokenized>> {
        pairs
            .par_iter()
            .map(|(h, t)| self.encode_pair(template, h.as_ref(), t.as_ref()))
            .collect()
    }
}

/// A padded batch plus the pooling weights of its sequences.
pub struct Batch {
    /// What the encoder consumes.
    pub input: EncoderInput,
    /// `[batch, seq]` row-major: 1.0 where a token is pooled.
    pub pool_weights: Vec<f32>,
}

impl Batch {
    /// The one pooled position of each sequence, if every sequence pools exactly one position
    /// (mask pooling of prompts that kept their mask): all the encoder's last layer has to
    /// compute ([`crate::encoder::Encoder::forward_rows`]). `None` otherwise.
    pub fn single_rows(&self) -> Option<Vec<usize>> {
        single_rows(&self.pool_weights, self.input.batch)
    }
}

/// [`Batch::single_rows`] of `batch` sequences' weights (`[batch, seq]`, 1.0 where pooled).
fn single_rows(weights: &[f32], batch: usize) -> Option<Vec<usize>> {
    if batch == 0 || !weights.len().is_multiple_of(batch) {
        return None;
    }
    let t = weights.len() / batch;
    weights
        .chunks_exact(t)
        .map(|w| {
            let mut at = None;
            for (i, &x) in w.iter().enumerate() {
                if x == 0.0 {
                    continue;
                }
                if x != 1.0 || at.is_some() {
                    return None;
                }
                at = Some(i);
            }
            at
        })
        .collect()
}

/// Pads `seqs` (already in the order wanted) into one batch; `positions` numbers each row
/// from its ids and the padded length (see [`crate::encoder::Encoder::position_ids`]).
pub fn make_batch(
    seqs: &[&[u32]],
    pad_id: u32,
    mask_id: u32,
    aggregation: Aggregation,
    positions: impl Fn(&[u32], usize) -> Vec<u32>,
) -> Batch {
    let b = seqs.len();
    let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = vec![pad_id; b * t];
    let mut pos = Vec::with_capacity(b * t);
    let mut weights = vec![0f32; b * t];
    let mut lengths = Vec::with_capacity(b);
    for (row, s) in seqs.iter().enumerate() {
        ids[row * t..row * t + s.len()].copy_from_slice(s);
        pos.extend(positions(s, t));
        for i in 0..s.len() {
            if aggregation.selects(s, i, mask_id, pad_id) {
                weights[row * t + i] = 1.0;
            }
        }
        lengths.push(s.len());
    }
    Batch {
        input: EncoderInput {
            ids,
            positions: pos,
            lengths,
            batch: b,
            seq_len: t,
        },
        pool_weights: weights,
    }
}

/// Splits indices into batches of at most `batch_size` after sorting them by sequence length,
/// so each batch pads to nearly nothing. Returns the batches of original indices.
pub fn length_sorted_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    order
        .chunks(batch_size.max(1))
        .map(|c| c.to_vec())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{make_batch, single_rows};
    use crate::pooling::Aggregation;

    /// A limit with no room beside the special tokens (a position table of 1 for BERT)
    /// underflowed inside tokenizers, a panic in a build with overflow checks: the tokenizer
    /// loads, answers the model's limit, and encodes without a panic (the model itself is
    /// refused by its loader, which names the position table).
    #[test]
    fn a_limit_below_the_special_tokens_loads_without_a_panic() {
        use super::PromptTokenizer;
        use crate::config::ModelConfig;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
        for limit in [0, 1, 2] {
            let tok =
                PromptTokenizer::from_file(&dir.join("tokenizer.json"), &config, limit).unwrap();
            assert_eq!(tok.max_length(), limit);
            assert_eq!(tok.special_tokens(), 2);
            assert!(tok.encode_text("paris is the [MASK] of france").is_ok());
        }
    }

    /// Padded positions are never pooled, whatever id they are padded with: the weights are
    /// set from each sequence's own tokens, so even a pad id that is also the mask's (the
    /// mask pooling selects it by id) or no id of the pooling's leaves them out.
    #[test]
    fn padding_is_never_pooled_whatever_its_id() {
        let seqs: [&[u32]; 2] = [&[2, 5, 4, 6, 3], &[2, 4, 3]];
        for aggregation in Aggregation::ALL {
            for (pad, mask) in [(0, 4), (4, 4), (9, 4)] {
                let batch = make_batch(&seqs, pad, mask, aggregation, |_, t| {
                    (0..t as u32).collect()
                });
                assert_eq!(batch.input.ids[5..], [2, 4, 3, pad, pad]);
                let short = &batch.pool_weights[5..];
                assert_eq!(short[3..], [0.0, 0.0], "{aggregation} pad {pad}");
                assert_eq!(
                    short[..3].iter().sum::<f32>() as usize,
                    aggregation.count(seqs[1], mask, pad),
                    "{aggregation} pad {pad}"
                );
            }
        }
    }

    #[test]
    fn single_rows_only_when_every_sequence_pools_one_position() {
        assert_eq!(single_rows(&[0., 1., 0., 1., 0., 0.], 2), Some(vec![1, 0]));
        // Two pooled positions, none, or a weight other than 1: the full stack is needed.
        assert_eq!(single_rows(&[1., 1., 0., 1., 0., 0.], 2), None);
        assert_eq!(single_rows(&[0., 1., 0., 0., 0., 0.], 2), None);
        assert_eq!(single_rows(&[0., 0.5, 0., 1., 0., 0.], 2), None);
        assert_eq!(single_rows(&[0., 1., 0.], 2), None);
        assert_eq!(single_rows(&[], 0), None);
    }
}
