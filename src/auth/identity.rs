//! Who is calling: an anonymous caller, a verified identity, or a token that was refused.

use async_graphql::Enum;

/// A role granted by the identity provider.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A shopper: their own cart and orders.
    Customer,
    /// A merchant: their own products, and the orders that contain them.
    Vendor,
    /// Staff: everything.
    Admin,
}

impl Role {
    /// Parses a role name as identity providers spell it (`customer`, `Vendor`, `role:admin`,
    /// `securecart:admin`, `securecart/admin`); anything else is not a role of ours.
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.rsplit([':', '/']).next().unwrap_or(name);
        match name.to_ascii_lowercase().as_str() {
            "customer" | "customers" => Some(Self::Customer),
            "vendor" | "vendors" => Some(Self::Vendor),
            "admin" | "admins" => Some(Self::Admin),
            _ => None,
        }
    }

    /// The lower-case name used in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Vendor => "vendor",
            Self::Admin => "admin",
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The identity provider's subject (`sub`).
    pub subject: String,
    /// Granted roles, without duplicates.
    pub roles: Vec<Role>,
    /// For vendors: the vendor they act for (from the vendor claim or the linked vendor record).
    pub vendor_id: Option<i64>,
    /// When the token expires (seconds since the epoch).
    pub expires_at: i64,
}

impl Identity {
    /// Whether the identity has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the identity is an admin.
    pub fn is_admin(&self) -> bool {
        self.has(Role::Admin)
    }
}

/// The caller of one request or WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No token: the public catalog only.
    Anonymous,
    /// A valid token.
    Authenticated(Identity),
    /// A token was sent but refused; protected fields answer `UNAUTHENTICATED` with this reason.
    Rejected(String),
}

impl Caller {
    /// The identity, if the token was valid.
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Self::Authenticated(identity) => Some(identity),
            _ => None,
        }
    }

    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.identity().is_some_and(Identity::is_admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_from_several_providers() {
        assert_eq!(Role::parse("customer"), Some(Role::Customer));
        assert_eq!(Role::parse("Admin"), Some(Role::Admin));
        assert_eq!(Role::parse("securecart:vendor"), Some(Role::Vendor));
        assert_eq!(Role::parse("https://securecart/admins"), Some(Role::Admin));
        assert_eq!(Role::parse("openid"), None);
        assert_eq!(Role::parse("superuser"), None);
    }
}
