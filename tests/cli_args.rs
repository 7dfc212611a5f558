//! The command line itself: arguments that are not UTF-8, the environment variables that
//! stand in for flags, exit status 2 for a bad command line (and the flag named), and flags
//! that would be ignored.
#![cfg(feature = "cli")]

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::fixture;

/// `relbert` with the environment variables these tests set cleared, quiet but for
/// warnings.
fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn")
        .env_remove("RELBERT_MODEL")
        .env_remove("RELBERT_INDEX")
        .env_remove("RELBERT_QDRANT_URL")
        .env_remove("RELBERT_TOKEN");
    c
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// A path in `dir` whose name is `name`'s bytes (not UTF-8 when they say so).
fn named(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

fn pairs(dir: &Path) -> PathBuf {
    let p = dir.join("p.tsv");
    std::fs::write(&p, "paris\tfrance\ndog\tpuppy\n").unwrap();
    p
}

/// A small index at `dir/idx`.
fn index(dir: &Path) -> PathBuf {
    common::tiny_index(&pairs(dir), &dir.join("idx"))
}

/// Audit (s16): every command that takes an output lock panicked (status 101, in the
/// standard library's `env::args`) when any argument was not UTF-8, and left its lock file
/// behind; and a path flag refused such a path outright ("invalid UTF-8 was detected").
#[test]
fn paths_that_are_not_utf8_are_read_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = named(dir.path(), b"p\xff.tsv");
    std::fs::write(&input, "paris\tfrance\n").unwrap();
    for out in [
        dir.path().join("v.jsonl"),
        named(dir.path(), b"v\xfe.jsonl"),
    ] {
        let a = relbert()
            .args(["embed", "--model"])
            .arg(fixture("tiny-bert"))
            .arg("--pairs")
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .assert();
        let err = stderr(&a);
        a.success();
        assert!(!err.contains("panicked"), "{err}");
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(
            text.starts_with("{\"pair\":[\"paris\",\"france\"]"),
            "{text}"
        );
    }
    // Nothing left beside the outputs: no lock, no temporary file.
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            b"p\xff.tsv".to_vec(),
            b"v.jsonl".to_vec(),
            b"v\xfe.jsonl".to_vec()
        ]
    );
    // An index under such a name is queried, and exported to such a file.
    let idx = index(dir.path());
    let odd = named(dir.path(), b"i\xff");
    std::fs::rename(&idx, &odd).unwrap();
    relbert()
        .args(["query", "--exact", "-k", "1", "--index"])
        .arg(&odd)
        .args(["paris", "france"])
        .assert()
        .success();
    let npy = named(dir.path(), b"e\xff.npy");
    relbert()
        .args(["index", "export", "--format", "npy", "--index"])
        .arg(&odd)
        .arg("--out")
        .arg(&npy)
        .assert()
        .success();
    assert!(npy.is_file());
}

/// Audit (s16): a query word that is not UTF-8 was refused by clap as "invalid UTF-8 was
/// detected in one or more arguments", naming no argument.
#[test]
fn text_that_is_not_utf8_is_refused_naming_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    let a = relbert()
        .args(["query", "--index"])
        .arg(dir.path().join("idx"))
        .arg(OsStr::from_bytes(b"caf\xe9"))
        .arg("x")
        .assert()
        .code(2);
    let err = stderr(&a);
    assert!(
        err.contains("[A B | A:B | -]") && err.contains("not UTF-8 text"),
        "{err}"
    );
    let a = relbert()
        .args(["embed", "--pairs", "-", "--template"])
        .arg(OsStr::from_bytes(b"<subj> <obj> <mask> \xff"))
        .assert()
        .code(2);
    let err = stderr(&a);
    assert!(
        err.contains("--template") && err.contains("not UTF-8 text"),
        "{err}"
    );
}

/// Audit (s16): a `RELBERT_LOG` that is not a filter fell back to the default without a word;
/// a misspelt level (`wran`, read as a module's name) and an empty one hid every message,
/// warnings included.
#[test]
fn a_bad_relbert_log_is_warned_about_and_an_empty_one_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("d.tsv");
    std::fs::write(
        &input,
        "paris\tfrance\tx\nparis\tfrance\ty\ndog\tpuppy\tz\n",
    )
    .unwrap();
    let build = |log: &str, out: &str| {
        let a = relbert()
            .env("RELBERT_LOG", log)
            .args(["index", "build", "--model"])
            .arg(fixture("tiny-bert"))
            .arg("--pairs")
            .arg(&input)
            .arg("--out")
            .arg(dir.path().join(out))
            .assert()
            .success();
        stderr(&a)
    };
    for (i, log) in ["wran", "relbert=loud"].into_iter().enumerate() {
        let err = build(log, &format!("bad{i}"));
        let named = format!("RELBERT_LOG={log:?}");
        assert_eq!(err.matches(&named).count(), 1, "{err}");
        assert!(err.contains("using the default log filter"), "{err}");
        // The default is in force: its warnings and notes are shown.
        assert!(err.contains("is dropped") && err.contains("INFO"), "{err}");
    }
    let err = build("", "empty");
    assert!(!err.contains("RELBERT_LOG"), "{err}");
    assert!(err.contains("is dropped") && err.contains("INFO"), "{err}");
}

/// Audit (s16): an error about `$RELBERT_MODEL`'s model never named the variable and advised
/// fetching the base model; an empty one said "loading model  (...)".
#[test]
fn relbert_model_is_named_and_an_empty_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = pairs(dir.path());
    let embed = |model: &OsStr| {
        let a = relbert()
            .env("RELBERT_MODEL", model)
            .args(["embed", "--pairs"])
            .arg(&input)
            .assert()
            .code(1);
        stderr(&a)
    };
    let err = embed(OsStr::new(""));
    assert!(
        err.contains("RELBERT_MODEL is set but empty") && !err.contains("loading model  "),
        "{err}"
    );
    let missing = dir.path().join("no-model");
    let err = embed(missing.as_os_str());
    assert!(
        err.contains(&format!("{} ($RELBERT_MODEL)", missing.display()))
            && !err.contains("fetch-base-model"),
        "{err}"
    );
}

/// Audit (s16): a bad `$RELBERT_QDRANT_URL` was reported as "invalid value for --qdrant" when
/// no --qdrant was given; and (s19) it exited with status 1 where a bad `--qdrant` gives 2.
#[test]
fn a_bad_qdrant_url_variable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let idx = index(dir.path());
    let cmds: [Vec<&OsStr>; 3] = [
        ["index", "export", "--collection", "c", "--index"]
            .map(OsStr::new)
            .into_iter()
            .chain([idx.as_os_str()])
            .collect(),
        ["query", "--collection", "c", "a", "b"]
            .map(OsStr::new)
            .into(),
        ["serve", "--collection", "c"].map(OsStr::new).into(),
    ];
    for args in cmds {
        for url in [
            OsStr::new("ftp://x"),
            OsStr::new(""),
            OsStr::from_bytes(b"http://\xff:6334"),
        ] {
            let a = relbert()
                .env("RELBERT_QDRANT_URL", url)
                .args(&args)
                .assert()
                .code(2);
            let err = stderr(&a);
            assert!(
                err.contains("$RELBERT_QDRANT_URL (used as --qdrant is not given)")
                    && !err.contains("for --qdrant"),
                "{args:?} {url:?}: {err}"
            );
        }
    }
}

/// Audit (s16): `--out /dev/null` said "exists; pass --force", and with --force "not a
/// regular file".
#[test]
fn a_device_as_an_output_is_refused_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let input = pairs(dir.path());
    let idx = index(dir.path());
    let model = fixture("tiny-bert");
    let cmds: [(Vec<&OsStr>, &str); 3] = [
        (
            [
                OsStr::new("embed"),
                "--pairs".as_ref(),
                input.as_os_str(),
                "--model".as_ref(),
            ]
            .into_iter()
            .chain([model.as_os_str(), "--out".as_ref()])
            .collect(),
            "--out",
        ),
        (
            ["index", "export", "--format", "npy", "--index"]
                .map(OsStr::new)
                .into_iter()
                .chain([idx.as_os_str(), "--out".as_ref()])
                .collect(),
            "--out",
        ),
        (
            ["bench", "analogy", "--json"].map(OsStr::new).into(),
            "--json",
        ),
    ];
    for (args, flag) in cmds {
        for force in [false, true] {
            let mut c = relbert();
            c.args(&args).arg("/dev/null");
            if force {
                c.arg("--force");
            }
            let a = c.assert().code(2);
            let err = stderr(&a);
            assert!(
                err.contains(flag)
                    && err.contains("is a character device, not a regular file")
                    && !err.contains("pass --force"),
                "{args:?} {force}: {err}"
            );
        }
    }
}

/// `--out /dev/stdout` points to `-`, which is what it means, whatever standard output is:
/// a pipe (it was only told to give the path of a file) or a file it was redirected to (it
/// was told "exists; pass --force", and with --force the rename would replace the name).
#[test]
fn an_output_at_dev_stdout_is_pointed_to_the_dash() {
    let dir = tempfile::tempdir().unwrap();
    let input = pairs(dir.path());
    let redirected = dir.path().join("redirected.txt");
    for to_file in [false, true] {
        for name in ["/dev/stdout", "/proc/self/fd/1"] {
            let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("relbert"));
            c.args(["embed", "--force", "--pairs"])
                .arg(&input)
                .args(["--out", name]);
            if to_file {
                c.stdout(std::fs::File::create(&redirected).unwrap());
            }
            let out = c.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.code() == Some(2)
                    && err.contains("names standard output")
                    && err.contains("give `-`"),
                "{name} {to_file}: {err}"
            );
        }
    }
    assert_eq!(std::fs::read(&redirected).unwrap(), b"");
}

/// Audit (s16): a model whose tokenizer.json (or config.json) is a named pipe was reported
/// as a missing file.
#[test]
fn a_model_file_that_is_a_pipe_is_named_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let input = pairs(dir.path());
    for pipe in ["tokenizer.json", "config.json"] {
        let model = dir.path().join(format!("model-{pipe}"));
        std::fs::create_dir(&model).unwrap();
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            if f != pipe {
                std::fs::copy(fixture("tiny-bert").join(f), model.join(f)).unwrap();
            }
        }
        let fifo = std::ffi::CString::new(model.join(pipe).as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let a = relbert()
            .args(["embed", "--pairs"])
            .arg(&input)
            .arg("--model")
            .arg(&model)
            .assert()
            .code(1);
        let err = stderr(&a);
        assert!(
            err.contains(&format!("{pipe}: it is a named pipe, not a regular file"))
                && !err.contains("missing file"),
            "{err}"
        );
    }
}

/// Audit (s16): many value checks ended with status 1, where clap's own refusals (and the
/// README) give 2 for a bad command line; some blamed the model ("loading model DIR: invalid
/// value for --batch-size"), and two flags were ignored without a word. Each is status 2 now,
/// naming the flag, before anything is read (the index and data named here do not exist).
#[test]
fn a_bad_command_line_exits_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let input = pairs(dir.path());
    let input = input.to_str().unwrap();
    let missing = dir.path().join("no-index");
    let missing = missing.to_str().unwrap();
    let model = fixture("tiny-bert");
    let model = model.to_str().unwrap();
    let embed = |more: &[&str]| -> Vec<String> {
        ["embed", "--model", model, "--pairs", input]
            .iter()
            .chain(more)
            .map(|s| s.to_string())
            .collect()
    };
    let export = |more: &[&str]| -> Vec<String> {
        ["index", "export", "--index", missing, "--collection", "c"]
            .iter()
            .chain(more)
            .map(|s| s.to_string())
            .collect()
    };
    let serve = |more: &[&str]| -> Vec<String> {
        ["serve", "--index", missing]
            .iter()
            .chain(more)
            .map(|s| s.to_string())
            .collect()
    };
    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (
            embed(&["--batch-size", "0"]),
            &["--batch-size", "at least 1"],
        ),
        (
            embed(&["--batch-size", "4097"]),
            &["--batch-size", "at most 4096"],
        ),
        (
            embed(&["--device", "gpu"]),
            &["--device", "cpu, cuda or cuda:N"],
        ),
        (
            embed(&["--template", "<subj> of <obj>"]),
            &["--template", "<mask>"],
        ),
        (embed(&["--format", "npy"]), &["--format npy needs --out"]),
        (
            embed(&["--format", "npy", "--out", "-"]),
            &["--format npy needs --out"],
        ),
        (
            [
                "index",
                "build",
                "--model",
                model,
                "--pairs",
                input,
                "--out",
                missing,
                "--batch-size",
                "0",
            ]
            .map(String::from)
            .into(),
            &["--batch-size"],
        ),
        (
            export(&["--qdrant", "http://127.0.0.1:1", "--shards", "0"]),
            &["--shards", "from 1 to 256"],
        ),
        (
            export(&["--qdrant", "http://127.0.0.1:1", "--replication", "17"]),
            &["--replication", "from 1 to 16"],
        ),
        (
            export(&[
                "--qdrant",
                "http://127.0.0.1:1",
                "--shards",
                "200",
                "--replication",
                "2",
            ]),
            &["--shards", "shard replicas"],
        ),
        (export(&["--qdrant", "ftp://x"]), &["--qdrant", "http://"]),
        (
            ["index", "export", "--index", missing, "--collection", "."]
                .map(String::from)
                .into(),
            &["--collection", "names a directory"],
        ),
        (
            ["index", "export", "--index", missing]
                .map(String::from)
                .into(),
            &["say where to export"],
        ),
        (
            serve(&["--queue", "10", "--max-pairs", "20"]),
            &["--queue", "--max-pairs"],
        ),
        (
            serve(&["--timeout-ms", "0"]),
            &["--timeout-ms", "at least 1"],
        ),
        (
            serve(&["--header-timeout-ms", "0"]),
            &["--header-timeout-ms", "at least 1"],
        ),
        (
            serve(&["--max-wait-ms", "6000"]),
            &["--max-wait-ms", "more than half of --timeout-ms"],
        ),
        (serve(&["--device", "tpu"]), &["--device"]),
        // Served the index and ignored --qdrant.
        (
            serve(&["--qdrant", "http://127.0.0.1:6334"]),
            &["--index", "--qdrant", "cannot be used with"],
        ),
        (
            [
                "bench",
                "analogy",
                "--data",
                missing,
                "--offset-weight",
                "0.3",
            ]
            .map(String::from)
            .into(),
            &["--offset-weight", "--method combined"],
        ),
        (
            ["bench", "analogy", "--data", missing, "--dataset", "../sat"]
                .map(String::from)
                .into(),
            &["--dataset", "path separator"],
        ),
        (
            ["bench", "classify", "--data", missing, "--dataset", ","]
                .map(String::from)
                .into(),
            &["--dataset", "no dataset named"],
        ),
        // --ef was ignored beside --exact.
        (
            [
                "query", "--index", missing, "--exact", "--ef", "8", "a", "b",
            ]
            .map(String::from)
            .into(),
            &["--ef", "--exact", "every row"],
        ),
    ];
    for (args, said) in cases {
        let a = relbert().args(&args).assert();
        let err = stderr(&a);
        a.code(2);
        for s in said {
            assert!(err.contains(s), "{args:?}: {s:?} not in {err}");
        }
        assert!(!err.contains("loading model"), "{args:?}: {err}");
    }
}

/// Found by an audit: `serve --addr localhost:19483` was refused with "invalid socket
/// address syntax" and no advice. A host name and port is resolved (`localhost` to a
/// loopback address, served without a token); a name beyond loopback still needs a token;
/// a bad value says what to give, status 2.
#[test]
fn serve_takes_a_host_name_for_addr_and_says_what_to_give() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let idx = index(dir.path());
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("relbert"))
        .args(["serve", "--addr", "localhost:0", "--index"])
        .arg(&idx)
        .env("RELBERT_LOG", "warn")
        .env_remove("RELBERT_TOKEN")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let (mut line, mut said) = (String::new(), String::new());
    let mut bound = None;
    // A server that never says where it listens is killed, ending the read below.
    let guard = common::watchdog(child.id(), 120);
    while err.read_line(&mut line).unwrap() > 0 {
        said.push_str(&line);
        if let Some(a) = line
            .trim()
            .strip_prefix("relbert serve: listening on http://")
        {
            bound = Some(a.parse::<std::net::SocketAddr>().unwrap());
            break;
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(guard);
    let bound = bound.unwrap_or_else(|| panic!("no address: {said}"));
    assert!(bound.ip().is_loopback() && bound.port() != 0, "{bound}");
    // `0` resolves to 0.0.0.0, every address: a token is required there as for 0.0.0.0
    // (a bad command line, status 2).
    let a = relbert()
        .args(["serve", "--addr", "0:0", "--index"])
        .arg(&idx)
        .assert()
        .code(2);
    assert!(
        stderr(&a).contains("0.0.0.0:0 is reachable beyond this machine"),
        "{}",
        stderr(&a)
    );
    for bad in ["localhost", "localhost:port", "::1:8080"] {
        let a = relbert()
            .args(["serve", "--addr", bad, "--index"])
            .arg(&idx)
            .assert()
            .code(2);
        let err = stderr(&a);
        assert!(
            err.contains("--addr") && err.contains("e.g. 127.0.0.1:8080"),
            "{bad}: {err}"
        );
    }
}

/// Found by an audit of `index export`, whose `--out` inside an index directory made the next
/// `index add` refuse the index ("not only an index"): `embed` and `pairs mine` wrote there
/// as readily. Each is refused up front (status 2, naming the flag), nothing written.
#[test]
fn outputs_inside_an_index_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let idx = index(dir.path());
    let corpus = dir.path().join("c.txt");
    std::fs::write(&corpus, "Paris is the capital of France.\n".repeat(10)).unwrap();
    let before = std::fs::read_dir(&idx).unwrap().count();
    let mut embed = relbert();
    embed
        .args(["embed", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(pairs(dir.path()))
        .arg("--out")
        .arg(idx.join("v.jsonl"));
    let mut mine = relbert();
    mine.args(["pairs", "mine", "--corpus"])
        .arg(&corpus)
        .arg("--out")
        .arg(idx.join("p.tsv"));
    for (what, mut c) in [("embed", embed), ("pairs mine", mine)] {
        let a = c.assert().code(2);
        let err = stderr(&a);
        assert!(
            err.contains("invalid value for --out") && err.contains("inside the index directory"),
            "{what}: {err}"
        );
        assert_eq!(std::fs::read_dir(&idx).unwrap().count(), before, "{what}");
    }
}

/// Standard error of `relbert` run with `RELBERT_LOG=wran` (a warning at the start) and
/// `NO_COLOR` as `no_color` says, with standard error a new pseudo-terminal.
#[cfg(target_os = "linux")]
fn stderr_on_a_terminal(no_color: Option<&str>) -> Vec<u8> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let open = |path: &str| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path)
            .unwrap()
    };
    let mut master = open("/dev/ptmx");
    let fd = master.as_raw_fd();
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `fd` is an open pseudo-terminal master, and `name` is writable for its length.
    let slave_name = unsafe {
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        std::ffi::CStr::from_ptr(name.as_ptr())
    };
    let slave = open(slave_name.to_str().unwrap());
    let mut child = {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("relbert"));
        c.env("RELBERT_LOG", "wran")
            .env_remove("NO_COLOR")
            .args(["index", "info", "no-such-index"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(slave);
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        // The parent's copy of the terminal goes with `c`: the master then reads to the end
        // once the child has exited.
        c.spawn().unwrap()
    };
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    // Linux ends a master's reads with EIO once no slave is open.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        said.extend_from_slice(&buf[..n]);
    }
    child.wait().unwrap();
    said
}

/// Audit (s19): `NO_COLOR` was ignored on a terminal: the log's levels were coloured whatever
/// it said. Set and not empty, it turns colour off (<https://no-color.org>); empty, it is
/// unset.
#[cfg(target_os = "linux")]
#[test]
fn no_color_turns_the_logs_colour_off_on_a_terminal() {
    let plain = |said: &[u8]| {
        let text = String::from_utf8_lossy(said).into_owned();
        assert!(text.contains("misspelt level"), "{text}");
        !said.contains(&0x1b)
    };
    assert!(
        !plain(&stderr_on_a_terminal(None)),
        "coloured on a terminal"
    );
    assert!(!plain(&stderr_on_a_terminal(Some(""))), "an empty NO_COLOR");
    assert!(plain(&stderr_on_a_terminal(Some("1"))));
    assert!(plain(&stderr_on_a_terminal(Some("false"))), "any value");
}

/// `--retry-secs` comes from `$RELBERT_QDRANT_RETRY_SECS` when it is not given: a bad value
/// is named as the variable's, with status 2, before anything is sent; and the variable,
/// unlike the flag, is not refused beside a file export, where it has nothing to do (clap's
/// own `env` would have counted it as the flag given).
#[test]
fn the_retry_budget_variable_is_named_and_leaves_file_exports_alone() {
    let dir = tempfile::tempdir().unwrap();
    let idx = index(dir.path());
    let input = pairs(dir.path());
    let url = "http://127.0.0.1:1";
    let export: Vec<&OsStr> = ["index", "export", "--collection", "c", "--qdrant", url]
        .map(OsStr::new)
        .into_iter()
        .chain(["--index".as_ref(), idx.as_os_str()])
        .collect();
    let remove: Vec<&OsStr> = ["index", "remove", "--collection", "c", "--qdrant", url]
        .map(OsStr::new)
        .into_iter()
        .chain(["--pairs".as_ref(), input.as_os_str()])
        .collect();
    for args in [&export, &remove] {
        for value in [
            OsStr::new("x"),
            OsStr::new("86401"),
            OsStr::from_bytes(b"\xff"),
        ] {
            let a = relbert()
                .env("RELBERT_QDRANT_RETRY_SECS", value)
                .args(args)
                .assert()
                .code(2);
            let err = stderr(&a);
            assert!(
                err.contains("of $RELBERT_QDRANT_RETRY_SECS (used as --retry-secs is not given)"),
                "{args:?} {value:?}: {err}"
            );
        }
        let a = relbert()
            .args(args)
            .args(["--retry-secs", "86401"])
            .assert()
            .code(2);
        assert!(stderr(&a).contains("must be at most 86400"), "{args:?}");
    }
    let out = dir.path().join("v.npy");
    let file: Vec<&OsStr> = ["index", "export", "--format", "npy", "--out"]
        .map(OsStr::new)
        .into_iter()
        .chain([out.as_os_str(), "--index".as_ref(), idx.as_os_str()])
        .collect();
    relbert()
        .env("RELBERT_QDRANT_RETRY_SECS", "x")
        .args(&file)
        .assert()
        .success();
    assert!(out.exists());
    let a = relbert()
        .args(&file)
        .args(["--force", "--retry-secs", "5"])
        .assert()
        .code(2);
    assert!(stderr(&a).contains("cannot be used with"), "{}", stderr(&a));
}
