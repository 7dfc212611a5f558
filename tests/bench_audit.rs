//! `relbert bench` findings of the s21 audit: where `--json` may go and what it may replace,
//! a signal during a run, misspelt keys in analogy files, the splits offered, and the
//! classifier's hold-out.
#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command as Std, Stdio};

use assert_cmd::Command;
use common::{catches_stop_signals, fixture};

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn");
    c
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

const QUESTION: &str = r#"{"stem": ["paris", "france"], "choice": [["dog", "puppy"], ["paris", "france"]], "answer": 1, "prefix": "capitals"}"#;

fn analogy(data: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    relbert()
        .args(["bench", "analogy", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--data")
        .arg(data)
        .args(extra)
        .assert()
}

/// Audit (s21, A3 and A8): `--json` inside an index directory was written there (and the
/// index then refused `index add`), and an existing `--json` without `--force` exited 1
/// where every other bad flag value exits 2.
#[test]
fn json_inside_an_index_or_over_a_file_is_a_bad_command_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("data/sat/test.jsonl"),
        &format!("{QUESTION}\n"),
    );
    let idx = dir.path().join("idx");
    write(&idx.join("meta"), "RBIXMETA and the rest");
    let inside = idx.join("r.json");
    let a = analogy(
        &dir.path().join("data"),
        &["--json", inside.to_str().unwrap()],
    )
    .code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains("invalid value for --json")
            && err.contains(&format!(
                "{} is inside the index directory",
                inside.display()
            )),
        "{err}"
    );
    assert!(!inside.exists());
    let there = write(&dir.path().join("r.json"), "mine");
    let a = analogy(
        &dir.path().join("data"),
        &["--json", there.to_str().unwrap()],
    )
    .code(2);
    let err = stderr_of(&a);
    assert!(err.contains("invalid value for --json"), "{err}");
    assert_eq!(std::fs::read_to_string(&there).unwrap(), "mine");
}

/// Audit (s21, A6): a misspelt key (`"prefx"`) was read as an absent one, so `--breakdown`
/// counted the question under an empty prefix; README promises an error naming the file and
/// line.
#[test]
fn an_unknown_key_in_a_question_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir.path().join("sat/test.jsonl"),
        &format!(
            "{QUESTION}\n{}\n",
            QUESTION.replace("\"prefix\"", "\"prefx\"")
        ),
    );
    let a = analogy(dir.path(), &["--breakdown"]).failure();
    let err = stderr_of(&a);
    assert!(
        err.contains(&format!("{}:2", file.display())) && err.contains("prefx"),
        "{err}"
    );
}

/// Audit (s21, A8): with a split no analogy set has, the splits "found there" included a
/// folder's file of other records (the SemEval ratings, `<name>/<name>.jsonl`), which bench
/// then failed to parse when asked for it.
#[test]
fn only_splits_bench_can_read_are_offered() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("sat/test.jsonl"), &format!("{QUESTION}\n"));
    write(
        &dir.path().join("ratings/ratings.jsonl"),
        "{\"relation_id\": 1, \"name\": \"CLASS-INCLUSION\", \"pairs\": [[\"a\", \"b\"]]}\n",
    );
    let a = analogy(dir.path(), &["--split", "train"]).failure();
    let err = stderr_of(&a);
    assert!(
        err.contains("the splits found there: test") && !err.contains("ratings"),
        "{err}"
    );
}

/// A classification dataset folder: `train` rows (label per row) and a small test split.
fn lexical(dir: &Path, name: &str, train: &[&str]) {
    let rows: String = train
        .iter()
        .enumerate()
        .map(|(i, l)| format!("w{i}x{name}\tv{i}\t{l}\n"))
        .collect();
    write(&dir.join(name).join("train.tsv"), &rows);
    write(&dir.join(name).join("test.tsv"), "ta\ttb\tR0\ntc\ttd\tR1\n");
}

/// Audit (s21, A7): without val.tsv, 10% of train was held out at random, so a class with
/// few rows could lose all of them to the hold-out ("test label(s) never seen in training"
/// though train.tsv has them); and `--stop-on train-loss`, scikit-learn's default that trains
/// on all of train, held the 10% out too. Twenty datasets put their one R1 row at each
/// position of twenty: a hold-out by position takes it out of training in two of them.
#[test]
fn the_hold_out_keeps_every_class_and_train_loss_trains_on_all_rows() {
    let dir = tempfile::tempdir().unwrap();
    for at in 0..20 {
        let labels: Vec<&str> = (0..20).map(|i| if i == at { "R1" } else { "R0" }).collect();
        lexical(dir.path(), &format!("d{at:02}"), &labels);
    }
    let run = |extra: &[&str], json: &str| {
        let json = dir.path().join(json);
        let a = relbert()
            .args(["bench", "classify", "--model"])
            .arg(fixture("tiny-bert"))
            .arg("--data")
            .arg(dir.path())
            .arg("--json")
            .arg(&json)
            .args(extra)
            .assert()
            .success();
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        (stderr_of(&a), report)
    };
    let (err, report) = run(&[], "v.json");
    assert!(!err.contains("never seen in training"), "{err}");
    for (name, r) in report["results"].as_object().unwrap() {
        assert_eq!(
            (r["n_train"].as_u64(), r["n_val"].as_u64()),
            (Some(18), Some(2)),
            "{name}"
        );
    }
    let (err, report) = run(&["--stop-on", "train-loss"], "t.json");
    assert!(!err.contains("never seen in training"), "{err}");
    for (name, r) in report["results"].as_object().unwrap() {
        assert_eq!(
            (r["n_train"].as_u64(), r["n_val"].as_u64()),
            (Some(20), Some(0)),
            "{name}"
        );
        assert!(r["best_validation_accuracy"].is_null(), "{name}: {r}");
    }
}

/// Many distinct questions, so that the tiny model is still embedding when a test stops it.
fn many_questions(data: &Path) {
    let text: String = (0..3_000)
        .map(|i| {
            format!(
                "{{\"stem\": [\"a{i}\", \"b{i}\"], \"choice\": [[\"c{i}\", \"d{i}\"], [\"e{i}\", \"f{i}\"]], \"answer\": 0}}\n"
            )
        })
        .collect();
    write(&data.join("big/test.jsonl"), &text);
}

/// Starts `bench analogy --json OUT` on [`many_questions`] and stops it (SIGSTOP) once its
/// report's lock is there and its handler installed (or a second has passed).
fn stopped_bench(data: &Path, out: &Path, extra: &[&str]) -> std::process::Child {
    let mut child = Std::new(assert_cmd::cargo::cargo_bin("relbert"))
        .args(["bench", "analogy", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--data")
        .arg(data)
        .arg("--json")
        .arg(out)
        .args(extra)
        .env("RELBERT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = out.with_file_name(format!(
        ".{}.lock",
        out.file_name().unwrap().to_string_lossy()
    ));
    // And its report's temporary file, made just after the lock (the handler is in place
    // before both now, so a handler alone no longer says the file is there).
    let tmp = out.with_file_name(format!(
        ".{}.relbert.tmp",
        out.file_name().unwrap().to_string_lossy()
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !lock.exists() || !tmp.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited before its lock and temporary file"
        );
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let handled = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while !catches_stop_signals(child.id()) && std::time::Instant::now() < handled {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // SAFETY: kill(2) with the child's own pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
    child
}

fn resume(child: std::process::Child, signal: Option<i32>) -> (Option<i32>, String) {
    // SAFETY: kill(2) with the child's own pid.
    unsafe {
        if let Some(s) = signal {
            libc::kill(child.id() as i32, s);
        }
        libc::kill(child.id() as i32, libc::SIGCONT);
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// Audit (s21, A5): a signal during `bench --json r.json` killed it, leaving `.r.json.lock`
/// (which refuses the next run). Now it says that nothing was written, removes its files and
/// exits with 128 plus the signal's number.
#[cfg(target_os = "linux")]
#[test]
fn a_signal_during_bench_removes_its_lock_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    many_questions(&data);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    for (signal, status) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let out = out_dir.join("r.json");
        let child = stopped_bench(&data, &out, &[]);
        let (code, err) = resume(child, Some(signal));
        assert_eq!(code, Some(status), "{err}");
        assert!(err.contains("interrupted: nothing was written"), "{err}");
        assert!(hidden(&out_dir).is_empty(), "left: {:?}", hidden(&out_dir));
        assert!(!out.exists());
    }
}

/// Audit (s21, A2): the report was renamed over whatever was at `--json` when the run ended,
/// though the path was checked only at its start: a file that appeared there meanwhile (a
/// user's, another tool's) was replaced without `--force`, and with `--force` though it was
/// no bench report.
#[cfg(target_os = "linux")]
#[test]
fn a_file_that_appears_at_the_report_path_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    many_questions(&data);
    for extra in [&[][..], &["--force"][..]] {
        let out = dir.path().join("r.json");
        let _ = std::fs::remove_file(&out);
        let child = stopped_bench(&data, &out, extra);
        std::fs::write(&out, "the user's notes").unwrap();
        let (code, err) = resume(child, None);
        assert_ne!(code, Some(0), "{extra:?}: {err}");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "the user's notes",
            "{extra:?}: {err}"
        );
    }
}

/// Review R2 (2) of d2d47d4: a file that appeared at `--json` during the run was met by
/// "r.json exists; pass --force to overwrite it" (wrong: it was not there at the start, and
/// `--force` would not replace a file that is no report either), and the finished report was
/// deleted without a word. The report's temporary file is made at the start now, so what
/// appeared is told apart: the error says so and names where the finished report is kept.
#[cfg(target_os = "linux")]
#[test]
fn a_report_refused_at_the_end_is_kept_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    many_questions(&data);
    for extra in [&[][..], &["--force"][..]] {
        let out = dir.path().join("r.json");
        let tmp = dir.path().join(".r.json.relbert.tmp");
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&tmp);
        let child = stopped_bench(&data, &out, extra);
        std::fs::write(&out, "the user's notes").unwrap();
        let (code, err) = resume(child, None);
        assert_eq!(code, Some(1), "{extra:?}: {err}");
        assert!(!err.contains("pass --force"), "{extra:?}: {err}");
        assert!(
            err.contains("it was created while this run was writing")
                && err.contains(&tmp.display().to_string()),
            "{extra:?}: {err}"
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "the user's notes");
        let kept: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&tmp).expect("the report is kept"))
                .unwrap();
        assert!(kept["results"].is_object(), "{kept}");
    }
}

/// Review R2 (6) of d2d47d4: a `--json` file that cannot be read to check it (an I/O error,
/// such as permission denied) was called a bad value of the flag (status 2); it is a failure
/// to write (1). `/proc/self/mem` is a regular file whose first bytes fail to read (EIO) even
/// for root, whom permissions do not stop.
#[cfg(target_os = "linux")]
#[test]
fn an_unreadable_report_is_a_failure_not_a_bad_flag() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("data/sat/test.jsonl"),
        &format!("{QUESTION}\n"),
    );
    let a = analogy(
        &dir.path().join("data"),
        &["--json", "/proc/self/mem", "--force"],
    );
    let code = a.get_output().status.code();
    let err = stderr_of(&a);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot write --json") && !err.contains("invalid value"),
        "{err}"
    );
}

/// Audit (s24, M1): without `--model` or `$RELBERT_MODEL`, a `models/relbert-minilm` in the
/// working directory was taken before the checkout's, so running from any folder holding one
/// (an older clone, a user's own model) silently changed the default model, and the default
/// index in the checkout was moved aside and rebuilt for it. The checkout comes first now, as
/// it does for the default index and vocabulary.
#[test]
fn the_checkouts_default_model_comes_before_the_working_directorys() {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/relbert-minilm");
    assert!(checkout.join("model.safetensors").is_file(), "{checkout:?}");
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("data/sat/test.jsonl"),
        &format!("{QUESTION}\n"),
    );
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::os::unix::fs::symlink(
        fixture("tiny-bert"),
        dir.path().join("models/relbert-minilm"),
    )
    .unwrap();
    let a = relbert()
        .current_dir(dir.path())
        .env_remove("RELBERT_MODEL")
        .args(["bench", "analogy", "--data", "data", "--json", "-"])
        .assert()
        .success();
    let report: serde_json::Value =
        serde_json::from_slice(&a.get_output().stdout).expect("a JSON report");
    // A relative path is the run's, whose working directory is `dir`.
    let model = dir
        .path()
        .join(report["model"].as_str().unwrap_or_default());
    assert_eq!(
        model.canonicalize().ok(),
        checkout.canonicalize().ok(),
        "{report}"
    );
}
