//! The HTTP surface: one module per source, a shared error shape and bearer auth.

pub mod auth;
mod commands;
pub mod error;
mod events;
mod exception;
pub mod extract;
mod github;
mod github_setup;
mod gitlab;
mod health;
mod linear;
mod tasks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::{Metrics, RequestLabels};
use auth::TokenSet;
use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub tokens: Arc<TokenSet>,
    /// Ends long-lived responses (SSE) when the server shuts down.
    pub shutdown: CancellationToken,
    /// How often an SSE stream re-reads the database when no notification arrives.
    pub sse_poll: Duration,
    /// The GitHub App, when configured.
    pub github: Option<Arc<crate::github::forge::GitHubForge>>,
    /// GitLab, when configured.
    pub gitlab: Option<Arc<crate::gitlab::forge::GitLabForge>>,
    /// Linear, when configured.
    pub linear: Option<Arc<crate::linear::client::Linear>>,
    /// `state` values of GitHub App setup flows started on this process.
    pub setup_states: Arc<github_setup::SetupStates>,
}

fn probe_routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
}

/// Routes that only need the database: `maur worker` serves these too, for probes.
pub fn probes(state: AppState) -> Router {
    with_layers(probe_routes(), state)
}

pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .route("/tasks", post(tasks::create).get(tasks::list))
        .route("/tasks/{id}", get(tasks::show))
        .route("/tasks/{id}/cancel", post(tasks::cancel))
        .route("/tasks/{id}/log", get(tasks::log))
        .route("/tasks/{id}/events", get(events::stream))
        .route("/webhooks/exception", post(exception::receive))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer,
        ));
    // Signed by GitHub, not by our bearer token.
    let github = Router::new()
        .route("/webhooks/github", post(github::receive))
        .route("/webhooks/gitlab", post(gitlab::receive))
        .route("/webhooks/linear", post(linear::receive))
        .route("/github/setup", get(github_setup::setup))
        .route("/github/setup/callback", get(github_setup::callback));
    with_layers(probe_routes().merge(authed).merge(github), state)
}

/// JSON 404/405, request metrics, panics as JSON 500, request tracing.
fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let response = next.run(req).await.into_response();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
