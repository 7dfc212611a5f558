//! What an index's vectors are tied to, end to end: the model's weights (by content, not by
//! file date), its tokenizer and config, and for the default index the vocabulary it was
//! built from; and the messages of an index that cannot be used as asked. One test per
//! defect an audit found.
#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::{fixture, pair_file};

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn");
    c.env_remove("RELBERT_MODEL");
    c.env_remove("RELBERT_INDEX");
    c.env_remove("RELBERT_VOCAB");
    c
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

fn json_out(a: &assert_cmd::assert::Assert) -> serde_json::Value {
    serde_json::from_slice(&a.get_output().stdout).unwrap()
}

/// `relbert index info --json` of an index.
fn info(index: &Path) -> serde_json::Value {
    let a = relbert()
        .args(["index", "info", "--json"])
        .arg(index)
        .assert()
        .success();
    json_out(&a)
}

/// A change to a model's config.json and tokenizer.json documents.
type Edit<'a> = &'a dyn Fn(&mut serde_json::Value, &mut serde_json::Value);

/// A copy of the tiny BERT fixture at `dir/name`, with `edit` applied to its config.json and
/// tokenizer.json documents (`None`: the files copied byte for byte).
fn model_copy(dir: &Path, name: &str, edit: Option<Edit<'_>>) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    for e in std::fs::read_dir(fixture("tiny-bert")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), out.join(e.file_name())).unwrap();
    }
    if let Some(edit) = edit {
        let read = |f: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(out.join(f)).unwrap()).unwrap()
        };
        let (mut config, mut tokenizer) = (read("config.json"), read("tokenizer.json"));
        edit(&mut config, &mut tokenizer);
        // Written in another layout than the fixture's: that alone changes nothing.
        std::fs::write(out.join("config.json"), config.to_string()).unwrap();
        std::fs::write(
            out.join("tokenizer.json"),
            serde_json::to_string_pretty(&tokenizer).unwrap(),
        )
        .unwrap();
    }
    out
}

/// A vocabulary folder `dir/name` holding the test pairs whose first word is in `heads`.
fn vocab(dir: &Path, name: &str, heads: &[&str]) -> PathBuf {
    let v = dir.join(name);
    std::fs::create_dir_all(&v).unwrap();
    let all = std::fs::read_to_string(pair_file(dir)).unwrap();
    let kept: String = all
        .lines()
        .filter(|l| {
            l.split('\t')
                .next()
                .is_some_and(|h| heads.contains(&h) && !l.starts_with('#'))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(v.join("pairs.tsv"), kept).unwrap();
    v
}

/// `relbert query --json A B` on the default index at `index`, with `model` and `vocab` as
/// the default model and vocabulary.
fn default_query(index: &Path, model: &Path, vocab: &Path, pair: [&str; 2]) -> Command {
    let mut c = relbert();
    c.env("RELBERT_INDEX", index)
        .env("RELBERT_MODEL", model)
        .env("RELBERT_VOCAB", vocab)
        .args(["query", "--json", "-k", "3", pair[0], pair[1]]);
    c
}

fn weights_sha(index: &Path) -> String {
    info(index)["encoder"]["weights_sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Found by an audit: new default-model weights with an older file date than the default
/// index were not noticed (the hash was skipped whenever the weights file was older than the
/// index): stored pairs were answered from the old model's vectors, and encoded ones refused.
/// Weights copied in with their dates kept (`cp -p`, `rsync -a`, `tar x`) are new weights.
#[test]
fn new_default_weights_with_an_old_date_make_the_default_index_stale() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_copy(dir.path(), "model", None);
    let v = vocab(dir.path(), "vocab", &["paris", "dog", "cat", "hot", "pen"]);
    let index = dir.path().join("default");
    let first = default_query(&index, &model, &v, ["paris", "france"])
        .assert()
        .success();
    assert!(stderr(&first).contains("Building"), "{}", stderr(&first));
    let old_sha = weights_sha(&index);
    // Other weights of the same shapes, put in place with a date long before the index's.
    let w = model.join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let n = bytes.len();
    for i in (n - 40_000..n - 4).step_by(64) {
        bytes[i] ^= 1;
    }
    let staged = dir.path().join("new.safetensors");
    std::fs::write(&staged, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
        .unwrap();
    std::fs::rename(&staged, &w).unwrap();
    let a = default_query(&index, &model, &v, ["paris", "france"])
        .assert()
        .success();
    let err = stderr(&a);
    assert!(err.contains("stale") && err.contains("weights"), "{err}");
    assert_ne!(weights_sha(&index), old_sha, "rebuilt with the new weights");
    assert_eq!(weights_sha(&dir.path().join("default.stale")), old_sha);
    // A pair the index does not hold is encoded with the new model, not refused.
    let a = default_query(&index, &model, &v, ["lion", "cub"])
        .assert()
        .success();
    assert_eq!(json_out(&a)["source"], "encoded");
    assert!(!stderr(&a).contains("Building"), "{}", stderr(&a));
}

/// Found by an audit: a default index stayed in use after `$RELBERT_VOCAB` named another
/// vocabulary, answering from the old one's pairs without a word. It is stale now, moved
/// aside and rebuilt with a note saying why, and swapped back when the vocabulary is.
#[test]
fn another_default_vocabulary_makes_the_default_index_stale() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("tiny-bert");
    let first = vocab(dir.path(), "first", &["paris", "dog", "cat"]);
    let second = vocab(dir.path(), "second", &["tokyo", "wheel", "hot"]);
    let index = dir.path().join("default");
    let a = default_query(&index, &model, &first, ["paris", "france"])
        .assert()
        .success();
    assert_eq!(json_out(&a)["source"], "index");
    let a = default_query(&index, &model, &second, ["tokyo", "japan"])
        .assert()
        .success();
    let err = stderr(&a);
    assert!(
        err.contains("stale") && err.contains("vocabulary") && err.contains("Building"),
        "{err}"
    );
    assert_eq!(json_out(&a)["source"], "index", "the new vocabulary's pair");
    let a = default_query(&index, &model, &second, ["paris", "france"])
        .assert()
        .success();
    assert_eq!(json_out(&a)["source"], "encoded", "no pair of the old one");
    assert!(!stderr(&a).contains("Building"));
    // Back to the first vocabulary: the index kept aside is swapped in, nothing encoded.
    let a = default_query(&index, &model, &first, ["paris", "france"])
        .assert()
        .success();
    let err = stderr(&a);
    assert!(
        err.contains("back in use") && !err.contains("Building"),
        "{err}"
    );
    assert_eq!(json_out(&a)["source"], "index");
    // The same pairs in another folder are the same vocabulary.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(first.join("pairs.tsv"), copy.join("renamed.tsv")).unwrap();
    let a = default_query(&index, &model, &copy, ["paris", "france"])
        .assert()
        .success();
    assert!(stderr(&a).is_empty(), "{}", stderr(&a));
}

/// A default index relbert has no record of (built before records were kept) is not
/// rebuilt: at `$RELBERT_INDEX` it may be the user's own index, so it is used as it is.
/// Simulated by removing the record.
#[test]
fn a_default_index_without_a_record_is_used_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("tiny-bert");
    let first = vocab(dir.path(), "first", &["paris", "dog", "cat"]);
    let second = vocab(dir.path(), "second", &["tokyo", "wheel", "hot"]);
    let index = dir.path().join("default");
    default_query(&index, &model, &first, ["paris", "france"])
        .assert()
        .success();
    let record = dir.path().join("default.relbert.json");
    assert!(record.is_file());
    std::fs::remove_file(&record).unwrap();
    let id = info(&index)["id"].clone();
    for v in [&first, &second] {
        let a = default_query(&index, &model, v, ["paris", "france"])
            .assert()
            .success();
        assert!(!stderr(&a).contains("Building"), "{}", stderr(&a));
        assert_eq!(json_out(&a)["source"], "index");
        assert_eq!(info(&index)["id"], id);
    }
}

fn lowercase(_: &mut serde_json::Value, t: &mut serde_json::Value) {
    t["normalizer"]["lowercase"] = serde_json::json!(true);
}

fn layer_norm_eps(c: &mut serde_json::Value, _: &mut serde_json::Value) {
    c["layer_norm_eps"] = serde_json::json!(0.5);
}

/// Found by an audit: a model of the same weights but another tokenizer (a lower-casing
/// normalizer) or config (`layer_norm_eps`) was accepted for an index, by `query` (other
/// vectors, no refusal) and by `index add` (rows of another function written into the index
/// for good). Both are refused now, and an identical copy of the model is accepted.
#[test]
fn a_model_with_another_tokenizer_or_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("idx");
    relbert()
        .args(["index", "build", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(pair_file(dir.path()))
        .arg("--out")
        .arg(&index)
        .assert()
        .success();
    let new = dir.path().join("new.tsv");
    std::fs::write(&new, "lion\tcub\n").unwrap();
    let count = || info(&index)["count"].as_u64().unwrap();
    let before = count();
    let edits: [(&str, Edit<'_>); 2] = [("tok", &lowercase), ("cfg", &layer_norm_eps)];
    for (name, edit) in edits {
        let model = model_copy(dir.path(), name, Some(edit));
        let a = relbert()
            .args(["query", "--index"])
            .arg(&index)
            .arg("--model")
            .arg(&model)
            .args(["lion", "cub"])
            .assert()
            .failure();
        let err = stderr(&a);
        assert!(err.contains("another encoder"), "{name}: {err}");
        let a = relbert()
            .args(["index", "add", "--index"])
            .arg(&index)
            .arg("--pairs")
            .arg(&new)
            .arg("--model")
            .arg(&model)
            .assert()
            .failure();
        assert!(
            stderr(&a).contains("another encoder"),
            "{name}: {}",
            stderr(&a)
        );
        assert_eq!(count(), before, "{name}: nothing added");
    }
    // The same files (and the same documents in another layout) are the same model.
    let same = model_copy(dir.path(), "same", None);
    let reformatted = model_copy(dir.path(), "reformatted", Some(&|_, _| {}));
    for model in [&same, &reformatted] {
        relbert()
            .args(["query", "--index"])
            .arg(&index)
            .arg("--model")
            .arg(model)
            .args(["lion", "cub"])
            .assert()
            .success();
    }
    relbert()
        .args(["index", "add", "--index"])
        .arg(&index)
        .arg("--pairs")
        .arg(&new)
        .arg("--model")
        .arg(&reformatted)
        .assert()
        .success();
    assert_eq!(count(), before + 1);
    // `index info` shows the digest on its own; the aggregation reads as it always did.
    let doc = info(&index);
    assert_eq!(doc["encoder"]["aggregation"], "average_no_mask");
    assert_eq!(
        doc["encoder"]["tokenizer_config"].as_str().map(str::len),
        Some(16),
        "{doc}"
    );
}

/// A default model whose tokenizer changed makes the default index stale, and the note
/// names what changed.
#[test]
fn another_default_tokenizer_makes_the_default_index_stale() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_copy(dir.path(), "model", None);
    let v = vocab(dir.path(), "vocab", &["paris", "dog", "cat"]);
    let index = dir.path().join("default");
    default_query(&index, &model, &v, ["paris", "france"])
        .assert()
        .success();
    let t = model.join("tokenizer.json");
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&t).unwrap()).unwrap();
    lowercase(&mut serde_json::Value::Null, &mut doc);
    std::fs::write(&t, doc.to_string()).unwrap();
    let a = default_query(&index, &model, &v, ["paris", "france"])
        .assert()
        .success();
    let err = stderr(&a);
    assert!(
        err.contains("stale") && err.contains("tokenizer/config"),
        "{err}"
    );
}

/// An index written before the tokenizer and config were part of its recorded function
/// (its aggregation has no `+files:` part; written here through the library the way older
/// relbert wrote it) is still accepted, for queries and for `index add`, and as the default
/// index.
#[test]
fn an_index_recorded_before_the_tokenizer_digest_is_still_accepted() {
    use relbert::indexing::encoder_info;
    use relbert_index::{HnswParams, IndexBuilder, IndexSpec, PairEntry, Precision};
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("tiny-bert");
    let v = vocab(dir.path(), "vocab", &["paris", "dog", "cat"]);
    let records = relbert::pairs::read_pairs(&v.join("pairs.tsv")).unwrap();
    let encoder =
        relbert::RelationEncoder::load(&model, &relbert::EncoderOptions::default()).unwrap();
    let mut identity = encoder.identity().unwrap();
    identity.files_digest = None;
    let index = dir.path().join("default");
    let spec = IndexSpec {
        dim: encoder.dim() as u32,
        precision: Precision::F32,
        encoder: encoder_info(&identity),
        input: "test".into(),
    };
    assert!(!spec.encoder.aggregation.contains("files"));
    let mut b = IndexBuilder::create_or_resume(&index, spec, false).unwrap();
    let pairs: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.head.as_str(), r.tail.as_str()))
        .collect();
    let vectors: Vec<f32> = encoder.embed(&pairs).unwrap().concat();
    let entries: Vec<PairEntry> = records
        .iter()
        .map(|r| PairEntry {
            head: r.head.clone(),
            tail: r.tail.clone(),
            label: r.label.clone(),
        })
        .collect();
    b.append_chunk(&entries, &vectors).unwrap();
    b.finish(HnswParams::default(), |_| {}).unwrap();
    assert_eq!(
        info(&index)["encoder"]["tokenizer_config"],
        serde_json::Value::Null
    );

    // As the default index of the same model: neither stale nor rebuilt.
    let a = default_query(&index, &model, &v, ["lion", "cub"])
        .assert()
        .success();
    assert!(stderr(&a).is_empty(), "{}", stderr(&a));
    assert_eq!(json_out(&a)["source"], "encoded");
    // Queried and grown with the model by name.
    relbert()
        .args(["query", "--index"])
        .arg(&index)
        .arg("--model")
        .arg(&model)
        .args(["lion", "cub"])
        .assert()
        .success();
    let new = dir.path().join("new.tsv");
    std::fs::write(&new, "lion\tcub\n").unwrap();
    relbert()
        .args(["index", "add", "--index"])
        .arg(&index)
        .arg("--pairs")
        .arg(&new)
        .assert()
        .success();
}

/// Found by an audit: four messages that did not say what was wrong or what to do.
/// `index add` on an index holding a file of the user's spoke of `--force`, which add does
/// not have; a query of an index whose model moved said "invalid value for --model" when no
/// --model was given; `query --index` on a directory that is no index, or on an unfinished
/// `DIR.partial`, said only "meta: No such file or directory"; `index add` of an index still
/// being built (only `DIR.partial` there) said only "No such file or directory".
#[test]
fn an_index_that_cannot_be_used_says_why_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_copy(dir.path(), "model", None);
    let index = dir.path().join("idx");
    relbert()
        .args(["index", "build", "--model"])
        .arg(&model)
        .arg("--pairs")
        .arg(pair_file(dir.path()))
        .arg("--out")
        .arg(&index)
        .assert()
        .success();
    let new = dir.path().join("new.tsv");
    std::fs::write(&new, "lion\tcub\n").unwrap();
    let add = |index: &Path| {
        let mut c = relbert();
        c.args(["index", "add", "--index"])
            .arg(index)
            .arg("--pairs")
            .arg(&new);
        c
    };

    std::fs::write(index.join("notes.txt"), "mine").unwrap();
    let err = stderr(&add(&index).assert().failure());
    assert!(
        err.contains("notes.txt") && err.contains("move") && !err.contains("--force"),
        "{err}"
    );
    std::fs::remove_file(index.join("notes.txt")).unwrap();

    let moved = dir.path().join("moved");
    std::fs::rename(&model, &moved).unwrap();
    let query = |extra: &[&str]| {
        let mut c = relbert();
        c.args(["query", "--index"]).arg(&index).args(extra);
        c.args(["lion", "cub"]);
        c
    };
    for err in [
        stderr(&query(&[]).assert().failure()),
        stderr(&add(&index).assert().failure()),
    ] {
        assert!(
            !err.contains("invalid value for --model")
                && !err.contains("(--model)")
                && err.contains("not there")
                && err.contains(&model.display().to_string())
                && err.contains("RELBERT_MODEL"),
            "{err}"
        );
    }
    // Both ways it names work.
    query(&["--model", moved.to_str().unwrap()])
        .assert()
        .success();
    query(&[]).env("RELBERT_MODEL", &moved).assert().success();

    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let err = stderr(
        &relbert()
            .args(["query", "--index"])
            .arg(&plain)
            .args(["lion", "cub"])
            .assert()
            .failure(),
    );
    assert!(err.contains("not a relbert index"), "{err}");

    let building = dir.path().join("k");
    let partial = dir.path().join("k.partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("checkpoint"), b"").unwrap();
    let err = stderr(
        &relbert()
            .args(["query", "--index"])
            .arg(&partial)
            .args(["lion", "cub"])
            .assert()
            .failure(),
    );
    assert!(err.contains("unfinished build"), "{err}");
    let err = stderr(&add(&building).assert().failure());
    assert!(
        err.contains("k.partial") && err.contains("unfinished build"),
        "{err}"
    );
}

/// Found by an audit: the note of a default index made stale by another default model named
/// the index's model on both sides (`tokenizer/config X of OLD, not Y of OLD`), since the
/// model found now was described with the index's model path and weights. Each side names
/// its own model now, and "same weights" is said only when they are.
#[test]
fn a_stale_default_index_names_the_model_now_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let old = model_copy(dir.path(), "old", None);
    let v = vocab(dir.path(), "vocab", &["paris", "dog", "cat"]);
    let index = dir.path().join("default");
    default_query(&index, &old, &v, ["paris", "france"])
        .assert()
        .success();
    let real = |p: &Path| std::fs::canonicalize(p).unwrap().display().to_string();
    // Same weights, another tokenizer.
    let same = model_copy(dir.path(), "same", Some(&lowercase));
    let a = default_query(&index, &same, &v, ["paris", "france"])
        .assert()
        .success();
    let err = stderr(&a);
    let expected = format!("of {}, not", real(&same));
    assert!(
        err.contains("tokenizer/config") && err.contains(&expected),
        "{err}"
    );
    assert!(
        err.contains(&format!("of {} (same weights", real(&old))),
        "{err}"
    );
    // Other weights and another config than the index's (now `same`'s): both models named,
    // and no "same weights".
    let other = model_copy(dir.path(), "other", Some(&layer_norm_eps));
    let w = other.join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let n = bytes.len();
    for i in (n - 40_000..n - 4).step_by(64) {
        bytes[i] ^= 1;
    }
    std::fs::write(&w, &bytes).unwrap();
    let a = default_query(&index, &other, &v, ["paris", "france"])
        .assert()
        .success();
    let err = stderr(&a);
    assert!(
        err.contains(&format!("model {} (weights sha256", real(&other)))
            && err.contains(&format!("of {}, not", real(&other))),
        "{err}"
    );
    assert!(!err.contains("same weights"), "{err}");
}

/// `relbert index build` of the fixture pairs with tiny-bert into `index`, replacing it, at
/// `dtype`.
fn build_at(pairs: &Path, index: &Path, dtype: &str) {
    relbert()
        .args(["index", "build", "--force", "--dtype", dtype, "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(pairs)
        .arg("--out")
        .arg(index)
        .assert()
        .success();
}

/// `relbert query --index INDEX --json --exact A B [EXTRA]`'s results and scores.
fn scores(index: &Path, pair: [&str; 2], extra: &[&str]) -> Vec<(serde_json::Value, f64)> {
    let a = relbert()
        .args(["query", "--json", "--exact", "--index"])
        .arg(index)
        .args(pair)
        .args(extra)
        .assert()
        .success();
    common::scored_results(&json_out(&a))
}

/// Found by an audit: after `index build --force --dtype bf16` over a float32 index, a
/// running `relbert query` stream answered from the new index but kept encoding pairs it
/// does not hold at float32, with no note. Without `--dtype` it now encodes at the new
/// index's format, saying so; with `--dtype` the format stays, with the start-up note.
#[test]
fn a_query_stream_follows_a_replaced_index_s_number_format() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let pairs = pair_file(dir.path());
    let index = dir.path().join("idx");
    // Not in the index: encoded on every ask.
    let pair = ["lion", "cub"];
    let close = |a: &[(serde_json::Value, f64)], b: &[(serde_json::Value, f64)]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|((p, s), (q, t))| p == q && (s - t).abs() < 1e-6)
    };
    for (flag, logs) in [
        (&[][..], "encoded at bf16 from now on"),
        (
            &["--dtype", "f32"][..],
            "built at bf16 and queries are encoded at f32",
        ),
    ] {
        build_at(&pairs, &index, "f32");
        let log = dir.path().join("stream.log");
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("relbert"))
            .env("RELBERT_LOG", "info")
            .args(["query", "--json", "--exact", "--index"])
            .arg(&index)
            .args(flag)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let mut output = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut ask = || {
            writeln!(input, "{}\t{}", pair[0], pair[1]).unwrap();
            input.flush().unwrap();
            let mut line = String::new();
            output.read_line(&mut line).unwrap();
            let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(doc["source"], "encoded", "{doc}");
            common::scored_results(&doc)
        };
        let before = ask();
        assert!(close(&before, &scores(&index, pair, &[])));
        build_at(&pairs, &index, "bf16");
        let after = ask();
        drop(input);
        assert!(child.wait().unwrap().success());
        let err = std::fs::read_to_string(&log).unwrap();
        assert!(err.contains("changed: now answering"), "{err}");
        // What a query started now answers: at the index's format without --dtype, at the
        // flag's with it. The two differ, or the test could not tell them apart.
        let (bf16, f32) = (
            scores(&index, pair, &[]),
            scores(&index, pair, &["--dtype", "f32"]),
        );
        assert!(!close(&bf16, &f32), "{bf16:?} {f32:?}");
        let want = if flag.is_empty() { &bf16 } else { &f32 };
        assert!(close(&after, want), "{flag:?}: {after:?} {want:?}\n{err}");
        assert!(err.contains(logs), "{flag:?}: {err}");
    }
}
