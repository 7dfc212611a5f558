//! Parity with Hugging Face transformers: golden token ids and vectors computed by the
//! reference pipeline for 40 edge-case pairs, on tiny BERT and RoBERTa fixtures and on the real
//! all-MiniLM-L6-v2, in all three aggregation modes and in both kernel modes.

mod common;

use std::path::Path;

use common::{cosine, fixture, minilm_dir, unit};
use relbert::encoder::Mode;
use relbert::pooling::Aggregation;
use relbert::{EncoderOptions, RelationEncoder};
use serde_json::Value;

fn load_golden(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn pairs_of(g: &Value) -> Vec<(String, String)> {
    g["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn check_model(dir: &Path, golden: &str) {
    let g = load_golden(golden);
    let pairs = pairs_of(&g);
    for agg in Aggregation::ALL {
        let enc = RelationEncoder::load(
            dir,
            &EncoderOptions {
                aggregation: Some(agg),
                batch_size: 7, // several batches with padding inside each
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            enc.tokenizer().mask_token(),
            g["mask_token"].as_str().unwrap()
        );

        // Token ids: exact, truncation included (the tokenizer's own, below the refusal).
        let toks = enc
            .tokenizer()
            .encode_pairs(enc.template(), &pairs)
            .unwrap();
        for (i, t) in toks.iter().enumerate() {
            let want: Vec<u32> = g["input_ids"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(t.ids, want, "{golden} pair {i} {:?}: token ids", pairs[i]);
            let n_pooled = g["n_pooled"][agg.name()][i].as_u64().unwrap() as usize;
            let (mask, pad) = (enc.tokenizer().mask_id(), enc.tokenizer().pad_id());
            assert_eq!(agg.count(&t.ids, mask, pad), n_pooled);
        }

        // Prompts truncated into their words are refused (the reference embeds what is
        // left, which can be another pair's prompt); they are among the golden pairs that
        // were cut at the limit, and every other pair is embedded as the reference does.
        let spoiled = enc.overlong(&pairs).unwrap();
        assert!(!spoiled.is_empty(), "{golden}: no pair cut into its words");
        for &i in &spoiled {
            assert!(
                toks[i].truncated,
                "{golden} {agg} pair {i} refused but whole"
            );
        }
        assert!(enc.tokenize(&pairs).is_err());
        let kept: Vec<usize> = (0..pairs.len()).filter(|i| !spoiled.contains(i)).collect();
        let kept_pairs: Vec<_> = kept.iter().map(|&i| pairs[i].clone()).collect();
        let raw = enc.embed_raw(&kept_pairs).unwrap();
        let unit_vecs = enc.embed(&kept_pairs).unwrap();
        for (j, &i) in kept.iter().enumerate() {
            let (raw_i, unit_i) = (&raw[j], &unit_vecs[j]);
            let mean: Vec<f32> = g[agg.name()][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            let n = g["n_pooled"][agg.name()][i].as_f64().unwrap() as f32;
            let want_unit = unit(&mean);
            let cos = cosine(unit_i, &want_unit);
            let maxdiff = unit_i
                .iter()
                .zip(&want_unit)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                cos >= 0.99999 && maxdiff <= 1e-4,
                "{golden} {agg} pair {i} {:?}: cosine {cos}, max diff {maxdiff}",
                pairs[i]
            );
            // The raw sum: relative to the vector's scale (golden floats have 6 decimals).
            let scale = mean.iter().fold(0f32, |m, x| m.max(x.abs())) * n;
            for (a, b) in raw_i.iter().zip(&mean) {
                assert!(
                    (a - b * n).abs() <= 1e-4 * scale.max(1.0),
                    "{golden} {agg} pair {i}: raw {a} vs {}",
                    b * n
                );
            }
        }

        // The differentiable kernels compute the same function.
        let seqs: Vec<&[u32]> = toks.iter().map(|t| t.ids.as_slice()).collect();
        let fused = enc.forward_pooled(&seqs, Mode::Inference).unwrap();
        let train = enc.forward_pooled(&seqs, Mode::Train).unwrap();
        let diff = (fused - &train)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let scale = train
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            diff <= 1e-4 * scale,
            "{golden} {agg}: train vs inference {diff}"
        );
        if agg == Aggregation::Mask {
            check_pruned_rows(&enc, &seqs, golden);
        }
    }
}

/// The encoder's pruned last layer (`forward_rows`, what mask pooling runs on the candle
/// path, so on a GPU) gives the mask rows of the full `forward`.
fn check_pruned_rows(enc: &RelationEncoder, seqs: &[&[u32]], golden: &str) {
    let tok = enc.tokenizer();
    let e = enc.encoder();
    // Sequences whose prompt kept its one mask token (the golden pairs include ones cut short).
    let seqs: Vec<&[u32]> = seqs
        .iter()
        .copied()
        .filter(|s| s.iter().filter(|&&id| id == tok.mask_id()).count() == 1)
        .collect();
    assert!(
        seqs.len() >= 30,
        "{golden}: only {} prompts with a mask",
        seqs.len()
    );
    let batch = relbert::batching::make_batch(
        &seqs,
        tok.pad_id(),
        tok.mask_id(),
        Aggregation::Mask,
        |ids, t| e.position_ids(ids, t),
    );
    let (b, t) = (batch.input.batch, batch.input.seq_len);
    assert!(
        batch.input.lengths.iter().any(|&l| l < t),
        "no padding to test"
    );
    let rows: Vec<usize> = seqs
        .iter()
        .map(|s| s.iter().position(|&id| id == tok.mask_id()).unwrap())
        .collect();
    let full = e.forward(&batch.input, Mode::Inference).unwrap();
    let full: Vec<Vec<Vec<f32>>> = full.to_vec3().unwrap();
    let pruned: Vec<Vec<f32>> = e
        .forward_rows(&batch.input, Mode::Inference, &rows)
        .unwrap()
        .to_vec2()
        .unwrap();
    assert_eq!(pruned.len(), b);
    for (i, &r) in rows.iter().enumerate() {
        let want = &full[i][r];
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (a, w) in pruned[i].iter().zip(want) {
            assert!(
                (a - w).abs() <= 1e-5 * scale.max(1.0),
                "{golden}: sequence {i} row {r}: pruned {a} vs full {w}"
            );
        }
    }
    // A row outside the sequences is refused, not read.
    let mut bad = rows.clone();
    bad[0] = t;
    assert!(e.forward_rows(&batch.input, Mode::Inference, &bad).is_err());
    assert!(e
        .forward_rows(&batch.input, Mode::Inference, &rows[1..])
        .is_err());
}

#[test]
fn tiny_bert_matches_transformers() {
    check_model(&fixture("tiny-bert"), "tiny_bert_golden.json");
}

#[test]
fn tiny_roberta_matches_transformers() {
    check_model(&fixture("tiny-roberta"), "tiny_roberta_golden.json");
}

#[test]
fn minilm_matches_transformers() {
    check_model(&minilm_dir(), "minilm_golden.json");
}

#[test]
fn relbert_config_supplies_template_and_mode() {
    let enc = RelationEncoder::load(&fixture("tiny-roberta"), &EncoderOptions::default()).unwrap();
    assert_eq!(enc.aggregation(), Aggregation::AverageNoMask);
    assert_eq!(enc.template().as_str(), relbert::prompt::DEFAULT_TEMPLATE);
    let enc = RelationEncoder::load(
        &fixture("tiny-roberta"),
        &EncoderOptions {
            template: Some("<subj> and <obj> : <mask>".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(enc.template().as_str(), "<subj> and <obj> : <mask>");
}

#[test]
fn duplicate_pairs_give_identical_vectors_in_input_order() {
    let enc = RelationEncoder::load(&fixture("tiny-bert"), &EncoderOptions::default()).unwrap();
    let pairs = vec![("a", "b"), ("dog", "puppy"), ("a", "b")];
    let v = enc.embed(&pairs).unwrap();
    assert_eq!(v[0], v[2]);
    assert_ne!(v[0], v[1]);
    let single = enc.embed(&[("dog", "puppy")]).unwrap();
    assert!(cosine(&single[0], &v[1]) > 0.999999);
}

#[test]
fn offset_weight_combines_prompt_vectors_with_word_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = vec![("paris", "france"), ("dog", "puppy"), ("hot", "cold")];
    let plain = RelationEncoder::load(&fixture("tiny-bert"), &EncoderOptions::default()).unwrap();
    let prompt = plain.embed(&pairs).unwrap();
    let offsets = plain.offsets(&pairs).unwrap();
    assert_eq!(plain.offset_weight(), None);

    let model = common::fixture_with_offset_weight("tiny-bert", dir.path(), Some(0.25));
    let combined = RelationEncoder::load(&model, &EncoderOptions::default()).unwrap();
    assert_eq!(combined.offset_weight(), Some(0.25));
    assert_eq!(combined.dim(), 2 * plain.dim());
    assert_eq!(combined.identity().unwrap().offset_weight, Some(0.25));
    assert_eq!(combined.relbert_config().offset_weight, Some(0.25));
    let got = combined.embed(&pairs).unwrap();
    for ((g, r), o) in got.iter().zip(&prompt).zip(&offsets) {
        let want = relbert::analogy::combine(r, o, 0.25);
        assert_eq!(g.len(), want.len());
        for (a, b) in g.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // The halves carry the weights' square roots.
        let half: f32 = g[..plain.dim()].iter().map(|x| x * x).sum();
        assert!((half - 0.75).abs() < 1e-5, "{half}");
    }
    // Chunks that share words, through one word cache: the same vectors, each word encoded once.
    let mut words = relbert::relation::WordVectors::new();
    let first = combined
        .embed_with_words(&pairs[..2], &|_| {}, &mut words)
        .unwrap();
    assert_eq!(words.len(), 4);
    let reused = vec![("dog", "france"), ("hot", "cold")];
    let second = combined
        .embed_with_words(&reused, &|_| {}, &mut words)
        .unwrap();
    assert_eq!(words.len(), 6, "only hot and cold were new");
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    assert!(close(&first[0], &got[0]) && close(&first[1], &got[1]));
    assert!(close(&second[1], &got[2]));
    assert!(close(&second[0], &combined.embed(&reused[..1]).unwrap()[0]));
    // The raw form of a combined vector is the unit vector itself (up to renormalising).
    for (raw, unit) in combined.embed_raw(&pairs).unwrap().iter().zip(&got) {
        assert!(raw.iter().zip(unit).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    // An override of 0 gives the prompt vectors alone, identity included.
    let zero = RelationEncoder::load(
        &model,
        &EncoderOptions {
            offset_weight: Some(0.0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(zero.dim(), plain.dim());
    assert_eq!(zero.embed(&pairs).unwrap(), prompt);
    assert_eq!(zero.identity().unwrap().offset_weight, None);
}

#[test]
fn offset_weight_outside_the_unit_interval_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::fixture_with_offset_weight("tiny-bert", dir.path(), Some(1.5));
    let err = RelationEncoder::load(&model, &EncoderOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
    assert!(err.contains("offset_weight 1.5"), "{err}");
    let err = RelationEncoder::load(
        &fixture("tiny-bert"),
        &EncoderOptions {
            offset_weight: Some(-0.1),
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("--offset-weight"), "{err}");
}
