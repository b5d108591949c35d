//! GraphQL over HTTP (the GraphQL-over-HTTP spec): `POST /graphql` and `GET /graphql`.
//!
//! Status codes and media types:
//! - The response is `application/graphql-response+json` when the `Accept` header prefers it,
//!   else `application/json`. An `Accept` that allows neither gets 406.
//! - With `application/graphql-response+json`, a request error (the document does not parse or
//!   validate, so there is no `data`) answers 400; with `application/json` it answers 200, as
//!   the spec requires for legacy clients. Field errors always answer 200 with partial `data`.
//! - Malformed JSON, a body that is not a GraphQL request, or a batch (an array; batching is
//!   off) answers 400 with `BAD_REQUEST`; a POST that is not `application/json` answers 415
//!   with `UNSUPPORTED_MEDIA_TYPE`; a body above `SECURECART_MAX_BODY_BYTES` answers 413 with
//!   `PAYLOAD_TOO_LARGE`; a mutation over GET answers 405 with `Allow: POST`.
//! - A browser (`Accept: text/html`) that GETs `/graphql` gets GraphiQL when it is enabled.
//!
//! Every error body has the GraphQL shape `{"errors":[{"message","extensions":{"code"}}]}`.

use std::collections::HashMap;

use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::Instrument;

use super::AppState;
use crate::auth::{Caller, Role};
use crate::config::IntrospectionPolicy;
use crate::graphql::errors::IntrospectionDenied;
use crate::graphql::loaders::Loaders;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// Which response media type the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseType {
    GraphqlResponseJson,
    Json,
}

/// A transport-level failure, answered before the GraphQL engine runs.
#[derive(Debug)]
struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn http_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> HttpError {
    HttpError { status, code, message: message.into() }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = json!({ "errors": [{ "message": self.message, "extensions": { "code": self.code } }] });
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
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

/// `POST /graphql`.
pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    match read_post(&state, &headers, body) {
        Ok((request, response_type)) => execute(&state, &headers, request, response_type).await,
        Err(e) => e.into_response(),
    }
}

fn read_post(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(async_graphql::Request, ResponseType), HttpError> {
    let response_type = negotiate(headers)?;
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
    if value.is_array() {
        return Err(http_error(StatusCode::BAD_REQUEST, "BATCHING_NOT_SUPPORTED", "batched requests are not accepted"));
    }
    Ok((parse_request(value)?, response_type))
}

fn parse_request(value: Value) -> Result<async_graphql::Request, HttpError> {
    let bad = |m: String| http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", m);
    let Value::Object(map) = &value else {
        return Err(bad("the body must be a JSON object with a `query`".into()));
    };
    match map.get("query") {
        Some(Value::String(_)) => {}
        Some(_) => return Err(bad("`query` must be a string".into())),
        None => return Err(bad("the body has no `query`".into())),
    }
    if !matches!(map.get("variables"), None | Some(Value::Null) | Some(Value::Object(_))) {
        return Err(bad("`variables` must be an object".into()));
    }
    if !matches!(map.get("operationName"), None | Some(Value::Null) | Some(Value::String(_))) {
        return Err(bad("`operationName` must be a string".into()));
    }
    serde_json::from_value(value).map_err(|e| bad(format!("not a GraphQL request: {e}")))
}

/// `GET /graphql`: GraphiQL for browsers, otherwise a query (never a mutation) from the URL.
pub async fn get(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if let Some(playground) = state.playground.as_ref().filter(|_| wants_html(&headers)) {
        return playground.page();
    }
    match read_get(&headers, raw.as_deref()) {
        Ok((request, response_type)) => execute(&state, &headers, request, response_type).await,
        Err(e) => e.into_response(),
    }
}

fn read_get(headers: &HeaderMap, raw: Option<&str>) -> Result<(async_graphql::Request, ResponseType), HttpError> {
    let response_type = negotiate(headers)?;
    let params: HashMap<String, String> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", format!("bad query string: {e}")))?;
    let Some(query) = params.get("query") else {
        return Err(http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "GET /graphql needs a `query` parameter"));
    };
    let mut request = async_graphql::Request::new(query.clone());
    if let Some(name) = params.get("operationName").filter(|n| !n.is_empty()) {
        request = request.operation_name(name.clone());
    }
    if let Some(vars) = params.get("variables").filter(|v| !v.is_empty()) {
        match serde_json::from_str::<Value>(vars) {
            Ok(v @ Value::Object(_)) => request = request.variables(async_graphql::Variables::from_json(v)),
            _ => return Err(http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "`variables` must be a JSON object")),
        }
    }
    // GET must not change anything: refuse mutations (and subscriptions) before executing.
    if let Ok(doc) = async_graphql::parser::parse_query(query) {
        let op = match request.operation_name.as_deref() {
            Some(name) => doc.operations.iter().find(|(n, _)| n.map(|n| n.as_str()) == Some(name)).map(|(_, op)| op),
            None => doc.operations.iter().next().map(|(_, op)| op),
        };
        if op.is_some_and(|op| op.node.ty != OperationType::Query) {
            return Err(http_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "only queries may be sent with GET; use POST",
            ));
        }
    }
    Ok((request, response_type))
}

/// The caller behind an `Authorization` header value (`Bearer <token>`), for HTTP and WebSocket.
/// No header: anonymous. A bad token: `Rejected`, so protected fields say why.
pub async fn authenticate(state: &AppState, authorization: Option<&str>) -> Caller {
    let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
        return Caller::Anonymous;
    };
    let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) else {
        return Caller::Rejected("the Authorization header must be `Bearer <token>`".into());
    };
    match state.verifier.verify(token.trim()).await {
        Ok(mut identity) => {
            if identity.has(Role::Vendor) && identity.vendor_id.is_none() {
                match state.store.vendor_id_for_owner(&identity.subject).await {
                    Ok(id) => identity.vendor_id = id,
                    Err(e) => tracing::warn!(error = %e, "looking up the vendor of a token failed"),
                }
            }
            Caller::Authenticated(identity)
        }
        Err(reason) => {
            tracing::debug!(reason = %reason, "bearer token refused");
            Caller::Rejected(reason)
        }
    }
}

/// Adds the caller, fresh DataLoaders and the introspection policy to a request.
pub fn prepare(state: &AppState, request: async_graphql::Request, caller: Caller) -> async_graphql::Request {
    let introspection = match state.settings.introspection() {
        IntrospectionPolicy::Everyone => true,
        IntrospectionPolicy::Admins => caller.is_admin(),
        IntrospectionPolicy::Nobody => false,
    };
    let request = if introspection { request } else { request.disable_introspection().data(IntrospectionDenied) };
    request.data(Loaders::new(&state.store)).data(caller)
}

async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    request: async_graphql::Request,
    response_type: ResponseType,
) -> Response {
    let operation = request.operation_name.clone().unwrap_or_default();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = authenticate(state, authorization).await;
    let role = match &caller {
        Caller::Authenticated(i) => i.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
        Caller::Anonymous => "anonymous".into(),
        Caller::Rejected(_) => "rejected".into(),
    };
    let span = tracing::info_span!("graphql", operation = %operation, caller_role = %role);
    let request = prepare(state, request, caller);
    let response = state.schema.execute(request).instrument(span).await;

    // A request error has no `data` at all (and its errors no `path`): nothing was executed.
    let request_error = !response.errors.is_empty()
        && response.data == async_graphql::Value::Null
        && response.errors.iter().all(|e| e.path.is_empty());
    let mut body = match serde_json::to_value(&response) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "serialising a GraphQL response");
            return http_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR", "internal server error")
                .into_response();
        }
    };
    if request_error && let Value::Object(map) = &mut body {
        map.remove("data");
    }
    let (status, content_type) = match response_type {
        ResponseType::GraphqlResponseJson if request_error => (StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE_JSON),
        ResponseType::GraphqlResponseJson => (StatusCode::OK, GRAPHQL_RESPONSE_JSON),
        ResponseType::Json => (StatusCode::OK, JSON),
    };
    let mut http = (status, axum::Json(body)).into_response();
    http.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    http
}
