//! The GraphQL specification to the letter, where popular clients depend on it: failed fields
//! are `null` (not missing), keys come in selection order, every type with a global id is a
//! `Node` under its own field's authorization, ids in their usual spellings are accepted, and
//! introspection says what schema/schema.graphql says.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use securecart::auth::Role;
use securecart::domain::{GlobalId, NodeKind};
use serde_json::{Value, json};

use crate::helpers::{TestApp, first_error_code, on_both_backends, token};

on_both_backends!(failed_nullable_fields_are_null_and_keys_follow_the_selection, every_global_id_is_a_node);

const MISSING: &str = "UHJvZHVjdDo5OTk5"; // Product:9999

/// The raw body, so the order of keys can be read.
async fn raw(app: &TestApp, query: &str) -> String {
    let r = app.client.post(format!("{}/graphql", app.address)).json(&json!({ "query": query })).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// `data` as the body wrote it: serde_json keeps the order of keys (`preserve_order`).
fn data_text(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap();
    serde_json::to_string(&value["data"]).unwrap()
}

async fn failed_nullable_fields_are_null_and_keys_follow_the_selection(app: TestApp) {
    app.seed(6, 2).await;
    let id = GlobalId::new(NodeKind::Product, 1).encode();

    // A failed nullable field is `null` beside the fields that resolved.
    let body =
        raw(&app, &format!(r#"{{ a: product(id: "{MISSING}") {{ id }} b: product(id: "{id}") {{ id }} }}"#)).await;
    assert_eq!(data_text(&body), format!(r#"{{"a":null,"b":{{"id":"{id}"}}}}"#), "{body}");
    let value: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["errors"][0]["path"], json!(["a"]));
    assert_eq!(first_error_code(&value), "NOT_FOUND");

    // Every root field failed: `data` holds them as null, it is not null itself.
    let body = raw(&app, &format!(r#"{{ node(id: "{MISSING}") {{ id }} }}"#)).await;
    assert_eq!(data_text(&body), r#"{"node":null}"#, "{body}");

    // A non-null root field that fails makes `data` null (`me: Viewer!` needs a token).
    let body = raw(&app, r#"{ product(id: "UHJvZHVjdDox") { id } me { subject } }"#).await;
    assert_eq!(data_text(&body), "null", "{body}");

    // Keys in the order of the selection set, whatever resolves first (vendor and inventory
    // go through loaders; totalCount is a statement of its own), fragments included.
    let query = "{ products(first: 2) { totalCount edges { node { vendor { name } inventory { available } \
                 ...F id } } pageInfo { hasNextPage } } } fragment F on Product { name sku }";
    let body = raw(&app, query).await;
    let value: Value = serde_json::from_str(&body).unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let products = &value["data"]["products"];
    assert_eq!(keys(products), ["totalCount", "edges", "pageInfo"], "{body}");
    for edge in products["edges"].as_array().unwrap() {
        assert_eq!(keys(&edge["node"]), ["vendor", "inventory", "name", "sku", "id"], "{body}");
    }
}

async fn every_global_id_is_a_node(app: TestApp) {
    app.store
        .seed(securecart::store::seed::SeedSize { products: 6, vendors: 2, customers: 2, orders: 6 }, false)
        .await
        .unwrap();
    let admin = token("root", &[Role::Admin], None);
    let alice = token("alice", &[Role::Customer], None);
    let bob = token("bob", &[Role::Customer], None);
    let vendor = token("vendor-1", &[Role::Vendor], None);

    let mine = app
        .graphql_as(
            &alice,
            "{ orders(first: 1) { edges { node { id status } } } me { customer { id } } cart { id } }",
            json!({}),
        )
        .await;
    assert!(mine.get("errors").is_none(), "{mine}");
    let order = mine["data"]["orders"]["edges"][0]["node"].clone();
    let order_id = order["id"].as_str().expect("alice has an order").to_string();
    let customer_id = mine["data"]["me"]["customer"]["id"].as_str().unwrap().to_string();
    let cart_id = mine["data"]["cart"]["id"].as_str().unwrap().to_string();

    const NODE: &str = "query($id: ID!) { node(id: $id) { __typename id \
        ... on Order { status } ... on Customer { subject } ... on Cart { totalQuantity } } }";
    let node = |tok: String, id: String| {
        let app = &app;
        async move { app.graphql_as(&tok, NODE, json!({ "id": id })).await }
    };

    // Each object for whoever its own field shows it to.
    let seen = node(alice.clone(), order_id.clone()).await;
    assert_eq!(seen["data"]["node"], json!({ "__typename": "Order", "id": order_id, "status": order["status"] }));
    let seen = node(admin.clone(), order_id.clone()).await;
    assert_eq!(seen["data"]["node"]["__typename"], "Order", "{seen}");
    let seen = node(alice.clone(), customer_id.clone()).await;
    assert_eq!(seen["data"]["node"], json!({ "__typename": "Customer", "id": customer_id, "subject": "alice" }));
    let seen = node(admin.clone(), customer_id.clone()).await;
    assert_eq!(seen["data"]["node"]["subject"], "alice", "{seen}");
    let seen = node(alice.clone(), cart_id.clone()).await;
    assert_eq!(seen["data"]["node"]["__typename"], "Cart", "{seen}");
    assert!(seen["data"]["node"]["totalQuantity"].is_i64(), "{seen}");

    // Not to anyone else: exactly like a missing object.
    for (who, tok, id) in [
        ("bob, alice's order", &bob, &order_id),
        ("bob, alice's customer record", &bob, &customer_id),
        ("bob, alice's cart", &bob, &cart_id),
        ("a vendor, alice's customer record", &vendor, &customer_id),
        ("the admin, alice's cart", &admin, &cart_id),
    ] {
        let seen = node(tok.clone(), id.clone()).await;
        assert_eq!(seen["data"], json!({ "node": null }), "{who}: {seen}");
        assert_eq!(first_error_code(&seen), "NOT_FOUND", "{who}: {seen}");
    }
    let missing = GlobalId::new(NodeKind::Order, 999_999).encode();
    let seen = node(admin.clone(), missing).await;
    assert_eq!(seen["data"], json!({ "node": null }), "{seen}");
    assert_eq!(first_error_code(&seen), "NOT_FOUND");

    // Ids as graphql-relay's toGlobalId and btoa make them (padded standard base64).
    let padded = STANDARD.encode("Vendor:1");
    assert!(padded.ends_with('='), "{padded}");
    let seen = node(admin.clone(), padded).await;
    assert_eq!(seen["data"]["node"]["id"], GlobalId::new(NodeKind::Vendor, 1).encode(), "{seen}");
    let body = app.graphql(r#"{ product(id: "UHJvZHVjdDox") { id } }"#, json!({})).await;
    assert_eq!(body["data"]["product"]["id"], "UHJvZHVjdDox", "one canonical form out: {body}");
}

/// The standard introspection answers what the checked-in SDL says: no schema description
/// (async-graphql's own text describes the meta-type), and `@specifiedBy` on `DateTime` in both.
#[tokio::test]
async fn introspection_says_what_the_sdl_says() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await else { return };
    let body = app
        .graphql(
            r#"{ __schema { description queryType { name } } __type(name: "DateTime") { specifiedByURL } }"#,
            json!({}),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["__schema"]["description"], Value::Null, "{body}");
    let url = body["data"]["__type"]["specifiedByURL"].as_str().expect("DateTime is specified by a URL");
    let sdl = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/schema.graphql"))
        .unwrap();
    assert!(sdl.contains(&format!(r#"scalar DateTime @specifiedBy(url: "{url}")"#)), "the SDL lacks {url}");
}

/// Reads a streamed body until `done` holds for what arrived, within 10 s.
async fn read_until(response: &mut reqwest::Response, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done(&text) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let chunk = tokio::time::timeout(left, response.chunk()).await;
        match chunk {
            Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            other => panic!("the stream ended or stalled ({other:?}) after: {text:?}"),
        }
    }
    text
}

/// Subscriptions over plain HTTP for networks that break WebSockets: graphql-sse's distinct
/// connections mode and Apollo's multipart subscriptions, with the caller's token, its
/// authorization and the same events as over WebSocket.
#[tokio::test]
async fn subscriptions_stream_over_sse_and_multipart() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await else { return };
    app.seed(3, 1).await;
    let alice = token("alice", &[Role::Customer], None);
    let admin = token("root", &[Role::Admin], None);
    let product = GlobalId::new(NodeKind::Product, 1).encode();
    let scraper = reqwest::Client::new();
    let listeners = async || {
        crate::helpers::metric(&scraper, &app.internal_address, "securecart_bus_listeners").await.unwrap_or(0.0)
    };
    let before = listeners().await;
    let open = |accept: &'static str, tok: Option<&str>, query: &str| {
        let mut request = app
            .client
            .post(format!("{}/graphql", app.address))
            .header("accept", accept)
            .json(&json!({ "query": query }));
        if let Some(tok) = tok {
            request = request.bearer_auth(tok);
        }
        request.send()
    };
    const APOLLO: &str = "multipart/mixed;boundary=graphql;subscriptionSpec=1.0,application/json";
    let mut sse =
        open("text/event-stream", Some(&alice), "subscription { cartChanged { version cart { totalQuantity } } }")
            .await
            .unwrap();
    assert_eq!(sse.status(), 200);
    assert!(sse.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut multipart = open(APOLLO, None, "subscription { inventoryChanged { productId available } }").await.unwrap();
    assert_eq!(multipart.status(), 200);
    let media = multipart.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        media.starts_with("multipart/mixed")
            && media.contains("boundary=\"graphql\"")
            && media.contains("subscriptionSpec"),
        "{media}"
    );
    let started = std::time::Instant::now();
    while listeners().await < before + 2.0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the streams never listened");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    let add = "mutation($p: ID!) { addCartItem(productId: $p, quantity: 2) { userErrors { code } } }";
    let body = app.graphql_as(&alice, add, json!({ "p": product })).await;
    assert_eq!(body["data"]["addCartItem"]["userErrors"], json!([]), "{body}");
    let adjust =
        "mutation($p: ID!) { adjustInventory(productId: $p, delta: 3, idempotencyKey: \"sse-1\") { available } }";
    let body = app.graphql_as(&admin, adjust, json!({ "p": product })).await;
    let available = body["data"]["adjustInventory"]["available"].as_i64().expect("adjusted");

    let text = read_until(&mut sse, |t| t.contains("\n\n")).await;
    let data = text.strip_prefix("event: next\ndata: ").and_then(|t| t.split("\n\n").next()).expect(&text);
    let event: Value = serde_json::from_str(data).unwrap();
    assert_eq!(event["data"]["cartChanged"]["cart"]["totalQuantity"], 2, "{event}");

    let text = read_until(&mut multipart, |t| t.contains("\"payload\"")).await;
    let part = text.split("\r\n--graphql\r\n").find(|p| p.contains("\"payload\"")).unwrap();
    let (headers, json) = part.split_once("\r\n\r\n").unwrap();
    assert!(headers.to_ascii_lowercase().contains("content-type: application/json"), "{part:?}");
    let event: Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(event["payload"]["data"]["inventoryChanged"], json!({ "productId": product, "available": available }));

    // The same authorization as over WebSocket: no token, no cart feed (one result, then the end).
    let mut refused = open("text/event-stream", None, "subscription { cartChanged { version } }").await.unwrap();
    let text = read_until(&mut refused, |t| t.contains("event: complete")).await;
    assert!(text.contains("UNAUTHENTICATED"), "{text}");
    // A query stays plain JSON for a client that accepts JSON too (urql's Accept lists both).
    let r = open("application/json, text/event-stream, multipart/mixed", None, "{ __typename }").await.unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
}

const TYPE_REF: &str = "fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }";

/// Writes an introspected type reference in SDL notation (`[Product!]!`).
fn type_text(t: &Value) -> String {
    match t["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", type_text(&t["ofType"])),
        Some("LIST") => format!("[{}]", type_text(&t["ofType"])),
        _ => t["name"].as_str().unwrap_or("?").to_string(),
    }
}

/// Every type, field, argument, input field and enum value the live schema introspects, with
/// its type and description, is in schema/schema.graphql exactly so, and nothing more is.
#[tokio::test]
async fn introspection_lists_exactly_the_checked_in_schema() {
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
    use std::collections::BTreeSet;
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await else { return };
    let query = format!(
        "{{ __schema {{ types {{ name kind description \
         fields(includeDeprecated: true) {{ name description type {{ ...T }} args {{ name description type {{ ...T }} }} }} \
         inputFields {{ name description type {{ ...T }} }} enumValues(includeDeprecated: true) {{ name description }} }} }} }} {TYPE_REF}"
    );
    let body = app.graphql(&query, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let desc = |d: &Value| d.as_str().map(str::trim).unwrap_or("").to_string();
    let mut live = BTreeSet::new();
    for t in body["data"]["__schema"]["types"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        if name.starts_with("__") || ["String", "Int", "Float", "Boolean", "ID"].contains(&name) {
            continue;
        }
        live.insert(format!("{name} ({}): {}", t["kind"].as_str().unwrap(), desc(&t["description"])));
        for f in t["fields"].as_array().into_iter().flatten().chain(t["inputFields"].as_array().into_iter().flatten()) {
            live.insert(format!(
                "{name}.{}: {} — {}",
                f["name"].as_str().unwrap(),
                type_text(&f["type"]),
                desc(&f["description"])
            ));
            for a in f["args"].as_array().into_iter().flatten() {
                live.insert(format!(
                    "{name}.{}({}): {}",
                    f["name"].as_str().unwrap(),
                    a["name"].as_str().unwrap(),
                    type_text(&a["type"])
                ));
            }
        }
        for v in t["enumValues"].as_array().into_iter().flatten() {
            live.insert(format!("{name}.{} — {}", v["name"].as_str().unwrap(), desc(&v["description"])));
        }
    }
    let sdl = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/schema.graphql"))
        .unwrap();
    let document = async_graphql::parser::parse_schema(&sdl).unwrap();
    let text = |d: &Option<async_graphql::Positioned<String>>| {
        d.as_ref().map(|d| d.node.trim().to_string()).unwrap_or_default()
    };
    let mut file = BTreeSet::new();
    for definition in &document.definitions {
        let TypeSystemDefinition::Type(t) = definition else { continue };
        let (t, name) = (&t.node, t.node.name.node.as_str());
        let kind = match &t.kind {
            TypeKind::Scalar => "SCALAR",
            TypeKind::Object(_) => "OBJECT",
            TypeKind::Interface(_) => "INTERFACE",
            TypeKind::Union(_) => "UNION",
            TypeKind::Enum(_) => "ENUM",
            TypeKind::InputObject(_) => "INPUT_OBJECT",
        };
        file.insert(format!("{name} ({kind}): {}", text(&t.description)));
        let fields = match &t.kind {
            TypeKind::Object(o) => o.fields.iter().collect::<Vec<_>>(),
            TypeKind::Interface(i) => i.fields.iter().collect(),
            _ => Vec::new(),
        };
        for f in fields {
            let f = &f.node;
            file.insert(format!("{name}.{}: {} — {}", f.name.node, f.ty.node, text(&f.description)));
            for a in &f.arguments {
                file.insert(format!("{name}.{}({}): {}", f.name.node, a.node.name.node, a.node.ty.node));
            }
        }
        if let TypeKind::InputObject(i) = &t.kind {
            for f in &i.fields {
                file.insert(format!("{name}.{}: {} — {}", f.node.name.node, f.node.ty.node, text(&f.node.description)));
            }
        }
        if let TypeKind::Enum(e) = &t.kind {
            for v in &e.values {
                file.insert(format!("{name}.{} — {}", v.node.value.node, text(&v.node.description)));
            }
        }
    }
    let only_live: Vec<_> = live.difference(&file).collect();
    let only_file: Vec<_> = file.difference(&live).collect();
    assert!(
        only_live.is_empty() && only_file.is_empty(),
        "introspection only: {only_live:#?}\nSDL only: {only_file:#?}"
    );
    assert!(live.len() > 200, "{} entries compared", live.len());
}
