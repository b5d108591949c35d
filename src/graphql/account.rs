//! `me`: who the caller is, with their customer or vendor record.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::catalog::Vendor;
use crate::auth::{Identity, Role, require_identity};
use crate::domain::{GlobalId, NodeKind};
use crate::error::{AppError, AppResult, GqlResultExt};
use crate::store::{CustomerRecord, OrderScope, Store};

/// A shopper.
pub struct Customer(pub CustomerRecord);

#[Object]
impl Customer {
    /// The customer's global id.
    async fn id(&self) -> ID {
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
        if !self.identity.has(Role::Customer) {
            return Ok(None);
        }
        let store = ctx.data::<Store>()?;
        Ok(Some(Customer(store.ensure_customer(&self.identity.subject).await.gql()?)))
    }

    /// The vendor the caller acts for, when they have the `vendor` role and one is linked.
    async fn vendor(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Vendor>> {
        let Some(id) = self.identity.vendor_id.filter(|_| self.identity.has(Role::Vendor)) else {
            return Ok(None);
        };
        let mut rows = ctx.data::<Store>()?.vendors_by_ids(&[id]).await.gql()?;
        Ok(rows.pop().map(Vendor))
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

/// The order scope of the caller: admins see all orders, vendors the orders with their
/// products, customers their own. A caller with several roles gets the widest.
pub fn order_scope(ctx: &Context<'_>) -> AppResult<OrderScope> {
    let identity = require_identity(ctx)?;
    if identity.is_admin() {
        return Ok(OrderScope::All);
    }
    if identity.has(Role::Vendor) {
        let vendor =
            identity.vendor_id.ok_or_else(|| AppError::Forbidden("no vendor is linked to this account".into()))?;
        return Ok(OrderScope::Vendor(vendor));
    }
    if identity.has(Role::Customer) {
        // By subject: the scope becomes a subquery, so no lookup is spent here, and a customer
        // never seen before simply has no orders.
        return Ok(OrderScope::CustomerSubject(identity.subject.as_str().into()));
    }
    Err(AppError::Forbidden("needs the role customer, vendor or admin".into()))
}
