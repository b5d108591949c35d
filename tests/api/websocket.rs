//! GraphQL over WebSocket: both protocols, the token in `connection_init`, and refusals.

use futures::{SinkExt, StreamExt};
use securecart::auth::Role;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{TestApp, on_both_backends, token};

on_both_backends!(transport_ws_accepts_a_valid_token, transport_ws_refuses_a_bad_token_with_4403, legacy_ws_protocol);

/// graphql-transport-ws's close codes and `error` message, exactly as its spec says, and the
/// legacy protocol's equivalents.
#[tokio::test]
async fn protocol_errors_close_with_the_specified_codes() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await else { return };
    let init = json!({ "type": "connection_init", "payload": {} });
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ __typename }" } });
    // 4400: not a protocol message.
    for bad in [json!({ "type": "nonsense" }), json!({ "id": "1", "type": "subscribe" }), json!("text")] {
        let mut ws = connect(&app, "graphql-transport-ws").await;
        send(&mut ws, init.clone()).await;
        assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
        send(&mut ws, bad.clone()).await;
        assert_eq!(next(&mut ws).await, Err(4400), "{bad}");
    }
    // 4401: subscribe before connection_init.
    let mut ws = connect(&app, "graphql-transport-ws").await;
    send(&mut ws, subscribe.clone()).await;
    assert_eq!(next(&mut ws).await, Err(4401));
    // 4429: a second connection_init.
    let mut ws = connect(&app, "graphql-transport-ws").await;
    send(&mut ws, init.clone()).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    send(&mut ws, init.clone()).await;
    assert_eq!(next(&mut ws).await, Err(4429));
    // A refused operation is one `error` message with the errors; no `complete` follows, and
    // the connection goes on.
    let mut ws = connect(&app, "graphql-transport-ws").await;
    send(&mut ws, init.clone()).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    send(&mut ws, json!({ "id": "v", "type": "subscribe", "payload": { "query": "subscription { noSuchField }" } }))
        .await;
    let message = next(&mut ws).await.unwrap();
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["id"], "v");
    assert_eq!(message["payload"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED", "{message}");
    send(&mut ws, subscribe.clone()).await;
    let message = next(&mut ws).await.unwrap();
    assert_eq!((message["type"].as_str(), message["id"].as_str()), (Some("next"), Some("1")), "{message}");
    assert_eq!(message["payload"]["data"]["__typename"], "QueryRoot");
    assert_eq!(next(&mut ws).await.unwrap()["type"], "complete");
    // The legacy protocol: `connection_error` saying why, then the same close code.
    let mut ws = connect(&app, "graphql-ws").await;
    send(&mut ws, json!({ "id": "1", "type": "start", "payload": { "query": "{ __typename }" } })).await;
    let message = next(&mut ws).await.unwrap();
    assert_eq!(message["type"], "connection_error", "{message}");
    assert_eq!(next(&mut ws).await, Err(4401));
    let mut ws = connect(&app, "graphql-ws").await;
    send(&mut ws, init.clone()).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    send(&mut ws, json!({ "id": "v", "type": "start", "payload": { "query": "{ noSuchField }" } })).await;
    let message = next(&mut ws).await.unwrap();
    assert_eq!((message["type"].as_str(), message["id"].as_str()), (Some("error"), Some("v")), "{message}");
    send(&mut ws, json!({ "id": "2", "type": "start", "payload": { "query": "{ __typename }" } })).await;
    let message = next(&mut ws).await.unwrap();
    assert_eq!(
        (message["type"].as_str(), message["id"].as_str()),
        (Some("data"), Some("2")),
        "no complete for v: {message}"
    );
    let mut ws = connect(&app, "graphql-ws").await;
    send(&mut ws, json!({ "type": "nonsense" })).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_error");
    assert_eq!(next(&mut ws).await, Err(4400));
    // A client that closes gets the close handshake answered (a clean close, not 1006).
    let mut ws = connect(&app, "graphql-transport-ws").await;
    send(&mut ws, init.clone()).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    ws.close(None).await.unwrap();
    let reply = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await.expect("an answer");
    assert!(matches!(reply, Some(Ok(Message::Close(_)))), "the server answers the close: {reply:?}");
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(app: &TestApp, protocol: &str) -> Ws {
    connect_to(&app.address, protocol).await
}

/// Opens a GraphQL WebSocket to a server at `address` (`http://host:port`).
pub async fn connect_to(address: &str, protocol: &str) -> Ws {
    let url = address.replace("http://", "ws://") + "/graphql/ws";
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    ws
}

pub async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into())).await.unwrap();
}

/// The next protocol message, skipping keep-alives; `Err(code)` when the server closes.
pub async fn next(ws: &mut Ws) -> Result<Value, u16> {
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the stream is open")
            .expect("no transport error");
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] != "ka" && value["type"] != "ping" {
                    return Ok(value);
                }
            }
            Message::Close(frame) => return Err(frame.map(|f| u16::from(f.code)).unwrap_or(0)),
            _ => {}
        }
    }
}

async fn transport_ws_accepts_a_valid_token(app: TestApp) {
    app.seed(3, 1).await;
    let mut ws = connect(&app, "graphql-transport-ws").await;
    let tok = token("alice", &[Role::Customer], None);
    send(&mut ws, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {tok}") } })).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    let query = "{ me { subject } products(first: 2) { edges { node { name } } } }";
    send(&mut ws, json!({ "id": "1", "type": "subscribe", "payload": { "query": query } })).await;
    let message = next(&mut ws).await.unwrap();
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(message["payload"]["data"]["me"]["subject"], "alice");
    assert_eq!(message["payload"]["data"]["products"]["edges"].as_array().unwrap().len(), 2);
    assert!(message["payload"]["extensions"]["cost"]["actualQueryCost"].is_u64(), "{message}");
    assert_eq!(next(&mut ws).await.unwrap()["type"], "complete");
    // The same gate as over HTTP: the unused cost (10 asked, 3 exist) is given back, reported.
    send(&mut ws, json!({ "id": "2", "type": "subscribe", "payload": { "query": "{ products(first: 10) { edges { node { name } } } }" } })).await;
    let message = next(&mut ws).await.unwrap();
    let cost = &message["payload"]["extensions"]["cost"];
    assert!(cost["actualQueryCost"].as_u64() < cost["requestedQueryCost"].as_u64(), "{message}");
    assert_eq!(next(&mut ws).await.unwrap()["type"], "complete");

    // Without a token the connection is anonymous: public data yes, `me` no.
    let mut ws = connect(&app, "graphql-transport-ws").await;
    send(&mut ws, json!({ "type": "connection_init", "payload": {} })).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    send(&mut ws, json!({ "id": "a", "type": "subscribe", "payload": { "query": "{ me { subject } }" } })).await;
    let message = next(&mut ws).await.unwrap();
    assert_eq!(message["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{message}");
}

async fn transport_ws_refuses_a_bad_token_with_4403(app: TestApp) {
    for bad in ["Bearer not.a.jwt", "Bearer ", "Token abc"] {
        let mut ws = connect(&app, "graphql-transport-ws").await;
        send(&mut ws, json!({ "type": "connection_init", "payload": { "authorization": bad } })).await;
        assert_eq!(next(&mut ws).await, Err(4403), "{bad}");
    }
    let expired = {
        let claims = json!({ "sub": "alice", "roles": ["customer"], "exp": chrono::Utc::now().timestamp() - 3600 });
        let key = jsonwebtoken::EncodingKey::from_secret(securecart::config::DEV_JWT_SECRET.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    let mut ws = connect(&app, "graphql-transport-ws").await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {expired}") } }))
        .await;
    assert_eq!(next(&mut ws).await, Err(4403));
}

async fn legacy_ws_protocol(app: TestApp) {
    app.seed(3, 1).await;
    let mut ws = connect(&app, "graphql-ws").await;
    let tok = token("bob", &[Role::Customer], None);
    send(&mut ws, json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {tok}") } })).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    send(&mut ws, json!({ "id": "1", "type": "start", "payload": { "query": "{ me { subject } }" } })).await;
    let message = next(&mut ws).await.unwrap();
    assert_eq!(message["type"], "data", "{message}");
    assert_eq!(message["payload"]["data"]["me"]["subject"], "bob");

    let mut ws = connect(&app, "graphql-ws").await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "authorization": "Bearer forged" } })).await;
    let message = next(&mut ws).await.unwrap();
    assert_eq!(message["type"], "connection_error", "{message}");
    assert!(message["payload"]["message"].as_str().unwrap().contains("malformed token"), "{message}");
}
