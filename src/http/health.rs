//! `GET /healthz` (the process is alive) and `GET /readyz` (its dependencies answer).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::state::AppState;

/// `GET /metrics` (internal listener only): Prometheus text, with the database pool and the
/// bus's state and listeners sampled at scrape time.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    use crate::telemetry::metrics as m;
    let (open, idle, max) = state.services.store().pool_stats();
    metrics::gauge!(m::DB_POOL, "state" => "idle").set(idle as f64);
    metrics::gauge!(m::DB_POOL, "state" => "in_use").set(f64::from(open) - idle as f64);
    metrics::gauge!(m::DB_POOL, "state" => "max").set(f64::from(max));
    let database = tokio::time::timeout(std::time::Duration::from_secs(1), state.services.store().ping()).await;
    metrics::gauge!(m::DATABASE_UP).set(if matches!(database, Ok(Ok(()))) { 1.0 } else { 0.0 });
    metrics::gauge!(m::BUS_LISTENERS).set(state.services.bus().receivers() as f64);
    match state.services.bus().health() {
        crate::bus::BusHealth::InProcess => {}
        crate::bus::BusHealth::Connected => metrics::gauge!(m::BUS_CONNECTED).set(1.0),
        crate::bus::BusHealth::Degraded => metrics::gauge!(m::BUS_CONNECTED).set(0.0),
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m::handle().render())
}

/// Liveness: answers as long as the process serves HTTP.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 when the database answers within two seconds, 503 otherwise. The event bus
/// is reported (`ok`, `in-process` or `degraded`) but does not fail readiness: without Redis
/// queries and mutations still work, and only other replicas' events are missing. A schema
/// behind this build (`"database": "N migrations pending"`) fails it too: the code would run
/// statements the database cannot answer; so does a database that refuses writes (`"writes":
/// "failing: database or disk is full"`), probed by rewriting one row.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.services.store();
    // Reading the applied migrations is also the check that the database answers.
    let database = tokio::time::timeout(std::time::Duration::from_secs(2), store.pending_migrations()).await;
    let (mut status, database) = match database {
        Ok(Ok(pending)) if pending.is_empty() => (StatusCode::OK, "ok".to_string()),
        Ok(Ok(pending)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{} migrations pending", pending.len())),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable".to_string())
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout".to_string()),
    };
    // Reads may work while writes fail (a full disk): a replica that cannot take an order is
    // not ready. Checked only when the database answers at all.
    let writes = if status.is_success() {
        match tokio::time::timeout(std::time::Duration::from_secs(2), store.probe_write()).await {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the database refuses writes");
                status = StatusCode::SERVICE_UNAVAILABLE;
                format!("failing: {}", write_failure(&e))
            }
            Err(_) => {
                status = StatusCode::SERVICE_UNAVAILABLE;
                "timeout".to_string()
            }
        }
    } else {
        "unknown".to_string()
    };
    let mut checks = json!({ "database": database, "writes": writes, "bus": state.services.bus().health().as_str() });
    // The replica never fails readiness: without it, reads go to the primary.
    if store.has_replica() {
        checks["database_read"] = json!(store.routing.health().as_str());
    }
    let body = json!({ "status": if status.is_success() { "ready" } else { "unavailable" }, "checks": checks });
    (status, Json(body))
}

/// What the database said when a write failed, for the operator (no statement text).
fn write_failure(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    }
}
