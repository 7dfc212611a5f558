//! The text of an HTML file, for mining: markup removed, character references decoded, and
//! the file's lines kept.
//!
//! Read as plain text, HTML gave its markup as words: of 7,507 pairs mined from 23 HTML files
//! of `/usr/share/doc`, 2,075 held tag or reference words (`nbsp`, `amp`, `href`, `div`, `td`,
//! `doctype html`), and `ele&shy;phant` was three words, `ele`, `shy` and `phant`.
//! [`HtmlText`] reads HTML and gives its text:
//!
//! - tags are removed. Inline (phrasing) elements, such as `a`, `b`, `em`, `span`, leave
//!   nothing, so `ele<b>phant</b>` is `elephant`, as a browser shows it; every other element
//!   (`p`, `br`, `div`, `li`, `h1`–`h6`, `tr`, `td`, `title`, and elements not known) leaves
//!   a block boundary, [`BLOCK`], where the tokenizer ends a sentence whatever follows, so the
//!   words of two table cells, list items or headings never pair;
//! - the content of `script` and `style` is dropped, and so are comments, `<!DOCTYPE …>`,
//!   `<?xml …?>` and other declarations;
//! - character references are decoded: the named ones of HTML5 (all of them, from
//!   `html-escape`), decimal (`&#173;`) and hexadecimal (`&#xAD;`) ones. So `ele&shy;phant` is
//!   `ele\u{AD}phant`, whose soft hyphen the tokenizer removes: `elephant`. A reference
//!   without its `;`, or one that names nothing, stays as it is written; one that decodes to
//!   a line break is a space, so that lines keep their numbers;
//! - every line break of the file is kept, inside tags, comments and scripts too, so the
//!   text's lines are the file's, and `file:line` in provenance and skip reports points into
//!   the file. Bytes that are not UTF-8 pass as they are, and their line is skipped as in
//!   plain text;
//! - a blank line of the file is a paragraph break, as in plain text, and so is a block
//!   boundary alone on its line; a line that held nothing but inline markup or a comment is
//!   not blank, and does not end its paragraph (the reader's rule: a line of white space ends
//!   a paragraph of HTML only when it holds a [`BLOCK`]; a blank line of the file is given
//!   one).
//!
//! Hand-written rather than an HTML parser (`html5ever`, `scraper`): those build the
//! document's tree, holding it whole, where mining needs only the text, streamed (a
//! minified page is one long line, and no line is held whole) and in the file's lines. A
//! few states are all it takes: a tag and its quoted attribute values, a comment, the
//! content of `script` and `style`, a character reference. Markup a browser would repair
//! is not repaired: a `<` followed by a letter starts a tag that runs to the next `>` outside
//! quotes.
//!
//! Markup left open at the end of a file (an attribute value whose quote is never closed, a
//! comment without `-->`, a `script` without its end tag) holds the rest of the file, as it
//! does in a browser, which shows nothing after it either. That text is not mined, and the
//! reader says so: [`HtmlText::left_open`] names the line where the markup opened and how
//! many lines it held, for the mining report to name (`file:line`), so that a file whose
//! text went missing tells why.

use std::io::{BufRead, Read};

/// What a block boundary of HTML becomes in its text: U+2029 PARAGRAPH SEPARATOR, white
/// space that the tokenizer takes as the end of a sentence, whatever follows.
pub const BLOCK: char = '\u{2029}';

/// [`BLOCK`] in UTF-8.
const BLOCK_UTF8: &[u8] = "\u{2029}".as_bytes();

/// Longest tag name kept (the longest known is `blockquote`, `figcaption`: 10); a longer
/// name is an element not known.
const NAME_MAX: usize = 16;

/// Longest character reference read after its `&` (`&CounterClockwiseContourIntegral;`
/// has 32 bytes after it); a longer run is text.
const REF_MAX: usize = 40;

/// Elements whose tags leave nothing in the text: inline (phrasing) elements, which a
/// browser shows within the line. Any other element is a block boundary.
fn inline(name: &[u8]) -> bool {
    matches!(
        name,
        b"a" | b"abbr"
            | b"acronym"
            | b"b"
            | b"bdi"
            | b"bdo"
            | b"big"
            | b"cite"
            | b"code"
            | b"data"
            | b"del"
            | b"dfn"
            | b"em"
            | b"font"
            | b"i"
            | b"ins"
            | b"kbd"
            | b"mark"
            | b"nobr"
            | b"q"
            | b"rb"
            | b"rp"
            | b"rt"
            | b"rtc"
            | b"ruby"
            | b"s"
            | b"samp"
            | b"small"
            | b"span"
            | b"strike"
            | b"strong"
            | b"sub"
            | b"sup"
            | b"time"
            | b"tt"
            | b"u"
            | b"var"
            | b"wbr"
    )
}

/// Whether the start of a file (`head`, decompressed) is that of an HTML document: after a
/// byte-order mark, white space, an XML declaration and comments, `<!DOCTYPE html` or an
/// `<html` tag, in any case. A file not named as HTML (`index`, standard input) is read as
/// HTML when it starts so; text that merely holds a tag (`<b>` in a `.txt` file) is not.
pub fn looks_like_html(head: &[u8]) -> bool {
    let trim = |h: &[u8]| -> usize { h.iter().take_while(|b| b.is_ascii_whitespace()).count() };
    let find = |h: &[u8], what: &[u8]| h.windows(what.len()).position(|w| w == what);
    let starts = |h: &[u8], what: &[u8]| {
        h.get(..what.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(what))
    };
    let mut h = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    h = &h[trim(h)..];
    if starts(h, b"<?xml") {
        let Some(end) = find(h, b"?>") else {
            return false;
        };
        h = &h[end + 2..];
        h = &h[trim(h)..];
    }
    while h.starts_with(b"<!--") {
        let Some(end) = find(&h[4..], b"-->") else {
            return false;
        };
        h = &h[4 + end + 3..];
        h = &h[trim(h)..];
    }
    let ends_name = |h: &[u8], at: usize| {
        h.get(at)
            .is_none_or(|b| b.is_ascii_whitespace() || *b == b'>')
    };
    (starts(h, b"<!doctype html") && ends_name(h, 14)) || (starts(h, b"<html") && ends_name(h, 5))
}

/// Where the converter is in the markup.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Text.
    #[default]
    Text,
    /// A character reference, after its `&`.
    Ref,
    /// After a `<`.
    Lt,
    /// After `</`.
    LtSlash,
    /// A tag's name.
    TagName,
    /// A tag's attributes, to its `>`.
    Attrs,
    /// After `<!`.
    Bang,
    /// After `<!-`.
    BangDash,
    /// A comment, to its `-->`.
    Comment,
    /// A declaration or processing instruction (`<!DOCTYPE …>`, `<?xml …?>`), to its `>`.
    Bogus,
    /// The content of `script` or `style`, to its end tag.
    Raw,
}

/// The markup-removing state machine of [`HtmlText`], fed bytes in pieces of any size.
#[derive(Debug, Default)]
struct Converter {
    state: State,
    /// The tag's name, lower case (at most [`NAME_MAX`] + 1 bytes: a longer one is not
    /// known), and whether it ends an element (`</p>`).
    name: Vec<u8>,
    end_tag: bool,
    /// In a tag's attributes: the quote of the value being read, whether a `=` came before
    /// (a quote starts a value only there), and the last byte (a `/` before `>` closes the
    /// element in its start tag).
    quote: Option<u8>,
    after_eq: bool,
    last: u8,
    /// The character reference being read, after its `&`.
    reference: Vec<u8>,
    /// `-` in a row in a comment (two, then `>`, end it).
    dashes: u8,
    /// In `script` or `style`: its end tag (`</script`), and how much of it was matched.
    raw_end: &'static [u8],
    matched: usize,
    /// Whether the line so far holds text other than white space, and markup.
    line_text: bool,
    line_markup: bool,
    /// Line breaks read so far, the line (1-based) of the `<` that opened the markup now
    /// open, and that of the quote of the attribute value being read.
    lines: u64,
    opened: u64,
    quote_opened: u64,
    /// Whether the last piece fed ended with a line break.
    ends_line: bool,
}

/// Markup left open at the end of an HTML file, which held the rest of the file: see
/// [`HtmlText::left_open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOpen {
    /// The line (1-based) where it opened.
    pub line: u64,
    /// The lines of the file after that one, all held by it.
    pub lines_after: u64,
    /// What was left open, as the report says it: `an attribute value opened with "`.
    pub what: &'static str,
}

impl std::fmt::Display for LeftOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rest = match self.lines_after {
            0 => "the rest of its line".to_string(),
            n => format!("the rest of the file ({n} more line(s))"),
        };
        write!(
            f,
            "{} is never closed: {rest} was read as markup, as a browser reads it, and not \
             mined",
            self.what
        )
    }
}

impl Converter {
    /// Converts `input`, appending the text to `out`.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if let Some(&last) = input.last() {
            self.ends_line = last == b'\n';
        }
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Text {
                // Text runs are copied whole: most of a page's bytes.
                let rest = &input[i..];
                let k = rest
                    .iter()
                    .position(|&b| matches!(b, b'<' | b'&' | b'\n'))
                    .unwrap_or(rest.len());
                if k > 0 {
                    if !self.line_text && rest[..k].iter().any(|b| !b.is_ascii_whitespace()) {
                        self.line_text = true;
                    }
                    out.extend_from_slice(&rest[..k]);
                    i += k;
                    continue;
                }
            }
            if self.step(input[i], out) {
                i += 1;
            }
        }
    }

    /// Ends the input: a reference or `<` left open is text; open markup is dropped, and
    /// returned (what it was, where it opened).
    fn finish(&mut self, out: &mut Vec<u8>) -> Option<LeftOpen> {
        let what = match (self.state, self.quote) {
            (State::Attrs, Some(b'"')) => Some("an attribute value opened with \""),
            (State::Attrs, Some(_)) => Some("an attribute value opened with '"),
            (State::TagName, _) | (State::Attrs, None) => Some("a tag (no `>`)"),
            (State::Bang | State::BangDash | State::Comment, _) => Some("a comment (no `-->`)"),
            (State::Bogus, _) => Some("a declaration (no `>`)"),
            (State::Raw, _) if self.raw_end == b"</script" => Some("a script (no `</script>`)"),
            (State::Raw, _) => Some("a style (no `</style>`)"),
            (State::Text | State::Ref | State::Lt | State::LtSlash, _) => None,
        };
        let line = if self.state == State::Attrs && self.quote.is_some() {
            self.quote_opened
        } else {
            self.opened
        };
        match self.state {
            State::Ref => {
                out.push(b'&');
                out.extend_from_slice(&self.reference);
            }
            State::Lt => out.push(b'<'),
            State::LtSlash => out.extend_from_slice(b"</"),
            _ => {}
        }
        self.state = State::Text;
        // A file that ends with a line break has no line after it.
        let lines = self.lines + u64::from(!self.ends_line);
        what.map(|what| LeftOpen {
            line,
            lines_after: lines.saturating_sub(line),
            what,
        })
    }

    /// A line break of the file, kept in the text; a blank line of the file (no text, no
    /// markup) is given a [`BLOCK`], a paragraph break.
    fn newline(&mut self, out: &mut Vec<u8>) {
        if self.state == State::Text && !self.line_text && !self.line_markup {
            out.extend_from_slice(BLOCK_UTF8);
        }
        out.push(b'\n');
        self.lines += 1;
        self.line_text = false;
        self.line_markup = self.state != State::Text;
    }

    /// Takes one byte; false when it is to be taken again in the state it left.
    fn step(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        match self.state {
            State::Text => match b {
                b'<' => {
                    self.state = State::Lt;
                    self.line_markup = true;
                    self.opened = self.lines + 1;
                }
                b'&' => {
                    self.state = State::Ref;
                    self.reference.clear();
                    self.line_text = true;
                }
                b'\n' => self.newline(out),
                _ => {
                    self.line_text |= !b.is_ascii_whitespace();
                    out.push(b);
                }
            },
            State::Ref => {
                if b == b';' {
                    self.state = State::Text;
                    self.reference_end(out);
                } else if (b.is_ascii_alphanumeric() || (b == b'#' && self.reference.is_empty()))
                    && self.reference.len() < REF_MAX
                {
                    self.reference.push(b);
                } else {
                    out.push(b'&');
                    out.extend_from_slice(&self.reference);
                    self.state = State::Text;
                    return false;
                }
            }
            State::Lt => match b {
                b'/' => self.state = State::LtSlash,
                b'!' => self.state = State::Bang,
                b'?' => self.state = State::Bogus,
                _ if b.is_ascii_alphabetic() => self.tag_start(b, false),
                _ => {
                    // `a < b`: text.
                    out.push(b'<');
                    self.line_text = true;
                    self.state = State::Text;
                    return false;
                }
            },
            State::LtSlash => match b {
                // `</>` is nothing.
                b'>' => self.state = State::Text,
                _ if b.is_ascii_alphabetic() => self.tag_start(b, true),
                _ => {
                    self.state = State::Bogus;
                    return false;
                }
            },
            State::TagName => match b {
                b'>' => self.tag_end(false, out),
                b'/' | b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' => {
                    self.state = State::Attrs;
                    self.quote = None;
                    self.after_eq = false;
                    self.last = b;
                    if b == b'\n' {
                        self.newline(out);
                    }
                }
                _ => {
                    if self.name.len() <= NAME_MAX {
                        self.name.push(b.to_ascii_lowercase());
                    }
                }
            },
            State::Attrs => {
                match (self.quote, b) {
                    (Some(q), _) if b == q => self.quote = None,
                    (Some(_), _) => {}
                    (None, b'>') => {
                        let closed = self.last == b'/';
                        self.tag_end(closed, out);
                    }
                    (None, b'"' | b'\'') if self.after_eq => {
                        self.quote = Some(b);
                        self.quote_opened = self.lines + 1;
                    }
                    (None, b'=') => self.after_eq = true,
                    (None, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ') => {}
                    (None, _) => self.after_eq = false,
                }
                if b == b'\n' {
                    self.newline(out);
                }
                self.last = b;
            }
            State::Bang => {
                if b == b'-' {
                    self.state = State::BangDash;
                } else {
                    self.state = State::Bogus;
                    return false;
                }
            }
            State::BangDash => {
                if b == b'-' {
                    // Two dashes counted: `<!-->` ends at once, as a browser ends it.
                    self.state = State::Comment;
                    self.dashes = 2;
                } else {
                    self.state = State::Bogus;
                    return false;
                }
            }
            State::Comment => match b {
                b'-' => self.dashes = (self.dashes + 1).min(2),
                b'>' if self.dashes >= 2 => self.state = State::Text,
                _ => {
                    self.dashes = 0;
                    if b == b'\n' {
                        self.newline(out);
                    }
                }
            },
            State::Bogus => match b {
                b'>' => self.state = State::Text,
                b'\n' => self.newline(out),
                _ => {}
            },
            State::Raw => {
                if self.matched == self.raw_end.len() {
                    // `</script` read: the end tag if its name ends here (`</script>`,
                    // `</script >`), the rest of it then read as any tag's; else text of
                    // the script (`</scripts`).
                    if matches!(b, b'>' | b'/' | b'\t' | b'\n' | b'\x0c' | b'\r' | b' ') {
                        self.state = State::TagName;
                        self.end_tag = true;
                        self.name.clear();
                        self.name.extend_from_slice(&self.raw_end[2..]);
                        return false;
                    }
                    self.matched = 0;
                }
                if b.to_ascii_lowercase() == self.raw_end[self.matched] {
                    self.matched += 1;
                } else {
                    self.matched = usize::from(b == b'<');
                    if b == b'\n' {
                        self.newline(out);
                    }
                }
            }
        }
        true
    }

    /// A tag's name starts with `first`.
    fn tag_start(&mut self, first: u8, end_tag: bool) {
        self.state = State::TagName;
        self.end_tag = end_tag;
        self.name.clear();
        self.name.push(first.to_ascii_lowercase());
    }

    /// A tag ends (`closed`: `<br/>`): a block boundary unless the element is inline; the
    /// content of `script` and `style` is dropped.
    fn tag_end(&mut self, closed: bool, out: &mut Vec<u8>) {
        self.state = State::Text;
        if !inline(&self.name) {
            out.extend_from_slice(BLOCK_UTF8);
        }
        if self.end_tag || closed {
            return;
        }
        let raw_end: &'static [u8] = match self.name.as_slice() {
            b"script" => b"</script",
            b"style" => b"</style",
            _ => return,
        };
        self.state = State::Raw;
        self.raw_end = raw_end;
        self.matched = 0;
    }

    /// A character reference ends at its `;`: decoded, or as written when it names
    /// nothing.
    fn reference_end(&mut self, out: &mut Vec<u8>) {
        let mut written = Vec::with_capacity(self.reference.len() + 2);
        written.push(b'&');
        written.extend_from_slice(&self.reference);
        written.push(b';');
        // ASCII letters, digits and `#` only: UTF-8.
        let decoded = std::str::from_utf8(&written)
            .ok()
            .map(html_escape::decode_html_entities);
        match decoded {
            Some(std::borrow::Cow::Owned(text)) => {
                // A line break in the text would put the lines after it out of step.
                for c in text.chars() {
                    let c = if matches!(c, '\n' | '\r' | '\x0c') {
                        ' '
                    } else {
                        c
                    };
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
            _ => out.extend_from_slice(&written),
        }
    }
}

/// Reads HTML from `inner` and gives its text (see the module's doc), streamed: it holds a
/// piece of the input at a time, never a line or the document whole.
pub struct HtmlText<R> {
    inner: R,
    conv: Converter,
    /// Text converted and not yet read, from `pos`.
    out: Vec<u8>,
    pos: usize,
    done: bool,
    left_open: Option<LeftOpen>,
}

impl<R: BufRead> HtmlText<R> {
    /// The text of the HTML `inner` reads.
    pub fn new(inner: R) -> HtmlText<R> {
        HtmlText {
            inner,
            conv: Converter::default(),
            out: Vec::new(),
            pos: 0,
            done: false,
            left_open: None,
        }
    }

    /// Markup left open at the end of the file, which held the rest of it (`None` when
    /// none was, or before the end was read). Its text was not mined; the caller reports
    /// it, with the file's name.
    pub fn left_open(&self) -> Option<&LeftOpen> {
        self.left_open.as_ref()
    }
}

impl<R: BufRead> BufRead for HtmlText<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        // A piece may convert to nothing (a script): read on until text comes or input ends.
        while self.pos >= self.out.len() && !self.done {
            self.out.clear();
            self.pos = 0;
            let piece = self.inner.fill_buf()?;
            if piece.is_empty() {
                self.left_open = self.conv.finish(&mut self.out);
                self.done = true;
            } else {
                let n = piece.len();
                self.conv.feed(piece, &mut self.out);
                self.inner.consume(n);
            }
        }
        Ok(&self.out[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.out.len());
    }
}

impl<R: BufRead> Read for HtmlText<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let text = self.fill_buf()?;
        let n = text.len().min(buf.len());
        buf[..n].copy_from_slice(&text[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of `html`, fed in pieces of `piece` bytes.
    fn text_in_pieces(html: &str, piece: usize) -> String {
        let mut conv = Converter::default();
        let mut out = Vec::new();
        for p in html.as_bytes().chunks(piece) {
            conv.feed(p, &mut out);
        }
        conv.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn text(html: &str) -> String {
        let whole = text_in_pieces(html, html.len().max(1));
        // Any cut between pieces gives the same text.
        for piece in [1, 2, 3, 7] {
            assert_eq!(text_in_pieces(html, piece), whole, "pieces of {piece}");
        }
        whole
    }

    #[test]
    fn tags_go_inline_ones_without_a_trace_and_block_ones_as_a_boundary() {
        assert_eq!(
            text("<p>The <b>ele</b>phant and <a href=\"x>y\">its</a> calf</p><p>Next</p>"),
            "\u{2029}The elephant and its calf\u{2029}\u{2029}Next\u{2029}"
        );
        assert_eq!(
            text("<TD CLASS='a'>Paris</td><td>France<BR/>Rome"),
            "\u{2029}Paris\u{2029}\u{2029}France\u{2029}Rome"
        );
        // A `<` that starts no tag is text.
        assert_eq!(text("a < b and c<3"), "a < b and c<3");
    }

    #[test]
    fn references_are_decoded_and_unknown_ones_kept() {
        assert_eq!(
            text("ele&shy;phant caf&eacute; &#233;t&#xE9; &lt;b&gt; &amp;amp; &nbsp;"),
            "ele\u{ad}phant café été <b> &amp; \u{a0}"
        );
        assert_eq!(
            text("&nosuch; &amp AT&T &#; a&"),
            "&nosuch; &amp AT&T &#; a&"
        );
        // A reference to a line break is a space: the file's lines stay in step.
        assert_eq!(text("a&#10;b&NewLine;c"), "a b c");
    }

    #[test]
    fn scripts_styles_comments_and_declarations_go_and_lines_stay() {
        let html = "<!DOCTYPE html>\n<html><head><style>\np { x: '</p>' }\n</style>\n\
                    <script type=\"a\">if (a<b) {\n s = \"</scr\" + \"ipt>\";\n}</SCRIPT >\n\
                    </head><!-- a\n comment --><body>Paris\n\nRome</body></html>\n";
        let t = text(html);
        assert_eq!(t.lines().count(), html.lines().count(), "{t:?}");
        for gone in ["DOCTYPE", "x:", "if", "scr", "comment", "body", "html"] {
            assert!(!t.contains(gone), "{gone} in {t:?}");
        }
        // The blank line of the file is a paragraph break; lines of markup alone are not.
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[8], "\u{2029}Paris", "{t:?}");
        assert_eq!(lines[9], "\u{2029}");
        assert_eq!(lines[10], "Rome\u{2029}\u{2029}");
        for markup_alone in [0, 2, 5] {
            assert_eq!(lines[markup_alone], "", "{t:?}");
        }
    }

    /// A script's text that starts like its end tag (`</scripts`, `</styles`) does not end
    /// it: only `</script` followed by the end of a tag name does.
    #[test]
    fn only_a_whole_end_tag_ends_a_script() {
        assert_eq!(
            text("<script>a = '</scripts>secret';</script>Paris"),
            "\u{2029}\u{2029}Paris"
        );
        assert_eq!(
            text("<style>x</stylex>y</style\n>Rome<script>z</script/>"),
            "\u{2029}\n\u{2029}Rome\u{2029}\u{2029}"
        );
    }

    /// The text of `html` and the markup it left open, the same whatever the pieces.
    fn left_open(html: &str) -> (String, Option<LeftOpen>) {
        let run = |piece: usize| {
            let mut conv = Converter::default();
            let mut out = Vec::new();
            for p in html.as_bytes().chunks(piece) {
                conv.feed(p, &mut out);
            }
            let open = conv.finish(&mut out);
            (String::from_utf8(out).unwrap(), open)
        };
        let whole = run(html.len().max(1));
        for piece in [1, 2, 5] {
            assert_eq!(run(piece), whole, "pieces of {piece}");
        }
        whole
    }

    /// Found by review: a quote never closed held the rest of the file, which was silently
    /// not mined ("no words" for a file of text). It still holds it, as in a browser, and
    /// the reader says where it opened and how much it held.
    #[test]
    fn markup_left_open_at_the_end_is_named_with_its_line() {
        let (t, open) = left_open("<p>Paris\n<a href=\"x>France</a>\nRome\nBerlin\n");
        assert_eq!(t, "\u{2029}Paris\n\n\n\n", "the rest is markup");
        let open = open.unwrap();
        assert_eq!((open.line, open.lines_after), (2, 2));
        assert_eq!(open.what, "an attribute value opened with \"");
        assert!(
            open.to_string()
                .starts_with("an attribute value opened with \" is never closed: the rest of the file (2 more line(s))"),
            "{open}"
        );
        // Without a line break at the end, the last line is counted too; the quote's line
        // is named, not the tag's.
        let (_, open) = left_open("a\n<img\nalt='it\ns>\nb");
        let open = open.unwrap();
        assert_eq!(
            (open.line, open.lines_after, open.what),
            (3, 2, "an attribute value opened with '")
        );
        for (html, line, what) in [
            ("a\n<!-- b\nc", 2, "a comment (no `-->`)"),
            ("a\n\n<script>x\n</scrip", 3, "a script (no `</script>`)"),
            ("<style>\nx", 1, "a style (no `</style>`)"),
            ("a <b class=x\nc", 1, "a tag (no `>`)"),
            ("<br\n", 1, "a tag (no `>`)"),
            ("x\n<!DOCTYPE", 2, "a declaration (no `>`)"),
        ] {
            let open = left_open(html).1.unwrap_or_else(|| panic!("{html:?}"));
            assert_eq!((open.line, open.what), (line, what), "{html:?}");
        }
        let (_, open) = left_open("a\nb <i title='c>d\n");
        assert!(
            open.unwrap()
                .to_string()
                .contains("never closed: the rest of its line was read"),
            "on the last line"
        );
        // Closed markup, a quote in text and a `<` or `&` left at the end leave nothing open.
        for html in [
            "<p a=\"b\">it's</p>\n",
            "don't <b>",
            "a <",
            "a &amp",
            "<!-- x -->",
            "",
        ] {
            assert_eq!(left_open(html).1, None, "{html:?}");
        }
    }

    #[test]
    fn html_is_told_by_its_start() {
        for html in [
            "<!DOCTYPE html>",
            "\u{feff}  <!doctype HTML PUBLIC \"-//W3C//DTD XHTML 1.0\">",
            "<html lang=en>",
            "<?xml version=\"1.0\"?>\n<!-- made by x -->\n<html>",
        ] {
            assert!(looks_like_html(html.as_bytes()), "{html}");
        }
        for text in ["Some <b>bold</b> text", "<htmlx>", "<!-- <html>", ""] {
            assert!(!looks_like_html(text.as_bytes()), "{text}");
        }
    }
}
