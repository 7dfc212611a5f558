//! A legal header may give a block of up to 2^30 bytes. Reading a small file with such a
//! block used to allocate a buffer of a whole block (1 GiB) at every verification, so a query
//! under a memory limit aborted ("memory allocation of 1073741824 bytes failed"). Alone in
//! its test binary because it measures the largest allocation of the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use relbert_index::format::{blocks_for, encode_header, table_bytes, unseal, FileKind};
use relbert_index::synthetic::gaussian;
use relbert_index::*;

/// The system allocator, remembering the largest single request.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static ALLOC: Largest = Largest;

#[test]
fn a_small_index_with_gigabyte_blocks_is_verified_without_a_block_sized_buffer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let spec = IndexSpec {
        dim: 8,
        precision: Precision::F32,
        encoder: EncoderInfo::default(),
        input: "block size".into(),
    };
    let pairs: Vec<PairEntry> = (0..40)
        .map(|i| PairEntry::new(format!("head {i}"), format!("tail {i}")))
        .collect();
    let mut b = IndexBuilder::create_or_resume(&dir, spec, false).unwrap();
    b.append_chunk(&pairs, &gaussian(40, 8, 7)).unwrap();
    let params = HnswParams {
        m: 4,
        ef_construction: 16,
        threads: 1,
        ..HnswParams::default()
    };
    b.finish(params, |_| {}).unwrap();

    // Every file re-sealed with one block of 2^30 bytes (the largest the format allows).
    const SHIFT: u32 = 30;
    for kind in [
        FileKind::Meta,
        FileKind::Vectors,
        FileKind::Pairs,
        FileKind::Graph,
    ] {
        let path = dir.join(kind.file_name());
        let bytes = std::fs::read(&path).unwrap();
        let (id, payload) = unseal(&bytes).unwrap();
        assert_eq!(blocks_for(payload.len() as u64, SHIFT), 1);
        let table = table_bytes(&[crc32fast::hash(payload)]);
        let header = encode_header(
            kind,
            payload.len() as u64,
            SHIFT,
            &id,
            crc32fast::hash(&table),
        );
        let mut out = header.to_vec();
        out.extend_from_slice(payload);
        out.extend_from_slice(&table);
        std::fs::write(&path, out).unwrap();
    }

    LARGEST.store(0, Ordering::Relaxed);
    // Small files are verified whole at open, then everything again.
    let idx = Index::open(&dir).unwrap();
    // Each payload is under 4 KiB, so its one CRC is the one the id was made from.
    idx.verify().unwrap();
    assert_eq!(
        idx.search(&idx.vector(3).unwrap(), 1, 16).unwrap()[0].row,
        3
    );
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < 16 << 20,
        "reading a {} KiB index allocated {largest} bytes at once",
        std::fs::metadata(dir.join("vectors")).unwrap().len() >> 10
    );

    // The one big block is still checked: a changed byte is found.
    let path = dir.join("pairs");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 4 - 3;
    bytes[at] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(
        Index::open(&dir),
        Err(IndexError::BlockChecksum { block: 0, .. })
    ));
}
