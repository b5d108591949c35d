//! GraphQL over WebSocket at `/graphql/ws`: graphql-transport-ws and the legacy graphql-ws
//! (subscriptions-transport-ws) protocol, chosen by `Sec-WebSocket-Protocol`.
//!
//! The token comes in the `connection_init` payload (`Authorization` or `authorization`,
//! `Bearer <token>`). No token: an anonymous connection (public data only). A bad token ends
//! the connection before any operation: close code 4403 on graphql-transport-ws (as its spec
//! says for a refused `connection_init`), `connection_error` on the legacy protocol.
//!
//! Limits: at most `SECURECART_WS_MAX_CONNECTIONS` connections per process and
//! `SECURECART_WS_MAX_PER_IP` per client address (503 `TOO_MANY_CONNECTIONS` before the upgrade),
//! and `SECURECART_WS_MAX_SUBSCRIPTIONS` operations at once per connection (an error with
//! `TOO_MANY_SUBSCRIPTIONS` for the one over). The server sends a WebSocket ping every
//! `SECURECART_WS_PING_SECS`, which keeps proxies from closing idle connections.
//!
//! Close codes (both protocols):
//! - 4403 when `connection_init` carries a refused token, and when the token the connection was
//!   opened with expires: each subscription ends at the token's `exp` with `UNAUTHENTICATED`,
//!   an operation sent after it is refused with `UNAUTHENTICATED`, and a second later the
//!   connection closes. Reconnect with a fresh token.
//! - 4408 when no `connection_init` arrives within `SECURECART_WS_INIT_TIMEOUT_SECS`.
//! - 4409 when a client starts an operation under an id that is still running.
//! - 4400 for a message that is not one of the protocol's (not JSON, unknown `type`, missing
//!   fields), 4401 for an operation sent before `connection_ack`, 4429 for a second
//!   `connection_init`. On the legacy protocol, which defines no close codes, the same codes
//!   are used after a `connection_error` message that says why.
//!
//! An operation refused before it runs (parse, validation, limits, budget) is answered with
//! the protocol's `error` message (its errors, no `complete` after it); errors of a running
//! subscription come in `next` (legacy: `data`) payloads, beside `data`.
//! - 1008 when a message or ping has waited `SECURECART_WS_SEND_TIMEOUT_SECS` for a client that
//!   reads nothing (a stuck or dead peer): the connection and its subscriptions are dropped
//!   instead of being held forever.
//!
//! A subscriber that falls behind (more than its mailbox holds, 1,024 events) is told, not
//! silently skipped: it gets an error with code `EVENTS_MISSED` and the number missed, and the
//! stream goes on with the next events; refetch the current state to catch up.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::futures_util::stream::BoxStream;
use std::str::FromStr;

use async_graphql::http::{WebSocket as GraphqlWebSocket, WebSocketProtocols, WsMessage};
use async_graphql::{Data, Executor, ServerError};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};

use super::graphql::prepare;
use super::stream::{Slot, connection_slots};
use crate::auth::Caller;
use crate::auth::authenticate;
use crate::budget::BillingKey;
use crate::client::Peer;
use crate::error::ClientError;
use crate::graphql::AppSchema;
use crate::graphql::limits::CostCell;
use crate::state::AppState;

/// Marks the init error that must become close code 4403.
const REFUSED: &str = "Forbidden: ";

/// `GET /graphql/ws`: upgrades to a GraphQL WebSocket. A missing or unknown
/// `Sec-WebSocket-Protocol` is refused with 400 before the upgrade.
pub async fn upgrade(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let client_ip = state.clients.of(peer.map(|p| p.ip()), &headers).map(|ip| ip.to_string()).unwrap_or_default();
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|list| list.split(',').find_map(|p| WebSocketProtocols::from_str(p.trim()).ok()));
    let Some(protocol) = protocol else {
        return (StatusCode::BAD_REQUEST, "Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws")
            .into_response();
    };
    // Take a connection slot before upgrading; it is given back when the connection ends.
    let Some(slots) = connection_slots(&state, &client_ip) else {
        let message = "too many WebSocket connections; retry later";
        return ClientError::new(StatusCode::SERVICE_UNAVAILABLE, "TOO_MANY_CONNECTIONS", message).into_response();
    };
    // Small buffers: an idle subscriber should cost kilobytes, not tungstenite's default 128 KiB
    // read buffer. The read buffer is kept for the connection's life, so it is 1 KiB (client
    // messages are small; a larger one is read in several steps), and 64 KiB caps one message.
    ws.protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .read_buffer_size(1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            serve(state, protocol, socket, client_ip).await;
            drop(slots);
        })
}

/// What the connection loop knows of its session: whether `connection_init` came, when its
/// token expires, and which operation ids are running.
#[derive(Default)]
struct Session {
    initialised: bool,
    expires_at: Option<i64>,
    running: HashSet<String>,
    /// Set when a client reuses a running id: the connection closes with 4409.
    duplicate: Option<String>,
    /// Operations that have sent their first result.
    answered: HashSet<String>,
    /// Operations answered with an `error` message, whose `complete` is not sent.
    errored: HashSet<String>,
}

/// The `type` and `id` of a protocol message, read without building the rest of it (every
/// event a subscriber is sent passes through here, so its payload is skipped, not parsed into
/// a tree).
fn kind_and_id(text: &[u8]) -> Option<(String, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(default, borrow, deserialize_with = "string_or_none")]
        id: Option<std::borrow::Cow<'a, str>>,
    }
    /// An `id` that is not a string counts as none (the message then passes unwatched).
    fn string_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<std::borrow::Cow<'de, str>>, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Id<'a> {
            Text(#[serde(borrow)] std::borrow::Cow<'a, str>),
            Other(serde::de::IgnoredAny),
        }
        Ok(match serde::Deserialize::deserialize(d)? {
            Id::Text(id) => Some(id),
            Id::Other(_) => None,
        })
    }
    if let Ok(head) = serde_json::from_slice::<Head>(text) {
        return Some((head.kind.into_owned(), head.id.map(std::borrow::Cow::into_owned)));
    }
    // serde also reads a message written as an array (`["subscribe", "1", {...}]`: the type,
    // then the fields in order), and so does async-graphql: watch those ids too.
    let fields: Vec<serde_json::Value> = serde_json::from_slice(text).ok()?;
    let kind = fields.first()?.as_str()?.to_string();
    Some((kind, fields.get(1).and_then(|id| id.as_str()).map(str::to_string)))
}

/// Applies the per-request policy (caller, loaders, introspection) to each operation of a
/// connection, reading the caller that `connection_init` stored in the session data.
#[derive(Clone)]
struct SessionExecutor {
    state: AppState,
    /// Operations running on this connection.
    active: Arc<AtomicUsize>,
}

impl Executor for SessionExecutor {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        self.state.limits.execute(&self.state.schema, request).await
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        fn get<T: Clone + 'static>(data: &Option<Arc<Data>>) -> Option<T> {
            data.as_ref()?.get(&std::any::TypeId::of::<T>())?.downcast_ref::<T>().cloned()
        }
        let caller = get::<Caller>(&session_data).unwrap_or(Caller::Anonymous);
        if let Some(identity) = caller.identity()
            && identity.expires_at <= chrono::Utc::now().timestamp()
        {
            let message = "token expired; reconnect with a fresh token";
            let mut error = ServerError::new(message, None);
            error.extensions.get_or_insert_with(Default::default).set("code", "UNAUTHENTICATED");
            return futures::stream::once(async move { async_graphql::Response::from_errors(vec![error]) }).boxed();
        }
        let billing = get::<BillingKey>(&session_data)
            .unwrap_or_else(|| BillingKey::of(&caller, "unknown", &self.state.settings));
        let max = self.state.settings.websocket.max_subscriptions;
        if self.active.fetch_add(1, Ordering::SeqCst) >= max {
            self.active.fetch_sub(1, Ordering::SeqCst);
            let mut error = ServerError::new(format!("at most {max} operations at once per connection"), None);
            error.extensions.get_or_insert_with(Default::default).set("code", "TOO_MANY_SUBSCRIPTIONS");
            return futures::stream::once(async move { async_graphql::Response::from_errors(vec![error]) }).boxed();
        }
        let slot = Slot::new(self.active.clone(), crate::telemetry::metrics::SUBSCRIPTIONS);
        let request = prepare(&self.state, request, caller, billing, CostCell::default());
        let schema: AppSchema = self.state.schema.clone();
        self.state
            .limits
            .execute_stream(schema, request, session_data.unwrap_or_default())
            .map(move |response| {
                let _held = &slot;
                response
            })
            .boxed()
    }
}

async fn serve(state: AppState, protocol: WebSocketProtocols, socket: WebSocket, client_ip: String) {
    let (mut sink, stream) = socket.split();
    let session = Arc::new(Mutex::new(Session::default()));
    let seen = session.clone();
    // Wakes the connection loop when the input filter finds a reused id.
    let wake = Arc::new(tokio::sync::Notify::new());
    let woken = wake.clone();
    let input = stream
        .take_while(|msg| futures::future::ready(msg.is_ok()))
        .filter_map(|msg| {
            futures::future::ready(match msg {
                Ok(Message::Text(text)) => Some(text.as_str().as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                _ => None,
            })
        })
        // Watch the ids the client starts and stops: a start under a running id is not passed
        // on (async-graphql would silently replace the first operation); the loop closes 4409.
        .filter(move |bytes| {
            let mut session = seen.lock().unwrap_or_else(|e| e.into_inner());
            let pass = match kind_and_id(bytes) {
                Some((kind, Some(id))) if kind == "subscribe" || kind == "start" => {
                    if session.running.insert(id.clone()) {
                        true
                    } else {
                        session.duplicate = Some(id);
                        woken.notify_one();
                        false
                    }
                }
                Some((kind, Some(id))) if kind == "complete" || kind == "stop" => {
                    session.running.remove(&id);
                    true
                }
                _ => true,
            };
            futures::future::ready(pass)
        });
    let init_state = state.clone();
    let init_session = session.clone();
    let ping_every = Duration::from_secs(state.settings.websocket.ping_secs.max(1));
    let send_timeout_secs = state.settings.websocket.send_timeout_secs;
    let peer = client_ip.clone();
    let init_deadline =
        tokio::time::Instant::now() + Duration::from_secs(state.settings.websocket.init_timeout_secs.max(1));
    let mut shutdown = state.shutdown.clone();
    let executor = SessionExecutor { state, active: Arc::default() };
    let output = GraphqlWebSocket::new(executor, input, protocol)
        .on_connection_init(move |payload| async move {
            let authorization = payload
                .as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")))
                .and_then(|(_, v)| v.as_str().map(str::to_string));
            let caller =
                authenticate(&init_state.verifier, init_state.services.store(), authorization.as_deref()).await;
            if let Caller::Rejected(reason) = caller {
                return Err(async_graphql::Error::new(format!("{REFUSED}{reason}")));
            }
            {
                let mut session = init_session.lock().unwrap_or_else(|e| e.into_inner());
                session.initialised = true;
                session.expires_at = caller.identity().map(|i| i.expires_at);
            }
            let mut data = Data::default();
            data.insert(BillingKey::of(&caller, &client_ip, &init_state.settings));
            data.insert(caller);
            Ok(data)
        })
        .keepalive_timeout(Duration::from_secs(60));
    futures::pin_mut!(output);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let send_timeout = Duration::from_secs(send_timeout_secs.max(1));
    // A send that waits longer than `send_timeout` means the client reads nothing: give up on it.
    macro_rules! send_or_drop {
        ($message:expr) => {
            match tokio::time::timeout(send_timeout, sink.send($message)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::info!(client_ip = %peer, "dropping a WebSocket client that reads nothing");
                    let frame = CloseFrame { code: 1008, reason: "not reading: send timeout".into() };
                    let _ = tokio::time::timeout(Duration::from_millis(100), sink.send(Message::Close(Some(frame)))).await;
                    break;
                }
            }
        };
    }
    loop {
        // The next moment the session must end: the init deadline, or the token's expiry.
        let (deadline, close) = {
            let session = session.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(id) = &session.duplicate {
                (None, Some((4409, format!("Subscriber for {id} already exists"))))
            } else if !session.initialised {
                (Some(init_deadline), Some((4408, "Connection initialisation timeout".to_string())))
            } else if let Some(exp) = session.expires_at {
                // A second's grace: each subscription ends itself at `exp` with UNAUTHENTICATED,
                // which the client should see before the close.
                let left = (exp + 1 - chrono::Utc::now().timestamp()).max(0) as u64;
                (
                    Some(tokio::time::Instant::now() + Duration::from_secs(left)),
                    Some((4403, "token expired".to_string())),
                )
            } else {
                (None, None)
            }
        };
        if deadline.is_none()
            && let Some((code, reason)) = close.clone()
        {
            let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
            break;
        }
        let message = tokio::select! {
            message = output.next() => match message {
                Some(message) => message,
                None => break,
            },
            _ = wake.notified() => continue,
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(far_future)).await }, if deadline.is_some() => {
                if let Some((code, reason)) = close {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                }
                break;
            }
            _ = async { shutdown.wait_for(|down| *down).await.is_ok() } => {
                let frame = CloseFrame { code: 1001, reason: "server shutting down".into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                break;
            }
            _ = ping.tick() => {
                send_or_drop!(Message::Ping(Default::default()));
                continue;
            }
        };
        let message = match message {
            WsMessage::Text(text) => {
                let mut text = text;
                if let Some((kind, Some(id))) = kind_and_id(text.as_bytes()) {
                    let mut session = session.lock().unwrap_or_else(|e| e.into_inner());
                    match kind.as_str() {
                        "next" | "data" => {
                            let first = !session.answered.contains(&id) && session.answered.insert(id.clone());
                            if first && let Some(error) = as_error_message(&id, &text) {
                                text = error;
                                session.errored.insert(id.clone());
                                session.running.remove(&id);
                            }
                        }
                        "complete" => {
                            session.running.remove(&id);
                            session.answered.remove(&id);
                            // graphql-transport-ws: nothing follows an `error` message.
                            if session.errored.remove(&id) {
                                continue;
                            }
                        }
                        "error" => {
                            session.running.remove(&id);
                        }
                        _ => {}
                    }
                }
                Message::Text(text.into())
            }
            WsMessage::Close(code, reason) => {
                let (code, reason) = close_code(code, reason);
                if protocol == WebSocketProtocols::SubscriptionsTransportWS && code != 1000 {
                    // The legacy protocol has no close codes of its own: say why in a
                    // `connection_error` first, as its servers do, then close with the same
                    // code graphql-transport-ws would use.
                    let error = serde_json::json!({ "type": "connection_error", "payload": { "message": reason } });
                    send_or_drop!(Message::Text(error.to_string().into()));
                }
                Message::Close(Some(CloseFrame { code, reason: close_reason(reason).into() }))
            }
        };
        send_or_drop!(message);
    }
}

/// The close code the protocol specifies for what async-graphql closed the connection for:
/// 4400 for a message that is not one of the protocol's, 4401 for an operation before
/// `connection_ack`, 4403 for a refused `connection_init`; others (4429, ...) pass as they are.
fn close_code(code: u16, reason: String) -> (u16, String) {
    match code {
        1002 if reason.starts_with(REFUSED) => (4403, reason),
        1002 => (4400, "Invalid message received".to_string()),
        1011 => (4401, "Unauthorized".to_string()),
        _ => (code, reason),
    }
}

/// A close frame's reason holds at most 123 bytes (RFC 6455); longer ones are cut at a
/// character boundary rather than breaking the frame.
fn close_reason(mut reason: String) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.truncate(end);
    reason
}

/// An operation refused before it ran (parse, validation, limits, budget: no `data`, no error
/// with a `path`) is answered with one `error` message carrying the errors, not `next` (or the
/// legacy `data`) and `complete`: both protocols say so (GQL_ERROR in the legacy one). `None` for anything else (an `EVENTS_MISSED` notice
/// is part of a running stream).
fn as_error_message(id: &str, text: &str) -> Option<String> {
    let message: serde_json::Value = serde_json::from_str(text).ok()?;
    let payload = message.get("payload")?;
    if !payload.get("data").is_none_or(serde_json::Value::is_null) {
        return None;
    }
    let errors = payload.get("errors")?.as_array()?;
    let before_execution = !errors.is_empty()
        && errors.iter().all(|e| {
            e.get("path").is_none() && e.pointer("/extensions/code").and_then(|c| c.as_str()) != Some("EVENTS_MISSED")
        });
    before_execution.then(|| serde_json::json!({ "id": id, "type": "error", "payload": errors }).to_string())
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}
