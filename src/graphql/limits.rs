//! Operation limits and cost budgets, checked before anything executes.
//!
//! | limit (setting) | default | code |
//! |---|---|---|
//! | query text (`SECURECART_MAX_QUERY_BYTES`) | 256 KiB | `QUERY_TOO_LARGE` |
//! | lexical tokens (`SECURECART_MAX_TOKENS`) | 15,000 | `MAX_TOKENS_EXCEEDED` |
//! | aliases (`SECURECART_MAX_ALIASES`) | 50 | `MAX_ALIASES_EXCEEDED` |
//! | root fields (`SECURECART_MAX_ROOT_FIELDS`) | 30 | `MAX_ROOT_FIELDS_EXCEEDED` |
//! | depth (`SECURECART_MAX_DEPTH`) | 12 | `MAX_DEPTH_EXCEEDED` |
//! | requested cost (`SECURECART_MAX_COMPLEXITY`) | 5,000 | `MAX_COMPLEXITY_EXCEEDED` |
//! | cost budget (per caller, see `budget`) | by role | `THROTTLED` (HTTP 429) |
//!
//! Size and token limits run on the raw text before it is parsed, so an oversized document
//! costs a scan, not a parse. Example: `{ a1: __typename a2: __typename ... a51: __typename }`
//! answers `{"errors":[{"message":"51 aliases; at most 50 are allowed","extensions":{"code":"MAX_ALIASES_EXCEEDED"}}]}`.
//!
//! Every response carries `extensions.cost { requestedQueryCost actualQueryCost throttleStatus
//! { maximumAvailable currentlyAvailable restoreRate } }` (see `cost` for the model).

use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest, NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, Request, Response, ServerError, ServerResult, Value, Variables};

use super::cost::operation_cost;
use super::errors::{
    IntrospectionDenied, check_introspection, execution_errors, parse_error, validation_errors, with_code,
};
use crate::budget::{BillingKey, Budgets, ThrottleStatus, Throttled};
use crate::config::Settings;

/// What the transport learns about a request (429 headers, metrics, the span).
#[derive(Debug, Clone, Default)]
pub struct CostReport {
    /// `query`, `mutation` or `subscription`, once parsed.
    pub operation_type: Option<&'static str>,
    /// The operation's name in the document, if it has one.
    pub operation_name: Option<String>,
    /// The requested cost, once computed.
    pub requested: Option<u64>,
    /// Set when the request was refused for its budget.
    pub throttled: Option<Throttled>,
    /// The bucket after the request.
    pub status: Option<ThrottleStatus>,
}

/// Shared between the extension and the transport for one request.
#[derive(Clone, Default)]
pub struct CostCell(pub Arc<Mutex<CostReport>>);

/// The operation name a request asked for (the extension's hooks do not get it).
pub struct OperationName(pub Option<String>);

/// Builds the per-request limits extension.
pub struct Limits {
    settings: Arc<Settings>,
    budgets: Arc<Budgets>,
}

impl Limits {
    /// The extension factory.
    pub fn new(settings: Arc<Settings>, budgets: Arc<Budgets>) -> Self {
        Self { settings, budgets }
    }
}

impl ExtensionFactory for Limits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(LimitsExtension {
            settings: self.settings.clone(),
            budgets: self.budgets.clone(),
            state: Mutex::new(State::default()),
        })
    }
}

#[derive(Default)]
struct State {
    document: Option<ExecutableDocument>,
    variables: Variables,
    requested: u64,
    billed: Option<(BillingKey, ThrottleStatus)>,
}

struct LimitsExtension {
    settings: Arc<Settings>,
    budgets: Arc<Budgets>,
    state: Mutex<State>,
}

fn refuse(code: &str, message: String) -> ServerError {
    with_code(ServerError::new(message, None), code)
}

/// What a scan of the raw text finds, before any parsing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scan {
    /// Lexical tokens (punctuators, names, numbers, strings), up to just past the limit.
    pub tokens: usize,
    /// Aliases (`name:` outside parentheses): exact.
    pub aliases: usize,
    /// Fields written directly in operations' top-level selection sets: a lower bound of the
    /// root fields (spreads and inline fragments are counted after parsing).
    pub root_fields: usize,
}

/// Scans the query text once, stopping when the tokens pass `limit`: this is what lets an
/// abusive document be refused for a few microseconds instead of a parse.
pub fn scan(text: &str, limit: usize) -> Scan {
    #[derive(PartialEq, Clone, Copy)]
    enum Tok<'a> {
        Name(&'a [u8]),
        Punct(u8),
        Spread,
        Other,
    }
    let bytes = text.as_bytes();
    let mut out = Scan::default();
    let (mut i, mut braces, mut parens) = (0usize, 0usize, 0usize);
    let (mut prev, mut pending): (Option<Tok>, Option<Tok>) = (None, None);
    let (mut in_fragment, mut fragment_keyword) = (false, false);
    // A name becomes a root field or an alias only once the next token is known.
    let settle =
        |name_prev: Option<Tok>, next: Option<Tok>, braces: usize, parens: usize, in_fragment: bool, out: &mut Scan| {
            if parens != 0 {
                return;
            }
            if next == Some(Tok::Punct(b':')) {
                out.aliases += 1;
            } else if braces == 1
                && !in_fragment
                && !matches!(name_prev, Some(Tok::Spread) | Some(Tok::Punct(b'@')) | Some(Tok::Name(b"on")))
            {
                out.root_fields += 1;
            }
        };
    let mut pending_ctx = (None, 0usize, 0usize, false);
    while i < bytes.len() && out.tokens <= limit {
        let b = bytes[i];
        let tok = match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                if bytes[i..].starts_with(b"\"\"\"") {
                    i += 3;
                    while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 3;
                } else {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
                Tok::Other
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                i += 3;
                Tok::Spread
            }
            _ if b.is_ascii_alphabetic() || b == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                Tok::Name(&bytes[start..i])
            }
            _ if b.is_ascii_digit() || b == b'-' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'.' | b'-' | b'+')) {
                    i += 1;
                }
                Tok::Other
            }
            _ => {
                i += 1;
                Tok::Punct(b)
            }
        };
        out.tokens += 1;
        if let Some(Tok::Name(_)) = pending.take() {
            let (p, br, pa, fr) = pending_ctx;
            settle(p, Some(tok), br, pa, fr, &mut out);
        }
        match tok {
            Tok::Punct(b'{') => {
                if braces == 0 {
                    in_fragment = fragment_keyword;
                    fragment_keyword = false;
                }
                braces += 1;
            }
            Tok::Punct(b'}') => braces = braces.saturating_sub(1),
            Tok::Punct(b'(') => parens += 1,
            Tok::Punct(b')') => parens = parens.saturating_sub(1),
            Tok::Name(b"fragment") if braces == 0 => fragment_keyword = true,
            Tok::Name(_) if braces > 0 => {
                pending = Some(tok);
                pending_ctx = (prev, braces, parens, in_fragment);
            }
            _ => {}
        }
        prev = Some(tok);
    }
    if let Some(Tok::Name(_)) = pending {
        let (p, br, pa, fr) = pending_ctx;
        settle(p, None, br, pa, fr, &mut out);
    }
    out
}

/// Counts GraphQL tokens, stopping past `limit`.
pub fn count_tokens(text: &str, limit: usize) -> usize {
    scan(text, limit).tokens
}

/// Aliases in the whole document, and root fields of the largest operation.
fn shape(document: &ExecutableDocument) -> (usize, usize) {
    fn aliases(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(f) => usize::from(f.node.alias.is_some()) + aliases(&f.node.selection_set.node),
                Selection::InlineFragment(f) => aliases(&f.node.selection_set.node),
                Selection::FragmentSpread(_) => 0,
            })
            .sum()
    }
    fn root_fields(set: &SelectionSet, document: &ExecutableDocument, seen: &mut Vec<Name>) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(_) => 1,
                Selection::InlineFragment(f) => root_fields(&f.node.selection_set.node, document, seen),
                Selection::FragmentSpread(s) => {
                    let name = &s.node.fragment_name.node;
                    match document.fragments.get(name) {
                        Some(f) if !seen.contains(name) => {
                            seen.push(name.clone());
                            root_fields(&f.node.selection_set.node, document, seen)
                        }
                        _ => 0,
                    }
                }
            })
            .sum()
    }
    let in_operations: usize = document.operations.iter().map(|(_, op)| aliases(&op.node.selection_set.node)).sum();
    let in_fragments: usize = document.fragments.values().map(|f| aliases(&f.node.selection_set.node)).sum();
    let roots = document
        .operations
        .iter()
        .map(|(_, op)| root_fields(&op.node.selection_set.node, document, &mut Vec::new()))
        .max()
        .unwrap_or(0);
    (in_operations + in_fragments, roots)
}

fn cost_value(requested: u64, actual: u64, status: Option<ThrottleStatus>) -> Value {
    let mut cost = async_graphql::indexmap::IndexMap::new();
    cost.insert(Name::new("requestedQueryCost"), Value::from(requested));
    cost.insert(Name::new("actualQueryCost"), Value::from(actual));
    if let Some(s) = status {
        let mut t = async_graphql::indexmap::IndexMap::new();
        t.insert(Name::new("maximumAvailable"), Value::from(s.maximum_available.floor() as u64));
        t.insert(Name::new("currentlyAvailable"), Value::from(s.currently_available.floor().max(0.0) as u64));
        t.insert(Name::new("restoreRate"), Value::from(s.restore_rate.floor() as u64));
        cost.insert(Name::new("throttleStatus"), Value::Object(t));
    }
    Value::Object(cost)
}

#[async_graphql::async_trait::async_trait]
impl Extension for LimitsExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let limits = &self.settings.limits;
        if request.query.len() > limits.max_query_bytes {
            return Err(refuse(
                "QUERY_TOO_LARGE",
                format!("the query is {} bytes; at most {} are allowed", request.query.len(), limits.max_query_bytes),
            ));
        }
        let found = scan(&request.query, limits.max_tokens);
        if found.tokens > limits.max_tokens {
            return Err(refuse("MAX_TOKENS_EXCEEDED", format!("the query has more than {} tokens", limits.max_tokens)));
        }
        // The same limits are checked again after parsing (that count also follows fragments);
        // this one only spares the parse for documents that are plainly over.
        if found.aliases > limits.max_aliases {
            return Err(refuse(
                "MAX_ALIASES_EXCEEDED",
                format!("{} aliases; at most {} are allowed", found.aliases, limits.max_aliases),
            ));
        }
        if found.root_fields > limits.max_root_fields {
            return Err(refuse(
                "MAX_ROOT_FIELDS_EXCEEDED",
                format!("{} root fields; at most {} are allowed", found.root_fields, limits.max_root_fields),
            ));
        }
        self.state.lock().unwrap_or_else(|e| e.into_inner()).variables = request.variables.clone();
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await.map_err(|e| parse_error(e, query))?;
        check_introspection(ctx.data_opt::<IntrospectionDenied>().is_some(), &document)?;
        let limits = &self.settings.limits;
        let (aliases, roots) = shape(&document);
        if aliases > limits.max_aliases {
            return Err(refuse(
                "MAX_ALIASES_EXCEEDED",
                format!("{aliases} aliases; at most {} are allowed", limits.max_aliases),
            ));
        }
        if roots > limits.max_root_fields {
            return Err(refuse(
                "MAX_ROOT_FIELDS_EXCEEDED",
                format!("{roots} root fields; at most {} are allowed", limits.max_root_fields),
            ));
        }
        let name = ctx.data_opt::<OperationName>().and_then(|n| n.0.clone());
        let operation = match name.as_deref() {
            Some(n) => document.operations.iter().find(|(o, _)| o.map(|o| o.as_str()) == Some(n)),
            None => document.operations.iter().next(),
        };
        let operation_type = operation.map(|(_, op)| match op.node.ty {
            async_graphql::parser::types::OperationType::Query => "query",
            async_graphql::parser::types::OperationType::Mutation => "mutation",
            async_graphql::parser::types::OperationType::Subscription => "subscription",
        });
        let requested = operation_cost(&document, name.as_deref(), variables, limits.default_page_size, None);
        let span = tracing::Span::current();
        span.record("operation_type", operation_type.unwrap_or("unknown"));
        span.record("cost", requested);
        if let Some(cell) = ctx.data_opt::<CostCell>() {
            let mut report = cell.0.lock().unwrap_or_else(|e| e.into_inner());
            report.operation_type = operation_type;
            report.operation_name = operation.and_then(|(n, _)| n.map(|n| n.to_string()));
            report.requested = Some(requested);
        }
        if requested > limits.max_complexity as u64 {
            return Err(refuse(
                "MAX_COMPLEXITY_EXCEEDED",
                format!(
                    "the query costs {requested}; at most {} is allowed (see extensions.cost)",
                    limits.max_complexity
                ),
            ));
        }
        // Bill the requested cost now; the unused part is given back after execution.
        let billed = match ctx.data_opt::<BillingKey>() {
            Some(key) => match self.budgets.take(&key.key, requested as f64, key.policy).await {
                Ok(status) => Some((key.clone(), status)),
                Err(throttled) => {
                    if let Some(cell) = ctx.data_opt::<CostCell>() {
                        cell.0.lock().unwrap_or_else(|e| e.into_inner()).throttled = Some(throttled);
                    }
                    let mut err = refuse(
                        "THROTTLED",
                        format!(
                            "this query costs {requested}; {} of {} points are available, {} restored per second",
                            throttled.status.currently_available.floor(),
                            throttled.status.maximum_available,
                            throttled.status.restore_rate
                        ),
                    );
                    let ext = err.extensions.get_or_insert_with(Default::default);
                    ext.set("retryAfter", throttled.retry_after_secs);
                    ext.set("cost", cost_value(requested, 0, Some(throttled.status)));
                    return Err(err);
                }
            },
            None => None,
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.requested = requested;
        state.billed = billed;
        state.document = Some(document.clone());
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<async_graphql::ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(validation_errors)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        execution_errors(&mut response);
        let (document, variables, requested, billed) = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            (state.document.take(), std::mem::take(&mut state.variables), state.requested, state.billed.take())
        };
        let default_page = self.settings.limits.default_page_size;
        let actual = document
            .map(|d| operation_cost(&d, operation_name, &variables, default_page, Some(&response.data)))
            .unwrap_or(requested)
            .min(requested);
        let mut status = billed.as_ref().map(|(_, s)| *s);
        if let Some((key, _)) = billed
            && actual < requested
        {
            let refund = -((requested - actual) as f64);
            if let Ok(s) = self.budgets.take(&key.key, refund, key.policy).await {
                status = Some(s);
            }
        }
        if let Some(cell) = ctx.data_opt::<CostCell>() {
            cell.0.lock().unwrap_or_else(|e| e.into_inner()).status = status;
        }
        response.extensions.insert("cost".to_string(), cost_value(requested, actual, status));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_counted_like_the_lexer() {
        assert_eq!(count_tokens("{ a }", 100), 3);
        assert_eq!(count_tokens("query Q($x: Int = 5) { a(b: \"s t\", c: -1.5e3) ...F } # c", 100), 23);
        assert_eq!(count_tokens(&"{ a ".repeat(1000), 50), 51, "stops once past the limit");
        assert_eq!(count_tokens("\"\"\"block\nstring\"\"\" x", 10), 2);
    }

    #[test]
    fn the_scan_counts_aliases_and_root_fields_without_parsing() {
        let q = "query Q($x: Int = 5) { a: x(b: { c: 1 }) y @skip(if: true) ...F ... on Q { z } } fragment F on Q { d: w v }";
        let found = scan(q, 1000);
        assert_eq!((found.aliases, found.root_fields), (2, 2), "a: and d: are aliases; x and y are root fields");
        assert_eq!(scan("{ __typename __typename }", 100).root_fields, 2);
        assert_eq!(scan("query { a: b c }", 100), Scan { tokens: 7, aliases: 1, root_fields: 2 });
        let big = format!("{{ {} }}", (0..60).map(|i| format!("a{i}: __typename")).collect::<Vec<_>>().join(" "));
        assert_eq!(scan(&big, 10_000).aliases, 60);
        assert_eq!(scan("mutation { clearCart(input: { key: \"a: b\" }) { cart { id } } }", 100).aliases, 0);
    }

    #[test]
    fn aliases_and_root_fields() {
        let doc = async_graphql::parser::parse_query("{ a: x b: y { c: z } ...F } fragment F on Q { d: w v }").unwrap();
        assert_eq!(shape(&doc), (4, 4));
    }
}
