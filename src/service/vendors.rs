//! Vendors and their products: creating vendors (admins), creating, changing and archiving
//! products (a vendor its own, `FORBIDDEN` otherwise; admins any).

use super::{Outcome, Refusal, Services, require_role};
use crate::auth::{Caller, Identity, Role};
use crate::bus::Event;
use crate::domain::money::Currency;
use crate::domain::{GlobalId, NodeKind, Sku};
use crate::error::{AppError, AppResult};
use crate::store::{NewProduct, NewVendor, ProductRecord, VendorRecord};

/// A price as the client sends it.
#[derive(Debug, Clone)]
pub struct PriceInput {
    /// Minor units (GraphQL's `Decimal` has parsed it).
    pub amount: i64,
    /// ISO 4217 code.
    pub currency_code: String,
}

/// A new product.
#[derive(Debug, Clone)]
pub struct NewProductInput {
    /// The vendor's global id (admins must name one; vendors may name only themselves).
    pub vendor_id: Option<String>,
    /// SKU: 3 to 40 of `A-Z`, `0-9`, `-` (upper-cased).
    pub sku: String,
    /// 1 to 200 characters.
    pub name: String,
    /// Up to 5,000 characters.
    pub description: String,
    /// Unit price.
    pub price: PriceInput,
}

/// Changes to a product; absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct ProductChanges {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New price.
    pub price: Option<PriceInput>,
}

/// A product after a change, and why the change was refused, if it was.
#[derive(Debug, Clone)]
pub struct ProductChange {
    /// The product now.
    pub product: Option<ProductRecord>,
    /// The refusal.
    pub refused: Option<Refusal>,
}

/// Text trimmed and `min..=max` characters long, or `code` on `field`.
pub(crate) fn check_text(code: &'static str, field: &str, value: &str, min: usize, max: usize) -> Outcome<String> {
    let v = value.trim();
    let n = v.chars().count();
    if n < min || n > max {
        return Err(Refusal::new(code, field, format!("must be {min} to {max} characters")));
    }
    Ok(v.to_string())
}

fn check_price(field: &str, price: &PriceInput) -> Outcome<(i64, Currency)> {
    let currency = Currency::parse(&price.currency_code)
        .map_err(|m| Refusal::new("INVALID_CURRENCY", &format!("{field}.currencyCode"), m))?;
    if price.amount > 100_000_000 {
        return Err(Refusal::new("INVALID_PRICE", &format!("{field}.amount"), "a price may be at most 1000000.00"));
    }
    Ok((price.amount, currency))
}

fn slug_of(name: &str, given: Option<&str>) -> Outcome<String> {
    let slug = given.map(str::to_string).unwrap_or_else(|| {
        name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect::<String>()
    });
    let slug = slug.trim_matches('-').to_string();
    if slug.is_empty()
        || slug.len() > 100
        || !slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Refusal::new("INVALID_SLUG", "input.slug", "1 to 100 of a-z, 0-9, -"));
    }
    Ok(slug)
}

/// The vendor a product is created for: admins name it, vendors are it.
fn vendor_for_new_product(identity: &Identity, named: Option<&str>) -> AppResult<Option<i64>> {
    let named = named
        .map(|id| {
            GlobalId::decode_as(id, NodeKind::Vendor)
                .ok_or_else(|| AppError::invalid_with("INVALID_ID", "input.vendorId", "not a Vendor id"))
        })
        .transpose()?;
    if identity.is_admin() {
        return Ok(named);
    }
    let own = identity.vendor_id.ok_or_else(|| AppError::Forbidden("no vendor is linked to this account".into()))?;
    if named.is_some_and(|n| n != own) {
        return Err(AppError::Forbidden("vendors create products only for themselves".into()));
    }
    Ok(Some(own))
}

impl Services {
    /// A product the caller may change: `NOT_FOUND` when missing, `FORBIDDEN` when another
    /// vendor's.
    pub(crate) async fn own_product<'a>(
        &self,
        caller: &'a Caller,
        id: &str,
    ) -> AppResult<(ProductRecord, &'a Identity)> {
        let identity = require_role(caller, &[Role::Vendor])?;
        let id = GlobalId::decode_as(id, NodeKind::Product).ok_or(AppError::NotFound("product"))?;
        let product = self.store.product(id).await?.ok_or(AppError::NotFound("product"))?;
        if !identity.is_admin() && identity.vendor_id != Some(product.vendor_id) {
            return Err(AppError::Forbidden("this product belongs to another vendor".into()));
        }
        Ok((product, identity))
    }

    /// Creates a product (vendors: always for themselves). Stock starts at 0.
    pub async fn create_product(&self, caller: &Caller, input: NewProductInput) -> AppResult<Outcome<ProductRecord>> {
        let identity = require_role(caller, &[Role::Vendor])?;
        let Some(vendor_id) = vendor_for_new_product(identity, input.vendor_id.as_deref())? else {
            return Ok(Err(Refusal::new("VENDOR_REQUIRED", "input.vendorId", "admins name the vendor")));
        };
        let checked = (|| {
            let sku = Sku::parse(&input.sku).map_err(|m| Refusal::new("INVALID_SKU", "input.sku", m))?;
            let name = check_text("INVALID_NAME", "input.name", &input.name, 1, 200)?;
            let description = check_text("INVALID_DESCRIPTION", "input.description", &input.description, 0, 5000)?;
            let (amount, currency) = check_price("input.price", &input.price)?;
            Ok::<_, Refusal>((sku, name, description, amount, currency))
        })();
        let (sku, name, description, amount, currency) = match checked {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let created =
            self.store.create_product(vendor_id, sku.as_str(), &name, &description, amount, currency.code()).await?;
        Ok(match created {
            NewProduct::Created(p) => Ok(p),
            NewProduct::VendorMissing => Err(Refusal::new("VENDOR_NOT_FOUND", "input.vendorId", "no such vendor")),
            NewProduct::SkuTaken => {
                Err(Refusal::new("SKU_TAKEN", "input.sku", format!("SKU {} is already used", sku.as_str())))
            }
        })
    }

    /// Changes a product's name, description or price (its vendor, or an admin).
    pub async fn update_product(&self, caller: &Caller, id: &str, input: ProductChanges) -> AppResult<ProductChange> {
        let (product, _) = self.own_product(caller, id).await?;
        let checked = (|| {
            let name =
                input.name.as_deref().map(|n| check_text("INVALID_NAME", "input.name", n, 1, 200)).transpose()?;
            let description = input
                .description
                .as_deref()
                .map(|d| check_text("INVALID_DESCRIPTION", "input.description", d, 0, 5000))
                .transpose()?;
            let price = input.price.as_ref().map(|p| check_price("input.price", p)).transpose()?;
            Ok::<_, Refusal>((name, description, price))
        })();
        let (name, description, price) = match checked {
            Ok(v) => v,
            Err(e) => return Ok(ProductChange { product: Some(product), refused: Some(e) }),
        };
        let price = price.as_ref().map(|(a, c)| (*a, c.code()));
        let updated = self.store.update_product(product.id, name.as_deref(), description.as_deref(), price).await?;
        self.product_changed(product.id).await;
        Ok(ProductChange { product: updated, refused: None })
    }

    /// Withdraws a product from sale (its vendor, or an admin). Past orders keep it.
    pub async fn archive_product(&self, caller: &Caller, id: &str) -> AppResult<Option<ProductRecord>> {
        let (product, _) = self.own_product(caller, id).await?;
        let updated = self.store.archive_product(product.id).await?;
        self.product_changed(product.id).await;
        Ok(updated)
    }

    /// Creates a vendor (admins): `slug` defaults to one made from the name; `owner` is the
    /// subject of the account that manages it.
    pub async fn create_vendor(
        &self,
        caller: &Caller,
        name: &str,
        slug: Option<&str>,
        owner: Option<&str>,
    ) -> AppResult<Outcome<VendorRecord>> {
        require_role(caller, &[Role::Admin])?;
        let checked =
            check_text("INVALID_NAME", "input.name", name, 1, 200).and_then(|name| Ok((slug_of(&name, slug)?, name)));
        let (slug, name) = match checked {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        Ok(match self.store.create_vendor(&name, &slug, owner).await? {
            NewVendor::Created(v) => Ok(v),
            NewVendor::Taken => {
                Err(Refusal::new("VENDOR_TAKEN", "input.slug", "a vendor with this slug or owner already exists"))
            }
        })
    }

    /// Tells every replica a product changed, so their caches drop it.
    async fn product_changed(&self, product_id: i64) {
        self.bus.publish(Event::Product { product_id, at: chrono::Utc::now() }).await;
    }
}
