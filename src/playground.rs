//! The GraphiQL playground, served with no internet access.
//!
//! Its assets are pinned in `playground/package.json` and installed by `npm ci --prefix playground`.
//! At start-up the server loads exactly the files named in `playground/assets.json` into memory
//! and serves them under `/playground/assets/`. If any is missing, the page loads the same pinned
//! versions from a CDN with Subresource Integrity hashes and says how to get the offline assets.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path as UrlPath;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

const TEMPLATE: &str = include_str!("../playground/index.html");
const MANIFEST: &str = include_str!("../playground/assets.json");
const CDN: &str = "https://cdn.jsdelivr.net/npm";
const ASSET_PREFIX: &str = "/playground/assets";

#[derive(Debug, Deserialize)]
struct Asset {
    package: String,
    version: String,
    file: String,
    kind: String,
    integrity: String,
}

/// The rendered page and the asset bytes it refers to.
#[derive(Debug, Clone)]
pub struct Playground {
    page: Arc<str>,
    assets: Arc<HashMap<String, (Bytes, &'static str)>>,
    /// Whether the assets are served locally (false: from the CDN).
    pub offline: bool,
}

impl Playground {
    /// Loads the assets from `dir/node_modules` if they are all there.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let manifest: Vec<Asset> = serde_json::from_str(MANIFEST)?;
        let mut assets = HashMap::new();
        for asset in &manifest {
            let rel = format!("{}/{}", asset.package, asset.file);
            match std::fs::read(dir.join("node_modules").join(&rel)) {
                Ok(bytes) => {
                    let mime = if asset.kind == "style" {
                        "text/css; charset=utf-8"
                    } else {
                        "text/javascript; charset=utf-8"
                    };
                    assets.insert(rel, (Bytes::from(bytes), mime));
                }
                Err(_) => break,
            }
        }
        let offline = assets.len() == manifest.len();
        let mut tags = String::new();
        for asset in &manifest {
            let (url, sri) = if offline {
                (format!("{ASSET_PREFIX}/{}/{}", asset.package, asset.file), String::new())
            } else {
                (
                    format!("{CDN}/{}@{}/{}", asset.package, asset.version, asset.file),
                    format!(" integrity=\"{}\" crossorigin=\"anonymous\"", asset.integrity),
                )
            };
            if asset.kind == "style" {
                tags.push_str(&format!("<link rel=\"stylesheet\" href=\"{url}\"{sri}>\n"));
            } else {
                tags.push_str(&format!("<script src=\"{url}\"{sri}></script>\n"));
            }
        }
        let notice = if offline {
            String::new()
        } else {
            tracing::warn!(dir = %dir.display(), "playground assets not installed; GraphiQL loads from a CDN (run `npm ci --prefix playground` for offline use)");
            "<p class=\"securecart-notice\">Playground assets are loaded from cdn.jsdelivr.net. For offline use run \
             <code>npm ci --prefix playground</code> and restart the server.</p>"
                .to_string()
        };
        let page = TEMPLATE.replace("<!--SECURECART_ASSETS-->", &tags).replace("<!--SECURECART_NOTICE-->", &notice);
        Ok(Self { page: page.into(), assets: Arc::new(if offline { assets } else { HashMap::new() }), offline })
    }

    /// The HTML page, with a Content-Security-Policy that allows exactly what GraphiQL needs:
    /// its own inline bootstrap, the pinned assets (here or on the CDN), and this origin's API.
    pub fn page(&self) -> Response {
        const CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; \
             style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: blob:; \
             font-src 'self' data: https://cdn.jsdelivr.net; connect-src 'self' ws: wss:; frame-ancestors 'none'";
        let mut response = Html(self.page.to_string()).into_response();
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        response
    }
}

/// `GET /playground/assets/{*path}`: one of the pinned files, nothing else.
pub async fn asset(playground: Option<Playground>, UrlPath(path): UrlPath<String>) -> Response {
    let Some(playground) = playground else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match playground.assets.get(&path) {
        Some((bytes, mime)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
            ],
            bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
