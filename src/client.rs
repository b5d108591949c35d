//! Who is on the other end: the client IP (trusting `X-Forwarded-For` only from configured
//! proxies), and the anonymous per-IP rate limit (tower-governor) with GraphQL-shaped 429s.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use tower_governor::GovernorError;

use crate::error::ClientError;
use tower_governor::key_extractor::KeyExtractor;

/// The peer address of the connection (absent when served without connect info, e.g. in
/// unit tests).
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)))
    }
}

/// Counts what each client holds (connections, handshakes, sockets) against a per-client cap;
/// cheap to clone. A `Share` gives its place back when dropped, and a client at zero leaves
/// the map, so it only holds clients with something open.
#[derive(Clone)]
pub struct Shares<K: std::hash::Hash + Eq + Clone>(Arc<std::sync::Mutex<std::collections::HashMap<K, usize>>>);

impl<K: std::hash::Hash + Eq + Clone> Default for Shares<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

/// One place in a client's share.
pub struct Share<K: std::hash::Hash + Eq + Clone>(Shares<K>, K);

impl<K: std::hash::Hash + Eq + Clone> Shares<K> {
    /// A place for `key`, or `None` when it already holds `max`.
    pub fn take(&self, key: K, max: usize) -> Option<Share<K>> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(key.clone()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Share(self.clone(), key))
    }
}

impl<K: std::hash::Hash + Eq + Clone> Drop for Share<K> {
    fn drop(&mut self) {
        let mut counts = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.1);
            }
        }
    }
}

/// A trusted proxy: an address, or a network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1` or `127.0.0.1`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>()?, p.parse::<u8>()?),
            None => {
                let ip = text.parse::<IpAddr>()?;
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
        };
        anyhow::ensure!(prefix <= if ip.is_ipv4() { 32 } else { 128 }, "bad prefix in {text}");
        Ok(Self { network: ip, prefix })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            if prefix == 0 { 0 } else { bits >> (width - prefix) }
        }
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                masked(u32::from(n).into(), self.prefix, 32) == masked(u32::from(i).into(), self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                masked(u128::from(n), self.prefix, 128) == masked(u128::from(i), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// Finds the client address of a request.
#[derive(Debug, Clone, Default)]
pub struct ClientIp {
    trusted: Arc<Vec<Cidr>>,
}

impl ClientIp {
    /// With these trusted proxies.
    pub fn new(trusted: &[String]) -> anyhow::Result<Self> {
        let trusted = trusted.iter().map(|t| Cidr::parse(t)).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { trusted: Arc::new(trusted) })
    }

    /// The peer address, or, when the peer is a trusted proxy, the right-most address in
    /// `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn of(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusted.iter().any(|c| c.contains(peer)) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        Some(forwarded.into_iter().rev().find(|ip| !self.trusted.iter().any(|c| c.contains(*ip))).unwrap_or(peer))
    }

    /// The client address of an axum request.
    pub fn of_request<T>(&self, req: &Request<T>) -> Option<IpAddr> {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        self.of(peer, req.headers())
    }
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<Self::Key, GovernorError> {
        self.of_request(req).ok_or(GovernorError::UnableToExtractKey)
    }
}

/// A 429 in the shape of a GraphQL error, with `Retry-After` and the IETF `RateLimit` headers.
pub fn throttled(retry_after: u64, limit: u64, policy: &str) -> Response<axum::body::Body> {
    let message = format!("too many requests; retry in {retry_after} s");
    let error = ClientError::new(StatusCode::TOO_MANY_REQUESTS, "THROTTLED", message).retry_after(retry_after);
    let mut response = error.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("limit={limit}, remaining=0, reset={retry_after}")) {
        headers.insert("ratelimit", v);
    }
    if let Ok(v) = HeaderValue::from_str(policy) {
        headers.insert("ratelimit-policy", v);
    }
    response
}

/// Turns tower-governor's refusals into GraphQL-shaped responses.
pub fn governor_error(
    error: GovernorError,
    per_second: u64,
    burst: u32,
    kind: &'static str,
) -> Response<axum::body::Body> {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            metrics::counter!(crate::telemetry::metrics::THROTTLED, "kind" => kind).increment(1);
            throttled(wait_time.max(1), u64::from(burst), &format!("{burst};w=1;burst={burst};rate={per_second}"))
        }
        GovernorError::UnableToExtractKey => {
            ClientError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", "cannot tell the client address").into_response()
        }
        GovernorError::Other { code, msg, .. } => (code, msg.unwrap_or_default()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let clients = ClientIp::new(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.7, 10.1.2.3".parse().unwrap());
        let proxy: IpAddr = "10.9.9.9".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(clients.of(Some(proxy), &headers), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(clients.of(Some(stranger), &headers), Some(stranger), "a spoofed header from a client is ignored");
        assert_eq!(clients.of(Some(proxy), &HeaderMap::new()), Some(proxy));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(!Cidr::parse("10.0.0.0/8").unwrap().contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("1.2.3.4".parse().unwrap()));
    }
}
