//! Pipelines with scripted behaviour, standing in for the real workspace/agent steps.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use maur::task::{Outcome, Task};
use maur::worker::{Done, Pipeline, PipelineError, TaskContext};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

/// Writes two step events and succeeds with a PR.
pub struct Succeeds;

#[async_trait]
impl Pipeline for Succeeds {
    async fn run(&self, task: &Task, ctx: &TaskContext) -> Result<Done, PipelineError> {
        ctx.event("step", json!({"step": "clone"})).await?;
        ctx.add_usage(120, 30, 0.002).await?;
        ctx.event("step", json!({"step": "agent"})).await?;
        Ok(Done {
            outcome: Outcome::PrOpened,
            branch: Some(format!("maur/{}", task.id)),
            pr_url: Some("https://forge.example/acme/api/pull/1".into()),
            summary: Some("fixed".into()),
        })
    }
}

/// Signals `started`, then works until stopped from outside (cancel, shutdown, lease loss).
#[derive(Clone)]
pub struct Blocks {
    /// One permit per started run, so tests can wait for the n-th start.
    started: Arc<Semaphore>,
    /// Set when the pipeline saw its stop token fire (cooperative cancellation).
    pub saw_stop: Arc<AtomicUsize>,
}

#[async_trait]
impl Pipeline for Blocks {
    async fn run(&self, _task: &Task, ctx: &TaskContext) -> Result<Done, PipelineError> {
        ctx.event("step", json!({"step": "agent", "status": "running"}))
            .await?;
        self.started.add_permits(1);
        ctx.stop.cancelled().await;
        self.saw_stop.fetch_add(1, Ordering::SeqCst);
        Err(PipelineError::Stopped)
    }
}

impl Default for Blocks {
    fn default() -> Self {
        Self {
            started: Arc::new(Semaphore::new(0)),
            saw_stop: Arc::default(),
        }
    }
}

impl Blocks {
    /// Resolves once another run has started.
    pub async fn started(&self) {
        if let Ok(permit) = self.started.acquire().await {
            permit.forget();
        }
    }
}

/// Fails transiently every time.
pub struct Flaky;

#[async_trait]
impl Pipeline for Flaky {
    async fn run(&self, _task: &Task, _ctx: &TaskContext) -> Result<Done, PipelineError> {
        Err(PipelineError::Transient("forge answered 502".into()))
    }
}

/// Counts runs and does nothing: for throughput.
#[derive(Default, Clone)]
pub struct Noop(pub Arc<AtomicUsize>);

#[async_trait]
impl Pipeline for Noop {
    async fn run(&self, _task: &Task, _ctx: &TaskContext) -> Result<Done, PipelineError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Done {
            outcome: Outcome::NoChanges,
            branch: None,
            pr_url: None,
            summary: None,
        })
    }
}

/// Signals `started`, waits for `release`, then succeeds.
#[derive(Default, Clone)]
pub struct Gate {
    pub started: Arc<Notify>,
    pub release: Arc<Notify>,
}

#[async_trait]
impl Pipeline for Gate {
    async fn run(&self, _task: &Task, _ctx: &TaskContext) -> Result<Done, PipelineError> {
        self.started.notify_one();
        self.release.notified().await;
        Ok(Done {
            outcome: Outcome::NoChanges,
            branch: None,
            pr_url: None,
            summary: None,
        })
    }
}

/// Panics: a bug in a pipeline must not wedge the task or the worker.
pub struct Panics;

#[async_trait]
impl Pipeline for Panics {
    async fn run(&self, _task: &Task, _ctx: &TaskContext) -> Result<Done, PipelineError> {
        panic!("a bug in a pipeline step")
    }
}
