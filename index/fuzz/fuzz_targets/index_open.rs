//! Fuzz target `index_open`: damages one file of a valid index and opens it.
//!
//! The input is a control stream, not file bytes: it picks a seed index (200 unit vectors of
//! dimension 16 in `f32` or `f16` with labelled pairs, or the one-row and empty edge cases,
//! all built once per process with the public `IndexBuilder`), one of its files, and how to
//! damage it — bytes overwritten, integers written, bits flipped, runs inserted or removed, the
//! file truncated, extended or deleted — either over the whole file (header included) or over
//! the payload with the header and checksum rewritten ([`reseal`]), so the damage reaches the
//! `pairs`, `graph` and `meta` parsers behind the checksums; for `meta` also field by field
//! through the public `Meta` record. The damaged copy is opened with `Verify::Small`,
//! `Headers` or `Full`, and whatever opens is read and searched ([`exercise`]).
//!
//! libFuzzer rather than proptest: coverage guidance is what gets mutations past the nested
//! checks of a binary format; the crate has no ML dependency, so a nightly build is cheap.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use relbert_index::format::FileKind;
use relbert_index::Verify;
use relbert_index_fuzz::{
    build_seed, exercise, kind_of, mutate, mutate_meta, reseal, scratch, split_payload,
    write_index, Reader, SeedIndex, OPEN_SHAPES,
};

fn seeds() -> &'static [SeedIndex] {
    static SEEDS: OnceLock<Vec<SeedIndex>> = OnceLock::new();
    SEEDS.get_or_init(|| OPEN_SHAPES.iter().map(|&s| build_seed(s)).collect())
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let seeds = seeds();
    let seed = &seeds[r.byte() as usize % seeds.len()];
    let mut files = seed.files.clone();
    let which = r.byte() as usize % files.len();
    let mode = r.byte() % 8;
    let verify = [Verify::Small, Verify::Headers, Verify::Full][r.byte() as usize % 3];
    let kind = kind_of(&files[which].0);
    match (mode, kind) {
        (6, _) => {
            files.remove(which);
        }
        (0..=2, _) | (_, None) => mutate(&mut files[which].1, &mut r),
        (7, Some(FileKind::Meta)) => {
            let mut meta = seed.meta.clone();
            mutate_meta(&mut meta, &mut r);
            let path = std::path::Path::new("meta");
            let Ok(mut payload) = relbert_index::meta::encode(&meta, path) else {
                return;
            };
            if r.byte() & 1 == 1 {
                mutate(&mut payload, &mut r);
            }
            let id = split_payload(&files[which].1).0;
            files[which].1 = reseal(FileKind::Meta, &payload, &id);
        }
        (_, Some(kind)) => {
            let (id, payload) = split_payload(&files[which].1);
            let mut payload = payload.to_vec();
            mutate(&mut payload, &mut r);
            files[which].1 = reseal(kind, &payload, &id);
        }
    }
    let unchanged = files == seed.files;
    let dir = scratch().join("open");
    write_index(&dir, &files);
    let opened = exercise(&dir, verify, &mut r);
    assert!(
        opened || !unchanged,
        "the undamaged {} index did not open",
        seed.name
    );
});
