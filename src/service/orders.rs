//! Orders as each caller may see them, and their status changes.
//!
//! A customer sees their own orders, a vendor the orders (and only the lines) with their
//! products, an admin all; a caller with several roles gets the widest. Someone else's order
//! and a malformed order id both answer `NOT_FOUND`, exactly like a missing one, so ids cannot
//! be probed.

use super::pagination::{decode_keyed_cursor, encode_keyed_cursor, page_size};
use super::{Refusal, Services, require_role};
use crate::auth::{Caller, Identity, Role, require_identity_of};
use crate::domain::order::OrderStatus;
use crate::domain::{GlobalId, NodeKind};
use crate::error::{AppError, AppResult};
use crate::payments::PaymentOutcome;
use crate::store::{OrderItemRecord, OrderRecord, OrderScope, StatusMove};

/// A page of orders, newest first.
#[derive(Debug, Clone)]
pub struct OrderPage {
    /// The orders and their cursors.
    pub edges: Vec<(OrderRecord, String)>,
    /// More after the last?
    pub has_next_page: bool,
    /// Was there a cursor?
    pub has_previous_page: bool,
    /// Whose orders these are (for `totalCount` and the vendor's view).
    pub scope: OrderScope,
    /// The status filter in force.
    pub status: Option<OrderStatus>,
}

/// An order after a status change, and why the change was refused, if it was.
#[derive(Debug, Clone)]
pub struct StatusResult {
    /// The order now, as the caller may see it.
    pub order: Option<OrderRecord>,
    /// The scope it is seen through.
    pub scope: OrderScope,
    /// The refusal.
    pub refused: Option<Refusal>,
}

/// The vendor whose view `scope` is (their lines only, no totals, no customer), if any.
pub fn vendor_view(scope: &OrderScope) -> Option<i64> {
    match scope {
        OrderScope::Vendor(v) => Some(*v),
        _ => None,
    }
}

/// The order scope of an identity: admins all orders, vendors the orders with their products,
/// customers their own. A caller with several roles gets the widest.
pub fn scope_of(identity: &Identity) -> AppResult<OrderScope> {
    if identity.is_admin() {
        return Ok(OrderScope::All);
    }
    if identity.has(Role::Vendor) {
        let vendor =
            identity.vendor_id.ok_or_else(|| AppError::Forbidden("no vendor is linked to this account".into()))?;
        return Ok(OrderScope::Vendor(vendor));
    }
    if identity.has(Role::Customer) {
        // By subject: the scope becomes a subquery, so no lookup is spent here, and a customer
        // never seen before simply has no orders.
        return Ok(OrderScope::CustomerSubject(identity.subject.as_str().into()));
    }
    Err(AppError::Forbidden("needs the role customer, vendor or admin".into()))
}

/// The order scope of a caller (`UNAUTHENTICATED` without a valid token).
pub fn order_scope(caller: &Caller) -> AppResult<OrderScope> {
    scope_of(require_identity_of(caller)?)
}

/// A status filter as REST sends it (`PAID`, ...).
pub fn status_named(text: Option<&str>) -> AppResult<Option<OrderStatus>> {
    text.map(|s| OrderStatus::parse(s).ok_or_else(|| AppError::invalid("status", format!("unknown status `{s}`"))))
        .transpose()
}

fn order_id_of(id: &str) -> AppResult<i64> {
    // A malformed id is also just "not found": the answer must not tell ids apart.
    GlobalId::decode_as(id, NodeKind::Order).ok_or(AppError::NotFound("order"))
}

impl Services {
    /// The caller's orders, newest first, a page at a time.
    pub async fn order_page(
        &self,
        caller: &Caller,
        first: Option<i32>,
        after: Option<String>,
        status: Option<OrderStatus>,
    ) -> AppResult<OrderPage> {
        let scope = order_scope(caller)?;
        let size = page_size(first, None, false, &self.settings.limits)?;
        let before_id = after.map(|c| decode_keyed_cursor("o", "after", &c).map(|(id, _)| id)).transpose()?;
        let mut rows = self.store.list_orders(&scope, status.map(OrderStatus::as_str), before_id, size.limit).await?;
        let has_next_page = rows.len() > size.limit as usize;
        rows.truncate(size.limit as usize);
        let edges = rows
            .into_iter()
            .map(|r| {
                let cursor = encode_keyed_cursor("o", r.id, "");
                (r, cursor)
            })
            .collect();
        Ok(OrderPage { edges, has_next_page, has_previous_page: before_id.is_some(), scope, status })
    }

    /// How many orders `scope` sees with this filter.
    pub async fn count_orders(&self, scope: &OrderScope, status: Option<OrderStatus>) -> AppResult<i64> {
        Ok(self.store.count_orders(scope, status.map(OrderStatus::as_str)).await?)
    }

    /// One order the caller may see, with the scope it is seen through.
    pub async fn order(&self, caller: &Caller, id: &str) -> AppResult<(OrderRecord, OrderScope)> {
        let scope = order_scope(caller)?;
        let order = self.order_in(&scope, order_id_of(id)?).await?.ok_or(AppError::NotFound("order"))?;
        Ok((order, scope))
    }

    /// An order by row id if `scope` may see it (subscriptions re-read it on each event).
    pub async fn order_in(&self, scope: &OrderScope, id: i64) -> AppResult<Option<OrderRecord>> {
        Ok(self.store.order(scope, id).await?)
    }

    /// The lines of these orders that `scope` may see, per order (one statement).
    pub async fn order_lines(
        &self,
        orders: Vec<OrderRecord>,
        scope: &OrderScope,
    ) -> AppResult<Vec<(OrderRecord, Vec<OrderItemRecord>)>> {
        let ids: Vec<i64> = orders.iter().map(|o| o.id).collect();
        let lines = if ids.is_empty() { Vec::new() } else { self.store.order_items(&ids, vendor_view(scope)).await? };
        Ok(orders
            .into_iter()
            .map(|o| {
                let mine = lines.iter().filter(|l| l.order_id == o.id).cloned().collect();
                (o, mine)
            })
            .collect())
    }

    /// Cancels an order before fulfilment (its customer, or an admin): stock is put back and a
    /// paid order is refunded. `INVALID_TRANSITION` once fulfilled or already cancelled.
    pub async fn cancel_order(&self, caller: &Caller, id: &str) -> AppResult<StatusResult> {
        let identity = require_role(caller, &[Role::Customer])?;
        let mut scope = scope_of(identity)?;
        // A customer who is also a vendor cancels as a customer (only admins are neither).
        if let OrderScope::Vendor(_) = scope {
            scope = OrderScope::Customer(self.as_customer(identity).await?.id);
        }
        self.change_status(scope, id, OrderStatus::Cancelled).await
    }

    /// Marks a paid order as shipped (a vendor with lines in it, or an admin).
    pub async fn fulfill_order(&self, caller: &Caller, id: &str) -> AppResult<StatusResult> {
        let scope = scope_of(require_role(caller, &[Role::Vendor])?)?;
        self.change_status(scope, id, OrderStatus::Fulfilled).await
    }

    async fn change_status(&self, scope: OrderScope, id: &str, next: OrderStatus) -> AppResult<StatusResult> {
        let order_id = order_id_of(id)?;
        let gateway = self.payments.clone();
        let refund = move |r: crate::store::RefundRequest| async move {
            match gateway.refund(&r.reference, r.amount, &r.currency, &format!("refund:{}", r.order_id)).await {
                PaymentOutcome::Approved(reference) => Ok(reference),
                other => Err(other),
            }
        };
        let refused = match self.store.change_order_status(&scope, order_id, next, refund).await? {
            StatusMove::NotFound => return Err(AppError::NotFound("order")),
            // Its events were written with it and are published by the store on commit.
            StatusMove::Moved(change) => {
                return Ok(StatusResult { order: Some(change.order), scope, refused: None });
            }
            StatusMove::NotAllowed { from } => Refusal::new(
                "INVALID_TRANSITION",
                "id",
                format!("an order that is {} cannot become {}", from.as_str(), next.as_str()),
            ),
            StatusMove::RefundRefused(_) => {
                Refusal::new("REFUND_FAILED", "id", "the refund could not be made; the order is unchanged, try again")
            }
            StatusMove::Conflict => Refusal::new("CONFLICT", "id", "the order changed meanwhile; read it again"),
        };
        let order = self.order_in(&scope, order_id).await?;
        Ok(StatusResult { order, scope, refused: Some(refused) })
    }
}

/// The subtotal a viewer sees: the order's, or for a vendor the sum of their own lines.
pub fn visible_subtotal(order: &OrderRecord, lines: &[OrderItemRecord], scope_vendor: Option<i64>) -> i64 {
    match scope_vendor {
        Some(_) => lines.iter().map(|l| l.line_total_amount).sum(),
        None => order.subtotal_amount,
    }
}

/// The total a viewer sees: the customer's total, `None` for a vendor (who sees only a share).
pub fn visible_total(order: &OrderRecord, scope_vendor: Option<i64>) -> Option<i64> {
    scope_vendor.is_none().then_some(order.total_amount)
}
