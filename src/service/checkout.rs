//! Checkout: the cart becomes a paid order. The rules on the request (idempotency key, payment
//! token, address), the request hash a key is bound to, the refusals, and the events after.

use sha2::{Digest, Sha256};

use super::{Outcome, Refusal, Services, require_role};
use crate::auth::{Caller, Role};
use crate::domain::order::{AddressFields, ShippingAddress};
use crate::error::{AppError, AppResult};
use crate::payments::PaymentOutcome;
use crate::store::{Checkout, OrderRecord, OrderScope, PendingRefund, Reservation, SettledPaid};

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

/// How a payment that did not go through is told to the client: only what is known to be true.
fn payment_refusal(outcome: PaymentOutcome) -> Refusal {
    let field = "input.paymentToken";
    let pending = "the order is held while its outcome is confirmed; retry with the same idempotency key to see \
                   it (nothing is ever charged twice for one key)";
    match outcome {
        PaymentOutcome::Declined(reason) => Refusal::new(
            "PAYMENT_DECLINED",
            field,
            format!("payment declined: {reason}; nothing was charged or ordered"),
        ),
        PaymentOutcome::Timeout => {
            Refusal::new("PAYMENT_TIMEOUT", field, format!("the payment provider did not answer in time; {pending}"))
        }
        PaymentOutcome::Unconfirmed(why) => {
            tracing::warn!(reason = %why, "payment outcome unknown; the order stays pending");
            Refusal::new("PAYMENT_UNCONFIRMED", field, format!("the payment provider's answer was unclear; {pending}"))
        }
        PaymentOutcome::Failed(why) | PaymentOutcome::Approved(why) => {
            tracing::warn!(reason = %why, "payment gateway failure during checkout");
            Refusal::new(
                "PAYMENT_FAILED",
                field,
                "the payment provider could not be reached; nothing was charged or ordered, and the cart is as it was",
            )
        }
    }
}

impl Services {
    /// Places the caller's cart as a paid order, as a saga (see `store::checkout`): the stock is
    /// held and the order recorded `PENDING` first, then the provider is charged with no
    /// transaction open, then the order is settled. A decline changes nothing; a timeout leaves
    /// the order pending until a retry with the same key or the reconciler settles it. A retry
    /// with the same key and body returns the same order (`replayed`) and never charges twice;
    /// another body with a used key is refused.
    pub async fn checkout(&self, caller: &Caller, input: CheckoutRequest) -> AppResult<Outcome<Placed>> {
        let customer = self.as_customer(require_role(caller, &[Role::Customer])?).await?;
        let address = match validate(&input) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let address_json = serde_json::to_string(&address).map_err(|e| AppError::Internal(e.into()))?;
        let hash = request_hash(&input.payment_token, &address_json);
        let expected = input.expected_total.as_ref().map(|(amount, code)| (*amount, code.as_str()));
        let outcome = self
            .store
            .reserve_checkout(customer.id, &input.idempotency_key, &hash, &address_json, expected, &input.payment_token)
            .await?;
        let scope = OrderScope::Customer(customer.id);
        let placed = |order, replayed| Placed { order, replayed, scope: scope.clone() };
        let refusal = match outcome {
            Checkout::Replayed(order) => return Ok(Ok(placed(order, true))),
            Checkout::Reserved(reservation) => {
                return Ok(self.charge(reservation, true).await?.map(|order| placed(order, false)));
            }
            Checkout::Unsettled(reservation) => {
                // A twin request may be asking the provider right now: wait for its answer, up to
                // the payment timeout, before asking again ourselves (with the same key).
                match self.await_settlement(&reservation).await? {
                    Some(order) if order.status != "PENDING" => return Ok(Ok(placed(order, true))),
                    Some(_) => return Ok(self.charge(reservation, false).await?.map(|o| placed(o, false))),
                    // Released by its twin (declined): the key is free and the cart is back.
                    None => {
                        return Box::pin(self.checkout(caller, input)).await;
                    }
                }
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
        };
        Ok(Err(refusal))
    }

    /// The pending order of `pending` once it is settled, or as it is when the payment timeout
    /// has passed since it was placed; `None` if it was released meanwhile.
    async fn await_settlement(&self, pending: &Reservation) -> AppResult<Option<OrderRecord>> {
        let timeout = chrono::Duration::milliseconds(self.settings.payment.timeout_ms as i64 + 200);
        loop {
            let Some(order) = self.store.order(&OrderScope::All, pending.order_id).await? else { return Ok(None) };
            if order.status != "PENDING" || chrono::Utc::now() - order.created_at > timeout {
                return Ok(Some(order));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Charges a pending order (the first time, on a retry, or for the reconciler: the same
    /// provider key each time) and settles it by the answer. A request that could not be sent
    /// proves nothing was charged only on the `first` attempt: asked again, an earlier attempt
    /// under the same key may have charged, so the order stays pending until an answer says.
    async fn charge(&self, pending: Reservation, first: bool) -> AppResult<Outcome<OrderRecord>> {
        let asked = self.payments.charge(pending.amount, &pending.currency, &pending.token, &pending.gateway_key);
        let outcome = match asked.await {
            PaymentOutcome::Failed(why) if !first => PaymentOutcome::Unconfirmed(why),
            outcome => outcome,
        };
        let released = |status| async move {
            // Its events (stock put back, cart refilled) are published by the store on commit.
            self.store.settle_released(pending.payment_id, status).await?;
            Ok::<_, AppError>(())
        };
        match outcome {
            PaymentOutcome::Approved(reference) => self.settle_approved(&pending, &reference).await,
            PaymentOutcome::Declined(reason) => {
                released("DECLINED").await?;
                Ok(Err(payment_refusal(PaymentOutcome::Declined(reason))))
            }
            PaymentOutcome::Failed(why) => {
                released("FAILED").await?;
                Ok(Err(payment_refusal(PaymentOutcome::Failed(why))))
            }
            unknown @ (PaymentOutcome::Timeout | PaymentOutcome::Unconfirmed(_)) => Ok(Err(payment_refusal(unknown))),
        }
    }

    /// The provider approved: the order becomes `PAID`; a charge that went through for an order
    /// cancelled (or gone) meanwhile is refunded, so no money is kept without its order.
    async fn settle_approved(&self, pending: &Reservation, reference: &str) -> AppResult<Outcome<OrderRecord>> {
        let refund_key = format!("refund:{}", pending.gateway_key);
        match self.store.settle_paid(pending.payment_id, reference).await? {
            SettledPaid::Paid(order, _) => Ok(Ok(order)),
            SettledPaid::AlreadySettled(Some(order)) => Ok(Ok(order)),
            SettledPaid::AlreadySettled(None) => {
                tracing::error!(
                    order_id = pending.order_id,
                    reference,
                    "a charge approved for an order that is gone; refunding it"
                );
                let refunded = self.payments.refund(reference, pending.amount, &pending.currency, &refund_key).await;
                tracing::warn!(order_id = pending.order_id, ?refunded, "refund of an orphaned charge");
                Err(AppError::Internal(anyhow::anyhow!(
                    "order {} disappeared while its charge was pending",
                    pending.order_id
                )))
            }
            SettledPaid::CancelledMeanwhile(order, refund) => {
                self.late_refund(&refund).await?;
                Ok(Ok(self.store.order(&OrderScope::All, order.id).await?.unwrap_or(order)))
            }
        }
    }

    /// Asks the provider for a recorded late refund (under its key: asking again refunds once);
    /// once confirmed the order is `REFUNDED`. Otherwise it stays pending for the reconciler.
    /// Whether it was confirmed.
    async fn late_refund(&self, refund: &PendingRefund) -> AppResult<bool> {
        match self.payments.refund(&refund.reference, refund.amount, &refund.currency, &refund.key).await {
            PaymentOutcome::Approved(reference) => {
                self.store.finish_late_refund(refund.refund_id, &reference).await?;
                Ok(true)
            }
            other => {
                tracing::warn!(
                    order_id = refund.order_id,
                    ?other,
                    "a late charge's refund is not confirmed; asking again later"
                );
                Ok(false)
            }
        }
    }

    /// Settles every charge left pending longer than the payment timeout (a crash, a timeout, a
    /// lost answer) by asking the provider again with its key, `batch` at a time. Returns how
    /// many it settled.
    pub async fn reconcile_payments(&self, batch: i64) -> AppResult<usize> {
        let grace = chrono::Duration::milliseconds(self.settings.payment.timeout_ms as i64 + 250);
        let before = chrono::Utc::now() - grace;
        let (mut settled, mut after) = (0, 0);
        loop {
            let page = self.store.pending_charges(before, after, batch).await?;
            let full = page.len() as i64 == batch;
            for charge in page {
                let order_id = charge.order_id;
                after = charge.payment_id;
                match self.charge(charge, false).await? {
                    Err(refusal) if matches!(refusal.code, "PAYMENT_TIMEOUT" | "PAYMENT_UNCONFIRMED") => {
                        tracing::warn!(order_id, "a pending payment is still unconfirmed; asking again later");
                    }
                    outcome => {
                        tracing::info!(order_id, paid = outcome.is_ok(), "settled a pending payment");
                        settled += 1;
                    }
                }
            }
            if !full {
                break;
            }
        }
        // Refunds of charges that completed after their order was cancelled.
        let mut after = 0;
        loop {
            let page = self.store.pending_refunds(before, after, batch).await?;
            let full = page.len() as i64 == batch;
            for refund in page {
                after = refund.refund_id;
                if self.late_refund(&refund).await? {
                    tracing::info!(order_id = refund.order_id, "refunded a charge made after its order was cancelled");
                    settled += 1;
                }
            }
            if !full {
                return Ok(settled);
            }
        }
    }
}
