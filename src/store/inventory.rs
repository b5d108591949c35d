//! Stock: levels per product (read through the cache), compare-and-set and idempotent adjustments.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::columns::inventory_columns;
use super::outbox::record_events;
use super::{Abort, ProductRecord, Store, is_unique_violation, on_pool, read, select_by_ids, through_cache};
use crate::domain::event::Event;

/// Stock of one product.
#[derive(Debug, Clone, FromRow)]
pub struct InventoryRecord {
    /// The product.
    pub product_id: i64,
    /// Units that can be bought now.
    pub available: i64,
    /// Units held for orders not yet fulfilled.
    pub reserved: i64,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A stock level after a committed change (becomes an inventory event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockChange {
    /// The product.
    pub product_id: i64,
    /// Its vendor.
    pub vendor_id: i64,
    /// Units available now.
    pub available: i64,
    /// The change.
    pub delta: i64,
}

impl StockChange {
    /// The inventory event that reports it.
    pub fn event(&self, at: DateTime<Utc>) -> Event {
        Event::Inventory {
            product_id: self.product_id,
            vendor_id: self.vendor_id,
            available: self.available,
            delta: self.delta,
            at,
        }
    }
}

/// What a compare-and-set of the stock came to.
#[derive(Debug, Clone)]
pub enum SetStock {
    /// Set.
    Set(StockChange),
    /// The stock was not the expected level; it is `current`.
    Conflict {
        /// The level now.
        current: i64,
    },
}

/// What an idempotent adjustment came to.
#[derive(Debug, Clone)]
pub enum Adjustment {
    /// Applied now.
    Applied(StockChange),
    /// Applied earlier under the same key with the same delta: that result.
    Replayed(StockChange),
    /// The stock would go below zero; nothing changed.
    Insufficient,
    /// The key was used for another delta; nothing changed.
    KeyReused,
}

impl Store {
    /// Inventory by product id, in any order (through the cache: one statement for the misses).
    pub async fn inventory_by_product_ids(&self, ids: &[i64]) -> sqlx::Result<Vec<InventoryRecord>> {
        let fetch = async |missing: &[i64]| {
            read!(self, self.cache_reader(), backend => select_by_ids!(
                backend,
                InventoryRecord,
                concat!("SELECT ", inventory_columns!(), " FROM inventory"),
                "product_id",
                missing
            ))
        };
        through_cache(ids, |id| self.cache.inventory(id), fetch, |r, at| self.cache.fill_inventory(r, at)).await
    }

    /// Sets the available stock to `quantity` only if it is `compare` now (compare-and-set).
    pub async fn set_inventory(&self, product: &ProductRecord, quantity: i64, compare: i64) -> sqlx::Result<SetStock> {
        let now = Utc::now();
        let change = StockChange {
            product_id: product.id,
            vendor_id: product.vendor_id,
            available: quantity,
            delta: quantity - compare,
        };
        let recorded = on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            let updated: Option<i64> = sqlx::query_scalar(
                "UPDATE inventory SET available = $2, updated_at = $4 WHERE product_id = $1 AND available = $3 RETURNING available")
                .bind(product.id).bind(quantity).bind(compare).bind(now).fetch_optional(&mut *tx).await?;
            if updated.is_none() {
                return Ok::<_, sqlx::Error>(None);
            }
            let recorded = record_events!(tx, [change.event(now)], now)?;
            tx.commit().await?;
            Ok(Some(recorded))
        }.await)?;
        self.cache.invalidate_inventory(product.id);
        if let Some(recorded) = recorded {
            self.committed(recorded);
            return Ok(SetStock::Set(change));
        }
        let current = self.inventory_by_product_ids(&[product.id]).await?.pop().map(|i| i.available).unwrap_or(0);
        Ok(SetStock::Conflict { current })
    }

    /// Adds `delta` (may be negative) to the stock, once per idempotency key: a repeat with the
    /// same key and delta returns the first result; with another delta it is refused.
    pub async fn adjust_inventory(
        &self,
        product: &ProductRecord,
        delta: i64,
        idempotency_key: &str,
        actor: &str,
    ) -> sqlx::Result<Adjustment> {
        let now = Utc::now();
        const EARLIER: &str = "SELECT delta, resulting_available FROM inventory_adjustments WHERE product_id = $1 AND idempotency_key = $2";
        let change = |available| StockChange { product_id: product.id, vendor_id: product.vendor_id, available, delta };
        let result: Result<Adjustment, Abort> = on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            let earlier: Option<(i64, i64)> = sqlx::query_as(EARLIER).bind(product.id).bind(idempotency_key).fetch_optional(&mut *tx).await?;
            if earlier.is_some() {
                return Err(Abort::KeyTaken);
            }
            let available: Option<i64> = sqlx::query_scalar(
                "UPDATE inventory SET available = available + $2, updated_at = $3 WHERE product_id = $1 AND available + $2 >= 0 RETURNING available")
                .bind(product.id).bind(delta).bind(now).fetch_optional(&mut *tx).await?;
            let Some(available) = available else {
                return Ok(Adjustment::Insufficient);
            };
            let recorded = sqlx::query("INSERT INTO inventory_adjustments (product_id, delta, idempotency_key, actor_subject, \
                                        resulting_available, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(product.id).bind(delta).bind(idempotency_key).bind(actor).bind(available).bind(now)
                .execute(&mut *tx).await;
            match recorded {
                Err(e) if is_unique_violation(&e) => return Err(Abort::KeyTaken),
                other => other?,
            };
            let recorded = record_events!(tx, [change(available).event(now)], now)?;
            tx.commit().await?;
            self.cache.invalidate_inventory(product.id);
            self.committed(recorded);
            Ok(Adjustment::Applied(change(available)))
        }.await);
        match result {
            Ok(outcome) => Ok(outcome),
            Err(Abort::KeyTaken) => {
                let (earlier_delta, resulting): (i64, i64) = on_pool!(self, pool => sqlx::query_as(EARLIER)
                    .bind(product.id).bind(idempotency_key).fetch_one(pool).await)?;
                if earlier_delta != delta {
                    return Ok(Adjustment::KeyReused);
                }
                Ok(Adjustment::Replayed(change(resulting)))
            }
            Err(Abort::Db(e)) => Err(e),
        }
    }
}
