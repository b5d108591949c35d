//! HTTP transport: the axum router, GraphQL over HTTP, the playground and health checks.

pub mod client;
pub mod graphql;
pub mod health;
pub mod persisted;
pub mod playground;
pub mod routes;
pub mod tls;
pub mod websocket;

pub use routes::{AppState, internal_router, router};
