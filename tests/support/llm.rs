//! A scripted OpenAI-compatible LLM on 127.0.0.1, speaking the streaming chat-completions wire
//! format, so the real OpenCode runs against it unchanged.
//!
//! Script: a request without tools (OpenCode's title request) gets a short title; a request
//! with tools whose last message is not a tool result gets one `write` tool call; once the
//! last message is a tool result, a text reply ends the run.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Clone)]
pub struct FakeLlm {
    pub base: String,
    pub requests: Arc<Mutex<Vec<Value>>>,
    pub headers: Arc<Mutex<Vec<HeaderMap>>>,
}

#[derive(Clone)]
struct Script {
    file: String,
    content: String,
    requests: Arc<Mutex<Vec<Value>>>,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
}

impl FakeLlm {
    /// Answers with a `write` of `content` to `file` (relative to the agent's directory).
    pub async fn start(file: &str, content: &str) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let headers = Arc::new(Mutex::new(Vec::new()));
        let script = Script {
            file: file.into(),
            content: content.into(),
            requests: Arc::clone(&requests),
            headers: Arc::clone(&headers),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    [("retry-after-ms", "1")],
                    "not modelled",
                )
            })
            .with_state(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base,
            requests,
            headers,
        }
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

async fn models() -> impl IntoResponse {
    axum::Json(json!({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}))
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let body = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    format!("data: {body}\n\n")
}

fn usage(prompt: u64, completion: u64) -> String {
    let body = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "fake-model", "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    });
    format!("data: {body}\n\n")
}

async fn chat(State(script): State<Script>, headers: HeaderMap, body: String) -> Response {
    let Ok(req) = serde_json::from_str::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            [("retry-after-ms", "1")],
            "bad json",
        )
            .into_response();
    };
    script.requests.lock().unwrap().push(req.clone());
    script.headers.lock().unwrap().push(headers);
    let has_tools = req["tools"].as_array().is_some_and(|t| !t.is_empty());
    let last_role = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["role"].as_str())
        .unwrap_or_default()
        .to_owned();
    let mut stream = chunk(json!({"role": "assistant", "content": ""}), None);
    if !has_tools {
        stream += &chunk(json!({"content": "Fix the bug"}), None);
        stream += &chunk(json!({}), Some("stop"));
        stream += &usage(20, 3);
    } else if last_role != "tool" {
        let args = json!({"filePath": script.file, "content": script.content}).to_string();
        stream += &chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                   "function": {"name": "write", "arguments": args}}]}),
            None,
        );
        stream += &chunk(json!({}), Some("tool_calls"));
        stream += &usage(1000, 50);
    } else {
        stream += &chunk(json!({"content": "I wrote the fix."}), None);
        stream += &chunk(json!({}), Some("stop"));
        stream += &usage(1200, 10);
    }
    stream += "data: [DONE]\n\n";
    (
        StatusCode::OK,
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        stream,
    )
        .into_response()
}
