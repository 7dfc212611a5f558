//! The HTTP routes: JSON endpoints under `/v1/`, the page at `/`, and the middleware that
//! checks the bearer token, bounds each request's time, counts it and logs it. Every error
//! is a JSON object `{"error": message, "status": code}`; the only 5xx answers are the
//! declared ones (503 while loading or when the encoder queue is full, 504 past the time
//! limit, 500 for a damaged index).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Query, Request, State};
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
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    fn internal(e: crate::Error) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> Self {
        let status = match e {
            BatchError::Busy(_) | BatchError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
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
    let mut response = ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /v1/openapi.json",
    )
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
        &response,
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

/// Counts an answer in the metrics and writes its access-log line.
fn record(
    state: &AppState,
    endpoint: &str,
    method: &axum::http::Method,
    path: &str,
    response: &Response,
    took: Duration,
) {
    let status = response.status().as_u16();
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

/// The token of an `Authorization` header: scheme `Bearer` in any case (RFC 7235), then the
/// token with surrounding spaces left out.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
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

/// Authorisation, the time limit, metrics and the access log, around every route.
async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(200).collect();
    let authorised = match &state.token {
        Some(token) if !public(&endpoint) => req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .is_some_and(|given| same_secret(given.as_bytes(), token.as_bytes())),
        _ => true,
    };
    // A body announced larger than the limit is refused before it is sent (the client may
    // be waiting on `Expect: 100-continue`), not after it has been read or timed out.
    let too_long = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&n| n > state.limits.max_body_bytes as u64);
    let body_unread = !authorised || too_long.is_some();
    let announced_body = has_body(&req);
    let response = if !authorised {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this server needs a bearer token: Authorization: Bearer <token>",
        )
        .into_response()
    } else if let Some(n) = too_long {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is {n} bytes; the limit is {} bytes",
                state.limits.max_body_bytes
            ),
        )
        .into_response()
    } else {
        let limit = timeout_of(&state.limits);
        match tokio::time::timeout(limit, next.run(req)).await {
            Ok(r) => r,
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
    if announced_body && (body_unread || not_allowed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    record(
        &state,
        &endpoint,
        &method,
        &path,
        &response,
        started.elapsed(),
    );
    response
}

/// What one request answers from: the encoder's queue and the store as it was when the
/// request began (see [`Loaded::view`]).
struct Snapshot<'a> {
    batcher: &'a super::Batcher,
    view: Arc<View>,
}

impl std::ops::Deref for Snapshot<'_> {
    type Target = View;
    fn deref(&self) -> &View {
        &self.view
    }
}

/// The loaded index and model, or 503 while they load.
fn loaded(state: &AppState) -> Result<Snapshot<'_>, ApiError> {
    state
        .ready()
        .map(|l: &Loaded| Snapshot {
            batcher: &l.batcher,
            view: l.view(),
        })
        .ok_or_else(|| match state.failure() {
            Some(why) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the index could not be loaded: {why}"),
            ),
            None => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the index is still loading; see /v1/health",
            ),
        })
}

/// [`loaded`], for requests answered with the encoder or the store's vectors: 503 when the
/// served collection now holds another encoder's vectors ([`AppState::stale`]), whose
/// answers would be meaningless.
fn answering(state: &AppState) -> Result<Snapshot<'_>, ApiError> {
    let snapshot = loaded(state)?;
    if let Some(why) = state.stale() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why));
    }
    Ok(snapshot)
}

/// A JSON body of type `T`, or a 4xx naming what is wrong: 413 past the size limit, 400
/// for bytes that are not JSON, 422 for JSON of the wrong shape.
fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    // Every body is a JSON object: serde would also read a struct from an array by field
    // position, so `[["a","b"], 3]` was a query for k = 3 by accident of field order.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "request body: expected a JSON object ({\"pair\": ...}), found an array",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let status = match e.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, format!("request body: {e}"))
    })
}

/// A JSON request body, rejected with [`parse_body`]'s JSON errors instead of axum's text.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        parse_body(Bytes::from_request(req, state).await).map(JsonBody)
    }
}

/// A pair as a client may send it: `["a", "b"]` or `"a:b"` (also `a<TAB>b`, `a b`).
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a pair: [\"a\", \"b\"] or \"a:b\" (two words)")]
enum PairInput {
    Two([String; 2]),
    Line(String),
}

impl PairInput {
    /// How the pair reads, the default reading first: `["a", "b"]` one way; a line such as
    /// `re:invent conference` two ways ([`query_line_readings`]); a line that is not a pair
    /// none, reported as a 422 naming `what` (e.g. `pairs[3]`).
    fn readings(self, what: &str) -> Result<Vec<(String, String)>, ApiError> {
        match self {
            PairInput::Two([a, b]) => Ok(vec![(a.trim().to_string(), b.trim().to_string())]),
            PairInput::Line(line) => {
                let readings = query_line_readings(&line);
                if readings.is_empty() {
                    return Err(ApiError::bad(format!(
                        "{what}: expected two words as \"a:b\" or [\"a\", \"b\"], got {:?}",
                        line.chars().take(60).collect::<String>()
                    )));
                }
                Ok(readings)
            }
        }
    }
}

/// `pair`'s words checked against the word limits, or a 422 naming `what`.
fn check_words(
    pair: (String, String),
    what: &str,
    max_chars: usize,
) -> Result<(String, String), ApiError> {
    for w in [&pair.0, &pair.1] {
        if crate::pairs::blank_word(w) {
            return Err(ApiError::bad(format!(
                "{what}: a word is empty (or only invisible characters)"
            )));
        }
        if w.chars().count() > max_chars {
            return Err(ApiError::bad(format!(
                "{what}: a word is longer than {max_chars} characters"
            )));
        }
        if w.chars().any(char::is_control) {
            return Err(ApiError::bad(format!(
                "{what}: words may not contain control characters (tabs, newlines)"
            )));
        }
    }
    Ok(pair)
}

/// The pairs of a request, each read as `relbert query` reads a line: a line that reads two
/// ways is the reading the store holds (else its default reading), so `"re:invent
/// conference"` finds a stored (`re:invent`, `conference`) here as on the command line.
/// `what` names one pair (`pair`) or, with `[i]` appended, each of a batch (`pairs`).
async fn read_pairs(
    inputs: Vec<PairInput>,
    what: &str,
    batch: bool,
    max_chars: usize,
    loaded: &Snapshot<'_>,
) -> Result<Vec<(String, String)>, ApiError> {
    let name = |i: usize| {
        if batch {
            format!("{what}[{i}]")
        } else {
            what.to_string()
        }
    };
    let mut readings = Vec::with_capacity(inputs.len());
    for (i, p) in inputs.into_iter().enumerate() {
        readings.push(p.readings(&name(i))?);
    }
    let picked: Vec<usize> = if readings.iter().any(|r| r.len() > 1) {
        let local = loaded.engine.index().is_some();
        let asked = readings.clone();
        on_store(&loaded.engine, local, move |e| {
            let mut picked = Vec::with_capacity(asked.len());
            for r in &asked {
                let mut pick = 0;
                if r.len() > 1 {
                    for (j, (a, b)) in r.iter().enumerate() {
                        if e.stored(a, b).map_err(ApiError::internal)?.is_some() {
                            pick = j;
                            break;
                        }
                    }
                }
                picked.push(pick);
            }
            Ok(picked)
        })
        .await?
    } else {
        vec![0; readings.len()]
    };
    readings
        .into_iter()
        .zip(picked)
        .enumerate()
        .map(|(i, (mut r, j))| check_words(r.swap_remove(j), &name(i), max_chars))
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    pair: Option<PairInput>,
    pairs: Option<Vec<PairInput>>,
    k: Option<usize>,
    #[serde(default)]
    exact: bool,
    ef: Option<usize>,
    #[serde(default)]
    keep_shared_words: bool,
    /// Add a 2-D PCA projection of the query and its results.
    #[serde(default)]
    plot: bool,
    /// Answer 404 for pairs the index does not store instead of encoding them.
    #[serde(default)]
    stored_only: bool,
}

/// The pairs of a batch, read and checked ([`read_pairs`]) after the batch limit.
async fn check_pairs(
    pairs: Vec<PairInput>,
    state: &AppState,
    loaded: &Snapshot<'_>,
) -> Result<Vec<(String, String)>, ApiError> {
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
    let k = req.k.unwrap_or(10.min(state.limits.max_k));
    if k == 0 || k > state.limits.max_k {
        return Err(ApiError::bad(format!(
            "k must be between 1 and {}",
            state.limits.max_k
        )));
    }
    let ef = req.ef.unwrap_or(64);
    if ef == 0 || ef > state.limits.max_ef {
        return Err(ApiError::bad(format!(
            "ef must be between 1 and {}",
            state.limits.max_ef
        )));
    }
    let opts = QueryOptions {
        k,
        exact: req.exact,
        ef,
        keep_shared_words: req.keep_shared_words,
    };
    match (req.pair, req.pairs) {
        (Some(p), None) => {
            let read = read_pairs(vec![p], "pair", false, state.limits.max_word_chars, loaded);
            let Some((a, b)) = read.await?.pop() else {
                return Err(ApiError::bad("pair: no pair"));
            };
            let vectors =
                vectors_of(&state, loaded, &[(a.clone(), b.clone())], req.stored_only).await?;
            let Some(found) = vectors.into_iter().next() else {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no vector",
                ));
            };
            let found = found.map_err(|(status, msg)| ApiError::new(status, msg))?;
            Ok(Json(answer(loaded, &a, &b, found, &opts, req.plot).await?))
        }
        (None, Some(ps)) => {
            let pairs = check_pairs(ps, &state, loaded).await?;
            let vectors = vectors_of(&state, loaded, &pairs, req.stored_only).await?;
            let mut out = Vec::with_capacity(pairs.len());
            for ((a, b), found) in pairs.iter().zip(vectors) {
                out.push(match found {
                    Ok(found) => answer(loaded, a, b, found, &opts, req.plot).await?,
                    Err((status, msg)) => {
                        json!({"query": [a, b], "error": msg, "status": status.as_u16()})
                    }
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
/// network; an exact search scans every row), so async workers are never held up.
async fn on_store<T: Send + 'static>(
    engine: &Arc<QueryEngine>,
    inline: bool,
    f: impl FnOnce(&QueryEngine) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if inline {
        return f(engine);
    }
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// The query vectors of `pairs`: stored ones straight from the store, the rest encoded
/// together through the batcher. A pair the encoder refuses (or, with `stored_only`, one
/// the store lacks) gets its own status and message; a full queue fails the request.
async fn vectors_of(
    state: &AppState,
    loaded: &Snapshot<'_>,
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
        match loaded.batcher.embed(wanted).await {
            Ok(vs) => {
                for (&i, v) in missing.iter().zip(vs) {
                    state.metrics.query_source("encoded");
                    out[i] = Some(Ok((v, Source::Encoded, None)));
                }
            }
            // One refused pair among several: find which, one at a time.
            Err(BatchError::Rejected(msg)) => {
                for &i in &missing {
                    out[i] = Some(match loaded.batcher.embed(vec![pairs[i].clone()]).await {
                        Ok(mut v) => match v.pop() {
                            Some(v) => {
                                state.metrics.query_source("encoded");
                                Ok((v, Source::Encoded, None))
                            }
                            None => Err((StatusCode::UNPROCESSABLE_ENTITY, msg.clone())),
                        },
                        Err(BatchError::Rejected(m)) => Err((StatusCode::UNPROCESSABLE_ENTITY, m)),
                        Err(e) => return Err(e.into()),
                    });
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err((StatusCode::INTERNAL_SERVER_ERROR, "no vector".into()))))
        .collect())
}

/// One query's answer, as `relbert query --json` prints it (plus `plot` if asked); see
/// [`on_store`] for where it runs.
async fn answer(
    loaded: &Snapshot<'_>,
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
    pairs: Vec<PairInput>,
}

/// Unit relation vectors of the pairs, always from the encoder (the index's pair function;
/// stored vectors may be kept at half precision, so they are not returned here).
async fn embed(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<EmbedRequest>,
) -> ApiResult {
    let loaded = answering(&state)?;
    let pairs = check_pairs(req.pairs, &state, &loaded).await?;
    let vectors = loaded.batcher.embed(pairs.clone()).await?;
    Ok(Json(json!({
        "dim": loaded.batcher.dim(),
        "pairs": pairs.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>(),
        "vectors": vectors,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuggestParams {
    q: String,
    limit: Option<usize>,
}

async fn suggest(
    State(state): State<Arc<AppState>>,
    params: Result<Query<SuggestParams>, QueryRejection>,
) -> ApiResult {
    let Query(p) = params.map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, r.body_text()))?;
    let loaded = answering(&state)?;
    if p.q.chars().count() > 2 * state.limits.max_word_chars + 1 {
        return Err(ApiError::bad("q is longer than a pair may be"));
    }
    let limit = p.limit.unwrap_or(10).min(state.limits.max_k);
    let found = loaded
        .suggestions
        .prefix(&p.q, limit, loaded.engine.index())
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
    });
    Ok(Json(doc))
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    match (state.ready(), state.failure()) {
        (Some(l), _) => Json(json!({"status": "ready", "pairs": l.view().pairs})).into_response(),
        (None, Some(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failed", "error": why})),
        )
            .into_response(),
        (None, None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting"})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Some(l) = state.ready() {
        state.metrics.set_queue_depth(l.batcher.depth());
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
