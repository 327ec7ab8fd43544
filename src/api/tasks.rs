//! `/tasks`: create, list, show and cancel.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::store::events;
use crate::store::tasks::{self as queue, CancelResult, Enqueued};
use crate::task::{NewTask, Task, TaskEvent, TaskStatus};
use crate::trigger::{self, Defaults, ManualRequest};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

pub fn defaults(state: &AppState) -> Defaults<'_> {
    Defaults {
        repo: state.config.default_repo.as_ref(),
        max_attempts: state.config.max_attempts,
    }
}

/// Stores a task: `202 {task_id, status}`, or `409` naming the active duplicate.
pub async fn enqueue(
    state: &AppState,
    task: &NewTask,
    duplicate_of: &str,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    match queue::enqueue(&state.pool, task).await? {
        Enqueued::Created(id) => {
            state.hub.announce_queued();
            tracing::info!(task = %id, source = %task.source, repo = %task.repo, "task queued");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"task_id": id, "status": "queued"})),
            ))
        }
        Enqueued::Duplicate(active) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a task for this {duplicate_of} is already queued or running"),
        )
        .with("task_id", active.to_string())),
    }
}

pub async fn create(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ManualRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let task = trigger::manual_task(req, &defaults(&state))?;
    enqueue(&state, &task, "source_id").await
}

pub async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (status, limit) = list_params(query.as_deref().unwrap_or_default())?;
    let tasks = queue::list(&state.pool, status, limit).await?;
    let tasks: Vec<TaskView> = tasks.iter().map(TaskView::from).collect();
    Ok(Json(json!({ "tasks": tasks })))
}

fn list_params(query: &str) -> Result<(Option<TaskStatus>, i64), ApiError> {
    let mut status = None;
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "status" if value.is_empty() => {}
            "status" => {
                status = Some(TaskStatus::parse(&value).ok_or_else(|| {
                    let all: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
                    ApiError::bad_request(format!(
                        "status: expected one of {}, got {value:?}",
                        all.join(", ")
                    ))
                    .with("field", "status")
                })?);
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit: expected a whole number from 1 to {MAX_LIMIT}, got {value:?}"
                        ))
                        .with("field", "limit")
                    })?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?}; expected status and limit"
                )));
            }
        }
    }
    Ok((status, limit))
}

pub fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(format!("no task with id {raw:?} (task ids are UUIDs)")))
}

pub async fn load(state: &AppState, raw_id: &str) -> Result<Task, ApiError> {
    let id = parse_id(raw_id)?;
    queue::get(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no task with id {id}")))
}

pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let task = load(&state, &id).await?;
    let history = events::since(&state.pool, task.id, 0).await?;
    let mut view = serde_json::to_value(TaskView::from(&task)).map_err(|_| ApiError::internal())?;
    if let Value::Object(map) = &mut view {
        map.insert("prompt".into(), Value::String(task.prompt.clone()));
        map.insert(
            "events".into(),
            serde_json::to_value(history.iter().map(EventView::from).collect::<Vec<_>>())
                .map_err(|_| ApiError::internal())?,
        );
    }
    Ok(Json(view))
}

/// The agent's output as plain text (head and tail within MAUR_AGENT_MAX_LOG).
pub async fn log(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let task = load(&state, &id).await?;
    let Some(log) = task.agent_log else {
        return Err(ApiError::not_found(format!(
            "task {} has no agent log (yet)",
            task.id
        )));
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        log,
    )
        .into_response())
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = parse_id(&id)?;
    match queue::request_cancel(&state.pool, id, "api").await? {
        CancelResult::NotFound => Err(ApiError::not_found(format!("no task with id {id}"))),
        CancelResult::Cancelled => Ok((
            StatusCode::OK,
            Json(json!({"task_id": id, "status": "cancelled"})),
        )),
        CancelResult::Signalled => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"task_id": id, "status": "running", "cancel_requested": true})),
        )),
        CancelResult::AlreadyFinished(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("task already {status}; only queued or running tasks can be cancelled"),
        )
        .with("task_id", id.to_string())
        .with("status", status.as_str())),
    }
}

/// A task as clients see it.
#[derive(Serialize)]
pub struct TaskView<'a> {
    id: uuid::Uuid,
    status: &'a str,
    outcome: Option<&'a str>,
    source: &'a str,
    title: &'a str,
    repo: &'a str,
    repo_kind: &'a str,
    repo_url: &'a str,
    repo_branch: Option<&'a str>,
    branch: Option<&'a str>,
    pr_url: Option<&'a str>,
    error: Option<&'a str>,
    attempts: i32,
    max_attempts: i32,
    cancel_requested: bool,
    locked_by: Option<&'a str>,
    locked_until: Option<chrono::DateTime<chrono::Utc>>,
    usage: Usage,
    context: &'a Value,
    created_at: chrono::DateTime<chrono::Utc>,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    updated_at: chrono::DateTime<chrono::Utc>,
    run_after: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize)]
struct Usage {
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: f64,
}

impl<'a> From<&'a Task> for TaskView<'a> {
    fn from(t: &'a Task) -> Self {
        Self {
            id: t.id,
            status: &t.status,
            outcome: t.outcome.as_deref(),
            source: &t.source,
            title: &t.title,
            repo: &t.repo,
            repo_kind: &t.repo_kind,
            repo_url: &t.repo_url,
            repo_branch: t.repo_branch.as_deref(),
            branch: t.branch.as_deref(),
            pr_url: t.pr_url.as_deref(),
            error: t.error.as_deref(),
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            cancel_requested: t.cancel_requested,
            locked_by: t.locked_by.as_deref(),
            locked_until: t.locked_until,
            usage: Usage {
                input_tokens: t.input_tokens,
                output_tokens: t.output_tokens,
                cost_usd: t.cost_usd,
            },
            context: &t.context,
            created_at: t.created_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            updated_at: t.updated_at,
            run_after: t.run_after,
        }
    }
}

#[derive(Serialize)]
pub struct EventView<'a> {
    seq: i32,
    at: chrono::DateTime<chrono::Utc>,
    kind: &'a str,
    data: &'a Value,
}

impl<'a> From<&'a TaskEvent> for EventView<'a> {
    fn from(e: &'a TaskEvent) -> Self {
        Self {
            seq: e.seq,
            at: e.at,
            kind: &e.kind,
            data: &e.data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters() {
        assert_eq!(list_params("").unwrap(), (None, 50));
        assert_eq!(
            list_params("status=running&limit=5").unwrap(),
            (Some(TaskStatus::Running), 5)
        );
        assert_eq!(
            list_params("status=bogus").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert!(list_params("limit=0").is_err());
        assert!(list_params("limit=501").is_err());
        assert!(list_params("limit=x").is_err());
        assert!(list_params("sort=asc").is_err());
    }
}
