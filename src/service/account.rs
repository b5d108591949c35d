//! Who the caller is: their customer record (created on first use) and the vendor they act for.

use super::Services;
use crate::auth::{Identity, Role};
use crate::error::AppResult;
use crate::store::{CustomerRecord, VendorRecord};

impl Services {
    /// The caller's customer record, created on first use; `None` without the customer role.
    pub async fn customer_of(&self, identity: &Identity) -> AppResult<Option<CustomerRecord>> {
        if !identity.has(Role::Customer) {
            return Ok(None);
        }
        Ok(Some(self.store.ensure_customer(&identity.subject).await?))
    }

    /// The vendor the caller acts for, when they have the vendor role and one is linked.
    pub async fn vendor_of(&self, identity: &Identity) -> AppResult<Option<VendorRecord>> {
        let Some(id) = identity.vendor_id.filter(|_| identity.has(Role::Vendor)) else {
            return Ok(None);
        };
        Ok(self.store.vendors_by_ids(&[id]).await?.pop())
    }

    /// The customer record of a caller acting as a customer (created on first use).
    pub(crate) async fn as_customer(&self, identity: &Identity) -> AppResult<CustomerRecord> {
        Ok(self.store.ensure_customer(&identity.subject).await?)
    }
}
