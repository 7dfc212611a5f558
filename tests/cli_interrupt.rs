//! Interruption and concurrency of the writers found by an audit (s26 O): which earlier
//! `pairs mine` work directories a run removes (by the owner's lock, not its pid), how `train`
//! takes a stop signal before anything is saved, what `embed` says of a mined list where an
//! array's pair list goes, and what a second `train` into a model being written is told.
#![cfg(feature = "cli")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::{fixture, host_name, toy_data};

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn");
    c
}

/// A work directory named `name` in `dir` whose owner record is `record`, with a file in it.
fn work_dir(dir: &Path, name: &str, record: &str) -> PathBuf {
    let work = dir.join(name);
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("owner"), record).unwrap();
    std::fs::write(work.join("run-0-1.bin"), "spilled counts").unwrap();
    work
}

/// Audit s26 O: the earlier work directories were judged by the pid and host in their owner
/// record, so a live run of another PID namespace (its pid free here) lost its directory and
/// a killed run not yet reaped (its pid still taken, by a zombie) kept its one. A run now
/// holds its owner file's lock for its whole life, and a directory is removed only when that
/// lock is free; a record without the lock's mark (an older relbert) keeps the pid rule.
#[test]
fn a_work_directory_is_removed_by_its_owners_lock_not_its_pid() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_name();
    // A pid that is free: a process that has exited and been reaped.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let free = gone.id();
    gone.wait().unwrap();
    // A live run elsewhere (its pid free here), holding its lock: this test process holds it.
    let live = work_dir(
        dir.path(),
        ".relbert-mine-live",
        &format!("{free} {host} locked\n"),
    );
    let held = std::fs::File::open(live.join("owner")).unwrap();
    held.lock().unwrap();
    // A killed run whose pid is still taken (by a zombie, or reused): its lock is free.
    let killed = work_dir(
        dir.path(),
        ".relbert-mine-killed",
        &format!("{} {host} locked\n", std::process::id()),
    );
    // An older relbert's directory, without the lock: judged by its pid as before.
    let older_dead = work_dir(
        dir.path(),
        ".relbert-mine-old1",
        &format!("{free} {host}\n"),
    );
    let older_live = work_dir(
        dir.path(),
        ".relbert-mine-old2",
        &format!("{} {host}\n", std::process::id()),
    );
    // Another host's (a shared disk): left, whatever its lock.
    let elsewhere = work_dir(
        dir.path(),
        ".relbert-mine-far",
        &format!("{free} not-{host} locked\n"),
    );
    relbert()
        .args(["pairs", "mine", "--min-count", "1", "--min-pair-count", "1"])
        .arg("--corpus")
        .arg(fixture("corpus/capitals.txt"))
        .arg("--out")
        .arg(dir.path().join("p.tsv"))
        .assert()
        .success();
    assert!(
        live.join("run-0-1.bin").exists(),
        "a live run's work directory was removed"
    );
    assert!(!killed.exists(), "a killed run's work directory was kept");
    assert!(!older_dead.exists());
    assert!(older_live.exists());
    assert!(elsewhere.exists());
    drop(held);
    // The run's own directory is gone, and no other was made.
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".relbert-mine"))
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
}

/// A `relbert train` on toy data in a temporary directory whose SemEval validation file is a
/// named pipe: the run blocks reading it, while loading, until the test writes it.
struct BlockedTrain {
    dir: tempfile::TempDir,
    child: std::process::Child,
    stderr: BufReader<std::fs::File>,
    /// The test's own copy of the write end of the run's standard error, to fill it
    /// ([`BlockedTrain::block_stderr`]); dropped before the rest is read.
    stderr_in: std::fs::File,
    seen: String,
    fifo: PathBuf,
    validation: String,
}

/// A pipe: its read end and its write end, both closed on exec.
fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) filling an array of two descriptors, each then owned by one File.
    unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

impl BlockedTrain {
    fn start() -> BlockedTrain {
        let dir = tempfile::tempdir().unwrap();
        toy_data(dir.path());
        let fifo = dir
            .path()
            .join("semeval2012_relational_similarity/validation.jsonl");
        let validation = std::fs::read_to_string(&fifo).unwrap();
        std::fs::remove_file(&fifo).unwrap();
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (err_out, err_in) = pipe();
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("relbert"))
            .env("RELBERT_LOG", "warn")
            .args(["train", "--base"])
            .arg(fixture("tiny-bert"))
            .arg("--data")
            .arg(dir.path())
            .arg("--out")
            .arg(dir.path().join("model"))
            .args(["--epochs", "2", "--lr", "1e-3", "--batch-size", "4"])
            .stderr(err_in.try_clone().unwrap())
            .spawn()
            .unwrap();
        let mut t = BlockedTrain {
            dir,
            child,
            stderr: BufReader::new(err_out),
            stderr_in: err_in,
            seen: String::new(),
            fifo,
            validation,
        };
        // Said once the stop handler is in place, before the data is read.
        t.wait_for("loading the base model");
        t
    }

    /// Reads standard error up to a line starting with `start` (after a newline or not).
    fn wait_for(&mut self, start: &str) {
        loop {
            let mut line = String::new();
            if self.stderr.read_line(&mut line).unwrap() == 0 {
                panic!("train ended before saying {start:?}: {}", self.seen);
            }
            self.seen.push_str(&line);
            if line.trim_start().starts_with(start) {
                return;
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the child's pid, not yet waited for.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// Writes the validation file into the pipe (the run reads it now).
    fn feed(&self) {
        let mut pipe = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.fifo)
            .unwrap();
        pipe.write_all(self.validation.as_bytes()).unwrap();
    }

    /// Fills the pipe of the run's standard error, which the test then no longer reads (as
    /// `relbert … 2>&1 | sleep 100` leaves it): the run's next write to it blocks. With NUL
    /// bytes, left out of what [`BlockedTrain::finish`] returns.
    fn block_stderr(&self) {
        use std::os::fd::AsRawFd;
        let fd = self.stderr_in.as_raw_fd();
        // SAFETY: fcntl(2) and write(2) on a descriptor this test owns, with a buffer of this
        // frame. O_NONBLOCK is a flag of the pipe's open file, which the run's standard
        // error shares: set only while the pipe is filled (the run, blocked reading its
        // validation file, writes nothing meanwhile), so that the filling stops when full.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            assert!(flags >= 0);
            assert_eq!(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK), 0);
            let page = [0u8; 4096];
            // Whole pages, then single bytes into the last page's room.
            for size in [page.len(), 1] {
                while libc::write(fd, page.as_ptr().cast(), size) > 0 {}
                assert_eq!(
                    std::io::Error::last_os_error().raw_os_error(),
                    Some(libc::EAGAIN)
                );
            }
            assert_eq!(libc::fcntl(fd, libc::F_SETFL, flags), 0);
        }
    }

    /// The rest of standard error and the exit code.
    fn finish(mut self) -> (Option<i32>, String, tempfile::TempDir) {
        // Else the pipe has a writer left, and reading it never ends.
        drop(self.stderr_in);
        self.stderr.read_to_string(&mut self.seen).unwrap();
        self.seen.retain(|c| c != '\0');
        let status = self.child.wait().unwrap();
        (status.code(), self.seen, self.dir)
    }
}

/// What a stopped train left beside its output: no model, no lock file, no temporary.
fn assert_nothing_left(dir: &Path, err: &str) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("model"))
        .collect();
    assert!(names.is_empty(), "{names:?}\n{err}");
}

/// Audit s26 O: a stop signal while `train` loads was heeded only at the first step, after
/// the base model's whole validation (minutes with a large base). It is now heeded before
/// the validation starts: no validation score, nothing saved, the signal's status.
#[cfg(target_os = "linux")]
#[test]
fn a_stop_while_loading_is_heeded_before_the_base_models_validation() {
    let mut t = BlockedTrain::start();
    t.signal(libc::SIGINT);
    // The stop is asked for (the message follows the flag) before the data is given.
    t.wait_for("interrupt: stopping after this step");
    t.feed();
    let (code, err, dir) = t.finish();
    assert_eq!(code, Some(130), "{err}");
    assert!(!err.contains("validation score"), "validated anyway: {err}");
    assert!(err.contains("stopped by SIGINT"), "{err}");
    assert!(err.contains("nothing saved"), "{err}");
    assert_nothing_left(dir.path(), &err);
}

/// Audit s26 O: while nothing is saved, a second stop signal ends the run at once (a second
/// Ctrl-C changed nothing: the run went on loading and validating), with the first signal's
/// status, removing the output's lock file, which the run holds while it loads.
#[cfg(target_os = "linux")]
#[test]
fn a_second_stop_before_anything_is_saved_ends_the_run_at_once() {
    let mut t = BlockedTrain::start();
    t.signal(libc::SIGINT);
    t.wait_for("interrupt: stopping after this step");
    t.signal(libc::SIGTERM);
    // Not a timing check: the bound only keeps a run that ignores the second signal (the
    // old behaviour, blocked on the pipe for good) from hanging the test; it is then given
    // its data, validates, and fails the assertions below.
    let exited = common::wait_within(&mut t.child, std::time::Duration::from_secs(60)).is_some();
    if !exited {
        t.feed();
    }
    let (code, err, dir) = t.finish();
    assert!(exited, "the second signal did not end the run: {err}");
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("second signal"), "{err}");
    assert!(!err.contains("validation score"), "{err}");
    assert_nothing_left(dir.path(), &err);
}

/// Audit s27 H1: with standard error a pipe nobody reads (`relbert train … 2>&1 | sleep
/// 100`), the first signal's message ("stopping after this step") blocked the thread that
/// receives the signals, so a second Ctrl-C was never seen and the run went on. The message
/// is now written on a thread of its own, and the second signal ends the run, removing its
/// lock file, though neither message can be written.
#[cfg(target_os = "linux")]
#[test]
fn a_second_stop_ends_the_run_though_standard_error_is_blocked() {
    let mut t = BlockedTrain::start();
    t.block_stderr();
    t.signal(libc::SIGINT);
    t.signal(libc::SIGTERM);
    // Not a timing check: the bound only keeps a run that never sees the second signal (the
    // old behaviour) from hanging the test; it is then killed, and fails the assertion.
    let exited = common::wait_within(&mut t.child, std::time::Duration::from_secs(60)).is_some();
    if !exited {
        t.child.kill().unwrap();
    }
    let (code, err, dir) = t.finish();
    assert!(exited, "the second signal did not end the run: {err}");
    // The first signal's status; which of the two is taken first is the process's to say
    // (two threads may take them), and with standard error blocked the test cannot wait
    // for the first to be taken.
    assert!(matches!(code, Some(130 | 143)), "{code:?}: {err}");
    assert!(!err.contains("validation score"), "{err}");
    assert_nothing_left(dir.path(), &err);
}

/// Review of the signal threads (2): two signals received together (a quick double Ctrl-C)
/// lost both messages: the first reaction stopped waiting for its message at once, the
/// second signal being already there, and the second reaction, with a message given up on
/// still unwritten, did not wait for its own, so the exit came before either was written.
/// The first reaction now waits for its message a while after a later signal. The run is
/// stopped (SIGSTOP) while it loads, sent both signals, and let go.
#[cfg(target_os = "linux")]
#[test]
fn two_signals_at_once_still_say_both_messages() {
    let mut t = BlockedTrain::start();
    let pid = t.child.id() as libc::pid_t;
    t.signal(libc::SIGSTOP);
    // Stopped before the signals are sent: a thread not yet stopped could take one at once.
    let mut status = 0;
    // SAFETY: waitpid(2) on the child's pid, for a stop only (the child is not reaped).
    let stopped = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
    assert!(
        stopped == pid && libc::WIFSTOPPED(status),
        "{stopped} {status}"
    );
    let handled = common::catches_stop_signals(t.child.id());
    t.signal(libc::SIGINT);
    t.signal(libc::SIGTERM);
    // SAFETY: kill(2) on the child's pid, not yet waited for.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // Not a timing check: the bound only keeps a run that ignores the second signal from
    // hanging the test; it is then given its data, and fails the assertions below.
    let exited = common::wait_within(&mut t.child, std::time::Duration::from_secs(60)).is_some();
    if !exited {
        t.feed();
    }
    let (code, err, dir) = t.finish();
    assert!(handled, "no handler for the stop signals");
    assert!(exited, "the second signal did not end the run: {err}");
    // Whichever of the two the process took first.
    assert!(matches!(code, Some(130 | 143)), "{code:?}: {err}");
    assert!(err.contains("interrupt: stopping after this step"), "{err}");
    assert!(
        err.contains("second signal before anything was saved"),
        "{err}"
    );
    assert_nothing_left(dir.path(), &err);
}

/// Audit s26 O: a second `train --out m` while another run writes `m` said "m exists; pass
/// --force" (its check of `m` came before the lock): it now names the run writing it.
#[test]
fn a_train_into_a_model_being_written_names_the_run_writing_it() {
    let d = tempfile::tempdir().unwrap();
    toy_data(d.path());
    let out = d.path().join("model");
    let train = || {
        let mut c = relbert();
        c.args(["train", "--base"])
            .arg(fixture("tiny-bert"))
            .arg("--data")
            .arg(d.path())
            .arg("--out")
            .arg(&out)
            .args(["--epochs", "1", "--lr", "1e-3", "--batch-size", "4"]);
        c
    };
    train().assert().success();
    // Another writer of `m` (this test holds its lock, as a run saving its next epoch does).
    let held = relbert_index::OutputLock::acquire(&out).unwrap();
    let a = train().assert().failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("is being written by another process"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(!err.contains("--force"), "{err}");
    drop(held);
}

/// Audit s26 O: `embed --out s.npy --force` beside a list `pairs mine` wrote at
/// `s.pairs.tsv` said it "does not look like a pair list written by relbert": it is named for
/// what it is, with what to do, and left as it is.
#[test]
fn an_array_whose_pair_list_would_replace_a_mined_list_says_so() {
    let d = tempfile::tempdir().unwrap();
    let mined = d.path().join("s.pairs.tsv");
    let text = "# relbert pairs mine: 1 pairs from 1 files, window 5, score pmi, min-count 1, \
                min-pair-count 1\nparis\tfrance\n";
    std::fs::write(&mined, text).unwrap();
    let input = d.path().join("in.tsv");
    std::fs::write(&input, "paris\tfrance\n").unwrap();
    let a = relbert()
        .args(["embed", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(&input)
        .arg("--out")
        .arg(d.path().join("s.npy"))
        .arg("--force")
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("mined by `relbert pairs mine`"), "{err}");
    assert!(err.contains("give --out another name"), "{err}");
    assert!(err.contains("s-vectors.npy"), "{err}");
    assert_eq!(std::fs::read_to_string(&mined).unwrap(), text);
    let mut names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["in.tsv", "s.pairs.tsv"]);
}
