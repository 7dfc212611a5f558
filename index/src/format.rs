//! The fixed file header shared by every index file, and checksum helpers.
//!
//! Each file starts with a 32-byte little-endian header:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic bytes naming the file kind (`RBIXVEC\0`, `RBIXPAIR`, `RBIXGRPH`, `RBIXMETA`, `RBIXCKPT`) |
//! | 8 | 4 | format version ([`FORMAT_VERSION`]) |
//! | 12 | 4 | reserved, zero |
//! | 16 | 8 | payload length in bytes |
//! | 24 | 4 | CRC32 (IEEE, as computed by `crc32fast`) of the payload |
//! | 28 | 4 | reserved, zero |
//!
//! The payload follows at offset 32, so a page-aligned memory map gives a payload aligned to 32
//! bytes, which the zero-copy `f32`/`u32` views rely on. A file must be exactly
//! `32 + payload length` bytes long.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{IndexError, Result};

/// Version of the on-disk format written by this build; other versions are refused.
pub const FORMAT_VERSION: u32 = 1;

/// Size in bytes of the header at the start of every index file.
pub const HEADER_LEN: usize = 32;

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

/// A header that passed the magic, version and length checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload length in bytes.
    pub payload_len: u64,
    /// CRC32 of the payload as recorded in the header.
    pub crc: u32,
}

/// Encodes a header for a payload of `payload_len` bytes with checksum `crc`.
pub fn encode_header(kind: FileKind, payload_len: u64, crc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(kind.magic());
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&payload_len.to_le_bytes());
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a header read from `path` (`bytes` holds at least the first [`HEADER_LEN`] bytes of
/// the file when the file is that long) against the file's actual length.
pub fn check_header(path: &Path, kind: FileKind, bytes: &[u8], file_len: u64) -> Result<Header> {
    if file_len < HEADER_LEN as u64 || bytes.len() < HEADER_LEN {
        // Too short even for a header: a file cut off right after creation.
        if bytes.len() >= 8 && &bytes[0..8] != kind.magic() {
            return Err(IndexError::BadMagic {
                path: path.to_path_buf(),
                kind: kind.file_name(),
            });
        }
        return Err(IndexError::Truncated {
            path: path.to_path_buf(),
            expected: HEADER_LEN as u64,
            actual: file_len,
        });
    }
    if &bytes[0..8] != kind.magic() {
        return Err(IndexError::BadMagic {
            path: path.to_path_buf(),
            kind: kind.file_name(),
        });
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(IndexError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    let payload_len = u64_at(bytes, 16);
    let crc = u32_at(bytes, 24);
    let expected = (HEADER_LEN as u64)
        .checked_add(payload_len)
        .ok_or_else(|| {
            IndexError::corrupt(path, format!("payload length {payload_len} overflows"))
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
    Ok(Header { payload_len, crc })
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

/// Computes the CRC32 of the payload of `file` by reading it in chunks (not through a memory
/// map, so verifying does not grow the process's resident memory) and compares it with the
/// header's.
pub fn verify_payload_crc(path: &Path, file: &File, header: &Header) -> Result<()> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < header.payload_len {
        let n = ((header.payload_len - off) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], HEADER_LEN as u64 + off)
            .map_err(|e| IndexError::io(path, e))?;
        hasher.update(&buf[..n]);
        off += n as u64;
    }
    let actual = hasher.finalize();
    check_crc(path, header.crc, actual)
}

/// Returns [`IndexError::ChecksumMismatch`] unless `expected == actual`.
pub fn check_crc(path: &Path, expected: u32, actual: u32) -> Result<()> {
    if expected != actual {
        return Err(IndexError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// Writes `header + payload` to `path` through a temporary file that is fsynced and renamed
/// into place, so a reader never sees a half-written file.
pub fn write_file(path: &Path, kind: FileKind, payload: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
        let crc = crc32fast::hash(payload);
        f.write_all(&encode_header(kind, payload.len() as u64, crc))
            .and_then(|_| f.write_all(payload))
            .and_then(|_| f.sync_all())
            .map_err(|e| IndexError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| IndexError::io(path, e))
}

/// Fsyncs a directory so renames and creations inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| IndexError::io(dir, e))
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
