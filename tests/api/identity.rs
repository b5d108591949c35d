//! Token verification: the attack suite, JWKS rotation, and production introspection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use securecart::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, first_error_code, spawn_app_with, token};

const ISSUER: &str = "https://idp.test/";
const AUDIENCE: &str = "securecart-api";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn rsa_key(n: u8) -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture(&format!("rsa-{n}.pem"))).unwrap()
}

fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk
}

/// A JWKS endpoint on loopback whose keys a test can swap, counting fetches.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Result<JwkSet, StatusCode>>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: Vec<Jwk>) -> Self {
        let state = (Arc::new(Mutex::new(Ok(JwkSet { keys }))), Arc::new(AtomicUsize::new(0)));
        type S = (Arc<Mutex<Result<JwkSet, StatusCode>>>, Arc<AtomicUsize>);
        async fn serve(State((keys, hits)): State<S>) -> Result<Json<JwkSet>, StatusCode> {
            hits.fetch_add(1, Ordering::SeqCst);
            keys.lock().unwrap().clone().map(Json)
        }
        let router = axum::Router::new().route("/jwks.json", get(serve)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, keys: state.0, hits: state.1 }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> Value {
    json!({ "sub": "alice", "roles": ["customer"], "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 600 })
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

async fn jwks_app(jwks: &JwksServer, min_refetch_secs: u64) -> TestApp {
    let url = jwks.url.clone();
    spawn_app_with(Backend::Sqlite, move |s| {
        s.auth.jwks_url = Some(url);
        s.auth.issuer = Some(ISSUER.into());
        s.auth.audience = Some(AUDIENCE.into());
        s.auth.jwks_min_refetch_secs = min_refetch_secs;
    })
    .await
    .unwrap()
}

async fn me(app: &TestApp, authorization: &str) -> Value {
    let r = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("authorization", authorization)
        .json(&json!({ "query": "{ me { subject roles } products(first: 1) { edges { cursor } } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Every forged, stale or malformed token is refused with UNAUTHENTICATED.
#[tokio::test]
async fn attack_tokens_are_refused() {
    let rsa1 = rsa_key(1);
    let ec = EncodingKey::from_ec_pem(&fixture("ec-1.pem")).unwrap();
    let jwks = JwksServer::start(vec![jwk(&rsa1, Algorithm::RS256, "k1"), jwk(&ec, Algorithm::ES256, "e1")]).await;
    let app = jwks_app(&jwks, 60).await;
    app.seed(3, 1).await;

    // The controls: a good RS256 and a good ES256 token are accepted.
    for good in
        [sign(Algorithm::RS256, Some("k1"), &claims(), &rsa1), sign(Algorithm::ES256, Some("e1"), &claims(), &ec)]
    {
        let body = me(&app, &format!("Bearer {good}")).await;
        assert_eq!(body["data"]["me"]["subject"], "alice", "{body}");
        assert_eq!(body["data"]["me"]["roles"], json!(["CUSTOMER"]));
    }

    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let good = sign(Algorithm::RS256, Some("k1"), &claims(), &rsa1);
    let parts: Vec<&str> = good.split('.').collect();
    let with = |k: &str, v: Value| {
        let mut c = claims();
        c[k] = v;
        c
    };
    let mut no_sub = claims();
    no_sub.as_object_mut().unwrap().remove("sub");
    let public_pem = fixture("rsa-1.pub.pem");
    let attacks: Vec<(&str, String)> = vec![
        ("alg none", format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "JWT", "kid": "k1" })), b64(&claims()))),
        (
            "HS256 signed with the RSA public key",
            sign(Algorithm::HS256, Some("k1"), &claims(), &EncodingKey::from_secret(&public_pem)),
        ),
        ("expired", sign(Algorithm::RS256, Some("k1"), &with("exp", json!(now() - 3600)), &rsa1)),
        ("nbf in the future", sign(Algorithm::RS256, Some("k1"), &with("nbf", json!(now() + 3600)), &rsa1)),
        ("wrong issuer", sign(Algorithm::RS256, Some("k1"), &with("iss", json!("https://evil.test/")), &rsa1)),
        ("wrong audience", sign(Algorithm::RS256, Some("k1"), &with("aud", json!("another-api")), &rsa1)),
        ("tampered payload", format!("{}.{}.{}", parts[0], b64(&with("roles", json!(["admin"]))), parts[2])),
        ("unknown kid", sign(Algorithm::RS256, Some("k-unknown"), &claims(), &rsa_key(2))),
        ("no kid", sign(Algorithm::RS256, None, &claims(), &rsa1)),
        ("RS256 header on the EC key", sign(Algorithm::RS256, Some("e1"), &claims(), &rsa1)),
        ("missing sub", sign(Algorithm::RS256, Some("k1"), &no_sub, &rsa1)),
        ("garbage header", format!("!!!.{}.{}", parts[1], parts[2])),
        ("not a JWT", "garbage".into()),
    ];
    for (name, token) in attacks {
        let body = me(&app, &format!("Bearer {token}")).await;
        assert_eq!(first_error_code(&body), "UNAUTHENTICATED", "{name}: {body}");
        // `me` is non-null (`Viewer!`): its error makes `data` null, as the spec says, even
        // though the public `products` in the same request resolved.
        assert_eq!(body["data"], Value::Null, "{name}: {body}");
        assert_eq!(body["errors"].as_array().map(Vec::len), Some(1), "{name}: {body}");
    }
    let body = me(&app, "Basic YWxpY2U6c2VjcmV0").await;
    assert_eq!(first_error_code(&body), "UNAUTHENTICATED");
}

/// A rotated key is picked up without a restart; unknown kids cannot
/// make the server fetch more than once per interval.
#[tokio::test]
async fn jwks_rotation_is_picked_up_without_restart() {
    let (rsa1, rsa2) = (rsa_key(1), rsa_key(2));
    let jwks = JwksServer::start(vec![jwk(&rsa1, Algorithm::RS256, "k1")]).await;
    let app = jwks_app(&jwks, 60).await;
    assert_eq!(jwks.hits(), 1, "fetched once at start-up");
    let old = sign(Algorithm::RS256, Some("k1"), &claims(), &rsa1);
    assert_eq!(me(&app, &format!("Bearer {old}")).await["data"]["me"]["subject"], "alice");

    // The identity provider rotates: k2 replaces k1.
    *jwks.keys.lock().unwrap() = Ok(JwkSet { keys: vec![jwk(&rsa2, Algorithm::RS256, "k2")] });
    let new = sign(Algorithm::RS256, Some("k2"), &claims(), &rsa2);
    let body = me(&app, &format!("Bearer {new}")).await;
    assert_eq!(body["data"]["me"]["subject"], "alice", "new kid accepted: {body}");
    assert_eq!(jwks.hits(), 2, "one fetch for the unknown kid");
    let body = me(&app, &format!("Bearer {old}")).await;
    assert_eq!(first_error_code(&body), "UNAUTHENTICATED", "the retired key is gone");

    // Forged kids within the interval do not reach the identity provider.
    for i in 0..5 {
        let forged = sign(Algorithm::RS256, Some(&format!("forged-{i}")), &claims(), &rsa2);
        assert_eq!(first_error_code(&me(&app, &format!("Bearer {forged}")).await), "UNAUTHENTICATED");
    }
    assert_eq!(jwks.hits(), 2, "rate-limited");
}

#[tokio::test]
async fn a_failed_jwks_fetch_keeps_the_last_good_keys() {
    let rsa1 = rsa_key(1);
    let jwks = JwksServer::start(vec![jwk(&rsa1, Algorithm::RS256, "k1")]).await;
    let app = jwks_app(&jwks, 0).await;
    *jwks.keys.lock().unwrap() = Err(StatusCode::INTERNAL_SERVER_ERROR);
    // An unknown kid makes the server fetch; the fetch fails...
    let unknown = sign(Algorithm::RS256, Some("k9"), &claims(), &rsa1);
    assert_eq!(first_error_code(&me(&app, &format!("Bearer {unknown}")).await), "UNAUTHENTICATED");
    assert_eq!(jwks.hits(), 2);
    // ...and the keys it had still verify tokens.
    let good = sign(Algorithm::RS256, Some("k1"), &claims(), &rsa1);
    assert_eq!(me(&app, &format!("Bearer {good}")).await["data"]["me"]["subject"], "alice");
}

#[tokio::test]
async fn production_hides_the_schema_from_non_admins() {
    let secret = "a-production-secret-of-at-least-32-bytes!";
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.environment = securecart::config::Environment::Production;
        s.auth.jwt_secret = Some(secret.into());
        s.database.auto_migrate = Some(true);
    })
    .await
    .unwrap();
    app.seed(2, 1).await;
    let auth = securecart::config::AuthSettings { jwt_secret: Some(secret.into()), ..Default::default() };
    let mint = |roles: &[Role]| {
        securecart::auth::jwt::issue_dev_token(&auth, "ops", roles, None, std::time::Duration::from_secs(60)).unwrap()
    };
    let introspect = "{ __schema { queryType { name } } }";
    let body = app.graphql(introspect, json!({})).await;
    assert_eq!(first_error_code(&body), "INTROSPECTION_DISABLED", "anonymous: {body}");
    let body = app.graphql_as(&mint(&[Role::Customer]), introspect, json!({})).await;
    assert_eq!(first_error_code(&body), "INTROSPECTION_DISABLED", "customer: {body}");
    let sneaky = "query { ...F } fragment F on QueryRoot { ... on QueryRoot { __type(name: \"Product\") { name } } }";
    let body = app.graphql(sneaky, json!({})).await;
    assert_eq!(first_error_code(&body), "INTROSPECTION_DISABLED", "through fragments: {body}");
    // Normal queries still run for the same caller.
    let body = app.graphql("{ products(first: 1) { edges { cursor } } }", json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let body = app.graphql_as(&mint(&[Role::Admin]), introspect, json!({})).await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "QueryRoot", "admin: {body}");
    // No "Did you mean" hints in production.
    let (_, body) = app.post_json(&json!({ "query": "{ prodcts { totalCount } }" })).await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(!message.contains("Did you mean"), "{message}");
    // Development tokens signed with the development secret are not accepted here.
    let body = app.graphql_as(&token("ops", &[Role::Admin], None), "{ me { subject } }", json!({})).await;
    assert_eq!(first_error_code(&body), "UNAUTHENTICATED");
}

/// A verified token is served from the verifier's cache on the next requests, and refused once
/// it expires all the same (polled, with a deadline: the expiry is the token's, 2 s out).
#[tokio::test]
async fn a_cached_token_is_refused_once_it_expires() {
    let Some(app) = crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, |s| s.auth.leeway_secs = 0).await
    else {
        return;
    };
    let exp = chrono::Utc::now().timestamp() + 2;
    let claims = json!({ "sub": "alice", "roles": ["customer"], "exp": exp });
    let key = EncodingKey::from_secret(securecart::config::DEV_JWT_SECRET.as_bytes());
    let token = jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap();
    for _ in 0..3 {
        assert_eq!(me(&app, &format!("Bearer {token}")).await["data"]["me"]["subject"], "alice");
    }
    let started = std::time::Instant::now();
    loop {
        let body = me(&app, &format!("Bearer {token}")).await;
        if body["data"].is_null() {
            assert_eq!(first_error_code(&body), "UNAUTHENTICATED", "{body}");
            assert!(chrono::Utc::now().timestamp() >= exp, "refused only once expired");
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the expired token still passes: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
