//! The page and its assets, compiled into the binary (one process to deploy). The sources
//! are plain files in `coordinator/console/`; the depiction library is vendored from npm
//! (`coordinator/console/vendor/README.md` says which release, and CI checks the bytes).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../console/index.html");

const FILES: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../console/app.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../console/app.css")),
    (
        "smiles-drawer.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/vendor/smiles-drawer.min.js"),
    ),
];

fn with_headers(body: &'static [u8], kind: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Everything the page runs comes from here; tokens must not leak to other origins.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

pub async fn index() -> Response {
    with_headers(INDEX.as_bytes(), "text/html; charset=utf-8")
}

pub async fn file(Path(path): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == path) {
        Some((_, kind, body)) => with_headers(body, kind),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
