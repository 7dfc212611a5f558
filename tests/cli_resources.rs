//! Running out of resources: open files, and what is said about an interrupted build whose
//! copy of standard input is missing. Found by an audit (`ulimit -n 20`, a full disk).
#![cfg(feature = "cli")]

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{fixture, synthetic_corpus};

/// The binary, as a plain `Command`: `pre_exec` (the open-file limit) needs one.
fn relbert() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_relbert"));
    c.env("RELBERT_LOG", "warn");
    c
}

/// Mines `corpus` into `out` under `--memory 64K`, with the open-file limit set to `nofile`
/// when given; returns the exit status and standard error.
fn mine(corpus: &Path, out: &Path, nofile: Option<u64>) -> (bool, String) {
    let mut c = relbert();
    c.args(["pairs", "mine", "--corpus"])
        .arg(corpus)
        .arg("--out")
        .arg(out)
        .args(["--memory", "64K", "--threads", "1", "--min-count", "2"])
        .args(["--max-pairs", "3000"])
        .stdin(Stdio::null());
    if let Some(n) = nofile {
        // SAFETY: setrlimit is async-signal-safe, and nothing else runs in the child here.
        unsafe {
            c.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let o = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Under `ulimit -n 20` a merge of many spilled runs opened half the limit at once while a
/// dozen descriptors were open already, and failed with "Too many open files". The
/// descriptors in use are counted now, and the output is the one an unlimited run writes.
#[test]
fn mining_under_a_low_open_file_limit_merges_in_rounds_with_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.txt");
    synthetic_corpus(&corpus, 20_000);
    let free = dir.path().join("free.tsv");
    let (ok, err) = mine(&corpus, &free, None);
    assert!(ok, "{err}");
    for n in [20, 24] {
        let low = dir.path().join(format!("low{n}.tsv"));
        let (ok, err) = mine(&corpus, &low, Some(n));
        assert!(ok, "ulimit -n {n}: {err}");
        assert!(
            std::fs::read(&free).unwrap() == std::fs::read(&low).unwrap(),
            "ulimit -n {n}: the output differs"
        );
    }
}

/// `index build --pairs - </dev/null` beside a partial build that holds no complete copy of
/// its input said "no interrupted run of D to resume", with `D.partial` there: it says the
/// partial build exists, and that the same input must be given again.
#[test]
fn an_empty_standard_input_beside_a_partial_build_without_its_copy_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let partial = dir.path().join("idx.partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("input.spool.tmp"), "a\tb\n").unwrap();
    let model = fixture("tiny-bert");
    let o = relbert()
        .args(["index", "build", "--model"])
        .arg(&model)
        .args(["--pairs", "-", "--out"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{} holds an interrupted run", partial.display()))
            && err.contains("give the same pairs on standard input again"),
        "{err}"
    );
    assert!(!err.contains("no interrupted run"), "{err}");
}

/// A place where the `--json` report cannot be written (here `/proc`, where no file can be
/// made, as on a read-only or full file system) was "invalid value for --json": the value is
/// fine, the place is not. Exit status 1, as before. Said once, with the OS error alone: it
/// was "cannot write --json X: cannot write a file in /proc: … at path \"/proc/.relbert-
/// bench-checkL7AaV3\"", naming a file never made.
#[test]
fn a_bench_report_that_cannot_be_written_is_not_an_invalid_value() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("tiny-bert");
    let o = relbert()
        .args(["bench", "analogy", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(dir.path())
        .args(["--dataset", "mini", "--json", "/proc/relbert-report.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "cannot write --json /proc/relbert-report.json: no file can be made in /proc: "
        ) && !err.contains("invalid value"),
        "{err}"
    );
    assert_eq!(err.matches("cannot write").count(), 1, "{err}");
    assert!(
        !err.contains(".relbert-bench-check") && !err.contains("at path"),
        "{err}"
    );
    assert!(
        err.trim_end().ends_with(')') && err.contains("(os error "),
        "{err}"
    );
}
