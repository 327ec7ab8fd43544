//! The queue. Every state change is one statement that also appends its event, so the task
//! row and its history can never disagree, and the notify triggers fire exactly once.
//!
//! Workers hold tasks under a [`Lease`]; every write a worker makes is fenced on
//! `(id, attempts, locked_by, status = 'running')`, so a worker whose lease expired and was
//! taken over cannot overwrite its successor's work.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;
use crate::task::{NewTask, Outcome, Task, TaskStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Created(Uuid),
    /// An active task already has this dedup key.
    Duplicate(Uuid),
}

/// Proof that a worker holds a task: the attempt number is the fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub task_id: Uuid,
    pub attempt: i32,
    pub worker: String,
}

#[derive(Debug, Clone)]
pub struct Claimed {
    pub task: Task,
    pub lease: Lease,
    /// From when the task became claimable (`run_after`) to the claim.
    pub wait: Duration,
}

/// How a held task ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    Succeeded {
        outcome: Outcome,
        branch: Option<String>,
        pr_url: Option<String>,
        summary: Option<String>,
    },
    Failed {
        error: String,
    },
    Cancelled {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelResult {
    NotFound,
    /// Queued: cancelled on the spot.
    Cancelled,
    /// Running: the worker has been asked to stop.
    Signalled,
    AlreadyFinished(TaskStatus),
}

/// What a reaper pass did to one task whose worker vanished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    pub task_id: Uuid,
    pub status: TaskStatus,
}

const ACTIVE: &str = "status IN ('queued', 'running')";

/// A statement written by the worker holding `lease`: binds `$1` (id), `$2` (attempt) and
/// `$3` (worker), which the statement must check with
/// `id = $1 AND attempts = $2 AND locked_by = $3 AND status = 'running'`.
/// No row back means the lease is gone: see [`StoreError::LeaseLost`].
pub(crate) fn held<'q, O>(
    sql: &'q str,
    lease: &'q Lease,
) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>
where
    (O,): for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    sqlx::query_scalar(sql)
        .bind(lease.task_id)
        .bind(lease.attempt)
        .bind(&lease.worker)
}

pub async fn enqueue(pool: &PgPool, task: &NewTask) -> Result<Enqueued, StoreError> {
    let data = json!({
        "source": task.source.as_str(),
        "title": task.title,
        "repo": task.repo.url,
        "repo_branch": task.repo_branch,
    });
    // The active task can finish between our conflict and our look-up; then try again.
    for _ in 0..5 {
        let id = Uuid::now_v7();
        let created: Option<Uuid> = sqlx::query_scalar(&format!(
            "WITH ins AS (
                INSERT INTO tasks (id, source, dedup_key, title, prompt, repo, repo_kind, repo_url,
                                   repo_branch, context, max_attempts, last_seq)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1)
                ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL AND {ACTIVE} DO NOTHING
                RETURNING id
            ), report AS (
                INSERT INTO task_reports (task_id, report_to)
                SELECT id, $13 FROM ins WHERE $13::jsonb IS NOT NULL
            )
            INSERT INTO task_events (task_id, seq, kind, data)
            SELECT id, 1, 'queued', $12 FROM ins
            RETURNING task_id"
        ))
        .bind(id)
        .bind(task.source.as_str())
        .bind(&task.dedup_key)
        .bind(&task.title)
        .bind(&task.prompt)
        .bind(&task.repo_given)
        .bind(task.repo.kind.as_str())
        .bind(&task.repo.url)
        .bind(&task.repo_branch)
        .bind(&task.context)
        .bind(task.max_attempts)
        .bind(&data)
        .bind(&task.report_to)
        .fetch_optional(pool)
        .await?;
        if let Some(id) = created {
            return Ok(Enqueued::Created(id));
        }
        let active: Option<Uuid> = sqlx::query_scalar(&format!(
            "SELECT id FROM tasks WHERE dedup_key = $1 AND {ACTIVE}"
        ))
        .bind(&task.dedup_key)
        .fetch_optional(pool)
        .await?;
        if let Some(active) = active {
            return Ok(Enqueued::Duplicate(active));
        }
    }
    Err(StoreError::Db(sqlx::Error::Protocol(
        "enqueue kept racing with a finishing duplicate".into(),
    )))
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Task>, StoreError> {
    Ok(sqlx::query_as("SELECT * FROM tasks WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Newest first (ids are UUIDv7, so id order is creation order).
pub async fn list(
    pool: &PgPool,
    status: Option<TaskStatus>,
    limit: i64,
) -> Result<Vec<Task>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT * FROM tasks WHERE ($1::text IS NULL OR status = $1)
         ORDER BY id DESC LIMIT $2",
    )
    .bind(status.map(TaskStatus::as_str))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Takes the oldest due task, if any, under a lease of `lease` length.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
) -> Result<Option<Claimed>, StoreError> {
    let row: Option<(Task, f64)> = sqlx::query_as::<_, ClaimRow>(
        "WITH next AS (
            SELECT id FROM tasks
            WHERE status = 'queued' AND run_after <= now()
            ORDER BY run_after, created_at
            FOR UPDATE SKIP LOCKED
            LIMIT 1
        ), upd AS (
            UPDATE tasks t SET
                status = 'running', attempts = t.attempts + 1,
                locked_by = $1, locked_until = now() + make_interval(secs => $2),
                started_at = COALESCE(t.started_at, now()), updated_at = now(),
                last_seq = t.last_seq + 1
            FROM next WHERE t.id = next.id AND t.status = 'queued'
            RETURNING t.*
        ), ev AS (
            INSERT INTO task_events (task_id, seq, kind, data)
            SELECT id, last_seq, 'running', jsonb_build_object('attempt', attempts, 'worker', locked_by)
            FROM upd
        )
        SELECT upd.*, EXTRACT(EPOCH FROM (clock_timestamp() - upd.run_after))::float8 AS wait_secs
        FROM upd",
    )
    .bind(worker)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await?
    .map(|r| (r.task, r.wait_secs));
    Ok(row.map(|(task, wait)| Claimed {
        lease: Lease {
            task_id: task.id,
            attempt: task.attempts,
            worker: worker.to_owned(),
        },
        task,
        wait: Duration::from_secs_f64(wait.max(0.0)),
    }))
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    #[sqlx(flatten)]
    task: Task,
    wait_secs: f64,
}

/// Extends the lease. Returns whether a cancel was requested, or `LeaseLost`.
pub async fn heartbeat(pool: &PgPool, lease: &Lease, length: Duration) -> Result<bool, StoreError> {
    held(
        "UPDATE tasks SET locked_until = now() + make_interval(secs => $4)
         WHERE id = $1 AND attempts = $2 AND locked_by = $3 AND status = 'running'
         RETURNING cancel_requested",
        lease,
    )
    .bind(length.as_secs_f64())
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::LeaseLost(lease.task_id))
}

pub async fn finish(pool: &PgPool, lease: &Lease, how: &Finish) -> Result<(), StoreError> {
    let (status, outcome, error, branch, pr_url, data) = match how {
        Finish::Succeeded {
            outcome,
            branch,
            pr_url,
            summary,
        } => (
            TaskStatus::Succeeded,
            Some(outcome.as_str()),
            None,
            branch.as_deref(),
            pr_url.as_deref(),
            json!({"outcome": outcome, "branch": branch, "pr_url": pr_url, "summary": summary}),
        ),
        Finish::Failed { error } => (
            TaskStatus::Failed,
            None,
            Some(error.as_str()),
            None,
            None,
            json!({"error": error}),
        ),
        Finish::Cancelled { reason } => (
            TaskStatus::Cancelled,
            None,
            None,
            None,
            None,
            json!({"reason": reason}),
        ),
    };
    let done: Option<i32> = held(
        "WITH upd AS (
            UPDATE tasks SET
                status = $4, outcome = $5, error = $6,
                branch = COALESCE($7, branch), pr_url = COALESCE($8, pr_url),
                locked_by = NULL, locked_until = NULL,
                finished_at = now(), updated_at = now(), last_seq = last_seq + 1
            WHERE id = $1 AND attempts = $2 AND locked_by = $3 AND status = 'running'
            RETURNING id, last_seq
        )
        INSERT INTO task_events (task_id, seq, kind, data)
        SELECT id, last_seq, $4, jsonb_strip_nulls($9) FROM upd
        RETURNING seq",
        lease,
    )
    .bind(status.as_str())
    .bind(outcome)
    .bind(error)
    .bind(branch)
    .bind(pr_url)
    .bind(data)
    .fetch_optional(pool)
    .await?;
    done.map(|_| ()).ok_or(StoreError::LeaseLost(lease.task_id))
}

/// A transient failure: back to the queue after `delay`, failed once attempts run out, or
/// cancelled if someone asked meanwhile. Returns the status the task ended up in.
pub async fn retry_later(
    pool: &PgPool,
    lease: &Lease,
    error: &str,
    delay: Duration,
) -> Result<TaskStatus, StoreError> {
    let status: Option<String> = held(
        "WITH upd AS (
            UPDATE tasks SET
                status = CASE WHEN cancel_requested THEN 'cancelled'
                              WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
                error = CASE WHEN cancel_requested THEN NULL
                             WHEN attempts >= max_attempts
                             THEN $4 || ' (gave up after ' || attempts || ' attempts)' ELSE $4 END,
                run_after = now() + make_interval(secs => $5),
                finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN now() END,
                locked_by = NULL, locked_until = NULL, updated_at = now(), last_seq = last_seq + 1
            WHERE id = $1 AND attempts = $2 AND locked_by = $3 AND status = 'running'
            RETURNING id, last_seq, status, error, attempts, run_after
        )
        INSERT INTO task_events (task_id, seq, kind, data)
        SELECT id, last_seq, status, jsonb_build_object(
            'error', error, 'attempt', attempts, 'retry_at', CASE WHEN status = 'queued' THEN run_after END)
        FROM upd
        RETURNING kind",
    lease,
)
    .bind(error)
    .bind(delay.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    let status = status.ok_or(StoreError::LeaseLost(lease.task_id))?;
    Ok(TaskStatus::parse(&status).unwrap_or(TaskStatus::Failed))
}

/// Graceful shutdown: hand the task back without spending an attempt (or, if a cancel was
/// requested meanwhile, end it as cancelled).
pub async fn release(pool: &PgPool, lease: &Lease, reason: &str) -> Result<(), StoreError> {
    let done: Option<i32> = held(
        "WITH upd AS (
            UPDATE tasks SET
                status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
                attempts = CASE WHEN cancel_requested THEN attempts ELSE attempts - 1 END,
                finished_at = CASE WHEN cancel_requested THEN now() END,
                run_after = now(), locked_by = NULL, locked_until = NULL,
                updated_at = now(), last_seq = last_seq + 1
            WHERE id = $1 AND attempts = $2 AND locked_by = $3 AND status = 'running'
            RETURNING id, last_seq, status
        )
        INSERT INTO task_events (task_id, seq, kind, data)
        SELECT id, last_seq, status, jsonb_build_object('reason',
            CASE WHEN status = 'cancelled' THEN 'cancelled on request' ELSE $4::text END) FROM upd
        RETURNING seq",
        lease,
    )
    .bind(reason)
    .fetch_optional(pool)
    .await?;
    done.map(|_| ()).ok_or(StoreError::LeaseLost(lease.task_id))
}

/// Requeues every running task whose lease has expired; fails it past `max_attempts`, and
/// cancels it if a cancel had been requested (the user's word outlives the worker).
pub async fn reap_expired(pool: &PgPool) -> Result<Vec<Reaped>, StoreError> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "WITH expired AS (
            SELECT id FROM tasks
            WHERE status = 'running' AND locked_until < now()
            FOR UPDATE SKIP LOCKED
        ), upd AS (
            UPDATE tasks t SET
                status = CASE WHEN t.cancel_requested THEN 'cancelled'
                              WHEN t.attempts >= t.max_attempts THEN 'failed' ELSE 'queued' END,
                error = CASE WHEN t.cancel_requested THEN t.error
                             WHEN t.attempts >= t.max_attempts
                             THEN 'worker lost: its lease expired on attempt ' || t.attempts
                                  || ' of ' || t.max_attempts
                             ELSE t.error END,
                finished_at = CASE WHEN t.cancel_requested OR t.attempts >= t.max_attempts
                                   THEN now() END,
                run_after = now(), locked_by = NULL, locked_until = NULL,
                updated_at = now(), last_seq = t.last_seq + 1
            FROM expired WHERE t.id = expired.id
            RETURNING t.id, t.last_seq, t.status, t.attempts, t.error
        )
        INSERT INTO task_events (task_id, seq, kind, data)
        SELECT id, last_seq, status,
               jsonb_strip_nulls(jsonb_build_object('reason', 'worker lost', 'attempt', attempts,
                                                    'error', error))
        FROM upd
        RETURNING task_id, kind",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(task_id, kind)| Reaped {
            task_id,
            status: TaskStatus::parse(&kind).unwrap_or(TaskStatus::Failed),
        })
        .collect())
}

pub async fn request_cancel(pool: &PgPool, id: Uuid, by: &str) -> Result<CancelResult, StoreError> {
    let kind: Option<String> = sqlx::query_scalar(
        "WITH upd AS (
            UPDATE tasks SET
                status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
                cancel_requested = true, updated_at = now(), last_seq = last_seq + 1
            WHERE id = $1 AND (status = 'queued' OR (status = 'running' AND NOT cancel_requested))
            RETURNING id, last_seq, status
        )
        INSERT INTO task_events (task_id, seq, kind, data)
        SELECT id, last_seq,
               CASE WHEN status = 'cancelled' THEN 'cancelled' ELSE 'cancel_requested' END,
               jsonb_build_object('by', $2::text)
        FROM upd
        RETURNING kind",
    )
    .bind(id)
    .bind(by)
    .fetch_optional(pool)
    .await?;
    match kind.as_deref() {
        Some("cancelled") => return Ok(CancelResult::Cancelled),
        Some(_) => return Ok(CancelResult::Signalled),
        None => {}
    }
    // Nothing changed: say why.
    Ok(match get(pool, id).await? {
        None => CancelResult::NotFound,
        Some(t) if t.status() == TaskStatus::Running => CancelResult::Signalled,
        Some(t) => CancelResult::AlreadyFinished(t.status()),
    })
}

/// Tasks per status, for `/metrics`.
pub async fn counts(pool: &PgPool) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT status, count(*) FROM tasks GROUP BY status")
            .fetch_all(pool)
            .await?,
    )
}

/// Queued tasks that are due now: the backlog a worker would take next.
pub async fn queue_depth(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM tasks WHERE status = 'queued' AND run_after <= now()",
    )
    .fetch_one(pool)
    .await?)
}

/// Adds one agent step's token usage to the task's totals.
pub async fn add_usage(
    pool: &PgPool,
    lease: &Lease,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: f64,
) -> Result<(), StoreError> {
    let done: Option<Uuid> = held(
        "UPDATE tasks SET input_tokens = input_tokens + $4, output_tokens = output_tokens + $5,
                          cost_usd = cost_usd + $6, updated_at = now()
         WHERE id = $1 AND attempts = $2 AND locked_by = $3 AND status = 'running'
         RETURNING id",
        lease,
    )
    .bind(input_tokens)
    .bind(output_tokens)
    .bind(cost_usd)
    .fetch_optional(pool)
    .await?;
    done.map(|_| ()).ok_or(StoreError::LeaseLost(lease.task_id))
}

/// Keeps the agent's capped output with the task.
pub async fn set_log(pool: &PgPool, lease: &Lease, log: &str) -> Result<(), StoreError> {
    let done: Option<Uuid> = held(
        "UPDATE tasks SET agent_log = $4
         WHERE id = $1 AND attempts = $2 AND locked_by = $3 AND status = 'running'
         RETURNING id",
        lease,
    )
    .bind(log)
    .fetch_optional(pool)
    .await?;
    done.map(|_| ()).ok_or(StoreError::LeaseLost(lease.task_id))
}

/// The newest task with `dedup_key` (active or not): what `/maur retry` and `/maur status`
/// refer to.
pub async fn latest_for_key(pool: &PgPool, dedup_key: &str) -> Result<Option<Task>, StoreError> {
    Ok(
        sqlx::query_as("SELECT * FROM tasks WHERE dedup_key = $1 ORDER BY id DESC LIMIT 1")
            .bind(dedup_key)
            .fetch_optional(pool)
            .await?,
    )
}
