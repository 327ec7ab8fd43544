//! The queue and the worker: claims, leases, retries, cancellation and shutdown, against
//! real Postgres. Timeouts here are hang guards, never performance assertions.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use maur::store::StoreError;
use maur::store::tasks::{self as queue, Finish};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use support::TestApp;
use support::pipelines::{Blocks, Flaky, Succeeds};
use tokio_util::sync::CancellationToken;

async fn guard<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn an_idle_worker_is_woken_by_notify_not_polling(pool: PgPool) {
    // Polling every hour: only LISTEN/NOTIFY can get this task claimed.
    let t = TestApp::spawn_with(pool, &[("MAUR_POLL_INTERVAL", "1h")]).await;
    let worker = t.worker(Succeeds);
    tokio::spawn(worker.run(t.shutdown.clone()));
    // Let the worker find the queue empty and go to sleep first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = t.create_task("fix it").await;
    let task = t.wait_for_status(&id, "succeeded").await;
    assert_eq!(task["outcome"], "pr_opened");
    assert_eq!(task["branch"], format!("maur/{id}"));
    assert_eq!(task["pr_url"], "https://forge.example/acme/api/pull/1");
    assert_eq!(task["attempts"], 1);
    assert_eq!(task["usage"]["input_tokens"], 120);
    assert_eq!(task["usage"]["output_tokens"], 30);
    assert_eq!(
        TestApp::event_kinds(&task),
        ["queued", "running", "step", "step", "succeeded"]
    );
    let seqs: Vec<i64> = task["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert!(task["locked_by"].is_null());
}

/// A worker that claimed and then vanished: its lease runs out and nobody renews it.
async fn claim_and_die(pool: &PgPool) -> queue::Lease {
    let claimed = queue::claim(pool, "doomed-worker", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("a task to claim");
    sqlx::query("UPDATE tasks SET locked_until = now() - interval '1 second' WHERE id = $1")
        .bind(claimed.task.id)
        .execute(pool)
        .await
        .unwrap();
    claimed.lease
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn an_expired_lease_requeues_then_fails_past_max_attempts(pool: PgPool) {
    let t = TestApp::spawn_with(pool, &[("MAUR_MAX_ATTEMPTS", "3")]).await;
    let id = t.create_task("fix it").await;
    let worker = t.worker(Succeeds);

    for attempt in 1..=2 {
        claim_and_die(&t.pool).await;
        worker.reap().await.unwrap();
        let task = t.task(&id).await;
        assert_eq!(task["status"], "queued", "after attempt {attempt}");
        assert_eq!(task["attempts"], attempt);
        let last = task["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["kind"], "queued");
        assert_eq!(last["data"]["reason"], "worker lost");
    }
    let zombie = claim_and_die(&t.pool).await;
    worker.reap().await.unwrap();
    let task = t.task(&id).await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["attempts"], 3);
    assert!(
        task["error"].as_str().unwrap().starts_with("worker lost"),
        "{task}"
    );

    // The dead worker coming back cannot overwrite the outcome.
    let late = queue::finish(
        &t.pool,
        &zombie,
        &Finish::Failed {
            error: "late".into(),
        },
    )
    .await;
    assert!(matches!(late, Err(StoreError::LeaseLost(_))));
    assert_eq!(t.task(&id).await["error"], task["error"]);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_taken_over_task_fences_out_the_old_worker(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let id = t.create_task("fix it").await;
    let old = claim_and_die(&t.pool).await;
    t.worker(Succeeds).reap().await.unwrap();
    let new = queue::claim(&t.pool, "new-worker", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap()
        .lease;
    assert_eq!(new.attempt, 2);
    assert!(matches!(
        queue::heartbeat(&t.pool, &old, Duration::from_secs(60)).await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(matches!(
        maur::store::events::append(&t.pool, &old, "step", &json!({})).await,
        Err(StoreError::LeaseLost(_))
    ));
    let cancel_requested = queue::heartbeat(&t.pool, &new, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(!cancel_requested);
    assert_eq!(t.task(&id).await["locked_by"], "new-worker");
    let row: (String,) = sqlx::query_as("SELECT locked_by FROM tasks")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(row.0, "new-worker");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn transient_failures_retry_with_backoff_then_give_up(pool: PgPool) {
    let t = TestApp::spawn_with(
        pool,
        &[("MAUR_MAX_ATTEMPTS", "2"), ("MAUR_RETRY_BASE", "10s")],
    )
    .await;
    let id = t.create_task("fix it").await;
    let worker = t.worker(Flaky);
    worker.run_one().await.unwrap().expect("ran");

    let task = t.task(&id).await;
    assert_eq!(task["status"], "queued");
    assert_eq!(task["error"], "forge answered 502");
    let delay: f64 =
        sqlx::query_scalar("SELECT EXTRACT(EPOCH FROM run_after - updated_at)::float8 FROM tasks")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert!(
        (8.0..=12.0).contains(&delay),
        "first retry after 10s ±20%, got {delay}"
    );
    assert!(
        worker.run_one().await.unwrap().is_none(),
        "not claimable before run_after"
    );

    sqlx::query("UPDATE tasks SET run_after = now()")
        .execute(&t.pool)
        .await
        .unwrap();
    worker.run_one().await.unwrap().expect("ran again");
    let task = t.task(&id).await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["attempts"], 2);
    assert_eq!(
        task["error"],
        "forge answered 502 (gave up after 2 attempts)"
    );
    assert_eq!(
        TestApp::event_kinds(&task),
        ["queued", "running", "queued", "running", "failed"]
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn cancelling_a_queued_task_is_immediate(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let id = t.create_task("fix it").await;
    let (status, body) = t.post(&format!("/tasks/{id}/cancel"), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert!(t.worker(Succeeds).run_one().await.unwrap().is_none());
    let task = t.task(&id).await;
    assert_eq!(task["status"], "cancelled");
    assert!(task["finished_at"].is_string());
    assert_eq!(TestApp::event_kinds(&task), ["queued", "cancelled"]);

    let (status, body) = t.post(&format!("/tasks/{id}/cancel"), &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["status"], "cancelled");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn cancelling_a_running_task_stops_its_worker(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let pipeline = Blocks::default();
    tokio::spawn(t.worker(pipeline.clone()).run(t.shutdown.clone()));
    let id = t.create_task("fix it").await;
    guard("the pipeline to start", pipeline.started()).await;

    let (status, body) = t.post(&format!("/tasks/{id}/cancel"), &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["cancel_requested"], true);
    let task = t.wait_for_status(&id, "cancelled").await;
    assert_eq!(pipeline.saw_stop.load(Ordering::SeqCst), 1);
    assert_eq!(
        TestApp::event_kinds(&task),
        ["queued", "running", "step", "cancel_requested", "cancelled"]
    );
    assert_eq!(
        task["events"].as_array().unwrap().last().unwrap()["data"]["reason"],
        "cancelled on request"
    );
    // The slot is free again.
    let next = t.create_task("next").await;
    guard("the next task to start", pipeline.started()).await;
    assert_eq!(t.task(&next).await["status"], "running");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn each_process_runs_at_most_its_concurrency(pool: PgPool) {
    let t = TestApp::spawn_with(pool, &[("MAUR_WORKER_CONCURRENCY", "2")]).await;
    let pipeline = Blocks::default();
    tokio::spawn(t.worker(pipeline.clone()).run(t.shutdown.clone()));
    for i in 0..3 {
        t.create_task(&format!("task {i}")).await;
    }
    guard("two tasks to start", async {
        pipeline.started().await;
        pipeline.started().await;
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        t.count("SELECT count(*) FROM tasks WHERE status = 'running'")
            .await,
        2
    );
    assert_eq!(
        t.count("SELECT count(*) FROM tasks WHERE status = 'queued'")
            .await,
        1
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn shutdown_hands_unfinished_tasks_back_after_the_grace_period(pool: PgPool) {
    let t = TestApp::spawn_with(pool, &[("MAUR_SHUTDOWN_GRACE", "200ms")]).await;
    let pipeline = Blocks::default();
    let stop = CancellationToken::new();
    let running = tokio::spawn(t.worker(pipeline.clone()).run(stop.clone()));
    let id = t.create_task("fix it").await;
    guard("the pipeline to start", pipeline.started()).await;

    stop.cancel();
    guard("the worker to stop", running).await.unwrap();
    let task = t.task(&id).await;
    assert_eq!(task["status"], "queued");
    assert_eq!(
        task["attempts"], 0,
        "a graceful hand-back does not spend an attempt"
    );
    let last = task["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["data"]["reason"], "worker shutting down");

    // Another worker takes it over.
    t.worker(Succeeds)
        .run_one()
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(t.task(&id).await["status"], "succeeded");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn shutdown_lets_tasks_finish_within_the_grace_period(pool: PgPool) {
    let t = TestApp::spawn_with(pool, &[("MAUR_SHUTDOWN_GRACE", "60s")]).await;
    let pipeline = support::pipelines::Gate::default();
    let stop = CancellationToken::new();
    let running = tokio::spawn(t.worker(pipeline.clone()).run(stop.clone()));
    let id = t.create_task("fix it").await;
    guard("the pipeline to start", pipeline.started.notified()).await;
    stop.cancel();
    // New work is not claimed during the drain.
    let later = t.create_task("later").await;
    pipeline.release.notify_one();
    guard("the worker to stop", running).await.unwrap();
    assert_eq!(t.task(&id).await["status"], "succeeded");
    assert_eq!(t.task(&later).await["status"], "queued");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_live_worker_keeps_renewing_its_lease(pool: PgPool) {
    let t = TestApp::spawn_with(pool, &[("MAUR_LEASE", "2s")]).await;
    let pipeline = Blocks::default();
    tokio::spawn(t.worker(pipeline.clone()).run(t.shutdown.clone()));
    let id = t.create_task("fix it").await;
    guard("the pipeline to start", pipeline.started()).await;
    // Three lease lengths: without heartbeats the reaper would have taken it back.
    tokio::time::sleep(Duration::from_secs(6)).await;
    t.worker(Succeeds).reap().await.unwrap();
    let task = t.task(&id).await;
    assert_eq!(task["status"], "running");
    assert_eq!(task["attempts"], 1);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_requested_cancel_outlives_a_lost_worker_a_shutdown_and_a_retry(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    // Lost worker: the reaper must not run it again.
    let lost = t.create_task("one").await;
    let claimed = queue::claim(&t.pool, "w", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    t.post(&format!("/tasks/{lost}/cancel"), &json!({})).await;
    sqlx::query("UPDATE tasks SET locked_until = now() - interval '1 second' WHERE id = $1")
        .bind(claimed.task.id)
        .execute(&t.pool)
        .await
        .unwrap();
    t.worker(Succeeds).reap().await.unwrap();
    assert_eq!(t.task(&lost).await["status"], "cancelled");

    // Shutdown hand-back and transient retry alike.
    for step in ["release", "retry"] {
        let id = t.create_task(step).await;
        let claimed = queue::claim(&t.pool, "w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        t.post(&format!("/tasks/{id}/cancel"), &json!({})).await;
        match step {
            "release" => queue::release(&t.pool, &claimed.lease, "worker shutting down")
                .await
                .unwrap(),
            _ => {
                let status = queue::retry_later(&t.pool, &claimed.lease, "502", Duration::ZERO)
                    .await
                    .unwrap();
                assert_eq!(status.as_str(), "cancelled");
            }
        }
        let task = t.task(&id).await;
        assert_eq!(task["status"], "cancelled", "{step}: {task}");
        assert!(task["finished_at"].is_string());
    }
    assert!(
        t.worker(Succeeds).run_one().await.unwrap().is_none(),
        "nothing left to run"
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_panicking_pipeline_fails_its_task_and_the_worker_goes_on(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    tokio::spawn(t.worker(support::pipelines::Panics).run(t.shutdown.clone()));
    let first = t.create_task("first").await;
    let task = t.wait_for_status(&first, "failed").await;
    assert!(
        task["error"].as_str().unwrap().contains("internal error"),
        "{task}"
    );
    assert!(task["locked_by"].is_null());
    let second = t.create_task("second").await;
    t.wait_for_status(&second, "failed").await;
}
