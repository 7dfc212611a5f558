//! The model's `config.json`: the architecture hyper-parameters the encoder needs, and the
//! `relbert_config` block that published RelBERT checkpoints use to carry their prompt template
//! and aggregation mode.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

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
    /// Where [`Self::template`] came from when a letter made it (see [`TemplateLetter`]),
    /// so that a template relbert cannot compute names the key the file has; never written.
    #[serde(skip)]
    pub template_letter: Option<TemplateLetter>,
}

/// A built-in template's letter as a `relbert_config` gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateLetter {
    /// The key it was written under: `template_type` or `custom_template_type`.
    pub key: &'static str,
    /// The letter.
    pub letter: String,
}

impl TemplateLetter {
    /// Why the template this letter names (`template`) cannot be computed, for a config
    /// without a `--template` override: the letter made it, so the message names the key and
    /// the letter (`relbert_config.template` is a key the file does not have).
    pub fn unsupported(&self, template: &str) -> String {
        format!(
            "relbert_config.{} {:?} names the reference's built-in template {template:?}, \
             which has no {} (the reference fills it as it is), and relbert computes only \
             templates with <subj>, <obj> and <mask>: this letter is not supported. Write the prompt to use as \
             \"template\" in relbert_config (a written template is used instead of the \
             letter, as the reference does), give another letter, or pass --template",
            self.key,
            self.letter,
            crate::prompt::missing_placeholders(template).join(" or "),
        )
    }
}

impl RelbertConfig {
    /// Reads the `relbert_config` block of the config file `path` (absent or `null`: the
    /// defaults). Besides relbert's own keys it understands those the reference's Python
    /// package wrote, which decide the vector as much: `mode` (the older name of
    /// `aggregation_mode`), `custom_template` (a template), `template_mode` (only
    /// `"manual"`, a written template, means anything) and `template_type` (or
    /// `custom_template_type`): a letter naming a built-in template of the oldest versions
    /// ([`crate::prompt::PRESET_TEMPLATES`]). These were ignored, and such a checkpoint
    /// computed the default template and aggregation without a word. Two keys giving
    /// different values, a `template_mode` other than `"manual"`, a letter the reference did
    /// not define and a template that is a JSON object (a trained, continuous prompt) are
    /// refused; any other key is stored metadata and gets a warning, so a misspelt key is
    /// seen. The form relbert writes (`template`, `aggregation_mode`) is unchanged.
    pub fn from_block(block: Option<&serde_json::Value>, path: &Path) -> Result<Self> {
        use serde_json::Value;
        let obj = match block {
            None | Some(Value::Null) => return Ok(RelbertConfig::default()),
            Some(Value::Object(obj)) => obj,
            Some(other) => {
                return Err(Error::Config {
                    path: path.to_path_buf(),
                    message: format!("field \"relbert_config\": {other} is not a JSON object"),
                })
            }
        };
        let refuse = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        // A key's value, `None` when absent or null (as serde reads an `Option`).
        fn get<T: serde::de::DeserializeOwned>(
            obj: &serde_json::Map<String, Value>,
            path: &Path,
            key: &str,
        ) -> Result<Option<T>> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => serde_json::from_value(v.clone())
                    .map(Some)
                    .map_err(|e| Error::Config {
                        path: path.to_path_buf(),
                        message: format!("field \"relbert_config.{key}\": {e}"),
                    }),
            }
        }
        // The value given under either of two names; both with different values is refused,
        // as either reading would be a guess.
        let either = |new: &str, old: &str| -> Result<Option<String>> {
            match (
                get::<String>(obj, path, new)?,
                get::<String>(obj, path, old)?,
            ) {
                (Some(a), Some(b)) if a != b => Err(refuse(format!(
                    "relbert_config gives {new:?} {a:?} and {old:?} {b:?}, which disagree; \
                     keep one of them"
                ))),
                (a, b) => Ok(a.or(b)),
            }
        };
        // A map is a trained (continuous) prompt of the reference's prompt-tuning versions:
        // token embeddings, not text. serde's "invalid type: map" said nothing of that.
        for key in ["template", "custom_template"] {
            if let Some(Value::Object(_)) = obj.get(key) {
                return Err(refuse(format!(
                    "relbert_config.{key} is a JSON object: a trained (continuous) prompt, \
                     which is not supported; relbert computes only a written template, a \
                     string with <subj>, <obj> and <mask>"
                )));
            }
        }
        let template = either("template", "custom_template")?;
        // A letter naming one of the oldest versions' built-in templates, which is then the
        // template; one also written out must be the same.
        // The name the user wrote the letter under, for messages.
        let type_key = match obj.get("template_type") {
            None | Some(Value::Null) => "custom_template_type",
            Some(_) => "template_type",
        };
        let letter = either("template_type", "custom_template_type")?;
        let preset = match &letter {
            None => None,
            Some(letter) => match crate::prompt::preset_template(letter) {
                Some(t) => Some(t.to_string()),
                None => {
                    let known: Vec<&str> = crate::prompt::PRESET_TEMPLATES
                        .iter()
                        .map(|(l, _)| *l)
                        .collect();
                    let key = type_key;
                    return Err(refuse(format!(
                        "relbert_config.{key} {letter:?} is not one of the reference's \
                         built-in templates ({}); write the prompt itself as \"template\" \
                         (with <subj>, <obj> and <mask>)",
                        known.join(", ")
                    )));
                }
            },
        };
        // The reference computes a written template when there is one and only then looks
        // at the letter (`word_pair_prompter`: `custom_template` first, else
        // `preset_templates[template_type]`), so its checkpoints can carry a default letter
        // beside their own template.
        // A config is read many times in one run (training re-reads its base model's at
        // every save): its warnings are given once per file.
        let first_reading = first_warning_for(path);
        let mut template_letter = None;
        let template = match (template, preset) {
            (Some(t), Some(p)) => {
                if t != p && first_reading {
                    tracing::warn!(
                        "{}: relbert_config gives the template {t:?} and a template_type whose \
                         template is {p:?}; the written template is used, as the reference does",
                        path.display()
                    );
                }
                Some(t)
            }
            // A letter's template is not checked here: one relbert cannot compute ("e" has no
            // <subj>) is still usable with --template, and PairFunction::resolve refuses it
            // otherwise, naming the key (TemplateLetter::unsupported).
            (None, Some(p)) => {
                template_letter = letter.map(|letter| TemplateLetter {
                    key: type_key,
                    letter,
                });
                Some(p)
            }
            (t, None) => t,
        };
        let aggregation_mode = either("aggregation_mode", "mode")?;
        let offset_weight = get::<f32>(obj, path, "offset_weight")?;
        if let Some(mode) = get::<String>(obj, path, "template_mode")? {
            if mode != "manual" {
                return Err(refuse(format!(
                    "relbert_config.template_mode {mode:?} is not supported: relbert computes \
                     only a written template (\"manual\"), given as \"template\""
                )));
            }
        }
        let unknown: Vec<&String> = obj
            .keys()
            .filter(|k| !RELBERT_KEYS.contains(&k.as_str()))
            .collect();
        if !unknown.is_empty() && first_reading {
            for key in unknown {
                tracing::warn!(
                    "{}: relbert_config key {key:?} is not read (and not carried into models \
                     relbert writes); relbert reads {}",
                    path.display(),
                    RELBERT_KEYS[..3].join(", ")
                );
            }
        }
        Ok(RelbertConfig {
            template,
            aggregation_mode,
            offset_weight,
            template_letter,
        })
    }
}

/// Whether this is the first call for `path` in this process: unknown-key warnings are
/// given once per config file, the tokenizer checks' once per tokenizer file.
pub(crate) fn first_warning_for(path: &Path) -> bool {
    static WARNED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let mut warned = WARNED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    warned.insert(path.to_path_buf())
}

/// The keys of `relbert_config` that [`RelbertConfig::from_block`] reads: relbert's own
/// three first, then the reference's older names, its `template_mode` and the letters of its
/// built-in templates.
const RELBERT_KEYS: [&str; 8] = [
    "template",
    "aggregation_mode",
    "offset_weight",
    "custom_template",
    "mode",
    "template_mode",
    "template_type",
    "custom_template_type",
];

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
        model_file(path)?;
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
        // Settings of the same model types that change the computation: the encoder here is
        // bidirectional self-attention over absolute positions, and gave that model's vectors
        // for a decoder's, or a relative-position model's, without a word.
        let why_not = "relbert computes plain BERT/RoBERTa encoders (bidirectional \
                       self-attention over absolute positions)";
        if field(&raw, path, "is_decoder", Some(false))? {
            return Err(Error::Config {
                path: path.to_path_buf(),
                message: format!(
                    "\"is_decoder\": true (a decoder, e.g. BertLMHeadModel or bert-generation: \
                     causal attention) is not supported; {why_not}"
                ),
            });
        }
        if field(&raw, path, "add_cross_attention", Some(false))? {
            return Err(Error::Config {
                path: path.to_path_buf(),
                message: format!(
                    "\"add_cross_attention\": true (an encoder-decoder's decoder) is not \
                     supported; {why_not}"
                ),
            });
        }
        let positions: String = field(
            &raw,
            path,
            "position_embedding_type",
            Some("absolute".to_string()),
        )?;
        if positions != "absolute" {
            return Err(Error::Config {
                path: path.to_path_buf(),
                message: format!(
                    "position_embedding_type {positions:?} is not supported, only \"absolute\"; \
                     {why_not}"
                ),
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
            relbert: RelbertConfig::from_block(raw.get("relbert_config"), path)?,
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
        // A table with no rows or columns loads (safetensors holds empty tensors) and fails
        // only in the first forward pass, where no file is named.
        for (key, value) in [
            ("vocab_size", cfg.vocab_size),
            ("hidden_size", cfg.hidden_size),
            ("intermediate_size", cfg.intermediate_size),
            ("max_position_embeddings", cfg.max_position_embeddings),
            ("type_vocab_size", cfg.type_vocab_size),
        ] {
            if value == 0 {
                return Err(Error::Config {
                    path: path.to_path_buf(),
                    message: format!("{key} 0 must be at least 1"),
                });
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

/// Hex digits of [`function_files_digest`] kept: 64 bits tell accidentally different files
/// apart, and keep the part an index folds into its recorded aggregation short.
const FILES_DIGEST_HEX: usize = 16;

/// What, besides the weights, decides the vectors a model directory computes, as a short hex
/// digest (the first 16 hex digits of a SHA-256): recorded with an index, so a model of the
/// same weights but another tokenizer or config (`layer_norm_eps`, the padding id, a
/// lower-casing normalizer…) is refused for it instead of silently giving other vectors.
///
/// - From `config.json`: the values [`ModelConfig`] reads and the encoder computes with, after
///   their defaults are applied, so a field left out and the same field at its default agree,
///   and keys relbert does not read (`architectures`, `transformers_version`, dropout, which
///   only training uses) change nothing. `relbert_config` is left out: the template,
///   aggregation and offset weight are recorded on their own, and may be overridden.
/// - `tokenizer.json` as canonical JSON (object keys sorted, no whitespace), so re-saving it
///   with another tool's formatting changes nothing, without its `padding` and `truncation`
///   blocks, which [`crate::batching::PromptTokenizer`] replaces with its own.
/// - The id pooling leaves out as padding (`pooling_pad`: the tokenizer's pad token, which
///   `tokenizer_config.json` or `special_tokens_map.json` may name), where it is not
///   `config.json`'s `pad_token_id`.
pub fn function_files_digest(config: &ModelConfig, tokenizer: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let text = std::fs::read(tokenizer).map_err(|e| Error::io(tokenizer, e))?;
    let mut doc: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| Error::Tokenizer {
            path: tokenizer.to_path_buf(),
            message: format!("not valid JSON: {e}"),
        })?;
    let padding_token = doc
        .get("padding")
        .and_then(|p| p.get("pad_token"))
        .and_then(|t| t.as_str())
        .map(str::to_string);
    let pad = pooling_pad(
        config,
        tokenizer,
        padding_token.as_deref(),
        &|t| token_id_in(&doc, t),
        &|_| None,
    );
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("padding");
        obj.remove("truncation");
    }
    let mut h = Sha256::new();
    h.update(b"relbert pair-function files v1\0");
    h.update(
        format!(
            "{:?} vocab_size={} hidden_size={} num_hidden_layers={} num_attention_heads={} \
             intermediate_size={} max_position_embeddings={} type_vocab_size={} \
             layer_norm_eps={:?} pad_token_id={}\0",
            config.architecture,
            config.vocab_size,
            config.hidden_size,
            config.num_hidden_layers,
            config.num_attention_heads,
            config.intermediate_size,
            config.max_position_embeddings,
            config.type_vocab_size,
            config.layer_norm_eps,
            config.pad_token_id
        )
        .as_bytes(),
    );
    let mut canonical = String::with_capacity(text.len());
    write_canonical(&doc, &mut canonical);
    h.update(canonical.as_bytes());
    // Hashed only where it differs from config.json's pad_token_id (hashed above), so that
    // the digest of a model whose files agree, every model transformers saves, is the one
    // its indexes recorded before the pooling's pad id came from the tokenizer.
    if pad.id != config.pad_token_id {
        h.update(format!("\0pooling pad id={}", pad.id).as_bytes());
    }
    let hex = format!("{:x}", h.finalize());
    Ok(hex[..FILES_DIGEST_HEX].to_string())
}

/// [`function_files_digest`] of the model directory `dir` (its `config.json` and
/// `tokenizer.json`).
pub fn function_files_digest_of(dir: &Path) -> Result<String> {
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    function_files_digest(&config, &dir.join("tokenizer.json"))
}

/// `value` as JSON with object keys sorted and no whitespace: the same document gives the
/// same text whatever key order or formatting its file had (serde_json keeps a file's key
/// order when a dependency turns on its `preserve_order` feature, so its own output is not
/// relied on for the order).
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Checks that `path`, a file a model directory holds, is there and is a regular file (or a
/// link to one): [`Error::MissingFile`] when it is not there; otherwise an [`Error::Io`]
/// saying what it is. A named pipe or a directory of that name was reported as a missing
/// file, and a pipe as `config.json` was read from, waiting for ever.
pub(crate) fn model_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let md = match std::fs::metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingFile {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let t = md.file_type();
    let what = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "something other than a file"
    };
    Err(Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "it is {what}, not a regular file; a model directory holds config.json, \
                 model.safetensors and tokenizer.json as files"
            ),
        ),
    ))
}

/// Weight files of formats relbert does not read, which a directory may hold instead of
/// `model.safetensors`: sharded safetensors, PyTorch pickles (whole or sharded), TensorFlow
/// and Flax.
const OTHER_WEIGHTS: [&str; 5] = [
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "tf_model.h5",
    "flax_model.msgpack",
];

/// [`model_file`] for the weights, `path` being `model.safetensors`: where it is missing but
/// the directory holds the weights in another format, says so and how to convert them (a
/// bare "missing file" sent users looking for a file they believed they had saved).
pub(crate) fn weights_file(path: &Path) -> Result<()> {
    found_instead(
        path,
        &OTHER_WEIGHTS,
        "which relbert does not read (it reads the weights from one model.safetensors file). \
         Convert them with transformers: AutoModel.from_pretrained(DIR).save_pretrained(DIR, \
         safe_serialization=True, max_shard_size=\"100GB\") writes a single model.safetensors",
    )
}

/// [`model_file`] for `path`, and where it is missing but its directory holds some of
/// `others` (files of a format relbert does not read, in its place), the error names them,
/// followed by `advice`.
fn found_instead(path: &Path, others: &[&str], advice: &str) -> Result<()> {
    let missing = model_file(path);
    if !matches!(missing, Err(Error::MissingFile { .. })) {
        return missing;
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let found: Vec<&str> = others
        .iter()
        .copied()
        .filter(|name| dir.join(name).is_file())
        .collect();
    if found.is_empty() {
        return missing;
    }
    Err(Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "not there: the directory holds {} instead, {advice}",
                found.join(" and ")
            ),
        ),
    ))
}

/// The files of the slow (Python) tokenizers transformers converts to a `tokenizer.json`:
/// BERT's WordPiece vocabulary, RoBERTa's byte-level BPE vocabulary and merges.
const SLOW_TOKENIZER_FILES: [&str; 3] = ["vocab.txt", "vocab.json", "merges.txt"];

/// [`model_file`] for the tokenizer, `path` being `tokenizer.json`: where it is missing but
/// the directory holds a slow tokenizer's files (older checkpoints were saved with those
/// alone), says so and how to write `tokenizer.json` from them, as [`weights_file`] does for
/// the weights.
pub(crate) fn tokenizer_file(path: &Path) -> Result<()> {
    found_instead(
        path,
        &SLOW_TOKENIZER_FILES,
        "a slow tokenizer's files, which relbert does not read (it reads the tokenizer from \
         tokenizer.json). Convert them with transformers: \
         AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR) writes tokenizer.json beside \
         them",
    )
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
    /// Locates the files in `dir`, failing with the first one missing or not a regular file.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        // A file given for the directory (its config.json, say) was reported as a missing
        // file of that name, which sent users looking for a file they could see.
        if dir.exists() && !dir.is_dir() {
            let holder = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            return Err(Error::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "this is a file, not a model directory; a model is the folder that \
                         holds config.json, model.safetensors and tokenizer.json (did you \
                         mean {}?)",
                        holder.display()
                    ),
                ),
            ));
        }
        if !dir.is_dir() {
            return Err(Error::MissingFile {
                path: dir.to_path_buf(),
            });
        }
        // An index's folder given for its model (they sit side by side in scripts) was
        // reported as a model folder missing config.json.
        if !dir.join("config.json").exists()
            && ["meta", "vectors", "pairs", "graph"]
                .iter()
                .all(|f| dir.join(f).is_file())
        {
            return Err(Error::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "this is a relbert index, not a model directory; give the model the \
                         index was built with (`relbert index info {}` names it), a folder \
                         that holds config.json, model.safetensors and tokenizer.json",
                        dir.display()
                    ),
                ),
            ));
        }
        let files = ModelFiles {
            config: dir.join("config.json"),
            weights: dir.join("model.safetensors"),
            tokenizer: dir.join("tokenizer.json"),
        };
        model_file(&files.config)?;
        weights_file(&files.weights)?;
        tokenizer_file(&files.tokenizer)?;
        Ok(files)
    }

    /// Copies the tokenizer files of model directory `src` that exist (`tokenizer.json` and
    /// the slow tokenizers' companions) into `dst`, so that a derived model (trained or
    /// averaged) loads in any Hugging Face tool.
    pub fn copy_tokenizer_files(src: &Path, dst: &Path) -> Result<()> {
        for name in TOKENIZER_FILES {
            let from = src.join(name);
            if from.is_file() {
                copy_file(&from, &dst.join(name))?;
            }
        }
        Ok(())
    }
}

/// Copies `from` to `to`, blaming the side that failed: a read error names the source, a
/// write error (a full or read-only output disk) the destination. `std::fs::copy` gives one
/// error for both, which named the input model when the output disk was full.
fn copy_file(from: &Path, to: &Path) -> Result<()> {
    let mut src = std::fs::File::open(from).map_err(|e| Error::io(from, e))?;
    let mut dst = std::fs::File::create(to).map_err(|e| Error::io(to, e))?;
    copy_sides(&mut src, &mut dst, from, to)?;
    dst.sync_all().map_err(|e| Error::io(to, e))
}

/// The loop of [`copy_file`] over any reader and writer, so that each side's failure can be
/// tested (`/dev/full` as the writer).
fn copy_sides(
    src: &mut impl std::io::Read,
    dst: &mut impl std::io::Write,
    from: &Path,
    to: &Path,
) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(from, e)),
        };
        dst.write_all(&buf[..n]).map_err(|e| Error::io(to, e))?;
    }
    dst.flush().map_err(|e| Error::io(to, e))
}

/// Whether the normalizer of the tokenizer document `doc` (a `tokenizer.json`) lower-cases:
/// a `BertNormalizer` with `lowercase`, or a `Lowercase` step, alone or in a `Sequence`.
fn normalizer_lowercases(doc: &serde_json::Value) -> bool {
    any_normalizer_step(doc, &|n| match n.get("type").and_then(|t| t.as_str()) {
        Some("BertNormalizer") => n.get("lowercase").and_then(|v| v.as_bool()) == Some(true),
        Some("Lowercase") => true,
        _ => false,
    })
}

/// Whether a step of the normalizer of the tokenizer document `doc` (the normalizer itself,
/// or one inside a `Sequence`, at any depth) satisfies `step`.
fn any_normalizer_step(doc: &serde_json::Value, step: &dyn Fn(&serde_json::Value) -> bool) -> bool {
    fn any(n: &serde_json::Value, step: &dyn Fn(&serde_json::Value) -> bool) -> bool {
        match n.get("type").and_then(|t| t.as_str()) {
            Some("Sequence") => n
                .get("normalizers")
                .and_then(|v| v.as_array())
                .is_some_and(|ns| ns.iter().any(|n| any(n, step))),
            _ => step(n),
        }
    }
    doc.get("normalizer").is_some_and(|n| any(n, step))
}

/// Whether the normalizer of the tokenizer document `doc` strips accents: a `BertNormalizer`
/// whose `strip_accents` is true, or unset (null or absent) while it lower-cases, which is
/// how tokenizers reads it (`strip_accents.unwrap_or(lowercase)`), or a `StripAccents` step
/// after an `NFD` or `NFKD` one in a `Sequence` (`StripAccents` only drops combining marks,
/// so a precomposed "é" keeps its accent unless decomposed first).
fn normalizer_strips_accents(doc: &serde_json::Value) -> bool {
    fn kind(n: &serde_json::Value) -> Option<&str> {
        n.get("type").and_then(|t| t.as_str())
    }
    fn strips(n: &serde_json::Value) -> bool {
        match kind(n) {
            Some("BertNormalizer") => match n.get("strip_accents").and_then(|v| v.as_bool()) {
                Some(b) => b,
                None => n.get("lowercase").and_then(|v| v.as_bool()) == Some(true),
            },
            Some("Sequence") => n
                .get("normalizers")
                .and_then(|v| v.as_array())
                .is_some_and(|ns| {
                    let mut decomposed = false;
                    ns.iter().any(|step| {
                        decomposed |= matches!(kind(step), Some("NFD" | "NFKD"));
                        strips(step) || (decomposed && kind(step) == Some("StripAccents"))
                    })
                }),
            _ => false,
        }
    }
    doc.get("normalizer").is_some_and(strips)
}

/// Whether the normalizer of the tokenizer document `doc` splits CJK ideographs into words of
/// their own: a `BertNormalizer` with `handle_chinese_chars` (it puts a space on each side of
/// one), alone or in a `Sequence`. No other normalizer does, and the `BertPreTokenizer` after
/// it splits at spaces and punctuation only, so without it "東京" is one word to WordPiece.
fn normalizer_handles_chinese_chars(doc: &serde_json::Value) -> bool {
    any_normalizer_step(doc, &|n| {
        n.get("type").and_then(|t| t.as_str()) == Some("BertNormalizer")
            && n.get("handle_chinese_chars").and_then(|v| v.as_bool()) == Some(true)
    })
}

/// Whether the normalizer of `doc` is a `BertNormalizer` that leaves `strip_accents` unset,
/// so that it strips accents exactly when it lower-cases: said in the warning, since the
/// file shows no value to compare with.
fn strip_accents_follows_lowercase(doc: &serde_json::Value) -> bool {
    doc.get("normalizer").is_some_and(|n| {
        n.get("type").and_then(|t| t.as_str()) == Some("BertNormalizer")
            && n.get("strip_accents").is_none_or(|v| v.is_null())
    })
}

/// A setting of `tokenizer_config.json` that transformers' `BertTokenizer` rebuilds the
/// normalizer from, as [`case_disagreement`]'s messages name it.
struct NormalizerSetting {
    /// The key in `tokenizer_config.json`.
    key: &'static str,
    /// The normalizer's field in `tokenizer.json`.
    field: &'static str,
    /// What the two encode differently when they disagree.
    text: &'static str,
}

const LOWER_CASING: NormalizerSetting = NormalizerSetting {
    key: "do_lower_case",
    field: "lowercase",
    text: "text",
};

const ACCENTS: NormalizerSetting = NormalizerSetting {
    key: "strip_accents",
    field: "strip_accents",
    text: "accented text (\"café\")",
};

const CHINESE_CHARS: NormalizerSetting = NormalizerSetting {
    key: "tokenize_chinese_chars",
    field: "handle_chinese_chars",
    text: "Chinese text (\"東京\")",
};

/// How `tokenizer_config.json` (`tconfig`, parsed as `doc`) sets the boolean `key`, for the
/// message, and the value transformers' `BertTokenizer` takes: as set, or `default` when it
/// is absent or null (`default_is` says how it takes a missing key); `None` when it is not a
/// boolean (not read further).
fn config_flag(
    doc: &serde_json::Value,
    key: &str,
    tconfig: &Path,
    default: bool,
    default_is: &str,
) -> (String, Option<bool>) {
    match doc.get(key) {
        Some(serde_json::Value::Bool(b)) => (
            format!("{} sets \"{key}\": {b}", tconfig.display()),
            Some(*b),
        ),
        None | Some(serde_json::Value::Null) => (
            format!(
                "{} has no \"{key}\", which transformers' BertTokenizer {default_is},",
                tconfig.display()
            ),
            Some(default),
        ),
        Some(_) => (String::new(), None),
    }
}

/// The warning that `source` (how `tokenizer_config.json` sets `setting`, or leaves it) says
/// `want` while the normalizer of `tokenizer` `does` (it has `has`).
fn disagreement(
    source: &str,
    tokenizer: &Path,
    does: &str,
    setting: &NormalizerSetting,
    has: bool,
    want: bool,
) -> String {
    let NormalizerSetting { key, field, text } = setting;
    format!(
        "{source} but the normalizer of {} {does}: relbert follows tokenizer.json, while \
         transformers' BertTokenizer rebuilds the normalizer from {key}, so the two encode \
         {text} differently; make the files agree (set \"{key}\": {has} in \
         tokenizer_config.json, or the normalizer's {field} to {want})",
        tokenizer.display()
    )
}

/// Warns (once per file) when a BERT model's `tokenizer_config.json` sets `do_lower_case`
/// or `strip_accents`, or leaves them to transformers' defaults, against what its
/// `tokenizer.json` normalizer does. relbert tokenises with `tokenizer.json` alone;
/// transformers' `BertTokenizer` (`BertTokenizerFast`) rebuilds the normalizer from
/// `do_lower_case` and `strip_accents` (4.x when they differ; 5.x always, keeping only the
/// vocabulary of `tokenizer.json`), while the generic `PreTrainedTokenizerFast`
/// (`TokenizersBackend` in 5.x) keeps `tokenizer.json`'s and is not warned about.
/// tokenizers' own files do not carry `do_lower_case`, and which normalizer a user's
/// transformers builds depends on its version, so relbert keeps computing what
/// `tokenizer.json` says and says that the files disagree, instead of a model encoding text
/// another way than transformers without a word.
/// `do_lower_case` defaults to true (transformers 5.17's AutoTokenizer lower-cases with a
/// `tokenizer_config.json` that has no `do_lower_case`, or no `tokenizer_class`, or with none
/// at all, where `model_type` "bert" picks `BertTokenizer`): a cased `tokenizer.json` in such
/// a folder was encoded otherwise than transformers without a word. `strip_accents` left
/// unset (absent or null) follows `do_lower_case`, in transformers as in a `BertNormalizer`
/// of `tokenizer.json`: accents are stripped exactly when text is lower-cased. Only the
/// lower-casing was compared, so a lower-casing `tokenizer.json` whose `strip_accents` is
/// false, beside a `tokenizer_config.json` that leaves it unset (transformers strips accents),
/// encoded "café" otherwise than transformers without a word. `tokenize_chinese_chars`
/// (default true) is compared with the normalizer's `handle_chinese_chars` the same way: a
/// `tokenizer.json` that leaves CJK ideographs within their words beside a
/// `tokenizer_config.json` without the key (transformers splits each into a word of its own)
/// encoded "東京" otherwise than transformers without a word. A `do_lower_case`,
/// `strip_accents` or `tokenize_chinese_chars` that is not a boolean is not read further.
///
/// `config` is the model's parsed `config.json` (its `tokenizer_class` is read from it),
/// which is not read again.
///
/// A RoBERTa model's `add_prefix_space` is compared the same way
/// (`prefix_space_disagreement`).
pub fn warn_on_tokenizer_disagreement(config: &ModelConfig, tokenizer: &Path) {
    let dir = tokenizer.parent().unwrap_or(Path::new("."));
    let tconfig = dir.join("tokenizer_config.json");
    let message = case_disagreement(config, tokenizer, &tconfig)
        .or_else(|| prefix_space_disagreement(config, tokenizer, &tconfig));
    if let Some(message) = message {
        if first_warning_for(&tconfig) {
            tracing::warn!("{message}");
        }
    }
}

/// What [`warn_on_tokenizer_disagreement`] says about the model of `config` whose tokenizer is
/// `tokenizer` and whose `tokenizer_config.json` is `tconfig`, or `None` when nothing is.
fn case_disagreement(config: &ModelConfig, tokenizer: &Path, tconfig: &Path) -> Option<String> {
    use serde_json::Value;
    if config.architecture != Architecture::Bert {
        return None;
    }
    // The generic class loads tokenizer.json as it is and reads no do_lower_case (in 4.x
    // and 5.x alike): transformers then computes what relbert does. Without a
    // tokenizer_config.json, AutoTokenizer takes config.json's class.
    let config_names_generic = loads_generic_class(config, None);
    // Where each value comes from, for the message, and the values transformers uses:
    // do_lower_case, and strip_accents and tokenize_chinese_chars (`None`: not read further).
    let (source, do_lower_case, strip, chinese) = match std::fs::read(tconfig) {
        Ok(text) => match serde_json::from_slice::<Value>(&text) {
            Ok(doc) if loads_generic_class(config, Some(&doc)) => return None,
            Ok(doc) => {
                let flag = |key: &str, default: bool, default_is: &str| {
                    config_flag(&doc, key, tconfig, default, default_is)
                };
                let (source, Some(do_lower_case)) = flag("do_lower_case", true, "takes as true")
                else {
                    return None;
                };
                let (strip_source, strip_accents) = flag(
                    "strip_accents",
                    do_lower_case,
                    &format!("then takes from its lower-casing ({do_lower_case})"),
                );
                let chinese = flag("tokenize_chinese_chars", true, "takes as true");
                (
                    source,
                    do_lower_case,
                    (strip_source, strip_accents),
                    chinese,
                )
            }
            Err(e) => {
                return Some(format!(
                    "{}: not valid JSON ({e}); relbert does not read it, but transformers \
                     will fail to load this tokenizer",
                    tconfig.display()
                ));
            }
        },
        // No tokenizer_config.json: AutoTokenizer takes BertTokenizer from config.json's
        // model_type, with its defaults, unless config.json names a class.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !config_names_generic => (
            format!(
                "{} is absent, so transformers' AutoTokenizer loads BertTokenizer (for \
                 model_type \"bert\") with \"do_lower_case\": true,",
                tconfig.display()
            ),
            true,
            (
                format!(
                    "{} is absent, so transformers' AutoTokenizer loads BertTokenizer (for \
                     model_type \"bert\"), which lower-cases and so strips accents,",
                    tconfig.display()
                ),
                Some(true),
            ),
            (
                format!(
                    "{} is absent, so transformers' AutoTokenizer loads BertTokenizer (for \
                     model_type \"bert\"), which splits CJK ideographs into words of their \
                     own (\"tokenize_chinese_chars\": true),",
                    tconfig.display()
                ),
                Some(true),
            ),
        ),
        Err(_) => return None,
    };
    let text = std::fs::read(tokenizer).ok()?;
    let doc = serde_json::from_slice::<Value>(&text).ok()?;
    let lowercases = normalizer_lowercases(&doc);
    if lowercases != do_lower_case {
        let does = if lowercases {
            "lower-cases"
        } else {
            "keeps case"
        };
        return Some(disagreement(
            &source,
            tokenizer,
            does,
            &LOWER_CASING,
            lowercases,
            do_lower_case,
        ));
    }
    let strips = normalizer_strips_accents(&doc);
    let (strip_source, strip_accents) = strip;
    if let Some(want) = strip_accents.filter(|&want| want != strips) {
        let does = format!(
            "{}{}",
            if strips {
                "strips accents"
            } else {
                "keeps accents"
            },
            if strip_accents_follows_lowercase(&doc) {
                " (its strip_accents is unset, so it follows its lowercase)"
            } else {
                ""
            },
        );
        return Some(disagreement(
            &strip_source,
            tokenizer,
            &does,
            &ACCENTS,
            strips,
            want,
        ));
    }
    let handles = normalizer_handles_chinese_chars(&doc);
    let (chinese_source, chinese) = chinese;
    let want = chinese.filter(|&want| want != handles)?;
    let does = if handles {
        "splits CJK ideographs into words of their own"
    } else {
        "leaves CJK ideographs within their words"
    };
    Some(disagreement(
        &chinese_source,
        tokenizer,
        does,
        &CHINESE_CHARS,
        handles,
        want,
    ))
}

/// Whether transformers' `AutoTokenizer` loads the generic class for a model (its
/// `tokenizer_config.json` parsed as `tconfig`, `None` where there is none): a
/// `tokenizer_class` of `PreTrainedTokenizerFast` (`TokenizersBackend` in 5.x) in
/// `tokenizer_config.json`, or in `config.json` where `tokenizer_config.json` is absent or
/// names no class. The generic class keeps `tokenizer.json` as it is; the model type's own
/// class (`BertTokenizer`, `RobertaTokenizer`) rebuilds parts of it from
/// `tokenizer_config.json`, and gives its own defaults where that says nothing.
fn loads_generic_class(config: &ModelConfig, tconfig: Option<&serde_json::Value>) -> bool {
    let generic = |doc: &serde_json::Value| {
        matches!(
            doc.get("tokenizer_class").and_then(|v| v.as_str()),
            Some("PreTrainedTokenizerFast" | "TokenizersBackend")
        )
    };
    match tconfig {
        Some(doc) if doc.get("tokenizer_class").is_some_and(|v| !v.is_null()) => generic(doc),
        _ => generic(&config.raw),
    }
}

/// The text of a special token as `tokenizer_config.json` and `special_tokens_map.json`
/// give it: a string, or an added token's `content`.
fn special_token_text(v: &serde_json::Value) -> Option<&str> {
    v.as_str()
        .or_else(|| v.get("content").and_then(|c| c.as_str()))
}

/// A JSON file of a model directory, `None` where it is absent or cannot be read as JSON
/// (transformers then fails to load the tokenizer, and the tokenizer checks say so where it
/// matters).
fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The pad token a model's tokenizer names, as transformers resolves `tokenizer.pad_token`
/// (checked with transformers 5.25's `AutoTokenizer`): `special_tokens_map.json`'s
/// `pad_token` first, then `tokenizer_config.json`'s; where neither names one, the generic
/// class takes the `padding` block of `tokenizer.json` (its `pad_token`, `padding_token`
/// here), and the model type's own class its default (`[PAD]` for BERT, `<pad>` for
/// RoBERTa). Returns the token and where it was found, for messages; `None` where nothing
/// names one (transformers' `pad_token_id` is then `None`).
fn named_pad_token(
    config: &ModelConfig,
    dir: &Path,
    padding_token: Option<&str>,
) -> Option<(String, String)> {
    let tconfig = read_json(&dir.join("tokenizer_config.json"));
    for (file, doc) in [
        (
            "special_tokens_map.json",
            read_json(&dir.join("special_tokens_map.json")),
        ),
        ("tokenizer_config.json", tconfig.clone()),
    ] {
        if let Some(text) = doc
            .as_ref()
            .and_then(|d| d.get("pad_token"))
            .and_then(special_token_text)
        {
            return Some((
                text.to_string(),
                format!("\"pad_token\" of {}", dir.join(file).display()),
            ));
        }
    }
    if loads_generic_class(config, tconfig.as_ref()) {
        return padding_token.map(|t| {
            (
                t.to_string(),
                format!(
                    "the padding block of {}",
                    dir.join("tokenizer.json").display()
                ),
            )
        });
    }
    let (token, class) = match config.architecture {
        Architecture::Bert => ("[PAD]", "BertTokenizer"),
        Architecture::Roberta => ("<pad>", "RobertaTokenizer"),
    };
    Some((
        token.to_string(),
        format!("transformers' {class} default, as no tokenizer file names a pad token"),
    ))
}

/// The id that pooling leaves out as padding, and what to warn of about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolingPad {
    /// The tokenizer's pad id (transformers' `tokenizer.pad_token_id`), which the reference's
    /// `input_ids_to_labels` leaves out of the pooled tokens; `config.json`'s `pad_token_id`
    /// where the tokenizer names no pad token in its vocabulary.
    pub id: u32,
    /// Set when `id` is not `config.json`'s `pad_token_id`, or the tokenizer names no usable
    /// pad token: the two files then say different things, and the user is told which one
    /// relbert follows.
    pub warning: Option<String>,
}

/// Which token id the pooling of a model leaves out as padding ([`PoolingPad`]). The reference
/// pools by `tokenizer.pad_token_id`, not by `config.json`'s `pad_token_id`, which stays what
/// it is to the encoder (the embedding's padding row, the index RoBERTa numbers positions
/// from, as transformers' `padding_idx`). The two agree in every model transformers saves;
/// where they do not, pooling by config.json's left out another token (`[UNK]`, say) and
/// kept the pad token, without a word.
///
/// `tokenizer` is the model's `tokenizer.json` (its folder holds the other files read),
/// `padding_token` the `pad_token` of its `padding` block, `id_of` and `token_of` its
/// vocabulary (added tokens included) both ways.
pub(crate) fn pooling_pad(
    config: &ModelConfig,
    tokenizer: &Path,
    padding_token: Option<&str>,
    id_of: &dyn Fn(&str) -> Option<u32>,
    token_of: &dyn Fn(u32) -> Option<String>,
) -> PoolingPad {
    let dir = tokenizer.parent().unwrap_or(Path::new("."));
    let own = config.pad_token_id;
    let config_says = || {
        format!(
            "{} has \"pad_token_id\": {own}{}",
            dir.join("config.json").display(),
            token_of(own).map_or(String::new(), |t| format!(" ({t:?} in tokenizer.json)")),
        )
    };
    // The reference cannot pad a batch with such a tokenizer: config.json's id is the one
    // padding id left, and what relbert pooled by before it read the tokenizer's.
    let fallback = |why: String| PoolingPad {
        id: own,
        warning: Some(format!(
            "{why}; relbert leaves out {}'s pad_token_id {own} from the pooled tokens \
             instead. Name a pad token of the vocabulary in tokenizer_config.json \
             (\"pad_token\")",
            dir.join("config.json").display()
        )),
    };
    let Some((token, source)) = named_pad_token(config, dir, padding_token) else {
        return fallback(format!(
            "the tokenizer of {} names no pad token (no \"pad_token\" in \
             tokenizer_config.json or special_tokens_map.json, no padding block in \
             tokenizer.json), so transformers' pad_token_id is None and the reference cannot \
             pad its batches",
            dir.display()
        ));
    };
    let Some(id) = id_of(&token) else {
        return fallback(format!(
            "the tokenizer's pad token {token:?} ({source}) is not in the vocabulary of {}: \
             transformers adds it as a new token, past the model's embeddings",
            tokenizer.display()
        ));
    };
    let index = match config.architecture {
        Architecture::Bert => "(a BERT model uses it for nothing else at inference)".to_string(),
        Architecture::Roberta => {
            format!(", as transformers does (RoBERTa numbers positions from {own})")
        }
    };
    PoolingPad {
        id,
        warning: (id != own).then(|| {
            format!(
                "{} but the tokenizer's pad token is {token:?} (id {id}, {source}): relbert \
                 leaves out id {id} from the pooled tokens, as the reference does (it pools by \
                 the tokenizer's pad_token_id), and keeps {own} as the model's padding index \
                 {index}; the vectors are the reference's. If one of the files is wrong, make \
                 them agree and build the model's indexes again",
                config_says()
            )
        }),
    }
}

/// The id of `token` in the tokenizer document `doc` (a `tokenizer.json`), as tokenizers'
/// `token_to_id` finds it: among the added tokens first, then in the model's vocabulary (a map
/// of WordPiece, BPE and WordLevel, a list of Unigram).
fn token_id_in(doc: &serde_json::Value, token: &str) -> Option<u32> {
    let added = doc
        .get("added_tokens")
        .and_then(|a| a.as_array())
        .and_then(|a| {
            a.iter()
                .find(|t| t.get("content").and_then(|c| c.as_str()) == Some(token))
        })
        .and_then(|t| t.get("id")?.as_u64());
    let vocab = doc.get("model").and_then(|m| m.get("vocab"));
    let id = added.or_else(|| match vocab? {
        serde_json::Value::Object(map) => map.get(token)?.as_u64(),
        serde_json::Value::Array(list) => list
            .iter()
            .position(|piece| piece.get(0).and_then(|p| p.as_str()) == Some(token))
            .map(|i| i as u64),
        _ => None,
    })?;
    u32::try_from(id).ok()
}

/// The `add_prefix_space` of the `ByteLevel` pre-tokenizer of the tokenizer document `doc`
/// (alone, or a step of a `Sequence`): whether a space is put before the first word of a
/// text, so that it tokenises as the words after it do. `None` where there is no such step.
fn byte_level_prefix_space(doc: &serde_json::Value) -> Option<bool> {
    fn find(p: &serde_json::Value) -> Option<bool> {
        match p.get("type").and_then(|t| t.as_str()) {
            Some("ByteLevel") => p.get("add_prefix_space").and_then(|v| v.as_bool()),
            Some("Sequence") => p
                .get("pretokenizers")
                .and_then(|v| v.as_array())
                .and_then(|ps| ps.iter().find_map(find)),
            _ => None,
        }
    }
    doc.get("pre_tokenizer").and_then(find)
}

/// What [`warn_on_tokenizer_disagreement`] says about a RoBERTa model whose
/// `tokenizer_config.json` (`tconfig`) sets `add_prefix_space`, or leaves it to transformers'
/// default (false), against what the `ByteLevel` pre-tokenizer of its `tokenizer` does, or
/// `None` when they agree. transformers' `RobertaTokenizer`, which `AutoTokenizer` loads by
/// default (fast; 5.x has no other), rebuilds the pre-tokenizer from `add_prefix_space`
/// (checked with transformers 5.25: `use_fast=False` gives the same), so the two tokenised
/// the first word of every text differently ("ĠI" against "I" at the start of every prompt,
/// each word of the offset's word vectors) with a cosine of about 0.999 on every pair,
/// without a word. The generic class keeps `tokenizer.json`'s and is not warned about.
fn prefix_space_disagreement(
    config: &ModelConfig,
    tokenizer: &Path,
    tconfig: &Path,
) -> Option<String> {
    use serde_json::Value;
    if config.architecture != Architecture::Roberta {
        return None;
    }
    let doc = match std::fs::read(tconfig) {
        Ok(text) => Some(serde_json::from_slice::<Value>(&text).ok()?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => return None,
    };
    if loads_generic_class(config, doc.as_ref()) {
        return None;
    }
    let (source, want) = match doc.as_ref().map(|d| d.get("add_prefix_space")) {
        Some(Some(Value::Bool(b))) => (
            format!("{} sets \"add_prefix_space\": {b}", tconfig.display()),
            *b,
        ),
        Some(None | Some(Value::Null)) => (
            format!(
                "{} has no \"add_prefix_space\", which transformers' RobertaTokenizer takes \
                 as false,",
                tconfig.display()
            ),
            false,
        ),
        Some(Some(_)) => return None,
        None => (
            format!(
                "{} is absent, so transformers' AutoTokenizer loads RobertaTokenizer (for \
                 model_type \"roberta\") with \"add_prefix_space\": false,",
                tconfig.display()
            ),
            false,
        ),
    };
    let has = byte_level_prefix_space(&read_json(tokenizer)?)?;
    if has == want {
        return None;
    }
    Some(format!(
        "{source} but the ByteLevel pre-tokenizer of {} has \"add_prefix_space\": {has}: \
         relbert follows tokenizer.json, while transformers' RobertaTokenizer (what \
         AutoTokenizer loads, fast or not) rebuilds the pre-tokenizer from tokenizer_config.json, \
         so the two tokenise the first word of every text differently. Make the files agree: \
         re-save the tokenizer with transformers (AutoTokenizer.from_pretrained(DIR)\
         .save_pretrained(DIR) writes a tokenizer.json with \"add_prefix_space\": {want}, \
         transformers' vectors), or set \"add_prefix_space\": {has} in tokenizer_config.json \
         (relbert's vectors as now)",
        tokenizer.display()
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    // A full output disk (`/dev/full` behind the destination's name) is blamed on the
    // destination, not on the input model's tokenizer (which `std::fs::copy` named).
    #[test]
    fn a_failed_tokenizer_copy_names_the_side_that_failed() {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let dst = dir.path().join("out");
        std::fs::create_dir(&dst).unwrap();
        std::os::unix::fs::symlink("/dev/full", dst.join("tokenizer.json")).unwrap();
        let msg = ModelFiles::copy_tokenizer_files(&src, &dst)
            .unwrap_err()
            .to_string();
        let os = std::io::Error::from_raw_os_error(libc::ENOSPC).to_string();
        assert_eq!(
            msg,
            format!("{}: {os}", dst.join("tokenizer.json").display())
        );

        // A source that cannot be read is blamed on the source.
        struct Broken;
        impl std::io::Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::from_raw_os_error(libc::EIO))
            }
        }
        let (from, to) = (Path::new("in/vocab.txt"), Path::new("out/vocab.txt"));
        let msg = copy_sides(&mut Broken, &mut Vec::new(), from, to)
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("in/vocab.txt: "), "{msg}");
    }

    /// A copy of the tiny fixture model in `dir`, with `edit` applied to its config and
    /// tokenizer documents, written indented when `indent`.
    fn copy_with(
        dir: &Path,
        name: &str,
        edit: impl Fn(&mut serde_json::Value, &mut serde_json::Value),
        indent: bool,
    ) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let dst = dir.join(name);
        std::fs::create_dir_all(&dst).unwrap();
        let read = |f: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(src.join(f)).unwrap()).unwrap()
        };
        let (mut config, mut tokenizer) = (read("config.json"), read("tokenizer.json"));
        edit(&mut config, &mut tokenizer);
        for (f, v) in [("config.json", config), ("tokenizer.json", tokenizer)] {
            let text = if indent {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                v.to_string()
            };
            std::fs::write(dst.join(f), text).unwrap();
        }
        dst
    }

    /// Found by an audit: a model of the same weights but another tokenizer or config was
    /// taken for the one an index was built with. What changes the vectors changes the
    /// digest; formatting, key order, keys relbert does not read, the relbert_config block
    /// (recorded on its own) and a field left at its default do not.
    #[test]
    fn the_files_digest_follows_what_changes_the_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let digest = |name: &str, edit: &dyn Fn(&mut serde_json::Value, &mut serde_json::Value)| {
            function_files_digest_of(&copy_with(dir.path(), name, edit, false)).unwrap()
        };
        let base = digest("base", &|_, _| {});
        assert_eq!(base.len(), FILES_DIGEST_HEX);
        let pretty = copy_with(dir.path(), "pretty", |_, _| {}, true);
        assert_eq!(function_files_digest_of(&pretty).unwrap(), base);
        // The fixture's own files, in their own key order and layout.
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        assert_eq!(function_files_digest_of(&fixture).unwrap(), base);
        for (name, edit) in [
            (
                "defaults",
                &(|c: &mut serde_json::Value, _: &mut serde_json::Value| {
                    let o = c.as_object_mut().unwrap();
                    o.remove("type_vocab_size");
                    o.remove("hidden_act");
                    o.insert("transformers_version".into(), "9.9".into());
                    o.insert("hidden_dropout_prob".into(), 0.3.into());
                }) as &dyn Fn(&mut serde_json::Value, &mut serde_json::Value),
            ),
            ("relbert", &|c, _| {
                c["relbert_config"]["aggregation_mode"] = "mask".into()
            }),
            ("padding", &|_, t| {
                t["padding"] = serde_json::json!({"strategy": "BatchLongest"});
                t["truncation"] = serde_json::json!({"max_length": 7});
            }),
        ] {
            assert_eq!(digest(name, edit), base, "{name}");
        }
        for (name, edit) in [
            (
                "lowercase",
                &(|_: &mut serde_json::Value, t: &mut serde_json::Value| {
                    t["normalizer"]["lowercase"] = true.into()
                }) as &dyn Fn(&mut serde_json::Value, &mut serde_json::Value),
            ),
            ("eps", &|c, _| c["layer_norm_eps"] = 0.5.into()),
            ("pad", &|c, _| c["pad_token_id"] = 3.into()),
            ("positions", &|c, _| {
                c["max_position_embeddings"] = 40.into()
            }),
        ] {
            assert_ne!(digest(name, edit), base, "{name}");
        }
    }

    /// The forms a lower-casing normalizer takes in tokenizer.json, which the
    /// `do_lower_case` check compares with.
    #[test]
    fn lower_casing_normalizers_are_recognised() {
        use serde_json::json;
        for (n, lowers) in [
            (json!({"type": "BertNormalizer", "lowercase": true}), true),
            (json!({"type": "BertNormalizer", "lowercase": false}), false),
            (json!({"type": "Lowercase"}), true),
            (
                json!({"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"}]}),
                true,
            ),
            (
                json!({"type": "Sequence", "normalizers": [{"type": "NFC"}]}),
                false,
            ),
            (json!(null), false),
        ] {
            assert_eq!(
                normalizer_lowercases(&json!({ "normalizer": n })),
                lowers,
                "{n}"
            );
        }
    }

    #[test]
    fn a_tokenizer_that_is_not_json_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let model = copy_with(dir.path(), "m", |_, _| {}, false);
        std::fs::write(model.join("tokenizer.json"), "{not json").unwrap();
        let err = function_files_digest_of(&model).unwrap_err().to_string();
        assert!(
            err.contains("tokenizer.json") && err.contains("JSON"),
            "{err}"
        );
    }

    /// `tokenizer_config.json` for a `BertTokenizer` in `model`, with `extra` keys.
    fn bert_tokenizer_config(model: &Path, extra: serde_json::Value) {
        let mut tc = serde_json::json!({"tokenizer_class": "BertTokenizer"});
        if let (Some(o), Some(e)) = (tc.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        std::fs::write(model.join("tokenizer_config.json"), tc.to_string()).unwrap();
    }

    /// What tokenizers makes of "Café" with the normalizer of `model`'s tokenizer.json.
    fn normalized(model: &Path) -> String {
        use tokenizers::Normalizer;
        let t = tokenizers::Tokenizer::from_file(model.join("tokenizer.json")).unwrap();
        let mut s = tokenizers::NormalizedString::from("Café");
        t.get_normalizer().unwrap().normalize(&mut s).unwrap();
        s.get().to_string()
    }

    /// A `StripAccents` step counts only after a decomposition (a review found one alone
    /// counted).
    #[test]
    fn a_strip_accents_step_strips_only_after_a_decomposition() {
        use serde_json::json;
        let seq = |steps: &[&str]| {
            let steps: Vec<_> = steps.iter().map(|t| json!({ "type": t })).collect();
            json!({ "normalizer": { "type": "Sequence", "normalizers": steps } })
        };
        // StripAccents drops combining marks only: a precomposed "é" keeps its accent unless
        // an NFD (or NFKD) step came first.
        assert!(normalizer_strips_accents(&seq(&[
            "NFD",
            "StripAccents",
            "Lowercase"
        ])));
        assert!(normalizer_strips_accents(&seq(&[
            "NFKD",
            "Lowercase",
            "StripAccents"
        ])));
        assert!(!normalizer_strips_accents(&seq(&["StripAccents", "NFD"])));
        assert!(!normalizer_strips_accents(&seq(&["NFC", "StripAccents"])));
        assert!(!normalizer_strips_accents(
            &json!({ "normalizer": { "type": "StripAccents" } })
        ));
    }

    /// transformers' BertTokenizer takes a `strip_accents` left unset (absent or
    /// null) to follow `do_lower_case`, as a `BertNormalizer` of tokenizer.json does with its
    /// `lowercase`. Only the lower-casing was compared, so a lower-casing tokenizer.json that
    /// keeps accents (`"strip_accents": false`) beside a tokenizer_config.json without the
    /// key (transformers strips them) encoded "café" otherwise than transformers without a
    /// word; and one whose `strip_accents` is unset was taken to keep accents.
    #[test]
    fn a_strip_accents_left_unset_follows_lower_casing_as_in_transformers() {
        use serde_json::{json, Value};
        let dir = tempfile::tempdir().unwrap();
        // A lower-casing copy of the fixture with the normalizer's strip_accents set to
        // `strip` (`None`: the key removed).
        let lower = |name: &str, strip: Option<Value>| {
            copy_with(
                dir.path(),
                name,
                |_, t| {
                    t["normalizer"]["lowercase"] = true.into();
                    let n = t["normalizer"].as_object_mut().unwrap();
                    match &strip {
                        Some(v) => n.insert("strip_accents".into(), v.clone()),
                        None => n.remove("strip_accents"),
                    };
                },
                false,
            )
        };
        let check = |model: &Path| {
            let config = ModelConfig::from_file(&model.join("config.json")).unwrap();
            let tconfig = model.join("tokenizer_config.json");
            case_disagreement(&config, &model.join("tokenizer.json"), &tconfig)
        };
        // tokenizers reads an unset strip_accents as the lowercase, and so does the check.
        let unset = lower("unset", Some(Value::Null));
        let absent = lower("absent", None);
        let keeps = lower("keeps", Some(false.into()));
        assert_eq!(normalized(&unset), "cafe");
        assert_eq!(normalized(&absent), "cafe");
        assert_eq!(normalized(&keeps), "café");
        for (model, strips) in [(&unset, true), (&absent, true), (&keeps, false)] {
            let doc: Value =
                serde_json::from_slice(&std::fs::read(model.join("tokenizer.json")).unwrap())
                    .unwrap();
            assert_eq!(
                normalizer_strips_accents(&doc),
                strips,
                "{}",
                model.display()
            );
        }

        // tokenizer_config.json without strip_accents: transformers strips accents as it
        // lower-cases. tokenizer.json's unset one agrees; its false one does not.
        for m in [&unset, &absent, &keeps] {
            bert_tokenizer_config(m, json!({"do_lower_case": true}));
        }
        assert_eq!(check(&unset), None);
        assert_eq!(check(&absent), None);
        let msg = check(&keeps).expect("a disagreement about accents");
        assert!(
            msg.contains(&format!(
                "{} has no \"strip_accents\", which transformers' BertTokenizer then takes \
                 from its lower-casing (true), but the normalizer of {} keeps accents",
                keeps.join("tokenizer_config.json").display(),
                keeps.join("tokenizer.json").display()
            )) && msg.contains("set \"strip_accents\": false in tokenizer_config.json"),
            "{msg}"
        );
        // Nor is a do_lower_case left to its default (true) read otherwise.
        bert_tokenizer_config(&keeps, json!({}));
        assert!(check(&keeps).is_some_and(|m| m.contains("keeps accents")));
        // No tokenizer_config.json: BertTokenizer with its defaults strips accents.
        std::fs::remove_file(keeps.join("tokenizer_config.json")).unwrap();
        let msg = check(&keeps).expect("no tokenizer_config.json");
        assert!(
            msg.contains("is absent") && msg.contains("keeps accents"),
            "{msg}"
        );
        // An explicit strip_accents is compared as it is, both ways.
        bert_tokenizer_config(
            &keeps,
            json!({"do_lower_case": true, "strip_accents": false}),
        );
        assert_eq!(check(&keeps), None);
        bert_tokenizer_config(
            &unset,
            json!({"do_lower_case": true, "strip_accents": false}),
        );
        let msg = check(&unset).expect("unset strips, false keeps");
        assert!(
            msg.contains("sets \"strip_accents\": false")
                && msg.contains(
                    "strips accents (its strip_accents is unset, so it follows its lowercase)"
                )
                && msg.contains("or the normalizer's strip_accents to false"),
            "{msg}"
        );
        // One that is not a boolean is not read further.
        bert_tokenizer_config(&unset, json!({"strip_accents": "no"}));
        assert_eq!(check(&unset), None);
        // A cased tokenizer.json beside an unset strip_accents and do_lower_case false:
        // neither strips, nothing is said.
        let cased = copy_with(dir.path(), "cased", |_, _| {}, false);
        bert_tokenizer_config(&cased, json!({"do_lower_case": false}));
        assert_eq!(check(&cased), None);
    }

    /// transformers' BertTokenizer rebuilds the normalizer's `handle_chinese_chars` from
    /// `tokenize_chinese_chars` (true unless set), which was not compared: a tokenizer.json
    /// that leaves CJK ideographs within their words beside a tokenizer_config.json without
    /// the key (transformers splits each into a word of its own) encoded "東京" otherwise
    /// than transformers without a word.
    #[test]
    fn tokenize_chinese_chars_is_compared_with_handle_chinese_chars() {
        use serde_json::json;
        let dir = tempfile::tempdir().unwrap();
        // A copy of the (cased) fixture whose normalizer's handle_chinese_chars is `handles`.
        let with = |name: &str, handles: bool, lowercase: bool| {
            copy_with(
                dir.path(),
                name,
                |_, t| {
                    t["normalizer"]["handle_chinese_chars"] = handles.into();
                    t["normalizer"]["lowercase"] = lowercase.into();
                    t["normalizer"]["strip_accents"] = serde_json::Value::Null;
                },
                false,
            )
        };
        let check = |model: &Path| {
            let config = ModelConfig::from_file(&model.join("config.json")).unwrap();
            let tconfig = model.join("tokenizer_config.json");
            case_disagreement(&config, &model.join("tokenizer.json"), &tconfig)
        };
        let splits = with("splits", true, false);
        let keeps = with("keeps", false, false);
        // What tokenizers makes of the two normalizers, and what the check reads of them.
        let normalized = |model: &Path| {
            use tokenizers::Normalizer;
            let t = tokenizers::Tokenizer::from_file(model.join("tokenizer.json")).unwrap();
            let mut s = tokenizers::NormalizedString::from("東京");
            t.get_normalizer().unwrap().normalize(&mut s).unwrap();
            s.get().to_string()
        };
        assert_eq!(normalized(&splits), " 東  京 ");
        assert_eq!(normalized(&keeps), "東京");
        for (model, handles) in [(&splits, true), (&keeps, false)] {
            let doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(model.join("tokenizer.json")).unwrap())
                    .unwrap();
            assert_eq!(normalizer_handles_chinese_chars(&doc), handles);
        }
        let seq = |steps: serde_json::Value| json!({ "normalizer": { "type": "Sequence", "normalizers": steps } });
        assert!(normalizer_handles_chinese_chars(&seq(json!([
            {"type": "BertNormalizer", "handle_chinese_chars": true},
            {"type": "NFC"}
        ]))));
        assert!(!normalizer_handles_chinese_chars(&seq(json!([
            {"type": "NFD"},
            {"type": "Lowercase"}
        ]))));

        // tokenizer_config.json without the key: transformers splits them.
        for m in [&splits, &keeps] {
            bert_tokenizer_config(m, json!({"do_lower_case": false}));
        }
        assert_eq!(check(&splits), None);
        let msg = check(&keeps).expect("a disagreement about CJK ideographs");
        assert!(
            msg.contains(&format!(
                "{} has no \"tokenize_chinese_chars\", which transformers' BertTokenizer \
                 takes as true, but the normalizer of {} leaves CJK ideographs within their \
                 words",
                keeps.join("tokenizer_config.json").display(),
                keeps.join("tokenizer.json").display()
            )) && msg.contains("set \"tokenize_chinese_chars\": false in tokenizer_config.json"),
            "{msg}"
        );
        // An explicit value is compared as it is, both ways.
        for m in [&splits, &keeps] {
            bert_tokenizer_config(
                m,
                json!({"do_lower_case": false, "tokenize_chinese_chars": false}),
            );
        }
        assert_eq!(check(&keeps), None);
        let msg = check(&splits).expect("true splits, false does not");
        assert!(
            msg.contains("sets \"tokenize_chinese_chars\": false")
                && msg.contains("splits CJK ideographs into words of their own")
                && msg.contains("or the normalizer's handle_chinese_chars to false"),
            "{msg}"
        );
        // One that is not a boolean is not read further.
        bert_tokenizer_config(
            &splits,
            json!({"do_lower_case": false, "tokenize_chinese_chars": "no"}),
        );
        assert_eq!(check(&splits), None);
        // No tokenizer_config.json: BertTokenizer with its defaults splits them (and
        // lower-cases, so the copy lower-cases, its accents following).
        let lower_keeps = with("lower-keeps", false, true);
        let msg = check(&lower_keeps).expect("no tokenizer_config.json");
        assert!(
            msg.contains("is absent") && msg.contains("leaves CJK ideographs within their words"),
            "{msg}"
        );
        assert_eq!(check(&with("lower-splits", true, true)), None);
    }

    /// A zero-size table (hidden_size 0 and intermediate_size 0 loaded, with empty
    /// tensors to match, and panicked in the first forward pass; type_vocab_size 0 failed
    /// in candle naming no file) is refused as config.json is read, naming the field.
    #[test]
    fn a_zero_size_table_is_refused_naming_the_field() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert/config.json");
        let raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(ModelConfig::from_value(raw.clone(), &path).is_ok());
        for key in [
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ] {
            let mut zero = raw.clone();
            zero[key] = 0.into();
            let err = ModelConfig::from_value(zero, &path)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("config.json") && err.contains(&format!("{key} 0 must be at least 1")),
                "{key}: {err}"
            );
        }
    }

    /// The check read config.json again for its `tokenizer_class`, after the model
    /// had been configured from it. It takes the document the model was read from: a
    /// config.json changed (or gone) since is not read.
    #[test]
    fn the_case_check_reads_the_config_it_is_given_not_the_file_again() {
        let dir = tempfile::tempdir().unwrap();
        // The fixture's tokenizer keeps case, and there is no tokenizer_config.json: with
        // config.json naming the generic class, transformers follows tokenizer.json too.
        let model = copy_with(
            dir.path(),
            "m",
            |c, _| c["tokenizer_class"] = "PreTrainedTokenizerFast".into(),
            false,
        );
        let (tokenizer, tconfig) = (
            model.join("tokenizer.json"),
            model.join("tokenizer_config.json"),
        );
        let generic = ModelConfig::from_file(&model.join("config.json")).unwrap();
        let mut raw = generic.raw.clone();
        raw.as_object_mut().unwrap().remove("tokenizer_class");
        let bert = ModelConfig::from_value(raw.clone(), &model.join("config.json")).unwrap();
        assert_eq!(case_disagreement(&generic, &tokenizer, &tconfig), None);
        assert!(case_disagreement(&bert, &tokenizer, &tconfig)
            .is_some_and(|m| m.contains("is absent") && m.contains("keeps case")));
        // The file now says the other thing, or is gone: the answers stay.
        std::fs::write(model.join("config.json"), raw.to_string()).unwrap();
        assert_eq!(case_disagreement(&generic, &tokenizer, &tconfig), None);
        std::fs::remove_file(model.join("config.json")).unwrap();
        assert_eq!(case_disagreement(&generic, &tokenizer, &tconfig), None);
        assert!(case_disagreement(&bert, &tokenizer, &tconfig).is_some());
    }

    /// The `add_prefix_space` compared with tokenizer_config.json's is the `ByteLevel`
    /// pre-tokenizer's, alone or inside a `Sequence`; no such step, nothing to compare.
    #[test]
    fn the_prefix_space_is_read_from_a_byte_level_step() {
        use serde_json::json;
        let doc = |p: serde_json::Value| json!({ "pre_tokenizer": p });
        let byte_level = |on: bool| json!({"type": "ByteLevel", "add_prefix_space": on});
        assert_eq!(byte_level_prefix_space(&doc(byte_level(true))), Some(true));
        assert_eq!(
            byte_level_prefix_space(&doc(byte_level(false))),
            Some(false)
        );
        let seq = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]});
        assert_eq!(byte_level_prefix_space(&doc(seq)), Some(true));
        assert_eq!(
            byte_level_prefix_space(&doc(json!({"type": "BertPreTokenizer"}))),
            None
        );
        assert_eq!(
            byte_level_prefix_space(&json!({"pre_tokenizer": null})),
            None
        );
    }
}
