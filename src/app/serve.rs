//! The accept loop of the public listener, with what `axum::serve` leaves out: deadlines for a
//! new connection's first headers (slowloris) and for a kept-alive connection's idle time
//! (`app::deadlines`), and caps on open connections, in all and per client address.
//! Each connection is served by hyper with upgrades (WebSocket), and shut down gracefully when
//! the server stops. The body deadline and the early 413 are a middleware (`app::routes`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tower::ServiceExt;

/// Connection limits of the public listener.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// How long a new connection may take to send its first request's headers, from when its
    /// task starts (after the TLS handshake, which has a limit of its own): [`super::deadlines`].
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait between an answer and the next request's
    /// complete headers (hyper's header timer, which runs from when a connection goes idle).
    pub idle_timeout: Duration,
    /// Open connections at most, in all.
    pub max_connections: usize,
    /// Open connections at most from one client address.
    pub max_per_ip: usize,
    /// Addresses the per-address cap does not apply to (the trusted proxies).
    pub exempt: Vec<crate::client::Cidr>,
}

/// Open connections, in all and per address; a `Ticket` gives its place back when dropped.
#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

struct Ticket(Arc<Mutex<Open>>, Option<IpAddr>);

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(ip) = self.1
            && let Some(n) = open.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&ip);
            }
        }
        metrics::gauge!(crate::telemetry::metrics::HTTP_CONNECTIONS).decrement(1.0);
    }
}

/// The address a connection counts against: IPv6 by its /64 (one host has a whole /64), and a
/// trusted proxy not at all (it carries many clients; only the total cap applies to it).
fn share(ip: IpAddr, limits: &ConnectionLimits) -> Option<IpAddr> {
    if limits.exempt.iter().any(|c| c.contains(ip)) {
        return None;
    }
    Some(match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    })
}

/// A place for a connection from `ip`, or `None` when a cap is reached.
fn admit(open: &Arc<Mutex<Open>>, ip: IpAddr, limits: &ConnectionLimits) -> Option<Ticket> {
    let mut guard = open.lock().unwrap_or_else(|e| e.into_inner());
    let ip = share(ip, limits);
    let from_ip = ip.and_then(|ip| guard.per_ip.get(&ip).copied()).unwrap_or(0);
    if guard.total >= limits.max_connections || from_ip >= limits.max_per_ip {
        return None;
    }
    guard.total += 1;
    if let Some(ip) = ip {
        *guard.per_ip.entry(ip).or_default() += 1;
    }
    metrics::gauge!(crate::telemetry::metrics::HTTP_CONNECTIONS).increment(1.0);
    Some(Ticket(open.clone(), ip))
}

/// Serves `router` on `listener` until `shutdown` turns true; then stops accepting, lets each
/// connection finish its requests, and returns when every connection is closed (the caller
/// bounds that wait by the shutdown deadline).
pub async fn serve<L>(mut listener: L, router: Router, limits: ConnectionLimits, mut shutdown: watch::Receiver<bool>)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let open = Arc::new(Mutex::new(Open::default()));
    let (closed_tx, closed_rx) = watch::channel(());
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|down| *down) => break,
        };
        let Some(ticket) = admit(&open, peer.ip(), &limits) else {
            // Closed at once: a client over its share gets no slot to hold.
            metrics::counter!(crate::telemetry::metrics::THROTTLED, "kind" => "connections").increment(1);
            tracing::debug!(peer = %peer, "connection refused: connection cap reached");
            continue;
        };
        let service = router.clone().map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.map(axum::body::Body::new)
        });
        let service = TowerToHyperService::new(service);
        let (mut shutdown, closed_rx) = (shutdown.clone(), closed_rx.clone());
        let (header_timeout, idle_timeout) = (limits.header_timeout, limits.idle_timeout);
        tokio::spawn(async move {
            // HTTP/1.1 only: the auto builder's version sniffing, and HTTP/2 connections, have
            // no header deadline. hyper's header timer runs whenever a connection waits for a
            // head, idle time included, so it is given the idle timeout; the header timeout is
            // `Deadlined`'s, for the first head (`super::deadlines` says why).
            let mut builder = Builder::new(TokioExecutor::new()).http1_only();
            builder.http1().timer(TokioTimer::new()).header_read_timeout(idle_timeout);
            let io = super::deadlines::Deadlined::new(io, header_timeout);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    served = conn.as_mut() => {
                        if let Err(e) = served {
                            tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = shutdown.wait_for(|down| *down), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(ticket);
            drop(closed_rx);
        });
    }
    answer_queued(&mut listener).await;
    drop(listener);
    drop(closed_rx);
    closed_tx.closed().await;
}

/// Connections the kernel already accepted but the loop had not taken when shutdown began would
/// be reset when the listener closes; each gets a 503 with `Retry-After` instead, so its client
/// knows to go elsewhere (another replica) rather than seeing a broken connection.
async fn answer_queued<L>(listener: &mut L)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use tokio::io::AsyncWriteExt;
    const BODY: &str =
        r#"{"errors":[{"message":"the server is shutting down; retry","extensions":{"code":"SERVICE_UNAVAILABLE"}}]}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut answered = 0;
    // Only what is queued now: an accept that is not ready at once ends the drain.
    while let Ok((mut io, _)) = tokio::time::timeout(Duration::ZERO, listener.accept()).await {
        let answer = answer.clone();
        answered += 1;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = io.write_all(answer.as_bytes()).await;
                let _ = io.shutdown().await;
            })
            .await;
        });
    }
    if answered > 0 {
        tracing::info!(answered, "answered queued connections with 503 while shutting down");
    }
}
