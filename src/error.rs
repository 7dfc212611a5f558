//! The library's typed errors. Every variant names the file, line, flag or tensor a user can
//! act on; the binary wraps these with `anyhow` context.

use std::path::PathBuf;

/// Errors returned by the relbert library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the model directory must contain is absent.
    #[error("missing file {path}: a model directory needs config.json, model.safetensors and tokenizer.json")]
    MissingFile {
        /// The path that was looked for.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    // The OS message is in this message and deliberately not a `#[source]`: `anyhow`'s `{:#}`
    // prints the whole chain, which would repeat it.
    #[error("{path}: {err}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// `config.json` could not be parsed or holds an unsupported value.
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The checkpoint lacks a tensor or holds one of the wrong shape or type.
    #[error("{path}: tensor {tensor}: {message}")]
    Tensor {
        /// The safetensors file.
        path: PathBuf,
        /// The tensor's name as the model expects it.
        tensor: String,
        /// What is wrong with it.
        message: String,
    },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizer's own message.
        message: String,
    },
    /// A prompt template lacks a placeholder.
    #[error("template {template:?} must contain <subj>, <obj> and <mask>")]
    Template {
        /// The template as given.
        template: String,
    },
    /// An input line could not be parsed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The input file (or `<stdin>`).
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// An option has an invalid value.
    #[error("invalid value for {flag}: {message}")]
    InvalidArgument {
        /// The command-line flag that sets the option (e.g. `--aggregation`); a library
        /// caller reads it as the field of the options it passed that the flag sets
        /// (`--batch-size` is [`crate::EncoderOptions::batch_size`]).
        flag: String,
        /// Why it is rejected.
        message: String,
    },
    /// The input held nothing to work on.
    #[error("{path}: no input ({what})")]
    Empty {
        /// The input file.
        path: PathBuf,
        /// What was expected.
        what: String,
    },
    /// A tensor operation failed inside candle.
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// The relation index failed (corrupt file, wrong version, I/O).
    #[error(transparent)]
    Index(#[from] relbert_index::IndexError),
    /// An index was built with another encoder than the one offered for its queries.
    #[error("index {index} was built with another encoder ({built}); refusing to encode queries or pairs for it with {offered}")]
    EncoderMismatch {
        /// The index directory.
        index: PathBuf,
        /// The encoder recorded in the index.
        built: String,
        /// The encoder offered.
        offered: String,
    },
    /// An output target exists and `--force` was not given.
    #[error("{path} exists; pass --force to overwrite it")]
    Exists {
        /// The existing path.
        path: PathBuf,
    },
    /// The pair list an `.npy` output would write beside it belongs to another array (two
    /// outputs whose names differ only by `.npy`): replacing it would relabel that array's rows.
    #[error("{path} is the pair list of {array}, another output beside it; choose another --out (an .npy output's pair list is <out without .npy>.pairs.tsv)")]
    PairListOfAnother {
        /// The pair list.
        path: PathBuf,
        /// The array it belongs to.
        array: String,
    },
    /// Where an `.npy` output would write its pair list is a pair list `relbert pairs mine`
    /// wrote (`--out pairs.npy` beside `pairs.pairs.tsv`): the user's data, never replaced,
    /// not even with `--force`.
    #[error("{path} is a pair list mined by `relbert pairs mine`, and an .npy output writes its own pair list there (<out without .npy>.pairs.tsv), which would replace it: refusing, even with --force; give --out another name, such as {instead}, or move the mined list away")]
    MinedPairListBeside {
        /// The mined pair list.
        path: PathBuf,
        /// An array name whose pair list would not be it, for the message.
        instead: PathBuf,
    },
    /// `--force` was given, but the existing output is not something relbert wrote.
    #[error("{path} exists and does not look like {what} written by relbert ({why}); refusing to replace it even with --force: move it away or choose another output")]
    NotOurs {
        /// The existing path.
        path: PathBuf,
        /// What relbert would have written there.
        what: &'static str,
        /// Why it is not recognised.
        why: String,
    },
    /// The model directory a run saved at its output earlier in the run (a better epoch
    /// replaces it) is no longer what the output names: another directory was put there, or
    /// it was moved away and something else put in its place. That is someone's, and stays.
    #[error("{path} is no longer the model this run saved there (replaced or moved during the run); left as it is; the new model is in {kept} (move it away before another run to this output, which removes it)")]
    NoLongerOurs {
        /// The output directory.
        path: PathBuf,
        /// Where the new model is kept.
        kept: PathBuf,
    },
    /// A pair's prompt is longer than the encoder takes and its mask token would be cut off.
    // The words quoted cut ([`quoted`]): a query line of 60 KB (20,000 short words) was
    // quoted whole, a 60 KB message.
    #[error("{location}: the prompt of ({}, {}) is longer than the {limit}-token limit, so truncation would cut into its words (or lose the mask token); shorten or remove the pair{hint}", quoted(.head), quoted(.tail))]
    PromptTooLong {
        /// Where the pair comes from (`file:line`, or what was being encoded).
        location: String,
        /// What else the caller offers (`, or pass --skip-long …` where a command has it).
        hint: &'static str,
        /// The first word.
        head: String,
        /// The second word.
        tail: String,
        /// The token limit.
        limit: usize,
    },
    /// A vector database (Qdrant) refused a request, could not be reached after retries, or
    /// holds something other than relbert expects.
    #[error("qdrant {target}: {message}")]
    Remote {
        /// The server URL(s) and collection.
        target: String,
        /// What went wrong, with the server's own message.
        message: String,
    },
    /// A vector database (Qdrant) answered a request with an error that asking again does
    /// not change (permission denied, an invalid argument, a failed precondition), or none
    /// of its URLs has ever answered (a wrong URL, likelier than every node down): unlike
    /// [`Error::Remote`] (not reached, or failing after the retries), neither a retry nor a
    /// rerun is suggested, and `relbert serve` answers it 500, not 503.
    #[error("qdrant {target}: {message}")]
    Rejected {
        /// The server URL(s) and collection.
        target: String,
        /// What was asked, and the server's answer.
        message: String,
    },
    /// A vector database (Qdrant) collection relbert will not use as asked: it holds another
    /// model's vectors, another source's points (without `--add`), vectors of another
    /// distance or width, or was not written by relbert. Unlike [`Error::Remote`], running
    /// the same command again gives the same answer, so no retry or rerun is suggested.
    #[error("qdrant {target}: {message}")]
    Refused {
        /// The server URL(s) and collection.
        target: String,
        /// Why, and what to change.
        message: String,
    },
    /// The vector database (Qdrant) has no such collection: never made, or deleted (under a
    /// running `relbert serve`, which answers 503 until it is back).
    #[error("qdrant {target}: {message}")]
    NoCollection {
        /// The server URL(s) and collection.
        target: String,
        /// What was being done, and what to do.
        message: String,
    },
    /// A broken invariant of this crate (a bug), reported instead of a panic.
    #[error("internal error (please report it): {0}")]
    Internal(String),
}

/// The most characters of a user's text (an input line, a word) a message quotes
/// ([`quoted`]).
pub const QUOTED_CHARS: usize = 80;

/// The first [`QUOTED_CHARS`] characters of `text`, and the mark (`…`) that says it was
/// cut, or `""`.
pub fn cut_for_message(text: &str) -> (&str, &'static str) {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((at, _)) => (&text[..at], "…"),
        None => (text, ""),
    }
}

/// `text` quoted for a message (as `{:?}` quotes it), cut after [`QUOTED_CHARS`]
/// characters (marked `…`): a message that quoted a whole line of input grew with it, and a
/// 1 MB line made a 1 MB message.
pub fn quoted(text: &str) -> String {
    let (kept, mark) = cut_for_message(text);
    format!("{kept:?}{mark}")
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Audit (s20): the error quoted the pair's words whole: a query line of 60 KB made a
    /// 60 KB message. The words are quoted cut after [`QUOTED_CHARS`] characters.
    #[test]
    fn a_prompt_too_long_quotes_its_words_cut() {
        let head = "ab ".repeat(20_000);
        let e = Error::PromptTooLong {
            location: "encoding".into(),
            hint: "",
            head: head.clone(),
            tail: "thing".into(),
            limit: 64,
        };
        let msg = e.to_string();
        assert!(msg.len() < 400, "{} bytes", msg.len());
        let want = format!("the prompt of ({:?}…, \"thing\") is longer", &head[..80]);
        assert!(msg.contains(&want), "{msg}");
        assert_eq!(quoted("caf\u{e9}"), "\"caf\u{e9}\"");
    }
}
