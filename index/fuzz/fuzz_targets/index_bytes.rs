//! Fuzz target `index_bytes`: the raw input written as each file of a valid index in turn.
//!
//! Two small seed indexes (24 rows of dimension 8, `f32` and `f16`, built once per process with
//! the public `IndexBuilder`) are written to a scratch directory; then, for each of their
//! files, the input replaces that file whole, the directory is opened with `Verify::Headers`
//! (no payload checksum for `vectors` and `graph`, so their parsers see the input) and with
//! the default `Verify::Small`, and whatever opens is read and searched ([`exercise`]), with the
//! rows, strings and query vectors taken from the input as well. The seed corpus holds the
//! seed indexes' own files, so mutations start from well-formed headers and layouts.
//!
//! libFuzzer rather than proptest: coverage guidance is what gets mutations past the nested
//! checks of a binary format; the crate has no ML dependency, so a nightly build is cheap.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use relbert_index::Verify;
use relbert_index_fuzz::{
    build_seed, exercise, scratch, write_index, Reader, SeedIndex, BYTES_SHAPES,
};

fn seeds() -> &'static [SeedIndex] {
    static SEEDS: OnceLock<Vec<SeedIndex>> = OnceLock::new();
    SEEDS.get_or_init(|| BYTES_SHAPES.iter().map(|&s| build_seed(s)).collect())
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch().join("bytes");
    for seed in seeds() {
        write_index(&dir, &seed.files);
        for (name, original) in &seed.files {
            let path = dir.join(name);
            std::fs::write(&path, data).expect("cannot write a fuzz index file");
            for verify in [Verify::Headers, Verify::Small] {
                let opened = exercise(&dir, verify, &mut Reader::new(data));
                assert!(
                    opened || data != &original[..],
                    "the undamaged {} index did not open",
                    seed.name
                );
            }
            std::fs::write(&path, original).expect("cannot restore a fuzz index file");
        }
    }
});
