//! Pagination shared by every transport: page-size rules and opaque cursors.
//!
//! - `first`/`after` pages forward, `last`/`before` backward; `first` and `last` together are refused.
//! - Without `first` or `last` a page holds `limits.default_page_size` (20) items.
//! - Above `limits.max_page_size` (100): `PAGE_SIZE_EXCEEDED`; a negative size: `BAD_USER_INPUT`;
//!   a cursor that is not one of ours, or that was issued for another `sortBy`: `INVALID_CURSOR`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::LimitSettings;
use crate::error::AppError;
use crate::store::{CursorKey, ProductCursor, ProductSort};

/// Validated page size and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize {
    /// Items wanted.
    pub limit: u32,
    /// Paging backward (`last`).
    pub backward: bool,
}

/// Checks `first`/`last` against the limits.
pub fn page_size(
    first: Option<i32>,
    last: Option<i32>,
    before: bool,
    limits: &LimitSettings,
) -> Result<PageSize, AppError> {
    let check = |field: &str, n: i32| -> Result<u32, AppError> {
        if n < 0 {
            return Err(AppError::invalid(field, format!("`{field}` must not be negative (got {n})")));
        }
        let n = n as u32;
        if n > limits.max_page_size {
            return Err(AppError::invalid_with(
                "PAGE_SIZE_EXCEEDED",
                field,
                format!("`{field}` may be at most {} (got {n}); page with `after`/`before`", limits.max_page_size),
            ));
        }
        Ok(n)
    };
    match (first, last) {
        (Some(_), Some(_)) => Err(AppError::invalid("last", "pass `first` or `last`, not both")),
        (Some(n), None) => Ok(PageSize { limit: check("first", n)?, backward: false }),
        (None, Some(n)) => Ok(PageSize { limit: check("last", n)?, backward: true }),
        // `before` alone means "the page just before", like `last: default`.
        (None, None) => Ok(PageSize { limit: limits.default_page_size, backward: before }),
    }
}

fn sort_tag(sort: ProductSort) -> &'static str {
    match sort {
        ProductSort::Newest => "n",
        ProductSort::NameAsc => "a",
        ProductSort::PriceAsc => "p",
        ProductSort::PriceDesc => "d",
    }
}

/// The opaque cursor of a product position in `sort`.
pub fn encode_product_cursor(cursor: &ProductCursor, sort: ProductSort) -> String {
    let key = match &cursor.key {
        CursorKey::None => String::new(),
        CursorKey::Text(t) => t.clone(),
        CursorKey::Int(i) => i.to_string(),
    };
    URL_SAFE_NO_PAD.encode(format!("p:{}:{}:{}", sort_tag(sort), cursor.id, key))
}

/// Decodes a product cursor issued for `sort`.
pub fn decode_product_cursor(field: &str, text: &str, sort: ProductSort) -> Result<ProductCursor, AppError> {
    let invalid = |why: &str| AppError::invalid_with("INVALID_CURSOR", field, format!("`{field}` {why}"));
    let raw = URL_SAFE_NO_PAD.decode(text.as_bytes()).map_err(|_| invalid("is not a cursor from this API"))?;
    let raw = String::from_utf8(raw).map_err(|_| invalid("is not a cursor from this API"))?;
    let mut parts = raw.splitn(4, ':');
    let (Some("p"), Some(tag), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(invalid("is not a product cursor"));
    };
    if tag != sort_tag(sort) {
        return Err(invalid("was issued for another `sortBy`; start again without a cursor"));
    }
    let id: i64 = id.parse().map_err(|_| invalid("is damaged"))?;
    let key = match sort {
        ProductSort::Newest => CursorKey::None,
        ProductSort::NameAsc => CursorKey::Text(key.to_string()),
        ProductSort::PriceAsc | ProductSort::PriceDesc => {
            CursorKey::Int(key.parse().map_err(|_| invalid("is damaged"))?)
        }
    };
    Ok(ProductCursor { key, id })
}

/// Encodes a simple id-ordered cursor for `kind` (e.g. vendors by name: `name` + id).
pub fn encode_keyed_cursor(kind: &str, id: i64, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{id}:{key}"))
}

/// Decodes a cursor made by `encode_keyed_cursor` for `kind`.
pub fn decode_keyed_cursor(kind: &str, field: &str, text: &str) -> Result<(i64, String), AppError> {
    let invalid = || AppError::invalid_with("INVALID_CURSOR", field, format!("`{field}` is not a {kind} cursor"));
    let raw = URL_SAFE_NO_PAD.decode(text.as_bytes()).map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let mut parts = raw.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(k), Some(id), Some(key)) if k == kind => Ok((id.parse().map_err(|_| invalid())?, key.to_string())),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_rules() {
        let limits = LimitSettings::default();
        assert_eq!(page_size(None, None, false, &limits).unwrap(), PageSize { limit: 20, backward: false });
        assert_eq!(page_size(Some(100), None, false, &limits).unwrap().limit, 100);
        assert_eq!(page_size(None, Some(5), false, &limits).unwrap(), PageSize { limit: 5, backward: true });
        assert_eq!(page_size(Some(101), None, false, &limits).unwrap_err().code(), "PAGE_SIZE_EXCEEDED");
        assert_eq!(page_size(Some(-1), None, false, &limits).unwrap_err().code(), "BAD_USER_INPUT");
        assert_eq!(page_size(Some(1), Some(1), false, &limits).unwrap_err().code(), "BAD_USER_INPUT");
    }

    #[test]
    fn cursors_round_trip_and_are_tied_to_their_sort() {
        let c = ProductCursor { key: CursorKey::Text("Oak: Desk".into()), id: 7 };
        let text = encode_product_cursor(&c, ProductSort::NameAsc);
        assert_eq!(decode_product_cursor("after", &text, ProductSort::NameAsc).unwrap(), c);
        assert_eq!(decode_product_cursor("after", &text, ProductSort::PriceAsc).unwrap_err().code(), "INVALID_CURSOR");
        assert_eq!(decode_product_cursor("after", "nope", ProductSort::Newest).unwrap_err().code(), "INVALID_CURSOR");
        let v = encode_keyed_cursor("v", 3, "Acme: Goods");
        assert_eq!(decode_keyed_cursor("v", "after", &v).unwrap(), (3, "Acme: Goods".to_string()));
        assert!(decode_keyed_cursor("v", "after", &text).is_err());
    }
}
