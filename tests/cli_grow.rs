//! End-to-end tests of the stream-to-index path on the tiny fixture model: `relbert index
//! build --pairs -` (pairs from standard input) and `relbert index add` (growing an index by
//! the pairs it lacks), through the CLI, with a query process open across an add and an add
//! killed and run again.
#![cfg(feature = "cli")]
#![cfg(unix)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::fixture;
use relbert_index::Index;

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn");
    c
}

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("relbert")
}

fn model() -> PathBuf {
    fixture("tiny-bert")
}

/// `n` distinct pairs of the bundled vocabulary, with their labels, as TSV lines.
fn vocab_lines(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("index/vocab/wordnet_hypernym.tsv"),
    )
    .unwrap();
    // One spelling of each pair: a query answers a pair stored in two spellings that differ
    // only by case ("Colony" and "colony") once, so an answer holding every stored pair but
    // the query's, which these tests compare with the index's pairs, needs none such.
    let mut seen = BTreeSet::new();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter(|l| {
            let mut c = l.split('\t');
            seen.insert((
                c.next().unwrap().to_lowercase(),
                c.next().unwrap().to_lowercase(),
            ))
        })
        .take(n)
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn build_file(pairs: &Path, out: &Path) {
    common::tiny_index(pairs, out);
}

/// What most tests here start from: `lines` written to the pair file `NAME` in `dir`, and
/// the index `dir/idx` built from it. Returns the pair file and the index.
fn index_in(dir: &Path, name: &str, lines: &[String]) -> (PathBuf, PathBuf) {
    let file = dir.join(name);
    write_lines(&file, lines);
    let idx = dir.join("idx");
    build_file(&file, &idx);
    (file, idx)
}

fn add(index: &Path, pairs: &Path) -> assert_cmd::assert::Assert {
    relbert()
        .args(["index", "add", "--index"])
        .arg(index)
        .arg("--pairs")
        .arg(pairs)
        .assert()
}

/// Every stored pair of an index with its label and vector.
type Rows = HashMap<(String, String), (Option<String>, Vec<f32>)>;

fn rows(index: &Path) -> Rows {
    let idx = Index::open(index).unwrap();
    (0..idx.count())
        .map(|r| {
            let p = idx.pair(r).unwrap();
            (
                (p.head.to_string(), p.tail.to_string()),
                (
                    p.label.map(str::to_string),
                    idx.vector(r).unwrap().into_owned(),
                ),
            )
        })
        .collect()
}

/// Same pairs, same labels, same vectors (up to float rounding).
fn assert_same_rows(a: &Rows, b: &Rows) {
    assert_eq!(a.len(), b.len());
    for (k, (label, v)) in a {
        let (label_b, w) = b.get(k).unwrap_or_else(|| panic!("{k:?} missing"));
        assert_eq!(label, label_b, "{k:?}");
        let cos = common::cosine(v, w);
        assert!(cos > 0.99999, "{k:?}: cosine {cos}");
    }
}

/// recall@10 of HNSW search against exact search, every `step`-th row as a query (its own row
/// left out).
fn self_recall(index: &Path, step: usize) -> f64 {
    let idx = Index::open(index).unwrap();
    let (mut hit, mut all) = (0usize, 0usize);
    for row in (0..idx.count()).step_by(step) {
        let q = idx.vector(row).unwrap().into_owned();
        let exact: BTreeSet<usize> = idx
            .search_exact_filtered(&q, 10, |r| r != row)
            .unwrap()
            .iter()
            .map(|h| h.row)
            .collect();
        let found = idx.search_filtered(&q, 10, 64, |r| r != row).unwrap();
        hit += found.iter().filter(|h| exact.contains(&h.row)).count();
        all += exact.len();
    }
    hit as f64 / all as f64
}

#[test]
fn stdin_pipeline_builds_the_index_a_file_builds() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(300);
    let file = dir.path().join("pairs.tsv");
    write_lines(&file, &lines);
    build_file(&file, &dir.path().join("from-file"));

    // printf … | relbert index build --pairs - …, then a query on the result.
    let out = dir.path().join("from-stdin");
    let status = StdCommand::new("sh")
        .arg("-c")
        .arg(format!(
            "cat '{}' | RELBERT_LOG=warn '{}' index build --model '{}' --pairs - --out '{}'",
            file.display(),
            bin().display(),
            model().display(),
            out.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    // The same rows as from the file, in the same order (the graph, built in parallel, may
    // differ).
    let (a, b) = (
        Index::open(dir.path().join("from-file")).unwrap(),
        Index::open(&out).unwrap(),
    );
    assert_eq!(b.count(), 300);
    for r in 0..300 {
        assert_eq!(a.pair(r).unwrap(), b.pair(r).unwrap());
        assert_eq!(a.vector(r).unwrap(), b.vector(r).unwrap());
    }
    let a = relbert()
        .args(["query", "--json", "-k", "3", "--index"])
        .arg(&out)
        .args(["lion", "cub"])
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(doc["results"].as_array().unwrap().len(), 3);

    // A bad line on standard input is an error naming <stdin> and the line; nothing is built.
    let bad = dir.path().join("bad");
    let a = relbert()
        .args(["index", "build", "--model"])
        .arg(model())
        .args(["--pairs", "-", "--out"])
        .arg(&bad)
        .write_stdin("paris\tfrance\n# note\nno tab here\n")
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("<stdin>:3"), "{err}");
    assert!(!bad.exists());
    // Standard input can be read once.
    relbert()
        .args(["index", "build", "--model"])
        .arg(model())
        .args(["--pairs", "-", "-", "--out"])
        .arg(&bad)
        .write_stdin("paris\tfrance\n")
        .assert()
        .failure();
}

/// Starts `relbert index add --index idx --pairs pairs` in the background, output discarded.
fn spawn_add(idx: &Path, pairs: &Path) -> Child {
    StdCommand::new(bin())
        .env("RELBERT_LOG", "warn")
        .args(["index", "add", "--index"])
        .arg(idx)
        .arg("--pairs")
        .arg(pairs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills `child` once `file` is longer than `len` bytes (or at once if it exits first).
fn kill_when_longer(child: &mut Child, file: &Path, len: u64) -> bool {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        let now = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        if now > len || started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Runs `relbert ARGS`, a build into `out` with `input`'s pairs on standard input (its output
/// discarded), kills it once its first checkpointed chunk of 2048 rows of `dim` floats is
/// durable, asserting it had not ended by then, and returns its copy of standard input,
/// asserted to be there.
fn build_killed_after_first_chunk(
    args: &[std::ffi::OsString],
    input: &Path,
    out: &Path,
    dim: u64,
) -> PathBuf {
    let mut child = StdCommand::new(bin())
        .env("RELBERT_LOG", "warn")
        .args(args)
        .stdin(std::fs::File::open(input).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = relbert_index::partial_dir(out).unwrap();
    assert!(kill_when_longer(
        &mut child,
        &partial.join("vectors"),
        64 + 2048 * dim * 4
    ));
    let spool = partial.join("input.spool");
    assert!(spool.is_file());
    spool
}

/// Standard input cannot be read twice: a build from it keeps a copy in its partial
/// directory, and when it is killed, the same command with nothing on standard input resumes
/// from the copy (and a re-sent stream of the same pairs resumes too).
#[test]
fn a_killed_build_from_stdin_resumes_from_its_spooled_input() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(9000);
    let file = dir.path().join("pairs.tsv");
    write_lines(&file, &lines);
    let reference = dir.path().join("reference");
    build_file(&file, &reference);
    let dim = Index::open(&reference).unwrap().dim() as u64;
    let out = dir.path().join("idx");
    // With `--pairs - FILE` the copy holds both inputs' pairs, and resuming with the same
    // arguments and nothing on standard input uses it (it used to be ignored, and the
    // resume was refused as "a different input").
    let (head, rest) = lines.split_at(4500);
    let first = dir.path().join("first.tsv");
    write_lines(&first, head);
    let tail = dir.path().join("tail.tsv");
    write_lines(&tail, rest);
    // `legacy`: the copy without relbert's mark, as an older relbert spooled it; a partial
    // build of relbert's own still resumes from it.
    for (resend, split, legacy) in [
        (false, false, false),
        (true, false, false),
        (false, true, false),
        (false, false, true),
    ] {
        let _ = std::fs::remove_dir_all(&out);
        let (sent, also): (&Path, &[&Path]) = if split {
            (&first, &[&tail])
        } else {
            (&file, &[])
        };
        let mut args: Vec<std::ffi::OsString> = vec!["index".into(), "build".into()];
        args.extend(["--model".into(), model().into_os_string()]);
        args.extend(["--pairs".into(), "-".into()]);
        args.extend(also.iter().map(|p| p.as_os_str().to_owned()));
        args.extend(["--out".into(), out.clone().into_os_string()]);
        let spool = build_killed_after_first_chunk(&args, sent, &out, dim);
        // relbert's mark first, so that a copy left in a published index is told from a
        // user's file of its name.
        let copy = std::fs::read_to_string(&spool).unwrap();
        assert!(copy.starts_with("# relbert input spool 1\n"), "{copy:.80}");
        if legacy {
            let unmarked = copy.strip_prefix("# relbert input spool 1\n").unwrap();
            std::fs::write(&spool, unmarked).unwrap();
        }
        assert!(!out.exists());
        let input = if resend {
            std::fs::read(&file).unwrap()
        } else {
            Vec::new()
        };
        let a = relbert()
            .env("RELBERT_LOG", "info")
            .args(&args)
            .write_stdin(input)
            .assert()
            .success();
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(err.contains("resuming"), "{err}");
        assert!(!dir.path().join("idx.partial").exists());
        assert_same_rows(&rows(&out), &rows(&reference));
    }
    // Without a partial build, empty standard input is an error, not an empty index.
    let a = relbert()
        .args(["index", "build", "--model"])
        .arg(model())
        .args(["--pairs", "-", "--out"])
        .arg(dir.path().join("empty"))
        .write_stdin("")
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("no pairs on standard input"), "{err}");
}

#[test]
fn add_equals_a_build_of_the_union() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(3000);
    let (base, new) = lines.split_at(2700);
    let union_file = dir.path().join("union.tsv");
    write_lines(&union_file, &lines);
    // The added input overlaps the index (20 pairs it holds) and repeats itself.
    let mut added: Vec<String> = base[..20].to_vec();
    added.extend(new.iter().cloned());
    added.extend(new[..5].iter().cloned());
    let add_file = dir.path().join("add.tsv");
    write_lines(&add_file, &added);

    let (_, idx) = index_in(dir.path(), "base.tsv", base);
    let before = Index::open(&idx).unwrap().id();
    let a = relbert()
        .args(["index", "add", "--json", "--index"])
        .arg(&idx)
        .arg("--pairs")
        .arg(&add_file)
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(doc["added"], 300);
    assert_eq!(doc["already_in_index"], 20);
    assert_eq!(doc["repeated_in_input"], 5);
    assert_eq!(doc["count"], 3000);
    assert!(!dir.path().join("idx.partial").exists());

    let union = dir.path().join("union");
    build_file(&union_file, &union);
    let grown = Index::open(&idx).unwrap();
    assert_ne!(grown.id(), before);
    assert_eq!(grown.meta(), Index::open(&union).unwrap().meta());
    assert_same_rows(&rows(&idx), &rows(&union));
    relbert()
        .args(["index", "info", "--verify"])
        .arg(&idx)
        .assert()
        .success();
    let (r_grown, r_union) = (self_recall(&idx, 3), self_recall(&union, 3));
    assert!(r_grown >= 0.95, "grown index recall@10 {r_grown}");
    assert!(
        r_grown >= r_union - 0.02,
        "grown {r_grown}, union {r_union}"
    );
}

/// A `relbert query --json` stream, its standard error the test's, killed when dropped.
struct QueryProcess(common::QueryStream);

impl QueryProcess {
    fn start(index: &Path) -> Self {
        let flags = ["--json", "--exact", "--keep-shared-words", "-k", "100000"];
        QueryProcess(common::QueryStream::start_with(
            &flags,
            index,
            Stdio::piped(),
            Stdio::inherit(),
        ))
    }

    /// The pairs of the answer to (a, b): with an exact search and a `k` above the index's
    /// size, every stored pair but the query's own.
    fn ask(&mut self, a: &str, b: &str) -> BTreeSet<(String, String)> {
        let doc = self.0.ask(&format!("{a}\t{b}"));
        doc["results"]
            .as_array()
            .unwrap_or_else(|| panic!("no results: {doc}"))
            .iter()
            .map(|h| {
                (
                    h["pair"][0].as_str().unwrap().to_string(),
                    h["pair"][1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for QueryProcess {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

fn pair_set(lines: &[String]) -> BTreeSet<(String, String)> {
    lines
        .iter()
        .map(|l| {
            let mut c = l.split('\t');
            (c.next().unwrap().to_string(), c.next().unwrap().to_string())
        })
        .collect()
}

#[test]
fn a_query_process_answers_before_during_and_after_an_add() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(8000);
    let (base, new) = lines.split_at(2000);
    let add_file = dir.path().join("add.tsv");
    write_lines(&add_file, new);
    let (_, idx) = index_in(dir.path(), "base.tsv", base);

    let (q_head, q_tail) = ("lion", "cub");
    let old_set = pair_set(base);
    let new_set = pair_set(&lines);
    let mut q = QueryProcess::start(&idx);
    assert_eq!(q.ask(q_head, q_tail), old_set);

    let mut adding = spawn_add(&idx, &add_file);
    // During the add every answer is the old index's or the new one's, never a mixture.
    let mut during = 0;
    let status = loop {
        if let Some(s) = adding.try_wait().unwrap() {
            break s;
        }
        let got = q.ask(q_head, q_tail);
        assert!(got == old_set || got == new_set, "{} pairs", got.len());
        during += 1;
    };
    assert!(status.success());
    assert!(during > 0);
    // After it, the same process answers from the grown index.
    assert_eq!(q.ask(q_head, q_tail), new_set);
    assert_eq!(q.ask("paris", "france"), new_set);
}

#[test]
fn an_add_killed_midway_and_run_again_gives_the_full_index() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(9000);
    let (base, new) = lines.split_at(1500);
    let add_file = dir.path().join("add.tsv");
    write_lines(&add_file, new);
    let union_file = dir.path().join("union.tsv");
    write_lines(&union_file, &lines);
    let (_, idx) = index_in(dir.path(), "base.tsv", base);
    let base_id = Index::open(&idx).unwrap().id();
    let dim = Index::open(&idx).unwrap().dim() as u64;
    let partial_vectors = dir.path().join("idx.partial/vectors");
    // Bytes of the partial `vectors` file once new rows follow the copied base rows.
    let copied = 64 + 1500 * dim * 4;

    let mut kills = 0;
    for round in 0..3 {
        let mut child = spawn_add(&idx, &add_file);
        // Killed once new rows are durable in the partial index (round 0), or at once.
        let killed = if round == 0 {
            kill_when_longer(&mut child, &partial_vectors, copied)
        } else {
            let running = child.try_wait().unwrap().is_none();
            if running {
                child.kill().unwrap();
            }
            child.wait().unwrap();
            running
        };
        kills += usize::from(killed);
        if round == 0 {
            // The runs after this one resume its partial index: it must have been killed while
            // it ran (an add that finished first leaves nothing to resume, and the test passed
            // without any kill midway), leaving `idx.partial` and the checkpoint to resume from.
            assert!(killed, "the add ended before new rows were durable");
            assert!(
                dir.path().join("idx.partial/checkpoint").is_file(),
                "no checkpoint in idx.partial after the kill"
            );
        }
        // Killed, the index is the old one, whole (or, had the add finished, the new one).
        let now = Index::open(&idx).unwrap();
        assert!(now.id() == base_id || now.count() == 9000);
        relbert()
            .args(["index", "info", "--verify"])
            .arg(&idx)
            .assert()
            .success();
    }
    assert!(kills > 0);
    add(&idx, &add_file).success();
    assert!(!dir.path().join("idx.partial").exists());
    let union = dir.path().join("union");
    build_file(&union_file, &union);
    assert_same_rows(&rows(&idx), &rows(&union));
    assert!(self_recall(&idx, 7) >= 0.95);
}

#[test]
fn add_is_refused_with_another_pair_function() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(200);
    let add_file = dir.path().join("add.tsv");
    write_lines(&add_file, &lines[150..]);
    let (_, idx) = index_in(dir.path(), "base.tsv", &lines[..150]);
    let id = Index::open(&idx).unwrap().id();
    let roberta = fixture("tiny-roberta");
    let refusals: [&[&str]; 3] = [
        &["--model", roberta.to_str().unwrap()],
        &["--aggregation", "mask"],
        &["--template", "<subj> and <obj> are <mask>"],
    ];
    for extra in refusals {
        let a = relbert()
            .args(["index", "add", "--index"])
            .arg(&idx)
            .arg("--pairs")
            .arg(&add_file)
            .args(extra)
            .assert()
            .failure();
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(
            err.contains("was built with another encoder"),
            "{extra:?}: {err}"
        );
        assert_eq!(Index::open(&idx).unwrap().id(), id);
        assert!(!dir.path().join("idx.partial").exists());
    }
}

/// `index remove` undoes an add: the index without the pairs listed holds what a build of the
/// others holds (pairs, labels, vectors), its graph searches them as well, and a removed
/// pair is encoded again when queried; a list the index holds none of changes nothing, and
/// one of all its pairs is refused with the index left as it was.
#[test]
fn remove_leaves_what_a_build_of_the_other_pairs_holds() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(300);
    let (all, kept) = (dir.path().join("all.tsv"), dir.path().join("kept.tsv"));
    write_lines(&all, &lines);
    write_lines(&kept, &lines[..200]);
    let (idx, want) = (dir.path().join("idx"), dir.path().join("want"));
    build_file(&all, &idx);
    build_file(&kept, &want);
    // The pairs to remove, one of them twice, with a pair the index does not hold; from
    // standard input, labels and all.
    let mut gone = lines[200..].to_vec();
    gone.push(lines[250].clone());
    gone.push("nowhere\tnothing".into());
    let a = relbert()
        .args(["index", "remove", "--json", "--index"])
        .arg(&idx)
        .args(["--pairs", "-"])
        .write_stdin(gone.join("\n"))
        .assert()
        .success();
    let summary: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(
        (
            &summary["removed"],
            &summary["not_in_index"],
            &summary["repeated_in_input"],
            &summary["count"]
        ),
        (&100.into(), &1.into(), &1.into(), &200.into()),
        "{summary}"
    );
    assert_same_rows(&rows(&idx), &rows(&want));
    assert!(self_recall(&idx, 5) >= 0.9);
    assert!(!dir.path().join("idx.partial").exists());
    let mut cells = lines[250].split('\t');
    let (head, tail) = (cells.next().unwrap(), cells.next().unwrap());
    let q = relbert()
        .args(["query", "--json", "--exact", "--index"])
        .arg(&idx)
        .args([head, tail])
        .assert()
        .success();
    let answer: serde_json::Value = serde_json::from_slice(&q.get_output().stdout).unwrap();
    assert_eq!(answer["source"], "encoded", "{answer}");

    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(idx.join("meta")).unwrap().ino();
    let none = dir.path().join("none.tsv");
    write_lines(&none, &lines[200..210]);
    let a = relbert()
        .args(["index", "remove", "--index"])
        .arg(&idx)
        .arg("--pairs")
        .arg(&none)
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(
        out.contains("nothing to remove") && out.contains("unchanged"),
        "{out}"
    );
    let a = relbert()
        .args(["index", "remove", "--index"])
        .arg(&idx)
        .arg("--pairs")
        .arg(&kept)
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("empty index"), "{err}");
    assert_eq!(std::fs::metadata(idx.join("meta")).unwrap().ino(), ino);
    assert_eq!(Index::open(&idx).unwrap().count(), 200);
}

#[test]
fn adding_nothing_new_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(200);
    let (_, idx) = index_in(dir.path(), "pairs.tsv", &lines);
    let meta = std::fs::metadata(idx.join("meta")).unwrap();
    let a = relbert()
        .args(["index", "add", "--index"])
        .arg(&idx)
        .args(["--pairs", "-"])
        .write_stdin(lines[..50].join("\n"))
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(out.contains("nothing to add"), "{out}");
    assert!(out.contains("unchanged"), "{out}");
    // Not rewritten: the same meta file (inode) and no partial directory.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(idx.join("meta")).unwrap().ino(),
        meta.ino()
    );
    assert!(!dir.path().join("idx.partial").exists());
}

/// A query stream noticed a new index by the inode of its `meta` file, but file systems
/// hand a freed inode to the next new file: after two adds without a query between them the
/// new `meta` could have the inode the stream last saw, and the stream answered from the old
/// index for good. It now compares index ids. Here the files of another index are copied
/// over the open one's in place, keeping every inode.
#[test]
fn a_query_engine_follows_a_new_index_that_kept_the_old_inodes() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(400);
    let (a_lines, b_lines) = lines.split_at(200);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (lines, out) in [(a_lines, &a), (b_lines, &b)] {
        let file = dir.path().join("pairs.tsv");
        write_lines(&file, lines);
        build_file(&file, out);
    }
    let b_id = Index::open(&b).unwrap().id();
    let mut engine = relbert::store::query::QueryEngine::open(&a, None).unwrap();
    assert!(!engine.refresh().unwrap(), "nothing changed yet");
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&a.join("meta"));
    for name in ["vectors", "pairs", "graph", "meta"] {
        // std::fs::copy truncates and writes the existing file: same inode.
        std::fs::copy(b.join(name), a.join(name)).unwrap();
    }
    assert_eq!(inode(&a.join("meta")), before);
    assert!(
        engine.refresh().unwrap(),
        "the engine did not see the new index"
    );
    assert_eq!(engine.local().unwrap().id(), b_id);
}

/// A build or add from standard input removed its copy of the input before publishing the
/// index, so a kill between the two left a finished index in `DIR.partial` that the next run
/// discarded, with the pairs nowhere ("no interrupted run to resume"). The copy now goes
/// with the published index and is removed after; here a kill between the two is simulated
/// by putting the copy, with relbert's mark, back into the published index. A copy without
/// the mark (an older relbert's, or a user's file of that name) is not taken for relbert's
/// there: not read as the input, not removed, and the next add that would replace the
/// directory is refused, naming it.
#[test]
fn a_copy_of_standard_input_outlives_the_publication() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(300);
    let (base, new) = lines.split_at(200);
    let (_, idx) = index_in(dir.path(), "base.tsv", base);
    let add_stdin = |input: String| {
        relbert()
            .env("RELBERT_LOG", "info")
            .args(["index", "add", "--index"])
            .arg(&idx)
            .args(["--pairs", "-"])
            .write_stdin(input)
            .assert()
            .success()
    };
    add_stdin(new.join("\n") + "\n");
    let spool = idx.join("input.spool");
    assert!(!spool.exists(), "the copy stayed after a whole run");
    let grown = rows(&idx);
    assert_eq!(grown.len(), 300);
    let marked: Vec<String> = std::iter::once("# relbert input spool 1".to_string())
        .chain(new.iter().cloned())
        .collect();
    write_lines(&spool, &marked);
    let a = add_stdin(String::new());
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(out.contains("nothing to add"), "{out}");
    assert!(!spool.exists(), "the leftover copy was not removed");
    assert_same_rows(&rows(&idx), &grown);
    // The same pairs given again on standard input: nothing to add, and the leftover copy
    // goes too (found by an audit: it stayed, being removed only when nothing was given).
    write_lines(&spool, &marked);
    let a = add_stdin(new.join("\n") + "\n");
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(out.contains("nothing to add"), "{out}");
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        !spool.exists(),
        "the leftover copy stayed with the input given again: {err}"
    );
    assert!(
        err.contains(&format!("removed {}", spool.display())),
        "{err}"
    );
    assert_same_rows(&rows(&idx), &grown);
    // Unmarked: not taken for a copy to resume from; with nothing on standard input there is
    // nothing to add (status 0), and the file stays.
    write_lines(&spool, new);
    let a = add_stdin(String::new());
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(out.contains("nothing to add: no pairs in <stdin>"), "{out}");
    assert!(spool.exists());
    let more = dir.path().join("more.tsv");
    write_lines(&more, &["lion\tcub".to_string()]);
    let a = add(&idx, &more).failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        err.contains("input.spool") && err.contains("can be removed"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&spool).unwrap(),
        new.join("\n") + "\n"
    );
    assert_same_rows(&rows(&idx), &grown);
}

/// A copy of the index in `base` beside it, at `to`.
fn copy_index(base: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["vectors", "pairs", "graph", "meta"] {
        std::fs::copy(base.join(name), to.join(name)).unwrap();
    }
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// An index under the tiny model's pair function (its encoder identity taken from `small`,
/// built with that model) of synthetic rows, whose `vectors` and `graph` files are both over
/// the size verified whole at open: their blocks are checked only when read, so damage in
/// them passes `Index::open` and is met by whatever reads the rows or the graph.
fn lazily_verified_index(small: &Path, out: &Path) -> usize {
    use relbert_index::synthetic::{gaussian, numbered_pairs};
    use relbert_index::{HnswParams, IndexBuilder, IndexSpec, Precision, SMALL_FILE_LIMIT};
    let meta = Index::open(small).unwrap().meta().clone();
    let (n, dim) = (66_000, meta.dim as usize); // 66,000 × 32 f32 = 8.4 MB > 8 MiB
    let spec = IndexSpec {
        dim: meta.dim,
        precision: Precision::F32,
        encoder: meta.encoder.clone(),
        input: "synthetic".into(),
    };
    let rows = gaussian(n, dim, 5);
    let mut b = IndexBuilder::create_or_resume(out, spec, false).unwrap();
    for start in (0..n).step_by(16_384) {
        let end = (start + 16_384).min(n);
        b.append_chunk(&numbered_pairs(start..end), &rows[start * dim..end * dim])
            .unwrap();
    }
    // m 32: 256 bytes of layer-0 lists per row, a graph file of 17 MB.
    let params = HnswParams {
        m: 32,
        ef_construction: 32,
        threads: 0,
        ..HnswParams::default()
    };
    b.finish(params, |_| {}).unwrap();
    for name in ["vectors", "graph"] {
        let len = std::fs::metadata(out.join(name)).unwrap().len();
        assert!(len > SMALL_FILE_LIMIT, "{name}: {len} bytes");
    }
    n
}

/// Flips the bits of one byte at `at` of `path`.
fn flip(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
}

/// A damaged block of vectors is mended by removing its rows: `index remove` verifies only
/// the rows it keeps (found by a review: a small index was verified whole at open, so the
/// damaged block refused the remove meant to take it out).
#[test]
fn the_rows_of_a_damaged_block_can_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, idx) = index_in(dir.path(), "pairs.tsv", &vocab_lines(300));
    let headers = relbert_index::OpenOptions {
        verify: relbert_index::Verify::Headers,
    };
    let opened = Index::open_with(&idx, headers).unwrap();
    // float32 rows of the tiny model: 32 per 4 KiB block; the second block is rows 32..64.
    let row_bytes = opened.dim() * 4;
    assert_eq!(4096 % row_bytes, 0);
    let per_block = 4096 / row_bytes;
    let block: Vec<String> = (per_block..2 * per_block)
        .map(|r| {
            let p = opened.pair(r).unwrap();
            format!("{}\t{}", p.head, p.tail)
        })
        .collect();
    drop(opened);
    flip(
        &idx.join("vectors"),
        64 + (per_block as u64 + 3) * row_bytes as u64 + 7,
    );
    relbert()
        .args(["index", "info", "--verify"])
        .arg(&idx)
        .assert()
        .failure();
    let gone = dir.path().join("gone.tsv");
    write_lines(&gone, &block);
    relbert()
        .args(["index", "remove", "--index"])
        .arg(&idx)
        .arg("--pairs")
        .arg(&gone)
        .assert()
        .success();
    relbert()
        .args(["index", "info", "--verify"])
        .arg(&idx)
        .assert()
        .success();
    assert_eq!(Index::open(&idx).unwrap().count(), 300 - per_block);
}

/// Found by an audit: `index add` (and `index rebuild`) of an index with a damaged block in a
/// file too large to be verified whole at open failed when the copy into `DIR.partial/` (or,
/// for the graph, the insertion after every new pair was encoded) met the block, and left
/// the partial directory behind without a word; the next add resumed it and failed again.
/// What a run reads of its source is now verified before anything is created, so a damaged
/// source is refused with the directory as it was: no partial, no lock, no output. A
/// damaged graph is not read by a rebuild, which makes a new one: that still succeeds.
#[test]
fn a_damaged_source_is_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(240);
    let (small_lines, new_lines) = lines.split_at(200);
    let small_file = dir.path().join("small.tsv");
    write_lines(&small_file, small_lines);
    let small = dir.path().join("small");
    build_file(&small_file, &small);
    let pristine = dir.path().join("pristine");
    let n = lazily_verified_index(&small, &pristine);
    let new = dir.path().join("new.tsv");
    write_lines(&new, new_lines);

    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let idx = work.join("idx");
    let vectors_len = std::fs::metadata(pristine.join("vectors")).unwrap().len();
    let graph_len = std::fs::metadata(pristine.join("graph")).unwrap().len();
    // (what, damage, file named in the error, whether a rebuild can read the source)
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage, &str, bool)> = vec![
        (
            "a byte of a row changed",
            Box::new(|d: &Path| flip(&d.join("vectors"), 64 + 40_000 * 128 + 7)),
            "vectors",
            false,
        ),
        (
            "a byte of a neighbour list changed",
            Box::new(move |d: &Path| flip(&d.join("graph"), graph_len / 2)),
            "graph",
            true,
        ),
        (
            "vectors truncated",
            Box::new(move |d: &Path| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("vectors"))
                    .unwrap();
                f.set_len(vectors_len - 4096).unwrap();
            }),
            "vectors",
            false,
        ),
        (
            "graph missing",
            Box::new(|d: &Path| std::fs::remove_file(d.join("graph")).unwrap()),
            "graph",
            false,
        ),
    ];
    for (what, damage, file, rebuildable) in &cases {
        copy_index(&pristine, &idx);
        damage(&idx);
        let files = common::dir_files(&idx);
        let before = names_in(&work);

        // From a file and from standard input (whose copy would have been spooled into the
        // partial directory).
        for stdin in [false, true] {
            let mut cmd = relbert();
            cmd.args(["index", "add", "--index"]).arg(&idx);
            if stdin {
                cmd.args(["--pairs", "-"])
                    .write_stdin(new_lines.join("\n") + "\n");
            } else {
                cmd.arg("--pairs").arg(&new);
            }
            let a = cmd.assert().failure();
            let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
            assert!(
                err.contains(&idx.join(file).display().to_string()),
                "{what} (stdin {stdin}): {err}"
            );
            assert_eq!(names_in(&work), before, "{what} (stdin {stdin}): {err}");
            assert!(
                common::dir_files(&idx) == files,
                "{what}: the index was changed"
            );
        }

        let out = work.join("out");
        let a = relbert()
            .args(["index", "rebuild", "--m", "8", "--index"])
            .arg(&idx)
            .arg("--out")
            .arg(&out)
            .assert();
        if *rebuildable {
            a.success();
            let rebuilt = Index::open_with(
                &out,
                relbert_index::OpenOptions {
                    verify: relbert_index::Verify::Full,
                },
            )
            .unwrap();
            assert_eq!(rebuilt.count(), n, "{what}");
            std::fs::remove_dir_all(&out).unwrap();
        } else {
            let a = a.failure();
            let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
            assert!(
                err.contains(&idx.join(file).display().to_string()),
                "{what}: {err}"
            );
            assert_eq!(names_in(&work), before, "{what}: {err}");
            // In place, with --force.
            let a = relbert()
                .args(["index", "rebuild", "--force", "--index"])
                .arg(&idx)
                .arg("--out")
                .arg(&idx)
                .assert()
                .failure();
            let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
            assert_eq!(names_in(&work), before, "{what} (in place): {err}");
            assert!(
                common::dir_files(&idx) == files,
                "{what}: the index was changed"
            );
        }
        std::fs::remove_dir_all(&idx).unwrap();
    }
}

/// The mode bits of `path` (permissions only).
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `chown -R nobody:nogroup` of `path` (uid and gid 65534).
fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_nobody(&e.unwrap().path());
        }
    }
}

/// [`common::relbert_as_nobody`] with only the effective uid and gid `nobody`'s, the real ones
/// staying root's: a process whose effective user is not its real one, as a setuid program's
/// is.
fn relbert_with_effective_nobody(scratch: &Path, what: &str) -> Option<StdCommand> {
    common::relbert_switched(
        scratch,
        what,
        &["--euid=65534", "--egid=65534", "--clear-groups"],
    )
}

/// Found by an audit: `index add` of an index the user had write-protected (`chmod a-w`)
/// "succeeded": the exchange needs no write permission on the directory, so a writable
/// index (mode 755, files 644) took its place, the old one was left whole in
/// `DIR.partial/` (its removal failed unsaid), and the next writer failed with a bare
/// "DIR.partial: Permission denied". A write-protected index is now left as it is, by an
/// add, a `build --force` and a `rebuild --force` onto it, with an error naming it and
/// saying why; checked on the mode bits (so as root too) and, where this test can, as a
/// user whom the protection binds.
#[test]
fn a_write_protected_index_is_left_as_it_is() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let lines = vocab_lines(60);
    let (base, new) = lines.split_at(40);
    let new_file = dir.join("new.tsv");
    write_lines(&new_file, new);
    let some = dir.join("some.tsv");
    write_lines(&some, &base[..5]);
    let (base_file, idx) = index_in(dir, "base.tsv", base);
    chmod(&idx, 0o555);
    let files = common::dir_files(&idx);
    let before = names_in(dir);
    // Each command is told its own way around the protection (found by an audit: an add and
    // a remove were told to "write a copy elsewhere with `--out`", which they do not have).
    let copy = format!(
        "make a writable copy with `relbert index rebuild --index {} --out COPY`",
        idx.display()
    );
    let advice = |what: &str| {
        match what {
        "add" => format!("to add to it, first make it writable with `chmod -R u+w {}` (by its owner), or {copy} and add to the copy", idx.display()),
        "remove" => format!("to remove pairs from it, first make it writable with `chmod -R u+w {}` (by its owner), or {copy} and remove them from the copy", idx.display()),
        "build --force" => "or build into another directory (another `--out`)".to_string(),
        _ => "or rebuild into another directory (another `--out`)".to_string(),
    }
    };
    let refused = |a: assert_cmd::assert::Assert, what: &str| {
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(
            err.contains(&format!("{} is write-protected", idx.display()))
                && err.contains("mode is 555")
                && err.contains("leaves it as it is")
                && err.contains(&advice(what))
                && !err.contains("write a copy elsewhere"),
            "{what}: {err}"
        );
        assert_eq!(names_in(dir), before, "{what}: {err}");
        assert!(
            common::dir_files(&idx) == files,
            "{what}: the index was changed"
        );
        assert_eq!(mode_of(&idx), 0o555, "{what}: the protection is gone");
    };
    refused(add(&idx, &new_file).failure(), "add");
    refused(
        relbert()
            .args(["index", "remove", "--index"])
            .arg(&idx)
            .arg("--pairs")
            .arg(&some)
            .assert()
            .failure(),
        "remove",
    );
    refused(
        relbert()
            .args(["index", "build", "--force", "--model"])
            .arg(model())
            .arg("--pairs")
            .arg(&base_file)
            .arg("--out")
            .arg(&idx)
            .assert()
            .failure(),
        "build --force",
    );
    refused(
        relbert()
            .args(["index", "rebuild", "--force", "--f16", "--index"])
            .arg(&idx)
            .arg("--out")
            .arg(&idx)
            .assert()
            .failure(),
        "rebuild --force",
    );
    // A user whom the protection binds, as in the audit.
    if let Some(mut nobody) = common::relbert_as_nobody(
        dir,
        "the add by a user whom the protection binds, in a_write_protected_index_is_left_as_it_is",
    ) {
        chown_nobody(dir);
        let o = nobody
            .args(["index", "add", "--index"])
            .arg(&idx)
            .arg("--pairs")
            .arg(&new_file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{err}");
        assert!(err.contains("is write-protected"), "{err}");
        assert_eq!(names_in(dir), before, "{err}");
        assert_eq!(mode_of(&idx), 0o555);
    }
    // Made writable again, it is added to.
    chmod(&idx, 0o755);
    add(&idx, &new_file).success();
    assert_eq!(Index::open(&idx).unwrap().count(), 60);
}

/// Found by a review: the write-protection check asked `access(2)`, which answers for the
/// real uid, not for the effective one a process writes with: a relbert whose effective user
/// is not its real one (a setuid program's) was let through to an index that user may not
/// write, replaced it (the exchange needs only the parent directory) and then could not
/// remove the old one. Run here with the real uid root's and the effective uid `nobody`'s,
/// in a directory `nobody` may write to, on an index of root's (mode 755, files 644: no mode
/// bit protects it): the rebuild is refused as write-protected for this user, and nothing
/// changes.
#[test]
fn write_access_is_judged_for_the_effective_user() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let what = "write_access_is_judged_for_the_effective_user";
    let Some(_) = relbert_with_effective_nobody(dir, what) else {
        return;
    };
    let (_, idx) = index_in(dir, "base.tsv", &vocab_lines(40));
    std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
    assert_eq!(mode_of(&idx), 0o755);
    let files = common::dir_files(&idx);
    let before = names_in(dir);
    let o = relbert_with_effective_nobody(dir, what)
        .unwrap()
        .args(["index", "rebuild", "--force", "--index"])
        .arg(&idx)
        .arg("--out")
        .arg(&idx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains(&format!("{} is write-protected", idx.display()))
            && err.contains("this user may not write to it"),
        "{err}"
    );
    assert_eq!(names_in(dir), before, "{err}");
    assert!(common::dir_files(&idx) == files, "the index was changed");
}

/// A publication that cannot remove the index it replaced says so, naming where that index
/// is (it used to be left in `DIR.partial/` without a word); and the next writer, which
/// cannot remove it either, names it as a complete index to remove rather than failing with
/// a bare "Permission denied". Had here by a user whom a sticky, world-writable index
/// directory of root's lets exchange it but not remove root's files from it.
#[test]
fn an_old_index_that_cannot_be_removed_is_named_and_not_left_silently() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let Some(_) = common::relbert_as_nobody(
        dir,
        "an_old_index_that_cannot_be_removed_is_named_and_not_left_silently",
    ) else {
        return;
    };
    let lines = vocab_lines(70);
    let new_file = dir.join("new.tsv");
    write_lines(&new_file, &lines[40..60]);
    let more_file = dir.join("more.tsv");
    write_lines(&more_file, &lines[60..]);
    let (_, idx) = index_in(dir, "base.tsv", &lines[..40]);
    // The directory beside it is nobody's (the lock file, the partial build, the exchange);
    // the index and its files stay root's, in a directory anyone may write to but in which
    // only a file's owner may remove it.
    std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
    chmod(&idx, 0o1777);
    let partial = dir.join("idx.partial");
    let run = |pairs: &Path| {
        let o = common::relbert_as_nobody(dir, "")
            .unwrap()
            .args(["index", "add", "--index"])
            .arg(&idx)
            .arg("--pairs")
            .arg(pairs)
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let err = run(&new_file);
    assert!(
        err.contains(&format!(
            "{} now holds the new index, but the index it replaced could not be removed from {}",
            idx.display(),
            partial.display()
        )),
        "{err}"
    );
    assert_eq!(Index::open(&idx).unwrap().count(), 60, "{err}");
    assert_eq!(Index::open(&partial).unwrap().count(), 40, "{err}");

    let err = run(&more_file);
    assert!(
        err.contains(&format!("{} holds a complete index", partial.display()))
            && err.contains(&format!("remove {} yourself", partial.display())),
        "{err}"
    );
    assert_eq!(Index::open(&idx).unwrap().count(), 60, "{err}");
    std::fs::remove_dir_all(&partial).unwrap();
    add(&idx, &more_file).success();
    assert_eq!(Index::open(&idx).unwrap().count(), 70);
}

/// Found by an audit: a full disk during an add left an index-sized `DIR.partial/` and an
/// error naming only the file. The error names the partial directory, says the add resumes
/// from it once there is room and that removing it frees the space; said by the index crate,
/// so also by a resumed add (whose partial directory an earlier run made). The disk is
/// filled by a file size limit: 1,000 rows of 32 f32 are 128,192 bytes of `vectors`, just
/// under 128 KiB, so the copy of the index fits and the new rows do not.
#[test]
fn a_full_disk_during_an_add_names_the_partial_directory() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let lines = vocab_lines(3000);
    let new_file = dir.join("new.tsv");
    write_lines(&new_file, &lines[1000..]);
    let (_, idx) = index_in(dir, "base.tsv", &lines[..1000]);
    let partial = dir.join("idx.partial");
    let limited = || {
        let o = StdCommand::new("sh")
            .arg("-c")
            // SIGXFSZ ignored, so a write past the limit fails with EFBIG instead of killing.
            .arg("trap '' XFSZ; ulimit -f 256; exec \"$0\" \"$@\"")
            .arg(bin())
            .env("RELBERT_LOG", "warn")
            .args(["index", "add", "--index"])
            .arg(&idx)
            .arg("--pairs")
            .arg(&new_file)
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    for run in ["first", "resumed"] {
        let err = limited();
        for want in [
            format!("{}: File too large", partial.join("vectors").display()),
            format!("{} keeps the unfinished add", partial.display()),
            "run the same add again to resume it".to_string(),
            format!(
                "remove {} to give it up and free its space",
                partial.display()
            ),
        ] {
            assert!(err.contains(&want), "{run}: {want:?} not in {err}");
        }
        assert!(partial.join("checkpoint").is_file(), "{run}: {err}");
        assert_eq!(Index::open(&idx).unwrap().count(), 1000, "{run}: {err}");
    }
    // With room again, the same add resumes and finishes.
    add(&idx, &new_file).success();
    assert_eq!(Index::open(&idx).unwrap().count(), 3000);
    assert!(!partial.exists());
}

/// Found by an audit: `index add` showed nothing while it verified and copied the index into
/// its partial directory (minutes for a large one), only the encoding and graph stages. The
/// copy now has its display too: without a terminal, with `RELBERT_PROGRESS_SECS=0`, a line
/// for each checkpointed chunk of 8,192 rows, the last one once; and the encoding display
/// begins after it.
#[test]
fn an_add_shows_the_copy_of_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let base: Vec<String> = (0..20_000)
        .map(|i| format!("w{}\tw{}", i % 997, i % 1009))
        .collect();
    let (_, idx) = index_in(dir.path(), "base.tsv", &base);
    let new_file = dir.path().join("new.tsv");
    write_lines(&new_file, &["dog\tcat".into(), "hot\tcold".into()]);
    let a = relbert()
        .env("RELBERT_PROGRESS_SECS", "0")
        .args(["index", "add", "--index"])
        .arg(&idx)
        .arg("--pairs")
        .arg(&new_file)
        .assert()
        .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    let copied = common::progress_counts(&err, "copying");
    assert_eq!(
        copied.iter().filter(|&&n| n == 20_000).count(),
        1,
        "the final line is not there once: {err}"
    );
    assert!(
        copied.iter().any(|&n| n > 0 && n < 20_000),
        "no line before the end: {err}"
    );
    let last_copy = err.rfind("copying: ").unwrap();
    assert!(
        err.find("encoding: ").is_some_and(|at| at > last_copy),
        "{err}"
    );
    assert!(err.contains("pairs/s"), "{err}");
    assert_eq!(Index::open(&idx).unwrap().count(), 20_002);
}

/// Found by an audit: a remove (or an add) killed after the exchange and before the old index
/// was removed left that index in `DIR.partial` (for a remove, still holding the removed
/// pairs); the same command run again had nothing to do and took its "unchanged" path, which
/// left `DIR.partial` without a word. A run with nothing to do now removes what such a kill
/// left (the old index in `DIR.partial` or beside the index as `.DIR.old-PID`), saying so,
/// as the next run that changes the index would; an interrupted run, which has a checkpoint,
/// is left and named.
#[test]
fn a_run_with_nothing_to_do_removes_the_old_index_a_kill_left() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(50);
    let gone_file = dir.path().join("gone.tsv");
    write_lines(&gone_file, &lines[40..]);
    let some_file = dir.path().join("some.tsv");
    write_lines(&some_file, &lines[..5]);
    let (_, idx) = index_in(dir.path(), "base.tsv", &lines[..40]);
    let partial = dir.path().join("idx.partial");
    // A publication's name, with the pid of a process that has ended (a live one's may be
    // its own, under way).
    let mut ended = StdCommand::new("true").spawn().unwrap();
    let old = dir.path().join(format!(".idx.old-{}", ended.id()));
    ended.wait().unwrap();
    // A user's copy under a name like it is not relbert's to remove (found by a review: any
    // `.idx.old-*` holding an index went).
    let backup = dir.path().join(".idx.old-mybackup");
    copy_index(&idx, &backup);
    let run = |what: &str, pairs: &Path| {
        let a = relbert()
            .env("RELBERT_LOG", "info")
            .args(["index", what, "--index"])
            .arg(&idx)
            .arg("--pairs")
            .arg(pairs)
            .assert()
            .success();
        let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        (out, err)
    };
    for (what, pairs, said) in [
        ("remove", &gone_file, "nothing to remove"),
        ("add", &some_file, "nothing to add"),
    ] {
        copy_index(&idx, &partial);
        copy_index(&idx, &old);
        let (out, err) = run(what, pairs);
        assert!(
            out.contains(said) && out.contains("unchanged"),
            "{what}: {out}"
        );
        assert!(!partial.exists(), "{what}: the old index stayed: {err}");
        assert!(!old.exists(), "{what}: the old index stayed beside: {err}");
        for left in [&partial, &old] {
            assert!(
                err.contains(&format!("removed {}", left.display())),
                "{what}: {err}"
            );
        }
        assert_eq!(Index::open(&idx).unwrap().count(), 40);
        assert_eq!(Index::open(&backup).unwrap().count(), 40, "{what}: {err}");
    }
    // An interrupted add (a checkpoint in `DIR.partial`) is the same add's to resume: left,
    // and named.
    let mut g = relbert_index::IndexGrower::create_or_resume(
        Index::open(&idx).unwrap(),
        "other pairs",
        1,
        |_| {},
    )
    .unwrap();
    g.append_chunk(&[], &[]).unwrap();
    drop(g);
    assert!(partial.join("checkpoint").is_file());
    let (out, err) = run("remove", &gone_file);
    assert!(out.contains("nothing to remove"), "{out}");
    assert!(partial.join("checkpoint").is_file(), "{err}");
    assert!(
        err.contains(&format!(
            "{} holds an interrupted `index add` of {}",
            partial.display(),
            idx.display()
        )) && err.contains(&format!(
            "run `relbert index add --index {}` with the pairs that add was given",
            idx.display()
        )),
        "{err}"
    );
}

/// Found by a review: a run that went on to change the index (an add, a remove, a build
/// `--force`) removed what a killed run left without a word, and took a user's dated copy
/// `.idx.old-20261204` for one (a number no pid can be). The copy stays; the old index a
/// killed publication left (an ended process's pid) goes, and is said, on each of those.
#[test]
fn a_dated_copy_stays_and_what_a_kill_left_goes_with_a_word() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(50);
    let (base_file, idx) = index_in(dir.path(), "base.tsv", &lines[..40]);
    let more_file = dir.path().join("more.tsv");
    write_lines(&more_file, &lines[40..45]);
    let dated = dir.path().join(".idx.old-20261204");
    copy_index(&idx, &dated);
    let mut ended = StdCommand::new("true").spawn().unwrap();
    let old = dir.path().join(format!(".idx.old-{}", ended.id()));
    ended.wait().unwrap();
    let partial = dir.path().join("idx.partial");
    for (what, args) in [
        ("add", vec!["index", "add", "--index"]),
        ("remove", vec!["index", "remove", "--index"]),
    ] {
        copy_index(&idx, &old);
        let a = relbert()
            .env("RELBERT_LOG", "info")
            .args(&args)
            .arg(&idx)
            .arg("--pairs")
            .arg(&more_file)
            .assert()
            .success();
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(!old.exists(), "{what}: the old index stayed beside: {err}");
        assert!(
            err.contains(&format!("removed {}, which a killed run", old.display())),
            "{what}: {err}"
        );
        assert_eq!(Index::open(&dated).unwrap().count(), 40, "{what}: {err}");
    }
    // A build `--force`, with a partial build that has no checkpoint (killed while it was
    // being made) as well.
    copy_index(&idx, &old);
    std::fs::create_dir(&partial).unwrap();
    let a = relbert()
        .env("RELBERT_LOG", "info")
        .args(["index", "build", "--force", "--model"])
        .arg(model())
        .arg("--pairs")
        .arg(&base_file)
        .arg("--out")
        .arg(&idx)
        .assert()
        .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    for left in [&old, &partial] {
        assert!(!left.exists(), "{} stayed: {err}", left.display());
        assert!(
            err.contains(&format!("removed {}, which a killed run", left.display())),
            "{err}"
        );
    }
    assert_eq!(Index::open(&dated).unwrap().count(), 40, "build: {err}");
    assert!(!err.contains(&dated.display().to_string()), "{err}");
}

/// Each stored pair with the bits of its vector, in row order.
fn vector_bits(index: &Path) -> Vec<((String, String), Vec<u32>)> {
    let idx = Index::open(index).unwrap();
    (0..idx.count())
        .map(|r| {
            let p = idx.pair(r).unwrap();
            let v = idx.vector(r).unwrap();
            (
                (p.head.to_string(), p.tail.to_string()),
                v.iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect()
}

/// Found by a review: `index add`, `remove` and `rebuild` scaled the `f32` rows they copied
/// to unit norm again, and rounding that back to `f32` moved some by an ULP, a few more
/// with each run. The rows they copy keep their vectors bit for bit.
#[test]
fn copied_rows_keep_their_vectors_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(410);
    let (_, idx) = index_in(dir.path(), "base.tsv", &lines[..400]);
    let built = vector_bits(&idx);
    let more_file = dir.path().join("more.tsv");
    write_lines(&more_file, &lines[400..]);
    add(&idx, &more_file).success();
    let grown = vector_bits(&idx);
    assert_eq!(grown.len(), 410);
    assert!(grown[..400] == built[..], "an add changed rows it copied");
    relbert()
        .args(["index", "remove", "--index"])
        .arg(&idx)
        .arg("--pairs")
        .arg(&more_file)
        .assert()
        .success();
    assert!(vector_bits(&idx) == built, "a remove changed rows it kept");
    relbert()
        .args(["index", "rebuild", "--force", "--index"])
        .arg(&idx)
        .arg("--out")
        .arg(&idx)
        .assert()
        .success();
    assert!(vector_bits(&idx) == built, "a rebuild changed rows");
}

/// A pair that is too long to encode. 80 words: the tiny model takes 64 tokens.
fn too_long(tail: &str) -> String {
    let head: Vec<String> = (0..80).map(|i| format!("w{i}")).collect();
    format!("{}\t{tail}", head.join(" "))
}

/// Found by an audit: `index add --skip-long` did not count the pairs it left out as too long
/// (in `--json` or the line for people), and an add whose new pairs were all too long failed
/// with "no pairs left to encode", neither naming the index nor saying it was unchanged. They
/// are counted (`skipped_long`), and with none left it is an add of nothing: status 0, the
/// index unchanged and said so.
#[test]
fn pairs_left_out_as_too_long_are_counted_and_all_of_them_add_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(43);
    let (_, idx) = index_in(dir.path(), "base.tsv", &lines[..40]);
    let meta = std::fs::metadata(idx.join("meta")).unwrap();
    let long_file = dir.path().join("long.tsv");
    let mut long = vec![too_long("cat"), too_long("dog")];
    long.extend(lines[..3].iter().cloned());
    write_lines(&long_file, &long);
    let add_long = |json: bool| {
        let mut c = relbert();
        c.args(["index", "add", "--skip-long", "--index"])
            .arg(&idx)
            .arg("--pairs")
            .arg(&long_file);
        if json {
            c.arg("--json");
        }
        let a = c.assert().success();
        String::from_utf8_lossy(&a.get_output().stdout).to_string()
    };
    let doc: serde_json::Value = serde_json::from_str(&add_long(true)).unwrap();
    assert_eq!(doc["added"], 0, "{doc}");
    assert_eq!(doc["skipped_long"], 2, "{doc}");
    assert_eq!(doc["already_in_index"], 3, "{doc}");
    assert_eq!(doc["count"], 40, "{doc}");
    let out = add_long(false);
    assert!(
        out.starts_with(&format!("nothing to add to {} (40 pairs)", idx.display()))
            && out.contains("2 new to it are too long to encode (left out by --skip-long)")
            && out.contains("the index is unchanged"),
        "{out}"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(idx.join("meta")).unwrap().ino(),
        meta.ino()
    );
    assert!(!dir.path().join("idx.partial").exists());
    // With one pair that can be encoded: it is added, and the others counted.
    long.push(lines[40].clone());
    write_lines(&long_file, &long);
    let doc: serde_json::Value = serde_json::from_str(&add_long(true)).unwrap();
    assert_eq!(
        (&doc["added"], &doc["skipped_long"], &doc["count"]),
        (&1.into(), &2.into(), &41.into()),
        "{doc}"
    );
    long.push(lines[41].clone());
    write_lines(&long_file, &long);
    let out = add_long(false);
    assert!(
        out.starts_with(&format!("added 1 pair to {} (41 → 42 pairs", idx.display()))
            && out.contains("2 too long to encode, left out"),
        "{out}"
    );
}

/// Found by an audit: an input on standard input with no pairs was named `-` ("no pairs in
/// -"), where every other message names it `<stdin>`; and one pair was "1 pairs". Found by a
/// review: an add or a remove of no pairs at all failed (status 1), so a pipeline whose
/// producer found nothing new failed, where an add of nothing new succeeds; it is nothing to
/// do now, said, with the counts at 0 in --json. A build of nothing still fails.
#[test]
fn standard_input_is_named_and_one_pair_is_one_pair() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(41);
    let (_, idx) = index_in(dir.path(), "base.tsv", &lines[..40]);
    let before = rows(&idx);
    let a = relbert()
        .args(["index", "remove", "--index"])
        .arg(&idx)
        .args(["--pairs", "-"])
        .write_stdin("# only a comment\n")
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(
        out.starts_with("nothing to remove: no pairs in <stdin>;") && !out.contains(" -"),
        "{out}"
    );
    let comments = dir.path().join("comments.tsv");
    std::fs::write(&comments, "# nothing new today\n").unwrap();
    for what in ["add", "remove"] {
        let doc = common::index_json(what, &idx, &comments);
        assert_eq!(doc["pairs_read"], 0, "{what}: {doc}");
        assert_eq!(doc["count"], 40, "{what}: {doc}");
        let a = relbert()
            .args(["index", what, "--index"])
            .arg(&idx)
            .args(["--pairs", "-"])
            .write_stdin("")
            .assert()
            .success();
        let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
        assert!(out.contains("no pairs in <stdin>"), "{what}: {out}");
    }
    assert_same_rows(&rows(&idx), &before);
    let one = dir.path().join("one.tsv");
    write_lines(&one, &lines[40..]);
    let a = add(&idx, &one).success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(out.starts_with("added 1 pair to "), "{out}");
    let a = add(&idx, &one).success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(
        out.starts_with("nothing to add: the 1 pair read is already in"),
        "{out}"
    );
    let a = relbert()
        .env("RELBERT_LOG", "info")
        .args(["index", "remove", "--index"])
        .arg(&idx)
        .arg("--pairs")
        .arg(&one)
        .assert()
        .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains(": 1 pair removed in "), "{err}");
    let a = relbert()
        .args(["index", "remove", "--index"])
        .arg(&idx)
        .arg("--pairs")
        .arg(&one)
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(
        out.starts_with("nothing to remove: the 1 pair read is not in"),
        "{out}"
    );
}

/// Found by an audit: `index rebuild --index L --out L --force`, `L` a symbolic link to an
/// index, was refused ("not a directory") where `index add` and `index remove` of `L` change
/// the index it points to. The rebuild now follows the link too: the index is rebuilt in
/// place and the link still points to it.
#[test]
fn a_rebuild_in_place_follows_a_symbolic_link_as_an_add_does() {
    let dir = tempfile::tempdir().unwrap();
    let (_, idx) = index_in(dir.path(), "base.tsv", &vocab_lines(40));
    let link = dir.path().join("link");
    std::os::unix::fs::symlink("idx", &link).unwrap();
    relbert()
        .args(["index", "rebuild", "--force", "--f16", "--index"])
        .arg(&link)
        .arg("--out")
        .arg(&link)
        .assert()
        .success();
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    let rebuilt = Index::open(&idx).unwrap();
    assert_eq!(rebuilt.count(), 40);
    assert_eq!(rebuilt.meta().precision, relbert_index::Precision::F16);
    assert_eq!(
        names_in(dir.path()),
        ["base.tsv", "idx", "link"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

/// Left from the s18 audit: `index build --out L --force`, `L` a symbolic link to an index,
/// was refused as "not a directory", which it is, through the link. It is still refused (a
/// link is never replaced), now saying it is a link, where it leads and what to give
/// instead; nothing is changed.
#[test]
fn a_build_onto_a_link_says_it_is_a_link_and_where_it_leads() {
    let dir = tempfile::tempdir().unwrap();
    let base_file = dir.path().join("base.tsv");
    write_lines(&base_file, &vocab_lines(20));
    let b = dir.path().join("b");
    build_file(&base_file, &b);
    let b_id = Index::open(&b).unwrap().id();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink("b", &link).unwrap();
    let out = relbert()
        .args(["index", "build", "--force", "--model"])
        .arg(model())
        .arg("--pairs")
        .arg(&base_file)
        .arg("--out")
        .arg(&link)
        .assert()
        .failure()
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "it is a symbolic link to the directory {}, and relbert does not replace a link: \
             give --out {} to replace that directory",
            b.display(),
            b.display()
        )),
        "{err}"
    );
    assert!(!err.contains("not a directory"), "{err}");
    // A link that leads nowhere is said to, with no advice to name where it leads.
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink("nowhere", &dangling).unwrap();
    let out = relbert()
        .args(["index", "build", "--force", "--model"])
        .arg(model())
        .arg("--pairs")
        .arg(&base_file)
        .arg("--out")
        .arg(&dangling)
        .assert()
        .failure()
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "it is a symbolic link to {}, which does not exist",
            dir.path().join("nowhere").display()
        )),
        "{err}"
    );
    std::fs::remove_file(&dangling).unwrap();
    assert_eq!(Index::open(&b).unwrap().id(), b_id);
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(
        names_in(dir.path()),
        ["b", "base.tsv", "link"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

/// Found by a review: `index rebuild --index A --out L --force`, `L` a symbolic link to
/// another index `B`, followed the link and replaced `B`, which the command does not name.
/// A link is followed only to rebuild the source in place; otherwise it is refused, as
/// `index build --out L --force` refuses one, and nothing is changed.
#[test]
fn a_rebuild_onto_a_link_to_another_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base_file = dir.path().join("base.tsv");
    write_lines(&base_file, &vocab_lines(40));
    let a = dir.path().join("a");
    build_file(&base_file, &a);
    let b = dir.path().join("b");
    build_file(&base_file, &b);
    let b_id = Index::open(&b).unwrap().id();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink("b", &link).unwrap();
    let out = relbert()
        .args(["index", "rebuild", "--force", "--f16", "--index"])
        .arg(&a)
        .arg("--out")
        .arg(&link)
        .assert()
        .failure()
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("symbolic link"), "{err}");
    let kept = Index::open(&b).unwrap();
    assert_eq!(kept.id(), b_id);
    assert_eq!(kept.meta().precision, relbert_index::Precision::F32);
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(
        names_in(dir.path()),
        ["a", "b", "base.tsv", "link"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

/// `index remove` takes exactly one of `--index` and `--collection`, `--qdrant` only with
/// `--collection`, and a collection needs a URL: each refused as a bad command line (status
/// 2) naming the flags, before anything is read or sent.
#[test]
fn remove_names_one_place_to_remove_from() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("gone.tsv");
    std::fs::write(&pairs, "dog\tpuppy\n").unwrap();
    let idx = dir.path().join("idx");
    let run = |args: &[&str]| {
        let out = relbert()
            .env_remove("RELBERT_QDRANT_URL")
            .args(["index", "remove", "--pairs"])
            .arg(&pairs)
            .args(args)
            .assert()
            .code(2)
            .get_output()
            .clone();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let idx_arg = idx.to_str().unwrap();
    let neither = run(&[]);
    assert!(
        neither.contains("--index") && neither.contains("--collection"),
        "{neither}"
    );
    let both = run(&["--index", idx_arg, "--collection", "c"]);
    assert!(both.contains("cannot be used with"), "{both}");
    let url_beside_index = run(&["--index", idx_arg, "--qdrant", "http://127.0.0.1:1"]);
    assert!(
        url_beside_index.contains("--qdrant") && url_beside_index.contains("cannot be used"),
        "{url_beside_index}"
    );
    let no_url = run(&["--collection", "c"]);
    assert!(
        no_url.contains("--qdrant") && no_url.contains("RELBERT_QDRANT_URL"),
        "{no_url}"
    );
    let bad_name = run(&["--collection", "a/b", "--qdrant", "http://127.0.0.1:1"]);
    assert!(bad_name.contains("--collection"), "{bad_name}");
    // Nothing to take out: both ways of saying what are named (the message named --pairs
    // alone, hiding --abandoned-load).
    let nothing = relbert()
        .env_remove("RELBERT_QDRANT_URL")
        .args(["index", "remove", "--collection", "c", "--qdrant"])
        .arg("http://127.0.0.1:1")
        .assert()
        .code(2)
        .get_output()
        .clone();
    let nothing = String::from_utf8_lossy(&nothing.stderr);
    assert!(
        nothing.contains("--pairs") && nothing.contains("--abandoned-load"),
        "{nothing}"
    );
    assert!(!idx.exists());
}

/// An interrupted add of `idx`, as a kill leaves it: the partial directory with the base's
/// rows copied and its checkpoint, made through the library (deterministic, no kill).
fn interrupted_add(idx: &Path) {
    let grower =
        relbert_index::IndexGrower::create_or_resume(Index::open(idx).unwrap(), "test", 1, |_| {})
            .unwrap();
    drop(grower);
    let partial = relbert_index::partial_dir(idx).unwrap();
    assert!(partial.join("checkpoint").is_file());
}

/// Audit H: `index info --verify` said nothing of a user's file in the index directory nor
/// of an interrupted run waiting in `DIR.partial`. Both are reported (text and JSON), and
/// verify still succeeds.
#[test]
fn info_verify_names_other_files_and_a_pending_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_, idx) = index_in(dir.path(), "pairs.tsv", &vocab_lines(40));
    interrupted_add(&idx);
    std::fs::write(idx.join("notes.txt"), "mine").unwrap();
    let a = relbert()
        .args(["index", "info", "--verify", "--json"])
        .arg(&idx)
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(
        doc["other_files"],
        serde_json::json!(["notes.txt"]),
        "{doc}"
    );
    assert_eq!(doc["pending"]["command"], "add", "{doc}");
    assert_eq!(doc["pending"]["resumable"], true, "{doc}");
    let a = relbert()
        .args(["index", "info", "--verify"])
        .arg(&idx)
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(out.contains("notes.txt"), "{out}");
    let partial = dir.path().join("idx.partial").display().to_string();
    assert!(
        out.contains(&format!("{partial} holds an interrupted `index add`")),
        "{out}"
    );
    assert!(out.contains(&format!("remove {partial}")), "{out}");
}

/// Audit H: the partial directory of an add to an index the directory no longer holds (it
/// was replaced since) can never be resumed, yet an add that found nothing new advised "run
/// that add again", which, for pairs the new index holds, found nothing new again and gave
/// the same advice. It is now said to be stale, and only giving it up is advised.
#[test]
fn a_stale_partial_add_is_advised_away_not_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(60);
    let (first, second) = (dir.path().join("a.tsv"), dir.path().join("b.tsv"));
    write_lines(&first, &lines[..40]);
    write_lines(&second, &lines[20..]);
    let idx = dir.path().join("idx");
    build_file(&first, &idx);
    interrupted_add(&idx);
    // The index replaced under the partial directory (a restore, a copy).
    let other = dir.path().join("other");
    build_file(&second, &other);
    std::fs::remove_dir_all(&idx).unwrap();
    std::fs::rename(&other, &idx).unwrap();
    let a = add(&idx, &second).success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    let partial = dir.path().join("idx.partial").display().to_string();
    assert!(err.contains("can never be resumed"), "{err}");
    assert!(err.contains(&format!("remove {partial}")), "{err}");
    assert!(!err.contains("again"), "{err}");
}

/// Audit H: a remove reading standard input keeps no copy of it; run again with nothing on
/// standard input beside an interrupted run it said only "no pairs in <stdin>".
#[test]
fn an_empty_stdin_remove_beside_an_interrupted_run_says_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (_, idx) = index_in(dir.path(), "pairs.tsv", &vocab_lines(40));
    interrupted_add(&idx);
    let a = relbert()
        .args(["index", "remove", "--index"])
        .arg(&idx)
        .args(["--pairs", "-"])
        .write_stdin("")
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    let partial = dir.path().join("idx.partial").display().to_string();
    assert!(
        err.contains(&format!("{partial} holds an interrupted run")),
        "{err}"
    );
    assert!(
        err.contains("give the same pairs on standard input again"),
        "{err}"
    );
}

/// Audit H: a remove counted a line repeating a pair the index lacks as missing once per
/// line, and one repeating a held pair as repeated: the counts depended on whether the pair
/// was held. A repeated line is now a repeat either way, as an add counts it.
#[test]
fn a_remove_counts_a_repeated_line_the_same_whether_the_pair_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(41);
    let (_, idx) = index_in(dir.path(), "pairs.tsv", &lines[..40]);
    let gone = dir.path().join("gone.tsv");
    let (held, lacked) = (&lines[0], &lines[40]);
    write_lines(
        &gone,
        &[held.clone(), held.clone(), lacked.clone(), lacked.clone()],
    );
    let a = relbert()
        .args(["index", "remove", "--json", "--index"])
        .arg(&idx)
        .arg("--pairs")
        .arg(&gone)
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(doc["removed"], 1, "{doc}");
    assert_eq!(doc["not_in_index"], 1, "{doc}");
    assert_eq!(doc["repeated_in_input"], 2, "{doc}");
}

/// Audit L: an add counted a line repeating a pair the index held as held, once per line,
/// and one repeating a new pair as repeated, so the same file added twice said
/// `repeated_in_input` 1 and then 0. A repeated line is a repeat either way, as a remove
/// counts it.
#[test]
fn an_add_counts_a_repeated_line_the_same_whether_the_pair_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(41);
    let (_, idx) = index_in(dir.path(), "pairs.tsv", &lines[..40]);
    let more = dir.path().join("more.tsv");
    let (held, new) = (&lines[0], &lines[40]);
    write_lines(&more, &[held.clone(), new.clone(), new.clone()]);
    let counts = || {
        let a = relbert()
            .args(["index", "add", "--json", "--index"])
            .arg(&idx)
            .arg("--pairs")
            .arg(&more)
            .assert()
            .success();
        let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
        (
            doc["already_in_index"].clone(),
            doc["repeated_in_input"].clone(),
        )
    };
    assert_eq!(counts(), (1.into(), 1.into()));
    assert_eq!(counts(), (2.into(), 1.into()));
}

/// Found by an audit: a small index (whose graph, up to 8 MiB, is verified whole at open) with
/// a damaged graph could not be rebuilt, though the README says a rebuild makes a new graph in
/// place of a damaged one: the rebuild's full check at open refused it, and the error advised
/// re-encoding from the pair list. A rebuild opens with the headers checked and verifies what
/// it copies; the error for a damaged graph names the rebuild. (A damage in the graph's small
/// sections, which every open reads, still needs the pair list: not this case.)
#[test]
fn a_small_index_with_a_damaged_graph_is_rebuilt_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (_, idx) = index_in(dir.path(), "pairs.tsv", &vocab_lines(300));
    let graph_len = std::fs::metadata(idx.join("graph")).unwrap().len();
    flip(&idx.join("graph"), graph_len / 2);
    let a = relbert()
        .args(["index", "info", "--verify"])
        .arg(&idx)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        err.contains("graph")
            && err.contains("relbert index rebuild --index DIR --out DIR --force"),
        "{err}"
    );
    relbert()
        .args(["index", "rebuild", "--index"])
        .arg(&idx)
        .arg("--out")
        .arg(&idx)
        .arg("--force")
        .assert()
        .success();
    relbert()
        .args(["index", "info", "--verify"])
        .arg(&idx)
        .assert()
        .success();
    assert_eq!(Index::open(&idx).unwrap().count(), 300);
}

/// Found by a review: an `index build --skip-long` from standard input, interrupted and
/// resumed from the copy of its input it keeps, reported fewer pairs read and none left out
/// as too long, for the copy holds only the pairs the first run kept. The first run records
/// its counts in the copy, as an add does, and the resumed build reports (and warns of) what
/// an uninterrupted one does.
#[test]
fn a_build_resumed_from_its_copy_of_standard_input_counts_the_pairs_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vocab_lines(5000);
    lines.insert(10, too_long("cat"));
    let file = dir.path().join("pairs.tsv");
    write_lines(&file, &lines);
    let args = |out: &Path| -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = ["index", "build", "--json", "--skip-long"]
            .into_iter()
            .map(Into::into)
            .collect();
        v.extend(["--model".into(), model().into_os_string()]);
        v.extend(["--pairs".into(), "-".into(), "--out".into()]);
        v.push(out.as_os_str().to_owned());
        v
    };
    let report = |stdout: &[u8]| -> serde_json::Value {
        let doc: serde_json::Value = serde_json::from_slice(stdout).unwrap();
        ["pairs_read", "skipped_long", "count", "repeated_in_input"]
            .iter()
            .map(|k| (k.to_string(), doc[k].clone()))
            .collect()
    };
    let reference = dir.path().join("reference");
    let a = relbert()
        .args(args(&reference))
        .pipe_stdin(&file)
        .unwrap()
        .assert()
        .success();
    let want = report(&a.get_output().stdout);
    assert_eq!(want["pairs_read"], lines.len(), "{want}");
    assert_eq!(want["skipped_long"], 1, "{want}");
    let dim = Index::open(&reference).unwrap().dim() as u64;

    let out = dir.path().join("idx");
    build_killed_after_first_chunk(&args(&out), &file, &out, dim);
    let a = relbert()
        .env("RELBERT_LOG", "info")
        .args(args(&out))
        .write_stdin("")
        .assert()
        .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("resuming"), "{err}");
    assert!(
        err.contains("left out 1 pair(s) whose prompt is too long to encode"),
        "{err}"
    );
    assert_eq!(report(&a.get_output().stdout), want, "{err}");
    assert_same_rows(&rows(&out), &rows(&reference));
}
