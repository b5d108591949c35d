//! Stock changes by a product's vendor (or an admin): compare-and-set, and idempotent
//! adjustments. Every change that goes through is published as an inventory event.

use super::{Refusal, Services};
use crate::auth::Caller;
use crate::error::AppResult;
use crate::store::{Adjustment, ProductRecord, SetStock};

/// Largest stock level, and largest adjustment either way.
pub const MAX_STOCK: i64 = 1_000_000;

/// A product after a stock change.
#[derive(Debug, Clone)]
pub struct StockResult {
    /// The product.
    pub product: ProductRecord,
    /// Units available after the change (the current level when known and refused).
    pub available: Option<i64>,
    /// Whether this replays an earlier adjustment with the same key.
    pub replayed: bool,
    /// The refusal.
    pub refused: Option<Refusal>,
}

impl StockResult {
    fn refused(product: ProductRecord, available: Option<i64>, refusal: Refusal) -> Self {
        Self { product, available, replayed: false, refused: Some(refusal) }
    }
}

impl Services {
    /// Sets the available stock to `quantity`, only if it is `compare` now (a compare-and-set,
    /// so two editors never overwrite each other blindly).
    pub async fn set_inventory(
        &self,
        caller: &Caller,
        product_id: &str,
        quantity: i64,
        compare: i64,
    ) -> AppResult<StockResult> {
        let (product, _) = self.own_product(caller, product_id).await?;
        if !(0..=MAX_STOCK).contains(&quantity) {
            let refusal = Refusal::new("INVALID_QUANTITY", "quantity", "quantity must be between 0 and 1000000");
            return Ok(StockResult::refused(product, None, refusal));
        }
        match self.store.set_inventory(&product, quantity, compare).await? {
            SetStock::Set(change) => {
                Ok(StockResult { product, available: Some(change.available), replayed: false, refused: None })
            }
            SetStock::Conflict { current } => {
                let message = format!("the available quantity is {current}, not {compare}; read it again and retry");
                let refusal = Refusal::new("INVENTORY_CONFLICT", "compareQuantity", message);
                Ok(StockResult::refused(product, Some(current), refusal))
            }
        }
    }

    /// Adds `delta` units (negative removes), once per idempotency key: a retry returns the
    /// first result (`replayed`). Stock never goes below zero.
    pub async fn adjust_inventory(
        &self,
        caller: &Caller,
        product_id: &str,
        delta: i64,
        idempotency_key: &str,
    ) -> AppResult<StockResult> {
        let (product, identity) = self.own_product(caller, product_id).await?;
        // `unsigned_abs`: `i64::MIN.abs()` would overflow.
        let refusal = if delta == 0 || delta.unsigned_abs() > MAX_STOCK as u64 {
            Some(Refusal::new("INVALID_QUANTITY", "delta", "delta must be non-zero and at most 1000000 either way"))
        } else if idempotency_key.is_empty() || idempotency_key.len() > 128 {
            Some(Refusal::new("INVALID_IDEMPOTENCY_KEY", "idempotencyKey", "1 to 128 characters"))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Ok(StockResult::refused(product, None, refusal));
        }
        let outcome = self.store.adjust_inventory(&product, delta, idempotency_key, &identity.subject).await?;
        let refusal = match outcome {
            Adjustment::Applied(change) => {
                return Ok(StockResult { product, available: Some(change.available), replayed: false, refused: None });
            }
            Adjustment::Replayed(change) => {
                return Ok(StockResult { product, available: Some(change.available), replayed: true, refused: None });
            }
            Adjustment::Insufficient => Refusal::new("INSUFFICIENT_STOCK", "delta", "stock cannot go below zero"),
            Adjustment::KeyReused => Refusal::new(
                "IDEMPOTENCY_KEY_REUSED",
                "idempotencyKey",
                "this idempotency key was used for a different adjustment",
            ),
        };
        Ok(StockResult::refused(product, None, refusal))
    }
}

/// Reserved stock is the vendor's business: only the product's vendor and admins may read it
/// (`UNAUTHENTICATED` / `FORBIDDEN` otherwise).
pub fn may_see_reserved(caller: &Caller, vendor_id: i64) -> AppResult<()> {
    let identity = crate::auth::require_identity_of(caller)?;
    let owns = identity.has(crate::auth::Role::Vendor) && identity.vendor_id == Some(vendor_id);
    if identity.is_admin() || owns {
        Ok(())
    } else {
        Err(crate::error::AppError::Forbidden("only the product's vendor may see reserved stock".into()))
    }
}
