//! Guards: `UNAUTHENTICATED` without a valid token, `FORBIDDEN` without the role.

use async_graphql::{Context, ErrorExtensions, Guard};

use super::{Caller, Identity, Role};
use crate::error::AppError;

/// The caller of this request (anonymous when the transport inserted none).
pub fn caller<'a>(ctx: &'a Context<'_>) -> &'a Caller {
    static ANONYMOUS: Caller = Caller::Anonymous;
    ctx.data_opt::<Caller>().unwrap_or(&ANONYMOUS)
}

/// The verified identity, or `UNAUTHENTICATED` (with the reason a sent token was refused).
pub fn require_identity<'a>(ctx: &'a Context<'_>) -> Result<&'a Identity, AppError> {
    require_identity_of(caller(ctx))
}

/// The identity of a caller, or `UNAUTHENTICATED` (for transports without a GraphQL context).
pub fn require_identity_of(caller: &Caller) -> Result<&Identity, AppError> {
    match caller {
        Caller::Authenticated(identity) => Ok(identity),
        Caller::Anonymous => Err(AppError::Unauthenticated("send a token: `Authorization: Bearer <token>`".into())),
        Caller::Rejected(reason) => Err(AppError::Unauthenticated(reason.clone())),
    }
}

/// Lets a field through when the caller has any of the roles (admins always pass).
pub struct RoleGuard(&'static [Role]);

impl RoleGuard {
    /// A guard for callers with one of `roles`, or admins.
    pub fn any(roles: &'static [Role]) -> Self {
        Self(roles)
    }
}

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let identity = require_identity(ctx).map_err(|e| e.extend())?;
        if identity.is_admin() || self.0.iter().any(|r| identity.has(*r)) {
            Ok(())
        } else {
            let wanted: Vec<_> = self.0.iter().map(|r| r.as_str()).collect();
            Err(AppError::Forbidden(format!("needs the role {}", wanted.join(" or "))).extend())
        }
    }
}
