//! Lexical relation classification: a small MLP trained on relation vectors, and the F1
//! scores it is judged by.
//!
//! The classifier is scikit-learn's `MLPClassifier` at its default hyper-parameters,
//! reimplemented: one hidden layer of 100 ReLU units, softmax output, Adam (lr 1e-3, β
//! 0.9/0.999, ε 1e-8), mini-batches of `min(200, n)` reshuffled every epoch, an L2 penalty
//! `alpha / 2 · ‖W‖² / batch` on the weight matrices (not the biases), Glorot-uniform
//! initialisation and at most 200 epochs. Its stopping rule ([`Stopping`]) is by default early
//! stopping on validation accuracy (scikit-learn's `early_stopping=True` rule: tol 1e-4, 10
//! epochs without improvement; the best weights are kept), or, with
//! [`Stopping::TrainingLoss`], scikit-learn's default rule (stop when the training loss has
//! not fallen by `tol` for 10 epochs; the last weights are kept). All randomness comes from one
//! seeded [`StdRng`], so a seed fixes the result; it is not numpy's stream, so the same seed
//! gives other initial weights and batch orders than scikit-learn's `random_state`.
//!
//! This is not the RelBERT reference's protocol (`evaluate_classification` in
//! `relbert/evaluation/lexical_relation_classification.py`). The reference fits
//! `MLPClassifier(random_state=0)`, so the training-loss rule, on all of train, on the raw
//! (unnormalised) features `[v(a,b); v(b,a)]`; where the dataset has a validation split it
//! grid-searches the learning rate {1e-3, 1e-4, 1e-5} × hidden width {100, 150, 200} and keeps
//! the configuration with the best validation micro-F1 (CogALexV, without one, gets the
//! defaults). `relbert bench classify` by default trains on unit-length `v(a,b)` alone, with
//! early stopping on validation accuracy (on `val.tsv`, or on 10% of train held out where there
//! is none, as for CogALexV), at the fixed defaults above. `--concat-reverse` gives the
//! reference's features (each half unit length) and `--stop-on train-loss` its stopping rule and
//! training rows; the unit-length scaling and the grid search (not implemented) remain
//! differences.

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::error::{Error, Result};

/// When training stops before `max_epochs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopping {
    /// Validation accuracy has not improved by `tol` for `n_iter_no_change` epochs; the
    /// weights of the best validation epoch are kept (`early_stopping=True`).
    #[default]
    ValidationAccuracy,
    /// Training loss has not fallen by `tol` for `n_iter_no_change` epochs; the last weights are
    /// kept (scikit-learn's default, `early_stopping=False`).
    TrainingLoss,
}

/// Hyper-parameters of the MLP (defaults: scikit-learn's `MLPClassifier`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MlpConfig {
    /// Width of the hidden layer.
    pub hidden: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Largest mini-batch (the batch is `min(batch_size, n)`).
    pub batch_size: usize,
    /// Most epochs.
    pub max_epochs: usize,
    /// L2 penalty strength.
    pub alpha: f64,
    /// Smallest validation-accuracy gain that counts as an improvement.
    pub tol: f64,
    /// Epochs without improvement before training stops.
    pub n_iter_no_change: usize,
    /// Seed for initialisation and shuffling.
    pub seed: u64,
    /// The stopping rule.
    pub stopping: Stopping,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            hidden: 100,
            learning_rate: 1e-3,
            batch_size: 200,
            max_epochs: 200,
            alpha: 1e-4,
            tol: 1e-4,
            n_iter_no_change: 10,
            seed: 0,
            stopping: Stopping::default(),
        }
    }
}

/// How a training run went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainReport {
    /// Epochs run.
    pub epochs: usize,
    /// Best validation accuracy seen at any epoch: under [`Stopping::ValidationAccuracy`] that
    /// epoch's weights are the ones kept; under [`Stopping::TrainingLoss`] the last epoch's
    /// are, whose accuracy may be lower. NaN when trained without a validation set
    /// ([`Stopping::TrainingLoss`] needs none).
    pub best_validation_accuracy: f64,
    /// Mean training loss of the last epoch.
    pub final_loss: f64,
    /// Whether the stopping rule ended training; `false` while training runs, and at the end
    /// when it ran to `max_epochs` still improving (where scikit-learn warns with a
    /// `ConvergenceWarning`).
    pub converged: bool,
}

/// A trained one-hidden-layer classifier.
pub struct Mlp {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

/// Features as one `[n, dim]` tensor; all rows must have the same width.
fn matrix(x: &[Vec<f32>], device: &Device) -> Result<Tensor> {
    let dim = x.first().map_or(0, |r| r.len());
    if let Some(i) = x.iter().position(|r| r.len() != dim) {
        return Err(Error::InvalidArgument {
            flag: "features".into(),
            message: format!("row {i} has {} values, row 0 has {dim}", x[i].len()),
        });
    }
    let flat: Vec<f32> = x.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (x.len(), dim), device)?)
}

/// A Glorot-uniform `[rows, cols]` matrix drawn from `rng`.
fn glorot(
    rng: &mut StdRng,
    rows: usize,
    cols: usize,
    fan_in: usize,
    fan_out: usize,
) -> Result<Var> {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| rng.random_range(-bound..bound))
        .collect();
    Ok(Var::from_vec(v, (rows, cols), &Device::Cpu)?)
}

fn forward(x: &Tensor, w1: &Tensor, b1: &Tensor, w2: &Tensor, b2: &Tensor) -> Result<Tensor> {
    let h = x.matmul(w1)?.broadcast_add(b1)?.relu()?;
    Ok(h.matmul(w2)?.broadcast_add(b2)?)
}

fn check_labels(y: &[usize], n: usize, n_classes: usize, what: &str) -> Result<()> {
    if y.len() != n {
        return Err(Error::InvalidArgument {
            flag: what.into(),
            message: format!("{} labels for {n} feature rows", y.len()),
        });
    }
    if let Some(bad) = y.iter().find(|&&l| l >= n_classes) {
        return Err(Error::InvalidArgument {
            flag: what.into(),
            message: format!("label {bad} is not below the class count {n_classes}"),
        });
    }
    Ok(())
}

impl Mlp {
    /// Trains on `(x, y)` with early stopping on `(val_x, val_y)`; training labels are
    /// `0..n_classes`, and a validation label at or above `n_classes` (a class with no
    /// training row) counts as a miss.
    pub fn train(
        x: &[Vec<f32>],
        y: &[usize],
        val_x: &[Vec<f32>],
        val_y: &[usize],
        n_classes: usize,
        cfg: &MlpConfig,
    ) -> Result<(Mlp, TrainReport)> {
        Self::train_with_progress(x, y, val_x, val_y, n_classes, cfg, &mut |_| {})
    }

    /// [`Self::train`], telling `progress` after each epoch how training stands so far
    /// (epochs run, that epoch's mean loss, the best validation accuracy yet): on tens of
    /// thousands of rows training takes minutes, which showed as nothing at all.
    pub fn train_with_progress(
        x: &[Vec<f32>],
        y: &[usize],
        val_x: &[Vec<f32>],
        val_y: &[usize],
        n_classes: usize,
        cfg: &MlpConfig,
        progress: &mut dyn FnMut(&TrainReport),
    ) -> Result<(Mlp, TrainReport)> {
        // Stopping on the training loss reads no validation set: scikit-learn's default
        // trains on every row, and a caller may pass none.
        let validate = !val_x.is_empty();
        if x.is_empty() || (!validate && cfg.stopping == Stopping::ValidationAccuracy) {
            return Err(Error::InvalidArgument {
                flag: "training data".into(),
                message: "training and validation sets must not be empty".into(),
            });
        }
        check_labels(y, x.len(), n_classes, "training labels")?;
        // A validation label may be one the classifier has no output for (a class no
        // training row has): such a row is never predicted right, a miss, not an error.
        check_labels(val_y, val_x.len(), usize::MAX, "validation labels")?;
        let dev = Device::Cpu;
        let xt = matrix(x, &dev)?;
        let dim = xt.dim(1)?;
        let vx = if validate {
            matrix(val_x, &dev)?
        } else {
            Tensor::zeros((0, dim), DType::F32, &dev)?
        };
        if validate && vx.dim(1)? != dim {
            return Err(Error::InvalidArgument {
                flag: "validation features".into(),
                message: format!("width {} differs from the training width {dim}", vx.dim(1)?),
            });
        }
        let yt = Tensor::from_vec(
            y.iter().map(|&l| l as u32).collect::<Vec<_>>(),
            y.len(),
            &dev,
        )?;
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let (h, k) = (cfg.hidden, n_classes);
        let w1 = glorot(&mut rng, dim, h, dim, h)?;
        let b1 = glorot(&mut rng, 1, h, dim, h)?;
        let w2 = glorot(&mut rng, h, k, h, k)?;
        let b2 = glorot(&mut rng, 1, k, h, k)?;
        let vars = [w1.clone(), b1.clone(), w2.clone(), b2.clone()];
        let mut opt = AdamW::new(
            vars.to_vec(),
            ParamsAdamW {
                lr: cfg.learning_rate,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
        )?;
        let snapshot = || -> Result<Vec<Tensor>> {
            vars.iter()
                .map(|v| Ok(v.as_tensor().copy()?))
                .collect::<Result<Vec<_>>>()
        };
        let n = x.len();
        let batch = cfg.batch_size.clamp(1, n);
        let mut order: Vec<u32> = (0..n as u32).collect();
        let mut best = f64::NEG_INFINITY;
        let mut best_vars = snapshot()?;
        let mut stale = 0;
        let mut best_loss = f64::INFINITY;
        let mut report = TrainReport {
            epochs: 0,
            best_validation_accuracy: 0.0,
            final_loss: 0.0,
            converged: false,
        };
        for epoch in 1..=cfg.max_epochs {
            order.shuffle(&mut rng);
            let mut loss_sum = 0.0;
            for chunk in order.chunks(batch) {
                let idx = Tensor::from_slice(chunk, chunk.len(), &dev)?;
                let bx = xt.index_select(&idx, 0)?;
                let by = yt.index_select(&idx, 0)?;
                let logits = forward(&bx, &w1, &b1, &w2, &b2)?;
                let ce = candle_nn::loss::cross_entropy(&logits, &by)?;
                let l2 = ((w1.sqr()?.sum_all()? + w2.sqr()?.sum_all()?)?
                    * (0.5 * cfg.alpha / chunk.len() as f64))?;
                let loss = (ce + l2)?;
                loss_sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
                opt.backward_step(&loss)?;
            }
            report.epochs = epoch;
            report.final_loss = loss_sum / n as f64;
            let acc = if validate {
                let pred = Self::argmax(&forward(&vx, &w1, &b1, &w2, &b2)?)?;
                pred.iter().zip(val_y).filter(|(p, t)| p == t).count() as f64 / val_y.len() as f64
            } else {
                f64::NAN
            };
            match cfg.stopping {
                Stopping::ValidationAccuracy => {
                    if acc < best + cfg.tol {
                        stale += 1;
                    } else {
                        stale = 0;
                    }
                    if acc > best {
                        best = acc;
                        best_vars = snapshot()?;
                    }
                }
                Stopping::TrainingLoss => {
                    if report.final_loss > best_loss - cfg.tol {
                        stale += 1;
                    } else {
                        stale = 0;
                    }
                    best_loss = best_loss.min(report.final_loss);
                    best = if validate { best.max(acc) } else { f64::NAN };
                }
            }
            report.best_validation_accuracy = best;
            // Set before `progress` hears of the epoch, so that its last report is the one
            // returned. A stop on the last allowed epoch still counts as converged, as
            // scikit-learn checks its rule before it warns of the cap.
            report.converged = stale > cfg.n_iter_no_change;
            progress(&report);
            if report.converged {
                break;
            }
        }
        report.best_validation_accuracy = best;
        if cfg.stopping == Stopping::TrainingLoss {
            best_vars = snapshot()?;
        }
        let [w1, b1, w2, b2]: [Tensor; 4] =
            best_vars.try_into().map_err(|_| Error::InvalidArgument {
                flag: "mlp".into(),
                message: "internal: wrong number of parameters".into(),
            })?;
        Ok((Mlp { w1, b1, w2, b2 }, report))
    }

    fn argmax(logits: &Tensor) -> Result<Vec<usize>> {
        Ok(logits
            .argmax(D::Minus1)?
            .to_dtype(DType::U32)?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|i| i as usize)
            .collect())
    }

    /// Predicted class of each row.
    pub fn predict(&self, x: &[Vec<f32>]) -> Result<Vec<usize>> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        let xt = matrix(x, &Device::Cpu)?;
        Self::argmax(&forward(&xt, &self.w1, &self.b1, &self.w2, &self.b2)?)
    }
}

/// Micro- and macro-averaged F1 of single-label predictions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct F1 {
    /// Micro-averaged F1 (for single-label data, the accuracy).
    pub micro: f64,
    /// Unweighted mean of the per-class F1 over every class that occurs in the truth or the
    /// predictions (scikit-learn's `average="macro"`); a class with no true or predicted
    /// positives contributes 0.
    pub macro_: f64,
}

/// F1 scores of `pred` against `truth` (equal lengths; unequal tails are ignored).
pub fn f1_scores(truth: &[usize], pred: &[usize]) -> F1 {
    let k = truth.iter().chain(pred).max().map_or(0, |m| m + 1);
    let (mut tp, mut fp, mut fn_) = (vec![0usize; k], vec![0usize; k], vec![0usize; k]);
    let mut present = vec![false; k];
    for (&t, &p) in truth.iter().zip(pred) {
        present[t] = true;
        present[p] = true;
        if t == p {
            tp[t] += 1;
        } else {
            fp[p] += 1;
            fn_[t] += 1;
        }
    }
    let f1 = |tp: usize, fp: usize, fn_: usize| {
        let d = 2 * tp + fp + fn_;
        if d == 0 {
            0.0
        } else {
            2.0 * tp as f64 / d as f64
        }
    };
    let classes: Vec<usize> = (0..k).filter(|&c| present[c]).collect();
    let macro_ = if classes.is_empty() {
        0.0
    } else {
        classes
            .iter()
            .map(|&c| f1(tp[c], fp[c], fn_[c]))
            .sum::<f64>()
            / classes.len() as f64
    };
    let micro = f1(tp.iter().sum(), fp.iter().sum(), fn_.iter().sum());
    F1 { micro, macro_ }
}

/// How many distinct classes `labels` holds.
pub fn class_count(labels: &[usize]) -> usize {
    labels
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// The one class every prediction in `pred` falls in, when the truth it is scored against
/// holds more than one: such a classifier tells nothing apart (a CogALexV run predicting
/// `RANDOM` for every pair scored a micro-F1 of `RANDOM`'s share of the test rows with no
/// sign why). `None` when the predictions hold two or more classes, when there are none, or
/// when the truth holds one class only (predicting it is then no failure).
pub fn single_predicted_class(truth: &[usize], pred: &[usize]) -> Option<usize> {
    let (&first, rest) = pred.split_first()?;
    (rest.iter().all(|&p| p == first) && class_count(truth) > 1).then_some(first)
}

/// Splits the rows `0..labels.len()` into (train, held-out) with `fraction` of them (rounded
/// up, at least one when there are two or more) held out at random under `seed`, stratified
/// by label as scikit-learn's early stopping splits: each label gives its share of the
/// held-out rows (the largest remainders rounding up), and keeps at least one row in
/// training whenever any other label can give the row instead. A plain random split took
/// every row of a small class out of training, so that its test rows could not be
/// predicted. Both lists come back sorted.
pub fn holdout_split(labels: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let n = labels.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let k = ((n as f64 * fraction).ceil() as usize).clamp(usize::from(n > 1), n.saturating_sub(1));
    // Each label's rows, shuffled, labels in order of first appearance.
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| *g == l) {
            Some((_, rows)) => rows.push(i),
            None => groups.push((l, vec![i])),
        }
    }
    for (_, rows) in &mut groups {
        rows.shuffle(&mut rng);
    }
    // Proportional shares, capped so that each label keeps a row in training.
    let cap = |rows: &Vec<usize>| rows.len().saturating_sub(1);
    let exact: Vec<f64> = groups
        .iter()
        .map(|(_, rows)| rows.len() as f64 * k as f64 / n.max(1) as f64)
        .collect();
    let mut take: Vec<usize> = groups
        .iter()
        .zip(&exact)
        .map(|((_, rows), e)| (e.floor() as usize).min(cap(rows)))
        .collect();
    // The rest by largest remainder, then (only if every label is down to one row) from
    // the largest labels even though it empties them.
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let held_count = |take: &[usize]| take.iter().sum::<usize>();
    for allow_empty in [false, true] {
        loop {
            let before = held_count(&take);
            for &g in &order {
                let room = if allow_empty {
                    groups[g].1.len()
                } else {
                    cap(&groups[g].1)
                };
                if held_count(&take) < k && take[g] < room {
                    take[g] += 1;
                }
            }
            let after = held_count(&take);
            if after >= k || after == before {
                break;
            }
        }
    }
    let (mut rest, mut held) = (Vec::with_capacity(n - k), Vec::with_capacity(k));
    for ((_, rows), t) in groups.iter().zip(&take) {
        held.extend_from_slice(&rows[..*t]);
        rest.extend_from_slice(&rows[*t..]);
    }
    held.sort_unstable();
    rest.sort_unstable();
    (rest, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clusters per class around distinct corners, with a little seeded noise.
    fn toy(n: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let centers = [[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        (0..n)
            .map(|i| {
                let c = i % 3;
                let v = centers[c]
                    .iter()
                    .map(|x| x + rng.random_range(-0.2f32..0.2))
                    .collect();
                (v, c)
            })
            .unzip()
    }

    #[test]
    fn learns_a_separable_toy_set() {
        let (x, y) = toy(300, 1);
        let (vx, vy) = toy(60, 2);
        let (tx, ty) = toy(90, 3);
        let cfg = MlpConfig {
            batch_size: 32,
            ..Default::default()
        };
        let (mlp, report) = Mlp::train(&x, &y, &vx, &vy, 3, &cfg).unwrap();
        assert!(report.epochs >= 1);
        let f1 = f1_scores(&ty, &mlp.predict(&tx).unwrap());
        assert_eq!(f1.micro, 1.0, "{report:?}");
        assert_eq!(f1.macro_, 1.0);
    }

    #[test]
    fn training_loss_rule_learns_too() {
        let (x, y) = toy(300, 1);
        let (tx, ty) = toy(90, 3);
        let cfg = MlpConfig {
            batch_size: 32,
            stopping: Stopping::TrainingLoss,
            ..Default::default()
        };
        let (mlp, _) = Mlp::train(&x, &y, &tx, &ty, 3, &cfg).unwrap();
        assert_eq!(f1_scores(&ty, &mlp.predict(&tx).unwrap()).micro, 1.0);
    }

    #[test]
    fn training_is_deterministic_for_a_seed() {
        let (x, y) = toy(120, 4);
        let (vx, vy) = toy(30, 5);
        let cfg = MlpConfig {
            max_epochs: 5,
            seed: 7,
            ..Default::default()
        };
        let run = |cfg: &MlpConfig| {
            let (mlp, r) = Mlp::train(&x, &y, &vx, &vy, 3, cfg).unwrap();
            (mlp.w1.flatten_all().unwrap().to_vec1::<f32>().unwrap(), r)
        };
        let (a, ra) = run(&cfg);
        let (b, rb) = run(&cfg);
        assert_eq!(a, b);
        assert_eq!(ra, rb);
        let (c, _) = run(&MlpConfig { seed: 8, ..cfg });
        assert_ne!(a, c);
    }

    /// `bench classify` showed nothing while the MLP trained: progress is now told after every
    /// epoch, and its last report is the one training returns.
    #[test]
    fn progress_is_told_after_every_epoch() {
        let (x, y) = toy(120, 4);
        let (vx, vy) = toy(30, 5);
        let cfg = MlpConfig {
            max_epochs: 7,
            ..Default::default()
        };
        let mut seen = Vec::new();
        let (_, report) =
            Mlp::train_with_progress(&x, &y, &vx, &vy, 3, &cfg, &mut |r| seen.push(r.clone()))
                .unwrap();
        let epochs: Vec<usize> = seen.iter().map(|r| r.epochs).collect();
        assert_eq!(epochs, (1..=report.epochs).collect::<Vec<_>>());
        assert_eq!(seen.last(), Some(&report));
        assert!(seen
            .iter()
            .all(|r| r.final_loss.is_finite() && r.final_loss > 0.0));
        // Reporting changes nothing: the same seed trains the same classifier without it.
        assert_eq!(Mlp::train(&x, &y, &vx, &vy, 3, &cfg).unwrap().1, report);
    }

    #[test]
    fn rejects_bad_labels() {
        let (x, y) = toy(10, 1);
        assert!(Mlp::train(&x, &y, &x, &y, 2, &MlpConfig::default()).is_err());
    }

    #[test]
    fn f1_matches_hand_computation() {
        // truth: 0 0 0 1 1 2 ; pred: 0 0 1 1 2 2
        // class 0: tp 2 fp 0 fn 1 -> 4/5 = 0.8
        // class 1: tp 1 fp 1 fn 1 -> 2/4 = 0.5
        // class 2: tp 1 fp 1 fn 0 -> 2/3
        // micro: tp 4, fp 2, fn 2 -> 8/12 = 2/3 (= accuracy 4/6)
        let f = f1_scores(&[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2]);
        assert!((f.micro - 2.0 / 3.0).abs() < 1e-12);
        assert!((f.macro_ - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        // A class only ever predicted (3) counts with F1 0; an absent class (2) does not.
        let f = f1_scores(&[0, 1], &[0, 3]);
        assert!((f.macro_ - (1.0 + 0.0 + 0.0) / 3.0).abs() < 1e-12);
        assert!((f.micro - 0.5).abs() < 1e-12);
    }

    #[test]
    fn holdout_is_seeded_and_disjoint() {
        let labels = vec![0; 101];
        let (a, b) = holdout_split(&labels, 0.1, 3);
        assert_eq!(b.len(), 11);
        assert_eq!(a.len() + b.len(), 101);
        assert!(b.iter().all(|i| !a.contains(i)));
        assert_eq!(holdout_split(&labels, 0.1, 3), (a, b.clone()));
        assert_ne!(holdout_split(&labels, 0.1, 4).1, b);
    }

    #[test]
    fn holdout_is_stratified_and_keeps_every_label_in_training() {
        // 90 rows of label 0, 9 of label 1, one of label 2: 10 held out.
        let mut labels = vec![0; 90];
        labels.extend([1; 9]);
        labels.push(2);
        for seed in 0..20 {
            let (rest, held) = holdout_split(&labels, 0.1, seed);
            assert_eq!(held.len(), 10);
            assert_eq!(rest.len() + held.len(), labels.len());
            let count = |rows: &[usize], l: usize| rows.iter().filter(|&&i| labels[i] == l).count();
            assert_eq!(count(&held, 0), 9, "seed {seed}");
            assert_eq!(count(&held, 1), 1, "seed {seed}");
            for l in 0..3 {
                assert!(
                    count(&rest, l) >= 1,
                    "label {l} left training (seed {seed})"
                );
            }
        }
        // Every label a single row: held out anyway, as one row must be.
        let (rest, held) = holdout_split(&[0, 1, 2], 0.1, 0);
        assert_eq!((rest.len(), held.len()), (2, 1));
    }

    #[test]
    fn training_loss_stopping_needs_no_validation_set() {
        let (x, y) = toy(60, 1);
        let cfg = MlpConfig {
            stopping: Stopping::TrainingLoss,
            max_epochs: 5,
            ..Default::default()
        };
        let (_, report) = Mlp::train(&x, &y, &[], &[], 3, &cfg).unwrap();
        assert!(report.best_validation_accuracy.is_nan());
        // Early stopping on validation accuracy still needs one.
        let cfg = MlpConfig {
            max_epochs: 5,
            ..Default::default()
        };
        assert!(Mlp::train(&x, &y, &[], &[], 3, &cfg).is_err());
    }

    /// Review: a classifier predicting one class only was reported with no word. The helper
    /// that tells it names the class, and only when the truth holds others.
    #[test]
    fn a_single_predicted_class_is_told() {
        assert_eq!(
            single_predicted_class(&[0, 1, 2, 1], &[2, 2, 2, 2]),
            Some(2)
        );
        assert_eq!(single_predicted_class(&[0, 1, 2, 1], &[2, 2, 0, 2]), None);
        // One true class predicted throughout is a right answer, not a failure.
        assert_eq!(single_predicted_class(&[1, 1, 1], &[1, 1, 1]), None);
        assert_eq!(single_predicted_class(&[0, 1], &[]), None);
        assert_eq!(class_count(&[3, 0, 3, 1]), 3);
        assert_eq!(class_count(&[]), 0);
    }

    /// Review: running to the epoch cap without the stopping rule ending training said
    /// nothing. The report tells it, for either rule; a run the rule ended says converged.
    #[test]
    fn training_that_reaches_its_cap_is_not_converged() {
        let (x, y) = toy(60, 1);
        for stopping in [Stopping::TrainingLoss, Stopping::ValidationAccuracy] {
            let capped = MlpConfig {
                stopping,
                max_epochs: 2,
                ..Default::default()
            };
            let (_, report) = Mlp::train(&x, &y, &x, &y, 3, &capped).unwrap();
            assert_eq!(
                (report.epochs, report.converged),
                (2, false),
                "{stopping:?}"
            );
            // With no room to improve (any gain below tol), the rule ends training early.
            let stalled = MlpConfig {
                stopping,
                tol: 1e9,
                n_iter_no_change: 1,
                ..Default::default()
            };
            let (_, report) = Mlp::train(&x, &y, &x, &y, 3, &stalled).unwrap();
            assert!(report.converged, "{stopping:?}: {report:?}");
            assert!(
                report.epochs < stalled.max_epochs,
                "{stopping:?}: {report:?}"
            );
        }
    }
}
