//! A fake payment provider on loopback, speaking the protocol `src/payments.rs` documents.
//! It honours idempotency keys like a real provider and counts what it was asked to do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Default)]
pub struct Ledger {
    /// Charges made, by idempotency key: (charge id, amount).
    pub charges: HashMap<String, (String, i64)>,
    /// Refunds made, by idempotency key.
    pub refunds: HashMap<String, String>,
    /// Every request received (retries with a known key included).
    pub requests: usize,
    /// While set, refunds answer 503 (the provider's refund service is down).
    pub refuse_refunds: bool,
}

pub struct FakeGateway {
    pub url: String,
    pub ledger: Arc<Mutex<Ledger>>,
}

impl FakeGateway {
    /// Starts the fake: `tok_visa` approves, `tok_declined` declines, `tok_slow` answers after 3 s
    /// (and charges even if the caller has gone), `tok_lagging` approves after 40 ms.
    pub async fn start() -> Self {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let router = axum::Router::new()
            .route("/charges", post(charge))
            .route("/refunds", post(refund))
            .with_state(ledger.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, ledger }
    }

    pub fn charges(&self) -> usize {
        self.ledger.lock().unwrap().charges.len()
    }

    pub fn refunds(&self) -> usize {
        self.ledger.lock().unwrap().refunds.len()
    }

    /// Every request received, retries with a known key included: what the server really sent.
    pub fn requests(&self) -> usize {
        self.ledger.lock().unwrap().requests
    }
}

fn key(headers: &HeaderMap) -> String {
    headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

async fn charge(
    State(ledger): State<Arc<Mutex<Ledger>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let key = key(&headers);
    let token = body["token"].as_str().unwrap_or_default().to_string();
    // Counted on arrival, so a test can wait for "the request reached the provider".
    let known = {
        let mut ledger = ledger.lock().unwrap();
        ledger.requests += 1;
        ledger.charges.get(&key).cloned()
    };
    // A key seen before answers what it answered then, at once (the idempotency contract).
    if let Some((id, _)) = known {
        return (StatusCode::OK, Json(json!({ "id": id, "status": "approved" })));
    }
    // Processed apart from the connection, like a real provider: a caller that gives up (a
    // timeout, a crash) does not stop the charge.
    let work = tokio::spawn(async move {
        match token.as_str() {
            "tok_slow" => tokio::time::sleep(Duration::from_secs(3)).await,
            // A provider that hangs.
            "tok_hang" => tokio::time::sleep(Duration::from_secs(60)).await,
            // A little latency, so a crash test finds charges in flight.
            "tok_lagging" => tokio::time::sleep(Duration::from_millis(40)).await,
            _ => {}
        }
        let mut ledger = ledger.lock().unwrap();
        if token == "tok_declined" {
            return (StatusCode::PAYMENT_REQUIRED, json!({ "status": "declined", "reason": "card declined" }));
        }
        if key.is_empty() {
            return (StatusCode::BAD_REQUEST, json!({ "status": "error" }));
        }
        let next = ledger.charges.len() + 1;
        let (id, _) = ledger
            .charges
            .entry(key)
            .or_insert_with(|| (format!("ch_{next}"), body["amount"].as_i64().unwrap_or(0)))
            .clone();
        (StatusCode::OK, json!({ "id": id, "status": "approved" }))
    });
    let (status, answer) = work.await.unwrap();
    (status, Json(answer))
}

async fn refund(
    State(ledger): State<Arc<Mutex<Ledger>>>,
    headers: HeaderMap,
    Json(_body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let key = key(&headers);
    let mut ledger = ledger.lock().unwrap();
    ledger.requests += 1;
    if ledger.refuse_refunds {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "refunds are down" })));
    }
    let next = ledger.refunds.len() + 1;
    let id = ledger.refunds.entry(key).or_insert_with(|| format!("re_{next}")).clone();
    (StatusCode::OK, Json(json!({ "id": id, "status": "approved" })))
}
