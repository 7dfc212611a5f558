//! Checkpoint averaging: one model whose every weight is the element-wise mean of the same
//! weight in several checkpoints of one architecture (for instance the last epochs of a
//! training run, kept with `relbert train --checkpoint-dir`). Averaging the weights of
//! neighbouring checkpoints of one run smooths the epoch-to-epoch noise of contrastive
//! fine-tuning, and the result is an ordinary Hugging Face model directory.
//!
//! Written here rather than borrowed: the tools that merge Hugging Face checkpoints are Python,
//! and the operation is a mean over safetensors maps, which candle already reads and writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::config::{ModelConfig, ModelFiles};
use crate::encoder::{write_safetensors, Encoder};
use crate::error::{Error, Result};
use crate::output::{write_dir_atomically, write_json};

/// Keys of `config.json` allowed to differ between the averaged checkpoints: bookkeeping that
/// says nothing about the architecture or the pair function.
const CONFIG_KEYS_IGNORED: [&str; 3] = ["_name_or_path", "torch_dtype", "transformers_version"];

/// What [`average_models`] wrote, saved as `averaged_from.json` in the new model directory.
#[derive(Debug, Clone, Serialize)]
pub struct AverageReport {
    /// The averaged model directories, in the order given.
    pub sources: Vec<PathBuf>,
    /// SHA-256 of each source's `model.safetensors`.
    pub sources_weights_sha256: Vec<String>,
    /// Tensors averaged.
    pub tensors: usize,
    /// Parameters (elements) per model.
    pub parameters: usize,
    /// `F16` or `F32`: the saved weights' type.
    pub dtype: String,
}

/// A model's `config.json` as JSON, without the keys allowed to differ.
fn comparable_config(path: &Path) -> Result<serde_json::Value> {
    let mut value = ModelConfig::from_file(path)?.raw;
    if let Some(map) = value.as_object_mut() {
        for key in CONFIG_KEYS_IGNORED {
            map.remove(key);
        }
    }
    Ok(value)
}

/// Reads a checkpoint's weights as float32 tensors on the CPU.
fn load_f32(path: &Path) -> Result<HashMap<String, Tensor>> {
    let tensors =
        candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("cannot read safetensors: {e}"),
        })?;
    tensors
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_dtype(DType::F32)?)))
        .collect()
}

/// Averages the weights of the model directories `dirs` (at least two, same architecture,
/// same `config.json` up to bookkeeping keys, same tensor names and shapes) into a new model
/// directory `out`, written to a temporary directory and renamed; an existing `out` is refused
/// unless `force`. The config and tokenizer files are the first model's. Weights are saved
/// float16 with `half`, else float32.
pub fn average_models(
    dirs: &[PathBuf],
    out: &Path,
    half: bool,
    force: bool,
) -> Result<AverageReport> {
    if dirs.len() < 2 {
        return Err(Error::InvalidArgument {
            flag: "MODELS".into(),
            message: format!("averaging needs at least two models, got {}", dirs.len()),
        });
    }
    let _lock = crate::output::claim_model_output(out, force)?;
    // Only an existing `out` can be one of the (existing) inputs; compare real paths so that
    // `./m` and `m` are seen as one.
    let same = |d: &PathBuf| match (d.canonicalize(), out.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if let Some(d) = dirs.iter().find(|d| same(d)) {
        return Err(Error::InvalidArgument {
            flag: "--out".into(),
            message: format!("{} is also one of the models averaged", d.display()),
        });
    }
    let files = dirs
        .iter()
        .map(|d| ModelFiles::in_dir(d))
        .collect::<Result<Vec<_>>>()?;
    let first = &files[0];
    let first_config = comparable_config(&first.config)?;
    let mut hashes = vec![Encoder::weights_sha256(&first.weights)?];
    let mut sum = load_f32(&first.weights)?;
    for f in &files[1..] {
        if comparable_config(&f.config)? != first_config {
            return Err(Error::Config {
                path: f.config.clone(),
                message: format!(
                    "differs from {} (architecture or relbert_config); only checkpoints of one \
                     model can be averaged",
                    first.config.display()
                ),
            });
        }
        hashes.push(Encoder::weights_sha256(&f.weights)?);
        let tensors = load_f32(&f.weights)?;
        if sum.len() != tensors.len() {
            return Err(Error::Config {
                path: f.weights.clone(),
                message: format!(
                    "{} tensors where the first model has {}",
                    tensors.len(),
                    sum.len()
                ),
            });
        }
        for (name, t) in tensors {
            let tensor_error = |message: String| Error::Tensor {
                path: f.weights.clone(),
                tensor: name.clone(),
                message,
            };
            let Some(a) = sum.get_mut(&name) else {
                return Err(tensor_error("not in the first model".into()));
            };
            if a.dims() != t.dims() {
                return Err(tensor_error(format!(
                    "shape {:?} where the first model has {:?}",
                    t.dims(),
                    a.dims()
                )));
            }
            *a = (&*a + &t)?;
        }
    }
    let scale = 1.0 / dirs.len() as f64;
    let dtype = if half { DType::F16 } else { DType::F32 };
    let mut parameters = 0;
    let mut mean = HashMap::with_capacity(sum.len());
    for (name, t) in sum {
        parameters += t.elem_count();
        mean.insert(name, t.affine(scale, 0.0)?.to_dtype(dtype)?);
    }
    let report = AverageReport {
        sources: dirs.to_vec(),
        sources_weights_sha256: hashes,
        tensors: mean.len(),
        parameters,
        dtype: format!("{dtype:?}").to_uppercase(),
    };
    write_dir_atomically(out, |tmp| {
        write_safetensors(&mean, &tmp.join("model.safetensors"))?;
        std::fs::copy(&first.config, tmp.join("config.json"))
            .map_err(|e| Error::io(&first.config, e))?;
        ModelFiles::copy_tokenizer_files(&dirs[0], tmp)?;
        write_json(&tmp.join("averaged_from.json"), &report)
    })?;
    Ok(report)
}
