//! Counting the use of deprecated fields, by client, so retiring one is a decision made on data.
//!
//! Clients name themselves with `apollographql-client-name` (Apollo's convention) or
//! `x-client-name`; unnamed clients count as `unknown`. Each field counts once per request.

use std::collections::HashSet;
use std::sync::Mutex;

use async_graphql::Context;

/// The calling client's name (request data).
pub struct ClientName(pub String);

/// Deprecated fields already counted in this request (request data).
#[derive(Default)]
pub struct Seen(Mutex<HashSet<&'static str>>);

/// Records one use of the deprecated `field` by this request's client.
pub fn used(ctx: &Context<'_>, field: &'static str) {
    let fresh = ctx.data_opt::<Seen>().is_none_or(|seen| seen.0.lock().map(|mut s| s.insert(field)).unwrap_or(true));
    if fresh {
        let client = ctx.data_opt::<ClientName>().map(|c| c.0.clone()).unwrap_or_else(|| "unknown".into());
        metrics::counter!(crate::telemetry::metrics::DEPRECATED_FIELDS, "field" => field, "client" => client)
            .increment(1);
    }
}

/// A client name safe as a label (at most 64 of `A-Z a-z 0-9 . _ -`, else `other`; capped like
/// operation names).
pub fn client_label(header: Option<&str>) -> String {
    match header.map(str::trim).filter(|h| !h.is_empty()) {
        None => "unknown".into(),
        Some(h) if h.len() <= 64 && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) => {
            crate::telemetry::metrics::operation_label(Some(&h.replace(['.', '-'], "_")))
        }
        Some(_) => "other".into(),
    }
}
