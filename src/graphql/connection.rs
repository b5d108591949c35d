//! Relay `PageInfo`, GraphQL's face of the pagination rules in `service::pagination`.
//!
//! Rules a client can rely on:
//! - `first`/`after` pages forward, `last`/`before` backward; `first` and `last` together are refused.
//! - Without `first` or `last` a page holds `limits.default_page_size` (20) items.
//! - Above `limits.max_page_size` (100) the field fails with `PAGE_SIZE_EXCEEDED`; a negative
//!   size with `BAD_USER_INPUT`; a cursor that is not one of ours, or that was issued for another
//!   `sortBy`, with `INVALID_CURSOR`.

use async_graphql::SimpleObject;

/// Relay page information.
#[derive(SimpleObject, Debug, Clone, Default)]
pub struct PageInfo {
    /// Whether more items follow the last edge.
    pub has_next_page: bool,
    /// Whether items precede the first edge.
    pub has_previous_page: bool,
    /// The cursor of the first edge.
    pub start_cursor: Option<String>,
    /// The cursor of the last edge.
    pub end_cursor: Option<String>,
}

impl PageInfo {
    /// The page information of `edges`, whose cursors `cursor` reads.
    pub fn of<T>(edges: &[T], cursor: impl Fn(&T) -> &String, has_next: bool, has_previous: bool) -> Self {
        Self {
            has_next_page: has_next,
            has_previous_page: has_previous,
            start_cursor: edges.first().map(|e| cursor(e).clone()),
            end_cursor: edges.last().map(|e| cursor(e).clone()),
        }
    }
}
