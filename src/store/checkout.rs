//! Checkout, as a saga of three short steps, so money never moves without a record:
//!
//! 1. `reserve_checkout`: one transaction takes the stock (never below zero), snapshots prices
//!    into a `PENDING` order, moves the cart's lines into it and records a `PENDING` charge with
//!    its idempotency key and the card token. It commits before any money moves.
//! 2. The service calls the payment provider with no transaction or lock held.
//! 3. `settle_paid` marks the charge `APPROVED` and the order `PAID`; `settle_released` (a
//!    decline, or a failure that certainly charged nothing) deletes the pending order and puts
//!    the stock and the cart lines back. A timeout settles nothing: the order stays `PENDING`
//!    until a retry with the same key or the reconciler (`pending_charges`) asks the provider
//!    again with the same key.
//!
//! A crash between the steps leaves a `PENDING` order and charge: visible, holding its stock,
//! and settled by the reconciler when the process (or another replica) runs again.

use chrono::{DateTime, Utc};

use super::carts::{CART_LINES, CartLineRecord, EMPTY_CART};
use super::columns::order_columns;
use super::inventory::StockChange;
use super::outbox::record_events;
use super::{Abort, OrderRecord, Store, is_unique_violation, on_pool};
use crate::domain::event::Event;

/// What the first step of a checkout came to.
#[derive(Debug, Clone)]
pub enum Checkout {
    /// The order is `PENDING` with its stock held: charge it (see `Reservation`).
    Reserved(Reservation),
    /// The key names an order still waiting for its payment's outcome: ask the provider again.
    Unsettled(Reservation),
    /// The same request was already placed and settled under this key: its order.
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
}

/// A pending order's charge: what the provider must be asked, under which key.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// The `PENDING` order.
    pub order_id: i64,
    /// Its customer.
    pub customer_id: i64,
    /// The pending charge's row.
    pub payment_id: i64,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// The provider's idempotency key: the same for every attempt at this charge.
    pub gateway_key: String,
    /// The provider's card token.
    pub token: String,
    /// The stock taken (for events).
    pub stock: Vec<StockChange>,
}

/// What settling a charge as approved came to.
#[derive(Debug, Clone)]
pub enum SettledPaid {
    /// The order is now `PAID`; the vendors with lines in it.
    Paid(OrderRecord, Vec<i64>),
    /// Someone settled it first (a retry, the reconciler, another replica): the order now.
    AlreadySettled(Option<OrderRecord>),
    /// The order was cancelled while its charge was pending, and the charge went through: it
    /// must be refunded. The charge is recorded `APPROVED` and, in the same transaction, a
    /// `PENDING` refund under the key `refund:<charge key>`, so the reconciler asks the provider
    /// until it confirms; this refund's id.
    CancelledMeanwhile(OrderRecord, PendingRefund),
}

const ORDER_BY_KEY: &str =
    concat!("SELECT ", order_columns!(""), " FROM orders WHERE customer_id = $1 AND idempotency_key = $2");
const ORDER_HASH: &str = "SELECT request_hash, status FROM orders WHERE customer_id = $1 AND idempotency_key = $2";
const ORDER_BY_ID: &str = concat!("SELECT ", order_columns!(""), " FROM orders WHERE id = $1");
/// Units move from `available` to `reserved`, where they stay until the order is fulfilled.
const TAKE_STOCK: &str = "UPDATE inventory SET available = available - $2, reserved = reserved + $2, updated_at = $3 \
     WHERE product_id = $1 AND available >= $2 RETURNING available";
const PUT_BACK_STOCK: &str = "UPDATE inventory SET available = available + $2, \
     reserved = CASE WHEN reserved > $2 THEN reserved - $2 ELSE 0 END, updated_at = $3 WHERE product_id = $1 RETURNING available";
/// Pending charges with their orders' customers (a `PendingRow` each); conditions follow.
macro_rules! pending_charges {
    () => {
        "SELECT p.id, p.order_id, o.customer_id, p.amount, p.currency_code, p.idempotency_key, \
         COALESCE(p.payment_token, '') FROM payments p JOIN orders o ON o.id = p.order_id \
         WHERE p.kind = 'CHARGE' AND p.status = 'PENDING'"
    };
}

type PendingRow = (i64, i64, i64, i64, String, String, String);

/// A refund of a late charge, recorded but not yet confirmed by the provider.
#[derive(Debug, Clone)]
pub struct PendingRefund {
    /// The refund's payment row.
    pub refund_id: i64,
    /// Its order.
    pub order_id: i64,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// The provider's idempotency key for it.
    pub key: String,
    /// The charge's reference at the provider.
    pub reference: String,
}

fn reservation((payment_id, order_id, customer_id, amount, currency, gateway_key, token): PendingRow) -> Reservation {
    Reservation { order_id, customer_id, payment_id, amount, currency, gateway_key, token, stock: Vec::new() }
}

impl Store {
    /// Step 1: replays an earlier request with the same key, or holds the stock, snapshots the
    /// prices into a `PENDING` order, empties the cart into it and records the pending charge,
    /// in one transaction that commits before any money moves.
    pub async fn reserve_checkout(
        &self,
        customer_id: i64,
        idempotency_key: &str,
        request_hash: &str,
        shipping_address: &str,
        expected_total: Option<(i64, &str)>,
        token: &str,
    ) -> sqlx::Result<Checkout> {
        let now = Utc::now();
        let attempt: Result<Checkout, Abort> = on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            // Lock the customer's cart row first: concurrent checkouts of one customer queue here
            // (PostgreSQL; SQLite's IMMEDIATE transaction already serialises), so a retry sees the
            // order its twin committed instead of the cart it emptied.
            sqlx::query("UPDATE carts SET updated_at = $2 WHERE customer_id = $1")
                .bind(customer_id).bind(now).execute(&mut *tx).await?;
            let earlier: Option<(Option<String>, String)> = sqlx::query_as(ORDER_HASH)
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
            // One key per attempt at a charge: a released order frees the client's key, and the
            // next attempt is another order, so another charge at the provider.
            let gateway_key = format!("checkout:{customer_id}:{idempotency_key}:{order_id}");
            let payment_id: i64 = sqlx::query_scalar(
                "INSERT INTO payments (order_id, kind, status, amount, currency_code, idempotency_key, payment_token, created_at) \
                 VALUES ($1, 'CHARGE', 'PENDING', $2, $3, $4, $5, $6) RETURNING id")
                .bind(order_id).bind(subtotal).bind(&currency).bind(&gateway_key).bind(token).bind(now)
                .fetch_one(&mut *tx).await?;
            sqlx::query(EMPTY_CART).bind(customer_id).execute(&mut *tx).await?;
            let events = stock.iter().map(|c| c.event(now)).chain([Event::Cart { customer_id, at: now }]);
            let recorded = record_events!(tx, events, now)?;
            tx.commit().await?;
            for change in &stock {
                self.cache.invalidate_inventory(change.product_id);
            }
            self.committed(recorded);
            Ok(Checkout::Reserved(Reservation {
                order_id, customer_id, payment_id, amount: subtotal, currency, gateway_key, token: token.to_string(), stock,
            }))
        }.await);
        match attempt {
            Ok(outcome) => Ok(outcome),
            // The key is taken: the same request replays its order, another request is refused.
            Err(Abort::KeyTaken) => match self.replay_checkout(customer_id, idempotency_key, request_hash).await? {
                Some(outcome) => Ok(outcome),
                // Released between the two reads: the key is free again, so this is a new checkout.
                None => {
                    let again = self.reserve_checkout(
                        customer_id,
                        idempotency_key,
                        request_hash,
                        shipping_address,
                        expected_total,
                        token,
                    );
                    Box::pin(again).await
                }
            },
            Err(Abort::Db(e)) => Err(e),
        }
    }

    async fn replay_checkout(
        &self,
        customer_id: i64,
        idempotency_key: &str,
        request_hash: &str,
    ) -> sqlx::Result<Option<Checkout>> {
        let earlier: Option<(Option<String>, String)> = on_pool!(self, pool => sqlx::query_as(ORDER_HASH)
            .bind(customer_id).bind(idempotency_key).fetch_optional(pool).await)?;
        let Some((hash, status)) = earlier else { return Ok(None) };
        if hash.as_deref() != Some(request_hash) {
            return Ok(Some(Checkout::KeyReused));
        }
        let order: OrderRecord = on_pool!(self, pool => sqlx::query_as(ORDER_BY_KEY)
            .bind(customer_id).bind(idempotency_key).fetch_one(pool).await)?;
        if status == "PENDING" {
            let sql = concat!(pending_charges!(), " AND p.order_id = $1");
            let pending: Option<PendingRow> =
                on_pool!(self, pool => sqlx::query_as(sql).bind(order.id).fetch_optional(pool).await)?;
            if let Some(row) = pending {
                return Ok(Some(Checkout::Unsettled(reservation(row))));
            }
        }
        Ok(Some(Checkout::Replayed(order)))
    }

    /// Step 3, approved: the charge becomes `APPROVED` with the provider's reference, and its
    /// order `PAID`, if both are still pending.
    pub async fn settle_paid(&self, payment_id: i64, reference: &str) -> sqlx::Result<SettledPaid> {
        let now = Utc::now();
        on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            let order_id: Option<i64> = sqlx::query_scalar(
                "UPDATE payments SET status = 'APPROVED', provider_reference = $2, payment_token = NULL \
                 WHERE id = $1 AND status = 'PENDING' RETURNING order_id")
                .bind(payment_id).bind(reference).fetch_optional(&mut *tx).await?;
            let Some(order_id) = order_id else {
                let order_id: Option<i64> = sqlx::query_scalar("SELECT order_id FROM payments WHERE id = $1")
                    .bind(payment_id).fetch_optional(&mut *tx).await?;
                let order = match order_id {
                    Some(id) => sqlx::query_as(ORDER_BY_ID).bind(id).fetch_optional(&mut *tx).await?,
                    None => None,
                };
                return Ok(SettledPaid::AlreadySettled(order));
            };
            let paid = sqlx::query("UPDATE orders SET status = 'PAID', payment_reference = $2, updated_at = $3 \
                                    WHERE id = $1 AND status = 'PENDING'")
                .bind(order_id).bind(reference).bind(now).execute(&mut *tx).await?;
            let order: OrderRecord = sqlx::query_as(ORDER_BY_ID).bind(order_id).fetch_one(&mut *tx).await?;
            let vendor_ids: Vec<i64> =
                sqlx::query_scalar("SELECT DISTINCT vendor_id FROM order_items WHERE order_id = $1 ORDER BY vendor_id")
                    .bind(order_id).fetch_all(&mut *tx).await?;
            if paid.rows_affected() != 1 {
                sqlx::query("INSERT INTO payments (order_id, kind, status, amount, currency_code, idempotency_key, created_at) \
                             SELECT order_id, 'REFUND', 'PENDING', amount, currency_code, 'refund:' || idempotency_key, $2 \
                             FROM payments WHERE id = $1 ON CONFLICT (kind, idempotency_key) DO NOTHING")
                    .bind(payment_id).bind(now).execute(&mut *tx).await?;
                let refund: (i64, i64, String, String) = sqlx::query_as(
                    "SELECT r.id, r.amount, r.currency_code, r.idempotency_key FROM payments r JOIN payments c \
                     ON r.idempotency_key = 'refund:' || c.idempotency_key AND r.kind = 'REFUND' WHERE c.id = $1")
                    .bind(payment_id).fetch_one(&mut *tx).await?;
                tx.commit().await?;
                let (refund_id, amount, currency, key) = refund;
                let refund = PendingRefund { refund_id, order_id, amount, currency, key, reference: reference.to_string() };
                return Ok(SettledPaid::CancelledMeanwhile(order, refund));
            }
            let event = Event::OrderStatus {
                order_id, customer_id: order.customer_id, vendor_ids: vendor_ids.clone(), status: order.status.clone(), at: now,
            };
            let recorded = record_events!(tx, [event], now)?;
            tx.commit().await?;
            self.committed(recorded);
            Ok(SettledPaid::Paid(order, vendor_ids))
        }.await)
    }

    /// Step 3, nothing charged (declined, or certainly never sent): the pending order is
    /// deleted, its stock and cart lines put back, and the client's key freed. `None` when the
    /// charge is no longer pending. An order cancelled meanwhile already put its stock back: only
    /// the charge is closed then.
    pub async fn settle_released(&self, payment_id: i64, status: &str) -> sqlx::Result<Option<Vec<StockChange>>> {
        let now = Utc::now();
        let released: Option<Vec<(i64, i64, StockChange)>> = on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            let order_id: Option<i64> = sqlx::query_scalar(
                "UPDATE payments SET status = $2, payment_token = NULL WHERE id = $1 AND status = 'PENDING' RETURNING order_id")
                .bind(payment_id).bind(status).fetch_optional(&mut *tx).await?;
            let Some(order_id) = order_id else { return Ok::<_, sqlx::Error>(None) };
            // Claim the order before touching stock: the row lock makes a concurrent cancel
            // (which puts the stock back itself) wait, and then this finds it no longer pending.
            let claimed: Option<(i64, String)> = sqlx::query_as(
                "UPDATE orders SET updated_at = $2 WHERE id = $1 AND status = 'PENDING' RETURNING customer_id, currency_code")
                .bind(order_id).bind(now).fetch_optional(&mut *tx).await?;
            let Some((customer_id, currency)) = claimed else {
                tx.commit().await?;
                return Ok(Some(Vec::new()));
            };
            let items: Vec<(i64, i64, i64, i64)> =
                sqlx::query_as("SELECT product_id, vendor_id, quantity, unit_price_amount FROM order_items WHERE order_id = $1")
                    .bind(order_id).fetch_all(&mut *tx).await?;
            let mut back = Vec::with_capacity(items.len());
            for (product_id, vendor_id, quantity, unit_price) in items {
                let available: i64 = sqlx::query_scalar(PUT_BACK_STOCK)
                    .bind(product_id).bind(quantity).bind(now).fetch_one(&mut *tx).await?;
                // The lines go back into the cart, beside anything added since.
                sqlx::query("INSERT INTO cart_items (cart_id, product_id, quantity, added_at, added_price_amount, \
                             added_currency_code) SELECT id, $2, $3, $4, $5, $6 FROM carts WHERE customer_id = $1 \
                             ON CONFLICT (cart_id, product_id) DO UPDATE SET \
                             quantity = CASE WHEN cart_items.quantity + excluded.quantity > 999 THEN 999 \
                             ELSE cart_items.quantity + excluded.quantity END")
                    .bind(customer_id).bind(product_id).bind(quantity).bind(now).bind(unit_price).bind(&currency)
                    .execute(&mut *tx).await?;
                back.push((customer_id, order_id, StockChange { product_id, vendor_id, available, delta: quantity }));
            }
            // The charge row goes with its order (nothing was charged: the provider keeps its own
            // record of the refusal, and the log has it).
            sqlx::query("DELETE FROM order_items WHERE order_id = $1").bind(order_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM payments WHERE order_id = $1").bind(order_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM orders WHERE id = $1").bind(order_id).execute(&mut *tx).await?;
            let events = back.iter().map(|(_, _, c)| c.event(now)).chain([Event::Cart { customer_id, at: now }]);
            let recorded = record_events!(tx, events, now)?;
            tx.commit().await?;
            self.committed(recorded);
            Ok(Some(back))
        }.await)?;
        let Some(released) = released else { return Ok(None) };
        for (_, _, change) in &released {
            self.cache.invalidate_inventory(change.product_id);
        }
        Ok(Some(released.into_iter().map(|(_, _, change)| change).collect()))
    }

    /// Pending charges recorded before `before`, a page of `limit` after the charge `after` (by
    /// id): the reconciler's work list, paged so charges that stay unknown never hide newer ones.
    pub async fn pending_charges(
        &self,
        before: DateTime<Utc>,
        after: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<Reservation>> {
        let sql = concat!(pending_charges!(), " AND p.created_at < $1 AND p.id > $2 ORDER BY p.id LIMIT $3");
        let rows: Vec<PendingRow> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(before).bind(after).bind(limit).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(reservation).collect())
    }

    /// The provider confirmed a late refund: the refund is `APPROVED` with its reference and the
    /// cancelled order becomes `REFUNDED` (with its event).
    pub async fn finish_late_refund(&self, refund_id: i64, reference: &str) -> sqlx::Result<()> {
        let now = Utc::now();
        let recorded = on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            let order_id: Option<i64> = sqlx::query_scalar(
                "UPDATE payments SET status = 'APPROVED', provider_reference = $2 WHERE id = $1 AND status = 'PENDING' \
                 RETURNING order_id")
                .bind(refund_id).bind(reference).fetch_optional(&mut *tx).await?;
            let Some(order_id) = order_id else { return Ok::<_, sqlx::Error>(Vec::new()) };
            let refunded = sqlx::query("UPDATE orders SET status = 'REFUNDED', updated_at = $2 WHERE id = $1 AND status = 'CANCELLED'")
                .bind(order_id).bind(now).execute(&mut *tx).await?;
            let mut events = Vec::new();
            if refunded.rows_affected() == 1 {
                let order: OrderRecord = sqlx::query_as(ORDER_BY_ID).bind(order_id).fetch_one(&mut *tx).await?;
                let vendor_ids: Vec<i64> =
                    sqlx::query_scalar("SELECT DISTINCT vendor_id FROM order_items WHERE order_id = $1 ORDER BY vendor_id")
                        .bind(order_id).fetch_all(&mut *tx).await?;
                events.push(Event::OrderStatus { order_id, customer_id: order.customer_id, vendor_ids, status: order.status, at: now });
            }
            let recorded = record_events!(tx, events, now)?;
            tx.commit().await?;
            Ok(recorded)
        }.await)?;
        self.committed(recorded);
        Ok(())
    }

    /// Late refunds still unconfirmed, recorded before `before`, a page of `limit` after the
    /// refund `after`: (refund id, amount, currency, key, the charge's provider reference).
    pub async fn pending_refunds(
        &self,
        before: DateTime<Utc>,
        after: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<PendingRefund>> {
        const SQL: &str = "SELECT r.id, r.order_id, r.amount, r.currency_code, r.idempotency_key, \
             COALESCE(c.provider_reference, '') FROM payments r \
             JOIN payments c ON c.order_id = r.order_id AND c.kind = 'CHARGE' AND c.status = 'APPROVED' \
             WHERE r.kind = 'REFUND' AND r.status = 'PENDING' AND r.created_at < $1 AND r.id > $2 ORDER BY r.id LIMIT $3";
        let rows: Vec<(i64, i64, i64, String, String, String)> =
            on_pool!(self, pool => sqlx::query_as(SQL).bind(before).bind(after).bind(limit).fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(refund_id, order_id, amount, currency, key, reference)| PendingRefund {
                refund_id,
                order_id,
                amount,
                currency,
                key,
                reference,
            })
            .collect())
    }
}
