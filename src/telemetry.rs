//! Logging: pretty lines in development, one JSON object per line in production, to stderr.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::{LogFormat, Settings};

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(settings: &Settings) {
    let filter = EnvFilter::try_new(&settings.telemetry.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match settings.telemetry.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => settings.environment.is_production(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(fmt::layer().json().with_current_span(true).with_span_list(true).with_writer(std::io::stderr))
            .try_init()
    } else {
        registry.with(fmt::layer().compact().with_writer(std::io::stderr)).try_init()
    };
    // Already installed (tests build several apps in one process): keep the first.
    let _ = result;
}
