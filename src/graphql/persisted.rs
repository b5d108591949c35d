//! Automatic persisted queries (APQ) and the production safelist.
//!
//! APQ, as Apollo clients speak it: a request may send only
//! `extensions.persistedQuery { version: 1, sha256Hash }`. A known hash runs its query; an
//! unknown one answers `PERSISTED_QUERY_NOT_FOUND` (message `PersistedQueryNotFound`), and the
//! client retries with the query and the hash (`PERSISTED_QUERY_HASH_MISMATCH` if they
//! disagree). The query is registered only once it has passed every limit, parsing and
//! validation (`register`, called by the transport after execution): an oversized or invalid
//! document is never stored, and its hash stays `PERSISTED_QUERY_NOT_FOUND`. The cache lives in
//! Redis when `REDIS_URL` is set (shared by replicas, entries kept 24 h), else in the process;
//! both hold at most `SECURECART_APQ_MAX_BYTES` of queries (10,000 queries locally), the
//! oldest going first.
//!
//! Safelist (`SECURECART_SAFELIST_FILE`): only the operations in the manifest run, sent by hash
//! or as their exact text; anything else answers `OPERATION_NOT_IN_SAFELIST` (HTTP 403). Admins
//! may run anything. The manifest is Apollo's persisted-query manifest
//! (`{"format":"apollo-persisted-query-manifest","version":1,"operations":[{"id","body",...}]}`)
//! or a plain `{"<sha256>": "<query>"}` object; every id must be the SHA-256 of its body.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, bail};
use axum::http::StatusCode;
use sha2::{Digest, Sha256};

/// A refusal: HTTP status, code, message.
pub type Refusal = (StatusCode, &'static str, String);

const LOCAL_CAPACITY: usize = 10_000;
const REDIS_TTL_SECS: u64 = 24 * 3600;

/// Stores a query unless present, then drops the oldest until the stored bytes fit the cap.
/// KEYS: the query's key, the order list, the byte total. ARGV: query, TTL, cap. (Entries that
/// expired by TTL stay counted until they reach the front: the count errs on the high side.)
const REDIS_PUT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local size = string.len(ARGV[1])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('RPUSH', KEYS[2], size .. '|' .. KEYS[1])
local total = redis.call('INCRBY', KEYS[3], size)
while total > tonumber(ARGV[3]) do
  local oldest = redis.call('LPOP', KEYS[2])
  if not oldest then break end
  local sep = string.find(oldest, '|', 1, true)
  redis.call('DEL', string.sub(oldest, sep + 1))
  total = redis.call('DECRBY', KEYS[3], tonumber(string.sub(oldest, 1, sep - 1)))
end
return 1
"#;

/// The local cache: queries by hash, oldest first, and their bytes.
#[derive(Default)]
struct Local {
    queries: HashMap<String, String>,
    order: VecDeque<String>,
    bytes: usize,
}

enum Cache {
    Local(Mutex<Local>),
    Redis(crate::redis_client::RedisConn, String),
}

/// The APQ cache and the optional safelist.
pub struct PersistedQueries {
    enabled: bool,
    cache: Cache,
    safelist: Option<HashMap<String, String>>,
    max_bytes: usize,
}

/// A query to register once it has passed every limit (see `PersistedQueries::register`).
#[derive(Debug, Clone)]
pub struct Registration {
    hash: String,
    query: String,
}

/// The SHA-256 of a query, in lower-case hex.
pub fn sha256_hex(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

fn load_safelist(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let pairs: Vec<(String, String)> = match &json["operations"] {
        serde_json::Value::Array(ops) => ops
            .iter()
            .map(|op| {
                Ok((
                    op["id"].as_str().context("an operation without id")?.to_string(),
                    op["body"].as_str().context("an operation without body")?.to_string(),
                ))
            })
            .collect::<anyhow::Result<_>>()?,
        _ => json
            .as_object()
            .context("a safelist is a manifest or an object of hash → query")?
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_str().context("a query must be a string")?.to_string())))
            .collect::<anyhow::Result<_>>()?,
    };
    let mut list = HashMap::new();
    for (id, body) in pairs {
        if sha256_hex(&body) != id.to_ascii_lowercase() {
            bail!("safelist entry {id} is not the SHA-256 of its query");
        }
        list.insert(id.to_ascii_lowercase(), body);
    }
    Ok(list)
}

impl PersistedQueries {
    /// Builds the cache (in Redis when `redis_url` is given) and loads the safelist.
    /// Its Redis keys start with `redis_prefix`.
    pub fn new(
        enabled: bool,
        redis: Option<(&crate::redis_client::RedisTarget, &str)>,
        safelist: Option<&Path>,
        max_bytes: usize,
    ) -> anyhow::Result<Self> {
        let cache = match redis {
            Some((target, prefix)) => {
                let timeouts = crate::redis_client::Timeouts {
                    connect: std::time::Duration::from_millis(500),
                    response: std::time::Duration::from_millis(500),
                };
                let manager = crate::redis_client::RedisConn::open(target, timeouts)?;
                // A hash tag around the prefix keeps every key of the cache in one slot of a
                // cluster: the store script touches the query, the order list and the byte count
                // together.
                Cache::Redis(manager, format!("{{{prefix}}}"))
            }
            None => Cache::Local(Mutex::new(Local::default())),
        };
        let safelist = safelist.map(load_safelist).transpose()?;
        if let Some(list) = &safelist {
            tracing::info!(operations = list.len(), "safelist mode: only registered operations run");
        }
        Ok(Self { enabled, cache, safelist, max_bytes })
    }

    async fn get(&self, hash: &str) -> Option<String> {
        match &self.cache {
            Cache::Local(m) => m.lock().unwrap_or_else(|e| e.into_inner()).queries.get(hash).cloned(),
            Cache::Redis(manager, prefix) => {
                let mut manager = manager.clone();
                redis::cmd("GET").arg(format!("{prefix}{hash}")).query_async(&mut manager).await.unwrap_or(None)
            }
        }
    }

    /// Stores a query that has passed every limit (the transport calls this after execution).
    pub async fn register(&self, registration: Registration) {
        let Registration { hash, query } = registration;
        match &self.cache {
            Cache::Local(m) => {
                let mut local = m.lock().unwrap_or_else(|e| e.into_inner());
                if local.queries.contains_key(&hash) {
                    return;
                }
                local.bytes += query.len();
                local.queries.insert(hash.clone(), query);
                local.order.push_back(hash);
                while local.order.len() > LOCAL_CAPACITY || local.bytes > self.max_bytes {
                    let Some(old) = local.order.pop_front() else { break };
                    if let Some(q) = local.queries.remove(&old) {
                        local.bytes -= q.len();
                    }
                }
            }
            Cache::Redis(manager, prefix) => {
                let mut manager = manager.clone();
                let stored: redis::RedisResult<i64> = redis::Script::new(REDIS_PUT)
                    .key(format!("{prefix}{hash}"))
                    .key(format!("{prefix}order"))
                    .key(format!("{prefix}bytes"))
                    .arg(query)
                    .arg(REDIS_TTL_SECS)
                    .arg(self.max_bytes)
                    .invoke_async(&mut manager)
                    .await;
                if let Err(e) = stored {
                    tracing::warn!(error = %e, "persisted query not cached (Redis)");
                }
            }
        }
    }

    /// The bytes of queries held in the local cache (0 with Redis).
    pub fn local_bytes(&self) -> usize {
        match &self.cache {
            Cache::Local(m) => m.lock().unwrap_or_else(|e| e.into_inner()).bytes,
            Cache::Redis(..) => 0,
        }
    }

    /// Fills in or checks the query of `request`; `admin` callers bypass the safelist. A new query
    /// sent with its hash comes back as a `Registration`, to `register` once it has run.
    pub async fn resolve(
        &self,
        request: &mut async_graphql::Request,
        admin: bool,
    ) -> Result<Option<Registration>, Refusal> {
        let hash = match request.extensions.get("persistedQuery") {
            Some(async_graphql::Value::Object(pq)) => {
                if pq.get("version").map(|v| v.to_string()) != Some("1".into()) {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        "PERSISTED_QUERY_VERSION",
                        "persistedQuery.version must be 1".into(),
                    ));
                }
                match pq.get("sha256Hash") {
                    Some(async_graphql::Value::String(h)) => Some(h.to_ascii_lowercase()),
                    _ => {
                        return Err((
                            StatusCode::BAD_REQUEST,
                            "BAD_REQUEST",
                            "persistedQuery.sha256Hash is missing".into(),
                        ));
                    }
                }
            }
            Some(_) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    "extensions.persistedQuery must be an object".into(),
                ));
            }
            None => None,
        };
        if let Some(list) = self.safelist.as_ref().filter(|_| !admin) {
            let id = hash.clone().unwrap_or_else(|| sha256_hex(&request.query));
            let not_listed = || {
                (
                    StatusCode::FORBIDDEN,
                    "OPERATION_NOT_IN_SAFELIST",
                    "this operation is not registered with the server".to_string(),
                )
            };
            let body = list.get(&id).ok_or_else(not_listed)?;
            if request.query.is_empty() {
                request.query = body.clone();
            } else if &request.query != body {
                return Err(not_listed());
            }
            return Ok(None);
        }
        let Some(hash) = hash else {
            if request.query.is_empty() {
                return Err((StatusCode::BAD_REQUEST, "BAD_REQUEST", "the request has no query".into()));
            }
            return Ok(None);
        };
        if !self.enabled {
            return Err((
                StatusCode::BAD_REQUEST,
                "PERSISTED_QUERY_NOT_SUPPORTED",
                "PersistedQueryNotSupported".into(),
            ));
        }
        if request.query.is_empty() {
            let known = match self.safelist.as_ref().and_then(|l| l.get(&hash)) {
                Some(q) => Some(q.clone()),
                None => self.get(&hash).await,
            };
            match known {
                Some(query) => request.query = query,
                // Apollo clients look for this message to resend with the full query.
                None => return Err((StatusCode::OK, "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound".into())),
            }
        } else if sha256_hex(&request.query) != hash {
            return Err((
                StatusCode::BAD_REQUEST,
                "PERSISTED_QUERY_HASH_MISMATCH",
                "sha256Hash is not the hash of the query".into(),
            ));
        } else {
            return Ok(Some(Registration { hash, query: request.query.clone() }));
        }
        Ok(None)
    }
}
