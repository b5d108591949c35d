//! A read-through cache of product details and stock levels, kept fresh by invalidation.
//!
//! - The replica that writes invalidates the entries in the same call, before answering, so it
//!   never serves what it just changed.
//! - Other replicas invalidate on the bus event for the change (Redis pub/sub delivers in
//!   milliseconds); while the bus is degraded the cache is switched off and emptied, so no
//!   replica serves a product more than the event latency after a change.
//! - Entries also expire after a TTL (`SECURECART_CACHE_TTL_SECS`, default 30 s; 0 turns the
//!   cache off).
//! - A read that began before an invalidation never fills the cache with what it read (the
//!   invalidation leaves a dated tombstone), closing the classic read-through race.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{InventoryRecord, ProductRecord};

/// Entries per map before it is emptied (a crude but bounded memory ceiling).
const CAPACITY: usize = 100_000;

enum Slot<V> {
    Fresh(V, Instant),
    Invalidated(Instant),
}

struct Map<K, V>(Mutex<HashMap<K, Slot<V>>>);

impl<K: Hash + Eq + Copy, V: Clone> Map<K, V> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Slot<V>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `key` if it is younger than `ttl` at `now`.
    fn get(&self, key: &K, ttl: Duration, now: Instant) -> Option<V> {
        match self.lock().get(key) {
            Some(Slot::Fresh(v, at)) if now.saturating_duration_since(*at) < ttl => Some(v.clone()),
            _ => None,
        }
    }

    fn fill(&self, key: K, value: V, read_started: Instant) {
        let mut map = self.lock();
        if let Some(Slot::Invalidated(at)) = map.get(&key)
            && *at >= read_started
        {
            return;
        }
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key, Slot::Fresh(value, Instant::now()));
    }

    fn invalidate(&self, key: K) {
        self.lock().insert(key, Slot::Invalidated(Instant::now()));
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

/// Products and inventory by product id.
pub struct CatalogCache {
    products: Map<i64, ProductRecord>,
    inventory: Map<i64, InventoryRecord>,
    ttl: Duration,
    enabled: AtomicBool,
}

impl CatalogCache {
    /// A cache whose entries live `ttl` (zero: never used).
    pub fn new(ttl: Duration) -> Self {
        Self { products: Map::new(), inventory: Map::new(), ttl, enabled: AtomicBool::new(!ttl.is_zero()) }
    }

    /// Turns the cache on or off (off empties it); used while the bus cannot deliver invalidations.
    pub fn set_enabled(&self, on: bool) {
        let on = on && !self.ttl.is_zero();
        if self.enabled.swap(on, Ordering::SeqCst) != on && !on {
            self.products.clear();
            self.inventory.clear();
        }
    }

    pub(crate) fn on(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn product(&self, id: i64) -> Option<ProductRecord> {
        self.on().then(|| self.products.get(&id, self.ttl, Instant::now())).flatten()
    }

    pub(crate) fn fill_product(&self, record: &ProductRecord, started: Instant) {
        if self.on() {
            self.products.fill(record.id, record.clone(), started);
        }
    }

    pub(crate) fn inventory(&self, id: i64) -> Option<InventoryRecord> {
        self.on().then(|| self.inventory.get(&id, self.ttl, Instant::now())).flatten()
    }

    pub(crate) fn fill_inventory(&self, record: &InventoryRecord, started: Instant) {
        if self.on() {
            self.inventory.fill(record.product_id, record.clone(), started);
        }
    }

    /// Forgets a product's details.
    pub fn invalidate_product(&self, id: i64) {
        self.products.invalidate(id);
    }

    /// Forgets a product's stock level.
    pub fn invalidate_inventory(&self, id: i64) {
        self.inventory.invalidate(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(available: i64) -> InventoryRecord {
        InventoryRecord { product_id: 1, available, reserved: 0, updated_at: chrono::Utc::now() }
    }

    #[test]
    fn a_read_older_than_an_invalidation_never_fills() {
        let cache = CatalogCache::new(Duration::from_secs(30));
        let started = Instant::now();
        cache.invalidate_inventory(1);
        cache.fill_inventory(&record(5), started);
        assert!(cache.inventory(1).is_none(), "the stale read was dropped");
        cache.fill_inventory(&record(6), Instant::now());
        assert_eq!(cache.inventory(1).map(|r| r.available), Some(6));
        cache.set_enabled(false);
        assert!(cache.inventory(1).is_none());
        cache.set_enabled(true);
        assert!(cache.inventory(1).is_none(), "switching off emptied it");
    }

    #[test]
    fn entries_expire() {
        let cache = CatalogCache::new(Duration::from_secs(30));
        let filled = Instant::now();
        cache.fill_inventory(&record(1), filled);
        assert!(cache.inventory(1).is_some());
        // The clock is moved by hand rather than slept through.
        let at = |secs: u64| cache.inventory.get(&1, cache.ttl, filled + Duration::from_secs(secs));
        assert!(at(29).is_some(), "fresh within its lifetime");
        assert!(at(31).is_none(), "gone after it");
    }
}
