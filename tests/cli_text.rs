//! How pair files and query lines are read as text (audit s26): UTF-16 input and NUL bytes
//! are refused in words by every reader, comment and blank lines are the same in pair files
//! and query streams, and a colon beside a forgotten word is an empty word. Each test fails
//! on the code before the fix.
#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::fixture;

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn")
        .env_remove("RELBERT_MODEL")
        .env_remove("RELBERT_INDEX");
    c
}

/// `text` in UTF-16, big- or little-endian, with a byte-order mark or without.
fn utf16(text: &str, big_endian: bool, mark: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if mark {
        out.extend(if big_endian {
            [0xfe, 0xff]
        } else {
            [0xff, 0xfe]
        });
    }
    for u in text.encode_utf16() {
        out.extend(if big_endian {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        });
    }
    out
}

/// A small index of the tiny BERT fixture in `dir`.
fn small_index(dir: &Path) -> PathBuf {
    let pairs = common::pair_file(dir);
    common::tiny_index(&pairs, &dir.join("idx"))
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// The JSON lines a query stream wrote.
fn json_lines(a: &assert_cmd::assert::Assert) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&a.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A UTF-16 pair file was read as words full of NUL bytes (big-endian without a mark: embed
/// wrote their vectors, an index stored them), refused for a line `"\0"` without a tab
/// (little-endian) or as "not valid UTF-8" without a hint (with a mark). Every reader of pair
/// files refuses each at its first line, naming the file (or `<stdin>`) and what to convert
/// from; a query stream refuses such lines, each in its place.
#[test]
fn utf16_input_is_refused_in_words_by_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let idx = small_index(dir.path());
    let text = "paris\tfrance\nrome\titaly\ntokyo\tjapan\n";
    for (big_endian, mark, from) in [
        (true, false, "UTF-16BE"),
        (false, false, "UTF-16LE"),
        (false, true, "UTF-16"),
    ] {
        let bytes = utf16(text, big_endian, mark);
        let file = dir.path().join(format!("u16-{big_endian}-{mark}.tsv"));
        std::fs::write(&file, &bytes).unwrap();
        let said = |err: &str, at: &str| {
            let want = format!("{at}:1: this looks like UTF-16");
            assert!(
                err.contains(&want) && err.contains(&format!("iconv -f {from} -t UTF-8")),
                "{from} {mark}: {err}"
            );
        };
        let file_at = file.display().to_string();
        // embed, from the file and from standard input.
        let a = relbert()
            .args(["embed", "--model"])
            .arg(fixture("tiny-bert"))
            .arg("--pairs")
            .arg(&file)
            .assert()
            .failure();
        said(&stderr_of(&a), &file_at);
        assert!(a.get_output().stdout.is_empty(), "vectors written");
        let a = relbert()
            .args(["embed", "--model"])
            .arg(fixture("tiny-bert"))
            .args(["--pairs", "-"])
            .write_stdin(bytes.clone())
            .assert()
            .failure();
        said(&stderr_of(&a), "<stdin>");
        // index build, and index add to an index, which is left as it was.
        let out = dir.path().join(format!("built-{big_endian}-{mark}"));
        let a = relbert()
            .args(["index", "build", "--model"])
            .arg(fixture("tiny-bert"))
            .arg("--pairs")
            .arg(&file)
            .arg("--out")
            .arg(&out)
            .assert()
            .failure();
        said(&stderr_of(&a), &file_at);
        assert!(!out.join("meta").exists(), "an index was built");
        let before = common::dir_files(&idx);
        let a = relbert()
            .args(["index", "add", "--index"])
            .arg(&idx)
            .arg("--pairs")
            .arg(&file)
            .assert()
            .failure();
        said(&stderr_of(&a), &file_at);
        assert!(before == common::dir_files(&idx), "the index changed");
        // A query stream: each line is refused in its place, none is asked.
        let a = relbert()
            .args(["query", "--json", "-k", "1", "--index"])
            .arg(&idx)
            .write_stdin(bytes)
            .assert()
            .code(1);
        let docs = json_lines(&a);
        let first = docs[0]["error"].as_str().unwrap_or_default();
        assert!(
            first.starts_with("this looks like UTF-16") && first.contains(from),
            "{docs:?}"
        );
        assert!(
            docs.iter()
                .all(|d| d["results"].is_null() && d["query"].is_null()),
            "{docs:?}"
        );
    }
}

/// A NUL byte anywhere in a pair file or a query line is refused: in a comment or a label
/// it was read past (a query's label is no part of its pair), in a word embedded with a
/// warning.
#[test]
fn a_nul_byte_is_refused_in_pair_files_and_query_lines() {
    let dir = tempfile::tempdir().unwrap();
    let idx = small_index(dir.path());
    for (i, text) in [
        "paris\tfrance\n# a note \0\n",
        "paris\tfrance\nrome\titaly\tcap\0ital\n",
        "paris\tfrance\nro\0me\titaly\n",
    ]
    .into_iter()
    .enumerate()
    {
        let file = dir.path().join(format!("nul{i}.tsv"));
        std::fs::write(&file, text).unwrap();
        let a = relbert()
            .args(["embed", "--model"])
            .arg(fixture("tiny-bert"))
            .arg("--pairs")
            .arg(&file)
            .assert()
            .failure();
        let err = stderr_of(&a);
        assert!(
            err.contains(&format!("{}:2: a NUL byte", file.display())),
            "{text:?}: {err}"
        );
        assert!(a.get_output().stdout.is_empty(), "vectors written");
    }
    let a = relbert()
        .args(["query", "--json", "-k", "1", "--index"])
        .arg(&idx)
        .write_stdin("paris\tfrance\tl\0\ndog\tpuppy\n")
        .assert()
        .code(1);
    let docs = json_lines(&a);
    assert!(
        docs[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("a NUL byte")),
        "{docs:?}"
    );
    assert_eq!(docs[1]["query"], serde_json::json!(["dog", "puppy"]));
}

/// Comment and blank lines are one rule for pair files and query streams: a pair file read
/// `\u{200b}# note`, `  # comment`, a later line's byte-order mark before `#` and a line of
/// a zero width space as bad lines (a query stream skipped them).
#[test]
fn comments_and_blank_lines_are_the_same_in_pair_files_and_query_streams() {
    let dir = tempfile::tempdir().unwrap();
    let idx = small_index(dir.path());
    let text = "paris\tfrance\n\u{200b}# note\n  # comment\n\u{feff}# files put together\n\
                \u{200b}\n \u{200b}\t\ndog\tpuppy\n";
    let file = dir.path().join("comments.tsv");
    std::fs::write(&file, text).unwrap();
    let a = relbert()
        .args(["embed", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(&file)
        .assert()
        .success();
    let pairs: Vec<serde_json::Value> = json_lines(&a).iter().map(|d| d["pair"].clone()).collect();
    assert_eq!(
        pairs,
        [
            serde_json::json!(["paris", "france"]),
            serde_json::json!(["dog", "puppy"])
        ]
    );
    let a = relbert()
        .args(["query", "--json", "-k", "1", "--index"])
        .arg(&idx)
        .write_stdin(text)
        .assert()
        .success();
    let skipped: Vec<serde_json::Value> = json_lines(&a)
        .iter()
        .map(|d| d["skipped"].clone())
        .collect();
    let s = |w: &str| serde_json::json!(w);
    let n = serde_json::Value::Null;
    assert_eq!(
        skipped,
        [
            n.clone(),
            s("comment"),
            s("comment"),
            s("comment"),
            s("blank line"),
            s("blank line"),
            n
        ]
    );
}

/// `paris :` (the tail forgotten) was asked as the pair (`paris`, `:`) and ` : france` as
/// (`:`, `france`), while `paris:` was refused as an empty word. Each is refused alike: on
/// the command line and on a query stream.
#[test]
fn a_colon_beside_a_forgotten_word_is_an_empty_word() {
    let dir = tempfile::tempdir().unwrap();
    let idx = small_index(dir.path());
    for line in ["paris :", " : france", "paris:"] {
        let a = relbert()
            .args(["query", "-k", "1", "--index"])
            .arg(&idx)
            .arg(line)
            .assert()
            .code(2);
        let err = stderr_of(&a);
        assert!(err.contains("is empty"), "{line:?}: {err}");
        assert!(a.get_output().stdout.is_empty(), "{line:?} answered");
    }
    let a = relbert()
        .args(["query", "--json", "-k", "1", "--index"])
        .arg(&idx)
        .write_stdin("paris :\n : france\nparis:\ndog puppy\n")
        .assert()
        .code(1);
    let docs = json_lines(&a);
    for d in &docs[..3] {
        assert!(
            d["query"].is_null() && d["error"].as_str().is_some_and(|e| e.contains("empty")),
            "{d}"
        );
    }
    assert_eq!(docs[3]["query"], serde_json::json!(["dog", "puppy"]));
}

/// [`a_colon_beside_a_forgotten_word_is_an_empty_word`] for `relbert serve`'s `/v1/query`,
/// which reads a pair given as one string as a query line: `paris :` and ` : france` were
/// answered (200), `paris:` refused (422).
#[test]
fn serve_refuses_a_colon_beside_a_forgotten_word() {
    let dir = tempfile::tempdir().unwrap();
    let idx = small_index(dir.path());
    let (mut child, _err, addr) = common::spawn_serve(&idx, "warn");
    // Waits for the index to load (503 until then), not for any time.
    let ready = common::ready_within(&addr, std::time::Duration::from_secs(20));
    let answers: Vec<Option<String>> = ["paris :", " : france", "paris:"]
        .iter()
        .map(|line| {
            let body = serde_json::json!({ "pair": line, "k": 1 }).to_string();
            common::http_post(&addr, "/v1/query", &body)
        })
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "relbert serve never loaded its index");
    for answer in answers {
        let answer = answer.unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
    }
}
