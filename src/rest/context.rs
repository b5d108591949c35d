//! What every REST handler extracts: the caller and their bill (`Ctx`), the query parameters
//! (`Params`, blank values count as absent) and a path id (`Id`); every rejection is a problem.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::Problem;
use crate::auth::Caller;
use crate::budget::BillingKey;
use crate::client::Peer;
use crate::error::AppError;
use crate::state::AppState;

/// The caller of one REST request and the budget it is billed to.
pub struct Ctx {
    /// Who is calling.
    pub caller: Caller,
    billing: BillingKey,
    state: AppState,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Ok(Peer(peer)) = Peer::from_request_parts(parts, state).await;
        let caller = match parts.extensions.get::<Caller>() {
            // Verified once, by the rate-limit layer in `app::routes`.
            Some(caller) => caller.clone(),
            None => {
                let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                crate::auth::authenticate(&state.verifier, state.services.store(), authorization).await
            }
        };
        let ip = state.clients.of(peer.map(|p| p.ip()), &parts.headers).map(|ip| ip.to_string()).unwrap_or_default();
        let billing = BillingKey::of(&caller, &ip, &state.settings);
        Ok(Self { caller, billing, state: state.clone() })
    }
}

impl Ctx {
    /// Bills `cost` points (one per object returned) to the caller's budget, like GraphQL:
    /// 429 `THROTTLED` when it does not fit.
    pub async fn bill(&self, cost: u64) -> Result<(), Problem> {
        match self.state.budgets.take(&self.billing.key, cost as f64, self.billing.policy).await {
            Ok(_) => Ok(()),
            Err(t) => Err(AppError::Throttled { retry_after_secs: t.retry_after_secs }.into()),
        }
    }

    /// The services.
    pub fn services(&self) -> &crate::service::Services {
        &self.state.services
    }

    /// The settings.
    pub fn settings(&self) -> &crate::config::Settings {
        &self.state.settings
    }
}

/// Query parameters whose blank values (`?sortBy=&after=`) mean the same as leaving them out.
pub trait Blanks {
    /// Turns blank values into `None`.
    fn blanks_are_absent(&mut self);
}

/// `None` for a blank value.
pub(crate) fn drop_blank(v: &mut Option<String>) {
    if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
        *v = None;
    }
}

/// Query parameters; a malformed query string is a 400 problem.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Blanks + Send, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Query(mut params) = Query::<T>::from_request_parts(parts, state).await.map_err(|e| {
            // Our words and serde's reason, not the framework's text.
            let reason = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default();
            Problem::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", format!("the query string is invalid: {reason}"))
        })?;
        params.blanks_are_absent();
        Ok(Self(params))
    }
}

/// The `{id}` of a path.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| Problem::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such resource"))?;
        Ok(Self(id))
    }
}
