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
use crate::client::ClientIp;
use crate::config::Settings;
use crate::graphql::build_schema;
use crate::graphql::limits::Limits;
use crate::graphql::persisted::PersistedQueries;
use crate::http::internal_router;
use crate::playground::Playground;
use crate::state::AppState;

mod deadlines;
mod routes;
mod serve;
use crate::payments::PaymentGateway;
use crate::service::Services;
use crate::store::Store;
use crate::store::seed::SeedSize;
use routes::router;
pub use serve::ConnectionLimits;

/// A built server, bound to its ports but not yet serving.
pub struct App {
    listener: TcpListener,
    internal: TcpListener,
    tls: Option<rustls::ServerConfig>,
    deadline: std::time::Duration,
    connection_limits: ConnectionLimits,
    router: axum::Router,
    internal_router: axum::Router,
    store: Store,
    bus: EventBus,
    groups: Arc<crate::graphql::shared::Groups>,
    budgets: Arc<Budgets>,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    /// What the start-up banner offers: the playground, and the token command (development).
    playground: bool,
    development: bool,
}

impl App {
    /// Connects to the database, applies migrations and seeds demo data when the settings say
    /// so, and binds the listener (`SECURECART_LISTEN`; port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        // Install the metrics recorder before anything records.
        crate::telemetry::metrics::handle();
        let tls = match (&settings.server.tls_cert, &settings.server.tls_key) {
            (Some(cert), Some(key)) => Some(crate::http::tls::server_config(cert, key)?),
            _ => None,
        };
        let acquire = std::time::Duration::from_millis(settings.database.acquire_timeout_ms);
        let store = Store::connect_with(settings.database.url(), settings.database.max_connections, acquire)
            .await?
            .with_cache(std::time::Duration::from_secs(settings.database.cache_ttl_secs));
        let store = match &settings.database.read_url {
            Some(url) => {
                let routing = crate::store::replica::Routing::new(
                    std::time::Duration::from_millis(settings.database.read_your_writes_ms),
                    std::time::Duration::from_millis(settings.database.replica_max_lag_ms),
                );
                store.with_replica(url, settings.database.max_connections, routing)?
            }
            None => store,
        };
        if settings.auto_migrate() {
            store.migrate().await?;
        } else {
            let pending = store.pending_migrations().await?;
            if !pending.is_empty() {
                let message = format!(
                    "the database schema is behind this build: {} migration(s) pending ({}). Apply them first \
                     with `securecart migrate` (from a checkout: `cargo run --release -- migrate`), or set \
                     SECURECART_AUTO_MIGRATE=true to apply them at start-up.",
                    pending.len(),
                    pending.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
                );
                if settings.environment.is_production() {
                    anyhow::bail!(message);
                }
                tracing::warn!("{message} /readyz fails until then.");
            }
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
        let redis = settings.redis.target();
        let bus = match &redis {
            Some(target) => {
                crate::redis_client::warn_if_unreachable(target).await;
                EventBus::redis(target, &settings.redis.channel)?
            }
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
        store.on_commit(Arc::new(bus.clone()));
        spawn_event_sweep(&store, &bus, &settings, shutdown_rx.clone());
        spawn_cache_invalidation(&store, &bus);
        let budgets = Arc::new(match &redis {
            Some(target) => Budgets::redis(target, "securecart:budget:")?,
            None => Budgets::local(),
        });
        // Forget refilled local buckets now and then, so their memory stays bounded.
        let evicting = Arc::downgrade(&budgets);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                let Some(budgets) = evicting.upgrade() else { return };
                budgets.evict_full();
            }
        });
        // Keys beside the event channel's name, so deployments sharing a Redis stay apart.
        let apq_prefix = format!("{}:apq:", settings.redis.channel);
        let persisted = Arc::new(PersistedQueries::new(
            settings.security.persisted_queries,
            redis.as_ref().map(|target| (target, apq_prefix.as_str())),
            settings.security.safelist_file.as_deref(),
            settings.security.persisted_queries_max_bytes,
        )?);
        let clients = ClientIp::new(&settings.rate_limit.trusted_proxies)?;
        let services = Services::new(store.clone(), bus.clone(), payments, settings.clone());
        spawn_reconciler(&services, &settings, shutdown_rx.clone());
        let schema = build_schema(services.clone(), settings.clone());
        let limits = Arc::new(Limits::new(settings.clone(), budgets.clone()));
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let internal = TcpListener::bind(settings.server.internal_listen)
            .await
            .with_context(|| format!("binding the internal listener {}", settings.server.internal_listen))?;
        let deadline = std::time::Duration::from_secs(settings.server.shutdown_deadline_secs);
        let connection_limits = ConnectionLimits {
            header_timeout: std::time::Duration::from_secs(settings.server.header_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(settings.server.idle_timeout_secs),
            max_connections: settings.server.max_connections,
            max_per_ip: settings.server.max_connections_per_ip,
            exempt: settings
                .rate_limit
                .trusted_proxies
                .iter()
                .map(|p| crate::client::Cidr::parse(p))
                .collect::<anyhow::Result<_>>()?,
        };
        let groups = Arc::new(crate::graphql::shared::Groups::new(bus.clone()));
        let state = AppState::new(crate::state::Shared {
            settings,
            services,
            schema,
            limits,
            groups: groups.clone(),
            playground,
            verifier,
            websockets: Default::default(),
            websockets_per_ip: Default::default(),
            shutdown: shutdown_rx,
            clients,
            persisted,
            budgets,
        });
        let state_budgets = state.budgets.clone();
        let (playground, development) = (state.playground.is_some(), !state.settings.environment.is_production());
        let internal_router = internal_router(state.clone());
        Ok(Self {
            listener,
            internal,
            tls,
            deadline,
            connection_limits,
            router: router(state),
            internal_router,
            store,
            bus,
            groups,
            budgets: state_budgets,
            shutdown_tx,
            playground,
            development,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The address of the internal listener (`/metrics`, `/healthz`, `/readyz`).
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal.local_addr().expect("a bound listener has an address")
    }

    /// The store the server uses (tests read its statement count).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cost budgets (tests look at what they hold).
    pub fn budgets(&self) -> &Arc<Budgets> {
        &self.budgets
    }

    /// The event bus the server publishes to (tests subscribe to it).
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// The shared subscriptions (`graphql::shared`).
    pub fn groups(&self) -> &Arc<crate::graphql::shared::Groups> {
        &self.groups
    }

    /// Serves until `shutdown` completes; then stops accepting, closes WebSockets with 1001,
    /// lets in-flight requests finish within the shutdown deadline, and closes the pool.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let tx = self.shutdown_tx;
        let down = tx.subscribe();
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        let stopping = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|d| *d).await;
        };
        let limits = self.connection_limits.clone();
        let public = async {
            match self.tls {
                Some(config) => {
                    let listener = crate::http::tls::TlsListener::new(self.listener, config, limits.max_per_ip)?;
                    serve::serve(listener, self.router, limits, down.clone()).await;
                }
                None => serve::serve(self.listener, self.router, limits, down.clone()).await,
            }
            Ok::<(), std::io::Error>(())
        };
        let internal = axum::serve(self.internal, self.internal_router).with_graceful_shutdown(stopping(down.clone()));
        let serving = async { tokio::try_join!(public, internal) };
        let deadline = self.deadline;
        let mut watch = down.clone();
        let (stop_tx, mut stop_at) = tokio::sync::oneshot::channel();
        let expired = async move {
            let _ = watch.wait_for(|d| *d).await;
            let _ = stop_tx.send(tokio::time::Instant::now());
            tokio::time::sleep(deadline).await;
        };
        tokio::pin!(expired);
        tokio::select! {
            served = serving => { served.context("serving")?; }
            _ = &mut expired => tracing::warn!(deadline_secs = deadline.as_secs(), "shutdown deadline passed; abandoning unfinished requests"),
        }
        // What is left of the deadline (at least half a second) bounds closing the pool, so exit
        // comes within the deadline plus that half second, whatever is in flight. Abandoned
        // checkouts are safe: their orders are PENDING and the reconciler settles them.
        let left = match stop_at.try_recv() {
            Ok(at) => deadline.saturating_sub(at.elapsed()),
            Err(_) => std::time::Duration::ZERO,
        };
        let _ = tokio::time::timeout(left.max(std::time::Duration::from_millis(500)), self.store.close()).await;
        tracing::info!("stopped");
        Ok(())
    }

    /// Serves until SIGINT or SIGTERM, after printing where on stdout: the first line,
    /// `SecureCart API listening on <url> (internal <url>)`, is stable for scripts and tests,
    /// whatever the log filter.
    pub async fn run(self) -> anyhow::Result<()> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let (public, internal) = (self.local_addr(), self.internal_addr());
        println!("SecureCart API listening on {scheme}://{public} (internal http://{internal})");
        if self.playground {
            println!("  GraphQL and its playground: {scheme}://{public}/graphql");
        }
        if self.development {
            println!("  a demo customer's token:    cargo run -q -- token --sub alice --role customer");
        }
        tracing::info!(
            addr = %self.local_addr(),
            internal = %self.internal_addr(),
            tls = self.tls.is_some(),
            "SecureCart API listening (GraphQL at /graphql; metrics and health on the internal address)"
        );
        self.run_until(shutdown_signal()).await
    }
}

/// Settles pending payments (see `Services::reconcile_payments`): at start-up, then every
/// `SECURECART_RECONCILE_INTERVAL_SECS`, until the server stops.
fn spawn_reconciler(services: &Services, settings: &Settings, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let services = services.clone();
    let every = std::time::Duration::from_secs(settings.payment.reconcile_interval_secs.max(1));
    tokio::spawn(async move {
        loop {
            if let Err(e) = services.reconcile_payments(100).await {
                tracing::warn!(error = %e, "reconciling pending payments failed; trying again later");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|down| *down) => return,
            }
        }
    });
}

/// Reads the event outbox every `SECURECART_EVENT_SWEEP_MS` for events no other path brought
/// this process (see `bus::relay`), from the newest one at start-up, and prunes events older
/// than `SECURECART_EVENT_RETENTION_SECS` now and then.
fn spawn_event_sweep(
    store: &Store,
    bus: &EventBus,
    settings: &Settings,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    const PAGE: i64 = 500;
    const PAGES: usize = 20;
    let (store, bus) = (store.clone(), bus.clone());
    let every = std::time::Duration::from_millis(settings.events.sweep_ms.max(10));
    let retention = chrono::Duration::seconds(settings.events.retention_secs.min(i64::MAX as u64) as i64);
    tokio::spawn(async move {
        let mut started = false;
        let mut last_prune = std::time::Instant::now();
        loop {
            if !started {
                match store.event_start(crate::bus::relay::GAP_GRACE).await {
                    Ok(seq) => {
                        bus.start_after(seq);
                        started = true;
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot read the event outbox yet"),
                }
            }
            if started {
                sweep(&store, &bus, PAGE, PAGES).await;
            }
            bus.tick();
            if last_prune.elapsed() > std::time::Duration::from_secs(60) {
                last_prune = std::time::Instant::now();
                if let Err(e) = store.prune_events(chrono::Utc::now() - retention).await {
                    tracing::debug!(error = %e, "pruning the event outbox failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = bus.gap() => {}
                _ = shutdown.wait_for(|down| *down) => return,
            }
        }
    });
}

/// Reads up to `pages` pages of the outbox after the bus's cursor and delivers what is new.
async fn sweep(store: &Store, bus: &EventBus, page: i64, pages: usize) {
    let mut after = bus.cursor();
    for _ in 0..pages {
        match store.events_after(after, page).await {
            Ok(read) => {
                after = read.last.unwrap_or(after);
                bus.swept(read.events, &read.unreadable);
                if (read.rows as i64) < page {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "reading the event outbox failed; trying again");
                return;
            }
        }
    }
}

/// Keeps the catalog cache honest: drops entries named by bus events (from every replica), and
/// switches the cache off while the bus cannot deliver them.
fn spawn_cache_invalidation(store: &Store, bus: &EventBus) {
    let cache = Arc::downgrade(&store.cache);
    let mut events = bus.subscribe();
    let health = bus.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            let event = tokio::select! {
                event = events.recv() => Some(event),
                _ = tick.tick() => None,
            };
            let Some(cache) = cache.upgrade() else { return };
            match event {
                Some(Ok(r)) => match &r.event {
                    crate::bus::Event::Inventory { product_id, .. } => cache.invalidate_inventory(*product_id),
                    crate::bus::Event::Product { product_id, .. } => cache.invalidate_product(*product_id),
                    _ => {}
                },
                // Missed events could name anything: start afresh.
                Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    cache.set_enabled(false);
                    cache.set_enabled(health.health() != crate::bus::BusHealth::Degraded);
                }
                Some(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return,
                None => cache.set_enabled(health.health() != crate::bus::BusHealth::Degraded),
            }
        }
    });
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
