//! Subscriptions over plain HTTP, for networks where WebSockets break (corporate proxies,
//! some mobile carriers), on `POST /graphql` (and `GET`, for `EventSource`), chosen by `Accept`:
//!
//! - **graphql-sse**, distinct connections mode (`Accept: text/event-stream`): one event
//!   stream per operation, `event: next` with each result as `data`, then `event: complete`;
//!   a `:` comment every 12 s keeps proxies from closing an idle stream. A client that accepts
//!   no JSON (graphql-sse's own client) gets queries and mutations this way too, as one
//!   `next` and `complete`.
//! - **Apollo's multipart subscriptions** (`Accept: multipart/mixed;subscriptionSpec="1.0"`,
//!   what Apollo Client's `HttpLink` sends for a subscription): `multipart/mixed;
//!   boundary="graphql"; subscriptionSpec="1.0"`, each result as a `{"payload": ...}` part, a
//!   `{}` heartbeat part every 5 s, and the closing boundary when the subscription ends.
//!
//! Both run exactly what a WebSocket subscription runs: the caller from `Authorization`, the
//! same gate (`graphql::limits`: limits, cost budget, completion as the spec says), persisted
//! queries and events. A refused operation (parse, validation, limits) is its first and only
//! result, with its errors. Each open stream holds one of the long-lived connection
//! slots WebSockets use (`SECURECART_WS_MAX_CONNECTIONS`, `SECURECART_WS_MAX_PER_IP`; 503
//! `TOO_MANY_CONNECTIONS` beyond), ends at shutdown, and is dropped when the client stops
//! reading for `SECURECART_WS_SEND_TIMEOUT_SECS`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::parser::types::OperationType;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::graphql::limits::gate::is_request_error;
use crate::state::AppState;

/// The slots a long-lived connection holds (WebSocket, SSE or multipart): one of the process's
/// `SECURECART_WS_MAX_CONNECTIONS` and one of its address's `SECURECART_WS_MAX_PER_IP`. `None`
/// when either is used up; both are given back when the value is dropped.
pub(crate) fn connection_slots(state: &AppState, client_ip: &str) -> Option<impl Send + 'static> {
    let open = state.websockets.fetch_add(1, Ordering::SeqCst);
    let slot = Slot::new(state.websockets.clone(), crate::telemetry::metrics::WS_CONNECTIONS);
    let ip_slot = state.websockets_per_ip.take(client_ip.to_string(), state.settings.websocket.max_per_ip);
    ip_slot.filter(|_| open < state.settings.websocket.max_connections).map(|ip| (slot, ip))
}

/// Gives a counted slot back when dropped, and keeps a gauge in step.
pub(crate) struct Slot(Arc<AtomicUsize>, &'static str);

impl Slot {
    pub(crate) fn new(counter: Arc<AtomicUsize>, gauge: &'static str) -> Self {
        metrics::gauge!(gauge).increment(1.0);
        Self(counter, gauge)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!(self.1).decrement(1.0);
    }
}

/// How a streamed operation's results are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    /// graphql-sse's distinct connections mode.
    Sse,
    /// Apollo's multipart HTTP subscriptions.
    Multipart,
}

const SSE_KEEPALIVE: Duration = Duration::from_secs(12);
const MULTIPART_HEARTBEAT: Duration = Duration::from_secs(5);
const PART: &str = "\r\n--graphql\r\ncontent-type: application/json; charset=utf-8\r\n\r\n";

/// The streaming framing `Accept` asks for, the first one listed when it names both.
pub fn mode(headers: &HeaderMap) -> Option<StreamMode> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    accept.split(',').find_map(|range| {
        let media = range.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            "text/event-stream" => Some(StreamMode::Sse),
            "multipart/mixed" => Some(StreamMode::Multipart),
            _ => None,
        }
    })
}

/// Whether an operation of this type is streamed: subscriptions always; other operations only
/// over SSE to a client that accepts no JSON.
pub fn streams(mode: StreamMode, operation: Option<OperationType>, json_accepted: bool) -> bool {
    match (mode, operation) {
        (_, Some(OperationType::Subscription)) => true,
        (StreamMode::Sse, Some(_)) => !json_accepted,
        _ => false,
    }
}

/// Streams a prepared request's results in `mode`; `on_first` runs with the first result
/// (the persisted-query registration waits for it).
pub fn respond(
    state: &AppState,
    client_ip: &str,
    request: async_graphql::Request,
    mode: StreamMode,
    on_first: impl FnOnce(&async_graphql::Response) + Send + 'static,
) -> Response {
    let Some(slots) = connection_slots(state, client_ip) else {
        let message = "too many streaming connections; retry later";
        return crate::error::ClientError::new(StatusCode::SERVICE_UNAVAILABLE, "TOO_MANY_CONNECTIONS", message)
            .into_response();
    };
    let results = state.limits.execute_stream(state.schema.clone(), request, Default::default());
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let send_timeout = Duration::from_secs(state.settings.websocket.send_timeout_secs.max(1));
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let _slots = slots;
        let mut results = results;
        let mut on_first = Some(on_first);
        let every = if mode == StreamMode::Sse { SSE_KEEPALIVE } else { MULTIPART_HEARTBEAT };
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let send = |bytes: Bytes| {
            let tx = tx.clone();
            async move { matches!(tokio::time::timeout(send_timeout, tx.send(bytes)).await, Ok(Ok(()))) }
        };
        loop {
            let chunk = tokio::select! {
                next = results.next() => match next {
                    Some(result) => {
                        if let Some(f) = on_first.take() {
                            f(&result);
                        }
                        frame(mode, &result)
                    }
                    None => break,
                },
                _ = beat.tick() => match mode {
                    StreamMode::Sse => Bytes::from_static(b":\n\n"),
                    StreamMode::Multipart => Bytes::from(format!("{PART}{{}}")),
                },
                _ = tx.closed() => return,
                _ = async { shutdown.wait_for(|down| *down).await.is_ok() } => break,
            };
            if !send(chunk).await {
                return;
            }
        }
        let end = match mode {
            StreamMode::Sse => Bytes::from_static(b"event: complete\ndata:\n\n"),
            StreamMode::Multipart => Bytes::from_static(b"\r\n--graphql--\r\n"),
        };
        send(end).await;
    });
    let body =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    let media = match mode {
        StreamMode::Sse => "text/event-stream; charset=utf-8",
        StreamMode::Multipart => "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"",
    };
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tells nginx not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn frame(mode: StreamMode, result: &async_graphql::Response) -> Bytes {
    let mut value =
        serde_json::to_value(result).unwrap_or_else(|_| serde_json::json!({"errors": [{"message": "internal error"}]}));
    // A request error (nothing executed) has no `data` at all, as over plain HTTP.
    if is_request_error(result)
        && let Some(map) = value.as_object_mut()
    {
        map.remove("data");
    }
    let json = value.to_string();
    match mode {
        StreamMode::Sse => Bytes::from(format!("event: next\ndata: {json}\n\n")),
        StreamMode::Multipart => Bytes::from(format!("{PART}{{\"payload\":{json}}}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, value.parse().unwrap());
        h
    }

    #[test]
    fn accept_picks_the_framing_and_only_subscriptions_stream_beside_json() {
        assert_eq!(mode(&accept("text/event-stream")), Some(StreamMode::Sse));
        let apollo = "multipart/mixed;boundary=graphql;subscriptionSpec=1.0,application/graphql-response+json,application/json;q=0.9";
        assert_eq!(mode(&accept(apollo)), Some(StreamMode::Multipart));
        let urql = "application/graphql-response+json, application/graphql+json, application/json, text/event-stream, multipart/mixed";
        assert_eq!(mode(&accept(urql)), Some(StreamMode::Sse));
        assert_eq!(mode(&accept("application/json")), None);
        assert!(streams(StreamMode::Multipart, Some(OperationType::Subscription), true));
        assert!(!streams(StreamMode::Multipart, Some(OperationType::Query), true));
        assert!(!streams(StreamMode::Sse, Some(OperationType::Query), true), "urql's queries stay JSON");
        assert!(streams(StreamMode::Sse, Some(OperationType::Query), false));
        assert!(!streams(StreamMode::Sse, None, false), "a document that does not parse answers as JSON");
    }
}
