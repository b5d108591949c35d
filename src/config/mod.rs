//! Settings and their loading: defaults < optional TOML file < environment. The only module
//! that reads env. `env` holds the table of every environment variable (name, setting, parser,
//! default, meaning); the README's configuration table is generated from it and checked by a test.

pub mod env;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Where the server runs. Production refuses development conveniences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Local development: migrations and a demo catalog at start-up, pretty logs, GraphiQL on.
    #[default]
    #[serde(alias = "dev")]
    Development,
    /// Production: JSON logs, no playground unless enabled, migrations only by `securecart migrate`.
    #[serde(alias = "prod")]
    Production,
}

impl Environment {
    /// Whether this is the production environment.
    pub fn is_production(self) -> bool {
        self == Self::Production
    }
}

/// All settings, nested by concern. Unknown keys in a config file fail at start-up.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `development` (default) or `production`.
    pub environment: Environment,
    /// The public HTTP listener.
    pub server: ServerSettings,
    /// The database.
    pub database: DatabaseSettings,
    /// Redis, used for the event bus when configured.
    pub redis: RedisSettings,
    /// The event outbox.
    pub events: EventSettings,
    /// WebSocket limits.
    pub websocket: WebSocketSettings,
    /// Identity: JWT verification and role mapping.
    pub auth: AuthSettings,
    /// The payment gateway.
    pub payment: PaymentSettings,
    /// Operation limits and pagination.
    pub limits: LimitSettings,
    /// Rate limits and cost budgets.
    pub rate_limit: RateLimitSettings,
    /// CORS, CSRF prevention, persisted queries.
    pub security: SecuritySettings,
    /// REST API versions.
    pub api: ApiSettings,
    /// The GraphiQL playground.
    pub playground: PlaygroundSettings,
    /// Logging.
    pub telemetry: TelemetrySettings,
}

/// The public HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port of the public API (default 127.0.0.1:8080; port 0 picks a free one).
    pub listen: SocketAddr,
    /// The largest request body accepted, in bytes (default 1 MiB).
    pub max_body_bytes: usize,
    /// Seconds a new connection may take to send its first request's headers.
    pub header_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait, after an answer, for the next request's complete
    /// headers before the server closes it; no less than `header_timeout_secs` (checked at
    /// start-up). Keep it above the idle timeout of any load balancer in front (an AWS ALB's is
    /// 60 s), or the balancer sends requests on connections the server is closing and answers
    /// them 502.
    pub idle_timeout_secs: u64,
    /// Seconds a client may take to send a request's body, all of it.
    pub body_timeout_secs: u64,
    /// Open connections at most on the public listener.
    pub max_connections: usize,
    /// Open connections at most from one client address.
    pub max_connections_per_ip: usize,
    /// The private listener for `/metrics`, `/healthz` and
    /// `/readyz` (default 127.0.0.1:9090). Keep it off the internet.
    pub internal_listen: SocketAddr,
    /// How long in-flight requests may take to finish after
    /// SIGTERM or SIGINT (default 30).
    pub shutdown_deadline_secs: u64,
    /// A PEM certificate chain; with `tls_key`, the public listener speaks
    /// TLS 1.2/1.3.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            header_timeout_secs: 10,
            idle_timeout_secs: 75,
            body_timeout_secs: 30,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            internal_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            shutdown_deadline_secs: 30,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// The database.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://...` or `sqlite://...`; unset means `sqlite://securecart.db` in the working directory.
    pub url: Option<String>,
    /// Pool size (default 10).
    pub max_connections: u32,
    /// How long a request waits for a pool connection (default 3000); then it is answered
    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After`.
    pub acquire_timeout_ms: u64,
    /// Apply migrations at start-up (default: on in development, off in production).
    pub auto_migrate: Option<bool>,
    /// Lifetime of cached product details and stock levels
    /// (default 30; 0 turns the cache off). Invalidation keeps them fresh well within it.
    pub cache_ttl_secs: u64,
    /// Seed a small demo catalog into an empty database at start-up
    /// (default: on in development, off in production).
    pub demo_seed: Option<bool>,
    /// A PostgreSQL streaming replica for catalog, order-history and cart reads (see
    /// `store::replica`); unset: every read goes to `url`.
    pub read_url: Option<String>,
    /// Milliseconds a caller's reads stay on the primary after they write (default 5000; at least
    /// `replica_max_lag_ms` + `REPLICA_CHECK_SLACK_MS`).
    pub read_your_writes_ms: u64,
    /// The most lag the replica may have before reads leave it for the primary (default 2000).
    pub replica_max_lag_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 10,
            acquire_timeout_ms: 3000,
            auto_migrate: None,
            demo_seed: None,
            cache_ttl_secs: 30,
            read_url: None,
            read_your_writes_ms: 5000,
            replica_max_lag_ms: 2000,
        }
    }
}

/// How late the replica's lag can be known (its check runs every second, with a 2 s deadline).
pub const REPLICA_CHECK_SLACK_MS: u64 = 3000;

/// The default database when `DATABASE_URL` is unset: a file beside the process.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://securecart.db";

impl DatabaseSettings {
    /// The database URL in force.
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or(DEFAULT_DATABASE_URL)
    }
}

/// Redis.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// When set, events fan out through Redis pub/sub; unset means an in-process bus.
    pub url: Option<String>,
    /// The pub/sub channel (default `securecart:events`); replicas
    /// of one deployment share it.
    pub channel: String,
    /// `url` is a Redis Cluster (comma-separated node URLs; one is enough), see `redis_client`.
    pub cluster: bool,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self { url: None, channel: "securecart:events".into(), cluster: false }
    }
}

impl RedisSettings {
    /// Where Redis is, when it is configured.
    pub fn target(&self) -> Option<crate::redis_client::RedisTarget> {
        self.url.as_ref().map(|url| crate::redis_client::RedisTarget { url: url.clone(), cluster: self.cluster })
    }
}

/// The event outbox: how often each process reads it for events no other path brought, and how
/// long events are kept there.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Milliseconds between two reads of the outbox (the longest a cross-replica event waits
    /// when Redis is down).
    pub sweep_ms: u64,
    /// Seconds events stay in the outbox.
    pub retention_secs: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self { sweep_ms: 1000, retention_secs: 86_400 }
    }
}

/// WebSocket limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketSettings {
    /// Open WebSocket connections per process (default 10000);
    /// more are refused with 503 before the upgrade.
    pub max_connections: usize,
    /// Operations at once per connection (default 100); more
    /// get `TOO_MANY_SUBSCRIPTIONS`.
    pub max_subscriptions: usize,
    /// How often the server pings each connection (default 30); a connection that answers
    /// nothing (not even a pong) for this plus `send_timeout_secs` after a ping is closed
    /// with 1008.
    pub ping_secs: u64,
    /// Open connections at most from one client address.
    pub max_per_ip: usize,
    /// Seconds a message (or ping) may wait for a client that does not read; then the
    /// connection is closed with 1008 (default 10).
    pub send_timeout_secs: u64,
    /// Seconds a client has to send `connection_init` (then 4408).
    pub init_timeout_secs: u64,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_subscriptions: 100,
            ping_secs: 30,
            max_per_ip: 100,
            init_timeout_secs: 10,
            send_timeout_secs: 10,
        }
    }
}

/// The payment gateway.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentSettings {
    /// The gateway's base URL; unset means the built-in development
    /// fake (refused in production).
    pub url: Option<String>,
    /// How long the checkout waits for a charge's answer (default 5000);
    /// then the order stays pending until its outcome is confirmed.
    pub timeout_ms: u64,
    /// How often charges left pending longer than the timeout are
    /// settled by asking the provider again (default 30; also at start-up).
    pub reconcile_interval_secs: u64,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self { url: None, timeout_ms: 5000, reconcile_interval_secs: 30 }
    }
}

/// Who may run introspection queries (`__schema`, `__type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IntrospectionPolicy {
    /// Every caller (the development default).
    Everyone,
    /// Only callers with the `admin` role (the production default).
    Admins,
    /// Nobody.
    Nobody,
}

/// The development-only HS256 secret used when neither a secret nor a JWKS is configured.
/// Production refuses to start with it.
pub const DEV_JWT_SECRET: &str = "securecart-development-secret-not-for-production";

/// Identity: how tokens are verified and turned into roles.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Shared HS256 secret (at least 32 bytes in production).
    pub jwt_secret: Option<String>,
    /// Where the identity provider publishes its keys (RS256/ES256),
    /// e.g. `https://example.auth0.com/.well-known/jwks.json`.
    pub jwks_url: Option<String>,
    /// A JWKS JSON file instead of a URL.
    pub jwks_file: Option<PathBuf>,
    /// How often the JWKS is fetched again (default 600).
    pub jwks_refresh_secs: u64,
    /// The least time between fetches caused by an unknown
    /// `kid` (default 60), so forged `kid`s cannot hammer the identity provider.
    pub jwks_min_refetch_secs: u64,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` (default 30).
    pub leeway_secs: u64,
    /// Comma-separated allow-list. Default `HS256` with a secret,
    /// `RS256,ES256` with a JWKS. `none` is never accepted, nor HMAC with a JWKS.
    pub algorithms: Option<Vec<String>>,
    /// Cognito `client_id`s accepted in place of `aud` (Cognito access tokens carry no `aud`).
    pub client_ids: Vec<String>,
    /// The `token_use` a token must have when it carries one (Cognito: `access` or `id`).
    pub token_use: String,
    /// Namespaces whose roles count (`securecart` accepts `securecart:admin`).
    pub role_namespaces: Vec<String>,
    /// Whether plain role names (`admin`) count.
    pub plain_roles: bool,
    /// Whether the space-separated `scope` claim is read for roles.
    pub scope_roles: bool,
    /// Whether Cognito's `cognito:groups` claim is read for roles.
    pub cognito_groups: bool,
    /// The claim holding roles (default `roles`); `cognito:groups`
    /// and a space-separated `scope` are read as well.
    pub roles_claim: String,
    /// The claim holding a vendor's id (default `vendor_id`);
    /// without it, the vendor whose `owner_subject` is the token's `sub`.
    pub vendor_claim: String,
    /// `everyone`, `admins` or `nobody`
    /// (default: everyone in development, admins in production).
    pub introspection: Option<IntrospectionPolicy>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwks_url: None,
            jwks_file: None,
            jwks_refresh_secs: 600,
            jwks_min_refetch_secs: 60,
            issuer: None,
            audience: None,
            leeway_secs: 30,
            algorithms: None,
            roles_claim: "roles".into(),
            vendor_claim: "vendor_id".into(),
            client_ids: Vec::new(),
            token_use: "access".into(),
            role_namespaces: vec!["securecart".into()],
            plain_roles: true,
            scope_roles: false,
            cognito_groups: false,
            introspection: None,
        }
    }
}

// Secrets never reach logs: Debug shows only whether one is set.
impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<redacted>"))
            .field("jwks_url", &self.jwks_url)
            .field("jwks_file", &self.jwks_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// Operation limits and pagination.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Page size when a connection gets neither `first` nor `last` (default 20).
    pub default_page_size: u32,
    /// The largest `first`/`last` accepted (default 100); larger asks fail with `PAGE_SIZE_EXCEEDED`.
    pub max_page_size: u32,
    /// Deepest selection nesting accepted (default 12).
    pub max_depth: usize,
    /// Largest requested cost accepted (default 5000; see `graphql::cost`).
    pub max_complexity: usize,
    /// Longest query text (default 256 KiB; `QUERY_TOO_LARGE`).
    pub max_query_bytes: usize,
    /// Most lexical tokens in a query (default 15000; `MAX_TOKENS_EXCEEDED`).
    pub max_tokens: usize,
    /// Most aliased fields (default 50; `MAX_ALIASES_EXCEEDED`).
    pub max_aliases: usize,
    /// Most root fields in an operation (default 30; `MAX_ROOT_FIELDS_EXCEEDED`).
    pub max_root_fields: usize,
    /// Largest `variables` object as JSON (default 64 KiB; `VARIABLES_TOO_LARGE`).
    pub max_variables_bytes: usize,
    /// Operations in one batched request; 0 turns batching off (the
    /// default; `BATCHING_NOT_SUPPORTED`), above it `BATCH_TOO_LARGE`.
    pub max_batch: usize,
    /// Longest execution of one operation (default 10000;
    /// `EXECUTION_TIMEOUT`, HTTP 504).
    pub execution_timeout_ms: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            default_page_size: 20,
            max_page_size: 100,
            max_depth: 12,
            max_complexity: 5000,
            max_query_bytes: 256 * 1024,
            max_tokens: 15_000,
            max_aliases: 50,
            max_root_fields: 30,
            max_variables_bytes: 64 * 1024,
            max_batch: 0,
            execution_timeout_ms: 10_000,
        }
    }
}

/// Size and refill rate of one kind of caller's bucket.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetPolicy {
    /// Points a full bucket holds (`maximumAvailable`).
    pub maximum: f64,
    /// Points restored per second (`restoreRate`).
    pub restore_rate: f64,
}

/// Rate limits and cost budgets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Anonymous requests per second per client IP (default 20 in production, 200 in
    /// development; see `Settings::anonymous_rate`).
    pub anonymous_per_second: Option<u64>,
    /// How many anonymous requests an IP may send at once (default 40 in production, 400 in
    /// development).
    pub anonymous_burst: Option<u32>,
    /// Requests per second per caller with a verified token (by subject).
    pub user_per_second: u64,
    /// How many requests such a caller may send at once.
    pub user_burst: u32,
    /// Comma-separated IPs or CIDRs of reverse proxies whose
    /// `X-Forwarded-For` is believed (default none: the peer address is the client).
    pub trusted_proxies: Vec<String>,
    /// Cost budget per anonymous IP.
    pub anonymous: BudgetPolicy,
    /// Cost budget per customer.
    pub customer: BudgetPolicy,
    /// Cost budget per vendor.
    pub vendor: BudgetPolicy,
    /// Cost budget per admin.
    pub admin: BudgetPolicy,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        use BudgetPolicy as P;
        Self {
            anonymous_per_second: None,
            anonymous_burst: None,
            user_per_second: 50,
            user_burst: 100,
            trusted_proxies: Vec::new(),
            anonymous: P { maximum: 1000.0, restore_rate: 50.0 },
            customer: P { maximum: 2000.0, restore_rate: 100.0 },
            vendor: P { maximum: 4000.0, restore_rate: 200.0 },
            admin: P { maximum: 10_000.0, restore_rate: 500.0 },
        }
    }
}

/// REST API versions: when v1 was deprecated and when it stops answering.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// `SECURECART_API_V1_DEPRECATED` (RFC 3339): from then on v1 answers with `Deprecation`,
    /// `Sunset` and `Link` headers (default 2026-11-24, when v2 shipped).
    pub v1_deprecated: chrono::DateTime<chrono::Utc>,
    /// `SECURECART_API_V1_SUNSET` (RFC 3339): from then on v1 answers 410 (default: six months
    /// after the deprecation).
    pub v1_sunset: Option<chrono::DateTime<chrono::Utc>>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        use chrono::TimeZone;
        Self {
            v1_deprecated: chrono::Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).single().expect("a valid date"),
            v1_sunset: None,
        }
    }
}

impl ApiSettings {
    /// When v1 stops answering.
    pub fn v1_sunset(&self) -> chrono::DateTime<chrono::Utc> {
        self.v1_sunset.unwrap_or_else(|| {
            self.v1_deprecated.checked_add_months(chrono::Months::new(6)).unwrap_or(self.v1_deprecated)
        })
    }
}

/// Browser-facing protections and persisted queries.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// Comma-separated origins allowed by CORS (`*` for any; default
    /// none: same-origin only).
    pub cors_origins: Vec<String>,
    /// Refuse GET requests that a browser could send without a
    /// preflight (default on), as Apollo Server does.
    pub csrf_prevention: bool,
    /// Automatic persisted queries (default on).
    pub persisted_queries: bool,
    /// Bytes of persisted queries kept at most (locally and in Redis), the oldest dropped first.
    pub persisted_queries_max_bytes: usize,
    /// A persisted-query manifest; when set, only its operations run
    /// (admins excepted).
    pub safelist_file: Option<PathBuf>,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            csrf_prevention: true,
            persisted_queries: true,
            persisted_queries_max_bytes: 8 * 1024 * 1024,
            safelist_file: None,
        }
    }
}

/// The GraphiQL playground.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaygroundSettings {
    /// Serve GraphiQL on `GET /graphql` to browsers (default: on in development only).
    pub enabled: Option<bool>,
    /// Folder holding `package.json` and the `node_modules` installed by
    /// `npm ci --prefix playground` (default `playground`).
    pub dir: PathBuf,
}

impl Default for PlaygroundSettings {
    fn default() -> Self {
        Self { enabled: None, dir: PathBuf::from("playground") }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty in development, JSON in production.
    #[default]
    Auto,
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// A tracing filter (default `info`).
    pub log_filter: String,
    /// `auto`, `pretty` or `json`.
    pub log_format: LogFormat,
    /// Export spans over OTLP/HTTP to this base URL (builds with
    /// the `otlp` feature only; `/v1/traces` is appended).
    pub otlp_endpoint: Option<String>,
    /// Answer every request with a `Server-Timing` header counting its SQL statements
    /// (default on in development, off in production, where it would describe the server's
    /// work to anyone).
    pub server_timing: Option<bool>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self { log_filter: "info".into(), log_format: LogFormat::Auto, otlp_endpoint: None, server_timing: None }
    }
}

impl Settings {
    /// Loads settings from the optional file named by `file` (or `SECURECART_CONFIG`) and the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_with(file, |name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Loads settings with `env` standing in for the process environment (tests use this).
    pub fn load_with(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let file = file.map(Path::to_path_buf).or_else(|| env("SECURECART_CONFIG").map(PathBuf::from));
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                // Parsed as settings first, so a bad file is reported as the file's fault.
                toml::from_str::<Settings>(&text).with_context(|| format!("parsing config file {}", path.display()))?;
                toml::from_str::<toml::Table>(&text)?
            }
            None => toml::Table::new(),
        };
        self::env::apply(&mut table, env)?;
        let settings: Settings = toml::Value::Table(table).try_into().context("reading the settings")?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the settings together and reports every problem at once, each with its fix, so
    /// a deployment is corrected in one pass rather than one restart per mistake.
    fn validate(&self) -> anyhow::Result<()> {
        let mut problems: Vec<String> = Vec::new();
        let mut problem = |text: String| problems.push(text);
        let limits = &self.limits;
        if limits.max_page_size == 0 || limits.default_page_size == 0 || limits.default_page_size > limits.max_page_size
        {
            problem("limits: need 0 < default_page_size <= max_page_size".into());
        }
        // The replica is checked every second with a 2 s deadline: a writer's window shorter than
        // the allowed lag plus that could send them to a replica that has not replayed their write.
        let database = &self.database;
        if database.read_url.is_some()
            && database.read_your_writes_ms < database.replica_max_lag_ms.saturating_add(REPLICA_CHECK_SLACK_MS)
        {
            problem(format!(
                "SECURECART_READ_YOUR_WRITES_MS ({}) must be at least SECURECART_REPLICA_MAX_LAG_MS ({}) + {REPLICA_CHECK_SLACK_MS} \
                 (how late the replica's lag is known), or a writer could read a replica that lacks their write",
                database.read_your_writes_ms, database.replica_max_lag_ms
            ));
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            problem("set both SECURECART_TLS_CERT and SECURECART_TLS_KEY, or neither".into());
        }
        let auth = &self.auth;
        if auth.jwt_secret.is_some() && (auth.jwks_url.is_some() || auth.jwks_file.is_some()) {
            problem(
                "configure SECURECART_JWT_SECRET or a JWKS (SECURECART_JWKS_URL / SECURECART_JWKS_FILE), not both"
                    .into(),
            );
        }
        if auth.jwks_url.is_some() && auth.jwks_file.is_some() {
            problem("configure SECURECART_JWKS_URL or SECURECART_JWKS_FILE, not both".into());
        }
        if self.environment.is_production() {
            if self.payment.url.is_none() {
                problem(
                    "SECURECART_PAYMENT_URL is unset: set it to your payment provider's base URL (the built-in \
                     fake payment gateway is for development only)"
                        .into(),
                );
            }
            if auth.jwks_url.as_deref().is_some_and(|u| !u.starts_with("https://")) {
                problem(
                    "SECURECART_JWKS_URL must be https:// in production: keys fetched in the clear can be swapped"
                        .into(),
                );
            }
            let has_jwks = auth.jwks_url.is_some() || auth.jwks_file.is_some();
            let make_one = "generate one with `openssl rand -base64 48`";
            match auth.jwt_secret.as_deref() {
                None if !has_jwks => problem(format!(
                    "SECURECART_JWT_SECRET is unset: set a random secret of at least 32 bytes ({make_one}), or \
                     SECURECART_JWKS_URL for tokens from an identity provider (RS256/ES256)"
                )),
                Some(DEV_JWT_SECRET) => problem(format!(
                    "production refuses the development JWT secret in SECURECART_JWT_SECRET: {make_one}"
                )),
                Some(s) if s.len() < 32 => {
                    problem(format!("SECURECART_JWT_SECRET must be at least 32 bytes in production ({make_one})"))
                }
                _ => {}
            }
        }
        for (name, p) in [
            ("anonymous", self.rate_limit.anonymous),
            ("customer", self.rate_limit.customer),
            ("vendor", self.rate_limit.vendor),
            ("admin", self.rate_limit.admin),
        ] {
            if !(p.maximum > 0.0 && p.restore_rate > 0.0) {
                problem(format!("the {name} cost budget needs a positive maximum and restore rate (e.g. `1000/50`)"));
            }
        }
        if self.anonymous_rate().0 == 0 || self.anonymous_rate().1 == 0 {
            problem("SECURECART_ANON_RATE and SECURECART_ANON_BURST must be positive".into());
        }
        let server = &self.server;
        for (name, value) in [
            ("SECURECART_HEADER_TIMEOUT_SECS", server.header_timeout_secs as usize),
            ("SECURECART_IDLE_TIMEOUT_SECS", server.idle_timeout_secs as usize),
            ("SECURECART_BODY_TIMEOUT_SECS", server.body_timeout_secs as usize),
            ("SECURECART_MAX_CONNECTIONS", server.max_connections),
            ("SECURECART_MAX_CONNECTIONS_PER_IP", server.max_connections_per_ip),
            ("SECURECART_WS_MAX_PER_IP", self.websocket.max_per_ip),
            ("SECURECART_WS_INIT_TIMEOUT_SECS", self.websocket.init_timeout_secs as usize),
            ("SECURECART_APQ_MAX_BYTES", self.security.persisted_queries_max_bytes),
        ] {
            if value == 0 {
                problem(format!("{name} must be positive (0 would refuse every request)"));
            }
        }
        if server.idle_timeout_secs < server.header_timeout_secs {
            // hyper's one header timer bounds both (`app::deadlines`): a shorter idle timeout
            // would cut a new connection's first headers before their own timeout.
            problem(format!(
                "SECURECART_IDLE_TIMEOUT_SECS ({}) must be at least SECURECART_HEADER_TIMEOUT_SECS ({})",
                server.idle_timeout_secs, server.header_timeout_secs
            ));
        }
        if self.rate_limit.user_per_second == 0 || self.rate_limit.user_burst == 0 {
            problem("SECURECART_USER_RATE and SECURECART_USER_BURST must be positive".into());
        }
        let url = self.database.url();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:")) {
            problem(
                "DATABASE_URL must start with postgres://, postgresql:// or sqlite: (e.g. \
                 postgres://user:password@db.internal:5432/securecart)"
                    .into(),
            );
        }
        match problems.as_slice() {
            [] => Ok(()),
            [one] => bail!("{one}"),
            many => {
                let list: Vec<String> = many.iter().map(|p| format!("  - {p}")).collect();
                bail!("{} settings need fixing:\n{}", many.len(), list.join("\n"))
            }
        }
    }

    /// Whether responses carry a `Server-Timing` header with their statement count.
    pub fn server_timing(&self) -> bool {
        self.telemetry.server_timing.unwrap_or(!self.environment.is_production())
    }

    /// Whether migrations run at start-up.
    pub fn auto_migrate(&self) -> bool {
        self.database.auto_migrate.unwrap_or(!self.environment.is_production())
    }

    /// Whether an empty database gets the demo catalog at start-up.
    pub fn demo_seed(&self) -> bool {
        self.database.demo_seed.unwrap_or(!self.environment.is_production())
    }

    /// Who may introspect the schema.
    pub fn introspection(&self) -> IntrospectionPolicy {
        self.auth.introspection.unwrap_or(if self.environment.is_production() {
            IntrospectionPolicy::Admins
        } else {
            IntrospectionPolicy::Everyone
        })
    }

    /// Anonymous requests per second and burst per client IP: production's 20 and 40 keep a
    /// scraper or a flood in check; development's 200 and 400 stay out of a developer's tools'
    /// way (GraphiQL, codegen watchers, the graphql-http audit's burst of about 60 requests),
    /// while still showing a 429 to a runaway loop. Each can be set on its own.
    pub fn anonymous_rate(&self) -> (u64, u32) {
        let production = self.environment.is_production();
        (
            self.rate_limit.anonymous_per_second.unwrap_or(if production { 20 } else { 200 }),
            self.rate_limit.anonymous_burst.unwrap_or(if production { 40 } else { 400 }),
        )
    }

    /// Whether GraphiQL is served.
    pub fn playground_enabled(&self) -> bool {
        self.playground.enabled.unwrap_or(!self.environment.is_production())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::load_with(None, |name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_development_on_sqlite() {
        let s = load(&[]).unwrap();
        assert_eq!(s.environment, Environment::Development);
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database.url(), DEFAULT_DATABASE_URL);
        assert!(s.auto_migrate() && s.demo_seed() && s.playground_enabled() && s.server_timing());
    }

    #[test]
    fn production_turns_conveniences_off() {
        let secret = ("SECURECART_JWT_SECRET", "0123456789abcdef0123456789abcdef");
        let pay = ("SECURECART_PAYMENT_URL", "https://payments.example");
        let s = load(&[("SECURECART_ENV", "production"), ("DATABASE_URL", "postgres://x/y"), secret, pay]).unwrap();
        assert!(!s.auto_migrate() && !s.demo_seed() && !s.playground_enabled() && !s.server_timing());
        assert_eq!(s.introspection(), IntrospectionPolicy::Admins);
    }

    #[test]
    fn production_refuses_to_start_without_real_keys() {
        let prod = ("SECURECART_ENV", "production");
        let err = load(&[prod]).unwrap_err().to_string();
        // Every problem at once, each with its fix.
        assert!(err.starts_with("2 settings need fixing"), "{err}");
        assert!(err.contains("SECURECART_PAYMENT_URL is unset: set it to"), "{err}");
        assert!(err.contains("SECURECART_JWT_SECRET is unset") && err.contains("openssl rand"), "{err}");
        let pay = ("SECURECART_PAYMENT_URL", "https://payments.example");
        let err = load(&[prod, pay]).unwrap_err().to_string();
        assert!(err.contains("SECURECART_JWT_SECRET"), "{err}");
        let err = load(&[prod, pay, ("SECURECART_JWT_SECRET", DEV_JWT_SECRET)]).unwrap_err().to_string();
        assert!(err.contains("development JWT secret"), "{err}");
        let err = load(&[prod, pay, ("SECURECART_JWT_SECRET", "short")]).unwrap_err().to_string();
        assert!(err.contains("32 bytes"), "{err}");
        assert!(load(&[prod, pay, ("SECURECART_JWKS_URL", "https://idp.example/jwks.json")]).is_ok());
        let both = [("SECURECART_JWT_SECRET", "x"), ("SECURECART_JWKS_URL", "https://idp.example/jwks.json")];
        assert!(load(&both).is_err());
    }

    #[test]
    fn bad_values_fail_with_the_variable_name() {
        let err = load(&[("SECURECART_LISTEN", "nope")]).unwrap_err().to_string();
        assert!(err.contains("SECURECART_LISTEN") && err.contains("e.g. `127.0.0.1:8080`"), "{err}");
        let err = load(&[("SECURECART_LISTEN", ":8081")]).unwrap_err().to_string();
        assert!(err.contains("`127.0.0.1:8081`") && err.contains("`0.0.0.0:8081`"), "{err}");
        assert_eq!(
            load(&[("SECURECART_LISTEN", "localhost:8081")]).unwrap().server.listen.to_string(),
            "127.0.0.1:8081"
        );
        let err = load(&[("DATABASE_URL", "mysql://x")]).unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
        let err = load(&[("SECURECART_IDLE_TIMEOUT_SECS", "5")]).unwrap_err().to_string();
        assert!(
            err.contains("SECURECART_IDLE_TIMEOUT_SECS (5) must be at least SECURECART_HEADER_TIMEOUT_SECS"),
            "{err}"
        );
        assert_eq!(load(&[("SECURECART_IDLE_TIMEOUT_SECS", "10")]).unwrap().server.idle_timeout_secs, 10);
    }

    #[test]
    fn unknown_file_keys_fail() {
        let err = toml::from_str::<Settings>("[server]\nlisten = \"127.0.0.1:1\"\nlistne = 1\n").unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
    }
}
