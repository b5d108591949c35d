//! GraphQL over HTTP (the GraphQL-over-HTTP spec): `POST /graphql` and `GET /graphql`.
//!
//! Status codes and media types:
//! - The response is `application/graphql-response+json` when the `Accept` header prefers it,
//!   else `application/json`. An `Accept` that allows neither gets 406.
//! - With `application/graphql-response+json`, a request error (the document does not parse or
//!   validate, or a limit refuses it, so there is no `data`) answers 400; with
//!   `application/json` it answers 200, as the spec requires for legacy clients. Field errors
//!   always answer 200 with partial `data`.
//! - Malformed JSON or a body that is not a GraphQL request answers 400 `BAD_REQUEST`; a batch
//!   (an array) `BATCHING_NOT_SUPPORTED` unless `SECURECART_MAX_BATCH` allows it
//!   (`BATCH_TOO_LARGE` above); a POST that is not `application/json` answers 415
//!   `UNSUPPORTED_MEDIA_TYPE`; a body above `SECURECART_MAX_BODY_BYTES` 413 `PAYLOAD_TOO_LARGE`;
//!   `variables` above `SECURECART_MAX_VARIABLES_BYTES` 400 `VARIABLES_TOO_LARGE`; a mutation over
//!   GET 405 with `Allow: POST`; an execution past `SECURECART_EXECUTION_TIMEOUT_MS` 504
//!   `EXECUTION_TIMEOUT`; a request over a rate limit or cost budget 429 `THROTTLED` with
//!   `Retry-After` and `RateLimit` headers.
//! - CSRF prevention, from the threat: a cross-site request forgery rides on credentials the
//!   browser adds by itself (cookies). SecureCart reads only the `Authorization` header, which
//!   no browser adds to a cross-site request without a CORS preflight, so a GET without a
//!   `Cookie` header is served as it is: urql's default GET queries, graphql-request's
//!   `method: 'GET'` and Apollo's persisted queries over GET work unchanged, and a forged GET
//!   could only run a public query the attacker could run anyway (GET never runs a mutation).
//!   A GET that carries cookies (a deployment behind a proxy or gateway that authenticates
//!   them, say) must also prove it was preflighted, as Apollo Server asks: `Content-Type:
//!   application/json` or a non-empty `Apollo-Require-Preflight`, `X-Apollo-Operation-Name` or
//!   `GraphQL-Require-Preflight` header (400 `CSRF_CHECK_FAILED` otherwise, in the media type
//!   `Accept` asked for). POST must be `application/json`, which needs a preflight cross-site.
//! - A browser (`Accept: text/html`) that GETs `/graphql` gets GraphiQL when it is enabled.
//!
//! Every error body has the GraphQL shape `{"errors":[{"message","extensions":{"code"}}]}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tracing::Instrument;

use super::stream::{self, StreamMode};
use crate::auth::Caller;
use crate::budget::BillingKey;
use crate::client::Peer;
use crate::config::IntrospectionPolicy;
use crate::error::ClientError;
use crate::graphql::errors::IntrospectionDenied;
use crate::graphql::limits::gate::is_request_error;
use crate::graphql::limits::{CostCell, CostReport};
use crate::graphql::loaders::Loaders;
use crate::state::AppState;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// Which response media type the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseType {
    GraphqlResponseJson,
    Json,
}

/// A transport-level failure, answered before the GraphQL engine runs.
type HttpError = ClientError;

fn http_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> HttpError {
    ClientError::new(status, code, message)
}

/// The response of a transport-level failure: the GraphQL error shape, in the media type the
/// client accepts (`application/json` when it accepts neither), and `Allow: POST` for a method
/// that is not.
fn refuse(e: HttpError, media: ResponseType) -> Response {
    let not_allowed = e.status == StatusCode::METHOD_NOT_ALLOWED;
    let mut response = e.into_response();
    let media = if media == ResponseType::GraphqlResponseJson { GRAPHQL_RESPONSE_JSON } else { JSON };
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    if not_allowed {
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// Picks the response media type from `Accept` (q-values honoured; ties go to the newer type).
fn negotiate(headers: &HeaderMap) -> Result<ResponseType, HttpError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(ResponseType::Json);
    };
    let (mut gql, mut json, mut any) = (0.0_f32, 0.0_f32, 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts.filter_map(|p| p.trim().strip_prefix("q=")).find_map(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
        match media.as_str() {
            "application/graphql-response+json" => gql = gql.max(q),
            "application/json" => json = json.max(q),
            "*/*" | "application/*" => any = any.max(q),
            _ => {}
        }
    }
    if gql > 0.0 && gql >= json {
        Ok(ResponseType::GraphqlResponseJson)
    } else if json > 0.0 || any > 0.0 {
        Ok(ResponseType::Json)
    } else {
        Err(http_error(
            StatusCode::NOT_ACCEPTABLE,
            "NOT_ACCEPTABLE",
            "accept application/graphql-response+json or application/json",
        ))
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

/// One request's context at the transport.
struct Call {
    caller: Caller,
    /// The client's self-declared name (deprecation metrics).
    client: String,
    billing: BillingKey,
    response_type: ResponseType,
    /// Came by GET: only queries may run (and subscriptions, streamed).
    get: bool,
    /// The streaming framing `Accept` allows, if any (see `stream`).
    stream: Option<StreamMode>,
    /// Whether `Accept` allows a JSON answer.
    json_accepted: bool,
    client_ip: String,
}

async fn call(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    caller: Option<Caller>,
    get: bool,
) -> Call {
    // `read_post` and `read_get` have refused what `Accept` does not allow.
    let negotiated = negotiate(headers);
    let json_accepted = negotiated.is_ok();
    let response_type = negotiated.unwrap_or(ResponseType::Json);
    let caller = match caller {
        // Verified once, by the rate-limit layer in `app::routes`.
        Some(caller) => caller,
        None => {
            let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            crate::auth::authenticate(&state.verifier, state.services.store(), authorization).await
        }
    };
    let client_ip = state.clients.of(peer.map(|p| p.ip()), headers).map(|ip| ip.to_string()).unwrap_or_default();
    let billing = BillingKey::of(&caller, &client_ip, &state.settings);
    let client = crate::graphql::deprecations::client_label(
        headers.get("apollographql-client-name").or_else(|| headers.get("x-client-name")).and_then(|v| v.to_str().ok()),
    );
    let stream = stream::mode(headers);
    Call { caller, client, billing, response_type, get, stream, json_accepted, client_ip }
}

/// `POST /graphql`.
pub async fn post(
    State(state): State<AppState>,
    Peer(peer): Peer,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let requests = match read_post(&state, &headers, body) {
        Ok(r) => r,
        Err(e) => return refuse(e, negotiate(&headers).unwrap_or(ResponseType::Json)),
    };
    let mut call = call(&state, &headers, peer, caller.map(|c| c.0), false).await;
    if matches!(requests, Batch::Many(_)) {
        // A batch answers one JSON array: its operations are never streamed.
        call.stream = None;
    }
    match requests {
        Batch::Single(request) => execute(&state, &call, *request).await,
        Batch::Many(requests) => {
            // Each operation is billed and limited on its own; the batch answers 200 with one
            // result per operation, in order.
            let mut results = Vec::with_capacity(requests.len());
            for request in requests {
                let response = execute(&state, &call, request).await;
                let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default();
                results.push(serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null));
            }
            let mut response = (StatusCode::OK, axum::Json(Value::Array(results))).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
            response
        }
    }
}

enum Batch {
    Single(Box<async_graphql::Request>),
    Many(Vec<async_graphql::Request>),
}

fn read_post(state: &AppState, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Batch, HttpError> {
    if stream::mode(headers).is_none() {
        negotiate(headers)?;
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media != "application/json" {
        return Err(http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("POST /graphql needs `Content-Type: application/json`, not `{content_type}`"),
        ));
    }
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(http_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("request body above {} bytes", state.settings.server.max_body_bytes),
            ));
        }
        Err(e) => return Err(http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.body_text())),
    };
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", format!("malformed JSON: {e}")))?;
    let limits = &state.settings.limits;
    match value {
        Value::Array(items) => {
            if limits.max_batch == 0 {
                return Err(http_error(
                    StatusCode::BAD_REQUEST,
                    "BATCHING_NOT_SUPPORTED",
                    "batched requests are not accepted",
                ));
            }
            if items.len() > limits.max_batch || items.is_empty() {
                return Err(http_error(
                    StatusCode::BAD_REQUEST,
                    "BATCH_TOO_LARGE",
                    format!("a batch holds 1 to {} operations (got {})", limits.max_batch, items.len()),
                ));
            }
            Ok(Batch::Many(items.into_iter().map(|v| parse_request(state, v)).collect::<Result<_, _>>()?))
        }
        other => Ok(Batch::Single(Box::new(parse_request(state, other)?))),
    }
}

fn parse_request(state: &AppState, value: Value) -> Result<async_graphql::Request, HttpError> {
    let bad = |m: String| http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", m);
    let Value::Object(map) = &value else {
        return Err(bad("the body must be a JSON object with a `query`".into()));
    };
    let persisted = map.get("extensions").and_then(|e| e.get("persistedQuery")).is_some();
    match map.get("query") {
        Some(Value::String(_)) => {}
        None | Some(Value::Null) if persisted => {}
        Some(_) => return Err(bad("`query` must be a string".into())),
        None => return Err(bad("the body has no `query`".into())),
    }
    match map.get("variables") {
        None | Some(Value::Null) => {}
        Some(vars @ Value::Object(_)) => check_variables_size(state, vars)?,
        Some(_) => return Err(bad("`variables` must be an object".into())),
    }
    if !matches!(map.get("operationName"), None | Some(Value::Null) | Some(Value::String(_))) {
        return Err(bad("`operationName` must be a string".into()));
    }
    serde_json::from_value(value).map_err(|e| bad(format!("not a GraphQL request: {e}")))
}

fn check_variables_size(state: &AppState, variables: &Value) -> Result<(), HttpError> {
    let max = state.settings.limits.max_variables_bytes;
    let size = serde_json::to_vec(variables).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > max {
        return Err(http_error(
            StatusCode::BAD_REQUEST,
            "VARIABLES_TOO_LARGE",
            format!("`variables` is {size} bytes; at most {max} are allowed"),
        ));
    }
    Ok(())
}

/// `GET /graphql`: GraphiQL for browsers, otherwise a query (never a mutation) from the URL.
pub async fn get(
    State(state): State<AppState>,
    Peer(peer): Peer,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Some(playground) = state.playground.as_ref().filter(|_| wants_html(&headers)) {
        return playground.page();
    }
    let request = match read_get(&state, &headers, raw.as_deref()) {
        Ok(r) => r,
        Err(e) => return refuse(e, negotiate(&headers).unwrap_or(ResponseType::Json)),
    };
    let call = call(&state, &headers, peer, caller.map(|c| c.0), true).await;
    execute(&state, &call, request).await
}

/// Whether a GET carries something a cross-site browser request cannot (Apollo's CSRF rule).
fn preflighted(headers: &HeaderMap) -> bool {
    let present = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).is_some_and(|v| !v.trim().is_empty());
    let simple_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|ct| {
        let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        matches!(media.as_str(), "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data")
    });
    matches!(simple_type, Some(false))
        || present("apollo-require-preflight")
        || present("x-apollo-operation-name")
        || present("graphql-require-preflight")
}

fn read_get(state: &AppState, headers: &HeaderMap, raw: Option<&str>) -> Result<async_graphql::Request, HttpError> {
    if stream::mode(headers).is_none() {
        negotiate(headers)?;
    }
    if state.settings.security.csrf_prevention && headers.contains_key(header::COOKIE) && !preflighted(headers) {
        return Err(http_error(
            StatusCode::BAD_REQUEST,
            "CSRF_CHECK_FAILED",
            "GET requests with cookies need a `Content-Type: application/json` or a non-empty `Apollo-Require-Preflight` header",
        ));
    }
    let params: HashMap<String, String> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", format!("bad query string: {e}")))?;
    let extensions = match params.get("extensions").filter(|e| !e.is_empty()) {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Some(v),
            _ => return Err(http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "`extensions` must be a JSON object")),
        },
        None => None,
    };
    let query = params.get("query").cloned().unwrap_or_default();
    if query.is_empty() && extensions.as_ref().and_then(|e| e.get("persistedQuery")).is_none() {
        return Err(http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "GET /graphql needs a `query` parameter"));
    }
    let mut request = async_graphql::Request::new(query.clone());
    if let Some(Value::Object(ext)) = extensions {
        for (k, v) in ext {
            if let Ok(v) = async_graphql::Value::from_json(v) {
                request.extensions.insert(k, v);
            }
        }
    }
    if let Some(name) = params.get("operationName").filter(|n| !n.is_empty()) {
        request = request.operation_name(name.clone());
    }
    if let Some(vars) = params.get("variables").filter(|v| !v.is_empty()) {
        match serde_json::from_str::<Value>(vars) {
            Ok(v @ Value::Object(_)) => {
                check_variables_size(state, &v)?;
                request = request.variables(async_graphql::Variables::from_json(v));
            }
            _ => return Err(http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "`variables` must be a JSON object")),
        }
    }
    Ok(request)
}

/// Counts the operation, its latency, its errors by code, and refusals by limits and budgets.
fn record_metrics(
    operation: &str,
    role: &str,
    report: &CostReport,
    response: &async_graphql::Response,
    elapsed: Duration,
) {
    use crate::telemetry::metrics as m;
    let name = m::operation_label(Some(operation).filter(|o| !o.is_empty()));
    let labels = [("type", report.operation_type.unwrap_or("unknown").to_string()), ("operation", name.clone())];
    metrics::counter!(m::REQUESTS, &labels).increment(1);
    metrics::histogram!(m::DURATION, &labels).record(elapsed.as_secs_f64());
    // What each operation costs, by who asks: the top-N dearest operations are
    // `topk(10, sum by (operation) (rate(securecart_operation_cost_actual_sum[5m])))`.
    let by = [("operation", name), ("role", role.to_string())];
    if let Some(requested) = report.requested {
        metrics::histogram!(m::COST_REQUESTED, &by).record(requested as f64);
    }
    if let Some(actual) = report.actual {
        metrics::histogram!(m::COST_ACTUAL, &by).record(actual as f64);
    }
    if report.throttled.is_some() {
        metrics::counter!(m::BUDGET_EXHAUSTED, "role" => role.to_string()).increment(1);
    }
    for error in &response.errors {
        let code = error
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(|c| match c {
                async_graphql::Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "UNKNOWN".into());
        if LIMIT_CODES.contains(&code.as_str()) {
            metrics::counter!(m::LIMIT_REJECTIONS, "code" => code.clone()).increment(1);
        }
        metrics::counter!(m::ERRORS, "code" => code).increment(1);
    }
    if report.throttled.is_some() {
        metrics::counter!(m::THROTTLED, "kind" => "budget").increment(1);
    }
}

const LIMIT_CODES: &[&str] = &[
    "QUERY_TOO_LARGE",
    "MAX_TOKENS_EXCEEDED",
    "MAX_ALIASES_EXCEEDED",
    "MAX_ROOT_FIELDS_EXCEEDED",
    "MAX_DEPTH_EXCEEDED",
    "MAX_COMPLEXITY_EXCEEDED",
    "FRAGMENT_CYCLE",
    "COST_EXCEEDS_BUDGET",
];

/// Adds the caller, its bill, fresh DataLoaders and the introspection policy to a request.
pub fn prepare(
    state: &AppState,
    request: async_graphql::Request,
    caller: Caller,
    billing: BillingKey,
    cost: CostCell,
) -> async_graphql::Request {
    prepare_unbilled(state, request, caller).data(billing).data(cost)
}

/// `prepare` without a bill: for an execution paid for by its subscribers' own admissions (a
/// shared subscription's group, `graphql::shared`).
pub fn prepare_unbilled(state: &AppState, request: async_graphql::Request, caller: Caller) -> async_graphql::Request {
    let introspection = match state.settings.introspection() {
        IntrospectionPolicy::Everyone => true,
        IntrospectionPolicy::Admins => caller.is_admin(),
        IntrospectionPolicy::Nobody => false,
    };
    let request = if introspection { request } else { request.disable_introspection().data(IntrospectionDenied) };
    if reads(state, &caller, &request) == Reads::Wrote {
        mark_writer(state, &caller);
    }
    request.data(Loaders::new(state.services.store())).data(caller)
}

/// Where an operation's reads go when a read replica is configured (see `store::replica`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// A query of a caller who has not written within the window.
    Replica,
    /// Anything else that only reads, or no replica at all.
    Primary,
    /// A mutation: the caller is marked as a recent writer.
    Wrote,
}

fn reads(state: &AppState, caller: &Caller, request: &async_graphql::Request) -> Reads {
    let store = state.services.store();
    if !store.has_replica() {
        return Reads::Primary;
    }
    match state.limits.operation_type(request) {
        Some(OperationType::Mutation) => Reads::Wrote,
        Some(OperationType::Query) => match caller {
            Caller::Authenticated(i) if store.routing.wrote_recently(&i.subject) => Reads::Primary,
            _ => Reads::Replica,
        },
        _ => Reads::Primary,
    }
}

/// Marks the caller as a recent writer (their reads stay on the primary for the window).
fn mark_writer(state: &AppState, caller: &Caller) {
    if let Caller::Authenticated(identity) = caller {
        state.services.store().routing.wrote(&identity.subject);
    }
}

async fn execute(state: &AppState, call: &Call, mut request: async_graphql::Request) -> Response {
    let registration = match state.persisted.resolve(&mut request, call.caller.is_admin()).await {
        Ok(registration) => registration,
        Err((status, code, message)) => return refuse(http_error(status, code, message), call.response_type),
    };
    // Only a GET or a streaming `Accept` needs the operation's type before it runs (the parse
    // is the gate's, cached).
    let operation = if call.get || call.stream.is_some() { state.limits.operation_type(&request) } else { None };
    let streamed = call.stream.filter(|m| stream::streams(*m, operation, call.json_accepted));
    // GET must not change anything: no mutation, and a subscription only as a stream.
    let over_get = match operation {
        Some(OperationType::Mutation) => false,
        Some(OperationType::Subscription) => streamed.is_some(),
        _ => true,
    };
    if call.get && !over_get {
        let message = "only queries (and subscriptions, streamed) may be sent with GET; use POST";
        return refuse(http_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", message), call.response_type);
    }
    if let Some(mode) = streamed {
        let request = prepare(state, request, call.caller.clone(), call.billing.clone(), CostCell::default());
        let persisted = state.persisted.clone();
        return stream::respond(state, &call.client_ip, request, mode, move |first| {
            if let Some(registration) = registration
                && !is_request_error(first)
            {
                tokio::spawn(async move { persisted.register(registration).await });
            }
        });
    }
    match run(state, call, request).await {
        Ok((response, report)) => {
            // A persisted query is kept only once it has passed every limit, parsing and
            // validation: a request error leaves no `data` and has errors without a path.
            if let Some(registration) = registration
                && !is_request_error(&response)
            {
                state.persisted.register(registration).await;
            }
            http_response(call, &report, &response)
        }
        Err(e) => refuse(e, call.response_type),
    }
}

/// Runs one operation within the execution timeout, in its `graphql` span, and counts it.
async fn run(
    state: &AppState,
    call: &Call,
    request: async_graphql::Request,
) -> Result<(async_graphql::Response, CostReport), HttpError> {
    let operation = request.operation_name.clone().unwrap_or_default();
    let role = match &call.caller {
        Caller::Authenticated(i) => i.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
        Caller::Anonymous => "anonymous".into(),
        Caller::Rejected(_) => "rejected".into(),
    };
    // The operation's name is recorded by the limits once the document is parsed (a document
    // names its operation even when the request's `operationName` does not).
    let span = tracing::info_span!(
        "graphql",
        operation = tracing::field::Empty,
        operation_type = tracing::field::Empty,
        caller_role = %role,
        cost = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let cost = CostCell::default();
    let routed = reads(state, &call.caller, &request);
    let request = prepare(state, request, call.caller.clone(), call.billing.clone(), cost.clone())
        .data(crate::graphql::deprecations::ClientName(call.client.clone()))
        .data(crate::graphql::deprecations::Seen::default());
    let timeout_ms = state.settings.limits.execution_timeout_ms;
    let execution = state.limits.execute(&state.schema, request).instrument(span.clone());
    let executed = tokio::time::timeout(Duration::from_millis(timeout_ms), async {
        match routed {
            Reads::Replica => crate::store::replica::scope(execution).await,
            _ => execution.await,
        }
    });
    let executed = executed.await;
    if routed == Reads::Wrote {
        // The window runs from the end of the write, however long it took.
        mark_writer(state, &call.caller);
    }
    let Ok(response) = executed else {
        // In the `graphql` span when it is on (the log filter at `info`), else in the request's.
        span.in_scope(|| tracing::warn!(timeout_ms, "execution timed out"));
        let message = format!("the operation did not finish in {timeout_ms} ms");
        return Err(http_error(StatusCode::GATEWAY_TIMEOUT, "EXECUTION_TIMEOUT", message));
    };
    let report = cost.0.lock().map(|r| r.clone()).unwrap_or_default();
    record_metrics(
        report.operation_name.as_deref().unwrap_or(&operation),
        &role,
        &report,
        &response,
        started.elapsed(),
    );
    Ok((response, report))
}

/// The response's JSON written straight to bytes, with no `serde_json::Value` tree in between
/// (that copy of every key and string cost about a tenth of a catalog page's CPU). A request
/// error has no `data` key (GraphQL over HTTP) and puts `errors` first; otherwise the keys are
/// async-graphql's: `data`, then `extensions` and `errors` when not empty.
fn response_bytes(response: &async_graphql::Response, request_error: bool) -> serde_json::Result<Vec<u8>> {
    if !request_error {
        return serde_json::to_vec(response);
    }
    #[derive(serde::Serialize)]
    struct WithoutData<'a> {
        #[serde(skip_serializing_if = "no_errors")]
        errors: &'a [async_graphql::ServerError],
        #[serde(skip_serializing_if = "no_extensions")]
        extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
    }
    fn no_extensions(map: &&std::collections::BTreeMap<String, async_graphql::Value>) -> bool {
        map.is_empty()
    }
    fn no_errors(errors: &&[async_graphql::ServerError]) -> bool {
        errors.is_empty()
    }
    serde_json::to_vec(&WithoutData { extensions: &response.extensions, errors: &response.errors })
}

/// The HTTP answer to an executed operation: status by the GraphQL-over-HTTP rules, media type,
/// rate-limit and caching headers.
fn http_response(call: &Call, report: &CostReport, response: &async_graphql::Response) -> Response {
    let request_error = is_request_error(response);
    let body = match response_bytes(response, request_error) {
        Ok(bytes) => bytes,
        Err(e) => {
            return refuse(ClientError::masked("serialising a GraphQL response", &e), call.response_type);
        }
    };
    // The database unreachable: the response says so with 503 and `Retry-After`, whatever data
    // it still holds, so retrying clients and load balancers see an outage, not a success.
    let unavailable = response.errors.iter().any(|e| {
        e.extensions.as_ref().and_then(|x| x.get("code")) == Some(&async_graphql::Value::from("SERVICE_UNAVAILABLE"))
    });
    let status = match (call.response_type, &report.throttled) {
        (_, Some(_)) => StatusCode::TOO_MANY_REQUESTS,
        _ if unavailable => StatusCode::SERVICE_UNAVAILABLE,
        (ResponseType::GraphqlResponseJson, None) if request_error => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let content_type = match call.response_type {
        ResponseType::GraphqlResponseJson => GRAPHQL_RESPONSE_JSON,
        ResponseType::Json => JSON,
    };
    let mut http = (status, body).into_response();
    let headers = http.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let bucket = report.throttled.map(|t| t.status).or(report.status);
    if let Some(s) = bucket {
        // The IETF RateLimit fields, in cost points: what is left and when the bucket is full.
        let reset = ((s.maximum_available - s.currently_available).max(0.0) / s.restore_rate).ceil() as u64;
        let value = format!(
            "limit={}, remaining={}, reset={reset}",
            s.maximum_available.floor(),
            s.currently_available.floor().max(0.0)
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert("ratelimit", v);
        }
        let policy =
            format!("{};w={};q=cost", s.maximum_available.floor(), (s.maximum_available / s.restore_rate).ceil());
        if let Ok(v) = HeaderValue::from_str(&policy) {
            headers.insert("ratelimit-policy", v);
        }
    }
    if let Some(t) = report.throttled {
        headers.insert(header::RETRY_AFTER, t.retry_after_secs.into());
    } else if unavailable {
        headers.insert(header::RETRY_AFTER, crate::error::UNAVAILABLE_RETRY_SECS.into());
    }
    // HTTP caching: anonymous catalog reads carry the schema's hints (the smallest max-age of
    // what they touched); anything a caller with a token sees is private and never stored.
    let cacheable = matches!(call.caller, Caller::Anonymous)
        && report.operation_type == Some("query")
        && response.errors.is_empty()
        && status == StatusCode::OK;
    let cache_control = match response.cache_control.value() {
        Some(hint) if cacheable && !hint.contains("private") => format!("public, {hint}"),
        _ if matches!(call.caller, Caller::Authenticated(_)) => "private, no-store".to_string(),
        _ => "no-cache".to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&cache_control) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Authorization, Accept"));
    http
}
