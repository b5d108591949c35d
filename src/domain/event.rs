//! Events: what changed, as subscribers and caches see it, and the record the outbox keeps of it.
//!
//! An event is written to the outbox (the `events` table) in the transaction of the change it
//! reports, with the next version of its entity; only after that transaction commits is it
//! delivered. So a rolled-back change is never announced, and a committed one is never lost:
//! every replica reads the outbox for what Redis did not bring it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    /// When the change happened (written with it, in its transaction).
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::Inventory { at, .. }
            | Self::OrderStatus { at, .. }
            | Self::Product { at, .. }
            | Self::Cart { at, .. } => *at,
        }
    }

    /// Every `kind`, in declaration order (the bus subscribes to one channel per kind on a Redis
    /// Cluster, so a kind missing here would never cross between replicas; a test checks it).
    pub const KINDS: [&'static str; 4] = ["inventory", "order_status", "product", "cart"];

    /// The event's kind, as metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Inventory { .. } => "inventory",
            Self::OrderStatus { .. } => "order_status",
            Self::Product { .. } => "product",
            Self::Cart { .. } => "cart",
        }
    }

    /// The entity whose state it reports: its versions count that entity's changes.
    pub fn entity(&self) -> String {
        match self {
            Self::Inventory { product_id, .. } => Self::stock_entity(*product_id),
            Self::OrderStatus { order_id, .. } => Self::order_entity(*order_id),
            Self::Product { product_id, .. } => format!("product:{product_id}"),
            Self::Cart { customer_id, .. } => Self::cart_entity(*customer_id),
        }
    }

    /// The entity of a product's stock.
    pub fn stock_entity(product_id: i64) -> String {
        format!("stock:{product_id}")
    }

    /// The entity of an order.
    pub fn order_entity(order_id: i64) -> String {
        format!("order:{order_id}")
    }

    /// The entity of a customer's cart.
    pub fn cart_entity(customer_id: i64) -> String {
        format!("cart:{customer_id}")
    }
}

/// What a subscription listens to, so that an event wakes only the subscribers that may want
/// it (`bus::topics`): every event of a kind, or a narrower key. An event is published on its
/// kind and on every narrower key it belongs to (`Event::topics`); a feed listens to the
/// narrowest topics that cover what it accepts, such that each event it accepts is on exactly
/// one of them (`Feed::topics`; a test checks both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Every event of a kind (`Event::KINDS`).
    Kind(&'static str),
    /// One product's stock.
    Stock(i64),
    /// The stock of one vendor's products.
    VendorStock(i64),
    /// One order's status.
    Order(i64),
    /// The status of one customer's orders.
    CustomerOrders(i64),
    /// The status of orders with one vendor's products in them.
    VendorOrders(i64),
    /// One customer's cart.
    Cart(i64),
}

impl Event {
    /// The topics the event is published on: its kind, then every narrower one it belongs to
    /// (each once).
    pub fn topics(&self) -> Vec<Topic> {
        let mut topics = vec![Topic::Kind(self.kind())];
        match self {
            Self::Inventory { product_id, vendor_id, .. } => {
                topics.extend([Topic::Stock(*product_id), Topic::VendorStock(*vendor_id)]);
            }
            Self::OrderStatus { order_id, customer_id, vendor_ids, .. } => {
                topics.extend([Topic::Order(*order_id), Topic::CustomerOrders(*customer_id)]);
                for v in vendor_ids {
                    if !topics.contains(&Topic::VendorOrders(*v)) {
                        topics.push(Topic::VendorOrders(*v));
                    }
                }
            }
            Self::Product { .. } => {}
            Self::Cart { customer_id, .. } => topics.push(Topic::Cart(*customer_id)),
        }
        topics
    }
}

/// An event as committed: its place in the outbox and its entity's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// Its outbox id: increasing, unique per database. 0 for an event that is not in the
    /// outbox (a current state sent to a subscriber that fell behind, or a test's).
    pub seq: i64,
    /// The entity's version after this change: 1, 2, 3... for each entity. A subscriber that
    /// sees a version jump missed (superseded) changes; each event carries the current state.
    pub version: i64,
    /// What happened.
    pub event: Event,
}

impl Recorded {
    /// An event outside the outbox (never deduplicated or superseded).
    pub fn unrecorded(event: Event) -> Self {
        Self { seq: 0, version: 0, event }
    }
}

#[cfg(test)]
mod kinds {
    use super::Event;

    #[test]
    fn kinds_lists_every_kind() {
        let at = chrono::Utc::now();
        let every = [
            Event::Inventory { product_id: 1, vendor_id: 1, available: 1, delta: 1, at },
            Event::OrderStatus { order_id: 1, customer_id: 1, vendor_ids: vec![], status: "PAID".into(), at },
            Event::Product { product_id: 1, at },
            Event::Cart { customer_id: 1, at },
        ];
        // A new variant makes this match fail to compile until it is listed above too.
        for event in &every {
            match event {
                Event::Inventory { .. } | Event::OrderStatus { .. } | Event::Product { .. } | Event::Cart { .. } => {}
            }
        }
        assert_eq!(every.map(|e| e.kind()), Event::KINDS);
    }
}
