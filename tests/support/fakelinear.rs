//! A fake Linear GraphQL endpoint on 127.0.0.1: it demands maur's key in `Authorization`
//! on every call and records comments (with their edits) and attachments.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct LinearComment {
    pub id: String,
    pub issue_id: String,
    pub bodies: Vec<String>,
}

impl LinearComment {
    pub fn body(&self) -> &str {
        self.bodies.last().map(String::as_str).unwrap_or_default()
    }
}

#[derive(Default)]
pub struct Recorded {
    pub comments: Vec<LinearComment>,
    /// (issue id, url, title)
    pub attachments: Vec<(String, String, String)>,
    pub calls: Vec<String>,
    pub unauthorized: u32,
    /// Agent session activities: (session id, content, when).
    pub activities: Vec<(String, Value, std::time::Instant)>,
    /// (session id, external URL)
    pub session_urls: Vec<(String, String)>,
    /// URLs attached to issues: (issue id, url).
    pub attached_before: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct FakeLinear {
    pub url: String,
    pub key: String,
    pub state: Arc<Mutex<Recorded>>,
}

type Shared = (Arc<Mutex<Recorded>>, String);

impl FakeLinear {
    pub async fn start(key: &str) -> Self {
        let state = Arc::new(Mutex::new(Recorded::default()));
        let app = Router::new()
            .route("/graphql", post(graphql))
            .with_state((state.clone(), key.to_owned()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/graphql", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            key: key.to_owned(),
            state,
        }
    }

    pub fn vars(&self, secret: &str) -> Vec<(String, String)> {
        vec![
            ("LINEAR_API_URL".into(), self.url.clone()),
            ("LINEAR_API_KEY".into(), self.key.clone()),
            ("LINEAR_WEBHOOK_SECRET".into(), secret.into()),
        ]
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub async fn wait_until(&self, what: &str, check: impl Fn(&Recorded) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if self.with(|s| check(s)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never happened: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn graphql(
    State((st, key)): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    let query = body["query"].as_str().unwrap_or_default().to_owned();
    let vars = &body["variables"];
    s.calls.push(
        query
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == key);
    if !authorized {
        s.unauthorized += 1;
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errors": [{"message": "Authentication required, not authenticated", "extensions": {"code": "AUTHENTICATION_ERROR"}}]})),
        )
            .into_response();
    }
    let data = if query.contains("commentCreate") {
        let id = format!("comment-{}", s.comments.len() + 1);
        let issue_id = vars["input"]["issueId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        s.comments.push(LinearComment {
            id: id.clone(),
            issue_id,
            bodies: vec![
                vars["input"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ],
        });
        json!({"commentCreate": {"success": true, "comment": {"id": id, "url": format!("https://linear.example/comment/{id}")}}})
    } else if query.contains("commentUpdate") {
        let id = vars["id"].as_str().unwrap_or_default();
        let text = vars["input"]["body"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match s.comments.iter_mut().find(|c| c.id == id) {
            Some(c) => {
                c.bodies.push(text);
                json!({"commentUpdate": {"success": true}})
            }
            None => {
                return Json(json!({"errors": [{"message": "Entity not found"}]})).into_response();
            }
        }
    } else if query.contains("agentActivityCreate") {
        let input = &vars["input"];
        s.activities.push((
            input["agentSessionId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            input["content"].clone(),
            std::time::Instant::now(),
        ));
        json!({"agentActivityCreate": {"success": true}})
    } else if query.contains("agentSessionUpdate") {
        s.session_urls.push((
            vars["id"].as_str().unwrap_or_default().to_owned(),
            vars["input"]["externalUrls"][0]["url"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
        json!({"agentSessionUpdate": {"success": true}})
    } else if query.contains("attachmentLinkURL") {
        s.attachments.push((
            vars["issueId"].as_str().unwrap_or_default().to_owned(),
            vars["url"].as_str().unwrap_or_default().to_owned(),
            vars["title"].as_str().unwrap_or_default().to_owned(),
        ));
        json!({"attachmentLinkURL": {"success": true}})
    } else if query.contains("issue(id") {
        let id = vars["id"].as_str().unwrap_or_default();
        let nodes: Vec<Value> = s
            .comments
            .iter()
            .filter(|c| c.issue_id == id)
            .map(|c| json!({"id": c.id, "url": "", "body": c.body()}))
            .collect();
        let attached: Vec<Value> = s
            .attached_before
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, url)| json!({"url": url}))
            .collect();
        json!({"issue": {"comments": {"nodes": nodes}, "attachments": {"nodes": attached}}})
    } else {
        return Json(json!({"errors": [{"message": "unknown operation"}]})).into_response();
    };
    Json(json!({"data": data})).into_response()
}
