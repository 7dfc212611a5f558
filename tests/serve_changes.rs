//! `relbert serve` while the served index directory changes underneath it in ways `relbert`
//! itself never does: files copied over the served ones in place, and an index of another
//! model put in the directory's place (findings C1 and C3 of an audit of 89816bc).
#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{fixture, http_get, http_post, spawn_serve};
use serde_json::Value;

/// Builds `out` from `pairs` with the fixture model `model`.
fn build(model: &str, pairs: &Path, out: &Path) {
    assert_cmd::Command::cargo_bin("relbert")
        .unwrap()
        .env("RELBERT_LOG", "warn")
        .args(["index", "build", "--model"])
        .arg(fixture(model))
        .arg("--pairs")
        .arg(pairs)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
}

/// A pair file of the first `n` ordered pairs of 60 made-up words.
fn pairs(dir: &Path, name: &str, n: usize) -> PathBuf {
    let words: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
    let mut text = String::new();
    'all: for a in &words {
        for b in &words {
            if a != b {
                if n == text.lines().count() {
                    break 'all;
                }
                text.push_str(&format!("{a}\t{b}\n"));
            }
        }
    }
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A server on `index`, killed when dropped (a test that fails leaves no process behind).
struct Server {
    child: std::process::Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(index: &Path) -> Server {
        let (child, err, addr) = spawn_serve(index, "warn");
        // The log is not read: drained so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut err = err;
            let _ = std::io::copy(&mut err, &mut std::io::sink());
        });
        let server = Server { child, addr };
        assert!(
            common::ready_within(&server.addr, Duration::from_secs(20)),
            "the server never became ready"
        );
        server
    }

    /// Whether the process is still running (it has not died of a signal, say).
    fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait().unwrap() {
            None => Ok(()),
            Some(status) => Err(format!("the server died: {status}")),
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        split(http_get(&self.addr, path))
    }

    fn query(&self, body: &str) -> (u16, Value) {
        split(http_post(&self.addr, "/v1/query", body))
    }
}

/// The status and JSON body of a raw response (0 and null when there was none).
fn split(raw: Option<String>) -> (u16, Value) {
    let Some(raw) = raw else {
        return (0, Value::Null);
    };
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Waits until `holds` says the server is as wanted (`Ok`), asking every 100 ms, and fails
/// with its last answer after 20 s. What the follow loop does with a change is done within
/// two looks (`FOLLOW_EVERY`, 2 s); a fixed sleep of that could fail on a loaded machine
/// (review R3), and 20 s is far more than any look takes.
fn until(what: &str, mut holds: impl FnMut() -> Result<(), String>) {
    let start = std::time::Instant::now();
    loop {
        match holds() {
            Ok(()) => return,
            Err(last) if start.elapsed() > Duration::from_secs(20) => {
                panic!("{what}: not so after 20 s; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Found by an audit: `cp other/* served/` over the files of the served index (the same
/// inodes, truncated and rewritten, not a rename) killed the server with SIGBUS at the next
/// query that read past the files' new ends; with another model's files copied in, the
/// follow loop refused the new index and kept the old mapping, now of the rewritten files,
/// so every later exact query crashed it. Now every request checks the mapped files first
/// and answers 503 naming the change, `/v1/health` says 503, `/v1/info` names the index not
/// served; a whole index of the served model published by a rename is served again.
#[test]
fn files_copied_over_the_served_index_give_503_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let served = d.join("served");
    build("tiny-bert", &pairs(d, "big.tsv", 3000), &served);
    let other = d.join("other");
    build("tiny-roberta", &pairs(d, "small.tsv", 50), &other);
    let again = d.join("again");
    build("tiny-bert", &pairs(d, "mid.tsv", 200), &again);
    let mut server = Server::start(&served);
    let q = r#"{"pair":"w1:w9","k":3,"exact":true}"#;
    assert_eq!(server.query(q).0, 200);

    for f in std::fs::read_dir(&other).unwrap() {
        let f = f.unwrap();
        // `std::fs::copy` opens the destination with O_TRUNC, as `cp` does: in place.
        std::fs::copy(f.path(), served.join(f.file_name())).unwrap();
    }
    // At once, before the follow loop has looked, and after it has.
    let (status, body) = server.query(q);
    if status == 0 {
        // No answer: give a process that died time to be seen as dead.
        std::thread::sleep(Duration::from_millis(300));
    }
    server.alive().unwrap();
    assert_eq!(status, 503, "{body}");
    // After the follow loop has looked: the copied index is named as not served.
    let other_id = relbert_index::Index::read_id(&other).unwrap();
    until("/v1/info names the copied index", || {
        let (_, info) = server.get("/v1/info");
        match info["not_served"]["id"] == other_id.as_str() {
            true => Ok(()),
            false => Err(info.to_string()),
        }
    });
    let (status, body) = server.query(q);
    server.alive().unwrap();
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("changed in place"), "{error}");
    assert!(error.contains("renaming"), "{error}");
    let (status, health) = server.get("/v1/health");
    assert_eq!(status, 503, "{health}");
    assert!(
        health["error"]
            .as_str()
            .is_some_and(|e| e.contains("changed in place")),
        "{health}"
    );
    let (_, info) = server.get("/v1/info");
    assert_eq!(info["not_served"]["id"], other_id.as_str(), "{info}");
    assert!(info["changed_in_place"].is_string(), "{info}");
    server.alive().unwrap();

    // Published the way relbert does: a rename. Served again.
    std::fs::remove_dir_all(&served).unwrap();
    std::fs::rename(&again, &served).unwrap();
    until("the renamed index is served", || match server.query(q) {
        (200, _) => Ok(()),
        (status, body) => Err(format!("{status} {body}")),
    });
    let (status, body) = server.query(q);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(3), "{body}");
    let (status, health) = server.get("/v1/health");
    assert_eq!(status, 200, "{health}");
    assert!(health.get("not_served").is_none(), "{health}");
    let (_, info) = server.get("/v1/info");
    assert!(info.get("not_served").is_none(), "{info}");
    assert!(info.get("changed_in_place").is_none(), "{info}");
    server.alive().unwrap();
}

/// Found by an audit: an index of another model renamed into the served directory's place
/// (`rm -rf idx; mv roberta_idx idx`) is not served, rightly, but only the log said so:
/// `/v1/health` said ready with nothing more and `/v1/info` nothing at all, while answers
/// came from the deleted index. Both now name the index not served and why; health stays
/// 200 (answers still come from the index the server has open), as `/v1/info`'s `removed`.
/// Review R3 of 7b2872c: once the directory is removed (`rm -rf`), the index no longer there
/// was still named as not served; it is cleared with the look that takes the directory as
/// removed.
#[test]
fn an_index_of_another_model_in_the_served_place_is_shown_as_not_served() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let served = d.join("served");
    build("tiny-bert", &pairs(d, "a.tsv", 60), &served);
    let other = d.join("other");
    build("tiny-roberta", &pairs(d, "b.tsv", 40), &other);
    let other_id = relbert_index::Index::read_id(&other).unwrap();
    let mut server = Server::start(&served);
    std::fs::remove_dir_all(&served).unwrap();
    std::fs::rename(&other, &served).unwrap();
    until("/v1/health names the other model's index", || {
        let (_, health) = server.get("/v1/health");
        match health["not_served"]["id"] == other_id.as_str() {
            true => Ok(()),
            false => Err(health.to_string()),
        }
    });
    let (status, health) = server.get("/v1/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["not_served"]["id"], other_id.as_str(), "{health}");
    assert!(
        health["not_served"]["why"]
            .as_str()
            .is_some_and(|w| w.contains("another model")),
        "{health}"
    );
    let (_, info) = server.get("/v1/info");
    assert_eq!(info["not_served"]["id"], other_id.as_str(), "{info}");
    // Still answered, from the index the server has open.
    let (status, body) = server.query(r#"{"pair":"w1:w9","k":2}"#);
    assert_eq!(status, 200, "{body}");
    server.alive().unwrap();

    // The directory removed: taken as removed, and the index it held is no longer named.
    std::fs::remove_dir_all(&served).unwrap();
    until("/v1/info says removed", || {
        let (_, info) = server.get("/v1/info");
        match info["removed"] == true {
            true => Ok(()),
            false => Err(info.to_string()),
        }
    });
    let (_, info) = server.get("/v1/info");
    assert!(info.get("not_served").is_none(), "{info}");
    let (status, health) = server.get("/v1/health");
    assert_eq!(status, 200, "{health}");
    assert!(health.get("not_served").is_none(), "{health}");
    let (status, body) = server.query(r#"{"pair":"w1:w9","k":2}"#);
    assert_eq!(status, 200, "{body}");
    server.alive().unwrap();
}

/// A server on a tiny-BERT index of `lines` (a pair file's text), kept in `dir`.
fn serve_pairs(dir: &Path, lines: &str) -> Server {
    let pairs = dir.join("pairs.tsv");
    std::fs::write(&pairs, lines).unwrap();
    Server::start(&common::tiny_index(&pairs, &dir.join("idx")))
}

/// Two words of single letters: each word short, the prompt over the tiny model's token
/// limit.
fn over_the_token_limit() -> String {
    "x ".repeat(45).trim_end().to_string()
}

/// Found by a review: one over-long pair in a batch query made the encoder encode the whole
/// batch again one pair at a time (and the server then ask each pair alone once more), so a
/// batch of 64 pairs with 6 such took three times as long and crowded out other clients.
/// Now the over-long pair is refused alone before any forward pass: the encoder encodes each
/// good pair once (counted by the metrics' batch sizes, not timed), and every pair is answered
/// in its place as before.
#[test]
fn an_over_long_pair_in_a_batch_costs_the_others_no_extra_encoding() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve_pairs(tmp.path(), "paris\tfrance\ndog\tpuppy\n");
    let long = over_the_token_limit();
    let mut pairs: Vec<Value> = (0..5)
        .map(|i| serde_json::json!([format!("unseen{i}"), "thing"]))
        .collect();
    pairs.insert(1, serde_json::json!([long, long]));
    let body = serde_json::json!({"pairs": pairs, "k": 1}).to_string();
    let (status, v) = server.query(&body);
    assert_eq!(status, 200, "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    for (i, r) in results.iter().enumerate() {
        if i == 1 {
            assert_eq!(r["status"], 422, "{r}");
            let msg = r["error"].as_str().unwrap();
            assert!(
                msg.starts_with("pairs[1]: ") && msg.contains("token limit"),
                "{msg}"
            );
        } else {
            assert_eq!(r["source"], "encoded", "{i}: {r}");
        }
    }
    let metrics = http_get(&server.addr, "/v1/metrics").unwrap();
    let encoded: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("relbert_encoder_batch_size_sum")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no batch sizes in {metrics}"));
    assert_eq!(encoded, 5.0, "each of the five good pairs encoded once");
}

/// Found by a review: the OpenAPI description's `Word` said a term has at most 100
/// characters (`maxLength`), but the server checks the limit word by word (`new york` is two
/// words), so a client validating against the description refused terms the server answers.
/// The description now says what the server does: its per-word limit (`x-maxWordChars`) is
/// the one it enforces, and a longer term of shorter words fits the schema.
#[test]
fn the_word_schema_says_the_limit_the_server_enforces() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve_pairs(tmp.path(), "paris\tfrance\ndog\tpuppy\n");
    let (status, spec) = server.get("/v1/openapi.json");
    assert_eq!(status, 200);
    let word = &spec["components"]["schemas"]["Word"];
    let per_word = word["x-maxWordChars"].as_u64().expect("x-maxWordChars") as usize;
    assert_eq!(per_word, relbert::serve::Limits::default().max_word_chars);
    let w = "w".repeat(per_word);
    let term = format!("{w} {w}");
    // A term of words at the limit is asked (not in the index: 404); the schema admits it.
    let ask = |a: &str| {
        server.query(&serde_json::json!({"pair": [a, "b"], "stored_only": true}).to_string())
    };
    let (status, v) = ask(&term);
    assert_eq!(status, 404, "{v}");
    let chars = term.chars().count() as u64;
    assert!(
        word["maxLength"].as_u64().is_none_or(|max| chars <= max),
        "the schema refuses a {chars}-character term the server answers: {word}"
    );
    // One character more in a word is refused, as the schema says.
    let (status, v) = ask(&format!("{w}w b"));
    assert_eq!(status, 422, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains(&format!("longer than {per_word} characters")),
        "{msg}"
    );
}

/// Found by a review: suggestions compared decomposed text with its combining marks, so a
/// prefix matched only while it stopped before one: `ist` and `IST` found no `İstanbul`
/// (lower-cased, `İ` is `i` and a dot above), `cafe c` and `cafe:` no `café:crème`. Accents
/// are ignored as case is, and the stored spelling is shown.
#[test]
fn suggestions_ignore_accents_and_case() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve_pairs(tmp.path(), "İstanbul\tturkey\ncafé\tcrème\nparis\tfrance\n");
    for (q, want) in [
        ("ist", "İstanbul:turkey"),
        ("IST", "İstanbul:turkey"),
        ("%C4%B0ST", "İstanbul:turkey"),
        ("cafe", "café:crème"),
        ("cafe%20c", "café:crème"),
        ("cafe:", "café:crème"),
        ("CAF%C3%89%3Acr", "café:crème"),
    ] {
        let (status, v) = server.get(&format!("/v1/suggest?q={q}"));
        assert_eq!(status, 200, "{q}: {v}");
        let found: Vec<String> = v["suggestions"]
            .as_array()
            .unwrap_or_else(|| panic!("{q}: {v}"))
            .iter()
            .map(|s| {
                format!(
                    "{}:{}",
                    s["pair"][0].as_str().unwrap(),
                    s["pair"][1].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(found, [want], "{q}");
    }
}
