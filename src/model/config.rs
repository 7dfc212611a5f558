//! The model's `config.json`: the architecture hyper-parameters the encoder needs, and the
//! `relbert_config` block that published RelBERT checkpoints use to carry their prompt template
//! and aggregation mode.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The two encoder families relbert runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// BERT: absolute positions from 0, token types.
    Bert,
    /// RoBERTa: positions start after the padding index and count only real tokens.
    Roberta,
}

/// The block under `"relbert_config"` in a RelBERT checkpoint's config.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelbertConfig {
    /// Prompt template with `<subj>`, `<obj>` and `<mask>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Aggregation mode name (`average_no_mask`, `mask`, `average`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_mode: Option<String>,
    /// relbert's extension, absent from the reference's checkpoints (whose Python package
    /// ignores it): when set to w in (0, 1], a pair's vector is the prompt vector combined with
    /// the word-vector offset of the same encoder, `[√(1 − w)·r/‖r‖ ; √w·o/‖o‖]` (see
    /// [`crate::analogy::combine`]), twice the hidden width. Absent or 0: the prompt vector alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_weight: Option<f32>,
}

/// The hyper-parameters of a BERT or RoBERTa encoder.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Which family the checkpoint belongs to.
    pub architecture: Architecture,
    /// Vocabulary size (rows of the word-embedding table).
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Rows of the position-embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the token-type table.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Padding token id (RoBERTa's positions start after it).
    pub pad_token_id: u32,
    /// Optional RelBERT prompt settings.
    pub relbert: RelbertConfig,
    /// The whole JSON document, kept so a saved model round-trips unknown keys.
    pub raw: serde_json::Value,
}

fn field<T: serde::de::DeserializeOwned>(
    raw: &serde_json::Value,
    path: &Path,
    key: &str,
    default: Option<T>,
) -> Result<T> {
    match raw.get(key) {
        Some(v) if !v.is_null() => serde_json::from_value(v.clone()).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("field {key:?}: {e}"),
        }),
        _ => default.ok_or_else(|| Error::Config {
            path: path.to_path_buf(),
            message: format!("missing field {key:?}"),
        }),
    }
}

impl ModelConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::MissingFile {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("not valid JSON: {e}"),
        })?;
        Self::from_value(raw, path)
    }

    /// Builds the config from an already parsed JSON document (`path` is used in errors).
    pub fn from_value(raw: serde_json::Value, path: &Path) -> Result<Self> {
        let model_type: String = field(&raw, path, "model_type", None)?;
        let architecture = match model_type.as_str() {
            "bert" => Architecture::Bert,
            "roberta" => Architecture::Roberta,
            other => {
                return Err(Error::Config {
                    path: path.to_path_buf(),
                    message: format!(
                        "unsupported model_type {other:?}; relbert runs \"bert\" and \"roberta\""
                    ),
                })
            }
        };
        let hidden_act: String = field(&raw, path, "hidden_act", Some("gelu".to_string()))?;
        if hidden_act != "gelu" {
            return Err(Error::Config {
                path: path.to_path_buf(),
                message: format!("unsupported hidden_act {hidden_act:?}; only exact \"gelu\""),
            });
        }
        let cfg = ModelConfig {
            architecture,
            vocab_size: field(&raw, path, "vocab_size", None)?,
            hidden_size: field(&raw, path, "hidden_size", None)?,
            num_hidden_layers: field(&raw, path, "num_hidden_layers", None)?,
            num_attention_heads: field(&raw, path, "num_attention_heads", None)?,
            intermediate_size: field(&raw, path, "intermediate_size", None)?,
            max_position_embeddings: field(&raw, path, "max_position_embeddings", None)?,
            type_vocab_size: field(&raw, path, "type_vocab_size", Some(2))?,
            layer_norm_eps: field(&raw, path, "layer_norm_eps", Some(1e-12))?,
            pad_token_id: field(
                &raw,
                path,
                "pad_token_id",
                Some(match architecture {
                    Architecture::Bert => 0,
                    Architecture::Roberta => 1,
                }),
            )?,
            relbert: field(&raw, path, "relbert_config", Some(RelbertConfig::default()))?,
            raw,
        };
        // A negative or zero epsilon gives NaN in every LayerNorm; a dropout probability
        // outside [0, 1) (training reads them; a string was taken as the default) is no
        // probability. Each is reported here, naming the file, not as a loss gone NaN later.
        if !(cfg.layer_norm_eps.is_finite() && cfg.layer_norm_eps > 0.0) {
            return Err(Error::Config {
                path: path.to_path_buf(),
                message: format!(
                    "layer_norm_eps {} must be a positive number",
                    cfg.layer_norm_eps
                ),
            });
        }
        for key in ["hidden_dropout_prob", "attention_probs_dropout_prob"] {
            match cfg.raw.get(key) {
                None | Some(serde_json::Value::Null) => {}
                Some(v) if v.as_f64().is_some_and(|p| (0.0..1.0).contains(&p)) => {}
                Some(v) => {
                    return Err(Error::Config {
                        path: path.to_path_buf(),
                        message: format!("{key} {v} must be a number in [0, 1)"),
                    })
                }
            }
        }
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        {
            return Err(Error::Config {
                path: path.to_path_buf(),
                message: format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    cfg.hidden_size, cfg.num_attention_heads
                ),
            });
        }
        Ok(cfg)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The longest sequence the position table allows.
    pub fn max_sequence_len(&self) -> usize {
        match self.architecture {
            Architecture::Bert => self.max_position_embeddings,
            Architecture::Roberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id as usize + 1),
        }
    }

    /// The config document to save beside trained weights, with `relbert_config` set.
    pub fn to_json_with(&self, relbert: &RelbertConfig) -> serde_json::Value {
        let mut raw = self.raw.clone();
        if let Some(obj) = raw.as_object_mut() {
            obj.insert(
                "relbert_config".to_string(),
                serde_json::to_value(relbert).unwrap_or(serde_json::Value::Null),
            );
        }
        raw
    }
}

/// The three files of a Hugging Face model directory.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
}

impl ModelFiles {
    /// Locates the files in `dir`, failing with the first one missing.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::MissingFile {
                path: dir.to_path_buf(),
            });
        }
        let files = ModelFiles {
            config: dir.join("config.json"),
            weights: dir.join("model.safetensors"),
            tokenizer: dir.join("tokenizer.json"),
        };
        for p in [&files.config, &files.weights, &files.tokenizer] {
            if !p.is_file() {
                return Err(Error::MissingFile { path: p.clone() });
            }
        }
        Ok(files)
    }

    /// Copies the tokenizer files of model directory `src` that exist (`tokenizer.json` and
    /// the slow tokenizers' companions) into `dst`, so that a derived model (trained or
    /// averaged) loads in any Hugging Face tool.
    pub fn copy_tokenizer_files(src: &Path, dst: &Path) -> Result<()> {
        for name in TOKENIZER_FILES {
            let from = src.join(name);
            if from.is_file() {
                std::fs::copy(&from, dst.join(name)).map_err(|e| Error::io(&from, e))?;
            }
        }
        Ok(())
    }
}

/// The tokenizer files a Hugging Face model directory may hold.
pub(crate) const TOKENIZER_FILES: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
];
