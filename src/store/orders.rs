//! Orders: reads always within an ownership scope, and status changes (cancel, fulfil).

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::columns::{order_columns, order_item_columns};
use super::inventory::StockChange;
use super::outbox::record_events;
use super::products::ProductRecord;
use super::{Backend, Bind, ProviderStep, SqlBuilder, Store, bind_all, json_ids, on_pool, on_reader, read};
use crate::domain::event::Event;
use crate::domain::order::OrderStatus;

/// An order row.
#[derive(Debug, Clone, FromRow)]
pub struct OrderRecord {
    /// Row id.
    pub id: i64,
    /// The customer who placed it.
    pub customer_id: i64,
    /// `PENDING`, `PAID`, `FULFILLED`, `CANCELLED` or `REFUNDED`.
    pub status: String,
    /// ISO 4217 code of every amount on the order.
    pub currency_code: String,
    /// Sum of line totals, minor units.
    pub subtotal_amount: i64,
    /// What the customer pays, minor units.
    pub total_amount: i64,
    /// Placed at.
    pub created_at: DateTime<Utc>,
    /// Last status change.
    pub updated_at: DateTime<Utc>,
}

/// An order line: a snapshot of the product at checkout.
#[derive(Debug, Clone, FromRow)]
pub struct OrderItemRecord {
    /// Row id.
    pub id: i64,
    /// The order.
    pub order_id: i64,
    /// The product bought.
    pub product_id: i64,
    /// The vendor who sells it.
    pub vendor_id: i64,
    /// SKU at checkout.
    pub sku: String,
    /// Name at checkout.
    pub name: String,
    /// Unit price at checkout, minor units.
    pub unit_price_amount: i64,
    /// Currency.
    pub currency_code: String,
    /// Units.
    pub quantity: i64,
    /// `unit_price_amount * quantity`.
    pub line_total_amount: i64,
}

/// Whose orders a query may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderScope {
    /// One customer's orders.
    Customer(i64),
    /// The orders of the customer with this identity-provider subject (no lookup first: the
    /// scope is a subquery, so a customer's order list is one statement).
    CustomerSubject(std::sync::Arc<str>),
    /// Orders with at least one line of this vendor's products.
    Vendor(i64),
    /// Every order (admins).
    All,
}

const ORDER_COLUMNS: &str = concat!("SELECT ", order_columns!("o."), " FROM orders o WHERE 1 = 1");
const ORDER_BY_ID: &str = concat!("SELECT ", order_columns!(""), " FROM orders WHERE id = $1");
const PUT_BACK_STOCK: &str = "UPDATE inventory SET available = available + $2, \
     reserved = CASE WHEN reserved > $2 THEN reserved - $2 ELSE 0 END, updated_at = $3 WHERE product_id = $1 RETURNING available";
/// Units leave `reserved` when their order stops holding them (fulfilled, refunded).
const RELEASE_RESERVED: &str = "UPDATE inventory SET reserved = CASE WHEN reserved > $2 THEN reserved - $2 ELSE 0 END, \
     updated_at = $3 WHERE product_id = $1";

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

/// What a status change came to.
#[derive(Debug, Clone)]
pub enum StatusMove<E> {
    /// Moved.
    Moved(StatusChange),
    /// No such order within the scope.
    NotFound,
    /// The status machine does not allow `from` to become the wanted status.
    NotAllowed {
        /// The status now.
        from: OrderStatus,
    },
    /// The refund step refused; nothing changed.
    RefundRefused(E),
    /// The order changed meanwhile; nothing changed.
    Conflict,
}

/// What the refund step of a cancellation is asked to do.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// The order.
    pub order_id: i64,
    /// The charge's provider reference.
    pub reference: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
}

fn push_scope(sql: &mut SqlBuilder, scope: &OrderScope) {
    match scope {
        OrderScope::Customer(id) => {
            sql.push(" AND o.customer_id = ").bind(Bind::Int(*id));
        }
        OrderScope::CustomerSubject(subject) => {
            sql.push(" AND o.customer_id = (SELECT id FROM customers WHERE subject = ")
                .bind(Bind::Text(subject.to_string()))
                .push(")");
        }
        OrderScope::Vendor(id) => {
            sql.push(" AND EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND i.vendor_id = ")
                .bind(Bind::Int(*id))
                .push(")");
        }
        OrderScope::All => {}
    }
}

impl Store {
    /// Newest orders first within `scope`: up to `limit + 1` rows older than `before_id`.
    pub async fn list_orders(
        &self,
        scope: &OrderScope,
        status: Option<&str>,
        before_id: Option<i64>,
        limit: u32,
    ) -> sqlx::Result<Vec<OrderRecord>> {
        let mut sql = SqlBuilder::default();
        sql.push(ORDER_COLUMNS);
        push_scope(&mut sql, scope);
        if let Some(status) = status {
            sql.push(" AND o.status = ").bind(Bind::Text(status.to_string()));
        }
        if let Some(id) = before_id {
            sql.push(" AND o.id < ").bind(Bind::Int(id));
        }
        let wanted = i64::from(limit) + 1;
        sql.push(" ORDER BY o.id DESC").limit(wanted);
        let (sql, binds) = sql.finish();
        let mut rows =
            on_reader!(self, pool => bind_all!(sqlx::query_as::<_, OrderRecord>(&sql), &binds).fetch_all(pool).await)?;
        rows.truncate(wanted as usize);
        Ok(rows)
    }

    /// How many orders `scope` sees.
    pub async fn count_orders(&self, scope: &OrderScope, status: Option<&str>) -> sqlx::Result<i64> {
        let mut sql = SqlBuilder::default();
        sql.push("SELECT COUNT(*) FROM orders o WHERE 1 = 1");
        push_scope(&mut sql, scope);
        if let Some(status) = status {
            sql.push(" AND o.status = ").bind(Bind::Text(status.to_string()));
        }
        let (sql, binds) = sql.finish();
        let n = on_reader!(self, pool => bind_all!(sqlx::query_scalar::<_, i64>(&sql), &binds).fetch_one(pool).await)?;
        Ok(n)
    }

    /// One order, if `scope` may see it (otherwise `None`, exactly as if it did not exist).
    pub async fn order(&self, scope: &OrderScope, id: i64) -> sqlx::Result<Option<OrderRecord>> {
        let mut sql = SqlBuilder::default();
        sql.push(ORDER_COLUMNS);
        push_scope(&mut sql, scope);
        sql.push(" AND o.id = ").bind(Bind::Int(id));
        let (sql, binds) = sql.finish();
        let row = on_reader!(self, pool => bind_all!(sqlx::query_as::<_, OrderRecord>(&sql), &binds).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// The lines of these orders (only `vendor`'s lines when given), in line order. One statement.
    pub async fn order_items(&self, order_ids: &[i64], vendor: Option<i64>) -> sqlx::Result<Vec<OrderItemRecord>> {
        // `$2 IS NULL` keeps one statement for both the full and the vendor's view.
        let rows = read!(self, self.reader(), backend => match backend {
            Backend::Postgres(pool) => {
                sqlx::query_as::<_, OrderItemRecord>(PG_ITEMS).bind(order_ids).bind(vendor).fetch_all(pool).await
            }
            Backend::Sqlite(pool) => {
                sqlx::query_as::<_, OrderItemRecord>(SQLITE_ITEMS)
                    .bind(json_ids(order_ids))
                    .bind(vendor)
                    .fetch_all(pool)
                    .await
            }
        })?;
        Ok(rows)
    }

    /// The lines of these orders, each with its product as it is today (archived included), in
    /// one statement: what a page of orders with `lines { product { ... } }` needs.
    pub async fn order_items_with_products(
        &self,
        order_ids: &[i64],
        vendor: Option<i64>,
    ) -> sqlx::Result<Vec<(OrderItemRecord, ProductRecord)>> {
        let rows = read!(self, self.reader(), backend => match backend {
            Backend::Postgres(pool) => {
                sqlx::query_as::<_, ItemWithProduct>(PG_ITEMS_WITH_PRODUCTS)
                    .bind(order_ids)
                    .bind(vendor)
                    .fetch_all(pool)
                    .await
            }
            Backend::Sqlite(pool) => {
                sqlx::query_as::<_, ItemWithProduct>(SQLITE_ITEMS_WITH_PRODUCTS)
                    .bind(json_ids(order_ids))
                    .bind(vendor)
                    .fetch_all(pool)
                    .await
            }
        })?;
        Ok(rows.into_iter().map(ItemWithProduct::split).collect())
    }

    /// Moves an order within `scope` to `next`, if the status machine allows it. Cancelling puts
    /// the stock back and, for a paid order, refunds through `refund` first (a failed refund
    /// changes nothing). Out-of-scope orders are `NOT_FOUND`.
    pub async fn change_order_status<E: Send>(
        &self,
        scope: &OrderScope,
        order_id: i64,
        next: OrderStatus,
        refund: impl ProviderStep<RefundRequest, E>,
    ) -> sqlx::Result<StatusMove<E>> {
        let Some(order) = self.order(scope, order_id).await? else {
            return Ok(StatusMove::NotFound);
        };
        let now = chrono::Utc::now();
        on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            // Lock the order row first (a no-op update, valid on both databases), as checkout's
            // settling does: the two then queue on the order instead of deadlocking on its stock.
            sqlx::query("UPDATE orders SET updated_at = updated_at WHERE id = $1").bind(order.id).execute(&mut *tx).await?;
            let current: OrderRecord = sqlx::query_as(ORDER_BY_ID).bind(order.id).fetch_one(&mut *tx).await?;
            let from = OrderStatus::parse(&current.status).unwrap_or(OrderStatus::Pending);
            if !from.can_become(next) {
                return Ok(StatusMove::NotAllowed { from });
            }
            let items: Vec<OrderItemRecord> = sqlx::query_as(
                concat!("SELECT ", order_item_columns!(), " FROM order_items WHERE order_id = $1 ORDER BY product_id"))
                .bind(order.id).fetch_all(&mut *tx).await?;
            let mut vendor_ids: Vec<i64> = items.iter().map(|i| i.vendor_id).collect();
            vendor_ids.sort_unstable();
            vendor_ids.dedup();
            let mut stock = Vec::new();
            if next == OrderStatus::Cancelled {
                if from == OrderStatus::Paid {
                    let reference: Option<String> = sqlx::query_scalar("SELECT payment_reference FROM orders WHERE id = $1")
                        .bind(order.id).fetch_one(&mut *tx).await?;
                    let request = RefundRequest {
                        order_id: order.id,
                        reference: reference.unwrap_or_default(),
                        amount: current.total_amount,
                        currency: current.currency_code.clone(),
                    };
                    let refund_ref = match refund.run(request).await {
                        Ok(reference) => reference,
                        Err(refused) => return Ok(StatusMove::RefundRefused(refused)),
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
            } else if from.holds_stock() && !next.holds_stock() {
                for item in &items {
                    sqlx::query(RELEASE_RESERVED).bind(item.product_id).bind(item.quantity).bind(now).execute(&mut *tx).await?;
                }
            }
            // Compare-and-set on the status: a concurrent change makes this one fail cleanly.
            let moved = sqlx::query("UPDATE orders SET status = $2, updated_at = $3 WHERE id = $1 AND status = $4")
                .bind(order.id).bind(next.as_str()).bind(now).bind(from.as_str()).execute(&mut *tx).await?;
            if moved.rows_affected() != 1 {
                return Ok(StatusMove::Conflict);
            }
            let order: OrderRecord = sqlx::query_as(ORDER_BY_ID).bind(order.id).fetch_one(&mut *tx).await?;
            let status = Event::OrderStatus {
                order_id: order.id, customer_id: order.customer_id, vendor_ids: vendor_ids.clone(), status: order.status.clone(), at: now,
            };
            let recorded = record_events!(tx, stock.iter().map(|c| c.event(now)).chain([status]), now)?;
            tx.commit().await?;
            // Available or reserved units changed.
            for item in &items {
                self.cache.invalidate_inventory(item.product_id);
            }
            self.committed(recorded);
            Ok(StatusMove::Moved(StatusChange { order, vendor_ids, stock }))
        }.await)
    }
}

const PG_ITEMS: &str = concat!(
    "SELECT ",
    order_item_columns!(),
    " FROM order_items WHERE order_id = ANY($1) AND ($2::bigint IS NULL OR vendor_id = $2) ORDER BY order_id, id"
);
/// An order line joined with its product (products are never deleted, only archived).
#[derive(FromRow)]
struct ItemWithProduct {
    #[sqlx(flatten)]
    item: OrderItemRecord,
    p_vendor_id: i64,
    p_sku: String,
    p_name: String,
    p_description: String,
    p_price_amount: i64,
    p_currency_code: String,
    p_status: String,
    p_created_at: DateTime<Utc>,
    p_updated_at: DateTime<Utc>,
}

impl ItemWithProduct {
    fn split(self) -> (OrderItemRecord, ProductRecord) {
        let product = ProductRecord {
            id: self.item.product_id,
            vendor_id: self.p_vendor_id,
            sku: self.p_sku,
            name: self.p_name,
            description: self.p_description,
            price_amount: self.p_price_amount,
            currency_code: self.p_currency_code,
            status: self.p_status,
            created_at: self.p_created_at,
            updated_at: self.p_updated_at,
        };
        (self.item, product)
    }
}

macro_rules! items_with_products {
    ($where:literal) => {
        concat!(
            "SELECT ",
            order_item_columns!("oi."),
            ", p.vendor_id AS p_vendor_id, p.sku AS p_sku, p.name AS p_name, p.description AS p_description, \
             p.price_amount AS p_price_amount, p.currency_code AS p_currency_code, p.status AS p_status, \
             p.created_at AS p_created_at, p.updated_at AS p_updated_at \
             FROM order_items oi JOIN products p ON p.id = oi.product_id WHERE ",
            $where,
            " ORDER BY oi.order_id, oi.id"
        )
    };
}
const PG_ITEMS_WITH_PRODUCTS: &str =
    items_with_products!("oi.order_id = ANY($1) AND ($2::bigint IS NULL OR oi.vendor_id = $2)");
const SQLITE_ITEMS_WITH_PRODUCTS: &str =
    items_with_products!("oi.order_id IN (SELECT value FROM json_each($1)) AND ($2 IS NULL OR oi.vendor_id = $2)");

const SQLITE_ITEMS: &str = concat!(
    "SELECT ",
    order_item_columns!(),
    " FROM order_items WHERE order_id IN (SELECT value FROM json_each($1)) AND ($2 IS NULL OR vendor_id = $2) \
     ORDER BY order_id, id"
);
