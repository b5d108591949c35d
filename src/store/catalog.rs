//! Catalog reads: products (filtered, sorted, keyset-paginated), vendors and inventory.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{Bind, SqlBuilder, Store, bind_all, json_ids, on_pool};
use crate::error::AppResult;

/// A product row.
#[derive(Debug, Clone, FromRow)]
pub struct ProductRecord {
    /// Row id.
    pub id: i64,
    /// Owning vendor.
    pub vendor_id: i64,
    /// Unique SKU.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Long description.
    pub description: String,
    /// Price in minor units.
    pub price_amount: i64,
    /// ISO 4217 code.
    pub currency_code: String,
    /// `ACTIVE` or `ARCHIVED`.
    pub status: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A vendor row.
#[derive(Debug, Clone, FromRow)]
pub struct VendorRecord {
    /// Row id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// URL-friendly unique name.
    pub slug: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

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

/// Catalog filters; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct ProductFilter {
    /// Case-insensitive substring of the name or SKU.
    pub search: Option<String>,
    /// Only this vendor's products.
    pub vendor_id: Option<i64>,
    /// Price at least this many minor units.
    pub min_price: Option<i64>,
    /// Price at most this many minor units.
    pub max_price: Option<i64>,
    /// `true`: only products with stock; `false`: only products without.
    pub in_stock: Option<bool>,
}

/// Catalog sort orders. Each has an index that keyset pagination walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProductSort {
    /// Newest first (by id, which grows with creation time).
    #[default]
    Newest,
    /// Name A to Z.
    NameAsc,
    /// Cheapest first.
    PriceAsc,
    /// Dearest first.
    PriceDesc,
}

/// The sort key value a cursor carries, besides the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorKey {
    /// Sorts by id only.
    None,
    /// A name.
    Text(String),
    /// A price.
    Int(i64),
}

/// A position in one sort order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductCursor {
    /// The sort key of the row at the position.
    pub key: CursorKey,
    /// The id of the row at the position.
    pub id: i64,
}

impl ProductCursor {
    /// The cursor of `product` in `sort`.
    pub fn of(product: &ProductRecord, sort: ProductSort) -> Self {
        let key = match sort {
            ProductSort::Newest => CursorKey::None,
            ProductSort::NameAsc => CursorKey::Text(product.name.clone()),
            ProductSort::PriceAsc | ProductSort::PriceDesc => CursorKey::Int(product.price_amount),
        };
        Self { key, id: product.id }
    }
}

/// One page request, already validated: rows after `after` (forward) or before `before`
/// (backward, returned in sort order all the same).
#[derive(Debug, Clone)]
pub struct PageQuery {
    /// Rows wanted; one more is fetched to learn whether there is a next page.
    pub limit: u32,
    /// Start after this position.
    pub after: Option<ProductCursor>,
    /// End before this position.
    pub before: Option<ProductCursor>,
    /// Take the last `limit` rows instead of the first.
    pub backward: bool,
}

const PRODUCT_COLUMNS: &str = "SELECT p.id, p.vendor_id, p.sku, p.name, p.description, p.price_amount, \
     p.currency_code, p.status, p.created_at, p.updated_at FROM products p";

fn push_filter(sql: &mut SqlBuilder, filter: &ProductFilter) {
    if filter.in_stock.is_some() {
        // LEFT JOIN: a product without an inventory row counts as out of stock, as `Product.inventory` shows it.
        sql.push(" LEFT JOIN inventory i ON i.product_id = p.id");
    }
    sql.push(" WHERE p.status = 'ACTIVE'");
    if let Some(search) = &filter.search {
        // Case-insensitive on both backends for ASCII; PostgreSQL's lower() also folds other
        // scripts, SQLite's does not (documented in the README).
        let pattern = format!("%{}%", escape_like(&search.to_lowercase()));
        sql.push(" AND (lower(p.name) LIKE ").bind(Bind::Text(pattern));
        sql.push(" ESCAPE '\\' OR lower(p.sku) LIKE ").rebind_last().push(" ESCAPE '\\')");
    }
    if let Some(vendor) = filter.vendor_id {
        sql.push(" AND p.vendor_id = ").bind(Bind::Int(vendor));
    }
    if let Some(min) = filter.min_price {
        sql.push(" AND p.price_amount >= ").bind(Bind::Int(min));
    }
    if let Some(max) = filter.max_price {
        sql.push(" AND p.price_amount <= ").bind(Bind::Int(max));
    }
    match filter.in_stock {
        Some(true) => sql.push(" AND COALESCE(i.available, 0) > 0"),
        Some(false) => sql.push(" AND COALESCE(i.available, 0) = 0"),
        None => sql,
    };
}

fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Keyset condition for one bound: rows strictly beyond `cursor` in the direction `ascending`.
fn push_keyset(sql: &mut SqlBuilder, sort: ProductSort, cursor: &ProductCursor, greater: bool) {
    let (column, key): (&'static str, Option<Bind>) = match (&cursor.key, sort) {
        (CursorKey::Text(name), ProductSort::NameAsc) => ("p.name", Some(Bind::Text(name.clone()))),
        (CursorKey::Int(price), ProductSort::PriceAsc | ProductSort::PriceDesc) => {
            ("p.price_amount", Some(Bind::Int(*price)))
        }
        _ => ("", None),
    };
    let op = if greater { " > " } else { " < " };
    match key {
        Some(key) => {
            // Row-value comparison: both PostgreSQL and SQLite (3.15+) use the (column, id) index.
            sql.push(" AND (").push(column).push(", p.id)").push(op).push("(").bind(key).push(", ");
            sql.bind(Bind::Int(cursor.id)).push(")");
        }
        None => {
            sql.push(" AND p.id").push(op).bind(Bind::Int(cursor.id));
        }
    }
}

impl ProductSort {
    /// Whether the sort runs in ascending key order.
    fn ascending(self) -> bool {
        matches!(self, Self::NameAsc | Self::PriceAsc)
    }

    fn order_by(self, reversed: bool) -> &'static str {
        match (self, reversed) {
            (Self::Newest, false) => " ORDER BY p.id DESC",
            (Self::Newest, true) => " ORDER BY p.id ASC",
            (Self::NameAsc, false) => " ORDER BY p.name ASC, p.id ASC",
            (Self::NameAsc, true) => " ORDER BY p.name DESC, p.id DESC",
            (Self::PriceAsc, false) => " ORDER BY p.price_amount ASC, p.id ASC",
            (Self::PriceAsc, true) => " ORDER BY p.price_amount DESC, p.id DESC",
            (Self::PriceDesc, false) => " ORDER BY p.price_amount DESC, p.id DESC",
            (Self::PriceDesc, true) => " ORDER BY p.price_amount ASC, p.id ASC",
        }
    }
}

impl Store {
    /// One page of active products: up to `page.limit + 1` rows in sort order (the extra row
    /// only tells the caller that more exist). One statement.
    pub async fn list_products(
        &self,
        filter: &ProductFilter,
        sort: ProductSort,
        page: &PageQuery,
    ) -> AppResult<Vec<ProductRecord>> {
        let mut sql = SqlBuilder::default();
        sql.push(PRODUCT_COLUMNS);
        push_filter(&mut sql, filter);
        let asc = sort.ascending();
        if let Some(after) = &page.after {
            push_keyset(&mut sql, sort, after, asc);
        }
        if let Some(before) = &page.before {
            push_keyset(&mut sql, sort, before, !asc);
        }
        sql.push(sort.order_by(page.backward)).push(" LIMIT ").bind(Bind::Int(i64::from(page.limit) + 1));
        let (sql, binds) = sql.finish();
        self.count_statement();
        let mut rows = on_pool!(self, pool => {
            bind_all!(sqlx::query_as::<_, ProductRecord>(sql), binds).fetch_all(pool).await
        })?;
        if page.backward {
            // Fetched in reverse to take the last rows; hand them back in sort order, keeping the
            // extra row (if any) first, where the caller looks for it.
            rows.reverse();
        }
        Ok(rows)
    }

    /// How many active products match `filter`. One statement.
    pub async fn count_products(&self, filter: &ProductFilter) -> AppResult<i64> {
        let mut sql = SqlBuilder::default();
        sql.push("SELECT COUNT(*) FROM products p");
        push_filter(&mut sql, filter);
        let (sql, binds) = sql.finish();
        self.count_statement();
        let count: i64 = on_pool!(self, pool => {
            bind_all!(sqlx::query_scalar::<_, i64>(sql), binds).fetch_one(pool).await
        })?;
        Ok(count)
    }

    /// A product by id, archived or not (through the cache).
    pub async fn product(&self, id: i64) -> AppResult<Option<ProductRecord>> {
        if let Some(hit) = self.cache.product(id) {
            return Ok(Some(hit));
        }
        let started = std::time::Instant::now();
        let row = self.product_uncached(id).await?;
        if let Some(p) = &row {
            self.cache.fill_product(p, started);
        }
        Ok(row)
    }

    async fn product_uncached(&self, id: i64) -> AppResult<Option<ProductRecord>> {
        const SQL: &str = "SELECT p.id, p.vendor_id, p.sku, p.name, p.description, p.price_amount, \
             p.currency_code, p.status, p.created_at, p.updated_at FROM products p WHERE p.id = $1";
        self.count_statement();
        let row = on_pool!(self, pool => sqlx::query_as::<_, ProductRecord>(SQL).bind(id).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// Vendors by id, in any order; missing ids are left out. One statement.
    pub async fn vendors_by_ids(&self, ids: &[i64]) -> AppResult<Vec<VendorRecord>> {
        self.count_statement();
        let rows = match &self.backend {
            super::Backend::Postgres(pool) => {
                sqlx::query_as::<_, VendorRecord>("SELECT id, name, slug, created_at FROM vendors WHERE id = ANY($1)")
                    .bind(ids)
                    .fetch_all(pool)
                    .await
            }
            super::Backend::Sqlite(pool) => {
                sqlx::query_as::<_, VendorRecord>(
                    "SELECT id, name, slug, created_at FROM vendors WHERE id IN (SELECT value FROM json_each($1))",
                )
                .bind(json_ids(ids))
                .fetch_all(pool)
                .await
            }
        }?;
        Ok(rows)
    }

    /// Inventory by product id, in any order (through the cache: one statement for the misses).
    pub async fn inventory_by_product_ids(&self, ids: &[i64]) -> AppResult<Vec<InventoryRecord>> {
        let mut rows = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match self.cache.inventory(*id) {
                Some(hit) => rows.push(hit),
                None => missing.push(*id),
            }
        }
        if missing.is_empty() {
            return Ok(rows);
        }
        let started = std::time::Instant::now();
        let fetched = self.inventory_uncached(&missing).await?;
        for r in &fetched {
            self.cache.fill_inventory(r, started);
        }
        rows.extend(fetched);
        Ok(rows)
    }

    async fn inventory_uncached(&self, ids: &[i64]) -> AppResult<Vec<InventoryRecord>> {
        self.count_statement();
        let rows = match &self.backend {
            super::Backend::Postgres(pool) => {
                sqlx::query_as::<_, InventoryRecord>(
                    "SELECT product_id, available, reserved, updated_at FROM inventory WHERE product_id = ANY($1)",
                )
                .bind(ids)
                .fetch_all(pool)
                .await
            }
            super::Backend::Sqlite(pool) => {
                sqlx::query_as::<_, InventoryRecord>(
                    "SELECT product_id, available, reserved, updated_at FROM inventory \
                     WHERE product_id IN (SELECT value FROM json_each($1))",
                )
                .bind(json_ids(ids))
                .fetch_all(pool)
                .await
            }
        }?;
        Ok(rows)
    }

    /// Vendors by name, a page at a time (`after` is the last id seen; names tie-break by id).
    pub async fn list_vendors(&self, after: Option<(String, i64)>, limit: u32) -> AppResult<Vec<VendorRecord>> {
        self.count_statement();
        let limit = i64::from(limit) + 1;
        let rows = on_pool!(self, pool => match &after {
            Some((name, id)) => sqlx::query_as::<_, VendorRecord>(
                "SELECT id, name, slug, created_at FROM vendors WHERE (name, id) > ($1, $2) ORDER BY name, id LIMIT $3",
            )
            .bind(name.clone()).bind(*id).bind(limit).fetch_all(pool).await,
            None => sqlx::query_as::<_, VendorRecord>(
                "SELECT id, name, slug, created_at FROM vendors ORDER BY name, id LIMIT $1",
            )
            .bind(limit).fetch_all(pool).await,
        })?;
        Ok(rows)
    }

    /// How many vendors exist.
    pub async fn count_vendors(&self) -> AppResult<i64> {
        self.count_statement();
        let n =
            on_pool!(self, pool => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM vendors").fetch_one(pool).await)?;
        Ok(n)
    }

    /// Whether the catalog has no products at all (start-up demo seeding asks this).
    pub async fn catalog_is_empty(&self) -> AppResult<bool> {
        self.count_statement();
        let any: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT id FROM products LIMIT 1").fetch_optional(pool).await
        })?;
        Ok(any.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }

    #[test]
    fn builder_numbers_parameters_and_keeps_text_out_of_sql() {
        let mut sql = SqlBuilder::default();
        sql.push(PRODUCT_COLUMNS);
        let filter = ProductFilter {
            search: Some("'; DROP TABLE products; --".into()),
            vendor_id: Some(3),
            ..Default::default()
        };
        push_filter(&mut sql, &filter);
        push_keyset(&mut sql, ProductSort::PriceAsc, &ProductCursor { key: CursorKey::Int(500), id: 9 }, true);
        let (text, binds) = sql.finish();
        assert!(!text.0.contains("DROP"), "{}", text.0);
        assert!(text.0.contains("lower(p.name) LIKE $1") && text.0.contains("lower(p.sku) LIKE $1"));
        assert!(text.0.contains("p.vendor_id = $2") && text.0.contains("(p.price_amount, p.id) > ($3, $4)"));
        assert_eq!(binds.len(), 4);
    }
}
