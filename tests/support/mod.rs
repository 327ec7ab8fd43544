//! The test harness: the real app on 127.0.0.1:0 over a fresh `#[sqlx::test]` database,
//! driven through HTTP with reqwest, plus scripted pipelines and a cuttable DB proxy.
#![allow(dead_code)]

pub mod fakegithub;
pub mod fakegitlab;
pub mod fakelinear;
pub mod git;
pub mod githttp;
pub mod llm;
pub mod pipelines;
pub mod proxy;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use maur::app::App;
use maur::config::Config;
use maur::worker::{Pipeline, Worker};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token-0123456789abcdef";
pub const OLD_TOKEN: &str = "old-token-0123456789abcdef";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub app: App,
    pub shutdown: CancellationToken,
}

/// Builds a config as `maur` would from these variables (plus the two test tokens).
pub fn config(vars: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = HashMap::from([
        ("MAUR_BEARER_TOKEN".into(), format!("{OLD_TOKEN},{TOKEN}")),
        ("MAUR_LISTEN".into(), "127.0.0.1:0".into()),
        ("MAUR_WORKER_ID".into(), "test-worker".into()),
        ("MAUR_POLL_INTERVAL".into(), "1h".into()),
        ("MAUR_LEASE".into(), "60s".into()),
    ]);
    for (k, v) in vars {
        map.insert((*k).into(), (*v).into());
    }
    Config::from_lookup(|name| map.get(name).cloned()).expect("test config is valid")
}

impl TestApp {
    pub async fn spawn(pool: PgPool) -> Self {
        Self::spawn_with(pool, &[]).await
    }

    pub async fn spawn_with(pool: PgPool, vars: &[(&str, &str)]) -> Self {
        Self::spawn_config(pool, config(vars)).await
    }

    pub async fn spawn_config(pool: PgPool, config: Config) -> Self {
        let shutdown = CancellationToken::new();
        let mut app = App::build(config, pool.clone(), shutdown.clone())
            .await
            .expect("app starts");
        app.state.sse_poll = Duration::from_secs(3600);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = App {
            state: app.state.clone(),
        };
        tokio::spawn(async move { served.serve(listener).await });
        Self {
            base,
            client: reqwest::Client::new(),
            pool,
            app,
            shutdown,
        }
    }

    pub fn worker(&self, pipeline: impl Pipeline) -> Arc<Worker> {
        self.app.worker(Arc::new(pipeline))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .expect("request sent");
        read(resp).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request sent");
        read(resp).await
    }

    /// Creates a manual task and returns its id.
    pub async fn create_task(&self, prompt: &str) -> String {
        let (status, body) = self
            .post(
                "/tasks",
                &serde_json::json!({"prompt": prompt, "repo": "acme/api"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["task_id"].as_str().expect("task_id").to_owned()
    }

    pub async fn task(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/tasks/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Polls until the task has `status` (for behaviour across processes and timers; the
    /// timeout is a hang guard, not a performance assertion).
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let task = self.task(id).await;
            if task["status"] == status {
                return task;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id} never reached {status}: {task:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The agent's log as `GET /tasks/{id}/log` serves it.
    pub async fn agent_log(&self, id: &str) -> String {
        self.client
            .get(self.url(&format!("/tasks/{id}/log")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request sent")
            .text()
            .await
            .expect("body")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    pub fn event_kinds(task: &Value) -> Vec<String> {
        task["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Collects log output in memory, so a test can look for what must never be logged.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn new() -> (Self, Self) {
        let c = Self::default();
        (c.clone(), c)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

/// Every row of `tables` as JSON text, one place per table: where a secret must not be.
pub async fn table_dumps(pool: &PgPool, tables: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for table in tables {
        let dump: Option<String> = sqlx::query_scalar(&format!(
            "SELECT string_agg(row_to_json(x)::text, '\n') FROM {table} x"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        out.push((format!("table {table}"), dump.unwrap_or_default()));
    }
    out
}

/// Every file under `dir`, recursively (symlinks not followed).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
