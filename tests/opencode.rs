//! The real OpenCode binary, driven by maur, against the scripted fake LLM: the task ends with
//! the model's edit committed and its token usage recorded.

mod support;

use serde_json::json;
use sqlx::PgPool;
use support::TestApp;
use support::git::{git, source_repo, temp};
use support::llm::FakeLlm;

fn opencode_available() -> bool {
    std::process::Command::new("opencode")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn opencode_writes_the_models_edit_and_maur_commits_it(pool: PgPool) {
    run_opencode(pool, "none").await;
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn opencode_completes_its_task_inside_bubblewrap(pool: PgPool) {
    if std::process::Command::new("bwrap")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "\n\n!!! SKIPPED: bubblewrap (bwrap) is not installed; `apt-get install bubblewrap` !!!\n"
        );
        return;
    }
    run_opencode(pool, "bwrap").await;
}

async fn run_opencode(pool: PgPool, sandbox: &str) {
    if !opencode_available() {
        // .ci/run installs opencode-ai, so CI always runs this.
        eprintln!(
            "\n\n!!! SKIPPED: the opencode binary is not on PATH; `npm install -g opencode-ai` !!!\n"
        );
        return;
    }
    let llm = FakeLlm::start("FIXED.md", "the fix\n").await;
    let src = source_repo();
    let data = temp("data");
    let t = TestApp::spawn_with(
        pool,
        &[
            ("MAUR_DATA_DIR", data.to_str().unwrap()),
            ("MAUR_LLM_API", &llm.base),
            ("MAUR_LLM_MODEL", "fake-model"),
            ("MAUR_LLM_TOKEN", "llm-key-for-the-fake"),
            ("MAUR_AGENT_TIMEOUT", "5m"),
            ("MAUR_SANDBOX", sandbox),
        ],
    )
    .await;
    let (status, body) = t
        .post(
            "/tasks",
            &json!({"prompt": "Write FIXED.md", "repo": src.to_str().unwrap()}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["task_id"].as_str().unwrap().to_owned();
    let pipeline = t.app.pipeline().unwrap();
    t.app.worker(pipeline).run_one().await.unwrap().unwrap();

    let task = t.task(&id).await;
    let log = t.agent_log(&id).await;
    assert_eq!(task["status"], "succeeded", "{task:#}\n--- log ---\n{log}");
    let branch = format!("maur/{id}");
    assert_eq!(
        git(&src, &["show", &format!("{branch}:FIXED.md")]),
        "the fix"
    );
    assert!(
        task["usage"]["input_tokens"].as_i64().unwrap() >= 1000,
        "{task:#}"
    );
    assert!(
        task["usage"]["output_tokens"].as_i64().unwrap() >= 50,
        "{task:#}"
    );
    let tools: Vec<&serde_json::Value> = task["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "agent" && e["data"]["type"] == "tool_use")
        .collect();
    assert_eq!(tools.len(), 1, "{tools:?}");
    assert_eq!(tools[0]["data"]["tool"], "write");
    assert_eq!(tools[0]["data"]["status"], "completed");

    // OpenCode talked to our endpoint with our key, and only we configured it.
    let requests = llm.requests();
    assert!(requests.iter().any(|r| r["tools"].is_array()));
    assert!(requests.iter().all(|r| r["model"] == "fake-model"));
    let auth: Vec<String> = llm
        .headers
        .lock()
        .unwrap()
        .iter()
        .filter_map(|h| {
            h.get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect();
    assert!(
        auth.iter().all(|a| a == "Bearer llm-key-for-the-fake"),
        "{auth:?}"
    );
}
