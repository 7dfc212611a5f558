//! Scoring multiple-choice analogy questions with relation vectors: the choice whose vector is
//! most similar to the stem's is the prediction.

use std::collections::{BTreeMap, HashMap};

use crate::datasets::{AnalogyQuestion, Pair};

/// How a stem and a choice are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Similarity {
    /// Cosine similarity (the default).
    #[default]
    Cosine,
    /// Negative Euclidean distance between the raw (unnormalised) vectors.
    Euclidean,
}

/// Accuracy over a set of questions.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Accuracy {
    /// Share of questions answered right.
    pub accuracy: f64,
    /// Number of questions.
    pub n: usize,
    /// Accuracy per question prefix.
    pub by_prefix: BTreeMap<String, f64>,
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += *x as f64 * *y as f64;
        na += *x as f64 * *x as f64;
        nb += *y as f64 * *y as f64;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Similarity under `sim`.
pub fn similarity(sim: Similarity, a: &[f32], b: &[f32]) -> f64 {
    match sim {
        Similarity::Cosine => cosine(a, b),
        Similarity::Euclidean => -a
            .iter()
            .zip(b)
            .map(|(x, y)| ((*x - *y) as f64).powi(2))
            .sum::<f64>()
            .sqrt(),
    }
}

/// Every distinct pair the questions mention (stems and choices), in first-seen order.
pub fn distinct_pairs<'a>(questions: impl IntoIterator<Item = &'a AnalogyQuestion>) -> Vec<Pair> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for q in questions {
        for p in std::iter::once(&q.stem).chain(&q.choice) {
            if seen.insert(p.clone()) {
                out.push(p.clone());
            }
        }
    }
    out
}

/// The index of the best-scoring choice (ties go to the first, as numpy's argmax does).
pub fn predict(scores: &[f64]) -> usize {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
        }
    }
    best
}

/// Scores questions given a score function for (stem, choice); returns accuracy overall and
/// per prefix.
pub fn accuracy(questions: &[AnalogyQuestion], score: impl Fn(&Pair, &Pair) -> f64) -> Accuracy {
    let mut right = 0usize;
    let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for q in questions {
        let scores: Vec<f64> = q.choice.iter().map(|c| score(&q.stem, c)).collect();
        let ok = predict(&scores) == q.answer;
        right += ok as usize;
        let e = per.entry(q.prefix.clone()).or_default();
        e.0 += ok as usize;
        e.1 += 1;
    }
    Accuracy {
        accuracy: right as f64 / questions.len().max(1) as f64,
        n: questions.len(),
        by_prefix: per
            .into_iter()
            .map(|(k, (r, n))| (k, r as f64 / n as f64))
            .collect(),
    }
}

/// Accuracy with relation vectors looked up by pair.
pub fn accuracy_with_vectors(
    questions: &[AnalogyQuestion],
    vectors: &HashMap<Pair, Vec<f32>>,
    sim: Similarity,
) -> Accuracy {
    let empty = Vec::new();
    let get = |p: &Pair| vectors.get(p).unwrap_or(&empty);
    accuracy(questions, |s, c| similarity(sim, get(s), get(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &str, b: &str) -> Pair {
        (a.into(), b.into())
    }

    #[test]
    fn identical_choice_wins() {
        let q = AnalogyQuestion {
            stem: p("a", "b"),
            choice: vec![p("c", "d"), p("a", "b")],
            answer: 1,
            prefix: "t".into(),
        };
        let mut v = HashMap::new();
        v.insert(p("a", "b"), vec![1.0, 0.0]);
        v.insert(p("c", "d"), vec![0.0, 1.0]);
        let acc = accuracy_with_vectors(&[q], &v, Similarity::Cosine);
        assert_eq!(acc.accuracy, 1.0);
        assert_eq!(acc.by_prefix["t"], 1.0);
    }
}
