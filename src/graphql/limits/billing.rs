//! Billing an operation to its caller's cost budget: the requested cost before execution, the
//! unused part given back after.

use async_graphql::ServerError;

use super::cost::cost_value;
use crate::budget::{BillingKey, Budgets, ThrottleStatus, Throttled};
use crate::graphql::errors::with_code;

/// Takes `requested` points from `key`'s bucket, or the `THROTTLED` error (with `retryAfter`
/// and the bucket in `extensions.cost`) and what the transport needs for its 429. An operation
/// dearer than the whole bucket could never run, so waiting would not help: it is refused with
/// `COST_EXCEEDS_BUDGET` instead (no 429, no `Retry-After`).
pub async fn bill(
    budgets: &Budgets,
    key: &BillingKey,
    requested: u64,
) -> Result<ThrottleStatus, (ServerError, Option<Throttled>)> {
    if requested as f64 > key.policy.maximum {
        let message = format!(
            "this query costs {requested}; a caller like you has at most {} points: ask for fewer items",
            key.policy.maximum
        );
        let mut err = with_code(ServerError::new(message, None), "COST_EXCEEDS_BUDGET");
        let ext = err.extensions.get_or_insert_with(Default::default);
        ext.set("cost", cost_value(requested, 0, None));
        return Err((err, None));
    }
    budgets.take(&key.key, requested as f64, key.policy).await.map_err(|throttled| {
        let message = format!(
            "this query costs {requested}; {} of {} points are available, {} restored per second",
            throttled.status.currently_available.floor(),
            throttled.status.maximum_available,
            throttled.status.restore_rate
        );
        let mut err = with_code(ServerError::new(message, None), "THROTTLED");
        let ext = err.extensions.get_or_insert_with(Default::default);
        ext.set("retryAfter", throttled.retry_after_secs);
        ext.set("cost", cost_value(requested, 0, Some(throttled.status)));
        (err, Some(throttled))
    })
}

/// Gives back what an operation was billed beyond its actual cost; the bucket after.
pub async fn refund(
    budgets: &Budgets,
    key: &BillingKey,
    billed: ThrottleStatus,
    requested: u64,
    actual: u64,
) -> ThrottleStatus {
    if actual >= requested {
        return billed;
    }
    let refund = -((requested - actual) as f64);
    budgets.take(&key.key, refund, key.policy).await.unwrap_or(billed)
}
