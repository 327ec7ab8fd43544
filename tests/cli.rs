//! The `maur` binary as an operator meets it: help, configuration errors, the database,
//! and a whole `maur up` lifecycle ending in a graceful SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use support::TOKEN;

fn maur(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_maur"));
    // Only what we set: no DATABASE_URL from cargo, no .env from the repository.
    cmd.env_clear().current_dir(dir).env("RUST_LOG", "info");
    cmd
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("maur-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The URL of the server the tests use, pointing at `database`.
fn url_for(database: &str) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for tests");
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(database);
    url.to_string()
}

async fn current_database(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[test]
fn every_command_has_help() {
    let dir = tempdir();
    let out = maur(&dir).arg("--help").output().unwrap();
    assert!(out.status.success());
    let top = String::from_utf8_lossy(&out.stdout);
    for cmd in ["up", "serve", "worker", "migrate"] {
        assert!(top.contains(cmd), "{top}");
        let out = maur(&dir).args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: maur"), "{cmd}: {text}");
    }
    let up = maur(&dir).args(["up", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&up.stdout).contains("--no-migrate"));
}

#[test]
fn configuration_errors_name_the_variable() {
    let dir = tempdir();
    /// (environment, command, expected message)
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
    );
    let cases: &[Case] = &[
        (
            &[("MAUR_WORKER_CONCURRENCY", "many")],
            "worker",
            "MAUR_WORKER_CONCURRENCY: expected a whole number",
        ),
        (
            &[("MAUR_LISTEN", "nowhere")],
            "worker",
            "MAUR_LISTEN: expected an address and port",
        ),
        (
            &[("DB_URI", "mysql+aiomysql://u:p@h/db")],
            "migrate",
            "DB_URI: maur stores its queue in PostgreSQL only",
        ),
        (&[], "serve", "MAUR_BEARER_TOKEN: required"),
        (&[], "up", "MAUR_BEARER_TOKEN: required"),
    ];
    for (vars, cmd, expected) in cases {
        let out = maur(&dir)
            .envs(vars.iter().copied())
            .arg(cmd)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd} {vars:?}");
        let err = stderr(&out);
        assert!(err.contains(expected), "{cmd} {vars:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    }
}

#[test]
fn an_unreachable_database_is_one_line_with_the_password_masked() {
    let dir = tempdir();
    let out = maur(&dir)
        .env("DATABASE_URL", "postgres://maur:s3cret-pw@127.0.0.1:1/maur")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("postgres://maur:****@127.0.0.1:1/maur"),
        "{err}"
    );
    assert!(err.contains("Check that the server is running"), "{err}");
    assert!(!err.contains("s3cret-pw"), "{err}");
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn migrate_creates_a_missing_database_and_accepts_db_uri(pool: PgPool) {
    let name = format!("maur_cli_{}", uuid::Uuid::new_v4().simple());
    let dir = tempdir();
    // The Python Maur's variable and URL style.
    let uri = url_for(&name).replacen("postgres://", "postgresql+asyncpg://", 1);
    let out = maur(&dir)
        .env("DB_URI", &uri)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    // Applying again is a no-op.
    let again = maur(&dir)
        .env("DB_URI", &uri)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));

    let created: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(created);
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&pool)
        .await
        .unwrap();
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `maur` answers `/ready` on `port` (a hang guard, not a timing assertion).
async fn wait_ready(client: &reqwest::Client, port: u16) {
    let started = Instant::now();
    while client
        .get(format!("http://127.0.0.1:{port}/ready"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "port {port} never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the API at `base` until task `id` has `status`; returns the task.
async fn wait_for_task(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    status: &str,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let task: serde_json::Value = client
            .get(format!("{base}/tasks/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if task["status"] == status {
            return task;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "task never got {status}: {task}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts `body` to the API at `base` and returns the new task's id.
async fn submit(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: serde_json::Value,
) -> String {
    let created: serde_json::Value = client
        .post(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["task_id"].as_str().expect("task_id").to_owned()
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn maur_up_runs_tasks_through_the_queue_and_stops_on_sigterm(pool: PgPool) {
    let db = current_database(&pool).await;
    let port = free_port();
    let dir = tempdir();
    let log = dir.join("maur.log");
    let mut child = Running(
        maur(&dir)
            .env("DATABASE_URL", url_for(&db))
            .env("MAUR_BEARER_TOKEN", TOKEN)
            .env("MAUR_LISTEN", format!("127.0.0.1:{port}"))
            .env("MAUR_DATA_DIR", dir.join("data"))
            .env("RUST_LOG", "debug")
            .arg("up")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_ready(&client, port).await;
    let id = submit(
        &client,
        &base,
        "/tasks",
        serde_json::json!({"prompt": "fix the bug", "repo": "acme/api"}),
    )
    .await;
    let task = wait_for_task(&client, &base, &id, "failed").await;
    let error = task["error"].as_str().unwrap();
    assert!(
        error.starts_with("no forge is configured for acme/api"),
        "{error}"
    );

    let started = Instant::now();
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "maur up ignored SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");

    let lines: Vec<String> = BufReader::new(std::fs::File::open(&log).unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    let text = lines.join("\n");
    assert!(text.contains("maur started"), "{text}");
    assert!(text.contains("shutting down"), "{text}");
    assert!(
        !text.contains(TOKEN),
        "the API token leaked into the log:\n{text}"
    );
}

#[sqlx::test(migrator = "maur::MIGRATOR")]
async fn serve_and_worker_scale_out_as_separate_processes(pool: PgPool) {
    let db = current_database(&pool).await;
    let dir = tempdir();
    let (api_port, worker_port) = (free_port(), free_port());
    let start = |mode: &str, port: u16| {
        Running(
            maur(&dir)
                .env("DATABASE_URL", url_for(&db))
                .env("MAUR_BEARER_TOKEN", TOKEN)
                .env("MAUR_LISTEN", format!("127.0.0.1:{port}"))
                .env("MAUR_DATA_DIR", dir.join("data"))
                // Only NOTIFY from the API process can wake this worker in time.
                .env("MAUR_POLL_INTERVAL", "1h")
                .arg(mode)
                .arg("--no-migrate")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let _api = start("serve", api_port);
    let _worker = start("worker", worker_port);
    let client = reqwest::Client::new();
    wait_ready(&client, api_port).await;
    wait_ready(&client, worker_port).await;
    // The worker serves probes, not the API.
    let metrics = client
        .get(format!("http://127.0.0.1:{worker_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), reqwest::StatusCode::OK);
    let tasks = client
        .get(format!("http://127.0.0.1:{worker_port}/tasks"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(tasks.status(), reqwest::StatusCode::NOT_FOUND);

    let base = format!("http://127.0.0.1:{api_port}");
    let id = submit(
        &client,
        &base,
        "/webhooks/exception",
        serde_json::json!({"fingerprint": "f", "title": "boom", "repo": "acme/api"}),
    )
    .await;
    let task = wait_for_task(&client, &base, &id, "failed").await;
    let error = task["error"].as_str().unwrap();
    assert!(
        error.starts_with("no forge is configured for acme/api"),
        "{error}"
    );
}

#[test]
fn maur_run_changes_a_local_repository_without_server_or_database() {
    let src = support::git::source_repo();
    let dir = tempdir();
    let out = maur(&dir)
        .env("MAUR_DATA_DIR", dir.join("data"))
        // No database: `maur run` must not need one.
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .args([
            "run",
            "--repo",
            src.to_str().unwrap(),
            "--agent-command",
            "sed -i 's/n + 1/n/' src/lib.rs && echo 'Fixed page()'",
            "Fix the off-by-one",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    assert!(stdout.contains("✓ checkout: main at"), "{stdout}");
    assert!(stdout.contains("  Fixed page()"), "{stdout}");
    assert!(
        stdout.contains("1 file changed, 1 insertion(+), 1 deletion(-)"),
        "{stdout}"
    );
    let branch = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Pushed branch "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the branch is printed")
        .to_owned();
    assert_eq!(
        support::git::git(&src, &["show", &format!("{branch}:src/lib.rs")]),
        "pub fn page(n: usize) -> usize { n }"
    );

    let failed = maur(&dir)
        .env("MAUR_DATA_DIR", dir.join("data"))
        .args([
            "run",
            "--repo",
            src.to_str().unwrap(),
            "--agent-command",
            "exit 4",
            "Fix it",
        ])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let err = stderr(&failed);
    assert!(
        err.contains("the task failed: the agent failed: the command exited with code 4"),
        "{err}"
    );
}
