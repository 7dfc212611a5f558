//! `relbert index export --format word2vec|word2vec-text|npy`: the files load in gensim
//! (`KeyedVectors.load_word2vec_format`), `most_similar` agrees with `relbert query --exact`,
//! the `.npy` matches the index row for row, and users' files are never replaced.
//!
//! The gensim part needs a Python with gensim: `$RELBERT_GENSIM_PYTHON` (`.ci/run` makes a
//! venv and sets it), else `python3` if it imports gensim; skipped with a message otherwise.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::fixture;

fn relbert() -> Command {
    let mut c = Command::cargo_bin("relbert").unwrap();
    c.env("RELBERT_LOG", "warn");
    c
}

/// Builds an index of pairs with multi-word terms on the tiny model.
fn build_index(dir: &Path) -> PathBuf {
    let pairs = dir.join("pairs.tsv");
    let words = [
        "paris",
        "france",
        "tokyo",
        "japan",
        "new york",
        "usa",
        "dog",
        "puppy",
        "cat",
        "kitten",
        "ice cream",
        "cold",
        "big",
        "small",
        "pen",
        "write",
        "knife",
        "cut",
    ];
    let mut text = String::new();
    for (i, a) in words.iter().enumerate() {
        for b in words.iter().skip(i + 1).step_by(2) {
            text.push_str(&format!("{a}\t{b}\tl{}\n", i % 3));
        }
    }
    std::fs::write(&pairs, text).unwrap();
    let out = dir.join("idx");
    relbert()
        .args(["index", "build", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    out
}

fn export(index: &Path, format: &str, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    relbert()
        .args(["index", "export", "--index"])
        .arg(index)
        .args(["--format", format, "--out"])
        .arg(out)
        .args(extra)
        .assert()
}

fn key(pair: &serde_json::Value) -> String {
    let t = |v: &serde_json::Value| {
        v.as_str()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("_")
    };
    format!("{}__{}", t(&pair[0]), t(&pair[1]))
}

fn gensim_python() -> Option<String> {
    let candidates = std::env::var("RELBERT_GENSIM_PYTHON")
        .ok()
        .into_iter()
        .chain(["python3".to_string()]);
    for py in candidates {
        let ok = std::process::Command::new(&py)
            .args(["-c", "import gensim"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(py);
        }
    }
    None
}

#[test]
fn word2vec_and_npy_exports_match_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path());
    let bin = dir.path().join("rel.bin");
    let txt = dir.path().join("rel.txt");
    let npy = dir.path().join("rel.npy");
    export(&index, "word2vec", &bin, &[]).success();
    export(&index, "word2vec-text", &txt, &[]).success();
    export(&index, "npy", &npy, &[]).success();

    let idx = relbert_index::Index::open(&index).unwrap();
    let (n, dim) = (idx.count(), idx.dim());
    // Text: the header, then one line per pair with the index's vector.
    let text = std::fs::read_to_string(&txt).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), format!("{n} {dim}"));
    let first = lines.next().unwrap();
    let p = idx.pair(0).unwrap();
    let fields: Vec<&str> = first.split(' ').collect();
    assert_eq!(
        fields[0],
        format!("{}__{}", p.head.replace(' ', "_"), p.tail.replace(' ', "_"))
    );
    let v: Vec<f32> = fields[1..].iter().map(|x| x.parse().unwrap()).collect();
    assert_eq!(v, idx.vector(0).unwrap().to_vec());
    assert!(text.contains("new_york__"), "multi-word terms joined by _");
    // npy: header shape and every row; the pair list beside it.
    let bytes = std::fs::read(&npy).unwrap();
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(
        header.contains(&format!("'shape': ({n}, {dim})")),
        "{header}"
    );
    let data = &bytes[10 + hlen..];
    assert_eq!(data.len(), n * dim * 4);
    let last: Vec<f32> = data[(n - 1) * dim * 4..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(last, idx.vector(n - 1).unwrap().to_vec());
    let sidecar = std::fs::read_to_string(dir.path().join("rel.pairs.tsv")).unwrap();
    assert_eq!(sidecar.lines().filter(|l| !l.starts_with('#')).count(), n);

    // A user's file is never replaced; relbert's own only with --force.
    let user = dir.path().join("notes.txt");
    std::fs::write(&user, "my notes\n").unwrap();
    export(&index, "word2vec-text", &user, &[]).failure();
    export(&index, "word2vec-text", &user, &["--force"]).failure();
    assert_eq!(std::fs::read_to_string(&user).unwrap(), "my notes\n");
    export(&index, "word2vec-text", &txt, &[]).failure();
    export(&index, "word2vec-text", &txt, &["--force"]).success();
    export(&index, "npy", &npy, &["--force"]).success();

    let Some(py) = gensim_python() else {
        eprintln!(
            "SKIPPED the gensim check: no Python with gensim (set RELBERT_GENSIM_PYTHON to one, \
             as .ci/run does)"
        );
        return;
    };
    // most_similar in gensim against relbert query --exact on the same pairs.
    let queries = [("paris", "france"), ("new york", "usa"), ("dog", "puppy")];
    let k = 5;
    let script = r#"
import json, sys
from gensim.models import KeyedVectors
out = {}
for path, binary in [(sys.argv[1], True), (sys.argv[2], False)]:
    kv = KeyedVectors.load_word2vec_format(path, binary=binary)
    out[str(binary)] = {
        "count": len(kv.index_to_key),
        "similar": {q: kv.most_similar(q, topn=int(sys.argv[3])) for q in sys.argv[4:]},
    }
print(json.dumps(out))
"#;
    let qkeys: Vec<String> = queries
        .iter()
        .map(|(a, b)| format!("{}__{}", a.replace(' ', "_"), b.replace(' ', "_")))
        .collect();
    let out = std::process::Command::new(&py)
        .args(["-c", script])
        .arg(&bin)
        .arg(&txt)
        .arg(k.to_string())
        .args(&qkeys)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for binary in ["True", "False"] {
        assert_eq!(got[binary]["count"], n, "{binary}");
        for ((a, b), qk) in queries.iter().zip(&qkeys) {
            let q = relbert()
                .args(["query", "--index"])
                .arg(&index)
                .args([a, b, "--exact", "--json", "--keep-shared-words"])
                .args(["-k", &k.to_string()])
                .output()
                .unwrap();
            assert!(q.status.success());
            let want: serde_json::Value = serde_json::from_slice(&q.stdout).unwrap();
            let want = want["results"].as_array().unwrap();
            let sims = got[binary]["similar"][qk].as_array().unwrap();
            assert_eq!(sims.len(), want.len());
            for (g, w) in sims.iter().zip(want) {
                let (gs, ws) = (g[1].as_f64().unwrap(), w["score"].as_f64().unwrap());
                assert!((gs - ws).abs() < 1e-4, "{qk}: gensim {g} vs relbert {w}");
                // Equal scores may come in either order; otherwise the keys agree.
                if g[0].as_str().unwrap() != key(&w["pair"]) {
                    assert!(
                        want.iter()
                            .any(|x| key(&x["pair"]) == g[0].as_str().unwrap()),
                        "{qk}: gensim {g} not among relbert's"
                    );
                }
            }
        }
    }
}
