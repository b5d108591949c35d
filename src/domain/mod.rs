//! Self-validating domain types: they cannot hold an invalid value, and know nothing of SQL or HTTP.

pub mod event;
pub mod id;
pub mod money;
pub mod order;
pub mod product;

pub use id::{GlobalId, NodeKind};
pub use money::Currency;
pub use product::{ProductStatus, Sku};
