//! The reporter keeps one progress message per task up to date wherever the task came from
//! (an issue comment, a merge-request note, a Linear comment), independently of the worker
//! slots: a busy agent never delays a report, and a burst of events becomes one edit.
//!
//! Any number of worker processes run a reporter; a short lease on each task's report
//! (`task_reports.locked_until`) makes exactly one of them publish it at a time, and what
//! it created (`task_reports.state`, e.g. the comment id) is stored so every later publish edits
//! instead of posting again.

pub mod forge_sink;
pub mod render;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::forge::API_CALLS;
use crate::hub::{Hub, Note};
use crate::store::{self, StoreError};
use crate::task::{Task, TaskEvent};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Try again later (network, 5xx, rate limit).
    #[error("{0}")]
    Retry(String),
    /// Will never work (the issue was deleted, permission revoked): stop trying.
    #[error("{0}")]
    Permanent(String),
}

/// A place progress is reported to. `report_to` says where (its `"kind"` picks the sink).
#[async_trait]
pub trait ReportSink: Send + Sync + 'static {
    /// Creates or edits the task's one progress message. `state` is what earlier publishes
    /// recorded (the message's id, say); the sink updates it as it goes, and it is kept
    /// whether the publish succeeds or fails, so a retry knows what was already done.
    async fn publish(
        &self,
        task: &Task,
        events: &[TaskEvent],
        report_to: &serde_json::Value,
        state: &mut serde_json::Value,
        body: &str,
    ) -> Result<(), SinkError>;
}

pub type Sinks = HashMap<String, Arc<dyn ReportSink>>;

#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// At most one publish per task per this interval (the first one is immediate).
    pub min_interval: Duration,
    /// How often to look for unreported tasks in case a notification was lost.
    pub poll_interval: Duration,
    /// How long one reporter may hold a task's report while publishing it.
    pub lease: Duration,
    pub render: render::RenderOptions,
    /// How long a report waits after a failed publish.
    pub retry_delay: Duration,
}

impl Default for ReporterConfig {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(1),
            poll_interval: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            render: render::RenderOptions::default(),
            retry_delay: Duration::from_secs(10),
        }
    }
}

pub struct Reporter {
    pool: PgPool,
    hub: Arc<Hub>,
    sinks: Sinks,
    config: ReporterConfig,
}

const PARALLEL_PUBLISHES: usize = 8;

impl Reporter {
    pub fn new(pool: PgPool, hub: Arc<Hub>, sinks: Sinks, config: ReporterConfig) -> Arc<Self> {
        Arc::new(Self {
            pool,
            hub,
            sinks,
            config,
        })
    }

    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut notes = self.hub.subscribe();
        let mut dirty: HashSet<Uuid> = HashSet::new();
        // Tasks that just ended: their final state goes out at once, whatever the interval.
        let mut urgent: HashSet<Uuid> = HashSet::new();
        let mut last_publish: HashMap<Uuid, Instant> = HashMap::new();
        let mut scan_at = Instant::now();
        loop {
            if Instant::now() >= scan_at {
                match store::reports::due(&self.pool, 500).await {
                    Ok(ids) => dirty.extend(ids),
                    Err(e) => tracing::warn!(error = %e, "reporter: listing due reports failed"),
                }
                scan_at = Instant::now() + self.config.poll_interval;
            }
            // Publish what is due now; keep what was published too recently for later.
            let now = Instant::now();
            let (ready, later): (Vec<Uuid>, Vec<Uuid>) = dirty.drain().partition(|id| {
                urgent.contains(id)
                    || last_publish
                        .get(id)
                        .is_none_or(|t| now >= *t + self.config.min_interval)
            });
            for id in &ready {
                urgent.remove(id);
            }
            dirty.extend(later);
            let published: Vec<Uuid> = futures::stream::iter(ready)
                .map(|id| {
                    let me = Arc::clone(&self);
                    async move { me.report(id).await.then_some(id) }
                })
                .buffer_unordered(PARALLEL_PUBLISHES)
                .filter_map(|id| async move { id })
                .collect()
                .await;
            let now = Instant::now();
            for id in published {
                last_publish.insert(id, now);
            }
            last_publish.retain(|_, t| now < *t + self.config.min_interval);

            let next_flush = dirty
                .iter()
                .filter_map(|id| last_publish.get(id))
                .map(|t| *t + self.config.min_interval)
                .min()
                .unwrap_or(scan_at)
                .min(scan_at);
            tokio::select! {
                note = notes.recv() => match note {
                    Ok(Note::Event { task_id, kind, .. }) => {
                        if matches!(kind.as_str(), "succeeded" | "failed" | "cancelled") {
                            urgent.insert(task_id);
                        }
                        dirty.insert(task_id);
                    }
                    Ok(Note::Queued) | Ok(Note::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        scan_at = Instant::now();
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep_until(next_flush) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Publishes one task's report if it has news and nobody else holds it. Returns whether
    /// a publish was attempted.
    pub async fn report(&self, id: Uuid) -> bool {
        match self.try_report(id).await {
            Ok(attempted) => attempted,
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "reporter: bookkeeping failed");
                false
            }
        }
    }

    async fn try_report(&self, id: Uuid) -> Result<bool, StoreError> {
        let Some(report) = store::reports::take(&self.pool, id, self.config.lease).await? else {
            return Ok(false);
        };
        let kind = report
            .report_to
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        let Some(sink) = self.sinks.get(kind) else {
            tracing::warn!(task = %id, kind, "no report sink configured for this kind; not reporting");
            store::reports::published(&self.pool, id, i32::MAX, &report.state, true).await?;
            return Ok(false);
        };
        // Events first, then the task: the task is at least as new as the events shown, and
        // anything newer is picked up by the next publish.
        let events = store::events::since(&self.pool, id, 0).await?;
        let Some(task) = store::tasks::get(&self.pool, id).await? else {
            return Ok(false);
        };
        let seq = events.last().map_or(0, |e| e.seq);
        let done = task.status().is_terminal() && seq >= task.last_seq;
        let body = render::render_with(&task, &events, &self.config.render, chrono::Utc::now());
        let mut state = match &report.state {
            serde_json::Value::Object(_) => report.state.clone(),
            _ => serde_json::json!({}),
        };
        // The forge calls this report costs, kept beside what it created.
        let calls = Arc::new(AtomicU32::new(0));
        let result = API_CALLS
            .scope(
                calls.clone(),
                sink.publish(&task, &events, &report.report_to, &mut state, &body),
            )
            .await;
        let calls = u64::from(calls.load(Ordering::Relaxed));
        if calls > 0 {
            state["api_calls"] = (state["api_calls"].as_u64().unwrap_or(0) + calls).into();
        }
        match result {
            Ok(()) => store::reports::published(&self.pool, id, seq, &state, done).await?,
            Err(SinkError::Retry(e)) => {
                tracing::warn!(task = %id, error = %e, "reporter: publish failed; will retry");
                store::reports::retry_after(&self.pool, id, self.config.retry_delay, &state)
                    .await?;
            }
            Err(SinkError::Permanent(e)) => {
                tracing::warn!(task = %id, error = %e, "reporter: publish impossible; giving up on this report");
                store::reports::published(&self.pool, id, i32::MAX, &state, true).await?;
            }
        }
        Ok(true)
    }
}
