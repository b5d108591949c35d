//! The GraphQL API: schema assembly, object types, pagination and DataLoaders.

pub mod catalog;
pub mod connection;
pub mod errors;
pub mod loaders;
pub mod schema;

pub use schema::{AppSchema, build_schema, sdl};
