//! Webhook deliveries already acted on, so a redelivery is answered, not repeated.

use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub task_id: Option<Uuid>,
    pub outcome: String,
}

pub async fn seen(pool: &PgPool, source: &str, id: &str) -> Result<Option<Delivery>, StoreError> {
    let row: Option<(Option<Uuid>, String)> = sqlx::query_as(
        "SELECT task_id, outcome FROM webhook_deliveries WHERE source = $1 AND delivery_id = $2",
    )
    .bind(source)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(task_id, outcome)| Delivery { task_id, outcome }))
}

/// Records what a delivery did; the first record wins if two copies raced.
pub async fn record(
    pool: &PgPool,
    source: &str,
    id: &str,
    task_id: Option<Uuid>,
    outcome: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (source, delivery_id, task_id, outcome)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(source)
    .bind(id)
    .bind(task_id)
    .bind(outcome)
    .execute(pool)
    .await?;
    Ok(())
}
