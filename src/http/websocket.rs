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
//! - 1008 also when `SECURECART_WS_PING_SECS` + `SECURECART_WS_SEND_TIMEOUT_SECS` (40 s by
//!   default) pass after a ping without a single frame from the client, not even the pong that
//!   answers it (a dead peer or a frozen one).
//!
//! Silence is not a reason to close: browsers, `ws` and tungstenite answer pings by themselves,
//! so a subscriber that sends nothing for hours stays connected. (async-graphql's own transport
//! counts only protocol messages and would close such a client after 60 s; this loop does not
//! use that timer.)
//!
//! A subscriber that falls behind (more than its mailbox holds, 1,024 events) is told, not
//! silently skipped: it gets an error with code `EVENTS_MISSED` and the number missed, and the
//! stream goes on with the next events; refetch the current state to catch up.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::http::{ClientMessage, WebSocketProtocols};
use async_graphql::parser::types::OperationType;
use async_graphql::{Data, ServerError};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::stream::{AbortHandle, SelectAll, SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};

use super::graphql::{prepare, prepare_unbilled};
use super::stream::{Slot, connection_slots};
use crate::auth::Caller;
use crate::auth::authenticate;
use crate::budget::BillingKey;
use crate::client::Peer;
use crate::error::ClientError;
use crate::graphql::limits::CostCell;
use crate::graphql::limits::gate::is_request_error;
use crate::graphql::shared::{Outcome, Selection};
use crate::state::AppState;

/// How the reason of a refused `connection_init` (close code 4403) begins.
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
    // read buffer. The read buffer is allocated up front and kept for the connection's life, so
    // it starts at 256 bytes: a client's messages are mostly small (`subscribe`, `ping`,
    // `complete`), and a server of idle subscribers reads next to nothing (1 KiB was about 6%
    // of an idle subscription, bench/SUBSCRIBERS.md). A larger frame still arrives whole:
    // tungstenite reserves the length its header announces (read 256 bytes at a time), and the
    // buffer keeps that size afterwards. 64 KiB caps one message.
    ws.protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .read_buffer_size(256)
        .write_buffer_size(4 * 1024)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        // No async block of its own: the loop's future is the connection task's whole state,
        // and an async fn keeps its arguments for its whole life, so it gets only small ones
        // (the state, itself one pointer, and the socket already split), not the 368 bytes of
        // `WebSocket` a wrapper would hold beside it for every idle connection.
        .on_upgrade(move |socket| {
            let (sink, stream) = socket.split();
            serve(slots, state, protocol, sink, stream, client_ip)
        })
}

/// The connection loop's own protocol implementation (both protocols), in place of
/// async-graphql's `http::WebSocket`: that one counts only protocol messages as signs of life
/// (closing quiet subscribers after 60 s), and serialises every result itself, so a result
/// shared by many subscribers could not be written once (see `graphql::shared`).
///
/// What the connection knows of its session: the caller from `connection_init` and the running
/// operations.
#[derive(Default)]
struct Session {
    /// Set by `connection_init`.
    init: Option<Init>,
    /// Running operations by id.
    running: HashMap<String, Running>,
    /// Numbers operations, so the end of one never completes a later one under the same id.
    started: u64,
}

/// What `connection_init` established: the caller, its billing key, and both as the
/// operations' session data.
struct Init {
    caller: Caller,
    billing: BillingKey,
    data: Arc<Data>,
}

impl Init {
    fn expires_at(&self) -> Option<i64> {
        self.caller.identity().map(|i| i.expires_at)
    }
}

struct Running {
    number: u64,
    abort: AbortHandle,
    /// The operation's place in `SECURECART_WS_MAX_SUBSCRIPTIONS`, given back as soon as it
    /// stops (a client that completes one and starts another at the limit is not refused).
    _slot: Option<Slot>,
    /// Whether the operation has sent its first result.
    answered: bool,
}

/// What a running operation yields to the connection loop: a result, or its end.
type Item = (String, u64, Option<Outcome>);

/// Starts one operation of a connection: the per-request policy (caller, loaders,
/// introspection), the operation limit per connection, the token's expiry, then the gate.
fn start(
    state: &AppState,
    active: &Arc<AtomicUsize>,
    init: &Init,
    request: async_graphql::Request,
) -> (BoxStream<'static, Outcome>, Option<Slot>) {
    let refused = |code: &str, message: String| {
        let mut error = ServerError::new(message, None);
        error.extensions.get_or_insert_with(Default::default).set("code", code);
        let response = async_graphql::Response::from_errors(vec![error]);
        (futures::stream::once(async move { Outcome::Own(Box::new(response)) }).boxed(), None)
    };
    if init.expires_at().is_some_and(|exp| exp <= chrono::Utc::now().timestamp()) {
        return refused("UNAUTHENTICATED", "token expired; reconnect with a fresh token".into());
    }
    let max = state.settings.websocket.max_subscriptions;
    if active.fetch_add(1, Ordering::SeqCst) >= max {
        active.fetch_sub(1, Ordering::SeqCst);
        return refused("TOO_MANY_SUBSCRIPTIONS", format!("at most {max} operations at once per connection"));
    }
    let slot = Slot::new(active.clone(), crate::telemetry::metrics::SUBSCRIPTIONS);
    let (caller, billing, session_data) = (init.caller.clone(), init.billing.clone(), init.data.clone());
    let results = if state.limits.operation_type(&request) == Some(OperationType::Subscription) {
        shared(state, request, caller, billing, session_data)
    } else {
        let request = prepare(state, request, caller, billing, CostCell::default());
        state
            .limits
            .execute_stream(state.schema.clone(), request, session_data)
            .map(|response| Outcome::Own(Box::new(response)))
            .boxed()
    };
    (results, Some(slot))
}

/// A subscription, through its group (`graphql::shared`): admitted and billed for itself, its
/// results executed and serialised once for every subscriber of the same selection and caller.
fn shared(
    state: &AppState,
    request: async_graphql::Request,
    caller: Caller,
    billing: BillingKey,
    session_data: Arc<Data>,
) -> BoxStream<'static, Outcome> {
    let selection = Selection::of(&request, &caller);
    // What its execution runs (alone or for a group), and a replay for this subscriber: the same request, not billed again.
    // An idle subscriber keeps this closure, so it holds the connection's state by pointer, and
    // the closure itself by pointer too (the request's parts and the caller are a few hundred
    // bytes, shared by the group's execution and the replay).
    let (query, operation, variables, extensions) =
        (selection.query(), request.operation_name.clone(), request.variables.clone(), request.extensions.clone());
    let unbilled = {
        let (state, caller) = (state.clone(), caller.clone());
        Arc::new(move |extra: Data| {
            let mut request = async_graphql::Request::new(&*query).variables(variables.clone());
            request.operation_name = operation.clone();
            request.extensions = extensions.clone();
            request.data = extra;
            let request = prepare_unbilled(&state, request, caller.clone());
            state.limits.execute_stream(state.schema.clone(), request, session_data.clone())
        })
    };
    let mut admitted = prepare(state, request, caller, billing, CostCell::default());
    let state = state.clone();
    // Boxed while it runs, as in the gate: an idle subscription keeps only its receiver.
    futures::stream::once(Box::pin(async move {
        let ticket = match state.limits.admit_alone(&mut admitted).await {
            Ok(ticket) => ticket,
            Err(refused) => return futures::stream::once(async move { Outcome::Own(Box::new(refused)) }).boxed(),
        };
        drop(admitted);
        let leader = unbilled.clone();
        let execute = move |audience, stamp| leader(with_two(audience, stamp));
        let replay = move |replay, stamp| unbilled(with_two(replay, stamp));
        state.groups.subscribe(selection, ticket, execute, replay)
    }))
    .flatten()
    .boxed()
}

/// Request data holding `a` and `b`.
fn with_two<A: std::any::Any + Send + Sync, B: std::any::Any + Send + Sync>(a: A, b: B) -> Data {
    let mut data = Data::default();
    data.insert(a);
    data.insert(b);
    data
}

/// The protocol's messages from server to client.
fn ack() -> String {
    r#"{"type":"connection_ack"}"#.to_string()
}

fn complete(id: &str) -> String {
    format!(r#"{{"type":"complete","id":{}}}"#, json_string(id))
}

/// A result: `next` (graphql-transport-ws) or `data` (legacy), around its JSON payload.
fn next(protocol: WebSocketProtocols, id: &str, payload: &str) -> String {
    let kind = if protocol == WebSocketProtocols::SubscriptionsTransportWS { "data" } else { "next" };
    format!(r#"{{"type":"{kind}","id":{},"payload":{payload}}}"#, json_string(id))
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

/// How the loop goes on after a client message.
enum Next {
    Continue,
    /// Close with this code and reason; `explain`: the legacy protocol gets a
    /// `connection_error` saying why first.
    Close {
        code: u16,
        reason: String,
        explain: bool,
    },
    /// Send this reply (`connection_ack`, `pong`, `complete`).
    Reply(String),
    /// The client ended the session (`connection_terminate`).
    End,
}

/// Handles one client message.
async fn receive(
    state: &AppState,
    active: &Arc<AtomicUsize>,
    session: &mut Session,
    operations: &mut SelectAll<BoxStream<'static, Item>>,
    client_ip: &str,
    init_deadline: tokio::time::Instant,
    bytes: &[u8],
) -> Next {
    let Ok(message) = ClientMessage::from_bytes(bytes) else {
        return Next::Close { code: 4400, reason: "Invalid message received".into(), explain: true };
    };
    match message {
        ClientMessage::ConnectionInit { payload } => {
            if session.init.is_some() {
                return Next::Close { code: 4429, reason: "Too many initialisation requests.".into(), explain: true };
            }
            let authorization = payload
                .as_ref()
                .and_then(|p| p.as_object())
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")))
                .and_then(|(_, v)| v.as_str());
            // Within the init deadline: a slow key or database lookup does not hold the
            // connection past it.
            let verify = authenticate(&state.verifier, state.services.store(), authorization);
            let Ok(caller) = tokio::time::timeout_at(init_deadline, verify).await else {
                let reason = "Connection initialisation timeout".to_string();
                return Next::Close { code: 4408, reason, explain: false };
            };
            if let Caller::Rejected(reason) = caller {
                return Next::Close { code: 4403, reason: format!("{REFUSED}{reason}"), explain: true };
            }
            let billing = BillingKey::of(&caller, client_ip, &state.settings);
            let mut data = Data::default();
            data.insert(billing.clone());
            data.insert(caller.clone());
            session.init = Some(Init { caller, billing, data: Arc::new(data) });
            Next::Reply(ack())
        }
        ClientMessage::Start { id, payload } => {
            let Some(init) = &session.init else {
                return Next::Close { code: 4401, reason: "Unauthorized".into(), explain: true };
            };
            if session.running.contains_key(&id) {
                // async-graphql would silently replace the first operation; the spec says 4409.
                return Next::Close {
                    code: 4409,
                    reason: format!("Subscriber for {id} already exists"),
                    explain: false,
                };
            }
            session.started += 1;
            let number = session.started;
            let (results, slot) = start(state, active, init, payload);
            let (results, abort) = futures::stream::abortable(results);
            let (item_id, end_id) = (id.clone(), id.clone());
            let results = results
                .map(move |outcome| (item_id.clone(), number, Some(outcome)))
                .chain(futures::stream::once(async move { (end_id, number, None) }));
            operations.push(results.boxed());
            session.running.insert(id, Running { number, abort, _slot: slot, answered: false });
            Next::Continue
        }
        ClientMessage::Stop { id } => match session.running.remove(&id) {
            Some(running) => {
                running.abort.abort();
                Next::Reply(complete(&id))
            }
            None => Next::Continue,
        },
        ClientMessage::ConnectionTerminate => Next::End,
        ClientMessage::Ping { .. } => Next::Reply(r#"{"type":"pong"}"#.to_string()),
        ClientMessage::Pong { .. } => Next::Continue,
    }
}

/// Serves one connection until it ends; `_slots` (its places under the connection limits) are
/// given back when it does. First among the arguments because they are dropped last to first:
/// the places are given back after the socket is closed, not a moment before.
async fn serve(
    _slots: impl Send,
    // Shared by pointer with each subscription's replay, which an idle subscriber keeps.
    state: AppState,
    protocol: WebSocketProtocols,
    mut sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
    client_ip: String,
) {
    let legacy = protocol == WebSocketProtocols::SubscriptionsTransportWS;
    let mut session = Session::default();
    let mut operations: SelectAll<BoxStream<'static, Item>> = SelectAll::new();
    let active = Arc::new(AtomicUsize::new(0));
    let ping_every = Duration::from_secs(state.settings.websocket.ping_secs.max(1));
    let send_timeout = Duration::from_secs(state.settings.websocket.send_timeout_secs.max(1));
    let init_deadline =
        tokio::time::Instant::now() + Duration::from_secs(state.settings.websocket.init_timeout_secs.max(1));
    let mut shutdown = state.shutdown.clone();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Liveness: when the last frame came from the client, and when an unanswered ping went out.
    let mut heard = tokio::time::Instant::now();
    let mut unanswered: Option<tokio::time::Instant> = None;
    // A peer that answers nothing for this long after a ping is gone. The send timeout is
    // added because the loop may spend that long in one send with the pong waiting unread.
    let no_pong_for = ping_every + send_timeout;
    // A send that waits longer than `send_timeout` means the client reads nothing: give up on it.
    macro_rules! send_or_drop {
        ($message:expr) => {
            match tokio::time::timeout(send_timeout, sink.send($message)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::info!(%client_ip, "dropping a WebSocket client that reads nothing");
                    let frame = CloseFrame { code: 1008, reason: "not reading: send timeout".into() };
                    let _ = tokio::time::timeout(Duration::from_millis(100), sink.send(Message::Close(Some(frame)))).await;
                    break;
                }
            }
        };
    }
    macro_rules! close {
        ($code:expr, $reason:expr) => {{
            let frame = CloseFrame { code: $code, reason: close_reason($reason).into() };
            let _ = tokio::time::timeout(send_timeout, sink.send(Message::Close(Some(frame)))).await;
            break;
        }};
    }
    loop {
        // The next moment the session must end: the init deadline, or the token's expiry.
        let (deadline, close) = if session.init.is_none() {
            (Some(init_deadline), (4408, "Connection initialisation timeout".to_string()))
        } else if let Some(exp) = session.init.as_ref().and_then(Init::expires_at) {
            // A second's grace: each subscription ends itself at `exp` with UNAUTHENTICATED,
            // which the client should see before the close.
            let left = (exp + 1 - chrono::Utc::now().timestamp()).max(0) as u64;
            (Some(tokio::time::Instant::now() + Duration::from_secs(left)), (4403, "token expired".to_string()))
        } else {
            (None, (1000, String::new()))
        };
        // A ping counts as answered by any frame that came after it.
        let pong_deadline = unanswered.filter(|sent| heard < *sent).map(|sent| sent + no_pong_for);
        tokio::select! {
            // Frames first: a pong already read off the socket is seen before a deadline is.
            biased;
            frame = stream.next() => {
                let message = match frame {
                    Some(Ok(message)) => message,
                    _ => break,
                };
                // Any frame is a sign of life, the pong that answers a ping included.
                heard = tokio::time::Instant::now();
                let bytes = match &message {
                    Message::Text(text) => text.as_bytes(),
                    Message::Binary(bytes) => bytes.as_ref(),
                    Message::Close(_) => {
                        // Answer the close handshake (tungstenite queued the reply; it goes out
                        // on the next write), so the client sees a clean close, not 1006.
                        let _ = tokio::time::timeout(Duration::from_millis(100), sink.close()).await;
                        break;
                    }
                    _ => continue,
                };
                // Boxed while it runs: its largest await (authenticating `connection_init`)
                // would otherwise size this loop's state, which every idle connection keeps.
                let received = receive(&state, &active, &mut session, &mut operations, &client_ip, init_deadline, bytes);
                match Box::pin(received).await {
                    Next::Continue => {}
                    Next::Reply(reply) => send_or_drop!(Message::Text(reply.into())),
                    Next::End => break,
                    Next::Close { code, reason, explain } => {
                        if explain && legacy {
                            // The legacy protocol has no close codes of its own: say why in a
                            // `connection_error` first, as its servers do, then close with the
                            // code graphql-transport-ws would use.
                            let error = serde_json::json!({ "type": "connection_error", "payload": { "message": reason } });
                            send_or_drop!(Message::Text(error.to_string().into()));
                        }
                        close!(code, reason)
                    }
                }
            }
            Some((id, number, outcome)) = operations.next(), if !operations.is_empty() => {
                let Some(running) = session.running.get_mut(&id).filter(|r| r.number == number) else { continue };
                let text = match outcome {
                    None => {
                        session.running.remove(&id);
                        complete(&id)
                    }
                    Some(outcome) => {
                        let first = !std::mem::replace(&mut running.answered, true);
                        // A refused operation's errors, or the result's JSON.
                        let (refused, json): (bool, std::borrow::Cow<str>) = match &outcome {
                            Outcome::Shared(result) => (first && result.refused, (*result.json).into()),
                            Outcome::Own(response) if first && is_request_error(response) => {
                                (true, serde_json::to_string(&response.errors).unwrap_or_default().into())
                            }
                            Outcome::Own(response) => (false, serde_json::to_string(response).unwrap_or_default().into()),
                        };
                        if refused {
                            // One `error` message with the errors, as both protocols say; no
                            // `complete` follows it.
                            if let Some(running) = session.running.remove(&id) {
                                running.abort.abort();
                            }
                            format!(r#"{{"id":{},"type":"error","payload":{json}}}"#, json_string(&id))
                        } else {
                            next(protocol, &id, &json)
                        }
                    }
                };
                send_or_drop!(Message::Text(text.into()));
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                let (code, reason) = close;
                close!(code, reason)
            }
            _ = async { shutdown.wait_for(|down| *down).await.is_ok() } => {
                close!(1001, "server shutting down".to_string())
            }
            _ = tokio::time::sleep_until(pong_deadline.unwrap_or_else(far_future)), if pong_deadline.is_some() => {
                tracing::info!(%client_ip, "dropping a WebSocket client that answered no ping");
                close!(1008, "no pong: the client answered no ping".to_string())
            }
            _ = ping.tick() => {
                // One ping at a time: the next goes once the last is answered.
                if pong_deadline.is_none() {
                    send_or_drop!(Message::Ping(Default::default()));
                    // From when the ping left, not when it was queued behind a slow send.
                    unanswered = Some(tokio::time::Instant::now());
                }
            }
        }
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

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}
