//! `AppState`: what every handler of every transport shares (cheap to clone, `Arc`s inside).

use std::sync::Arc;

use crate::auth::Verifier;
use crate::budget::Budgets;
use crate::client::ClientIp;
use crate::config::Settings;
use crate::graphql::AppSchema;
use crate::graphql::persisted::PersistedQueries;
use crate::playground::Playground;
use crate::service::Services;

/// Shared by all handlers; one `Arc`, so a clone is one atomic increment. axum clones the state
/// two or three times per request (the router's layers, the `State` extractor); cloned field by
/// field (a dozen `Arc`s, the bus's sender, the shutdown watch) that cost about 4% of the CPU of
/// a `{ __typename }` request (bench/NOTES.md).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state of one server.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What `AppState` holds.
pub struct Shared {
    /// Settings in force.
    pub settings: Arc<Settings>,
    /// The business rules (every transport calls these), with the store and bus they use
    /// (`services.store()` for health checks and DataLoaders, `services.bus()` for health).
    pub services: Services,
    /// The GraphQL schema.
    pub schema: AppSchema,
    /// The gate every operation passes around the schema (`graphql::limits`).
    pub limits: Arc<crate::graphql::limits::Limits>,
    /// Subscriptions executed once per distinct selection and caller (`graphql::shared`).
    pub groups: Arc<crate::graphql::shared::Groups>,
    /// GraphiQL, when enabled.
    pub playground: Option<Playground>,
    /// Verifies bearer tokens.
    pub verifier: Verifier,
    /// Open WebSocket connections.
    pub websockets: Arc<std::sync::atomic::AtomicUsize>,
    /// Open WebSocket connections per client address.
    pub websockets_per_ip: crate::client::Shares<String>,
    /// Becomes `true` when the server starts shutting down (WebSockets close with 1001).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Tells client addresses (trusting configured proxies).
    pub clients: ClientIp,
    /// Automatic persisted queries and the safelist.
    pub persisted: Arc<PersistedQueries>,
    /// Cost budgets (the REST API bills here; GraphQL through its extension).
    pub budgets: Arc<Budgets>,
}
