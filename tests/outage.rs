//! The database goes away and comes back: maur answers 503 with a JSON error meanwhile,
//! stores nothing half-written, and serves again without a restart.

mod support;

use std::time::Duration;

use maur::store::db;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use support::TestApp;
use support::proxy::Proxy;

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_stopped_database_is_a_503_and_service_resumes(
    _pool_opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let upstream = tokio::net::lookup_host((conn.get_host(), conn.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let through_proxy = conn
        .clone()
        .host(&proxy.addr.ip().to_string())
        .port(proxy.addr.port());
    let pool = db::connect_with(through_proxy, 4, "test").await.unwrap();
    let t = TestApp::spawn(pool).await;
    let before = t.create_task("before the outage").await;

    proxy.cut();
    let ready = t.client.get(t.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.headers()["retry-after"], "5");
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("database unavailable"),
        "{body}"
    );

    let (status, body) = t
        .post("/tasks", &json!({"prompt": "during", "repo": "a/b"}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("nothing was stored"),
        "{body}"
    );
    let (status, _) = t.get(&format!("/tasks/{before}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Liveness does not depend on the database: an orchestrator must not kill the pod.
    let health = t.client.get(t.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    proxy.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = t.client.get(t.url("/ready")).send().await.unwrap();
        if ready.status() == StatusCode::OK {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = t.create_task("after the outage").await;
    assert_eq!(t.task(&after).await["status"], "queued");

    // Exactly the two accepted tasks exist, each with its one event.
    let direct = PgPoolOptions::new().connect_with(conn).await.unwrap();
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&direct)
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM task_events")
        .fetch_one(&direct)
        .await
        .unwrap();
    assert_eq!((tasks, events), (2, 2));
}
