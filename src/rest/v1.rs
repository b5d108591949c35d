//! REST v1 (deprecated): money in minor units, order lines as a sub-resource.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::{
    BearerAuth, Ctx, Id, OrderListParams, OrderPage, PageInfo, Params, Problem, ProductListParams, ProductPage,
    cart_of, json, one_order, one_product, order_page, product_gid, product_page, with_etag,
};
use crate::domain::{GlobalId, NodeKind};
use crate::service::cart::CartView;
use crate::service::orders::{visible_subtotal, visible_total};
use crate::store::{InventoryRecord, OrderItemRecord, OrderRecord, ProductRecord, VendorRecord};

/// A product (v1).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductV1 {
    /// Global id (the same as GraphQL's).
    pub id: String,
    /// Stock-keeping unit.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Unit price in minor units (cents).
    pub price_minor: i64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// `ACTIVE` or `ARCHIVED`.
    pub status: String,
    /// The vendor's global id.
    pub vendor_id: String,
    /// Units available now.
    pub available: i64,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// A page of products (v1).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductPageV1 {
    /// The products.
    pub items: Vec<ProductV1>,
    /// Paging.
    pub page_info: PageInfo,
}

/// An order (v1). Vendors see only their share: `totalMinor` is null and `subtotalMinor`
/// covers their lines.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderV1 {
    /// Global id.
    pub id: String,
    /// `PENDING`, `PAID`, `FULFILLED`, `CANCELLED` or `REFUNDED`.
    pub status: String,
    /// Sum of the (visible) lines, minor units.
    pub subtotal_minor: i64,
    /// What the customer pays, minor units (null for vendors).
    pub total_minor: Option<i64>,
    /// ISO 4217 currency code.
    pub currency: String,
    /// Lines visible to the caller (`/v1/orders/{id}/lines` lists them).
    pub line_count: usize,
    /// Placed at (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// A page of orders (v1).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPageV1 {
    /// The orders, newest first.
    pub items: Vec<OrderV1>,
    /// Paging.
    pub page_info: PageInfo,
}

/// An order line (v1).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineV1 {
    /// The product's global id.
    pub product_id: String,
    /// SKU at checkout.
    pub sku: String,
    /// Name at checkout.
    pub name: String,
    /// Units.
    pub quantity: i64,
    /// Unit price at checkout, minor units.
    pub unit_price_minor: i64,
    /// `unitPriceMinor × quantity`.
    pub line_total_minor: i64,
    /// ISO 4217 currency code.
    pub currency: String,
}

/// The lines of an order (v1).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderLinesV1 {
    /// The lines the caller may see.
    pub items: Vec<OrderLineV1>,
}

/// A cart line (v1).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartLineV1 {
    /// The product's global id.
    pub product_id: String,
    /// Units wanted.
    pub quantity: i64,
    /// Today's unit price, minor units.
    pub unit_price_minor: i64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// Units available now.
    pub available: i64,
}

/// The caller's cart (v1).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartV1 {
    /// Lines, in product order.
    pub lines: Vec<CartLineV1>,
    /// Units across all lines.
    pub total_quantity: i64,
    /// Sum of the lines, minor units (null for an empty cart).
    pub subtotal_minor: Option<i64>,
    /// The cart's currency (null for an empty cart).
    pub currency: Option<String>,
}

pub(crate) fn product_v1(p: &ProductRecord, i: &Option<InventoryRecord>, _v: &Option<VendorRecord>) -> ProductV1 {
    ProductV1 {
        id: GlobalId::new(NodeKind::Product, p.id).encode(),
        sku: p.sku.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        price_minor: p.price_amount,
        currency: p.currency_code.clone(),
        status: p.status.clone(),
        vendor_id: GlobalId::new(NodeKind::Vendor, p.vendor_id).encode(),
        available: i.as_ref().map(|i| i.available).unwrap_or(0),
        created_at: p.created_at.to_rfc3339(),
        updated_at: p.updated_at.to_rfc3339(),
    }
}

impl From<ProductPage> for ProductPageV1 {
    fn from(page: ProductPage) -> Self {
        Self { items: page.items.iter().map(|(p, i, v)| product_v1(p, i, v)).collect(), page_info: page.page_info }
    }
}

fn order_v1(o: &OrderRecord, lines: &[OrderItemRecord], vendor: Option<i64>) -> OrderV1 {
    OrderV1 {
        id: GlobalId::new(NodeKind::Order, o.id).encode(),
        status: o.status.clone(),
        subtotal_minor: visible_subtotal(o, lines, vendor),
        total_minor: visible_total(o, vendor),
        currency: o.currency_code.clone(),
        line_count: lines.len(),
        created_at: o.created_at.to_rfc3339(),
        updated_at: o.updated_at.to_rfc3339(),
    }
}

impl From<OrderPage> for OrderPageV1 {
    fn from(page: OrderPage) -> Self {
        let items = page.items.iter().map(|(o, l)| order_v1(o, l, page.vendor_view)).collect();
        Self { items, page_info: page.page_info }
    }
}

fn order_line_v1(l: &OrderItemRecord) -> OrderLineV1 {
    OrderLineV1 {
        product_id: GlobalId::new(NodeKind::Product, l.product_id).encode(),
        sku: l.sku.clone(),
        name: l.name.clone(),
        quantity: l.quantity,
        unit_price_minor: l.unit_price_amount,
        line_total_minor: l.line_total_amount,
        currency: l.currency_code.clone(),
    }
}

impl From<CartView> for CartV1 {
    fn from(cart: CartView) -> Self {
        let (subtotal_minor, currency) = match cart.subtotal() {
            Some((sum, currency)) => (Some(sum), Some(currency.to_string())),
            None => (None, None),
        };
        let total_quantity = cart.total_quantity();
        let lines = cart
            .lines
            .iter()
            .map(|l| CartLineV1 {
                product_id: product_gid(l),
                quantity: l.quantity,
                unit_price_minor: l.price_amount,
                currency: l.currency_code.clone(),
                available: l.available,
            })
            .collect();
        Self { lines, total_quantity, subtotal_minor, currency }
    }
}

/// List the active catalog, filtered and sorted, a page at a time.
#[utoipa::path(get, path = "/v1/products", params(ProductListParams), tag = "catalog",
    responses((status = 200, body = ProductPageV1), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 410, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn products(Params(params): Params<ProductListParams>, ctx: Ctx) -> Result<Response, Problem> {
    Ok(json(ProductPageV1::from(product_page(&ctx, params).await?)))
}

/// One product (archived ones included). Carries an `ETag`; `If-None-Match` may answer 304.
#[utoipa::path(get, path = "/v1/products/{id}", params(("id" = String, Path, description = "A Product id")), tag = "catalog",
    responses((status = 200, body = ProductV1), (status = 304, description = "Not modified"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 410, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn product(Id(id): Id, ctx: Ctx, headers: HeaderMap) -> Result<Response, Problem> {
    let (p, i, v) = one_product(&ctx, &id).await?;
    Ok(with_etag(&headers, &product_v1(&p, &i, &v)))
}

/// The caller's orders, newest first (customers their own; vendors the orders with their products).
#[utoipa::path(get, path = "/v1/orders", params(OrderListParams), tag = "orders", security(("bearer" = [])),
    responses((status = 200, body = OrderPageV1), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 410, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn orders(Params(params): Params<OrderListParams>, ctx: Ctx) -> Result<Response, Problem> {
    Ok(json(OrderPageV1::from(order_page(&ctx, params).await?)))
}

/// One of the caller's orders; anyone else's answers 404 exactly like a missing one.
#[utoipa::path(get, path = "/v1/orders/{id}", params(("id" = String, Path, description = "An Order id")), tag = "orders",
    security(("bearer" = [])),
    responses((status = 200, body = OrderV1), (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 410, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn order(Id(id): Id, ctx: Ctx) -> Result<Response, Problem> {
    let (o, lines, vendor) = one_order(&ctx, &id).await?;
    Ok(json(order_v1(&o, &lines, vendor)))
}

/// The lines of one of the caller's orders (vendors: their lines only).
#[utoipa::path(get, path = "/v1/orders/{id}/lines", params(("id" = String, Path, description = "An Order id")), tag = "orders",
    security(("bearer" = [])),
    responses((status = 200, body = OrderLinesV1), (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 410, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn order_lines(Id(id): Id, ctx: Ctx) -> Result<Response, Problem> {
    let (_, lines, _) = one_order(&ctx, &id).await?;
    Ok(json(OrderLinesV1 { items: lines.iter().map(order_line_v1).collect() }))
}

/// The caller's cart (customers).
#[utoipa::path(get, path = "/v1/cart", tag = "cart", security(("bearer" = [])),
    responses((status = 200, body = CartV1), (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 410, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn cart(ctx: Ctx) -> Result<Response, Problem> {
    Ok(json(CartV1::from(cart_of(&ctx).await?)))
}

/// The v1 OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "SecureCart API v1 (deprecated)", version = "1.0.0",
         description = "Deprecated: use /v2. Money in minor units. See /api/changelog."),
    paths(products, product, orders, order, order_lines, cart),
    components(schemas(ProductV1, ProductPageV1, PageInfo, OrderV1, OrderPageV1, OrderLineV1, OrderLinesV1, CartV1, CartLineV1, Problem, super::SortBy, super::OrderStatusParam)),
    modifiers(&BearerAuth)
)]
pub struct ApiV1;

/// `GET /v1/openapi.json`.
pub async fn openapi() -> Response {
    axum::Json(ApiV1::openapi()).into_response()
}
