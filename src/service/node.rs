//! Any object by its global id (Relay's `node`), under the same authorization as the object's
//! own field: a product or vendor for anyone; an order for whoever `order(id:)` shows it to
//! (through the same scope, so a vendor sees only their lines); a customer for that customer
//! and admins; a cart for its own customer. Anything else reads as `NOT_FOUND`, exactly like a
//! missing object, so ids cannot be probed.

use super::Services;
use super::cart::CartView;
use super::orders::order_scope;
use crate::auth::{Caller, Role};
use crate::domain::{GlobalId, NodeKind};
use crate::error::{AppError, AppResult};
use crate::store::{CustomerRecord, InventoryRecord, OrderRecord, OrderScope, ProductRecord, VendorRecord};

/// An object found by its global id.
#[derive(Debug, Clone)]
pub enum AnyNode {
    /// A product.
    Product(ProductRecord),
    /// A product read with its stock (`None`: no inventory row), when the caller asked for it.
    ProductWithStock(ProductRecord, Option<InventoryRecord>),
    /// A vendor.
    Vendor(VendorRecord),
    /// An order, with the scope the caller sees it through.
    Order(OrderRecord, OrderScope),
    /// A customer.
    Customer(CustomerRecord),
    /// A cart.
    Cart(CartView),
}

impl Services {
    /// The object `id` names if the caller may see it: `INVALID_ID` when it is not an id of
    /// ours, `NOT_FOUND` when it is unknown or not the caller's to see. With `product_stock`, a
    /// product comes with its stock, read in the same statement.
    pub async fn node(&self, caller: &Caller, id: &str, product_stock: bool) -> AppResult<AnyNode> {
        let global = GlobalId::decode(id)
            .ok_or_else(|| AppError::invalid_with("INVALID_ID", "id", "not an id from this API"))?;
        let found = match global.kind {
            NodeKind::Product if product_stock => {
                self.store.product_with_stock(global.id).await?.map(|(p, stock)| AnyNode::ProductWithStock(p, stock))
            }
            NodeKind::Product => self.store.product(global.id).await?.map(AnyNode::Product),
            NodeKind::Vendor => self.store.vendors_by_ids(&[global.id]).await?.pop().map(AnyNode::Vendor),
            NodeKind::Order => {
                let scope = order_scope(caller)?;
                self.order_in(&scope, global.id).await?.map(|order| AnyNode::Order(order, scope))
            }
            NodeKind::Customer => match caller.identity() {
                Some(identity) if identity.has(Role::Admin) => {
                    self.store.customers_by_ids(&[global.id]).await?.pop().map(AnyNode::Customer)
                }
                Some(identity) => {
                    self.customer_of(identity).await?.filter(|own| own.id == global.id).map(AnyNode::Customer)
                }
                None => None,
            },
            // As `cart`: a customer's own (admins pass `require_role` too, for their own).
            NodeKind::Cart => match caller.identity() {
                Some(identity) if identity.has(Role::Customer) || identity.has(Role::Admin) => {
                    let own = self.as_customer(identity).await?;
                    if own.id == global.id { Some(AnyNode::Cart(self.cart_of(own.id).await?)) } else { None }
                }
                _ => None,
            },
        };
        found.ok_or(AppError::NotFound(kind_word(global.kind)))
    }
}

fn kind_word(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Product => "product",
        NodeKind::Vendor => "vendor",
        NodeKind::Order => "order",
        NodeKind::Customer => "customer",
        NodeKind::Cart => "cart",
    }
}
