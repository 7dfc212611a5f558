//! `--json` on the commands that printed only a line for people (`index build`, `index
//! rebuild`, `embed`, `train`, `average`): one JSON object on standard output, holding what
//! the command did, under the names `index add --json` and `index export --json` give the
//! same facts; the lines for people stay on standard error.
#![cfg(feature = "cli")]

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::{fixture, pair_file, toy_data};

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn")
        .env_remove("RELBERT_MODEL")
        .env_remove("RELBERT_INDEX");
    c
}

/// Standard output of a successful run, parsed as exactly one JSON object (nothing else on
/// standard output: one line).
fn json_of(c: &mut Command) -> serde_json::Value {
    let doc = parsed(c);
    let text = doc.1;
    assert_eq!(
        text.lines().count(),
        1,
        "one line on standard output: {text:?}"
    );
    doc.0
}

/// Standard output of a successful run, parsed as one JSON object, and its text.
fn parsed(c: &mut Command) -> (serde_json::Value, String) {
    let out = c.assert().success().get_output().clone();
    let text = String::from_utf8(out.stdout).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(doc.is_object(), "{doc}");
    (doc, text)
}

/// What `index info --json` (pretty-printed) says of the index `dir`.
fn info(dir: &Path) -> serde_json::Value {
    parsed(relbert().args(["index", "info", "--json"]).arg(dir)).0
}

/// The distinct pairs and the lines of a pair file (its comments and blank lines left out).
fn counts(pairs: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(pairs).unwrap();
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut f = l.split('\t');
            (f.next().unwrap(), f.next().unwrap())
        })
        .collect();
    let distinct: std::collections::HashSet<_> = lines.iter().collect();
    (distinct.len() as u64, lines.len() as u64)
}

/// A duration in seconds, under the `_secs` name `index add --json` uses.
fn secs(doc: &serde_json::Value, key: &str) -> f64 {
    assert!(key.ends_with("_secs"), "{key}");
    let v = doc[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {doc}"));
    assert!(v >= 0.0, "{doc}");
    v
}

#[test]
fn index_build_json_reports_the_index_it_built() {
    let d = tempfile::tempdir().unwrap();
    let pairs = pair_file(d.path());
    let (distinct, lines) = counts(&pairs);
    let out = d.path().join("idx");
    let doc = json_of(
        relbert()
            .args(["index", "build", "--model"])
            .arg(fixture("tiny-bert"))
            .arg("--pairs")
            .arg(&pairs)
            .arg("--out")
            .arg(&out)
            .args(["--f16", "--m", "8", "--ef-construction", "50", "--json"]),
    );
    assert_eq!(doc["index"], out.display().to_string(), "{doc}");
    assert_eq!(doc["pairs_read"], lines, "{doc}");
    assert_eq!(doc["count"], distinct, "{doc}");
    assert_eq!(doc["repeated_in_input"], lines - distinct, "{doc}");
    assert_eq!(doc["skipped_long"], 0, "{doc}");
    assert_eq!(doc["resumed_rows"], 0, "{doc}");
    assert_eq!(doc["precision"], "f16", "{doc}");
    assert_eq!(doc["dtype"], "f32", "{doc}");
    assert_eq!(doc["hnsw"]["m"], 8, "{doc}");
    assert_eq!(doc["hnsw"]["ef_construction"], 50, "{doc}");
    secs(&doc, "encode_secs");
    secs(&doc, "graph_secs");
    // The index is the one `index info --json` describes.
    let info = info(&out);
    assert_eq!(info["count"], doc["count"], "{info}");
    assert_eq!(info["precision"], doc["precision"], "{info}");
}

#[test]
fn index_rebuild_json_reports_the_source_and_the_new_index() {
    let d = tempfile::tempdir().unwrap();
    let pairs = pair_file(d.path());
    let (distinct, _) = counts(&pairs);
    let src = common::tiny_index(&pairs, &d.path().join("idx"));
    let out = d.path().join("rebuilt");
    let doc = json_of(
        relbert()
            .args(["index", "rebuild", "--index"])
            .arg(&src)
            .arg("--out")
            .arg(&out)
            .args(["--f16", "--m", "12", "--json"]),
    );
    assert_eq!(doc["index"], out.display().to_string(), "{doc}");
    assert_eq!(doc["source"], src.display().to_string(), "{doc}");
    assert_eq!(doc["count"], distinct, "{doc}");
    assert_eq!(doc["precision"], "f16", "{doc}");
    assert_eq!(doc["hnsw"]["m"], 12, "{doc}");
    secs(&doc, "rebuild_secs");
    let info = info(&out);
    assert_eq!(info["precision"], "f16", "{info}");
    assert_eq!(info["hnsw"]["m"], 12, "{info}");
}

#[test]
fn embed_json_reports_the_files_and_vectors_written() {
    let d = tempfile::tempdir().unwrap();
    let pairs = pair_file(d.path());
    let (_, lines) = counts(&pairs);
    // `embed --json` of `model` into `out`, with `flags` before the model.
    let embed = |flags: &[&str], model: &Path, out: &Path| {
        json_of(
            relbert()
                .arg("embed")
                .args(flags)
                .arg("--model")
                .arg(model)
                .arg("--pairs")
                .arg(&pairs)
                .arg("--out")
                .arg(out)
                .arg("--json"),
        )
    };
    // The encoder as an index of the same model records it (the files cannot name it).
    let index = common::tiny_index(&pairs, &d.path().join("idx"));
    let info = parsed(
        relbert()
            .args(["index", "info", "--json", "--index"])
            .arg(&index),
    )
    .0;
    for (name, format, list) in [("v.npy", "npy", true), ("v.jsonl", "jsonl", false)] {
        let out = d.path().join(name);
        let doc = embed(&[], &fixture("tiny-bert"), &out);
        assert_eq!(doc["out"], out.display().to_string(), "{doc}");
        assert_eq!(doc["format"], format, "{doc}");
        assert_eq!(doc["pairs_read"], lines, "{doc}");
        assert_eq!(doc["written"], lines, "{doc}");
        assert_eq!(doc["skipped_long"], 0, "{doc}");
        assert_eq!(doc["dtype"], "f32", "{doc}");
        assert_eq!(doc["raw"], false, "{doc}");
        assert_eq!(doc["encoder"], info["encoder"], "{doc}");
        secs(&doc, "encode_secs");
        let dim = doc["dim"].as_u64().unwrap();
        if list {
            let sidecar = d.path().join("v.pairs.tsv");
            assert_eq!(doc["pairs"], sidecar.display().to_string(), "{doc}");
            // One data line per row, after its `#` header.
            let text = std::fs::read_to_string(&sidecar).unwrap();
            let listed = text.lines().filter(|l| !l.starts_with('#')).count();
            assert_eq!(listed as u64, lines);
            // The array holds `written` rows of `dim` float32s after its header.
            let bytes = std::fs::metadata(&out).unwrap().len();
            assert!(bytes >= lines * dim * 4, "{bytes} bytes");
        } else {
            assert!(doc["pairs"].is_null(), "{doc}");
            let text = std::fs::read_to_string(&out).unwrap();
            assert_eq!(text.lines().count() as u64, lines);
        }
    }
    // The encoder follows the flags that change the vectors, as an index built with the same
    // flags records it, and differs from the model's defaults.
    let masked = d.path().join("idx-mask");
    relbert()
        .args(["index", "build", "--aggregation", "mask", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&masked)
        .assert()
        .success();
    let info_mask = parsed(
        relbert()
            .args(["index", "info", "--json", "--index"])
            .arg(&masked),
    )
    .0;
    let mask = d.path().join("mask.jsonl");
    let doc = embed(&["--aggregation", "mask"], &fixture("tiny-bert"), &mask);
    assert_eq!(doc["encoder"], info_mask["encoder"], "{doc}");
    assert_ne!(doc["encoder"], info["encoder"], "{doc}");
    // --raw on a model with an offset weight writes unit vectors (warned): not raw sums.
    let offset = common::fixture_with_offset_weight("tiny-bert", d.path(), Some(0.5));
    for (model, raw) in [(fixture("tiny-bert"), true), (offset, false)] {
        let doc = embed(&["--raw", "--force"], &model, &d.path().join("raw.jsonl"));
        assert_eq!(doc["raw"], raw, "{doc}");
    }
    // Standard output holds the vectors without --out: the summary cannot share it.
    let refused = relbert()
        .args(["embed", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(&pairs)
        .arg("--json")
        .assert()
        .code(2);
    let out = refused.get_output();
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--json needs --out"));
}

#[test]
fn average_json_reports_the_models_averaged() {
    let d = tempfile::tempdir().unwrap();
    let mut models = Vec::new();
    for name in ["m1", "m2"] {
        let dir = d.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(fixture("tiny-bert")).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
        }
        models.push(dir);
    }
    let out = d.path().join("avg");
    let doc = json_of(
        relbert()
            .arg("average")
            .args(&models)
            .arg("--out")
            .arg(&out)
            .args(["--half", "--json"]),
    );
    assert_eq!(doc["out"], out.display().to_string(), "{doc}");
    let given: Vec<String> = models.iter().map(|m| m.display().to_string()).collect();
    assert_eq!(doc["models"], serde_json::json!(given), "{doc}");
    assert_eq!(doc["dtype"], "f16", "{doc}");
    assert!(doc["tensors"].as_u64().unwrap() > 0, "{doc}");
    assert!(doc["parameters"].as_u64().unwrap() > 0, "{doc}");
    assert!(out.join("model.safetensors").is_file());
}

#[test]
fn train_json_reports_the_model_it_saved() {
    let d = tempfile::tempdir().unwrap();
    toy_data(d.path());
    let out = d.path().join("model");
    let doc = json_of(
        relbert()
            .args(["train", "--base"])
            .arg(fixture("tiny-bert"))
            .arg("--data")
            .arg(d.path())
            .arg("--out")
            .arg(&out)
            .args([
                "--epochs",
                "2",
                "--lr",
                "1e-3",
                "--batch-size",
                "4",
                "--json",
            ]),
    );
    assert_eq!(doc["out"], out.display().to_string(), "{doc}");
    assert_eq!(
        doc["base"],
        fixture("tiny-bert").display().to_string(),
        "{doc}"
    );
    assert_eq!(doc["epochs"], 2, "{doc}");
    assert_eq!(doc["epochs_run"], 2, "{doc}");
    assert_eq!(doc["dtype"], "f32", "{doc}");
    assert_eq!(doc["loss"], "nce", "{doc}");
    secs(&doc, "train_secs");
    // The best epoch and its score are the ones metrics.json records beside the model.
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(
        doc["metrics"],
        out.join("metrics.json").display().to_string()
    );
    assert_eq!(doc["best_epoch"], metrics["best_epoch"], "{doc}\n{metrics}");
    assert_eq!(doc["best_score"], metrics["best_score"], "{doc}\n{metrics}");
    // One step per relation per epoch.
    assert_eq!(doc["steps"], 8, "{doc}");
    assert!(out.join("model.safetensors").is_file());
}
