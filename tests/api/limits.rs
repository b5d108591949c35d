//! Every default operation limit, tested at its edge: a document exactly at the limit passes it,
//! one just over is refused with the limit's code, and a refusal runs no statement and takes
//! nothing from the caller's budget.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};

/// The limit's code if the request was refused by one, else `None`.
fn refused(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str().filter(|c| LIMIT_CODES.contains(c))
}

const LIMIT_CODES: &[&str] = &[
    "QUERY_TOO_LARGE",
    "MAX_TOKENS_EXCEEDED",
    "MAX_ALIASES_EXCEEDED",
    "MAX_ROOT_FIELDS_EXCEEDED",
    "MAX_DEPTH_EXCEEDED",
    "MAX_COMPLEXITY_EXCEEDED",
    "VARIABLES_TOO_LARGE",
];

/// The anonymous budget, as the next free query reports it.
async fn budget_left(app: &TestApp) -> u64 {
    let (_, body) = app.post_json(&json!({ "query": "{ __typename }" })).await;
    body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"].as_u64().unwrap_or_else(|| panic!("{body}"))
}

/// `{ products(first: 1) { nodes { vendor { products(first: 1) { nodes { ... name } } } } } }`
/// nesting exactly `depth` fields.
fn nested(depth: usize) -> String {
    let levels = ["products(first: 1) {", "nodes {", "vendor {"];
    let open: Vec<&str> = (0..depth - 1).map(|i| levels[i % 3]).collect();
    format!("{{ {} name{} }}", open.join(" "), " }".repeat(depth - 1))
}

/// At the edge of each default: `(what, at the limit, just over, code)`.
fn edges() -> Vec<(&'static str, Value, Value, &'static str)> {
    let aliases = |n: usize| {
        let fields: Vec<String> = (0..n).map(|i| format!("a{i}: name")).collect();
        json!({ "query": format!("{{ products(first: 1) {{ nodes {{ {} }} }} }}", fields.join(" ")) })
    };
    let roots = |n: usize| json!({ "query": format!("{{ {} }}", "__typename ".repeat(n)) });
    // 13 tokens around the names: `{ products ( first : 1 ) { nodes {` and `} } }`.
    let tokens =
        |n: usize| json!({ "query": format!("{{ products(first: 1) {{ nodes {{ {} }} }} }}", "name ".repeat(n - 13)) });
    let bytes = |n: usize| {
        let base = "{ __typename }\n#";
        json!({ "query": format!("{base}{}", "x".repeat(n - base.len())) })
    };
    // 2 + 100 × (1 + 2 + 46) + 2 + m: 5,000 with m = 96.
    let cost = |m: usize| {
        json!({ "query": format!("{{ a: products(first: 100) {{ nodes {{ vendor {{ products(first: 46) {{ nodes {{ vendor {{ name }} }} }} }} }} }} \
                b: products(first: {m}) {{ nodes {{ vendor {{ name }} }} }} }}") })
    };
    // `{"pad":"…"}` serialised: 10 bytes of syntax around the padding.
    let variables = |n: usize| json!({ "query": "{ __typename }", "variables": { "pad": "y".repeat(n - 10) } });
    let depth = |n: usize| json!({ "query": nested(n) });
    vec![
        ("depth 12", depth(12), depth(13), "MAX_DEPTH_EXCEEDED"),
        ("aliases 50", aliases(50), aliases(51), "MAX_ALIASES_EXCEEDED"),
        ("root fields 30", roots(30), roots(31), "MAX_ROOT_FIELDS_EXCEEDED"),
        ("tokens 15,000", tokens(15_000), tokens(15_001), "MAX_TOKENS_EXCEEDED"),
        ("query text 256 KiB", bytes(256 * 1024), bytes(256 * 1024 + 1), "QUERY_TOO_LARGE"),
        ("cost 5,000", cost(96), cost(97), "MAX_COMPLEXITY_EXCEEDED"),
        ("variables 64 KiB", variables(64 * 1024), variables(64 * 1024 + 1), "VARIABLES_TOO_LARGE"),
    ]
}

#[tokio::test]
async fn every_default_limit_holds_at_its_edge() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        // A budget that does not refill while the test runs, so what a refusal takes shows.
        s.rate_limit.anonymous = securecart::config::BudgetPolicy { maximum: 1e9, restore_rate: 1e-6 };
    })
    .await
    .unwrap();
    app.seed(3, 1).await;
    for (what, at, over, code) in edges() {
        let (_, body) = app.post_json(&at).await;
        assert_eq!(
            refused(&body),
            None,
            "{what}: at the limit it passes: {}",
            &body.to_string()[..body.to_string().len().min(400)]
        );
        let before_budget = budget_left(&app).await;
        let (statements, body) = app.post_json_counted(&over).await;
        assert_eq!(
            refused(&body),
            Some(code),
            "{what}: just over: {}",
            &body.to_string()[..body.to_string().len().min(400)]
        );
        assert_eq!(statements, 0, "{what}: a refusal runs no statement");
        assert_eq!(budget_left(&app).await, before_budget, "{what}: a refusal takes nothing from the budget");
    }
}

#[test]
fn the_edges_are_where_they_say() {
    assert_eq!(nested(3), "{ products(first: 1) { nodes { name } } }");
    let cost = edges().into_iter().find(|e| e.0 == "cost 5,000").unwrap();
    let doc = async_graphql::parser::parse_query(cost.1["query"].as_str().unwrap()).unwrap();
    let m = securecart::graphql::limits::measure::measure(&doc, None, &Default::default(), 20);
    assert_eq!(m.cost, 5000);
    let over = edges().into_iter().find(|e| e.0 == "variables 64 KiB").unwrap().2;
    assert_eq!(serde_json::to_vec(&over["variables"]).unwrap().len(), 64 * 1024 + 1);
}

/// graphql-js 16's `getIntrospectionQuery()`, as GraphiQL, GraphQL Code Generator and
/// `buildClientSchema` users send it: 15 levels deep through `ofType`.
const STANDARD_INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}"#;

/// Introspection counts toward neither depth nor cost: the standard query runs with the
/// defaults; an `ofType` tower past its own cap does not.
#[tokio::test]
async fn the_standard_introspection_query_runs_with_the_defaults() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    let (_, body) = app.post_json(&json!({ "query": STANDARD_INTROSPECTION })).await;
    assert!(body.get("errors").is_none(), "{}", &body.to_string()[..body.to_string().len().min(400)]);
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "QueryRoot");
    assert_eq!(body["extensions"]["cost"]["requestedQueryCost"], 0);
    let tower = format!("{{ __type(name: \"Product\") {{ {} name {} }} }}", "ofType { ".repeat(25), "}".repeat(25));
    let (_, body) = app.post_json(&json!({ "query": tower })).await;
    assert_eq!(refused(&body), Some("MAX_DEPTH_EXCEEDED"), "{body}");
}
