//! The gate every operation passes, once per request, around `Schema::execute` (not inside
//! it): the text limits, the parse (cached per distinct document, see `documents`), the measures
//! and the bill before; error codes, spec completion, the actual cost and the refund after.
//!
//! It is not an async-graphql extension on purpose: async-graphql wraps *every field* of every
//! request in each registered extension's `resolve` hook (a boxed future per field, even when
//! the hook does nothing), and takes a faster path when none is registered. The parsed
//! document is handed to the engine with `Request::set_parsed_query`, so nothing is parsed
//! twice for one execution, with one exception: a stream (a subscription) keeps only its
//! document's text, and a result that comes after the cache has let the document go parses it
//! again (see `Held`).

use std::sync::{Arc, Mutex};

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Data, Request, Response, ServerError, ServerResult, Variables};
use futures::StreamExt;

use super::billing::{bill, refund};
use super::cost::{actual_cost, cost_value};
use super::documents::Documents;
use super::measure::{MAX_INTROSPECTION_DEPTH, MAX_NESTING, measure};
use super::scan::scan;
use crate::budget::{BillingKey, Budgets, ThrottleStatus, Throttled};
use crate::config::Settings;
use crate::graphql::AppSchema;
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
    /// The actual cost, once executed.
    pub actual: Option<u64>,
}

/// Shared between the extension and the transport for one request.
#[derive(Clone, Default)]
pub struct CostCell(pub Arc<Mutex<CostReport>>);

impl CostCell {
    fn update(&self, f: impl FnOnce(&mut CostReport)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The limits, shared by every request of a server.
pub struct Limits {
    settings: Arc<Settings>,
    budgets: Arc<Budgets>,
    documents: Documents,
}

/// What admission leaves for after execution.
struct Admitted {
    document: Held,
    operation: Option<String>,
    variables: Variables,
    requested: u64,
    /// Taken by the first result's refund.
    billed: Option<(BillingKey, ThrottleStatus)>,
    cell: Option<CostCell>,
}

/// The document an admitted operation needs after execution (to complete and cost each
/// result).
enum Held {
    /// Parsed: a single execution, finished as soon as it has run.
    Parsed(Arc<ExecutableDocument>),
    /// Its text only, found again in the cache for each result, or parsed again (and not kept:
    /// `Documents::find_or_parse`) once the cache has let it go: a stream, which may live for
    /// hours. The engine holds its own copy of the parsed document, and a second one here was
    /// the largest part of an idle subscription of its own (about 2 KB of a document's parse,
    /// bench/SUBSCRIBERS.md). A result is rare beside an idle hour; with more distinct live
    /// documents than the cache holds (1,000), each costs a parse of its document (tens of
    /// microseconds for a subscription's), counted in `securecart_documents_parsed_total`.
    Text(Box<str>),
}

/// A request's data of type `T`, as the transport put it there (`http::graphql::prepare`).
fn data<T: 'static>(data: &Data) -> Option<&T> {
    data.get(&std::any::TypeId::of::<T>())?.downcast_ref::<T>()
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

impl Limits {
    /// The limits of these settings, billing `budgets`.
    pub fn new(settings: Arc<Settings>, budgets: Arc<Budgets>) -> Self {
        Self { settings, budgets, documents: Documents::default() }
    }

    /// The type of the operation `request` runs, when its document parses (through the cache).
    pub fn operation_type(&self, request: &Request) -> Option<OperationType> {
        // The text limits first: nothing is parsed (nor kept) that they would refuse.
        self.scan_text(request).ok()?;
        let document = self.documents.parse(&request.query).ok()?;
        super::operation(&document, request.operation_name.as_deref()).map(|(_, op)| op.node.ty)
    }

    /// Runs one operation through the gate and the engine.
    pub async fn execute(&self, schema: &AppSchema, mut request: Request) -> Response {
        let mut admitted = match self.admit(&mut request).await {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        let mut response = schema.execute(request).await;
        self.finish(&mut admitted, &mut response).await;
        response
    }

    /// Runs a subscription (or any operation) as a stream through the gate and the engine:
    /// admission once, then each result finished as a single one is (the refund with the
    /// first).
    pub fn execute_stream(
        self: &Arc<Self>,
        schema: AppSchema,
        mut request: Request,
        session: Arc<Data>,
    ) -> BoxStream<'static, Response> {
        let (gate, admitting) = (self.clone(), self.clone());
        // The futures below are boxed while they run: a stream's state holds its futures inline,
        // sized for their largest await (a budget script on Redis), and an idle subscription
        // would keep that size for its whole life.
        futures::stream::once(Box::pin(async move {
            let admitted = admitting.admit(&mut request).await;
            (request, admitted)
        }))
        .flat_map(move |(request, admitted)| match admitted {
            Err(refused) => futures::stream::once(async move { refused }).boxed(),
            Ok(mut admitted) => {
                admitted.document = Held::Text(request.query.as_str().into());
                let admitted = Arc::new(tokio::sync::Mutex::new(admitted));
                let gate = gate.clone();
                schema
                    .execute_stream_with_session_data(request, session.clone())
                    .then(move |mut response| {
                        let (gate, admitted) = (gate.clone(), admitted.clone());
                        Box::pin(async move {
                            gate.finish(&mut *admitted.lock().await, &mut response).await;
                            response
                        })
                    })
                    .boxed()
            }
        })
        .boxed()
    }

    /// Admission alone, for a subscriber that joins a running execution of the same selection
    /// (`graphql::shared`): its own limits and bill, without the engine. The ticket gives back
    /// the unused cost when the subscriber's first result comes (`Ticket::settle`).
    pub async fn admit_alone(self: &Arc<Self>, request: &mut Request) -> Result<Ticket, Response> {
        let admitted = self.admit(request).await?;
        Ok(Ticket { gate: self.clone(), requested: admitted.requested, billed: admitted.billed })
    }

    /// Before execution: the text limits, the parse (cached), the measures and the bill, in that
    /// order, refusing on the first limit passed; hands the document to the engine.
    async fn admit(&self, request: &mut Request) -> Result<Admitted, Response> {
        let refused = |e: ServerError| Response::from_errors(vec![e]);
        self.scan_text(request).map_err(refused)?;
        let (document, requested) = self.check(request).map_err(refused)?;
        // Bill the requested cost now; the unused part is given back after execution.
        let billed = match data::<BillingKey>(&request.data) {
            Some(key) => match bill(&self.budgets, key, requested).await {
                Ok(status) => Some((key.clone(), status)),
                Err((err, throttled)) => {
                    if let Some(cell) = data::<CostCell>(&request.data) {
                        cell.update(|r| r.throttled = throttled);
                    }
                    return Err(refused(err));
                }
            },
            None => None,
        };
        request.set_parsed_query((*document).clone());
        Ok(Admitted {
            document: Held::Parsed(document),
            operation: request.operation_name.clone(),
            variables: request.variables.clone(),
            requested,
            billed,
            cell: data::<CostCell>(&request.data).cloned(),
        })
    }

    /// After execution: codes the engine's errors; completes the result as the spec says; gives
    /// back the unused cost and reports it. A document that did not validate ran nothing and
    /// keeps its bill (as a refused one does).
    async fn finish(&self, admitted: &mut Admitted, response: &mut Response) {
        if is_request_error(response) {
            response.errors = validation_errors(std::mem::take(&mut response.errors));
            return;
        }
        execution_errors(response);
        let document = match &admitted.document {
            Held::Parsed(document) => document.clone(),
            // It parsed at admission, and parsing is deterministic: an error cannot come here.
            Held::Text(query) => match self.documents.find_or_parse(query, false) {
                Ok(document) => document,
                Err(e) => {
                    tracing::error!(error = %e, "an admitted document no longer parses; its result is sent as it is");
                    return;
                }
            },
        };
        let operation = admitted.operation.as_deref();
        Shapes::of_schema().complete(&document, operation, &admitted.variables, response);
        let requested = admitted.requested;
        let actual = actual_cost(&document, operation, &response.data, requested);
        let status = match admitted.billed.take() {
            Some((key, status)) => Some(refund(&self.budgets, &key, status, requested, actual).await),
            None => None,
        };
        if let Some(cell) = &admitted.cell {
            cell.update(|r| {
                r.status = status;
                r.actual = Some(actual);
            });
        }
        response.extensions.insert("cost".to_string(), cost_value(requested, actual, status));
    }

    /// The limits on the raw text, before it is parsed.
    fn scan_text(&self, request: &Request) -> ServerResult<()> {
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
        Ok(())
    }

    /// Parses (or finds) and measures the document; refuses it on the first limit it passes.
    /// Parse errors are coded from the parser's error type, not its message.
    fn check(&self, request: &Request) -> ServerResult<(Arc<ExecutableDocument>, u64)> {
        let limits = &self.settings.limits;
        let (query, variables) = (&request.query, &request.variables);
        let document = self.documents.parse(query).map_err(parse_error)?;
        let name = request.operation_name.clone();
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
        if data::<IntrospectionDenied>(&request.data).is_some() && m.introspection {
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
        if let Some(cell) = data::<CostCell>(&request.data) {
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

/// A subscriber's admission (`Limits::admit_alone`): what it was billed.
pub struct Ticket {
    gate: Arc<Limits>,
    requested: u64,
    billed: Option<(BillingKey, ThrottleStatus)>,
}

impl Ticket {
    /// Gives back what the subscriber was billed beyond `actual`, the cost of its first result.
    pub async fn settle(self, actual: u64) {
        if let Some((key, status)) = self.billed {
            refund(&self.gate.budgets, &key, status, self.requested, actual.min(self.requested)).await;
        }
    }
}

/// Whether the request was refused before it executed (a limit, parsing, validation): no
/// `data`, and errors without a `path`.
pub fn is_request_error(response: &Response) -> bool {
    !response.errors.is_empty()
        && response.data == async_graphql::Value::Null
        && response.errors.iter().all(|e| e.path.is_empty())
}
