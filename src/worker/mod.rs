//! The claim loop: N slots per process sharing one Postgres queue with every other worker.

pub mod backoff;
pub mod pipeline;
pub mod work;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use sqlx::PgPool;
use tokio::sync::{Semaphore, broadcast};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::hub::{Hub, Note};
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::tasks::{self as queue, Claimed, Finish, Lease};
use crate::task::TaskStatus;
pub use pipeline::{Done, Pipeline, PipelineError, TaskContext};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub id: String,
    pub concurrency: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub shutdown_grace: Duration,
    pub retry_base: Duration,
}

impl WorkerConfig {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            id: c.worker_id.clone(),
            concurrency: c.worker_concurrency,
            lease: c.lease,
            poll_interval: c.poll_interval,
            shutdown_grace: c.shutdown_grace,
            retry_base: c.retry_base,
        }
    }
}

/// How long a stopped pipeline may take to wind down before its future is dropped.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why a running attempt is being stopped; the first reason wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    CancelRequested,
    LeaseLost,
    Shutdown,
}

struct Stop {
    token: CancellationToken,
    reason: OnceLock<StopReason>,
}

impl Stop {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            token: CancellationToken::new(),
            reason: OnceLock::new(),
        })
    }

    fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }
}

/// An attempt's registration: dropping it (on any exit path) deregisters the attempt and
/// stops its heartbeat.
struct Registered {
    worker: Arc<Worker>,
    key: (Uuid, i32),
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.heartbeat.abort();
        self.worker.lock_running().remove(&self.key);
    }
}

pub struct Worker {
    pool: PgPool,
    hub: Arc<Hub>,
    pipeline: Arc<dyn Pipeline>,
    metrics: Arc<Metrics>,
    config: WorkerConfig,
    /// Attempts running in this process, by (task, attempt): after a database outage the same
    /// task can briefly have an old attempt winding down and a new one starting.
    running: Mutex<HashMap<(Uuid, i32), Arc<Stop>>>,
}

impl Worker {
    pub fn new(
        pool: PgPool,
        hub: Arc<Hub>,
        pipeline: Arc<dyn Pipeline>,
        metrics: Arc<Metrics>,
        config: WorkerConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            hub,
            pipeline,
            metrics,
            config,
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Claims and runs tasks until `shutdown`; then lets running tasks finish for the grace
    /// period and hands the rest back to the queue.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(worker = %self.config.id, slots = self.config.concurrency, "worker started");
        let background = CancellationToken::new();
        tokio::spawn(Arc::clone(&self).watch_cancels(self.hub.subscribe(), background.clone()));
        tokio::spawn(Arc::clone(&self).reap_loop(background.clone()));

        let slots = Arc::new(Semaphore::new(self.config.concurrency));
        let mut running = JoinSet::new();
        loop {
            while running.try_join_next().is_some() {}
            // Shutdown first: `select!` picks among ready branches at random, and a free slot
            // must not win over a stop that has already been asked for.
            let permit = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                p = Arc::clone(&slots).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            if shutdown.is_cancelled() {
                break;
            }
            match queue::claim(&self.pool, &self.config.id, self.config.lease).await {
                // The stop arrived while the claim was on its way: hand the task straight
                // back (without spending an attempt) rather than start new work.
                Ok(Some(claimed)) if shutdown.is_cancelled() => {
                    if let Err(e) =
                        queue::release(&self.pool, &claimed.lease, "worker shutting down").await
                    {
                        tracing::warn!(task = %claimed.task.id, error = %e, "could not hand back a task claimed during shutdown");
                    }
                    break;
                }
                Ok(Some(claimed)) => {
                    let me = Arc::clone(&self);
                    running.spawn(async move {
                        me.run_claimed(claimed).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        _ = self.hub.queued() => {}
                        _ = tokio::time::sleep(self.config.poll_interval) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::warn!(error = %e, "claiming a task failed; retrying in 1s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }

        while running.try_join_next().is_some() {}
        if !running.is_empty() {
            tracing::info!(
                tasks = running.len(),
                grace = ?self.config.shutdown_grace,
                "shutting down: waiting for running tasks"
            );
            let drained = tokio::time::timeout(self.config.shutdown_grace, async {
                while running.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                let stops: Vec<Arc<Stop>> = self.lock_running().values().cloned().collect();
                tracing::info!(tasks = stops.len(), "grace period over: releasing leases");
                for stop in stops {
                    stop.stop(StopReason::Shutdown);
                }
                while running.join_next().await.is_some() {}
            }
        }
        background.cancel();
        tracing::info!(worker = %self.config.id, "worker stopped");
    }

    /// Claims one task and runs it to the end in the caller's task. For tests and benchmarks
    /// that drain the queue deterministically.
    pub async fn run_one(self: &Arc<Self>) -> Result<Option<Uuid>, StoreError> {
        let Some(claimed) = queue::claim(&self.pool, &self.config.id, self.config.lease).await?
        else {
            return Ok(None);
        };
        let id = claimed.task.id;
        let watcher = CancellationToken::new();
        tokio::spawn(Arc::clone(self).watch_cancels(self.hub.subscribe(), watcher.clone()));
        self.run_claimed(claimed).await;
        watcher.cancel();
        Ok(Some(id))
    }

    /// One pass of the lease reaper; `run` does this periodically.
    pub async fn reap(&self) -> Result<(), StoreError> {
        for r in queue::reap_expired(&self.pool).await? {
            tracing::warn!(task = %r.task_id, status = %r.status, "lease expired: worker lost");
        }
        Ok(())
    }

    async fn run_claimed(self: &Arc<Self>, claimed: Claimed) {
        let span =
            tracing::info_span!("task", id = %claimed.task.id, attempt = claimed.lease.attempt);
        self.run_attempt(claimed).instrument(span).await;
    }

    async fn run_attempt(self: &Arc<Self>, claimed: Claimed) {
        let Claimed { task, lease, wait } = claimed;
        self.metrics.observe_claim(wait);
        let started = Instant::now();
        tracing::info!(wait_ms = wait.as_millis() as u64, "claimed");

        let stop = Stop::new();
        let key = (task.id, lease.attempt);
        self.lock_running().insert(key, Arc::clone(&stop));
        // Removes the entry and stops the heartbeat however this attempt ends.
        let _registered = Registered {
            worker: Arc::clone(self),
            key,
            heartbeat: tokio::spawn(Arc::clone(self).heartbeat(lease.clone(), Arc::clone(&stop))),
        };

        let ctx = TaskContext {
            progress: Box::new(pipeline::StoreProgress {
                pool: self.pool.clone(),
                lease: lease.clone(),
            }),
            stop: stop.token.clone(),
        };
        // A panicking pipeline is a failed task, not a task stuck "running" forever.
        let run = std::panic::AssertUnwindSafe(self.pipeline.run(&task, &ctx))
            .catch_unwind()
            .map(|r| {
                r.unwrap_or_else(|_| {
                    tracing::error!("the pipeline panicked");
                    Err(PipelineError::Fatal(
                        "internal error: the pipeline crashed; the details are in the worker log"
                            .into(),
                    ))
                })
            });
        tokio::pin!(run);
        let result = tokio::select! {
            r = &mut run => Some(r),
            // Give the pipeline a moment to wind down (kill its agent, clean up); then drop it.
            _ = stop.token.cancelled() => tokio::time::timeout(STOP_GRACE, &mut run).await.ok(),
        };

        // The heartbeat keeps the lease alive until the outcome is recorded.
        let status = self
            .settle(&lease, result, stop.reason.get().copied())
            .await;
        if let Some(status) = status {
            self.metrics
                .observe_task(status.as_str(), started.elapsed());
            tracing::info!(%status, took_ms = started.elapsed().as_millis() as u64, "task attempt ended");
        }
    }

    /// Records how the attempt ended. Returns the resulting status, or `None` when the task
    /// was not ours any more or was handed back.
    async fn settle(
        &self,
        lease: &Lease,
        result: Option<Result<Done, PipelineError>>,
        stopped: Option<StopReason>,
    ) -> Option<TaskStatus> {
        let finish = match (stopped, result) {
            (Some(StopReason::LeaseLost), _) => {
                tracing::warn!("lease lost to another worker; abandoning this attempt");
                return None;
            }
            (_, Some(Ok(done))) => Finish::Succeeded {
                outcome: done.outcome,
                branch: done.branch,
                pr_url: done.pr_url,
                summary: done.summary,
            },
            (Some(StopReason::Shutdown), _) => {
                if let Err(e) = self
                    .retrying(|| queue::release(&self.pool, lease, "worker shutting down"))
                    .await
                {
                    tracing::warn!(error = %e, "could not release the lease; it will expire");
                }
                return None;
            }
            (Some(StopReason::CancelRequested), _) => Finish::Cancelled {
                reason: "cancelled on request".to_owned(),
            },
            (None, Some(Err(PipelineError::Fatal(error)))) => Finish::Failed { error },
            (None, Some(Err(PipelineError::Transient(error)))) => {
                let delay = backoff::delay(self.config.retry_base, lease.attempt, rand::random());
                return match self
                    .retrying(|| queue::retry_later(&self.pool, lease, &error, delay))
                    .await
                {
                    Ok(status) => Some(status),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not schedule the retry; the lease will expire");
                        None
                    }
                };
            }
            (None, Some(Err(PipelineError::Stopped)) | None) => Finish::Failed {
                error: "the pipeline stopped without being asked to".to_owned(),
            },
        };
        let status = match &finish {
            Finish::Succeeded { .. } => TaskStatus::Succeeded,
            Finish::Failed { .. } => TaskStatus::Failed,
            Finish::Cancelled { .. } => TaskStatus::Cancelled,
        };
        match self
            .retrying(|| queue::finish(&self.pool, lease, &finish))
            .await
        {
            Ok(()) => Some(status),
            Err(e) => {
                tracing::warn!(error = %e, "could not record the result; the lease will expire and the task will run again");
                None
            }
        }
    }

    /// Retries a final write while the database is briefly unavailable, for up to one lease.
    async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let deadline = Instant::now() + self.config.lease;
        loop {
            match op().await {
                Err(StoreError::Unavailable(e)) if Instant::now() < deadline => {
                    tracing::warn!(error = %e, "database unavailable; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    /// Renews the lease every quarter of it, the first time after a second (which also
    /// catches a cancel that landed between the claim and the attempt's registration,
    /// without costing instant tasks a write). If renewals keep failing (the database is
    /// unreachable) until little of the lease is left, the attempt stops on its own: another
    /// worker may take the task over once the lease runs out, and two must never run it.
    async fn heartbeat(self: Arc<Self>, lease: Lease, stop: Arc<Stop>) {
        let every = self.config.lease / 4;
        let mut renewed = Instant::now();
        tokio::time::sleep(every.min(Duration::from_secs(1))).await;
        loop {
            match queue::heartbeat(&self.pool, &lease, self.config.lease).await {
                Ok(cancel) => {
                    renewed = Instant::now();
                    if cancel {
                        stop.stop(StopReason::CancelRequested);
                    }
                }
                Err(StoreError::LeaseLost(_)) => {
                    stop.stop(StopReason::LeaseLost);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease heartbeat failed; retrying");
                    if renewed.elapsed() >= self.config.lease - every {
                        tracing::warn!("could not renew the lease in time; stopping this attempt");
                        stop.stop(StopReason::LeaseLost);
                        return;
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Stops running tasks as soon as a `cancel_requested` event is written for them.
    async fn watch_cancels(
        self: Arc<Self>,
        mut notes: broadcast::Receiver<Note>,
        done: CancellationToken,
    ) {
        loop {
            let note = tokio::select! {
                n = notes.recv() => n,
                _ = done.cancelled() => return,
            };
            match note {
                Ok(Note::Event { task_id, kind, .. }) if kind == "cancel_requested" => {
                    for ((id, _), stop) in self.lock_running().iter() {
                        if *id == task_id {
                            stop.stop(StopReason::CancelRequested);
                        }
                    }
                }
                Ok(_) => {}
                // Missed notes: the heartbeat still sees `cancel_requested` within a quarter lease.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn reap_loop(self: Arc<Self>, done: CancellationToken) {
        let every = (self.config.lease / 2).min(Duration::from_secs(15));
        loop {
            if let Err(e) = self.reap().await {
                tracing::warn!(error = %e, "reaping expired leases failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = done.cancelled() => return,
            }
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, i32), Arc<Stop>>> {
        // A panic while holding this lock leaves the map consistent (single inserts/removes).
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}
