//! The writers' gate (`relbert_index::lock`) as a signal handler meets it. One test in a
//! process of its own: the gate, once closed, stays closed for the rest of the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Duration;

use relbert_index::lock::{try_stop_writers, try_stop_writers_for, writing_for_tests};

/// Which of SIGINT, SIGTERM and SIGHUP are blocked on the calling thread.
fn blocked_stop_signals() -> [bool; 3] {
    // SAFETY: pthread_sigmask(3) with no new set only reads this thread's mask into a set
    // this frame owns; sigismember(3) reads it.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask),
            0
        );
        [libc::SIGINT, libc::SIGTERM, libc::SIGHUP].map(|s| libc::sigismember(&mask, s) == 1)
    }
}

/// Review R6 of 016e41c: a Ctrl-C handled on the thread that was writing the first checkpoint
/// under the gate could never close it (`try_stop_writers` failed) and left the lock file.
/// A thread holding the gate now has the stop signals blocked (so another thread handles
/// them), only those it did not block itself are unblocked when it leaves, a handler's
/// `try_stop_writers` fails while the gate is held and succeeds once it is left, and the
/// retrying form waits for a holder to leave but never for the calling thread itself.
#[test]
fn a_signal_handler_closes_the_gate_once_its_holder_leaves_and_the_holder_never_takes_the_signal() {
    // A failure detector only: the fixed code finishes at once.
    const HUNG: Duration = Duration::from_secs(30);
    // From the thread that holds the gate: not closed, and no wait for itself. So many
    // attempts that a form that retried (waiting for itself) would not return within `HUNG`:
    // a few retries ended with the same `false`, and could not tell the two apart.
    let (own_tx, own_rx) = channel();
    std::thread::spawn(move || {
        let _gate = writing_for_tests();
        let once = try_stop_writers();
        let retrying = try_stop_writers_for(u32::MAX, Duration::from_millis(1));
        let _ = own_tx.send((once, retrying));
    });
    let (once, retrying) = own_rx
        .recv_timeout(HUNG)
        .expect("a thread holding the gate waited for itself to leave it");
    assert!(!once, "the gate was closed by the thread holding it");
    assert!(!retrying, "the gate was closed by the thread holding it");
    let (held_tx, held_rx) = channel();
    let (go_tx, go_rx) = channel::<()>();
    // Set by the holder just before it leaves the gate: the gate closed before it was set
    // did not wait for the holder.
    let left = Arc::new(AtomicBool::new(false));
    let leaving = Arc::clone(&left);
    let holder = std::thread::spawn(move || {
        // SIGHUP blocked by the thread itself: still blocked after it leaves the gate.
        // SAFETY: pthread_sigmask(3) with a set this frame owns.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let before = blocked_stop_signals();
        let outer = writing_for_tests();
        let inner = writing_for_tests();
        let during = blocked_stop_signals();
        held_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        // Held a while after the go, so that the retrying form below is seen to wait for
        // the holder (a holder that left at once could be gone before its first try).
        std::thread::sleep(Duration::from_millis(200));
        // Out of order: still held, still blocked, until the last pass is dropped.
        drop(outer);
        let between = blocked_stop_signals();
        leaving.store(true, Ordering::SeqCst);
        drop(inner);
        let after = blocked_stop_signals();
        (before, during, between, after)
    });
    held_rx.recv_timeout(HUNG).unwrap();
    assert!(
        !try_stop_writers(),
        "the gate was closed while a thread held it"
    );
    go_tx.send(()).unwrap();
    // The holder leaves after a while; the retries wait for it, and close the gate only
    // once it has left.
    assert!(
        try_stop_writers_for(30_000, Duration::from_millis(1)),
        "the gate was not closed once its holder left"
    );
    assert!(
        left.load(Ordering::SeqCst),
        "the gate was closed before its holder left it"
    );
    let (before, during, between, after) = holder.join().unwrap();
    assert_eq!(before, [false, false, true]);
    assert_eq!(
        during,
        [true, true, true],
        "the stop signals are not blocked on a thread holding the gate"
    );
    assert_eq!(between, [true, true, true]);
    assert_eq!(
        after,
        [false, false, true],
        "only what the gate blocked is unblocked"
    );
    // The gate is closed now, for good: neither form closes it again.
    assert!(!try_stop_writers());
    assert!(!try_stop_writers_for(2, Duration::from_millis(1)));
}
