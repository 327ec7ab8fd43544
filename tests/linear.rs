//! Linear end to end: signed, fresh webhooks through the real router, a fake Linear that
//! demands the key, the fake GitLab as the forge, a real worker and reporter.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use maur::linear::signature::sign;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::TestApp;
use support::fakegitlab::FakeGitLab;
use support::fakelinear::FakeLinear;
use support::git::{git, source_repo, temp};

const SECRET: &str = "linear-signing-secret";
const FIX: &str = "sed -i 's/n + 1/n/' src/lib.rs && echo 'Fixed the off-by-one in page()'";

struct Ln {
    t: TestApp,
    linear: FakeLinear,
    gitlab: FakeGitLab,
    bare: PathBuf,
    data: PathBuf,
}

fn key() -> String {
    format!("{}_{}_{}", "lin", "api", "fake0123456789abcdefghij")
}

async fn ln_app(pool: PgPool, script: &str) -> Ln {
    let root = temp("gitlab-root");
    let gitlab = FakeGitLab::start(
        root.clone(),
        &format!("{}-{}", "glpat", "fake0123456789abcdef"),
    )
    .await;
    gitlab.git.publish(&source_repo(), "acme/api");
    let linear = FakeLinear::start(&key()).await;
    let data = temp("data");
    let mut vars = gitlab.vars("gitlab-hook-secret");
    vars.extend(linear.vars(SECRET));
    vars.extend([
        ("MAUR_AGENT".into(), "command".into()),
        ("MAUR_AGENT_COMMAND".into(), script.into()),
        ("MAUR_DATA_DIR".into(), data.to_str().unwrap().into()),
        ("MAUR_PUBLIC_URL".into(), "https://maur.acme.dev".into()),
    ]);
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let t = TestApp::spawn_with(pool, &refs).await;
    let config = maur::report::ReporterConfig {
        retry_delay: Duration::from_millis(200),
        ..t.app.reporter_config()
    };
    tokio::spawn(
        t.app
            .reporter_with(t.app.sinks(), config)
            .run(t.shutdown.clone()),
    );
    Ln {
        bare: root.join("acme/api.git"),
        t,
        linear,
        gitlab,
        data,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Ln {
    fn issue(&self, action: &str, before: Option<Vec<&str>>, description: &str) -> Value {
        let mut e = json!({
            "action": action, "type": "Issue", "webhookTimestamp": now_ms(),
            "data": {"id": "issue-uuid-7", "identifier": "ENG-7", "title": "Pager shows page 2 twice",
                     "description": description, "url": "https://linear.app/acme/issue/ENG-7",
                     "team": {"key": "ENG"}, "labels": [{"id": "lab-maur", "name": "maur"}]},
        });
        if let Some(before) = before {
            e["updatedFrom"] = json!({"labelIds": before});
        }
        e
    }

    fn described(&self) -> String {
        format!("page() is off by one; code in {}/acme/api", self.gitlab.url)
    }

    async fn deliver(&self, payload: &Value, delivery: &str) -> (StatusCode, Value) {
        let body = serde_json::to_vec(payload).unwrap();
        self.send(&body, Some(sign(SECRET, &body)), delivery).await
    }

    async fn send(
        &self,
        body: &[u8],
        signature: Option<String>,
        delivery: &str,
    ) -> (StatusCode, Value) {
        let mut req = self
            .t
            .client
            .post(self.t.url("/webhooks/linear"))
            .header("content-type", "application/json")
            .header("linear-delivery", delivery)
            .header("linear-event", "Issue")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("linear-signature", sig);
        }
        support::read(req.send().await.unwrap()).await
    }
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_labelled_issue_becomes_a_merge_request_linked_back(pool: PgPool) {
    let ln = ln_app(pool, FIX).await;
    let payload = ln.issue("update", Some(vec!["lab-bug"]), &ln.described());
    let (s, b) = ln.deliver(&payload, "d-1").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["task_id"].as_str().unwrap().to_owned();
    ln.linear
        .wait_until("a progress comment", |s| {
            s.comments.iter().any(|c| c.body().contains("Queued"))
        })
        .await;
    let pipeline = ln.t.app.pipeline().unwrap();
    ln.t.app.worker(pipeline).run_one().await.unwrap().unwrap();
    let task = ln.t.wait_for_status(&id, "succeeded").await;
    assert_eq!(task["outcome"], "pr_opened", "{task:#}");
    ln.linear
        .wait_until("the link attached", |s| !s.attachments.is_empty())
        .await;
    let (comments, attachments) = ln
        .linear
        .with(|s| (s.comments.clone(), s.attachments.clone()));
    assert_eq!(comments.len(), 1, "one comment, edited: {comments:#?}");
    assert!(comments[0].bodies.len() >= 2);
    assert!(
        comments[0].body().contains("Opened a merge request"),
        "{}",
        comments[0].body()
    );
    assert_eq!(attachments[0].0, "issue-uuid-7");
    assert_eq!(
        attachments[0].1,
        "https://gitlab.example/acme/api/-/merge_requests/1"
    );
    let mr = ln.gitlab.with(|s| s.mrs[0].clone());
    assert!(
        mr.description.contains("Linear: ENG-7"),
        "{}",
        mr.description
    );
    assert_eq!(
        git(&ln.bare, &["show", &format!("maur/{id}:src/lib.rs")]),
        "pub fn page(n: usize) -> usize { n }"
    );
    assert_eq!(ln.linear.with(|s| s.unauthorized), 0);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn unsigned_wrongly_signed_stale_and_malformed_deliveries_are_refused(pool: PgPool) {
    let ln = ln_app(pool, FIX).await;
    let payload = ln.issue("create", None, &ln.described());
    let body = serde_json::to_vec(&payload).unwrap();
    let (s, b) = ln.send(&body, None, "x1").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        b["error"].as_str().unwrap().contains("Linear-Signature"),
        "{b}"
    );
    let (s, _) = ln.send(&body, Some(sign("other", &body)), "x2").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let mut stale = payload.clone();
    stale["webhookTimestamp"] = json!(now_ms() - 5 * 60 * 1000);
    let (s, b) = ln.deliver(&stale, "x3").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        b["error"].as_str().unwrap().contains("webhookTimestamp"),
        "{b}"
    );
    let bad = b"{nope".to_vec();
    let (s, _) = ln.send(&bad, Some(sign(SECRET, &bad)), "x4").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let big = vec![b' '; 6 * 1024 * 1024];
    let (s, _) = ln.send(&big, Some(sign(SECRET, &big)), "x5").await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, b) = ln
        .deliver(
            &json!({"type": "Project", "action": "create", "webhookTimestamp": now_ms()}),
            "x6",
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].is_string());
    assert_eq!(ln.t.count("SELECT count(*) FROM tasks").await, 0);
    assert!(ln.linear.with(|s| s.comments.is_empty()));
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn redelivery_a_label_already_there_and_a_second_label_create_nothing_new(pool: PgPool) {
    let ln = ln_app(pool, FIX).await;
    let payload = ln.issue("create", None, &ln.described());
    let (s1, b1) = ln.deliver(&payload, "same").await;
    assert_eq!(s1, StatusCode::ACCEPTED, "{b1}");
    let (s2, b2) = ln.deliver(&payload, "same").await;
    assert_eq!(s2, StatusCode::OK);
    assert_eq!(b2["task_id"], b1["task_id"]);
    let (s, b) = ln
        .deliver(
            &ln.issue("update", Some(vec!["lab-maur"]), "edited"),
            "edit",
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].is_string(), "{b}");
    // Removed and added again while the first task is active: nothing new, and it says so.
    let (s, b) = ln
        .deliver(&ln.issue("update", Some(vec![]), &ln.described()), "again")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["task_id"], b1["task_id"]);
    ln.linear
        .wait_until("a note that it is already working", |s| {
            s.comments
                .iter()
                .any(|c| c.body().contains("already working"))
        })
        .await;
    assert_eq!(ln.t.count("SELECT count(*) FROM tasks").await, 1);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn without_a_repository_the_issue_is_told_how_to_name_one(pool: PgPool) {
    let ln = ln_app(pool, FIX).await;
    let (s, b) = ln
        .deliver(&ln.issue("create", None, "no link here"), "n1")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let comments = ln.linear.with(|s| s.comments.clone());
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].body().contains("repo: owner/name"),
        "{}",
        comments[0].body()
    );
    assert_eq!(ln.t.count("SELECT count(*) FROM tasks").await, 0);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn the_linear_key_appears_nowhere(pool: PgPool) {
    let (writer, logs) = support::LogCapture::new();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(writer)
            .with_max_level(tracing::Level::DEBUG)
            .finish(),
    );
    let ln = ln_app(pool, &format!("env > agent-env.txt; {FIX}")).await;
    let (_, b) = ln
        .deliver(&ln.issue("create", None, &ln.described()), "k1")
        .await;
    let id = b["task_id"].as_str().unwrap().to_owned();
    let pipeline = ln.t.app.pipeline().unwrap();
    ln.t.app.worker(pipeline).run_one().await.unwrap().unwrap();
    let task = ln.t.wait_for_status(&id, "succeeded").await;
    ln.linear
        .wait_until("the link attached", |s| !s.attachments.is_empty())
        .await;
    let key = key();
    let mut places = vec![
        ("the task".to_owned(), task.to_string()),
        (
            "the agent's environment".to_owned(),
            git(&ln.bare, &["show", &format!("maur/{id}:agent-env.txt")]),
        ),
        ("the logs".to_owned(), logs.text()),
    ];
    assert!(places[1].1.contains("PATH="));
    places.extend(
        support::table_dumps(
            &ln.t.pool,
            &["tasks", "task_events", "task_reports", "webhook_deliveries"],
        )
        .await,
    );
    for c in ln.linear.with(|s| s.comments.clone()) {
        places.push((format!("comment {}", c.id), c.bodies.join("\n")));
    }
    let _ = &ln.data;
    for (place, text) in &places {
        assert!(!text.contains(&key), "the Linear key is in {place}");
    }
}

impl Ln {
    fn session(&self, action: &str, message: Option<&str>) -> Value {
        let mut e = json!({
            "type": "AgentSessionEvent", "action": action, "webhookTimestamp": now_ms(),
            "agentSession": {"id": "session-1", "issue": {"id": "issue-uuid-9", "identifier": "ENG-9",
                "title": "Pager shows page 2 twice", "description": "page() is off by one", "team": {"key": "ENG"}}},
            "promptContext": format!("<issue identifier=\"ENG-9\">Pager shows page 2 twice</issue>\nCode: {}/acme/api", self.gitlab.url),
        });
        if let Some(m) = message {
            e["agentActivity"] = json!({"content": {"type": "prompt", "body": m}});
        }
        e
    }

    fn activities(&self) -> Vec<Value> {
        self.linear
            .with(|s| s.activities.iter().map(|(_, c, _)| c.clone()).collect())
    }
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn an_agent_session_is_acknowledged_before_any_worker_and_answered_with_the_link(
    pool: PgPool,
) {
    let ln = ln_app(
        pool,
        "echo \"line $(date +%s%N)\" >> NOTES.md && echo 'Noted'",
    )
    .await;
    let (s, b) = ln.deliver(&ln.session("created", None), "s1").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["task_id"].as_str().unwrap().to_owned();
    // No worker runs yet (its only slot is busy, say): the thought comes from the reporter.
    ln.linear
        .wait_until("a thought", |s| {
            s.activities.iter().any(|(_, c, _)| c["type"] == "thought")
        })
        .await;
    assert_eq!(ln.t.task(&id).await["status"], "queued");
    let pipeline = ln.t.app.pipeline().unwrap();
    ln.t.app.worker(pipeline).run_one().await.unwrap().unwrap();
    ln.t.wait_for_status(&id, "succeeded").await;
    ln.linear
        .wait_until("a response", |s| {
            s.activities.iter().any(|(_, c, _)| c["type"] == "response")
        })
        .await;
    let acts = ln.activities();
    let kinds: Vec<&str> = acts.iter().map(|a| a["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"thought"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"response"), "{kinds:?}");
    assert!(
        kinds.iter().filter(|k| **k == "action").count() >= 3,
        "a step each: {acts:#?}"
    );
    let response = acts.last().unwrap()["body"].as_str().unwrap().to_owned();
    assert!(
        response.contains("https://gitlab.example/acme/api/-/merge_requests/1"),
        "{response}"
    );
    assert!(
        ln.linear.with(|s| s.comments.is_empty()),
        "sessions answer in activities, not comments"
    );
    assert_eq!(
        ln.linear.with(|s| s.session_urls.clone()),
        vec![(
            "session-1".to_owned(),
            format!("https://maur.acme.dev/tasks/{id}")
        )],
        "the session links to the task"
    );

    // A follow-up in the session continues the same branch.
    let (s, b) = ln
        .deliver(
            &ln.session("prompted", Some("also keep the doc comment")),
            "s2",
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let second = b["task_id"].as_str().unwrap().to_owned();
    let pipeline = ln.t.app.pipeline().unwrap();
    ln.t.app.worker(pipeline).run_one().await.unwrap().unwrap();
    let task = ln.t.wait_for_status(&second, "succeeded").await;
    assert_eq!(task["branch"], format!("maur/{id}"), "{task:#}");
    assert_eq!(task["outcome"], "pr_updated", "{task:#}");
    assert_eq!(ln.gitlab.with(|s| s.mrs.len()), 1, "the same merge request");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn an_agent_session_without_a_repository_gets_an_error_activity(pool: PgPool) {
    let ln = ln_app(pool, FIX).await;
    let mut e = ln.session("created", None);
    e["promptContext"] = json!("no links at all");
    let (s, b) = ln.deliver(&e, "s3").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let acts = ln.activities();
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0]["type"], "error");
    assert!(
        acts[0]["body"]
            .as_str()
            .unwrap()
            .contains("repo: owner/name")
    );
    assert_eq!(ln.t.count("SELECT count(*) FROM tasks").await, 0);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_link_attached_to_the_issue_names_the_repository(pool: PgPool) {
    let ln = ln_app(pool, FIX).await;
    let mr = format!("{}/acme/api/-/merge_requests/77", ln.gitlab.url);
    ln.linear
        .with(|s| s.attached_before.push(("issue-uuid-7".into(), mr)));
    // The description names nothing; the attachment does.
    let (s, b) = ln
        .deliver(&ln.issue("create", None, "nothing here"), "a1")
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let task = ln.t.task(b["task_id"].as_str().unwrap()).await;
    assert_eq!(task["repo"], format!("{}/acme/api", ln.gitlab.url));
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_wrong_linear_key_is_refused_by_linear_and_nothing_is_recorded(pool: PgPool) {
    let linear = FakeLinear::start(&key()).await;
    let mut vars = linear.vars(SECRET);
    vars.retain(|(k, _)| k != "LINEAR_API_KEY");
    vars.push(("LINEAR_API_KEY".into(), "not-the-key".into()));
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let t = TestApp::spawn_with(pool, &refs).await;
    let payload = json!({
        "action": "create", "type": "Issue", "webhookTimestamp": now_ms(),
        "data": {"id": "i1", "identifier": "ENG-1", "title": "T", "description": "no repo",
                 "labels": [{"id": "l", "name": "maur"}]},
    });
    let body = serde_json::to_vec(&payload).unwrap();
    let resp = t
        .client
        .post(t.url("/webhooks/linear"))
        .header("linear-signature", sign(SECRET, &body))
        .header("linear-delivery", "w1")
        .body(body)
        .send()
        .await
        .unwrap();
    let (s, b) = support::read(resp).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert!(linear.with(|s| s.unauthorized) >= 1);
    assert!(linear.with(|s| s.comments.is_empty()));
    assert_eq!(
        t.count("SELECT count(*) FROM webhook_deliveries").await,
        0,
        "released for a redelivery"
    );
}
