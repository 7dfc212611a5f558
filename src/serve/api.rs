//! The HTTP routes: JSON endpoints under `/v1/`, the page at `/`, and the middleware that
//! checks the `Host` of a loopback server's requests, the bearer token and the type of a
//! body, bounds each request's time, counts it and logs it. Every error
//! is a JSON object `{"error": message, "status": code}`; the only 5xx answers are the
//! declared ones (503 while loading, when the encoder queue is full, or while a served
//! collection is deleted or holds another model's vectors, and from `/v1/health` while the
//! server's last look at it failed; 504 past the time limit, 500 for a damaged index).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::batcher::BatchError;
use super::{pca, timeout_of, AppState, Loaded, View};
use crate::query::{query_line_readings, QueryEngine, QueryHit, QueryOptions, Source};
use crate::store::backend::WordTable;

const PAGE: &str = include_str!("page.html");
const OPENAPI: &str = include_str!("openapi.json");

/// An error answer: a status and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Whether the store said the served collection does not exist: [`track`] then marks
    /// the server stale at once ([`AppState::collection_gone`]).
    gone: bool,
}

/// The mark [`ApiError::into_response`] leaves on an answer whose store said the served
/// collection does not exist, for [`track`].
#[derive(Debug, Clone, Copy)]
struct CollectionGone;

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            gone: false,
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// A store's error: 500 (a damaged index; a Qdrant answer that asking again does not
    /// change, [`crate::Error::Rejected`]), except where the store is a Qdrant collection that
    /// cannot be used now: deleted under the server (503 until it is back, as `/v1/health`
    /// says once the server has looked), refused (it now holds something else), or its nodes
    /// not reached or failing after the retries: a client may try again later.
    fn internal(e: crate::Error) -> Self {
        let mut err = Self::new(store_status(&e), e.to_string());
        err.gone = matches!(e, crate::Error::NoCollection { .. });
        err
    }
}

/// The status of a store's error (see [`ApiError::internal`]).
fn store_status(e: &crate::Error) -> StatusCode {
    match e {
        crate::Error::NoCollection { .. }
        | crate::Error::Remote { .. }
        | crate::Error::Refused { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod status_tests {
    use super::*;

    #[test]
    fn a_qdrant_store_that_cannot_answer_now_is_503_and_a_damaged_index_500() {
        let remote = crate::Error::Remote {
            target: "http://127.0.0.1:1 collection c".into(),
            message: "gave up after 10 attempts".into(),
        };
        assert_eq!(store_status(&remote), StatusCode::SERVICE_UNAVAILABLE);
        let refused = crate::Error::Refused {
            target: "t".into(),
            message: "another model".into(),
        };
        assert_eq!(store_status(&refused), StatusCode::SERVICE_UNAVAILABLE);
        let damaged = crate::Error::Internal("a truncated vectors file".into());
        assert_eq!(store_status(&damaged), StatusCode::INTERNAL_SERVER_ERROR);
        let rejected = crate::Error::Rejected {
            target: "t".into(),
            message: "permission denied".into(),
        };
        assert_eq!(store_status(&rejected), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> Self {
        let status = match e {
            BatchError::Busy { .. } | BatchError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            BatchError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.message, "status": self.status.as_u16()}));
        let mut r = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // Busy or still loading: a client may try again shortly.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.gone {
            r.extensions_mut().insert(CollectionGone);
        }
        r
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// The server's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.limits.max_body_bytes;
    Router::new()
        .route("/", get(page))
        .route("/v1/query", post(query))
        .route("/v1/embed", post(embed))
        .route("/v1/suggest", get(suggest))
        .route("/v1/info", get(info))
        .route("/v1/health", get(health))
        .route("/v1/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Unknown paths: a JSON 404, counted and logged as the routes' answers are (`track` wraps
/// the routes only, not the fallback).
async fn not_found(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let mut response = host_problem(&state, &req)
        .unwrap_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such endpoint; see /v1/openapi.json",
            )
        })
        .into_response();
    let path: String = req.uri().path().chars().take(200).collect();
    if has_body(&req) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    record(
        &state,
        "other",
        req.method(),
        &path,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Whether `req` announces a body (a length above 0, or chunks). An answer given without
/// reading it (401, 404, 405, 413) ends the connection and says so (`Connection: close`):
/// hyper closed such connections without saying it, so a client's next request on the same
/// connection failed with a broken pipe.
fn has_body(req: &Request) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// A request body that notes when it has been read to its end, so that a request timing out
/// can be told apart: still waiting for the client's body (408) or for the server (504).
struct BodyEnd {
    inner: axum::body::Body,
    ended: Arc<AtomicBool>,
}

impl BodyEnd {
    fn new(inner: axum::body::Body, ended: Arc<AtomicBool>) -> Self {
        BodyEnd { inner, ended }
    }
}

impl http_body::Body for BodyEnd {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        // An error also ends the wait for the client: it is answered from the error.
        let done = match &polled {
            std::task::Poll::Ready(None) | std::task::Poll::Ready(Some(Err(_))) => true,
            std::task::Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            std::task::Poll::Pending => false,
        };
        if done {
            self.ended.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Counts an answer in the metrics and writes its access-log line.
fn record(
    state: &AppState,
    endpoint: &str,
    method: &axum::http::Method,
    path: &str,
    status: u16,
    took: Duration,
) {
    state.metrics.request(endpoint, status, took);
    tracing::info!(
        target: "relbert::serve::access",
        %method,
        path,
        status,
        ms = took.as_secs_f64() * 1e3,
        "request"
    );
}

/// The status a request is counted and logged with when its connection closed before it was
/// answered (nginx's "client closed request"): no answer was sent, but its work was done
/// (pairs encoded), and the request seen.
pub const CLIENT_CLOSED: u16 = 499;

/// A request being answered: dropped before [`Self::answered`] (hyper drops the request's
/// future when its connection closes), it is counted and logged as [`CLIENT_CLOSED`]. Found
/// by a review: such requests were in neither the metrics nor the access log, though their
/// pairs were encoded.
struct InFlight<'a> {
    state: &'a AppState,
    endpoint: &'a str,
    method: &'a axum::http::Method,
    path: &'a str,
    started: Instant,
    done: bool,
}

impl InFlight<'_> {
    /// Counts and logs the answer `status`.
    fn answered(mut self, status: u16) {
        self.done = true;
        record(
            self.state,
            self.endpoint,
            self.method,
            self.path,
            status,
            self.started.elapsed(),
        );
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            record(
                self.state,
                self.endpoint,
                self.method,
                self.path,
                CLIENT_CLOSED,
                self.started.elapsed(),
            );
        }
    }
}

/// The token of an `Authorization` header: scheme `Bearer` in any case (RFC 7235), then the
/// token with surrounding spaces left out; empty for the scheme alone (`Bearer `, whose
/// trailing space the HTTP parser drops, arrives as `Bearer`).
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Why a request to an endpoint that needs the token `want` is refused, if it is: several
/// `Authorization` headers (400: which one is meant cannot be known; the first one was
/// read), none (401), one that is not a bearer token or holds another token (401, each
/// said as such: a client with a wrong token needs to know it sent one).
fn token_problem(req: &Request, want: &str) -> Option<ApiError> {
    let mut given = req.headers().get_all(header::AUTHORIZATION).iter();
    let first = given.next();
    let more = given.count();
    if more > 0 {
        return Some(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the request has {} Authorization headers; send the token once: \
                 Authorization: Bearer <token>",
                more + 1
            ),
        ));
    }
    let unauthorised = |message: &str| Some(ApiError::new(StatusCode::UNAUTHORIZED, message));
    let Some(value) = first else {
        return unauthorised(
            "this server needs a bearer token and the request has none: send Authorization: \
             Bearer <token>",
        );
    };
    match value.to_str().ok().and_then(bearer_token) {
        None => unauthorised(
            "the Authorization header is not a bearer token; this server takes Authorization: \
             Bearer <token>",
        ),
        // Found by a review: `Bearer ` with nothing after was called "not a bearer token",
        // sending a client with an unset token variable to look at the header's form.
        Some("") => unauthorised(
            "the bearer token is empty: the Authorization header says Bearer and no token; \
             send Authorization: Bearer <token>",
        ),
        Some(got) if !same_secret(got.as_bytes(), want.as_bytes()) => unauthorised(
            "the bearer token is wrong: it is not the one this server was started with",
        ),
        Some(_) => None,
    }
}

/// Whether `given` equals `want`, in time that does not depend on where they differ.
fn same_secret(given: &[u8], want: &[u8]) -> bool {
    given.len() == want.len() && given.iter().zip(want).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Paths anyone may fetch when a token is set: the page (it asks for the token), liveness
/// and the API description.
fn public(endpoint: &str) -> bool {
    matches!(endpoint, "/" | "/v1/health" | "/v1/openapi.json")
}

/// The endpoints that read a JSON body.
fn takes_body(endpoint: &str) -> bool {
    matches!(endpoint, "/v1/query" | "/v1/embed")
}

/// Whether a `Host` (or a request target's authority) names this machine: `localhost`, a
/// `*.localhost` name or a loopback address (`127.0.0.0/8`, `[::1]`; the address a loopback
/// server is bound to is one), with or without a port.
fn local_host(host: &str) -> bool {
    let port_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        let port_fits = after.is_empty() || after.strip_prefix(':').is_some_and(port_ok);
        return port_fits
            && ip.parse::<std::net::Ipv6Addr>().is_ok_and(|ip| {
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            });
    }
    let name = match host.split_once(':') {
        Some((name, port)) if port_ok(port) => name,
        Some(_) => return false,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What every request, to an endpoint or not, is first refused for, if anything: a request
/// head over the limits ([`head_too_large`]), several `Host` headers ([`several_hosts`]),
/// then another host ([`foreign_host`]).
fn host_problem(state: &AppState, req: &Request) -> Option<ApiError> {
    head_too_large(req)
        .or_else(|| several_hosts(req))
        .or_else(|| foreign_host(state, req))
}

/// The longest request target (path and query) answered, in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header lines a request may have.
pub const MAX_HEADERS: usize = 100;
/// The most bytes a request's header lines may hold together (each counted as
/// `name: value` and its line end).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// A 414 or 431 naming the limit, for a request target or headers over the limits above.
/// hyper refused such requests itself with an empty answer, uncounted, at limits of its own
/// (under 100 headers, but a single 100 KB header passed); the connection is configured
/// with room above these limits (see `serve_connections`) so the refusal is the API's.
fn head_too_large(req: &Request) -> Option<ApiError> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!(
                "the request target (path and query) is {target} bytes; the limit is \
                 {MAX_URI_BYTES} bytes"
            ),
        ));
    }
    let headers = req.headers();
    let count = headers.len();
    if count > MAX_HEADERS {
        return Some(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the request has {count} header lines; the limit is {MAX_HEADERS}"),
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (bytes > MAX_HEADER_BYTES).then(|| {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request's headers are {bytes} bytes; the limit is {MAX_HEADER_BYTES} \
                 bytes"
            ),
        )
    })
}

/// A 400 for a request with more than one `Host` header, on any address (RFC 9112 3.2: a
/// server must refuse it). Found by an audit: the first one was read, so whether the
/// DNS-rebinding check below saw the other host depended on the order of the two.
fn several_hosts(req: &Request) -> Option<ApiError> {
    let hosts = req.headers().get_all(header::HOST).iter().count();
    (hosts > 1).then(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the request has {hosts} Host headers; a request names its host once (RFC \
                 9112, section 3.2)"
            ),
        )
    })
}

/// A 421 for a request to a loopback server that names another host. A page on any site can
/// make a browser send requests to a name its owner points at 127.0.0.1 (DNS rebinding), as
/// that site's own, reading the answers; such requests carry the site's name in `Host`. A
/// request without `Host` (HTTP/1.0) or naming this machine passes; beyond loopback a token
/// is required instead, and `Host` is not checked.
fn foreign_host(state: &AppState, req: &Request) -> Option<ApiError> {
    if !state.loopback {
        return None;
    }
    // An absolute request target's authority takes the place of `Host` (RFC 9112 3.2.2).
    let host = match req.uri().authority() {
        Some(a) => a.as_str().rsplit('@').next().unwrap_or("").to_string(),
        None => {
            let v = req.headers().get(header::HOST)?;
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        }
    };
    if local_host(host.trim()) {
        return None;
    }
    Some(ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "the request is for host {:?}, but this server listens on a loopback address and \
             answers only requests for localhost, *.localhost, 127.0.0.1 or [::1] (another \
             name pointed at this machine is how a web page could reach it through DNS \
             rebinding); to serve other names, listen on another --addr with a --token",
            host.chars().take(100).collect::<String>()
        ),
    ))
}

/// A 403 for a POST that a page of another site made a browser send to a loopback server
/// (which may have no token): its `Origin` names a host other than this machine (`null`, a
/// sandboxed or `file:` page, included), or the browser says `Sec-Fetch-Site: cross-site`.
/// The content-type check below does not cover it alone: a page can post a body with no
/// `Content-Type` at all (a `Blob` or `ArrayBuffer` in `no-cors` mode, `sendBeacon`), and
/// that needs no preflight. Scripts and tools send neither header, so they pass.
fn foreign_origin(state: &AppState, req: &Request) -> Option<ApiError> {
    if !state.loopback {
        return None;
    }
    let headers = req.headers();
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let foreign = origin.as_deref().is_some_and(|o| {
        let host = o
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
            .unwrap_or("");
        !local_host(host)
    });
    (cross_site || foreign).then(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "a page of another site ({}) may not post to this server: it listens on \
                 loopback, for this machine's own pages and tools",
                origin
                    .as_deref()
                    .unwrap_or("cross-site")
                    .chars()
                    .take(100)
                    .collect::<String>()
            ),
        )
    })
}

/// A 415 for a body type other than JSON. Refusing the three types a browser sends across
/// sites without asking the server first (`text/plain`, `application/x-www-form-urlencoded`,
/// `multipart/form-data`) is the point: another site's page cannot post here. A body with
/// no `Content-Type` at all is read as JSON (scripts often leave it out; a page of another
/// site that posts one is stopped by [`foreign_origin`]).
fn unsupported_body(req: &Request) -> Option<ApiError> {
    let headers = req.headers();
    let shown = |v: &HeaderValue| {
        String::from_utf8_lossy(v.as_bytes())
            .chars()
            .take(100)
            .collect::<String>()
    };
    for coding in headers.get_all(header::CONTENT_ENCODING) {
        let identity = coding.to_str().is_ok_and(|c| {
            c.split(',')
                .all(|c| c.trim().eq_ignore_ascii_case("identity"))
        });
        if !identity {
            return Some(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "the body is sent with Content-Encoding {:?}; compressed bodies are not \
                     accepted: send the JSON as it is",
                    shown(coding)
                ),
            ));
        }
    }
    let kind = headers.get(header::CONTENT_TYPE)?;
    let json = kind.to_str().is_ok_and(|text| {
        let mut parts = text.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let json_type = essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"));
        let utf8 = parts.all(|p| match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
                matches!(
                    v.trim().trim_matches('"').to_ascii_lowercase().as_str(),
                    "utf-8" | "utf8"
                )
            }
            _ => true,
        });
        json_type && utf8
    });
    (!json).then(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "the body is sent as Content-Type {:?}; this endpoint accepts application/json \
                 (or an application/*+json type, charset utf-8 if one is named), or no \
                 Content-Type at all: send the header Content-Type: application/json (curl: \
                 -H 'Content-Type: application/json', or curl --json)",
                shown(kind)
            ),
        )
    })
}

/// Why `req` is answered without running its handler (and without reading its body), if it
/// is: several `Host` headers (400), another host (421), several `Authorization` headers
/// (400), no or a wrong token (401), a body announced over the limit (413), or, for an
/// endpoint that reads a JSON body, parameters in the URL (400) or a body that is not plain
/// JSON (415).
fn refusal(state: &AppState, req: &Request, endpoint: &str) -> Option<ApiError> {
    if let Some(e) = host_problem(state, req) {
        return Some(e);
    }
    if let Some(token) = state.token.as_deref().filter(|_| !public(endpoint)) {
        if let Some(e) = token_problem(req, token) {
            return Some(e);
        }
    }
    // A body announced larger than the limit is refused before it is sent (the client may
    // be waiting on `Expect: 100-continue`), not after it has been read or timed out.
    let too_long = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&n| n > state.limits.max_body_bytes as u64);
    if let Some(n) = too_long {
        return Some(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is {n} bytes; the limit is {} bytes",
                state.limits.max_body_bytes
            ),
        ));
    }
    if takes_body(endpoint) && req.method() == axum::http::Method::POST {
        // `?k=1` was ignored without a word while the body's k (or the default) was used.
        if req.uri().query().is_some_and(|q| !q.is_empty()) {
            return Some(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{endpoint} takes its parameters in the JSON body, not in the URL (got \
                     ?{}); see /v1/openapi.json",
                    req.uri()
                        .query()
                        .unwrap_or("")
                        .chars()
                        .take(100)
                        .collect::<String>()
                ),
            ));
        }
        return foreign_origin(state, req).or_else(|| unsupported_body(req));
    }
    None
}

/// The host check, authorisation, the time limit, metrics and the access log, around every
/// route.
async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(200).collect();
    let in_flight = InFlight {
        state: &state,
        endpoint: &endpoint,
        method: &method,
        path: &path,
        started,
        done: false,
    };
    let refused = refusal(&state, &req, &endpoint);
    let body_unread = refused.is_some();
    let announced_body = has_body(&req);
    let mut body_late = false;
    let response = if let Some(e) = refused {
        e.into_response()
    } else {
        let limit = timeout_of(&state.limits);
        // Only POST routes read a body: a GET that announces one and is slow is the
        // server's delay (504), not a body the client owes.
        let ended = Arc::new(AtomicBool::new(
            !announced_body || method != axum::http::Method::POST,
        ));
        let req = req.map(|b| axum::body::Body::new(BodyEnd::new(b, ended.clone())));
        match tokio::time::timeout(limit, next.run(req)).await {
            Ok(r) => r,
            // The client had not sent its whole body: its fault, not the server's (408).
            Err(_) if !ended.load(Ordering::Relaxed) => {
                body_late = true;
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} ms",
                        state.limits.request_timeout_ms
                    ),
                )
                .into_response()
            }
            Err(_) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the request took longer than {} ms",
                    state.limits.request_timeout_ms
                ),
            )
            .into_response(),
        }
    };
    // The router's own 405 has an empty body; errors are JSON (its Allow header is kept).
    let not_allowed = response.status() == StatusCode::METHOD_NOT_ALLOWED;
    let mut response = if not_allowed {
        let allow = response.headers().get(header::ALLOW).cloned();
        let mut r = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed here; see /v1/openapi.json"),
        )
        .into_response();
        if let Some(allow) = allow {
            r.headers_mut().insert(header::ALLOW, allow);
        }
        r
    } else {
        response
    };
    // A body over the limit is read only up to it (a chunked one is refused while read).
    let too_large = response.status() == StatusCode::PAYLOAD_TOO_LARGE;
    if announced_body && (body_unread || not_allowed || body_late || too_large) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if response.extensions().get::<CollectionGone>().is_some() {
        state.collection_gone();
    }
    in_flight.answered(response.status().as_u16());
    response
}

/// What one request answers from: the encoder's queue and the store as they were when the
/// request began (see [`Loaded::view`] and [`super::Batchers::current`]).
struct Snapshot {
    batcher: Arc<super::Batcher>,
    view: Arc<View>,
    /// The model's tokenizer for the warning of words read as its unknown token alone
    /// ([`vectors_of`]).
    unknown: Option<Arc<crate::embed::WordTokenizer>>,
}

impl std::ops::Deref for Snapshot {
    type Target = View;
    fn deref(&self) -> &View {
        &self.view
    }
}

/// The loaded index and model, or 503 while they load.
fn loaded(state: &AppState) -> Result<Snapshot, ApiError> {
    state
        .ready()
        .map(|l: &Loaded| Snapshot {
            batcher: l.batcher.current(),
            view: l.view(),
            unknown: l.unknown.clone(),
        })
        .ok_or_else(|| match state.failure() {
            Some(why) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, load_failed(why)),
            None => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the index is still loading; see /v1/health",
            ),
        })
}

/// Why the server answers nothing, as a request refused for it and `/v1/health` both say it.
fn load_failed(why: &str) -> String {
    format!("the index could not be loaded: {why}")
}

/// [`loaded`], for requests answered with the encoder or the store's vectors: 503 when the
/// served collection now holds another encoder's vectors ([`AppState::stale`]), whose
/// answers would be meaningless, or when the served index's files were changed in place
/// ([`super::overwritten`]), whose map may fault the process or give damaged bytes.
fn answering(state: &AppState) -> Result<Snapshot, ApiError> {
    let snapshot = loaded(state)?;
    if let Some(why) = state
        .stale()
        .or_else(|| super::overwritten(&snapshot.view.engine))
    {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why));
    }
    Ok(snapshot)
}

/// A JSON body of type `T`, or a 4xx naming what is wrong: 413 past the size limit of
/// `limit` bytes, 400 for bytes that are not JSON, 422 for JSON of the wrong shape. A UTF-8
/// byte-order mark before the JSON is skipped (RFC 8259 lets a parser ignore it; some
/// editors and Windows tools write one).
fn parse_body<T: RequestBody>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        // A chunked body is cut at the limit while it is read, with axum's message naming
        // no number; a `Content-Length` past it is refused before (see `refusal`).
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                r.status(),
                format!("the body is longer than the limit of {limit} bytes"),
            )
        } else {
            ApiError::new(r.status(), r.body_text())
        }
    })?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    // Every body is a JSON object: serde would also read a struct from an array by field
    // position, so `[["a","b"], 3]` was a query for k = 3 by accident of field order.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "request body: expected a JSON object ({}), found an array",
                T::SHAPE
            ),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let status = match e.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        // serde names the Rust struct it wanted for a body of `null`, `3` or `"x"` (found by
        // audit L: "expected struct QueryRequest").
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
                if !v.is_object() {
                    return ApiError::bad(format!(
                        "request body: expected a JSON object ({}), found {}",
                        T::SHAPE,
                        shown_json(&v)
                    ));
                }
            }
        }
        // Only a surrogate at or before where serde stopped is what it stopped at.
        let line_start: usize = bytes
            .split(|&b| b == b'\n')
            .take(e.line().saturating_sub(1))
            .map(|l| l.len() + 1)
            .sum();
        let stopped = line_start + e.column();
        let surrogate = (status == StatusCode::BAD_REQUEST)
            .then(|| lone_surrogate(bytes))
            .flatten()
            .filter(|&(at, _)| at <= stopped);
        match surrogate {
            Some((_, u)) => ApiError::new(
                status,
                format!(
                    "request body: lone UTF-16 surrogate \\u{u:04x} (not a Unicode character) \
                     near line {} column {}",
                    e.line(),
                    e.column()
                ),
            ),
            None => ApiError::new(status, format!("request body: {e}")),
        }
    })
}

/// The first `\uXXXX` escape of `json` that is half of a UTF-16 surrogate pair without its
/// other half (serde_json calls it an unexpected end of a hex escape, or the like): where
/// it is, and its code unit.
fn lone_surrogate(json: &[u8]) -> Option<(usize, u16)> {
    let hex = |at: usize| -> Option<u16> {
        let digits = json.get(at..at + 4)?;
        u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let mut i = 0;
    while i < json.len() {
        if json[i] != b'\\' {
            i += 1;
            continue;
        }
        // `\\` is one escape: the next backslash starts no escape of its own.
        if json.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let Some(u) = hex(i + 2) else {
            i += 2;
            continue;
        };
        match u {
            0xD800..=0xDBFF => {
                let low = (json.get(i + 6..i + 8) == Some(b"\\u"))
                    .then(|| hex(i + 8))
                    .flatten();
                match low {
                    Some(0xDC00..=0xDFFF) => i += 12,
                    _ => return Some((i, u)),
                }
            }
            0xDC00..=0xDFFF => return Some((i, u)),
            _ => i += 6,
        }
    }
    None
}

/// A JSON request body, rejected with `parse_body`'s JSON errors instead of axum's text.
pub struct JsonBody<T>(pub T);

/// A request body's type, with how a refusal of a body that is not an object shows its
/// shape: each endpoint's own fields (found by a review: `/v1/embed` was told `{"pair": ...}`,
/// a field it refuses).
pub trait RequestBody: serde::de::DeserializeOwned {
    /// The body's shape as a message shows it, e.g. `{"pairs": [...]}`.
    const SHAPE: &'static str;
}

impl RequestBody for QueryRequest {
    const SHAPE: &'static str = r#"{"pair": ...} or {"pairs": [...]}"#;
}

impl RequestBody for EmbedRequest {
    const SHAPE: &'static str = r#"{"pairs": [...]}"#;
}

impl<T: RequestBody> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let limit = state.limits.max_body_bytes;
        parse_body(Bytes::from_request(req, state).await, limit).map(JsonBody)
    }
}

/// A pair as a client may send it: `["a", "b"]` or `"a:b"` (also `a<TAB>b`, `a b`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PairInput {
    Two([String; 2]),
    Line(String),
}

impl PairInput {
    /// `value` as a pair, or a 422 naming `what` (e.g. `pairs[3]`): JSON of another shape
    /// is a malformed request, refused whole (a batch's items were reported by serde with
    /// only a line and column).
    fn of(value: &Value, what: &str) -> Result<PairInput, ApiError> {
        PairInput::deserialize(value).map_err(|_| {
            // JSON as sent, cut as [`crate::error::quoted`] cuts (80 characters, marked `…`),
            // not quoted again: it is no string.
            let json = value.to_string();
            let (kept, mark) = crate::error::cut_for_message(&json);
            ApiError::bad(format!(
                "{what}: expected a pair: [\"a\", \"b\"] or \"a:b\" (two words), got {kept}{mark}"
            ))
        })
    }

    /// How the pair reads, the default reading first: `["a", "b"]` one way; a line such as
    /// `re:invent conference` two ways ([`query_line_readings`]); a line that is not a pair
    /// none, which is refused with a message naming `what`.
    fn readings(self, what: &str) -> Result<Vec<(String, String)>, String> {
        match self {
            PairInput::Two(two) => Ok(vec![two.map(|w| crate::pairs::read_word(&w)).into()]),
            PairInput::Line(line) => {
                let readings = query_line_readings(&line);
                if readings.is_empty() {
                    return Err(format!(
                        "{what}: expected two words as \"a:b\" or [\"a\", \"b\"], got {}",
                        crate::error::quoted(&line)
                    ));
                }
                Ok(readings)
            }
        }
    }
}

/// `pair`'s words checked against the word limits, or a message naming `what`.
fn check_words(
    pair: (String, String),
    what: &str,
    max_chars: usize,
) -> Result<(String, String), String> {
    crate::prompt::check_words(&pair.0, &pair.1, max_chars).map_err(|e| format!("{what}: {e}"))?;
    Ok(pair)
}

/// A pair of a request that cannot be asked: what was sent (the pair as read, or the line
/// that could not be read) and why. One query answers 422 with the message; a batch query
/// answers it in the pair's place of its results; an embed request answers 422.
struct Refused {
    query: Value,
    message: String,
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        ApiError::bad(r.message)
    }
}

/// The pairs of a request, each read as `relbert query` reads a line: a line that reads two
/// ways is the reading the store holds (else its default reading; see
/// [`QueryEngine::held_reading`]), so `"re:invent conference"`, and `"Re:Invent conference"`,
/// find a stored (`re:invent`, `conference`) here as on the command line.
/// `what` names one pair (`pair`) or, with `[i]` appended, each of a batch (`pairs`). JSON
/// that is not a pair fails the request; a pair whose words cannot be asked (not two words,
/// an empty or too long word, control characters) is [`Refused`] in its place.
async fn read_pairs(
    inputs: Vec<Value>,
    what: &str,
    batch: bool,
    max_chars: usize,
    loaded: &Snapshot,
) -> Result<Vec<Result<(String, String), Refused>>, ApiError> {
    let name = |i: usize| {
        if batch {
            format!("{what}[{i}]")
        } else {
            what.to_string()
        }
    };
    let mut readings = Vec::with_capacity(inputs.len());
    for (i, v) in inputs.into_iter().enumerate() {
        readings.push(
            PairInput::of(&v, &name(i))?
                .readings(&name(i))
                .map_err(|message| Refused { query: v, message }),
        );
    }
    let picked: Vec<usize> = if readings.iter().flatten().any(|r| r.len() > 1) {
        let local = loaded.engine.index().is_some();
        let asked: Vec<Vec<(String, String)>> = readings
            .iter()
            .map(|r| r.as_ref().ok().cloned().unwrap_or_default())
            .collect();
        on_store(&loaded.engine, local, move |e| {
            let mut picked = Vec::with_capacity(asked.len());
            for r in &asked {
                picked.push(e.held_reading(r).map_err(ApiError::internal)?);
            }
            Ok(picked)
        })
        .await?
    } else {
        vec![0; readings.len()]
    };
    Ok(readings
        .into_iter()
        .zip(picked)
        .enumerate()
        .map(|(i, (r, j))| {
            let (a, b) = r?.swap_remove(j);
            let query = json!([a, b]);
            check_words((a, b), &name(i), max_chars).map_err(|message| Refused { query, message })
        })
        .collect())
}

/// The body of `/v1/query`. Every field but the pairs is kept as JSON and read by
/// [`whole`] or [`flag`], for one rule over all of them (found by an audit: `"k": 3.0` was
/// refused naming Rust's `usize`, `"exact": null` was refused while `"k": null` was the
/// default): null is the field left out; a whole number may be written `3.0`, as JSON Schema
/// counts it an integer; an error names the field and what it takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    /// One pair, read by [`PairInput::of`] (so that a batch's items are named by place).
    pair: Option<Value>,
    /// A batch, read by [`list`].
    pairs: Option<Value>,
    k: Option<Value>,
    exact: Option<Value>,
    ef: Option<Value>,
    keep_shared_words: Option<Value>,
    /// Add a 2-D PCA projection of the query and its results.
    plot: Option<Value>,
    /// Answer 404 for pairs the index does not store instead of encoding them.
    stored_only: Option<Value>,
}

/// JSON as a message quotes it: cut as [`crate::error::quoted`] cuts (80 characters,
/// marked `…`).
fn shown_json(value: &Value) -> String {
    let json = value.to_string();
    let (kept, mark) = crate::error::cut_for_message(&json);
    format!("{kept}{mark}")
}

/// The whole-number field `name` of a body, `default` when left out or null, or a 422
/// naming it and its range, 1 to `max`. A number with no fraction is whole however it is
/// written (`3.0`, `3e0`); one past what JSON carries exactly is named as larger than `max`
/// rather than as the float serde read it as.
fn whole(value: Option<Value>, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let n = match &value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                // Saturates: a larger one is out of range all the same.
                .map(|f| f as u64)
        }),
        _ => None,
    };
    match n {
        Some(n) if n >= 1 && n <= max as u64 => Ok(n as usize),
        _ => {
            // Past 2^53 a number was read as the nearest float: not what was sent.
            let got = match (&value, n) {
                (Value::Number(v), Some(n)) if v.as_u64().is_none() && n > max as u64 => {
                    format!("a number larger than {max}")
                }
                _ => shown_json(&value),
            };
            Err(ApiError::bad(format!(
                "{name} must be a whole number between 1 and {max} (or null, or left out, for \
                 {default}); got {got}"
            )))
        }
    }
}

/// The true-or-false field `name` of a body, false when left out or null, or a 422 naming it.
fn flag(value: Option<Value>, name: &str) -> Result<bool, ApiError> {
    match value {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(other) => Err(ApiError::bad(format!(
            "{name} must be true or false (or null, or left out, for false); got {}",
            shown_json(&other)
        ))),
    }
}

/// The list field `name` of a body (its pairs), `None` when left out or null, or a 422
/// naming it.
fn list(value: Option<Value>, name: &str) -> Result<Option<Vec<Value>>, ApiError> {
    match value {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(other) => Err(ApiError::bad(format!(
            "{name} must be a list of pairs, such as [[\"paris\", \"france\"], \"rome:italy\"]; \
             got {}",
            shown_json(&other)
        ))),
    }
}

/// The pairs of a batch, read and checked ([`read_pairs`]) after the batch limit.
async fn check_pairs(
    pairs: Vec<Value>,
    state: &AppState,
    loaded: &Snapshot,
) -> Result<Vec<Result<(String, String), Refused>>, ApiError> {
    let max = state.limits.max_batch_pairs;
    if pairs.is_empty() {
        return Err(ApiError::bad("pairs: the list is empty"));
    }
    if pairs.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("pairs: {} pairs, more than the limit of {max}", pairs.len()),
        ));
    }
    read_pairs(pairs, "pairs", true, state.limits.max_word_chars, loaded).await
}

async fn query(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<QueryRequest>,
) -> ApiResult {
    let loaded = &answering(&state)?;
    // The default answers within the server's own limit.
    let k = whole(req.k, "k", 10.min(state.limits.max_k), state.limits.max_k)?;
    let exact = flag(req.exact, "exact")?;
    let keep_shared_words = flag(req.keep_shared_words, "keep_shared_words")?;
    let plot = flag(req.plot, "plot")?;
    let stored_only = flag(req.stored_only, "stored_only")?;
    let pairs = list(req.pairs, "pairs")?;
    // As `relbert query --exact --ef N` is refused (found by an audit: the server took it
    // and ignored ef).
    if exact && req.ef.is_some() {
        return Err(ApiError::bad(
            "\"ef\" cannot be used with \"exact\": true: ef sizes the HNSW graph search's \
             candidate list, and exact compares the query with every row instead of searching \
             the graph; give one or the other",
        ));
    }
    // As k's: a server started with `--max-ef` under 64 refused its own default.
    let ef = whole(
        req.ef,
        "ef",
        super::DEFAULT_EF.min(state.limits.max_ef),
        state.limits.max_ef,
    )?;
    let opts = QueryOptions {
        k,
        exact,
        ef,
        keep_shared_words,
    };
    match (req.pair, pairs) {
        (Some(p), None) => {
            let read = read_pairs(vec![p], "pair", false, state.limits.max_word_chars, loaded);
            let Some((a, b)) = read.await?.pop().transpose()? else {
                return Err(ApiError::bad("pair: no pair"));
            };
            let vectors =
                vectors_of(&state, loaded, &[(a.clone(), b.clone())], stored_only).await?;
            let Some(found) = vectors.into_iter().next() else {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no vector",
                ));
            };
            let found = found.map_err(|(status, msg)| ApiError::new(status, msg))?;
            Ok(Json(answer(loaded, &a, &b, found, &opts, plot).await?))
        }
        (None, Some(ps)) => {
            // Every problem of one pair (its words, the encoder's refusal, `stored_only`) is
            // answered in its place, beside the others' answers.
            let read = check_pairs(ps, &state, loaded).await?;
            let asked: Vec<(String, String)> = read
                .iter()
                .filter_map(|r| r.as_ref().ok().cloned())
                .collect();
            let mut vectors = vectors_of(&state, loaded, &asked, stored_only)
                .await?
                .into_iter();
            let mut out = Vec::with_capacity(read.len());
            for (i, r) in read.into_iter().enumerate() {
                let failed = |query: Value, status: StatusCode, msg: String| {
                    let msg = if msg.starts_with("pairs[") {
                        msg
                    } else {
                        format!("pairs[{i}]: {msg}")
                    };
                    json!({"query": query, "error": msg, "status": status.as_u16()})
                };
                out.push(match r {
                    Err(refused) => failed(
                        refused.query,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        refused.message,
                    ),
                    Ok((a, b)) => match vectors.next() {
                        Some(Ok(found)) => answer(loaded, &a, &b, found, &opts, plot).await?,
                        Some(Err((status, msg))) => failed(json!([a, b]), status, msg),
                        None => failed(
                            json!([a, b]),
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "no vector".into(),
                        ),
                    },
                });
            }
            Ok(Json(json!({ "results": out })))
        }
        (None, None) => Err(ApiError::bad(
            "give \"pair\" (one query) or \"pairs\" (a batch); the body has neither",
        )),
        (Some(_), Some(_)) => Err(ApiError::bad(
            "give either \"pair\" (one query) or \"pairs\" (a batch), not both",
        )),
    }
}

/// A query vector, where it came from, and its row if stored.
type Found = (Vec<f32>, Source, Option<usize>);

/// Runs `f` on the engine: inline when `inline` (a memory-mapped index answers in
/// microseconds), else on the blocking pool (a Qdrant client blocks its thread on the
/// network; an exact search scans every row), so async workers are never held up. Every read
/// of the index goes through here, and a 503 answers it instead when the index's files were
/// changed in place ([`super::overwritten`]), checked right before `f` runs: the check
/// [`answering`] made when the request started may be long past (found by review R3: a
/// request queued for the encoder read files copied over meanwhile, and the server died of
/// SIGBUS).
async fn on_store<T: Send + 'static>(
    engine: &Arc<QueryEngine>,
    inline: bool,
    f: impl FnOnce(&QueryEngine) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let checked = move |engine: &QueryEngine| match super::overwritten(engine) {
        Some(why) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why)),
        None => f(engine),
    };
    if inline {
        return checked(engine);
    }
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || checked(&engine))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// The query vectors of `pairs`: stored ones straight from the store, the rest encoded
/// together through the batcher. A pair the encoder refuses (or, with `stored_only`, one
/// the store lacks) gets its own status and message; a full queue fails the request. An
/// encoded pair with words the model reads as its unknown token alone is logged at warn
/// level, as `relbert query` warns of it.
async fn vectors_of(
    state: &AppState,
    loaded: &Snapshot,
    pairs: &[(String, String)],
    stored_only: bool,
) -> Result<Vec<Result<Found, (StatusCode, String)>>, ApiError> {
    let mut out: Vec<Option<Result<Found, (StatusCode, String)>>> = Vec::with_capacity(pairs.len());
    let mut missing = Vec::new();
    let local = loaded.engine.index().is_some();
    let wanted = pairs.to_vec();
    let stored = on_store(&loaded.engine, local, move |e| {
        wanted
            .iter()
            .map(|(a, b)| e.stored(a, b).map_err(ApiError::internal))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    for (i, ((a, b), found)) in pairs.iter().zip(stored).enumerate() {
        match found {
            Some((v, row)) => {
                state.metrics.query_source("index");
                out.push(Some(Ok((v, Source::Index, row))));
            }
            None if stored_only => out.push(Some(Err((
                StatusCode::NOT_FOUND,
                format!("({a}, {b}) is not in the index (stored_only was asked)"),
            )))),
            None => {
                missing.push(i);
                out.push(None);
            }
        }
    }
    if !missing.is_empty() {
        let wanted: Vec<(String, String)> = missing.iter().map(|&i| pairs[i].clone()).collect();
        for (&i, v) in missing
            .iter()
            .zip(encode_each(&loaded.batcher, wanted).await?)
        {
            out[i] = Some(match v {
                Ok(v) => {
                    state.metrics.query_source("encoded");
                    // As `relbert query` warns: the answer's JSON has no place for notes.
                    if let Some(wt) = &loaded.unknown {
                        let (a, b) = &pairs[i];
                        crate::embed::warn_unknown_query_words(
                            wt,
                            "/v1/query: the query",
                            a,
                            b,
                            crate::query::UNKNOWN_QUERY_OUTCOME,
                        );
                    }
                    Ok((v, Source::Encoded, None))
                }
                Err(msg) => Err((StatusCode::UNPROCESSABLE_ENTITY, msg)),
            });
        }
    }
    Ok(out
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err((StatusCode::INTERNAL_SERVER_ERROR, "no vector".into()))))
        .collect())
}

/// The vectors of `pairs`, encoded together, each or the encoder's reason for refusing it:
/// a refused pair fails alone, and the others still share forward passes (found by a
/// review: one over-long pair sent every pair of its request through the encoder again, one
/// at a time, which slowed other clients to timeouts). A full queue or a stopped encoder
/// fails the whole request.
async fn encode_each(
    batcher: &super::Batcher,
    pairs: Vec<(String, String)>,
) -> Result<Vec<Result<Vec<f32>, String>>, ApiError> {
    let n = pairs.len();
    let out = batcher.embed_each(pairs).await?;
    if out.len() != n {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the encoder returned another number of vectors than pairs",
        ));
    }
    Ok(out)
}

/// One query's answer, as `relbert query --json` prints it (plus `plot` if asked); see
/// [`on_store`] for where it runs.
async fn answer(
    loaded: &Snapshot,
    a: &str,
    b: &str,
    found: Found,
    opts: &QueryOptions,
    plot: bool,
) -> Result<Value, ApiError> {
    let inline = loaded.engine.index().is_some() && !opts.exact;
    let (a, b, opts) = (a.to_string(), b.to_string(), opts.clone());
    let words = loaded.words.clone();
    on_store(&loaded.engine, inline, move |e| {
        answer_now(e, words.as_deref(), &a, &b, found, &opts, plot)
    })
    .await
}

/// [`answer`] on the calling thread.
fn answer_now(
    engine: &QueryEngine,
    words: Option<&WordTable>,
    a: &str,
    b: &str,
    (v, source, self_row): Found,
    opts: &QueryOptions,
    plot: bool,
) -> Result<Value, ApiError> {
    // A local index gives each hit's row (its vector is read by row for the plot); another
    // store gives pairs, whose vectors are looked up by pair.
    let hits: Vec<(Option<usize>, QueryHit)> = match engine.index() {
        Some(_) => engine
            .search_rows(a, b, &v, self_row, opts, words)
            .map_err(ApiError::internal)?
            .into_iter()
            .map(|(row, h)| (Some(row), h))
            .collect(),
        None => engine
            .search_store(a, b, &v, source, opts)
            .map_err(ApiError::internal)?
            .into_iter()
            .map(|h| (None, h))
            .collect(),
    };
    let mut doc = json!({
        "query": [a, b],
        "source": source,
        "results": hits.iter().map(|(_, h)| h).collect::<Vec<_>>(),
    });
    if plot {
        let mut vectors = vec![v];
        for (row, hit) in &hits {
            vectors.push(hit_vector(engine, *row, hit)?);
        }
        let refs: Vec<&[f32]> = vectors.iter().map(|v| v.as_slice()).collect();
        let points = pca::project_2d(&refs);
        doc["plot"] = json!(points);
    }
    Ok(doc)
}

/// A hit's stored vector: by row from a local index, else by pair from the store.
fn hit_vector(
    engine: &QueryEngine,
    row: Option<usize>,
    hit: &QueryHit,
) -> Result<Vec<f32>, ApiError> {
    if let (Some(index), Some(row)) = (engine.index(), row) {
        return Ok(index
            .vector(row)
            .map_err(|e| ApiError::internal(e.into()))?
            .into_owned());
    }
    let [head, tail] = &hit.pair;
    engine
        .store()
        .lookup(head, tail)
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("({head}, {tail}) was found but has no stored vector"),
            )
        })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbedRequest {
    /// Read by [`list`], then each by [`PairInput::of`], so that a malformed item is named by
    /// its place; null or left out is refused naming the field, as a query's fields are.
    pairs: Option<Value>,
}

/// Unit relation vectors of the pairs, always from the encoder (the index's pair function;
/// stored vectors may be kept at half precision, so they are not returned here).
async fn embed(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<EmbedRequest>,
) -> ApiResult {
    let loaded = answering(&state)?;
    let Some(pairs) = list(req.pairs, "pairs")? else {
        return Err(ApiError::bad(
            "the body has no \"pairs\": give a list of pairs, such as {\"pairs\": [[\"paris\", \
             \"france\"]]}",
        ));
    };
    let pairs = check_pairs(pairs, &state, &loaded)
        .await?
        .into_iter()
        .collect::<Result<Vec<_>, Refused>>()?;
    // The reply has no place for one pair's error: a refused pair fails the request, named.
    // The first refused pair ends the request; the pairs after it are not encoded.
    let vectors = match loaded.batcher.embed_all(pairs.clone()).await? {
        Ok(v) if v.len() == pairs.len() => v,
        Ok(_) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the encoder returned another number of vectors than pairs",
            ))
        }
        Err((i, msg)) => return Err(ApiError::bad(format!("pairs[{i}]: {msg}"))),
    };
    Ok(Json(json!({
        "dim": loaded.batcher.dim(),
        "pairs": pairs.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>(),
        "vectors": vectors,
    })))
}

/// The name-value pairs of a URL's query, decoded as a form is (`+` a space, `%XX` a byte,
/// a `%` not followed by two hex digits itself), as axum's `Query` reads them, but a value of
/// `q` or `limit` that is not UTF-8 once decoded is a 400 naming it: read lossily (as
/// `form_urlencoded::parse` and so `Query` read it), `q=%ff` became U+FFFD and was answered
/// as a search for that character (no suggestions) rather than as the mistake it is.
fn suggest_query(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut params = Vec::new();
    for piece in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        let name = form_decode(name).unwrap_or_else(|bytes| lossy(&bytes));
        let value = match form_decode(value) {
            Ok(v) => v,
            Err(_) if name == "q" || name == "limit" => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the parameter {name} is not UTF-8 text once its %-escapes are decoded \
                     (got {:?}); encode the text as UTF-8, as encodeURIComponent does",
                        value.chars().take(40).collect::<String>()
                    ),
                ))
            }
            Err(bytes) => lossy(&bytes),
        };
        params.push((name, value));
    }
    Ok(params)
}

/// A form-encoded name or value decoded (`+` a space, then `%XX` a byte, as
/// `application/x-www-form-urlencoded` reads it), or its bytes when they are not UTF-8.
fn form_decode(text: &str) -> Result<String, Vec<u8>> {
    let spaced = text.replace('+', " ");
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(&spaced).collect();
    String::from_utf8(bytes).map_err(|e| e.into_bytes())
}

/// Bytes as text, each invalid sequence read as U+FFFD.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The parameters of `/v1/suggest`: `q`, and `limit`, read by [`whole`] as a body's `k` is
/// (found by an audit: `limit=3.0` was refused while `"k": 3.0` was taken, and a limit past
/// `--max-k` was answered as that many while such a `k` was refused).
#[derive(Debug)]
struct SuggestParams {
    q: String,
    limit: usize,
}

impl SuggestParams {
    /// Reads the URL's parameters, each error a 400 naming the parameter and what it takes
    /// (axum's own rejection says "Failed to deserialize query string"). Other parameters
    /// are ignored, as everywhere in a URL (a cache-busting `_=123`, say).
    fn read(params: Vec<(String, String)>, max_k: usize) -> Result<Self, ApiError> {
        let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
        let (mut q, mut limit) = (None, None);
        for (name, value) in params {
            let slot = match name.as_str() {
                "q" => &mut q,
                "limit" => &mut limit,
                _ => continue,
            };
            // Which of two values was meant cannot be known: say so rather than pick one.
            if slot.replace(value).is_some() {
                return Err(bad(format!("the parameter {name} is given twice")));
            }
        }
        let q = q.ok_or_else(|| {
            bad(
                "the parameter q is missing: /v1/suggest?q=par gives the pairs whose a:b \
                 starts with par"
                    .into(),
            )
        })?;
        // k's rule, default and words; a 400 as every parameter's error, not a body's 422.
        let limit = whole(
            limit.and_then(|text| url_number(&text)),
            "limit",
            10.min(max_k),
            max_k,
        )
        .map_err(|e| bad(e.message))?;
        Ok(SuggestParams { q, limit })
    }
}

/// A URL parameter's text as the JSON [`whole`] reads: `null` as left out (as a body's
/// null), a number as that number (also as Rust writes one, `+2` or `03`, which JSON does
/// not), anything else as a string, shown quoted in the error.
fn url_number(text: &str) -> Option<Value> {
    if text == "null" {
        return None;
    }
    if let Ok(v @ Value::Number(_)) = serde_json::from_str::<Value>(text) {
        return Some(v);
    }
    let number = match text.parse::<u64>() {
        Ok(n) => Some(serde_json::Number::from(n)),
        Err(_) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64),
    };
    Some(number.map_or_else(|| Value::String(text.to_string()), Value::Number))
}

async fn suggest(State(state): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> ApiResult {
    let params = suggest_query(raw.as_deref().unwrap_or(""))?;
    let p = SuggestParams::read(params, state.limits.max_k)?;
    let loaded = answering(&state)?;
    if p.q.chars().count() > 2 * state.limits.max_word_chars + 1 {
        return Err(ApiError::bad("q is longer than a pair may be"));
    }
    let found = loaded
        .suggestions
        .prefix(&p.q, p.limit, loaded.engine.index())
        .map_err(ApiError::internal)?;
    let out: Vec<Value> = found
        .into_iter()
        .map(|s| json!({"pair": [s.head, s.tail], "label": s.label}))
        .collect();
    let mut doc = json!({ "suggestions": out });
    if let Some(why) = loaded.suggestions.off() {
        doc["note"] = json!(why);
    }
    Ok(Json(doc))
}

async fn info(State(state): State<Arc<AppState>>) -> ApiResult {
    let loaded = loaded(&state)?;
    let mut doc = loaded.info.clone();
    // A served collection as it is now (re-read every few seconds), not as it was opened.
    if let Some(Value::Object(now)) = state.collection_now() {
        for (k, v) in now {
            doc[k.as_str()] = v;
        }
    }
    // The served directory lost its index: answers still come from the open one.
    if state.index_removed() {
        doc["removed"] = json!(true);
    }
    // The directory holds an index that is not served (another model, or not openable),
    // or the served one's files were overwritten: said here, not only in the log.
    if let Some(n) = state.not_served() {
        doc["not_served"] = json!(n);
    }
    if let Some(why) = super::overwritten(&loaded.view.engine) {
        doc["changed_in_place"] = json!(why);
    }
    doc["server"] = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "limits": state.limits,
        "batching": {
            "max_batch": state.batch.max_batch,
            "max_tokens": state.batch.max_tokens,
            "max_wait_ms": state.batch.max_wait.as_secs_f64() * 1e3,
            "queue_capacity": state.batch.queue_capacity,
        },
        "auth": state.token.is_some(),
        "backend": if loaded.engine.index().is_some() { "local" } else { "qdrant" },
        "device": super::device_name(state.device()),
        // Found by an audit: `serve --dtype bf16` on an f32 index only warned in the log. The
        // format in place now, which follows a rebuild of the index unless `--dtype` chose it.
        "dtype": state.ready().map(|l| l.batcher.dtype().name()),
    });
    Ok(Json(doc))
}

/// A non-200 answer of `/v1/health`: the shape of every other error (`error` a message,
/// `status` the number), with the server's state in `state` for a balancer or a script that
/// tells "starting" from "failed" (found by an audit: health alone answered a string
/// `status`, and "starting" had no `error`).
fn health_problem(state: &str, message: String) -> Response {
    let code = StatusCode::SERVICE_UNAVAILABLE;
    let body = json!({"error": message, "status": code.as_u16(), "state": state});
    let mut r = (code, Json(body)).into_response();
    // As every other 503: a client may look again shortly.
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    // Read once: the follower may change it between two reads. A collection deleted or now of
    // another model comes first: queries are refused outright then.
    let unavailable = state.stale().or_else(|| state.overwritten()).or_else(|| {
        // Found by an audit: health said ready while every query waited for the store's
        // retries and got 503 or 504. A load balancer should send queries elsewhere.
        state.unreachable().map(|why| {
            format!(
                "the served collection did not answer the server's last look at it (it looks \
                 every {} s): {why}; queries are likely to fail until it answers",
                super::FOLLOW_EVERY.as_secs()
            )
        })
    });
    match (state.ready(), state.failure(), unavailable) {
        (Some(_), _, Some(why)) => health_problem("unavailable", why),
        (Some(_), _, None) => {
            // `status` stays the string "ready" in the 200 for the probes and scripts written
            // against it before `state` was added; `state` is the field every answer has.
            let mut doc = json!({"status": "ready", "state": "ready", "pairs": state.pairs_now()});
            // Answers still come from the index the server has open; a balancer may keep
            // sending queries, an operator should know (as `/v1/info` says).
            if let Some(n) = state.not_served() {
                doc["not_served"] = json!(n);
            }
            Json(doc).into_response()
        }
        (None, Some(why), _) => health_problem("failed", load_failed(why)),
        (None, None, _) => health_problem("starting", "the index is still loading".into()),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Some(l) = state.ready() {
        state.metrics.set_queue_depth(l.batcher.current().depth());
    }
    // prometheus-client writes the OpenMetrics text format (`_total` counters, `# EOF`),
    // which a parser of the older 0.0.4 text format misreads: say which it is.
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review R10 (s20): a refused pair quoted its first 60 characters with no mark that
    /// it was cut; it quotes 80 and says so with `…`, as every other message does.
    #[test]
    fn a_refused_pair_is_quoted_cut_and_marked() {
        let long = "x".repeat(500);
        let e = PairInput::of(&serde_json::json!([long, "b", "c"]), "pairs[0]")
            .err()
            .unwrap();
        assert!(e.message.ends_with('…'), "{}", e.message);
        assert!(e.message.len() < 200, "{}", e.message);
        let e = PairInput::Line(format!("{long} a b"))
            .readings("pair")
            .unwrap_err();
        assert!(e.ends_with("\"…"), "{e}");
        assert!(
            e.contains(&"x".repeat(80)) && !e.contains(&"x".repeat(81)),
            "{e}"
        );
    }

    /// Review R3 of 7b2872c: a request checked the index's files once, when it started, and
    /// then waited in the encoder's queue; files copied over meanwhile were read all the
    /// same, and the server died of SIGBUS. Every read of the index ([`on_store`], inline or
    /// on the blocking pool) now checks right before it runs: files changed in place since
    /// the request's own check answer 503 naming the file, and nothing reads the map.
    #[test]
    fn a_read_of_the_index_after_its_files_changed_in_place_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        crate::defaults::tests::tiny_index(&dir);
        let engine = Arc::new(QueryEngine::open(&dir, None).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let read = |inline: bool| {
            rt.block_on(on_store(&engine, inline, |e| {
                e.stored("cat", "pet")
                    .map(|found| found.is_some())
                    .map_err(ApiError::internal)
            }))
        };
        // As the request's start found it: read.
        for inline in [true, false] {
            assert!(read(inline).unwrap(), "inline: {inline}");
        }
        // Then the same bytes written over a file in place (a `cp` of an identical file).
        let vectors = dir.join("vectors");
        let bytes = std::fs::read(&vectors).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&vectors)
            .unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        file.set_modified(std::time::SystemTime::now() + Duration::from_secs(1))
            .unwrap();
        drop(file);
        for inline in [true, false] {
            let e = read(inline).unwrap_err();
            assert_eq!(
                e.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "inline: {inline}"
            );
            assert!(e.message.contains("changed in place"), "{}", e.message);
            assert!(e.message.contains("vectors"), "{}", e.message);
        }
    }
}
