//! GitHub App installations and the repositories they cover.

use sqlx::PgPool;

use super::StoreError;

/// Records an installation and, when `repos` is given, replaces the repositories it covers
/// (an `installation` event lists them all).
pub async fn upsert_installation(
    pool: &PgPool,
    id: i64,
    account: &str,
    repos: Option<&[String]>,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO github_installations (id, account) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET account = EXCLUDED.account, updated_at = now()",
    )
    .bind(id)
    .bind(account)
    .execute(&mut *tx)
    .await?;
    if let Some(repos) = repos {
        sqlx::query("DELETE FROM github_repositories WHERE installation_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_repos(&mut tx, id, repos).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn insert_repos(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    installation: i64,
    repos: &[String],
) -> Result<(), StoreError> {
    let names: Vec<String> = repos.iter().map(|r| r.to_ascii_lowercase()).collect();
    sqlx::query(
        "INSERT INTO github_repositories (full_name, installation_id)
         SELECT unnest($1::text[]), $2
         ON CONFLICT (full_name) DO UPDATE SET installation_id = EXCLUDED.installation_id, updated_at = now()",
    )
    .bind(&names)
    .bind(installation)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `installation_repositories`: repositories added to and removed from an installation.
pub async fn change_repositories(
    pool: &PgPool,
    id: i64,
    account: &str,
    added: &[String],
    removed: &[String],
) -> Result<(), StoreError> {
    upsert_installation(pool, id, account, None).await?;
    let mut tx = pool.begin().await?;
    insert_repos(&mut tx, id, added).await?;
    let removed: Vec<String> = removed.iter().map(|r| r.to_ascii_lowercase()).collect();
    sqlx::query(
        "DELETE FROM github_repositories WHERE installation_id = $1 AND full_name = ANY($2)",
    )
    .bind(id)
    .bind(&removed)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn delete_installation(pool: &PgPool, id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM github_installations WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn set_suspended(pool: &PgPool, id: i64, suspended: bool) -> Result<(), StoreError> {
    sqlx::query("UPDATE github_installations SET suspended = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(suspended)
        .execute(pool)
        .await?;
    Ok(())
}

/// The installation covering `owner/name`, if a webhook told us.
pub async fn installation_for(pool: &PgPool, full_name: &str) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT r.installation_id FROM github_repositories r
         JOIN github_installations i ON i.id = r.installation_id
         WHERE r.full_name = $1 AND NOT i.suspended",
    )
    .bind(full_name.to_ascii_lowercase())
    .fetch_optional(pool)
    .await?)
}

/// Remembers a repository's installation learnt from GitHub's API.
pub async fn remember_repository(
    pool: &PgPool,
    id: i64,
    account: &str,
    full_name: &str,
) -> Result<(), StoreError> {
    upsert_installation(pool, id, account, None).await?;
    let mut tx = pool.begin().await?;
    insert_repos(&mut tx, id, &[full_name.to_owned()]).await?;
    tx.commit().await?;
    Ok(())
}
