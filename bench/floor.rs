//! The framework's floor for Q1: async-graphql and axum alone, serving Q1's exact selection
//! from memory, so `bench/run.sh` can put SecureCart's Q1 beside what the engine costs by
//! itself in the same run (`../shared/PERFORMANCE-ANCHORS.md` measured it the same way).
//!
//!   cargo bench --bench floor -- 127.0.0.1:18420
//!
//! Serves `POST /graphql` until killed. The 20 products are cloned for every request, as a
//! server that decoded them from rows would own them; money is a preformatted string, as
//! SecureCart's `Money.amount` is. SimpleObject types (no resolver code of ours), mimalloc, no
//! extensions, no limits, no database: whatever Q1 costs above this is SecureCart's, and this
//! figure is what async-graphql's executor costs for ~80 leaves.

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};
use async_graphql_axum::GraphQL;
use axum::Router;
use axum::routing::post_service;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(SimpleObject, Clone)]
#[graphql(name = "Money")]
struct Money {
    amount: String,
    currency_code: String,
}

#[derive(SimpleObject, Clone)]
struct Inventory {
    available: i64,
}

#[derive(SimpleObject, Clone)]
struct Product {
    name: String,
    price: Money,
    inventory: Inventory,
}

#[derive(SimpleObject)]
struct ProductEdge {
    node: Product,
}

#[derive(SimpleObject)]
struct ProductConnection {
    edges: Vec<ProductEdge>,
}

struct Query {
    products: Vec<Product>,
}

#[Object]
impl Query {
    async fn products(&self, first: Option<i32>) -> ProductConnection {
        let n = first.unwrap_or(20).clamp(0, 100) as usize;
        ProductConnection { edges: self.products.iter().take(n).cloned().map(|node| ProductEdge { node }).collect() }
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` adds `--bench` to a harness-less bench's arguments: the address is the
    // first argument that is not a flag.
    let listen = std::env::args().skip(1).find(|a| !a.starts_with("--")).unwrap_or_else(|| "127.0.0.1:18420".into());
    let products = (0..100)
        .map(|i| Product {
            name: format!("Product {}", 10_000 - i),
            price: Money { amount: format!("{}.{:02}", 10 + i % 90, i % 100), currency_code: "USD".into() },
            inventory: Inventory { available: 100 + i },
        })
        .collect();
    let schema = Schema::build(Query { products }, EmptyMutation, EmptySubscription).finish();
    let app = Router::new().route("/graphql", post_service(GraphQL::new(schema)));
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind the floor's address");
    eprintln!("floor listening on {listen}");
    axum::serve(listener, app).await.expect("serve");
}
