//! Two customers, two vendors, an admin and an anonymous caller against
//! every protected query; nothing leaks across, and someone else's order reads like a missing one.

use std::collections::{BTreeSet, HashMap};

use securecart::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, first_error_code, on_both_backends, token};

on_both_backends!(ownership_matrix);

const ORDERS: &str = "query($after: String) { orders(first: 100, after: $after) { totalCount \
    pageInfo { hasNextPage endCursor } edges { node { id status total { amount } customer { subject } \
    lines { sku product { vendor { id } } } } } } }";
const ORDER: &str = "query($id: ID!) { order(id: $id) { id customer { subject } } }";

struct Seen {
    total: i64,
    orders: Vec<Value>,
}

async fn orders_of(app: &TestApp, tok: &str) -> Seen {
    let mut orders = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let body = app.graphql_as(tok, ORDERS, json!({ "after": after })).await;
        assert!(body.get("errors").is_none(), "{body}");
        let conn = &body["data"]["orders"];
        orders.extend(conn["edges"].as_array().unwrap().iter().map(|e| e["node"].clone()));
        if conn["pageInfo"]["hasNextPage"] != true {
            return Seen { total: conn["totalCount"].as_i64().unwrap(), orders };
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(String::from);
    }
}

fn ids(orders: &[Value]) -> BTreeSet<String> {
    orders.iter().map(|o| o["id"].as_str().unwrap().to_string()).collect()
}

fn line_vendors(order: &Value) -> BTreeSet<String> {
    order["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["product"]["vendor"]["id"].as_str().unwrap().to_string())
        .collect()
}

async fn ownership_matrix(app: TestApp) {
    app.store
        .seed(securecart::store::seed::SeedSize { products: 20, vendors: 2, customers: 4, orders: 40 }, false)
        .await
        .unwrap();
    let admin = token("root", &[Role::Admin], None);
    let alice = token("alice", &[Role::Customer], None);
    let bob = token("bob", &[Role::Customer], None);
    // vendor-1 is linked by the vendor record's owner; vendor-2 names its vendor in a claim.
    let vendor1 = token("vendor-1", &[Role::Vendor], None);
    let vendor2 = token("someone-at-vendor-2", &[Role::Vendor], Some("2"));
    let nobody = token("mallory", &[], None);

    // The admin sees everything; that is the reference.
    let all = orders_of(&app, &admin).await;
    assert_eq!(all.total, 40);
    assert_eq!(all.orders.len(), 40);
    let by_subject = |subject: &str| -> BTreeSet<String> {
        ids(&all.orders.iter().filter(|o| o["customer"]["subject"] == subject).cloned().collect::<Vec<_>>())
    };
    let vendor_ids: Vec<String> = {
        let mut v: Vec<String> =
            all.orders.iter().flat_map(line_vendors).collect::<BTreeSet<_>>().into_iter().collect();
        v.sort();
        v
    };
    assert_eq!(vendor_ids.len(), 2);
    let vendor_of = |n: usize| vendor_ids[n].clone();
    let with_vendor = |v: &str| -> BTreeSet<String> {
        ids(&all.orders.iter().filter(|o| line_vendors(o).contains(v)).cloned().collect::<Vec<_>>())
    };

    // Customers: exactly their own orders, full lines and totals.
    for (tok, subject, other) in [(&alice, "alice", "bob"), (&bob, "bob", "alice")] {
        let mine = orders_of(&app, tok).await;
        assert!(!mine.orders.is_empty(), "{subject} has orders in the seed");
        assert_eq!(ids(&mine.orders), by_subject(subject), "{subject} sees exactly their orders");
        assert_eq!(mine.total as usize, mine.orders.len());
        assert!(mine.orders.iter().all(|o| o["total"]["amount"].is_string() && o["customer"]["subject"] == subject));
        let me = app.graphql_as(tok, "{ me { subject roles customer { subject } vendor { id } } }", json!({})).await;
        assert_eq!(me["data"]["me"]["customer"]["subject"], subject);
        assert_eq!(me["data"]["me"]["vendor"], Value::Null);
        // The other customer's orders answer exactly like a missing order.
        let missing = securecart::domain::GlobalId::new(securecart::domain::NodeKind::Order, 999_999).encode();
        let missing = app.graphql_as(tok, ORDER, json!({ "id": missing })).await;
        for id in by_subject(other) {
            let body = app.graphql_as(tok, ORDER, json!({ "id": id })).await;
            assert_eq!(first_error_code(&body), "NOT_FOUND");
            assert_eq!(body["errors"][0]["message"], missing["errors"][0]["message"]);
            assert_eq!(body["data"], missing["data"]);
        }
        for id in by_subject(subject) {
            let body = app.graphql_as(tok, ORDER, json!({ "id": id })).await;
            assert_eq!(body["data"]["order"]["customer"]["subject"], subject);
        }
    }

    // Vendors: the orders with their products, only their lines, no totals or customers.
    for (n, tok) in [(0, &vendor1), (1, &vendor2)] {
        let vendor = vendor_of(n);
        let seen = orders_of(&app, tok).await;
        assert_eq!(ids(&seen.orders), with_vendor(&vendor), "vendor {n} sees the orders with its products");
        assert_eq!(seen.total as usize, seen.orders.len());
        for order in &seen.orders {
            assert_eq!(line_vendors(order), BTreeSet::from([vendor.clone()]), "only its own lines: {order}");
            assert_eq!(order["total"], Value::Null);
            assert_eq!(order["customer"], Value::Null);
        }
        let me = app.graphql_as(tok, "{ me { vendor { id } } }", json!({})).await;
        assert_eq!(me["data"]["me"]["vendor"]["id"], vendor.as_str());
        let foreign: Vec<String> = ids(&all.orders).difference(&with_vendor(&vendor)).cloned().collect();
        assert!(!foreign.is_empty());
        for id in foreign.iter().take(5) {
            let body = app.graphql_as(tok, ORDER, json!({ "id": id })).await;
            assert_eq!(first_error_code(&body), "NOT_FOUND");
        }
    }

    // Reserved stock: only the product's vendor and admins.
    let products = app.graphql("{ products(first: 50) { edges { node { id vendor { id } } } } }", json!({})).await;
    let mut first_of: HashMap<String, String> = HashMap::new();
    for e in products["data"]["products"]["edges"].as_array().unwrap() {
        first_of
            .entry(e["node"]["vendor"]["id"].as_str().unwrap().into())
            .or_insert(e["node"]["id"].as_str().unwrap().into());
    }
    let reserved = "query($id: ID!) { product(id: $id) { inventory { available reserved } } }";
    let product_of_v1 = json!({ "id": first_of[&vendor_of(0)] });
    for (who, tok, expected) in [
        ("admin", &admin, None),
        ("vendor 1", &vendor1, None),
        ("vendor 2", &vendor2, Some("FORBIDDEN")),
        ("alice", &alice, Some("FORBIDDEN")),
        ("no roles", &nobody, Some("FORBIDDEN")),
    ] {
        let body = app.graphql_as(tok, reserved, product_of_v1.clone()).await;
        match expected {
            None => assert!(body["data"]["product"]["inventory"]["reserved"].is_i64(), "{who}: {body}"),
            Some(code) => assert_eq!(first_error_code(&body), code, "{who}"),
        }
    }
    let body = app.graphql(reserved, product_of_v1).await;
    assert_eq!(first_error_code(&body), "UNAUTHENTICATED");

    // Anonymous callers and callers without a role get nothing protected.
    for query in [ORDERS, "{ me { subject } }"] {
        let body = app.graphql(query, json!({})).await;
        assert_eq!(first_error_code(&body), "UNAUTHENTICATED", "{query}");
    }
    let body = app.graphql_as(&nobody, ORDERS, json!({})).await;
    assert_eq!(first_error_code(&body), "FORBIDDEN");
    let body = app.graphql_as(&nobody, ORDER, json!({ "id": all.orders[0]["id"] })).await;
    assert_eq!(first_error_code(&body), "FORBIDDEN");
}

on_both_backends!(every_mutation_checks_the_role);

/// The guard half of the matrix: every mutation, every kind of caller. (Ownership within a role
/// — another customer's order, another vendor's product — is covered in `commerce`.)
async fn every_mutation_checks_the_role(app: TestApp) {
    app.seed(4, 2).await;
    let product = securecart::domain::GlobalId::new(securecart::domain::NodeKind::Product, 1).encode();
    let order = securecart::domain::GlobalId::new(securecart::domain::NodeKind::Order, 1).encode();
    let address = json!({ "name": "A", "line1": "1 Road", "city": "Oslo", "postalCode": "0150", "country": "NO" });
    // (mutation, variables, roles allowed besides admin)
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "mutation($p: ID!) { addCartItem(productId: $p, quantity: 1) { userErrors { code } } }",
            json!({ "p": product }),
            &["customer"],
        ),
        (
            "mutation($p: ID!) { updateCartItem(productId: $p, quantity: 2) { userErrors { code } } }",
            json!({ "p": product }),
            &["customer"],
        ),
        (
            "mutation($p: ID!) { removeCartItem(productId: $p) { userErrors { code } } }",
            json!({ "p": product }),
            &["customer"],
        ),
        ("mutation { clearCart { userErrors { code } } }", json!({}), &["customer"]),
        (
            "mutation($a: ShippingAddressInput!) { checkout(input: { idempotencyKey: \"k\", paymentToken: \"tok_visa\", shippingAddress: $a }) { userErrors { code } } }",
            json!({ "a": address }),
            &["customer"],
        ),
        ("mutation($o: ID!) { cancelOrder(id: $o) { userErrors { code } } }", json!({ "o": order }), &["customer"]),
        ("mutation($o: ID!) { fulfillOrder(id: $o) { userErrors { code } } }", json!({ "o": order }), &["vendor"]),
        (
            "mutation { createProduct(input: { sku: \"MX-1\", name: \"X\", price: { amount: \"1\", currencyCode: \"USD\" } }) { userErrors { code } } }",
            json!({}),
            &["vendor"],
        ),
        (
            "mutation($p: ID!) { updateProduct(id: $p, input: { name: \"Y\" }) { userErrors { code } } }",
            json!({ "p": product }),
            &["vendor"],
        ),
        ("mutation($p: ID!) { archiveProduct(id: $p) { userErrors { code } } }", json!({ "p": product }), &["vendor"]),
        (
            "mutation($p: ID!) { setInventory(productId: $p, quantity: 1, compareQuantity: 0) { userErrors { code } } }",
            json!({ "p": product }),
            &["vendor"],
        ),
        (
            "mutation($p: ID!) { adjustInventory(productId: $p, delta: 1, idempotencyKey: \"k\") { userErrors { code } } }",
            json!({ "p": product }),
            &["vendor"],
        ),
        ("mutation { createVendor(input: { name: \"Z Co\" }) { userErrors { code } } }", json!({}), &[]),
        ("{ cart { totalQuantity } }", json!({}), &["customer"]),
        ("{ orders { totalCount } }", json!({}), &["customer", "vendor"]),
        ("{ me { subject } }", json!({}), &["customer", "vendor", "none"]),
    ];
    let callers = [
        ("customer", token("alice", &[Role::Customer], None)),
        ("vendor", token("vendor-1", &[Role::Vendor], None)),
        ("none", token("mallory", &[], None)),
    ];
    for (query, vars, allowed) in &cases {
        let body = app.graphql(query, vars.clone()).await;
        assert_eq!(first_error_code(&body), "UNAUTHENTICATED", "anonymous: {query}");
        for (role, tok) in &callers {
            let body = app.graphql_as(tok, query, vars.clone()).await;
            let code = body["errors"][0]["extensions"]["code"].as_str();
            if allowed.contains(role) {
                assert!(!matches!(code, Some("FORBIDDEN" | "UNAUTHENTICATED")), "{role} may: {query}: {body}");
            } else {
                assert_eq!(code, Some("FORBIDDEN"), "{role} may not: {query}: {body}");
            }
        }
        let body = app.graphql_as(&token("root", &[Role::Admin], None), query, vars.clone()).await;
        let code = body["errors"][0]["extensions"]["code"].as_str();
        assert!(!matches!(code, Some("FORBIDDEN" | "UNAUTHENTICATED")), "admin may: {query}: {body}");
    }
}
