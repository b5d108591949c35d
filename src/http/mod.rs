//! HTTP transport: GraphQL over HTTP and WebSocket, the playground's page and assets, health
//! checks and TLS. It knows nothing of REST; `app::routes` composes the two.

pub mod graphql;
pub mod health;
pub mod routes;
pub mod stream;
pub mod tls;
pub mod websocket;

pub use routes::{api_router, internal_router, public_router};
