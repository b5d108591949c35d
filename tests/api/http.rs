//! GraphQL over HTTP: status codes, media types, bad input, GET, the playground and health.

use serde_json::{Value, json};

use crate::helpers::{TestApp, first_error_code, on_both_backends};

on_both_backends!(
    health_and_readiness,
    malformed_and_misdeclared_bodies_get_4xx_with_codes,
    request_errors_follow_the_accepted_media_type,
    get_runs_queries_and_refuses_mutations,
    browsers_get_graphiql_with_pinned_assets,
    request_ids_are_returned_and_accepted,
);

const QUERY: &str = "{ products(first: 2) { edges { node { name } } } }";

async fn health_and_readiness(app: TestApp) {
    let r = app.client.get(format!("{}/healthz", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.client.get(format!("{}/readyz", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    app.store.close().await;
    let r = app.client.get(format!("{}/readyz", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 503, "not ready without a database");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["checks"]["database"], "unavailable", "{body}");
}

async fn post_raw(app: &TestApp, content_type: &str, accept: Option<&str>, body: &str) -> (u16, String, Value) {
    let mut req = app.client.post(format!("{}/graphql", app.address)).header("content-type", content_type);
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let r = req.body(body.to_string()).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let text = r.text().await.unwrap();
    (status, ct, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

async fn malformed_and_misdeclared_bodies_get_4xx_with_codes(app: TestApp) {
    app.seed(5, 2).await;
    let (status, _, body) = post_raw(&app, "application/json", None, "{\"query\": ").await;
    assert_eq!((status, first_error_code(&body)), (400, "BAD_REQUEST"));
    let (status, _, body) = post_raw(&app, "text/plain", None, &json!({ "query": QUERY }).to_string()).await;
    assert_eq!((status, first_error_code(&body)), (415, "UNSUPPORTED_MEDIA_TYPE"));
    let (status, _, body) = post_raw(&app, "application/json", None, r#"{"query": 5}"#).await;
    assert_eq!((status, first_error_code(&body)), (400, "BAD_REQUEST"));
    let (status, _, body) =
        post_raw(&app, "application/json", None, r#"{"query": "{ __typename }", "variables": [1]}"#).await;
    assert_eq!((status, first_error_code(&body)), (400, "BAD_REQUEST"));
    let batch = json!([{ "query": QUERY }, { "query": QUERY }]).to_string();
    let (status, _, body) = post_raw(&app, "application/json", None, &batch).await;
    assert_eq!((status, first_error_code(&body)), (400, "BATCHING_NOT_SUPPORTED"));
    let (status, _, body) =
        post_raw(&app, "application/json", Some("text/csv"), &json!({ "query": QUERY }).to_string()).await;
    assert_eq!((status, first_error_code(&body)), (406, "NOT_ACCEPTABLE"));
    let huge = json!({ "query": format!("{{ __typename }} # {}", "x".repeat(2 * 1024 * 1024)) }).to_string();
    let (status, _, body) = post_raw(&app, "application/json", None, &huge).await;
    assert_eq!((status, first_error_code(&body)), (413, "PAYLOAD_TOO_LARGE"));
    // The server still answers normally afterwards.
    let (status, _, body) = post_raw(&app, "application/json", None, &json!({ "query": QUERY }).to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["products"]["edges"].as_array().unwrap().len(), 2);
}

async fn request_errors_follow_the_accepted_media_type(app: TestApp) {
    app.seed(5, 2).await;
    let unknown_field = json!({ "query": "{ products(first: 1) { edges { node { nmae } } } }" }).to_string();
    // Legacy application/json: 200 with errors.
    let (status, ct, body) = post_raw(&app, "application/json", Some("application/json"), &unknown_field).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!(first_error_code(&body), "GRAPHQL_VALIDATION_FAILED");
    // application/graphql-response+json: 400 and no `data` for a request error.
    let accept = "application/graphql-response+json, application/json;q=0.9";
    let (status, ct, body) = post_raw(&app, "application/json", Some(accept), &unknown_field).await;
    assert_eq!(status, 400);
    assert!(ct.starts_with("application/graphql-response+json"), "{ct}");
    assert!(body.get("data").is_none(), "{body}");
    let (status, _, body) = post_raw(&app, "application/json", Some(accept), r#"{"query": "{ products("}"#).await;
    assert_eq!((status, first_error_code(&body)), (400, "GRAPHQL_PARSE_FAILED"));
    // Variables of the wrong type are a request error too.
    let bad_vars =
        json!({ "query": "query($n: Int) { products(first: $n) { edges { cursor } } }", "variables": { "n": "ten" } });
    let (status, _, body) = post_raw(&app, "application/json", Some(accept), &bad_vars.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(first_error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("\"first\"") && message.contains("Int"),
        "the message names the argument and its type: {body}"
    );
    // A field error keeps 200 and partial data.
    let field_error = json!({ "query": "{ products(first: 500) { edges { cursor } } }" }).to_string();
    let (status, ct, body) = post_raw(&app, "application/json", Some(accept), &field_error).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/graphql-response+json"));
    assert_eq!(first_error_code(&body), "PAGE_SIZE_EXCEEDED");
    assert!(body.get("data").is_some());
    // Production hides "Did you mean" suggestions; development keeps them.
    assert!(body_message(&app, "{ prodcts { totalCount } }").await.contains("Did you mean"));
}

async fn body_message(app: &TestApp, query: &str) -> String {
    let (_, body) = app.post_json(&json!({ "query": query })).await;
    body["errors"][0]["message"].as_str().unwrap_or_default().to_string()
}

async fn get_runs_queries_and_refuses_mutations(app: TestApp) {
    app.seed(5, 2).await;
    // A plain GET, as urql sends by default, runs: without cookies there is nothing to forge.
    let r = app.client.get(format!("{}/graphql", app.address)).query(&[("query", QUERY)]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["products"]["edges"].as_array().map(Vec::len), Some(2), "{body}");
    // CSRF prevention: a GET with the browser's cookies must prove a preflight, and the
    // refusal honours `Accept`.
    for (accept, media) in [
        ("application/json", "application/json"),
        ("application/graphql-response+json", "application/graphql-response+json"),
    ] {
        let r = app
            .client
            .get(format!("{}/graphql", app.address))
            .header("cookie", "session=abc")
            .header("accept", accept)
            .query(&[("query", QUERY)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(media), "{accept}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(first_error_code(&body), "CSRF_CHECK_FAILED");
    }
    let get = || {
        app.client
            .get(format!("{}/graphql", app.address))
            .header("cookie", "session=abc")
            .header("apollo-require-preflight", "true")
    };
    let r = get().query(&[("query", QUERY)]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["products"]["edges"].as_array().unwrap().len(), 2);
    let r = get()
        .query(&[
            ("query", "query($n: Int) { products(first: $n) { edges { cursor } } }"),
            ("variables", r#"{"n": 1}"#),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["products"]["edges"].as_array().map(Vec::len), Some(1), "{body}");
    let r = get().query(&[("query", "mutation { anything }")]).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let body: Value = r.json().await.unwrap();
    assert_eq!(first_error_code(&body), "METHOD_NOT_ALLOWED");
}

async fn browsers_get_graphiql_with_pinned_assets(app: TestApp) {
    app.seed(5, 2).await;
    let r = app.client.get(format!("{}/graphql", app.address)).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("SecureCart API") && html.contains("graphiql"), "{html}");
    let installed =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playground/node_modules/graphiql/graphiql.min.js");
    if installed.exists() {
        assert!(html.contains("/playground/assets/graphiql/graphiql.min.js"));
        assert!(!html.contains("cdn.jsdelivr.net"));
        let r =
            app.client.get(format!("{}/playground/assets/graphiql/graphiql.min.js", app.address)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    } else {
        eprintln!("playground/node_modules absent: checking the CDN fallback");
        assert!(html.contains("cdn.jsdelivr.net/npm/graphiql@") && html.contains("integrity=\"sha384-"));
        assert!(html.contains("npm ci --prefix playground"));
    }
    // Only the pinned files are served: no path traversal into node_modules or the repo.
    for path in ["graphiql/package.json", "../Cargo.toml", "..%2F..%2FCargo.toml"] {
        let r = app.client.get(format!("{}/playground/assets/{path}", app.address)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

async fn request_ids_are_returned_and_accepted(app: TestApp) {
    app.seed(5, 2).await;
    let r = app.client.post(format!("{}/graphql", app.address)).json(&json!({ "query": QUERY })).send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a generated UUID: {id}");
    let r = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("x-request-id", "client-chosen-42")
        .json(&json!({ "query": QUERY }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-chosen-42");
}
