//! Regression tests for the damage an audit did to 2,064 copies of small indexes: a named
//! pipe in place of a file, an upper-layer node table out of range, a stored NaN or zero
//! vector, a block-checksum hint that `index rebuild` could not follow, and a file of another
//! index whose header id was rewritten. Each test damages one index the public way a user or
//! tool could (files re-sealed with fresh checksums where the damage must pass them).

use std::path::{Path, PathBuf};

use relbert_index::format::{encode_header, seal, unseal, FileKind, HEADER_LEN};
use relbert_index::synthetic::gaussian;
use relbert_index::*;

fn params() -> HnswParams {
    HnswParams {
        m: 4,
        ef_construction: 16,
        threads: 1,
        ..HnswParams::default()
    }
}

/// Builds an index of `rows` rows of dimension 8 drawn with `seed`, its pairs' words named
/// after the seed.
fn build(out: &Path, rows: usize, seed: u64) -> PathBuf {
    let spec = IndexSpec {
        dim: 8,
        precision: Precision::F32,
        encoder: EncoderInfo::default(),
        input: "damage".into(),
    };
    let pairs: Vec<PairEntry> = (0..rows)
        .map(|i| PairEntry::new(format!("head {seed} {i}"), format!("tail {i}")))
        .collect();
    let mut b = IndexBuilder::create_or_resume(out, spec, false).unwrap();
    b.append_chunk(&pairs, &gaussian(rows, 8, seed)).unwrap();
    b.finish(params(), |_| {}).unwrap()
}

/// Rewrites `kind`'s file in `dir` with `edit` applied to its payload, under the same id
/// with fresh checksums.
fn reseal(dir: &Path, kind: FileKind, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(kind.file_name());
    let bytes = std::fs::read(&path).unwrap();
    let (id, payload) = unseal(&bytes).unwrap();
    let mut payload = payload.to_vec();
    edit(&mut payload);
    std::fs::write(&path, seal(kind, &payload, &id)).unwrap();
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> usize {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize
}

/// Byte offset and entry count of the graph payload's upper-node row table (layout in the
/// `graph` module docs).
fn upper_rows(payload: &[u8]) -> (usize, usize) {
    let (n, m0, n_upper) = (
        u64_at(payload, 0),
        u32_at(payload, 16) as usize,
        u64_at(payload, 24),
    );
    (40 + n.div_ceil(4) * 4 + 4 * n * m0, n_upper)
}

/// A FIFO at `path` (the test keeps a writer open on it, so that a reader that does not
/// refuse it gets an error instead of waiting for one: the test fails, never hangs).
fn fifo_with_writer(path: &Path) -> std::fs::File {
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path; mkfifo reads it only.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

#[test]
fn a_named_pipe_in_place_of_a_file_or_the_directory_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = build(&tmp.path().join("idx"), 20, 1);
    for kind in [
        FileKind::Meta,
        FileKind::Vectors,
        FileKind::Pairs,
        FileKind::Graph,
    ] {
        let dir = tmp.path().join(format!("fifo-{}", kind.file_name()));
        std::fs::create_dir(&dir).unwrap();
        for k in [
            FileKind::Meta,
            FileKind::Vectors,
            FileKind::Pairs,
            FileKind::Graph,
        ] {
            std::fs::copy(src.join(k.file_name()), dir.join(k.file_name())).unwrap();
        }
        let path = dir.join(kind.file_name());
        let _writer = fifo_with_writer(&path);
        match Index::open(&dir) {
            Err(e @ IndexError::NotRegular { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&*path.to_string_lossy())
                        && msg.contains("is not a regular file (a named pipe)"),
                    "{msg}"
                );
            }
            other => panic!("{}: expected NotRegular, got {other:?}", kind.file_name()),
        }
        if kind == FileKind::Meta {
            assert!(matches!(
                Index::read_id(&dir),
                Err(IndexError::NotRegular { .. })
            ));
        }
    }
    let dir = tmp.path().join("fifo-dir");
    let _writer = fifo_with_writer(&dir);
    match Index::open(&dir) {
        Err(e @ IndexError::NotRegular { .. }) => {
            assert!(
                e.to_string().contains("is not a directory (a named pipe)"),
                "{e}"
            )
        }
        other => panic!("expected NotRegular, got {other:?}"),
    }
    // A link to a regular file is still a file.
    let linked = tmp.path().join("linked");
    std::fs::create_dir(&linked).unwrap();
    for k in ["meta", "vectors", "pairs", "graph"] {
        std::os::unix::fs::symlink(src.join(k), linked.join(k)).unwrap();
    }
    Index::open(&linked).unwrap().verify().unwrap();
}

#[test]
fn an_upper_layer_node_table_out_of_range_is_refused_by_add_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let src = build(&tmp.path().join("idx"), 300, 2);
    let payload = unseal(&std::fs::read(src.join("graph")).unwrap())
        .unwrap()
        .1
        .to_vec();
    let (at, n_upper) = upper_rows(&payload);
    assert!(n_upper >= 2, "the test needs nodes above layer 0");
    let first = u32_at(&payload, at);
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let edits: [(&str, Edit); 3] = [
        (
            "out of range",
            Box::new(move |p: &mut Vec<u8>| {
                for i in 0..n_upper {
                    p[at + 4 * i..at + 4 * i + 4].copy_from_slice(&u32::MAX.to_le_bytes());
                }
            }),
        ),
        (
            "does not list",
            Box::new(move |p: &mut Vec<u8>| {
                // The first upper node twice: in range, but not ascending, and one missing.
                p.copy_within(at..at + 4, at + 4);
            }),
        ),
        (
            "does not list",
            Box::new(move |p: &mut Vec<u8>| {
                // A node of level 0 in place of the first upper node.
                let level0 = (0..300u32).find(|&r| r != first && p[40 + r as usize] == 0);
                p[at..at + 4].copy_from_slice(&level0.unwrap().to_le_bytes());
            }),
        ),
    ];
    for (i, (want, edit)) in edits.iter().enumerate() {
        let dir = tmp.path().join(format!("damaged-{i}"));
        std::fs::create_dir(&dir).unwrap();
        for k in ["meta", "vectors", "pairs", "graph"] {
            std::fs::copy(src.join(k), dir.join(k)).unwrap();
        }
        reseal(&dir, FileKind::Graph, edit);
        let graph = dir.join("graph");
        let named = |e: &IndexError| {
            let msg = e.to_string();
            assert!(
                matches!(e, IndexError::Corrupt { path, .. } if *path == graph)
                    && msg.contains(want),
                "{i}: {msg}"
            );
        };
        named(&Index::open(&dir).unwrap().verify().unwrap_err());
        let opened = Index::open_with(
            &dir,
            OpenOptions {
                verify: Verify::Full,
            },
        );
        named(&opened.unwrap_err());
        // `index add`: panicked (index out of bounds) in the builder before; now refused
        // before its partial directory is made (the base is verified first).
        let base = Index::open(&dir).unwrap();
        let Err(e) = IndexGrower::create_or_resume(base, "new rows", 1, |_| {}) else {
            panic!("{i}: a damaged graph was grown");
        };
        named(&e);
        assert!(!partial_dir(&dir).unwrap().exists());
    }
}

#[test]
fn a_stored_nan_or_zero_vector_is_named_with_its_file_and_row() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = build(&tmp.path().join("idx"), 10, 3);
    let row_bytes = 8 * 4;
    reseal(&dir, FileKind::Vectors, |p| {
        p[3 * row_bytes..3 * row_bytes + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        p[5 * row_bytes..6 * row_bytes].fill(0);
    });
    let idx = Index::open(&dir).unwrap();
    let vectors = dir.join("vectors");
    for (row, what) in [(3, "non-finite"), (5, "zero vector")] {
        match idx.vector(row) {
            Err(e @ IndexError::Corrupt { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&*vectors.to_string_lossy())
                        && msg.contains(&format!("row {row} "))
                        && msg.contains(what),
                    "{msg}"
                );
            }
            other => panic!("row {row}: expected Corrupt, got {other:?}"),
        }
    }
    assert!(idx.vector(4).is_ok());
    // A query vector that cannot be normalised is the caller's, not "row 0" of the index.
    let e = idx.search(&[f32::NAN; 8], 3, 10).unwrap_err().to_string();
    assert!(e.contains("query vector") && !e.contains("row"), "{e}");
}

#[test]
fn a_block_checksum_error_advises_what_works() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = build(&tmp.path().join("idx"), 10, 4);
    let path = dir.join("vectors");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_LEN + 5] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let e = Index::open(&dir).unwrap_err();
    assert!(matches!(e, IndexError::BlockChecksum { .. }), "{e:?}");
    // `index rebuild` and `index export` read the same damaged block: only a build from the
    // pair list makes the index again.
    let msg = e.to_string();
    assert!(
        msg.contains("relbert index build --pairs") && !msg.contains("rebuild the index"),
        "{msg}"
    );
}

#[test]
fn verify_refuses_a_file_of_another_index_whose_header_id_was_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let a = build(&tmp.path().join("a"), 50, 5);
    let b = build(&tmp.path().join("b"), 50, 6);
    let id = unseal(&std::fs::read(a.join("meta")).unwrap()).unwrap().0;
    assert_ne!(
        id,
        unseal(&std::fs::read(b.join("meta")).unwrap()).unwrap().0
    );
    for kind in [FileKind::Vectors, FileKind::Pairs, FileKind::Graph] {
        let dir = tmp.path().join(format!("mixed-{}", kind.file_name()));
        std::fs::create_dir(&dir).unwrap();
        for k in ["meta", "vectors", "pairs", "graph"] {
            std::fs::copy(a.join(k), dir.join(k)).unwrap();
        }
        // b's file with a's id in its header and the header checksum made again.
        let mut bytes = std::fs::read(b.join(kind.file_name())).unwrap();
        let shift = u32_at(&bytes, 12);
        let len = u64_at(&bytes, 16) as u64;
        let table_crc = u32_at(&bytes, 40);
        bytes[..HEADER_LEN].copy_from_slice(&encode_header(kind, len, shift, &id, table_crc));
        std::fs::write(dir.join(kind.file_name()), bytes).unwrap();

        // Every per-file check passes: the damage is only visible to the id.
        let idx = Index::open(&dir).unwrap();
        match idx.verify() {
            Err(e @ IndexError::IdMismatch { .. }) => {
                assert!(e.to_string().contains(&*dir.to_string_lossy()), "{e}")
            }
            other => panic!("{}: expected IdMismatch, got {other:?}", kind.file_name()),
        }
        assert!(matches!(
            Index::open_with(
                &dir,
                OpenOptions {
                    verify: Verify::Full
                }
            ),
            Err(IndexError::IdMismatch { .. })
        ));
    }
    Index::open(&a).unwrap().verify().unwrap();
}

fn spec8(input: &str) -> IndexSpec {
    IndexSpec {
        dim: 8,
        precision: Precision::F32,
        encoder: EncoderInfo::default(),
        input: input.into(),
    }
}

/// Changes one byte of a pair string in a partial build's `pairs.blob` (a record still
/// decodes: the audit's `'hood` became `'hoxd`).
fn change_a_pair_string(partial: &Path) {
    let path = partial.join("pairs.blob");
    let mut b = std::fs::read(&path).unwrap();
    let at = b.windows(6).position(|w| w == b"head 1").unwrap();
    b[at + 2] = b'x';
    std::fs::write(&path, b).unwrap();
}

fn refused_naming(e: IndexError, file: &Path, partial: &Path) {
    let msg = e.to_string();
    assert!(
        matches!(&e, IndexError::PartialDamaged { path, .. } if path == file)
            && msg.contains(&format!("remove {}", partial.display())),
        "{msg}"
    );
}

#[test]
fn a_changed_pair_string_in_an_interrupted_build_is_not_published() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("idx");
    let partial = partial_dir(&out).unwrap();
    let blob = partial.join("pairs.blob");
    let pairs: Vec<PairEntry> = (0..40)
        .map(|i| PairEntry::new(format!("head {i}"), format!("tail {i}")))
        .collect();
    let vecs = gaussian(40, 8, 11);
    let mut b = IndexBuilder::create_or_resume(&out, spec8("in"), false).unwrap();
    b.append_chunk(&pairs[..20], &vecs[..160]).unwrap();
    drop(b); // interrupted
    let saved = std::fs::read(&blob).unwrap();

    // Damaged while interrupted: the resume refuses it.
    change_a_pair_string(&partial);
    let Err(e) = IndexBuilder::create_or_resume(&out, spec8("in"), false) else {
        panic!("a damaged partial build was resumed");
    };
    refused_naming(e, &blob, &partial);
    assert!(!out.exists());

    // Damaged after the resume read it: the finish refuses it.
    std::fs::write(&blob, &saved).unwrap();
    let mut b = IndexBuilder::create_or_resume(&out, spec8("in"), false).unwrap();
    assert_eq!(b.rows_done(), 20);
    b.append_chunk(&pairs[20..], &vecs[160..]).unwrap();
    let all = std::fs::read(&blob).unwrap();
    change_a_pair_string(&partial);
    refused_naming(b.finish(params(), |_| {}).unwrap_err(), &blob, &partial);
    assert!(!out.exists());

    // A changed vector byte too (checked at the finish, which reads the rows whole).
    std::fs::write(&blob, &all).unwrap();
    let b = IndexBuilder::create_or_resume(&out, spec8("in"), false).unwrap();
    assert_eq!(b.rows_done(), 40);
    let vpath = partial.join("vectors");
    let mut v = std::fs::read(&vpath).unwrap();
    v[HEADER_LEN + 3] ^= 0x10;
    std::fs::write(&vpath, v).unwrap();
    refused_naming(b.finish(params(), |_| {}).unwrap_err(), &vpath, &partial);

    // Undamaged, it resumes and publishes.
    discard_partial(&out).unwrap();
    let mut b = IndexBuilder::create_or_resume(&out, spec8("in"), false).unwrap();
    b.append_chunk(&pairs[..20], &vecs[..160]).unwrap();
    drop(b);
    let mut b = IndexBuilder::create_or_resume(&out, spec8("in"), false).unwrap();
    b.append_chunk(&pairs[20..], &vecs[160..]).unwrap();
    b.finish(params(), |_| {}).unwrap();
    let idx = Index::open(&out).unwrap();
    idx.verify().unwrap();
    assert_eq!(idx.lookup("head 1", "tail 1").unwrap(), Some(1));
}

#[test]
fn a_changed_pair_string_in_an_interrupted_add_is_not_published() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = build(&tmp.path().join("idx"), 30, 12);
    let partial = partial_dir(&dir).unwrap();
    let base = Index::open(&dir).unwrap();
    let id = base.id();
    let mut g = IndexGrower::create_or_resume(base, "new", 1, |_| {}).unwrap();
    g.append_chunk(&[PairEntry::new("new", "pair")], &gaussian(1, 8, 13))
        .unwrap();
    drop(g); // interrupted
    let path = partial.join("pairs.blob");
    let mut b = std::fs::read(&path).unwrap();
    let at = b.windows(7).position(|w| w == b"head 12").unwrap();
    b[at + 2] = b'x';
    std::fs::write(&path, b).unwrap();
    let Err(e) = IndexGrower::create_or_resume(Index::open(&dir).unwrap(), "new", 1, |_| {}) else {
        panic!("a damaged partial add was resumed");
    };
    refused_naming(e, &path, &partial);
    assert_eq!(Index::open(&dir).unwrap().id(), id);
}
