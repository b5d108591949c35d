//! The public catalog: product pages (filtered, sorted, paged), products, vendors, any node.

use super::pagination::{
    decode_keyed_cursor, decode_product_cursor, encode_keyed_cursor, encode_product_cursor, page_size,
};
use super::{Services, decode_id};
use crate::domain::money::parse_decimal;
use crate::domain::{GlobalId, NodeKind};
use crate::error::{AppError, AppResult};
use crate::store::{
    InventoryRecord, PageQuery, ProductCursor, ProductFilter, ProductRecord, ProductSort, VendorRecord,
};

/// A price bound as the transport has it: already parsed (GraphQL's `Decimal`) or text (REST).
#[derive(Debug, Clone)]
pub enum PriceArg {
    /// Minor units.
    Minor(i64),
    /// A decimal string such as `"19.99"`.
    Text(String),
}

/// Catalog filters as a client sends them: a `Vendor` global id, prices as the transport has them.
pub type ProductFilterInput = ProductFilter<String, PriceArg>;

/// Relay paging arguments.
#[derive(Debug, Clone, Default)]
pub struct PageArgs {
    /// Forward page size.
    pub first: Option<i32>,
    /// Forward cursor.
    pub after: Option<String>,
    /// Backward page size.
    pub last: Option<i32>,
    /// Backward cursor.
    pub before: Option<String>,
}

/// A page of products with their cursors.
#[derive(Debug, Clone)]
pub struct ProductPage {
    /// The products and their cursors, in sort order.
    pub edges: Vec<(ProductRecord, String)>,
    /// More after the last?
    pub has_next_page: bool,
    /// More before the first?
    pub has_previous_page: bool,
    /// The filter in force (for `totalCount`).
    pub filter: ProductFilter,
    /// Each product's stock (`None`: no inventory row), read with the page when asked for.
    pub stock: Option<Vec<(i64, Option<InventoryRecord>)>>,
}

/// A page of vendors by name.
#[derive(Debug, Clone)]
pub struct VendorPage {
    /// The vendors and their cursors.
    pub edges: Vec<(VendorRecord, String)>,
    /// More after the last?
    pub has_next_page: bool,
    /// Was there a cursor?
    pub has_previous_page: bool,
    /// How many vendors exist.
    pub total_count: i64,
}

/// A product with what its representations need.
pub type ProductDetails = (ProductRecord, Option<InventoryRecord>, Option<VendorRecord>);

/// Sort names as REST sends them (GraphQL's `ProductSortKeys` values).
pub fn sort_named(text: Option<&str>) -> AppResult<ProductSort> {
    Ok(match text.unwrap_or("NEWEST") {
        "NEWEST" => ProductSort::Newest,
        "NAME" => ProductSort::NameAsc,
        "PRICE_ASC" => ProductSort::PriceAsc,
        "PRICE_DESC" => ProductSort::PriceDesc,
        other => return Err(AppError::invalid("sortBy", format!("unknown sortBy `{other}`"))),
    })
}

impl ProductFilterInput {
    /// Checks the filter; error fields are named `{prefix}{field}` (GraphQL: `filter.`).
    pub fn validate(self, prefix: &str) -> AppResult<ProductFilter> {
        let vendor_id =
            match self.vendor_id {
                Some(id) => Some(GlobalId::decode_as(&id, NodeKind::Vendor).ok_or_else(|| {
                    AppError::invalid_with("INVALID_ID", format!("{prefix}vendorId"), "not a Vendor id")
                })?),
                None => None,
            };
        let search = self.search.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        if search.as_ref().is_some_and(|s| s.contains('\0')) {
            return Err(AppError::invalid(format!("{prefix}search"), "text must not contain NUL (U+0000) characters"));
        }
        if search.as_ref().is_some_and(|s| s.chars().count() > 100) {
            return Err(AppError::invalid(format!("{prefix}search"), "search text may be at most 100 characters"));
        }
        let price = |name: &str, arg: Option<PriceArg>| -> AppResult<Option<i64>> {
            match arg {
                None => Ok(None),
                Some(PriceArg::Minor(n)) => Ok(Some(n)),
                Some(PriceArg::Text(t)) => {
                    parse_decimal(&t).map(Some).map_err(|m| AppError::invalid(format!("{prefix}{name}"), m))
                }
            }
        };
        let min_price = price("minPrice", self.min_price)?;
        let max_price = price("maxPrice", self.max_price)?;
        if let (Some(min), Some(max)) = (min_price, max_price)
            && min > max
        {
            return Err(AppError::invalid(format!("{prefix}minPrice"), "minPrice is above maxPrice"));
        }
        Ok(ProductFilter { search, vendor_id, min_price, max_price, in_stock: self.in_stock })
    }
}

impl Services {
    /// One page of the active catalog (or of `filter`'s part of it), in `sort` order, with each
    /// product's stock read in the same statement when `with_stock`.
    pub async fn product_page(
        &self,
        filter: ProductFilter,
        sort: ProductSort,
        page: PageArgs,
        with_stock: bool,
    ) -> AppResult<ProductPage> {
        let size = page_size(page.first, page.last, page.before.is_some(), &self.settings.limits)?;
        let after = page.after.map(|c| decode_product_cursor("after", &c, sort)).transpose()?;
        let before = page.before.map(|c| decode_product_cursor("before", &c, sort)).transpose()?;
        let query =
            PageQuery { limit: size.limit, after: after.clone(), before: before.clone(), backward: size.backward };
        let mut rows = if size.limit == 0 {
            Vec::new()
        } else {
            self.store.list_products(&filter, sort, &query, with_stock).await?
        };
        let has_more = rows.len() > size.limit as usize;
        if has_more {
            // The extra row sits beyond the page: at the end going forward, at the start going back.
            if size.backward {
                rows.remove(0)
            } else {
                rows.pop().expect("non-empty")
            };
        }
        let stock = with_stock.then(|| rows.iter().map(|(p, stock)| (p.id, stock.clone())).collect());
        let edges = rows
            .into_iter()
            .map(|(record, _)| {
                let cursor = encode_product_cursor(&ProductCursor::of(&record, sort), sort);
                (record, cursor)
            })
            .collect();
        Ok(ProductPage {
            edges,
            has_next_page: if size.backward { before.is_some() } else { has_more },
            has_previous_page: if size.backward { has_more } else { after.is_some() },
            filter,
            stock,
        })
    }

    /// How many active products match `filter` across all pages.
    pub async fn count_products(&self, filter: &ProductFilter) -> AppResult<i64> {
        Ok(self.store.count_products(filter).await?)
    }

    /// A product by global id (archived included): `INVALID_ID` for a malformed id, `NOT_FOUND`
    /// for an unknown one.
    pub async fn product(&self, id: &str) -> AppResult<ProductRecord> {
        let id = decode_id("id", id, NodeKind::Product)?;
        self.store.product(id).await?.ok_or(AppError::NotFound("product"))
    }

    /// A product as `product` finds it, with its stock (`None`: no inventory row) read in the
    /// same statement.
    pub async fn product_with_stock(&self, id: &str) -> AppResult<(ProductRecord, Option<InventoryRecord>)> {
        let id = decode_id("id", id, NodeKind::Product)?;
        self.store.product_with_stock(id).await?.ok_or(AppError::NotFound("product"))
    }

    /// A vendor by global id: `INVALID_ID` or `NOT_FOUND` as for products.
    pub async fn vendor(&self, id: &str) -> AppResult<VendorRecord> {
        let id = decode_id("id", id, NodeKind::Vendor)?;
        self.vendor_by_id(id).await?.ok_or(AppError::NotFound("vendor"))
    }

    async fn vendor_by_id(&self, id: i64) -> AppResult<Option<VendorRecord>> {
        Ok(self.store.vendors_by_ids(&[id]).await?.pop())
    }

    /// All vendors by name, a page at a time.
    pub async fn vendor_page(&self, first: Option<i32>, after: Option<String>) -> AppResult<VendorPage> {
        let size = page_size(first, None, false, &self.settings.limits)?;
        let after = after.map(|c| decode_keyed_cursor("v", "after", &c)).transpose()?;
        let has_previous_page = after.is_some();
        let mut rows = self.store.list_vendors(after.map(|(id, name)| (name, id)), size.limit).await?;
        let has_next_page = rows.len() > size.limit as usize;
        rows.truncate(size.limit as usize);
        let total_count = self.store.count_vendors().await?;
        let edges = rows
            .into_iter()
            .map(|v| {
                let cursor = encode_keyed_cursor("v", v.id, &v.name);
                (v, cursor)
            })
            .collect();
        Ok(VendorPage { edges, has_next_page, has_previous_page, total_count })
    }

    /// Attaches the vendor to products already read with their stock: one statement.
    pub async fn with_vendors(
        &self,
        rows: Vec<(ProductRecord, Option<InventoryRecord>)>,
    ) -> AppResult<Vec<ProductDetails>> {
        let mut vendor_ids: Vec<i64> = rows.iter().map(|(r, _)| r.vendor_id).collect();
        vendor_ids.sort_unstable();
        vendor_ids.dedup();
        let vendors = if vendor_ids.is_empty() { Vec::new() } else { self.store.vendors_by_ids(&vendor_ids).await? };
        Ok(rows
            .into_iter()
            .map(|(p, i)| {
                let v = vendors.iter().find(|v| v.id == p.vendor_id).cloned();
                (p, i, v)
            })
            .collect())
    }
}
