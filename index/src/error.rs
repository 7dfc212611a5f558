//! The crate's error type, [`IndexError`].
//!
//! Every failure that can be caused by the contents of an index directory (a truncated file, a
//! flipped byte, a file written by another format version) or by the caller's input (a vector of
//! the wrong dimension, a row out of range) is reported as a typed variant that names the file
//! or the value concerned; nothing in this crate panics on such input.

use std::path::PathBuf;

/// Errors raised while building, opening, verifying or querying an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// An I/O operation on `path` failed.
    // The OS message is part of this message and deliberately not a `#[source]`: `anyhow`'s
    // `{:#}` prints the whole chain, which would repeat it.
    #[error("{path}: {err}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// A file does not start with the magic bytes of its kind (not an index file, or the wrong one).
    #[error("{path}: not a relbert index `{kind}` file (bad magic bytes)")]
    BadMagic {
        /// The file concerned.
        path: PathBuf,
        /// Which index file was expected (`vectors`, `pairs`, `graph`, `meta`, `checkpoint`).
        kind: &'static str,
    },
    /// A file was written by a format version this build does not read.
    #[error(
        "{path}: format version {found} is not supported (this build reads version {expected})"
    )]
    UnsupportedVersion {
        /// The file concerned.
        path: PathBuf,
        /// The version recorded in the file.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// A file is shorter than its header says (an interrupted copy or write).
    #[error("{path}: truncated: expected {expected} bytes, found {actual}")]
    Truncated {
        /// The file concerned.
        path: PathBuf,
        /// Length implied by the header (header + payload).
        expected: u64,
        /// Length found on disk.
        actual: u64,
    },
    /// A file's payload does not match the CRC32 recorded in its header.
    #[error(
        "{path}: checksum mismatch in the {what}: recorded {expected:#010x}, computed {actual:#010x}"
    )]
    ChecksumMismatch {
        /// The file concerned.
        path: PathBuf,
        /// Which part of the file (`block table`, …).
        what: String,
        /// CRC32 recorded in the header.
        expected: u32,
        /// CRC32 computed over the payload.
        actual: u32,
    },
    /// A block of a file does not match its checksum: the file was damaged after it was
    /// written. Found when a query first touches the block, or by a full verification.
    // Not "rebuild the index" for the vectors or pairs: `index rebuild` and `index export` read
    // the same damaged block and fail on it too; only the pair list the index was built from
    // can make it again. A rebuild does not read the graph, so it is the way out of a damaged one.
    #[error("{path}: block {block} (bytes {start}..{end} of the payload) does not match its checksum: the file is damaged; {}", damaged_advice(.path))]
    BlockChecksum {
        /// The file concerned.
        path: PathBuf,
        /// Block number.
        block: u64,
        /// First payload byte of the block.
        start: u64,
        /// One past the last payload byte of the block.
        end: u64,
    },
    /// A file belongs to another index than the directory's `meta` (a file copied or moved in
    /// from elsewhere).
    #[error("{path}: this file belongs to another index (id {found}, while {dir}/meta has {expected}); the files of one index must not be mixed with another's")]
    ForeignFile {
        /// The file concerned.
        path: PathBuf,
        /// The index directory.
        dir: PathBuf,
        /// The id in `meta`.
        expected: String,
        /// The id in the file.
        found: String,
    },
    /// The index's id is not the one its files' content derives ([`crate::format::index_id`]):
    /// a file was edited or replaced by another index's with its header id rewritten, which
    /// the per-file checks (header CRC, block CRCs, id equal to `meta`'s) cannot see.
    #[error("{dir}: the index id {recorded} does not match its files' content (which gives {computed}): its meta, vectors, pairs or graph file was edited or replaced (one from another index, with its header rewritten?); build the index again or restore it from a copy")]
    IdMismatch {
        /// The index directory.
        dir: PathBuf,
        /// The id every header carries.
        recorded: String,
        /// The id derived from `meta` and the block tables.
        computed: String,
    },
    /// A path that should be a regular file (or a directory) is something else: a named
    /// pipe, a socket, a device. Refused before reading, since a read from a pipe blocks.
    #[error("{path}: is not {expected} ({found})")]
    NotRegular {
        /// The path concerned.
        path: PathBuf,
        /// What it should be (`a regular file`, `a directory`).
        expected: &'static str,
        /// What it is (`a named pipe`, `a socket`, …).
        found: &'static str,
    },
    /// Another process is writing the same output.
    #[error(
        "{path} is being written by another process ({holder}); wait for it to finish, or stop it"
    )]
    Locked {
        /// The output whose lock is held.
        path: PathBuf,
        /// What the lock file says of its holder (pid, command, start time), if readable.
        holder: String,
    },
    /// The folder that would hold an output (and its lock file) does not exist. A writer
    /// makes no folders above its output: a typo in a path left empty folders behind, and
    /// one deleted while a run started was made again.
    #[error("{path}: no such folder to hold {output} (relbert does not create folders); create it first, or give a path in an existing folder")]
    FolderMissing {
        /// The missing folder.
        path: PathBuf,
        /// The output it would hold.
        output: PathBuf,
    },
    /// `force` was given, but the existing output is not something relbert wrote, so it is
    /// not replaced.
    #[error("{path} exists and is not {what} written by relbert ({why}); refusing to replace it even with --force: move it away or choose another output")]
    NotOurs {
        /// The existing path.
        path: PathBuf,
        /// What relbert would have written there (`an index`, `a partial build`, …).
        what: &'static str,
        /// Why it is not recognised.
        why: String,
    },
    /// A file passed its header checks but its contents are inconsistent.
    #[error("{path}: corrupt index file: {reason}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A partial build's file no longer holds what its checkpoint vouched for (changed after
    /// it was written), or its checkpoint cannot vouch for it (an older relbert's): resuming
    /// would publish the damage under fresh checksums.
    #[error("{path}: {reason}; the interrupted build cannot be resumed: remove {partial} to start over (its pairs are encoded again)")]
    PartialDamaged {
        /// The file concerned.
        path: PathBuf,
        /// The partial build directory.
        partial: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The output directory already exists and `force` was not given.
    #[error("{path} already exists (pass force to replace it)")]
    AlreadyExists {
        /// The existing output directory.
        path: PathBuf,
    },
    /// A partial build on disk was left by another kind of run (an add, a rebuild, a build)
    /// or started with a different encoder, dimension, storage or input.
    #[error("{path}: {detail}")]
    PartialMismatch {
        /// The partial build directory.
        path: PathBuf,
        /// Which property differs (`run`, `dimension`, `storage (--f16)`, `number format
        /// (--dtype)`, `encoder`, `input …`).
        what: &'static str,
        // Boxed strings: the error is returned by value everywhere, and these three made it
        // the largest variant.
        /// The value recorded in the partial build.
        found: Box<str>,
        /// The value requested now.
        requested: Box<str>,
        /// The whole explanation: which run left the partial build (with its flags as its
        /// checkpoint records them), how it differs from this one, and what to do.
        detail: Box<str>,
    },
    /// Another writer published a new version of the index after the caller of an add, a
    /// remove or an in-place rebuild opened it and before that run took the index's writer
    /// lock: nothing was wrong with the request, and nothing was changed; the same command,
    /// run again, opens the new index and works on it.
    #[error("{path} was changed by another writer while this {run} was starting (it was index {opened} when opened; index {now} has been published there since), so {}", changed_advice(.run))]
    IndexChanged {
        /// The index directory.
        path: PathBuf,
        /// The id of the index the caller opened.
        opened: String,
        /// The id of the index the directory holds now.
        now: String,
        /// The command refused (`add`, `remove`, `rebuild`), as the user typed it after
        /// `relbert index`.
        run: &'static str,
    },
    /// An index directory that a build, rebuild, add or remove would replace (or one of its
    /// files) is write-protected: the user's way of saying it must not change, which relbert
    /// keeps rather than publish a writable directory in its place.
    #[error("{path} is write-protected: {why}. relbert takes that to mean the index must not be changed, and leaves it as it is; {}", protected_advice(.run, .path, .fix))]
    WriteProtected {
        /// The index directory.
        path: PathBuf,
        /// What is protected (the directory's or a file's mode or attribute, or this user's
        /// access).
        why: String,
        /// What undoes it, chosen by the cause: `chmod` for a mode, `chattr` (as root) for
        /// an immutable or append-only attribute, the owner for another user's index.
        fix: String,
        /// The command refused (`build`, `rebuild`, `add`, `remove`): the way around the
        /// protection is its own (only `build` and `rebuild` have `--out`).
        run: &'static str,
    },
    /// An index directory that a build, rebuild, add or remove would replace is a mount point
    /// (a Docker volume, a bind mount): a new index is put in its place by a rename, which
    /// cannot move a mount point (`EBUSY`). Refused before any work; said the same way should
    /// the publication meet it all the same.
    #[error("{path} is a mount point (a file system, such as a Docker volume or a bind mount, is mounted there): relbert puts a new index in place by renaming a directory over the old one, which cannot be done to a mount point, so the index was left as it is{}; {}", mount_left(.left), mount_advice(.run, .path))]
    MountPoint {
        /// The index directory.
        path: PathBuf,
        /// The command refused (`build`, `rebuild`, `add`, `remove`).
        run: &'static str,
        /// Where the finished new index was left when the publication itself was refused
        /// (the partial directory, which the next run removes); `None` when refused before.
        left: Option<PathBuf>,
    },
    /// The lock file beside an output could not be made or written for want of permission or
    /// on a read-only file system: relbert writes its lock and its partial build in the
    /// folder that holds the output, not only in the output itself.
    #[error("{path}: {err}: relbert cannot write in {folder}, the folder that holds {output}; it keeps its lock file ({path}) and its unfinished work ({output}.partial) there, beside the output, so {}", folder_advice(.err))]
    FolderNotWritable {
        /// The lock file.
        path: PathBuf,
        /// The folder that holds the output.
        folder: PathBuf,
        /// The output.
        output: PathBuf,
        /// The underlying error (`EACCES`, `EPERM`, `EROFS`).
        err: std::io::Error,
    },
    /// A lock file left by another user (which this user may not open for writing) that no
    /// process holds: safe to remove, by this user when nothing keeps them from it, else by
    /// the one who can.
    #[error("{path} is a stale lock file left by {owner} (no process holds it), which this user may not write; {}", stale_advice(.path, .owner, .unremovable.as_deref()))]
    StaleLock {
        /// The lock file.
        path: PathBuf,
        /// Its owner, by name where known (`user alice (uid 1000)`).
        owner: String,
        /// Why this user cannot remove it either, or `None` when they can. Boxed: the error
        /// is returned by value everywhere.
        unremovable: Option<Box<Unremovable>>,
    },
    /// The lock file beside an output could not be made or written for want of space (a full
    /// disk, a quota, a file size limit): nothing was written.
    #[error("{path}: {err} (relbert's lock file beside {output}; nothing was written): make room (free space, or raise the quota or file size limit) and run the same command again")]
    LockNoSpace {
        /// The lock file.
        path: PathBuf,
        /// The output it locks.
        output: PathBuf,
        /// The underlying error (`ENOSPC`, `EDQUOT`, `EFBIG`).
        err: std::io::Error,
    },
    /// A build, rebuild or add published the new index, but the index it replaced (moved to
    /// `old` by the exchange) could not be removed.
    #[error("{path} now holds the new index, but the index it replaced could not be removed from {old}: {err}; that copy is no longer used: remove {old} yourself (after `chmod -R u+w {old}` if it is write-protected)")]
    OldIndexLeft {
        /// The published index directory.
        path: PathBuf,
        /// Where the replaced index is.
        old: PathBuf,
        /// Why it could not be removed.
        err: std::io::Error,
    },
    /// A leftover partial directory with no checkpoint (nothing there to resume), which a
    /// build removes before it starts again, could not be removed.
    #[error("{path} holds {what}, which is removed before the build, rebuild or add starts again, but it could not be removed: {err}; remove {path} yourself (after `chmod -R u+w {path}` if it is write-protected) and run again")]
    LeftoverNotRemoved {
        /// The leftover directory.
        path: PathBuf,
        /// What it holds, in words.
        what: String,
        /// Why it could not be removed.
        err: std::io::Error,
    },
    /// A write into a partial build failed for want of space (a full disk, a quota, a file
    /// size limit). What was done up to the last checkpoint is kept, and resumed once space
    /// is freed; the partial directory, which grows to the size of the index, is named so
    /// that it can be removed instead.
    #[error("{path}: {err}; {partial} keeps the unfinished {run} (it grows as large as the index being made): make room (free space, or raise the quota or file size limit) and run the same {run} again to resume it, or remove {partial} to give it up and free its space{}", spool_note(.path))]
    NoSpace {
        /// The file whose write failed.
        path: PathBuf,
        /// The partial build directory.
        partial: PathBuf,
        /// What the partial build is (`build`, `rebuild`, `add`).
        run: &'static str,
        /// The underlying error.
        err: std::io::Error,
    },
    /// A write into a partial build failed for want of space (as [`IndexError::NoSpace`]),
    /// and the partial directory, which this run made and which held nothing worth resuming,
    /// was removed: nothing was kept, and the index (for an add or a rebuild, the source) is
    /// as it was. Said so, lest the named file in `<out>.partial` be looked for.
    #[error("{path}: {err} ({}): make room (free space, or raise the quota or file size limit) and run the same {run} again{}", removed_note(.run), spool_note(.path))]
    PartialRemoved {
        /// The file whose write failed.
        path: PathBuf,
        /// What the partial build was for (`build`, `rebuild`, `add`).
        run: &'static str,
        /// The underlying error.
        err: std::io::Error,
    },
    /// A vector or vector buffer has the wrong length.
    #[error("dimension mismatch: expected {expected} values, got {actual}")]
    DimensionMismatch {
        /// The expected number of values.
        expected: usize,
        /// The number of values supplied.
        actual: usize,
    },
    /// A vector contains NaN/infinite values or has zero length, so it cannot be normalised.
    #[error("invalid vector at row {row}: {reason}")]
    InvalidVector {
        /// Row (within the chunk appended) of the offending vector.
        row: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A row number is not below the index's count.
    #[error("row {row} out of range (index holds {count} rows)")]
    RowOutOfRange {
        /// The requested row.
        row: usize,
        /// The number of rows in the index.
        count: usize,
    },
    /// A parameter is outside its valid range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// Serialising or deserialising the `meta` (or `checkpoint`) record failed.
    #[error("{path}: cannot decode metadata: {reason}")]
    Meta {
        /// The file concerned.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
}

/// Whether `err` says the file system, a quota or a file size limit has no room for what
/// was written (`ENOSPC`, `EDQUOT`, `EFBIG`): the failures whose fix is room elsewhere or
/// less to write, not a change to the input. The index's writers and relbert's spill files
/// tell these from other I/O errors alike, so that both give the same advice.
pub fn is_out_of_space(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG)
    )
}

impl IndexError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        IndexError::Io {
            path: path.into(),
            err,
        }
    }

    /// Builds a [`IndexError::BlockChecksum`] for block `block` of `block_len` bytes.
    pub(crate) fn block_mismatch(path: impl Into<PathBuf>, block: u64, block_len: u64) -> Self {
        IndexError::BlockChecksum {
            path: path.into(),
            block,
            start: block * block_len,
            end: (block + 1) * block_len,
        }
    }

    /// An I/O error on a file in `partial` that says the disk, a quota or the file size
    /// limit is full, as [`IndexError::NoSpace`] naming `partial` (a partial build of a
    /// `run`); any other error as it is.
    pub(crate) fn no_space_in(self, partial: &std::path::Path, run: &'static str) -> Self {
        match self {
            IndexError::Io { path, err } if path.starts_with(partial) && is_out_of_space(&err) => {
                IndexError::NoSpace {
                    path,
                    partial: partial.to_path_buf(),
                    run,
                    err,
                }
            }
            e => e,
        }
    }

    /// [`IndexError::NoSpace`], whose advice names the partial directory, as
    /// [`IndexError::PartialRemoved`], for when the partial build has been removed since (a
    /// run that made it and failed before it held anything worth resuming). Any other error
    /// as it is.
    pub(crate) fn partial_removed(self) -> Self {
        match self {
            IndexError::NoSpace { path, err, run, .. } => {
                IndexError::PartialRemoved { path, run, err }
            }
            e => e,
        }
    }

    /// An I/O error that says `dir` is busy (`EBUSY`, as a rename of a mount point does) as
    /// [`IndexError::MountPoint`], naming `left`, where the finished index stays; any other
    /// error as it is.
    pub(crate) fn busy_mount(
        self,
        dir: &std::path::Path,
        run: &'static str,
        left: &std::path::Path,
    ) -> Self {
        match self {
            IndexError::Io { path, err }
                if path == dir && err.raw_os_error() == Some(libc::EBUSY) =>
            {
                IndexError::MountPoint {
                    path,
                    run,
                    left: Some(left.to_path_buf()),
                }
            }
            e => e,
        }
    }

    /// Builds a [`IndexError::Corrupt`] for `path`.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        IndexError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// What [`IndexError::IndexChanged`] says after "so": that nothing was done and that the
/// same command, run again, works on the new index, in the words of the `run` refused.
fn changed_advice(run: &str) -> String {
    let (done, again) = match run {
        "add" => ("nothing was added", "add to the new index"),
        "remove" => ("nothing was removed", "remove the pairs from the new index"),
        "rebuild" => ("nothing was rebuilt", "rebuild the new index"),
        _ => ("nothing was changed", "work on the new index"),
    };
    format!("{done}: run the same {run} again to {again}")
}

/// What [`IndexError::WriteProtected`] advises for the `run` refused on `path`: undo the
/// protection (`fix`), or the command's own way around it. An add or a remove changes the
/// index in place and has no `--out`: a writable copy is made with `index rebuild --out`,
/// which only reads the protected index (a `cp -r` would carry the read-only modes along).
fn protected_advice(run: &str, path: &std::path::Path, fix: &str) -> String {
    let copy = format!(
        "make a writable copy with `relbert index rebuild --index {} --out COPY`",
        path.display()
    );
    match run {
        "add" => format!("to add to it, {fix}, or {copy} and add to the copy"),
        "remove" => {
            format!("to remove pairs from it, {fix}, or {copy} and remove them from the copy")
        }
        "rebuild" => {
            format!("to replace it, {fix}, or rebuild into another directory (another `--out`)")
        }
        _ => format!("to replace it, {fix}, or build into another directory (another `--out`)"),
    }
}

/// What [`IndexError::MountPoint`] says of the finished index a refused publication left.
fn mount_left(left: &Option<PathBuf>) -> String {
    match left {
        Some(p) => format!(
            " (the new index was finished but stays in {}, which the next run removes)",
            p.display()
        ),
        None => String::new(),
    }
}

/// What [`IndexError::MountPoint`] advises for the `run` refused on `path`: mount the folder
/// above instead (the index then is a folder inside the mount, which can be renamed), or
/// write the index elsewhere.
fn mount_advice(run: &str, path: &std::path::Path) -> String {
    let p = path.display();
    let mount = "mount the folder above it instead (so that the index is a folder inside the \
                 mount)";
    let copy = format!("make a copy elsewhere with `relbert index rebuild --index {p} --out COPY`");
    match run {
        "add" => format!("to add to it, {mount}, or {copy} and add to the copy"),
        "remove" => {
            format!("to remove pairs from it, {mount}, or {copy} and remove them from the copy")
        }
        "rebuild" => format!("{mount}, or rebuild into another directory (another `--out`)"),
        _ => format!("{mount}, or build into another directory (another `--out`)"),
    }
}

/// What [`IndexError::FolderNotWritable`] advises, by the cause.
fn folder_advice(err: &std::io::Error) -> &'static str {
    if err.raw_os_error() == Some(libc::EROFS) {
        "mount its file system read-write, or write the output in another folder (another \
         `--out`, or a copy made with `relbert index rebuild --out`)"
    } else {
        "have the folder's owner let you write there, or write the output in another folder \
         (another `--out`, or a copy made with `relbert index rebuild --out`)"
    }
}

/// Why a stale lock file ([`IndexError::StaleLock`]) cannot be removed by this user, which
/// decides whom its advice sends them to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unremovable {
    /// The lock file or its folder is immutable or append-only (`chattr +i`, `chattr +a`):
    /// unlink(2) fails then even for root, so the attribute must be cleared first.
    Attribute {
        /// What carries an attribute (the file, the folder, or both), each with the letter
        /// `chattr` names it by (`i` or `a`).
        on: Vec<(PathBuf, char)>,
    },
    /// The folder is not writable (or searchable) to this user.
    FolderNotWritable {
        /// The folder's owner, by name where known.
        folder_owner: String,
    },
    /// The folder has its sticky bit (`/tmp`), and this user owns neither it nor the file.
    Sticky {
        /// The folder's owner, by name where known.
        folder_owner: String,
    },
}

/// What [`IndexError::StaleLock`] advises: removing the lock file where this user may
/// (`unremovable` is `None`), else whom to ask, or another folder: removing a file takes
/// write permission on its folder (and, under a sticky bit, owning the file or the folder),
/// and no immutable or append-only attribute on either, so "remove it" alone was advice the
/// user could not follow.
pub(crate) fn stale_advice(
    path: &std::path::Path,
    owner: &str,
    unremovable: Option<&Unremovable>,
) -> String {
    let p = path.display();
    let folder = crate::lock::folder_of(path).display();
    let elsewhere = "or write the output in another folder (another `--out`)";
    match unremovable {
        None => format!("it is safe to remove: `rm {p}`, then run again"),
        Some(Unremovable::Attribute { on }) => {
            let what: Vec<String> = on
                .iter()
                .map(|(at, flag)| {
                    let attr = if *flag == 'i' {
                        "immutable"
                    } else {
                        "append-only"
                    };
                    format!("{} is {attr} (`chattr +{flag}`)", at.display())
                })
                .collect();
            let undo: Vec<String> = on
                .iter()
                .map(|(at, flag)| format!("chattr -{flag} {}", at.display()))
                .collect();
            format!(
                "no user may remove it, not even root, while {}: it is safe to remove, so as \
                 root clear that first (`{}`), then `rm {p}` and run again, {elsewhere}",
                what.join(" and "),
                undo.join("; ")
            )
        }
        Some(Unremovable::FolderNotWritable { folder_owner }) => format!(
            "this user may not remove it either ({folder} is not writable to this user): it is \
             safe to remove, so ask the owner of {folder} ({folder_owner}), or anyone who may \
             write in it, to remove it (`rm {p}`), {elsewhere}"
        ),
        Some(Unremovable::Sticky { folder_owner }) => format!(
            "this user may not remove it either ({folder} has its sticky bit set, so only the \
             file's owner or the folder's may remove it): it is safe to remove, so ask {owner} \
             or the owner of {folder} ({folder_owner}) to remove it (`rm {p}`), {elsewhere}"
        ),
    }
}

/// What [`IndexError::NoSpace`] and [`IndexError::PartialRemoved`] add when the write that
/// failed was the copy of standard input: the pairs it read are not kept anywhere.
fn spool_note(path: &std::path::Path) -> &'static str {
    let spool = crate::build::SPOOL;
    match path.file_name().and_then(|n| n.to_str()) {
        Some(n) if n == spool || n.strip_prefix(spool) == Some(".tmp") => {
            "; the pairs read from standard input could not be kept, so send them again"
        }
        _ => "",
    }
}

/// What [`IndexError::PartialRemoved`] says was kept, by the kind of run.
fn removed_note(run: &str) -> &'static str {
    match run {
        "add" => "the partial copy was removed; the index is unchanged",
        "rebuild" => "the partial rebuild was removed; the source index is unchanged",
        _ => "the partial build was removed; nothing was kept",
    }
}

/// Shorthand for `Result<T, IndexError>`.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// What a user can do about a damaged file of an index: a graph is made again from the
/// index's own pairs and vectors (`index rebuild` does not read it, nor encode); the vectors or
/// pairs only from the pair list the index was built from, or a copy.
fn damaged_advice(path: &std::path::Path) -> &'static str {
    if path.file_name().and_then(|n| n.to_str()) == Some(crate::format::FileKind::Graph.file_name())
    {
        "the graph is made again from the index's own pairs and vectors, without encoding, by \
         `relbert index rebuild --index DIR --out DIR --force` (unless the damage is in the \
         graph's small sections that every open reads: then build the index again from its \
         pair list, `relbert index build --pairs FILE --out DIR --force`, or restore it from a \
         copy)"
    } else {
        "build the index again from the pair list it was built from \
         (`relbert index build --pairs FILE --out DIR --force`) or restore it from a copy"
    }
}
