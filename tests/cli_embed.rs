//! End-to-end tests of `relbert embed`: outputs, and the errors a user can cause.
#![cfg(feature = "cli")]

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::{cosine, fixture};

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn");
    c
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs `relbert embed` of `pairs` with the tiny BERT fixture, to `out` (standard output when
/// `None`), with `extra` flags: the command most tests here run.
fn tiny_embed(pairs: &Path, out: Option<&Path>, extra: &[&str]) -> assert_cmd::assert::Assert {
    let mut c = relbert();
    c.args(["embed", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(pairs);
    if let Some(out) = out {
        c.arg("--out").arg(out);
    }
    c.args(extra).assert()
}

fn copy_model(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
}

#[test]
fn jsonl_output_is_unit_vectors_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(
        dir.path(),
        "p.tsv",
        "# a comment\nparis\tfrance\n\ndog\tpuppy\tyoung\nparis\tfrance\n",
    );
    let out = dir.path().join("v.jsonl");
    tiny_embed(&pairs, Some(&out), &[]).success();
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["pair"], serde_json::json!(["dog", "puppy"]));
    let vec = |i: usize| -> Vec<f32> {
        rows[i]["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    assert_eq!(vec(0).len(), 32);
    let norm: f32 = vec(0).iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    assert_eq!(vec(0), vec(2));
    assert!(cosine(&vec(0), &vec(1)) < 0.9999);
}

#[test]
fn raw_and_stdin_and_npy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v.npy");
    relbert()
        .args([
            "embed", "--raw", "--format", "npy", "--pairs", "-", "--model",
        ])
        .arg(fixture("tiny-roberta"))
        .arg("--out")
        .arg(&out)
        .write_stdin("paris\tfrance\ntokyo\tjapan\tcapital\n")
        .assert()
        .success();
    let bytes = std::fs::read(&out).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'shape': (2, 32)"), "{header}");
    assert_eq!(bytes.len(), 10 + header_len + 2 * 32 * 4);
    // Raw sums are not unit length.
    let first: Vec<f32> = bytes[10 + header_len..10 + header_len + 128]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let norm: f32 = first.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(norm > 1.5, "raw norm {norm}");
    let side = std::fs::read_to_string(dir.path().join("v.pairs.tsv")).unwrap();
    assert_eq!(
        side,
        format!(
            "{}\nparis\tfrance\t\ntokyo\tjapan\tcapital\n",
            relbert::embed::sidecar_mark(std::path::Path::new("v.npy"))
        )
    );
    // Outputs go through a temporary file but end up with ordinary permissions.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o044, 0o044, "v.npy mode {mode:o}");
    }
}

#[test]
fn malformed_line_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "bad.tsv", "paris\tfrance\njust-one-word\n");
    let out = dir.path().join("v.jsonl");
    tiny_embed(&pairs, Some(&out), &[])
        .failure()
        .stderr(predicates::str::contains("bad.tsv:2:"));
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the input file remains");
}

#[test]
fn empty_input_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "empty.tsv", "# nothing here\n\n");
    tiny_embed(&pairs, None, &[])
        .failure()
        .stderr(predicates::str::contains("no pairs"));
}

#[test]
fn missing_model_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    copy_model(&fixture("tiny-bert"), &model);
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    let pairs = write(dir.path(), "p.tsv", "a\tb\n");
    relbert()
        .args(["embed", "--model"])
        .arg(&model)
        .arg("--pairs")
        .arg(&pairs)
        .assert()
        .failure()
        .stderr(predicates::str::contains("tokenizer.json"));
}

#[test]
fn unknown_model_type_and_bad_tensor_shape_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "p.tsv", "a\tb\n");
    let model = dir.path().join("m");
    copy_model(&fixture("tiny-bert"), &model);
    let cfg = std::fs::read_to_string(model.join("config.json")).unwrap();
    std::fs::write(
        model.join("config.json"),
        cfg.replace("\"model_type\": \"bert\"", "\"model_type\": \"gpt2\""),
    )
    .unwrap();
    relbert()
        .args(["embed", "--model"])
        .arg(&model)
        .arg("--pairs")
        .arg(&pairs)
        .assert()
        .failure()
        .stderr(predicates::str::contains("config.json"))
        .stderr(predicates::str::contains("gpt2"));

    std::fs::write(
        model.join("config.json"),
        cfg.replace("\"intermediate_size\": 64", "\"intermediate_size\": 65"),
    )
    .unwrap();
    relbert()
        .args(["embed", "--model"])
        .arg(&model)
        .arg("--pairs")
        .arg(&pairs)
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "encoder.layer.0.intermediate.dense.weight",
        ))
        .stderr(predicates::str::contains("model.safetensors"));
}

#[test]
fn existing_output_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "p.tsv", "a\tb\n");
    let out = write(dir.path(), "v.jsonl", "precious\n");
    let run = |force: bool| {
        let extra: &[&str] = if force { &["--force"] } else { &[] };
        tiny_embed(&pairs, Some(&out), extra)
    };
    run(false)
        .failure()
        .stderr(predicates::str::contains("--force"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious\n");
    // Not relbert's output: even --force leaves it alone.
    run(true)
        .failure()
        .stderr(predicates::str::contains("refusing to replace"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious\n");
    // relbert's own output is replaced with --force.
    std::fs::remove_file(&out).unwrap();
    run(false).success();
    run(true).success();
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .starts_with("{\"pair\""));
}

/// `embed --format npy --force` refused an array an older relbert wrote (before 2026-12-01
/// `emb.train`'s pair list was `emb.pairs.tsv`, its mark naming no array), which `index export
/// --force` replaces: it looked for the pair list only where relbert puts it now. Recognised by
/// that list, it is replaced; an array the list does not fit, or that shares it with another,
/// is still refused, and the older list is left as it was.
#[test]
fn force_replaces_an_array_an_older_relbert_named_its_pair_list_for() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "p.tsv", "paris\tfrance\ndog\tpuppy\n");
    let array = dir.path().join("emb.train");
    let older = dir.path().join("emb.pairs.tsv");
    let current = dir.path().join("emb.train.pairs.tsv");
    let embed = |pairs: &Path, force: bool| embed_npy(pairs, &array, force);
    // What an older build left: the array, and its pair list under that build's name and mark.
    embed(&pairs, false).success();
    let text = std::fs::read_to_string(&current).unwrap();
    let (_, rows) = text.split_once('\n').unwrap();
    let older_text = format!(
        "# relbert: row i of the .npy array beside this file is the pair on data line i\n{rows}"
    );
    std::fs::write(&older, &older_text).unwrap();
    std::fs::remove_file(&current).unwrap();
    let before = std::fs::read(&array).unwrap();

    // Not without --force, which it is told to pass: --force replaces it (audit I3, s23).
    embed(&pairs, false)
        .failure()
        .stderr(predicates::str::contains(format!(
            "{} exists; pass --force",
            array.display()
        )));
    // Nor while another array beside it could own that list (the older rule shared it).
    let twin = dir.path().join("emb.npy");
    std::fs::copy(&array, &twin).unwrap();
    embed(&pairs, true)
        .failure()
        .stderr(predicates::str::contains("refusing to replace"));
    std::fs::remove_file(&twin).unwrap();
    // Nor when the list does not fit the array (a row more): not provably relbert's.
    std::fs::write(&older, format!("{older_text}cat\tkitten\n")).unwrap();
    embed(&pairs, true)
        .failure()
        .stderr(predicates::str::contains("refusing to replace"));
    assert_eq!(std::fs::read(&array).unwrap(), before);
    assert!(!current.exists());
    std::fs::write(&older, &older_text).unwrap();

    // Recognised: replaced, with the new pair list where relbert puts it now.
    let three = write(
        dir.path(),
        "q.tsv",
        "paris\tfrance\ndog\tpuppy\ncat\tkitten\n",
    );
    let a = embed(&three, true).success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("emb.pairs.tsv, is left as it was"), "{err}");
    assert_ne!(std::fs::read(&array).unwrap(), before);
    let list = std::fs::read_to_string(&current).unwrap();
    assert!(
        list.starts_with("# relbert: row i of emb.train is"),
        "{list}"
    );
    assert_eq!(list.lines().count(), 4, "{list}");
    // The older list is left: under the older rule other arrays may have used it.
    assert_eq!(std::fs::read_to_string(&older).unwrap(), older_text);
}

#[test]
fn bad_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "p.tsv", "a\tb\n");
    tiny_embed(&pairs, None, &["--aggregation", "median"])
        .failure()
        .stderr(predicates::str::contains("--aggregation"));
    tiny_embed(&pairs, None, &["--template", "no placeholders"])
        .failure()
        .stderr(predicates::str::contains("<subj>"));
}

#[test]
fn an_interrupted_run_removes_its_temporary_and_lock_files() {
    use std::process::{Command as Std, Stdio};
    let dir = tempfile::tempdir().unwrap();
    // Enough pairs that the tiny model is still encoding when the signal comes (the temporary
    // file appears after the handler is in place, so the signal always finds it).
    let text: String = (0..200_000)
        .map(|i| format!("w{}\tw{}\n", i % 997, i % 1009))
        .collect();
    let pairs = write(dir.path(), "big.tsv", &text);
    // Temporary and lock files: `.<name>.relbert.tmp`, `.<name>.lock`.
    let hidden = || -> Vec<String> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    };
    let wait_for = |path: &Path, child: &mut std::process::Child| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !path.exists() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "exited before {} appeared",
                path.display()
            );
            assert!(std::time::Instant::now() < deadline, "{}", path.display());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    // The status is 128 plus the signal's number, as a shell reports a process the signal
    // killed and as `train` exits: every signal exited 130 before, so a supervisor could not
    // tell a `kill` (143) from a Ctrl-C.
    for (signal, status, format, out, tmp) in [
        (
            libc::SIGINT,
            130,
            "jsonl",
            "e.jsonl",
            ".e.jsonl.relbert.tmp",
        ),
        // The array's temporary file is made first, then its pair list's.
        (
            libc::SIGTERM,
            143,
            "npy",
            "v.npy",
            ".v.pairs.tsv.relbert.tmp",
        ),
        (
            libc::SIGHUP,
            129,
            "jsonl",
            "h.jsonl",
            ".h.jsonl.relbert.tmp",
        ),
    ] {
        let out = dir.path().join(out);
        let mut child = Std::new(assert_cmd::cargo::cargo_bin("relbert"))
            .args(["embed", "--model"])
            .arg(fixture("tiny-bert"))
            .arg("--pairs")
            .arg(&pairs)
            .args(["--format", format, "--out"])
            .arg(&out)
            .env("RELBERT_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(&dir.path().join(tmp), &mut child);
        // SAFETY: kill(2) with the child's own pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        let code = child.wait().unwrap().code();
        assert_eq!(code, Some(status), "{format}: signal {signal}");
        assert!(hidden().is_empty(), "left behind: {:?}", hidden());
        assert!(!out.exists());
    }
}

/// Found by an audit: a JSON lines output that failed to be written was named `<output>`
/// (`embedding p.tsv: <output>: No space left on device`), where an `.npy` output was named.
/// The error names the file, or standard output. The file's write is made to fail with a
/// file size limit (its buffer of 1 MiB goes out while rows are written, 3,000 rows being
/// about 1.2 MB); standard output is `/dev/full`.
#[test]
fn a_failed_write_names_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = many_pairs(dir.path(), 3000);
    let out = dir.path().join("v.jsonl");
    // SIGXFSZ ignored, so a write past the limit fails with EFBIG instead of killing.
    let a = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 128; exec \"$0\" \"$@\"")
        .arg(assert_cmd::cargo::cargo_bin("relbert"))
        .env("RELBERT_LOG", "warn")
        .args(["embed", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(&format!("{}: File too large", out.display())),
        "{err}"
    );
    assert!(!err.contains("<output>"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the input is left"
    );
    let full = common::dev_full();
    for extra in [&[][..], &["--out", "-"]] {
        let o = std::process::Command::new(assert_cmd::cargo::cargo_bin("relbert"))
            .env("RELBERT_LOG", "warn")
            .args(["embed", "--model"])
            .arg(fixture("tiny-bert"))
            .arg("--pairs")
            .arg(&pairs)
            .args(extra)
            .stdout(full.try_clone().unwrap())
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            err.contains("standard output: No space left on device"),
            "{err}"
        );
        assert!(!err.contains("<output>"), "{err}");
    }
}

/// `n` distinct pairs, one a line.
fn many_pairs(dir: &Path, n: usize) -> std::path::PathBuf {
    let text: String = (0..n).map(|i| format!("w{i}\tv{i}\n")).collect();
    write(dir, "many.tsv", &text)
}

/// Without a terminal, progress came only at the end of each chunk of 4,096 pairs, so a log
/// showed nothing for minutes, and the last line came twice (once when the count reached the
/// end, again when the display finished). With `RELBERT_PROGRESS_SECS=0` each report is a
/// line: one thread and batches of 8 give a report every 16 pairs, well inside one chunk.
#[test]
fn plain_progress_comes_within_a_chunk_and_ends_once() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = many_pairs(dir.path(), 300);
    let a = relbert()
        .env("RELBERT_PROGRESS_SECS", "0")
        .args(["--threads", "1", "embed", "--batch-size", "8", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(&pairs)
        .args(["--format", "npy", "--out"])
        .arg(dir.path().join("v.npy"))
        .assert()
        .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    let counts = common::progress_counts(&err, "embedding");
    assert_eq!(
        counts.iter().filter(|&&n| n == 300).count(),
        1,
        "the final line is not there once: {err}"
    );
    assert_eq!(counts.last(), Some(&300), "{err}");
    assert!(
        counts.iter().any(|&n| n > 0 && n < 300),
        "no line before the end: {err}"
    );
    assert!(
        counts.windows(2).all(|w| w[0] < w[1]),
        "counts not rising: {counts:?}"
    );
}

/// A `RELBERT_PROGRESS_SECS` that is no number of seconds was ignored without a word.
#[test]
fn a_bad_progress_interval_is_warned_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = many_pairs(dir.path(), 3);
    let stderr_with = |secs: &str| {
        let a = relbert()
            .env("RELBERT_PROGRESS_SECS", secs)
            .args(["embed", "--model"])
            .arg(fixture("tiny-bert"))
            .arg("--pairs")
            .arg(&pairs)
            .assert()
            .success();
        String::from_utf8_lossy(&a.get_output().stderr).into_owned()
    };
    for bad in ["abc", "-1"] {
        let err = stderr_with(bad);
        assert_eq!(
            err.matches(&format!("RELBERT_PROGRESS_SECS=\"{bad}\" is not a number"))
                .count(),
            1,
            "{err}"
        );
    }
    let err = stderr_with("0.5");
    assert!(!err.contains("RELBERT_PROGRESS_SECS"), "{err}");
}

/// The binary, run as `std::process::Command` with its log at the default level (info), so
/// that log lines are written too; `progress_secs` set makes the plain progress lines come
/// at every update.
fn run_logging(progress_secs: &str) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("relbert"));
    c.env_remove("RELBERT_LOG")
        .env("RELBERT_PROGRESS_SECS", progress_secs);
    c
}

/// `embed` of `pairs` into `out` (an array), one thread in batches of 8: many progress lines.
fn embed_npy_args(c: &mut std::process::Command, pairs: &Path, out: &Path) {
    c.args(["--threads", "1", "embed", "--batch-size", "8", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(pairs)
        .args(["--format", "npy", "--out"])
        .arg(out);
}

/// Found by an audit: with standard error on `/dev/full`, a progress line or a log warning
/// panicked ("failed printing to stderr", status 101) and the output was never written;
/// `eprintln!` panics when its write fails, and so did the log's writer, which reports its
/// own failed writes with `eprintln!`. The lost messages are lost; the run is whole. With
/// standard error closed (`2>&-`) too.
#[test]
fn a_full_or_closed_standard_error_does_not_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = many_pairs(dir.path(), 300);
    // "abc" adds a log warning (it is no number of seconds) to the final progress line.
    for secs in ["0", "abc"] {
        let out = dir.path().join(format!("full-{secs}.npy"));
        let mut c = run_logging(secs);
        embed_npy_args(&mut c, &pairs, &out);
        let status = c.stderr(common::dev_full()).status().unwrap();
        assert!(status.success(), "RELBERT_PROGRESS_SECS={secs}: {status}");
        assert!(out.is_file() && relbert::output::pairs_sidecar(&out).is_file());

        let out = dir.path().join(format!("closed-{secs}.npy"));
        let mut c = std::process::Command::new("sh");
        c.arg("-c")
            .arg("exec \"$0\" \"$@\" 2>&-")
            .arg(assert_cmd::cargo::cargo_bin("relbert"))
            .env_remove("RELBERT_LOG")
            .env("RELBERT_PROGRESS_SECS", secs);
        embed_npy_args(&mut c, &pairs, &out);
        let status = c.status().unwrap();
        assert!(
            status.success(),
            "2>&-, RELBERT_PROGRESS_SECS={secs}: {status}"
        );
        assert!(out.is_file() && relbert::output::pairs_sidecar(&out).is_file());
    }
}

/// Found by an audit: a refused flag value (`--template` without placeholders) exited with
/// 101, a panic, instead of its status when standard error was `/dev/full`: the `error:` line
/// was written with `eprintln!`. The status is the one a user gets without the redirect, for
/// errors of the run (1: an output that is not relbert's) and of the command line (2: a
/// value clap or a check of relbert's refuses), and with standard error closed.
#[test]
fn an_error_on_a_full_or_closed_standard_error_keeps_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = many_pairs(dir.path(), 3);
    let taken = write(dir.path(), "taken.jsonl", "mine\n");
    let taken = taken.to_str().unwrap();
    let cases: [(&[&str], i32); 3] = [
        (&["--out", taken], 1),
        (&["--template", "no placeholders"], 2),
        (&["--no-such-flag"], 2),
    ];
    for (flags, code) in cases {
        let args = |c: &mut std::process::Command| {
            c.args(["embed", "--model"])
                .arg(fixture("tiny-bert"))
                .arg("--pairs")
                .arg(&pairs)
                .args(flags)
                .stdout(std::process::Stdio::null());
        };
        let mut c = run_logging("0");
        args(&mut c);
        let status = c.stderr(common::dev_full()).status().unwrap();
        assert_eq!(status.code(), Some(code), "{flags:?} 2>/dev/full: {status}");

        let mut c = std::process::Command::new("sh");
        c.arg("-c")
            .arg("exec \"$0\" \"$@\" 2>&-")
            .arg(assert_cmd::cargo::cargo_bin("relbert"));
        args(&mut c);
        let status = c.status().unwrap();
        assert_eq!(status.code(), Some(code), "{flags:?} 2>&-: {status}");
    }
}

/// Found by an audit: standard error on a pipe whose reader had gone (`2> >(head -1)`, a log
/// collector that died) killed the run by SIGPIPE at its next message, before its output was
/// written, and turned an error's status 1 or 2 into a death by signal: the binary restores
/// SIGPIPE's default action for standard output. Messages to standard error no longer raise
/// it. The pipe's reading end is closed before the run starts, so every write meets it gone.
#[test]
fn a_standard_error_whose_reader_has_gone_does_not_end_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = many_pairs(dir.path(), 300);
    let gone = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    for secs in ["0", "abc"] {
        let out = dir.path().join(format!("v-{secs}.npy"));
        let mut c = run_logging(secs);
        embed_npy_args(&mut c, &pairs, &out);
        let status = c.stderr(gone()).status().unwrap();
        assert!(status.success(), "RELBERT_PROGRESS_SECS={secs}: {status}");
        assert!(out.is_file() && relbert::output::pairs_sidecar(&out).is_file());
    }
    let taken = write(dir.path(), "taken.jsonl", "mine\n");
    let taken = taken.to_str().unwrap();
    let cases: [(&[&str], i32); 3] = [
        (&["--out", taken], 1),
        (&["--template", "no placeholders"], 2),
        (&["--no-such-flag"], 2),
    ];
    for (flags, code) in cases {
        let status = run_logging("0")
            .args(["embed", "--model"])
            .arg(fixture("tiny-bert"))
            .arg("--pairs")
            .arg(&pairs)
            .args(flags)
            .stdout(std::process::Stdio::null())
            .stderr(gone())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(code), "{flags:?}: {status}");
    }
}

/// On a terminal the progress is an `indicatif` bar, which ignores a failed draw; the log
/// line at the end of the run (`embedded 3000 pairs in ...`) was written by a writer that
/// reports its own failure with `eprintln!`, and panicked (status 101) when the terminal had
/// gone (a closed ssh session: writes fail with EIO). The terminal is a pseudo-terminal whose
/// other side is closed once the run has drawn on it.
#[test]
fn a_terminal_that_has_gone_does_not_stop_the_run() {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pairs = many_pairs(dir.path(), 3000);
    let out = dir.path().join("v.npy");
    // SAFETY: posix_openpt returns a new descriptor, checked first and then owned by
    // `master` alone; ptsname_r writes a NUL-terminated name into the buffer it is given.
    let (mut master, terminal) = unsafe {
        // Not inherited (O_CLOEXEC): a run holding this side open would keep its terminal.
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        let master = std::fs::File::from_raw_fd(fd);
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        let name = std::ffi::CStr::from_ptr(name.as_ptr()).to_str().unwrap();
        (master, std::path::PathBuf::from(name))
    };
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&terminal)
        .unwrap();
    let mut c = run_logging("0");
    embed_npy_args(&mut c, &pairs, &out);
    let mut child = c.stderr(slave).spawn().unwrap();
    // Only the run holds the terminal now: should it end without writing, the read below
    // ends too.
    drop(c);
    // The run has started drawing (the model's log line or the bar): then the terminal goes.
    let mut first = [0u8; 64];
    let n = master.read(&mut first).unwrap();
    assert!(n > 0);
    drop(master);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(out.is_file() && relbert::output::pairs_sidecar(&out).is_file());
}

/// Audit (s18): `--out x.npy` without `--format` wrote JSON lines into x.npy, and `--format
/// npy --out y.jsonl` a binary array into y.jsonl. The format follows the extension now, and
/// an explicit one the extension contradicts is a bad command line (status 2) naming both
/// flags, refused before anything is written.
#[test]
fn the_format_follows_the_output_extension_and_a_contradiction_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "p.tsv", "paris\tfrance\ndog\tpuppy\n");
    let embed = |extra: &[&str], out: &Path| tiny_embed(&pairs, Some(out), extra);
    let npy = dir.path().join("x.npy");
    embed(&[], &npy).success();
    let bytes = std::fs::read(&npy).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY"), "{:?}", &bytes[..8]);
    assert!(dir.path().join("x.pairs.tsv").is_file());
    // Any letter case; another extension, or none, stays JSON lines unless told otherwise.
    let upper = dir.path().join("X.NPY");
    embed(&[], &upper).success();
    assert!(std::fs::read(&upper).unwrap().starts_with(b"\x93NUMPY"));
    let txt = dir.path().join("v.txt");
    embed(&[], &txt).success();
    assert!(std::fs::read_to_string(&txt)
        .unwrap()
        .starts_with("{\"pair\""));
    let train = dir.path().join("emb.train");
    embed(&["--format", "npy"], &train).success();
    assert!(std::fs::read(&train).unwrap().starts_with(b"\x93NUMPY"));
    for (format, name) in [("npy", "y.jsonl"), ("npy", "y.json"), ("jsonl", "z.npy")] {
        let out = dir.path().join(name);
        let a = embed(&["--format", format], &out).code(2);
        let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
        assert!(
            err.contains(&format!("--format {format}"))
                && err.contains(&format!("--out {}", out.display())),
            "{format} {name}: {err}"
        );
        assert!(!out.exists(), "{name} was written");
    }
    // A name relbert gives an array's pair list is no name for vectors (a review found
    // `--format npy --out v.pairs.tsv` accepted, which blocked a later `--out v.npy`).
    for extra in [&["--format", "npy"][..], &[][..]] {
        let out = dir.path().join("v.pairs.tsv");
        let a = embed(extra, &out).code(2);
        let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
        assert!(err.contains("ends in .pairs.tsv"), "{extra:?}: {err}");
        assert!(!out.exists());
    }
    // Agreeing, it is taken.
    let agreed = dir.path().join("w.jsonl");
    embed(&["--format", "jsonl"], &agreed).success();
    assert!(std::fs::read_to_string(&agreed)
        .unwrap()
        .starts_with("{\"pair\""));
}

/// Audit (s18): with an offset model, a pair whose two words share one word vector
/// (`nephew:nephew`) has no offset; its vector came out of the model at norm √(1 − w) (`--raw`
/// wrote it so) while README promised the weighted mean of two cosines, with nothing said. Its
/// vector is now its relation part at unit length, as documented, and a warning names the
/// first such pair's file and line and counts the others.
#[test]
fn a_pair_whose_words_share_one_vector_is_warned_of_and_unit_length() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::fixture_with_offset_weight("tiny-bert", dir.path(), Some(0.8));
    let pairs = write(
        dir.path(),
        "p.tsv",
        "dog\tcat\nnephew\tnephew\nsun\tsun\nnephew\tnephew\n",
    );
    let out = dir.path().join("v.jsonl");
    let a = relbert()
        .args(["embed", "--raw", "--model"])
        .arg(&model)
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
    assert_eq!(err.matches("have one word vector").count(), 1, "{err}");
    assert!(
        err.contains("p.tsv:2: ")
            && err.contains("\"nephew\":\"nephew\"")
            && err.contains("0.447·cos(r, r′)")
            && err.contains("(and 1 more such pair(s))"),
        "{err}"
    );
    let rows: Vec<Vec<f32>> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::from_value(v["vector"].clone()).unwrap()
        })
        .collect();
    for (i, v) in rows.iter().enumerate() {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "row {i}: norm {norm}");
    }
    assert!(rows[1][32..].iter().all(|x| *x == 0.0));
    // Cosine with another pair: √(1 − w) times the relation parts' cosine.
    let (r1, r2) = (&rows[1][..32], &rows[0][..32]);
    let want = 0.2f64.sqrt() * cosine(r1, r2);
    assert!((cosine(&rows[1], &rows[0]) - want).abs() < 1e-5);
    // Words with their own vectors: no warning.
    std::fs::write(&pairs, "dog\tcat\n").unwrap();
    let a = relbert()
        .args(["embed", "--model"])
        .arg(&model)
        .arg("--pairs")
        .arg(&pairs)
        .assert()
        .success();
    let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
    assert!(!err.contains("one word vector"), "{err}");
}

/// Audit (s18): different words the tokenizer has no token for (emoji on a WordPiece
/// vocabulary: `[UNK]` alone) silently got one vector. Warned of now, naming the first's file
/// and line and the words; a byte-level BPE tokenizer (RoBERTa), which reads every character,
/// has no such words.
#[test]
fn words_of_unknown_tokens_only_are_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(
        dir.path(),
        "p.tsv",
        "dog\tcat\n\u{1f600}\tdog\n\u{1f389}\tdog\nnew \u{1f600}\tdog\n\u{1f600}\tcat\n",
    );
    let run = |model: &str| {
        let a = relbert()
            .args(["embed", "--model"])
            .arg(fixture(model))
            .arg("--pairs")
            .arg(&pairs)
            .assert()
            .success();
        String::from_utf8(a.get_output().stderr.clone()).unwrap()
    };
    let err = run("tiny-bert");
    assert_eq!(err.matches("unknown token").count(), 1, "{err}");
    assert!(
        // The place is the first word's (s19 audit: "p.tsv:2: 2 distinct word(s)" read as if
        // both were on line 2).
        err.contains("p.tsv:2 (the first): 2 distinct word(s)")
            && err.contains("[UNK]")
            && err.contains("(\"\u{1f600}\", \"\u{1f389}\")"),
        "{err}"
    );
    let err = run("tiny-roberta");
    assert!(!err.contains("unknown token"), "{err}");
}

/// Review of 2199c21: an old script's `embed --out vecs.npy --force`, which wrote JSON lines
/// there, met a refusal speaking only of NumPy arrays; it now says the format follows the
/// extension and how to keep JSON lines. And `X.NPY` was written as npy (the extension read in
/// any case) while its pair list kept the `.NPY` (`X.NPY.pairs.tsv`): both agree now.
#[test]
fn json_lines_at_an_npy_path_are_refused_with_the_reason_and_any_case_npy_loses_its_extension() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "p.tsv", "paris\tfrance\ndog\tpuppy\n");
    let embed = |extra: &[&str], out: &Path| tiny_embed(&pairs, Some(out), extra);
    // JSON lines an older relbert wrote to vecs.npy (as `--format jsonl` writes them now).
    let jsonl = dir.path().join("made.jsonl");
    embed(&[], &jsonl).success();
    let vecs = dir.path().join("vecs.npy");
    std::fs::copy(&jsonl, &vecs).unwrap();
    let before = std::fs::read(&vecs).unwrap();
    let a = embed(&["--force"], &vecs).failure();
    let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains("format follows --out's extension")
            && err.contains(&dir.path().join("vecs.jsonl").display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(&vecs).unwrap(), before);
    // An explicit --format npy asked for an array: the plain refusal, as for another file.
    let a = embed(&["--force", "--format", "npy"], &vecs).failure();
    let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
    assert!(err.contains("does not look like a NumPy array"), "{err}");
    assert!(!err.contains("format follows"), "{err}");
    std::fs::write(&vecs, "not vectors\n").unwrap();
    let a = embed(&["--force"], &vecs).failure();
    let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
    assert!(err.contains("does not look like a NumPy array"), "{err}");
    assert!(!err.contains("format follows"), "{err}");

    assert_eq!(
        relbert::output::pairs_sidecar(Path::new("d/X.NPY")),
        Path::new("d/X.pairs.tsv")
    );
    assert_eq!(
        relbert::output::pairs_sidecar(Path::new("d/x.Npy")),
        Path::new("d/x.pairs.tsv")
    );
    assert_eq!(
        relbert::output::pairs_sidecar(Path::new("d/é.npy")),
        Path::new("d/é.pairs.tsv")
    );
    assert_eq!(
        relbert::output::pairs_sidecar(Path::new("d/emb.train")),
        Path::new("d/emb.train.pairs.tsv")
    );
    let upper = dir.path().join("X.NPY");
    embed(&[], &upper).success();
    assert!(std::fs::read(&upper).unwrap().starts_with(b"\x93NUMPY"));
    assert!(dir.path().join("X.pairs.tsv").is_file());
    assert!(!dir.path().join("X.NPY.pairs.tsv").exists());
    // Replaced as relbert's own with --force: its pair list is found where it was written.
    embed(&["--force"], &upper).success();
}

/// Audit (s19): `embed --pairs somedir` said `somedir:1: cannot read line: Is a directory (os
/// error 21)`, as if the file had a bad first line. A directory is refused as the value of
/// `--pairs`, without a line.
#[test]
fn a_directory_given_as_pairs_is_named_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = tiny_embed(dir.path(), None, &[]).code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(&format!(
            "invalid value for --pairs: {} is a directory",
            dir.path().display()
        )) && !err.contains(":1:")
            && !err.contains("os error"),
        "{err}"
    );
}

/// Audit (s19): the closing log line printed its count ungrouped beside a grouped rate:
/// `embedded 60000 pairs in 2.00s (30,031 pairs/s)`.
#[test]
fn the_closing_line_groups_thousands() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..1200).map(|i| format!("w{i}\tv{i}\n")).collect();
    let pairs = write(dir.path(), "p.tsv", &text);
    let a = relbert()
        .env("RELBERT_LOG", "info")
        .args(["embed", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(dir.path().join("v.jsonl"))
        .assert()
        .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("embedded 1,200 pairs in "), "{err}");
}

/// Audit (s20): `embed --out e\xff.npy` and `--out e\xfe.npy --force` wrote one pair list,
/// `e\u{FFFD}.pairs.tsv` (the name converted lossily, the mark too), so the first array lost
/// its list to the second. Each list is named by its array's bytes and names it without
/// loss.
#[test]
fn a_non_utf8_out_keeps_its_own_pair_list() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let raw = |name: &[u8]| dir.path().join(std::ffi::OsStr::from_bytes(name));
    let three = write(dir.path(), "three.tsv", "dog\tcat\nfoo\tbar\ncow\tcalf\n");
    let one = write(dir.path(), "one.tsv", "x\ty\n");
    for (pairs, out) in [(&three, &b"e\xff.npy"[..]), (&one, &b"e\xfe.npy"[..])] {
        tiny_embed(pairs, Some(&raw(out)), &["--force"]).success();
    }
    for (list, mark, rows) in [
        (&b"e\xff.pairs.tsv"[..], r"e\xff.npy", 3),
        (&b"e\xfe.pairs.tsv"[..], r"e\xfe.npy", 1),
    ] {
        let text = String::from_utf8(std::fs::read(raw(list)).unwrap()).unwrap();
        let (first, rest) = text.split_once('\n').unwrap();
        assert_eq!(
            first,
            format!("# relbert: row i of {mark} is the pair on data line i")
        );
        assert_eq!(rest.lines().count(), rows, "{text}");
    }
    assert!(!dir.path().join("e\u{FFFD}.pairs.tsv").exists());
}

/// Audit (s20): errors on the files relbert writes beside --out named only the hidden file
/// (`/proc/.e.npy.lock: No such file or directory`), and a valid name too long for them
/// failed with `File name too long` on one of them. They name --out and what the file is; an
/// ASCII name that leaves no room is a bad command line (status 2) stating the limit.
#[test]
fn errors_on_side_files_name_the_out() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "p.tsv", "dog\tcat\n");
    let embed = |out: &Path| tiny_embed(&pairs, Some(out), &[]);
    let stderr = |a: assert_cmd::assert::Assert| {
        String::from_utf8_lossy(&a.get_output().stderr).into_owned()
    };
    if Path::new("/proc/self").is_dir() {
        let err = stderr(embed(Path::new("/proc/e.npy")).code(1));
        assert!(
            err.contains("--out /proc/e.npy: the lock file beside it"),
            "{err}"
        );
    }
    // The file system's limit on a name (255 bytes on Linux's usual ones): `.NAME.relbert.tmp`
    // is 13 bytes more than NAME, an array's `.STEM.pairs.tsv.relbert.tmp` 19 more.
    let max = relbert::output::name_max(&dir.path().join("out")).unwrap_or(255);
    for (extra, ext) in [(13, ".jsonl"), (19, ".npy")] {
        let room = max - extra;
        let out = dir.path().join(format!(
            "{}{ext}",
            "w".repeat((room + 4).min(max) - ext.len())
        ));
        let err = stderr(embed(&out).code(2));
        assert!(
            err.contains(&format!("the --out name can be at most {room} bytes")),
            "{err}"
        );
        assert!(!out.exists());
    }
    // Review R11: a name that is not ASCII is not refused up front (ntfs3 counts a name in
    // UTF-16 units, and takes one of more bytes than its limit); the side file whose name is
    // too long fails when it is made, naming --out, the file and the limit, and nothing is
    // left. Here the locks fit and a temporary file does not.
    for (ext, fixed, what) in [
        (
            ".jsonl",
            19,
            "the temporary file beside it that the output is written to",
        ),
        (
            ".npy",
            23,
            "the temporary file beside it that the array's pair list is written to",
        ),
    ] {
        // `fixed`: the bytes the longest temporary name adds to the `é`s (2 bytes each).
        let out = dir
            .path()
            .join(format!("{}{ext}", "\u{e9}".repeat((max + 6 - fixed) / 2)));
        let err = stderr(embed(&out).code(1));
        assert!(
            err.contains(&format!("--out {}: {what}", out.display()))
                && err.contains("is too long for this file system"),
            "{err}"
        );
        if let Some(max) = relbert::output::name_max(&dir.path().join("out")) {
            assert!(
                err.contains(&format!("whose limit on a name is {max} (")),
                "{err}"
            );
        }
        assert!(!out.exists());
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains('\u{e9}'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

/// `relbert embed --format npy` of `pairs` to `out`, with `--force` if `force`.
fn embed_npy(pairs: &Path, out: &Path, force: bool) -> assert_cmd::assert::Assert {
    let extra: &[&str] = if force {
        &["--format", "npy", "--force"]
    } else {
        &["--format", "npy"]
    };
    tiny_embed(pairs, Some(out), extra)
}

/// Review R11 of 745206c: marks now escape `\` and control characters (`a\\b.npy`,
/// `a\x09b.npy`), and the pair lists the build before wrote (`a\b.npy`, control characters as
/// `?`: `a?b.npy`) were taken for another array's: `embed --out 'a\b.npy' --force` was refused
/// with "a\b.pairs.tsv is the pair list of a\b.npy, another output beside it". A UTF-8
/// name's list in the old form is its array's. The old marks are written by hand.
#[test]
fn a_pair_list_an_older_relbert_marked_without_escapes_is_its_array_s() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "p.tsv", "dog\tcat\nfoo\tbar\n");
    let three = write(dir.path(), "q.tsv", "dog\tcat\nfoo\tbar\ncow\tcalf\n");
    for (stem, old) in [
        ("a\\b", "a\\b.npy"),
        ("a\tb", "a?b.npy"),
        ("c\u{85}d", "c?d.npy"),
    ] {
        let array = dir.path().join(format!("{stem}.npy"));
        let list = dir.path().join(format!("{stem}.pairs.tsv"));
        embed_npy(&pairs, &array, false).success();
        let text = std::fs::read_to_string(&list).unwrap();
        let (_, rows) = text.split_once('\n').unwrap();
        std::fs::write(
            &list,
            format!("# relbert: row i of {old} is the pair on data line i\n{rows}"),
        )
        .unwrap();
        embed_npy(&three, &array, true).success();
        let text = std::fs::read_to_string(&list).unwrap();
        let mark = relbert::embed::sidecar_mark(&array);
        assert!(text.starts_with(&format!("{mark}\n")), "{text}");
        assert_eq!(text.lines().count(), 4, "{text}");
    }
    // Another array's old mark is still another's: `a\b` shares `a\b.pairs.tsv`.
    let list = dir.path().join("a\\b.pairs.tsv");
    std::fs::write(
        &list,
        "# relbert: row i of a\\b.npy is the pair on data line i\nx\ty\t\n",
    )
    .unwrap();
    let a = embed_npy(&pairs, &dir.path().join("a\\b"), true).code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("another output beside it"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&list).unwrap(),
        "# relbert: row i of a\\b.npy is the pair on data line i\nx\ty\t\n"
    );
}

/// Review R11 of 745206c: a pair list naming its array with no array there was redone without
/// --force as what a killed run left, also when the user had moved the array away and kept
/// the list. Only with the array's temporary file beside it, which a kill between the two
/// renames leaves (`.w.npy.relbert.tmp`, whole and of the list's rows), is it a killed run's;
/// else "exists; pass --force", the list untouched. The state is made by hand.
#[test]
fn a_pair_list_without_its_array_is_redone_only_beside_a_killed_run_s_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "p.tsv", "dog\tcat\nfoo\tbar\n");
    let three = write(dir.path(), "q.tsv", "dog\tcat\nfoo\tbar\ncow\tcalf\n");
    let array = dir.path().join("w.npy");
    let list = dir.path().join("w.pairs.tsv");
    let temp = dir.path().join(".w.npy.relbert.tmp");
    embed_npy(&pairs, &array, false).success();
    let kept = std::fs::read(&list).unwrap();
    std::fs::rename(&array, dir.path().join("moved.npy")).unwrap();
    let a = embed_npy(&three, &array, false).code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(&format!("{} exists; pass --force", list.display())),
        "{err}"
    );
    assert_eq!(std::fs::read(&list).unwrap(), kept);
    assert!(!array.exists());
    // A temporary array left by a run killed while writing (not whole, or not the list's
    // rows) does not make the kept list a killed run's either (review R12 of 7ab9ad7).
    // Whole, but of three rows beside a list of two (review R4 of 5c26d9e: untested).
    let other = dir.path().join("other.npy");
    embed_npy(&three, &other, false).success();
    for stale in [
        b"half".to_vec(),
        {
            let mut two = std::fs::read(dir.path().join("moved.npy")).unwrap();
            two.pop();
            two
        },
        std::fs::read(&other).unwrap(),
    ] {
        std::fs::write(&temp, stale).unwrap();
        let a = embed_npy(&three, &array, false).code(1);
        let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        assert!(err.contains("exists; pass --force"), "{err}");
        assert_eq!(std::fs::read(&list).unwrap(), kept);
    }
    // A killed run's state, the whole array of the list's rows synced under its temporary
    // name: redone without --force, the temporary file replaced.
    std::fs::copy(dir.path().join("moved.npy"), &temp).unwrap();
    embed_npy(&three, &array, false).success();
    assert_eq!(std::fs::read_to_string(&list).unwrap().lines().count(), 4);
    assert!(array.is_file() && !temp.exists());
}

/// Audit I1 (s23): `embed --force` replaced any JSON-lines file whose first line had `pair`
/// and `vector` keys, whatever they held. Its lines must be relbert's records: `pair` two
/// strings, `vector` numbers, nothing else; a user's file is left byte for byte.
#[test]
fn force_replaces_only_json_lines_of_relbert_s_records() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "p.tsv", "a\tb\n");
    let run = |out: &Path| tiny_embed(&pairs, Some(out), &["--force"]);
    for text in [
        "{\"pair\":1,\"vector\":2,\"mine\":\"precious\"}\n",
        "{\"pair\":[\"a\",\"b\"],\"vector\":[0.5],\"mine\":\"precious\"}\n",
        "{\"pair\":[\"a\",\"b\",\"c\"],\"vector\":[0.5]}\n",
        "{\"pair\":[\"a\",\"b\"],\"vector\":[\"x\"]}\n",
        "{\"pair\":[\"a\",\"b\"],\"vector\":[0.5]}\nmy notes\n",
        "{\"pair\":[\"a\",\"b\"],\"vector\":[0.5]}\n{\"pair\":[\"a\",\"b\"],\"vector\":[0.5,1]}\n",
    ] {
        let out = write(dir.path(), "user.jsonl", text);
        let a = run(&out).code(1);
        let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        assert!(err.contains("refusing to replace"), "{text:?}: {err}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
    }
    // relbert's own, and an empty file, are replaced.
    let out = dir.path().join("ours.jsonl");
    run(&out).success();
    run(&out).success();
    let empty = write(dir.path(), "empty.jsonl", "");
    run(&empty).success();
    assert!(std::fs::read_to_string(&empty)
        .unwrap()
        .starts_with("{\"pair\""));
}

/// Audit I2 (s23): a missing folder of `--out` was made, and left behind when the run then
/// failed on its input. Refused now before anything is read or made, a bad command line
/// naming --out and the folder.
#[test]
fn an_out_in_a_missing_folder_is_refused_and_no_folder_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.tsv", "a\tb\n");
    let bad = write(dir.path(), "bad.tsv", "a\tb\nonlyone\n");
    for pairs in [&good, &bad] {
        for out in ["typo/deep/dir/v.npy", "typo/v.jsonl"] {
            let a = tiny_embed(pairs, Some(&dir.path().join(out)), &[]).code(2);
            let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
            let folder = dir.path().join(out).parent().unwrap().to_path_buf();
            common::assert_out_folder_missing(&err, &folder, out);
            assert!(!dir.path().join("typo").exists(), "{out}: typo/ was made");
        }
    }
}

/// Audit I3 (s23): `embed --out notes.txt` said "exists; pass --force to overwrite it", and
/// with --force refused it as not relbert's. A user's file is refused at once; relbert's own
/// output is still told to pass --force.
#[test]
fn only_an_output_force_would_replace_is_told_to_pass_force() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "p.tsv", "a\tb\n");
    let run = |out: &Path| tiny_embed(&pairs, Some(out), &[]);
    let notes = write(dir.path(), "notes.txt", "my notes\n");
    let a = run(&notes).code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("refusing to replace") && !err.contains("pass --force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");
    let ours = dir.path().join("v.jsonl");
    run(&ours).success();
    let a = run(&ours).code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(&format!("{} exists; pass --force", ours.display())),
        "{err}"
    );
}

/// Audit I5 (s23): `embed --raw` with a model that has an offset weight (the default model)
/// wrote unit vectors without a word. It warns once that --raw does not apply; a model
/// without an offset weight gives raw sums without the warning, and so does no --raw.
#[test]
fn raw_with_an_offset_weight_is_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::fixture_with_offset_weight("tiny-bert", dir.path(), Some(0.8));
    let pairs = write(dir.path(), "p.tsv", "dog\tcat\nsun\tmoon\n");
    let run = |model: &Path, raw: bool| {
        let mut c = relbert();
        c.args(["embed", "--model"])
            .arg(model)
            .arg("--pairs")
            .arg(&pairs);
        if raw {
            c.arg("--raw");
        }
        let a = c.assert().success();
        String::from_utf8_lossy(&a.get_output().stderr).into_owned()
    };
    let err = run(&model, true);
    assert_eq!(err.matches("--raw does not apply").count(), 1, "{err}");
    assert!(
        err.contains("offset weight 0.8") && err.contains("unit-length"),
        "{err}"
    );
    for (model, raw) in [(model.clone(), false), (fixture("tiny-bert"), true)] {
        let err = run(&model, raw);
        assert!(!err.contains("--raw"), "{raw}: {err}");
    }
}

/// Review R14 (s23): `embed > v.jsonl` stopped by a kill leaves its last line unfinished.
/// `embed --out v.jsonl --force` replaced such a file of relbert's over 64 KiB but refused
/// one under it (read whole, it had to end with a newline). The cut fragment is judged alike
/// either way: after a whole record of relbert's, or starting as its lines do, it is relbert's.
#[test]
fn force_replaces_relbert_s_json_lines_cut_off_by_a_killed_run() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = write(dir.path(), "p.tsv", "a\tb\nc\td\ne\tf\n");
    let full = tiny_embed(&pairs, None, &[])
        .success()
        .get_output()
        .stdout
        .clone();
    let ends: Vec<usize> = full
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(ends.len(), 3, "{}", String::from_utf8_lossy(&full));
    // Two whole records and 100 bytes of the third; the first line alone cut after 100 bytes.
    for cut in [&full[..ends[1] + 100], &full[..100]] {
        let out = dir.path().join("v.jsonl");
        std::fs::write(&out, cut).unwrap();
        tiny_embed(&pairs, Some(&out), &["--force"]).success();
        assert_eq!(std::fs::read(&out).unwrap(), full);
    }
}
