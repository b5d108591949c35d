//! The payment gateway: charges and refunds over HTTP, or a built-in fake in development.
//!
//! The HTTP protocol (what `SECURECART_PAYMENT_URL` must speak):
//! - `POST {url}/charges` with `Idempotency-Key: <key>` and `{"amount": 1999, "currency": "USD",
//!   "token": "tok_visa"}` answers 200 `{"id": "ch_...", "status": "approved"}` or 402
//!   `{"status": "declined", "reason": "..."}`.
//! - `POST {url}/refunds` with `Idempotency-Key: <key>` and `{"charge": "ch_...", "amount": 1999,
//!   "currency": "USD"}` answers 200 `{"id": "re_...", "status": "approved"}`.
//!
//! **Idempotency is the contract the saga relies on** (as Stripe's idempotency keys): a second
//! `POST /charges` with a key already seen must not charge again and must answer what the first
//! did (the same charge id, or the same decline); while the first is still being processed it
//! may answer 409, which SecureCart treats as "not known yet". SecureCart asks again with the
//! same key when a charge's outcome is unknown: on a client's retry with its idempotency key,
//! and from the reconciler, which every `SECURECART_RECONCILE_INTERVAL_SECS` settles charges left
//! pending longer than `SECURECART_PAYMENT_TIMEOUT_MS` (a timeout, an unclear answer, a crash).
//! A refund's key is `refund:` and the charge's key, so it is made once too.
//!
//! How answers are read: 200 approved; 402 or `"status": "declined"` declined (nothing
//! charged: the order is released); a connection that could not be opened failed (nothing sent:
//! released); a timeout, a 5xx, a 409 or an unreadable answer leave the outcome unknown (the
//! order stays `PENDING`, holding its stock, until asked again).
//!
//! The development fake approves `tok_visa`, `tok_mastercard` and `tok_amex`, declines
//! `tok_declined` and `tok_insufficient_funds`, and declines anything else as an unknown test
//! token. `tok_timeout` times out the first time a key is seen and approves when asked again
//! with it: a charge completed late, as real providers do.

use std::time::Duration;

use serde_json::{Value, json};

/// What a charge or refund came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Money moved; the provider's reference.
    Approved(String),
    /// The provider said no; why.
    Declined(String),
    /// No answer in time: the provider may still make the charge.
    Timeout,
    /// An answer that does not say what happened (5xx, 409, garbage): maybe charged.
    Unconfirmed(String),
    /// Certainly not charged: the request never reached the provider, or it refused it (4xx).
    Failed(String),
}

/// Where payments go.
#[derive(Clone)]
pub enum PaymentGateway {
    /// The in-process development fake.
    Fake,
    /// A real provider (or a test fake) over HTTP.
    Http {
        /// Base URL.
        url: String,
        /// Client with the configured timeout.
        client: reqwest::Client,
    },
}

impl PaymentGateway {
    /// The HTTP gateway at `url`, or the fake when `url` is `None`.
    pub fn new(url: Option<&str>, timeout: Duration) -> anyhow::Result<Self> {
        Ok(match url {
            None => Self::Fake,
            Some(url) => Self::Http {
                url: url.trim_end_matches('/').to_string(),
                client: reqwest::Client::builder().timeout(timeout).build()?,
            },
        })
    }

    /// Charges `amount` minor units of `currency` to `token`.
    pub async fn charge(&self, amount: i64, currency: &str, token: &str, idempotency_key: &str) -> PaymentOutcome {
        match self {
            Self::Fake => match token {
                "tok_visa" | "tok_mastercard" | "tok_amex" => {
                    PaymentOutcome::Approved(format!("fake_ch_{}", short_hash(idempotency_key)))
                }
                "tok_declined" => PaymentOutcome::Declined("card declined".into()),
                "tok_insufficient_funds" => PaymentOutcome::Declined("insufficient funds".into()),
                "tok_timeout" => {
                    // The first attempt under a key times out; asked again, the charge is there.
                    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
                    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
                    if seen.iter().any(|k| k == idempotency_key) {
                        PaymentOutcome::Approved(format!("fake_ch_{}", short_hash(idempotency_key)))
                    } else {
                        if seen.len() >= 10_000 {
                            seen.clear();
                        }
                        seen.push(idempotency_key.to_string());
                        PaymentOutcome::Timeout
                    }
                }
                _ => PaymentOutcome::Declined("unknown test token (try tok_visa or tok_declined)".into()),
            },
            Self::Http { url, client } => {
                let body = json!({ "amount": amount, "currency": currency, "token": token });
                post(client, &format!("{url}/charges"), idempotency_key, body).await
            }
        }
    }

    /// Refunds `amount` of the charge `reference`.
    pub async fn refund(&self, reference: &str, amount: i64, currency: &str, idempotency_key: &str) -> PaymentOutcome {
        match self {
            Self::Fake => PaymentOutcome::Approved(format!("fake_re_{}", short_hash(idempotency_key))),
            Self::Http { url, client } => {
                let body = json!({ "charge": reference, "amount": amount, "currency": currency });
                post(client, &format!("{url}/refunds"), idempotency_key, body).await
            }
        }
    }
}

async fn post(client: &reqwest::Client, url: &str, idempotency_key: &str, body: Value) -> PaymentOutcome {
    let response = match client.post(url).header("idempotency-key", idempotency_key).json(&body).send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return PaymentOutcome::Timeout,
        // Never connected: the request was not sent, so nothing can have been charged.
        Err(e) if e.is_connect() => return PaymentOutcome::Failed(format!("payment gateway unreachable: {e}")),
        Err(e) => return PaymentOutcome::Unconfirmed(format!("payment request interrupted: {e}")),
    };
    let status = response.status();
    let body: Value = match response.json().await {
        Ok(v) => v,
        Err(e) if e.is_timeout() => return PaymentOutcome::Timeout,
        Err(e) => {
            return PaymentOutcome::Unconfirmed(format!("payment gateway answered HTTP {status} unreadably: {e}"));
        }
    };
    match (status.as_u16(), body["status"].as_str()) {
        (200, Some("approved")) => match body["id"].as_str() {
            Some(id) => PaymentOutcome::Approved(id.to_string()),
            None => PaymentOutcome::Unconfirmed("payment gateway approved without an id".into()),
        },
        (402, _) | (_, Some("declined")) => {
            PaymentOutcome::Declined(body["reason"].as_str().unwrap_or("declined").to_string())
        }
        (409, _) => PaymentOutcome::Unconfirmed("the payment is still being processed".into()),
        (code @ 400..=499, _) => PaymentOutcome::Failed(format!("payment gateway refused the request: HTTP {code}")),
        (code, _) => PaymentOutcome::Unconfirmed(format!("payment gateway answered HTTP {code}")),
    }
}

fn short_hash(text: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("{:016x}", h.finish())
}
