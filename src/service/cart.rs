//! The customer's cart: what it holds and what it comes to, and the changes to it. Every
//! change that goes through tells the customer's other devices (`cartChanged`).

use super::{Outcome, Refusal, Services, require_role};
use crate::auth::{Caller, Role};
use crate::domain::order::check_quantity;
use crate::domain::{GlobalId, NodeKind, ProductStatus};
use crate::error::AppResult;
use crate::store::{AddToCart, CartLineRecord};

/// Products a cart holds at most (so `Cart.lines` and `Order.lines` have a bound the cost
/// model can count).
pub const MAX_CART_LINES: usize = 20;

/// A cart as its customer sees it.
#[derive(Debug, Clone)]
pub struct CartView {
    /// The customer's row id (the cart's id is made from it).
    pub customer_id: i64,
    /// The lines, in product order, at today's prices and stock.
    pub lines: Vec<CartLineRecord>,
}

/// A cart after a change, and why the change was refused, if it was.
#[derive(Debug, Clone)]
pub struct CartChange {
    /// The cart now (unchanged when refused).
    pub cart: CartView,
    /// The refusal.
    pub refused: Option<Refusal>,
}

impl CartView {
    /// Units across all lines.
    pub fn total_quantity(&self) -> i64 {
        self.lines.iter().map(|l| l.quantity).sum()
    }

    /// Sum of the lines at today's prices and the cart's currency; `None` when empty, or when
    /// its products are priced in several currencies (a vendor changed one after it was added;
    /// checkout refuses such a cart with `CURRENCY_MISMATCH`).
    pub fn subtotal(&self) -> Option<(i64, &str)> {
        let first = self.lines.first()?;
        if self.lines.iter().any(|l| l.currency_code != first.currency_code) {
            return None;
        }
        Some((self.lines.iter().map(|l| l.price_amount * l.quantity).sum(), first.currency_code.as_str()))
    }

    /// Whether every line can be bought now.
    pub fn available(&self) -> bool {
        self.lines.iter().all(line_available)
    }
}

/// Whether a line's unit price (amount or currency) is not what it was when the product was
/// last added.
pub fn price_changed(line: &CartLineRecord) -> bool {
    let amount_changed = line.added.amount.is_some_and(|added| added != line.price_amount);
    let currency_changed = line.added.currency.as_ref().is_some_and(|added| *added != line.currency_code);
    amount_changed || currency_changed
}

/// Whether a line can be bought now: its product is on sale with the wanted units in stock.
pub fn line_available(line: &CartLineRecord) -> bool {
    ProductStatus::stored(&line.status) == ProductStatus::Active && line.available >= line.quantity
}

fn product_id_of(id: &str) -> Outcome<i64> {
    GlobalId::decode_as(id, NodeKind::Product)
        .ok_or_else(|| Refusal::new("PRODUCT_NOT_FOUND", "productId", "not a Product id"))
}

fn quantity_of(quantity: i64, zero_removes: bool) -> Outcome<i64> {
    if zero_removes && quantity == 0 {
        return Ok(0);
    }
    check_quantity(quantity).map_err(|m| Refusal::new("INVALID_QUANTITY", "quantity", m))
}

impl Services {
    /// The caller's cart (customers).
    pub async fn cart(&self, caller: &Caller) -> AppResult<CartView> {
        let identity = require_role(caller, &[Role::Customer])?;
        let customer = self.as_customer(identity).await?;
        self.cart_of(customer.id).await
    }

    /// A customer's cart by their row id (subscriptions re-read it on each event).
    pub async fn cart_of(&self, customer_id: i64) -> AppResult<CartView> {
        Ok(CartView { customer_id, lines: self.store.cart_lines(customer_id).await? })
    }

    /// Adds units of a product (1 to 999; a line holds at most 999).
    pub async fn add_cart_item(&self, caller: &Caller, product_id: &str, quantity: i64) -> AppResult<CartChange> {
        let customer = self.as_customer(require_role(caller, &[Role::Customer])?).await?;
        let refused = match quantity_of(quantity, false).and_then(|q| Ok((product_id_of(product_id)?, q))) {
            Err(e) => Some(e),
            Ok((pid, q)) => match self.store.add_cart_item(customer.id, pid, q, MAX_CART_LINES).await? {
                AddToCart::Added => None,
                AddToCart::ProductMissing => Some(Refusal::new("PRODUCT_NOT_FOUND", "productId", "no such product")),
                AddToCart::ProductArchived => {
                    Some(Refusal::new("PRODUCT_ARCHIVED", "productId", "this product is no longer sold"))
                }
                AddToCart::CurrencyMismatch { cart, product } => Some(Refusal::new(
                    "CURRENCY_MISMATCH",
                    "productId",
                    format!("the cart is priced in {cart}; this product is priced in {product}"),
                )),
                AddToCart::CartFull => Some(Refusal::new(
                    "CART_FULL",
                    "productId",
                    format!("a cart holds at most {MAX_CART_LINES} products"),
                )),
                AddToCart::LineFull => {
                    Some(Refusal::new("INVALID_QUANTITY", "quantity", "a cart line holds at most 999 units"))
                }
            },
        };
        self.cart_changed(customer.id, refused).await
    }

    /// Sets a line's quantity (0 to 999; 0 removes the line).
    pub async fn update_cart_item(&self, caller: &Caller, product_id: &str, quantity: i64) -> AppResult<CartChange> {
        let customer = self.as_customer(require_role(caller, &[Role::Customer])?).await?;
        let refused = match quantity_of(quantity, true).and_then(|q| Ok((product_id_of(product_id)?, q))) {
            Err(e) => Some(e),
            Ok((pid, q)) => self.set_line(customer.id, pid, q).await?,
        };
        self.cart_changed(customer.id, refused).await
    }

    /// Removes a product from the cart.
    pub async fn remove_cart_item(&self, caller: &Caller, product_id: &str) -> AppResult<CartChange> {
        let customer = self.as_customer(require_role(caller, &[Role::Customer])?).await?;
        let refused = match product_id_of(product_id) {
            Err(e) => Some(e),
            Ok(pid) => self.set_line(customer.id, pid, 0).await?,
        };
        self.cart_changed(customer.id, refused).await
    }

    /// Empties the cart.
    pub async fn clear_cart(&self, caller: &Caller) -> AppResult<CartChange> {
        let customer = self.as_customer(require_role(caller, &[Role::Customer])?).await?;
        self.store.clear_cart(customer.id).await?;
        self.cart_changed(customer.id, None).await
    }

    async fn set_line(&self, customer_id: i64, product_id: i64, quantity: i64) -> AppResult<Option<Refusal>> {
        let found = self.store.set_cart_item(customer_id, product_id, quantity).await?;
        Ok((!found).then(|| Refusal::new("CART_LINE_NOT_FOUND", "productId", "this product is not in the cart")))
    }

    /// Tells the customer's devices when a change went through; answers with the cart now.
    /// (The change's `Cart` event was written in its transaction and published on commit.)
    async fn cart_changed(&self, customer_id: i64, refused: Option<Refusal>) -> AppResult<CartChange> {
        Ok(CartChange { cart: self.cart_of(customer_id).await?, refused })
    }
}
