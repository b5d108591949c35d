//! Subscriptions: live stock, low-stock alerts, order status and cart changes.
//!
//! Every subscription reads the process's event bus. Visibility is checked on every event
//! (not only at subscribe time), and a subscription ends with an `UNAUTHENTICATED` error when
//! the token it was opened with expires. A subscriber that falls more than
//! `bus::SUBSCRIBER_BUFFER` events behind loses the oldest ones and carries on; inventory events
//! carry the current quantity, so the next one puts the client right. It never slows the others.

use std::collections::HashSet;
use std::time::Duration;

use async_graphql::{Context, ErrorExtensions, ID, Object, Subscription};
use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::account::order_scope;
use super::catalog::Product;
use super::commerce::Cart;
use super::loaders::Loaders;
use super::orders::{Order, OrderStatus};
use crate::auth::{Role, RoleGuard, caller, require_identity};
use crate::bus::{Event, EventBus};
use crate::domain::{GlobalId, NodeKind};
use crate::error::{AppError, GqlResultExt};
use crate::store::{OrderScope, Store};

/// A change of a product's available stock.
pub struct InventoryEvent {
    product_id: i64,
    available: i64,
    delta: i64,
    at: DateTime<Utc>,
}

#[Object]
impl InventoryEvent {
    /// The product's global id.
    async fn product_id(&self) -> ID {
        ID(GlobalId::new(NodeKind::Product, self.product_id).encode())
    }

    /// Units available after the change (always the current level, so a missed event is harmless).
    async fn available(&self) -> i64 {
        self.available
    }

    /// The change: negative when stock was taken.
    async fn delta(&self) -> i64 {
        self.delta
    }

    /// When it changed.
    async fn at(&self) -> DateTime<Utc> {
        self.at
    }

    /// The product.
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Product>> {
        Ok(ctx.data::<Loaders>()?.products.load_one(self.product_id).await?.map(Product))
    }
}

/// An order moved to a new status.
pub struct OrderStatusEvent {
    order_id: i64,
    status: String,
    at: DateTime<Utc>,
    scope: OrderScope,
}

#[Object]
impl OrderStatusEvent {
    /// The order's global id.
    async fn order_id(&self) -> ID {
        ID(GlobalId::new(NodeKind::Order, self.order_id).encode())
    }

    /// The new status.
    async fn status(&self) -> OrderStatus {
        OrderStatus::parse(&self.status)
    }

    /// When it changed.
    async fn at(&self) -> DateTime<Utc> {
        self.at
    }

    /// The order as the subscriber may see it.
    async fn order(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Order>> {
        let record = ctx.data::<Store>()?.order(&self.scope, self.order_id).await.gql()?;
        Ok(record.map(|r| Order::new(r, &self.scope)))
    }
}

/// The subscriber's cart changed (on another device, or by a checkout).
pub struct CartChangedEvent {
    customer_id: i64,
    at: DateTime<Utc>,
}

#[Object]
impl CartChangedEvent {
    /// When it changed.
    async fn at(&self) -> DateTime<Utc> {
        self.at
    }

    /// The cart now.
    async fn cart(&self, ctx: &Context<'_>) -> async_graphql::Result<Cart> {
        Cart::load(ctx, self.customer_id).await
    }
}

/// Turns the bus into one subscriber's stream: `pick` filters (and re-checks visibility of)
/// each event; the stream ends with an error at `expires_at` (seconds since the epoch).
fn event_stream<T, F>(
    bus: &EventBus,
    expires_at: Option<i64>,
    mut pick: F,
) -> impl Stream<Item = async_graphql::Result<T>> + use<T, F>
where
    T: Send + Sync + 'static,
    F: FnMut(&Event) -> Option<T> + Send + 'static,
{
    let mut rx = bus.subscribe();
    async_stream::stream! {
        let deadline = expires_at.map(|exp| {
            let left = (exp - Utc::now().timestamp()).max(0) as u64;
            tokio::time::Instant::now() + Duration::from_secs(left)
        });
        loop {
            let next = match deadline {
                Some(deadline) => tokio::select! {
                    event = rx.recv() => event,
                    _ = tokio::time::sleep_until(deadline) => {
                        yield Err(AppError::Unauthenticated(
                            "token expired; subscribe again with a fresh token".into()).extend());
                        break;
                    }
                },
                None => rx.recv().await,
            };
            match next {
                Ok(event) => {
                    if let Some(item) = pick(&event) {
                        metrics::counter!(crate::telemetry::metrics::EVENTS_DELIVERED, "type" => event.kind()).increment(1);
                        yield Ok(item);
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "a slow subscriber lost old events");
                }
                Err(RecvError::Closed) => break,
            }
        }
    }
}

fn decode_ids(field: &str, ids: &[ID], kind: NodeKind) -> async_graphql::Result<HashSet<i64>> {
    ids.iter()
        .map(|id| {
            GlobalId::decode_as(id, kind).ok_or_else(|| {
                AppError::invalid_with("INVALID_ID", field, format!("`{}` is not a {kind:?} id", id.as_str())).extend()
            })
        })
        .collect()
}

/// The subscription root.
#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Stock changes of these products (all products when `productIds` is omitted). Anyone may
    /// subscribe.
    async fn inventory_changed(
        &self,
        ctx: &Context<'_>,
        product_ids: Option<Vec<ID>>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<InventoryEvent>> + use<>> {
        let wanted = product_ids.map(|ids| decode_ids("productIds", &ids, NodeKind::Product)).transpose()?;
        let expires_at = caller(ctx).identity().map(|i| i.expires_at);
        Ok(event_stream(ctx.data::<EventBus>()?, expires_at, move |event| match event {
            Event::Inventory { product_id, available, delta, at, .. }
                if wanted.as_ref().is_none_or(|w| w.contains(product_id)) =>
            {
                Some(InventoryEvent { product_id: *product_id, available: *available, delta: *delta, at: *at })
            }
            _ => None,
        }))
    }

    /// Products whose stock falls to `threshold` or below (default 5): a vendor's own
    /// products, every product for admins.
    #[graphql(guard = "RoleGuard::any(&[Role::Vendor])")]
    async fn low_stock(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 5)] threshold: i64,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<InventoryEvent>> + use<>> {
        let identity = require_identity(ctx).gql()?.clone();
        if !identity.is_admin() && identity.vendor_id.is_none() {
            return Err(AppError::Forbidden("no vendor is linked to this account".into()).extend());
        }
        Ok(event_stream(ctx.data::<EventBus>()?, Some(identity.expires_at), move |event| match event {
            Event::Inventory { product_id, vendor_id, available, delta, at }
                if *available <= threshold && (identity.is_admin() || identity.vendor_id == Some(*vendor_id)) =>
            {
                Some(InventoryEvent { product_id: *product_id, available: *available, delta: *delta, at: *at })
            }
            _ => None,
        }))
    }

    /// Status changes of the caller's orders (one order when `orderId` is given): a customer's
    /// own, a vendor's (orders with their products), all for admins. An order the caller may not
    /// see is `NOT_FOUND`.
    async fn order_status_changed(
        &self,
        ctx: &Context<'_>,
        order_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<OrderStatusEvent>> + use<>> {
        let identity = require_identity(ctx).gql()?.clone();
        let mut scope = order_scope(ctx).gql()?;
        // Events carry customer ids: resolve the subject once, here.
        if let OrderScope::CustomerSubject(subject) = &scope {
            scope = OrderScope::Customer(ctx.data::<Store>()?.ensure_customer(subject).await.gql()?.id);
        }
        let only = match order_id {
            Some(id) => {
                let not_found = || AppError::NotFound("order").extend();
                let id = GlobalId::decode_as(&id, NodeKind::Order).ok_or_else(not_found)?;
                ctx.data::<Store>()?.order(&scope, id).await.gql()?.ok_or_else(not_found)?;
                Some(id)
            }
            None => None,
        };
        Ok(event_stream(ctx.data::<EventBus>()?, Some(identity.expires_at), move |event| match event {
            Event::OrderStatus { order_id, customer_id, vendor_ids, status, at } => {
                let visible = match &scope {
                    OrderScope::All => true,
                    OrderScope::Customer(c) => c == customer_id,
                    // Resolved to `Customer` above.
                    OrderScope::CustomerSubject(_) => false,
                    OrderScope::Vendor(v) => vendor_ids.contains(v),
                };
                (visible && only.is_none_or(|o| o == *order_id)).then(|| OrderStatusEvent {
                    order_id: *order_id,
                    status: status.clone(),
                    at: *at,
                    scope: scope.clone(),
                })
            }
            _ => None,
        }))
    }

    /// Changes of the caller's cart, so several devices stay in step (customers).
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn cart_changed(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<CartChangedEvent>> + use<>> {
        let identity = require_identity(ctx).gql()?.clone();
        let customer = ctx.data::<Store>()?.ensure_customer(&identity.subject).await.gql()?;
        let me = customer.id;
        Ok(event_stream(ctx.data::<EventBus>()?, Some(identity.expires_at), move |event| match event {
            Event::Cart { customer_id, at } if *customer_id == me => {
                Some(CartChangedEvent { customer_id: me, at: *at })
            }
            _ => None,
        }))
    }
}
