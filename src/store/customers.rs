//! Customers: shoppers known by their identity provider's subject, created on first sight.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::columns::customer_columns;
use super::{Store, on_pool, select_by_ids};

/// A customer row: a shopper known by the identity provider's subject.
#[derive(Debug, Clone, FromRow)]
pub struct CustomerRecord {
    /// Row id.
    pub id: i64,
    /// The identity provider's `sub`.
    pub subject: String,
    /// Contact email, if known.
    pub email: Option<String>,
    /// Display name, if known.
    pub name: Option<String>,
    /// First seen.
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// The customer with this subject, if they have been seen.
    pub async fn customer_by_subject(&self, subject: &str) -> sqlx::Result<Option<CustomerRecord>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, CustomerRecord>(
            concat!("SELECT ", customer_columns!(), " FROM customers WHERE subject = $1"),
        ).bind(subject).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// The customer with this subject, created on first sight (safe under concurrency: the
    /// unique subject makes a racing insert a no-op).
    pub async fn ensure_customer(&self, subject: &str) -> sqlx::Result<CustomerRecord> {
        if let Some(c) = self.customer_by_subject(subject).await? {
            return Ok(c);
        }
        on_pool!(self, pool => sqlx::query("INSERT INTO customers (subject) VALUES ($1) ON CONFLICT (subject) DO NOTHING")
            .bind(subject).execute(pool).await.map(|_| ()))?;
        // Never deleted, so the row is there now (a missing one is a real error, not a signal).
        self.customer_by_subject(subject).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// Customers by id (for admins' and vendors' order views).
    pub async fn customers_by_ids(&self, ids: &[i64]) -> sqlx::Result<Vec<CustomerRecord>> {
        select_by_ids!(
            &self.backend,
            CustomerRecord,
            concat!("SELECT ", customer_columns!(), " FROM customers"),
            "id",
            ids
        )
    }
}
