//! Relation-retrieval precision@10 on an index's WordNet labels, by exact search, for the
//! index's own relation vectors and (with `--offset-model`) for the word-vector offset
//! baseline over the same pairs; with `--offset-weight W` as well, also for the index's vectors
//! combined with those offsets as `relbert::analogy::combine` does (what a model whose
//! `relbert_config.offset_weight` is W would store). For `n` random stored pairs whose label is a WordNet relation
//! (labels without a `:`; the training-split pairs are labelled `dataset:relation`), the share
//! of the 10 nearest pairs — the query pair and pairs sharing a word with it excluded, as
//! `relbert query` does — that carry the query's label. Prints one JSON document.
//! `--exclude-training FILE` (repeatable; SemEval-format JSONL such as
//! `data/extra_relations.jsonl`) keeps the pairs a model was trained on, in either order, out
//! of the query sample.
//!
//! cargo run --release --example retrieval_precision -- INDEX_DIR [--n 1000] [--seed 0]
//!     [--offset-model MODEL_DIR [--offset-weight W]] [--exclude-training FILE]...

use std::collections::HashSet;
use std::path::PathBuf;

use rayon::prelude::*;
use relbert::analogy::combine;
use relbert::query::pair_words;
use relbert::training::Rng;
use relbert::{EncoderOptions, RelationEncoder};
use relbert_index::Index;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut index_dir = None;
    let (mut n, mut seed, mut offset_model) = (1000usize, 0u64, None);
    let mut offset_weight: Option<f32> = None;
    let mut exclude_files: Vec<PathBuf> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--n" => {
                n = it
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--n needs a value"))?
                    .parse()?
            }
            "--seed" => {
                seed = it
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--seed needs a value"))?
                    .parse()?
            }
            "--offset-model" => {
                offset_model =
                    Some(PathBuf::from(it.next().ok_or_else(|| {
                        anyhow::anyhow!("--offset-model needs a value")
                    })?))
            }
            "--offset-weight" => {
                offset_weight = Some(
                    it.next()
                        .ok_or_else(|| anyhow::anyhow!("--offset-weight needs a value"))?
                        .parse()?,
                )
            }
            "--exclude-training" => exclude_files
                .push(PathBuf::from(it.next().ok_or_else(|| {
                    anyhow::anyhow!("--exclude-training needs a value")
                })?)),
            other => index_dir = Some(PathBuf::from(other)),
        }
    }
    let index_dir = index_dir.ok_or_else(|| anyhow::anyhow!("usage: retrieval_precision INDEX"))?;
    if offset_weight.is_some() && offset_model.is_none() {
        anyhow::bail!("--offset-weight needs --offset-model");
    }
    let index = Index::open(&index_dir)?;
    let count = index.count();
    let mut pairs = Vec::with_capacity(count);
    for row in 0..count {
        let p = index.pair(row)?;
        pairs.push((
            p.head.to_string(),
            p.tail.to_string(),
            p.label.map(str::to_string),
        ));
    }
    // Pairs compare case-insensitively and in either order.
    let key = |h: &str, t: &str| {
        let (h, t) = (h.to_lowercase(), t.to_lowercase());
        if h <= t {
            (h, t)
        } else {
            (t, h)
        }
    };
    let mut trained: HashSet<(String, String)> = HashSet::new();
    for f in &exclude_files {
        for rel in relbert::datasets::load_relation_file(f)? {
            for p in rel.positives.iter().chain(&rel.negatives) {
                trained.insert(key(&p.0, &p.1));
            }
        }
    }
    let labelled: Vec<usize> = (0..count)
        .filter(|&r| pairs[r].2.as_deref().is_some_and(|l| !l.contains(':')))
        .collect();
    let wordnet: Vec<usize> = labelled
        .iter()
        .copied()
        .filter(|&r| !trained.contains(&key(&pairs[r].0, &pairs[r].1)))
        .collect();
    let trained_excluded = labelled.len() - wordnet.len();
    let queries: Vec<usize> = Rng::new(seed)
        .sample(wordnet.len(), n)
        .into_iter()
        .map(|i| wordnet[i])
        .collect();

    let precision = |vector: &(dyn Fn(usize) -> Vec<f32> + Sync),
                     search: &(dyn Fn(&[f32], usize) -> Vec<usize> + Sync)| {
        let per: Vec<f64> = queries
            .par_iter()
            .map(|&q| {
                let label = &pairs[q].2;
                let hits = search(&vector(q), q);
                hits.iter().filter(|&&r| pairs[r].2 == *label).count() as f64 / 10.0
            })
            .collect();
        per.iter().sum::<f64>() / per.len().max(1) as f64
    };
    let words: Vec<Vec<String>> = pairs
        .iter()
        .map(|(h, t, _)| pair_words(h, t).collect())
        .collect();
    let keep = |q: usize, r: usize| r != q && !words[r].iter().any(|w| words[q].contains(w));

    let relbert_p = precision(
        &|q| index.vector(q).map(|v| v.into_owned()).unwrap_or_default(),
        &|v, q| {
            index
                .search_exact_filtered(v, 10, |r| keep(q, r))
                .map(|hs| hs.into_iter().map(|h| h.row).collect())
                .unwrap_or_default()
        },
    );
    let mut doc = serde_json::json!({
        "index": index_dir,
        "model": index.meta().encoder.model,
        "queries": queries.len(),
        "seed": seed,
        "excluded_training_files": exclude_files,
        "excluded_candidate_queries": trained_excluded,
        "search": "exact",
        "precision_at_10": { "relbert": relbert_p },
    });

    if let Some(model) = offset_model {
        let enc = RelationEncoder::load(&model, &EncoderOptions::default())?;
        let heads_tails: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(h, t, _)| (h.as_str(), t.as_str()))
            .collect();
        // The offsets' width, not `enc.dim()`: a model with its own offset weight has wider
        // pair vectors than word vectors.
        let offsets = enc.offsets(&heads_tails)?;
        let dim = offsets.first().map_or(0, Vec::len);
        let flat: Vec<f32> = offsets.into_iter().flatten().collect();
        // Exact top 10 over a flat row-major matrix of unit vectors.
        let brute = |flat: &[f32], dim: usize, v: &[f32], q: usize| -> Vec<usize> {
            let mut best: Vec<(f32, usize)> = Vec::with_capacity(11);
            for r in 0..count {
                if !keep(q, r) {
                    continue;
                }
                let s = relbert_index::dot::dot(&flat[r * dim..(r + 1) * dim], v);
                if best.len() < 10 || s > best[best.len() - 1].0 {
                    let pos = best.partition_point(|&(x, _)| x >= s);
                    best.insert(pos, (s, r));
                    best.truncate(10);
                }
            }
            best.into_iter().map(|(_, r)| r).collect()
        };
        let offset_p = precision(&|q| flat[q * dim..(q + 1) * dim].to_vec(), &|v, q| {
            brute(&flat, dim, v, q)
        });
        if let Some(w) = offset_weight {
            let cdim = index.dim() + dim;
            let mut combined = vec![0f32; count * cdim];
            for r in 0..count {
                let v = combine(&index.vector(r)?, &flat[r * dim..(r + 1) * dim], w);
                combined[r * cdim..(r + 1) * cdim].copy_from_slice(&v);
            }
            let combined_p =
                precision(&|q| combined[q * cdim..(q + 1) * cdim].to_vec(), &|v, q| {
                    brute(&combined, cdim, v, q)
                });
            doc["precision_at_10"]["combined"] = serde_json::json!(combined_p);
            doc["offset_weight"] = serde_json::json!(w);
        }
        doc["precision_at_10"]["word_offset"] = serde_json::json!(offset_p);
        doc["offset_model"] = serde_json::json!(model);
    }
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
