//! Queue benchmark: enqueue 20,000 tasks, drain them with a no-op pipeline at 1, 2 and 8
//! slots, and measure enqueue-to-claim latency for single tasks arriving at an idle worker.
//!
//! Run: `cargo bench --bench queue` (BENCH_TASKS=20000, BENCH_SLOTS=1,2,8, BENCH_SAMPLES=200).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{BenchDb, machine, ms, percentile};
use maur::app::App;
use maur::config::Config;
use maur::repo::RepoRef;
use maur::store::tasks as queue;
use maur::task::{NewTask, Outcome, Source, Task};
use maur::worker::{Done, Pipeline, PipelineError, TaskContext};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Does nothing, counts, and says when the target is reached.
struct Noop {
    done: AtomicUsize,
    target: AtomicUsize,
    reached: Notify,
}

#[async_trait]
impl Pipeline for Noop {
    async fn run(&self, _task: &Task, _ctx: &TaskContext) -> Result<Done, PipelineError> {
        let n = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.target.load(Ordering::SeqCst) {
            self.reached.notify_one();
        }
        Ok(Done {
            outcome: Outcome::NoChanges,
            branch: None,
            pr_url: None,
            summary: None,
        })
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn new_task(i: usize) -> NewTask {
    NewTask {
        source: Source::Manual,
        dedup_key: Some(format!("bench-{i}")),
        title: format!("task {i}"),
        prompt: "do nothing".into(),
        repo_given: "acme/api".into(),
        repo: RepoRef::parse("acme/api").unwrap(),
        repo_branch: None,
        context: serde_json::json!({}),
        max_attempts: 3,
        report_to: None,
    }
}

/// Enqueues `n` tasks from 16 concurrent producers; returns the elapsed time.
async fn enqueue_many(pool: &PgPool, start: usize, n: usize) -> Duration {
    let next = Arc::new(AtomicUsize::new(start));
    let t0 = Instant::now();
    let producers: Vec<_> = (0..16)
        .map(|_| {
            let (pool, next) = (pool.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= start + n {
                        break;
                    }
                    queue::enqueue(&pool, &new_task(i)).await.unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
    t0.elapsed()
}

fn config(slots: usize) -> Config {
    let vars = [
        ("MAUR_WORKER_CONCURRENCY", slots.to_string()),
        ("MAUR_POLL_INTERVAL", "1h".to_string()),
        ("MAUR_WORKER_ID", format!("bench-{slots}")),
    ];
    Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap()
}

#[tokio::main]
async fn main() {
    let tasks: usize = env_or("BENCH_TASKS", 20_000);
    let samples: usize = env_or("BENCH_SAMPLES", 200);
    let slot_levels: Vec<usize> = std::env::var("BENCH_SLOTS")
        .unwrap_or_else(|_| "1,2,8".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("queue: {tasks} tasks per drain, no-op pipeline");
    println!("machine: {}", machine());
    println!("| step | slots | tasks | seconds | tasks/s |");
    println!("|---|---|---|---|---|");

    let db = BenchDb::create().await;
    let pool = db.pool(16).await;
    let mut offset = 0;
    for &slots in &slot_levels {
        let took = enqueue_many(&pool, offset, tasks).await;
        offset += tasks;
        println!(
            "| enqueue (16 producers) | - | {tasks} | {:.2} | {:.0} |",
            took.as_secs_f64(),
            tasks as f64 / took.as_secs_f64()
        );
        let shutdown = CancellationToken::new();
        let app = App::build(config(slots), pool.clone(), shutdown.clone())
            .await
            .unwrap();
        let noop = Arc::new(Noop {
            done: AtomicUsize::new(0),
            target: AtomicUsize::new(tasks),
            reached: Notify::new(),
        });
        let worker = app.worker(Arc::clone(&noop) as Arc<dyn Pipeline>);
        let t0 = Instant::now();
        let running = tokio::spawn(worker.run(shutdown.clone()));
        noop.reached.notified().await;
        let took = t0.elapsed();
        shutdown.cancel();
        running.await.unwrap();
        println!(
            "| drain | {slots} | {tasks} | {:.2} | {:.0} |",
            took.as_secs_f64(),
            tasks as f64 / took.as_secs_f64()
        );
    }

    // Latency: one task at a time arriving at an idle worker (woken by NOTIFY).
    let shutdown = CancellationToken::new();
    let app = App::build(config(1), pool.clone(), shutdown.clone())
        .await
        .unwrap();
    let noop = Arc::new(Noop {
        done: AtomicUsize::new(0),
        target: AtomicUsize::new(0),
        reached: Notify::new(),
    });
    let worker = app.worker(Arc::clone(&noop) as Arc<dyn Pipeline>);
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let mut waits = Vec::with_capacity(samples);
    for i in 0..samples {
        noop.target.store(i + 1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await; // let the worker go idle
        let id = match queue::enqueue(&pool, &new_task(offset + i)).await.unwrap() {
            queue::Enqueued::Created(id) => id,
            queue::Enqueued::Duplicate(_) => unreachable!(),
        };
        app.state.hub.announce_queued();
        noop.reached.notified().await;
        // Both timestamps come from Postgres: commit of the INSERT to start of the claim.
        let secs: f64 = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM started_at - created_at)::float8 FROM tasks WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        waits.push(Duration::from_secs_f64(secs.max(0.0)));
    }
    shutdown.cancel();
    running.await.unwrap();
    println!();
    println!(
        "enqueue-to-claim at an idle worker ({samples} single tasks): p50 {}, p99 {}",
        ms(percentile(&mut waits, 50.0)),
        ms(percentile(&mut waits, 99.0))
    );
    pool.close().await;
    db.drop_db().await;
}
