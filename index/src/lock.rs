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
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{IndexError, Result};

/// A held writer lock; released (and its file removed) on drop.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    file: File,
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

impl OutputLock {
    /// Takes the writer lock of `target`, or fails at once with [`IndexError::Locked`] naming
    /// the process that holds it.
    pub fn acquire(target: &Path) -> Result<OutputLock> {
        let path = lock_path(target)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| IndexError::io(parent, e))?;
        }
        for _ in 0..16 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| IndexError::io(&path, e))?;
            match file.try_lock() {
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
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if !same {
                continue;
            }
            let args: Vec<String> = std::env::args().collect();
            let since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let note = format!(
                "pid {}: {} (since unix time {since})\n",
                std::process::id(),
                args.join(" ")
            );
            file.set_len(0)
                .and_then(|_| file.seek(SeekFrom::Start(0)))
                .and_then(|_| file.write_all(note.as_bytes()))
                .map_err(|e| IndexError::io(&path, e))?;
            return Ok(OutputLock { path, file });
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
        // Remove first, then unlock (closing the file): a waiter that opened the old file
        // sees it unlinked and retries with a fresh one.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}
