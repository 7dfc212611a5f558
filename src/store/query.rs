//! The query layer: "A is to B as ? is to ?" answered by nearest-neighbour search over the
//! relation vectors of a [`RelationStore`] (a local index or a Qdrant collection). The query
//! pair's vector comes from the store when the pair is stored there; otherwise it is encoded
//! with the store's own model, loaded on first need.

use std::path::{Path, PathBuf};

use relbert_index::Index;
use serde::Serialize;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};
use crate::indexing::{
    built_dtype, dtype_name, dtype_note, dtype_note_at, encoder_info, pair_function, same_function,
};
use crate::precision::Dtype;
use crate::relation::{EncoderOptions, RelationEncoder};
use crate::store::backend::{search_local, LocalStore, RelationStore, SearchRequest, WordTable};

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

/// The HNSW `ef` a query that gives none is searched with (`relbert query`'s and
/// `relbert serve`'s).
pub const DEFAULT_EF: usize = 64;

impl Default for QueryOptions {
    /// What `relbert query` answers without options: 10 results from the HNSW graph at
    /// `ef` [`DEFAULT_EF`], pairs sharing a word with the query left out.
    fn default() -> Self {
        QueryOptions {
            k: 10,
            exact: false,
            ef: DEFAULT_EF,
            keep_shared_words: false,
        }
    }
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

/// What a query with words its model reads as the unknown token alone gets
/// ([`crate::embed::warn_unknown_query_words`]): `relbert query` and `relbert serve` say it.
pub const UNKNOWN_QUERY_OUTCOME: &str =
    "the query is encoded as it is (its results would be the same for any other such word)";

/// Parses a query line: `a<TAB>b`, `a:b` or `a b` (whitespace-separated, exactly two words).
pub fn parse_query_line(line: &str) -> Option<(String, String)> {
    let line = line.trim_end_matches(['\r', '\n']);
    // Each word as a pair file's is read ([`crate::pairs::read_word`]).
    let two = |a: &str, b: &str| {
        let (a, b) = (crate::pairs::read_word(a), crate::pairs::read_word(b));
        (!crate::pairs::blank_word(&a) && !crate::pairs::blank_word(&b)).then_some((a, b))
    };
    if let Some((a, rest)) = line.split_once('\t') {
        // A pair file's line (head<TAB>tail<TAB>label) reads as its pair: the label is not
        // part of the query.
        let b = rest.split_once('\t').map_or(rest, |(b, _label)| b);
        return if rest.matches('\t').count() > 1 {
            None
        } else {
            two(a, b)
        };
    }
    if let Some((a, b)) = line.split_once(':') {
        return if b.contains(':') { None } else { two(a, b) };
    }
    let words = words_of_line(line);
    match words.as_slice() {
        [a, b] => two(a, b),
        _ => None,
    }
}

/// The space-separated pieces of a query line, less those [`crate::pairs::read_word`] leaves
/// empty: `dog \u{200b} puppy` is two words, not three (a zero width space alone is no word).
fn words_of_line(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .filter(|w| !w.chars().all(crate::corpus::tokenize::invisible))
        .collect()
}

/// Every reading of a query line, the one [`parse_query_line`] gives first: a line such as
/// `re:invent conference` is `re` : `invent conference` by the colon and `re:invent` :
/// `conference` by its two words. [`QueryEngine::read_query_line`] takes the one the store
/// holds.
pub fn query_line_readings(line: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = parse_query_line(line).into_iter().collect();
    let line = line.trim_end_matches(['\r', '\n']);
    if !line.contains('\t') && line.contains(':') {
        let words = words_of_line(line);
        if let [a, b] = words.as_slice() {
            let two = (crate::pairs::read_word(a), crate::pairs::read_word(b));
            let blank = crate::pairs::blank_word(&two.0) || crate::pairs::blank_word(&two.1);
            // A word of colons alone is the separator with a word forgotten beside it: `paris :`
            // was asked as (`paris`, `:`) and ` : france` as (`:`, `france`), while `paris:`
            // is refused for its empty word. The colon's reading (none) is the answer.
            let separator = |w: &str| w.chars().all(|c| c == ':');
            if !blank && !separator(&two.0) && !separator(&two.1) && !out.contains(&two) {
                out.push(two);
            }
        }
    }
    out
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

/// A relation store (a local index or a Qdrant collection) plus, lazily, the model that
/// encodes pairs the store does not hold.
pub struct QueryEngine {
    store: Box<dyn RelationStore>,
    model_dir: Option<PathBuf>,
    encoder: Option<RelationEncoder>,
    /// The loaded encoder's tokenizer, set up to tell the words it reads as its unknown
    /// token alone, of which an encoded query warns (`None`: no model loaded yet, or a
    /// tokenizer without an unknown token).
    words: Option<crate::embed::WordTokenizer>,
    /// The id of the local index open (from its `meta`): a publication brings another. Not
    /// the file's inode: a filesystem hands a freed inode to the next new file, so after two
    /// publications the new `meta` could have the inode the reader last saw.
    stamp: Option<String>,
    /// The id of the index [`Self::refresh`] found in the directory and did not follow (of
    /// another pair function), so that it is said once, not at every look.
    refused: Option<String>,
    /// The number format queries are encoded at; `None`: the store's own.
    dtype: Option<Dtype>,
    /// Where the encoder runs (the CPU unless [`Self::set_device`] says otherwise).
    device: candle_core::Device,
    /// How a local index is opened, by [`Self::open_with`] and again by [`Self::refresh`]
    /// when the directory holds a new one.
    open: relbert_index::OpenOptions,
}

/// Loads the encoder that computes the pair function `built` records for the store at
/// `place`: the model `model_dir`, else the recorded one ([`recorded_model`]), with the
/// recorded template, aggregation and offset weight unless `opts` sets a template or
/// aggregation, which must then be the recorded ones. `opts` gives the batch size and
/// device; `dtype` the number format (default: the one the store was built at; another is
/// allowed with a logged note). A model or pair function other than the store's is refused
/// ([`Error::EncoderMismatch`]): its vectors would not be comparable.
pub fn store_encoder(
    built: &relbert_index::EncoderInfo,
    place: &Path,
    model_dir: Option<&Path>,
    dtype: Option<Dtype>,
    opts: EncoderOptions,
) -> Result<RelationEncoder> {
    let dtype = match dtype {
        Some(d) => d,
        None => built_dtype(built, place)?,
    };
    let dir = match model_dir {
        Some(d) => d.to_path_buf(),
        None => recorded_model(built, place)?,
    };
    let (aggregation, offset_weight) = pair_function(built, place)?;
    let enc = RelationEncoder::load(
        &dir,
        &EncoderOptions {
            template: Some(opts.template.unwrap_or_else(|| built.template.clone())),
            aggregation: Some(opts.aggregation.unwrap_or(aggregation)),
            // The store's function, whatever the model's config says now.
            offset_weight: Some(offset_weight.unwrap_or(0.0)),
            dtype,
            ..opts
        },
    )?;
    let offered = encoder_info(&enc.identity()?);
    if !same_function(built, &offered) {
        let show = |i: &relbert_index::EncoderInfo| {
            format!(
                "{} sha256 {}, aggregation {}, template {:?}",
                i.model, i.weights_sha256, i.aggregation, i.template
            )
        };
        // Named field by field too: a tokenizer or config edit shows above only as another
        // `+files:` digest inside the aggregation.
        let differs = crate::indexing::function_difference(built, &offered).join("; ");
        return Err(Error::EncoderMismatch {
            index: place.to_path_buf(),
            built: show(built),
            offered: format!("{} (it differs in: {differs})", show(&offered)),
        });
    }
    if let Some(note) = dtype_note(built, &offered) {
        tracing::warn!("{note}");
    }
    Ok(enc)
}

/// [`store_encoder`] for a local index.
pub fn index_encoder(
    index: &Index,
    model_dir: Option<&Path>,
    opts: EncoderOptions,
) -> Result<RelationEncoder> {
    store_encoder(&index.meta().encoder, index.dir(), model_dir, None, opts)
}

/// A word as queries compare words: lower-cased, in canonical decomposition (NFD). So
/// "École" typed precomposed (NFC, as most keyboards and files give it) or decomposed (NFD,
/// as macOS file names and some text tools give it) and "école" are one word, as they are
/// one spelling to a reader. A Greek sigma is `σ` wherever it stands: the final form `ς` is
/// one letter with it, and lower-casing gives either depending on how it is done
/// (`str::to_lowercase` lowers a word-final capital to `ς`, `char::to_lowercase` to `σ`), so
/// `ΛΌΓΟΣ` and `λόγος` are one word (an audit found them two). Accents are kept: "resume" and
/// "résumé" are two words (see [`SpellingKey`] for where they count as one). The invisible
/// format characters a tokenizer drops ([`crate::corpus::tokenize::invisible`]) are no part
/// of a word here either: `pup\u{ad}py` is `puppy` (queries drop them as they read a word,
/// [`crate::pairs::read_word`], but an index built by an older relbert may hold them).
/// The apostrophes [`APOSTROPHES`] are one, `'`: `pairs mine` writes `qi’anxin` as
/// `qi'anxin` ([`crate::corpus::tokenize::normalize_word`]), a keyboard or a pasted text
/// gives the typographic one, and a pair file may hold either.
pub fn fold_word(w: &str) -> impl Iterator<Item = char> + '_ {
    w.chars()
        .filter(|&c| !crate::corpus::tokenize::invisible(c))
        .nfd()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'ς' => 'σ',
            '\u{2019}' | '\u{2bc}' => '\'',
            c => c,
        })
        .nfd()
}

/// The spellings of an apostrophe that are one in a word ([`fold_word`]): the ASCII `'`
/// (what [`fold_word`] and `pairs mine` write), the right single quotation mark `’` (U+2019,
/// typographic text) and the modifier letter apostrophe `ʼ` (U+02BC), in that order.
pub const APOSTROPHES: [char; 3] = ['\'', '\u{2019}', '\u{2bc}'];

/// (a, b) with their apostrophes ([`APOSTROPHES`]) spelled otherwise, each term with one
/// spelling throughout (`'` first), less (a, b) as typed: where else a store may hold the
/// pair. Empty (nothing allocated) when neither term has one.
pub fn apostrophe_spellings(a: &str, b: &str) -> Vec<(String, String)> {
    if !a.contains(APOSTROPHES) && !b.contains(APOSTROPHES) {
        return Vec::new();
    }
    let (heads, tails) = (respelled(a), respelled(b));
    let mut out = Vec::with_capacity(heads.len() * tails.len());
    for h in &heads {
        for t in &tails {
            if (h.as_str(), t.as_str()) != (a, b) {
                out.push((h.clone(), t.clone()));
            }
        }
    }
    out
}

/// `t` with its apostrophes ([`APOSTROPHES`]) spelled each way, one spelling throughout,
/// `'` first, without repeats (`t` alone when it has none).
fn respelled(t: &str) -> Vec<String> {
    if !t.contains(APOSTROPHES) {
        return vec![t.to_string()];
    }
    let mut forms: Vec<String> = Vec::with_capacity(APOSTROPHES.len());
    for to in APOSTROPHES {
        let f = t.replace(APOSTROPHES, to.encode_utf8(&mut [0; 4]));
        if !forms.contains(&f) {
            forms.push(f);
        }
    }
    forms
}

/// The row of `index` holding (a, b): as typed (or in another Unicode normal form,
/// [`Index::lookup`]) first, so a stored pair spelled exactly so always wins, else with its
/// apostrophes spelled otherwise ([`APOSTROPHES`]; `qi’anxin` typed is the stored
/// `qi'anxin`, and the other way round).
pub fn lookup_row(index: &Index, a: &str, b: &str) -> Result<Option<usize>> {
    if let Some(row) = index.lookup(a, b)? {
        return Ok(Some(row));
    }
    for (h, t) in apostrophe_spellings(a, b) {
        if let Some(row) = index.lookup(&h, &t)? {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

fn words_of(s: &str) -> impl Iterator<Item = String> + '_ {
    // ASCII words (most) skip the decomposition, which leaves them as they are.
    s.split_whitespace()
        .map(|w| {
            if w.is_ascii() {
                w.to_ascii_lowercase()
            } else {
                fold_word(w).collect()
            }
        })
        // A word of invisible characters only is no word.
        .filter(|w| !w.is_empty())
}

/// The words of a pair as [`fold_word`] gives them (multi-word terms split on spaces): two
/// pairs "share a word", and a query leaves a result out, when these overlap.
pub fn pair_words<'a>(head: &'a str, tail: &'a str) -> impl Iterator<Item = String> + 'a {
    words_of(head).chain(words_of(tail))
}

/// `words` (from [`pair_words`]) plus the forms older relbert wrote of them, without
/// repeats: the `words` a Qdrant point carries and a query to Qdrant matches. Collections
/// written before words were decomposed hold the lower-cased NFC form of most text, and
/// before `ς` was folded to `σ` ([`fold_word`]) a word typed with its final sigmas kept
/// them, at the end of the word or of any run of letters in it (`λόγος-κόσμος`); matching
/// every such form keeps their filter working. Before apostrophes were folded, a word kept
/// the one it was typed with (`’`, `ʼ`), so each form with `'` comes in those spellings too.
/// What a form misses still does not come back: [`QueryEngine::search_store`] drops any hit
/// [`shares_word`] says shares a word.
pub fn with_nfc_forms(words: Vec<String>) -> Vec<String> {
    let mut out = words.clone();
    for w in words {
        let c: String = w.nfc().collect();
        let finals = [final_sigmas(&w), final_sigmas(&c)];
        let mut forms: Vec<String> = std::iter::once(w.clone())
            .chain(std::iter::once(c))
            .chain(finals.into_iter().flatten())
            .collect();
        if w.contains('\'') {
            let typed: Vec<String> = forms
                .iter()
                .flat_map(|f| respelled(f).into_iter().skip(1))
                .collect();
            forms.extend(typed);
        }
        for form in forms {
            if !form.is_empty() && !out.contains(&form) {
                out.push(form);
            }
        }
    }
    out
}

/// `w` with `ς` for every `σ` that ends a run of letters, or `None` when there is no such
/// `σ`: an approximation of Unicode's Final_Sigma (a letter before, none after, combining
/// marks skipped both ways; Unicode skips every case-ignorable character, such as `'`, and
/// asks for a cased letter). A form it misses (`α'ς`) only misses the Qdrant filter: the
/// search loop drops a hit sharing a word by [`shares_word`] all the same, and asks for more.
fn final_sigmas(w: &str) -> Option<String> {
    let chars: Vec<char> = w.chars().collect();
    let letter_at = |mut i: usize, step: isize| -> bool {
        // From `i`, moving by `step`, past combining marks: is the next other char a letter?
        loop {
            match chars.get(i) {
                Some(&c) if is_combining_mark(c) => {}
                Some(&c) => return c.is_alphabetic(),
                None => return false,
            }
            match i.checked_add_signed(step) {
                Some(n) => i = n,
                None => return false,
            }
        }
    };
    let mut changed = false;
    let out: String = chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let ends_run = c == 'σ' && i > 0 && letter_at(i - 1, -1) && !letter_at(i + 1, 1);
            if ends_run {
                changed = true;
                'ς'
            } else {
                c
            }
        })
        .collect();
    changed.then_some(out)
}

/// Whether (head, tail) has a word of `query_words` (from [`pair_words`]). Compares folded
/// characters as they stream instead of allocating each word: the search calls it for every
/// candidate it visits.
pub fn shares_word(query_words: &[String], head: &str, tail: &str) -> bool {
    head.split_whitespace()
        .chain(tail.split_whitespace())
        .any(|w| {
            query_words.iter().any(|q| {
                if w.is_ascii() && q.is_ascii() {
                    w.eq_ignore_ascii_case(q)
                } else {
                    fold_word(w).eq(q.chars())
                }
            })
        })
}

/// A score at or above which two spellings of a pair that differ only by accents count as
/// one pair: the model gives them one vector (an uncased BERT strips accents before its
/// vocabulary), up to rounding in the stored number format. Spellings whose vectors differ
/// by more than rounding are two pairs to the model, and results like any other.
const SAME_VECTOR: f32 = 0.999;

/// A query pair's spellings, to leave the pair itself out of its own results in every form
/// it may be stored in, not only the exact one (which the store leaves out by itself).
///
/// Two spellings are one pair when their words are equal after [`fold_word`] (case and
/// Unicode normal form) and runs of spaces: "Paris : France" asked with
/// `--keep-shared-words` of an index that stores "paris : france", or NFD against NFC.
/// When the words differ only by accents ("cafe : creme" and "café : crème"), they are one
/// pair only when the model gives them one vector (score ≥ 0.999): an uncased model strips
/// accents, so the stored spelling came back as the query's first result at score 1.000;
/// a cased or accent-aware model tells them apart, and then the other spelling is a result
/// like any other ("ano" and "año" are two words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpellingKey {
    folded: [String; 2],
    bare: [String; 2],
}

impl SpellingKey {
    /// The key of (head, tail).
    pub fn new(head: &str, tail: &str) -> Self {
        let folded = |t: &str| words_of(t).collect::<Vec<_>>().join(" ");
        // Joiners too: a tokenizer that drops format characters (an uncased BERT) gives
        // `کتاب‌ها` with its ZWNJ and `کتابها` one vector (an audit found both returned).
        let bare = |f: &str| {
            f.chars()
                .filter(|&c| !is_combining_mark(c) && !crate::corpus::tokenize::joiner_char(c))
                .collect()
        };
        let folded = [folded(head), folded(tail)];
        let bare = [bare(&folded[0]), bare(&folded[1])];
        SpellingKey { folded, bare }
    }

    /// Whether `hit` is this pair in another spelling (see the type's docs). Runs on every
    /// hit of every query (the server answers thousands a second), so the folded words are
    /// compared as they stream, without building the hit's key unless its score asks for
    /// the accent test.
    pub fn is_same_pair(&self, hit: &QueryHit) -> bool {
        let [head, tail] = &hit.pair;
        if folds_to(head, &self.folded[0]) && folds_to(tail, &self.folded[1]) {
            return true;
        }
        hit.score >= SAME_VECTOR && SpellingKey::new(head, tail).bare == self.bare
    }
}

/// Whether `term`'s words, folded ([`fold_word`]) and joined by single spaces, are `folded`.
fn folds_to(term: &str, folded: &str) -> bool {
    let mut want = folded.split(' ');
    // As [`words_of`] leaves out a word of invisible characters only.
    let mut words = term
        .split_whitespace()
        .filter(|w| !w.chars().all(crate::corpus::tokenize::invisible));
    let words_equal = words.all(|w| match want.next() {
        Some(f) if w.is_ascii() && f.is_ascii() => w.eq_ignore_ascii_case(f),
        Some(f) => fold_word(w).eq(f.chars()),
        None => false,
    });
    // An empty term has no words; `split` still yields one empty piece.
    words_equal && (want.next().is_none() || folded.is_empty())
}

/// Up to this many hits, [`distinct_hits`] compares an ASCII hit with each kept one in place
/// (nothing allocated, the server's usual k); past it, by hash ([`ascii_pair_hash`]).
const ASCII_SCAN_LIMIT: usize = 64;

/// A hash of an ASCII pair's words as [`ascii_words_equal`] compares them (case ignored,
/// runs of whitespace one), so that pairs it calls equal hash alike.
fn ascii_pair_hash(pair: &[String; 2]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    for term in pair {
        for word in term.split_whitespace() {
            for b in word.bytes() {
                h.write_u8(b.to_ascii_lowercase());
            }
            // Apart from the bytes, so that "ab c" and "a bc" differ.
            h.write_u8(b' ');
        }
        h.write_u8(0);
    }
    h.finish()
}

/// Whether two ASCII terms have the same words ignoring case, as [`words_of`] folds them.
fn ascii_words_equal(a: &str, b: &str) -> bool {
    let (mut x, mut y) = (a.split_whitespace(), b.split_whitespace());
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p.eq_ignore_ascii_case(q) => {}
            _ => return false,
        }
    }
}

/// Whether two stored vectors are one vector to the model, as [`SAME_VECTOR`] counts it
/// (cosine; `None`, a vector that could not be read, is not).
fn same_vector(u: Option<&[f32]>, w: Option<&[f32]>) -> bool {
    let (Some(u), Some(w)) = (u, w) else {
        return false;
    };
    let norms = (relbert_index::dot::dot(u, u) * relbert_index::dot::dot(w, w)).sqrt();
    norms > 0.0 && relbert_index::dot::dot(u, w) >= SAME_VECTOR * norms
}

/// Whether two hits' scores (cosines to one query vector) allow their vectors to be one
/// vector ([`same_vector`]): unit vectors at cosine `c` or more differ by at most
/// `√(2 − 2c)` in length, and so in their cosines to any unit query. Spares the vector
/// reads for accent twins that score apart.
fn scores_allow_one_vector(a: f32, b: f32) -> bool {
    (a - b).abs() <= (2.0 - 2.0 * SAME_VECTOR).sqrt() + 1e-4
}

/// `hits` (best first) less the query pair in another spelling ([`SpellingKey::is_same_pair`])
/// and less every hit that is an earlier hit in another spelling: the same words after
/// [`fold_word`] (case, Unicode normal form, runs of spaces), or the same words but for
/// accents when `one_vector` says the model gave both one vector (an uncased model stores
/// "café : crème" and "cafe : creme" as one). The first, best-scored spelling stays.
fn distinct_hits<H>(
    hits: Vec<H>,
    key: &SpellingKey,
    hit: &impl Fn(&H) -> &QueryHit,
    one_vector: &impl Fn(&H, &H) -> Result<bool>,
) -> Result<Vec<H>> {
    use std::collections::{HashMap, HashSet};
    if hits
        .iter()
        .all(|h| hit(h).pair[0].is_ascii() && hit(h).pair[1].is_ascii())
    {
        // The common case, on the server's hot path: ASCII words fold by case alone and have
        // no accents, so an earlier hit in another spelling is one whose words match it
        // ignoring case, compared in place (no keys built, nothing allocated per hit).
        let mut kept: Vec<H> = Vec::with_capacity(hits.len());
        // Past a few dozen hits the kept ones are found by the hash of their folded words:
        // comparing each hit with every kept one made a query of k 100,000 run for minutes.
        let mut by_hash: rustc_hash::FxHashMap<u64, Vec<usize>> = Default::default();
        let hashed = hits.len() > ASCII_SCAN_LIMIT;
        for h in hits {
            let q = hit(&h);
            if key.is_same_pair(q) {
                continue;
            }
            let twin = |k: &H| {
                let p = hit(k);
                ascii_words_equal(&p.pair[0], &q.pair[0])
                    && ascii_words_equal(&p.pair[1], &q.pair[1])
            };
            if !hashed {
                if !kept.iter().any(twin) {
                    kept.push(h);
                }
                continue;
            }
            let slot = by_hash.entry(ascii_pair_hash(&q.pair)).or_default();
            if !slot.iter().any(|&i| twin(&kept[i])) {
                slot.push(kept.len());
                kept.push(h);
            }
        }
        return Ok(kept);
    }
    let mut kept: Vec<H> = Vec::with_capacity(hits.len());
    let mut folded: HashSet<[String; 2]> = HashSet::new();
    // Accent-stripped words → the kept hits that have them.
    let mut bare: HashMap<[String; 2], Vec<usize>> = HashMap::new();
    for h in hits {
        let q = hit(&h);
        if key.is_same_pair(q) {
            continue;
        }
        let k = SpellingKey::new(&q.pair[0], &q.pair[1]);
        if folded.contains(&k.folded) {
            continue;
        }
        let mut twin = false;
        for &i in bare.get(&k.bare).map(Vec::as_slice).unwrap_or(&[]) {
            if scores_allow_one_vector(hit(&kept[i]).score, q.score) && one_vector(&kept[i], &h)? {
                twin = true;
                break;
            }
        }
        if twin {
            continue;
        }
        folded.insert(k.folded);
        bare.entry(k.bare).or_default().push(kept.len());
        kept.push(h);
    }
    Ok(kept)
}

/// The best `k` hits that are neither the query pair in another spelling nor another
/// spelling of a better hit ([`distinct_hits`]; `one_vector` tells whether two hits have one
/// vector), nor share a word of `shared` ([`shares_word`]; empty: none is checked here), from
/// `search(n)`, which returns the store's best `n` hits. Asks for `k` first and for more only
/// when some were left out (rare: a pair stored in several spellings), until `k` remain or
/// the store has no more.
fn without_other_spellings<H>(
    k: usize,
    key: &SpellingKey,
    shared: &[String],
    hit: impl Fn(&H) -> &QueryHit,
    one_vector: impl Fn(&H, &H) -> Result<bool>,
    mut search: impl FnMut(usize) -> Result<Vec<H>>,
) -> Result<Vec<H>> {
    let mut want = k;
    loop {
        let mut hits = search(want)?;
        let got = hits.len();
        if !shared.is_empty() {
            hits.retain(|h| {
                let [head, tail] = &hit(h).pair;
                !shares_word(shared, head, tail)
            });
        }
        let mut kept = distinct_hits(hits, key, &hit, &one_vector)?;
        let left_out = got - kept.len();
        // Fewer than asked: the store has no more.
        if kept.len() >= k || got < want || k + left_out <= want {
            kept.truncate(k);
            return Ok(kept);
        }
        want = k + left_out;
    }
}

/// The words results must not share with (a, b): none when `keep_shared_words`.
fn excluded_words(a: &str, b: &str, opts: &QueryOptions) -> Vec<String> {
    if opts.keep_shared_words {
        Vec::new()
    } else {
        pair_words(a, b).collect()
    }
}

fn search_request<'a>(
    opts: &QueryOptions,
    exclude_pair: Option<(&'a str, &'a str)>,
    exclude_words: &'a [String],
) -> SearchRequest<'a> {
    SearchRequest {
        k: opts.k,
        exact: opts.exact,
        ef: opts.ef,
        exclude_pair,
        exclude_words,
    }
}

impl QueryEngine {
    /// Opens the local index; `model_dir` overrides the model recorded in it (it must be the
    /// same encoding function: same weights, template and aggregation).
    pub fn open(index_dir: &Path, model_dir: Option<PathBuf>) -> Result<Self> {
        Self::open_with(index_dir, model_dir, relbert_index::OpenOptions::default())
    }

    /// [`Self::open`] with the checks `opts` asks for at open, kept for the indexes
    /// [`Self::refresh`] follows: an exact search (`query --exact`) reads no graph and
    /// verifies each block of rows and pairs as it reads it, so it opens with the headers
    /// checked only ([`relbert_index::Verify::Headers`]) and answers from an index whose
    /// graph alone is damaged.
    pub fn open_with(
        index_dir: &Path,
        model_dir: Option<PathBuf>,
        opts: relbert_index::OpenOptions,
    ) -> Result<Self> {
        let store = LocalStore::new(Index::open_with(index_dir, opts)?);
        let stamp = store.index().id();
        let mut engine = Self::with_store(Box::new(store), model_dir);
        engine.stamp = Some(stamp);
        engine.open = opts;
        Ok(engine)
    }

    /// An engine over any store (a Qdrant collection, say); `model_dir` as in [`Self::open`].
    pub fn with_store(store: Box<dyn RelationStore>, model_dir: Option<PathBuf>) -> Self {
        QueryEngine {
            store,
            model_dir,
            encoder: None,
            words: None,
            stamp: None,
            refused: None,
            dtype: None,
            device: candle_core::Device::Cpu,
            open: relbert_index::OpenOptions::default(),
        }
    }

    /// Encodes queries at `dtype` instead of the format the store was built at (allowed, with
    /// a logged note: see [`crate::indexing::same_function`]). Takes effect when the model is
    /// next loaded, so call it before the first query.
    pub fn set_dtype(&mut self, dtype: Dtype) {
        self.dtype = Some(dtype);
    }

    /// Runs the encoder on `device` (a GPU, say: queries still search the store on the CPU
    /// or the server). Takes effect when the model is next loaded, like [`Self::set_dtype`].
    pub fn set_device(&mut self, device: candle_core::Device) {
        self.device = device;
    }

    /// The store queries go to.
    pub fn store(&self) -> &dyn RelationStore {
        self.store.as_ref()
    }

    /// The open local index, when the store is one (`None` for a Qdrant collection).
    pub fn index(&self) -> Option<&Index> {
        self.store.local_index()
    }

    /// Whether the model has been loaded.
    pub fn model_loaded(&self) -> bool {
        self.encoder.is_some()
    }

    /// Loads the store's model now (so the first encoded query is not slowed by it).
    pub fn load_model(&mut self) -> Result<&RelationEncoder> {
        if self.encoder.is_none() {
            // Queries come one at a time.
            let enc = self.open_model(8)?;
            self.words = crate::embed::WordTokenizer::of(&enc);
            self.encoder = Some(enc);
        }
        self.loaded()
    }

    /// The model [`Self::load_model`] loaded (an error if none is).
    fn loaded(&self) -> Result<&RelationEncoder> {
        self.encoder.as_ref().ok_or_else(|| Error::InvalidArgument {
            flag: "--model".into(),
            message: "no model loaded".into(),
        })
    }

    /// Loads the store's model and returns it without keeping it, for a caller that runs
    /// the encoder elsewhere (the server runs it on its own batching thread) while sharing
    /// this engine's store. Fails if the model does not give the function the store was
    /// built with. `batch_size` is the most prompts per forward pass.
    pub fn open_model(&self, batch_size: usize) -> Result<RelationEncoder> {
        let opts = EncoderOptions {
            batch_size: batch_size.max(1),
            device: self.device.clone(),
            ..Default::default()
        };
        let place = PathBuf::from(self.store.describe());
        store_encoder(
            self.store.encoder(),
            &place,
            self.model_dir.as_deref(),
            self.dtype,
            opts,
        )
    }

    /// Follows a local index's directory: when it now holds another index than the one
    /// open (an `index add` or a `build --force` published a new one), opens that one and
    /// answers from it from now on. Returns whether it switched. Pairs it does not hold are
    /// encoded at its number format (the model is loaded again when it differs), unless
    /// [`Self::set_dtype`] chose the format: that stays, with the note a start-up logs when
    /// it differs from the index's. A new index of another pair function (another model,
    /// template, aggregation or tokenizer) is not followed, as `relbert serve` does not
    /// serve one: the open index keeps answering, and a warning, once per such index, says
    /// to restart the stream to answer from it. A new index that cannot be opened yet (a
    /// publication racing the open shows as files of two ids) is retried on the next call;
    /// the open index keeps answering meanwhile, so a reader sees the old state or the new
    /// one, never a mixture. Other stores never switch.
    ///
    /// The open index's files changed in place ([`Index::changed_in_place`]: copied over,
    /// not published by a rename) must not be read any more, so then the directory is opened
    /// again even when it holds the same id, and the index it holds once whole replaces the
    /// open one. Until then the open index stays, and a caller asks
    /// [`Index::changed_in_place`] before reading it (as a `query` stream does for every
    /// line): this call cannot make it readable.
    pub fn refresh(&mut self) -> Result<bool> {
        let Some(index) = self.index() else {
            return Ok(false);
        };
        // Found by an audit: a stream answered from files copied over the open ones (the
        // same id in `meta`, or files of two ids that never open) until it died of SIGBUS.
        let changed = index.changed_in_place().is_some();
        let Ok(stamp) = Index::read_id(index.dir()) else {
            return Ok(false);
        };
        if !changed && self.stamp.as_ref() == Some(&stamp) {
            return Ok(false);
        }
        // Refused before, and said: not opened again at every line.
        if self.refused.as_ref() == Some(&stamp) {
            return Ok(false);
        }
        let Ok(next) = Index::open_with(index.dir(), self.open) else {
            return Ok(false);
        };
        let (open_id, next_id) = (index.id(), next.id());
        let same_id = next_id == open_id;
        let (was, now) = (index.meta().encoder.clone(), next.meta().encoder.clone());
        let dir = index.dir().to_path_buf();
        let same_fn = same_function(&was, &now);
        self.stamp = Some(stamp);
        if same_id && !changed {
            return Ok(false);
        }
        if !same_fn {
            // Not followed, as `relbert serve` does not serve it (found by a review: the
            // stream dropped its encoder and answered stored pairs from the new index, with
            // a `--model` of the old function too, which a one-shot query refuses, and only
            // an info line said so). Said once per such index: a stream whose open index was
            // changed in place looks again at every line.
            if self.refused.as_ref() != Some(&next_id) {
                let meanwhile = if changed {
                    format!(
                        "lines are not answered meanwhile (the files of index {open_id} were \
                         changed in place)"
                    )
                } else {
                    format!("still answering from index {open_id}")
                };
                tracing::warn!(
                    "{} now holds index {next_id}, built with another model or pair function \
                     ({}) than index {open_id}, which this stream answers from ({}): not \
                     followed, its vectors are not comparable with the ones this stream \
                     encodes (it differs in: {}); {meanwhile}; restart the query stream to \
                     answer from it",
                    dir.display(),
                    now.model,
                    was.model,
                    crate::indexing::function_difference(&now, &was).join("; ")
                );
                self.refused = Some(next_id);
            }
            return Ok(false);
        }
        self.refused = None;
        if dtype_name(&was) != dtype_name(&now) {
            // The format is followed as the model is, unless `--dtype` chose one (found by an
            // audit: a stream kept encoding at the replaced index's format without a word).
            match self.dtype {
                None => {
                    self.encoder = None;
                    tracing::info!(
                        "{} now holds an index built at {}: pairs it does not hold are encoded \
                         at {} from now on (the index it replaced was built at {})",
                        dir.display(),
                        dtype_name(&now),
                        dtype_name(&now),
                        dtype_name(&was)
                    );
                }
                // The note a model loaded at `d` logs; a model not loaded yet logs it then.
                Some(d) if self.encoder.is_some() => {
                    if let Some(note) = dtype_note_at(&now, d) {
                        tracing::warn!("{note}");
                    }
                }
                Some(_) => {}
            }
        }
        self.store = Box::new(LocalStore::new(next));
        Ok(true)
    }

    /// The local index, or an error naming the store for callers that need rows (the
    /// server's plot and suggestions).
    pub fn local(&self) -> Result<&Index> {
        self.index().ok_or_else(|| Error::InvalidArgument {
            flag: "--index".into(),
            message: format!("{} is not a local index", self.store.describe()),
        })
    }

    /// The stored relation vector of (a, b), if the store holds the pair, with its row for a
    /// local index. The pair is found in another Unicode normal form too ("café" typed
    /// decomposed finds the stored precomposed "café"): a local index looks there itself
    /// ([`Index::lookup`]), another store is asked for the NFC and NFD spellings in turn.
    /// Then its apostrophes are tried in their other spellings ([`lookup_row`]): the pair as
    /// typed, in any normal form, is found first.
    pub fn stored(&self, a: &str, b: &str) -> Result<Option<(Vec<f32>, Option<usize>)>> {
        if let Some(index) = self.index() {
            return match lookup_row(index, a, b)? {
                Some(row) => Ok(Some((index.vector(row)?.into_owned(), Some(row)))),
                None => Ok(None),
            };
        }
        if let Some(v) = self.store.lookup(a, b)? {
            return Ok(Some((v, None)));
        }
        if a.is_ascii() && b.is_ascii() && !a.contains('\'') && !b.contains('\'') {
            return Ok(None);
        }
        let mut tried = vec![(a.to_string(), b.to_string())];
        let typed = (a.to_string(), b.to_string());
        for (x, y) in std::iter::once(typed).chain(apostrophe_spellings(a, b)) {
            let nfc: (String, String) = (x.nfc().collect(), y.nfc().collect());
            let nfd: (String, String) = (x.nfd().collect(), y.nfd().collect());
            for form in [(x, y), nfc, nfd] {
                if tried.contains(&form) {
                    continue;
                }
                if let Some(v) = self.store.lookup(&form.0, &form.1)? {
                    return Ok(Some((v, None)));
                }
                tried.push(form);
            }
        }
        Ok(None)
    }

    /// A query line read as the pair the store holds when the line can be read two ways
    /// ([`query_line_readings`], [`Self::held_reading`]); otherwise as [`parse_query_line`]
    /// reads it. `None`: not a pair.
    pub fn read_query_line(&self, line: &str) -> Result<Option<(String, String)>> {
        let mut readings = query_line_readings(line);
        if readings.is_empty() {
            return Ok(None);
        }
        let i = self.held_reading(&readings)?;
        Ok(Some(readings.swap_remove(i)))
    }

    /// Which of a line's `readings` ([`query_line_readings`], the default first) is asked:
    /// the first the store holds as typed, else the first it holds in lower case, else the
    /// first. Words compare without case, but a stored pair is looked up as spelled
    /// ([`Index::lookup`]), so `Re:Invent conference` was read by its colon, as
    /// (`Re`, `Invent conference`), beside a stored (`re:invent`, `conference`) that its
    /// lower-case line found (found by a review); lower case is how pair files and the
    /// bundled vocabulary mostly spell their pairs. The reading is kept as typed: as
    /// `Paris France` beside a stored `paris france` is, it is encoded (a cased model gives
    /// it another vector) and the stored spelling is left out of its results. One reading
    /// is taken without a lookup.
    pub fn held_reading(&self, readings: &[(String, String)]) -> Result<usize> {
        if readings.len() < 2 {
            return Ok(0);
        }
        for (i, (a, b)) in readings.iter().enumerate() {
            if self.stored(a, b)?.is_some() {
                return Ok(i);
            }
        }
        for (i, (a, b)) in readings.iter().enumerate() {
            // `str::to_lowercase` writes a word-final sigma `ς`, as a file spells it.
            let (la, lb) = (a.to_lowercase(), b.to_lowercase());
            if (la != *a || lb != *b) && self.stored(&la, &lb)?.is_some() {
                return Ok(i);
            }
        }
        Ok(0)
    }

    /// The relation vector of (a, b): from the store if stored, else encoded. The third
    /// value is the pair's row for a local index (`None` for other stores and encoded pairs).
    /// An encoded pair warns (once) of its words the tokenizer reads as its unknown token
    /// alone, as `embed` and `index build` warn of a pair file's (found by a review: a
    /// fullwidth `Ｐａｒｉｓ` was `[UNK]` to the model, and the query's nonsense results came
    /// without a word).
    pub fn vector(&mut self, a: &str, b: &str) -> Result<(Vec<f32>, Source, Option<usize>)> {
        if let Some((v, row)) = self.stored(a, b)? {
            return Ok((v, Source::Index, row));
        }
        self.load_model()?;
        let enc = self.loaded()?;
        let v = enc.embed(&[(a, b)])?.pop().unwrap_or_default();
        if let Some(wt) = &self.words {
            crate::embed::warn_unknown_query_words(wt, "the query", a, b, UNKNOWN_QUERY_OUTCOME);
        }
        if let Some(w) = enc.offset_weight() {
            if crate::analogy::lacks_offset(&v) {
                crate::embed::warn_shared_word_vector(
                    "the query",
                    a,
                    b,
                    0,
                    &crate::embed::no_offset_consequence(w),
                );
            }
        }
        Ok((v, Source::Encoded, None))
    }

    /// The `k` pairs whose relation is most similar to (a, b)'s, excluding the query pair
    /// itself and, unless asked, pairs that share a word with it.
    pub fn query(
        &mut self,
        a: &str,
        b: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<QueryHit>, Source)> {
        let (v, source, _) = self.vector(a, b)?;
        Ok((self.search_store(a, b, &v, source, opts)?, source))
    }

    /// The search half of [`Self::query`] on any store, for a vector in hand: `v` is (a, b)'s
    /// relation vector, from `source` (a stored pair is left out of its own results). Takes
    /// `&self`, so one engine answers many threads at once.
    pub fn search_store(
        &self,
        a: &str,
        b: &str,
        v: &[f32],
        source: Source,
        opts: &QueryOptions,
    ) -> Result<Vec<QueryHit>> {
        let query_words = excluded_words(a, b, opts);
        let exclude = (source == Source::Index).then_some((a, b));
        let key = SpellingKey::new(a, b);
        let vector_of = |h: &QueryHit| self.store.lookup(&h.pair[0], &h.pair[1]);
        // Checked here too, whatever the store's own filter did: a Qdrant collection an older
        // relbert wrote may hold a word in a form its filter does not match
        // ([`with_nfc_forms`]), and such a hit must not come back.
        without_other_spellings(
            opts.k,
            &key,
            &query_words,
            |h| h,
            |x, y| {
                Ok(same_vector(
                    vector_of(x)?.as_deref(),
                    vector_of(y)?.as_deref(),
                ))
            },
            |k| {
                let req =
                    search_request(&QueryOptions { k, ..opts.clone() }, exclude, &query_words);
                self.store.search(v, &req)
            },
        )
    }

    /// The search half of [`Self::query`], for a vector already in hand: `v` is (a, b)'s
    /// relation vector and `self_row` its row if the index stores it. Each hit comes with
    /// its row (the server reads the hits' vectors by it). `words` is the index's
    /// [`WordTable`], if the caller keeps one. Takes `&self`, so one engine answers many
    /// threads at once.
    pub fn search_rows(
        &self,
        a: &str,
        b: &str,
        v: &[f32],
        self_row: Option<usize>,
        opts: &QueryOptions,
        words: Option<&WordTable>,
    ) -> Result<Vec<(usize, QueryHit)>> {
        let query_words = excluded_words(a, b, opts);
        let index = self.local()?;
        let key = SpellingKey::new(a, b);
        // The local search leaves out pairs sharing a word itself ([`search_local`]).
        without_other_spellings(
            opts.k,
            &key,
            &[],
            |(_, h)| h,
            |(x, _), (y, _)| {
                Ok(same_vector(
                    Some(&index.vector(*x)?),
                    Some(&index.vector(*y)?),
                ))
            },
            |k| {
                let req = search_request(&QueryOptions { k, ..opts.clone() }, None, &query_words);
                search_local(index, v, &req, self_row, words)
            },
        )
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
        // A colon inside one of two words: both readings, the colon's first.
        assert_eq!(
            query_line_readings("re:invent conference"),
            vec![
                ("re".to_string(), "invent conference".to_string()),
                ("re:invent".to_string(), "conference".to_string())
            ]
        );
        assert_eq!(query_line_readings("paris:france").len(), 1);
        assert_eq!(
            query_line_readings("a:b:c d"),
            vec![("a:b:c".into(), "d".into())]
        );
    }

    /// Audit s26: `paris :` (the tail forgotten) was asked as (`paris`, `:`) and ` : france`
    /// as (`:`, `france`) by their two space-separated words, while `paris:` was refused
    /// for its empty word. A colon alone is the separator, not a word: no reading.
    #[test]
    fn a_colon_alone_is_no_word() {
        for line in ["paris :", " : france", "paris \u{200b}:", "paris ::", ": :"] {
            assert_eq!(query_line_readings(line), Vec::new(), "{line:?}");
        }
        // A colon inside a word still reads both ways.
        assert_eq!(
            query_line_readings("a:b c"),
            vec![
                ("a".to_string(), "b c".to_string()),
                ("a:b".to_string(), "c".to_string())
            ]
        );
    }

    /// Audit (s20): invisible format characters (a soft hyphen, a zero width space, a
    /// byte-order mark, a word joiner), which the tokenizer drops, stayed in a query's words:
    /// the stored pair was encoded and came back as its own result, and a result sharing a
    /// word with the query was kept. A line's words are read without them, and the
    /// comparisons of words leave them out (a pair stored by an older relbert may hold them).
    #[test]
    fn invisible_characters_are_no_part_of_a_query_word() {
        let p = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(parse_query_line("dog\tpup\u{ad}py\n"), p("dog", "puppy"));
        assert_eq!(parse_query_line("\u{200b}dog cat"), p("dog", "cat"));
        assert_eq!(
            parse_query_line("\u{feff}sun:moon\u{2060}"),
            p("sun", "moon")
        );
        assert_eq!(parse_query_line("\u{200b} dog\tcat"), p("dog", "cat"));
        assert_eq!(parse_query_line("dog \u{200b}"), None);
        // The joiners are spelling, and stay.
        assert_eq!(
            parse_query_line("a\u{200d}b c\u{200c}d"),
            p("a\u{200d}b", "c\u{200c}d")
        );
        assert_eq!(
            query_line_readings("\u{200b}re:invent con\u{ad}ference"),
            vec![
                ("re".to_string(), "invent conference".to_string()),
                ("re:invent".to_string(), "conference".to_string())
            ]
        );
        let q: Vec<String> = pair_words("dog", "cat").collect();
        assert!(shares_word(&q, "\u{200b}dog", "x"));
        assert!(shares_word(&q, "x", "c\u{ad}at"));
        let q: Vec<String> = pair_words("dog", "\u{200b} puppy").collect();
        assert_eq!(q, ["dog", "puppy"]);
        let key = SpellingKey::new("dog", "puppy");
        let hit = |a: &str, b: &str| QueryHit {
            pair: [a.to_string(), b.to_string()],
            score: 0.5,
            label: None,
        };
        assert!(key.is_same_pair(&hit("dog", "pup\u{ad}py")));
        assert!(key.is_same_pair(&hit("dog\u{2060}", "\u{200b} puppy")));
        assert!(!key.is_same_pair(&hit("dog", "pup")));
    }

    #[test]
    fn shared_words_ignore_case() {
        let q: Vec<String> = pair_words("Paris", "New York").collect();
        assert!(shares_word(&q, "york", "city"));
        assert!(shares_word(&q, "ÉCOLE PARIS", "x"));
        assert!(!shares_word(&q, "london", "england"));
        assert!(!shares_word(&q, "pari", "yorkshire"));
        let q: Vec<String> = pair_words("École", "x").collect();
        assert!(shares_word(&q, "ÉCOLE", "y"));
        // A word-final capital sigma lowers the same way on both sides.
        let q: Vec<String> = pair_words("ΟΔΟΣ", "πόλη").collect();
        assert!(shares_word(&q, "ΟΔΟΣ", "χώρα"));
        assert!(shares_word(&q, "οδοσ", "χώρα"));
    }

    #[test]
    fn spellings_of_one_pair() {
        let hit = |a: &str, b: &str, score: f32| QueryHit {
            pair: [a.into(), b.into()],
            score,
            label: None,
        };
        // NFD against NFC, and case: one word, one pair, at any score.
        let q: Vec<String> = pair_words("e\u{301}cole", "x").collect();
        assert!(shares_word(&q, "ÉCOLE", "y"));
        let key = SpellingKey::new("E\u{301}cole", "New  York");
        assert!(key.is_same_pair(&hit("école", "new york", 0.2)));
        assert!(!key.is_same_pair(&hit("école", "york", 1.0)));
        // Accents only: one pair when the model gives it the query's vector.
        let key = SpellingKey::new("cafe", "creme");
        assert!(key.is_same_pair(&hit("café", "crème", 0.9999)));
        assert!(!key.is_same_pair(&hit("café", "crème", 0.95)));
        // The streaming comparison agrees with the key's folded words.
        let terms = [
            "New  York",
            "new york",
            "NEW",
            "É cole",
            "e\u{301} COLE",
            "ΟΔΟΣ",
            "οδοσ",
            "",
            "a b c",
        ];
        for a in terms {
            for b in terms {
                let want = SpellingKey::new(a, "x").folded[0] == SpellingKey::new(b, "x").folded[0];
                assert_eq!(
                    folds_to(a, &SpellingKey::new(b, "x").folded[0]),
                    want,
                    "{a:?} {b:?}"
                );
            }
        }
        // Qdrant points carry the NFC form too, as collections written before held.
        assert_eq!(
            with_nfc_forms(pair_words("É", "b").collect()),
            vec!["e\u{301}".to_string(), "b".into(), "é".into()]
        );
        // And the final sigma older relbert kept (audit U of s20).
        assert_eq!(
            with_nfc_forms(pair_words("ΟΔΟΣ", "b").collect()),
            vec!["οδοσ".to_string(), "b".into(), "οδος".into()]
        );
    }

    /// Audit U (s20): `ΛΌΓΟΣ` and `λόγος` were two words (`char::to_lowercase` gives `σ`
    /// at a word's end, the typed word has `ς`), so the query pair came back in its other
    /// case and a result came back twice; spellings an uncased BERT gives one vector that
    /// differ by a joiner (Persian `کتاب‌ها` with its ZWNJ, `کتابها`) were two pairs.
    #[test]
    fn final_sigma_and_joiners() {
        let q: Vec<String> = pair_words("λόγος", "κόσμος").collect();
        assert!(shares_word(&q, "ΛΌΓΟΣ", "x"));
        assert!(shares_word(&q, "x", "κόσμοσ"));
        let key = SpellingKey::new("λόγος", "κόσμος");
        let hit = |a: &str, b: &str, score: f32| QueryHit {
            pair: [a.into(), b.into()],
            score,
            label: None,
        };
        assert!(key.is_same_pair(&hit("ΛΌΓΟΣ", "ΚΌΣΜΟΣ", 0.2)));
        assert!(folds_to("ΛΌΓΟΣ", &key.folded[0]));
        let key = SpellingKey::new("کتابها", "فارسی");
        assert!(key.is_same_pair(&hit("کتاب\u{200c}ها", "فارسی", 1.0)));
        // A joiner is spelling to a model that keeps it: another vector, another pair.
        assert!(!key.is_same_pair(&hit("کتاب\u{200c}ها", "فارسی", 0.95)));
    }

    /// The best `n` of `all` (in score order) as a store's search gives them.
    fn best_of(all: &[(&str, &str, f32)], n: usize) -> Result<Vec<QueryHit>> {
        Ok(all
            .iter()
            .take(n)
            .map(|(a, b, s)| QueryHit {
                pair: [a.to_string(), b.to_string()],
                score: *s,
                label: None,
            })
            .collect())
    }

    #[test]
    fn other_spellings_are_replaced_by_the_next_hits() {
        let all = [
            ("paris", "france", 1.0),
            ("Paris", "France", 0.99),
            ("rome", "italy", 0.9),
        ];
        let hits = |n: usize| best_of(&all, n);
        let never = |_: &QueryHit, _: &QueryHit| Ok(false);
        let key = SpellingKey::new("PARIS", "FRANCE");
        let got = without_other_spellings(2, &key, &[], |h| h, never, hits).unwrap();
        assert_eq!(got.len(), 1, "the store has one other pair");
        assert_eq!(got[0].pair[0], "rome");
        // Another query: "Paris : France" is "paris : france" again, and rome comes up.
        let key = SpellingKey::new("oslo", "norway");
        let got = without_other_spellings(2, &key, &[], |h| h, never, hits).unwrap();
        let pairs: Vec<&str> = got.iter().map(|h| h.pair[0].as_str()).collect();
        assert_eq!(pairs, ["paris", "rome"]);
    }

    /// Found by a review: past a few dozen ASCII hits each was compared with every kept one
    /// (a query of k 100,000 ran for minutes). The hashed path keeps what the scan keeps: the
    /// first spelling of each pair, whitespace runs and case folded, words not run together.
    #[test]
    fn many_ascii_hits_keep_the_first_spelling_of_each_pair_as_few_do() {
        let hit = |a: String, b: String| QueryHit {
            pair: [a, b],
            score: 0.5,
            label: None,
        };
        let mut hits = Vec::new();
        for i in 0..200 {
            hits.push(hit(format!("w{i} x"), format!("t{}", i % 7)));
            hits.push(hit(format!("W{i}  X"), format!("T{}", i % 7)));
            hits.push(hit(format!("w{i}x"), format!("t{}", i % 7)));
        }
        hits.push(hit("QUERY".into(), "pair".into()));
        let key = SpellingKey::new("query", "PAIR");
        let never = |_: &QueryHit, _: &QueryHit| Ok(false);
        let kept = |hits: &[QueryHit]| -> Vec<[String; 2]> {
            distinct_hits(hits.to_vec(), &key, &|h| h, &never)
                .unwrap()
                .into_iter()
                .map(|h| h.pair)
                .collect()
        };
        let many = kept(&hits);
        assert_eq!(many.len(), 400);
        // The scan's answer, a few hits at a time.
        let scanned: Vec<[String; 2]> = hits.chunks(3).flat_map(kept).collect();
        assert_eq!(many, scanned);
        assert!(many.iter().all(|p| !p[0].starts_with('W')));
    }

    /// Found by an audit: `paris : france`, `Paris : France` and `PARIS : FRANCE` came back
    /// at ranks 2–4 of one query (an uncased model gives them one vector), and "café : crème"
    /// twice (NFC and NFD). Each pair comes back once, in its best-scored spelling; accent
    /// twins only when their vectors are one vector.
    #[test]
    fn a_result_in_another_spelling_of_a_better_one_is_left_out() {
        let hit = |a: &str, b: &str, score: f32| QueryHit {
            pair: [a.into(), b.into()],
            score,
            label: None,
        };
        let hits = vec![
            hit("london", "england", 0.9),
            hit("paris", "france", 0.717),
            hit("Paris", "France", 0.717),
            hit("PARIS", "FRANCE", 0.717),
            hit("caf\u{e9}", "cr\u{e8}me", 0.7),
            hit("cafe\u{301}", "cre\u{300}me", 0.7),
            hit("cafe", "creme", 0.7),
            hit("ano", "x", 0.6),
            hit("a\u{f1}o", "x", 0.6),
            hit("resume", "cv", 0.5),
            hit("r\u{e9}sum\u{e9}", "cv", 0.2),
        ];
        let key = SpellingKey::new("berlin", "germany");
        // The model's vectors: "cafe" and "café" one vector (uncased), "ano" and "año" two.
        let one = |x: &QueryHit, y: &QueryHit| {
            let bare = |h: &QueryHit| SpellingKey::new(&h.pair[0], &h.pair[1]).bare;
            Ok(bare(x) == bare(y) && x.pair[0] != "ano" && y.pair[0] != "ano")
        };
        let got = without_other_spellings(
            10,
            &key,
            &[],
            |h| h,
            one,
            |n| Ok(hits.iter().take(n).cloned().collect()),
        )
        .unwrap();
        let pairs: Vec<&str> = got.iter().map(|h| h.pair[0].as_str()).collect();
        assert_eq!(
            pairs,
            [
                "london",
                "paris",
                "caf\u{e9}",
                "ano",
                "a\u{f1}o",
                "resume",
                "r\u{e9}sum\u{e9}"
            ]
        );
        // Asked for 3: the left-out spellings are replaced by the next hits.
        let got = without_other_spellings(
            3,
            &key,
            &[],
            |h| h,
            one,
            |n| Ok(hits.iter().take(n).cloned().collect()),
        )
        .unwrap();
        let pairs: Vec<&str> = got.iter().map(|h| h.pair[0].as_str()).collect();
        assert_eq!(pairs, ["london", "paris", "caf\u{e9}"]);
        // Scores too far apart for one vector: the vectors are not read.
        let far = without_other_spellings(
            10,
            &key,
            &[],
            |h| h,
            |_, _| panic!("read the vectors of hits that score apart"),
            |_| {
                Ok(vec![
                    hit("resume", "cv", 0.5),
                    hit("r\u{e9}sum\u{e9}", "cv", 0.2),
                ])
            },
        )
        .unwrap();
        assert_eq!(far.len(), 2);
        assert!(same_vector(Some(&[0.6, 0.8]), Some(&[3.0, 4.0])));
        assert!(!same_vector(Some(&[1.0, 0.0]), Some(&[0.99, 0.14])));
        assert!(!same_vector(None, Some(&[1.0, 0.0])));
    }

    /// Review R10 (s20): an older Qdrant collection holds `λόγος-κόσμος` as one word, its
    /// `ς` before the hyphen; the filter added the `ς` form only at the very end of a word,
    /// so that pair was not left out of a query of λόγος-κόσμος. Every σ that ends a run of
    /// letters gets its final form, in the decomposed and the NFC word.
    #[test]
    fn final_sigma_forms_at_the_end_of_every_letter_run() {
        let forms = with_nfc_forms(pair_words("ΛΌΓΟΣ-ΚΌΣΜΟΣ", "x").collect());
        assert!(forms.contains(&"λόγος-κόσμος".to_string()), "{forms:?}");
        assert!(
            forms.contains(&"λο\u{301}γος-κο\u{301}σμος".to_string()),
            "{forms:?}"
        );
        assert_eq!(final_sigmas("σοφός"), None);
        assert_eq!(final_sigmas("σοφόσ").as_deref(), Some("σοφός"));
        // A σ starting a word, alone, or inside one is not final.
        assert_eq!(final_sigmas("σ"), None);
        assert_eq!(final_sigmas("κοσμ"), None);
        assert_eq!(final_sigmas("σ-σ"), None);
        // Combining marks are skipped both ways: `σ\u{301}` after a letter ends the run.
        assert_eq!(final_sigmas("ασ\u{301}.").as_deref(), Some("ας\u{301}."));
        assert_eq!(final_sigmas("ασ\u{301}β"), None);
    }

    /// Review R10 (s20): what a Qdrant filter misses (a form [`with_nfc_forms`] does not
    /// give) still does not come back: the shared loop drops a hit sharing a word, and asks
    /// for more to keep `k`.
    #[test]
    fn hits_sharing_a_word_are_dropped_and_replaced() {
        let all = [
            ("λόγος-κόσμος", "y", 0.9),
            ("rome", "italy", 0.8),
            ("oslo", "norway", 0.7),
        ];
        let hits = |n: usize| best_of(&all, n);
        let never = |_: &QueryHit, _: &QueryHit| Ok(false);
        let key = SpellingKey::new("ΛΌΓΟΣ-ΚΌΣΜΟΣ", "z");
        let words: Vec<String> = pair_words("ΛΌΓΟΣ-ΚΌΣΜΟΣ", "z").collect();
        let got = without_other_spellings(2, &key, &words, |h| h, never, hits).unwrap();
        let pairs: Vec<&str> = got.iter().map(|h| h.pair[0].as_str()).collect();
        assert_eq!(pairs, ["rome", "oslo"]);
    }

    /// Review R10 (s20): `dog \u{200b} puppy` (a lone invisible piece between spaces) was
    /// refused as three words; the piece is no word.
    #[test]
    fn a_lone_invisible_piece_is_no_word() {
        let p = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(parse_query_line("dog \u{200b} puppy"), p("dog", "puppy"));
        assert_eq!(
            parse_query_line("\u{feff} dog puppy \u{ad}"),
            p("dog", "puppy")
        );
        assert_eq!(parse_query_line("dog \u{200b}"), None);
        assert!(query_line_readings("re:invent \u{200b} conference")
            .contains(&("re:invent".to_string(), "conference".to_string())));
    }

    /// A store of `pairs` (each with a vector of its own) that finds nothing by search: what
    /// the reading of a line asks of a store.
    struct HeldPairs(
        Vec<(&'static str, &'static str)>,
        relbert_index::EncoderInfo,
    );

    impl RelationStore for HeldPairs {
        fn describe(&self) -> String {
            "held pairs".into()
        }
        fn encoder(&self) -> &relbert_index::EncoderInfo {
            &self.1
        }
        fn dim(&self) -> usize {
            1
        }
        fn count(&self) -> Result<u64> {
            Ok(self.0.len() as u64)
        }
        fn lookup(&self, head: &str, tail: &str) -> Result<Option<Vec<f32>>> {
            let held = self.0.iter().position(|&p| p == (head, tail));
            Ok(held.map(|i| vec![i as f32 + 1.0]))
        }
        fn search(&self, _: &[f32], _: &SearchRequest<'_>) -> Result<Vec<QueryHit>> {
            Ok(Vec::new())
        }
    }

    /// Found by a review: a line read two ways took the stored reading only when typed in the
    /// stored case (`Re:Invent conference` was read as `Re` : `Invent conference` beside a
    /// stored `re:invent` : `conference`). Lower case finds it now, kept as typed; a reading
    /// held as typed comes first, and a line held in no case keeps its colon's reading.
    #[test]
    fn a_line_read_two_ways_finds_the_stored_reading_in_any_case() {
        let store = HeldPairs(
            vec![
                ("re:invent", "conference"),
                ("re:λόγος", "y"),
                ("Mix", "Up:Down"),
            ],
            Default::default(),
        );
        let engine = QueryEngine::with_store(Box::new(store), None);
        let read = |line: &str| engine.read_query_line(line).unwrap();
        let p = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(read("re:invent conference"), p("re:invent", "conference"));
        assert_eq!(read("Re:Invent conference"), p("Re:Invent", "conference"));
        assert_eq!(read("RE:INVENT CONFERENCE"), p("RE:INVENT", "CONFERENCE"));
        // Lower-cased as a file spells it: a word-final sigma is `ς`.
        assert_eq!(read("RE:ΛΌΓΟΣ Y"), p("RE:ΛΌΓΟΣ", "Y"));
        // Held as typed, in mixed case: that reading, not the colon's.
        assert_eq!(read("Mix Up:Down"), p("Mix", "Up:Down"));
        assert_eq!(read("Re:Play conference"), p("Re", "Play conference"));
        assert_eq!(read("re:invent"), p("re", "invent"));
        assert_eq!(read("conference"), None);
    }

    /// An index of `pairs` (2-dimensional unit vectors, row `i` at angle `0.3 i`) at `dir/idx`.
    fn index_of(dir: &Path, pairs: &[(&str, &str)]) -> Index {
        use relbert_index::{EncoderInfo, HnswParams, IndexBuilder, IndexSpec, PairEntry};
        let out = dir.join("idx");
        let spec = IndexSpec {
            dim: 2,
            precision: relbert_index::Precision::F32,
            encoder: EncoderInfo::default(),
            input: "test".into(),
        };
        let mut b = IndexBuilder::create_or_resume(&out, spec, false).unwrap();
        let entries: Vec<PairEntry> = pairs.iter().map(|&(h, t)| PairEntry::new(h, t)).collect();
        let vectors: Vec<f32> = (0..pairs.len())
            .flat_map(|i| [(i as f32 * 0.3).cos(), (i as f32 * 0.3).sin()])
            .collect();
        b.append_chunk(&entries, &vectors).unwrap();
        let params = HnswParams {
            m: 2,
            ef_construction: 4,
            threads: 1,
            ..HnswParams::default()
        };
        b.finish(params, |_| {}).unwrap();
        Index::open(&out).unwrap()
    }

    /// Review (s30): `qi’anxin` typed (U+2019) missed the stored `qi'anxin` that `pairs mine`
    /// writes (it folds `’` and `ʼ` to `'`): the pair was encoded, and a result holding
    /// `qi'anxin` was kept as sharing no word. The apostrophes are one spelling in a word,
    /// both ways, for the shared-word test, the same-pair test and the server's word hashes.
    #[test]
    fn apostrophes_are_one_spelling_in_words() {
        for typed in ["qi’anxin", "QIʼANXIN", "qi'anxin"] {
            assert_eq!(fold_word(typed).collect::<String>(), "qi'anxin", "{typed}");
            let q: Vec<String> = pair_words("codesafe", typed).collect();
            for stored in ["qi'anxin", "qi’anxin", "qiʼanxin"] {
                assert!(shares_word(&q, "legendsec", stored), "{typed} {stored}");
                let hit = QueryHit {
                    pair: ["CodeSafe".into(), stored.into()],
                    score: 0.1,
                    label: None,
                };
                assert!(
                    SpellingKey::new("codesafe", typed).is_same_pair(&hit),
                    "{typed} {stored}"
                );
            }
            assert!(!shares_word(&q, "legendsec", "qianxin"));
        }
        // Another spelling of a better result is no result of its own.
        let hits = |b: &str| QueryHit {
            pair: ["rock".into(), b.into()],
            score: 0.5,
            label: None,
        };
        let kept = distinct_hits(
            vec![hits("don't"), hits("don’t"), hits("donʼt")],
            &SpellingKey::new("x", "y"),
            &|h: &QueryHit| h,
            &|_: &QueryHit, _: &QueryHit| Ok(false),
        )
        .unwrap();
        assert_eq!(kept.len(), 1, "{kept:?}");
        // Older Qdrant points kept the apostrophe as typed: their filter matches those too.
        assert_eq!(
            with_nfc_forms(vec!["it's".to_string()]),
            ["it's", "it’s", "itʼs"]
        );
    }

    /// Review (s30), continued: the stored pair is found whichever apostrophe it was typed
    /// or stored with; the pair spelled exactly as typed wins; the server's word table and
    /// the CLI's filter agree.
    #[test]
    fn a_stored_pair_is_found_with_another_apostrophe() {
        let tmp = tempfile::tempdir().unwrap();
        let pairs = [
            ("codesafe", "qi'anxin"),
            ("legendsec", "qi’anxin"),
            ("x", "it's"),
            ("x", "it’s"),
            ("o’neil", "rock'n'roll"),
            ("cat", "dog"),
        ];
        let index = index_of(tmp.path(), &pairs);
        let row = |a: &str, b: &str| lookup_row(&index, a, b).unwrap();
        assert_eq!(row("codesafe", "qi’anxin"), Some(0));
        assert_eq!(row("codesafe", "qiʼanxin"), Some(0));
        assert_eq!(row("legendsec", "qi'anxin"), Some(1));
        // A stored pair whose exact spelling matches wins; else the `'` spelling.
        assert_eq!(row("x", "it’s"), Some(3));
        assert_eq!(row("x", "it's"), Some(2));
        assert_eq!(row("x", "itʼs"), Some(2));
        // Each term in its own spelling.
        assert_eq!(row("o'neil", "rock’n’roll"), Some(4));
        assert_eq!(row("codesafe", "qianxin"), None);
        assert!(apostrophe_spellings("cat", "dog").is_empty());

        let engine = QueryEngine::open(&tmp.path().join("idx"), None).unwrap();
        let (_, at) = engine.stored("codesafe", "qi’anxin").unwrap().unwrap();
        assert_eq!(at, Some(0));
        // A store other than a local index is asked for the other spellings in turn.
        let store = HeldPairs(
            vec![("codesafe", "qi'anxin"), ("x", "it's"), ("x", "it’s")],
            Default::default(),
        );
        let other = QueryEngine::with_store(Box::new(store), None);
        let vector = |a: &str, b: &str| other.stored(a, b).unwrap().map(|(v, _)| v);
        assert_eq!(vector("codesafe", "qiʼanxin"), Some(vec![1.0]));
        assert_eq!(vector("x", "it’s"), Some(vec![3.0]));
        assert_eq!(vector("x", "itʼs"), Some(vec![2.0]));
        assert_eq!(vector("x", "its"), None);

        // The shared-word filter leaves out `legendsec : qi’anxin` for `qi'anxin` typed, with
        // the word table (the server) and without it (the CLI), and the stored pair's own
        // row for `qi’anxin` typed.
        let words: Vec<String> = pair_words("codesafe", "qi'anxin").collect();
        let table = WordTable::build(&index).unwrap();
        for typed in ["qi'anxin", "qi’anxin"] {
            let req = SearchRequest {
                k: 6,
                exact: true,
                ef: 6,
                exclude_pair: Some(("codesafe", typed)),
                exclude_words: &words,
            };
            let with_table: Vec<usize> =
                search_local(&index, &[1.0, 0.0], &req, None, Some(&table))
                    .unwrap()
                    .into_iter()
                    .map(|(r, _)| r)
                    .collect();
            let without: Vec<usize> = search_local(&index, &[1.0, 0.0], &req, None, None)
                .unwrap()
                .into_iter()
                .map(|(r, _)| r)
                .collect();
            assert_eq!(with_table, without, "{typed}");
            assert!(
                !with_table.contains(&1) && !with_table.contains(&0),
                "{with_table:?}"
            );
            let none: [String; 0] = [];
            let store = LocalStore::new(Index::open(tmp.path().join("idx")).unwrap());
            let hits = store
                .search(
                    &[1.0, 0.0],
                    &SearchRequest {
                        exclude_words: &none,
                        ..req
                    },
                )
                .unwrap();
            assert!(
                hits.iter().all(|h| h.pair[0] != "codesafe"),
                "{typed}: {hits:?}"
            );
        }
    }
}
