//! The GitHub App manifest flow, as Probot users know it: `GET /github/setup` serves a page
//! whose button takes the manifest to GitHub; GitHub sends the browser back to
//! `GET /github/setup/callback?code=…&state=…`, where maur trades the one-time code for the
//! new App's id, private key and webhook secret and shows them once (or writes them to
//! `MAUR_DATA_DIR/github-app.env` with mode 0600).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use rand::Rng;

use super::AppState;
use super::auth::bearer;
use super::error::ApiError;
use crate::github::manifest;

/// How long a setup page's `state` stays good for its callback.
const STATE_LIFE: Duration = Duration::from_secs(3600);

/// `state` values this process handed out, so only a flow started here can finish here.
#[derive(Default)]
pub struct SetupStates(std::sync::Mutex<HashMap<String, Instant>>);

/// Setup flows one process keeps open at most; the oldest is dropped beyond.
const MAX_STATES: usize = 100;
/// Ties a flow to the browser that started it, so a stranger's `code` cannot be fed in.
const COOKIE: &str = "maur_github_setup";

impl SetupStates {
    fn issue(&self) -> String {
        let state: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let mut states = self.0.lock().unwrap_or_else(|p| p.into_inner());
        states.retain(|_, at| at.elapsed() < STATE_LIFE);
        while states.len() >= MAX_STATES {
            let Some(oldest) = states
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            states.remove(&oldest);
        }
        states.insert(state.clone(), Instant::now());
        state
    }

    fn redeem(&self, state: &str) -> bool {
        let mut states = self.0.lock().unwrap_or_else(|p| p.into_inner());
        states
            .remove(state)
            .is_some_and(|at| at.elapsed() < STATE_LIFE)
    }
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        ],
        Html(body),
    )
        .into_response()
}

/// This maur's public base URL: `MAUR_PUBLIC_URL`, else what the request was sent to.
fn public_url(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if let Some(url) = &state.config.public_url {
        return Some(url.clone());
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    Some(format!("{scheme}://{host}"))
}

pub async fn setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    // Once an App is configured, setting up another one takes the API token.
    if state.config.github.app.is_some() {
        match bearer(&headers) {
            Ok(token) if state.tokens.accepts(token) => {}
            _ => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "a GitHub App is already configured; send `Authorization: Bearer <token>` to set up another",
                ));
            }
        }
    }
    let base = public_url(&state, &headers).ok_or_else(|| {
        ApiError::bad_request("cannot tell this maur's public URL: set MAUR_PUBLIC_URL")
    })?;
    let manifest = manifest::manifest(&base)
        .map_err(|e| ApiError::bad_request(format!("{e} (set MAUR_PUBLIC_URL)")))?;
    let org = query
        .get("org")
        .map(String::as_str)
        .filter(|o| !o.is_empty());
    let action = manifest::new_app_url(&state.config.github.web_url, org);
    let flow = state.setup_states.issue();
    let page = manifest::setup_page(&manifest, &action, &flow);
    let secure = if base.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let mut response = html(StatusCode::OK, page);
    if let Ok(cookie) = format!(
        "{COOKIE}={flow}; Path=/github/setup; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        STATE_LIFE.as_secs()
    )
    .parse()
    {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The flow id in this browser's setup cookie.
fn cookie_state(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_owned())
        })
}

pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let code = query
        .get("code")
        .filter(|c| {
            !c.is_empty()
                && c.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .ok_or_else(|| {
            ApiError::bad_request("missing or malformed `code`: open /github/setup to start")
                .with("field", "code")
        })?;
    let flow = query.get("state").map(String::as_str).unwrap_or_default();
    let same_browser = cookie_state(&headers).is_some_and(|c| {
        use subtle::ConstantTimeEq;
        bool::from(c.as_bytes().ct_eq(flow.as_bytes()))
    });
    if !same_browser {
        return Err(ApiError::bad_request(
            "this setup was not started in this browser: open /github/setup here and press the button again",
        )
        .with("field", "state"));
    }
    if !state.setup_states.redeem(flow) {
        return Err(ApiError::bad_request(
            "unknown or expired `state`: start again from /github/setup on this maur",
        )
        .with("field", "state"));
    }
    // Before the code is spent: credentials GitHub shows only once must have somewhere to go.
    let env_file = state.config.data_dir.join("github-app.env");
    if state.config.github.write_env && env_file.exists() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{} already exists: maur will not overwrite an App's credentials; move it away and start again from /github/setup",
                env_file.display()
            ),
        ));
    }
    let url = format!(
        "{}/app-manifests/{code}/conversions",
        state.config.github.api_url
    );
    let client = crate::github::client::http_client().map_err(|_| ApiError::internal())?;
    let answer = client
        .post(&url)
        .header("Accept", "application/vnd.github+json")
        .send()
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("could not reach GitHub: {}", e.without_url()),
            )
        })?;
    let status = answer.status();
    let conversion: serde_json::Value = answer.json().await.unwrap_or_default();
    if !status.is_success() {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "GitHub did not convert the manifest code ({status}): {}; codes are single-use and expire after an hour, so start again from /github/setup",
                conversion["message"].as_str().unwrap_or("no reason given")
            ),
        ));
    }
    let env = manifest::env_lines(&conversion).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "GitHub's answer lacked the App's id, key or webhook secret",
        )
    })?;
    let written = if state.config.github.write_env {
        let path = env_file;
        write_private(&path, &env).map_err(|e| {
            tracing::error!(path = %path.display(), error = %e, "could not write the GitHub App credentials");
            ApiError::internal()
        })?;
        tracing::info!(path = %path.display(), app = conversion["slug"].as_str().unwrap_or_default(), "GitHub App created; credentials written");
        Some(path.display().to_string())
    } else {
        tracing::info!(
            app = conversion["slug"].as_str().unwrap_or_default(),
            "GitHub App created; credentials shown once"
        );
        None
    };
    Ok(html(
        StatusCode::OK,
        manifest::created_page(&conversion, &env, written.as_deref()),
    ))
}

/// Creates `path` readable by its owner only, before any secret is in it.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}
