//! The HTTP transport's routes: GraphQL over HTTP and WebSocket, the playground's assets, health.
//! `app::routes` composes them with REST and the shared middleware.

use axum::Router;
use axum::routing::get;

use super::{graphql, health, websocket};
use crate::state::AppState;

/// The GraphQL endpoints (behind the anonymous rate limit, see `app::routes`).
pub fn api_router(state: AppState) -> Router {
    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphql/ws", get(websocket::upgrade))
        .with_state(state)
}

/// `/healthz` and `/readyz`, served on both listeners (load balancers probe the public one).
fn health_routes() -> Router<AppState> {
    Router::new().route("/healthz", get(health::healthz)).route("/readyz", get(health::readyz))
}

/// Routes of the public listener outside the rate limit: playground assets and health.
pub fn public_router(state: AppState) -> Router {
    let assets = state.playground.clone();
    let asset = move |path| crate::playground::asset(assets, path);
    health_routes().route("/playground/assets/{*path}", get(asset)).with_state(state)
}

/// The private router: metrics and health, for the internal listener only.
pub fn internal_router(state: AppState) -> Router {
    health_routes().route("/metrics", get(health::metrics)).with_state(state)
}
