//! Column lists, each written once: every statement that reads a whole row names its columns
//! through these macros (a `const` cannot be spliced into a literal, `concat!` can).

/// The `ProductRecord` columns, each prefixed with `$p` (`"p."` or `""`).
macro_rules! product_columns {
    ($p:literal) => {
        concat!(
            $p,
            "id, ",
            $p,
            "vendor_id, ",
            $p,
            "sku, ",
            $p,
            "name, ",
            $p,
            "description, ",
            $p,
            "price_amount, ",
            $p,
            "currency_code, ",
            $p,
            "status, ",
            $p,
            "created_at, ",
            $p,
            "updated_at"
        )
    };
}
pub(crate) use product_columns;

/// The `OrderRecord` columns, each prefixed with `$p`.
macro_rules! order_columns {
    ($p:literal) => {
        concat!(
            $p,
            "id, ",
            $p,
            "customer_id, ",
            $p,
            "status, ",
            $p,
            "currency_code, ",
            $p,
            "subtotal_amount, ",
            $p,
            "total_amount, ",
            $p,
            "created_at, ",
            $p,
            "updated_at"
        )
    };
}
pub(crate) use order_columns;

/// The `OrderItemRecord` columns.
macro_rules! order_item_columns {
    () => {
        order_item_columns!("")
    };
    ($p:literal) => {
        concat!(
            $p,
            "id, ",
            $p,
            "order_id, ",
            $p,
            "product_id, ",
            $p,
            "vendor_id, ",
            $p,
            "sku, ",
            $p,
            "name, ",
            $p,
            "unit_price_amount, ",
            $p,
            "currency_code, ",
            $p,
            "quantity, ",
            $p,
            "line_total_amount"
        )
    };
}
pub(crate) use order_item_columns;

/// The `VendorRecord` columns.
macro_rules! vendor_columns {
    () => {
        "id, name, slug, created_at"
    };
}
pub(crate) use vendor_columns;

/// The `CustomerRecord` columns.
macro_rules! customer_columns {
    () => {
        "id, subject, email, name, created_at"
    };
}
pub(crate) use customer_columns;

/// The `InventoryRecord` columns.
macro_rules! inventory_columns {
    () => {
        "product_id, available, reserved, updated_at"
    };
}
pub(crate) use inventory_columns;
