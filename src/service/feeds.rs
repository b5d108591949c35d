//! Who hears which event: the visibility rules of every subscription, checked on each event
//! (not only at subscribe time), whatever the transport (WebSocket today, SSE tomorrow).

use std::collections::HashSet;

use super::orders::order_scope;
use super::{Services, decode_id, require_role};
use crate::auth::{Caller, Role};
use crate::bus::{Event, Recorded, Topic};
use crate::domain::{GlobalId, NodeKind};
use crate::error::{AppError, AppResult};
use crate::store::OrderScope;

/// One subscriber's filter over the bus, and when its token expires.
#[derive(Debug, Clone)]
pub struct Feed {
    rule: Rule,
    /// When the subscriber's token expires (seconds since the epoch): the feed ends then.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone)]
enum Rule {
    /// Stock of these products (all when `None`).
    Inventory(Option<HashSet<i64>>),
    /// Stock at or below `threshold` of one vendor's products (all for admins: `None`).
    LowStock { threshold: i64, vendor: Option<i64> },
    /// Status changes of the orders `scope` sees (one order when `only`).
    OrderStatus { scope: OrderScope, only: Option<i64> },
    /// One customer's cart.
    Cart(i64),
}

impl Feed {
    /// Whether the subscriber may see `event`, and wants it.
    pub fn accepts(&self, event: &Event) -> bool {
        match (&self.rule, event) {
            (Rule::Inventory(wanted), Event::Inventory { product_id, .. }) => {
                wanted.as_ref().is_none_or(|w| w.contains(product_id))
            }
            (Rule::LowStock { threshold, vendor }, Event::Inventory { vendor_id, available, .. }) => {
                available <= threshold && vendor.is_none_or(|v| v == *vendor_id)
            }
            (Rule::OrderStatus { scope, only }, Event::OrderStatus { order_id, customer_id, vendor_ids, .. }) => {
                let visible = match scope {
                    OrderScope::All => true,
                    OrderScope::Customer(c) => c == customer_id,
                    // Resolved to `Customer` when the feed was made.
                    OrderScope::CustomerSubject(_) => false,
                    OrderScope::Vendor(v) => vendor_ids.contains(v),
                };
                visible && only.is_none_or(|o| o == *order_id)
            }
            (Rule::Cart(me), Event::Cart { customer_id, .. }) => me == customer_id,
            _ => false,
        }
    }

    /// The topics the feed listens to (`bus::topics`): the narrowest that cover what it accepts,
    /// such that every event it accepts is published on exactly one of them (so none arrives
    /// twice). `accepts` still decides on each event; the topics only decide who is woken.
    pub fn topics(&self) -> Vec<Topic> {
        match &self.rule {
            Rule::Inventory(None) | Rule::LowStock { vendor: None, .. } => vec![Topic::Kind("inventory")],
            // A long list listens to every product (and `accepts` filters): one index entry
            // instead of thousands, added and removed under the router's lock.
            Rule::Inventory(Some(ids)) if ids.len() > TOPICS_MAX => vec![Topic::Kind("inventory")],
            Rule::Inventory(Some(ids)) => ids.iter().map(|id| Topic::Stock(*id)).collect(),
            Rule::LowStock { vendor: Some(v), .. } => vec![Topic::VendorStock(*v)],
            Rule::OrderStatus { only: Some(order), .. } => vec![Topic::Order(*order)],
            Rule::OrderStatus { scope, only: None } => match scope {
                OrderScope::All => vec![Topic::Kind("order_status")],
                OrderScope::Customer(c) => vec![Topic::CustomerOrders(*c)],
                OrderScope::Vendor(v) => vec![Topic::VendorOrders(*v)],
                // Never accepts anything (resolved to `Customer` when the feed was made).
                OrderScope::CustomerSubject(_) => vec![],
            },
            Rule::Cart(c) => vec![Topic::Cart(*c)],
        }
    }

    /// The order scope of an order-status feed (the events are shown through it).
    pub fn order_scope(&self) -> Option<&OrderScope> {
        match &self.rule {
            Rule::OrderStatus { scope, .. } => Some(scope),
            _ => None,
        }
    }
}

/// The most products a feed listens to one topic each for (see `Feed::topics`).
const TOPICS_MAX: usize = 64;

/// The most entities a feed's current state covers; a wider feed is told to refetch instead.
const CURRENT_STATE_MAX: usize = 100;

impl Services {
    /// What a subscriber that missed events should know now, as events of the current state
    /// (with their entities' current versions): the stock of the products it watches, its cart,
    /// the one order it follows. Empty for feeds over unbounded sets (every product, every
    /// order), whose subscribers are told to refetch.
    pub async fn current_state(&self, feed: &Feed) -> AppResult<Vec<Recorded>> {
        let now = chrono::Utc::now();
        let entities: Vec<String> = match &feed.rule {
            Rule::Inventory(Some(ids)) if ids.len() <= CURRENT_STATE_MAX => {
                ids.iter().map(|id| Event::stock_entity(*id)).collect()
            }
            Rule::Cart(customer_id) => vec![Event::cart_entity(*customer_id)],
            Rule::OrderStatus { only: Some(id), .. } => vec![Event::order_entity(*id)],
            _ => return Ok(Vec::new()),
        };
        // Versions first, state second: a change committed in between makes the state newer
        // than its version (and its own event, delivered next, repeats it), never older.
        let versions = self.store.entity_versions(&entities).await?;
        let events: Vec<Event> = match &feed.rule {
            Rule::Inventory(Some(ids)) => {
                let ids: Vec<i64> = ids.iter().copied().collect();
                // From the database, not the cache: this subscriber missed the events that
                // invalidate it.
                for id in &ids {
                    self.store.cache.invalidate_inventory(*id);
                }
                let products = self.store.products_by_ids(&ids).await?;
                let stock = self.store.inventory_by_product_ids(&ids).await?;
                products
                    .iter()
                    .filter_map(|p| {
                        let level = stock.iter().find(|s| s.product_id == p.id)?;
                        Some(Event::Inventory {
                            product_id: p.id,
                            vendor_id: p.vendor_id,
                            available: level.available,
                            delta: 0,
                            at: now,
                        })
                    })
                    .collect()
            }
            Rule::Cart(customer_id) => vec![Event::Cart { customer_id: *customer_id, at: now }],
            Rule::OrderStatus { scope, only: Some(id) } => match self.order_in(scope, *id).await? {
                Some(order) => vec![Event::OrderStatus {
                    order_id: order.id,
                    customer_id: order.customer_id,
                    // Already visible through `scope` (checked just now); `accepts` needs no more.
                    vendor_ids: match scope {
                        OrderScope::Vendor(v) => vec![*v],
                        _ => Vec::new(),
                    },
                    status: order.status,
                    at: now,
                }],
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        Ok(events
            .into_iter()
            .map(|event| Recorded { seq: 0, version: versions.get(&event.entity()).copied().unwrap_or(0), event })
            .collect())
    }

    /// Stock changes of these products (all when `product_ids` is `None`). Anyone may listen.
    pub fn inventory_feed(&self, caller: &Caller, product_ids: Option<&[String]>) -> AppResult<Feed> {
        let wanted = product_ids
            .map(|ids| ids.iter().map(|id| decode_id("productIds", id, NodeKind::Product)).collect::<AppResult<_>>())
            .transpose()?;
        Ok(Feed { rule: Rule::Inventory(wanted), expires_at: caller.identity().map(|i| i.expires_at) })
    }

    /// Products whose stock falls to `threshold` or below: a vendor's own, all for admins.
    pub fn low_stock_feed(&self, caller: &Caller, threshold: i64) -> AppResult<Feed> {
        let identity = require_role(caller, &[Role::Vendor])?;
        let vendor = if identity.is_admin() {
            None
        } else {
            Some(identity.vendor_id.ok_or_else(|| AppError::Forbidden("no vendor is linked to this account".into()))?)
        };
        Ok(Feed { rule: Rule::LowStock { threshold, vendor }, expires_at: Some(identity.expires_at) })
    }

    /// Status changes of the caller's orders (one order when `order_id` is given; an order the
    /// caller may not see is `NOT_FOUND`).
    pub async fn order_status_feed(&self, caller: &Caller, order_id: Option<&str>) -> AppResult<Feed> {
        let mut scope = order_scope(caller)?;
        let expires_at = caller.identity().map(|i| i.expires_at);
        // Events carry customer ids: resolve the subject once, here.
        if let OrderScope::CustomerSubject(subject) = &scope {
            scope = OrderScope::Customer(self.store.ensure_customer(subject).await?.id);
        }
        let only = match order_id {
            Some(id) => {
                let id = GlobalId::decode_as(id, NodeKind::Order).ok_or(AppError::NotFound("order"))?;
                self.order_in(&scope, id).await?.ok_or(AppError::NotFound("order"))?;
                Some(id)
            }
            None => None,
        };
        Ok(Feed { rule: Rule::OrderStatus { scope, only }, expires_at })
    }

    /// Changes of the caller's cart (customers).
    pub async fn cart_feed(&self, caller: &Caller) -> AppResult<Feed> {
        let identity = require_role(caller, &[Role::Customer])?;
        let customer = self.as_customer(identity).await?;
        Ok(Feed { rule: Rule::Cart(customer.id), expires_at: Some(identity.expires_at) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event a feed accepts is on exactly one of its topics (so it is woken once for it),
    /// over a grid of feeds and events.
    #[test]
    fn a_feed_hears_each_event_it_accepts_on_exactly_one_topic() {
        let at = chrono::Utc::now();
        let mut events = vec![Event::Product { product_id: 1, at }];
        for product_id in 1..=3 {
            for vendor_id in 1..=2 {
                for available in [0, 5, 9] {
                    events.push(Event::Inventory { product_id, vendor_id, available, delta: -1, at });
                }
            }
        }
        for order_id in 1..=3 {
            for customer_id in 1..=2 {
                for vendor_ids in [vec![], vec![1], vec![1, 2], vec![2, 2]] {
                    let status = "PAID".to_string();
                    events.push(Event::OrderStatus { order_id, customer_id, vendor_ids, status, at });
                }
            }
        }
        events.extend((1..=2).map(|customer_id| Event::Cart { customer_id, at }));
        let orders = |scope, only| Rule::OrderStatus { scope, only };
        let rules = [
            Rule::Inventory(None),
            Rule::Inventory(Some([1, 2].into())),
            Rule::Inventory(Some((1..=TOPICS_MAX as i64 + 1).collect())),
            Rule::Inventory(Some(HashSet::new())),
            Rule::LowStock { threshold: 5, vendor: None },
            Rule::LowStock { threshold: 5, vendor: Some(1) },
            orders(OrderScope::All, None),
            orders(OrderScope::All, Some(2)),
            orders(OrderScope::Customer(1), None),
            orders(OrderScope::Customer(1), Some(2)),
            orders(OrderScope::Vendor(2), None),
            orders(OrderScope::Vendor(2), Some(1)),
            orders(OrderScope::CustomerSubject("alice".into()), None),
            Rule::Cart(1),
        ];
        for rule in rules {
            let feed = Feed { rule, expires_at: None };
            let topics = feed.topics();
            let mut accepted = 0;
            for event in &events {
                let on = event.topics().iter().filter(|t| topics.contains(t)).count();
                if feed.accepts(event) {
                    accepted += 1;
                    assert_eq!(on, 1, "{feed:?} accepts {event:?} but hears it on {on} of {topics:?}");
                }
            }
            let never = matches!(&feed.rule, Rule::Inventory(Some(ids)) if ids.is_empty())
                || matches!(&feed.rule, Rule::OrderStatus { scope: OrderScope::CustomerSubject(_), .. });
            assert_eq!(accepted == 0, never, "{feed:?} accepted {accepted} events");
        }
    }
}
