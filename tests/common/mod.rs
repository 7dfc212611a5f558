//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Skips a test, or a part of one, that this machine cannot run (no root, a file system or
/// kernel feature): `SKIPPED: <reason>` on standard error, and a line
/// `<file>::<test> [environment]: <reason>` in the skip ledger when `RELBERT_SKIP_LOG` names
/// a file (`relbert_index::record_skip` documents the ledger and what `.ci/run` does with
/// it). The reason names what is missing.
#[track_caller]
pub fn skip(reason: impl std::fmt::Display) {
    let place = relbert_index::skip_place(std::panic::Location::caller().file());
    relbert_index::record_skip(
        &place,
        relbert_index::SkipCause::Environment,
        &reason.to_string(),
    );
}

/// Skips a test, or a part of one, for want of a service or tool that `.ci/run` sets up
/// itself (Qdrant, Chromium and chromedriver, gensim, strace): as [`skip`], but the ledger's
/// line is tagged `[provided]`, and CI fails on it.
#[track_caller]
pub fn skip_service(reason: impl std::fmt::Display) {
    let place = relbert_index::skip_place(std::panic::Location::caller().file());
    relbert_index::record_skip(
        &place,
        relbert_index::SkipCause::Provided,
        &reason.to_string(),
    );
}

/// Path of a file under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The base MiniLM fetched by scripts/fetch-base-model.sh.
pub fn minilm_dir() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    assert!(
        p.join("model.safetensors").is_file(),
        "{} is missing: run scripts/fetch-base-model.sh first (CI does)",
        p.display()
    );
    p
}

/// Builds at `idx`, with the library and the tiny fixture model `model`, an index of `held`
/// stored exactly as spelled: what an older relbert wrote before words were read without
/// invisible characters and a mixed Unicode form was stored in NFC, which the command line
/// no longer makes.
pub fn index_as_an_older_relbert_wrote(idx: &Path, model: &str, held: &[(&str, &str)]) {
    let enc = relbert::RelationEncoder::load(&fixture(model), &Default::default()).unwrap();
    let spec = relbert_index::IndexSpec {
        dim: enc.dim() as u32,
        precision: relbert_index::Precision::F32,
        encoder: relbert::indexing::encoder_info(&enc.identity().unwrap()),
        input: "an older relbert's build".into(),
    };
    let mut b = relbert_index::IndexBuilder::create_or_resume(idx, spec, false).unwrap();
    let entries: Vec<relbert_index::PairEntry> = held
        .iter()
        .map(|(h, t)| relbert_index::PairEntry::new(*h, *t))
        .collect();
    let vectors: Vec<f32> = enc.embed(held).unwrap().into_iter().flatten().collect();
    b.append_chunk(&entries, &vectors).unwrap();
    b.finish(relbert_index::HnswParams::default(), |_| {})
        .unwrap();
}

/// `relbert index WHAT --json --index IDX --pairs PAIRS` (`add` or `remove`), which must
/// succeed: its JSON summary.
pub fn index_json(what: &str, idx: &Path, pairs: &Path) -> serde_json::Value {
    let a = assert_cmd::Command::cargo_bin("relbert")
        .unwrap()
        .env("RELBERT_LOG", "warn")
        .args(["index", what, "--json", "--index"])
        .arg(idx)
        .arg("--pairs")
        .arg(pairs)
        .assert()
        .success();
    serde_json::from_slice(&a.get_output().stdout).unwrap()
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Scales a vector to unit length.
pub fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// A copy of a fixture model in `dir` whose `relbert_config.offset_weight` is `w` (the key is
/// removed when `w` is `None`).
pub fn fixture_with_offset_weight(name: &str, dir: &Path, w: Option<f64>) -> PathBuf {
    let out = dir.join(format!("{name}-offset"));
    std::fs::create_dir_all(&out).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture(name).join(f), out.join(f)).unwrap();
    }
    set_offset_weight(
        &fixture(name).join("config.json"),
        &out.join("config.json"),
        w,
    );
    out
}

/// Writes `from`'s config to `to` with `relbert_config.offset_weight` set to `w` (or removed).
pub fn set_offset_weight(from: &Path, to: &Path, w: Option<f64>) {
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(from).unwrap()).unwrap();
    let block = cfg["relbert_config"].as_object_mut().unwrap();
    match w {
        Some(w) => block.insert("offset_weight".into(), serde_json::json!(w)),
        None => block.remove("offset_weight"),
    };
    std::fs::write(to, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
}

/// A small labelled pair file in `dir` (pairs.tsv): 20 words paired with each other, plus
/// a comment and a duplicate line, as the index tests build their fixture index from.
pub fn pair_file(dir: &Path) -> PathBuf {
    let p = dir.join("pairs.tsv");
    let mut text = String::from("# test vocabulary\n");
    let words = [
        "paris", "france", "tokyo", "japan", "dog", "puppy", "cat", "kitten", "wheel", "car",
        "hot", "cold", "big", "small", "pen", "write", "knife", "cut", "bird", "nest",
    ];
    for (i, a) in words.iter().enumerate() {
        for b in words.iter().skip(i + 1).step_by(3) {
            text.push_str(&format!("{a}\t{b}\tl{}\n", i % 4));
        }
    }
    text.push_str("paris\tfrance\tduplicate\n");
    std::fs::write(&p, text).unwrap();
    p
}

/// Starts `relbert serve --addr 127.0.0.1:0 --index INDEX` with `RELBERT_LOG=log` and
/// returns the child, its standard error (after the listening line) and the bound address.
pub fn spawn_serve(
    index: &Path,
    log: &str,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
    String,
) {
    spawn_serve_with(&["--index".as_ref(), index.as_os_str()], log)
}

/// [`spawn_serve`] with `args` in place of `--index INDEX` (a Qdrant collection, a model).
pub fn spawn_serve_with(
    args: &[&std::ffi::OsStr],
    log: &str,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
    String,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("relbert"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(args)
        .env("RELBERT_LOG", log)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        if let Some(a) = line
            .trim()
            .strip_prefix("relbert serve: listening on http://")
        {
            let addr = a.to_string();
            return (child, err, addr);
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("relbert serve printed no address");
}

/// A `GET path` on a fresh connection to `addr`: the whole raw response, or `None` if the
/// server cannot be reached.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A `POST path` of the JSON `body` on a fresh connection to `addr`: the whole raw
/// response, or `None` if the server cannot be reached.
pub fn http_post(addr: &str, path: &str, body: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Whether the server at `addr` says it is ready (`GET /v1/health` answers 200: it has
/// loaded what it serves) within about `limit`, asked every 50 ms: bounded by a count of
/// asks, not the clock, so a slow machine only makes it slower. The bound only keeps a
/// server that never gets ready from hanging the test; the caller fails it, after its own
/// cleanup.
pub fn ready_within(addr: &str, limit: std::time::Duration) -> bool {
    let every = std::time::Duration::from_millis(50);
    for _ in 0..(limit.as_millis() / every.as_millis()).max(1) {
        if http_get(addr, "/v1/health").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            return true;
        }
        std::thread::sleep(every);
    }
    false
}

/// Deletes a test's Qdrant collection (best effort: a test that failed midway may have made
/// none).
#[cfg(feature = "qdrant")]
pub fn drop_collection(urls: &[String], collection: &str) {
    let conn = relbert::store::qdrant::Connection::new(urls, collection).unwrap();
    let c = conn.clone();
    let _ = conn.block_on(async move {
        c.call(
            "deleting the test collection",
            relbert::store::qdrant::Hedge::Never,
            |q, name| async move { q.delete_collection(name).await },
        )
        .await
    });
}

/// The `(pair, score)` of each result of a `query --json` answer, in order.
pub fn scored_results(answer: &serde_json::Value) -> Vec<(serde_json::Value, f64)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["pair"].clone(), r["score"].as_f64().unwrap()))
        .collect()
}

/// A copy of the tiny-bert fixture in `dir` with one weight of a LayerNorm set to NaN, so
/// that every vector the model gives is NaN.
pub fn nan_model(dir: &Path) -> PathBuf {
    let out = dir.join("nan-model");
    std::fs::create_dir_all(&out).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture("tiny-bert").join(f), out.join(f)).unwrap();
    }
    let mut bytes = std::fs::read(fixture("tiny-bert").join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let (_, info) = header
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.contains("output.LayerNorm.weight"))
        .unwrap();
    assert_eq!(info["dtype"], "F32");
    let at = 8 + n + info["data_offsets"][0].as_u64().unwrap() as usize + 12;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(out.join("model.safetensors"), bytes).unwrap();
    out
}

/// The counts of the plain progress lines starting with `what: ` in `stderr`.
pub fn progress_counts(stderr: &str, what: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(what)?.strip_prefix(": "))
        .map(|rest| {
            let done = rest.split('/').next().unwrap().replace(',', "");
            done.parse().unwrap_or_else(|_| panic!("{rest}"))
        })
        .collect()
}

/// `/dev/full` opened for writing: every write fails with ENOSPC (a full disk as an output).
pub fn dev_full() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
}

/// Every file in `dir` by name, with its bytes: to compare a directory before and after.
pub fn dir_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The largest difference between two vectors' components.
pub fn apart(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Kills process `pid` (SIGKILL) unless dropped within `secs` seconds: a child a test waits
/// for that never ends (a regression that hangs) fails the test, through the child's early
/// end, instead of hanging the whole run. Drop it as soon as the child has been waited for:
/// its pid may be another process's after that.
pub struct Watchdog(std::sync::Arc<std::sync::atomic::AtomicBool>);

/// A [`Watchdog`] on `pid`.
pub fn watchdog(pid: u32, secs: u64) -> Watchdog {
    use std::sync::atomic::Ordering;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = done.clone();
    std::thread::spawn(move || {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < end {
            if seen.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if !seen.load(Ordering::SeqCst) {
            // SAFETY: kill(2) with a pid and a signal number; the guard not dropped means the
            // child has not been waited for, so the pid is still the child's.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    Watchdog(done)
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Builds the index `out` of `pairs` with the tiny BERT fixture (`relbert index build`,
/// quiet, with the model and index variables cleared), asserting it succeeds; returns `out`.
pub fn tiny_index(pairs: &Path, out: &Path) -> PathBuf {
    assert_cmd::Command::cargo_bin("relbert")
        .unwrap()
        .env("RELBERT_LOG", "warn")
        .env_remove("RELBERT_MODEL")
        .env_remove("RELBERT_INDEX")
        .args(["index", "build", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(pairs)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
    out.to_path_buf()
}

/// This machine's host name, as `pairs mine` records it in its work directory's owner file.
pub fn host_name() -> String {
    let mut host = [0u8; 256];
    // SAFETY: gethostname writes at most the buffer's length.
    assert_eq!(
        unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len()) },
        0
    );
    let end = host.iter().position(|&b| b == 0).unwrap();
    String::from_utf8_lossy(&host[..end]).into_owned()
}

/// A corpus of `n` sentences over a few hundred words, deterministic.
pub fn synthetic_corpus(path: &Path, n: usize) {
    use std::io::Write as _;
    let words: Vec<String> = (0..300).map(|i| format!("w{}x", to_letters(i))).collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 12345;
    for _ in 0..n {
        let len = 5 + (x % 12) as usize;
        let s: Vec<&str> = (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Skewed: low ranks are far more frequent.
                let r = ((x >> 33) % 300) * ((x >> 20) % 300) / 300;
                words[r as usize].as_str()
            })
            .collect();
        writeln!(f, "{}.", s.join(" ")).unwrap();
    }
}

/// `i` in letters, least significant first (`a` is 0).
pub fn to_letters(mut i: usize) -> String {
    let mut s = String::new();
    loop {
        s.push((b'a' + (i % 26) as u8) as char);
        i /= 26;
        if i == 0 {
            return s;
        }
    }
}

/// Waits up to `limit` for `child` to exit: its status, or `None` (it is then killed).
pub fn exit_within(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let status = wait_within(child, limit);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// Waits up to `limit` for `child` to exit: its status, or `None`, the child left running
/// (for a test that then unblocks it and reads what it did).
pub fn wait_within(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

/// Whether process `pid` catches SIGINT, SIGTERM and SIGHUP (its `SigCgt` in /proc): the
/// run's handler is installed, and a signal sent now is its to take.
#[cfg(target_os = "linux")]
pub fn catches_stop_signals(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let caught = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or(0);
    let want = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
        .iter()
        .fold(0u64, |m, &s| m | 1 << (s - 1));
    caught & want == want
}

/// The names in `dir`, hidden ones included, sorted: to compare a directory before and after.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Asserts that `err`, the standard error of a run, refuses `--out` as an invalid value
/// because its folder `folder` does not exist (as `embed` and `index export` do); `what`
/// names the case in the failure.
pub fn assert_out_folder_missing(err: &str, folder: &Path, what: &str) {
    assert!(
        err.contains("invalid value for --out")
            && err.contains(&format!("its folder {} does not exist", folder.display())),
        "{what}: {err}"
    );
}

/// The words of the toy training data ([`toy_data`]).
pub const TOY_WORDS: [&str; 24] = [
    "cat", "dog", "fish", "bird", "tree", "leaf", "car", "road", "sun", "moon", "red", "blue",
    "king", "queen", "man", "woman", "hot", "cold", "up", "down", "big", "small", "day", "night",
];

/// The JSON pair of words `i` and `j` of [`TOY_WORDS`] (modulo their count).
pub fn toy_pair(i: usize, j: usize) -> String {
    format!("[\"{}\", \"{}\"]", TOY_WORDS[i % 24], TOY_WORDS[j % 24])
}

/// Four relations in two parents, 3 positives and 2 negatives each (train), 2 + 2
/// (validation), plus a two-question sat validation split.
pub fn toy_data(dir: &Path) {
    let sem = dir.join("semeval2012_relational_similarity");
    std::fs::create_dir_all(&sem).unwrap();
    let ids = ["1a", "1b", "2a", "2b"];
    let mut train = String::new();
    let mut valid = String::new();
    for (r, id) in ids.iter().enumerate() {
        let pos: Vec<String> = (0..3)
            .map(|k| toy_pair(r * 5 + k, r * 5 + k + 12))
            .collect();
        let neg: Vec<String> = (0..2).map(|k| toy_pair(r * 5 + k + 12, r + k)).collect();
        train.push_str(&format!(
            "{{\"relation_type\": \"{id}\", \"positives\": [{}], \"negatives\": [{}]}}\n",
            pos.join(", "),
            neg.join(", ")
        ));
        let vpos: Vec<String> = (0..2)
            .map(|k| toy_pair(r * 3 + k + 1, r * 3 + k + 13))
            .collect();
        let vneg: Vec<String> = (0..2)
            .map(|k| toy_pair(r * 3 + k + 13, r + 2 * k))
            .collect();
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

/// A `relbert query` process a test talks to line by line, as a script's stream: query lines
/// written into its standard input, answers read from its standard output.
pub struct QueryStream {
    /// The process.
    pub child: std::process::Child,
    /// Its standard input, open until the stream is ended or dropped: a stream whose input
    /// is still open waits for its next line.
    pub input: std::process::ChildStdin,
    /// Its standard output, when that is a pipe (taken, to close it early).
    pub output: Option<std::io::BufReader<std::process::ChildStdout>>,
}

impl QueryStream {
    /// `relbert query FLAGS --index INDEX` (quiet), its standard output and error pipes.
    pub fn start(flags: &[&str], index: &Path) -> QueryStream {
        Self::start_with(
            flags,
            index,
            std::process::Stdio::piped(),
            std::process::Stdio::piped(),
        )
    }

    /// [`QueryStream::start`] with its standard output and error sent where a test says.
    pub fn start_with(
        flags: &[&str],
        index: &Path,
        stdout: impl Into<std::process::Stdio>,
        stderr: impl Into<std::process::Stdio>,
    ) -> QueryStream {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("relbert"))
            .env("RELBERT_LOG", "warn")
            .arg("query")
            .args(flags)
            .arg("--index")
            .arg(index)
            .stdin(std::process::Stdio::piped())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = child.stdout.take().map(std::io::BufReader::new);
        QueryStream {
            child,
            input,
            output,
        }
    }

    /// Writes `bytes` to the stream's input, flushed: the stream sees them now.
    pub fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.input.write_all(bytes).unwrap();
        self.input.flush().unwrap();
    }

    /// The next line of its output, as read (empty at its end).
    pub fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut got = String::new();
        self.output
            .as_mut()
            .expect("standard output is not a pipe")
            .read_line(&mut got)
            .unwrap();
        got
    }

    /// The next line of a `--json` stream's output, parsed.
    pub fn answer(&mut self) -> serde_json::Value {
        let got = self.line();
        serde_json::from_str(&got).unwrap_or_else(|e| panic!("no answer line ({e}): {got:?}"))
    }

    /// The answer line of a `--json` stream to `line`, asked once the line before is read.
    pub fn ask(&mut self, line: &str) -> serde_json::Value {
        self.send(format!("{line}\n").as_bytes());
        self.answer()
    }

    /// Sends the process SIGTERM.
    pub fn stop(&self) {
        // SAFETY: kill(2) with the child's own pid; it has not been waited for (a test stops
        // a stream that is still running).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// The rest of its output, to its end.
    pub fn rest(&mut self) -> String {
        let mut rest = String::new();
        std::io::Read::read_to_string(
            self.output.as_mut().expect("standard output is not a pipe"),
            &mut rest,
        )
        .unwrap();
        rest
    }

    /// Ends its input and waits for it: its exit status and standard error. Its output, if
    /// not taken, stays open until it has exited.
    pub fn end(self) -> (std::process::ExitStatus, String) {
        let QueryStream {
            child,
            input,
            output,
        } = self;
        drop(input);
        let out = child.wait_with_output().unwrap();
        drop(output);
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// relbert run as the unprivileged user `nobody` (uid 65534) through `setpriv`, for what
/// only a user whom permissions bind can show (root may write anything); `None`, with
/// `SKIPPED` and the reason printed for `what` (the test or its part), when this test process
/// cannot run it so (not root, no setpriv, or `nobody` may not run the binary).
#[track_caller]
pub fn relbert_as_nobody(scratch: &Path, what: &str) -> Option<std::process::Command> {
    relbert_switched(
        scratch,
        what,
        &["--reuid=65534", "--regid=65534", "--clear-groups"],
    )
}

/// relbert run through `setpriv` with `ids` (its user and group options), or `None` with
/// `SKIPPED` printed for `what` when this test process cannot run it so. The probe runs the
/// binary itself (`--version`) under `ids`: a checkout `nobody` may not read would make the
/// test fail on that, not on what it checks.
#[track_caller]
pub fn relbert_switched(scratch: &Path, what: &str, ids: &[&str]) -> Option<std::process::Command> {
    use std::os::unix::fs::MetadataExt;
    use std::process::{Command, Stdio};
    let bin = assert_cmd::cargo::cargo_bin("relbert");
    let probe = scratch.join(".uid-probe");
    std::fs::write(&probe, b"").unwrap();
    let uid = std::fs::metadata(&probe).unwrap().uid();
    std::fs::remove_file(&probe).unwrap();
    if uid != 0 {
        skip(format_args!(
            "{what}: running relbert as another user needs root (uid {uid})"
        ));
        return None;
    }
    let runs = Command::new("setpriv")
        .args(ids)
        .arg(&bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    if !runs.as_ref().is_ok_and(|o| o.status.success()) {
        skip(format_args!(
            "{what}: setpriv {} cannot run {} here: {runs:?}",
            ids.join(" "),
            bin.display()
        ));
        return None;
    }
    let mut c = Command::new("setpriv");
    c.args(ids)
        .arg(bin)
        .env("RELBERT_LOG", "warn")
        .stdin(Stdio::null());
    Some(c)
}
