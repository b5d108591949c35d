//! REST beside GraphQL, versions, deprecation and sunset, problems and ETags.

use securecart::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app_with, token};

on_both_backends!(graphql_v1_and_v2_agree, problems_etags_and_ownership);

async fn get(app: &TestApp, path: &str, tok: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app.client.get(format!("{}{path}", app.address));
    if let Some(t) = tok {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let text = r.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn minor(decimal: &str) -> i64 {
    securecart::domain::money::parse_decimal(decimal).unwrap()
}

/// The same product and order read through GraphQL, /v1 and /v2 agree.
async fn graphql_v1_and_v2_agree(app: TestApp) {
    app.store
        .seed(securecart::store::seed::SeedSize { products: 12, vendors: 2, customers: 2, orders: 8 }, false)
        .await
        .unwrap();
    let body = app.graphql("{ products(first: 5) { edges { node { id sku name description price { amount currencyCode } inventory { available } vendor { id name } } } } }", json!({})).await;
    let nodes: Vec<Value> =
        body["data"]["products"]["edges"].as_array().unwrap().iter().map(|e| e["node"].clone()).collect();
    let (_, _, v1_list) = get(&app, "/v1/products?first=5", None).await;
    let (_, _, v2_list) = get(&app, "/v2/products?first=5", None).await;
    for (i, g) in nodes.iter().enumerate() {
        let id = g["id"].as_str().unwrap();
        let (status, _, v1) = get(&app, &format!("/v1/products/{id}"), None).await;
        assert_eq!(status, 200);
        let (_, _, v2) = get(&app, &format!("/v2/products/{id}"), None).await;
        for rest in [&v1, &v2, &v1_list["items"][i], &v2_list["items"][i]] {
            assert_eq!(
                (&rest["id"], &rest["sku"], &rest["name"], &rest["description"]),
                (&g["id"], &g["sku"], &g["name"], &g["description"])
            );
        }
        assert_eq!(v1["priceMinor"], minor(g["price"]["amount"].as_str().unwrap()));
        assert_eq!(v1["currency"], g["price"]["currencyCode"]);
        assert_eq!(v1["available"], g["inventory"]["available"]);
        assert_eq!(v1["vendorId"], g["vendor"]["id"]);
        assert_eq!(v2["price"], g["price"], "v2 money is GraphQL's money");
        assert_eq!(v2["inventory"]["available"], g["inventory"]["available"]);
        assert_eq!(v2["vendor"], g["vendor"]);
    }
    // Orders, for their customer.
    let alice = token("alice", &[Role::Customer], None);
    let body = app.graphql_as(&alice, "{ orders(first: 50) { edges { node { id status subtotal { amount } total { amount currencyCode } lines { sku name quantity unitPrice { amount } lineTotal { amount } product { id } } } } } }", json!({})).await;
    let orders: Vec<Value> =
        body["data"]["orders"]["edges"].as_array().unwrap().iter().map(|e| e["node"].clone()).collect();
    assert!(!orders.is_empty(), "alice has orders in the seed");
    let (_, _, v1_page) = get(&app, "/v1/orders?first=50", Some(&alice)).await;
    let (_, _, v2_page) = get(&app, "/v2/orders?first=50", Some(&alice)).await;
    assert_eq!(v1_page["items"].as_array().unwrap().len(), orders.len());
    assert_eq!(v2_page["items"].as_array().unwrap().len(), orders.len());
    for (i, g) in orders.iter().enumerate() {
        let id = g["id"].as_str().unwrap();
        let (_, _, v1) = get(&app, &format!("/v1/orders/{id}"), Some(&alice)).await;
        let (_, _, lines) = get(&app, &format!("/v1/orders/{id}/lines"), Some(&alice)).await;
        let (_, _, v2) = get(&app, &format!("/v2/orders/{id}"), Some(&alice)).await;
        assert_eq!((&v1["id"], &v1["status"]), (&g["id"], &g["status"]));
        assert_eq!(v1, v1_page["items"][i]);
        assert_eq!(v2, v2_page["items"][i]);
        assert_eq!(v1["totalMinor"], minor(g["total"]["amount"].as_str().unwrap()));
        assert_eq!(v1["lineCount"], g["lines"].as_array().unwrap().len());
        assert_eq!(v2["total"], g["total"]);
        assert_eq!(v2["subtotal"]["amount"], g["subtotal"]["amount"]);
        let graphql_lines = g["lines"].as_array().unwrap();
        assert_eq!(lines["items"].as_array().unwrap().len(), graphql_lines.len(), "v1 lines of {id}");
        assert_eq!(v2["lines"].as_array().unwrap().len(), graphql_lines.len(), "v2 lines of {id}");
        for (j, line) in graphql_lines.iter().enumerate() {
            let (l1, l2) = (&lines["items"][j], &v2["lines"][j]);
            assert_eq!(
                (&l1["sku"], &l1["quantity"], &l1["productId"]),
                (&line["sku"], &line["quantity"], &line["product"]["id"])
            );
            assert_eq!(l1["unitPriceMinor"], minor(line["unitPrice"]["amount"].as_str().unwrap()));
            assert_eq!(
                (&l2["sku"], &l2["name"], &l2["unitPrice"]["amount"], &l2["lineTotal"]["amount"]),
                (&line["sku"], &line["name"], &line["unitPrice"]["amount"], &line["lineTotal"]["amount"])
            );
        }
    }
}

async fn problems_etags_and_ownership(app: TestApp) {
    app.store
        .seed(securecart::store::seed::SeedSize { products: 6, vendors: 2, customers: 2, orders: 10 }, false)
        .await
        .unwrap();
    let (status, headers, body) = get(&app, "/v2/orders", None).await;
    assert_eq!(status, 401);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(
        (body["code"].as_str(), body["status"].as_u64(), body["type"].as_str()),
        (Some("UNAUTHENTICATED"), Some(401), Some("about:blank"))
    );
    let (status, _, body) = get(&app, "/v2/products?first=500", None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("PAGE_SIZE_EXCEEDED")));
    let (status, _, body) = get(&app, "/v2/products?first=abc", None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("BAD_REQUEST")));
    let (status, _, body) = get(&app, "/v2/products/garbage", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
    // Someone else's order is a 404, like a missing one.
    let (alice, bob) = (token("alice", &[Role::Customer], None), token("bob", &[Role::Customer], None));
    let (_, _, bobs) = get(&app, "/v2/orders", Some(&bob)).await;
    let theirs = bobs["items"][0]["id"].as_str().expect("bob has an order").to_string();
    let (status, _, body) = get(&app, &format!("/v2/orders/{theirs}"), Some(&alice)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
    let (status, _, _) = get(&app, "/v2/cart", Some(&token("vendor-1", &[Role::Vendor], None))).await;
    assert_eq!(status, 403);
    // ETag and If-None-Match.
    let id = securecart::domain::GlobalId::new(securecart::domain::NodeKind::Product, 2).encode();
    let r = app.client.get(format!("{}/v2/products/{id}", app.address)).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let r = app
        .client
        .get(format!("{}/v2/products/{id}", app.address))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let admin = token("root", &[Role::Admin], None);
    app.graphql_as(
        &admin,
        "mutation($p: ID!) { adjustInventory(productId: $p, delta: 1, idempotencyKey: \"etag\") { available } }",
        json!({ "p": id }),
    )
    .await;
    let r = app
        .client
        .get(format!("{}/v2/products/{id}", app.address))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the representation changed");
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
}

/// Deprecation headers on v1, none on v2, and 410 after the sunset.
#[tokio::test]
async fn deprecated_versions_announce_their_sunset_and_then_go() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    app.seed(3, 1).await;
    let (status, headers, _) = get(&app, "/v1/products", None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["deprecation"], "@1795478400", "2026-11-24T00:00:00Z as an RFC 9745 date");
    assert_eq!(headers["sunset"], "Mon, 24 May 2027 00:00:00 GMT", "six months later");
    assert!(headers["link"].to_str().unwrap().contains("rel=\"deprecation\""));
    assert_eq!(headers["api-version"], "1");
    let (_, headers, _) = get(&app, "/v2/products", None).await;
    assert!(!headers.contains_key("deprecation") && !headers.contains_key("sunset"));
    assert_eq!(headers["api-version"], "2");
    // Unversioned paths: header or query parameter, default 1.
    let (_, headers, body) = get(&app, "/api/products?first=1", None).await;
    assert_eq!(headers["api-version"], "1");
    assert!(body["items"][0]["priceMinor"].is_i64());
    let r = app
        .client
        .get(format!("{}/api/products?first=1", app.address))
        .header("x-api-version", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["api-version"], "2");
    let body: Value = r.json().await.unwrap();
    assert!(body["items"][0]["price"]["amount"].is_string());
    let (_, headers, _) = get(&app, "/api/products?version=2&first=1", None).await;
    assert_eq!(headers["api-version"], "2");
    let (status, _, body) = get(&app, "/api/products?version=3", None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("UNSUPPORTED_API_VERSION")));
    let r = app.client.get(format!("{}/api/changelog", app.address)).send().await.unwrap();
    let notes = r.text().await.unwrap();
    assert!(notes.contains("Migrating from v1 to v2"), "{notes}");

    // With a sunset in the past, v1 is gone and v2 carries on.
    let gone = spawn_app_with(Backend::Sqlite, |s| {
        s.api.v1_deprecated = "2025-01-01T00:00:00Z".parse().unwrap();
        s.api.v1_sunset = Some("2025-07-01T00:00:00Z".parse().unwrap());
    })
    .await
    .unwrap();
    gone.seed(3, 1).await;
    let (status, headers, body) = get(&gone, "/v1/products", None).await;
    assert_eq!(status, 410);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["code"], "API_VERSION_SUNSET");
    assert_eq!(headers["sunset"], "Tue, 01 Jul 2025 00:00:00 GMT");
    let (status, _, _) = get(&gone, "/v2/products", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn openapi_documents_are_generated_from_the_code() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    for (version, paths) in [
        (
            "v1",
            vec![
                "/v1/products",
                "/v1/products/{id}",
                "/v1/orders",
                "/v1/orders/{id}",
                "/v1/orders/{id}/lines",
                "/v1/cart",
            ],
        ),
        ("v2", vec!["/v2/products", "/v2/products/{id}", "/v2/orders", "/v2/orders/{id}", "/v2/cart"]),
    ] {
        let (status, _, doc) = get(&app, &format!("/{version}/openapi.json"), None).await;
        assert_eq!(status, 200);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
        for p in paths {
            assert!(doc["paths"][p]["get"].is_object(), "{version} documents {p}");
        }
        assert!(doc["components"]["schemas"]["Problem"].is_object());
    }
}

/// The layers in front of both transports (rate limits, body limits) answer REST in REST's
/// shape: a 429 or 413 on `/v1` is `application/problem+json` with the same code as GraphQL's.
#[tokio::test]
async fn throttled_and_oversized_rest_requests_get_problems() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.rate_limit.anonymous_per_second = Some(1);
        s.rate_limit.anonymous_burst = Some(1);
        s.rate_limit.user_per_second = 1;
        s.rate_limit.user_burst = 1;
        s.server.max_body_bytes = 1024;
    })
    .await
    .unwrap();
    let alice = token("alice", &[Role::Customer], None);
    for tok in [None, Some(alice.as_str())] {
        assert_eq!(get(&app, "/v1/products", tok).await.0, 200);
        let (status, headers, body) = get(&app, "/v2/products", tok).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!((body["code"].as_str(), body["status"].as_u64()), (Some("THROTTLED"), Some(429)), "{body}");
        assert!(headers.contains_key("retry-after") && headers.contains_key("ratelimit"), "{headers:?}");
    }
    // GraphQL keeps its own shape for the same refusal.
    let (status, body) = app.post_json(&json!({ "query": "{ __typename }" })).await;
    assert_eq!(status, 429);
    assert_eq!(body["errors"][0]["extensions"]["code"], "THROTTLED", "{body}");
    // A declared body over the limit: 413 at once, as a problem.
    let app = spawn_app_with(Backend::Sqlite, |s| s.server.max_body_bytes = 1024).await.unwrap();
    let r = app.client.get(format!("{}/v1/products", app.address)).body(vec![b'x'; 4096]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE", "{body}");
}
