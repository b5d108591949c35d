//! Vendors: the merchants, their owners' subjects, created by admins.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::columns::vendor_columns;
use super::{Store, is_unique_violation, on_pool, on_reader, read, select_by_ids};

/// A vendor row.
#[derive(Debug, Clone, FromRow)]
pub struct VendorRecord {
    /// Row id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// URL-friendly unique name.
    pub slug: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// What creating a vendor came to.
#[derive(Debug, Clone)]
pub enum NewVendor {
    /// Created.
    Created(VendorRecord),
    /// Another vendor has this slug or owner.
    Taken,
}

impl Store {
    /// Vendors by id, in any order; missing ids are left out. One statement.
    pub async fn vendors_by_ids(&self, ids: &[i64]) -> sqlx::Result<Vec<VendorRecord>> {
        read!(self, self.reader(), backend => {
            select_by_ids!(backend, VendorRecord, concat!("SELECT ", vendor_columns!(), " FROM vendors"), "id", ids)
        })
    }

    /// Vendors by name, a page at a time (`after` is the last id seen; names tie-break by id).
    pub async fn list_vendors(&self, after: Option<(String, i64)>, limit: u32) -> sqlx::Result<Vec<VendorRecord>> {
        let limit = i64::from(limit) + 1;
        let rows = on_reader!(self, pool => match &after {
            Some((name, id)) => sqlx::query_as::<_, VendorRecord>(
                concat!("SELECT ", vendor_columns!(), " FROM vendors WHERE (name, id) > ($1, $2) ORDER BY name, id LIMIT $3"),
            )
            .bind(name.clone()).bind(*id).bind(limit).fetch_all(pool).await,
            None => sqlx::query_as::<_, VendorRecord>(
                concat!("SELECT ", vendor_columns!(), " FROM vendors ORDER BY name, id LIMIT $1"),
            )
            .bind(limit).fetch_all(pool).await,
        })?;
        Ok(rows)
    }

    /// How many vendors exist.
    pub async fn count_vendors(&self) -> sqlx::Result<i64> {
        let n = on_reader!(self, pool => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM vendors").fetch_one(pool).await)?;
        Ok(n)
    }

    /// The vendor whose account is linked to this subject.
    pub async fn vendor_id_for_owner(&self, subject: &str) -> sqlx::Result<Option<i64>> {
        let id = on_pool!(self, pool => sqlx::query_scalar::<_, i64>("SELECT id FROM vendors WHERE owner_subject = $1")
            .bind(subject).fetch_optional(pool).await)?;
        Ok(id)
    }

    /// Creates a vendor; the slug and the owner's subject are unique.
    pub async fn create_vendor(&self, name: &str, slug: &str, owner_subject: Option<&str>) -> sqlx::Result<NewVendor> {
        let now = Utc::now();
        let row = on_pool!(self, pool => sqlx::query_as::<_, VendorRecord>(
            concat!("INSERT INTO vendors (name, slug, owner_subject, created_at) VALUES ($1, $2, $3, $4) RETURNING ", vendor_columns!()))
            .bind(name).bind(slug).bind(owner_subject).bind(now).fetch_one(pool).await);
        match row {
            Ok(v) => Ok(NewVendor::Created(v)),
            Err(e) if is_unique_violation(&e) => Ok(NewVendor::Taken),
            Err(e) => Err(e),
        }
    }
}
