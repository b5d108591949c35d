//! The one async-graphql extension: it runs the limits once per request, at the hooks around
//! parsing, validation and execution. It has no `resolve` hook, which async-graphql would call
//! around every field.

use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest, NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Request, Response, ServerError, ServerResult, Variables};

use super::billing::{bill, refund};
use super::cost::{actual_cost, cost_value};
use super::measure::{MAX_INTROSPECTION_DEPTH, MAX_NESTING, measure};
use super::scan::scan;
use crate::budget::{BillingKey, Budgets, ThrottleStatus, Throttled};
use crate::config::Settings;
use crate::graphql::completion::Shapes;
use crate::graphql::errors::{IntrospectionDenied, execution_errors, parse_error, validation_errors, with_code};

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

impl CostCell {
    fn update(&self, f: impl FnOnce(&mut CostReport)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

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

fn over(code: &str, what: &str, found: usize, max: usize) -> ServerResult<()> {
    if found > max {
        return Err(refuse(code, format!("{found} {what}; at most {max} are allowed")));
    }
    Ok(())
}

/// Whether the query (raw, or as a `\u0000` escape in a string) or a variable holds a NUL
/// character, which no text field takes (PostgreSQL cannot even store one).
fn has_nul(query: &str, variables: &Variables) -> bool {
    fn in_value(v: &async_graphql::Value) -> bool {
        match v {
            async_graphql::Value::String(s) => s.contains('\0'),
            async_graphql::Value::List(items) => items.iter().any(in_value),
            async_graphql::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || in_value(v)),
            _ => false,
        }
    }
    query.contains('\0')
        || query.as_bytes().windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
        || variables.iter().any(|(_, v)| in_value(v))
}

fn type_name(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

impl LimitsExtension {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parses and measures the document once; refuses it on the first limit it passes.
    fn check(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
    ) -> ServerResult<(ExecutableDocument, u64)> {
        let limits = &self.settings.limits;
        let document = async_graphql::parser::parse_query(query).map_err(parse_error)?;
        let name = ctx.data_opt::<OperationName>().and_then(|n| n.0.clone());
        let m = measure(&document, name.as_deref(), variables, limits.default_page_size);
        // The engine would refuse these after validation, without a code.
        match &name {
            Some(n) if m.operation_type.is_none() => {
                return Err(refuse("OPERATION_RESOLUTION_FAILURE", format!("Unknown operation named \"{n}\"")));
            }
            None if document.operations.iter().nth(1).is_some() => {
                let message = "the document has several operations: name one in `operationName`";
                return Err(refuse("OPERATION_RESOLUTION_FAILURE", message.into()));
            }
            _ => {}
        }
        if ctx.data_opt::<IntrospectionDenied>().is_some() && m.introspection {
            return Err(refuse("INTROSPECTION_DISABLED", "introspection is disabled for this caller".into()));
        }
        if let Some(fragment) = &m.fragment_cycle {
            return Err(refuse("FRAGMENT_CYCLE", format!("fragment `{fragment}` spreads itself")));
        }
        if m.introspection_depth > MAX_INTROSPECTION_DEPTH {
            let message = format!(
                "the introspection nests {} levels; at most {MAX_INTROSPECTION_DEPTH} are allowed",
                m.introspection_depth
            );
            return Err(refuse("MAX_DEPTH_EXCEEDED", message));
        }
        if m.depth > limits.max_depth || m.nesting > MAX_NESTING {
            let message = format!("the query nests {} fields deep; at most {} are allowed", m.depth, limits.max_depth);
            return Err(refuse("MAX_DEPTH_EXCEEDED", message));
        }
        over("MAX_ALIASES_EXCEEDED", "aliases", m.aliases, limits.max_aliases)?;
        over("MAX_ROOT_FIELDS_EXCEEDED", "root fields", m.root_fields, limits.max_root_fields)?;
        let operation_type = m.operation_type.map(type_name);
        let span = tracing::Span::current();
        span.record("operation_type", operation_type.unwrap_or("unknown"));
        if let Some(name) = &m.operation_name {
            span.record("operation", name.as_str());
        }
        span.record("cost", m.cost);
        if let Some(cell) = ctx.data_opt::<CostCell>() {
            cell.update(|r| {
                r.operation_type = operation_type;
                r.operation_name = m.operation_name.clone();
                r.requested = Some(m.cost);
            });
        }
        if m.cost > limits.max_complexity as u64 {
            let message = format!(
                "the query costs {}; at most {} is allowed (see extensions.cost)",
                m.cost, limits.max_complexity
            );
            return Err(refuse("MAX_COMPLEXITY_EXCEEDED", message));
        }
        Ok((document, m.cost))
    }
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
            let message =
                format!("the query is {} bytes; at most {} are allowed", request.query.len(), limits.max_query_bytes);
            return Err(refuse("QUERY_TOO_LARGE", message));
        }
        if has_nul(&request.query, &request.variables) {
            return Err(refuse("BAD_USER_INPUT", "text must not contain NUL (U+0000) characters".into()));
        }
        let found = scan(&request.query, limits.max_tokens);
        if found.tokens > limits.max_tokens {
            return Err(refuse("MAX_TOKENS_EXCEEDED", format!("the query has more than {} tokens", limits.max_tokens)));
        }
        // `measure` counts both again through fragments; this only spares the parse for
        // documents that are plainly over.
        over("MAX_ALIASES_EXCEEDED", "aliases", found.aliases, limits.max_aliases)?;
        over("MAX_ROOT_FIELDS_EXCEEDED", "root fields", found.root_fields, limits.max_root_fields)?;
        next.run(ctx, request).await
    }

    // The document is parsed here, not by async-graphql's own step (which would only add its
    // recursion check, done here by `measure` with its own code), so parse errors are coded from
    // the parser's error type rather than its message.
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        _next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let (document, requested) = self.check(ctx, query, variables)?;
        // Bill the requested cost now; the unused part is given back after execution.
        let billed = match ctx.data_opt::<BillingKey>() {
            Some(key) => match bill(&self.budgets, key, requested).await {
                Ok(status) => Some((key.clone(), status)),
                Err((err, throttled)) => {
                    if let Some(cell) = ctx.data_opt::<CostCell>() {
                        cell.update(|r| r.throttled = throttled);
                    }
                    return Err(err);
                }
            },
            None => None,
        };
        let mut state = self.state();
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
        let (document, requested, billed) = {
            let mut state = self.state();
            (state.document.take(), state.requested, state.billed.take())
        };
        if let Some(document) = &document {
            Shapes::of_schema().complete(document, operation_name, &mut response);
        }
        let actual = document.map(|d| actual_cost(&d, operation_name, &response.data, requested)).unwrap_or(requested);
        let status = match billed {
            Some((key, status)) => Some(refund(&self.budgets, &key, status, requested, actual).await),
            None => None,
        };
        if let Some(cell) = ctx.data_opt::<CostCell>() {
            cell.update(|r| r.status = status);
        }
        response.extensions.insert("cost".to_string(), cost_value(requested, actual, status));
        response
    }
}
