//! Webhook deliveries already acted on, so a redelivery is answered, not repeated.
//!
//! A delivery is claimed before maur acts on it (one `INSERT … ON CONFLICT DO NOTHING`), so
//! two copies arriving at once cannot both act; a delivery whose handling failed is released
//! again, so GitHub's "Redeliver" works.

use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

/// How long handled deliveries are remembered (GitHub lets people redeliver for 3 days).
const KEEP_DAYS: i32 = 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub task_id: Option<Uuid>,
    /// What maur did, or `processing` while a first copy is being handled.
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time: act on it, then [`finish`] or [`release`].
    New,
    Seen(Delivery),
}

pub async fn claim(pool: &PgPool, source: &str, id: &str) -> Result<Claim, StoreError> {
    if rand::random::<u8>() == 0 {
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE received_at < now() - make_interval(days => $1)",
        )
        .bind(KEEP_DAYS)
        .execute(pool)
        .await?;
    }
    let claimed: Option<String> = sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (source, delivery_id, outcome) VALUES ($1, $2, 'processing')
         ON CONFLICT DO NOTHING RETURNING delivery_id",
    )
    .bind(source)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    if claimed.is_some() {
        return Ok(Claim::New);
    }
    let row: Option<(Option<Uuid>, String)> = sqlx::query_as(
        "SELECT task_id, outcome FROM webhook_deliveries WHERE source = $1 AND delivery_id = $2",
    )
    .bind(source)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((task_id, outcome)) => Claim::Seen(Delivery { task_id, outcome }),
        // Released between our insert and our look: the other copy failed; so may we.
        None => Claim::Seen(Delivery {
            task_id: None,
            outcome: "retry".into(),
        }),
    })
}

/// Records what a claimed delivery did.
pub async fn finish(
    pool: &PgPool,
    source: &str,
    id: &str,
    task_id: Option<Uuid>,
    outcome: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_deliveries SET task_id = $3, outcome = $4 WHERE source = $1 AND delivery_id = $2",
    )
    .bind(source)
    .bind(id)
    .bind(task_id)
    .bind(outcome)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets a claimed delivery whose handling failed, so it can be delivered again.
pub async fn release(pool: &PgPool, source: &str, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM webhook_deliveries WHERE source = $1 AND delivery_id = $2")
        .bind(source)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
