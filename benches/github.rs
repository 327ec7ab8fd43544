//! GitHub App benchmark, over loopback against the fake GitHub of the tests:
//! 1. latency from a signed `issue_comment` webhook to the 👀 reaction and to the first
//!    progress comment (p50/p99 over BENCH_SAMPLES=200 comments on distinct issues);
//! 2. GitHub API calls for a typical task (webhook, worker and reporter together), for the
//!    first task of a process (cold caches) and the next one (warm).
//!
//! Run: `cargo bench --bench github`.

mod common;
#[path = "../tests/support/fakegithub.rs"]
mod fakegithub;
#[path = "../tests/support/git.rs"]
mod git;
#[path = "../tests/support/githttp.rs"]
mod githttp;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{BenchDb, machine, ms, percentile};
use fakegithub::FakeGitHub;
use maur::app::App;
use maur::config::Config;
use maur::github::signature::sign;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "bench-webhook-secret";

fn comment(number: u64, body: &str) -> Value {
    json!({
        "action": "created",
        "installation": {"id": fakegithub::INSTALLATION},
        "repository": {"full_name": "acme/api"},
        "sender": {"login": "ann", "id": 31, "type": "User"},
        "issue": {"number": number, "title": "Pager shows page 2 twice", "body": "page() is off by one"},
        "comment": {"id": 100_000 + number, "body": body},
    })
}

async fn deliver(client: &reqwest::Client, base: &str, payload: &Value) -> reqwest::StatusCode {
    let body = serde_json::to_vec(payload).unwrap();
    client
        .post(format!("{base}/webhooks/github"))
        .header("x-github-event", "issue_comment")
        .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
        .header("x-hub-signature-256", sign(SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::main]
async fn main() {
    let samples: usize = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let db = BenchDb::create().await;
    let pool = db.pool(16).await;

    let root = git::temp("bench-gitroot");
    let server = githttp::GitServer::start(root.clone(), "x-access-token", "unused").await;
    server.tokens.lock().unwrap().clear();
    server.publish(&git::source_repo(), "acme/api");
    let fake = FakeGitHub::start(&server.base, server.tokens.clone()).await;
    fake.with(|s| {
        s.permissions.insert("ann".into(), "admin".into());
    });
    let data = git::temp("bench-data");
    let mut vars: HashMap<String, String> = fake.vars(SECRET).into_iter().collect();
    vars.extend([
        ("DATABASE_URL".to_owned(), db.url.clone()),
        (
            "MAUR_BEARER_TOKEN".to_owned(),
            "bench-token-0123456789abcdef".to_owned(),
        ),
        ("MAUR_AGENT".to_owned(), "command".to_owned()),
        (
            "MAUR_AGENT_COMMAND".to_owned(),
            "sed -i 's/n + 1/n/' src/lib.rs && echo 'Fixed page()'".to_owned(),
        ),
        (
            "MAUR_DATA_DIR".to_owned(),
            data.to_str().unwrap().to_owned(),
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

    // 2. Calls per typical task: cold, then warm.
    println!("machine: {}", machine());
    println!("\nGitHub API calls per task (webhook + worker + reporter, agent edits one file):");
    for (label, number) in [("cold process", 1u64), ("warm process", 2)] {
        fake.with(|s| s.calls.clear());
        assert_eq!(
            deliver(&client, &base, &comment(number, "/maur fix")).await,
            202
        );
        let pipeline = app.pipeline().unwrap();
        app.worker(pipeline)
            .run_one()
            .await
            .unwrap()
            .expect("claimed");
        fake.wait_until("the final comment", |s| {
            s.comments
                .iter()
                .any(|c| c.number == number && c.body().contains("Opened a pull request"))
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let calls = fake.with(|s| s.calls.clone());
        let mut kinds: HashMap<String, usize> = HashMap::new();
        for c in &calls {
            let kind = c
                .split('/')
                .map(|seg| {
                    if seg.chars().all(|ch| ch.is_ascii_digit()) || seg == "ann" {
                        "{n}"
                    } else {
                        seg
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            *kinds.entry(kind).or_default() += 1;
        }
        let mut kinds: Vec<_> = kinds.into_iter().collect();
        kinds.sort();
        println!("  {label}: {} calls", calls.len());
        for (k, n) in kinds {
            println!("    {n} × {k}");
        }
    }

    // 1. Latency to the reaction and to the first progress comment.
    let mut to_reaction = Vec::new();
    let mut to_comment = Vec::new();
    for i in 0..samples {
        let number = 1000 + i as u64;
        let t0 = Instant::now();
        assert_eq!(
            deliver(&client, &base, &comment(number, "/maur fix")).await,
            202
        );
        let key = format!("issues/comments/{}", 100_000 + number);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (reacted, commented) = fake.with(|s| {
                (
                    s.reacted_at.get(&key).copied(),
                    s.comments
                        .iter()
                        .find(|c| c.number == number)
                        .map(|c| c.created),
                )
            });
            if let (Some(r), Some(c)) = (reacted, commented) {
                to_reaction.push(r - t0);
                to_comment.push(c - t0);
                break;
            }
            assert!(Instant::now() < deadline, "no feedback for issue {number}");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    println!("\nwebhook → feedback over loopback, {samples} comments on distinct issues:");
    println!(
        "  👀 reaction:            p50 {}  p99 {}",
        ms(percentile(&mut to_reaction, 50.0)),
        ms(percentile(&mut to_reaction, 99.0))
    );
    println!(
        "  first progress comment: p50 {}  p99 {}",
        ms(percentile(&mut to_comment, 50.0)),
        ms(percentile(&mut to_comment, 99.0))
    );
    shutdown.cancel();
    drop(pool);
    db.drop_db().await;
}
