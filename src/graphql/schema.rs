//! Schema assembly: the root types, limits and extensions, shared by the server and `securecart schema`.

use std::sync::Arc;

use async_graphql::{MergedObject, Schema, SchemaBuilder};

use super::account::AccountQuery;
use super::catalog::CatalogQuery;
use super::commerce::{CartQuery, CommerceMutation};
use super::node::NodeQuery;
use super::orders::OrderQuery;
use super::subscriptions::SubscriptionRoot;
use super::vendors::VendorMutation;
use crate::config::Settings;
use crate::service::Services;

/// The query root: every domain module contributes its fields.
#[derive(MergedObject, Default)]
pub struct QueryRoot(NodeQuery, CatalogQuery, AccountQuery, CartQuery, OrderQuery);

/// The mutation root.
#[derive(MergedObject, Default)]
pub struct MutationRoot(CommerceMutation, VendorMutation);

/// The executable schema.
pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot)
}

/// Builds the schema the server runs, with its limits and data.
pub fn build_schema(services: Services, settings: Arc<Settings>) -> AppSchema {
    // Depth, complexity and every other limit are enforced by `Limits` in one pass over the
    // document, with the documented cost model, not by async-graphql's validation rules; the
    // transport runs every operation through it (`Limits::execute`), outside the engine, so
    // no extension wraps each field.
    let mut builder = builder();
    if settings.environment.is_production() {
        // No "Did you mean ...?" hints that map the schema for an attacker.
        builder = builder.disable_suggestions();
    }
    let bus = services.bus().clone();
    builder.data(services).data(settings).data(bus).finish()
}

/// The SDL clients code against; `schema/schema.graphql` must equal it (a test checks).
/// Scalars keep their `@specifiedBy(url:)` (as introspection reports it), so the file and the
/// live schema say the same.
pub fn sdl() -> String {
    builder().finish().sdl_with_options(async_graphql::SDLExportOptions::new().include_specified_by())
}
