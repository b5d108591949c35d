//! Stable `extensions.code` values for errors raised by the GraphQL engine itself.
//!
//! Resolver errors get their code from `AppError`. Errors found before execution (a document
//! that does not parse or does not validate) come from async-graphql without a code; the
//! `Limits` extension adds one with these functions (one extension, not two: async-graphql
//! runs every extension's hook around every field), so every error a client sees is
//! machine-readable:
//!
//! | code | when |
//! |---|---|
//! | `GRAPHQL_PARSE_FAILED` | the document is not valid GraphQL syntax |
//! | `GRAPHQL_VALIDATION_FAILED` | unknown field or argument, wrong argument type, bad variables, ... |
//! | `MAX_DEPTH_EXCEEDED` | nesting deeper than `limits.max_depth` (or the parser's 32 levels) |
//! | `FRAGMENT_CYCLE` | a fragment that spreads itself, directly or through others |
//! | `MAX_COMPLEXITY_EXCEEDED` | static complexity above `limits.max_complexity` |
//! | `INTROSPECTION_DISABLED` | `__schema`/`__type` by a caller the introspection policy excludes |
//! | `BAD_USER_INPUT` | an argument value the engine could not coerce while executing |
//! | `INTERNAL_SERVER_ERROR` | any other engine error without a code (a bug on our side; masked) |

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError, ServerResult};

/// Sets `extensions.code` unless the error already has one.
pub fn with_code(mut err: ServerError, code: &str) -> ServerError {
    let ext = err.extensions.get_or_insert_with(Default::default);
    if ext.get("code").is_none() {
        ext.set("code", code);
    }
    err
}

/// Whether some fragment of `query` spreads itself, directly or through others (only called on
/// the error path, so parsing again costs nothing in the common case).
fn has_fragment_cycle(query: &str) -> bool {
    use async_graphql::parser::types::{Selection, SelectionSet};
    fn spreads(set: &SelectionSet, out: &mut Vec<String>) {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => spreads(&f.node.selection_set.node, out),
                Selection::InlineFragment(f) => spreads(&f.node.selection_set.node, out),
                Selection::FragmentSpread(s) => out.push(s.node.fragment_name.node.to_string()),
            }
        }
    }
    let Ok(document) = async_graphql::parser::parse_query(query) else { return false };
    let edges: std::collections::HashMap<String, Vec<String>> = document
        .fragments
        .iter()
        .map(|(name, f)| {
            let mut out = Vec::new();
            spreads(&f.node.selection_set.node, &mut out);
            (name.to_string(), out)
        })
        .collect();
    // Depth-first search with colours: grey on the stack, black done.
    fn visit<'a>(
        n: &'a str,
        edges: &'a std::collections::HashMap<String, Vec<String>>,
        grey: &mut Vec<&'a str>,
        black: &mut Vec<&'a str>,
    ) -> bool {
        if grey.contains(&n) {
            return true;
        }
        if black.contains(&n) {
            return false;
        }
        grey.push(n);
        let cyclic = edges.get(n).is_some_and(|next| next.iter().any(|m| visit(m, edges, grey, black)));
        grey.pop();
        black.push(n);
        cyclic
    }
    let (mut grey, mut black) = (Vec::new(), Vec::new());
    edges.keys().any(|n| visit(n, &edges, &mut grey, &mut black))
}

/// Request data marking a caller who may not introspect the schema.
pub struct IntrospectionDenied;

/// Whether any operation selects `__schema` or `__type` at its root (directly, through inline
/// fragments or through named fragments).
fn asks_for_introspection(document: &ExecutableDocument) -> bool {
    use async_graphql::parser::types::{Selection, SelectionSet};
    fn visit(set: &SelectionSet, document: &ExecutableDocument, depth: usize) -> bool {
        depth < 32
            && set.items.iter().any(|item| match &item.node {
                Selection::Field(f) => matches!(f.node.name.node.as_str(), "__schema" | "__type"),
                Selection::InlineFragment(f) => visit(&f.node.selection_set.node, document, depth + 1),
                Selection::FragmentSpread(s) => document
                    .fragments
                    .get(&s.node.fragment_name.node)
                    .is_some_and(|f| visit(&f.node.selection_set.node, document, depth + 1)),
            })
    }
    document.operations.iter().any(|(_, op)| visit(&op.node.selection_set.node, document, 0))
}

/// Replaces an uncoded engine error with the masked internal error, logged once.
fn mask(e: ServerError) -> ServerError {
    let correlation_id = uuid::Uuid::new_v4().to_string();
    tracing::error!(correlation_id = %correlation_id, error = %e.message, path = ?e.path, "internal GraphQL error");
    let mut masked = ServerError::new(crate::error::MASKED_MESSAGE, e.locations.first().copied());
    masked.path = e.path;
    let ext = masked.extensions.get_or_insert_with(Default::default);
    ext.set("code", "INTERNAL_SERVER_ERROR");
    ext.set("correlationId", correlation_id);
    masked
}

/// Codes a parse error (a nesting guard tripped by a fragment cycle gets its own code).
pub fn parse_error(e: ServerError, query: &str) -> ServerError {
    // The parser's nesting guards fire before validation counts depth; a fragment that spreads
    // itself trips them too, and deserves its own code.
    let code = if e.message.contains("recursion limit") || e.message.contains("recursion depth") {
        if has_fragment_cycle(query) { "FRAGMENT_CYCLE" } else { "MAX_DEPTH_EXCEEDED" }
    } else {
        "GRAPHQL_PARSE_FAILED"
    };
    with_code(e, code)
}

/// Refuses introspection to a caller the policy excludes.
pub fn check_introspection(denied: bool, document: &ExecutableDocument) -> ServerResult<()> {
    if denied && asks_for_introspection(document) {
        let err = ServerError::new("introspection is disabled for this caller", None);
        return Err(with_code(err, "INTROSPECTION_DISABLED"));
    }
    Ok(())
}

/// Codes validation errors.
pub fn validation_errors(errors: Vec<ServerError>) -> Vec<ServerError> {
    errors
        .into_iter()
        .map(|e| {
            let code = match e.message.as_str() {
                "Query is nested too deep." => "MAX_DEPTH_EXCEEDED",
                "Query is too complex." => "MAX_COMPLEXITY_EXCEEDED",
                _ => "GRAPHQL_VALIDATION_FAILED",
            };
            with_code(e, code)
        })
        .collect()
}

/// Codes (and, for uncoded engine errors, masks) the errors of an executed response.
pub fn execution_errors(response: &mut Response) {
    response.errors = std::mem::take(&mut response.errors)
        .into_iter()
        .map(|e| {
            let client_fault = ["Invalid value for argument", "Expected input type", "Failed to parse"]
                .iter()
                .any(|p| e.message.starts_with(p));
            if client_fault || e.extensions.as_ref().is_some_and(|x| x.get("code").is_some()) {
                with_code(e, "BAD_USER_INPUT")
            } else {
                mask(e)
            }
        })
        .collect();
}
