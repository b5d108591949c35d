//! JWT verification with an HS256 secret (development) or a JWKS (RS256/ES256, as Cognito,
//! Auth0 and Keycloak publish), and development tokens for `securecart token`.
//!
//! Rules, each a defence against a known attack:
//! - An explicit algorithm allow-list; `none` is never accepted, and HMAC never when the keys
//!   are asymmetric (algorithm confusion: an HS256 token "signed" with the RSA public key).
//! - With a JWKS, a token must name its key (`kid`) and the key's family and `alg` must match
//!   the token's algorithm.
//! - `exp` and `sub` are required; `exp` and `nbf` are checked with a small leeway; when an
//!   issuer or audience is configured, `iss` and `aud` are required too (RFC 8725 3.8, 3.9). A
//!   Cognito access token carries `client_id` instead of `aud`: it passes when its `client_id` is
//!   one of `SECURECART_JWT_CLIENT_IDS`. A `token_use` claim, when present, must be the
//!   configured one (`access`), so an ID token is not taken for an access token.
//! - Roles count only from our own namespaces (`securecart:admin`), or as plain names where
//!   allowed; another application's `billing:admin` or `wiki:admins` never makes an admin. The
//!   OAuth `scope` and Cognito's `cognito:groups` claims are read only when configured.
//! - The JWKS is cached, fetched again every `jwks_refresh_secs`, and on an unknown `kid` at
//!   most once per `jwks_min_refetch_secs`; a failed fetch keeps the last good keys.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value, json};
use tokio::sync::{Mutex, RwLock};

use super::identity::{Identity, Role};
use crate::config::{AuthSettings, DEV_JWT_SECRET};
use crate::domain::{GlobalId, NodeKind};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Hmac,
    Rsa,
    Ec,
}

fn family(alg: Algorithm) -> Family {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
        Algorithm::ES256 | Algorithm::ES384 => Family::Ec,
        _ => Family::Rsa,
    }
}

struct JwksKey {
    key: DecodingKey,
    family: Family,
    alg: Option<Algorithm>,
}

enum JwksSource {
    Url(String),
    File(PathBuf),
}

enum Keys {
    Secret(DecodingKey),
    Jwks {
        source: JwksSource,
        keys: RwLock<HashMap<String, Arc<JwksKey>>>,
        last_kid_refetch: Mutex<Option<Instant>>,
        http: reqwest::Client,
    },
}

struct Inner {
    keys: Keys,
    algorithms: Vec<Algorithm>,
    issuer: Option<String>,
    audience: Option<String>,
    client_ids: Vec<String>,
    token_use: String,
    role_namespaces: Vec<String>,
    plain_roles: bool,
    scope_roles: bool,
    cognito_groups: bool,
    leeway: u64,
    roles_claim: String,
    vendor_claim: String,
    min_refetch: Duration,
    /// Tokens verified already, with their identity, until they expire (see `Verifier::verify`).
    verified: std::sync::Mutex<HashMap<String, Identity>>,
}

/// Verified tokens kept at most; past it the whole cache starts over (a bound, not an LRU:
/// a flood of distinct valid tokens costs their verification, as without a cache).
const MAX_VERIFIED: usize = 10_000;

/// Verifies bearer tokens; cheap to clone.
#[derive(Clone)]
pub struct Verifier(Arc<Inner>);

impl Verifier {
    /// Builds the verifier from the settings. With a JWKS it fetches the keys once; a failure
    /// is logged and retried later (tokens are refused meanwhile) rather than stopping start-up.
    pub async fn new(auth: &AuthSettings) -> anyhow::Result<Self> {
        let jwks = match (&auth.jwks_url, &auth.jwks_file) {
            (Some(url), _) => Some(JwksSource::Url(url.clone())),
            (None, Some(path)) => Some(JwksSource::File(path.clone())),
            (None, None) => None,
        };
        let algorithms = match &auth.algorithms {
            Some(names) => names
                .iter()
                .map(|n| {
                    if n.eq_ignore_ascii_case("none") {
                        bail!("the JWT algorithm `none` is never accepted");
                    }
                    n.parse::<Algorithm>().map_err(|_| anyhow::anyhow!("unknown JWT algorithm `{n}`"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            None if jwks.is_some() => vec![Algorithm::RS256, Algorithm::ES256],
            None => vec![Algorithm::HS256],
        };
        if algorithms.is_empty() {
            bail!("SECURECART_JWT_ALGORITHMS is empty");
        }
        let symmetric = jwks.is_none();
        if let Some(bad) = algorithms.iter().find(|a| (family(**a) == Family::Hmac) != symmetric) {
            bail!(
                "JWT algorithm {bad:?} does not fit the configured keys ({})",
                if symmetric { "an HMAC secret" } else { "an asymmetric JWKS" }
            );
        }
        let keys = match jwks {
            None => {
                let secret = auth.jwt_secret.as_deref().unwrap_or(DEV_JWT_SECRET);
                if secret == DEV_JWT_SECRET {
                    tracing::warn!(
                        "USING THE DEVELOPMENT JWT SECRET: anyone can mint tokens. Set SECURECART_JWT_SECRET or SECURECART_JWKS_URL."
                    );
                }
                Keys::Secret(DecodingKey::from_secret(secret.as_bytes()))
            }
            Some(source) => Keys::Jwks {
                source,
                keys: RwLock::new(HashMap::new()),
                last_kid_refetch: Mutex::new(None),
                http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?,
            },
        };
        let verifier = Self(Arc::new(Inner {
            keys,
            algorithms,
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            client_ids: auth.client_ids.clone(),
            token_use: auth.token_use.clone(),
            role_namespaces: auth.role_namespaces.clone(),
            verified: Default::default(),
            plain_roles: auth.plain_roles,
            scope_roles: auth.scope_roles,
            cognito_groups: auth.cognito_groups,
            leeway: auth.leeway_secs,
            roles_claim: auth.roles_claim.clone(),
            vendor_claim: auth.vendor_claim.clone(),
            min_refetch: Duration::from_secs(auth.jwks_min_refetch_secs),
        }));
        if matches!(verifier.0.keys, Keys::Jwks { .. }) {
            if let Err(e) = verifier.refresh().await {
                tracing::error!(error = %format!("{e:#}"), "fetching the JWKS failed; tokens are refused until a fetch succeeds");
            }
            verifier.spawn_periodic_refresh(Duration::from_secs(auth.jwks_refresh_secs.max(1)));
        }
        Ok(verifier)
    }

    /// Fetches the JWKS again; on failure the previous keys stay. Returns how many keys it holds.
    pub async fn refresh(&self) -> anyhow::Result<usize> {
        let Keys::Jwks { source, keys, http, .. } = &self.0.keys else {
            return Ok(0);
        };
        let body = match source {
            JwksSource::Url(url) => {
                let response = http.get(url).send().await.with_context(|| format!("GET {url}"))?;
                if !response.status().is_success() {
                    bail!("GET {url}: HTTP {}", response.status());
                }
                response.bytes().await?.to_vec()
            }
            JwksSource::File(path) => {
                tokio::fs::read(path).await.with_context(|| format!("reading {}", path.display()))?
            }
        };
        let set: JwkSet = serde_json::from_slice(&body).context("parsing the JWKS")?;
        let mut fresh = HashMap::new();
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let Some(kid) = jwk.common.key_id.clone() else { continue };
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                // Never a shared secret or an unknown key type from a public key set.
                _ => continue,
            };
            let alg = jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok());
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    fresh.insert(kid, Arc::new(JwksKey { key, family, alg }));
                }
                Err(e) => tracing::warn!(kid = %kid, error = %e, "skipping an unusable JWKS key"),
            }
        }
        if fresh.is_empty() {
            bail!("the JWKS holds no usable signing keys");
        }
        let count = fresh.len();
        *keys.write().await = fresh;
        // A token verified with a key that is now gone must not pass from the cache.
        self.0.verified.lock().unwrap_or_else(|e| e.into_inner()).clear();
        tracing::info!(keys = count, "JWKS loaded");
        Ok(count)
    }

    fn spawn_periodic_refresh(&self, every: Duration) {
        // A weak reference: the task ends when the server (and its verifier) is gone.
        let weak: Weak<Inner> = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = Verifier(inner).refresh().await {
                    tracing::warn!(error = %format!("{e:#}"), "JWKS refresh failed; keeping the previous keys");
                }
            }
        });
    }

    async fn jwks_key(&self, kid: &str) -> Option<Arc<JwksKey>> {
        let Keys::Jwks { keys, last_kid_refetch, .. } = &self.0.keys else { return None };
        if let Some(key) = keys.read().await.get(kid) {
            return Some(key.clone());
        }
        // An unknown kid may be a rotated key: fetch again, but at most once per interval.
        {
            let mut last = last_kid_refetch.lock().await;
            if last.is_some_and(|t| t.elapsed() < self.0.min_refetch) {
                return None;
            }
            *last = Some(Instant::now());
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %format!("{e:#}"), "JWKS fetch for an unknown kid failed");
            }
        }
        keys.read().await.get(kid).cloned()
    }

    /// Verifies a token and maps its claims to an identity. The error is the reason a client
    /// sees with `UNAUTHENTICATED`.
    ///
    /// A token that verified is kept with its identity until its `exp` (at most
    /// `MAX_VERIFIED` of them), so a client's next requests cost a map lookup, not a signature
    /// check. Nothing about a token changes before it expires except its keys: a JWKS refresh
    /// that changes them empties the cache. Refusals are not kept.
    pub async fn verify(&self, token: &str) -> Result<Identity, String> {
        let now = chrono::Utc::now().timestamp();
        if let Some(identity) = self.0.verified.lock().unwrap_or_else(|e| e.into_inner()).get(token)
            && identity.expires_at > now
        {
            return Ok(identity.clone());
        }
        let identity = self.verify_signature(token).await?;
        let mut verified = self.0.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= MAX_VERIFIED {
            verified.retain(|_, i| i.expires_at > now);
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
        }
        verified.insert(token.to_string(), identity.clone());
        Ok(identity)
    }

    async fn verify_signature(&self, token: &str) -> Result<Identity, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token".to_string())?;
        if !self.0.algorithms.contains(&header.alg) {
            return Err(format!("token algorithm {:?} is not accepted", header.alg));
        }
        let key = match &self.0.keys {
            Keys::Secret(key) => key.clone(),
            Keys::Jwks { .. } => {
                let kid = header.kid.as_deref().ok_or("token has no key id (kid)")?;
                let key = self.jwks_key(kid).await.ok_or("token signed by an unknown key (kid)")?;
                if key.family != family(header.alg) || key.alg.is_some_and(|a| a != header.alg) {
                    return Err("token algorithm does not match its key".into());
                }
                key.key.clone()
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.0.leeway;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.0.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        // The audience (or Cognito's `client_id`) is checked below, where both are known.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&required);
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => "token expired".to_string(),
                ErrorKind::ImmatureSignature => "token not valid yet (nbf)".to_string(),
                ErrorKind::InvalidIssuer => "token issuer not accepted".to_string(),
                ErrorKind::InvalidAudience => "token audience not accepted".to_string(),
                ErrorKind::InvalidSignature => "token signature invalid".to_string(),
                ErrorKind::MissingRequiredClaim(c) => format!("token has no `{c}` claim"),
                ErrorKind::InvalidAlgorithm => "token algorithm does not match its key".to_string(),
                _ => "malformed token".to_string(),
            })?;
        self.check_audience(&data.claims)?;
        if let Some(token_use) = data.claims.get("token_use")
            && token_use.as_str() != Some(self.0.token_use.as_str())
        {
            return Err(format!("token_use {token_use} is not accepted; send an {} token", self.0.token_use));
        }
        self.identity(&data.claims)
    }

    /// With an audience configured, a token's `aud` must name it. A token without `aud` (a
    /// Cognito access token) passes when its `client_id` is one of the configured client ids; a
    /// token whose `aud` names another API never does, whatever its `client_id` (RFC 9068 access
    /// tokens carry both). Without an audience or client ids, any audience passes.
    fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), String> {
        let (audience, client_ids) = (&self.0.audience, &self.0.client_ids);
        if audience.is_none() && client_ids.is_empty() {
            return Ok(());
        }
        let aud_ok = audience.as_ref().is_some_and(|want| match claims.get("aud") {
            Some(Value::String(a)) => a == want,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want.as_str())),
            _ => false,
        });
        if claims.contains_key("aud") {
            return if aud_ok { Ok(()) } else { Err("token audience not accepted".into()) };
        }
        match claims.get("client_id").and_then(Value::as_str) {
            Some(c) if client_ids.iter().any(|id| id == c) => Ok(()),
            Some(_) => Err("token audience not accepted".into()),
            None if audience.is_some() => Err("token has no `aud` claim".into()),
            None => Err("token has no `client_id` claim".into()),
        }
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, String> {
        let subject = claims.get("sub").and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 255);
        let subject = subject.ok_or("token has no usable `sub` claim")?.to_string();
        let mut roles = Vec::new();
        let namespaces = &self.0.role_namespaces;
        let mut add = |value: Option<&Value>, split_spaces: bool, plain: bool| {
            let mut one = |r: &str| roles.extend(Role::parse_trusted(r, namespaces, plain));
            match value {
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(&mut one),
                Some(Value::String(s)) if split_spaces => s.split_whitespace().for_each(&mut one),
                Some(Value::String(s)) => one(s),
                _ => {}
            }
        };
        add(claims.get(&self.0.roles_claim), true, self.0.plain_roles);
        if self.0.cognito_groups {
            // A user pool's groups may serve several applications: read only when configured.
            add(claims.get("cognito:groups"), false, self.0.plain_roles);
        }
        if self.0.scope_roles {
            // OAuth scopes are permissions of any API (`email`, `openid`): namespaced ones only.
            add(claims.get("scope"), true, false);
        }
        roles.sort_by_key(|r| r.as_str());
        roles.dedup();
        let vendor_id = match claims.get(&self.0.vendor_claim) {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse().ok().or_else(|| GlobalId::decode_as(s, NodeKind::Vendor)),
            _ => None,
        };
        let expires_at = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        Ok(Identity { subject, roles, vendor_id, expires_at })
    }
}

/// Mints an HS256 development token (what `securecart token` prints).
pub fn issue_dev_token(
    auth: &AuthSettings,
    subject: &str,
    roles: &[Role],
    vendor: Option<&str>,
    ttl: Duration,
) -> anyhow::Result<String> {
    if auth.jwks_url.is_some() || auth.jwks_file.is_some() {
        bail!("tokens are issued by the identity provider when a JWKS is configured");
    }
    let secret = auth.jwt_secret.as_deref().unwrap_or(DEV_JWT_SECRET);
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "sub": subject,
        "roles": roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "iat": now,
        "exp": now + ttl.as_secs() as i64,
    });
    if let Some(vendor) = vendor {
        claims[&auth.vendor_claim] = json!(vendor);
    }
    if let Some(iss) = &auth.issuer {
        claims["iss"] = json!(iss);
    }
    if let Some(aud) = &auth.audience {
        claims["aud"] = json!(aud);
    }
    Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dev_tokens_round_trip_with_roles_and_vendor() {
        let auth = AuthSettings::default();
        let token = issue_dev_token(&auth, "vera", &[Role::Vendor], Some("7"), Duration::from_secs(60)).unwrap();
        let identity = Verifier::new(&auth).await.unwrap().verify(&token).await.unwrap();
        assert_eq!(identity.subject, "vera");
        assert_eq!(identity.roles, vec![Role::Vendor]);
        assert_eq!(identity.vendor_id, Some(7));
    }

    #[tokio::test]
    async fn roles_come_from_the_claim_cognito_groups_and_scope() {
        let auth = AuthSettings { scope_roles: true, cognito_groups: true, ..Default::default() };
        let verifier = Verifier::new(&auth).await.unwrap();
        let claims = json!({ "sub": "x", "roles": "customer openid", "cognito:groups": ["Admins"], "scope": "securecart:vendor email admin" });
        let identity = verifier.identity(claims.as_object().unwrap()).unwrap();
        assert_eq!(identity.roles, vec![Role::Admin, Role::Customer, Role::Vendor]);
        let default = Verifier::new(&AuthSettings::default()).await.unwrap();
        let identity = default.identity(claims.as_object().unwrap()).unwrap();
        assert_eq!(identity.roles, vec![Role::Customer], "neither scope nor cognito:groups is read by default");
    }

    #[tokio::test]
    async fn hmac_is_refused_with_a_jwks_and_none_always() {
        let auth = AuthSettings {
            jwks_file: Some("/nonexistent".into()),
            algorithms: Some(vec!["HS256".into()]),
            ..Default::default()
        };
        assert!(Verifier::new(&auth).await.is_err());
        let auth = AuthSettings { algorithms: Some(vec!["none".into()]), ..Default::default() };
        assert!(Verifier::new(&auth).await.is_err());
    }
}
