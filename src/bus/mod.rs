//! The event bus: inventory, order and cart events, published after a transaction commits and
//! fanned out to this process's subscribers (and, with Redis, to every replica's).
//!
//! Each process keeps one local broadcast channel. Publishing sends to it directly (in-process
//! bus) or through Redis pub/sub, whose single subscription per process feeds the same channel,
//! so a WebSocket never opens a Redis connection of its own.

use std::sync::Arc;

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
    /// A customer's cart changed.
    Cart {
        /// The customer.
        customer_id: i64,
        /// When it changed.
        at: DateTime<Utc>,
    },
}

/// Events a subscriber can fall behind by before it loses the oldest ones.
pub const SUBSCRIBER_BUFFER: usize = 1024;

/// Publishes events and hands out subscriptions.
#[derive(Clone)]
pub struct EventBus {
    local: broadcast::Sender<Arc<Event>>,
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
        Self { local }
    }

    /// Publishes an event. Never fails the caller: the change it reports is already committed.
    pub async fn publish(&self, event: Event) {
        // No subscriber is not an error.
        let _ = self.local.send(Arc::new(event));
    }

    /// A new subscription to every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.local.subscribe()
    }
}
