//! Reduced precision (`--dtype`) against float32 and against Hugging Face's float32 goldens:
//! every pair's vector at bf16 and f16 must keep cosine ≥ 0.999, on the tiny fixtures and the
//! real MiniLM (goldens), and on 2,000 real pairs (`benchmarks/data/pairs2000.tsv`); both on
//! the packed CPU path (the AVX512-BF16 kernel where the CPU has it) and on candle's tensor
//! path (the one the GPU runs). Each check also asserts that the reduced vectors differ from
//! the float32 ones, so a `--dtype` that were silently ignored fails here.
#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};

use common::{cosine, fixture, minilm_dir};
use relbert::encoder::Mode;
use relbert::pooling::Aggregation;
use relbert::{Dtype, EncoderOptions, RelationEncoder};
use serde_json::Value;

/// The bar the issue sets for every reduced path, per pair.
const MIN_COSINE: f64 = 0.999;

const REDUCED: [Dtype; 2] = [Dtype::Bf16, Dtype::F16];

fn load(dir: &Path, agg: Aggregation, dtype: Dtype) -> RelationEncoder {
    RelationEncoder::load(
        dir,
        &EncoderOptions {
            aggregation: Some(agg),
            batch_size: 7,
            dtype,
            ..Default::default()
        },
    )
    .unwrap()
}

fn golden(name: &str) -> (Vec<(String, String)>, Value) {
    let g: Value = serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap();
    let pairs = g["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
        .collect();
    (pairs, g)
}

fn golden_vectors(g: &Value, agg: Aggregation) -> Vec<Vec<f32>> {
    g[agg.name()]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

/// Asserts cosine ≥ [`MIN_COSINE`] for every pair, and that `got` is not `f32` itself;
/// returns the worst cosine.
fn check(what: &str, got: &[Vec<f32>], want: &[Vec<f32>], f32_path: &[Vec<f32>]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}");
    let mut worst = 1.0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let c = cosine(g, w);
        assert!(
            c >= MIN_COSINE,
            "{what}: pair {i} has cosine {c} < {MIN_COSINE}"
        );
        worst = worst.min(c);
    }
    let changed = got.iter().zip(f32_path).any(|(a, b)| a != b);
    assert!(
        changed,
        "{what}: identical to float32: the dtype was not applied"
    );
    eprintln!("{what}: worst cosine {worst:.6} over {} pairs", got.len());
    worst
}

/// The candle tensor path's pooled sums (what the GPU computes), in input order.
fn candle_path(enc: &RelationEncoder, pairs: &[(String, String)]) -> Vec<Vec<f32>> {
    let toks = enc.tokenize(pairs).unwrap();
    let seqs: Vec<&[u32]> = toks.iter().map(|t| t.ids.as_slice()).collect();
    enc.forward_pooled(&seqs, Mode::Inference)
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
}

/// `v` without the items at `drop`.
fn without<T>(v: Vec<T>, drop: &[usize]) -> Vec<T> {
    v.into_iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, x)| x)
        .collect()
}

fn check_goldens(dir: &Path, name: &str) {
    let (all_pairs, g) = golden(name);
    for agg in Aggregation::ALL {
        let reference = load(dir, agg, Dtype::F32);
        // The golden pairs whose prompts truncation cuts into are refused (tests/parity.rs).
        let spoiled = reference.overlong(&all_pairs).unwrap();
        let want = without(golden_vectors(&g, agg), &spoiled);
        let pairs = without(all_pairs.clone(), &spoiled);
        let f32_packed = reference.embed_raw(&pairs).unwrap();
        let f32_candle = candle_path(&reference, &pairs);
        for dtype in REDUCED {
            let enc = load(dir, agg, dtype);
            assert_eq!(enc.dtype(), dtype);
            assert_eq!(enc.identity().unwrap().dtype, dtype);
            let got = enc.embed_raw(&pairs).unwrap();
            check(
                &format!("{name} {agg} {dtype} packed"),
                &got,
                &want,
                &f32_packed,
            );
            let got = candle_path(&enc, &pairs);
            check(
                &format!("{name} {agg} {dtype} candle"),
                &got,
                &want,
                &f32_candle,
            );
        }
    }
}

#[test]
fn tiny_bert_reduced_precision_keeps_the_goldens() {
    check_goldens(&fixture("tiny-bert"), "tiny_bert_golden.json");
}

#[test]
fn tiny_roberta_reduced_precision_keeps_the_goldens() {
    check_goldens(&fixture("tiny-roberta"), "tiny_roberta_golden.json");
}

#[test]
fn minilm_reduced_precision_keeps_the_goldens() {
    check_goldens(&minilm_dir(), "minilm_golden.json");
}

fn pairs2000() -> Vec<(String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benchmarks/data/pairs2000.tsv");
    relbert::pairs::read_pairs(&path)
        .unwrap()
        .into_iter()
        .map(|r| (r.head, r.tail))
        .collect()
}

/// 2,000 real pairs through the default pooling of the base MiniLM, packed CPU path (the one
/// `embed` and `index build` use), against float32 on the same path.
#[test]
fn minilm_reduced_precision_on_2000_real_pairs() {
    let pairs = pairs2000();
    assert!(pairs.len() >= 2000, "{} pairs", pairs.len());
    let dir = minilm_dir();
    let f32_vectors = load(&dir, Aggregation::AverageNoMask, Dtype::F32)
        .embed_raw(&pairs)
        .unwrap();
    for dtype in REDUCED {
        let got = load(&dir, Aggregation::AverageNoMask, dtype)
            .embed_raw(&pairs)
            .unwrap();
        check(
            &format!("2000 pairs {dtype}"),
            &got,
            &f32_vectors,
            &f32_vectors,
        );
    }
}

/// Training stays float32: asking for a trainable reduced encoder is refused, naming the flag.
#[test]
fn a_trainable_reduced_encoder_is_refused() {
    let err = RelationEncoder::load(
        &fixture("tiny-bert"),
        &EncoderOptions {
            trainable: true,
            dtype: Dtype::Bf16,
            ..Default::default()
        },
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(err.contains("--dtype"), "{err}");
}

fn relbert() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn");
    c
}

/// `--dtype` end to end: an index built at bf16 says so, a query encoding a new pair at the
/// index's format is quiet, one at f32 is answered with a note, and a bad format names the
/// flag.
#[test]
fn an_index_records_its_dtype_and_queries_at_another_get_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.tsv");
    let words = [
        "paris", "france", "tokyo", "japan", "dog", "puppy", "cat", "kitten",
    ];
    let mut text = String::new();
    for a in words {
        for b in words {
            if a != b {
                text.push_str(&format!("{a}\t{b}\n"));
            }
        }
    }
    std::fs::write(&pairs, text).unwrap();
    let out = dir.path().join("idx");
    relbert()
        .args(["index", "build", "--dtype", "bf16", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let info = relbert()
        .args(["index", "info", "--json"])
        .arg(&out)
        .assert()
        .success();
    let doc: Value = serde_json::from_slice(&info.get_output().stdout).unwrap();
    assert_eq!(doc["encoder"]["aggregation"], "average_no_mask");
    assert_eq!(doc["encoder"]["dtype"], "bf16");

    let query = |extra: &[&str]| {
        let a = relbert()
            .env("RELBERT_LOG", "info")
            .args(["query", "--json", "-k", "3", "--index"])
            .arg(&out)
            .args(["lion", "cub"])
            .args(extra)
            .assert()
            .success();
        String::from_utf8_lossy(&a.get_output().stderr).to_string()
    };
    let same = query(&[]);
    assert!(!same.contains("was built at"), "{same}");
    let other = query(&["--dtype", "f32"]);
    assert!(
        other.contains("built at bf16") && other.contains("at f32"),
        "{other}"
    );

    let err = relbert()
        .args(["embed", "--dtype", "fp8", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(&pairs)
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&err.get_output().stderr).to_string();
    assert!(
        stderr.contains("--dtype") && stderr.contains("fp8"),
        "{stderr}"
    );
}

/// An interrupted `index build` of `pairs` into `out` encoded at `dtype`, as the CLI leaves it
/// when killed after its first chunk: its encoder identity (number format included), its
/// input's identity, the first pair stored.
fn interrupted_build(pairs: &Path, out: &Path, dtype: Dtype) {
    let enc = load(&fixture("tiny-bert"), Aggregation::AverageNoMask, dtype);
    let records = relbert::pairs::read_pairs(pairs).unwrap();
    let spec = relbert_index::IndexSpec {
        dim: enc.dim() as u32,
        precision: relbert_index::Precision::F32,
        encoder: relbert::indexing::encoder_info(&enc.identity().unwrap()),
        input: relbert::pairs::records_identity(&records),
    };
    let mut b = relbert_index::IndexBuilder::create_or_resume(out, spec, false).unwrap();
    let first = [(records[0].head.as_str(), records[0].tail.as_str())];
    b.append_chunk(
        &[relbert_index::PairEntry::new(first[0].0, first[0].1)],
        &enc.embed(&first).unwrap()[0],
    )
    .unwrap();
}

/// `relbert index build` of `pairs` into `out` on the tiny model, logging at info, with
/// `extra` flags.
fn build_index(pairs: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    relbert()
        .env("RELBERT_LOG", "info")
        .args([
            "index",
            "build",
            "--aggregation",
            "average_no_mask",
            "--model",
        ])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(pairs)
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
}

/// Found by a review: `index build --dtype bf16`, interrupted and run again without
/// `--dtype` (the flag forgotten), was refused as "another encoder" with advice to run it
/// "with the original model, template and aggregation", none of which had changed. Without
/// `--dtype` a resumed build encodes at the format it began with, as a build into a Qdrant
/// collection does, and says so.
#[test]
fn a_resumed_build_without_dtype_keeps_the_format_it_began_with() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = common::pair_file(dir.path());
    let out = dir.path().join("idx");
    interrupted_build(&pairs, &out, Dtype::Bf16);
    let a = build_index(&pairs, &out, &[]).success();
    let log = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        log.contains("interrupted run at bf16: encoding at bf16") && log.contains("resuming: 1"),
        "{log}"
    );
    assert!(!dir.path().join("idx.partial").exists());
    let info = relbert()
        .args(["index", "info", "--json", "--verify"])
        .arg(&out)
        .assert()
        .success();
    let doc: Value = serde_json::from_slice(&info.get_output().stdout).unwrap();
    assert_eq!(doc["encoder"]["aggregation"], "average_no_mask");
    assert_eq!(doc["encoder"]["dtype"], "bf16");

    // A build without a partial one stays at float32, saying nothing of formats.
    let fresh = dir.path().join("fresh");
    let a = build_index(&pairs, &fresh, &[]).success();
    let log = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(!log.contains("interrupted run"), "{log}");
    let info = relbert()
        .args(["index", "info", "--json"])
        .arg(&fresh)
        .assert()
        .success();
    let doc: Value = serde_json::from_slice(&info.get_output().stdout).unwrap();
    assert_eq!(doc["encoder"]["aggregation"], "average_no_mask");
    assert_eq!(doc["count"], info_count(&out));
}

/// `count` of `index info --json` of `index`.
fn info_count(index: &Path) -> Value {
    let info = relbert()
        .args(["index", "info", "--json"])
        .arg(index)
        .assert()
        .success();
    let doc: Value = serde_json::from_slice(&info.get_output().stdout).unwrap();
    doc["count"].clone()
}

/// Found by a review: a resumed build given another `--dtype` than the one it began with was
/// refused as "another encoder". The refusal names the number format and the flag to give,
/// and the partial build stays to be resumed with it.
#[test]
fn a_resumed_build_at_another_dtype_is_told_the_flag_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = common::pair_file(dir.path());
    for (began, now) in [("bf16", "f32"), ("bf16", "f16"), ("f32", "bf16")] {
        let out = dir.path().join(format!("idx-{began}-{now}"));
        interrupted_build(&pairs, &out, began.parse().unwrap());
        let a = build_index(&pairs, &out, &["--dtype", now]).failure();
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        for want in [
            format!("number format {began} (--dtype {began}), now {now}"),
            format!("run it again with --dtype {began}"),
        ] {
            assert!(
                err.contains(&want),
                "{began} then {now}: {want:?} not in {err}"
            );
        }
        assert!(!err.contains("another encoder"), "{err}");
        let mut partial = out.clone().into_os_string();
        partial.push(".partial");
        assert!(Path::new(&partial).join("checkpoint").is_file(), "{err}");
        // As told, it resumes.
        build_index(&pairs, &out, &["--dtype", began]).success();
    }
}
