//! Connecting: the pool, creating the database on first start, and migrations.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::config::{Config, mask_url};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("DATABASE_URL is not a valid Postgres URL ({url}): {source}")]
    Url {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "cannot reach Postgres at {url}: {source}. Check that the server is running and accepts connections, and that DATABASE_URL (or DB_URI) names the right host, port, user and password"
    )]
    Unreachable {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "database {name:?} does not exist at {url} and could not be created ({source}); create it, or grant CREATEDB to the role"
    )]
    Create {
        name: String,
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("applying migrations to {url} failed: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

pub fn pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        // Fail fast when the database is down, so the API answers 503 instead of hanging.
        .acquire_timeout(Duration::from_secs(3))
}

/// Connects, creating the database when it is missing and the role may create it.
pub async fn connect(config: &Config) -> Result<PgPool, ConnectError> {
    let raw = config.database_url.expose_secret();
    let url = mask_url(raw);
    let options = PgConnectOptions::from_str(raw)
        .map_err(|source| ConnectError::Url {
            url: url.clone(),
            source,
        })?
        .log_statements(tracing::log::LevelFilter::Trace);
    connect_with(options, config.db_pool_size, &url).await
}

pub async fn connect_with(
    options: PgConnectOptions,
    size: u32,
    url: &str,
) -> Result<PgPool, ConnectError> {
    match pool_options(size).connect_with(options.clone()).await {
        Ok(pool) => Ok(pool),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            let name = options.get_database().unwrap_or("maur").to_owned();
            create_database(&options, &name, url).await?;
            pool_options(size)
                .connect_with(options)
                .await
                .map_err(|source| ConnectError::Unreachable {
                    url: url.to_owned(),
                    source,
                })
        }
        Err(source) => Err(ConnectError::Unreachable {
            url: url.to_owned(),
            source,
        }),
    }
}

async fn create_database(
    options: &PgConnectOptions,
    name: &str,
    url: &str,
) -> Result<(), ConnectError> {
    let create_err = |source| ConnectError::Create {
        name: name.to_owned(),
        url: url.to_owned(),
        source,
    };
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(create_err)?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match sqlx::query(&format!("CREATE DATABASE {quoted}"))
        .execute(&mut admin)
        .await
    {
        Ok(_) => {
            tracing::info!(database = name, "created database");
            Ok(())
        }
        // Another replica created it between our attempt and this one.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(()),
        Err(source) => Err(create_err(source)),
    }
}

pub async fn migrate(pool: &PgPool, url: &str) -> Result<(), ConnectError> {
    crate::MIGRATOR
        .run(pool)
        .await
        .map_err(|source| ConnectError::Migrate {
            url: url.to_owned(),
            source,
        })
}
