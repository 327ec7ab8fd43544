//! GitLab end to end: webhooks through the real router, a fake GitLab (API and git on one
//! address, the bot's token demanded on every call), a real worker and reporter.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::TestApp;
use support::fakegitlab::{BOT, BOT_ID, FakeGitLab};
use support::git::{git, source_repo, temp};

const SECRET: &str = "gitlab-hook-secret";
const FIX: &str = "sed -i 's/n + 1/n/' src/lib.rs && echo 'Fixed the off-by-one in page()'";

struct Gl {
    t: TestApp,
    fake: FakeGitLab,
    bare: PathBuf,
    data: PathBuf,
}

fn token() -> String {
    // Built at run time: no token-shaped literal in the repository.
    format!("{}-{}", "glpat", "fake0123456789abcdef")
}

async fn gl_app(pool: PgPool, script: &str) -> Gl {
    let root = temp("gitlab-root");
    let fake = FakeGitLab::start(root.clone(), &token()).await;
    fake.git.publish(&source_repo(), "acme/api");
    fake.with(|s| {
        s.members.insert(7, 40); // ann: Maintainer
        s.members.insert(8, 30); // dev: Developer
        s.members.insert(9, 10); // gus: Guest
    });
    let data = temp("data");
    let mut vars = fake.vars(SECRET);
    vars.extend([
        ("MAUR_AGENT".into(), "command".into()),
        ("MAUR_AGENT_COMMAND".into(), script.into()),
        ("MAUR_DATA_DIR".into(), data.to_str().unwrap().into()),
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
    Gl {
        bare: root.join("acme/api.git"),
        t,
        fake,
        data,
    }
}

impl Gl {
    async fn deliver(&self, event: &str, payload: &Value) -> (StatusCode, Value) {
        self.deliver_with(event, payload, SECRET, &uuid::Uuid::new_v4().to_string())
            .await
    }

    async fn deliver_with(
        &self,
        event: &str,
        payload: &Value,
        secret: &str,
        uuid: &str,
    ) -> (StatusCode, Value) {
        let resp = self
            .t
            .client
            .post(self.t.url("/webhooks/gitlab"))
            .header("x-gitlab-event", event)
            .header("x-gitlab-token", secret)
            .header("x-gitlab-event-uuid", uuid)
            .json(payload)
            .send()
            .await
            .unwrap();
        support::read(resp).await
    }

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

    async fn progress(&self, kind: &str, iid: u64, contains: &str) -> String {
        let (kind_owned, needle) = (kind.to_owned(), contains.to_owned());
        self.fake
            .wait_until(&format!("a progress note saying {contains:?}"), move |s| {
                s.notes
                    .iter()
                    .any(|n| n.kind == kind_owned && n.iid == iid && n.body().contains(&needle))
            })
            .await;
        let ours: Vec<_> = self
            .fake
            .notes_on(kind, iid)
            .into_iter()
            .filter(|n| n.body().contains("<!-- maur:progress:"))
            .collect();
        assert_eq!(ours.len(), 1, "one progress note: {ours:#?}");
        ours[0].body().to_owned()
    }
}

fn note(body: &str, user: (i64, &str), iid: u64) -> Value {
    json!({
        "object_kind": "note", "event_type": "note",
        "user": {"id": user.0, "username": user.1, "name": user.1},
        "project_id": 5,
        "project": {"id": 5, "path_with_namespace": "acme/api", "default_branch": "main"},
        "object_attributes": {"id": 7000 + iid, "note": body, "noteable_type": "Issue", "action": "create", "system": false},
        "issue": {"iid": iid, "title": "Pager shows page 2 twice", "description": "page() is off by one", "url": format!("https://gitlab.example/acme/api/-/issues/{iid}")},
    })
}

fn mr_note(body: &str, user: (i64, &str), iid: u64, source_project: i64) -> Value {
    json!({
        "object_kind": "note",
        "user": {"id": user.0, "username": user.1},
        "project": {"id": 5, "path_with_namespace": "acme/api"},
        "object_attributes": {"id": 8000 + iid, "note": body, "noteable_type": "MergeRequest", "action": "create"},
        "merge_request": {"iid": iid, "title": "Rename the pager", "description": "First go", "source_branch": "feature", "target_branch": "main", "source_project_id": source_project, "target_project_id": 5},
    })
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn fix_on_an_issue_awards_reports_and_opens_one_merge_request(pool: PgPool) {
    let gl = gl_app(pool, FIX).await;
    let (s, b) = gl
        .deliver("Note Hook", &note("/maur fix", (7, "ann"), 12))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["task_id"].as_str().unwrap().to_owned();
    gl.fake
        .wait_until("👀 on the note", |s| {
            s.awards
                .contains(&("issues/12/notes/7012".into(), "eyes".into()))
        })
        .await;
    gl.progress("issues", 12, "Queued").await;

    gl.work_one().await;
    let task = gl.t.wait_for_status(&id, "succeeded").await;
    assert_eq!(task["outcome"], "pr_opened", "{task:#}");
    let text = gl.progress("issues", 12, "Opened a merge request").await;
    assert!(
        text.contains("https://gitlab.example/acme/api/-/merge_requests/1"),
        "{text}"
    );

    let mrs = gl.fake.with(|s| s.mrs.clone());
    assert_eq!(mrs.len(), 1);
    assert_eq!(
        (mrs[0].source.as_str(), mrs[0].target.as_str()),
        (format!("maur/{id}").as_str(), "main")
    );
    assert_eq!(mrs[0].title, "Pager shows page 2 twice");
    assert!(
        mrs[0].description.starts_with("Closes #12\n"),
        "{}",
        mrs[0].description
    );
    let branch = format!("maur/{id}");
    assert_eq!(
        git(&gl.bare, &["show", &format!("{branch}:src/lib.rs")]),
        "pub fn page(n: usize) -> usize { n }"
    );
    let log = git(&gl.bare, &["log", "-1", "--format=%an <%ae>%n%B", &branch]);
    assert!(
        log.starts_with(&format!("maur <{BOT_ID}-{BOT}@users.noreply.127.0.0.1>\n")),
        "{log}"
    );
    assert!(
        log.ends_with("Co-authored-by: ann <7-ann@users.noreply.127.0.0.1>"),
        "{log}"
    );
    assert_eq!(gl.fake.with(|s| s.unauthorized), 0);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn bad_deliveries_get_clear_errors_and_change_nothing(pool: PgPool) {
    let gl = gl_app(pool, FIX).await;
    let payload = note("/maur fix", (7, "ann"), 1);
    let (s, b) = gl
        .deliver_with("Note Hook", &payload, "wrong-secret", "u1")
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        b["error"].as_str().unwrap().contains("X-Gitlab-Token"),
        "{b}"
    );
    let resp =
        gl.t.client
            .post(gl.t.url("/webhooks/gitlab"))
            .header("x-gitlab-event", "Note Hook")
            .json(&payload)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let bad =
        gl.t.client
            .post(gl.t.url("/webhooks/gitlab"))
            .header("x-gitlab-event", "Note Hook")
            .header("x-gitlab-token", SECRET)
            .body("{nope")
            .send()
            .await
            .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let big =
        gl.t.client
            .post(gl.t.url("/webhooks/gitlab"))
            .header("x-gitlab-event", "Note Hook")
            .header("x-gitlab-token", SECRET)
            .body(vec![b' '; 6 * 1024 * 1024])
            .send()
            .await
            .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (s, b) = gl
        .deliver("Pipeline Hook", &json!({"object_kind": "pipeline"}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].is_string());
    let (s, _) = gl.deliver("Test Hook", &json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(gl.t.count("SELECT count(*) FROM tasks").await, 0);
    assert!(gl.fake.with(|s| s.notes.is_empty() && s.awards.is_empty()));
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn redelivery_guests_and_bots(pool: PgPool) {
    let gl = gl_app(pool, FIX).await;
    let payload = note("/maur fix", (8, "dev"), 3);
    let (s1, b1) = gl
        .deliver_with("Note Hook", &payload, SECRET, "same-uuid")
        .await;
    assert_eq!(s1, StatusCode::ACCEPTED, "{b1}");
    let (s2, b2) = gl
        .deliver_with("Note Hook", &payload, SECRET, "same-uuid")
        .await;
    assert_eq!(s2, StatusCode::OK);
    assert_eq!(b2["task_id"], b1["task_id"]);

    let (s, b) = gl
        .deliver("Note Hook", &note("/maur fix", (9, "gus"), 4))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let replies = gl.fake.notes_on("issues", 4);
    assert_eq!(replies.len(), 1);
    assert!(
        replies[0].body().contains("Developer or higher"),
        "{}",
        replies[0].body()
    );
    let (s, _) = gl
        .deliver("Note Hook", &note("/maur fix", (77, "stranger"), 4))
        .await;
    assert_eq!(s, StatusCode::OK, "not a member at all");

    let (s, b) = gl
        .deliver("Note Hook", &note("/maur fix", (55, "group_3_bot_ab12"), 4))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].as_str().unwrap().contains("bot"), "{b}");
    let (s, b) = gl
        .deliver("Note Hook", &note("/maur fix", (BOT_ID, "maur-renamed"), 4))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].as_str().unwrap().contains("own"), "{b}");
    let mut edited = note("/maur fix", (7, "ann"), 4);
    edited["object_attributes"]["action"] = json!("update");
    let (s, _) = gl.deliver("Note Hook", &edited).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(gl.t.count("SELECT count(*) FROM tasks").await, 1);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn the_label_counts_once(pool: PgPool) {
    let gl = gl_app(pool, FIX).await;
    let issue = |previous: Value, current: Value| {
        json!({
            "object_kind": "issue", "user": {"id": 7, "username": "ann"},
            "project": {"id": 5, "path_with_namespace": "acme/api"},
            "object_attributes": {"iid": 6, "title": "Pager", "description": "off by one", "action": "update", "labels": current.clone()},
            "changes": {"labels": {"previous": previous, "current": current}},
        })
    };
    let maur = json!([{"title": "maur"}]);
    let (s, b) = gl
        .deliver("Issue Hook", &issue(json!([]), maur.clone()))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    gl.fake
        .wait_until("👀 on the issue", |s| {
            s.awards.contains(&("issues/6".into(), "eyes".into()))
        })
        .await;
    let (s, b) = gl
        .deliver("Issue Hook", &issue(maur.clone(), maur.clone()))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].is_string(), "{b}");
    assert_eq!(gl.t.count("SELECT count(*) FROM tasks").await, 1);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_merge_request_follow_up_pushes_to_its_branch_and_a_fork_gets_a_no(pool: PgPool) {
    let gl = gl_app(pool, "echo more >> README.md && echo 'Renamed'").await;
    git(&gl.bare, &["branch", "feature", "main"]);
    let before = git(&gl.bare, &["rev-parse", "feature"]);
    gl.fake.with(|s| {
        s.mrs.push(support::fakegitlab::Mr {
            iid: 4,
            project: "acme/api".into(),
            source: "feature".into(),
            target: "main".into(),
            title: "Rename the pager".into(),
            description: "First go".into(),
            source_project_id: 5,
        })
    });
    let (s, b) = gl
        .deliver(
            "Note Hook",
            &mr_note("/maur fix rename it", (7, "ann"), 4, 5),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["task_id"].as_str().unwrap().to_owned();
    gl.work_one().await;
    let task = gl.t.wait_for_status(&id, "succeeded").await;
    assert_eq!(task["outcome"], "pr_updated", "{task:#}");
    assert_eq!(git(&gl.bare, &["rev-parse", "feature^"]), before);
    assert_eq!(gl.fake.with(|s| s.mrs.len()), 1);
    gl.progress("merge_requests", 4, "Updated the merge request")
        .await;

    let (s, b) = gl
        .deliver("Note Hook", &mr_note("/maur fix", (7, "ann"), 5, 99))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let replies = gl.fake.notes_on("merge_requests", 5);
    assert_eq!(replies.len(), 1);
    assert!(
        replies[0]
            .body()
            .contains("This merge request's branch lives in another project"),
        "{}",
        replies[0].body()
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn the_token_appears_nowhere(pool: PgPool) {
    let (writer, logs) = support::LogCapture::new();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(writer)
            .with_max_level(tracing::Level::DEBUG)
            .finish(),
    );
    let snapshot = temp("snapshot");
    let gl = gl_app(
        pool,
        &format!(
            "env > agent-env.txt; cp -r \"$PWD/../..\" {}/data; {FIX}",
            snapshot.display()
        ),
    )
    .await;
    let (_, b) = gl
        .deliver("Note Hook", &note("/maur fix", (7, "ann"), 15))
        .await;
    let id = b["task_id"].as_str().unwrap().to_owned();
    gl.work_one().await;
    let task = gl.t.wait_for_status(&id, "succeeded").await;
    gl.progress("issues", 15, "Opened a merge request").await;
    let token = token();
    let mut places: Vec<(String, String)> = vec![
        ("the task".into(), task.to_string()),
        (
            "the agent's environment".into(),
            git(&gl.bare, &["show", &format!("maur/{id}:agent-env.txt")]),
        ),
        ("the logs".into(), logs.text()),
    ];
    assert!(places[1].1.contains("PATH="));
    places.extend(
        support::table_dumps(
            &gl.t.pool,
            &["tasks", "task_events", "task_reports", "webhook_deliveries"],
        )
        .await,
    );
    for n in gl.fake.with(|s| s.notes.clone()) {
        places.push((format!("note {}", n.id), n.bodies.join("\n")));
    }
    for file in support::files_under(&gl.data)
        .into_iter()
        .chain(support::files_under(&snapshot))
    {
        let bytes = std::fs::read(&file).unwrap_or_default();
        places.push((
            file.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    for (place, text) in &places {
        assert!(!text.contains(&token), "the token is in {place}");
    }
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn every_recorded_example_payload_is_answered_with_a_2xx(pool: PgPool) {
    let gl = gl_app(pool, FIX).await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gitlab/examples");
    let event_of = |file: &str| match file.trim_end_matches(".json") {
        "build" | "job" => "Job Hook",
        "deployment" => "Deployment Hook",
        "feature_flag" => "Feature Flag Hook",
        "issue" => "Issue Hook",
        "member" => "Member Hook",
        "merge_request" | "group_merge_request" | "service_merge_request" => "Merge Request Hook",
        f if f.starts_with("note_") => "Note Hook",
        "pipeline" => "Pipeline Hook",
        "push" => "Push Hook",
        "release" => "Release Hook",
        f if f.starts_with("resource_access_token") => "Resource Access Token Hook",
        "subgroup" => "Subgroup Hook",
        "tag_push" => "Tag Push Hook",
        "wiki_page" => "Wiki Page Hook",
        other => panic!("no event for {other}"),
    };
    let mut seen = 0;
    for file in std::fs::read_dir(&root).unwrap().flatten() {
        let name = file.file_name().to_string_lossy().into_owned();
        let payload: Value = serde_json::from_slice(&std::fs::read(file.path()).unwrap()).unwrap();
        let (status, body) = gl.deliver(event_of(&name), &payload).await;
        assert!(status.is_success(), "{name}: {status} {body}");
        // Understood, not merely tolerated: a note or issue GitLab really sends must parse.
        let why = body["ignored"].as_str().unwrap_or_default();
        assert!(!why.contains("not understood"), "{name}: {why}");
        seen += 1;
    }
    assert_eq!(seen, 21);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn the_hook_command_registers_then_updates_the_projects_webhook(pool: PgPool) {
    let gl = gl_app(pool, FIX).await;
    let settings = &gl.t.app.state.config.gitlab;
    let client = maur::gitlab::client::GitLab::new(settings).unwrap();
    let secret = settings.webhook_secrets[0].clone();
    use maur::gitlab::hook::{Registered, register};
    let first = register(&client, "acme/api", "https://maur.acme.dev/", &secret)
        .await
        .unwrap();
    assert_eq!(first, Registered::Created(1));
    let again = register(&client, "acme/api", "https://maur.acme.dev", &secret)
        .await
        .unwrap();
    assert_eq!(again, Registered::Updated(1));
    let hooks = gl.fake.with(|s| s.hooks.clone());
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["url"], "https://maur.acme.dev/webhooks/gitlab");
    assert_eq!(hooks[0]["token"], SECRET);
    assert_eq!(hooks[0]["note_events"], true);
    assert_eq!(hooks[0]["issues_events"], true);
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn an_issue_and_a_merge_request_with_the_same_number_are_apart(pool: PgPool) {
    let gl = gl_app(pool, "sleep 30").await;
    let (s, b) = gl
        .deliver("Note Hook", &note("/maur fix", (7, "ann"), 4))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    gl.fake.with(|s| {
        s.mrs.push(support::fakegitlab::Mr {
            iid: 4,
            project: "acme/api".into(),
            source: "feature".into(),
            target: "main".into(),
            title: "Other".into(),
            description: String::new(),
            source_project_id: 5,
        })
    });
    git(&gl.bare, &["branch", "feature", "main"]);
    // Issue #4 is busy; merge request !4 is another thing.
    let (s, b) = gl
        .deliver("Note Hook", &mr_note("/maur fix", (7, "ann"), 4, 5))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(gl.t.count("SELECT count(*) FROM tasks").await, 2);
    // Cancelling on the merge request leaves the issue's task alone.
    let (s, b) = gl
        .deliver("Note Hook", &mr_note("/maur cancel", (7, "ann"), 4, 5))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        gl.t.count("SELECT count(*) FROM tasks WHERE status = 'cancelled'")
            .await,
        1
    );
    assert_eq!(
        gl.t.count("SELECT count(*) FROM tasks WHERE status = 'queued' AND dedup_key LIKE '%#4'")
            .await,
        1
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn with_github_configured_too_a_gitlab_task_stays_on_gitlab(pool: PgPool) {
    let root = temp("gitlab-root");
    let fake = FakeGitLab::start(root.clone(), &token()).await;
    fake.git.publish(&source_repo(), "acme/api");
    fake.with(|s| {
        s.members.insert(7, 40);
    });
    // A GitHub App that would accept `acme/api` too (its API is never reached here).
    let github =
        support::fakegithub::FakeGitHub::start("http://127.0.0.1:9", Default::default()).await;
    let data = temp("data");
    let mut vars = fake.vars(SECRET);
    vars.extend(github.vars("gh-secret"));
    vars.extend([
        ("MAUR_AGENT".into(), "command".into()),
        ("MAUR_AGENT_COMMAND".into(), FIX.into()),
        ("MAUR_DATA_DIR".into(), data.to_str().unwrap().into()),
    ]);
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let t = TestApp::spawn_with(pool, &refs).await;
    tokio::spawn(t.app.reporter(t.app.sinks()).run(t.shutdown.clone()));
    let gl = Gl {
        bare: root.join("acme/api.git"),
        t,
        fake,
        data,
    };
    let (_, b) = gl
        .deliver("Note Hook", &note("/maur fix", (7, "ann"), 12))
        .await;
    let id = b["task_id"].as_str().unwrap().to_owned();
    gl.work_one().await;
    let task = gl.t.wait_for_status(&id, "succeeded").await;
    assert_eq!(task["outcome"], "pr_opened", "{task:#}");
    assert_eq!(gl.fake.with(|s| s.mrs.len()), 1);
    assert!(
        github.with(|s| s.calls.is_empty()),
        "GitHub was never asked"
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn gitlab_errors_and_rate_limits_are_waited_out(pool: PgPool) {
    let gl = gl_app(pool, FIX).await;
    gl.fake.with(|s| {
        s.fail_next = 1;
        s.rate_limit_next = 1;
        s.fault_filter = Some("/members/all/".into());
    });
    let (s, b) = gl
        .deliver("Note Hook", &note("/maur fix", (7, "ann"), 30))
        .await;
    assert_eq!(
        s,
        StatusCode::ACCEPTED,
        "after a 502 and a 429 with RateLimit-Reset: {b}"
    );
    let asked = gl.fake.with(|s| {
        s.calls
            .iter()
            .filter(|c| c.contains("/members/all/"))
            .count()
    });
    assert_eq!(asked, 3);
    // GitLab down for good: 502, nothing recorded, a redelivery later works.
    gl.fake.with(|s| {
        s.fail_next = 100;
        s.fault_filter = Some("/members/all/8".into());
    });
    let (s, b) = gl
        .deliver_with(
            "Note Hook",
            &note("/maur fix", (8, "dev"), 31),
            SECRET,
            "u-31",
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    gl.fake.with(|s| s.fail_next = 0);
    let (s, b) = gl
        .deliver_with(
            "Note Hook",
            &note("/maur fix", (8, "dev"), 31),
            SECRET,
            "u-31",
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_wrong_gitlab_token_is_refused_by_gitlab_and_nothing_starts(pool: PgPool) {
    let fake = FakeGitLab::start(temp("gitlab-root"), &token()).await;
    fake.with(|s| {
        s.members.insert(7, 40);
    });
    let mut vars = fake.vars(SECRET);
    vars.retain(|(k, _)| k != "GITLAB_TOKEN");
    vars.push(("GITLAB_TOKEN".into(), "not-the-token".into()));
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let t = TestApp::spawn_with(pool, &refs).await;
    let resp = t
        .client
        .post(t.url("/webhooks/gitlab"))
        .header("x-gitlab-event", "Note Hook")
        .header("x-gitlab-token", SECRET)
        .json(&note("/maur fix", (7, "ann"), 1))
        .send()
        .await
        .unwrap();
    let (s, b) = support::read(resp).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert!(fake.with(|s| s.unauthorized) >= 1);
    assert_eq!(t.count("SELECT count(*) FROM tasks").await, 0);
}
