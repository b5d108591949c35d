//! Carts: one per customer, a line per product; quantities checked by the schema (1..999).

use chrono::Utc;
use sqlx::FromRow;

use super::outbox::record_events;
use super::{Store, is_check_violation, on_pool, on_reader};
use crate::domain::event::Event;

/// A cart line with what checkout needs of its product.
#[derive(Debug, Clone, FromRow)]
pub struct CartLineRecord {
    /// The product.
    pub product_id: i64,
    /// Units wanted.
    pub quantity: i64,
    /// Its vendor.
    pub vendor_id: i64,
    /// SKU now.
    pub sku: String,
    /// Name now.
    pub name: String,
    /// Unit price now.
    pub price_amount: i64,
    /// Currency.
    pub currency_code: String,
    /// `ACTIVE` or `ARCHIVED`.
    pub status: String,
    /// Units available now.
    pub available: i64,
    /// The unit price when the product was last added (unknown for older lines).
    #[sqlx(flatten)]
    pub added: AddedPrice,
}

/// A cart line's unit price when its product was last added.
#[derive(Debug, Clone, FromRow)]
pub struct AddedPrice {
    /// Minor units.
    #[sqlx(rename = "added_price_amount")]
    pub amount: Option<i64>,
    /// Currency.
    #[sqlx(rename = "added_currency_code")]
    pub currency: Option<String>,
}

/// What adding to a cart came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddToCart {
    /// Added (summed with the line already there).
    Added,
    /// No product has this id.
    ProductMissing,
    /// The product is archived.
    ProductArchived,
    /// The cart holds products priced in `cart`; this one is priced in `product`.
    CurrencyMismatch {
        /// The cart's currency.
        cart: String,
        /// The product's currency.
        product: String,
    },
    /// The line would hold more than the schema allows.
    LineFull,
    /// The cart already holds as many products as it may.
    CartFull,
}

pub(crate) const CART_LINES: &str = "SELECT ci.product_id, ci.quantity, p.vendor_id, p.sku, p.name, p.price_amount, \
     p.currency_code, p.status, COALESCE(i.available, 0) AS available, ci.added_price_amount, ci.added_currency_code \
     FROM cart_items ci JOIN carts c ON c.id = ci.cart_id JOIN products p ON p.id = ci.product_id \
     LEFT JOIN inventory i ON i.product_id = ci.product_id WHERE c.customer_id = $1 ORDER BY ci.product_id";

pub(crate) const EMPTY_CART: &str =
    "DELETE FROM cart_items WHERE cart_id = (SELECT id FROM carts WHERE customer_id = $1)";

impl Store {
    /// The customer's cart, line by line with product and stock (empty when there is none).
    pub async fn cart_lines(&self, customer_id: i64) -> sqlx::Result<Vec<CartLineRecord>> {
        on_reader!(self, pool => sqlx::query_as::<_, CartLineRecord>(CART_LINES).bind(customer_id).fetch_all(pool).await)
    }

    /// Adds `quantity` units of a product to the customer's cart (summing with a line already there).
    /// A product not yet in the cart is refused when it holds `max_lines` products already.
    pub async fn add_cart_item(
        &self,
        customer_id: i64,
        product_id: i64,
        quantity: i64,
        max_lines: usize,
    ) -> sqlx::Result<AddToCart> {
        let now = Utc::now();
        on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            let product: Option<(String, String, i64)> =
                sqlx::query_as("SELECT status, currency_code, price_amount FROM products WHERE id = $1").bind(product_id).fetch_optional(&mut *tx).await?;
            let Some((status, currency, price)) = product else {
                return Ok(AddToCart::ProductMissing);
            };
            if status != "ACTIVE" {
                return Ok(AddToCart::ProductArchived);
            }
            sqlx::query("INSERT INTO carts (customer_id, updated_at) VALUES ($1, $2) \
                         ON CONFLICT (customer_id) DO UPDATE SET updated_at = excluded.updated_at")
                .bind(customer_id).bind(now).execute(&mut *tx).await?;
            let other: Option<String> = sqlx::query_scalar(
                "SELECT p.currency_code FROM cart_items ci JOIN carts c ON c.id = ci.cart_id JOIN products p ON p.id = ci.product_id \
                 WHERE c.customer_id = $1 AND p.currency_code <> $2 LIMIT 1")
                .bind(customer_id).bind(&currency).fetch_optional(&mut *tx).await?;
            if let Some(other) = other {
                return Ok(AddToCart::CurrencyMismatch { cart: other, product: currency });
            }
            let (lines, this): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COUNT(CASE WHEN ci.product_id = $2 THEN 1 END) FROM cart_items ci \
                 JOIN carts c ON c.id = ci.cart_id WHERE c.customer_id = $1")
                .bind(customer_id).bind(product_id).fetch_one(&mut *tx).await?;
            if this == 0 && lines >= max_lines as i64 {
                return Ok(AddToCart::CartFull);
            }
            // An atomic upsert: two devices adding at once both count, and the CHECK constraint
            // (1..999) refuses a sum that is too large.
            // Adding again is seeing the price again: the line remembers the latest one.
            let added = sqlx::query("INSERT INTO cart_items (cart_id, product_id, quantity, added_at, added_price_amount, \
                         added_currency_code) SELECT id, $2, $3, $4, $5, $6 FROM carts WHERE customer_id = $1 \
                         ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = cart_items.quantity + excluded.quantity, \
                         added_price_amount = excluded.added_price_amount, added_currency_code = excluded.added_currency_code")
                .bind(customer_id).bind(product_id).bind(quantity).bind(now).bind(price).bind(&currency).execute(&mut *tx).await;
            match added {
                Err(e) if is_check_violation(&e) => return Ok(AddToCart::LineFull),
                other => other?,
            };
            let recorded = record_events!(tx, [Event::Cart { customer_id, at: now }], now)?;
            tx.commit().await?;
            self.committed(recorded);
            Ok(AddToCart::Added)
        }.await)
    }

    /// Sets a line's quantity (0 removes it). `false` when the product is not in the cart.
    pub async fn set_cart_item(&self, customer_id: i64, product_id: i64, quantity: i64) -> sqlx::Result<bool> {
        let now = Utc::now();
        let recorded = on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            let changed = if quantity == 0 {
                sqlx::query("DELETE FROM cart_items WHERE product_id = $2 AND cart_id = (SELECT id FROM carts WHERE customer_id = $1)")
                    .bind(customer_id).bind(product_id).execute(&mut *tx).await?
            } else {
                sqlx::query("UPDATE cart_items SET quantity = $3 WHERE product_id = $2 AND cart_id = (SELECT id FROM carts WHERE customer_id = $1)")
                    .bind(customer_id).bind(product_id).bind(quantity).execute(&mut *tx).await?
            };
            if changed.rows_affected() == 0 {
                return Ok::<_, sqlx::Error>(None);
            }
            let recorded = record_events!(tx, [Event::Cart { customer_id, at: now }], now)?;
            tx.commit().await?;
            Ok(Some(recorded))
        }.await)?;
        let changed = recorded.is_some();
        self.committed(recorded.unwrap_or_default());
        Ok(changed)
    }

    /// Empties the customer's cart.
    pub async fn clear_cart(&self, customer_id: i64) -> sqlx::Result<()> {
        let now = Utc::now();
        let recorded = on_pool!(self, pool => async {
            let mut tx = pool.begin_with(self.write_begin()).await?;
            sqlx::query(EMPTY_CART).bind(customer_id).execute(&mut *tx).await?;
            let recorded = record_events!(tx, [Event::Cart { customer_id, at: now }], now)?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(recorded)
        }.await)?;
        self.committed(recorded);
        Ok(())
    }
}
