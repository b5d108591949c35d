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
    /// Vendors and stock already loaded for a page of products (see `prime`).
    primed: std::sync::Mutex<Primed>,
}

/// What `Loaders::prime` loaded, read by the per-product fields before their loaders.
#[derive(Default)]
struct Primed {
    vendors: HashMap<i64, VendorRecord>,
    inventory: HashMap<i64, InventoryRecord>,
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
            primed: Default::default(),
        }
    }

    fn primed(&self) -> std::sync::MutexGuard<'_, Primed> {
        self.primed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads the vendors and/or stock of a page of products in one batch each, before the
    /// page's items resolve. Left to the items, batching relies on the loaders' 1 ms window,
    /// which a busy server can split into several statements; primed, a page costs the same
    /// whatever the load. The primed rows live as long as the request (a query: one view).
    pub async fn prime<'a>(
        &self,
        products: impl Iterator<Item = &'a ProductRecord> + Clone,
        vendors: bool,
        inventory: bool,
    ) -> async_graphql::Result<()> {
        let vendor_rows = async {
            if vendors {
                self.vendors.load_many(products.clone().map(|p| p.vendor_id)).await
            } else {
                Ok(HashMap::new())
            }
        };
        let stock_rows = async {
            if inventory { self.inventory.load_many(products.clone().map(|p| p.id)).await } else { Ok(HashMap::new()) }
        };
        let (vendor_rows, stock_rows) = futures::try_join!(vendor_rows, stock_rows)?;
        let mut primed = self.primed();
        primed.vendors.extend(vendor_rows);
        primed.inventory.extend(stock_rows);
        Ok(())
    }

    /// A vendor by id: primed, or through its loader.
    pub async fn vendor(&self, id: i64) -> async_graphql::Result<Option<VendorRecord>> {
        let primed = self.primed().vendors.get(&id).cloned();
        match primed {
            Some(vendor) => Ok(Some(vendor)),
            None => self.vendors.load_one(id).await,
        }
    }

    /// A product's stock: primed, or through its loader.
    pub async fn inventory(&self, product_id: i64) -> async_graphql::Result<Option<InventoryRecord>> {
        let primed = self.primed().inventory.get(&product_id).cloned();
        match primed {
            Some(stock) => Ok(Some(stock)),
            None => self.inventory.load_one(product_id).await,
        }
    }
}
