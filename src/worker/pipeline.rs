//! The seam between the queue and the work: the worker owns leases, retries and
//! cancellation; a [`Pipeline`] only does the task's steps.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store::{self, StoreError, tasks::Lease};
use crate::task::{Outcome, Task};

/// What a successful run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    pub outcome: Outcome,
    pub branch: Option<String>,
    pub pr_url: Option<String>,
    pub summary: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// Infrastructure trouble (forge 5xx, network, a push race): retried with backoff.
    #[error("{0}")]
    Transient(String),
    /// The task itself cannot succeed (agent failed, guard refused): no retry.
    #[error("{0}")]
    Fatal(String),
    /// The pipeline noticed `ctx.stop` and wound down; the worker records why it was stopped.
    #[error("stopped")]
    Stopped,
}

impl From<StoreError> for PipelineError {
    fn from(e: StoreError) -> Self {
        Self::Transient(e.to_string())
    }
}

/// Where a pipeline's steps go: the task's event stream in Postgres (the worker), or the
/// terminal (`maur run`).
#[async_trait]
pub trait Progress: Send + Sync {
    async fn event(&self, kind: &str, data: Value) -> Result<(), StoreError>;
    async fn usage(&self, input: i64, output: i64, cost_usd: f64) -> Result<(), StoreError>;
    /// The agent's (capped) output, kept with the task.
    async fn log(&self, text: &str) -> Result<(), StoreError>;
}

/// Writes to the task's rows, fenced by the worker's lease.
pub struct StoreProgress {
    pub(crate) pool: PgPool,
    pub(crate) lease: Lease,
}

#[async_trait]
impl Progress for StoreProgress {
    async fn event(&self, kind: &str, data: Value) -> Result<(), StoreError> {
        store::events::append(&self.pool, &self.lease, kind, &data)
            .await
            .map(|_| ())
    }

    async fn usage(&self, input: i64, output: i64, cost_usd: f64) -> Result<(), StoreError> {
        store::tasks::add_usage(&self.pool, &self.lease, input, output, cost_usd).await
    }

    async fn log(&self, text: &str) -> Result<(), StoreError> {
        store::tasks::set_log(&self.pool, &self.lease, text).await
    }
}

/// Handed to a pipeline for one attempt of one task.
pub struct TaskContext {
    pub progress: Box<dyn Progress>,
    /// Cancelled when the attempt must stop (cancel requested, lease lost, shutdown). The
    /// worker also drops the pipeline's future then; child processes must die with it.
    pub stop: CancellationToken,
}

impl TaskContext {
    /// Appends a step to the task's event stream (seen live over SSE and by the reporter).
    pub async fn event(&self, kind: &str, data: Value) -> Result<(), StoreError> {
        self.progress.event(kind, data).await
    }

    pub async fn add_usage(
        &self,
        input: i64,
        output: i64,
        cost_usd: f64,
    ) -> Result<(), StoreError> {
        self.progress.usage(input, output, cost_usd).await
    }
}

#[async_trait]
pub trait Pipeline: Send + Sync + 'static {
    async fn run(&self, task: &Task, ctx: &TaskContext) -> Result<Done, PipelineError>;
}
