//! Pair suggestions as the user types: a prefix search over the store's pairs. Neither store
//! is keyed by prefix (a local index by exact pair, a Qdrant collection by point id), so the
//! server builds, at start-up, a sorted list of the pairs as `head:tail` strings folded
//! (lower-cased, accents left out) and answers a prefix with a binary search. For a million pairs this is a few tens
//! of MB and about a second to build from a local index. The list is made again with the
//! store: a local index's with each new index the server follows into its directory, a
//! collection's once pairs added to it have settled (`AppState::refresh_suggestions`).
//!
//! A local index keeps the pairs themselves (the list holds row numbers); a Qdrant collection
//! is listed with a paged scroll of the `head`, `tail` and `label` payload, and those
//! strings are kept here. A collection larger than [`MAX_LISTED`] pairs is not listed (it
//! would take minutes and gigabytes): suggestions are then off, and `/v1/suggest` answers an
//! empty list with a note saying why, while queries work as usual.

use qdrant_client::qdrant::{PayloadIncludeSelector, ScrollPointsBuilder};
use relbert_index::Index;

use crate::error::{Error, Result};
use crate::store::qdrant::{string_of, Connection, Hedge};

/// The most pairs of a Qdrant collection listed for suggestions.
pub const MAX_LISTED: u64 = 2_000_000;

/// Points per scroll page when listing a collection.
const PAGE: u32 = 2_000;

/// A suggested pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggested {
    /// First term.
    pub head: String,
    /// Second term.
    pub tail: String,
    /// The pair's label, if it has one.
    pub label: Option<String>,
}

/// The sorted `head:tail` keys of every pair in a store, with their rows.
pub struct Suggestions {
    keys: Vec<(String, u32)>,
    /// The pairs by row, for a store that is not a local index (empty for one).
    owned: Vec<Suggested>,
    /// Why there are no suggestions, when the store was too large to list.
    off: Option<String>,
}

fn key_of(head: &str, tail: &str) -> String {
    let key = fold(&format!("{head}:{tail}"));
    // Runs of spaces one space, as a typed prefix reads ([`readings`]): words are read so
    // ([`crate::pairs::read_word`]), but an index an older relbert built may hold `new  york`.
    match crate::pairs::single_spaced(&key) {
        // Unchanged, untrimmed included (a stored word with a space around it).
        std::borrow::Cow::Borrowed(same) if same.len() == key.len() => key,
        spaced => spaced.into_owned(),
    }
}

/// Text as keys and prefixes compare it: folded as queries fold words
/// ([`crate::query::fold_word`]: lower-cased, decomposed, a final `ς` read as `σ`, so that
/// `ΟΔΟΣ`, `οδος` and `οδοσ` are one prefix), then without accents ([`is_accent`]). Decomposed, `é`
/// is `e` and a mark and `İ` lower-cased is `i` and a dot above: kept, the marks made `cafe`
/// match `café` only while the prefix stopped before them (`cafe:` and `ist` matched
/// nothing), so accents are ignored as case is. Only the keys are folded; a suggestion shows
/// the stored spelling. ASCII text, most of it, is only lower-cased.
fn fold(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    crate::query::fold_word(text)
        .filter(|&c| !is_accent(c))
        .collect()
}

/// An accent to ignore: a mark of Unicode's Combining Diacritical Marks block (U+0300 to
/// U+036F: acute, grave, dot above, diaeresis, ...), which Latin, Greek and Cyrillic letters
/// decompose into. Not every combining mark: an Indic vowel sign or a Japanese voicing mark
/// (dakuten) makes another letter or syllable, and dropped, `कि` suggested every `क` pair and
/// `が` every `か` one (found by a review).
fn is_accent(c: char) -> bool {
    ('\u{300}'..='\u{36f}').contains(&c)
}

/// The keys a typed prefix may be the start of. People type a pair many ways: `paris:fr`,
/// `Paris : fr`, `paris fr`, `new york u` (a head of two words, then the tail's start) or
/// `paris ` (the head, then a space). So besides the text as typed (runs of spaces made one,
/// which also covers a multi-word head being typed), each space may be the colon (`new:york
/// u`, `new york:u`), and spaces around a colon are left out.
fn readings(prefix: &str) -> Vec<String> {
    let folded = fold(prefix.trim_start());
    let ends_spaced = folded.ends_with(char::is_whitespace);
    let mut text = folded.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return Vec::new();
    }
    if ends_spaced {
        text.push(' ');
    }
    let mut out = vec![text.clone()];
    let tight = |t: &str| t.replace(" :", ":").replace(": ", ":");
    let unspaced = tight(&text);
    if unspaced != text {
        out.push(unspaced.clone());
    }
    for (i, _) in unspaced.match_indices(' ') {
        let (head, tail) = (&unspaced[..i], &unspaced[i + 1..]);
        if !head.is_empty() && !head.ends_with(':') && !tail.starts_with(':') {
            out.push(format!("{head}:{tail}"));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

impl Suggestions {
    /// Reads every pair of `index`.
    pub fn build(index: &Index) -> Result<Self> {
        let mut keys = Vec::with_capacity(index.count());
        for row in 0..index.count() {
            let p = index.pair(row)?;
            keys.push((key_of(p.head, p.tail), row as u32));
        }
        keys.sort_unstable();
        Ok(Suggestions {
            keys,
            owned: Vec::new(),
            off: None,
        })
    }

    /// Lists the pairs of a Qdrant collection holding `count` points, unless there are more
    /// than [`MAX_LISTED`].
    pub fn from_collection(conn: &Connection, count: u64) -> Result<Self> {
        if count > MAX_LISTED {
            return Ok(Suggestions {
                keys: Vec::new(),
                owned: Vec::new(),
                off: Some(format!(
                    "suggestions are off: the collection holds {count} pairs, more than the \
                     {MAX_LISTED} that are listed"
                )),
            });
        }
        let c = conn.clone();
        let owned = conn.block_on(async move { list_pairs(&c, count).await })??;
        Ok(Self::of_pairs(owned))
    }

    /// The suggestions of pairs held in memory (a collection's, listed).
    fn of_pairs(owned: Vec<Suggested>) -> Self {
        let mut keys: Vec<(String, u32)> = owned
            .iter()
            .enumerate()
            .map(|(i, p)| (key_of(&p.head, &p.tail), i as u32))
            .collect();
        keys.sort_unstable();
        Suggestions {
            keys,
            owned,
            off: None,
        }
    }

    /// Up to `limit` pairs whose `head:tail` starts with `prefix` (ignoring case and
    /// accents, see `fold`), in alphabetical order. A space may stand for the colon (`new york u` finds `new
    /// york:usa`, `paris ` finds `paris:france`), and spaces around a colon do not count
    /// (`paris : fr`); see `readings`. `index` is the local index the list was built from,
    /// if it was.
    pub fn prefix(
        &self,
        prefix: &str,
        limit: usize,
        index: Option<&Index>,
    ) -> Result<Vec<Suggested>> {
        let readings = readings(prefix);
        let mut found: Vec<&(String, u32)> = Vec::new();
        for r in &readings {
            let start = self.keys.partition_point(|(k, _)| k.as_str() < r.as_str());
            found.extend(
                self.keys[start..]
                    .iter()
                    .take_while(|(k, _)| k.starts_with(r.as_str()))
                    .take(limit),
            );
        }
        found.sort_unstable();
        found.dedup();
        found
            .into_iter()
            .take(limit)
            .map(|&(_, row)| self.pair(row as usize, index))
            .collect()
    }

    fn pair(&self, row: usize, index: Option<&Index>) -> Result<Suggested> {
        if let Some(p) = self.owned.get(row) {
            return Ok(p.clone());
        }
        let index = index.ok_or_else(|| Error::Internal("suggestions lost their index".into()))?;
        let p = index.pair(row)?;
        Ok(Suggested {
            head: p.head.to_string(),
            tail: p.tail.to_string(),
            label: p.label.map(str::to_string),
        })
    }

    /// Why suggestions are off, if they are.
    pub fn off(&self) -> Option<&str> {
        self.off.as_deref()
    }

    /// How many pairs can be suggested.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is nothing to suggest.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Every pair of the collection, by a paged scroll of its payload (vectors left out).
async fn list_pairs(conn: &Connection, count: u64) -> Result<Vec<Suggested>> {
    let mut out = Vec::with_capacity(count as usize);
    let mut offset = None;
    loop {
        let from = offset.clone();
        let page = conn
            .call("listing pairs for suggestions", Hedge::Scan, |q, name| {
                let mut b = ScrollPointsBuilder::new(name)
                    .limit(PAGE)
                    .with_vectors(false)
                    .with_payload(PayloadIncludeSelector::new(vec![
                        "head".to_string(),
                        "tail".to_string(),
                        "label".to_string(),
                    ]));
                if let Some(o) = from.clone() {
                    b = b.offset(o);
                }
                async move { q.scroll(b).await }
            })
            .await?;
        for p in &page.result {
            let field = |k: &str| p.payload.get(k).and_then(string_of);
            let (Some(head), Some(tail)) = (field("head"), field("tail")) else {
                return Err(conn.remote("a point lacks the head/tail payload relbert writes"));
            };
            out.push(Suggested {
                head: head.to_string(),
                tail: tail.to_string(),
                label: field("label").map(str::to_string),
            });
        }
        match page.next_page_offset {
            Some(next) if !page.result.is_empty() && out.len() as u64 <= MAX_LISTED => {
                offset = Some(next)
            }
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(pairs: &[(&str, &str)]) -> Suggestions {
        Suggestions::of_pairs(
            pairs
                .iter()
                .map(|(h, t)| Suggested {
                    head: h.to_string(),
                    tail: t.to_string(),
                    label: None,
                })
                .collect(),
        )
    }

    fn suggested(s: &Suggestions, q: &str) -> Vec<String> {
        s.prefix(q, 10, None)
            .unwrap()
            .into_iter()
            .map(|p| format!("{}:{}", p.head, p.tail))
            .collect()
    }

    /// Found by an audit: `q=ΟΔΟΣ` matched nothing (the whole string was lower-cased, its
    /// last Σ to a final ς, while keys had σ), and `paris : fr`, `new york u` and `paris `
    /// matched nothing though a person typing a pair types them.
    #[test]
    fn prefixes_match_as_a_person_types_a_pair() {
        let s = of(&[
            ("ΟΔΟΣΑ", "δρόμος"),
            ("οδος", "street"),
            ("paris", "france"),
            ("new york", "usa"),
            ("new", "york"),
            ("re:invent", "conference"),
        ]);
        assert_eq!(suggested(&s, "ΟΔΟ"), ["οδος:street", "ΟΔΟΣΑ:δρόμος"]);
        assert_eq!(suggested(&s, "ΟΔΟΣ"), ["οδος:street", "ΟΔΟΣΑ:δρόμος"]);
        assert_eq!(suggested(&s, "οδοσ:"), ["οδος:street"]);
        assert_eq!(suggested(&s, "ΟΔΟΣΑ"), ["ΟΔΟΣΑ:δρόμος"]);
        for q in [
            "paris : fr",
            "paris :fr",
            "Paris: f",
            "paris ",
            "paris",
            "  paris  fr",
        ] {
            assert_eq!(suggested(&s, q), ["paris:france"], "{q:?}");
        }
        assert_eq!(suggested(&s, "new york u"), ["new york:usa"]);
        assert_eq!(suggested(&s, "new york"), ["new york:usa", "new:york"]);
        assert_eq!(suggested(&s, "new y"), ["new york:usa", "new:york"]);
        assert_eq!(suggested(&s, "re:invent con"), ["re:invent:conference"]);
        assert!(suggested(&s, " ").is_empty());
        assert!(suggested(&s, "paris : x").is_empty());
    }

    #[test]
    fn a_space_reads_as_a_multi_word_head_and_as_a_colon() {
        let s = of(&[("new york", "usa"), ("new", "old"), ("newt", "eft")]);
        let heads = |q: &str| -> Vec<String> {
            s.prefix(q, 10, None)
                .unwrap()
                .into_iter()
                .map(|p| format!("{}:{}", p.head, p.tail))
                .collect()
        };
        assert_eq!(heads("new y"), ["new york:usa"]);
        assert_eq!(heads("new o"), ["new:old"]);
        assert_eq!(heads("New"), ["new york:usa", "new:old", "newt:eft"]);
    }

    /// Words are read with one space between their words now, but an index an older
    /// relbert built may hold `new  york` (or a no-break space): found by the prefix a
    /// person types, with one space or several.
    #[test]
    fn a_stored_run_of_spaces_is_one_space() {
        let s = of(&[("new  york", "usa"), ("rio\u{a0}de janeiro", "brazil")]);
        for q in ["new york:u", "new  york u", "new y"] {
            assert_eq!(suggested(&s, q), ["new  york:usa"], "{q:?}");
        }
        assert_eq!(suggested(&s, "rio de"), ["rio\u{a0}de janeiro:brazil"]);
    }
    /// Found by a review: every combining mark was dropped, not only accents, so an Indic
    /// vowel sign or a Japanese voicing mark was ignored: `कि` matched every `क` and `が`
    /// every `か`. Accents still go.
    #[test]
    fn only_accents_are_ignored_not_marks_that_make_another_letter() {
        assert_ne!(fold("が"), fold("か"));
        assert_ne!(fold("कि"), fold("क"));
        assert_eq!(fold("Café"), fold("cafe"));
        assert_eq!(fold("İST"), fold("ist"));
    }

    /// Found by a review: keys were folded decomposed with their combining marks, so `İ`
    /// (lower-cased `i` and a dot above) and `é` (`e` and an acute) stopped a prefix that
    /// went past them: `ist` and `IST` found no `İstanbul`, `cafe c` and `cafe:` no
    /// `café:crème`. Accents and case are ignored alike; the stored spelling is shown.
    #[test]
    fn prefixes_match_without_case_or_accents() {
        let s = of(&[
            ("İstanbul", "turkey"),
            ("café", "crème"),
            ("cafeteria", "tray"),
        ]);
        for q in [
            "ist",
            "IST",
            "İST",
            "istanbul:t",
            "istanbul t",
            "İstanbul Tur",
        ] {
            assert_eq!(suggested(&s, q), ["İstanbul:turkey"], "{q:?}");
        }
        for q in [
            "cafe c",
            "cafe:",
            "CAFÉ:CRE",
            "cafe\u{301}:cre\u{300}me",
            "café crem",
        ] {
            assert_eq!(suggested(&s, q), ["café:crème"], "{q:?}");
        }
        assert_eq!(suggested(&s, "cafe"), ["café:crème", "cafeteria:tray"]);
        assert_eq!(suggested(&s, "CAFÉ"), ["café:crème", "cafeteria:tray"]);
        assert!(suggested(&s, "cafe:d").is_empty());
    }
}
