//! DataLoaders: batch the per-object lookups of one request into one statement per kind.
//!
//! They are created per request (see `Loaders::new`), so nothing is cached across requests and
//! a change is visible to the very next request.

use async_graphql::ErrorExtensions;

use crate::error::AppError;
use async_graphql::dataloader::{DataLoader, Loader};
use std::collections::HashMap;

use crate::store::{CustomerRecord, InventoryRecord, OrderItemRecord, ProductRecord, Store, VendorRecord};

/// Loads vendors by id.
pub struct VendorLoader(Store);

impl Loader<i64> for VendorLoader {
    type Value = VendorRecord;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, VendorRecord>, Self::Error> {
        let rows = self.0.vendors_by_ids(keys).await.map_err(|e| AppError::from(e).extend())?;
        Ok(rows.into_iter().map(|v| (v.id, v)).collect())
    }
}

/// Loads inventory by product id.
pub struct InventoryLoader(Store);

impl Loader<i64> for InventoryLoader {
    type Value = InventoryRecord;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, InventoryRecord>, Self::Error> {
        let rows = self.0.inventory_by_product_ids(keys).await.map_err(|e| AppError::from(e).extend())?;
        Ok(rows.into_iter().map(|i| (i.product_id, i)).collect())
    }
}

/// Loads products by id (archived included).
pub struct ProductLoader(Store);

impl Loader<i64> for ProductLoader {
    type Value = ProductRecord;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, ProductRecord>, Self::Error> {
        let rows = self.0.products_by_ids(keys).await.map_err(|e| AppError::from(e).extend())?;
        Ok(rows.into_iter().map(|p| (p.id, p)).collect())
    }
}

/// Loads customers by id.
pub struct CustomerLoader(Store);

impl Loader<i64> for CustomerLoader {
    type Value = CustomerRecord;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, CustomerRecord>, Self::Error> {
        let rows = self.0.customers_by_ids(keys).await.map_err(|e| AppError::from(e).extend())?;
        Ok(rows.into_iter().map(|c| (c.id, c)).collect())
    }
}

/// The lines of one order as one viewer may see them: all of them, or one vendor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinesKey {
    /// The order.
    pub order_id: i64,
    /// `Some(vendor)`: only that vendor's lines.
    pub vendor: Option<i64>,
}

/// Loads order lines for many orders at once (one statement per viewer scope).
pub struct OrderLinesLoader(Store);

impl Loader<LinesKey> for OrderLinesLoader {
    type Value = Vec<OrderItemRecord>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[LinesKey]) -> Result<HashMap<LinesKey, Vec<OrderItemRecord>>, Self::Error> {
        let mut by_scope: HashMap<Option<i64>, Vec<i64>> = HashMap::new();
        for key in keys {
            by_scope.entry(key.vendor).or_default().push(key.order_id);
        }
        let mut out: HashMap<LinesKey, Vec<OrderItemRecord>> = keys.iter().map(|k| (*k, Vec::new())).collect();
        for (vendor, order_ids) in by_scope {
            for item in self.0.order_items(&order_ids, vendor).await.map_err(|e| AppError::from(e).extend())? {
                out.entry(LinesKey { order_id: item.order_id, vendor }).or_default().push(item);
            }
        }
        Ok(out)
    }
}

/// The DataLoaders of one request.
pub struct Loaders {
    /// Vendors by id.
    pub vendors: DataLoader<VendorLoader>,
    /// Inventory by product id.
    pub inventory: DataLoader<InventoryLoader>,
    /// Products by id.
    pub products: DataLoader<ProductLoader>,
    /// Customers by id.
    pub customers: DataLoader<CustomerLoader>,
    /// Order lines by order (and viewer scope).
    pub order_lines: DataLoader<OrderLinesLoader>,
}

impl Loaders {
    /// Fresh loaders for one request.
    pub fn new(store: &Store) -> Self {
        Self {
            vendors: DataLoader::new(VendorLoader(store.clone()), tokio::spawn),
            inventory: DataLoader::new(InventoryLoader(store.clone()), tokio::spawn),
            products: DataLoader::new(ProductLoader(store.clone()), tokio::spawn),
            customers: DataLoader::new(CustomerLoader(store.clone()), tokio::spawn),
            order_lines: DataLoader::new(OrderLinesLoader(store.clone()), tokio::spawn),
        }
    }
}
