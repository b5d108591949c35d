//! RFC 9457 problem details: the REST API's errors, with the same `code`s as GraphQL.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{AppError, ClientError};

/// An error, as `application/problem+json` (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the `code` says what happened.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: &'static str,
    /// The HTTP status phrase.
    #[schema(example = "Not Found")]
    pub title: &'static str,
    /// The HTTP status.
    #[schema(example = 404)]
    pub status: u16,
    /// What went wrong, for a human.
    pub detail: String,
    /// The stable machine-readable code, the same as GraphQL's `extensions.code`.
    #[schema(example = "NOT_FOUND")]
    pub code: &'static str,
    /// Seconds to wait before retrying (429 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// For a 500: the id under which the server logged what went wrong (quote it to support).
    #[serde(rename = "correlationId", skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl Problem {
    /// A problem with this status and code.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            retry_after: None,
            correlation_id: None,
        }
    }
}

impl From<ClientError> for Problem {
    fn from(view: ClientError) -> Self {
        Self {
            retry_after: view.retry_after,
            correlation_id: view.correlation_id,
            ..Self::new(view.status, view.code, view.message)
        }
    }
}

impl From<AppError> for Problem {
    fn from(e: AppError) -> Self {
        // Masking happens in the client view: internal errors get the generic message.
        e.client_view().into()
    }
}

/// Gives the errors of the layers in front of both transports (rate limits, body limits), which
/// answer in GraphQL's shape, the REST shape on REST paths: the same code, status and
/// `Retry-After` as `application/problem+json`, the `RateLimit` headers kept.
pub async fn problems(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let rest = ["/v1/", "/v2/", "/api/"].iter().any(|prefix| request.uri().path().starts_with(prefix));
    let mut response = next.run(request).await;
    let Some(error) = rest.then(|| response.extensions_mut().remove::<ClientError>()).flatten() else {
        return response;
    };
    let mut problem = Problem::from(error).into_response();
    for name in ["ratelimit", "ratelimit-policy"] {
        if let Some(value) = response.headers().get(name) {
            problem.headers_mut().insert(name, value.clone());
        }
    }
    problem
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.retry_after;
        let unauthenticated = self.code == "UNAUTHENTICATED";
        let mut response = (status, axum::Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = retry {
            headers.insert(header::RETRY_AFTER, secs.into());
        }
        if unauthenticated {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
