//! The signals that stop a run (SIGINT, SIGTERM, SIGHUP), for the commands that must do more
//! on one than die.
//!
//! * [`Interrupts`], for the commands that write outputs under temporary names and rename them
//!   into place (`embed`, `index export --format` and `pairs mine`). `std::process::exit`
//!   runs no destructors, and a stopped run would otherwise leave its partial temporary
//!   files, its outputs' lock files and (`pairs mine`) a work directory of spilled runs until
//!   a later run to the same outputs cleared them. One [`Interrupts`] per run says what to
//!   remove; on a signal it is removed and the run exits with 128 plus the signal's number
//!   (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP), except once the run
//!   is renaming its outputs into place, which a signal lets finish (a run leaves all its
//!   outputs or none).
//! * [`StopRequest`], for `relbert train`, which stops gracefully instead: the step in flight
//!   finishes, the best epoch so far stays saved, and the command then exits with 128 plus
//!   the number of the signal that came first (130 for SIGINT, 143 for SIGTERM, 129 for
//!   SIGHUP), as a shell reports a process the signal killed.
//! * [`Resumable`], for `index build`, `index rebuild` and `index add`, whose partial
//!   directory is checkpointed and fit to resume at any moment: it says what that directory
//!   keeps and that the same command resumes from it, removes the output's lock file and
//!   exits with 128 plus the signal's number, except while the finished index is written
//!   and put in place, which a signal lets finish.
//! * [`CollectionLoad`], for loads into a Qdrant collection (`index export` and `index build`
//!   with `--collection`): it says that the collection keeps the points written so far and
//!   that the same command resumes after the collection's checkpoint, and exits with 128 plus
//!   the signal's number; and, with a message of its own, for `index remove --collection`,
//!   whose deletes by id a rerun finishes.
//! * [`LastLine`], for `relbert query --json`, whose stream, stopped by a signal, ends with
//!   a line saying so (written within a second or left out), and which then exits with 128
//!   plus the signal's number.
//! * [`InterruptNote`], for the first `relbert query` while it builds the default index: it
//!   says that the next query resumes the build, removes the build's lock file when it names
//!   this process, and then dies by the signal as before.
//!   It is a plain `signal(2)` handler, not [`watch`], because it must be taken back once the
//!   build is done (a query stream after it keeps the signals' default action), and tokio's
//!   handlers stay for the life of the process.
//!
//! The signals are received through tokio's Unix signal streams (tokio is a dependency
//! already, with its `signal` feature, for `relbert serve`), on a thread of their own, and
//! the reaction runs on another, so that a reaction held up (writing to a standard error
//! nobody reads) still learns of a second signal. They tell the signals apart, which the
//! `ctrlc` crate these commands used before cannot (so `train` had a hand-written
//! `signal(2)` handler beside it); and the reaction runs on an ordinary thread, not in a
//! signal handler, so it may take locks, allocate and remove files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// A signal that asks a run to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (`kill`, `timeout`, service managers).
    Terminate,
    /// SIGHUP (the terminal closed).
    Hangup,
}

impl StopSignal {
    /// The signal's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Hangup => "SIGHUP",
        }
    }

    /// The status a shell reports for a process this signal killed: 128 plus its number.
    pub fn exit_status(self) -> i32 {
        128 + match self {
            StopSignal::Interrupt => libc::SIGINT,
            StopSignal::Terminate => libc::SIGTERM,
            StopSignal::Hangup => libc::SIGHUP,
        }
    }
}

/// Whether `which` is ignored (its disposition is `SIG_IGN`), as `nohup` leaves SIGHUP and
/// a shell leaves SIGINT for a background job.
fn ignored(which: StopSignal) -> bool {
    let sig = which.exit_status() - 128;
    // SAFETY: sigaction(2) with a null new action only reads the current disposition into
    // a zeroed struct this function owns.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Calls `on_signal` for each SIGINT, SIGTERM and SIGHUP that arrives from now on, in turn,
/// on a thread of its own, for the rest of the process (as any handler of these signals: the
/// default action, ending the process, does not come back).
///
/// The signals are received on another thread than the one `on_signal` runs on, which counts
/// them as they come: a reaction held up writing a message ([`say`]) learns of a later signal
/// and stops waiting (within [`MESSAGE_WAIT`]). Received on the reacting thread, a second
/// Ctrl-C waited behind a first reaction blocked on a standard error nobody read (`2>&1 |
/// sleep 100`), and changed nothing (found by an audit): the run neither stopped nor removed
/// its files.
///
/// Returns once the signals are registered, so that a signal sent after it returns is seen,
/// with the count of the signals received and reacted to, whose [`Received::settle`] a run
/// calls before it disarms its reaction. The result says what could not be set up; the
/// signals it names end the process as before (a signal that was registered is still
/// watched).
///
/// Called once per process: each command installs one handler ([`Interrupts`],
/// [`StopRequest`], [`Resumable`], [`CollectionLoad`] or [`LastLine`]; the default index's
/// build under `relbert query` takes [`InterruptNote`] instead), so its two threads are the
/// process's only ones for signals. A second watch would receive every signal as well, and
/// the first, disarmed, would end the process before the second's reaction had run: a
/// command that came to need two would share one receiver instead.
fn watch(on_signal: impl Fn(StopSignal) + Send + 'static) -> (Arc<Received>, Result<(), String>) {
    let received = Arc::new(Received::default());
    let watched = watch_counting(received.clone(), on_signal);
    (received, watched)
}

/// [`watch`], counting in `received`.
fn watch_counting(
    received: Arc<Received>,
    on_signal: impl Fn(StopSignal) + Send + 'static,
) -> Result<(), String> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    let (queue, queued) = std::sync::mpsc::channel::<(StopSignal, u64)>();
    let counted = received.clone();
    std::thread::Builder::new()
        .name("relbert-stop".into())
        .spawn(move || {
            // Ends when the receiving thread does (its end of the queue dropped).
            for (which, number) in queued {
                react(&counted, which, number, &on_signal, |which| {
                    std::process::exit(which.exit_status())
                });
            }
        })
        .map_err(|e| format!("cannot start the signal watcher: {e}"))?;
    let (ready, registered) = std::sync::mpsc::channel::<Result<(), String>>();
    let spawned = std::thread::Builder::new()
        .name("relbert-sigrecv".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(format!("cannot start the signal watcher: {e}")));
                    return;
                }
            };
            let mut failed = Vec::new();
            let mut streams: Vec<(Signal, StopSignal)> = Vec::new();
            {
                // Signal streams are created inside a runtime with its I/O driver.
                let _in_runtime = runtime.enter();
                for (kind, which) in [
                    (SignalKind::interrupt(), StopSignal::Interrupt),
                    (SignalKind::terminate(), StopSignal::Terminate),
                    (SignalKind::hangup(), StopSignal::Hangup),
                ] {
                    // A signal the process was started ignoring (`nohup`, a background job
                    // of a script) stays ignored: tokio's handler would replace that.
                    if ignored(which) {
                        continue;
                    }
                    match signal(kind) {
                        Ok(s) => streams.push((s, which)),
                        Err(e) => failed.push(format!("{}: {e}", which.name())),
                    }
                }
            }
            let _ = ready.send(if failed.is_empty() {
                Ok(())
            } else {
                Err(format!("cannot handle {}", failed.join(", ")))
            });
            if streams.is_empty() {
                return;
            }
            runtime.block_on(async move {
                loop {
                    // The first stream with a signal pending; a stream ends only with the
                    // runtime, which outlives this loop.
                    let next = std::future::poll_fn(|cx| {
                        for (stream, which) in streams.iter_mut() {
                            match stream.poll_recv(cx) {
                                std::task::Poll::Ready(Some(())) => {
                                    return std::task::Poll::Ready(Some(*which))
                                }
                                std::task::Poll::Ready(None) => {
                                    return std::task::Poll::Ready(None)
                                }
                                std::task::Poll::Pending => {}
                            }
                        }
                        std::task::Poll::Pending
                    });
                    match next.await {
                        Some(which) => {
                            let number = received.arrived();
                            if queue.send((which, number)).is_err() {
                                return;
                            }
                        }
                        None => return,
                    }
                }
            });
        });
    if let Err(e) = spawned {
        return Err(format!("cannot start the signal watcher: {e}"));
    }
    registered
        .recv()
        .unwrap_or_else(|_| Err("the signal watcher stopped while starting".into()))
}

/// Reacts to signal `number` of `received` (`which`) with `on_signal`, on the reacting thread
/// of a [`watch`], and counts the reaction as returned however it ends (a guard), so that
/// [`Received::settle`] never waits for a reaction that will not return.
///
/// A reaction that panics calls `on_panic`, which ends the process with the signal's status
/// (the panic hook has said why on standard error), as the signal's default action would
/// have, without the reaction's clean-up: the reaction did not finish, and the run, going
/// on, would be deaf to signals (a panic ended the reacting thread, and with it the
/// receiving one, while tokio's handlers stay) and wait for ever in `settle` once it
/// returned (found by a review). Called before the count, which would let the run return
/// and its own exit race this one.
fn react(
    received: &Arc<Received>,
    which: StopSignal,
    number: u64,
    on_signal: &dyn Fn(StopSignal),
    on_panic: impl FnOnce(StopSignal),
) {
    REACTING.with(|r| *r.borrow_mut() = Some((received.clone(), number)));
    let _counted = CountsReaction(received);
    // Unwind safety is moot: after a panic the process ends (the state the reaction left is
    // never used), and the reactions' locks are taken ignoring poison.
    let run = std::panic::AssertUnwindSafe(|| on_signal(which));
    if std::panic::catch_unwind(run).is_err() {
        on_panic(which);
    }
}

/// Counts a reaction of [`react`] as returned when dropped, however the reaction ended.
struct CountsReaction<'a>(&'a Received);

impl Drop for CountsReaction<'_> {
    fn drop(&mut self) {
        self.0.reacted();
    }
}

/// The signals one [`watch`] has received, counted as they come, and the reactions to them
/// that have returned: for [`say`] to bound its wait on its message when a later signal
/// arrives, and for a run to let the reaction to a signal already received run before it
/// disarms it ([`Received::settle`]).
#[derive(Default)]
struct Received {
    counts: Mutex<Counts>,
    /// Notified at each signal, at each reaction's return, and when a message [`say`] waits
    /// on is written.
    changed: Condvar,
}

/// What [`Received`] counts.
#[derive(Default)]
struct Counts {
    /// Signals received.
    received: u64,
    /// Reactions that have returned (a reaction that exits never does).
    reacted: u64,
}

impl Received {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a signal; returns its number (the first is 1).
    fn arrived(&self) -> u64 {
        let mut counts = self.counts();
        counts.received += 1;
        self.changed.notify_all();
        counts.received
    }

    /// Counts a reaction that has returned.
    fn reacted(&self) {
        self.counts().reacted += 1;
        self.changed.notify_all();
    }

    /// Waits for the reactions to the signals received so far: those that end the process
    /// do so, and the others (a run putting its outputs in place) return. Called by a run
    /// before it disarms its reaction, so that a signal received first is reacted to first,
    /// as when the signals were received on the reacting thread itself. Without it, the
    /// reaction's own thread widened the moment in which a run returning on its own wins:
    /// `pairs mine --corpus -` sent SIGHUP and then the end of its input ended more often
    /// with its own status 1 ("no input") than with the signal's.
    fn settle(&self) {
        let mut counts = self.counts();
        let target = counts.received;
        while counts.reacted < target {
            counts = self.changed.wait(counts).unwrap_or_else(|p| p.into_inner());
        }
    }
}

thread_local! {
    /// On a [`watch`] reaction's thread: its watcher's count, and the number of the signal
    /// being reacted to.
    static REACTING: std::cell::RefCell<Option<(Arc<Received>, u64)>> =
        const { std::cell::RefCell::new(None) };
}

/// Messages [`say`] stopped waiting on before they were written, and that are still not
/// written: standard error is blocked (a full pipe), and a later message would go out only
/// after them.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// The states of one message of [`say`].
const PENDING: u8 = 0;
const WRITTEN: u8 = 1;
const GIVEN_UP: u8 = 2;

/// Writes `message` to standard error, ignoring a failure: the reaction to a signal goes on
/// (and exits as it should) when standard error is gone, or a pipe whose reader has gone
/// (written through [`relbert::output::Stderr`], which never raises SIGPIPE).
///
/// The message is written on a thread of its own, and the reaction goes on once it is written
/// (a slow reader of standard error still gets it, and meanwhile the run keeps its lock), or,
/// once a later signal has arrived, at the latest [`MESSAGE_WAIT`] after it started waiting
/// ([`wait_for_message`]), or without waiting at all while an earlier message it gave up on
/// is still unwritten (standard error is blocked: a pipe nobody reads). Written on the
/// reacting thread, with signals received there, it held the reaction for as long as the
/// pipe stayed full, and a second Ctrl-C was never seen (found by an audit). A message not
/// written by the exit is lost.
fn say(message: &str) {
    let (received, number) = REACTING
        .with(|r| r.borrow().clone())
        .unwrap_or_else(|| (Arc::new(Received::default()), 0));
    let blocked = ABANDONED.load(Ordering::SeqCst) > 0;
    let state = Arc::new(AtomicU8::new(PENDING));
    let (written, notify, text) = (state.clone(), received.clone(), message.to_string());
    // Named as the thread that reacted to the signals was (`tests/cli_index_signals.rs`
    // looks for it blocked in write(2)); the receiving thread is named otherwise.
    let spawned = std::thread::Builder::new()
        .name("relbert-signals".into())
        .spawn(move || {
            relbert::output::eprint_line(&text);
            if written.swap(WRITTEN, Ordering::SeqCst) == GIVEN_UP {
                ABANDONED.fetch_sub(1, Ordering::SeqCst);
            }
            // Under the lock the waiter checks the state under, so the wake-up is not lost.
            drop(notify.counts());
            notify.changed.notify_all();
        });
    if spawned.is_err() {
        // No thread to write it on: not written, as a message that could not be.
        return;
    }
    if !blocked {
        wait_for_message(&received, number, &state, MESSAGE_WAIT);
    }
    // Given up on unwritten: counted until it is written, and counted before it is marked,
    // so that the writer's uncount never comes first.
    if state.load(Ordering::SeqCst) == PENDING {
        ABANDONED.fetch_add(1, Ordering::SeqCst);
        if state
            .compare_exchange(PENDING, GIVEN_UP, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // Written meanwhile.
            ABANDONED.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// How long [`say`] still waits for its message once a signal after the one being reacted to
/// has arrived, counted from the start of its wait. The later signal is most often a second
/// Ctrl-C pressed right after the first, both received before the first reaction's message
/// had been written: without a wait, the reaction went on to the exit at once, and the
/// message, written just after or not at all, was lost (found by a review). A second is
/// plenty for a standard error that is being read, and bounds the wait on one that is
/// blocked (a pipe nobody reads, a terminal stopped with Ctrl-S), which the later signal is
/// there to cut short.
const MESSAGE_WAIT: Duration = Duration::from_secs(1);

/// Waits until the message `state` of [`say`] is no longer pending, for the reaction to
/// signal `number` of `received` (0: not a reaction, which waits for the message alone):
/// without a bound while no later signal has arrived, and once one has, at most until
/// `bound` has passed since the wait began.
fn wait_for_message(received: &Received, number: u64, state: &AtomicU8, bound: Duration) {
    let started = std::time::Instant::now();
    let mut counts = received.counts();
    while state.load(Ordering::SeqCst) == PENDING {
        if number == 0 || counts.received <= number {
            counts = received
                .changed
                .wait(counts)
                .unwrap_or_else(|p| p.into_inner());
            continue;
        }
        let left = bound.saturating_sub(started.elapsed());
        if left.is_zero() {
            return;
        }
        counts = match received.changed.wait_timeout(counts, left) {
            Ok((counts, _)) => counts,
            Err(p) => p.into_inner().0,
        };
    }
}

/// What an interrupt removes. Filled by the run as it claims things: before, the same
/// names could be another run's.
#[derive(Default)]
pub(super) struct Cleanup {
    /// Temporary and lock files; only regular files are removed (a link or directory at a
    /// temporary name is not relbert's, and [`relbert::output::AtomicFile`] refuses to touch
    /// it too).
    pub files: Vec<PathBuf>,
    /// A work directory, removed whole.
    pub work_dir: Option<PathBuf>,
    /// Output locks held through this state: released (their files removed) on an
    /// interrupt, and when the run returns.
    pub locks: Vec<relbert_index::OutputLock>,
    /// The lock files of outputs whose lock the run's library call takes and releases
    /// itself (`average`): on an interrupt each is removed, last, only while this process
    /// holds it, so they may be named before the lock is taken and stay named after it is
    /// released. Registered by path once the lock was taken, a lock file was left by a
    /// signal in between, removed first (another run could then take the output while this
    /// one still wrote its temporary directory), and removed after the release though it
    /// could be another run's by then (found by an audit).
    pub lock_files: Vec<PathBuf>,
    /// Output has started going to standard output, which an interrupt leaves incomplete.
    pub stdout_started: bool,
    /// The outputs are being renamed into place: a signal lets that finish.
    committing: bool,
    /// The run has returned ([`Interrupts`] dropped): a signal now has nothing to remove or
    /// to report, and ends the process with the same status as a signal during the run.
    disarmed: bool,
}

/// The interrupt handling of one run. Dropped (the run returning; declared after any locks
/// the run holds itself, so that it goes first), it disarms the handler and releases the
/// locks it holds: from then on the same names may be another run's files.
///
/// While it lives, SIGPIPE is ignored: a reader of standard output that has gone (`| head`)
/// turns the next write into an error of kind [`std::io::ErrorKind::BrokenPipe`], which
/// returns through the run's clean-up (its temporary files, work directory and locks), and
/// `main` ends such a run quietly with status 141, as SIGPIPE would have. Killed by SIGPIPE
/// (its default action, which `main` sets), `pairs mine --corpus - --out - | head` left its
/// work directory, a whole copy of standard input, behind (found by an audit).
pub(super) struct Interrupts {
    state: Arc<Mutex<Cleanup>>,
    /// The signals received and reacted to: a reaction to a signal received before the run
    /// returned runs before the handler is disarmed.
    signals: Arc<Received>,
    /// SIGPIPE's disposition before [`Interrupts::install`], put back when dropped.
    sigpipe: Option<libc::sighandler_t>,
}

impl Interrupts {
    /// Installs the handler, removing `files` on an interrupt (more can be added with
    /// [`Interrupts::with`]). A signal exits with 128 plus its number (130 for SIGINT, 143
    /// for SIGTERM, 129 for SIGHUP), as `train` does and as a shell reports a process the
    /// signal killed, so that a supervisor reading the status can tell a `kill` from a Ctrl-C.
    pub fn install(files: Vec<PathBuf>) -> Interrupts {
        let state = Arc::new(Mutex::new(Cleanup {
            files,
            ..Cleanup::default()
        }));
        let shared = state.clone();
        let (signals, installed) = watch(move |which| {
            let mut st = shared.lock().unwrap_or_else(|p| p.into_inner());
            if st.disarmed {
                std::process::exit(which.exit_status());
            }
            if st.committing {
                say("interrupted while the output is renamed into place: finishing that first");
                return;
            }
            // Said first: a write to standard error can block (a full pipe; a second signal
            // stops `say` waiting for it), and meanwhile the lock must stay, since the run's
            // other threads go on writing.
            if st.stdout_started {
                say(
                    "interrupted: no output file was written; what went to standard output \
                     is incomplete",
                );
            } else {
                say("interrupted: nothing was written");
            }
            for f in &st.files {
                if std::fs::symlink_metadata(f).is_ok_and(|m| m.is_file()) {
                    let _ = std::fs::remove_file(f);
                }
            }
            if let Some(dir) = st.work_dir.take() {
                // `average`'s work directory is its model's temporary directory, named here
                // before the write makes it: from now on the write makes none, so the
                // directory removed below is not made again before the exit (found by a
                // review: made just after the removal, it was left, partly written).
                relbert::output::stop_model_dirs();
                // The run's other threads may still be making files in it, and a file made
                // after the listing fails the last rmdir (ENOTEMPTY; a review found the
                // directory left): a few more passes catch up with them.
                for _ in 0..8 {
                    if std::fs::remove_dir_all(&dir).is_ok() || !dir.exists() {
                        break;
                    }
                }
            }
            // Last, right before the exit: once its file is gone another writer can take the
            // output (found by a review: removed first, a second build got in while this
            // one, still writing, was blocked on standard error). Dropping a lock removes
            // its file (this process holds it, so it is relbert's).
            st.locks.clear();
            if !st.lock_files.is_empty() {
                // No thread of this process takes or releases a writer lock from here on,
                // so a lock file judged this process's stays so until it is removed. After
                // the release above, which passes the same gate.
                relbert_index::lock::stop_writers();
                for lock in &st.lock_files {
                    if names_this_process(lock) {
                        let _ = std::fs::remove_file(lock);
                    }
                }
            }
            std::process::exit(which.exit_status());
        });
        if let Err(e) = installed {
            tracing::warn!(
                "cannot handle interrupts ({e}): a stopped run leaves its temporary files"
            );
        }
        // SAFETY: signal(2) with SIG_IGN, a valid disposition; it returns the previous one.
        let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        Interrupts {
            state,
            signals,
            sigpipe: (previous != libc::SIG_ERR).then_some(previous),
        }
    }

    /// The state, under the lock the handler takes: what is claimed and registered while it
    /// is held is seen by an interrupt either entirely or not at all.
    pub fn with(&self) -> MutexGuard<'_, Cleanup> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The outputs are being renamed into place: a signal from now on lets that finish. The
    /// work directory is no longer the run's to remove (`average`'s is the finished model
    /// being put in place), in the same hold of the state: set apart, a signal in between
    /// found neither, said "nothing was written" and left the finished model's temporary
    /// directory behind (found by a review).
    pub fn committing(&self) {
        let mut st = self.with();
        st.work_dir = None;
        st.committing = true;
    }

    /// Takes the outputs' writer locks (`take`) and then registers `files`, the temporary
    /// files those locks make this run's, all while holding the state the handler takes: a
    /// signal finds either all of them registered (the files removed, the locks released and
    /// their files removed) or no lock taken. The handler is installed before this is called,
    /// so no signal falls between a lock and its registration (found by an audit: installed
    /// after the lock was taken, a signal then left the lock file).
    pub fn lock_outputs<E>(
        &self,
        take: impl FnOnce() -> Result<Vec<relbert_index::OutputLock>, E>,
        files: Vec<PathBuf>,
    ) -> Result<(), E> {
        let mut st = self.with();
        let locks = take()?;
        st.locks.extend(locks);
        st.files.extend(files);
        Ok(())
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.signals.settle();
        let mut st = self.with();
        st.files.clear();
        st.work_dir = None;
        st.locks.clear();
        st.lock_files.clear();
        st.disarmed = true;
        drop(st);
        if let Some(previous) = self.sigpipe {
            // SAFETY: restores the disposition signal(2) returned in `install`.
            unsafe { libc::signal(libc::SIGPIPE, previous) };
        }
    }
}

/// A graceful stop on a signal (`relbert train`): the run polls [`StopRequest::flag`]
/// between steps (and before and during the base model's validation), and once it has
/// returned, [`StopRequest::signal`] says which signal came first, for the exit status.
///
/// Until the run starts saving ([`StopRequest::saving`]) there is nothing a stop would keep:
/// a second signal then ends the run at once (loading a large base model and validating it
/// take minutes, and a second Ctrl-C changed nothing; found by an audit), removing the lock
/// files of `locks` this process holds and exiting with the first signal's status. Once the
/// run saves, later signals change nothing: the step in flight finishes and what is being
/// written is whole.
pub(super) struct StopRequest {
    /// Set on the first signal.
    requested: Arc<AtomicBool>,
    /// The first signal.
    first: Arc<OnceLock<StopSignal>>,
    /// The run's output lock files while it has saved nothing (a second signal then exits at
    /// once); `None` once it saves. A mutex, not a flag: the handler holds it until the
    /// exit, so the run cannot start writing between the handler's decision and the exit.
    unsaved: Arc<Mutex<Option<Vec<PathBuf>>>>,
}

impl StopRequest {
    /// Starts watching, saying `message` on standard error at the first signal; `locks` are
    /// the lock files of the run's outputs (see [`StopRequest`]).
    pub fn install(message: &'static str, locks: Vec<PathBuf>) -> StopRequest {
        let requested = Arc::new(AtomicBool::new(false));
        let first = Arc::new(OnceLock::new());
        let unsaved = Arc::new(Mutex::new(Some(locks)));
        let (flag, which, state) = (requested.clone(), first.clone(), unsaved.clone());
        let (_, installed) = watch(move |signal| {
            // Set before the message is written (found by a review: a standard error nobody
            // reads held the write, and the stop was never asked for).
            let first = which.set(signal).is_ok();
            flag.store(true, Ordering::SeqCst);
            let st = state.lock().unwrap_or_else(|p| p.into_inner());
            if first {
                // On a line of its own: a progress bar may be drawn on the current one.
                let again = if st.is_some() {
                    " (nothing is saved yet: a second signal stops at once)"
                } else {
                    ""
                };
                drop(st);
                say(&format!("\n{message}{again}"));
                return;
            }
            let Some(locks) = st.as_ref() else {
                return;
            };
            say("second signal before anything was saved: stopping at once; nothing was saved");
            // No thread of this process takes or releases a writer lock from here on, so a
            // lock file judged this process's stays so until it is removed.
            relbert_index::lock::stop_writers();
            for lock in locks {
                if names_this_process(lock) {
                    let _ = std::fs::remove_file(lock);
                }
            }
            let status = which.get().copied().unwrap_or(signal).exit_status();
            std::process::exit(status);
        });
        if let Err(e) = installed {
            tracing::warn!("{e}: such a signal stops the run without saving the epoch in flight");
        }
        StopRequest {
            requested,
            first,
            unsaved,
        }
    }

    /// Whether a stop was asked for.
    pub fn flag(&self) -> &AtomicBool {
        &self.requested
    }

    /// The first signal that asked for a stop, if any has.
    pub fn signal(&self) -> Option<StopSignal> {
        self.first.get().copied()
    }

    /// The run starts saving what it keeps (its first checkpoint or model): from now on a
    /// second signal no longer ends it at once. Waits for a second signal's exit under way.
    pub fn saving(&self) {
        *self.unsaved.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// How long a stop signal's reaction in [`LastLine`] may take before the process exits
/// without it: long enough to wait for a record being written to be whole, short enough for
/// a service manager's stop.
const LAST_LINE_WAIT: Duration = Duration::from_secs(1);

/// A stream that says it was stopped in a last line of its own (`relbert query --json`): its
/// state, under a lock the stream holds while it writes a record, and, once
/// [`LastLine::watch`] is called, a reaction to the first stop signal that takes that lock,
/// writes the line and exits with 128 plus the signal's number, holding the lock (nothing
/// is written after the line). The exit never waits on the line (found by a review: written
/// to a standard output nobody reads, it held the process forever, and a second signal
/// changed nothing): it comes at the latest [`LAST_LINE_WAIT`] after the signal, the line
/// written or not, and at once on a second signal.
pub(super) struct LastLine<T>(Arc<Mutex<T>>);

impl<T: Send + 'static> LastLine<T> {
    /// The stream's state, not yet watched.
    pub fn new(state: T) -> LastLine<T> {
        LastLine(Arc::new(Mutex::new(state)))
    }

    /// The state, under the lock the reaction takes: what is written while it is held is
    /// whole before the last line. A thread that panicked holding it leaves it as it was.
    pub fn with(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, on SIGINT, SIGTERM or SIGHUP, `write` is called with the state and the
    /// signal, on a thread of its own, and the process then exits as described on
    /// [`LastLine`]. When a signal cannot be watched, a warning says so, ending with
    /// `unwatched` (what such a signal does to the stream: it still ends the process).
    pub fn watch(&self, unwatched: &str, write: impl Fn(&T, StopSignal) + Send + Sync + 'static) {
        let state = self.0.clone();
        let write = Arc::new(write);
        let first: OnceLock<StopSignal> = OnceLock::new();
        let (_, installed) = watch(move |which| {
            if let Some(first) = first.get() {
                std::process::exit(first.exit_status());
            }
            let _ = first.set(which);
            let status = which.exit_status();
            // Not on this thread, which must stay free to see a second signal.
            let (state, write) = (state.clone(), write.clone());
            let started = std::thread::Builder::new()
                .name("relbert-stop-wait".into())
                .spawn(move || {
                    std::thread::sleep(LAST_LINE_WAIT);
                    std::process::exit(status);
                })
                .and_then(|_| {
                    std::thread::Builder::new()
                        .name("relbert-last-line".into())
                        .spawn(move || {
                            let held = state.lock().unwrap_or_else(|p| p.into_inner());
                            write(&held, which);
                            std::process::exit(status);
                        })
                });
            if started.is_err() {
                // No thread to write the line on, or none to bound its wait: none is written.
                std::process::exit(status);
            }
        });
        if let Err(e) = installed {
            tracing::warn!("{e}: {unwatched}");
        }
    }
}

/// The interrupt handling of `index build`, `index rebuild` and `index add`, which leave their
/// work in the output's partial directory, checkpointed after each chunk: a kill at any moment
/// leaves it fit to resume (what `tests/crash_consistency.rs` checks), so a stop signal ends
/// the run at once rather than at the next chunk, which takes seconds to minutes. It says what
/// the partial directory keeps and that the same command resumes from it, removes the
/// output's writer lock file (last, right before the exit), and exits with 128 plus the
/// signal's number, as the other commands do (these were killed by the signal without a
/// word, the lock file left behind). Once the finished index is being written and put in
/// place, a signal lets that finish, and the run ends as a finished one (status 0, the index
/// in place): the checkpoint goes before the final rename, and a run stopped then would
/// start over.
pub(super) struct Resumable(Arc<Mutex<ResumeState>>, Arc<Received>);

/// What a [`Resumable`] says and removes.
struct ResumeState {
    /// The output's partial directory (`DIR.partial`).
    partial: PathBuf,
    /// The output's writer lock file, removed only while it names this process as holder:
    /// before the run takes the lock, a file there is another writer's.
    lock: PathBuf,
    /// What the partial directory keeps at the run's stage, for the message.
    kept: String,
    /// The finished index is being written and put in place.
    committing: bool,
    /// The run read standard input and keeps no copy of it: a rerun must be given the same
    /// input again ([`Resumable::stdin_again`]).
    stdin_again: bool,
    /// The run has returned: a signal ends the process with the same status, saying nothing.
    disarmed: bool,
    /// The run found nothing to do and only clears what killed runs left
    /// ([`Resumable::unchanged`]): a partial directory there is not its own.
    unchanged: bool,
}

impl Resumable {
    /// Installs the handler for a run writing the index `out`; `kept` says what its partial
    /// directory keeps until [`Resumable::keeps`] says otherwise. An error only for an `out`
    /// without a final component, which names no index.
    pub fn install(
        out: &std::path::Path,
        kept: impl Into<String>,
    ) -> relbert_index::Result<Resumable> {
        let state = Arc::new(Mutex::new(ResumeState {
            partial: relbert_index::partial_dir(out)?,
            lock: relbert_index::lock::lock_path(out)?,
            kept: kept.into(),
            committing: false,
            stdin_again: false,
            disarmed: false,
            unchanged: false,
        }));
        let shared = state.clone();
        let (signals, installed) = watch(move |which| {
            // Held until the process ends: the run's stage marks wait here, so the run
            // does not reach the writing of the finished index (whose checkpoint goes before
            // the final rename) once a signal has been taken. Rows and checkpoints go on
            // being written meanwhile; a kill at any point of those is safe.
            let st = shared.lock().unwrap_or_else(|p| p.into_inner());
            if st.disarmed {
                std::process::exit(which.exit_status());
            }
            if st.committing {
                say("\ninterrupted while the index is written and put in place: finishing that first");
                return;
            }
            // From here on no thread of this process takes the writer lock or makes (or
            // discards) the partial directory: what is on disk now is what the exit leaves,
            // so the message, chosen from it, stays true while the run's other threads go on
            // (found by an audit: chosen while they went on, "nothing was written" was
            // followed by a partial directory, even a checkpoint, made before the exit).
            // Checkpoints of a partial directory that has one go on, which the message's
            // "up to its last checkpoint" allows.
            relbert_index::lock::stop_writers();
            // Before the run holds the writer lock, a partial directory there is another
            // writer's (or an earlier run's), and this run kept nothing in it.
            let ours = names_this_process(&st.lock);
            let message = if st.unchanged {
                "interrupted: the index is unchanged".to_string()
            } else if ours {
                resume_message(&st.partial, &st.kept, st.stdin_again)
            } else {
                "interrupted: nothing was written".to_string()
            };
            // On a line of its own: a progress bar may be drawn on the current one. Said
            // before the lock file goes: the write can block (a full pipe), and the run's
            // other threads go on writing meanwhile, so the lock must stay till the exit
            // (found by a review: removed first, a second build took the output).
            say(&format!("\n{message}"));
            // Checked again: the gate now holds the run's lock from being released (its
            // drop passes the gate), but a lock file that is not this process's any more,
            // whatever the way, is another writer's and stays (found by a review: released
            // between the check above and this removal, another relbert's lock went).
            if ours && names_this_process(&st.lock) {
                let _ = std::fs::remove_file(&st.lock);
            }
            std::process::exit(which.exit_status());
        });
        if let Err(e) = installed {
            tracing::warn!("{e}: such a signal stops the run without a word");
        }
        Ok(Resumable(state, signals))
    }

    fn state(&self) -> MutexGuard<'_, ResumeState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The run has reached a stage where the partial directory keeps `kept` (said after
    /// "DIR.partial keeps").
    pub fn keeps(&self, kept: impl Into<String>) {
        self.state().kept = kept.into();
    }

    /// The finished index is being written and put in place: a signal from now on lets
    /// that finish.
    pub fn committing(&self) {
        self.state().committing = true;
    }

    /// The run found nothing to do: the index stays as it is, and what it goes on to clear
    /// (what killed runs left, under the writer lock and the gate) is not a run to resume. A
    /// signal from now on waits for a removal under way to end and says the index is
    /// unchanged (found by a review: it could name another run's partial directory as this
    /// one's, to resume).
    pub fn unchanged(&self) {
        self.state().unchanged = true;
    }

    /// The run reads standard input (`--pairs -`) and keeps no copy of it (`index remove`),
    /// or none yet (a build or add, whose copy is written once its partial directory is
    /// made): the message on a signal says to give the same input again, unless a whole copy
    /// is in the partial directory by then.
    pub fn stdin_again(&self) {
        self.state().stdin_again = true;
    }
}

impl Drop for Resumable {
    fn drop(&mut self) {
        // A signal received before the run returned is reacted to first.
        self.1.settle();
        self.state().disarmed = true;
    }
}

/// Whether the lock file `lock` is one this process holds: the file itself, by device and
/// inode ([`relbert_index::lock::path_held_by_this_process`]), not the `pid N:` written in it,
/// since pids repeat across PID namespaces and after reuse (found by a review).
fn names_this_process(lock: &std::path::Path) -> bool {
    relbert_index::lock::path_held_by_this_process(lock)
}

/// What a [`Resumable`] says on a signal: what `partial` keeps (`kept`) when it holds a
/// checkpoint, and how to resume (`stdin_again`: with the same standard input, of which no
/// copy is kept); when it holds none, that nothing was kept.
fn resume_message(partial: &std::path::Path, kept: &str, stdin_again: bool) -> String {
    if !partial.join("checkpoint").is_file() {
        return "interrupted: nothing was written".into();
    }
    // Standard input cannot be read again: the copy of it in the partial directory is what
    // a rerun with `--pairs -` and nothing on standard input resumes from.
    let stdin = if partial.join("input.spool").is_file() {
        " (with `--pairs -`, give it the same input again, or none: it resumes from the copy \
         of standard input kept there)"
    } else if stdin_again {
        " (with `--pairs -`, give it the same pairs again)"
    } else {
        ""
    };
    format!(
        "interrupted; {} keeps {kept}: run the same command to resume{stdin}",
        partial.display()
    )
}

/// The interrupt handling of a load into a Qdrant collection (`index export --collection`,
/// `index build --collection`). Such a load checkpoints the rows it has confirmed in the
/// collection's metadata and writes every point under an id derived from its pair, so a stop
/// at any moment loses nothing and a rerun neither doubles nor drops a point (what
/// `tests/qdrant_cluster.rs` checks with a kill): a signal ends the run at once, saying that
/// the collection keeps the points written so far and that the same command resumes, with
/// 128 plus the signal's number (these loads were ended by the signal without a word, unlike
/// the local `index build`'s [`Resumable`]). There is nothing of relbert's on disk to remove.
/// `index remove --collection` takes it too, with its own message
/// ([`CollectionLoad::install_saying`]).
pub(super) struct CollectionLoad(Arc<AtomicBool>, Arc<Received>);

impl CollectionLoad {
    /// Installs the handler for a load through `conn` (named in messages by its target); it
    /// is disarmed when the returned value is dropped. A load turns the collection's indexing
    /// off while it streams: on a signal the handler spends at most a second turning it back
    /// on, so a collection kept half-loaded is not left to full scans (when that second is
    /// not enough, it says so; the next load to finish, or `index remove --abandoned-load`,
    /// turns it on). A load stopped before it turned indexing off leaves it as it is
    /// ([`relbert::store::qdrant::Connection::restore_indexing_within`]): another load may
    /// be running with it off.
    pub fn install(conn: &relbert::store::qdrant::Connection) -> CollectionLoad {
        Self::install_with(load_message(&conn.target()), Some(conn.clone()))
    }

    /// Installs the handler for other work on a collection that a stop at any moment leaves
    /// fit to finish by running the same command (`index remove --collection`: a delete by
    /// id is whole and harmless twice), saying `message` on a signal.
    pub fn install_saying(message: String) -> CollectionLoad {
        Self::install_with(message, None)
    }

    fn install_with(
        message: String,
        restore: Option<relbert::store::qdrant::Connection>,
    ) -> CollectionLoad {
        let disarmed = Arc::new(AtomicBool::new(false));
        let returned = disarmed.clone();
        let (signals, installed) = watch(move |which| {
            if !returned.load(Ordering::SeqCst) {
                say(&format!("\n{message}"));
                if let Some(conn) = &restore {
                    if !conn.restore_indexing_within(Duration::from_secs(1)) {
                        say(
                            "the collection's indexing could not be turned back on within a \
                             second: searches scan every point until a load into it finishes",
                        );
                    }
                }
            }
            std::process::exit(which.exit_status());
        });
        if let Err(e) = installed {
            tracing::warn!("{e}: such a signal stops the load without a word");
        }
        CollectionLoad(disarmed, signals)
    }
}

impl Drop for CollectionLoad {
    fn drop(&mut self) {
        // A signal received before the load returned is reacted to first.
        self.1.settle();
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What a [`CollectionLoad`] says on a signal.
fn load_message(target: &str) -> String {
    format!(
        "interrupted; {target} keeps the points written so far: run the same command (with the \
         same input) to resume after its last checkpoint (points are overwritten, never doubled)"
    )
}

/// While the default index is built, a stop signal (SIGINT, SIGTERM, SIGHUP) says on standard
/// error that the next query resumes the build, removes the build's lock file when this
/// process holds it (as [`Resumable`] does for `index build`; an audit found `.default.lock`
/// left naming a dead process), then ends the process as the signal would have (a query was
/// stopped without a word, status 130 or 143). The build keeps a checkpoint on disk, so
/// there is nothing else to clean up. The handlers are put back when it is dropped; a
/// signal the process was started ignoring (`nohup`, a background job) stays ignored.
pub(super) struct InterruptNote {
    previous: Vec<(libc::c_int, libc::sighandler_t)>,
}

impl InterruptNote {
    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    /// Installs the handlers until the returned value is dropped; `index` is the directory
    /// the build writes, whose lock file a signal removes.
    pub fn install(index: &std::path::Path) -> InterruptNote {
        // Made here, not in the handler, which may not allocate: the lock's path.
        if let Some(path) = relbert_index::lock::lock_path(index)
            .ok()
            .and_then(|p| std::ffi::CString::new(p.into_os_string().into_encoded_bytes()).ok())
        {
            // A second build in one process (there is none) would keep the first's path.
            let _ = NOTE_LOCK.set(path);
        }
        let mut previous = Vec::new();
        for sig in Self::SIGNALS {
            let handler = note_and_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // SAFETY: signal(2) with a handler that makes only async-signal-safe calls.
            let old = unsafe { libc::signal(sig, handler) };
            if old == libc::SIG_IGN {
                // SAFETY: as above, restoring the disposition the process started with.
                unsafe { libc::signal(sig, libc::SIG_IGN) };
            } else if old != libc::SIG_ERR {
                previous.push((sig, old));
            }
        }
        InterruptNote { previous }
    }
}

impl Drop for InterruptNote {
    fn drop(&mut self) {
        for &(sig, old) in &self.previous {
            // SAFETY: restores the disposition signal(2) returned for this signal.
            unsafe { libc::signal(sig, old) };
        }
    }
}

/// The default index build's lock file, for [`note_and_stop`] ([`InterruptNote::install`]
/// sets it).
static NOTE_LOCK: OnceLock<std::ffi::CString> = OnceLock::new();

/// How many times, and how far apart, [`note_and_stop`] tries to close the writers' gate
/// while a writer passes it (the build writing its first checkpoint, a few milliseconds; a
/// review found a Ctrl-C then left the lock file in 7 of 10 runs): up to about a second,
/// for a checkpoint's fsync on a busy disk, after which the file is left.
const GATE_TRIES: u32 = 500;
const GATE_PAUSE: Duration = Duration::from_millis(2);

/// [`InterruptNote`]'s handler: write(2) the note, remove the build's lock file if this
/// process holds it ([`remove_if_ours`]) and no writer of this process is taking or
/// releasing a lock at that moment ([`relbert_index::lock::try_stop_writers_for`], which
/// waits a little for one that is: were it releasing it, another process could take the
/// output and lose its new lock file to the removal; the thread passing the gate has these
/// signals blocked, so this handler runs on another; if the gate stays held the file is left,
/// which is harmless, its next taker overwrites it), then end the process with the signal's
/// default action. A process the signal does not end that way (the first process of a PID
/// namespace, `docker run` without `--init`, ignores a default-action signal it sends
/// itself) exits with 128 plus the signal's number instead: it must not go on building
/// without its lock file (found by a review).
extern "C" fn note_and_stop(sig: libc::c_int) {
    // On a line of its own: the progress bar is drawn on the current one.
    const NOTE: &[u8] = b"\ninterrupted; the next query resumes the build\n";
    // SAFETY: write(2), nanosleep(2) (in `try_stop_writers_for`), signal(2), sigemptyset(3),
    // sigaddset(3), pthread_sigmask(3), raise(3) and _exit(2) are async-signal-safe; NOTE is
    // a static buffer and `set` this frame's; NOTE_LOCK is only read (set before the handler
    // was installed).
    unsafe {
        libc::write(2, NOTE.as_ptr().cast(), NOTE.len());
        if let Some(path) = NOTE_LOCK.get() {
            if relbert_index::lock::try_stop_writers_for(GATE_TRIES, GATE_PAUSE) {
                remove_if_ours(path);
            }
        }
        libc::signal(sig, libc::SIG_DFL);
        // Delivered at once when unblocked (it is blocked while its handler runs).
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::raise(sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::_exit(128 + sig);
    }
}

/// Removes the file at `path` if it is a regular file that is a lock file this process
/// holds, by device and inode ([`relbert_index::lock::held_by_this_process`], the check of
/// [`names_this_process`]); says whether it did. In async-signal-safe calls only (open,
/// fstat, close, unlink; the comparison reads atomics), for [`note_and_stop`].
fn remove_if_ours(path: &std::ffi::CStr) -> bool {
    // SAFETY: open(2), fstat(2), close(2) and unlink(2) on a NUL-terminated path and a
    // buffer of this frame; the descriptor is closed before returning.
    unsafe {
        // O_NONBLOCK: a named pipe of that name would otherwise wait for a writer.
        let fd = libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        let mut st: libc::stat = std::mem::zeroed();
        let regular = libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFREG;
        libc::close(fd);
        #[allow(clippy::unnecessary_cast)] // dev_t and ino_t are u64 on some targets only
        let ours = regular
            && relbert_index::lock::held_by_this_process(st.st_dev as u64, st.st_ino as u64);
        ours && libc::unlink(path.as_ptr()) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review R4 of 7fc6f00, and review R6: only a lock file this process holds is removed
    /// by the default build's signal handler (a handler that always removed it passed every
    /// test), judged by the file itself: a file at that path with this process's pid in it
    /// is not this process's (pids repeat across PID namespaces, and after reuse; the check
    /// of the `pid N:` text removed it).
    #[test]
    fn the_signal_handler_removes_only_a_lock_file_this_process_holds() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("def");
        let lock = relbert_index::lock::lock_path(&out).unwrap();
        let c = std::ffi::CString::new(lock.as_os_str().as_bytes()).unwrap();
        let me = std::process::id();
        // Another pid than ours, whatever ours is (pid 1 in a container).
        let other = me.wrapping_add(1);
        let ours = relbert_index::lock::holder_prefix();
        // Files this process does not hold, naming it or not: left.
        for text in [
            format!("{ours} relbert query (since unix time 1)\n"),
            format!("pid {other}: relbert query\n"),
            format!("pid {me}0: relbert query\n"),
            String::new(),
            format!("x{ours} relbert query\n"),
        ] {
            std::fs::write(&lock, &text).unwrap();
            assert!(!remove_if_ours(&c), "{text:?}");
            assert!(lock.exists(), "{text:?}");
            std::fs::remove_file(&lock).unwrap();
        }
        // The lock this process holds: removed.
        let held = relbert_index::OutputLock::acquire(&out).unwrap();
        assert!(remove_if_ours(&c));
        assert!(!lock.exists());
        // Another file put at its path since, with this process's pid in it: left, by the
        // handler and by the lock's release.
        std::fs::write(&lock, format!("{ours} relbert query\n")).unwrap();
        assert!(!remove_if_ours(&c));
        drop(held);
        assert!(lock.exists());
        std::fs::remove_file(&lock).unwrap();
        // A link to a lock file this process holds, and a named pipe: left, and no wait.
        let other_out = dir.path().join("other");
        let other_held = relbert_index::OutputLock::acquire(&other_out).unwrap();
        std::os::unix::fs::symlink(other_held.path(), &lock).unwrap();
        assert!(!remove_if_ours(&c));
        assert!(std::fs::symlink_metadata(&lock).is_ok() && other_held.path().exists());
        std::fs::remove_file(&lock).unwrap();
        drop(other_held);
        // SAFETY: mkfifo(3) on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(!remove_if_ours(&c));
        assert!(std::fs::symlink_metadata(&lock).is_ok());
    }

    /// What an interrupted index build says: what its partial directory keeps when it has a
    /// checkpoint (with the way to resume from a copy of standard input when there is one),
    /// else that nothing was written; the lock file is removed only when it is this
    /// process's.
    #[test]
    fn an_interrupted_index_run_says_what_is_kept_and_removes_only_its_own_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("idx.partial");
        assert_eq!(
            resume_message(&partial, "x", false),
            "interrupted: nothing was written"
        );
        std::fs::create_dir(&partial).unwrap();
        std::fs::write(partial.join("checkpoint"), "c").unwrap();
        let said = resume_message(&partial, "the pairs encoded so far", false);
        assert_eq!(
            said,
            format!(
                "interrupted; {} keeps the pairs encoded so far: run the same command to resume",
                partial.display()
            )
        );
        let said = resume_message(&partial, "x", true);
        assert!(
            said.ends_with("(with `--pairs -`, give it the same pairs again)"),
            "{said}"
        );
        std::fs::write(partial.join("input.spool"), "s").unwrap();
        let said = resume_message(&partial, "x", false);
        assert!(said.contains("copy of standard input"), "{said}");
        let out = tmp.path().join("idx");
        let lock = relbert_index::lock::lock_path(&out).unwrap();
        assert!(!names_this_process(&lock));
        let other = std::process::id().wrapping_add(1);
        std::fs::write(&lock, format!("pid {other}: relbert index build\n")).unwrap();
        assert!(!names_this_process(&lock));
        // This process's pid in a file it does not hold (another PID namespace's relbert).
        let ours = relbert_index::lock::holder_prefix();
        std::fs::write(&lock, format!("{ours} relbert\n")).unwrap();
        assert!(!names_this_process(&lock));
        std::fs::remove_file(&lock).unwrap();
        let held = relbert_index::OutputLock::acquire(&out).unwrap();
        assert!(names_this_process(&lock));
        drop(held);
        assert!(!names_this_process(&lock));
    }

    /// What an interrupted load into a collection says: the collection, that it keeps what
    /// was written, and that the same command resumes.
    #[test]
    fn an_interrupted_load_names_its_collection_and_how_to_resume() {
        let said = load_message("http://q:6334 collection c");
        assert!(
            said.starts_with("interrupted; http://q:6334 collection c keeps the points")
                && said.contains("run the same command")
                && said.contains("resume"),
            "{said}"
        );
    }

    /// Audit s26 O: `embed` and `index export --format` took their outputs' locks before the
    /// handler was installed, so a signal in between left the lock files. The handler is now
    /// installed first, and [`Interrupts::lock_outputs`] takes the locks under its state: a
    /// signal finds them registered, or not taken. (The race itself cannot be hit on demand;
    /// this checks what the handler is given.)
    #[test]
    fn output_locks_are_taken_and_registered_under_the_handlers_state() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("v.jsonl");
        let tmp = relbert::output::temp_path(&out);
        let lock = relbert_index::lock::lock_path(&out).unwrap();
        let take = || relbert_index::OutputLock::acquire(&out).map(|l| vec![l]);
        let guard = Interrupts::install(Vec::new());
        guard.lock_outputs(take, vec![tmp.clone()]).unwrap();
        {
            let st = guard.with();
            assert_eq!(st.locks.len(), 1);
            assert_eq!(st.locks[0].path(), lock.as_path());
            assert_eq!(st.files, vec![tmp.clone()]);
        }
        // A lock that cannot be taken (held: here by this run itself) registers nothing.
        let other = dir.path().join("other.tmp");
        assert!(guard.lock_outputs(take, vec![other]).is_err());
        assert_eq!(guard.with().files, vec![tmp]);
        assert!(lock.exists());
        // The run returning releases the locks it registered.
        drop(guard);
        assert!(!lock.exists());
    }

    /// Review of the signal threads (1): a reaction that panicked was never counted, so the
    /// run waited for it for ever in `settle` when it returned, deaf to later signals. It is
    /// counted however it ends, and a panic ends the process with the signal's status (here
    /// a stand-in for the exit, which returns, so that the count after it shows).
    #[test]
    fn a_reaction_that_panics_is_counted_and_ends_with_the_signals_status() {
        let received = Arc::new(Received::default());
        let number = received.arrived();
        let ended = std::cell::Cell::new(None);
        let reacted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            react(
                &received,
                StopSignal::Terminate,
                number,
                &|_| panic!("a reaction that fails"),
                |which| ended.set(Some(which.exit_status())),
            )
        }));
        assert!(reacted.is_ok(), "the panic went past the reaction");
        assert_eq!(ended.get(), Some(143));
        assert_eq!(received.counts().reacted, 1);
        // Returns at once: the reaction is counted.
        received.settle();
        // A reaction that returns is counted, and ends nothing.
        let number = received.arrived();
        react(&received, StopSignal::Interrupt, number, &|_| {}, |_| {
            panic!("ended")
        });
        assert_eq!(received.counts().reacted, 2);
    }

    /// Review of the signal threads (2): with a later signal already received (two quick
    /// Ctrl-Cs), the first reaction's wait for its message ended at once, before the thread
    /// writing it had, and the exit that followed lost it. The wait now goes on, up to its
    /// bound, while the message is written; past the bound it gives up (standard error is
    /// blocked).
    #[test]
    fn a_message_is_waited_for_after_a_later_signal_up_to_a_bound() {
        let received = Arc::new(Received::default());
        let first = received.arrived();
        received.arrived();
        let state = Arc::new(AtomicU8::new(PENDING));
        let (written, notify) = (state.clone(), received.clone());
        let writer = std::thread::spawn(move || {
            // The message's write, taking a moment.
            std::thread::sleep(Duration::from_millis(20));
            written.store(WRITTEN, Ordering::SeqCst);
            drop(notify.counts());
            notify.changed.notify_all();
        });
        // A bound only to keep a wait that never ends from hanging the test.
        wait_for_message(&received, first, &state, Duration::from_secs(60));
        assert_eq!(
            state.load(Ordering::SeqCst),
            WRITTEN,
            "gave up on the message"
        );
        writer.join().unwrap();
        // A message that is not written: given up once the bound has passed.
        let unwritten = AtomicU8::new(PENDING);
        wait_for_message(&received, first, &unwritten, Duration::ZERO);
        assert_eq!(unwritten.load(Ordering::SeqCst), PENDING);
    }

    /// Review of the signal threads (4): `average` dropped its temporary directory from what
    /// a signal removes, and then, in a second hold of the state, marked the run committing:
    /// a signal in between found neither, and left the finished model's temporary directory
    /// behind. Both are now done in one hold.
    #[test]
    fn committing_drops_the_work_directory_in_the_same_hold() {
        let dir = tempfile::tempdir().unwrap();
        let guard = Interrupts::install(Vec::new());
        guard.with().work_dir = Some(dir.path().join(".m.tmp"));
        guard.committing();
        let st = guard.with();
        assert!(st.committing);
        assert_eq!(st.work_dir, None);
    }

    #[test]
    fn exit_statuses_are_a_shells_for_the_signal() {
        assert_eq!(StopSignal::Interrupt.exit_status(), 130);
        assert_eq!(StopSignal::Terminate.exit_status(), 143);
        assert_eq!(StopSignal::Hangup.exit_status(), 129);
        assert_eq!(StopSignal::Terminate.name(), "SIGTERM");
    }
}
