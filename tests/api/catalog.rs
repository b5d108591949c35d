//! The public catalog through HTTP: pages, cursors, filters, sorting, ids, and SQL per request.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::{TestApp, first_error_code, on_both_backends};

on_both_backends!(
    first_page_has_every_field,
    forward_pages_walk_every_sort_without_gaps,
    backward_pages_mirror_forward_pages,
    filters_narrow_the_catalog,
    page_limits_and_bad_cursors_are_refused,
    ids_round_trip_through_product_node_and_vendor,
    a_page_of_100_costs_a_fixed_number_of_statements,
    vendors_page_by_name,
    internal_errors_are_masked,
);

const PAGE: &str = r#"query($first: Int, $after: String, $last: Int, $before: String, $sort: ProductSortKeys, $filter: ProductFilterInput) {
  products(first: $first, after: $after, last: $last, before: $before, sortBy: $sort, filter: $filter) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id sku name price { amount currencyCode } inventory { available } vendor { id name } } }
  }
}"#;

fn nodes(body: &Value) -> Vec<Value> {
    body["data"]["products"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

fn price(node: &Value) -> f64 {
    node["price"]["amount"].as_str().unwrap().parse().unwrap()
}

async fn first_page_has_every_field(app: TestApp) {
    app.seed(30, 4).await;
    let body = app
        .graphql(
            "{ products(first: 5) { edges { node { id sku name description price { amount currencyCode } \
             status inventory { available inStock } vendor { id name } createdAt updatedAt } } } }",
            json!({}),
        )
        .await;
    let nodes = nodes(&body);
    assert_eq!(nodes.len(), 5, "{body}");
    for n in &nodes {
        assert!(n["name"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(n["sku"].as_str().unwrap().starts_with("SC-"));
        let amount = n["price"]["amount"].as_str().unwrap();
        assert!(amount.contains('.') && amount.split('.').nth(1).unwrap().len() == 2, "decimal string: {amount}");
        assert_eq!(n["price"]["currencyCode"], "USD");
        assert_eq!(n["status"], "ACTIVE");
        let available = n["inventory"]["available"].as_i64().unwrap();
        assert_eq!(n["inventory"]["inStock"].as_bool().unwrap(), available > 0);
        assert!(n["vendor"]["name"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(n["createdAt"].as_str().unwrap().starts_with("2026-"));
    }
    // Newest first by default.
    assert_eq!(nodes[0]["sku"], "SC-002-000030");
}

async fn walk(app: &TestApp, sort: &str, size: i64) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let body = app.graphql(PAGE, json!({ "first": size, "after": after, "sort": sort })).await;
        let conn = &body["data"]["products"];
        all.extend(nodes(&body));
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], after.is_some());
        if !conn["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            return all;
        }
        after = Some(conn["pageInfo"]["endCursor"].as_str().unwrap().to_string());
        assert!(all.len() < 1000, "runaway pagination");
    }
}

async fn forward_pages_walk_every_sort_without_gaps(app: TestApp) {
    app.seed(47, 5).await;
    for sort in ["NEWEST", "NAME", "PRICE_ASC", "PRICE_DESC"] {
        let all = walk(&app, sort, 10).await;
        assert_eq!(all.len(), 47, "{sort}: every product once");
        let ids: HashSet<_> = all.iter().map(|n| n["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids.len(), 47, "{sort}: no duplicates");
        for pair in all.windows(2) {
            let ok = match sort {
                "NAME" => pair[0]["name"].as_str() <= pair[1]["name"].as_str(),
                "PRICE_ASC" => price(&pair[0]) <= price(&pair[1]),
                "PRICE_DESC" => price(&pair[0]) >= price(&pair[1]),
                // Newest first: ids (which grow with creation) strictly decrease.
                _ => row_id(&pair[0]) > row_id(&pair[1]),
            };
            assert!(ok, "{sort} order broken between {} and {}", pair[0], pair[1]);
        }
    }
    let body = app.graphql(PAGE, json!({ "first": 1 })).await;
    assert_eq!(body["data"]["products"]["totalCount"], 47);
}

async fn backward_pages_mirror_forward_pages(app: TestApp) {
    app.seed(25, 3).await;
    let forward = walk(&app, "PRICE_ASC", 25).await;
    // The last 10, then the 10 before them.
    let body = app.graphql(PAGE, json!({ "last": 10, "sort": "PRICE_ASC" })).await;
    let last10 = nodes(&body);
    assert_eq!(last10, forward[15..25].to_vec());
    let info = &body["data"]["products"]["pageInfo"];
    assert_eq!(info["hasPreviousPage"], true);
    assert_eq!(info["hasNextPage"], false);
    let before = info["startCursor"].as_str().unwrap();
    let body = app.graphql(PAGE, json!({ "last": 10, "before": before, "sort": "PRICE_ASC" })).await;
    assert_eq!(nodes(&body), forward[5..15].to_vec());
    assert_eq!(body["data"]["products"]["pageInfo"]["hasNextPage"], true);
}

async fn filters_narrow_the_catalog(app: TestApp) {
    app.seed(60, 4).await;
    let everything = walk(&app, "NEWEST", 100).await;

    let body = app.graphql(PAGE, json!({ "first": 100, "filter": { "minPrice": "50", "maxPrice": "150.50" } })).await;
    let expected = everything.iter().filter(|n| (50.0..=150.5).contains(&price(n))).count();
    assert_eq!(nodes(&body).len(), expected);
    assert_eq!(body["data"]["products"]["totalCount"], expected);
    assert!(expected > 0 && expected < 60, "the filter should split the seed: {expected}");

    let vendor = everything[0]["vendor"]["id"].as_str().unwrap();
    let body = app.graphql(PAGE, json!({ "first": 100, "filter": { "vendorId": vendor } })).await;
    let got = nodes(&body);
    assert_eq!(got.len(), 15);
    assert!(got.iter().all(|n| n["vendor"]["id"] == vendor));

    let body = app.graphql(PAGE, json!({ "first": 100, "filter": { "inStock": false } })).await;
    let out = everything.iter().filter(|n| n["inventory"]["available"] == 0).count();
    assert_eq!(nodes(&body).len(), out);
    let body = app.graphql(PAGE, json!({ "first": 100, "filter": { "inStock": true } })).await;
    assert_eq!(nodes(&body).len(), 60 - out);

    let word = everything[0]["name"].as_str().unwrap().split(' ').next().unwrap().to_lowercase();
    let body = app.graphql(PAGE, json!({ "first": 100, "filter": { "search": word.to_uppercase() } })).await;
    let hits = nodes(&body);
    let expected = everything.iter().filter(|n| n["name"].as_str().unwrap().to_lowercase().contains(&word)).count();
    assert_eq!(hits.len(), expected, "case-insensitive search for {word}");
    // LIKE wildcards in the search text are literal.
    let body = app.graphql(PAGE, json!({ "first": 100, "filter": { "search": "%" } })).await;
    assert_eq!(nodes(&body).len(), 0);
    // A bad decimal is refused before execution, as a variable and inline.
    let body = app.graphql(PAGE, json!({ "first": 5, "filter": { "minPrice": "1.999" } })).await;
    assert_eq!(first_error_code(&body), "GRAPHQL_VALIDATION_FAILED");
    assert!(body.get("data").is_none_or(Value::is_null), "{body}");
    let body = app.graphql(r#"{ products(filter: { maxPrice: "ten" }) { totalCount } }"#, json!({})).await;
    assert_eq!(first_error_code(&body), "GRAPHQL_VALIDATION_FAILED");
    assert!(body["errors"][0]["message"].as_str().unwrap().to_lowercase().contains("decimal"), "{body}");
}

async fn page_limits_and_bad_cursors_are_refused(app: TestApp) {
    app.seed(5, 1).await;
    let body = app.graphql(PAGE, json!({ "first": 101 })).await;
    assert_eq!(first_error_code(&body), "PAGE_SIZE_EXCEEDED");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("100"));
    assert_eq!(body["data"], Value::Null);
    let body = app.graphql(PAGE, json!({ "first": 100 })).await;
    assert!(body.get("errors").is_none(), "{body}");
    let body = app.graphql(PAGE, json!({ "first": 1, "last": 1 })).await;
    assert_eq!(first_error_code(&body), "BAD_USER_INPUT");
    let body = app.graphql(PAGE, json!({ "first": -1 })).await;
    assert_eq!(first_error_code(&body), "BAD_USER_INPUT");
    let body = app.graphql(PAGE, json!({ "first": 2, "after": "not-a-cursor" })).await;
    assert_eq!(first_error_code(&body), "INVALID_CURSOR");
    // A cursor of one sort order is refused by another.
    let body = app.graphql(PAGE, json!({ "first": 2, "sort": "NAME" })).await;
    let cursor = body["data"]["products"]["pageInfo"]["endCursor"].as_str().unwrap().to_string();
    let body = app.graphql(PAGE, json!({ "first": 2, "after": cursor, "sort": "PRICE_ASC" })).await;
    assert_eq!(first_error_code(&body), "INVALID_CURSOR");
    // Without first/last, a page has 20.
    app.store
        .seed(securecart::store::seed::SeedSize { products: 0, vendors: 0, customers: 0, orders: 0 }, true)
        .await
        .unwrap();
    app.seed(30, 2).await;
    let body = app.graphql(PAGE, json!({})).await;
    assert_eq!(nodes(&body).len(), 20);
}

async fn ids_round_trip_through_product_node_and_vendor(app: TestApp) {
    app.seed(3, 2).await;
    let body = app.graphql(PAGE, json!({ "first": 1 })).await;
    let node = &nodes(&body)[0];
    let id = node["id"].as_str().unwrap();
    let body = app.graphql("query($id: ID!) { product(id: $id) { id sku } }", json!({ "id": id })).await;
    assert_eq!(body["data"]["product"]["sku"], node["sku"]);
    let body = app
        .graphql("query($id: ID!) { node(id: $id) { id __typename ... on Product { sku } } }", json!({ "id": id }))
        .await;
    assert_eq!(body["data"]["node"]["__typename"], "Product");
    assert_eq!(body["data"]["node"]["sku"], node["sku"]);
    let vendor = node["vendor"]["id"].as_str().unwrap();
    let body = app
        .graphql(
            "query($id: ID!) { node(id: $id) { __typename ... on Vendor { name } } vendor(id: $id) { name products(first: 10) { edges { node { id } } } } }",
            json!({ "id": vendor }),
        )
        .await;
    assert_eq!(body["data"]["node"]["__typename"], "Vendor");
    assert_eq!(body["data"]["vendor"]["name"], node["vendor"]["name"]);
    assert!(body["data"]["vendor"]["products"]["edges"].as_array().unwrap().iter().any(|e| e["node"]["id"] == id));
    // A vendor id is not a product id; garbage is not an id; a well-formed unknown id is NOT_FOUND.
    let body = app.graphql("query($id: ID!) { product(id: $id) { id } }", json!({ "id": vendor })).await;
    assert_eq!(first_error_code(&body), "INVALID_ID");
    let body = app.graphql("query($id: ID!) { node(id: $id) { id } }", json!({ "id": "%%%" })).await;
    assert_eq!(first_error_code(&body), "INVALID_ID");
    let unknown = securecart::domain::GlobalId::new(securecart::domain::NodeKind::Product, 999_999).encode();
    let body = app.graphql("query($id: ID!) { product(id: $id) { id } }", json!({ "id": unknown })).await;
    assert_eq!(first_error_code(&body), "NOT_FOUND");
    assert_eq!(body["data"]["product"], Value::Null);
}

/// A page of 100 products with vendor and inventory costs 2 statements (the products with
/// their stock, then one batched vendor lookup), 3 with `totalCount`.
async fn a_page_of_100_costs_a_fixed_number_of_statements(app: TestApp) {
    app.seed(150, 30).await;
    let query = "{ products(first: 100) { edges { node { name vendor { name } inventory { available } } } } }";
    let (count, body) = app.graphql_counted(None, query, json!({})).await;
    assert_eq!(nodes(&body).len(), 100);
    let vendors: HashSet<_> = nodes(&body).iter().map(|n| n["vendor"]["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(vendors.len(), 30, "the page spans all 30 vendors");
    assert_eq!(count, 2, "statements for one page of 100");

    // Again, with totalCount: the count is one more statement.
    let (count, _) = app.graphql_counted(None, PAGE, json!({ "first": 100 })).await;
    assert_eq!(count, 3, "products with their stock, vendors, count");
}

async fn vendors_page_by_name(app: TestApp) {
    app.seed(10, 7).await;
    let query = "query($after: String) { vendors(first: 3, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { name slug } } } }";
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let body = app.graphql(query, json!({ "after": after })).await;
        let conn = &body["data"]["vendors"];
        assert_eq!(conn["totalCount"], 7);
        names.extend(conn["edges"].as_array().unwrap().iter().map(|e| e["node"]["name"].as_str().unwrap().to_string()));
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(String::from);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names.len(), 7);
    assert_eq!(names, sorted);
}

async fn internal_errors_are_masked(app: TestApp) {
    app.seed(3, 1).await;
    // Break the database under the running server: every catalog query now fails in the store.
    crate::helpers::execute(&app.database_url, "ALTER TABLE products RENAME TO products_gone").await;
    let body = app.graphql("{ products(first: 1) { edges { node { id } } } }", json!({})).await;
    let error = &body["errors"][0];
    assert_eq!(error["message"], "internal server error");
    assert_eq!(error["extensions"]["code"], "INTERNAL_SERVER_ERROR");
    assert!(error["extensions"]["correlationId"].as_str().is_some_and(|s| s.len() == 36));
    assert!(!body.to_string().to_lowercase().contains("pool"), "no internals leak: {body}");
}

/// The row id behind a product's global id.
fn row_id(node: &Value) -> i64 {
    let id = node["id"].as_str().unwrap();
    securecart::domain::GlobalId::decode_as(id, securecart::domain::NodeKind::Product).unwrap()
}
