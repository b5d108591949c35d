//! The axum router and the state every handler shares.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::routing::get;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use super::playground::Playground;
use super::{graphql, health, playground, websocket};
use crate::auth::Verifier;
use crate::bus::EventBus;
use crate::config::Settings;
use crate::graphql::AppSchema;
use crate::store::Store;

/// Shared by all handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Settings in force.
    pub settings: Arc<Settings>,
    /// The database.
    pub store: Store,
    /// The GraphQL schema.
    pub schema: AppSchema,
    /// GraphiQL, when enabled.
    pub playground: Option<Playground>,
    /// Verifies bearer tokens.
    pub verifier: Verifier,
    /// The event bus (for health).
    pub bus: EventBus,
    /// Open WebSocket connections.
    pub websockets: Arc<std::sync::atomic::AtomicUsize>,
    /// Becomes `true` when the server starts shutting down (WebSockets close with 1001).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the public router.
pub fn router(state: AppState) -> Router {
    let max_body = state.settings.server.max_body_bytes;
    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphql/ws", get(websocket::upgrade))
        .route("/playground/assets/{*path}", get(playground::asset))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Outermost: every log line of a request carries its id, and the client gets it back.
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let request_id =
                        req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %request_id)
                })
                .on_response(|res: &axum::http::Response<_>, latency: Duration, _span: &tracing::Span| {
                    tracing::info!(status = res.status().as_u16(), latency_ms = latency.as_secs_f64() * 1000.0, "response");
                }),
        )
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}
