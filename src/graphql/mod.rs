//! The GraphQL API: schema assembly, object types, pagination and DataLoaders.

pub mod account;
pub mod catalog;
pub mod commerce;
pub mod completion;
pub mod connection;
pub mod deprecations;
pub mod errors;
pub mod limits;
pub mod loaders;
pub mod node;
pub mod orders;
pub mod persisted;
pub mod schema;
pub mod shared;
pub mod subscriptions;
pub mod vendors;

pub use schema::{AppSchema, build_schema, sdl};

/// The services of this request (inserted by `build_schema`).
pub(crate) fn services<'a>(ctx: &async_graphql::Context<'a>) -> async_graphql::Result<&'a crate::service::Services> {
    ctx.data::<crate::service::Services>()
}
