//! Benchmark: server CPU spent on documents the limits reject, against the floor of a trivial
//! accepted query (`{ __typename }`) measured in the same run.
//!
//! Starts the release server on a scratch SQLite database (tight limits are the defaults), sends
//! each kind of abusive document `BENCH_REQUESTS` times (default 2,000) over one keep-alive
//! connection, and reads the server's user+system CPU from `/proc/<pid>/stat` before and after.
//! Run: `cargo bench --bench rejections`, or as part of `bash bench/run.sh`. Prints a Markdown
//! table with the last CPU figures recorded in bench/history.tsv beside its own, and `METRIC`
//! lines on stderr for run.sh to record.

use std::time::Instant;

use serde_json::{Value, json};

#[path = "common.rs"]
mod common;
use common::cpu_ticks;

fn ticks_per_second() -> f64 {
    // SC_CLK_TCK is 100 on Linux for all supported architectures.
    100.0
}

#[tokio::main]
async fn main() {
    let bin = common::server_binary();
    let requests: usize = std::env::var("BENCH_REQUESTS").ok().and_then(|n| n.parse().ok()).unwrap_or(2000);
    let dir = std::env::temp_dir().join(format!("securecart-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = tokio::process::Command::new(&bin)
        .arg("serve")
        .current_dir(&dir)
        .env("SECURECART_LISTEN", format!("127.0.0.1:{port}"))
        .env("SECURECART_INTERNAL_LISTEN", "127.0.0.1:0")
        .env("SECURECART_LOG", "error")
        // The bench measures the limits, not the rate limiter or the budgets.
        .env("SECURECART_ANON_RATE", "1000000")
        .env("SECURECART_ANON_BURST", "1000000")
        .env("SECURECART_BUDGET_ANONYMOUS", "1000000000/1000000000")
        // Its start-up banner and warnings would land in the table run.sh captures.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/graphql");
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client.get(format!("http://127.0.0.1:{port}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pid = server.id().unwrap();

    let mut depth = String::from("{ products(first: 1) { edges { node { ");
    depth.push_str(&"vendor { products(first: 1) { edges { node { ".repeat(24));
    depth.push_str("name");
    depth.push_str(&" } } } }".repeat(24));
    depth.push_str(" } } } }");
    // (name, slug in bench/history.tsv, document, code expected)
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("floor: `{ __typename }` (accepted)", "floor", "{ __typename }".into(), ""),
        ("1,000 aliases", "aliases_1000", format!("{{ {} }}", (0..1000).map(|i| format!("a{i}: __typename")).collect::<Vec<_>>().join(" ")), "MAX_ALIASES_EXCEEDED"),
        ("10,000 root fields", "root_fields_10000", format!("{{ {} }}", "__typename ".repeat(10_000)), "MAX_ROOT_FIELDS_EXCEEDED"),
        ("16,000 tokens", "tokens_16000", format!("{{ {} }}", "__typename ".repeat(16_000)), "MAX_TOKENS_EXCEEDED"),
        ("depth 50", "depth_50", depth, "MAX_DEPTH_EXCEEDED"),
        ("1 MB query", "query_1mb", format!("{{ __typename }} # {}", "x".repeat(1_000_000)), "QUERY_TOO_LARGE"),
        (
            "cost 20,000",
            "cost_20000",
            "{ products(first: 100) { edges { node { vendor { products(first: 100) { edges { node { name vendor { name } } } } } } } } }".into(),
            "MAX_COMPLEXITY_EXCEEDED",
        ),
        ("circular fragment", "fragment_cycle", "query { ...A } fragment A on QueryRoot { ...B } fragment B on QueryRoot { ...A }".into(), "FRAGMENT_CYCLE"),
    ];
    println!("| document | bytes | code | server CPU per request (previous) | ratio to floor | wall per request |");
    println!("|---|---|---|---|---|---|");
    let mut floor = None;
    for (name, slug, query, code) in cases {
        let body = json!({ "query": query }).to_string();
        // Warm up, and check the answer is the one expected.
        let answer: Value = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let got = answer["errors"][0]["extensions"]["code"].as_str().unwrap_or("");
        assert_eq!(got, code, "{name}: {answer}");
        let (before, started) = (cpu_ticks(pid), Instant::now());
        for _ in 0..requests {
            let r =
                client.post(&url).header("content-type", "application/json").body(body.clone()).send().await.unwrap();
            let _ = r.bytes().await.unwrap();
        }
        let wall = started.elapsed().as_secs_f64() / requests as f64;
        let cpu = (cpu_ticks(pid) - before) as f64 / ticks_per_second() / requests as f64;
        let ratio = match floor {
            None => {
                floor = Some(cpu);
                "1.00".to_string()
            }
            Some(f) => format!("{:.2}", cpu / f),
        };
        let metric = format!("rejection.{slug}.cpu_us");
        common::record(&metric, cpu * 1e6);
        println!(
            "| {name} | {} | {} | {:.0} µs ({}) | {ratio} | {:.0} µs |",
            query.len(),
            if code.is_empty() { "-" } else { code },
            cpu * 1e6,
            common::previous(&metric),
            wall * 1e6
        );
    }
    let _ = server.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
