//! Logging: pretty lines in development, one JSON object per line in production, to stderr.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::{LogFormat, Settings};

/// Flushes exported spans when dropped (keep it alive until the process ends).
#[must_use = "dropping the guard stops the span export"]
pub struct TelemetryGuard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing OTLP spans failed: {e}");
        }
    }
}

/// The OTLP export layer, when built with the `otlp` feature and an endpoint is configured.
#[cfg(feature = "otlp")]
fn otlp<S>(
    settings: &Settings,
) -> (Option<impl tracing_subscriber::Layer<S>>, Option<opentelemetry_sdk::trace::SdkTracerProvider>)
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    let Some(endpoint) = settings.telemetry.otlp_endpoint.as_deref() else { return (None, None) };
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("OTLP export disabled: {e}");
            return (None, None);
        }
    };
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name("securecart").build())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("securecart"));
    (Some(layer), Some(provider))
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(settings: &Settings) -> TelemetryGuard {
    // PostgreSQL's notices ("relation ... already exists, skipping" on every `migrate`) are
    // routine: quiet below WARN unless the filter says otherwise about sqlx.
    let text = match settings.telemetry.log_filter.contains("sqlx") {
        true => settings.telemetry.log_filter.clone(),
        false => format!("{},sqlx::postgres::notice=warn", settings.telemetry.log_filter),
    };
    let log_filter = || EnvFilter::try_new(&text).unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = log_filter();
    let json = match settings.telemetry.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => settings.environment.is_production(),
    };
    #[cfg(feature = "otlp")]
    let (export, provider) = otlp(settings);
    #[cfg(not(feature = "otlp"))]
    let export: Option<tracing_subscriber::layer::Identity> = None;
    // Filters are per layer: the statement counter sees sqlx's DEBUG statement events whatever
    // the log filter lets through. (The export stays a filtered layer even when it is `None`: a
    // bare `None` layer beside per-layer filters turned the statement counter off.)
    let export = export.with_filter(log_filter());
    let registry = tracing_subscriber::registry()
        .with(statements::Statements::default().with_filter(statements::filter()))
        .with(export);
    let result = if json {
        let lines = fmt::layer().json().with_current_span(true).with_span_list(true).with_writer(std::io::stderr);
        registry.with(lines.with_filter(filter)).try_init()
    } else {
        registry.with(fmt::layer().compact().with_writer(std::io::stderr).with_filter(filter)).try_init()
    };
    // Already installed (tests build several apps in one process): keep the first.
    let _ = result;
    TelemetryGuard {
        #[cfg(feature = "otlp")]
        provider,
    }
}

/// SQL statements counted at the driver: sqlx reports every statement it runs as a `sqlx::query`
/// event, from the caller's span (SQLite's worker thread enters it too). A layer counts them for
/// the process (`securecart_db_statements_total`) and for the HTTP request they ran in, so the
/// count cannot drift from what reached the database, whichever store function ran them.
pub mod statements {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tracing::span::{Attributes, Id};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::Registry;
    use tracing_subscriber::layer::{Context, Layer};
    use tracing_subscriber::registry::LookupSpan;

    /// The span every HTTP request runs in (see `app::routes`); statements are counted per span
    /// of this name.
    pub const REQUEST_SPAN: &str = "request";
    const TARGET: &str = "sqlx::query";

    struct Count(AtomicU32);

    /// The counting layer (installed by `telemetry::init`).
    #[derive(Default)]
    pub struct Statements {
        /// The dispatcher the layer is installed in, to look spans up past the layer's filter.
        dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Statements {
        fn on_register_dispatch(&self, dispatch: &tracing::Dispatch) {
            let _ = self.dispatch.set(dispatch.downgrade());
        }

        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            if attrs.metadata().name() == REQUEST_SPAN
                && let Some(span) = ctx.span(id)
            {
                span.extensions_mut().insert(Count(AtomicU32::new(0)));
            }
        }

        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            if event.metadata().target() != TARGET {
                return;
            }
            metrics::counter!(super::metrics::DB_STATEMENTS).increment(1);
            // The request is found from the statement's span through the registry itself, not
            // through `ctx`, which sees only the spans this layer's filter enables: SQLite runs
            // statements on a worker thread that enters just the caller's innermost span (the
            // `graphql` span, when the log filter turns it on), so a filtered lookup finds no
            // request there (`operations::statements_are_counted_with_logs_at_info`).
            let parent = if event.is_contextual() { ctx.current_span().id().cloned() } else { event.parent().cloned() };
            let Some(id) = parent else { return };
            let Some(dispatch) = self.dispatch.get().and_then(tracing::dispatcher::WeakDispatch::upgrade) else {
                return;
            };
            with_count(&dispatch, &id, |count| count.fetch_add(1, Ordering::Relaxed));
        }
    }

    /// The filter the layer needs: sqlx's statement events (DEBUG) and the request span, nothing
    /// else. A span this layer enabled would exist for every request whatever the log filter
    /// says, and each poll of a future it instruments enters and leaves it through every layer
    /// (the `graphql` span and sqlx's streams in it cost about 3% of a catalog page's CPU that
    /// way, bench/NOTES.md); with the log filter at `warn` they are now off.
    pub fn filter() -> tracing_subscriber::filter::FilterFn {
        fn wanted(meta: &tracing::Metadata<'_>) -> bool {
            if meta.is_span() {
                meta.name() == REQUEST_SPAN && meta.target().starts_with("securecart")
            } else {
                meta.target() == TARGET && *meta.level() <= tracing::Level::DEBUG
            }
        }
        tracing_subscriber::filter::filter_fn(wanted as fn(&tracing::Metadata<'_>) -> bool)
            .with_max_level_hint(tracing::Level::DEBUG)
    }

    /// Statements run so far by the request whose span is `span` (or one of its ancestors);
    /// `None` outside a request or when the layer is not installed.
    pub fn in_request(span: &tracing::Span) -> Option<u32> {
        span.with_subscriber(|(id, dispatch)| with_count(dispatch, id, |count| count.load(Ordering::Relaxed))).flatten()
    }

    /// `f` on the statement count of the request span `id` is in (`id` or its nearest ancestor
    /// with one), looked up in the registry without any layer's filter.
    fn with_count<R>(dispatch: &tracing::Dispatch, id: &Id, f: impl FnOnce(&AtomicU32) -> R) -> Option<R> {
        let span = dispatch.downcast_ref::<Registry>()?.span(id)?;
        for span in span.scope() {
            if let Some(count) = span.extensions().get::<Count>() {
                return Some(f(&count.0));
            }
        }
        None
    }
}

/// Prometheus metrics: the recorder (installed once per process) and the names used.
pub mod metrics {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};

    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

    /// GraphQL operations, by `type` and `operation` (counter).
    pub const REQUESTS: &str = "securecart_graphql_requests_total";
    /// GraphQL operation latency in seconds, by `type` and `operation` (histogram).
    pub const DURATION: &str = "securecart_graphql_request_duration_seconds";
    /// Errors in GraphQL responses, by `code` (counter).
    pub const ERRORS: &str = "securecart_graphql_errors_total";
    /// Documents refused by an operation limit, by `code` (counter).
    pub const LIMIT_REJECTIONS: &str = "securecart_limit_rejections_total";
    /// Requests refused by a rate limit, by `kind` (`anonymous_ip`, `budget`) (counter).
    pub const THROTTLED: &str = "securecart_throttled_total";
    /// HTTP responses, by `status` (counter).
    pub const HTTP_RESPONSES: &str = "securecart_http_responses_total";
    /// Open connections on the public listener (gauge).
    pub const HTTP_CONNECTIONS: &str = "securecart_http_connections";
    /// Open WebSocket connections (gauge).
    pub const WS_CONNECTIONS: &str = "securecart_websocket_connections";
    /// Running WebSocket operations (subscriptions) (gauge).
    pub const SUBSCRIPTIONS: &str = "securecart_subscriptions_active";
    /// Events published on the bus, by `type` (counter).
    pub const EVENTS_PUBLISHED: &str = "securecart_events_published_total";
    /// Events this process's sweep found in the outbox that no other path had brought it (a Redis
    /// outage, a replica that crashed before publishing) (counter).
    pub const EVENTS_RECOVERED: &str = "securecart_events_recovered_total";
    /// Events delivered to subscribers, by `type` (counter).
    pub const EVENTS_DELIVERED: &str = "securecart_events_delivered_total";
    /// Database pool connections, by `state` (`idle`, `in_use`), and the pool's maximum (gauges).
    pub const DB_POOL: &str = "securecart_db_pool_connections";
    /// SQL statements run, counted at the driver (counter).
    pub const DB_STATEMENTS: &str = "securecart_db_statements_total";
    /// Whether the database answered a ping at the last scrape (1) or not (0).
    pub const DATABASE_UP: &str = "securecart_database_up";
    /// Whether the event bus reaches Redis (1) or not (0); absent for the in-process bus.
    pub const BUS_CONNECTED: &str = "securecart_bus_connected";
    /// Receivers listening on the event bus: one per running subscription, plus the catalog
    /// cache's invalidator (gauge, sampled at scrape time).
    pub const BUS_LISTENERS: &str = "securecart_bus_listeners";
    /// Requested cost of each operation, by `operation` and `role` (histogram).
    pub const COST_REQUESTED: &str = "securecart_operation_cost_requested";
    /// Actual cost of each operation, by `operation` and `role` (histogram).
    pub const COST_ACTUAL: &str = "securecart_operation_cost_actual";
    /// Requests refused for an exhausted cost budget, by `role` (counter).
    pub const BUDGET_EXHAUSTED: &str = "securecart_budget_exhausted_total";
    /// Seconds from a change to its event reaching this replica's subscribers, by `type`
    /// (histogram).
    pub const EVENT_LAG: &str = "securecart_event_lag_seconds";
    /// Documents parsed: each distinct query text once while it stays in the cache (counter).
    pub const DOCUMENTS_PARSED: &str = "securecart_documents_parsed_total";
    /// How far the read replica's replay is behind the primary, at its last check (gauge, seconds;
    /// absent without `DATABASE_READ_URL`).
    pub const REPLICA_LAG: &str = "securecart_db_replica_lag_seconds";
    /// Reads the replica could not serve and the primary ran again, by `reason`
    /// (`unavailable`, `pool_timeout`, `recovery_conflict`; see `store::replica::Routing::failed`)
    /// (counter).
    pub const REPLICA_FALLBACKS: &str = "securecart_db_replica_fallbacks_total";
    /// Uses of deprecated schema fields, by `field` and `client` (counter).
    pub const DEPRECATED_FIELDS: &str = "securecart_deprecated_field_usage_total";

    /// The process's Prometheus handle (installs the recorder on first use).
    pub fn handle() -> &'static PrometheusHandle {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        HANDLE.get_or_init(|| {
            let buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let costs = [0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0];
            let lag = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DURATION.into()), &buckets)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(COST_REQUESTED.into()), &costs))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(COST_ACTUAL.into()), &costs))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(EVENT_LAG.into()), &lag))
                .expect("valid buckets");
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (a test harness): keep an unattached one.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
    }

    /// An operation name safe to use as a label: client-chosen names are limited to 200
    /// distinct values per process (then `other`), so a client cannot blow up the series count.
    pub fn operation_label(name: Option<&str>) -> String {
        static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
        let Some(name) = name
            .filter(|n| !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        else {
            return if name.is_none_or(str::is_empty) { "anonymous".into() } else { "other".into() };
        };
        let mut seen = SEEN.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(name) || (seen.len() < 200 && seen.insert(name.to_string())) {
            name.to_string()
        } else {
            "other".into()
        }
    }
}
