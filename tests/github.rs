//! The GitHub App end to end: signed webhooks through the real router, a fake GitHub that
//! checks the App JWT and installation tokens, a git server that demands those tokens, a
//! real worker and reporter. Assertions are what a maintainer sees on GitHub.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use maur::github::signature::sign;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::TestApp;
use support::fakegithub::{BOT_ID, FakeGitHub, SLUG};
use support::git::{git, source_repo, temp};
use support::githttp::GitServer;

const SECRET: &str = "webhook-secret-for-tests";

struct Gh {
    t: TestApp,
    fake: FakeGitHub,
    git: GitServer,
    /// The repository's bare copy on the git server.
    bare: PathBuf,
    data: PathBuf,
}

/// maur with the fake GitHub as its App, `script` as its agent, and `acme/api` published on
/// the git server. The reporter runs; workers are driven by the test.
async fn gh_app(pool: PgPool, script: &str) -> Gh {
    gh_app_with(pool, script, &[]).await
}

async fn gh_app_with(pool: PgPool, script: &str, extra: &[(&str, &str)]) -> Gh {
    let root = temp("gitroot");
    let git = GitServer::start(root.clone(), "x-access-token", "no-token-yet").await;
    git.tokens.lock().unwrap().clear();
    let src = source_repo();
    git.publish(&src, "acme/api");
    let fake = FakeGitHub::start(&git.base, git.tokens.clone()).await;
    fake.with(|s| {
        s.permissions.insert("ann".into(), "admin".into());
        s.permissions.insert("max".into(), "write".into());
        s.permissions.insert("rita".into(), "read".into());
    });
    let data = temp("data");
    let mut vars: Vec<(String, String)> = fake.vars(SECRET);
    vars.extend([
        ("MAUR_AGENT".into(), "command".into()),
        ("MAUR_AGENT_COMMAND".into(), script.into()),
        ("MAUR_DATA_DIR".into(), data.to_str().unwrap().into()),
    ]);
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let t = TestApp::spawn_with(pool, &refs).await;
    let reporter = t.app.reporter(t.app.sinks());
    tokio::spawn(reporter.run(t.shutdown.clone()));
    Gh {
        bare: root.join("acme/api.git"),
        t,
        fake,
        git,
        data,
    }
}

impl Gh {
    async fn deliver(&self, event: &str, payload: &Value) -> (StatusCode, Value) {
        self.deliver_as(event, payload, &uuid::Uuid::new_v4().to_string())
            .await
    }

    async fn deliver_as(
        &self,
        event: &str,
        payload: &Value,
        delivery: &str,
    ) -> (StatusCode, Value) {
        let body = serde_json::to_vec(payload).unwrap();
        let resp = self
            .t
            .client
            .post(self.t.url("/webhooks/github"))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sign(SECRET, &body))
            .body(body)
            .send()
            .await
            .unwrap();
        support::read(resp).await
    }

    /// Runs one task through a real worker with the configured pipeline.
    async fn work_one(&self) {
        let pipeline = self.t.app.pipeline().unwrap();
        self.t
            .app
            .worker(pipeline)
            .run_one()
            .await
            .unwrap()
            .expect("a task to claim");
    }

    fn maur_comments(&self, number: u64) -> Vec<support::fakegithub::FakeComment> {
        self.fake
            .comments_on("acme/api", number)
            .into_iter()
            .filter(|c| c.body().contains("<!-- maur:progress:"))
            .collect()
    }

    /// Waits for the reporter to publish the task's final state.
    async fn final_comment(&self, number: u64, contains: &str) -> String {
        let needle = contains.to_owned();
        self.fake
            .wait_until(
                &format!("a progress comment saying {contains:?}"),
                move |s| {
                    s.comments
                        .iter()
                        .any(|c| c.number == number && c.body().contains(&needle))
                },
            )
            .await;
        let comments = self.maur_comments(number);
        assert_eq!(comments.len(), 1, "one progress comment: {comments:#?}");
        comments[0].body().to_owned()
    }
}

fn comment(body: &str, sender: &str, number: u64) -> Value {
    json!({
        "action": "created",
        "installation": {"id": support::fakegithub::INSTALLATION},
        "repository": {"full_name": "acme/api", "name": "api", "owner": {"login": "acme"}, "default_branch": "main"},
        "sender": {"login": sender, "id": 31, "type": "User"},
        "issue": {"number": number, "title": "Pager shows page 2 twice", "body": "page() is off by one", "html_url": format!("https://github.example/acme/api/issues/{number}"), "user": {"login": "rita"}},
        "comment": {"id": 5000 + number, "body": body, "user": {"login": sender}},
    })
}

const FIX: &str = "sed -i 's/n + 1/n/' src/lib.rs && echo 'Fixed the off-by-one in page()'";

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn fix_on_an_issue_reacts_reports_and_opens_one_pull_request(pool: PgPool) {
    let gh = gh_app(pool, FIX).await;
    let (status, body) = gh
        .deliver("issue_comment", &comment("/maur fix", "ann", 12))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["task_id"].as_str().unwrap().to_owned();

    // Before any worker picks it up: 👀 on the comment and a progress comment.
    gh.fake
        .wait_until("👀 on the comment", |s| {
            s.reactions
                .contains(&("issues/comments/5012".into(), "eyes".into()))
        })
        .await;
    gh.final_comment(12, "Queued").await;

    gh.work_one().await;
    let task = gh.t.wait_for_status(&id, "succeeded").await;
    assert_eq!(task["outcome"], "pr_opened", "{task:#}");
    let text = gh.final_comment(12, "Opened a pull request").await;
    assert!(
        text.contains("https://github.example/acme/api/pull/100"),
        "{text}"
    );
    assert!(text.contains("- [x] Check out the repository"), "{text}");

    let pulls = gh.fake.with(|s| s.pulls.clone());
    assert_eq!(pulls.len(), 1);
    let pr = &pulls[0];
    assert_eq!(pr.head, format!("maur/{id}"));
    assert_eq!(pr.base, "main");
    assert_eq!(pr.title, "Pager shows page 2 twice");
    assert!(pr.body.starts_with("Fixes #12\n"), "{}", pr.body);
    assert!(
        pr.body.contains("Fixed the off-by-one in page()"),
        "{}",
        pr.body
    );
    assert!(pr.body.contains("`src/lib.rs`"), "{}", pr.body);

    let branch = format!("maur/{id}");
    assert_eq!(
        git(&gh.bare, &["show", &format!("{branch}:src/lib.rs")]),
        "pub fn page(n: usize) -> usize { n }"
    );
    let log = git(&gh.bare, &["log", "-1", "--format=%an <%ae>%n%B", &branch]);
    assert!(
        log.starts_with(&format!(
            "{SLUG}[bot] <{BOT_ID}+{SLUG}[bot]@users.noreply.github.com>\n"
        )),
        "{log}"
    );
    assert!(
        log.ends_with("Co-authored-by: ann <31+ann@users.noreply.github.com>"),
        "{log}"
    );

    // The progress comment was edited in place through the task's life.
    let comments = gh.maur_comments(12);
    assert!(comments[0].bodies.len() >= 2, "{:#?}", comments[0].bodies);
    // Every call the worker made was counted in the task's events.
    let calls = task["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "api_calls")
        .map(|e| e["data"]["calls"].as_u64().unwrap())
        .expect("an api_calls event");
    assert!(calls >= 3, "{calls}");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn bad_deliveries_get_clear_errors_and_change_nothing(pool: PgPool) {
    let gh = gh_app(pool, FIX).await;
    let body = serde_json::to_vec(&comment("/maur fix", "ann", 1)).unwrap();
    let post = |sig: Option<String>, event: &str, body: Vec<u8>| {
        let mut req =
            gh.t.client
                .post(gh.t.url("/webhooks/github"))
                .header("x-github-event", event)
                .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
                .body(body);
        if let Some(sig) = sig {
            req = req.header("x-hub-signature-256", sig);
        }
        async move { support::read(req.send().await.unwrap()).await }
    };
    let (s, b) = post(None, "issue_comment", body.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("missing X-Hub-Signature-256"),
        "{b}"
    );
    let (s, b) = post(
        Some(sign("wrong-secret", &body)),
        "issue_comment",
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        b["error"].as_str().unwrap().contains("does not match"),
        "{b}"
    );
    let (s, _) = post(Some("sha256=xyz".into()), "issue_comment", body.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Signed with the right secret, but over a different body.
    let (s, _) = post(Some(sign(SECRET, b"{}")), "issue_comment", body.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let bad = b"{not json".to_vec();
    let (s, b) = post(Some(sign(SECRET, &bad)), "issue_comment", bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["error"].is_string());

    let (s, b) = post(Some(sign(SECRET, b"{}")), "", b"{}".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["error"].as_str().unwrap().contains("X-GitHub-Event"),
        "{b}"
    );

    let (s, b) = gh.deliver("star", &json!({"action": "created"})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].as_str().unwrap().contains("star"), "{b}");

    let big = vec![b' '; 6 * 1024 * 1024];
    let (s, b) = post(Some(sign(SECRET, &big)), "issue_comment", big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");

    assert_eq!(gh.t.count("SELECT count(*) FROM tasks").await, 0);
    assert!(
        gh.fake
            .with(|s| s.comments.is_empty() && s.reactions.is_empty())
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_redelivery_answers_with_the_first_task(pool: PgPool) {
    let gh = gh_app(pool, FIX).await;
    let payload = comment("/maur fix", "ann", 3);
    let (s1, b1) = gh.deliver_as("issue_comment", &payload, "delivery-1").await;
    assert_eq!(s1, StatusCode::ACCEPTED, "{b1}");
    let (s2, b2) = gh.deliver_as("issue_comment", &payload, "delivery-1").await;
    assert_eq!(s2, StatusCode::OK, "{b2}");
    assert_eq!(b2["task_id"], b1["task_id"]);
    assert_eq!(b2["duplicate"], true);
    assert_eq!(gh.t.count("SELECT count(*) FROM tasks").await, 1);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn only_people_with_write_access_bots_and_new_comments_count(pool: PgPool) {
    let gh = gh_app(pool, FIX).await;
    // Read access: one short reply, no task, no reaction.
    let (s, b) = gh
        .deliver("issue_comment", &comment("/maur fix", "rita", 4))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let replies = gh.fake.comments_on("acme/api", 4);
    assert_eq!(replies.len(), 1);
    assert!(
        replies[0].body().contains("only people with write access"),
        "{}",
        replies[0].body()
    );

    // A bot, and maur itself.
    let mut bot = comment("/maur fix", "dependabot[bot]", 4);
    bot["sender"]["type"] = json!("Bot");
    let (s, b) = gh.deliver("issue_comment", &bot).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].as_str().unwrap().contains("bot"), "{b}");

    // Edited and deleted comments.
    for action in ["edited", "deleted"] {
        let mut edited = comment("/maur fix", "ann", 4);
        edited["action"] = json!(action);
        let (s, b) = gh.deliver("issue_comment", &edited).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        assert!(b["ignored"].is_string());
    }
    // A quoted command.
    let (s, _) = gh
        .deliver(
            "issue_comment",
            &comment("> /maur fix\n\nno thanks", "ann", 4),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);

    assert_eq!(gh.t.count("SELECT count(*) FROM tasks").await, 0);
    assert_eq!(gh.fake.comments_on("acme/api", 4).len(), 1);
    assert!(gh.fake.with(|s| s.reactions.is_empty()));
    // A write collaborator may.
    let (s, b) = gh
        .deliver("issue_comment", &comment("/maur fix", "max", 4))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn the_label_starts_work_and_a_second_fix_points_at_the_first(pool: PgPool) {
    let gh = gh_app(pool, FIX).await;
    let mut labeled = comment("", "ann", 6);
    labeled.as_object_mut().unwrap().remove("comment");
    labeled["action"] = json!("labeled");
    labeled["label"] = json!({"name": "maur"});
    let (s, b) = gh.deliver("issues", &labeled).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["task_id"].clone();
    gh.fake
        .wait_until("👀 on the issue", |s| {
            s.reactions.contains(&("issues/6".into(), "eyes".into()))
        })
        .await;
    gh.final_comment(6, "Queued").await;

    let (s, b) = gh
        .deliver("issue_comment", &comment("/maur fix", "ann", 6))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["task_id"], id);
    let replies: Vec<_> = gh
        .fake
        .comments_on("acme/api", 6)
        .into_iter()
        .filter(|c| c.body().contains("already working on this"))
        .collect();
    assert_eq!(replies.len(), 1);
    assert!(
        replies[0].body().contains("#issuecomment-"),
        "links the progress: {}",
        replies[0].body()
    );
    assert_eq!(gh.t.count("SELECT count(*) FROM tasks").await, 1);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn help_status_and_unknown_commands_reply(pool: PgPool) {
    let gh = gh_app(pool, FIX).await;
    gh.deliver("issue_comment", &comment("/maur help", "rita", 8))
        .await;
    gh.deliver("issue_comment", &comment("/maur status", "rita", 8))
        .await;
    gh.deliver("issue_comment", &comment("/maur dance", "rita", 8))
        .await;
    let replies: Vec<String> = gh
        .fake
        .comments_on("acme/api", 8)
        .iter()
        .map(|c| c.body().to_owned())
        .collect();
    assert_eq!(replies.len(), 3, "{replies:#?}");
    assert!(replies[0].contains("/maur fix [instructions]"));
    assert!(replies[1].contains("No maur task has run here yet"));
    assert!(replies[2].starts_with("I don't know `dance`"));
}
