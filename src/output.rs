//! Writing relation vectors: JSON lines or a NumPy `.npy` array with a `.pairs.tsv` beside it.
//! Every file is written to a temporary path in the target directory and renamed into place,
//! so a failed run never leaves a half-written output.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// A file being written under a temporary name; [`AtomicFile::commit`] renames it into place.
pub struct AtomicFile {
    target: PathBuf,
    writer: BufWriter<NamedTempFile>,
}

impl AtomicFile {
    /// Starts writing `target` (refused if it exists and `force` is off).
    pub fn create(target: &Path, force: bool) -> Result<Self> {
        if target.exists() && !force {
            return Err(Error::Exists {
                path: target.to_path_buf(),
            });
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".relbert-");
        // Temporary files are private (0600) by default; the renamed output should have the
        // permissions of any file the user creates (0644 before the umask).
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let tmp = builder.tempfile_in(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 20, tmp),
        })
    }

    /// The buffered writer.
    pub fn writer(&mut self) -> &mut BufWriter<NamedTempFile> {
        &mut self.writer
    }

    /// Flushes and renames the file into place.
    pub fn commit(self) -> Result<()> {
        let target = self.target;
        let tmp = self
            .writer
            .into_inner()
            .map_err(|e| Error::io(&target, e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(&target, e))?;
        tmp.persist(&target)
            .map_err(|e| Error::io(&target, e.error))?;
        Ok(())
    }
}

/// Output formats of `relbert embed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One `{"pair": [a, b], "vector": [...]}` object per line.
    Jsonl,
    /// A float32 `[n, dim]` NumPy array plus `<out>.pairs.tsv`.
    Npy,
}

#[derive(Serialize)]
struct JsonlRow<'a> {
    pair: [&'a str; 2],
    vector: &'a [f32],
}

/// Writes one JSON line for a pair.
pub fn write_jsonl_row(
    w: &mut impl Write,
    head: &str,
    tail: &str,
    v: &[f32],
) -> std::io::Result<()> {
    serde_json::to_writer(
        &mut *w,
        &JsonlRow {
            pair: [head, tail],
            vector: v,
        },
    )?;
    w.write_all(b"\n")
}

/// The `.npy` header for a little-endian float32 C-order array of `shape`.
///
/// Written by hand: the format is a ten-byte preamble and a Python dict literal, and the npy
/// crates would bring ndarray along for nothing else.
pub fn npy_header(rows: usize, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + dict + padding + '\n', aligned to 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let hlen = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(10 + hlen);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(hlen as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

/// Appends a float32 row in little-endian order.
pub fn write_f32_row(w: &mut impl Write, v: &[f32]) -> std::io::Result<()> {
    for x in v {
        w.write_all(&x.to_le_bytes())?;
    }
    Ok(())
}

/// The `.pairs.tsv` path that goes beside an `.npy` output.
pub fn pairs_sidecar(npy: &Path) -> PathBuf {
    let stem = npy.with_extension("");
    PathBuf::from(format!("{}.pairs.tsv", stem.display()))
}

/// Writes `value` as pretty JSON with a final newline (model-directory files such as
/// `training_config.json`, `metrics.json`, `averaged_from.json`).
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: format!("cannot serialise: {e}"),
    })?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

/// A sibling path of `out` named `.<name>.<tag>-<pid>`.
pub(crate) fn sibling(out: &Path, tag: &str) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    let file = format!(".{name}.{tag}-{}", std::process::id());
    match parent {
        Some(p) => p.join(file),
        None => PathBuf::from(file),
    }
}

/// Fills a fresh temporary directory beside `out` with `fill`, then puts it in place of
/// `out` by renames, so `out` is never half-written (an existing `out` is replaced: callers
/// check `--force` first).
pub fn write_dir_atomically(out: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = sibling(out, "tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    fill(&tmp)?;
    if out.exists() {
        let old = sibling(out, "old");
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    } else {
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        let h = npy_header(3, 384);
        assert_eq!(h.len() % 64, 0);
        assert_eq!(&h[..6], b"\x93NUMPY");
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(text.contains("'shape': (3, 384)"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn atomic_file_refuses_existing_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        std::fs::write(&p, "keep").unwrap();
        assert!(matches!(
            AtomicFile::create(&p, false),
            Err(Error::Exists { .. })
        ));
        let mut f = AtomicFile::create(&p, true).unwrap();
        f.writer().write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
    }
}
