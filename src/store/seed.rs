//! The deterministic demo catalog: vendors, products, inventory, customers and orders.
//!
//! The same sizes always give the same rows (a fixed-seed RNG), so demos, docs and benchmarks
//! agree. Rows go in as JSON batches, one statement per table per 5,000 rows, which keeps
//! 10,000 products and 20,000 orders to a few seconds on either backend.

use anyhow::{Context, bail};
use chrono::{Duration, TimeZone, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::{Store, on_pool};

/// How much demo data to create.
#[derive(Debug, Clone, Copy)]
pub struct SeedSize {
    /// Products (spread over the vendors).
    pub products: u32,
    /// Vendors.
    pub vendors: u32,
    /// Customers; the first two have subjects `alice` and `bob`.
    pub customers: u32,
    /// Orders, with 1 to 5 lines each (about 3 on average).
    pub orders: u32,
}

impl SeedSize {
    /// What `securecart seed` creates by default.
    pub const DEFAULT: SeedSize = SeedSize { products: 1_000, vendors: 25, customers: 200, orders: 500 };
    /// What a development server seeds into an empty database at start-up.
    pub const DEMO: SeedSize = SeedSize { products: 200, vendors: 20, customers: 50, orders: 100 };
}

/// What a seed run created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Vendors created.
    pub vendors: u64,
    /// Products created (each with an inventory row).
    pub products: u64,
    /// Customers created.
    pub customers: u64,
    /// Orders created.
    pub orders: u64,
    /// Order lines created.
    pub order_items: u64,
}

const VENDOR_WORDS: &[&str] = &[
    "Northwind",
    "Acme",
    "Bluebird",
    "Cedar",
    "Driftwood",
    "Evergreen",
    "Foxglove",
    "Granite",
    "Harbor",
    "Ironbark",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Maple",
    "Nimbus",
    "Oakridge",
    "Pioneer",
    "Quarry",
    "Redwood",
    "Summit",
    "Tidewater",
    "Umber",
    "Vantage",
    "Willow",
    "Yarrow",
    "Zephyr",
];
const VENDOR_KINDS: &[&str] = &["Outfitters", "Supply Co.", "Goods", "Workshop", "Trading", "Home", "Labs", "Studio"];
const ADJECTIVES: &[&str] = &[
    "Walnut", "Oak", "Linen", "Wool", "Copper", "Ceramic", "Bamboo", "Steel", "Leather", "Cotton", "Glass", "Slate",
    "Cork", "Brass", "Canvas", "Marble",
];
const NOUNS: &[&str] = &[
    "Desk",
    "Lamp",
    "Chair",
    "Mug",
    "Backpack",
    "Notebook",
    "Throw Blanket",
    "Cutting Board",
    "Water Bottle",
    "Planter",
    "Bookshelf",
    "Headphone Stand",
    "Tote Bag",
    "Candle",
    "Wall Clock",
    "Serving Bowl",
    "Pen Set",
    "Rug",
    "Coat Hook",
    "Side Table",
];
const STYLES: &[&str] = &["Classic", "Compact", "Pro", "Mini", "Deluxe", "Travel", "Studio", "Everyday"];
const STATUSES: &[(&str, u32)] = &[("PAID", 40), ("FULFILLED", 45), ("PENDING", 5), ("CANCELLED", 7), ("REFUNDED", 3)];
const BATCH: usize = 5_000;
const RESET: &[&str] = &[
    "DELETE FROM payments",
    "DELETE FROM order_items",
    "DELETE FROM orders",
    "DELETE FROM cart_items",
    "DELETE FROM carts",
    "DELETE FROM inventory_adjustments",
    "DELETE FROM inventory",
    "DELETE FROM products",
    "DELETE FROM customers",
    "DELETE FROM vendors",
];
const PG_SEQUENCES: &[&str] = &[
    "SELECT setval(pg_get_serial_sequence('vendors', 'id'), COALESCE((SELECT MAX(id) FROM vendors), 0) + 1, false)",
    "SELECT setval(pg_get_serial_sequence('products', 'id'), COALESCE((SELECT MAX(id) FROM products), 0) + 1, false)",
    "SELECT setval(pg_get_serial_sequence('customers', 'id'), COALESCE((SELECT MAX(id) FROM customers), 0) + 1, false)",
    "SELECT setval(pg_get_serial_sequence('orders', 'id'), COALESCE((SELECT MAX(id) FROM orders), 0) + 1, false)",
    "SELECT setval(pg_get_serial_sequence('order_items', 'id'), COALESCE((SELECT MAX(id) FROM order_items), 0) + 1, false)",
];

struct Product {
    id: i64,
    vendor_id: i64,
    sku: String,
    name: String,
    price: i64,
}

impl Store {
    /// Seeds the demo catalog. Refuses a database that already has a catalog unless `reset`,
    /// which first deletes every row the application owns.
    pub async fn seed(&self, size: SeedSize, reset: bool) -> anyhow::Result<SeedReport> {
        if size.vendors == 0 && size.products > 0 {
            bail!("products need at least one vendor");
        }
        if size.customers == 0 && size.orders > 0 {
            bail!("orders need at least one customer");
        }
        if size.products == 0 && size.orders > 0 {
            bail!("orders need at least one product");
        }
        if !reset && (!self.catalog_is_empty().await? || self.count_vendors().await? > 0) {
            bail!("the database already has a catalog; run `securecart seed --reset` to replace it");
        }
        let mut rng = SmallRng::seed_from_u64(0x5EC0_CA27);
        let epoch = Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).single().context("epoch")?;
        let ts = |offset_minutes: i64| {
            (epoch + Duration::minutes(offset_minutes)).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        };
        let mut report = SeedReport::default();

        let vendors: Vec<Value> = (1..=i64::from(size.vendors))
            .map(|id| {
                let word = VENDOR_WORDS[(id as usize - 1) % VENDOR_WORDS.len()];
                // 26 words and 8 kinds give 104 distinct names before a numbered round begins.
                let kind = VENDOR_KINDS[(id as usize - 1) % VENDOR_KINDS.len()];
                let round = (id as usize - 1) / 104;
                let name = if round == 0 { format!("{word} {kind}") } else { format!("{word} {kind} {}", round + 1) };
                let slug = name.to_lowercase().replace(['.', ' '], "-").replace("--", "-").trim_end_matches('-').to_string();
                json!({ "id": id, "name": name, "slug": slug, "owner_subject": format!("vendor-{id}"), "created_at": ts(id) })
            })
            .collect();

        let mut products = Vec::with_capacity(size.products as usize);
        let mut product_rows = Vec::with_capacity(size.products as usize);
        let mut inventory_rows = Vec::with_capacity(size.products as usize);
        for id in 1..=i64::from(size.products) {
            let vendor_id = (id - 1) % i64::from(size.vendors) + 1;
            let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
            let noun = NOUNS[rng.random_range(0..NOUNS.len())];
            let style = STYLES[rng.random_range(0..STYLES.len())];
            let name = format!("{adjective} {noun} {style}");
            let sku = format!("SC-{vendor_id:03}-{id:06}");
            // Prices cluster like a real shop's: mostly 5 to 150, a tail up to 900, ending .99 or .00.
            let dollars: i64 =
                if rng.random_bool(0.85) { rng.random_range(5..150) } else { rng.random_range(150..900) };
            let price = dollars * 100 + if rng.random_bool(0.7) { 99 } else { 0 };
            let available: i64 = if rng.random_bool(0.08) { 0 } else { rng.random_range(1..250) };
            let created = ts(60 * 24 * 30 + id * 7);
            product_rows.push(json!({
                "id": id, "vendor_id": vendor_id, "sku": sku, "name": name,
                "description": format!("The {style} {adjective} {noun}, made to last and shipped by vendor {vendor_id}. \
                    {adjective} finish, {} size; care instructions included.", if id % 3 == 0 { "large" } else { "standard" }),
                "price_amount": price, "currency_code": "USD", "status": "ACTIVE",
                "created_at": created, "updated_at": created,
            }));
            inventory_rows
                .push(json!({ "product_id": id, "available": available, "reserved": 0, "updated_at": created }));
            products.push(Product { id, vendor_id, sku, name, price });
        }

        let customers: Vec<Value> = (1..=i64::from(size.customers))
            .map(|id| {
                let subject = match id {
                    1 => "alice".to_string(),
                    2 => "bob".to_string(),
                    _ => format!("customer-{id}"),
                };
                json!({ "id": id, "subject": subject, "email": format!("{subject}@example.com"),
                        "name": format!("Customer {id}"), "created_at": ts(id) })
            })
            .collect();

        // Units held by placed or paid orders, as checkout would have left them.
        let mut reserved: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
        let mut orders = Vec::with_capacity(size.orders as usize);
        let mut items = Vec::with_capacity(size.orders as usize * 3);
        let mut item_id = 0_i64;
        for id in 1..=i64::from(size.orders) {
            let customer_id = rng.random_range(1..=i64::from(size.customers));
            let lines: i32 = rng.random_range(1..=5);
            let mut subtotal = 0_i64;
            let mut bought = Vec::with_capacity(lines as usize);
            for _ in 0..lines {
                let product = &products[rng.random_range(0..products.len())];
                let quantity: i64 = rng.random_range(1..=3);
                let line_total = product.price * quantity;
                subtotal += line_total;
                bought.push((product.id, quantity));
                item_id += 1;
                items.push(json!({
                    "id": item_id, "order_id": id, "product_id": product.id, "vendor_id": product.vendor_id,
                    "sku": product.sku, "name": product.name, "unit_price_amount": product.price,
                    "currency_code": "USD", "quantity": quantity, "line_total_amount": line_total,
                }));
            }
            let status = pick_status(rng.random_range(0..100));
            if matches!(status, "PENDING" | "PAID") {
                for (product, quantity) in bought {
                    *reserved.entry(product).or_default() += quantity;
                }
            }
            let created = ts(60 * 24 * 60 + id * 13);
            orders.push(json!({
                "id": id, "customer_id": customer_id, "status": status, "currency_code": "USD",
                "subtotal_amount": subtotal, "total_amount": subtotal,
                "payment_reference": if status == "PENDING" { Value::Null } else { json!(format!("seed_ch_{id}")) },
                "created_at": created, "updated_at": created,
            }));
        }
        for row in &mut inventory_rows {
            let id = row["product_id"].as_i64().unwrap_or_default();
            row["reserved"] = json!(reserved.get(&id).copied().unwrap_or(0));
        }
        let tables: [(&'static str, &[Value]); 6] = [
            ("vendors", &vendors),
            ("products", &product_rows),
            ("inventory", &inventory_rows),
            ("customers", &customers),
            ("orders", &orders),
            ("order_items", &items),
        ];
        let counts = self.write_seed(reset, &tables).await?;
        report.vendors = counts[0];
        report.products = counts[1];
        report.customers = counts[3];
        report.orders = counts[4];
        report.order_items = counts[5];
        Ok(report)
    }

    /// Writes the seed in one transaction: a failure leaves the database as it was.
    async fn write_seed(&self, reset: bool, tables: &[(&'static str, &[Value])]) -> anyhow::Result<Vec<u64>> {
        let postgres = self.kind() == super::BackendKind::Postgres;
        let mut counts = Vec::with_capacity(tables.len());
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if reset {
                for sql in RESET {
                    sqlx::query(*sql).execute(&mut *tx).await.context("resetting the database")?;
                }
            }
            for (table, rows) in tables {
                let (pg, lite) = bulk_sql(table);
                let mut inserted = 0;
                for chunk in rows.chunks(BATCH) {
                    let done = sqlx::query(if postgres { pg } else { lite })
                        .bind(serde_json::to_string(chunk)?)
                        .execute(&mut *tx)
                        .await
                        .with_context(|| format!("seeding {table}"))?;
                    inserted += done.rows_affected();
                }
                counts.push(inserted);
            }
            if postgres {
                // Explicit ids were inserted: move the identity sequences past them.
                for sql in PG_SEQUENCES {
                    sqlx::query(*sql).execute(&mut *tx).await.context("resetting sequences")?;
                }
            }
            tx.commit().await?;
        });
        Ok(counts)
    }
}

fn pick_status(roll: u32) -> &'static str {
    let mut acc = 0;
    for (status, weight) in STATUSES {
        acc += weight;
        if roll < acc {
            return status;
        }
    }
    "PAID"
}

/// The bulk insert statements of a table from its typed columns, as a literal pair:
/// PostgreSQL reads the JSON array with `json_to_recordset`, SQLite with `json_each`.
macro_rules! bulk {
    ($table:literal: $($col:ident $ty:ident),+) => {
        (
            concat!(
                "INSERT INTO ", $table, " (", bulk!(@names $($col),+), ") SELECT ", bulk!(@names $($col),+),
                " FROM json_to_recordset($1::json) AS x(", bulk!(@typed $($col $ty),+), ")"
            ),
            concat!(
                "INSERT INTO ", $table, " (", bulk!(@names $($col),+), ") SELECT ", bulk!(@json $($col),+),
                " FROM json_each($1)"
            ),
        )
    };
    (@names $first:ident $(, $col:ident)*) => { concat!(stringify!($first) $(, ", ", stringify!($col))*) };
    (@typed $first:ident $fty:ident $(, $col:ident $ty:ident)*) => {
        concat!(stringify!($first), " ", stringify!($fty) $(, ", ", stringify!($col), " ", stringify!($ty))*)
    };
    (@json $first:ident $(, $col:ident)*) => {
        concat!("value->>'", stringify!($first), "'" $(, ", value->>'", stringify!($col), "'")*)
    };
}

/// The bulk insert statements per table.
fn bulk_sql(table: &str) -> (&'static str, &'static str) {
    match table {
        "vendors" => bulk!("vendors": id bigint, name text, slug text, owner_subject text, created_at timestamptz),
        "products" => bulk!("products": id bigint, vendor_id bigint, sku text, name text, description text,
            price_amount bigint, currency_code text, status text, created_at timestamptz, updated_at timestamptz),
        "inventory" => bulk!("inventory": product_id bigint, available bigint, reserved bigint, updated_at timestamptz),
        "customers" => bulk!("customers": id bigint, subject text, email text, name text, created_at timestamptz),
        "orders" => {
            bulk!("orders": id bigint, customer_id bigint, status text, currency_code text, subtotal_amount bigint,
            total_amount bigint, payment_reference text, created_at timestamptz, updated_at timestamptz)
        }
        "order_items" => {
            bulk!("order_items": id bigint, order_id bigint, product_id bigint, vendor_id bigint, sku text,
            name text, unit_price_amount bigint, currency_code text, quantity bigint, line_total_amount bigint)
        }
        other => unreachable!("no bulk statement for {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_weights_cover_every_roll() {
        assert_eq!(STATUSES.iter().map(|(_, w)| w).sum::<u32>(), 100);
        assert_eq!(pick_status(0), "PAID");
        assert_eq!(pick_status(99), "REFUNDED");
    }

    #[test]
    fn bulk_statements_name_each_column_three_ways() {
        let (pg, lite) = bulk_sql("inventory");
        assert_eq!(
            pg,
            "INSERT INTO inventory (product_id, available, reserved, updated_at) SELECT product_id, available, \
             reserved, updated_at FROM json_to_recordset($1::json) AS x(product_id bigint, available bigint, \
             reserved bigint, updated_at timestamptz)"
        );
        assert_eq!(
            lite,
            "INSERT INTO inventory (product_id, available, reserved, updated_at) SELECT value->>'product_id', \
             value->>'available', value->>'reserved', value->>'updated_at' FROM json_each($1)"
        );
    }
}
