//! Probes and metrics: unauthenticated, cheap, safe to scrape.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::store::{StoreError, tasks};

/// Liveness: the process answers. Deliberately does not touch the database.
pub async fn health() -> &'static str {
    "ok"
}

/// Readiness: the database answers, so requests can be stored.
pub async fn ready(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    sqlx::query("SELECT 1")
        .execute(&state.pool)
        .await
        .map_err(StoreError::from)?;
    Ok("ready")
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    // Gauges from the database are best effort: a scrape must not fail when Postgres is down.
    let counts = tasks::counts(&state.pool).await;
    let depth = tasks::queue_depth(&state.pool).await;
    if let (Ok(counts), Ok(depth)) = (counts, depth) {
        state.metrics.set_task_counts(&counts, depth);
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
