//! Vendor and admin operations: products, stock, vendors. A vendor changes only its own
//! products (`FORBIDDEN` otherwise); admins change any.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};

use super::catalog::{Decimal, Product, Vendor};
use super::services;
use crate::auth::{Role, RoleGuard, caller};
use crate::error::GqlResultExt;
use crate::service::Refusal;
use crate::service::inventory::StockResult;
use crate::service::vendors::{NewProductInput, PriceInput, ProductChange, ProductChanges};

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
    pub user_errors: Vec<Refusal>,
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
    pub user_errors: Vec<Refusal>,
}

/// The result of `createVendor`.
#[derive(SimpleObject)]
pub struct VendorPayload {
    /// The new vendor.
    pub vendor: Option<Vendor>,
    /// Why it was refused, if it was.
    pub user_errors: Vec<Refusal>,
}

impl From<MoneyInput> for PriceInput {
    fn from(m: MoneyInput) -> Self {
        Self { amount: m.amount.0, currency_code: m.currency_code }
    }
}

impl From<ProductChange> for ProductPayload {
    fn from(c: ProductChange) -> Self {
        Self { product: c.product.map(Product), user_errors: c.refused.into_iter().collect() }
    }
}

impl From<StockResult> for InventoryPayload {
    fn from(r: StockResult) -> Self {
        Self {
            product: Some(Product(r.product)),
            available: r.available,
            replayed: r.replayed,
            user_errors: r.refused.into_iter().collect(),
        }
    }
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
        let input = NewProductInput {
            vendor_id: input.vendor_id.map(|id| id.0),
            sku: input.sku,
            name: input.name,
            description: input.description,
            price: input.price.into(),
        };
        let created = services(ctx)?.create_product(caller(ctx), input).await.gql()?;
        Ok(ProductChange { product: created.as_ref().ok().cloned(), refused: created.err() }.into())
    }

    /// Changes a product's name, description or price (its vendor, or an admin).
    #[graphql(guard = "RoleGuard::any(&[Role::Vendor])")]
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateProductInput,
    ) -> async_graphql::Result<ProductPayload> {
        let changes =
            ProductChanges { name: input.name, description: input.description, price: input.price.map(Into::into) };
        Ok(services(ctx)?.update_product(caller(ctx), &id, changes).await.gql()?.into())
    }

    /// Withdraws a product from sale (its vendor, or an admin). Past orders keep it.
    #[graphql(guard = "RoleGuard::any(&[Role::Vendor])")]
    async fn archive_product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ProductPayload> {
        let product = services(ctx)?.archive_product(caller(ctx), &id).await.gql()?;
        Ok(ProductChange { product, refused: None }.into())
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
        let result = services(ctx)?.set_inventory(caller(ctx), &product_id, quantity, compare_quantity).await;
        Ok(result.gql()?.into())
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
        let result = services(ctx)?.adjust_inventory(caller(ctx), &product_id, delta, &idempotency_key).await;
        Ok(result.gql()?.into())
    }

    /// Creates a vendor (admins).
    #[graphql(guard = "RoleGuard::any(&[Role::Admin])")]
    async fn create_vendor(&self, ctx: &Context<'_>, input: CreateVendorInput) -> async_graphql::Result<VendorPayload> {
        let (slug, owner) = (input.slug.as_deref(), input.owner_subject.as_deref());
        Ok(match services(ctx)?.create_vendor(caller(ctx), &input.name, slug, owner).await.gql()? {
            Ok(v) => VendorPayload { vendor: Some(Vendor(v)), user_errors: vec![] },
            Err(e) => VendorPayload { vendor: None, user_errors: vec![e] },
        })
    }
}
