//! Stable `extensions.code` values for errors raised by the GraphQL engine itself.
//!
//! Resolver errors get their code from `AppError`, limits from `limits`. Errors found by the
//! engine (a document that does not parse or does not validate, an argument it cannot coerce)
//! come from async-graphql without a code; the `Limits` extension adds one with these functions,
//! so every error a client sees is machine-readable:
//!
//! | code | when |
//! |---|---|
//! | `GRAPHQL_PARSE_FAILED` | the document is not valid GraphQL syntax |
//! | `GRAPHQL_VALIDATION_FAILED` | unknown field or argument, wrong argument type, bad variables, ... |
//! | `MAX_DEPTH_EXCEEDED` | nesting deeper than the parser's recursion limit (deeper limits: `limits`) |
//! | `INTROSPECTION_DISABLED` | `__schema`/`__type` by a caller the introspection policy excludes |
//! | `BAD_USER_INPUT` | an argument value the engine could not coerce while executing |
//! | `INTERNAL_SERVER_ERROR` | any other engine error without a code (a bug on our side; masked) |

use async_graphql::{Response, ServerError};

/// Sets `extensions.code` unless the error already has one.
pub fn with_code(mut err: ServerError, code: &str) -> ServerError {
    let ext = err.extensions.get_or_insert_with(Default::default);
    if ext.get("code").is_none() {
        ext.set("code", code);
    }
    err
}

/// Request data marking a caller who may not introspect the schema.
pub struct IntrospectionDenied;

/// Replaces an uncoded engine error with the masked internal error, logged once.
fn mask(e: ServerError) -> ServerError {
    let detail = format!("{} (at {:?})", e.message, e.path);
    let view = crate::error::ClientError::masked("internal GraphQL error", &detail);
    let mut masked = ServerError::new(view.message.clone(), e.locations.first().copied());
    masked.path = e.path;
    view.set_extensions(masked.extensions.get_or_insert_with(Default::default));
    masked
}

/// Codes a parse error by the parser's error kind.
pub fn parse_error(e: async_graphql::parser::Error) -> ServerError {
    let code = match e {
        async_graphql::parser::Error::RecursionLimitExceeded => "MAX_DEPTH_EXCEEDED",
        _ => "GRAPHQL_PARSE_FAILED",
    };
    with_code(e.into(), code)
}

/// Codes validation errors (every limit is checked before validation, with its own code).
pub fn validation_errors(errors: Vec<ServerError>) -> Vec<ServerError> {
    errors.into_iter().map(|e| with_code(e, "GRAPHQL_VALIDATION_FAILED")).collect()
}

/// Codes (and, for uncoded engine errors, masks) the errors of an executed response.
pub fn execution_errors(response: &mut Response) {
    response.errors = std::mem::take(&mut response.errors)
        .into_iter()
        .map(|e| {
            // The one place keyed on message text: async-graphql reports a bad argument or
            // variable value (`InputValueError`) as a bare `ServerError` with no code, kind or
            // source to match on, and these prefixes are the fixed wording of its
            // `InputValueError::into_server_error` and input-type checks. Our own refusals carry
            // a `code` extension and are matched on that instead.
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
