//! Regression tests for damaged indexes found by the fuzz targets in `index/fuzz/`
//! (`cargo +nightly fuzz run index_open`; see `scripts/fuzz.sh`).
//!
//! Each test builds a small index with the public `IndexBuilder`, damages one field of one
//! file and re-seals it with the public `format` helpers (`unseal`, `seal`: the same index id,
//! fresh block checksums), so that the damage reaches the parser behind the checksums as it
//! did in the fuzz input. Unlike the fuzz harnesses these name a field of the current layout (documented in the
//! `pairs` and `meta` module docs): update them with the format.

use std::path::{Path, PathBuf};

use relbert_index::format::{seal, unseal, FileKind};
use relbert_index::synthetic::gaussian;
use relbert_index::*;

fn build(out: &Path, rows: usize, dim: usize) -> PathBuf {
    let spec = IndexSpec {
        dim: dim as u32,
        precision: Precision::F32,
        encoder: EncoderInfo::default(),
        input: "fuzz-regression".into(),
    };
    let pairs: Vec<PairEntry> = (0..rows)
        .map(|i| PairEntry::labelled(format!("head {i}"), format!("tail {i}"), "rel"))
        .collect();
    let mut b = IndexBuilder::create_or_resume(out, spec, false).unwrap();
    b.append_chunk(&pairs, &gaussian(rows, dim, 3)).unwrap();
    let params = HnswParams {
        m: 4,
        ef_construction: 16,
        threads: 1,
        ..HnswParams::default()
    };
    b.finish(params, |_| {}).unwrap()
}

/// Rewrites `kind`'s file in `dir` with `edit` applied to its payload and a matching header.
fn reseal(dir: &Path, kind: FileKind, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(kind.file_name());
    let bytes = std::fs::read(&path).unwrap();
    let (id, payload) = unseal(&bytes).unwrap();
    let mut payload = payload.to_vec();
    edit(&mut payload);
    std::fs::write(&path, seal(kind, &payload, &id)).unwrap();
}

/// Opens `dir`, reads every pair if it opens, and returns the open error.
fn open_err(dir: &Path) -> IndexError {
    match Index::open(dir) {
        Ok(idx) => {
            for row in 0..idx.count() {
                let _ = idx.pair(row);
            }
            panic!("the damaged index opened");
        }
        Err(e) => e,
    }
}

/// Found by `index_open` (a resealed `pairs` payload with `blob_len` = 2^64 − 1 and no row):
/// rounding the blob length up to a multiple of 8 overflowed — a panic where overflow checks
/// are on (debug builds, fuzz builds); in release the rounding wrapped to 0, the layout check
/// passed with the blob cut out, and reading a pair sliced past the payload (a panic again).
#[test]
fn pairs_blob_length_near_u64_max() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, blob_len) in [u64::MAX, u64::MAX - 6, u64::MAX - 7, 1 << 63]
        .into_iter()
        .enumerate()
    {
        for drop_blob in [false, true] {
            let dir = build(&tmp.path().join(format!("idx-{i}-{drop_blob}")), 10, 4);
            reseal(&dir, FileKind::Pairs, |p| {
                // Payload: count u64, blob_len u64, (count + 1) offsets, blob, lookup table.
                let count = u64::from_le_bytes(p[0..8].try_into().unwrap()) as usize;
                let old_len = u64::from_le_bytes(p[8..16].try_into().unwrap()) as usize;
                p[8..16].copy_from_slice(&blob_len.to_le_bytes());
                if drop_blob {
                    let blob_at = 16 + 8 * (count + 1);
                    p.drain(blob_at..blob_at + old_len.div_ceil(8) * 8);
                }
            });
            let e = open_err(&dir);
            assert!(
                e.to_string()
                    .contains(&*dir.join("pairs").to_string_lossy()),
                "{e}"
            );
        }
    }
}

/// Found by `index_open` (a `meta` record rewritten field by field): a count and dimension
/// whose product in bytes overflows u64 (here (2^32 − 2) × (2^32 − 1) × 4) — a panic at open
/// where overflow checks are on; in release the product wrapped and was compared with the
/// vectors length.
#[test]
fn meta_count_times_dim_overflows() {
    let tmp = tempfile::tempdir().unwrap();
    for (count, dim) in [
        (u32::MAX as u64 - 1, u32::MAX),
        (1 << 31, 1 << 31),
        (1 << 30, u32::MAX),
    ] {
        let dir = build(&tmp.path().join(format!("idx-{count}-{dim}")), 10, 4);
        let mut meta = Index::open(&dir).unwrap().meta().clone();
        meta.count = count;
        meta.dim = dim;
        let payload = relbert_index::meta::encode(&meta, &dir.join("meta")).unwrap();
        reseal(&dir, FileKind::Meta, |p| *p = payload);
        let e = open_err(&dir);
        assert!(e.to_string().contains(&*dir.to_string_lossy()), "{e}");
    }
}

/// Found while writing the fuzz harness (which now draws `k` and `ef` up to `usize::MAX`):
/// both searches sized their heaps from `k` and `ef` before looking at the row count, so a huge
/// `k` (e.g. `relbert query -k 1000000000000`) was an allocation failure that aborts the
/// process, and `usize::MAX` an arithmetic overflow. Results cannot exceed the row count.
#[test]
fn huge_k_and_ef() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = build(&tmp.path().join("idx"), 10, 4);
    let idx = Index::open(&dir).unwrap();
    let q = [1.0, 0.5, -0.25, 2.0];
    for (k, ef) in [
        (usize::MAX, usize::MAX),
        (usize::MAX, 0),
        (3, usize::MAX),
        (1 << 40, 1 << 40),
        (usize::MAX / 4 + 1, 1),
    ] {
        let hits = idx.search(&q, k, ef).unwrap();
        assert_eq!(hits.len(), 10.min(k));
        let hits = idx.search_filtered(&q, k, ef, |r| r % 2 == 0).unwrap();
        assert!(hits.len() <= 5);
        let hits = idx.search_exact(&q, k).unwrap();
        assert_eq!(hits.len(), 10.min(k));
    }
}
