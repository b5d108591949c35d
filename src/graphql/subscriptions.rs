//! Subscriptions: live stock, low-stock alerts, order status and cart changes.
//!
//! Every subscription reads the process's event bus. Visibility is checked on every event
//! (not only at subscribe time), and a subscription ends with an `UNAUTHENTICATED` error when
//! the token it was opened with expires. A subscriber that falls more than
//! `bus::SUBSCRIBER_BUFFER` events behind loses the oldest ones and carries on; inventory events
//! carry the current quantity, so the next one puts the client right. It never slows the others.

use std::time::Duration;

use async_graphql::{Context, ErrorExtensions, ID, Object, Subscription};
use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::catalog::Product;
use super::commerce::Cart;
use super::loaders::Loaders;
use super::orders::Order;
use super::services;
use crate::auth::{Role, RoleGuard, caller};
use crate::bus::{Event, EventBus};
use crate::domain::order::OrderStatus;
use crate::domain::{GlobalId, NodeKind};
use crate::error::{AppError, GqlResultExt};
use crate::service::feeds::Feed;
use crate::store::OrderScope;

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
        OrderStatus::stored(&self.status)
    }

    /// When it changed.
    async fn at(&self) -> DateTime<Utc> {
        self.at
    }

    /// The order as the subscriber may see it.
    async fn order(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Order>> {
        let record = services(ctx)?.order_in(&self.scope, self.order_id).await.gql()?;
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
        Ok(Cart(services(ctx)?.cart_of(self.customer_id).await.gql()?))
    }
}

/// Turns the bus into one subscriber's stream: `feed` decides (on every event) what the
/// subscriber may see, `show` makes the GraphQL item; the stream ends with an error when the
/// feed's token expires.
fn event_stream<T, F>(
    bus: &EventBus,
    feed: Feed,
    mut show: F,
) -> impl Stream<Item = async_graphql::Result<T>> + use<T, F>
where
    T: Send + Sync + 'static,
    F: FnMut(&Event, &Feed) -> Option<T> + Send + 'static,
{
    let mut rx = bus.subscribe();
    let expires_at = feed.expires_at;
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
                    if let Some(item) = feed.accepts(&event).then(|| show(&event, &feed)).flatten() {
                        metrics::counter!(crate::telemetry::metrics::EVENTS_DELIVERED, "type" => event.kind()).increment(1);
                        yield Ok(item);
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    // Told, not skipped silently: the client knows to refetch the current state.
                    tracing::debug!(missed, "a slow subscriber lost old events");
                    let mut error = async_graphql::Error::new(format!(
                        "{missed} events were missed while this subscriber fell behind; refetch the current state"
                    ));
                    error = error.extend_with(|_, e| {
                        e.set("code", "EVENTS_MISSED");
                        e.set("missed", missed);
                    });
                    yield Err(error);
                }
                Err(RecvError::Closed) => break,
            }
        }
    }
}

fn inventory_event(event: &Event) -> Option<InventoryEvent> {
    match event {
        Event::Inventory { product_id, available, delta, at, .. } => {
            Some(InventoryEvent { product_id: *product_id, available: *available, delta: *delta, at: *at })
        }
        _ => None,
    }
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
        let ids: Option<Vec<String>> = product_ids.map(|ids| ids.into_iter().map(|id| id.0).collect());
        let feed = services(ctx)?.inventory_feed(caller(ctx), ids.as_deref()).gql()?;
        Ok(event_stream(ctx.data::<EventBus>()?, feed, |event, _| inventory_event(event)))
    }

    /// Products whose stock falls to `threshold` or below (default 5): a vendor's own
    /// products, every product for admins.
    #[graphql(guard = "RoleGuard::any(&[Role::Vendor])")]
    async fn low_stock(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 5)] threshold: i64,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<InventoryEvent>> + use<>> {
        let feed = services(ctx)?.low_stock_feed(caller(ctx), threshold).gql()?;
        Ok(event_stream(ctx.data::<EventBus>()?, feed, |event, _| inventory_event(event)))
    }

    /// Status changes of the caller's orders (one order when `orderId` is given): a customer's
    /// own, a vendor's (orders with their products), all for admins. An order the caller may not
    /// see is `NOT_FOUND`.
    async fn order_status_changed(
        &self,
        ctx: &Context<'_>,
        order_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<OrderStatusEvent>> + use<>> {
        let feed =
            services(ctx)?.order_status_feed(caller(ctx), order_id.as_ref().map(|id| id.as_str())).await.gql()?;
        Ok(event_stream(ctx.data::<EventBus>()?, feed, |event, feed| match (event, feed.order_scope()) {
            (Event::OrderStatus { order_id, status, at, .. }, Some(scope)) => {
                Some(OrderStatusEvent { order_id: *order_id, status: status.clone(), at: *at, scope: scope.clone() })
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
        let feed = services(ctx)?.cart_feed(caller(ctx)).await.gql()?;
        Ok(event_stream(ctx.data::<EventBus>()?, feed, |event, _| match event {
            Event::Cart { customer_id, at } => Some(CartChangedEvent { customer_id: *customer_id, at: *at }),
            _ => None,
        }))
    }
}
