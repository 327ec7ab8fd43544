//! Every SQL statement maur runs, as free functions over a pool. Nothing else touches SQL.

pub mod db;
pub mod deliveries;
pub mod events;
pub mod github;
pub mod reports;
pub mod tasks;

/// Store errors split by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now; the API answers 503 and workers wait.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Fencing: the task is no longer held under this lease (expired and taken over, or finished).
    #[error("lease lost: task {0} is no longer held by this worker")]
    LeaseLost(uuid::Uuid),
    #[error("database error: {0}")]
    Db(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            Self::Unavailable(e)
        } else {
            Self::Db(e)
        }
    }
}

fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Protocol(_) => true,
        // 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}
