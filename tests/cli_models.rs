//! Model directories a user may bring that relbert cannot compute as their authors meant:
//! each is refused at load naming the file and the field or tensor, never encoded into wrong
//! vectors without a word (audit s17, "bring your own model"). The models are the tiny
//! fixtures with their config.json and model.safetensors edited here.
#![cfg(feature = "cli")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::fixture;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn");
    c
}

/// How to edit a fixture model's files.
#[derive(Default)]
struct Edit<'a> {
    /// config.json keys to set.
    config: &'a [(&'a str, Value)],
    /// Tensors to give this many rows: the first rows kept (`rows` in the audit's st.py),
    /// or rows of zeros added after the last.
    rows: &'a [(&'a str, usize)],
    /// Float32 tensors of three zeros to add.
    add: &'a [&'a str],
    /// Tensors whose values to set to zero.
    zero: &'a [&'a str],
}

/// A copy of fixture `name` at `out` with `edit` applied.
fn edited(name: &str, out: &Path, edit: Edit<'_>) -> PathBuf {
    let src = fixture(name);
    std::fs::create_dir_all(out).unwrap();
    std::fs::copy(src.join("tokenizer.json"), out.join("tokenizer.json")).unwrap();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    for (k, v) in edit.config {
        config[*k] = v.clone();
    }
    std::fs::write(out.join("config.json"), config.to_string()).unwrap();

    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    for &(name, rows) in edit.rows {
        let (_, shape, data) = tensors.get_mut(name).unwrap();
        let row_bytes = data.len() / shape[0];
        shape[0] = rows;
        data.resize(rows * row_bytes, 0);
    }
    for &name in edit.zero {
        tensors.get_mut(name).unwrap().2.fill(0);
    }
    for &name in edit.add {
        tensors.insert(name.to_string(), (Dtype::F32, vec![3], vec![0; 12]));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (dt, shape, data))| {
            (
                n.clone(),
                TensorView::new(*dt, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    std::fs::write(
        out.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    out.to_path_buf()
}

/// A model whose position table has `n` rows.
fn positions(name: &str, out: &Path, n: usize) -> PathBuf {
    edited(
        name,
        out,
        Edit {
            config: &[("max_position_embeddings", json!(n))],
            rows: &[("embeddings.position_embeddings.weight", n)],
            ..Edit::default()
        },
    )
}

/// Two pairs, the second one's prompt over 32 tokens with the fixtures' template and
/// tokenizer, the first one's under.
fn two_pairs(dir: &Path) -> PathBuf {
    let p = dir.join("two.tsv");
    std::fs::write(&p, "paris\tfrance\nnew york\tunited states\n").unwrap();
    p
}

/// `relbert embed` of `pairs` with `model`, and `extra` flags: (success, stdout, stderr).
fn embed(model: &Path, pairs: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = relbert()
        .args(["embed", "--model"])
        .arg(model)
        .arg("--pairs")
        .arg(pairs)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The error `relbert embed` stops with on `model`.
fn refusal(model: &Path, pairs: &Path) -> String {
    let (ok, _, err) = embed(model, pairs, &[]);
    assert!(!ok, "{} was not refused", model.display());
    err
}

/// D2: a tokenizer with ids past the word-embedding table (tokens added, embeddings not
/// resized) had those ids read as the table's last row, so different words gave one vector.
#[test]
fn tokenizer_ids_past_the_word_embedding_table_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let model = edited(
        "tiny-bert",
        &d.path().join("v900"),
        Edit {
            config: &[("vocab_size", json!(900))],
            rows: &[("embeddings.word_embeddings.weight", 900)],
            ..Edit::default()
        },
    );
    let err = refusal(&model, &pairs);
    for want in [
        "v900/tokenizer.json",
        "v900/config.json",
        "1000 ids",
        "vocab_size 900",
        "resize_token_embeddings",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    // A table larger than the tokenizer needs (transformers pads vocab_size to a multiple
    // of 8 or 64) is fine: its extra rows are never read, and the vectors are the same.
    let model = edited(
        "tiny-bert",
        &d.path().join("v1100"),
        Edit {
            config: &[("vocab_size", json!(1100))],
            rows: &[("embeddings.word_embeddings.weight", 1100)],
            ..Edit::default()
        },
    );
    let (ok, plain, err) = embed(&fixture("tiny-bert"), &pairs, &[]);
    assert!(ok, "{err}");
    let (ok, out, err) = embed(&model, &pairs, &[]);
    assert!(ok, "{err}");
    assert_eq!(out, plain);
}

/// The tokenizer's ids are checked against the config before the weights are read (for a
/// large model, gigabytes read before a refusal that needs none of them): with weights that
/// cannot be read at all, the tokenizer is still what is refused.
#[test]
fn a_tokenizer_past_the_table_is_refused_before_the_weights_are_read() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let model = edited(
        "tiny-bert",
        &d.path().join("v900"),
        Edit {
            config: &[("vocab_size", json!(900))],
            ..Edit::default()
        },
    );
    std::fs::write(model.join("model.safetensors"), "not read").unwrap();
    let err = refusal(&model, &pairs);
    assert!(
        err.contains("v900/tokenizer.json") && err.contains("vocab_size 900"),
        "{err}"
    );
    assert!(!err.contains("model.safetensors"), "{err}");
}

/// D3: config.json settings of the same model types that change the computation were
/// ignored, the vectors a bidirectional absolute-position encoder's.
#[test]
fn decoders_cross_attention_and_relative_positions_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    for (i, (key, value)) in [
        ("is_decoder", json!(true)),
        ("add_cross_attention", json!(true)),
        ("position_embedding_type", json!("relative_key")),
        ("position_embedding_type", json!("relative_key_query")),
    ]
    .into_iter()
    .enumerate()
    {
        let model = edited(
            "tiny-bert",
            &d.path().join(format!("m{i}")),
            Edit {
                config: &[(key, value.clone())],
                ..Edit::default()
            },
        );
        let err = refusal(&model, &pairs);
        assert!(
            err.contains(&format!("m{i}/config.json"))
                && err.contains(key)
                && err.contains("not supported"),
            "{err}"
        );
    }
    // Their defaults, written out or left null, change nothing.
    let model = edited(
        "tiny-roberta",
        &d.path().join("defaults"),
        Edit {
            config: &[
                ("is_decoder", json!(false)),
                ("add_cross_attention", Value::Null),
                ("position_embedding_type", json!("absolute")),
            ],
            ..Edit::default()
        },
    );
    let (ok, plain, _) = embed(&fixture("tiny-roberta"), &pairs, &[]);
    assert!(ok);
    let (ok, out, err) = embed(&model, &pairs, &[]);
    assert!(ok, "{err}");
    assert_eq!(out, plain);
}

/// D1: with a position table under 64 tokens, long pairs were screened at 64: the refusal
/// named no line and said 64, --skip-long left nothing out, and `index build` stopped in
/// the middle, leaving a partial index.
#[test]
fn a_short_position_table_is_the_token_limit_everywhere() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let model = positions("tiny-bert", &d.path().join("pos32"), 32);
    let err = refusal(&model, &pairs);
    assert!(
        err.contains("two.tsv:2: the prompt of (\"new york\", \"united states\")")
            && err.contains("32-token limit")
            && err.contains("--skip-long"),
        "{err}"
    );
    let (ok, out, err) = embed(&model, &pairs, &["--skip-long"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("\"paris\",\"france\""), "{out}");
    assert!(err.contains("two.tsv:2"), "{err}");

    let idx = d.path().join("idx");
    let build = |extra: &[&str]| {
        relbert()
            .args(["index", "build", "--model"])
            .arg(&model)
            .arg("--pairs")
            .arg(&pairs)
            .arg("--out")
            .arg(&idx)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = build(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("two.tsv:2") && err.contains("32-token limit"),
        "{err}"
    );
    let mut left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("idx"))
        .collect();
    left.sort();
    assert!(left.is_empty(), "{left:?}");
    let out = build(&["--skip-long"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(idx.is_dir());
}

/// Four relations (semeval-style) and a two-question analogy validation split, as
/// tests/train_cli.rs trains on.
fn toy_data(dir: &Path) {
    const WORDS: [&str; 12] = [
        "cat", "dog", "fish", "bird", "tree", "leaf", "car", "road", "sun", "moon", "red", "blue",
    ];
    let pair = |i: usize, j: usize| format!("[\"{}\", \"{}\"]", WORDS[i % 12], WORDS[j % 12]);
    let sem = dir.join("semeval2012_relational_similarity");
    std::fs::create_dir_all(&sem).unwrap();
    let mut text = String::new();
    for (r, id) in ["1a", "1b", "2a", "2b"].iter().enumerate() {
        text.push_str(&format!(
            "{{\"relation_type\": \"{id}\", \"positives\": [{}, {}], \"negatives\": [{}]}}\n",
            pair(r, r + 6),
            pair(r + 1, r + 7),
            pair(r + 6, r + 2)
        ));
    }
    std::fs::write(sem.join("train.jsonl"), &text).unwrap();
    std::fs::write(sem.join("validation.jsonl"), &text).unwrap();
    let sat = dir.join("sat");
    std::fs::create_dir_all(&sat).unwrap();
    std::fs::write(
        sat.join("validation.jsonl"),
        "{\"stem\": [\"cat\", \"dog\"], \"choice\": [[\"sun\", \"moon\"], [\"red\", \"blue\"]], \"answer\": 0, \"prefix\": \"t\"}\n\
         {\"stem\": [\"new york\", \"united states\"], \"choice\": [[\"car\", \"road\"], [\"tree\", \"leaf\"]], \"answer\": 0, \"prefix\": \"t\"}\n",
    )
    .unwrap();
}

/// D1 in training: the validation pairs were screened at 64 tokens, and the refusal of a
/// training pair said 64, with a model whose limit is 32.
#[test]
fn training_pairs_are_screened_at_the_models_limit() {
    let d = tempfile::tempdir().unwrap();
    toy_data(d.path());
    let model = positions("tiny-bert", &d.path().join("pos32"), 32);
    let train = |out: &str, extra: &[&str]| {
        let out = relbert()
            .args(["train", "--base"])
            .arg(&model)
            .arg("--data")
            .arg(d.path())
            .arg("--out")
            .arg(d.path().join(out))
            .args(["--epochs", "1", "--batch-size", "4"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let err = train("m1", &[]);
    assert!(
        err.contains("sat/validation.jsonl:2: the prompt of (\"new york\", \"united states\")")
            && err.contains("32-token limit"),
        "{err}"
    );
    let extra = d.path().join("extra.jsonl");
    std::fs::write(
        &extra,
        "{\"relation_type\": \"zz\", \"positives\": [[\"new york\", \"united states\"]], \"negatives\": [[\"cat\", \"dog\"]]}\n",
    )
    .unwrap();
    // The analogy split no longer in the way: the training file's pair is refused.
    std::fs::remove_dir_all(d.path().join("sat")).unwrap();
    let err = train("m2", &["--extra-train", extra.to_str().unwrap()]);
    assert!(
        err.contains("extra.jsonl:1: the prompt of") && err.contains("32-token limit"),
        "{err}"
    );
}

/// D5: a position table too short for the special tokens and one word (BERT's of 1 or 2
/// rows, RoBERTa's of up to 4, which start after the padding index) was encoded: tokenizers
/// leaves the ids uncut, and the positions past the table were read as its last row.
#[test]
fn a_position_table_too_short_for_any_prompt_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    for (name, n) in [
        ("tiny-bert", 1),
        ("tiny-bert", 2),
        ("tiny-roberta", 2),
        ("tiny-roberta", 3),
        ("tiny-roberta", 4),
    ] {
        let model = positions(name, &d.path().join(format!("{name}-{n}")), n);
        let err = refusal(&model, &pairs);
        assert!(
            err.contains(&format!(
                "{name}-{n}/config.json: max_position_embeddings {n} leaves room for"
            )) && err.contains("too few for any prompt"),
            "{err}"
        );
    }
    // Room for one word: loaded, and a pair it cannot hold is refused by its line.
    let model = positions("tiny-bert", &d.path().join("p3"), 3);
    let err = refusal(&model, &pairs);
    assert!(
        err.contains("two.tsv:1 (and 1 more pairs): the prompt of"),
        "{err}"
    );
    assert!(err.contains("3-token limit"), "{err}");
}

/// D4: a tensor inside an existing layer that a plain BERT layer has not (a relative-position
/// model's distance embedding) was reported as a layer too many ("holds layer 0 too").
#[test]
fn unknown_tensors_inside_a_layer_are_named() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let one = "encoder.layer.0.attention.self.distance_embedding.weight";
    let model = edited(
        "tiny-bert",
        &d.path().join("one"),
        Edit {
            add: &[one],
            ..Edit::default()
        },
    );
    let err = refusal(&model, &pairs);
    assert!(
        err.contains(&format!(
            "one/model.safetensors: tensor {one}: not a parameter"
        )) && err.contains("not plain BERT or RoBERTa")
            && !err.contains("layer 0 too"),
        "{err}"
    );
    let many = [
        "encoder.layer.1.attention.self.distance_embedding.weight",
        "encoder.layer.0.attention.self.distance_embedding.weight",
        "encoder.layer.0.attention.self.rel_bias",
        "encoder.layer.1.attention.self.rel_bias",
        "encoder.layer.x.w",
    ];
    let model = edited(
        "tiny-bert",
        &d.path().join("many"),
        Edit {
            add: &many,
            ..Edit::default()
        },
    );
    let err = refusal(&model, &pairs);
    assert!(
        err.contains(&format!("tensor {}: not a parameter", many[1]))
            && err.contains(&format!("nor are {}, {} and 2 more", many[2], many[0])),
        "{err}"
    );
    // A layer past num_hidden_layers is still the config's miscount.
    let model = edited(
        "tiny-bert",
        &d.path().join("layers"),
        Edit {
            config: &[("num_hidden_layers", json!(1))],
            ..Edit::default()
        },
    );
    let err = refusal(&model, &pairs);
    assert!(
        err.contains("num_hidden_layers is 1") && err.contains("holds layer 1 too"),
        "{err}"
    );
}

/// Minor: weights saved as PyTorch pickles or as sharded safetensors were reported as a
/// missing model.safetensors, with nothing on what to do.
#[test]
fn weights_in_formats_relbert_does_not_read_are_named() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    for other in ["pytorch_model.bin", "model.safetensors.index.json"] {
        let model = d.path().join(other.replace('.', "_"));
        std::fs::create_dir_all(&model).unwrap();
        for f in ["config.json", "tokenizer.json"] {
            std::fs::copy(fixture("tiny-bert").join(f), model.join(f)).unwrap();
        }
        std::fs::write(model.join(other), "{}").unwrap();
        let err = refusal(&model, &pairs);
        assert!(
            err.contains("model.safetensors: not there")
                && err.contains(&format!("holds {other} instead"))
                && err.contains("save_pretrained"),
            "{err}"
        );
    }
    // Nothing in their place: the plain missing-file message.
    let model = d.path().join("none");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture("tiny-bert").join(f), model.join(f)).unwrap();
    }
    let err = refusal(&model, &pairs);
    assert!(err.contains("missing file"), "{err}");
}

/// The prompt the reference's older Python package saved its checkpoints with.
const OLD_TEMPLATE: &str =
    "Today, I finally discovered the relation between <subj> and <obj> : <subj> is the <mask> of <obj>";

/// A copy of tiny-bert at `out` whose config.json holds `block` as its `relbert_config`.
fn with_relbert_config(out: &Path, block: Value) -> PathBuf {
    edited(
        "tiny-bert",
        out,
        Edit {
            config: &[("relbert_config", block)],
            ..Edit::default()
        },
    )
}

/// tiny-bert's vectors of `pairs` with [`OLD_TEMPLATE`] and mask pooling, given as flags.
fn old_template_by_mask(pairs: &Path) -> String {
    let (ok, meant, err) = embed(
        &fixture("tiny-bert"),
        pairs,
        &["--template", OLD_TEMPLATE, "--aggregation", "mask"],
    );
    assert!(ok, "{err}");
    meant
}

/// Audit K1: the keys the reference's Python package wrote in `relbert_config` (`mode`,
/// `custom_template`, `template_mode`) were ignored, and its checkpoints computed the default
/// template and aggregation without a word; a misspelt key too.
#[test]
fn the_references_relbert_config_keys_decide_the_vector() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let with = |name: &str, block: Value| with_relbert_config(&d.path().join(name), block);
    let meant = old_template_by_mask(&pairs);
    let (ok, plain, err) = embed(&fixture("tiny-bert"), &pairs, &[]);
    assert!(ok, "{err}");
    assert_ne!(meant, plain);
    for (name, block) in [
        (
            "custom",
            json!({"mode": "mask", "custom_template": OLD_TEMPLATE}),
        ),
        (
            "manual",
            json!({"mode": "mask", "template": OLD_TEMPLATE, "template_mode": "manual"}),
        ),
        (
            "both",
            json!({"mode": "mask", "aggregation_mode": "mask", "template": OLD_TEMPLATE,
                   "custom_template": OLD_TEMPLATE, "trained_on": "semeval"}),
        ),
    ] {
        let (ok, out, err) = embed(&with(name, block), &pairs, &[]);
        assert!(ok, "{name}: {err}");
        assert_eq!(out, meant, "{name}: not the checkpoint's template and mode");
    }
    // Refused, naming the file and the key: two values that disagree, a template that is not
    // written out, a built-in template of old versions.
    for (name, block, want) in [
        (
            "modes",
            json!({"mode": "mask", "aggregation_mode": "average"}),
            "\"aggregation_mode\" \"average\" and \"mode\" \"mask\"",
        ),
        (
            "templates",
            json!({"template": OLD_TEMPLATE, "custom_template": "<subj> <mask> <obj>"}),
            "\"custom_template\" \"<subj> <mask> <obj>\"",
        ),
        (
            "auto",
            json!({"template_mode": "auto"}),
            "template_mode \"auto\"",
        ),
        (
            "letter",
            json!({"template_type": "z"}),
            "template_type \"z\" is not one of the reference's built-in templates (a, b, c, d, e, f, g, h, i)",
        ),
    ] {
        let err = refusal(&with(name, block), &pairs);
        assert!(err.contains(&format!("{name}/config.json")), "{err}");
        assert!(err.contains(want), "{name}: {want:?} not in {err}");
    }
    // Any other key is metadata the reference also stores there: used as before, with a
    // warning naming it, so that a misspelt key is seen.
    let (ok, out, err) = embed(
        &with("typo", json!({"agregation_mode": "mask"})),
        &pairs,
        &[],
    );
    assert!(ok, "{err}");
    assert_eq!(out, plain);
    assert!(
        err.contains("typo/config.json") && err.contains("\"agregation_mode\""),
        "{err}"
    );
}

/// Audit K2: a model whose prompt vectors are all zero (a LayerNorm of zeros) was not caught:
/// `embed` wrote zero "unit" vectors, and `index build` said only "zero vector at row 0".
#[test]
fn a_model_giving_zero_vectors_is_refused_naming_it_and_the_pair() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let model = edited(
        "tiny-bert",
        &d.path().join("zeroed"),
        Edit {
            zero: &[
                "encoder.layer.1.output.LayerNorm.weight",
                "encoder.layer.1.output.LayerNorm.bias",
            ],
            ..Edit::default()
        },
    );
    let err = refusal(&model, &pairs);
    assert!(
        err.contains("zeroed: the model gives an all-zero vector for the pair (")
            && err.contains("model.safetensors"),
        "{err}"
    );
    // Zeros are not an overflow of f16: no hint to try f32 (review of K2).
    let (ok, _, err) = embed(&model, &pairs, &["--dtype", "f16"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("an all-zero vector") && !err.contains("try --dtype f32"),
        "{err}"
    );
    let out = d.path().join("idx");
    let built = relbert()
        .args(["index", "build", "--model"])
        .arg(&model)
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!built.status.success());
    let err = String::from_utf8_lossy(&built.stderr);
    assert!(
        err.contains("zeroed: the model gives an all-zero vector for the pair ("),
        "{err}"
    );
}

/// Audit K5: a file given as `--model` (its config.json) was reported as a missing file of
/// that very name.
#[test]
fn a_file_given_as_the_model_is_called_a_file() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let dir = fixture("tiny-bert");
    let err = refusal(&dir.join("config.json"), &pairs);
    assert!(
        err.contains("is a file, not a model directory")
            && err.contains(&format!("did you mean {}?", dir.display()))
            && !err.contains("missing file"),
        "{err}"
    );
}

/// Found by a review: an index's folder given as `--model` (to `bench`, `embed`, ...) was
/// reported as a model folder missing config.json.
#[test]
fn an_index_given_as_the_model_is_called_an_index() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let idx = common::tiny_index(&pairs, &d.path().join("idx"));
    let err = refusal(&idx, &pairs);
    assert!(
        err.contains("this is a relbert index, not a model directory")
            && err.contains(&format!("relbert index info {}", idx.display()))
            && !err.contains("missing file"),
        "{err}"
    );
}

/// Audit K4: `index build` recorded a model folder whose name is not UTF-8 lossily, and
/// `query` then said the model was not there. Refused before the index is made.
#[test]
fn a_model_folder_not_named_in_utf8_is_refused_by_index_build() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let model = d.path().join(std::ffi::OsStr::from_bytes(b"mod\xff"));
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(fixture("tiny-bert").join(f), model.join(f)).unwrap();
    }
    let out = d.path().join("idx");
    let built = relbert()
        .args(["index", "build", "--model"])
        .arg(&model)
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&built.stderr);
    assert!(!built.status.success(), "{err}");
    assert!(
        err.contains("not valid UTF-8") && err.contains("could not find this folder again"),
        "{err}"
    );
    assert!(!out.exists(), "an index was made: {err}");
}

/// Review of audit K4: the refusal above belongs only where the path is recorded. A model
/// folder not named in UTF-8 still answers `query --model` (its identity is compared, not
/// written) and `bench analogy --json` (which reported it, then failed without the JSON).
#[test]
fn a_model_folder_not_named_in_utf8_still_queries_and_benches() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let good = d.path().join("good");
    let bad = d.path().join(std::ffi::OsStr::from_bytes(b"mod\xff"));
    for model in [&good, &bad] {
        std::fs::create_dir(model).unwrap();
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::copy(fixture("tiny-bert").join(f), model.join(f)).unwrap();
        }
    }
    let idx = d.path().join("idx");
    let built = relbert()
        .args(["index", "build", "--model"])
        .arg(&good)
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&idx)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let q = relbert()
        .args(["query", "--json", "-k", "1", "--index"])
        .arg(&idx)
        .arg("--model")
        .arg(&bad)
        .args(["paris", "france"])
        .output()
        .unwrap();
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let doc: Value = serde_json::from_slice(&q.stdout).unwrap();
    assert_eq!(doc["results"].as_array().unwrap().len(), 1, "{doc}");

    let data = d.path().join("data");
    std::fs::create_dir_all(data.join("sat")).unwrap();
    std::fs::write(
        data.join("sat/test.jsonl"),
        "{\"stem\": [\"paris\", \"france\"], \"choice\": [[\"dog\", \"puppy\"], \
         [\"paris\", \"france\"]], \"answer\": 1, \"prefix\": \"capitals\"}\n",
    )
    .unwrap();
    let json = d.path().join("r.json");
    let b = relbert()
        .args(["bench", "analogy", "--model"])
        .arg(&bad)
        .arg("--data")
        .arg(&data)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(doc.is_object(), "{doc}");
}

/// Review of audit K3: the warning for a `relbert_config` key relbert does not read was given
/// at every read of the config (twice per epoch in training), and did not say the key is
/// dropped from the models relbert writes.
#[test]
fn an_unknown_relbert_config_key_is_warned_about_once() {
    let d = tempfile::tempdir().unwrap();
    toy_data(d.path());
    let model = edited(
        "tiny-bert",
        &d.path().join("typo"),
        Edit {
            config: &[("relbert_config", json!({"trained_on": "x"}))],
            ..Edit::default()
        },
    );
    let out = relbert()
        .args(["train", "--base"])
        .arg(&model)
        .arg("--data")
        .arg(d.path())
        .arg("--out")
        .arg(d.path().join("m"))
        .args(["--epochs", "2", "--batch-size", "4"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("\"trained_on\"").count(), 1, "{err}");
    assert!(
        err.contains("is not read (and not carried into models relbert writes)"),
        "{err}"
    );
}

/// Review FM: a letter naming one of the oldest reference versions' built-in templates
/// (`template_type`, later `custom_template_type`) was refused; it now computes that template.
/// A trained (continuous) prompt, a JSON object as `template`, was refused with serde's
/// "invalid type: map"; it is now named for what it is.
#[test]
fn a_template_letter_computes_the_references_template_and_a_map_is_named() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let with = |name: &str, block: Value| with_relbert_config(&d.path().join(name), block);
    let meant = old_template_by_mask(&pairs);
    for (name, block) in [
        ("type", json!({"mode": "mask", "template_type": "a"})),
        (
            "custom_type",
            json!({"mode": "mask", "custom_template_type": "a", "template": null}),
        ),
        (
            "type_and_template",
            json!({"mode": "mask", "template_type": "a", "template": OLD_TEMPLATE}),
        ),
        // The written template wins over another letter, as in the reference.
        (
            "other_letter",
            json!({"mode": "mask", "template_type": "c", "template": OLD_TEMPLATE}),
        ),
    ] {
        let (ok, out, err) = embed(&with(name, block), &pairs, &[]);
        assert!(ok, "{name}: {err}");
        assert_eq!(out, meant, "{name}: not template \"a\"");
    }
    // "b" keeps the reference's spelling (two spaces, a literal A's).
    let (ok, b, err) = embed(
        &with("b", json!({"mode": "mask", "template_type": "b"})),
        &pairs,
        &[],
    );
    assert!(ok, "{err}");
    let (ok, b_meant, err) = embed(
        &fixture("tiny-bert"),
        &pairs,
        &[
            "--template",
            "Today, I finally discovered the relation between <subj> and <obj> : <obj>  is A's <mask>",
            "--aggregation",
            "mask",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(b, b_meant);
    for (name, block, want) in [
        (
            "map",
            json!({"template": {"top": [1, 2], "mid": [], "bottom": [3]}}),
            "relbert_config.template is a JSON object: a trained (continuous) prompt, which is not supported",
        ),
        (
            "custom_z",
            json!({"custom_template_type": "z"}),
            "relbert_config.custom_template_type \"z\" is not one of the reference's built-in templates (a, b, c",
        ),
    ] {
        let err = refusal(&with(name, block), &pairs);
        assert!(err.contains(&format!("{name}/config.json")), "{err}");
        assert!(err.contains(want), "{name}: {want:?} not in {err}");
        assert!(!err.contains("invalid type"), "{err}");
    }
}

/// Sets whether `model`'s tokenizer.json normalizer lower-cases text.
fn set_lowercase(model: &Path, lowercase: bool) {
    let path = model.join("tokenizer.json");
    let mut tok: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    tok["normalizer"]["lowercase"] = json!(lowercase);
    std::fs::write(path, tok.to_string()).unwrap();
}

/// The tiny-bert fixture's tokenizer_config.json, to edit.
fn tiny_tokenizer_config() -> Value {
    serde_json::from_slice(
        &std::fs::read(fixture("tiny-bert").join("tokenizer_config.json")).unwrap(),
    )
    .unwrap()
}

/// Review FM: relbert never read tokenizer_config.json, and a BERT model whose
/// `do_lower_case` there disagrees with tokenizer.json's normalizer (which transformers'
/// BertTokenizer rebuilds from `do_lower_case`) encoded text otherwise than transformers
/// without a word. relbert still follows tokenizer.json, and warns naming both files.
#[test]
fn a_do_lower_case_that_disagrees_with_tokenizer_json_is_warned_about() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let (ok, plain, err) = embed(&fixture("tiny-bert"), &pairs, &[]);
    assert!(ok, "{err}");
    assert!(!err.contains("do_lower_case"), "{err}");
    let model = edited("tiny-bert", &d.path().join("cased"), Edit::default());
    let mut tc = tiny_tokenizer_config();
    // The generic class (the fixture's) reads no do_lower_case: transformers, as relbert,
    // follows tokenizer.json, and nothing is said.
    tc["do_lower_case"] = json!(true);
    std::fs::write(model.join("tokenizer_config.json"), tc.to_string()).unwrap();
    let (ok, out, err) = embed(&model, &pairs, &[]);
    assert!(ok, "{err}");
    assert_eq!(out, plain);
    assert!(!err.contains("do_lower_case"), "{err}");
    // BertTokenizer rebuilds the normalizer from do_lower_case. The fixture's normalizer
    // keeps case: agreeing, nothing is said.
    tc["tokenizer_class"] = json!("BertTokenizer");
    tc["do_lower_case"] = json!(false);
    std::fs::write(model.join("tokenizer_config.json"), tc.to_string()).unwrap();
    let (ok, out, err) = embed(&model, &pairs, &[]);
    assert!(ok, "{err}");
    assert_eq!(out, plain);
    assert!(!err.contains("do_lower_case"), "{err}");
    tc["do_lower_case"] = json!(true);
    std::fs::write(model.join("tokenizer_config.json"), tc.to_string()).unwrap();
    let (ok, out, err) = embed(&model, &pairs, &[]);
    assert!(ok, "{err}");
    assert_eq!(out, plain, "still tokenizer.json's normalizer");
    assert!(
        err.contains("cased/tokenizer_config.json sets \"do_lower_case\": true")
            && err.contains("cased/tokenizer.json keeps case"),
        "{err}"
    );
    assert_eq!(err.matches("do_lower_case\": true").count(), 1, "{err}");
}

/// Task M1: transformers 5.17's AutoTokenizer builds `BertTokenizer` for a BERT folder whose
/// tokenizer_config.json has no `do_lower_case` (or no `tokenizer_class`, or which has no
/// tokenizer_config.json at all), and its `do_lower_case` defaults to true: it lower-cases a
/// tokenizer.json whose normalizer keeps case. Only an explicit disagreement was warned
/// about; these encoded text otherwise than transformers without a word.
#[test]
fn a_do_lower_case_left_to_its_default_is_compared_too() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let (ok, plain, err) = embed(&fixture("tiny-bert"), &pairs, &[]);
    assert!(ok, "{err}");
    let base = tiny_tokenizer_config();
    // `None`: no tokenizer_config.json; else the fixture's with `tokenizer_class` set to the
    // value (removed for null), without do_lower_case.
    let cased = |name: &str, class: Option<Value>, lowercase: bool| -> PathBuf {
        let model = edited("tiny-bert", &d.path().join(name), Edit::default());
        if let Some(class) = class {
            let mut tc = base.clone();
            tc["tokenizer_class"] = class;
            if tc["tokenizer_class"].is_null() {
                tc.as_object_mut().unwrap().remove("tokenizer_class");
            }
            std::fs::write(model.join("tokenizer_config.json"), tc.to_string()).unwrap();
        }
        set_lowercase(&model, lowercase);
        model
    };
    for (name, class, want) in [
        (
            "bert_class",
            Some(json!("BertTokenizer")),
            "bert_class/tokenizer_config.json has no \"do_lower_case\", which transformers' \
             BertTokenizer takes as true, but the normalizer of ",
        ),
        (
            "no_class",
            Some(Value::Null),
            "no_class/tokenizer_config.json has no \"do_lower_case\"",
        ),
        (
            "fast_class",
            Some(json!("BertTokenizerFast")),
            "fast_class/tokenizer_config.json has no \"do_lower_case\"",
        ),
        (
            "no_file",
            None,
            "no_file/tokenizer_config.json is absent, so transformers' AutoTokenizer loads \
             BertTokenizer",
        ),
    ] {
        let model = cased(name, class, false);
        let (ok, out, err) = embed(&model, &pairs, &[]);
        assert!(ok, "{name}: {err}");
        assert_eq!(out, plain, "{name}: still tokenizer.json's normalizer");
        assert!(
            err.contains(want)
                && err.contains(&format!("{name}/tokenizer.json keeps case"))
                && err.contains("set \"do_lower_case\": false in tokenizer_config.json"),
            "{name}: {err}"
        );
    }
    // The reverse agrees with transformers' default: a lower-casing normalizer and no
    // do_lower_case (or no tokenizer_config.json) say nothing; nor does a cased one under the
    // generic class, which reads no do_lower_case.
    for (name, class) in [
        ("lower_bert", Some(json!("BertTokenizer"))),
        ("lower_no_file", None),
        ("generic", Some(json!("PreTrainedTokenizerFast"))),
    ] {
        let model = cased(name, class, name != "generic");
        let (ok, _, err) = embed(&model, &pairs, &[]);
        assert!(ok, "{name}: {err}");
        assert!(!err.contains("do_lower_case"), "{name}: {err}");
    }
}

/// Review M2: AutoTokenizer takes config.json's `tokenizer_class` when tokenizer_config.json
/// is absent or names no class; the generic class there reads no do_lower_case, yet relbert
/// warned that transformers' BertTokenizer would lower-case. A class in
/// tokenizer_config.json still comes first.
#[test]
fn a_tokenizer_class_in_config_json_is_read_too() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let base = tiny_tokenizer_config();
    for (name, tconfig_class, warned) in [
        ("no_file", None, false),
        ("no_class", Some(Value::Null), false),
        ("bert_class", Some(json!("BertTokenizer")), true),
    ] {
        let model = edited(
            "tiny-bert",
            &d.path().join(name),
            Edit {
                config: &[("tokenizer_class", json!("PreTrainedTokenizerFast"))],
                ..Edit::default()
            },
        );
        if let Some(class) = tconfig_class {
            let mut tc = base.clone();
            let obj = tc.as_object_mut().unwrap();
            obj.remove("tokenizer_class");
            obj.remove("do_lower_case");
            if !class.is_null() {
                obj.insert("tokenizer_class".into(), class);
            }
            std::fs::write(model.join("tokenizer_config.json"), tc.to_string()).unwrap();
        }
        set_lowercase(&model, false);
        let (ok, _, err) = embed(&model, &pairs, &[]);
        assert!(ok, "{name}: {err}");
        assert_eq!(
            err.contains(&format!("{name}/tokenizer.json keeps case")),
            warned,
            "{name}: {err}"
        );
    }
}

/// Task M2: `template_type` "e" (the reference's built-in template without <subj>) was
/// refused as "relbert_config.template: template ... must contain", a key the file does not
/// have, with nothing to do about it.
#[test]
fn an_unsupported_template_letter_is_refused_naming_its_key() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    for key in ["template_type", "custom_template_type"] {
        let name = format!("letter_{key}");
        let model = with_relbert_config(&d.path().join(&name), json!({ key: "e" }));
        let err = refusal(&model, &pairs);
        assert!(
            err.contains(&format!(
                "{name}/config.json: relbert_config.{key} \"e\" names the reference's built-in \
                 template"
            )) && err.contains("which has no <subj>")
                && err.contains("Write the prompt to use as \"template\" in relbert_config")
                && err.contains("or pass --template")
                && !err.contains("relbert_config.template:"),
            "{err}"
        );
        // Review M2: the refusal sat in the config reader, so such a model could not be used
        // even with --template, which overrides the config's template.
        let (ok, out, err) = embed(
            &model,
            &pairs,
            &["--template", OLD_TEMPLATE, "--aggregation", "mask"],
        );
        assert!(ok, "{key} with --template: {err}");
        assert_eq!(out, old_template_by_mask(&pairs), "{key}");
    }
    // With a written template the letter is not used, as in the reference.
    let (ok, out, err) = embed(
        &with_relbert_config(
            &d.path().join("written"),
            json!({"template_type": "e", "template": OLD_TEMPLATE, "mode": "mask"}),
        ),
        &pairs,
        &[],
    );
    assert!(ok, "{err}");
    assert_eq!(out, old_template_by_mask(&pairs));
}

/// Task M3: transformers numbers RoBERTa's positions from `input_ids != padding_idx`
/// (`create_position_ids_from_input_ids`), so a word that tokenises to the literal `<pad>`
/// takes position padding_idx and the tokens after it count one fewer; relbert numbered by
/// place, and such pairs got other vectors (cosine 0.9976 for ("<pad>", "x")). Golden
/// vectors: tests/fixtures/tiny_roberta_pad_golden.json, made by the .py beside it, which
/// pools as the reference does, by id: the literal `<pad>` is attended to but not summed
/// (summed, as relbert did, the averages were off by cosine 0.9994 to 0.9998).
#[test]
fn a_literal_pad_token_takes_transformers_positions() {
    use relbert::encoder::Mode;
    use relbert::pooling::Aggregation;
    use relbert::{EncoderOptions, RelationEncoder};
    let g: Value =
        serde_json::from_slice(&std::fs::read(fixture("tiny_roberta_pad_golden.json")).unwrap())
            .unwrap();
    let pairs: Vec<(String, String)> = g["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
        .collect();
    let golden = |agg: &str, i: usize| -> Vec<f32> {
        g[agg][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let close = |got: &[f32], want: &[f32], what: &str| {
        let cos = common::cosine(&common::unit(got), want);
        let diff = common::unit(got)
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            cos >= 0.99999 && diff <= 1e-4,
            "{what}: cosine {cos}, max diff {diff}"
        );
    };
    // The command line (the CPU kernels).
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("pad.tsv");
    let text: String = pairs.iter().map(|(h, t)| format!("{h}\t{t}\n")).collect();
    std::fs::write(&file, text).unwrap();
    for agg in Aggregation::ALL {
        let (ok, out, err) = embed(
            &fixture("tiny-roberta"),
            &file,
            &["--aggregation", agg.name()],
        );
        assert!(ok, "{err}");
        for (i, line) in out.lines().enumerate() {
            let v: Value = serde_json::from_str(line).unwrap();
            let got: Vec<f32> = v["vector"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            close(
                &got,
                &golden(agg.name(), i),
                &format!("embed {agg} {:?}", pairs[i]),
            );
        }
    }
    // The padded batches of the tensor path (training, GPUs), several lengths in one batch.
    let enc = RelationEncoder::load(&fixture("tiny-roberta"), &EncoderOptions::default()).unwrap();
    let toks = enc
        .tokenizer()
        .encode_pairs(enc.template(), &pairs)
        .unwrap();
    let seqs: Vec<&[u32]> = toks.iter().map(|t| t.ids.as_slice()).collect();
    for (i, t) in toks.iter().enumerate() {
        let want: Vec<u32> = g["input_ids"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(t.ids, want, "token ids of {:?}", pairs[i]);
        let positions: Vec<u32> = g["position_ids"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            enc.encoder().position_ids(t.ids.as_slice(), t.ids.len()),
            positions
        );
    }
    for mode in [Mode::Inference, Mode::Train] {
        let pooled = enc
            .forward_pooled(&seqs, mode)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (i, got) in pooled.iter().enumerate() {
            close(
                got,
                &golden("average_no_mask", i),
                &format!("{mode:?} {:?}", pairs[i]),
            );
        }
    }
}

/// A pair whose word holds a placeholder of the template is refused, naming file, line and
/// word, as the reference refuses it: relbert filled it into the prompt, so (`<obj>`, paris)
/// was written with the vector of (paris, paris). Nothing is written.
#[test]
fn embed_refuses_a_word_holding_a_placeholder() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("p.tsv");
    std::fs::write(&file, "paris\tfrance\n<obj>\tparis\n").unwrap();
    let (ok, out, err) = embed(&fixture("tiny-bert"), &file, &[]);
    assert!(!ok, "{out}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("p.tsv:2: ") && err.contains("the word \"<obj>\" holds <obj>"),
        "{err}"
    );
}

/// The reference pools by token id (`input_ids_to_labels`): `average` leaves out every token
/// whose id is the pad token's, `average_no_mask` the pad's and the mask's. A word typed with
/// the literal pad token (`<pad>` on RoBERTa, `[PAD]` on BERT) is attended to, but not
/// summed. Checked on both fixtures against an explicit sum of the encoder's hidden states
/// over the positions that rule selects, for the CPU kernels (`embed_raw`) and the padded
/// tensor batches (`forward_pooled`, training and GPUs); relbert summed the pad position.
#[test]
fn a_literal_pad_token_in_a_word_is_left_out_of_the_sum() {
    use relbert::encoder::Mode;
    use relbert::pooling::Aggregation;
    use relbert::{EncoderOptions, RelationEncoder};
    for (model, pad) in [("tiny-roberta", "<pad>"), ("tiny-bert", "[PAD]")] {
        let pairs: Vec<(String, String)> = vec![
            (pad.to_string(), "x".to_string()),
            ("dog".to_string(), format!("a{pad}b cat")),
            ("paris".to_string(), "france".to_string()),
        ];
        for agg in [Aggregation::AverageNoMask, Aggregation::Average] {
            let enc = RelationEncoder::load(
                &fixture(model),
                &EncoderOptions {
                    aggregation: Some(agg),
                    offset_weight: Some(0.0),
                    ..EncoderOptions::default()
                },
            )
            .unwrap();
            let tok = enc.tokenizer();
            let (pad_id, mask_id) = (tok.pad_id(), tok.mask_id());
            let toks = tok.encode_pairs(enc.template(), &pairs).unwrap();
            let raw = enc.embed_raw(&pairs).unwrap();
            let seqs: Vec<&[u32]> = toks.iter().map(|t| t.ids.as_slice()).collect();
            let batched = enc
                .forward_pooled(&seqs, Mode::Inference)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (i, t) in toks.iter().enumerate() {
                let what = format!("{model} {agg} {:?}", pairs[i]);
                let literal_pad = t.ids.contains(&pad_id);
                assert_eq!(literal_pad, i < 2, "{what}: {:?}", t.ids);
                // Hidden states of the prompt alone: a batch of one, no padding.
                let batch = relbert::batching::make_batch(
                    &[t.ids.as_slice()],
                    pad_id,
                    mask_id,
                    agg,
                    |ids, n| enc.encoder().position_ids(ids, n),
                );
                let hidden: Vec<Vec<f32>> = enc
                    .encoder()
                    .forward(&batch.input, Mode::Inference)
                    .unwrap()
                    .to_vec3::<f32>()
                    .unwrap()
                    .remove(0);
                let sum = |keep: &dyn Fn(u32) -> bool| -> Vec<f32> {
                    let mut v = vec![0f32; hidden[0].len()];
                    for (h, &id) in hidden.iter().zip(&t.ids) {
                        if keep(id) {
                            v.iter_mut().zip(h).for_each(|(a, b)| *a += b);
                        }
                    }
                    v
                };
                let reference = match agg {
                    Aggregation::AverageNoMask => sum(&|id| id != pad_id && id != mask_id),
                    _ => sum(&|id| id != pad_id),
                };
                for (got, path) in [(&raw[i], "embed_raw"), (&batched[i], "forward_pooled")] {
                    let diff = got
                        .iter()
                        .zip(&reference)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(diff <= 1e-4, "{what} {path}: max diff {diff}");
                }
                if literal_pad {
                    // The pad position's state is no zero vector: summing it shows.
                    let with_pad = match agg {
                        Aggregation::AverageNoMask => sum(&|id| id != mask_id),
                        _ => sum(&|_| true),
                    };
                    let apart = with_pad
                        .iter()
                        .zip(&reference)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(apart > 1e-2, "{what}: the pad's state is too small to tell");
                }
            }
        }
    }
}

/// Pairs whose prompts hold `[UNK]` (id 1 of tiny-bert: "Café" and "École" are not in its
/// vocabulary) and "the" (id 188), for the pad id checks below.
fn unk_and_the_pairs(dir: &Path) -> PathBuf {
    let p = dir.join("unk.tsv");
    std::fs::write(&p, "paris\tfrance\nCafé\tÉcole\nthe dog\tthe cat\n").unwrap();
    p
}

/// Review s32: pooling left out the token whose id is config.json's `pad_token_id`, while
/// the reference (`input_ids_to_labels`) leaves out the tokenizer's pad token: with
/// `"pad_token_id": 1` (`[UNK]`) the pair with unknown words lost its `[UNK]` tokens (cosine
/// 0.99939 against transformers), with 188 ("the") every pair lost its "the", without a word.
/// On BERT config.json's pad id changes nothing else at inference, so the vectors are the
/// unmodified fixture's, and the disagreement is warned of once, naming both files and ids.
#[test]
fn pooling_leaves_out_the_tokenizers_pad_token_not_config_jsons_pad_token_id() {
    let d = tempfile::tempdir().unwrap();
    let pairs = unk_and_the_pairs(d.path());
    let (ok, plain, err) = embed(&fixture("tiny-bert"), &pairs, &[]);
    assert!(ok, "{err}");
    assert!(!err.contains("pad_token_id"), "{err}");
    for (id, token, tconfig) in [(1, "[UNK]", true), (188, "the", false)] {
        let name = format!("pad{id}");
        let model = edited(
            "tiny-bert",
            &d.path().join(&name),
            Edit {
                config: &[("pad_token_id", json!(id))],
                ..Edit::default()
            },
        );
        // The fixture's tokenizer_config.json names "[PAD]"; without one, transformers'
        // BertTokenizer takes "[PAD]" by default.
        let source = if tconfig {
            std::fs::copy(
                fixture("tiny-bert").join("tokenizer_config.json"),
                model.join("tokenizer_config.json"),
            )
            .unwrap();
            format!(
                "\"pad_token\" of {}",
                model.join("tokenizer_config.json").display()
            )
        } else {
            "transformers' BertTokenizer default".to_string()
        };
        let (ok, out, err) = embed(&model, &pairs, &[]);
        assert!(ok, "{name}: {err}");
        assert_eq!(out, plain, "{name}: pooled by the tokenizer's pad id");
        let want = format!(
            "{} has \"pad_token_id\": {id} ({token:?} in tokenizer.json) but the tokenizer's \
             pad token is \"[PAD]\" (id 0, {source}",
            model.join("config.json").display()
        );
        assert!(err.contains(&want), "{name}: {err}");
        assert_eq!(err.matches("pad_token_id\": ").count(), 1, "{name}: {err}");
    }
}

/// The tokenizer's pad token as transformers 5.25's AutoTokenizer resolves it (checked with
/// it: `tok.pad_token_id` for each of these folders): special_tokens_map.json before
/// tokenizer_config.json, a `{"content": …}` token as well as a string, the padding block of
/// tokenizer.json for the generic class only, the class's own default otherwise; where the
/// named token is not in the vocabulary, config.json's id. The files digest follows the id.
#[test]
fn the_pad_token_is_found_where_transformers_finds_it() {
    use relbert::{EncoderOptions, RelationEncoder};
    let d = tempfile::tempdir().unwrap();
    let base = tiny_tokenizer_config();
    let base_digest = relbert::config::function_files_digest_of(&fixture("tiny-bert")).unwrap();
    let unk = json!({"content": "[UNK]", "lstrip": false, "rstrip": false,
                     "normalized": false, "single_word": false, "__type": "AddedToken"});
    let padding = json!({"strategy": "BatchLongest", "direction": "Right",
                         "pad_to_multiple_of": null, "pad_id": 3, "pad_type_id": 0,
                         "pad_token": "[SEP]"});
    // (name, tokenizer_config.json keys to set (null: remove), special_tokens_map.json,
    // tokenizer.json padding block, the pad id)
    type Case = (&'static str, Value, Option<Value>, Option<Value>, u32);
    let cases: [Case; 8] = [
        ("fixture", json!({}), None, None, 0),
        ("tconfig", json!({"pad_token": "[UNK]"}), None, None, 1),
        ("added_token", json!({"pad_token": unk}), None, None, 1),
        (
            "map_first",
            json!({}),
            Some(json!({"pad_token": "the"})),
            None,
            188,
        ),
        (
            "padding",
            json!({"pad_token": null}),
            None,
            Some(padding.clone()),
            3,
        ),
        (
            "class_default",
            json!({"pad_token": null, "tokenizer_class": "BertTokenizer"}),
            None,
            Some(padding),
            0,
        ),
        (
            "not_in_vocab",
            json!({"pad_token": "<nope>"}),
            None,
            None,
            0,
        ),
        ("none", json!({"pad_token": null}), None, None, 0),
    ];
    for (name, set, map, padding, want) in cases {
        let model = edited("tiny-bert", &d.path().join(name), Edit::default());
        let mut tc = base.clone();
        for (k, v) in set.as_object().unwrap() {
            if v.is_null() {
                tc.as_object_mut().unwrap().remove(k);
            } else {
                tc[k] = v.clone();
            }
        }
        std::fs::write(model.join("tokenizer_config.json"), tc.to_string()).unwrap();
        if let Some(map) = map {
            std::fs::write(model.join("special_tokens_map.json"), map.to_string()).unwrap();
        }
        if let Some(padding) = padding {
            let path = model.join("tokenizer.json");
            let mut tok: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            tok["padding"] = padding;
            std::fs::write(path, tok.to_string()).unwrap();
        }
        let enc = RelationEncoder::load(&model, &EncoderOptions::default()).unwrap();
        assert_eq!(enc.tokenizer().pad_id(), want, "{name}");
        let digest = relbert::config::function_files_digest_of(&model).unwrap();
        assert_eq!(digest == base_digest, want == 0, "{name}: files digest");
    }
}

/// Review s32: a RoBERTa folder whose tokenizer_config.json sets `add_prefix_space` other than
/// its tokenizer.json's pre-tokenizer (or leaves it to transformers' default, false) was
/// encoded otherwise than transformers (whose RobertaTokenizer, what AutoTokenizer loads,
/// rebuilds the pre-tokenizer from it) without a word: cosine about 0.999 on every pair.
/// relbert still follows tokenizer.json, and warns naming both files; the generic class,
/// which keeps tokenizer.json's, says nothing.
#[test]
fn an_add_prefix_space_that_disagrees_with_tokenizer_json_is_warned_about() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    let (ok, plain, err) = embed(&fixture("tiny-roberta"), &pairs, &[]);
    assert!(ok, "{err}");
    assert!(!err.contains("add_prefix_space"), "{err}");
    let set_prefix_space = |model: &Path, on: bool| {
        let path = model.join("tokenizer.json");
        let mut tok: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        tok["pre_tokenizer"]["add_prefix_space"] = json!(on);
        tok["post_processor"]["add_prefix_space"] = json!(on);
        std::fs::write(path, tok.to_string()).unwrap();
    };
    // (name, tokenizer_config.json (None: no file), tokenizer.json's add_prefix_space,
    // the start of the warning, or None for none)
    let cases: [(&str, Option<Value>, bool, Option<&str>); 7] = [
        (
            "config_true",
            Some(json!({"tokenizer_class": "RobertaTokenizer", "add_prefix_space": true})),
            false,
            Some("config_true/tokenizer_config.json sets \"add_prefix_space\": true but"),
        ),
        (
            "config_false",
            Some(json!({"tokenizer_class": "RobertaTokenizerFast", "add_prefix_space": false})),
            true,
            Some("config_false/tokenizer_config.json sets \"add_prefix_space\": false but"),
        ),
        (
            "config_unset",
            Some(json!({"tokenizer_class": "RobertaTokenizer"})),
            true,
            Some(
                "config_unset/tokenizer_config.json has no \"add_prefix_space\", which \
                 transformers' RobertaTokenizer takes as false, but",
            ),
        ),
        (
            "no_file",
            None,
            true,
            Some("no_file/tokenizer_config.json is absent, so transformers' AutoTokenizer"),
        ),
        (
            "agree",
            Some(json!({"tokenizer_class": "RobertaTokenizer", "add_prefix_space": false})),
            false,
            None,
        ),
        ("agree_no_file", None, false, None),
        (
            "generic",
            Some(json!({"tokenizer_class": "PreTrainedTokenizerFast", "add_prefix_space": true})),
            false,
            None,
        ),
    ];
    for (name, tconfig, on, warned) in cases {
        let model = edited("tiny-roberta", &d.path().join(name), Edit::default());
        if let Some(tc) = tconfig {
            std::fs::write(model.join("tokenizer_config.json"), tc.to_string()).unwrap();
        }
        set_prefix_space(&model, on);
        let (ok, out, err) = embed(&model, &pairs, &[]);
        assert!(ok, "{name}: {err}");
        if !on {
            assert_eq!(out, plain, "{name}: still tokenizer.json's pre-tokenizer");
        }
        match warned {
            Some(want) => {
                assert!(
                    err.contains(want)
                        && err.contains(&format!(
                            "{name}/tokenizer.json has \"add_prefix_space\": {on}"
                        ))
                        && err.contains("AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)"),
                    "{name}: {err}"
                );
                assert_eq!(
                    err.matches("rebuilds the pre-tokenizer").count(),
                    1,
                    "{name}: {err}"
                );
            }
            None => assert!(!err.contains("add_prefix_space"), "{name}: {err}"),
        }
    }
}

/// Review s32: a folder holding a slow tokenizer's files alone (vocab.txt for BERT,
/// vocab.json and merges.txt for RoBERTa, as older checkpoints were saved) was refused as
/// "missing file .../tokenizer.json", which sent users looking for a file they believed they
/// had. The refusal names what is there and the conversion (checked with transformers 5.25:
/// it writes a tokenizer.json that tokenises as the fixtures' do).
#[test]
fn slow_tokenizer_files_without_tokenizer_json_are_named() {
    let d = tempfile::tempdir().unwrap();
    let pairs = two_pairs(d.path());
    for (fixture_name, files) in [
        ("tiny-bert", &["vocab.txt"][..]),
        ("tiny-roberta", &["vocab.json", "merges.txt"][..]),
        ("tiny-bert", &[][..]),
    ] {
        let model = d.path().join(format!("{fixture_name}-{}", files.len()));
        std::fs::create_dir_all(&model).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(fixture(fixture_name).join(f), model.join(f)).unwrap();
        }
        for f in files {
            std::fs::write(model.join(f), "x\n").unwrap();
        }
        let err = refusal(&model, &pairs);
        if files.is_empty() {
            // Nothing in its place: the plain missing-file message.
            assert!(err.contains("missing file"), "{err}");
            continue;
        }
        assert!(
            err.contains("tokenizer.json: not there")
                && err.contains(&format!("holds {} instead", files.join(" and ")))
                && err.contains("AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)"),
            "{err}"
        );
    }
}

/// Adds to the Hugging Face Hub cache at `cache` the Hub model `repo` with a snapshot per
/// `(commit, fixture model, files left out)` and the refs `(name, commit)`, laid out as
/// `huggingface_hub` lays it out: the files in `blobs/`, each commit's snapshot of links to
/// them, and `refs/NAME` holding a commit.
fn hub_cache(cache: &Path, repo: &str, commits: &[(&str, &str, &[&str])], refs: &[(&str, &str)]) {
    let folder = cache.join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(folder.join("blobs")).unwrap();
    for (commit, name, left_out) in commits {
        let snapshot = folder.join("snapshots").join(commit);
        std::fs::create_dir_all(&snapshot).unwrap();
        for entry in std::fs::read_dir(fixture(name)).unwrap() {
            let file = entry.unwrap().file_name();
            if left_out.iter().any(|f| file == **f) {
                continue;
            }
            let blob = format!("{commit}-{}", file.to_string_lossy());
            std::fs::copy(fixture(name).join(&file), folder.join("blobs").join(&blob)).unwrap();
            let link = Path::new("../../blobs").join(&blob);
            std::os::unix::fs::symlink(link, snapshot.join(&file)).unwrap();
        }
    }
    for (name, commit) in refs {
        let f = folder.join("refs").join(name);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, commit).unwrap();
    }
}

/// `relbert ARGS` in `cwd` with the Hub cache variables removed (the machine's own must not
/// be read) and `env` set, killed after 2 minutes.
fn relbert_in(cwd: &Path, args: &[&str], env: &[(&str, &Path)]) -> assert_cmd::assert::Assert {
    let mut c = relbert();
    c.current_dir(cwd)
        .timeout(std::time::Duration::from_secs(120));
    for v in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HOME",
        "XDG_CACHE_HOME",
        "RELBERT_MODEL",
    ] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).assert()
}

/// `relbert embed` of two pairs (`pairs.tsv`, written in `cwd`) to standard output, with
/// `--model MODEL` when given.
fn embed_in(cwd: &Path, model: Option<&str>, env: &[(&str, &Path)]) -> assert_cmd::assert::Assert {
    std::fs::write(cwd.join("pairs.tsv"), "paris\tfrance\ndog\tpuppy\n").unwrap();
    let mut args = vec!["embed", "--pairs", "pairs.tsv"];
    if let Some(m) = model {
        args.extend(["--model", m]);
    }
    relbert_in(cwd, &args, env)
}

fn stdout_of(a: assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.success().get_output().stdout.clone()).unwrap()
}

fn stderr_of(a: assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.failure().code(1).get_output().stderr).into_owned()
}

/// A model a user has from Python (transformers, sentence-transformers, `hf download`) is
/// named by its Hub id and read from the local Hub cache, found as `huggingface_hub` finds
/// it: `main` by default, another ref or a commit after `@` (each its own snapshot: here
/// `main` is the tiny BERT and `v1` the tiny RoBERTa), by `--model` or `$RELBERT_MODEL`; and
/// the vectors' file records the snapshot, which names the commit.
#[test]
fn a_hub_id_names_its_snapshot_in_the_local_hub_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    let home = tmp.path().join("hf-home");
    let cache = home.join("hub");
    let (a, b) = ("0123456789abcdef0123456789abcdef01234567", "fedcba98");
    hub_cache(
        &cache,
        "relbert-tests/tiny",
        &[(a, "tiny-bert", &[]), (b, "tiny-roberta", &[])],
        &[("main", a), ("v1", b)],
    );
    let path_of = |name: &str| fixture(name).to_str().unwrap().to_string();
    let bert = stdout_of(embed_in(&cwd, Some(&path_of("tiny-bert")), &[]));
    let roberta = stdout_of(embed_in(&cwd, Some(&path_of("tiny-roberta")), &[]));
    assert_eq!(bert.lines().count(), 2, "{bert}");
    assert_ne!(bert, roberta);
    let with_cache = [("HF_HUB_CACHE", cache.as_path())];
    for (id, want) in [
        ("relbert-tests/tiny".to_string(), &bert),
        (format!("relbert-tests/tiny@{a}"), &bert),
        ("relbert-tests/tiny@v1".to_string(), &roberta),
        (format!("relbert-tests/tiny@{b}"), &roberta),
    ] {
        assert_eq!(
            &stdout_of(embed_in(&cwd, Some(&id), &with_cache)),
            want,
            "{id}"
        );
    }
    // $HF_HOME/hub when $HF_HUB_CACHE is not set; $RELBERT_MODEL takes an id as --model does.
    let by_home = [("HF_HOME", home.as_path())];
    assert_eq!(
        stdout_of(embed_in(&cwd, Some("relbert-tests/tiny"), &by_home)),
        bert
    );
    let by_env = [
        ("HF_HOME", home.as_path()),
        ("RELBERT_MODEL", Path::new("relbert-tests/tiny@v1")),
    ];
    assert_eq!(stdout_of(embed_in(&cwd, None, &by_env)), roberta);
    // The summary of a vector file names the snapshot the vectors came from.
    let args = [
        "embed",
        "--model",
        "relbert-tests/tiny",
        "--pairs",
        "pairs.tsv",
    ];
    let json = relbert_in(
        &cwd,
        &[&args[..], &["--out", "v.npy", "--json"]].concat(),
        &with_cache,
    );
    let json: Value = serde_json::from_slice(&json.success().get_output().stdout).unwrap();
    let model = json["encoder"]["model"].as_str().unwrap();
    assert!(model.ends_with(&format!("snapshots/{a}")), "{json}");
}

/// An id the cache lacks, or a revision it lacks, fails in every command that takes a model,
/// naming the id, where it was looked for and how to fetch it; a snapshot that lacks a file
/// is said how to fetch the rest; a directory of the id's name in the working directory is
/// taken before the cache (as transformers' `from_pretrained` does).
#[test]
fn a_hub_id_the_cache_lacks_is_explained_and_a_local_directory_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    let cache = tmp.path().join("cache");
    hub_cache(
        &cache,
        "relbert-tests/tiny-bert",
        &[("c0ffee", "tiny-bert", &[])],
        &[("main", "c0ffee")],
    );
    hub_cache(
        &cache,
        "relbert-tests/partial",
        &[("beef", "tiny-bert", &["model.safetensors"])],
        &[("main", "beef")],
    );
    let with_cache = [("HF_HUB_CACHE", cache.as_path())];
    let e = stderr_of(embed_in(&cwd, Some("relbert-tests/absent"), &with_cache));
    assert!(
        e.contains("nor a Hub model relbert-tests/absent")
            && e.contains("models--relbert-tests--absent")
            && e.contains("hf download relbert-tests/absent"),
        "{e}"
    );
    let e = stderr_of(embed_in(
        &cwd,
        Some("relbert-tests/tiny-bert@v9"),
        &with_cache,
    ));
    assert!(
        e.contains("not its revision v9") && e.contains("--revision v9"),
        "{e}"
    );
    let e = stderr_of(embed_in(&cwd, Some("relbert-tests/partial"), &with_cache));
    assert!(
        e.contains("hf download relbert-tests/partial --revision beef"),
        "{e}"
    );
    // Each command that takes a model says the same of an id the cache lacks.
    let tiny = fixture("tiny-bert");
    let tiny = tiny.to_str().unwrap();
    relbert_in(
        &cwd,
        &[
            "index",
            "build",
            "--model",
            tiny,
            "--pairs",
            "pairs.tsv",
            "--out",
            "idx",
        ],
        &[],
    )
    .success();
    let absent = "relbert-tests/absent";
    let absent_env = [
        ("HF_HUB_CACHE", cache.as_path()),
        ("RELBERT_MODEL", Path::new(absent)),
    ];
    for (args, env) in [
        (
            &["query", "--index", "idx", "--model", absent, "a", "b"][..],
            &with_cache[..],
        ),
        // On a port of its own, should it start serving after all (the timeout ends it).
        (
            &[
                "serve",
                "--index",
                "idx",
                "--addr",
                "127.0.0.1:0",
                "--model",
                absent,
            ],
            &with_cache,
        ),
        (
            &[
                "index",
                "add",
                "--index",
                "idx",
                "--pairs",
                "pairs.tsv",
                "--model",
                absent,
            ],
            &with_cache,
        ),
        (&["average", absent, tiny, "--out", "avg"], &with_cache),
        (&["embed", "--pairs", "pairs.tsv"], &absent_env),
    ] {
        let e = stderr_of(relbert_in(&cwd, args, env));
        assert!(
            e.contains(&format!("hf download {absent}")),
            "{args:?}: {e}"
        );
    }
    // A directory named like the id, here with the other fixture, is the model.
    let local = cwd.join("relbert-tests/tiny-bert");
    std::fs::create_dir_all(&local).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("tiny-roberta").join(f), local.join(f)).unwrap();
    }
    let roberta = stdout_of(embed_in(
        &cwd,
        Some(fixture("tiny-roberta").to_str().unwrap()),
        &[],
    ));
    let id = "relbert-tests/tiny-bert";
    assert_eq!(stdout_of(embed_in(&cwd, Some(id), &with_cache)), roberta);
}
