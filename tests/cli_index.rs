//! End-to-end tests of `relbert index build|rebuild|info` and `relbert query` on the tiny fixture model.
#![cfg(feature = "cli")]

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::{fixture, pair_file};

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn");
    c
}

fn build(dir: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    build_with(&fixture("tiny-bert"), dir, out, extra)
}

fn build_with(model: &Path, dir: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    relbert()
        .args(["index", "build", "--model"])
        .arg(model)
        .arg("--pairs")
        .arg(pair_file(dir))
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
}

/// `relbert index info --json` of an index.
fn info(index: &Path) -> serde_json::Value {
    let a = relbert()
        .args(["index", "info", "--json"])
        .arg(index)
        .assert()
        .success();
    serde_json::from_slice(&a.get_output().stdout).unwrap()
}

/// The exact top 5 for (lion, cub), a pair no test vocabulary stores.
fn lion_cub(index: &Path) -> serde_json::Value {
    let a = relbert()
        .args(["query", "--json", "-k", "5", "--exact", "--index"])
        .arg(index)
        .args(["lion", "cub"])
        .assert()
        .success();
    serde_json::from_slice(&a.get_output().stdout).unwrap()
}

#[test]
fn build_info_and_query() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    build(dir.path(), &out, &[]).success();
    assert!(!dir.path().join("idx.partial").exists());

    let info = relbert()
        .args(["index", "info", "--json", "--verify"])
        .arg(&out)
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&info.get_output().stdout).unwrap();
    assert_eq!(doc["dim"], 32);
    assert_eq!(doc["encoder"]["aggregation"], "average_no_mask");
    let count = doc["count"].as_u64().unwrap();
    assert!(count > 50);

    // A stored pair: its own row and pairs sharing a word are excluded; exact and HNSW agree.
    let q = |extra: &[&str]| -> serde_json::Value {
        let a = relbert()
            .args(["query", "--json", "-k", "5", "--index"])
            .arg(&out)
            .args(["paris", "france"])
            .args(extra)
            .assert()
            .success();
        serde_json::from_slice(&a.get_output().stdout).unwrap()
    };
    let hnsw = q(&[]);
    let exact = q(&["--exact"]);
    assert_eq!(hnsw["source"], "index");
    assert_eq!(hnsw["results"], exact["results"]);
    let results = hnsw["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for r in results {
        let p = r["pair"].as_array().unwrap();
        for w in p {
            assert!(w != "paris" && w != "france", "shared word kept: {r}");
        }
    }
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    let kept = q(&["--keep-shared-words"]);
    assert!(kept["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["pair"] != serde_json::json!(["paris", "france"])));
}

#[test]
fn query_takes_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    build(dir.path(), &out, &[]).success();
    let q = |device: &str| {
        relbert()
            .args([
                "query", "--json", "-k", "5", "--exact", "--device", device, "--index",
            ])
            .arg(&out)
            .args(["lion", "cub"])
            .assert()
    };
    let cpu = q("cpu").success();
    let doc: serde_json::Value = serde_json::from_slice(&cpu.get_output().stdout).unwrap();
    assert_eq!(doc["source"], "encoded");
    assert_eq!(doc, lion_cub(&out));
    // A device this build cannot use (or a misspelt one) is named as the flag's error.
    for bad in ["gpu", "cuda:x"] {
        let a = q(bad).failure();
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(err.contains("--device"), "{bad}: {err}");
    }
    if !cfg!(feature = "cuda") {
        let a = q("cuda:0").failure();
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(err.contains("--device") && err.contains("cuda"), "{err}");
    }
}

#[test]
fn collection_flags_beside_a_local_target_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    // Each would be ignored by a local build, export or query: refused instead, naming it.
    for (extra, flag) in [
        (&["--qdrant", "http://127.0.0.1:1"][..], "--qdrant"),
        (&["--shards", "2"][..], "--shards"),
        (&["--replication", "2"][..], "--replication"),
        (&["--quantization", "none"][..], "--quantization"),
    ] {
        let a = build(dir.path(), &out, extra).failure();
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(err.contains(flag) && err.contains("--out"), "{err}");
        assert!(!out.exists() && !dir.path().join("idx.partial").exists());
    }
    build(dir.path(), &out, &[]).success();
    let a = relbert()
        .args(["query", "--qdrant", "http://127.0.0.1:1", "--index"])
        .arg(&out)
        .args(["lion", "cub"])
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("--qdrant") && err.contains("--index"), "{err}");
}

#[test]
fn stream_mode_answers_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    build(dir.path(), &out, &[]).success();
    let a = relbert()
        .args(["query", "--json", "-k", "3", "--index"])
        .arg(&out)
        .write_stdin("dog\tpuppy\nnot-a-pair\nlion:cub\nocean sea\n")
        .assert()
        // Every line is answered; the status says one could not be.
        .code(1)
        .stderr(predicates::str::contains("1 of 4 query lines"));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&a.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["source"], "index");
    assert!(lines[1]["error"].as_str().unwrap().contains("two words"));
    assert_eq!(lines[2]["source"], "encoded");
    assert_eq!(lines[2]["results"].as_array().unwrap().len(), 3);
    assert_eq!(lines[3]["query"], serde_json::json!(["ocean", "sea"]));
}

#[test]
fn existing_index_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    build(dir.path(), &out, &[]).success();
    let before = std::fs::read(out.join("meta")).unwrap();
    build(dir.path(), &out, &[])
        .failure()
        .stderr(predicates::str::contains("--force"));
    assert_eq!(std::fs::read(out.join("meta")).unwrap(), before);
    build(dir.path(), &out, &["--force", "--f16"]).success();
    let doc = info(&out);
    assert_eq!(doc["precision"], "f16");
}

/// Found by an audit: a `*.tmp` file of the user's in an index directory (`notes.tmp`) passed
/// as relbert's own temporary file, so `index build --force`, `index rebuild --force` and
/// `index add` replaced the directory and deleted it. Each is refused now, naming the file,
/// which stays as it was, and so does the index.
#[test]
fn a_users_tmp_file_in_an_index_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    build(dir.path(), &out, &[]).success();
    let notes = out.join("notes.tmp");
    std::fs::write(&notes, "two weeks of notes\n").unwrap();
    let meta = std::fs::read(out.join("meta")).unwrap();
    let kept = |a: assert_cmd::assert::Assert| {
        let err = String::from_utf8_lossy(&a.failure().get_output().stderr).into_owned();
        assert!(err.contains("notes.tmp"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&notes).unwrap(),
            "two weeks of notes\n"
        );
        assert_eq!(std::fs::read(out.join("meta")).unwrap(), meta);
        assert!(!dir.path().join("idx.partial").exists());
    };
    kept(build(dir.path(), &out, &["--force"]));
    kept(
        relbert()
            .args(["index", "rebuild", "--index"])
            .arg(&out)
            .arg("--out")
            .arg(&out)
            .args(["--force", "--f16"])
            .assert(),
    );
    let more = dir.path().join("more.tsv");
    std::fs::write(&more, "ocean\tsea\nlion\tcub\n").unwrap();
    kept(
        relbert()
            .args(["index", "add", "--index"])
            .arg(&out)
            .arg("--pairs")
            .arg(&more)
            .assert(),
    );
    // Moved out, the same commands go through.
    std::fs::remove_file(&notes).unwrap();
    relbert()
        .args(["index", "add", "--index"])
        .arg(&out)
        .arg("--pairs")
        .arg(&more)
        .assert()
        .success();
    build(dir.path(), &out, &["--force"]).success();
}

#[test]
fn rebuild_changes_precision_and_graph_without_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("idx");
    build(dir.path(), &src, &[]).success();
    let out = dir.path().join("idx16");
    let rebuild = |extra: &[&str]| {
        relbert()
            .args(["index", "rebuild", "--index"])
            .arg(&src)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .assert()
    };
    // An --m above the source's ef_construction raises it, saying so (audit s21: silent,
    // where `build` refuses the same values); --ef-construction chooses it.
    for (extra, ef) in [
        (&["--m", "255"][..], 255),
        (&["--m", "255", "--ef-construction", "300"], 300),
    ] {
        let a = relbert()
            .env("RELBERT_LOG", "info")
            .args(["index", "rebuild", "--force", "--index"])
            .arg(&src)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .assert()
            .success();
        let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        assert_eq!(err.contains("raised to --m 255"), ef == 255, "{err}");
        assert_eq!(info(&out)["hnsw"]["ef_construction"], ef);
    }
    rebuild(&["--f16", "--m", "8", "--force"]).success();
    let (a, b) = (info(&src), info(&out));
    assert_eq!(b["precision"], "f16");
    assert_eq!(b["hnsw"]["m"], 8);
    assert_eq!(b["hnsw"]["ef_construction"], a["hnsw"]["ef_construction"]);
    assert_eq!(b["count"], a["count"]);
    assert_eq!(b["encoder"], a["encoder"]);
    // Queries still encode with the model the vectors came from, and find the same pairs up to
    // f16 rounding: each of the rebuilt index's top 5 is among the source's top 8, with the
    // same score to 2e-3 (near-ties of the tiny model may swap places).
    let exact = |index: &Path, k: &str| {
        let a = relbert()
            .args(["query", "--json", "--exact", "-k", k, "--index"])
            .arg(index)
            .args(["lion", "cub"])
            .assert()
            .success();
        common::scored_results(&serde_json::from_slice(&a.get_output().stdout).unwrap())
    };
    let (got, want) = (exact(&out, "5"), exact(&src, "8"));
    assert_eq!(got.len(), 5);
    for (pair, score) in &got {
        let same = want.iter().find(|(p, _)| p == pair);
        assert!(
            same.is_some_and(|(_, s)| (s - score).abs() < 2e-3),
            "{pair} {score}: not in {want:?}"
        );
    }

    let before = std::fs::read(out.join("graph")).unwrap();
    rebuild(&["--f32"])
        .failure()
        .stderr(predicates::str::contains("--force"));
    assert_eq!(std::fs::read(out.join("graph")).unwrap(), before);
    rebuild(&["--f32", "--force"]).success();
    assert_eq!(info(&out)["precision"], "f32");
    assert_eq!(info(&out)["hnsw"]["m"], 16);
}

#[test]
fn an_index_keeps_the_offset_weight_it_was_built_with() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::fixture_with_offset_weight("tiny-bert", dir.path(), Some(0.5));
    let out = dir.path().join("idx");
    build_with(&model, dir.path(), &out, &[]).success();
    let doc = info(&out);
    assert_eq!(doc["dim"], 64, "prompt and offset halves");
    // Each part in its own field, named and spelled as `bench --json` gives them (audit L:
    // `average_no_mask+offset:0.5` had to be taken apart by the client).
    assert_eq!(doc["encoder"]["aggregation"], "average_no_mask", "{doc}");
    assert_eq!(doc["encoder"]["offset_weight"], 0.5, "{doc}");
    assert_eq!(doc["encoder"]["dtype"], "f32", "{doc}");

    // An unstored pair is encoded with the index's function.
    let before = lion_cub(&out);
    assert_eq!(before["source"], "encoded");
    assert_eq!(before["results"].as_array().unwrap().len(), 5);
    // Editing the model's config afterwards does not change what the index's queries use.
    common::set_offset_weight(&model.join("config.json"), &model.join("config.json"), None);
    assert_eq!(lion_cub(&out)["results"], before["results"]);
    // The same weights without the offset build a different, narrower index.
    let plain = dir.path().join("plain");
    build_with(&model, dir.path(), &plain, &[]).success();
    assert_ne!(lion_cub(&plain)["results"], before["results"]);
}

#[test]
fn an_offset_weight_not_exact_in_binary_is_shown_as_written() {
    // 0.8 has no exact f32; widening the f32 printed 0.800000011920929 where `bench --json`
    // prints 0.8 (review R17), so a client comparing the two saw two weights.
    let dir = tempfile::tempdir().unwrap();
    let model = common::fixture_with_offset_weight("tiny-bert", dir.path(), Some(0.8));
    let out = dir.path().join("idx");
    build_with(&model, dir.path(), &out, &[]).success();
    let doc = info(&out);
    assert_eq!(doc["encoder"]["offset_weight"], 0.8, "{doc}");
}

#[test]
fn another_model_is_refused_for_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    build(dir.path(), &out, &[]).success();
    let query = |model: &str, pair: [&str; 2]| {
        relbert()
            .args(["query", "--json", "--index"])
            .arg(&out)
            .arg("--model")
            .arg(fixture(model))
            .args(pair)
            .assert()
    };
    query("tiny-roberta", ["lion", "cub"])
        .failure()
        .stderr(predicates::str::contains("another encoder"));
    // A pair the index holds is answered from its row, so the other model was ignored
    // without a word (found by a review): the index's neighbours under its name.
    let a = query("tiny-roberta", ["paris", "france"]).failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("another encoder"), "{err}");
    assert!(a.get_output().stdout.is_empty());
    // The index's own model, named, answers it from the index.
    let a = query("tiny-bert", ["paris", "france"]).success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(doc["source"], "index", "{doc}");
}

/// Found by a review: `query --model M` without `--index` built the whole default index
/// with the default model, then refused M for it. A model of other weights is refused
/// first (status 2), with nothing built; the default model's weights, named, are taken.
#[test]
fn another_model_is_refused_for_the_default_index_before_it_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let (vocab, index) = default_index_setup(dir.path());
    let query = |model: &str| {
        with_default_index(&vocab, &index, "tiny-bert")
            .args(["query", "--json", "--model"])
            .arg(fixture(model))
            .args(["paris", "france"])
            .assert()
    };
    let a = query("tiny-roberta").code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("has other weights than the default model") && err.contains("--index"),
        "{err}"
    );
    assert!(!index.exists(), "the default index was built");
    query("tiny-bert").success();
    assert!(index.join("meta").is_file());
}

#[test]
fn corrupted_index_is_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    build(dir.path(), &out, &[]).success();
    let vectors = out.join("vectors");
    let mut bytes = std::fs::read(&vectors).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&vectors, &bytes).unwrap();
    relbert()
        .args(["query", "--index"])
        .arg(&out)
        .args(["dog", "puppy"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("vectors"));
}

/// A vocabulary folder holding the test pair file, and where the default index goes, in `dir`.
fn default_index_setup(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let vocab = dir.join("vocab");
    std::fs::create_dir(&vocab).unwrap();
    std::fs::copy(pair_file(dir), vocab.join("pairs.tsv")).unwrap();
    (vocab, dir.join("default"))
}

/// relbert with the default index built from `vocab` at `index`, the fixture `model` its
/// default model.
fn with_default_index(vocab: &Path, index: &Path, model: &str) -> Command {
    let mut c = relbert();
    c.env("RELBERT_VOCAB", vocab)
        .env("RELBERT_INDEX", index)
        .env("RELBERT_MODEL", fixture(model));
    c
}

/// The number format an index's vectors were computed at (`encoder.dtype`).
fn built_dtype(index: &Path) -> String {
    info(index)["encoder"]["dtype"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn default_index_is_built_once_and_rebuilt_for_a_new_default_model() {
    let dir = tempfile::tempdir().unwrap();
    let (vocab, index) = default_index_setup(dir.path());
    let query = |model: &str| {
        with_default_index(&vocab, &index, model)
            .args(["query", "--json", "paris", "france"])
            .assert()
            .success()
    };
    let first = query("tiny-bert");
    assert!(String::from_utf8_lossy(&first.get_output().stderr).contains("Building"));
    let sha = |p: &Path| {
        info(p)["encoder"]["weights_sha256"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let bert_sha = sha(&index);
    assert_eq!(
        info(&index)["precision"],
        "f16",
        "the default index stores f16"
    );
    // Built at bf16 where this CPU has the bfloat16 kernel, at float32 elsewhere.
    assert_eq!(
        built_dtype(&index),
        relbert::Dtype::fast_cpu_default().name()
    );
    assert!(String::from_utf8_lossy(&first.get_output().stderr)
        .contains(&format!("at {}", relbert::Dtype::fast_cpu_default().name())));

    // Same default model: the index is reused as it is.
    let again = query("tiny-bert");
    assert!(!String::from_utf8_lossy(&again.get_output().stderr).contains("Building"));

    // A new default model: the old index is moved aside, not deleted, and a new one is built.
    let switched = query("tiny-roberta");
    let err = String::from_utf8_lossy(&switched.get_output().stderr).to_string();
    assert!(err.contains("stale"), "{err}");
    let aside = dir.path().join("default.stale");
    assert_eq!(sha(&aside), bert_sha);
    assert_ne!(sha(&index), bert_sha);
    let roberta_sha = sha(&index);

    // Back to the first model: the kept index is swapped in, nothing is encoded again.
    let back = query("tiny-bert");
    let err = String::from_utf8_lossy(&back.get_output().stderr).to_string();
    assert!(!err.contains("Building"), "{err}");
    assert_eq!(sha(&index), bert_sha);
    assert_eq!(sha(&aside), roberta_sha);
    let forth = query("tiny-roberta");
    assert!(!String::from_utf8_lossy(&forth.get_output().stderr).contains("Building"));
    assert_eq!(sha(&index), roberta_sha);

    // Same weights, but the model's config now combines the offset: stale too.
    let model = common::fixture_with_offset_weight("tiny-roberta", dir.path(), None);
    let query_with = |model: &Path| {
        relbert()
            .env("RELBERT_VOCAB", &vocab)
            .env("RELBERT_INDEX", &index)
            .env("RELBERT_MODEL", model)
            .args(["query", "--json", "paris", "france"])
            .assert()
            .success()
    };
    let same = query_with(&model);
    assert!(!String::from_utf8_lossy(&same.get_output().stderr).contains("Building"));
    common::set_offset_weight(
        &model.join("config.json"),
        &model.join("config.json"),
        Some(0.5),
    );
    let combined = query_with(&model);
    let err = String::from_utf8_lossy(&combined.get_output().stderr).to_string();
    assert!(err.contains("stale") && err.contains("offset:0.5"), "{err}");
    // One cache, not one more folder per switch.
    assert!(!dir.path().join("default.stale2").exists());
    assert_eq!(sha(&aside), roberta_sha);
    let doc = info(&index);
    assert_eq!(doc["dim"], 64);
}

#[test]
fn default_index_is_built_at_the_dtype_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (vocab, index) = default_index_setup(dir.path());
    relbert()
        .env("RELBERT_VOCAB", &vocab)
        .env("RELBERT_INDEX", &index)
        .env("RELBERT_MODEL", fixture("tiny-bert"))
        .args(["query", "--json", "--dtype", "f32", "paris", "france"])
        .assert()
        .success()
        .stderr(predicates::str::contains("at f32"));
    assert_eq!(built_dtype(&index), "f32");
}

/// `--graph-while-encoding on` (the GPU default, forced here on the CPU) builds the same
/// rows and a graph that answers like the exact search, at the default `--graph-priority`
/// (idle) and at the encoder's own; a bad value names the flag.
#[test]
fn graph_while_encoding_builds_the_same_index() {
    let dir = tempfile::tempdir().unwrap();
    let (on, off) = (dir.path().join("on"), dir.path().join("off"));
    let normal = dir.path().join("normal");
    build(dir.path(), &on, &["--graph-while-encoding", "on"]).success();
    build(dir.path(), &off, &["--graph-while-encoding", "off"]).success();
    build(
        dir.path(),
        &normal,
        &["--graph-while-encoding", "on", "--graph-priority", "normal"],
    )
    .success();
    assert_eq!(info(&on)["count"], info(&off)["count"]);
    // Encoding is deterministic: the same rows, whatever built the graph.
    let payload = |d: &Path| {
        let v = std::fs::read(d.join("vectors")).unwrap();
        v[64..].to_vec()
    };
    assert_eq!(payload(&on), payload(&off));
    assert_eq!(payload(&normal), payload(&off));
    let q = |index: &Path, extra: &[&str]| -> serde_json::Value {
        let a = relbert()
            .args(["query", "--json", "-k", "5", "--index"])
            .arg(index)
            .args(["paris", "france"])
            .args(extra)
            .assert()
            .success();
        serde_json::from_slice(&a.get_output().stdout).unwrap()
    };
    assert_eq!(q(&on, &[])["results"], q(&off, &["--exact"])["results"]);
    assert_eq!(q(&normal, &[])["results"], q(&off, &["--exact"])["results"]);
    for (flag, value) in [
        ("--graph-while-encoding", "gpu"),
        ("--graph-priority", "highest"),
    ] {
        let bad = build(dir.path(), &dir.path().join("bad"), &[flag, value]);
        let err = String::from_utf8_lossy(&bad.code(2).get_output().stderr).into_owned();
        assert!(err.contains(flag), "{err}");
        assert!(!dir.path().join("bad").exists());
    }
}

/// Without a terminal, a build's encoding progress came only at the end of each chunk of
/// 2,048 pairs, and its last line twice. With `RELBERT_PROGRESS_SECS=0` each report is a
/// line; one thread and batches of 8 report every 16 pairs. The model combines its vectors
/// with the word offsets, whose encoding reports from a pool thread.
#[test]
fn build_progress_comes_within_a_chunk_and_ends_once() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..300).map(|i| format!("w{i}\tv{i}\n")).collect();
    let pairs = dir.path().join("many.tsv");
    std::fs::write(&pairs, text).unwrap();
    let model = common::fixture_with_offset_weight("tiny-bert", dir.path(), Some(0.5));
    let a = relbert()
        .env("RELBERT_PROGRESS_SECS", "0")
        .args([
            "--threads",
            "1",
            "index",
            "build",
            "--batch-size",
            "8",
            "--model",
        ])
        .arg(&model)
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(dir.path().join("idx"))
        .assert()
        .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    let counts = common::progress_counts(&err, "encoding");
    assert_eq!(
        counts.iter().filter(|&&n| n == 300).count(),
        1,
        "the final line is not there once: {err}"
    );
    assert!(
        counts.iter().any(|&n| n > 0 && n < 300),
        "no line before the end: {err}"
    );
}

/// `--out -` made a directory called `-`: an index is a directory, never standard output.
#[test]
fn an_index_is_never_written_to_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("idx");
    build(dir.path(), &idx, &[]).success();
    let runs: [&[&str]; 2] = [
        &["index", "build", "--pairs", "-", "--out", "-"],
        &["index", "rebuild", "--index", "idx", "--out", "-"],
    ];
    for args in runs {
        let a = relbert()
            .current_dir(dir.path())
            .args(args)
            .write_stdin("a\tb\n")
            .assert()
            .failure();
        let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        assert!(err.contains("--out") && err.contains("directory"), "{err}");
        assert!(
            !dir.path().join("-").exists(),
            "{args:?} made a directory `-`"
        );
    }
    let a = relbert()
        .current_dir(dir.path())
        .args(["index", "add", "--index", "-", "--pairs", "-"])
        .write_stdin("a\tb\n")
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("--index"), "{err}");
}

/// An add with no new pair accepted a wrong --model, a --template or --batch-size 0 and
/// said "nothing to add"; the same flags with a new pair were refused.
#[test]
fn an_add_of_nothing_new_still_checks_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("idx");
    build(dir.path(), &idx, &[]).success();
    let add = |extra: &[&str]| {
        relbert()
            .args(["index", "add", "--index"])
            .arg(&idx)
            .arg("--pairs")
            .arg(pair_file(dir.path()))
            .args(extra)
            .assert()
    };
    let roberta = fixture("tiny-roberta");
    let bad: [(&[&str], &str); 4] = [
        (&["--model", roberta.to_str().unwrap()], "another encoder"),
        (&["--template", "<subj> and <obj> <mask>"], "template"),
        (&["--aggregation", "mask"], "aggregation"),
        (&["--batch-size", "0"], "--batch-size"),
    ];
    for (extra, says) in bad {
        let a = add(extra).failure();
        let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        assert!(err.contains(says), "{extra:?}: {err}");
        assert!(
            !String::from_utf8_lossy(&a.get_output().stdout).contains("nothing to add"),
            "{extra:?}"
        );
    }
    // The index's own model, given, and no flag at all: nothing to add.
    for extra in [
        &["--model", fixture("tiny-bert").to_str().unwrap()][..],
        &[],
    ] {
        let a = add(extra).success();
        let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
        assert!(out.contains("nothing to add"), "{extra:?}: {out}");
    }
}

/// `--threads 100000` spent minutes and gigabytes starting threads; the count is bounded by
/// 4 per core (at least 16), and the refusal names the flag.
#[test]
fn thread_counts_beyond_the_bound_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("idx");
    build(dir.path(), &idx, &[]).success();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max = (4 * cores).max(16);
    for n in [max + 1, 100_000] {
        let a = relbert()
            .args(["--threads", &n.to_string(), "index", "info"])
            .arg(&idx)
            .assert()
            .failure();
        let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        assert!(
            err.contains("--threads") && err.contains(&format!("at most {max}")),
            "{err}"
        );
    }
    relbert()
        .args(["--threads", &max.to_string(), "index", "info"])
        .arg(&idx)
        .assert()
        .success();
}

/// Found by an audit: a user's own file named `input.spool` in an index directory passed as
/// the copy of standard input relbert leaves there when killed just after publishing, by its
/// name alone, so `index build --force`, `index rebuild --force` and `index add` deleted it
/// with the index (an add with nothing new deleted it too), and `index add --pairs -` with
/// nothing on standard input read it as the pairs to add. Only a copy that begins with
/// relbert's mark is relbert's: the user's is refused by name and stays as it was.
#[test]
fn a_users_input_spool_in_an_index_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    build(dir.path(), &out, &[]).success();
    let mine = out.join("input.spool");
    // Pairs, so that it would be read as a copy of standard input if it were taken for one.
    std::fs::write(&mine, "ocean\tsea\n").unwrap();
    let meta = std::fs::read(out.join("meta")).unwrap();
    let unchanged = || {
        assert_eq!(std::fs::read_to_string(&mine).unwrap(), "ocean\tsea\n");
        assert_eq!(std::fs::read(out.join("meta")).unwrap(), meta);
        assert!(!dir.path().join("idx.partial").exists());
    };
    let refused = |a: assert_cmd::assert::Assert| {
        let err = String::from_utf8_lossy(&a.failure().get_output().stderr).into_owned();
        assert!(
            err.contains("input.spool") && err.contains("# relbert input spool 1"),
            "{err}"
        );
        unchanged();
    };
    refused(build(dir.path(), &out, &["--force"]));
    refused(
        relbert()
            .args(["index", "rebuild", "--index"])
            .arg(&out)
            .arg("--out")
            .arg(&out)
            .args(["--force", "--f16"])
            .assert(),
    );
    let more = dir.path().join("more.tsv");
    std::fs::write(&more, "lion\tcub\n").unwrap();
    let add = |pairs: &Path| {
        relbert()
            .args(["index", "add", "--index"])
            .arg(&out)
            .arg("--pairs")
            .arg(pairs)
            .assert()
    };
    refused(add(&more));
    // Nothing new: the index is unchanged, and so is the file.
    add(&pair_file(dir.path())).success();
    unchanged();
    // Not read as the input of an interrupted add: nothing to add.
    let a = relbert()
        .args(["index", "add", "--index"])
        .arg(&out)
        .args(["--pairs", "-"])
        .write_stdin("")
        .assert()
        .success();
    let said = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(
        said.contains("nothing to add: no pairs in <stdin>"),
        "{said}"
    );
    unchanged();
    // relbert's own copy (marked) still goes with the index.
    std::fs::write(&mine, "# relbert input spool 1\nocean\tsea\n").unwrap();
    add(&more).success();
    assert!(!mine.exists());
}

/// Found by an audit: with the model an index records moved away, `index add` of pairs the
/// index already held said "nothing to add" without a word, while the same add with one new
/// pair failed naming the moved model, so the first notice came at the next add with
/// something to encode. Nothing is loaded when nothing is new, but the recorded model is
/// checked (present, same weights, by their hash): a warning names its path and the flag.
#[test]
fn an_add_of_nothing_new_names_a_moved_or_changed_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("tiny-bert").join(f), model.join(f)).unwrap();
    }
    let idx = dir.path().join("idx");
    build_with(&model, dir.path(), &idx, &[]).success();
    let recorded = std::fs::canonicalize(&model).unwrap();
    let add = |pairs: &Path, env: Option<&Path>| {
        let mut c = relbert();
        c.args(["index", "add", "--index"])
            .arg(&idx)
            .arg("--pairs")
            .arg(pairs);
        match env {
            Some(m) => c.env("RELBERT_MODEL", m),
            None => c.env_remove("RELBERT_MODEL"),
        };
        c.assert()
    };
    let stderr = |a: &assert_cmd::assert::Assert| {
        String::from_utf8_lossy(&a.get_output().stderr).into_owned()
    };
    let old = pair_file(dir.path());
    // (The pair file's repeated pair with another label is warned of; the model is not.)
    let quiet = |a: &assert_cmd::assert::Assert| !stderr(a).contains("records its model");
    let a = add(&old, None).success();
    assert!(quiet(&a), "the model is there: {}", stderr(&a));
    let moved = dir.path().join("moved");
    std::fs::rename(&model, &moved).unwrap();
    let a = add(&old, None).success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(out.contains("nothing to add"), "{out}");
    let err = stderr(&a);
    assert!(
        err.contains(&recorded.display().to_string())
            && err.contains("not there")
            && err.contains("--model"),
        "{err}"
    );
    // The same as an add with a new pair says, as an error.
    let new = dir.path().join("new.tsv");
    std::fs::write(&new, "lion\tcub\n").unwrap();
    let err = stderr(&add(&new, None).failure());
    assert!(
        err.contains(&recorded.display().to_string()) && err.contains("--model"),
        "{err}"
    );
    // RELBERT_MODEL naming a model of those weights is found, as the add with pairs finds it.
    let a = add(&old, Some(&moved)).success();
    assert!(quiet(&a), "{}", stderr(&a));
    // Other weights where the recorded model was.
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("tiny-roberta").join(f), model.join(f)).unwrap();
    }
    let err = stderr(&add(&old, None).success());
    assert!(
        err.contains(&recorded.display().to_string()) && err.contains("other weights"),
        "{err}"
    );
}

/// Found by an audit: flags out of range, or given where they do nothing, were failures
/// of the run (status 1) or ignored: `--m` / `--ef-construction` outside what an index
/// takes on `build` and `rebuild`, `--ef-construction` below `--m`, `--graph-while-encoding`
/// with `--collection` (a Qdrant collection has no local graph: it was ignored), and
/// `index add`'s `--batch-size`, `--device` and `--template`, which `build` checks when
/// parsed. Each is now a bad command line, status 2, naming the flag(s), with nothing
/// written.
#[test]
fn index_flags_at_their_edges_are_a_bad_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("idx");
    build(dir.path(), &idx, &[]).success();
    let new = dir.path().join("new.tsv");
    std::fs::write(&new, "lion\tcub\n").unwrap();
    let before = common::dir_files(&idx);
    let model = fixture("tiny-bert");
    let model = model.to_str().unwrap();
    let pairs = pair_file(dir.path());
    let pairs = pairs.to_str().unwrap();
    let (idx_s, new_s) = (idx.to_str().unwrap(), new.to_str().unwrap());
    let build_args = ["index", "build", "--model", model, "--pairs", pairs];
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            [&build_args[..], &["--out", "o", "--m", "300"]].concat(),
            &["--m"],
        ),
        (
            [&build_args[..], &["--out", "o", "--m", "1"]].concat(),
            &["--m"],
        ),
        (
            [&build_args[..], &["--out", "o", "--ef-construction", "0"]].concat(),
            &["--ef-construction"],
        ),
        (
            [
                &build_args[..],
                &["--out", "o", "--m", "32", "--ef-construction", "8"],
            ]
            .concat(),
            &["--m", "--ef-construction"],
        ),
        (
            [
                &build_args[..],
                &["--collection", "c", "--graph-while-encoding", "on"],
            ]
            .concat(),
            &["--collection", "--graph-while-encoding"],
        ),
        (
            [
                &build_args[..],
                &["--collection", "c", "--graph-priority", "lower"],
            ]
            .concat(),
            &["--collection", "--graph-priority"],
        ),
        (
            [&build_args[..], &["--collection", "c", "--m", "256"]].concat(),
            &["--m"],
        ),
        (
            vec![
                "index", "rebuild", "--index", idx_s, "--out", "o", "--m", "0",
            ],
            &["--m"],
        ),
        (
            vec![
                "index",
                "rebuild",
                "--index",
                idx_s,
                "--out",
                "o",
                "--ef-construction",
                "1000001",
            ],
            &["--ef-construction"],
        ),
        // Below the source's M (16).
        (
            vec![
                "index",
                "rebuild",
                "--index",
                idx_s,
                "--out",
                "o",
                "--ef-construction",
                "8",
            ],
            &["--ef-construction"],
        ),
        (
            vec![
                "index",
                "add",
                "--index",
                idx_s,
                "--pairs",
                new_s,
                "--batch-size",
                "5000",
            ],
            &["--batch-size"],
        ),
        (
            vec![
                "index", "add", "--index", idx_s, "--pairs", new_s, "--device", "gpu",
            ],
            &["--device"],
        ),
        (
            vec![
                "index",
                "add",
                "--index",
                idx_s,
                "--pairs",
                new_s,
                "--template",
                "no slots",
            ],
            &["--template"],
        ),
    ];
    for (args, flags) in cases {
        let a = relbert()
            .current_dir(dir.path())
            .env_remove("RELBERT_QDRANT_URL")
            .args(&args)
            .assert()
            .code(2);
        let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        for flag in flags {
            assert!(err.contains(flag), "{args:?}: {flag} not named: {err}");
        }
        assert!(!dir.path().join("o").exists(), "{args:?}");
        assert!(!dir.path().join("o.partial").exists(), "{args:?}");
        assert!(!dir.path().join("idx.partial").exists(), "{args:?}");
        assert_eq!(common::dir_files(&idx), before, "{args:?}");
    }
}

/// Found by an audit: an index directory that is not there was refused as "opening nope:
/// nope: No such file or directory (os error 2)" by `index info`, `index add`, `index
/// rebuild`, `index export` and `query --index`; each now says there is no index there, once,
/// and how to make one, as `serve` did.
#[test]
fn a_missing_index_is_said_in_words_once() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = common::pair_file(dir.path());
    let p = pairs.to_str().unwrap();
    for args in [
        vec!["index", "info", "nope"],
        vec!["index", "add", "--index", "nope", "--pairs", p],
        vec!["index", "rebuild", "--index", "nope", "--out", "o"],
        vec![
            "index", "export", "--index", "nope", "--format", "npy", "--out", "v.npy",
        ],
        vec!["query", "--index", "nope", "paris", "france"],
    ] {
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("relbert"))
            .args(&args)
            .current_dir(dir.path())
            .env("RELBERT_LOG", "warn")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("no index at nope (build one with relbert index build")
                && !err.contains("No such file"),
            "{args:?}: {err}"
        );
        assert!(!dir.path().join("o").exists() && !dir.path().join("v.npy").exists());
    }
}

/// `ếy` as Vietnamese keyboards type it: `ê` precomposed, then a combining acute (U+0301), a
/// spelling in neither NFC nor NFD.
const MIXED: &str = "\u{ea}\u{301}y";
/// The same word in NFC and in NFD.
const NFC: &str = "\u{1ebf}y";
const NFD: &str = "e\u{302}\u{301}y";
/// `phở` in NFC.
const PHO: &str = "ph\u{1edf}";

/// `relbert query --json -k 1` of (head, tail) on `index`.
fn query_json(index: &Path, head: &str, tail: &str) -> serde_json::Value {
    let a = relbert()
        .args(["query", "--json", "-k", "1", "--index"])
        .arg(index)
        .args([head, tail])
        .assert()
        .success();
    serde_json::from_slice(&a.get_output().stdout).unwrap()
}

/// Found by an audit: a pair stored with a word in a mixed form (neither NFC nor NFD) was
/// found by no other spelling: `query` encoded it afresh and `index remove` said it was not
/// in the index. A build stores such a word in NFC, which both forms find.
#[test]
fn a_word_in_a_mixed_unicode_form_is_stored_in_nfc_and_found_by_both_forms() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("v.tsv");
    std::fs::write(
        &pairs,
        format!("paris\tfrance\nrome\titaly\n{MIXED}\t{PHO}\n"),
    )
    .unwrap();
    let idx = dir.path().join("v");
    relbert()
        .args(["index", "build", "--model"])
        .arg(fixture("tiny-roberta"))
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&idx)
        .assert()
        .success();
    let index = relbert_index::Index::open(&idx).unwrap();
    let stored: Vec<String> = (0..index.count())
        .map(|r| index.pair(r).unwrap().head.to_string())
        .collect();
    assert!(stored.iter().any(|h| h == NFC), "{stored:?}");
    drop(index);
    for head in [NFC, NFD, MIXED] {
        let q = query_json(&idx, head, PHO);
        assert_eq!(q["source"], "index", "{head:?}: {q}");
    }
    let nfc = dir.path().join("nfc.tsv");
    std::fs::write(&nfc, format!("{NFC}\t{PHO}\n")).unwrap();
    let a = relbert()
        .args(["index", "remove", "--json", "--index"])
        .arg(&idx)
        .arg("--pairs")
        .arg(&nfc)
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(doc["removed"], 1, "{doc}");
    assert_eq!(doc["count"], 2, "{doc}");
}

/// Found by an audit: an index made by an older relbert, which kept a word in a mixed form,
/// took an add of its NFC spelling as new, encoded it, and the grow left it out as a
/// spelling of the pair held: "added 0 pairs … 0 already there, 0 repeated", counted
/// nowhere. It is already there, and the counts add up to the pairs read.
#[test]
fn an_add_of_a_pair_held_in_a_mixed_form_counts_it_as_already_there() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("old");
    // The old index, as relbert wrote it before words in a mixed form were stored in NFC.
    let held = [("paris", "france"), ("rome", "italy"), (MIXED, PHO)];
    common::index_as_an_older_relbert_wrote(&idx, "tiny-roberta", &held);
    let index = relbert_index::Index::open(&idx).unwrap();
    assert_eq!(index.count(), 3);
    assert_eq!(
        index.lookup(NFC, PHO).unwrap(),
        None,
        "a lookup finds it now"
    );
    drop(index);

    let nfc = dir.path().join("nfc.tsv");
    std::fs::write(&nfc, format!("{NFC}\t{PHO}\n")).unwrap();
    let add = |json: bool| {
        let mut c = relbert();
        c.args(["index", "add", "--index"])
            .arg(&idx)
            .arg("--pairs")
            .arg(&nfc);
        if json {
            c.arg("--json");
        }
        String::from_utf8(c.assert().success().get_output().stdout.clone()).unwrap()
    };
    let said = add(false);
    assert!(
        said.contains("(3 → 3 pairs; 1 already there, 0 repeated)"),
        "{said}"
    );
    let doc: serde_json::Value = serde_json::from_str(&add(true)).unwrap();
    assert_eq!(doc["added"], 0, "{doc}");
    assert_eq!(doc["already_in_index"], 1, "{doc}");
    let counted: u64 = [
        "added",
        "already_in_index",
        "repeated_in_input",
        "skipped_long",
    ]
    .iter()
    .map(|k| doc[k].as_u64().unwrap())
    .sum();
    assert_eq!(doc["pairs_read"].as_u64(), Some(counted), "{doc}");
}

/// Review R10 (s20): an older relbert stored a pair with the invisible character its file
/// spelled (`dog<TAB>pup\u{ad}py`, kept as `pup\u{ad}py`). Once words were read without such
/// characters, that file no longer found the pair: `index remove --pairs` said it was not in
/// the index, and `index add` stored a second copy. The words as the file spells them are
/// tried too.
#[test]
fn a_pair_an_older_relbert_stored_with_an_invisible_character_is_found_by_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("old");
    let held = [
        ("paris", "france"),
        ("rome", "italy"),
        ("dog", "pup\u{ad}py"),
        ("sun", "moon"),
    ];
    common::index_as_an_older_relbert_wrote(&idx, "tiny-roberta", &held);

    let file = dir.path().join("typed.tsv");
    std::fs::write(&file, "dog\tpup\u{ad}py\n").unwrap();
    let run = |what: &str| common::index_json(what, &idx, &file);
    let doc = run("add");
    assert_eq!(doc["added"], 0, "{doc}");
    assert_eq!(doc["already_in_index"], 1, "{doc}");
    assert_eq!(info(&idx)["count"], 4);
    let doc = run("remove");
    assert_eq!(doc["removed"], 1, "{doc}");
    assert_eq!(doc["not_in_index"], 0, "{doc}");
    assert_eq!(doc["count"], 3, "{doc}");
}

/// Found by review: a query takes `don’t` (U+2019) and `ʼ` (U+02BC) for the stored `don't`,
/// but `index remove --pairs` said such a pair was not in the index and `index add` stored a
/// second copy that queries then merged with the first. Both find a pair as a query does, and
/// two records of one input differing only in their apostrophes are one pair.
#[test]
fn add_and_remove_find_a_pair_in_another_apostrophe_as_a_query_does() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("held.tsv");
    std::fs::write(
        &pairs,
        "don't\tstop\nqi\u{2019}anxin\tcompany\nrome\titaly\n",
    )
    .unwrap();
    let idx = common::tiny_index(&pairs, &dir.path().join("idx"));
    let typed = dir.path().join("typed.tsv");
    std::fs::write(
        &typed,
        "don\u{2019}t\tstop\ndon\u{2bc}t\tstop\nqi'anxin\tcompany\nparis\tfrance\n",
    )
    .unwrap();
    let doc = common::index_json("add", &idx, &typed);
    assert_eq!(
        (
            &doc["added"],
            &doc["already_in_index"],
            &doc["repeated_in_input"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(2),
            &serde_json::json!(1)
        ),
        "{doc}"
    );
    assert_eq!(info(&idx)["count"], 4);
    std::fs::write(&typed, "don\u{2bc}t\tstop\nqi'anxin\tcompany\n").unwrap();
    let doc = common::index_json("remove", &idx, &typed);
    assert_eq!(doc["removed"], 2, "{doc}");
    assert_eq!(doc["not_in_index"], 0, "{doc}");
    let index = relbert_index::Index::open(&idx).unwrap();
    assert_eq!(index.count(), 2);
    assert_eq!(index.lookup("don't", "stop").unwrap(), None);
    assert_eq!(index.lookup("qi\u{2019}anxin", "company").unwrap(), None);
}

/// Task F1 (s24): the writer lock made the missing folders above `index build --out` and
/// `index rebuild --out` (`--out typo/idx` made `typo`, then built the index in it). Now a
/// bad command line (status 2) naming the flag and the folder, with nothing made; the index
/// directory itself is still made by the build.
#[test]
fn an_index_out_in_a_missing_folder_is_refused_and_nothing_made() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("idx");
    build(dir.path(), &src, &[]).success();
    let before = common::names_in(dir.path());
    let missing = dir.path().join("missing");
    for out in [missing.join("idx"), missing.join("deeper/idx")] {
        let folder = out.parent().unwrap();
        let said = |a: assert_cmd::assert::Assert| {
            let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
            common::assert_out_folder_missing(&err, folder, "index");
        };
        said(build(dir.path(), &out, &[]).code(2));
        said(
            relbert()
                .args(["index", "rebuild", "--index"])
                .arg(&src)
                .arg("--out")
                .arg(&out)
                .assert()
                .code(2),
        );
        assert_eq!(common::names_in(dir.path()), before);
    }
}

/// `index build` of `out` from the test vocabulary of `dir`, run by `sh -c PREFIX` (a
/// `ulimit`, a change of user) in front of the binary; its output.
fn build_under(prefix: &[&str], dir: &Path, out: &Path) -> std::process::Output {
    let bin = assert_cmd::cargo::cargo_bin("relbert");
    let mut c = std::process::Command::new(prefix[0]);
    c.args(&prefix[1..])
        .arg(bin)
        .env("RELBERT_LOG", "warn")
        .args(["index", "build", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(pair_file(dir))
        .arg("--out")
        .arg(out);
    c.output().unwrap()
}

/// Found by a review: a stale lock file another user left in a folder this user may not
/// write was said to be "safe to remove: `rm …`", which this user cannot do (removing a file
/// takes write permission on its folder). Now it says that, that the folder's owner or anyone
/// who may write in it can, and that another `--out` works. Needs root, to leave the lock as
/// another user and run the build as `nobody` (`setpriv`); skipped otherwise, with the
/// reason printed.
#[test]
fn a_stale_lock_this_user_cannot_remove_says_who_can() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let what = "a stale lock this user cannot remove";
    let Some(mut nobody) = common::relbert_as_nobody(dir.path(), what) else {
        return;
    };
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root's folder (0755: nobody may not write in it) and lock file, held by no process.
    let folder = dir.path().join("shared");
    std::fs::create_dir(&folder).unwrap();
    let lock = folder.join(".idx.lock");
    std::fs::write(&lock, "pid 1: relbert index build (since unix time 0)\n").unwrap();
    let o = nobody
        .args(["index", "build", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(pair_file(dir.path()))
        .arg("--out")
        .arg(folder.join("idx"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    let shown = lock.display().to_string();
    assert!(
        err.contains(&format!("{shown} is a stale lock file")),
        "{err}"
    );
    let f = folder.display();
    assert!(
        err.contains("this user may not remove it either")
            && err.contains(&format!("{f} is not writable to this user"))
            && err.contains(&format!(
                "ask the owner of {f} (user root (uid 0)), or anyone who may write in it"
            ))
            && err.contains("another `--out`"),
        "{err}"
    );
    assert!(!err.contains("it is safe to remove: `rm"), "{err}");
    assert!(lock.is_file() && !folder.join("idx").exists());
}

/// Found by a review: a stale lock file that is immutable (`chattr +i`) cannot be opened for
/// writing nor removed, even by root, yet the advice was `rm`, which fails. Now it names the
/// attribute and says that `chattr -i`, as root, comes first. Needs root and a file system
/// that keeps the attribute; skipped otherwise.
#[test]
fn an_immutable_stale_lock_says_chattr_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join(".idx.lock");
    std::fs::write(&lock, "pid 1: relbert index build (since unix time 0)\n").unwrap();
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(&lock)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !chattr("+i") {
        common::skip("chattr +i does not work here (needs root and ext4 or the like)");
        return;
    }
    let o = relbert()
        .args(["index", "build", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(pair_file(dir.path()))
        .arg("--out")
        .arg(dir.path().join("idx"))
        .output()
        .unwrap();
    // Cleared before any assertion, so that a failure leaves nothing root cannot remove.
    assert!(chattr("-i"), "chattr -i {}", lock.display());
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    let l = lock.display();
    assert!(
        err.contains(&format!("{l} is a stale lock file"))
            && err.contains(&format!("{l} is immutable (`chattr +i`)"))
            && err.contains(&format!(
                "as root clear that first (`chattr -i {l}`), then `rm {l}`"
            )),
        "{err}"
    );
    assert!(!err.contains("it is safe to remove: `rm"), "{err}");
    assert!(lock.is_file() && !dir.path().join("idx").exists());
}

/// Found by a review: a full disk (or quota, or file size limit) met while writing the lock
/// file beside the output was a bare `File too large (os error 27)`, where one met later in
/// the build says to make room. A file size limit of 0 fails the lock file's first write.
#[test]
fn a_full_disk_met_writing_the_lock_file_says_to_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pair_file(dir.path());
    let out = dir.path().join("idx");
    // SIGXFSZ ignored, so a write past the limit fails with EFBIG instead of killing.
    let o = build_under(
        &["sh", "-c", "trap '' XFSZ; ulimit -f 0; exec \"$0\" \"$@\""],
        dir.path(),
        &out,
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    let lock = dir.path().join(".idx.lock");
    assert!(
        err.contains(&format!("{}: File too large", lock.display()))
            && err.contains("nothing was written")
            && err.contains("make room (free space, or raise the quota or file size limit)")
            && err.contains("run the same command again"),
        "{err}"
    );
    // Nothing left behind: no lock file, no partial directory.
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    left.sort();
    assert_eq!(left, vec![pairs], "{err}");
}

/// Found by a review: `index export` checks each block of the rows and pairs as it reads
/// them, so damage in a part of the `pairs` file it never reads (the last block of its
/// lookup table, which only a lookup by words reads) went unseen, and the export succeeded
/// from a damaged file. The two files it copies out are now verified whole first: the
/// export fails naming the file and block, and writes nothing. (The graph, which no export
/// reads, is still not checked: `cli_trust`'s
/// `a_damaged_graph_leaves_export_and_exact_queries_whole`.)
#[test]
fn an_export_refuses_damage_in_a_part_of_the_pairs_file_it_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let count = 300;
    let text: String = (0..count)
        .map(|i| format!("w{i}\tv{}\n", i * 7 % 301))
        .collect();
    let pairs = dir.path().join("many.tsv");
    std::fs::write(&pairs, text).unwrap();
    let idx = common::tiny_index(&pairs, &dir.path().join("idx"));
    // The file is a 64-byte header, the payload, and 4 bytes of checksum per 4 KiB block of
    // it; the payload ends with the lookup table, 16 bytes a pair.
    let file = idx.join("pairs");
    let mut bytes = std::fs::read(&file).unwrap();
    let payload = (0..bytes.len())
        .find(|p| 64 + p + 4 * p.div_ceil(4096) == bytes.len())
        .unwrap();
    let last_block = (payload - 1) / 4096 * 4096;
    assert!(
        last_block >= payload - 16 * count,
        "the last block holds more than the lookup table"
    );
    bytes[64 + payload - 8] ^= 0x5a;
    std::fs::write(&file, bytes).unwrap();
    let out = dir.path().join("e.npy");
    let a = relbert()
        .args(["index", "export", "--format", "npy", "--index"])
        .arg(&idx)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(&format!("{}: block {} ", file.display(), last_block / 4096))
            && err.contains("does not match its checksum"),
        "{err}"
    );
    assert!(
        !out.exists() && !dir.path().join("e.pairs.tsv").exists(),
        "{err}"
    );
}

/// Found by a review: `index build --out X` where X is not an index (a symbolic link, a
/// user's file or folder) said "X exists; pass --force to replace it", and with --force
/// "X exists and is not an index written by relbert …; refusing to replace it even with
/// --force". Whose X is comes first now: without --force the refusal already says why, and
/// --force is advised only for relbert's own index. `rebuild --out` shares the check.
#[test]
fn an_output_that_is_not_an_index_is_refused_without_advising_force() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("idx");
    build(dir.path(), &idx, &[]).success();
    let link = dir.path().join("sl1");
    std::os::unix::fs::symlink(dir.path().join("tgt"), &link).unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "mine").unwrap();
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("notes.txt"), "mine").unwrap();
    let rebuild = |out: &Path, force: bool| {
        let mut c = relbert();
        c.args(["index", "rebuild", "--index"])
            .arg(&idx)
            .arg("--out")
            .arg(out);
        if force {
            c.arg("--force");
        }
        c.assert()
    };
    let stderr = |a: &assert_cmd::assert::Assert| {
        String::from_utf8_lossy(&a.get_output().stderr).into_owned()
    };
    for force in [false, true] {
        let extra: &[&str] = if force { &["--force"] } else { &[] };
        for out in [&link, &file, &folder] {
            let err = stderr(&build(dir.path(), out, extra).failure());
            assert!(
                err.contains("is not an index written by relbert") && !err.contains("pass --force"),
                "build --out {} (force {force}): {err}",
                out.display()
            );
        }
        // A link is refused by the rebuild's own check unless it leads to the source.
        for out in [&file, &folder] {
            let err = stderr(&rebuild(out, force).failure());
            assert!(
                err.contains("is not an index written by relbert") && !err.contains("pass --force"),
                "rebuild --out {} (force {force}): {err}",
                out.display()
            );
        }
    }
    assert!(std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    assert_eq!(
        std::fs::read_to_string(folder.join("notes.txt")).unwrap(),
        "mine"
    );
    // relbert's own index is still the one --force is advised for.
    let other = dir.path().join("other");
    build(dir.path(), &other, &[]).success();
    let err = stderr(&build(dir.path(), &other, &[]).failure());
    assert!(err.contains("exists; pass --force to replace it"), "{err}");
    let err = stderr(&rebuild(&other, false).failure());
    assert!(err.contains("exists; pass --force to replace it"), "{err}");
}

/// Found by a review: only `index info --verify` named an interrupted `index add` waiting in
/// `DIR.partial/`; a plain `index info` (and `--json`) said nothing of it. Every `info` now
/// says it (`pending` in the table and in the JSON, null when there is none), and a
/// `DIR.partial/` that is not relbert's is named in its place without failing a plain
/// `info`.
#[test]
fn every_index_info_names_an_interrupted_add() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("kl");
    build(dir.path(), &idx, &[]).success();
    let plain = |json: bool| {
        let mut c = relbert();
        c.args(["index", "info"]);
        if json {
            c.arg("--json");
        }
        let a = c.arg(&idx).assert().success();
        String::from_utf8_lossy(&a.get_output().stdout).into_owned()
    };
    let pending_row = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("pending "))
            .map(|l| l["pending".len()..].trim().to_string())
    };
    assert_eq!(pending_row(&plain(false)).as_deref(), Some("none"));
    assert_eq!(info(&idx)["pending"], serde_json::Value::Null);

    // An add interrupted after its copy of the index, as a kill leaves it (made through the
    // library: deterministic, no kill).
    let base = relbert_index::Index::open(&idx).unwrap();
    drop(relbert_index::IndexGrower::create_or_resume(base, "test", 1, |_| {}).unwrap());
    let partial = dir.path().join("kl.partial");
    assert!(partial.join("checkpoint").is_file());
    let row = pending_row(&plain(false)).unwrap_or_default();
    assert!(
        row.starts_with(&format!(
            "{} holds an interrupted `index add` of {}",
            partial.display(),
            idx.display()
        )),
        "{row}"
    );
    let doc = info(&idx);
    assert_eq!(doc["pending"]["command"], "add", "{doc}");
    assert_eq!(doc["pending"]["resumable"], true, "{doc}");
    assert_eq!(doc["pending"]["advice"], serde_json::json!(row), "{doc}");

    // A `kl.partial/` of the user's: a plain `info` names the problem and succeeds.
    std::fs::remove_dir_all(&partial).unwrap();
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("notes.txt"), "mine").unwrap();
    let row = pending_row(&plain(false)).unwrap_or_default();
    assert!(
        row.contains("notes.txt") || row.contains("not a partial build"),
        "{row}"
    );
    let doc = info(&idx);
    assert!(doc["pending"]["error"].is_string(), "{doc}");
    assert_eq!(
        std::fs::read_to_string(partial.join("notes.txt")).unwrap(),
        "mine"
    );
}

/// Found by a review: `index info` took its folder only as an argument where every other
/// index command takes `--index DIR`; both are taken now, and not both at once.
#[test]
fn index_info_takes_the_folder_as_the_other_index_commands_do() {
    let d = tempfile::tempdir().unwrap();
    let idx = common::tiny_index(&common::pair_file(d.path()), &d.path().join("idx"));
    let a = relbert()
        .args(["index", "info", "--json", "--index"])
        .arg(&idx)
        .assert()
        .success();
    let by_flag: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(by_flag["id"], info(&idx)["id"]);
    relbert()
        .args(["index", "info", "--index"])
        .arg(&idx)
        .arg(&idx)
        .assert()
        .code(2);
    relbert().args(["index", "info"]).assert().code(2);
}
