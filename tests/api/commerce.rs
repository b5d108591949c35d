//! Carts, checkout under concurrency and retries, payments, order transitions and
//! vendor operations, on SQLite and PostgreSQL, against a fake payment provider on loopback.

use std::collections::HashSet;

use futures::future::join_all;
use securecart::auth::Role;
use securecart::bus::Event;
use serde_json::{Value, json};

use crate::gateway::FakeGateway;
use crate::helpers::{Backend, TestApp, first_error_code, for_each_backend, spawn_app_with, token};

for_each_backend!(
    concurrent_checkouts_never_oversell,
    retried_checkouts_charge_once,
    declines_change_nothing_and_timeouts_settle,
    order_transitions_and_ownership,
    cart_rules,
    vendor_operations,
);

pub(crate) const ADD: &str = "mutation($p: ID!, $q: Int!) { addCartItem(productId: $p, quantity: $q) { \
    cart { totalQuantity subtotal { amount } available lines { quantity product { sku } } } userErrors { field message code } } }";
pub(crate) const CHECKOUT: &str = "mutation($input: CheckoutInput!) { checkout(input: $input) { replayed \
    order { id status total { amount currencyCode } lines { sku quantity unitPrice { amount } } } userErrors { field message code } } }";
const STOCK: &str = "query($id: ID!) { product(id: $id) { inventory { available } } }";

async fn app_with_gateway(backend: Backend) -> Option<(TestApp, FakeGateway)> {
    let gateway = FakeGateway::start().await;
    let url = gateway.url.clone();
    let app = spawn_app_with(backend, move |s| {
        s.payment.url = Some(url);
        s.payment.timeout_ms = 500;
        s.database.max_connections = 8;
    })
    .await?;
    app.store
        .seed(securecart::store::seed::SeedSize { products: 4, vendors: 2, customers: 2, orders: 0 }, false)
        .await
        .unwrap();
    Some((app, gateway))
}

fn admin() -> String {
    token("root", &[Role::Admin], None)
}

pub(crate) fn input(key: &str, payment_token: &str) -> Value {
    json!({ "input": { "idempotencyKey": key, "paymentToken": payment_token, "shippingAddress": {
        "name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London", "postalCode": "SW1Y 4JH", "country": "gb" } } })
}

/// Creates a product for vendor 1 with `units` in stock; returns its id.
pub(crate) async fn product_with_stock(app: &TestApp, sku: &str, price: &str, units: i64) -> String {
    let vendor = securecart::domain::GlobalId::new(securecart::domain::NodeKind::Vendor, 1).encode();
    let body = app
        .graphql_as(
            &admin(),
            "mutation($i: CreateProductInput!) { createProduct(input: $i) { product { id } userErrors { code } } }",
            json!({ "i": { "vendorId": vendor, "sku": sku, "name": format!("Test {sku}"), "price": { "amount": price, "currencyCode": "USD" } } }),
        )
        .await;
    let id = body["data"]["createProduct"]["product"]["id"].as_str().unwrap_or_else(|| panic!("{body}")).to_string();
    let body = app
        .graphql_as(
            &admin(),
            "mutation($p: ID!, $q: Int!) { setInventory(productId: $p, quantity: $q, compareQuantity: 0) { available userErrors { code } } }",
            json!({ "p": id, "q": units }),
        )
        .await;
    assert_eq!(body["data"]["setInventory"]["available"], units, "{body}");
    id
}

async fn available(app: &TestApp, product: &str) -> i64 {
    app.graphql(STOCK, json!({ "id": product })).await["data"]["product"]["inventory"]["available"].as_i64().unwrap()
}

/// `Inventory.reserved` as the product's vendor reads it.
async fn reserved(app: &TestApp, vendor: &str, product: &str) -> i64 {
    let body = app
        .graphql_as(vendor, "query($id: ID!) { product(id: $id) { inventory { reserved } } }", json!({ "id": product }))
        .await;
    body["data"]["product"]["inventory"]["reserved"].as_i64().unwrap_or_else(|| panic!("{body}"))
}

async fn order_count(app: &TestApp) -> i64 {
    let body = app.graphql_as(&admin(), "{ orders { totalCount } }", json!({})).await;
    body["data"]["orders"]["totalCount"].as_i64().unwrap()
}

/// 200 concurrent checkouts by different customers for 10 units.
async fn concurrent_checkouts_never_oversell(backend: Backend) {
    let Some((app, gateway)) = app_with_gateway(backend).await else { return };
    let product = product_with_stock(&app, "RACE-1", "25.00", 10).await;
    let mut events = app.bus.subscribe();
    let customers: Vec<String> = (0..200).map(|i| token(&format!("shopper-{i}"), &[Role::Customer], None)).collect();
    let adds = join_all(customers.iter().map(|t| app.graphql_as(t, ADD, json!({ "p": product, "q": 1 })))).await;
    assert!(adds.iter().all(|b| b["data"]["addCartItem"]["userErrors"] == json!([])), "carts filled");
    let results = join_all(
        customers.iter().enumerate().map(|(i, t)| app.graphql_as(t, CHECKOUT, input(&format!("race-{i}"), "tok_visa"))),
    )
    .await;
    let paid: Vec<&Value> = results.iter().filter(|b| b["data"]["checkout"]["order"]["status"] == "PAID").collect();
    let refused: Vec<&str> =
        results.iter().filter_map(|b| b["data"]["checkout"]["userErrors"][0]["code"].as_str()).collect();
    assert_eq!(paid.len(), 10, "exactly the stock is sold");
    assert_eq!(refused.len(), 190);
    assert!(refused.iter().all(|c| *c == "OUT_OF_STOCK"), "{refused:?}");
    assert!(
        results.iter().all(|b| b.get("errors").is_none()),
        "no errors: {:?}",
        results.iter().find(|b| b.get("errors").is_some())
    );
    assert_eq!(available(&app, &product).await, 0);
    assert_eq!(order_count(&app).await, 10);
    assert_eq!(gateway.charges(), 10, "one charge per paid order");
    assert_eq!(gateway.requests(), 10, "one charge request per paid order, none for the refused");
    for order in paid {
        assert_eq!(order["data"]["checkout"]["order"]["total"]["amount"], "25.00");
    }
    // Stock changes were published after commit, each with the product's next version, newest
    // last, ending at 0. (Two commits handed over in the other order deliver only the newer one:
    // a version may be skipped, never repeated or reversed.)
    let mut seen = Vec::new();
    while let Ok(r) = events.try_recv() {
        if let Event::Inventory { available, delta, .. } = &r.event {
            seen.push((r.version, *available, *delta));
        }
    }
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 > w[1].1), "versions up, stock down: {seen:?}");
    // Version 1 was the stock set before the subscription; each checkout took one unit.
    assert_eq!(seen.last().map(|s| (s.0, s.1)), Some((11, 0)), "the last event is the current state: {seen:?}");
    assert!(seen.iter().all(|(v, a, d)| *d == -1 && v + a == 11), "{seen:?}");
}

/// 20 concurrent retries of one checkout give one order and one charge.
async fn retried_checkouts_charge_once(backend: Backend) {
    let Some((app, gateway)) = app_with_gateway(backend).await else { return };
    let a = product_with_stock(&app, "RETRY-A", "10.50", 5).await;
    let b = product_with_stock(&app, "RETRY-B", "3.25", 5).await;
    let alice = token("alice", &[Role::Customer], None);
    app.graphql_as(&alice, ADD, json!({ "p": a, "q": 2 })).await;
    app.graphql_as(&alice, ADD, json!({ "p": b, "q": 3 })).await;
    let results = join_all((0..20).map(|_| app.graphql_as(&alice, CHECKOUT, input("order-42", "tok_visa")))).await;
    let ids: HashSet<&str> = results
        .iter()
        .map(|r| r["data"]["checkout"]["order"]["id"].as_str().unwrap_or_else(|| panic!("{r}")))
        .collect();
    assert_eq!(ids.len(), 1, "one order for all retries");
    let placed = results.iter().filter(|r| r["data"]["checkout"]["replayed"] == false).count();
    assert_eq!(placed, 1, "one placed, the rest replayed");
    let order = &results[0]["data"]["checkout"]["order"];
    assert_eq!(order["total"]["amount"], "30.75", "2 × 10.50 + 3 × 3.25 in integer cents");
    assert_eq!(gateway.charges(), 1);
    assert_eq!(gateway.requests(), 1, "the 19 replays never reach the gateway, not even with the same key");
    assert_eq!(order_count(&app).await, 1);
    assert_eq!((available(&app, &a).await, available(&app, &b).await), (3, 2));
    // The same key with another body is refused, and nothing happens.
    let body = app.graphql_as(&alice, CHECKOUT, input("order-42", "tok_mastercard")).await;
    assert_eq!(body["data"]["checkout"]["userErrors"][0]["code"], "IDEMPOTENCY_KEY_REUSED");
    assert_eq!((gateway.charges(), gateway.requests()), (1, 1));
    // The same key from another customer is another checkout (keys are per customer): an empty cart.
    let bob = token("bob", &[Role::Customer], None);
    let body = app.graphql_as(&bob, CHECKOUT, input("order-42", "tok_visa")).await;
    assert_eq!(body["data"]["checkout"]["userErrors"][0]["code"], "CART_EMPTY");
}

/// A decline leaves stock, orders and the cart as they were. A timeout tells the truth: the
/// order is held `PENDING` with its stock (the provider may still charge), and a retry with the
/// same key settles it once the provider has the answer, without a second charge.
async fn declines_change_nothing_and_timeouts_settle(backend: Backend) {
    let Some((app, gateway)) = app_with_gateway(backend).await else { return };
    let p = product_with_stock(&app, "PAY-1", "99.99", 5).await;
    let alice = token("alice", &[Role::Customer], None);
    app.graphql_as(&alice, ADD, json!({ "p": p, "q": 2 })).await;
    let body = app.graphql_as(&alice, CHECKOUT, input("k-declined", "tok_declined")).await;
    assert_eq!(body["data"]["checkout"]["userErrors"][0]["code"], "PAYMENT_DECLINED", "{body}");
    assert_eq!(body["data"]["checkout"]["order"], Value::Null);
    assert_eq!(available(&app, &p).await, 5, "declined: no stock taken");
    assert_eq!(order_count(&app).await, 0, "declined: no order");
    let cart = app.graphql_as(&alice, "{ cart { totalQuantity } }", json!({})).await;
    assert_eq!(cart["data"]["cart"]["totalQuantity"], 2, "declined: the cart is kept");

    let body = app.graphql_as(&alice, CHECKOUT, input("k-slow", "tok_slow")).await;
    let error = &body["data"]["checkout"]["userErrors"][0];
    assert_eq!(error["code"], "PAYMENT_TIMEOUT", "{body}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("retry with the same idempotency key") && !message.contains("nothing was charged"),
        "{message}"
    );
    assert_eq!(available(&app, &p).await, 3, "timed out: the stock is held for the pending order");
    let orders = app.graphql_as(&alice, "{ orders { edges { node { status } } } }", json!({})).await;
    assert_eq!(orders["data"]["orders"]["edges"], json!([{ "node": { "status": "PENDING" } }]), "{orders}");
    // A retry before the provider has finished is still pending; after, it is paid, once.
    let started = std::time::Instant::now();
    while gateway.charges() == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the slow charge never completed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let body = app.graphql_as(&alice, CHECKOUT, input("k-slow", "tok_slow")).await;
    assert_eq!(body["data"]["checkout"]["order"]["status"], "PAID", "{body}");
    assert_eq!(gateway.charges(), 1, "asked again under its key: no second charge");
    assert_eq!(available(&app, &p).await, 3);
    let body = app.graphql_as(&alice, CHECKOUT, input("k-slow", "tok_slow")).await;
    assert_eq!(body["data"]["checkout"]["replayed"], true, "{body}");
    assert_eq!(gateway.charges(), 1);
    app.graphql_as(&alice, ADD, json!({ "p": p, "q": 2 })).await;
    // Bad input is refused before anything is written.
    let mut bad = input("k-bad", "tok_visa");
    bad["input"]["shippingAddress"]["country"] = json!("XX");
    let body = app.graphql_as(&alice, CHECKOUT, bad).await;
    let error = &body["data"]["checkout"]["userErrors"][0];
    assert_eq!(error["code"], "INVALID_ADDRESS");
    assert_eq!(error["field"], json!(["input", "shippingAddress", "country"]));
    let body = app.graphql_as(&alice, CHECKOUT, input("has spaces", "tok_visa")).await;
    assert_eq!(body["data"]["checkout"]["userErrors"][0]["code"], "INVALID_IDEMPOTENCY_KEY");
    assert_eq!(available(&app, &p).await, 3);
    // And then it works.
    let body = app.graphql_as(&alice, CHECKOUT, input("k-ok", "tok_visa")).await;
    assert_eq!(body["data"]["checkout"]["order"]["status"], "PAID", "{body}");
    assert_eq!(available(&app, &p).await, 1);
    assert_eq!(gateway.charges(), 2);
    let cart = app.graphql_as(&alice, "{ cart { totalQuantity lines { quantity } } }", json!({})).await;
    assert_eq!(cart["data"]["cart"]["totalQuantity"], 0, "the cart is emptied");
}

/// Illegal transitions and other people's orders are refused; a cancel restores stock.
async fn order_transitions_and_ownership(backend: Backend) {
    let Some((app, gateway)) = app_with_gateway(backend).await else { return };
    let p = product_with_stock(&app, "FLOW-1", "12.00", 10).await;
    let alice = token("alice", &[Role::Customer], None);
    let bob = token("bob", &[Role::Customer], None);
    let vendor1 = token("vendor-1", &[Role::Vendor], None);
    let vendor2 = token("vendor-2", &[Role::Vendor], None);
    let place = |key: &'static str| {
        let (app, alice, p) = (&app, alice.clone(), p.clone());
        async move {
            app.graphql_as(&alice, ADD, json!({ "p": p, "q": 4 })).await;
            let body = app.graphql_as(&alice, CHECKOUT, input(key, "tok_visa")).await;
            body["data"]["checkout"]["order"]["id"].as_str().unwrap_or_else(|| panic!("{body}")).to_string()
        }
    };
    const CANCEL: &str = "mutation($id: ID!) { cancelOrder(id: $id) { order { status } userErrors { code } } }";
    const FULFIL: &str = "mutation($id: ID!) { fulfillOrder(id: $id) { order { status } userErrors { code } } }";

    let first = place("flow-1").await;
    assert_eq!(available(&app, &p).await, 6);
    assert_eq!(reserved(&app, &vendor1, &p).await, 4, "a paid order holds its units until fulfilled");
    // Not theirs: exactly like a missing order.
    let body = app.graphql_as(&bob, CANCEL, json!({ "id": first })).await;
    assert_eq!(first_error_code(&body), "NOT_FOUND");
    let body = app.graphql_as(&vendor2, FULFIL, json!({ "id": first })).await;
    assert_eq!(first_error_code(&body), "NOT_FOUND", "vendor 2 has no line in it");
    let body = app.graphql_as(&alice, FULFIL, json!({ "id": first })).await;
    assert_eq!(first_error_code(&body), "FORBIDDEN", "customers do not fulfil");
    let body = app.graphql_as(&vendor1, CANCEL, json!({ "id": first })).await;
    assert_eq!(first_error_code(&body), "FORBIDDEN", "vendors do not cancel");
    // PAID → FULFILLED, then no cancel.
    let body = app.graphql_as(&vendor1, FULFIL, json!({ "id": first })).await;
    assert_eq!(body["data"]["fulfillOrder"]["order"]["status"], "FULFILLED", "{body}");
    assert_eq!(reserved(&app, &vendor1, &p).await, 0, "shipped: no longer held");
    let body = app.graphql_as(&alice, CANCEL, json!({ "id": first })).await;
    assert_eq!(body["data"]["cancelOrder"]["userErrors"][0]["code"], "INVALID_TRANSITION");
    assert_eq!(body["data"]["cancelOrder"]["order"]["status"], "FULFILLED");
    let body = app.graphql_as(&vendor1, FULFIL, json!({ "id": first })).await;
    assert_eq!(body["data"]["fulfillOrder"]["userErrors"][0]["code"], "INVALID_TRANSITION");
    assert_eq!(available(&app, &p).await, 6);

    // A paid order cancelled by its customer: refunded, stock back.
    let second = place("flow-2").await;
    assert_eq!(available(&app, &p).await, 2);
    assert_eq!(reserved(&app, &vendor1, &p).await, 4);
    let body = app.graphql_as(&alice, CANCEL, json!({ "id": second })).await;
    assert_eq!(body["data"]["cancelOrder"]["order"]["status"], "CANCELLED", "{body}");
    assert_eq!(available(&app, &p).await, 6, "stock restored");
    assert_eq!(reserved(&app, &vendor1, &p).await, 0, "cancelled: released");
    assert_eq!(gateway.refunds(), 1);
    let body = app.graphql_as(&alice, CANCEL, json!({ "id": second })).await;
    assert_eq!(body["data"]["cancelOrder"]["userErrors"][0]["code"], "INVALID_TRANSITION");
    assert_eq!(available(&app, &p).await, 6, "a second cancel restores nothing");
    assert_eq!(gateway.refunds(), 1);
    assert_eq!(gateway.requests(), 3, "two charges and one refund, nothing retried");
    let body = app.graphql_as(&vendor1, FULFIL, json!({ "id": second })).await;
    assert_eq!(body["data"]["fulfillOrder"]["userErrors"][0]["code"], "INVALID_TRANSITION");
}

async fn cart_rules(backend: Backend) {
    let Some((app, _gateway)) = app_with_gateway(backend).await else { return };
    let p = product_with_stock(&app, "CART-1", "1.10", 2).await;
    let alice = token("alice", &[Role::Customer], None);
    for q in [0, -1, 1000] {
        let body = app.graphql_as(&alice, ADD, json!({ "p": p, "q": q })).await;
        assert_eq!(body["data"]["addCartItem"]["userErrors"][0]["code"], "INVALID_QUANTITY", "{q}");
        assert_eq!(body["data"]["addCartItem"]["cart"]["totalQuantity"], 0);
    }
    let body = app.graphql_as(&alice, ADD, json!({ "p": p, "q": 3 })).await;
    let cart = &body["data"]["addCartItem"]["cart"];
    assert_eq!((cart["totalQuantity"].as_i64(), cart["subtotal"]["amount"].as_str()), (Some(3), Some("3.30")));
    assert_eq!(cart["available"], false, "3 wanted, 2 in stock");
    let body = app.graphql_as(&alice, ADD, json!({ "p": p, "q": 997 })).await;
    assert_eq!(body["data"]["addCartItem"]["userErrors"][0]["code"], "INVALID_QUANTITY", "a line holds at most 999");
    assert_eq!(body["data"]["addCartItem"]["cart"]["totalQuantity"], 3);
    const UPDATE: &str = "mutation($p: ID!, $q: Int!) { updateCartItem(productId: $p, quantity: $q) { cart { totalQuantity } userErrors { code } } }";
    let body = app.graphql_as(&alice, UPDATE, json!({ "p": p, "q": 2 })).await;
    assert_eq!(body["data"]["updateCartItem"]["cart"]["totalQuantity"], 2);
    let body = app.graphql_as(&alice, UPDATE, json!({ "p": p, "q": 0 })).await;
    assert_eq!(body["data"]["updateCartItem"]["cart"]["totalQuantity"], 0);
    let body = app.graphql_as(&alice, UPDATE, json!({ "p": p, "q": 1 })).await;
    assert_eq!(body["data"]["updateCartItem"]["userErrors"][0]["code"], "CART_LINE_NOT_FOUND");
    // Archived products cannot be added.
    app.graphql_as(
        &admin(),
        "mutation($id: ID!) { archiveProduct(id: $id) { product { status } } }",
        json!({ "id": p }),
    )
    .await;
    let body = app.graphql_as(&alice, ADD, json!({ "p": p, "q": 1 })).await;
    assert_eq!(body["data"]["addCartItem"]["userErrors"][0]["code"], "PRODUCT_ARCHIVED");
    // Who may have a cart.
    let body = app.graphql("{ cart { totalQuantity } }", json!({})).await;
    assert_eq!(first_error_code(&body), "UNAUTHENTICATED");
    let body = app.graphql_as(&token("vendor-1", &[Role::Vendor], None), "{ cart { totalQuantity } }", json!({})).await;
    assert_eq!(first_error_code(&body), "FORBIDDEN");
}

async fn vendor_operations(backend: Backend) {
    let Some((app, _gateway)) = app_with_gateway(backend).await else { return };
    let vendor1 = token("vendor-1", &[Role::Vendor], None);
    let vendor2 = token("vendor-2", &[Role::Vendor], None);
    let v2_id = securecart::domain::GlobalId::new(securecart::domain::NodeKind::Vendor, 2).encode();
    const CREATE: &str = "mutation($i: CreateProductInput!) { createProduct(input: $i) { product { id sku vendor { name } } userErrors { field code } } }";
    let new = |sku: &str| json!({ "i": { "sku": sku, "name": "Lamp", "price": { "amount": "19.99", "currencyCode": "USD" } } });
    let body = app.graphql_as(&vendor1, CREATE, new("v1-lamp")).await;
    let lamp = body["data"]["createProduct"]["product"]["id"].as_str().unwrap_or_else(|| panic!("{body}")).to_string();
    assert_eq!(body["data"]["createProduct"]["product"]["sku"], "V1-LAMP");
    let body = app.graphql_as(&vendor1, CREATE, new("v1-lamp")).await;
    assert_eq!(body["data"]["createProduct"]["userErrors"][0]["code"], "SKU_TAKEN");
    let mut other = new("v1-other");
    other["i"]["vendorId"] = json!(v2_id);
    let body = app.graphql_as(&vendor1, CREATE, other).await;
    assert_eq!(first_error_code(&body), "FORBIDDEN", "a vendor cannot create for another");
    let mut bad = new("ok-sku");
    bad["i"]["price"]["currencyCode"] = json!("JPY");
    let body = app.graphql_as(&vendor1, CREATE, bad).await;
    assert_eq!(body["data"]["createProduct"]["userErrors"][0]["code"], "INVALID_CURRENCY");

    // Another vendor cannot touch it.
    for (query, vars) in [
        ("mutation($id: ID!) { archiveProduct(id: $id) { product { id } } }", json!({ "id": lamp })),
        (
            "mutation($id: ID!) { updateProduct(id: $id, input: { name: \"Mine\" }) { product { id } } }",
            json!({ "id": lamp }),
        ),
        (
            "mutation($id: ID!) { setInventory(productId: $id, quantity: 5, compareQuantity: 0) { available } }",
            json!({ "id": lamp }),
        ),
        (
            "mutation($id: ID!) { adjustInventory(productId: $id, delta: 5, idempotencyKey: \"x\") { available } }",
            json!({ "id": lamp }),
        ),
    ] {
        let body = app.graphql_as(&vendor2, query, vars).await;
        assert_eq!(first_error_code(&body), "FORBIDDEN", "{query}");
    }
    let mut events = app.bus.subscribe();
    // Compare-and-set.
    const SET: &str = "mutation($id: ID!, $q: Int!, $c: Int!) { setInventory(productId: $id, quantity: $q, compareQuantity: $c) { available userErrors { code } } }";
    let body = app.graphql_as(&vendor1, SET, json!({ "id": lamp, "q": 7, "c": 3 })).await;
    assert_eq!(body["data"]["setInventory"]["userErrors"][0]["code"], "INVENTORY_CONFLICT");
    assert_eq!(body["data"]["setInventory"]["available"], 0, "the current level comes back");
    let body = app.graphql_as(&vendor1, SET, json!({ "id": lamp, "q": 7, "c": 0 })).await;
    assert_eq!(body["data"]["setInventory"]["available"], 7);
    // Idempotent adjustments.
    const ADJ: &str = "mutation($id: ID!, $d: Int!, $k: String!) { adjustInventory(productId: $id, delta: $d, idempotencyKey: $k) { available replayed userErrors { code } } }";
    let body = app.graphql_as(&vendor1, ADJ, json!({ "id": lamp, "d": 5, "k": "delivery-1" })).await;
    assert_eq!(
        (body["data"]["adjustInventory"]["available"].as_i64(), body["data"]["adjustInventory"]["replayed"].as_bool()),
        (Some(12), Some(false))
    );
    let body = app.graphql_as(&vendor1, ADJ, json!({ "id": lamp, "d": 5, "k": "delivery-1" })).await;
    assert_eq!(
        (body["data"]["adjustInventory"]["available"].as_i64(), body["data"]["adjustInventory"]["replayed"].as_bool()),
        (Some(12), Some(true))
    );
    let body = app.graphql_as(&vendor1, ADJ, json!({ "id": lamp, "d": 6, "k": "delivery-1" })).await;
    assert_eq!(body["data"]["adjustInventory"]["userErrors"][0]["code"], "IDEMPOTENCY_KEY_REUSED");
    let body = app.graphql_as(&vendor1, ADJ, json!({ "id": lamp, "d": -13, "k": "shrink" })).await;
    assert_eq!(body["data"]["adjustInventory"]["userErrors"][0]["code"], "INSUFFICIENT_STOCK");
    assert_eq!(available(&app, &lamp).await, 12);
    // One event per real change, with the new level and the delta.
    let mut changes = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::Inventory { available, delta, .. } = &event.event {
            changes.push((*available, *delta));
        }
    }
    assert_eq!(changes, vec![(7, 7), (12, 5)]);
    // Vendors: admins only.
    const VENDOR: &str = "mutation { createVendor(input: { name: \"Fresh Goods\", ownerSubject: \"fresh\" }) { vendor { slug } userErrors { code } } }";
    assert_eq!(first_error_code(&app.graphql_as(&vendor1, VENDOR, json!({})).await), "FORBIDDEN");
    let body = app.graphql_as(&admin(), VENDOR, json!({})).await;
    assert_eq!(body["data"]["createVendor"]["vendor"]["slug"], "fresh-goods");
    let body = app.graphql_as(&admin(), VENDOR, json!({})).await;
    assert_eq!(body["data"]["createVendor"]["userErrors"][0]["code"], "VENDOR_TAKEN");
    // The new vendor's owner can now create products for it.
    let body = app.graphql_as(&token("fresh", &[Role::Vendor], None), CREATE, new("fresh-1")).await;
    assert_eq!(body["data"]["createProduct"]["product"]["vendor"]["name"], "Fresh Goods", "{body}");
}
