//! `relbert average` on copies of the tiny fixture model: where its output may go, what it
//! does with integer tensors and `--half`, what it records, and how it stops on a signal.
#![cfg(feature = "cli")]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command as Std, Stdio};

use assert_cmd::Command;
use candle_core::{DType, Device, Tensor};
use common::{catches_stop_signals, fixture};

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn");
    c
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// A copy of the tiny fixture model at `dir`, its weights changed by `edit`.
fn model(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let from = fixture("tiny-bert");
    for f in std::fs::read_dir(&from).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
    }
    let weights = dir.join("model.safetensors");
    let mut map = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    edit(&mut map);
    candle_core::safetensors::save(&map, &weights).unwrap();
    dir.to_path_buf()
}

/// Position ids as transformers saves them for BERT: `[[0, 1, …, n-1]]`, int64.
/// The standard error of `relbert average M1 M2 --out OUT`, which must exit 2 (a bad
/// command line).
fn refused_out(m1: &Path, m2: &Path, out: &Path) -> String {
    let a = relbert()
        .arg("average")
        .arg(m1)
        .arg(m2)
        .arg("--out")
        .arg(out)
        .assert()
        .code(2);
    stderr_of(&a)
}

fn position_ids(n: i64, last: i64) -> Tensor {
    let mut v: Vec<i64> = (0..n).collect();
    v[n as usize - 1] = last;
    Tensor::from_vec(v, (1, n as usize), &Device::Cpu).unwrap()
}

/// Audit (s21, A3): `average --out` inside an index directory, or a partial build, was
/// written there, and the index then refused `index add` and `index build --force` ("not
/// only an index"). A bad command line (status 2), as for `embed --out`.
#[test]
fn an_output_inside_an_index_is_a_bad_command_line() {
    let d = tempfile::tempdir().unwrap();
    let m1 = model(&d.path().join("m1"), |_| {});
    let m2 = model(&d.path().join("m2"), |_| {});
    let idx = d.path().join("idx");
    std::fs::create_dir(&idx).unwrap();
    std::fs::write(idx.join("meta"), b"RBIXMETA and the rest").unwrap();
    let partial = d.path().join("idx.partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("checkpoint"), b"RBIXCKPT and the rest").unwrap();
    for (out, what) in [
        (idx.join("m"), "the index directory"),
        (partial.join("m"), "the partial index build"),
    ] {
        let err = refused_out(&m1, &m2, &out);
        assert!(
            err.contains("invalid value for --out")
                && err.contains(&format!("{} is inside {what}", out.display())),
            "{err}"
        );
    }
    assert_eq!(common::names_in(&idx), ["meta"]);
    assert_eq!(common::names_in(&partial), ["checkpoint"]);
}

/// Audit (s21, A8): integer tensors (`embeddings.position_ids`) were averaged into float32
/// and counted as parameters; `--half` left config.json saying `"dtype": "float32"`; and
/// averaged_from.json kept the paths only as typed. Integer tensors are now copied (equal in
/// every model, else refused), the config names the saved type, and the real paths are kept.
#[test]
fn integer_tensors_are_copied_and_the_config_names_the_saved_type() {
    let d = tempfile::tempdir().unwrap();
    let with_ids = |last: i64| {
        move |m: &mut HashMap<String, Tensor>| {
            m.insert("embeddings.position_ids".into(), position_ids(64, last));
        }
    };
    let m1 = model(&d.path().join("m1"), with_ids(63));
    let m2 = model(&d.path().join("m2"), with_ids(63));
    let plain = model(&d.path().join("plain"), |_| {});
    let status = |out: &str| {
        let a = relbert()
            .current_dir(d.path())
            .args(["average", "plain", "plain/../m1", "--out", out])
            .assert();
        a.get_output().status.code()
    };
    // The first model lacks the tensor: refused as any tensor difference is.
    assert_eq!(status("mixed"), Some(1));
    let a = relbert()
        .current_dir(d.path())
        .args(["average", "m1", "./m2", "--out", "soup", "--half"])
        .assert()
        .success();
    let err = stderr_of(&a);
    let soup = d.path().join("soup");
    let w = candle_core::safetensors::load(soup.join("model.safetensors"), &Device::Cpu).unwrap();
    let ids = &w["embeddings.position_ids"];
    assert_eq!(ids.dtype(), DType::I64, "position ids kept as integers");
    assert_eq!(
        ids.flatten_all().unwrap().to_vec1::<i64>().unwrap(),
        (0..64).collect::<Vec<i64>>()
    );
    assert_eq!(w["embeddings.word_embeddings.weight"].dtype(), DType::F16);
    // Parameters are the float tensors' elements only.
    let plain_w =
        candle_core::safetensors::load(plain.join("model.safetensors"), &Device::Cpu).unwrap();
    let params: usize = plain_w.values().map(|t| t.elem_count()).sum();
    let grouped = {
        let s = params.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    assert!(err.contains(&format!("{grouped} parameters each")), "{err}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(soup.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["dtype"], "float16", "{config}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(soup.join("averaged_from.json")).unwrap())
            .unwrap();
    assert_eq!(record["sources"], serde_json::json!(["m1", "./m2"]));
    // As `--dtype` spells it (audit L: `F16`).
    assert_eq!(record["dtype"], "f16", "{record}");
    assert_eq!(
        record["sources_canonical"],
        serde_json::json!([
            m1.canonicalize().unwrap().display().to_string(),
            m2.canonicalize().unwrap().display().to_string()
        ])
    );
    assert_eq!(
        record["integer_tensors"],
        serde_json::json!(["embeddings.position_ids"])
    );
    // Without --half the config says float32 again, whatever the first model's said.
    let a = relbert()
        .current_dir(d.path())
        .args(["average", "soup", "m1", "--out", "back"])
        .assert();
    // soup's weights are float16 and m1's float32: both read, averaged as float32.
    a.success();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("back/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["dtype"], "float32", "{config}");
    // Position ids that differ are no checkpoints of one model: refused, naming the tensor.
    model(&d.path().join("m3"), with_ids(0));
    let a = relbert()
        .current_dir(d.path())
        .args(["average", "m1", "m3", "--out", "odd"])
        .assert()
        .failure();
    let err = stderr_of(&a);
    assert!(
        err.contains("embeddings.position_ids") && err.contains("differ"),
        "{err}"
    );
    assert!(!d.path().join("odd").exists());
}

/// Audit (s21, A8): `average m m` warned that the repeated model "weighs 2 times as much as
/// each other model" when there was no other model; and `--half` refused for weights float16
/// cannot hold exited 1 where every other bad flag value exits 2.
#[test]
fn repeat_warning_and_half_refusal_say_what_is_so() {
    let d = tempfile::tempdir().unwrap();
    let m = model(&d.path().join("m"), |_| {});
    let a = relbert()
        .arg("average")
        .arg(&m)
        .arg(&m)
        .arg("--out")
        .arg(d.path().join("same"))
        .assert()
        .success();
    let err = stderr_of(&a);
    assert!(
        err.contains("same checkpoint") && !err.contains("each other model"),
        "{err}"
    );
    let big = model(&d.path().join("big"), |w| {
        let name = "embeddings.word_embeddings.weight".to_string();
        let t = (&w[&name] + 1.0e6).unwrap();
        w.insert(name, t);
    });
    let a = relbert()
        .arg("average")
        .arg(&big)
        .arg(&big)
        .arg("--half")
        .arg("--out")
        .arg(d.path().join("half"))
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(err.contains("invalid value for --half"), "{err}");
    assert!(!d.path().join("half").exists());
}

/// Audit (s21, A5): a signal during `average` killed it silently, leaving the output's lock
/// file and, while it saved, its temporary directory with a partial weights file of the
/// model's size. Now it says that nothing was written, removes both, and exits with 128 plus
/// the signal's number. The run is stopped (SIGSTOP) once it has said that it read the first
/// model (so after it registered its lock file: review R2 (4) of d2d47d4 found a fixed 5 ms
/// after the lock file appeared could come before that on a busy machine), or once its
/// temporary directory appears; large extra tensors make the work after that moment last.
#[cfg(target_os = "linux")]
#[test]
fn a_signal_during_average_removes_its_files_and_says_so() {
    use std::io::BufRead;
    let d = tempfile::tempdir().unwrap();
    let m1 = model(&d.path().join("m1"), big);
    let m2 = model(&d.path().join("m2"), big);
    let m3 = model(&d.path().join("m3"), big);
    let out = d.path().join("s");
    for (signal, status, when) in [
        (libc::SIGINT, 130, None),
        (libc::SIGTERM, 143, Some(d.path().join(".s.tmp"))),
    ] {
        let mut child = Std::new(assert_cmd::cargo::cargo_bin("relbert"))
            .arg("average")
            .args([&m1, &m2, &m3])
            .arg("--out")
            .arg(&out)
            .env("RELBERT_LOG", "warn")
            // A progress line for every model read.
            .env("RELBERT_PROGRESS_SECS", "0")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Standard error read as it comes, each line passed on.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut said = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        match &when {
            // The first model read: the lock is the run's by then.
            None => loop {
                let line = rx
                    .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                    .unwrap_or_else(|_| panic!("no progress line: {said:?}"));
                let first = line.starts_with("averaging: 1/");
                said.push(line);
                if first {
                    break;
                }
            },
            Some(path) => {
                while !path.exists() {
                    assert!(
                        child.try_wait().unwrap().is_none(),
                        "exited before {} appeared",
                        path.display()
                    );
                    assert!(std::time::Instant::now() < deadline);
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            }
        }
        // SAFETY: kill(2) with the child's own pid.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let handled = catches_stop_signals(child.id());
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, signal);
            libc::kill(pid, libc::SIGCONT);
        }
        let code = child.wait().unwrap().code();
        reader.join().unwrap();
        said.extend(rx.try_iter());
        let err = said.join("\n");
        assert!(handled, "no handler for the stop signals");
        assert_eq!(code, Some(status), "{err}");
        assert!(err.contains("interrupted: nothing was written"), "{err}");
        let hidden: Vec<String> = common::names_in(d.path())
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "left behind: {hidden:?}");
        assert!(!out.exists());
    }
}

/// Audit s27 H1: on a signal, `average` removed the file at its lock file's path first, as a
/// temporary file, and its temporary directory after: whatever was there by then (another
/// run's lock file, once the run's own had gone) went, and another run could take the output
/// while this one still wrote `.s.tmp`. The lock file is now removed last, and only while it
/// is the one this process holds. The run is stopped while it writes `.s.tmp`, its lock file
/// is replaced by another writer's (this test's), and the signal must leave that one.
#[cfg(target_os = "linux")]
#[test]
fn a_signal_during_average_removes_only_its_own_lock_file() {
    let d = tempfile::tempdir().unwrap();
    let m1 = model(&d.path().join("m1"), big);
    let m2 = model(&d.path().join("m2"), big);
    let out = d.path().join("s");
    let tmp = d.path().join(".s.tmp");
    let lock = relbert_index::lock::lock_path(&out).unwrap();
    let mut child = Std::new(assert_cmd::cargo::cargo_bin("relbert"))
        .arg("average")
        .args([&m1, &m2])
        .arg("--out")
        .arg(&out)
        .env("RELBERT_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !tmp.exists() {
        assert!(child.try_wait().unwrap().is_none(), "exited before {tmp:?}");
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    // SAFETY: kill(2) with the child's own pid, not yet waited for.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let handled = catches_stop_signals(child.id());
    // Another writer of `s` now (its lock file at the same path, a file of its own).
    std::fs::remove_file(&lock).unwrap();
    let held = relbert_index::OutputLock::acquire(&out).unwrap();
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGINT);
        libc::kill(pid, libc::SIGCONT);
    }
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr).into_owned();
    assert!(handled, "no handler for the stop signals");
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted: nothing was written"), "{err}");
    assert!(
        relbert_index::lock::path_held_by_this_process(&lock),
        "another writer's lock file was removed: {:?}",
        common::names_in(d.path())
    );
    assert!(
        !tmp.exists() && !out.exists(),
        "{:?}",
        common::names_in(d.path())
    );
    drop(held);
    assert_eq!(common::names_in(d.path()), ["m1", "m2"]);
}

/// Review R2 (3) of d2d47d4: the CLI learnt that the model was being put in place only once
/// it was (`Written`), so a signal while the new directory was renamed over --out, or the old
/// one removed, deleted `.s.tmp` (after a swap, the old model) and said "nothing was written"
/// while --out held the new model. `Committing` is said now as the last thing before that,
/// with the temporary directory complete and --out not yet touched.
#[test]
fn committing_is_said_before_the_model_is_put_in_place() {
    use relbert::averaging::{average_models_observed, AverageStep};
    let d = tempfile::tempdir().unwrap();
    let m1 = model(&d.path().join("m1"), |_| {});
    let m2 = model(&d.path().join("m2"), |_| {});
    let out = d.path().join("avg");
    let tmp = d.path().join(".avg.tmp");
    for force in [false, true] {
        let mut steps = Vec::new();
        let mut at_committing = None;
        average_models_observed(&[m1.clone(), m2.clone()], &out, false, force, &mut |s| {
            if s == AverageStep::Committing {
                let first = std::fs::read_dir(&out)
                    .map(|r| r.count())
                    .map_err(|e| e.kind());
                at_committing = Some((common::names_in(&tmp), first));
            }
            steps.push(s);
        })
        .unwrap();
        let written = steps.iter().position(|s| *s == AverageStep::Written);
        let committing = steps.iter().position(|s| *s == AverageStep::Committing);
        assert!(
            committing.is_some() && committing < written,
            "{force}: {steps:?}"
        );
        let (in_tmp, at_out) = at_committing.unwrap();
        for f in ["averaged_from.json", "config.json", "model.safetensors"] {
            assert!(in_tmp.iter().any(|n| n == f), "{force}: {in_tmp:?}");
        }
        if force {
            // The first run's model, untouched till then.
            assert!(matches!(at_out, Ok(n) if n > 0), "{at_out:?}");
        } else {
            assert_eq!(at_out, Err(std::io::ErrorKind::NotFound));
        }
    }
}

/// Task F1 (s24): the writer lock made the missing folders above `--out` (`average … --out
/// typo/m` made `typo`). Now a bad command line (status 2) naming the flag and the folder,
/// with nothing made.
#[test]
fn an_output_in_a_missing_folder_is_refused_and_nothing_made() {
    let d = tempfile::tempdir().unwrap();
    let m1 = model(&d.path().join("m1"), |_| {});
    let m2 = model(&d.path().join("m2"), |_| {});
    let missing = d.path().join("missing");
    for out in [missing.join("m"), missing.join("deeper/m")] {
        let err = refused_out(&m1, &m2, &out);
        let folder = out.parent().unwrap();
        common::assert_out_folder_missing(&err, folder, "average");
        assert_eq!(common::names_in(d.path()), ["m1", "m2"]);
    }
}

/// Adds a large extra tensor to a model's weights, so that averaging it lasts long enough
/// for the signal tests to stop the run mid-write.
fn big(w: &mut HashMap<String, Tensor>) {
    w.insert(
        "extra.weight".into(),
        Tensor::ones(8_000_000, DType::F32, &Device::Cpu).unwrap(),
    );
}

/// Found by a review: a base whose encoder tensors are named under the task model's prefix
/// (`bert.embeddings…`, as a masked-LM or classifier checkpoint saves them) could not be
/// averaged with a model trained from it, which names them without (every encoder tensor
/// "lacking" from one side). The prefix is dropped on comparing; the average is saved under
/// the first model's names (s33: a task model's encoder keeps its prefix beside its head,
/// as Hugging Face loads it), whichever comes first.
#[test]
fn a_prefixed_checkpoint_averages_with_an_unprefixed_one() {
    let d = tempfile::tempdir().unwrap();
    let head = || Tensor::from_vec(vec![0.25f32; 4], 4, &Device::Cpu).unwrap();
    let plain = model(&d.path().join("plain"), |w| {
        w.insert("cls.predictions.bias".into(), head());
    });
    let prefixed = model(&d.path().join("prefixed"), |w| {
        let named: Vec<(String, Tensor)> = w.drain().collect();
        for (name, t) in named {
            w.insert(format!("bert.{name}"), t);
        }
        w.insert("cls.predictions.bias".into(), head());
    });
    for (first, second, w) in [
        (&prefixed, &plain, "bert.embeddings.word_embeddings.weight"),
        (&plain, &prefixed, "embeddings.word_embeddings.weight"),
    ] {
        let out = d.path().join("avg");
        relbert()
            .arg("average")
            .arg(first)
            .arg(second)
            .arg("--out")
            .arg(&out)
            .arg("--force")
            .assert()
            .success();
        let averaged =
            candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
        let original =
            candle_core::safetensors::load(first.join("model.safetensors"), &Device::Cpu).unwrap();
        let mut names: Vec<&String> = averaged.keys().collect();
        names.sort();
        let mut want: Vec<&String> = original.keys().collect();
        want.sort();
        assert_eq!(names, want);
        // The mean of two copies of one weight is that weight.
        let (a, b) = (&averaged[w], &original[w]);
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
