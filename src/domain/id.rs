//! Opaque, globally unique object ids (Relay): base64url of `Kind:number`.
//!
//! Emitted in one canonical form, URL-safe base64 without padding (`UHJvZHVjdDo3Nw`), which
//! needs no escaping in a URL. Accepted in every usual spelling of the same bytes: padded or
//! not, standard (`+/`) or URL-safe (`-_`) alphabet, so ids built with graphql-relay's
//! `toGlobalId` or the browser's `btoa` (`UHJvZHVjdDo3Nw==`) work as they are.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The kinds of object that have a global id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A product.
    Product,
    /// A vendor.
    Vendor,
    /// A customer.
    Customer,
    /// An order.
    Order,
    /// A shopping cart.
    Cart,
}

impl NodeKind {
    fn name(self) -> &'static str {
        match self {
            Self::Product => "Product",
            Self::Vendor => "Vendor",
            Self::Customer => "Customer",
            Self::Order => "Order",
            Self::Cart => "Cart",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "Product" => Self::Product,
            "Vendor" => Self::Vendor,
            "Customer" => Self::Customer,
            "Order" => Self::Order,
            "Cart" => Self::Cart,
            _ => return None,
        })
    }
}

/// A decoded global id: the object kind and its database key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalId {
    /// What kind of object.
    pub kind: NodeKind,
    /// The row id.
    pub id: i64,
}

impl GlobalId {
    /// Builds the id of one object.
    pub fn new(kind: NodeKind, id: i64) -> Self {
        Self { kind, id }
    }

    /// The opaque string clients see.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.kind.name(), self.id))
    }

    /// Decodes any global id; `None` when it is not one of ours.
    pub fn decode(text: &str) -> Option<Self> {
        // At most two padding characters, and only at the end; then the standard alphabet's
        // two letters mapped to the URL-safe ones.
        let unpadded = text.strip_suffix("==").or_else(|| text.strip_suffix('=')).unwrap_or(text);
        if unpadded.len() != text.len() && !text.len().is_multiple_of(4) {
            return None;
        }
        let normal: Vec<u8> = unpadded
            .bytes()
            .map(|b| match b {
                b'+' => b'-',
                b'/' => b'_',
                b => b,
            })
            .collect();
        let raw = URL_SAFE_NO_PAD.decode(&normal).ok()?;
        let raw = std::str::from_utf8(&raw).ok()?;
        let (kind, id) = raw.split_once(':')?;
        // One spelling per id: digits only, no sign, no leading zero (`Product:+1` and
        // `Product:01` are not ids), so an id cannot be varied to slip past a cache or a log.
        if id.is_empty() || id.starts_with('0') || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let id: i64 = id.parse().ok().filter(|id| *id > 0)?;
        Some(Self { kind: NodeKind::from_name(kind)?, id })
    }

    /// Decodes an id that must be of `kind`.
    pub fn decode_as(text: &str, kind: NodeKind) -> Option<i64> {
        Self::decode(text).filter(|g| g.kind == kind).map(|g| g.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_padded_and_standard_base64_and_emits_one_form() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        // graphql-relay's toGlobalId("Product", "77") and btoa("Product:77").
        assert_eq!(GlobalId::decode("UHJvZHVjdDo3Nw=="), Some(GlobalId::new(NodeKind::Product, 77)));
        assert_eq!(GlobalId::new(NodeKind::Product, 77).encode(), "UHJvZHVjdDo3Nw");
        // Ids whose base64 holds `+`/`/` in the standard alphabet (`-`/`_` URL-safe).
        for id in 1..2000 {
            let g = GlobalId::new(NodeKind::Order, id);
            let raw = format!("Order:{id}");
            for text in [STANDARD.encode(&raw), URL_SAFE.encode(&raw), g.encode()] {
                assert_eq!(GlobalId::decode(&text), Some(g), "{text}");
            }
        }
        for bad in ["UHJvZHVjdDo3Nw===", "UHJv=ZHVjdDo3Nw", "=UHJvZHVjdDo3Nw", "UHJvZHVjdDo3Nw=", "UHJvZHVjdDo3N+=="] {
            assert_eq!(GlobalId::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trips_and_rejects_foreign_ids() {
        let id = GlobalId::new(NodeKind::Product, 42);
        let text = id.encode();
        assert!(!text.contains("42"), "ids are opaque: {text}");
        assert_eq!(GlobalId::decode(&text), Some(id));
        assert_eq!(GlobalId::decode_as(&text, NodeKind::Product), Some(42));
        assert_eq!(GlobalId::decode_as(&text, NodeKind::Vendor), None);
        assert_eq!(GlobalId::decode("garbage!"), None);
        assert_eq!(GlobalId::decode(&URL_SAFE_NO_PAD.encode("Product:-1")), None);
        assert_eq!(GlobalId::decode(&URL_SAFE_NO_PAD.encode("Table:1")), None);
        for variant in ["Product:+1", "Product:01", "Product: 1", "Product:1 ", "Product:"] {
            assert_eq!(GlobalId::decode(&URL_SAFE_NO_PAD.encode(variant)), None, "{variant}");
        }
    }
}
