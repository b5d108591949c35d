//! Customers, vendor ownership and order reads, always within an ownership scope.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{Backend, Bind, ProductRecord, SqlBuilder, Store, bind_all, json_ids, on_pool};
use crate::error::AppResult;

/// A customer row: a shopper known by the identity provider's subject.
#[derive(Debug, Clone, FromRow)]
pub struct CustomerRecord {
    /// Row id.
    pub id: i64,
    /// The identity provider's `sub`.
    pub subject: String,
    /// Contact email, if known.
    pub email: Option<String>,
    /// Display name, if known.
    pub name: Option<String>,
    /// First seen.
    pub created_at: DateTime<Utc>,
}

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

const ORDER_COLUMNS: &str = "SELECT o.id, o.customer_id, o.status, o.currency_code, o.subtotal_amount, \
     o.total_amount, o.created_at, o.updated_at FROM orders o WHERE 1 = 1";

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
    /// The customer with this subject, if they have been seen.
    pub async fn customer_by_subject(&self, subject: &str) -> AppResult<Option<CustomerRecord>> {
        self.count_statement();
        let row = on_pool!(self, pool => sqlx::query_as::<_, CustomerRecord>(
            "SELECT id, subject, email, name, created_at FROM customers WHERE subject = $1",
        ).bind(subject).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// The customer with this subject, created on first sight (safe under concurrency: the
    /// unique subject makes a racing insert a no-op).
    pub async fn ensure_customer(&self, subject: &str) -> AppResult<CustomerRecord> {
        if let Some(c) = self.customer_by_subject(subject).await? {
            return Ok(c);
        }
        self.count_statement();
        on_pool!(self, pool => sqlx::query("INSERT INTO customers (subject) VALUES ($1) ON CONFLICT (subject) DO NOTHING")
            .bind(subject).execute(pool).await.map(|_| ()))?;
        self.customer_by_subject(subject)
            .await?
            .ok_or_else(|| anyhow::anyhow!("customer {subject} vanished after insert").into())
    }

    /// Customers by id (for admins' and vendors' order views).
    pub async fn customers_by_ids(&self, ids: &[i64]) -> AppResult<Vec<CustomerRecord>> {
        self.count_statement();
        let rows = match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query_as::<_, CustomerRecord>(
                    "SELECT id, subject, email, name, created_at FROM customers WHERE id = ANY($1)",
                )
                .bind(ids)
                .fetch_all(pool)
                .await
            }
            Backend::Sqlite(pool) => {
                sqlx::query_as::<_, CustomerRecord>(
                    "SELECT id, subject, email, name, created_at FROM customers WHERE id IN (SELECT value FROM json_each($1))",
                )
                .bind(json_ids(ids))
                .fetch_all(pool)
                .await
            }
        }?;
        Ok(rows)
    }

    /// The vendor whose account is linked to this subject.
    pub async fn vendor_id_for_owner(&self, subject: &str) -> AppResult<Option<i64>> {
        self.count_statement();
        let id = on_pool!(self, pool => sqlx::query_scalar::<_, i64>("SELECT id FROM vendors WHERE owner_subject = $1")
            .bind(subject).fetch_optional(pool).await)?;
        Ok(id)
    }

    /// Newest orders first within `scope`: up to `limit + 1` rows older than `before_id`.
    pub async fn list_orders(
        &self,
        scope: &OrderScope,
        status: Option<&str>,
        before_id: Option<i64>,
        limit: u32,
    ) -> AppResult<Vec<OrderRecord>> {
        let mut sql = SqlBuilder::default();
        sql.push(ORDER_COLUMNS);
        push_scope(&mut sql, scope);
        if let Some(status) = status {
            sql.push(" AND o.status = ").bind(Bind::Text(status.to_string()));
        }
        if let Some(id) = before_id {
            sql.push(" AND o.id < ").bind(Bind::Int(id));
        }
        sql.push(" ORDER BY o.id DESC LIMIT ").bind(Bind::Int(i64::from(limit) + 1));
        let (sql, binds) = sql.finish();
        self.count_statement();
        let rows =
            on_pool!(self, pool => bind_all!(sqlx::query_as::<_, OrderRecord>(sql), binds).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// How many orders `scope` sees.
    pub async fn count_orders(&self, scope: &OrderScope, status: Option<&str>) -> AppResult<i64> {
        let mut sql = SqlBuilder::default();
        sql.push("SELECT COUNT(*) FROM orders o WHERE 1 = 1");
        push_scope(&mut sql, scope);
        if let Some(status) = status {
            sql.push(" AND o.status = ").bind(Bind::Text(status.to_string()));
        }
        let (sql, binds) = sql.finish();
        self.count_statement();
        let n = on_pool!(self, pool => bind_all!(sqlx::query_scalar::<_, i64>(sql), binds).fetch_one(pool).await)?;
        Ok(n)
    }

    /// One order, if `scope` may see it (otherwise `None`, exactly as if it did not exist).
    pub async fn order(&self, scope: &OrderScope, id: i64) -> AppResult<Option<OrderRecord>> {
        let mut sql = SqlBuilder::default();
        sql.push(ORDER_COLUMNS);
        push_scope(&mut sql, scope);
        sql.push(" AND o.id = ").bind(Bind::Int(id));
        let (sql, binds) = sql.finish();
        self.count_statement();
        let row =
            on_pool!(self, pool => bind_all!(sqlx::query_as::<_, OrderRecord>(sql), binds).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// The lines of these orders (only `vendor`'s lines when given), in line order. One statement.
    pub async fn order_items(&self, order_ids: &[i64], vendor: Option<i64>) -> AppResult<Vec<OrderItemRecord>> {
        self.count_statement();
        // `$2 IS NULL` keeps one statement for both the full and the vendor's view.
        let rows = match &self.backend {
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
        }?;
        Ok(rows)
    }

    /// Products by id, archived included (order lines point at them); through the cache, one
    /// statement for the misses.
    pub async fn products_by_ids(&self, ids: &[i64]) -> AppResult<Vec<ProductRecord>> {
        let mut rows = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match self.cache.product(*id) {
                Some(hit) => rows.push(hit),
                None => missing.push(*id),
            }
        }
        if missing.is_empty() {
            return Ok(rows);
        }
        let started = std::time::Instant::now();
        let fetched = self.products_uncached(&missing).await?;
        for p in &fetched {
            self.cache.fill_product(p, started);
        }
        rows.extend(fetched);
        Ok(rows)
    }

    async fn products_uncached(&self, ids: &[i64]) -> AppResult<Vec<ProductRecord>> {
        self.count_statement();
        let rows = match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query_as::<_, ProductRecord>(
                    "SELECT p.id, p.vendor_id, p.sku, p.name, p.description, p.price_amount, p.currency_code, \
                     p.status, p.created_at, p.updated_at FROM products p WHERE p.id = ANY($1)",
                )
                    .bind(ids)
                    .fetch_all(pool)
                    .await
            }
            Backend::Sqlite(pool) => {
                sqlx::query_as::<_, ProductRecord>(
                    "SELECT p.id, p.vendor_id, p.sku, p.name, p.description, p.price_amount, p.currency_code, \
                     p.status, p.created_at, p.updated_at FROM products p WHERE p.id IN (SELECT value FROM json_each($1))",
                )
                .bind(json_ids(ids))
                .fetch_all(pool)
                .await
            }
        }?;
        Ok(rows)
    }
}

const PG_ITEMS: &str = "SELECT id, order_id, product_id, vendor_id, sku, name, unit_price_amount, currency_code, \
     quantity, line_total_amount FROM order_items WHERE order_id = ANY($1) AND ($2::bigint IS NULL OR vendor_id = $2) \
     ORDER BY order_id, id";
const SQLITE_ITEMS: &str = "SELECT id, order_id, product_id, vendor_id, sku, name, unit_price_amount, currency_code, \
     quantity, line_total_amount FROM order_items WHERE order_id IN (SELECT value FROM json_each($1)) \
     AND ($2 IS NULL OR vendor_id = $2) ORDER BY order_id, id";
