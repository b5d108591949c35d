//! DataLoaders: batch the per-object lookups of one request into one statement per kind.
//!
//! They are created per request (see `Loaders::new`), so nothing is cached across requests and
//! a change is visible to the very next request.

use std::collections::HashMap;

use async_graphql::ErrorExtensions;
use async_graphql::dataloader::{DataLoader, Loader};

use crate::error::AppError;
use crate::store::{CustomerRecord, InventoryRecord, OrderItemRecord, ProductRecord, Store, VendorRecord};

/// A DataLoader of rows by id: `$loader` loads `$record`s with the store's `$fetch`, keyed by
/// `$key` (one statement per batch; errors are coded once per batch).
macro_rules! by_id_loader {
    ($(#[$doc:meta])* $loader:ident, $record:ty, $fetch:ident, $key:ident) => {
        $(#[$doc])*
        pub struct $loader(Store);

        impl Loader<i64> for $loader {
            type Value = $record;
            type Error = async_graphql::Error;

            async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, $record>, Self::Error> {
                let rows = self.0.$fetch(keys).await.map_err(|e| AppError::from(e).extend())?;
                Ok(rows.into_iter().map(|r| (r.$key, r)).collect())
            }
        }
    };
}

by_id_loader!(
    /// Loads vendors by id.
    VendorLoader, VendorRecord, vendors_by_ids, id
);
by_id_loader!(
    /// Loads inventory by product id.
    InventoryLoader, InventoryRecord, inventory_by_product_ids, product_id
);
by_id_loader!(
    /// Loads products by id (archived included).
    ProductLoader, ProductRecord, products_by_ids, id
);
by_id_loader!(
    /// Loads customers by id.
    CustomerLoader, CustomerRecord, customers_by_ids, id
);

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
