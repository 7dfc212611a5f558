//! Checkpoint averaging: one model whose every weight is the element-wise mean of the same
//! weight in several checkpoints of one architecture (for instance the last epochs of a
//! training run, kept with `relbert train --checkpoint-dir`). Averaging the weights of
//! neighbouring checkpoints of one run smooths the epoch-to-epoch noise of contrastive
//! fine-tuning, and the result is an ordinary Hugging Face model directory.
//!
//! Written here rather than borrowed: the tools that merge Hugging Face checkpoints are Python,
//! and the operation is a mean over safetensors maps, which candle already reads and writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::config::{ModelConfig, ModelFiles, TOKENIZER_FILES};
use crate::encoder::{write_safetensors, Encoder};
use crate::error::{Error, Result};
use crate::output::{write_dir_atomically, write_json};

/// Keys of `config.json` allowed to differ between the averaged checkpoints: bookkeeping that
/// says nothing about the architecture or the pair function (`dtype` is transformers 5's name
/// for `torch_dtype`).
const CONFIG_KEYS_IGNORED: [&str; 4] = [
    "_name_or_path",
    "torch_dtype",
    "dtype",
    "transformers_version",
];

/// Keys of `config.json` allowed to differ with a note: dropout rates act only while a
/// model trains, so models that differ in them compute the same function at inference and
/// their average is well defined; the average keeps the first model's values (which a later
/// `relbert train` from it would use).
const CONFIG_KEYS_NOTED: [&str; 3] = [
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "classifier_dropout",
];

/// Differing `config.json` keys named in a refusal or a note (the rest are counted).
const CONFIG_KEYS_SHOWN: usize = 3;

/// What [`average_models`] wrote, saved as `averaged_from.json` in the new model directory.
#[derive(Debug, Clone, Serialize)]
pub struct AverageReport {
    /// The averaged model directories, in the order given (as given on the command line).
    pub sources: Vec<PathBuf>,
    /// The same directories' real paths (links, `.` and `..` resolved), so that the record
    /// still says which models these were when read from another directory.
    pub sources_canonical: Vec<PathBuf>,
    /// SHA-256 of each source's `model.safetensors`.
    pub sources_weights_sha256: Vec<String>,
    /// Tensors averaged.
    pub tensors: usize,
    /// Parameters (elements of the floating-point tensors) per model.
    pub parameters: usize,
    /// Integer tensors (such as BERT's `embeddings.position_ids`): indices, not weights, so
    /// copied unchanged (they must be equal in every model) and not counted as parameters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub integer_tensors: Vec<String>,
    /// `f16` or `f32`: the saved weights' type, as `--dtype` spells it.
    pub dtype: String,
    /// The `training_config.json` keys (dotted paths) in which the models differ from the
    /// first, or `training_config.json` itself when only some models have one. Empty for
    /// checkpoints of one run; otherwise the average blends different runs (a "model soup",
    /// legitimate, but worth knowing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub training_config_differences: Vec<String>,
    /// The `config.json` differences that were allowed (dropout rates, which do not change
    /// what the models compute; see `CONFIG_KEYS_NOTED`), each as `key: first vs other
    /// (model)`; the average's config.json keeps the first model's values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_differences_allowed: Vec<String>,
}

impl AverageReport {
    /// A one-line note when the models' `config.json` differ in keys that do not change what
    /// they compute ([`AverageReport::config_differences_allowed`]), else `None`.
    pub fn config_note(&self) -> Option<String> {
        if self.config_differences_allowed.is_empty() {
            return None;
        }
        Some(format!(
            "the models' config.json differ in {}, which acts only in training: averaged \
             anyway, and the average keeps the first model's values",
            shown_list(&self.config_differences_allowed)
        ))
    }

    /// A one-line warning when the models come from different training runs
    /// ([`AverageReport::training_config_differences`]), else `None`.
    pub fn mixed_runs_warning(&self) -> Option<String> {
        let keys = &self.training_config_differences;
        if keys.is_empty() {
            return None;
        }
        if keys.iter().any(|k| k == TRAINING_CONFIG) {
            return Some(format!(
                "only some of the models have a {TRAINING_CONFIG}: they are not checkpoints \
                 of one training run"
            ));
        }
        const SHOWN: usize = 8;
        let mut list = keys
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if keys.len() > SHOWN {
            list.push_str(&format!(" and {} more", keys.len() - SHOWN));
        }
        Some(format!(
            "the models' {TRAINING_CONFIG} differ in {list}: they are not checkpoints of one \
             training run, so the average mixes runs"
        ))
    }
}

/// relbert's record of a training run in a model directory. The epoch is not in it (that is
/// `epoch_metrics.json`), so every checkpoint of one run has the same one.
const TRAINING_CONFIG: &str = "training_config.json";

/// Tensors named when two models' tensor sets differ.
const NAMES_SHOWN: usize = 5;

/// Keys of the tokenizer files' JSON allowed to differ: where the file was saved from.
const TOKENIZER_KEYS_IGNORED: [&str; 2] = ["name_or_path", "_name_or_path"];

/// The leaves of a JSON value by dotted path (`config.seed`), into `out`.
fn flatten_json(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_json(&key, v, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf.to_string());
        }
    }
}

/// A model directory's `training_config.json` flattened, or `None` without one.
fn training_config(dir: &Path) -> Result<Option<BTreeMap<String, String>>> {
    let path = dir.join(TRAINING_CONFIG);
    if !path.is_file() {
        return Ok(None);
    }
    let value = read_json(&path)?;
    let mut flat = BTreeMap::new();
    flatten_json("", &value, &mut flat);
    Ok(Some(flat))
}

/// The keys in which the models' `training_config.json` differ from the first model's (see
/// [`AverageReport::training_config_differences`]).
fn training_config_differences(dirs: &[PathBuf]) -> Result<Vec<String>> {
    let configs = dirs
        .iter()
        .map(|d| training_config(d))
        .collect::<Result<Vec<_>>>()?;
    let first = &configs[0];
    let mut differ = BTreeSet::new();
    for other in &configs[1..] {
        match (first, other) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                for key in a.keys().chain(b.keys()) {
                    if a.get(key) != b.get(key) {
                        differ.insert(key.clone());
                    }
                }
            }
            _ => return Ok(vec![TRAINING_CONFIG.to_string()]),
        }
    }
    Ok(differ.into_iter().collect())
}

/// Reads a JSON file.
fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: format!("not valid JSON: {e}"),
    })
}

/// What a tokenizer file of model directory `dir` says, for comparing: its JSON without
/// [`TOKENIZER_KEYS_IGNORED`] for a `.json` file, its bytes otherwise; `None` when absent.
fn tokenizer_file(dir: &Path, name: &str) -> Result<Option<TokenizerFile>> {
    let path = dir.join(name);
    if !path.is_file() {
        return Ok(None);
    }
    if name.ends_with(".json") {
        let mut value = read_json(&path)?;
        if let Some(map) = value.as_object_mut() {
            for key in TOKENIZER_KEYS_IGNORED {
                map.remove(key);
            }
        }
        Ok(Some(TokenizerFile::Json(value)))
    } else {
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Some(TokenizerFile::Bytes(bytes)))
    }
}

/// A tokenizer file's comparable content.
#[derive(PartialEq)]
enum TokenizerFile {
    Json(serde_json::Value),
    Bytes(Vec<u8>),
}

/// Refuses models whose tokenizers differ from the first's: the average keeps the first's
/// tokenizer files, and weights learnt for one vocabulary mean nothing under another (two
/// swapped entries are enough to give words each other's embeddings).
fn check_same_tokenizer(first: &Path, other: &Path) -> Result<()> {
    for name in TOKENIZER_FILES {
        let (a, b) = (tokenizer_file(first, name)?, tokenizer_file(other, name)?);
        if a != b {
            let how = match (&a, &b) {
                (Some(_), None) => format!("missing, where {} has one", first.display()),
                (None, Some(_)) => format!("not in {}", first.display()),
                _ => format!("differs from {}", first.join(name).display()),
            };
            return Err(Error::Tokenizer {
                path: other.join(name),
                message: format!(
                    "{how}; only models with one tokenizer can be averaged (the average keeps \
                     the first model's)"
                ),
            });
        }
    }
    Ok(())
}

/// Names in `a` that are not in `b`, sorted, the first [`NAMES_SHOWN`] of them and a count of
/// the rest.
fn missing_names<'a>(
    a: impl Iterator<Item = &'a String>,
    b: &HashMap<String, Tensor>,
) -> Option<String> {
    let mut missing: Vec<&String> = a.filter(|n| !b.contains_key(*n)).collect();
    if missing.is_empty() {
        return None;
    }
    missing.sort();
    let mut text = missing
        .iter()
        .take(NAMES_SHOWN)
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if missing.len() > NAMES_SHOWN {
        text.push_str(&format!(" and {} more", missing.len() - NAMES_SHOWN));
    }
    Some(text)
}

/// A model's `config.json` flattened by dotted key ([`flatten_json`]), without the keys
/// allowed to differ unremarked ([`CONFIG_KEYS_IGNORED`]).
fn comparable_config(path: &Path) -> Result<BTreeMap<String, String>> {
    let mut value = ModelConfig::from_file(path)?.raw;
    if let Some(map) = value.as_object_mut() {
        for key in CONFIG_KEYS_IGNORED {
            map.remove(key);
        }
    }
    let mut flat = BTreeMap::new();
    flatten_json("", &value, &mut flat);
    Ok(flat)
}

/// A flattened JSON value as a message shows it: a string without its quotes, cut short
/// when long (templates are sentences); `absent` for a key the config lacks.
fn shown_value(v: Option<&String>) -> String {
    const LONGEST: usize = 60;
    let Some(v) = v else {
        return "absent".into();
    };
    let text = unquoted(v);
    if text.chars().count() > LONGEST {
        let cut: String = text.chars().take(LONGEST).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// A flattened JSON value as text: a string without its quotes, anything else as written.
fn unquoted(v: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => v.to_string(),
    }
}

/// Two differing values as a message shows them: [`shown_value`] of each, except that long
/// values that agree at the start are both shown from a little before their first
/// difference (two templates cut at the same place would otherwise look identical).
fn shown_pair(a: Option<&String>, b: Option<&String>) -> (String, String) {
    const LONGEST: usize = 60;
    const BEFORE: usize = 20;
    let (Some(x), Some(y)) = (a, b) else {
        return (shown_value(a), shown_value(b));
    };
    let (x, y): (Vec<char>, Vec<char>) =
        (unquoted(x).chars().collect(), unquoted(y).chars().collect());
    let first_difference = x.iter().zip(&y).take_while(|(p, q)| p == q).count();
    if first_difference < LONGEST {
        return (shown_value(a), shown_value(b));
    }
    let start = first_difference - BEFORE;
    let window = |v: &[char]| {
        let end = (start + LONGEST).min(v.len());
        let more = if end < v.len() { "…" } else { "" };
        format!("…{}{more}", v[start..end].iter().collect::<String>())
    };
    (window(&x), window(&y))
}

/// The first [`CONFIG_KEYS_SHOWN`] of `items`, comma-separated, and a count of the rest.
fn shown_list(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(CONFIG_KEYS_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > CONFIG_KEYS_SHOWN {
        text.push_str(&format!(" and {} more", items.len() - CONFIG_KEYS_SHOWN));
    }
    text
}

/// The keys in which `other` (a flattened config) differs from `first`, each as `key: first's
/// value vs other's`, split into those that change what the model computes and those of
/// [`CONFIG_KEYS_NOTED`], which do not.
fn config_differences(
    first: &BTreeMap<String, String>,
    other: &BTreeMap<String, String>,
) -> (Vec<String>, Vec<String>) {
    let mut keys: Vec<&String> = first
        .keys()
        .chain(other.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // The most telling first: another model type, then another pooling or template, then
    // the architecture's numbers (which a model type change also brings) by name.
    keys.sort_by_key(|k| {
        (
            k.as_str() != "model_type",
            !k.starts_with("relbert_config."),
        )
    });
    let (mut refused, mut noted) = (Vec::new(), Vec::new());
    for key in keys {
        let (a, b) = (first.get(key), other.get(key));
        if a == b {
            continue;
        }
        let (a, b) = shown_pair(a, b);
        let text = format!("{key}: {a} vs {b}");
        if CONFIG_KEYS_NOTED.contains(&key.as_str()) {
            noted.push(text);
        } else {
            refused.push(text);
        }
    }
    (refused, noted)
}

/// The first element of `t` (its flat index and value) that is not a finite number, if any.
fn first_non_finite(t: &Tensor) -> Result<Option<(usize, f32)>> {
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i])))
}

/// The first element of `t` (its flat index and value) that float16 cannot hold: one that is
/// not finite, or whose magnitude rounds beyond float16's largest value (65504) to infinity.
pub(crate) fn first_beyond_f16(t: &Tensor) -> Result<Option<(usize, f32)>> {
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(v.iter()
        .position(|x| !half::f16::from_f32(*x).is_finite())
        .map(|i| (i, v[i])))
}

/// Why tensor values cannot be saved as float16, for the messages of `--half`.
pub(crate) fn beyond_f16_message(tensor: &str, index: usize, value: f32) -> String {
    format!(
        "tensor {tensor} holds {value} (element {index}), beyond the float16 range (±{}): \
         saved as float16 it would be infinite and the model unusable",
        half::f16::MAX
    )
}

/// A checkpoint's tensors by their names without the encoder's prefix, and the names the
/// checkpoint stores them under where those differ.
type Loaded = (HashMap<String, Tensor>, HashMap<String, String>);

/// Reads a checkpoint's weights on the CPU, floating-point tensors as float32 and integer
/// ones (indices such as `embeddings.position_ids`) as they are, refusing a tensor with a
/// value that is not finite (NaN or infinite): averaged in, it would spoil that weight of
/// the average, and every vector the model gives.
fn load_f32(path: &Path) -> Result<Loaded> {
    let tensors =
        candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("cannot read safetensors: {e}"),
        })?;
    let mut out = HashMap::with_capacity(tensors.len());
    let mut stored = HashMap::new();
    // Named as a trained model names them: the encoder's tensors without the task model's
    // `bert.`/`roberta.` (training drops it), so that a prefixed base and a model trained
    // from it hold one set of names; a name under the prefix wins over the same name
    // outside it, as training keeps it. Found by a review: such a pair was refused, every
    // encoder tensor "lacking" from one side.
    let prefix = crate::encoder::encoder_prefix(|n| tensors.contains_key(n)).unwrap_or("");
    // In name order, so that the tensor a refusal names does not depend on hashing.
    let tensors = tensors.into_iter().map(|(n, t)| (n.clone(), (n, t)));
    for (name, (as_stored, t)) in crate::encoder::without_prefix(tensors, prefix) {
        if as_stored != name {
            stored.insert(name.clone(), as_stored);
        }
        if t.dtype().is_int() {
            out.insert(name, t);
            continue;
        }
        let t = t.to_dtype(DType::F32)?;
        if let Some((index, value)) = first_non_finite(&t)? {
            return Err(Error::Tensor {
                path: path.to_path_buf(),
                tensor: name,
                message: format!(
                    "holds {value} (element {index}), not a finite number: the model cannot \
                     be averaged (its vectors would not be numbers either)"
                ),
            });
        }
        out.insert(name, t);
    }
    Ok((out, stored))
}

/// Averages the weights of the model directories `dirs` (at least two, same architecture,
/// same `config.json` up to bookkeeping keys, same tensor names and shapes) into a new model
/// directory `out`, written to a temporary directory and renamed; an existing `out` is refused
/// unless `force`. The config and tokenizer files are the first model's, so the tokenizer
/// files (JSON compared parsed, up to where they were saved from) must be the same in every
/// model. Weights are saved float16 with `half`, else float32. Models whose
/// `training_config.json` differ are averaged, and the keys recorded in the report.
pub fn average_models(
    dirs: &[PathBuf],
    out: &Path,
    half: bool,
    force: bool,
) -> Result<AverageReport> {
    average_models_observed(dirs, out, half, force, &mut |_| {})
}

/// How far [`average_models_observed`] has got, for a caller that shows progress or must
/// know what to remove when the run is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AverageStep {
    /// The output's writer lock is held: its file (this path) is this run's until the run
    /// returns.
    Locked(PathBuf),
    /// `done` of the `total` models are read and summed.
    Read {
        /// Models read so far.
        done: usize,
        /// Models in all.
        total: usize,
    },
    /// The average is about to be written into this temporary directory beside the output
    /// (renamed into place when complete). It is this run's to remove once the write has
    /// started: a directory of that name found first is removed by the write only when it
    /// holds nothing but model files (what a killed run left), and refused otherwise.
    Writing(PathBuf),
    /// The temporary directory is complete and is about to be put in place of the output
    /// (synced, renamed, and with `force` an old model removed): from here on a stop must let
    /// that finish, since what is at the output may already be the new model.
    Committing,
    /// The output is in place; the lock is still held.
    Written,
}

/// [`average_models`], telling `observe` each [`AverageStep`] as it is reached.
pub fn average_models_observed(
    dirs: &[PathBuf],
    out: &Path,
    half: bool,
    force: bool,
    observe: &mut dyn FnMut(AverageStep),
) -> Result<AverageReport> {
    if dirs.len() < 2 {
        return Err(Error::InvalidArgument {
            flag: "MODELS".into(),
            message: format!("averaging needs at least two models, got {}", dirs.len()),
        });
    }
    let _lock = relbert_index::OutputLock::acquire(out)?;
    if let Ok(path) = relbert_index::lock::lock_path(out) {
        observe(AverageStep::Locked(path));
    }
    // Only an existing `out` can be one of the (existing) inputs; compare real paths so that
    // `./m` and `m` are seen as one. Checked before the output checks, whose advice
    // (`--force`) would not help here.
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
    crate::training::check_model_output(out, force)?;
    let files = dirs
        .iter()
        .map(|d| ModelFiles::in_dir(d))
        .collect::<Result<Vec<_>>>()?;
    let first = &files[0];
    let first_config = comparable_config(&first.config)?;
    let mut hashes = vec![Encoder::weights_sha256(&first.weights)?];
    // Summed in float64: float32 sums of weights near its largest value (3.4e38) overflow to
    // infinity where their mean does not.
    // Saved under the first model's names: a task model's encoder keeps its prefix beside its
    // heads, as Hugging Face loads it (see `Encoder::save_safetensors`).
    let (first_tensors, mut first_names) = load_f32(&first.weights)?;
    let mut sum = first_tensors
        .into_iter()
        .map(|(name, t)| {
            let t = if t.dtype().is_int() {
                t
            } else {
                t.to_dtype(DType::F64)?
            };
            Ok((name, t))
        })
        .collect::<Result<HashMap<_, _>>>()?;
    let total = dirs.len();
    observe(AverageStep::Read { done: 1, total });
    let mut config_differences_allowed = Vec::new();
    for (done, (f, dir)) in files[1..].iter().zip(&dirs[1..]).enumerate() {
        let (refused, noted) = config_differences(&first_config, &comparable_config(&f.config)?);
        if !refused.is_empty() {
            return Err(Error::Config {
                path: f.config.clone(),
                message: format!(
                    "differs from {} in {}; only checkpoints of one model (one architecture \
                     and relbert_config) can be averaged",
                    first.config.display(),
                    shown_list(&refused)
                ),
            });
        }
        config_differences_allowed.extend(
            noted
                .into_iter()
                .map(|d| format!("{d} ({})", dir.display())),
        );
        // After the config: another architecture is the more telling refusal.
        check_same_tokenizer(&dirs[0], dir)?;
        hashes.push(Encoder::weights_sha256(&f.weights)?);
        let (tensors, _) = load_f32(&f.weights)?;
        let extra = missing_names(tensors.keys(), &sum);
        let lacking = missing_names(sum.keys(), &tensors);
        if extra.is_some() || lacking.is_some() {
            let mut parts = Vec::new();
            if let Some(names) = extra {
                parts.push(format!("has tensors the first model lacks ({names})"));
            }
            if let Some(names) = lacking {
                parts.push(format!("lacks tensors of the first model ({names})"));
            }
            // relbert saved its models without the checkpoint's pooler until the pooler was
            // kept (it computes nothing with it); such a model and a newer one differ only so.
            let only_pooler = tensors
                .keys()
                .filter(|n| !sum.contains_key(*n))
                .chain(sum.keys().filter(|n| !tensors.contains_key(*n)))
                .all(|n| n.contains("pooler."));
            let hint = if only_pooler {
                ": only the pooler differs, which older relbert versions did not save; \
                 average models saved by one version (retrain, or copy the pooler tensors \
                 into the older model.safetensors)"
            } else {
                ""
            };
            return Err(Error::Config {
                path: f.weights.clone(),
                message: format!(
                    "{} tensors where the first model has {}: {}{hint}",
                    tensors.len(),
                    sum.len(),
                    parts.join("; ")
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
            if a.dtype().is_int() || t.dtype().is_int() {
                // Indices (position ids), not weights: a mean of them is no index, so the
                // first model's are kept, and must be every model's.
                if a.dtype() != t.dtype() {
                    return Err(tensor_error(format!(
                        "holds {:?} values where the first model's holds {:?}",
                        t.dtype(),
                        a.dtype()
                    )));
                }
                if let Some(index) = first_difference(a, &t)? {
                    return Err(tensor_error(format!(
                        "holds integers (indices, not weights, which are not averaged but \
                         copied) that differ from the first model's at element {index}"
                    )));
                }
                continue;
            }
            *a = (&*a + t.to_dtype(DType::F64)?)?;
        }
        observe(AverageStep::Read {
            done: done + 2,
            total,
        });
    }
    let training_config_differences = training_config_differences(dirs)?;
    let scale = 1.0 / dirs.len() as f64;
    let dtype = if half { DType::F16 } else { DType::F32 };
    let mut parameters = 0;
    let mut integer_tensors = Vec::new();
    let mut mean = HashMap::with_capacity(sum.len());
    // In name order, so that the tensor a refusal names does not depend on hashing.
    let mut names: Vec<String> = sum.keys().cloned().collect();
    names.sort();
    for name in names {
        let Some(t) = sum.remove(&name) else { continue };
        if t.dtype().is_int() {
            mean.insert(name.clone(), t);
            integer_tensors.push(name);
            continue;
        }
        parameters += t.elem_count();
        // The mean of finite float32 values is a finite float32 value; float16 may not hold
        // it, and the refusal comes before anything is written.
        let t = t.affine(scale, 0.0)?.to_dtype(DType::F32)?;
        if half {
            if let Some((index, value)) = first_beyond_f16(&t)? {
                return Err(Error::InvalidArgument {
                    flag: "--half".into(),
                    message: format!(
                        "the average's {}; nothing was written: average without --half to \
                         save float32 weights",
                        beyond_f16_message(&name, index, value)
                    ),
                });
            }
        }
        mean.insert(name, t.to_dtype(dtype)?);
    }
    let report = AverageReport {
        sources: dirs.to_vec(),
        sources_canonical: dirs
            .iter()
            .map(|d| d.canonicalize().map_err(|e| Error::io(d, e)))
            .collect::<Result<_>>()?,
        sources_weights_sha256: hashes,
        tensors: mean.len(),
        parameters,
        integer_tensors,
        // As `--dtype` and every other JSON output spell a format (found by an audit: `F32`).
        dtype: if half {
            crate::Dtype::F16
        } else {
            crate::Dtype::F32
        }
        .name()
        .into(),
        training_config_differences,
        config_differences_allowed,
    };
    let config = config_with_dtype(&first.config, half)?;
    observe(AverageStep::Writing(crate::output::sibling_named(
        out, "tmp",
    )));
    write_dir_atomically(out, crate::output::Replace::when(force), |tmp| {
        let mean: HashMap<String, Tensor> = std::mem::take(&mut mean)
            .into_iter()
            .map(|(name, t)| (first_names.remove(&name).unwrap_or(name), t))
            .collect();
        write_safetensors(&mean, &tmp.join("model.safetensors"))?;
        std::fs::write(tmp.join("config.json"), config)
            .map_err(|e| Error::io(tmp.join("config.json"), e))?;
        ModelFiles::copy_tokenizer_files(&dirs[0], tmp)?;
        write_json(&tmp.join("averaged_from.json"), &report)?;
        // Last: write_dir_atomically syncs and renames right after this returns.
        observe(AverageStep::Committing);
        Ok(())
    })?;
    observe(AverageStep::Written);
    Ok(report)
}

/// The first flat index at which two integer tensors of one shape differ, if any.
fn first_difference(a: &Tensor, b: &Tensor) -> Result<Option<usize>> {
    let a = a.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?;
    let b = b.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?;
    Ok(a.iter().zip(&b).position(|(x, y)| x != y))
}

/// The first model's `config.json` for the average, its bytes unchanged unless a top-level
/// `torch_dtype` or `dtype` string (transformers' record of the weights' type) names another
/// type than the one saved (`float16` with `half`, else `float32`): loaders that honour the
/// key would otherwise load float16 weights as float32, or the reverse. Only those strings
/// are replaced, in the text: a rewrite through serde_json sorted every key and could change
/// how numbers are written.
fn config_with_dtype(path: &Path, half: bool) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(bytes);
    };
    Ok(text_with_dtype(text, half).into_bytes())
}

/// The config.json text `text` with its top-level `torch_dtype` and `dtype` strings, where it
/// has them, saying the type saved (`float16` with `half`, else `float32`); the rest of the
/// text unchanged. [`config_with_dtype`] for the average; `train` writes its models' configs
/// through it too (it copied the base model's record whatever precision it saved).
pub(crate) fn text_with_dtype(text: &str, half: bool) -> String {
    let saved = if half { "float16" } else { "float32" };
    let spans = top_level_dtype_spans(text);
    if spans.is_empty() {
        return text.to_string();
    }
    let quoted = serde_json::Value::String(saved.into()).to_string();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        out.push_str(&text[at..start]);
        out.push_str(&quoted);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The byte ranges (quotes included) of the string values of the top-level `torch_dtype` and
/// `dtype` keys of the JSON object `text`, which the caller writes the saved type over.
/// Empty when `text` is not a JSON object, or
/// has no such string value (a nested `dtype`, in a sub-config, is not the weights' record).
fn top_level_dtype_spans(text: &str) -> Vec<(usize, usize)> {
    if !matches!(
        serde_json::from_str::<serde_json::Value>(text),
        Ok(serde_json::Value::Object(_))
    ) {
        return Vec::new();
    }
    let b = text.as_bytes();
    let mut spans = Vec::new();
    // A scan of valid JSON (checked above): depth counts the open objects and arrays, and a
    // string at depth 1 followed by `:` is a top-level key.
    let mut depth = 0usize;
    let mut i = 0;
    let mut key: Option<String> = None;
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => {
                depth += 1;
                key = None;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                let end = i.min(b.len());
                let literal = &text[start..end];
                if depth != 1 {
                    continue;
                }
                let mut k = end;
                while k < b.len() && b[k].is_ascii_whitespace() {
                    k += 1;
                }
                if b.get(k) == Some(&b':') {
                    key = serde_json::from_str::<String>(literal).ok();
                } else if matches!(key.as_deref(), Some("torch_dtype" | "dtype")) {
                    spans.push((start, end));
                    key = None;
                } else {
                    key = None;
                }
            }
            _ => i += 1,
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review R2 (5) of d2d47d4: the dtype fix rewrote config.json through serde_json, which
    /// sorted every key and could change how numbers were written. Only the top-level
    /// `torch_dtype`/`dtype` strings change now; every other byte stays.
    #[test]
    fn the_config_keeps_every_byte_but_the_dtype_strings() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("config.json");
        let original = "{\n  \"vocab_size\": 30522,\n  \"torch_dtype\": \"float32\",\n                          \"layer_norm_eps\": 1e-12,\n  \"architectures\": [\"BertModel\"],\n                          \"text_config\": {\"dtype\": \"bfloat16\"},\n                          \"note\": \"dtype\",\n  \"dtype\":\"float32\"\n}\n";
        std::fs::write(&path, original).unwrap();
        let half = String::from_utf8(config_with_dtype(&path, true).unwrap()).unwrap();
        assert_eq!(
            half,
            original
                .replace(
                    "\"torch_dtype\": \"float32\"",
                    "\"torch_dtype\": \"float16\""
                )
                .replace("\"dtype\":\"float32\"", "\"dtype\":\"float16\"")
        );
        // Already the saved type: the bytes as they were.
        let same = config_with_dtype(&path, false).unwrap();
        assert_eq!(same, original.as_bytes());
        // Not an object, or not JSON: left alone.
        std::fs::write(&path, "[\"dtype\", \"float32\"]").unwrap();
        assert_eq!(
            config_with_dtype(&path, true).unwrap(),
            b"[\"dtype\", \"float32\"]"
        );
    }

    #[test]
    fn long_values_are_shown_where_they_first_differ() {
        let head = "x".repeat(80);
        let a = serde_json::Value::String(format!("{head} of <subj> and <obj>")).to_string();
        let b = serde_json::Value::String(format!("{head} of <obj> and <subj>")).to_string();
        let (x, y) = shown_pair(Some(&a), Some(&b));
        assert_ne!(x, y, "the shown parts must differ: {x} / {y}");
        assert!(x.contains("<subj> and"), "{x}");
        assert!(y.contains("<obj> and"), "{y}");
        // Short values, or ones that differ early, are shown as before.
        let (s, t) = shown_pair(Some(&"\"ab\"".to_string()), None);
        assert_eq!((s.as_str(), t.as_str()), ("ab", "absent"));
    }
}
