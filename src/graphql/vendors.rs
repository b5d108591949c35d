//! Vendor and admin operations: products, stock, vendors. A vendor changes only its own
//! products (`FORBIDDEN` otherwise); admins change any.

use async_graphql::{Context, ErrorExtensions, ID, InputObject, Object, SimpleObject};

use super::catalog::{Decimal, Product, Vendor};
use super::commerce::{UserError, publish_stock, user_error};
use crate::auth::{Identity, Role, RoleGuard, require_identity};
use crate::bus::EventBus;
use crate::domain::money::Currency;
use crate::domain::{GlobalId, NodeKind, Sku};
use crate::error::{AppError, GqlResultExt};
use crate::store::{ProductRecord, Store};

/// A price to set.
#[derive(InputObject, Debug, Clone)]
pub struct MoneyInput {
    /// Decimal amount, e.g. `"19.99"`.
    pub amount: Decimal,
    /// ISO 4217 code (USD, EUR, GBP, CAD, AUD, CHF, SEK, NZD).
    pub currency_code: String,
}

/// A new product.
#[derive(InputObject, Debug, Clone)]
pub struct CreateProductInput {
    /// The vendor selling it: required for admins; a vendor may omit it (and can only name itself).
    pub vendor_id: Option<ID>,
    /// Unique SKU: 3 to 40 of `A-Z`, `0-9`, `-` (upper-cased).
    pub sku: String,
    /// Display name (1 to 200 characters).
    pub name: String,
    /// Description (up to 5,000 characters).
    #[graphql(default)]
    pub description: String,
    /// Unit price.
    pub price: MoneyInput,
}

/// Changes to a product; absent fields stay as they are.
#[derive(InputObject, Debug, Clone, Default)]
pub struct UpdateProductInput {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New unit price.
    pub price: Option<MoneyInput>,
}

/// A new vendor.
#[derive(InputObject, Debug, Clone)]
pub struct CreateVendorInput {
    /// Display name.
    pub name: String,
    /// URL-friendly unique name (default: made from the name).
    pub slug: Option<String>,
    /// The identity provider's subject of the account that manages the vendor.
    pub owner_subject: Option<String>,
}

/// The result of a product mutation.
#[derive(SimpleObject)]
pub struct ProductPayload {
    /// The product after the change.
    pub product: Option<Product>,
    /// Why the change was refused, if it was.
    pub user_errors: Vec<UserError>,
}

/// The result of a stock mutation.
#[derive(SimpleObject)]
pub struct InventoryPayload {
    /// The product (its `inventory` shows the new level).
    pub product: Option<Product>,
    /// Units available after the change (the current level when refused).
    pub available: Option<i64>,
    /// Whether this answer replays an earlier adjustment with the same idempotency key.
    pub replayed: bool,
    /// Why the change was refused, if it was.
    pub user_errors: Vec<UserError>,
}

/// The result of `createVendor`.
#[derive(SimpleObject)]
pub struct VendorPayload {
    /// The new vendor.
    pub vendor: Option<Vendor>,
    /// Why it was refused, if it was.
    pub user_errors: Vec<UserError>,
}

/// Loads a product the caller may change: NOT_FOUND when missing, FORBIDDEN when another
/// vendor's.
async fn own_product(ctx: &Context<'_>, id: &ID) -> async_graphql::Result<(ProductRecord, Identity)> {
    let identity = require_identity(ctx).gql()?.clone();
    let id = GlobalId::decode_as(id, NodeKind::Product).ok_or_else(|| AppError::NotFound("product").extend())?;
    let product =
        ctx.data::<Store>()?.product(id).await.gql()?.ok_or_else(|| AppError::NotFound("product").extend())?;
    if !identity.is_admin() && identity.vendor_id != Some(product.vendor_id) {
        return Err(AppError::Forbidden("this product belongs to another vendor".into()).extend());
    }
    Ok((product, identity))
}

fn check_text(code: &'static str, field: &str, value: &str, min: usize, max: usize) -> Result<String, UserError> {
    let v = value.trim();
    let n = v.chars().count();
    if n < min || n > max {
        return Err(user_error(code, field, format!("must be {min} to {max} characters")));
    }
    Ok(v.to_string())
}

fn check_price(field: &str, price: &MoneyInput) -> Result<(i64, Currency), UserError> {
    let currency = Currency::parse(&price.currency_code)
        .map_err(|m| user_error("INVALID_CURRENCY", &format!("{field}.currencyCode"), m))?;
    if price.amount.0 > 100_000_000 {
        return Err(user_error("INVALID_PRICE", &format!("{field}.amount"), "a price may be at most 1000000.00"));
    }
    Ok((price.amount.0, currency))
}

/// Tells every replica a product changed, so their caches drop it.
async fn publish_product(ctx: &Context<'_>, product_id: i64) -> async_graphql::Result<()> {
    ctx.data::<EventBus>()?.publish(crate::bus::Event::Product { product_id, at: chrono::Utc::now() }).await;
    Ok(())
}

/// Vendor and admin mutations.
#[derive(Default)]
pub struct VendorMutation;

#[Object]
impl VendorMutation {
    /// Creates a product (vendors: always for themselves). Stock starts at 0.
    #[graphql(guard = "RoleGuard::any(&[Role::Vendor])")]
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        input: CreateProductInput,
    ) -> async_graphql::Result<ProductPayload> {
        let identity = require_identity(ctx).gql()?;
        let named =
            match &input.vendor_id {
                Some(id) => Some(GlobalId::decode_as(id, NodeKind::Vendor).ok_or_else(|| {
                    AppError::invalid_with("INVALID_ID", "input.vendorId", "not a Vendor id").extend()
                })?),
                None => None,
            };
        let vendor_id = if identity.is_admin() {
            named
        } else {
            let own = identity
                .vendor_id
                .ok_or_else(|| AppError::Forbidden("no vendor is linked to this account".into()).extend())?;
            if named.is_some_and(|n| n != own) {
                return Err(AppError::Forbidden("vendors create products only for themselves".into()).extend());
            }
            Some(own)
        };
        let refused = |e| Ok(ProductPayload { product: None, user_errors: vec![e] });
        let Some(vendor_id) = vendor_id else {
            return refused(user_error("VENDOR_REQUIRED", "input.vendorId", "admins name the vendor"));
        };
        let checked = (|| {
            let sku = Sku::parse(&input.sku).map_err(|m| user_error("INVALID_SKU", "input.sku", m))?;
            let name = check_text("INVALID_NAME", "input.name", &input.name, 1, 200)?;
            let description = check_text("INVALID_DESCRIPTION", "input.description", &input.description, 0, 5000)?;
            let (amount, currency) = check_price("input.price", &input.price)?;
            Ok::<_, UserError>((sku, name, description, amount, currency))
        })();
        let (sku, name, description, amount, currency) = match checked {
            Ok(v) => v,
            Err(e) => return refused(e),
        };
        let store = ctx.data::<Store>()?;
        match store.create_product(vendor_id, sku.as_str(), &name, &description, amount, currency.code()).await.gql()? {
            Ok(p) => Ok(ProductPayload { product: Some(Product(p)), user_errors: vec![] }),
            Err(e) => refused(e.into()),
        }
    }

    /// Changes a product's name, description or price (its vendor, or an admin).
    #[graphql(guard = "RoleGuard::any(&[Role::Vendor])")]
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateProductInput,
    ) -> async_graphql::Result<ProductPayload> {
        let (product, _) = own_product(ctx, &id).await?;
        let checked = (|| {
            let name =
                input.name.as_deref().map(|n| check_text("INVALID_NAME", "input.name", n, 1, 200)).transpose()?;
            let description = input
                .description
                .as_deref()
                .map(|d| check_text("INVALID_DESCRIPTION", "input.description", d, 0, 5000))
                .transpose()?;
            let price = input.price.as_ref().map(|p| check_price("input.price", p)).transpose()?;
            Ok::<_, UserError>((name, description, price))
        })();
        let (name, description, price) = match checked {
            Ok(v) => v,
            Err(e) => return Ok(ProductPayload { product: Some(Product(product)), user_errors: vec![e] }),
        };
        let store = ctx.data::<Store>()?;
        let updated = store
            .update_product(
                product.id,
                name.as_deref(),
                description.as_deref(),
                price.as_ref().map(|(a, c)| (*a, c.code())),
            )
            .await
            .gql()?;
        publish_product(ctx, product.id).await?;
        Ok(ProductPayload { product: updated.map(Product), user_errors: vec![] })
    }

    /// Withdraws a product from sale (its vendor, or an admin). Past orders keep it.
    #[graphql(guard = "RoleGuard::any(&[Role::Vendor])")]
    async fn archive_product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ProductPayload> {
        let (product, _) = own_product(ctx, &id).await?;
        let updated = ctx.data::<Store>()?.archive_product(product.id).await.gql()?;
        publish_product(ctx, product.id).await?;
        Ok(ProductPayload { product: updated.map(Product), user_errors: vec![] })
    }

    /// Sets the available stock to `quantity`, only if it is `compareQuantity` now
    /// (`INVENTORY_CONFLICT` otherwise, with the current level): a compare-and-set, so two
    /// editors never overwrite each other blindly.
    #[graphql(guard = "RoleGuard::any(&[Role::Vendor])")]
    async fn set_inventory(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
        quantity: i64,
        compare_quantity: i64,
    ) -> async_graphql::Result<InventoryPayload> {
        let (product, _) = own_product(ctx, &product_id).await?;
        if !(0..=1_000_000).contains(&quantity) {
            let e = user_error("INVALID_QUANTITY", "quantity", "quantity must be between 0 and 1000000");
            return Ok(InventoryPayload {
                product: Some(Product(product)),
                available: None,
                replayed: false,
                user_errors: vec![e],
            });
        }
        let store = ctx.data::<Store>()?;
        match store.set_inventory(&product, quantity, compare_quantity).await.gql()? {
            Ok(change) => {
                publish_stock(ctx.data::<EventBus>()?, std::slice::from_ref(&change)).await;
                Ok(InventoryPayload {
                    product: Some(Product(product)),
                    available: Some(change.available),
                    replayed: false,
                    user_errors: vec![],
                })
            }
            Err(e) => {
                let current = store.inventory_by_product_ids(&[product.id]).await.gql()?.pop().map(|i| i.available);
                Ok(InventoryPayload {
                    product: Some(Product(product)),
                    available: current,
                    replayed: false,
                    user_errors: vec![e.into()],
                })
            }
        }
    }

    /// Adds `delta` units (negative removes), once per `idempotencyKey`: a retry returns the
    /// first result (`replayed: true`). Stock never goes below zero (`INSUFFICIENT_STOCK`).
    #[graphql(guard = "RoleGuard::any(&[Role::Vendor])")]
    async fn adjust_inventory(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
        delta: i64,
        idempotency_key: String,
    ) -> async_graphql::Result<InventoryPayload> {
        let (product, identity) = own_product(ctx, &product_id).await?;
        let bad = if delta == 0 || delta.abs() > 1_000_000 {
            Some(user_error("INVALID_QUANTITY", "delta", "delta must be non-zero and at most 1000000 either way"))
        } else if idempotency_key.is_empty() || idempotency_key.len() > 128 {
            Some(user_error("INVALID_IDEMPOTENCY_KEY", "idempotencyKey", "1 to 128 characters"))
        } else {
            None
        };
        if let Some(e) = bad {
            return Ok(InventoryPayload {
                product: Some(Product(product)),
                available: None,
                replayed: false,
                user_errors: vec![e],
            });
        }
        let store = ctx.data::<Store>()?;
        match store.adjust_inventory(&product, delta, &idempotency_key, &identity.subject).await.gql()? {
            Ok((change, replayed)) => {
                if !replayed {
                    publish_stock(ctx.data::<EventBus>()?, std::slice::from_ref(&change)).await;
                }
                Ok(InventoryPayload {
                    product: Some(Product(product)),
                    available: Some(change.available),
                    replayed,
                    user_errors: vec![],
                })
            }
            Err(e) => Ok(InventoryPayload {
                product: Some(Product(product)),
                available: None,
                replayed: false,
                user_errors: vec![e.into()],
            }),
        }
    }

    /// Creates a vendor (admins).
    #[graphql(guard = "RoleGuard::any(&[Role::Admin])")]
    async fn create_vendor(&self, ctx: &Context<'_>, input: CreateVendorInput) -> async_graphql::Result<VendorPayload> {
        let refused = |e| Ok(VendorPayload { vendor: None, user_errors: vec![e] });
        let name = match check_text("INVALID_NAME", "input.name", &input.name, 1, 200) {
            Ok(n) => n,
            Err(e) => return refused(e),
        };
        let slug = input.slug.clone().unwrap_or_else(|| {
            name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect::<String>()
        });
        let slug = slug.trim_matches('-').to_string();
        if slug.is_empty()
            || slug.len() > 100
            || !slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return refused(user_error("INVALID_SLUG", "input.slug", "1 to 100 of a-z, 0-9, -"));
        }
        match ctx.data::<Store>()?.create_vendor(&name, &slug, input.owner_subject.as_deref()).await.gql()? {
            Ok(v) => Ok(VendorPayload { vendor: Some(Vendor(v)), user_errors: vec![] }),
            Err(e) => refused(e.into()),
        }
    }
}
