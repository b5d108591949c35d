//! The GraphQL API: schema assembly, object types, pagination and DataLoaders.

pub mod account;
pub mod catalog;
pub mod commerce;
pub mod connection;
pub mod cost;
pub mod deprecations;
pub mod errors;
pub mod limits;
pub mod loaders;
pub mod orders;
pub mod schema;
pub mod subscriptions;
pub mod vendors;

pub use schema::{AppSchema, build_schema, sdl};
