//! GitLab benchmark over loopback against the fake GitLab of the tests: latency from a
//! `/maur fix` note webhook to the 👀 award and to the first progress note, p50/p99 over
//! BENCH_SAMPLES=200 notes on distinct issues, no worker running (the reporter answers).
//!
//! Run: `cargo bench --bench gitlab`.

mod common;
#[path = "../tests/support/fakegitlab.rs"]
mod fakegitlab;
#[path = "../tests/support/git.rs"]
mod git;
#[path = "../tests/support/githttp.rs"]
mod githttp;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{BenchDb, machine, ms, percentile};
use maur::app::App;
use maur::config::Config;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "bench-gitlab-secret";

fn note(iid: u64) -> Value {
    json!({
        "object_kind": "note",
        "user": {"id": 7, "username": "ann"},
        "project": {"id": 5, "path_with_namespace": "acme/api"},
        "object_attributes": {"id": 100_000 + iid, "note": "/maur fix", "noteable_type": "Issue", "action": "create"},
        "issue": {"iid": iid, "title": "Pager shows page 2 twice", "description": "page() is off by one"},
    })
}

#[tokio::main]
async fn main() {
    let samples: usize = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let db = BenchDb::create().await;
    let pool = db.pool(16).await;
    let token = format!("{}-{}", "glpat", "bench0123456789abcdef");
    let fake = fakegitlab::FakeGitLab::start(git::temp("bench-gitlab"), &token).await;
    fake.with(|s| {
        s.members.insert(7, 40);
    });
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

    let mut to_award = Vec::new();
    let mut to_note = Vec::new();
    for i in 0..samples {
        let iid = 1000 + i as u64;
        let t0 = Instant::now();
        let status = client
            .post(format!("{base}/webhooks/gitlab"))
            .header("x-gitlab-event", "Note Hook")
            .header("x-gitlab-token", SECRET)
            .header("x-gitlab-event-uuid", uuid::Uuid::new_v4().to_string())
            .json(&note(iid))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202);
        let key = format!("issues/{iid}/notes/{}", 100_000 + iid);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (awarded, noted) = fake.with(|s| {
                (
                    s.awarded_at.get(&key).copied(),
                    s.notes.iter().find(|n| n.iid == iid).map(|n| n.created),
                )
            });
            if let (Some(a), Some(n)) = (awarded, noted) {
                to_award.push(a - t0);
                to_note.push(n - t0);
                break;
            }
            assert!(Instant::now() < deadline, "no feedback for issue {iid}");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    println!("machine: {}", machine());
    println!("GitLab note → feedback over loopback, {samples} notes on distinct issues:");
    println!(
        "  👀 award:             p50 {}  p99 {}",
        ms(percentile(&mut to_award, 50.0)),
        ms(percentile(&mut to_award, 99.0))
    );
    println!(
        "  first progress note: p50 {}  p99 {}",
        ms(percentile(&mut to_note, 50.0)),
        ms(percentile(&mut to_note, 99.0))
    );
    shutdown.cancel();
    drop(pool);
    db.drop_db().await;
}
