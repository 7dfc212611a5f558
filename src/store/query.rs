//! The query layer: "A is to B as ? is to ?" answered by nearest-neighbour search over the
//! relation vectors of an index. The query pair's vector comes from the index when the pair is
//! stored there; otherwise it is encoded with the index's own model, loaded on first need.

use std::path::{Path, PathBuf};

use relbert_index::Index;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::indexing::{built_dtype, dtype_note, encoder_info, pair_function, same_function};
use crate::precision::Dtype;
use crate::relation::{EncoderOptions, RelationEncoder};

/// How to answer a query.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Results per query.
    pub k: usize,
    /// Exact brute-force search instead of HNSW.
    pub exact: bool,
    /// HNSW candidate-list size.
    pub ef: usize,
    /// Keep results that share a word with the query pair.
    pub keep_shared_words: bool,
}

/// One answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueryHit {
    /// The pair found.
    pub pair: [String; 2],
    /// Cosine similarity to the query's relation vector.
    pub score: f32,
    /// The pair's label, if the index has one (`null` otherwise).
    pub label: Option<String>,
}

/// Where the query vector came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Stored in the index.
    Index,
    /// Encoded with the model.
    Encoded,
}

/// Parses a query line: `a<TAB>b`, `a:b` or `a b` (whitespace-separated, exactly two words).
pub fn parse_query_line(line: &str) -> Option<(String, String)> {
    let line = line.trim_end_matches(['\r', '\n']);
    let two = |a: &str, b: &str| {
        let (a, b) = (a.trim(), b.trim());
        (!a.is_empty() && !b.is_empty()).then(|| (a.to_string(), b.to_string()))
    };
    if let Some((a, b)) = line.split_once('\t') {
        return if b.contains('\t') { None } else { two(a, b) };
    }
    if let Some((a, b)) = line.split_once(':') {
        return if b.contains(':') { None } else { two(a, b) };
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [a, b] => two(a, b),
        _ => None,
    }
}

/// The model directory an index names, found from any working directory: the recorded path
/// if it holds a model (absolute since relbert records canonical paths; older indexes
/// recorded it relative to where they were built), else the default model if its weights are
/// the recorded ones (the checkout moved, or the path was relative). Otherwise an error that
/// says how to point at the model.
pub fn recorded_model(built: &relbert_index::EncoderInfo, index: &Path) -> Result<PathBuf> {
    let recorded = PathBuf::from(&built.model);
    let has_weights = |d: &Path| d.join("model.safetensors").is_file();
    if has_weights(&recorded) {
        return Ok(recorded);
    }
    let default = crate::defaults::default_model_dir();
    if has_weights(&default)
        && crate::encoder::Encoder::weights_sha256(&default.join("model.safetensors"))?
            == built.weights_sha256
    {
        return Ok(default);
    }
    Err(Error::InvalidArgument {
        flag: "--model".into(),
        message: format!(
            "index {} was built with the model {} (weights sha256 {}), which is not there; \
             pass --model DIR with a model of those weights to encode pairs the index does not hold",
            index.display(),
            built.model,
            built.weights_sha256.chars().take(12).collect::<String>()
        ),
    })
}

/// An open index plus, lazily, the model that encodes pairs it does not hold.
pub struct QueryEngine {
    index: Index,
    model_dir: Option<PathBuf>,
    encoder: Option<RelationEncoder>,
    /// The number format queries are encoded at; `None`: the index's own.
    dtype: Option<Dtype>,
}

fn words_of(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split_whitespace().map(|w| w.to_lowercase())
}

/// The lower-cased words of a pair (multi-word terms split on spaces): two pairs "share a
/// word", and a query leaves a result out, when these overlap.
pub fn pair_words<'a>(head: &'a str, tail: &'a str) -> impl Iterator<Item = String> + 'a {
    words_of(head).chain(words_of(tail))
}

impl QueryEngine {
    /// Opens the index; `model_dir` overrides the model recorded in it (it must be the same
    /// encoding function: same weights, template and aggregation).
    pub fn open(index_dir: &Path, model_dir: Option<PathBuf>) -> Result<Self> {
        Ok(QueryEngine {
            index: Index::open(index_dir)?,
            model_dir,
            encoder: None,
            dtype: None,
        })
    }

    /// Encodes queries at `dtype` instead of the format the index was built at (allowed, with
    /// a logged note: see [`crate::indexing::same_function`]). Takes effect when the model is
    /// next loaded, so call it before the first query.
    pub fn set_dtype(&mut self, dtype: Dtype) {
        self.dtype = Some(dtype);
    }

    /// The open index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Whether the model has been loaded.
    pub fn model_loaded(&self) -> bool {
        self.encoder.is_some()
    }

    /// Loads the index's model now (so the first encoded query is not slowed by it).
    pub fn load_model(&mut self) -> Result<&RelationEncoder> {
        if self.encoder.is_none() {
            let built = self.index.meta().encoder.clone();
            let dir = match &self.model_dir {
                Some(d) => d.clone(),
                None => recorded_model(&built, self.index.dir())?,
            };
            let (aggregation, offset_weight) = pair_function(&built, self.index.dir())?;
            let dtype = match self.dtype {
                Some(d) => d,
                None => built_dtype(&built, self.index.dir())?,
            };
            let enc = RelationEncoder::load(
                &dir,
                &EncoderOptions {
                    template: Some(built.template.clone()),
                    aggregation: Some(aggregation),
                    // The index's function, whatever the model's config says now.
                    offset_weight: Some(offset_weight.unwrap_or(0.0)),
                    // Queries come one at a time.
                    batch_size: 8,
                    dtype,
                    ..Default::default()
                },
            )?;
            let offered = encoder_info(&enc.identity()?);
            if !same_function(&built, &offered) {
                return Err(Error::EncoderMismatch {
                    index: self.index.dir().to_path_buf(),
                    built: format!("{} sha256 {}", built.model, &built.weights_sha256),
                    offered: format!("{} sha256 {}", offered.model, &offered.weights_sha256),
                });
            }
            if let Some(note) = dtype_note(&built, &offered) {
                tracing::warn!("{note}");
            }
            self.encoder = Some(enc);
        }
        self.encoder.as_ref().ok_or_else(|| Error::InvalidArgument {
            flag: "--model".into(),
            message: "no model loaded".into(),
        })
    }

    /// The relation vector of (a, b): from the index if stored, else encoded.
    pub fn vector(&mut self, a: &str, b: &str) -> Result<(Vec<f32>, Source, Option<usize>)> {
        if let Some(row) = self.index.lookup(a, b)? {
            return Ok((
                self.index.vector(row)?.into_owned(),
                Source::Index,
                Some(row),
            ));
        }
        let enc = self.load_model()?;
        let mut v = enc.embed(&[(a, b)])?;
        Ok((v.pop().unwrap_or_default(), Source::Encoded, None))
    }

    /// The `k` pairs whose relation is most similar to (a, b)'s, excluding the query pair
    /// itself and, unless asked, pairs that share a word with it.
    pub fn query(
        &mut self,
        a: &str,
        b: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<QueryHit>, Source)> {
        let (v, source, self_row) = self.vector(a, b)?;
        let query_words: Vec<String> = pair_words(a, b).collect();
        let index = &self.index;
        let keep = |row: usize| -> bool {
            if Some(row) == self_row {
                return false;
            }
            if opts.keep_shared_words {
                return true;
            }
            match index.pair(row) {
                Ok(p) => !pair_words(p.head, p.tail).any(|w| query_words.contains(&w)),
                Err(_) => false,
            }
        };
        let hits = if opts.exact {
            index.search_exact_filtered(&v, opts.k, keep)?
        } else {
            index.search_filtered(&v, opts.k, opts.ef.max(opts.k), keep)?
        };
        let out = hits
            .into_iter()
            .map(|h| {
                let p = index.pair(h.row)?;
                Ok(QueryHit {
                    pair: [p.head.to_string(), p.tail.to_string()],
                    score: h.score,
                    label: p.label.map(|l| l.to_string()),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((out, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_line_forms() {
        let p = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(parse_query_line("paris\tfrance\n"), p("paris", "france"));
        assert_eq!(parse_query_line("New York\tcity"), p("New York", "city"));
        assert_eq!(parse_query_line("paris:france"), p("paris", "france"));
        assert_eq!(parse_query_line("paris france"), p("paris", "france"));
        assert_eq!(parse_query_line("just-one"), None);
        assert_eq!(parse_query_line("a b c"), None);
        assert_eq!(parse_query_line("a:b:c"), None);
    }
}
