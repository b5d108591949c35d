//! The attack suite: each test replays a request an outside attack used to get in, to get more
//! than it paid for, or to bring the server down, and asserts the hole stays closed. Where
//! storage matters the test runs on SQLite and PostgreSQL.

use std::time::Duration;

use securecart::auth::Role;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::gateway::FakeGateway;
use crate::helpers::{Backend, TestApp, first_error_code, for_each_backend, spawn_app_with, token};
use crate::websocket::{connect, next, send};

for_each_backend!(
    mixed_currencies_never_reach_the_charge,
    a_changed_price_is_shown_and_never_charged_unseen,
    nul_bytes_are_refused_as_input
);

/// A token signed with the development secret carrying exactly `claims`.
fn signed(claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(securecart::config::DEV_JWT_SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

fn exp() -> i64 {
    chrono::Utc::now().timestamp() + 600
}

async fn post(app: &TestApp, body: Value, tok: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app.client.post(format!("{}/graphql", app.address)).json(&body);
    if let Some(t) = tok {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

const ME: &str = "{ me { subject roles } }";

/// Finding 1: with an issuer and audience configured, a token without `iss` or `aud` is
/// refused; a Cognito access token passes by its `client_id`, an ID token does not.
#[tokio::test]
async fn issuer_and_audience_are_required_when_configured() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.issuer = Some("https://idp.example".into());
        s.auth.audience = Some("securecart-api".into());
        s.auth.client_ids = vec!["cognito-app-client".into()];
    })
    .await
    .unwrap();
    let cases = [
        (json!({ "sub": "a", "exp": exp(), "aud": "securecart-api" }), Some("iss")),
        (json!({ "sub": "a", "exp": exp(), "iss": "https://idp.example" }), Some("aud")),
        (json!({ "sub": "a", "exp": exp(), "iss": "https://idp.example", "aud": "other-api" }), Some("audience")),
        (json!({ "sub": "a", "exp": exp(), "iss": "https://idp.example", "aud": "securecart-api" }), None),
        (
            json!({ "sub": "a", "exp": exp(), "iss": "https://idp.example", "client_id": "cognito-app-client", "token_use": "access" }),
            None,
        ),
        (
            json!({ "sub": "a", "exp": exp(), "iss": "https://idp.example", "client_id": "someone-else" }),
            Some("audience"),
        ),
        (
            json!({ "sub": "a", "exp": exp(), "iss": "https://idp.example", "aud": "securecart-api", "token_use": "id" }),
            Some("token_use"),
        ),
    ];
    for (claims, refused) in cases {
        let (_, _, body) = post(&app, json!({ "query": ME }), Some(&signed(claims.clone()))).await;
        match refused {
            Some(why) => {
                assert_eq!(first_error_code(&body), "UNAUTHENTICATED", "{claims}: {body}");
                assert!(body["errors"][0]["message"].as_str().unwrap().contains(why), "{claims}: {body}");
            }
            None => assert_eq!(body["data"]["me"]["subject"], "a", "{claims}: {body}"),
        }
    }
}

/// Finding 2: wrapping the selection in fragments changes nothing; a list that is not a
/// connection (`Order.lines`) is costed by its bound, not as one item.
#[tokio::test]
async fn fragments_and_bounded_lists_are_costed_in_full() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    app.seed(20, 2).await;
    let hidden = "{ products(first: 100) { ... on ProductConnection { nodes { vendor { products(first: 100) { \
                  ... on ProductConnection { nodes { name price { amount } } } } } } } } }";
    let (_, _, body) = post(&app, json!({ "query": hidden }), None).await;
    assert_eq!(first_error_code(&body), "MAX_COMPLEXITY_EXCEEDED", "{body}");
    let lines = "{ orders(first: 100) { edges { node { lines { product { vendor { products(first: 100) { \
                 nodes { name } } } } } } } } }";
    let (_, _, body) = post(&app, json!({ "query": lines }), Some(&token("root", &[Role::Admin], None))).await;
    assert_eq!(first_error_code(&body), "MAX_COMPLEXITY_EXCEEDED", "20 lines an order: {body}");
    // A fragment spread three times within itself at a mutation's root: measured once, refused
    // at once (3^32 walks otherwise).
    let bomb = "mutation { ...A } fragment A on MutationRoot { ...A ...A ...A }";
    let answered = tokio::time::timeout(Duration::from_secs(10), post(&app, json!({ "query": bomb }), None)).await;
    assert_eq!(first_error_code(&answered.expect("answered at once").2), "FRAGMENT_CYCLE");
}

/// Finding 3: a document is registered as a persisted query only once it passed every limit;
/// the cache holds a bounded number of bytes.
#[tokio::test]
async fn persisted_queries_are_stored_only_after_the_limits_and_within_a_byte_cap() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.security.persisted_queries_max_bytes = 200).await.unwrap();
    let hash_only = |hash: &str| json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } });
    let register = |q: &str| json!({ "query": q, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": securecart::graphql::persisted::sha256_hex(q) } } });
    // Over the size limit, and invalid: refused, and never stored.
    let huge = format!("{{ {} }}", "__typename ".repeat(30_000));
    let invalid = "{ noSuchField }";
    for (query, code) in [(huge.as_str(), "QUERY_TOO_LARGE"), (invalid, "GRAPHQL_VALIDATION_FAILED")] {
        let (_, _, body) = post(&app, register(query), None).await;
        assert_eq!(first_error_code(&body), code);
        let (_, _, body) = post(&app, hash_only(&securecart::graphql::persisted::sha256_hex(query)), None).await;
        assert_eq!(first_error_code(&body), "PERSISTED_QUERY_NOT_FOUND", "{code}: {body}");
    }
    // A valid one is stored; three of ~80 bytes overflow the 200-byte cap, the oldest goes.
    let queries: Vec<String> = (0..3)
        .map(|i| format!("query Q{i} {{ a: __typename b: __typename c: __typename d: __typename e{i}: __typename }}"))
        .collect();
    for q in &queries {
        let (_, _, body) = post(&app, register(q), None).await;
        assert!(body.get("errors").is_none(), "{body}");
    }
    let (_, _, body) = post(&app, hash_only(&securecart::graphql::persisted::sha256_hex(&queries[0])), None).await;
    assert_eq!(first_error_code(&body), "PERSISTED_QUERY_NOT_FOUND", "the oldest was dropped: {body}");
    let (_, _, body) = post(&app, hash_only(&securecart::graphql::persisted::sha256_hex(&queries[2])), None).await;
    assert_eq!(body["data"]["a"], "QueryRoot", "{body}");
}

/// Finding 4: a WebSocket does not outlive its token: an operation after `exp` is refused,
/// and the connection closes with 4403.
#[tokio::test]
async fn a_websocket_closes_when_its_token_expires() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    let short = signed(json!({ "sub": "alice", "roles": ["customer"], "exp": chrono::Utc::now().timestamp() + 2 }));
    let mut ws = connect(&app, "graphql-transport-ws").await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {short}") } }))
        .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    send(&mut ws, json!({ "id": "1", "type": "subscribe", "payload": { "query": ME } })).await;
    assert_eq!(next(&mut ws).await.unwrap()["payload"]["data"]["me"]["subject"], "alice", "alive before expiry");
    // Ask again until the server's clock passes `exp`: a wait on the condition, not a sleep.
    let started = std::time::Instant::now();
    let mut refused_or_closed = None;
    for id in 2.. {
        assert!(started.elapsed() < Duration::from_secs(10), "still served 8 s after the token expired");
        let key = id.to_string();
        send(&mut ws, json!({ "id": key, "type": "subscribe", "payload": { "query": ME } })).await;
        // Each answer is `next` then `complete`; only the `next` of this id tells anything.
        let answer = loop {
            match next(&mut ws).await {
                Ok(m) if m["type"] != "next" || m["id"] != key.as_str() => continue,
                other => break other,
            }
        };
        match answer {
            Ok(m) if m["payload"]["data"]["me"]["subject"] == "alice" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(m) => {
                assert_eq!(first_error_code(&m["payload"]), "UNAUTHENTICATED", "{m}");
                refused_or_closed = Some(0);
                // The refusal is followed by the close.
                for _ in 0..3 {
                    if let Err(code) = next(&mut ws).await {
                        refused_or_closed = Some(code);
                        break;
                    }
                }
                break;
            }
            Err(code) => {
                refused_or_closed = Some(code);
                break;
            }
        }
    }
    assert_eq!(refused_or_closed, Some(4403), "the connection closes with 4403 after the token expires");
}

/// Finding 5: no header skips the anonymous rate limit; callers with a verified token have a
/// request-rate limit of their own (`{ __typename }` costs nothing, so budgets do not stop it).
#[tokio::test]
async fn rate_limits_cannot_be_skipped_with_a_header() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        (s.rate_limit.anonymous_per_second, s.rate_limit.anonymous_burst) = (Some(1), Some(3));
        (s.rate_limit.user_per_second, s.rate_limit.user_burst) = (1, 5);
    })
    .await
    .unwrap();
    let free = json!({ "query": "{ __typename }" });
    for header in ["Bearer not-a-token", "x", "Basic YTpi"] {
        let mut throttled = 0;
        for _ in 0..6 {
            let r = app.client.post(format!("{}/graphql", app.address)).header("authorization", header).json(&free);
            throttled += usize::from(r.send().await.unwrap().status() == 429);
        }
        assert!(throttled >= 2, "`Authorization: {header}` is limited like no header: {throttled} of 6 throttled");
    }
    let alice = token("alice", &[Role::Customer], None);
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(post(&app, free.clone(), Some(&alice)).await.0);
    }
    // A burst of 5, then one a second: however slowly the 10 go, most of the rest are refused.
    assert!(statuses[..5].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        statuses[5..].iter().filter(|s| **s == 429).count() >= 3,
        "a verified caller is rate-limited: {statuses:?}"
    );
    let (status, _, _) = post(&app, free, Some(&token("bob", &[Role::Customer], None))).await;
    assert_eq!(status, 200, "another subject has its own allowance");
}

/// Finding 6: slow headers and slow bodies are cut off within their timeouts; a declared body
/// over the limit is answered 413 at once; connections per address are capped.
#[tokio::test]
async fn slow_clients_and_connection_floods_are_cut_off() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.header_timeout_secs = 1;
        s.server.body_timeout_secs = 1;
        s.server.max_connections_per_ip = 4;
    })
    .await
    .unwrap();
    let addr = app.address.trim_start_matches("http://").to_string();
    // Headers, one line a while: the server hangs up.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            // The attack's own pace (a header line every 300 ms), not a wait for the server.
            tokio::time::sleep(Duration::from_millis(300)).await;
            if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
                return;
            }
            let mut buf = [0u8; 256];
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(10), slow.read(&mut buf)).await {
                return;
            }
        }
    });
    assert!(cut.await.is_ok(), "slow headers are cut off");
    // A body, one byte a while: 408.
    let mut dribble = TcpStream::connect(&addr).await.unwrap();
    let head = "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    dribble.write_all(head.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = vec![0u8; 4096];
        loop {
            let _ = dribble.write_all(b" ").await;
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), dribble.read(&mut buf)).await {
                return String::from_utf8_lossy(&buf[..n]).to_string();
            }
        }
    })
    .await
    .expect("an answer to the slow body");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
    // A huge declared length: 413 without sending a byte of body.
    let mut liar = TcpStream::connect(&addr).await.unwrap();
    let head =
        "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n";
    liar.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n =
        tokio::time::timeout(Duration::from_secs(5), liar.read(&mut buf)).await.expect("an answer at once").unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // More connections than an address may hold: the extra ones are closed at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let n = c.read(&mut buf).await.unwrap();
        assert!(n > 0);
        held.push(c);
    }
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let n =
        tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf)).await.expect("closed at once").unwrap_or(0);
    assert_eq!(n, 0, "the fifth connection from one address is closed");
    drop(held);
}

/// Sends `GET /healthz` on `conn` and reads its whole answer (head and `Content-Length` body).
async fn healthz_on(conn: &mut TcpStream) -> String {
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("the connection is open");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let whole = |a: &[u8]| {
        let text = String::from_utf8_lossy(a);
        let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
        let length = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>()))
            .and_then(Result::ok);
        length.is_some_and(|n| body.len() >= n)
    };
    while !whole(&answer) {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await.expect("an answer").unwrap();
        assert!(n > 0, "closed mid-answer: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// A kept-alive connection is not closed for being idle longer than the header timeout (a load
/// balancer or client pool that reuses it would have requests fail in flight), only once the
/// idle timeout has passed since the last answer, and sending a head slowly does not extend that.
#[tokio::test]
async fn kept_alive_connections_last_the_idle_timeout() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.header_timeout_secs = 1;
        s.server.idle_timeout_secs = 8;
    })
    .await
    .unwrap();
    let addr = app.address.trim_start_matches("http://").to_string();
    // Idle, then closed: from the second answer, not before the idle timeout.
    let idle = async {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        assert!(healthz_on(&mut conn).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let answer = healthz_on(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "reused after twice the header timeout: {answer}");
        let since = std::time::Instant::now();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(20), conn.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed when idle too long: {read:?}");
        assert!(since.elapsed() >= Duration::from_secs(5), "by the idle timeout, not sooner: {:?}", since.elapsed());
    };
    // A head trickled after an answer: closed by the same bound, not kept open by the trickle.
    let trickle = async {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        assert!(healthz_on(&mut conn).await.starts_with("HTTP/1.1 200"));
        let since = std::time::Instant::now();
        conn.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        let closed = loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if since.elapsed() > Duration::from_secs(20) {
                break false;
            }
            if conn.write_all(b"X-Slow: 1\r\n").await.is_err() {
                break true;
            }
            let mut buf = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(10), conn.read(&mut buf)).await {
                break true;
            }
        };
        assert!(closed, "a trickled head is cut off");
        assert!(since.elapsed() >= Duration::from_secs(5), "by the idle timeout: {:?}", since.elapsed());
    };
    tokio::join!(idle, trickle);
}

/// Finding 7: roles from other applications' namespaces are not ours; `scope` is not read.
#[tokio::test]
async fn foreign_roles_grant_nothing() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    let create = "mutation { createVendor(input: { name: \"Evil\" }) { vendor { id } } }";
    for claims in [
        json!({ "sub": "m", "exp": exp(), "scope": "billing:admin" }),
        json!({ "sub": "m", "exp": exp(), "scope": "securecart:admin" }),
        json!({ "sub": "m", "exp": exp(), "cognito:groups": ["wiki:admins"] }),
        json!({ "sub": "m", "exp": exp(), "cognito:groups": ["admin"] }),
        json!({ "sub": "m", "exp": exp(), "roles": ["https://other-app.example/admin"] }),
        json!({ "sub": "m", "exp": exp(), "roles": ["billing:admin"] }),
    ] {
        let tok = signed(claims.clone());
        let (_, _, body) = post(&app, json!({ "query": ME }), Some(&tok)).await;
        assert_eq!(body["data"]["me"]["roles"], json!([]), "{claims}: {body}");
        let (_, _, body) = post(&app, json!({ "query": create }), Some(&tok)).await;
        assert_eq!(first_error_code(&body), "FORBIDDEN", "{claims}: {body}");
    }
    let ours = signed(json!({ "sub": "m", "exp": exp(), "roles": ["securecart:admin"] }));
    let (_, _, body) = post(&app, json!({ "query": ME }), Some(&ours)).await;
    assert_eq!(body["data"]["me"]["roles"], json!(["ADMIN"]), "{body}");
}

/// Finding 8: every `/api/...` route works, and no framework text reaches a client.
#[tokio::test]
async fn unversioned_rest_routes_answer() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    app.seed(3, 1).await;
    let id = securecart::domain::GlobalId::new(securecart::domain::NodeKind::Product, 1).encode();
    let r = app.client.get(format!("{}/api/products/{id}", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["api-version"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], id.as_str());
    let r = app.client.get(format!("{}/api/products/{id}?version=2", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["price"]["currencyCode"], "USD", "v2's representation: {body}");
    for path in ["/api/orders/xyz/lines", "/api/products/%00", "/v1/products/%FF%FE"] {
        let r = app.client.get(format!("{}{path}", app.address)).send().await.unwrap();
        assert_ne!(r.status(), 500, "{path}");
        let text = r.text().await.unwrap();
        assert!(!text.contains("path argument") && !text.contains("Wrong number"), "{path}: {text}");
    }
}

async fn commerce_app(backend: Backend) -> Option<(TestApp, FakeGateway, String)> {
    let gateway = FakeGateway::start().await;
    let url = gateway.url.clone();
    let app = spawn_app_with(backend, move |s| s.payment.url = Some(url)).await?;
    app.seed(2, 1).await;
    let vendor = token("vendor-1", &[Role::Vendor], Some("1"));
    Some((app, gateway, vendor))
}

fn checkout_input(key: &str, expected: Option<(&str, &str)>) -> Value {
    let mut input = json!({ "idempotencyKey": key, "paymentToken": "tok_visa", "shippingAddress": {
        "name": "Ada", "line1": "1 Main St", "city": "Lyon", "postalCode": "69001", "country": "FR" } });
    if let Some((amount, currency)) = expected {
        input["expectedTotal"] = json!({ "amount": amount, "currencyCode": currency });
    }
    json!({ "input": input })
}

const CHECKOUT: &str =
    "mutation($input: CheckoutInput!) { checkout(input: $input) { order { id } userErrors { code field message } } }";
const CART: &str = "{ cart { subtotal { amount currencyCode } lines { priceChanged addedUnitPrice { amount } unitPrice { amount currencyCode } } } }";

fn product(n: i64) -> String {
    securecart::domain::GlobalId::new(securecart::domain::NodeKind::Product, n).encode()
}

async fn add(app: &TestApp, customer: &str, id: &str) {
    let body = app
        .graphql_as(
            customer,
            "mutation($p: ID!) { addCartItem(productId: $p, quantity: 1) { userErrors { code } } }",
            json!({ "p": id }),
        )
        .await;
    assert_eq!(body["data"]["addCartItem"]["userErrors"], json!([]), "{body}");
}

async fn set_stock(app: &TestApp, vendor: &str, id: &str) {
    let body = app
        .graphql_as(vendor, "mutation($p: ID!) { adjustInventory(productId: $p, delta: 50, idempotencyKey: \"stock\") { userErrors { code } } }", json!({ "p": id }))
        .await;
    assert_eq!(body["data"]["adjustInventory"]["userErrors"], json!([]), "{body}");
}

async fn reprice(app: &TestApp, vendor: &str, id: &str, amount: &str, currency: &str) {
    let body = app
        .graphql_as(
            vendor,
            "mutation($p: ID!, $m: MoneyInput!) { updateProduct(id: $p, input: { price: $m }) { userErrors { code } } }",
            json!({ "p": id, "m": { "amount": amount, "currencyCode": currency } }),
        )
        .await;
    assert_eq!(body["data"]["updateProduct"]["userErrors"], json!([]), "{body}");
}

/// Finding 9: a vendor switching a product's currency while it sits in carts cannot make a
/// checkout charge a sum of two currencies.
async fn mixed_currencies_never_reach_the_charge(backend: Backend) {
    let Some((app, gateway, vendor)) = commerce_app(backend).await else { return };
    let customer = token("carol", &[Role::Customer], None);
    for n in [1, 2] {
        set_stock(&app, &vendor, &product(n)).await;
        add(&app, &customer, &product(n)).await;
    }
    reprice(&app, &vendor, &product(2), "10.00", "EUR").await;
    let cart = app.graphql_as(&customer, CART, json!({})).await;
    assert_eq!(cart["data"]["cart"]["subtotal"], Value::Null, "no single-currency subtotal: {cart}");
    let body = app.graphql_as(&customer, CHECKOUT, checkout_input("mixed", None)).await;
    let errors = &body["data"]["checkout"]["userErrors"];
    assert_eq!(errors[0]["code"], "CURRENCY_MISMATCH", "{body}");
    assert_eq!(gateway.ledger.lock().unwrap().requests, 0, "nothing was sent to the gateway");
}

/// Finding 10: a price raised after add-to-cart shows in the cart, and a checkout with the
/// total the customer saw is refused instead of charging the new one.
async fn a_changed_price_is_shown_and_never_charged_unseen(backend: Backend) {
    let Some((app, gateway, vendor)) = commerce_app(backend).await else { return };
    let customer = token("dave", &[Role::Customer], None);
    set_stock(&app, &vendor, &product(1)).await;
    add(&app, &customer, &product(1)).await;
    let before = app.graphql_as(&customer, CART, json!({})).await;
    let seen = before["data"]["cart"]["subtotal"]["amount"].as_str().unwrap().to_string();
    assert_eq!(before["data"]["cart"]["lines"][0]["priceChanged"], false);
    reprice(&app, &vendor, &product(1), "999.00", "USD").await;
    let after = app.graphql_as(&customer, CART, json!({})).await;
    let line = &after["data"]["cart"]["lines"][0];
    assert_eq!(line["priceChanged"], true, "{after}");
    assert_eq!(line["addedUnitPrice"]["amount"], seen.as_str(), "{after}");
    let body = app.graphql_as(&customer, CHECKOUT, checkout_input("seen", Some((&seen, "USD")))).await;
    assert_eq!(body["data"]["checkout"]["userErrors"][0]["code"], "PRICE_CHANGED", "{body}");
    assert_eq!(body["data"]["checkout"]["userErrors"][0]["field"], json!(["input", "expectedTotal"]));
    assert_eq!(gateway.charges(), 0, "nothing charged");
    let body = app.graphql_as(&customer, CHECKOUT, checkout_input("agreed", Some(("999.00", "USD")))).await;
    assert!(body["data"]["checkout"]["order"]["id"].is_string(), "the new total, once seen, goes through: {body}");
    assert_eq!(gateway.charges(), 1);
}

/// Finding 11 (NUL): text with NUL bytes is refused as bad input (PostgreSQL cannot store it).
async fn nul_bytes_are_refused_as_input(backend: Backend) {
    let Some((app, _gateway, vendor)) = commerce_app(backend).await else { return };
    let search = "query($s: String) { products(filter: { search: $s }) { edges { cursor } } }";
    let (_, body) = app.post_json(&json!({ "query": search, "variables": { "s": "lamp\u{0}" } })).await;
    assert_eq!(first_error_code(&body), "BAD_USER_INPUT", "{body}");
    let (_, body) = app
        .post_json(&json!({ "query": "{ products(filter: { search: \"a\\u0000b\" }) { edges { cursor } } }" }))
        .await;
    assert_eq!(first_error_code(&body), "BAD_USER_INPUT", "{body}");
    let vendor_id = securecart::domain::GlobalId::new(securecart::domain::NodeKind::Vendor, 1).encode();
    let create =
        "mutation($i: CreateProductInput!) { createProduct(input: $i) { product { id } userErrors { code } } }";
    let input = json!({ "i": { "vendorId": vendor_id, "sku": "NUL-1", "name": "a\u{0}b", "price": { "amount": "1.00", "currencyCode": "USD" } } });
    let body = app.graphql_as(&vendor, create, input).await;
    assert_eq!(first_error_code(&body), "BAD_USER_INPUT", "{body}");
    let r = app.client.get(format!("{}/v2/products?search=a%00b", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "BAD_USER_INPUT");
}

/// Finding 11 (smaller holes), each as the attack sent it.
#[tokio::test]
async fn smaller_holes_stay_closed() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.rate_limit.anonymous = securecart::config::BudgetPolicy { maximum: 100.0, restore_rate: 10.0 };
    })
    .await
    .unwrap();
    app.seed(3, 1).await;
    let vendor = token("vendor-1", &[Role::Vendor], Some("1"));
    // `i64::MIN` is not a quantity.
    let adjust = "mutation($p: ID!, $d: Int!) { adjustInventory(productId: $p, delta: $d, idempotencyKey: \"k\") { userErrors { code } } }";
    let body = app.graphql_as(&vendor, adjust, json!({ "p": product(1), "d": i64::MIN })).await;
    assert_eq!(body["data"]["adjustInventory"]["userErrors"][0]["code"], "INVALID_QUANTITY", "{body}");
    // Operation resolution errors carry a code.
    let two = "query A { __typename } query B { __typename }";
    for body in [json!({ "query": two }), json!({ "query": two, "operationName": "C" })] {
        let (_, answer) = app.post_json(&body).await;
        assert_eq!(first_error_code(&answer), "OPERATION_RESOLUTION_FAILURE", "{answer}");
    }
    // A query dearer than the whole budget has its own code, not a 429 that can never pass.
    let (status, headers, body) =
        post(&app, json!({ "query": "{ products(first: 100) { nodes { vendor { name } price { amount } } } }" }), None)
            .await;
    assert_eq!(first_error_code(&body), "COST_EXCEEDS_BUDGET", "{body}");
    assert_ne!(status, 429);
    assert!(headers.get("retry-after").is_none());
    // One spelling per id.
    let plus = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, "Product:+1");
    let (_, body) = app.post_json(&json!({ "query": format!("{{ product(id: \"{plus}\") {{ id }} }}") })).await;
    assert_eq!(first_error_code(&body), "INVALID_ID", "{body}");
    // Authenticated REST answers are private.
    let r = app
        .client
        .get(format!("{}/v2/cart", app.address))
        .bearer_auth(token("eve", &[Role::Customer], None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    assert!(r.headers()["vary"].to_str().unwrap().contains("Authorization"));
    // A REST 500 carries the correlation id of its log line.
    crate::helpers::execute(&app.database_url, "ALTER TABLE products RENAME TO products_gone").await;
    let r = app.client.get(format!("{}/v2/products", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "INTERNAL_SERVER_ERROR");
    assert_eq!(problem["correlationId"].as_str().map(str::len), Some(36), "{problem}");
}

/// Finding 11 (WebSocket): a socket that never sends `connection_init` is closed with 4408; an
/// id reused while its operation runs closes with 4409; one address holds a bounded number.
#[tokio::test]
async fn websocket_protocol_abuse_is_closed() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.websocket.init_timeout_secs = 1;
        s.websocket.max_per_ip = 2;
    })
    .await
    .unwrap();
    let mut silent = connect(&app, "graphql-transport-ws").await;
    assert_eq!(next(&mut silent).await, Err(4408));
    let mut twice = connect(&app, "graphql-transport-ws").await;
    send(&mut twice, json!({ "type": "connection_init" })).await;
    assert_eq!(next(&mut twice).await.unwrap()["type"], "connection_ack");
    let sub = json!({ "query": "subscription { inventoryChanged { productId } }" });
    send(&mut twice, json!({ "id": "same", "type": "subscribe", "payload": sub })).await;
    send(&mut twice, json!({ "id": "same", "type": "subscribe", "payload": sub })).await;
    assert_eq!(next(&mut twice).await, Err(4409));
    drop(twice);
    // The same message written as an array (which serde, and so async-graphql, also reads).
    let mut array = connect(&app, "graphql-transport-ws").await;
    send(&mut array, json!({ "type": "connection_init" })).await;
    assert_eq!(next(&mut array).await.unwrap()["type"], "connection_ack");
    send(&mut array, json!({ "id": "same", "type": "subscribe", "payload": sub })).await;
    send(&mut array, json!(["subscribe", "same", sub])).await;
    assert_eq!(next(&mut array).await, Err(4409));
    drop(array);
    let _a = connect(&app, "graphql-transport-ws").await;
    let _b = connect(&app, "graphql-transport-ws").await;
    let url = app.address.replace("http://", "ws://") + "/graphql/ws";
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("a third socket from one address must be refused, got {:?}", other.map(|_| ())),
    }
}

/// Finding 11 (production JWKS over http, budget buckets): refused at start-up; buckets of
/// callers gone quiet are forgotten.
#[tokio::test]
async fn production_wants_https_keys_and_buckets_are_evicted() {
    let env = |name: &str| match name {
        "SECURECART_ENV" => Some("production".to_string()),
        "SECURECART_PAYMENT_URL" => Some("https://pay.example".to_string()),
        "SECURECART_JWKS_URL" => Some("http://idp.example/jwks.json".to_string()),
        _ => None,
    };
    let err = securecart::config::Settings::load_with(None, env).unwrap_err().to_string();
    assert!(err.contains("https"), "{err}");
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.rate_limit.customer = securecart::config::BudgetPolicy { maximum: 50.0, restore_rate: 1000.0 };
    })
    .await
    .unwrap();
    for n in 0..20 {
        let (status, _, _) =
            post(&app, json!({ "query": ME }), Some(&token(&format!("c{n}"), &[Role::Customer], None))).await;
        assert_eq!(status, 200);
    }
    assert!(app.budgets.local_len() >= 20, "{}", app.budgets.local_len());
    // Forgotten once refilled (at 1000 points/s): wait on the condition, not a sleep.
    let started = std::time::Instant::now();
    while {
        app.budgets.evict_full();
        app.budgets.local_len() > 0
    } {
        assert!(started.elapsed() < Duration::from_secs(5), "refilled buckets are forgotten");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
