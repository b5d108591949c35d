//! Metrics on the internal listener, graceful shutdown of the real binary, and TLS.

use std::process::Stdio;
use std::time::{Duration, Instant};

use securecart::auth::Role;
use serde_json::{Value, json};

use crate::gateway::FakeGateway;
use crate::helpers::{Backend, Binary, spawn_app_with, start_binary, token};

/// The value of one sample line of a Prometheus exposition (0 when absent).
fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The internal port's /metrics moves with traffic; the public port has no /metrics.
#[tokio::test]
async fn metrics_move_on_the_internal_port_only() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    app.seed(5, 1).await;
    let scrape = || async {
        app.client.get(format!("{}/metrics", app.internal_address)).send().await.unwrap().text().await.unwrap()
    };
    let op = format!("MetricsProbe{}", uuid::Uuid::new_v4().simple());
    let before = scrape().await;
    let label = format!("operation=\"{op}\"");
    assert_eq!(sample(&before, "securecart_graphql_requests_total", &[&label]), 0.0);
    for _ in 0..3 {
        app.graphql(&format!("query {op} {{ products(first: 2) {{ edges {{ cursor }} }} }}"), json!({})).await;
    }
    let after = scrape().await;
    assert_eq!(sample(&after, "securecart_graphql_requests_total", &[&label, "type=\"query\""]), 3.0, "{after}");
    assert_eq!(sample(&after, "securecart_graphql_request_duration_seconds_count", &[&label]), 3.0);
    // Counters shared by every test of this process are asserted exactly in
    // `metrics_count_exactly_what_happened`, in a process of their own.
    assert!(after.contains("securecart_db_pool_connections{state=\"max\"} 5"), "pool gauges");
    for path in ["/healthz", "/readyz"] {
        assert_eq!(app.client.get(format!("{}{path}", app.internal_address)).send().await.unwrap().status(), 200);
    }
    let public = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap();
    assert_eq!(public.status(), 404, "nothing internal on the public port");
}

/// In a server process of its own (so no other test moves its counters), each metric the
/// alert rules and dashboards read moves by exactly what was done.
#[tokio::test]
#[cfg_attr(no_test_redis, ignore = "needs TEST_REDIS_URL")]
async fn metrics_count_exactly_what_happened() {
    let redis = match std::env::var("TEST_REDIS_URL") {
        Ok(url) => url,
        Err(_) if std::env::var("CI").is_ok() => panic!("TEST_REDIS_URL is unset under CI: the metrics test must run"),
        Err(_) => return eprintln!("skipping metrics_count_exactly_what_happened: TEST_REDIS_URL is unset"),
    };
    let dir = std::env::temp_dir().join(format!("securecart-metrics-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let channel = format!("securecart:test:{}", uuid::Uuid::new_v4().simple());
    let server = start_binary(
        &dir,
        &[
            ("REDIS_URL", &redis),
            ("SECURECART_REDIS_CHANNEL", &channel),
            ("SECURECART_BUDGET_CUSTOMER", "10/0.001"),
            ("SECURECART_ANON_RATE", "10000"),
            ("SECURECART_ANON_BURST", "100000"),
        ],
    )
    .await;
    let base = server.address.clone();
    let client = reqwest::Client::new();
    let scrape =
        || async { client.get(format!("{}/metrics", server.internal)).send().await.unwrap().text().await.unwrap() };
    let post = |body: Value, tok: Option<String>| {
        let mut r = client.post(format!("{base}/graphql")).json(&body);
        if let Some(t) = tok {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // The Redis link connects in the background after start-up: wait for it (a condition,
    // with a deadline), then every count below starts from a connected bus.
    // A scrape once `name` reads `value` (a wait on the condition, with a deadline).
    let scrape_when = |name: &'static str, value: f64| async move {
        let started = Instant::now();
        loop {
            let m = scrape().await;
            if sample(&m, name, &[]) == value {
                return m;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{name} never reached {value}: {m}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let m = scrape_when("securecart_bus_connected", 1.0).await;
    assert_eq!(sample(&m, "securecart_database_up", &[]), 1.0);
    for _ in 0..3 {
        post(json!({ "query": "query Probe { products(first: 2) { edges { cursor } } }" }), None).await;
    }
    post(json!({ "query": "{ products(first: 500) { edges { cursor } } }" }), None).await;
    let aliases = (0..60).map(|i| format!("a{i}: __typename")).collect::<Vec<_>>().join(" ");
    post(json!({ "query": format!("{{ {aliases} }}") }), None).await;
    // A customer's budget of 10: 8, then 8 more is throttled.
    // A subject of its own: budgets live in the shared Redis.
    let carol = token(&format!("carol-{}", uuid::Uuid::new_v4().simple()), &[Role::Customer], None);
    let eight = json!({ "query": "{ products(first: 6) { nodes { vendor { name } } } }" });
    let first = post(eight.clone(), Some(carol.clone())).await;
    assert!(first.get("errors").is_none(), "{first}");
    let refused = post(eight, Some(carol)).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "THROTTLED", "{refused}");
    // Two sockets, one subscription; then an inventory change reaches it.
    let mut quiet = crate::websocket::connect_to(&base, "graphql-transport-ws").await;
    crate::websocket::send(&mut quiet, json!({ "type": "connection_init" })).await;
    assert_eq!(crate::websocket::next(&mut quiet).await.unwrap()["type"], "connection_ack");
    let mut listening = crate::websocket::connect_to(&base, "graphql-transport-ws").await;
    crate::websocket::send(&mut listening, json!({ "type": "connection_init" })).await;
    assert_eq!(crate::websocket::next(&mut listening).await.unwrap()["type"], "connection_ack");
    let sub = json!({ "query": "subscription { inventoryChanged { productId available } }" });
    crate::websocket::send(&mut listening, json!({ "id": "1", "type": "subscribe", "payload": sub })).await;
    // Wait (on the condition) until the subscription listens on the bus: beside the cache's
    // invalidator, one listener.
    let m = scrape_when("securecart_bus_listeners", 2.0).await;
    assert_eq!(sample(&m, "securecart_websocket_connections", &[]), 2.0, "{m}");
    assert_eq!(sample(&m, "securecart_subscriptions_active", &[]), 1.0);
    let product = securecart::domain::GlobalId::new(securecart::domain::NodeKind::Product, 1).encode();
    let adjust = json!({ "query": "mutation($p: ID!) { adjustInventory(productId: $p, delta: 1, idempotencyKey: \"m1\") { userErrors { code } } }", "variables": { "p": product } });
    let done = post(adjust, Some(token("root", &[Role::Admin], None))).await;
    assert_eq!(done["data"]["adjustInventory"]["userErrors"], json!([]), "{done}");
    let event = crate::websocket::next(&mut listening).await.unwrap();
    assert_eq!(event["payload"]["data"]["inventoryChanged"]["productId"], product.as_str(), "{event}");
    let m = scrape().await;
    let probe = ["operation=\"Probe\"", "type=\"query\""];
    assert_eq!(sample(&m, "securecart_graphql_requests_total", &probe), 3.0, "{m}");
    assert_eq!(sample(&m, "securecart_graphql_request_duration_seconds_count", &["operation=\"Probe\""]), 3.0);
    assert_eq!(sample(&m, "securecart_graphql_errors_total", &["code=\"PAGE_SIZE_EXCEEDED\""]), 1.0);
    assert_eq!(sample(&m, "securecart_limit_rejections_total", &["code=\"MAX_ALIASES_EXCEEDED\""]), 1.0);
    assert_eq!(sample(&m, "securecart_throttled_total", &["kind=\"budget\""]), 1.0);
    // What each operation costs, by role: Probe asks 2 (a page of 2 leaves) and spends 2.
    let probe_anonymous = ["operation=\"Probe\"", "role=\"anonymous\""];
    assert_eq!(sample(&m, "securecart_operation_cost_requested_count", &probe_anonymous), 3.0, "{m}");
    assert_eq!(sample(&m, "securecart_operation_cost_requested_sum", &probe_anonymous), 6.0, "{m}");
    assert_eq!(sample(&m, "securecart_operation_cost_actual_sum", &probe_anonymous), 6.0, "{m}");
    assert_eq!(sample(&m, "securecart_budget_exhausted_total", &["role=\"customer\""]), 1.0, "{m}");
    assert_eq!(sample(&m, "securecart_event_lag_seconds_count", &["type=\"inventory\""]), 1.0, "{m}");
    assert_eq!(sample(&m, "securecart_events_published_total", &["type=\"inventory\""]), 1.0);
    assert_eq!(sample(&m, "securecart_events_delivered_total", &["type=\"inventory\""]), 1.0);
    // Operation names beyond the first 200 share one label.
    for i in 0..205 {
        post(json!({ "query": format!("query Name{i} {{ __typename }}") }), None).await;
    }
    let m = scrape().await;
    let named = m
        .lines()
        .filter(|l| l.starts_with("securecart_graphql_requests_total{") && l.contains("operation=\"Name"))
        .count();
    assert_eq!(named, 199, "200 names per process, Probe among them: {named}");
    assert_eq!(sample(&m, "securecart_graphql_requests_total", &["operation=\"other\""]), 6.0);
    let _ = std::fs::remove_dir_all(&dir);
}

fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

/// Requests in flight when SIGTERM arrives complete; new connections are refused;
/// WebSockets are closed with 1001; the process exits cleanly.
#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_refuses_new_ones() {
    let gateway = FakeGateway::start().await;
    let dir = std::env::temp_dir().join(format!("securecart-shutdown-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let Binary { mut child, address: base, port, .. } = start_binary(
        &dir,
        &[
            ("SECURECART_PAYMENT_URL", &gateway.url),
            ("SECURECART_PAYMENT_TIMEOUT_MS", "10000"),
            ("SECURECART_LOG", "warn"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let alice = token("alice", &[Role::Customer], None);
    let gql = |query: &str| {
        client.post(format!("{base}/graphql")).bearer_auth(&alice).json(&json!({ "query": query })).send()
    };
    let first: Value = gql("{ products(first: 1) { edges { node { id } } } }").await.unwrap().json().await.unwrap();
    let product = first["data"]["products"]["edges"][0]["node"]["id"].as_str().unwrap().to_string();
    gql(&format!("mutation {{ addCartItem(productId: \"{product}\", quantity: 1) {{ userErrors {{ code }} }} }}"))
        .await
        .unwrap();
    let mut ws = crate::websocket::connect_to(&base, "graphql-transport-ws").await;
    crate::websocket::send(&mut ws, json!({ "type": "connection_init" })).await;
    assert_eq!(crate::websocket::next(&mut ws).await.unwrap()["type"], "connection_ack");

    // A checkout whose payment takes 3 s is in flight when SIGTERM arrives.
    let checkout = "mutation { checkout(input: { idempotencyKey: \"slow-1\", paymentToken: \"tok_slow\", shippingAddress: { name: \"A\", line1: \"1 Rd\", city: \"Oslo\", postalCode: \"0150\", country: \"NO\" } }) { order { status } userErrors { code } } }";
    let in_flight = tokio::spawn(gql(checkout));
    // SIGTERM once the charge has reached the provider (no fixed sleep).
    let sent = Instant::now();
    while gateway.requests() == 0 {
        assert!(sent.elapsed() < Duration::from_secs(10), "the charge never reached the provider");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    send_signal(child.id().unwrap(), "TERM");

    // The WebSocket is told the server is going away.
    assert_eq!(crate::websocket::next(&mut ws).await, Err(1001));
    // New connections are refused while the checkout finishes.
    let refused_by = Instant::now();
    loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {
                assert!(refused_by.elapsed() < Duration::from_secs(2), "new connections still accepted");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let response = in_flight.await.unwrap().expect("the in-flight request got its answer");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["checkout"]["order"]["status"], "PAID", "{body}");
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("exits").unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(gateway.charges(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// TLS with a self-signed certificate made here; TLS 1.2 and 1.3 only.
#[tokio::test]
async fn tls_with_a_self_signed_certificate() {
    let dir = std::env::temp_dir().join(format!("securecart-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl makes the test certificate");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let (c, k) = (cert.clone(), key.clone());
    let app = spawn_app_with(Backend::Sqlite, move |s| {
        s.server.tls_cert = Some(c);
        s.server.tls_key = Some(k);
    })
    .await
    .unwrap();
    app.seed(2, 1).await;
    assert!(app.address.starts_with("https://127.0.0.1:"));
    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(root).build().unwrap();
    let body: Value = client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": "{ products(first: 1) { edges { node { name } } } }" }))
        .send()
        .await
        .expect("an HTTPS request")
        .json()
        .await
        .unwrap();
    assert!(body["data"]["products"]["edges"][0]["node"]["name"].is_string(), "{body}");
    // Plain HTTP on the TLS port does not get an answer.
    let plain = reqwest::Client::new().get(format!("{}/healthz", app.address.replace("https", "http"))).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let port = app.address.rsplit(':').next().unwrap().to_string();
    let handshake = |version: &'static str| {
        let port = port.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut cmd = std::process::Command::new("openssl");
                cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}"), version]);
                if version == "-tls1_1" {
                    // Let the client offer TLS 1.1 at all, so the refusal is the server's.
                    cmd.args(["-cipher", "DEFAULT@SECLEVEL=0"]);
                }
                cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).output().unwrap()
            })
            .await
            .unwrap()
        }
    };
    for version in ["-tls1_2", "-tls1_3"] {
        let out = handshake(version).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("BEGIN CERTIFICATE") && text.contains("Cipher is"), "{version}: {text}");
    }
    let out = handshake("-tls1_1").await;
    let text = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("BEGIN CERTIFICATE") || text.contains("Cipher is (NONE)"), "TLS 1.1 must fail: {text}");
    // The refusal must be the server's (a protocol-version alert), not a client that could not
    // offer TLS 1.1 at all.
    assert!(!errors.contains("no protocols available"), "the client could not offer TLS 1.1: {errors}");
    assert!(errors.contains("SSL alert number"), "the server refuses TLS 1.1 with an alert: {errors}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Spans leave over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and the last ones are
/// flushed at shutdown (build with `--features otlp`; `.ci/run` does).
#[cfg(feature = "otlp")]
#[tokio::test]
async fn spans_are_exported_over_otlp() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let exported: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let strings = exported.clone();
    let collector = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (counter, strings) = (counter.clone(), strings.clone());
            async move {
                let protobuf =
                    headers.get("content-type").is_some_and(|v| v.to_str().unwrap_or("").contains("protobuf"));
                if protobuf && !body.is_empty() {
                    counter.fetch_add(1, Ordering::SeqCst);
                    strings.lock().unwrap().extend(protobuf_strings(&body));
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let dir = std::env::temp_dir().join(format!("securecart-otlp-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let Binary { mut child, address: base, .. } =
        start_binary(&dir, &[("SECURECART_LOG", "info"), ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]).await;
    let client = reqwest::Client::new();
    let body: Value = client
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": "query Traced { products(first: 2) { edges { cursor } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body["data"]["products"].is_object());
    send_signal(child.id().unwrap(), "TERM");
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("exits").unwrap();
    assert!(exit.success());
    assert!(received.load(Ordering::SeqCst) >= 1, "the collector received the spans");
    // Decoded: the export carries the service's name and a `graphql` span for the operation.
    let strings = exported.lock().unwrap().clone();
    let after = |key: &str| strings.iter().position(|s| s == key).map(|i| strings.get(i + 1).cloned());
    assert_eq!(after("service.name"), Some(Some("securecart".to_string())), "{strings:?}");
    assert!(strings.iter().any(|s| s == "graphql"), "a span named graphql: {strings:?}");
    assert_eq!(after("operation"), Some(Some("Traced".to_string())), "{strings:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every string field of a protobuf message, depth first, in order (a length-delimited field is
/// read as a nested message when it parses as one, else as UTF-8 text): enough to read an OTLP
/// export without the generated types.
#[cfg(feature = "otlp")]
fn protobuf_strings(buf: &[u8]) -> Vec<String> {
    fn varint(buf: &[u8], i: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *buf.get(*i)?;
            *i += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn message(buf: &[u8], out: &mut Vec<String>) -> bool {
        let mut i = 0;
        let mut found = Vec::new();
        while i < buf.len() {
            let Some(key) = varint(buf, &mut i) else { return false };
            match key & 7 {
                0 => {
                    if varint(buf, &mut i).is_none() {
                        return false;
                    }
                }
                1 => i += 8,
                5 => i += 4,
                2 => {
                    let Some(len) = varint(buf, &mut i) else { return false };
                    let Some(field) = buf.get(i..i + len as usize) else { return false };
                    i += len as usize;
                    let mut nested = Vec::new();
                    if !field.is_empty() && message(field, &mut nested) && !nested.is_empty() {
                        found.extend(nested);
                    } else if let Ok(text) = std::str::from_utf8(field) {
                        found.push(text.to_string());
                    }
                }
                _ => return false,
            }
        }
        i == buf.len() && {
            out.extend(found);
            true
        }
    }
    let mut out = Vec::new();
    message(buf, &mut out);
    out
}

/// Runs the binary with `env` in a fresh folder until it exits, once plainly and once with
/// `RUST_BACKTRACE=1`; asserts both fail, alike, without a backtrace; returns what it printed.
async fn fails_to_start(env: &[(&str, &str)]) -> String {
    let dir = std::env::temp_dir().join(format!("securecart-start-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut printed = Vec::new();
    for backtrace in ["0", "1"] {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_securecart"));
        command
            .arg("serve")
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_BACKTRACE", backtrace)
            .env("SECURECART_DEMO_SEED", "false")
            .env("SECURECART_LISTEN", "127.0.0.1:0")
            .env("SECURECART_INTERNAL_LISTEN", "127.0.0.1:0")
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let output = tokio::time::timeout(Duration::from_secs(20), command.output()).await.expect("it exits").unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert_eq!(output.status.code(), Some(1), "RUST_BACKTRACE={backtrace}: {stderr}");
        assert!(!stderr.to_lowercase().contains("backtrace"), "RUST_BACKTRACE={backtrace}: {stderr}");
        let paragraph: Vec<&str> = stderr.lines().skip_while(|l| !l.starts_with("securecart: ")).collect();
        assert!(!paragraph.is_empty() && paragraph.len() <= 4, "one short paragraph: {stderr}");
        printed.push(paragraph.join("\n"));
    }
    assert_eq!(printed[0], printed[1], "RUST_BACKTRACE changes nothing");
    let _ = std::fs::remove_dir_all(&dir);
    printed.remove(0)
}

/// Expected start-up failures print one paragraph that names the cause and the fix, and exit 1,
/// with or without `RUST_BACKTRACE=1`.
#[tokio::test]
async fn startup_failures_say_what_went_wrong_and_how_to_fix_it() {
    let sqlite = format!("sqlite://{}/start-{}.db", std::env::temp_dir().display(), uuid::Uuid::new_v4().simple());
    // A port in use.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let said = fails_to_start(&[("DATABASE_URL", &sqlite), ("SECURECART_LISTEN", &listen)]).await;
    assert!(said.contains(&format!("binding {listen}")) && said.contains("SECURECART_LISTEN"), "{said}");
    assert!(said.contains("Another process holds that port"), "{said}");
    // PostgreSQL not listening (nothing ever listens on port 1).
    let said = fails_to_start(&[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/shop")]).await;
    assert!(said.contains("connecting to PostgreSQL at 127.0.0.1:1, database `shop`"), "{said}");
    assert!(said.contains("Is PostgreSQL running"), "{said}");
    // A listen address without its host.
    let said = fails_to_start(&[("DATABASE_URL", &sqlite), ("SECURECART_LISTEN", ":8081")]).await;
    assert!(said.contains("`127.0.0.1:8081`") && said.contains("`0.0.0.0:8081`"), "{said}");
    // Production with nothing configured: every missing setting at once.
    let said = fails_to_start(&[("SECURECART_ENV", "production"), ("DATABASE_URL", &sqlite)]).await;
    assert!(said.contains("2 settings need fixing"), "{said}");
    assert!(
        said.contains("SECURECART_PAYMENT_URL is unset") && said.contains("SECURECART_JWT_SECRET is unset"),
        "{said}"
    );
    // A database that does not exist (needs the PostgreSQL server of the suite).
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        assert!(std::env::var("CI").is_err(), "TEST_DATABASE_URL is unset under CI");
        return eprintln!("skipping the missing-database case: TEST_DATABASE_URL is unset");
    };
    let missing = format!("{}/securecart_missing_{}", admin.rsplit_once('/').unwrap().0, uuid::Uuid::new_v4().simple());
    let said = fails_to_start(&[("DATABASE_URL", &missing)]).await;
    assert!(said.contains("does not exist") && said.contains("createdb"), "{said}");
    assert!(!said.contains("line"), "no PostgreSQL source position: {said}");
    drop(held);
}

/// `seed --if-empty` seeds an empty database, and on a later run (every `docker compose up`)
/// leaves the catalog alone and succeeds; without it a second seed is refused.
#[tokio::test]
async fn seeding_only_an_empty_database_succeeds_when_rerun() {
    let path = std::env::temp_dir().join(format!("securecart-seed-{}.db", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite:{}", path.display());
    let seed = |extra: &'static [&'static str]| {
        let url = url.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_securecart"))
                .args(["seed", "--products", "5", "--vendors", "1", "--customers", "1", "--orders", "1"])
                .args(extra)
                .env_clear()
                .env("DATABASE_URL", url)
                .output()
                .await
                .unwrap()
        }
    };
    let first = seed(&["--if-empty"]).await;
    assert!(first.status.success() && String::from_utf8_lossy(&first.stdout).contains("seeded 1 vendors, 5 products"));
    let again = seed(&["--if-empty"]).await;
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing seeded"), "{again:?}");
    let refused = seed(&[]).await;
    assert!(!refused.status.success(), "a plain seed of a full database is refused");
    for suffix in ["", "-shm", "-wal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// `Server-Timing` counts a request's statements whatever the log filter. At `info` the `graphql`
/// span is on for the log lines but not for the statement counter, and SQLite runs statements on
/// a worker thread that enters only the caller's innermost span: the counter must still find
/// the request from there (the suite's own servers log nothing, so this runs the binary).
#[tokio::test]
async fn statements_are_counted_with_logs_at_info() {
    let dir = std::env::temp_dir().join(format!("securecart-timing-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = start_binary(&dir, &[("SECURECART_LOG", "info")]).await;
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", server.address))
        .json(&json!({ "query": "{ products(first: 2) { edges { cursor } } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(crate::helpers::statements(&response), 1, "the page's one statement, on SQLite with logs at info");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
