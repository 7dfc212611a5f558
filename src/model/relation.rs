//! The one function everything stands on: a word pair in, a relation vector out.
//!
//! [`RelationEncoder`] ties a model directory's encoder, tokenizer, prompt template and
//! aggregation mode together, embeds each distinct pair once, batches prompts by length and
//! returns either the reference's raw sums or unit vectors. A model whose
//! `relbert_config.offset_weight` is set gets relbert's extension instead: the prompt vector
//! combined with the word-vector offset of the same encoder, so that every command (embed,
//! index, query, bench, classify) uses one pair function.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::batching::{length_sorted_batches, make_batch, PromptTokenizer, Tokenized};
use crate::config::{Architecture, ModelConfig, ModelFiles, RelbertConfig};
use crate::encoder::{Encoder, Mode};
use crate::error::{Error, Result};
use crate::pooling::{normalize_in_place, pool_sum, Aggregation};
use crate::precision::Dtype;
use crate::prompt::Template;

/// How to load a [`RelationEncoder`]; `None` fields fall back to the checkpoint's
/// `relbert_config`, then to the reference defaults.
#[derive(Debug, Clone)]
pub struct EncoderOptions {
    /// Prompt template override.
    pub template: Option<String>,
    /// Aggregation override.
    pub aggregation: Option<Aggregation>,
    /// Prompts per forward pass.
    pub batch_size: usize,
    /// Where the model runs.
    pub device: Device,
    /// Load every parameter as a trainable `Var`.
    pub trainable: bool,
    /// Offset-weight override (see [`RelbertConfig::offset_weight`]); `Some(0.0)` gives the
    /// prompt vectors alone whatever the checkpoint says.
    pub offset_weight: Option<f32>,
    /// Number format of the dense layers (inference only; see [`crate::precision`]).
    pub dtype: Dtype,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            template: None,
            aggregation: None,
            batch_size: 64,
            device: Device::Cpu,
            trainable: false,
            offset_weight: None,
            dtype: Dtype::F32,
        }
    }
}

/// What identifies the function a vector came from: same identity, same vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderIdentity {
    /// The model directory as given.
    pub model: String,
    /// sha256 of `model.safetensors`.
    pub weights_sha256: String,
    /// The prompt template.
    pub template: String,
    /// The aggregation mode's name.
    pub aggregation: String,
    /// The offset weight when the pair vectors combine the prompt vector with the word-vector
    /// offset; absent for the prompt vectors alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_weight: Option<f32>,
    /// The number format the vectors were computed at; absent for float32.
    #[serde(default, skip_serializing_if = "Dtype::is_f32")]
    pub dtype: Dtype,
    /// The digest of the tokenizer and config values that decide the vectors besides the
    /// weights ([`crate::config::function_files_digest`]); absent where it was not computed
    /// (identities recorded before it existed compare without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_digest: Option<String>,
}

/// The settings that turn encoder states into a pair's vector: prompt template, aggregation
/// and offset weight, as a checkpoint's `relbert_config` and the caller's overrides give them.
#[derive(Debug, Clone)]
pub struct PairFunction {
    /// The prompt template.
    pub template: Template,
    /// The aggregation mode.
    pub aggregation: Aggregation,
    /// In (0, 1] when pair vectors are combined with the word-vector offset.
    pub offset_weight: Option<f32>,
}

impl PairFunction {
    /// Resolves the overrides in `opts`, then `config`'s `relbert_config`, then the reference
    /// defaults. `config_path` names the file in errors.
    pub fn resolve(
        config: &ModelConfig,
        config_path: &Path,
        opts: &EncoderOptions,
    ) -> Result<Self> {
        let template = match (opts.template.as_deref(), config.relbert.template.as_deref()) {
            (Some(t), _) => Template::new(t)?,
            // From the file: say which file (tests/fuzz_parsers.rs).
            (None, Some(t)) => Template::new(t).map_err(|e| Error::Config {
                path: config_path.to_path_buf(),
                message: match &config.relbert.template_letter {
                    Some(letter) => letter.unsupported(t),
                    None => format!("relbert_config.template: {e}"),
                },
            })?,
            (None, None) => Template::default(),
        };
        let aggregation = match (opts.aggregation, &config.relbert.aggregation_mode) {
            (Some(a), _) => a,
            (None, Some(name)) => name.parse().map_err(|_| Error::Config {
                path: config_path.to_path_buf(),
                message: format!(
                    "relbert_config.aggregation_mode (or its older name mode) {name:?} is not a \
                     known mode; relbert computes average_no_mask, mask and average"
                ),
            })?,
            (None, None) => Aggregation::default(),
        };
        let offset_weight = match (opts.offset_weight, config.relbert.offset_weight) {
            (Some(w), _) if !(0.0..=1.0).contains(&w) => {
                return Err(Error::InvalidArgument {
                    flag: "--offset-weight".into(),
                    message: format!("{w} is outside [0, 1]"),
                })
            }
            (Some(w), _) => w,
            (None, Some(w)) if !(0.0..=1.0).contains(&w) => {
                return Err(Error::Config {
                    path: config_path.to_path_buf(),
                    message: format!("relbert_config.offset_weight {w} is outside [0, 1]"),
                })
            }
            (None, w) => w.unwrap_or(0.0),
        };
        Ok(PairFunction {
            template,
            aggregation,
            // Weight 0 is the prompt vector alone: keep its width and identity unchanged.
            offset_weight: (offset_weight > 0.0).then_some(offset_weight),
        })
    }

    /// The pair function a model directory's `config.json` describes, without its weights.
    pub fn of_model(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let config = ModelConfig::from_file(&path)?;
        Self::resolve(&config, &path, &EncoderOptions::default())
    }

    /// The identity of this function applied to weights whose sha256 is `weights_sha256`,
    /// at float32 (a loaded encoder sets its own [`EncoderIdentity::dtype`]).
    pub fn identity(&self, model: String, weights_sha256: String) -> EncoderIdentity {
        EncoderIdentity {
            model,
            weights_sha256,
            template: self.template.as_str().to_string(),
            aggregation: self.aggregation.name().to_string(),
            offset_weight: self.offset_weight,
            dtype: Dtype::F32,
            files_digest: None,
        }
    }
}

/// Unit word vectors by word ([`RelationEncoder::embed_words`]), kept across calls of
/// [`RelationEncoder::embed_with_words`].
pub type WordVectors = HashMap<String, Vec<f32>>;

/// Refuses a tokenizer the model cannot take every output of: one whose ids (added tokens
/// included) reach past the word-embedding table, whose missing rows were otherwise read as
/// the last one (different words, the same vector), or a position table too short for the
/// tokenizer's special tokens and one word (tokenizers then leaves the ids uncut, past the
/// table). Checked against the config, before the weights are read: the encoder refuses
/// tables whose sizes differ from the config's.
fn check_tokenizer_fits(
    config: &ModelConfig,
    files: &ModelFiles,
    tokenizer: &PromptTokenizer,
) -> Result<()> {
    let ids = tokenizer.id_count();
    if ids > config.vocab_size {
        return Err(Error::Tokenizer {
            path: files.tokenizer.clone(),
            message: format!(
                "it gives token ids up to {} ({ids} ids, added tokens included), but {} has \
                 vocab_size {}, the rows of the word-embedding table: ids from {} on have no \
                 embedding. Tokens were added to the tokenizer without resizing the model's \
                 embeddings; in transformers, call model.resize_token_embeddings(len(tokenizer)) \
                 and save the model again, or use the tokenizer the model was saved with",
                ids - 1,
                files.config.display(),
                config.vocab_size,
                config.vocab_size,
            ),
        });
    }
    let (limit, special) = (tokenizer.max_length(), tokenizer.special_tokens());
    if limit <= special {
        let numbering = match config.architecture {
            Architecture::Bert => String::new(),
            Architecture::Roberta => format!(
                " (RoBERTa numbers positions from pad_token_id + 1 = {})",
                config.pad_token_id as u64 + 1
            ),
        };
        return Err(Error::Config {
            path: files.config.clone(),
            message: format!(
                "max_position_embeddings {} leaves room for {limit} token{}{numbering}, too \
                 few for any prompt: the tokenizer adds {special} special tokens, and a prompt \
                 needs at least one more; relbert's prompts take up to {} tokens",
                config.max_position_embeddings,
                if limit == 1 { "" } else { "s" },
                crate::batching::MAX_LENGTH,
            ),
        });
    }
    Ok(())
}

/// A model file as [`RelationEncoder::load`] found it before reading it: its device, inode,
/// size and modification time. A file replaced by a rename (a training run saving its best
/// checkpoint atomically, rsync) is another inode; one rewritten in place has another size or
/// time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    /// The device holding the file.
    dev: u64,
    /// Its inode.
    ino: u64,
    /// Its size in bytes.
    len: u64,
    /// Its modification time, in nanoseconds since the epoch.
    mtime_ns: i128,
}

/// The stamp of the file `path` names now (links followed), `None` where there is none to
/// see: an absent optional file (`special_tokens_map.json`), and one that appears later
/// differs from it.
fn stamp_of(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

/// The stamps of every file of `dir` the identity reads again after the load
/// ([`crate::config::function_files_digest`] reads the tokenizer's pad token from
/// `tokenizer_config.json` or `special_tokens_map.json` too), taken before any is read.
/// Not `config.json`: the identity digests the configuration the encoder holds, so a file
/// rewritten after the load (an offset weight written into `relbert_config`) changes nothing
/// it records, and refusing it would refuse a true identity (found by a review).
fn stamp_model_files(dir: &Path, files: &ModelFiles) -> Vec<(PathBuf, Option<FileStamp>)> {
    [
        files.weights.clone(),
        files.tokenizer.clone(),
        dir.join("tokenizer_config.json"),
        dir.join("special_tokens_map.json"),
    ]
    .into_iter()
    .map(|path| {
        let stamp = stamp_of(&path);
        (path, stamp)
    })
    .collect()
}

/// What [`RelationEncoder::identity`] hashes from the files, computed once per encoder.
#[derive(Debug, Clone)]
struct FileHashes {
    /// sha256 of `model.safetensors`.
    weights_sha256: String,
    /// [`crate::config::function_files_digest`] of the tokenizer and config.
    files_digest: String,
}

/// A loaded model ready to turn word pairs into relation vectors.
pub struct RelationEncoder {
    encoder: Encoder,
    tokenizer: PromptTokenizer,
    function: PairFunction,
    batch_size: usize,
    files: ModelFiles,
    dir: PathBuf,
    /// The model files as they were before [`Self::load`] read them: the identity hashes
    /// the files again, and must hash the ones the vectors come from.
    stamps: Vec<(PathBuf, Option<FileStamp>)>,
    /// The hashes of the identity, once computed: the files are read (hundreds of MB)
    /// once per process, and every later identity is the one first checked.
    hashes: OnceLock<FileHashes>,
}

impl RelationEncoder {
    /// Loads a Hugging Face-format model directory.
    pub fn load(dir: &Path, opts: &EncoderOptions) -> Result<Self> {
        let files = ModelFiles::in_dir(dir)?;
        // Before any file is read: the identity is computed from the files later, and must
        // be refused if they are no longer the ones read here (see `Self::hashes`).
        let stamps = stamp_model_files(dir, &files);
        let config = ModelConfig::from_file(&files.config)?;
        let function = PairFunction::resolve(&config, &files.config, opts)?;
        if opts.batch_size == 0 {
            return Err(Error::InvalidArgument {
                flag: "--batch-size".into(),
                message: "must be at least 1".into(),
            });
        }
        let tokenizer =
            PromptTokenizer::from_file(&files.tokenizer, &config, config.max_sequence_len())?;
        // Before the weights, which may be gigabytes: the check needs only the config and
        // the tokenizer, and the loader refuses tables whose sizes differ from the config's.
        check_tokenizer_fits(&config, &files, &tokenizer)?;
        crate::config::warn_on_tokenizer_disagreement(&config, &files.tokenizer);
        let encoder = Encoder::load_at(
            &config,
            &files.weights,
            &opts.device,
            opts.trainable,
            opts.dtype,
        )?;
        Ok(RelationEncoder {
            encoder,
            tokenizer,
            function,
            batch_size: opts.batch_size,
            files,
            dir: dir.to_path_buf(),
            stamps,
            hashes: OnceLock::new(),
        })
    }

    /// A frozen copy of this encoder with its current parameters (on the CPU it takes the
    /// fast inference path). Validation during training uses it.
    pub fn frozen_copy(&self) -> Result<Self> {
        let tensors = self
            .encoder
            .named_tensors()
            .into_iter()
            .map(|(n, t)| Ok((n, t.copy()?)))
            .collect::<Result<HashMap<_, _>>>()?;
        let encoder = Encoder::from_tensors_at(
            self.encoder.config(),
            tensors,
            &self.files.weights,
            self.encoder.device(),
            false,
            self.encoder.dtype(),
        )?;
        Ok(RelationEncoder {
            encoder,
            tokenizer: self.tokenizer.clone(),
            function: self.function.clone(),
            batch_size: self.batch_size,
            files: self.files.clone(),
            dir: self.dir.clone(),
            // The files it came from, as the original's identity names them.
            stamps: self.stamps.clone(),
            hashes: self.hashes.clone(),
        })
    }

    /// The transformer underneath.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The prompt tokenizer.
    pub fn tokenizer(&self) -> &PromptTokenizer {
        &self.tokenizer
    }

    /// The most tokens a prompt may have ([`PromptTokenizer::max_length`]): 64, or fewer
    /// where the model's position table is shorter. Refusals of long prompts state it.
    pub fn max_tokens(&self) -> usize {
        self.tokenizer.max_length()
    }

    /// The prompt template in use.
    pub fn template(&self) -> &Template {
        &self.function.template
    }

    /// The aggregation mode in use.
    pub fn aggregation(&self) -> Aggregation {
        self.function.aggregation
    }

    /// The model's files.
    pub fn files(&self) -> &ModelFiles {
        &self.files
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The offset weight of the pair vectors, `None` for the prompt vectors alone.
    pub fn offset_weight(&self) -> Option<f32> {
        self.function.offset_weight
    }

    /// Width of the pair vectors: the hidden width, twice that with an offset weight.
    pub fn dim(&self) -> usize {
        let h = self.encoder.config().hidden_size;
        if self.function.offset_weight.is_some() {
            2 * h
        } else {
            h
        }
    }

    /// The `relbert_config` block describing this encoder's pair function.
    pub fn relbert_config(&self) -> RelbertConfig {
        RelbertConfig {
            template: Some(self.function.template.as_str().to_string()),
            aggregation_mode: Some(self.function.aggregation.name().to_string()),
            offset_weight: self.function.offset_weight,
            template_letter: None,
        }
    }

    /// The identity of this encoding function (hashes the weights file, and digests the
    /// tokenizer and config: [`crate::config::function_files_digest`]). The model is named
    /// by its absolute path, so an index built from it finds it from any working directory.
    ///
    /// The files are hashed on the first call only, and refused (an error that says to run
    /// again) when they are no longer the ones [`Self::load`] read: replaced by a rename or
    /// rewritten since: their identity would not be the loaded model's.
    ///
    /// The path is rendered lossily: this identity is compared (query, index add, serve)
    /// or reported (bench), where a folder whose name is not UTF-8 still works. Where the
    /// path is written into an index or collection, use [`Self::identity_for_record`].
    pub fn identity(&self) -> Result<EncoderIdentity> {
        let dir = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        self.identity_named(dir.display().to_string())
    }

    /// [`Self::identity`] for an identity that is recorded (a new index, a Qdrant
    /// collection): refuses a model folder whose path is not UTF-8.
    pub fn identity_for_record(&self) -> Result<EncoderIdentity> {
        let dir = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        // The record carries the path as text: a lossy rendering of a name that is not
        // UTF-8 names no folder, and an index built with it said later that the model "is
        // not there" while it was. Refused here, before an index is made.
        let Some(model) = dir.to_str() else {
            return Err(Error::io(
                &dir,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the model folder's path is not valid UTF-8; an index records its model's \
                     path as text, and could not find this folder again. Rename or move the \
                     model to a UTF-8 path (a link is not enough: the real path is recorded)",
                ),
            ));
        };
        self.identity_named(model.to_string())
    }

    /// The identity, with the model named `model`.
    fn identity_named(&self, model: String) -> Result<EncoderIdentity> {
        let hashes = self.hashes()?;
        Ok(EncoderIdentity {
            dtype: self.encoder.dtype(),
            files_digest: Some(hashes.files_digest.clone()),
            ..self.function.identity(model, hashes.weights_sha256.clone())
        })
    }

    /// The hashes of the model files this encoder loaded, computed on the first call. The
    /// files are read again to hash them (candle read the weights once, and keeps no hash):
    /// files replaced meanwhile (a training run saving its best checkpoint in their place,
    /// an `index build` screening its input between loading and hashing) would give the new
    /// model's identity to the old one's vectors, and every later check would then accept
    /// the new model for them. So the files must still be the ones [`Self::load`] found,
    /// before and after hashing; otherwise an error says to run again.
    fn hashes(&self) -> Result<&FileHashes> {
        if let Some(hashes) = self.hashes.get() {
            return Ok(hashes);
        }
        self.check_files_unchanged()?;
        let hashes = FileHashes {
            weights_sha256: Encoder::weights_sha256(&self.files.weights)?,
            files_digest: crate::config::function_files_digest(
                self.encoder.config(),
                &self.files.tokenizer,
            )?,
        };
        // After too: a file replaced while it was hashed was maybe hashed new.
        self.check_files_unchanged()?;
        // Another thread may have set it meanwhile, from the same checked files.
        Ok(self.hashes.get_or_init(|| hashes))
    }

    /// Refuses model files that are not the ones [`Self::load`] found (see [`Self::hashes`]).
    fn check_files_unchanged(&self) -> Result<()> {
        for (path, loaded) in &self.stamps {
            if stamp_of(path) != *loaded {
                return Err(Error::io(
                    path,
                    std::io::Error::other(format!(
                        "the model files in {} changed while relbert was loading them (this \
                         file is no longer the one read, replaced or rewritten since); its \
                         identity would not be the loaded model's. Run again (once the files \
                         stay unchanged, e.g. after a training run into that folder ends)",
                        self.dir.display()
                    )),
                ));
            }
        }
        Ok(())
    }

    /// The number format of the dense layers.
    pub fn dtype(&self) -> Dtype {
        self.encoder.dtype()
    }

    /// Whether truncating the prompt of (head, tail) cuts into the words themselves: the
    /// template up to the first place of both words ([`Template::through_both_words`]) does
    /// not fit the token limit.
    fn cuts_words(&self, head: &str, tail: &str) -> Result<bool> {
        let text =
            self.function
                .template
                .fill_through_both_words(head, tail, self.tokenizer.mask_token());
        Ok(self.tokenizer.encode_text(&text)?.truncated)
    }

    /// Whether a tokenised prompt lost what its vector needs: part of a word, or with `mask`
    /// aggregation the mask token (a truncated prompt that keeps both words and the mask
    /// loses only template text, as the reference's truncation does).
    fn lost(&self, t: &Tokenized, head: &str, tail: &str) -> Result<bool> {
        if self.function.aggregation == Aggregation::Mask
            && !t.ids.contains(&self.tokenizer.mask_id())
        {
            return Ok(true);
        }
        Ok(t.truncated && self.cuts_words(head, tail)?)
    }

    /// Tokenises pairs in parallel, failing on the first prompt that truncation would
    /// spoil: with `mask` aggregation one that lost its mask token, otherwise one cut inside
    /// its words, so that two pairs differing only in what was cut would get the same vector.
    /// The reference truncates silently; a prompt cut only in template text is still
    /// truncated as it does. Callers screen their input with [`Self::overlong`] first to
    /// report such a pair with its line, or leave it out (`--skip-long`).
    pub fn tokenize<S: AsRef<str> + Sync>(&self, pairs: &[(S, S)]) -> Result<Vec<Tokenized>> {
        let toks = self
            .tokenizer
            .encode_pairs(&self.function.template, pairs)?;
        let mut spoiled = None;
        for (i, t) in toks.iter().enumerate() {
            if self.lost(t, pairs[i].0.as_ref(), pairs[i].1.as_ref())? {
                spoiled = Some(i);
                break;
            }
        }
        if let Some(i) = spoiled {
            return Err(Error::PromptTooLong {
                // Its place in the caller's batch means nothing to the user; the pair is named.
                location: "encoding".into(),
                hint: "",
                head: pairs[i].0.as_ref().to_string(),
                tail: pairs[i].1.as_ref().to_string(),
                limit: self.max_tokens(),
            });
        }
        Ok(toks)
    }

    /// The positions of the pairs this encoder cannot encode: those whose prompt truncation
    /// would spoil (see [`Self::tokenize`]). Callers screen their input with it before
    /// encoding, so a bad pair is reported with its line, before any work is spent.
    ///
    /// Cheap: a token covers at least one byte, so only pairs whose words are long enough in
    /// bytes to reach the limit (in every place the template puts them) are tokenised.
    pub fn overlong<S: AsRef<str> + Sync>(&self, pairs: &[(S, S)]) -> Result<Vec<usize>> {
        Ok(self.screen_prompts(pairs)?.0)
    }

    /// [`Self::overlong`]'s pairs, and the positions of the pairs it accepts whose prompt
    /// truncation cuts the mask token away: with `average_no_mask` or `average` pooling,
    /// which the reference encodes as cut (only its `mask` pooling asserts that the mask is
    /// there), and which is encoded so here too; the caller warns of them. None with `mask`
    /// pooling, which refuses such a prompt ([`Self::overlong`]'s). Tokenises what
    /// [`Self::overlong`] does, once.
    pub fn screen_prompts<S: AsRef<str> + Sync>(
        &self,
        pairs: &[(S, S)],
    ) -> Result<(Vec<usize>, Vec<usize>)> {
        let fixed = self
            .tokenizer
            .encode_pairs(&self.function.template, &[("a", "b")])?
            .first()
            .map(|t| t.ids.len().saturating_sub(2))
            .unwrap_or(0);
        let template = self.function.template.as_str();
        let places = template
            .matches("<subj>")
            .count()
            .max(template.matches("<obj>").count())
            .max(1);
        // The model's own limit: screening at 64 for a model whose position table is shorter
        // let its long pairs through to the encoding, unlocated and past --skip-long.
        let limit = self.max_tokens();
        let suspects: Vec<usize> = (0..pairs.len())
            .filter(|&i| {
                let (h, t) = (pairs[i].0.as_ref(), pairs[i].1.as_ref());
                fixed + places * (h.len() + t.len()) + 4 > limit
            })
            .collect();
        if suspects.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let sub: Vec<(&str, &str)> = suspects
            .iter()
            .map(|&i| (pairs[i].0.as_ref(), pairs[i].1.as_ref()))
            .collect();
        let toks = self.tokenizer.encode_pairs(&self.function.template, &sub)?;
        let (mut out, mut mask_cut) = (Vec::new(), Vec::new());
        let mask = self.tokenizer.mask_id();
        for ((i, t), (h, tail)) in suspects.into_iter().zip(toks).zip(sub) {
            if self.lost(&t, h, tail)? {
                out.push(i);
            } else if t.truncated && !t.ids.contains(&mask) {
                mask_cut.push(i);
            }
        }
        Ok((out, mask_cut))
    }

    /// Encodes token sequences (one batch, in the given order) and returns the pooled raw
    /// sums `[n, dim]`. In [`Mode::Train`] the result carries gradients.
    pub fn forward_pooled(&self, seqs: &[&[u32]], mode: Mode) -> Result<Tensor> {
        self.forward_pooled_with(seqs, self.function.aggregation, mode)
    }

    /// [`Self::forward_pooled`] with an explicit aggregation instead of the encoder's own.
    fn forward_pooled_with(
        &self,
        seqs: &[&[u32]],
        aggregation: Aggregation,
        mode: Mode,
    ) -> Result<Tensor> {
        let batch = make_batch(
            seqs,
            self.tokenizer.pad_id(),
            self.tokenizer.mask_id(),
            aggregation,
            |ids, t| self.encoder.position_ids(ids, t),
        );
        // One pooled position per sequence (mask pooling): the last layer computes only
        // those rows. Training keeps the plain graph.
        if mode == Mode::Inference {
            if let Some(rows) = batch.single_rows() {
                return self.encoder.forward_rows(&batch.input, mode, &rows);
            }
        }
        let hidden = self.encoder.forward(&batch.input, mode)?;
        let weights = Tensor::from_vec(
            batch.pool_weights,
            (batch.input.batch, batch.input.seq_len),
            self.encoder.device(),
        )?;
        pool_sum(&hidden, &weights)
    }

    /// The pair vectors, in input order: the reference's raw relation vectors (sums over the
    /// pooled tokens), or, with an offset weight, their unit-length combination with the
    /// word-vector offset ([`crate::analogy::combine`]; there is no raw form of it). Each
    /// distinct pair is encoded once; `progress` is told how many pairs are done.
    pub fn embed_raw_with_progress<S: AsRef<str> + Sync>(
        &self,
        pairs: &[(S, S)],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<Vec<f32>>> {
        self.embed_with_words(pairs, progress, &mut WordVectors::new())
    }

    /// [`Self::embed_raw_with_progress`], with the word vectors of the offset part looked up
    /// in, and added to, `words`: a caller embedding a stream of chunks (an index build) thus
    /// encodes each word once. Without an offset weight `words` is not touched.
    pub fn embed_with_words<S: AsRef<str> + Sync>(
        &self,
        pairs: &[(S, S)],
        progress: &(dyn Fn(usize) + Sync),
        words: &mut WordVectors,
    ) -> Result<Vec<Vec<f32>>> {
        match self.function.offset_weight {
            Some(w) => self.combined(pairs, w, progress, words),
            None => self.prompt_vectors_with_progress(pairs, progress),
        }
    }

    /// The prompt vectors combined with the word-vector offsets at `offset_weight`
    /// ([`crate::analogy::combine`]), whatever this model's own weight: what a model whose
    /// `relbert_config.offset_weight` were `offset_weight` would give (`bench analogy
    /// --method combined`).
    pub fn embed_combined_with_progress<S: AsRef<str> + Sync>(
        &self,
        pairs: &[(S, S)],
        offset_weight: f32,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<Vec<f32>>> {
        self.combined(pairs, offset_weight, progress, &mut WordVectors::new())
    }

    /// The one implementation of combined pair vectors; `words` caches word vectors across
    /// calls.
    fn combined<S: AsRef<str> + Sync>(
        &self,
        pairs: &[(S, S)],
        w: f32,
        progress: &(dyn Fn(usize) + Sync),
        words: &mut WordVectors,
    ) -> Result<Vec<Vec<f32>>> {
        let mut missing: Vec<&str> = pairs
            .iter()
            .flat_map(|(h, t)| [h.as_ref(), t.as_ref()])
            .filter(|word| !words.contains_key(*word))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        // On the CPU side by side: a single query's prompt and its two short words each take
        // a core. On a GPU one after the other from this thread: both passes go to the
        // device's one stream, in order, and the second host thread would only wait.
        let (prompt, fresh) = if self.encoder.device().is_cpu() {
            rayon::join(
                || self.prompt_vectors_with_progress(pairs, progress),
                || self.embed_words(&missing),
            )
        } else {
            (
                self.prompt_vectors_with_progress(pairs, progress),
                self.embed_words(&missing),
            )
        };
        let (prompt, fresh) = (prompt?, fresh?);
        words.extend(missing.into_iter().map(str::to_string).zip(fresh));
        prompt
            .iter()
            .zip(pairs)
            .map(|(r, (h, t))| {
                let (Some(h), Some(t)) = (words.get(h.as_ref()), words.get(t.as_ref())) else {
                    return Err(Error::Internal("a word vector went missing".into()));
                };
                Ok(crate::analogy::combine(r, &crate::analogy::offset(h, t), w))
            })
            .collect()
    }

    /// Unit word-vector offsets `e(tail) − e(head)` ([`crate::analogy::offset`] over
    /// [`Self::embed_words`]), in input order.
    pub fn offsets<S: AsRef<str> + Sync>(&self, pairs: &[(S, S)]) -> Result<Vec<Vec<f32>>> {
        self.offsets_with_progress(pairs, &|_| {})
    }

    /// [`Self::offsets`], telling `progress` how many pairs are done, as the other pair
    /// vectors' functions do (`bench analogy --method offset` showed 0 pairs done to the end).
    /// The work is encoding distinct words, not pairs, so the count is the share of distinct
    /// words encoded, in pairs; the last report is every pair.
    pub fn offsets_with_progress<S: AsRef<str> + Sync>(
        &self,
        pairs: &[(S, S)],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<Vec<f32>>> {
        let words: Vec<&str> = pairs
            .iter()
            .flat_map(|(h, t)| [h.as_ref(), t.as_ref()])
            .collect();
        let wv = self.words_with_progress(&words, &|done, distinct| {
            progress(done * pairs.len() / distinct.max(1))
        })?;
        progress(pairs.len());
        Ok(wv
            .chunks(2)
            .map(|ht| crate::analogy::offset(&ht[0], &ht[1]))
            .collect())
    }

    /// The reference's raw prompt vectors alone, whatever the offset weight, in input order.
    /// Each distinct pair is encoded once; `progress` is told how many pairs are done.
    pub fn prompt_vectors_with_progress<S: AsRef<str> + Sync>(
        &self,
        pairs: &[(S, S)],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<Vec<f32>>> {
        let mut distinct: Vec<(&str, &str)> = Vec::new();
        let mut slot: HashMap<(&str, &str), usize> = HashMap::new();
        let index: Vec<usize> = pairs
            .iter()
            .map(|(h, t)| {
                let key = (h.as_ref(), t.as_ref());
                *slot.entry(key).or_insert_with(|| {
                    distinct.push(key);
                    distinct.len() - 1
                })
            })
            .collect();
        let toks = self.tokenize(&distinct)?;
        let name = |i: usize| format!("the pair ({}, {})", distinct[i].0, distinct[i].1);
        let vectors = self.pool_all(&toks, self.function.aggregation, progress, &name)?;
        Ok(index.into_iter().map(|i| vectors[i].clone()).collect())
    }

    /// Encodes tokenised sequences in length-sorted batches and returns each one's pooled
    /// raw sum under `aggregation`, in input order. `name` says what input `i` is (a pair, a
    /// word), for the error on a vector that cannot be used.
    fn pool_all(
        &self,
        toks: &[Tokenized],
        aggregation: Aggregation,
        progress: &(dyn Fn(usize) + Sync),
        name: &(dyn Fn(usize) -> String + Sync),
    ) -> Result<Vec<Vec<f32>>> {
        let lengths: Vec<usize> = toks.iter().map(|t| t.ids.len()).collect();
        let mut vectors = vec![Vec::new(); toks.len()];
        let batches = length_sorted_batches(&lengths, self.batch_size);
        let mut done = 0;
        if let Some(cpu) = self.encoder.cpu_model() {
            // One batch per thread at a time, single-threaded kernels inside: no barriers.
            let (mask, pad) = (self.tokenizer.mask_id(), self.tokenizer.pad_id());
            let group = rayon::current_num_threads().max(1) * 2;
            for wave in batches.chunks(group) {
                let pooled: Vec<Vec<Vec<f32>>> = wave
                    .par_iter()
                    .map(|batch| {
                        let seqs: Vec<&[u32]> =
                            batch.iter().map(|&i| toks[i].ids.as_slice()).collect();
                        let positions: Vec<Vec<u32>> = seqs
                            .iter()
                            .map(|s| self.encoder.position_ids(s, s.len()))
                            .collect();
                        let pool: Vec<Vec<bool>> = seqs
                            .iter()
                            .map(|s| {
                                (0..s.len())
                                    .map(|t| aggregation.selects(s, t, mask, pad))
                                    .collect()
                            })
                            .collect();
                        cpu.forward_pooled(&seqs, &positions, &pool)
                    })
                    .collect::<Result<_>>()?;
                for (batch, vs) in wave.iter().zip(pooled) {
                    self.check_usable(batch, &vs, name)?;
                    for (&i, v) in batch.iter().zip(vs) {
                        vectors[i] = v;
                    }
                    done += batch.len();
                }
                progress(done);
            }
        } else {
            for batch in batches {
                let seqs: Vec<&[u32]> = batch.iter().map(|&i| toks[i].ids.as_slice()).collect();
                let pooled = self
                    .forward_pooled_with(&seqs, aggregation, Mode::Inference)?
                    .to_device(&Device::Cpu)?
                    .to_vec2::<f32>()?;
                self.check_usable(&batch, &pooled, name)?;
                for (&i, v) in batch.iter().zip(pooled) {
                    vectors[i] = v;
                }
                done += batch.len();
                progress(done);
            }
        }
        Ok(vectors)
    }

    /// Refuses vectors that cannot be used. NaN or infinity: a model with one broken weight
    /// (or a config value such as a zero `layer_norm_eps` on a constant row) turns every
    /// vector it touches into NaN, which cosine and argmax then score as if it were a vector
    /// (an analogy benchmark picks choice 0 every time, `embed` writes `null`). All zeros, or
    /// a length that underflows to 0 or overflows in f32: such a vector cannot be scaled to
    /// unit length, and was written as a "unit" vector of zeros (a model whose last LayerNorm
    /// weights are zero gives nothing else). `batch` holds the input indices of `vectors`,
    /// which `name` describes. A pass over the output, small beside the encoder's work.
    fn check_usable(
        &self,
        batch: &[usize],
        vectors: &[Vec<f32>],
        name: &(dyn Fn(usize) -> String + Sync),
    ) -> Result<()> {
        // Only non-finite values can come from an overflow of f16/bf16; a zero vector
        // does not, and a hint to try f32 would send the user the wrong way.
        let precision_hint = if self.dtype() == Dtype::F32 {
            String::new()
        } else {
            format!(
                ", or its activations overflow --dtype {} (try --dtype f32)",
                self.dtype()
            )
        };
        for (&i, v) in batch.iter().zip(vectors) {
            if !v.iter().all(|x| x.is_finite()) {
                return Err(Error::Config {
                    path: self.dir().to_path_buf(),
                    message: format!(
                        "the model gives non-finite values (NaN or infinity) in its vectors \
                         (first for {}): its weights (model.safetensors) or its config.json \
                         hold a non-finite or out-of-range value{precision_hint}; check the \
                         model, or fetch it again",
                        name(i)
                    ),
                });
            }
            // The length as `normalize_in_place` computes it: what it cannot divide by.
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if !(norm.is_finite() && norm > 0.0) {
                let what = if v.iter().all(|&x| x == 0.0) {
                    "an all-zero vector".to_string()
                } else {
                    format!("a vector whose length ({norm}) cannot be scaled to 1")
                };
                return Err(Error::Config {
                    path: self.dir().to_path_buf(),
                    message: format!(
                        "the model gives {what} for {}, which has no direction to compare: \
                         its weights (model.safetensors) are broken (e.g. a LayerNorm weight \
                         of zeros) or it was saved wrongly; check the model, or fetch it again",
                        name(i)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Plain word vectors for the word-vector offset baseline: each bare word is tokenised
    /// with the model's special tokens (`[CLS] w [SEP]`, no template), the last hidden states
    /// of all its tokens (special ones included) are averaged, and the mean is scaled to unit
    /// length. Each distinct word is encoded once, in length-sorted batches; the result is in
    /// input order.
    pub fn embed_words<S: AsRef<str> + Sync>(&self, words: &[S]) -> Result<Vec<Vec<f32>>> {
        self.words_with_progress(words, &|_, _| {})
    }

    /// [`Self::embed_words`], telling `progress` (done, total) in distinct words.
    fn words_with_progress<S: AsRef<str> + Sync>(
        &self,
        words: &[S],
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<Vec<f32>>> {
        let mut distinct: Vec<&str> = Vec::new();
        let mut slot: HashMap<&str, usize> = HashMap::new();
        let index: Vec<usize> = words
            .iter()
            .map(|w| {
                *slot.entry(w.as_ref()).or_insert_with(|| {
                    distinct.push(w.as_ref());
                    distinct.len() - 1
                })
            })
            .collect();
        let toks = self.tokenizer.encode_texts(&distinct)?;
        let total = toks.len();
        let name = |i: usize| format!("the word {:?}", distinct[i]);
        let mut vectors =
            self.pool_all(&toks, Aggregation::Average, &|n| progress(n, total), &name)?;
        // Scaling the sum to unit length is the same as normalising the mean.
        vectors.iter_mut().for_each(|v| normalize_in_place(v));
        Ok(index.into_iter().map(|i| vectors[i].clone()).collect())
    }

    /// Pair vectors (see [`Self::embed_raw_with_progress`]).
    pub fn embed_raw<S: AsRef<str> + Sync>(&self, pairs: &[(S, S)]) -> Result<Vec<Vec<f32>>> {
        self.embed_raw_with_progress(pairs, &|_| {})
    }

    /// Unit-length pair vectors, in input order.
    pub fn embed<S: AsRef<str> + Sync>(&self, pairs: &[(S, S)]) -> Result<Vec<Vec<f32>>> {
        let mut v = self.embed_raw(pairs)?;
        v.iter_mut().for_each(|x| normalize_in_place(x));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the fixture model `name` (tests/fixtures) in a new folder `root/to`.
    fn copy_fixture(root: &Path, name: &str, to: &str) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let dst = root.join(to);
        std::fs::create_dir(&dst).unwrap();
        for entry in std::fs::read_dir(&src).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
        }
        dst
    }

    /// Review: the identity hashed the model files again after loading them, so weights
    /// replaced by a rename in between (a training run saving its best checkpoint there)
    /// gave the new model's identity to the old one's vectors, and every later check then
    /// accepted the new model for them. An identity first computed after such a replacement
    /// is refused; one computed before it is kept (hashed once, from the loaded files); an
    /// untouched copy gives the same identity as before.
    #[test]
    fn weights_replaced_after_loading_are_refused_for_the_identity() {
        let root = tempfile::tempdir().unwrap();
        let model = copy_fixture(root.path(), "tiny-bert", "model");
        let untouched = copy_fixture(root.path(), "tiny-bert", "untouched");
        let opts = EncoderOptions::default();
        let hashed_before = RelationEncoder::load(&model, &opts).unwrap();
        let hashed_after = RelationEncoder::load(&model, &opts).unwrap();
        let before = hashed_before.identity().unwrap();

        // Other bytes, put in place atomically, as a checkpoint is saved.
        let weights = model.join("model.safetensors");
        let next = model.join("model.safetensors.tmp");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/tiny-roberta/model.safetensors"),
            &next,
        )
        .unwrap();
        std::fs::rename(&next, &weights).unwrap();
        assert_ne!(
            Encoder::weights_sha256(&weights).unwrap(),
            before.weights_sha256
        );

        let err = hashed_after.identity().unwrap_err().to_string();
        assert!(
            err.contains("changed while relbert was loading them") && err.contains("Run again"),
            "{err}"
        );
        let err = hashed_after.identity_for_record().unwrap_err().to_string();
        assert!(err.contains("model.safetensors"), "{err}");
        // Computed from the files it loaded, before the replacement: still its identity.
        assert_eq!(hashed_before.identity().unwrap(), before);

        let copy = RelationEncoder::load(&untouched, &opts).unwrap();
        let first = copy.identity().unwrap();
        assert_eq!(first.weights_sha256, before.weights_sha256);
        assert_eq!(first.files_digest, before.files_digest);
        assert_eq!(copy.identity().unwrap(), first);
        assert_eq!(
            copy.identity_for_record().unwrap().weights_sha256,
            first.weights_sha256
        );
    }
}
