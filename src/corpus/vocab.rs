//! The vocabulary of terms: stop words, multi-word terms (a given list and learned
//! phrases) merged into single tokens, and the frequency cut that picks the terms pairs are
//! counted between.
//!
//! A term's words are at most [`MAX_TERM_CHARS`] characters each: a longer run of letters
//! is not a word (a URL's or a table's remains, text without spaces), and one of millions
//! of characters went whole into the pair list, its provenance and the model's prompt.

use std::path::Path;

use rustc_hash::{FxHashMap, FxHashSet};
use unicode_categories::UnicodeCategories;

use super::tokenize::{joiner_char, Kind, Sentence, Token};
use crate::error::{Error, Result};

/// The bundled English stop-word list: `src/corpus/stopwords_en.txt` and the common
/// contractions (`don't`, `we're`: function words too, which otherwise became terms such as
/// `we're bundling`; the typographic `don’t` is the same word once tokenised). Forms in `'s`
/// are not listed: the tokenizer drops a possessive `'s`, leaving `it`, `that`, `he`.
pub const DEFAULT_STOPWORDS: &str = concat!(
    include_str!("stopwords_en.txt"),
    "\n# contractions\n",
    "ain't aren't can't couldn't daren't didn't doesn't don't hadn't hasn't haven't he'd \
     he'll i'd i'll i'm i've isn't it'd it'll let's mayn't mightn't mustn't needn't oughtn't \
     shan't she'd she'll shouldn't that'd that'll there'd there'll there're they'd they'll \
     they're they've wasn't we'd we'll we're we've weren't what'd what'll what're what've \
     where'd who'd who'll who're who've won't wouldn't y'all you'd you'll you're you've\n"
);

/// Reads a word list: words separated by white space, `#` starts a comment line.
pub fn parse_word_list(text: &str, lowercase: bool) -> FxHashSet<Box<str>> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .map(|w| fold(w, lowercase).into_boxed_str())
        .collect()
}

/// Reads a word list (terms, stop words) as text; bytes that are not UTF-8 are an error
/// naming the file and the line they are on, and so is a first line that marks one of
/// relbert's own lists ([`crate::pairs::relbert_list_kind`]).
pub fn read_word_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::Parse {
            path: path.to_path_buf(),
            line,
            message: "not UTF-8 text".into(),
        }
    })?;
    // One of relbert's own lists (a mined pair list, a vocabulary) given by mistake: its
    // words would be read as stop words or terms, and its header skipped as a comment.
    if let Some(kind) = crate::pairs::relbert_list_kind(text.lines().next().unwrap_or("")) {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            line: 1,
            message: format!("this is {kind}, not a word list"),
        });
    }
    Ok(text)
}

/// A listed word in the spelling the tokenizer gives the corpus' words (NFKC, the ASCII
/// apostrophe, lower-cased when asked), so `don’t` in a list matches `don't` in the text.
fn fold(w: &str, lowercase: bool) -> String {
    if w.is_ascii() {
        if lowercase {
            w.to_ascii_lowercase()
        } else {
            w.to_string()
        }
    } else {
        let mut out = String::with_capacity(w.len());
        super::tokenize::normalize_word(w, lowercase, &mut out);
        out
    }
}

/// Multi-word terms merged into one token each, longest match first: `new york city`
/// becomes one token `new york city`. The merged token is the corpus' own words joined by a
/// space, in the corpus' spelling.
///
/// Listed terms ([`Terms::read`], `--terms`) match in any case, as stop words do: a list is
/// written in one case (WordNet's is all lower case) and text in another (`New York` in the
/// middle of a sentence, `NEW YORK` in a title). With `--keep-case` each spelling found is a
/// term of its own (`New York` and `NEW YORK`), as the case of single words is kept apart
/// there. Terms added with [`Terms::insert`] (learned phrases, in the corpus' spelling)
/// match as spelled.
#[derive(Debug, Default, Clone)]
pub struct Terms {
    /// Listed terms, their words in lower case.
    listed: TermIndex,
    /// Terms matched as spelled.
    exact: TermIndex,
    /// Whether the corpus' tokens keep their case: then each is lower-cased to be compared
    /// with a listed term (lower-cased tokens are compared as they are).
    fold: bool,
}

/// Terms by first word: the remaining words of each, longest first.
#[derive(Debug, Default, Clone)]
struct TermIndex {
    by_first: FxHashMap<Box<str>, Vec<Vec<Box<str>>>>,
    count: usize,
}

impl TermIndex {
    /// Adds one term given as its words (fewer than two words are ignored, as are repeats).
    fn insert(&mut self, words: Vec<Box<str>>) {
        if words.len() < 2 {
            return;
        }
        let mut it = words.into_iter();
        let Some(first) = it.next() else {
            return;
        };
        let rest: Vec<Box<str>> = it.collect();
        let list = self.by_first.entry(first).or_default();
        if !list.contains(&rest) {
            list.push(rest);
            list.sort_by_key(|r| std::cmp::Reverse(r.len()));
            self.count += 1;
        }
    }

    /// The number of words after the first of the longest term whose first word is `first`
    /// and whose other words are the tokens after token `i` (`eq(token, word)`).
    fn longest_at(
        &self,
        first: &str,
        s: &Sentence,
        i: usize,
        mut eq: impl FnMut(&str, &str) -> bool,
    ) -> Option<usize> {
        let n = s.tokens.len();
        self.by_first
            .get(first)?
            .iter()
            .find(|rest| {
                i + rest.len() < n
                    && rest
                        .iter()
                        .enumerate()
                        .all(|(k, w)| eq(s.text(i + 1 + k), w))
            })
            .map(Vec::len)
    }
}

/// A token in lower case as the tokenizer lower-cases ([`super::tokenize::normalize_word`]:
/// tokens are in NFKC already), borrowed when it is lower case already; `buf` holds it
/// otherwise.
fn lower<'a>(token: &'a str, buf: &'a mut String) -> &'a str {
    if token.is_ascii() && !token.bytes().any(|b| b.is_ascii_uppercase()) {
        return token;
    }
    buf.clear();
    if token.is_ascii() {
        buf.push_str(token);
        buf.make_ascii_lowercase();
    } else {
        super::tokenize::normalize_word(token, true, buf);
    }
    buf
}

impl Terms {
    /// No terms, for a corpus whose tokens keep their case (`--keep-case`) or not: listed
    /// terms are compared with the lower-case form of a token that keeps its case.
    pub fn new(lowercase: bool) -> Terms {
        Terms {
            fold: !lowercase,
            ..Terms::default()
        }
    }

    /// Reads a term list: one term per line, words separated by spaces or `_` (WordNet's
    /// lemma spelling); single words and `#` lines are ignored. Terms are tokenised like the
    /// corpus and matched in any case, so `X-ray tube` matches the corpus' `x-ray tube` and,
    /// with `--keep-case` (`lowercase` false), `new york` matches `New York`. A term with a
    /// word longer than [`MAX_TERM_CHARS`] could never be chosen: it is left out with a
    /// warning naming the file and line, where it would otherwise vanish into the report's
    /// `long_words`.
    pub fn read(path: &Path, lowercase: bool) -> Result<Terms> {
        let text = read_word_file(path)?;
        let tok = super::tokenize::Tokenizer { lowercase: true };
        let mut terms = Terms::new(lowercase);
        let mut s = Sentence::default();
        let mut long = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let spaced = line.replace('_', " ");
            let mut words: Vec<Box<str>> = Vec::new();
            tok.sentences(&spaced, &mut s, |s| {
                words.extend((0..s.tokens.len()).map(|i| Box::from(s.text(i))));
            });
            if words.len() > 1 && words.iter().any(|w| too_long_word(w)) {
                long.push(n + 1);
                continue;
            }
            terms.listed.insert(words);
        }
        if let Some(first) = long.first() {
            tracing::warn!(
                "{}:{first}: a term with a word of more than {MAX_TERM_CHARS} characters is never a \
                 term; left out{}",
                path.display(),
                match long.len() {
                    1 => String::new(),
                    2 => " (with 1 more such line)".to_string(),
                    n => format!(" (with {} more such lines)", n - 1),
                }
            );
        }
        Ok(terms)
    }

    /// Adds one term matched as spelled (a learned phrase, in the corpus' spelling) given as
    /// its words; fewer than two words are ignored.
    pub fn insert(&mut self, words: Vec<Box<str>>) {
        self.exact.insert(words);
    }

    /// Number of terms.
    pub fn len(&self) -> usize {
        self.listed.count + self.exact.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of listed terms (those matched in any case).
    pub fn listed_len(&self) -> usize {
        self.listed.count
    }

    /// How many listed terms occur in the corpus as a term of their own (merged at least
    /// once, in any spelling): `counts` are the distinct tokens once listed terms are
    /// merged (the words counted), so those with a space in them are merged terms. One always found inside a
    /// longer listed term (`new york` in `new york city`) is not found as itself.
    pub fn found<'a>(&self, counts: impl IntoIterator<Item = &'a str>) -> usize {
        if self.listed.count == 0 {
            return 0;
        }
        let mut buf = String::new();
        let seen: FxHashSet<String> = counts
            .into_iter()
            .filter(|w| w.contains(' '))
            .map(|w| {
                w.split(' ')
                    .map(|part| lower(part, &mut buf).to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        self.listed
            .by_first
            .iter()
            .flat_map(|(first, rests)| {
                rests
                    .iter()
                    .map(move |rest| format!("{first} {}", rest.join(" ")))
            })
            .filter(|t| seen.contains(t))
            .count()
    }

    /// Merges every term found in the sentence into one token (its words joined by a
    /// space, as the corpus spells them). `scratch` is reused between calls.
    pub fn merge(&self, s: &mut Sentence, scratch: &mut Vec<Token>) {
        if self.is_empty() || s.tokens.len() < 2 {
            return;
        }
        scratch.clear();
        let n = s.tokens.len();
        // Lower-case forms of the tokens compared with listed terms when case is kept.
        let (mut first_buf, mut rest_buf) = (String::new(), String::new());
        let mut i = 0;
        while i < n {
            let exact = if self.exact.count == 0 {
                None
            } else {
                self.exact.longest_at(s.text(i), s, i, |t, w| t == w)
            };
            let listed = if self.listed.count == 0 {
                None
            } else if self.fold {
                let first = lower(s.text(i), &mut first_buf);
                self.listed
                    .longest_at(first, s, i, |t, w| lower(t, &mut rest_buf) == w)
            } else {
                self.listed.longest_at(s.text(i), s, i, |t, w| t == w)
            };
            match exact.max(listed) {
                Some(rest) => {
                    let start = s.buf.len();
                    for k in 0..=rest {
                        if k > 0 {
                            s.buf.push(' ');
                        }
                        let (a, b) = s.tokens[i + k].text;
                        s.buf.extend_from_within(a as usize..b as usize);
                    }
                    scratch.push(Token {
                        text: (start as u32, s.buf.len() as u32),
                        offset: s.tokens[i].offset,
                        kind: Kind::Word,
                    });
                    i += rest + 1;
                }
                None => {
                    scratch.push(s.tokens[i]);
                    i += 1;
                }
            }
        }
        if scratch.len() != n {
            std::mem::swap(&mut s.tokens, scratch);
        }
    }
}

/// Longest word of a term, in characters (combining marks not counted, as they belong to
/// their letter). Long enough for long words of any language (`Rindfleischetikettierungs…`
/// compounds reach 63, English's longest dictionary word has 45), short enough that runs of
/// letters that are not words stay out; a BERT tokenizer gives up on a word after 100.
pub const MAX_TERM_CHARS: usize = 64;

/// The terms pairs are counted between, most frequent first; a term's id is its rank.
#[derive(Debug, Default, Clone)]
pub struct Vocab {
    /// Terms by id.
    pub terms: Vec<Box<str>>,
    /// Corpus counts by id (from the pass that chose them).
    pub counts: Vec<u64>,
    /// Candidate terms (words and phrases: frequent enough, not stop words, letters only)
    /// left out for holding a word longer than [`MAX_TERM_CHARS`]; a long word in two
    /// phrases counts twice.
    pub too_long: usize,
    /// Words (and listed terms) seen `min_count` times, not stop words, left out for their
    /// characters: digits, `_`, `.` and other symbols (`mp3`, `e.g`, `u_expr`), so that a
    /// word left out is never left out unsaid.
    pub rejected: usize,
    /// The most frequent of those (at most [`REJECTED_EXAMPLES`]), with their counts, most
    /// frequent first.
    pub rejected_examples: Vec<(Box<str>, u64)>,
    ids: FxHashMap<Box<str>, u32>,
}

impl Vocab {
    /// Chooses the terms: every word seen at least `min_count` times that is not a stop word,
    /// is made of letters with at most inner hyphens and apostrophes (so not `mp3`, `0d`,
    /// `u_expr` or `perm.r`: codes and identifiers, not words; counted in
    /// [`Vocab::rejected`]) and has at least two characters (multi-word terms always qualify
    /// on count alone) and none of whose words has more than [`MAX_TERM_CHARS`], most
    /// frequent first (ties by text), at most `max_size`. Combining marks belong to their
    /// letter, and the joiners ZWNJ and ZWJ are spelling between letters (the tokenizer
    /// keeps them only there: [`super::tokenize::normalize_word`]).
    ///
    /// `counts` holds each word once, in any order; it may be a stream (the merge of word
    /// counts spilled to disk): at most twice `max_size` candidates are held at a time.
    pub fn choose(
        counts: impl IntoIterator<Item = (Box<str>, u64)>,
        stopwords: &FxHashSet<Box<str>>,
        min_count: u64,
        max_size: usize,
    ) -> Vocab {
        let mut too_long = 0;
        let mut rejected = 0;
        let mut rejected_examples: Vec<(Box<str>, u64)> = Vec::new();
        let order =
            |a: &(Box<str>, u64), b: &(Box<str>, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0));
        // The order is total (words are distinct): the `max_size` first of the candidates
        // held are the first of all that were offered, so cutting to them loses none.
        let hold = max_size.saturating_mul(2).max(1);
        let mut cands: Vec<(Box<str>, u64)> = Vec::new();
        let candidates = counts.into_iter().filter(|(w, c)| {
            let frequent = *c >= min_count
                && !stopwords.contains(w)
                && !stopwords.contains(w.to_lowercase().as_str());
            if !frequent {
                return false;
            }
            // Combining marks belong to their letter: decomposed accents (NFD `café`)
            // and the vowel signs and viramas of Indic scripts.
            let letters = w.chars().all(|ch| {
                ch.is_alphabetic()
                    || ch.is_mark()
                    || joiner_char(ch)
                    || matches!(ch, '-' | '\'' | '’' | ' ')
            });
            if !letters {
                rejected += 1;
                note_rejected(&mut rejected_examples, w, *c);
                return false;
            }
            let candidate = w.contains(' ') || w.chars().filter(|c| !c.is_mark()).nth(1).is_some();
            if candidate && w.split(' ').any(too_long_word) {
                too_long += 1;
                return false;
            }
            candidate
        });
        for cand in candidates {
            cands.push(cand);
            if cands.len() >= hold {
                cands.sort_unstable_by(order);
                cands.truncate(max_size);
            }
        }
        cands.sort_unstable_by(order);
        cands.truncate(max_size);
        let mut v = Vocab {
            too_long,
            rejected,
            rejected_examples,
            ..Vocab::default()
        };
        for (i, (w, c)) in cands.into_iter().enumerate() {
            v.ids.insert(w.clone(), i as u32);
            v.terms.push(w);
            v.counts.push(c);
        }
        v
    }

    /// The id of a term.
    #[inline]
    pub fn id(&self, w: &str) -> Option<u32> {
        self.ids.get(w).copied()
    }

    /// Number of terms.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// Examples of words left out for their characters kept for the report.
pub const REJECTED_EXAMPLES: usize = 5;

/// Keeps the [`REJECTED_EXAMPLES`] most frequent words left out for their characters (ties
/// by text, so the examples do not depend on the order of a hash map).
fn note_rejected(examples: &mut Vec<(Box<str>, u64)>, w: &str, c: u64) {
    let before = |a: &(Box<str>, u64)| a.1 > c || (a.1 == c && &*a.0 < w);
    let at = examples.partition_point(before);
    if at < REJECTED_EXAMPLES {
        examples.insert(at, (w.into(), c));
        examples.truncate(REJECTED_EXAMPLES);
    }
}

/// Whether a word has more than [`MAX_TERM_CHARS`] characters besides combining marks.
fn too_long_word(w: &str) -> bool {
    // Bytes bound characters: most words are decided without counting.
    w.len() > MAX_TERM_CHARS
        && w.chars()
            .filter(|c| !c.is_mark())
            .nth(MAX_TERM_CHARS)
            .is_some()
}

#[cfg(test)]
mod tests {
    use super::super::tokenize::Tokenizer;
    use super::*;

    #[test]
    fn a_word_file_that_is_not_utf8_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("terms.txt");
        std::fs::write(&p, b"new york\nsan \xff jose\n").unwrap();
        let e = Terms::read(&p, true).unwrap_err().to_string();
        assert!(e.contains("terms.txt:2:") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn terms_keep_their_combining_marks_and_stop_words_any_case() {
        let words = [
            "cafe\u{301}", // café with a combining acute (NFD)
            "हिन्दी",       // Hindi: vowel signs and a virama are marks
            "e\u{301}",    // one letter and its accent: too short
            "The",
            "mp3",
        ];
        let counts: FxHashMap<Box<str>, u64> =
            words.iter().map(|w| (Box::<str>::from(*w), 9)).collect();
        let stop = parse_word_list("the\n", true);
        let v = Vocab::choose(counts, &stop, 1, 100);
        let mut got: Vec<&str> = v.terms.iter().map(|t| &**t).collect();
        got.sort();
        assert_eq!(got, ["cafe\u{301}", "हिन्दी"]);
    }

    #[test]
    fn longest_term_wins_and_merged_tokens_keep_their_offset() {
        let mut terms = Terms::default();
        terms.insert(vec!["new".into(), "york".into()]);
        terms.insert(vec!["new".into(), "york".into(), "city".into()]);
        let t = Tokenizer { lowercase: true };
        let mut s = Sentence::default();
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        t.sentences("I left New York City for new york.", &mut s, |s| {
            let mut s = s.clone();
            terms.merge(&mut s, &mut scratch);
            out = (0..s.tokens.len())
                .map(|i| (s.text(i).to_string(), s.tokens[i].offset))
                .collect::<Vec<_>>();
        });
        assert_eq!(
            out,
            vec![
                ("i".to_string(), 0),
                ("left".to_string(), 2),
                ("new york city".to_string(), 7),
                ("for".to_string(), 21),
                ("new york".to_string(), 25)
            ]
        );
    }

    /// Found by review: with `--keep-case`, a list in lower case (WordNet's) merged nothing
    /// in capitalised text, and nothing said so.
    #[test]
    fn listed_terms_match_in_any_case_and_keep_the_texts_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("terms.txt");
        std::fs::write(&p, "new york\nnew_york\nSAN Jos\u{e9}\nlos angeles\n").unwrap();
        let merged = |lowercase: bool, text: &str| {
            let terms = Terms::read(&p, lowercase).unwrap();
            let t = Tokenizer { lowercase };
            let (mut s, mut scratch, mut out) = (Sentence::default(), Vec::new(), Vec::new());
            let mut counts: FxHashMap<Box<str>, u64> = FxHashMap::default();
            t.sentences(text, &mut s, |s| {
                terms.merge(s, &mut scratch);
                for i in 0..s.tokens.len() {
                    out.push(s.text(i).to_string());
                    *counts.entry(s.text(i).into()).or_insert(0) += 1;
                }
            });
            (
                out,
                terms.listed_len(),
                terms.found(counts.keys().map(|w| &**w)),
            )
        };
        let text = "New York, NEW YORK and new york; San Jos\u{e9} and SAN JOSE\u{301}";
        // Case kept: each spelling is a term of its own, in the text's spelling.
        assert_eq!(
            merged(false, text),
            (
                vec![
                    "New York".to_string(),
                    "NEW YORK".into(),
                    "and".into(),
                    "new york".into(),
                    "San Jos\u{e9}".into(),
                    "and".into(),
                    "SAN JOS\u{c9}".into()
                ],
                3,
                2
            )
        );
        // Lower-cased, as before.
        assert_eq!(
            merged(true, text).0,
            [
                "new york",
                "new york",
                "and",
                "new york",
                "san jos\u{e9}",
                "and",
                "san jos\u{e9}"
            ]
        );
        // Learned phrases match as spelled.
        let mut terms = Terms::new(false);
        terms.insert(vec!["Ice".into(), "Cream".into()]);
        let t = Tokenizer { lowercase: false };
        let (mut s, mut scratch, mut out) = (Sentence::default(), Vec::new(), Vec::new());
        t.sentences("Ice Cream and ice cream", &mut s, |s| {
            terms.merge(s, &mut scratch);
            out.extend((0..s.tokens.len()).map(|i| s.text(i).to_string()));
        });
        assert_eq!(out, ["Ice Cream", "and", "ice", "cream"]);
    }

    #[test]
    fn contractions_are_stop_words_in_either_apostrophe() {
        let stop = parse_word_list(DEFAULT_STOPWORDS, true);
        let t = Tokenizer { lowercase: true };
        let mut s = Sentence::default();
        let mut counts: FxHashMap<Box<str>, u64> = FxHashMap::default();
        let text = "We\u{2019}re bundling, we're shipping; don't, Don\u{2019}t, can't, isn't, \
                    won't, you'll, I'm, they've, it's, that's";
        t.sentences(text, &mut s, |s| {
            for i in 0..s.tokens.len() {
                *counts.entry(s.text(i).into()).or_insert(0) += 1;
            }
        });
        let v = Vocab::choose(counts, &stop, 1, 100);
        let mut got: Vec<&str> = v.terms.iter().map(|t| &**t).collect();
        got.sort();
        assert_eq!(got, ["bundling", "shipping"]);
        // A user's list in the typographic apostrophe matches the text's ASCII one.
        assert!(parse_word_list("shan\u{2019}t", true).contains("shan't"));
    }

    /// Found by an audit: a word of 3,000,000 letters became a term, written whole into the
    /// pair list and its provenance.
    #[test]
    fn words_longer_than_the_cap_are_not_terms() {
        let at_cap = "a".repeat(MAX_TERM_CHARS);
        let over = "b".repeat(MAX_TERM_CHARS + 1);
        // Combining marks do not count: 64 letters each with an accent still qualify.
        let marked = "e\u{301}".repeat(MAX_TERM_CHARS);
        let huge = "c".repeat(3_000_000);
        let phrase = format!("new {over}");
        let counts: FxHashMap<Box<str>, u64> =
            [at_cap.as_str(), &over, &marked, &huge, &phrase, "new york"]
                .iter()
                .map(|w| (Box::<str>::from(*w), 9))
                .collect();
        let v = Vocab::choose(counts, &FxHashSet::default(), 1, 100);
        let mut got: Vec<&str> = v.terms.iter().map(|t| &**t).collect();
        got.sort();
        assert_eq!(got, [at_cap.as_str(), &marked, "new york"]);
        assert_eq!(v.too_long, 3);
    }

    /// Found by an audit: words left out for their characters went unsaid, so a word
    /// spoiled by an invisible character (before the tokenizer removed them) vanished.
    #[test]
    fn words_left_out_for_their_characters_are_counted_and_joiners_are_letters() {
        let mut counts = FxHashMap::default();
        for (w, c) in [
            ("mp3", 9),
            ("e.g", 7),
            ("u_expr", 7),
            ("b12", 1),
            ("the", 50),
            ("zebra", 9),
            (
                "\u{06a9}\u{062a}\u{0627}\u{0628}\u{200c}\u{0647}\u{0627}",
                9,
            ),
        ] {
            counts.insert(Box::<str>::from(w), c);
        }
        let stop = parse_word_list("the", true);
        let v = Vocab::choose(counts, &stop, 2, 10);
        let mut got: Vec<&str> = v.terms.iter().map(|t| &**t).collect();
        got.sort();
        assert_eq!(
            got,
            [
                "zebra",
                "\u{06a9}\u{062a}\u{0627}\u{0628}\u{200c}\u{0647}\u{0627}"
            ]
        );
        // `b12` is too rare to be a term whatever its characters.
        assert_eq!(v.rejected, 3);
        let examples: Vec<(&str, u64)> = v
            .rejected_examples
            .iter()
            .map(|(w, c)| (&**w, *c))
            .collect();
        assert_eq!(examples, [("mp3", 9), ("e.g", 7), ("u_expr", 7)]);
    }

    /// The merge of word counts spilled to disk streams into [`Vocab::choose`], which
    /// holds at most twice `max_size` candidates: the terms and the counts of words left
    /// out are those of choosing from all at once.
    #[test]
    fn choosing_from_a_stream_keeps_the_most_frequent_as_from_all() {
        // `i` in letters, least significant first.
        let letters = |mut i: u64| {
            let mut s = String::new();
            loop {
                s.push((b'a' + (i % 26) as u8) as char);
                i /= 26;
                if i == 0 {
                    return s;
                }
            }
        };
        let words: Vec<(Box<str>, u64)> = (0..5000u64)
            .map(|i| {
                let w = if i % 10 == 0 {
                    format!("x{i}")
                } else {
                    letters(i)
                };
                (w.into_boxed_str(), (i * 7919) % 97 + 1)
            })
            .collect();
        let stop = parse_word_list("bab", true);
        for max in [1, 7, 100, 4999, usize::MAX] {
            let v = Vocab::choose(words.iter().cloned(), &stop, 3, max);
            let mut want: Vec<(Box<str>, u64)> = words
                .iter()
                .filter(|(w, c)| {
                    *c >= 3 && &**w != "bab" && w.chars().all(char::is_alphabetic) && w.len() > 1
                })
                .cloned()
                .collect();
            want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            want.truncate(max);
            let got: Vec<(Box<str>, u64)> = v.terms.iter().cloned().zip(v.counts.clone()).collect();
            assert_eq!(got, want, "max {max}");
            assert!(v.rejected > 400, "{}", v.rejected);
            assert_eq!(v.rejected_examples.len(), REJECTED_EXAMPLES);
        }
    }

    #[test]
    fn vocabulary_drops_stop_words_rare_and_one_letter_words() {
        let mut counts = FxHashMap::default();
        for (w, c) in [
            ("the", 50),
            ("cat", 5),
            ("dog", 7),
            ("x", 9),
            ("b12", 9),
            ("emu", 1),
            ("ice cream", 2),
        ] {
            counts.insert(Box::<str>::from(w), c);
        }
        let stop = parse_word_list("# c\nthe a", true);
        let v = Vocab::choose(counts, &stop, 2, 10);
        assert_eq!(
            &*v.terms,
            &["dog".into(), "cat".into(), "ice cream".into()] as &[Box<str>]
        );
        assert_eq!(v.id("cat"), Some(1));
        assert_eq!(v.id("the"), None);
    }
}
