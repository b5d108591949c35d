//! SQL statements per request are bounded whatever the page size, and the catalog
//! cache never serves stale data on the writing replica and at most a second elsewhere.

use std::time::{Duration, Instant};

use securecart::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app_with, token};

on_both_backends!(the_writing_replica_never_reads_stale_data);

const Q1: &str = "query($n: Int) { products(first: $n) { edges { node { name price { amount currencyCode } inventory { available } } } } }";
const Q1_VENDOR: &str =
    "query($n: Int) { products(first: $n) { edges { node { name vendor { name } inventory { available } } } } }";
const Q2: &str = "query($id: ID!) { product(id: $id) { sku name description price { amount currencyCode } inventory { available } } }";
const Q3: &str = "query($n: Int) { orders(first: $n) { edges { node { id status createdAt total { amount } lines { quantity unitPrice { amount } product { name } } } } } }";

async fn statements(app: &TestApp, tok: Option<&str>, query: &str, vars: Value) -> (u32, Value) {
    let (count, body) = app.graphql_counted(tok, query, vars).await;
    assert!(body.get("errors").is_none(), "{body}");
    (count, body)
}

fn minor(amount: &Value) -> i64 {
    securecart::domain::money::parse_decimal(amount.as_str().unwrap()).unwrap()
}

fn product(n: i64) -> String {
    securecart::domain::GlobalId::new(securecart::domain::NodeKind::Product, n).encode()
}

#[tokio::test]
async fn statements_per_request_are_bounded() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        // Cache off: count what a cold request costs.
        let Some(app) = spawn_app_with(backend, |s| s.database.cache_ttl_secs = 0).await else { continue };
        app.store
            .seed(securecart::store::seed::SeedSize { products: 120, vendors: 6, customers: 3, orders: 150 }, false)
            .await
            .unwrap();
        for n in [1, 20, 100] {
            let (count, body) = statements(&app, None, Q1, json!({ "n": n })).await;
            let edges = body["data"]["products"]["edges"].as_array().unwrap();
            assert_eq!(edges.len(), n as usize);
            assert!(edges.iter().all(|e| e["node"]["inventory"]["available"].is_i64()), "{body}");
            assert_eq!(count, 1, "Q1 with {n} products: the page with its stock, one statement");
            let (count, body) = statements(&app, None, Q1_VENDOR, json!({ "n": n })).await;
            let edges = body["data"]["products"]["edges"].as_array().unwrap();
            assert!(edges.iter().all(|e| e["node"]["vendor"]["name"].is_string()), "{body}");
            assert_eq!(count, 2, "Q1 with {n} products and their vendors: the page, one batched vendor read");
        }
        let (count, body) = statements(&app, None, Q2, json!({ "id": product(7) })).await;
        assert!(body["data"]["product"]["inventory"]["available"].is_i64(), "{body}");
        assert_eq!(count, 1, "Q2: the product with its inventory, one statement");
        let fragment = "query($id: ID!) { product(id: $id) { ...P } } fragment P on Product { name inStock inventory { available } }";
        let (count, body) = statements(&app, None, fragment, json!({ "id": product(8) })).await;
        assert_eq!(
            body["data"]["product"]["inStock"],
            body["data"]["product"]["inventory"]["available"].as_i64().unwrap() > 0
        );
        assert_eq!(count, 1, "stock asked for through a fragment is read in the product's statement too");
        let relay = "query($id: ID!) { node(id: $id) { id ... on Product { name inventory { available } } } }";
        let (count, body) = statements(&app, None, relay, json!({ "id": product(10) })).await;
        assert!(body["data"]["node"]["inventory"]["available"].is_i64(), "{body}");
        assert_eq!(count, 1, "node(id:) on a product with its stock: one statement");
        // REST answers every product with its stock and vendor: the stock in the product's (or
        // the page's) statement, the vendors in one more.
        for path in [
            format!("/v2/products/{}", product(9)),
            "/v2/products?first=50".into(),
            format!("/v1/products/{}", product(9)),
        ] {
            let response = app.client.get(format!("{}{path}", app.address)).send().await.unwrap();
            let count = crate::helpers::statements(&response);
            let body: Value = response.json().await.unwrap();
            let items = body["items"].as_array().cloned().unwrap_or_else(|| vec![body.clone()]);
            assert!(items.len() == 1 || items.len() == 50, "{path}: {body}");
            let stock = |p: &Value| {
                if path.starts_with("/v1") { p["available"].as_i64() } else { p["inventory"]["available"].as_i64() }
            };
            assert!(items.iter().all(|p| stock(p).is_some()), "{path}: {body}");
            assert!(items.iter().any(|p| stock(p) > Some(0)) || items.len() == 1, "{path}: {body}");
            if path.starts_with("/v2") {
                assert!(items.iter().all(|p| p["vendor"]["name"].is_string()), "{path}: {body}");
            }
            assert_eq!(count, 2, "{path}: the products with their stock, then their vendors");
        }
        let alice = token("alice", &[Role::Customer], None);
        for n in [1, 10, 50] {
            let (count, body) = statements(&app, Some(&alice), Q3, json!({ "n": n })).await;
            let orders = body["data"]["orders"]["edges"].as_array().unwrap();
            assert!(!orders.is_empty() && orders.len() <= n as usize);
            assert!(orders.iter().all(|o| o["node"]["lines"].as_array().is_some_and(|l| !l.is_empty())));
            let names = orders
                .iter()
                .flat_map(|o| o["node"]["lines"].as_array().unwrap())
                .all(|l| l["product"]["name"].is_string());
            assert!(names, "every line has its product's name: {body}");
            assert!(count <= 2, "Q3 with {n} orders: the orders, then their lines with their products; got {count}");
        }
        // A vendor's view: only their lines, and the subtotal of those lines (the same lines:
        // no statement of their own).
        let vendor = token("vendor-1", &[Role::Vendor], Some("1"));
        let q = "{ orders(first: 20) { edges { node { subtotal { amount } lines { quantity lineTotal { amount } product { name sku } } } } } }";
        let (count, body) = statements(&app, Some(&vendor), q, json!({})).await;
        let orders = body["data"]["orders"]["edges"].as_array().unwrap();
        assert!(!orders.is_empty(), "{body}");
        for order in orders {
            let lines = order["node"]["lines"].as_array().unwrap();
            // The seed's SKUs name their vendor: `SC-<vendor>-<product>`.
            assert!(
                !lines.is_empty()
                    && lines.iter().all(|l| l["product"]["sku"].as_str().is_some_and(|s| s.starts_with("SC-001-"))),
                "only vendor 1's lines: {body}"
            );
            let sum: i64 = lines.iter().map(|l| minor(&l["lineTotal"]["amount"])).sum();
            assert_eq!(minor(&order["node"]["subtotal"]["amount"]), sum, "{body}");
        }
        assert!(count <= 2, "a vendor's orders, then their lines with their products; got {count}");
    }
}

async fn the_writing_replica_never_reads_stale_data(app: TestApp) {
    app.seed(5, 1).await;
    let admin = token("root", &[Role::Admin], None);
    let (_, first) = statements(&app, None, Q2, json!({ "id": product(3) })).await;
    let (hit, _) = statements(&app, None, Q2, json!({ "id": product(3) })).await;
    assert_eq!(hit, 0, "the second read is served from the cache");
    let before = first["data"]["product"]["inventory"]["available"].as_i64().unwrap();
    let set = "mutation($p: ID!, $q: Int!, $c: Int!) { setInventory(productId: $p, quantity: $q, compareQuantity: $c) { available } }";
    app.graphql_as(&admin, set, json!({ "p": product(3), "q": before + 11, "c": before })).await;
    let rename = "mutation($p: ID!) { updateProduct(id: $p, input: { name: \"Renamed Lamp\" }) { product { name } } }";
    app.graphql_as(&admin, rename, json!({ "p": product(3) })).await;
    let (_, after) = statements(&app, None, Q2, json!({ "id": product(3) })).await;
    assert_eq!(after["data"]["product"]["inventory"]["available"], before + 11, "never stale after its own write");
    assert_eq!(after["data"]["product"]["name"], "Renamed Lamp");
    // A checkout's stock change too.
    let alice = token("alice", &[Role::Customer], None);
    app.graphql_as(
        &alice,
        "mutation($p: ID!) { addCartItem(productId: $p, quantity: 2) { userErrors { code } } }",
        json!({ "p": product(3) }),
    )
    .await;
    let checkout = "mutation { checkout(input: { idempotencyKey: \"cache-1\", paymentToken: \"tok_visa\", shippingAddress: { name: \"A\", line1: \"1 Rd\", city: \"Oslo\", postalCode: \"0150\", country: \"NO\" } }) { order { status } } }";
    app.graphql_as(&alice, checkout, json!({})).await;
    let (_, after) = statements(&app, None, Q2, json!({ "id": product(3) })).await;
    assert_eq!(after["data"]["product"]["inventory"]["available"], before + 9);
}

/// Another replica (sharing PostgreSQL and Redis) serves the change once the bus event arrives.
#[tokio::test]
#[cfg_attr(any(no_test_database, no_test_redis), ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL")]
async fn other_replicas_see_a_change_on_the_bus_event() {
    let Ok(redis) = std::env::var("TEST_REDIS_URL") else {
        assert!(std::env::var("CI").is_err(), "TEST_REDIS_URL is unset under CI");
        eprintln!("skipping other_replicas_see_a_change_on_the_bus_event: TEST_REDIS_URL is unset");
        return;
    };
    let channel = format!("securecart:test:{}", uuid::Uuid::new_v4());
    let with_redis = |s: &mut securecart::config::Settings| {
        s.redis.url = Some(redis.clone());
        s.redis.channel = channel.clone();
    };
    let Some(a) = spawn_app_with(Backend::Postgres, with_redis).await else { return };
    let shared = a.database_url.clone();
    let b = spawn_app_with(Backend::Postgres, |s| {
        with_redis(s);
        s.database.url = Some(shared);
    })
    .await
    .unwrap();
    a.seed(5, 1).await;
    for app in [&a, &b] {
        let started = Instant::now();
        while app
            .client
            .get(format!("{}/readyz", app.internal_address))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["checks"]["bus"]
            != "ok"
        {
            assert!(started.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Wait for the invalidation task to see the bus healthy and switch B's cache on: a second
    // read then runs no statement.
    let cached = Instant::now();
    let first = loop {
        let (_, first) = statements(&b, None, Q2, json!({ "id": product(2) })).await;
        let (hit, _) = statements(&b, None, Q2, json!({ "id": product(2) })).await;
        if hit == 0 {
            break first;
        }
        assert!(cached.elapsed() < Duration::from_secs(10), "replica B never caches the product");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let before = first["data"]["product"]["inventory"]["available"].as_i64().unwrap();
    let admin = token("root", &[Role::Admin], None);
    let set = "mutation($p: ID!, $q: Int!, $c: Int!) { setInventory(productId: $p, quantity: $q, compareQuantity: $c) { available } }";
    let body = a.graphql_as(&admin, set, json!({ "p": product(2), "q": before + 5, "c": before })).await;
    assert_eq!(body["data"]["setInventory"]["available"], before + 5, "{body}");
    let rename = "mutation($p: ID!) { updateProduct(id: $p, input: { name: \"Fresh Name\" }) { product { name } } }";
    let body = a.graphql_as(&admin, rename, json!({ "p": product(2) })).await;
    assert_eq!(body["data"]["updateProduct"]["product"]["name"], "Fresh Name", "{body}");
    let changed = Instant::now();
    loop {
        let body = b.graphql(Q2, json!({ "id": product(2) })).await;
        let p = &body["data"]["product"];
        if p["inventory"]["available"] == before + 5 && p["name"] == "Fresh Name" {
            break;
        }
        // A wait on the condition, not a time target: the cache TTL is 30 s, so seeing the change
        // inside this deadline proves the bus event invalidated B's entry.
        assert!(changed.elapsed() < Duration::from_secs(10), "replica B still stale after 10 s: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn anonymous_catalog_reads_carry_cache_hints() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    app.seed(3, 1).await;
    let r = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": "{ products(first: 2) { edges { node { name vendor { name } } } } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "public, max-age=30", "products 30 s, vendors 300 s: the smaller wins");
    let r = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": "{ products(first: 2) { edges { node { inventory { available } } } } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "public, max-age=1", "stock: one second");
    let r = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(token("alice", &[Role::Customer], None))
        .json(&json!({ "query": "{ products(first: 2) { edges { node { name } } } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    let r = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("accept-encoding", "gzip")
        .json(&json!({ "query": "{ products(first: 3) { edges { node { name description } } } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip", "responses are compressed");
}

/// PostgreSQL plans the hot reads once per connection, not once per execution: after the five
/// custom plans it always tries first, each of Q1's page, Q2's lookups by one id and Q3's
/// orders runs on its cached generic plan. (A bound `LIMIT $n` or `= ANY($1)` for one id made
/// PostgreSQL re-plan on every execution; see `SqlBuilder::limit` and `select_by_ids!`.)
#[tokio::test]
#[cfg_attr(no_test_database, ignore = "needs TEST_DATABASE_URL (PostgreSQL)")]
async fn postgres_reuses_the_plans_of_hot_statements() {
    use securecart::store::{OrderScope, PageQuery, ProductFilter, ProductSort, Store};
    let Some(app) = crate::helpers::spawn_app(Backend::Postgres).await else { return };
    app.store
        .seed(securecart::store::seed::SeedSize { products: 2000, vendors: 3, customers: 3, orders: 30 }, false)
        .await
        .unwrap();
    // One connection, so every execution lands on the connection whose plans are read.
    let store = Store::connect(&app.database_url, 1).await.unwrap();
    // Statistics as autovacuum would leave them: with them, a generic plan of `LIMIT $n` is
    // costed for a tenth of the catalog, against the custom plan's 21 rows.
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&app.database_url).await.unwrap();
    sqlx::Executor::execute(&mut db, "ANALYZE").await.unwrap();
    let page = PageQuery { limit: 20, after: None, before: None, backward: false };
    for round in 0..10 {
        let rows = store.list_products(&ProductFilter::default(), ProductSort::Newest, &page, true).await.unwrap();
        assert_eq!(rows.len(), 21);
        let id = rows[round].0.id;
        assert_eq!(store.products_by_ids(&[id]).await.unwrap().len(), 1);
        assert_eq!(store.inventory_by_product_ids(&[id]).await.unwrap().len(), 1);
        store.list_orders(&OrderScope::CustomerSubject("alice".into()), None, None, 10).await.unwrap();
    }
    let plans = store.prepared_plans().await.unwrap();
    for (what, pattern) in [
        ("Q1's page", "FROM products p LEFT JOIN inventory"),
        ("a product by id", "FROM products p WHERE p.id ="),
        ("an inventory row by product id", "FROM inventory WHERE"),
        ("a customer's orders", "FROM orders o"),
    ] {
        let (statement, generic, custom) = plans
            .iter()
            .find(|(statement, _, _)| statement.contains(pattern))
            .unwrap_or_else(|| panic!("{what}: no prepared statement with {pattern:?} in {plans:?}"));
        assert!(
            *generic >= 5 && *custom <= 5,
            "{what} is re-planned: {generic} generic plans, {custom} custom plans in 10 runs of {statement}"
        );
    }
    // Every page size from 1 to 100 returns its rows (and the one that says more exist), from
    // at most six statements: the LIMIT is rounded up to a few steps, so clients cannot fill
    // the per-connection statement cache with one statement per page size.
    for limit in 1..=100u32 {
        let page = PageQuery { limit, after: None, before: None, backward: limit % 2 == 0 };
        let rows = store.list_products(&ProductFilter::default(), ProductSort::Newest, &page, true).await.unwrap();
        assert_eq!(rows.len(), limit as usize + 1, "a page of {limit}");
    }
    let pages = store
        .prepared_plans()
        .await
        .unwrap()
        .into_iter()
        .filter(|(statement, _, _)| statement.contains("FROM products p LEFT JOIN inventory"))
        .count();
    assert!(pages <= 12, "{pages} prepared page statements for 100 page sizes in two directions");
    store.close().await;
}

/// A repeated document is parsed once: the same query with other variables, again and again,
/// adds one parse to `securecart_documents_parsed_total`; another document adds one more.
/// (A server process of its own: the counter is process-wide.)
#[tokio::test]
async fn a_repeated_document_is_parsed_once() {
    let dir = std::env::temp_dir().join(format!("securecart-parse-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = crate::helpers::start_binary(&dir, &[]).await;
    let client = reqwest::Client::new();
    let parsed = async || {
        crate::helpers::metric(&client, &server.internal, "securecart_documents_parsed_total").await.unwrap_or(0.0)
    };
    let run = async |query: &str, n: i64| {
        let body: Value = client
            .post(format!("{}/graphql", server.address))
            .json(&json!({ "query": query, "variables": { "n": n } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(body.get("errors").is_none(), "{body}");
        assert_eq!(body["data"]["products"]["edges"].as_array().map(Vec::len), Some(n as usize), "{body}");
    };
    let before = parsed().await;
    for n in 1..=5 {
        run(Q1, n).await;
    }
    assert_eq!(parsed().await - before, 1.0, "five requests of one document: one parse");
    run(Q1_VENDOR, 2).await;
    run(Q1_VENDOR, 3).await;
    assert_eq!(parsed().await - before, 2.0, "another document: one more");
    let _ = std::fs::remove_dir_all(&dir);
}
