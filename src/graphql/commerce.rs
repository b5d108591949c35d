//! The customer's money path: the cart, checkout, and cancelling an order; plus fulfilment.
//! Each resolver hands its input to `service` and shapes the answer.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};

use super::catalog::{Decimal, Money, Product};
use super::loaders::Loaders;
use super::orders::Order;
use super::services;
use super::vendors::MoneyInput;
use crate::auth::{Role, RoleGuard, caller};
use crate::domain::order::AddressFields;
use crate::domain::{GlobalId, NodeKind};
use crate::error::GqlResultExt;
use crate::service::Refusal;
use crate::service::cart::{CartChange, CartView, line_available, price_changed};
use crate::service::checkout::CheckoutRequest;
use crate::service::orders::StatusResult;
use crate::store::CartLineRecord;

/// A business rule a mutation refused; nothing was changed.
///
/// Codes: `INVALID_QUANTITY`, `PRODUCT_NOT_FOUND`, `PRODUCT_ARCHIVED`, `CURRENCY_MISMATCH`,
/// `CART_LINE_NOT_FOUND`, `CART_EMPTY`, `OUT_OF_STOCK`, `PAYMENT_DECLINED`, `PAYMENT_TIMEOUT`,
/// `PAYMENT_UNCONFIRMED`, `PAYMENT_FAILED`, `IDEMPOTENCY_KEY_REUSED`, `INVALID_IDEMPOTENCY_KEY`,
/// `INVALID_PAYMENT_TOKEN`,
/// `INVALID_ADDRESS`, `INVALID_TRANSITION`, `REFUND_FAILED`, `CONFLICT`, `INVALID_SKU`,
/// `INVALID_NAME`, `INVALID_DESCRIPTION`, `INVALID_PRICE`, `INVALID_CURRENCY`, `INVALID_SLUG`,
/// `SKU_TAKEN`, `VENDOR_NOT_FOUND`, `VENDOR_REQUIRED`, `VENDOR_TAKEN`, `INVENTORY_CONFLICT`,
/// `INSUFFICIENT_STOCK`, `PRICE_CHANGED`, `CART_FULL`.
#[Object(name = "UserError")]
impl Refusal {
    /// Path to the input field at fault (empty when it is the request as a whole).
    async fn field(&self) -> &[String] {
        &self.field
    }

    /// What went wrong, for a human.
    async fn message(&self) -> &str {
        &self.message
    }

    /// Stable machine-readable code.
    async fn code(&self) -> &str {
        self.code
    }
}

/// A shopping cart.
pub struct Cart(pub CartView);

#[Object]
impl Cart {
    /// The cart's global id.
    pub(crate) async fn id(&self) -> ID {
        ID(GlobalId::new(NodeKind::Cart, self.0.customer_id).encode())
    }

    /// The lines, in product order.
    async fn lines(&self) -> Vec<CartLine> {
        self.0.lines.iter().cloned().map(CartLine).collect()
    }

    /// Units across all lines.
    async fn total_quantity(&self) -> i64 {
        self.0.total_quantity()
    }

    /// Sum of the lines at today's prices; `null` for an empty cart, or one whose products are
    /// priced in several currencies (checkout refuses it with `CURRENCY_MISMATCH`).
    async fn subtotal(&self) -> Option<Money> {
        let (sum, currency) = self.0.subtotal()?;
        Some(Money { amount: Decimal(sum), currency_code: currency.to_string() })
    }

    /// Whether every line can be bought now (in stock in the wanted quantity, not archived).
    async fn available(&self) -> bool {
        self.0.available()
    }
}

/// One product in a cart.
pub struct CartLine(CartLineRecord);

#[Object]
impl CartLine {
    /// The product.
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Product>> {
        Ok(ctx.data::<Loaders>()?.products.load_one(self.0.product_id).await?.map(Product))
    }

    /// Units wanted.
    async fn quantity(&self) -> i64 {
        self.0.quantity
    }

    /// Today's unit price.
    async fn unit_price(&self) -> Money {
        Money { amount: Decimal(self.0.price_amount), currency_code: self.0.currency_code.clone() }
    }

    /// `unitPrice × quantity`.
    async fn line_total(&self) -> Money {
        Money { amount: Decimal(self.0.price_amount * self.0.quantity), currency_code: self.0.currency_code.clone() }
    }

    /// Units available now.
    async fn available_quantity(&self) -> i64 {
        self.0.available
    }

    /// Whether the wanted quantity can be bought now.
    async fn available(&self) -> bool {
        line_available(&self.0)
    }

    /// The unit price when the product was last put in the cart (`null` when not known).
    async fn added_unit_price(&self) -> Option<Money> {
        let amount = self.0.added.amount?;
        let currency_code = self.0.added.currency.clone().unwrap_or_else(|| self.0.currency_code.clone());
        Some(Money { amount: Decimal(amount), currency_code })
    }

    /// Whether the unit price (or its currency) changed since the product was last put in the
    /// cart (adding it again takes the new price as seen): show it to the
    /// customer, and pass the total they saw as `checkout(input: { expectedTotal })`.
    async fn price_changed(&self) -> bool {
        price_changed(&self.0)
    }
}

/// The result of a cart mutation.
#[derive(SimpleObject)]
pub struct CartPayload {
    /// The cart after the change (also after a refused change).
    pub cart: Option<Cart>,
    /// Why the change was refused, if it was.
    pub user_errors: Vec<Refusal>,
}

impl From<CartChange> for CartPayload {
    fn from(change: CartChange) -> Self {
        Self { cart: Some(Cart(change.cart)), user_errors: change.refused.into_iter().collect() }
    }
}

/// What `checkout` needs.
#[derive(InputObject, Debug, Clone)]
pub struct CheckoutInput {
    /// A key the client makes up per checkout (1 to 128 of `A-Z a-z 0-9 - _ : .`); a retry
    /// with the same key and body returns the same order and never charges twice.
    pub idempotency_key: String,
    /// The payment provider's card token (development: `tok_visa`, `tok_declined`, ...).
    pub payment_token: String,
    /// Where to ship.
    pub shipping_address: AddressFields,
    /// The total the customer was shown. When given, a cart that now comes to anything else
    /// (a vendor changed a price) is refused with `PRICE_CHANGED` and nothing is charged.
    pub expected_total: Option<MoneyInput>,
}

/// The result of `checkout`.
#[derive(SimpleObject)]
pub struct CheckoutPayload {
    /// The paid order; `null` when refused.
    pub order: Option<Order>,
    /// Whether this answer replays an earlier checkout with the same idempotency key.
    pub replayed: bool,
    /// Why the checkout was refused, if it was.
    pub user_errors: Vec<Refusal>,
}

/// The result of an order status change.
#[derive(SimpleObject)]
pub struct OrderPayload {
    /// The order after the change (unchanged when refused).
    pub order: Option<Order>,
    /// Why the change was refused, if it was.
    pub user_errors: Vec<Refusal>,
}

impl From<StatusResult> for OrderPayload {
    fn from(r: StatusResult) -> Self {
        Self { order: r.order.map(|o| Order::new(o, &r.scope)), user_errors: r.refused.into_iter().collect() }
    }
}

impl From<CheckoutInput> for CheckoutRequest {
    fn from(i: CheckoutInput) -> Self {
        Self {
            idempotency_key: i.idempotency_key,
            payment_token: i.payment_token,
            shipping_address: i.shipping_address,
            expected_total: i.expected_total.map(|m| (m.amount.0, m.currency_code)),
        }
    }
}

/// Cart and checkout mutations (customers), order status changes.
#[derive(Default)]
pub struct CommerceMutation;

/// The cart query.
#[derive(Default)]
pub struct CartQuery;

#[Object]
impl CartQuery {
    /// The caller's cart (customers).
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn cart(&self, ctx: &Context<'_>) -> async_graphql::Result<Cart> {
        Ok(Cart(services(ctx)?.cart(caller(ctx)).await.gql()?))
    }
}

#[Object]
impl CommerceMutation {
    /// Adds units of a product to the cart (1 to 999; a line holds at most 999).
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn add_cart_item(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
        quantity: i64,
    ) -> async_graphql::Result<CartPayload> {
        Ok(services(ctx)?.add_cart_item(caller(ctx), &product_id, quantity).await.gql()?.into())
    }

    /// Sets a line's quantity (0 to 999; 0 removes the line).
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn update_cart_item(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
        quantity: i64,
    ) -> async_graphql::Result<CartPayload> {
        Ok(services(ctx)?.update_cart_item(caller(ctx), &product_id, quantity).await.gql()?.into())
    }

    /// Removes a product from the cart.
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn remove_cart_item(&self, ctx: &Context<'_>, product_id: ID) -> async_graphql::Result<CartPayload> {
        Ok(services(ctx)?.remove_cart_item(caller(ctx), &product_id).await.gql()?.into())
    }

    /// Empties the cart.
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn clear_cart(&self, ctx: &Context<'_>) -> async_graphql::Result<CartPayload> {
        Ok(services(ctx)?.clear_cart(caller(ctx)).await.gql()?.into())
    }

    /// Places the cart as a paid order, in one transaction: stock is taken (never below zero),
    /// prices are snapshotted, the payment is charged, the cart is emptied. A decline or a
    /// payment timeout changes nothing. Retrying with the same `idempotencyKey` and body returns
    /// the same order (`replayed: true`) and never charges twice; another body with a used key
    /// is refused with `IDEMPOTENCY_KEY_REUSED`.
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn checkout(&self, ctx: &Context<'_>, input: CheckoutInput) -> async_graphql::Result<CheckoutPayload> {
        Ok(match services(ctx)?.checkout(caller(ctx), input.into()).await.gql()? {
            Ok(p) => CheckoutPayload {
                order: Some(Order::new(p.order, &p.scope)),
                replayed: p.replayed,
                user_errors: vec![],
            },
            Err(e) => CheckoutPayload { order: None, replayed: false, user_errors: vec![e] },
        })
    }

    /// Cancels an order before fulfilment (its customer, or an admin): stock is put back and a
    /// paid order is refunded. `INVALID_TRANSITION` once fulfilled or already cancelled.
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn cancel_order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<OrderPayload> {
        Ok(services(ctx)?.cancel_order(caller(ctx), &id).await.gql()?.into())
    }

    /// Marks a paid order as shipped (a vendor with lines in it, or an admin).
    #[graphql(guard = "RoleGuard::any(&[Role::Vendor])")]
    async fn fulfill_order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<OrderPayload> {
        Ok(services(ctx)?.fulfill_order(caller(ctx), &id).await.gql()?.into())
    }
}
