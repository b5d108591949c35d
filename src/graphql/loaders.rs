//! DataLoaders: batch the per-object lookups of one request into one statement per kind.
//!
//! They are created per request (see `Loaders::new`), so nothing is cached across requests and
//! a change is visible to the very next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

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
    /// Whether the lines' products are wanted too (`lines { product { ... } }`): then they are
    /// read in the lines' statement and primed for `Loaders::product`.
    pub products: bool,
}

/// Loads order lines for many orders at once: one statement per viewer scope, with the lines'
/// products joined when any key of the scope wants them.
pub struct OrderLinesLoader(Store, Arc<Mutex<Primed>>);

impl Loader<LinesKey> for OrderLinesLoader {
    type Value = Vec<OrderItemRecord>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[LinesKey]) -> Result<HashMap<LinesKey, Vec<OrderItemRecord>>, Self::Error> {
        let mut by_scope: HashMap<Option<i64>, (Vec<i64>, bool)> = HashMap::new();
        for key in keys {
            let scope = by_scope.entry(key.vendor).or_default();
            scope.0.push(key.order_id);
            scope.1 |= key.products;
        }
        let mut by_order: HashMap<(i64, Option<i64>), Vec<OrderItemRecord>> = HashMap::new();
        let coded = |e: sqlx::Error| AppError::from(e).extend();
        for (vendor, (order_ids, products)) in by_scope {
            let items = if products {
                let rows = self.0.order_items_with_products(&order_ids, vendor).await.map_err(coded)?;
                let mut primed = self.1.lock().unwrap_or_else(|e| e.into_inner());
                rows.into_iter()
                    .map(|(item, product)| {
                        primed.products.insert(product.id, product);
                        item
                    })
                    .collect()
            } else {
                self.0.order_items(&order_ids, vendor).await.map_err(coded)?
            };
            for item in items {
                by_order.entry((item.order_id, vendor)).or_default().push(item);
            }
        }
        Ok(keys.iter().map(|k| (*k, by_order.get(&(k.order_id, k.vendor)).cloned().unwrap_or_default())).collect())
    }
}

/// The DataLoaders of one request, made on first use: a subscription whose selection never loads
/// anything (most stay idle for hours) carries only a store handle, not five loaders. Boxed once
/// made: inline, the empty cell was as large as the five (about 350 bytes per idle subscription,
/// heaptrack); a request that loads pays one allocation more.
pub struct Loaders {
    store: Store,
    set: std::sync::OnceLock<Box<LoaderSet>>,
}

impl std::ops::Deref for Loaders {
    type Target = LoaderSet;

    fn deref(&self) -> &LoaderSet {
        self.set.get_or_init(|| Box::new(LoaderSet::new(&self.store)))
    }
}

/// The loaders themselves (see `Loaders`).
pub struct LoaderSet {
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
    /// Vendors, stock, products and order lines already loaded with a page (see `prime`,
    /// `prime_stock`, `prime_lines`).
    primed: Arc<Mutex<Primed>>,
}

/// What the `prime*` methods of `Loaders` loaded, read by the per-product and per-order fields
/// before their loaders.
#[derive(Default)]
pub struct Primed {
    /// Products read with order lines.
    products: HashMap<i64, ProductRecord>,
    vendors: HashMap<i64, VendorRecord>,
    /// `None`: known to have no inventory row.
    inventory: HashMap<i64, Option<InventoryRecord>>,
    /// Lines read with a page of orders (`prime_lines`).
    lines: HashMap<LinesKey, Vec<OrderItemRecord>>,
}

impl Loaders {
    /// Fresh loaders for one request (made when first used).
    pub fn new(store: &Store) -> Self {
        Self { store: store.clone(), set: std::sync::OnceLock::new() }
    }
}

impl LoaderSet {
    fn new(store: &Store) -> Self {
        let primed = Arc::new(Mutex::new(Primed::default()));
        Self {
            vendors: DataLoader::new(VendorLoader(store.clone()), crate::store::replica::spawn),
            inventory: DataLoader::new(InventoryLoader(store.clone()), crate::store::replica::spawn),
            products: DataLoader::new(ProductLoader(store.clone()), crate::store::replica::spawn),
            customers: DataLoader::new(CustomerLoader(store.clone()), crate::store::replica::spawn),
            order_lines: DataLoader::new(OrderLinesLoader(store.clone(), primed.clone()), crate::store::replica::spawn),
            primed,
        }
    }
}

impl Loaders {
    fn primed(&self) -> MutexGuard<'_, Primed> {
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
        primed.inventory.extend(stock_rows.into_iter().map(|(id, row)| (id, Some(row))));
        Ok(())
    }

    /// Primes stock read with a page of products (`None`: the product has no inventory row).
    pub fn prime_stock(&self, stock: impl IntoIterator<Item = (i64, Option<InventoryRecord>)>) {
        self.primed().inventory.extend(stock);
    }

    /// Reads the lines of a page of orders (one statement per viewer scope) before the orders
    /// resolve, so their `lines` wait for no batching window (the loaders' 1 ms).
    pub async fn prime_lines(&self, keys: &[LinesKey]) -> async_graphql::Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let lines = self.order_lines.loader().load(keys).await?;
        self.primed().lines.extend(lines);
        Ok(())
    }

    /// An order's lines as `key` sees them: primed (lines read with their products serve a
    /// key that wants none: the same lines), or through their loader.
    pub async fn lines(&self, key: LinesKey) -> async_graphql::Result<Vec<OrderItemRecord>> {
        let primed = {
            let primed = self.primed();
            let with_products = LinesKey { products: true, ..key };
            primed.lines.get(&key).or_else(|| primed.lines.get(&with_products)).cloned()
        };
        match primed {
            Some(lines) => Ok(lines),
            None => Ok(self.order_lines.load_one(key).await?.unwrap_or_default()),
        }
    }

    /// A vendor by id: primed, or through its loader.
    pub async fn vendor(&self, id: i64) -> async_graphql::Result<Option<VendorRecord>> {
        let primed = self.primed().vendors.get(&id).cloned();
        match primed {
            Some(vendor) => Ok(Some(vendor)),
            None => self.vendors.load_one(id).await,
        }
    }

    /// A product by id: read with its order line, or through its loader.
    pub async fn product(&self, id: i64) -> async_graphql::Result<Option<ProductRecord>> {
        let primed = self.primed().products.get(&id).cloned();
        match primed {
            Some(product) => Ok(Some(product)),
            None => self.products.load_one(id).await,
        }
    }

    /// A product's stock: primed, or through its loader.
    pub async fn inventory(&self, product_id: i64) -> async_graphql::Result<Option<InventoryRecord>> {
        let primed = self.primed().inventory.get(&product_id).cloned();
        match primed {
            Some(stock) => Ok(stock),
            None => self.inventory.load_one(product_id).await,
        }
    }
}
