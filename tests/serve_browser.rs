//! The `relbert serve` page in headless Chromium, driven through chromedriver's WebDriver
//! API: load the page, see suggestions while typing, type a pair, see ranked results and the
//! plot, click a result to query with it, use it on a narrow screen, save a screenshot.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without them
//! the test says so and passes. `RELBERT_BROWSER_INDEX` points it at another index than the
//! tiny fixture one (the README screenshot uses the default model's), `RELBERT_SCREENSHOT`
//! says where the screenshot goes (default: the target directory).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Kills a child process when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A WebDriver session over HTTP.
struct Driver {
    rt: tokio::runtime::Runtime,
    base: String,
    session: String,
}

impl Driver {
    fn request(
        rt: &tokio::runtime::Runtime,
        method: &str,
        url: &str,
        body: Option<Value>,
    ) -> Value {
        rt.block_on(async {
            let uri: hyper::Uri = url.parse().unwrap();
            let authority = uri.authority().unwrap().to_string();
            let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let req = hyper::Request::builder()
                .method(method)
                .uri(uri.path())
                .header("host", authority)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let v = Self::request(&self.rt, method, &url, body);
        if let Some(err) = v["value"]["error"].as_str() {
            panic!(
                "WebDriver {method} {path}: {err}: {}",
                v["value"]["message"]
            );
        }
        v["value"].clone()
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        let v = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits up to 20 s for at least one element matching `css`.
    fn wait_for(&self, css: &str) -> Vec<String> {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.find_all(css);
            if !found.is_empty() {
                return found;
            }
            assert!(Instant::now() < until, "nothing matched {css}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self, el: &str) -> String {
        self.call("GET", &format!("/element/{el}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn type_into(&self, el: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    /// Presses `key` (a WebDriver key code) where the focus is.
    fn press(&self, key: &str) {
        self.call(
            "POST",
            "/actions",
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                    {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}
                ]}]}),
            ),
        );
    }

    /// Waits up to 20 s for `js` (an expression) to be true.
    fn wait_until(&self, js: &str) {
        let until = Instant::now() + Duration::from_secs(20);
        while self.script(&format!("return !!({js});")) != Value::Bool(true) {
            assert!(
                Instant::now() < until,
                "never true: {js} (status: {}, a: {})",
                self.script("return document.getElementById('status').textContent;"),
                self.script("return document.getElementById('a').value;")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn build_fixture_index(dir: &Path) -> PathBuf {
    let out = dir.join("idx");
    let ok = Command::new(assert_cmd::cargo::cargo_bin("relbert"))
        .args(["index", "build", "--model"])
        .arg(common::fixture("tiny-bert"))
        .arg("--pairs")
        .arg(common::pair_file(dir))
        .arg("--out")
        .arg(&out)
        .env("RELBERT_LOG", "warn")
        .status()
        .unwrap()
        .success();
    assert!(ok, "building the fixture index failed");
    out
}

/// The `--max-k` the test's server runs with: not the default, so the page must learn it.
const MAX_K: usize = 150;

/// Starts `relbert serve` on a free port and waits for it to be ready.
fn start_server(index: &Path) -> (Reaped, String) {
    let max_k = MAX_K.to_string();
    let args = [
        "--index".as_ref(),
        index.as_os_str(),
        "--max-k".as_ref(),
        max_k.as_ref(),
    ];
    let (child, mut err, addr) = common::spawn_serve_with(&args, "warn");
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let ok = common::http_get(&addr, "/v1/health").map(|r| r.starts_with("HTTP/1.1 200"));
        if ok == Some(true) {
            break;
        }
        assert!(Instant::now() < until, "relbert serve never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Reaped(child), addr)
}

#[test]
fn page_works_in_headless_chromium() {
    if !Path::new(CHROMIUM).is_file() || !Path::new(CHROMEDRIVER).is_file() {
        eprintln!(
            "SKIPPED: page_works_in_headless_chromium needs {CHROMIUM} and {CHROMEDRIVER} \
             (apt-get install chromium chromium-driver; .ci/run installs them)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = match std::env::var_os("RELBERT_BROWSER_INDEX") {
        Some(p) => PathBuf::from(p),
        None => build_fixture_index(dir.path()),
    };
    let (_server, addr) = start_server(&index);

    let port = free_port();
    let _driver = Reaped(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = dir.path().join("chromium-profile");
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1100,760",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect::<Vec<_>>();
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
    }}});
    let created = Driver::request(&rt, "POST", &format!("{base}/session"), Some(caps));
    let session = created["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
        .to_string();
    let d = Driver { rt, base, session };

    d.call(
        "POST",
        "/url",
        Some(json!({"url": format!("http://{addr}/")})),
    );
    d.wait_until("document.readyState === 'complete'");
    // No token is needed here, so its field is not shown.
    assert_eq!(
        d.script("return document.getElementById('token-label').offsetParent === null;"),
        json!(true)
    );
    // Keyboard first: the first box has the focus on load.
    assert_eq!(d.script("return document.activeElement.id;"), json!("a"));

    // Suggestions while typing.
    let a = d.wait_for("#a")[0].clone();
    d.type_into(&a, "par");
    let suggestions = d.wait_for("#suggest li");
    assert!(d.text(&suggestions[0]).starts_with("par"));
    // Arrow down + Enter picks the first suggestion and queries with it.
    d.type_into(&a, "\u{E015}\u{E007}");
    d.wait_for("#results tbody tr");
    d.wait_until("document.getElementById('status').textContent.startsWith('par')");
    // Found by an audit: after a search (or Escape) A still named a removed option as its
    // active descendant.
    let no_descendant = "!document.getElementById('a').hasAttribute('aria-activedescendant')";
    assert_eq!(d.script(&format!("return {no_descendant};")), json!(true));
    d.script("document.getElementById('a').value='';");
    d.type_into(&a, "pa");
    d.wait_for("#suggest li");
    d.type_into(&a, "\u{E015}");
    d.wait_until("document.getElementById('a').getAttribute('aria-activedescendant') === 'sugg-0'");
    d.type_into(&a, "\u{E00C}");
    d.wait_until("document.getElementById('suggest').children.length === 0");
    assert_eq!(d.script(&format!("return {no_descendant};")), json!(true));
    // Found by an audit: the first ArrowUp in the list highlighted the second-to-last
    // suggestion (it stepped back from "none" as if from the last); it now highlights the
    // last, and a second one the one above it.
    d.script("document.getElementById('a').value='';");
    d.type_into(&a, "par");
    d.wait_until("document.getElementById('suggest').children.length >= 3");
    let n = d
        .script("return document.getElementById('suggest').children.length;")
        .as_u64()
        .unwrap();
    d.type_into(&a, "\u{E013}");
    let selected = "Array.from(document.querySelectorAll('#suggest li')).map((li, i) => \
                    li.getAttribute('aria-selected') === 'true' ? i : -1).filter((i) => i >= 0)";
    d.wait_until("document.getElementById('a').hasAttribute('aria-activedescendant')");
    assert_eq!(
        d.script(&format!(
            "return [document.getElementById('a').getAttribute('aria-activedescendant'), \
             document.getElementById('suggest').lastElementChild.id, {selected}];"
        )),
        json!([
            format!("sugg-{}", n - 1),
            format!("sugg-{}", n - 1),
            [n - 1]
        ]),
        "the first ArrowUp must highlight the last of {n} suggestions"
    );
    d.type_into(&a, "\u{E013}");
    assert_eq!(
        d.script(&format!(
            "return [document.getElementById('a').getAttribute('aria-activedescendant'), \
             {selected}];"
        )),
        json!([format!("sugg-{}", n - 2), [n - 2]])
    );
    d.type_into(&a, "\u{E00C}");
    d.wait_until("document.getElementById('suggest').children.length === 0");
    // The k box takes the server's --max-k (it said max=100 whatever the server allowed).
    d.wait_until(&format!("document.getElementById('k').max === '{MAX_K}'"));

    // A typed pair in the a:b form.
    d.script("document.getElementById('a').value=''; document.getElementById('b').value='';");
    d.type_into(&a, "paris:france\u{E007}");
    d.wait_until("document.getElementById('status').textContent.startsWith('paris : france')");
    let rows = d.wait_for("#results tbody tr");
    assert!(!rows.is_empty());
    let circles = d.find_all("#plot svg circle");
    assert_eq!(
        circles.len(),
        rows.len() + 1,
        "the plot shows the query and each result"
    );

    // Clicking a result queries with it.
    let first = d.wait_for("#results tbody tr button.pair")[0].clone();
    let pair = d.text(&first);
    d.call("POST", &format!("/element/{first}/click"), Some(json!({})));
    d.wait_until(&format!(
        "document.getElementById('status').textContent.startsWith({})",
        json!(pair)
    ));
    d.wait_for("#results tbody tr");
    assert_eq!(
        d.script("return document.getElementById('a').value;"),
        json!(pair.split(" : ").next().unwrap())
    );

    // Found by an audit: Enter on a result or a map point rebuilt the table and the map and
    // the focus fell to the page; it now goes to the new first result.
    let on_a_result = "document.activeElement.matches('#results tbody button.pair')";
    let first = d.wait_for("#results tbody tr button.pair")[0].clone();
    let pair = d.text(&first);
    d.script("document.querySelector('#results tbody button.pair').focus();");
    d.press("\u{E007}");
    d.wait_until(&format!(
        "document.getElementById('status').textContent.startsWith({})",
        json!(pair)
    ));
    d.wait_until(on_a_result);
    let point = d.script(
        "const g = document.querySelector('#plot svg g[tabindex]'); g.focus(); \
         return g.getAttribute('aria-label').replace('query with ', '');",
    );
    assert_eq!(
        d.script("return document.activeElement.getAttribute('role');"),
        json!("button")
    );
    d.press("\u{E007}");
    d.wait_until(&format!(
        "document.getElementById('status').textContent.startsWith({point})"
    ));
    d.wait_until(on_a_result);

    // Found by an audit: a token the browser cannot put in a header made fetch throw, which
    // the page reported as an unreachable server.
    for token in ["密码", "pässwört"] {
        d.script(&format!(
            "document.getElementById('token').value = {}; \
             document.getElementById('a').value = ''; document.getElementById('b').value = '';",
            json!(token)
        ));
        d.type_into(&a, "paris:france\u{E007}");
        d.wait_until("document.getElementById('status').textContent.includes('cannot send')");
        assert_eq!(
            d.script("return document.getElementById('token-label').hidden;"),
            json!(false)
        );
    }
    d.script(
        "document.getElementById('token').value = ''; \
         sessionStorage.removeItem('relbert-token'); \
         document.getElementById('token-label').hidden = true;",
    );

    // The screenshot at the normal width (before the narrow check).
    d.call(
        "POST",
        "/url",
        Some(json!({"url": format!("http://{addr}/#paris:france")})),
    );
    d.wait_until("document.getElementById('status').textContent.startsWith('paris : france')");
    d.wait_for("#plot svg circle");
    let png = d.call("GET", "/screenshot", None);
    let png = base64::decode(png.as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let shot = std::env::var_os("RELBERT_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve.png"));
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {}", shot.display());

    // A narrow screen: nothing wider than the viewport.
    d.call(
        "POST",
        "/window/rect",
        Some(json!({"width": 390, "height": 800})),
    );
    d.wait_until("window.innerWidth < 500");
    assert_eq!(
        d.script("return document.documentElement.scrollWidth <= window.innerWidth;"),
        json!(true),
        "the page scrolls sideways on a narrow screen"
    );

    // Found by an audit: `a:b` typed in A is the pair even when B holds the last search's
    // word; a link keeps a word holding ':' (each word is encoded on its own); a long,
    // hostile word is shown as text, wraps on the narrow screen, and runs nothing.
    d.script("document.getElementById('a').value=''; document.getElementById('b').value='cold';");
    d.type_into(&a, "dog:puppy\u{E007}");
    d.wait_until("document.getElementById('status').textContent.startsWith('dog : puppy')");
    // A line with a third word is refused by the server (the page once cut it to two words),
    // and a line is read by the server: the boxes show the pair it read.
    d.script("document.getElementById('a').value='';");
    d.type_into(&a, "dog:puppy:cold\u{E007}");
    d.wait_until("document.getElementById('status').textContent.includes('expected two words')");
    d.script("document.getElementById('a').value=''; document.getElementById('b').value='';");
    d.type_into(&a, " cat : kitten \u{E007}");
    d.wait_until("document.getElementById('status').textContent.startsWith('cat : kitten')");
    assert_eq!(
        d.script(
            "return [document.getElementById('a').value, document.getElementById('b').value];"
        ),
        json!(["cat", "kitten"])
    );
    d.call(
        "POST",
        "/url",
        Some(json!({"url": format!("http://{addr}/#a%3Ab:france")})),
    );
    d.wait_until("document.getElementById('status').textContent.startsWith('a:b : france')");
    // Asked again as shown (the audit found the word read as `a` : `b` on the second ask).
    d.script("document.getElementById('status').textContent='';");
    d.type_into(&a, "\u{E007}");
    d.wait_until("document.getElementById('status').textContent.startsWith('a:b : france')");
    let hostile = format!("<img src=x onerror=window.hit=1>{}", "w".repeat(60));
    d.script("document.getElementById('a').value=''; document.getElementById('b').value='';");
    d.type_into(&a, &format!("{hostile}:france\u{E007}"));
    // Answered or refused as too long for the tiny model: either way the status shows it.
    d.wait_until(
        "!document.getElementById('status').textContent.startsWith('Searching') \
         && document.getElementById('status').textContent.includes('wwww')",
    );
    assert_eq!(
        d.script("return [window.hit === undefined, document.querySelectorAll('img').length];"),
        json!([true, 0])
    );
    assert_eq!(
        d.script("return document.documentElement.scrollWidth <= window.innerWidth;"),
        json!(true),
        "a long word makes the page scroll sideways on a narrow screen"
    );
    d.call("DELETE", "", None);
}
