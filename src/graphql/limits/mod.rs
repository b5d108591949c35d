//! Operation limits and cost budgets, checked before anything executes, by concern:
//! `scan` (raw text, before parsing), `measure` (one pass over the parsed document),
//! `cost` (the model, requested and actual), `billing` (per-caller budgets), `documents` (parsed
//! documents, cached per distinct text) and `gate` (where every operation passes them, once per
//! request, around the engine).
//!
//! | limit (setting) | default | code |
//! |---|---|---|
//! | query text (`SECURECART_MAX_QUERY_BYTES`) | 256 KiB | `QUERY_TOO_LARGE` |
//! | lexical tokens (`SECURECART_MAX_TOKENS`) | 15,000 | `MAX_TOKENS_EXCEEDED` |
//! | aliases (`SECURECART_MAX_ALIASES`) | 50 | `MAX_ALIASES_EXCEEDED` |
//! | root fields (`SECURECART_MAX_ROOT_FIELDS`) | 30 | `MAX_ROOT_FIELDS_EXCEEDED` |
//! | depth (`SECURECART_MAX_DEPTH`) | 12 | `MAX_DEPTH_EXCEEDED` |
//! | selection nesting, fragments included | 32 | `MAX_DEPTH_EXCEEDED` |
//! | a fragment that spreads itself | - | `FRAGMENT_CYCLE` |
//! | requested cost (`SECURECART_MAX_COMPLEXITY`) | 5,000 | `MAX_COMPLEXITY_EXCEEDED` |
//! | cost budget (per caller, see `budget`) | by role | `THROTTLED` (HTTP 429) |
//!
//! Size and token limits run on the raw text before it is parsed, so an oversized document
//! costs a scan, not a parse. Every other measure comes from one pass over the parsed document
//! (`measure`), through inline fragments and fragment spreads alike: wrapping a selection in a
//! fragment changes none of them. Example: `{ a1: __typename a2: __typename ... a51: __typename }`
//! answers `{"errors":[{"message":"51 aliases; at most 50 are allowed","extensions":{"code":"MAX_ALIASES_EXCEEDED"}}]}`.
//!
//! Every response carries `extensions.cost { requestedQueryCost actualQueryCost throttleStatus
//! { maximumAvailable currentlyAvailable restoreRate } }` (see `cost` for the model).

pub mod billing;
pub mod cost;
pub mod documents;
pub mod gate;
pub mod measure;
pub mod scan;

pub use gate::{CostCell, CostReport, Limits};
pub use scan::{Scan, count_tokens, scan};

use async_graphql::Name;
use async_graphql::Positioned;
use async_graphql::parser::types::{ExecutableDocument, OperationDefinition};

/// The operation `name` picks (the only one when `None`).
pub fn operation<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<(Option<&'a Name>, &'a Positioned<OperationDefinition>)> {
    match name {
        Some(name) => document.operations.iter().find(|(n, _)| n.map(|n| n.as_str()) == Some(name)),
        None => document.operations.iter().next(),
    }
}
