//! The page and its models, embedded in the binary so it runs from anywhere.
//!
//! `web/` is served from the root (`/`, `/app.js`, `/vendor/...`) and the page's
//! models (`models/face-api/`) under `/models/face-api/`. `--web-dir` swaps the
//! embedded `web/` for a folder on disk, for editing the page without rebuilding.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web/"]
struct WebFiles;

/// The page's models (face-api); the server's own (BlazeFace) belong to `seeing::detect`.
#[derive(RustEmbed)]
#[folder = "models/face-api/"]
struct ModelFiles;

/// Where the page's files come from.
#[derive(Debug, Clone)]
pub struct Assets {
    web_dir: Option<PathBuf>,
}

impl Assets {
    pub fn new(web_dir: Option<PathBuf>) -> Self {
        Assets { web_dir }
    }

    /// A file of the page, by its path under `web/`.
    pub async fn web(&self, path: &str) -> Response {
        let path = if path.is_empty() { "index.html" } else { path };
        let Some(relative) = safe_relative(path) else {
            return not_found(path);
        };
        if let Some(dir) = &self.web_dir {
            return match tokio::fs::read(dir.join(&relative)).await {
                Ok(bytes) => file_response(path, Cow::Owned(bytes)),
                Err(_) => not_found(path),
            };
        }
        match WebFiles::get(path) {
            Some(file) => file_response(path, file.data),
            None => not_found(path),
        }
    }

    /// A model file of the page, by its path under `models/face-api/`.
    pub fn model(&self, path: &str) -> Response {
        match safe_relative(path).and_then(|_| ModelFiles::get(path)) {
            Some(file) => file_response(path, file.data),
            None => not_found(path),
        }
    }
}

/// `path` as a relative path with no `..`, root or prefix: nothing outside the folder.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let relative = Path::new(path);
    relative.components().all(|c| matches!(c, Component::Normal(_))).then(|| relative.to_path_buf())
}

fn file_response(path: &str, bytes: Cow<'static, [u8]>) -> Response {
    ([(header::CONTENT_TYPE, content_type(path)), (header::CACHE_CONTROL, "no-cache")], bytes.into_owned())
        .into_response()
}

fn not_found(path: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("no such file: {path}\n")).into_response()
}

fn content_type(path: &str) -> &'static str {
    match Path::new(path).extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("wasm") => "application/wasm",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("svg") => "image/svg+xml",
        Some("md" | "txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape_the_folder() {
        assert!(safe_relative("app.js").is_some());
        assert!(safe_relative("vendor/face-api/face-api.esm.js").is_some());
        assert!(safe_relative("../Cargo.toml").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("a/../../b").is_none());
    }

    #[test]
    fn the_page_is_embedded() {
        assert!(WebFiles::get("index.html").is_some(), "web/index.html must be embedded");
    }
}
