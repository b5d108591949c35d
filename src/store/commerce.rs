//! The money path: carts, checkout, order status changes, products and stock.
//!
//! Every write that must be atomic is one transaction here. SQLite transactions that write
//! start with `BEGIN IMMEDIATE`, so concurrent writers queue on the busy timeout instead of
//! failing to upgrade a read lock; PostgreSQL relies on row locks (`UPDATE ... WHERE available
//! \>= n` and the unique idempotency keys), taken in product-id order so two checkouts can never
//! deadlock.

use chrono::Utc;
use sqlx::FromRow;

use super::{BackendKind, OrderItemRecord, OrderRecord, OrderScope, ProductRecord, Store, VendorRecord, on_pool};
use crate::domain::order::OrderStatus;
use crate::error::{AppError, AppResult};
use crate::payments::PaymentOutcome;

/// A business failure reported to the client in `userErrors` (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserError {
    /// Path to the input field at fault, e.g. `["input", "quantity"]`.
    pub field: Vec<String>,
    /// For a human.
    pub message: String,
    /// Stable machine-readable code.
    pub code: &'static str,
}

impl UserError {
    /// A user error on `field` (dot-separated path).
    pub fn new(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        let field = if field.is_empty() { Vec::new() } else { field.split('.').map(String::from).collect() };
        Self { field, message: message.into(), code }
    }
}

/// Either the result, or a user error and nothing changed.
pub type Outcome<T> = Result<T, UserError>;

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

/// A cart line with what checkout needs of its product.
#[derive(Debug, Clone, FromRow)]
pub struct CartLineRecord {
    /// The product.
    pub product_id: i64,
    /// Units wanted.
    pub quantity: i64,
    /// Its vendor.
    pub vendor_id: i64,
    /// SKU now.
    pub sku: String,
    /// Name now.
    pub name: String,
    /// Unit price now.
    pub price_amount: i64,
    /// Currency.
    pub currency_code: String,
    /// `ACTIVE` or `ARCHIVED`.
    pub status: String,
    /// Units available now.
    pub available: i64,
}

/// What a checkout came to.
#[derive(Debug, Clone)]
pub enum CheckoutResult {
    /// A new paid order, and the stock it took.
    Placed(OrderRecord, Vec<StockChange>),
    /// The same request was already placed under this idempotency key: its order.
    Replayed(OrderRecord),
}

/// What the payment step of a checkout is asked to do.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
}

/// A status change, and the stock it put back.
#[derive(Debug, Clone)]
pub struct StatusChange {
    /// The order after the change.
    pub order: OrderRecord,
    /// Vendors with lines in the order.
    pub vendor_ids: Vec<i64>,
    /// Stock restored (cancellations).
    pub stock: Vec<StockChange>,
}

const CART_LINES: &str = "SELECT ci.product_id, ci.quantity, p.vendor_id, p.sku, p.name, p.price_amount, \
     p.currency_code, p.status, COALESCE(i.available, 0) AS available \
     FROM cart_items ci JOIN carts c ON c.id = ci.cart_id JOIN products p ON p.id = ci.product_id \
     LEFT JOIN inventory i ON i.product_id = ci.product_id WHERE c.customer_id = $1 ORDER BY ci.product_id";
const ORDER_BY_KEY: &str = "SELECT id, customer_id, status, currency_code, subtotal_amount, total_amount, created_at, \
     updated_at FROM orders WHERE customer_id = $1 AND idempotency_key = $2";
const ORDER_HASH: &str = "SELECT request_hash FROM orders WHERE customer_id = $1 AND idempotency_key = $2";
const ORDER_BY_ID: &str = "SELECT id, customer_id, status, currency_code, subtotal_amount, total_amount, created_at, \
     updated_at FROM orders WHERE id = $1";
const TAKE_STOCK: &str = "UPDATE inventory SET available = available - $2, updated_at = $3 \
     WHERE product_id = $1 AND available >= $2 RETURNING available";
const PUT_BACK_STOCK: &str =
    "UPDATE inventory SET available = available + $2, updated_at = $3 WHERE product_id = $1 RETURNING available";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn is_check_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_check_violation())
}

impl Store {
    fn write_begin(&self) -> &'static str {
        match self.kind() {
            BackendKind::Sqlite => "BEGIN IMMEDIATE",
            BackendKind::Postgres => "BEGIN",
        }
    }

    /// The customer's cart, line by line with product and stock (empty when there is none).
    pub async fn cart_lines(&self, customer_id: i64) -> AppResult<Vec<CartLineRecord>> {
        self.count_statement();
        let rows = on_pool!(self, pool => sqlx::query_as::<_, CartLineRecord>(CART_LINES).bind(customer_id).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Adds `quantity` units of a product to the customer's cart (summing with a line already there).
    pub async fn add_cart_item(&self, customer_id: i64, product_id: i64, quantity: i64) -> AppResult<Outcome<()>> {
        let now = Utc::now();
        let result: Result<Outcome<()>, sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            let product: Option<(String, String)> =
                sqlx::query_as("SELECT status, currency_code FROM products WHERE id = $1").bind(product_id).fetch_optional(&mut *tx).await?;
            let Some((status, currency)) = product else {
                return Ok(Err(UserError::new("PRODUCT_NOT_FOUND", "productId", "no such product")));
            };
            if status != "ACTIVE" {
                return Ok(Err(UserError::new("PRODUCT_ARCHIVED", "productId", "this product is no longer sold")));
            }
            sqlx::query("INSERT INTO carts (customer_id, updated_at) VALUES ($1, $2) \
                         ON CONFLICT (customer_id) DO UPDATE SET updated_at = excluded.updated_at")
                .bind(customer_id).bind(now).execute(&mut *tx).await?;
            let other: Option<String> = sqlx::query_scalar(
                "SELECT p.currency_code FROM cart_items ci JOIN carts c ON c.id = ci.cart_id JOIN products p ON p.id = ci.product_id \
                 WHERE c.customer_id = $1 AND p.currency_code <> $2 LIMIT 1")
                .bind(customer_id).bind(&currency).fetch_optional(&mut *tx).await?;
            if let Some(other) = other {
                return Ok(Err(UserError::new("CURRENCY_MISMATCH", "productId",
                    format!("the cart is priced in {other}; this product is priced in {currency}"))));
            }
            // An atomic upsert: two devices adding at once both count, and the CHECK constraint
            // (1..999) refuses a sum that is too large.
            let added = sqlx::query("INSERT INTO cart_items (cart_id, product_id, quantity, added_at) \
                         SELECT id, $2, $3, $4 FROM carts WHERE customer_id = $1 \
                         ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = cart_items.quantity + excluded.quantity")
                .bind(customer_id).bind(product_id).bind(quantity).bind(now).execute(&mut *tx).await;
            match added {
                Err(e) if is_check_violation(&e) => {
                    return Ok(Err(UserError::new("INVALID_QUANTITY", "quantity", "a cart line holds at most 999 units")));
                }
                other => other?,
            };
            tx.commit().await?;
            Ok(Ok(()))
        }.await);
        self.count_statement();
        Ok(result?)
    }

    /// Sets a line's quantity (0 removes it). `CART_LINE_NOT_FOUND` when the product is not in the cart.
    pub async fn set_cart_item(&self, customer_id: i64, product_id: i64, quantity: i64) -> AppResult<Outcome<()>> {
        self.count_statement();
        let changed = on_pool!(self, pool => if quantity == 0 {
            sqlx::query("DELETE FROM cart_items WHERE product_id = $2 AND cart_id = (SELECT id FROM carts WHERE customer_id = $1)")
                .bind(customer_id).bind(product_id).execute(pool).await.map(|r| r.rows_affected())
        } else {
            sqlx::query("UPDATE cart_items SET quantity = $3 WHERE product_id = $2 AND cart_id = (SELECT id FROM carts WHERE customer_id = $1)")
                .bind(customer_id).bind(product_id).bind(quantity).execute(pool).await.map(|r| r.rows_affected())
        })?;
        if changed == 0 {
            return Ok(Err(UserError::new("CART_LINE_NOT_FOUND", "productId", "this product is not in the cart")));
        }
        Ok(Ok(()))
    }

    /// Empties the customer's cart.
    pub async fn clear_cart(&self, customer_id: i64) -> AppResult<()> {
        self.count_statement();
        on_pool!(self, pool => sqlx::query("DELETE FROM cart_items WHERE cart_id = (SELECT id FROM carts WHERE customer_id = $1)")
            .bind(customer_id).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Places the customer's cart as an order in one transaction: replays an earlier request
    /// with the same key, takes the stock (never below zero), snapshots prices, charges through
    /// `charge`, empties the cart. A refused charge rolls everything back.
    pub async fn checkout<F, Fut>(
        &self,
        customer_id: i64,
        idempotency_key: &str,
        request_hash: &str,
        shipping_address: &str,
        charge: F,
    ) -> AppResult<Outcome<CheckoutResult>>
    where
        F: FnOnce(ChargeRequest) -> Fut + Send,
        Fut: std::future::Future<Output = PaymentOutcome> + Send,
    {
        let now = Utc::now();
        self.count_statement();
        let attempt: Result<Outcome<CheckoutResult>, sqlx::Error> = on_pool!(self, pool => async {
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
                return Err(sqlx::Error::RowNotFound);
            }
            let lines: Vec<CartLineRecord> = sqlx::query_as(CART_LINES).bind(customer_id).fetch_all(&mut *tx).await?;
            if lines.is_empty() {
                return Ok(Err(UserError::new("CART_EMPTY", "", "the cart is empty")));
            }
            if let Some(line) = lines.iter().find(|l| l.status != "ACTIVE") {
                return Ok(Err(UserError::new("PRODUCT_ARCHIVED", "", format!("{} is no longer sold", line.sku))));
            }
            let currency = lines[0].currency_code.clone();
            let subtotal: i64 = lines.iter().map(|l| l.price_amount * l.quantity).sum();
            let inserted = sqlx::query_scalar::<_, i64>(
                "INSERT INTO orders (customer_id, status, currency_code, subtotal_amount, total_amount, idempotency_key, \
                 request_hash, shipping_address, created_at, updated_at) VALUES ($1, 'PENDING', $2, $3, $3, $4, $5, $6, $7, $7) RETURNING id")
                .bind(customer_id).bind(&currency).bind(subtotal).bind(idempotency_key).bind(request_hash)
                .bind(shipping_address).bind(now)
                .fetch_one(&mut *tx).await;
            let order_id = match inserted {
                // A concurrent request with the same key got there first (PostgreSQL waits for it).
                Err(e) if is_unique_violation(&e) => return Err(sqlx::Error::RowNotFound),
                other => other?,
            };
            let mut stock = Vec::with_capacity(lines.len());
            for line in &lines {
                let left: Option<i64> = sqlx::query_scalar(TAKE_STOCK)
                    .bind(line.product_id).bind(line.quantity).bind(now).fetch_optional(&mut *tx).await?;
                let Some(available) = left else {
                    return Ok(Err(UserError::new("OUT_OF_STOCK", "",
                        format!("{} has only {} left", line.sku, line.available.min(line.quantity - 1).max(0)))));
                };
                stock.push(StockChange { product_id: line.product_id, vendor_id: line.vendor_id, available, delta: -line.quantity });
                sqlx::query("INSERT INTO order_items (order_id, product_id, vendor_id, sku, name, unit_price_amount, \
                             currency_code, quantity, line_total_amount) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                    .bind(order_id).bind(line.product_id).bind(line.vendor_id).bind(&line.sku).bind(&line.name)
                    .bind(line.price_amount).bind(&currency).bind(line.quantity).bind(line.price_amount * line.quantity)
                    .execute(&mut *tx).await?;
            }
            // The charge runs while this transaction holds the stock: a decline or a timeout
            // rolls back the order and the stock with it.
            let reference = match charge(ChargeRequest { amount: subtotal, currency: currency.clone() }).await {
                PaymentOutcome::Approved(reference) => reference,
                PaymentOutcome::Declined(reason) => {
                    return Ok(Err(UserError::new("PAYMENT_DECLINED", "input.paymentToken", format!("payment declined: {reason}"))));
                }
                PaymentOutcome::Timeout => {
                    return Ok(Err(UserError::new("PAYMENT_TIMEOUT", "input.paymentToken",
                        "the payment provider did not answer in time; nothing was charged or ordered, retry with the same idempotency key")));
                }
                PaymentOutcome::Failed(why) => {
                    tracing::warn!(reason = %why, "payment gateway failure during checkout");
                    return Ok(Err(UserError::new("PAYMENT_FAILED", "input.paymentToken",
                        "the payment provider failed; nothing was charged or ordered, retry with the same idempotency key")));
                }
            };
            sqlx::query("INSERT INTO payments (order_id, kind, status, amount, currency_code, provider_reference, idempotency_key, created_at) \
                         VALUES ($1, 'CHARGE', 'APPROVED', $2, $3, $4, $5, $6)")
                .bind(order_id).bind(subtotal).bind(&currency).bind(&reference)
                .bind(format!("checkout:{customer_id}:{idempotency_key}")).bind(now)
                .execute(&mut *tx).await?;
            sqlx::query("UPDATE orders SET status = 'PAID', payment_reference = $2, updated_at = $3 WHERE id = $1")
                .bind(order_id).bind(&reference).bind(now).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM cart_items WHERE cart_id = (SELECT id FROM carts WHERE customer_id = $1)")
                .bind(customer_id).execute(&mut *tx).await?;
            let order: OrderRecord = sqlx::query_as(ORDER_BY_ID).bind(order_id).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            for change in &stock {
                self.cache.invalidate_inventory(change.product_id);
            }
            Ok(Ok(CheckoutResult::Placed(order, stock)))
        }.await);
        match attempt {
            Ok(outcome) => Ok(outcome),
            // The key is taken: the same request replays its order, another request is refused.
            Err(sqlx::Error::RowNotFound) => self.replay_checkout(customer_id, idempotency_key, request_hash).await,
            Err(e) => Err(e.into()),
        }
    }

    async fn replay_checkout(
        &self,
        customer_id: i64,
        idempotency_key: &str,
        request_hash: &str,
    ) -> AppResult<Outcome<CheckoutResult>> {
        self.count_statement();
        let hash: Option<String> = on_pool!(self, pool => sqlx::query_scalar(ORDER_HASH)
            .bind(customer_id).bind(idempotency_key).fetch_optional(pool).await)?;
        if hash.as_deref() != Some(request_hash) {
            return Ok(Err(UserError::new(
                "IDEMPOTENCY_KEY_REUSED",
                "input.idempotencyKey",
                "this idempotency key was used for a different checkout request",
            )));
        }
        self.count_statement();
        let order: OrderRecord = on_pool!(self, pool => sqlx::query_as(ORDER_BY_KEY)
            .bind(customer_id).bind(idempotency_key).fetch_one(pool).await)?;
        Ok(Ok(CheckoutResult::Replayed(order)))
    }

    /// Moves an order within `scope` to `next`, if the status machine allows it. Cancelling puts
    /// the stock back and, for a paid order, refunds through `refund` first (a failed refund
    /// changes nothing). Out-of-scope orders are `NOT_FOUND`.
    pub async fn change_order_status<F, Fut>(
        &self,
        scope: &OrderScope,
        order_id: i64,
        next: OrderStatus,
        refund: F,
    ) -> AppResult<Outcome<StatusChange>>
    where
        F: FnOnce(String, i64, String, i64) -> Fut + Send,
        Fut: std::future::Future<Output = PaymentOutcome> + Send,
    {
        let Some(order) = self.order(scope, order_id).await? else {
            return Err(AppError::NotFound("order"));
        };
        let now = Utc::now();
        self.count_statement();
        let result: Result<Outcome<StatusChange>, sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            let current: OrderRecord = sqlx::query_as(ORDER_BY_ID).bind(order.id).fetch_one(&mut *tx).await?;
            let from = OrderStatus::parse(&current.status).unwrap_or(OrderStatus::Pending);
            if !from.can_become(next) {
                return Ok(Err(UserError::new("INVALID_TRANSITION", "id",
                    format!("an order that is {} cannot become {}", from.as_str(), next.as_str()))));
            }
            let items: Vec<OrderItemRecord> = sqlx::query_as(
                "SELECT id, order_id, product_id, vendor_id, sku, name, unit_price_amount, currency_code, quantity, \
                 line_total_amount FROM order_items WHERE order_id = $1 ORDER BY product_id")
                .bind(order.id).fetch_all(&mut *tx).await?;
            let mut vendor_ids: Vec<i64> = items.iter().map(|i| i.vendor_id).collect();
            vendor_ids.sort_unstable();
            vendor_ids.dedup();
            let mut stock = Vec::new();
            if next == OrderStatus::Cancelled {
                if from == OrderStatus::Paid {
                    let reference: Option<String> = sqlx::query_scalar("SELECT payment_reference FROM orders WHERE id = $1")
                        .bind(order.id).fetch_one(&mut *tx).await?;
                    let outcome = refund(reference.unwrap_or_default(), current.total_amount, current.currency_code.clone(), order.id).await;
                    let PaymentOutcome::Approved(refund_ref) = outcome else {
                        return Ok(Err(UserError::new("REFUND_FAILED", "id",
                            "the refund could not be made; the order is unchanged, try again")));
                    };
                    sqlx::query("INSERT INTO payments (order_id, kind, status, amount, currency_code, provider_reference, \
                                 idempotency_key, created_at) VALUES ($1, 'REFUND', 'APPROVED', $2, $3, $4, $5, $6)")
                        .bind(order.id).bind(current.total_amount).bind(&current.currency_code).bind(&refund_ref)
                        .bind(format!("refund:{}", order.id)).bind(now)
                        .execute(&mut *tx).await?;
                }
                for item in &items {
                    let available: i64 = sqlx::query_scalar(PUT_BACK_STOCK)
                        .bind(item.product_id).bind(item.quantity).bind(now).fetch_one(&mut *tx).await?;
                    stock.push(StockChange { product_id: item.product_id, vendor_id: item.vendor_id, available, delta: item.quantity });
                }
            }
            // Compare-and-set on the status: a concurrent change makes this one fail cleanly.
            let moved = sqlx::query("UPDATE orders SET status = $2, updated_at = $3 WHERE id = $1 AND status = $4")
                .bind(order.id).bind(next.as_str()).bind(now).bind(from.as_str()).execute(&mut *tx).await?;
            if moved.rows_affected() != 1 {
                return Ok(Err(UserError::new("CONFLICT", "id", "the order changed meanwhile; read it again")));
            }
            let order: OrderRecord = sqlx::query_as(ORDER_BY_ID).bind(order.id).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            for change in &stock {
                self.cache.invalidate_inventory(change.product_id);
            }
            Ok(Ok(StatusChange { order, vendor_ids, stock }))
        }.await);
        Ok(result?)
    }

    /// Creates a product with an empty inventory row.
    pub async fn create_product(
        &self,
        vendor_id: i64,
        sku: &str,
        name: &str,
        description: &str,
        price: i64,
        currency: &str,
    ) -> AppResult<Outcome<ProductRecord>> {
        let now = Utc::now();
        self.count_statement();
        let result: Result<Outcome<ProductRecord>, sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            let vendor: Option<i64> = sqlx::query_scalar("SELECT id FROM vendors WHERE id = $1").bind(vendor_id).fetch_optional(&mut *tx).await?;
            if vendor.is_none() {
                return Ok(Err(UserError::new("VENDOR_NOT_FOUND", "input.vendorId", "no such vendor")));
            }
            let inserted = sqlx::query_scalar::<_, i64>(
                "INSERT INTO products (vendor_id, sku, name, description, price_amount, currency_code, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'ACTIVE', $7, $7) RETURNING id")
                .bind(vendor_id).bind(sku).bind(name).bind(description).bind(price).bind(currency).bind(now)
                .fetch_one(&mut *tx).await;
            let id = match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Ok(Err(UserError::new("SKU_TAKEN", "input.sku", format!("SKU {sku} is already used"))));
                }
                other => other?,
            };
            sqlx::query("INSERT INTO inventory (product_id, available, reserved, updated_at) VALUES ($1, 0, 0, $2)")
                .bind(id).bind(now).execute(&mut *tx).await?;
            let product: ProductRecord = sqlx::query_as(PRODUCT_BY_ID).bind(id).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok(Ok(product))
        }.await);
        Ok(result?)
    }

    /// Changes a product's name, description and/or price (absent fields stay).
    pub async fn update_product(
        &self,
        id: i64,
        name: Option<&str>,
        description: Option<&str>,
        price: Option<(i64, &str)>,
    ) -> AppResult<Option<ProductRecord>> {
        let now = Utc::now();
        self.count_statement();
        let (amount, currency) = price.map(|(a, c)| (Some(a), Some(c))).unwrap_or((None, None));
        let row = on_pool!(self, pool => sqlx::query_as::<_, ProductRecord>(
            "UPDATE products SET name = COALESCE($2, name), description = COALESCE($3, description), \
             price_amount = COALESCE($4, price_amount), currency_code = COALESCE($5, currency_code), updated_at = $6 \
             WHERE id = $1 RETURNING id, vendor_id, sku, name, description, price_amount, currency_code, status, created_at, updated_at")
            .bind(id).bind(name).bind(description).bind(amount).bind(currency).bind(now).fetch_optional(pool).await)?;
        self.cache.invalidate_product(id);
        Ok(row)
    }

    /// Archives a product: no longer listed or sold; past orders keep pointing at it.
    pub async fn archive_product(&self, id: i64) -> AppResult<Option<ProductRecord>> {
        let now = Utc::now();
        self.count_statement();
        let row = on_pool!(self, pool => sqlx::query_as::<_, ProductRecord>(
            "UPDATE products SET status = 'ARCHIVED', updated_at = $2 WHERE id = $1 \
             RETURNING id, vendor_id, sku, name, description, price_amount, currency_code, status, created_at, updated_at")
            .bind(id).bind(now).fetch_optional(pool).await)?;
        self.cache.invalidate_product(id);
        Ok(row)
    }

    /// Sets the available stock to `quantity` only if it is `compare` now (compare-and-set).
    pub async fn set_inventory(
        &self,
        product: &ProductRecord,
        quantity: i64,
        compare: i64,
    ) -> AppResult<Outcome<StockChange>> {
        let now = Utc::now();
        self.count_statement();
        let updated: Option<i64> = on_pool!(self, pool => sqlx::query_scalar(
            "UPDATE inventory SET available = $2, updated_at = $4 WHERE product_id = $1 AND available = $3 RETURNING available")
            .bind(product.id).bind(quantity).bind(compare).bind(now).fetch_optional(pool).await)?;
        self.cache.invalidate_inventory(product.id);
        if updated.is_some() {
            return Ok(Ok(StockChange {
                product_id: product.id,
                vendor_id: product.vendor_id,
                available: quantity,
                delta: quantity - compare,
            }));
        }
        let current = self.inventory_by_product_ids(&[product.id]).await?.pop().map(|i| i.available).unwrap_or(0);
        Ok(Err(UserError::new(
            "INVENTORY_CONFLICT",
            "compareQuantity",
            format!("the available quantity is {current}, not {compare}; read it again and retry"),
        )))
    }

    /// Adds `delta` (may be negative) to the stock, once per idempotency key: a repeat with the
    /// same key and delta returns the first result; with another delta it is refused.
    pub async fn adjust_inventory(
        &self,
        product: &ProductRecord,
        delta: i64,
        idempotency_key: &str,
        actor: &str,
    ) -> AppResult<Outcome<(StockChange, bool)>> {
        let now = Utc::now();
        const EARLIER: &str = "SELECT delta, resulting_available FROM inventory_adjustments WHERE product_id = $1 AND idempotency_key = $2";
        self.count_statement();
        let result: Result<Outcome<(StockChange, bool)>, sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            let earlier: Option<(i64, i64)> = sqlx::query_as(EARLIER).bind(product.id).bind(idempotency_key).fetch_optional(&mut *tx).await?;
            if earlier.is_some() {
                return Err(sqlx::Error::RowNotFound);
            }
            let available: Option<i64> = sqlx::query_scalar(
                "UPDATE inventory SET available = available + $2, updated_at = $3 WHERE product_id = $1 AND available + $2 >= 0 RETURNING available")
                .bind(product.id).bind(delta).bind(now).fetch_optional(&mut *tx).await?;
            let Some(available) = available else {
                return Ok(Err(UserError::new("INSUFFICIENT_STOCK", "delta", "stock cannot go below zero")));
            };
            let recorded = sqlx::query("INSERT INTO inventory_adjustments (product_id, delta, idempotency_key, actor_subject, \
                                        resulting_available, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(product.id).bind(delta).bind(idempotency_key).bind(actor).bind(available).bind(now)
                .execute(&mut *tx).await;
            match recorded {
                Err(e) if is_unique_violation(&e) => return Err(sqlx::Error::RowNotFound),
                other => other?,
            };
            tx.commit().await?;
            self.cache.invalidate_inventory(product.id);
            Ok(Ok((StockChange { product_id: product.id, vendor_id: product.vendor_id, available, delta }, false)))
        }.await);
        match result {
            Ok(outcome) => Ok(outcome),
            Err(sqlx::Error::RowNotFound) => {
                self.count_statement();
                let (earlier_delta, resulting): (i64, i64) = on_pool!(self, pool => sqlx::query_as(EARLIER)
                    .bind(product.id).bind(idempotency_key).fetch_one(pool).await)?;
                if earlier_delta != delta {
                    return Ok(Err(UserError::new(
                        "IDEMPOTENCY_KEY_REUSED",
                        "idempotencyKey",
                        "this idempotency key was used for a different adjustment",
                    )));
                }
                let change =
                    StockChange { product_id: product.id, vendor_id: product.vendor_id, available: resulting, delta };
                Ok(Ok((change, true)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a vendor; the slug and the owner's subject are unique.
    pub async fn create_vendor(
        &self,
        name: &str,
        slug: &str,
        owner_subject: Option<&str>,
    ) -> AppResult<Outcome<VendorRecord>> {
        let now = Utc::now();
        self.count_statement();
        let row = on_pool!(self, pool => sqlx::query_as::<_, VendorRecord>(
            "INSERT INTO vendors (name, slug, owner_subject, created_at) VALUES ($1, $2, $3, $4) RETURNING id, name, slug, created_at")
            .bind(name).bind(slug).bind(owner_subject).bind(now).fetch_one(pool).await);
        match row {
            Ok(v) => Ok(Ok(v)),
            Err(e) if is_unique_violation(&e) => {
                Ok(Err(UserError::new("VENDOR_TAKEN", "input.slug", "a vendor with this slug or owner already exists")))
            }
            Err(e) => Err(e.into()),
        }
    }
}

const PRODUCT_BY_ID: &str = "SELECT id, vendor_id, sku, name, description, price_amount, currency_code, status, \
     created_at, updated_at FROM products WHERE id = $1";
