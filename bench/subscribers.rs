//! Benchmark: N idle WebSocket subscribers and one inventory change.
//!
//! Starts the release server (`target/release/securecart`, built by `cargo bench`'s profile or
//! `cargo build --release`) on a scratch SQLite database, opens N graphql-transport-ws
//! connections each subscribed to `inventoryChanged`, and measures
//! - memory per subscriber: the server's RSS after the N subscriptions minus before, over N;
//! - delivery latency: from sending one `adjustInventory` mutation to each subscriber receiving
//!   the event (p50, p99, max), and the server's CPU for that change;
//! - fan-out by topic: N idle subscribers each on its own product, one change: the one
//!   subscriber's delivery and the server's CPU (the others must not be woken).
//!
//! Run: `cargo bench --bench subscribers` (N = 1,000, 10,000, 50,000; `BENCH_N=100,500` to
//! choose; `BENCH_BIN=path` runs another server binary, for an A/B), or as part of `bash bench/run.sh`. It prints a Markdown table with the last figures
//! recorded in bench/history.tsv beside its own, and `METRIC` lines on stderr for run.sh
//! to record.
//!
//! What the OS needs: about one file descriptor per subscriber on each side. The bench raises
//! its own open-file limit (as root it lifts the hard limit too; the server inherits it and
//! raises its soft limit itself), and spreads its client sockets over 127.0.0.1-127.0.0.4,
//! because one source address has only ~28,000 ephemeral ports (`ip_local_port_range`).

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use securecart::domain::{GlobalId, NodeKind};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Lifts this process's open-file limit to `want` (the hard limit too, when allowed: root).
fn raise_open_files(want: u64) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read or write the struct passed by pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        let wanted = libc::rlimit { rlim_cur: want, rlim_max: want.max(limit.rlim_max) };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

#[path = "common.rs"]
mod common;
use common::cpu_ticks;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(n: usize, bin: &str, files: u64, spread: bool) -> String {
    // One descriptor per subscriber in each process (this one and the server), plus some.
    if n as u64 + 500 > files {
        return format!(
            "| {n} | not run: the open-file hard limit is {files}, and {} are needed per process (raise `ulimit -Hn` as root) | | | | | |",
            n + 500
        );
    }
    let dir = std::env::temp_dir().join(format!("securecart-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = tokio::process::Command::new(bin)
        .arg("serve")
        .current_dir(&dir)
        .env("SECURECART_LISTEN", format!("127.0.0.1:{port}"))
        .env("SECURECART_INTERNAL_LISTEN", "127.0.0.1:0")
        .env("SECURECART_WS_MAX_CONNECTIONS", "100000")
        .env("SECURECART_MAX_CONNECTIONS", "100000")
        .env("SECURECART_MAX_CONNECTIONS_PER_IP", "100000")
        .env("SECURECART_WS_MAX_PER_IP", "100000")
        // 10,000 connections from one address: lift the anonymous per-IP rate for the bench.
        .env("SECURECART_ANON_RATE", "1000000")
        .env("SECURECART_ANON_BURST", "1000000")
        // Each subscription is billed its cost at subscribe time; one address opening 10,000
        // would drain the anonymous budget, which is not what this bench measures.
        .env("SECURECART_BUDGET_ANONYMOUS", "1000000000/1000000000")
        .env("SECURECART_LOG", "warn")
        // Its start-up banner and warnings would land in the table run.sh captures.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
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
    let url = format!("ws://127.0.0.1:{port}/graphql/ws");
    let server_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut sockets = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(250) {
        let opened = futures::future::join_all(chunk.iter().map(|&i| {
            let url = url.clone();
            // Spread: subscriber 0 watches the product that changes, the others products that
            // do not exist (as many topics as subscribers; none of them hears the change).
            let query = match (spread, i) {
                (false, _) => "subscription { inventoryChanged { productId available delta } }".to_string(),
                (true, 0) => format!(
                    "subscription {{ inventoryChanged(productIds: [\"{id}\"]) {{ productId available delta }} }}"
                ),
                (true, i) => {
                    let other = GlobalId::new(NodeKind::Product, 1_000_000 + i as i64).encode();
                    format!(
                        "subscription {{ inventoryChanged(productIds: [\"{other}\"]) {{ productId available delta }} }}"
                    )
                }
            };
            async move {
                let mut request = url.into_client_request().unwrap();
                request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
                // Source addresses 127.0.0.1-4: ~28,000 ephemeral ports each.
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1 + (i % 4) as u8], 0))).unwrap();
                let stream = socket.connect(server_addr).await.expect("connect");
                let (mut ws, _) = tokio_tungstenite::client_async(request, stream).await.expect("connect");
                ws.send(Message::Text(json!({ "type": "connection_init" }).to_string().into())).await.unwrap();
                let _ack = ws.next().await;
                // BENCH_SUBSCRIBE=0: connections only (what a connection costs without its subscription).
                if std::env::var("BENCH_SUBSCRIBE").is_ok_and(|v| v == "0") {
                    return ws;
                }
                ws.send(Message::Text(
                    json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }).to_string().into(),
                ))
                .await
                .unwrap();
                ws
            }
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
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut readers = tokio::task::JoinSet::new();
    for mut ws in sockets {
        let tx = tx.clone();
        readers.spawn(async move {
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
    // BENCH_PAUSE=secs: time to attach a profiler to the server before the change.
    if let Some(pause) = std::env::var("BENCH_PAUSE").ok().and_then(|s| s.parse().ok()) {
        eprintln!("server pid {pid}: the change comes in {pause} s");
        tokio::time::sleep(Duration::from_secs(pause)).await;
    }
    let ticks_before = cpu_ticks(pid);
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
    let expected = if spread { 1 } else { n };
    let mut latencies = Vec::with_capacity(expected);
    while latencies.len() < expected {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(at)) => latencies.push(at - sent),
            _ => break,
        }
    }
    latencies.sort();
    // The server's CPU for the change: the mutation, then delivering (or not waking) everyone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_ms = (cpu_ticks(pid) - ticks_before) as f64 * 1000.0 / 100.0;
    // Close this run's sockets before the next run opens its own (the open-file limit).
    readers.shutdown().await;
    let _ = server.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    let Some(last) = latencies.last().map(|l| l.as_secs_f64() * 1000.0) else {
        return format!("| {n} | 0 | {:.1} KiB | - | - | - | - |", per / 1024.0);
    };
    let (kib, p50, p99) = (
        per / 1024.0,
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
    );
    let figure = |name: &str, value: f64| {
        let metric = format!("subscribers.{}{n}.{name}", if spread { "spread." } else { "" });
        common::record(&metric, value);
        (value, common::previous(&metric))
    };
    let (cpu_ms, cpu_was) = figure("cpu_ms", cpu_ms);
    if spread {
        // Every subscription differs here, so none shares a group (`graphql::shared`): this is
        // the memory of a subscription with an execution of its own.
        let (kib, kib_was) = figure("kib", per / 1024.0);
        return format!(
            "| {n} (1 on the changed product, {} on others) | {} | {kib:.1} KiB ({kib_was}) | {last:.1} ms | {cpu_ms:.0} ms ({cpu_was}) |",
            n - 1,
            latencies.len(),
        );
    }
    let [(kib, kib_was), (p50, p50_was), (p99, p99_was)] =
        [("kib", kib), ("p50_ms", p50), ("p99_ms", p99)].map(|(name, value)| figure(name, value));
    format!(
        "| {n} | {} | {kib:.1} KiB ({kib_was}) | {p50:.1} ms ({p50_was}) | {p99:.1} ms ({p99_was}) | {last:.1} ms | {cpu_ms:.0} ms ({cpu_was}) |",
        latencies.len(),
    )
}

#[tokio::main]
async fn main() {
    let bin = common::server_binary();
    let sizes: Vec<usize> = std::env::var("BENCH_N")
        .unwrap_or_else(|_| "1000,10000,50000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let files = raise_open_files(200_000);
    eprintln!("open-file limit: {files}");
    println!(
        "| subscribers | events received | server memory per subscriber (previous) | p50 delivery (previous) | p99 delivery (previous) | max | server CPU for the change (previous) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in sizes {
        println!("{}", run(n, &bin, files, false).await);
    }
    // Fan-out by topic: the same number of idle subscribers, each on its own product; one
    // change wakes the one subscriber of its product, and the server's CPU shows the others cost
    // nothing (BENCH_SPREAD_N, default 10000; 0 skips it).
    let spread: Vec<usize> = std::env::var("BENCH_SPREAD_N")
        .unwrap_or_else(|_| "10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    if !spread.is_empty() {
        println!();
        println!(
            "| subscribers, each on its own product | events received | server memory per subscriber (previous) | delivery to the one | server CPU for the change (previous) |"
        );
        println!("|---|---|---|---|---|");
        for n in spread {
            println!("{}", run(n, &bin, files, true).await);
        }
    }
}
