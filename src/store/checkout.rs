//! Checkout: a cart becomes an order in one transaction (stock taken, prices snapshotted, the
//! charge made through a caller-supplied step, the cart emptied), replayed by idempotency key.
//!
//! The store does not know the payment provider: the service hands it a `charge` step that
//! answers with the provider's reference or the service's own refusal value `E`.

use chrono::Utc;

use super::carts::{CART_LINES, CartLineRecord, EMPTY_CART};
use super::columns::order_columns;
use super::inventory::StockChange;
use super::{Abort, OrderRecord, ProviderStep, Store, is_unique_violation, on_pool};

/// What a checkout came to.
#[derive(Debug, Clone)]
pub enum Checkout<E> {
    /// A new paid order, and the stock it took.
    Placed(OrderRecord, Vec<StockChange>),
    /// The same request was already placed under this idempotency key: its order.
    Replayed(OrderRecord),
    /// The key was used for a different request; nothing changed.
    KeyReused,
    /// Nothing to order.
    CartEmpty,
    /// A line's product is archived.
    Archived {
        /// Its SKU.
        sku: String,
    },
    /// A line wants more than is in stock.
    OutOfStock {
        /// Its SKU.
        sku: String,
        /// Units left (what the client may still buy).
        left: i64,
    },
    /// The cart holds products priced in several currencies.
    MixedCurrencies {
        /// The currencies, sorted.
        currencies: Vec<String>,
    },
    /// The total is not the one the client expected (prices changed since it looked).
    TotalChanged {
        /// What the cart comes to now, minor units.
        amount: i64,
        /// Its currency.
        currency: String,
    },
    /// The charge step refused; everything was rolled back.
    ChargeRefused(E),
}

/// What the charge step of a checkout is asked to do.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
}

const ORDER_BY_KEY: &str =
    concat!("SELECT ", order_columns!(""), " FROM orders WHERE customer_id = $1 AND idempotency_key = $2");
const ORDER_HASH: &str = "SELECT request_hash FROM orders WHERE customer_id = $1 AND idempotency_key = $2";
const ORDER_BY_ID: &str = concat!("SELECT ", order_columns!(""), " FROM orders WHERE id = $1");
/// Units move from `available` to `reserved`, where they stay until the order is fulfilled.
const TAKE_STOCK: &str = "UPDATE inventory SET available = available - $2, reserved = reserved + $2, updated_at = $3 \
     WHERE product_id = $1 AND available >= $2 RETURNING available";

impl Store {
    /// Places the customer's cart as an order in one transaction: replays an earlier request
    /// with the same key, takes the stock (never below zero), snapshots prices, charges through
    /// `charge`, empties the cart. A refused charge rolls everything back.
    pub async fn checkout<E: Send>(
        &self,
        customer_id: i64,
        idempotency_key: &str,
        request_hash: &str,
        shipping_address: &str,
        expected_total: Option<(i64, &str)>,
        charge: impl ProviderStep<ChargeRequest, E>,
    ) -> sqlx::Result<Checkout<E>> {
        let now = Utc::now();
        let attempt: Result<Checkout<E>, Abort> = on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            // Lock the customer's cart row first: concurrent checkouts of one customer queue here
            // (PostgreSQL; SQLite's IMMEDIATE transaction already serialises), so a retry sees the
            // order its twin committed instead of the cart it emptied.
            sqlx::query("UPDATE carts SET updated_at = $2 WHERE customer_id = $1")
                .bind(customer_id).bind(now).execute(&mut *tx).await?;
            let earlier: Option<String> = sqlx::query_scalar(ORDER_HASH)
                .bind(customer_id).bind(idempotency_key).fetch_optional(&mut *tx).await?;
            if earlier.is_some() {
                // Decided below, outside the transaction, exactly as for a concurrent duplicate.
                return Err(Abort::KeyTaken);
            }
            let lines: Vec<CartLineRecord> = sqlx::query_as(CART_LINES).bind(customer_id).fetch_all(&mut *tx).await?;
            if lines.is_empty() {
                return Ok(Checkout::CartEmpty);
            }
            if let Some(line) = lines.iter().find(|l| l.status != "ACTIVE") {
                return Ok(Checkout::Archived { sku: line.sku.clone() });
            }
            let mut currencies: Vec<String> = lines.iter().map(|l| l.currency_code.clone()).collect();
            currencies.sort();
            currencies.dedup();
            if currencies.len() > 1 {
                return Ok(Checkout::MixedCurrencies { currencies });
            }
            let currency = lines[0].currency_code.clone();
            let subtotal: i64 = lines.iter().map(|l| l.price_amount * l.quantity).sum();
            // Read under the cart's lock, so the price checked is the price charged.
            if let Some((amount, code)) = expected_total
                && (amount != subtotal || !code.eq_ignore_ascii_case(&currency))
            {
                return Ok(Checkout::TotalChanged { amount: subtotal, currency });
            }
            let inserted = sqlx::query_scalar::<_, i64>(
                "INSERT INTO orders (customer_id, status, currency_code, subtotal_amount, total_amount, idempotency_key, \
                 request_hash, shipping_address, created_at, updated_at) VALUES ($1, 'PENDING', $2, $3, $3, $4, $5, $6, $7, $7) RETURNING id")
                .bind(customer_id).bind(&currency).bind(subtotal).bind(idempotency_key).bind(request_hash)
                .bind(shipping_address).bind(now)
                .fetch_one(&mut *tx).await;
            let order_id = match inserted {
                // A concurrent request with the same key got there first (PostgreSQL waits for it).
                Err(e) if is_unique_violation(&e) => return Err(Abort::KeyTaken),
                other => other?,
            };
            let mut stock = Vec::with_capacity(lines.len());
            for line in &lines {
                let left: Option<i64> = sqlx::query_scalar(TAKE_STOCK)
                    .bind(line.product_id).bind(line.quantity).bind(now).fetch_optional(&mut *tx).await?;
                let Some(available) = left else {
                    let left = line.available.min(line.quantity - 1).max(0);
                    return Ok(Checkout::OutOfStock { sku: line.sku.clone(), left });
                };
                stock.push(StockChange { product_id: line.product_id, vendor_id: line.vendor_id, available, delta: -line.quantity });
                sqlx::query("INSERT INTO order_items (order_id, product_id, vendor_id, sku, name, unit_price_amount, \
                             currency_code, quantity, line_total_amount) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                    .bind(order_id).bind(line.product_id).bind(line.vendor_id).bind(&line.sku).bind(&line.name)
                    .bind(line.price_amount).bind(&currency).bind(line.quantity).bind(line.price_amount * line.quantity)
                    .execute(&mut *tx).await?;
            }
            // The charge runs while this transaction holds the stock: a refusal rolls back the
            // order and the stock with it.
            let reference = match charge.run(ChargeRequest { amount: subtotal, currency: currency.clone() }).await {
                Ok(reference) => reference,
                Err(refused) => return Ok(Checkout::ChargeRefused(refused)),
            };
            sqlx::query("INSERT INTO payments (order_id, kind, status, amount, currency_code, provider_reference, idempotency_key, created_at) \
                         VALUES ($1, 'CHARGE', 'APPROVED', $2, $3, $4, $5, $6)")
                .bind(order_id).bind(subtotal).bind(&currency).bind(&reference)
                .bind(format!("checkout:{customer_id}:{idempotency_key}")).bind(now)
                .execute(&mut *tx).await?;
            sqlx::query("UPDATE orders SET status = 'PAID', payment_reference = $2, updated_at = $3 WHERE id = $1")
                .bind(order_id).bind(&reference).bind(now).execute(&mut *tx).await?;
            sqlx::query(EMPTY_CART).bind(customer_id).execute(&mut *tx).await?;
            let order: OrderRecord = sqlx::query_as(ORDER_BY_ID).bind(order_id).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            for change in &stock {
                self.cache.invalidate_inventory(change.product_id);
            }
            Ok(Checkout::Placed(order, stock))
        }.await);
        match attempt {
            Ok(outcome) => Ok(outcome),
            // The key is taken: the same request replays its order, another request is refused.
            Err(Abort::KeyTaken) => self.replay_checkout(customer_id, idempotency_key, request_hash).await,
            Err(Abort::Db(e)) => Err(e),
        }
    }

    async fn replay_checkout<E>(
        &self,
        customer_id: i64,
        idempotency_key: &str,
        request_hash: &str,
    ) -> sqlx::Result<Checkout<E>> {
        let hash: Option<String> = on_pool!(self, pool => sqlx::query_scalar(ORDER_HASH)
            .bind(customer_id).bind(idempotency_key).fetch_optional(pool).await)?;
        if hash.as_deref() != Some(request_hash) {
            return Ok(Checkout::KeyReused);
        }
        let order: OrderRecord = on_pool!(self, pool => sqlx::query_as(ORDER_BY_KEY)
            .bind(customer_id).bind(idempotency_key).fetch_one(pool).await)?;
        Ok(Checkout::Replayed(order))
    }
}
