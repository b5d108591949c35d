//! Identity: JWT verification (HS256 or a JWKS), the caller's roles, and field guards.

pub mod authenticate;
pub mod guard;
pub mod identity;
pub mod jwt;

pub use authenticate::authenticate;
pub use guard::{RoleGuard, caller, require_identity, require_identity_of};
pub use identity::{Caller, Identity, Role};
pub use jwt::Verifier;
