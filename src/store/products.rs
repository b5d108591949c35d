//! Products: the catalog's rows, filtered, sorted and keyset-paginated; created, changed, archived.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::InventoryRecord;
use super::columns::product_columns;
use super::{
    Bind, SqlBuilder, Store, bind_all, is_unique_violation, on_pool, on_reader, read, select_by_ids, through_cache,
};

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

/// Catalog filters; every field narrows the result. The store takes them checked (a vendor row
/// id, prices in minor units); `service::catalog` checks them from what a client sent (the same
/// shape with the client's `Vendor` and `Price` types).
#[derive(Debug, Clone)]
pub struct ProductFilter<Vendor = i64, Price = i64> {
    /// Case-insensitive substring of the name or SKU.
    pub search: Option<String>,
    /// Only this vendor's products.
    pub vendor_id: Option<Vendor>,
    /// Price at least this.
    pub min_price: Option<Price>,
    /// Price at most this.
    pub max_price: Option<Price>,
    /// `true`: only products with stock; `false`: only products without.
    pub in_stock: Option<bool>,
}

impl<Vendor, Price> Default for ProductFilter<Vendor, Price> {
    fn default() -> Self {
        Self { search: None, vendor_id: None, min_price: None, max_price: None, in_stock: None }
    }
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

/// What creating a product came to.
#[derive(Debug, Clone)]
pub enum NewProduct {
    /// Created, with an empty inventory row.
    Created(ProductRecord),
    /// No vendor has this id.
    VendorMissing,
    /// Another product has this SKU.
    SkuTaken,
}

/// `SELECT <product columns> FROM products p`, as a literal for `concat!`.
macro_rules! product_select {
    () => {
        concat!("SELECT ", product_columns!("p."), " FROM products p")
    };
}

/// `SELECT <product columns>, <stock columns> FROM products p`, as a literal for `concat!`;
/// the statement joins `inventory i` itself.
macro_rules! product_with_stock_select {
    () => {
        concat!(
            "SELECT ",
            product_columns!("p."),
            ", i.available AS stock_available, i.reserved AS stock_reserved, i.updated_at AS stock_updated_at FROM products p"
        )
    };
}

const PRODUCT_SELECT: &str = product_select!();
const PRODUCT_WITH_STOCK_SELECT: &str = product_with_stock_select!();

/// A page row with its stock, read in the page's statement when the selection wants stock.
#[derive(FromRow)]
struct WithStock {
    #[sqlx(flatten)]
    product: ProductRecord,
    stock_available: Option<i64>,
    stock_reserved: Option<i64>,
    stock_updated_at: Option<DateTime<Utc>>,
}

impl WithStock {
    fn split(self) -> (ProductRecord, Option<InventoryRecord>) {
        let stock = match (self.stock_available, self.stock_reserved, self.stock_updated_at) {
            (Some(available), Some(reserved), Some(updated_at)) => {
                Some(InventoryRecord { product_id: self.product.id, available, reserved, updated_at })
            }
            _ => None,
        };
        (self.product, stock)
    }
}

/// `join_stock`: join the inventory (as `i`) even without an `inStock` filter.
fn push_filter(sql: &mut SqlBuilder, filter: &ProductFilter, join_stock: bool) {
    if filter.in_stock.is_some() || join_stock {
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
    /// only tells the caller that more exist), each with its stock when `with_stock` (`None`
    /// for a product without an inventory row). One statement either way.
    pub async fn list_products(
        &self,
        filter: &ProductFilter,
        sort: ProductSort,
        page: &PageQuery,
        with_stock: bool,
    ) -> sqlx::Result<Vec<(ProductRecord, Option<InventoryRecord>)>> {
        let mut sql = SqlBuilder::default();
        sql.push(if with_stock { PRODUCT_WITH_STOCK_SELECT } else { PRODUCT_SELECT });
        push_filter(&mut sql, filter, with_stock);
        let asc = sort.ascending();
        if let Some(after) = &page.after {
            push_keyset(&mut sql, sort, after, asc);
        }
        if let Some(before) = &page.before {
            push_keyset(&mut sql, sort, before, !asc);
        }
        let wanted = i64::from(page.limit) + 1;
        sql.push(sort.order_by(page.backward)).limit(wanted);
        let (sql, binds) = sql.finish();
        let mut rows: Vec<(ProductRecord, Option<InventoryRecord>)> = if with_stock {
            on_reader!(self, pool => {
                bind_all!(sqlx::query_as::<_, WithStock>(&sql), &binds).fetch_all(pool).await
            })?
            .into_iter()
            .take(wanted as usize)
            .map(WithStock::split)
            .collect()
        } else {
            on_reader!(self, pool => {
                bind_all!(sqlx::query_as::<_, ProductRecord>(&sql), &binds).fetch_all(pool).await
            })?
            .into_iter()
            .take(wanted as usize)
            .map(|p| (p, None))
            .collect()
        };
        if page.backward {
            // Fetched in reverse to take the last rows; hand them back in sort order, keeping the
            // extra row (if any) first, where the caller looks for it.
            rows.reverse();
        }
        Ok(rows)
    }

    /// How many active products match `filter`. One statement.
    pub async fn count_products(&self, filter: &ProductFilter) -> sqlx::Result<i64> {
        let mut sql = SqlBuilder::default();
        sql.push("SELECT COUNT(*) FROM products p");
        push_filter(&mut sql, filter, false);
        let (sql, binds) = sql.finish();
        let count: i64 = on_reader!(self, pool => {
            bind_all!(sqlx::query_scalar::<_, i64>(&sql), &binds).fetch_one(pool).await
        })?;
        Ok(count)
    }

    /// A product by id, archived or not (through the cache).
    pub async fn product(&self, id: i64) -> sqlx::Result<Option<ProductRecord>> {
        Ok(self.products_by_ids(&[id]).await?.pop())
    }

    /// A product by id, archived or not, with its stock (`None`: no inventory row), as
    /// `Product.inventory` wants it beside the product: one statement for both, or none when
    /// the cache holds both.
    pub async fn product_with_stock(&self, id: i64) -> sqlx::Result<Option<(ProductRecord, Option<InventoryRecord>)>> {
        if let (Some(product), Some(stock)) = (self.cache.product(id), self.cache.inventory(id)) {
            return Ok(Some((product, Some(stock))));
        }
        let started = std::time::Instant::now();
        let row = read!(self, self.cache_reader(), backend => select_by_ids!(
            backend,
            WithStock,
            concat!(product_with_stock_select!(), " LEFT JOIN inventory i ON i.product_id = p.id"),
            "p.id",
            &[id]
        ))?
        .pop()
        .map(WithStock::split);
        if let Some((product, stock)) = &row {
            self.cache.fill_product(product, started);
            if let Some(stock) = stock {
                self.cache.fill_inventory(stock, started);
            }
        }
        Ok(row)
    }

    /// Products by id, archived included (order lines point at them); through the cache, one
    /// statement for the misses.
    pub async fn products_by_ids(&self, ids: &[i64]) -> sqlx::Result<Vec<ProductRecord>> {
        let fetch = async |missing: &[i64]| {
            read!(self, self.cache_reader(), backend => {
                select_by_ids!(backend, ProductRecord, product_select!(), "p.id", missing)
            })
        };
        through_cache(ids, |id| self.cache.product(id), fetch, |p, at| self.cache.fill_product(p, at)).await
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
    ) -> sqlx::Result<NewProduct> {
        let now = Utc::now();
        on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            let vendor: Option<i64> = sqlx::query_scalar("SELECT id FROM vendors WHERE id = $1").bind(vendor_id).fetch_optional(&mut *tx).await?;
            if vendor.is_none() {
                return Ok(NewProduct::VendorMissing);
            }
            let inserted = sqlx::query_scalar::<_, i64>(
                "INSERT INTO products (vendor_id, sku, name, description, price_amount, currency_code, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'ACTIVE', $7, $7) RETURNING id")
                .bind(vendor_id).bind(sku).bind(name).bind(description).bind(price).bind(currency).bind(now)
                .fetch_one(&mut *tx).await;
            let id = match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Ok(NewProduct::SkuTaken);
                }
                other => other?,
            };
            sqlx::query("INSERT INTO inventory (product_id, available, reserved, updated_at) VALUES ($1, 0, 0, $2)")
                .bind(id).bind(now).execute(&mut *tx).await?;
            let product: ProductRecord = sqlx::query_as(concat!("SELECT ", product_columns!(""), " FROM products WHERE id = $1"))
                .bind(id).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok(NewProduct::Created(product))
        }.await)
    }

    /// Changes a product's name, description and/or price (absent fields stay).
    pub async fn update_product(
        &self,
        id: i64,
        name: Option<&str>,
        description: Option<&str>,
        price: Option<(i64, &str)>,
    ) -> sqlx::Result<Option<ProductRecord>> {
        let now = Utc::now();
        let (amount, currency) = price.map(|(a, c)| (Some(a), Some(c))).unwrap_or((None, None));
        let row = on_pool!(self, pool => sqlx::query_as::<_, ProductRecord>(concat!(
            "UPDATE products SET name = COALESCE($2, name), description = COALESCE($3, description), \
             price_amount = COALESCE($4, price_amount), currency_code = COALESCE($5, currency_code), updated_at = $6 \
             WHERE id = $1 RETURNING ", product_columns!("")))
            .bind(id).bind(name).bind(description).bind(amount).bind(currency).bind(now).fetch_optional(pool).await)?;
        self.cache.invalidate_product(id);
        Ok(row)
    }

    /// Archives a product: no longer listed or sold; past orders keep pointing at it.
    pub async fn archive_product(&self, id: i64) -> sqlx::Result<Option<ProductRecord>> {
        let now = Utc::now();
        let row = on_pool!(self, pool => sqlx::query_as::<_, ProductRecord>(concat!(
            "UPDATE products SET status = 'ARCHIVED', updated_at = $2 WHERE id = $1 \
             RETURNING ", product_columns!("")))
            .bind(id).bind(now).fetch_optional(pool).await)?;
        self.cache.invalidate_product(id);
        Ok(row)
    }

    /// Whether the catalog has no products at all (start-up demo seeding asks this).
    pub async fn catalog_is_empty(&self) -> sqlx::Result<bool> {
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
        sql.push(PRODUCT_SELECT);
        let filter = ProductFilter {
            search: Some("'; DROP TABLE products; --".into()),
            vendor_id: Some(3),
            ..Default::default()
        };
        push_filter(&mut sql, &filter, false);
        push_keyset(&mut sql, ProductSort::PriceAsc, &ProductCursor { key: CursorKey::Int(500), id: 9 }, true);
        let (text, binds) = sql.finish();
        assert!(!text.0.contains("DROP"), "{}", text.0);
        assert!(text.0.contains("lower(p.name) LIKE $1") && text.0.contains("lower(p.sku) LIKE $1"));
        assert!(text.0.contains("p.vendor_id = $2") && text.0.contains("(p.price_amount, p.id) > ($3, $4)"));
        assert_eq!(binds.len(), 4);
    }
}
