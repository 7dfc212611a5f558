//! Regression tests for the trust defects found on a fresh clone (issue "Trust"): data loss by
//! `--force`, silently wrong answers from damaged or mixed index files and changed inputs,
//! and broken promises of the command line. Each test fails on the code before the fix.
#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::fixture;
use predicates::prelude::*;

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn");
    c
}

const WORDS: [&str; 16] = [
    "paris", "france", "tokyo", "japan", "dog", "puppy", "cat", "kitten", "wheel", "car", "hot",
    "cold", "big", "small", "pen", "write",
];

/// `relbert embed` with the tiny fixture model on `pairs`.
fn embed(pairs: &Path) -> Command {
    embed_with(&fixture("tiny-bert"), pairs)
}

/// `relbert embed` with `model` on `pairs`.
fn embed_with(model: &Path, pairs: &Path) -> Command {
    let mut c = relbert();
    c.args(["embed", "--model"])
        .arg(model)
        .arg("--pairs")
        .arg(pairs);
    c
}

fn pairs_text() -> String {
    let mut text = String::new();
    for (i, a) in WORDS.iter().enumerate() {
        for b in WORDS.iter().skip(i + 1).step_by(2) {
            text.push_str(&format!("{a}\t{b}\tl{}\n", i % 3));
        }
    }
    text
}

fn pair_file(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pairs_text()).unwrap();
    p
}

fn build(pairs: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    relbert()
        .args(["index", "build", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(pairs)
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
}

#[test]
fn force_never_replaces_what_relbert_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pair_file(dir.path(), "pairs.tsv");
    // A folder of the user's files at --out.
    let mine = dir.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep me").unwrap();
    build(&pairs, &mine, &["--force"])
        .failure()
        .stderr(predicate::str::contains("refusing to replace"));
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "keep me"
    );
    // A regular file at --out: refused before any work, nothing left beside it.
    let file = dir.path().join("afile");
    std::fs::write(&file, "data").unwrap();
    build(&pairs, &file, &["--force"]).failure();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains(".old-") || n.ends_with(".partial")),
        "{names:?}"
    );
    // A `.partial` folder relbert did not create is neither deleted nor used.
    let out = dir.path().join("idx");
    let partial = dir.path().join("idx.partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("thesis.tex"), "chapter 1").unwrap();
    build(&pairs, &out, &[])
        .failure()
        .stderr(predicate::str::contains("idx.partial"));
    assert!(partial.join("thesis.tex").exists());
    std::fs::remove_dir_all(&partial).unwrap();
    // An index relbert built is replaced with --force.
    build(&pairs, &out, &[]).success();
    build(&pairs, &out, &["--force"]).success();
    // rebuild, train and average refuse the user's folder the same way.
    relbert()
        .args(["index", "rebuild", "--index"])
        .arg(&out)
        .arg("--out")
        .arg(&mine)
        .arg("--force")
        .assert()
        .failure()
        .stderr(predicate::str::contains("refusing to replace"));
    relbert()
        .arg("average")
        .arg(fixture("tiny-bert"))
        .arg(fixture("tiny-bert"))
        .arg("--out")
        .arg(&mine)
        .arg("--force")
        .assert()
        .failure()
        .stderr(predicate::str::contains("refusing to replace"));
    relbert()
        .args(["train", "--base"])
        .arg(fixture("tiny-bert"))
        .args(["--data", "../shared/data", "--out"])
        .arg(&mine)
        .arg("--force")
        .assert()
        .failure()
        .stderr(predicate::str::contains("refusing to replace"));
    assert!(mine.join("notes.txt").exists());
}

#[test]
fn embed_never_overwrites_its_input_and_writes_dash_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    // The sidecar of words.npy is words.pairs.tsv: here that is the input.
    let input = pair_file(dir.path(), "words.pairs.tsv");
    let before = std::fs::read_to_string(&input).unwrap();
    embed(&input)
        .args(["--format", "npy", "--force", "--out"])
        .arg(dir.path().join("words.npy"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("is the input"));
    assert_eq!(std::fs::read_to_string(&input).unwrap(), before);
    // `--out -` is standard output, not a file named `-`.
    let a = embed(&input)
        .current_dir(dir.path())
        .args(["--out", "-"])
        .assert()
        .success();
    assert!(!dir.path().join("-").exists());
    let lines = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    assert_eq!(lines.lines().count(), before.lines().count());
    // --force replaces relbert's own output, but not a user's text file.
    let notes = dir.path().join("notes.jsonl");
    std::fs::write(&notes, "my own notes\n").unwrap();
    embed(&input)
        .arg("--out")
        .arg(&notes)
        .arg("--force")
        .assert()
        .failure()
        .stderr(predicate::str::contains("refusing to replace"));
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my own notes\n");
}

/// A row overwritten with another row's bytes must fail the query, not answer from the wrong
/// row (once `query paris france` answered `tokyo : japan 1.000`).
#[test]
fn a_damaged_row_fails_the_query_instead_of_answering() {
    let dir = tempfile::tempdir().unwrap();
    // A small index is verified whole at open; a large one block by block when a query first
    // touches a block (tested on a 9 MB index in index/tests). Either way: an error, never
    // the answer of the row whose bytes were copied in.
    let mut text = String::new();
    for i in 0..600 {
        text.push_str(&format!("w{i}\tv{}\n", i * 7 % 601));
    }
    let pairs = dir.path().join("many.tsv");
    std::fs::write(&pairs, text).unwrap();
    let out = dir.path().join("idx");
    build(&pairs, &out, &[]).success();
    let vectors = out.join("vectors");
    let mut bytes = std::fs::read(&vectors).unwrap();
    let dim = 32;
    let row = |r: usize| 64 + r * dim * 4..64 + (r + 1) * dim * 4;
    let copy = bytes[row(1)].to_vec();
    bytes[row(0)].copy_from_slice(&copy);
    std::fs::write(&vectors, bytes).unwrap();
    relbert()
        .args(["query", "--index"])
        .arg(&out)
        .args(["w0", "v0"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("does not match its checksum"));
    relbert()
        .args(["index", "info", "--verify"])
        .arg(&out)
        .assert()
        .failure();
}

#[test]
fn files_of_two_indexes_are_not_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pair_file(dir.path(), "pairs.tsv");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    build(&pairs, &a, &[]).success();
    // Same shape, other vectors: the same pairs reversed.
    let reversed: String = pairs_text()
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            format!("{}\t{}\t{}\n", c[1], c[0], c[2])
        })
        .collect();
    let rpairs = dir.path().join("reversed.tsv");
    std::fs::write(&rpairs, reversed).unwrap();
    build(&rpairs, &b, &[]).success();
    std::fs::copy(b.join("graph"), a.join("graph")).unwrap();
    relbert()
        .args(["index", "info", "--verify"])
        .arg(&a)
        .assert()
        .failure()
        .stderr(predicate::str::contains("belongs to another index"));
}

#[test]
fn a_resume_after_the_input_changed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pair_file(dir.path(), "pairs.tsv");
    let out = dir.path().join("idx");
    // An interrupted build of the original file, as the CLI leaves it: its encoder, its
    // input's identity, one chunk stored.
    let enc = relbert::RelationEncoder::load(&fixture("tiny-bert"), &Default::default()).unwrap();
    let records = relbert::pairs::read_pairs(&pairs).unwrap();
    let spec = relbert_index::IndexSpec {
        dim: enc.dim() as u32,
        precision: relbert_index::Precision::F32,
        encoder: relbert::indexing::encoder_info(&enc.identity().unwrap()),
        input: relbert::pairs::records_identity(&records),
    };
    let mut b = relbert_index::IndexBuilder::create_or_resume(&out, spec, false).unwrap();
    let first = &records[0];
    b.append_chunk(
        &[relbert_index::PairEntry::new(&first.head, &first.tail)],
        &vec![1.0; enc.dim()],
    )
    .unwrap();
    drop(b);
    // The file is edited before the rerun: the resume is refused, naming the partial build.
    std::fs::write(&pairs, pairs_text().replace("paris\t", "lyon\t")).unwrap();
    build(&pairs, &out, &[])
        .failure()
        .stderr(predicate::str::contains("input"))
        .stderr(predicate::str::contains("idx.partial"));
    // With the original input it resumes and completes.
    std::fs::write(&pairs, pairs_text()).unwrap();
    build(&pairs, &out, &[]).success();
}

#[test]
fn stdin_queries_line_up_with_their_input() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pair_file(dir.path(), "pairs.tsv");
    let out = dir.path().join("idx");
    build(&pairs, &out, &[]).success();
    let mut input: Vec<u8> = Vec::new();
    input.extend_from_slice(b"paris\tfrance\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"# a comment\n");
    input.extend_from_slice(b"bad \xff\xfe line\n");
    input.extend_from_slice(b"just-one\n");
    input.extend_from_slice(b"dog:puppy\n");
    // A pair file's line: its label is not part of the query (it was refused).
    input.extend_from_slice(b"cat\tkitten\tyoung\n");
    let a = relbert()
        .args(["query", "--json", "-k", "3", "--index"])
        .arg(&out)
        .write_stdin(input)
        .assert()
        // Two lines could not be answered: the stream goes on, and the status says so.
        .code(1)
        .stderr(predicate::str::contains("2 of 5 query lines"));
    let text = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    let docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 7, "{text}");
    for (i, d) in docs.iter().enumerate() {
        assert_eq!(d["line"], i + 1, "{d}");
    }
    assert_eq!(docs[0]["query"], serde_json::json!(["paris", "france"]));
    assert!(docs[0]["results"].as_array().unwrap().len() == 3);
    // Every result carries a label key (null when the pair has none).
    assert!(docs[0]["results"][0].get("label").is_some());
    assert_eq!(docs[1]["skipped"], "blank line");
    assert_eq!(docs[2]["skipped"], "comment");
    assert!(docs[3]["error"].as_str().unwrap().contains("UTF-8"));
    assert!(docs[4]["error"].is_string());
    assert_eq!(docs[4]["query"], serde_json::Value::Null);
    assert_eq!(docs[5]["query"], serde_json::json!(["dog", "puppy"]));
    assert_eq!(docs[6]["query"], serde_json::json!(["cat", "kitten"]));
    assert_eq!(docs[6]["source"], "index");
}

#[test]
fn huge_k_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pair_file(dir.path(), "pairs.tsv");
    let out = dir.path().join("idx");
    build(&pairs, &out, &[]).success();
    for k in ["18446744073709551615", "4294967296"] {
        let a = relbert()
            .args(["query", "--json", "--index"])
            .arg(&out)
            .args(["-k", k, "paris", "france"])
            .assert()
            .success();
        let d: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
        assert!(!d["results"].as_array().unwrap().is_empty());
    }
}

#[test]
fn bad_graph_parameters_are_refused_before_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pair_file(dir.path(), "pairs.tsv");
    let out = dir.path().join("idx");
    let a = build(&pairs, &out, &["--m", "1"]).failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("--m"), "{err}");
    // Nothing was started: no partial build.
    assert!(!dir.path().join("idx.partial").exists());
}

#[test]
fn an_over_long_pair_is_named_by_line_and_can_be_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = pairs_text();
    let long = "supercalifragilistic ".repeat(4);
    text.push_str(&format!("{long}\tword\n"));
    let pairs = dir.path().join("pairs.tsv");
    std::fs::write(&pairs, &text).unwrap();
    let n = text.lines().count();
    let out = dir.path().join("idx");
    let a = build(&pairs, &out, &["--aggregation", "mask"]).failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains(&format!("pairs.tsv:{n}")), "{err}");
    assert!(err.contains("--skip-long"), "{err}");
    assert!(!err.contains("--aggregation mask"), "{err}");
    build(&pairs, &out, &["--aggregation", "mask", "--skip-long"]).success();
    // A query has no file line and no --skip-long: the message offered both ("pair 1 of
    // the batch", "pass --skip-long"), which `query` rejects as an unknown flag.
    let a = relbert()
        .args(["query", "--index"])
        .arg(&out)
        .args([long.trim(), "word"])
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("64-token limit"), "{err}");
    assert!(
        !err.contains("--skip-long") && !err.contains("of the batch"),
        "{err}"
    );
}

#[test]
fn error_messages_say_things_once_and_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let a = embed(&dir.path().join("missing.tsv")).assert().failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    let pairs = pair_file(dir.path(), "pairs.tsv");
    let a = relbert()
        .args(["embed", "--batch-size", "0", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(&pairs)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(!err.contains("fetch-base-model"), "{err}");
    assert!(err.contains("--batch-size"), "{err}");
}

#[test]
fn an_index_finds_its_model_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pair_file(dir.path(), "pairs.tsv");
    let out = dir.path().join("idx");
    // Built with a relative model path, from the repository root.
    relbert()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "index",
            "build",
            "--model",
            "tests/fixtures/tiny-bert",
            "--pairs",
        ])
        .arg(&pairs)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    // An encoded query (a pair the index does not hold) from another directory.
    relbert()
        .current_dir(dir.path())
        .args(["query", "--index"])
        .arg(&out)
        .args(["lion", "cub"])
        .assert()
        .success()
        .stdout(predicate::str::contains("(encoded)"));
}

#[test]
fn a_second_writer_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let spec = relbert_index::IndexSpec {
        dim: 32,
        precision: relbert_index::Precision::F32,
        encoder: relbert_index::EncoderInfo::default(),
        input: "x".into(),
    };
    // This test process holds the lock, as a running build would.
    let _held = relbert_index::IndexBuilder::create_or_resume(&out, spec, false).unwrap();
    let pairs = pair_file(dir.path(), "pairs.tsv");
    build(&pairs, &out, &[])
        .failure()
        .stderr(predicate::str::contains(format!(
            "being written by another process (pid {}",
            std::process::id()
        )));
}

#[test]
fn progress_is_plain_lines_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pair_file(dir.path(), "pairs.tsv");
    let out = dir.path().join("idx");
    let a = relbert()
        .env("RELBERT_PROGRESS_SECS", "0")
        .args(["index", "build", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    let line = err
        .lines()
        .find(|l| l.starts_with("encoding: "))
        .unwrap_or_else(|| panic!("no progress line in {err}"));
    assert!(line.contains(" pairs/s"), "{line}");
    assert!(!err.contains('\u{1b}'), "colour codes in {err:?}");
    // A whole-number rate from 10 up: no long decimals.
    let rate = line.split(", ").find(|p| p.ends_with("pairs/s")).unwrap();
    assert!(!rate.contains('.') || rate.len() < 14, "{rate}");
}

#[test]
fn a_default_index_of_an_older_format_is_replaced_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = dir.path().join("vocab");
    std::fs::create_dir(&vocab).unwrap();
    pair_file(&vocab, "pairs.tsv");
    let index = dir.path().join("default");
    std::fs::create_dir(&index).unwrap();
    // The headers of a format-1 index: magic and version 1 (its payload does not matter).
    for (name, magic) in [
        ("meta", b"RBIXMETA"),
        ("vectors", b"RBIXVEC\0"),
        ("pairs", b"RBIXPAIR"),
        ("graph", b"RBIXGRPH"),
    ] {
        let mut h = magic.to_vec();
        h.extend_from_slice(&1u32.to_le_bytes());
        h.resize(32, 0);
        std::fs::write(index.join(name), h).unwrap();
    }
    let a = relbert()
        .env("RELBERT_VOCAB", &vocab)
        .env("RELBERT_INDEX", &index)
        .env("RELBERT_MODEL", fixture("tiny-bert"))
        .args(["query", "--json", "paris", "france"])
        .assert()
        .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("index format 1"), "{err}");
    assert!(dir.path().join("default.stale").join("meta").is_file());
}

/// An index that `$RELBERT_INDEX` names but that holds other pairs than the default
/// vocabulary is the user's, not relbert's cache: a default model that differs from its own
/// neither moves nor removes it (it was moved to `.stale` and removed at the next change),
/// and a user's directory where relbert would set a stale cache aside is not replaced.
#[test]
fn an_index_named_by_relbert_index_is_never_set_aside_or_removed() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = dir.path().join("vocab");
    std::fs::create_dir(&vocab).unwrap();
    pair_file(&vocab, "pairs.tsv");
    let mine = dir.path().join("mine");
    let own = dir.path().join("own.tsv");
    std::fs::write(&own, "river\tsea\nseed\ttree\nlamb\tsheep\nbee\thive\n").unwrap();
    relbert()
        .args(["index", "build", "--model"])
        .arg(fixture("tiny-roberta"))
        .arg("--pairs")
        .arg(&own)
        .arg("--out")
        .arg(&mine)
        .assert()
        .success();
    let before = std::fs::read(mine.join("vectors")).unwrap();
    let query = |index: &Path, model: &Path| {
        relbert()
            .env("RELBERT_VOCAB", &vocab)
            .env("RELBERT_INDEX", index)
            .env("RELBERT_MODEL", model)
            .args(["query", "--json", "river", "sea"])
            .assert()
    };
    // Two changes of the default model: the first used to move it aside, the second to
    // remove it.
    let bert = fixture("tiny-bert");
    let offset = common::fixture_with_offset_weight("tiny-bert", dir.path(), Some(0.5));
    for model in [&bert, &offset] {
        let a = query(&mine, model).success();
        let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        assert!(err.contains("your index"), "{err}");
        let out: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
        assert_eq!(out["source"], "index", "answered from the user's index");
        assert_eq!(std::fs::read(mine.join("vectors")).unwrap(), before);
        assert!(!dir.path().join("mine.stale").exists());
    }
    // relbert's own cache, stale, with the user's index where it would be set aside.
    let cache = dir.path().join("cache");
    query(&cache, &bert).success();
    std::fs::rename(&mine, dir.path().join("cache.stale")).unwrap();
    query(&cache, &offset)
        .failure()
        .stderr(predicate::str::contains("not relbert's cache"));
    assert_eq!(
        std::fs::read(dir.path().join("cache.stale").join("vectors")).unwrap(),
        before
    );
    assert!(cache.join("meta").is_file());
}

/// Found by an audit of the index commands: a byte-order mark and spaces around words in a
/// pair file became part of the words (the pair was stored twice, and a query of it missed
/// it), `index add` through a symbolic link was refused with a message about a flag it does
/// not have, an empty query word was answered, and `export --out -` wrote a file named `-`.
#[test]
fn pair_files_words_links_and_dashes_as_a_user_means_them() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("bom.tsv");
    let mut text = "\u{feff}paris \tfrance\n".to_string();
    text.push_str(&pairs_text());
    std::fs::write(&pairs, text).unwrap();
    let index = dir.path().join("idx");
    build(&pairs, &index, &[]).success();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&index, &link).unwrap();
    let again = dir.path().join("again.tsv");
    std::fs::write(&again, "paris\tfrance\n rome \titaly\n").unwrap();
    let a = relbert()
        .args(["index", "add", "--json", "--index"])
        .arg(&link)
        .arg("--pairs")
        .arg(&again)
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(doc["already_in_index"], 1, "{doc}");
    assert_eq!(doc["added"], 1, "{doc}");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    let query = |words: [&str; 2]| {
        let mut c = relbert();
        c.args(["query", "--json", "--index"])
            .arg(&index)
            .args(words);
        c.assert()
    };
    for words in [["paris", "france"], [" rome", "italy "]] {
        let a = query(words).success();
        let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
        assert_eq!(doc["source"], "index", "{words:?}: {doc}");
    }
    query(["", "france"])
        .failure()
        .stderr(predicate::str::contains("empty"));
    relbert()
        .args([
            "index", "export", "--format", "npy", "--out", "-", "--index",
        ])
        .arg(&index)
        .current_dir(dir.path())
        .assert()
        .failure()
        .stderr(predicate::str::contains("--out"));
    assert!(!dir.path().join("-").exists());
}

/// Found by an audit of the model loading: a config.json listing fewer layers than the
/// weights hold ran a smaller model without a word, and dropout or epsilon values that are
/// no probability or no positive number surfaced as a NaN loss blamed on --lr (or a string
/// was taken as the default).
#[test]
fn a_config_that_does_not_describe_its_weights_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pair_file(dir.path(), "pairs.tsv");
    let cases: [(&str, serde_json::Value, &str); 4] = [
        ("num_hidden_layers", serde_json::json!(1), "holds layer 1"),
        (
            "hidden_dropout_prob",
            serde_json::json!("0.3"),
            "hidden_dropout_prob",
        ),
        (
            "attention_probs_dropout_prob",
            serde_json::json!(1.0),
            "[0, 1)",
        ),
        ("layer_norm_eps", serde_json::json!(-1.0), "layer_norm_eps"),
    ];
    for (key, value, says) in cases {
        let model = dir.path().join(key);
        std::fs::create_dir_all(&model).unwrap();
        for f in ["model.safetensors", "tokenizer.json"] {
            std::fs::copy(fixture("tiny-bert").join(f), model.join(f)).unwrap();
        }
        let mut config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture("tiny-bert").join("config.json")).unwrap(),
        )
        .unwrap();
        config[key] = value;
        std::fs::write(model.join("config.json"), config.to_string()).unwrap();
        embed_with(&model, &pairs)
            .assert()
            .failure()
            .stderr(predicate::str::contains("config.json").and(predicate::str::contains(says)));
    }
}

/// Found by an audit of `embed`: a prompt past the 64-token limit was truncated with only a
/// warning, cutting off the second word, so (long head, paris) and (long head, banana) got
/// the same vector. Such a pair is now an error naming its line (or left out with
/// `--skip-long`); a prompt truncated only in template text after both words is embedded as
/// the reference truncates it.
#[test]
fn a_prompt_cut_into_its_words_is_refused_not_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let long: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    let long = long.join(" ");
    let pairs = dir.path().join("long.tsv");
    std::fs::write(
        &pairs,
        format!("dog\tpuppy\n{long}\tparis\n{long}\tbanana\n"),
    )
    .unwrap();
    embed(&pairs).assert().failure().stderr(
        predicate::str::contains("long.tsv:2").and(predicate::str::contains("--skip-long")),
    );
    let a = embed(&pairs).arg("--skip-long").assert().success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("\"puppy\""), "{out}");

    // Words first, then a long tail of template text: truncated, both words whole, embedded.
    let filler = "and so on ".repeat(40);
    let template = format!("<subj> is to <obj> as <mask> {filler}");
    let short = dir.path().join("short.tsv");
    std::fs::write(&short, "dog\tpuppy\ncat\tkitten\n").unwrap();
    let a = embed(&short)
        .args(["--template", &template])
        .assert()
        .success();
    let vectors: Vec<serde_json::Value> = String::from_utf8_lossy(&a.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(vectors.len(), 2);
    assert_ne!(vectors[0]["vector"], vectors[1]["vector"]);
}

/// Found by an audit: outputs ending in `/` or `/.` did all the work, then failed at the
/// final rename with a bare OS error, leaving a finished index in `DIR.partial`, temporary
/// files, or an .npy pair list without its array. An index directory given so is the
/// directory itself; an output file given so is refused before any work.
#[test]
fn outputs_given_with_a_trailing_slash_are_named_or_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pair_file(dir.path(), "p.tsv");
    let idx = dir.path().join("idx");
    build(&pairs, Path::new(&format!("{}/.", idx.display())), &[]).success();
    assert!(idx.join("meta").is_file());
    assert!(!dir.path().join("idx.partial").exists());
    let npy = format!("{}/x.npy/", dir.path().display());
    relbert()
        .args(["index", "export", "--index"])
        .arg(&idx)
        .args(["--format", "npy", "--out", &npy])
        .assert()
        .failure()
        .stderr(predicate::str::contains("names a directory"));
    embed(&pairs)
        .args(["--format", "npy", "--out", &npy])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--out"));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "p.tsv" && n != "idx")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `index info` on a partial build said only "meta: No such file or directory".
#[test]
fn index_info_names_a_partial_build() {
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("idx.partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("checkpoint"), b"").unwrap();
    relbert()
        .args(["index", "info"])
        .arg(&partial)
        .assert()
        .failure()
        .stderr(predicate::str::contains("unfinished build"));
}

/// The place a stale default index is set aside was made with `with_extension`: with
/// `$RELBERT_INDEX` at `cache.stale` it was the index itself, and a model change removed the
/// index and then failed; `cache.v1` and `cache.v2` shared `cache.stale`. It is now the whole
/// name with `.stale` appended.
#[test]
fn a_stale_default_index_is_set_aside_beside_its_whole_name() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = dir.path().join("vocab");
    std::fs::create_dir(&vocab).unwrap();
    pair_file(&vocab, "pairs.tsv");
    let bert = fixture("tiny-bert");
    let offset = common::fixture_with_offset_weight("tiny-bert", dir.path(), Some(0.5));
    for name in ["cache.stale", "cache.v1"] {
        let index = dir.path().join(name);
        for model in [&bert, &offset] {
            relbert()
                .env("RELBERT_VOCAB", &vocab)
                .env("RELBERT_INDEX", &index)
                .env("RELBERT_MODEL", model)
                .args(["query", "--json", "paris", "france"])
                .assert()
                .success();
        }
        assert!(index.join("meta").is_file(), "{name}");
        assert!(
            dir.path()
                .join(format!("{name}.stale"))
                .join("meta")
                .is_file(),
            "{name}"
        );
    }
}

/// The tiny fixture model with an uncased, accent-stripping tokenizer (as the default
/// model's): "Café" and "cafe" are one token sequence to it, so one vector.
fn uncased_tiny(dir: &Path) -> PathBuf {
    let model = dir.join("tiny-uncased");
    std::fs::create_dir_all(&model).unwrap();
    for e in std::fs::read_dir(fixture("tiny-bert")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
    }
    let path = model.join("tokenizer.json");
    let mut t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    t["normalizer"]["lowercase"] = serde_json::json!(true);
    t["normalizer"]["strip_accents"] = serde_json::Value::Null;
    std::fs::write(&path, t.to_string()).unwrap();
    model
}

/// The results' pairs of one `relbert query --json` of `query` (extra flags in `extra`).
fn result_pairs(index: &Path, query: [&str; 2], extra: &[&str]) -> Vec<[String; 2]> {
    let out = relbert()
        .args(["query", "--json", "--exact", "-k", "40", "--index"])
        .arg(index)
        .args(extra)
        .arg(query[0])
        .arg(query[1])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| serde_json::from_value(h["pair"].clone()).unwrap())
        .collect()
}

#[test]
fn a_query_pair_is_not_its_own_result_in_another_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = pairs_text();
    // Stored spellings: lower case, precomposed accents (NFC).
    text.push_str("café\tcrème\tfood\nécole\télève\tschool\n");
    let pairs = dir.path().join("pairs.tsv");
    std::fs::write(&pairs, &text).unwrap();
    let has = |hits: &[[String; 2]], a: &str, b: &str| hits.iter().any(|h| h[0] == a && h[1] == b);

    // A cased model: another case of the stored pair is the same pair, with or without the
    // shared-word filter; NFD is the same spelling as NFC.
    let cased = dir.path().join("cased");
    build(&pairs, &cased, &[]).success();
    let hits = result_pairs(&cased, ["Paris", "FRANCE"], &["--keep-shared-words"]);
    assert!(!has(&hits, "paris", "france"), "{hits:?}");
    assert!(has(&hits, "paris", "japan"), "the filter is off: {hits:?}");
    let nfd = ["e\u{301}cole", "e\u{301}le\u{300}ve"];
    let hits = result_pairs(&cased, nfd, &[]);
    assert!(!has(&hits, "école", "élève"), "{hits:?}");
    // ... and shares its words with it: "élève" typed decomposed is the stored "élève".
    let hits = result_pairs(&cased, ["e\u{301}cole", "x"], &[]);
    assert!(!has(&hits, "école", "élève"), "{hits:?}");

    // An uncased, accent-stripping model: the unaccented spelling is the stored pair to the
    // model (one vector), so it is not a result either (it came back first at 1.000).
    let model = uncased_tiny(dir.path());
    let uncased = dir.path().join("uncased");
    relbert()
        .args(["index", "build", "--model"])
        .arg(&model)
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&uncased)
        .assert()
        .success();
    let hits = result_pairs(&uncased, ["cafe", "creme"], &[]);
    assert!(!has(&hits, "café", "crème"), "{hits:?}");
    assert_eq!(
        hits.len(),
        40.min(text.lines().count() - 1),
        "refilled to k: {hits:?}"
    );
}

#[test]
fn two_arrays_never_share_or_take_one_pair_list() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pairs = pair_file(d, "pairs.tsv");
    let npy = |out: &str, extra: &[&str]| {
        let mut c = embed(&pairs);
        c.args(["--format", "npy", "--out"])
            .arg(d.join(out))
            .args(extra);
        c.assert()
    };
    // Names that differ after the last dot: each its own pair list (both went to emb.pairs.tsv,
    // the second run replacing the first's without --force).
    npy("emb.train", &[]).success();
    npy("emb.test", &[]).success();
    assert!(d.join("emb.train.pairs.tsv").is_file());
    assert!(d.join("emb.test.pairs.tsv").is_file());
    assert!(!d.join("emb.pairs.tsv").exists());
    // `v` and `v.npy` share v.pairs.tsv: the second is refused, even with --force, and the
    // first's list is left as it was.
    npy("v", &[]).success();
    let before = std::fs::read(d.join("v.pairs.tsv")).unwrap();
    for extra in [&[][..], &["--force"][..]] {
        npy("v.npy", extra)
            .failure()
            .stderr(predicate::str::contains("is the pair list of v,"));
    }
    assert_eq!(std::fs::read(d.join("v.pairs.tsv")).unwrap(), before);
    assert!(!d.join("v.npy").exists());
    // Another program's array is not replaced, even with --force; relbert's own is.
    let mut theirs = b"\x93NUMPY\x01\x00".to_vec();
    theirs.extend_from_slice(&[b' '; 118]);
    std::fs::write(d.join("mine.npy"), &theirs).unwrap();
    npy("mine.npy", &["--force"])
        .failure()
        .stderr(predicate::str::contains("no pair list of relbert's"));
    assert_eq!(std::fs::read(d.join("mine.npy")).unwrap(), theirs);
    npy("emb.train", &["--force"]).success();
    // The pair list has three columns on every line, the label empty where there is none.
    let list = std::fs::read_to_string(d.join("emb.train.pairs.tsv")).unwrap();
    assert!(
        list.lines().skip(1).all(|l| l.split('\t').count() == 3),
        "{list}"
    );
}

#[test]
fn a_stream_line_read_two_ways_is_the_pair_the_index_holds() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.tsv");
    std::fs::write(&pairs, pairs_text() + "re:invent\tconference\tevent\n").unwrap();
    let out = dir.path().join("idx");
    build(&pairs, &out, &[]).success();
    // Stored as re:invent : conference (it was read as re : invent conference); a line
    // whose colon reading is stored, or that has one reading, reads as before.
    let docs = stream_docs(&out, "re:invent conference\ndog: puppy\nparis:france\n");
    assert_eq!(
        docs[0]["query"],
        serde_json::json!(["re:invent", "conference"])
    );
    assert_eq!(docs[0]["source"], "index");
    assert_eq!(docs[1]["query"], serde_json::json!(["dog", "puppy"]));
    assert_eq!(docs[2]["query"], serde_json::json!(["paris", "france"]));
    // One argument A:B is the pair, as a line is (clap wanted two values); one word is not.
    let one = |arg: &str| {
        relbert()
            .args(["query", "--json", "-k", "2", "--index"])
            .arg(&out)
            .arg(arg)
            .assert()
    };
    for (arg, want) in [
        ("paris:france", ["paris", "france"]),
        ("re:invent conference", ["re:invent", "conference"]),
    ] {
        let got = one(arg).success();
        let doc: serde_json::Value = serde_json::from_slice(&got.get_output().stdout).unwrap();
        assert_eq!(doc["query"], serde_json::json!(want));
    }
    one("paris")
        .failure()
        .stderr(predicate::str::contains("give the pair as two arguments"));
}

/// The answers of one `relbert query --json -k 2` stream over `index`, fed `lines`: one JSON
/// document per line.
fn stream_docs(index: &Path, lines: &str) -> Vec<serde_json::Value> {
    let a = relbert()
        .args(["query", "--json", "-k", "2", "--index"])
        .arg(index)
        .write_stdin(lines)
        .assert()
        .success();
    String::from_utf8(a.get_output().stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The results of one `relbert query --json --exact -k 10` as (pair, score) and the query's
/// source.
fn scored_results(index: &Path, query: [&str; 2]) -> (Vec<([String; 2], f64)>, String) {
    let out = relbert()
        .args(["query", "--json", "--exact", "-k", "10", "--index"])
        .arg(index)
        .args(query)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hits = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let pair: [String; 2] = serde_json::from_value(h["pair"].clone()).unwrap();
            (pair, h["score"].as_f64().unwrap())
        })
        .collect();
    (hits, doc["source"].as_str().unwrap_or_default().to_string())
}

fn index_count(index: &Path) -> u64 {
    let a = relbert()
        .args(["index", "info", "--json"])
        .arg(index)
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    doc["count"].as_u64().unwrap()
}

/// Found by an audit: a pair file holding `paris france` in three cases and `café crème`
/// precomposed (NFC) and decomposed (NFD) built 7 rows "(0 duplicates skipped)", and
/// `query berlin germany` returned `paris : france` three times (ranks 2–4, one vector to an
/// uncased model) and `café : crème` twice, looking the same. The NFD line is a duplicate
/// now; cases stay in the index (a cased model tells them apart) and come back once per
/// query, in the best-scored spelling, with either model; the NFD spelling of the stored
/// pair is answered from the index and `index add` finds it there.
#[test]
fn a_pair_comes_back_once_whatever_its_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("small.tsv");
    std::fs::write(
        &pairs,
        "paris\tfrance\nParis\tFrance\nPARIS\tFRANCE\ncaf\u{e9}\tcr\u{e8}me\n\
         cafe\u{301}\tcre\u{300}me\nrome\titaly\ndog\tanimal\n",
    )
    .unwrap();
    let fold = |p: &[String; 2]| {
        use unicode_normalization::UnicodeNormalization;
        let f = |w: &str| w.nfc().collect::<String>().to_lowercase();
        (f(&p[0]), f(&p[1]))
    };
    let uncased_model = uncased_tiny(dir.path());
    for (name, model) in [("cased", fixture("tiny-bert")), ("uncased", uncased_model)] {
        let index = dir.path().join(name);
        relbert()
            .args(["index", "build", "--model"])
            .arg(&model)
            .arg("--pairs")
            .arg(&pairs)
            .arg("--out")
            .arg(&index)
            .assert()
            .success();
        assert_eq!(
            index_count(&index),
            6,
            "{name}: the NFD line is a duplicate"
        );
        let (hits, _) = scored_results(&index, ["berlin", "germany"]);
        let mut seen = std::collections::HashSet::new();
        for (p, _) in &hits {
            assert!(seen.insert(fold(p)), "{name}: {p:?} twice in {hits:?}");
        }
        assert_eq!(hits.len(), 4, "{name}: {hits:?}");
        // Best first, and the one kept is the best of its spellings.
        assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1), "{hits:?}");
        let (hits, source) = scored_results(&index, ["cafe\u{301}", "cre\u{300}me"]);
        assert_eq!(source, "index", "{name}: the NFD spelling of a stored pair");
        assert!(
            !hits
                .iter()
                .any(|(p, _)| fold(p) == ("café".into(), "crème".into())),
            "{hits:?}"
        );
        let add = dir.path().join(format!("{name}-add.tsv"));
        std::fs::write(&add, "cafe\u{301}\tcre\u{300}me\n").unwrap();
        let a = relbert()
            .args(["index", "add", "--json", "--index"])
            .arg(&index)
            .arg("--pairs")
            .arg(&add)
            .assert()
            .success();
        let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
        assert_eq!(doc["already_in_index"], 1, "{name}: {doc}");
        assert_eq!(index_count(&index), 6);
    }
}

/// A run of spaces inside a word (`new  york`, or a no-break space) is one space to a BERT
/// tokenizer, which splits words at whitespace, but was another pair: a file holding both
/// spellings built two rows, and a query typed with one space missed the pair stored with
/// two (encoded, with the stored one left among its results). Words are read with one space
/// between their words now, wherever they are typed; an index an older relbert built with
/// `new  york` is still found by the file that made it (`index add`, `index remove`).
#[test]
fn a_pair_typed_with_a_run_of_spaces_is_the_pair_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("spaced.tsv");
    std::fs::write(
        &pairs,
        pairs_text() + "new york\tusa\nnew  york\tusa\nrio\u{a0}de  janeiro\tbrazil\n",
    )
    .unwrap();
    let index = dir.path().join("idx");
    build(&pairs, &index, &[]).success();
    let held = pairs_text().lines().count() as u64;
    assert_eq!(index_count(&index), held + 2, "new  york is new york");
    for query in [
        ["new  york", "usa"],
        ["new york", "usa"],
        ["new\u{a0}york", " usa"],
        ["rio de janeiro", "brazil"],
        ["rio\u{3000}de janeiro", "brazil"],
    ] {
        let (_, source) = scored_results(&index, query);
        assert_eq!(source, "index", "{query:?}: the stored pair, not encoded");
    }
    // A query stream's lines, each form.
    let docs = stream_docs(
        &index,
        "new  york\tusa\nnew  york : usa\nrio de\u{a0}\u{a0}janeiro:brazil\n",
    );
    assert_eq!(docs.len(), 3);
    for (doc, want) in docs.iter().zip([
        ["new york", "usa"],
        ["new york", "usa"],
        ["rio de janeiro", "brazil"],
    ]) {
        assert_eq!(doc["query"], serde_json::json!(want), "{doc}");
        assert_eq!(doc["source"], "index", "{doc}");
    }

    // An index an older relbert built, which stored the words as the file spelled them.
    let old = dir.path().join("old");
    let held = [("paris", "france"), ("new  york", "usa"), ("rome", "italy")];
    common::index_as_an_older_relbert_wrote(&old, "tiny-bert", &held);
    let file = dir.path().join("typed.tsv");
    std::fs::write(&file, "new  york\tusa\n").unwrap();
    let run = |what: &str| common::index_json(what, &old, &file);
    let doc = run("add");
    assert_eq!(doc["added"], 0, "{doc}");
    assert_eq!(doc["already_in_index"], 1, "{doc}");
    assert_eq!(index_count(&old), 3);
    let doc = run("remove");
    assert_eq!(doc["removed"], 1, "{doc}");
    assert_eq!(doc["count"], 2, "{doc}");
}

/// Found by an audit: `--ef-construction 1` with `--m 3` built a graph with recall@10 14/50
/// (an insertion picks up to m neighbours from ef_construction candidates). Refused, naming
/// both flags, before any encoding, by build and rebuild.
#[test]
fn ef_construction_below_m_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pair_file(dir.path(), "pairs.tsv");
    let out = dir.path().join("idx");
    let a = build(&pairs, &out, &["--m", "3", "--ef-construction", "1"]).failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("--m") && err.contains("--ef-construction") && err.contains("below m"),
        "{err}"
    );
    assert!(!out.exists() && !dir.path().join("idx.partial").exists());
    build(&pairs, &out, &["--m", "3", "--ef-construction", "3"]).success();
    let again = dir.path().join("again");
    let a = relbert()
        .args(["index", "rebuild", "--index"])
        .arg(&out)
        .arg("--out")
        .arg(&again)
        .args(["--m", "8", "--ef-construction", "4"])
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("--m") && err.contains("--ef-construction") && err.contains("below m"),
        "{err}"
    );
    assert!(!again.exists());
    // --m alone above the source's ef_construction (3): the source's is raised to M, as an
    // index built before this check (ef_construction below M) is rebuilt without flags.
    relbert()
        .args(["index", "rebuild", "--index"])
        .arg(&out)
        .arg("--out")
        .arg(&again)
        .args(["--m", "8"])
        .assert()
        .success();
    let info = relbert()
        .args(["index", "info", "--json"])
        .arg(&again)
        .assert()
        .success();
    let info: serde_json::Value = serde_json::from_slice(&info.get_output().stdout).unwrap();
    assert_eq!(info["hnsw"]["m"], 8);
    assert_eq!(info["hnsw"]["ef_construction"], 8);
}

/// Found by an audit: a pair repeated with another label kept the first label silently
/// (only "1 duplicates skipped"), and `index add` of a stored pair with a new label said
/// "already there" and dropped it. Each dropped label is named with its file and line and
/// the label kept; past five, the rest are counted.
#[test]
fn a_label_dropped_with_a_duplicate_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("lab.tsv");
    let mut text = "dog\tanimal\thyper\ndog\tanimal\tmero\ncat\tpet\n".to_string();
    for i in 0..8 {
        text.push_str(&format!("w{i}\tx\tCOORD\nw{i}\tx\tcoord\n"));
    }
    std::fs::write(&pairs, &text).unwrap();
    let out = dir.path().join("idx");
    let a = build(&pairs, &out, &[]).success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("lab.tsv:2")
            && err.contains("lab.tsv:1")
            && err.contains("\"mero\"")
            && err.contains("\"hyper\""),
        "{err}"
    );
    assert!(err.contains("4 more") && err.contains("9 in all"), "{err}");
    assert!(!err.contains("lab.tsv:19"), "only five named: {err}");
    let add = dir.path().join("add.tsv");
    std::fs::write(&add, "cat\tpet\tcompanion\n").unwrap();
    let a = relbert()
        .args(["index", "add", "--index"])
        .arg(&out)
        .arg("--pairs")
        .arg(&add)
        .assert()
        .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("add.tsv:1") && err.contains("\"companion\"") && err.contains("no label"),
        "{err}"
    );
}

/// `relbert query paris france` on the default index at `index` (the value of
/// `$RELBERT_INDEX`, spelled as given), with the tiny model (or `model`) and the vocabulary
/// of [`pair_file`] in `dir/vocab`, run in `cwd`.
fn default_query_at(
    dir: &Path,
    index: &std::ffi::OsStr,
    model: &Path,
    cwd: &Path,
) -> assert_cmd::assert::Assert {
    let vocab = dir.join("vocab");
    if !vocab.exists() {
        std::fs::create_dir(&vocab).unwrap();
        pair_file(&vocab, "pairs.tsv");
    }
    relbert()
        .current_dir(cwd)
        .env("RELBERT_VOCAB", &vocab)
        .env("RELBERT_INDEX", index)
        .env("RELBERT_MODEL", model)
        .args(["query", "--json", "-k", "2", "paris", "france"])
        .assert()
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// Found by an audit: `RELBERT_INDEX=idx/` (shell completion adds the slash) put the record
/// `.relbert.json` inside the index, after which `index add` refused the index ("holds
/// .relbert.json"), and a stale one failed to be set aside (`moving idx/ to idx/.stale:
/// Invalid argument`); `RELBERT_INDEX=.` wrote `..relbert.json` inside it. The record and
/// the stale index lie beside the directory however it is spelled.
#[test]
fn relbert_index_with_a_trailing_slash_or_a_dot_keeps_the_index_clean() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("idx");
    let mut slash = idx.clone().into_os_string();
    slash.push("/");
    let bert = fixture("tiny-bert");
    default_query_at(dir.path(), &slash, &bert, dir.path()).success();
    assert!(dir.path().join("idx.relbert.json").is_file());
    relbert_index::recognise_index(&idx).unwrap();
    // From inside it, as `.`.
    default_query_at(dir.path(), ".".as_ref(), &bert, &idx).success();
    relbert_index::recognise_index(&idx).unwrap();
    // Another default model: the stale index is set aside beside it, not into itself.
    let offset = common::fixture_with_offset_weight("tiny-bert", dir.path(), Some(0.5));
    let a = default_query_at(dir.path(), &slash, &offset, dir.path()).success();
    assert!(stderr_of(&a).contains("stale"), "{}", stderr_of(&a));
    assert!(dir.path().join("idx.stale").join("meta").is_file());
    relbert_index::recognise_index(&idx).unwrap();
    let more = dir.path().join("more.tsv");
    std::fs::write(&more, "lion\tcub\n").unwrap();
    relbert()
        .args(["index", "add", "--index"])
        .arg(&idx)
        .arg("--pairs")
        .arg(&more)
        .assert()
        .success();
}

/// Found by an audit: an index whose record an older relbert had put inside it
/// (`RELBERT_INDEX=idx/` wrote `idx/.relbert.json`) stayed refused by `index add`, `index
/// build --force` and `index rebuild --force` ("holds .relbert.json") until the user removed
/// the file by hand. relbert's own record of that index is put back beside it (moved, or
/// removed when the same record is there), with a line on stderr; the tools then go on. A
/// user's file of that name is still refused and kept, and so is another index's record,
/// with a message naming the file and what to do.
#[test]
fn a_record_an_older_relbert_put_inside_the_index_is_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("idx");
    let bert = fixture("tiny-bert");
    default_query_at(dir.path(), idx.as_os_str(), &bert, dir.path()).success();
    let beside = dir.path().join("idx.relbert.json");
    let record = std::fs::read(&beside).unwrap();
    let inside = idx.join(".relbert.json");
    // The record as relbert would have written it of the index at `idx` now (each run below
    // publishes an index of another id).
    let record_now = || {
        let mut r: serde_json::Value = serde_json::from_slice(&record).unwrap();
        let source = r["vocabularies"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone();
        let id = relbert_index::Index::open(&idx).unwrap().id();
        r["vocabularies"] = serde_json::json!({ id: source });
        serde_json::to_vec_pretty(&r).unwrap()
    };
    let more = dir.path().join("more.tsv");
    std::fs::write(&more, "lion\tcub\n").unwrap();
    let add = || {
        relbert()
            .env("RELBERT_LOG", "info")
            .args(["index", "add", "--index"])
            .arg(&idx)
            .arg("--pairs")
            .arg(&more)
            .assert()
    };
    // As the older relbert left it: inside, and nothing beside.
    std::fs::rename(&beside, &inside).unwrap();
    let a = add().success();
    assert!(stderr_of(&a).contains("moved"), "{}", stderr_of(&a));
    assert!(!inside.exists());
    assert_eq!(std::fs::read(&beside).unwrap(), record);
    relbert_index::recognise_index(&idx).unwrap();
    // The same record inside and beside: the one inside goes (build and rebuild --force).
    let rebuild = || {
        relbert()
            .env("RELBERT_LOG", "info")
            .args(["index", "rebuild", "--index"])
            .arg(&idx)
            .arg("--out")
            .arg(&idx)
            .args(["--force", "--f16"])
            .assert()
    };
    for run in [&rebuild as &dyn Fn() -> assert_cmd::assert::Assert, &|| {
        relbert()
            .env("RELBERT_LOG", "info")
            .args(["index", "build", "--model"])
            .arg(&bert)
            .arg("--pairs")
            .arg(&more)
            .arg("--out")
            .arg(&idx)
            .arg("--force")
            .assert()
    }] {
        let now = record_now();
        std::fs::write(&inside, &now).unwrap();
        std::fs::write(&beside, &now).unwrap();
        let a = run().success();
        assert!(stderr_of(&a).contains("removed"), "{}", stderr_of(&a));
        assert!(!inside.exists());
        assert_eq!(std::fs::read(&beside).unwrap(), now);
    }
    let record = record_now();
    std::fs::write(&beside, &record).unwrap();
    // Another index's record inside: refused, naming the file and what to do; nothing moves.
    std::fs::write(&more, "ocean\tsea\n").unwrap();
    let mut other: serde_json::Value = serde_json::from_slice(&record).unwrap();
    other["vocabularies"] = serde_json::json!({"0123": {"dir": "v", "sha256": "00"}});
    let other = serde_json::to_vec(&other).unwrap();
    std::fs::write(&inside, &other).unwrap();
    let err = stderr_of(&add().failure());
    assert!(
        err.contains(&inside.display().to_string()) && err.contains("rm "),
        "{err}"
    );
    assert_eq!(std::fs::read(&inside).unwrap(), other);
    assert_eq!(std::fs::read(&beside).unwrap(), record);
    // A user's file of that name: refused as before, and kept.
    std::fs::write(&inside, "my notes\n").unwrap();
    let err = stderr_of(&rebuild().failure());
    assert!(err.contains(".relbert.json"), "{err}");
    assert_eq!(std::fs::read(&inside).unwrap(), b"my notes\n");
}

/// Found by an audit: an empty `RELBERT_INDEX` was read as the working directory, and the
/// record written into it (`./.relbert.json`). It is refused, naming the variable, and
/// nothing is written.
#[test]
fn an_empty_relbert_index_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let a = default_query_at(dir.path(), "".as_ref(), &fixture("tiny-bert"), &cwd).failure();
    assert!(stderr_of(&a).contains("RELBERT_INDEX"), "{}", stderr_of(&a));
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0);
    // serve too (it tried to open the empty path, naming nothing).
    let a = relbert()
        .current_dir(&cwd)
        .env("RELBERT_INDEX", "")
        .args(["serve", "--addr", "127.0.0.1:0"])
        .assert()
        .failure();
    assert!(stderr_of(&a).contains("RELBERT_INDEX"), "{}", stderr_of(&a));
}

/// Found by a review: `RELBERT_INDEX=.` in an empty working directory removed that
/// directory to build the index in its place, leaving the shell in a deleted directory. It
/// is refused, before the model is loaded, and the directory stays.
#[test]
fn the_working_directory_is_never_replaced_by_the_default_index() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let gone = dir.path().join("no-model");
    let a = default_query_at(dir.path(), ".".as_ref(), &gone, &cwd).failure();
    let err = stderr_of(&a);
    assert!(err.contains("current directory"), "{err}");
    assert!(!err.contains("no-model"), "checked before the model: {err}");
    assert!(cwd.is_dir());
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0);
}

/// Found by an audit: `RELBERT_INDEX` naming a directory that is no index loaded the model,
/// read the vocabulary, then failed "already exists (pass force to replace it)" (query has
/// no --force) and wrote `<dir>.relbert.json` beside the user's directory. A directory
/// holding other files is refused first (the model named here does not exist, and is never
/// reached), naming the variable, with nothing written; an empty directory is built into.
#[test]
fn relbert_index_naming_a_directory_that_is_no_index() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine\n").unwrap();
    let gone = dir.path().join("no-model");
    let a = default_query_at(dir.path(), mine.as_os_str(), &gone, dir.path()).failure();
    let err = stderr_of(&a);
    assert!(
        err.contains("$RELBERT_INDEX") && err.contains("not an index") && err.contains("mine"),
        "{err}"
    );
    assert!(!err.contains("no-model"), "checked before the model: {err}");
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "mine\n"
    );
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 1);
    assert!(!dir.path().join("mine.relbert.json").exists());
    // An empty directory is where the user wants the index.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let a = default_query_at(
        dir.path(),
        empty.as_os_str(),
        &fixture("tiny-bert"),
        dir.path(),
    )
    .success();
    let out: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(out["source"], "index", "{out}");
    relbert_index::recognise_index(&empty).unwrap();
    assert!(dir.path().join("empty.relbert.json").is_file());
}

/// Found by an audit: `-k 0` answered "(no results)" with status 0 and `--ef 0` was
/// accepted, while `relbert serve` refuses both ("k must be between 1 and 100"). The command
/// line refuses them, naming the flag.
#[test]
fn query_refuses_k_and_ef_of_zero() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("idx");
    build(&pair_file(dir.path(), "p.tsv"), &idx, &[]).success();
    for (flag, shown) in [("-k", "-k"), ("--ef", "--ef")] {
        relbert()
            .args(["query", "--index"])
            .arg(&idx)
            .args([flag, "0", "paris", "france"])
            .assert()
            .failure()
            .stderr(predicate::str::contains(shown).and(predicate::str::contains("at least 1")));
    }
    relbert()
        .args(["query", "--index"])
        .arg(&idx)
        .args(["-k", "1", "--ef", "1", "paris", "france"])
        .assert()
        .success();
}

/// Found by an audit, in the query stream: with `--json` the closing error said the bad
/// lines were "named above", where standard error named none; an indented `#` line was an
/// error, not the comment the README's "a `#` line" is; and `paris:france:x` was called
/// "one word".
#[test]
fn the_query_stream_names_its_errors_and_skips_indented_comments() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("idx");
    build(&pair_file(dir.path(), "p.tsv"), &idx, &[]).success();
    let a = relbert()
        .args(["query", "--json", "--index"])
        .arg(&idx)
        .write_stdin("paris\n  # a comment\n\t#another\ndog cat\nparis:france:x\n")
        .assert()
        .failure();
    let err = stderr_of(&a);
    assert!(
        err.contains("2 of 3") && err.contains("in its JSON line") && !err.contains("above"),
        "{err}"
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&a.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[1]["skipped"], "comment", "{}", lines[1]);
    assert_eq!(lines[2]["skipped"], "comment", "{}", lines[2]);
    assert!(lines[3]["results"].is_array(), "{}", lines[3]);
    let why = lines[4]["error"].as_str().unwrap();
    assert!(
        why.contains("too many parts") && !why.contains("one word"),
        "{why}"
    );
    assert!(lines[0]["error"].as_str().unwrap().contains("one word"));
    // Without --json each error is on standard error, and the summary says so.
    let a = relbert()
        .args(["query", "--index"])
        .arg(&idx)
        .write_stdin("paris:france:x\n")
        .assert()
        .failure();
    let err = stderr_of(&a);
    assert!(
        err.contains("line 1: ") && err.contains("too many parts") && err.contains("above"),
        "{err}"
    );
    // As one argument too.
    relbert()
        .args(["query", "--index"])
        .arg(&idx)
        .arg("paris:france:x")
        .assert()
        .failure()
        .stderr(predicate::str::contains("too many parts"));
}

/// Rewrites the `vectors` file of `index` with `edit` applied to its payload, under the same
/// id with fresh block checksums: what a writer bug or a tool that rewrote the file leaves,
/// which every checksum passes.
fn reseal_vectors(index: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    use relbert_index::format::{seal, unseal, FileKind};
    let path = index.join("vectors");
    let bytes = std::fs::read(&path).unwrap();
    let (id, payload) = unseal(&bytes).unwrap();
    let mut payload = payload.to_vec();
    edit(&mut payload);
    std::fs::write(&path, seal(FileKind::Vectors, &payload, &id)).unwrap();
}

/// Found by an audit: a `vectors` file holding a NaN row with checksums recomputed to match
/// answered `query` with a NaN score (`null` in JSON) ranked first, since NaN sorts above
/// every number, and a zero row with a score of 0. Such rows are left out of every search,
/// exact or not, the user is told once which file and row is bad, and a query for the bad
/// pair itself is refused naming them; `index info --verify` names the row.
#[test]
fn a_stored_nan_or_zero_row_never_comes_back_as_a_score() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("idx");
    build(&pair_file(dir.path(), "p.tsv"), &idx, &[]).success();
    let (before, _) = scored_results(&idx, ["paris", "france"]);
    assert!(before.len() >= 4, "{before:?}");
    let (nan_pair, zero_pair) = (before[0].0.clone(), before[1].0.clone());
    let (nan_row, zero_row, row_bytes) = {
        let index = relbert_index::Index::open(&idx).unwrap();
        let row = |p: &[String; 2]| index.lookup(&p[0], &p[1]).unwrap().unwrap();
        let bytes = index.dim() * index.meta().precision.bytes();
        (row(&nan_pair), row(&zero_pair), bytes)
    };
    reseal_vectors(&idx, |p| {
        // A NaN without its sign bit, which sorts above every number (`total_cmp`), in every
        // value (`f32`) or every other one (`f16`).
        for c in p[nan_row * row_bytes..(nan_row + 1) * row_bytes].chunks_mut(4) {
            c.copy_from_slice(&[0, 0, 0xc0, 0x7f]);
        }
        p[zero_row * row_bytes..(zero_row + 1) * row_bytes].fill(0);
    });
    let vectors = idx.join("vectors").display().to_string();
    for extra in [&["--exact"][..], &[][..]] {
        let a = relbert()
            .args(["query", "--json", "-k", "10", "--index"])
            .arg(&idx)
            .args(extra)
            .args(["paris", "france"])
            .assert()
            .success();
        let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
        let hits = doc["results"].as_array().unwrap();
        let scores: Vec<f64> = hits
            .iter()
            .map(|h| h["score"].as_f64().unwrap_or(f64::NAN))
            .collect();
        assert!(
            scores.iter().all(|s| s.is_finite()) && scores.windows(2).all(|w| w[0] >= w[1]),
            "{extra:?}: {doc}"
        );
        let pairs: Vec<[String; 2]> = hits
            .iter()
            .map(|h| serde_json::from_value(h["pair"].clone()).unwrap())
            .collect();
        assert!(
            !pairs.contains(&nan_pair) && !pairs.contains(&zero_pair),
            "{extra:?}: {doc}"
        );
        // The good pairs found before are still found, in their order.
        let kept: Vec<&[String; 2]> = before[2..].iter().map(|(p, _)| p).collect();
        assert_eq!(
            pairs.iter().take(kept.len()).collect::<Vec<_>>(),
            kept.iter().take(pairs.len()).copied().collect::<Vec<_>>(),
            "{extra:?}: {doc}"
        );
        let err = stderr_of(&a);
        assert!(
            err.contains(&vectors)
                && (err.contains(&format!("row {nan_row} "))
                    || err.contains(&format!("row {zero_row} ")))
                && err.contains("relbert index info --verify"),
            "{extra:?}: {err}"
        );
        assert_eq!(
            err.matches("index info --verify").count(),
            1,
            "told once: {err}"
        );
    }
    // The bad pair itself: refused, naming the file and row.
    let a = relbert()
        .args(["query", "--index"])
        .arg(&idx)
        .args([&nan_pair[0], &nan_pair[1]])
        .assert()
        .failure();
    let err = stderr_of(&a);
    assert!(
        err.contains(&vectors)
            && err.contains(&format!("row {nan_row} "))
            && err.contains("relbert index info --verify"),
        "{err}"
    );
    // `index info --verify` names a bad row (before the id the rewrite changed).
    let a = relbert()
        .args(["index", "info", "--verify"])
        .arg(&idx)
        .assert()
        .failure();
    let err = stderr_of(&a);
    assert!(
        err.contains(&vectors) && err.contains(&format!("row {}", nan_row.min(zero_row))),
        "{err}"
    );
}

/// Found by an audit: `index export` and `query --exact` opened the index with the full check
/// of small files (a graph of up to 8 MiB is verified whole at open), so they refused an index
/// whose graph alone was damaged, though neither reads the graph: an export reads the rows
/// and pairs, an exact query scans the rows, and both check each block of them as they read
/// it. They open with the headers checked, as `index rebuild` does, and answer as from the
/// undamaged index; the graph search still refuses, naming the rebuild.
#[test]
fn a_damaged_graph_leaves_export_and_exact_queries_whole() {
    let dir = tempfile::tempdir().unwrap();
    let good = three_hundred_pairs(dir.path(), "good");
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    for f in ["vectors", "pairs", "graph", "meta"] {
        std::fs::copy(good.join(f), bad.join(f)).unwrap();
    }
    // The middle of the graph is in its neighbour lists, which only a graph search reads
    // (the small sections every open reads come first).
    let graph = bad.join("graph");
    let mut bytes = std::fs::read(&graph).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&graph, bytes).unwrap();

    let query = |idx: &Path, exact: bool| {
        let mut c = relbert();
        c.args(["query", "--json", "-k", "20", "--index"]).arg(idx);
        if exact {
            c.arg("--exact");
        }
        c.args(["w3", "v21"]).assert()
    };
    let err =
        String::from_utf8_lossy(&query(&bad, false).failure().get_output().stderr).into_owned();
    assert!(
        err.contains("graph")
            && err.contains("relbert index rebuild --index DIR --out DIR --force"),
        "{err}"
    );
    let want = query(&good, true).success().get_output().stdout.clone();
    let got = query(&bad, true).success().get_output().stdout.clone();
    assert!(!want.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );

    let export = |idx: &Path, into: &str| {
        let out = dir.path().join(into);
        std::fs::create_dir(&out).unwrap();
        relbert()
            .args(["index", "export", "--format", "npy", "--index"])
            .arg(idx)
            .arg("--out")
            .arg(out.join("e.npy"))
            .assert()
            .success();
        let mut files: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(f).unwrap())
            })
            .collect::<Vec<_>>()
    };
    let (want, got) = (export(&good, "from-good"), export(&bad, "from-bad"));
    assert_eq!(want.len(), 2, "the array and its pair list");
    for ((a, x), (b, y)) in want.iter().zip(&got) {
        assert_eq!(a, b);
        assert!(x == y, "{a} differs");
    }
}

/// An index `dir/name` of 300 pairs `wI : vJ` (its pair list spans several blocks), built
/// with the tiny model.
fn three_hundred_pairs(dir: &Path, name: &str) -> PathBuf {
    let text: String = (0..300)
        .map(|i| format!("w{i}\tv{}\n", i * 7 % 301))
        .collect();
    let pairs = dir.join("many.tsv");
    std::fs::write(&pairs, text).unwrap();
    let idx = dir.join(name);
    build(&pairs, &idx, &[]).success();
    idx
}

/// Review R18: with the rows opened unchecked for `query --exact`, a damaged block of the
/// pair list was read only by the shared-word filter, which took its checksum error for
/// "leave the row out": the block's rows dropped out of the results, exit status 0. The
/// error is the query's now (`search_local`, which a graph search of an index too large for
/// the full check at open shares; this small index's graph search fails at open).
#[test]
fn a_damaged_pair_list_fails_a_query_rather_than_thinning_its_results() {
    let dir = tempfile::tempdir().unwrap();
    let bad = three_hundred_pairs(dir.path(), "bad");
    let list = bad.join("pairs");
    let mut bytes = std::fs::read(&list).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == b"w150")
        .expect("the pair w150 in the list");
    bytes[at + 1] ^= 1;
    std::fs::write(&list, bytes).unwrap();
    let a = relbert()
        .args(["query", "--exact", "-k", "300", "--index"])
        .arg(&bad)
        .args(["w150", "v148"])
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("pairs") && err.contains("checksum"), "{err}");
}

/// Found by an audit: with `--skip-long` leaving out every pair read, `index build` and
/// `embed` failed with a bare "no pairs left to encode", naming no input nor why. The error
/// names the file (or standard input), the count and the reason, and what to do.
#[test]
fn every_pair_too_long_names_the_input_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let long = "supercalifragilistic ".repeat(4);
    let text = format!("{long}\tword\n{long}\tthing\n");
    let pairs = dir.path().join("long.tsv");
    std::fs::write(&pairs, &text).unwrap();
    let out = dir.path().join("idx");
    let a = build(&pairs, &out, &["--aggregation", "mask", "--skip-long"]).failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(&format!(
            "no pairs left to encode: all 2 pairs read from {} are too long to encode",
            pairs.display()
        )) && err.contains("--skip-long left them out"),
        "{err}"
    );
    assert!(!out.exists() && !dir.path().join("idx.partial").exists());
    let a = embed(Path::new("-"))
        .args(["--aggregation", "mask", "--skip-long", "--out"])
        .arg(dir.path().join("e.npy"))
        .write_stdin(format!("{long}\tword\n"))
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("the 1 pair read from standard input is too long to encode"),
        "{err}"
    );
}

/// Found by a review of pair-file reading: a line whose head is a hashtag (`#metoo<TAB>movement`)
/// was dropped as a comment without a word, and a column header `head<TAB>tail<TAB>label`
/// (which `relbert bench` skips) was indexed as the pair `head : tail` and came back as an
/// answer. Every reader of pair files reads them alike: `index build`, `index add`, `embed`.
#[test]
fn a_header_is_skipped_and_a_hashtag_read_as_a_comment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("tags.tsv");
    let mut text =
        "head\ttail\tlabel\n# a comment\n#metoo\tmovement\n# paris\tfrance\n".to_string();
    text.push_str(&pairs_text());
    text.push_str("head\ttail\tpart\n");
    std::fs::write(&pairs, &text).unwrap();
    let hashtag = "tags.tsv:3: 1 line starting with # that reads as a pair was skipped";
    let header = "tags.tsv:1: skipped the column header";
    let read = |a: &assert_cmd::assert::Assert| {
        let err = stderr_of(a);
        assert!(err.contains(hashtag), "{err}");
        assert!(err.contains(header), "{err}");
        assert_eq!(err.matches("starting with #").count(), 1, "{err}");
    };
    let index = dir.path().join("idx");
    let a = relbert()
        .env("RELBERT_LOG", "info")
        .args(["index", "build", "--json", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&index)
        .assert()
        .success();
    read(&a);
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    let n = pairs_text().lines().count() as u64 + 1;
    assert_eq!(doc["pairs_read"], n, "{doc}");
    assert_eq!(index_count(&index), n);
    // The header is no pair of the index; the pair of a later line spelled like it is.
    let a = relbert()
        .args(["query", "--json", "--exact", "-k", "1000", "--index"])
        .arg(&index)
        .args(["paris", "france"])
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    let heads: Vec<&serde_json::Value> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["pair"][0] == "head")
        .collect();
    assert_eq!(heads.len(), 1, "{doc}");
    assert_eq!(heads[0]["label"], "part", "{doc}");
    let a = relbert()
        .env("RELBERT_LOG", "info")
        .args(["index", "add", "--json", "--index"])
        .arg(&index)
        .arg("--pairs")
        .arg(&pairs)
        .assert()
        .success();
    read(&a);
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(doc["already_in_index"], n, "{doc}");
    let a = embed(&pairs)
        .env("RELBERT_LOG", "info")
        .arg("--out")
        .arg(dir.path().join("v.npy"))
        .assert()
        .success();
    read(&a);
    let listed = std::fs::read_to_string(dir.path().join("v.pairs.tsv")).unwrap();
    assert_eq!(listed.lines().count() as u64, n + 1, "{listed}");
}

/// Found by a review: a word made only of characters the tokenizer deletes though they are
/// no format characters (a combining accent U+0301 alone, U+FE0F alone, U+FFFD) passed the
/// empty-word check, and every pair holding one was encoded as the prompt of an empty word,
/// one vector for all. Such a word is an empty word wherever words are read: a pair file
/// (`embed`, `index build`), a query's arguments, a query stream's line and `relbert serve`.
#[test]
fn a_word_the_tokenizer_deletes_is_an_empty_word_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let index = common::tiny_index(&pair_file(dir.path(), "p.tsv"), &dir.path().join("idx"));
    let gone = ["\u{301}", "\u{fe0f}", "\u{fffd}"];
    let pairs = dir.path().join("v.tsv");
    for w in gone {
        std::fs::write(&pairs, format!("paris\tfrance\nparis\t{w}\n")).unwrap();
        let says = predicate::str::contains("v.tsv:2: empty word");
        embed(&pairs).assert().failure().stderr(says.clone());
        build(&pairs, &dir.path().join("v-idx"), &[])
            .failure()
            .stderr(says);
        let a = relbert()
            .args(["query", "--index"])
            .arg(&index)
            .args(["paris", w])
            .assert()
            .code(2);
        let err = stderr_of(&a);
        assert!(
            err.contains("a word of the query pair is empty"),
            "{w:?}: {err}"
        );
    }
    let lines: String = gone.iter().map(|w| format!("paris\t{w}\n")).collect();
    let a = relbert()
        .args(["query", "--json", "-k", "2", "--index"])
        .arg(&index)
        .write_stdin(format!("{lines}paris\tfrance\n"))
        .assert()
        .code(1);
    let docs: Vec<serde_json::Value> = String::from_utf8_lossy(&a.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 4, "{docs:?}");
    for d in &docs[..3] {
        assert!(d["error"].as_str().unwrap().contains("empty"), "{d}");
    }
    assert!(docs[3]["results"].is_array(), "{}", docs[3]);

    let (mut child, _err, addr) = common::spawn_serve(&index, "warn");
    let ready = common::ready_within(&addr, std::time::Duration::from_secs(60));
    let answers: Vec<Option<String>> = gone
        .iter()
        .map(|w| {
            let body = serde_json::json!({"pair": ["paris", w]}).to_string();
            common::http_post(&addr, "/v1/query", &body)
        })
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "relbert serve did not get ready");
    for (w, answer) in gone.iter().zip(answers) {
        let answer = answer.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 422") && answer.contains("a word is empty"),
            "{w:?}: {answer}"
        );
    }
}

/// Found by a review: `embed` named empty standard input `-` ("-: no pairs to embed") where
/// its other errors name it `<stdin>`.
#[test]
fn embed_names_empty_standard_input_as_its_other_errors_do() {
    relbert()
        .args(["embed", "--model"])
        .arg(fixture("tiny-bert"))
        .args(["--pairs", "-"])
        .write_stdin("")
        .assert()
        .failure()
        .stderr(predicate::str::ends_with(
            "error: <stdin>: no pairs to embed\n",
        ));
}

/// Found by a review: the docs promised that a prompt whose cut would lose the mask is
/// refused, but only mask pooling refuses it; the other poolings encode it cut, as the
/// reference does. Such a prompt is now warned of, naming the first pair's file and line,
/// and still refused with `--aggregation mask`.
#[test]
fn a_prompt_cut_past_its_mask_is_warned_of_or_refused_by_mask_pooling() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("short.tsv");
    std::fs::write(&pairs, "dog\tpuppy\ncat\tkitten\n").unwrap();
    // Both words first, then template text past the 64-token limit, then the mask.
    let template = format!("<subj> is to <obj> as {}<mask>", "and so on ".repeat(40));
    let a = embed(&pairs)
        .args(["--template", &template])
        .assert()
        .success();
    let err = stderr_of(&a);
    assert!(
        err.contains("short.tsv:1: the prompt of (\"dog\", \"puppy\")")
            && err.contains("takes the mask token too (and 1 more such pair(s))")
            && err.contains("average_no_mask pooling"),
        "{err}"
    );
    assert_eq!(
        String::from_utf8_lossy(&a.get_output().stdout)
            .lines()
            .count(),
        2
    );
    embed(&pairs)
        .args(["--template", &template, "--aggregation", "mask"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("short.tsv:1"));
    // The mask kept, the cut in template text after it: no warning.
    let template = format!("<subj> is to <obj> as <mask> {}", "and so on ".repeat(40));
    let a = embed(&pairs)
        .args(["--template", &template])
        .assert()
        .success();
    assert!(!stderr_of(&a).contains("mask token"), "{}", stderr_of(&a));
}
