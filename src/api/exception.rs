//! `POST /webhooks/exception`: a production error becomes a fix task, one per fingerprint
//! while it is active.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use super::tasks::{defaults, enqueue};
use crate::trigger::{self, ExceptionRequest};

pub async fn receive(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ExceptionRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let task = trigger::exception_task(req, &defaults(&state))?;
    enqueue(&state, &task, "fingerprint").await
}
