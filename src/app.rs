//! The application: connects the store, prepares the schema, binds the listener and serves
//! until shut down. The binary, the tests and the benchmarks all start the server through here.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::auth::Verifier;
use crate::budget::Budgets;
use crate::bus::EventBus;
use crate::config::Settings;
use crate::graphql::build_schema;
use crate::http::client::ClientIp;
use crate::http::persisted::PersistedQueries;
use crate::http::playground::Playground;
use crate::http::{AppState, router};
use crate::payments::PaymentGateway;
use crate::store::Store;
use crate::store::seed::SeedSize;

/// A built server, bound to its port but not yet serving.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    store: Store,
    bus: EventBus,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
}

impl App {
    /// Connects to the database, applies migrations and seeds demo data when the settings say
    /// so, and binds the listener (`SECURECART_LISTEN`; port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let store = Store::connect(settings.database.url(), settings.database.max_connections).await?;
        if settings.auto_migrate() {
            store.migrate().await?;
        }
        if settings.demo_seed() && store.catalog_is_empty().await? {
            let report = store.seed(SeedSize::DEMO, false).await?;
            tracing::info!(
                products = report.products,
                vendors = report.vendors,
                orders = report.orders,
                "seeded the demo catalog"
            );
        }
        let playground =
            if settings.playground_enabled() { Some(Playground::load(&settings.playground.dir)?) } else { None };
        let verifier = Verifier::new(&settings.auth).await?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let bus = match &settings.redis.url {
            Some(url) => EventBus::redis(url, &settings.redis.channel)?,
            None => EventBus::in_process(),
        };
        let payments = PaymentGateway::new(
            settings.payment.url.as_deref(),
            std::time::Duration::from_millis(settings.payment.timeout_ms),
        )?;
        if settings.payment.url.is_none() {
            tracing::warn!(
                "SECURECART_PAYMENT_URL is unset: using the built-in fake payment gateway (tok_visa approves)"
            );
        }
        let budgets = Arc::new(match &settings.redis.url {
            Some(url) => Budgets::redis(url, "securecart:budget:")?,
            None => Budgets::local(),
        });
        let persisted = Arc::new(PersistedQueries::new(
            settings.security.persisted_queries,
            settings.redis.url.as_deref(),
            settings.security.safelist_file.as_deref(),
        )?);
        let clients = ClientIp::new(&settings.rate_limit.trusted_proxies)?;
        let schema = build_schema(store.clone(), settings.clone(), bus.clone(), payments, budgets);
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let state = AppState {
            settings,
            store: store.clone(),
            schema,
            playground,
            verifier,
            bus: bus.clone(),
            websockets: Default::default(),
            shutdown: shutdown_rx,
            clients,
            persisted,
        };
        Ok(Self { listener, router: router(state), store, bus, shutdown_tx })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The store the server uses (tests read its statement count).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The event bus the server publishes to (tests subscribe to it).
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and closes the pool.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let service = self.router.into_make_service_with_connect_info::<SocketAddr>();
        let tx = self.shutdown_tx;
        let signal = async move {
            shutdown.await;
            // WebSockets never end by themselves: tell them to close (1001) so the graceful
            // shutdown can finish.
            let _ = tx.send(true);
        };
        axum::serve(self.listener, service).with_graceful_shutdown(signal).await.context("serving")?;
        self.store.close().await;
        Ok(())
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "SecureCart API listening (GraphQL at /graphql)");
        self.run_until(shutdown_signal()).await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
