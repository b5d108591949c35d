//! `me`: who the caller is, with their customer or vendor record.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::catalog::Vendor;
use super::services;
use crate::auth::{Identity, Role, require_identity};
use crate::domain::{GlobalId, NodeKind};
use crate::error::GqlResultExt;
use crate::store::CustomerRecord;

/// A shopper.
pub struct Customer(pub CustomerRecord);

#[Object]
impl Customer {
    /// The customer's global id.
    pub(crate) async fn id(&self) -> ID {
        ID(GlobalId::new(NodeKind::Customer, self.0.id).encode())
    }

    /// The identity provider's subject.
    async fn subject(&self) -> &str {
        &self.0.subject
    }

    /// Contact email, if known.
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }

    /// Display name, if known.
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// First seen.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// The authenticated caller.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Viewer {
    /// The identity provider's subject (`sub`).
    pub subject: String,
    /// Roles granted by the token.
    pub roles: Vec<Role>,
    #[graphql(skip)]
    identity: Identity,
}

#[async_graphql::ComplexObject]
impl Viewer {
    /// The caller's customer record (created on first use) when they have the `customer` role.
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Customer>> {
        Ok(services(ctx)?.customer_of(&self.identity).await.gql()?.map(Customer))
    }

    /// The vendor the caller acts for, when they have the `vendor` role and one is linked.
    async fn vendor(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Vendor>> {
        Ok(services(ctx)?.vendor_of(&self.identity).await.gql()?.map(Vendor))
    }
}

/// Queries about the caller.
#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The caller: subject, roles and records. `UNAUTHENTICATED` without a valid token.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        let identity = require_identity(ctx).gql()?;
        Ok(Viewer { subject: identity.subject.clone(), roles: identity.roles.clone(), identity: identity.clone() })
    }
}
