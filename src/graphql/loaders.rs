//! DataLoaders: batch the per-object lookups of one request into one statement per kind.
//!
//! They are created per request (see `Loaders::new`), so nothing is cached across requests and
//! a change is visible to the very next request.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::ErrorExtensions;
use async_graphql::dataloader::{DataLoader, Loader};

use crate::error::AppError;
use crate::store::{InventoryRecord, Store, VendorRecord};

/// Loads vendors by id.
pub struct VendorLoader(Store);

impl Loader<i64> for VendorLoader {
    type Value = VendorRecord;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, VendorRecord>, Self::Error> {
        let rows = self.0.vendors_by_ids(keys).await.map_err(Arc::new)?;
        Ok(rows.into_iter().map(|v| (v.id, v)).collect())
    }
}

/// Loads inventory by product id.
pub struct InventoryLoader(Store);

impl Loader<i64> for InventoryLoader {
    type Value = InventoryRecord;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, InventoryRecord>, Self::Error> {
        let rows = self.0.inventory_by_product_ids(keys).await.map_err(Arc::new)?;
        Ok(rows.into_iter().map(|i| (i.product_id, i)).collect())
    }
}

/// The DataLoaders of one request.
pub struct Loaders {
    /// Vendors by id.
    pub vendors: DataLoader<VendorLoader>,
    /// Inventory by product id.
    pub inventory: DataLoader<InventoryLoader>,
}

impl Loaders {
    /// Fresh loaders for one request.
    pub fn new(store: &Store) -> Self {
        Self {
            vendors: DataLoader::new(VendorLoader(store.clone()), tokio::spawn),
            inventory: DataLoader::new(InventoryLoader(store.clone()), tokio::spawn),
        }
    }
}

/// Converts a loader error into a coded GraphQL error.
pub fn loader_error(err: Arc<AppError>) -> async_graphql::Error {
    err.as_ref().extend()
}
