//! Token to caller: the one place a bearer token becomes a `Caller`, for GraphQL over HTTP,
//! WebSocket and REST alike.

use super::{Caller, Role, Verifier};
use crate::store::Store;

/// The caller behind an `Authorization` header value (`Bearer <token>`), for HTTP and WebSocket.
/// No header: anonymous. A bad token: `Rejected`, so protected fields say why.
pub async fn authenticate(verifier: &Verifier, store: &Store, authorization: Option<&str>) -> Caller {
    let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
        return Caller::Anonymous;
    };
    let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) else {
        return Caller::Rejected("the Authorization header must be `Bearer <token>`".into());
    };
    match verifier.verify(token.trim()).await {
        Ok(mut identity) => {
            if identity.has(Role::Vendor) && identity.vendor_id.is_none() {
                match store.vendor_id_for_owner(&identity.subject).await {
                    Ok(id) => identity.vendor_id = id,
                    Err(e) => tracing::warn!(error = %e, "looking up the vendor of a token failed"),
                }
            }
            Caller::Authenticated(identity)
        }
        Err(reason) => {
            tracing::debug!(reason = %reason, "bearer token refused");
            Caller::Rejected(reason)
        }
    }
}
