//! Writes the seed corpora of the fuzz targets (`corpus/index_open/`, `corpus/index_bytes/`).
//!
//! `index_bytes` seeds are the files of its seed indexes (deduplicated) plus each file cut to
//! its header and an empty file; `index_open` seeds are control streams in the layout its
//! harness reads (seed, file, mode, verify, mutations, then query bytes), one or two per
//! seed index × file × mode. Run again after a format change:
//!
//! ```text
//! cargo +nightly run --manifest-path index/fuzz/Cargo.toml --example make_seeds -- index/fuzz/corpus
//! ```

use std::collections::HashSet;
use std::path::PathBuf;

use relbert_index::format::HEADER_LEN;
use relbert_index_fuzz::{build_seed, BYTES_SHAPES, OPEN_SHAPES};

/// The query part of a control stream: row pick, a lookup string, k, ef, a raw query vector.
fn query_tail(k: u8) -> Vec<u8> {
    let mut t = vec![5, 0, 0, 0, 6];
    t.extend_from_slice("ab🙂 c".as_bytes().get(..6).unwrap_or(b"ab"));
    // cut point, k (selector < 240: a small value follows), ef (likewise)
    t.extend_from_slice(&[2, 0, k, 0, 0, 64, 0]);
    for i in 0..16u32 {
        t.extend_from_slice(&(0.25f32 * i as f32 - 1.0).to_le_bytes());
    }
    t
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let bytes_dir = root.join("index_bytes");
    let open_dir = root.join("index_open");
    std::fs::create_dir_all(&bytes_dir).expect("create corpus/index_bytes");
    std::fs::create_dir_all(&open_dir).expect("create corpus/index_open");

    let mut seen = HashSet::new();
    for shape in BYTES_SHAPES {
        let seed = build_seed(shape);
        for (name, bytes) in &seed.files {
            let tag = format!(
                "{}-{}x{}-{name}",
                shape.precision.name(),
                shape.rows,
                shape.dim
            );
            if seen.insert(bytes.clone()) {
                std::fs::write(bytes_dir.join(&tag), bytes).expect("write seed");
            }
            let head = bytes[..HEADER_LEN.min(bytes.len())].to_vec();
            if seen.insert(head.clone()) {
                std::fs::write(bytes_dir.join(format!("{tag}-header-only")), head).expect("write");
            }
        }
    }
    std::fs::write(bytes_dir.join("empty"), b"").expect("write seed");

    // index_open control streams. Files are sorted by name: graph, meta, pairs, vectors.
    let files = build_seed(OPEN_SHAPES[0]).files;
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let meta_at = names.iter().position(|&n| n == "meta").unwrap_or(1) as u8;
    let mut streams: Vec<(String, Vec<u8>)> = Vec::new();
    let pos = |sel: u8, at: u32| {
        let mut v = vec![sel];
        v.extend_from_slice(&at.to_le_bytes());
        v
    };
    for (s, shape) in OPEN_SHAPES.iter().enumerate() {
        let s = s as u8;
        let tag = format!("{}-{}", shape.precision.name(), shape.rows);
        // Undamaged: the empty mutation list must open.
        streams.push((format!("{tag}-intact"), vec![s, 0, 0, s % 3, 0]));
        for (f, name) in names.iter().enumerate() {
            let f = f as u8;
            if s < 2 {
                // Raw: a size field in the first 64 bytes (header or payload start) set to a
                // large value, then the query part.
                let mut v = vec![s, f, 0, s % 3, 0, 3];
                v.extend(pos(0, 16 + 8 * f as u32));
                v.extend([3, 15]);
                v.extend(query_tail(10));
                streams.push((format!("{tag}-{name}-raw-int"), v));
            }
            // Resealed payload: overwrite a few bytes near the start, flip a bit elsewhere.
            let mut v = vec![s, f, 3, 1, 1, 0];
            v.extend(pos(0, 8 * f as u32 + 4));
            v.extend([3, 0xff, 0xff, 0xff, 0x7f, 4]);
            v.extend(pos(1, 0x1234_5678));
            v.push(s);
            v.extend(query_tail(5));
            streams.push((format!("{tag}-{name}-reseal"), v));
        }
        // meta, field by field: dim halved and count doubled, then count set to 2.
        let mut v = vec![s, meta_at, 7, 2, 1, 9, 1, 0, 2, 0];
        v.extend(query_tail(3));
        streams.push((format!("{tag}-meta-fields"), v));
        if s < 2 {
            // Truncated graph payload, and a deleted pairs file.
            let mut v = vec![s, 0, 4, 0, 0, 1];
            v.extend(pos(1, 1000));
            v.extend(query_tail(7));
            streams.push((format!("{tag}-graph-truncated"), v));
            streams.push((format!("{tag}-pairs-deleted"), vec![s, 2, 6, 0, 0]));
        }
    }
    for (name, bytes) in &streams {
        std::fs::write(open_dir.join(name), bytes).expect("write seed");
    }
    println!(
        "{} index_bytes seeds, {} index_open seeds under {}",
        seen.len() + 1,
        streams.len(),
        root.display()
    );
}
