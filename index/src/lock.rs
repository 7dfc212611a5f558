//! One writer per output: an advisory lock held for as long as a process writes an index (its
//! partial build included) or a model directory.
//!
//! The lock is `flock(2)` (through `std::fs::File::try_lock`) on a hidden file beside the
//! output, `.<name>.lock`, so it also covers the partial directory and the final rename, and
//! it is released by the kernel when the holder dies: a killed build never leaves a lock that
//! blocks the next run, which a lock *file* (created exclusively, removed at the end) would.
//! The holder writes its pid, command line and start time into the file, so a second writer's
//! error names it. The file is removed on release; a taker re-checks after locking that the
//! path still names the file it locked (the SQLite/git way of making lock-file removal safe),
//! so a writer that opened the file just before its removal cannot hold a lock nobody sees.
//!
//! Readers take no lock: published files are immutable and replaced by renames.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::build::Locked;
use crate::error::{is_out_of_space, IndexError, Result, Unremovable};

/// A held writer lock; released (and its file removed) on drop.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    file: File,
    /// This lock's slot in the record of held lock files ([`held_by_this_process`]).
    slot: Option<usize>,
}

/// The lock file of `target`: `.<name>.lock` in the same directory.
pub fn lock_path(target: &Path) -> Result<PathBuf> {
    let name = target.file_name().ok_or_else(|| {
        IndexError::InvalidParameter(format!("{} has no final path component", target.display()))
    })?;
    let mut n = std::ffi::OsString::from(".");
    n.push(name);
    n.push(".lock");
    Ok(target.with_file_name(n))
}

/// The gate every writer of this process passes to take a writer lock or to make or discard
/// a partial directory (shared), and that [`stop_writers`] closes for good (exclusive).
static WRITERS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The signals that stop a run; blocked on a thread while it holds the gate ([`writing`]).
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// How many [`Writing`] guards this thread holds, the gate's read guard while it holds any,
/// and the stop signals the outer pass blocked (those this thread did not block already).
struct Held {
    depth: usize,
    guard: Option<std::sync::RwLockReadGuard<'static, ()>>,
    blocked: Option<libc::sigset_t>,
}

thread_local! {
    static HELD: std::cell::RefCell<Held> = const {
        std::cell::RefCell::new(Held { depth: 0, guard: None, blocked: None })
    };
    /// Whether this thread holds the gate, for [`try_stop_writers`], which a signal handler
    /// calls: a `const` cell of a type without drop glue, read without registering anything
    /// (unlike [`HELD`], whose guard has a destructor).
    static HOLDS_GATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Blocks the stop signals on this thread; returns those of them it did block (not blocked
/// before), for [`unblock`].
fn block_stop_signals() -> Option<libc::sigset_t> {
    // SAFETY: sigemptyset(3), sigaddset(3), sigismember(3) and pthread_sigmask(3) on sets
    // this frame owns.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in STOP_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        let mut before: libc::sigset_t = std::mem::zeroed();
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut before) != 0 {
            return None;
        }
        let mut added: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut added);
        for sig in STOP_SIGNALS {
            if libc::sigismember(&before, sig) == 0 {
                libc::sigaddset(&mut added, sig);
            }
        }
        Some(added)
    }
}

/// Unblocks `added` ([`block_stop_signals`]) on this thread: a signal that came meanwhile is
/// delivered now, once the gate is open to a handler.
fn unblock(added: &libc::sigset_t) {
    // SAFETY: pthread_sigmask(3) with a set made by `block_stop_signals`.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, added, std::ptr::null_mut()) };
}

/// This thread's pass through the gate of `writing`; the gate is left when the last pass
/// this thread holds is dropped, in whatever order they are.
#[must_use = "the gate is left when this is dropped"]
pub struct Writing {
    /// Not `Send`: the pass is counted in the thread that took it.
    _thread: std::marker::PhantomData<*const ()>,
}

impl Drop for Writing {
    fn drop(&mut self) {
        // `try_with`: during the thread's teardown the thread-local, and the read guard
        // with it, is already gone.
        let _ = HELD.try_with(|h| {
            let mut h = h.borrow_mut();
            h.depth = h.depth.saturating_sub(1);
            if h.depth == 0 {
                h.guard = None;
                let _ = HOLDS_GATE.try_with(|g| g.set(false));
                // After the gate is left: a signal held back meanwhile finds it open.
                if let Some(added) = h.blocked.take() {
                    unblock(&added);
                }
            }
        });
    }
}

/// Held while this process takes a writer lock, releases one, or makes or discards a partial
/// directory: the steps that change what an interrupted run has left on disk. Re-entrant: a
/// thread that holds it already passes again without locking (found by a review: a build
/// whose first checkpoint failed discarded its partial directory under the gate it held, and
/// std's `RwLock`, which queues a second read behind a waiting writer, hung the process
/// when a signal handler was waiting in [`stop_writers`]).
///
/// SIGINT, SIGTERM and SIGHUP are blocked on the thread while it holds the gate, so that a
/// signal sent to the process is handled by another thread, whose handler can close the gate
/// once this thread leaves it (found by a review: a Ctrl-C handled on the thread writing the
/// first checkpoint under the gate could never close it and left the lock file). Blocked
/// before the gate is taken and unblocked after it is left, so a handler never runs on a
/// thread that holds it. A thread started meanwhile inherits the block; another thread takes
/// the signal.
pub(crate) fn writing() -> Writing {
    HELD.with(|h| {
        let outer = h.borrow().depth == 0;
        let blocked = if outer { block_stop_signals() } else { None };
        // Taken outside the borrow: this may wait (for good, once `stop_writers` is called).
        let guard = outer.then(|| WRITERS.read().unwrap_or_else(|p| p.into_inner()));
        let mut h = h.borrow_mut();
        if let Some(g) = guard {
            h.guard = Some(g);
            h.blocked = blocked;
            HOLDS_GATE.with(|g| g.set(true));
        }
        h.depth += 1;
    });
    Writing {
        _thread: std::marker::PhantomData,
    }
}

/// [`writing`], for the tests of the gate in `tests/` (the gate closes for good, so they run
/// in a process of their own); nothing else passes it from outside this crate.
#[doc(hidden)]
pub fn writing_for_tests() -> Writing {
    writing()
}

/// Stops every writer of this process, for the rest of its life, from taking a writer lock and
/// from making or discarding a partial directory: waits for any such step under way to end,
/// after which no thread of this process starts another. For a signal handler about to end the
/// process: what it then sees on disk (the lock, the partial directory and its checkpoint) is
/// what the process leaves, so what it says of it stays true while the run's other threads go
/// on until the exit (found by an audit: a Ctrl-C said "nothing was written" and the run then
/// made its partial directory, even a checkpoint, before the process ended).
pub fn stop_writers() {
    let closed = WRITERS.write().unwrap_or_else(|p| p.into_inner());
    // Never reopened: the process ends with the gate closed.
    std::mem::forget(closed);
}

/// [`stop_writers`] for a signal handler, which may not wait: closes the gate and returns
/// true when no writer of this process is passing it, else leaves it open and returns false
/// (the caller then leaves the lock file as it is). It never waits and does not allocate
/// (`RwLock::try_write`, and a read of a thread-local flag); false at once on a thread that
/// holds the gate itself.
pub fn try_stop_writers() -> bool {
    if HOLDS_GATE.try_with(|g| g.get()).unwrap_or(true) {
        return false;
    }
    match WRITERS.try_write() {
        Ok(closed) => {
            // Never reopened: the process ends with the gate closed.
            std::mem::forget(closed);
            true
        }
        Err(_) => false,
    }
}

/// [`try_stop_writers`] up to `attempts` times, sleeping `pause` (nanosleep(2), which a
/// signal handler may call) between tries: a writer passing the gate (writing a checkpoint,
/// taking or releasing a lock) is usually out of it within milliseconds. False at once on a
/// thread that holds the gate, which would wait for itself; false when the gate stays held.
pub fn try_stop_writers_for(attempts: u32, pause: std::time::Duration) -> bool {
    if HOLDS_GATE.try_with(|g| g.get()).unwrap_or(true) {
        return false;
    }
    let pause = libc::timespec {
        tv_sec: pause.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: pause.subsec_nanos().into(),
    };
    for attempt in 0..attempts {
        if try_stop_writers() {
            return true;
        }
        if attempt + 1 < attempts {
            // SAFETY: nanosleep(2) with a valid interval; woken early by a signal, it just
            // tries again sooner.
            unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
        }
    }
    false
}

/// The writer locks this process holds: the device and inode of each lock file, so that
/// "is this lock file ours" is asked of the file itself, not of the pid written in it (pids
/// repeat across PID namespaces, where every container's relbert is pid 1, and after
/// reuse). Fixed slots of atomics, so that a signal handler can read them; a lock taken
/// while all are in use is not recorded, and its file is then never judged ours (left on a
/// signal, which is harmless: its next taker overwrites it).
static HELD_FILES: [HeldFile; 16] = [const { HeldFile::free() }; 16];

/// One slot of [`HELD_FILES`].
struct HeldFile {
    /// Free (0), [`HeldFile::FILLING`] or [`HeldFile::LIVE`].
    state: std::sync::atomic::AtomicU8,
    dev: std::sync::atomic::AtomicU64,
    ino: std::sync::atomic::AtomicU64,
}

impl HeldFile {
    /// A free slot.
    const fn free() -> HeldFile {
        HeldFile {
            state: std::sync::atomic::AtomicU8::new(0),
            dev: std::sync::atomic::AtomicU64::new(0),
            ino: std::sync::atomic::AtomicU64::new(0),
        }
    }
    const FILLING: u8 = 1;
    const LIVE: u8 = 2;
}

/// Records the lock file `(dev, ino)` as held by this process; the slot, for [`forget`].
fn record(dev: u64, ino: u64) -> Option<usize> {
    use std::sync::atomic::Ordering::SeqCst;
    let slot = HELD_FILES.iter().position(|s| {
        s.state
            .compare_exchange(0, HeldFile::FILLING, SeqCst, SeqCst)
            .is_ok()
    })?;
    let s = &HELD_FILES[slot];
    s.dev.store(dev, SeqCst);
    s.ino.store(ino, SeqCst);
    s.state.store(HeldFile::LIVE, SeqCst);
    Some(slot)
}

/// Frees the slot [`record`] returned.
fn forget(slot: usize) {
    use std::sync::atomic::Ordering::SeqCst;
    if let Some(s) = HELD_FILES.get(slot) {
        s.state.store(HeldFile::FILLING, SeqCst);
        s.dev.store(0, SeqCst);
        s.ino.store(0, SeqCst);
        s.state.store(0, SeqCst);
    }
}

/// Whether the file with device `dev` and inode `ino` is a lock file this process holds (an
/// [`OutputLock`] not yet released). Atomic loads only: a signal handler may call it, on what
/// fstat(2) says of the file. The inode cannot name another file meanwhile: the lock holds it
/// open. Exact once the gate is closed ([`stop_writers`]); before, a lock taken or released
/// at that moment may be seen either way.
pub fn held_by_this_process(dev: u64, ino: u64) -> bool {
    use std::sync::atomic::Ordering::SeqCst;
    HELD_FILES.iter().any(|s| {
        s.state.load(SeqCst) == HeldFile::LIVE
            && s.dev.load(SeqCst) == dev
            && s.ino.load(SeqCst) == ino
    })
}

/// Whether `path` is (not through a link) a lock file this process holds
/// ([`held_by_this_process`]).
pub fn path_held_by_this_process(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_file() && held_by_this_process(m.dev(), m.ino()))
}

/// How long a writer tries again a lock found held before it is refused: long beside the
/// instant a reader's probe holds it ([`holder`]), short beside any writer's run.
const PROBE_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// What a lock file this process writes starts with, `pid N:` (its pid), for people and for
/// a refused writer's message; whether a lock file is this process's is asked of the file
/// ([`path_held_by_this_process`]), not of this text.
pub fn holder_prefix() -> String {
    format!("pid {}:", std::process::id())
}

/// Who holds the writer lock of `target` now, when another process does: the note its lock
/// file holds (`pid N: command (since unix time T)`), or the lock file's name while it holds
/// none yet. `None` when no other process holds it: there is no lock file, nobody holds the
/// one there (its holder was killed), this process holds it, or it cannot be asked (it cannot
/// be opened to read). For a reader that must tell an interrupted run, which the same command
/// resumes, from one still running, whose partial directory and copy of standard input are
/// its own (found by a review: `index info` advised removing a running add's partial
/// directory, and an empty standard input resumed from a running add's copy).
///
/// Asks the file, as a refused writer does: a shared lock tried without waiting and let go
/// at once (a free lock is held for that instant only), never the pid written in it, which
/// repeats across PID namespaces and after reuse. Writes nothing; the answer may be stale
/// as soon as it is given, so it is advice only: a writer takes the lock itself.
pub fn holder(target: &Path) -> Option<String> {
    let path = lock_path(target).ok()?;
    if path_held_by_this_process(&path) {
        return None;
    }
    // Never through a symbolic link, and a FIFO of that name does not block the open.
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .ok()?;
    match file.try_lock_shared() {
        Err(std::fs::TryLockError::WouldBlock) => {
            // A note is one line; a larger file is not relbert's to read whole.
            let mut note = String::new();
            let _ = Read::by_ref(&mut file).take(4096).read_to_string(&mut note);
            let note = note.trim();
            Some(if note.is_empty() {
                format!("lock file {}", path.display())
            } else {
                note.to_string()
            })
        }
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// [`holder`], asked as a writer asks before it is refused: a lock found held is asked again
/// after `PROBE_GRACE`, so a reader's instant probe is not taken for a writer. For a command
/// that refuses early, before work the lock would refuse later (loading a model); advice
/// only, as [`holder`] is.
pub fn holder_past_grace(target: &Path) -> Option<String> {
    holder(target)?;
    std::thread::sleep(PROBE_GRACE);
    holder(target)
}

/// Why the lock file `path` of `target`, in `folder`, could not be opened for writing
/// (`err`: `EACCES`, `EPERM` or `EROFS`), in words (found by an audit: a bare OS error, which
/// never reached the write-protection check's advice). An existing file is opened to read
/// and its lock tried: held, it is [`IndexError::Locked`] as for any writer; free, it is a
/// stale lock another user left ([`IndexError::StaleLock`], safe to remove). Otherwise the
/// folder is not writable ([`IndexError::FolderNotWritable`]).
fn unwritable(path: &Path, folder: &Path, target: &Path, err: std::io::Error) -> IndexError {
    let existing = std::fs::symlink_metadata(path).ok().filter(|m| m.is_file());
    let read = existing.as_ref().and_then(|_| {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .ok()
    });
    if let (Some(md), Some(mut file)) = (existing, read) {
        match file.try_lock_shared() {
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return IndexError::Locked {
                    path: target.to_path_buf(),
                    holder: if holder.is_empty() {
                        format!("lock file {}", path.display())
                    } else {
                        holder.to_string()
                    },
                };
            }
            Ok(()) if err.raw_os_error() != Some(libc::EROFS) => {
                let _ = file.unlock();
                return IndexError::StaleLock {
                    path: path.to_path_buf(),
                    owner: owner_name(md.uid()),
                    unremovable: unremovable(path, folder, md.uid()).map(Box::new),
                };
            }
            _ => {}
        }
    }
    IndexError::FolderNotWritable {
        path: path.to_path_buf(),
        folder: folder.to_path_buf(),
        output: target.to_path_buf(),
        err,
    }
}

/// Why this user cannot remove the file `path`, owned by `file_uid`, from `folder`, or `None`
/// when they can: unlink(2) fails, even for root, while the file or the folder is immutable
/// or append-only, and otherwise needs write and search permission on the folder (which
/// CAP_DAC_OVERRIDE grants, as the access check asked here knows) and, when the folder has
/// its sticky bit (`/tmp`), that this user own the file or the folder, or hold CAP_FOWNER
/// over the file ([`sticky_refuses`], [`fowner_applies`]).
fn unremovable(path: &Path, folder: &Path, file_uid: u32) -> Option<Unremovable> {
    let on: Vec<(PathBuf, char)> = [path, folder]
        .into_iter()
        .filter_map(|at| {
            crate::build::locked_flag(at).map(|l| {
                let flag = match l {
                    Locked::Immutable => 'i',
                    Locked::AppendOnly => 'a',
                };
                (at.to_path_buf(), flag)
            })
        })
        .collect();
    if !on.is_empty() {
        return Some(Unremovable::Attribute { on });
    }
    let folder_md = std::fs::metadata(folder).ok();
    let folder_owner = || {
        folder_md
            .as_ref()
            .map_or_else(|| "its owner".into(), |m| owner_name(m.uid()))
    };
    let writable = crate::build::effective_access(folder, libc::W_OK | libc::X_OK).ok()?;
    if writable.is_err() {
        return Some(Unremovable::FolderNotWritable {
            folder_owner: folder_owner(),
        });
    }
    // The access check does not look at the sticky bit, which the kernel applies only when
    // the file is removed: asked here.
    // SAFETY: geteuid(2) has no preconditions.
    let me = unsafe { libc::geteuid() };
    let file_gid = std::fs::symlink_metadata(path).ok().map(|m| m.gid());
    let fowner = file_gid.is_some_and(|file_gid| {
        fowner_applies(has_capability(CAP_FOWNER), file_uid, file_gid, |p| {
            std::fs::read_to_string(p).ok()
        })
    });
    match &folder_md {
        Some(m) if sticky_refuses(m.mode(), m.uid(), file_uid, me, fowner) => {
            Some(Unremovable::Sticky {
                folder_owner: folder_owner(),
            })
        }
        _ => None,
    }
}

/// A mode's sticky bit (`S_ISVTX`; libc's is a `u16` on macOS and the BSDs, where `mode()` is
/// still a `u32`).
const STICKY: u32 = 0o1000;

/// Whether a folder's sticky bit keeps a process of effective uid `me` from removing a file
/// owned by `file_uid` from it (the folder's mode is `folder_mode`, its owner `folder_uid`):
/// only the file's owner, the folder's, or a holder of CAP_FOWNER over the file may (the
/// kernel's `check_sticky`; `fowner`: held, and the file's owner mapped, [`fowner_applies`]).
/// Being root was taken for the last (found by a review): a root whose container dropped
/// CAP_FOWNER is refused, and was told `rm` would do.
fn sticky_refuses(folder_mode: u32, folder_uid: u32, file_uid: u32, me: u32, fowner: bool) -> bool {
    folder_mode & STICKY != 0 && me != file_uid && me != folder_uid && !fowner
}

/// `CAP_FOWNER`, which passes the sticky bit's owner check (linux/capability.h).
const CAP_FOWNER: u32 = 3;

/// What stat(2) shows as the owner or group of a file whose id the user namespace does not
/// map, unless /proc/sys/kernel/overflowuid or overflowgid says otherwise.
const OVERFLOW_ID: u32 = 65534;

/// Whether this process's CAP_FOWNER (`held`) passes a sticky bit for a file whose owner
/// and group are `uid` and `gid` as stat(2) shows them: only when its user namespace maps
/// both (the kernel's `capable_wrt_inode_uidgid`; [`id_mapped`]; found by a review: in a
/// rootless container a root holding CAP_FOWNER was told `rm` would remove a lock file of
/// an owner the container does not map, which the kernel refuses). `read` gives the text of
/// a file of /proc (/proc/self/uid_map, gid_map, /proc/sys/kernel/overflowuid, overflowgid),
/// `None` where it cannot be read: a map that cannot be read is taken for the init
/// namespace's, where every id is mapped (no /proc, or a kernel without user namespaces).
fn fowner_applies(held: bool, uid: u32, gid: u32, read: impl Fn(&str) -> Option<String>) -> bool {
    let mapped = |map: &str, overflow: &str, id: u32| {
        let Some(text) = read(map) else {
            return true;
        };
        let overflow = read(overflow)
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(OVERFLOW_ID);
        id_mapped(&text, id, overflow)
    };
    held && mapped("/proc/self/uid_map", "/proc/sys/kernel/overflowuid", uid)
        && mapped("/proc/self/gid_map", "/proc/sys/kernel/overflowgid", gid)
}

/// Whether `id`, a file's uid or gid as stat(2) shows it, is one a user namespace maps, given
/// the text of its /proc/PID/uid_map or gid_map (`map`: lines of the first id inside, the
/// first outside and how many; a line not so is skipped) and `overflow`, what stat(2) shows
/// for an id the namespace does not map (the kernel's `capable_wrt_inode_uidgid` asks that
/// both the file's ids be mapped). The overflow id itself is taken for a mapped one only in a
/// namespace that maps every id (the init one): in any other it is what every unmapped owner
/// shows as, even where the namespace maps it as well, and nothing is promised for it. An
/// empty map (one not written yet) maps nothing.
fn id_mapped(map: &str, id: u32, overflow: u32) -> bool {
    let ranges: Vec<(u64, u64)> = map
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(str::parse::<u32>);
            match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some(Ok(inside)), Some(Ok(_)), Some(Ok(count)), None) => {
                    Some((u64::from(inside), u64::from(inside) + u64::from(count)))
                }
                _ => None,
            }
        })
        .collect();
    let every = ranges
        .iter()
        .any(|&(start, end)| start == 0 && end >= u64::from(u32::MAX));
    if id == overflow && !every {
        return false;
    }
    let id = u64::from(id);
    ranges.iter().any(|&(start, end)| start <= id && id < end)
}

/// capget(2)'s header (`struct __user_cap_header_struct`).
#[cfg(target_os = "linux")]
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// capget(2)'s data, one per 32 capabilities (`struct __user_cap_data_struct`).
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, two [`CapData`].
#[cfg(target_os = "linux")]
const CAP_VERSION_3: u32 = 0x2008_0522;

/// The calling thread's capability sets, as capget(2) gives them; `None` where it fails.
#[cfg(target_os = "linux")]
fn capabilities() -> Option<[CapData; 2]> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget(2) with a version 3 header and the two data structs that version
    // fills, both owned by this frame.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    (r == 0).then_some(data)
}

/// Whether the calling thread holds capability `cap` (a `CAP_` number) in its effective
/// set: what the kernel asks, where being root is only the usual way to have it. False where
/// capget(2) cannot tell, so that nothing is promised that may not hold.
#[cfg(target_os = "linux")]
pub(crate) fn has_capability(cap: u32) -> bool {
    capabilities().is_some_and(|d| {
        let (word, bit) = ((cap / 32) as usize, cap % 32);
        word < d.len() && d[word].effective & (1 << bit) != 0
    })
}

/// Where there are no capabilities, root has them all.
#[cfg(not(target_os = "linux"))]
pub(crate) fn has_capability(_cap: u32) -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The folder that holds `path` (a lock file, a partial directory): its parent, or `.` for
/// a bare name.
pub(crate) fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `err`, met making `path` (a lock file or a partial directory) beside `output`, as
/// [`IndexError::FolderMissing`] when the folder that should hold it is not there (or is not
/// a folder); `None` for any other error. Asked of the folder, not of the error alone: with
/// `O_CREAT`, `ENOENT` is most often a missing folder of the path, but a file system that
/// makes no files (`/proc`) says it too, and its folder is there.
pub(crate) fn folder_missing(
    err: &std::io::Error,
    path: &Path,
    output: &Path,
) -> Option<IndexError> {
    let folder = folder_of(path);
    match err.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) if !folder.is_dir() => Some(IndexError::FolderMissing {
            path: folder.to_path_buf(),
            output: output.to_path_buf(),
        }),
        _ => None,
    }
}

/// An error writing or making the lock file `path` of `output`: for want of space (a full
/// disk, a quota, a file size limit) [`IndexError::LockNoSpace`], which says to make room as
/// a full disk later in a build is said, else as it is (found by a review: a bare `File too
/// large`).
fn lock_write_error(path: &Path, output: &Path, err: std::io::Error) -> IndexError {
    if is_out_of_space(&err) {
        IndexError::LockNoSpace {
            path: path.to_path_buf(),
            output: output.to_path_buf(),
            err,
        }
    } else {
        IndexError::io(path, err)
    }
}

/// The user `uid` as `user NAME (uid N)`, or `uid N` when the user database has no name.
fn owner_name(uid: u32) -> String {
    // SAFETY: all zeroes is a valid `passwd` (null pointers), filled by the call below.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r(3) with a passwd and a buffer this frame owns; `out` points at `pw`
    // (whose strings live in `buf`) or is null.
    let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if r == 0 && !out.is_null() && !pw.pw_name.is_null() {
        // SAFETY: a NUL-terminated string in `buf`, set by the call.
        let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
        return format!("user {} (uid {uid})", name.to_string_lossy());
    }
    format!("uid {uid}")
}

impl OutputLock {
    /// Takes the writer lock of `target`, or fails at once with [`IndexError::Locked`] naming
    /// the process that holds it. Waits, for good, once [`stop_writers`] has been called.
    ///
    /// Makes no folder: when the folder of `target` does not exist (or is not a folder), fails
    /// with [`IndexError::FolderMissing`]. Making it here made the missing folders of every
    /// output as a side effect of locking it, also when the run then failed, and made again
    /// a folder deleted after the caller had checked it.
    pub fn acquire(target: &Path) -> Result<OutputLock> {
        let _gate = writing();
        let path = lock_path(target)?;
        let folder = folder_of(&path);
        let not_ours = |why: &str| IndexError::NotOurs {
            path: path.clone(),
            what: "a lock file",
            why: why.into(),
        };
        for _ in 0..16 {
            // Never through a symbolic link: the lock file is emptied and removed.
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path);
            let opened = match opened {
                // A lock file this user may not write (another user's, left behind, or one
                // whose folder is read-only) is asked whether anyone holds it.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EACCES | libc::EPERM | libc::EROFS)
                    ) =>
                {
                    return Err(unwritable(&path, folder, target, e))
                }
                other => other,
            };
            let mut file = opened.map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    return not_ours("it is a symbolic link");
                }
                folder_missing(&e, &path, target)
                    .unwrap_or_else(|| lock_write_error(&path, target, e))
            })?;
            // A reader asking who holds the lock ([`holder`], [`unwritable`]) holds it shared
            // for an instant: tried again for a moment, so that `index info` run beside a
            // starting writer does not refuse it (naming a killed run's note as the holder).
            let mut tried = file.try_lock();
            let until = std::time::Instant::now() + PROBE_GRACE;
            while matches!(tried, Err(std::fs::TryLockError::WouldBlock))
                && std::time::Instant::now() < until
            {
                std::thread::sleep(std::time::Duration::from_millis(2));
                tried = file.try_lock();
            }
            match tried {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    return Err(IndexError::Locked {
                        path: target.to_path_buf(),
                        holder: if holder.is_empty() {
                            format!("lock file {}", path.display())
                        } else {
                            holder.to_string()
                        },
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(IndexError::io(&path, e)),
            }
            // The previous holder may have removed the file between our open and our lock:
            // then we hold a lock on an unlinked inode, and must take the new file instead.
            let locked = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino() => (a.dev(), a.ino()),
                _ => continue,
            };
            // A file of that name that relbert did not write (its lock files hold a `pid`
            // line, or nothing when a taker died before writing it) is left as it is.
            let mut before = Vec::new();
            file.read_to_end(&mut before)
                .map_err(|e| IndexError::io(&path, e))?;
            if !before.is_empty() && !before.starts_with(b"pid ") {
                return Err(not_ours("it holds something else"));
            }
            // `args_os`: `args` panics on an argument that is not UTF-8 (a file name from
            // another system), which left this lock file behind; the note is for people, so
            // such bytes are shown as U+FFFD.
            let args: Vec<String> = std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let note = format!(
                "{} {} (since unix time {since})\n",
                holder_prefix(),
                args.join(" ")
            );
            let written = file
                .set_len(0)
                .and_then(|_| file.seek(SeekFrom::Start(0)))
                .and_then(|_| file.write_all(note.as_bytes()));
            if let Err(e) = written {
                // A full disk, say: no empty lock file left behind (the lock is ours).
                let _ = std::fs::remove_file(&path);
                return Err(lock_write_error(&path, target, e));
            }
            // Under the gate: a signal handler that has closed it sees the lock recorded, or
            // not taken.
            let slot = record(locked.0, locked.1);
            return Ok(OutputLock { path, file, slot });
        }
        Err(IndexError::Locked {
            path: target.to_path_buf(),
            holder: format!("lock file {} keeps changing", path.display()),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Under the gate: a signal handler that has closed it ([`stop_writers`]) decided the
        // lock file is this process's, and removes it; were it removed and released here
        // meanwhile, another process could take the output and lose its lock file to that
        // handler (found by a review). Waits, for good, once the gate is closed.
        let _gate = writing();
        // No longer ours from here: the inode may be reused once the file is closed.
        if let Some(slot) = self.slot.take() {
            forget(slot);
        }
        // Remove first, then unlock (closing the file): a waiter that opened the old file
        // sees it unlinked and retries with a fresh one. Only while the path still names the
        // file locked here: one put there since (by hand) is not ours to remove.
        let same = match (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if same {
            let _ = std::fs::remove_file(&self.path);
        }
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock is not released while the gate is closed: a signal handler that closed it has
    /// judged the lock file this process's and removes it, so a release meanwhile would let
    /// another process take the output and lose its lock file (the old drop removed the file
    /// at once). Linux only: the sign that the drop waits is its thread asleep in `futex`.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_lock_is_not_released_while_the_gate_is_closed() {
        if std::fs::read_to_string("/proc/thread-self/syscall").is_err() {
            crate::test_skip(format_args!(
                "/proc/thread-self/syscall cannot be read here"
            ));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("idx");
        let held = OutputLock::acquire(&out).unwrap();
        let file = lock_path(&out).unwrap();
        let closed = WRITERS.write().unwrap_or_else(|p| p.into_inner());
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let dropper = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            drop(held);
        });
        let tid = tid_rx.recv().unwrap();
        let syscall = format!("/proc/self/task/{tid}/syscall");
        loop {
            assert!(
                file.exists(),
                "the lock was released while the gate was closed"
            );
            let now = std::fs::read_to_string(&syscall).unwrap_or_default();
            let number = now.split_whitespace().next().and_then(|n| n.parse().ok());
            if number == Some(libc::SYS_futex) {
                break;
            }
            std::thread::yield_now();
        }
        assert!(
            file.exists(),
            "the lock was released while the gate was closed"
        );
        drop(closed);
        dropper.join().unwrap();
        assert!(!file.exists());
    }

    /// A thread that holds the gate passes it again while another thread waits to close it
    /// (as a signal handler in `stop_writers` does); on the old, plain read lock the nested
    /// pass queued behind the waiting writer and neither ever went on.
    #[test]
    fn the_gate_is_reentrant_while_a_writer_waits() {
        use std::sync::mpsc::channel;
        use std::time::Duration;
        // A failure detector only: the fixed code finishes at once, the old one never.
        const HUNG: Duration = Duration::from_secs(30);
        let (held_tx, held_rx) = channel();
        let (go_tx, go_rx) = channel::<()>();
        let (done_tx, done_rx) = channel();
        let nesting = std::thread::spawn(move || {
            let outer = writing();
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            let inner = writing();
            // Dropped out of order: the gate is left with the last pass, not the first.
            drop(outer);
            let again = writing();
            drop(inner);
            drop(again);
            done_tx.send(()).unwrap();
        });
        held_rx.recv_timeout(HUNG).unwrap();
        let (closed_tx, closed_rx) = channel();
        let closer = std::thread::spawn(move || {
            // What `stop_writers` does, but released: other tests of this process pass the
            // gate too.
            drop(WRITERS.write().unwrap_or_else(|p| p.into_inner()));
            closed_tx.send(()).unwrap();
        });
        // Wait for the sign that the closer is queued: std's futex `RwLock` refuses a new
        // read while a writer waits. Bounded, in case a platform's lock never says so (the
        // test then checks less, and still passes only on a re-entrant gate).
        let start = std::time::Instant::now();
        while WRITERS.try_read().is_ok() && start.elapsed() < HUNG {
            std::thread::yield_now();
        }
        go_tx.send(()).unwrap();
        done_rx
            .recv_timeout(HUNG)
            .expect("a nested pass of the gate hung behind a waiting writer");
        closed_rx
            .recv_timeout(HUNG)
            .expect("the gate was not left when the last pass was dropped");
        nesting.join().unwrap();
        closer.join().unwrap();
    }

    #[test]
    fn takes_its_own_lock_files_and_leaves_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("idx");
        let lock = lock_path(&out).unwrap();
        // A lock file a killed writer left (its note, or empty) is taken and removed after.
        for left in ["pid 1: relbert index build (since unix time 0)\n", ""] {
            std::fs::write(&lock, left).unwrap();
            let held = OutputLock::acquire(&out).unwrap();
            let note = std::fs::read_to_string(&lock).unwrap();
            assert!(note.starts_with(&format!("pid {}", std::process::id())));
            drop(held);
            assert!(!lock.exists());
        }
        // A user's file of that name is neither emptied nor removed.
        std::fs::write(&lock, "my notes\n").unwrap();
        let err = OutputLock::acquire(&out).unwrap_err();
        assert!(matches!(err, IndexError::NotOurs { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&lock).unwrap(), "my notes\n");
        std::fs::remove_file(&lock).unwrap();
        // Nor is the file a symbolic link of that name points to.
        let target = dir.path().join("target.txt");
        std::fs::write(&target, "pid 7: kept\n").unwrap();
        std::os::unix::fs::symlink(&target, &lock).unwrap();
        let err = OutputLock::acquire(&out).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "pid 7: kept\n");
        assert!(std::fs::symlink_metadata(&lock).unwrap().is_symlink());
    }

    /// [`holder`] tells a lock another process holds (here: another open file, which flock
    /// treats as another holder) from none, a stale lock file, and this process's own lock.
    #[test]
    fn the_holder_of_a_lock_is_named_only_while_another_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("idx");
        let lock = lock_path(&out).unwrap();
        assert_eq!(holder(&out), None, "no lock file");
        let note = "pid 4242: relbert index add --index idx --pairs - (since unix time 1)";
        std::fs::write(&lock, format!("{note}\n")).unwrap();
        assert_eq!(holder(&out), None, "a lock file a killed writer left");
        let other = File::open(&lock).unwrap();
        other.try_lock().unwrap();
        assert_eq!(holder(&out).as_deref(), Some(note));
        // Asking took nothing: the holder still has it, and it is free once let go.
        assert!(matches!(
            File::open(&lock).unwrap().try_lock_shared(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(other);
        assert_eq!(holder(&out), None);
        std::fs::remove_file(&lock).unwrap();
        let ours = OutputLock::acquire(&out).unwrap();
        assert_eq!(holder(&out), None, "this process's own lock");
        drop(ours);
    }

    /// A reader's probe ([`holder`]) holds the lock shared for an instant; a writer starting
    /// in that instant was refused, naming the note a killed run left as the holder. It
    /// tries again for [`PROBE_GRACE`]; a lock held longer is still refused.
    #[test]
    fn a_writer_is_not_refused_by_a_readers_probe() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("idx");
        let lock = lock_path(&out).unwrap();
        std::fs::write(&lock, "pid 4242: relbert index add (since unix time 1)\n").unwrap();
        let probe = File::open(&lock).unwrap();
        probe.try_lock_shared().unwrap();
        let let_go = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(probe);
        });
        let taken = OutputLock::acquire(&out);
        let_go.join().unwrap();
        assert!(taken.is_ok(), "{:?}", taken.err());
        drop(taken);
        std::fs::write(&lock, "pid 4242: relbert index add (since unix time 1)\n").unwrap();
        let held = File::open(&lock).unwrap();
        held.try_lock_shared().unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(
            OutputLock::acquire(&out),
            Err(IndexError::Locked { .. })
        ));
        assert!(started.elapsed() >= PROBE_GRACE);
    }

    /// The lock made the missing folders above its output (`create_dir_all`), so every
    /// command's mistyped output path left folders behind, and a folder deleted after a
    /// command had checked it was made again. Now refused, typed, with nothing made.
    #[test]
    fn a_missing_folder_is_refused_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        for out in [missing.join("idx"), missing.join("deeper/idx")] {
            match OutputLock::acquire(&out) {
                Err(IndexError::FolderMissing { path, output }) => {
                    assert_eq!(path, out.parent().unwrap());
                    assert_eq!(output, out);
                }
                other => panic!("{other:?}"),
            }
            assert!(!missing.exists(), "{} was made", missing.display());
        }
        let said = OutputLock::acquire(&missing.join("idx"))
            .unwrap_err()
            .to_string();
        assert!(said.contains(&missing.display().to_string()), "{said}");
        assert!(said.contains("create it first"), "{said}");
        // A file where the folder should be: refused the same way, the file left as it is.
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "mine\n").unwrap();
        let err = OutputLock::acquire(&file.join("idx")).unwrap_err();
        assert!(matches!(err, IndexError::FolderMissing { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine\n");
        // The folder there: the lock is taken, and its file removed on release.
        std::fs::create_dir(&missing).unwrap();
        let held = OutputLock::acquire(&missing.join("idx")).unwrap();
        assert!(held.path().exists());
        drop(held);
        assert_eq!(std::fs::read_dir(&missing).unwrap().count(), 0);
    }
}

/// Tests of FN2 (audit N): lock files that cannot be written, said in words.
#[cfg(test)]
mod unwritable_tests {
    use super::*;

    /// Found by an audit: an output on a read-only file system failed with the lock file's
    /// bare `Read-only file system (os error 30)`. Needs root (a read-only bind mount);
    /// skipped, with the reason printed, elsewhere.
    #[test]
    fn a_read_only_folder_is_said_in_words() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ro");
        std::fs::create_dir(&dir).unwrap();
        let p = dir.to_str().unwrap();
        let ok = |args: &[&str]| {
            std::process::Command::new("mount")
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !ok(&["--bind", p, p]) {
            crate::test_skip(format_args!("cannot bind-mount {p} (not root?)"));
            return;
        }
        let remounted = ok(&["-o", "remount,ro,bind", p]);
        let r = remounted.then(|| OutputLock::acquire(&dir.join("idx")));
        let _ = std::process::Command::new("umount").arg(p).status();
        let Some(r) = r else {
            crate::test_skip(format_args!("cannot remount {p} read-only"));
            return;
        };
        match r {
            Err(e @ IndexError::FolderNotWritable { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("relbert cannot write in"), "{msg}");
                assert!(msg.contains("read-write"), "{msg}");
            }
            other => panic!("expected FolderNotWritable, got {other:?}"),
        }
    }

    /// A folder this user may not write: said in words. Only without CAP_DAC_OVERRIDE
    /// (root's, as a rule), which permissions do not stop; skipped with it.
    #[test]
    fn an_unwritable_folder_is_said_in_words() {
        if has_capability(CAP_DAC_OVERRIDE) {
            crate::test_skip(format_args!("CAP_DAC_OVERRIDE may write to any folder"));
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("locked");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        let r = OutputLock::acquire(&dir.join("idx"));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            matches!(r, Err(IndexError::FolderNotWritable { .. })),
            "{r:?}"
        );
    }

    /// `CAP_DAC_OVERRIDE`, which passes permission checks (linux/capability.h).
    const CAP_DAC_OVERRIDE: u32 = 1;

    /// The effective uid of this process.
    fn euid() -> u32 {
        // SAFETY: geteuid(2) has no preconditions.
        unsafe { libc::geteuid() }
    }

    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Found by a review: a stale lock in a folder this user may write, sticky bit or not,
    /// where they own the folder, is theirs to remove: plain `rm` advice.
    #[test]
    fn a_stale_lock_this_user_may_remove_is_said_to_be_safe_to_remove() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(".idx.lock");
        std::fs::write(&lock, "").unwrap();
        for mode in [0o755, 0o1777] {
            chmod(dir.path(), mode);
            assert_eq!(unremovable(&lock, dir.path(), euid().wrapping_add(1)), None);
        }
        let advice = crate::error::stale_advice(&lock, "user alice (uid 1000)", None);
        assert_eq!(
            advice,
            format!(
                "it is safe to remove: `rm {}`, then run again",
                lock.display()
            )
        );
    }

    /// Found by a review: a folder this user may not write keeps them from removing a
    /// file in it, and so does its owner's file: the advice asks the folder's owner, or
    /// anyone who may write in it, not the file's owner alone. CAP_DAC_OVERRIDE (root's, as
    /// a rule) may write any folder, so with it the folder is found no obstacle.
    #[test]
    fn a_stale_lock_in_a_folder_this_user_may_not_write_sends_them_to_its_writers() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(".idx.lock");
        std::fs::write(&lock, "").unwrap();
        chmod(dir.path(), 0o555);
        let found = unremovable(&lock, dir.path(), euid());
        chmod(dir.path(), 0o755);
        let me = owner_name(euid());
        if has_capability(CAP_DAC_OVERRIDE) {
            assert_eq!(found, None, "CAP_DAC_OVERRIDE may write any folder");
        } else {
            assert_eq!(
                found,
                Some(Unremovable::FolderNotWritable {
                    folder_owner: me.clone()
                })
            );
        }
        let why = Unremovable::FolderNotWritable {
            folder_owner: "user bob (uid 1001)".into(),
        };
        let advice = crate::error::stale_advice(&lock, "user alice (uid 1000)", Some(&why));
        let folder = dir.path().display();
        assert!(
            advice.contains(&format!("({folder} is not writable to this user)"))
                && advice.contains(&format!(
                    "ask the owner of {folder} (user bob (uid 1001)), or anyone who may write \
                     in it, to remove it (`rm {}`)",
                    lock.display()
                ))
                && advice.contains("another `--out`")
                && !advice.contains("alice"),
            "{advice}"
        );
    }

    /// Found by a review: in a folder with its sticky bit (`/tmp`) only the file's owner or
    /// the folder's may remove a file, though the folder is writable to all. Checked on
    /// `/tmp` itself (root's) with a file of another uid where this test has no CAP_FOWNER
    /// (root has it, as a rule, and passes the sticky bit; see
    /// `a_root_without_cap_fowner_is_stopped_by_a_sticky_bit`); the folder's owner passes
    /// it, which a sticky folder of its own shows.
    #[test]
    fn a_stale_lock_under_a_sticky_bit_sends_this_user_to_the_owners() {
        let me = euid();
        let tmp = Path::new("/tmp");
        let md = std::fs::metadata(tmp).unwrap();
        if !has_capability(CAP_FOWNER) && md.mode() & super::STICKY != 0 && md.uid() != me {
            let other = if me == 65534 { 65533 } else { 65534 };
            let lock = tmp.join(".idx.lock");
            assert_eq!(
                unremovable(&lock, tmp, other),
                Some(Unremovable::Sticky {
                    folder_owner: owner_name(md.uid())
                })
            );
        } else {
            eprintln!(
                "/tmp not checked: this test holds CAP_FOWNER, or /tmp is not another's sticky \
                 folder"
            );
            let dir = tempfile::tempdir().unwrap();
            chmod(dir.path(), 0o1777);
            let lock = dir.path().join(".idx.lock");
            assert_eq!(unremovable(&lock, dir.path(), me.wrapping_add(1)), None);
        }
        let why = Unremovable::Sticky {
            folder_owner: "user root (uid 0)".into(),
        };
        let lock = tmp.join(".idx.lock");
        let advice = crate::error::stale_advice(&lock, "user alice (uid 1000)", Some(&why));
        assert!(
            advice.contains("/tmp has its sticky bit set")
                && advice.contains(
                    "ask user alice (uid 1000) or the owner of /tmp (user root (uid 0)) to \
                     remove it (`rm /tmp/.idx.lock`)"
                ),
            "{advice}"
        );
    }

    /// The sticky bit's rule is the kernel's, where CAP_FOWNER, not being root,
    /// passes it.
    #[test]
    fn the_sticky_rule_asks_for_cap_fowner_not_root() {
        let (sticky, plain) = (0o41777, 0o40777);
        // A root without CAP_FOWNER (a container's) is refused; a holder that is not root
        // is not.
        assert!(sticky_refuses(sticky, 1000, 1001, 0, false));
        assert!(!sticky_refuses(sticky, 1000, 1001, 1002, true));
        // The file's owner and the folder's pass; without the bit there is no such rule.
        assert!(!sticky_refuses(sticky, 1000, 1001, 1001, false));
        assert!(!sticky_refuses(sticky, 1000, 1001, 1000, false));
        assert!(!sticky_refuses(plain, 1000, 1001, 1002, false));
    }

    /// Found by a review: in a rootless container (a user namespace) CAP_FOWNER passes a
    /// sticky bit only for a file whose owner the namespace maps; one it does not shows as
    /// the overflow uid, and the advice said `rm` would remove it. The maps are parsed as
    /// the kernel writes them; the overflow id counts as mapped only where every id is.
    #[test]
    fn cap_fowner_passes_a_sticky_bit_only_for_an_owner_the_namespace_maps() {
        let init = "         0          0 4294967295\n";
        let rootless = "         0       1000          1\n         1     100000      65536\n";
        let only_root = "0 1000 1\n";
        for id in [0, 1000, OVERFLOW_ID, u32::MAX - 1] {
            assert!(id_mapped(init, id, OVERFLOW_ID), "{id}");
        }
        assert!(id_mapped(rootless, 0, OVERFLOW_ID));
        assert!(id_mapped(rootless, 1000, OVERFLOW_ID));
        assert!(id_mapped(rootless, 65536, OVERFLOW_ID));
        assert!(!id_mapped(rootless, 65537, OVERFLOW_ID));
        // Mapped, but also what every unmapped owner shows as.
        assert!(!id_mapped(rootless, OVERFLOW_ID, OVERFLOW_ID));
        // Where another id is the overflow one, 65534 is an id like any other.
        assert!(id_mapped(rootless, OVERFLOW_ID, 65533));
        assert!(!id_mapped(only_root, 1, OVERFLOW_ID));
        assert!(!id_mapped("", 0, OVERFLOW_ID));
        // A line not of three ids is no range.
        assert!(!id_mapped("0 0\n0 0 x\n0 0 10 1\n", 0, OVERFLOW_ID));
        assert!(id_mapped("junk\n5 7 1\n", 5, OVERFLOW_ID));

        // The decision: a root of the container holding CAP_FOWNER, a lock of an unmapped
        // owner in root's sticky folder (`/tmp`, mapped as 0), is refused.
        let proc = |uid_map: &'static str, gid_map: &'static str| {
            move |path: &str| match path {
                "/proc/self/uid_map" => Some(uid_map.to_string()),
                "/proc/self/gid_map" => Some(gid_map.to_string()),
                "/proc/sys/kernel/overflowuid" | "/proc/sys/kernel/overflowgid" => {
                    Some(format!("{OVERFLOW_ID}\n"))
                }
                _ => None,
            }
        };
        let o = OVERFLOW_ID;
        assert!(!fowner_applies(true, o, 0, proc(only_root, only_root)));
        assert!(!fowner_applies(true, o, 0, proc(rootless, rootless)));
        // The group must be mapped as well.
        assert!(!fowner_applies(true, 0, o, proc(rootless, rootless)));
        assert!(fowner_applies(true, 1000, 1000, proc(rootless, rootless)));
        assert!(fowner_applies(true, o, o, proc(init, init)));
        assert!(!fowner_applies(false, 1000, 1000, proc(init, init)));
        // No /proc to read: every id is taken for mapped.
        assert!(fowner_applies(true, o, o, |_: &str| None));
        let sticky = 0o41777;
        let fowner = fowner_applies(true, o, 0, proc(only_root, only_root));
        assert!(sticky_refuses(sticky, 0, o, 1, fowner));
    }

    /// Takes `cap` out of the calling thread's effective set (capabilities are per thread,
    /// so the rest of the test process keeps it).
    #[cfg(target_os = "linux")]
    fn drop_effective(cap: u32) {
        let mut data = capabilities().expect("capget");
        data[(cap / 32) as usize].effective &= !(1 << (cap % 32));
        let mut header = CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        };
        // SAFETY: capset(2) with a version 3 header and the two data structs it reads.
        let r = unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                data.as_ptr(),
            )
        };
        assert_eq!(r, 0, "capset: {}", std::io::Error::last_os_error());
    }

    /// Against the kernel: advice about a stale lock under a sticky bit took root
    /// for a process that passes it, but the kernel asks for CAP_FOWNER, which a container
    /// may drop. A thread of this process without it cannot remove another's file from
    /// another's sticky folder, and is told to ask the owners; with it, `rm` works and is
    /// what is said. Needs CAP_FOWNER and CAP_CHOWN (root's) to begin with; skipped
    /// otherwise.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_root_without_cap_fowner_is_stopped_by_a_sticky_bit() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path().join("sticky");
        std::fs::create_dir(&folder).unwrap();
        chmod(&folder, 0o1777);
        let lock = folder.join(".idx.lock");
        std::fs::write(&lock, "").unwrap();
        // Two uids other than this process's.
        let me = euid();
        let (folder_uid, file_uid) = (me.wrapping_add(4242), me.wrapping_add(4243));
        let ready = has_capability(CAP_FOWNER)
            && std::os::unix::fs::chown(&folder, Some(folder_uid), None).is_ok()
            && std::os::unix::fs::chown(&lock, Some(file_uid), None).is_ok();
        if !ready {
            crate::test_skip(format_args!("needs CAP_FOWNER and CAP_CHOWN"));
            return;
        }
        let (l, f) = (lock.clone(), folder.clone());
        let (held, found, removed) = std::thread::spawn(move || {
            drop_effective(CAP_FOWNER);
            (
                has_capability(CAP_FOWNER),
                unremovable(&l, &f, file_uid),
                std::fs::remove_file(&l),
            )
        })
        .join()
        .unwrap();
        assert!(!held, "CAP_FOWNER was not dropped");
        assert_eq!(
            removed.map_err(|e| e.raw_os_error()),
            Err(Some(libc::EPERM)),
            "the kernel let a thread without CAP_FOWNER remove it"
        );
        assert_eq!(
            found,
            Some(Unremovable::Sticky {
                folder_owner: owner_name(folder_uid)
            })
        );
        // With CAP_FOWNER the owners' check is passed: `rm` is said, and works.
        assert_eq!(unremovable(&lock, &folder, file_uid), None);
        std::fs::remove_file(&lock).unwrap();
    }

    /// Clears the attributes `chattr` set on drop, so that a failed test leaves nothing
    /// that root cannot remove.
    struct Chattred(Vec<(PathBuf, &'static str)>);

    impl Drop for Chattred {
        fn drop(&mut self) {
            for (p, undo) in &self.0 {
                let _ = std::process::Command::new("chattr")
                    .arg(undo)
                    .arg(p)
                    .status();
            }
        }
    }

    /// Found by a review: an immutable or append-only lock file, or one in an immutable or
    /// append-only folder, cannot be removed even by root, yet the advice said `rm`. Now it
    /// names the attribute and says `chattr -i`/`-a`, as root, comes first. Needs root and a
    /// file system that keeps the attributes; skipped otherwise.
    #[test]
    fn an_immutable_stale_lock_says_chattr_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("f");
        std::fs::create_dir(&folder).unwrap();
        let lock = folder.join(".idx.lock");
        std::fs::write(&lock, "").unwrap();
        let mut set = Chattred(Vec::new());
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&lock)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            crate::test_skip(format_args!(
                "chattr +i does not work here (needs root and ext4 or the like)"
            ));
            return;
        }
        set.0.push((lock.clone(), "-i"));
        assert_eq!(
            unremovable(&lock, &folder, euid()),
            Some(Unremovable::Attribute {
                on: vec![(lock.clone(), 'i')]
            })
        );
        let ok = std::process::Command::new("chattr")
            .arg("+a")
            .arg(&folder)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chattr +a of a folder");
        set.0.push((folder.clone(), "-a"));
        let found = unremovable(&lock, &folder, euid());
        drop(set);
        let why = Unremovable::Attribute {
            on: vec![(lock.clone(), 'i'), (folder.clone(), 'a')],
        };
        assert_eq!(found.as_ref(), Some(&why));
        let advice = crate::error::stale_advice(&lock, "user root (uid 0)", Some(&why));
        let (l, f) = (lock.display(), folder.display());
        assert!(
            advice.contains(&format!(
                "not even root, while {l} is immutable (`chattr +i`) and {f} is append-only \
                 (`chattr +a`)"
            )) && advice.contains(&format!(
                "as root clear that first (`chattr -i {l}; chattr -a {f}`), then `rm {l}`"
            )) && !advice.contains("it is safe to remove: `rm"),
            "{advice}"
        );
    }
}
