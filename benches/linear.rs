//! Linear benchmark over loopback against the fake Linear of the tests: latency from a
//! signed `AgentSessionEvent` (`created`) to the session's first activity (the `thought`),
//! p50/p99 over BENCH_SAMPLES=200 sessions on distinct issues, no worker running.
//!
//! Run: `cargo bench --bench linear`.

mod common;
#[path = "../tests/support/fakelinear.rs"]
mod fakelinear;
#[path = "../tests/support/git.rs"]
mod git;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{BenchDb, machine, ms, percentile};
use maur::app::App;
use maur::config::Config;
use maur::linear::signature::sign;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "bench-linear-secret";

#[tokio::main]
async fn main() {
    let samples: usize = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let db = BenchDb::create().await;
    let pool = db.pool(16).await;
    let key = format!("{}_{}_{}", "lin", "api", "bench0123456789abcdefghij");
    let fake = fakelinear::FakeLinear::start(&key).await;
    let repo = git::source_repo();
    let mut vars: HashMap<String, String> = fake.vars(SECRET).into_iter().collect();
    vars.extend([
        ("DATABASE_URL".to_owned(), db.url.clone()),
        (
            "MAUR_BEARER_TOKEN".to_owned(),
            "bench-token-0123456789abcdef".to_owned(),
        ),
        (
            "MAUR_DATA_DIR".to_owned(),
            git::temp("bench-data").to_str().unwrap().to_owned(),
        ),
        ("MAUR_POLL_INTERVAL".to_owned(), "1h".to_owned()),
        // Sessions name no repository; the team's default is a local one.
        (
            "MAUR_LINEAR_REPOS".to_owned(),
            format!("ENG={}", repo.display()),
        ),
    ]);
    let config = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let shutdown = CancellationToken::new();
    let app = App::build(config, pool.clone(), shutdown.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = App {
        state: app.state.clone(),
    };
    tokio::spawn(async move { served.serve(listener).await });
    tokio::spawn(app.reporter(app.sinks()).run(shutdown.clone()));
    let client = reqwest::Client::new();

    let mut to_thought = Vec::new();
    for i in 0..samples {
        let session = format!("session-{i}");
        let payload = json!({
            "type": "AgentSessionEvent", "action": "created",
            "webhookTimestamp": chrono::Utc::now().timestamp_millis(),
            "agentSession": {"id": session, "issue": {"id": format!("issue-{i}"), "identifier": format!("ENG-{i}"),
                "title": "Pager shows page 2 twice", "team": {"key": "ENG"}}},
            "promptContext": "Fix the pager",
        });
        let body = serde_json::to_vec(&payload).unwrap();
        let t0 = Instant::now();
        let status = client
            .post(format!("{base}/webhooks/linear"))
            .header("content-type", "application/json")
            .header("linear-signature", sign(SECRET, &body))
            .header("linear-delivery", uuid::Uuid::new_v4().to_string())
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let first = fake.with(|s| {
                s.activities
                    .iter()
                    .find(|(id, _, _)| *id == session)
                    .map(|(_, _, at)| *at)
            });
            if let Some(at) = first {
                to_thought.push(at - t0);
                break;
            }
            assert!(Instant::now() < deadline, "no activity for {session}");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    println!("machine: {}", machine());
    println!("Linear AgentSessionEvent → first activity over loopback, {samples} sessions:");
    println!(
        "  thought: p50 {}  p99 {}",
        ms(percentile(&mut to_thought, 50.0)),
        ms(percentile(&mut to_thought, 99.0))
    );
    shutdown.cancel();
    drop(pool);
    db.drop_db().await;
}
