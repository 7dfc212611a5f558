//! The hand-written CPU training path against candle's autograd: the same pooled vectors and
//! the same gradient for every parameter, on both fixture architectures; and, with dropout on,
//! a finite-difference check of the gradient (the masks are keyed, so the loss is a fixed
//! function of the parameters for a given seed).

mod common;

use candle_core::{Device, Var};
use common::fixture;
use relbert::cpu_train::{CpuTrainModel, Dropout, Prompt};
use relbert::encoder::Mode;
use relbert::losses::info_nce;
use relbert::pooling::Aggregation;
use relbert::{EncoderOptions, RelationEncoder};

/// The last pair holds the literal pad token, which RoBERTa tokenises to its pad id: its
/// positions (and those of every token after it) come from the ids, not from their number.
const PAIRS: [(&str, &str); 8] = [
    ("paris", "france"),
    ("tokyo", "japan"),
    ("rome", "italy"),
    ("cat", "kitten"),
    ("dog", "puppy"),
    ("hot", "cold"),
    ("a very long word indeed", "x"),
    ("<pad> tea", "cup"),
];

fn load(model: &str, aggregation: Aggregation) -> RelationEncoder {
    RelationEncoder::load(
        &fixture(model),
        &EncoderOptions {
            aggregation: Some(aggregation),
            trainable: true,
            ..EncoderOptions::default()
        },
    )
    .unwrap()
}

fn tokens(enc: &RelationEncoder) -> Vec<Vec<u32>> {
    enc.tokenize(&PAIRS)
        .unwrap()
        .into_iter()
        .map(|t| t.ids)
        .collect()
}

fn prompts<'a>(enc: &RelationEncoder, seqs: &'a [Vec<u32>]) -> Vec<Prompt<'a>> {
    let (mask, pad) = (enc.tokenizer().mask_id(), enc.tokenizer().pad_id());
    seqs.iter()
        .map(|s| Prompt {
            ids: s,
            positions: enc.encoder().position_ids(s, s.len()),
            pool: (0..s.len())
                .map(|i| enc.aggregation().selects(s, i, mask, pad))
                .collect(),
        })
        .collect()
}

/// The hand-written training model over `enc`'s current parameters.
fn fast_model(enc: &RelationEncoder, dropout: Dropout) -> CpuTrainModel {
    let cfg = enc.encoder().config();
    CpuTrainModel::new(
        &enc.encoder().named_tensors(),
        cfg.num_attention_heads,
        cfg.layer_norm_eps,
        dropout,
        false,
    )
    .unwrap()
}

/// InfoNCE with the first 2 vectors as positives; returns the loss and d loss / d vectors.
fn loss_and_grad(pooled: &[f32], dim: usize) -> (f32, Vec<f32>) {
    let n = pooled.len() / dim;
    let var = Var::from_vec(pooled.to_vec(), (n, dim), &Device::Cpu).unwrap();
    let t = var.as_tensor();
    let loss = info_nce(
        &t.narrow(0, 0, 2).unwrap(),
        &t.narrow(0, 2, n - 2).unwrap(),
        0.5,
    )
    .unwrap();
    let g = loss.backward().unwrap();
    let d = g
        .get(t)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    (loss.to_scalar::<f32>().unwrap(), d)
}

fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn check_against_autograd(model: &str, aggregation: Aggregation) {
    let enc = load(model, aggregation);
    let seqs = tokens(&enc);
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let cfg = enc.encoder().config().clone();
    let dim = cfg.hidden_size;
    if model == "tiny-roberta" {
        let pad = enc.tokenizer().pad_id();
        assert!(
            seqs.iter().any(|s| s.contains(&pad)),
            "{model}: no prompt holds the pad id, so positions from ids are not tested"
        );
    }

    // candle autograd
    let pooled = enc.forward_pooled(&refs, Mode::Train).unwrap();
    let n = seqs.len();
    let loss = info_nce(
        &pooled.narrow(0, 0, 2).unwrap(),
        &pooled.narrow(0, 2, n - 2).unwrap(),
        0.5,
    )
    .unwrap();
    let want_loss = loss.to_scalar::<f32>().unwrap();
    let grads = loss.backward().unwrap();
    let want_pooled = pooled.flatten_all().unwrap().to_vec1::<f32>().unwrap();

    // hand-written path, chunks of 3 so that several chunks (and threads) take part
    let mut fast = fast_model(&enc, Dropout::NONE);
    let ps = prompts(&enc, &seqs);
    let (got_pooled, state) = fast.forward(&ps, 3, 0).unwrap();
    assert!(
        rel_diff(&got_pooled, &want_pooled) < 1e-5,
        "{model}: pooled vectors differ"
    );
    let (got_loss, d) = loss_and_grad(&got_pooled, dim);
    assert!(
        (got_loss - want_loss).abs() < 1e-4 * want_loss.abs().max(1.0),
        "{model}: loss {got_loss} vs {want_loss}"
    );
    fast.backward_only(&state, &d).unwrap();
    let vars = enc.encoder().vars().unwrap();
    for (name, var) in vars {
        let want = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = fast.gradient(name).unwrap();
        // The key bias's true gradient is zero (softmax ignores a per-row constant), so both
        // sides are rounding noise there: compare against a floor.
        let scale = want.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let diff = rel_diff(got, &want) * scale;
        assert!(
            diff < 1e-4 * scale.max(1e-3),
            "{model} {aggregation:?}: {name} |diff| {diff} vs |want| {scale}"
        );
    }
}

#[test]
fn gradients_match_autograd_bert() {
    check_against_autograd("tiny-bert", Aggregation::AverageNoMask);
    check_against_autograd("tiny-bert", Aggregation::Mask);
}

#[test]
fn gradients_match_autograd_roberta() {
    check_against_autograd("tiny-roberta", Aggregation::AverageNoMask);
    check_against_autograd("tiny-roberta", Aggregation::Average);
}

#[test]
fn dropout_gradient_matches_finite_difference() {
    let enc = load("tiny-bert", Aggregation::AverageNoMask);
    let seqs = tokens(&enc);
    let cfg = enc.encoder().config().clone();
    let dim = cfg.hidden_size;
    let drop = Dropout {
        hidden: 0.1,
        attention: 0.1,
    };
    let mut fast = fast_model(&enc, drop);
    let ps = prompts(&enc, &seqs);
    let seed = 42;
    let (pooled, state) = fast.forward(&ps, 3, seed).unwrap();
    let (_, d) = loss_and_grad(&pooled, dim);
    fast.backward_only(&state, &d).unwrap();

    // Dropout is on: a different seed gives a different output.
    let (other, _) = fast.forward(&ps, 3, seed + 1).unwrap();
    assert!(rel_diff(&other, &pooled) > 1e-4);

    let names: Vec<String> = fast.parameter_names().to_vec();
    let grads: Vec<Vec<f32>> = names
        .iter()
        .map(|n| fast.gradient(n).unwrap().to_vec())
        .collect();
    let norm = grads
        .iter()
        .flatten()
        .map(|g| (*g as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(norm > 0.0);
    // Directional derivative along the gradient: (L(θ+εu) − L(θ−εu)) / 2ε ≈ |∇L|.
    let eps = 1e-2f32;
    let mut eval = |sign: f32| {
        for (n, g) in names.iter().zip(&grads) {
            let p = fast.parameter_mut(n).unwrap();
            for (v, gi) in p.iter_mut().zip(g) {
                *v += sign * eps * (*gi as f64 / norm) as f32;
            }
        }
        let (pooled, _) = fast.forward(&ps, 3, seed).unwrap();
        let l = loss_and_grad(&pooled, dim).0;
        for (n, g) in names.iter().zip(&grads) {
            let p = fast.parameter_mut(n).unwrap();
            for (v, gi) in p.iter_mut().zip(g) {
                *v -= sign * eps * (*gi as f64 / norm) as f32;
            }
        }
        l as f64
    };
    let fd = (eval(1.0) - eval(-1.0)) / (2.0 * eps as f64);
    assert!(
        (fd - norm).abs() < 0.05 * norm,
        "finite difference {fd} vs gradient norm {norm}"
    );
}

#[test]
fn same_pooled_vectors_whatever_the_chunking() {
    let enc = load("tiny-roberta", Aggregation::AverageNoMask);
    let seqs = tokens(&enc);
    let fast = fast_model(&enc, Dropout::NONE);
    let ps = prompts(&enc, &seqs);
    let (a, _) = fast.forward(&ps, 2, 0).unwrap();
    let (b, _) = fast.forward(&ps, 7, 0).unwrap();
    assert!(rel_diff(&a, &b) < 1e-6);
}
