//! `spawn_app`: a real server on 127.0.0.1:0 over a fresh database, and a client for it.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use securecart::app::App;
use securecart::config::Settings;
use securecart::store::Store;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::oneshot;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test on SQLite and on PostgreSQL: `on_both_backends!(a, b)` makes `a::sqlite`,
/// `a::postgres`, ... calling `async fn a(app: TestApp)`.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await {
                    super::$test(app).await
                }
            }
            #[tokio::test]
            #[cfg_attr(no_test_database, ignore = "needs TEST_DATABASE_URL (PostgreSQL)")]
            async fn postgres() {
                if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await {
                    super::$test(app).await
                }
            }
        }
    )*};
}
pub(crate) use on_both_backends;

/// Like `on_both_backends!` for tests that build their own app: `async fn a(backend: Backend)`.
macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                super::$test($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test]
            #[cfg_attr(no_test_database, ignore = "needs TEST_DATABASE_URL (PostgreSQL)")]
            async fn postgres() {
                super::$test($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}
pub(crate) use for_each_backend;

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub address: String,
    /// The internal listener (`/metrics`, `/healthz`, `/readyz`).
    pub internal_address: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub bus: securecart::bus::EventBus,
    /// The shared subscriptions (`graphql::shared`).
    pub groups: std::sync::Arc<securecart::graphql::shared::Groups>,
    pub budgets: std::sync::Arc<securecart::budget::Budgets>,
    /// The database the server uses (other processes may share it).
    pub database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    _db: TestDb,
}

impl TestApp {
    /// POSTs a GraphQL request; returns the status and the JSON body.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.post_json(&json!({ "query": query, "variables": variables })).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// POSTs a GraphQL request with `Authorization: Bearer <token>`.
    pub async fn graphql_as(&self, token: &str, query: &str, variables: Value) -> Value {
        let response = self
            .client
            .post(format!("{}/graphql", self.address))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        response.json().await.expect("JSON body")
    }

    /// POSTs a GraphQL request (with a token when given); returns the SQL statements the server
    /// ran for it, counted at the driver, and the body.
    pub async fn graphql_counted(&self, token: Option<&str>, query: &str, variables: Value) -> (u32, Value) {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 200);
        let count = statements(&response);
        (count, response.json().await.expect("JSON body"))
    }

    /// `post_json`, with the statements the server ran for it.
    pub async fn post_json_counted(&self, body: &Value) -> (u32, Value) {
        let response = self.client.post(format!("{}/graphql", self.address)).json(body).send().await.expect("request");
        let count = statements(&response);
        (count, response.json().await.expect("JSON body"))
    }

    /// POSTs any JSON body to /graphql.
    pub async fn post_json(&self, body: &Value) -> (u16, Value) {
        let response = self.client.post(format!("{}/graphql", self.address)).json(body).send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// Seeds a small catalog: `products` products over `vendors` vendors, plus a few customers and orders.
    pub async fn seed(&self, products: u32, vendors: u32) {
        let size = securecart::store::seed::SeedSize { products, vendors, customers: 5, orders: 10 };
        self.store.seed(size, false).await.expect("seeding");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The SQL statements the server ran for `response`, from its `Server-Timing: db;desc="N
/// statements"` header (counted at the driver; on by default outside production).
pub fn statements(response: &reqwest::Response) -> u32 {
    let header = response.headers().get("server-timing").expect("a Server-Timing header").to_str().unwrap();
    let count = header.strip_prefix("db;desc=\"").and_then(|rest| rest.strip_suffix(" statements\""));
    count.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("unexpected Server-Timing: {header}"))
}

/// Returns the code of the first error in a GraphQL response body.
pub fn first_error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {body}"))
}

enum TestDb {
    Sqlite(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self {
            TestDb::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            TestDb::Postgres { admin_url, name } => {
                // Drop runs outside async context (and maybe while unwinding): use a private runtime.
                let (admin_url, name) = (admin_url.clone(), name.clone());
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    rt.block_on(async {
                        if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                            let _ = conn.execute(sqlx::AssertSqlSafe(sql)).await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Always installed: it counts the statements behind `Server-Timing`; it prints only
        // with TEST_LOG set.
        let mut settings = Settings::default();
        settings.telemetry.log_filter = if std::env::var("TEST_LOG").is_ok() { "info,sqlx=warn" } else { "off" }.into();
        // Leaked on purpose: the subscriber lives as long as the test process.
        std::mem::forget(securecart::telemetry::init(&settings));
    });
}

/// A development token (HS256, the default development secret) for `sub` with `roles`.
pub fn token(sub: &str, roles: &[securecart::auth::Role], vendor: Option<&str>) -> String {
    securecart::auth::jwt::issue_dev_token(&Default::default(), sub, roles, vendor, Duration::from_secs(600)).unwrap()
}

/// Starts the server on a fresh database; `None` when PostgreSQL is asked for but not configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// `spawn_app` with settings adjusted by `configure` before the server is built.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    init_logs();
    let (url, db) = match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("securecart-test-{}.db", uuid::Uuid::new_v4()));
            (format!("sqlite://{}", path.display()), TestDb::Sqlite(path))
        }
        Backend::Postgres => {
            let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
                if std::env::var("CI").is_ok() {
                    panic!("TEST_DATABASE_URL is unset under CI: the PostgreSQL tests must run");
                }
                eprintln!("skipping the PostgreSQL variant: TEST_DATABASE_URL is unset");
                return None;
            };
            let name = create_pg_database(&admin_url).await;
            (with_database(&admin_url, &name), TestDb::Postgres { admin_url, name })
        }
    };
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.internal_listen = "127.0.0.1:0".parse().unwrap();
    settings.database.url = Some(url.clone());
    settings.database.max_connections = 5;
    settings.database.demo_seed = Some(false);
    settings.playground.dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("playground");
    // Tests exercise features, not fairness: budgets and rate limits out of the way, unless a
    // test (protection) sets its own.
    let roomy = securecart::config::BudgetPolicy { maximum: 1e12, restore_rate: 1e12 };
    let limits = &mut settings.rate_limit;
    (limits.anonymous, limits.customer, limits.vendor, limits.admin) = (roomy, roomy, roomy, roomy);
    (limits.anonymous_per_second, limits.anonymous_burst) = (Some(1000), Some(100_000));
    (limits.user_per_second, limits.user_burst) = (1000, 100_000);
    configure(&mut settings);
    let settings_tls = settings.server.tls_cert.is_some();
    let app = App::build(settings).await.expect("building the app");
    let scheme = if settings_tls { "https" } else { "http" };
    let address = format!("{scheme}://{}", app.local_addr());
    let internal_address = format!("http://{}", app.internal_addr());
    let store = app.store().clone();
    let bus = app.bus().clone();
    let groups = app.groups().clone();
    let budgets = app.budgets().clone();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    Some(TestApp {
        address,
        internal_address,
        client,
        store,
        bus,
        groups,
        budgets,
        database_url: url,
        shutdown: Some(tx),
        _db: db,
    })
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let base = base.rsplit_once('/').map(|(head, _)| head).unwrap_or(base);
    format!("{base}/{name}{query}")
}

/// Creates a database for one test by cloning a migrated template (made once per migration set).
async fn create_pg_database(admin_url: &str) -> String {
    let template = format!("securecart_tpl_{:016x}", migrations_hash());
    let mut admin = PgConnection::connect(admin_url).await.expect("connecting to TEST_DATABASE_URL");
    // Serialise template creation across test threads and processes.
    admin.execute("SELECT pg_advisory_lock(727274)").await.unwrap();
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&template)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    if !exists {
        admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{template}\""))).await.unwrap();
        let store = Store::connect(&with_database(admin_url, &template), 1).await.expect("template");
        store.migrate().await.expect("migrating the template");
        store.close().await;
        // Templates of earlier migration sets are of no more use: one template at a time.
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'securecart\\_tpl\\_%' AND datname <> $1",
        )
        .bind(&template)
        .fetch_all(&mut admin)
        .await
        .unwrap_or_default();
        for old in stale {
            let _ = admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{old}\" WITH (FORCE)"))).await;
        }
    }
    admin.execute("SELECT pg_advisory_unlock(727274)").await.unwrap();
    let name = format!("securecart_test_{}", uuid::Uuid::new_v4().simple());
    let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"");
    let mut tries = 0;
    // CREATE DATABASE ... TEMPLATE fails while another session is connected to the template.
    while let Err(e) = admin.execute(sqlx::AssertSqlSafe(sql.clone())).await {
        tries += 1;
        assert!(tries < 50, "creating {name}: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    name
}

fn migrations_hash() -> u64 {
    use std::hash::{Hash, Hasher};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        f.file_name().hash(&mut hasher);
        std::fs::read(&f).unwrap().hash(&mut hasher);
    }
    hasher.finish()
}

/// The real `securecart` binary started by a test; killed when dropped.
pub struct Binary {
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:<port>` of the public listener.
    pub address: String,
    /// `http://127.0.0.1:<port>` of the internal listener (`/metrics`, `/readyz`).
    pub internal: String,
    /// The public port.
    pub port: u16,
}

/// Starts the binary in `dir` with a clean environment plus `env` (later pairs win). It binds
/// port 0 for both listeners itself, so no port is picked, released and hoped for: the
/// addresses come from its stdout banner, which it prints once it listens.
pub async fn start_binary(dir: &std::path::Path, env: &[(&str, &str)]) -> Binary {
    use tokio::io::AsyncBufReadExt;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_securecart"));
    command
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SECURECART_LISTEN", "127.0.0.1:0")
        .env("SECURECART_INTERNAL_LISTEN", "127.0.0.1:0")
        .env("SECURECART_LOG", if std::env::var("TEST_LOG").is_ok() { "info" } else { "error" });
    for (k, v) in env {
        command.env(k, v);
    }
    let stderr =
        if std::env::var("TEST_LOG").is_ok() { std::process::Stdio::inherit() } else { std::process::Stdio::null() };
    let mut child =
        command.stdout(std::process::Stdio::piped()).stderr(stderr).kill_on_drop(true).spawn().expect("the binary");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("SecureCart API listening on ") {
                return rest.to_string();
            }
        }
        panic!("the binary exited before listening")
    })
    .await
    .expect("the binary listens within 30 s");
    // Keep reading, so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let (address, internal) = banner
        .strip_suffix(')')
        .and_then(|b| b.split_once(" (internal "))
        .unwrap_or_else(|| panic!("unexpected banner: {banner}"));
    let port = address.rsplit(':').next().unwrap().parse().unwrap();
    Binary { child, address: address.to_string(), internal: internal.to_string(), port }
}

/// The value of an unlabelled metric in a Prometheus scrape of `internal`.
pub async fn metric(client: &reqwest::Client, internal: &str, name: &str) -> Option<f64> {
    let text = client.get(format!("{internal}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Runs one statement on the database behind `url`.
pub async fn execute(url: &str, sql: &'static str) {
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

/// Under CI nothing may be skipped: the PostgreSQL and Redis tests must be built to run.
#[test]
fn under_ci_no_backend_is_skipped() {
    let (database, redis) = (cfg!(no_test_database), cfg!(no_test_redis));
    if std::env::var("CI").is_ok() {
        assert!(!database, "CI must set TEST_DATABASE_URL");
        assert!(!redis, "CI must set TEST_REDIS_URL");
    }
}
