//! `GET /healthz` (the process is alive) and `GET /readyz` (its dependencies answer).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;

/// Liveness: answers as long as the process serves HTTP.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 when the database answers within two seconds, 503 otherwise. The event bus
/// is reported (`ok`, `in-process` or `degraded`) but does not fail readiness: without Redis
/// queries and mutations still work, and only other replicas' events are missing.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await;
    let (status, database) = match database {
        Ok(Ok(())) => (StatusCode::OK, "ok".to_string()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable".to_string())
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout".to_string()),
    };
    let body = json!({
        "status": if status.is_success() { "ready" } else { "unavailable" },
        "checks": { "database": database, "bus": state.bus.health().as_str() },
    });
    (status, Json(body))
}
