//! Subscriptions: live stock, low-stock alerts, order status and cart changes.
//!
//! Every subscription reads the process's event bus. Visibility is checked on every event
//! (not only at subscribe time), and a subscription ends with an `UNAUTHENTICATED` error when
//! the token it was opened with expires. A subscription is woken only for events on its feed's
//! topics (`bus::topics`), not for every event in the process. A subscriber that falls more than
//! `bus::SUBSCRIBER_BUFFER` events behind loses the oldest ones and carries on; inventory events
//! carry the current quantity, so the next one puts the client right. It never slows the others.

use std::collections::HashMap;
use std::time::Duration;

use async_graphql::{Context, ErrorExtensions, ID, Object, Subscription};
use chrono::{DateTime, Utc};
use futures::Stream;

use super::catalog::Product;
use super::commerce::Cart;
use super::loaders::Loaders;
use super::orders::Order;
use super::services;
use super::shared::{Audience, Replay, Stamp};
use crate::auth::{Role, RoleGuard, caller};
use crate::bus::topics::Received;
use crate::bus::{Event, EventBus, Recorded};
use crate::domain::order::OrderStatus;
use crate::domain::{GlobalId, NodeKind};
use crate::error::{AppError, GqlResultExt};
use crate::service::Services;
use crate::service::feeds::Feed;
use crate::store::OrderScope;

/// A change of a product's available stock.
pub struct InventoryEvent {
    version: i64,
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

    /// The change: negative when stock was taken (0 in a current state sent after missed events).
    async fn delta(&self) -> i64 {
        self.delta
    }

    /// The product's stock version after this change: 1, 2, 3... per product. Versions only
    /// increase; a jump means changes in between were superseded (this event is the current
    /// state). 0 when the product's stock never changed since it was created.
    async fn version(&self) -> i64 {
        self.version
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
    version: i64,
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

    /// The order's version after this change (1, 2, 3... per order; see `InventoryEvent.version`).
    async fn version(&self) -> i64 {
        self.version
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
    version: i64,
    customer_id: i64,
    at: DateTime<Utc>,
}

#[Object]
impl CartChangedEvent {
    /// The cart's version after this change (1, 2, 3... per cart; see `InventoryEvent.version`).
    async fn version(&self) -> i64 {
        self.version
    }

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
/// feed's token expires. A subscriber that falls behind is told (`EVENTS_MISSED`) and sent the
/// current state of what it watches where that is bounded (`Services::current_state`); events
/// older than that state are then skipped.
///
/// With a `Replay` in the request (a subscriber that fell behind its group, `graphql::shared`),
/// the stream is only that notice and the current state: `EVENTS_MISSED`, the state, the end.
fn event_stream<T, F>(
    ctx: &Context<'_>,
    feed: Feed,
    mut show: F,
) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<T>> + use<T, F>>
where
    T: Send + Sync + 'static,
    F: FnMut(&Recorded, &Feed) -> Option<T> + Send + 'static,
{
    let replay = ctx.data_opt::<Replay>().copied();
    // A group's stream serves all its subscribers: each delivered event counts once per each.
    let audience = ctx.data_opt::<Audience>().cloned();
    // A group's stream tells which event each item shows (`graphql::shared::Stamp`).
    let stamp = ctx.data_opt::<Stamp>().cloned();
    // Woken only for events on the feed's topics, not for every event in the process.
    let rx = match replay {
        None => Some(ctx.data::<EventBus>()?.subscribe_to(feed.topics())),
        Some(_) => None,
    };
    let services = services(ctx)?.clone();
    let expires_at = feed.expires_at;
    Ok(async_stream::stream! {
        if let Some(Replay { missed }) = replay {
            yield Err(missed_error(missed));
            for r in Box::pin(current_state(&services, &feed)).await {
                if let Some(item) = feed.accepts(&r.event).then(|| show(&r, &feed)).flatten() {
                    if let Some(stamp) = &stamp {
                        stamp.set(r.event.entity(), r.version);
                    }
                    yield Ok(item);
                }
            }
        }
        let Some(mut rx) = rx else { return };
        let deadline = expires_at.map(|exp| {
            let left = (exp - Utc::now().timestamp()).max(0) as u64;
            tokio::time::Instant::now() + Duration::from_secs(left)
        });
        // Versions of the current state sent after a lag: older events are not shown after it.
        let mut floor: HashMap<String, i64> = HashMap::new();
        let mut delivered: Option<(&'static str, metrics::Counter)> = None;
        loop {
            let next = match deadline {
                Some(deadline) => tokio::select! {
                    next = rx.recv() => next,
                    _ = tokio::time::sleep_until(deadline) => {
                        yield Err(AppError::Unauthenticated(
                            "token expired; subscribe again with a fresh token".into()).extend());
                        break;
                    }
                },
                None => rx.recv().await,
            };
            match next {
                Received::Event(r) => {
                    if !floor.is_empty() && floor.get(&r.event.entity()).is_some_and(|v| r.seq != 0 && *v >= r.version) {
                        continue;
                    }
                    if let Some(item) = feed.accepts(&r.event).then(|| show(&r, &feed)).flatten() {
                        // The counter's handle is kept (a subscription sees one kind), not looked
                        // up by its labels for every subscriber of every event.
                        let kind = r.event.kind();
                        let reached = audience.as_ref().map_or(1, Audience::size);
                        match &delivered {
                            Some((k, counter)) if *k == kind => counter.increment(reached),
                            _ => {
                                let counter = metrics::counter!(crate::telemetry::metrics::EVENTS_DELIVERED, "type" => kind);
                                counter.increment(reached);
                                delivered = Some((kind, counter));
                            }
                        }
                        if let Some(stamp) = stamp.as_ref().filter(|_| r.seq != 0) {
                            stamp.set(r.event.entity(), r.version);
                        }
                        yield Ok(item);
                    }
                }
                Received::Missed(missed) => {
                    // Told, not skipped silently: the client knows it missed events.
                    tracing::debug!(missed, "a slow subscriber lost old events");
                    yield Err(missed_error(missed));
                    // Boxed: a stream's state is as large as its largest await, and this rare one
                    // (a database read) would otherwise size every idle subscriber.
                    for r in Box::pin(current_state(&services, &feed)).await {
                        floor.insert(r.event.entity(), r.version);
                        if let Some(item) = feed.accepts(&r.event).then(|| show(&r, &feed)).flatten() {
                            if let Some(stamp) = &stamp {
                                stamp.set(r.event.entity(), r.version);
                            }
                            yield Ok(item);
                        }
                    }
                }
            }
        }
    })
}

/// The `EVENTS_MISSED` error of a subscriber that lost `missed` events.
fn missed_error(missed: u64) -> async_graphql::Error {
    async_graphql::Error::new(format!(
        "{missed} events were missed while this subscriber fell behind; the current state follows \
         where the subscription watches a bounded set, otherwise refetch it"
    ))
    .extend_with(|_, e| {
        e.set("code", "EVENTS_MISSED");
        e.set("missed", missed);
    })
}

/// The current state of what `feed` watches, where that is bounded (none when it cannot be read).
async fn current_state(services: &Services, feed: &Feed) -> Vec<Recorded> {
    services.current_state(feed).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not read the current state for a lagging subscriber");
        Vec::new()
    })
}

fn inventory_event(r: &Recorded) -> Option<InventoryEvent> {
    match &r.event {
        Event::Inventory { product_id, available, delta, at, .. } => Some(InventoryEvent {
            version: r.version,
            product_id: *product_id,
            available: *available,
            delta: *delta,
            at: *at,
        }),
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
        event_stream(ctx, feed, |r, _| inventory_event(r))
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
        event_stream(ctx, feed, |r, _| inventory_event(r))
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
        event_stream(ctx, feed, |r, feed| match (&r.event, feed.order_scope()) {
            (Event::OrderStatus { order_id, status, at, .. }, Some(scope)) => Some(OrderStatusEvent {
                version: r.version,
                order_id: *order_id,
                status: status.clone(),
                at: *at,
                scope: scope.clone(),
            }),
            _ => None,
        })
    }

    /// Changes of the caller's cart, so several devices stay in step (customers).
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn cart_changed(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<CartChangedEvent>> + use<>> {
        let feed = services(ctx)?.cart_feed(caller(ctx)).await.gql()?;
        event_stream(ctx, feed, |r, _| match &r.event {
            Event::Cart { customer_id, at } => {
                Some(CartChangedEvent { version: r.version, customer_id: *customer_id, at: *at })
            }
            _ => None,
        })
    }
}
