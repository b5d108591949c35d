//! The public catalog: products, vendors, inventory, the `Node` interface and their queries.

use async_graphql::{
    ComplexObject, Context, Enum, ErrorExtensions, ID, InputObject, InputValueError, InputValueResult, Interface,
    Object, Scalar, ScalarType, SimpleObject, Value,
};
use chrono::{DateTime, Utc};

use super::connection::{
    PageInfo, decode_keyed_cursor, decode_product_cursor, encode_keyed_cursor, encode_product_cursor, page_size,
};
use super::loaders::{Loaders, loader_error};
use crate::auth::{Role, require_identity};
use crate::config::Settings;
use crate::domain::money::{format_minor, parse_decimal};
use crate::domain::{GlobalId, NodeKind};
use crate::error::{AppError, GqlResultExt};
use crate::store::{
    InventoryRecord, PageQuery, ProductCursor, ProductFilter, ProductRecord, ProductSort, Store, VendorRecord,
};

/// A decimal amount serialised as a string, such as `"19.99"`, so no precision is lost to
/// floating point. Inputs accept up to two decimals and no sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal(pub i64);

#[Scalar]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => parse_decimal(s).map(Decimal).map_err(InputValueError::custom),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(s) if parse_decimal(s).is_ok())
    }

    fn to_value(&self) -> Value {
        Value::String(format_minor(self.0))
    }
}

/// An amount of money in one currency.
#[derive(SimpleObject, Debug, Clone)]
pub struct Money {
    /// The amount as a decimal string, e.g. `"19.99"`.
    pub amount: Decimal,
    /// The ISO 4217 currency code, e.g. `USD`.
    pub currency_code: String,
}

/// Whether a product can be bought.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductStatus {
    /// On sale.
    Active,
    /// Withdrawn from sale; still shown on past orders.
    Archived,
}

/// A product in the catalog.
pub struct Product(pub ProductRecord);

// Cache hints for anonymous responses (the smallest in a response wins): product details may be
// cached briefly by HTTP caches; stock (Inventory) for a second.
#[Object(cache_control(max_age = 30))]
impl Product {
    /// The product's global id.
    async fn id(&self) -> ID {
        ID(GlobalId::new(NodeKind::Product, self.0.id).encode())
    }

    /// Stock-keeping unit, unique across the catalog.
    async fn sku(&self) -> &str {
        &self.0.sku
    }

    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Long description (plain text).
    async fn description(&self) -> &str {
        &self.0.description
    }

    /// Current unit price.
    async fn price(&self) -> Money {
        Money { amount: Decimal(self.0.price_amount), currency_code: self.0.currency_code.clone() }
    }

    /// Whether the product is on sale.
    async fn status(&self) -> ProductStatus {
        if self.0.status == "ARCHIVED" { ProductStatus::Archived } else { ProductStatus::Active }
    }

    /// Stock levels (batched across the page: one database round trip for all products).
    async fn inventory(&self, ctx: &Context<'_>) -> async_graphql::Result<Inventory> {
        let loaders = ctx.data::<Loaders>()?;
        let record = loaders.inventory.load_one(self.0.id).await.map_err(loader_error)?;
        // A product always has an inventory row; a missing one reads as no stock.
        let record = record.unwrap_or(InventoryRecord {
            product_id: self.0.id,
            available: 0,
            reserved: 0,
            updated_at: self.0.updated_at,
        });
        Ok(Inventory { record, vendor_id: self.0.vendor_id })
    }

    /// Whether at least one unit can be bought.
    #[graphql(deprecation = "Use `inventory { inStock }`. Removed after 2027-05-24 (see CHANGELOG.md).")]
    async fn in_stock(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        crate::graphql::deprecations::used(ctx, "Product.inStock");
        let loaders = ctx.data::<Loaders>()?;
        let record = loaders.inventory.load_one(self.0.id).await.map_err(loader_error)?;
        Ok(record.is_some_and(|r| r.available > 0))
    }

    /// The vendor selling this product (batched across the page).
    async fn vendor(&self, ctx: &Context<'_>) -> async_graphql::Result<Vendor> {
        let loaders = ctx.data::<Loaders>()?;
        let vendor = loaders.vendors.load_one(self.0.vendor_id).await.map_err(loader_error)?;
        vendor
            .map(Vendor)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("product {} has no vendor", self.0.id)).extend())
    }

    /// When the product was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When the product last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// Stock levels of a product.
pub struct Inventory {
    record: InventoryRecord,
    vendor_id: i64,
}

#[Object(cache_control(max_age = 1))]
impl Inventory {
    /// Units that can be bought now.
    async fn available(&self) -> i64 {
        self.record.available
    }

    /// Whether at least one unit can be bought.
    async fn in_stock(&self) -> bool {
        self.record.available > 0
    }

    /// Units held for orders not yet fulfilled. Only the product's vendor and admins may read
    /// it (`UNAUTHENTICATED` / `FORBIDDEN` otherwise).
    async fn reserved(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        let identity = require_identity(ctx).gql()?;
        let owns = identity.has(Role::Vendor) && identity.vendor_id == Some(self.vendor_id);
        if identity.is_admin() || owns {
            Ok(self.record.reserved)
        } else {
            Err(AppError::Forbidden("only the product's vendor may see reserved stock".into()).extend())
        }
    }

    /// When the stock level last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.record.updated_at
    }
}

/// A vendor (merchant) selling in the shop.
pub struct Vendor(pub VendorRecord);

#[Object(cache_control(max_age = 300))]
impl Vendor {
    /// The vendor's global id.
    async fn id(&self) -> ID {
        ID(GlobalId::new(NodeKind::Vendor, self.0.id).encode())
    }

    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// URL-friendly unique name.
    async fn slug(&self) -> &str {
        &self.0.slug
    }

    /// When the vendor joined.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// This vendor's active products.
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        sort_by: Option<ProductSortKeys>,
    ) -> async_graphql::Result<ProductConnection> {
        let filter = ProductFilter { vendor_id: Some(self.0.id), ..Default::default() };
        product_page(ctx, filter, first, after, last, before, sort_by.unwrap_or_default()).await
    }
}

/// An object with a global id.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID", desc = "The object's global id."))]
pub enum Node {
    /// A product.
    Product(Product),
    /// A vendor.
    Vendor(Vendor),
}

/// Catalog sort orders.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProductSortKeys {
    /// Newest first.
    #[default]
    Newest,
    /// Name, A to Z.
    Name,
    /// Cheapest first.
    PriceAsc,
    /// Dearest first.
    PriceDesc,
}

impl From<ProductSortKeys> for ProductSort {
    fn from(value: ProductSortKeys) -> Self {
        match value {
            ProductSortKeys::Newest => ProductSort::Newest,
            ProductSortKeys::Name => ProductSort::NameAsc,
            ProductSortKeys::PriceAsc => ProductSort::PriceAsc,
            ProductSortKeys::PriceDesc => ProductSort::PriceDesc,
        }
    }
}

/// Narrows the catalog; all given fields must match.
#[derive(InputObject, Debug, Clone, Default)]
pub struct ProductFilterInput {
    /// Case-insensitive text found in the name or SKU.
    pub search: Option<String>,
    /// Only products of this vendor (a `Vendor` id).
    pub vendor_id: Option<ID>,
    /// Price at least this amount (in the product's currency).
    pub min_price: Option<Decimal>,
    /// Price at most this amount.
    pub max_price: Option<Decimal>,
    /// `true`: only products in stock; `false`: only products out of stock.
    pub in_stock: Option<bool>,
}

impl ProductFilterInput {
    fn into_filter(self) -> Result<ProductFilter, AppError> {
        let vendor_id = match self.vendor_id {
            Some(id) => Some(
                GlobalId::decode_as(&id, NodeKind::Vendor)
                    .ok_or_else(|| AppError::invalid_with("INVALID_ID", "filter.vendorId", "not a Vendor id"))?,
            ),
            None => None,
        };
        let search = self.search.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        if search.as_ref().is_some_and(|s| s.chars().count() > 100) {
            return Err(AppError::invalid("filter.search", "search text may be at most 100 characters"));
        }
        let (min_price, max_price) = (self.min_price.map(|d| d.0), self.max_price.map(|d| d.0));
        if let (Some(min), Some(max)) = (min_price, max_price)
            && min > max
        {
            return Err(AppError::invalid("filter.minPrice", "minPrice is above maxPrice"));
        }
        Ok(ProductFilter { search, vendor_id, min_price, max_price, in_stock: self.in_stock })
    }
}

/// A page of products.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ProductConnection {
    /// The products with their cursors.
    pub edges: Vec<ProductEdge>,
    /// Where this page sits.
    pub page_info: PageInfo,
    #[graphql(skip)]
    filter: ProductFilter,
}

#[ComplexObject]
impl ProductConnection {
    /// The products, without cursors.
    async fn nodes(&self) -> Vec<Product> {
        self.edges.iter().map(|e| Product(e.record.clone())).collect()
    }

    /// How many products match the filter across all pages (one extra query; select it only when needed).
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        ctx.data::<Store>()?.count_products(&self.filter).await.gql()
    }
}

/// A product and its cursor.
pub struct ProductEdge {
    record: ProductRecord,
    cursor: String,
}

#[Object]
impl ProductEdge {
    /// Pass to `after`/`before` to page from here.
    async fn cursor(&self) -> &str {
        &self.cursor
    }

    /// The product.
    async fn node(&self) -> Product {
        Product(self.record.clone())
    }
}

/// A page of vendors.
#[derive(SimpleObject)]
pub struct VendorConnection {
    /// The vendors with their cursors.
    pub edges: Vec<VendorEdge>,
    /// Where this page sits.
    pub page_info: PageInfo,
    /// How many vendors exist.
    pub total_count: i64,
}

/// A vendor and its cursor.
#[derive(SimpleObject)]
pub struct VendorEdge {
    /// Pass to `after` to page from here.
    pub cursor: String,
    /// The vendor.
    pub node: Vendor,
}

/// Static cost of a connection field: its page size times the cost of one item, so a client can
/// compute a query's complexity before sending it.
pub fn page_complexity(first: Option<i32>, last: Option<i32>, child: usize) -> usize {
    let n = first.or(last).unwrap_or(20).clamp(0, 100) as usize;
    1 + n.max(1) * child
}

/// Runs one product page query with the validated pagination arguments.
pub async fn product_page(
    ctx: &Context<'_>,
    filter: ProductFilter,
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
    sort: ProductSortKeys,
) -> async_graphql::Result<ProductConnection> {
    let settings = ctx.data::<std::sync::Arc<Settings>>()?;
    let store = ctx.data::<Store>()?;
    let sort: ProductSort = sort.into();
    let size = page_size(first, last, before.is_some(), &settings.limits).gql()?;
    let after = after.map(|c| decode_product_cursor("after", &c, sort)).transpose().gql()?;
    let before = before.map(|c| decode_product_cursor("before", &c, sort)).transpose().gql()?;
    let query = PageQuery { limit: size.limit, after: after.clone(), before: before.clone(), backward: size.backward };
    let mut rows = if size.limit == 0 { Vec::new() } else { store.list_products(&filter, sort, &query).await.gql()? };
    let has_more = rows.len() > size.limit as usize;
    if has_more {
        // The extra row sits beyond the page: at the end going forward, at the start going back.
        if size.backward {
            rows.remove(0)
        } else {
            rows.pop().expect("non-empty")
        };
    }
    let edges: Vec<ProductEdge> = rows
        .into_iter()
        .map(|record| {
            let cursor = encode_product_cursor(&ProductCursor::of(&record, sort), sort);
            ProductEdge { record, cursor }
        })
        .collect();
    let page_info = PageInfo {
        has_next_page: if size.backward { before.is_some() } else { has_more },
        has_previous_page: if size.backward { has_more } else { after.is_some() },
        start_cursor: edges.first().map(|e| e.cursor.clone()),
        end_cursor: edges.last().map(|e| e.cursor.clone()),
    };
    Ok(ProductConnection { edges, page_info, filter })
}

/// Catalog queries; anyone may run them.
#[derive(Default)]
pub struct CatalogQuery;

fn decode_id(field: &str, id: &ID, kind: NodeKind) -> async_graphql::Result<i64> {
    GlobalId::decode_as(id, kind).ok_or_else(|| {
        AppError::invalid_with("INVALID_ID", field, format!("`{}` is not a {kind:?} id", id.as_str())).extend()
    })
}

#[Object]
impl CatalogQuery {
    /// Fetches any object by its global id. Unknown ids answer `null` with a `NOT_FOUND` error.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        let global = GlobalId::decode(&id)
            .ok_or_else(|| AppError::invalid_with("INVALID_ID", "id", "not an id from this API").extend())?;
        let store = ctx.data::<Store>()?;
        match global.kind {
            NodeKind::Product => match store.product(global.id).await.gql()? {
                Some(p) => Ok(Some(Node::Product(Product(p)))),
                None => Err(AppError::NotFound("product").extend()),
            },
            NodeKind::Vendor => {
                let mut v = store.vendors_by_ids(&[global.id]).await.gql()?;
                match v.pop() {
                    Some(v) => Ok(Some(Node::Vendor(Vendor(v)))),
                    None => Err(AppError::NotFound("vendor").extend()),
                }
            }
            _ => Err(AppError::NotFound("node").extend()),
        }
    }

    /// A product by id (archived products included). Unknown ids answer `null` with `NOT_FOUND`.
    async fn product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Product>> {
        let id = decode_id("id", &id, NodeKind::Product)?;
        match ctx.data::<Store>()?.product(id).await.gql()? {
            Some(p) => Ok(Some(Product(p))),
            None => Err(AppError::NotFound("product").extend()),
        }
    }

    /// The active catalog, filtered and sorted, as a Relay connection. Page size: default 20,
    /// at most 100 (`PAGE_SIZE_EXCEEDED` above).
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    #[expect(clippy::too_many_arguments, reason = "GraphQL arguments map one to one onto parameters")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<ProductFilterInput>,
        #[graphql(desc = "Sort order (default `NEWEST`).")] sort_by: Option<ProductSortKeys>,
    ) -> async_graphql::Result<ProductConnection> {
        let filter = filter.unwrap_or_default().into_filter().gql()?;
        product_page(ctx, filter, first, after, last, before, sort_by.unwrap_or_default()).await
    }

    /// A vendor by id. Unknown ids answer `null` with `NOT_FOUND`.
    async fn vendor(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Vendor>> {
        let id = decode_id("id", &id, NodeKind::Vendor)?;
        let mut rows = ctx.data::<Store>()?.vendors_by_ids(&[id]).await.gql()?;
        match rows.pop() {
            Some(v) => Ok(Some(Vendor(v))),
            None => Err(AppError::NotFound("vendor").extend()),
        }
    }

    /// All vendors by name, a page at a time (default 20, at most 100).
    #[graphql(complexity = "page_complexity(first, None, child_complexity)")]
    async fn vendors(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<VendorConnection> {
        let settings = ctx.data::<std::sync::Arc<Settings>>()?;
        let store = ctx.data::<Store>()?;
        let size = page_size(first, None, false, &settings.limits).gql()?;
        let after = after.map(|c| decode_keyed_cursor("v", "after", &c)).transpose().gql()?;
        let had_after = after.is_some();
        let mut rows = store.list_vendors(after.map(|(id, name)| (name, id)), size.limit).await.gql()?;
        let has_more = rows.len() > size.limit as usize;
        rows.truncate(size.limit as usize);
        let total_count = store.count_vendors().await.gql()?;
        let edges: Vec<VendorEdge> = rows
            .into_iter()
            .map(|v| VendorEdge { cursor: encode_keyed_cursor("v", v.id, &v.name), node: Vendor(v) })
            .collect();
        let page_info = PageInfo {
            has_next_page: has_more,
            has_previous_page: had_after,
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        };
        Ok(VendorConnection { edges, page_info, total_count })
    }
}
