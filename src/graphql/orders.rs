//! Orders as each caller may see them: a customer their own, a vendor the orders (and only
//! the lines) with their products, an admin all. Someone else's order reads as `NOT_FOUND`,
//! exactly like a missing one, so ids cannot be probed.

use async_graphql::{ComplexObject, Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::account::Customer;
use super::catalog::{Decimal, Money, Product};
use super::connection::PageInfo;
use super::loaders::{LinesKey, Loaders};
use super::services;
use crate::auth::caller;
use crate::domain::order::OrderStatus;
use crate::domain::{GlobalId, NodeKind};
use crate::error::GqlResultExt;
use crate::service::orders::{OrderPage, vendor_view};
use crate::store::{OrderItemRecord, OrderRecord, OrderScope};

/// An order, seen through one caller's scope.
pub struct Order {
    record: OrderRecord,
    /// `Some(vendor)`: a vendor's view, restricted to that vendor's lines.
    vendor_view: Option<i64>,
}

impl Order {
    pub(crate) fn new(record: OrderRecord, scope: &OrderScope) -> Self {
        Self { record, vendor_view: vendor_view(scope) }
    }

    async fn load_lines(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderItemRecord>> {
        // In `lines`, the look-ahead sees the lines' own selection; elsewhere (`subtotal`) it
        // has no `product`, and a scope that any key wants products for reads them anyway.
        let products = ctx.look_ahead().field("product").exists();
        let key = LinesKey { order_id: self.record.id, vendor: self.vendor_view, products };
        ctx.data::<Loaders>()?.lines(key).await
    }

    fn money(&self, minor: i64) -> Money {
        Money { amount: Decimal(minor), currency_code: self.record.currency_code.clone() }
    }
}

#[Object]
impl Order {
    /// The order's global id.
    pub(crate) async fn id(&self) -> ID {
        ID(GlobalId::new(NodeKind::Order, self.record.id).encode())
    }

    /// Where the order is in its life.
    async fn status(&self) -> OrderStatus {
        OrderStatus::stored(&self.record.status)
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
        Ok(ctx.data::<Loaders>()?.product(self.0.product_id).await?.map(Product))
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
        services(ctx)?.count_orders(&self.scope, self.status).await.gql()
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

impl From<OrderPage> for OrderConnection {
    fn from(page: OrderPage) -> Self {
        let scope = page.scope;
        let edges: Vec<OrderEdge> =
            page.edges.into_iter().map(|(r, cursor)| OrderEdge { cursor, node: Order::new(r, &scope) }).collect();
        let page_info = PageInfo::of(&edges, |e| &e.cursor, page.has_next_page, page.has_previous_page);
        Self { edges, page_info, scope, status: page.status }
    }
}

#[Object]
impl OrderQuery {
    /// The caller's orders, newest first: a customer's own, a vendor's (orders with their
    /// products), or all for an admin. Page size: default 20, at most 100.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<OrderFilter>,
    ) -> async_graphql::Result<OrderConnection> {
        let status = filter.and_then(|f| f.status);
        let connection: OrderConnection =
            services(ctx)?.order_page(caller(ctx), first, after, status).await.gql()?.into();
        // The page's lines, when selected, in one statement now rather than after the loader's
        // batching window; keyed as `Order::load_lines` asks for them.
        let lines = ctx.look_ahead().field("edges").field("node").field("lines");
        if lines.exists() {
            let products = lines.field("product").exists();
            let keys: Vec<LinesKey> = connection
                .edges
                .iter()
                .map(|e| LinesKey { order_id: e.node.record.id, vendor: e.node.vendor_view, products })
                .collect();
            ctx.data::<Loaders>()?.prime_lines(&keys).await?;
        }
        Ok(connection)
    }

    /// One order the caller may see; anything else (missing or someone else's) is `NOT_FOUND`.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Order>> {
        let (order, scope) = services(ctx)?.order(caller(ctx), &id).await.gql()?;
        Ok(Some(Order::new(order, &scope)))
    }
}
