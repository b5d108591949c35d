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

/// The GraphQL endpoints, with tower-governor's per-IP limit for anonymous callers in front:
/// a request without an `Authorization` header goes through the governor, one with a token is
/// billed by its cost budget instead (see `graphql::limits`).
fn api(state: &AppState) -> Router {
    let routes = crate::http::api_router(state.clone()).merge(crate::rest::router(state.clone()));
    let limits = &state.settings.rate_limit;
    let (per_second, burst) = (limits.anonymous_per_second, limits.anonymous_burst);
    // One token every 1000/rate ms (tower-governor counts periods, not rates).
    let config = GovernorConfigBuilder::default()
        .per_millisecond((1000 / per_second).max(1))
        .burst_size(burst)
        .key_extractor(state.clients.clone())
        .finish()
        .expect("a positive rate and burst (checked by Settings::validate)");
    let limiter = config.limiter().clone();
    // Forget idle clients now and then, so the limiter's memory stays bounded.
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            limiter.retain_recent();
        }
    });
    let anonymous =
        routes.clone().layer(GovernorLayer::new(config).error_handler(move |e| governor_error(e, per_second, burst)));
    Router::new().fallback_service(tower::service_fn(move |req: Request<axum::body::Body>| {
        let authenticated = req.headers().contains_key(header::AUTHORIZATION);
        let target = if authenticated { routes.clone() } else { anonymous.clone() };
        async move { target.oneshot(req).await }
    }))
}

/// Builds the public router.
pub fn router(state: AppState) -> Router {
    let max_body = state.settings.server.max_body_bytes;
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
        // Outermost: every log line of a request carries its id, and the client gets it back.
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let request_id =
                        req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %request_id)
                })
                .on_response(|res: &axum::http::Response<_>, latency: Duration, _span: &tracing::Span| {
                    metrics::counter!(crate::telemetry::metrics::HTTP_RESPONSES, "status" => res.status().as_u16().to_string())
                        .increment(1);
                    tracing::info!(status = res.status().as_u16(), latency_ms = latency.as_secs_f64() * 1000.0, "response");
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
