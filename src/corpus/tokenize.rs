//! Words and sentences of a paragraph of text.
//!
//! Words are the Unicode word-boundary segments (UAX #29, from `unicode-segmentation`) that
//! contain a letter or a digit, with three changes for relation mining:
//!
//! - hyphenated compounds stay one word (`well-known`, `x-ray`): UAX #29 splits at hyphens,
//!   but a compound is one term;
//! - a possessive `'s` / `’s` is dropped (`France's` → `France`), so the term is counted as
//!   itself;
//! - words without a letter (`1990`, `3.14`) are kept as [`Kind::Number`]: they take a place
//!   in the window but never become terms;
//! - a URL, e-mail address or file path (`https://gnu.org/licenses/`, `<jane@example.org>`,
//!   `/usr/share/doc/`, `src/lib/util.py`) is one [`Kind::Link`] token: it takes a place but
//!   is never a term, and its parts never become words. Without this, UAX #29 cut it into
//!   words (`usr`, `share`, `doc`; `jane`, `example.org`) that paired with each other and
//!   with the names around them: in a corpus of Debian copyright files, e-mail user names
//!   and source paths filled the top of the mined pairs, and `--phrases` learned phrases
//!   such as `usr share`. Links are found by a few rules on whitespace-separated chunks
//!   ([`link_spans`]), not by a URL parser: a corpus holds links written every which way,
//!   and what matters is only that their parts are not read as prose.
//!
//! Sentences are found from the same word-boundary stream rather than with UAX #29's
//! sentence rules, because those treat every line break as a paragraph separator and so
//! break every sentence of hard-wrapped text (manuals, e-mails, plain-text books) at each
//! line. A sentence ends at `.`, `!`, `?`, `…` or `;` (or the full stop, question or
//! exclamation mark of another script: `।`, `؟`, `۔`, `።`, … listed at `ends_sentence`)
//! followed by anything but a word that starts in lower case (UAX #29's rule SB8, so
//! `e.g. this` stays one sentence), at U+2029 PARAGRAPH SEPARATOR whatever follows (the text
//! of HTML holds one at each block boundary, such as a table cell's or a list item's end:
//! [`super::html`]), and at the end of the paragraph.

use unicode_segmentation::UnicodeSegmentation;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Contains at least one letter: may become a vocabulary term.
    Word,
    /// Digits and number punctuation only: holds a place, never a term.
    Number,
    /// A URL, e-mail address or file path, whole: holds a place, never a term.
    Link,
}

/// One token of a sentence: its (possibly lower-cased) text lives in the sentence's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Byte range of the text in [`Sentence::buf`].
    pub text: (u32, u32),
    /// Byte offset of the token in the paragraph (for locations).
    pub offset: u32,
    /// Word or number.
    pub kind: Kind,
}

/// A sentence's tokens, with their texts in one buffer so no token allocates.
#[derive(Debug, Default, Clone)]
pub struct Sentence {
    /// The tokens' texts, back to back.
    pub buf: String,
    /// The tokens in order.
    pub tokens: Vec<Token>,
}

impl Sentence {
    /// The text of token `i`.
    pub fn text(&self, i: usize) -> &str {
        let (a, b) = self.tokens[i].text;
        &self.buf[a as usize..b as usize]
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.tokens.clear();
    }

    fn push(&mut self, word: &str, offset: usize, lowercase: bool) {
        self.push_as(word, offset, lowercase, None);
    }

    /// Appends a token; its kind is `kind`, or found from its letters when `None`.
    fn push_as(&mut self, word: &str, offset: usize, lowercase: bool, kind: Option<Kind>) {
        let start = self.buf.len();
        let ascii = word.is_ascii();
        if ascii {
            // ASCII is its own NFKC form: the fast path needs no normalising.
            self.buf.push_str(word);
            if lowercase {
                self.buf[start..].make_ascii_lowercase();
            }
        } else {
            normalize_word(word, lowercase, &mut self.buf);
        }
        let kind = kind.unwrap_or_else(|| {
            let alphabetic = if ascii {
                word.bytes().any(|b| b.is_ascii_alphabetic())
            } else {
                self.buf[start..].chars().any(char::is_alphabetic)
            };
            if alphabetic {
                Kind::Word
            } else {
                Kind::Number
            }
        });
        self.tokens.push(Token {
            text: (start as u32, self.buf.len() as u32),
            offset: offset as u32,
            kind,
        });
    }

    /// Joins the last token with `word` by a hyphen (a compound written `a-b`).
    fn join_hyphen(&mut self, word: &str, lowercase: bool) {
        let Some(last) = self.tokens.pop() else {
            return;
        };
        let offset = last.offset as usize;
        let start = last.text.0 as usize;
        let mut joined = self.buf[start..].to_string();
        self.buf.truncate(start);
        joined.push('-');
        joined.push_str(word);
        // Already lower-cased text stays as it is; only the new part needs it.
        self.push(&joined, offset, lowercase);
    }
}

/// Appends a word in the one spelling terms are counted under: Unicode NFKC (composed
/// accents, so NFC and NFD `café` are one term; ligatures such as `ﬁ` and fullwidth letters
/// become their plain letters), the typographic apostrophes U+2019 and U+02BC as the ASCII
/// `'` (`don’t` is `don't`), and lower-cased when asked. ASCII words are already in this
/// form; the tokenizer passes them by.
///
/// Invisible format characters are settled too, since NFKC keeps them and a word holding
/// one was never a term (text from HTML and PDF carries soft hyphens, `ele\u{AD}phant`):
/// those that mean nothing inside a word are removed ([`invisible`]: the soft hyphen, zero
/// width space, word joiner, byte order mark, direction marks); the joiners ZWNJ and ZWJ
/// (U+200C, U+200D, and the Mongolian vowel separator U+180E) are kept between two letters or
/// marks, where they are spelling (Persian `کتاب‌ها`, the half forms of Indic scripts after a
/// virama), and removed elsewhere (at either end of the word, next to punctuation).
///
/// Lower-casing follows Unicode's default rules, those of [`str::to_lowercase`], not a
/// language's (Turkish `İ` is `i̇`): character by character, but for the Greek capital sigma,
/// which is `ς` at the end of a word and `σ` elsewhere. Lower-cased one character at a time,
/// `ΛΌΓΟΣ` was `λόγοσ`, no Greek spelling, and a term of its own beside `λόγος`.
pub fn normalize_word(word: &str, lowercase: bool, out: &mut String) {
    use unicode_categories::UnicodeCategories;
    use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};
    let apostrophe = |c: char| match c {
        '\u{2019}' | '\u{02bc}' => '\'',
        c => c,
    };
    // Whether the last character written is a letter or a mark, and the joiner that waits
    // for the next one to be one too.
    let mut after_letter = false;
    let mut joiner: Option<char> = None;
    let start = out.len();
    // Whether a capital sigma was written as it is, for the whole word to place it.
    let mut sigma = false;
    let mut put = |c: char| {
        if invisible(c) {
            return;
        }
        if joiner_char(c) {
            if after_letter && joiner.is_none() {
                joiner = Some(c);
            }
            return;
        }
        let c = apostrophe(c);
        let letter = c.is_alphabetic() || c.is_mark();
        if let Some(j) = joiner.take() {
            if letter {
                out.push(j);
            }
        }
        after_letter = letter;
        if lowercase && c != 'Σ' {
            out.extend(c.to_lowercase());
        } else {
            sigma |= c == 'Σ';
            out.push(c);
        }
    };
    // Most words of most scripts are already NFKC: the quick check spares the allocation.
    if is_nfkc_quick(word.chars()) == IsNormalized::Yes {
        word.chars().for_each(&mut put);
    } else {
        word.nfkc().for_each(&mut put);
    }
    // The sigma's form depends on the letters around it (Unicode's Final_Sigma condition),
    // which `str::to_lowercase` reads; the rest is lower case already, and stays as it is.
    if lowercase && sigma {
        let lower = out[start..].to_lowercase();
        out.truncate(start);
        out.push_str(&lower);
    }
}

/// Whether `c` is a joiner that is spelling between two letters: ZWNJ, ZWJ, and the
/// Mongolian vowel separator (it selects the form of the vowel after it).
pub fn joiner_char(c: char) -> bool {
    matches!(c, '\u{200c}' | '\u{200d}' | '\u{180e}')
}

/// Whether `c` is an invisible format character that carries no meaning inside a word (of
/// Unicode's default-ignorable format characters, all but the joiners of [`joiner_char`]):
/// the soft hyphen, the Arabic letter mark, the zero width space, the direction marks,
/// embeddings and isolates, the word joiner and invisible operators, the byte order mark
/// (zero width no-break space), shorthand format controls, musical beam controls and tags.
/// Variation selectors and the combining grapheme joiner are marks and stay.
pub fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00ad}'
        | '\u{061c}'
        | '\u{200b}'
        | '\u{200e}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{feff}'
        | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0001}'
        | '\u{e0020}'..='\u{e007f}')
}

/// How text is split into tokens.
#[derive(Debug, Clone, Copy)]
pub struct Tokenizer {
    /// Lower-case every token.
    pub lowercase: bool,
}

fn is_hyphen(s: &str) -> bool {
    matches!(s, "-" | "\u{2010}" | "\u{2011}")
}

/// Whether the punctuation segment `s` ends a sentence: `.`, `!`, `?`, `…`, `;` and the Greek
/// question mark `;` (U+037E, which NFC makes `;`), and the full stops, question and
/// exclamation marks of other scripts, each of Unicode's Sentence_Terminal property:
///
/// - Chinese and Japanese `。` `｡` `！` `？`;
/// - Devanagari (Hindi, Marathi, Nepali, Sanskrit; Bengali writes it too) danda `।` and
///   double danda `॥`;
/// - Arabic script: the question mark `؟` (Arabic, Persian, Urdu) and the Urdu full stop `۔`;
/// - Armenian full stop `։`;
/// - Ethiopic full stop `።` and question mark `፧` (Amharic, Tigrinya);
/// - Myanmar section `။` (the full stop of Burmese);
/// - Khmer khan `។` and bariyoosan `៕`;
/// - Mongolian full stop `᠃` and Manchu full stop `᠉`;
/// - the doubled marks `‼` `⁇` `⁈` `⁉` and the interrobang `‽`.
///
/// Without them, text in these scripts was one sentence to the end of its paragraph, and words
/// of two sentences paired across their boundary.
fn ends_sentence(s: &str) -> bool {
    matches!(
        s,
        "." | "!"
            | "?"
            | "…"
            | ";"
            | "\u{37e}"
            | "。"
            | "｡"
            | "！"
            | "？"
            | "।"
            | "॥"
            | "؟"
            | "۔"
            | "։"
            | "።"
            | "፧"
            | "။"
            | "។"
            | "៕"
            | "᠃"
            | "᠉"
            | "‼"
            | "⁇"
            | "⁈"
            | "⁉"
            | "‽"
    )
}

/// Whether a full stop right after `word` marks an abbreviation rather than a sentence's end:
/// a title or place prefix that comes before a name (`Dr. Watson`, `St. Louis`, `Mt. Fuji`)
/// or a single capital letter, an initial (`John F. Kennedy`). Without this, a name such as
/// `St. Louis` was cut into two sentences, so a listed term `St. Louis` never matched and
/// the window between its words was lost. A capital letter alone is taken for an initial
/// wherever it stands (`written by J. K. Rowling`), so `plan B. Then` stays one sentence: a
/// rule on the word before (`plan`, lower case) would split `by J.` as well. Kept short on purpose: words that also end
/// sentences (`Jr.`, `etc.`, `No.`) are left out, since joining two sentences costs more than
/// splitting a name.
fn abbreviation(word: &str) -> bool {
    const BEFORE_NAMES: &[&str] = &[
        "mr", "mrs", "ms", "dr", "prof", "st", "ste", "mt", "ft", "gen", "col", "capt", "lt",
        "sgt", "rev", "gov", "sen", "rep", "hon", "messrs", "vs", "cf", "fig", "figs", "vol", "eq",
    ];
    let mut chars = word.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return c.is_uppercase();
    }
    word.len() <= 6 && BEFORE_NAMES.iter().any(|a| a.eq_ignore_ascii_case(word))
}

/// Strips a possessive `'s` / `’s` (not from `'s` alone).
fn strip_possessive(w: &str) -> &str {
    for suffix in ["'s", "’s", "ʼs", "'S", "’S", "ʼS"] {
        if let Some(base) = w.strip_suffix(suffix) {
            if !base.is_empty() {
                return base;
            }
        }
    }
    w
}

/// UAX #29's word segments of ASCII text, without its tables: runs of letters, digits and
/// `_` (WB5, WB8–WB10, WB13a/b), joined across one `.`, `'` or `:` between letters (WB6/7)
/// and one `.`, `'`, `,` or `;` between digits (WB11/12); a run of spaces is one
/// segment (WB3d), `\r\n` is one (WB3), anything else is a segment of one byte. The
/// property test `ascii_fast_path_matches_unicode_segmentation` holds it to the crate.
fn ascii_word_bounds(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= b.len() {
            return None;
        }
        let start = i;
        let c = b[i];
        i += 1;
        if word(c) {
            while i < b.len() {
                let n = b[i];
                if word(n) {
                    i += 1;
                } else if i + 1 < b.len() {
                    let (p, f) = (b[i - 1], b[i + 1]);
                    let letters = p.is_ascii_alphabetic()
                        && f.is_ascii_alphabetic()
                        && matches!(n, b'.' | b'\'' | b':');
                    let digits = p.is_ascii_digit()
                        && f.is_ascii_digit()
                        && matches!(n, b'.' | b'\'' | b',' | b';');
                    if letters || digits {
                        i += 2;
                    } else {
                        break;
                    }
                } else {
                    break;
                }
            }
        } else if c == b' ' {
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
        } else if c == b'\r' && b.get(i) == Some(&b'\n') {
            i += 1;
        }
        Some((start, &text[start..i]))
    })
}

/// Characters that open a link in running text without being part of it (`(see
/// https://x.org/)`, `*https://x.org*`).
fn link_opener(c: char) -> bool {
    matches!(c, '(' | '[' | '{' | '\'' | '‘' | '“' | '«' | '*')
}

/// Characters that close a link in running text without being part of it: a full stop or
/// comma after a path, a closing bracket or quote (a `)` or `]` that closes one opened inside
/// the link stays: `…/wiki/Paris_(city)`).
fn link_closer(c: char) -> bool {
    matches!(
        c,
        '.' | ',' | ';' | ':' | '!' | '?' | ')' | ']' | '}' | '\'' | '’' | '”' | '»' | '*'
    )
}

/// Characters that end a chunk where a link may be, besides white space: angle brackets and
/// double quotes, which a link never holds raw (`Jane<jane@example.org>`,
/// `href="https://x.org"`), and the letters and punctuation of scripts written without spaces
/// (Han, kana, Hangul; CJK and full-width punctuation). In Chinese or Japanese a chunk between
/// spaces can be a whole paragraph, and one date `2020/01/02` in it made all of it one link.
fn link_break(c: char) -> bool {
    c.is_whitespace()
        || matches!(c, '<' | '>' | '"'
            | '\u{1100}'..='\u{11ff}'
            | '\u{2e80}'..='\u{2fdf}'
            | '\u{3000}'..='\u{303f}'
            | '\u{3040}'..='\u{30ff}'
            | '\u{3100}'..='\u{31ff}'
            | '\u{3400}'..='\u{4dbf}'
            | '\u{4e00}'..='\u{9fff}'
            | '\u{a960}'..='\u{a97f}'
            | '\u{ac00}'..='\u{d7ff}'
            | '\u{f900}'..='\u{faff}'
            | '\u{fe30}'..='\u{fe4f}'
            | '\u{ff00}'..='\u{ffef}'
            | '\u{20000}'..='\u{3134f}')
}

/// Whether a chunk of text without spaces (its opening and closing punctuation removed) is a
/// URL, an e-mail address or a file path. The rules are kept narrow, so that prose written
/// with slashes (`and/or`, `he/she/they/them`, `TCP/IP`, `Mon/Wed/Fri`) stays words:
///
/// - a URL: `scheme://…` (a scheme of letters, digits, `+`, `-`, `.`), `www.…`, `mailto:…`;
/// - an e-mail address: `local@domain.tld`, the domain holding a `.` between other characters;
/// - a path: absolute (`/usr/share`, `~/x`, `./x`, `../x`, `C:\x`), or relative with two
///   slashes or more and a mark of a path: a file extension, `_`, a digit, a trailing `/` or
///   `*` (`src/lib/util.py`, `third_party/xla/xla`, `libs/regex/*`), or two backslashes or
///   more.
pub fn is_link(s: &str) -> bool {
    let has_word_char = |t: &str| t.chars().any(char::is_alphanumeric);
    if let Some(at) = s.find("://") {
        let scheme = &s[..at];
        return !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            && has_word_char(&s[at + 3..]);
    }
    for prefix in ["www.", "mailto:"] {
        if let Some(rest) = s
            .get(..prefix.len())
            .filter(|h| h.eq_ignore_ascii_case(prefix))
            .and_then(|_| s.get(prefix.len()..))
        {
            if has_word_char(rest) {
                return true;
            }
        }
    }
    if let Some((local, domain)) = s.split_once('@') {
        let local_ok = !local.is_empty()
            && local
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-'));
        // `git@github.com:owner/repo.git` names a host and a path after it.
        let domain = domain.split_once(':').map_or(domain, |(host, _)| host);
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-'));
        // Not an address, it may still be a path (`node_modules/@babel/core`).
        if local_ok && domain_ok {
            return true;
        }
    }
    let b = s.as_bytes();
    let absolute = s.starts_with('/')
        || s.starts_with("~/")
        || s.starts_with("./")
        || s.starts_with("../")
        || (b.len() > 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\');
    if absolute {
        return has_word_char(s);
    }
    let slashes = s.bytes().filter(|&c| c == b'/').count();
    let marked = s.rsplit('/').next().is_some_and(|last| last.contains('.'))
        || s.ends_with('/')
        || s.ends_with('*')
        || s.bytes().any(|c| c == b'_' || c.is_ascii_digit());
    let backslashes = s.bytes().filter(|&c| c == b'\\').count();
    ((slashes >= 2 && marked) || backslashes >= 2) && has_word_char(s)
}

/// `chunk` without the closing punctuation at its end ([`link_closer`]), but keeping a `)`
/// or `]` that closes a bracket opened inside it.
fn trim_link_end(chunk: &str) -> &str {
    let mut t = chunk;
    while let Some(c) = t.chars().next_back() {
        let opened = |open: char, close: char| {
            t.chars().filter(|&x| x == open).count() >= t.chars().filter(|&x| x == close).count()
        };
        let keep = match c {
            ')' => opened('(', ')'),
            ']' => opened('[', ']'),
            c => !link_closer(c),
        };
        if keep {
            break;
        }
        t = &t[..t.len() - c.len_utf8()];
    }
    t
}

/// The link in `chunk` (a piece of text between [`link_break`]s), as a byte range of it: the
/// chunk without its opening and closing punctuation when that is a link ([`is_link`]), or
/// else a URL that starts inside it: at the scheme before its `://` (`[GNU](https://gnu.org)`,
/// `**https://x.org**`), or at a `www.` or `mailto:` that no ASCII letter or digit comes
/// right before (`[site](www.x.org)`, `(mailto:jane@x.org)`, `сайтwww.x.org`; not
/// `awww.`): the earlier of the two first, then the other when the earlier is no link.
fn link_in(chunk: &str) -> Option<(usize, usize)> {
    let from = chunk.len() - chunk.trim_start_matches(link_opener).len();
    let t = trim_link_end(&chunk[from..]);
    if !t.is_empty() && is_link(t) {
        return Some((from, from + t.len()));
    }
    // The earlier candidate first, then the other: a `www.` that is no link (`www.` alone
    // before `https://x.org`) must not hide a link after it.
    let mut starts = [scheme_start(chunk), prefix_start(chunk)];
    starts.sort_by_key(|s| s.unwrap_or(usize::MAX));
    starts.into_iter().flatten().find_map(|start| {
        let t = trim_link_end(&chunk[start..]);
        is_link(t).then_some((start, start + t.len()))
    })
}

/// Where the scheme of the first `scheme://` in `chunk` starts, if it has one.
fn scheme_start(chunk: &str) -> Option<usize> {
    let at = chunk.find("://")?;
    let scheme_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    let start = chunk[..at]
        .char_indices()
        .rev()
        .take_while(|&(_, c)| scheme_chars(c))
        .last()
        .map(|(i, _)| i)?;
    // A scheme starts with a letter (RFC 3986).
    Some(start + chunk[start..at].find(|c: char| c.is_ascii_alphabetic())?)
}

/// Where the first `www.` or `mailto:` (any letter case) in `chunk` starts that is not the
/// end of a longer ASCII word or name (`awww.`, `x.www.`, `my-www.`). After a letter of
/// another script it starts a link (`詳細はwww.example.jp`: Japanese writes no space before
/// it), as `詳細はhttps://…` does.
fn prefix_start(chunk: &str) -> Option<usize> {
    let b = chunk.as_bytes();
    (0..b.len())
        .filter(|&i| {
            ["www.", "mailto:"].iter().any(|p| {
                b.get(i..i + p.len())
                    .is_some_and(|h| h.eq_ignore_ascii_case(p.as_bytes()))
            })
        })
        .find(|&i| {
            chunk[..i]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        })
}

/// The byte ranges of `para`'s links (`link_in` of each piece between `link_break`s), in
/// order. Text holding none of `/`, `@`, `\` and `www.` (most of it) is passed over in one
/// scan.
pub fn link_spans(para: &str) -> Vec<(usize, usize)> {
    let maybe = |t: &str| {
        t.bytes().any(|c| matches!(c, b'/' | b'@' | b'\\'))
            || t.as_bytes()
                .windows(4)
                .any(|w| w.eq_ignore_ascii_case(b"www."))
    };
    let mut spans = Vec::new();
    if !maybe(para) {
        return spans;
    }
    for chunk in para.split(link_break) {
        if chunk.is_empty() || !maybe(chunk) {
            continue;
        }
        let at = chunk.as_ptr() as usize - para.as_ptr() as usize;
        if let Some((a, b)) = link_in(chunk) {
            spans.push((at + a, at + b));
        }
    }
    spans
}

impl Tokenizer {
    /// Calls `each` with every sentence of `para` that holds at least one token (it may
    /// rewrite the sentence, as term merging does). `sentence` is scratch space reused
    /// between calls.
    pub fn sentences(&self, para: &str, sentence: &mut Sentence, each: impl FnMut(&mut Sentence)) {
        let links = link_spans(para);
        // Most text is ASCII, where a table-free scanner gives the same segments faster.
        if para.is_ascii() {
            self.sentences_from(ascii_word_bounds(para), para, &links, sentence, each)
        } else {
            self.sentences_from(
                para.split_word_bound_indices(),
                para,
                &links,
                sentence,
                each,
            )
        }
    }

    fn sentences_from<'t>(
        &self,
        segments: impl Iterator<Item = (usize, &'t str)>,
        para: &str,
        links: &[(usize, usize)],
        sentence: &mut Sentence,
        mut each: impl FnMut(&mut Sentence),
    ) {
        sentence.clear();
        // The next link not yet passed, and whether its token was pushed.
        let mut link = 0;
        let mut link_pushed = false;
        // Byte offset where the last token (or hyphen after it) ended, to join `a-b` only
        // when nothing separates the three segments.
        let mut last_end = usize::MAX;
        let mut hyphen_end = usize::MAX;
        let mut pending_end = false;
        // The last word as written, to tell `Dr.` (an abbreviation) from a sentence's end.
        let mut last_word = "";
        for (offset, seg) in segments {
            while links.get(link).is_some_and(|&(_, end)| end <= offset) {
                link += 1;
                link_pushed = false;
            }
            if let Some(&(start, end)) = links.get(link).filter(|&&(start, _)| start <= offset) {
                // The first segment of a link stands for all of it; the others are passed.
                if !link_pushed {
                    let text = &para[start..end];
                    let first = text.chars().next().unwrap_or(' ');
                    if pending_end && !first.is_lowercase() && !sentence.tokens.is_empty() {
                        each(sentence);
                        sentence.clear();
                    }
                    sentence.push_as(text, start, self.lowercase, Some(Kind::Link));
                    link_pushed = true;
                    pending_end = false;
                    last_end = end;
                    last_word = "";
                    hyphen_end = usize::MAX;
                }
                continue;
            }
            let first = seg.chars().next().unwrap_or(' ');
            if first.is_alphanumeric() || seg.chars().any(char::is_alphanumeric) {
                let word = strip_possessive(seg);
                if hyphen_end == offset && !sentence.tokens.is_empty() {
                    sentence.join_hyphen(word, self.lowercase);
                } else {
                    if pending_end && !first.is_lowercase() && !sentence.tokens.is_empty() {
                        each(sentence);
                        sentence.clear();
                    }
                    sentence.push(word, offset, self.lowercase);
                }
                pending_end = false;
                last_end = offset + seg.len();
                last_word = seg;
                hyphen_end = usize::MAX;
            } else if is_hyphen(seg) && last_end == offset {
                hyphen_end = offset + seg.len();
            } else if seg == "\u{2029}" {
                // Always a segment of its own (UAX #29's WB3a/b).
                if !sentence.tokens.is_empty() {
                    each(sentence);
                    sentence.clear();
                }
                pending_end = false;
                hyphen_end = usize::MAX;
            } else {
                hyphen_end = usize::MAX;
                if ends_sentence(seg)
                    && !(seg == "." && last_end == offset && abbreviation(last_word))
                {
                    pending_end = true;
                }
            }
        }
        if !sentence.tokens.is_empty() {
            each(sentence);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str, lowercase: bool) -> Vec<Vec<String>> {
        let t = Tokenizer { lowercase };
        let mut s = Sentence::default();
        let mut out = Vec::new();
        t.sentences(text, &mut s, |s| {
            out.push((0..s.tokens.len()).map(|i| s.text(i).to_string()).collect());
        });
        out
    }

    fn kinds(text: &str) -> Vec<Vec<(String, Kind)>> {
        let t = Tokenizer { lowercase: true };
        let mut s = Sentence::default();
        let mut out = Vec::new();
        t.sentences(text, &mut s, |s| {
            out.push(
                (0..s.tokens.len())
                    .map(|i| (s.text(i).to_string(), s.tokens[i].kind))
                    .collect(),
            );
        });
        out
    }

    #[test]
    fn urls_addresses_and_paths_are_one_token_that_is_never_a_word() {
        use Kind::{Link, Number, Word};
        let w = |t: &str, k| (t.to_string(), k);
        assert_eq!(
            kinds(
                "Copyright 2009 Lefteris <edimitro@tee.gr>, see /usr/share/common-licenses/GPL-2 \
                 and (https://www.gnu.org/licenses/). Then src/lazr/restfulclient/errors.py."
            ),
            vec![
                vec![
                    w("copyright", Word),
                    w("2009", Number),
                    w("lefteris", Word),
                    w("edimitro@tee.gr", Link),
                    w("see", Word),
                    w("/usr/share/common-licenses/gpl-2", Link),
                    w("and", Word),
                    w("https://www.gnu.org/licenses/", Link),
                ],
                vec![w("then", Word), w("src/lazr/restfulclient/errors.py", Link)],
            ]
        );
        // The Unicode segmenter's path (text that is not ASCII) finds them the same way.
        assert_eq!(
            kinds("Café, voir www.exemple.fr/été ou ~/Documents/thé puis fin"),
            vec![vec![
                w("café", Word),
                w("voir", Word),
                w("www.exemple.fr/été", Link),
                w("ou", Word),
                w("~/documents/thé", Link),
                w("puis", Word),
                w("fin", Word),
            ]]
        );
    }

    #[test]
    fn prose_written_with_slashes_or_at_signs_stays_words() {
        assert_eq!(
            split("and/or he/she/they use TCP/IP at @home or 1/2 a / b", true),
            vec![vec![
                "and", "or", "he", "she", "they", "use", "tcp", "ip", "at", "home", "or", "1", "2",
                "a", "b"
            ]]
        );
    }

    #[test]
    fn what_is_a_link() {
        for link in [
            "https://gnu.org",
            "git+ssh://host/repo",
            "WWW.example.com",
            "mailto:jane",
            "jane.doe+x@mail.example.org",
            "/etc",
            "~/x",
            "./configure",
            "../lib",
            r"C:\Windows",
            r"a\b\c",
            "a/b/c/d.txt",
            "src/lib/util.py",
            "libs/regex/*",
            "docs/api/",
            "node_modules/@babel/core_js",
            "/usr/lib/node_modules/@babel/core",
            "git@github.com:owner/repository.git",
            "https://en.wikipedia.org/wiki/Paris_(city)",
            "third_party/xla/xla",
        ] {
            assert!(is_link(link), "{link}");
        }
        for prose in [
            "and/or",
            "he/she/they",
            "he/she/they/them",
            "Mon/Wed/Fri/Sat",
            "a/b/c/d",
            "@home",
            "jane@localhost",
            "a@.b",
            "x@y.",
            "://",
            "/",
            "/-/",
            "www.",
            "a/b",
            r"a\b",
            "mailto:",
        ] {
            assert!(!is_link(prose), "{prose}");
        }
        assert!(link_spans("no links here, 3/4 of it").is_empty());
        let found = |para: &str| -> Vec<String> {
            link_spans(para)
                .into_iter()
                .map(|(a, b)| para[a..b].to_string())
                .collect()
        };
        assert_eq!(found("see <https://x.org/a>, then"), ["https://x.org/a"]);
        // Found inside a chunk: Markdown, emphasis, HTML, a name written against its address,
        // a bracket that belongs to the URL.
        assert_eq!(
            found(
                "[GNU](https://www.gnu.org/licenses/gpl.html) **https://x.org/page** \
                 <a href=\"https://y.org/\"> Jane<jane@example.org> \
                 (https://en.wikipedia.org/wiki/Paris_(city))."
            ),
            [
                "https://www.gnu.org/licenses/gpl.html",
                "https://x.org/page",
                "https://y.org/",
                "jane@example.org",
                "https://en.wikipedia.org/wiki/Paris_(city)"
            ]
        );
        // A `www.` or `mailto:` link inside a chunk, as a `scheme://` one (s19's leftover);
        // not the end of a longer word.
        assert_eq!(
            found(
                "[site](www.example.org/a) (mailto:jane@x.org). *WWW.x.org/b* \
                 awww.nope.org/c x.www.nope.org/d"
            ),
            ["www.example.org/a", "mailto:jane@x.org", "WWW.x.org/b"]
        );
        // Review R10 (s20): a `www.` right after a letter of a script written without
        // spaces starts a link, as `https://` does there; an ASCII letter before it still
        // makes it the end of a longer word.
        assert_eq!(
            found("ดูที่www.example.th/a и сайтwww.example.ru/b 詳細はwww.example.jp/c"),
            ["www.example.th/a", "www.example.ru/b", "www.example.jp/c"]
        );
        assert!(found("awww.nope.org/c").is_empty());
        // The earlier candidate no link: the later one is tried.
        assert_eq!(found("(www.)https://x.org/a"), ["https://x.org/a"]);
        // Text written without spaces: a date or a URL in it is cut out, not the paragraph.
        assert_eq!(
            found("コンピュータは2020/01/02にプログラムを実行した。詳細はhttps://example.jp/docsにあります。"),
            ["2020/01/02", "https://example.jp/docs"]
        );
    }

    #[test]
    fn words_around_a_link_in_text_without_spaces_stay_words() {
        let sentences = split(
            "コンピュータは2020/01/02にプログラムを実行した。データベースも確認した。",
            true,
        );
        assert_eq!(sentences.len(), 2, "{sentences:?}");
        let words: Vec<&String> = sentences.iter().flatten().collect();
        for w in ["コンピュータ", "プログラム", "データベース"] {
            assert!(words.iter().any(|x| x.as_str() == w), "{w}: {words:?}");
        }
        assert!(
            words.iter().any(|x| x.as_str() == "2020/01/02"),
            "{words:?}"
        );
    }

    /// HTML's block boundaries come as U+2029: the words of two table cells (`<td>Paris</td>
    /// <td>france and rome</td>`) were one sentence, and paired.
    #[test]
    fn a_paragraph_separator_ends_the_sentence_whatever_follows() {
        assert_eq!(
            split(
                "Paris\u{2029}france and\u{2029}\u{2029}rome-\u{2029}bound",
                true
            ),
            vec![
                vec!["paris"],
                vec!["france", "and"],
                vec!["rome"],
                vec!["bound"]
            ]
        );
    }

    #[test]
    fn punctuation_is_not_a_token_and_ends_sentences() {
        assert_eq!(
            split("Paris is the capital of France. Rome, too!", true),
            vec![
                vec!["paris", "is", "the", "capital", "of", "france"],
                vec!["rome", "too"]
            ]
        );
    }

    #[test]
    fn lowercase_after_a_full_stop_does_not_end_the_sentence() {
        assert_eq!(
            split("Fruit, e.g. apples and pears.", false),
            vec![vec!["Fruit", "e.g", "apples", "and", "pears"]]
        );
    }

    #[test]
    fn a_full_stop_after_a_title_or_an_initial_does_not_end_the_sentence() {
        assert_eq!(
            split(
                "Dr. Watson met John F. Kennedy in St. Louis. Then he left.",
                true
            ),
            vec![
                vec!["dr", "watson", "met", "john", "f", "kennedy", "in", "st", "louis"],
                vec!["then", "he", "left"]
            ]
        );
        // Other words before a full stop still end their sentence, and so does a title
        // that ends one (`etc.`, `Jr.` are not in the list).
        assert_eq!(
            split(
                "They met Dr. Watson. Watson left etc. Then Jr. Smith came.",
                false
            )
            .len(),
            4
        );
    }

    #[test]
    fn line_breaks_inside_a_paragraph_do_not_end_sentences() {
        assert_eq!(
            split("The dog\nchased the cat.\nIt ran.", true),
            vec![
                vec!["the", "dog", "chased", "the", "cat"],
                vec!["it", "ran"]
            ]
        );
    }

    #[test]
    fn hyphenated_compounds_stay_one_word_but_dashes_between_words_split() {
        assert_eq!(
            split("A well-known X-ray - not a dash-", true),
            vec![vec!["a", "well-known", "x-ray", "not", "a", "dash"]]
        );
    }

    #[test]
    fn numbers_hold_places_but_are_numbers() {
        let t = Tokenizer { lowercase: true };
        let mut s = Sentence::default();
        let mut kinds = Vec::new();
        t.sentences("In 1990 pi was 3.14 or so", &mut s, |s| {
            kinds = s
                .tokens
                .iter()
                .map(|t| {
                    (
                        s.buf[t.text.0 as usize..t.text.1 as usize].to_string(),
                        t.kind,
                    )
                })
                .collect();
        });
        assert_eq!(kinds[1], ("1990".to_string(), Kind::Number));
        assert_eq!(kinds[4], ("3.14".to_string(), Kind::Number));
        assert_eq!(kinds[0], ("in".to_string(), Kind::Word));
    }

    #[test]
    fn unicode_words_possessives_and_case() {
        assert_eq!(
            split("Zürich’s Straße and ÉCOLE's café. 東京", true),
            vec![
                vec!["zürich", "straße", "and", "école", "café"],
                vec!["東", "京"]
            ]
        );
        assert_eq!(split("don't", true), vec![vec!["don't"]]);
    }

    #[test]
    fn one_word_in_every_unicode_spelling_is_one_token() {
        // NFC and NFD café, a ligature, fullwidth letters, and the typographic apostrophes.
        assert_eq!(
            split(
                "Caf\u{e9} cafe\u{301} \u{fb01}nance \u{ff30}\u{ff41}\u{ff52}\u{ff49}\u{ff53}",
                true
            ),
            vec![vec!["café", "café", "finance", "paris"]]
        );
        assert_eq!(
            split("don\u{2019}t don\u{2bc}t don't Don\u{2019}t", true),
            vec![vec!["don't"; 4]]
        );
        // Case is kept when asked, the form is still one.
        assert_eq!(
            split("Cafe\u{301} We\u{2019}re", false),
            vec![vec!["Café", "We're"]]
        );
        // A possessive in the modifier-letter apostrophe is dropped like the others.
        assert_eq!(split("France\u{2bc}s", true), vec![vec!["france"]]);
    }

    /// Found by an audit: a word holding a soft hyphen (`ele\u{AD}phant`, from HTML or PDF)
    /// or a ZWNJ (Persian `کتاب‌ها`) was tokenised but never became a term.
    #[test]
    fn invisible_format_characters_go_and_joiners_stay_between_letters() {
        assert_eq!(
            split(
                "The ele\u{ad}phant, \u{feff}zebra\u{200b} and word\u{2060}joiner \u{200e}left",
                true
            ),
            vec![vec![
                "the",
                "elephant",
                "zebra",
                "and",
                "wordjoiner",
                "left"
            ]]
        );
        // ZWNJ between letters is Persian spelling; ZWJ after a virama makes a half form.
        assert_eq!(
            split(
                "\u{06a9}\u{062a}\u{0627}\u{0628}\u{200c}\u{0647}\u{0627}",
                true
            ),
            vec![vec![
                "\u{06a9}\u{062a}\u{0627}\u{0628}\u{200c}\u{0647}\u{0627}"
            ]]
        );
        assert_eq!(
            split("\u{0915}\u{094d}\u{200d}\u{0937}", true),
            vec![vec!["\u{0915}\u{094d}\u{200d}\u{0937}"]]
        );
        // At the end of a word, or doubled, a joiner joins nothing.
        let mut out = String::new();
        normalize_word("ab\u{200c}", true, &mut out);
        assert_eq!(out, "ab");
        out.clear();
        normalize_word("a\u{200c}\u{200c}b\u{ad}C", true, &mut out);
        assert_eq!(out, "a\u{200c}bc");
        out.clear();
        normalize_word("\u{200d}ab", false, &mut out);
        assert_eq!(out, "ab");
    }

    proptest::proptest! {
        /// The ASCII fast path (no normalising, its own segmenter) gives the tokens the
        /// Unicode path gives the same words: a non-ASCII word after them sends the paragraph
        /// down the Unicode path.
        #[test]
        fn ascii_and_unicode_paths_give_the_same_tokens(
            text in "[a-cA-C0-9_ .,;:'!?\t\r\n()-]{0,40}"
        ) {
            let t = Tokenizer { lowercase: true };
            let mut s = Sentence::default();
            let tokens = |para: &str, s: &mut Sentence| {
                let mut out: Vec<(String, u32, Kind)> = Vec::new();
                t.sentences(para, s, |s| {
                    out.extend(s.tokens.iter().enumerate().map(|(i, k)| {
                        (s.text(i).to_string(), k.offset, k.kind)
                    }));
                });
                out
            };
            let fast = tokens(&text, &mut s);
            let mut slow = tokens(&format!("{text} \u{e9}t\u{e9}"), &mut s);
            proptest::prop_assert_eq!(slow.pop().map(|t| t.0), Some("été".to_string()));
            proptest::prop_assert_eq!(fast, slow);
        }

        #[test]
        fn ascii_fast_path_matches_unicode_segmentation(
            text in "[a-cA-C0-9_ .,;:'!?\t\r\n()-]{0,40}"
        ) {
            let fast: Vec<(usize, &str)> = ascii_word_bounds(&text).collect();
            let slow: Vec<(usize, &str)> = text.split_word_bound_indices().collect();
            proptest::prop_assert_eq!(fast, slow);
        }
    }

    /// Found by an audit: lower-cased one character at a time, a capital sigma at the end of
    /// a word became `σ`, so `ΛΌΓΟΣ` was `λόγοσ`, a term of its own beside `λόγος`.
    #[test]
    fn a_capital_sigma_at_the_end_of_a_word_is_a_final_sigma() {
        assert_eq!(
            split("Ο ΛΌΓΟΣ και ο λόγος. ΣΟΦΊΑ ΟΔΥΣΣΕΎΣ-ΣΟΦΌΣ", true),
            vec![
                vec!["ο", "λόγος", "και", "ο", "λόγος"],
                vec!["σοφία", "οδυσσεύς-σοφός"]
            ]
        );
        // Case kept when asked; through NFKC (the lunate sigma symbol is a capital sigma).
        assert_eq!(split("ΛΌΓΟΣ", false), vec![vec!["ΛΌΓΟΣ"]]);
        let mut out = String::from("before ");
        normalize_word("ΛΟΓΟ\u{3f9}", true, &mut out);
        assert_eq!(out, "before λογος");
        // Other letters as before, `str::to_lowercase`'s default rules.
        for word in ["İSTANBUL", "ΣΑΣ", "Σ", "ΌΣΟΙ", "ÉCOLE", "ΆΝΘΡΩΠΟΣ."] {
            let mut out = String::new();
            normalize_word(word, true, &mut out);
            assert_eq!(out, word.to_lowercase(), "{word}");
        }
    }

    /// Found by an audit: the danda and the Arabic question mark did not end a sentence, so
    /// the words of two Hindi sentences were paired with each other.
    #[test]
    fn other_scripts_full_stops_and_question_marks_end_sentences() {
        assert_eq!(
            split("राम घर गया। सीता वन गई॥ अब", true),
            vec![
                vec!["राम", "घर", "गया"],
                vec!["सीता", "वन", "गई"],
                vec!["अब"]
            ]
        );
        for (text, parts) in [
            ("کجا رفتی؟ خانه رفتم", 2),
            ("وہ گھر گیا۔ میں رکا", 2),
            ("Նա եկավ։ Ես գնացի", 2),
            ("ሰላም ነው። እንዴት ነህ፧ ደህና", 3),
            ("သူ သွား တယ်။ ငါ နေ တယ်", 2),
            ("គាត់ ទៅ ផ្ទះ។ ខ្ញុំ នៅ", 2),
            ("Τι είναι\u{37e} Ένα σπίτι", 2),
            ("What‼ Why⁇ How‽ Now", 4),
            ("東京に行った｡大阪に行く", 2),
        ] {
            assert_eq!(split(text, true).len(), parts, "{text}");
        }
    }

    #[test]
    fn offsets_point_into_the_paragraph() {
        let t = Tokenizer { lowercase: true };
        let mut s = Sentence::default();
        let text = "Hello  big-World";
        let mut offs = Vec::new();
        t.sentences(text, &mut s, |s| {
            offs = s.tokens.iter().map(|t| t.offset).collect();
        });
        assert_eq!(offs, vec![0, 7]);
    }
}
