//! The public router, composed in one place: GraphQL over HTTP and WebSocket (`http`), REST
//! (`rest`), the anonymous per-IP rate limit in front of both, and the middleware every response
//! passes through (request ids, tracing, security headers, CORS, compression, body limit).

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use tower::ServiceExt;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::client::governor_error;
use crate::state::AppState;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `routes` behind a tower-governor limit of `per_second` requests with `burst`, keyed by `key`;
/// idle keys are forgotten every minute so the limiter's memory stays bounded.
fn limited<K>(routes: Router, per_second: u64, burst: u32, key: K, kind: &'static str) -> Router
where
    K: tower_governor::key_extractor::KeyExtractor + Send + Sync + 'static,
    K::Key: Send + Sync,
{
    // One token every 1000/rate ms (tower-governor counts periods, not rates).
    let config = GovernorConfigBuilder::default()
        .per_millisecond((1000 / per_second).max(1))
        .burst_size(burst)
        .key_extractor(key)
        .finish()
        .expect("a positive rate and burst (checked by Settings::validate)");
    let limiter = config.limiter().clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            limiter.retain_recent();
        }
    });
    routes.layer(GovernorLayer::new(config).error_handler(move |e| governor_error(e, per_second, burst, kind)))
}

/// The API (GraphQL and REST) behind its request-rate limits. The bearer token is verified here,
/// once, and the `Caller` handed on in the request's extensions: a caller with a verified token
/// is limited per subject (`SECURECART_USER_RATE`), everyone else per client IP
/// (`SECURECART_ANON_RATE`), whatever headers they send. Cost budgets come on top of both.
fn api(state: &AppState) -> Router {
    // Bodies are read behind the rate limits, so a throttled client gets no buffer.
    let body = (state.settings.server.max_body_bytes, Duration::from_secs(state.settings.server.body_timeout_secs));
    let routes = crate::http::api_router(state.clone())
        .merge(crate::rest::router(state.clone()))
        .layer(axum::middleware::from_fn_with_state(body, read_body));
    let limits = &state.settings.rate_limit;
    let (rate, burst) = state.settings.anonymous_rate();
    let anonymous = limited(routes.clone(), rate, burst, state.clients.clone(), "anonymous_ip");
    let authenticated = limited(routes, limits.user_per_second, limits.user_burst, SubjectKey, "subject");
    let state = state.clone();
    let routed = Router::new().fallback_service(tower::service_fn(move |mut req: Request<axum::body::Body>| {
        let (state, anonymous, authenticated) = (state.clone(), anonymous.clone(), authenticated.clone());
        async move {
            let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            let caller = crate::auth::authenticate(&state.verifier, state.services.store(), authorization).await;
            let target = if caller.identity().is_some() { authenticated } else { anonymous };
            req.extensions_mut().insert(caller);
            target.oneshot(req).await
        }
    }));
    routed.layer(axum::middleware::from_fn(crate::rest::problem::problems))
}

/// The rate-limit key of a caller with a verified token: its subject.
#[derive(Clone, Copy)]
struct SubjectKey;

impl tower_governor::key_extractor::KeyExtractor for SubjectKey {
    type Key = String;

    fn extract<T>(&self, req: &Request<T>) -> Result<String, tower_governor::GovernorError> {
        req.extensions()
            .get::<crate::auth::Caller>()
            .and_then(|c| c.identity())
            .map(|i| i.subject.clone())
            .ok_or(tower_governor::GovernorError::UnableToExtractKey)
    }
}

/// Reads a request's body in full before any handler runs, within the body deadline: a declared
/// `Content-Length` above the limit answers 413 at once, without reading; a body that has not
/// all arrived by the deadline answers 408 (slow bodies cannot hold a connection); one that
/// grows past the limit answers 413.
async fn read_body(
    axum::extract::State((max, deadline)): axum::extract::State<(usize, Duration)>,
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let too_large = || {
        let message = format!("request body above {max} bytes");
        crate::error::ClientError::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", message).into_response()
    };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, max)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Ok(Err(_)) => too_large(),
        Err(_) => {
            let message = format!("the request body did not arrive within {} s", deadline.as_secs());
            crate::error::ClientError::new(StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT", message).into_response()
        }
    }
}

/// Adds `Server-Timing: db;desc="N statements"`: the SQL statements the request ran, counted at
/// the driver (see `telemetry::statements`). Runs inside the request's span.
async fn server_timing(request: Request<axum::body::Body>, next: axum::middleware::Next) -> axum::response::Response {
    let mut response = next.run(request).await;
    if let Some(n) = crate::telemetry::statements::in_request(&tracing::Span::current())
        && let Ok(value) = HeaderValue::from_str(&format!("db;desc=\"{n} statements\""))
    {
        response.headers_mut().append(HeaderName::from_static("server-timing"), value);
    }
    response
}

/// Builds the public router.
pub fn router(state: AppState) -> Router {
    let max_body = state.settings.server.max_body_bytes;
    let timing = state.settings.server_timing();
    let cors = cors(&state.settings.security.cors_origins);
    crate::http::public_router(state.clone())
        .merge(api(&state))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        // API responses are data, never a page: nothing may run or be framed. The playground
        // page sets its own, looser policy.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(cors)
        .layer(tower::util::option_layer(timing.then(|| axum::middleware::from_fn(server_timing))))
        // Outermost: every log line of a request carries its id, and the client gets it back.
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let request_id =
                        req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %request_id)
                })
                .on_response(|res: &axum::http::Response<_>, latency: Duration, span: &tracing::Span| {
                    metrics::counter!(crate::telemetry::metrics::HTTP_RESPONSES, "status" => res.status().as_u16().to_string())
                        .increment(1);
                    let statements = crate::telemetry::statements::in_request(span);
                    let latency_ms = latency.as_secs_f64() * 1000.0;
                    tracing::info!(status = res.status().as_u16(), latency_ms, statements, "response");
                }),
        )
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
}

/// CORS for the configured origins (`*`: any origin, without credentials); none by default.
fn cors(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::ACCEPT,
            HeaderName::from_static("apollo-require-preflight"),
            HeaderName::from_static("x-apollo-operation-name"),
            HeaderName::from_static("graphql-require-preflight"),
            X_REQUEST_ID,
        ])
        .expose_headers([X_REQUEST_ID, HeaderName::from_static("ratelimit"), header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}
