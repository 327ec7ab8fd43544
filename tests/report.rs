//! The reporter: one progress message per task, created once and then edited, coalesced,
//! and never published twice at once by competing worker processes.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use maur::repo::RepoRef;
use maur::report::{ReportSink, Reporter, ReporterConfig, SinkError, Sinks};
use maur::store::tasks::{self as queue, Enqueued};
use maur::task::{NewTask, Source, Task};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::TestApp;
use support::pipelines::Succeeds;

/// Records what a forge would see: messages created and edits to them.
#[derive(Default, Clone)]
struct Recorder {
    /// (message id, body) per publish, in order.
    publishes: Arc<Mutex<Vec<(u64, String)>>>,
    created: Arc<Mutex<u64>>,
    fail_next: Arc<Mutex<bool>>,
}

#[async_trait]
impl ReportSink for Recorder {
    async fn publish(
        &self,
        _task: &Task,
        _events: &[maur::task::TaskEvent],
        _report_to: &Value,
        state: &mut Value,
        body: &str,
    ) -> Result<(), SinkError> {
        if std::mem::take(&mut *self.fail_next.lock().unwrap()) {
            return Err(SinkError::Retry("forge answered 502".into()));
        }
        // Slow like a real forge, so competing reporters overlap.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let id = match state.get("message_id").and_then(Value::as_u64) {
            Some(id) => id,
            None => {
                let mut created = self.created.lock().unwrap();
                *created += 1;
                *created
            }
        };
        self.publishes.lock().unwrap().push((id, body.to_owned()));
        *state = json!({"message_id": id});
        Ok(())
    }
}

impl Recorder {
    fn bodies(&self) -> Vec<(u64, String)> {
        self.publishes.lock().unwrap().clone()
    }
}

async fn enqueue_reported(pool: &PgPool) -> uuid::Uuid {
    let task = NewTask {
        source: Source::Github,
        dedup_key: None,
        title: "Fix pagination".into(),
        prompt: "fix it".into(),
        repo_given: "acme/api".into(),
        repo: RepoRef::parse("acme/api").unwrap(),
        repo_branch: None,
        context: json!({}),
        max_attempts: 3,
        report_to: Some(json!({"kind": "recorder", "issue": 7})),
    };
    match queue::enqueue(pool, &task).await.unwrap() {
        Enqueued::Created(id) => id,
        Enqueued::Duplicate(_) => unreachable!(),
    }
}

fn reporter(t: &TestApp, sink: &Recorder, min_interval: Duration) -> Arc<Reporter> {
    let mut sinks = Sinks::new();
    sinks.insert("recorder".into(), Arc::new(sink.clone()));
    Reporter::new(
        t.pool.clone(),
        Arc::clone(&t.app.state.hub),
        sinks,
        ReporterConfig {
            min_interval,
            poll_interval: Duration::from_millis(200),
            lease: Duration::from_secs(30),
            ..ReporterConfig::default()
        },
    )
}

async fn wait_for_body(sink: &Recorder, needle: &str) -> Vec<(u64, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let bodies = sink.bodies();
        if bodies.last().is_some_and(|(_, b)| b.contains(needle)) {
            return bodies;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never published {needle:?}: {bodies:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn one_message_is_created_then_edited_to_the_final_state(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let sink = Recorder::default();
    let id = enqueue_reported(&t.pool).await;
    tokio::spawn(reporter(&t, &sink, Duration::from_millis(50)).run(t.shutdown.clone()));
    let first = wait_for_body(&sink, "Queued").await;
    assert!(
        first[0]
            .1
            .starts_with(&format!("<!-- maur:progress:{id} -->"))
    );

    t.worker(Succeeds).run_one().await.unwrap().unwrap();
    let bodies = wait_for_body(&sink, "Opened a pull request").await;
    assert!(
        bodies.iter().all(|(msg, _)| *msg == 1),
        "one message, edited: {bodies:#?}"
    );
    assert_eq!(*sink.created.lock().unwrap(), 1);
    let last = &bodies.last().unwrap().1;
    assert!(
        last.contains("https://forge.example/acme/api/pull/1"),
        "{last}"
    );
    assert!(last.contains("- [x] clone"), "{last}");
    assert!(last.contains("120 tokens in, 30 out"), "{last}");

    let state: (Value, i32, i32) = sqlx::query_as(
        "SELECT r.state, r.reported_seq, t.last_seq FROM task_reports r JOIN tasks t ON t.id = r.task_id
         WHERE r.task_id = $1",
    )
            .bind(id)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(state.0, json!({"message_id": 1}));
    assert_eq!(state.1, state.2, "everything reported");
    let done: bool = sqlx::query_scalar("SELECT done FROM task_reports WHERE task_id = $1")
        .bind(id)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert!(
        done,
        "a finished, fully reported task leaves the reporter's queue"
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_burst_of_events_becomes_few_edits(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let sink = Recorder::default();
    enqueue_reported(&t.pool).await;
    tokio::spawn(reporter(&t, &sink, Duration::from_secs(2)).run(t.shutdown.clone()));
    wait_for_body(&sink, "Queued").await;
    // Five events within milliseconds.
    t.worker(Succeeds).run_one().await.unwrap().unwrap();
    let bodies = wait_for_body(&sink, "Opened a pull request").await;
    assert_eq!(
        bodies.len(),
        2,
        "the queued message, then one edit: {bodies:#?}"
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn the_final_state_does_not_wait_for_the_interval(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let sink = Recorder::default();
    enqueue_reported(&t.pool).await;
    // Ten minutes between edits: only the ending itself can bring the final text sooner.
    tokio::spawn(reporter(&t, &sink, Duration::from_secs(600)).run(t.shutdown.clone()));
    wait_for_body(&sink, "Queued").await;
    t.worker(Succeeds).run_one().await.unwrap().unwrap();
    let bodies = wait_for_body(&sink, "Opened a pull request").await;
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn competing_reporters_never_create_two_messages(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let sink = Recorder::default();
    let ids: Vec<_> = futures::future::join_all((0..5).map(|_| enqueue_reported(&t.pool))).await;
    for _ in 0..3 {
        tokio::spawn(reporter(&t, &sink, Duration::from_millis(10)).run(t.shutdown.clone()));
    }
    let worker = t.worker(Succeeds);
    while worker.run_one().await.unwrap().is_some() {}
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = sink
            .bodies()
            .iter()
            .filter(|(_, b)| b.contains("Opened a pull request"))
            .map(|(m, _)| *m)
            .collect::<std::collections::HashSet<_>>();
        if done.len() == ids.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all reported: {:#?}",
            sink.bodies()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*sink.created.lock().unwrap(), 5, "one message per task");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_failed_publish_is_retried(pool: PgPool) {
    let t = TestApp::spawn(pool).await;
    let sink = Recorder::default();
    *sink.fail_next.lock().unwrap() = true;
    let id = enqueue_reported(&t.pool).await;
    let r = reporter(&t, &sink, Duration::from_millis(10));
    assert!(r.report(id).await, "attempted");
    assert!(sink.bodies().is_empty());
    // Held back for a while, then published.
    assert!(!r.report(id).await, "not before the retry delay");
    sqlx::query("UPDATE task_reports SET locked_until = now() WHERE task_id = $1")
        .bind(id)
        .execute(&t.pool)
        .await
        .unwrap();
    assert!(r.report(id).await);
    assert_eq!(sink.bodies().len(), 1);
}
