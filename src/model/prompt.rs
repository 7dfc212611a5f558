//! Prompt templates: how a word pair becomes the sentence the encoder reads.

use crate::error::{Error, Result};

/// The reference's default template (note the curly apostrophe U+2019).
pub const DEFAULT_TEMPLATE: &str = "I wasn\u{2019}t aware of this relationship, but I just read in the encyclopedia that <subj> is the <mask> of <obj>";

/// The built-in templates of the reference's oldest versions, named by a letter in
/// `relbert_config.template_type` (later `custom_template_type`), which such checkpoints carry
/// instead of the template itself. Each is, character for character, the one `preset_templates` in
/// asahi417/relbert `relbert/prompt.py` names by that letter at commit
/// b538641d831e3bbea05d2b87f40cbd1b7c6ae7cc (the `relbert/lm.py` of that commit reads `relbert_config['template_type']` and fills this
/// table; a later `lm.py`, which stores the letter as `custom_template_type`, holds the same
/// table). Its oddities are the reference's and decide its vectors, so they are kept: "b" and
/// "e" have two spaces after `<obj>` and a literal `A's` (with U+2019 in "e") where the
/// subject was meant; "d" and "e" spell "wasn't" with U+2019, as [`DEFAULT_TEMPLATE`] does
/// ("d" is that template).
pub const PRESET_TEMPLATES: [(&str, &str); 9] = [
    ("a", "Today, I finally discovered the relation between <subj> and <obj> : <subj> is the <mask> of <obj>"),
    ("b", "Today, I finally discovered the relation between <subj> and <obj> : <obj>  is A's <mask>"),
    ("c", "Today, I finally discovered the relation between <subj> and <obj> : <mask>"),
    ("d", "I wasn\u{2019}t aware of this relationship, but I just read in the encyclopedia that <subj> is the <mask> of <obj>"),
    ("e", "I wasn\u{2019}t aware of this relationship, but I just read in the encyclopedia that <obj>  is A\u{2019}s <mask>"),
    ("f", "The teacher explained how <subj> is related to <obj> : it is <obj> 's <mask>"),
    ("g", "The teacher explained how <subj> is related to <obj> : it is <mask>"),
    ("h", "The teacher explained how <subj> is related to <obj> : <mask>"),
    ("i", "The teacher explained how <subj> is related to <obj> : it is the <mask>"),
];

/// The template [`PRESET_TEMPLATES`] names `letter`, if any.
pub fn preset_template(letter: &str) -> Option<&'static str> {
    PRESET_TEMPLATES
        .iter()
        .find(|(l, _)| *l == letter)
        .map(|(_, t)| *t)
}

/// The placeholders every template relbert computes must hold.
pub const PLACEHOLDERS: [&str; 3] = ["<subj>", "<obj>", "<mask>"];

/// The [`PLACEHOLDERS`] `template` lacks, in their order; empty for a template relbert
/// computes.
pub fn missing_placeholders(template: &str) -> Vec<&'static str> {
    PLACEHOLDERS
        .into_iter()
        .filter(|p| !template.contains(p))
        .collect()
}

/// A validated prompt template with `<subj>`, `<obj>` and `<mask>` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    /// Checks that every placeholder is present.
    pub fn new(template: &str) -> Result<Self> {
        if missing_placeholders(template).is_empty() {
            Ok(Template(template.to_string()))
        } else {
            Err(Error::Template {
                template: template.to_string(),
            })
        }
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Fills the template's `<subj>`, `<obj>` and `<mask>` with `head`, `tail` and
    /// `mask_token` in one pass over the template, so each word is inserted as it is: the
    /// reference's prompt for every pair it accepts (see [`placeholder_in`]) on a template
    /// with spaces around its placeholders, as every built-in one has.
    pub fn fill(&self, head: &str, tail: &str, mask_token: &str) -> String {
        fill(&self.0, head, tail, mask_token)
    }

    /// [`Template::fill`] of the part through both words ([`Template::through_both_words`]).
    pub fn fill_through_both_words(&self, head: &str, tail: &str, mask_token: &str) -> String {
        fill(self.through_both_words(), head, tail, mask_token)
    }
}

impl Template {
    /// The template up to the end of the first place where each word has appeared: the part
    /// of a prompt that must survive truncation for the prompt to hold both words whole.
    /// What follows it (the rest of the template, later repeats of the words) the reference
    /// truncates away without two pairs' prompts becoming the same.
    pub fn through_both_words(&self) -> &str {
        let end = ["<subj>", "<obj>"]
            .iter()
            .filter_map(|p| self.0.find(p).map(|i| i + p.len()))
            .max()
            .unwrap_or(self.0.len());
        &self.0[..end]
    }
}

/// Fills the placeholders of any template text in one pass over the text, so that a word is
/// inserted literally whatever it holds. The reference replaces `<subj>`, then `<obj>`, then
/// `<mask>` in the whole text, words included: a head `<obj>` would take the tail's place,
/// and a word `<mask>` become the mask token. It refuses such words ([`placeholder_in`]), and
/// so does relbert, so for every pair both accept the two fillings are the same prompt
/// (they could differ only where a word and what the template puts right against it spell a
/// placeholder together, which no template with spaces around its placeholders allows).
fn fill(text: &str, head: &str, tail: &str, mask_token: &str) -> String {
    let slots = [("<subj>", head), ("<obj>", tail), ("<mask>", mask_token)];
    let mut out = String::with_capacity(text.len() + 2 * (head.len() + tail.len()));
    let mut rest = text;
    while let Some(at) = rest.find('<') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match slots.iter().find(|(p, _)| rest.starts_with(p)) {
            Some((p, with)) => {
                out.push_str(with);
                rest = &rest[p.len()..];
            }
            None => {
                out.push('<');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The first of [`PLACEHOLDERS`] that `word` holds, if any. The reference refuses a pair
/// whose word holds one (`custom_prompter` asserts that neither word contains `<subj>`,
/// `<obj>` or `<mask>`); relbert refuses it too, in pair files, data sets and queries, as a
/// word the template's slots cannot be told from (filled the reference's way, (`<obj>`,
/// `paris`) was the prompt of (`paris`, `paris`)). Letter case counts, as it does there.
pub fn placeholder_in(word: &str) -> Option<&'static str> {
    PLACEHOLDERS.into_iter().find(|p| word.contains(p))
}

/// The first word of (`head`, `tail`) that holds a placeholder ([`placeholder_in`]), as the
/// problem to report: the one message pair files, data sets and queries give for it.
pub fn placeholder_problem(head: &str, tail: &str) -> Option<WordProblem> {
    [head, tail].into_iter().find_map(|w| {
        placeholder_in(w).map(|placeholder| WordProblem::Placeholder {
            word: w.to_string(),
            placeholder,
        })
    })
}

/// The most characters a query's word may have between spaces: a BERT WordPiece tokenizer
/// reads a single word of more than 100 characters as `[UNK]`, so a longer one is refused
/// rather than answered as the unknown token. A term of several words (`new york`) is checked
/// word by word, as the tokenizer reads it: `pairs mine --terms` keeps terms of several
/// words each up to 64 characters, which a limit on the whole term would make unaskable. `relbert query` checks it, and so
/// does `relbert serve` by default (its `max_word_chars`).
pub const MAX_WORD_CHARS: usize = 100;

/// Why a word of a query pair cannot be asked ([`check_words`]). The messages are the ones
/// `relbert serve` answers with; `word` is the word concerned, for a caller that names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordProblem {
    /// Empty, or only characters a tokenizer drops ([`crate::pairs::blank_word`]): spaces,
    /// invisible characters, combining accents alone, U+FFFD.
    #[error("a word is empty (or only characters a tokenizer drops: invisible ones, lone accents, U+FFFD)")]
    Blank {
        /// The word.
        word: String,
    },
    /// More characters than the limit.
    #[error("a word is longer than {max} characters")]
    TooLong {
        /// The word.
        word: String,
        /// The limit it is over.
        max: usize,
    },
    /// A control character (a tab, a newline, `\x01`): a tokenizer drops it, and the word
    /// would be asked as another one.
    #[error("words may not contain control characters (tabs, newlines)")]
    Control {
        /// The word.
        word: String,
    },
    /// One of the template's placeholders ([`placeholder_in`]), which the reference refuses
    /// in a word.
    #[error(
        "the word {} holds {placeholder}, a placeholder of the prompt template; words \
         may not contain <subj>, <obj> or <mask>",
        crate::error::quoted(word)
    )]
    Placeholder {
        /// The word.
        word: String,
        /// The placeholder it holds.
        placeholder: &'static str,
    },
}

impl WordProblem {
    /// The word concerned.
    pub fn word(&self) -> &str {
        match self {
            WordProblem::Blank { word }
            | WordProblem::TooLong { word, .. }
            | WordProblem::Control { word }
            | WordProblem::Placeholder { word, .. } => word,
        }
    }
}

/// Checks the two words of a query pair: neither blank, longer than `max_chars` characters
/// ([`MAX_WORD_CHARS`] unless a server is configured otherwise), holding a control
/// character or holding a template placeholder ([`placeholder_in`]). The one check
/// `relbert query` and `relbert serve` share, so that a word one refuses the other does not
/// answer as something else.
pub fn check_words(
    head: &str,
    tail: &str,
    max_chars: usize,
) -> std::result::Result<(), WordProblem> {
    for w in [head, tail] {
        let word = || w.to_string();
        if crate::pairs::blank_word(w) {
            return Err(WordProblem::Blank { word: word() });
        }
        if w.split_whitespace().any(|p| p.chars().count() > max_chars) {
            return Err(WordProblem::TooLong {
                word: word(),
                max: max_chars,
            });
        }
        if w.chars().any(char::is_control) {
            return Err(WordProblem::Control { word: word() });
        }
        if let Some(placeholder) = placeholder_in(w) {
            return Err(WordProblem::Placeholder {
                word: word(),
                placeholder,
            });
        }
    }
    Ok(())
}

impl Default for Template {
    fn default() -> Self {
        Template(DEFAULT_TEMPLATE.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_part_through_both_words() {
        let t = Template::default();
        assert!(t
            .through_both_words()
            .ends_with("<subj> is the <mask> of <obj>"));
        let t = Template::new("<obj> then <subj>: <mask>, and <subj> again").unwrap();
        assert_eq!(t.through_both_words(), "<obj> then <subj>");
    }

    #[test]
    fn fills_in_reference_order() {
        let t = Template::default();
        assert_eq!(
            t.fill("paris", "france", "[MASK]"),
            "I wasn\u{2019}t aware of this relationship, but I just read in the encyclopedia that paris is the [MASK] of france"
        );
    }

    /// A word is inserted literally: filled the reference's way (sequential replacement over
    /// the text, words included), (`<obj>`, paris) was the prompt of (paris, paris), and
    /// (`<mask>`, france) that of ([MASK], france).
    #[test]
    fn a_placeholder_in_a_word_is_not_filled() {
        let t = Template::default();
        let end = |p: String| p.rsplit(" that ").next().unwrap_or_default().to_string();
        assert_eq!(
            end(t.fill("<obj>", "paris", "[MASK]")),
            "<obj> is the [MASK] of paris"
        );
        assert_eq!(
            end(t.fill("<mask>", "france", "[MASK]")),
            "<mask> is the [MASK] of france"
        );
        assert_eq!(
            end(t.fill("a<subj>b", "<obj><mask>", "<mask>")),
            "a<subj>b is the <mask> of <obj><mask>"
        );
        assert_eq!(
            t.fill_through_both_words("<obj>", "x", "[MASK]"),
            t.fill("<obj>", "x", "[MASK]")
        );
    }

    /// For words without a placeholder (all that the reference and relbert accept), the
    /// one-pass filling is the reference's sequential replacement, on every built-in template
    /// and on templates with repeated or adjacent placeholders and stray `<`.
    #[test]
    fn fills_as_the_reference_for_words_it_accepts() {
        let reference = |t: &str, h: &str, o: &str, m: &str| {
            t.replace("<subj>", h)
                .replace("<obj>", o)
                .replace("<mask>", m)
        };
        let mut templates: Vec<&str> = PRESET_TEMPLATES.iter().map(|(_, t)| *t).collect();
        templates.extend([
            "<subj><obj><mask>",
            "<<subj>> < <obj> <mask> <subj",
            "a <s <mask>",
        ]);
        for t in templates {
            for (h, o) in [
                ("paris", "france"),
                ("<su", "bj>"),
                ("a < b", "c > d"),
                ("<", ">"),
            ] {
                for m in ["[MASK]", "<mask>"] {
                    assert_eq!(fill(t, h, o, m), reference(t, h, o, m), "{t:?} {h:?} {o:?}");
                }
            }
        }
    }

    #[test]
    fn a_word_holding_a_placeholder_cannot_be_asked() {
        for (h, t, word, p) in [
            ("<obj>", "paris", "<obj>", "<obj>"),
            ("paris", "x<subj>", "x<subj>", "<subj>"),
            ("<mask>", "france", "<mask>", "<mask>"),
        ] {
            let e = check_words(h, t, MAX_WORD_CHARS).unwrap_err();
            assert_eq!(
                e,
                WordProblem::Placeholder {
                    word: word.into(),
                    placeholder: p
                }
            );
            assert_eq!(e.word(), word);
            assert!(e.to_string().contains(&format!("{word:?}")), "{e}");
        }
        // Letter case counts, as in the reference; a mask token that is no placeholder
        // (BERT's [MASK]) is no placeholder.
        assert_eq!(check_words("<SUBJ>", "[MASK]", MAX_WORD_CHARS), Ok(()));
        assert_eq!(placeholder_in("<sub j>"), None);
    }

    #[test]
    fn query_words_are_checked_as_serve_checks_them() {
        let long = "a".repeat(MAX_WORD_CHARS + 1);
        assert_eq!(check_words("paris", "france", MAX_WORD_CHARS), Ok(()));
        assert_eq!(
            check_words(&"a".repeat(MAX_WORD_CHARS), "b", MAX_WORD_CHARS),
            Ok(())
        );
        let e = check_words("cat", &long, MAX_WORD_CHARS).unwrap_err();
        assert_eq!(e.to_string(), "a word is longer than 100 characters");
        assert_eq!(e.word(), long);
        let e = check_words("dog\u{1}", "cat", MAX_WORD_CHARS).unwrap_err();
        assert!(matches!(e, WordProblem::Control { .. }), "{e:?}");
        let e = check_words("dog", "\u{200b}", MAX_WORD_CHARS).unwrap_err();
        assert!(matches!(e, WordProblem::Blank { .. }), "{e:?}");
        // Characters a BERT tokenizer deletes though they are no format characters: the
        // word was encoded as nothing, one vector for all of them (found by a review).
        for w in ["\u{301}", "\u{fe0f}", "\u{fffd}"] {
            let e = check_words("paris", w, MAX_WORD_CHARS).unwrap_err();
            assert!(matches!(e, WordProblem::Blank { .. }), "{w:?}: {e:?}");
        }
    }

    /// The limit is per word between spaces, as the tokenizer reads it: a long term of short
    /// words can be asked (a review found the whole term was measured).
    #[test]
    fn the_word_limit_is_per_word_of_a_term() {
        let term = ["alpha"; 30].join(" ");
        assert!(term.chars().count() > MAX_WORD_CHARS);
        assert_eq!(check_words(&term, "x", MAX_WORD_CHARS), Ok(()));
        let long = "a".repeat(MAX_WORD_CHARS + 1);
        assert!(matches!(
            check_words(&format!("new {long}"), "x", MAX_WORD_CHARS),
            Err(WordProblem::TooLong { .. })
        ));
    }

    /// The letters of the reference's oldest checkpoints: each a whole template, "d" the
    /// default one, and the reference's spelling kept (two spaces, `A's`).
    #[test]
    fn preset_letters_are_the_references_table() {
        // "e" has no <subj> (the reference fills it without checking): relbert's template
        // check refuses it, naming config.json, rather than computing something else.
        for (letter, t) in PRESET_TEMPLATES {
            assert_eq!(Template::new(t).is_ok(), letter != "e", "{letter}");
        }
        assert_eq!(preset_template("d"), Some(DEFAULT_TEMPLATE));
        assert_eq!(
            preset_template("b"),
            Some("Today, I finally discovered the relation between <subj> and <obj> : <obj>  is A's <mask>")
        );
        assert!(preset_template("e").is_some_and(|t| t.ends_with("<obj>  is A\u{2019}s <mask>")));
        assert_eq!(preset_template("j"), None);
        assert_eq!(preset_template("A"), None);
    }

    #[test]
    fn rejects_missing_placeholder() {
        assert!(matches!(
            Template::new("<subj> and <obj>"),
            Err(Error::Template { .. })
        ));
    }
}
