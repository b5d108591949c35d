//! The one error type: each variant has one HTTP status and one stable GraphQL `extensions.code`.

use async_graphql::ErrorExtensions;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Everything that can go wrong while serving a request.
///
/// Client errors carry their message to the client; `Database` and `Internal` are masked: the
/// client sees a generic message and a `correlationId`, and the full chain is logged once.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// `UNAUTHENTICATED`: a field needs a valid token and none (or a bad one) came; the text
    /// says which (missing, expired, wrong issuer, ...).
    #[error("authentication required: {0}")]
    Unauthenticated(String),
    /// `FORBIDDEN`: the caller is known but lacks the role.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// `NOT_FOUND`: no such object, or one the caller may not see (the two look the same).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A client mistake in an argument; `code` is stable, e.g. `BAD_USER_INPUT`, `INVALID_ID`,
    /// `INVALID_CURSOR`, `PAGE_SIZE_EXCEEDED`.
    #[error("{message}")]
    Invalid {
        /// The argument or input field at fault, as the client spelled it.
        field: String,
        /// What is wrong, for a human.
        message: String,
        /// The machine-readable code.
        code: &'static str,
    },
    /// `THROTTLED`: over a rate limit or cost budget.
    #[error("too many requests; retry after {retry_after_secs} s")]
    Throttled {
        /// Seconds until a retry can succeed.
        retry_after_secs: u64,
    },
    /// `INTERNAL_SERVER_ERROR` (masked): the database failed; `SERVICE_UNAVAILABLE` (503 with
    /// `Retry-After`, not masked) when it could not be reached at all (see `unreachable`).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// `INTERNAL_SERVER_ERROR` (masked): anything else unexpected.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Seconds a client is told to wait when the database is unreachable.
pub const UNAVAILABLE_RETRY_SECS: u64 = 1;

/// Whether a database error means the database could not be used at all (no connection free
/// within the acquire timeout, the server unreachable or gone mid-request), as opposed to a
/// statement failing: the first is the operator's outage, not a bug, and the client may retry.
pub fn unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    )
}

/// The message clients see instead of an internal error.
pub const MASKED_MESSAGE: &str = "internal server error";

impl AppError {
    /// An invalid argument with the generic `BAD_USER_INPUT` code.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into(), code: "BAD_USER_INPUT" }
    }

    /// An invalid argument with a specific code.
    pub fn invalid_with(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into(), code }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::Invalid { code, .. } => code,
            Self::Throttled { .. } => "THROTTLED",
            Self::Database(e) if unreachable(e) => "SERVICE_UNAVAILABLE",
            Self::Database(_) | Self::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// The HTTP status for transports that use one (REST, health).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Database(e) if unreachable(e) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client is told: the one view every transport builds its error from. Internal
    /// errors are masked here, logged once with the correlation id the client gets.
    pub fn client_view(&self) -> ClientError {
        let view = match self {
            Self::Database(e) if unreachable(e) => {
                tracing::warn!(error = %e, "the database is unreachable; answering 503");
                let message = "the database is unavailable right now; retry shortly";
                return ClientError::new(self.status(), self.code(), message).retry_after(UNAVAILABLE_RETRY_SECS);
            }
            Self::Database(_) | Self::Internal(_) => return ClientError::masked("internal error", &anyhow_chain(self)),
            _ => ClientError::new(self.status(), self.code(), self.to_string()),
        };
        match self {
            Self::Invalid { field, .. } => ClientError { field: Some(field.clone()), ..view },
            Self::Throttled { retry_after_secs } => ClientError { retry_after: Some(*retry_after_secs), ..view },
            _ => view,
        }
    }
}

/// An error as a client sees it, whatever the transport: GraphQL `errors[]` entries, REST
/// problems, 429s and WebSocket errors are all built from this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// The HTTP status, for transports that have one.
    pub status: StatusCode,
    /// The stable machine-readable code.
    pub code: &'static str,
    /// For a human; never internal detail.
    pub message: String,
    /// Set on masked internal errors: the id under which the full error was logged.
    pub correlation_id: Option<String>,
    /// The argument at fault, for invalid input.
    pub field: Option<String>,
    /// Seconds before a retry can succeed.
    pub retry_after: Option<u64>,
}

impl ClientError {
    /// A client error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), correlation_id: None, field: None, retry_after: None }
    }

    /// The masked internal error: `detail` is logged once under a fresh correlation id, which
    /// is all the client gets besides the generic message.
    pub fn masked(what: &str, detail: &dyn std::fmt::Display) -> Self {
        let correlation_id = uuid::Uuid::new_v4().to_string();
        tracing::error!(correlation_id = %correlation_id, error = %detail, "{what}");
        Self {
            correlation_id: Some(correlation_id),
            ..Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR", MASKED_MESSAGE)
        }
    }

    /// With a `Retry-After`.
    pub fn retry_after(self, secs: u64) -> Self {
        Self { retry_after: Some(secs), ..self }
    }

    /// The `extensions` of a GraphQL error: `code`, and `correlationId`, `field`, `retryAfter`
    /// when set.
    pub fn extensions(&self) -> serde_json::Value {
        let mut ext = serde_json::json!({ "code": self.code });
        if let Some(id) = &self.correlation_id {
            ext["correlationId"] = id.as_str().into();
        }
        if let Some(field) = &self.field {
            ext["field"] = field.as_str().into();
        }
        if let Some(secs) = self.retry_after {
            ext["retryAfter"] = secs.into();
        }
        ext
    }

    /// Writes the same extensions into a GraphQL error's.
    pub fn set_extensions(&self, ext: &mut async_graphql::ErrorExtensionValues) {
        ext.set("code", self.code);
        if let Some(id) = &self.correlation_id {
            ext.set("correlationId", id.as_str());
        }
        if let Some(field) = &self.field {
            ext.set("field", field.as_str());
        }
        if let Some(secs) = self.retry_after {
            ext.set("retryAfter", secs);
        }
    }

    /// The GraphQL-shaped body `{"errors":[{"message","extensions"}]}`.
    pub fn graphql_body(&self) -> serde_json::Value {
        serde_json::json!({ "errors": [{ "message": self.message, "extensions": self.extensions() }] })
    }
}

impl IntoResponse for ClientError {
    /// The GraphQL-shaped body with the status (and `Retry-After` when set). The error rides
    /// along in the response's extensions, so a REST route can answer the same error as a
    /// problem instead (`rest::problems`): layers in front of both transports (rate limits, body
    /// limits) write one error, and each transport gives it its own shape.
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.graphql_body())).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// The error and its sources, for the log.
fn anyhow_chain(err: &AppError) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        let view = self.client_view();
        async_graphql::Error::new(view.message.clone()).extend_with(|_, e| view.set_extensions(e))
    }
}

/// Converts store results for resolvers, keeping the code and the masking.
///
/// async-graphql converts any `Display` error with `?`, which would drop `extensions.code`
/// and leak internal messages; resolvers call `.gql()?` on `AppResult`s instead.
pub trait GqlResultExt<T> {
    /// The result with its error turned into a coded (and, if internal, masked) GraphQL error.
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> GqlResultExt<T> for AppResult<T> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|e| e.extend())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.client_view().into_response()
    }
}

/// Store results.
pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_are_masked_with_a_correlation_id() {
        let err = AppError::Internal(anyhow::anyhow!("secret connection string leaked"));
        let gql = err.extend();
        assert_eq!(gql.message, MASKED_MESSAGE);
        let ext = gql.extensions.expect("extensions");
        assert_eq!(ext.get("code").unwrap().to_string(), "\"INTERNAL_SERVER_ERROR\"");
        assert!(ext.get("correlationId").is_some());
    }

    #[test]
    fn client_errors_keep_message_and_code() {
        let gql = AppError::invalid_with("PAGE_SIZE_EXCEEDED", "first", "too many").extend();
        assert_eq!(gql.message, "too many");
        let ext = gql.extensions.unwrap();
        assert_eq!(ext.get("code").unwrap().to_string(), "\"PAGE_SIZE_EXCEEDED\"");
        assert_eq!(ext.get("field").unwrap().to_string(), "\"first\"");
    }
}
