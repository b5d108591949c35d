//! Automatic persisted queries (APQ) and the production safelist.
//!
//! APQ, as Apollo clients speak it: a request may send only
//! `extensions.persistedQuery { version: 1, sha256Hash }`. A known hash runs its query; an
//! unknown one answers `PERSISTED_QUERY_NOT_FOUND` (message `PersistedQueryNotFound`), and the
//! client retries with the query and the hash, which registers it (`PERSISTED_QUERY_HASH_MISMATCH`
//! if they disagree). The cache lives in Redis when `REDIS_URL` is set (shared by replicas, kept
//! 24 h), else in the process (at most 10,000 queries).
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
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

/// A refusal: HTTP status, code, message.
pub type Refusal = (StatusCode, &'static str, String);

const LOCAL_CAPACITY: usize = 10_000;
const REDIS_TTL_SECS: u64 = 24 * 3600;

enum Cache {
    Local(Mutex<(HashMap<String, String>, VecDeque<String>)>),
    Redis(ConnectionManager, String),
}

/// The APQ cache and the optional safelist.
pub struct PersistedQueries {
    enabled: bool,
    cache: Cache,
    safelist: Option<HashMap<String, String>>,
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
    pub fn new(enabled: bool, redis_url: Option<&str>, safelist: Option<&Path>) -> anyhow::Result<Self> {
        let cache = match redis_url {
            Some(url) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(std::time::Duration::from_millis(500)))
                    .set_response_timeout(Some(std::time::Duration::from_millis(500)))
                    .set_number_of_retries(1);
                let manager = ConnectionManager::new_lazy_with_config(redis::Client::open(url)?, config)?;
                Cache::Redis(manager, "securecart:apq:".into())
            }
            None => Cache::Local(Mutex::new((HashMap::new(), VecDeque::new()))),
        };
        let safelist = safelist.map(load_safelist).transpose()?;
        if let Some(list) = &safelist {
            tracing::info!(operations = list.len(), "safelist mode: only registered operations run");
        }
        Ok(Self { enabled, cache, safelist })
    }

    async fn get(&self, hash: &str) -> Option<String> {
        match &self.cache {
            Cache::Local(m) => m.lock().unwrap_or_else(|e| e.into_inner()).0.get(hash).cloned(),
            Cache::Redis(manager, prefix) => {
                let mut manager = manager.clone();
                redis::cmd("GET").arg(format!("{prefix}{hash}")).query_async(&mut manager).await.unwrap_or(None)
            }
        }
    }

    async fn put(&self, hash: String, query: String) {
        match &self.cache {
            Cache::Local(m) => {
                let mut guard = m.lock().unwrap_or_else(|e| e.into_inner());
                let (map, order) = &mut *guard;
                if map.insert(hash.clone(), query).is_none() {
                    order.push_back(hash);
                    while order.len() > LOCAL_CAPACITY {
                        if let Some(old) = order.pop_front() {
                            map.remove(&old);
                        }
                    }
                }
            }
            Cache::Redis(manager, prefix) => {
                let mut manager = manager.clone();
                let stored: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(format!("{prefix}{hash}"))
                    .arg(query)
                    .arg("EX")
                    .arg(REDIS_TTL_SECS)
                    .query_async(&mut manager)
                    .await;
                if let Err(e) = stored {
                    tracing::warn!(error = %e, "persisted query not cached (Redis)");
                }
            }
        }
    }

    /// Fills in or checks the query of `request`; `admin` callers bypass the safelist.
    pub async fn resolve(&self, request: &mut async_graphql::Request, admin: bool) -> Result<(), Refusal> {
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
            return Ok(());
        }
        let Some(hash) = hash else {
            if request.query.is_empty() {
                return Err((StatusCode::BAD_REQUEST, "BAD_REQUEST", "the request has no query".into()));
            }
            return Ok(());
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
            self.put(hash, request.query.clone()).await;
        }
        Ok(())
    }
}
