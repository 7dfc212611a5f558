//! RelBERT contrastive fine-tuning (DESIGN.md §2).
//!
//! One optimisation step per relation type, shuffled each epoch with a seeded RNG: up to
//! `num_positive` positives and up to `num_negative` sampled negatives (the relation's own
//! negatives plus, with `augment_negative_by_positive`, the positives of every other relation)
//! are embedded, the loss of [`crate::losses`] is taken, and [`AdamW`] (weight decay 0, linear
//! warm-up then constant) updates every parameter. The relations are SemEval's `train.jsonl`
//! plus any `extra_train` files in the same format ([`load_training_relations`]).
//!
//! On the CPU the step runs through [`crate::cpu_train`]: a hand-written forward and backward
//! pass with Hugging Face-style dropout (hidden states and attention probabilities, rates from
//! the base model's config.json unless `dropout` says otherwise) and a gradient buffer per
//! chunk of prompts, added into the sum in chunk order, so a seed gives the same run whatever
//! the thread count.
//! Why by hand: candle's op-by-op autograd spent most of a step outside the matrix products
//! (about 3.4× slower here), and it has no dropout. On CUDA, or with `autograd`, the step goes
//! through [`RelationEncoder::forward_pooled`] in [`Mode::Train`] and candle's autograd
//! instead; the gradient-parity test (`tests/cpu_train.rs`) holds the two paths together. The word-embedding table gets a *lazy* update: only the rows whose
//! tokens occur in the step move, and only their moments are updated (as `SparseAdam` does),
//! which saves a dense pass over the largest tensor.
//!
//! After each epoch the model is validated on the analogy `validation.jsonl` splits of sat,
//! bats and google and on the SemEval validation relations; the checkpoint with the best
//! *mean analogy validation accuracy* is kept (written atomically: temporary directory and
//! rename), so an interrupted run leaves the best model so far intact.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Tensor, Var};
use serde::Serialize;

use crate::analogy::{accuracy_with_vectors, cosine, distinct_pairs, Similarity};
use crate::batching::length_sorted_batches;
use crate::config::{ModelConfig, ModelFiles};
use crate::cpu_train::{CpuTrainModel, Dropout, Prompt};
use crate::datasets::{load_analogy_file, load_relation_file, AnalogyQuestion, RelationExamples};
use crate::encoder::Mode;
use crate::error::{Error, Result};
use crate::losses::{info_loob, info_nce, parent_triplet, triplet, LossKind};
use crate::output::{sibling_named, write_dir_atomically, write_json, DirId};
use crate::pooling::Aggregation;
use crate::relation::{EncoderOptions, RelationEncoder};

/// The analogy datasets whose validation accuracies select the checkpoint.
pub const SELECTION_DATASETS: [&str; 3] = ["sat", "bats", "google"];

/// How the kept checkpoint is chosen, as written into the output's JSON files.
pub const SELECTION_METRIC: &str =
    "mean of the analogy validation accuracies on sat, bats and google (validation.jsonl); \
     the SemEval validation score when none of them is present";

/// Every knob of a training run (saved as `training_config.json`).
#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    /// Base model directory.
    pub base: PathBuf,
    /// Data directory holding `semeval2012_relational_similarity/` and the analogy sets.
    pub data: PathBuf,
    /// Replaces `semeval2012_relational_similarity/train.jsonl` under `data` as the main
    /// training relations (same format; validation still comes from `data`).
    pub train_file: Option<PathBuf>,
    /// Further training relations in the SemEval format, appended to `train.jsonl`'s
    /// (validation stays SemEval's and the analogy sets').
    pub extra_train: Vec<PathBuf>,
    /// The loss.
    pub loss: LossKind,
    /// Passes over the relations.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup: usize,
    /// What the learning rate does after warm-up.
    pub lr_schedule: LrSchedule,
    /// Sequences per encoder forward pass.
    pub batch_size: usize,
    /// Positives per step (at most).
    pub num_positive: usize,
    /// Negatives per step (at most).
    pub num_negative: usize,
    /// InfoNCE/InfoLOOB temperature.
    pub temperature: f64,
    /// Triplet margin.
    pub margin: f64,
    /// Prompt template (`None`: the base model's, else the reference's).
    pub template: Option<String>,
    /// Pooling.
    #[serde(serialize_with = "aggregation_name")]
    pub aggregation: Aggregation,
    /// RNG seed (relation order and negative sampling).
    pub seed: u64,
    /// Add the positives of every other relation to a relation's negatives.
    pub augment_negative_by_positive: bool,
    /// Keep the word-embedding table fixed.
    pub freeze_embeddings: bool,
    /// Save float16 weights.
    pub half: bool,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Dropout probability for hidden states and attention (`None`: the base model's
    /// `hidden_dropout_prob` / `attention_probs_dropout_prob`, as Hugging Face trains).
    pub dropout: Option<f64>,
    /// Train through candle's autograd even on the CPU (slow; no dropout). The CPU default is
    /// the hand-written backward pass of [`crate::cpu_train`].
    pub autograd: bool,
    /// Also keep every epoch's model, float32, as `epoch-NN/` under this directory (for
    /// checkpoint averaging, see [`crate::averaging`]); `None` keeps only the best.
    pub checkpoint_dir: Option<PathBuf>,
}

fn aggregation_name<S: serde::Serializer>(
    a: &Aggregation,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(a.name())
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            base: PathBuf::from("models/all-MiniLM-L6-v2"),
            data: PathBuf::from("data"),
            train_file: None,
            extra_train: Vec::new(),
            loss: LossKind::Nce,
            epochs: 10,
            lr: 5e-6,
            warmup: 10,
            lr_schedule: LrSchedule::Constant,
            batch_size: 32,
            num_positive: 10,
            num_negative: 400,
            temperature: 0.05,
            margin: 1.0,
            template: None,
            aggregation: Aggregation::default(),
            seed: 0,
            augment_negative_by_positive: true,
            freeze_embeddings: false,
            half: false,
            device: "cpu".into(),
            dropout: None,
            autograd: false,
            checkpoint_dir: None,
        }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<()> {
        let bad = |flag: &str, message: &str| {
            Err(Error::InvalidArgument {
                flag: flag.into(),
                message: message.into(),
            })
        };
        if self.batch_size == 0 {
            return bad("--batch-size", "must be at least 1");
        }
        if self.num_positive == 0 {
            return bad("--num-positive", "must be at least 1");
        }
        if self.num_negative == 0 {
            return bad("--num-negative", "must be at least 1");
        }
        if self.epochs == 0 {
            // Zero epochs would load everything and save nothing.
            return bad("--epochs", "must be at least 1");
        }
        // Every float knob must be finite: an infinite temperature or a NaN margin gives a
        // constant loss, so the run would "succeed" with the base model's weights unchanged.
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad("--temperature", "must be a finite number above 0");
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return bad("--margin", "must be a finite number, 0 or more");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("--lr", "must be a finite number above 0");
        }
        if let Some(p) = self.dropout {
            if !(0.0..1.0).contains(&p) {
                return bad("--dropout", "must be in [0, 1)");
            }
        }
        Ok(())
    }

    /// The flags that shape the loss's scale, for the message when the loss overflows: the
    /// temperature divides the similarities of nce and iloob, the margin shifts triplet's.
    fn loss_flags(&self) -> (&'static str, String) {
        match self.loss {
            LossKind::Nce | LossKind::Iloob => (
                "--temperature",
                format!("--temperature {:?}", self.temperature),
            ),
            LossKind::Triplet => ("--margin", format!("--margin {:?}", self.margin)),
        }
    }

    /// `semeval2012_relational_similarity/<split>.jsonl` under the data directory.
    pub fn relation_file(&self, split: &str) -> PathBuf {
        self.data
            .join("semeval2012_relational_similarity")
            .join(format!("{split}.jsonl"))
    }

    /// The optimisation steps of the whole run, `epochs` × `relations` (one step per
    /// relation and epoch), refused naming `--epochs` when the product does not fit a
    /// `usize`: wrapped, a huge `--epochs` made the step count 0 (or small), so the linear
    /// schedule's rate was 0 from the first step and the run trained nothing, saying nothing.
    pub fn total_steps(&self, relations: usize) -> Result<usize> {
        self.epochs
            .checked_mul(relations)
            .ok_or_else(|| Error::InvalidArgument {
                flag: "--epochs".into(),
                message: format!(
                    "{} epochs of {relations} training relations are more optimisation steps \
                     than this machine can count (at most {}); give fewer epochs",
                    self.epochs,
                    usize::MAX
                ),
            })
    }
}

/// Adam's bias correction `1 − beta^step`. The exponent is capped at `i32::MAX` rather than
/// cast (`step as i32` wrapped negative past 2³¹ steps, and `beta` to a large negative power
/// is infinite); any `beta` below 1 to that power is 0 anyway.
pub(crate) fn bias_correction(beta: f64, step: usize) -> f64 {
    1.0 - beta.powi(i32::try_from(step).unwrap_or(i32::MAX))
}

/// The training relations: SemEval's `train.jsonl` (or `train_file`), then each
/// `extra_train` file in order. A relation id that occurs twice is an error naming the file
/// (and, within one file, both lines) that repeats it, since the trainer treats every other
/// relation's positives as negatives. The relations are not checked for training here; see
/// [`check_training_relations`].
pub fn load_training_relations(cfg: &TrainConfig) -> Result<Vec<RelationExamples>> {
    let main = match &cfg.train_file {
        Some(path) => path.clone(),
        None => cfg.relation_file("train"),
    };
    let mut relations: Vec<RelationExamples> = Vec::new();
    // Relation id → (which file of the list, index in `relations`): a file given twice is
    // two files here, and its repeats are named as an earlier file's.
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    for (file, path) in std::iter::once(&main).chain(&cfg.extra_train).enumerate() {
        for r in load_relation_file(path)? {
            if let Some(&(in_file, k)) = seen.get(&r.relation_type) {
                let first = &relations[k];
                if in_file == file {
                    return Err(Error::Parse {
                        path: r.path.clone(),
                        line: r.line,
                        message: format!(
                            "relation id {:?} is already defined on line {} of this file",
                            r.relation_type, first.line
                        ),
                    });
                }
                return Err(Error::InvalidArgument {
                    flag: "--extra-train".into(),
                    message: format!(
                        "{}:{}: relation id {} is already defined by an earlier training file \
                         ({}:{})",
                        r.path.display(),
                        r.line,
                        r.relation_type,
                        first.path.display(),
                        first.line
                    ),
                });
            }
            seen.insert(r.relation_type.clone(), (file, relations.len()));
            relations.push(r);
        }
    }
    Ok(relations)
}

/// Checks, before any model is loaded or anything of an earlier run removed, what would
/// otherwise stop (or silently spoil) a run at its first step on a relation: an empty
/// relation id, and a relation with nothing to sample as negatives (no negatives of its own,
/// and none added by augmentation: it is off, or there is no other relation). Each refusal
/// names the relation's file and line. Warned about, not refused: pairs that are both a
/// positive and a negative of one relation, each named with its place in both lists and
/// counted (the shipped `data/extra_relations*.jsonl` hold one, ("disjoint", "disjoin") of
/// 17b, and the default model's recipe trains on it; SemEval's train.jsonl holds none), and,
/// with the triplet loss, a relation with a single positive (its relation-level loss compares
/// pairs of positives, so it is 0).
pub fn check_training_relations(cfg: &TrainConfig, relations: &[RelationExamples]) -> Result<()> {
    let at = |r: &RelationExamples, message: String| Error::Parse {
        path: r.path.clone(),
        line: r.line,
        message,
    };
    // Pairs that are both a positive and a negative of their relation, in how many relations.
    let (mut contradictions, mut relations_with) = (0usize, 0usize);
    // Pairs repeated within a relation's positives or negatives, and the first such.
    let mut repeats = 0usize;
    let mut first_repeat: Option<String> = None;
    for r in relations {
        for (list, pairs) in [("positive", &r.positives), ("negative", &r.negatives)] {
            let found = repeated_pairs(pairs);
            if let (None, Some(&(first, again))) = (&first_repeat, found.first()) {
                let (h, t) = &pairs[again];
                first_repeat = Some(format!(
                    "{}:{}: relation {}, ({h:?}, {t:?}), {list} {} repeats {list} {}",
                    r.path.display(),
                    r.line,
                    r.relation_type,
                    again + 1,
                    first + 1
                ));
            }
            repeats += found.len();
        }
        if r.relation_type.trim().is_empty() {
            return Err(at(r, "the relation_type is empty".into()));
        }
        if r.negatives.is_empty() && !(cfg.augment_negative_by_positive && relations.len() > 1) {
            let why = if cfg.augment_negative_by_positive {
                "and it is the only training relation, so augmentation (other relations' \
                 positives as negatives) adds none"
            } else {
                "and --no-augment-negative-by-positive adds none from other relations"
            };
            return Err(at(
                r,
                format!(
                    "relation {} has no negatives, {why}: a training step needs at least one \
                     negative; give it some",
                    r.relation_type
                ),
            ));
        }
        let both = pairs_both_positive_and_negative(r);
        if !both.is_empty() {
            contradictions += both.len();
            relations_with += 1;
            tracing::warn!("{}", both_ways_warning(r, &both));
        }
        if cfg.loss == LossKind::Triplet && r.positives.len() < 2 {
            tracing::warn!(
                "{}:{}: relation {} has one positive: the triplet loss compares pairs of a \
                 relation's positives, so its steps train on nothing but the parent-level term",
                r.path.display(),
                r.line,
                r.relation_type
            );
        }
    }
    if relations_with > 1 {
        tracing::warn!(
            "{contradictions} pairs in {relations_with} relations are both a positive and a \
             negative of their relation (named above)"
        );
    }
    if let Some(first) = first_repeat {
        tracing::warn!("{}", repeats_warning(repeats, &first));
    }
    Ok(())
}

/// The one warning about `count` pairs of the training files that repeat an earlier pair of
/// the same list (a relation's positives or its negatives), `first` saying where the first
/// is. Not refused: a repeat is sampled more often, so it weighs more, which may be meant.
fn repeats_warning(count: usize, first: &str) -> String {
    format!(
        "{} in the training files {} an earlier pair of the same relation's positives or \
         negatives (the first: {first}): a repeated pair is sampled more often, so it weighs \
         more; remove the repeats unless that is meant",
        if count == 1 {
            "1 pair".to_string()
        } else {
            format!("{count} pairs")
        },
        if count == 1 { "repeats" } else { "each repeat" }
    )
}

/// How many pairs that are both a positive and a negative a warning names (the rest are
/// counted).
const NAMED_CONTRADICTIONS: usize = 5;

/// The pairs of `r` that are both a positive and a negative, in the order of its negatives:
/// (the pair, its index among the positives, its index among the negatives), the first
/// occurrence of each in either list.
fn pairs_both_positive_and_negative(
    r: &RelationExamples,
) -> Vec<(&(String, String), usize, usize)> {
    let mut positives: HashMap<&(String, String), usize> = HashMap::new();
    for (i, p) in r.positives.iter().enumerate() {
        positives.entry(p).or_insert(i);
    }
    let mut seen = BTreeSet::new();
    r.negatives
        .iter()
        .enumerate()
        .filter_map(|(j, p)| Some((p, *positives.get(p)?, j)))
        .filter(|(p, _, _)| seen.insert(*p))
        .collect()
}

/// The warning about `both` ([`pairs_both_positive_and_negative`] of `r`): the relation's
/// file and line (a relation is one line, its positives and negatives are lists on it), how
/// many such pairs it has, and where each of the first few is in each list (counted from 1).
fn both_ways_warning(r: &RelationExamples, both: &[(&(String, String), usize, usize)]) -> String {
    let named: Vec<String> = both
        .iter()
        .take(NAMED_CONTRADICTIONS)
        .map(|((h, t), i, j)| format!("({h:?}, {t:?}) (positive {}, negative {})", i + 1, j + 1))
        .collect();
    let more = both.len() - named.len();
    format!(
        "{}:{}: relation {}: {} both a positive and a negative, and the loss pulls {} both \
         ways: {}{}",
        r.path.display(),
        r.line,
        r.relation_type,
        if both.len() == 1 {
            "1 pair is".to_string()
        } else {
            format!("{} pairs are", both.len())
        },
        if both.len() == 1 { "it" } else { "each" },
        named.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

/// A small seeded PRNG (SplitMix64): the same seed gives the same run on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }

    /// `k` distinct indices of `0..n` (all of them, in order, when `k >= n`), sorted.
    pub fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        if k >= n {
            return idx;
        }
        for i in 0..k {
            let j = i + self.below(n - i);
            idx.swap(i, j);
        }
        idx.truncate(k);
        idx.sort_unstable();
        idx
    }
}

struct ParamState {
    var: Var,
    m: Tensor,
    v: Tensor,
    /// Row-sparse (lazy) update: the word-embedding table.
    sparse: bool,
    frozen: bool,
}

/// AdamW over an encoder's [`Var`]s (β = (0.9, 0.999), ε = 1e-8, no weight decay), with a lazy
/// row-sparse update for the word-embedding table.
pub struct AdamW {
    params: Vec<ParamState>,
    step: usize,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

/// The Hugging Face name of the word-embedding table.
pub const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

impl AdamW {
    /// Optimiser state for `vars`; the word embeddings update lazily, or not at all when
    /// `freeze_embeddings`.
    pub fn new(vars: &[(String, Var)], freeze_embeddings: bool) -> Result<Self> {
        let mut params = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            let t = var.as_tensor();
            let is_words = name == WORD_EMBEDDINGS;
            params.push(ParamState {
                var: var.clone(),
                m: Tensor::zeros(t.shape(), DType::F32, t.device())?,
                v: Tensor::zeros(t.shape(), DType::F32, t.device())?,
                sparse: is_words,
                frozen: is_words && freeze_embeddings,
            });
        }
        Ok(AdamW {
            params,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// One update with learning rate `lr`; `rows` are the word-embedding rows the step
    /// touched (sorted, distinct).
    pub fn step(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        lr: f64,
        rows: &[u32],
    ) -> Result<()> {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = bias_correction(b1, self.step);
        let bc2 = bias_correction(b2, self.step);
        for p in &mut self.params {
            if p.frozen {
                continue;
            }
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            if p.sparse {
                if rows.is_empty() {
                    continue;
                }
                let dev = g.device();
                let (_, width) = g.dims2()?;
                let ids = Tensor::from_slice(rows, rows.len(), dev)?;
                let g_r = g.index_select(&ids, 0)?;
                let m_r = p.m.index_select(&ids, 0)?;
                let v_r = p.v.index_select(&ids, 0)?;
                let m_new = ((&m_r * b1)? + (&g_r * (1.0 - b1))?)?;
                let v_new = ((&v_r * b2)? + (g_r.sqr()? * (1.0 - b2))?)?;
                let upd = ((&m_new / bc1)? / ((&v_new / bc2)?.sqrt()? + self.eps)?)?;
                let idx2 = ids
                    .unsqueeze(1)?
                    .broadcast_as((rows.len(), width))?
                    .contiguous()?;
                p.m.scatter_add_set(&idx2, &(m_new - m_r)?, 0)?;
                p.v.scatter_add_set(&idx2, &(v_new - v_r)?, 0)?;
                p.var
                    .as_tensor()
                    .scatter_add_set(&idx2, &(upd * (-lr))?, 0)?;
            } else {
                p.m = ((&p.m * b1)? + (g * (1.0 - b1))?)?;
                p.v = ((&p.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
                let upd = ((&p.m / bc1)? / ((&p.v / bc2)?.sqrt()? + self.eps)?)?;
                let new = (p.var.as_tensor().detach() - (upd * lr)?)?;
                p.var.set(&new)?;
            }
        }
        Ok(())
    }
}

/// What the learning rate does once warm-up is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// Stays at the peak (the reference's `get_linear_schedule_with_warmup` without decay).
    #[default]
    Constant,
    /// Falls linearly from the peak to nearly zero at the run's last step (Hugging Face's
    /// `get_linear_schedule_with_warmup`); late epochs then take small steps, which steadies
    /// the epoch-to-epoch swings a constant rate shows once the loss has gone far negative.
    Linear,
}

impl LrSchedule {
    /// What `training_config.json` says about the schedule.
    fn describe(self) -> &'static str {
        match self {
            LrSchedule::Constant => "linear warm-up over `warmup` steps, then constant",
            LrSchedule::Linear => {
                "linear warm-up over `warmup` steps, then linear decay to the last step"
            }
        }
    }
}

impl std::str::FromStr for LrSchedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "constant" => Ok(LrSchedule::Constant),
            "linear" => Ok(LrSchedule::Linear),
            other => Err(Error::InvalidArgument {
                flag: "--lr-schedule".into(),
                message: format!("{other:?} is not one of constant, linear"),
            }),
        }
    }
}

/// The learning rate at (0-based) `step` of a run of `total` steps: linear warm-up over
/// `warmup` steps, then constant or linearly decaying as `schedule` says. The decay reaches
/// `base / (total - warmup + 1)` at the last step rather than zero, so no step is wasted.
pub fn lr_at(base: f64, warmup: usize, step: usize, schedule: LrSchedule, total: usize) -> f64 {
    let s = step + 1;
    if s < warmup {
        return base * s as f64 / warmup as f64;
    }
    match schedule {
        LrSchedule::Constant => base,
        LrSchedule::Linear => {
            // The peak step is the last warm-up step (or step 0 without warm-up).
            let peak = warmup.max(1) - 1;
            let span = total.saturating_sub(peak).max(1);
            base * total.saturating_sub(step) as f64 / span as f64
        }
    }
}

/// One step's sampled prompts.
struct StepBatch {
    relation: usize,
    /// Positives first, then negatives.
    seqs: Vec<Vec<u32>>,
    num_positive: usize,
    negatives: Vec<(usize, bool, usize)>,
    /// Sorted distinct token ids of the prompts.
    rows: Vec<u32>,
}

/// The loss's value, or an error naming the step and the settings that can cause it when it
/// is not finite: a high learning rate, but also (at step 1 especially) a tiny temperature
/// or a huge margin, so the message names those flags too.
fn finite_loss(loss: &Tensor, step: usize, cfg: &TrainConfig) -> Result<f32> {
    let value = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    if !value.is_finite() {
        let (flag, setting) = cfg.loss_flags();
        return Err(Error::InvalidArgument {
            flag: format!("--lr or {flag}"),
            message: format!(
                "the {} loss became {value} at step {} (--lr {:?}, {setting}); try a lower \
                 --lr, or check {flag}",
                cfg.loss.name(),
                step + 1,
                cfg.lr
            ),
        });
    }
    Ok(value)
}

/// Validation scores after an epoch.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// Accuracy per analogy dataset's validation split.
    pub analogy: BTreeMap<String, f64>,
    /// Mean of [`Validation::analogy`] (`None` without analogy sets).
    pub analogy_mean: Option<f64>,
    /// Share of all analogy validation questions answered right, the sets pooled (`None`
    /// without analogy sets). Recorded beside the selection score, not used for it: the mean
    /// weighs SAT's 37 questions as much as BATS's 199, the pooled share weighs each question
    /// alike, so comparing the two shows how much a choice rests on a few SAT questions.
    pub analogy_pooled: Option<f64>,
    /// Share of SemEval validation positives whose nearest same-relation positive is closer
    /// than every negative of the relation (augmented negatives included); `None` when no
    /// validation relation has two distinct positives (then there is nothing to score, and
    /// an analogy set selects the checkpoint: see [`ValidationData::load`]).
    pub semeval: Option<f64>,
    /// The selection score: `analogy_mean`, else `semeval`.
    pub score: f64,
}

/// Held-out material scored after every epoch.
pub struct ValidationData {
    /// Dataset name, its validation file, its questions.
    analogy: Vec<(String, PathBuf, Vec<AnalogyQuestion>)>,
    semeval: Vec<RelationExamples>,
}

impl ValidationData {
    /// Loads the SemEval validation relations and the sat/bats/google validation splits
    /// present under `data`.
    ///
    /// A positive repeated within its relation is kept once, with a warning naming the
    /// file and line (scored twice, it was its own nearest "other positive", at cosine 1).
    /// The SemEval score compares each positive with its relation's other positives, so a
    /// relation with fewer than two distinct positives cannot be scored: such relations are
    /// warned about by name, and when none can be scored and no analogy split is present
    /// either, the run is refused before training, naming the validation file (checkpoint
    /// selection would otherwise run on a constant 0 and keep epoch 1). Without analogy
    /// splits, a note says which files were looked for and that the SemEval score selects.
    pub fn load(cfg: &TrainConfig) -> Result<Self> {
        let path = cfg.relation_file("validation");
        let mut semeval = load_relation_file(&path)?;
        for r in &mut semeval {
            if let Some(warning) = dedupe_positives(r) {
                tracing::warn!("{warning}");
            }
        }
        let mut analogy = Vec::new();
        let mut looked_for = Vec::new();
        for name in SELECTION_DATASETS {
            let f = cfg.data.join(name).join("validation.jsonl");
            // Only a split that is not there at all is skipped: a folder or a broken link
            // in its place is refused by the read, naming it, not taken for "absent".
            if std::fs::symlink_metadata(&f).is_ok() {
                let questions = load_analogy_file(&f)?;
                analogy.push((name.to_string(), f, questions));
            } else {
                looked_for.push(format!("{name}/validation.jsonl"));
            }
        }
        let unscored: Vec<&RelationExamples> =
            semeval.iter().filter(|r| r.positives.len() < 2).collect();
        if unscored.len() == semeval.len() && analogy.is_empty() {
            return Err(Error::InvalidArgument {
                flag: "--data".into(),
                message: format!(
                    "{}: no validation score can be computed: {}, and {} holds no analogy \
                     validation split (looked for {}); the epoch to keep is chosen by a \
                     validation score, so give some relation 2 or more distinct positives (or \
                     add an analogy validation split)",
                    path.display(),
                    if semeval.len() == 1 {
                        "its relation has fewer than 2 distinct positives (the SemEval score \
                         compares each positive with another positive of its relation)"
                            .to_string()
                    } else {
                        format!(
                            "none of its {} relations has 2 or more distinct positives (the \
                             SemEval score compares each positive with another positive of \
                             its relation)",
                            semeval.len()
                        )
                    },
                    cfg.data.display(),
                    looked_for.join(", ")
                ),
            });
        }
        if analogy.is_empty() {
            tracing::info!(
                "note: {} holds no analogy validation split (looked for {}): the kept epoch \
                 is chosen by the SemEval validation score only",
                cfg.data.display(),
                looked_for.join(", ")
            );
        } else {
            // A split left out changes what "best" means; said, and recorded as the
            // selection metric ([`ValidationData::selection_metric`]).
            for missing in &looked_for {
                tracing::warn!(
                    "{} holds no {missing}: the kept epoch is chosen by the mean accuracy on \
                     {} only",
                    cfg.data.display(),
                    and_list(analogy.iter().map(|(name, _, _)| name.as_str()))
                );
            }
        }
        if !unscored.is_empty() {
            tracing::warn!("{}", unscored_warning(&path, &unscored, semeval.len()));
        }
        Ok(ValidationData { analogy, semeval })
    }

    /// The analogy datasets whose validation splits select the checkpoint: those of
    /// [`SELECTION_DATASETS`] present under the data directory, in that order.
    pub fn selection_datasets(&self) -> Vec<String> {
        self.analogy
            .iter()
            .map(|(name, _, _)| name.clone())
            .collect()
    }

    /// How the kept checkpoint is chosen with the splits present: [`SELECTION_METRIC`] when
    /// all of [`SELECTION_DATASETS`] are, else naming the ones used and the ones missing
    /// (a run without bats was recorded as selected on "sat, bats and google").
    pub fn selection_metric(&self) -> String {
        let used = self.selection_datasets();
        if used.len() == SELECTION_DATASETS.len() {
            return SELECTION_METRIC.into();
        }
        let missing = SELECTION_DATASETS
            .iter()
            .filter(|name| !used.iter().any(|u| u == *name));
        if used.is_empty() {
            return format!(
                "the SemEval validation score (no analogy validation split: {} missing)",
                and_list(missing.copied())
            );
        }
        format!(
            "mean of the analogy validation accuracies on {} (validation.jsonl); {} missing",
            and_list(used.iter().map(String::as_str)),
            and_list(missing.copied())
        )
    }

    /// Refuses, before the first validation, a pair whose prompt `enc` cannot encode
    /// ([`RelationEncoder::overlong`]), naming the file and line that holds it: the encoder's
    /// own refusal knows only the pair. Warns of pairs it encodes with the mask token cut
    /// away, as `relbert embed` does ([`RelationEncoder::screen_prompts`]).
    pub fn check_prompts(&self, enc: &RelationEncoder) -> Result<()> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        let mut places: Vec<(&Path, usize)> = Vec::new();
        for r in &self.semeval {
            for (h, t) in r.positives.iter().chain(&r.negatives) {
                pairs.push((h, t));
                places.push((&r.path, r.line));
            }
        }
        for (_, path, questions) in &self.analogy {
            for q in questions {
                for (h, t) in std::iter::once(&q.stem).chain(&q.choice) {
                    pairs.push((h, t));
                    places.push((path, q.line));
                }
            }
        }
        let (bad, mask_cut) = enc.screen_prompts(&pairs)?;
        if let Some(&i) = mask_cut.first() {
            let at = format!("{}:{}", places[i].0.display(), places[i].1);
            crate::embed::warn_mask_cut_at(enc, &at, pairs[i], mask_cut.len() - 1);
        }
        match bad.first() {
            Some(&i) => Err(prompt_too_long(
                places[i].0,
                places[i].1,
                pairs[i],
                enc.max_tokens(),
            )),
            None => Ok(()),
        }
    }
}

/// Warns of the training pairs whose prompt is encoded with the mask token cut away
/// ([`RelationEncoder::screen_prompts`]), naming the first's file and line as `relbert embed`
/// names its input's: the model then learns from less of the template than the others give.
fn warn_training_mask_cut(enc: &RelationEncoder, relations: &[RelationExamples]) -> Result<()> {
    let (mut first, mut count) = (None, 0usize);
    for r in relations {
        for side in [&r.positives, &r.negatives] {
            let (_, cut) = enc.screen_prompts(side)?;
            if let (None, Some(&i)) = (&first, cut.first()) {
                first = Some((r, &side[i]));
            }
            count += cut.len();
        }
    }
    if let Some((r, (h, t))) = first {
        let at = if r.path.as_os_str().is_empty() {
            format!("relation {}", r.relation_type)
        } else {
            format!("{}:{}", r.path.display(), r.line)
        };
        crate::embed::warn_mask_cut_at(enc, &at, (h, t), count - 1);
    }
    Ok(())
}

/// `a`, `a and b`, `a, b and c`: names for a sentence.
fn and_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_string(),
        None => String::new(),
    }
}

/// The refusal of a pair whose prompt is longer than `limit` tokens (the encoder's
/// [`RelationEncoder::max_tokens`]), at line `line` of `path`.
fn prompt_too_long(path: &Path, line: usize, (head, tail): (&str, &str), limit: usize) -> Error {
    Error::PromptTooLong {
        location: format!("{}:{line}", path.display()),
        hint: "",
        head: head.to_string(),
        tail: tail.to_string(),
        limit,
    }
}

/// Keeps the first occurrence of each of `r`'s positives; the warning naming the repeats
/// (file and line of the relation, positions counted from 1), or `None` when there are none.
fn dedupe_positives(r: &mut RelationExamples) -> Option<String> {
    let repeats = repeated_pairs(&r.positives);
    if repeats.is_empty() {
        return None;
    }
    let named: Vec<String> = repeats
        .iter()
        .take(NAMED_CONTRADICTIONS)
        .map(|&(first, again)| {
            let (h, t) = &r.positives[again];
            format!(
                "({h:?}, {t:?}) (positive {} repeats positive {})",
                again + 1,
                first + 1
            )
        })
        .collect();
    let more = repeats.len() - named.len();
    let warning = format!(
        "{}:{}: relation {}: {} repeated among its validation positives, scored once: {}{}",
        r.path.display(),
        r.line,
        r.relation_type,
        if repeats.len() == 1 {
            "1 pair is".to_string()
        } else {
            format!("{} pairs are", repeats.len())
        },
        named.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    let mut seen = std::collections::HashSet::new();
    r.positives.retain(|p| seen.insert(p.clone()));
    Some(warning)
}

/// The repeats in `pairs`: (index of the first occurrence, index of the repeat), in order.
fn repeated_pairs(pairs: &[(String, String)]) -> Vec<(usize, usize)> {
    let mut first: HashMap<&(String, String), usize> = HashMap::new();
    let mut repeats = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        match first.get(p) {
            Some(&f) => repeats.push((f, i)),
            None => {
                first.insert(p, i);
            }
        }
    }
    repeats
}

/// The warning about the validation relations of `path` that the SemEval score leaves out
/// (fewer than two distinct positives), `total` relations in all: the first few by name and
/// line, and what that leaves.
fn unscored_warning(path: &Path, unscored: &[&RelationExamples], total: usize) -> String {
    let named: Vec<String> = unscored
        .iter()
        .take(NAMED_CONTRADICTIONS)
        .map(|r| format!("{} (line {})", r.relation_type, r.line))
        .collect();
    let more = unscored.len() - named.len();
    let what = if unscored.len() == total {
        "no SemEval validation score can be computed, and the analogy validation score alone \
         selects the checkpoint"
            .to_string()
    } else {
        format!(
            "the SemEval validation score covers the other {}",
            total - unscored.len()
        )
    };
    format!(
        "{}: {} of {total} validation relations {} fewer than 2 distinct positives and {} left \
         out of the SemEval score (it compares each positive with another positive of its \
         relation): {}{}; {what}",
        path.display(),
        unscored.len(),
        if unscored.len() == 1 { "has" } else { "have" },
        if unscored.len() == 1 { "is" } else { "are" },
        named.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

/// Metrics of one epoch.
#[derive(Debug, Clone, Serialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub mean_loss: f64,
    /// Steps taken in the epoch.
    pub steps: usize,
    /// Wall-clock seconds of the epoch's training steps.
    pub train_seconds: f64,
    /// Validation after the epoch.
    pub validation: Validation,
}

/// Progress reports from [`train`].
pub enum Event<'a> {
    /// An epoch begins with this many steps.
    EpochStart {
        /// 1-based epoch.
        epoch: usize,
        /// Steps in the epoch.
        steps: usize,
    },
    /// A step finished with this loss.
    Step {
        /// The step's loss.
        loss: f32,
    },
    /// A validation begins: of the base model (`epoch` 0), or after epoch `epoch`. It can
    /// take long (minutes with a large base), so a display says so.
    Validating {
        /// 0 for the base model, else the 1-based epoch just trained.
        epoch: usize,
    },
    /// The base model's validation, before training.
    Baseline(&'a Validation),
    /// An epoch finished.
    Epoch(&'a EpochMetrics),
}

/// A model being trained, with its data and optimiser.
pub struct Trainer {
    enc: RelationEncoder,
    cfg: TrainConfig,
    relations: Vec<RelationExamples>,
    pos_toks: Vec<Vec<Vec<u32>>>,
    neg_toks: Vec<Vec<Vec<u32>>>,
    opt: AdamW,
    rng: Rng,
    /// The hand-written CPU path; `None` when training through candle's autograd.
    fast: Option<CpuTrainModel>,
    dropout: Dropout,
    tokens: u64,
    /// Steps of the whole run ([`TrainConfig::total_steps`]), for the learning-rate schedule.
    total_steps: usize,
}

impl Trainer {
    /// Loads the training relations (checked by [`check_training_relations`] first, so that
    /// bad data is reported before the model is read) and the base model, trainable.
    pub fn new(cfg: &TrainConfig) -> Result<Self> {
        cfg.validate()?;
        let relations = load_training_relations(cfg)?;
        check_training_relations(cfg, &relations)?;
        // Before the model is read: the refusal needs only the relation count.
        cfg.total_steps(relations.len())?;
        let device = crate::device::parse_device(&cfg.device)?;
        let enc = RelationEncoder::load(
            &cfg.base,
            &EncoderOptions {
                template: cfg.template.clone(),
                aggregation: Some(cfg.aggregation),
                batch_size: cfg.batch_size,
                device,
                trainable: true,
                // Training and its validation work on the prompt vectors the loss shapes; a
                // base's offset weight is not carried over (benchmarks/combined_sweep.sh
                // chooses one for the trained model).
                offset_weight: Some(0.0),
                dtype: crate::precision::Dtype::F32,
            },
        )?;
        Self::with_encoder(enc, relations, cfg)
    }

    /// A trainer for an already loaded trainable encoder and training relations.
    pub fn with_encoder(
        enc: RelationEncoder,
        relations: Vec<RelationExamples>,
        cfg: &TrainConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        let total_steps = cfg.total_steps(relations.len())?;
        let vars = enc.encoder().vars().ok_or_else(|| Error::InvalidArgument {
            flag: "model".into(),
            message: "the encoder was not loaded trainable".into(),
        })?;
        let opt = AdamW::new(vars, cfg.freeze_embeddings)?;
        let tok = |pairs: &[(String, String)]| -> Result<Vec<Vec<u32>>> {
            Ok(enc.tokenize(pairs)?.into_iter().map(|t| t.ids).collect())
        };
        warn_training_mask_cut(&enc, &relations)?;
        let mut pos_toks = Vec::new();
        let mut neg_toks = Vec::new();
        for r in &relations {
            if r.positives.is_empty() {
                return Err(Error::InvalidArgument {
                    flag: "--data".into(),
                    message: format!("relation {} has no positives", r.relation_type),
                });
            }
            // The encoder names only the pair; the relation's file and line say where it is.
            let at = |e: Error| match e {
                Error::PromptTooLong {
                    head, tail, limit, ..
                } if !r.path.as_os_str().is_empty() => {
                    prompt_too_long(&r.path, r.line, (&head, &tail), limit)
                }
                e => e,
            };
            pos_toks.push(tok(&r.positives).map_err(at)?);
            neg_toks.push(tok(&r.negatives).map_err(at)?);
        }
        let model_cfg = enc.encoder().config();
        let from_config = |key: &str| {
            model_cfg
                .raw
                .get(key)
                .and_then(|v| v.as_f64())
                .unwrap_or(0.1) as f32
        };
        let mut dropout = match cfg.dropout {
            Some(p) => Dropout {
                hidden: p as f32,
                attention: p as f32,
            },
            None => Dropout {
                hidden: from_config("hidden_dropout_prob"),
                attention: from_config("attention_probs_dropout_prob"),
            },
        };
        let fast = if enc.encoder().device().is_cpu() && !cfg.autograd {
            Some(CpuTrainModel::new(
                &enc.encoder().named_tensors(),
                model_cfg.num_attention_heads,
                model_cfg.layer_norm_eps,
                dropout,
                cfg.freeze_embeddings,
            )?)
        } else {
            if dropout != Dropout::NONE {
                tracing::warn!("the candle autograd path has no dropout; training without it");
            }
            dropout = Dropout::NONE;
            None
        };
        Ok(Trainer {
            enc,
            cfg: cfg.clone(),
            relations,
            pos_toks,
            neg_toks,
            opt,
            rng: Rng::new(cfg.seed),
            fast,
            dropout,
            tokens: 0,
            total_steps,
        })
    }

    /// The model being trained.
    pub fn encoder(&self) -> &RelationEncoder {
        &self.enc
    }

    /// Number of training relations (steps per epoch).
    pub fn num_relations(&self) -> usize {
        self.relations.len()
    }

    /// Optimisation steps of the whole run (epochs × relations).
    pub fn total_steps(&self) -> usize {
        self.total_steps
    }

    /// Optimiser steps taken so far.
    pub fn steps_taken(&self) -> usize {
        match &self.fast {
            Some(f) => f.steps(),
            None => self.opt.steps(),
        }
    }

    /// The relation order of the next epoch (consumes randomness).
    pub fn epoch_order(&mut self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.relations.len()).collect();
        self.rng.shuffle(&mut order);
        order
    }

    /// Embeds sequences with gradients, in length-sorted chunks of the batch size; rows come
    /// back in input order.
    fn embed_train(&self, seqs: &[&[u32]]) -> Result<Tensor> {
        let lengths: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let batches = length_sorted_batches(&lengths, self.cfg.batch_size);
        let mut parts = Vec::with_capacity(batches.len());
        let mut order = Vec::with_capacity(seqs.len());
        for b in &batches {
            let chunk: Vec<&[u32]> = b.iter().map(|&i| seqs[i]).collect();
            parts.push(self.enc.forward_pooled(&chunk, Mode::Train)?);
            order.extend_from_slice(b);
        }
        let all = Tensor::cat(&parts, 0)?;
        // all[k] is seqs[order[k]]; invert the permutation.
        let mut inverse = vec![0u32; seqs.len()];
        for (k, &i) in order.iter().enumerate() {
            inverse[i] = k as u32;
        }
        let inv = Tensor::from_vec(inverse, seqs.len(), all.device())?;
        Ok(all.index_select(&inv, 0)?)
    }

    /// Samples relation `r`'s batch: positives first, then negatives (relation, is a
    /// positive of another relation, index). Consumes randomness.
    fn sample_batch(&mut self, r: usize) -> Result<StepBatch> {
        let pos_idx = self
            .rng
            .sample(self.pos_toks[r].len(), self.cfg.num_positive);
        // Candidate negatives: (relation, is_positive, index).
        let mut pool: Vec<(usize, bool, usize)> =
            (0..self.neg_toks[r].len()).map(|i| (r, false, i)).collect();
        if self.cfg.augment_negative_by_positive {
            for o in 0..self.relations.len() {
                if o != r {
                    pool.extend((0..self.pos_toks[o].len()).map(|i| (o, true, i)));
                }
            }
        }
        if pool.is_empty() {
            // check_training_relations refuses this before training; a caller of
            // with_encoder that skipped it still gets the relation's file and line.
            let rel = &self.relations[r];
            return Err(Error::Parse {
                path: rel.path.clone(),
                line: rel.line,
                message: format!("relation {} has no negatives to sample", rel.relation_type),
            });
        }
        let neg: Vec<(usize, bool, usize)> = self
            .rng
            .sample(pool.len(), self.cfg.num_negative)
            .into_iter()
            .map(|i| pool[i])
            .collect();
        let mut seqs: Vec<Vec<u32>> = pos_idx
            .iter()
            .map(|&i| self.pos_toks[r][i].clone())
            .collect();
        for &(o, is_pos, i) in &neg {
            seqs.push(if is_pos {
                self.pos_toks[o][i].clone()
            } else {
                self.neg_toks[o][i].clone()
            });
        }
        let rows: BTreeSet<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
        Ok(StepBatch {
            relation: r,
            seqs,
            num_positive: pos_idx.len(),
            negatives: neg,
            rows: rows.into_iter().collect(),
        })
    }

    /// The configured loss of a sampled batch whose prompts embedded to `emb`.
    fn batch_loss(&self, batch: &StepBatch, emb: &Tensor) -> Result<Tensor> {
        let np = batch.num_positive;
        let p = emb.narrow(0, 0, np)?;
        let n = emb.narrow(0, np, batch.negatives.len())?;
        Ok(match self.cfg.loss {
            LossKind::Nce => info_nce(&p, &n, self.cfg.temperature)?,
            LossKind::Iloob => info_loob(&p, &n, self.cfg.temperature)?,
            LossKind::Triplet => {
                let mut loss = triplet(&p, &n, self.cfg.margin)?;
                // Parent level: positives of sibling relations vs positives of other parents,
                // taken from the sampled (augmented) negatives.
                let parent = self.relations[batch.relation].parent();
                let (mut sib, mut other) = (Vec::new(), Vec::new());
                for (k, &(o, is_pos, _)) in batch.negatives.iter().enumerate() {
                    if is_pos && o != batch.relation {
                        if self.relations[o].parent() == parent {
                            sib.push(k as u32);
                        } else {
                            other.push(k as u32);
                        }
                    }
                }
                if !sib.is_empty() && !other.is_empty() {
                    let dev = n.device();
                    let s = n.index_select(&Tensor::from_vec(sib.clone(), sib.len(), dev)?, 0)?;
                    let o =
                        n.index_select(&Tensor::from_vec(other.clone(), other.len(), dev)?, 0)?;
                    loss = (loss + parent_triplet(&p, &s, &o, self.cfg.margin)?)?;
                }
                loss
            }
        })
    }

    /// Samples relation `r`'s batch, embeds it through candle's autograd and returns the loss
    /// (with its graph) and the sorted distinct token ids it used. Consumes randomness.
    pub fn loss_for(&mut self, r: usize) -> Result<(Tensor, Vec<u32>)> {
        self.sync()?;
        let batch = self.sample_batch(r)?;
        let seqs: Vec<&[u32]> = batch.seqs.iter().map(|s| s.as_slice()).collect();
        let emb = self.embed_train(&seqs)?;
        let loss = self.batch_loss(&batch, &emb)?;
        Ok((loss, batch.rows))
    }

    /// The prompts of a batch in the CPU path's form.
    fn prompts<'a>(&self, seqs: &'a [Vec<u32>]) -> Vec<Prompt<'a>> {
        let (mask, pad) = (
            self.enc.tokenizer().mask_id(),
            self.enc.tokenizer().pad_id(),
        );
        let agg = self.enc.aggregation();
        seqs.iter()
            .map(|s| Prompt {
                ids: s,
                positions: self.enc.encoder().position_ids(s, s.len()),
                pool: (0..s.len()).map(|i| agg.selects(s, i, mask, pad)).collect(),
            })
            .collect()
    }

    /// One optimisation step on relation `r`; returns the loss before the update.
    pub fn train_step(&mut self, r: usize) -> Result<f32> {
        let step = self.steps_taken();
        let lr = lr_at(
            self.cfg.lr,
            self.cfg.warmup,
            step,
            self.cfg.lr_schedule,
            self.total_steps,
        );
        if self.fast.is_some() {
            let batch = self.sample_batch(r)?;
            self.tokens += batch.seqs.iter().map(|s| s.len() as u64).sum::<u64>();
            let prompts = self.prompts(&batch.seqs);
            let seed = self.cfg.seed ^ ((step as u64 + 1) << 20);
            let Some(fast) = self.fast.as_mut() else {
                return Err(Error::InvalidArgument {
                    flag: "--device".into(),
                    message: "the CPU training path is not set up".into(),
                });
            };
            let (pooled, state) = fast.forward(&prompts, self.cfg.batch_size, seed)?;
            let h = self.enc.dim();
            let var = Var::from_vec(pooled, (batch.seqs.len(), h), &candle_core::Device::Cpu)?;
            let loss = self.batch_loss(&batch, var.as_tensor())?;
            let value = finite_loss(&loss, step, &self.cfg)?;
            let grads = loss.backward()?;
            let d = match grads.get(var.as_tensor()) {
                Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
                None => vec![0f32; batch.seqs.len() * h],
            };
            if let Some(fast) = self.fast.as_mut() {
                fast.backward_and_step(&state, &d, lr, &batch.rows)?;
            }
            return Ok(value);
        }
        let batch = self.sample_batch(r)?;
        self.tokens += batch.seqs.iter().map(|s| s.len() as u64).sum::<u64>();
        let seqs: Vec<&[u32]> = batch.seqs.iter().map(|s| s.as_slice()).collect();
        let emb = self.embed_train(&seqs)?;
        let loss = self.batch_loss(&batch, &emb)?;
        let value = finite_loss(&loss, step, &self.cfg)?;
        let grads = loss.backward()?;
        self.opt.step(&grads, lr, &batch.rows)?;
        Ok(value)
    }

    /// Copies the CPU path's parameters into the encoder (before validating or saving).
    fn sync(&self) -> Result<()> {
        if let (Some(fast), Some(vars)) = (&self.fast, self.enc.encoder().vars()) {
            fast.sync_to(vars)?;
        }
        Ok(())
    }

    /// Prompt tokens encoded in training steps so far.
    pub fn tokens_processed(&self) -> u64 {
        self.tokens
    }

    /// The dropout the run applies.
    pub fn dropout(&self) -> Dropout {
        self.dropout
    }

    /// Scores the current model on the validation material.
    pub fn validate(&self, data: &ValidationData) -> Result<Validation> {
        self.sync()?;
        let frozen = self.enc.frozen_copy()?;
        validate(&frozen, data, self.cfg.augment_negative_by_positive)
    }

    /// [`Trainer::validate`], looking at `stop` before each of its sets: `None` when a stop
    /// was asked for ([`validate_unless`]).
    pub fn validate_unless(
        &self,
        data: &ValidationData,
        stop: &AtomicBool,
    ) -> Result<Option<Validation>> {
        self.sync()?;
        let frozen = self.enc.frozen_copy()?;
        validate_unless(&frozen, data, self.cfg.augment_negative_by_positive, stop)
    }

    /// Writes the current model as a Hugging Face directory (config.json with
    /// `relbert_config`, model.safetensors, tokenizer files) into `dir`, which must exist;
    /// float16 weights with the run's `half`.
    pub fn save_model(&self, dir: &Path) -> Result<()> {
        self.save_model_as(dir, self.cfg.half)
    }

    /// The first weight (tensor name, flat index, value) that float16 cannot hold, if any:
    /// what `--half` would save as infinity. Only the parameters are saved as float16; the
    /// base's other tensors are saved as loaded ([`crate::encoder::Encoder::kept_tensors`]).
    pub fn first_weight_beyond_f16(&self) -> Result<Option<(String, usize, f32)>> {
        self.sync()?;
        let mut tensors = self.enc.encoder().named_tensors();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, t) in tensors {
            if let Some((index, value)) = crate::averaging::first_beyond_f16(&t)? {
                return Ok(Some((name, index, value)));
            }
        }
        Ok(None)
    }

    /// [`Trainer::save_model`] with the weights' precision given.
    pub fn save_model_as(&self, dir: &Path, half: bool) -> Result<()> {
        self.sync()?;
        let files = self.enc.files();
        let config = ModelConfig::from_file(&files.config)?;
        let json = config.to_json_with(&self.enc.relbert_config());
        let path = dir.join("config.json");
        let text = serde_json::to_string_pretty(&json).map_err(|e| Error::Config {
            path: path.clone(),
            message: format!("cannot serialise: {e}"),
        })?;
        // The base model's `torch_dtype`/`dtype` describe its weights, not these: a float16
        // base saved as float32 (or the reverse with --half) said the wrong type.
        let text = crate::averaging::text_with_dtype(&text, half);
        std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))?;
        self.enc
            .encoder()
            .save_safetensors(&dir.join("model.safetensors"), half)?;
        ModelFiles::copy_tokenizer_files(self.enc.dir(), dir)
    }
}

/// Scores `enc` on the validation material (see [`Validation`]).
pub fn validate(enc: &RelationEncoder, data: &ValidationData, augment: bool) -> Result<Validation> {
    validate_unless(enc, data, augment, &AtomicBool::new(false))?
        .ok_or_else(|| Error::Internal("a validation without a stop request was stopped".into()))
}

/// [`validate`], looking at `stop` before each analogy set and before the SemEval score:
/// `None` once a stop was asked for. A set is embedded whole once started: its pairs go
/// through the encoder in length-sorted batches of the whole set, and splitting it would
/// change those batches (and so, in the last bits, the scores).
pub fn validate_unless(
    enc: &RelationEncoder,
    data: &ValidationData,
    augment: bool,
    stop: &AtomicBool,
) -> Result<Option<Validation>> {
    let stopped = || stop.load(Ordering::SeqCst);
    let mut analogy = BTreeMap::new();
    let mut counts = Vec::new();
    for (name, _, qs) in &data.analogy {
        if stopped() {
            return Ok(None);
        }
        let pairs = distinct_pairs(qs);
        let vecs = enc.embed_raw(&pairs)?;
        let map: HashMap<_, _> = pairs.into_iter().zip(vecs).collect();
        let acc = accuracy_with_vectors(qs, &map, Similarity::Cosine);
        counts.push((acc.right, acc.n));
        analogy.insert(name.clone(), acc.accuracy);
    }
    let analogy_mean =
        (!analogy.is_empty()).then(|| analogy.values().sum::<f64>() / analogy.len() as f64);
    let analogy_pooled = pooled_accuracy(&counts);
    if stopped() {
        return Ok(None);
    }
    let semeval = semeval_score(enc, &data.semeval, augment)?;
    // ValidationData::load refuses material with neither score.
    let score = analogy_mean.or(semeval).ok_or_else(|| {
        Error::Internal("validation material with neither an analogy nor a SemEval score".into())
    })?;
    Ok(Some(Validation {
        score,
        analogy,
        analogy_mean,
        analogy_pooled,
        semeval,
    }))
}

/// Accuracy over the union of question sets given as (answered right, questions) each; `None`
/// when there are no questions.
pub fn pooled_accuracy(sets: &[(usize, usize)]) -> Option<f64> {
    let (right, n) = sets
        .iter()
        .fold((0, 0), |(r, t), &(right, n)| (r + right, t + n));
    (n > 0).then(|| right as f64 / n as f64)
}

/// For each validation positive: is another positive of its relation closer (cosine) than
/// every negative of the relation (plus, with `augment`, every other relation's positives)?
/// Returns the share of yes, or `None` when no relation has two distinct positives. A
/// repeated positive counts once: "another positive" is another pair, not another place in
/// the list (a repeat was its own nearest positive, at cosine 1).
pub fn semeval_score(
    enc: &RelationEncoder,
    relations: &[RelationExamples],
    augment: bool,
) -> Result<Option<f64>> {
    let mut pairs = Vec::new();
    for r in relations {
        pairs.extend(r.positives.iter().cloned());
        pairs.extend(r.negatives.iter().cloned());
    }
    let vecs = enc.embed_raw(&pairs)?;
    let map: HashMap<_, _> = pairs.into_iter().zip(vecs).collect();
    let v = |p: &(String, String)| map.get(p).map(|x| x.as_slice()).unwrap_or(&[]);
    let (mut yes, mut total) = (0usize, 0usize);
    for (ri, r) in relations.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        let positives: Vec<&(String, String)> =
            r.positives.iter().filter(|p| seen.insert(*p)).collect();
        if positives.len() < 2 {
            continue;
        }
        let mut negs: Vec<&[f32]> = r.negatives.iter().map(v).collect();
        if augment {
            for (oi, o) in relations.iter().enumerate() {
                if oi != ri {
                    negs.extend(o.positives.iter().map(v));
                }
            }
        }
        for (i, p) in positives.iter().enumerate() {
            let best_pos = positives
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, q)| cosine(v(p), v(q)))
                .fold(f64::NEG_INFINITY, f64::max);
            let best_neg = negs
                .iter()
                .map(|n| cosine(v(p), n))
                .fold(f64::NEG_INFINITY, f64::max);
            total += 1;
            if best_pos > best_neg {
                yes += 1;
            }
        }
    }
    Ok((total > 0).then(|| yes as f64 / total as f64))
}

/// Writes a file atomically (temporary file in the same directory, then rename; the caller
/// holds the output's writer lock, so the fixed temporary name is its own). The temporary
/// name (`.metrics.json.tmp` for `metrics.json`) is one of
/// [`crate::output::MODEL_DIR_TEMPS`], so a run killed before the rename leaves a model
/// directory that `--force` still recognises as relbert's.
fn write_json_atomically(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = sibling_named(path, "tmp");
    write_json(&tmp, value)?;
    // Synced before the rename: after a crash the record is the old one or the new one,
    // never an empty file under its name (model directories are synced the same way,
    // `write_dir_atomically`).
    crate::output::sync_path(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Removes the temporary files of [`write_json_atomically`] that a killed run left in the
/// model directory `dir` (the caller holds its writer lock). Only regular files of exactly
/// those names go.
fn clear_model_dir_temps(dir: &Path) -> Result<()> {
    for name in crate::output::MODEL_DIR_TEMPS {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// The directory name of epoch `epoch`'s checkpoint under [`TrainConfig::checkpoint_dir`] in
/// a run of `epochs` epochs: zero-padded to the width of `epochs` (at least two digits), so
/// that a shell glob lists a run's checkpoints in order (`epoch-099` before `epoch-100`).
pub fn epoch_dir_name(epoch: usize, epochs: usize) -> String {
    let width = epochs.max(epoch).to_string().len().max(2);
    format!("epoch-{epoch:0width$}")
}

/// The suffixes of the hidden directories a killed run leaves beside its checkpoints:
/// `.epoch-NN.tmp` and `.epoch-NN.old` of [`write_dir_atomically`], and `.epoch-NN.removing`,
/// an earlier run's checkpoint being removed.
const CHECKPOINT_LEFTOVER_TAGS: [&str; 3] = ["tmp", "old", "removing"];

/// The tag of the removal name, `.epoch-NN.removing`.
const REMOVING: &str = "removing";

/// Whether `name` is one of the hidden names of [`CHECKPOINT_LEFTOVER_TAGS`]: exactly
/// `.epoch-<digits>.<tag>`.
fn is_checkpoint_leftover(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(".epoch-") else {
        return false;
    };
    let Some((digits, tag)) = rest.rsplit_once('.') else {
        return false;
    };
    // `.epoch-NN.removing` may come from any `epoch-*` checkpoint (a look-alike name that
    // held a relbert model); the write temporaries only from this run's `epoch-NN`.
    let epoch_like = if tag == REMOVING {
        // Any `epoch-*` name, a bare `epoch-` too (`.epoch-.removing`).
        true
    } else {
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    epoch_like && CHECKPOINT_LEFTOVER_TAGS.contains(&tag)
}

/// Checks that an `epoch-*` entry of the checkpoint directory is relbert's to remove: a
/// model directory relbert wrote ([`crate::output::recognise_model_dir`]), or what is left
/// of one that a killed run was removing file by file (an earlier build removed each
/// checkpoint in place): nothing but files relbert writes in a model directory, among them
/// its training record, or nothing at all. A directory with relbert's file names but no
/// record of a training run could be anyone's copy of a model, so it stays refused.
fn recognise_checkpoint(path: &Path) -> Result<()> {
    let whole = crate::output::recognise_model_dir(path);
    if whole.is_ok() {
        return whole;
    }
    let record = ["training_config.json", "epoch_metrics.json"]
        .iter()
        .any(|f| path.join(f).is_file());
    let empty = std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none());
    if (record || empty)
        && crate::output::recognise_model_leftover(path, "a checkpoint directory").is_ok()
    {
        return Ok(());
    }
    whole
}

/// The hidden leftovers of killed runs in the checkpoint directory `dir`
/// ([`is_checkpoint_leftover`]), sorted, each checked to hold nothing but model files
/// (refused otherwise, before any is removed); none when `dir` does not exist.
fn checkpoint_leftovers(dir: &Path) -> Result<Vec<PathBuf>> {
    let found = entries_named(dir, is_checkpoint_leftover)?;
    for path in &found {
        crate::output::recognise_model_leftover(path, "a temporary checkpoint")?;
    }
    Ok(found)
}

/// Removes the checkpoint directories `stale` (each checked by [`recognise_checkpoint`])
/// and the hidden leftovers of killed runs in `dir`, in a way a kill cannot spoil: every
/// stale `epoch-NN` is first renamed to `.epoch-NN.removing` (one atomic rename each), and
/// only then deleted, so a run killed part way leaves whole checkpoints or hidden names the
/// next run clears, never a half-deleted `epoch-NN` among the new run's checkpoints.
fn remove_checkpoints(dir: &Path, stale: &[PathBuf]) -> Result<()> {
    for path in stale {
        recognise_checkpoint(path)?;
    }
    // Checked before anything moves: a leftover holding a user's file stops the run here.
    let mut doomed = checkpoint_leftovers(dir)?;
    for path in stale {
        let aside = sibling_named(path, REMOVING);
        // A leftover of this name is removed first so the rename below has its name; it was
        // checked with the others in `doomed`, or is checked here (a stale entry whose name
        // `is_checkpoint_leftover` does not take, such as a bare `epoch-`).
        if std::fs::symlink_metadata(&aside).is_ok() {
            if !doomed.contains(&aside) {
                crate::output::recognise_model_leftover(&aside, "a temporary checkpoint")?;
            }
            std::fs::remove_dir_all(&aside).map_err(|e| Error::io(&aside, e))?;
            doomed.retain(|d| *d != aside);
        }
        std::fs::rename(path, &aside).map_err(|e| Error::io(path, e))?;
        doomed.push(aside);
    }
    for path in &doomed {
        std::fs::remove_dir_all(path).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// What a finished (or interrupted) run reached.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// How the checkpoint was selected ([`ValidationData::selection_metric`]).
    pub selection_metric: String,
    /// The analogy datasets whose validation accuracies were averaged to select it
    /// ([`ValidationData::selection_datasets`]; none: the SemEval score selected).
    pub selection_datasets: Vec<String>,
    /// The base model's validation before training; `None` when the run was stopped
    /// before it was done.
    pub baseline: Option<Validation>,
    /// Per-epoch metrics.
    pub epochs: Vec<EpochMetrics>,
    /// The epoch whose checkpoint is in the output directory.
    pub best_epoch: Option<usize>,
    /// Its selection score.
    pub best_score: Option<f64>,
    /// The run stopped early on request (Ctrl-C).
    pub interrupted: bool,
    /// The run ran every epoch and wrote this record at its end. Every record written
    /// during the run says `false`, so the model a killed run leaves (SIGKILL, the OOM
    /// killer, a power loss: nothing is recorded then) is not taken for a finished one.
    pub finished: bool,
    /// Why the run failed after it had saved a model (a full disk, a loss that overflowed):
    /// the model beside this record is then epoch `best_epoch`'s of the epochs listed, not
    /// a finished run's. `None` for a run that finished or was stopped.
    pub failed: Option<String>,
}

impl TrainReport {
    /// The kept model's selection score and the base's, when the model scores below the
    /// base it was trained from (a learning rate too high, too little data): the model is
    /// saved as asked, and a warning says so.
    pub fn worse_than_base(&self) -> Option<(f64, f64)> {
        let (best, base) = (self.best_score?, self.baseline.as_ref()?.score);
        (best < base).then_some((best, base))
    }
}

/// Refuses, before any work, output paths that would destroy what the run reads or writes:
/// `out` and the checkpoint directory one inside the other (the run would lock itself out,
/// or the final model replace an epoch's checkpoint), and the base model inside `out` or
/// inside the checkpoint directory (`--force` would replace the model being trained from).
/// Paths are compared as [`real_path`] resolves them, so `./m`, `m`, `../here/m` and a
/// symbolic link to it (or to a directory above it) are one, whether they exist yet or not.
pub fn check_output_paths(cfg: &TrainConfig, out: &Path) -> Result<()> {
    let o = real_path(out);
    if let Some(dir) = &cfg.checkpoint_dir {
        let c = real_path(dir);
        if o.starts_with(&c) || c.starts_with(&o) {
            return Err(Error::InvalidArgument {
                flag: "--checkpoint-dir".into(),
                message: format!(
                    "{} and --out {} must be apart: neither the same directory nor one inside \
                     the other",
                    dir.display(),
                    out.display()
                ),
            });
        }
    }
    // A base that does not exist fails later, when it is loaded, with its own message.
    let Ok(base) = cfg.base.canonicalize() else {
        return Ok(());
    };
    // `base` exists, so it can only be inside an `out` that exists too.
    if base.starts_with(&o) {
        return Err(Error::InvalidArgument {
            flag: "--out".into(),
            message: format!(
                "{} is (or holds) the base model --base {}, which the run would replace; \
                 choose another --out",
                out.display(),
                cfg.base.display()
            ),
        });
    }
    if let Some(dir) = &cfg.checkpoint_dir {
        if base.starts_with(real_path(dir)) {
            return Err(Error::InvalidArgument {
                flag: "--checkpoint-dir".into(),
                message: format!(
                    "{} holds the base model --base {}, and its epoch checkpoints are \
                     replaced by the run; copy the base elsewhere or choose another \
                     --checkpoint-dir",
                    dir.display(),
                    cfg.base.display()
                ),
            });
        }
    }
    Ok(())
}

/// `p` as the file system will resolve it, whether it exists yet or not: the real path
/// ([`Path::canonicalize`]) of its deepest existing ancestor, then the rest of `p`, which
/// does not exist and so holds no link, with its `.` and `..` taken by name.
/// (`std::path::absolute` keeps `..` and links: `--out runs/m --checkpoint-dir rl/m/ck`, `rl`
/// a link to `runs`, were taken for apart, and replacing `--out` deleted the checkpoints.)
pub fn real_path(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let parts: Vec<std::path::Component> = abs.components().collect();
    for known in (1..=parts.len()).rev() {
        let Ok(mut real) = parts[..known].iter().collect::<PathBuf>().canonicalize() else {
            continue;
        };
        for part in &parts[known..] {
            match part {
                std::path::Component::ParentDir => {
                    real.pop();
                }
                std::path::Component::Normal(name) => real.push(name),
                _ => {}
            }
        }
        return real;
    }
    abs
}

/// Checks that the model directory `out` may be written: absent, or a model directory
/// relbert wrote ([`crate::output::recognise_model_dir`]) that `force` allows replacing.
/// Whether it is relbert's is checked first, so that `--force` is suggested only where it
/// would work: a user's directory (or an empty one) is refused as not relbert's whatever the
/// flags. A symbolic link is refused as a link, saying where it points: the output is
/// renamed into place, which would replace the link, not follow it to the directory.
pub fn check_model_output(out: &Path, force: bool) -> Result<()> {
    // Refused now, not when the model is written after all the work.
    crate::output::check_model_leftovers(out)?;
    let Ok(md) = std::fs::symlink_metadata(out) else {
        return Ok(());
    };
    if md.file_type().is_symlink() {
        let target = std::fs::read_link(out).map_err(|e| Error::io(out, e))?;
        let (leads_to, advice) = if out.is_dir() {
            (
                "a directory",
                "to replace the model it points to, give that directory's own path",
            )
        } else if out.exists() {
            ("something that is not a directory", "give another --out")
        } else {
            (
                "nothing (a dangling link)",
                "remove the link or give another --out",
            )
        };
        return Err(Error::NotOurs {
            path: out.to_path_buf(),
            what: "a model directory",
            why: format!(
                "it is a symbolic link to {} ({leads_to}); relbert does not follow it: the new \
                 model is renamed into place, which would replace the link itself; {advice}",
                target.display()
            ),
        });
    }
    crate::output::recognise_model_dir(out)?;
    if !force {
        return Err(Error::Exists {
            path: out.to_path_buf(),
        });
    }
    Ok(())
}

/// The entries of the checkpoint directory `dir` named `epoch-*` (what [`epoch_dir_name`]
/// names, or a user's look-alike), sorted; none when `dir` does not exist.
fn existing_checkpoints(dir: &Path) -> Result<Vec<PathBuf>> {
    entries_named(dir, |name| name.starts_with("epoch-"))
}

/// The entries of `dir` whose names `keep` takes, sorted; none when `dir` does not exist.
fn entries_named(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut found = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if keep(&entry.file_name().to_string_lossy()) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Trains per `cfg`, keeping the best checkpoint in `out` (refused if it exists, unless
/// `force`). Checks `stop` between steps, and before and during the base model's validation
/// (a run stopped then returns a report without a baseline); on a stop the best checkpoint so
/// far stays.
///
/// With a checkpoint directory, existing `epoch-*` entries there are refused unless `force`;
/// with `force` they must all be model directories relbert wrote
/// ([`crate::output::recognise_model_dir`], or what a killed run left of one it was removing,
/// see `recognise_checkpoint`), and all of them (not only the epochs this run reaches) are
/// removed just before this run writes its first checkpoint (`remove_checkpoints`: renamed
/// aside first, so a kill cannot leave a half-deleted one), so the directory never mixes two
/// runs' checkpoints, and a run that fails or is stopped during its first epoch leaves them.
/// The hidden leftovers of killed runs there go at the same time.
pub fn train(
    cfg: &TrainConfig,
    out: &Path,
    force: bool,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<TrainReport> {
    train_keeping(cfg, out, force, stop, on_event).map_err(|f| f.error)
}

/// The model a run that failed after saving leaves in `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptModel {
    /// The epoch whose model `out` holds (the best one saved before the failure).
    pub epoch: usize,
    /// The epochs that had run, validated, when the run failed.
    pub epochs_run: usize,
    /// Whether the failure was recorded in `out`'s metrics.json (else it was warned about).
    pub recorded: bool,
}

/// A failed [`train_keeping`]: the error, and what `out` keeps of the run (`None` when the
/// run saved nothing there, or `out` is no longer the directory it saved).
#[derive(Debug)]
pub struct TrainFailure {
    /// Why the run failed.
    pub error: Error,
    /// This run's model left in `out`, when there is one.
    pub kept: Option<KeptModel>,
}

/// [`train`], saying with a failure which epoch's model `out` keeps: taken from the run
/// itself, not read back from `out` (a record there may be an earlier run's). The failure is
/// boxed: [`Error`] is large, and this is the rare path.
pub fn train_keeping(
    cfg: &TrainConfig,
    out: &Path,
    force: bool,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> std::result::Result<TrainReport, Box<TrainFailure>> {
    let mut kept = None;
    train_run(cfg, out, force, stop, on_event, &mut kept)
        .map_err(|error| Box::new(TrainFailure { error, kept }))
}

/// The body of [`train_keeping`]; a failure after saving sets `kept`.
fn train_run(
    cfg: &TrainConfig,
    out: &Path,
    force: bool,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
    kept: &mut Option<KeptModel>,
) -> Result<TrainReport> {
    check_output_paths(cfg, out)?;
    cfg.validate()?;
    // One writer per output: a second run to the same --out fails here, naming the first.
    let _lock = relbert_index::OutputLock::acquire(out)?;
    check_model_output(out, force)?;
    // An earlier run killed while rewriting metrics.json left its temporary file in `out`
    // (recognised by check_model_output). Replacing `out` would remove it too, but this run
    // may fail before it writes `out`: cleared now, the leftover does not outlive it.
    if force && out.is_dir() {
        clear_model_dir_temps(out)?;
    }
    let (_checkpoint_lock, stale_checkpoints) = match &cfg.checkpoint_dir {
        Some(dir) => {
            check_checkpoint_dir(dir)?;
            let lock = relbert_index::OutputLock::acquire(dir)?;
            let existing = existing_checkpoints(dir)?;
            // Checked all before any is removed: one that is not relbert's stops the run
            // with everything still in place. Checked before --force is suggested, too: it
            // was suggested for a user's file that --force then refused.
            for path in &existing {
                recognise_checkpoint(path)?;
            }
            if let Some(path) = existing.first() {
                if !force {
                    return Err(Error::Exists { path: path.clone() });
                }
            }
            checkpoint_leftovers(dir)?;
            (Some(lock), existing)
        }
        None => (None, Vec::new()),
    };
    let valid = ValidationData::load(cfg)?;
    let mut report = TrainReport {
        selection_metric: valid.selection_metric(),
        selection_datasets: valid.selection_datasets(),
        baseline: None,
        epochs: Vec::new(),
        best_epoch: None,
        best_score: None,
        interrupted: false,
        finished: false,
        failed: None,
    };
    // A stop while loading is heeded before the base model is loaded and validated, which
    // take minutes with a large one; it was heeded only at the first step (found by an
    // audit). Nothing is written before the first epoch, so there is nothing to keep.
    if stop.load(Ordering::SeqCst) {
        report.interrupted = true;
        return Ok(report);
    }
    let mut trainer = Trainer::new(cfg)?;
    valid.check_prompts(trainer.encoder())?;
    let total_steps = trainer.total_steps();
    if cfg.warmup > total_steps {
        tracing::warn!(
            "--warmup {} is longer than the run's {total_steps} steps ({} epochs of {} \
             relations): the learning rate never reaches --lr {:?}",
            cfg.warmup,
            cfg.epochs,
            trainer.num_relations(),
            cfg.lr
        );
    }
    if stop.load(Ordering::SeqCst) {
        report.interrupted = true;
        return Ok(report);
    }
    on_event(Event::Validating { epoch: 0 });
    let Some(baseline) = trainer.validate_unless(&valid, stop)? else {
        report.interrupted = true;
        return Ok(report);
    };
    on_event(Event::Baseline(&baseline));
    report.baseline = Some(baseline);
    let train_config = serde_json::json!({
        "config": cfg,
        "selection_metric": report.selection_metric,
        "template": trainer.encoder().template().as_str(),
        "base_weights_sha256": crate::encoder::Encoder::weights_sha256(&trainer.encoder().files().weights)?,
        "optimizer": "AdamW (beta1 0.9, beta2 0.999, eps 1e-8, weight decay 0); lazy row-sparse update of the word embeddings",
        "schedule": cfg.lr_schedule.describe(),
        "dropout": {"hidden": trainer.dropout().hidden, "attention": trainer.dropout().attention},
        "backward": if cfg.autograd || !trainer.encoder().encoder().device().is_cpu() { "candle autograd" } else { "hand-written CPU backward (cpu_train)" },
    });
    // The directory this run placed at `out`, once it has: until then `out` (kept with
    // --force until then) is the earlier run's, and its metrics.json is not this run's to
    // write; after, only that directory is (another put at `out` during the run is not).
    let mut wrote_out: Option<DirId> = None;
    let run = EpochLoop {
        cfg,
        out,
        stop,
        trainer: &mut trainer,
        valid: &valid,
        train_config: &train_config,
        report: &mut report,
        wrote_out: &mut wrote_out,
        force,
    };
    if let Err(e) = run_epochs(run, stale_checkpoints, on_event) {
        // A run that fails after saving (a full disk at epoch 3, a loss that overflows)
        // leaves a model in `out` whose record said it had finished: the failure is
        // recorded beside it, as a stop is.
        if let (Some(id), Some(epoch)) = (wrote_out, report.best_epoch) {
            report.failed = Some(e.to_string());
            let recorded = match write_record(out, &id, &report) {
                Ok(()) => true,
                Err(also) => {
                    tracing::warn!(
                        "the failure could not be recorded in {}: {also}",
                        out.join("metrics.json").display()
                    );
                    false
                }
            };
            // An `out` put in place of this run's model keeps nothing of the run.
            if id.is_at(out) {
                *kept = Some(KeptModel {
                    epoch,
                    epochs_run: report.epochs.len(),
                    recorded,
                });
            }
        }
        return Err(e);
    }
    // The stop (or the end) recorded beside this run's model; an `out` this run never wrote
    // keeps the earlier run's metrics.json with its weights.
    report.finished = !report.interrupted;
    if let Some(id) = &wrote_out {
        write_record(out, id, &report)?;
    }
    Ok(report)
}

/// Rewrites `out/metrics.json` with `report`, if `out` is still the model directory this run
/// placed there (`id`): a directory put at `out` during the run is someone else's, and its
/// metrics.json (or the lack of one) stays.
fn write_record(out: &Path, id: &DirId, report: &TrainReport) -> Result<()> {
    if DirId::of(out).is_none() {
        return Err(Error::io(
            out,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the model directory this run saved there is no longer there (removed or \
                 moved during the run), so this run's record is not written",
            ),
        ));
    }
    if !id.is_at(out) {
        return Err(Error::io(
            out,
            std::io::Error::other(
                "it is no longer the model directory this run saved there (something else \
                 was put in its place during the run), so its metrics.json is left as it is; \
                 this run's record is not written",
            ),
        ));
    }
    write_json_atomically(&out.join("metrics.json"), report)
}

/// What the epochs of [`train`] work on, lent by it so that it can record a failure after
/// them.
struct EpochLoop<'a> {
    cfg: &'a TrainConfig,
    out: &'a Path,
    stop: &'a AtomicBool,
    trainer: &'a mut Trainer,
    valid: &'a ValidationData,
    train_config: &'a serde_json::Value,
    report: &'a mut TrainReport,
    /// The model directory the run has placed at `out`, once it has (see [`train`]).
    wrote_out: &'a mut Option<DirId>,
    /// `--force`: an earlier run's model in `out` may be replaced.
    force: bool,
}

/// The epochs of [`train`]: trains, validates, keeps every epoch's checkpoint and the best
/// model, recording each in `run.report`; the earlier run's `stale_checkpoints` go when the
/// first checkpoint is written.
fn run_epochs(
    run: EpochLoop<'_>,
    stale_checkpoints: Vec<PathBuf>,
    on_event: &mut dyn FnMut(Event),
) -> Result<()> {
    let EpochLoop {
        cfg,
        out,
        stop,
        trainer,
        valid,
        train_config,
        report,
        wrote_out,
        force,
    } = run;
    // The earlier run's checkpoints are removed only when this run has its first one to
    // write: a run that fails (bad data, a loss that overflows at step 1) or is stopped
    // before then leaves them alone, as it leaves an earlier model in `out`.
    let mut stale_checkpoints = Some(stale_checkpoints);
    'epochs: for epoch in 1..=cfg.epochs {
        let order = trainer.epoch_order();
        on_event(Event::EpochStart {
            epoch,
            steps: order.len(),
        });
        let started = std::time::Instant::now();
        let mut losses = Vec::with_capacity(order.len());
        for &r in &order {
            if stop.load(Ordering::SeqCst) {
                report.interrupted = true;
                break 'epochs;
            }
            let loss = trainer.train_step(r)?;
            losses.push(loss as f64);
            on_event(Event::Step { loss });
        }
        let train_seconds = started.elapsed().as_secs_f64();
        on_event(Event::Validating { epoch });
        let validation = trainer.validate(valid)?;
        let metrics = EpochMetrics {
            epoch,
            mean_loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
            steps: losses.len(),
            train_seconds,
            validation,
        };
        on_event(Event::Epoch(&metrics));
        let score = metrics.validation.score;
        if let Some(dir) = &cfg.checkpoint_dir {
            // Re-checked, since they were looked at before the (possibly long) first epoch.
            if let Some(stale) = stale_checkpoints.take() {
                remove_checkpoints(dir, &stale)?;
            }
            // The directory itself only: its folder holds its lock file, and one deleted
            // since is not made again.
            match std::fs::create_dir(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::io(dir, e))
                }
                _ => {}
            }
            let replace = crate::output::Replace::when(force);
            write_dir_atomically(&dir.join(epoch_dir_name(epoch, cfg.epochs)), replace, |d| {
                trainer.save_model_as(d, false)?;
                write_json(&d.join("training_config.json"), &train_config)?;
                write_json(&d.join("epoch_metrics.json"), &metrics)
            })?;
        }
        report.epochs.push(metrics);
        if report.best_score.is_none_or(|b| score > b) {
            // Checked before `out` is touched: a float16 model with infinite weights saves
            // "successfully" and gives no usable vector.
            if cfg.half {
                if let Some((tensor, index, value)) = trainer.first_weight_beyond_f16()? {
                    let kept = match &cfg.checkpoint_dir {
                        Some(dir) => format!(
                            " (this epoch's float32 weights are in {})",
                            dir.join(epoch_dir_name(epoch, cfg.epochs)).display()
                        ),
                        None => String::new(),
                    };
                    let left = match report.best_epoch {
                        Some(best) if wrote_out.is_some() => {
                            format!("{} keeps epoch {best}'s model", out.display())
                        }
                        _ => format!("nothing was saved in {}", out.display()),
                    };
                    return Err(Error::InvalidArgument {
                        flag: "--half".into(),
                        message: format!(
                            "after epoch {epoch}, {}; {left}: the float32 model can be saved, \
                             train without --half{kept}; weights this large also suggest too \
                             high a --lr (--lr {:?})",
                            crate::averaging::beyond_f16_message(&tensor, index, value),
                            cfg.lr
                        ),
                    });
                }
            }
            // The record saved with the model names this epoch; the report names it only
            // once the model is in place (an error leaves `out` as it was, and the failure
            // record must name the epoch `out` still holds).
            let before = (report.best_score, report.best_epoch);
            report.best_score = Some(score);
            report.best_epoch = Some(epoch);
            // This run's own model of an earlier epoch may be replaced even without --force,
            // if `out` is still that directory.
            let replace = match wrote_out {
                Some(id) => crate::output::Replace::Same(id.clone()),
                None => crate::output::Replace::when(force),
            };
            let saved = write_dir_atomically(out, replace, |dir| {
                trainer.save_model(dir)?;
                write_json(&dir.join("training_config.json"), &train_config)?;
                write_json(&dir.join("metrics.json"), &report)
            });
            match saved {
                Ok(id) => *wrote_out = Some(id),
                Err(e) => {
                    (report.best_score, report.best_epoch) = before;
                    return Err(e);
                }
            }
        } else if let Some(id) = wrote_out {
            write_record(out, id, report)?;
        }
    }
    Ok(())
}

/// Refuses a `--checkpoint-dir` that exists and is not a directory, naming the flag (the
/// lock taken in it failed with "Not a directory", naming the path but not the flag). The
/// command line checks the flag with this as it is parsed; a library caller is checked when
/// training starts.
pub fn check_checkpoint_dir(dir: &Path) -> Result<()> {
    if std::fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
        return Err(Error::InvalidArgument {
            flag: "--checkpoint-dir".into(),
            message: format!(
                "{} exists and is not a directory; give a directory for the epoch checkpoints",
                dir.display()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Review (s33): a run whose kept model scored below its base on validation (0.4455
    /// against 0.5748 at a high --lr) was saved and reported as any other, exit 0. The
    /// report now tells it, and the command warns.
    #[test]
    fn a_model_below_its_base_is_told() {
        let validation = |score: f64| Validation {
            analogy: BTreeMap::new(),
            analogy_mean: Some(score),
            analogy_pooled: Some(score),
            semeval: None,
            score,
        };
        let report = |best: Option<f64>, base: Option<f64>| TrainReport {
            selection_metric: String::new(),
            selection_datasets: Vec::new(),
            baseline: base.map(validation),
            epochs: Vec::new(),
            best_epoch: best.map(|_| 1),
            best_score: best,
            interrupted: false,
            finished: true,
            failed: None,
        };
        assert_eq!(
            report(Some(0.4455), Some(0.5748)).worse_than_base(),
            Some((0.4455, 0.5748))
        );
        assert_eq!(report(Some(0.6), Some(0.5748)).worse_than_base(), None);
        assert_eq!(report(Some(0.5748), Some(0.5748)).worse_than_base(), None);
        assert_eq!(report(None, Some(0.5748)).worse_than_base(), None);
        assert_eq!(report(Some(0.4), None).worse_than_base(), None);
    }

    /// Audit (s16): `--epochs 4611686018427387904` times 4 relations wrapped to 0 steps, so
    /// the linear schedule's rate was 0 and the run trained nothing, saying nothing.
    #[test]
    fn a_step_count_that_overflows_is_refused_naming_epochs() {
        let cfg = TrainConfig {
            epochs: 1 << 62,
            ..TrainConfig::default()
        };
        match cfg.total_steps(4) {
            Err(Error::InvalidArgument { flag, message }) => {
                assert_eq!(flag, "--epochs");
                assert!(message.contains("4 training relations"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cfg.total_steps(3).ok(), Some(3 << 62));
    }

    /// `beta.powi(step as i32)` wrapped past 2³¹ steps: the correction became −∞.
    #[test]
    fn bias_correction_stays_in_range_past_i32_steps() {
        for step in [1usize, 10, 1 << 31, usize::MAX] {
            let c = bias_correction(0.999, step);
            assert!(c > 0.0 && c <= 1.0, "{step}: {c}");
        }
        assert_eq!(bias_correction(0.9, 1 << 31), 1.0);
    }

    #[test]
    fn rng_is_seeded_and_samples_distinct() {
        let mut a = Rng::new(3);
        let mut b = Rng::new(3);
        assert_eq!(a.next_u64(), b.next_u64());
        let s = a.sample(100, 10);
        assert_eq!(s.len(), 10);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a.sample(5, 10), vec![0, 1, 2, 3, 4]);
        let mut v: Vec<usize> = (0..20).collect();
        a.shuffle(&mut v);
        v.sort();
        assert_eq!(v, (0..20).collect::<Vec<_>>());
    }

    /// Audit (s14): only the first pair that was both a positive and a negative was named,
    /// with neither its place in the lists nor how many such pairs the relation had.
    #[test]
    fn every_pair_both_positive_and_negative_is_named_with_its_places_and_counted() {
        let p = |a: &str, b: &str| (a.to_string(), b.to_string());
        let mut r = RelationExamples {
            relation_type: "2a".into(),
            positives: vec![p("red", "blue"), p("hot", "cold"), p("up", "down")],
            negatives: vec![
                p("hot", "cold"),
                p("blue", "red"),
                p("up", "down"),
                p("hot", "cold"),
            ],
            path: PathBuf::from("t.jsonl"),
            line: 2,
        };
        let both = pairs_both_positive_and_negative(&r);
        assert_eq!(
            both,
            vec![(&p("hot", "cold"), 1, 0), (&p("up", "down"), 2, 2)]
        );
        assert_eq!(
            both_ways_warning(&r, &both),
            "t.jsonl:2: relation 2a: 2 pairs are both a positive and a negative, and the loss \
             pulls each both ways: (\"hot\", \"cold\") (positive 2, negative 1), (\"up\", \"down\") \
             (positive 3, negative 3)"
        );
        // Past the first few, the rest are counted.
        r.positives = (0..8).map(|i| p("a", &i.to_string())).collect();
        r.negatives = r.positives.iter().rev().cloned().collect();
        let both = pairs_both_positive_and_negative(&r);
        let msg = both_ways_warning(&r, &both);
        assert!(
            msg.contains("8 pairs are both") && msg.ends_with(" and 3 more"),
            "{msg}"
        );
        assert!(
            msg.contains("(\"a\", \"7\") (positive 8, negative 1)"),
            "{msg}"
        );
        r.negatives = vec![p("b", "a")];
        assert!(pairs_both_positive_and_negative(&r).is_empty());
    }

    /// Audit (s13): past 99 epochs the names stopped sorting (`epoch-100` before
    /// `epoch-11`); they are padded to the width of the run's epoch count.
    #[test]
    fn checkpoint_names_sort_in_epoch_order_past_99_epochs() {
        assert_eq!(epoch_dir_name(1, 3), "epoch-01");
        assert_eq!(epoch_dir_name(10, 99), "epoch-10");
        assert_eq!(epoch_dir_name(9, 101), "epoch-009");
        assert_eq!(epoch_dir_name(101, 101), "epoch-101");
        assert_eq!(epoch_dir_name(1, 1000), "epoch-0001");
        let names: Vec<String> = (1..=101).map(|e| epoch_dir_name(e, 101)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        // What finds them again takes any width, and their write temporaries are known.
        let dir = tempfile::tempdir().unwrap();
        for e in [9, 10, 100, 101] {
            std::fs::create_dir(dir.path().join(epoch_dir_name(e, 101))).unwrap();
        }
        let found: Vec<PathBuf> = existing_checkpoints(dir.path()).unwrap();
        let found: Vec<String> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(found, ["epoch-009", "epoch-010", "epoch-100", "epoch-101"]);
        let tmp = sibling_named(&dir.path().join(epoch_dir_name(100, 101)), "tmp");
        assert!(is_checkpoint_leftover(
            &tmp.file_name().unwrap().to_string_lossy()
        ));
    }

    #[test]
    fn only_relbert_s_own_leftover_names_are_taken_for_leftovers() {
        for ours in [
            ".epoch-01.tmp",
            ".epoch-101.old",
            ".epoch-07.removing",
            ".epoch-best.removing",
            // What renaming a stale `epoch-` aside leaves.
            ".epoch-.removing",
        ] {
            assert!(is_checkpoint_leftover(ours), "{ours}");
        }
        for theirs in [
            "epoch-01.tmp",
            ".epoch-.tmp",
            ".epoch-01.bak",
            ".epoch-x1.tmp",
            ".epoch-01",
            ".model.tmp",
        ] {
            assert!(!is_checkpoint_leftover(theirs), "{theirs}");
        }
        // The temporary name of metrics.json is one relbert recognises in a model directory.
        let tmp = sibling_named(&Path::new("m").join("metrics.json"), "tmp");
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            crate::output::MODEL_DIR_TEMPS.contains(&name.as_str()),
            "{name}"
        );
        assert_eq!(tmp.parent(), Some(Path::new("m")));
    }

    #[test]
    fn pooled_accuracy_weighs_questions_alike() {
        // 1 of 2 and 8 of 8: pooled 9 / 10, where the mean of the two accuracies is 0.75.
        assert_eq!(pooled_accuracy(&[(1, 2), (8, 8)]), Some(0.9));
        assert_eq!(
            pooled_accuracy(&[(16, 37), (129, 199), (41, 50)]),
            Some(186.0 / 286.0)
        );
        assert_eq!(pooled_accuracy(&[]), None);
        assert_eq!(pooled_accuracy(&[(0, 0)]), None);
    }

    #[test]
    fn warmup_is_linear_then_constant() {
        let c = LrSchedule::Constant;
        assert!((lr_at(1.0, 10, 0, c, 1000) - 0.1).abs() < 1e-12);
        assert!((lr_at(1.0, 10, 8, c, 1000) - 0.9).abs() < 1e-12);
        assert_eq!(lr_at(1.0, 10, 9, c, 1000), 1.0);
        assert_eq!(lr_at(1.0, 10, 100, c, 1000), 1.0);
        assert_eq!(lr_at(1.0, 0, 0, c, 1000), 1.0);
    }

    #[test]
    fn linear_schedule_peaks_after_warmup_then_falls_to_the_last_step() {
        let l = LrSchedule::Linear;
        // 10 warm-up steps (0..=9, peak at 9), 91 steps of decay: 91/91 … 1/91.
        assert!((lr_at(1.0, 10, 0, l, 100) - 0.1).abs() < 1e-12);
        assert_eq!(lr_at(1.0, 10, 9, l, 100), 1.0);
        assert!((lr_at(1.0, 10, 10, l, 100) - 90.0 / 91.0).abs() < 1e-12);
        assert!((lr_at(1.0, 10, 99, l, 100) - 1.0 / 91.0).abs() < 1e-12);
        // Strictly falling after the peak, positive to the end.
        let lrs: Vec<f64> = (9..100).map(|s| lr_at(1.0, 10, s, l, 100)).collect();
        assert!(lrs.windows(2).all(|w| w[1] < w[0]));
        assert!(lrs[lrs.len() - 1] > 0.0);
        // Without warm-up the first step is the peak.
        assert_eq!(lr_at(1.0, 0, 0, l, 4), 1.0);
        assert!((lr_at(1.0, 0, 3, l, 4) - 0.25).abs() < 1e-12);
        assert_eq!("linear".parse::<LrSchedule>().unwrap(), l);
        assert!("cosine".parse::<LrSchedule>().is_err());
    }

    #[test]
    fn adamw_sparse_rows_match_dense_on_touched_rows() {
        // One step of Adam moves every parameter with a non-zero gradient by ≈ lr·sign(g).
        let w = Var::from_tensor(
            &Tensor::from_vec(vec![1f32, 2., 3., 4., 5., 6.], (3, 2), &Device::Cpu).unwrap(),
        )
        .unwrap();
        let vars = vec![(WORD_EMBEDDINGS.to_string(), w.clone())];
        let mut opt = AdamW::new(&vars, false).unwrap();
        let ids = Tensor::from_vec(vec![0u32, 2], 2, &Device::Cpu).unwrap();
        let loss = w
            .as_tensor()
            .index_select(&ids, 0)
            .unwrap()
            .sum_all()
            .unwrap();
        let g = loss.backward().unwrap();
        opt.step(&g, 0.1, &[0, 2]).unwrap();
        let after = w
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let want = [0.9f32, 1.9, 3., 4., 4.9, 5.9];
        for (a, b) in after.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{after:?}");
        }
    }

    /// RoBERTa numbers positions from the ids (HF's
    /// `create_position_ids_from_input_ids`): a word that tokenises to the literal `<pad>`
    /// takes padding_idx, and the tokens after it count one fewer. The encoder's path has a
    /// golden-fixture test (tests/cli_models.rs); this checks that the trainer's CPU path
    /// gives its prompts the positions the encoder's batches have, for such a pair.
    #[test]
    fn roberta_training_positions_skip_a_literal_pad_as_the_encoder_does() {
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-roberta");
        let enc = RelationEncoder::load(
            &model,
            &EncoderOptions {
                trainable: true,
                ..EncoderOptions::default()
            },
        )
        .unwrap();
        let p = |a: &str, b: &str| (a.to_string(), b.to_string());
        let relations = vec![RelationExamples {
            relation_type: "1a".into(),
            positives: vec![p("<pad> tea", "cup"), p("paris", "france")],
            negatives: vec![p("hot", "cold")],
            path: PathBuf::new(),
            line: 0,
        }];
        let trainer = Trainer::with_encoder(enc, relations, &TrainConfig::default()).unwrap();
        assert!(
            trainer.fast.is_some(),
            "the CPU training path is what is checked"
        );
        let (pad, mask) = (
            trainer.enc.tokenizer().pad_id(),
            trainer.enc.tokenizer().mask_id(),
        );
        let seqs = &trainer.pos_toks[0];
        let pad_at = seqs[0]
            .iter()
            .position(|&id| id == pad)
            .expect("\"<pad>\" tokenises to the pad id");
        let prompts = trainer.prompts(seqs);
        // The encoder's batch of the same prompts, as its forward pass builds it.
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let batch =
            crate::batching::make_batch(&refs, pad, mask, trainer.enc.aggregation(), |ids, t| {
                trainer.enc.encoder().position_ids(ids, t)
            });
        let t = batch.input.seq_len;
        for (i, (s, prompt)) in seqs.iter().zip(&prompts).enumerate() {
            assert_eq!(
                prompt.positions,
                batch.input.positions[i * t..i * t + s.len()],
                "prompt {i}"
            );
            // And pools what the encoder's batch pools.
            let pooled: Vec<bool> = batch.pool_weights[i * t..i * t + s.len()]
                .iter()
                .map(|&w| w == 1.0)
                .collect();
            assert_eq!(prompt.pool, pooled, "prompt {i}");
        }
        // The literal pad is attended to but not pooled, as the reference pools by id.
        assert!(!prompts[0].pool[pad_at]);
        // HF's numbering itself: real tokens from padding_idx + 1, the pad at padding_idx.
        let want: Vec<u32> = (0..seqs[0].len())
            .map(|i| {
                if i == pad_at {
                    pad
                } else {
                    pad + 1 + i as u32 - u32::from(i > pad_at)
                }
            })
            .collect();
        assert_eq!(prompts[0].positions, want);
    }
}
