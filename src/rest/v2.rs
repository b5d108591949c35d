//! REST v2: money as `{ amount, currencyCode }`, products with vendor and inventory objects,
//! orders with their lines inline.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::{
    BearerAuth, Ctx, Id, OrderListParams, OrderPage, PageInfo, Params, Problem, ProductListParams, ProductPage,
    cart_of, json, one_order, one_product, order_page, product_gid, product_page, with_etag,
};
use crate::domain::money::format_minor;
use crate::domain::{GlobalId, NodeKind};
use crate::service::cart::CartView;
use crate::service::orders::{visible_subtotal, visible_total};
use crate::store::{InventoryRecord, OrderItemRecord, OrderRecord, ProductRecord, VendorRecord};

/// An amount of money.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoneyV2 {
    /// A decimal string, e.g. `"19.99"`.
    #[schema(example = "19.99")]
    pub amount: String,
    /// ISO 4217 currency code.
    #[schema(example = "USD")]
    pub currency_code: String,
}

fn money(minor: i64, currency: &str) -> MoneyV2 {
    MoneyV2 { amount: format_minor(minor), currency_code: currency.to_string() }
}

/// A vendor, as products show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct VendorRefV2 {
    /// Global id.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// Stock of a product.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryV2 {
    /// Units available now.
    pub available: i64,
    /// Whether at least one unit is available.
    pub in_stock: bool,
}

/// A product (v2).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductV2 {
    /// Global id (the same as GraphQL's).
    pub id: String,
    /// Stock-keeping unit.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Unit price.
    pub price: MoneyV2,
    /// `ACTIVE` or `ARCHIVED`.
    pub status: String,
    /// The vendor.
    pub vendor: Option<VendorRefV2>,
    /// Stock.
    pub inventory: InventoryV2,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// A page of products (v2).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductPageV2 {
    /// The products.
    pub items: Vec<ProductV2>,
    /// Paging.
    pub page_info: PageInfo,
}

/// An order line (v2).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineV2 {
    /// The product's global id.
    pub product_id: String,
    /// SKU at checkout.
    pub sku: String,
    /// Name at checkout.
    pub name: String,
    /// Units.
    pub quantity: i64,
    /// Unit price at checkout.
    pub unit_price: MoneyV2,
    /// `unitPrice × quantity`.
    pub line_total: MoneyV2,
}

/// An order (v2), with its lines. Vendors see only their lines, no total.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderV2 {
    /// Global id.
    pub id: String,
    /// `PENDING`, `PAID`, `FULFILLED`, `CANCELLED` or `REFUNDED`.
    pub status: String,
    /// Sum of the visible lines.
    pub subtotal: MoneyV2,
    /// What the customer pays (null for vendors).
    pub total: Option<MoneyV2>,
    /// The lines the caller may see.
    pub lines: Vec<OrderLineV2>,
    /// Placed at (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// A page of orders (v2).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPageV2 {
    /// The orders, newest first.
    pub items: Vec<OrderV2>,
    /// Paging.
    pub page_info: PageInfo,
}

/// A cart line (v2).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartLineV2 {
    /// The product's global id.
    pub product_id: String,
    /// Units wanted.
    pub quantity: i64,
    /// Today's unit price.
    pub unit_price: MoneyV2,
    /// Units available now.
    pub available: i64,
}

/// The caller's cart (v2).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartV2 {
    /// Lines, in product order.
    pub lines: Vec<CartLineV2>,
    /// Units across all lines.
    pub total_quantity: i64,
    /// Sum of the lines (null for an empty cart).
    pub subtotal: Option<MoneyV2>,
}

pub(crate) fn product_v2(p: &ProductRecord, i: &Option<InventoryRecord>, v: &Option<VendorRecord>) -> ProductV2 {
    let available = i.as_ref().map(|i| i.available).unwrap_or(0);
    ProductV2 {
        id: GlobalId::new(NodeKind::Product, p.id).encode(),
        sku: p.sku.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        price: money(p.price_amount, &p.currency_code),
        status: p.status.clone(),
        vendor: v
            .as_ref()
            .map(|v| VendorRefV2 { id: GlobalId::new(NodeKind::Vendor, v.id).encode(), name: v.name.clone() }),
        inventory: InventoryV2 { available, in_stock: available > 0 },
        created_at: p.created_at.to_rfc3339(),
        updated_at: p.updated_at.to_rfc3339(),
    }
}

impl From<ProductPage> for ProductPageV2 {
    fn from(page: ProductPage) -> Self {
        Self { items: page.items.iter().map(|(p, i, v)| product_v2(p, i, v)).collect(), page_info: page.page_info }
    }
}

impl From<OrderPage> for OrderPageV2 {
    fn from(page: OrderPage) -> Self {
        let items = page.items.iter().map(|(o, l)| order_v2(o, l, page.vendor_view)).collect();
        Self { items, page_info: page.page_info }
    }
}

impl From<CartView> for CartV2 {
    fn from(cart: CartView) -> Self {
        let subtotal = cart.subtotal().map(|(sum, currency)| money(sum, currency));
        let total_quantity = cart.total_quantity();
        let lines = cart
            .lines
            .iter()
            .map(|l| CartLineV2 {
                product_id: product_gid(l),
                quantity: l.quantity,
                unit_price: money(l.price_amount, &l.currency_code),
                available: l.available,
            })
            .collect();
        Self { lines, total_quantity, subtotal }
    }
}

fn order_v2(o: &OrderRecord, lines: &[OrderItemRecord], vendor: Option<i64>) -> OrderV2 {
    OrderV2 {
        id: GlobalId::new(NodeKind::Order, o.id).encode(),
        status: o.status.clone(),
        subtotal: money(visible_subtotal(o, lines, vendor), &o.currency_code),
        total: visible_total(o, vendor).map(|t| money(t, &o.currency_code)),
        lines: lines
            .iter()
            .map(|l| OrderLineV2 {
                product_id: GlobalId::new(NodeKind::Product, l.product_id).encode(),
                sku: l.sku.clone(),
                name: l.name.clone(),
                quantity: l.quantity,
                unit_price: money(l.unit_price_amount, &l.currency_code),
                line_total: money(l.line_total_amount, &l.currency_code),
            })
            .collect(),
        created_at: o.created_at.to_rfc3339(),
        updated_at: o.updated_at.to_rfc3339(),
    }
}

/// List the active catalog, filtered and sorted, a page at a time.
#[utoipa::path(get, path = "/v2/products", params(ProductListParams), tag = "catalog",
    responses((status = 200, body = ProductPageV2), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn products(Params(params): Params<ProductListParams>, ctx: Ctx) -> Result<Response, Problem> {
    Ok(json(ProductPageV2::from(product_page(&ctx, params).await?)))
}

/// One product (archived ones included). Carries an `ETag`; `If-None-Match` may answer 304.
#[utoipa::path(get, path = "/v2/products/{id}", params(("id" = String, Path, description = "A Product id")), tag = "catalog",
    responses((status = 200, body = ProductV2), (status = 304, description = "Not modified"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn product(Id(id): Id, ctx: Ctx, headers: HeaderMap) -> Result<Response, Problem> {
    let (p, i, v) = one_product(&ctx, &id).await?;
    Ok(with_etag(&headers, &product_v2(&p, &i, &v)))
}

/// The caller's orders with their lines, newest first.
#[utoipa::path(get, path = "/v2/orders", params(OrderListParams), tag = "orders", security(("bearer" = [])),
    responses((status = 200, body = OrderPageV2), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn orders(Params(params): Params<OrderListParams>, ctx: Ctx) -> Result<Response, Problem> {
    Ok(json(OrderPageV2::from(order_page(&ctx, params).await?)))
}

/// One of the caller's orders with its lines; anyone else's answers 404 like a missing one.
#[utoipa::path(get, path = "/v2/orders/{id}", params(("id" = String, Path, description = "An Order id")), tag = "orders",
    security(("bearer" = [])),
    responses((status = 200, body = OrderV2), (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn order(Id(id): Id, ctx: Ctx) -> Result<Response, Problem> {
    let (o, lines, vendor) = one_order(&ctx, &id).await?;
    Ok(json(order_v2(&o, &lines, vendor)))
}

/// The caller's cart (customers).
#[utoipa::path(get, path = "/v2/cart", tag = "cart", security(("bearer" = [])),
    responses((status = 200, body = CartV2), (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn cart(ctx: Ctx) -> Result<Response, Problem> {
    Ok(json(CartV2::from(cart_of(&ctx).await?)))
}

/// The v2 OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "SecureCart API v2", version = "2.0.0", description = "The catalog, orders and cart over REST. See /api/changelog."),
    paths(products, product, orders, order, cart),
    components(schemas(MoneyV2, VendorRefV2, InventoryV2, ProductV2, ProductPageV2, PageInfo, OrderLineV2, OrderV2, OrderPageV2, CartLineV2, CartV2, Problem, super::SortBy, super::OrderStatusParam)),
    modifiers(&BearerAuth)
)]
pub struct ApiV2;

/// `GET /v2/openapi.json`.
pub async fn openapi() -> Response {
    axum::Json(ApiV2::openapi()).into_response()
}
