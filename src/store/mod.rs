//! The persistence boundary: every SQL statement lives below this module, on PostgreSQL or SQLite.
//!
//! `Store` is one type with two backends, chosen by the `DATABASE_URL` scheme. Most statements
//! are written once in SQL both databases accept (`$N` parameters work in SQLite too) and run
//! through `on_pool!`, which expands the same code for each pool type; where the dialects differ
//! (arrays, bulk loads), the backend's own statement is spelled out beside the other.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub mod cache;
pub mod carts;
pub mod checkout;
mod columns;
pub mod customers;
pub mod inventory;
pub mod orders;
pub mod outbox;
pub mod products;
pub mod replica;
pub mod seed;
pub mod vendors;

pub use carts::{AddToCart, CartLineRecord};
pub use checkout::{Checkout, PendingRefund, Reservation, SettledPaid};
pub use customers::CustomerRecord;
pub use inventory::{Adjustment, InventoryRecord, SetStock, StockChange};
pub use orders::{OrderItemRecord, OrderRecord, OrderScope, RefundRequest, StatusChange, StatusMove};
pub use products::{CursorKey, NewProduct, PageQuery, ProductCursor, ProductFilter, ProductRecord, ProductSort};
pub use vendors::{NewVendor, VendorRecord};

/// The PostgreSQL server and database a connection failed to reach (the context of the error,
/// so a start-up failure can say how to create the database with the right names).
#[derive(Debug, Clone)]
pub struct PgTarget {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub database: String,
    /// User.
    pub user: String,
}

impl std::fmt::Display for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connecting to PostgreSQL at {}:{}, database `{}` (DATABASE_URL)",
            self.host, self.port, self.database
        )
    }
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// PostgreSQL.
    Postgres,
    /// Embedded SQLite.
    Sqlite,
}

#[derive(Clone)]
pub(crate) enum Backend {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The store: a connection pool (and a read replica's, see `replica`) and the catalog cache.
/// Statements are counted at the driver (`telemetry::statements`), not here.
#[derive(Clone)]
pub struct Store {
    pub(crate) backend: Backend,
    /// The read replica's pool (`DATABASE_READ_URL`), PostgreSQL only.
    replica: Option<Backend>,
    /// Who wrote recently and whether the replica is usable (see `replica`).
    pub routing: Arc<replica::Routing>,
    /// Product details and stock levels (see `cache`).
    pub cache: Arc<cache::CatalogCache>,
    /// Events of this store's committed transactions, for the bus (see `outbox`).
    events: outbox::Sink,
}

/// Runs `$body` with `$pool` bound to the concrete pool of either backend (the primary).
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        $crate::store::on_backend!(&$store.backend, $pool => $body)
    };
}
pub(crate) use on_pool;

/// `on_pool!` for a read that may go to the replica (see `read!`). `$body` may run twice, so it
/// borrows what it uses.
macro_rules! on_reader {
    ($store:expr, $pool:ident => $body:expr) => {
        $crate::store::read!($store, $store.reader(), backend => $crate::store::on_backend!(backend, $pool => $body))
    };
}
pub(crate) use on_reader;

/// Runs `$body` with `$backend` bound to `$on` (`Store::reader` or `Store::cache_reader`). When
/// that was the replica and it could not serve the read (gone, shutting down, no connection in
/// time, or the statement cancelled by a recovery conflict: `replica::Routing::failed`), runs
/// `$body` again on the primary; a replica that is gone is left out at once rather than at its
/// next check. So a replica killed mid-request costs a retry, not an error. `$body` borrows what
/// it uses, since it may run twice. (A macro, not a method taking an async closure: the
/// closure's future does not satisfy the `Send` bounds of async-graphql's resolvers.)
macro_rules! read {
    ($store:expr, $on:expr, $backend:ident => $body:expr) => {{
        let $backend: &$crate::store::Backend = $on;
        let on_replica = $store.is_replica($backend);
        match $body {
            Err(e) if on_replica && $store.routing.failed(&e) => {
                let $backend: &$crate::store::Backend = &$store.backend;
                $body
            }
            done => done,
        }
    }};
}
pub(crate) use read;

/// Runs `$body` with `$pool` bound to the concrete pool of `$backend`.
macro_rules! on_backend {
    ($backend:expr, $pool:ident => $body:expr) => {
        match $backend {
            $crate::store::Backend::Postgres($pool) => $body,
            $crate::store::Backend::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use on_backend;

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

impl Store {
    /// Connects to the database named by `url` (`postgres://`, `postgresql://` or `sqlite:`)
    /// with a pool of `max_connections` that waits at most 3 s for a free one.
    /// A SQLite file is created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        Self::connect_with(url, max_connections, Duration::from_secs(3)).await
    }

    /// `connect`, with the time a caller waits for a free connection (`acquire`).
    pub async fn connect_with(url: &str, max_connections: u32, acquire: Duration) -> anyhow::Result<Self> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).context("parsing DATABASE_URL")?;
            let place = PgTarget {
                host: options.get_host().to_string(),
                port: options.get_port(),
                database: options.get_database().unwrap_or("postgres").to_string(),
                user: options.get_username().to_string(),
            };
            // One connection first, on its own: a pool that cannot connect only says it timed
            // out, while this says why (refused, unknown database, bad password).
            use sqlx::Connection;
            match tokio::time::timeout(acquire, sqlx::PgConnection::connect_with(&options)).await {
                Ok(Ok(connection)) => {
                    let _ = connection.close().await;
                }
                Ok(Err(e)) => return Err(e).context(place),
                Err(_) => return Err(sqlx::Error::PoolTimedOut).context(place),
            }
            let pool = pool_options(max_connections, acquire).connect_with(options);
            Backend::Postgres(pool.await.context(place)?)
        } else {
            let options = SqliteConnectOptions::from_str(url)
                .context("parsing DATABASE_URL")?
                .create_if_missing(true)
                // WAL lets readers run beside the one writer; a busy timeout queues writers
                // instead of failing them with SQLITE_BUSY.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = pool_options(max_connections, acquire).connect_with(options);
            Backend::Sqlite(pool.await.context("opening SQLite database")?)
        };
        Ok(Self {
            backend,
            replica: None,
            routing: Arc::new(replica::Routing::new(Duration::ZERO, Duration::ZERO)),
            cache: Arc::new(cache::CatalogCache::new(Duration::ZERO)),
            events: outbox::Sink::default(),
        })
    }

    /// Adds a PostgreSQL read replica (`DATABASE_READ_URL`) with a pool of `max_connections`,
    /// and starts the task that checks it every second (see `replica`) on a connection of its
    /// own, so that reads filling the pool do not make a healthy replica look down. Connects
    /// lazily: the server starts, on the primary alone, while the replica is down.
    pub fn with_replica(mut self, url: &str, max_connections: u32, routing: replica::Routing) -> anyhow::Result<Self> {
        anyhow::ensure!(
            self.kind() == BackendKind::Postgres,
            "DATABASE_READ_URL needs DATABASE_URL to be PostgreSQL (SQLite has no replicas)"
        );
        let options = PgConnectOptions::from_str(url).context("parsing DATABASE_READ_URL")?;
        let checker = pool_options::<sqlx::Postgres>(1, Duration::from_secs(1)).connect_lazy_with(options.clone());
        let pool = pool_options(max_connections, Duration::from_secs(1)).connect_lazy_with(options);
        let routing = Arc::new(routing);
        let (watched, state) = (pool.clone(), routing.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Until `close` closes the pool.
            while !watched.is_closed() {
                ticker.tick().await;
                let lag = tokio::time::timeout(
                    Duration::from_secs(2),
                    sqlx::query_scalar::<_, f64>(replica::LAG).fetch_one(&checker),
                )
                .await;
                let lag = match lag {
                    Ok(Ok(secs)) => Some(Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)),
                    _ => None,
                };
                if let Some(lag) = lag {
                    metrics::gauge!(crate::telemetry::metrics::REPLICA_LAG).set(lag.as_secs_f64());
                }
                // Every store is gone (only this task holds the routing): nothing reads it.
                if Arc::strong_count(&state) == 1 {
                    break;
                }
                state.observed(lag);
            }
            checker.close().await;
        });
        self.replica = Some(Backend::Postgres(pool));
        self.routing = routing;
        Ok(self)
    }

    /// Whether a read replica is configured.
    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// Where a read goes: the replica inside `replica::scope` while it is usable, else the primary.
    pub(crate) fn reader(&self) -> &Backend {
        match &self.replica {
            Some(replica) if replica::allowed() && self.routing.usable() => replica,
            _ => &self.backend,
        }
    }

    /// `reader`, for a read that fills the catalog cache: the primary while the cache is on.
    pub(crate) fn cache_reader(&self) -> &Backend {
        if self.cache.on() { &self.backend } else { self.reader() }
    }

    /// Whether `backend` is the read replica's pool (see `read!`).
    pub(crate) fn is_replica(&self, backend: &Backend) -> bool {
        self.replica.as_ref().is_some_and(|replica| std::ptr::eq(replica, backend))
    }

    /// Turns on the catalog cache with entries that live `ttl`.
    pub fn with_cache(mut self, ttl: Duration) -> Self {
        self.cache = Arc::new(cache::CatalogCache::new(ttl));
        self
    }

    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Postgres(_) => BackendKind::Postgres,
            Backend::Sqlite(_) => BackendKind::Sqlite,
        }
    }

    /// Applies pending migrations of this backend.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Postgres(pool) => PG_MIGRATOR.run(pool).await,
            Backend::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await,
        }
        .context("applying migrations")
    }

    /// Versions of this backend's migrations not yet applied to the database (all of them when
    /// it has never been migrated).
    pub async fn pending_migrations(&self) -> anyhow::Result<Vec<i64>> {
        let migrator = match self.kind() {
            BackendKind::Postgres => &PG_MIGRATOR,
            BackendKind::Sqlite => &SQLITE_MIGRATOR,
        };
        const APPLIED: &str = "SELECT version FROM _sqlx_migrations WHERE success";
        let applied: Vec<i64> = match on_pool!(self, pool => sqlx::query_scalar(APPLIED).fetch_all(pool).await) {
            Ok(versions) => versions,
            // No bookkeeping table yet: nothing was ever applied.
            Err(sqlx::Error::Database(_)) => Vec::new(),
            Err(e) => return Err(e).context("reading the applied migrations"),
        };
        Ok(migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
            .map(|m| m.version)
            .collect())
    }

    /// Checks that the database takes a write (for `/readyz`): rewrites the one probe row.
    pub async fn probe_write(&self) -> sqlx::Result<()> {
        let sql = match self.kind() {
            BackendKind::Postgres => {
                "INSERT INTO write_probe (id, written_at) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET written_at = now()"
            }
            BackendKind::Sqlite => {
                "INSERT OR REPLACE INTO write_probe (id, written_at) VALUES (1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
            }
        };
        on_pool!(self, pool => sqlx::query(sql).execute(pool).await.map(|_| ()))
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> anyhow::Result<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        let replica = async {
            if let Some(Backend::Postgres(replica)) = &self.replica {
                replica.close().await;
            }
        };
        tokio::join!(replica, async { on_pool!(self, pool => pool.close().await) });
    }

    /// How PostgreSQL planned the statements prepared on one pooled connection of the primary
    /// (`pg_prepared_statements`): (statement, generic plans, custom plans); empty on SQLite.
    /// A diagnostic: a hot statement should settle on its cached generic plan after its first
    /// five executions; one that adds a custom plan on every execution is re-planned each time.
    pub async fn prepared_plans(&self) -> sqlx::Result<Vec<(String, i64, i64)>> {
        match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query_as("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
                    .fetch_all(pool)
                    .await
            }
            Backend::Sqlite(_) => Ok(Vec::new()),
        }
    }

    /// Connections in the pool: (open, idle, maximum).
    pub fn pool_stats(&self) -> (u32, usize, u32) {
        on_pool!(self, pool => (pool.size(), pool.num_idle(), pool.options().get_max_connections()))
    }

    /// How a transaction that writes begins: SQLite takes the write lock at once (`IMMEDIATE`),
    /// so concurrent writers queue on the busy timeout instead of failing to upgrade a read lock.
    pub(crate) fn write_begin(&self) -> &'static str {
        match self.kind() {
            BackendKind::Sqlite => "BEGIN IMMEDIATE",
            BackendKind::Postgres => "BEGIN",
        }
    }
}

/// A connection idle longer than this is pinged before it is handed out (see `pool_options`).
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A pool of `max` connections that waits `acquire` for a free one. A connection released while
/// still inside a transaction (its COMMIT or ROLLBACK failed, as on a full disk) is closed, not
/// reused: a new one takes its place, so the pool recovers by itself once writes work again.
///
/// sqlx pings every connection before handing it out by default: one more round trip to the
/// database per statement, which under load is most of a one-statement request's database work.
/// Here only a connection idle for more than `PING_AFTER_IDLE` is pinged (one that sat through a
/// database restart is found dead and replaced, as before); a busy pool's connections were in
/// use a moment ago, and one that breaks meanwhile fails its statement and is closed by sqlx.
fn pool_options<DB: sqlx::Database>(max: u32, acquire: Duration) -> sqlx::pool::PoolOptions<DB> {
    use sqlx::Connection;
    sqlx::pool::PoolOptions::new()
        .max_connections(max)
        .acquire_timeout(acquire)
        .test_before_acquire(false)
        .before_acquire(|conn: &mut DB::Connection, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .after_release(|conn: &mut DB::Connection, _| {
            Box::pin(async move {
                if conn.is_in_transaction() {
                    // A dropped transaction queues its ROLLBACK; a ping flushes it. Still inside a
                    // transaction after that: the connection is stuck.
                    conn.ping().await?;
                }
                Ok(!conn.is_in_transaction())
            })
        })
}

/// A value bound to a statement assembled from static fragments (see `SqlBuilder`).
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Int(i64),
    Text(String),
}

/// Assembles a statement from `&'static str` fragments and numbered parameters, so a dynamic
/// WHERE clause never carries client text: values only ever travel as bound parameters.
#[derive(Debug, Default)]
pub(crate) struct SqlBuilder {
    sql: String,
    binds: Vec<Bind>,
}

impl SqlBuilder {
    pub(crate) fn push(&mut self, fragment: &'static str) -> &mut Self {
        self.sql.push_str(fragment);
        self
    }

    /// Appends a `$N` placeholder for `value`.
    pub(crate) fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        self.sql.push('$');
        self.sql.push_str(&self.binds.len().to_string());
        self
    }

    /// Appends ` LIMIT <k>`, `k` the first of `LIMIT_STEPS` at least `n` (or `n` beyond them),
    /// written into the statement, not bound: the caller keeps the first `n` rows. PostgreSQL
    /// plans a bound `LIMIT $n` generically as if it let through a tenth of the rows, a plan
    /// costed far above the custom one, so it never settles on the generic plan and re-plans
    /// the statement on every execution (pg_stat_statements showed Q1 planning 3.4 times
    /// longer than it ran). A literal costs the same either way, so the cached plan is reused.
    /// Rounded to a few steps so that clients choosing every page size from 1 to 100 make six
    /// statements per shape, not a hundred, and cannot push the hot ones out of sqlx's
    /// per-connection statement cache (100). Safe: an integer.
    pub(crate) fn limit(&mut self, n: i64) -> &mut Self {
        let k = LIMIT_STEPS.iter().copied().find(|&k| k >= n).unwrap_or(n);
        self.sql.push_str(" LIMIT ");
        self.sql.push_str(&k.to_string());
        self
    }

    /// Appends a placeholder for a value already bound (`$N` may repeat in both dialects).
    pub(crate) fn rebind_last(&mut self) -> &mut Self {
        self.sql.push('$');
        self.sql.push_str(&self.binds.len().to_string());
        self
    }

    /// The statement and its values. Both are read by reference (`query(&sql)`,
    /// `bind_all!(query, &binds)`) so that a read can run again on the primary (`read!`).
    pub(crate) fn finish(self) -> (BuiltSql, Vec<Bind>) {
        (BuiltSql(self.sql.into()), self.binds)
    }
}

/// A statement a `SqlBuilder` wrote, shared rather than copied by each query made from it.
pub(crate) struct BuiltSql(Arc<str>);

impl sqlx::SqlSafeStr for &BuiltSql {
    fn into_sql_str(self) -> sqlx::SqlStr {
        // Safe: `SqlBuilder` writes only `&'static str` fragments, `$N` placeholders and integers.
        sqlx::AssertSqlSafe(self.0.clone()).into_sql_str()
    }
}

/// The LIMITs `SqlBuilder::limit` writes: page sizes 1, 5, 10, 20, 50 and 100 plus the row
/// that tells whether more exist.
const LIMIT_STEPS: [i64; 6] = [2, 6, 11, 21, 51, 101];

/// Binds every value of a `SqlBuilder` to a query of either backend.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for bind in $binds {
            query = match bind {
                $crate::store::Bind::Int(v) => query.bind(*v),
                $crate::store::Bind::Text(v) => query.bind(v.as_str()),
            };
        }
        query
    }};
}
pub(crate) use bind_all;

/// The rows of `$record` whose `$column` is one of `$ids`, in any order; one statement on
/// `$backend`. `$select` is a literal `SELECT ... FROM ...` without `WHERE`. PostgreSQL takes
/// one id as `= $1` and more as an array (`= ANY($1)`), SQLite as a JSON array read by
/// `json_each`. Why one id apart: PostgreSQL costs the generic plan of `= ANY($1)` for an array
/// of unknown length well above the custom plan for a single id, so it would re-plan a lookup
/// by one id (the commonest: `product(id:)`) on every execution; `= $1` keeps its cached plan.
macro_rules! select_by_ids {
    ($backend:expr, $record:ty, $select:expr, $column:literal, $ids:expr) => {{
        let ids: &[i64] = $ids;
        match $backend {
            $crate::store::Backend::Postgres(pool) if ids.len() == 1 => {
                sqlx::query_as::<_, $record>(concat!($select, " WHERE ", $column, " = $1"))
                    .bind(ids[0])
                    .fetch_all(pool)
                    .await
            }
            $crate::store::Backend::Postgres(pool) => {
                sqlx::query_as::<_, $record>(concat!($select, " WHERE ", $column, " = ANY($1)"))
                    .bind(ids)
                    .fetch_all(pool)
                    .await
            }
            $crate::store::Backend::Sqlite(pool) => {
                sqlx::query_as::<_, $record>(concat!(
                    $select,
                    " WHERE ",
                    $column,
                    " IN (SELECT value FROM json_each($1))"
                ))
                .bind($crate::store::json_ids(ids))
                .fetch_all(pool)
                .await
            }
        }
    }};
}
pub(crate) use select_by_ids;

/// Rows by id through a cache: hits from `cached`, one `fetch` for the misses, each fetched
/// row offered to `fill` with the time the read began (see `cache` for why).
pub(crate) async fn through_cache<T>(
    ids: &[i64],
    cached: impl Fn(i64) -> Option<T>,
    fetch: impl AsyncFnOnce(&[i64]) -> sqlx::Result<Vec<T>>,
    fill: impl Fn(&T, std::time::Instant),
) -> sqlx::Result<Vec<T>> {
    let mut rows = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        match cached(*id) {
            Some(hit) => rows.push(hit),
            None => missing.push(*id),
        }
    }
    if missing.is_empty() {
        return Ok(rows);
    }
    let started = std::time::Instant::now();
    let fetched = fetch(&missing).await?;
    for row in &fetched {
        fill(row, started);
    }
    rows.extend(fetched);
    Ok(rows)
}

/// Encodes ids for `IN` lists: PostgreSQL takes an array, SQLite a JSON array read by `json_each`.
pub(crate) fn json_ids(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// A step at an outside provider (a charge, a refund) that a write transaction runs while it
/// holds its rows: it answers with the provider's reference, or the caller's own refusal `E`,
/// which the store hands back untouched (it knows nothing of payments).
pub trait ProviderStep<Req, E>: Send {
    /// Runs the step.
    fn run(self, request: Req) -> impl std::future::Future<Output = Result<String, E>> + Send;
}

impl<Req, E, F, Fut> ProviderStep<Req, E> for F
where
    F: FnOnce(Req) -> Fut + Send,
    Fut: std::future::Future<Output = Result<String, E>> + Send,
{
    fn run(self, request: Req) -> impl std::future::Future<Output = Result<String, E>> + Send {
        self(request)
    }
}

/// Ends a write transaction early because its idempotency key is taken (the replay is decided
/// after the rollback), or because the database failed. Private to the store, so
/// `sqlx::Error::RowNotFound` never doubles as a signal.
pub(crate) enum Abort {
    KeyTaken,
    Db(sqlx::Error),
}

impl From<sqlx::Error> for Abort {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

pub(crate) fn is_check_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_check_violation())
}
