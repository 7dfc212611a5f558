//! The BERT/RoBERTa transformer encoder, written on candle-core tensor ops so that one module
//! serves both inference and training.
//!
//! Why our own module rather than candle-transformers': its `bert` gives wrong positions on
//! RoBERTa checkpoints, and its fused LayerNorm and softmax kernels have no backward pass, so
//! gradients silently stop. Here every operation has two forms chosen per call by [`Mode`]:
//! [`Mode::Inference`] uses candle's fused kernels (fast, no gradient), [`Mode::Train`] composes
//! the same maths from primitive ops that all have a backward pass. Both are parity-tested.
//!
//! At a reduced [`Dtype`] (inference only) the dense layers' weights and the activations
//! entering them are held in that format; the residual stream, LayerNorm, softmax and pooling
//! stay float32 (see [`crate::precision`]).
//!
//! [`Encoder::forward_rows`] runs the last layer for one row per sequence only (keys and
//! values still for every token), which is all mask pooling reads; inference with mask
//! pooling on this path (a GPU, or candle on the CPU) takes it, as the CPU kernels do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};

use crate::config::{Architecture, ModelConfig};
use crate::cpu_kernels::{CpuModel, LayerTensors};
use crate::error::{Error, Result};
use crate::precision::Dtype;

/// Which kernels a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fused kernels; no gradient flows.
    Inference,
    /// Differentiable composition of primitive ops (and dropout, when set).
    Train,
}

/// One padded batch of token sequences, ready for the encoder.
#[derive(Debug, Clone)]
pub struct EncoderInput {
    /// Token ids, `[batch, seq]`, row-major, padded with the pad id.
    pub ids: Vec<u32>,
    /// Position ids, `[batch, seq]` (architecture-specific numbering).
    pub positions: Vec<u32>,
    /// Real length of each sequence (the rest is padding).
    pub lengths: Vec<usize>,
    /// Batch size.
    pub batch: usize,
    /// Padded sequence length.
    pub seq_len: usize,
}

struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?)
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match mode {
            Mode::Inference => Ok(candle_nn::ops::layer_norm(
                &x.contiguous()?,
                &self.weight,
                &self.bias,
                self.eps as f32,
            )?),
            Mode::Train => {
                let mean = x.mean_keepdim(D::Minus1)?;
                let centred = x.broadcast_sub(&mean)?;
                let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
                let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
                Ok(normed
                    .broadcast_mul(&self.weight)?
                    .broadcast_add(&self.bias)?)
            }
        }
    }
}

fn softmax_last(x: &Tensor, mode: Mode) -> Result<Tensor> {
    match mode {
        Mode::Inference => Ok(candle_nn::ops::softmax_last_dim(x)?),
        Mode::Train => {
            // The shift by the (detached) row maximum changes nothing mathematically, so the
            // gradient stays exact while exp cannot overflow.
            let max = x.max_keepdim(D::Minus1)?.detach();
            let e = x.broadcast_sub(&max)?.exp()?;
            Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
        }
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

/// A BERT or RoBERTa encoder with its parameters.
pub struct Encoder {
    config: ModelConfig,
    device: Device,
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_row: Tensor,
    token_type_embeddings: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    /// Present when loaded for training: every parameter as a candle `Var`, by HF name.
    vars: Option<Vec<(String, Var)>>,
    /// The fast CPU inference layout; present for frozen models on the CPU.
    cpu: Option<CpuModel>,
    /// The number format of the dense layers.
    dtype: Dtype,
    /// The checkpoint's tensors that are not parameters here, exactly as loaded (dtype,
    /// values and name; see [`kept_from_checkpoint`]): the
    /// pooler, task heads (`lm_head.*`, `cls.*`, `classifier.*`) and buffers such as the
    /// integer `embeddings.position_ids`. relbert computes with none of them, but they are
    /// saved with the model so that a trained model has every tensor its base had: Hugging
    /// Face initialises a missing head at random (the base's `architectures` is kept in the
    /// config), and `relbert average` of a base and a model trained from it needs one tensor
    /// set.
    kept: Vec<(String, Tensor)>,
    /// The prefix the checkpoint names the encoder's tensors under (`bert.`, `roberta.` or
    /// none; [`PREFIXES`]), under which the parameters are saved again: a task model's
    /// checkpoint (`BertForMaskedLM`, `RobertaForMaskedLM`: `roberta.*` beside `lm_head.*`)
    /// saved with its encoder unprefixed and its head prefixed was refused by transformers
    /// before 4.48 as "corrupted", and later ones loaded its head at random.
    prefix: &'static str,
}

/// The prefixes under which checkpoints store the encoder's tensors.
const PREFIXES: [&str; 3] = ["", "bert.", "roberta."];

/// The prefix a checkpoint's encoder tensors are named under (one of [`PREFIXES`]: none, or
/// the task model's `bert.` / `roberta.`), found by its word embeddings; `None` when they
/// are not there under any.
pub(crate) fn encoder_prefix<'a>(mut has: impl FnMut(&str) -> bool) -> Option<&'a str> {
    PREFIXES
        .iter()
        .find(|p| has(&format!("{p}embeddings.word_embeddings.weight")))
        .copied()
}

struct TensorSource<'a> {
    path: &'a Path,
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
    device: Device,
    trainable: bool,
    vars: Vec<(String, Var)>,
    /// The parameters read so far, by Hugging Face name without the prefix.
    taken: HashSet<String>,
}

impl TensorSource<'_> {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{}", self.prefix, name);
        // Old BERT checkpoints name LayerNorm parameters gamma/beta.
        let alias = full
            .strip_suffix("LayerNorm.weight")
            .map(|p| format!("{p}LayerNorm.gamma"))
            .or_else(|| {
                full.strip_suffix("LayerNorm.bias")
                    .map(|p| format!("{p}LayerNorm.beta"))
            });
        let t = match self.tensors.remove(&full) {
            Some(t) => t,
            None => match alias.and_then(|a| self.tensors.remove(&a)) {
                Some(t) => t,
                None => {
                    return Err(Error::Tensor {
                        path: self.path.to_path_buf(),
                        tensor: full,
                        message: "missing from the checkpoint".into(),
                    })
                }
            },
        };
        if t.dims() != shape {
            return Err(Error::Tensor {
                path: self.path.to_path_buf(),
                tensor: full,
                message: format!("shape {:?}, expected {:?}", t.dims(), shape),
            });
        }
        let t = match t.dtype() {
            DType::F32 => t,
            DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(DType::F32)?,
            other => {
                return Err(Error::Tensor {
                    path: self.path.to_path_buf(),
                    tensor: full,
                    message: format!("dtype {other:?}, expected a float type"),
                })
            }
        };
        let t = t.to_device(&self.device)?;
        self.taken.insert(name.to_string());
        if self.trainable {
            let var = Var::from_tensor(&t)?;
            let tensor = var.as_tensor().clone();
            self.vars.push((name.to_string(), var));
            Ok(tensor)
        } else {
            Ok(t)
        }
    }

    fn linear(&mut self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.get(&format!("{name}.weight"), &[out, inp])?,
            bias: self.get(&format!("{name}.bias"), &[out])?,
        })
    }

    fn norm(&mut self, name: &str, width: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.get(&format!("{name}.weight"), &[width])?,
            bias: self.get(&format!("{name}.bias"), &[width])?,
            eps,
        })
    }
}

impl Encoder {
    /// Loads the encoder from a safetensors checkpoint. With `trainable`, every parameter is a
    /// [`Var`] (see [`Encoder::vars`]).
    pub fn load(
        config: &ModelConfig,
        weights: &Path,
        device: &Device,
        trainable: bool,
    ) -> Result<Self> {
        Self::load_at(config, weights, device, trainable, Dtype::F32)
    }

    /// [`Encoder::load`] with the dense layers at `dtype` (float32 only when `trainable`).
    pub fn load_at(
        config: &ModelConfig,
        weights: &Path,
        device: &Device,
        trainable: bool,
        dtype: Dtype,
    ) -> Result<Self> {
        crate::config::weights_file(weights)?;
        let tensors =
            candle_core::safetensors::load(weights, &Device::Cpu).map_err(|e| Error::Tensor {
                path: weights.to_path_buf(),
                tensor: "*".into(),
                message: format!("cannot read safetensors: {e}"),
            })?;
        Self::from_tensors_at(config, tensors, weights, device, trainable, dtype)
    }

    /// Builds the encoder from named tensors (as stored in a checkpoint); `path` names their
    /// origin in errors.
    pub fn from_tensors(
        config: &ModelConfig,
        tensors: HashMap<String, Tensor>,
        path: &Path,
        device: &Device,
        trainable: bool,
    ) -> Result<Self> {
        Self::from_tensors_at(config, tensors, path, device, trainable, Dtype::F32)
    }

    /// [`Encoder::from_tensors`] with the dense layers at `dtype`.
    pub fn from_tensors_at(
        config: &ModelConfig,
        tensors: HashMap<String, Tensor>,
        path: &Path,
        device: &Device,
        trainable: bool,
        dtype: Dtype,
    ) -> Result<Self> {
        if trainable && dtype != Dtype::F32 {
            return Err(Error::InvalidArgument {
                flag: "--dtype".into(),
                message: format!("training runs in f32, not {dtype}"),
            });
        }
        let prefix =
            encoder_prefix(|name| tensors.contains_key(name)).ok_or_else(|| Error::Tensor {
                path: path.to_path_buf(),
                tensor: "embeddings.word_embeddings.weight".into(),
                message: "missing (also looked under bert. and roberta.)".into(),
            })?;
        let mut src = TensorSource {
            path,
            tensors,
            prefix,
            device: device.clone(),
            trainable,
            vars: Vec::new(),
            taken: HashSet::new(),
        };
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let word_embeddings =
            src.get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position_embeddings = src.get(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let token_type_embeddings = src.get(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        let embed_norm = src.norm("embeddings.LayerNorm", h, eps)?;
        // Not `with_capacity(num_hidden_layers)`: config.json is input, and a huge count
        // aborted the process on the allocation before the first missing layer was reported
        // (tests/fuzz_parsers.rs).
        let mut layers = Vec::new();
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                query: src.linear(&format!("{p}.attention.self.query"), h, h)?,
                key: src.linear(&format!("{p}.attention.self.key"), h, h)?,
                value: src.linear(&format!("{p}.attention.self.value"), h, h)?,
                attn_out: src.linear(&format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: src.norm(&format!("{p}.attention.output.LayerNorm"), h, eps)?,
                intermediate: src.linear(
                    &format!("{p}.intermediate.dense"),
                    config.intermediate_size,
                    h,
                )?,
                output: src.linear(&format!("{p}.output.dense"), h, config.intermediate_size)?,
                out_norm: src.norm(&format!("{p}.output.LayerNorm"), h, eps)?,
            });
        }
        // The layers' tensors left over. Past num_hidden_layers: a config that lists fewer
        // layers than the checkpoint holds would run a smaller model without a word, so they
        // are refused, as missing ones are. Inside the layers: parameters a plain BERT/RoBERTa
        // layer has not (a relative-position model's distance embeddings), which the
        // computation here would leave out.
        let layer_prefix = format!("{prefix}encoder.layer.");
        let (mut extra_layer, mut unknown) = (None, Vec::new());
        for k in src.tensors.keys() {
            let Some(rest) = k.strip_prefix(&layer_prefix) else {
                continue;
            };
            match rest.split('.').next().and_then(|n| n.parse::<usize>().ok()) {
                Some(i) if i >= config.num_hidden_layers => extra_layer = extra_layer.max(Some(i)),
                _ => unknown.push(k.as_str()),
            }
        }
        if extra_layer.is_none() && !unknown.is_empty() {
            let (first, others) = unknown_in_layers(unknown, &layer_prefix);
            return Err(Error::Tensor {
                path: path.to_path_buf(),
                tensor: first.to_string(),
                message: format!(
                    "not a parameter of a plain BERT/RoBERTa layer{others}: the checkpoint's \
                     architecture is not plain BERT or RoBERTa (relative position embeddings, \
                     for one), and relbert computes only those"
                ),
            });
        }
        if let Some(extra) = extra_layer {
            return Err(Error::Config {
                path: path.with_file_name("config.json"),
                message: format!(
                    "num_hidden_layers is {}, but {} holds layer {extra} too: the config does \
                     not describe these weights",
                    config.num_hidden_layers,
                    path.display()
                ),
            });
        }
        let kept = kept_from_checkpoint(src.tensors, prefix, &src.taken);
        let token_type_row = token_type_embeddings.get(0)?;
        let cpu = if !trainable && device.is_cpu() {
            let tensors: Vec<LayerTensors<'_>> = layers
                .iter()
                .map(|l| LayerTensors {
                    qkv: [
                        (&l.query.weight, &l.query.bias),
                        (&l.key.weight, &l.key.bias),
                        (&l.value.weight, &l.value.bias),
                    ],
                    attn_out: (&l.attn_out.weight, &l.attn_out.bias),
                    attn_norm: (&l.attn_norm.weight, &l.attn_norm.bias),
                    intermediate: (&l.intermediate.weight, &l.intermediate.bias),
                    output: (&l.output.weight, &l.output.bias),
                    out_norm: (&l.out_norm.weight, &l.out_norm.bias),
                })
                .collect();
            Some(CpuModel::new(
                &word_embeddings,
                &position_embeddings,
                &token_type_row,
                (&embed_norm.weight, &embed_norm.bias),
                &tensors,
                config.num_attention_heads,
                eps,
                dtype,
            )?)
        } else {
            None
        };
        // After the CPU layout has read them as float32: the candle path's dense layers
        // hold their parameters in the compute format.
        if dtype != Dtype::F32 {
            for l in &mut layers {
                for lin in [
                    &mut l.query,
                    &mut l.key,
                    &mut l.value,
                    &mut l.attn_out,
                    &mut l.intermediate,
                    &mut l.output,
                ] {
                    lin.weight = lin.weight.to_dtype(dtype.candle())?;
                    lin.bias = lin.bias.to_dtype(dtype.candle())?;
                }
            }
        }
        Ok(Encoder {
            config: config.clone(),
            device: device.clone(),
            word_embeddings,
            position_embeddings,
            token_type_row,
            token_type_embeddings,
            embed_norm,
            layers,
            vars: trainable.then_some(src.vars),
            cpu,
            dtype,
            kept,
            prefix,
        })
    }

    /// The number format of the dense layers.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The fast CPU inference path, when this is a frozen model on the CPU.
    pub fn cpu_model(&self) -> Option<&CpuModel> {
        self.cpu.as_ref()
    }

    /// The trainable parameters by Hugging Face name (no prefix); `None` unless loaded with
    /// `trainable`.
    pub fn vars(&self) -> Option<&[(String, Var)]> {
        self.vars.as_deref()
    }

    /// Every parameter by Hugging Face name (no prefix), as currently held.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            (
                "embeddings.word_embeddings.weight".to_string(),
                self.word_embeddings.clone(),
            ),
            (
                "embeddings.position_embeddings.weight".to_string(),
                self.position_embeddings.clone(),
            ),
            (
                "embeddings.token_type_embeddings.weight".to_string(),
                self.token_type_embeddings.clone(),
            ),
            (
                "embeddings.LayerNorm.weight".to_string(),
                self.embed_norm.weight.clone(),
            ),
            (
                "embeddings.LayerNorm.bias".to_string(),
                self.embed_norm.bias.clone(),
            ),
        ];
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("encoder.layer.{i}");
            let mut lin = |n: &str, x: &Linear| {
                out.push((format!("{p}.{n}.weight"), x.weight.clone()));
                out.push((format!("{p}.{n}.bias"), x.bias.clone()));
            };
            lin("attention.self.query", &l.query);
            lin("attention.self.key", &l.key);
            lin("attention.self.value", &l.value);
            lin("attention.output.dense", &l.attn_out);
            lin("intermediate.dense", &l.intermediate);
            lin("output.dense", &l.output);
            for (n, x) in [
                ("attention.output.LayerNorm", &l.attn_norm),
                ("output.LayerNorm", &l.out_norm),
            ] {
                out.push((format!("{p}.{n}.weight"), x.weight.clone()));
                out.push((format!("{p}.{n}.bias"), x.bias.clone()));
            }
        }
        out
    }

    /// Position ids for the sequence `ids` padded to `seq_len`. RoBERTa's positions skip the
    /// pad id wherever it is, so they are computed from the ids rather than their number: a
    /// word of tokenised text can tokenise to the literal pad token.
    pub fn position_ids(&self, ids: &[u32], seq_len: usize) -> Vec<u32> {
        match self.config.architecture {
            Architecture::Bert => (0..seq_len as u32).collect(),
            Architecture::Roberta => {
                // HF's create_position_ids_from_input_ids numbers the tokens that are not the
                // pad id from padding_idx + 1 and gives the pad id padding_idx, wherever it
                // is: a word that tokenises to the literal pad token (`<pad>`) takes
                // padding_idx there and the tokens after it count one fewer. Counting by
                // place gave such pairs other vectors than transformers.
                let pad = self.config.pad_token_id;
                let mut next = pad;
                (0..seq_len)
                    .map(|i| match ids.get(i) {
                        Some(&id) if id != pad => {
                            next += 1;
                            next
                        }
                        _ => pad,
                    })
                    .collect()
            }
        }
    }

    /// Runs the encoder; returns the last hidden states `[batch, seq, hidden]`.
    pub fn forward(&self, input: &EncoderInput, mode: Mode) -> Result<Tensor> {
        let (b, t, h) = (input.batch, input.seq_len, self.config.hidden_size);
        Ok(self.run(input, mode, None)?.reshape((b, t, h))?)
    }

    /// Runs the encoder and returns the last hidden state of one position per sequence,
    /// `[batch, hidden]`: `rows[i]` is the position read from sequence `i`. The last layer
    /// computes keys and values for every token but queries, attention output and
    /// feed-forward only for those rows, because nothing else reads them (with mask pooling
    /// only the mask token's state is pooled): for every other token that saves 10 of the 12
    /// `hidden²` multiply-adds per token of the last layer, the same saving the CPU kernels make
    /// ([`CpuModel::forward_pooled`]). The rows' states equal [`Self::forward`]'s up to the
    /// summation order of the smaller products.
    pub fn forward_rows(&self, input: &EncoderInput, mode: Mode, rows: &[usize]) -> Result<Tensor> {
        if rows.len() != input.batch || rows.iter().any(|&r| r >= input.seq_len) {
            return Err(Error::Internal(format!(
                "forward_rows: {} rows for a batch of {} sequences of {} positions",
                rows.len(),
                input.batch,
                input.seq_len
            )));
        }
        if self.layers.is_empty() {
            // No last layer to prune: the embeddings' rows.
            let x = self.run(input, mode, None)?;
            return gather_rows(&x, rows, input.seq_len, &self.device);
        }
        self.run(input, mode, Some(rows))
    }

    /// The encoder stack: `[batch · seq, hidden]`, or `[batch, hidden]` at `rows` (see
    /// [`Self::forward_rows`]).
    fn run(&self, input: &EncoderInput, mode: Mode, rows: Option<&[usize]>) -> Result<Tensor> {
        let (b, t) = (input.batch, input.seq_len);
        let h = self.config.hidden_size;
        let nh = self.config.num_attention_heads;
        let dh = self.config.head_dim();
        let dev = &self.device;
        let ids = Tensor::from_slice(&input.ids, b * t, dev)?;
        let pos = Tensor::from_slice(&input.positions, b * t, dev)?;
        let x = self
            .word_embeddings
            .index_select(&ids, 0)?
            .add(&self.position_embeddings.index_select(&pos, 0)?)?
            .broadcast_add(&self.token_type_row)?;
        let mut x = self.embed_norm.forward(&x, mode)?;

        // Additive attention bias: 0 for real tokens, a huge negative for padding.
        let needs_mask = input.lengths.iter().any(|&l| l < t);
        let bias = if needs_mask {
            let mut m = vec![0f32; b * t];
            for (row, &len) in input.lengths.iter().enumerate() {
                for v in &mut m[row * t + len..(row + 1) * t] {
                    *v = f32::MIN;
                }
            }
            Some(Tensor::from_vec(m, (b, 1, 1, t), dev)?)
        } else {
            None
        };
        let scale = 1.0 / (dh as f64).sqrt();
        // The compute format of the dense layers and attention products; `to_dtype` is a
        // no-op at float32, so the float32 (and training) graph is unchanged.
        let cd = self.dtype.candle();
        let last = self.layers.len().saturating_sub(1);
        for (li, layer) in self.layers.iter().enumerate() {
            let heads = |y: Tensor, t: usize| -> Result<Tensor> {
                Ok(y.reshape((b, t, nh, dh))?.transpose(1, 2)?.contiguous()?)
            };
            let xc = x.to_dtype(cd)?;
            let k = heads(layer.key.forward(&xc)?, t)?;
            let v = heads(layer.value.forward(&xc)?, t)?;
            // The last layer, pruned: from here on only the read rows, one per sequence.
            let (q, rows_out) = match rows {
                Some(rows) if li == last => {
                    x = gather_rows(&x, rows, t, dev)?;
                    (heads(layer.query.forward(&x.to_dtype(cd)?)?, 1)?, 1)
                }
                _ => (heads(layer.query.forward(&xc)?, t)?, t),
            };
            let mut scores = (q.matmul(&k.t()?)? * scale)?.to_dtype(DType::F32)?;
            if let Some(bias) = &bias {
                scores = scores.broadcast_add(bias)?;
            }
            let probs = softmax_last(&scores, mode)?.to_dtype(cd)?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * rows_out, h))?;
            let attn = layer.attn_norm.forward(
                &layer
                    .attn_out
                    .forward(&ctx)?
                    .to_dtype(DType::F32)?
                    .add(&x)?,
                mode,
            )?;
            let inter = layer
                .intermediate
                .forward(&attn.to_dtype(cd)?)?
                .gelu_erf()?;
            x = layer.out_norm.forward(
                &layer
                    .output
                    .forward(&inter)?
                    .to_dtype(DType::F32)?
                    .add(&attn)?,
                mode,
            )?;
        }
        Ok(x)
    }

    /// Path-independent identity of the weights: sha256 of the safetensors file.
    pub fn weights_sha256(path: &Path) -> Result<String> {
        use sha2::{Digest, Sha256};
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut f, &mut hasher).map_err(|e| Error::io(path, e))?;
        Ok(format!("{:x}", hasher.finalize()))
    }

    /// The checkpoint's tensors that are not parameters here (its pooler, task heads and
    /// buffers), by name and as loaded: [`Encoder::save_safetensors`] writes them unchanged
    /// beside the parameters.
    pub fn kept_tensors(&self) -> &[(String, Tensor)] {
        &self.kept
    }

    /// Saves the parameters ([`Encoder::named_tensors`]) as float32 (or float16 with `half`)
    /// under the prefix the checkpoint had them under, and the [`Encoder::kept_tensors`] as
    /// they were loaded, as safetensors: the checkpoint's names, so that Hugging Face loads
    /// the model in the class its config.json names.
    pub fn save_safetensors(&self, path: &Path, half: bool) -> Result<()> {
        let mut map = HashMap::new();
        for (name, t) in self.named_tensors() {
            let t = if half { t.to_dtype(DType::F16)? } else { t };
            map.insert(format!("{}{name}", self.prefix), t.to_device(&Device::Cpu)?);
        }
        // Not converted: training leaves them as they were, integer buffers are indices
        // rather than weights, and the base's heads stay the base's byte for byte. Their
        // names are none of the parameters' in any spelling (see `kept_from_checkpoint`).
        for (name, t) in &self.kept {
            map.insert(name.clone(), t.to_device(&Device::Cpu)?);
        }
        write_safetensors(&map, path)
    }
}

/// The tensors of a checkpoint left over once the encoder's parameters are read (`left`;
/// `params` names the parameters read, without `prefix`), to be saved with the model
/// unchanged and under their own names (`bert.pooler.dense.weight`, `lm_head.bias`,
/// `cls.predictions.bias`, `classifier.weight`), sorted by name. Left out: another spelling
/// of a parameter (under another of [`PREFIXES`], or an old `LayerNorm.gamma`/`.beta`), a
/// stale copy that loaders could take instead of the trained one; and a name outside the
/// encoder's `prefix` that is also there under it (`pooler.dense.weight` beside
/// `bert.pooler.dense.weight`), which a loader dropping the prefix reads as the same one.
fn kept_from_checkpoint(
    left: HashMap<String, Tensor>,
    prefix: &str,
    params: &HashSet<String>,
) -> Vec<(String, Tensor)> {
    let spelling_of_a_param = |name: &str| {
        PREFIXES.iter().any(|p| {
            let Some(rest) = name.strip_prefix(p) else {
                return false;
            };
            let canonical = match rest.strip_suffix("LayerNorm.gamma") {
                Some(head) => format!("{head}LayerNorm.weight"),
                None => match rest.strip_suffix("LayerNorm.beta") {
                    Some(head) => format!("{head}LayerNorm.bias"),
                    None => rest.to_string(),
                },
            };
            params.contains(&canonical)
        })
    };
    let shadowed = |name: &str| {
        !prefix.is_empty()
            && !name.starts_with(prefix)
            && left.contains_key(&format!("{prefix}{name}"))
    };
    let mut kept: Vec<(String, Tensor)> = left
        .iter()
        .filter(|(name, _)| !spelling_of_a_param(name) && !shadowed(name))
        .map(|(name, t)| (name.clone(), t.clone()))
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    kept
}

/// `tensors` by one name whatever prefix their checkpoint uses: a name under the encoder's
/// `prefix` (`bert.`, `roberta.`, or none) without it, other names as they are; of two
/// names that become one, the one that was under the prefix. Sorted by name. What
/// `relbert average` compares, so that a prefixed base and a model trained from it (by
/// relbert before it kept the prefix, or by a tool that drops it) hold one set of names.
pub(crate) fn without_prefix<T>(
    tensors: impl IntoIterator<Item = (String, T)>,
    prefix: &str,
) -> Vec<(String, T)> {
    // By saved name: whether it came from under the encoder's prefix, and the tensor.
    let mut kept: BTreeMap<String, (bool, T)> = BTreeMap::new();
    for (name, t) in tensors {
        let (saved, own) = match name.strip_prefix(prefix) {
            Some(rest) if !prefix.is_empty() => (rest.to_string(), true),
            _ => (name, false),
        };
        if own || !kept.contains_key(&saved) {
            kept.insert(saved, (own, t));
        }
    }
    kept.into_iter().map(|(n, (_, t))| (n, t)).collect()
}

/// The error of writing `path`: an I/O failure (a full disk, a read-only place) as the
/// [`Error::Io`] naming the file, with the OS message once. candle and safetensors each wrap
/// it in a layer that prints it again (and `tempfile` adds its random name), so the innermost
/// I/O error is dug out rather than the whole chain displayed. The failing file may be
/// safetensors' temporary one beside `path`; `path` is what the user can find.
fn save_error(path: &Path, e: candle_core::Error) -> Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Error::io(path, innermost_io(io));
        }
        cause = c.source();
    }
    Error::Candle(e)
}

/// A copy of `e` without the wrappers around the OS error (its kind and OS message), for
/// messages that name the file themselves and should say the cause once. Wrappers that keep
/// the OS error as a `source` are unwrapped; `tempfile`'s, whose `source` skips it, is read
/// from its text's `(os error N)`, the wording of the standard library's `io::Error` as
/// wrapped by tempfile 3.27 and candle-core 0.11.1 (what this was checked against). Where
/// no code can be found, the full text is kept, so nothing is lost if the wording changes.
pub fn innermost_io(e: &std::io::Error) -> std::io::Error {
    if let Some(code) = e.raw_os_error() {
        return std::io::Error::from_raw_os_error(code);
    }
    let mut cause = e.get_ref().and_then(|inner| inner.source());
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return innermost_io(io);
        }
        cause = c.source();
    }
    // `tempfile` wraps the OS error in a private type whose `source` skips it, and appends
    // its random name; the OS error's own text still says `(os error N)`.
    let text = e.to_string();
    let code = text
        .split_once("(os error ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(n, _)| n.parse::<i32>().ok());
    match code {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), text),
    }
}

/// The first of the `unknown` tensors inside the layers (names starting `layer_prefix`) and
/// the others in words (` (nor is A)`, ` (nor are A and B)`, ` (nor are A, B and 3 more)`),
/// in layer order: by layer number, then name, so that layer 10 comes after layer 2; names
/// without a number come last.
fn unknown_in_layers<'a>(mut unknown: Vec<&'a str>, layer_prefix: &str) -> (&'a str, String) {
    unknown.sort_unstable_by_key(|k| {
        let layer = k
            .strip_prefix(layer_prefix)
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        (layer, *k)
    });
    const NAMED: usize = 3;
    let others = match &unknown[..] {
        [] | [_] => String::new(),
        [_, a] => format!(" (nor is {a})"),
        [_, a, b] => format!(" (nor are {a} and {b})"),
        [_, rest @ ..] => format!(
            " (nor are {} and {} more)",
            rest[..NAMED - 1].join(", "),
            rest.len() - (NAMED - 1)
        ),
    };
    (unknown.first().copied().unwrap_or_default(), others)
}

/// Row `rows[i]` of sequence `i` from `x` (`[batch · seq_len, hidden]`): `[batch, hidden]`.
fn gather_rows(x: &Tensor, rows: &[usize], seq_len: usize, dev: &Device) -> Result<Tensor> {
    let at: Vec<u32> = rows
        .iter()
        .enumerate()
        .map(|(i, &r)| (i * seq_len + r) as u32)
        .collect();
    Ok(x.index_select(&Tensor::from_vec(at, rows.len(), dev)?, 0)?)
}

/// Writes named tensors as a safetensors file readable by other tools (mode 0644).
pub fn write_safetensors(map: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    // With `"format": "pt"` in the header, as transformers writes it: transformers before
    // 4.48 read that field from every file it loads and failed with an AttributeError on a
    // file without metadata (what candle's own `save` writes).
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(map.iter(), Some(metadata), path)
        .map_err(|e| save_error(path, candle_core::Error::from(e)))?;
    // safetensors writes through a private (0600) temporary file; a saved model is meant
    // to be shared and loaded by other tools, so it gets the usual 0644.
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(|e| Error::io(path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // A failure to write a model names the file being written, with the OS message once
    // (it was `tensor computation failed: I/O error: …: I/O error: …`, naming no file).
    #[test]
    fn a_failed_save_names_the_file_and_says_the_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone/model.safetensors");
        let mut map = HashMap::new();
        map.insert(
            "w".to_string(),
            Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
        );
        let err = write_safetensors(&map, &path).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        let msg = err.to_string();
        let os = std::io::Error::from_raw_os_error(libc::ENOENT).to_string();
        assert_eq!(msg, format!("{}: {os}", path.display()));
    }

    // The unknown tensors were listed "(nor are A, B)" and in string order, layer 10 before
    // layer 2.
    #[test]
    fn unknown_layer_tensors_are_listed_in_layer_order_in_words() {
        let p = "encoder.layer.";
        let names = |v: &[&str]| v.iter().map(|n| format!("{p}{n}")).collect::<Vec<_>>();
        let list = |v: &[String]| {
            let (first, others) = unknown_in_layers(v.iter().map(|s| s.as_str()).collect(), p);
            (first.to_string(), others)
        };
        let v = names(&["10.w", "2.w", "x.w", "2.b"]);
        assert_eq!(
            list(&v),
            (
                "encoder.layer.2.b".to_string(),
                " (nor are encoder.layer.2.w, encoder.layer.10.w and 1 more)".to_string()
            )
        );
        let v = names(&["10.w", "2.w", "2.b"]);
        assert_eq!(
            list(&v).1,
            " (nor are encoder.layer.2.w and encoder.layer.10.w)"
        );
        assert_eq!(
            list(&names(&["1.a", "0.a"])).1,
            " (nor is encoder.layer.1.a)"
        );
        assert_eq!(
            list(&names(&["1.a"])),
            ("encoder.layer.1.a".to_string(), String::new())
        );
    }

    // Every tensor of a checkpoint but the parameters is kept for saving, under its own
    // name (as the parameters are saved under the checkpoint's prefix); a stale other
    // spelling of a parameter is not, since a loader could take it instead of the trained
    // one, nor an unprefixed copy of a prefixed tensor.
    #[test]
    fn the_tensors_kept_are_all_but_the_parameters_and_their_other_spellings() {
        let t = |v: f32| Tensor::new(&[v], &Device::Cpu).unwrap();
        let left: HashMap<String, Tensor> = [
            ("bert.pooler.dense.weight", t(1.0)),
            ("pooler.dense.weight", t(2.0)),
            ("bert.embeddings.position_ids", t(3.0)),
            ("cls.predictions.bias", t(4.0)),
            ("roberta.embeddings.word_embeddings.weight", t(5.0)),
            ("bert.embeddings.LayerNorm.gamma", t(6.0)),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
        let params: HashSet<String> = [
            "embeddings.word_embeddings.weight",
            "embeddings.LayerNorm.weight",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let kept: Vec<(String, f32)> = kept_from_checkpoint(left, "bert.", &params)
            .into_iter()
            .map(|(n, t)| (n, t.to_vec1::<f32>().unwrap()[0]))
            .collect();
        let want = [
            ("bert.embeddings.position_ids", 3.0),
            ("bert.pooler.dense.weight", 1.0),
            ("cls.predictions.bias", 4.0),
        ]
        .map(|(n, v)| (n.to_string(), v));
        assert_eq!(kept, want);
    }

    // `tempfile` hides the OS error from `source` and adds its random name; the code is read
    // from the text, and a text without one is kept whole.
    #[test]
    fn the_innermost_io_error_is_dug_out_of_tempfiles_wrapper() {
        let dir = tempfile::tempdir().unwrap();
        let e = tempfile::Builder::new()
            .tempfile_in(dir.path().join("gone"))
            .unwrap_err();
        assert!(e.raw_os_error().is_none(), "{e}");
        let inner = innermost_io(&e);
        assert_eq!(inner.raw_os_error(), Some(libc::ENOENT), "{inner}");
        let plain = std::io::Error::other("no code here");
        assert_eq!(innermost_io(&plain).to_string(), "no code here");
    }
}
