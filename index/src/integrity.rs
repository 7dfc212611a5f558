//! Memory-mapped index files whose blocks are verified lazily, the first time a reader uses
//! them.
//!
//! A `Protected` file holds the map, the block table read at open (see [`crate::format`])
//! and a bitset of the blocks already verified. Every read of the payload by the index (a
//! vector row, a neighbour list, a pair record, a lookup-table entry) first asks
//! `Protected::ok` for its byte range: a set bit costs one relaxed atomic load; a clear bit
//! computes the CRC of that block once (well under a microsecond for a 4 KiB page, which the
//! read faults in anyway), compares it with the table and
//! sets the bit. A mismatch is reported to the caller, which turns it into an
//! [`IndexError::BlockChecksum`] instead of an answer.
//!
//! This is the design RocksDB uses for its SST blocks (a checksum per block, checked when the
//! block is read) adapted to a memory map: the map has no read call to hook, so the hook is in
//! the accessors. Open stays cheap (the tables are 4 bytes per 4 KiB: 1.5 MB for a 1M × 384
//! `f32` index) and the cost of verification is spread over the first queries, which touch
//! only the blocks they need. Bits are never cleared: the files are immutable once published
//! (writers create new files and rename them into place), so a block that verified once stays
//! valid for the life of the map.
//!
//! That holds only for files published that way. A file overwritten in place (`cp` over an
//! index's files: the same inode, truncated and rewritten) changes under the map: a read
//! past its new end faults the process with SIGBUS, and blocks verified before are not
//! checked again. Each `Protected` therefore records its file's length, modification time
//! and status change time at open (`Stamp`); `Protected::changed_in_place` compares
//! them with an `fstat` of the open file (about a microsecond), so a reader that asks
//! before reading (`relbert serve` does on every request, a `query` stream on every line)
//! stops using a mapping known to be overwritten. A rename publishes
//! a new inode and leaves the mapped one as it was: not a change in place.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::Mmap;

use crate::error::{IndexError, Result};
use crate::format::{
    open_in, read_block_table, read_header, verify_payload_with, FileKind, Header, HEADER_LEN,
};

/// A mapped index file with lazily verified blocks.
pub(crate) struct Protected {
    pub path: PathBuf,
    pub file: File,
    pub header: Header,
    map: Mmap,
    table: Vec<u32>,
    verified: Box<[AtomicU64]>,
    /// The file as it was when mapped.
    stamp: Stamp,
}

/// What [`Protected::changed_in_place`] compares: a file's length, modification time and
/// status change time, read from the open file (so they are the mapped inode's, whatever
/// the path holds now; its inode number therefore never differs and is not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    /// The status change time (seconds, nanoseconds) and the link count, which also
    /// changes it without a write.
    #[cfg(unix)]
    status: ((i64, i64), u64),
}

impl Stamp {
    fn of(file: &File) -> std::io::Result<Stamp> {
        let m = file.metadata()?;
        Ok(Stamp {
            len: m.len(),
            modified: m.modified().ok(),
            #[cfg(unix)]
            status: {
                use std::os::unix::fs::MetadataExt;
                ((m.ctime(), m.ctime_nsec()), m.nlink())
            },
        })
    }

    /// Whether the file was written since `self` was taken. Audit N: `cp -p` (or `rsync
    /// --inplace -t`) of a file of the same length and modification time went unseen; the
    /// write moves the status change time all the same. That time also moves when a link
    /// is made or removed (publishing a new index by a rename and deleting the old one
    /// unlinks the mapped files; a grown index may link them), which does not touch the
    /// bytes: with the link count also changed it is not taken as a write. A change of mode
    /// or owner alone is (review R23: `cp -p` from a file of another mode puts both back
    /// with the bytes); its false alarm costs a reopen, a write missed costs wrong answers.
    fn written_since(&self, now: &Stamp) -> bool {
        if self.len != now.len || self.modified != now.modified {
            return true;
        }
        #[cfg(unix)]
        {
            let ((was, links), (is, links2)) = (self.status, now.status);
            if was != is && links == links2 {
                return true;
            }
        }
        false
    }
}

impl Protected {
    /// Opens the file `kind` inside the directory open as `handle` ([`open_in`]), checks its
    /// header and reads its block table; `dir` is the directory's path, for messages. With
    /// `random_access` the kernel is told not to read ahead (searches touch scattered rows).
    pub fn open_in(
        handle: &File,
        dir: &Path,
        kind: FileKind,
        random_access: bool,
    ) -> Result<Protected> {
        let path = dir.join(kind.file_name());
        let file = open_in(handle, kind, &path)?;
        Self::from_file(path, kind, file, random_access)
    }

    fn from_file(
        path: PathBuf,
        kind: FileKind,
        file: File,
        random_access: bool,
    ) -> Result<Protected> {
        // Taken before anything is read: a write after it shows as a change.
        let stamp = Stamp::of(&file).map_err(|e| IndexError::io(&path, e))?;
        let header = read_header(&path, kind, &file)?;
        let table = read_block_table(&path, &file, &header)?;
        // SAFETY: index files are immutable once published (writers build a new directory and
        // rename it into place); the map is only read. A file overwritten in place by something
        // else breaks that; readers learn of it from `changed_in_place` (see the module doc).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| IndexError::io(&path, e))?;
        if random_access {
            // Without this the kernel's read-ahead maps ~64 KiB around every touched row,
            // inflating resident memory ~40-fold for 1.5 KiB rows. Failure is harmless.
            let _ = map.advise(memmap2::Advice::Random);
        }
        if map.len() as u64 != header.file_len() {
            return Err(IndexError::Truncated {
                path,
                expected: header.file_len(),
                actual: map.len() as u64,
            });
        }
        let words = table.len().div_ceil(64);
        Ok(Protected {
            path,
            file,
            header,
            map,
            table,
            verified: (0..words).map(|_| AtomicU64::new(0)).collect(),
            stamp,
        })
    }

    /// Whether the mapped file was written since it was opened (its length, modification
    /// time or status change time differ from those recorded at open, see [`Stamp`]): it was overwritten in place, and reading the
    /// map may fault or return bytes that were never verified. A file that cannot be
    /// `fstat`ed is taken as changed. One `fstat`; never reads the map.
    pub fn changed_in_place(&self) -> bool {
        Stamp::of(&self.file).map_or(true, |now| self.stamp.written_since(&now))
    }

    /// The payload (after the header, before the block table).
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.map[HEADER_LEN..HEADER_LEN + self.header.payload_len as usize]
    }

    /// The block table read at open (one CRC32 per block), which every block is checked
    /// against; part of what the index id is derived from ([`crate::format::index_id`]).
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    /// Length of the whole file.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Whether every block overlapping payload bytes `start..end` verifies (checking, once,
    /// those not verified yet). Returns the first bad block otherwise.
    #[inline(always)]
    pub fn ok(&self, start: usize, end: usize) -> std::result::Result<(), u64> {
        if end <= start {
            return Ok(());
        }
        let shift = self.header.block_shift;
        let (first, last) = (start >> shift, (end - 1) >> shift);
        for b in first..=last {
            let (w, bit) = (b >> 6, 1u64 << (b & 63));
            let known = self
                .verified
                .get(w)
                .map(|a| a.load(Ordering::Relaxed) & bit != 0)
                .unwrap_or(false);
            if !known && !self.verify_block(b) {
                return Err(b as u64);
            }
        }
        Ok(())
    }

    /// [`ok`](Self::ok) as a `Result` with the error naming the file and block.
    #[inline(always)]
    pub fn check(&self, start: usize, end: usize) -> Result<()> {
        self.ok(start, end).map_err(|b| self.block_error(b))
    }

    /// The error for a bad block.
    pub fn block_error(&self, block: u64) -> IndexError {
        IndexError::block_mismatch(&self.path, block, self.header.block_len())
    }

    #[cold]
    #[inline(never)]
    fn verify_block(&self, b: usize) -> bool {
        let len = self.header.block_len() as usize;
        let payload = self.payload();
        let start = b.saturating_mul(len);
        let Some(bytes) = payload.get(start..start.saturating_add(len).min(payload.len())) else {
            return false;
        };
        let good = self.table.get(b) == Some(&crc32fast::hash(bytes));
        if good {
            if let Some(a) = self.verified.get(b >> 6) {
                a.fetch_or(1u64 << (b & 63), Ordering::Relaxed);
            }
        }
        good
    }

    /// Verifies every block now (reading the file, not the map, so resident memory does not
    /// grow) and marks them verified.
    pub fn verify_all(&self) -> Result<()> {
        self.verify_all_with(&mut |_| {})
    }

    /// [`Self::verify_all`], handing `on_read` the payload as it is read
    /// ([`crate::format::verify_payload_with`]).
    pub fn verify_all_with(&self, on_read: &mut dyn FnMut(&[u8])) -> Result<()> {
        verify_payload_with(&self.path, &self.file, &self.header, &self.table, on_read)?;
        for a in self.verified.iter() {
            a.store(u64::MAX, Ordering::Relaxed);
        }
        Ok(())
    }
}
