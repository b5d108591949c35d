//! The public catalog: products, vendors, inventory and their queries.

use async_graphql::{
    ComplexObject, Context, Enum, ErrorExtensions, ID, InputObject, InputValueError, InputValueResult, Lookahead,
    Object, Scalar, ScalarType, SimpleObject, Value,
};
use chrono::{DateTime, Utc};

use super::connection::PageInfo;
use super::loaders::Loaders;
use super::services;
use crate::auth::caller;
use crate::domain::money::{format_minor, parse_decimal};
use crate::domain::{GlobalId, NodeKind, ProductStatus};
use crate::error::{AppError, GqlResultExt};
use crate::service::catalog::{PageArgs, PriceArg, ProductFilterInput as FilterArgs, ProductPage, VendorPage};
use crate::service::inventory::may_see_reserved;
use crate::store::{InventoryRecord, ProductFilter, ProductRecord, ProductSort, VendorRecord};

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

/// A product in the catalog.
pub struct Product(pub ProductRecord);

// Cache hints for anonymous responses (the smallest in a response wins): product details may be
// cached briefly by HTTP caches; stock (Inventory) for a second.
#[Object(cache_control(max_age = 30))]
impl Product {
    /// The product's global id.
    pub(crate) async fn id(&self) -> ID {
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
        ProductStatus::stored(&self.0.status)
    }

    /// Stock levels (batched across the page: one database round trip for all products).
    async fn inventory(&self, ctx: &Context<'_>) -> async_graphql::Result<Inventory> {
        let record = ctx.data::<Loaders>()?.inventory(self.0.id).await?;
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
        let record = ctx.data::<Loaders>()?.inventory(self.0.id).await?;
        Ok(record.is_some_and(|r| r.available > 0))
    }

    /// The vendor selling this product (batched across the page).
    async fn vendor(&self, ctx: &Context<'_>) -> async_graphql::Result<Vendor> {
        let vendor = ctx.data::<Loaders>()?.vendor(self.0.vendor_id).await?;
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
        may_see_reserved(caller(ctx), self.vendor_id).gql()?;
        Ok(self.record.reserved)
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
    pub(crate) async fn id(&self) -> ID {
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
        let page = PageArgs { first, after, last, before };
        let sort = sort_by.unwrap_or_default().into();
        page_of(ctx, filter, sort, page).await
    }
}

/// Whether a product's selection (`look`) reads its stock: `inventory`, or the deprecated `inStock`.
pub(crate) fn wants_stock(look: &Lookahead<'_>) -> bool {
    look.field("inventory").exists() || look.field("inStock").exists()
}

/// A page of products with what its selection asks for beside them already loaded: stock in
/// the page's own statement, vendors in one more (see `Loaders::prime`). So a page with stock
/// and no vendor is one statement, whatever its size.
async fn page_of(
    ctx: &Context<'_>,
    filter: ProductFilter,
    sort: ProductSort,
    page: PageArgs,
) -> async_graphql::Result<ProductConnection> {
    let look = ctx.look_ahead();
    let wants = |field: &str| {
        look.field("edges").field("node").field(field).exists() || look.field("nodes").field(field).exists()
    };
    let with_stock = wants_stock(&look.field("edges").field("node")) || wants_stock(&look.field("nodes"));
    let mut page = services(ctx)?.product_page(filter, sort, page, with_stock).await.gql()?;
    let loaders = ctx.data::<Loaders>()?;
    if let Some(stock) = page.stock.take() {
        loaders.prime_stock(stock);
    }
    let connection = ProductConnection::from(page);
    loaders.prime(connection.edges.iter().map(|e| &e.node.0), wants("vendor"), false).await?;
    Ok(connection)
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

impl From<ProductFilterInput> for FilterArgs {
    fn from(f: ProductFilterInput) -> Self {
        Self {
            search: f.search,
            vendor_id: f.vendor_id.map(|id| id.0),
            min_price: f.min_price.map(|d| PriceArg::Minor(d.0)),
            max_price: f.max_price.map(|d| PriceArg::Minor(d.0)),
            in_stock: f.in_stock,
        }
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
    async fn nodes(&self) -> Vec<&Product> {
        self.edges.iter().map(|e| &e.node).collect()
    }

    /// How many products match the filter across all pages (one extra query; select it only when needed).
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        services(ctx)?.count_products(&self.filter).await.gql()
    }
}

/// A product and its cursor.
pub struct ProductEdge {
    node: Product,
    cursor: String,
}

#[Object]
impl ProductEdge {
    /// Pass to `after`/`before` to page from here.
    async fn cursor(&self) -> &str {
        &self.cursor
    }

    /// The product.
    // Lent, not copied: a page's rows are resolved where they lie.
    async fn node(&self) -> &Product {
        &self.node
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

impl From<ProductPage> for ProductConnection {
    fn from(page: ProductPage) -> Self {
        let edges: Vec<ProductEdge> =
            page.edges.into_iter().map(|(record, cursor)| ProductEdge { node: Product(record), cursor }).collect();
        let page_info = PageInfo::of(&edges, |e| &e.cursor, page.has_next_page, page.has_previous_page);
        Self { edges, page_info, filter: page.filter }
    }
}

impl From<VendorPage> for VendorConnection {
    fn from(page: VendorPage) -> Self {
        let edges: Vec<VendorEdge> =
            page.edges.into_iter().map(|(v, cursor)| VendorEdge { cursor, node: Vendor(v) }).collect();
        let page_info = PageInfo::of(&edges, |e| &e.cursor, page.has_next_page, page.has_previous_page);
        Self { edges, page_info, total_count: page.total_count }
    }
}

/// Catalog queries; anyone may run them.
#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// A product by id (archived products included). Unknown ids answer `null` with `NOT_FOUND`.
    async fn product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Product>> {
        // Stock asked for beside the product is read in the product's statement (as a page does).
        if !wants_stock(&ctx.look_ahead()) {
            return Ok(Some(Product(services(ctx)?.product(&id).await.gql()?)));
        }
        let (product, stock) = services(ctx)?.product_with_stock(&id).await.gql()?;
        ctx.data::<Loaders>()?.prime_stock([(product.id, stock)]);
        Ok(Some(Product(product)))
    }

    /// The active catalog, filtered and sorted, as a Relay connection. Page size: default 20,
    /// at most 100 (`PAGE_SIZE_EXCEEDED` above).
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
        let filter = FilterArgs::from(filter.unwrap_or_default()).validate("filter.").gql()?;
        let page = PageArgs { first, after, last, before };
        let sort = sort_by.unwrap_or_default().into();
        page_of(ctx, filter, sort, page).await
    }

    /// A vendor by id. Unknown ids answer `null` with `NOT_FOUND`.
    async fn vendor(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Vendor>> {
        Ok(Some(Vendor(services(ctx)?.vendor(&id).await.gql()?)))
    }

    /// All vendors by name, a page at a time (default 20, at most 100).
    async fn vendors(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<VendorConnection> {
        Ok(services(ctx)?.vendor_page(first, after).await.gql()?.into())
    }
}
