//! The business rules: one home for every validation, scope check, idempotency rule and event
//! publication. GraphQL resolvers, REST handlers and WebSocket operations call these functions
//! and only shape what they return; a rule changed here changes for every transport at once.
//!
//! Each function takes the caller (`Caller` or `Identity`) and typed input, and answers with
//! - `Ok(value)`,
//! - a `Refusal` inside `Ok` for a business rule that said no (mutations carry it in
//!   `userErrors`; nothing was changed), or
//! - an `AppError` for what fails the whole field or request (`UNAUTHENTICATED`, `FORBIDDEN`,
//!   `NOT_FOUND`, a bad argument, a database failure).
//!
//! Events are published only after the store has committed.

pub mod account;
pub mod cart;
pub mod catalog;
pub mod checkout;
pub mod feeds;
pub mod inventory;
pub mod node;
pub mod orders;
pub mod pagination;
pub mod vendors;

use std::sync::Arc;

use crate::auth::{Caller, Identity, Role, require_identity_of};
use crate::bus::EventBus;
use crate::config::Settings;
use crate::domain::{GlobalId, NodeKind};
use crate::error::{AppError, AppResult};
use crate::payments::PaymentGateway;
use crate::store::Store;

/// A business rule refused the request; nothing was changed. GraphQL shows it as `UserError`
/// in a payload's `userErrors`.
///
/// Codes: `INVALID_QUANTITY`, `PRODUCT_NOT_FOUND`, `PRODUCT_ARCHIVED`, `CURRENCY_MISMATCH`,
/// `CART_LINE_NOT_FOUND`, `CART_EMPTY`, `OUT_OF_STOCK`, `PAYMENT_DECLINED`, `PAYMENT_TIMEOUT`,
/// `PAYMENT_UNCONFIRMED`, `PAYMENT_FAILED`, `IDEMPOTENCY_KEY_REUSED`, `INVALID_IDEMPOTENCY_KEY`,
/// `INVALID_PAYMENT_TOKEN`,
/// `INVALID_ADDRESS`, `INVALID_TRANSITION`, `REFUND_FAILED`, `CONFLICT`, `INVALID_SKU`,
/// `INVALID_NAME`, `INVALID_DESCRIPTION`, `INVALID_PRICE`, `INVALID_CURRENCY`, `INVALID_SLUG`,
/// `SKU_TAKEN`, `VENDOR_NOT_FOUND`, `VENDOR_REQUIRED`, `VENDOR_TAKEN`, `INVENTORY_CONFLICT`,
/// `INSUFFICIENT_STOCK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Path to the input field at fault, e.g. `["input", "quantity"]` (empty: the request).
    pub field: Vec<String>,
    /// What went wrong, for a human.
    pub message: String,
    /// Stable machine-readable code.
    pub code: &'static str,
}

impl Refusal {
    /// A refusal on `field` (a dot-separated path; empty for the request as a whole).
    pub fn new(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        let field = if field.is_empty() { Vec::new() } else { field.split('.').map(String::from).collect() };
        Self { field, message: message.into(), code }
    }
}

/// Either the result, or a refusal and nothing changed.
pub type Outcome<T> = Result<T, Refusal>;

/// The services every transport calls: cheap to clone.
#[derive(Clone)]
pub struct Services {
    store: Store,
    bus: EventBus,
    payments: PaymentGateway,
    settings: Arc<Settings>,
}

impl Services {
    /// The services over one store, bus, payment gateway and settings.
    pub fn new(store: Store, bus: EventBus, payments: PaymentGateway, settings: Arc<Settings>) -> Self {
        Self { store, bus, payments, settings }
    }

    /// The store (read paths that need no rule, e.g. DataLoaders, go straight to it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The event bus (subscriptions read it).
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }
}

/// The identity of a caller who has one of `roles` (admins always pass): `UNAUTHENTICATED`
/// without a valid token, `FORBIDDEN` without the role.
pub fn require_role<'a>(caller: &'a Caller, roles: &[Role]) -> AppResult<&'a Identity> {
    let identity = require_identity_of(caller)?;
    if identity.is_admin() || roles.iter().any(|r| identity.has(*r)) {
        return Ok(identity);
    }
    let wanted: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
    Err(AppError::Forbidden(format!("needs the role {}", wanted.join(" or "))))
}

/// Decodes a global id of `kind` given as argument `field`: `INVALID_ID` when it is not one.
pub fn decode_id(field: &str, id: &str, kind: NodeKind) -> AppResult<i64> {
    GlobalId::decode_as(id, kind)
        .ok_or_else(|| AppError::invalid_with("INVALID_ID", field, format!("`{id}` is not a {kind:?} id")))
}
