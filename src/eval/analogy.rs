//! Scoring multiple-choice analogy questions with relation vectors: the choice whose vector is
//! most similar to the stem's is the prediction.
//!
//! [`ScoreOptions`] carries the reference evaluation's variants (`relbert/evaluation/
//! analogy_questions.py`): euclidean instead of cosine, reversed pairs (stem *and* choices
//! reversed), and bi-direction (forward similarity times reversed similarity).
//! [`offset`] builds the word-vector offset baseline's pair vectors.

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
    /// Number answered right (`accuracy` × `n`), kept so that sets can be pooled exactly.
    pub right: usize,
    /// Accuracy per question prefix.
    pub by_prefix: BTreeMap<String, f64>,
    /// Questions and right answers per question prefix: the counts behind
    /// [`Accuracy::by_prefix`], which a report of ratios alone could not give back.
    pub by_prefix_counts: BTreeMap<String, PrefixCount>,
}

/// The questions of one prefix, and how many were answered right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PrefixCount {
    /// Number answered right.
    pub right: usize,
    /// Number of questions.
    pub n: usize,
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

/// The cosine score of a pair whose vector is all zeros (or missing): below every real cosine,
/// so that such a choice never wins, as the reference's `cosine_similarity` masks a zero
/// vector to -100. A zero vector comes from `--method offset` on a pair whose two words share
/// one word vector, or `--method combined` at offset weight 1; scored as cosine 0 it beat
/// every choice of negative cosine. When every choice scores it (a zero stem), all tie and
/// the first wins ([`predict`]).
pub const ZERO_VECTOR_SCORE: f64 = f64::NEG_INFINITY;

/// Similarity under `sim`; under cosine, [`ZERO_VECTOR_SCORE`] when either vector is all zeros.
pub fn similarity(sim: Similarity, a: &[f32], b: &[f32]) -> f64 {
    let zero = |v: &[f32]| v.iter().all(|x| *x == 0.0);
    match sim {
        Similarity::Cosine if zero(a) || zero(b) => ZERO_VECTOR_SCORE,
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
        right,
        by_prefix: per
            .iter()
            .map(|(k, &(r, n))| (k.clone(), r as f64 / n as f64))
            .collect(),
        by_prefix_counts: per
            .into_iter()
            .map(|(k, (right, n))| (k, PrefixCount { right, n }))
            .collect(),
    }
}

/// The variants of the reference's analogy scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScoreOptions {
    /// How a stem and a choice are compared.
    pub similarity: Similarity,
    /// Compare the reversed stem (b, a) with the reversed choices (d, c), as the reference's
    /// `reverse_pair` does.
    pub reverse_pair: bool,
    /// Score each choice by forward similarity × reversed similarity (the reference's
    /// `bi_direction_pair`). With euclidean distances the reference multiplies the distances
    /// and takes the largest product; here the *smallest* product wins, so that the nearest
    /// choice is chosen in both modes.
    pub bi_direction: bool,
}

impl ScoreOptions {
    /// Whether forward pairs are looked up.
    fn forward(&self) -> bool {
        self.bi_direction || !self.reverse_pair
    }

    /// Whether reversed pairs are looked up.
    fn backward(&self) -> bool {
        self.bi_direction || self.reverse_pair
    }

    /// Every distinct pair these options need vectors for (forward and/or reversed stems and
    /// choices), in first-seen order.
    pub fn pairs_needed<'a>(
        &self,
        questions: impl IntoIterator<Item = &'a AnalogyQuestion>,
    ) -> Vec<Pair> {
        let forward = distinct_pairs(questions);
        let mut out = Vec::with_capacity(forward.len() * 2);
        let mut seen = std::collections::HashSet::new();
        for p in &forward {
            if self.forward() && seen.insert(p.clone()) {
                out.push(p.clone());
            }
            let r = reversed(p);
            if self.backward() && seen.insert(r.clone()) {
                out.push(r);
            }
        }
        out
    }
}

/// The pair with head and tail swapped.
pub fn reversed(p: &Pair) -> Pair {
    (p.1.clone(), p.0.clone())
}

/// How far apart (Euclidean) two unit word vectors may be and still count as one: the vector
/// of one token sequence computed twice (`dog` and `Dog` on an uncased model, or two words of
/// unknown tokens only) differs at most by rounding when the two were encoded in batches of
/// other lengths, while the vectors of two different words are orders of magnitude further
/// apart.
pub const SAME_WORD_VECTOR: f32 = 1e-3;

/// The offset baseline's pair vector: `tail − head`, scaled to unit length (both word vectors
/// are expected to be unit length already). Zero when the two word vectors are one
/// ([`SAME_WORD_VECTOR`]): the rounding noise between two computations of one vector, scaled
/// to unit length, would be an offset in a direction that means nothing.
pub fn offset(head: &[f32], tail: &[f32]) -> Vec<f32> {
    let mut v: Vec<f32> = tail.iter().zip(head).map(|(t, h)| t - h).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm <= SAME_WORD_VECTOR {
        v.iter_mut().for_each(|x| *x = 0.0);
    }
    crate::pooling::normalize_in_place(&mut v);
    v
}

/// Whether a pair vector built by [`combine`] at a weight above 0 has no offset part (its
/// second half all zeros): the pair's two words share one word vector ([`offset`] is zero).
/// At weight 0 every combined vector's offset part is zero, so callers ask only above it.
pub fn lacks_offset(v: &[f32]) -> bool {
    !v.is_empty() && v.len().is_multiple_of(2) && v[v.len() / 2..].iter().all(|x| *x == 0.0)
}

/// One vector whose cosine with another built the same way is the weighted mean
/// `(1 − w)·cos(r, r′) + w·cos(o, o′)` of the relation vectors' and the offset vectors'
/// cosines: `[√(1 − w)·r/‖r‖ ; √w·o/‖o‖]`, unit length. A concatenation rather than a score
/// rule, so the same combination can be scored, classified and indexed like any pair vector.
/// `offset_weight` is clamped to [0, 1].
///
/// A zero offset (the pair's two words share one word vector: [`offset`]) has no cosine, so
/// the mean is undefined there. Such a pair's vector is its relation part alone, `[r/‖r‖ ;
/// 0]`, still unit length as every consumer expects (`embed` promises unit vectors, the index
/// normalises, bench's euclidean distance assumes one length): its cosine with another pair
/// is `√(1 − w)·cos(r, r′)`, and [`lacks_offset`] tells it. The one exception is w = 1, which
/// gives the relation part no weight: nothing is left, and the vector is all zeros (cosine 0
/// with every pair, as `√(1 − w)·cos` says), not unit length.
pub fn combine(relation: &[f32], offset: &[f32], offset_weight: f32) -> Vec<f32> {
    let w = offset_weight.clamp(0.0, 1.0);
    let mut r = relation.to_vec();
    crate::pooling::normalize_in_place(&mut r);
    let mut o = offset.to_vec();
    crate::pooling::normalize_in_place(&mut o);
    let (a, b) = ((1.0 - w).sqrt(), w.sqrt());
    let mut v: Vec<f32> = r
        .iter()
        .map(|x| x * a)
        .chain(o.iter().map(|x| x * b))
        .collect();
    // Only then: rescaling an already unit vector would move every other pair's bits.
    if o.iter().all(|x| *x == 0.0) {
        crate::pooling::normalize_in_place(&mut v);
    }
    v
}

/// Accuracy under `opts` with vectors looked up by pair. A pair without a vector scores as
/// an empty vector would (under cosine [`ZERO_VECTOR_SCORE`], losing to every real score), so
/// callers should embed [`ScoreOptions::pairs_needed`].
pub fn accuracy_with_options(
    questions: &[AnalogyQuestion],
    vectors: &HashMap<Pair, Vec<f32>>,
    opts: ScoreOptions,
) -> Accuracy {
    let empty = Vec::new();
    let get = |p: &Pair| vectors.get(p).unwrap_or(&empty);
    let sim = opts.similarity;
    accuracy(questions, |s, c| {
        let fwd = || similarity(sim, get(s), get(c));
        let bwd = || similarity(sim, get(&reversed(s)), get(&reversed(c)));
        match (opts.bi_direction, opts.reverse_pair) {
            (true, _) => match sim {
                // A masked factor masks the product: -∞ times a negative cosine would win,
                // and times a cosine of 0 is NaN.
                Similarity::Cosine => match (fwd(), bwd()) {
                    (f, b) if f == ZERO_VECTOR_SCORE || b == ZERO_VECTOR_SCORE => ZERO_VECTOR_SCORE,
                    (f, b) => f * b,
                },
                // Both factors are negated distances; keep "larger is nearer".
                Similarity::Euclidean => -(fwd() * bwd()),
            },
            (false, true) => bwd(),
            (false, false) => fwd(),
        }
    })
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

    fn q(stem: Pair, choice: Vec<Pair>, answer: usize) -> AnalogyQuestion {
        AnalogyQuestion {
            stem,
            choice,
            answer,
            prefix: "t".into(),
            line: 0,
        }
    }

    #[test]
    fn reverse_and_bi_direction_follow_the_reference() {
        // Cosines with the stem: forward c:d 0.9, e:f 0.5; reversed d:c 0.1, f:e 0.6.
        let unit_at = |c: f32| vec![c, (1.0 - c * c).sqrt()];
        let mut v = HashMap::new();
        v.insert(p("a", "b"), vec![1.0, 0.0]);
        v.insert(p("b", "a"), vec![1.0, 0.0]);
        v.insert(p("c", "d"), unit_at(0.9));
        v.insert(p("e", "f"), unit_at(0.5));
        v.insert(p("d", "c"), unit_at(0.1));
        v.insert(p("f", "e"), unit_at(0.6));
        let qs = [q(p("a", "b"), vec![p("c", "d"), p("e", "f")], 1)];
        let run = |reverse_pair, bi_direction| {
            let o = ScoreOptions {
                similarity: Similarity::Cosine,
                reverse_pair,
                bi_direction,
            };
            accuracy_with_options(&qs, &v, o).accuracy
        };
        assert_eq!(run(false, false), 0.0);
        assert_eq!(run(true, false), 1.0);
        // 0.9 * 0.1 = 0.09 < 0.5 * 0.6 = 0.3: the product picks choice 1.
        assert_eq!(run(false, true), 1.0);
        let o = ScoreOptions {
            reverse_pair: true,
            ..Default::default()
        };
        let needed = o.pairs_needed(&qs);
        assert_eq!(needed, vec![p("b", "a"), p("d", "c"), p("f", "e")]);
        let o = ScoreOptions {
            bi_direction: true,
            ..Default::default()
        };
        assert_eq!(o.pairs_needed(&qs).len(), 6);
    }

    #[test]
    fn euclidean_picks_the_nearest_choice() {
        let mut v = HashMap::new();
        v.insert(p("a", "b"), vec![1.0, 0.0]);
        v.insert(p("c", "d"), vec![5.0, 0.0]);
        v.insert(p("e", "f"), vec![1.5, 0.0]);
        v.insert(p("b", "a"), vec![1.0, 0.0]);
        v.insert(p("d", "c"), vec![5.0, 0.0]);
        v.insert(p("f", "e"), vec![1.5, 0.0]);
        let qs = [q(p("a", "b"), vec![p("c", "d"), p("e", "f")], 1)];
        for bi_direction in [false, true] {
            let o = ScoreOptions {
                similarity: Similarity::Euclidean,
                reverse_pair: false,
                bi_direction,
            };
            assert_eq!(accuracy_with_options(&qs, &v, o).accuracy, 1.0);
        }
    }

    #[test]
    fn offset_is_unit_difference() {
        let v = offset(&[1.0, 0.0], &[0.0, 1.0]);
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((v[0] + h).abs() < 1e-6 && (v[1] - h).abs() < 1e-6);
    }

    #[test]
    fn combined_cosine_is_the_weighted_mean_of_cosines() {
        let (r1, r2) = ([3.0f32, 4.0, 0.0], [0.0f32, 1.0, 1.0]);
        let (o1, o2) = ([1.0f32, 0.0], [0.6f32, -0.8]);
        for w in [0.0f32, 0.3, 0.5, 1.0] {
            let (a, b) = (combine(&r1, &o1, w), combine(&r2, &o2, w));
            assert_eq!(a.len(), 5);
            let want = (1.0 - w as f64) * cosine(&r1, &r2) + w as f64 * cosine(&o1, &o2);
            let dot: f64 = a.iter().zip(&b).map(|(x, y)| (x * y) as f64).sum();
            assert!((dot - want).abs() < 1e-6, "w {w}: {dot} vs {want}");
            assert!((cosine(&a, &b) - want).abs() < 1e-6);
        }
    }

    /// Audit (s18): a pair whose two words share one word vector (`nephew:nephew`, `dog:Dog`
    /// on an uncased model) has no offset; its combined vector kept the norm √(1 − w), which
    /// `embed` then rescaled and bench's cosine divided out, while the raw vector (`--raw`,
    /// euclidean distances) was shorter than every other. It is unit length now, its offset
    /// part zero, and its cosine with another pair √(1 − w)·cos(r, r′) as documented.
    #[test]
    fn a_pair_without_offset_is_its_relation_part_at_unit_length() {
        let (r1, r2) = ([3.0f32, 4.0, 0.0], [0.0f32, 1.0, 1.0]);
        let word = [0.6f32, 0.8, 0.0];
        // The same word computed twice, a rounding apart: no offset either.
        let again = [0.6f32 + 1e-6, 0.8 - 1e-6, 1e-6];
        assert!(offset(&word, &again).iter().all(|x| *x == 0.0));
        assert!(offset(&word, &[0.0, 0.6, 0.8]).iter().any(|x| *x != 0.0));
        let other = combine(&r2, &[1.0, 0.0, 0.0], 0.8);
        assert!(!lacks_offset(&other));
        for w in [0.3f32, 0.8] {
            let none = combine(&r1, &offset(&word, &word), w);
            let norm: f64 = none.iter().map(|x| (x * x) as f64).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-6, "w {w}: norm {norm}");
            assert!(lacks_offset(&none));
            let other = combine(&r2, &[1.0, 0.0, 0.0], w);
            let dot: f64 = none.iter().zip(&other).map(|(x, y)| (x * y) as f64).sum();
            let want = (1.0 - w as f64).sqrt() * cosine(&r1, &r2);
            assert!((dot - want).abs() < 1e-6, "w {w}: {dot} vs {want}");
        }
        // At w = 1 the relation part has no weight: nothing is left.
        assert!(combine(&r1, &[0.0; 3], 1.0).iter().all(|x| *x == 0.0));
    }

    /// Review of 2199c21: bench's warning that euclidean distance ranks as cosine stays
    /// silent when a vector is zero (`--method offset` with `nephew:nephew`, a no-offset pair
    /// at w = 1). Rightly: a zero vector is at distance 1 from every unit vector, where a unit
    /// vector would be at cosine 0.5, not its cosine 0, so the two rankings differ.
    #[test]
    fn a_zero_choice_ranks_differently_under_euclidean_and_cosine() {
        let unit_at = |c: f32| vec![c, (1.0 - c * c).sqrt()];
        let mut v = HashMap::new();
        v.insert(p("a", "b"), vec![1.0, 0.0]);
        v.insert(p("c", "d"), unit_at(0.3));
        v.insert(p("e", "e"), vec![0.0, 0.0]);
        let qs = [q(p("a", "b"), vec![p("c", "d"), p("e", "e")], 0)];
        let run = |similarity| {
            let o = ScoreOptions {
                similarity,
                ..Default::default()
            };
            accuracy_with_options(&qs, &v, o).right
        };
        // Cosine 0.3 beats 0; distance √1.4 loses to 1.
        assert_eq!(run(Similarity::Cosine), 1);
        assert_eq!(run(Similarity::Euclidean), 0);
    }

    #[test]
    fn identical_choice_wins() {
        let q = AnalogyQuestion {
            stem: p("a", "b"),
            choice: vec![p("c", "d"), p("a", "b")],
            answer: 1,
            prefix: "t".into(),
            line: 0,
        };
        let mut v = HashMap::new();
        v.insert(p("a", "b"), vec![1.0, 0.0]);
        v.insert(p("c", "d"), vec![0.0, 1.0]);
        let acc = accuracy_with_vectors(&[q], &v, Similarity::Cosine);
        assert_eq!(acc.accuracy, 1.0);
        assert_eq!(acc.by_prefix["t"], 1.0);
    }

    /// An audit found the `--breakdown` table's per-prefix question counts missing from the
    /// JSON report, which held only the ratios (and no count of right answers at all).
    #[test]
    fn counts_per_prefix_are_serialised_beside_the_ratios() {
        let mut v = HashMap::new();
        v.insert(p("a", "b"), vec![1.0, 0.0]);
        v.insert(p("c", "d"), vec![0.0, 1.0]);
        let mut qs = vec![
            q(p("a", "b"), vec![p("c", "d"), p("a", "b")], 1),
            q(p("a", "b"), vec![p("c", "d"), p("a", "b")], 0),
            q(p("a", "b"), vec![p("c", "d"), p("a", "b")], 1),
        ];
        qs[2].prefix = "u".into();
        let acc = accuracy_with_vectors(&qs, &v, Similarity::Cosine);
        let json = serde_json::to_value(&acc).unwrap();
        assert_eq!(json["n"], 3);
        assert_eq!(json["right"], 2);
        assert_eq!(json["by_prefix"]["t"], 0.5);
        assert_eq!(json["by_prefix"]["u"], 1.0);
        assert_eq!(
            json["by_prefix_counts"],
            serde_json::json!({"t": {"right": 1, "n": 2}, "u": {"right": 1, "n": 1}})
        );
    }

    /// Review: a zero vector (`--method offset` on a pair whose two words share one word
    /// vector) scored cosine 0, and so beat every choice of negative cosine; the reference
    /// masks it to -100. It loses to any real score now, forward, reversed and bi-directional,
    /// and when every choice is zero the first still wins.
    #[test]
    fn a_zero_vector_never_wins_under_cosine() {
        let unit_at = |c: f32| vec![c, (1.0 - c * c).sqrt()];
        let mut v = HashMap::new();
        for (a, b) in [("a", "b"), ("b", "a")] {
            v.insert(p(a, b), vec![1.0, 0.0]);
        }
        for (a, b) in [("c", "d"), ("d", "c")] {
            v.insert(p(a, b), unit_at(-0.9));
        }
        v.insert(p("e", "e"), vec![0.0, 0.0]);
        v.insert(p("f", "f"), vec![0.0, 0.0]);
        let qs = [q(p("a", "b"), vec![p("e", "e"), p("c", "d")], 1)];
        for (reverse_pair, bi_direction) in [(false, false), (true, false), (false, true)] {
            let o = ScoreOptions {
                similarity: Similarity::Cosine,
                reverse_pair,
                bi_direction,
            };
            assert_eq!(
                accuracy_with_options(&qs, &v, o).right,
                1,
                "reverse {reverse_pair}, bi {bi_direction}"
            );
        }
        assert_eq!(
            similarity(Similarity::Cosine, &[0.0, 0.0], &[1.0, 0.0]),
            ZERO_VECTOR_SCORE
        );
        assert_eq!(
            similarity(Similarity::Cosine, &[1.0, 0.0], &[]),
            ZERO_VECTOR_SCORE
        );
        // Every choice zero: a tie, which the first choice wins.
        let qs = [
            q(p("a", "b"), vec![p("e", "e"), p("f", "f")], 0),
            q(p("e", "e"), vec![p("a", "b"), p("c", "d")], 0),
        ];
        let acc = accuracy_with_options(&qs, &v, ScoreOptions::default());
        assert_eq!(acc.right, 2);
        // The raw cosine is unchanged: 0 for a zero vector.
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
