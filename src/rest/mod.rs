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

pub mod problem;
pub mod v1;
pub mod v2;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

pub use problem::Problem;

use crate::auth::{Caller, Identity, require_identity_of};
use crate::config::ApiSettings;
use crate::domain::{GlobalId, NodeKind};
use crate::error::AppError;
use crate::graphql::connection::{decode_product_cursor, encode_product_cursor, page_size};
use crate::graphql::limits::BillingKey;
use crate::http::AppState;
use crate::http::client::Peer;
use crate::store::{
    InventoryRecord, OrderItemRecord, OrderRecord, OrderScope, PageQuery, ProductCursor, ProductFilter, ProductRecord,
    ProductSort, VendorRecord,
};

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

/// The caller, its bill and the version of one REST request.
pub struct Ctx {
    /// Who is calling.
    pub caller: Caller,
    billing: BillingKey,
}

async fn context(state: &AppState, peer: Option<std::net::SocketAddr>, headers: &HeaderMap) -> Ctx {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = crate::http::graphql::authenticate(state, authorization).await;
    let ip = state.clients.of(peer.map(|p| p.ip()), headers).map(|ip| ip.to_string()).unwrap_or_default();
    let billing = BillingKey::of(&caller, &ip, &state.settings);
    Ctx { caller, billing }
}

impl Ctx {
    /// Bills `cost` points to the caller's budget (429 `THROTTLED` when it does not fit).
    async fn bill(&self, state: &AppState, cost: u64) -> Result<(), Problem> {
        match state.budgets.take(&self.billing.key, cost as f64, self.billing.policy).await {
            Ok(_) => Ok(()),
            Err(t) => Err(AppError::Throttled { retry_after_secs: t.retry_after_secs }.into()),
        }
    }

    fn identity(&self) -> Result<&Identity, Problem> {
        require_identity_of(&self.caller).map_err(Problem::from)
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

fn bad(code: &'static str, field: &str, message: impl Into<String>) -> Problem {
    AppError::invalid_with(code, field, message).into()
}

fn parse_sort(text: Option<&str>) -> Result<ProductSort, Problem> {
    Ok(match text.unwrap_or("NEWEST") {
        "NEWEST" => ProductSort::Newest,
        "NAME" => ProductSort::NameAsc,
        "PRICE_ASC" => ProductSort::PriceAsc,
        "PRICE_DESC" => ProductSort::PriceDesc,
        other => return Err(bad("BAD_USER_INPUT", "sortBy", format!("unknown sortBy `{other}`"))),
    })
}

/// A page of products with what their representations need.
pub struct ProductPage {
    /// The products.
    pub items: Vec<(ProductRecord, Option<InventoryRecord>, Option<VendorRecord>)>,
    /// More after the last?
    pub has_next_page: bool,
    /// Cursor of the last.
    pub end_cursor: Option<String>,
}

async fn product_page(state: &AppState, ctx: &Ctx, params: &ProductListParams) -> Result<ProductPage, Problem> {
    let size = page_size(params.first, None, false, &state.settings.limits)?;
    let sort = parse_sort(params.sort_by.as_deref())?;
    let after = params.after.as_deref().map(|c| decode_product_cursor("after", c, sort)).transpose()?;
    let money = |field: &str, v: &Option<String>| -> Result<Option<i64>, Problem> {
        v.as_deref()
            .map(|t| crate::domain::money::parse_decimal(t).map_err(|m| bad("BAD_USER_INPUT", field, m)))
            .transpose()
    };
    let vendor_id = match &params.vendor_id {
        Some(id) => Some(
            GlobalId::decode_as(id, NodeKind::Vendor)
                .ok_or_else(|| bad("INVALID_ID", "vendorId", "not a Vendor id"))?,
        ),
        None => None,
    };
    let search = params.search.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if search.as_ref().is_some_and(|s| s.chars().count() > 100) {
        return Err(bad("BAD_USER_INPUT", "search", "search text may be at most 100 characters"));
    }
    let filter = ProductFilter {
        search,
        vendor_id,
        min_price: money("minPrice", &params.min_price)?,
        max_price: money("maxPrice", &params.max_price)?,
        in_stock: params.in_stock,
    };
    ctx.bill(state, 1 + u64::from(size.limit)).await?;
    let query = PageQuery { limit: size.limit, after, before: None, backward: false };
    let mut rows = if size.limit == 0 { Vec::new() } else { state.store.list_products(&filter, sort, &query).await? };
    let has_next_page = rows.len() > size.limit as usize;
    rows.truncate(size.limit as usize);
    let end_cursor = rows.last().map(|r| encode_product_cursor(&ProductCursor::of(r, sort), sort));
    let items = with_details(state, rows).await?;
    Ok(ProductPage { items, has_next_page, end_cursor })
}

/// Attaches stock and vendor to products: two statements for any number of products.
async fn with_details(
    state: &AppState,
    rows: Vec<ProductRecord>,
) -> Result<Vec<(ProductRecord, Option<InventoryRecord>, Option<VendorRecord>)>, Problem> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut vendor_ids: Vec<i64> = rows.iter().map(|r| r.vendor_id).collect();
    vendor_ids.sort_unstable();
    vendor_ids.dedup();
    let inventory = state.store.inventory_by_product_ids(&ids).await?;
    let vendors = if vendor_ids.is_empty() { Vec::new() } else { state.store.vendors_by_ids(&vendor_ids).await? };
    Ok(rows
        .into_iter()
        .map(|p| {
            let i = inventory.iter().find(|i| i.product_id == p.id).cloned();
            let v = vendors.iter().find(|v| v.id == p.vendor_id).cloned();
            (p, i, v)
        })
        .collect())
}

async fn one_product(
    state: &AppState,
    ctx: &Ctx,
    id: &str,
) -> Result<(ProductRecord, Option<InventoryRecord>, Option<VendorRecord>), Problem> {
    ctx.bill(state, 1).await?;
    let not_found = || Problem::from(AppError::NotFound("product"));
    let id = GlobalId::decode_as(id, NodeKind::Product).ok_or_else(not_found)?;
    let product = state.store.product(id).await?.ok_or_else(not_found)?;
    Ok(with_details(state, vec![product]).await?.remove(0))
}

/// The caller's order scope (as GraphQL's: customers their own, vendors theirs, admins all).
fn scope_of(identity: &Identity) -> Result<OrderScope, Problem> {
    use crate::auth::Role;
    if identity.is_admin() {
        Ok(OrderScope::All)
    } else if identity.has(Role::Vendor) {
        identity
            .vendor_id
            .map(OrderScope::Vendor)
            .ok_or_else(|| AppError::Forbidden("no vendor is linked to this account".into()).into())
    } else if identity.has(Role::Customer) {
        Ok(OrderScope::CustomerSubject(identity.subject.as_str().into()))
    } else {
        Err(AppError::Forbidden("needs the role customer, vendor or admin".into()).into())
    }
}

/// A page of orders with their (scoped) lines.
pub struct OrderPage {
    /// Orders, each with the lines the caller may see.
    pub items: Vec<(OrderRecord, Vec<OrderItemRecord>)>,
    /// The vendor whose view this is, if any.
    pub vendor_view: Option<i64>,
    /// More after the last?
    pub has_next_page: bool,
    /// Cursor of the last.
    pub end_cursor: Option<String>,
}

async fn order_page(state: &AppState, ctx: &Ctx, params: &OrderListParams) -> Result<OrderPage, Problem> {
    let scope = scope_of(ctx.identity()?)?;
    let size = page_size(params.first, None, false, &state.settings.limits)?;
    let before_id = params
        .after
        .as_deref()
        .map(|c| crate::graphql::connection::decode_keyed_cursor("o", "after", c).map(|(id, _)| id))
        .transpose()?;
    let status = match params.status.as_deref() {
        Some(s) => Some(
            crate::domain::order::OrderStatus::parse(s)
                .ok_or_else(|| bad("BAD_USER_INPUT", "status", format!("unknown status `{s}`")))?
                .as_str(),
        ),
        None => None,
    };
    ctx.bill(state, 1 + u64::from(size.limit)).await?;
    let mut rows = state.store.list_orders(&scope, status, before_id, size.limit).await?;
    let has_next_page = rows.len() > size.limit as usize;
    rows.truncate(size.limit as usize);
    let end_cursor = rows.last().map(|r| crate::graphql::connection::encode_keyed_cursor("o", r.id, ""));
    let vendor_view = if let OrderScope::Vendor(v) = scope { Some(v) } else { None };
    let items = with_lines(state, rows, vendor_view).await?;
    Ok(OrderPage { items, vendor_view, has_next_page, end_cursor })
}

async fn with_lines(
    state: &AppState,
    rows: Vec<OrderRecord>,
    vendor: Option<i64>,
) -> Result<Vec<(OrderRecord, Vec<OrderItemRecord>)>, Problem> {
    let ids: Vec<i64> = rows.iter().map(|o| o.id).collect();
    let lines = if ids.is_empty() { Vec::new() } else { state.store.order_items(&ids, vendor).await? };
    Ok(rows
        .into_iter()
        .map(|o| {
            let mine = lines.iter().filter(|l| l.order_id == o.id).cloned().collect();
            (o, mine)
        })
        .collect())
}

async fn one_order(
    state: &AppState,
    ctx: &Ctx,
    id: &str,
) -> Result<(OrderRecord, Vec<OrderItemRecord>, Option<i64>), Problem> {
    let scope = scope_of(ctx.identity()?)?;
    ctx.bill(state, 1).await?;
    let not_found = || Problem::from(AppError::NotFound("order"));
    let id = GlobalId::decode_as(id, NodeKind::Order).ok_or_else(not_found)?;
    let order = state.store.order(&scope, id).await?.ok_or_else(not_found)?;
    let vendor = if let OrderScope::Vendor(v) = scope { Some(v) } else { None };
    let (order, lines) = with_lines(state, vec![order], vendor).await?.remove(0);
    Ok((order, lines, vendor))
}

async fn cart_lines(state: &AppState, ctx: &Ctx) -> Result<Vec<crate::store::commerce::CartLineRecord>, Problem> {
    let identity = ctx.identity()?;
    if !identity.has(crate::auth::Role::Customer) && !identity.is_admin() {
        return Err(AppError::Forbidden("needs the role customer".into()).into());
    }
    ctx.bill(state, 1).await?;
    let customer = state.store.ensure_customer(&identity.subject).await?;
    Ok(state.store.cart_lines(customer.id).await?)
}

/// A JSON body with a strong ETag; 304 when the client's `If-None-Match` already has it.
fn with_etag(headers: &HeaderMap, body: serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
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

/// Adds `API-Version` and, for a deprecated version, the deprecation headers; refuses a
/// version past its sunset with 410.
fn versioned(version: Version, api: &ApiSettings, now: DateTime<Utc>, response: Result<Response, Problem>) -> Response {
    if version == Version::V1 && now >= api.v1_sunset() {
        let mut r = Problem::new(
            StatusCode::GONE,
            "API_VERSION_SUNSET",
            format!("API v1 was retired on {}; use /v2 (see /api/changelog)", api.v1_sunset().to_rfc2822()),
        )
        .into_response();
        deprecation_headers(&mut r, api);
        return r;
    }
    let mut response = response.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert("api-version", HeaderValue::from_static(version.number()));
    if version == Version::V1 && now >= api.v1_deprecated {
        deprecation_headers(&mut response, api);
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
            Err(bad("UNSUPPORTED_API_VERSION", "version", format!("API version `{other}` does not exist; use 1 or 2")))
        }
    }
}

/// The migration notes (`CHANGELOG.md`), linked from the deprecation headers.
async fn changelog() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], include_str!("../../CHANGELOG.md"))
}

/// Rejections of malformed query strings as problems.
fn query_problem(e: axum::extract::rejection::QueryRejection) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.body_text())
}

/// Routes the unversioned `/api/...` paths to the version the request asks for.
async fn dispatch(State(state): State<AppState>, request: Request, _next: Next) -> Response {
    let version = match requested_version(request.headers(), request.uri().query()) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let path = request.uri().path().trim_start_matches("/api").to_string();
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let target = format!("/v{}{path}{query}", version.number());
    let (mut parts, body) = request.into_parts();
    parts.uri = target.parse().unwrap_or_else(|_| "/v1/".parse().expect("static"));
    let inner = versioned_router(state);
    use tower::ServiceExt;
    match inner.oneshot(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

fn versioned_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/products", get(v1::products))
        .route("/v1/products/{id}", get(v1::product))
        .route("/v1/orders", get(v1::orders))
        .route("/v1/orders/{id}", get(v1::order))
        .route("/v1/orders/{id}/lines", get(v1::order_lines))
        .route("/v1/cart", get(v1::cart))
        .route("/v1/openapi.json", get(v1::openapi))
        .route("/v2/products", get(v2::products))
        .route("/v2/products/{id}", get(v2::product))
        .route("/v2/orders", get(v2::orders))
        .route("/v2/orders/{id}", get(v2::order))
        .route("/v2/cart", get(v2::cart))
        .route("/v2/openapi.json", get(v2::openapi))
        .with_state(state)
}

/// The REST router: `/v1`, `/v2`, `/api` (version by header or query) and `/api/changelog`.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/{*rest}", get(|| async { StatusCode::NOT_FOUND }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), dispatch))
        .with_state(state.clone());
    versioned_router(state).route("/api/changelog", get(changelog)).merge(api)
}

/// Shared extraction for every handler.
pub(crate) async fn begin(state: &AppState, peer: Peer, headers: &HeaderMap) -> Ctx {
    context(state, peer.0, headers).await
}

pub(crate) type ListQuery<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;
pub(crate) type IdPath = Path<String>;

pub(crate) fn unwrap_query<T: Blanks>(q: ListQuery<T>) -> Result<T, Problem> {
    q.map(|Query(mut t)| {
        t.blanks_are_absent();
        t
    })
    .map_err(query_problem)
}

/// `?sortBy=&after=` means the same as leaving them out.
pub(crate) trait Blanks {
    fn blanks_are_absent(&mut self);
}

fn drop_blank(v: &mut Option<String>) {
    if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
        *v = None;
    }
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

pub(crate) fn now() -> DateTime<Utc> {
    Utc::now()
}
