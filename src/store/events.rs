//! The append-only event stream of each task.

use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;
use super::tasks::{Lease, held};
use crate::task::TaskEvent;

/// Appends a step event from the worker holding `lease` (fenced like every worker write).
pub async fn append(
    pool: &PgPool,
    lease: &Lease,
    kind: &str,
    data: &serde_json::Value,
) -> Result<i32, StoreError> {
    held(
        "WITH s AS (
            UPDATE tasks SET last_seq = last_seq + 1, updated_at = now()
            WHERE id = $1 AND attempts = $2 AND locked_by = $3 AND status = 'running'
            RETURNING id, last_seq
        )
        INSERT INTO task_events (task_id, seq, kind, data)
        SELECT id, last_seq, $4, $5 FROM s
        RETURNING seq",
        lease,
    )
    .bind(kind)
    .bind(data)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::LeaseLost(lease.task_id))
}

/// Events with `seq > after`, oldest first.
pub async fn since(pool: &PgPool, task_id: Uuid, after: i32) -> Result<Vec<TaskEvent>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT task_id, seq, at, kind, data FROM task_events
         WHERE task_id = $1 AND seq > $2 ORDER BY seq",
    )
    .bind(task_id)
    .bind(after)
    .fetch_all(pool)
    .await?)
}
