//! Product rules: SKU format and lifecycle status.

/// Whether a product can be bought.
// Withdrawn products stay readable (old orders point at them) but cannot be bought. The GraphQL
// enum is derived here, as for `OrderStatus`, so the variants are written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum ProductStatus {
    /// On sale.
    Active,
    /// Withdrawn from sale; still shown on past orders.
    Archived,
}

impl ProductStatus {
    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Archived => "ARCHIVED",
        }
    }

    /// The status stored as `text`; anything but `ARCHIVED` reads as on sale.
    pub fn stored(text: &str) -> Self {
        Self::parse(text).unwrap_or(Self::Active)
    }

    /// Parses the stored value.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ACTIVE" => Some(Self::Active),
            "ARCHIVED" => Some(Self::Archived),
            _ => None,
        }
    }
}

/// A stock-keeping unit: 3 to 40 characters of `A-Z`, `0-9` and `-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku(String);

impl Sku {
    /// Parses and normalises (upper-cases) a SKU.
    pub fn parse(text: &str) -> Result<Self, String> {
        let upper = text.trim().to_ascii_uppercase();
        let ok = (3..=40).contains(&upper.len())
            && upper.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
            && !upper.starts_with('-');
        if ok { Ok(Self(upper)) } else { Err(format!("`{text}` is not a SKU (3-40 of A-Z, 0-9, -)")) }
    }

    /// The SKU text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_normalised_and_checked() {
        assert_eq!(Sku::parse(" nw-0001 ").unwrap().as_str(), "NW-0001");
        for bad in ["ab", "-ABC", "AB C", "ÄBC", &"A".repeat(41)] {
            assert!(Sku::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_round_trips() {
        for s in [ProductStatus::Active, ProductStatus::Archived] {
            assert_eq!(ProductStatus::parse(s.as_str()), Some(s));
        }
    }
}
