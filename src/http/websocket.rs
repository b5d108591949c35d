//! GraphQL over WebSocket at `/graphql/ws`: graphql-transport-ws and the legacy graphql-ws
//! (subscriptions-transport-ws) protocol, chosen by `Sec-WebSocket-Protocol`.
//!
//! The token comes in the `connection_init` payload (`Authorization` or `authorization`,
//! `Bearer <token>`). No token: an anonymous connection (public data only). A bad token ends
//! the connection before any operation: close code 4403 on graphql-transport-ws (as its spec
//! says for a refused `connection_init`), `connection_error` on the legacy protocol.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::futures_util::stream::BoxStream;
use std::str::FromStr;

use async_graphql::http::{WebSocket as GraphqlWebSocket, WebSocketProtocols, WsMessage};
use async_graphql::{Data, Executor};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};

use super::AppState;
use super::graphql::{authenticate, prepare};
use crate::auth::Caller;
use crate::graphql::AppSchema;

/// Marks the init error that must become close code 4403.
const REFUSED: &str = "Forbidden: ";

/// `GET /graphql/ws`: upgrades to a GraphQL WebSocket. A missing or unknown
/// `Sec-WebSocket-Protocol` is refused with 400 before the upgrade.
pub async fn upgrade(State(state): State<AppState>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|list| list.split(',').find_map(|p| WebSocketProtocols::from_str(p.trim()).ok()));
    let Some(protocol) = protocol else {
        return (StatusCode::BAD_REQUEST, "Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws")
            .into_response();
    };
    ws.protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| serve(state, protocol, socket))
}

/// Applies the per-request policy (caller, loaders, introspection) to each operation of a
/// connection, reading the caller that `connection_init` stored in the session data.
#[derive(Clone)]
struct SessionExecutor {
    state: AppState,
}

impl Executor for SessionExecutor {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        self.state.schema.execute(request).await
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        let caller = session_data
            .as_ref()
            .and_then(|d| d.get(&std::any::TypeId::of::<Caller>()))
            .and_then(|c| c.downcast_ref::<Caller>())
            .cloned()
            .unwrap_or(Caller::Anonymous);
        let request = prepare(&self.state, request, caller);
        let schema: &AppSchema = &self.state.schema;
        schema.execute_stream_with_session_data(request, session_data.unwrap_or_default())
    }
}

async fn serve(state: AppState, protocol: WebSocketProtocols, socket: WebSocket) {
    let (mut sink, stream) = socket.split();
    let input = stream.take_while(|msg| futures::future::ready(msg.is_ok())).filter_map(|msg| {
        futures::future::ready(match msg {
            Ok(Message::Text(text)) => Some(text.as_str().as_bytes().to_vec()),
            Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
            _ => None,
        })
    });
    let init_state = state.clone();
    let executor = SessionExecutor { state };
    let output = GraphqlWebSocket::new(executor, input, protocol)
        .on_connection_init(move |payload| async move {
            let authorization = payload
                .as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")))
                .and_then(|(_, v)| v.as_str().map(str::to_string));
            let caller = authenticate(&init_state, authorization.as_deref()).await;
            if let Caller::Rejected(reason) = caller {
                return Err(async_graphql::Error::new(format!("{REFUSED}{reason}")));
            }
            let mut data = Data::default();
            data.insert(caller);
            Ok(data)
        })
        .keepalive_timeout(Duration::from_secs(60));
    futures::pin_mut!(output);
    while let Some(message) = output.next().await {
        let message = match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => {
                // async-graphql closes a refused init with 1002; graphql-transport-ws wants 4403.
                let code = if code == 1002 && reason.starts_with(REFUSED) { 4403 } else { code };
                Message::Close(Some(CloseFrame { code, reason: reason.into() }))
            }
        };
        if sink.send(message).await.is_err() {
            break;
        }
    }
}
