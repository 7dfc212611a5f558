//! The order of a writer's checks: an add or a rebuild reads its whole source (minutes for a
//! large index) only after the cheap refusals (another writer holds the output's lock, the
//! output is write-protected, it exists without force, the index changed since it was
//! opened). Found by a review: both verified the source first, so a second writer on a
//! multi-GB index was told it was locked only after reading all of it.
//!
//! Each source here has a damaged block in a file that a headers-only open does not read: a
//! refusal that is not the damage error came without the source being verified (the
//! verification would have failed on it). Before the fix each case was the damage error.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use relbert_index::synthetic::gaussian;
use relbert_index::*;

const DIM: usize = 16;
const ROWS: usize = 2000;

fn spec() -> IndexSpec {
    IndexSpec {
        dim: DIM as u32,
        precision: Precision::F32,
        encoder: EncoderInfo::default(),
        input: "rows".into(),
    }
}

fn serial() -> HnswParams {
    HnswParams {
        m: 8,
        ef_construction: 32,
        threads: 1,
        ..HnswParams::default()
    }
}

fn pairs(n: usize) -> Vec<PairEntry> {
    (0..n)
        .map(|i| PairEntry::new(format!("h{i}"), format!("t{i}")))
        .collect()
}

/// A finished index at `out` of [`ROWS`] rows drawn with `seed` (another seed, another id).
fn build(out: &Path, seed: u64) -> PathBuf {
    let mut b = IndexBuilder::create_or_resume(out, spec(), false).unwrap();
    b.append_chunk(&pairs(ROWS), &gaussian(ROWS, DIM, seed))
        .unwrap();
    b.finish(serial(), |_| {}).unwrap()
}

/// Flips a byte of the last rows of `dir`'s `vectors` (a later block than any open reads).
fn damage(dir: &Path) {
    let p = dir.join("vectors");
    let mut bytes = fs::read(&p).unwrap();
    let at = 64 + (ROWS - 3) * DIM * 4;
    bytes[at] ^= 0x40;
    fs::write(&p, bytes).unwrap();
}

/// `dir` opened without reading its payloads: the damage is met only by what reads the rows.
fn open_unverified(dir: &Path) -> Index {
    Index::open_with(
        dir,
        OpenOptions {
            verify: Verify::Headers,
        },
    )
    .unwrap()
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn is_damage(e: &IndexError) -> bool {
    matches!(e, IndexError::BlockChecksum { .. })
}

#[test]
fn an_add_is_refused_by_the_lock_the_protection_or_a_change_before_reading_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = build(&tmp.path().join("idx"), 3);
    damage(&dir);
    let before = names(tmp.path());
    let grow = || IndexGrower::create_or_resume(open_unverified(&dir), "new", 1, |_| {});

    // Another writer holds the index's lock.
    let held = OutputLock::acquire(&dir).unwrap();
    let err = grow().err().unwrap();
    assert!(matches!(err, IndexError::Locked { .. }), "{err}");
    drop(held);
    assert_eq!(names(tmp.path()), before);

    // The index is write-protected (its mode bits: so as root too).
    chmod(&dir, 0o555);
    let err = grow().err().unwrap();
    assert!(matches!(err, IndexError::WriteProtected { .. }), "{err}");
    chmod(&dir, 0o755);
    assert_eq!(names(tmp.path()), before);

    // Another writer published since this one opened the index: its stale copy is not read.
    let stale = open_unverified(&dir);
    let other = build(&tmp.path().join("other"), 4);
    fs::remove_dir_all(&dir).unwrap();
    fs::rename(&other, &dir).unwrap();
    let err = IndexGrower::create_or_resume(stale, "new", 1, |_| {})
        .err()
        .unwrap();
    assert!(matches!(err, IndexError::IndexChanged { .. }), "{err}");
    assert_eq!(names(tmp.path()), before);

    // Nothing else in the way: the damage is refused, still with nothing created.
    damage(&dir);
    let err = grow().err().unwrap();
    assert!(is_damage(&err), "{err}");
    assert_eq!(names(tmp.path()), before);
}

#[test]
fn a_rebuild_is_refused_by_the_lock_the_protection_or_the_output_before_reading_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let src = build(&tmp.path().join("src"), 3);
    damage(&src);
    let out = tmp.path().join("out");
    let opts = |force| RebuildOptions {
        precision: Some(Precision::F16),
        hnsw: serial(),
        force,
    };
    let rebuild_into =
        |to: &Path, force| rebuild(open_unverified(&src), to, &opts(force), |_| {}).unwrap_err();

    // Another writer holds the output's lock: a new output, and the source in place.
    for to in [&out, &src] {
        let before = names(tmp.path());
        let held = OutputLock::acquire(to).unwrap();
        let err = rebuild_into(to, true);
        assert!(matches!(err, IndexError::Locked { .. }), "{err}");
        drop(held);
        assert_eq!(names(tmp.path()), before);
    }

    // A write-protected output, forced; the source itself, write-protected, in place.
    build(&out, 5);
    let before = names(tmp.path());
    for to in [&out, &src] {
        chmod(to, 0o555);
        let err = rebuild_into(to, true);
        assert!(matches!(err, IndexError::WriteProtected { .. }), "{err}");
        chmod(to, 0o755);
        assert_eq!(names(tmp.path()), before);
    }

    // An existing output without force.
    let err = rebuild_into(&out, false);
    assert!(matches!(err, IndexError::AlreadyExists { .. }), "{err}");

    // Nothing else in the way: the damage is refused, still with nothing created.
    for (to, force) in [(&out, true), (&src, true)] {
        let err = rebuild_into(to, force);
        assert!(is_damage(&err), "{err}");
        assert_eq!(names(tmp.path()), before);
    }
}
