//! The event bus: inventory, order and cart events, published after a transaction commits and
//! fanned out to this process's subscribers (and, with Redis, to every replica's).
//!
//! Each process keeps one local broadcast channel. Publishing sends to it directly (in-process
//! bus) or through Redis pub/sub, whose single subscription per process feeds the same channel,
//! so a WebSocket never opens a Redis connection of its own.

use std::sync::Arc;

pub mod redis;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Something that happened, as subscribers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A product's available stock changed.
    Inventory {
        /// The product.
        product_id: i64,
        /// Its vendor (for vendor-scoped subscriptions).
        vendor_id: i64,
        /// Units available after the change.
        available: i64,
        /// The change (negative: stock taken).
        delta: i64,
        /// When it changed.
        at: DateTime<Utc>,
    },
    /// An order moved to a new status.
    OrderStatus {
        /// The order.
        order_id: i64,
        /// Its customer.
        customer_id: i64,
        /// The vendors with lines in it.
        vendor_ids: Vec<i64>,
        /// The new status.
        status: String,
        /// When it changed.
        at: DateTime<Utc>,
    },
    /// A product's details changed (name, description, price, status): caches drop it.
    Product {
        /// The product.
        product_id: i64,
        /// When it changed.
        at: DateTime<Utc>,
    },
    /// A customer's cart changed.
    Cart {
        /// The customer.
        customer_id: i64,
        /// When it changed.
        at: DateTime<Utc>,
    },
}

impl Event {
    /// The event's kind, as metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Inventory { .. } => "inventory",
            Self::OrderStatus { .. } => "order_status",
            Self::Product { .. } => "product",
            Self::Cart { .. } => "cart",
        }
    }
}

/// Events a subscriber can fall behind by before it loses the oldest ones.
pub const SUBSCRIBER_BUFFER: usize = 1024;

/// How the bus is doing, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusHealth {
    /// In-process only: always fine.
    InProcess,
    /// Redis connected and subscribed.
    Connected,
    /// Redis unreachable: local events still flow, other replicas' do not.
    Degraded,
}

impl BusHealth {
    /// The name `/readyz` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProcess => "in-process",
            Self::Connected => "ok",
            Self::Degraded => "degraded",
        }
    }
}

/// Publishes events and hands out subscriptions.
#[derive(Clone)]
pub struct EventBus {
    local: broadcast::Sender<Arc<Event>>,
    redis: Option<redis::RedisLink>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::in_process()
    }
}

impl EventBus {
    /// A bus inside this process only.
    pub fn in_process() -> Self {
        let (local, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        Self { local, redis: None }
    }

    /// A bus fanned out through Redis pub/sub on `channel`.
    pub fn redis(url: &str, channel: &str) -> anyhow::Result<Self> {
        let (local, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let redis = redis::RedisLink::start(url, channel, local.clone())?;
        Ok(Self { local, redis: Some(redis) })
    }

    /// Publishes an event. Never fails or waits for the caller: the change it reports is
    /// already committed.
    pub async fn publish(&self, event: Event) {
        metrics::counter!(crate::telemetry::metrics::EVENTS_PUBLISHED, "type" => event.kind()).increment(1);
        let event = Arc::new(event);
        // No local subscriber is not an error.
        let _ = self.local.send(event.clone());
        if let Some(redis) = &self.redis {
            redis.publish(event);
        }
    }

    /// How the bus is doing.
    pub fn health(&self) -> BusHealth {
        match &self.redis {
            None => BusHealth::InProcess,
            Some(r) if r.healthy() => BusHealth::Connected,
            Some(_) => BusHealth::Degraded,
        }
    }

    /// A new subscription to every event from now on.
    /// How many receivers this process's channel has (subscriptions, the cache's invalidation):
    /// tests wait on it instead of sleeping.
    pub fn receivers(&self) -> usize {
        self.local.receiver_count()
    }

    /// A receiver of this process's events.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.local.subscribe()
    }
}
