//! Benchmark: N idle WebSocket subscribers and one inventory change.
//!
//! Starts the release server (`target/release/securecart`, built by `cargo bench`'s profile or
//! `cargo build --release`) on a scratch SQLite database, opens N graphql-transport-ws
//! connections each subscribed to `inventoryChanged`, and measures
//! - memory per subscriber: the server's RSS after the N subscriptions minus before, over N;
//! - delivery latency: from sending one `adjustInventory` mutation to each subscriber receiving
//!   the event (p50, p99, max).
//!
//! Run: `cargo bench --bench subscribers` (N = 100, 1,000, 10,000; `BENCH_N=100,500` to choose).
//! It prints a Markdown table; bench/SUBSCRIBERS.md records a run.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(n: usize, bin: &str) -> String {
    let dir = std::env::temp_dir().join(format!("securecart-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = tokio::process::Command::new(bin)
        .arg("serve")
        .current_dir(&dir)
        .env("SECURECART_LISTEN", format!("127.0.0.1:{port}"))
        .env("SECURECART_INTERNAL_LISTEN", "127.0.0.1:0")
        .env("SECURECART_WS_MAX_CONNECTIONS", "20000")
        // 10,000 connections from one address: lift the anonymous per-IP rate for the bench.
        .env("SECURECART_ANON_RATE", "1000000")
        .env("SECURECART_ANON_BURST", "1000000")
        // Each subscription is billed its cost at subscribe time; one address opening 10,000
        // would drain the anonymous budget, which is not what this bench measures.
        .env("SECURECART_BUDGET_ANONYMOUS", "1000000000/1000000000")
        .env("SECURECART_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start the release server");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = server.id().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);

    let url = format!("ws://127.0.0.1:{port}/graphql/ws");
    let mut sockets = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(250) {
        let opened = futures::future::join_all(chunk.iter().map(|_| async {
            let mut request = url.clone().into_client_request().unwrap();
            request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
            ws.send(Message::Text(json!({ "type": "connection_init" }).to_string().into())).await.unwrap();
            let _ack = ws.next().await;
            let query = "subscription { inventoryChanged { productId available delta } }";
            ws.send(Message::Text(
                json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }).to_string().into(),
            ))
            .await
            .unwrap();
            ws
        }))
        .await;
        sockets.extend(opened);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid);

    let token = String::from_utf8(
        std::process::Command::new(bin).args(["token", "--sub", "bench", "--role", "admin"]).output().unwrap().stdout,
    )
    .unwrap();
    let product: Value = client
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": "{ products(first: 1) { edges { node { id } } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = product["data"]["products"]["edges"][0]["node"]["id"].as_str().unwrap().to_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    for mut ws in sockets {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = ws.next().await {
                if text.contains("inventoryChanged") {
                    let _ = tx.send(Instant::now());
                    break;
                }
            }
            // Keep the socket open until the measurement is over.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
    }
    drop(tx);
    let sent = Instant::now();
    let mutation =
        "mutation($p: ID!) { adjustInventory(productId: $p, delta: 1, idempotencyKey: \"bench\") { available } }";
    client
        .post(format!("{base}/graphql"))
        .bearer_auth(token.trim())
        .json(&json!({ "query": mutation, "variables": { "p": id } }))
        .send()
        .await
        .unwrap();
    let mut latencies = Vec::with_capacity(n);
    while latencies.len() < n {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(at)) => latencies.push(at - sent),
            _ => break,
        }
    }
    latencies.sort();
    let _ = server.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    format!(
        "| {n} | {} | {:.1} KiB | {:.1} ms | {:.1} ms | {:.1} ms |",
        latencies.len(),
        per / 1024.0,
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().unwrap().as_secs_f64() * 1000.0,
    )
}

#[tokio::main]
async fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let status = std::process::Command::new("cargo")
        .args(["build", "--release", "--quiet", "--bin", "securecart"])
        .current_dir(root)
        .status()
        .unwrap();
    assert!(status.success(), "release build failed");
    let bin = format!("{root}/target/release/securecart");
    let sizes: Vec<usize> = std::env::var("BENCH_N")
        .unwrap_or_else(|_| "100,1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("| subscribers | events received | server memory per subscriber | p50 delivery | p99 delivery | max |");
    println!("|---|---|---|---|---|---|");
    for n in sizes {
        println!("{}", run(n, &bin).await);
    }
}
