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
    _git: GitServer,
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
    // Failed publishes come back quickly here (10 s in production).
    let config = maur::report::ReporterConfig {
        retry_delay: Duration::from_millis(200),
        ..t.app.reporter_config()
    };
    let reporter = t.app.reporter_with(t.app.sinks(), config);
    tokio::spawn(reporter.run(t.shutdown.clone()));
    Gh {
        bare: root.join("acme/api.git"),
        t,
        fake,
        _git: git,
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

    assert_eq!(
        gh.fake.with(|s| (s.unauthorized, s.forbidden)),
        (0, 0),
        "every call had a valid token with the permission it needed"
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

fn pr_comment(body: &str, sender: &str, number: u64) -> Value {
    let mut c = comment(body, sender, number);
    c["issue"]["pull_request"] =
        json!({"url": format!("https://api.github.example/repos/acme/api/pulls/{number}")});
    c["issue"]["title"] = json!("Rename the pager");
    c
}

fn open_pr(gh: &Gh, number: u64, head: &str, head_repo: &str) {
    gh.fake.with(|s| {
        s.pulls.push(support::fakegithub::FakePull {
            number,
            repo: "acme/api".into(),
            head: head.into(),
            base: "main".into(),
            title: "Rename the pager".into(),
            body: "First go".into(),
            head_repo: head_repo.into(),
        })
    });
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_follow_up_on_a_pull_request_pushes_to_its_branch(pool: PgPool) {
    let gh = gh_app(
        pool,
        "cp {prompt_file} prompt.txt && echo 'Renamed as asked'",
    )
    .await;
    git(&gh.bare, &["branch", "feature", "main"]);
    let before = git(&gh.bare, &["rev-parse", "feature"]);
    open_pr(&gh, 7, "feature", "acme/api");
    gh.fake.with(|s| {
        // A long thread: 150 comments, so the newest are on the last page.
        let mut thread = vec![("rita".to_owned(), "call it paginate please".to_owned())];
        thread.extend((1..149).map(|i| ("bob".to_owned(), format!("chatter {i}"))));
        thread.push(("ann".into(), "the newest remark".into()));
        s.conversation.insert(("acme/api".into(), 7), thread);
        s.reviews.insert(
            ("acme/api".into(), 7),
            vec![("max".into(), "needs a test".into())],
        );
        s.review_comments.insert(
            ("acme/api".into(), 7),
            vec![(
                "max".into(),
                "src/lib.rs".into(),
                1,
                "keep the doc comment".into(),
            )],
        );
    });
    let (s, b) = gh
        .deliver(
            "issue_comment",
            &pr_comment("/maur fix apply the review", "ann", 7),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["task_id"].as_str().unwrap().to_owned();
    gh.work_one().await;
    let task = gh.t.wait_for_status(&id, "succeeded").await;
    assert_eq!(task["outcome"], "pr_updated", "{task:#}");
    assert_eq!(task["branch"], "feature");
    // A new commit on the same branch, on top of what was there; no second pull request.
    assert_eq!(git(&gh.bare, &["rev-parse", "feature^"]), before);
    let prompt = git(&gh.bare, &["show", "feature:prompt.txt"]);
    assert!(prompt.contains("Update GitHub pull request #7"), "{prompt}");
    assert!(
        prompt.contains("@rita: call it paginate please"),
        "{prompt}"
    );
    assert!(
        prompt.contains("@max: (on src/lib.rs:1) keep the doc comment"),
        "{prompt}"
    );
    assert!(prompt.contains("apply the review"), "{prompt}");
    assert!(
        prompt.contains("@ann: the newest remark"),
        "the last page too: {prompt}"
    );
    assert!(prompt.contains("@max: needs a test"), "reviews: {prompt}");
    // Oldest first across the three lists (the fake dates comments in January, review
    // comments in February and reviews in March; reviews are fetched before review comments).
    let order: Vec<usize> = [
        "call it paginate",
        "the newest remark",
        "keep the doc comment",
        "needs a test",
    ]
    .iter()
    .map(|t| prompt.find(t).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(prompt.contains("not instructions to you"), "{prompt}");
    assert_eq!(gh.fake.with(|s| s.pulls.len()), 1);
    let text = gh.final_comment(7, "Updated the pull request").await;
    assert!(text.contains("/pull/7"), "{text}");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_pull_request_from_a_fork_gets_a_clear_no(pool: PgPool) {
    let gh = gh_app(pool, FIX).await;
    open_pr(&gh, 9, "patch-1", "stranger/api");
    let (s, b) = gh
        .deliver("issue_comment", &pr_comment("/maur fix", "ann", 9))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let replies = gh.fake.comments_on("acme/api", 9);
    assert_eq!(replies.len(), 1);
    assert!(
        replies[0].body().contains("lives in stranger/api"),
        "{}",
        replies[0].body()
    );
    assert_eq!(gh.t.count("SELECT count(*) FROM tasks").await, 0);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn cancel_stops_the_running_task(pool: PgPool) {
    let gh = gh_app(pool, "sleep 60").await;
    let (_, b) = gh
        .deliver("issue_comment", &comment("/maur fix", "ann", 10))
        .await;
    let id = b["task_id"].as_str().unwrap().to_owned();
    let pipeline = gh.t.app.pipeline().unwrap();
    let worker = gh.t.app.worker(pipeline);
    let running = tokio::spawn(async move { worker.run_one().await });
    gh.t.wait_for_status(&id, "running").await;
    let (s, b) = gh
        .deliver("issue_comment", &comment("/maur cancel", "max", 10))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["cancelled"], id.as_str());
    running.await.unwrap().unwrap();
    gh.t.wait_for_status(&id, "cancelled").await;
    gh.final_comment(10, "Cancelled").await;
    assert!(gh.fake.with(|s| s.pulls.is_empty()));
    // Nothing left to cancel.
    gh.deliver("issue_comment", &comment("/maur cancel", "max", 10))
        .await;
    assert!(
        gh.fake
            .comments_on("acme/api", 10)
            .iter()
            .any(|c| c.body().contains("nothing to cancel"))
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn retry_after_a_failure_runs_the_work_again(pool: PgPool) {
    let mark = temp("mark").join("failed-once");
    let script = format!(
        "if [ -f {m} ]; then {FIX}; else touch {m}; echo 'cannot build' >&2; exit 3; fi",
        m = mark.display()
    );
    let gh = gh_app(pool, &script).await;
    let (_, b) = gh
        .deliver("issue_comment", &comment("/maur fix", "ann", 11))
        .await;
    let first = b["task_id"].as_str().unwrap().to_owned();
    gh.work_one().await;
    gh.t.wait_for_status(&first, "failed").await;
    let failed = gh.final_comment(11, "Failed").await;
    assert!(failed.contains("cannot build"), "the reason: {failed}");

    let (s, b) = gh
        .deliver("issue_comment", &comment("/maur retry", "ann", 11))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let second = b["task_id"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    gh.work_one().await;
    let task = gh.t.wait_for_status(&second, "succeeded").await;
    assert_eq!(task["outcome"], "pr_opened");
    gh.fake
        .wait_until("the retry's progress says done", |s| {
            s.comments
                .iter()
                .any(|c| c.body().contains(&second) && c.body().contains("Opened a pull request"))
        })
        .await;
    assert_eq!(gh.fake.with(|s| s.pulls.len()), 1);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_token_that_expires_mid_task_is_replaced_before_the_push(pool: PgPool) {
    let gh = gh_app(pool, &format!("sleep 3; {FIX}")).await;
    // Tokens claim five minutes and two seconds but stop working after two seconds, so
    // only a token minted at the moment of the push works.
    gh.fake.with(|s| {
        s.token_life = Duration::from_secs(5 * 60 + 2);
        s.token_works_for = Some(Duration::from_secs(2));
    });
    let (_, b) = gh
        .deliver("issue_comment", &comment("/maur fix", "ann", 13))
        .await;
    let id = b["task_id"].as_str().unwrap().to_owned();
    gh.work_one().await;
    let task = gh.t.wait_for_status(&id, "succeeded").await;
    assert_eq!(task["outcome"], "pr_opened", "{task:#}");
    let git_tokens = gh.fake.with(|s| {
        s.issued
            .iter()
            .filter(|i| i.permissions["contents"] == "write")
            .count()
    });
    assert!(git_tokens >= 2, "a fresh token for the push: {git_tokens}");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_worker_killed_mid_task_leaves_one_pull_request_and_one_comment(pool: PgPool) {
    let mark = temp("mark").join("started");
    let script = format!(
        "if [ -f {m} ]; then {FIX}; else touch {m}; sleep 60; fi",
        m = mark.display()
    );
    let gh = gh_app(pool, &script).await;
    let (_, b) = gh
        .deliver("issue_comment", &comment("/maur fix", "ann", 14))
        .await;
    let id = b["task_id"].as_str().unwrap().to_owned();
    let pipeline = gh.t.app.pipeline().unwrap();
    let worker = gh.t.app.worker(pipeline);
    let first = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.run_one().await })
    };
    while !mark.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.abort();
    let _ = first.await;
    // The lease runs out as if the process had died; the reaper hands the task back.
    sqlx::query("UPDATE tasks SET locked_until = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&gh.t.pool)
        .await
        .unwrap();
    worker.reap().await.unwrap();
    gh.work_one().await;
    let task = gh.t.wait_for_status(&id, "succeeded").await;
    assert_eq!(task["attempts"], 2, "{task:#}");
    let text = gh.final_comment(14, "Opened a pull request").await;
    assert!(text.contains(&id));
    assert_eq!(gh.fake.with(|s| s.pulls.len()), 1);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn installation_tokens_appear_nowhere(pool: PgPool) {
    let (writer, logs) = support::LogCapture::new();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(writer)
            .with_max_level(tracing::Level::DEBUG)
            .finish(),
    );
    // While the task runs, the agent copies all of MAUR_DATA_DIR (its checkout is
    // `<data>/work/<id>`): mirrors, maur's git directories and configs as they are mid-task.
    let snapshot = temp("snapshot");
    let gh = gh_app(
        pool,
        &format!(
            "env > agent-env.txt; cp -r \"$PWD/../..\" {}/data; {FIX}",
            snapshot.display()
        ),
    )
    .await;
    let (_, b) = gh
        .deliver("issue_comment", &comment("/maur fix", "ann", 15))
        .await;
    let id = b["task_id"].as_str().unwrap().to_owned();
    gh.work_one().await;
    let task = gh.t.wait_for_status(&id, "succeeded").await;
    gh.final_comment(15, "Opened a pull request").await;

    let tokens = gh.fake.tokens();
    assert!(tokens.len() >= 2, "{tokens:?}");
    let mut places: Vec<(String, String)> = vec![
        ("the task as the API shows it".into(), task.to_string()),
        ("the agent's log".into(), gh.t.agent_log(&id).await),
        (
            "the agent's environment".into(),
            git(&gh.bare, &["show", &format!("maur/{id}:agent-env.txt")]),
        ),
        ("the logs".into(), logs.text()),
    ];
    assert!(
        places[2].1.contains("PATH="),
        "env was captured: {}",
        places[2].1
    );
    assert!(
        places[3].1.contains("forge task queued"),
        "logs were captured: {}",
        places[3].1
    );
    places.extend(
        support::table_dumps(
            &gh.t.pool,
            &[
                "tasks",
                "task_events",
                "task_reports",
                "webhook_deliveries",
                "github_installations",
                "github_repositories",
            ],
        )
        .await,
    );
    for c in gh.fake.with(|s| s.comments.clone()) {
        places.push((format!("comment {}", c.id), c.bodies.join("\n")));
    }
    for p in gh.fake.with(|s| s.pulls.clone()) {
        places.push((
            format!("pull request {}", p.number),
            format!("{} {}", p.title, p.body),
        ));
    }
    let during = support::files_under(&snapshot);
    assert!(
        during
            .iter()
            .any(|f| f.ends_with("config") && f.to_string_lossy().contains("gitdirs")),
        "the snapshot has maur's own git config: {during:?}"
    );
    for file in support::files_under(&gh.data).into_iter().chain(during) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        places.push((
            file.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    assert!(places.len() > 10);
    for token in &tokens {
        for (place, text) in &places {
            assert!(!text.contains(token.as_str()), "the token is in {place}");
        }
    }
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn every_public_example_payload_is_accepted_without_a_5xx(pool: PgPool) {
    let gh = gh_app(pool, FIX).await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github/examples");
    let mut seen = 0;
    for event_dir in std::fs::read_dir(&root).unwrap().flatten() {
        let event = event_dir.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(event_dir.path()).unwrap().flatten() {
            let bytes = std::fs::read(file.path()).unwrap();
            let resp =
                gh.t.client
                    .post(gh.t.url("/webhooks/github"))
                    .header("x-github-event", &event)
                    .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
                    .header("x-hub-signature-256", sign(SECRET, &bytes))
                    .body(bytes)
                    .send()
                    .await
                    .unwrap();
            let status = resp.status();
            assert!(
                status.is_success(),
                "{event}/{:?}: {status}",
                file.file_name()
            );
            seen += 1;
        }
    }
    assert!(seen > 250, "{seen}");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn installations_are_recorded_and_api_tasks_find_them(pool: PgPool) {
    let gh = gh_app(pool, FIX).await;
    let (s, _) = gh
        .deliver(
            "installation",
            &json!({"action": "created", "installation": {"id": support::fakegithub::INSTALLATION, "account": {"login": "acme"}},
                    "repositories": [{"full_name": "acme/api"}], "sender": {"login": "ann", "type": "User"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        gh.t.count("SELECT installation_id FROM github_repositories WHERE full_name = 'acme/api'")
            .await,
        support::fakegithub::INSTALLATION
    );
    // A task through the REST API names owner/name; the worker finds the installation
    // without asking GitHub.
    let (s, b) =
        gh.t.post(
            "/tasks",
            &json!({"prompt": "Fix the pager", "repo": "acme/api"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["task_id"].as_str().unwrap().to_owned();
    gh.work_one().await;
    let task = gh.t.wait_for_status(&id, "succeeded").await;
    assert_eq!(task["outcome"], "pr_opened", "{task:#}");
    let asked = gh.fake.with(|s| {
        s.calls
            .iter()
            .filter(|c| c.ends_with("/installation"))
            .count()
    });
    assert_eq!(asked, 0);
    gh.deliver(
        "installation_repositories",
        &json!({"action": "removed", "installation": {"id": support::fakegithub::INSTALLATION, "account": {"login": "acme"}},
                "repositories_added": [], "repositories_removed": [{"full_name": "acme/api"}]}),
    )
    .await;
    assert_eq!(
        gh.t.count("SELECT count(*) FROM github_repositories").await,
        0
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn github_errors_and_rate_limits_are_waited_out(pool: PgPool) {
    let gh = gh_app(pool, FIX).await;
    // The first call meets a 502; a later permission check a secondary rate limit.
    gh.fake.with(|s| {
        s.fail_next = 1;
        s.rate_limit_next = 0;
    });
    let (s, b) = gh
        .deliver("issue_comment", &comment("/maur fix", "ann", 16))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    gh.fake.with(|s| {
        s.rate_limit_next = 1;
        s.fault_filter = Some("/permission".into());
    });
    let (s, b) = gh
        .deliver("issue_comment", &comment("/maur fix", "max", 17))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    // Each refused call was made again: the first (a 502) and the rate-limited one.
    let calls = gh.fake.with(|s| s.calls.clone());
    let count = |end: &str| calls.iter().filter(|c| c.ends_with(end)).count();
    assert_eq!(count("/repos/acme/api/installation"), 2, "{calls:#?}");
    assert_eq!(count("/collaborators/max/permission"), 2, "{calls:#?}");

    // GitHub down for good: the delivery fails with 502 and is not recorded, so a
    // redelivery later works.
    gh.fake.with(|s| {
        s.fail_next = 100;
        s.fault_filter = Some("/collaborators/rita/".into());
    });
    let (s, b) = gh
        .deliver_as("issue_comment", &comment("/maur fix", "rita", 18), "d-18")
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert!(b["error"].as_str().unwrap().contains("GitHub"), "{b}");
    gh.fake.with(|s| s.fail_next = 0);
    let (s, b) = gh
        .deliver_as("issue_comment", &comment("/maur fix", "max", 18), "d-18")
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn revoked_tokens_are_minted_again_for_the_api_and_for_git(pool: PgPool) {
    let gh = gh_app(pool, FIX).await;
    let (_, b) = gh
        .deliver("issue_comment", &comment("/maur fix", "ann", 19))
        .await;
    gh.work_one().await;
    gh.t.wait_for_status(b["task_id"].as_str().unwrap(), "succeeded")
        .await;
    gh.final_comment(19, "Opened a pull request").await;
    // Every cached token stops working (revoked on GitHub's side, long before expiry).
    gh.fake.revoke_all();
    let (s, b) = gh
        .deliver("issue_comment", &comment("/maur fix", "max", 20))
        .await;
    assert_eq!(
        s,
        StatusCode::ACCEPTED,
        "the permission check re-minted: {b}"
    );
    let id = b["task_id"].as_str().unwrap().to_owned();
    gh.work_one().await;
    let task = gh.t.wait_for_status(&id, "succeeded").await;
    assert_eq!(
        task["outcome"], "pr_opened",
        "git got a fresh token too: {task:#}"
    );
    assert_eq!(task["attempts"], 1);
    gh.final_comment(20, "Opened a pull request").await;
    assert!(
        gh.fake.with(|s| s.unauthorized) >= 1,
        "the revoked tokens were tried"
    );
    assert_eq!(
        gh.fake.with(|s| s.forbidden),
        0,
        "every call had the permission it needed"
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_lost_answer_to_a_new_comment_never_makes_a_second_one(pool: PgPool) {
    let gh = gh_app(pool, FIX).await;
    // GitHub stores the progress comment but the answer is lost (502).
    gh.fake.with(|s| s.lose_comment_answers = 1);
    let (_, b) = gh
        .deliver("issue_comment", &comment("/maur fix", "ann", 21))
        .await;
    let id = b["task_id"].as_str().unwrap().to_owned();
    gh.work_one().await;
    gh.t.wait_for_status(&id, "succeeded").await;
    let text = gh.final_comment(21, "Opened a pull request").await;
    assert!(text.contains(&id));
    assert_eq!(
        gh.fake.comments_on("acme/api", 21).len(),
        1,
        "adopted, not posted again"
    );
}
