//! End-to-end tests of the stream-to-index path on the tiny fixture model: `relbert index
//! build --pairs -` (pairs from standard input) and `relbert index add` (growing an index by
//! the pairs it lacks), through the CLI, with a query process open across an add and an add
//! killed and run again.
#![cfg(unix)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
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
    relbert()
        .args(["index", "build", "--model"])
        .arg(model())
        .arg("--pairs")
        .arg(pairs)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
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
    let spool = dir.path().join("idx.partial/input.spool");
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
        let mut child = StdCommand::new(bin())
            .env("RELBERT_LOG", "warn")
            .args(["index", "build", "--model"])
            .arg(model())
            .args(["--pairs", "-"])
            .args(also)
            .arg("--out")
            .arg(&out)
            .stdin(std::fs::File::open(sent).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Killed after the first checkpointed chunk of 2048 rows.
        assert!(kill_when_longer(
            &mut child,
            &dir.path().join("idx.partial/vectors"),
            64 + 2048 * dim * 4
        ));
        assert!(spool.is_file());
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
            .args(["index", "build", "--model"])
            .arg(model())
            .args(["--pairs", "-"])
            .args(also)
            .arg("--out")
            .arg(&out)
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
    let base_file = dir.path().join("base.tsv");
    write_lines(&base_file, base);
    let union_file = dir.path().join("union.tsv");
    write_lines(&union_file, &lines);
    // The added input overlaps the index (20 pairs it holds) and repeats itself.
    let mut added: Vec<String> = base[..20].to_vec();
    added.extend(new.iter().cloned());
    added.extend(new[..5].iter().cloned());
    let add_file = dir.path().join("add.tsv");
    write_lines(&add_file, &added);

    let idx = dir.path().join("idx");
    build_file(&base_file, &idx);
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

/// Reads response lines of a `relbert query --json` stream.
struct QueryProcess {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl QueryProcess {
    fn start(index: &Path) -> Self {
        let mut child = StdCommand::new(bin())
            .env("RELBERT_LOG", "warn")
            .args([
                "query",
                "--json",
                "--exact",
                "--keep-shared-words",
                "-k",
                "100000",
            ])
            .arg("--index")
            .arg(index)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        QueryProcess { child, out }
    }

    /// The pairs of the answer to (a, b): with an exact search and a `k` above the index's
    /// size, every stored pair but the query's own.
    fn ask(&mut self, a: &str, b: &str) -> BTreeSet<(String, String)> {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{a}\t{b}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!("{e}: {line:?}");
        });
        doc["results"]
            .as_array()
            .unwrap_or_else(|| panic!("no results: {line}"))
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
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    let base_file = dir.path().join("base.tsv");
    write_lines(&base_file, base);
    let add_file = dir.path().join("add.tsv");
    write_lines(&add_file, new);
    let idx = dir.path().join("idx");
    build_file(&base_file, &idx);

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
    let base_file = dir.path().join("base.tsv");
    write_lines(&base_file, base);
    let add_file = dir.path().join("add.tsv");
    write_lines(&add_file, new);
    let union_file = dir.path().join("union.tsv");
    write_lines(&union_file, &lines);
    let idx = dir.path().join("idx");
    build_file(&base_file, &idx);
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
    let base_file = dir.path().join("base.tsv");
    write_lines(&base_file, &lines[..150]);
    let add_file = dir.path().join("add.tsv");
    write_lines(&add_file, &lines[150..]);
    let idx = dir.path().join("idx");
    build_file(&base_file, &idx);
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

#[test]
fn adding_nothing_new_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vocab_lines(200);
    let file = dir.path().join("pairs.tsv");
    write_lines(&file, &lines);
    let idx = dir.path().join("idx");
    build_file(&file, &idx);
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
    let base_file = dir.path().join("base.tsv");
    write_lines(&base_file, base);
    let idx = dir.path().join("idx");
    build_file(&base_file, &idx);
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
    // Unmarked.
    write_lines(&spool, new);
    let a = relbert()
        .args(["index", "add", "--index"])
        .arg(&idx)
        .args(["--pairs", "-"])
        .write_stdin("")
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("no pairs on standard input"), "{err}");
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
