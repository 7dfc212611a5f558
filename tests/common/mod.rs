//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Path of a file under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The base MiniLM fetched by scripts/fetch-base-model.sh.
pub fn minilm_dir() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    assert!(
        p.join("model.safetensors").is_file(),
        "{} is missing: run scripts/fetch-base-model.sh first (CI does)",
        p.display()
    );
    p
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Scales a vector to unit length.
pub fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// A copy of a fixture model in `dir` whose `relbert_config.offset_weight` is `w` (the key is
/// removed when `w` is `None`).
pub fn fixture_with_offset_weight(name: &str, dir: &Path, w: Option<f64>) -> PathBuf {
    let out = dir.join(format!("{name}-offset"));
    std::fs::create_dir_all(&out).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture(name).join(f), out.join(f)).unwrap();
    }
    set_offset_weight(
        &fixture(name).join("config.json"),
        &out.join("config.json"),
        w,
    );
    out
}

/// Writes `from`'s config to `to` with `relbert_config.offset_weight` set to `w` (or removed).
pub fn set_offset_weight(from: &Path, to: &Path, w: Option<f64>) {
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(from).unwrap()).unwrap();
    let block = cfg["relbert_config"].as_object_mut().unwrap();
    match w {
        Some(w) => block.insert("offset_weight".into(), serde_json::json!(w)),
        None => block.remove("offset_weight"),
    };
    std::fs::write(to, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
}
