//! The REST API beside GraphQL, over the same store, identity, limits and budgets.
//!
//! - Versions: the path is canonical (`/v1/...`, `/v2/...`). The unversioned `/api/...` paths
//!   pick a version from the `X-API-Version` header or the `version` query parameter, and
//!   default to 1 (so a client that never chose is never moved by surprise); every response
//!   says which it got in `API-Version`.
//! - `/v2` changes the representation: money is `{ amount, currencyCode }` (a decimal string)
//!   instead of minor units, products carry their vendor and inventory as objects, and orders
//!   carry their lines inline (v1 has `/v1/orders/{id}/lines`). `CHANGELOG.md` records it.
//! - Deprecation: a deprecated version answers with `Deprecation` (RFC 9745), `Sunset` (RFC 8594)
//!   and a `Link` to the migration notes (`/api/changelog`); after its sunset it answers 410 with
//!   a problem body. v1 is deprecated as of `SECURECART_API_V1_DEPRECATED` (default
//!   2026-11-24), sunset `SECURECART_API_V1_SUNSET` (default six months later).
//! - Errors are RFC 9457 `application/problem+json` with the GraphQL codes; product reads carry
//!   an `ETag` and honour `If-None-Match` (304).
//! - Each request is billed to the caller's cost budget (1 per object returned) like GraphQL.

pub mod context;
pub mod problem;
pub mod v1;
pub mod v2;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, ToSchema};

pub use context::{Ctx, Id, Params};
pub use problem::Problem;

use crate::config::ApiSettings;
use crate::error::AppError;
use crate::service::catalog::{PriceArg, ProductDetails, ProductFilterInput, sort_named};
use crate::service::orders::{order_scope, status_named, vendor_view};
use crate::service::pagination::page_size;
use crate::state::AppState;
use crate::store::{CartLineRecord, OrderItemRecord, OrderRecord};
use context::{Blanks, drop_blank};

/// An API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Minor-unit money, lines by sub-resource (deprecated).
    V1,
    /// Money objects, lines inline.
    V2,
}

impl Version {
    fn number(self) -> &'static str {
        match self {
            Self::V1 => "1",
            Self::V2 => "2",
        }
    }
}

/// Where a page sits.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    /// Whether another page follows.
    pub has_next_page: bool,
    /// Pass as `after` for the next page.
    pub end_cursor: Option<String>,
}

/// Declares the bearer token scheme.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// Query parameters of the product list (the GraphQL catalog filters).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ProductListParams {
    /// Page size (default 20, at most 100).
    #[param(minimum = 0, maximum = 100)]
    pub first: Option<i32>,
    /// A cursor from `pageInfo.endCursor`.
    pub after: Option<String>,
    /// Text in the name or SKU.
    pub search: Option<String>,
    /// Only this vendor's products (a Vendor id).
    pub vendor_id: Option<String>,
    /// Price at least this decimal amount.
    #[param(pattern = r"^[0-9]{1,15}(\.[0-9]{1,2})?$")]
    pub min_price: Option<String>,
    /// Price at most this decimal amount.
    #[param(pattern = r"^[0-9]{1,15}(\.[0-9]{1,2})?$")]
    pub max_price: Option<String>,
    /// Only products in (true) or out of (false) stock.
    pub in_stock: Option<bool>,
    /// Sort order (default `NEWEST`).
    #[param(value_type = Option<SortBy>)]
    pub sort_by: Option<String>,
}

/// Catalog sort orders.
#[derive(utoipa::ToSchema)]
#[expect(non_camel_case_types, reason = "documents the accepted values exactly as sent")]
pub enum SortBy {
    /// Newest first.
    NEWEST,
    /// Name A to Z.
    NAME,
    /// Cheapest first.
    PRICE_ASC,
    /// Dearest first.
    PRICE_DESC,
}

/// Order statuses.
#[derive(utoipa::ToSchema)]
pub enum OrderStatusParam {
    /// Placed, not paid.
    PENDING,
    /// Paid.
    PAID,
    /// Shipped.
    FULFILLED,
    /// Cancelled.
    CANCELLED,
    /// Refunded.
    REFUNDED,
}

/// Query parameters of a list of orders.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct OrderListParams {
    /// Page size (default 20, at most 100).
    #[param(minimum = 0, maximum = 100)]
    pub first: Option<i32>,
    /// A cursor from `pageInfo.endCursor`.
    pub after: Option<String>,
    /// Only orders in this status.
    #[param(value_type = Option<OrderStatusParam>)]
    pub status: Option<String>,
}

/// A page of products with what their representations need.
pub struct ProductPage {
    /// The products.
    pub items: Vec<ProductDetails>,
    /// Paging.
    pub page_info: PageInfo,
}

/// A page of orders with their (scoped) lines.
pub struct OrderPage {
    /// Orders, each with the lines the caller may see.
    pub items: Vec<(OrderRecord, Vec<OrderItemRecord>)>,
    /// The vendor whose view this is, if any.
    pub vendor_view: Option<i64>,
    /// Paging.
    pub page_info: PageInfo,
}

/// The product page of `params`, billed one point per product asked for (plus one).
async fn product_page(ctx: &Ctx, params: ProductListParams) -> Result<ProductPage, Problem> {
    let size = page_size(params.first, None, false, &ctx.settings().limits)?;
    let sort = sort_named(params.sort_by.as_deref())?;
    let filter = ProductFilterInput {
        search: params.search,
        vendor_id: params.vendor_id,
        min_price: params.min_price.map(PriceArg::Text),
        max_price: params.max_price.map(PriceArg::Text),
        in_stock: params.in_stock,
    }
    .validate("")?;
    ctx.bill(1 + u64::from(size.limit)).await?;
    let args = crate::service::catalog::PageArgs { first: params.first, after: params.after, ..Default::default() };
    // Stock in the page's statement, the page's vendors in one more.
    let mut page = ctx.services().product_page(filter, sort, args, true).await?;
    let end_cursor = page.edges.last().map(|(_, c)| c.clone());
    let stock = page.stock.take().unwrap_or_default();
    let rows = page
        .edges
        .into_iter()
        .zip(stock)
        .map(|((p, _), (id, i))| {
            debug_assert_eq!(p.id, id, "stock is in the page's order");
            (p, i)
        })
        .collect();
    let items = ctx.services().with_vendors(rows).await?;
    Ok(ProductPage { items, page_info: PageInfo { has_next_page: page.has_next_page, end_cursor } })
}

/// One product; a malformed id is a 404 like an unknown one.
async fn one_product(ctx: &Ctx, id: &str) -> Result<ProductDetails, Problem> {
    ctx.bill(1).await?;
    // The product with its stock in one statement, its vendor in one more.
    let row = ctx.services().product_with_stock(id).await.map_err(|e| match e {
        AppError::Invalid { .. } => AppError::NotFound("product"),
        other => other,
    })?;
    Ok(ctx.services().with_vendors(vec![row]).await?.remove(0))
}

/// The caller's orders of `params`, with the lines they may see.
async fn order_page(ctx: &Ctx, params: OrderListParams) -> Result<OrderPage, Problem> {
    order_scope(&ctx.caller)?;
    let size = page_size(params.first, None, false, &ctx.settings().limits)?;
    let status = status_named(params.status.as_deref())?;
    ctx.bill(1 + u64::from(size.limit)).await?;
    let page = ctx.services().order_page(&ctx.caller, params.first, params.after, status).await?;
    let end_cursor = page.edges.last().map(|(_, c)| c.clone());
    let orders = page.edges.into_iter().map(|(o, _)| o).collect();
    let items = ctx.services().order_lines(orders, &page.scope).await?;
    let page_info = PageInfo { has_next_page: page.has_next_page, end_cursor };
    Ok(OrderPage { items, vendor_view: vendor_view(&page.scope), page_info })
}

/// One of the caller's orders with the lines they may see, and the vendor whose view it is.
async fn one_order(ctx: &Ctx, id: &str) -> Result<(OrderRecord, Vec<OrderItemRecord>, Option<i64>), Problem> {
    order_scope(&ctx.caller)?;
    ctx.bill(1).await?;
    let (order, scope) = ctx.services().order(&ctx.caller, id).await?;
    let (order, lines) = ctx.services().order_lines(vec![order], &scope).await?.remove(0);
    Ok((order, lines, vendor_view(&scope)))
}

/// The caller's cart (customers).
async fn cart_of(ctx: &Ctx) -> Result<crate::service::cart::CartView, Problem> {
    crate::service::require_role(&ctx.caller, &[crate::auth::Role::Customer])?;
    ctx.bill(1).await?;
    Ok(ctx.services().cart(&ctx.caller).await?)
}

/// A JSON body.
fn json<T: Serialize>(value: T) -> Response {
    axum::Json(value).into_response()
}

/// A cart line's product id, as every representation shows it.
fn product_gid(line: &CartLineRecord) -> String {
    crate::domain::GlobalId::new(crate::domain::NodeKind::Product, line.product_id).encode()
}

/// A JSON body with a strong ETag; 304 when the client's `If-None-Match` already has it.
fn with_etag(headers: &HeaderMap, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let tag = format!("\"{}\"", &format!("{:x}", Sha256::digest(&bytes))[..32]);
    let matches = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|t| t.trim() == tag || t.trim() == "*" || t.trim().trim_start_matches("W/") == tag)
    });
    let etag = HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"\""));
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    ([(header::ETAG, etag), (header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes)
        .into_response()
}

/// The version layer: adds `API-Version` and, for a deprecated version, the deprecation
/// headers; refuses a version past its sunset with 410 before the handler runs.
async fn versioned(State((version, api)): State<(Version, ApiSettings)>, request: Request, next: Next) -> Response {
    let now = chrono::Utc::now();
    let with_token = request.headers().contains_key(header::AUTHORIZATION);
    if version == Version::V1 && now >= api.v1_sunset() {
        let mut r = Problem::new(
            StatusCode::GONE,
            "API_VERSION_SUNSET",
            format!("API v1 was retired on {}; use /v2 (see /api/changelog)", api.v1_sunset().to_rfc2822()),
        )
        .into_response();
        deprecation_headers(&mut r, &api);
        return r;
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("api-version", HeaderValue::from_static(version.number()));
    // What a caller with a token sees is theirs: no shared cache may keep it, and a cache
    // must not answer one caller with another's response.
    headers.insert(header::VARY, HeaderValue::from_static("Authorization"));
    if with_token {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    }
    if version == Version::V1 && now >= api.v1_deprecated {
        deprecation_headers(&mut response, &api);
    }
    response
}

fn deprecation_headers(response: &mut Response, api: &ApiSettings) {
    let headers = response.headers_mut();
    headers.insert("api-version", HeaderValue::from_static("1"));
    if let Ok(v) = HeaderValue::from_str(&format!("@{}", api.v1_deprecated.timestamp())) {
        headers.insert("deprecation", v);
    }
    if let Ok(v) = HeaderValue::from_str(&api.v1_sunset().format("%a, %d %b %Y %H:%M:%S GMT").to_string()) {
        headers.insert("sunset", v);
    }
    headers.insert(
        header::LINK,
        HeaderValue::from_static("</api/changelog#v1-to-v2>; rel=\"deprecation\"; type=\"text/markdown\""),
    );
}

/// `X-API-Version` or `?version=` for the unversioned `/api/...` paths (default 1).
fn requested_version(headers: &HeaderMap, query: Option<&str>) -> Result<Version, Problem> {
    let from_query =
        query.and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("version=").map(|v| v.to_string())));
    let text = headers.get("x-api-version").and_then(|v| v.to_str().ok()).map(str::to_string).or(from_query);
    match text.as_deref().map(|t| t.trim().trim_start_matches(['v', 'V'])) {
        None | Some("1") => Ok(Version::V1),
        Some("2") => Ok(Version::V2),
        Some(other) => {
            let message = format!("API version `{other}` does not exist; use 1 or 2");
            Err(AppError::invalid_with("UNSUPPORTED_API_VERSION", "version", message).into())
        }
    }
}

/// The migration notes (`CHANGELOG.md`), linked from the deprecation headers.
async fn changelog() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], include_str!("../../CHANGELOG.md"))
}

/// Routes the unversioned `/api/...` paths to the version the request asks for, by rewriting
/// the path before the versioned routes are matched (so their path parameters are their own).
async fn dispatch(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let Some(rest) = path.strip_prefix("/api/").filter(|r| *r != "changelog") else {
        return next.run(request).await;
    };
    let version = match requested_version(request.headers(), request.uri().query()) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let target = format!("/v{}/{rest}{query}", version.number());
    let (mut parts, body) = request.into_parts();
    match target.parse() {
        Ok(uri) => parts.uri = uri,
        Err(_) => return Problem::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such resource").into_response(),
    }
    next.run(Request::from_parts(parts, body)).await
}

fn version_routes(state: &AppState, version: Version, routes: Router<AppState>) -> Router {
    let layer = axum::middleware::from_fn_with_state((version, state.settings.api.clone()), versioned);
    routes.layer(layer).with_state(state.clone())
}

/// The REST router: `/v1`, `/v2`, `/api/...` (version by header or query) and `/api/changelog`.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/products", get(v1::products))
        .route("/v1/products/{id}", get(v1::product))
        .route("/v1/orders", get(v1::orders))
        .route("/v1/orders/{id}", get(v1::order))
        .route("/v1/orders/{id}/lines", get(v1::order_lines))
        .route("/v1/cart", get(v1::cart))
        .route("/v1/openapi.json", get(v1::openapi));
    let v2 = Router::new()
        .route("/v2/products", get(v2::products))
        .route("/v2/products/{id}", get(v2::product))
        .route("/v2/orders", get(v2::orders))
        .route("/v2/orders/{id}", get(v2::order))
        .route("/v2/cart", get(v2::cart))
        .route("/v2/openapi.json", get(v2::openapi));
    let routes = version_routes(&state, Version::V1, v1)
        .merge(version_routes(&state, Version::V2, v2))
        .route("/api/changelog", get(changelog));
    // A fallback, not a route: `dispatch` rewrites the path first, then the versioned routes
    // are matched afresh.
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(dispatch))
        .layer(axum::middleware::from_fn_with_state(state, replica_reads))
}

/// REST only reads: with a read replica configured, a caller who has not sent a mutation within
/// the window reads it (see `store::replica`). The caller was verified by the rate-limit layer.
async fn replica_reads(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let store = state.services.store();
    let replica = store.has_replica()
        && match request.extensions().get::<crate::auth::Caller>() {
            Some(crate::auth::Caller::Authenticated(i)) => !store.routing.wrote_recently(&i.subject),
            _ => true,
        };
    if replica { crate::store::replica::scope(next.run(request)).await } else { next.run(request).await }
}

impl Blanks for ProductListParams {
    fn blanks_are_absent(&mut self) {
        for v in [
            &mut self.after,
            &mut self.search,
            &mut self.vendor_id,
            &mut self.min_price,
            &mut self.max_price,
            &mut self.sort_by,
        ] {
            drop_blank(v);
        }
    }
}

impl Blanks for OrderListParams {
    fn blanks_are_absent(&mut self) {
        drop_blank(&mut self.after);
        drop_blank(&mut self.status);
    }
}
