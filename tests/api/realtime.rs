//! Subscriptions over both WebSocket protocols, their ownership rules, limits, token
//! expiry, and fan-out through Redis across processes and across a Redis restart.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use securecart::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{Backend, Binary, TestApp, first_error_code, on_both_backends, spawn_app_with, token};
use crate::websocket::{Ws, connect, connect_to, next, send};

on_both_backends!(inventory_events_reach_both_protocols, subscriptions_check_ownership_on_every_event);

const INVENTORY: &str = "subscription { inventoryChanged { productId available delta product { name } } }";
const ADJUST: &str = "mutation($p: ID!, $d: Int!, $k: String!) { adjustInventory(productId: $p, delta: $d, idempotencyKey: $k) { available userErrors { code } } }";

fn admin() -> String {
    token("root", &[Role::Admin], None)
}

pub(crate) fn product(n: i64) -> String {
    securecart::domain::GlobalId::new(securecart::domain::NodeKind::Product, n).encode()
}

/// Opens a connection, authenticates (when `tok` is given) and starts one operation.
async fn subscribe_at(address: &str, protocol: &str, tok: Option<&str>, query: &str) -> Ws {
    let mut ws = connect_to(address, protocol).await;
    let payload = tok.map(|t| json!({ "Authorization": format!("Bearer {t}") })).unwrap_or(json!({}));
    send(&mut ws, json!({ "type": "connection_init", "payload": payload })).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    let kind = if protocol == "graphql-ws" { "start" } else { "subscribe" };
    send(&mut ws, json!({ "id": "1", "type": kind, "payload": { "query": query } })).await;
    ws
}

/// Starts a subscription the caller may run, and waits until it listens on the bus (no sleep:
/// the bus counts its receivers).
async fn subscribe(app: &TestApp, protocol: &str, tok: Option<&str>, query: &str) -> Ws {
    let before = app.bus.receivers();
    let ws = subscribe_at(&app.address, protocol, tok, query).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while app.bus.receivers() <= before {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the subscription listens within 10 s");
    ws
}

/// Starts a subscription the server is expected to refuse (it never listens).
async fn subscribe_refused(app: &TestApp, protocol: &str, tok: Option<&str>, query: &str) -> Ws {
    subscribe_at(&app.address, protocol, tok, query).await
}

/// The next result payload (`data` or `errors`), within `within`.
async fn result(ws: &mut Ws, within: Duration) -> Option<Value> {
    tokio::time::timeout(within, async {
        loop {
            let message = next(ws).await.ok()?;
            match message["type"].as_str() {
                Some("next" | "data") => return Some(message["payload"].clone()),
                Some("error") => return Some(json!({ "errors": message["payload"] })),
                _ => {}
            }
        }
    })
    .await
    .ok()
    .flatten()
}

async fn inventory_events_reach_both_protocols(app: TestApp) {
    app.seed(5, 2).await;
    let mut modern = subscribe(&app, "graphql-transport-ws", None, INVENTORY).await;
    let mut legacy = subscribe(&app, "graphql-ws", None, INVENTORY).await;
    let only_2 =
        format!("subscription {{ inventoryChanged(productIds: [\"{}\"]) {{ productId available }} }}", product(2));
    let mut filtered = subscribe(&app, "graphql-transport-ws", None, &only_2).await;

    let body = app.graphql_as(&admin(), ADJUST, json!({ "p": product(1), "d": 7, "k": "a" })).await;
    let now = body["data"]["adjustInventory"]["available"].as_i64().unwrap_or_else(|| panic!("{body}"));
    for ws in [&mut modern, &mut legacy] {
        let event = result(ws, Duration::from_secs(5)).await.expect("an event");
        let e = &event["data"]["inventoryChanged"];
        assert_eq!(e["productId"], product(1).as_str());
        assert_eq!((e["available"].as_i64(), e["delta"].as_i64()), (Some(now), Some(7)));
        assert!(e["product"]["name"].as_str().is_some_and(|n| !n.is_empty()));
    }
    assert!(result(&mut filtered, Duration::from_millis(300)).await.is_none(), "not product 2");
    app.graphql_as(&admin(), ADJUST, json!({ "p": product(2), "d": 1, "k": "b" })).await;
    let event = result(&mut filtered, Duration::from_secs(5)).await.expect("product 2");
    assert_eq!(event["data"]["inventoryChanged"]["productId"], product(2).as_str());
}

async fn subscriptions_check_ownership_on_every_event(app: TestApp) {
    app.seed(4, 2).await; // products 1 and 3 belong to vendor 1, 2 and 4 to vendor 2
    let (alice, bob) = (token("alice", &[Role::Customer], None), token("bob", &[Role::Customer], None));
    let vendor1 = token("vendor-1", &[Role::Vendor], None);

    // lowStock: a vendor hears only about its own products.
    let mut low = subscribe(
        &app,
        "graphql-transport-ws",
        Some(&vendor1),
        "subscription { lowStock(threshold: 100000) { productId } }",
    )
    .await;
    app.graphql_as(&admin(), ADJUST, json!({ "p": product(2), "d": 1, "k": "v2" })).await;
    app.graphql_as(&admin(), ADJUST, json!({ "p": product(3), "d": 1, "k": "v1" })).await;
    let event = result(&mut low, Duration::from_secs(5)).await.expect("low stock");
    assert_eq!(event["data"]["lowStock"]["productId"], product(3).as_str(), "vendor 2's product was skipped");

    // cartChanged: both of alice's devices hear about her cart, with the cart as it is now.
    let cart = "subscription { cartChanged { cart { totalQuantity } } }";
    let mut phone = subscribe(&app, "graphql-transport-ws", Some(&alice), cart).await;
    let mut laptop = subscribe(&app, "graphql-ws", Some(&alice), cart).await;
    let mut bobs_cart = subscribe(&app, "graphql-transport-ws", Some(&bob), cart).await;
    let add = "mutation($p: ID!) { addCartItem(productId: $p, quantity: 2) { userErrors { code } } }";
    let (routed, serialised) = (app.bus.routed(), app.groups.serialised());
    app.graphql_as(&alice, add, json!({ "p": product(1) })).await;
    for ws in [&mut phone, &mut laptop] {
        let event = result(ws, Duration::from_secs(5)).await.expect("cart event");
        assert_eq!(event["data"]["cartChanged"]["cart"]["totalQuantity"], 2);
    }
    // Fan-out by topic: her cart's event woke one subscription, not bob's nor the vendor's: her
    // two devices run the same selection as the same caller, so they share one execution and
    // one serialisation (`graphql::shared`), over both protocols.
    assert_eq!(app.bus.routed() - routed, 1, "only alice's subscription is woken for her cart");
    assert_eq!(app.groups.serialised() - serialised, 1, "one serialisation for both of alice's devices");
    // orderStatusChanged: alice hears about her order, bob does not.
    let orders = "subscription { orderStatusChanged { status order { total { amount } } } }";
    let mut alices = subscribe(&app, "graphql-transport-ws", Some(&alice), orders).await;
    let mut bobs = subscribe(&app, "graphql-transport-ws", Some(&bob), orders).await;
    let checkout = "mutation { checkout(input: { idempotencyKey: \"rt-1\", paymentToken: \"tok_visa\", shippingAddress: { name: \"A\", line1: \"1 Rd\", city: \"Oslo\", postalCode: \"0150\", country: \"NO\" } }) { order { id } userErrors { code } } }";
    let body = app.graphql_as(&alice, checkout, json!({})).await;
    let order_id = body["data"]["checkout"]["order"]["id"].as_str().unwrap_or_else(|| panic!("{body}")).to_string();
    let event = result(&mut alices, Duration::from_secs(5)).await.expect("alice's order");
    assert_eq!(event["data"]["orderStatusChanged"]["status"], "PAID");
    assert!(event["data"]["orderStatusChanged"]["order"]["total"]["amount"].is_string());
    assert!(result(&mut bobs, Duration::from_millis(300)).await.is_none(), "bob hears nothing of alice's order");
    assert!(result(&mut bobs_cart, Duration::from_millis(100)).await.is_none(), "nor of her cart");
    // ...and both of bob's subscriptions are alive: his own cart and order reach them.
    app.graphql_as(&bob, add, json!({ "p": product(1) })).await;
    let event = result(&mut bobs_cart, Duration::from_secs(5)).await.expect("bob's cart event: the socket is alive");
    assert_eq!(event["data"]["cartChanged"]["cart"]["totalQuantity"], 2);
    let bobs_checkout = checkout.replace("rt-1", "rt-bob");
    let body = app.graphql_as(&bob, &bobs_checkout, json!({})).await;
    assert!(body["data"]["checkout"]["order"]["id"].is_string(), "{body}");
    let event = result(&mut bobs, Duration::from_secs(5)).await.expect("bob's order event: the socket is alive");
    assert_eq!(event["data"]["orderStatusChanged"]["status"], "PAID");
    // Someone else's order cannot be watched, and roles are enforced at subscribe time.
    let watch = format!("subscription {{ orderStatusChanged(orderId: \"{order_id}\") {{ status }} }}");
    let mut ws = subscribe_refused(&app, "graphql-transport-ws", Some(&bob), &watch).await;
    let refused = result(&mut ws, Duration::from_secs(5)).await.expect("an error");
    assert_eq!(first_error_code(&refused), "NOT_FOUND", "{refused}");
    let mut ws =
        subscribe_refused(&app, "graphql-transport-ws", Some(&alice), "subscription { lowStock { productId } }").await;
    assert_eq!(first_error_code(&result(&mut ws, Duration::from_secs(5)).await.unwrap()), "FORBIDDEN");
    let mut ws = subscribe_refused(&app, "graphql-transport-ws", None, "subscription { cartChanged { at } }").await;
    assert_eq!(first_error_code(&result(&mut ws, Duration::from_secs(5)).await.unwrap()), "UNAUTHENTICATED");
}

/// Identical subscriptions of one caller form a group (`graphql::shared`): each event is
/// executed and serialised once for all of them and every subscriber gets the same result; one
/// leaving does not end the others, and the group goes (with its bus subscription) when the
/// last one leaves. Another caller with the same document gets a group of its own.
#[tokio::test]
async fn identical_subscriptions_share_one_execution() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await else { return };
    app.seed(2, 1).await;
    let baseline = app.bus.receivers();
    let alice = token("alice", &[Role::Customer], None);
    let mut tabs = Vec::new();
    for protocol in ["graphql-transport-ws", "graphql-ws", "graphql-transport-ws"] {
        tabs.push(subscribe(&app, protocol, None, INVENTORY).await);
    }
    let mut signed_in = subscribe(&app, "graphql-transport-ws", Some(&alice), INVENTORY).await;
    assert_eq!(app.groups.len(), 2, "the three anonymous tabs share one group; alice has her own");
    assert_eq!(app.bus.receivers(), baseline + 4, "every subscriber counted once");
    let serialised = app.groups.serialised();
    app.graphql_as(&admin(), ADJUST, json!({ "p": product(1), "d": 3, "k": "s1" })).await;
    let mut seen = Vec::new();
    for ws in tabs.iter_mut().chain([&mut signed_in]) {
        seen.push(result(ws, Duration::from_secs(5)).await.expect("an event"));
    }
    assert!(
        seen.iter().all(|e| e["data"] == seen[0]["data"] && e["data"]["inventoryChanged"]["delta"] == 3),
        "{seen:?}"
    );
    assert_eq!(app.groups.serialised() - serialised, 2, "one serialisation per group, not per subscriber");
    // One tab closes: the others go on.
    drop(tabs.pop());
    app.graphql_as(&admin(), ADJUST, json!({ "p": product(1), "d": 1, "k": "s2" })).await;
    for ws in tabs.iter_mut() {
        let event = result(ws, Duration::from_secs(5)).await.expect("the group goes on");
        assert_eq!(event["data"]["inventoryChanged"]["delta"], 1, "{event}");
    }
    // All close: the groups go, and so do their bus subscriptions.
    drop(tabs);
    drop(signed_in);
    tokio::time::timeout(Duration::from_secs(10), async {
        while !app.groups.is_empty() || app.bus.receivers() != baseline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} groups and {} receivers left", app.groups.len(), app.bus.receivers()));
}

#[tokio::test]
async fn subscriptions_end_when_the_token_expires() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    app.seed(2, 1).await;
    let exp = chrono::Utc::now().timestamp() + 2;
    let claims = json!({ "sub": "vendor-1", "roles": ["vendor"], "exp": exp });
    let key = jsonwebtoken::EncodingKey::from_secret(securecart::config::DEV_JWT_SECRET.as_bytes());
    let short = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let mut ws = subscribe(&app, "graphql-transport-ws", Some(&short), "subscription { lowStock { productId } }").await;
    let ended = result(&mut ws, Duration::from_secs(10)).await.expect("an error when the token expires");
    assert_eq!(first_error_code(&ended), "UNAUTHENTICATED", "{ended}");
    assert!(ended["errors"][0]["message"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn websocket_limits_are_enforced() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.websocket.max_subscriptions = 2;
        s.websocket.max_connections = 2;
    })
    .await
    .unwrap();
    let mut ws = connect(&app, "graphql-transport-ws").await;
    send(&mut ws, json!({ "type": "connection_init" })).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    for id in ["a", "b", "c"] {
        send(&mut ws, json!({ "id": id, "type": "subscribe", "payload": { "query": INVENTORY } })).await;
    }
    let refused = result(&mut ws, Duration::from_secs(5)).await.expect("the third is refused");
    assert_eq!(first_error_code(&refused), "TOO_MANY_SUBSCRIPTIONS");
    // At the limit, completing one frees its place at once: a client that swaps a subscription
    // (complete, then subscribe, as Apollo and urql do when variables change) is not refused.
    for n in 0..20 {
        let (old, new) = (if n == 0 { "b".to_string() } else { format!("s{}", n - 1) }, format!("s{n}"));
        // Both in one write, so the server reads the second right after the first.
        let swap = [
            json!({ "id": old, "type": "complete" }),
            json!({ "id": new, "type": "subscribe", "payload": { "query": INVENTORY } }),
        ];
        for message in swap {
            futures::SinkExt::feed(&mut ws, tokio_tungstenite::tungstenite::Message::Text(message.to_string().into()))
                .await
                .unwrap();
        }
        futures::SinkExt::flush(&mut ws).await.unwrap();
    }
    // a and s19 run: one more is refused, and only it.
    send(&mut ws, json!({ "id": "q", "type": "subscribe", "payload": { "query": "{ __typename }" } })).await;
    loop {
        let message = next(&mut ws).await.expect("open");
        let code = &message["payload"][0]["extensions"]["code"];
        if message["id"] == "q" {
            assert_eq!((message["type"].as_str(), code.as_str()), (Some("error"), Some("TOO_MANY_SUBSCRIPTIONS")));
            break;
        }
        assert_eq!(message["type"], "complete", "only the completions of the swapped ones: {message}");
    }
    let _second = connect(&app, "graphql-transport-ws").await;
    let url = app.address.replace("http://", "ws://") + "/graphql/ws";
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("a third connection must be refused, got {:?}", other.map(|_| ())),
    }
}

async fn start_binary(database_url: &str, redis_url: &str, channel: &str) -> Binary {
    let env = [
        ("DATABASE_URL", database_url),
        ("REDIS_URL", redis_url),
        ("SECURECART_REDIS_CHANNEL", channel),
        ("SECURECART_DEMO_SEED", "false"),
        // Many subscribers from one test address.
        ("SECURECART_ANON_RATE", "10000"),
        ("SECURECART_ANON_BURST", "10000"),
    ];
    let server = crate::helpers::start_binary(&std::env::temp_dir(), &env).await;
    wait_ready(&server.address, Duration::from_secs(30)).await;
    server
}

/// Waits until `server`'s bus has more than `before` listeners (its `/metrics`).
async fn wait_listening(server: &Binary, before: f64) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    while crate::helpers::metric(&client, &server.internal, "securecart_bus_listeners").await.unwrap_or(0.0) <= before {
        assert!(started.elapsed() < Duration::from_secs(10), "the subscription never listened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `/readyz` answers with the bus connected.
async fn wait_ready(address: &str, limit: Duration) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{address}/readyz")).send().await
            && let Ok(body) = r.json::<Value>().await
            && body["checks"]["bus"] == "ok"
        {
            return;
        }
        assert!(started.elapsed() < limit, "{address} not ready with Redis in {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `redis-server` of the test's own on `port` (the shared one is never stopped), killed when
/// dropped. A restarted one must come back on the same port, so the port is chosen by the test.
fn redis_server(port: u16) -> tokio::process::Child {
    tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server must be installed where TEST_REDIS_URL is set")
}

fn redis_or_skip(test: &str) -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("CI").is_ok() => panic!("TEST_REDIS_URL is unset under CI: {test} must run"),
        Err(_) => {
            eprintln!("skipping {test}: TEST_REDIS_URL is unset");
            None
        }
    }
}

/// Two server processes sharing PostgreSQL and Redis; a checkout on one reaches a
/// WebSocket subscriber on the other.
#[tokio::test]
#[cfg_attr(any(no_test_database, no_test_redis), ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL")]
async fn two_processes_share_events_through_redis() {
    let Some(redis) = redis_or_skip("two_processes_share_events_through_redis") else { return };
    // The PostgreSQL database comes from the usual per-test template; the app itself is not used.
    let Some(db) = crate::helpers::spawn_app(Backend::Postgres).await else { return };
    db.seed(3, 1).await;
    let url = db.database_url.clone();
    let channel = format!("securecart:test:{}", uuid::Uuid::new_v4());
    let (a, b) = (start_binary(&url, &redis, &channel).await, start_binary(&url, &redis, &channel).await);
    let alice = token("alice", &[Role::Customer], None);
    let client = reqwest::Client::new();
    let post = |address: &str, query: &str, vars: Value| {
        client
            .post(format!("{address}/graphql"))
            .bearer_auth(&alice)
            .json(&json!({ "query": query, "variables": vars }))
            .send()
    };
    let scraper = reqwest::Client::new();
    let before = crate::helpers::metric(&scraper, &b.internal, "securecart_bus_listeners").await.unwrap();
    let mut ws = subscribe_at(&b.address, "graphql-transport-ws", None, INVENTORY).await;
    wait_listening(&b, before).await;
    let add = "mutation($p: ID!) { addCartItem(productId: $p, quantity: 1) { userErrors { code } } }";
    post(&a.address, add, json!({ "p": product(1) })).await.unwrap();
    let checkout = "mutation { checkout(input: { idempotencyKey: \"two-1\", paymentToken: \"tok_visa\", shippingAddress: { name: \"A\", line1: \"1 Rd\", city: \"Oslo\", postalCode: \"0150\", country: \"NO\" } }) { order { status } userErrors { code } } }";
    let body: Value = post(&a.address, checkout, json!({})).await.unwrap().json().await.unwrap();
    assert_eq!(body["data"]["checkout"]["order"]["status"], "PAID", "{body}");
    let event = result(&mut ws, Duration::from_secs(10))
        .await
        .expect("the event reaches the other process (a deadline, not a latency target: bench/ measures that)");
    let e = &event["data"]["inventoryChanged"];
    assert_eq!((e["productId"].as_str(), e["delta"].as_i64()), (Some(product(1).as_str()), Some(-1)));
}

/// Redis killed and restarted; queries and mutations keep working, `/readyz` says
/// degraded, and events flow again afterwards without client action.
#[tokio::test]
#[cfg_attr(no_test_redis, ignore = "needs TEST_REDIS_URL")]
async fn events_flow_again_after_a_redis_restart() {
    if redis_or_skip("events_flow_again_after_a_redis_restart").is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start_redis = || redis_server(port);
    let mut redis = start_redis();
    let redis_url = format!("redis://127.0.0.1:{port}");
    let channel = format!("securecart:test:{}", uuid::Uuid::new_v4());
    let configure = |s: &mut securecart::config::Settings| {
        s.redis.url = Some(redis_url.clone());
        s.redis.channel = channel.clone();
    };
    let a = spawn_app_with(Backend::Sqlite, configure).await.unwrap();
    let b = spawn_app_with(Backend::Sqlite, configure).await.unwrap();
    a.seed(3, 1).await;
    b.seed(3, 1).await; // the same deterministic catalog: the same product ids
    wait_ready(&a.address, Duration::from_secs(10)).await;
    wait_ready(&b.address, Duration::from_secs(10)).await;
    let mut ws = subscribe(&b, "graphql-transport-ws", None, INVENTORY).await;
    a.graphql_as(&admin(), ADJUST, json!({ "p": product(1), "d": 1, "k": "before" })).await;
    assert!(result(&mut ws, Duration::from_secs(5)).await.is_some(), "events cross before the outage");

    redis.kill().await.unwrap();
    // Queries and mutations carry on without Redis.
    let body = a.graphql_as(&admin(), ADJUST, json!({ "p": product(1), "d": 1, "k": "during" })).await;
    assert!(body.get("errors").is_none() && body["data"]["adjustInventory"]["available"].is_i64(), "{body}");
    let body = b.graphql("{ products(first: 2) { edges { cursor } } }", json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let started = Instant::now();
    loop {
        let r: Value = b.client.get(format!("{}/readyz", b.address)).send().await.unwrap().json().await.unwrap();
        if r["checks"]["bus"] == "degraded" {
            assert_eq!(r["status"], "ready", "the database still serves");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "readyz never reported the bus as degraded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let _redis = start_redis();
    wait_ready(&a.address, Duration::from_secs(20)).await;
    wait_ready(&b.address, Duration::from_secs(20)).await;
    // The subscriber never reconnected; the server resubscribed for it.
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        a.graphql_as(&admin(), ADJUST, json!({ "p": product(2), "d": 1, "k": format!("after-{attempt}") })).await;
        if let Some(event) = result(&mut ws, Duration::from_millis(500)).await
            && event["data"]["inventoryChanged"]["productId"] == product(2).as_str()
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "events did not flow again after the restart");
    }
}

/// What one subscriber has seen: product id → the versions delivered, in order, and the last
/// level.
type Seen = Arc<std::sync::Mutex<HashMap<String, (Vec<i64>, i64)>>>;

/// Reads `ws` into `seen` until the socket closes.
fn record(mut ws: Ws, seen: Seen) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    tokio::spawn(async move {
        // Not `next`: an idle stretch is no failure here, the convergence check below decides.
        while let Some(Ok(message)) = ws.next().await {
            let tokio_tungstenite::tungstenite::Message::Text(text) = message else { continue };
            let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
            let e = &message["payload"]["data"]["inventoryChanged"];
            if let (Some(id), Some(version), Some(available)) =
                (e["productId"].as_str(), e["version"].as_i64(), e["available"].as_i64())
            {
                let mut seen = seen.lock().unwrap();
                let entry = seen.entry(id.to_string()).or_default();
                entry.0.push(version);
                entry.1 = available;
            }
        }
    })
}

/// Issue 14, finding 4: Redis stopped for 10 s under two replicas with 100 subscribers while
/// both keep changing stock. No cross-replica event is lost (the outbox sweep delivers what
/// pub/sub could not), each subscriber sees every version of every product in order, and ends
/// with the current stock; delivery through Redis resumes afterwards.
#[tokio::test]
#[cfg_attr(any(no_test_database, no_test_redis), ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL")]
async fn a_redis_outage_loses_no_event_across_replicas() {
    if redis_or_skip("a_redis_outage_loses_no_event_across_replicas").is_none() {
        return;
    }
    let Some(db) = crate::helpers::spawn_app(Backend::Postgres).await else { return };
    db.seed(4, 1).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start_redis = || redis_server(port);
    let mut redis = start_redis();
    let redis_url = format!("redis://127.0.0.1:{port}");
    let channel = format!("securecart:test:{}", uuid::Uuid::new_v4());
    let (a, b) = (
        start_binary(&db.database_url, &redis_url, &channel).await,
        start_binary(&db.database_url, &redis_url, &channel).await,
    );
    // Replica A changes products 1 and 2, B changes 3 and 4: each product has one writer, so
    // every version must reach every subscriber (none is superseded by a concurrent writer).
    let writers = [(&a, [1, 2]), (&b, [3, 4])];
    let watched: Vec<String> = (1..=4).map(product).collect();
    let query = format!(
        "subscription {{ inventoryChanged(productIds: {}) {{ productId available version }} }}",
        serde_json::to_string(&watched).unwrap()
    );
    const SUBSCRIBERS: usize = 100;
    let scraper = reqwest::Client::new();
    let mut seen: Vec<Seen> = Vec::new();
    let mut readers = Vec::new();
    for server in [&a, &b] {
        let before = crate::helpers::metric(&scraper, &server.internal, "securecart_bus_listeners").await.unwrap();
        for _ in 0..SUBSCRIBERS / 2 {
            let ws = subscribe_at(&server.address, "graphql-transport-ws", None, &query).await;
            let s = Seen::default();
            readers.push(record(ws, s.clone()));
            seen.push(s);
        }
        let started = Instant::now();
        while crate::helpers::metric(&scraper, &server.internal, "securecart_bus_listeners").await.unwrap_or(0.0)
            < before + (SUBSCRIBERS / 2) as f64
        {
            assert!(started.elapsed() < Duration::from_secs(20), "the subscriptions never all listened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let client = reqwest::Client::new();
    // One unit more on each writer's products; how many changes that made.
    let change = async |round: &str| {
        let mut made = 0;
        for (server, products) in &writers {
            for p in products {
                let vars = json!({ "p": product(*p), "d": 1, "k": format!("{round}-{p}") });
                let body: Value = client
                    .post(format!("{}/graphql", server.address))
                    .bearer_auth(admin())
                    .json(&json!({ "query": ADJUST, "variables": vars }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert!(body["data"]["adjustInventory"]["available"].is_i64(), "every write succeeds: {body}");
                made += 1;
            }
        }
        made
    };
    let mut changes: i64 = 0;
    changes += change("before").await;

    // The outage: 10 s of changes on both replicas with Redis gone.
    redis.kill().await.unwrap();
    let outage = Instant::now();
    let mut round = 0;
    while outage.elapsed() < Duration::from_secs(10) {
        round += 1;
        changes += change(&format!("outage-{round}")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = changes;
    let _redis = start_redis();
    let back = Instant::now();
    wait_ready(&a.address, Duration::from_secs(20)).await;
    wait_ready(&b.address, Duration::from_secs(20)).await;
    changes += change("after").await;

    // The truth: each product's stock and version now.
    let pool = sqlx::PgPool::connect(&db.database_url).await.unwrap();
    let mut current = HashMap::new();
    for p in 1..=4 {
        let available: i64 = sqlx::query_scalar("SELECT available FROM inventory WHERE product_id = $1")
            .bind(p)
            .fetch_one(&pool)
            .await
            .unwrap();
        current.insert(product(p), available);
    }
    pool.close().await;
    let versions = changes / 4;
    let converged = |s: &Seen| {
        let s = s.lock().unwrap();
        current
            .iter()
            .all(|(id, available)| s.get(id).is_some_and(|(v, a)| v.len() as i64 == versions && a == available))
    };
    while !seen.iter().all(converged) {
        if back.elapsed() > Duration::from_secs(30) {
            let behind = seen.iter().find(|s| !converged(s)).map(|s| format!("{:?}", s.lock().unwrap()));
            panic!(
                "subscribers did not all reach the current stock {current:?} at version {versions}: {} of {} did; \
                 one that did not saw {behind:?}",
                seen.iter().filter(|s| converged(s)).count(),
                seen.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caught_up = back.elapsed();
    for s in &seen {
        for (id, (versions_seen, _)) in s.lock().unwrap().iter() {
            let expected: Vec<i64> = (1..=versions).collect();
            assert_eq!(versions_seen, &expected, "{id}: every version once, in order");
        }
    }
    eprintln!(
        "redis outage: {SUBSCRIBERS} subscribers on 2 replicas, {changes} stock changes ({} during the 10 s outage), \
         {} deliveries, 0 lost; every subscriber current {caught_up:?} after Redis came back",
        during - 4,
        changes * SUBSCRIBERS as i64,
    );
    for r in readers {
        r.abort();
    }
}

/// A Redis Cluster of the test's own: three `redis-server --cluster-enabled yes` on free ports,
/// joined by `redis-cli --cluster create` (no replicas), killed when dropped.
struct RedisCluster {
    nodes: Vec<tokio::process::Child>,
    ports: Vec<u16>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("securecart-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        // Six free ports: each node's client port and its cluster bus port (by default the client
        // port + 10000, which fails above 55535).
        let listeners: Vec<_> = (0..6).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let free: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
        drop(listeners);
        let ports = free[..3].to_vec();
        let nodes = ports
            .iter()
            .zip(&free[3..])
            .map(|(port, bus)| {
                tokio::process::Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                    .args(["--cluster-port", &bus.to_string()])
                    .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                    .current_dir(&dir)
                    .stdout(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("redis-server must be installed where TEST_REDIS_URL is set")
            })
            .collect();
        for port in &ports {
            let started = Instant::now();
            while tokio::net::TcpStream::connect(("127.0.0.1", *port)).await.is_err() {
                assert!(started.elapsed() < Duration::from_secs(10), "redis-server on {port}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let mut create = tokio::process::Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create.args(["--cluster-replicas", "0", "--cluster-yes"]).output().await.expect("redis-cli");
        assert!(out.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        // Every node sees every slot served before the cluster is used.
        for port in &ports {
            let started = Instant::now();
            loop {
                let info = tokio::process::Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .await
                    .unwrap();
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(20), "the cluster is ok on {port}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Self { nodes, ports, dir }
    }

    /// The URL the servers get: one node (the client discovers the others).
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports[0])
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two server processes on one real three-node Redis Cluster (and one PostgreSQL database, with
/// the outbox sweep pushed out of the test's time, so only Redis can carry events): every event
/// kind crosses, cost budgets are one budget, and a persisted query registered on one is found
/// on the other.
#[tokio::test]
#[cfg_attr(any(no_test_database, no_test_redis), ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL")]
async fn two_processes_share_one_redis_cluster() {
    if redis_or_skip("two_processes_share_one_redis_cluster").is_none() {
        return;
    }
    let Some(db) = crate::helpers::spawn_app(Backend::Postgres).await else { return };
    db.seed(3, 1).await;
    let cluster = RedisCluster::start().await;
    let (url, redis) = (db.database_url.clone(), cluster.url());
    let channel = format!("securecart:test:{}", uuid::Uuid::new_v4());
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("REDIS_URL", redis.as_str()),
        ("SECURECART_REDIS_CLUSTER", "true"),
        ("SECURECART_REDIS_CHANNEL", channel.as_str()),
        ("SECURECART_DEMO_SEED", "false"),
        ("SECURECART_EVENT_SWEEP_MS", "600000"),
        ("SECURECART_BUDGET_VENDOR", "50/0.001"),
    ];
    let start = async || {
        let server = crate::helpers::start_binary(&std::env::temp_dir(), &env).await;
        wait_ready(&server.address, Duration::from_secs(30)).await;
        server
    };
    let (a, b) = (start().await, start().await);
    let client = reqwest::Client::new();
    let post = async |address: &str, tok: Option<&str>, body: Value| -> Value {
        let mut request = client.post(format!("{address}/graphql")).json(&body);
        if let Some(t) = tok {
            request = request.bearer_auth(t);
        }
        request.send().await.unwrap().json().await.unwrap()
    };
    let (alice, root) = (token("alice", &[Role::Customer], None), admin());

    // Every event kind: subscriptions on B, changes on A.
    let listeners = crate::helpers::metric(&client, &b.internal, "securecart_bus_listeners").await.unwrap();
    let mut stock = subscribe_at(&b.address, "graphql-transport-ws", None, INVENTORY).await;
    let cart = "subscription { cartChanged { cart { totalQuantity } } }";
    let mut carts = subscribe_at(&b.address, "graphql-transport-ws", Some(&alice), cart).await;
    let orders = "subscription { orderStatusChanged { status } }";
    let mut statuses = subscribe_at(&b.address, "graphql-transport-ws", Some(&alice), orders).await;
    wait_listening(&b, listeners + 2.0).await;
    let adjust = json!({ "query": ADJUST, "variables": { "p": product(1), "d": 5, "k": "cluster-1" } });
    let adjusted = post(&a.address, Some(&root), adjust).await;
    assert!(adjusted["data"]["adjustInventory"]["available"].is_i64(), "{adjusted}");
    let event = result(&mut stock, Duration::from_secs(10)).await.expect("an inventory event crosses the cluster");
    assert_eq!(event["data"]["inventoryChanged"]["delta"], 5, "{event}");
    let add = "mutation($p: ID!) { addCartItem(productId: $p, quantity: 1) { userErrors { code } } }";
    post(&a.address, Some(&alice), json!({ "query": add, "variables": { "p": product(1) } })).await;
    let event = result(&mut carts, Duration::from_secs(10)).await.expect("a cart event crosses the cluster");
    assert_eq!(event["data"]["cartChanged"]["cart"]["totalQuantity"], 1, "{event}");
    let checkout = "mutation { checkout(input: { idempotencyKey: \"cluster-1\", paymentToken: \"tok_visa\", shippingAddress: { name: \"A\", line1: \"1 Rd\", city: \"Oslo\", postalCode: \"0150\", country: \"NO\" } }) { order { status } userErrors { code } } }";
    let body = post(&a.address, Some(&alice), json!({ "query": checkout })).await;
    assert_eq!(body["data"]["checkout"]["order"]["status"], "PAID", "{body}");
    let event = result(&mut statuses, Duration::from_secs(10)).await.expect("an order event crosses the cluster");
    assert_eq!(event["data"]["orderStatusChanged"]["status"], "PAID", "{event}");
    // Product changes invalidate the other process's catalog cache (on by default).
    let name = json!({ "query": format!("{{ product(id: \"{}\") {{ name }} }}", product(2)) });
    let cached = post(&b.address, None, name.clone()).await;
    assert!(cached["data"]["product"]["name"].is_string(), "{cached}");
    let rename = "mutation($p: ID!) { updateProduct(id: $p, input: { name: \"Renamed across the cluster\" }) { userErrors { code } } }";
    let renamed = post(&a.address, Some(&root), json!({ "query": rename, "variables": { "p": product(2) } })).await;
    assert_eq!(renamed["data"]["updateProduct"]["userErrors"], json!([]), "{renamed}");
    let started = Instant::now();
    while post(&b.address, None, name.clone()).await["data"]["product"]["name"] != "Renamed across the cluster" {
        assert!(started.elapsed() < Duration::from_secs(10), "B's cache is invalidated through the cluster");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // One budget: a vendor spends theirs on A and is throttled on B at once.
    let vendor = token("vendor-x", &[Role::Vendor], None);
    let page = json!({ "query": "{ products(first: 10) { edges { node { name } } } }" });
    let mut spent = 0;
    let throttled = |body: &Value| body["errors"][0]["extensions"]["code"] == "THROTTLED";
    while !throttled(&post(&a.address, Some(&vendor), page.clone()).await) {
        spent += 1;
        assert!(spent < 100, "a budget of 50 runs out");
    }
    assert!(spent >= 1, "some requests fit in the budget");
    let on_b = post(&b.address, Some(&vendor), page.clone()).await;
    assert!(throttled(&on_b), "B bills the same budget: {on_b}");

    // A persisted query registered on A is found on B by its hash alone.
    let query = "query ClusterApq { products(first: 2) { edges { node { name } } } }";
    let hash = securecart::graphql::persisted::sha256_hex(query);
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let registered = post(&a.address, None, json!({ "query": query, "extensions": ext })).await;
    assert!(registered["data"]["products"]["edges"].is_array(), "{registered}");
    let found = post(&b.address, None, json!({ "extensions": ext })).await;
    assert_eq!(found["data"], registered["data"], "B finds the query by its hash: {found}");
    drop((a, b, cluster));
}
