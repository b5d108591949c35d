//! The customer's money path: the cart, checkout, and cancelling an order; plus fulfilment.

use async_graphql::{Context, ErrorExtensions, ID, InputObject, Object, SimpleObject};
use sha2::{Digest, Sha256};

use super::account::order_scope;
use super::catalog::{Decimal, Money, Product};
use super::loaders::Loaders;
use super::orders::Order;
use crate::auth::{Role, RoleGuard, require_identity};
use crate::bus::{Event, EventBus};
use crate::domain::order::{OrderStatus, ShippingAddress, check_quantity};
use crate::domain::{GlobalId, NodeKind};
use crate::error::{AppError, GqlResultExt};
use crate::payments::PaymentGateway;
use crate::store::commerce::{CartLineRecord, CheckoutResult, StockChange, UserError as StoreUserError};
use crate::store::{CustomerRecord, OrderScope, Store};

/// A business rule a mutation refused; nothing was changed.
///
/// Codes: `INVALID_QUANTITY`, `PRODUCT_NOT_FOUND`, `PRODUCT_ARCHIVED`, `CURRENCY_MISMATCH`,
/// `CART_LINE_NOT_FOUND`, `CART_EMPTY`, `OUT_OF_STOCK`, `PAYMENT_DECLINED`, `PAYMENT_TIMEOUT`,
/// `PAYMENT_FAILED`, `IDEMPOTENCY_KEY_REUSED`, `INVALID_IDEMPOTENCY_KEY`, `INVALID_PAYMENT_TOKEN`,
/// `INVALID_ADDRESS`, `INVALID_TRANSITION`, `REFUND_FAILED`, `CONFLICT`, `INVALID_SKU`,
/// `INVALID_NAME`, `INVALID_DESCRIPTION`, `INVALID_PRICE`, `INVALID_CURRENCY`, `SKU_TAKEN`,
/// `VENDOR_NOT_FOUND`, `VENDOR_REQUIRED`, `VENDOR_TAKEN`, `INVENTORY_CONFLICT`,
/// `INSUFFICIENT_STOCK`.
#[derive(SimpleObject, Debug, Clone)]
pub struct UserError {
    /// Path to the input field at fault (empty when it is the request as a whole).
    pub field: Vec<String>,
    /// What went wrong, for a human.
    pub message: String,
    /// Stable machine-readable code.
    pub code: String,
}

impl From<StoreUserError> for UserError {
    fn from(e: StoreUserError) -> Self {
        Self { field: e.field, message: e.message, code: e.code.to_string() }
    }
}

/// A user error for the payload (see `UserError` for the codes).
pub(crate) fn user_error(code: &'static str, field: &str, message: impl Into<String>) -> UserError {
    StoreUserError::new(code, field, message).into()
}

/// Publishes the stock changes of a committed transaction.
pub(crate) async fn publish_stock(bus: &EventBus, changes: &[StockChange]) {
    let at = chrono::Utc::now();
    for c in changes {
        bus.publish(Event::Inventory {
            product_id: c.product_id,
            vendor_id: c.vendor_id,
            available: c.available,
            delta: c.delta,
            at,
        })
        .await;
    }
}

/// The calling customer's record, created on first use.
async fn me_as_customer(ctx: &Context<'_>) -> async_graphql::Result<CustomerRecord> {
    let identity = require_identity(ctx).gql()?;
    ctx.data::<Store>()?.ensure_customer(&identity.subject).await.gql()
}

fn product_id_of(id: &ID) -> Result<i64, UserError> {
    GlobalId::decode_as(id, NodeKind::Product)
        .ok_or_else(|| user_error("PRODUCT_NOT_FOUND", "productId", "not a Product id"))
}

/// A shopping cart.
pub struct Cart {
    customer_id: i64,
    lines: Vec<CartLineRecord>,
}

impl Cart {
    pub(crate) async fn load(ctx: &Context<'_>, customer_id: i64) -> async_graphql::Result<Self> {
        let lines = ctx.data::<Store>()?.cart_lines(customer_id).await.gql()?;
        Ok(Self { customer_id, lines })
    }
}

#[Object]
impl Cart {
    /// The cart's global id.
    async fn id(&self) -> ID {
        ID(GlobalId::new(NodeKind::Cart, self.customer_id).encode())
    }

    /// The lines, in product order.
    async fn lines(&self) -> Vec<CartLine> {
        self.lines.iter().cloned().map(CartLine).collect()
    }

    /// Units across all lines.
    async fn total_quantity(&self) -> i64 {
        self.lines.iter().map(|l| l.quantity).sum()
    }

    /// Sum of the lines at today's prices; `null` for an empty cart.
    async fn subtotal(&self) -> Option<Money> {
        let first = self.lines.first()?;
        let sum = self.lines.iter().map(|l| l.price_amount * l.quantity).sum();
        Some(Money { amount: Decimal(sum), currency_code: first.currency_code.clone() })
    }

    /// Whether every line can be bought now (in stock in the wanted quantity, not archived).
    async fn available(&self) -> bool {
        self.lines.iter().all(|l| l.status == "ACTIVE" && l.available >= l.quantity)
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
        self.0.status == "ACTIVE" && self.0.available >= self.0.quantity
    }
}

/// The result of a cart mutation.
#[derive(SimpleObject)]
pub struct CartPayload {
    /// The cart after the change (also after a refused change).
    pub cart: Option<Cart>,
    /// Why the change was refused, if it was.
    pub user_errors: Vec<UserError>,
}

/// A shipping address.
#[derive(InputObject, Debug, Clone)]
pub struct ShippingAddressInput {
    /// Recipient.
    pub name: String,
    /// Street and number.
    pub line1: String,
    /// Flat, floor, ...
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// State, province or region.
    pub region: Option<String>,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code, e.g. `FR`.
    pub country: String,
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
    pub shipping_address: ShippingAddressInput,
}

/// The result of `checkout`.
#[derive(SimpleObject)]
pub struct CheckoutPayload {
    /// The paid order; `null` when refused.
    pub order: Option<Order>,
    /// Whether this answer replays an earlier checkout with the same idempotency key.
    pub replayed: bool,
    /// Why the checkout was refused, if it was.
    pub user_errors: Vec<UserError>,
}

/// The result of an order status change.
#[derive(SimpleObject)]
pub struct OrderPayload {
    /// The order after the change (unchanged when refused).
    pub order: Option<Order>,
    /// Why the change was refused, if it was.
    pub user_errors: Vec<UserError>,
}

fn validate_checkout(input: &CheckoutInput) -> Result<ShippingAddress, UserError> {
    let key = &input.idempotency_key;
    let key_ok = (1..=128).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'));
    if !key_ok {
        return Err(user_error(
            "INVALID_IDEMPOTENCY_KEY",
            "input.idempotencyKey",
            "1 to 128 characters of A-Z, a-z, 0-9, -, _, :, .",
        ));
    }
    if input.payment_token.trim().is_empty() || input.payment_token.len() > 200 {
        return Err(user_error("INVALID_PAYMENT_TOKEN", "input.paymentToken", "a payment token is required"));
    }
    let a = &input.shipping_address;
    ShippingAddress::parse(
        &a.name,
        &a.line1,
        a.line2.as_deref(),
        &a.city,
        a.region.as_deref(),
        &a.postal_code,
        &a.country,
    )
    .map_err(|(field, message)| user_error("INVALID_ADDRESS", &format!("input.shippingAddress.{field}"), message))
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
        let customer = me_as_customer(ctx).await?;
        Cart::load(ctx, customer.id).await
    }
}

impl CommerceMutation {
    async fn cart_payload(
        ctx: &Context<'_>,
        customer: &CustomerRecord,
        refused: Option<UserError>,
    ) -> async_graphql::Result<CartPayload> {
        if refused.is_none() {
            let at = chrono::Utc::now();
            ctx.data::<EventBus>()?.publish(Event::Cart { customer_id: customer.id, at }).await;
        }
        Ok(CartPayload { cart: Some(Cart::load(ctx, customer.id).await?), user_errors: refused.into_iter().collect() })
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
        let customer = me_as_customer(ctx).await?;
        let checked = check_quantity(quantity)
            .map_err(|m| user_error("INVALID_QUANTITY", "quantity", m))
            .and_then(|q| Ok((product_id_of(&product_id)?, q)));
        let refused = match checked {
            Err(e) => Some(e),
            Ok((pid, q)) => ctx.data::<Store>()?.add_cart_item(customer.id, pid, q).await.gql()?.err().map(Into::into),
        };
        Self::cart_payload(ctx, &customer, refused).await
    }

    /// Sets a line's quantity (0 to 999; 0 removes the line).
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn update_cart_item(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
        quantity: i64,
    ) -> async_graphql::Result<CartPayload> {
        let customer = me_as_customer(ctx).await?;
        let checked = (if quantity == 0 { Ok(0) } else { check_quantity(quantity) })
            .map_err(|m| user_error("INVALID_QUANTITY", "quantity", m))
            .and_then(|q| Ok((product_id_of(&product_id)?, q)));
        let refused = match checked {
            Err(e) => Some(e),
            Ok((pid, q)) => ctx.data::<Store>()?.set_cart_item(customer.id, pid, q).await.gql()?.err().map(Into::into),
        };
        Self::cart_payload(ctx, &customer, refused).await
    }

    /// Removes a product from the cart.
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn remove_cart_item(&self, ctx: &Context<'_>, product_id: ID) -> async_graphql::Result<CartPayload> {
        let customer = me_as_customer(ctx).await?;
        let refused = match product_id_of(&product_id) {
            Err(e) => Some(e),
            Ok(pid) => ctx.data::<Store>()?.set_cart_item(customer.id, pid, 0).await.gql()?.err().map(Into::into),
        };
        Self::cart_payload(ctx, &customer, refused).await
    }

    /// Empties the cart.
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn clear_cart(&self, ctx: &Context<'_>) -> async_graphql::Result<CartPayload> {
        let customer = me_as_customer(ctx).await?;
        ctx.data::<Store>()?.clear_cart(customer.id).await.gql()?;
        Self::cart_payload(ctx, &customer, None).await
    }

    /// Places the cart as a paid order, in one transaction: stock is taken (never below zero),
    /// prices are snapshotted, the payment is charged, the cart is emptied. A decline or a
    /// payment timeout changes nothing. Retrying with the same `idempotencyKey` and body returns
    /// the same order (`replayed: true`) and never charges twice; another body with a used key
    /// is refused with `IDEMPOTENCY_KEY_REUSED`.
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn checkout(&self, ctx: &Context<'_>, input: CheckoutInput) -> async_graphql::Result<CheckoutPayload> {
        let customer = me_as_customer(ctx).await?;
        let refused = |e: UserError| CheckoutPayload { order: None, replayed: false, user_errors: vec![e] };
        let address = match validate_checkout(&input) {
            Ok(a) => a,
            Err(e) => return Ok(refused(e)),
        };
        let address_json = serde_json::to_string(&address).map_err(|e| AppError::Internal(e.into()).extend())?;
        // The request body a key is bound to: the payment token and the normalised address.
        let request_hash = {
            let mut h = Sha256::new();
            h.update(input.payment_token.as_bytes());
            h.update([0]);
            h.update(address_json.as_bytes());
            format!("{:x}", h.finalize())
        };
        let gateway = ctx.data::<PaymentGateway>()?.clone();
        let token = input.payment_token.clone();
        let gateway_key = format!("checkout:{}:{}", customer.id, input.idempotency_key);
        let store = ctx.data::<Store>()?;
        let outcome = store
            .checkout(customer.id, &input.idempotency_key, &request_hash, &address_json, move |req| async move {
                gateway.charge(req.amount, &req.currency, &token, &gateway_key).await
            })
            .await
            .gql()?;
        let scope = OrderScope::Customer(customer.id);
        match outcome {
            Err(e) => Ok(refused(e.into())),
            Ok(CheckoutResult::Replayed(order)) => {
                Ok(CheckoutPayload { order: Some(Order::new(order, &scope)), replayed: true, user_errors: vec![] })
            }
            Ok(CheckoutResult::Placed(order, stock)) => {
                let bus = ctx.data::<EventBus>()?;
                publish_stock(bus, &stock).await;
                let mut vendor_ids: Vec<i64> = stock.iter().map(|s| s.vendor_id).collect();
                vendor_ids.sort_unstable();
                vendor_ids.dedup();
                let at = chrono::Utc::now();
                bus.publish(Event::OrderStatus {
                    order_id: order.id,
                    customer_id: customer.id,
                    vendor_ids,
                    status: order.status.clone(),
                    at,
                })
                .await;
                bus.publish(Event::Cart { customer_id: customer.id, at }).await;
                Ok(CheckoutPayload { order: Some(Order::new(order, &scope)), replayed: false, user_errors: vec![] })
            }
        }
    }

    /// Cancels an order before fulfilment (its customer, or an admin): stock is put back and a
    /// paid order is refunded. `INVALID_TRANSITION` once fulfilled or already cancelled.
    #[graphql(guard = "RoleGuard::any(&[Role::Customer])")]
    async fn cancel_order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<OrderPayload> {
        change_status(ctx, id, OrderStatus::Cancelled).await
    }

    /// Marks a paid order as shipped (a vendor with lines in it, or an admin).
    #[graphql(guard = "RoleGuard::any(&[Role::Vendor])")]
    async fn fulfill_order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<OrderPayload> {
        change_status(ctx, id, OrderStatus::Fulfilled).await
    }
}

async fn change_status(ctx: &Context<'_>, id: ID, next: OrderStatus) -> async_graphql::Result<OrderPayload> {
    let mut scope = order_scope(ctx).gql()?;
    // A customer who is also a vendor cancels as a customer.
    if next == OrderStatus::Cancelled
        && let OrderScope::Vendor(_) = scope
    {
        let identity = require_identity(ctx).gql()?;
        if !identity.has(Role::Customer) {
            return Err(AppError::Forbidden("only the order's customer may cancel it".into()).extend());
        }
        let customer = me_as_customer(ctx).await?;
        scope = OrderScope::Customer(customer.id);
    }
    let order_id = GlobalId::decode_as(&id, NodeKind::Order).ok_or_else(|| AppError::NotFound("order").extend())?;
    let gateway = ctx.data::<PaymentGateway>()?.clone();
    let store = ctx.data::<Store>()?;
    let outcome = store
        .change_order_status(&scope, order_id, next, move |reference, amount, currency, order_id| async move {
            gateway.refund(&reference, amount, &currency, &format!("refund:{order_id}")).await
        })
        .await
        .gql()?;
    match outcome {
        Err(e) => {
            let order = store.order(&scope, order_id).await.gql()?.map(|o| Order::new(o, &scope));
            Ok(OrderPayload { order, user_errors: vec![e.into()] })
        }
        Ok(change) => {
            let bus = ctx.data::<EventBus>()?;
            publish_stock(bus, &change.stock).await;
            bus.publish(Event::OrderStatus {
                order_id: change.order.id,
                customer_id: change.order.customer_id,
                vendor_ids: change.vendor_ids,
                status: change.order.status.clone(),
                at: chrono::Utc::now(),
            })
            .await;
            Ok(OrderPayload { order: Some(Order::new(change.order, &scope)), user_errors: vec![] })
        }
    }
}
