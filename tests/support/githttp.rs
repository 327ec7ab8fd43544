//! A git smart-HTTP server on 127.0.0.1: `git http-backend` behind axum, demanding HTTP
//! Basic auth with one token, as GitHub does for `x-access-token:<token>`. Records the
//! Authorization headers it saw, so tests can check how credentials travelled.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::io::AsyncWriteExt;

#[derive(Clone)]
pub struct GitServer {
    pub base: String,
    pub root: PathBuf,
    /// Tokens accepted right now; tests rotate them to mimic expiring installation tokens.
    pub tokens: Arc<Mutex<Vec<String>>>,
    pub user: String,
}

#[derive(Clone)]
struct Ctx {
    root: PathBuf,
    tokens: Arc<Mutex<Vec<String>>>,
    user: String,
}

impl GitServer {
    /// Serves bare repositories under `root` to `user` with any of `tokens`.
    pub async fn start(root: PathBuf, user: &str, token: &str) -> Self {
        Self::start_with(root, user, token, Router::new()).await
    }

    /// Like [`GitServer::start`], with `api` served beside git on the same address (GitLab
    /// serves its API and its repositories from one host).
    pub async fn start_with(root: PathBuf, user: &str, token: &str, api: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_on(listener, root, user, token, api)
    }

    pub fn serve_on(
        listener: tokio::net::TcpListener,
        root: PathBuf,
        user: &str,
        token: &str,
        api: Router,
    ) -> Self {
        let tokens = Arc::new(Mutex::new(vec![token.to_owned()]));
        let ctx = Ctx {
            root: root.clone(),
            tokens: Arc::clone(&tokens),
            user: user.into(),
        };
        let app = api.merge(Router::new().fallback(serve).with_state(ctx));
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base,
            root,
            tokens,
            user: user.into(),
        }
    }

    /// Publishes `source` (a working repository) as `<root>/<name>.git`; returns its URL.
    pub fn publish(&self, source: &std::path::Path, name: &str) -> String {
        let bare = self.root.join(format!("{name}.git"));
        std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
        let status = std::process::Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(source)
            .arg(&bare)
            .status()
            .unwrap();
        assert!(status.success());
        format!("{}/{name}.git", self.base)
    }
}

fn authorized(headers: &HeaderMap, ctx: &Ctx) -> bool {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    let text = String::from_utf8_lossy(&decoded);
    let Some((user, token)) = text.split_once(':') else {
        return false;
    };
    user == ctx.user && ctx.tokens.lock().unwrap().iter().any(|t| t == token)
}

async fn serve(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&headers, &ctx) {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"git\"")],
            "authentication required",
        )
            .into_response();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &ctx.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", &ctx.user)
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_HTTP_MAX_REQUEST_BUFFER", "100M")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await.unwrap();
    let _ = writer.await;
    cgi_response(&out.stdout)
}

/// CGI output: headers, a blank line, the body.
fn cgi_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, sep)) = split else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "bad CGI output").into_response();
    };
    let head = String::from_utf8_lossy(&raw[..at]).into_owned();
    let mut builder = Response::builder().status(StatusCode::OK);
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            builder = builder.status(code);
        } else {
            builder = builder.header(name.trim(), value);
        }
    }
    builder
        .body(axum::body::Body::from(raw[at + sep..].to_vec()))
        .unwrap()
}
