//! Relay's object identification: the `Node` interface, implemented by every type with a
//! global id, and `node(id:)`, which fetches any of them under the same authorization as the
//! type's own field (see `service::node`).

use async_graphql::{Context, ID, Interface, Object};

use super::account::Customer;
use super::catalog::{Product, Vendor, wants_stock};
use super::commerce::Cart;
use super::loaders::Loaders;
use super::orders::Order;
use super::services;
use crate::auth::caller;
use crate::error::GqlResultExt;
use crate::service::node::AnyNode;

/// An object with a global id.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID", desc = "The object's global id."))]
pub enum Node {
    /// A product.
    Product(Product),
    /// A vendor.
    Vendor(Vendor),
    /// An order.
    Order(Order),
    /// A customer.
    Customer(Customer),
    /// A shopping cart.
    Cart(Cart),
}

/// `node(id:)`.
#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Fetches any object by its global id (padded or unpadded, standard or URL-safe base64).
    /// Unknown ids, and objects the caller may not see, answer `null` with a `NOT_FOUND` error.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        // Stock asked for beside a product (`... on Product { inventory }`) is read in the
        // product's statement, as `product(id:)` does.
        let stock = wants_stock(&ctx.look_ahead());
        Ok(Some(match services(ctx)?.node(caller(ctx), &id, stock).await.gql()? {
            AnyNode::Product(p) => Node::Product(Product(p)),
            AnyNode::ProductWithStock(p, stock) => {
                ctx.data::<Loaders>()?.prime_stock([(p.id, stock)]);
                Node::Product(Product(p))
            }
            AnyNode::Vendor(v) => Node::Vendor(Vendor(v)),
            AnyNode::Order(order, scope) => Node::Order(Order::new(order, &scope)),
            AnyNode::Customer(c) => Node::Customer(Customer(c)),
            AnyNode::Cart(cart) => Node::Cart(Cart(cart)),
        }))
    }
}
