//! Dataset files: analogy questions (the RelBERT JSONL format), the SemEval-2012
//! relational-similarity training data, and lexical relation classification TSVs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// A word pair as datasets store it.
pub type Pair = (String, String);

/// One multiple-choice analogy question: which choice relates like the stem?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalogyQuestion {
    /// The query pair.
    pub stem: Pair,
    /// Candidate pairs.
    pub choice: Vec<Pair>,
    /// Index of the right candidate.
    pub answer: usize,
    /// Source or category (Google section, BATS relation file, SAT source).
    pub prefix: String,
    /// The 1-based line of the file it was read from (0 when built in code), for messages.
    pub line: usize,
}

/// One line of an analogy file. Unknown keys are refused: a misspelt optional key
/// (`"prefx"`) was read as an absent one, and `--breakdown` counted its question under an
/// empty prefix with no word of why.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuestion {
    stem: Vec<String>,
    choice: Vec<Vec<String>>,
    answer: i64,
    #[serde(default)]
    prefix: Option<String>,
}

fn two(v: Vec<String>, what: &str) -> std::result::Result<Pair, String> {
    match <[String; 2]>::try_from(v) {
        // An empty word gives a prompt with nothing in its place: the pair would be scored
        // (or trained on) as if it were a real one. Refused as `relbert embed` refuses it,
        // by the same test: a word of invisible characters only (a zero-width space, a
        // control character) is dropped by the tokenizer, so it is empty too.
        Ok([a, b]) if crate::pairs::blank_word(&a) || crate::pairs::blank_word(&b) => Err(format!(
            "{what} [{a:?}, {b:?}] has an empty word (nothing but spaces or characters a \
                 tokenizer drops: invisible ones, lone accents, U+FFFD)"
        )),
        // Read as every command reads a word ([`crate::pairs::read_word`]): without the
        // spaces around it and the invisible characters the tokenizer may or may not drop.
        Ok([a, b]) => {
            let pair = (crate::pairs::read_word(&a), crate::pairs::read_word(&b));
            match placeholder_problem(&pair) {
                Some(problem) => Err(format!("{what} [{a:?}, {b:?}]: {problem}")),
                None => Ok(pair),
            }
        }
        Err(v) => Err(format!("{what} has {} words, expected 2", v.len())),
    }
}

/// Why a pair (its words as read) cannot be encoded for holding a template placeholder
/// ([`crate::prompt::placeholder_problem`]), if it holds one: the reference refuses such a
/// pair, and filled into the prompt it is scored (or trained on) as another pair, (`<obj>`,
/// `paris`) as (`paris`, `paris`). Refused as `relbert embed` refuses it.
fn placeholder_problem(pair: &Pair) -> Option<String> {
    crate::prompt::placeholder_problem(&pair.0, &pair.1).map(|p| p.to_string())
}

/// An error constructor for one line of `path`.
fn line_error(path: &Path, line: usize) -> impl Fn(String) -> Error + Copy + '_ {
    move |message| Error::Parse {
        path: path.to_path_buf(),
        line,
        message,
    }
}

fn read_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("cannot read line: {e}"),
        })?;
        // A byte-order mark (editors on Windows write one) is not part of the first record.
        let line = match (i, line.strip_prefix('\u{feff}')) {
            (0, Some(rest)) => rest.to_string(),
            _ => line,
        };
        if !line.trim().is_empty() {
            out.push((i + 1, line));
        }
    }
    Ok(out)
}

/// Reads an analogy JSONL file (`stem`, `choice`, `answer`, `prefix` per line). A malformed
/// line or an answer index out of range is an error naming the file and line.
pub fn load_analogy_file(path: &Path) -> Result<Vec<AnalogyQuestion>> {
    let mut out = Vec::new();
    for (line, text) in read_lines(path)? {
        let err = line_error(path, line);
        let raw: RawQuestion = serde_json::from_str(&text)
            .map_err(|e| err(format!("not an analogy question: {e}")))?;
        let stem = two(raw.stem, "stem").map_err(err)?;
        let choice = raw
            .choice
            .into_iter()
            .enumerate()
            .map(|(i, c)| two(c, &format!("choice {i}")))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(err)?;
        if choice.is_empty() {
            return Err(err("no choices".into()));
        }
        if raw.answer < 0 || raw.answer as usize >= choice.len() {
            return Err(err(format!(
                "answer {} is out of range for {} choices",
                raw.answer,
                choice.len()
            )));
        }
        out.push(AnalogyQuestion {
            stem,
            choice,
            answer: raw.answer as usize,
            prefix: raw.prefix.unwrap_or_default(),
            line,
        });
    }
    if out.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
            what: "no questions".into(),
        });
    }
    Ok(out)
}

/// The folders [`analogy_datasets`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnalogyDatasets {
    /// The analogy sets: (folder name, `<split>.jsonl`), sorted by name.
    pub sets: Vec<(String, PathBuf)>,
    /// Folders with a `<split>.jsonl` of SemEval relation records (the training data beside
    /// the analogy sets has the same split names): (folder name, file, why), sorted by name.
    pub skipped: Vec<(String, PathBuf, String)>,
}

/// Why `path` (a JSONL file) is not an analogy set, judged by its first record: `Some` only
/// when that record is one of the SemEval relations (it has `relation_type`), the other
/// format a data directory holds. Anything else counts as an analogy set, so that reading it
/// reports the broken line (a record with a misspelt key such as `choices`, a line that is
/// not JSON) instead of the folder quietly dropping out of a benchmark.
fn not_analogy_reason(path: &Path) -> Result<Option<String>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("cannot read line: {e}"),
        })?;
        let text = line.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            continue;
        }
        let Ok(serde_json::Value::Object(record)) = serde_json::from_str(text) else {
            return Ok(None);
        };
        if record.contains_key("stem") || !record.contains_key("relation_type") {
            return Ok(None);
        }
        return Ok(Some(format!(
            "its first record, line {}, is a SemEval relation (relation_type {}), not an \
             analogy question",
            i + 1,
            record["relation_type"]
        )));
    }
    Ok(None)
}

/// The folders under `data` that have `<name>/<split>.jsonl`, sorted by name: those holding
/// SemEval relations (a data directory also holds `semeval2012_relational_similarity/`, whose
/// splits have the same file names) in [`AnalogyDatasets::skipped`], every other one in
/// [`AnalogyDatasets::sets`].
pub fn analogy_datasets(data: &Path, split: &str) -> Result<AnalogyDatasets> {
    let rd = std::fs::read_dir(data).map_err(|e| Error::io(data, e))?;
    let mut out = AnalogyDatasets::default();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(data, e))?;
        let file = entry.path().join(format!("{split}.jsonl"));
        if file.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            match not_analogy_reason(&file)? {
                None => out.sets.push((name, file)),
                Some(why) => out.skipped.push((name, file, why)),
            }
        }
    }
    out.sets.sort();
    out.skipped.sort();
    Ok(out)
}

/// One SemEval-2012 relation with its positive and negative example pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationExamples {
    /// Relation id such as `8d`.
    pub relation_type: String,
    /// Pairs that exemplify the relation.
    pub positives: Vec<Pair>,
    /// Pairs that do not.
    pub negatives: Vec<Pair>,
    /// The file the relation was read from (empty when built in code).
    pub path: PathBuf,
    /// Its 1-based line in [`RelationExamples::path`] (0 when built in code).
    pub line: usize,
}

impl RelationExamples {
    /// The parent category: the id without its final letter (`8d` → `8`).
    pub fn parent(&self) -> &str {
        let id = self.relation_type.as_str();
        match id.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() && i > 0 => &id[..i],
            _ => id,
        }
    }
}

#[derive(Deserialize)]
struct RawRelation {
    relation_type: String,
    positives: Vec<Vec<String>>,
    negatives: Vec<Vec<String>>,
}

/// Reads a relational-similarity JSONL file (`relation_type`, `positives`, `negatives`).
pub fn load_relation_file(path: &Path) -> Result<Vec<RelationExamples>> {
    let mut out = Vec::new();
    for (line, text) in read_lines(path)? {
        let err = line_error(path, line);
        let raw: RawRelation =
            serde_json::from_str(&text).map_err(|e| err(format!("not a relation record: {e}")))?;
        let conv = |v: Vec<Vec<String>>, what: &str| {
            v.into_iter()
                .enumerate()
                // Counted from 1, as the warnings about these lists count them.
                .map(|(i, p)| two(p, &format!("{what} {}", i + 1)))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(err)
        };
        if raw.positives.is_empty() {
            return Err(err(format!(
                "relation {:?} has no positives (training needs at least one)",
                raw.relation_type
            )));
        }
        out.push(RelationExamples {
            relation_type: raw.relation_type,
            positives: conv(raw.positives, "positive")?,
            negatives: conv(raw.negatives, "negative")?,
            path: path.to_path_buf(),
            line,
        });
    }
    if out.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
            what: "no relations".into(),
        });
    }
    Ok(out)
}

/// One labelled pair of a lexical relation classification file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledPair {
    /// The word pair.
    pub pair: Pair,
    /// The relation label (e.g. `hyper`).
    pub label: String,
    /// The 1-based line of the file it was read from, for messages.
    pub line: usize,
}

/// Reads a lexical relation classification TSV (`head<TAB>tail<TAB>label`). Each line is its
/// own example, so a pair listed with two labels gives two examples, as in the reference.
/// Fields are trimmed of surrounding whitespace (a trailing space or a Windows line end would
/// otherwise make `RANDOM ` a class of its own beside `RANDOM`), as `relbert embed` reads pair
/// files. A first line `head<TAB>tail<TAB>relation` (or `label`) is a header and skipped. A
/// line without exactly three non-empty fields is an error naming file and line.
pub fn load_lexical_file(path: &Path) -> Result<Vec<LabelledPair>> {
    let mut out = Vec::new();
    for (k, (line, text)) in read_lines(path)?.into_iter().enumerate() {
        let fields: Vec<&str> = text.split('\t').map(str::trim).collect();
        if k == 0 && crate::pairs::is_column_header(&fields) {
            continue;
        }
        match fields.as_slice() {
            // The test `relbert embed` refuses an empty word by ([`crate::pairs::blank_word`]),
            // for the label too: an invisible label would be a class no one can tell.
            [h, t, l] if ![h, t, l].iter().any(|f| crate::pairs::blank_word(f)) => {
                let pair = (crate::pairs::read_word(h), crate::pairs::read_word(t));
                if let Some(message) = placeholder_problem(&pair) {
                    return Err(Error::Parse {
                        path: path.to_path_buf(),
                        line,
                        message,
                    });
                }
                out.push(LabelledPair {
                    pair,
                    label: l.to_string(),
                    line,
                })
            }
            [..] if fields.len() == 3 => {
                return Err(Error::Parse {
                    path: path.to_path_buf(),
                    line,
                    message: "expected head<TAB>tail<TAB>label, found an empty field \
                              (nothing but spaces or invisible characters)"
                        .into(),
                })
            }
            _ => {
                return Err(Error::Parse {
                    path: path.to_path_buf(),
                    line,
                    message: format!(
                        "expected head<TAB>tail<TAB>label, found {} field(s)",
                        fields.len()
                    ),
                })
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
            what: "no labelled pairs".into(),
        });
    }
    Ok(out)
}

/// The classification datasets under `data`: folders holding `train.tsv` and `test.tsv`,
/// sorted by name.
pub fn lexical_datasets(data: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = std::fs::read_dir(data).map_err(|e| Error::io(data, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(data, e))?;
        let dir = entry.path();
        if dir.join("train.tsv").is_file() && dir.join("test.tsv").is_file() {
            out.push((entry.file_name().to_string_lossy().into_owned(), dir));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("q.jsonl");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn reads_questions_and_names_bad_lines() {
        let ok = r#"{"stem": ["a", "b"], "choice": [["c", "d"], ["e", "f"]], "answer": 1, "prefix": "x"}"#;
        let (_d, p) = tmp(&format!("{ok}\n"));
        let q = load_analogy_file(&p).unwrap();
        assert_eq!(q[0].answer, 1);
        let bad = ok.replace("\"answer\": 1", "\"answer\": 2");
        let (_d, p) = tmp(&format!("{ok}\n{bad}\n"));
        let e = load_analogy_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("q.jsonl:2:") && e.contains("out of range"),
            "{e}"
        );
        let (_d, p) = tmp(&format!("{ok}\n{{not json\n"));
        assert!(load_analogy_file(&p)
            .unwrap_err()
            .to_string()
            .contains(":2:"));
    }

    #[test]
    fn an_empty_word_in_a_question_is_named_by_file_and_line() {
        let ok = r#"{"stem": ["a", "b"], "choice": [["c", "d"], ["e", "f"]], "answer": 1}"#;
        for bad in [r#"["", "b"]"#, r#"[" ", "b"]"#] {
            let (_d, p) = tmp(&format!("{ok}\n{}\n", ok.replace(r#"["a", "b"]"#, bad)));
            let e = load_analogy_file(&p).unwrap_err().to_string();
            assert!(
                e.contains("q.jsonl:2:") && e.contains("stem") && e.contains("empty word"),
                "{e}"
            );
        }
        let (_d, p) = tmp(&format!(
            "{}\n",
            ok.replace(r#"["e", "f"]"#, r#"["e", "\t"]"#)
        ));
        let e = load_analogy_file(&p).unwrap_err().to_string();
        assert!(e.contains("q.jsonl:1:") && e.contains("choice 1"), "{e}");
    }

    /// The reference refuses a pair whose word holds `<subj>`, `<obj>` or `<mask>` (filled
    /// into the prompt, such a word was scored as another pair): refused in analogy
    /// questions, relation records (training data) and classification files alike, naming
    /// the file, the line and the word.
    #[test]
    fn a_word_holding_a_placeholder_is_named_by_file_and_line() {
        let ok = r#"{"stem": ["a", "b"], "choice": [["c", "d"], ["e", "f"]], "answer": 1}"#;
        let (_d, p) = tmp(&format!(
            "{ok}\n{}\n",
            ok.replace(r#"["e", "f"]"#, r#"["<obj>", "paris"]"#)
        ));
        let e = load_analogy_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("q.jsonl:2:")
                && e.contains("choice 1")
                && e.contains("\"<obj>\" holds <obj>"),
            "{e}"
        );
        let rel =
            r#"{"relation_type": "1a", "positives": [["a", "b"]], "negatives": [["c", "d"]]}"#;
        let (_d, p) = tmp(&format!(
            "{rel}\n{}\n",
            rel.replace(r#"["c", "d"]"#, r#"["c", "the <mask>"]"#)
        ));
        let e = load_relation_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("q.jsonl:2:") && e.contains("negative 1 ") && e.contains("holds <mask>"),
            "{e}"
        );
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("test.tsv");
        std::fs::write(&p, "cat\tpet\thyper\n<su\u{200b}bj>\tanimal\thyper\n").unwrap();
        let e = load_lexical_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("test.tsv:2: ") && e.contains("\"<subj>\" holds <subj>"),
            "{e}"
        );
        std::fs::write(&p, "<SUBJ>\t<b>\thyper\n").unwrap();
        assert_eq!(load_lexical_file(&p).unwrap().len(), 1);
    }

    /// Audit (s18): a word of invisible characters only (a zero-width space, BEL), which the
    /// tokenizer drops, was scored after a warning, while `relbert embed` refuses it as empty
    /// and README says an empty word is refused. Refused here by the same test, naming the
    /// file and line; a word that merely holds such a character is still read.
    #[test]
    fn a_word_of_invisible_characters_only_is_empty() {
        let ok = r#"{"stem": ["a", "b"], "choice": [["c", "d"], ["e", "f"]], "answer": 1}"#;
        for bad in [
            r#"["\u200b", "b"]"#,
            r#"["\u0007", "b"]"#,
            r#"["\u200b\u00ad ", "b"]"#,
        ] {
            let (_d, p) = tmp(&format!("{ok}\n{}\n", ok.replace(r#"["a", "b"]"#, bad)));
            let e = load_analogy_file(&p).unwrap_err().to_string();
            assert!(
                e.contains("q.jsonl:2:") && e.contains("stem") && e.contains("empty word"),
                "{bad}: {e}"
            );
        }
        let (_d, p) = tmp(&format!(
            "{}\n",
            ok.replace(r#"["a", "b"]"#, r#"["a\u200b", "b"]"#)
        ));
        assert_eq!(load_analogy_file(&p).unwrap().len(), 1);

        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("test.tsv");
        for bad in [
            "dog\t\u{200b}\thyper",
            "\u{7}\tanimal\thyper",
            "dog\tanimal\t\u{feff}",
        ] {
            std::fs::write(&p, format!("cat\tpet\thyper\n{bad}\n")).unwrap();
            let e = load_lexical_file(&p).unwrap_err().to_string();
            assert!(
                e.contains("test.tsv:2: ") && e.contains("empty field"),
                "{bad:?}: {e}"
            );
        }
        std::fs::write(&p, "ca\u{200b}t\tpet\thyper\n").unwrap();
        assert_eq!(load_lexical_file(&p).unwrap().len(), 1);
    }

    #[test]
    fn reads_lexical_tsv_and_names_bad_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("train.tsv");
        std::fs::write(&p, "dog\tanimal\thyper\ndog\tanimal\tcoord\n").unwrap();
        let rows = load_lexical_file(&p).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].label, "coord");
        std::fs::write(&p, "dog\tanimal\thyper\ncat\tpet\n").unwrap();
        let e = load_lexical_file(&p).unwrap_err().to_string();
        assert!(e.contains("train.tsv:2:"), "{e}");
        std::fs::write(&p, "\u{feff}dog\tanimal\thyper\ncat\t\tpet\n").unwrap();
        let e = load_lexical_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("train.tsv:2: ") && e.contains("empty field"),
            "{e}"
        );
    }

    #[test]
    fn lexical_fields_are_trimmed_and_a_header_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("train.tsv");
        std::fs::write(
            &p,
            "head\ttail\trelation\r\ndog\tanimal\tRANDOM \r\n cat \tpet\tRANDOM\n",
        )
        .unwrap();
        let rows = load_lexical_file(&p).unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows.iter().all(|r| r.label == "RANDOM"), "{rows:?}");
        assert_eq!(rows[1].pair, ("cat".to_string(), "pet".to_string()));
        // Only the first line can be a header: later, it is a labelled pair like any other.
        std::fs::write(&p, "dog\tanimal\thyper\nhead\ttail\trelation\n").unwrap();
        let rows = load_lexical_file(&p).unwrap();
        assert_eq!(rows[1].label, "relation");
        // A field of spaces only is empty.
        std::fs::write(&p, "dog\t \thyper\n").unwrap();
        let e = load_lexical_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("train.tsv:1: ") && e.contains("empty field"),
            "{e}"
        );
    }

    #[test]
    fn a_relation_without_positives_is_named_by_file_and_line() {
        let ok = r#"{"relation_type": "1a", "positives": [["a", "b"]], "negatives": []}"#;
        let empty = r#"{"relation_type": "zz", "positives": [], "negatives": [["c", "d"]]}"#;
        let (_d, p) = tmp(&format!("\u{feff}{ok}\n{empty}\n"));
        let e = load_relation_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("q.jsonl:2:") && e.contains("\"zz\" has no positives"),
            "{e}"
        );
    }

    #[test]
    fn analogy_datasets_set_aside_folders_of_other_records() {
        let d = tempfile::tempdir().unwrap();
        let put = |dir: &str, text: &str| {
            std::fs::create_dir_all(d.path().join(dir)).unwrap();
            std::fs::write(d.path().join(dir).join("validation.jsonl"), text).unwrap();
        };
        let q = r#"{"stem": ["a", "b"], "choice": [["c", "d"]], "answer": 0}"#;
        put("sat", &format!("\n{q}\n"));
        put(
            "semeval",
            "{\"relation_type\": \"1a\", \"positives\": [], \"negatives\": []}\n",
        );
        // Broken JSON stays a set, so that reading it names the line; so does a record with
        // a misspelt key, which is no other known format.
        put("broken", "{not json\n");
        put("typo", &q.replace("choice", "choices"));
        put("upper", &q.replace("stem", "Stem"));
        let found = analogy_datasets(d.path(), "validation").unwrap();
        let names: Vec<&str> = found.sets.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["broken", "sat", "typo", "upper"]);
        let e = load_analogy_file(&d.path().join("typo").join("validation.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("validation.jsonl:1:") && e.contains("choice"),
            "{e}"
        );
        assert_eq!(found.skipped.len(), 1);
        let (name, _, why) = &found.skipped[0];
        assert_eq!(name, "semeval");
        assert!(why.contains("relation_type"), "{why}");
    }

    /// Review R10 (s20): dataset words were read with `trim()` alone, keeping the
    /// invisible characters every other reader of words drops ([`crate::pairs::read_word`]).
    #[test]
    fn dataset_words_are_read_as_pair_files_read_them() {
        let (_d, p) = tmp("dog\tpup\u{ad}py\thyper\n");
        let got = load_lexical_file(&p).unwrap();
        assert_eq!(got[0].pair, ("dog".to_string(), "puppy".to_string()));
        assert_eq!(
            two(vec![" a\u{200b}b ".into(), "c".into()], "q"),
            Ok(("ab".to_string(), "c".to_string()))
        );
    }

    #[test]
    fn relation_parent() {
        let r = RelationExamples {
            relation_type: "10f".into(),
            positives: vec![],
            negatives: vec![],
            path: PathBuf::new(),
            line: 0,
        };
        assert_eq!(r.parent(), "10");
    }
}
