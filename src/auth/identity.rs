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
    /// Parses a plain role name (`customer`, `Vendor`, `admins`); anything else is not a role.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "customer" | "customers" => Some(Self::Customer),
            "vendor" | "vendors" => Some(Self::Vendor),
            "admin" | "admins" => Some(Self::Admin),
            _ => None,
        }
    }

    /// Parses a role as an identity provider writes it, trusting only our namespaces: a
    /// namespaced role (`securecart:admin`, `securecart/admin`, `https://securecart.example/admin`)
    /// counts only when its namespace is one of `namespaces`; a plain name (`admin`) only when
    /// `plain` allows it. A role from another application's namespace (`billing:admin`,
    /// `wiki:admins`) is never ours.
    pub fn parse_trusted(name: &str, namespaces: &[String], plain: bool) -> Option<Self> {
        match name.rsplit_once([':', '/']) {
            None if plain => Self::parse(name),
            None => None,
            Some((namespace, role)) => {
                let namespace = namespace.trim_end_matches([':', '/']);
                namespaces.iter().any(|n| n.eq_ignore_ascii_case(namespace)).then(|| Self::parse(role)).flatten()
            }
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
        assert_eq!(Role::parse("securecart:vendor"), None, "not a plain name");
        assert_eq!(Role::parse("openid"), None);
        assert_eq!(Role::parse("superuser"), None);
        let ours = ["securecart".to_string(), "https://securecart.example".to_string()];
        assert_eq!(Role::parse_trusted("securecart:vendor", &ours, false), Some(Role::Vendor));
        assert_eq!(Role::parse_trusted("securecart/admin", &ours, false), Some(Role::Admin));
        assert_eq!(Role::parse_trusted("https://securecart.example/admin", &ours, false), Some(Role::Admin));
        assert_eq!(Role::parse_trusted("billing:admin", &ours, true), None);
        assert_eq!(Role::parse_trusted("wiki:admins", &ours, true), None);
        assert_eq!(Role::parse_trusted("https://other-app.example/admin", &ours, true), None);
        assert_eq!(Role::parse_trusted("admin", &ours, true), Some(Role::Admin));
        assert_eq!(Role::parse_trusted("admin", &ours, false), None, "plain names only when allowed");
    }
}
