//! Checkout: the cart becomes a paid order. The rules on the request (idempotency key, payment
//! token, address), the request hash a key is bound to, the refusals, and the events after.

use sha2::{Digest, Sha256};

use super::{Outcome, Refusal, Services, require_role};
use crate::auth::{Caller, Role};
use crate::bus::Event;
use crate::domain::order::{AddressFields, ShippingAddress};
use crate::error::{AppError, AppResult};
use crate::payments::PaymentOutcome;
use crate::store::{Checkout, OrderRecord, OrderScope};

/// What a checkout needs.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    /// 1 to 128 of `A-Z a-z 0-9 - _ : .`, made up by the client per checkout.
    pub idempotency_key: String,
    /// The payment provider's card token.
    pub payment_token: String,
    /// Where to ship.
    pub shipping_address: AddressFields,
    /// The total the client showed its customer (minor units, currency): the checkout is
    /// refused with `PRICE_CHANGED` if the cart now comes to anything else.
    pub expected_total: Option<(i64, String)>,
}

/// A placed (or replayed) order.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The paid order.
    pub order: OrderRecord,
    /// Whether this replays an earlier checkout with the same key.
    pub replayed: bool,
    /// The customer's scope (to show the order).
    pub scope: OrderScope,
}

fn validate(input: &CheckoutRequest) -> Outcome<ShippingAddress> {
    let key = &input.idempotency_key;
    let key_ok = (1..=128).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'));
    if !key_ok {
        return Err(Refusal::new(
            "INVALID_IDEMPOTENCY_KEY",
            "input.idempotencyKey",
            "1 to 128 characters of A-Z, a-z, 0-9, -, _, :, .",
        ));
    }
    if input.payment_token.trim().is_empty() || input.payment_token.len() > 200 {
        return Err(Refusal::new("INVALID_PAYMENT_TOKEN", "input.paymentToken", "a payment token is required"));
    }
    ShippingAddress::parse(&input.shipping_address)
        .map_err(|(field, message)| Refusal::new("INVALID_ADDRESS", &format!("input.shippingAddress.{field}"), message))
}

/// The request body a key is bound to: the payment token and the normalised address.
fn request_hash(payment_token: &str, address_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(payment_token.as_bytes());
    h.update([0]);
    h.update(address_json.as_bytes());
    format!("{:x}", h.finalize())
}

fn payment_refusal(outcome: PaymentOutcome) -> Refusal {
    let field = "input.paymentToken";
    match outcome {
        PaymentOutcome::Declined(reason) => {
            Refusal::new("PAYMENT_DECLINED", field, format!("payment declined: {reason}"))
        }
        PaymentOutcome::Timeout => Refusal::new(
            "PAYMENT_TIMEOUT",
            field,
            "the payment provider did not answer in time; nothing was charged or ordered, retry with the same idempotency key",
        ),
        PaymentOutcome::Failed(why) | PaymentOutcome::Approved(why) => {
            tracing::warn!(reason = %why, "payment gateway failure during checkout");
            Refusal::new(
                "PAYMENT_FAILED",
                field,
                "the payment provider failed; nothing was charged or ordered, retry with the same idempotency key",
            )
        }
    }
}

impl Services {
    /// Places the caller's cart as a paid order, in one transaction: stock is taken (never below
    /// zero), prices are snapshotted, the payment is charged, the cart is emptied. A decline or a
    /// payment timeout changes nothing. A retry with the same key and body returns the same order
    /// (`replayed`) and never charges twice; another body with a used key is refused.
    pub async fn checkout(&self, caller: &Caller, input: CheckoutRequest) -> AppResult<Outcome<Placed>> {
        let customer = self.as_customer(require_role(caller, &[Role::Customer])?).await?;
        let address = match validate(&input) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let address_json = serde_json::to_string(&address).map_err(|e| AppError::Internal(e.into()))?;
        let hash = request_hash(&input.payment_token, &address_json);
        let gateway = self.payments.clone();
        let token = input.payment_token.clone();
        let gateway_key = format!("checkout:{}:{}", customer.id, input.idempotency_key);
        let charge = move |req: crate::store::ChargeRequest| async move {
            match gateway.charge(req.amount, &req.currency, &token, &gateway_key).await {
                PaymentOutcome::Approved(reference) => Ok(reference),
                other => Err(other),
            }
        };
        let expected = input.expected_total.as_ref().map(|(amount, code)| (*amount, code.as_str()));
        let outcome =
            self.store.checkout(customer.id, &input.idempotency_key, &hash, &address_json, expected, charge).await?;
        let scope = OrderScope::Customer(customer.id);
        let refusal = match outcome {
            Checkout::Replayed(order) => return Ok(Ok(Placed { order, replayed: true, scope })),
            Checkout::Placed(order, stock) => {
                self.publish_stock(&stock).await;
                let mut vendor_ids: Vec<i64> = stock.iter().map(|s| s.vendor_id).collect();
                vendor_ids.sort_unstable();
                vendor_ids.dedup();
                let at = chrono::Utc::now();
                let status = order.status.clone();
                self.bus
                    .publish(Event::OrderStatus {
                        order_id: order.id,
                        customer_id: customer.id,
                        vendor_ids,
                        status,
                        at,
                    })
                    .await;
                self.bus.publish(Event::Cart { customer_id: customer.id, at }).await;
                return Ok(Ok(Placed { order, replayed: false, scope }));
            }
            Checkout::KeyReused => Refusal::new(
                "IDEMPOTENCY_KEY_REUSED",
                "input.idempotencyKey",
                "this idempotency key was used for a different checkout request",
            ),
            Checkout::CartEmpty => Refusal::new("CART_EMPTY", "", "the cart is empty"),
            Checkout::Archived { sku } => Refusal::new("PRODUCT_ARCHIVED", "", format!("{sku} is no longer sold")),
            Checkout::OutOfStock { sku, left } => {
                Refusal::new("OUT_OF_STOCK", "", format!("{sku} has only {left} left"))
            }
            Checkout::MixedCurrencies { currencies } => Refusal::new(
                "CURRENCY_MISMATCH",
                "",
                format!(
                    "the cart holds products priced in {}; keep one currency to check out",
                    currencies.join(" and ")
                ),
            ),
            Checkout::TotalChanged { amount, currency } => Refusal::new(
                "PRICE_CHANGED",
                "input.expectedTotal",
                format!(
                    "the cart now comes to {} {currency}; show the customer the new total and check out again",
                    crate::domain::money::format_minor(amount)
                ),
            ),
            Checkout::ChargeRefused(outcome) => payment_refusal(outcome),
        };
        Ok(Err(refusal))
    }
}
