//! The reporter's bookkeeping, in `task_reports`: which tasks have events their progress
//! message does not show yet, and a short lease so only one reporter (of many worker
//! processes) publishes a task at a time. Never locks `tasks` rows.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

/// A report taken for publishing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Report {
    pub task_id: Uuid,
    /// Where to report: `{"kind": …}` picks the sink, the rest is the sink's.
    pub report_to: Value,
    /// What earlier publishes returned (e.g. the comment id).
    pub state: Value,
}

/// Reports with unpublished events that nobody holds.
pub async fn due(pool: &PgPool, limit: i64) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT r.task_id FROM task_reports r JOIN tasks t ON t.id = r.task_id
         WHERE NOT r.done AND r.reported_seq < t.last_seq
           AND (r.locked_until IS NULL OR r.locked_until < now())
         ORDER BY r.task_id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Takes task `id`'s report for `lease` if it has news and nobody else holds it.
pub async fn take(pool: &PgPool, id: Uuid, lease: Duration) -> Result<Option<Report>, StoreError> {
    // UPDATE … FROM locks only the task_reports row; the tasks row is just read.
    Ok(sqlx::query_as(
        "UPDATE task_reports r SET locked_until = now() + make_interval(secs => $2)
         FROM tasks t
         WHERE r.task_id = $1 AND t.id = r.task_id AND NOT r.done AND r.reported_seq < t.last_seq
           AND (r.locked_until IS NULL OR r.locked_until < now())
         RETURNING r.task_id, r.report_to, r.state",
    )
    .bind(id)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await?)
}

/// Records a publish that reflects events up to `seq`, and what the sink returned; `done`
/// when that was the task's final state.
pub async fn published(
    pool: &PgPool,
    id: Uuid,
    seq: i32,
    state: &Value,
    done: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE task_reports SET reported_seq = GREATEST(reported_seq, $2), state = $3,
                                 locked_until = NULL, done = done OR $4
         WHERE task_id = $1",
    )
    .bind(id)
    .bind(seq)
    .bind(state)
    .bind(done)
    .execute(pool)
    .await?;
    Ok(())
}

/// A publish failed: keep what it got done (`state`), and leave the report alone until
/// `delay` has passed, then try again.
pub async fn retry_after(
    pool: &PgPool,
    id: Uuid,
    delay: Duration,
    state: &Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE task_reports SET locked_until = now() + make_interval(secs => $2), state = $3
         WHERE task_id = $1",
    )
    .bind(id)
    .bind(delay.as_secs_f64())
    .bind(state)
    .execute(pool)
    .await?;
    Ok(())
}

/// What the reporter created for a task so far (e.g. the progress comment's URL).
pub async fn state_of(pool: &PgPool, id: Uuid) -> Result<Option<Value>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT state FROM task_reports WHERE task_id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}
