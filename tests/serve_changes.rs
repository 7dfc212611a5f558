//! `relbert serve` while the served index directory changes underneath it in ways `relbert`
//! itself never does: files copied over the served ones in place, and an index of another
//! model put in the directory's place (findings C1 and C3 of an audit of 89816bc).

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
