//! An `index add` still running is not an interrupted one: `index info` says to wait for it
//! (not to remove its partial directory), and an add or remove with nothing on standard input
//! leaves its copy of standard input to it. The running add is stood in for by this test
//! process holding the index's writer lock, as a live add does (flock on `.DIR.lock`, with
//! the holder's note), beside the partial directory an add leaves.
#![cfg(feature = "cli")]
#![cfg(unix)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use relbert_index::Index;

const NOTE: &str = "pid 4242: relbert index add --index idx --pairs - (since unix time 1)";

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "info")
        .env_remove("RELBERT_MODEL")
        .env_remove("RELBERT_INDEX");
    c
}

/// An index of 30 pairs of the bundled vocabulary at `dir/idx`, and the partial directory an
/// add from standard input leaves there (its checkpoint and its copy of standard input,
/// holding `new`, a pair the index lacks).
fn index_with_an_add_under_way(dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("index/vocab/wordnet_hypernym.tsv"),
    )
    .unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(31)
        .collect();
    let pairs = dir.join("pairs.tsv");
    std::fs::write(&pairs, lines[..30].join("\n") + "\n").unwrap();
    let idx = common::tiny_index(&pairs, &dir.join("idx"));
    let grower =
        relbert_index::IndexGrower::create_or_resume(Index::open(&idx).unwrap(), "test", 1, |_| {})
            .unwrap();
    drop(grower);
    let partial = relbert_index::partial_dir(&idx).unwrap();
    assert!(partial.join("checkpoint").is_file());
    std::fs::write(
        partial.join("input.spool"),
        format!("{}{}\n", relbert_index::spool_header(), lines[30]),
    )
    .unwrap();
    (idx, partial)
}

/// The writer lock of `idx`, held as another process's whose note is `note`: a lock on its
/// own open file, which flock tells from any lock the relbert run takes.
fn hold_lock(idx: &Path, note: &str) -> std::fs::File {
    let path = relbert_index::lock::lock_path(idx).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    f.try_lock().unwrap();
    writeln!(f, "{note}").unwrap();
    f
}

/// The `pending` line of `relbert index info idx`.
fn pending_line(idx: &Path) -> String {
    let a = relbert()
        .args(["index", "info"])
        .arg(idx)
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    out.lines()
        .find(|l| l.starts_with("pending"))
        .unwrap()
        .to_string()
}

/// `relbert index <command> [--json] --index idx --pairs -` with nothing on standard input,
/// which succeeds: its standard output and standard error.
fn with_empty_stdin(command: &str, json: bool, idx: &Path) -> (String, String) {
    let mut c = relbert();
    c.args(["index", command]);
    if json {
        c.arg("--json");
    }
    let a = c
        .arg("--index")
        .arg(idx)
        .args(["--pairs", "-"])
        .write_stdin("")
        .assert()
        .success();
    let out = a.get_output();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Found by a review: `index info` during an add said its partial directory "holds an
/// interrupted `index add` … remove idx.partial to give it up" (`resumable: true` in
/// `--json`), and removing it killed the add.
#[test]
fn info_says_a_running_add_is_running_not_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let (idx, partial) = index_with_an_add_under_way(dir.path());
    let lock = hold_lock(&idx, NOTE);
    let pending = pending_line(&idx);
    assert!(
        pending.contains(&format!(
            "an `index add` of {} is running now ({NOTE})",
            idx.display()
        )),
        "{pending}"
    );
    assert!(pending.contains("wait for it to end"), "{pending}");
    assert!(!pending.contains("interrupted"), "{pending}");
    assert!(!pending.contains("remove"), "{pending}");
    let a = relbert()
        .args(["index", "info", "--json"])
        .arg(&idx)
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(doc["pending"]["command"], "add", "{doc}");
    assert_eq!(doc["pending"]["resumable"], false, "{doc}");
    assert_eq!(doc["pending"]["running"], NOTE, "{doc}");
    // Its holder gone (killed), it is an interrupted add again.
    drop(lock);
    let a = relbert()
        .args(["index", "info", "--json"])
        .arg(&idx)
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(doc["pending"]["resumable"], true, "{doc}");
    assert_eq!(doc["pending"]["running"], serde_json::Value::Null, "{doc}");
    let advice = doc["pending"]["advice"].as_str().unwrap();
    assert!(
        advice.contains("holds an interrupted `index add`"),
        "{advice}"
    );
    assert!(partial.join("input.spool").is_file());
    // The lock held by another command (a remove about to be refused): the add is not said
    // to be running under that process's name, only that the index is locked.
    let _other = hold_lock(
        &idx,
        "pid 4343: relbert index remove --index idx --pairs old.tsv",
    );
    let pending = pending_line(&idx);
    assert!(!pending.contains("is running now"), "{pending}");
    assert!(
        pending.contains("which another process has locked now (pid 4343: relbert index remove"),
        "{pending}"
    );
}

/// Found by a review: an add with nothing on standard input while another add from standard
/// input ran took that add's copy ("resuming from the input the interrupted run spooled")
/// and then failed on its lock. Nothing on standard input is nothing to add (status 0), as
/// the docs say, and the running add's partial directory and copy are left as they are; a
/// remove likewise is nothing to remove, not "an interrupted run".
#[test]
fn an_empty_stdin_leaves_a_running_adds_copy_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let (idx, partial) = index_with_an_add_under_way(dir.path());
    let spool = std::fs::read(partial.join("input.spool")).unwrap();
    let before = Index::read_id(&idx).unwrap();
    let lock = hold_lock(&idx, NOTE);
    let (out, err) = with_empty_stdin("add", true, &idx);
    assert!(!err.contains("resuming"), "{err}");
    assert!(err.contains(NOTE), "the running add is named: {err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["pairs_read"], 0, "{doc}");
    assert_eq!(doc["added"], 0, "{doc}");
    let (out, _) = with_empty_stdin("add", false, &idx);
    assert!(out.contains("nothing to add: no pairs in <stdin>"), "{out}");
    let (_, err) = with_empty_stdin("remove", false, &idx);
    assert!(!err.contains("interrupted"), "{err}");
    assert_eq!(std::fs::read(partial.join("input.spool")).unwrap(), spool);
    assert!(partial.join("checkpoint").is_file());
    assert_eq!(Index::read_id(&idx).unwrap(), before);
    drop(lock);
}

/// Found by a review: a second add with new pairs loaded the model and screened its pairs
/// (seconds for a large input) before the writer lock refused it. It is refused first, on
/// the lock, naming the running add: a model that cannot even be loaded is not reached.
#[test]
fn a_second_add_is_refused_before_its_model_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let (idx, partial) = index_with_an_add_under_way(dir.path());
    let spool = std::fs::read(partial.join("input.spool")).unwrap();
    let new = dir.path().join("new.tsv");
    std::fs::write(&new, "hummingbird\tbird\n").unwrap();
    let _lock = hold_lock(&idx, NOTE);
    let a = relbert()
        .args(["index", "add", "--index"])
        .arg(&idx)
        .arg("--pairs")
        .arg(&new)
        .arg("--model")
        .arg(dir.path().join("no-such-model"))
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        err.contains("is being written by another process") && err.contains(NOTE),
        "{err}"
    );
    assert!(!err.contains("no-such-model"), "{err}");
    assert_eq!(std::fs::read(partial.join("input.spool")).unwrap(), spool);
}
