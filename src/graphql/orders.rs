//! Orders as each caller may see them: a customer their own, a vendor the orders (and only
//! the lines) with their products, an admin all. Someone else's order reads as `NOT_FOUND`,
//! exactly like a missing one, so ids cannot be probed.

use async_graphql::{ComplexObject, Context, Enum, ErrorExtensions, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::account::{Customer, order_scope};
use super::catalog::{Decimal, Money, Product};
use super::connection::{PageInfo, decode_keyed_cursor, encode_keyed_cursor, page_size};
use super::loaders::{LinesKey, Loaders};
use crate::config::Settings;
use crate::domain::{GlobalId, NodeKind};
use crate::error::{AppError, GqlResultExt};
use crate::store::{OrderItemRecord, OrderRecord, OrderScope, Store};

/// Where an order is in its life.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::domain::order::OrderStatus")]
pub enum OrderStatus {
    /// Placed, not yet paid.
    Pending,
    /// Paid, awaiting fulfilment.
    Paid,
    /// Shipped.
    Fulfilled,
    /// Cancelled before fulfilment.
    Cancelled,
    /// Money returned.
    Refunded,
}

// The domain type owns the rules and the stored spelling; this is its GraphQL face.
impl OrderStatus {
    pub(crate) fn parse(s: &str) -> Self {
        crate::domain::order::OrderStatus::parse(s).unwrap_or(crate::domain::order::OrderStatus::Pending).into()
    }

    fn as_str(self) -> &'static str {
        crate::domain::order::OrderStatus::from(self).as_str()
    }
}

/// An order, seen through one caller's scope.
pub struct Order {
    record: OrderRecord,
    /// `Some(vendor)`: a vendor's view, restricted to that vendor's lines.
    vendor_view: Option<i64>,
}

impl Order {
    pub(crate) fn new(record: OrderRecord, scope: &OrderScope) -> Self {
        let vendor_view = match scope {
            OrderScope::Vendor(v) => Some(*v),
            _ => None,
        };
        Self { record, vendor_view }
    }

    async fn load_lines(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderItemRecord>> {
        let key = LinesKey { order_id: self.record.id, vendor: self.vendor_view };
        Ok(ctx.data::<Loaders>()?.order_lines.load_one(key).await?.unwrap_or_default())
    }

    fn money(&self, minor: i64) -> Money {
        Money { amount: Decimal(minor), currency_code: self.record.currency_code.clone() }
    }
}

#[Object]
impl Order {
    /// The order's global id.
    async fn id(&self) -> ID {
        ID(GlobalId::new(NodeKind::Order, self.record.id).encode())
    }

    /// Where the order is in its life.
    async fn status(&self) -> OrderStatus {
        OrderStatus::parse(&self.record.status)
    }

    /// The lines: for a vendor, only the lines of their products.
    async fn lines(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderLine>> {
        Ok(self.load_lines(ctx).await?.into_iter().map(OrderLine).collect())
    }

    /// Sum of the lines (for a vendor: of their lines only).
    async fn subtotal(&self, ctx: &Context<'_>) -> async_graphql::Result<Money> {
        if self.vendor_view.is_some() {
            let sum = self.load_lines(ctx).await?.iter().map(|l| l.line_total_amount).sum();
            return Ok(self.money(sum));
        }
        Ok(self.money(self.record.subtotal_amount))
    }

    /// What the customer pays; `null` for vendors, who see only their own lines.
    async fn total(&self) -> Option<Money> {
        self.vendor_view.is_none().then(|| self.money(self.record.total_amount))
    }

    /// The customer who placed it; `null` for vendors (customers' identities are not theirs to see).
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Customer>> {
        if self.vendor_view.is_some() {
            return Ok(None);
        }
        Ok(ctx.data::<Loaders>()?.customers.load_one(self.record.customer_id).await?.map(Customer))
    }

    /// When it was placed.
    async fn created_at(&self) -> DateTime<Utc> {
        self.record.created_at
    }

    /// When its status last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.record.updated_at
    }
}

/// One line of an order: the product as it was at checkout.
pub struct OrderLine(OrderItemRecord);

#[Object]
impl OrderLine {
    /// SKU at checkout.
    async fn sku(&self) -> &str {
        &self.0.sku
    }

    /// Product name at checkout.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Units bought.
    async fn quantity(&self) -> i64 {
        self.0.quantity
    }

    /// Unit price at checkout.
    async fn unit_price(&self) -> Money {
        Money { amount: Decimal(self.0.unit_price_amount), currency_code: self.0.currency_code.clone() }
    }

    /// `unitPrice × quantity`.
    async fn line_total(&self) -> Money {
        Money { amount: Decimal(self.0.line_total_amount), currency_code: self.0.currency_code.clone() }
    }

    /// The product today (archived products included).
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Product>> {
        Ok(ctx.data::<Loaders>()?.products.load_one(self.0.product_id).await?.map(Product))
    }
}

/// Narrows an order list.
#[derive(InputObject, Default)]
pub struct OrderFilter {
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
}

/// A page of orders, newest first.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct OrderConnection {
    /// The orders with their cursors.
    pub edges: Vec<OrderEdge>,
    /// Where this page sits.
    pub page_info: PageInfo,
    #[graphql(skip)]
    scope: OrderScope,
    #[graphql(skip)]
    status: Option<OrderStatus>,
}

#[ComplexObject]
impl OrderConnection {
    /// How many orders the caller can see with this filter.
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        ctx.data::<Store>()?.count_orders(&self.scope, self.status.map(|s| s.as_str())).await.gql()
    }
}

/// An order and its cursor.
#[derive(SimpleObject)]
pub struct OrderEdge {
    /// Pass to `after` to page from here.
    pub cursor: String,
    /// The order.
    pub node: Order,
}

/// Order queries; each needs a token.
#[derive(Default)]
pub struct OrderQuery;

#[Object]
impl OrderQuery {
    /// The caller's orders, newest first: a customer's own, a vendor's (orders with their
    /// products), or all for an admin. Page size: default 20, at most 100.
    #[graphql(complexity = "super::catalog::page_complexity(first, None, child_complexity)")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<OrderFilter>,
    ) -> async_graphql::Result<OrderConnection> {
        let scope = order_scope(ctx).gql()?;
        let settings = ctx.data::<std::sync::Arc<Settings>>()?;
        let size = page_size(first, None, false, &settings.limits).gql()?;
        let before_id = after.map(|c| decode_keyed_cursor("o", "after", &c).map(|(id, _)| id)).transpose().gql()?;
        let status = filter.and_then(|f| f.status);
        let store = ctx.data::<Store>()?;
        let mut rows = store.list_orders(&scope, status.map(|s| s.as_str()), before_id, size.limit).await.gql()?;
        let has_more = rows.len() > size.limit as usize;
        rows.truncate(size.limit as usize);
        let edges: Vec<OrderEdge> = rows
            .into_iter()
            .map(|r| OrderEdge { cursor: encode_keyed_cursor("o", r.id, ""), node: Order::new(r, &scope) })
            .collect();
        let page_info = PageInfo {
            has_next_page: has_more,
            has_previous_page: before_id.is_some(),
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        };
        Ok(OrderConnection { edges, page_info, scope, status })
    }

    /// One order the caller may see; anything else (missing or someone else's) is `NOT_FOUND`.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Order>> {
        let scope = order_scope(ctx).gql()?;
        let not_found = || AppError::NotFound("order").extend();
        // A malformed id is also just "not found": the answer must not tell ids apart.
        let id = GlobalId::decode_as(&id, NodeKind::Order).ok_or_else(not_found)?;
        match ctx.data::<Store>()?.order(&scope, id).await.gql()? {
            Some(r) => Ok(Some(Order::new(r, &scope))),
            None => Err(not_found()),
        }
    }
}
