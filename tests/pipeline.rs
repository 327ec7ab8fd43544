//! The whole pipeline through the queue: a task against a local repository, a script as the
//! agent, and what the team finds in their repository afterwards.

mod support;

use std::path::Path;

use serde_json::json;
use sqlx::PgPool;
use support::TestApp;
use support::git::{git, source_repo, temp};

/// An app whose agent is `script` and whose data lives in a fresh directory.
async fn app(pool: PgPool, script: &str) -> (TestApp, std::path::PathBuf) {
    let data = temp("data");
    let t = TestApp::spawn_with(
        pool,
        &[
            ("MAUR_AGENT", "command"),
            ("MAUR_AGENT_COMMAND", script),
            ("MAUR_DATA_DIR", data.to_str().unwrap()),
            ("MAUR_GIT_AUTHOR_NAME", "maur-bot"),
            ("MAUR_GIT_AUTHOR_EMAIL", "bot@maur.example"),
        ],
    )
    .await;
    (t, data)
}

async fn run_task(t: &TestApp, repo: &Path, prompt: &str) -> serde_json::Value {
    let (status, body) = t
        .post(
            "/tasks",
            &json!({"prompt": prompt, "repo": repo.to_str().unwrap()}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["task_id"].as_str().unwrap();
    let pipeline = t.app.pipeline().unwrap();
    t.app
        .worker(pipeline)
        .run_one()
        .await
        .unwrap()
        .expect("claimed");
    t.task(id).await
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_task_on_a_local_repository_pushes_exactly_the_agents_change(pool: PgPool) {
    let src = source_repo();
    let main_before = git(&src, &["rev-parse", "main"]);
    let (t, data) = app(
        pool,
        "sed -i 's/n + 1/n/' src/lib.rs && echo 'Fixed the off-by-one in page()'",
    )
    .await;
    let task = run_task(&t, &src, "Fix the off-by-one in pagination").await;
    let id = task["id"].as_str().unwrap();

    assert_eq!(task["status"], "succeeded", "{task:#}");
    assert_eq!(task["outcome"], "branch_pushed");
    let branch = format!("maur/{id}");
    assert_eq!(task["branch"], branch.as_str());
    assert_eq!(
        git(&src, &["show", &format!("{branch}:src/lib.rs")]),
        "pub fn page(n: usize) -> usize { n }"
    );
    assert_eq!(
        git(&src, &["rev-parse", &format!("{branch}^")]),
        main_before
    );
    assert_eq!(
        git(&src, &["log", "-1", "--format=%an <%ae>%n%B", &branch]),
        format!(
            "maur-bot <bot@maur.example>\nmaur: Fix the off-by-one in pagination\n\nFixed the off-by-one in page()\n\nTask: {id}"
        )
    );
    assert_eq!(
        git(&src, &["rev-parse", "main"]),
        main_before,
        "main untouched"
    );

    // What the person who asked can follow.
    let steps: Vec<(String, String)> = task["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "step")
        .map(|e| {
            (
                e["data"]["step"].as_str().unwrap().to_owned(),
                e["data"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("checkout", "running"),
        ("checkout", "done"),
        ("agent", "running"),
        ("agent", "done"),
        ("commit", "running"),
        ("commit", "done"),
        ("push", "running"),
        ("push", "done"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(steps, expected);
    let texts: Vec<&str> = task["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "agent")
        .filter_map(|e| e["data"]["text"].as_str())
        .collect();
    assert_eq!(texts, ["Fixed the off-by-one in page()"]);

    let log = t.agent_log(id).await;
    assert!(log.contains("Fixed the off-by-one"), "{log}");

    // The checkout is gone, the mirror stays.
    assert_eq!(
        std::fs::read_dir(data.join("work")).unwrap().count(),
        0,
        "checkouts are removed"
    );
    assert!(data.join("mirrors").exists());
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn an_agent_that_changes_nothing_ends_with_no_changes(pool: PgPool) {
    let src = source_repo();
    let (t, _) = app(pool, "echo 'nothing to do here'").await;
    let task = run_task(&t, &src, "Is there a bug?").await;
    assert_eq!(task["status"], "succeeded");
    assert_eq!(task["outcome"], "no_changes");
    let branches = git(&src, &["branch", "--format=%(refname:short)"]);
    assert!(!branches.contains("maur/"), "{branches}");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_failing_agent_fails_the_task_without_retry(pool: PgPool) {
    let src = source_repo();
    let (t, data) = app(pool, "echo 'model not reachable' >&2; exit 2").await;
    let task = run_task(&t, &src, "Fix it").await;
    assert_eq!(task["status"], "failed", "{task:#}");
    assert_eq!(task["attempts"], 1);
    let error = task["error"].as_str().unwrap();
    assert!(error.contains("exited with code 2"), "{error}");
    assert!(error.contains("model not reachable"), "{error}");
    assert_eq!(
        std::fs::read_dir(data.join("work")).unwrap().count(),
        0,
        "checkouts are removed"
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_guard_refusal_fails_the_task_and_pushes_nothing(pool: PgPool) {
    let src = source_repo();
    let (t, _) = app(
        pool,
        "mkdir -p .github/workflows && echo 'on: push' > .github/workflows/evil.yml",
    )
    .await;
    let task = run_task(&t, &src, "Fix CI").await;
    assert_eq!(task["status"], "failed");
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .contains("MAUR_ALLOW_WORKFLOW_CHANGES")
    );
    let branches = git(&src, &["branch", "--format=%(refname:short)"]);
    assert!(!branches.contains("maur/"), "{branches}");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_repository_without_a_forge_fails_saying_so(pool: PgPool) {
    let (t, _) = app(pool, "true").await;
    let id = t.create_task("fix it").await; // repo acme/api: no GitHub configured
    let pipeline = t.app.pipeline().unwrap();
    t.app.worker(pipeline).run_one().await.unwrap().unwrap();
    let task = t.task(&id).await;
    assert_eq!(task["status"], "failed");
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .starts_with("no forge is configured for acme/api"),
        "{task}"
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_failing_check_fails_the_task_and_pushes_nothing(pool: PgPool) {
    let src = source_repo();
    let data = temp("data");
    let t = TestApp::spawn_with(
        pool,
        &[
            ("MAUR_AGENT", "command"),
            ("MAUR_AGENT_COMMAND", "echo broken > src/lib.rs"),
            (
                "MAUR_CHECK_COMMAND",
                "grep -q 'pub fn' src/lib.rs || { echo 'error[E0425]: page not found'; exit 101; }",
            ),
            ("MAUR_DATA_DIR", data.to_str().unwrap()),
        ],
    )
    .await;
    let task = run_task(&t, &src, "Refactor").await;
    assert_eq!(task["status"], "failed");
    let error = task["error"].as_str().unwrap();
    assert!(error.contains("the check exited with code 101"), "{error}");
    assert!(error.contains("error[E0425]: page not found"), "{error}");
    let failed_step = task["events"].as_array().unwrap().iter().find(|e| {
        e["kind"] == "step" && e["data"]["step"] == "check" && e["data"]["status"] == "failed"
    });
    assert!(failed_step.is_some(), "{task:#}");
    let branches = git(&src, &["branch", "--format=%(refname:short)"]);
    assert!(!branches.contains("maur/"), "{branches}");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_passing_check_lets_the_change_through(pool: PgPool) {
    let src = source_repo();
    let data = temp("data");
    let t = TestApp::spawn_with(
        pool,
        &[
            ("MAUR_AGENT", "command"),
            ("MAUR_AGENT_COMMAND", "sed -i 's/n + 1/n/' src/lib.rs"),
            ("MAUR_CHECK_COMMAND", "grep -q 'pub fn page' src/lib.rs"),
            ("MAUR_DATA_DIR", data.to_str().unwrap()),
        ],
    )
    .await;
    let task = run_task(&t, &src, "Fix").await;
    assert_eq!(task["status"], "succeeded", "{task:#}");
    assert_eq!(task["outcome"], "branch_pushed");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn a_follow_up_continues_the_branch_without_forcing(pool: PgPool) {
    use maur::repo::RepoRef;
    use maur::store::tasks::{self as queue, Enqueued};
    use maur::task::{NewTask, Source};

    let src = source_repo();
    let (t, _) = app(pool, "echo \"line $(date +%s%N)\" >> README.md").await;
    let first = run_task(&t, &src, "Add a line").await;
    let branch = first["branch"].as_str().unwrap().to_owned();
    let first_tip = git(&src, &["rev-parse", &branch]);

    let repo = src.to_str().unwrap();
    let follow_up = NewTask {
        source: Source::Manual,
        dedup_key: None,
        title: "Add another line".into(),
        prompt: "Add another line".into(),
        repo_given: repo.into(),
        repo: RepoRef::parse(repo).unwrap(),
        repo_branch: None,
        context: json!({"work_branch": branch}),
        max_attempts: 3,
        report_to: None,
    };
    let Enqueued::Created(id) = queue::enqueue(&t.pool, &follow_up).await.unwrap() else {
        panic!("duplicate")
    };
    let pipeline = t.app.pipeline().unwrap();
    t.app.worker(pipeline).run_one().await.unwrap().unwrap();
    let task = t.task(&id.to_string()).await;
    assert_eq!(task["status"], "succeeded", "{task:#}");
    assert_eq!(task["branch"], branch.as_str());
    assert_eq!(
        git(&src, &["rev-parse", &format!("{branch}^")]),
        first_tip,
        "on top, not forced"
    );
    assert_eq!(
        git(&src, &["rev-list", "--count", &format!("main..{branch}")]),
        "2"
    );
}
