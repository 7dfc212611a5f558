//! Training on the tiny fixture model with a toy dataset: the loss goes down, gradients
//! reach every parameter, runs are deterministic, checkpoints reload identically, and the
//! `relbert train` command line works and refuses to overwrite.

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::fixture;
use predicates::prelude::PredicateBooleanExt;
use relbert::datasets::load_relation_file;
use relbert::losses::LossKind;
use relbert::training::{load_training_relations, LrSchedule, TrainConfig, Trainer};
use relbert::{EncoderOptions, RelationEncoder};

const WORDS: [&str; 24] = [
    "cat", "dog", "fish", "bird", "tree", "leaf", "car", "road", "sun", "moon", "red", "blue",
    "king", "queen", "man", "woman", "hot", "cold", "up", "down", "big", "small", "day", "night",
];

fn pair(i: usize, j: usize) -> String {
    format!("[\"{}\", \"{}\"]", WORDS[i % 24], WORDS[j % 24])
}

/// Four relations in two parents, 3 positives and 2 negatives each (train), 2 + 2
/// (validation), plus a two-question sat validation split.
fn toy_data(dir: &Path) {
    let sem = dir.join("semeval2012_relational_similarity");
    std::fs::create_dir_all(&sem).unwrap();
    let ids = ["1a", "1b", "2a", "2b"];
    let mut train = String::new();
    let mut valid = String::new();
    for (r, id) in ids.iter().enumerate() {
        let pos: Vec<String> = (0..3).map(|k| pair(r * 5 + k, r * 5 + k + 12)).collect();
        let neg: Vec<String> = (0..2).map(|k| pair(r * 5 + k + 12, r + k)).collect();
        train.push_str(&format!(
            "{{\"relation_type\": \"{id}\", \"positives\": [{}], \"negatives\": [{}]}}\n",
            pos.join(", "),
            neg.join(", ")
        ));
        let vpos: Vec<String> = (0..2)
            .map(|k| pair(r * 3 + k + 1, r * 3 + k + 13))
            .collect();
        let vneg: Vec<String> = (0..2).map(|k| pair(r * 3 + k + 13, r + 2 * k)).collect();
        valid.push_str(&format!(
            "{{\"relation_type\": \"{id}\", \"positives\": [{}], \"negatives\": [{}]}}\n",
            vpos.join(", "),
            vneg.join(", ")
        ));
    }
    std::fs::write(sem.join("train.jsonl"), train).unwrap();
    std::fs::write(sem.join("validation.jsonl"), valid).unwrap();
    let sat = dir.join("sat");
    std::fs::create_dir_all(&sat).unwrap();
    std::fs::write(
        sat.join("validation.jsonl"),
        "{\"stem\": [\"cat\", \"dog\"], \"choice\": [[\"sun\", \"moon\"], [\"red\", \"blue\"]], \"answer\": 0, \"prefix\": \"t\"}\n\
         {\"stem\": [\"king\", \"queen\"], \"choice\": [[\"man\", \"woman\"], [\"hot\", \"up\"]], \"answer\": 0, \"prefix\": \"t\"}\n",
    )
    .unwrap();
}

fn config(data: &Path, loss: LossKind) -> TrainConfig {
    TrainConfig {
        base: fixture("tiny-bert"),
        data: data.to_path_buf(),
        loss,
        epochs: 1,
        lr: 1e-3,
        warmup: 2,
        batch_size: 8,
        temperature: 0.5,
        ..TrainConfig::default()
    }
}

#[test]
fn steps_lower_the_loss_on_a_fixed_batch() {
    let d = tempfile::tempdir().unwrap();
    toy_data(d.path());
    // All positives and all negatives fit, so every batch of relation 0 is the same.
    let mut t = Trainer::new(&config(d.path(), LossKind::Nce)).unwrap();
    let before = t.loss_for(0).unwrap().0.to_scalar::<f32>().unwrap();
    for _ in 0..6 {
        t.train_step(0).unwrap();
    }
    let after = t.loss_for(0).unwrap().0.to_scalar::<f32>().unwrap();
    assert!(after < before, "loss {before} -> {after}");
}

#[test]
fn extra_training_relations_are_appended_and_duplicate_ids_refused() {
    let d = tempfile::tempdir().unwrap();
    toy_data(d.path());
    let extra = d.path().join("extra.jsonl");
    std::fs::write(
        &extra,
        format!(
            "{{\"relation_type\": \"3a\", \"positives\": [{}, {}], \"negatives\": []}}\n",
            pair(1, 2),
            pair(3, 4)
        ),
    )
    .unwrap();
    let mut cfg = config(d.path(), LossKind::Nce);
    cfg.extra_train = vec![extra.clone()];
    let t = Trainer::new(&cfg).unwrap();
    assert_eq!(t.num_relations(), 5);

    // The same file twice repeats relation 3a: refused, naming the file.
    cfg.extra_train = vec![extra.clone(), extra.clone()];
    let err = Trainer::new(&cfg)
        .err()
        .expect("duplicate relation ids must be refused");
    let msg = err.to_string();
    assert!(msg.contains("extra.jsonl") && msg.contains("3a"), "{msg}");
}

#[test]
fn train_file_replaces_semeval_train_split_only() {
    let d = tempfile::tempdir().unwrap();
    toy_data(d.path());
    let main = d.path().join("extended.jsonl");
    std::fs::write(
        &main,
        format!(
            "{{\"relation_type\": \"1a\", \"positives\": [{}, {}, {}, {}], \"negatives\": [{}]}}\n\
             {{\"relation_type\": \"2a\", \"positives\": [{}, {}], \"negatives\": []}}\n",
            pair(0, 12),
            pair(1, 13),
            pair(2, 14),
            pair(3, 15),
            pair(12, 0),
            pair(5, 17),
            pair(6, 18)
        ),
    )
    .unwrap();
    let mut cfg = config(d.path(), LossKind::Nce);
    cfg.train_file = Some(main.clone());
    let relations = load_training_relations(&cfg).unwrap();
    let ids: Vec<&str> = relations.iter().map(|r| r.relation_type.as_str()).collect();
    assert_eq!(ids, ["1a", "2a"]);
    assert_eq!(relations[0].positives.len(), 4);
    // The trainer steps on the file's relations; --data still supplies validation.
    let mut t = Trainer::new(&cfg).unwrap();
    assert_eq!(t.num_relations(), 2);
    t.train_step(0).unwrap();

    cfg.train_file = Some(d.path().join("missing.jsonl"));
    let msg = load_training_relations(&cfg)
        .expect_err("a missing --train-file must be refused")
        .to_string();
    assert!(msg.contains("missing.jsonl"), "{msg}");
}

#[test]
fn gradient_reaches_every_parameter() {
    let d = tempfile::tempdir().unwrap();
    toy_data(d.path());
    let mut t = Trainer::new(&config(d.path(), LossKind::Nce)).unwrap();
    let (loss, _) = t.loss_for(1).unwrap();
    let grads = loss.backward().unwrap();
    let vars = t.encoder().encoder().vars().unwrap();
    assert!(vars.len() > 10);
    for (name, var) in vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let total = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            total > 0.0 && total.is_finite(),
            "{name}: gradient sum {total}"
        );
    }
}

/// The loss of every step of a fresh trainer's first epoch.
fn first_epoch_losses(cfg: &TrainConfig) -> Vec<f32> {
    let mut t = Trainer::new(cfg).unwrap();
    let order = t.epoch_order();
    order.iter().map(|&r| t.train_step(r).unwrap()).collect()
}

#[test]
fn same_seed_same_losses() {
    let d = tempfile::tempdir().unwrap();
    toy_data(d.path());
    let mut cfg = config(d.path(), LossKind::Nce);
    cfg.num_negative = 5; // sampling matters
    cfg.num_positive = 2;
    let run = first_epoch_losses;
    let a = run(&cfg);
    let b = run(&cfg);
    assert_eq!(a, b);
    cfg.seed = 1;
    assert_ne!(a, run(&cfg));
}

#[test]
fn linear_schedule_changes_only_the_steps_after_the_peak() {
    let d = tempfile::tempdir().unwrap();
    toy_data(d.path());
    let mut cfg = config(d.path(), LossKind::Nce);
    cfg.warmup = 0; // step 0 is the peak under both schedules
    cfg.epochs = 2;
    let run = first_epoch_losses;
    let constant = run(&cfg);
    cfg.lr_schedule = LrSchedule::Linear;
    let linear = run(&cfg);
    assert!(constant.len() >= 3, "{constant:?}");
    // Losses are taken before each update: steps 0 and 1 follow updates at the same rate…
    assert_eq!(constant[..2], linear[..2]);
    // …and step 2 follows step 1's update, already decayed.
    assert_ne!(constant[2], linear[2]);
}

#[test]
fn saved_checkpoint_reloads_and_embeds_identically() {
    let d = tempfile::tempdir().unwrap();
    toy_data(d.path());
    // A base whose config combines the offset: training works on the prompt vectors and does
    // not carry the weight over.
    let mut cfg = config(d.path(), LossKind::Triplet);
    cfg.base = common::fixture_with_offset_weight("tiny-bert", d.path(), Some(0.5));
    let mut t = Trainer::new(&cfg).unwrap();
    assert_eq!(t.encoder().offset_weight(), None);
    for r in 0..t.num_relations() {
        t.train_step(r).unwrap();
    }
    let out = d.path().join("saved");
    std::fs::create_dir_all(&out).unwrap();
    t.save_model(&out).unwrap();
    let reloaded = RelationEncoder::load(&out, &EncoderOptions::default()).unwrap();
    let base = RelationEncoder::load(&fixture("tiny-bert"), &EncoderOptions::default()).unwrap();
    let pairs = vec![
        ("cat".to_string(), "dog".to_string()),
        ("sun".into(), "moon".into()),
    ];
    let a = t.encoder().embed_raw(&pairs).unwrap();
    let b = reloaded.embed_raw(&pairs).unwrap();
    let c = base.embed_raw(&pairs).unwrap();
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    // And training did change the function.
    assert!(a
        .iter()
        .flatten()
        .zip(c.iter().flatten())
        .any(|(x, y)| (x - y).abs() > 1e-4));
    assert_eq!(
        reloaded.relbert_config(),
        t.encoder().relbert_config(),
        "config.json carries relbert_config"
    );
    assert_eq!(reloaded.offset_weight(), None);
    assert_eq!(reloaded.dim(), base.dim());
    // The training data loader still reads the toy data.
    assert_eq!(
        load_relation_file(
            &d.path()
                .join("semeval2012_relational_similarity/train.jsonl")
        )
        .unwrap()
        .len(),
        4
    );
}

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn");
    c
}

#[test]
fn cli_trains_each_loss_and_refuses_existing_out() {
    let d = tempfile::tempdir().unwrap();
    toy_data(d.path());
    for loss in ["nce", "iloob", "triplet"] {
        let out = d.path().join(format!("model-{loss}"));
        let schedule = if loss == "triplet" {
            "linear"
        } else {
            "constant"
        };
        relbert()
            .args(["train", "--base"])
            .arg(fixture("tiny-bert"))
            .arg("--data")
            .arg(d.path())
            .arg("--out")
            .arg(&out)
            .args([
                "--loss",
                loss,
                "--epochs",
                "2",
                "--lr",
                "1e-3",
                "--batch-size",
                "4",
                "--lr-schedule",
                schedule,
            ])
            .assert()
            .success();
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "training_config.json",
            "metrics.json",
        ] {
            assert!(out.join(f).is_file(), "{loss}: {f} missing");
        }
        // A saved model is readable by others, not left with a temporary file's 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out.join("model.safetensors"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o044,
                0o044,
                "{loss}: model.safetensors mode {mode:o}"
            );
        }
        let metrics: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap())
                .unwrap();
        assert_eq!(metrics["epochs"].as_array().unwrap().len(), 2, "{metrics}");
        // With one analogy set the pooled share is that set's accuracy.
        let v = &metrics["epochs"][0]["validation"];
        assert_eq!(v["analogy_pooled"], v["analogy"]["sat"], "{metrics}");
        assert!(metrics["selection_metric"]
            .as_str()
            .unwrap()
            .contains("analogy"));
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("training_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(cfg["config"]["loss"], loss);
        assert_eq!(cfg["config"]["lr_schedule"], schedule);
        assert_eq!(
            cfg["schedule"].as_str().unwrap().contains("decay"),
            schedule == "linear",
            "{cfg}"
        );
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert!(config["relbert_config"]["template"].is_string());
    }
    // No leftovers beside the output.
    let names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    let out = d.path().join("model-nce");
    let before = std::fs::read(out.join("model.safetensors")).unwrap();
    let train_into = |target: &Path, extra: &[&str]| {
        relbert()
            .args(["train", "--base"])
            .arg(fixture("tiny-bert"))
            .arg("--data")
            .arg(d.path())
            .arg("--out")
            .arg(target)
            .args(extra)
            .assert()
            .failure()
    };
    train_into(&out, &[]).stderr(predicates::str::contains("--force"));
    assert_eq!(
        before,
        std::fs::read(out.join("model.safetensors")).unwrap()
    );
    train_into(
        &out,
        &[
            "--epochs", "1", "--lr", "1e-3", "--force", "--loss", "bogus",
        ],
    );
    // Checkpoints in --out, or --out among the checkpoints, are refused before any work
    // (the first locked itself out; the second let the model replace a checkpoint).
    for ckpt in [&out, d.path()] {
        let ckpt = ckpt.to_str().unwrap();
        train_into(
            &out,
            &["--checkpoint-dir", ckpt, "--epochs", "1", "--force"],
        )
        .stderr(predicates::str::contains("--checkpoint-dir"));
    }
    assert_eq!(
        before,
        std::fs::read(out.join("model.safetensors")).unwrap()
    );
}

/// Every tensor of a safetensors file, as float32 values by name.
fn weights(path: &Path) -> std::collections::HashMap<String, Vec<f32>> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(n, t)| {
            let v = t
                .to_dtype(candle_core::DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            (n, v)
        })
        .collect()
}

#[test]
fn checkpoint_dir_keeps_every_epoch_and_average_takes_their_mean() {
    let d = tempfile::tempdir().unwrap();
    toy_data(d.path());
    let out = d.path().join("model");
    let ck = d.path().join("ck");
    let train = |force: bool| {
        let mut c = relbert();
        c.args(["train", "--base"])
            .arg(fixture("tiny-bert"))
            .arg("--data")
            .arg(d.path())
            .arg("--out")
            .arg(&out)
            .arg("--checkpoint-dir")
            .arg(&ck)
            .args(["--epochs", "2", "--lr", "1e-3", "--batch-size", "4"]);
        if force {
            c.arg("--force");
        }
        c.assert()
    };
    train(false).success();
    let e1 = ck.join("epoch-01");
    let e2 = ck.join("epoch-02");
    for e in [&e1, &e2] {
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "training_config.json",
            "epoch_metrics.json",
        ] {
            assert!(e.join(f).is_file(), "{}: {f} missing", e.display());
        }
    }
    // The kept checkpoint is one of the epochs, bit for bit (both float32 here).
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let best = metrics["best_epoch"].as_u64().unwrap() as usize;
    let best_dir = ck.join(relbert::training::epoch_dir_name(best));
    assert_eq!(
        weights(&out.join("model.safetensors")),
        weights(&best_dir.join("model.safetensors"))
    );
    let epoch: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(best_dir.join("epoch_metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(epoch, metrics["epochs"][best - 1]);
    let w1 = weights(&e1.join("model.safetensors"));
    let w2 = weights(&e2.join("model.safetensors"));
    assert_ne!(w1, w2, "the second epoch moved the weights");

    // A second run does not overwrite the checkpoints without --force.
    let before = std::fs::read(e1.join("model.safetensors")).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    train(false)
        .failure()
        .stderr(predicates::str::contains("epoch-01").and(predicates::str::contains("--force")));
    assert_eq!(before, std::fs::read(e1.join("model.safetensors")).unwrap());
    assert!(!out.exists());
    // Nor any later epoch's.
    let aside = d.path().join("epoch-01-aside");
    std::fs::rename(&e1, &aside).unwrap();
    train(false)
        .failure()
        .stderr(predicates::str::contains("epoch-02"));
    assert!(!e1.exists() && !out.exists());
    std::fs::rename(&aside, &e1).unwrap();

    // The average is the element-wise mean, a loadable model with the first's config.
    let soup = d.path().join("soup");
    let average = |out: &Path| {
        relbert()
            .arg("average")
            .arg(&e1)
            .arg(&e2)
            .arg("--out")
            .arg(out)
            .assert()
    };
    average(&soup).success();
    let mean = weights(&soup.join("model.safetensors"));
    assert_eq!(mean.len(), w1.len());
    for (name, m) in &mean {
        for ((x, a), b) in m.iter().zip(&w1[name]).zip(&w2[name]) {
            assert!(
                (x - (a + b) / 2.0).abs() <= 1e-6 * (1.0 + x.abs()),
                "{name}"
            );
        }
    }
    let from: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(soup.join("averaged_from.json")).unwrap())
            .unwrap();
    assert_eq!(from["sources"].as_array().unwrap().len(), 2);
    assert_eq!(from["dtype"], "F32");
    assert_eq!(
        std::fs::read(soup.join("config.json")).unwrap(),
        std::fs::read(e1.join("config.json")).unwrap()
    );
    let enc = RelationEncoder::load(&soup, &EncoderOptions::default()).unwrap();
    let v = enc
        .embed(&[("cat".to_string(), "dog".to_string())])
        .unwrap();
    assert!(v[0].iter().all(|x| x.is_finite()));

    // The average of a checkpoint with itself is that checkpoint.
    let same = d.path().join("same");
    relbert::averaging::average_models(&[e1.clone(), e1.clone()], &same, false, false).unwrap();
    assert_eq!(weights(&same.join("model.safetensors")), w1);

    // Refusals: an existing output, the output among the inputs, one model, another model.
    average(&soup)
        .failure()
        .stderr(predicates::str::contains("--force"));
    let err = relbert::averaging::average_models(
        &[e1.clone(), soup.join("..").join("soup")],
        &soup,
        false,
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--out"), "{err}");
    relbert()
        .arg("average")
        .arg(&e1)
        .arg("--out")
        .arg(d.path().join("one"))
        .assert()
        .failure();
    let err = relbert::averaging::average_models(
        &[e1.clone(), fixture("tiny-roberta")],
        &d.path().join("mixed"),
        false,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("tiny-roberta") && err.contains("config.json"),
        "{err}"
    );
    assert!(!d.path().join("mixed").exists());
}
