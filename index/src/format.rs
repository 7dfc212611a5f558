//! The fixed file header shared by every index file, the block checksums that follow each
//! payload, and the helpers that write and check them.
//!
//! Each file is `header (64 bytes) | payload | block table`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic bytes naming the file kind (`RBIXVEC\0`, `RBIXPAIR`, `RBIXGRPH`, `RBIXMETA`, `RBIXCKPT`) |
//! | 8 | 4 | format version ([`FORMAT_VERSION`]) |
//! | 12 | 4 | block size as a power of two (`log2`, 12..=30) |
//! | 16 | 8 | payload length in bytes |
//! | 24 | 16 | the index's identity ([`IndexId`]; zero in a partial build's scratch files) |
//! | 40 | 4 | CRC32 (IEEE, `crc32fast`) of the block table |
//! | 44 | 16 | reserved, zero |
//! | 60 | 4 | CRC32 of header bytes 0..60 |
//!
//! The payload follows at offset 64, so a page-aligned memory map gives a payload aligned to
//! 64 bytes, which the zero-copy `f32`/`u16`/`u32` views and the AVX-512 loads rely on. The
//! block table holds one little-endian CRC32 per `block size` bytes of payload (the last block
//! may be shorter). A file must be exactly `64 + payload length + 4 × blocks` bytes long.
//!
//! # Versions
//!
//! Format 1 had a 32-byte header (magic, version, bytes 12..16 zero, payload length at 16, a
//! CRC32 of the whole payload at 24, bytes 28..32 zero) and no checksum of the header itself.
//! From format 2 on, every format keeps the magic at 0..8, the version at 8..12 and a CRC32
//! of bytes 0..60 at 60..64, so that a reader can tell a file of another version (checksum
//! good) from one whose version field was damaged (checksum bad): the first is refused as
//! [`IndexError::UnsupportedVersion`] (rebuild with the matching relbert), the second as
//! damage (restore or build again). A later format must keep those three fields where they
//! are, or older builds will call its files damaged.
//!
//! # Why blocks, and why an identity (see also the crate docs)
//!
//! A whole-file CRC can only be checked by reading the whole file, which a 1.5 GB `vectors`
//! file cannot afford at every open; so before version 2, large files were simply not checked
//! until `index info --verify`, and a damaged row gave a silently wrong answer. Like RocksDB's
//! per-block checksums and SQLite's page checksums (cksumvfs), version 2 checksums fixed-size
//! blocks, and the reader verifies a block the first time a query touches it
//! ([`crate::integrity`]). The table is small (4 bytes per 4 KiB block, 0.1% of the payload)
//! and read at open.
//!
//! The identity binds the files of one index together, as tantivy's segment ids name every
//! file of a segment: every header carries the id of its index, and [`crate::Index::open`]
//! refuses a file whose id differs from `meta`'s, so a `vectors` or `graph` file copied from
//! another index of the same shape is an error, not a wrong answer. The id is derived from the
//! content ([`index_id`]: a SHA-256 over the `meta` record and the block tables of the three
//! data files), so [`crate::Index::verify`] recomputes it and refuses an index whose files
//! are not the ones its id was made from (a file of another index whose header id was
//! rewritten passes every per-file check). The same rows built twice with the serial graph
//! builder (`HnswParams::threads == 1`) give byte-identical files; the default parallel
//! builder inserts rows in an order that depends on thread timing, so two such builds may
//! differ in their graph, and so in their id.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{IndexError, Result};

/// Version of the on-disk format written by this build; other versions are refused.
pub const FORMAT_VERSION: u32 = 2;

/// Size in bytes of the header at the start of every index file.
pub const HEADER_LEN: usize = 64;

/// Block size (log2) of the files this build writes: 4 KiB, a memory page. A first touch of a
/// row verifies only the page the read faults in anyway; 64 KiB blocks made the first search
/// after open 2× slower (14.4 against 7.2 ms on 1M × 384, `benchmarks/index/integrity.md`)
/// for a table 16× smaller (0.1% of the payload at 4 KiB, read at open in ~1 ms for 1.5 GB).
pub const BLOCK_SHIFT: u32 = 12;

/// The identity every file of one index carries in its header.
pub type IndexId = [u8; 16];

/// The id of scratch files that belong to no finished index (a partial build's).
pub const NO_ID: IndexId = [0u8; 16];

/// The kinds of file in an index directory (and in a partial build).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `vectors`: the unit-length rows.
    Vectors,
    /// `pairs`: the pair strings and the (head, tail) lookup table.
    Pairs,
    /// `graph`: the flat HNSW adjacency.
    Graph,
    /// `meta`: the bincode metadata record.
    Meta,
    /// `checkpoint`: a partial build's progress record.
    Checkpoint,
}

impl FileKind {
    /// The magic bytes at the start of a file of this kind.
    pub fn magic(self) -> &'static [u8; 8] {
        match self {
            FileKind::Vectors => b"RBIXVEC\0",
            FileKind::Pairs => b"RBIXPAIR",
            FileKind::Graph => b"RBIXGRPH",
            FileKind::Meta => b"RBIXMETA",
            FileKind::Checkpoint => b"RBIXCKPT",
        }
    }

    /// The file's name inside an index directory.
    pub fn file_name(self) -> &'static str {
        match self {
            FileKind::Vectors => "vectors",
            FileKind::Pairs => "pairs",
            FileKind::Graph => "graph",
            FileKind::Meta => "meta",
            FileKind::Checkpoint => "checkpoint",
        }
    }
}

/// A header that passed the magic, version, header-checksum and length checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload length in bytes.
    pub payload_len: u64,
    /// Block size as a power of two.
    pub block_shift: u32,
    /// The identity of the index the file belongs to.
    pub id: IndexId,
    /// CRC32 of the block table.
    pub table_crc: u32,
}

impl Header {
    /// Bytes per block.
    pub fn block_len(&self) -> u64 {
        1u64 << self.block_shift
    }

    /// Number of blocks (and of table entries).
    pub fn blocks(&self) -> u64 {
        blocks_for(self.payload_len, self.block_shift)
    }

    /// Byte offset of the block table in the file.
    pub fn table_at(&self) -> u64 {
        HEADER_LEN as u64 + self.payload_len
    }

    /// The exact length the file must have.
    pub fn file_len(&self) -> u64 {
        self.table_at() + 4 * self.blocks()
    }
}

/// Number of `1 << shift`-byte blocks covering `len` bytes.
pub fn blocks_for(len: u64, shift: u32) -> u64 {
    len.div_ceil(1u64 << shift)
}

/// Encodes a header.
pub fn encode_header(
    kind: FileKind,
    payload_len: u64,
    block_shift: u32,
    id: &IndexId,
    table_crc: u32,
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(kind.magic());
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&block_shift.to_le_bytes());
    h[16..24].copy_from_slice(&payload_len.to_le_bytes());
    h[24..40].copy_from_slice(id);
    h[40..44].copy_from_slice(&table_crc.to_le_bytes());
    let crc = crc32fast::hash(&h[0..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a header read from `path` (`bytes` holds at least the first [`HEADER_LEN`] bytes of
/// the file when the file is that long) against the file's actual length.
pub fn check_header(path: &Path, kind: FileKind, bytes: &[u8], file_len: u64) -> Result<Header> {
    let bad_magic = || IndexError::BadMagic {
        path: path.to_path_buf(),
        kind: kind.file_name(),
    };
    if bytes.len() >= 8 && &bytes[0..8] != kind.magic() {
        return Err(bad_magic());
    }
    let version = get_u32(bytes, 8);
    let unsupported = |found| IndexError::UnsupportedVersion {
        path: path.to_path_buf(),
        found,
        expected: FORMAT_VERSION,
    };
    if let Some(found) = version.filter(|&v| v != FORMAT_VERSION) {
        // Before the length and checksum checks: a format 1 file may be shorter than this
        // header and has no header checksum. Any other version is only believed with a good
        // checksum; without one it is a damaged version field (see "Versions" above).
        if written_by_format_1(found, bytes) || header_crc_ok(bytes) {
            return Err(unsupported(found));
        }
    }
    if file_len < HEADER_LEN as u64 || bytes.len() < HEADER_LEN {
        // Too short even for a header: a file cut off right after creation.
        return Err(IndexError::Truncated {
            path: path.to_path_buf(),
            expected: HEADER_LEN as u64,
            actual: file_len,
        });
    }
    if !header_crc_ok(bytes) {
        return Err(IndexError::corrupt(path, "damaged file header (checksum)"));
    }
    let block_shift = u32_at(bytes, 12);
    if !(12..=30).contains(&block_shift) {
        return Err(IndexError::corrupt(
            path,
            format!("block size 2^{block_shift} out of range"),
        ));
    }
    let mut id = NO_ID;
    id.copy_from_slice(&bytes[24..40]);
    let h = Header {
        payload_len: u64_at(bytes, 16),
        block_shift,
        id,
        table_crc: u32_at(bytes, 40),
    };
    let expected = h
        .payload_len
        .checked_add(HEADER_LEN as u64 + 4 * blocks_for(h.payload_len, block_shift))
        .ok_or_else(|| {
            IndexError::corrupt(path, format!("payload length {} overflows", h.payload_len))
        })?;
    if file_len < expected {
        return Err(IndexError::Truncated {
            path: path.to_path_buf(),
            expected,
            actual: file_len,
        });
    }
    if file_len > expected {
        return Err(IndexError::corrupt(
            path,
            format!("file is {file_len} bytes but its header says {expected} (trailing data)"),
        ));
    }
    Ok(h)
}

/// Whether `bytes` holds a whole header whose checksum (bytes 60..64) matches bytes 0..60.
fn header_crc_ok(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && crc32fast::hash(&bytes[0..60]) == u32_at(bytes, 60)
}

/// Whether a header claiming version `found` is format 1's: that format had no header
/// checksum to vouch for it, but it kept bytes 12..16 zero, where every later header keeps
/// its block size (12..=30), so a format 2 header whose version field was damaged into 1
/// is not taken for one.
fn written_by_format_1(found: u32, bytes: &[u8]) -> bool {
    found == 1 && get_u32(bytes, 12) == Some(0)
}

/// Reads the header of an open file and checks it (see [`check_header`]).
pub fn read_header(path: &Path, kind: FileKind, file: &File) -> Result<Header> {
    let file_len = file.metadata().map_err(|e| IndexError::io(path, e))?.len();
    let mut buf = [0u8; HEADER_LEN];
    let n = (file_len as usize).min(HEADER_LEN);
    file.read_exact_at(&mut buf[..n], 0)
        .map_err(|e| IndexError::io(path, e))?;
    check_header(path, kind, &buf[..n], file_len)
}

/// The CRC32 of each `1 << shift`-byte block of `payload`.
pub fn block_crcs(payload: &[u8], shift: u32) -> Vec<u32> {
    payload.chunks(1 << shift).map(crc32fast::hash).collect()
}

/// The table as stored: little-endian CRCs.
pub fn table_bytes(crcs: &[u32]) -> Vec<u8> {
    crcs.iter().flat_map(|c| c.to_le_bytes()).collect()
}

/// Reads the block table of an open file and checks it against the header's CRC.
pub fn read_block_table(path: &Path, file: &File, header: &Header) -> Result<Vec<u32>> {
    let n = usize::try_from(header.blocks())
        .map_err(|_| IndexError::corrupt(path, "block table too large"))?;
    let mut buf = vec![0u8; 4 * n];
    file.read_exact_at(&mut buf, header.table_at())
        .map_err(|e| IndexError::io(path, e))?;
    let actual = crc32fast::hash(&buf);
    if actual != header.table_crc {
        return Err(IndexError::ChecksumMismatch {
            path: path.to_path_buf(),
            what: "block table".into(),
            expected: header.table_crc,
            actual,
        });
    }
    Ok(buf.chunks_exact(4).map(|c| u32_at(c, 0)).collect())
}

/// Most bytes [`verify_payload`] reads at a time.
const VERIFY_READ: u64 = 4 << 20;

/// The size of [`verify_payload`]'s read buffer for `header`: at most [`VERIFY_READ`], and
/// no more than the payload. Not the block size: a legal block is up to 1 GiB (2^30), and a
/// buffer of a block made every read of a small file with such a header allocate 1 GiB.
pub(crate) fn verify_buffer_len(header: &Header) -> usize {
    header.payload_len.min(VERIFY_READ) as usize
}

/// Reads the whole payload of `file` in chunks (not through a memory map, so verifying does
/// not grow the process's resident memory) and checks every block against `table`. A block
/// larger than the read buffer is checksummed across several reads.
pub fn verify_payload(path: &Path, file: &File, header: &Header, table: &[u32]) -> Result<()> {
    verify_payload_with(path, file, header, table, &mut |_| {})
}

/// [`verify_payload`], handing `on_read` each piece of the payload as it is read, in order:
/// a check of the values (the index's rows) rides on the same single read of the file.
pub fn verify_payload_with(
    path: &Path,
    file: &File,
    header: &Header,
    table: &[u32],
    on_read: &mut dyn FnMut(&[u8]),
) -> Result<()> {
    let block = header.block_len();
    let mut buf = vec![0u8; verify_buffer_len(header)];
    let mut hasher = crc32fast::Hasher::new();
    // Payload bytes read so far, and of them those in the current block.
    let (mut off, mut in_block, mut b) = (0u64, 0u64, 0u64);
    while off < header.payload_len {
        let n = (header.payload_len - off).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], HEADER_LEN as u64 + off)
            .map_err(|e| IndexError::io(path, e))?;
        on_read(&buf[..n]);
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let take = (block - in_block).min(rest.len() as u64) as usize;
            hasher.update(&rest[..take]);
            rest = &rest[take..];
            in_block += take as u64;
            off += take as u64;
            if in_block == block || off == header.payload_len {
                let actual = std::mem::take(&mut hasher).finalize();
                if table.get(b as usize) != Some(&actual) {
                    return Err(IndexError::block_mismatch(path, b, block));
                }
                b += 1;
                in_block = 0;
            }
        }
    }
    Ok(())
}

/// Reads and checks a small file whole (`meta`, `checkpoint`): header, table, every block.
/// Returns the header and the payload.
pub fn read_small_file(path: &Path, kind: FileKind, limit: u64) -> Result<(Header, Vec<u8>)> {
    read_small(path, kind, limit, open_file(path)?)
}

/// [`read_small_file`] of a file already open (`path` names it in errors).
pub fn read_small(
    path: &Path,
    kind: FileKind,
    limit: u64,
    file: File,
) -> Result<(Header, Vec<u8>)> {
    let header = read_header(path, kind, &file)?;
    if header.payload_len > limit {
        return Err(IndexError::corrupt(
            path,
            format!("{} record larger than {limit} bytes", kind.file_name()),
        ));
    }
    let table = read_block_table(path, &file, &header)?;
    verify_payload(path, &file, &header, &table)?;
    let mut buf = vec![0u8; header.payload_len as usize];
    file.read_exact_at(&mut buf, HEADER_LEN as u64)
        .map_err(|e| IndexError::io(path, e))?;
    Ok((header, buf))
}

/// Opens the file `kind` inside the directory open as `dir` (`openat`), so that every file of
/// one index comes from the same directory even if its path is exchanged with another index
/// meanwhile (a publication: see [`crate::grow`]). `path` names the file in errors. Anything
/// but a regular file (or a link to one) is refused, as in [`open_file`].
pub fn open_in(dir: &File, kind: FileKind, path: &Path) -> Result<File> {
    #[cfg(unix)]
    {
        use std::os::fd::{AsRawFd, FromRawFd};
        let name = std::ffi::CString::new(kind.file_name())
            .map_err(|_| IndexError::corrupt(path, "file name holds a NUL byte"))?;
        // SAFETY: a valid directory descriptor and NUL-terminated name; the returned
        // descriptor is owned by the File from here on. O_NONBLOCK: see `open_file`.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            return Err(describe_open_error(path, err, false));
        }
        // SAFETY: fd was just opened and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        regular_and_blocking(path, file)
    }
    #[cfg(not(unix))]
    {
        let _ = (dir, kind);
        open_file(path)
    }
}

/// Opens `path` (following links) for reading, refusing anything but a regular file with
/// [`IndexError::NotRegular`]. A plain `open` of a named pipe blocks until a writer comes,
/// so a FIFO put in place of an index file hung every reader (and a `serve` that no longer
/// answered SIGTERM); the file is therefore opened with `O_NONBLOCK`, which returns at once
/// for a pipe, and its type checked on the open descriptor (no check-then-open race).
pub fn open_file(path: &Path) -> Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| describe_open_error(path, e, false))?;
        regular_and_blocking(path, file)
    }
    #[cfg(not(unix))]
    {
        let file = File::open(path).map_err(|e| IndexError::io(path, e))?;
        let meta = file.metadata().map_err(|e| IndexError::io(path, e))?;
        if !meta.is_file() {
            return Err(IndexError::NotRegular {
                path: path.to_path_buf(),
                expected: "a regular file",
                found: "something else",
            });
        }
        Ok(file)
    }
}

/// Opens the directory `path` (following links) for reading its entries with `openat`
/// ([`open_in`]); anything else (a named pipe, a regular file) is refused with
/// [`IndexError::NotRegular`], without blocking.
pub fn open_dir(path: &Path) -> Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_DIRECTORY fails on a non-directory before opening it, so a FIFO does not block.
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| describe_open_error(path, e, true))
    }
    #[cfg(not(unix))]
    {
        File::open(path).map_err(|e| IndexError::io(path, e))
    }
}

/// What a file of type `t` is, in words.
#[cfg(unix)]
fn file_type_name(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a named pipe"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "an unknown kind of file"
    }
}

/// The error for a failed open of `path`: [`IndexError::NotRegular`] when the path is there
/// but of the wrong type (opening a socket fails with `ENXIO`, a non-directory with
/// `O_DIRECTORY` with `ENOTDIR`, and their own messages do not say what the path is), else
/// the I/O error.
#[cfg(unix)]
fn describe_open_error(path: &Path, err: std::io::Error, want_dir: bool) -> IndexError {
    if matches!(err.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENOTDIR)) {
        if let Ok(m) = std::fs::metadata(path) {
            if (want_dir && !m.is_dir()) || (!want_dir && !m.is_file()) {
                return IndexError::NotRegular {
                    path: path.to_path_buf(),
                    expected: if want_dir {
                        "a directory"
                    } else {
                        "a regular file"
                    },
                    found: file_type_name(m.file_type()),
                };
            }
        }
    }
    IndexError::io(path, err)
}

/// `file` if it is a regular file, with `O_NONBLOCK` (set only to open it) cleared again.
#[cfg(unix)]
fn regular_and_blocking(path: &Path, file: File) -> Result<File> {
    use std::os::fd::AsRawFd;
    let meta = file.metadata().map_err(|e| IndexError::io(path, e))?;
    if !meta.is_file() {
        return Err(IndexError::NotRegular {
            path: path.to_path_buf(),
            expected: "a regular file",
            found: file_type_name(meta.file_type()),
        });
    }
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor the File owns; no memory is passed.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if !ok {
        return Err(IndexError::io(path, std::io::Error::last_os_error()));
    }
    Ok(file)
}

/// The id of a finished index: the first 16 bytes of a SHA-256 over the `meta` record and
/// the block tables of the data files (`vectors`, `pairs`, `graph`, in that order), so files
/// of different content get different ids, and [`crate::Index::verify`] can tell files that
/// were not made together even when their header ids were rewritten to match.
pub fn index_id(meta_bytes: &[u8], tables: &[&[u32]]) -> IndexId {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"relbert-index id v2\0");
    h.update((meta_bytes.len() as u64).to_le_bytes());
    h.update(meta_bytes);
    for t in tables {
        h.update((t.len() as u64).to_le_bytes());
        h.update(table_bytes(t));
    }
    let d = h.finalize();
    let mut id = NO_ID;
    id.copy_from_slice(&d[..16]);
    id
}

/// Writes `header + payload + block table` to `path` through a temporary file that is fsynced
/// and renamed into place, so a reader never sees a half-written file.
pub fn write_file(path: &Path, kind: FileKind, payload: &[u8], id: &IndexId) -> Result<()> {
    let crcs = block_crcs(payload, BLOCK_SHIFT);
    write_file_with_table(path, kind, payload, id, &crcs)
}

/// The header and the stored block table of a payload of `len` bytes whose block CRCs are
/// `crcs` (what [`write_file_with_table`] and [`seal`] put around the payload).
fn header_and_table(
    kind: FileKind,
    len: usize,
    id: &IndexId,
    crcs: &[u32],
) -> ([u8; HEADER_LEN], Vec<u8>) {
    let table = table_bytes(crcs);
    let header = encode_header(kind, len as u64, BLOCK_SHIFT, id, crc32fast::hash(&table));
    (header, table)
}

/// [`write_file`] with the block CRCs already computed (they went into the index id).
pub fn write_file_with_table(
    path: &Path,
    kind: FileKind,
    payload: &[u8],
    id: &IndexId,
    crcs: &[u32],
) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
        let (header, table) = header_and_table(kind, payload.len(), id, crcs);
        f.write_all(&header)
            .and_then(|_| f.write_all(payload))
            .and_then(|_| f.write_all(&table))
            .and_then(|_| f.sync_all())
            .map_err(|e| IndexError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| IndexError::io(path, e))
}

/// A whole file in memory: the header for `payload` with `id`, the payload and its block
/// table (what [`write_file`] writes). For tools and tests that rewrite a payload.
pub fn seal(kind: FileKind, payload: &[u8], id: &IndexId) -> Vec<u8> {
    let crcs = block_crcs(payload, BLOCK_SHIFT);
    let (header, table) = header_and_table(kind, payload.len(), id, &crcs);
    let mut out = header.to_vec();
    out.extend_from_slice(payload);
    out.extend_from_slice(&table);
    out
}

/// The id and payload of a file's bytes, read leniently (no checks but bounds; the inverse of
/// [`seal`] for tools and tests): `None` when the bytes are too short for a header.
pub fn unseal(bytes: &[u8]) -> Option<(IndexId, &[u8])> {
    let header = bytes.get(..HEADER_LEN)?;
    let mut id = NO_ID;
    id.copy_from_slice(&header[24..40]);
    let len = usize::try_from(u64_at(header, 16)).ok()?;
    let end = HEADER_LEN.checked_add(len)?.min(bytes.len());
    Some((id, &bytes[HEADER_LEN..end]))
}

/// Fsyncs a directory so renames and creations inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| IndexError::io(dir, e))
}

/// Hex form of an id (for messages and `index info`).
pub fn id_hex(id: &IndexId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Little-endian `u32` at byte offset `at` (caller guarantees the bounds).
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Little-endian `u64` at byte offset `at` (caller guarantees the bounds).
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Little-endian `u32` at byte offset `at`, or `None` past the end.
pub(crate) fn get_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Little-endian `u64` at byte offset `at`, or `None` past the end.
pub(crate) fn get_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `payload` sealed with `shift`-sized blocks and returns the checked header and
    /// table, as a reader gets them.
    fn sealed(path: &Path, payload: &[u8], shift: u32) -> (File, Header, Vec<u32>) {
        let table = table_bytes(&block_crcs(payload, shift));
        let header = encode_header(
            FileKind::Vectors,
            payload.len() as u64,
            shift,
            &NO_ID,
            crc32fast::hash(&table),
        );
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(payload);
        bytes.extend_from_slice(&table);
        std::fs::write(path, bytes).unwrap();
        let file = open_file(path).unwrap();
        let h = read_header(path, FileKind::Vectors, &file).unwrap();
        let t = read_block_table(path, &file, &h).unwrap();
        (file, h, t)
    }

    #[test]
    fn verify_payload_reads_in_bounded_chunks_whatever_the_block_size() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        // Over one read: blocks smaller than a read, one spanning two reads, and one block
        // larger than the whole payload.
        let payload: Vec<u8> = (0..(VERIFY_READ as usize + 5000))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for shift in [12, 23, 30] {
            let (file, h, t) = sealed(&path, &payload, shift);
            assert!(verify_buffer_len(&h) <= VERIFY_READ as usize);
            verify_payload(&path, &file, &h, &t).unwrap();
            // A byte changed in the second read is found, in its own block.
            let at = VERIFY_READ + 100;
            let mut damaged = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            use std::io::{Seek, SeekFrom};
            damaged
                .seek(SeekFrom::Start(HEADER_LEN as u64 + at))
                .unwrap();
            damaged.write_all(&[payload[at as usize] ^ 1]).unwrap();
            match verify_payload(&path, &file, &h, &t) {
                Err(IndexError::BlockChecksum { block, .. }) => assert_eq!(block, at >> shift),
                other => panic!("shift {shift}: expected BlockChecksum, got {other:?}"),
            }
        }
        // A small payload gets a buffer of its own size, not of its (1 GiB) block.
        let (file, h, t) = sealed(&path, &payload[..100], 30);
        assert_eq!(verify_buffer_len(&h), 100);
        verify_payload(&path, &file, &h, &t).unwrap();
        // An empty payload has no block to check.
        let (file, h, t) = sealed(&path, &[], 30);
        verify_payload(&path, &file, &h, &t).unwrap();
    }

    /// A whole format 2 file (header, payload, table) as bytes, with its length.
    fn file_bytes(kind: FileKind, payload: &[u8]) -> (Vec<u8>, u64) {
        let table = table_bytes(&block_crcs(payload, BLOCK_SHIFT));
        let header = encode_header(
            kind,
            payload.len() as u64,
            BLOCK_SHIFT,
            &[7; 16],
            crc32fast::hash(&table),
        );
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(payload);
        bytes.extend_from_slice(&table);
        let len = bytes.len() as u64;
        (bytes, len)
    }

    fn is_damaged_header(r: &Result<Header>) -> bool {
        matches!(r, Err(IndexError::Corrupt { reason, .. }) if reason.contains("checksum"))
    }

    #[test]
    fn a_damaged_version_field_is_damage_not_another_version() {
        let path = Path::new("idx/vectors");
        for kind in [
            FileKind::Vectors,
            FileKind::Graph,
            FileKind::Meta,
            FileKind::Pairs,
        ] {
            let (good, len) = file_bytes(kind, b"some payload");
            check_header(path, kind, &good, len).unwrap();
            for bit in 8 * 8..12 * 8 {
                let mut b = good.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                let r = check_header(path, kind, &b[..HEADER_LEN], len);
                assert!(is_damaged_header(&r), "{kind:?} bit {bit}: {r:?}");
            }
            // Two bits make it claim format 1, but its block size is still there.
            let mut b = good.clone();
            b[8..12].copy_from_slice(&1u32.to_le_bytes());
            let r = check_header(path, kind, &b[..HEADER_LEN], len);
            assert!(is_damaged_header(&r), "{kind:?} as format 1: {r:?}");
        }
    }

    #[test]
    fn a_file_of_another_version_is_unsupported() {
        let path = Path::new("idx/graph");
        let unsupported = |r: &Result<Header>, v: u32| matches!(r, Err(IndexError::UnsupportedVersion { found, expected: FORMAT_VERSION, .. }) if *found == v);
        // A later (or never written) format that keeps its header checksum at 60..64.
        for v in [0, 3, 99, u32::MAX] {
            let (mut b, len) = file_bytes(FileKind::Graph, b"payload");
            b[8..12].copy_from_slice(&v.to_le_bytes());
            let crc = crc32fast::hash(&b[0..60]);
            b[60..64].copy_from_slice(&crc.to_le_bytes());
            let r = check_header(path, FileKind::Graph, &b[..HEADER_LEN], len);
            assert!(unsupported(&r, v), "version {v}: {r:?}");
        }
        // Format 1: a 32-byte header without a header checksum, whatever its length.
        for payload_len in [0usize, 10, 1000] {
            let mut b = vec![0u8; 32];
            b[0..8].copy_from_slice(FileKind::Graph.magic());
            b[8..12].copy_from_slice(&1u32.to_le_bytes());
            b[16..24].copy_from_slice(&(payload_len as u64).to_le_bytes());
            b[24..28].copy_from_slice(&crc32fast::hash(&vec![5u8; payload_len]).to_le_bytes());
            b.extend(std::iter::repeat_n(5u8, payload_len));
            let len = b.len() as u64;
            let head = &b[..b.len().min(HEADER_LEN)];
            let r = check_header(path, FileKind::Graph, head, len);
            assert!(unsupported(&r, 1), "format 1, {payload_len} bytes: {r:?}");
        }
    }
}
